/* SPDX-License-Identifier: MIT */
/*
 * The backend op list, one entry per op, in struct ccvm_backend_ops order.
 * Define CCVM_BACKEND_OP(name, kind, call, ctx, gfn, params, args) and
 * include this file; it undefines CCVM_BACKEND_OP at its end, so every
 * includer starts from a clean slate.
 *
 *   kind    MANDATORY      registration fails (-EINVAL) without it
 *           OPTIONAL       may be NULL; the core checks and does without
 *           OPTIONAL_RET0  may be NULL; registration fills in an op returning 0
 *   call    INT, I64       returns 0 or a negative errno (I64: or a length):
 *                          counted, traced, an error counted, injectable
 *           VOID           cannot fail: counted and traced
 *           DIRECT_INT, DIRECT_VOID
 *                          called without the bracket, never counted: the
 *                          host touching memory is the hardware's rule, not a
 *                          call KVM makes, and the invariant checker must not
 *                          change what it checks
 *   ctx     PLATFORM(x), VM(x) or VCPU(x): the parameter the call's platform
 *           and VM are found from
 *   gfn     what the trace records as the gfn, in terms of the parameters
 *   params  the op's parameter list, as in struct ccvm_backend_ops
 *   args    the same names, to pass them on
 *
 * From this list the core generates the op indices, names, validation and
 * default fill-in (lib/backend.c) and one inline call wrapper per op
 * (lib/backend-call.h), which is how the core calls every op.
 */
CCVM_BACKEND_OP(get_caps, MANDATORY, DIRECT_VOID, VM(vm), CCVM_INVALID_GFN,
		(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps), (vm, caps))
CCVM_BACKEND_OP(platform_init, OPTIONAL_RET0, INT, PLATFORM(p), CCVM_INVALID_GFN,
		(struct ccvm_platform *p), (p))
CCVM_BACKEND_OP(platform_destroy, OPTIONAL, VOID, PLATFORM(p), CCVM_INVALID_GFN,
		(struct ccvm_platform *p), (p))
CCVM_BACKEND_OP(vm_init, OPTIONAL_RET0, INT, VM(vm), CCVM_INVALID_GFN,
		(struct ccvm_vm *vm), (vm))
CCVM_BACKEND_OP(vm_pre_destroy, OPTIONAL, VOID, VM(vm), CCVM_INVALID_GFN,
		(struct ccvm_vm *vm), (vm))
CCVM_BACKEND_OP(vm_destroy, OPTIONAL, VOID, VM(vm), CCVM_INVALID_GFN,
		(struct ccvm_vm *vm), (vm))
CCVM_BACKEND_OP(vm_finalize, OPTIONAL, INT, VM(vm), CCVM_INVALID_GFN,
		(struct ccvm_vm *vm), (vm))
CCVM_BACKEND_OP(vm_terminate, OPTIONAL, INT, VM(vm), CCVM_INVALID_GFN,
		(struct ccvm_vm *vm), (vm))
CCVM_BACKEND_OP(populate, OPTIONAL, INT, VM(vm), gfn,
		(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn, const void *src,
		 uint64_t flags), (vm, gfn, pfn, src, flags))
CCVM_BACKEND_OP(vcpu_create, OPTIONAL_RET0, INT, VCPU(vcpu), CCVM_INVALID_GFN,
		(struct ccvm_vcpu *vcpu), (vcpu))
CCVM_BACKEND_OP(vcpu_free, OPTIONAL, VOID, VCPU(vcpu), CCVM_INVALID_GFN,
		(struct ccvm_vcpu *vcpu), (vcpu))
CCVM_BACKEND_OP(vcpu_enter, OPTIONAL_RET0, INT, VCPU(vcpu), CCVM_INVALID_GFN,
		(struct ccvm_vcpu *vcpu), (vcpu))
CCVM_BACKEND_OP(vcpu_exit, OPTIONAL, VOID, VCPU(vcpu), CCVM_INVALID_GFN,
		(struct ccvm_vcpu *vcpu), (vcpu))
CCVM_BACKEND_OP(gmem_prepare, OPTIONAL_RET0, INT, VM(vm), gfn,
		(struct ccvm_vm *vm, uint64_t pfn, uint64_t gfn, int max_order),
		(vm, pfn, gfn, max_order))
