/* SPDX-License-Identifier: MIT */
/*
 * The KVM side of the "snp" backend (snp.c, snp-check.c), as seen by tests
 * and tools that link the library and want to look behind the public API:
 * the VM's ASID, firmware context and VMSA pages, the hook into the window
 * of a conversion, and the backend's invariant check.  The simulated
 * hardware it drives is snp-hw.h.  A VMM never needs this header.
 */
#ifndef CCVM_BACKENDS_SNP_H
#define CCVM_BACKENDS_SNP_H

#include <stdint.h>

#include <ccvm/backend.h>

#include "snp-hw.h"

/* Entries of one GHCB page-state-change request (VMGEXIT_PSC_MAX_ENTRY). */
#define CCVM_SNP_PSC_MAX_ENTRIES	253u

/* The ASID of snp VM @vm.  Return: 0 or -EINVAL (not an snp VM, NULL). */
int ccvm_snp_vm_asid(struct ccvm_vm *vm, uint32_t *asid);
/* The firmware context page of @vm.  0, -EINVAL, or -ENOENT (none). */
int ccvm_snp_vm_context_pfn(struct ccvm_vm *vm, uint64_t *pfn);
/* The VMSA page of @vcpu.  0, -EINVAL, or -ENOENT (none). */
int ccvm_snp_vcpu_vmsa_pfn(struct ccvm_vcpu *vcpu, uint64_t *pfn);

/*
 * Called by update_mem_attr for each memslot range after the attribute
 * store changed and before any RMPUPDATE of the range: the window in which
 * a vCPU faulting on a page converted to private takes RMP nested faults
 * until the update lands.  A test may block in it to hold the window open.
 * Context: slots_lock held, no other lock; must not call back into the VM
 * except to read its stats.
 */
typedef void (*ccvm_snp_update_hook_fn)(struct ccvm_vm *vm, uint64_t start, uint64_t end,
					uint64_t attrs, void *ctx);
/* Install (@fn != NULL) or remove the hook of snp platform @p. */
void ccvm_snp_set_update_mem_attr_hook(struct ccvm_platform *p, ccvm_snp_update_hook_fn fn,
				       void *ctx);

/*
 * The SNP half of ccvm_vm_check_invariants() (backends/snp/snp-check.c):
 * I22 (no 4K private page under a large host mapping), I23 (every page
 * assigned to the VM's ASID is one of its gmem pages), I24.
 */
int ccvm_snp_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r);

#endif /* CCVM_BACKENDS_SNP_H */
