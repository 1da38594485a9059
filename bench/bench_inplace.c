/* SPDX-License-Identifier: MIT */
/*
 * Host memory behind a confidential guest with half its memory shared, in
 * the two attribute schemes, on every backend.
 *
 * The guest (one vCPU) accepts and writes all of its memory privately, as
 * a guest does at boot, then shares its upper half with MAP_GPA_RANGE and
 * writes every shared page, as a guest does with a bounce buffer or a
 * shared-memory device.  Host memory is then measured, not computed:
 *   guest_memfd   pages in the file's page cache (ccvm_gmem_get_info());
 *   shared map    pages of the VMM's anonymous shared mapping that are
 *                 resident (mincore(2) on the mapping), as the kernel
 *                 would count them.
 * Three VMMs:
 *   per-VM          the peer: PRIVATE in the VM, shared memory in a
 *                   separate userspace_addr mapping; conversions set the
 *                   VM's attributes and keep the private pages (a VMM
 *                   that does not discard, or a conversion undone later)
 *   per-VM+punch    the same VMM punching the private pages out of the
 *                   file on every conversion to shared (QEMU's discard)
 *   in-place        GMEM_ONLY slot over an mmap-able guest_memfd; the
 *                   conversion is done on the file, no second mapping
 * The SUMMARY line holds in-place against the per-VM peer: a double
 * allocation of the shared half is what the in-place scheme removes; the
 * punching VMM shows the price paid today to avoid it (a discard and a
 * refault per page per conversion, and contents that do not survive).
 *
 * Usage: bench_inplace [-m MIB]   guest memory per VM, default 64
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ccvm/ccvm.h>

#define PAGE		CCVM_PAGE_SIZE
#define MIB		((uint64_t)1 << 20)

enum vmm_kind { PER_VM, PER_VM_PUNCH, IN_PLACE, NR_KINDS };
static const char *const kind_names[NR_KINDS] = { "per-VM", "per-VM+punch", "in-place" };

struct run {
	enum vmm_kind kind;
	uint64_t size;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	uint8_t *shared;		/* per-VM schemes only */
	bool failed;
};

struct guest_arg {
	uint64_t size;
	bool accept;
};

static void guest(struct ccvm_guest *g, void *argp)
{
	const struct guest_arg *a = argp;
	uint64_t s = ccvm_guest_shared_bit(g), half = a->size / 2, gpa;
	uint8_t b;

	if (a->accept)
		CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0, a->size) == 0);
	for (gpa = 0; gpa < a->size; gpa += PAGE) {
		b = (uint8_t)(gpa >> 12);
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, gpa, &b, 1) == 0);
	}
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, half, half, false) == 0);
	for (gpa = half; gpa < a->size; gpa += PAGE) {
		b = (uint8_t)~(gpa >> 12);
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, gpa | s, &b, 1) == 0);
	}
	ccvm_guest_sync(g, 1);
}

static int convert(struct run *r, uint64_t gpa, uint64_t size, bool to_private)
{
	uint64_t attr = to_private ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
	int err;

	if (r->kind == IN_PLACE) {
		struct ccvm_memory_attributes2 a = { .offset = gpa, .size = size, .attributes = attr };

		return ccvm_gmem_set_memory_attributes(r->g, &a);
	}
	err = ccvm_vm_set_memory_attributes(r->vm, gpa, size, attr, 0);
	if (!err && !to_private && r->kind == PER_VM_PUNCH)
		err = ccvm_gmem_fallocate(r->g, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					  gpa, size);
	return err;
}

static uint64_t resident_bytes(uint8_t *p, uint64_t size)
{
	size_t n = size / PAGE, i;
	unsigned char *vec;
	uint64_t res = 0;

	if (!p)
		return 0;
	vec = malloc(n);
	if (!vec || mincore(p, size, vec)) {
		free(vec);
		return UINT64_MAX;
	}
	for (i = 0; i < n; i++)
		res += vec[i] & 1;
	free(vec);
	return res * PAGE;
}

