/* SPDX-License-Identifier: MIT */
/*
 * Tearing down a TD, three ways, with what each costs on the simulated
 * clock.  The TD has 64 MiB of private memory, every page mapped.
 *
 *   dynamic    close the vCPUs, then the guest_memfd, then the VM: the file's
 *              release removes every page while the TD still holds its HKID
 *              (BLOCK, TRACK, kick the vCPUs, REMOVE, WBINVD), as KVM 6.16
 *   deferred   the same order with the gmem_defer_removal RFC on (a study
 *              knob): the release keeps the pages, which go by RECLAIM once
 *              the HKID is released at VM teardown
 *   terminate  ccvm_vm_terminate() first (KVM_TDX_TERMINATE_VM): the HKID
 *              goes at once and every page is simply reclaimed
 *
 * Whatever the order, the platform gets every page back: the example checks.
 * Run: build/plain/examples/teardown [MiB]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/ccvm.h>

enum { DYNAMIC, DEFERRED, TERMINATE };
static const char *const names[] = { "dynamic", "deferred", "terminate" };

static uint64_t ev(const struct ccvm_stats *a, const struct ccvm_stats *b, unsigned int e)
{
	return b->events[e] - a->events[e];
}

static int one(int how, uint64_t bytes)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = "tdx", .mem_bytes = bytes + bytes / 256 + (64ull << 20));
	struct ccvm_stats st0 = CCVM_OPTS_INIT(struct ccvm_stats);
	struct ccvm_stats st1 = CCVM_OPTS_INIT(struct ccvm_stats);
	struct ccvm_memory_region mr = { .flags = CCVM_MEM_GUEST_MEMFD, .memory_size = bytes };
	struct ccvm_platform *p;
	struct ccvm_vm *vm = NULL;
	struct ccvm_gmem *g = NULL;
	struct ccvm_vcpu *v = NULL;
	uint64_t gpa = 0, size = bytes, free0;
	int err;

	if (ccvm_platform_create(&po, &p))
		return 1;
	err = ccvm_platform_get_stats(p, &st0);
	free0 = st0.free_pages;
	if (!err)
		err = ccvm_vm_create(p, NULL, &vm);
	if (!err)
		err = ccvm_gmem_create(vm, bytes, 0, &g);
	mr.gmem = g;
	if (!err)
		err = ccvm_vm_set_user_memory_region(vm, &mr);
	if (!err)
		err = ccvm_vm_set_memory_attributes(vm, 0, bytes, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	if (!err)
		err = ccvm_vcpu_create(vm, 0, &v);
	if (!err)
		err = ccvm_vm_finalize(vm);
	while (!err && size)		/* map every page, as a running guest would */
		err = ccvm_vcpu_pre_fault_memory(v, &gpa, &size);
	if (!err)
		err = ccvm_platform_get_stats(p, &st0);
	if (err) {
		fprintf(stderr, "teardown: %s\n", ccvm_last_error());
		return 1;
	}

	/* The teardown. */
	if (how == TERMINATE)
		err = ccvm_vm_terminate(vm);
	if (how == DEFERRED)
		err = ccvm_vm_set_study_knob(vm, CCVM_STUDY_GMEM_DEFER_REMOVAL,
					     CCVM_GMEM_DEFER_RFC);
	ccvm_vcpu_close(v);
	ccvm_gmem_close(g);
	ccvm_vm_close(vm);
	if (!err)
		err = ccvm_platform_get_stats(p, &st1);
	if (err) {
		fprintf(stderr, "teardown: %s\n", ccvm_last_error());
		return 1;
	}
	printf("%-10s %10.3f ms simulated  %7llu REMOVE  %7llu RECLAIM  %5llu TRACK  "
	       "%5llu kicks  pages back: %s\n", names[how], (double)(st1.sim_ns - st0.sim_ns) / 1e6,
	       (unsigned long long)ev(&st0, &st1, CCVM_EV_TDH_MEM_PAGE_REMOVE),
	       (unsigned long long)ev(&st0, &st1, CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM),
	       (unsigned long long)ev(&st0, &st1, CCVM_EV_TDH_MEM_TRACK),
	       (unsigned long long)ev(&st0, &st1, CCVM_EV_IPI),
	       st1.free_pages == free0 ? "all" : "NOT ALL");
	err = st1.free_pages != free0;
	return ccvm_platform_destroy(p) || err;
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 0) : 64;
	int how, bad = 0;

	if (!mib || mib % 2) {
		fprintf(stderr, "usage: teardown [MiB, even]\n");
		return 2;
	}
	printf("teardown of a TD with %llu MiB of mapped private memory:\n",
	       (unsigned long long)mib);
	for (how = DYNAMIC; how <= TERMINATE; how++)
		bad |= one(how, mib << 20);
	return bad;
}
