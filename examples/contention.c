/* SPDX-License-Identifier: MIT */
/*
 * Contention: four vCPUs of one TD, each run by its own VMM thread, convert
 * pages of one 2 MiB region between private and shared over and over, so
 * that their faults, the VMM's attribute updates and the zaps meet on the
 * VM's mmu_lock, its invalidation sequence and the TDX module's locks.  The
 * counters show what the contention cost: faults retried because an
 * invalidation overlapped them, SEAMCALLs answered BUSY, invalidations,
 * zaps, kicks.  Real threads: the figures vary from run to run (a serial
 * platform and <ccvm/explore.h> make one schedule repeatable instead).
 *
 * Run: build/plain/examples/contention [rounds]
 */
#include <stdio.h>
#include <stdlib.h>

#include <ccvm/ccvm.h>
#include <ccvm/sync.h>

#define GPA		0x200000ull		/* 2 MiB, one huge page */
#define SIZE		(2ull << 20)
#define NR_VCPUS	4

struct vmm_thread {
	struct ccvm_vm *vm;
	struct ccvm_gmem *gmem;
	struct ccvm_vcpu *vcpu;
	unsigned int exits;
};

static unsigned int rounds = 200;

static void guest(struct ccvm_guest *g, void *arg)
{
	/* Each vCPU owns a page of the same 2M region, interleaved. */
	uint64_t gpa = GPA + ccvm_guest_vcpu_id(g) * 4096 * 8;
	uint64_t shared = ccvm_guest_shared_bit(g);
	uint64_t v;
	unsigned int i;

	(void)arg;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_accept(g, gpa, 4096));
	for (i = 0; i < rounds; i++) {
		v = i;
		CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, gpa, &v, sizeof(v)));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_map_gpa(g, gpa, 4096, false));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, gpa | shared, &v, sizeof(v)));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_map_gpa(g, gpa, 4096, true));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_accept(g, gpa, 4096));
	}
}

/* A VMM thread: the run loop of one vCPU, answering conversions. */
static int vmm(void *arg)
{
	struct vmm_thread *t = arg;
	struct ccvm_run *run = ccvm_vcpu_run_state(t->vcpu);

	for (;;) {
		if (ccvm_vcpu_run(t->vcpu)) {
			fprintf(stderr, "contention: %s\n", ccvm_last_error());
			return 1;
		}
		t->exits++;
		if (run->exit_reason == CCVM_EXIT_DONE)
			return 0;
		if (run->exit_reason != CCVM_EXIT_HYPERCALL)
			return 1;
		{
			uint64_t gpa = run->hypercall.args[0], len = run->hypercall.args[1] * 4096;
			bool priv = run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED;

			run->hypercall.ret = -ccvm_vm_set_memory_attributes(t->vm, gpa, len,
				priv ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);
			if (!priv)
				ccvm_gmem_fallocate(t->gmem, CCVM_FALLOC_PUNCH_HOLE |
						    CCVM_FALLOC_KEEP_SIZE, gpa - GPA, len);
		}
	}
}

int main(int argc, char **argv)
{
	static _Alignas(4096) char shared_mem[SIZE];
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = "tdx", .mem_bytes = 64ull << 20, .nr_cpus = NR_VCPUS);
	struct ccvm_memory_region mr = {
		.flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = GPA, .memory_size = SIZE,
		.userspace_addr = shared_mem,
	};
	struct ccvm_stats st = CCVM_OPTS_INIT(struct ccvm_stats);
	struct vmm_thread t[NR_VCPUS] = { 0 };
	struct ccvm_thread *th[NR_VCPUS] = { 0 };
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g = NULL;
	int i, err, ret = 0;

	if (argc > 1)
		rounds = (unsigned int)strtoul(argv[1], NULL, 0);
	if (ccvm_platform_create(&po, &p))
		return 1;
	err = ccvm_vm_create(p, NULL, &vm);
	if (!err)
		err = ccvm_gmem_create(vm, SIZE, 0, &g);
	mr.gmem = g;
	if (!err)
		err = ccvm_vm_set_user_memory_region(vm, &mr);
	if (!err)
		err = ccvm_vm_set_memory_attributes(vm, GPA, SIZE, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	for (i = 0; !err && i < NR_VCPUS; i++) {
		t[i] = (struct vmm_thread){ .vm = vm, .gmem = g };
		err = ccvm_vcpu_create(vm, (uint32_t)i, &t[i].vcpu);
		if (!err)
			err = ccvm_vcpu_set_guest(t[i].vcpu, guest, NULL);
	}
	if (!err)
		err = ccvm_vm_finalize(vm);
	for (i = 0; !err && i < NR_VCPUS; i++)
		err = ccvm_thread_create(p, &th[i], vmm, &t[i], "vmm");
	for (i = 0; i < NR_VCPUS; i++) {
		int r = 1;

		if (th[i] && !ccvm_thread_join(th[i], &r))
			ret |= r;
	}
	if (err) {
		fprintf(stderr, "contention: %s\n", ccvm_last_error());
		ret = 1;
	}
	if (!ret && !ccvm_vm_get_stats(vm, &st)) {
		printf("contention: %d vCPUs x %u rounds of private->shared->private on one 2M "
		       "region\n", NR_VCPUS, rounds);
		printf("  %8llu faults, %llu retried (an invalidation overlapped)\n",
		       (unsigned long long)st.events[CCVM_EV_FAULT],
		       (unsigned long long)st.events[CCVM_EV_FAULT_RETRY]);
		printf("  %8llu SEAMCALLs answered BUSY\n",
		       (unsigned long long)st.events[CCVM_EV_TDX_BUSY]);
		printf("  %8llu invalidations, %llu zaps, %llu TLB flushes, %llu kicks\n",
		       (unsigned long long)st.events[CCVM_EV_INVALIDATE],
		       (unsigned long long)st.events[CCVM_EV_ZAP],
		       (unsigned long long)st.events[CCVM_EV_TLB_FLUSH],
		       (unsigned long long)st.events[CCVM_EV_IPI]);
		printf("  %8.3f ms simulated\n", (double)st.sim_ns / 1e6);
	}
	for (i = 0; i < NR_VCPUS; i++)
		if (t[i].vcpu)
			ccvm_vcpu_close(t[i].vcpu);
	ccvm_gmem_close(g);
	ccvm_vm_close(vm);
	return ccvm_platform_destroy(p) || ret;
}
