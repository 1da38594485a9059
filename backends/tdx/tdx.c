/* SPDX-License-Identifier: MIT */
/*
 * The "tdx" backend: KVM's TDX code driving the simulated TDX module
 * (tdx-module.h).  This file holds the backend table; the KVM-side ops
 * (TD/vCPU lifecycle, the mirror-root hooks, HKID release) are still to be
 * written.
 */
#include <errno.h>

#include "tdx-module.h"

static void tdx_get_caps(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
{
	(void)vm;
	caps->vm_type = 5;	/* KVM_X86_TDX_VM */
	caps->memory_attributes = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	caps->gmem_flags = 0;
	caps->private_max_level = CCVM_LEVEL_4K;
	caps->shared_max_level = CCVM_LEVEL_2M;
	caps->has_shared_bit = true;
	caps->has_mirror_root = true;
	caps->requires_accept = true;
	caps->needs_finalize = true;
	caps->preserves_data_without_punch = false;
	caps->private_readable_by_host = false;
	caps->map_gpa_max_bytes = CCVM_HPAGE_2M_SIZE;
}

static int tdx_platform_init(struct ccvm_platform *p)
{
	return ccvm_tdx_module_init(p, ccvm_platform_priv(p));
}

static void tdx_platform_destroy(struct ccvm_platform *p)
{
	ccvm_tdx_module_fini(ccvm_platform_priv(p));
}

/*
 * Placeholders until the KVM-side task lands: a mirror-root backend must
 * provide all four mirror ops to pass registration.
 */
static int tdx_link_private_spt(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t spt_pfn)
{
	(void)vm; (void)gfn; (void)level; (void)spt_pfn;
	return -EOPNOTSUPP;
}

static int tdx_set_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
{
	(void)vm; (void)gfn; (void)level; (void)pfn;
	return -EOPNOTSUPP;
}

static int tdx_remove_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
{
	(void)vm; (void)gfn; (void)level; (void)pfn;
	return -EOPNOTSUPP;
}

static int tdx_free_private_spt(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t spt_pfn)
{
	(void)vm; (void)gfn; (void)level; (void)spt_pfn;
	return -EOPNOTSUPP;
}

const struct ccvm_backend_ops ccvm_tdx_backend_ops = {
	.abi_version = CCVM_BACKEND_ABI_VERSION,
	.size = sizeof(struct ccvm_backend_ops),
	.name = "tdx",
	.platform_priv_size = sizeof(struct ccvm_tdx_module),
	.get_caps = tdx_get_caps,
	.platform_init = tdx_platform_init,
	.platform_destroy = tdx_platform_destroy,
	.link_private_spt = tdx_link_private_spt,
	.set_private_spte = tdx_set_private_spte,
	.remove_private_spte = tdx_remove_private_spte,
	.free_private_spt = tdx_free_private_spt,
};
