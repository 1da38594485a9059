/* SPDX-License-Identifier: MIT */
/*
 * Deterministic twins of the race tests that force an interleaving with a
 * thread that sleeps, spins or paces itself with sched_yield().  Each twin is
 * the same program on a serial platform, explored by DFS with preemption
 * bound 2 until the tree is exhausted (40 to 150 schedules each, busy_removal
 * about 4,200): the property the free-running test checks once, at whatever
 * interleaving the OS gave it, holds here in every interleaving, and the
 * window the free-running test hoped to hit is shown to be reached (the
 * explored schedules include one that has the racing thread parked exactly
 * where the test wants it).  Waits are ccvm_spin_wait() on the word another
 * thread changes: event-driven, never a sleep.
 *
 *   twin                     free-running original
 *   entry_blocked            check_vcpu.c test_entry_blocked (slept 5 x 20 ms)
 *   run_busy                 check_vcpu.c test_run_busy_and_self_calls (wait_for)
 *   kick_reenter             check_vcpu.c test_kick_makes_guest_reenter (wait_for)
 *   rendezvous               check_vcpu.c test_parallel_vcpus (wait_for)
 *   snp_overlap              check_snp_hw.c test_overlap_held_region_two_threads
 *   busy_removal (tdx, x3)   check_tdx_busy.c test_busy_removal_blocks_entry
 *                            (tu_event_wait on VP.ENTERs; ~4,100-4,250 schedules
 *                            per leaf: BLOCK, TRACK, REMOVE answered busy once)
 *
 * The pacing yields of the other stress tests (check_mmu.c's race converter,
 * check_tdx_busy.c's concurrent accept, check_tdx_teardown.c) force no
 * window; their races are explored by the
 * built-in scenarios (conv-fault, install-accept, kick-exit, gmem-terminate)
 * in the explore suite.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <ccvm/backend.h>
#include <ccvm/explore.h>

#include "internal.h"
#include "testutil.h"
#include "../backends/snp/snp-hw.h"
#include "../backends/tdx/tdx-module.h"
#include "../backends/tdx/tdx.h"

#define TW_PAGES	16u

struct twin;
typedef int (*twin_body)(struct twin *x);

struct twin {
	/* set once per test */
	const char *backend;
	twin_body body;
	uint64_t pct_runs;		/* 0: DFS to exhaustion; else PCT depth 3, this many runs */
	bool no_lib_check;		/* the library's checker would object to the test's own state */
	bool window_body;		/* the body itself says when it saw the window */
	const char *window_func;	/* a step of a non-main thread in this function ... */
	uint32_t window_op;		/* ... doing this op, before main's "window" point */
	/* per run */
	struct ccvm_platform *p;
	struct ccvm_sched *s;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	uint8_t *shared;
	uint64_t sbit;
	struct ccvm_backend_caps caps;
	struct ccvm_vcpu *v[2];
	_Atomic int phase;		/* what the threads wait on */
	_Atomic int flag[2];
	_Atomic int entered;
	_Atomic int blocked;
	int run_ret[2];
	uint32_t exit_reason[2];
	uint64_t sync_value[2];
	int syncs[2];
	uint64_t pfn, region;
	bool in_window, window_seen;
	/* busy removal: what the platform trace saw */
	uint32_t rm_leaf;		/* CCVM_EV_TDH_MEM_* of the busy leaf */
	uint32_t rm_last;		/* the last traced event of interest */
	bool rm_waiting;		/* between the busy answer and the retry */
	uint32_t rm_busy, rm_retries, rm_enters;
	char fail[256];
	/* over every run */
	uint64_t windows;
};

#define TW_FAIL(x, ...)	\
	do { if (!(x)->fail[0]) snprintf((x)->fail, sizeof((x)->fail), __VA_ARGS__); } while (0)
#define TW_CHECK(x, cond, ...)	do { if (!(cond)) TW_FAIL((x), __VA_ARGS__); } while (0)

