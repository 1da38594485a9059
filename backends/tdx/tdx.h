/* SPDX-License-Identifier: MIT */
/*
 * The KVM side of the "tdx" backend (tdx.c), as seen by tests, examples and
 * benchmarks that link the library and want to look behind the public API:
 * the TD and vCPU handles of the simulated module and what deferred removal
 * pinned.  A VMM never needs this header.
 */
#ifndef CCVM_BACKENDS_TDX_H
#define CCVM_BACKENDS_TDX_H

#include <stdbool.h>
#include <stdint.h>

#include <ccvm/backend.h>

#include "tdx-module.h"

/* Inodes one TD may pin for deferred removal (TDX_MAX_GMEM_INODES). */
#define CCVM_TDX_MAX_GMEM_INODES	64u

/* The module of @p, a platform created with the tdx backend. */
struct ccvm_tdx_module *ccvm_tdx_module_of(struct ccvm_platform *p);

/* The TD behind @vm (NULL if @vm is not a TD), and the vCPU behind @v. */
struct ccvm_tdx_td *ccvm_tdx_vm_td(struct ccvm_vm *vm);
struct ccvm_tdx_vp *ccvm_tdx_vcpu_vp(struct ccvm_vcpu *v);

/*
 * Inodes @vm has pinned for deferred removal right now (the study knob
 * CCVM_STUDY_GMEM_DEFER_REMOVAL of ccvm.h turns deferral on).
 */
unsigned int ccvm_tdx_nr_deferred(struct ccvm_vm *vm);

/* True while the TD holds its HKID (from INIT_VM until its release). */
bool ccvm_tdx_hkid_assigned(struct ccvm_vm *vm);

/*
 * The TDX half of ccvm_vm_check_invariants() (backends/tdx/tdx-check.c):
 * the KVM side's view against the module's S-EPT, PAMT and TD state.
 */
int ccvm_tdx_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r);

/*
 * I38 over the platform (tdx.c; ccvm_tdx_check_invariants() calls it):
 * with Dynamic PAMT (CCVM_PLATFORM_TDX_DYNAMIC_PAMT) every 2M region of
 * host memory holds a PAMT page pair exactly while TDs hold pages of it at
 * 4K, the backend's count of those pages is the PAMT's, and the pairs the
 * backend, the module and ccvm_stats count agree (a pair whose REMOVE
 * failed may stay idle: the backend counts it as stuck); without it, no
 * pair exists.  At rest only (no backend op in flight).
 * Return: 0 or -EINVAL.
 */
int ccvm_tdx_check_dpamt(struct ccvm_platform *p, struct ccvm_invariant_report *r);

#endif /* CCVM_BACKENDS_TDX_H */
