/* SPDX-License-Identifier: MIT */
/*
 * The memory-attribute store and KVM_SET_MEMORY_ATTRIBUTES.
 *
 * The store is one range xarray per VM, gfn -> attributes, absent = shared
 * (I26).  An update runs KVM's sequence (docs/semantics.md 1.2):
 *   validate -> slots_lock -> no-op if the range already holds the value
 *   -> reserve (the only failure, before anything changed)
 *   -> mmu_lock write: invalidate_begin, add the range widened to the 2M
 *      pages that straddle its edges, pre hook, zap mappings of the old kind
 *   -> store
 *   -> mmu_lock write: recompute MIXED for the touched 2M pages, post hook,
 *      invalidate_end
 *   -> update_mem_attr per slot, outside mmu_lock (SNP's RMP work; only
 *      under study 004's knob, and there before invalidate_end for its
 *      locked variant); if it fails, the old attributes are put back the
 *      same way and the call returns its errno with nothing changed (or
 *      -EIO with the VM bugged if even that fails): see rollback().
 * The pre and post walks only run where a memslot intersects the range;
 * elsewhere nothing can be mapped, so the store changes without an
 * invalidation, as in KVM.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backend-call.h"

uint64_t ccvm_attr_get(struct ccvm_vm *vm, uint64_t gfn)
{
	unsigned int attr_sh;
	uint64_t v;

	attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
	v = ccvm_xa_load(&vm->attrs, gfn);
	ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
	return v;
}

/* In place: the attributes of the gmem page bound at @gfn; shared without one. */
static bool gmem_gfn_is_private(struct ccvm_memslot *slot, uint64_t gfn)
{
	if (!slot || !atomic_load(&slot->gmem))
		return false;
	return ccvm_gmem_attr_get(slot->inode, slot->pgoff + (gfn - slot->base_gfn)) &
	       CCVM_MEMORY_ATTRIBUTE_PRIVATE;
}

bool ccvm_mem_is_private(struct ccvm_vm *vm, struct ccvm_memslot *slot, uint64_t gfn)
{
	if (!ccvm_vm_in_place(vm))
		return ccvm_attr_get(vm, gfn) & CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	return gmem_gfn_is_private(slot, gfn);
}

/*
 * The backends' query, from any context.  In place, the slot is found
 * under attr_lock, which memslot publishers and the gmem release's cut of
 * the slots' file pointers take for write: the slot and its inode stay
 * alive while it is held (memslots_rw could not be taken here: callers
 * may hold it already, or mmu_lock).
 */
bool ccvm_vm_gfn_is_private(struct ccvm_vm *vm, uint64_t gfn)
{
	unsigned int attr_sh;
	bool ret;

	if (!ccvm_vm_in_place(vm))
		return ccvm_attr_get(vm, gfn) & CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
	ret = gmem_gfn_is_private(gfn < vm->max_gfn ? ccvm_memslot_find(vm, gfn) : NULL, gfn);
	ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
	return ret;
}

int ccvm_vm_get_memory_attribute(struct ccvm_vm *vm, uint64_t gpa, uint64_t *attributes)
{
	if (!vm || !attributes)
		return ccvm_fail(-EINVAL, "NULL %s", vm ? "attributes" : "vm");
	if (!ccvm_is_page_aligned(gpa))
		return ccvm_fail(-EINVAL, "gpa 0x%llx not page aligned", (unsigned long long)gpa);
	*attributes = ccvm_attr_get(vm, gpa >> CCVM_PAGE_SHIFT);
	return 0;
}

int ccvm_vm_get_memory_attributes(struct ccvm_vm *vm, uint64_t gpa, uint64_t *attributes,
				  uint64_t *run_bytes)
{
	unsigned int attr_sh;
	uint64_t gfn, last, v;

	if (!run_bytes)
		return ccvm_vm_get_memory_attribute(vm, gpa, attributes);
	if (!vm || !attributes)
		return ccvm_fail(-EINVAL, "NULL %s", vm ? "attributes" : "vm");
	if (!ccvm_is_page_aligned(gpa))
		return ccvm_fail(-EINVAL, "gpa 0x%llx not page aligned", (unsigned long long)gpa);
	gfn = gpa >> CCVM_PAGE_SHIFT;
	attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
	v = ccvm_xa_run(&vm->attrs, gfn, &last);
	ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
	*attributes = v;
	if (run_bytes) {
		/*
		 * Clip the run to the GPA space.  A run from gpa 0 to its top is
		 * 2^64 bytes, which does not fit: it saturates to the largest
		 * page multiple.
		 */
		uint64_t top = UINT64_MAX >> CCVM_PAGE_SHIFT;
		uint64_t pages = (last < top ? last : top) - gfn + 1;

		*run_bytes = pages > (UINT64_MAX >> CCVM_PAGE_SHIFT) ?
			     UINT64_MAX & CCVM_PAGE_MASK : pages << CCVM_PAGE_SHIFT;
	}
	return 0;
}

