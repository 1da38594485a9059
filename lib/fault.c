/* SPDX-License-Identifier: MIT */
/*
 * The TDP fault path (docs/semantics.md 2.3): what a guest access that found
 * no mapping does, KVM_PRE_FAULT_MEMORY, and the launch-time map of
 * populate.  The page tables it installs into are lib/mmu.c's.
 *
 * One fault, as kvm_tdp_page_fault():
 *   classify the access private or shared (the shared bit, the backend's
 *     fault_is_private, or the attribute) -> a kind that disagrees with the
 *     attribute is a memory-fault exit: nothing converts implicitly (2.5)
 *   -> under memslots_rw read (the SRCU of a fault): snapshot the
 *     invalidation sequence, find the slot (none: MMIO)
 *   -> resolve the frame: gmem's pfn (allocated and prepared) for private
 *     memory, the VMM's buffer for shared -> pick the level
 *   -> under mmu_lock read: if an invalidation touched the range since the
 *     snapshot, retry; else install through the vCPU's root.
 *
 * Hugepages.  A 2M leaf needs the slot's lpage tracking to allow it
 * (uniform attributes, whole 2M inside one slot), the caps and the
 * backend's max_mapping_level to allow it, and a contiguous backing: the
 * VMM buffer's 2M must start 2M aligned (as KVM's hva/gfn alignment rule),
 * and a gmem 2M must be one folio of order >= 9 at a matching alignment.
 * gmem hands out order-0 pages today, so private leaves are 4K.
 *
 * A fault that must run again (CCVM_PF_RETRY: an invalidation raced with
 * it, the slot is going away, a mirror install was busy) is run again by
 * the one retry loop below, without going back to the guest, as KVM's TDX
 * EPT-violation loop and kvm_tdp_map_page() do (6.13).  KVM ends those
 * loops only for a signal (-EINTR) or a dead VM (-EIO); a user-space model
 * gets no signals, so the loop has a bound instead, CCVM_FAULT_RETRY_LIMIT
 * runs, and past it reports -EBUSY: the errno KVM gives userspace for
 * contention it does not wait out (TDX's busy SEAMCALLs, 6.11), and the one
 * the vCPU entry loop reports for the same bound.  A guest gets it as a
 * CCVM_EXIT_INTERNAL_ERROR exit {-EBUSY} (run returns -EIO) and faults
 * again on its next run; KVM_PRE_FAULT_MEMORY and populate return it.
 */
#include <stdlib.h>

#include "backend-call.h"

/* ---- classification ------------------------------------------------------ */

enum access_kind {
	ACCESS_SHARED,
	ACCESS_PRIVATE,
	ACCESS_BY_ATTR,		/* no hardware signal: the attribute decides (mock) */
};

/*
 * The kind of an access.  A failing fault_is_private op is the fault's
 * error: guessing "shared" would turn a private write into a conversion
 * request the guest never made.
 */
static int access_kind(struct ccvm_vm *vm, uint64_t gpa, enum access_kind *kind)
{
	int r;

	if (ccvm_has_op(vm, fault_is_private)) {
		r = ccvm_op_fault_is_private(vm, gpa);
		if (r < 0)
			return r;
		*kind = r ? ACCESS_PRIVATE : ACCESS_SHARED;
	} else if (vm->shared_bit) {
		*kind = (gpa & vm->shared_bit) ? ACCESS_SHARED : ACCESS_PRIVATE;
	} else {
		*kind = ACCESS_BY_ATTR;
	}
	return 0;
}

static void memory_fault_exit(struct ccvm_fault_exit *exit, uint64_t gfn, bool is_private)
{
	exit->reason = CCVM_EXIT_MEMORY_FAULT;
	exit->gpa = gfn << CCVM_PAGE_SHIFT;
	exit->size = CCVM_PAGE_SIZE;
	exit->flags = is_private ? CCVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
}

/* ---- the invalidation check ------------------------------------------------ */

/*
 * An invalidation is in progress and its range meets [@start, @end); one
 * whose range is still empty counts only for a caller under mmu_lock
 * (@locked), which could otherwise map what the invalidation will zap.
 */
