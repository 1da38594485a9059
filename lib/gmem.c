/* SPDX-License-Identifier: MIT */
/*
 * guest_memfd: a file (bindings to memslots, a VM reference) over an inode
 * (the page cache that holds private memory, index -> pfn).
 *
 * Lifetimes follow Linux: the file holds a VM reference and the VM none on
 * the file, so the VM cannot be torn down while a gmem file is open; the
 * inode is referenced by the file and by backend pins (TDX deferred
 * removal), and its pages are freed, each through gmem_invalidate, only
 * when the last reference goes.  Punching a hole and releasing the file
 * zap every mapping of the range before any page is freed (I5).
 */
#include <stdlib.h>
#include <string.h>

#include "backend-call.h"
#include "scheduler.h"

#define GMEM_MAX_SIZE	((uint64_t)INT64_MAX & CCVM_PAGE_MASK)
#define GMEM_KNOWN_FLAGS (CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED | \
			  CCVM_GMEM_FLAG_HUGETLB | CCVM_GMEM_HUGE_MASK)

/* ---- inode ------------------------------------------------------------ */

static void inode_free_pages(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last);

/* ---- the page cache's shards ------------------------------------------ */

/*
 * Shards of 2 MiB or more (whole folios), as few as make at most
 * CCVM_GMEM_SHARDS over the file; one when serial.
 */
static void pages_init(struct ccvm_gmem_inode *inode, struct ccvm_sched *s)
{
	unsigned int shift = CCVM_FOLIO_ORDER_2M;

	if (inode->folio_order > shift)
		shift = inode->folio_order;
	while (shift < 63 && ((inode->npages - 1) >> shift) >= CCVM_GMEM_SHARDS)
		shift++;
	inode->shard_shift = s ? 64 : shift;
	inode->nr_shards = s ? 1 : (unsigned int)((inode->npages - 1) >> shift) + 1;
	for (unsigned int k = 0; k < inode->nr_shards; k++) {
		ccvm_mutex_init(&inode->shard[k].lock, s, "pages_lock");
		ccvm_xa_init(&inode->shard[k].pages);
	}
}

/* The indices of shard @k inside [first, last], in *@lo..*@hi: false if none. */
static bool shard_span(const struct ccvm_gmem_inode *inode, unsigned int k, uint64_t first,
		       uint64_t last, uint64_t *lo, uint64_t *hi)
{
	uint64_t start = k ? (uint64_t)k << inode->shard_shift : 0;
	uint64_t end = k + 1 < inode->nr_shards ? ((uint64_t)(k + 1) << inode->shard_shift) - 1
						: UINT64_MAX;

	*lo = first > start ? first : start;
	*hi = last < end ? last : end;
	return *lo <= *hi;
}

int ccvm_gmem_pages_for_each_run(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last,
				 ccvm_xa_run_fn fn, void *ctx)
{
	uint64_t lo, hi;
	int ret;

	for (unsigned int k = 0; k < inode->nr_shards; k++) {
		if (!shard_span(inode, k, first, last, &lo, &hi))
			continue;
		ret = ccvm_xa_for_each_run(&inode->shard[k].pages, lo, hi, fn, ctx);
		if (ret)
			return ret;
	}
	return 0;
}

/* ccvm_xa_reserve() of [first, last] in every shard it meets; every lock held. */
static int pages_reserve(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last)
{
	uint64_t lo, hi;
	int err;

	for (unsigned int k = 0; k < inode->nr_shards; k++) {
		if (!shard_span(inode, k, first, last, &lo, &hi))
			continue;
		err = ccvm_xa_reserve(&inode->shard[k].pages, lo, hi);
		if (err)
			return err;
	}
	return 0;
}

/* The page cache's memory, every shard; every lock held. */
static size_t pages_memory(struct ccvm_gmem_inode *inode)
{
	size_t n = 0;

	for (unsigned int k = 0; k < inode->nr_shards; k++)
		n += ccvm_xa_memory(&inode->shard[k].pages);
	return n;
}

void ccvm_gmem_inode_get(struct ccvm_gmem_inode *inode)
{
	atomic_fetch_add_explicit(&inode->refcount, 1, memory_order_relaxed);
}

void ccvm_gmem_inode_put(struct ccvm_gmem_inode *inode)
{
	struct ccvm_platform *p = inode->p;

	/* The last reference frees the pages: the schedule decides whose it is. */
	ccvm_sched_point(ccvm_sched_of(p), NULL, "inode put");
	if (atomic_fetch_sub_explicit(&inode->refcount, 1, memory_order_acq_rel) != 1)
		return;
	/* Eviction: truncate the page cache; every mapping is gone by now. */
	if (inode->npages)
		inode_free_pages(inode, 0, inode->npages - 1);
	ccvm_model_bytes_add(p, -(int64_t)(pages_memory(inode) +
					   ccvm_xa_memory(&inode->attrs) +
					   ccvm_xa_memory(&inode->pins)));
	for (unsigned int k = 0; k < inode->nr_shards; k++) {
		ccvm_xa_destroy(&inode->shard[k].pages);
		ccvm_mutex_destroy(&inode->shard[k].lock);
	}
	ccvm_xa_destroy(&inode->attrs);
	ccvm_xa_destroy(&inode->pins);
	ccvm_rwlock_destroy(&inode->attr_lock);
	ccvm_brlock_destroy(&inode->invalidate_lock);
	ccvm_model_bytes_add(p, -(int64_t)sizeof(*inode));
	free(inode);
	ccvm_platform_inode_put(p);
}

struct free_batch {
	struct ccvm_gmem_inode *inode;
	struct ccvm_gmem_shard *shard;	/* the one being truncated */
	uint64_t pfns[64];
	unsigned int n;
	uint64_t freed;
	uint64_t budget;		/* pages this batch may still free */
	uint64_t stop;			/* index of its last page when it ran out */
};

/* gmem_invalidate takes pfn ranges: hand it runs of consecutive pfns. */
static void free_batch_flush(struct free_batch *b)
{
	struct ccvm_platform *p = b->inode->p;
	unsigned int i = 0, j;

	while (i < b->n) {
		for (j = i + 1; j < b->n && b->pfns[j] == b->pfns[j - 1] + 1; j++)
			;
		ccvm_op_gmem_invalidate(p, b->pfns[i], b->pfns[j - 1] + 1);
		ccvm_account(p, NULL, CCVM_EV_GMEM_INVALIDATE, j - i);
		ccvm_page_free_many(p, &b->pfns[i], j - i);
		i = j;
	}
	b->n = 0;
}

/*
 * A huge folio leaves as one: one gmem_invalidate over its whole pfn range
 * (so a backend sees a full aligned 2M or 1G and can return it in one
 * step, as sev_gmem_invalidate does), then one free of the block.
 */
static void free_huge_folio(struct free_batch *b, uint64_t head, unsigned int order)
{
	struct ccvm_platform *p = b->inode->p;
	uint64_t nr = 1ull << order;

	free_batch_flush(b);
	ccvm_op_gmem_invalidate(p, head, head + nr);
	ccvm_account(p, NULL, CCVM_EV_GMEM_INVALIDATE, nr);
	ccvm_page_free_folio(p, head, order);
	b->shard->nr_huge--;
}

static int free_page_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct free_batch *b = ctx;
	unsigned int order;

	if (!value)
		return 0;
	order = CCVM_GMEM_ORDER(value);
	if (order) {
		/* Callers free whole folios only: the run is the folio. */
		if (first & ((1ull << order) - 1) || last - first + 1 != 1ull << order)
			ccvm_log(CCVM_LOG_WARN, "gmem: part of folio %#llx freed",
				 (unsigned long long)CCVM_GMEM_PFN(value));
		free_huge_folio(b, CCVM_GMEM_PFN(value), order);
		b->freed += 1ull << order;
	} else {
		/* Every 4K folio has its own pfn, so its run is one index. */
		if (first != last)
			ccvm_log(CCVM_LOG_WARN, "gmem: pfn %#llx cached at several indices",
				 (unsigned long long)CCVM_GMEM_PFN(value));
		b->pfns[b->n++] = CCVM_GMEM_PFN(value);
		b->freed++;
		if (b->n == CCVM_ARRAY_SIZE(b->pfns))
			free_batch_flush(b);
	}
	/* Every batch, if someone waits for a pages_lock (always when serial). */
	if (!--b->budget) {
		b->budget = b->inode->p->resched_entries;
		if (ccvm_gmem_pages_needbreak(b->inode)) {
			b->stop = last;
			return 1;
		}
	}
	return 0;
}

/*
 * Truncate [first, last] of the page cache; mappings must be gone.  Every
 * resched_entries pages, if someone waits for a pages_lock (always on a
 * serial platform), the locks are dropped and the CPU yielded, as truncation
 * reschedules between folio batches; the caller's invalidate lock (or the
 * last reference) keeps everyone else out of the range meanwhile.
 */