/* Is the whole 2M page at @hp (a gfn) uniformly @attrs?  attr_lock held. */
static bool hugepage_uniform(struct ccvm_vm *vm, uint64_t hp, uint64_t attrs)
{
	return ccvm_xa_range_is(&vm->attrs, hp, hp + CCVM_PAGES_PER_2M - 1, attrs);
}

static bool hugepage_in_slot(const struct ccvm_memslot *slot, uint64_t hp)
{
	return hp >= slot->base_gfn && hp + CCVM_PAGES_PER_2M <= slot->base_gfn + slot->npages;
}

static uint64_t lpage_index(const struct ccvm_memslot *slot, uint64_t hp)
{
	return (hp >> 9) - (slot->base_gfn >> 9);
}

static void set_mixed(struct ccvm_memslot *slot, uint64_t hp, bool mixed)
{
	ccvm_lpage_assign(slot->lpage_mixed, lpage_index(slot, hp), mixed);
}

static bool is_mixed(struct ccvm_memslot *slot, uint64_t hp)
{
	return ccvm_lpage_test(slot->lpage_mixed, lpage_index(slot, hp));
}

/* Mixed flags of a new slot (kvm_mmu_init_memslot_memory_attributes). */
void ccvm_attr_init_memslot(struct ccvm_vm *vm, struct ccvm_memslot *slot)
{
	unsigned int attr_sh;
	uint64_t hp = (slot->base_gfn + CCVM_PAGES_PER_2M - 1) & ~(CCVM_PAGES_PER_2M - 1);
	uint64_t end = slot->base_gfn + slot->npages;

	attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
	while (hp + CCVM_PAGES_PER_2M <= end) {
		uint64_t last;

		ccvm_xa_run(&vm->attrs, hp, &last);
		if (last < hp + CCVM_PAGES_PER_2M - 1) {
			set_mixed(slot, hp, true);
			hp += CCVM_PAGES_PER_2M;
			continue;
		}
		/*
		 * One run covers every whole 2M page up to its end, and MIXED
		 * is already clear in a new slot's bitmap: go on from the 2M
		 * page that holds the run's end.
		 */
		hp = last >= end ? end : (last + 1) & ~(CCVM_PAGES_PER_2M - 1);
	}
	ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
}

/*
 * Recompute MIXED after a store over [start, end) (post hook, mmu_lock
 * write): head and tail 2M pages by looking at them, every 2M page fully
 * inside the range is uniform by construction.
 */
static void post_set_mixed(struct ccvm_vm *vm, struct ccvm_memslot *slot, uint64_t start,
			   uint64_t end, uint64_t attrs)
{
	unsigned int attr_sh;
	uint64_t head = start & ~(CCVM_PAGES_PER_2M - 1);
	uint64_t tail = (end - 1) & ~(CCVM_PAGES_PER_2M - 1);

	attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
	if (hugepage_in_slot(slot, head))
		set_mixed(slot, head, !hugepage_uniform(vm, head, attrs));
	if (tail != head && hugepage_in_slot(slot, tail))
		set_mixed(slot, tail, !hugepage_uniform(vm, tail, attrs));
	ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
	/* Every 2M page strictly between head and tail lies inside the slot. */
	if (tail > head + CCVM_PAGES_PER_2M)
		ccvm_lpage_clear_range(slot->lpage_mixed, lpage_index(slot, head) + 1,
				       lpage_index(slot, tail));
}

/*
 * The range to mark in progress: widened to a 2M page straddling an edge
 * when that page is fully inside the slot and not MIXED yet, because until
 * the post hook runs a fault next to the range could map that 2M page over
 * attributes that are about to differ (KVM closed that race in 2025-04).
 */
