/* SPDX-License-Identifier: MIT */
/*
 * The library under the deterministic scheduler: a scenario with four VMM
 * threads (a converter, a puncher and the run loops of two vCPUs, whose
 * guest threads the library makes) on every backend, explored by
 * ccvm_explore().  One seed gives byte-identical library traces, schedule
 * events, counters and simulated time run after run; another seed gives
 * another schedule.  Invariants are checked at every quiescent point.
 *
 * Scenario state lives in a context struct that each run resets, since the
 * explorer runs a scenario many times in one process.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <ccvm/backend.h>
#include <ccvm/explore.h>

#include "internal.h"
#include "testutil.h"

#define L4_PAGES	16u
#define L4_ROUNDS	3u
/* Pages: 0-1 the vCPUs' private pages, 2-3 their shared pages, 4-7 the
 * converter's, 8-11 the puncher's (which also punches 4-7). */
#define L4_PRIV(i)	((uint64_t)(i) * TU_PAGE)
#define L4_SHARED(i)	((uint64_t)(2 + (i)) * TU_PAGE)
#define L4_CONV		(4 * TU_PAGE)
#define L4_PUNCH	(8 * TU_PAGE)

struct l4 {
	/* set once per test */
	const char *backend;
	struct ccvm_backend_caps caps;
	bool trace;			/* record the library trace too */
	/* per run */
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	uint8_t *shared;
	uint64_t sbit;
	struct ccvm_vcpu *v[2];
	/* what the run did, as text: trace records, then counters */
	char *out;
	size_t len, cap;
};

static void out_add(struct l4 *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_add(struct l4 *x, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(x->out + x->len, x->cap - x->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < x->cap - x->len)
			break;
		x->cap = x->cap ? 2 * x->cap : 1 << 16;
		x->out = realloc(x->out, x->cap);
		ck_assert_ptr_nonnull(x->out);
	}
	x->len += (size_t)n;
}

static void l4_trace(const struct ccvm_trace_record *r, void *ctx)
{
	struct l4 *x = ctx;

	out_add(x, "T %u %s vm%u vcpu%d gfn %#" PRIx64 " %" PRIu64 " %" PRIu64 " ret %" PRId64
		" sim %" PRIu64 " at %" PRIu64 " dur %" PRIu64 "\n", r->kind, r->name, r->vm_id,
		r->vcpu_id, r->gfn, r->arg0, r->arg1, r->ret, r->sim_ns, r->wall_ns, r->dur_ns);
}

static void l4_event(const struct ccvm_sched_event *e, void *ctx)
{
	struct l4 *x = ctx;
	const char *f = e->file ? strrchr(e->file, '/') : NULL;

	out_add(x, "S %" PRIu64 " %u %s %s %s %s:%u\n", e->step, e->thread, e->thread_name,
		ccvm_sched_op_name(e->op), e->obj ? e->obj : "-", f ? f + 1 : "-", e->line);
}

/* ---- the four threads ------------------------------------------------------------ */

static void l4_guest(struct ccvm_guest *g, void *arg)
{
	struct l4 *x = arg;
	uint32_t i = ccvm_guest_vcpu_id(g);
	uint64_t w, r;
	unsigned int k;

	if (x->caps.requires_accept)
		CCVM_GUEST_ASSERT(g, !ccvm_guest_accept(g, L4_PRIV(i), TU_PAGE));
	for (k = 0; k < L4_ROUNDS; k++) {
		w = 0x1000 * (i + 1) + k;
		CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, L4_PRIV(i), &w, sizeof(w)));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, L4_SHARED(i) | x->sbit, &w, sizeof(w)));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, L4_PRIV(i), &r, sizeof(r)) && r == w);
		CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, L4_SHARED(i) | x->sbit, &r, sizeof(r)) &&
				  r == w);
		/* The converter's pages, shared side: a memory fault while private. */
		CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, (L4_CONV + i * TU_PAGE) | x->sbit, &r,
						      sizeof(r)));
		ccvm_guest_sync(g, k);
	}
}