static void inode_free_pages(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last)
{
	struct free_batch b = { .inode = inode };
	uint64_t end, lo, hi;
	size_t before;

	ccvm_gmem_pages_lock_all(inode);
	for (unsigned int k = 0; k < inode->nr_shards; k++) {
		struct ccvm_gmem_shard *s = &inode->shard[k];

		if (!shard_span(inode, k, first, last, &lo, &hi))
			continue;
		b.shard = s;
		for (;;) {
			b.freed = 0;
			b.budget = inode->p->resched_entries;
			b.stop = CCVM_INVALID_GFN;
			before = ccvm_xa_memory(&s->pages);
			ccvm_xa_for_each_run(&s->pages, lo, hi, free_page_cb, &b);
			free_batch_flush(&b);
			end = b.stop != CCVM_INVALID_GFN ? b.stop : hi;
			/* Erasing never needs new nodes: the entries it clears exist already. */
			ccvm_xa_store_range(&s->pages, lo, end, 0);
			s->nr_pages -= b.freed;
			ccvm_model_bytes_add(inode->p,
					     (int64_t)ccvm_xa_memory(&s->pages) - (int64_t)before);
			if (end == hi)
				break;
			lo = end + 1;
			ccvm_gmem_pages_cond_resched(inode);
		}
	}
	ccvm_gmem_pages_unlock_all(inode);
}

/*
 * Store the pages of folio [head, head + 2^order) (pfns from @pfn) as 4K
 * folios; the range is reserved (single stores inside it cannot fail).
 * Its shard's pages_lock held.
 */
static void folio_store_split(struct ccvm_gmem_inode *inode, uint64_t head, uint64_t pfn,
			      unsigned int order)
{
	struct ccvm_gmem_shard *s = ccvm_gmem_shard_of(inode, head);
	uint64_t i, nr = 1ull << order;

	for (i = 0; i < nr; i++)
		ccvm_xa_store(&s->pages, head + i, CCVM_GMEM_VALUE(pfn + i));
	ccvm_page_set_folio_order(inode->p, pfn, nr, 0);
}

/*
 * In place, is every page of [first, last] private?  Shared pages are 4K
 * (host references are counted per page), so a huge folio holding one is
 * split.  The caller holds the invalidate lock, which keeps the answer.
 */
static bool folio_all_private(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last)
{
	bool ret;

	if (!inode->in_place)
		return true;
	ccvm_rwlock_rdlock(&inode->attr_lock);
	ret = ccvm_xa_range_is(&inode->attrs, first, last, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	ccvm_rwlock_unlock(&inode->attr_lock);
	return ret;
}

/*
 * Page at @index and the order of the folio holding it, allocating the
 * folio zeroed if it is a hole (the whole naturally aligned folio for a
 * huge inode, split at once if a page of it is shared: kvm_gmem_get_folio
 * with a custom allocator).  Invalidate lock held; takes its shard's
 * pages_lock.
 */
static int inode_get_folio(struct ccvm_gmem_inode *inode, uint64_t index, uint64_t *pfn,
			   unsigned int *order)
{
	unsigned int o = inode->folio_order;
	uint64_t nr = 1ull << o, head = index & ~(nr - 1), base, v;
	bool split = o && !folio_all_private(inode, head, head + nr - 1);
	struct ccvm_gmem_shard *s = ccvm_gmem_shard_of(inode, head);
	size_t before, after;
	uintptr_t leaf;		/* of index: one walk for the load, reserve and store */
	int err;

	ccvm_mutex_lock(&s->lock);
	v = ccvm_xa_load_leaf(&s->pages, index, &leaf);
	if (v) {
		ccvm_mutex_unlock(&s->lock);
		*pfn = ccvm_gmem_pfn_at(v, index);
		if (order)
			*order = CCVM_GMEM_ORDER(v);
		return 0;
	}
	/* A huge inode's folio range is all present or all holes; be safe anyway. */
	if (o && !ccvm_xa_range_is(&s->pages, head, head + nr - 1, 0)) {
		ccvm_log(CCVM_LOG_WARN, "gmem: folio at index %#llx partly cached",
			 (unsigned long long)head);
		o = 0;
		nr = 1;
		head = index;
		split = false;
	}
	before = ccvm_xa_memory(&s->pages);
	err = nr == 1 ? ccvm_xa_reserve_leaf(&s->pages, index, leaf) :
			ccvm_xa_reserve(&s->pages, head, head + nr - 1);
	if (!err)
		err = ccvm_page_alloc_folio(inode->p, o, &base);
	if (!err) {
		if (split) {
			folio_store_split(inode, head, base, o);
			ccvm_account(inode->p, NULL, CCVM_EV_FOLIO_SPLIT, 1);
		} else if (nr == 1) {
			ccvm_xa_store_leaf(&s->pages, index, leaf, CCVM_GMEM_VALUE_ORDER(base, o));
		} else {
			ccvm_xa_store_range(&s->pages, head, head + nr - 1,
					    CCVM_GMEM_VALUE_ORDER(base, o));
			if (o)
				s->nr_huge++;
		}
		s->nr_pages += nr;
		*pfn = base + (index - head);
		if (order)
			*order = split ? 0 : o;
	}
	/* Most inserts land in a leaf that exists: no platform-wide atomic then. */
	after = ccvm_xa_memory(&s->pages);
	if (after != before)
		ccvm_model_bytes_add(inode->p, (int64_t)after - (int64_t)before);
	ccvm_mutex_unlock(&s->lock);
	return err;
}

static int inode_get_page(struct ccvm_gmem_inode *inode, uint64_t index, uint64_t *pfn)
{
	return inode_get_folio(inode, index, pfn, NULL);
}

/* ---- file --------------------------------------------------------------- */

int ccvm_gmem_create(struct ccvm_vm *vm, uint64_t size, uint64_t flags, struct ccvm_gmem **out)
{
	struct ccvm_gmem_inode *inode;
	struct ccvm_gmem *g;
	unsigned int order = 0;

	if (!vm || !out)
		return ccvm_fail(-EINVAL, "NULL %s", vm ? "out" : "vm");
	if (flags & ~GMEM_KNOWN_FLAGS)
		return ccvm_fail(-EINVAL, "unknown flags 0x%llx",
				 (unsigned long long)(flags & ~GMEM_KNOWN_FLAGS));
	/* The size bits belong to the HugeTLB allocator: only with its flag. */
	if ((flags & CCVM_GMEM_HUGE_MASK) && !(flags & CCVM_GMEM_FLAG_HUGETLB))
		return ccvm_fail(-EINVAL, "flags 0x%llx: a huge page size without "
				 "CCVM_GMEM_FLAG_HUGETLB", (unsigned long long)flags);
	if (flags & CCVM_GMEM_FLAG_HUGETLB) {
		uint64_t huge = flags & CCVM_GMEM_HUGE_MASK;

		if (huge && huge != CCVM_GMEM_HUGE_2MB && huge != CCVM_GMEM_HUGE_1GB)
			return ccvm_fail(-EINVAL, "huge page size 2^%llu bytes: only 2 MiB "
					 "(CCVM_GMEM_HUGE_2MB) and 1 GiB (CCVM_GMEM_HUGE_1GB)",
					 (unsigned long long)(huge >> CCVM_GMEM_HUGE_SHIFT));
		order = huge == CCVM_GMEM_HUGE_1GB ? CCVM_FOLIO_ORDER_1G : CCVM_FOLIO_ORDER_2M;
	}
	/* INIT_SHARED: only with in-place conversion for VMs with private memory. */
	if (flags & ~CCVM_GMEM_HUGE_MASK & ~vm->caps.gmem_flags)
		return ccvm_fail(-EINVAL, "flags 0x%llx not supported by the %s backend "
				 "(caps.gmem_flags 0x%llx)", (unsigned long long)flags,
				 vm->caps.name, (unsigned long long)vm->caps.gmem_flags);
	if (!size || !ccvm_is_page_aligned(size) || size > GMEM_MAX_SIZE)
		return ccvm_fail(-EINVAL, "size 0x%llx: must be a non-zero multiple of 4096 "
				 "up to INT64_MAX", (unsigned long long)size);
	/* The HugeTLB allocator reserves whole folios: the size is a multiple. */
	if (size & ((CCVM_PAGE_SIZE << order) - 1))
		return ccvm_fail(-EINVAL, "size 0x%llx is not a multiple of the folio size "
				 "0x%llx", (unsigned long long)size,
				 (unsigned long long)(CCVM_PAGE_SIZE << order));
	if (!ccvm_vm_usable(vm) || ccvm_vm_is_dead(vm))
		return ccvm_fail(-EIO, "VM %u is %s", vm->id,
				 ccvm_vm_usable(vm) ? "dead" : "bugged");

	inode = ccvm_zalloc_lines(sizeof(*inode));	/* invalidate_lock's shards */
	g = calloc(1, sizeof(*g));
	if (!inode || !g) {
		free(inode);
		free(g);
		return -ENOMEM;
	}
	inode->p = vm->p;
	inode->refcount = 1;
	inode->size = size;
	inode->npages = size >> CCVM_PAGE_SHIFT;
	inode->flags = flags;
	inode->in_place = ccvm_vm_in_place(vm);
	inode->folio_order = order;
	ccvm_xa_init(&inode->attrs);
	ccvm_xa_init(&inode->pins);
	/* In place: one entry over the whole file, PRIVATE unless INIT_SHARED. */
	if (inode->in_place && !(flags & CCVM_GMEM_FLAG_INIT_SHARED) &&
	    ccvm_xa_store_range(&inode->attrs, 0, inode->npages - 1,
				CCVM_MEMORY_ATTRIBUTE_PRIVATE)) {
		ccvm_xa_destroy(&inode->attrs);
		free(inode);
		free(g);
		return -ENOMEM;
	}
	ccvm_brlock_init(&inode->invalidate_lock, ccvm_sched_of(vm->p), "invalidate_lock");
	ccvm_rwlock_init(&inode->attr_lock, ccvm_sched_of(vm->p), "gmem attr_lock");
	pages_init(inode, ccvm_sched_of(vm->p));
	inode->file = g;
	g->inode = inode;
	g->vm = vm;
	ccvm_xa_init(&g->bindings);
	ccvm_mutex_lock(&vm->slots_lock);
	g->next_file = vm->gmem_files;
	vm->gmem_files = g;
	ccvm_mutex_unlock(&vm->slots_lock);
	ccvm_vm_get(vm);
	ccvm_platform_inode_get(vm->p);
	ccvm_model_bytes_add(vm->p, (int64_t)(sizeof(*inode) + sizeof(*g) +
					      ccvm_xa_memory(&inode->attrs)));
	*out = g;
	return 0;
}

struct bound_range {
	struct ccvm_memslot *slot;
	uint64_t start, end;		/* gfns */
};

struct bound_walk {
	struct bound_range *r;
	size_t n, cap;
};

static int bound_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct bound_walk *w = ctx;
	struct ccvm_memslot *slot = (struct ccvm_memslot *)(uintptr_t)value;

	if (!slot)
		return 0;
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4;
		struct bound_range *r = realloc(w->r, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		w->r = r;
		w->cap = cap;
	}
	w->r[w->n].slot = slot;
	w->r[w->n].start = slot->base_gfn + (first - slot->pgoff);
	w->r[w->n].end = slot->base_gfn + (last - slot->pgoff) + 1;
	w->n++;
	return 0;
}