static void widen_for_hugepages(struct ccvm_memslot *slot, uint64_t *start, uint64_t *end)
{
	uint64_t head = *start & ~(CCVM_PAGES_PER_2M - 1);
	uint64_t tail = (*end - 1) & ~(CCVM_PAGES_PER_2M - 1);

	if (*start != head && hugepage_in_slot(slot, head) && !is_mixed(slot, head))
		*start = head;
	if ((*end & (CCVM_PAGES_PER_2M - 1)) && hugepage_in_slot(slot, tail) &&
	    !is_mixed(slot, tail))
		*end = tail + CCVM_PAGES_PER_2M;
}

struct slot_range {
	struct ccvm_memslot *slot;
	uint64_t start, end;		/* the request clipped to the slot */
};

/* Slots intersecting [start, end), clipped; slots_lock held. */
static size_t intersecting_slots(struct ccvm_vm *vm, uint64_t start, uint64_t end,
				 struct slot_range **out)
{
	struct ccvm_memslots *s = vm->memslots;
	struct slot_range *r = NULL;
	size_t n = 0;
	uint32_t i;

	for (i = 0; s && i < s->nr; i++) {
		struct ccvm_memslot *m = s->by_gfn[i];
		uint64_t a = start > m->base_gfn ? start : m->base_gfn;
		uint64_t b = end < m->base_gfn + m->npages ? end : m->base_gfn + m->npages;

		if (a >= b)
			continue;
		if (!r) {
			r = malloc((s->nr - i) * sizeof(*r));
			if (!r)
				return SIZE_MAX;
		}
		r[n].slot = m;
		r[n].start = a;
		r[n].end = b;
		n++;
	}
	*out = r;
	return n;
}

static int pre_set(struct ccvm_vm *vm, struct slot_range *r, size_t n, uint64_t attrs)
{
	unsigned int filter = (attrs & CCVM_MEMORY_ATTRIBUTE_PRIVATE) ?
			      CCVM_FILTER_SHARED : CCVM_FILTER_PRIVATE;
	bool flush = false;
	size_t i;
	int err = 0;

	ccvm_brlock_wrlock(&vm->mmu_lock);
	ccvm_mmu_invalidate_begin(vm);
	for (i = 0; i < n; i++) {
		uint64_t a = r[i].start, b = r[i].end;
		int e;

		widen_for_hugepages(r[i].slot, &a, &b);
		ccvm_mmu_invalidate_range_add(vm, a, b);
		e = ccvm_op_pre_set_mem_attr(vm, r[i].start, r[i].end, attrs);
		if (e && !err)
			err = e;
		/* May yield: the range is published as in progress. */
		flush |= ccvm_mmu_unmap_gfn_range(vm, r[i].start, r[i].end, filter, true);
	}
	if (flush)
		ccvm_mmu_flush_remote_tlbs(vm);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	return err;
}

static void end_invalidation(struct ccvm_vm *vm)
{
	ccvm_brlock_wrlock(&vm->mmu_lock);
	ccvm_mmu_invalidate_end(vm);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	ccvm_account(vm->p, vm, CCVM_EV_INVALIDATE, 1);
}

/*
 * @stored false: the update was refused; only end the invalidation.
 * @end false: leave the range in progress (the caller ends it).
 */
static void post_set(struct ccvm_vm *vm, struct slot_range *r, size_t n, uint64_t attrs,
		     bool stored, bool end)
{
	size_t i;

	ccvm_brlock_wrlock(&vm->mmu_lock);
	for (i = 0; stored && i < n; i++) {
		post_set_mixed(vm, r[i].slot, r[i].start, r[i].end, attrs);
		ccvm_op_post_set_mem_attr(vm, r[i].start, r[i].end, attrs);
	}
	if (end)
		ccvm_mmu_invalidate_end(vm);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	if (end)
		ccvm_account(vm->p, vm, CCVM_EV_INVALIDATE, 1);
}

/*
 * The attributes a range held before an update, as runs: what a failed
 * update_mem_attr rolls back to.  A few runs live on the stack.
 */
struct attr_run {
	uint64_t start, end, attrs;	/* [start, end) */
};