/* One VM of @kind on @p: run the guest, then measure. */
static int run_one(struct ccvm_platform *p, enum vmm_kind kind, uint64_t size,
		   uint64_t *gmem_bytes, uint64_t *map_bytes)
{
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts,
						.attr_scheme = kind == IN_PLACE ?
							CCVM_ATTR_SCHEME_GMEM : CCVM_ATTR_SCHEME_VM);
	struct ccvm_memory_region mr = { .slot = 0, .flags = CCVM_MEM_GUEST_MEMFD,
					 .memory_size = size };
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };
	struct ccvm_gmem_info gi = { .sz = sizeof(gi) };
	struct run r = { .kind = kind, .size = size };
	struct ccvm_vcpu *v = NULL;
	struct guest_arg ga = { .size = size };
	struct ccvm_run *run;
	int err, ret;

	err = ccvm_vm_create(p, &vo, &r.vm);
	if (err)
		return err;
	ccvm_vm_caps(r.vm, &caps);
	ga.accept = caps.requires_accept;
	err = ccvm_gmem_create(r.vm, size, kind == IN_PLACE ? CCVM_GMEM_FLAG_MMAP : 0, &r.g);
	if (err)
		goto out_vm;
	if (kind != IN_PLACE) {
		r.shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				-1, 0);
		if (r.shared == MAP_FAILED) {
			r.shared = NULL;
			err = -ENOMEM;
			goto out_gmem;
		}
	}
	mr.userspace_addr = r.shared;
	mr.gmem = r.g;
	err = ccvm_vm_set_user_memory_region(r.vm, &mr);
	if (!err && kind != IN_PLACE)
		err = ccvm_vm_set_memory_attributes(r.vm, 0, size, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	if (!err)
		err = ccvm_vcpu_create(r.vm, 0, &v);
	if (!err && caps.needs_finalize)
		err = ccvm_vm_finalize(r.vm);
	if (!err)
		err = ccvm_vcpu_set_guest(v, guest, &ga);
	if (err)
		goto out_vcpu;
	run = ccvm_vcpu_run_state(v);
	for (;;) {
		ret = ccvm_vcpu_run(v);
		if (ret == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT) {
			err = convert(&r, run->memory_fault.gpa, run->memory_fault.size,
				      run->memory_fault.flags & CCVM_MEMORY_EXIT_FLAG_PRIVATE);
			if (err)
				break;
			continue;
		}
		if (ret) {
			err = ret;
			break;
		}
		if (run->exit_reason == CCVM_EXIT_HYPERCALL) {
			err = convert(&r, run->hypercall.args[0], run->hypercall.args[1] * PAGE,
				      run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED);
			run->hypercall.ret = (uint64_t)-err;
			if (err)
				break;
			continue;
		}
		if (run->exit_reason == CCVM_EXIT_SYNC)
			break;
		fprintf(stderr, "bench_inplace: %s: unexpected exit %u\n", kind_names[kind],
			run->exit_reason);
		err = -EIO;
		break;
	}
	if (!err) {
		ccvm_gmem_get_info(r.g, &gi);
		*gmem_bytes = gi.nr_pages * PAGE;
		*map_bytes = resident_bytes(r.shared, size);
		if (*map_bytes == UINT64_MAX)
			err = -EIO;
	}
out_vcpu:
	if (v)
		ccvm_vcpu_close(v);
out_gmem:
	ccvm_vm_close(r.vm);
	r.vm = NULL;
	ccvm_gmem_close(r.g);
	if (r.shared)
		munmap(r.shared, size);
	return err;
out_vm:
	ccvm_vm_close(r.vm);
	return err;
}

int main(int argc, char **argv)
{
	const char *const *names = ccvm_backend_names();
	uint64_t size = 64 * MIB;
	int status = 0, c, k;
	unsigned int b;

	while ((c = getopt(argc, argv, "m:")) != -1) {
		if (c == 'm' && atoll(optarg) >= 2) {
			size = (uint64_t)atoll(optarg) * MIB;
		} else {
			fprintf(stderr, "usage: bench_inplace [-m MIB]  (MIB >= 2)\n");
			return 2;
		}
	}
	printf("host memory behind a %" PRIu64 " MiB guest, half of it shared "
	       "(guest_memfd pages + resident pages of the VMM's shared mapping)\n",
	       size / MIB);
	printf("%-6s %-13s %12s %12s %12s\n", "", "VMM", "guest_memfd", "shared map", "total");
	for (b = 0; names[b]; b++) {
		struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
							      .backend = names[b],
							      .mem_bytes = 4 * size + 64 * MIB);
		uint64_t total[NR_KINDS] = { 0 };
		struct ccvm_platform *p = NULL;
		int err;

		err = ccvm_platform_create(&po, &p);
		if (err) {
			fprintf(stderr, "bench_inplace: %s: platform: %s\n", names[b],
				ccvm_strerror(err));
			status = 1;
			continue;
		}
		for (k = 0; k < NR_KINDS; k++) {
			uint64_t gm = 0, mp = 0;

			err = run_one(p, (enum vmm_kind)k, size, &gm, &mp);
			if (err) {
				fprintf(stderr, "bench_inplace: %s %s: %s\n", names[b], kind_names[k],
					ccvm_strerror(err));
				status = 1;
				continue;
			}
			total[k] = gm + mp;
			printf("%-6s %-13s %8" PRIu64 " MiB %8" PRIu64 " MiB %8" PRIu64 " MiB\n",
			       names[b], kind_names[k], gm / MIB, mp / MIB, total[k] / MIB);
		}
		ccvm_platform_destroy(p);
		if (total[PER_VM] && total[IN_PLACE]) {
			double ratio = (double)total[IN_PLACE] / (double)total[PER_VM];

			printf("SUMMARY|%s: host memory, half shared: in-place < per-VM|"
			       "in-place %" PRIu64 " MiB|per-VM %" PRIu64 " MiB|%.2fx|%s\n",
			       names[b], total[IN_PLACE] / MIB, total[PER_VM] / MIB, ratio,
			       ratio < 1.0 ? "yes" : "no");
			if (ratio >= 1.0)
				status = 1;
		}
	}
	return status;
}
