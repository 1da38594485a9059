/* SPDX-License-Identifier: MIT */
/*
 * Study 001's scenario: a TD whose memory is hot-plugged round after round
 * (each a memslot update) while its vCPUs keep faulting private memory in,
 * with the generation forced to wrap at every round or never.  A wrap fast-
 * zaps the direct roots, so every vCPU reloads its MMU at its next fault:
 * the case the v3 mirror-root patch got wrong (docs/studies/001.md).
 * Single-threaded: every vCPU faults from the caller's thread
 * (KVM_PRE_FAULT_MEMORY), so no schedule is involved.
 */
#include <errno.h>

#include <ccvm/ccvm.h>

#include "internal.h"
#include "study.h"

#define S001_REGION	(2 * STUDY_MIB)	/* one fresh S-EPT leaf table per round */
#define S001_PLUG_GPA	(64 * STUDY_GIB)	/* where the hot-plugged slot goes */

static int prefault(struct ccvm_vcpu *v, uint64_t gpa)
{
	uint64_t size = CCVM_PAGE_SIZE;

	return ccvm_vcpu_pre_fault_memory(v, &gpa, &size);
}

#define TRY(call) do { err = (call); if (err) { *what = #call; goto out; } } while (0)

int s001_run(uint32_t reload, unsigned int nr_vcpus, unsigned int rounds, bool wrap,
	     const char *trace, struct s001_result *res, const char **what)
{
	uint64_t bytes = (uint64_t)(rounds + 1) * S001_REGION;
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = "tdx", .mem_bytes = bytes * 2 + 64 * STUDY_MIB, .seed = 1);
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = nr_vcpus);
	struct ccvm_invariant_report rep = { .sz = sizeof(rep) };
	struct ccvm_stats st = { .sz = sizeof(st) };
	struct ccvm_memory_region mr = { 0 };
	struct ccvm_vcpu *v[64] = { 0 };
	struct ccvm_root_census c;
	struct ccvm_platform *p = NULL;
	struct ccvm_vm *vm = NULL;
	struct ccvm_gmem *g = NULL;
	unsigned int i, r;
	int err;

	*res = (struct s001_result){ 0 };
	*what = "";
	if (!nr_vcpus || nr_vcpus > 64 || rounds > 4096)
		return -EINVAL;
	TRY(ccvm_platform_create(&po, &p));
	if (trace)
		TRY(ccvm_trace_open(p, trace));
	TRY(ccvm_vm_create(p, &vo, &vm));
	TRY(ccvm_vm_set_study_knob(vm, CCVM_STUDY_MIRROR_RELOAD, reload));
	TRY(ccvm_gmem_create(vm, bytes, 0, &g));
	mr.flags = CCVM_MEM_GUEST_MEMFD;
	mr.memory_size = bytes;
	mr.gmem = g;
	TRY(ccvm_vm_set_user_memory_region(vm, &mr));
	TRY(ccvm_vm_set_memory_attributes(vm, 0, bytes, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0));
	for (i = 0; i < nr_vcpus; i++)
		TRY(ccvm_vcpu_create(vm, i, &v[i]));
	TRY(ccvm_vm_finalize(vm));
	for (i = 0; i < nr_vcpus; i++)
		TRY(prefault(v[i], (uint64_t)i * CCVM_PAGE_SIZE));

	for (r = 1; r <= rounds; r++) {
		struct ccvm_memory_region plug = {
			.slot = 1, .guest_phys_addr = S001_PLUG_GPA, .memory_size = S001_REGION,
		};

		if (wrap)
			TRY(ccvm_vm_force_generation_wrap(vm));
		TRY(ccvm_vm_set_user_memory_region(vm, &plug));	/* hot-plug */
		for (i = 0; i < nr_vcpus; i++)
			TRY(prefault(v[i], r * S001_REGION + (uint64_t)i * CCVM_PAGE_SIZE));
		plug.memory_size = 0;
		TRY(ccvm_vm_set_user_memory_region(vm, &plug));	/* hot-unplug */
	}

	ccvm_mmu_root_census(vm, &c);
	res->mirror_roots = c.valid[1];
	res->direct_roots = c.valid[0];
	res->mirror_refs = c.refs[1];
	TRY(ccvm_vm_check_invariants(vm, &rep));
	res->broken_invariant = rep.invariant;

	/* The default shutdown order: vCPUs, guest_memfd, then the VM. */
	for (i = 0; i < nr_vcpus; i++) {
		ccvm_vcpu_close(v[i]);
		v[i] = NULL;
	}
	ccvm_gmem_close(g);
	g = NULL;
	ccvm_vm_close(vm);
	vm = NULL;
	TRY(ccvm_platform_get_stats(p, &st));
	res->roots_leaked = st.events[CCVM_EV_ROOT_LEAK];
	res->pages_leaked = st.leaked_pages;
	res->pages_left = st.total_pages - st.free_pages - st.leaked_pages;
out:
	for (i = 0; i < nr_vcpus; i++)
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