static bool invalidation_covers(struct ccvm_mmu *m, uint64_t start, uint64_t end, bool locked)
{
	uint64_t s, e;

	if (atomic_load_explicit(&m->invalidate_in_progress, memory_order_acquire) <= 0)
		return false;
	s = atomic_load_explicit(&m->range_start, memory_order_relaxed);
	e = atomic_load_explicit(&m->range_end, memory_order_acquire);
	return s == CCVM_INVALID_GFN ? locked : (start < e && s < end);
}

/*
 * Did an invalidation touch [start, end) since the fault took @seq?  As
 * mmu_invalidate_retry_gfn(): an invalidation still in progress over the
 * range, or any that ended since, means what the fault looked up may be
 * gone.  Without mmu_lock (@locked false: the cheap early check before the
 * pfn lookup) a range still empty while in progress is not a hit, since
 * the check under the lock catches it.  Under mmu_lock the range checked
 * is the one the new leaf would cover (its whole 2M for a hugepage):
 * stricter than KVM's single gfn, it makes a 2M leaf straddling an
 * invalidation impossible whatever widened the range.
 */
static bool invalidated_since(struct ccvm_vm *vm, uint64_t seq, uint64_t start,
			      uint64_t end, bool locked)
{
	struct ccvm_mmu *m = &vm->mmu;

#ifdef CCVM_MUTANT_NO_SEQ_RETRY
	/* Broken on purpose (tests/check_mutants.c only): never stale. */
	(void)m;
	(void)seq;
	(void)start;
	(void)end;
	(void)locked;
	return false;
#endif
	if (ccvm_unlikely(invalidation_covers(m, start, end, locked)))
		return true;
	return atomic_load_explicit(&m->invalidate_seq, memory_order_acquire) != seq;
}

/* ---- one fault ------------------------------------------------------------------ */

/*
 * The largest level the backing and the backend allow, before mmu_lock; the
 * slot's lpage tracking is applied under the lock.  As KVM, the backend is
 * asked only when something larger than 4K is still possible.
 */
static int fault_backing_level(struct ccvm_vm *vm, const struct ccvm_page_fault *f,
			       int order)
{
	uint32_t cap = f->is_private ? vm->caps.private_max_level : vm->caps.shared_max_level;
	uint64_t head = f->frame - (f->gfn & (CCVM_PAGES_PER_2M - 1));
	int level = CCVM_LEVEL_2M;
	int ret;

	if (cap && cap < (uint32_t)level)
		level = (int)cap;
	if (level < CCVM_LEVEL_2M)
		return CCVM_LEVEL_4K;
	if (head & (CCVM_PAGES_PER_2M - 1))
		return CCVM_LEVEL_4K;		/* the 2M would not start aligned */
	if (!f->host && (1ull << order) < CCVM_PAGES_PER_2M)
		return CCVM_LEVEL_4K;		/* not one physically contiguous folio */
	ret = ccvm_op_max_mapping_level(vm, f->host ? CCVM_NO_PFN : f->frame, f->is_private);
	if (ret < 0)
		return CCVM_LEVEL_4K;
	if (ret > 0 && ret < level)
		level = ret;
	return level;
}

/*
 * One fault at @gpa for @v.  @kind says how the access was classified;
 * ACCESS_BY_ATTR reads the attribute only after the seq snapshot, so a
 * conversion racing with the fault is always caught by the stale check.
 */
static int fault_run(struct ccvm_vcpu *v, uint64_t gpa, enum access_kind kind,
		     struct ccvm_fault_exit *exit, int *mapped_level, bool slots_held)
{
	unsigned int slots_sh = 0;
	struct ccvm_vm *vm = v->vm;
	struct ccvm_page_fault f = { .gfn = ccvm_gpa_to_gfn(vm, gpa) };
	struct ccvm_memslot *slot;
	struct ccvm_root *root;
	uint64_t seq, span;
	unsigned int mmu_shard;
	bool attr_private;
	int order = 0;
	int ret;

