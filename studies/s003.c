/* SPDX-License-Identifier: MIT */
/*
 * Study 003's scenarios (docs/studies/003.md): real contention in the TDX
 * module between threads of one TD, under the three ways of handling a
 * busy S-EPT SEAMCALL that the thread weighed (study knob
 * CCVM_STUDY_TDX_BUSY).
 *
 *   install-accept  two vCPUs accept the same eight pages: one's fault
 *                   installs a page (PAGE.AUG, under mmu_lock read) while
 *                   the other's TDG.MEM.PAGE.ACCEPT holds its S-EPT entry.
 *   removal-entry   the VMM converts two mapped private pages to shared
 *                   (BLOCK, TRACK, REMOVE under mmu_lock write) while the
 *                   vCPU enters and leaves the guest (VP.ENTER takes the
 *                   TD's epoch lock that TRACK needs alone).
 *
 * Every run is one schedule of the deterministic scheduler: busy answers
 * come only from the interleavings the schedule picks, and a run replays
 * from its token.  The vCPU run loops act as a VMM would: a failed run
 * (internal error) is counted and the vCPU run again, a bugged VM ends
 * them.  A run is bad when anything failed, the VM was bugged or a page
 * was lost.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/ccvm.h>
#include <ccvm/explore.h>

#include "study.h"

#define S003_PAGES	16u
#define S003_PAGE	CCVM_PAGE_SIZE
#define S003_X		(15 * S003_PAGE)	/* mapped at setup (install-accept) */
#define S003_P		(4 * S003_PAGE)		/* the pages both vCPUs accept */
#define S003_ACCEPT_PAGES 8u
#define S003_Q		(12 * S003_PAGE)	/* the page the entering vCPU writes */
#define S003_CONV	0ull			/* pages the VMM converts ... */
#define S003_CONV_PAGES	2u			/* ... one by one */
#define S003_ROUNDS	2u			/* the entering guest's entries */
#define S003_RUNS_MAX	64u			/* runs of one vCPU in one schedule */

const char *const s003_policy_names[S003_NR_POLICIES] = {
	[S003_SPIN] = "spin",
	[S003_GIVE_UP] = "give-up",
	[S003_MERGED] = "merged",
};

const char *const s003_race_names[S003_NR_RACES] = {
	[S003_INSTALL_ACCEPT] = "install vs accept",
	[S003_REMOVAL_ENTRY] = "removal vs entry",
};

static const uint32_t policy_knob[S003_NR_POLICIES] = {
	[S003_SPIN] = CCVM_TDX_BUSY_SPIN,
	[S003_GIVE_UP] = CCVM_TDX_BUSY_GIVE_UP,
	[S003_MERGED] = CCVM_TDX_BUSY_MERGED,
};

struct s003_ctx;

struct s003_vcpu {
	struct s003_ctx *x;
	struct ccvm_vcpu *v;
	uint64_t errors;		/* runs that ended in an internal error */
};

struct s003_ctx {
	enum s003_policy policy;
	enum s003_race race;
	const char *trace;
	/* per run */
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct s003_vcpu vc[2];
	unsigned int nr_vcpus;
	uint64_t vmm_errors;
	uint64_t ev[CCVM_EV_NR];	/* the VM's events at the end of the run */
	bool bugged;
	uint64_t leaked;
	bool done;
	/* over the sweep */
	struct s003_result *res;
};

/*
 * Whether @vm is bugged, from the public API: finalizing a finalized VM is
 * -EINVAL, unless the VM is bugged (-EIO), and changes nothing either way.
 */
static bool vm_bugged(struct ccvm_vm *vm)
{
	return ccvm_vm_finalize(vm) == -EIO;
}

/*
 * Both vCPUs accept the same pages of one 2 MiB region, in the same order,
 * and write their word of each: for every page one vCPU's fault installs
 * it (PAGE.AUG, under mmu_lock read) while the other's
 * TDG.MEM.PAGE.ACCEPT may hold the page's S-EPT entry, or the reverse.
 * The region's S-EPT page is linked before (S003_X is mapped at setup),
 * so an accept of a page not mapped yet locks its FREE entry.
 */
static void accept_guest(struct ccvm_guest *g, void *arg)
{
	uint64_t id = ccvm_guest_vcpu_id(g), i, gpa, w;
	int e;

	(void)arg;
	for (i = 0; i < S003_ACCEPT_PAGES; i++) {
		gpa = S003_P + i * S003_PAGE;
		w = (i << 8) | id;
		e = ccvm_guest_accept(g, gpa, S003_PAGE);
		CCVM_GUEST_ASSERT(g, e == 0 || e == -EEXIST);
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, gpa + 8 * id, &w, sizeof(w)) == 0);
	}
}

/* The vCPU writes Q and exits to the VMM, S003_ROUNDS times. */
static void entry_guest(struct ccvm_guest *g, void *arg)
{
	uint64_t i;

	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, S003_Q, S003_PAGE) == 0);
	for (i = 0; i < S003_ROUNDS; i++) {
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, S003_Q, &i, sizeof(i)) == 0);
		ccvm_guest_sync(g, i);
	}
}