/*
 * Zap every mapping of file pages [first, last] in the slots bound to them
 * and leave the invalidation open (kvm_gmem_invalidate_begin); the caller
 * frees pages, then calls invalidate_end if this returned true.
 * invalidate_lock held for write.
 */
/*
 * As below, but the invalidation covers file pages [afirst, alast] (a
 * superset: whole folios) while only [first, last] is zapped.  With
 * @break_huge (the folios of [afirst, alast] are about to be split into 4K
 * folios), every private leaf above 4K over them is split or zapped too
 * (ccvm_mmu_break_huge_private()): a 1G folio holds 2M leaves far from the
 * converted range that would otherwise outlive their folio (I36).
 */
static int gmem_invalidate_begin_wide(struct ccvm_gmem *g, uint64_t first, uint64_t last,
				      uint64_t afirst, uint64_t alast, unsigned int filter,
				      bool break_huge, bool *begun)
{
	struct ccvm_vm *vm = g->vm;
	struct bound_walk w = { 0 };
	bool flush = false;
	size_t i;
	int err;

	*begun = false;
	err = ccvm_xa_for_each_run(&g->bindings, afirst, alast, bound_cb, &w);
	if (err) {
		free(w.r);
		return err;
	}
	if (!w.n)
		return 0;
	ccvm_brlock_wrlock(&vm->mmu_lock);
	ccvm_mmu_invalidate_begin(vm);
	for (i = 0; i < w.n; i++) {
		struct ccvm_memslot *slot = w.r[i].slot;
		/* The run in file indices, clipped to the zap range. */
		uint64_t zf = slot->pgoff + (w.r[i].start - slot->base_gfn);
		uint64_t zl = slot->pgoff + (w.r[i].end - 1 - slot->base_gfn);
		uint64_t zs = 0, ze = 0;

		if (zf < first)
			zf = first;
		if (zl > last)
			zl = last;
		if (zf <= zl) {
			zs = slot->base_gfn + (zf - slot->pgoff);
			ze = slot->base_gfn + (zl - slot->pgoff) + 1;
		}
		ccvm_mmu_invalidate_range_add(vm, w.r[i].start, w.r[i].end);
		/* May yield (range->may_block): the range is published as in progress. */
		if (zs < ze)
			flush |= ccvm_mmu_unmap_gfn_range(vm, zs, ze, filter, true);
		if (break_huge)
			flush |= ccvm_mmu_break_huge_private(vm, w.r[i].start, w.r[i].end);
	}
	if (flush)
		ccvm_mmu_flush_remote_tlbs(vm);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	free(w.r);
	*begun = true;
	return 0;
}

static int gmem_invalidate_begin_filter(struct ccvm_gmem *g, uint64_t first, uint64_t last,
					unsigned int filter, bool *begun)
{
	return gmem_invalidate_begin_wide(g, first, last, first, last, filter, false, begun);
}

/*
 * Punch and release: the file's pages back every mapping of a GMEM_ONLY
 * slot, shared ones included, so both kinds go (the late revisions' filter
 * whenever in-place conversion is on); otherwise only private mappings
 * come from the file.
 */
static int gmem_invalidate_begin(struct ccvm_gmem *g, uint64_t first, uint64_t last,
				 bool *begun)
{
	unsigned int filter = CCVM_FILTER_PRIVATE;

	if (g->inode->in_place)
		filter |= CCVM_FILTER_SHARED;
	return gmem_invalidate_begin_filter(g, first, last, filter, begun);
}

static void gmem_invalidate_end(struct ccvm_gmem *g)
{
	struct ccvm_vm *vm = g->vm;

	ccvm_brlock_wrlock(&vm->mmu_lock);
	ccvm_mmu_invalidate_end(vm);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	ccvm_account(vm->p, vm, CCVM_EV_INVALIDATE, 1);
}

struct zero_walk {
	struct ccvm_platform *p;
	uint64_t start, end;		/* current run of consecutive pfns */
};

static void zero_walk_flush(struct zero_walk *z)
{
	uint64_t pfn;

	if (z->end <= z->start)
		return;
	/* The pages go back to the host (SNP: RMP shared) before the host clears them. */
	ccvm_op_gmem_invalidate(z->p, z->start, z->end);
	ccvm_account(z->p, NULL, CCVM_EV_GMEM_INVALIDATE, z->end - z->start);
	for (pfn = z->start; pfn < z->end; pfn++)
		ccvm_page_clear(z->p, pfn);
	z->start = z->end = 0;
}

static int zero_walk_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct zero_walk *z = ctx;
	uint64_t pfn = ccvm_gmem_pfn_at(value, first), n = last - first + 1;

	if (!value)
		return 0;
	/* A huge folio's run is consecutive pfns; a 4K one is one index. */
	if (pfn != z->end)
		zero_walk_flush(z);
	if (z->start == z->end)
		z->start = pfn;
	z->end = pfn + n;
	return 0;
}

/*
 * A punch over part of a huge folio (kvm_gmem_zero_range of the HugeTLB
 * guest_memfd): the folio stays, its pages in [first, last] are zeroed.
 * Mappings are gone (invalidation in progress).  Takes every pages_lock.
 */
static void inode_zero_pages(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last)
{
	struct zero_walk z = { .p = inode->p };

	ccvm_gmem_pages_lock_all(inode);
	ccvm_gmem_pages_for_each_run(inode, first, last, zero_walk_cb, &z);
	zero_walk_flush(&z);
	ccvm_gmem_pages_unlock_all(inode);
}

static uint64_t first_pinned(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last);

/*
 * Punch [first, last]: with huge folios, folios covered whole are freed
 * (a split one too: the 1G series merges it back and truncates it) and
 * the pages of a folio covered in part are only zeroed.  A pinned page in
 * a folio to free refuses the whole punch with -EAGAIN before anything
 * changes (the series' merge-before-truncate needs a safe refcount).
 */
static int gmem_punch_hole(struct ccvm_gmem *g, uint64_t first, uint64_t last)
{
	struct ccvm_gmem_inode *inode = g->inode;
	uint64_t nr = 1ull << inode->folio_order;
	uint64_t ffirst = (first + nr - 1) & ~(nr - 1);	/* first whole folio */
	uint64_t fend = (last + 1) & ~(nr - 1);		/* end of the whole folios */
	uint64_t bad;
	bool begun;
	int err;

	ccvm_brlock_wrlock(&inode->invalidate_lock);
	/* 4K folios: a pinned page is punched all the same (the pin keeps the pfn). */
	if (inode->folio_order && ffirst < fend) {
		bad = first_pinned(inode, ffirst, fend - 1);
		if (bad != UINT64_MAX) {
			err = ccvm_fail_at("ccvm_gmem_fallocate", -EAGAIN, "punch: page at offset "
					   "%#llx of a folio to free is pinned by the host",
					   (unsigned long long)(bad << CCVM_PAGE_SHIFT));
			ccvm_brlock_wrunlock(&inode->invalidate_lock);
			return err;
		}
	}
	err = gmem_invalidate_begin(g, first, last, &begun);
	if (!err) {
		if (ffirst >= fend) {
			inode_zero_pages(inode, first, last);
		} else {
			if (first < ffirst)
				inode_zero_pages(inode, first, ffirst - 1);
			inode_free_pages(inode, ffirst, fend - 1);
			if (fend <= last)
				inode_zero_pages(inode, fend, last);
		}
	}
	if (begun)
		gmem_invalidate_end(g);
	ccvm_brlock_wrunlock(&inode->invalidate_lock);
	return err;
}

/*
 * Allocate [first, last].  With huge folios both ends are rounded down to
 * the folio size, as the HugeTLB guest_memfd's kvm_gmem_allocate() does:
 * the folio holding @first up to the last one ending at or before @last.
 */
static int gmem_allocate(struct ccvm_gmem *g, uint64_t first, uint64_t last)
{
	unsigned int inv_sh;
	struct ccvm_gmem_inode *inode = g->inode;
	uint64_t nr = 1ull << inode->folio_order;
	uint64_t i, end, pfn;
	int err = 0;

	first &= ~(nr - 1);
	end = (last + 1) & ~(nr - 1);
	/* Allocation does not prepare: no RMP or S-EPT work until a fault. */
	inv_sh = ccvm_brlock_rdlock(&inode->invalidate_lock);
	for (i = first; !err && i < end; i += nr)
		err = inode_get_page(inode, i, &pfn);
	ccvm_brlock_rdunlock(&inode->invalidate_lock, inv_sh);
	return err;
}