static int l4_runner(void *arg)
{
	struct ccvm_vcpu *v = arg;
	struct ccvm_run *run = ccvm_vcpu_run_state(v);
	struct ccvm_sched *s = ccvm_platform_sched(ccvm_vm_platform(ccvm_vcpu_vm(v)));
	int r;

	for (;;) {
		r = ccvm_vcpu_run(v);
		if (r == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT) {
			/* The converter has the page private: let it go on. */
			ccvm_sched_yield(s, "memory fault");
			continue;
		}
		if (r)
			return r;
		if (run->exit_reason == CCVM_EXIT_DONE)
			return 0;
		if (run->exit_reason != CCVM_EXIT_SYNC)
			return -EPROTO;
	}
}

static int l4_converter(void *arg)
{
	struct l4 *x = arg;
	unsigned int k;
	int r = 0;

	for (k = 0; k < 2 && !r; k++) {
		r = ccvm_vm_set_memory_attributes(x->vm, L4_CONV, 4 * TU_PAGE,
						  CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
		if (!r)
			r = ccvm_vm_set_memory_attributes(x->vm, L4_CONV, 4 * TU_PAGE, 0, 0);
	}
	return r;
}

static int l4_puncher(void *arg)
{
	struct l4 *x = arg;
	unsigned int k;
	int r = 0;

	for (k = 0; k < 2 && !r; k++) {
		r = ccvm_gmem_fallocate(x->g, CCVM_FALLOC_KEEP_SIZE, L4_PUNCH, 4 * TU_PAGE);
		if (!r)
			r = ccvm_gmem_fallocate(x->g, CCVM_FALLOC_KEEP_SIZE | CCVM_FALLOC_PUNCH_HOLE,
						L4_CONV, 8 * TU_PAGE);
	}
	return r;
}

/* ---- the scenario ------------------------------------------------------------------- */

static int l4_setup(struct l4 *x)
{
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = 2);
	struct ccvm_memory_region mr = {
		.slot = 0, .flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = 0,
		.memory_size = L4_PAGES * TU_PAGE, .gmem_offset = 0,
	};
	uint32_t i;
	int r;

	r = ccvm_vm_create(x->p, &vo, &x->vm);
	if (r)
		return r;
	x->sbit = ccvm_vm_shared_bit(x->vm);
	r = ccvm_gmem_create(x->vm, L4_PAGES * TU_PAGE, 0, &x->g);
	if (r)
		return r;
	/* 2M aligned, so that what the fault path decides does not depend on it. */
	x->shared = aligned_alloc(TU_2M, TU_2M);
	if (!x->shared)
		return -ENOMEM;
	memset(x->shared, 0, TU_2M);
	mr.userspace_addr = x->shared;
	mr.gmem = x->g;
	r = ccvm_vm_set_user_memory_region(x->vm, &mr);
	if (!r)
		r = ccvm_vm_set_memory_attributes(x->vm, 0, 2 * TU_PAGE,
						  CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	/* vCPUs before finalize: TDX refuses them after (tdx_vcpu_create()). */
	for (i = 0; i < 2 && !r; i++) {
		r = ccvm_vcpu_create(x->vm, i, &x->v[i]);
		if (!r)
			r = ccvm_vcpu_set_guest(x->v[i], l4_guest, x);
	}
	if (!r)
		r = ccvm_vm_finalize(x->vm);
	return r;
}

static void l4_counters(struct l4 *x)
{
	struct ccvm_stats st = { .sz = sizeof(st) };
	unsigned int i;

	ck_assert_int_eq(ccvm_platform_get_stats(x->p, &st), 0);
	out_add(x, "C sim %" PRIu64 " free %" PRIu64 " leaked %" PRIu64 "\n", st.sim_ns,
		st.free_pages, st.leaked_pages);
	for (i = 0; i < st.nr_events; i++)
		out_add(x, "C ev %u %" PRIu64 "\n", i, st.events[i]);
	for (i = 0; i < st.nr_ops; i++)
		out_add(x, "C op %u %" PRIu64 " %" PRIu64 "\n", i, st.op_calls[i],
			st.op_errors[i]);
}

static int l4_run(struct ccvm_platform *p, void *ctx)
{
	static const char *const names[] = { "converter", "puncher", "run0", "run1" };
	struct l4 *x = ctx;
	struct ccvm_thread *t[4];
	void *args[4];
	unsigned int i, n = 0;
	int r, ret, err;

	x->p = p;
	x->vm = NULL;
	x->g = NULL;
	x->shared = NULL;
	x->v[0] = x->v[1] = NULL;
	if (x->trace)
		ccvm_platform_set_trace(p, l4_trace, x);
	err = l4_setup(x);
	args[0] = x;
	args[1] = x;
	args[2] = x->v[0];
	args[3] = x->v[1];
	for (i = 0; i < 4 && !err; i++) {
		err = ccvm_thread_create(p, &t[i], i < 2 ? (i ? l4_puncher : l4_converter)
							  : l4_runner, args[i], names[i]);
		if (!err)
			n++;
	}
	for (i = 0; i < n; i++) {
		ret = 0;
		r = ccvm_thread_join(t[i], &ret);
		if (!err)
			err = r ? r : ret;
	}
	if (!err && x->trace)
		l4_counters(x);
	ccvm_platform_set_trace(p, NULL, NULL);
	for (i = 0; i < 2; i++)
		if (x->v[i])
			ccvm_vcpu_close(x->v[i]);
	if (x->g)
		ccvm_gmem_close(x->g);
	if (x->vm)
		ccvm_vm_close(x->vm);
	free(x->shared);
	return err;
}

static struct ccvm_platform_opts l4_platform(const char *backend)
{
	return CCVM_OPTS_INIT(struct ccvm_platform_opts, .backend = backend,
			      .mem_bytes = 64 * TU_MiB, .nr_cpus = 2, .seed = 11);
}

/* One run of seed @seed; its output in x->out, its token in *@token (malloc'd). */
static void l4_once(struct l4 *x, uint64_t seed, char **token);

static void l4_token(const struct ccvm_explore_run *run, void *ctx)
{
	char **token = ctx;

	free(*token);
	*token = strdup(run->token);
}

struct l4_fn_ctx {
	struct l4 *x;
	char **token;
};

static void l4_run_fn(const struct ccvm_explore_run *run, void *ctx)
{
	struct l4_fn_ctx *c = ctx;

	l4_token(run, c->token);
}

static void l4_event_fn(const struct ccvm_sched_event *e, void *ctx)
{
	struct l4_fn_ctx *c = ctx;

	l4_event(e, c->x);
}

static void l4_once(struct l4 *x, uint64_t seed, char **token)
{
	struct ccvm_platform_opts po = l4_platform(x->backend);
	struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario, .name = "lib4",
						 .run = l4_run, .ctx = x, .platform = &po);
	struct l4_fn_ctx c = { .x = x, .token = token };
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
						    .strategy = CCVM_EXPLORE_RANDOM,
						    .seed = seed, .runs = 1,
						    .run_fn = l4_run_fn, .event_fn = l4_event_fn,
						    .fn_ctx = &c);
	struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
	int r;

	x->len = 0;
	r = ccvm_explore(&sc, &o, &res);
	ck_assert_msg(r == 0, "%s seed %" PRIu64 ": %d: %s", x->backend, seed, r,
		      res.message ? res.message : "");
	/* The library's invariants held at every quiescent point of the run. */
	ck_assert_uint_gt(res.checks, 1);
	out_add(x, "R steps %" PRIu64 " switches %" PRIu64 " checks %" PRIu64 "\n", res.steps,
		res.switches, res.checks);
	ccvm_explore_result_release(&res);
}

