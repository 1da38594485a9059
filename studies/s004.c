/* SPDX-License-Identifier: MIT */
/*
 * Study 004's scenario (docs/studies/004.md): on an SNP VM, the VMM
 * converts one page to private on one thread while the guest, on its vCPU,
 * validates that page and uses it.  Which design the VM runs is the study
 * knob CCVM_STUDY_SNP_RMP_UPDATE.  The race the thread describes: a fault
 * that finds the attribute PRIVATE before the conversion's RMPUPDATE
 * landed maps a page the RMP does not give the guest yet, and the guest
 * takes RMP nested faults until the update lands.
 *
 * Every run is one schedule of the deterministic scheduler, so a run is
 * replayed exactly from its token.  The check fails a run whose guest took
 * an RMP nested fault (and the library's invariant checker runs at every
 * quiescent point besides).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/ccvm.h>
#include <ccvm/explore.h>

#include "study.h"

#define S004_PAGES	16u
#define S004_PAGE	CCVM_PAGE_SIZE
#define S004_2M		CCVM_HPAGE_2M_SIZE
#define S004_CONV	(4 * S004_PAGE)		/* the range being converted */
#define S004_CONV_PAGES	8u
/* The page the guest uses: the last one of the range. */
#define S004_GPA	(S004_CONV + (S004_CONV_PAGES - 1) * S004_PAGE)

const char *const s004_design_names[S004_NR_DESIGNS] = {
	[S004_POSTED] = "posted",
	[S004_LOCKED] = "locked",
	[S004_MERGED] = "merged",
};

static const uint32_t design_knob[S004_NR_DESIGNS] = {
	[S004_POSTED] = CCVM_SNP_RMP_POSTED,
	[S004_LOCKED] = CCVM_SNP_RMP_LOCKED,
	[S004_MERGED] = CCVM_SNP_RMP_MERGED,
};

struct s004_ctx {
	enum s004_design design;
	const char *trace;		/* trace file of every run, or NULL */
	/* per run */
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct ccvm_vcpu *v;
	uint8_t *shared;
	uint64_t ev[CCVM_EV_NR];	/* the VM's events, kept at the end of a run */
	bool done;			/* the run is over, ev final */
	/* over the sweep */
	struct s004_result *res;
};

/* The guest validates the last page the VMM is making private and uses it. */
static void s004_guest(struct ccvm_guest *g, void *arg)
{
	uint64_t w = 0x5eed0004, r = 0;

	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, S004_GPA, S004_PAGE) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, S004_GPA, &w, sizeof(w)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, S004_GPA, &r, sizeof(r)) == 0 && r == w);
}

/* The vCPU's run loop: a memory fault means the page is still shared. */
static int s004_runner(void *arg)
{
	struct s004_ctx *x = arg;
	struct ccvm_vcpu *v = x->v;
	struct ccvm_run *run = ccvm_vcpu_run_state(v);
	struct ccvm_sched *s = ccvm_platform_sched(x->p);
	int r;

	for (;;) {
		r = ccvm_vcpu_run(v);
		if (r == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT) {
			ccvm_sched_yield(s, "memory fault");
			continue;
		}
		if (r)
			return r;
		if (run->exit_reason == CCVM_EXIT_DONE)
			return 0;
		return -EPROTO;
	}
}

static int s004_converter(void *arg)
{
	struct s004_ctx *x = arg;

	return ccvm_vm_set_memory_attributes(x->vm, S004_CONV, S004_CONV_PAGES * S004_PAGE,
					     CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
}

static int s004_setup(struct ccvm_platform *p, struct s004_ctx *x)
{
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = 1);
	struct ccvm_memory_region mr = {
		.slot = 0, .flags = CCVM_MEM_GUEST_MEMFD,
		.memory_size = S004_PAGES * S004_PAGE,
	};
	int r;

	r = ccvm_vm_create(p, &vo, &x->vm);
	if (!r)
		r = ccvm_vm_set_study_knob(x->vm, CCVM_STUDY_SNP_RMP_UPDATE,
					   design_knob[x->design]);
	if (!r)
		r = ccvm_gmem_create(x->vm, S004_PAGES * S004_PAGE, 0, &x->g);
	if (r)
		return r;
	/* 2M aligned, so that what the fault path decides does not depend on it. */
	x->shared = aligned_alloc(S004_2M, S004_2M);
	if (!x->shared)
		return -ENOMEM;
	memset(x->shared, 0, S004_2M);
	mr.userspace_addr = x->shared;
	mr.gmem = x->g;
	r = ccvm_vm_set_user_memory_region(x->vm, &mr);
	/* The pages are in gmem already (the guest used them before it shared them). */
	if (!r)
		r = ccvm_gmem_fallocate(x->g, CCVM_FALLOC_KEEP_SIZE, S004_CONV,
					S004_CONV_PAGES * S004_PAGE);
	if (!r)
		r = ccvm_vm_finalize(x->vm);
	if (!r)
		r = ccvm_vcpu_create(x->vm, 0, &x->v);
	if (!r)
		r = ccvm_vcpu_set_guest(x->v, s004_guest, x);
	return r;
}