int ccvm_gmem_fallocate(struct ccvm_gmem *g, int mode, uint64_t offset, uint64_t len)
{
	uint64_t first, last;

	if (!g)
		return ccvm_fail(-EINVAL, "NULL gmem");
	/* vfs_fallocate(): offset and len are loff_t, so "negative" is refused. */
	if (offset > INT64_MAX || !len || len > INT64_MAX)
		return ccvm_fail(-EINVAL, "offset 0x%llx len 0x%llx: len must be non-zero, "
				 "both at most INT64_MAX", (unsigned long long)offset,
				 (unsigned long long)len);
	/* vfs_fallocate(): unknown mode bits, PUNCH_HOLE without KEEP_SIZE. */
	if ((mode & ~(CCVM_FALLOC_KEEP_SIZE | CCVM_FALLOC_PUNCH_HOLE)) ||
	    ((mode & CCVM_FALLOC_PUNCH_HOLE) && !(mode & CCVM_FALLOC_KEEP_SIZE)))
		return ccvm_fail(-EOPNOTSUPP, "mode 0x%x: KEEP_SIZE, with or without "
				 "PUNCH_HOLE, is the only mode", mode);
	/* vfs_fallocate() checks the end against s_maxbytes before the file's op. */
	if (offset + len > INT64_MAX)
		return ccvm_fail(-EFBIG, "offset + len above INT64_MAX");
	/* kvm_gmem_fallocate(): KEEP_SIZE always. */
	if (!(mode & CCVM_FALLOC_KEEP_SIZE))
		return ccvm_fail(-EOPNOTSUPP, "mode 0x%x: KEEP_SIZE, with or without "
				 "PUNCH_HOLE, is the only mode", mode);
	if (!ccvm_is_page_aligned(offset) || !ccvm_is_page_aligned(len))
		return ccvm_fail(-EINVAL, "offset 0x%llx len 0x%llx not page aligned",
				 (unsigned long long)offset, (unsigned long long)len);
	first = offset >> CCVM_PAGE_SHIFT;
	last = ((offset + len) >> CCVM_PAGE_SHIFT) - 1;
	if (mode & CCVM_FALLOC_PUNCH_HOLE) {
		/* Past EOF there is nothing to punch, which is not an error. */
		if (first >= g->inode->npages)
			return 0;
		if (last >= g->inode->npages)
			last = g->inode->npages - 1;
		return gmem_punch_hole(g, first, last);
	}
	if (offset + len > g->inode->size)
		return ccvm_fail(-EINVAL, "allocate of [0x%llx, 0x%llx) past the file's size "
				 "0x%llx", (unsigned long long)offset,
				 (unsigned long long)(offset + len),
				 (unsigned long long)g->inode->size);
	return gmem_allocate(g, first, last);
}

uint64_t ccvm_gmem_attr_get(struct ccvm_gmem_inode *inode, uint64_t index)
{
	uint64_t v;

	ccvm_rwlock_rdlock(&inode->attr_lock);
	v = ccvm_xa_load(&inode->attrs, index);
	ccvm_rwlock_unlock(&inode->attr_lock);
	return v;
}

/*
 * In place, the file's attributes decide; in the VM scheme a VM with
 * private memory cannot have an INIT_SHARED file, so every page of its
 * files counts as private to the host (6.18's user fault SIGBUSes on an
 * inode without INIT_SHARED).
 */
bool ccvm_gmem_index_is_private(struct ccvm_gmem *g, uint64_t index)
{
	if (g->inode->in_place)
		return ccvm_gmem_attr_get(g->inode, index) & CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	return !(g->inode->flags & CCVM_GMEM_FLAG_INIT_SHARED);
}

static int gmem_access(struct ccvm_gmem *g, uint64_t offset, void *rbuf, const void *wbuf,
		       size_t len, uint64_t *fault_offset)
{
	unsigned int inv_sh;
	struct ccvm_gmem_inode *inode;
	struct ccvm_platform *p;
	uint64_t first, last, i, pfn;
	size_t done = 0;
	int err = 0;

	const char *fn = rbuf ? "ccvm_gmem_read" : "ccvm_gmem_write";

	if (!g || (!rbuf && !wbuf))
		return ccvm_fail_at(fn, -EINVAL, "NULL %s", g ? "buf" : "gmem");
	inode = g->inode;
	p = inode->p;
	if (!(inode->flags & CCVM_GMEM_FLAG_MMAP))
		return ccvm_fail_at(fn, -ENODEV, "the file was created without "
				    "CCVM_GMEM_FLAG_MMAP");
	if (!len)
		return 0;
	if (offset + len < offset)
		return ccvm_fail_at(fn, -EINVAL, "offset + len wraps");
	if (offset + len > inode->size) {
		/* The first byte past EOF is where the SIGBUS hits. */
		if (fault_offset)
			*fault_offset = offset > inode->size ? offset & CCVM_PAGE_MASK
							     : inode->size;
		return ccvm_fail_at(fn, -EFAULT, "[0x%llx, 0x%llx) goes past the file's size "
				    "0x%llx (SIGBUS)", (unsigned long long)offset,
				    (unsigned long long)(offset + len),
				    (unsigned long long)inode->size);
	}
	first = offset >> CCVM_PAGE_SHIFT;
	last = (offset + len - 1) >> CCVM_PAGE_SHIFT;

	/* As the user fault handler: the attribute check under the lock, shared. */
	inv_sh = ccvm_brlock_rdlock(&inode->invalidate_lock);
	/* All or nothing: a private page anywhere refuses the whole access. */
	for (i = first; i <= last; i++) {
		if (ccvm_gmem_index_is_private(g, i)) {
			if (fault_offset)
				*fault_offset = i << CCVM_PAGE_SHIFT;
			err = ccvm_fail_at(fn, -EFAULT, "page 0x%llx of the file is private: "
					   "the host may only touch shared pages",
					   (unsigned long long)i);
			goto out;
		}
	}
	for (i = first; i <= last; i++) {
		uint64_t off = i == first ? offset & (CCVM_PAGE_SIZE - 1) : 0;
		size_t n = CCVM_PAGE_SIZE - off < len - done ? CCVM_PAGE_SIZE - off : len - done;
		uint8_t *page;

		err = inode_get_page(inode, i, &pfn);
		if (err)
			goto out;
		err = ccvm_op_host_access(p, pfn, wbuf != NULL);
		if (err < 0)
			goto out;
		err = 0;
		page = ccvm_page_ptr(p, pfn);
		if (wbuf) {
			ccvm_page_mark_dirty(p, pfn);
			memcpy(page + off, (const uint8_t *)wbuf + done, n);
		} else {
			memcpy((uint8_t *)rbuf + done, page + off, n);
		}
		done += n;
	}
out:
	ccvm_brlock_rdunlock(&inode->invalidate_lock, inv_sh);
	return err;
}

int ccvm_gmem_read(struct ccvm_gmem *g, uint64_t offset, void *buf, size_t len)
{
	return gmem_access(g, offset, buf, NULL, len, NULL);
}

int ccvm_gmem_write(struct ccvm_gmem *g, uint64_t offset, const void *buf, size_t len)
{
	return gmem_access(g, offset, NULL, buf, len, NULL);
}

int ccvm_gmem_access(struct ccvm_gmem *g, uint64_t offset, void *buf, size_t len,
		     unsigned int flags, uint64_t *fault_offset)
{
	if (flags & ~CCVM_GMEM_ACCESS_WRITE)
		return ccvm_reject(-EINVAL, "gmem access: unknown flags %#x", flags);
	if (flags & CCVM_GMEM_ACCESS_WRITE)
		return gmem_access(g, offset, NULL, buf, len, fault_offset);
	return gmem_access(g, offset, buf, NULL, len, fault_offset);
}

/* ---- attributes, in place ------------------------------------------------- */

int ccvm_gmem_get_memory_attributes(struct ccvm_gmem *g, uint64_t offset,
				    uint64_t *attributes, uint64_t *run_bytes)
{
	struct ccvm_gmem_inode *inode;
	uint64_t index, last, v;

	if (!g || !attributes)
		return ccvm_reject(-EINVAL, "gmem attributes: NULL file or result");
	inode = g->inode;
	if (!ccvm_is_page_aligned(offset) || offset >= inode->size)
		return ccvm_reject(-EINVAL, "gmem attributes: offset %#llx unaligned or past EOF",
				   (unsigned long long)offset);
	index = offset >> CCVM_PAGE_SHIFT;
	if (inode->in_place) {
		ccvm_rwlock_rdlock(&inode->attr_lock);
		v = ccvm_xa_run(&inode->attrs, index, &last);
		ccvm_rwlock_unlock(&inode->attr_lock);
	} else {
		v = ccvm_gmem_index_is_private(g, index) ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
		last = UINT64_MAX;
	}
	if (last >= inode->npages)
		last = inode->npages - 1;
	*attributes = v;
	if (run_bytes)
		*run_bytes = (last - index + 1) << CCVM_PAGE_SHIFT;
	return 0;
}