/* Wait, event-driven: until *@w differs from @old. */
static void tw_wait_change(struct twin *x, _Atomic int *w, int old, const char *where)
{
	ccvm_sched_point(x->s, w, where);
	while (atomic_load(w) == old)
		ccvm_spin_wait(x->s, w, old, where);
}

static void tw_set(struct twin *x, _Atomic int *w, int val, const char *where)
{
	ccvm_sched_point(x->s, w, where);
	atomic_store(w, val);
}

/* The run loop of vCPU @i: until an exit other than a sync, counting syncs. */
static int tw_runner(struct twin *x, int i)
{
	struct ccvm_run *run = ccvm_vcpu_run_state(x->v[i]);

	for (;;) {
		x->run_ret[i] = ccvm_vcpu_run(x->v[i]);
		x->exit_reason[i] = run->exit_reason;
		if (x->run_ret[i] || run->exit_reason != CCVM_EXIT_SYNC)
			return 0;
		x->sync_value[i] = run->sync.value;
		x->syncs[i]++;
		if (!x->body || x->sync_value[i] != UINT64_MAX)
			return 0;
	}
}

static int tw_runner0(void *arg)
{
	return tw_runner(arg, 0);
}

static int tw_runner1(void *arg)
{
	return tw_runner(arg, 1);
}

/* vCPU 0 of the twin's VM, running @guest, and the VM finalized. */
static int tw_vcpu0(struct twin *x, ccvm_guest_fn guest)
{
	int r = ccvm_vcpu_create(x->vm, 0, &x->v[0]);

	if (!r)
		r = ccvm_vcpu_set_guest(x->v[0], guest, x);
	if (!r)
		r = ccvm_vm_finalize(x->vm);
	return r;
}

static int tw_setup(struct twin *x)
{
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = 2);
	struct ccvm_memory_region mr = {
		.slot = 0, .flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = 0,
		.memory_size = TW_PAGES * TU_PAGE, .gmem_offset = 0,
	};
	int r;

	r = ccvm_vm_create(x->p, &vo, &x->vm);
	if (r)
		return r;
	x->sbit = ccvm_vm_shared_bit(x->vm);
	tu_get_caps(x->vm, &x->caps);
	r = ccvm_gmem_create(x->vm, TW_PAGES * TU_PAGE, 0, &x->g);
	if (r)
		return r;
	x->shared = aligned_alloc(TU_2M, TU_2M);
	if (!x->shared)
		return -ENOMEM;
	memset(x->shared, 0, TU_2M);
	mr.userspace_addr = x->shared;
	mr.gmem = x->g;
	return ccvm_vm_set_user_memory_region(x->vm, &mr);
}

static int tw_run(struct ccvm_platform *p, void *ctx)
{
	struct twin *x = ctx;
	int r, i;

	x->p = p;
	x->s = ccvm_platform_sched(p);
	x->vm = NULL;
	x->g = NULL;
	x->shared = NULL;
	x->v[0] = x->v[1] = NULL;
	atomic_store(&x->phase, 0);
	atomic_store(&x->flag[0], 0);
	atomic_store(&x->flag[1], 0);
	atomic_store(&x->entered, 0);
	atomic_store(&x->blocked, 0);
	memset(x->run_ret, 0, sizeof(x->run_ret));
	memset(x->exit_reason, 0, sizeof(x->exit_reason));
	memset(x->sync_value, 0, sizeof(x->sync_value));
	memset(x->syncs, 0, sizeof(x->syncs));
	x->in_window = x->window_seen = false;
	x->rm_last = 0;
	x->rm_waiting = false;
	x->rm_busy = x->rm_retries = x->rm_enters = 0;
	x->fail[0] = 0;
	r = tw_setup(x);
	if (!r)
		r = x->body(x);
	for (i = 0; i < 2; i++)
		if (x->v[i])
			ccvm_vcpu_close(x->v[i]);
	if (x->g)
		ccvm_gmem_close(x->g);
	if (x->vm)
		ccvm_vm_close(x->vm);
	free(x->shared);
	return r;
}