CCVM_BACKEND_OP(gmem_invalidate, OPTIONAL, VOID, PLATFORM(p), CCVM_INVALID_GFN,
		(struct ccvm_platform *p, uint64_t pfn_start, uint64_t pfn_end),
		(p, pfn_start, pfn_end))
CCVM_BACKEND_OP(gmem_defer_removal, OPTIONAL_RET0, INT, VM(vm), CCVM_INVALID_GFN,
		(struct ccvm_vm *vm, struct ccvm_gmem_inode *inode), (vm, inode))
CCVM_BACKEND_OP(pre_set_mem_attr, OPTIONAL_RET0, INT, VM(vm), start,
		(struct ccvm_vm *vm, uint64_t start, uint64_t end, uint64_t attrs),
		(vm, start, end, attrs))
CCVM_BACKEND_OP(post_set_mem_attr, OPTIONAL, VOID, VM(vm), start,
		(struct ccvm_vm *vm, uint64_t start, uint64_t end, uint64_t attrs),
		(vm, start, end, attrs))
CCVM_BACKEND_OP(update_mem_attr, OPTIONAL_RET0, INT, VM(vm), start,
		(struct ccvm_vm *vm, struct ccvm_memslot *slot, uint64_t attrs,
		 uint64_t start, uint64_t end), (vm, slot, attrs, start, end))
CCVM_BACKEND_OP(link_private_spt, OPTIONAL, INT, VM(vm), gfn,
		(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t spt_pfn),
		(vm, gfn, level, spt_pfn))
CCVM_BACKEND_OP(set_private_spte, OPTIONAL, INT, VM(vm), gfn,
		(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn),
		(vm, gfn, level, pfn))
CCVM_BACKEND_OP(remove_private_spte, OPTIONAL, INT, VM(vm), gfn,
		(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn),
		(vm, gfn, level, pfn))
CCVM_BACKEND_OP(free_private_spt, OPTIONAL, INT, VM(vm), gfn,
		(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t spt_pfn),
		(vm, gfn, level, spt_pfn))
CCVM_BACKEND_OP(fault_is_private, OPTIONAL, INT, VM(vm), ccvm_gpa_to_gfn(vm, gpa),
		(struct ccvm_vm *vm, uint64_t gpa), (vm, gpa))
CCVM_BACKEND_OP(max_mapping_level, OPTIONAL_RET0, INT, VM(vm), CCVM_INVALID_GFN,
		(struct ccvm_vm *vm, uint64_t pfn, bool is_private), (vm, pfn, is_private))
CCVM_BACKEND_OP(handle_exit_hypercall, OPTIONAL, I64, VCPU(vcpu), gpa >> CCVM_PAGE_SHIFT,
		(struct ccvm_vcpu *vcpu, uint64_t gpa, uint64_t size, bool to_private,
		 struct ccvm_run *run), (vcpu, gpa, size, to_private, run))
CCVM_BACKEND_OP(guest_accept, OPTIONAL_RET0, INT, VCPU(vcpu), gfn,
		(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn, bool mapped),
		(vcpu, gfn, pfn, mapped))
CCVM_BACKEND_OP(guest_access, OPTIONAL_RET0, INT, VCPU(vcpu), gfn,
		(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn, bool is_private,
		 bool write), (vcpu, gfn, pfn, is_private, write))
CCVM_BACKEND_OP(host_access, OPTIONAL_RET0, DIRECT_INT, PLATFORM(p), CCVM_INVALID_GFN,
		(struct ccvm_platform *p, uint64_t pfn, bool write), (p, pfn, write))
CCVM_BACKEND_OP(host_ciphertext, OPTIONAL, DIRECT_VOID, PLATFORM(p), CCVM_INVALID_GFN,
		(struct ccvm_platform *p, uint64_t pfn, void *page), (p, pfn, page))
CCVM_BACKEND_OP(check_invariants, OPTIONAL_RET0, DIRECT_INT, VM(vm), CCVM_INVALID_GFN,
		(struct ccvm_vm *vm, struct ccvm_invariant_report *r), (vm, r))
CCVM_BACKEND_OP(guest_accept_level, OPTIONAL, INT, VCPU(vcpu), gfn,
		(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn, int map_level, int level),
		(vcpu, gfn, pfn, map_level, level))
CCVM_BACKEND_OP(split_private_spte, OPTIONAL, INT, VM(vm), gfn,
		(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn, uint64_t spt_pfn),
		(vm, gfn, level, pfn, spt_pfn))

#undef CCVM_BACKEND_OP