#define PIN_COUNT_MAX		((1ull << CCVM_GMEM_PIN_COUNT_BITS) - 1)
#define PIN_VALUE(pfn, n)	(((pfn) << CCVM_GMEM_PIN_COUNT_BITS) | (n))
#define PIN_PFN(v)		CCVM_GMEM_PIN_PFN(v)
#define PIN_COUNT(v)		((v) & PIN_COUNT_MAX)

/* Is the page cached at @index pinned by the host?  Every pages_lock held. */
static bool index_pinned(struct ccvm_gmem_inode *inode, uint64_t index)
{
	uint64_t pin = ccvm_xa_load(&inode->pins, index);
	uint64_t v;

	if (!pin)
		return false;
	v = ccvm_gmem_pages_load(inode, index);
	return v && ccvm_gmem_pfn_at(v, index) == PIN_PFN(pin);
}

struct pin_scan {
	struct ccvm_gmem_inode *inode;
	uint64_t found;			/* first pinned index, UINT64_MAX if none */
};

static int pin_scan_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct pin_scan *ps = ctx;
	uint64_t i;

	if (!value)
		return 0;
	for (i = first; ; i++) {
		if (index_pinned(ps->inode, i)) {
			ps->found = i;
			return 1;
		}
		if (i == last)
			break;
	}
	return 0;
}

/* The first index of [first, last] whose cached page is pinned, or UINT64_MAX. */
static uint64_t first_pinned(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last)
{
	struct pin_scan ps = { .inode = inode, .found = UINT64_MAX };

	ccvm_gmem_pages_lock_all(inode);
	if (inode->nr_pins)
		ccvm_xa_for_each_run(&inode->pins, first, last, pin_scan_cb, &ps);
	ccvm_gmem_pages_unlock_all(inode);
	return ps.found;
}

/* The checks of pin and unpin; on success the range's first and last page indices. */
static int pin_args(struct ccvm_gmem *g, uint64_t offset, uint64_t size, const char *what,
		    uint64_t *first, uint64_t *last)
{
	if (!g)
		return ccvm_reject(-EINVAL, "gmem %s: NULL file", what);
	if (!(g->inode->flags & CCVM_GMEM_FLAG_MMAP))
		return ccvm_reject(-ENODEV, "gmem %s: file not created with MMAP", what);
	if (!size || offset + size < offset)
		return ccvm_reject(-EINVAL, "gmem %s: size 0 or offset + size wraps", what);
	if (!ccvm_is_page_aligned(offset) || !ccvm_is_page_aligned(size))
		return ccvm_reject(-EINVAL, "gmem %s: offset %#llx or size %#llx not page aligned",
				   what, (unsigned long long)offset, (unsigned long long)size);
	if (offset + size > g->inode->size)
		return ccvm_reject(-EINVAL, "gmem %s: range past EOF %#llx", what,
				   (unsigned long long)g->inode->size);
	*first = offset >> CCVM_PAGE_SHIFT;
	*last = ((offset + size) >> CCVM_PAGE_SHIFT) - 1;
	return 0;
}

int ccvm_gmem_pin(struct ccvm_gmem *g, uint64_t offset, uint64_t size)
{
	unsigned int inv_sh;
	struct ccvm_gmem_inode *inode;
	uint64_t first, last, i, pfn, v, pin;
	size_t before;
	int err;

	err = pin_args(g, offset, size, "pin", &first, &last);
	if (err)
		return err;
	inode = g->inode;

	inv_sh = ccvm_brlock_rdlock(&inode->invalidate_lock);
	for (i = first; i <= last; i++) {
		if (ccvm_gmem_index_is_private(g, i)) {
			err = ccvm_reject(-EFAULT, "gmem pin: page at offset %#llx is private",
					  (unsigned long long)(i << CCVM_PAGE_SHIFT));
			goto out;
		}
	}
	/* GUP faults the pages in: allocated pages stay, as after a fault. */
	for (i = first; i <= last; i++) {
		err = inode_get_page(inode, i, &pfn);
		if (err)
			goto out;
	}
	ccvm_gmem_pages_lock_all(inode);
	for (i = first; i <= last && !err; i++) {
		pin = ccvm_xa_load(&inode->pins, i);
		v = ccvm_gmem_pages_load(inode, i);
		if (pin && (PIN_PFN(pin) != ccvm_gmem_pfn_at(v, i) ||
			    PIN_COUNT(pin) == PIN_COUNT_MAX))
			err = ccvm_reject(-EINVAL, "gmem pin: offset %#llx: an earlier pin still "
					  "holds a punched page, or too many pins",
					  (unsigned long long)(i << CCVM_PAGE_SHIFT));
	}
	before = ccvm_xa_memory(&inode->pins);
	if (!err)
		err = ccvm_xa_reserve(&inode->pins, first, last);
	for (i = first; i <= last && !err; i++) {
		pin = ccvm_xa_load(&inode->pins, i);
		v = ccvm_gmem_pages_load(inode, i);
		if (!pin)
			inode->nr_pins++;
		/* Single-index stores inside the reserved range cannot fail. */
		ccvm_xa_store(&inode->pins, i,
			      PIN_VALUE(ccvm_gmem_pfn_at(v, i), PIN_COUNT(pin) + 1));
	}
	ccvm_model_bytes_add(inode->p, (int64_t)ccvm_xa_memory(&inode->pins) - (int64_t)before);
	ccvm_gmem_pages_unlock_all(inode);
out:
	ccvm_brlock_rdunlock(&inode->invalidate_lock, inv_sh);
	return err;
}

int ccvm_gmem_unpin(struct ccvm_gmem *g, uint64_t offset, uint64_t size)
{
	unsigned int inv_sh;
	struct ccvm_gmem_inode *inode;
	uint64_t first, last, i, pin;
	size_t before;
	int err;

	err = pin_args(g, offset, size, "unpin", &first, &last);
	if (err)
		return err;
	inode = g->inode;

	inv_sh = ccvm_brlock_rdlock(&inode->invalidate_lock);
	ccvm_gmem_pages_lock_all(inode);
	for (i = first; i <= last; i++) {
		if (!ccvm_xa_load(&inode->pins, i)) {
			err = ccvm_reject(-EINVAL, "gmem unpin: page at offset %#llx is not pinned",
					  (unsigned long long)(i << CCVM_PAGE_SHIFT));
			goto out;
		}
	}
	before = ccvm_xa_memory(&inode->pins);
	err = ccvm_xa_reserve(&inode->pins, first, last);
	for (i = first; i <= last && !err; i++) {
		pin = ccvm_xa_load(&inode->pins, i);
		if (PIN_COUNT(pin) == 1) {
			ccvm_xa_store(&inode->pins, i, 0);
			inode->nr_pins--;
		} else {
			ccvm_xa_store(&inode->pins, i, pin - 1);
		}
	}
	ccvm_model_bytes_add(inode->p, (int64_t)ccvm_xa_memory(&inode->pins) - (int64_t)before);
out:
	ccvm_gmem_pages_unlock_all(inode);
	ccvm_brlock_rdunlock(&inode->invalidate_lock, inv_sh);
	return err;
}

struct attrs_op {
	uint64_t offset, size, attributes, flags;
	uint64_t first, last;
	bool to_private;
};

/* kvm_gmem_set_attributes(): the checks, in upstream's order, then ours. */
static int set_attrs_check(struct ccvm_gmem *g, const struct ccvm_memory_attributes2 *a,
			   struct attrs_op *op)
{
	struct ccvm_vm *vm = g->vm;
	uint64_t modes = CCVM_MEMORY_ATTRIBUTES2_ZERO | CCVM_MEMORY_ATTRIBUTES2_PRESERVE;
	size_t i;

	if (!ccvm_vm_in_place(vm))
		return ccvm_reject(-ENOTTY, "set_memory_attributes2: vm %u keeps PRIVATE per VM "
				   "(no in-place conversion)", vm->id);
	if (a->flags & ~vm->caps.gmem_attributes_flags)
		return ccvm_reject(-EINVAL, "set_memory_attributes2: unknown flags %#llx",
				   (unsigned long long)a->flags);
	if ((a->flags & modes) == modes)
		return ccvm_reject(-EINVAL, "set_memory_attributes2: ZERO and PRESERVE together");
	for (i = 0; i < CCVM_ARRAY_SIZE(a->reserved); i++)
		if (a->reserved[i])
			return ccvm_reject(-EINVAL, "set_memory_attributes2: reserved[%zu] is not 0",
					   i);
	if (!vm->caps.gmem_memory_attributes)
		return ccvm_reject(-EINVAL, "set_memory_attributes2: vm %u has no private memory",
				   vm->id);
	if (a->attributes & ~vm->caps.gmem_memory_attributes)
		return ccvm_reject(-EINVAL, "set_memory_attributes2: attributes %#llx: only "
				   "PRIVATE", (unsigned long long)a->attributes);
	if (!a->size || a->offset + a->size < a->offset)
		return ccvm_reject(-EINVAL, "set_memory_attributes2: size 0 or offset + size wraps");
	if (!ccvm_is_page_aligned(a->offset) || !ccvm_is_page_aligned(a->size))
		return ccvm_reject(-EINVAL, "set_memory_attributes2: offset %#llx or size %#llx "
				   "not page aligned", (unsigned long long)a->offset,
				   (unsigned long long)a->size);
	if (a->offset >= g->inode->size || a->offset + a->size > g->inode->size)
		return ccvm_reject(-EINVAL, "set_memory_attributes2: [%#llx, +%#llx) past EOF "
				   "%#llx", (unsigned long long)a->offset,
				   (unsigned long long)a->size,
				   (unsigned long long)g->inode->size);
	op->to_private = a->attributes & CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	/* Content modes (RFC v3-v5): no ZERO into private memory ... */
	if ((a->flags & CCVM_MEMORY_ATTRIBUTES2_ZERO) && op->to_private)
		return ccvm_reject(-EINVAL, "set_memory_attributes2: ZERO only converting to "
				   "shared");
	/* ... and on hardware that owns private pages, PRESERVE only for launch data. */
	if ((a->flags & CCVM_MEMORY_ATTRIBUTES2_PRESERVE) && vm->caps.needs_finalize &&
	    (!op->to_private || ccvm_vm_is_finalized(vm)))
		return ccvm_reject(-EINVAL, "set_memory_attributes2: PRESERVE on vm %u only to "
				   "private, before finalize", vm->id);
	op->offset = a->offset;
	op->size = a->size;
	op->attributes = a->attributes;
	op->flags = a->flags;
	op->first = a->offset >> CCVM_PAGE_SHIFT;
	op->last = op->first + (a->size >> CCVM_PAGE_SHIFT) - 1;
	return 0;
}