/* The scenario's checks, at every quiescent point and at the end of a run. */
static int tw_check(struct ccvm_platform *p, void *ctx, char *msg, size_t msg_sz)
{
	struct twin *x = ctx;

	/* Whatever the schedule, a blocked entry never reaches the backend. */
	if (atomic_load(&x->blocked) && ccvm_op_calls(p, "vcpu_enter") > 0)
		TW_FAIL(x, "vcpu_enter called while entry is blocked");
	if (!x->fail[0])
		return 0;
	snprintf(msg, msg_sz, "%s", x->fail);
	return -EPROTO;
}

/* Was the other thread parked in the window when main reached its check? */
static void tw_event(const struct ccvm_sched_event *e, void *ctx)
{
	struct twin *x = ctx;

	if (e->thread && x->window_func && e->func && e->op == x->window_op &&
	    !strcmp(e->func, x->window_func))
		x->in_window = true;
	if (!e->thread && e->op == CCVM_SCHED_OP_POINT && e->obj && !strcmp(e->obj, "window") &&
	    x->in_window)
		x->window_seen = true;
	/*
	 * busy_removal: while the removal waits for its retry, the guest got
	 * its turn back from the run loop and is on its way into the guest
	 * (ccvm_guest_enter() comes next): the entry the retry must not meet.
	 */
	if (x->rm_waiting && e->thread && e->op == CCVM_SCHED_OP_UNLOCK && e->func &&
	    !strcmp(e->func, "guest_handoff"))
		x->window_seen = true;
}

static void tw_run_done(const struct ccvm_explore_run *run, void *ctx)
{
	struct twin *x = ctx;

	(void)run;
	if (x->window_seen)
		x->windows++;
}

static struct ccvm_explore_result tw_explore(struct twin *x, const char *name, int32_t bound)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = x->backend,
						      .mem_bytes = 64 * TU_MiB, .nr_cpus = 2,
						      .seed = 11);
	struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario, .name = name,
						 .run = tw_run, .check = tw_check, .ctx = x,
						 .platform = &po);
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
						    .strategy = CCVM_EXPLORE_DFS,
						    .flags = CCVM_EXPLORE_QUIET,
						    .preemption_bound = bound, .runs = 100000,
						    .run_fn = tw_run_done, .event_fn = tw_event,
						    .fn_ctx = x);
	struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
	int r;

	x->windows = 0;
	if (x->no_lib_check)
		o.flags |= CCVM_EXPLORE_NO_LIBRARY_CHECK;
	if (getenv("TW_BOUND"))
		o.preemption_bound = atoi(getenv("TW_BOUND"));
	if (x->pct_runs) {
		o.strategy = CCVM_EXPLORE_PCT;
		o.pct_depth = 3;
		o.runs = x->pct_runs;
	}
	if (getenv("TW_RUNS"))
		o.runs = strtoull(getenv("TW_RUNS"), NULL, 0);
	/* The mutants suite replays a failure of a mutant build (check_mutants.c). */
	if (getenv("TW_REPLAY"))
		r = ccvm_replay(&sc, getenv("TW_REPLAY"), &o, &res);
	else
		r = ccvm_explore(&sc, &o, &res);
	if (getenv("TW_VERBOSE"))
		fprintf(stderr, "%s on %s: %" PRIu64 " schedules%s, %" PRIu64 " pruned, %" PRIu64
			" windows, max %" PRIu64 " steps\n", name, x->backend, res.runs,
			res.exhausted ? " (exhausted)" : "", res.pruned, x->windows, res.max_steps);
	ck_assert_msg(r == 0, "%s on %s: %d: %s (token %s)", name, x->backend, r,
		      res.message ? res.message : "", res.token ? res.token : "-");
	if (getenv("TW_REPLAY"))
		return res;
	ck_assert_msg(x->pct_runs || res.exhausted, "%s on %s: not exhausted in %" PRIu64 " schedules", name,
		      x->backend, res.runs);
	ck_assert_uint_gt(res.runs, 1);
	if (x->window_func || x->window_body)
		ck_assert_msg(x->windows > 0, "%s on %s: no schedule reached the window", name,
			      x->backend);
	return res;
}