/* A VMM's run loop: an internal error is reported and the vCPU run again. */
static int s003_runner(void *arg)
{
	struct s003_vcpu *c = arg;
	struct ccvm_run *run = ccvm_vcpu_run_state(c->v);
	struct ccvm_sched *s = ccvm_platform_sched(c->x->p);
	unsigned int n;
	int r;

	for (n = 0; n < S003_RUNS_MAX; n++) {
		r = ccvm_vcpu_run(c->v);
		if (vm_bugged(c->x->vm))
			return 0;	/* the VMM can only tear it down */
		if (r == -EIO && run->exit_reason == CCVM_EXIT_INTERNAL_ERROR) {
			c->errors++;
			ccvm_sched_yield(s, "run failed");
			continue;
		}
		if (r)
			return r;
		if (run->exit_reason == CCVM_EXIT_DONE)
			return 0;
		if (run->exit_reason != CCVM_EXIT_SYNC)
			return -EPROTO;
	}
	return -ELOOP;
}

/* The VMM converts the mapped pages to shared, one page at a time. */
static int s003_converter(void *arg)
{
	struct s003_ctx *x = arg;
	unsigned int i;
	int r;

	for (i = 0; i < S003_CONV_PAGES; i++) {
		r = ccvm_vm_set_memory_attributes(x->vm, S003_CONV + i * S003_PAGE, S003_PAGE,
						  0, 0);
		if (r == -EIO && vm_bugged(x->vm)) {
			x->vmm_errors++;
			return 0;
		}
		if (r)
			return r;
	}
	return 0;
}

static int s003_setup(struct ccvm_platform *p, struct s003_ctx *x)
{
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = 2);
	struct ccvm_memory_region mr = {
		.slot = 0, .flags = CCVM_MEM_GUEST_MEMFD, .memory_size = S003_PAGES * S003_PAGE,
	};
	uint64_t gpa = S003_CONV, size = S003_CONV_PAGES * S003_PAGE;
	unsigned int i;
	int r;

	x->nr_vcpus = x->race == S003_INSTALL_ACCEPT ? 2 : 1;
	r = ccvm_vm_create(p, &vo, &x->vm);
	if (!r)
		r = ccvm_vm_set_study_knob(x->vm, CCVM_STUDY_TDX_BUSY, policy_knob[x->policy]);
	if (!r)
		r = ccvm_gmem_create(x->vm, S003_PAGES * S003_PAGE, 0, &x->g);
	if (r)
		return r;
	mr.gmem = x->g;
	r = ccvm_vm_set_user_memory_region(x->vm, &mr);
	if (!r)
		r = ccvm_vm_set_memory_attributes(x->vm, 0, S003_PAGES * S003_PAGE,
						  CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	for (i = 0; !r && i < x->nr_vcpus; i++) {
		x->vc[i].x = x;
		r = ccvm_vcpu_create(x->vm, i, &x->vc[i].v);
		if (!r)
			r = ccvm_vcpu_set_guest(x->vc[i].v, x->race == S003_INSTALL_ACCEPT ?
						accept_guest : entry_guest, x);
	}
	if (!r)
		r = ccvm_vm_finalize(x->vm);
	/* In the S-EPT (PAGE.AUG): the pages to convert, or X. */
	if (x->race == S003_INSTALL_ACCEPT) {
		gpa = S003_X;
		size = S003_PAGE;
	}
	while (!r && size)
		r = ccvm_vcpu_pre_fault_memory(x->vc[0].v, &gpa, &size);
	return r;
}

static void s003_count(struct s003_ctx *x)
{
	struct s003_result *res = x->res;
	uint64_t busy = x->ev[CCVM_EV_TDX_BUSY], errors = x->vmm_errors;
	unsigned int i;

	for (i = 0; i < x->nr_vcpus; i++)
		errors += x->vc[i].errors;
	res->runs++;
	if (busy)
		res->contended_runs++;
	if (errors || x->bugged || x->leaked) {
		if (!res->bad_runs)
			res->first_bad_run = res->runs - 1;
		res->bad_runs++;
	}
	res->busy += busy;
	if (busy > res->max_busy)
		res->max_busy = busy;
	res->fault_retries += x->ev[CCVM_EV_FAULT_RETRY];
	res->kicks += x->ev[CCVM_EV_IPI];
	res->errors += errors;
	res->bugged += x->bugged;
	res->leaked += x->leaked;
}

