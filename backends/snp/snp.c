/* SPDX-License-Identifier: MIT */
/*
 * The snp backend: KVM's SEV-SNP side over the simulated hardware of
 * snp-hw.c.  For now only the platform-wide part: capabilities and the
 * hardware's power-on and power-off.
 */
#include <ccvm/backend.h>

#include "snp-hw.h"

static void snp_get_caps(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
{
	(void)vm;
	caps->name = "snp";
	caps->vm_type = 4;		/* KVM_X86_SNP_VM */
	caps->memory_attributes = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	caps->gmem_flags = 0;
	caps->private_max_level = CCVM_LEVEL_2M;
	caps->shared_max_level = CCVM_LEVEL_2M;
	caps->has_shared_bit = true;	/* the C-bit, as the VM's shared bit */
	caps->has_mirror_root = false;
	caps->requires_accept = true;	/* PVALIDATE */
	caps->needs_finalize = true;	/* SNP_LAUNCH_FINISH */
	caps->preserves_data_without_punch = true;
	caps->private_readable_by_host = false;
	caps->map_gpa_max_bytes = 0;
}

static int snp_platform_init(struct ccvm_platform *p)
{
	return ccvm_snp_hw_init(p, ccvm_snp_hw_of(p));
}

static void snp_platform_destroy(struct ccvm_platform *p)
{
	ccvm_snp_hw_fini(ccvm_snp_hw_of(p));
}

const struct ccvm_backend_ops ccvm_snp_backend_ops = {
	.abi_version = CCVM_BACKEND_ABI_VERSION,
	.size = sizeof(struct ccvm_backend_ops),
	.name = "snp",
	.platform_priv_size = sizeof(struct ccvm_snp_hw),
	.get_caps = snp_get_caps,
	.platform_init = snp_platform_init,
	.platform_destroy = snp_platform_destroy,
};
