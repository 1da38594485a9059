/* SPDX-License-Identifier: MIT */
/*
 * Study knobs (include/ccvm/ccvm.h, docs/studies/README.md): per-VM
 * switches back to code the kernel discussed and did not merge, so that a
 * study runs the old and the merged behaviour on the same model.  Every
 * knob is 0, what upstream merged, until a study sets it.  The core keeps
 * the values; the code each knob selects reads it where it runs (the core's
 * own knobs here in lib/, a backend's through ccvm_vm_study_knob()).
 */
#include "internal.h"

struct study_knob_desc {
	uint32_t max;		/* largest legal value */
	bool core;		/* the core implements it (else: caps.study_knobs) */
};

static const struct study_knob_desc knob_desc[CCVM_STUDY_NR_KNOBS] = {
	[CCVM_STUDY_MIRROR_RELOAD] = { CCVM_MIRROR_RELOAD_V3, true },
	[CCVM_STUDY_GMEM_DEFER_REMOVAL] = { CCVM_GMEM_DEFER_RFC, false },
	[CCVM_STUDY_SNP_RMP_UPDATE] = { CCVM_SNP_RMP_LOCKED, false },
	[CCVM_STUDY_HKID_RELEASE] = { CCVM_HKID_RELEASE_V19, false },
	[CCVM_STUDY_TDX_BUSY] = { CCVM_TDX_BUSY_GIVE_UP, false },
};

/* Whether @knob means anything on @vm. */
static bool knob_applies(const struct ccvm_vm *vm, unsigned int knob)
{
	if (!knob_desc[knob].core)
		return vm->caps.study_knobs & (1ull << knob);
	switch (knob) {
	case CCVM_STUDY_MIRROR_RELOAD:
		return vm->caps.has_mirror_root;
	default:
		return false;
	}
}

int ccvm_vm_set_study_knob(struct ccvm_vm *vm, unsigned int knob, uint32_t value)
{
	if (!vm || knob >= CCVM_STUDY_NR_KNOBS || value > knob_desc[knob].max)
		return -EINVAL;
	if (!knob_applies(vm, knob))
		return -EOPNOTSUPP;
	atomic_store_explicit(&vm->study[knob], value, memory_order_relaxed);
	return 0;
}

int ccvm_vm_get_study_knob(struct ccvm_vm *vm, unsigned int knob, uint32_t *value)
{
	if (!vm || !value || knob >= CCVM_STUDY_NR_KNOBS)
		return -EINVAL;
	*value = atomic_load_explicit(&vm->study[knob], memory_order_relaxed);
	return 0;
}

uint32_t ccvm_vm_study_knob(const struct ccvm_vm *vm, unsigned int knob)
{
	if (knob >= CCVM_STUDY_NR_KNOBS)
		return 0;
	return atomic_load_explicit(&vm->study[knob], memory_order_relaxed);
}