	if (!ccvm_vm_usable(vm))
		return -EIO;
	ret = ccvm_mmu_reload(v);
	if (ret)
		return ret;
	ccvm_account_fast(vm->p, vm, CCVM_EV_FAULT, 1);

	if (!slots_held)
		slots_sh = ccvm_brlock_rdlock(&vm->memslots_rw);
	/* The snapshot races with every invalidation: a point of its own. */
	ccvm_sched_point(ccvm_sched_of(vm->p), NULL, "invalidate_seq snapshot");
	seq = atomic_load_explicit(&vm->mmu.invalidate_seq, memory_order_acquire);

	/* In place the attribute is the gmem's, reached through the slot. */
	slot = f.gfn < vm->max_gfn ? ccvm_memslot_find(vm, f.gfn) : NULL;
	attr_private = ccvm_mem_is_private(vm, slot, f.gfn);
	if (kind == ACCESS_BY_ATTR) {
		f.is_private = attr_private;
	} else {
		f.is_private = kind == ACCESS_PRIVATE;
		/* Nothing ever converts implicitly: the VMM decides (2.5). */
		if (f.is_private != attr_private) {
			memory_fault_exit(exit, f.gfn, f.is_private);
			ret = CCVM_PF_EXIT;
			goto out;
		}
	}

	if (!slot) {
		exit->reason = CCVM_EXIT_MMIO;
		exit->gpa = gpa;
		exit->size = 0;
		exit->flags = 0;
		ret = CCVM_PF_EXIT;
		goto out;
	}
	ccvm_sched_point(ccvm_sched_of(vm->p), NULL, "invalidate check");
	if (atomic_load_explicit(&slot->invalid, memory_order_acquire) ||
	    invalidated_since(vm, seq, f.gfn, f.gfn + 1, false)) {
		ret = CCVM_PF_RETRY;
		goto out;
	}

	if (f.is_private) {
		uint64_t pfn;

		if (!(slot->flags & CCVM_MEM_GUEST_MEMFD) || !slot->inode) {
			memory_fault_exit(exit, f.gfn, true);
			ret = CCVM_PF_EXIT;
			goto out;
		}
		ret = ccvm_gmem_get_pfn(vm, slot, f.gfn, &pfn, &order, true);
		if (ret) {
			/* gmem's own error is the result, with the exit filled. */
			memory_fault_exit(exit, f.gfn, true);
			goto out;
		}
		f.frame = pfn;
	} else if (slot->gmem_only) {
		uint64_t pfn;

		/* GMEM_ONLY: the shared page is gmem's own, mapped through the direct root. */
		if (!atomic_load(&slot->gmem)) {
			memory_fault_exit(exit, f.gfn, false);
			ret = CCVM_PF_EXIT;
			goto out;
		}
		ret = ccvm_gmem_get_pfn(vm, slot, f.gfn, &pfn, &order, false);
		if (ret) {
			memory_fault_exit(exit, f.gfn, false);
			goto out;
		}
		f.frame = pfn;
	} else {
		if (!slot->userspace_addr) {
			memory_fault_exit(exit, f.gfn, false);
			ret = CCVM_PF_EXIT;
			goto out;
		}
		f.host = true;
		f.frame = ((uintptr_t)slot->userspace_addr >> CCVM_PAGE_SHIFT) +
			  (f.gfn - slot->base_gfn);
	}
	f.level = fault_backing_level(vm, &f, order);
	/* The accept's level is in the EPT violation: KVM maps no larger. */
	if (f.is_private && v->accept_level && f.level > v->accept_level)
		f.level = v->accept_level;
	/* Only the invalidation words (the slot was checked above). */
	ccvm_sched_point2(ccvm_sched_of(vm->p), &vm->mmu, NULL, CCVM_SCHED_RD_A, "invalidate check");
	if (invalidated_since(vm, seq, f.gfn, f.gfn + 1, false)) {
		ret = CCVM_PF_RETRY;
		goto out;
	}

