/* SPDX-License-Identifier: MIT */
/*
 * Memslots with KVM_SET_USER_MEMORY_REGION2 semantics.
 *
 * The slot array is replaced, never edited in place: a new sorted array is
 * built under slots_lock and published under memslots_rw held for write,
 * which waits for every fault in flight (faults hold it for read, as a vCPU
 * holds kvm->srcu).  A slot that is deleted or moved is first marked
 * invalid, so faults on it retry; then its gfns are zapped in every root
 * (private VMs never zap everything for a slot change, docs/semantics.md
 * 5.8); then the array without it is published.
 *
 * The generation counter advances on every publish and wraps at
 * CCVM_MEMSLOT_GEN_LIMIT like KVM's MMIO generation, which costs a fast zap
 * of every direct root: the path that leaked TDX mirror roots.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CCVM_MEMSLOT_GEN_LIMIT	(1ull << 19)
/*
 * The end of user addresses, x86-64's TASK_SIZE_MAX with 4-level paging
 * (2^47 minus a guard page): KVM's access_ok() refuses a userspace_addr
 * range that reaches past it.
 */
#define CCVM_USER_ADDR_END	((1ull << 47) - CCVM_PAGE_SIZE)
/* KVM_MEM_MAX_NR_PAGES: a slot's page count fits in 31 bits. */
#define CCVM_MEM_MAX_NR_PAGES	((1ull << 31) - 1)

struct ccvm_memslot *ccvm_memslot_find(struct ccvm_vm *vm, uint64_t gfn)
{
	struct ccvm_memslots *s = vm->memslots;
	uint32_t lo = 0, hi;

	if (!s)
		return NULL;
	hi = s->nr;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct ccvm_memslot *m = s->by_gfn[mid];

		if (gfn < m->base_gfn)
			hi = mid;
		else if (gfn >= m->base_gfn + m->npages)
			lo = mid + 1;
		else
			return m;
	}
	return NULL;
}

int ccvm_memslot_max_level(const struct ccvm_memslot *slot, uint64_t gfn)
{
	uint64_t idx = (gfn >> 9) - (slot->base_gfn >> 9);

	if (idx >= slot->nr_lpage_2m)
		return CCVM_LEVEL_4K;
	return ccvm_lpage_test(slot->lpage_disallow, idx) ||
	       ccvm_lpage_test(slot->lpage_mixed, idx) ? CCVM_LEVEL_4K : CCVM_LEVEL_2M;
}

uint64_t ccvm_memslot_base_gfn(const struct ccvm_memslot *slot)
{
	return slot->base_gfn;
}

uint64_t ccvm_memslot_npages(const struct ccvm_memslot *slot)
{
	return slot->npages;
}

bool ccvm_memslot_has_gmem(const struct ccvm_memslot *slot)
{
	return (slot->flags & CCVM_MEM_GUEST_MEMFD) && atomic_load(&slot->gmem);
}

uint64_t ccvm_vm_memslot_generation(const struct ccvm_vm *vm)
{
	return vm ? vm->generation : 0;
}

int ccvm_vm_force_generation_wrap(struct ccvm_vm *vm)
{
	if (!vm)
		return -EINVAL;
	ccvm_mutex_lock(&vm->slots_lock);
	vm->force_wrap = true;
	ccvm_mutex_unlock(&vm->slots_lock);
	return 0;
}

/* Bytes of one of a slot's two hugepage bitmaps. */
static size_t lpage_bitmap_bytes(uint64_t nr)
{
	return (nr + 63) / 64 * sizeof(uint64_t);
}

void ccvm_lpage_clear_range(_Atomic uint64_t *bm, uint64_t first, uint64_t end)
{
	uint64_t w = first / 64, lw = (end - 1) / 64;
	uint64_t head = ~0ull << (first % 64), tail = ~0ull >> (63 - (end - 1) % 64);

	if (first >= end)
		return;
	if (w == lw) {
		atomic_fetch_and_explicit(&bm[w], ~(head & tail), memory_order_relaxed);
		return;
	}
	atomic_fetch_and_explicit(&bm[w], ~head, memory_order_relaxed);
	while (++w < lw)
		atomic_store_explicit(&bm[w], 0, memory_order_relaxed);
	atomic_fetch_and_explicit(&bm[lw], ~tail, memory_order_relaxed);
}

