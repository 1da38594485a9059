/* SPDX-License-Identifier: MIT */
/*
 * Study 000's scenario (docs/studies/000.md): a TD whose private pages are
 * all mapped is shut down while its owner exits.  One VMM thread closes
 * the guest_memfd (its release zaps every private page, yielding mmu_lock
 * every few pages as KVM's zap does); another releases the HKID early
 * (ccvm_vm_terminate(), standing for the v19 release from the mmu notifier
 * when the owner's mm goes away).  Every run is one schedule of the
 * deterministic scheduler; the study knob CCVM_STUDY_HKID_RELEASE says how
 * the release is ordered against the zap.  Sequential orders are run too:
 * the merged rule (release at the last VM reference) and terminate first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/ccvm.h>
#include <ccvm/explore.h>

#include "study.h"

#define S000_PAGES	32u
#define S000_PAGE	CCVM_PAGE_SIZE
#define S000_RESCHED	4u	/* leaves between yields of the zap */

const char *const s000_order_names[S000_NR_ORDERS] = {
	[S000_GMEM_THEN_VM] = "gmem, then VM (release at last ref)",
	[S000_TERMINATE_FIRST] = "terminate, then gmem",
	[S000_RACE] = "gmem close racing owner exit",
};

struct s000_ctx {
	enum s000_order order;
	uint32_t knob;
	const char *trace;		/* trace file of every run, or NULL */
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct s000_run last;		/* the run just finished */
	bool done;
	struct s000_result *res;
};

static int s000_close_gmem(void *arg)
{
	struct s000_ctx *x = arg;
	int r = ccvm_gmem_close(x->g);

	x->g = NULL;
	return r;
}

static int s000_owner_exit(void *arg)
{
	struct s000_ctx *x = arg;

	return ccvm_vm_terminate(x->vm);
}

static int s000_setup(struct ccvm_platform *p, struct s000_ctx *x, struct ccvm_vcpu **v)
{
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = 1);
	struct ccvm_memory_region mr = {
		.slot = 0, .flags = CCVM_MEM_GUEST_MEMFD, .memory_size = S000_PAGES * S000_PAGE,
	};
	uint64_t gpa = 0, size = S000_PAGES * S000_PAGE;
	int r;

	r = ccvm_vm_create(p, &vo, &x->vm);
	if (!r)
		r = ccvm_vm_set_study_knob(x->vm, CCVM_STUDY_HKID_RELEASE, x->knob);
	if (!r)
		r = ccvm_gmem_create(x->vm, S000_PAGES * S000_PAGE, 0, &x->g);
	if (r)
		return r;
	mr.gmem = x->g;
	r = ccvm_vm_set_user_memory_region(x->vm, &mr);
	if (!r)
		r = ccvm_vm_set_memory_attributes(x->vm, 0, size, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	if (!r)
		r = ccvm_vcpu_create(x->vm, 0, v);
	if (!r)
		r = ccvm_vm_finalize(x->vm);
	/* Every page in the S-EPT (PAGE.AUG). */
	while (!r && size)
		r = ccvm_vcpu_pre_fault_memory(*v, &gpa, &size);
	return r;
}