	mmu_shard = ccvm_brlock_rdlock(&vm->mmu_lock);
	if (f.level > CCVM_LEVEL_4K) {
		int slot_level = ccvm_memslot_max_level(slot, f.gfn);

		if (slot_level < f.level)
			f.level = slot_level < CCVM_LEVEL_4K ? CCVM_LEVEL_4K : slot_level;
	}
	root = ccvm_vcpu_root(v, f.is_private);
	span = ccvm_level_pages(f.level);
	if (!root || ccvm_root_is_invalid(root) ||
	    invalidated_since(vm, seq, f.gfn & ~(span - 1), (f.gfn | (span - 1)) + 1, true))
		ret = CCVM_PF_RETRY;
	else
		ret = ccvm_tdp_map(vm, root, &f);
	ccvm_brlock_rdunlock(&vm->mmu_lock, mmu_shard);

	if (ret == 0 && f.installed)
		ccvm_account_fast(vm->p, vm, f.level == CCVM_LEVEL_2M ? CCVM_EV_MAP_2M
								      : CCVM_EV_MAP_4K, 1);
	if (ret == 0 && mapped_level)
		*mapped_level = f.level;
out:
	if (!slots_held)
		ccvm_brlock_rdunlock(&vm->memslots_rw, slots_sh);
	if (ret == CCVM_PF_RETRY)
		ccvm_account(vm->p, vm, CCVM_EV_FAULT_RETRY, 1);
	return ret;
}

int ccvm_mmu_page_fault(struct ccvm_vcpu *v, uint64_t gpa, bool write,
			struct ccvm_fault_exit *exit)
{
	enum access_kind kind;
	int err;

	(void)write;	/* no read-only or dirty-logged memory in the model */
	if (!ccvm_vm_usable(v->vm))
		return -EIO;
	err = access_kind(v->vm, gpa, &kind);
	if (err)
		return err;
	return fault_run(v, gpa, kind, exit, NULL, false);
}

/*
 * Map private @gfn of @vm without a vCPU, as kvm_tdp_mmu_map_private_pfn():
 * into the VM's root of the private kind, allocating one that only the MMU
 * references when no vCPU made one yet (vCPUs find and share it later).
 * mmu_lock is taken for write: launch is not a hot path and a root may
 * have to be allocated.
 */
static int launch_map_run(struct ccvm_vm *vm, uint64_t gfn)
{
	unsigned int slots_sh;
	struct ccvm_page_fault f = { .gfn = gfn, .is_private = true, .level = CCVM_LEVEL_4K };
	struct ccvm_memslot *slot;
	struct ccvm_root *root;
	uint64_t seq;
	int order, ret;

	slots_sh = ccvm_brlock_rdlock(&vm->memslots_rw);
	ccvm_sched_point(ccvm_sched_of(vm->p), NULL, "invalidate_seq snapshot");
	seq = atomic_load_explicit(&vm->mmu.invalidate_seq, memory_order_acquire);
	slot = ccvm_memslot_find(vm, gfn);
	if (!slot || !(slot->flags & CCVM_MEM_GUEST_MEMFD) || !slot->inode) {
		ret = -EINVAL;
		goto out;
	}
	ret = ccvm_gmem_get_pfn(vm, slot, gfn, &f.frame, &order, true);
	if (ret)
		goto out;

	ccvm_brlock_wrlock(&vm->mmu_lock);
	root = ccvm_mmu_launch_root(vm);
	if (!root)
		ret = -ENOMEM;
	else if (invalidated_since(vm, seq, gfn, gfn + 1, true))
		ret = CCVM_PF_RETRY;
	else
		ret = ccvm_tdp_map(vm, root, &f);
	if (ret == 0 && !f.installed)
		ret = -EEXIST;
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	if (ret == 0)
		ccvm_account(vm->p, vm, CCVM_EV_MAP_4K, 1);
out:
	ccvm_brlock_rdunlock(&vm->memslots_rw, slots_sh);
	return ret;
}

/* ---- the retry loop ---------------------------------------------------------- */