static void slot_free(struct ccvm_vm *vm, struct ccvm_memslot *slot)
{
	ccvm_model_bytes_add(vm->p, -(int64_t)(sizeof(*slot) +
					       2 * lpage_bitmap_bytes(slot->nr_lpage_2m)));
	free((void *)slot->lpage_disallow);	/* one block with lpage_mixed */
	free(slot);
}

/*
 * Hugepage bookkeeping of a new slot: a 2M page that sticks out of the
 * slot, or whose backing is not aligned like its gfns, can never be mapped
 * at 2M (KVM's disallow_lpage); MIXED is computed by attr.c.
 */
static int slot_init_lpage(struct ccvm_vm *vm, struct ccvm_memslot *slot)
{
	uint64_t first = slot->base_gfn >> 9;
	uint64_t last = (slot->base_gfn + slot->npages - 1) >> 9;
	size_t bytes = lpage_bitmap_bytes(last - first + 1);
	bool misaligned = false;
	uint64_t i;

	slot->lpage_disallow = calloc(2, bytes);
	if (!slot->lpage_disallow)
		return -ENOMEM;
	slot->lpage_mixed = slot->lpage_disallow + bytes / sizeof(uint64_t);
	slot->nr_lpage_2m = last - first + 1;
	ccvm_model_bytes_add(vm->p, (int64_t)(2 * bytes));
	if (slot->userspace_addr &&
	    (((uintptr_t)slot->userspace_addr >> CCVM_PAGE_SHIFT) ^ slot->base_gfn) & 511)
		misaligned = true;
	if ((slot->flags & CCVM_MEM_GUEST_MEMFD) && ((slot->pgoff ^ slot->base_gfn) & 511))
		misaligned = true;
	for (i = 0; i < slot->nr_lpage_2m; i++) {
		uint64_t hp = (first + i) << 9;

		if (misaligned || hp < slot->base_gfn ||
		    hp + CCVM_PAGES_PER_2M > slot->base_gfn + slot->npages)
			ccvm_lpage_assign(slot->lpage_disallow, i, true);
	}
	return 0;
}

static bool slots_overlap(struct ccvm_vm *vm, const struct ccvm_memslot *skip,
			  uint64_t start, uint64_t end)
{
	struct ccvm_memslots *s = vm->memslots;
	uint32_t i;

	for (i = 0; s && i < s->nr; i++) {
		struct ccvm_memslot *m = s->by_gfn[i];

		if (m != skip && start < m->base_gfn + m->npages && m->base_gfn < end)
			return true;
	}
	return false;
}

/* A copy of the current array with @remove taken out and @add put in. */
static struct ccvm_memslots *slots_edit(struct ccvm_vm *vm, struct ccvm_memslot *remove,
					struct ccvm_memslot *add)
{
	struct ccvm_memslots *old = vm->memslots, *s;
	uint32_t n = old ? old->nr : 0, i, j = 0;
	bool added = false;

	s = malloc(sizeof(*s) + (n + 1) * sizeof(s->by_gfn[0]));
	if (!s)
		return NULL;
	for (i = 0; i < n; i++) {
		struct ccvm_memslot *m = old->by_gfn[i];

		if (m == remove)
			continue;
		if (add && !added && add->base_gfn < m->base_gfn) {
			s->by_gfn[j++] = add;
			added = true;
		}
		s->by_gfn[j++] = m;
	}
	if (add && !added)
		s->by_gfn[j++] = add;
	s->nr = j;
	s->generation = 0;
	return s;
}