static int s003_scenario(struct ccvm_platform *p, void *ctx)
{
	struct s003_ctx *x = ctx;
	struct ccvm_stats st = { .sz = sizeof(st) };
	struct ccvm_trace_opts topts = CCVM_OPTS_INIT(struct ccvm_trace_opts,
		.clock = CCVM_TRACE_CLOCK_SIM);
	struct ccvm_thread *t[3];
	unsigned int i, n = 0;
	int err;

	x->p = p;
	x->vm = NULL;
	x->g = NULL;
	memset(x->vc, 0, sizeof(x->vc));
	x->vmm_errors = 0;
	x->bugged = false;
	x->leaked = 0;
	x->done = false;
	err = x->trace ? ccvm_trace_open_opts(p, x->trace, &topts) : 0;
	if (!err)
		err = s003_setup(p, x);
	if (!err && x->race == S003_REMOVAL_ENTRY &&
	    !(err = ccvm_thread_create(p, &t[n], s003_converter, x, "converter")))
		n++;
	for (i = 0; !err && i < x->nr_vcpus; i++)
		if (!(err = ccvm_thread_create(p, &t[n], s003_runner, &x->vc[i],
					       i ? "vcpu1" : "vcpu0")))
			n++;
	err = study_join(t, n, err);
	study_vm_events(x->vm, x->ev);
	x->bugged = x->vm && vm_bugged(x->vm);
	for (i = 0; i < 2; i++)
		if (x->vc[i].v)
			ccvm_vcpu_close(x->vc[i].v);
	if (x->g)
		ccvm_gmem_close(x->g);
	if (x->vm)
		ccvm_vm_close(x->vm);	/* the last reference: teardown */
	x->vm = NULL;
	x->g = NULL;
	st = (struct ccvm_stats){ .sz = sizeof(st) };
	if (!ccvm_platform_get_stats(p, &st))
		x->leaked = st.leaked_pages;
	if (x->trace)
		ccvm_trace_close(p);
	x->done = true;
	if (!err && x->res)
		s003_count(x);
	return err;
}

/* A run is bad when the VMM saw an error, the VM was bugged or a page lost. */
static int s003_check(struct ccvm_platform *p, void *ctx, char *msg, size_t msg_sz)
{
	struct s003_ctx *x = ctx;
	uint64_t errors = x->vmm_errors + x->vc[0].errors + x->vc[1].errors;

	(void)p;
	if (!x->done || (!errors && !x->bugged && !x->leaked))
		return 0;
	snprintf(msg, msg_sz, "%s under %s: %" PRIu64 " errors surfaced, VM %s, %" PRIu64
		 " pages leaked (%" PRIu64 " busy answers)", s003_race_names[x->race],
		 s003_policy_names[x->policy], errors, x->bugged ? "bugged" : "fine",
		 x->leaked, x->ev[CCVM_EV_TDX_BUSY]);
	return 1;
}

static int s003_go(enum s003_policy policy, enum s003_race race, uint32_t strategy,
		   int32_t bound, uint64_t seed, uint64_t runs, bool check, const char *trace,
		   const char *token, struct s003_result *res, char **token_out)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = "tdx", .mem_bytes = 32 * STUDY_MIB, .nr_cpus = 2, .seed = 3);
	struct s003_ctx x = { .policy = policy, .race = race, .trace = trace, .res = res };
	struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario,
		.name = "tdx-busy", .run = s003_scenario,
		.check = check ? s003_check : NULL, .ctx = &x, .platform = &po);
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
		.strategy = strategy,
		.flags = CCVM_EXPLORE_QUIET | (check ? 0 : CCVM_EXPLORE_NO_LIBRARY_CHECK),
		.seed = seed, .runs = runs, .preemption_bound = bound,
		.pct_depth = strategy == CCVM_EXPLORE_PCT && bound > 0 ? (uint32_t)bound : 0);
	struct ccvm_explore_result er = CCVM_OPTS_INIT(struct ccvm_explore_result);
	int err;

	if (policy >= S003_NR_POLICIES || race >= S003_NR_RACES || !res ||
	    strategy >= CCVM_EXPLORE_NR)
		return -EINVAL;
	*res = (struct s003_result){ .first_bad_run = UINT64_MAX };
	err = token ? ccvm_replay(&sc, token, &o, &er) : ccvm_explore(&sc, &o, &er);
	res->explored = token ? 1 : er.runs;
	res->failure = er.failure;
	res->failed_run = er.failure ? er.failed_run : UINT64_MAX;
	if (token_out)
		*token_out = er.token ? strdup(er.token) : NULL;
	if (er.failure && er.message)
		snprintf(res->message, sizeof(res->message), "%s", er.message);
	ccvm_explore_result_release(&er);
	return er.failure == CCVM_EXPLORE_FAIL_CHECK ? 0 : err;
}

int s003_explore(enum s003_policy policy, enum s003_race race, uint32_t strategy,
		 int32_t bound, uint64_t seed, uint64_t runs, bool check, const char *trace,
		 struct s003_result *res, char **token)
{
	return s003_go(policy, race, strategy, bound, seed, runs, check, trace, NULL, res, token);
}

int s003_replay(enum s003_policy policy, enum s003_race race, const char *token,
		struct s003_result *res)
{
	if (!token)
		return -EINVAL;
	return s003_go(policy, race, CCVM_EXPLORE_RANDOM, 0, 0, 1, true, NULL, token, res, NULL);
}