START_TEST(test_same_seed_same_run)
{
	struct l4 x = { .trace = true };
	char *first = NULL, *tok0 = NULL, *tok = NULL;
	size_t first_len;
	unsigned int i;

	tu_quiet_log();
	x.backend = ccvm_backend_names()[_i];
	x.caps.sz = sizeof(x.caps);
	ck_assert_int_eq(ccvm_backend_caps(x.backend, &x.caps), 0);
	l4_once(&x, 1, &tok0);
	first = malloc(x.len + 1);
	ck_assert_ptr_nonnull(first);
	memcpy(first, x.out, x.len);
	first_len = x.len;
	ck_assert_uint_gt(first_len, 0);
	for (i = 1; i < 100; i++) {
		l4_once(&x, 1, &tok);
		ck_assert_msg(x.len == first_len && !memcmp(x.out, first, first_len),
			      "%s: run %u of seed 1 differs from the first", x.backend, i);
		ck_assert_str_eq(tok, tok0);
	}
	/* Another seed, another schedule. */
	l4_once(&x, 2, &tok);
	ck_assert_str_ne(tok, tok0);
	free(first);
	free(tok0);
	free(tok);
	free(x.out);
}
END_TEST

/* ---- the invariant checker at quiescent points ----------------------------------------- */

/*
 * A guest breaks an invariant behind every lock (an invalidation left in
 * progress, I3) for one scheduling point of its own, while its vCPU is in a
 * run (vcpu->mutex held by the runner): the checker, which runs at every
 * quiescent point, must see it; told not to check, the explorer must not.
 */