/* Swap in @s (slots_lock held); waits for faults in flight. */
static void slots_publish(struct ccvm_vm *vm, struct ccvm_memslots *s)
{
	struct ccvm_memslots *old;
	bool wrapped = false;

	if (vm->force_wrap) {
		vm->generation = CCVM_MEMSLOT_GEN_LIMIT - 1;
		vm->force_wrap = false;
	}
	if (++vm->generation >= CCVM_MEMSLOT_GEN_LIMIT) {
		vm->generation = 0;
		wrapped = true;
	}
	s->generation = vm->generation;
	ccvm_brlock_wrlock(&vm->memslots_rw);
	/* attr_lock too: ccvm_vm_gfn_is_private() reads the array under it. */
	ccvm_brlock_wrlock(&vm->attr_lock);
	old = vm->memslots;
	vm->memslots = s;
	ccvm_brlock_wrunlock(&vm->attr_lock);
	ccvm_brlock_wrunlock(&vm->memslots_rw);
	free(old);
	ccvm_account(vm->p, vm, CCVM_EV_MEMSLOT_UPDATE, 1);
	if (wrapped)
		ccvm_mmu_zap_all_fast(vm);
}

/* Mark @slot invalid, wait out faults that still see it valid, zap its gfns. */
static void slot_invalidate_and_zap(struct ccvm_vm *vm, struct ccvm_memslot *slot)
{
	atomic_store(&slot->invalid, true);
	ccvm_brlock_wrlock(&vm->memslots_rw);
	ccvm_brlock_wrunlock(&vm->memslots_rw);

	ccvm_brlock_wrlock(&vm->mmu_lock);
	/* May yield: slot->invalid sends faults on it back to retry meanwhile. */
	if (ccvm_mmu_unmap_gfn_range(vm, slot->base_gfn, slot->base_gfn + slot->npages,
				     CCVM_FILTER_PRIVATE | CCVM_FILTER_SHARED, true))
		ccvm_mmu_flush_remote_tlbs(vm);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
}

static int slot_delete(struct ccvm_vm *vm, struct ccvm_memslot *old)
{
	struct ccvm_memslots *s = slots_edit(vm, old, NULL);

	if (!s)
		return -ENOMEM;
	slot_invalidate_and_zap(vm, old);
	slots_publish(vm, s);
	ccvm_xa_store(&vm->slot_ids, old->id, 0);
	ccvm_gmem_unbind(old);
	slot_free(vm, old);
	return 0;
}

static struct ccvm_memslot *slot_new(struct ccvm_vm *vm, const struct ccvm_memory_region *r)
{
	struct ccvm_memslot *slot = calloc(1, sizeof(*slot));

	if (!slot)
		return NULL;
	ccvm_model_bytes_add(vm->p, sizeof(*slot));
	slot->id = r->slot;
	slot->flags = r->flags;
	slot->base_gfn = r->guest_phys_addr >> CCVM_PAGE_SHIFT;
	slot->npages = r->memory_size >> CCVM_PAGE_SHIFT;
	slot->userspace_addr = r->userspace_addr;
	if (r->flags & CCVM_MEM_GUEST_MEMFD)
		slot->pgoff = r->gmem_offset >> CCVM_PAGE_SHIFT;
	if (slot_init_lpage(vm, slot)) {
		slot_free(vm, slot);
		return NULL;
	}
	return slot;
}

static int slot_create(struct ccvm_vm *vm, const struct ccvm_memory_region *r)
{
	struct ccvm_memslot *slot;
	struct ccvm_memslots *s;
	int err;

	slot = slot_new(vm, r);
	if (!slot)
		return -ENOMEM;
	/* Reserve the id entry first: everything after this cannot fail. */
	err = ccvm_xa_reserve(&vm->slot_ids, r->slot, r->slot);
	if (err)
		goto err_free;
	if (r->flags & CCVM_MEM_GUEST_MEMFD) {
		err = ccvm_gmem_bind(vm, slot, r->gmem, r->gmem_offset);
		if (err)
			goto err_free;
	}
	s = slots_edit(vm, NULL, slot);
	if (!s) {
		err = -ENOMEM;
		goto err_unbind;
	}
	/* No fault can see the slot yet, but lpage is read under mmu_lock. */
	ccvm_brlock_wrlock(&vm->mmu_lock);
	ccvm_attr_init_memslot(vm, slot);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	ccvm_xa_store(&vm->slot_ids, slot->id, (uint64_t)(uintptr_t)slot);
	slots_publish(vm, s);
	return 0;

err_unbind:
	ccvm_gmem_unbind(slot);
err_free:
	slot_free(vm, slot);
	return err;
}

