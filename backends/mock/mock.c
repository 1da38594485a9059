/* SPDX-License-Identifier: MIT */
/*
 * The mock backend: KVM's KVM_X86_SW_PROTECTED_VM.
 *
 * Private memory exists (attributes, gmem, private faults, memory-fault
 * exits) but no hardware protects it: one root holds private and shared
 * leaves, there is no shared bit (a fault is private when the attribute
 * says so), no preparation, no accept, and the host can read private pages
 * in plain text.  It is the reference the other backends are held against,
 * so everything generic is left to the core: per-op counters and failure
 * injection come from the core's op dispatch for every backend, the mock
 * included (ccvm_inject_op_failure, ccvm_op_calls).
 *
 * The ops it leaves NULL or to the core's return-0 defaults are the ones
 * SW_PROTECTED_VM does not have: no key id (vm_init, vm_pre_destroy),
 * no launch (vm_finalize, populate: -EOPNOTSUPP), no mirror root, no
 * RMP (gmem_prepare, gmem_invalidate), no deferred removal.
 */
#include <string.h>

#include <ccvm/backend.h>

static void mock_get_caps(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
{
	(void)vm;
	caps->vm_type = 1;			/* KVM_X86_SW_PROTECTED_VM */
	caps->memory_attributes = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	/*
	 * MMAP always (6.18); the core allows INIT_SHARED only with in-place
	 * conversion, as for SW_PROTECTED_VM (it has private memory).
	 * Huge folios: nothing but the folio, the attributes and the slot
	 * limits a private mapping, so they map at 2M where those allow.
	 */
	caps->gmem_flags = CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED |
			   CCVM_GMEM_FLAG_HUGETLB;
	caps->private_max_level = CCVM_LEVEL_2M;
	caps->shared_max_level = CCVM_LEVEL_2M;
	caps->has_shared_bit = false;
	caps->has_mirror_root = false;
	caps->requires_accept = false;
	caps->needs_finalize = false;
	caps->preserves_data_without_punch = true;	/* the folio stays in gmem */
	caps->private_readable_by_host = true;		/* nothing encrypts it */
	caps->map_gpa_max_bytes = 0;
}

/* The attribute decides: there is no hardware bit in the fault. */
static int mock_fault_is_private(struct ccvm_vm *vm, uint64_t gpa)
{
	return ccvm_vm_gfn_is_private(vm, gpa >> CCVM_PAGE_SHIFT);
}

const struct ccvm_backend_ops ccvm_mock_backend_ops = {
	.abi_version = CCVM_BACKEND_ABI_VERSION,
	.size = sizeof(struct ccvm_backend_ops),
	.name = "mock",
	.get_caps = mock_get_caps,
	.fault_is_private = mock_fault_is_private,
};
