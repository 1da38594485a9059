/* SPDX-License-Identifier: MIT */
/* The README's API tour: a confidential guest writes private memory, asks to
 * share a page (a MAP_GPA_RANGE exit the VMM answers by converting), and the
 * VMM reads what the guest put there.  On TDX and SNP the launch ends with
 * ccvm_vm_finalize() before the first run, and the guest accepts (TDX) or
 * validates (SNP) its private pages.
 * Run: build/plain/examples/tour [mock|tdx|snp]   (`make run` runs all) */
#include <stdio.h>
#include <string.h>

#include <ccvm/ccvm.h>

#define GPA	0x100000ull			/* 1 MiB */
#define SIZE	(2ull << 20)			/* 2 MiB of guest memory */

static void guest(struct ccvm_guest *g, void *arg)
{
	uint64_t shared = ccvm_guest_shared_bit(g);	/* 0 on mock */
	const char msg[] = "hello from the guest";
	uint64_t secret = 42, back = 0;

	(void)arg;
	ccvm_guest_accept(g, GPA, SIZE);		/* TDX accept / SNP PVALIDATE */
	ccvm_guest_write(g, GPA, &secret, sizeof(secret));	/* private */
	ccvm_guest_read(g, GPA, &back, sizeof(back));
	CCVM_GUEST_ASSERT(g, back == 42);

	/* Share the last page (a hypercall exit), then write through its alias. */
	CCVM_GUEST_ASSERT(g, !ccvm_guest_map_gpa(g, GPA + SIZE - 4096, 4096, false));
	ccvm_guest_write(g, (GPA + SIZE - 4096) | shared, msg, sizeof(msg));
	ccvm_guest_sync(g, 1);				/* tell the VMM */
}

int main(int argc, char **argv)
{
	struct ccvm_platform_opts popts = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = argc > 1 ? argv[1] : "mock", .mem_bytes = 64ull << 20);
	struct ccvm_backend_caps caps = CCVM_OPTS_INIT(struct ccvm_backend_caps);
	static _Alignas(4096) char shared_mem[SIZE];
	struct ccvm_memory_region slot = {
		.slot = 0, .flags = CCVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = GPA, .memory_size = SIZE,
		.userspace_addr = shared_mem,		/* shared backing */
		.gmem_offset = 0,			/* .gmem set below */
	};
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *gmem;
	struct ccvm_vcpu *vcpu;
	struct ccvm_run *run;
	int err, ret = 1;

	if (ccvm_platform_create(&popts, &p)) {
		fprintf(stderr, "tour: %s\n", ccvm_last_error());
		return 1;
	}
	printf("tour: backend %s\n", popts.backend);
	if (ccvm_vm_create(p, NULL, &vm))
		goto out_platform;
	if (ccvm_gmem_create(vm, SIZE, 0, &gmem))	/* private backing */
		goto out_vm;
	slot.gmem = gmem;
	if (ccvm_vm_set_user_memory_region(vm, &slot) ||
	    ccvm_vm_set_memory_attributes(vm, GPA, SIZE, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0) ||
	    ccvm_vcpu_create(vm, 0, &vcpu) || ccvm_vm_caps(vm, &caps))
		goto out_gmem;
	/* Launch: TDX and SNP refuse to run a vCPU before finalize (caps say so). */
	if (caps.needs_finalize && ccvm_vm_finalize(vm)) {
		fprintf(stderr, "tour: %s\n", ccvm_last_error());
		goto out_vcpu;
	}
	ccvm_vcpu_set_guest(vcpu, guest, NULL);
	run = ccvm_vcpu_run_state(vcpu);

	for (;;) {					/* the KVM_RUN loop */
		err = ccvm_vcpu_run(vcpu);
		if (err && run->exit_reason != CCVM_EXIT_MEMORY_FAULT)
			break;
		switch (run->exit_reason) {
		case CCVM_EXIT_HYPERCALL: {		/* MAP_GPA_RANGE */
			uint64_t gpa = run->hypercall.args[0];
			uint64_t len = run->hypercall.args[1] * 4096;
			bool priv = run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED;

			run->hypercall.ret = -ccvm_vm_set_memory_attributes(vm, gpa, len,
				priv ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);
			if (!priv)	/* discard the private copy it no longer uses */
				ccvm_gmem_fallocate(gmem, CCVM_FALLOC_PUNCH_HOLE |
						    CCVM_FALLOC_KEEP_SIZE, gpa - GPA, len);
			continue;
		}
		case CCVM_EXIT_SYNC:
			printf("VMM reads the shared page: \"%s\"\n", shared_mem + SIZE - 4096);
			continue;
		case CCVM_EXIT_DONE:
			ret = 0;
			break;
		default:
			fprintf(stderr, "unexpected exit %u (%s)\n", run->exit_reason,
				ccvm_strerror(err));
			break;
		}
		break;
	}
out_vcpu:
	ccvm_vcpu_close(vcpu);
out_gmem:
	ccvm_gmem_close(gmem);
out_vm:
	ccvm_vm_close(vm);
out_platform:
	ccvm_platform_destroy(p);
	return ret;
}