static int slot_move(struct ccvm_vm *vm, struct ccvm_memslot *old,
		     const struct ccvm_memory_region *r)
{
	struct ccvm_memslot *slot;
	struct ccvm_memslots *s;

	slot = slot_new(vm, r);
	if (!slot)
		return -ENOMEM;
	s = slots_edit(vm, old, slot);
	if (!s) {
		slot_free(vm, slot);
		return -ENOMEM;
	}
	ccvm_brlock_wrlock(&vm->mmu_lock);
	ccvm_attr_init_memslot(vm, slot);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	slot_invalidate_and_zap(vm, old);
	ccvm_xa_store(&vm->slot_ids, slot->id, (uint64_t)(uintptr_t)slot);
	slots_publish(vm, s);
	slot_free(vm, old);
	return 0;
}

int ccvm_vm_set_user_memory_region(struct ccvm_vm *vm, const struct ccvm_memory_region *r)
{
	struct ccvm_memslot *old;
	uint64_t base, npages;
	int err;

	if (!vm || !r)
		return ccvm_fail(-EINVAL, "NULL %s", vm ? "region" : "vm");
	/* The checks of kvm_set_memory_region(), in its order. */
	if (r->flags & ~CCVM_MEM_GUEST_MEMFD)
		return ccvm_fail(-EINVAL, "slot %u: flags 0x%x: only CCVM_MEM_GUEST_MEMFD "
				 "is supported", r->slot, r->flags);
	if (!ccvm_is_page_aligned(r->memory_size))
		return ccvm_fail(-EINVAL, "slot %u: memory_size 0x%llx not page aligned", r->slot,
				 (unsigned long long)r->memory_size);
	if (!ccvm_is_page_aligned(r->guest_phys_addr))
		return ccvm_fail(-EINVAL, "slot %u: guest_phys_addr 0x%llx not page aligned",
				 r->slot, (unsigned long long)r->guest_phys_addr);
	if (!ccvm_is_page_aligned((uintptr_t)r->userspace_addr))
		return ccvm_fail(-EINVAL, "slot %u: userspace_addr %p not page aligned", r->slot,
				 r->userspace_addr);
	/* access_ok(): the whole range is user memory (4-level paging's limit). */
	if ((uintptr_t)r->userspace_addr > CCVM_USER_ADDR_END ||
	    r->memory_size > CCVM_USER_ADDR_END - (uintptr_t)r->userspace_addr)
		return ccvm_fail(-EINVAL, "slot %u: userspace_addr range %p + 0x%llx is not user "
				 "memory (it must end at or below 0x%llx)", r->slot,
				 r->userspace_addr, (unsigned long long)r->memory_size,
				 (unsigned long long)CCVM_USER_ADDR_END);
	if ((r->flags & CCVM_MEM_GUEST_MEMFD) && !ccvm_is_page_aligned(r->gmem_offset))
		return ccvm_fail(-EINVAL, "slot %u: gmem_offset 0x%llx not page aligned", r->slot,
				 (unsigned long long)r->gmem_offset);
	if ((r->flags & CCVM_MEM_GUEST_MEMFD) &&
	    r->gmem_offset + r->memory_size < r->gmem_offset)
		return ccvm_fail(-EINVAL, "slot %u: gmem_offset + memory_size wraps", r->slot);
	if ((r->slot >> 16) != 0 || (r->slot & 0xffff) >= CCVM_MAX_MEMSLOTS)
		return ccvm_fail(-EINVAL, "slot id %u: address space 0 only, ids below %u",
				 r->slot, CCVM_MAX_MEMSLOTS);
	if (r->guest_phys_addr + r->memory_size < r->guest_phys_addr)
		return ccvm_fail(-EINVAL, "slot %u: guest_phys_addr + memory_size wraps", r->slot);
	base = r->guest_phys_addr >> CCVM_PAGE_SHIFT;
	npages = r->memory_size >> CCVM_PAGE_SHIFT;
	if (npages > CCVM_MEM_MAX_NR_PAGES)
		return ccvm_fail(-EINVAL, "slot %u: %llu pages, more than %llu", r->slot,
				 (unsigned long long)npages,
				 (unsigned long long)CCVM_MEM_MAX_NR_PAGES);
	if (base + npages > vm->max_gfn)
		return ccvm_fail(-EINVAL, "slot %u: [0x%llx, 0x%llx) goes past the guest physical "
				 "width (%u bits%s)", r->slot,
				 (unsigned long long)r->guest_phys_addr,
				 (unsigned long long)(r->guest_phys_addr + r->memory_size),
				 vm->gpa_bits, vm->shared_bit ? ", less the shared bit" : "");

	ccvm_mutex_lock(&vm->slots_lock);
	if (!ccvm_vm_usable(vm)) {
		err = ccvm_fail(-EIO, "VM %u is bugged", vm->id);
		goto out;
	}
	old = (struct ccvm_memslot *)(uintptr_t)ccvm_xa_load(&vm->slot_ids, r->slot);
	if (!r->memory_size) {
		err = old ? slot_delete(vm, old)
			  : ccvm_fail(-EINVAL, "delete (memory_size 0) of slot %u, which does "
				      "not exist", r->slot);
		goto out;
	}
	if (!old) {
		/* As KVM: the overlap check comes before the file is looked at. */
		if (slots_overlap(vm, NULL, base, base + npages))
			err = ccvm_fail(-EEXIST, "slot %u: [0x%llx, 0x%llx) overlaps another slot",
					r->slot, (unsigned long long)r->guest_phys_addr,
					(unsigned long long)(r->guest_phys_addr +
							     r->memory_size));
		else if ((r->flags & CCVM_MEM_GUEST_MEMFD) && !r->gmem)
			err = ccvm_fail(-EBADF, "slot %u: CCVM_MEM_GUEST_MEMFD with a NULL gmem",
					r->slot);
		else
			err = slot_create(vm, r);
		goto out;
	}
	/* Modify: gmem slots are immutable, only create and delete. */
	if ((r->flags | old->flags) & CCVM_MEM_GUEST_MEMFD) {
		err = ccvm_fail(-EINVAL, "slot %u exists: a gmem slot cannot be changed, only "
				"deleted and created again", r->slot);
		goto out;
	}
	if ((uint8_t *)r->userspace_addr != old->userspace_addr || npages != old->npages) {
		err = ccvm_fail(-EINVAL, "slot %u exists: only its guest_phys_addr may change "
				"(a move), not its size or userspace_addr", r->slot);
		goto out;
	}
	if (base == old->base_gfn) {
		err = 0;	/* nothing to change */
		goto out;
	}
	err = slots_overlap(vm, old, base, base + npages)
		? ccvm_fail(-EEXIST, "slot %u: the move overlaps another slot", r->slot)
		: slot_move(vm, old, r);
out:
	ccvm_mutex_unlock(&vm->slots_lock);
	return err;
}

/* VM teardown: every gmem file is gone, nothing can fault. */
void ccvm_memslots_free_all(struct ccvm_vm *vm)
{
	struct ccvm_memslots *s = vm->memslots;
	uint32_t i;

	for (i = 0; s && i < s->nr; i++) {
		ccvm_gmem_unbind(s->by_gfn[i]);
		slot_free(vm, s->by_gfn[i]);
	}
	free(s);
	vm->memslots = NULL;
}