static const char *const tw_backends[] = { "mock", "tdx", "snp" };

/* ---- entry blocked ------------------------------------------------------------------ */

static void guest_mark_entered(struct ccvm_guest *g, void *arg)
{
	struct twin *x = arg;

	tw_set(x, &x->entered, 1, "entered");
	ccvm_guest_sync(g, 9);
}

static int body_entry_blocked(struct twin *x)
{
	struct ccvm_thread *t;
	int r, ret = 0;

	r = tw_vcpu0(x, guest_mark_entered);
	if (r)
		return r;
	atomic_store(&x->blocked, 1);
	ccvm_vm_block_entry(x->vm);
	r = ccvm_thread_create(x->p, &t, tw_runner0, x, "run0");
	if (r)
		return r;
	/* The runner may have gone as far as it can: not into the guest. */
	ccvm_sched_point(x->s, &x->entered, "window");
	TW_CHECK(x, !atomic_load(&x->entered), "the guest ran while entry is blocked");
	TW_CHECK(x, ccvm_op_calls(x->p, "vcpu_enter") == 0, "vcpu_enter while blocked");
	ccvm_sched_point(x->s, &x->vm->entry_blocked, "unblock");
	ccvm_vm_unblock_entry(x->vm);
	atomic_store(&x->blocked, 0);
	r = ccvm_thread_join(t, &ret);
	if (r || ret)
		return r ? r : ret;
	TW_CHECK(x, x->run_ret[0] == 0 && x->exit_reason[0] == CCVM_EXIT_SYNC &&
		 x->sync_value[0] == 9, "run: %d, exit %u, sync %" PRIu64, x->run_ret[0],
		 x->exit_reason[0], x->sync_value[0]);
	TW_CHECK(x, atomic_load(&x->entered) == 1, "the guest did not run after unblock");
	TW_CHECK(x, ccvm_op_calls(x->p, "vcpu_enter") >= 1, "no vcpu_enter after unblock");
	return 0;
}

START_TEST(test_entry_blocked)
{
	struct twin x = { .backend = tw_backends[_i], .body = body_entry_blocked,
			  .no_lib_check = true,	/* I21: blocked entry at rest */
			  .window_func = "ccvm_guest_enter",
			  .window_op = CCVM_SCHED_OP_RWUNLOCK };
	struct ccvm_explore_result res = tw_explore(&x, "entry-blocked", 2);

	ccvm_explore_result_release(&res);
}
END_TEST

/* ---- run while running; calls from the guest on its own vCPU ------------------------------ */

static void guest_waits(struct ccvm_guest *g, void *arg)
{
	struct twin *x = arg;
	struct ccvm_vcpu *v = x->v[0];

	(void)g;
	TW_CHECK(x, ccvm_vcpu_run(v) == -EDEADLK, "run from its own guest");
	TW_CHECK(x, ccvm_vcpu_close(v) == -EDEADLK, "close from its own guest");
	TW_CHECK(x, ccvm_vcpu_set_guest(v, guest_waits, x) == -EDEADLK,
		 "set_guest from its own guest");
	tw_set(x, &x->phase, 1, "started");
	tw_wait_change(x, &x->phase, 1, "go");
}

static int body_run_busy(struct twin *x)
{
	struct ccvm_thread *t;
	int r, ret = 0;

	r = tw_vcpu0(x, guest_waits);
	if (!r)
		r = ccvm_thread_create(x->p, &t, tw_runner0, x, "run0");
	if (r)
		return r;
	tw_wait_change(x, &x->phase, 0, "started");
	TW_CHECK(x, ccvm_vcpu_run(x->v[0]) == -EBUSY, "a second run of a running vCPU");
	tw_set(x, &x->phase, 2, "go");
	r = ccvm_thread_join(t, &ret);
	if (r || ret)
		return r ? r : ret;
	TW_CHECK(x, x->run_ret[0] == 0 && x->exit_reason[0] == CCVM_EXIT_DONE,
		 "run: %d, exit %u", x->run_ret[0], x->exit_reason[0]);
	return 0;
}