static int s000_scenario(struct ccvm_platform *p, void *ctx)
{
	struct s000_ctx *x = ctx;
	struct ccvm_stats st = { .sz = sizeof(st) }, before = { .sz = sizeof(before) };
	struct ccvm_vcpu *v = NULL;
	struct ccvm_thread *t[2];
	unsigned int i, n = 0;
	int r, ret, err;

	x->p = p;
	x->vm = NULL;
	x->g = NULL;
	x->done = false;
	memset(&x->last, 0, sizeof(x->last));
	err = x->trace ? ccvm_trace_open(p, x->trace) : 0;
	if (!err)
		err = s000_setup(p, x, &v);
	if (!err)
		err = ccvm_platform_get_stats(p, &before);
	/* The vCPU's fd goes first; the VM lives on while gmem holds it. */
	if (v)
		ccvm_vcpu_close(v);
	if (!err) {
		switch (x->order) {
		case S000_GMEM_THEN_VM:
			err = s000_close_gmem(x);
			break;
		case S000_TERMINATE_FIRST:
			err = s000_owner_exit(x);
			if (!err)
				err = s000_close_gmem(x);
			break;
		default:
			if (!(err = ccvm_thread_create(p, &t[0], s000_close_gmem, x, "gmem close")))
				n++;
			if (!err && !(err = ccvm_thread_create(p, &t[1], s000_owner_exit, x,
							      "owner exit")))
				n++;
			for (i = 0; i < n; i++) {
				ret = 0;
				r = ccvm_thread_join(t[i], &ret);
				/* A release that met a bugged VM answers -EIO: counted below. */
				if (!err && r)
					err = r;
			}
			break;
		}
	}
	if (x->g)
		ccvm_gmem_close(x->g);
	x->g = NULL;
	if (x->vm)
		ccvm_vm_close(x->vm);	/* the last reference: teardown */
	x->vm = NULL;
	if (x->trace) {
		r = ccvm_trace_close(p);
		if (!err)
			err = r;
	}
	if (!err && !ccvm_platform_get_stats(p, &st)) {
		x->last.removed = st.events[CCVM_EV_TDH_MEM_PAGE_REMOVE] -
				  before.events[CCVM_EV_TDH_MEM_PAGE_REMOVE];
		x->last.reclaimed = st.events[CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM] -
				    before.events[CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM];
		x->last.refused = st.events[CCVM_EV_TDX_ERROR] - before.events[CCVM_EV_TDX_ERROR];
		x->last.leaked = st.leaked_pages;
		x->last.sim_ns = st.sim_ns - before.sim_ns;
	}
	x->done = true;
	if (!err && x->res) {
		struct s000_result *res = x->res;

		res->runs++;
		if (x->last.leaked) {
			if (!res->bad_runs)
				res->first_bad_run = res->runs - 1;
			res->bad_runs++;
		}
		if (x->last.removed && x->last.removed < S000_PAGES)
			res->mid_zap_runs++;
		res->removed += x->last.removed;
		res->reclaimed += x->last.reclaimed;
		res->refused += x->last.refused;
		res->leaked += x->last.leaked;
		res->sim_ns += x->last.sim_ns;
		if (x->last.leaked > res->max_leaked)
			res->max_leaked = x->last.leaked;
	}
	return err;
}

/* A run fails when a page is lost for good. */
static int s000_check(struct ccvm_platform *p, void *ctx, char *msg, size_t msg_sz)
{
	struct s000_ctx *x = ctx;

	(void)p;
	if (!x->done || !x->last.leaked)
		return 0;
	snprintf(msg, msg_sz, "%llu pages leaked: a removal met the HKID half released "
		 "(%llu SEAMCALLs refused)", (unsigned long long)x->last.leaked,
		 (unsigned long long)x->last.refused);
	return 1;
}

int s000_explore(uint32_t knob, enum s000_order order, uint64_t seed, uint64_t runs,
		 bool check, const char *trace, struct s000_result *res, char **token)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = "tdx", .mem_bytes = 32 * STUDY_MIB, .nr_cpus = 2, .seed = 0,
		.resched_entries = S000_RESCHED);
	struct s000_ctx x = { .order = order, .knob = knob, .trace = trace, .res = res };
	struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario,
		.name = "hkid-release-vs-gmem-close", .run = s000_scenario,
		.check = check ? s000_check : NULL, .ctx = &x, .platform = &po);
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
		.strategy = CCVM_EXPLORE_RANDOM,
		.flags = CCVM_EXPLORE_QUIET | (check ? 0 : CCVM_EXPLORE_NO_LIBRARY_CHECK),
		.seed = seed, .runs = runs);
	struct ccvm_explore_result er = CCVM_OPTS_INIT(struct ccvm_explore_result);
	int err;

	if (order >= S000_NR_ORDERS || !res)
		return -EINVAL;
	*res = (struct s000_result){ .first_bad_run = UINT64_MAX };
	err = ccvm_explore(&sc, &o, &er);
	res->explored = er.runs;
	res->failure = er.failure;
	res->failed_run = er.failure ? er.failed_run : UINT64_MAX;
	if (token)
		*token = er.token ? strdup(er.token) : NULL;
	if (er.failure && er.message)
		snprintf(res->message, sizeof(res->message), "%s", er.message);
	ccvm_explore_result_release(&er);
	return er.failure ? 0 : err;
}
