/* SPDX-License-Identifier: MIT */
/*
 * A trace to open in Perfetto (ui.perfetto.dev) or chrome://tracing: two
 * vCPUs of one confidential VM each accept and write their own private
 * memory, then convert a page to shared; the VMM answers the exits.  The
 * file has one process per VM and one lane per vCPU, named.
 *
 *   build/plain/examples/trace [--backend tdx|snp|mock] [--out FILE]
 *                              [--clock wall|sim] [--max-bytes N]
 *                              [--only op,exit,event,api]
 *
 * `make check-trace` runs it and checks the file with scripts/check-trace.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/ccvm.h>

#define GPA		0x100000ull		/* 1 MiB */
#define PER_VCPU	(256ull << 10)		/* 256 KiB each */
#define NR_VCPUS	2
#define SIZE		(NR_VCPUS * PER_VCPU)

static void guest(struct ccvm_guest *g, void *arg)
{
	uint64_t base = GPA + ccvm_guest_vcpu_id(g) * PER_VCPU;
	uint64_t shared = ccvm_guest_shared_bit(g);
	uint64_t v, off;

	(void)arg;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_accept(g, base, PER_VCPU));
	for (off = 0; off < PER_VCPU; off += 4096) {
		v = base + off;
		CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, base + off, &v, sizeof(v)));
	}
	/* The last page goes shared: a MAP_GPA_RANGE exit. */
	CCVM_GUEST_ASSERT(g, !ccvm_guest_map_gpa(g, base + PER_VCPU - 4096, 4096, false));
	v = 0x600d;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, (base + PER_VCPU - 4096) | shared, &v,
					       sizeof(v)));
}

static unsigned int categories(const char *list)
{
	unsigned int m = 0;
	char buf[64], *tok, *save;

	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "op"))
			m |= CCVM_TRACE_CAT_OP;
		else if (!strcmp(tok, "exit"))
			m |= CCVM_TRACE_CAT_EXIT;
		else if (!strcmp(tok, "event"))
			m |= CCVM_TRACE_CAT_EVENT;
		else if (!strcmp(tok, "api"))
			m |= CCVM_TRACE_CAT_API;
		else
			return ~0u;	/* refused by ccvm_trace_open_opts() */
	}
	return m;
}

/* The VMM's run loop for one vCPU: convert on request, until the guest ends. */
static int run_vcpu(struct ccvm_vm *vm, struct ccvm_gmem *gmem, struct ccvm_vcpu *vcpu)
{
	struct ccvm_run *run = ccvm_vcpu_run_state(vcpu);
	int err;

	for (;;) {
		err = ccvm_vcpu_run(vcpu);
		if (err) {
			fprintf(stderr, "trace: run: %s\n", ccvm_last_error());
			return 1;
		}
		if (run->exit_reason == CCVM_EXIT_DONE)
			return 0;
		if (run->exit_reason != CCVM_EXIT_HYPERCALL) {
			fprintf(stderr, "trace: unexpected exit %u\n", run->exit_reason);
			return 1;
		}
		run->hypercall.ret = -ccvm_vm_set_memory_attributes(vm, run->hypercall.args[0],
			run->hypercall.args[1] * 4096, 0, 0);
		ccvm_gmem_fallocate(gmem, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
				    run->hypercall.args[0] - GPA, run->hypercall.args[1] * 4096);
	}
}

int main(int argc, char **argv)
{
	static _Alignas(4096) char shared_mem[SIZE];
	struct ccvm_trace_opts topts = CCVM_OPTS_INIT(struct ccvm_trace_opts);
	struct ccvm_platform_opts popts = CCVM_OPTS_INIT(struct ccvm_platform_opts,
							 .backend = "tdx",
							 .mem_bytes = 64ull << 20);
	struct ccvm_memory_region slot = {
		.flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = GPA,
		.memory_size = SIZE, .userspace_addr = shared_mem,
	};
	struct ccvm_backend_caps caps = CCVM_OPTS_INIT(struct ccvm_backend_caps);
	struct ccvm_vcpu *vcpu[NR_VCPUS] = { 0 };
	const char *out = "trace.json";
	struct ccvm_platform *p;
	struct ccvm_gmem *gmem;
	struct ccvm_vm *vm;
	int i, err, ret = 1;

	for (i = 1; i < argc; i += 2) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!val) {
			fprintf(stderr, "trace: %s needs a value\n", argv[i]);
			return 2;
		}
		if (!strcmp(argv[i], "--backend"))
			popts.backend = val;
		else if (!strcmp(argv[i], "--out"))
			out = val;
		else if (!strcmp(argv[i], "--clock"))
			topts.clock = !strcmp(val, "sim") ? CCVM_TRACE_CLOCK_SIM
							  : CCVM_TRACE_CLOCK_WALL;
		else if (!strcmp(argv[i], "--max-bytes"))
			topts.max_bytes = strtoull(val, NULL, 0);
		else if (!strcmp(argv[i], "--only"))
			topts.categories = categories(val);
		else {
			fprintf(stderr, "usage: trace [--backend B] [--out FILE] [--clock wall|sim]"
				" [--max-bytes N] [--only op,exit,event,api]\n");
			return 2;
		}
	}

	if (ccvm_platform_create(&popts, &p)) {
		fprintf(stderr, "trace: %s\n", ccvm_last_error());
		return 1;
	}
	if (ccvm_trace_open_opts(p, out, &topts)) {
		fprintf(stderr, "trace: %s\n", ccvm_last_error());
		goto out_platform;
	}
	if (ccvm_vm_create(p, NULL, &vm))
		goto out_platform;
	if (ccvm_vm_caps(vm, &caps) || ccvm_gmem_create(vm, SIZE, 0, &gmem))
		goto out_vm;
	slot.gmem = gmem;
	err = ccvm_vm_set_user_memory_region(vm, &slot);
	if (!err)
		err = ccvm_vm_set_memory_attributes(vm, GPA, SIZE, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	for (i = 0; !err && i < NR_VCPUS; i++) {
		err = ccvm_vcpu_create(vm, (uint32_t)i, &vcpu[i]);
		if (!err)
			err = ccvm_vcpu_set_guest(vcpu[i], guest, NULL);
	}
	if (!err && caps.needs_finalize)		/* launch: TDX, SNP */
		err = ccvm_vm_finalize(vm);
	for (i = 0; !err && i < NR_VCPUS; i++)
		err = run_vcpu(vm, gmem, vcpu[i]);
	if (err)
		fprintf(stderr, "trace: %s\n", ccvm_last_error());
	else
		ret = 0;
	for (i = 0; i < NR_VCPUS; i++)
		if (vcpu[i])
			ccvm_vcpu_close(vcpu[i]);
	ccvm_gmem_close(gmem);
out_vm:
	ccvm_vm_close(vm);
out_platform:
	if (ccvm_trace_close(p))
		ret = 1;
	ccvm_platform_destroy(p);
	if (!ret)
		printf("trace: %s written (%s backend, %s clock): open it in ui.perfetto.dev\n",
		       out, popts.backend, topts.clock == CCVM_TRACE_CLOCK_SIM ? "simulated"
									 : "wall");
	return ret;
}