struct pfn_runs {
	struct ccvm_platform *p;
	uint64_t start, end;		/* current run of consecutive pfns */
	bool zero;
};

static void pfn_runs_flush(struct pfn_runs *r)
{
	if (r->end > r->start)
		ccvm_op_gmem_invalidate(r->p, r->start, r->end);
	r->start = r->end = 0;
}

/* To shared: the arch hook over populated pfns, in runs (kvm_arch_gmem_invalidate). */
static int make_shared_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct pfn_runs *r = ctx;
	uint64_t pfn;

	if (!value)
		return 0;
	/* A huge folio's run maps to consecutive pfns; a 4K folio's is one index. */
	pfn = ccvm_gmem_pfn_at(value, first);
	if (pfn != r->end)
		pfn_runs_flush(r);
	if (r->start == r->end)
		r->start = pfn;
	r->end = pfn + (last - first + 1);
	return 0;
}

static int zero_page_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct pfn_runs *r = ctx;
	uint64_t i;

	for (i = first; value && i <= last; i++)
		ccvm_page_clear(r->p, ccvm_gmem_pfn_at(value, i));
	return 0;
}

/*
 * Split every whole huge folio of [first, last] (folio aligned) into 4K
 * folios: the pfns stay, each page becomes its own folio.  The range is
 * reserved.  Every pages_lock held.
 */
static void folios_split(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last)
{
	uint64_t nr = 1ull << inode->folio_order, h, v;

	for (h = first; h <= last; h += nr) {
		v = ccvm_gmem_pages_load(inode, h);
		if (!v || !CCVM_GMEM_ORDER(v))
			continue;
		folio_store_split(inode, h, CCVM_GMEM_PFN(v), CCVM_GMEM_ORDER(v));
		ccvm_gmem_shard_of(inode, h)->nr_huge--;
		ccvm_account(inode->p, NULL, CCVM_EV_FOLIO_SPLIT, 1);
	}
}

/*
 * Restore the split folio at @head whole if it can be: every page present,
 * its pfns the naturally aligned block they were allocated as, none pinned
 * nor leaked.  The caller checked that every page is private and reserved
 * the range.  Every pages_lock held.  Return: whether it merged.
 */
static bool folio_try_merge(struct ccvm_gmem_inode *inode, uint64_t head)
{
	unsigned int order = inode->folio_order;
	uint64_t nr = 1ull << order, base, i, v;

	v = ccvm_gmem_pages_load(inode, head);
	if (!v || CCVM_GMEM_ORDER(v))
		return false;		/* a hole, or whole already */
	base = CCVM_GMEM_PFN(v);
	if (base & (nr - 1))
		return false;
	for (i = 0; i < nr; i++) {
		v = ccvm_gmem_pages_load(inode, head + i);
		if (!v || CCVM_GMEM_ORDER(v) || CCVM_GMEM_PFN(v) != base + i ||
		    index_pinned(inode, head + i) || ccvm_page_is_leaked(inode->p, base + i))
			return false;
	}
	ccvm_xa_store_range(&ccvm_gmem_shard_of(inode, head)->pages, head, head + nr - 1,
			    CCVM_GMEM_VALUE_ORDER(base, order));
	ccvm_page_set_folio_order(inode->p, base, nr, order);
	ccvm_gmem_shard_of(inode, head)->nr_huge++;
	ccvm_account(inode->p, NULL, CCVM_EV_FOLIO_MERGE, 1);
	return true;
}

/* After a conversion of folios [first, last]: split (to shared) or merge. */
static void folios_restructure(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last,
			       bool to_private)
{
	uint64_t nr = 1ull << inode->folio_order, h;
	size_t before;

	if (!inode->folio_order)
		return;
	if (!to_private) {
		ccvm_gmem_pages_lock_all(inode);
		before = pages_memory(inode);
		folios_split(inode, first, last);
		ccvm_model_bytes_add(inode->p, (int64_t)pages_memory(inode) - (int64_t)before);
		ccvm_gmem_pages_unlock_all(inode);
		return;
	}
	for (h = first; h <= last; h += nr) {
		/* The attributes first (attr_lock and pages_lock are both leaves). */
		if (!folio_all_private(inode, h, h + nr - 1))
			continue;
		ccvm_gmem_pages_lock_all(inode);
		before = pages_memory(inode);
		folio_try_merge(inode, h);
		ccvm_model_bytes_add(inode->p, (int64_t)pages_memory(inode) - (int64_t)before);
		ccvm_gmem_pages_unlock_all(inode);
	}
}

int ccvm_gmem_set_memory_attributes(struct ccvm_gmem *g, struct ccvm_memory_attributes2 *a)
{
	uint64_t nr, wfirst, wlast;
	struct ccvm_memory_attributes2 in;
	struct ccvm_gmem_inode *inode;
	struct pfn_runs runs;
	struct attrs_op op = { 0 };
	struct ccvm_vm *vm;
	uint64_t bad;
	size_t before;
	bool begun = false;
	int err;

	if (!g || !a)
		return ccvm_reject(-EINVAL, "set_memory_attributes2: NULL file or argument");
	in = *a;			/* copy_from_user: one snapshot */
	err = set_attrs_check(g, &in, &op);
	if (err)
		return err;
	inode = g->inode;
	vm = g->vm;
	/* With huge folios the invalidation covers whole folios (the 1G series). */
	nr = 1ull << inode->folio_order;
	wfirst = op.first & ~(nr - 1);
	wlast = op.last | (nr - 1);

	ccvm_brlock_wrlock(&inode->invalidate_lock);
	if (!ccvm_vm_usable(vm)) {
		err = -EIO;
		goto out;
	}
	/* 1. Nothing to change: no invalidation at all. */
	ccvm_rwlock_rdlock(&inode->attr_lock);
	if (ccvm_xa_range_is(&inode->attrs, op.first, op.last, op.attributes)) {
		ccvm_rwlock_unlock(&inode->attr_lock);
		goto out;
	}
	ccvm_rwlock_unlock(&inode->attr_lock);
	/* 2. The only allocation, before the point of no return. */
	if (ccvm_xa_reserve(&inode->attrs, op.first, op.last)) {
		a->error_offset = op.offset;
		err = -ENOMEM;
		goto out;
	}
	/* Splitting and merging folios store into the page cache: reserve it too. */
	if (inode->folio_order) {
		ccvm_gmem_pages_lock_all(inode);
		before = pages_memory(inode);
		err = pages_reserve(inode, wfirst, wlast);
		ccvm_model_bytes_add(inode->p, (int64_t)pages_memory(inode) - (int64_t)before);
		ccvm_gmem_pages_unlock_all(inode);
		if (err) {
			a->error_offset = op.offset;
			err = -ENOMEM;
			goto out;
		}
	}
	/* 3. To private: no host reference may remain (the user mappings are
	 *    gone with the check, as every host access holds this lock). */
	if (op.to_private) {
		bad = first_pinned(inode, op.first, op.last);
		if (bad != UINT64_MAX) {
			a->error_offset = bad << CCVM_PAGE_SHIFT;
			err = ccvm_reject(-EAGAIN, "set_memory_attributes2: page at offset %#llx "
					  "is pinned", (unsigned long long)a->error_offset);
			goto out;
		}
	}
	/* 4. Point of no return.  5. Zap the old kind in every bound slot. */
	err = gmem_invalidate_begin_wide(g, op.first, op.last, wfirst, wlast,
					 op.to_private ? CCVM_FILTER_SHARED : CCVM_FILTER_PRIVATE,
					 !op.to_private && inode->folio_order, &begun);
	if (err) {
		/* Only the walk's scratch array can fail: before any zap. */
		a->error_offset = op.offset;
		goto out;
	}
	/* 6. To shared: the platform takes its populated pages back. */
	runs = (struct pfn_runs){ .p = inode->p };
	if (!op.to_private) {
		ccvm_gmem_pages_lock_all(inode);
		ccvm_gmem_pages_for_each_run(inode, op.first, op.last, make_shared_cb, &runs);
		pfn_runs_flush(&runs);
		if (op.flags & CCVM_MEMORY_ATTRIBUTES2_ZERO)
			ccvm_gmem_pages_for_each_run(inode, op.first, op.last, zero_page_cb,
						     &runs);
		ccvm_gmem_pages_unlock_all(inode);
	}
	/* 7. Store. */
	ccvm_rwlock_wrlock(&inode->attr_lock);
	before = ccvm_xa_memory(&inode->attrs);
	if (ccvm_xa_store_range(&inode->attrs, op.first, op.last, op.attributes))
		ccvm_vm_bug(vm, "gmem attribute store failed after reserve");
	ccvm_model_bytes_add(inode->p, (int64_t)ccvm_xa_memory(&inode->attrs) - (int64_t)before);
	ccvm_rwlock_unlock(&inode->attr_lock);
	ccvm_account(vm->p, vm, CCVM_EV_ATTR_CHANGE, 1);
	/* 7b. Shared pages are 4K folios; a folio private again is whole again. */
	folios_restructure(inode, wfirst, wlast, op.to_private);
	/* 8. */
	if (begun)
		gmem_invalidate_end(g);
out:
	ccvm_brlock_wrunlock(&inode->invalidate_lock);
	return err;
}