START_TEST(test_run_busy)
{
	struct twin x = { .backend = tw_backends[_i], .body = body_run_busy };
	struct ccvm_explore_result res = tw_explore(&x, "run-busy", 2);

	ccvm_explore_result_release(&res);
}
END_TEST

/* ---- a kick makes the guest enter again ------------------------------------------------- */

#define TW_KICK_GPA	(5 * TU_PAGE)

static void guest_kicked(struct ccvm_guest *g, void *arg)
{
	struct twin *x = arg;
	uint64_t w = 0x1234;

	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, TW_KICK_GPA | x->sbit, &w, sizeof(w)));
	tw_set(x, &x->phase, 1, "written");
	tw_wait_change(x, &x->phase, 1, "kicked");
	w = 0;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, TW_KICK_GPA | x->sbit, &w, sizeof(w)));
	ccvm_guest_sync(g, w);
}

static int body_kick_reenter(struct twin *x)
{
	struct ccvm_thread *t;
	uint64_t enters;
	int r, ret = 0;

	r = tw_vcpu0(x, guest_kicked);
	if (!r)
		r = ccvm_thread_create(x->p, &t, tw_runner0, x, "run0");
	if (r)
		return r;
	tw_wait_change(x, &x->phase, 0, "written");
	TW_CHECK(x, ccvm_vcpu_in_guest(x->v[0]), "the guest waits outside guest mode");
	enters = tu_vm_event(x->vm, CCVM_EV_GUEST_ENTER);
	ccvm_vm_kick_all(x->vm);
	TW_CHECK(x, !ccvm_vcpu_in_guest(x->v[0]), "still in guest mode after the kick");
	tw_set(x, &x->phase, 2, "kicked");
	r = ccvm_thread_join(t, &ret);
	if (r || ret)
		return r ? r : ret;
	TW_CHECK(x, x->run_ret[0] == 0 && x->exit_reason[0] == CCVM_EXIT_SYNC &&
		 x->sync_value[0] == 0x1234, "run: %d, exit %u, sync %#" PRIx64, x->run_ret[0],
		 x->exit_reason[0], x->sync_value[0]);
	/* The access after the kick entered again, exactly once. */
	TW_CHECK(x, tu_vm_event(x->vm, CCVM_EV_GUEST_ENTER) == enters + 1,
		 "%" PRIu64 " entries after the kick",
		 tu_vm_event(x->vm, CCVM_EV_GUEST_ENTER) - enters);
	TW_CHECK(x, !ccvm_vcpu_in_guest(x->v[0]), "in guest mode after the exit");
	return 0;
}

START_TEST(test_kick_reenter)
{
	struct twin x = { .backend = tw_backends[_i], .body = body_kick_reenter };
	struct ccvm_explore_result res = tw_explore(&x, "kick-reenter", 2);

	ccvm_explore_result_release(&res);
}
END_TEST

/* ---- two vCPUs really run at once ----------------------------------------------------- */

#define TW_RDV_ROUNDS	2

/* Each guest waits for the other to start: both finish only if both run. */
static void guest_rendezvous(struct ccvm_guest *g, void *arg)
{
	struct twin *x = arg;
	uint32_t i = ccvm_guest_vcpu_id(g);
	uint64_t base = (uint64_t)(8 + 4 * i) * TU_PAGE, w, r;
	int round;

	tw_set(x, &x->flag[i], 1, "arrived");
	tw_wait_change(x, &x->flag[!i], 0, "arrived");
	for (round = 0; round < TW_RDV_ROUNDS; round++) {
		w = 0x100 * (i + 1) + (uint64_t)round;
		/* Across a page boundary, on the shared side. */
		CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, (base + TU_PAGE - 4) | x->sbit, &w,
						       sizeof(w)));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, (base + TU_PAGE - 4) | x->sbit, &r,
						      sizeof(r)) && r == w);
		ccvm_guest_sync(g, UINT64_MAX);
	}
}