struct attr_runs {
	struct attr_run *v;
	size_t nr, cap;
	struct attr_run small[8];
};

static int collect_run(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct attr_runs *o = ctx;

	if (o->nr == o->cap) {
		size_t cap = o->cap * 2;
		struct attr_run *v = malloc(cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		memcpy(v, o->v, o->nr * sizeof(*v));
		if (o->v != o->small)
			free(o->v);
		o->v = v;
		o->cap = cap;
	}
	o->v[o->nr++] = (struct attr_run){ first, last + 1, value };
	return 0;
}

static int collect_runs(struct ccvm_vm *vm, uint64_t start, uint64_t end, struct attr_runs *o)
{
	unsigned int attr_sh;
	int err;

	o->v = o->small;
	o->nr = 0;
	o->cap = CCVM_ARRAY_SIZE(o->small);
	attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
	err = ccvm_xa_for_each_run(&vm->attrs, start, end - 1, collect_run, o);
	ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
	return err;
}

static void free_runs(struct attr_runs *o)
{
	if (o->v && o->v != o->small)
		free(o->v);
	o->v = NULL;
}

/* Store @attrs over [start, end); attr_lock taken here. */
static int store_attrs(struct ccvm_vm *vm, uint64_t start, uint64_t end, uint64_t attrs)
{
	size_t before;
	int err;

	ccvm_brlock_wrlock(&vm->attr_lock);
	before = ccvm_xa_memory(&vm->attrs);
	err = ccvm_xa_store_range(&vm->attrs, start, end - 1, attrs);
	ccvm_model_bytes_add(vm->p, (int64_t)ccvm_xa_memory(&vm->attrs) - (int64_t)before);
	ccvm_brlock_wrunlock(&vm->attr_lock);
	return err;
}

/*
 * update_mem_attr failed on slot @failed of @r: put back the attributes
 * of @old, with the same invalidation an update runs (mappings of the new
 * kind go, MIXED is recomputed), and let the backend follow them again on
 * the slots it was called for (0..@failed).  KVM never gets here (it has
 * no fallible step after its store); we make the call all-or-nothing
 * rather than leave a half-converted range behind.  If the rollback itself
 * fails, the VM is bugged: the caller gets -EIO.
 */
static int rollback(struct ccvm_vm *vm, struct slot_range *r, size_t n, size_t failed,
		    const struct attr_runs *old)
{
	size_t i, j;

	for (j = 0; j < old->nr; j++) {
		const struct attr_run *o = &old->v[j];

		for (i = 0; i < n; i++) {
			struct slot_range c = r[i];

			c.start = c.start > o->start ? c.start : o->start;
			c.end = c.end < o->end ? c.end : o->end;
			if (c.start >= c.end)
				continue;
			if (pre_set(vm, &c, 1, o->attrs)) {
				post_set(vm, &c, 1, o->attrs, false, true);
				goto bug;
			}
			if (store_attrs(vm, c.start, c.end, o->attrs)) {
				post_set(vm, &c, 1, o->attrs, false, true);
				goto bug;
			}
			post_set(vm, &c, 1, o->attrs, true, true);
		}
		/* The parts no memslot covers: nothing can be mapped there. */
		if (store_attrs(vm, o->start, o->end, o->attrs))
			goto bug;
	}
	ccvm_account(vm->p, vm, CCVM_EV_ATTR_CHANGE, 1);
	for (i = 0; i <= failed && i < n; i++) {
		for (j = 0; j < old->nr; j++) {
			uint64_t a = r[i].start > old->v[j].start ? r[i].start : old->v[j].start;
			uint64_t b = r[i].end < old->v[j].end ? r[i].end : old->v[j].end;

			if (a < b && ccvm_op_update_mem_attr(vm, r[i].slot, old->v[j].attrs, a, b))
				goto bug;
		}
	}
	return 0;
bug:
	ccvm_vm_bug(vm, "attributes: rolling back a failed update_mem_attr failed");
	return -EIO;
}

int ccvm_vm_set_memory_attributes(struct ccvm_vm *vm, uint64_t gpa, uint64_t size,
				  uint64_t attributes, uint64_t flags)
{
	unsigned int attr_sh;
	struct slot_range *r = NULL;
	struct attr_runs old = { 0 };
	uint64_t start, end;
	size_t n, i;
	bool in_window;
	int err = 0;

	/* kvm_vm_ioctl_set_mem_attributes(): the checks, in order. */
	if (!vm)
		return ccvm_fail(-EINVAL, "NULL vm");
	if (flags)
		return ccvm_fail(-EINVAL, "flags 0x%llx: must be 0", (unsigned long long)flags);
	/* In place, the VM store takes no PRIVATE: its cap reads 0 (upstream A.3). */
	if (ccvm_vm_in_place(vm) && (attributes & CCVM_MEMORY_ATTRIBUTE_PRIVATE))
		return ccvm_fail(-EINVAL, "vm %u converts in place: PRIVATE lives in its gmem "
				 "files, not in the VM's attribute store", vm->id);
	if (attributes & ~vm->caps.memory_attributes)
		return ccvm_fail(-EINVAL, "attributes 0x%llx: bits 0x%llx not supported by the %s "
				 "backend (CCVM_MEMORY_ATTRIBUTE_PRIVATE is 0x%llx)",
				 (unsigned long long)attributes,
				 (unsigned long long)(attributes & ~vm->caps.memory_attributes),
				 vm->caps.name, (unsigned long long)CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	if (!size || gpa + size < gpa)
		return ccvm_fail(-EINVAL, "gpa 0x%llx size 0x%llx: %s", (unsigned long long)gpa,
				 (unsigned long long)size, size ? "the range wraps" : "size 0");
	if (!ccvm_is_page_aligned(gpa) || !ccvm_is_page_aligned(size))
		return ccvm_fail(-EINVAL, "gpa 0x%llx size 0x%llx not page aligned",
				 (unsigned long long)gpa, (unsigned long long)size);
	start = gpa >> CCVM_PAGE_SHIFT;
	end = start + (size >> CCVM_PAGE_SHIFT);

	ccvm_mutex_lock(&vm->slots_lock);
	if (!ccvm_vm_usable(vm)) {
		err = -EIO;
		goto out;
	}
	attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
	if (ccvm_xa_range_is(&vm->attrs, start, end - 1, attributes)) {
		ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
		goto out;
	}
	ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
	/* Writers hold slots_lock; readers never look at the reserve. */
	err = ccvm_xa_reserve(&vm->attrs, start, end - 1);
	if (err)
		goto out;
	n = intersecting_slots(vm, start, end, &r);
	if (n == SIZE_MAX) {
		err = -ENOMEM;
		goto out;
	}
	/* What a failed update_mem_attr rolls back to; before anything changes. */
	if (n) {
		err = collect_runs(vm, start, end, &old);
		if (err)
			goto out_free;
	}

	if (n)
		err = pre_set(vm, r, n, attributes);
	if (err) {
		/*
		 * A refusing pre hook leaves the store as it was; the zaps
		 * already done only cost refaults.  The invalidation still ends.
		 */
		post_set(vm, r, n, attributes, false, true);
		goto out_free;
	}

	if (store_attrs(vm, start, end, attributes))
		ccvm_vm_bug(vm, "attribute store failed after reserve");
	ccvm_account(vm->p, vm, CCVM_EV_ATTR_CHANGE, 1);

	/*
	 * Study 004's locked variant (CCVM_SNP_RMP_LOCKED) keeps the range in
	 * progress across update_mem_attr, so a fault meanwhile is stale.
	 */
	in_window = ccvm_vm_study_knob(vm, CCVM_STUDY_SNP_RMP_UPDATE) == CCVM_SNP_RMP_LOCKED;
	if (n)
		post_set(vm, r, n, attributes, true, !in_window);

	/* Outside mmu_lock, may sleep: SNP's RMP and direct-map work. */
	for (i = 0; i < n; i++) {
		err = ccvm_op_update_mem_attr(vm, r[i].slot, attributes, r[i].start,
					      r[i].end);
		if (err) {
			ccvm_log(CCVM_LOG_DEBUG, "set_memory_attributes: vm %u: the backend's "
				 "update failed (%d): rolling back", vm->id, err);
			if (rollback(vm, r, n, i, &old))
				err = -EIO;
			break;
		}
	}
	if (n && in_window)
		end_invalidation(vm);
out_free:
	free_runs(&old);
	free(r);
out:
	ccvm_mutex_unlock(&vm->slots_lock);
	return err;
}