struct brk {
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_sched *s;
};

/* LeakSanitizer's, when the test runs under it. */
extern void __lsan_ignore_object(const void *p) __attribute__((weak));

static void brk_guest(struct ccvm_guest *g, void *arg)
{
	struct brk *b = arg;

	(void)g;
	atomic_fetch_add(&b->vm->mmu.invalidate_in_progress, 1);
	ccvm_sched_point(b->s, NULL, "broken");
	atomic_fetch_sub(&b->vm->mmu.invalidate_in_progress, 1);
}

static int brk_runner(void *arg)
{
	struct ccvm_vcpu *v = arg;
	int r = ccvm_vcpu_run(v);

	if (!r && ccvm_vcpu_run_state(v)->exit_reason != CCVM_EXIT_DONE)
		r = -EPROTO;
	return r;
}

static int brk_run(struct ccvm_platform *p, void *ctx)
{
	struct brk *b = ctx;
	struct ccvm_vcpu *v = NULL;
	struct ccvm_thread *t;
	int r, ret = 0;

	b->p = p;
	b->s = ccvm_platform_sched(p);
	r = ccvm_vm_create(p, NULL, &b->vm);
	if (!r)
		r = ccvm_vcpu_create(b->vm, 0, &v);
	if (!r)
		r = ccvm_vcpu_set_guest(v, brk_guest, b);
	if (!r)
		r = ccvm_thread_create(p, &t, brk_runner, v, "runner");
	if (!r)
		r = ccvm_thread_join(t, &ret);
	if (v)
		ccvm_vcpu_close(v);
	if (b->vm)
		ccvm_vm_close(b->vm);
	return r ? r : ret;
}

START_TEST(test_checker_at_quiescent_points)
{
	struct ccvm_platform_opts po = l4_platform("mock");
	struct brk b = { 0 };
	struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario, .name = "broken",
						 .run = brk_run, .ctx = &b, .platform = &po);
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
						    .strategy = CCVM_EXPLORE_RANDOM, .runs = 1,
						    .flags = CCVM_EXPLORE_QUIET);
	struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);

	tu_quiet_log();
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EPROTO);
	ck_assert_uint_eq(res.failure, CCVM_EXPLORE_FAIL_CHECK);
	ck_assert_msg(strstr(res.message, "invariant I3 broken"), "%s", res.message);
	/* The report names the guest, inside its run. */
	ck_assert_msg(strstr(res.message, "\"vcpu0\""), "%s", res.message);
	ccvm_explore_result_release(&res);
	/* The failed run's platform is left as the run left it: leaked, on purpose. */
	if (__lsan_ignore_object)
		__lsan_ignore_object(b.p);

	o.flags |= CCVM_EXPLORE_NO_LIBRARY_CHECK;
	res = (struct ccvm_explore_result)CCVM_OPTS_INIT(struct ccvm_explore_result);
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert_uint_eq(res.checks, 0);
	ccvm_explore_result_release(&res);
}
END_TEST

/*
 * KVM_PRE_FAULT_MEMORY holds memslots_rw across its pages (as KVM holds its
 * SRCU across the ioctl's loop) while another thread deletes the slot: the
 * deletion marks the slot invalid and then takes memslots_rw for write, and
 * a pre-fault that meets the invalid slot retries.  Were the retry to keep
 * its hold, neither could go on: the explorer would end the run as a
 * deadlock.  Every schedule ends with the slot gone, nothing of it mapped
 * (the invariants at each quiescent point) and the pre-fault having mapped
 * a prefix (0) or nothing (-ENOENT, the slot was gone first).
 */
#define PD_PAGES	8u