static int body_rendezvous(struct twin *x)
{
	struct ccvm_thread *t[2];
	int r = 0, ret, i, n = 0;

	for (i = 0; i < 2 && !r; i++) {
		r = ccvm_vcpu_create(x->vm, (uint32_t)i, &x->v[i]);
		if (!r)
			r = ccvm_vcpu_set_guest(x->v[i], guest_rendezvous, x);
	}
	if (!r)
		r = ccvm_vm_finalize(x->vm);
	for (i = 0; i < 2 && !r; i++) {
		r = ccvm_thread_create(x->p, &t[i], i ? tw_runner1 : tw_runner0, x,
				       i ? "run1" : "run0");
		if (!r)
			n++;
	}
	for (i = 0; i < n; i++) {
		ret = 0;
		if (ccvm_thread_join(t[i], &ret) || ret)
			r = r ? r : -EPROTO;
	}
	if (r)
		return r;
	for (i = 0; i < 2; i++)
		TW_CHECK(x, x->run_ret[i] == 0 && x->exit_reason[i] == CCVM_EXIT_DONE &&
			 x->syncs[i] == TW_RDV_ROUNDS, "vcpu %d: run %d, exit %u, %d syncs", i,
			 x->run_ret[i], x->exit_reason[i], x->syncs[i]);
	return 0;
}

START_TEST(test_rendezvous)
{
	struct twin x = { .backend = tw_backends[_i], .body = body_rendezvous, .pct_runs = 100 };
	struct ccvm_explore_result res = tw_explore(&x, "rendezvous", 0);

	/* Its DFS tree is too large for the suite (> 3,000 schedules at bound 0):
	 * 100 PCT schedules, depth 3, seed 0. */
	ck_assert_uint_eq(res.runs, 100);

	ccvm_explore_result_release(&res);
}
END_TEST

/* ---- SNP: RMPUPDATE against a region another CPU holds ---------------------------------- */

static int tw_make_private(void *arg)
{
	struct twin *x = arg;

	return ccvm_snp_rmp_make_private(ccvm_snp_hw_of(x->p), NULL, x->pfn, 0, CCVM_LEVEL_4K, 1,
					 false);
}

static int body_snp_overlap(struct twin *x)
{
	struct ccvm_snp_hw *hw = ccvm_snp_hw_of(x->p);
	_Atomic uint64_t *fails = &hw->nr_fail_overlap;
	struct ccvm_thread *t;
	uint64_t seen;
	int r, ret = 0;

	r = ccvm_page_alloc(x->p, &x->pfn);
	if (r)
		return r;
	x->region = x->pfn & ~(uint64_t)(CCVM_HPAGE_2M_SIZE / CCVM_PAGE_SIZE - 1);
	/* Another CPU (this thread) holds the region. */
	TW_CHECK(x, ccvm_snp_region_trylock(hw, x->region), "the region is held");
	seen = atomic_load(fails);
	r = ccvm_thread_create(x->p, &t, tw_make_private, x, "rmpupdate");
	if (r)
		return r;
	ccvm_sched_point(x->s, fails, "window");
	/* The window: the RMPUPDATE already failed on the held region. */
	if (atomic_load(fails) != seen)
		x->window_seen = true;
	TW_CHECK(x, !ccvm_snp_pfn_assigned(hw, x->pfn), "RMPUPDATE went through a held region");
	/* Until the RMPUPDATE really failed on it. */
	while (atomic_load(fails) == seen)
		ccvm_spin_wait(x->s, fails, seen, "overlap");
	TW_CHECK(x, !ccvm_snp_pfn_assigned(hw, x->pfn), "RMPUPDATE went through a held region");
	ccvm_snp_region_unlock(hw, x->region);
	r = ccvm_thread_join(t, &ret);
	if (r)
		return r;
	TW_CHECK(x, ret == 0, "rmp_make_private: %d", ret);
	TW_CHECK(x, ccvm_snp_pfn_assigned(hw, x->pfn), "not assigned after the retry");
	TW_CHECK(x, tu_event(x->p, CCVM_EV_RMPUPDATE_RETRY) >= 1, "no retry counted");
	r = ccvm_snp_rmp_make_shared(hw, NULL, x->pfn, CCVM_LEVEL_4K);
	if (!r)
		ccvm_page_free(x->p, x->pfn);
	return r;
}