struct nr_private {
	uint64_t n;
};

static int nr_private_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct nr_private *np = ctx;

	if (value & CCVM_MEMORY_ATTRIBUTE_PRIVATE)
		np->n += last - first + 1;
	return 0;
}

int ccvm_gmem_get_info(struct ccvm_gmem *g, struct ccvm_gmem_info *info)
{
	unsigned int inv_sh;
	struct ccvm_gmem_info i;
	size_t sz;

	if (!g || !info || info->sz < sizeof(size_t))
		return -EINVAL;
	memset(&i, 0, sizeof(i));
	i.size = g->inode->size;
	i.flags = g->inode->flags;
	i.folio_order = g->inode->folio_order;
	ccvm_gmem_pages_lock_all(g->inode);
	for (unsigned int k = 0; k < g->inode->nr_shards; k++) {
		i.nr_pages += g->inode->shard[k].nr_pages;
		i.nr_huge_folios += g->inode->shard[k].nr_huge;
	}
	ccvm_gmem_pages_unlock_all(g->inode);
	inv_sh = ccvm_brlock_rdlock(&g->inode->invalidate_lock);
	i.nr_bindings = g->nr_bindings;
	ccvm_brlock_rdunlock(&g->inode->invalidate_lock, inv_sh);
	ccvm_gmem_pages_lock_all(g->inode);
	i.nr_pinned = g->inode->nr_pins;
	ccvm_gmem_pages_unlock_all(g->inode);
	if (g->inode->in_place) {
		struct nr_private np = { 0 };

		ccvm_rwlock_rdlock(&g->inode->attr_lock);
		ccvm_xa_for_each_run(&g->inode->attrs, 0, g->inode->npages - 1,
				     nr_private_cb, &np);
		ccvm_rwlock_unlock(&g->inode->attr_lock);
		i.nr_private = np.n;
	} else if (ccvm_gmem_index_is_private(g, 0)) {
		i.nr_private = g->inode->npages;
	}
	sz = info->sz < sizeof(i) ? info->sz : sizeof(i);
	i.sz = sz;
	memcpy(info, &i, sz);
	return 0;
}

static int cut_binding_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct ccvm_memslot *slot = (struct ccvm_memslot *)(uintptr_t)value;

	(void)first;
	(void)last;
	(void)ctx;
	if (slot)
		atomic_store(&slot->gmem, NULL);
	return 0;
}

/* kvm_gmem_release(): the last close of the file. */
int ccvm_gmem_close(struct ccvm_gmem *g)
{
	struct ccvm_gmem_inode *inode;
	struct ccvm_gmem **pp;
	struct ccvm_vm *vm;
	bool begun = false;
	int defer;

	if (!g)
		return -EINVAL;
	inode = g->inode;
	vm = g->vm;

	ccvm_mutex_lock(&vm->slots_lock);
	/*
	 * Cut the slots' file pointers first, under memslots_rw: that waits
	 * for faults in flight, and later faults get -EFAULT (a memory-fault
	 * exit), as with a closed guest_memfd.
	 */
	ccvm_brlock_wrlock(&vm->memslots_rw);
	/* attr_lock too: ccvm_vm_gfn_is_private() follows the pointers under it. */
	ccvm_brlock_wrlock(&vm->attr_lock);
	ccvm_xa_for_each_run(&g->bindings, 0, UINT64_MAX, cut_binding_cb, NULL);
	ccvm_brlock_wrunlock(&vm->attr_lock);
	ccvm_brlock_wrunlock(&vm->memslots_rw);

	ccvm_brlock_wrlock(&inode->invalidate_lock);
	defer = ccvm_op_gmem_defer_removal(vm, inode);
	/* A failing hook defers nothing: zap now, the safe default. */
	if (defer <= 0 &&
	    gmem_invalidate_begin(g, 0, inode->npages - 1, &begun) == -ENOMEM)
		ccvm_vm_bug(vm, "gmem release could not zap: out of memory");
	if (begun)
		gmem_invalidate_end(g);
	inode->file = NULL;
	/* The pins go with the process's mappings of the file. */
	ccvm_gmem_pages_lock_all(inode);
	ccvm_model_bytes_add(vm->p, -(int64_t)ccvm_xa_memory(&inode->pins));
	ccvm_xa_destroy(&inode->pins);
	inode->nr_pins = 0;
	ccvm_gmem_pages_unlock_all(inode);
	ccvm_brlock_wrunlock(&inode->invalidate_lock);
	for (pp = &vm->gmem_files; *pp; pp = &(*pp)->next_file) {
		if (*pp == g) {
			*pp = g->next_file;
			break;
		}
	}
	/*
	 * From the unlink until the inode's pages are gone (or pinned by the
	 * backend), the VM has pages no open file explains: not a state the
	 * invariant checker of a schedule may look at.
	 */
	ccvm_sched_busy_enter(ccvm_sched_of(vm->p), g, "gmem release");
	ccvm_mutex_unlock(&vm->slots_lock);

	ccvm_xa_destroy(&g->bindings);
	ccvm_model_bytes_add(vm->p, -(int64_t)sizeof(*g));
	ccvm_gmem_inode_put(inode);
	ccvm_sched_busy_leave(ccvm_sched_of(vm->p), g);
	free(g);
	ccvm_vm_put(vm);
	return 0;
}

/* ---- binding and the fault side ----------------------------------------- */

int ccvm_gmem_bind(struct ccvm_vm *vm, struct ccvm_memslot *slot, struct ccvm_gmem *g,
		   uint64_t offset)
{
	struct ccvm_gmem_inode *inode = g->inode;
	uint64_t first = offset >> CCVM_PAGE_SHIFT;
	uint64_t last = first + slot->npages - 1;
	int err;

	if (g->vm != vm)
		return ccvm_fail_at("ccvm_vm_set_user_memory_region", -EINVAL,
				    "slot %u: the gmem file belongs to VM %u, not VM %u",
				    slot->id, g->vm->id, vm->id);
	if (offset + (slot->npages << CCVM_PAGE_SHIFT) > inode->size)
		return ccvm_fail_at("ccvm_vm_set_user_memory_region", -EINVAL,
				    "slot %u: gmem range [0x%llx, 0x%llx) goes past the file's "
				    "size 0x%llx", slot->id, (unsigned long long)offset,
				    (unsigned long long)(offset + (slot->npages << CCVM_PAGE_SHIFT)),
				    (unsigned long long)inode->size);
	ccvm_brlock_wrlock(&inode->invalidate_lock);
	if (!ccvm_xa_range_is(&g->bindings, first, last, 0)) {
		/* the file range is bound to another slot */
		err = ccvm_fail_at("ccvm_vm_set_user_memory_region", -EINVAL,
				   "slot %u: gmem range at 0x%llx is already bound to another slot",
				   slot->id, (unsigned long long)offset);
	} else {
		err = ccvm_xa_store_range(&g->bindings, first, last,
					  (uint64_t)(uintptr_t)slot);
		if (!err)
			g->nr_bindings++;
	}
	ccvm_brlock_wrunlock(&inode->invalidate_lock);
	if (err)
		return err;
	slot->inode = inode;
	slot->pgoff = first;
	/*
	 * KVM sets GMEM_ONLY for in-place conversion and, since 6.18, for any
	 * mmap-able file; the model does it for the first only (an MMAP file
	 * of the VM scheme is SIGBUS-only for the host and its slot's shared
	 * memory stays at userspace_addr).
	 */
	slot->gmem_only = inode->in_place;
	atomic_store(&slot->gmem, g);
	return 0;
}

/* slots_lock held, so a concurrent release cannot cut the pointer under us. */
void ccvm_gmem_unbind(struct ccvm_memslot *slot)
{
	struct ccvm_gmem *g = atomic_load(&slot->gmem);

	if (!g)
		return;
	ccvm_brlock_wrlock(&g->inode->invalidate_lock);
	/* Clearing existing entries needs no new nodes: this cannot fail. */
	ccvm_xa_store_range(&g->bindings, slot->pgoff, slot->pgoff + slot->npages - 1, 0);
	g->nr_bindings--;
	ccvm_brlock_wrunlock(&g->inode->invalidate_lock);
	atomic_store(&slot->gmem, NULL);
}

/*
 * The order a mapping of @gfn may use given its folio of order @order at
 * file page @index: the largest naturally aligned block around @gfn that
 * maps one to one onto a block of the folio (gfn and index co-aligned)
 * and lies inside @slot.  What get_pfn reports as max_order.
 */