struct prefault_delete {
	const char *backend;
	struct ccvm_vm *vm;
	struct ccvm_vcpu *v;
	struct ccvm_gmem *g;
	int prefault_ret;
};

static int pd_prefault(void *arg)
{
	struct prefault_delete *x = arg;
	uint64_t gpa = 0, size = PD_PAGES * TU_PAGE;

	x->prefault_ret = ccvm_vcpu_pre_fault_memory(x->v, &gpa, &size);
	return 0;
}

static int pd_delete(void *arg)
{
	struct prefault_delete *x = arg;
	struct ccvm_memory_region mr = { .slot = 0, .flags = CCVM_MEM_GUEST_MEMFD };

	return ccvm_vm_set_user_memory_region(x->vm, &mr);
}

static int pd_run(struct ccvm_platform *p, void *ctx)
{
	struct prefault_delete *x = ctx;
	struct ccvm_memory_region mr = { .slot = 0, .flags = CCVM_MEM_GUEST_MEMFD,
					 .memory_size = PD_PAGES * TU_PAGE };
	struct ccvm_thread *t[2];
	unsigned int i, n = 0;
	int r, ret, err;

	x->vm = NULL;
	x->v = NULL;
	x->g = NULL;
	x->prefault_ret = 1;
	err = ccvm_vm_create(p, NULL, &x->vm);
	if (!err)
		err = ccvm_gmem_create(x->vm, PD_PAGES * TU_PAGE, 0, &x->g);
	if (!err) {
		mr.gmem = x->g;
		err = ccvm_vm_set_user_memory_region(x->vm, &mr);
	}
	if (!err)
		err = ccvm_vm_set_memory_attributes(x->vm, 0, PD_PAGES * TU_PAGE,
						    CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	if (!err)
		err = ccvm_vcpu_create(x->vm, 0, &x->v);
	if (!err)
		err = ccvm_vm_finalize(x->vm);
	if (!err)
		err = ccvm_thread_create(p, &t[n], pd_prefault, x, "prefault");
	if (!err && ++n)
		err = ccvm_thread_create(p, &t[n], pd_delete, x, "delete");
	if (!err)
		n++;
	for (i = 0; i < n; i++) {
		ret = 0;
		r = ccvm_thread_join(t[i], &ret);
		if (!err)
			err = r ? r : ret;
	}
	if (!err && x->prefault_ret != 0 && x->prefault_ret != -ENOENT)
		err = x->prefault_ret < 0 ? x->prefault_ret : -EPROTO;
	if (x->v)
		ccvm_vcpu_close(x->v);
	if (x->g)
		ccvm_gmem_close(x->g);
	if (x->vm)
		ccvm_vm_close(x->vm);
	return err;
}

START_TEST(test_prefault_vs_slot_delete)
{
	static const char *const backends[] = { "mock", "tdx", "snp" };
	struct prefault_delete x = { .backend = backends[_i] };
	struct ccvm_platform_opts po = l4_platform(x.backend);
	struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario, .name = "prefault-delete",
						 .run = pd_run, .ctx = &x, .platform = &po);
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
						    .strategy = CCVM_EXPLORE_PCT, .seed = 1,
						    .runs = 60, .flags = CCVM_EXPLORE_QUIET);
	struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };
	int r;

	if (ccvm_backend_caps(x.backend, &caps))
		return;		/* not built */
	tu_quiet_log();
	r = ccvm_explore(&sc, &o, &res);
	ck_assert_msg(r == 0, "%s: %d (failure %u): %s", x.backend, r, res.failure,
		      res.message ? res.message : "");
	ck_assert_uint_eq(res.runs, 60);
	ck_assert_uint_gt(res.checks, 1);
	ccvm_explore_result_release(&res);
}
END_TEST

Suite *sched_lib_suite(void)
{
	Suite *s = suite_create("sched_lib");
	TCase *tc = tcase_create("determinism");

	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, test_same_seed_same_run, 0, 3);
	suite_add_tcase(s, tc);
	tc = tcase_create("checker");
	tcase_add_test(tc, test_checker_at_quiescent_points);
	suite_add_tcase(s, tc);
	tc = tcase_create("prefault");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_prefault_vs_slot_delete, 0, 3);
	suite_add_tcase(s, tc);
	return s;
}