START_TEST(test_snp_overlap)
{
	struct twin x = { .backend = "snp", .body = body_snp_overlap,
			  .no_lib_check = true,	/* I23: a page no VM holds is assigned */
			  .window_body = true };
	struct ccvm_explore_result res = tw_explore(&x, "snp-overlap", 2);

	ccvm_explore_result_release(&res);
}
END_TEST

/* ---- TDX: a removal answered busy keeps the vCPU out until its retry -------------------- */

#define TW_RM_GPA	(4 * TU_PAGE)	/* private, accepted, then converted to shared */
#define TW_RM_SHARED	(6 * TU_PAGE)	/* read after the removal: a new entry */

static const uint32_t tw_rm_leaves[][2] = {
	{ CCVM_TDH_MEM_RANGE_BLOCK, CCVM_EV_TDH_MEM_RANGE_BLOCK },
	{ CCVM_TDH_MEM_TRACK, CCVM_EV_TDH_MEM_TRACK },
	{ CCVM_TDH_MEM_PAGE_REMOVE, CCVM_EV_TDH_MEM_PAGE_REMOVE },
};

/*
 * The platform trace, as check_tdx_busy.c reads it afterwards, checked as
 * it comes: a TDX_BUSY right after the leaf opens the wait, the leaf's next
 * call (the retry) closes it; no VP.ENTER in between, and no vCPU in guest
 * mode when the retry is made (the kick took it out, the block kept it out).
 */
static void tw_rm_trace(const struct ccvm_trace_record *rec, void *ctx)
{
	struct twin *x = ctx;
	uint32_t e = rec->id;

	if (rec->kind != CCVM_TRACE_EVENT)
		return;
	if (e != CCVM_EV_TDH_MEM_RANGE_BLOCK && e != CCVM_EV_TDH_MEM_TRACK &&
	    e != CCVM_EV_TDH_MEM_PAGE_REMOVE && e != CCVM_EV_TDX_BUSY &&
	    e != CCVM_EV_TDH_VP_ENTER)
		return;
	if (e == CCVM_EV_TDX_BUSY && x->rm_last == x->rm_leaf) {
		x->rm_waiting = true;
		x->rm_busy++;
	} else if (e == x->rm_leaf && x->rm_waiting) {
		x->rm_waiting = false;
		x->rm_retries++;
		TW_CHECK(x, !ccvm_vcpu_in_guest(x->v[0]),
			 "the busy leaf's retry with the vCPU in guest mode");
	} else if (e == CCVM_EV_TDH_VP_ENTER) {
		x->rm_enters++;
		TW_CHECK(x, !x->rm_waiting, "VP.ENTER while a removal waits for its retry");
	}
	x->rm_last = e;
}

static void guest_busy_removal(struct ccvm_guest *g, void *arg)
{
	struct twin *x = arg;
	uint64_t w = 0;

	CCVM_GUEST_ASSERT(g, !ccvm_guest_accept(g, TW_RM_GPA, TU_PAGE));
	tw_set(x, &x->phase, 1, "started");
	/* Out and in again: an entry that may meet the removal. */
	ccvm_guest_sync(g, UINT64_MAX);
	/* In guest mode until the removal is done: its kicks take the vCPU out. */
	tw_wait_change(x, &x->phase, 1, "removed");
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, TW_RM_SHARED | x->sbit, &w, sizeof(w)));
}

