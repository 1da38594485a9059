/* SPDX-License-Identifier: MIT */
/*
 * Study 002's scenario: the shutdown of a TD whose every private page is
 * mapped, by the three orders the thread weighs (docs/studies/002.md).
 *   dynamic    vCPUs, then the guest_memfd, then the VM: the release removes
 *              every page with the HKID held (BLOCK, TRACK, kick, REMOVE,
 *              WBINVD, clear), as KVM 6.16 does
 *   deferred   the same order with the gmem_defer_removal RFC on: the
 *              release pins the inode, the pages go by RECLAIM after the
 *              HKID release
 *   terminate  ccvm_vm_terminate() first (KVM_TDX_TERMINATE_VM): the HKID
 *              goes at once and every removal is a RECLAIM
 * What is measured is what the library did: the events the simulated
 * module and the core counted during the shutdown, and the simulated time
 * the platform's cost model made of them.  Single-threaded: no schedule.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <ccvm/ccvm.h>

#include "study.h"

const char *const s002_policy_names[S002_NR_POLICIES] = {
	[S002_DYNAMIC] = "dynamic",
	[S002_DEFERRED] = "deferred",
	[S002_TERMINATE] = "terminate",
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define TRY(call) do { err = (call); if (err) { *what = #call; goto out; } } while (0)

int s002_shutdown(const struct s002_cfg *cfg, struct s002_result *res, const char **what)
{
	uint64_t bytes = cfg->bytes & ~(CCVM_HPAGE_2M_SIZE - 1);
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = "tdx",
		/* the guest, its S-EPT (1/512), control pages and slack */
		.mem_bytes = bytes + bytes / 256 + 64 * STUDY_MIB,
		.nr_cpus = 4,
		.seed = 1);
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts,
						.max_vcpus = cfg->nr_vcpus);
	struct ccvm_stats st0 = { .sz = sizeof(st0) }, st1 = { .sz = sizeof(st1) };
	struct ccvm_memory_region mr = { 0 };
	struct ccvm_vcpu *v[256] = { 0 };
	struct ccvm_platform *p = NULL;
	struct ccvm_vm *vm = NULL;
	struct ccvm_gmem *g = NULL;
	uint64_t gpa = 0, size = bytes, free0;
	unsigned int i, nv = cfg->nr_vcpus;
	double t0 = 0;
	int err;

	memset(res, 0, sizeof(*res));
	*what = "";
	if (!nv || nv > 256 || !bytes || cfg->policy >= S002_NR_POLICIES)
		return -EINVAL;
	res->pages = bytes >> CCVM_PAGE_SHIFT;
	TRY(ccvm_platform_create(&po, &p));
	if (cfg->trace)
		TRY(ccvm_trace_open(p, cfg->trace));
	TRY(ccvm_platform_get_stats(p, &st0));
	free0 = st0.free_pages;
	TRY(ccvm_vm_create(p, &vo, &vm));
	TRY(ccvm_gmem_create(vm, bytes, 0, &g));
	mr.flags = CCVM_MEM_GUEST_MEMFD;
	mr.memory_size = bytes;
	mr.gmem = g;
	TRY(ccvm_vm_set_user_memory_region(vm, &mr));
	TRY(ccvm_vm_set_memory_attributes(vm, 0, bytes, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0));
	for (i = 0; i < nv; i++)
		TRY(ccvm_vcpu_create(vm, i, &v[i]));
	TRY(ccvm_vm_finalize(vm));

	if (cfg->timed)
		t0 = now_s();
	/* Partial progress is allowed: go on until the range is mapped. */
	while (size)
		TRY(ccvm_vcpu_pre_fault_memory(v[0], &gpa, &size));
	if (cfg->timed)
		res->map_wall_s = now_s() - t0;
	TRY(ccvm_platform_get_stats(p, &st0));
	res->model_bytes = st0.model_bytes;

	/* The shutdown under study. */
	if (cfg->timed)
		t0 = now_s();
	if (cfg->policy == S002_TERMINATE)
		TRY(ccvm_vm_terminate(vm));
	if (cfg->policy == S002_DEFERRED)
		TRY(ccvm_vm_set_study_knob(vm, CCVM_STUDY_GMEM_DEFER_REMOVAL,
					   CCVM_GMEM_DEFER_RFC));
	for (i = 0; i < nv; i++) {
		ccvm_vcpu_close(v[i]);
		v[i] = NULL;
	}
	ccvm_gmem_close(g);
	g = NULL;
	ccvm_vm_close(vm);
	vm = NULL;
	if (cfg->timed)
		res->shutdown_wall_s = now_s() - t0;
	TRY(ccvm_platform_get_stats(p, &st1));
	res->sim_ns = st1.sim_ns - st0.sim_ns;
	for (i = 0; i < CCVM_EV_NR; i++)
		res->ev[i] = st1.events[i] - st0.events[i];
	res->pages_left = free0 - st1.free_pages;
out:
	for (i = 0; i < nv; i++)
		if (v[i])
			ccvm_vcpu_close(v[i]);
	if (g)
		ccvm_gmem_close(g);
	if (vm)
		ccvm_vm_close(vm);
	if (p)
		ccvm_platform_destroy(p);
	return err;
}

int s002_extrapolate(const struct s002_result *small, const struct s002_result *twice,
		     uint64_t small_gib, uint64_t full_gib, struct s002_result *out)
{
	unsigned int i;

	if (!small_gib || full_gib < small_gib || full_gib > 512 ||
	    twice->pages != 2 * small->pages)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->pages = full_gib << (30 - CCVM_PAGE_SHIFT);
	for (i = 0; i < CCVM_EV_NR; i++) {
		uint64_t a = small->ev[i], b = twice->ev[i], per;

		if (b < a || (b - a) % small_gib)
			return -ERANGE;
		per = (b - a) / small_gib;	/* per GiB */
		if (a < per * small_gib)
			return -ERANGE;
		out->ev[i] = a - per * small_gib + per * full_gib;
	}
	out->pages_left = small->pages_left;
	return 0;
}

uint64_t s002_price(const uint64_t *ev, const struct ccvm_cost_model *cm)
{
	uint64_t ns = 0;
	unsigned int i;

	for (i = 0; i < CCVM_EV_NR; i++)
		ns += ev[i] * cm->ns[i];
	return ns;
}