struct fault_attempt {
	struct ccvm_vm *vm;
	struct ccvm_vcpu *v;		/* NULL: the launch map of populate */
	uint64_t gpa;
	enum access_kind kind;
	struct ccvm_fault_exit *exit;
	int *level;			/* out: level of the leaf, may be NULL */
	unsigned int *slots_sh;		/* memslots_rw held by the caller: its shard */
};

/*
 * Let what sent the fault of @a back finish before it runs again.
 * Free-running: sched_yield(), the vCPU re-entering the guest to fault
 * again.  Serial: while an invalidation covering the page is in progress
 * every attempt fails the same check, so the fault waits until the
 * invalidation record changes (one ends, or another begins) instead of
 * yielding round after round: each such round would be a free switch whose
 * every order the explorer must try although it changes nothing
 * (docs/scheduler.md 8.2).  Other causes (a busy TDX installer, a frozen
 * entry, an invalid slot or root) still yield.
 */
static void retry_backoff(const struct fault_attempt *a)
{
	struct ccvm_sched *s = ccvm_sched_of(a->vm->p);
	struct ccvm_mmu *m = &a->vm->mmu;
	uint64_t gfn = ccvm_gpa_to_gfn(a->vm, a->gpa);

	if (ccvm_sync_serial(s)) {
		long busy = atomic_load_explicit(&m->invalidate_in_progress, memory_order_acquire);

		if (busy > 0 && invalidation_covers(m, gfn, gfn + 1, true)) {
			ccvm_spin_wait_on(s, &m->invalidate_in_progress, busy, m,
					  "fault retry: invalidation");
			return;
		}
	}
	ccvm_sched_yield(s, "fault retry");
}

/*
 * Run the fault of @a until it stops asking for a retry.  *@tries counts
 * the runs the caller's access has had so far, over calls: a guest access
 * that faults, re-executes and faults again spends the same budget.
 * Return: the fault's result, never CCVM_PF_RETRY; -EIO once the VM is
 * bugged or dead; -EBUSY, with *@tries reset, past the bound.
 */
static int fault_retry(struct fault_attempt *a, unsigned int *tries)
{
	int ret;

	for (;;) {
		if (ccvm_vm_is_dead(a->vm) || !ccvm_vm_usable(a->vm))
			return -EIO;
		if (*tries > CCVM_FAULT_RETRY_LIMIT) {
			ccvm_log(CCVM_LOG_WARN, "vm %u: fault at %#llx ran %u times without "
				 "progress", a->vm->id, (unsigned long long)a->gpa,
				 CCVM_FAULT_RETRY_LIMIT);
			*tries = 0;
			return -EBUSY;
		}
		++*tries;
		if (a->v)
			ret = fault_run(a->v, a->gpa, a->kind, a->exit, a->level,
					a->slots_sh != NULL);
		else
			ret = launch_map_run(a->vm, ccvm_gpa_to_gfn(a->vm, a->gpa));
		if (ret != CCVM_PF_RETRY)
			return ret;
		/*
		 * What the fault waits for may be a memslot update, which waits
		 * for memslots_rw's readers: a caller's hold is dropped for the
		 * wait, or the two would wait for each other.
		 */
		if (a->slots_sh)
			ccvm_brlock_rdunlock(&a->vm->memslots_rw, *a->slots_sh);
		retry_backoff(a);
		if (a->slots_sh)
			*a->slots_sh = ccvm_brlock_rdlock(&a->vm->memslots_rw);
	}
}

int ccvm_fault_in(struct ccvm_vcpu *v, uint64_t gpa, bool write,
		  struct ccvm_fault_exit *exit, unsigned int *tries)
{
	struct fault_attempt a = { .vm = v->vm, .v = v, .gpa = gpa, .exit = exit };
	int err;

	(void)write;
	if (!ccvm_vm_usable(v->vm))
		return -EIO;
	err = access_kind(v->vm, gpa, &a.kind);
	if (err)
		return err;
	return fault_retry(&a, tries);
}

int ccvm_fault_map_private(struct ccvm_vm *vm, uint64_t gfn)
{
	struct fault_attempt a = { .vm = vm, .gpa = gfn << CCVM_PAGE_SHIFT };
	unsigned int tries = 0;

	return fault_retry(&a, &tries);
}