static int body_busy_removal(struct twin *x, unsigned int leaf)
{
	struct ccvm_tdx_module *m = ccvm_tdx_module_of(x->p);
	struct ccvm_thread *t;
	int r, ret = 0;

	r = ccvm_vm_set_memory_attributes(x->vm, TW_RM_GPA, TU_PAGE,
					  CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	if (!r)
		r = tw_vcpu0(x, guest_busy_removal);
	if (!r)
		r = ccvm_thread_create(x->p, &t, tw_runner0, x, "run0");
	if (r)
		return r;
	tw_wait_change(x, &x->phase, 0, "started");
	x->rm_leaf = tw_rm_leaves[leaf][1];
	r = ccvm_platform_set_trace(x->p, tw_rm_trace, x);
	if (!r)
		r = ccvm_tdx_inject(m, tw_rm_leaves[leaf][0], 1,
				    TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_SEPT, 1);
	/* The removal: busy once, then blocked entry, the kick and the retry. */
	if (!r)
		r = ccvm_vm_set_memory_attributes(x->vm, TW_RM_GPA, TU_PAGE, 0, 0);
	TW_CHECK(x, r == 0, "conversion to shared: %d", r);
	tw_set(x, &x->phase, 2, "removed");
	r = ccvm_thread_join(t, &ret);
	ccvm_platform_set_trace(x->p, NULL, NULL);
	if (r || ret)
		return r ? r : ret;
	TW_CHECK(x, x->rm_busy == 1 && x->rm_retries == 1, "%u busy answers, %u retries",
		 x->rm_busy, x->rm_retries);
	TW_CHECK(x, !ccvm_vm_is_bugged(x->vm), "the VM is bugged");
	TW_CHECK(x, atomic_load(&x->vm->entry_blocked) == 0, "entry still blocked");
	TW_CHECK(x, x->run_ret[0] == 0 && x->exit_reason[0] == CCVM_EXIT_DONE,
		 "run: %d, exit %u", x->run_ret[0], x->exit_reason[0]);
	/* The guest entered again after the removal (its read). */
	TW_CHECK(x, x->rm_enters >= 1, "no VP.ENTER while traced");
	return 0;
}

static int body_busy_removal_block(struct twin *x)
{
	return body_busy_removal(x, 0);
}

static int body_busy_removal_track(struct twin *x)
{
	return body_busy_removal(x, 1);
}

static int body_busy_removal_remove(struct twin *x)
{
	return body_busy_removal(x, 2);
}

START_TEST(test_busy_removal)
{
	static const twin_body bodies[] = {
		body_busy_removal_block, body_busy_removal_track, body_busy_removal_remove,
	};
	static const char *const names[] = {
		"busy-removal-block", "busy-removal-track", "busy-removal-remove",
	};
	struct twin x = { .backend = "tdx", .body = bodies[_i], .window_body = true };
	struct ccvm_explore_result res;

	/* TW_LEAF=i: only that leaf (the mutants suite runs one at a time). */
	if (getenv("TW_LEAF") && atoi(getenv("TW_LEAF")) != _i)
		return;
	/* Bound 1 still reaches the window (and still checks every schedule). */
	/* Thousands of schedules at bound 2: bound 1 under a sanitizer (TU_SANITIZED). */
	res = tw_explore(&x, names[_i], TU_SANITIZED ? 1 : 2);
	ccvm_explore_result_release(&res);
}
END_TEST

Suite *twins_suite(void)
{
	Suite *s = suite_create("twins");
	TCase *tc = tcase_create("twins");

	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_entry_blocked, 0, 3);
	tcase_add_loop_test(tc, test_run_busy, 0, 3);
	tcase_add_loop_test(tc, test_kick_reenter, 0, 3);
	tcase_add_loop_test(tc, test_rendezvous, 0, 3);
	tcase_add_test(tc, test_snp_overlap);
	suite_add_tcase(s, tc);
	/* About 2,500 TDX schedules each: a minute alone, 300 s and more on a loaded machine. */
	tc = tcase_create("busy_removal");
	tcase_set_timeout(tc, 900);
	tcase_add_loop_test(tc, test_busy_removal, 0, 3);
	suite_add_tcase(s, tc);
	return s;
}