static int gmem_mapping_order(const struct ccvm_memslot *slot, uint64_t gfn, uint64_t index,
			      unsigned int order)
{
	uint64_t nr, head;

	for (; order; order--) {
		nr = 1ull << order;
		head = gfn & ~(nr - 1);
		if (((gfn ^ index) & (nr - 1)) == 0 && head >= slot->base_gfn &&
		    head + nr <= slot->base_gfn + slot->npages)
			break;
	}
	return (int)order;
}

static int gmem_get_pfn(struct ccvm_vm *vm, struct ccvm_memslot *slot, uint64_t gfn,
			uint64_t *pfn, int *max_order, bool is_private)
{
	unsigned int inv_sh;
	struct ccvm_gmem *g = atomic_load(&slot->gmem);
	struct ccvm_gmem_inode *inode;
	unsigned int order;
	uint64_t index;
	int err, mo;

	if (!g)
		return -EFAULT;		/* the file was released */
	inode = slot->inode;
	index = slot->pgoff + (gfn - slot->base_gfn);
	inv_sh = ccvm_brlock_rdlock(&inode->invalidate_lock);
	if (ccvm_xa_load(&g->bindings, index) != (uint64_t)(uintptr_t)slot) {
		err = -EIO;		/* a stale memslot */
		goto out;
	}
	err = inode_get_folio(inode, index, pfn, &order);
	if (err)
		goto out;
	mo = gmem_mapping_order(slot, gfn, index, order);
	if (max_order)
		*max_order = mo;
	/*
	 * As upstream now: prepare on every private get; the backend makes it
	 * idempotent.  A shared page of a GMEM_ONLY slot is not prepared.
	 */
	if (is_private) {
		err = ccvm_op_gmem_prepare(vm, *pfn, gfn, mo);
		ccvm_account(vm->p, vm, CCVM_EV_GMEM_PREPARE, 1);
	}
out:
	ccvm_brlock_rdunlock(&inode->invalidate_lock, inv_sh);
	return err;
}

int ccvm_gmem_get_pfn(struct ccvm_vm *vm, struct ccvm_memslot *slot, uint64_t gfn,
		      uint64_t *pfn, int *max_order, bool is_private)
{
	if (max_order)
		*max_order = 0;
	return gmem_get_pfn(vm, slot, gfn, pfn, max_order, is_private);
}

/*
 * kvm_gmem_populate() for one page: allocate without preparing and hand the
 * page to the backend's populate op, all under the invalidate lock so that
 * no punch can free the page in between.
 */
int ccvm_gmem_populate(struct ccvm_vm *vm, struct ccvm_memslot *slot, uint64_t gfn,
		       const void *src, uint64_t flags)
{
	unsigned int inv_sh;
	struct ccvm_gmem *g = atomic_load(&slot->gmem);
	struct ccvm_gmem_inode *inode;
	uint64_t index, pfn;
	int err;

	if (!g)
		return -EINVAL;
	inode = slot->inode;
	index = slot->pgoff + (gfn - slot->base_gfn);
	inv_sh = ccvm_brlock_rdlock(&inode->invalidate_lock);
	if (ccvm_xa_load(&g->bindings, index) != (uint64_t)(uintptr_t)slot) {
		err = -EIO;
		goto out;
	}
	err = inode_get_page(inode, index, &pfn);
	if (err)
		goto out;
	err = ccvm_op_populate(vm, gfn, pfn, src, flags);
out:
	ccvm_brlock_rdunlock(&inode->invalidate_lock, inv_sh);
	return err;
}

int ccvm_gmem_lookup_folio(struct ccvm_memslot *slot, uint64_t gfn, uint64_t *pfn,
			    unsigned int *order)
{
	struct ccvm_gmem_inode *inode;
	struct ccvm_gmem_shard *s;
	uint64_t index, v;

	if (!atomic_load(&slot->gmem))
		return -ENOENT;
	inode = slot->inode;
	index = slot->pgoff + (gfn - slot->base_gfn);
	s = ccvm_gmem_shard_of(inode, index);
	ccvm_mutex_lock(&s->lock);
	v = ccvm_xa_load(&s->pages, index);
	ccvm_mutex_unlock(&s->lock);
	if (!v)
		return -ENOENT;
	*pfn = ccvm_gmem_pfn_at(v, index);
	if (order)
		*order = CCVM_GMEM_ORDER(v);
	return 0;
}

int ccvm_gmem_lookup_pfn(struct ccvm_memslot *slot, uint64_t gfn, uint64_t *pfn)
{
	return ccvm_gmem_lookup_folio(slot, gfn, pfn, NULL);
}

int ccvm_vm_gfn_to_gmem_folio(struct ccvm_vm *vm, uint64_t gfn, uint64_t *pfn, int *order)
{
	unsigned int slots_sh;
	struct ccvm_memslot *slot;
	unsigned int o = 0;
	int err = -ENOENT;

	if (!vm || !pfn)
		return -EINVAL;
	slots_sh = ccvm_brlock_rdlock(&vm->memslots_rw);
	slot = ccvm_memslot_find(vm, gfn);
	if (slot && (slot->flags & CCVM_MEM_GUEST_MEMFD))
		err = ccvm_gmem_lookup_folio(slot, gfn, pfn, &o);
	if (!err && order)
		*order = gmem_mapping_order(slot, gfn, slot->pgoff + (gfn - slot->base_gfn), o);
	ccvm_brlock_rdunlock(&vm->memslots_rw, slots_sh);
	return err;
}

int ccvm_vm_gfn_to_gmem_pfn(struct ccvm_vm *vm, uint64_t gfn, uint64_t *pfn)
{
	unsigned int slots_sh;
	struct ccvm_memslot *slot;
	int err = -ENOENT;

	slots_sh = ccvm_brlock_rdlock(&vm->memslots_rw);
	slot = ccvm_memslot_find(vm, gfn);
	if (slot && (slot->flags & CCVM_MEM_GUEST_MEMFD))
		err = ccvm_gmem_lookup_pfn(slot, gfn, pfn);
	ccvm_brlock_rdunlock(&vm->memslots_rw, slots_sh);
	return err;
}

/* ---- walks for backends ------------------------------------------------ */

/* The first allocated page of @inode in [*index, last]: 0 or -ENOENT. */
static int inode_next_page(struct ccvm_gmem_inode *inode, uint64_t *index, uint64_t last,
			   uint64_t *pfn)
{
	struct ccvm_gmem_shard *s;
	uint64_t v, lo, hi;
	int err;

	/* Shard by shard, each under its own lock. */
	for (;;) {
		s = ccvm_gmem_shard_of(inode, *index);
		shard_span(inode, (unsigned int)(s - inode->shard), *index, last, &lo, &hi);
		ccvm_mutex_lock(&s->lock);
		err = ccvm_xa_find(&s->pages, &lo, hi, &v);
		ccvm_mutex_unlock(&s->lock);
		if (!err || hi >= last)
			break;
		*index = hi + 1;
	}
	if (!err) {
		*index = lo;
		*pfn = ccvm_gmem_pfn_at(v, *index);
	}
	return err;
}

int ccvm_memslot_for_each_gmem_pfn(struct ccvm_vm *vm, struct ccvm_memslot *slot,
				   uint64_t start, uint64_t end, ccvm_gmem_gfn_fn fn,
				   void *ctx)
{
	unsigned int inv_sh;
	struct ccvm_gmem_inode *inode;
	uint64_t index, last, pfn;
	int ret = 0;

	if (!slot || !fn)
		return -EINVAL;
	if (start < slot->base_gfn)
		start = slot->base_gfn;
	if (end > slot->base_gfn + slot->npages)
		end = slot->base_gfn + slot->npages;
	/* slots_lock is held: the binding cannot be released under us. */
	if (!ccvm_memslot_has_gmem(slot) || start >= end)
		return 0;
	inode = slot->inode;
	index = slot->pgoff + (start - slot->base_gfn);
	last = slot->pgoff + (end - 1 - slot->base_gfn);

	inv_sh = ccvm_brlock_rdlock(&inode->invalidate_lock);
	while (index <= last && !inode_next_page(inode, &index, last, &pfn)) {
		ret = fn(vm, slot->base_gfn + (index - slot->pgoff), pfn, ctx);
		if (ret < 0)
			break;
		/* It may have handled more than the one page (a 2M unit). */
		if (ret > (int64_t)(last - index))
			break;
		index += ret > 1 ? (uint64_t)ret : 1;
		ret = 0;
	}
	ccvm_brlock_rdunlock(&inode->invalidate_lock, inv_sh);
	return ret < 0 ? ret : 0;
}

struct file_walk {
	ccvm_gmem_page_fn fn;
	void *ctx;
};

static int file_run_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct file_walk *w = ctx;
	int ret;

	if (!value)
		return 0;	/* a hole */
	for (; first <= last; first++) {
		ret = w->fn(first, ccvm_gmem_pfn_at(value, first), w->ctx);
		if (ret)
			return ret;
		if (first == last)
			break;
	}
	return 0;
}

int ccvm_vm_for_each_gmem_file_pfn(struct ccvm_vm *vm, ccvm_gmem_page_fn fn, void *ctx)
{
	struct file_walk w = { .fn = fn, .ctx = ctx };
	struct ccvm_gmem *g;
	int ret = 0;

	if (!vm || !fn)
		return -EINVAL;
	for (g = vm->gmem_files; g && !ret; g = g->next_file) {
		ccvm_gmem_pages_lock_all(g->inode);
		ret = ccvm_gmem_pages_for_each_run(g->inode, 0, UINT64_MAX, file_run_cb, &w);
		ccvm_gmem_pages_unlock_all(g->inode);
	}
	return ret;
}