static int s004_scenario(struct ccvm_platform *p, void *ctx)
{
	struct s004_ctx *x = ctx;
	struct ccvm_thread *t[2];
	unsigned int n = 0;
	int err;

	x->p = p;
	x->vm = NULL;
	x->g = NULL;
	x->v = NULL;
	x->shared = NULL;
	x->done = false;
	err = x->trace ? ccvm_trace_open(p, x->trace) : 0;
	if (!err)
		err = s004_setup(p, x);
	if (!err && !(err = ccvm_thread_create(p, &t[0], s004_converter, x, "converter")))
		n++;
	if (!err && !(err = ccvm_thread_create(p, &t[1], s004_runner, x, "vcpu0")))
		n++;
	err = study_join(t, n, err);
	study_vm_events(x->vm, x->ev);
	if (x->v)
		ccvm_vcpu_close(x->v);
	if (x->g)
		ccvm_gmem_close(x->g);
	if (x->vm)
		ccvm_vm_close(x->vm);
	x->vm = NULL;
	free(x->shared);
	if (x->trace)
		ccvm_trace_close(p);
	/* Judged once everything is closed (the check runs after this). */
	x->done = true;
	if (!err && x->res) {
		struct s004_result *res = x->res;

		res->runs++;
		res->rmp_npf += x->ev[CCVM_EV_RMP_NPF];
		res->fault_retries += x->ev[CCVM_EV_FAULT_RETRY];
		res->faults += x->ev[CCVM_EV_FAULT];
		res->rmpupdates += x->ev[CCVM_EV_RMPUPDATE];
		if (x->ev[CCVM_EV_RMP_NPF]) {
			if (!res->racy_runs)
				res->first_racy_run = res->runs - 1;
			res->racy_runs++;
			if (x->ev[CCVM_EV_RMP_NPF] > res->max_npf)
				res->max_npf = x->ev[CCVM_EV_RMP_NPF];
		}
	}
	return err;
}

/* The run fails when the guest met an RMP nested fault. */
static int s004_check(struct ccvm_platform *p, void *ctx, char *msg, size_t msg_sz)
{
	struct s004_ctx *x = ctx;

	(void)p;
	if (!x->done || !x->ev[CCVM_EV_RMP_NPF])
		return 0;
	snprintf(msg, msg_sz, "the guest took %" PRIu64 " RMP nested faults: a fault mapped "
		 "a page by the attribute before its RMPUPDATE landed", x->ev[CCVM_EV_RMP_NPF]);
	return 1;
}

int s004_explore(enum s004_design design, uint64_t seed, uint64_t runs, bool check,
		 const char *trace, struct s004_result *res, char **token, char **message)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = "snp", .mem_bytes = 32 * STUDY_MIB, .nr_cpus = 2, .seed = 4);
	struct s004_ctx x = { .design = design, .trace = trace, .res = res };
	struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario,
		.name = "snp-rmpupdate-vs-fault", .run = s004_scenario,
		.check = check ? s004_check : NULL, .ctx = &x, .platform = &po);
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
		.strategy = CCVM_EXPLORE_RANDOM, .flags = CCVM_EXPLORE_QUIET,
		.seed = seed, .runs = runs);
	struct ccvm_explore_result er = CCVM_OPTS_INIT(struct ccvm_explore_result);
	int err;

	if (design >= S004_NR_DESIGNS || !res)
		return -EINVAL;
	*res = (struct s004_result){ .first_racy_run = UINT64_MAX };
	err = ccvm_explore(&sc, &o, &er);
	res->explored = er.runs;
	res->checks = er.checks;
	res->failure = er.failure;
	res->failed_run = er.failure ? er.failed_run : UINT64_MAX;
	if (token)
		*token = er.token ? strdup(er.token) : NULL;
	if (message)
		*message = er.message ? strdup(er.message) : NULL;
	ccvm_explore_result_release(&er);
	/* A failed check is the finding, not an error of the study. */
	return er.failure == CCVM_EXPLORE_FAIL_CHECK ? 0 : err;
}

int s004_replay(enum s004_design design, const char *token, struct s004_result *res)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = "snp", .mem_bytes = 32 * STUDY_MIB, .nr_cpus = 2, .seed = 4);
	struct s004_ctx x = { .design = design, .res = res };
	struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario,
		.name = "snp-rmpupdate-vs-fault", .run = s004_scenario,
		.check = s004_check, .ctx = &x, .platform = &po);
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
		.flags = CCVM_EXPLORE_QUIET);
	struct ccvm_explore_result er = CCVM_OPTS_INIT(struct ccvm_explore_result);
	int err;

	if (design >= S004_NR_DESIGNS || !res || !token)
		return -EINVAL;
	*res = (struct s004_result){ .first_racy_run = UINT64_MAX };
	err = ccvm_replay(&sc, token, &o, &er);
	res->explored = 1;
	res->checks = er.checks;
	res->failure = er.failure;
	res->failed_run = er.failure ? 0 : UINT64_MAX;
	ccvm_explore_result_release(&er);
	return er.failure == CCVM_EXPLORE_FAIL_CHECK ? 0 : err;
}
