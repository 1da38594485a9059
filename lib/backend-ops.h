/* SPDX-License-Identifier: MIT */
/*
 * The backend op list, one line per op, in struct ccvm_backend_ops order.
 * Include with CCVM_BACKEND_OP(name, kind, ret) defined; kind is one of
 *   MANDATORY      registration fails (-EINVAL) without it
 *   OPTIONAL       may be NULL; the core checks and does without
 *   OPTIONAL_RET0  may be NULL; registration fills in an op returning 0
 * and ret is INT (0 or a negative errno: countable as an error, injectable)
 * or VOID (cannot fail).
 * From this list the core generates validation, default fill-in, op names
 * for logs and traces, per-op call counters and fault injection.
 */
CCVM_BACKEND_OP(get_caps,		MANDATORY, VOID)
CCVM_BACKEND_OP(platform_init,		OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(platform_destroy,	OPTIONAL, VOID)
CCVM_BACKEND_OP(vm_init,		OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(vm_pre_destroy,		OPTIONAL, VOID)
CCVM_BACKEND_OP(vm_destroy,		OPTIONAL, VOID)
CCVM_BACKEND_OP(vm_finalize,		OPTIONAL, INT)
CCVM_BACKEND_OP(vm_terminate,		OPTIONAL, INT)
CCVM_BACKEND_OP(populate,		OPTIONAL, INT)
CCVM_BACKEND_OP(vcpu_create,		OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(vcpu_free,		OPTIONAL, VOID)
CCVM_BACKEND_OP(vcpu_enter,		OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(vcpu_exit,		OPTIONAL, VOID)
CCVM_BACKEND_OP(gmem_prepare,		OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(gmem_invalidate,	OPTIONAL, VOID)
CCVM_BACKEND_OP(gmem_defer_removal,	OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(pre_set_mem_attr,	OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(post_set_mem_attr,	OPTIONAL, VOID)
CCVM_BACKEND_OP(update_mem_attr,	OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(link_private_spt,	OPTIONAL, INT)
CCVM_BACKEND_OP(set_private_spte,	OPTIONAL, INT)
CCVM_BACKEND_OP(remove_private_spte,	OPTIONAL, INT)
CCVM_BACKEND_OP(free_private_spt,	OPTIONAL, INT)
CCVM_BACKEND_OP(fault_is_private,	OPTIONAL, INT)
CCVM_BACKEND_OP(max_mapping_level,	OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(handle_exit_hypercall,	OPTIONAL, INT)
CCVM_BACKEND_OP(guest_accept,		OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(guest_access,		OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(host_access,		OPTIONAL_RET0, INT)
CCVM_BACKEND_OP(host_ciphertext,	OPTIONAL, VOID)
CCVM_BACKEND_OP(check_invariants,	OPTIONAL_RET0, INT)
