/* SPDX-License-Identifier: MIT */
/*
 * An out-of-tree backend: the hardware rules of a platform written outside
 * the library, against <ccvm/backend.h> alone, registered with
 * ccvm_backend_register() and then created by name like a built-in one.
 * This one protects nothing (as the mock backend) but keeps a count of the
 * private pages it was asked to prepare, in its own per-VM state, to show
 * the private areas and an op.  A real one would keep its hardware's
 * tables there (see backends/ in the source tree, and the conformance
 * suite, tests/conformance.h, which runs any backend by name).
 *
 * Run: build/plain/examples/backend
 *
 * The test suite builds this file without its main()
 * (-DCCVM_EXAMPLE_NO_MAIN) and passes the backend through the conformance
 * suite like the built-in ones (tests/check_conformance.c, tcase
 * "out-of-tree").
 */
#include <stdatomic.h>
#include <stdio.h>

#include <ccvm/backend.h>

#define GPA	0x100000ull
#define SIZE	(1ull << 20)

struct tiny_vm {
	/* Pages gmem_prepare saw; vCPUs fault in parallel, so atomic. */
	_Atomic uint64_t prepared;
};

static void tiny_get_caps(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
{
	(void)vm;
	caps->name = "tiny";
	caps->vm_type = 1;				/* KVM_X86_SW_PROTECTED_VM */
	caps->memory_attributes = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	caps->gmem_flags = CCVM_GMEM_FLAG_MMAP;
	caps->private_max_level = CCVM_LEVEL_2M;
	caps->shared_max_level = CCVM_LEVEL_2M;
	caps->private_readable_by_host = true;
	/* Nothing encrypts or scrubs a page kept across a round trip. */
	caps->preserves_data_without_punch = true;
}

/*
 * Called before a private page is mapped, by whichever vCPU faults on it:
 * vCPUs faulting on different pages call it at the same time, so the count
 * is atomic.
 */
static int tiny_gmem_prepare(struct ccvm_vm *vm, uint64_t pfn, uint64_t gfn, int max_order)
{
	struct tiny_vm *t = ccvm_vm_priv(vm);

	(void)pfn;
	(void)gfn;
	atomic_fetch_add_explicit(&t->prepared, 1ull << max_order, memory_order_relaxed);
	return 0;
}

static const struct ccvm_backend_ops tiny_ops = {
	.abi_version = CCVM_BACKEND_ABI_VERSION,
	.size = sizeof(struct ccvm_backend_ops),
	.name = "tiny",
	.vm_priv_size = sizeof(struct tiny_vm),
	.get_caps = tiny_get_caps,
	.gmem_prepare = tiny_gmem_prepare,
};

/* The ops, for a program that registers the backend itself (the tests). */
const struct ccvm_backend_ops *example_tiny_backend(void);
const struct ccvm_backend_ops *example_tiny_backend(void)
{
	return &tiny_ops;
}

#ifndef CCVM_EXAMPLE_NO_MAIN
static void guest(struct ccvm_guest *g, void *arg)
{
	uint64_t v = 7, back = 0;

	(void)arg;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, GPA, &v, sizeof(v)));
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, GPA, &back, sizeof(back)));
	CCVM_GUEST_ASSERT(g, back == 7);
}

int main(void)
{
	static _Alignas(4096) char shared_mem[SIZE];
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = "tiny");
	struct ccvm_memory_region r = {
		.flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = GPA, .memory_size = SIZE,
		.userspace_addr = shared_mem,
	};
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g = NULL;
	struct ccvm_vcpu *v = NULL;
	int err;

	err = ccvm_backend_register(&tiny_ops);
	if (!err)
		err = ccvm_platform_create(&po, &p);
	if (err) {
		fprintf(stderr, "backend: %s\n", ccvm_last_error());
		return 1;
	}
	err = ccvm_vm_create(p, NULL, &vm);
	if (!err)
		err = ccvm_gmem_create(vm, SIZE, 0, &g);
	if (err)
		goto out;
	r.gmem = g;
	err = ccvm_vm_set_user_memory_region(vm, &r);
	if (!err)
		err = ccvm_vm_set_memory_attributes(vm, GPA, SIZE, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	if (!err)
		err = ccvm_vcpu_create(vm, 0, &v);
	if (!err)
		err = ccvm_vcpu_set_guest(v, guest, NULL);
	if (!err)
		err = ccvm_vcpu_run(v);
	if (!err && ccvm_vcpu_run_state(v)->exit_reason != CCVM_EXIT_DONE)
		err = -1;
	if (!err)
		printf("backend: guest ran on \"%s\"; gmem_prepare saw %llu page(s), "
		       "%lld call(s) counted\n", ccvm_vm_backend_name(vm),
		       (unsigned long long)atomic_load(&((struct tiny_vm *)ccvm_vm_priv(vm))->prepared),
		       (long long)ccvm_op_calls(p, "gmem_prepare"));
	ccvm_vcpu_close(v);
	ccvm_gmem_close(g);
	ccvm_vm_close(vm);
out:
	if (err)
		fprintf(stderr, "backend: %s\n", ccvm_last_error());
	return ccvm_platform_destroy(p) || err ? 1 : 0;
}
#endif /* CCVM_EXAMPLE_NO_MAIN */