/* ---- KVM_PRE_FAULT_MEMORY ------------------------------------------------- */

/* One page of KVM_PRE_FAULT_MEMORY, memslots_rw held for read (shard *@slots_sh). */
static int pre_fault_one(struct ccvm_vcpu *v, uint64_t gpa, int *level, unsigned int *slots_sh)
{
	struct ccvm_vm *vm = v->vm;
	uint64_t gfn = ccvm_gpa_to_gfn(vm, gpa);
	struct ccvm_fault_exit exit;
	struct fault_attempt a = {
		.vm = vm, .v = v, .gpa = gfn << CCVM_PAGE_SHIFT, .exit = &exit, .level = level,
		.slots_sh = slots_sh,
	};
	unsigned int tries = 0;
	int ret;

	/* As a guest access would: private if the attribute says so. */
	if (vm->shared_bit) {
		bool is_private = ccvm_vm_gfn_is_private(vm, gfn);

		a.kind = is_private ? ACCESS_PRIVATE : ACCESS_SHARED;
		if (!is_private)
			a.gpa |= vm->shared_bit;
	} else {
		a.kind = ACCESS_BY_ATTR;
	}
	ret = fault_retry(&a, &tries);
	if (ret == CCVM_PF_EXIT)
		return exit.reason == CCVM_EXIT_MMIO ? -ENOENT : -EFAULT;
	return ret;
}

int ccvm_vcpu_pre_fault_memory(struct ccvm_vcpu *v, uint64_t *gpa, uint64_t *size)
{
	unsigned int slots_sh;
	struct ccvm_vm *vm;
	uint64_t full;
	int ret = 0;

	if (!v || !gpa || !size)
		return -EINVAL;
	if (!*size || !ccvm_is_page_aligned(*gpa) || !ccvm_is_page_aligned(*size) ||
	    *gpa + *size <= *gpa)
		return -EINVAL;
	vm = v->vm;

	ccvm_mutex_lock(&v->mutex);
	if (v->handle_closed) {
		ret = -EINVAL;	/* a closed handle, as run and set_guest say */
		goto out;
	}
	if (!ccvm_vm_usable(vm)) {
		ret = -EIO;
		goto out;
	}
	/* TDX maps private memory only once the TD is finalized. */
	if (vm->caps.has_mirror_root && vm->caps.needs_finalize &&
	    !ccvm_vm_is_finalized(vm)) {
		ret = -EOPNOTSUPP;
		goto out;
	}
	ret = ccvm_mmu_reload(v);
	if (ret)
		goto out;

	/*
	 * memslots_rw is held across the pages, as KVM holds its SRCU across
	 * the ioctl's loop, rather than taken again by every page's fault.
	 * It is a lock, though, where SRCU never blocks a reader: a memslot
	 * update waiting for it would hold up every other fault of the VM
	 * behind it, so the loop lets a waiting writer in between two pages.
	 */
	slots_sh = ccvm_brlock_rdlock(&vm->memslots_rw);
	full = *size;
	while (*size) {
		uint64_t g = *gpa, leaf_size, n;
		int level = CCVM_LEVEL_4K;

		if (ccvm_brlock_needbreak(&vm->memslots_rw)) {
			ccvm_brlock_rdunlock(&vm->memslots_rw, slots_sh);
			slots_sh = ccvm_brlock_rdlock(&vm->memslots_rw);
		}
		ret = pre_fault_one(v, g, &level, &slots_sh);
		if (ret < 0)
			break;
		/* Advance to the end of the leaf that now maps g. */
		leaf_size = ccvm_level_pages(level) << CCVM_PAGE_SHIFT;
		n = (g & ~(leaf_size - 1)) + leaf_size - g;
		if (n > *size)
			n = *size;
		*gpa += n;
		*size -= n;
	}
	ccvm_brlock_rdunlock(&vm->memslots_rw, slots_sh);
	if (*size != full)
		ret = 0;
out:
	ccvm_mutex_unlock(&v->mutex);
	return ret;
}
