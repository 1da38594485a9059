/* SPDX-License-Identifier: MIT */
/*
 * The core's private header: the objects (platform, VM, memslots, gmem,
 * TDP MMU, vCPU) and what one file of lib/ calls in another.  Backends
 * never include it, nor any other header of lib/: they see the core only
 * through <ccvm/backend.h>, built-in and out-of-tree backends alike
 * (backends/ is compiled without -Ilib, and `make check-boundary` fails on
 * a backend that reaches in anyway), and the core reaches them only
 * through the op wrappers of backend-call.h.  Tests that must look behind
 * the API include it in their own files.
 *
 * Lock order, outer to inner (docs/semantics.md 0.3):
 *   vm->lock (kvm->lock)
 *     vcpu->mutex
 *       vm->slots_lock (memslot and attribute updates, gmem release)
 *         vm->memslots_rw (write: publish; read: a fault in flight = SRCU)
 *           inode->invalidate_lock (write: punch/release; read: fault, allocate)
 *             vm->mmu_lock (write: zap, invalidate; read: fault install, and a
 *             guest access on a serial platform)
 *               vm->attr_lock, inode->pages_lock, platform->mem_lock (leaves;
 *               a walk takes every page-cache shard's pages_lock, in order;
 *               a page window's lock nests inside mem_lock)
 * A fault holds memslots_rw for read across pfn resolution and install, the
 * way a vCPU holds kvm->srcu (KVM_PRE_FAULT_MEMORY across all its pages, but
 * for its retries and a waiting writer); a memslot publisher takes it for
 * write, which waits for in-flight faults like synchronize_srcu().  gmem release cuts the
 * slots' file pointers under memslots_rw write before it takes the
 * invalidate lock, so no fault can reach a released file.  Free-running, a
 * guest access takes no lock at all, as a CPU's load does not: whoever
 * removes a translation waits for the accesses in flight before freeing
 * what it led to (ccvm_vm_sync_guest_accesses(), the TLB shootdown).
 */
#ifndef CCVM_LIB_INTERNAL_H
#define CCVM_LIB_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "brlock.h"
#include "xarray.h"

#define CCVM_PAGE_MASK		(~(CCVM_PAGE_SIZE - 1))
#define CCVM_PAGES_PER_2M	512ull
#define CCVM_INVALID_GFN	UINT64_MAX
#define CCVM_NO_PFN		UINT64_MAX

#define ccvm_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define CCVM_ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define ccvm_likely(x)		__builtin_expect(!!(x), 1)
#define ccvm_unlikely(x)	__builtin_expect(!!(x), 0)

static inline bool ccvm_is_page_aligned(uint64_t x)
{
	return (x & (CCVM_PAGE_SIZE - 1)) == 0;
}

/* Refuse bad input: ccvm_fail() (the rule as the last error and a debug line), then @err. */
#define ccvm_reject(err, ...)	ccvm_fail_at(__func__, (err), __VA_ARGS__)

/* Pages one page-table entry at @level covers: 1 at CCVM_LEVEL_4K, 512 at 2M. */
static inline uint64_t ccvm_level_pages(int level)
{
	return 1ull << (9 * (level - 1));
}

/* ---- the backend table and op calls ---------------------------------- */

enum ccvm_op_index {
#define CCVM_BACKEND_OP(name, ...) CCVM_OPI_##name,
#include "backend-ops.h"
	CCVM_OPI_NR
};

extern const char *const ccvm_op_names[CCVM_OPI_NR];
/* The table registered as @name (NULL: "mock"), NULL if none. */
const struct ccvm_backend_ops *ccvm_backend_lookup(const char *name);
/* Check a backend's table and copy it to @out with the defaults filled in. */
int ccvm_backend_validate(const struct ccvm_backend_ops *ops,
			  struct ccvm_backend_ops *out);

/* An injection rule: fail the nth call of one op with err, count times. */
struct ccvm_inject_rule {
	_Atomic uint64_t calls;		/* calls seen since the rule was set */
	uint64_t nth;			/* 0 = every call */
	uint64_t count;			/* failures left, UINT64_MAX = forever */
	int err;
};

/* ---- counters, the cost model and the trace -------------------------- */

/*
 * Counters are per thread, summed when read, as KVM's per-CPU statistics:
 * the fault and SEAMCALL paths count every step, and one shared atomic
 * line per counter would bounce between vCPU threads.  A thread's first
 * count on a ccvm_counters pushes a block of its own onto the list (the
 * block lives as long as the counters); later counts find it in a small
 * per-thread cache and add with a plain load and store (relaxed atomics:
 * one writer, readers anywhere).  A thread that cannot get a block counts
 * into the shared one with atomic adds.  A block whose thread exited or
 * dropped it from its cache goes idle and is taken (counts and all: the
 * sums only add) by the next thread that needs one, so a platform that
 * lives while VMs and their vCPU threads come and go holds a block per
 * thread counting at once, not one per thread it ever saw.
 *
 * The simulated clock is not kept as a running sum: it is the event counts
 * times the cost model, plus extra_ns for what no event carries (the
 * per-vCPU part of an IPI, ccvm_account_ns).
 */
struct ccvm_counter_block {
	_Atomic uint64_t ev[CCVM_EV_NR];
	_Atomic uint64_t op_calls[CCVM_OPI_NR];
	_Atomic uint64_t op_errors[CCVM_OPI_NR];
	_Atomic uint64_t extra_ns;
	struct ccvm_counter_block *next;
	_Atomic bool idle;	/* no thread's: the next one that needs a block takes it */
};

struct ccvm_counters {
	struct ccvm_counter_block shared;
	struct ccvm_counter_block *_Atomic blocks;	/* pushed, freed with the counters */
	uint64_t id;					/* unique in the process, never reused */
	struct ccvm_counters *live_prev, *live_next;	/* the live counters (stats.c) */
};

void ccvm_counters_init(struct ccvm_counters *c);
void ccvm_counters_destroy(struct ccvm_counters *c);
/* The calling thread's block of @c, NULL when none could be allocated. */
struct ccvm_counter_block *ccvm_counters_block_slow(struct ccvm_counters *c);

struct ccvm_counter_cache {
	uint64_t id;
	struct ccvm_counter_block *b;
};

#define CCVM_COUNTER_CACHE	8
extern _Thread_local struct ccvm_counter_cache ccvm_counter_cache[CCVM_COUNTER_CACHE];

static inline struct ccvm_counter_block *ccvm_counters_block(struct ccvm_counters *c)
{
	unsigned int i;

	for (i = 0; i < CCVM_COUNTER_CACHE; i++)
		if (ccvm_counter_cache[i].id == c->id)
			return ccvm_counter_cache[i].b;
	return ccvm_counters_block_slow(c);
}

/* Add @n to counter @x of the calling thread's block @b (NULL: shared). */
static inline void ccvm_counter_add(_Atomic uint64_t *x, uint64_t n, bool own)
{
	if (ccvm_likely(own))
		atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + n,
				      memory_order_relaxed);
	else
		atomic_fetch_add_explicit(x, n, memory_order_relaxed);
}

/* Add @n to counter @field of @c: in the thread's own block, else the shared one. */
#define CCVM_COUNT(c, field, n)							\
	do {									\
		struct ccvm_counters *c_ = (c);					\
		struct ccvm_counter_block *b_ = ccvm_counters_block(c_);	\
										\
		ccvm_counter_add(&(b_ ? b_ : &c_->shared)->field, (n), b_ != NULL); \
	} while (0)

void ccvm_counters_read(const struct ccvm_counters *c, const struct ccvm_cost_model *costs,
			struct ccvm_stats *st);
/* The simulated clock of @c under @costs, in nanoseconds. */
uint64_t ccvm_counters_sim_ns(const struct ccvm_counters *c,
			      const struct ccvm_cost_model *costs);
/* One counter of @c summed over every block. */
uint64_t ccvm_counters_op_calls(const struct ccvm_counters *c, unsigned int op);

extern const uint64_t ccvm_default_costs[CCVM_EV_NR];
extern const uint64_t ccvm_default_ipi_per_vcpu_ns;
extern const char *const ccvm_event_names[CCVM_EV_NR];

/* Hand @rec to the platform's trace callback, if any. */
void ccvm_trace_emit(struct ccvm_platform *p, const struct ccvm_trace_record *rec);
int ccvm_trace_writer_close(struct ccvm_platform *p);
/* CLOCK_MONOTONIC in nanoseconds: trace timestamps only, never the model's clock. */
uint64_t ccvm_now_ns(void);
/*
 * The clock of @p's trace timestamps: CLOCK_MONOTONIC when free-running;
 * on a serial platform the simulated clock, so that one schedule gives one
 * trace, byte for byte.
 */
uint64_t ccvm_trace_clock(struct ccvm_platform *p);

/* ---- the platform: simulated host and physical memory ---------------- */

/* Per-pfn state, one byte each, in a lazily backed array. */
#define CCVM_PFN_ALLOCATED	(1u << 0)
#define CCVM_PFN_DIRTY		(1u << 1)
#define CCVM_PFN_LEAKED		(1u << 2)
/* Bits 3-7: the order of the gmem folio the page belongs to (0: a 4K folio). */
#define CCVM_PFN_ORDER_SHIFT	3
#define CCVM_PFN_ORDER_MASK	(0x1fu << CCVM_PFN_ORDER_SHIFT)

struct ccvm_trace_writer;

struct ccvm_platform {
	const struct ccvm_backend_ops *ops;	/* validated, defaults filled */
	struct ccvm_backend_caps caps;		/* backend defaults */

	/* simulated RAM: nr_pages pages at mem, lazily backed */
	uint8_t *mem;
	uint64_t nr_pages;
	uint32_t mem_kind;			/* lib/platform.c's mapping cache: RAM, THP */
	_Atomic uint8_t *pfn_state;		/* CCVM_PFN_* per pfn */
	uint32_t *free_next;			/* free list links, lazily backed */
	struct ccvm_mutex mem_lock;
	uint64_t free_head;			/* UINT64_MAX = empty */
	uint64_t folio_head[2];			/* free 2M / 1G blocks, UINT64_MAX = empty */
	uint64_t bump;				/* pfns >= bump never handed out */
	/*
	 * Free-running with several host CPUs: fresh pages are handed out
	 * from one window of the bump region per allocating thread (8
	 * windows, dealt to threads round robin; up to the next
	 * 2 MiB boundary), as the kernel's per-CPU page lists do, so that
	 * vCPUs first touching memory do not interleave their
	 * pages (host huge pages, pfn_state, RMP and PAMT lines).  Window
	 * pages are below bump, free, on no list, and not in nr_free.
	 * nr_windows is 0 when serial or on one CPU (plain bump).  Each
	 * window is one word on a cache line of its own: a page from a
	 * thread's window is one compare-and-swap, taking neither mem_lock
	 * nor a line that another CPU writes.  Refills and the invariant
	 * check change windows under mem_lock only (ccvm_window_*() below).
	 */
	unsigned int nr_windows;
	struct ccvm_page_window {
		_Alignas(CCVM_CACHELINE) _Atomic uint64_t w;
	} window[CCVM_BRLOCK_SHARDS];
	/* Free pages on the lists and never handed out (not in windows). */
	_Alignas(CCVM_CACHELINE) _Atomic uint64_t nr_free;
	_Atomic uint64_t nr_leaked;

	uint32_t nr_cpus;
	uint32_t nr_keyids;
	_Atomic uint64_t rng;
	struct ccvm_cost_model costs;

	struct ccvm_mutex lock;			/* VM list, ids, inode count */
	struct ccvm_vm *vms;			/* VMs created and not being destroyed */
	uint32_t nr_vms;
	uint32_t next_vm_id;
	uint64_t nr_inodes;

	struct ccvm_counters stats;
	_Atomic uint64_t model_bytes;		/* heap the model itself uses */
	uint64_t flags;				/* ccvm_platform_opts.flags */
	_Atomic uint64_t pamt_pairs;		/* TDX Dynamic PAMT pairs held */
	_Atomic uint64_t pamt_bytes;		/* ... and their bytes */

	_Atomic(ccvm_trace_fn) trace_fn;
	void *_Atomic trace_ctx;
	struct ccvm_mutex trace_lock;		/* serialises trace callbacks */
	struct ccvm_trace_writer *trace_writer;

	_Atomic unsigned int op_hooks;		/* CCVM_OP_HOOK_*: op calls take the slow path */
	struct ccvm_mutex inject_lock;
	struct ccvm_inject_rule inject[CCVM_OPI_NR];

	void *priv;				/* backend global state */

	struct ccvm_sched *sched;		/* serial mode; NULL: free-running */
	uint32_t resched_entries;		/* long loops yield this often */
	uint32_t attr_scheme;			/* enum ccvm_attr_scheme, never DEFAULT */
};

/*
 * A page window's word: the next pfn it hands out (bits 0-39; pfns are
 * below 2^32), how many pages it has left from there (bits 40-62, at most
 * a 2 MiB chunk's), and FROZEN (bit 63), which the invariant check sets
 * under mem_lock so that no page leaves a window while it looks: an
 * allocation that finds it frozen, or the window empty, goes to mem_lock.
 */
#define CCVM_WINDOW_LEFT_SHIFT	40
#define CCVM_WINDOW_FROZEN	(1ull << 63)

static inline uint64_t ccvm_window_next(uint64_t w)
{
	return w & ((1ull << CCVM_WINDOW_LEFT_SHIFT) - 1);
}

static inline uint64_t ccvm_window_left(uint64_t w)
{
	return (w & ~CCVM_WINDOW_FROZEN) >> CCVM_WINDOW_LEFT_SHIFT;
}

static inline uint64_t ccvm_window_make(uint64_t next, uint64_t left)
{
	return next | (left << CCVM_WINDOW_LEFT_SHIFT);
}

/*
 * The platform's scheduler, NULL when free-running: ccvm_platform_sched()
 * inline, for the library's hot paths (each point costs this load and a
 * not-taken branch).
 */
static inline struct ccvm_sched *ccvm_sched_of(const struct ccvm_platform *p)
{
	return p->sched;
}

static inline bool ccvm_tracing(struct ccvm_platform *p)
{
	return atomic_load_explicit(&p->trace_fn, memory_order_relaxed) != NULL;
}

/*
 * What makes backend op calls leave their fast path (lib/backend-call.h):
 * a trace callback, an injection rule, a serial platform's scheduler (the
 * call and the return are scheduling points).  Set and cleared by whoever
 * arms or disarms the hook, under that hook's own lock; SCHED is set once,
 * at creation, and never cleared.
 */
#define CCVM_OP_HOOK_TRACE	(1u << 0)
#define CCVM_OP_HOOK_INJECT	(1u << 1)
#define CCVM_OP_HOOK_SCHED	(1u << 2)

static inline void ccvm_op_hooks_set(struct ccvm_platform *p, unsigned int hook, bool on)
{
	if (on)
		atomic_fetch_or_explicit(&p->op_hooks, hook, memory_order_relaxed);
	else
		atomic_fetch_and_explicit(&p->op_hooks, ~hook, memory_order_relaxed);
}

/* Account heap the model allocates (for ccvm_stats.model_bytes). */
static inline void ccvm_model_bytes_add(struct ccvm_platform *p, int64_t bytes)
{
	atomic_fetch_add_explicit(&p->model_bytes, (uint64_t)bytes, memory_order_relaxed);
}

/* Copy a caller's option struct (libbpf rules: see platform.c). */
int ccvm_opts_copy_at(const char *func, void *dst, size_t dst_sz, const void *src,
		      size_t src_sz);
#define ccvm_opts_copy(dst, dst_sz, src, src_sz) \
	ccvm_opts_copy_at(__func__, (dst), (dst_sz), (src), (src_sz))

/*
 * ccvm_fail() - Fail a public call with @err: record "<function>: <the
 * rule, printf-style>" as the calling thread's last error
 * (ccvm_last_error()), log it at debug level, and return @err, so that
 * `return ccvm_fail(-EINVAL, "gpa 0x%llx not page aligned", gpa);` names
 * the rule behind every refusal.  ccvm_fail_at() names the function
 * explicitly (a helper failing on behalf of a public call).
 */
int ccvm_fail_at(const char *func, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define ccvm_fail(err, ...)	ccvm_fail_at(__func__, (err), __VA_ARGS__)
/*
 * Folios of simulated RAM: @order (CCVM_FOLIO_ORDER_2M or _1G) naturally
 * aligned, physically contiguous pages, allocated zeroed with their folio
 * order in pfn_state (ccvm_page_folio_order()).  A block freed whole goes
 * back to its own list; a folio with a leaked page is freed page by page.
 * Blocks are broken into 4K pages (and 1G into 2M blocks) when nothing
 * else is left.  Return: 0; -ENOMEM; -EINVAL (another order).
 */
int ccvm_page_alloc_folio(struct ccvm_platform *p, unsigned int order, uint64_t *pfn);
void ccvm_page_free_folio(struct ccvm_platform *p, uint64_t pfn, unsigned int order);
/* ccvm_page_free() of @n pages, under one hold of mem_lock when free-running. */
void ccvm_page_free_many(struct ccvm_platform *p, const uint64_t *pfns, unsigned int n);
/* Record that pages [pfn, pfn + nr) now belong to a folio of @order (split, merge). */
void ccvm_page_set_folio_order(struct ccvm_platform *p, uint64_t pfn, uint64_t nr,
			       unsigned int order);
/* gmem inodes alive on the platform: it cannot be destroyed while any are. */
void ccvm_platform_inode_get(struct ccvm_platform *p);
void ccvm_platform_inode_put(struct ccvm_platform *p);

/* ---- memslots -------------------------------------------------------- */

struct ccvm_memslot {
	uint32_t id;
	uint32_t flags;
	uint64_t base_gfn;
	uint64_t npages;
	uint8_t *userspace_addr;		/* shared backing, may be NULL */
	struct ccvm_gmem *_Atomic gmem;		/* NULL once the file is released */
	struct ccvm_gmem_inode *inode;		/* valid only while gmem is non-NULL */
	uint64_t pgoff;				/* gmem page offset of base_gfn */
	_Atomic bool invalid;			/* being deleted/moved: faults retry */
	/*
	 * KVM_MEMSLOT_GMEM_ONLY: set at bind when the VM converts in place
	 * (constant while bound); shared faults then take gmem's page too and
	 * userspace_addr backs nothing.
	 */
	bool gmem_only;
	/*
	 * Hugepage tracking, one bit per 2M page that intersects the slot
	 * (index (gfn >> 9) - (base_gfn >> 9)) in two bitmaps: DISALLOW (the
	 * page sticks out of the slot or its backing is misaligned: KVM's
	 * disallow_lpage) and MIXED (attributes differ inside the page).
	 * Either bit forbids a 2M mapping.  Bitmaps, so that a conversion of
	 * a huge range clears MIXED 64 2M pages at a time.  Written under
	 * mmu_lock write (or before the slot is published), read under
	 * mmu_lock read.
	 */
	_Atomic uint64_t *lpage_disallow;
	_Atomic uint64_t *lpage_mixed;
	uint64_t nr_lpage_2m;
};

/* Bits of a slot's hugepage bitmaps (relaxed: mmu_lock orders them). */
static inline bool ccvm_lpage_test(_Atomic uint64_t *bm, uint64_t i)
{
	return atomic_load_explicit(&bm[i / 64], memory_order_relaxed) >> (i % 64) & 1;
}

static inline void ccvm_lpage_assign(_Atomic uint64_t *bm, uint64_t i, bool set)
{
	uint64_t bit = 1ull << (i % 64);

	if (set)
		atomic_fetch_or_explicit(&bm[i / 64], bit, memory_order_relaxed);
	else
		atomic_fetch_and_explicit(&bm[i / 64], ~bit, memory_order_relaxed);
}

/* Clear bits [first, end) of @bm. */
void ccvm_lpage_clear_range(_Atomic uint64_t *bm, uint64_t first, uint64_t end);

struct ccvm_memslots {
	uint32_t nr;
	uint64_t generation;
	struct ccvm_memslot *by_gfn[];		/* sorted by base_gfn */
};

/* Slot containing @gfn, or NULL; memslots_rw read (or slots_lock) held. */
struct ccvm_memslot *ccvm_memslot_find(struct ccvm_vm *vm, uint64_t gfn);
/* Largest level allowed for @gfn by slot bounds and lpage tracking. */
int ccvm_memslot_max_level(const struct ccvm_memslot *slot, uint64_t gfn);
void ccvm_memslots_free_all(struct ccvm_vm *vm);

/* ---- memory attributes ----------------------------------------------- */

uint64_t ccvm_attr_get(struct ccvm_vm *vm, uint64_t gfn);
/* The VM converts in place: PRIVATE lives in its gmem files. */
static inline bool ccvm_vm_in_place(const struct ccvm_vm *vm);
/*
 * kvm_mem_is_private(): is @gfn private now?  The per-VM store, or in the
 * GMEM scheme the attributes of the gmem page bound at @gfn in @slot (the
 * slot of @gfn or NULL, kept alive by the caller: memslots_rw or
 * slots_lock); no slot or a released file is shared.  The answer can be
 * stale at once: callers hold the invalidate lock or recheck the
 * invalidation sequence, as every fault does.
 */
bool ccvm_mem_is_private(struct ccvm_vm *vm, struct ccvm_memslot *slot, uint64_t gfn);
/* Recompute MIXED for every 2M page of a new slot; mmu_lock write held. */
void ccvm_attr_init_memslot(struct ccvm_vm *vm, struct ccvm_memslot *slot);

/* ---- guest_memfd ----------------------------------------------------- */

/*
 * gmem page cache values (0 = hole): the folio's first pfn << 6, its order
 * << 1, and bit 0.  A huge folio is one value over its naturally aligned
 * indices (one run, so the cache costs bytes per folio, not per page);
 * index i of it is pfn CCVM_GMEM_PFN(v) + (i & (2^order - 1)).
 */
#define CCVM_GMEM_VALUE_ORDER(pfn, order) \
	(((uint64_t)(pfn) << 6) | ((uint64_t)(order) << 1) | 1)
#define CCVM_GMEM_VALUE(pfn)	CCVM_GMEM_VALUE_ORDER(pfn, 0)
#define CCVM_GMEM_PFN(v)	((v) >> 6)		/* the folio's first pfn */
#define CCVM_GMEM_ORDER(v)	((unsigned int)((v) >> 1) & 31)

/* The pfn of page @index, whose cache value is @v (non-zero). */
static inline uint64_t ccvm_gmem_pfn_at(uint64_t v, uint64_t index)
{
	return CCVM_GMEM_PFN(v) + (index & ((1ull << CCVM_GMEM_ORDER(v)) - 1));
}
/* gmem pin table values: pfn of the pinned page << 20 | pin count. */
#define CCVM_GMEM_PIN_COUNT_BITS	20
#define CCVM_GMEM_PIN_PFN(v)		((v) >> CCVM_GMEM_PIN_COUNT_BITS)

/*
 * A shard of a gmem page cache: the indices [k << shard_shift,
 * (k + 1) << shard_shift) of its inode, under a lock of their own.
 */
#define CCVM_GMEM_SHARDS	16
struct ccvm_gmem_shard {
	_Alignas(CCVM_CACHELINE) struct ccvm_mutex lock;	/* "pages_lock" */
	struct ccvm_xa pages;			/* index -> CCVM_GMEM_VALUE(pfn) */
	uint64_t nr_pages;			/* allocated */
	uint64_t nr_huge;			/* whole huge folios */
};

struct ccvm_gmem_inode {
	struct ccvm_platform *p;
	_Atomic long refcount;			/* open file + backend pins */
	uint64_t size;				/* bytes, fixed */
	uint64_t npages;
	uint64_t flags;
	bool in_place;				/* GMEM scheme: attrs below is live */
	unsigned int folio_order;		/* 0, or CCVM_FOLIO_ORDER_2M / _1G */
	struct ccvm_brlock invalidate_lock;	/* filemap_invalidate_lock, read side per CPU */
	/*
	 * The page cache, in shards of contiguous indices (1 << shard_shift
	 * each, whole folios), each with its own pages_lock: faults on
	 * distant pages of one file take different locks, as vCPUs on
	 * disjoint memory do.  One shard on a serial platform (the schedules
	 * are those of one lock).  A walk over a range and the pins take
	 * every shard's lock, in order (ccvm_gmem_pages_lock_all()).
	 */
	unsigned int nr_shards, shard_shift;
	struct ccvm_gmem_shard shard[CCVM_GMEM_SHARDS];
	/*
	 * GMEM scheme: index -> attributes (0 shared, PRIVATE), covering every
	 * index.  Written with invalidate_lock held for write, and attr_lock
	 * (a leaf) for write around the store itself; read under attr_lock.
	 */
	struct ccvm_rwlock attr_lock;
	struct ccvm_xa attrs;
	struct ccvm_xa pins;			/* index -> host pin count, every pages_lock */
	uint64_t nr_pins;			/* indices with pins, every pages_lock */
	struct ccvm_gmem *file;			/* the one file, NULL once released */
};

struct ccvm_gmem {
	struct ccvm_gmem_inode *inode;
	struct ccvm_vm *vm;			/* holds a reference */
	struct ccvm_gmem *next_file;		/* vm->gmem_files, under slots_lock */
	struct ccvm_xa bindings;		/* index -> memslot pointer */
	uint32_t nr_bindings;
};

/*
 * Resolve the gmem pfn of @gfn in @slot, allocating it (kvm_gmem_get_pfn).
 * Calls gmem_prepare if @is_private (a shared get serves a GMEM_ONLY
 * slot).  *@max_order: the order of the naturally aligned block around
 * @gfn that one folio backs one to one inside the slot (0 for 4K folios).
 * Return: 0; -EFAULT (file released); -EIO (binding mismatch); -ENOMEM; a
 * gmem_prepare error.
 */
int ccvm_gmem_get_pfn(struct ccvm_vm *vm, struct ccvm_memslot *slot, uint64_t gfn,
		      uint64_t *pfn, int *max_order, bool is_private);
/* Launch-time populate of one page: allocate (no prepare) and call the
 * populate op under the invalidate lock.  Errors as above or the op's. */
int ccvm_gmem_populate(struct ccvm_vm *vm, struct ccvm_memslot *slot, uint64_t gfn,
		       const void *src, uint64_t flags);
/* Lookup only (no allocation). 0 or -ENOENT. */
int ccvm_gmem_lookup_pfn(struct ccvm_memslot *slot, uint64_t gfn, uint64_t *pfn);
/* The same with the order of the folio holding the page (@order may be NULL). */
int ccvm_gmem_lookup_folio(struct ccvm_memslot *slot, uint64_t gfn, uint64_t *pfn,
			   unsigned int *order);
/* Bind/unbind a slot; slots_lock held.  Errors as KVM's kvm_gmem_bind. */
int ccvm_gmem_bind(struct ccvm_vm *vm, struct ccvm_memslot *slot, struct ccvm_gmem *g,
		   uint64_t offset);
void ccvm_gmem_unbind(struct ccvm_memslot *slot);
/* Is the file page at @index private now (so the host may not touch it)? */
bool ccvm_gmem_index_is_private(struct ccvm_gmem *g, uint64_t index);
/* The page-cache shard holding index @index of @inode. */
static inline struct ccvm_gmem_shard *ccvm_gmem_shard_of(struct ccvm_gmem_inode *inode,
							 uint64_t index)
{
	uint64_t k = inode->shard_shift < 64 ? index >> inode->shard_shift : 0;

	return &inode->shard[k < inode->nr_shards ? k : inode->nr_shards - 1];
}
/* Take (drop) every shard's pages_lock, in index order (one lock when serial). */
#define ccvm_gmem_pages_lock_all(i)	ccvm_gmem_pages_lock_all_at((i), CCVM_SYNC_SITE)
#define ccvm_gmem_pages_unlock_all(i)	ccvm_gmem_pages_unlock_all_at((i), CCVM_SYNC_SITE)
#define ccvm_gmem_pages_cond_resched(i)	ccvm_gmem_pages_cond_resched_at((i), CCVM_SYNC_SITE)

static inline void ccvm_gmem_pages_lock_all_at(struct ccvm_gmem_inode *inode,
					       const struct ccvm_sync_site *site)
{
	for (unsigned int k = 0; k < inode->nr_shards; k++)
		ccvm_mutex_lock_at(&inode->shard[k].lock, site);
}

static inline void ccvm_gmem_pages_unlock_all_at(struct ccvm_gmem_inode *inode,
						 const struct ccvm_sync_site *site)
{
	for (unsigned int k = inode->nr_shards; k--; )
		ccvm_mutex_unlock_at(&inode->shard[k].lock, site);
}

/* Should a holder of every pages_lock in a long walk let others in? */
static inline int ccvm_gmem_pages_needbreak(const struct ccvm_gmem_inode *inode)
{
	for (unsigned int k = 0; k < inode->nr_shards; k++)
		if (ccvm_mutex_needbreak(&inode->shard[k].lock))
			return 1;
	return 0;
}

/* Drop every pages_lock, let others run, take them again (ccvm_mutex_cond_resched()). */
static inline void ccvm_gmem_pages_cond_resched_at(struct ccvm_gmem_inode *inode,
						   const struct ccvm_sync_site *site)
{
	if (inode->nr_shards == 1) {
		ccvm_mutex_cond_resched_at(&inode->shard[0].lock, site);
		return;
	}
	ccvm_gmem_pages_unlock_all_at(inode, site);
	sched_yield();
	ccvm_gmem_pages_lock_all_at(inode, site);
}

/* The page-cache value at @index; its shard's lock held. */
static inline uint64_t ccvm_gmem_pages_load(struct ccvm_gmem_inode *inode, uint64_t index)
{
	return ccvm_xa_load(&ccvm_gmem_shard_of(inode, index)->pages, index);
}
/* ccvm_xa_for_each_run() over the page cache (runs end at shard edges); every lock held. */
int ccvm_gmem_pages_for_each_run(struct ccvm_gmem_inode *inode, uint64_t first, uint64_t last,
				 ccvm_xa_run_fn fn, void *ctx);
/* GMEM scheme: the attributes of inode page @index (takes attr_lock). */
uint64_t ccvm_gmem_attr_get(struct ccvm_gmem_inode *inode, uint64_t index);

/* ---- the TDP MMU: roots, tables, invalidation, zap, install ---------- */

struct ccvm_sp;

struct ccvm_root {
	struct ccvm_sp *sp;			/* top-level table */
	bool mirror;
	_Atomic long refcount;
	_Atomic bool invalid;
	struct ccvm_root *next;			/* vm->mmu.roots, under mmu_lock */
};

struct ccvm_mmu {
	struct ccvm_root *roots;		/* every root, valid or invalid */
	int root_level;				/* 4 or 5 */
	/*
	 * The invalidation protocol's words, written by every invalidation
	 * (a conversion anywhere in the VM): on lines of their own, so that a
	 * guest access's walk, which reads root_level, does not miss on them.
	 */
	_Alignas(CCVM_CACHELINE) _Atomic uint64_t invalidate_seq;
	_Atomic long invalidate_in_progress;
	_Atomic uint64_t range_start;		/* gfn, CCVM_INVALID_GFN = empty */
	_Atomic uint64_t range_end;
	bool range_added;			/* since the last first begin */
	_Alignas(CCVM_CACHELINE) bool teardown;	/* VM teardown: root frees yield */
	uint32_t teardown_leaves;		/* leaves freed since the last yield */
	_Atomic uint64_t nr_sp;			/* page-table pages, all roots */
	/*
	 * Table memory (lib/mmu.c sp_alloc): chunks mapped and populated in
	 * bulk, free tables on a list, all given back at ccvm_mmu_vm_uninit().
	 * sp_lock is a leaf lock outside the scheduler: nothing waits or
	 * yields while holding it.
	 */
	struct ccvm_mutex sp_lock;
	void *sp_free;				/* free tables, linked through their first word */
	void *sp_chunks;			/* mapped chunks, linked through their header */
	uint32_t sp_chunk_tables;		/* capacity of the next chunk */
};

/* Translation of a guest access, for the guest side. */
struct ccvm_xlate {
	uint8_t *hva;				/* host address of the 4K page */
	uint64_t pfn;				/* platform pfn, or ~0 for VMM memory */
	int level;
	bool is_private;
};

int ccvm_mmu_vm_init(struct ccvm_vm *vm);
/* Teardown: invalidate and zap every root, mirror included; free them. */
void ccvm_mmu_vm_uninit(struct ccvm_vm *vm);
/* Make @v's roots valid (kvm_mmu_reload): a mirror root only if it has none. */
int ccvm_mmu_reload(struct ccvm_vcpu *v);
/* Roots of @vm by kind ([0] direct, [1] mirror): counts and references. */
struct ccvm_root_census {
	uint32_t valid[2], invalid[2];
	uint64_t refs[2];
};
void ccvm_mmu_root_census(struct ccvm_vm *vm, struct ccvm_root_census *c);
/* Drop @v's root references (vCPU free). */
void ccvm_mmu_vcpu_unload(struct ccvm_vcpu *v);

/* Invalidation protocol, mmu_lock held for write (docs/semantics.md 2.1). */
void ccvm_mmu_invalidate_begin(struct ccvm_vm *vm);
void ccvm_mmu_invalidate_range_add(struct ccvm_vm *vm, uint64_t start, uint64_t end);
void ccvm_mmu_invalidate_end(struct ccvm_vm *vm);
/*
 * Zap leaves of [start, end) selected by @filter in the matching roots;
 * mmu_lock write.  With @can_yield the walk drops and retakes mmu_lock
 * every p->resched_entries leaves, as KVM's zap does when it may block:
 * the caller must keep faults out of the range across that (an
 * invalidation in progress over it, or the memslot marked invalid).
 * Return: true if a TLB flush is needed (one is done at each yield).
 */
/*
 * Split the 2M private leaf of the mirror root covering @gfn into 4K leaves
 * (split_private_spte), taking mmu_lock for write.  Return: 0 (split, or no
 * 2M leaf there any more), or the backend's negative errno.
 */
int ccvm_mmu_split_private(struct ccvm_vm *vm, uint64_t gfn);
bool ccvm_mmu_unmap_gfn_range(struct ccvm_vm *vm, uint64_t start, uint64_t end,
			      unsigned int filter, bool can_yield);
void ccvm_mmu_flush_remote_tlbs(struct ccvm_vm *vm);
/*
 * Before the huge folios behind gfns [start, end) are split into 4K folios:
 * every private leaf above 4K there is split into 4K leaves over the same
 * frames (mirror root: split_private_spte, TDX DEMOTE, pages keep their
 * accepted state) or, where that is not possible (direct roots, a backend
 * that cannot split), zapped; so no mapping outlives the folio size it was
 * made for (I36).  4K and shared leaves stay.  mmu_lock held for write,
 * inside an invalidation covering the range; never yields.
 * Return: true if a TLB flush is needed.
 */
bool ccvm_mmu_break_huge_private(struct ccvm_vm *vm, uint64_t start, uint64_t end);
/* Generation wrap: invalidate every direct root, never a mirror root. */
void ccvm_mmu_zap_all_fast(struct ccvm_vm *vm);

/*
 * Translate @gpa for a guest access: under mmu_lock read, or (free-running)
 * inside the vCPU's access (ccvm_vcpu_access_wait()).  0 or -ENOENT.
 */
int ccvm_mmu_translate(struct ccvm_vcpu *v, uint64_t gpa, struct ccvm_xlate *x);
/* Look up the leaf for @gpa in the VM's current roots (inspection). */
int ccvm_mmu_lookup(struct ccvm_vm *vm, uint64_t gpa, uint64_t *pfn, int *level);

static inline bool ccvm_root_is_invalid(const struct ccvm_root *root)
{
	return atomic_load_explicit(&root->invalid, memory_order_acquire);
}

/*
 * The valid root of the VM's private kind (mirror, or direct without one),
 * or a new one that only the MMU references; mmu_lock write held.  For a
 * map without a vCPU (populate).  NULL: out of memory.
 */
struct ccvm_root *ccvm_mmu_launch_root(struct ccvm_vm *vm);

/* Fault return values besides 0 (mapped) and negative errnos. */
#define CCVM_PF_RETRY		1		/* stale or busy: run the fault again */
#define CCVM_PF_EXIT		2		/* *exit filled: leave the guest */

/* What a fault installs: the frame of one 4K page and the leaf's level. */
struct ccvm_page_fault {
	uint64_t gfn;		/* without the shared bit */
	bool is_private;
	bool host;		/* frame is a VMM virtual page */
	uint64_t frame;		/* of the 4K page at gfn */
	int level;		/* in: wanted; out: level of the leaf covering gfn */
	bool installed;		/* out: this fault wrote the leaf */
};

/*
 * Walk @root to f->level, linking missing tables (mirror: link_private_spt
 * under the FROZEN protocol), and install the leaf.  mmu_lock held (read or
 * write).  Return: 0 (installed, or a leaf already covers the gfn:
 * f->installed tells), CCVM_PF_RETRY, or a negative errno.
 */
int ccvm_tdp_map(struct ccvm_vm *vm, struct ccvm_root *root, struct ccvm_page_fault *f);

/*
 * Inspection, for the invariant checker and the tests.  What a walk
 * reports, struct ccvm_mmu_entry, is in <ccvm/backend.h>.
 */
typedef int (*ccvm_mmu_walk_fn)(struct ccvm_root *root, const struct ccvm_mmu_entry *e,
				void *ctx);
/*
 * Call @fn for every present or frozen entry of @root in gfn order (stops
 * at a nonzero return, which is returned).  mmu_lock held by the caller.
 */
int ccvm_mmu_walk(struct ccvm_vm *vm, struct ccvm_root *root, ccvm_mmu_walk_fn fn, void *ctx);
/*
 * Test hook: replace the non-table entry at @level covering @gfn in @root
 * by a leaf built from @leaf (frame, is_private, host; SPTE_FROZEN if
 * leaf->frozen) or, @leaf NULL, by a non-present one, behind every
 * protocol (no op call, no counter); *@old (may be NULL) gets what was
 * there.  Takes mmu_lock for write.
 * Return: 0; -ENOENT (no table down to @level); -EEXIST (a table is there);
 * -EINVAL.
 */
int ccvm_mmu_test_poke(struct ccvm_vm *vm, struct ccvm_root *root, uint64_t gfn, int level,
		       const struct ccvm_mmu_entry *leaf, struct ccvm_mmu_entry *old);

/* ---- the fault path -------------------------------------------------- */

/* Result of a fault that must leave the guest. */
struct ccvm_fault_exit {
	uint32_t reason;			/* CCVM_EXIT_MEMORY_FAULT or _MMIO */
	uint64_t flags, gpa, size;
};

/*
 * ccvm_mmu_page_fault() - Handle a TDP fault at @gpa (shared bit included)
 * for vCPU @v (docs/semantics.md 2.3).  Takes memslots_rw, the gmem and
 * mmu locks itself.  Return: 0 mapped (or already mapped); CCVM_PF_RETRY;
 * CCVM_PF_EXIT with *@exit filled (memory fault or MMIO); -EIO (VM bugged);
 * -ENOMEM; -EFAULT and other gmem errors also fill a memory-fault *@exit.
 */
int ccvm_mmu_page_fault(struct ccvm_vcpu *v, uint64_t gpa, bool write,
			struct ccvm_fault_exit *exit);
/*
 * ccvm_fault_in() - The fault of a guest access at @gpa, run again while it
 * asks for a retry, without going back to the guest (docs/semantics.md
 * 6.13).  *@tries is the access's budget, spent one per run over calls;
 * past CCVM_FAULT_RETRY_LIMIT runs the call gives up.  Return: as
 * ccvm_mmu_page_fault() but never CCVM_PF_RETRY; -EBUSY past the bound
 * (*@tries is reset); -EIO once the VM is bugged or dead.
 */
#define CCVM_FAULT_RETRY_LIMIT	100000u
int ccvm_fault_in(struct ccvm_vcpu *v, uint64_t gpa, bool write,
		  struct ccvm_fault_exit *exit, unsigned int *tries);
/*
 * Map private @gfn into the VM's private root without a vCPU, as KVM's
 * launch path does (kvm_tdp_mmu_map_private_pfn); used by populate.
 * Return: 0, -EEXIST (already mapped), -EINVAL (no gmem slot), -EBUSY
 * (retried past the bound), -EIO, -ENOMEM, an op error.
 */
int ccvm_fault_map_private(struct ccvm_vm *vm, uint64_t gfn);

/* ---- the VM ---------------------------------------------------------- */

enum ccvm_vm_state {
	CCVM_VM_CREATED,	/* launch phase: populate allowed */
	CCVM_VM_FINALIZED,	/* runnable */
};

struct ccvm_vm {
	struct ccvm_platform *p;
	const struct ccvm_backend_ops *ops;
	uint32_t id;
	struct ccvm_vm *next_vm;		/* p->vms, under p->lock */
	_Atomic long refcount;			/* VMM handle, vCPU handles, gmem files */
	bool handle_closed;			/* under lock */

	uint32_t max_vcpus;
	uint32_t gpa_bits;
	uint32_t attr_scheme;			/* enum ccvm_attr_scheme, never DEFAULT */
	uint64_t shared_bit;			/* GPA bit, 0 = none */
	uint64_t max_gfn;			/* gfns < max_gfn are addressable */
	struct ccvm_backend_caps caps;

	struct ccvm_mutex lock;			/* kvm->lock */
	struct ccvm_mutex slots_lock;
	struct ccvm_brlock memslots_rw;		/* read side sharded per CPU */
	struct ccvm_brlock mmu_lock;		/* read side sharded per CPU */
	/*
	 * A leaf: the per-VM store; in the GMEM scheme also the memslot array
	 * and the slots' file pointers for ccvm_vm_gfn_is_private(), which may
	 * run where memslots_rw cannot be taken (publishers and the release's
	 * cut take it for write inside memslots_rw).  Read by every fault
	 * (twice on mock): sharded per CPU as mmu_lock is.
	 */
	struct ccvm_brlock attr_lock;

	struct ccvm_xa attrs;			/* gfn -> attributes, under attr_lock */
	struct ccvm_memslots *memslots;		/* under memslots_rw */
	struct ccvm_xa slot_ids;		/* id -> memslot, under slots_lock */
	/* Open gmem files, for inspection only (KVM keeps no such list). */
	struct ccvm_gmem *gmem_files;		/* under slots_lock */
	uint64_t generation;			/* under slots_lock */
	bool force_wrap;

	struct ccvm_mmu mmu;

	/* Read by every guest access (dead): away from the MMU's written words. */
	_Alignas(CCVM_CACHELINE) struct ccvm_vcpu **vcpus; /* by index of creation, under lock */
	_Atomic uint32_t nr_vcpus;

	_Atomic int state;			/* enum ccvm_vm_state */
	_Atomic bool bugged;
	_Atomic bool dead;
	_Atomic long entry_blocked;		/* ccvm_vm_block_entry() depth */
	_Atomic uint32_t study[CCVM_STUDY_NR_KNOBS];	/* lib/study.c */

	const void *populate_src;		/* PAGE.ADD source during populate */
	uint64_t populate_flags;

	struct ccvm_counters stats;
	void *priv;
	/*
	 * Bit i (vcpus[i]): a run of that vCPU has handed it to its guest and
	 * not returned yet.  Only such a vCPU can be in guest mode or have an
	 * access in flight, so kicks and the TLB shootdown visit only these
	 * (a dynamic removal kicks every vCPU per page).  The words are on
	 * lines of their own: set and cleared once per run, read by every
	 * kick.  The pointer is last, leaving the other fields' offsets as
	 * they were (see vcpu->index for why that mattered there).
	 */
	_Atomic uint64_t *running;
};

static inline bool ccvm_vm_in_place(const struct ccvm_vm *vm)
{
	return vm->attr_scheme == CCVM_ATTR_SCHEME_GMEM;
}

void ccvm_vm_get(struct ccvm_vm *vm);
/* Drop a reference; the last one destroys the VM (kvm_destroy_vm). */
void ccvm_vm_put(struct ccvm_vm *vm);

static inline bool ccvm_vm_usable(const struct ccvm_vm *vm)
{
	return !atomic_load_explicit(&vm->bugged, memory_order_acquire);
}

/* The gfn of @gpa, without the shared bit. */
static inline uint64_t ccvm_gpa_to_gfn(const struct ccvm_vm *vm, uint64_t gpa)
{
	return (gpa & ~vm->shared_bit) >> CCVM_PAGE_SHIFT;
}

/* ---- vCPUs and the guest execution context --------------------------- */

enum ccvm_guest_state {
	CCVM_GUEST_NONE,	/* no guest function set */
	CCVM_GUEST_READY,	/* set, not started */
	CCVM_GUEST_RUNNING,	/* the guest thread runs */
	CCVM_GUEST_EXITED,	/* blocked in an exit, waiting for run */
	CCVM_GUEST_DONE,	/* function returned or aborted */
};

struct ccvm_vcpu {
	struct ccvm_vm *vm;
	uint32_t id;
	bool handle_closed;
	struct ccvm_mutex mutex;		/* vcpu->mutex: run, pre-fault, set_guest */

	struct ccvm_root *root;			/* direct root, NULL = needs reload */
	struct ccvm_root *mirror_root;		/* mirror root (TDX), NULL = none */
	int accept_level;			/* a guest accept's level while it faults, 0 */

	_Atomic int in_guest;			/* CCVM_VCPU_OUT/IN/EXITING */
	/*
	 * Free-running, a guest access takes no lock (lib/guest.c): this count
	 * is odd while one is in flight, and a TLB flush or a kick waits for
	 * it to move on (ccvm_vcpu_access_wait()).  Only the guest thread
	 * writes it; on a serial platform it stays 0.
	 */
	_Atomic uint64_t access_seq;
	unsigned int mmu_shard;			/* guest thread: mmu_lock shard it reads */
	/*
	 * In vm->vcpus and vm->running.  Here, in what was padding: the
	 * struct keeps its size and offsets.  Put after id, it moved every
	 * later word by 8 bytes, and at the end it grew the struct; either
	 * way bench_vcpus -b tdx spent 43-48 ns of CPU per read with one vCPU
	 * instead of 38-40, and 80-101 instead of 52-57 with eight, in runs
	 * alternating with the parent.  Code placement, most likely: the
	 * same swings came later from changes that touched no access path,
	 * until the library was built aligned (CODE_ALIGN_FLAGS, Makefile).
	 */
	uint32_t index;
	struct ccvm_run run;

	/* guest execution context (lib/vcpu.c) */
	struct ccvm_guest *guest;

	void *priv;
};

/* Free a vCPU at VM teardown: vcpu_free op, roots, memory. */
void ccvm_vcpu_destroy(struct ccvm_vcpu *v);

/* The root @v maps memory of the kind through (private: the mirror, if any). */
static inline struct ccvm_root *ccvm_vcpu_root(const struct ccvm_vcpu *v, bool is_private)
{
	return is_private && v->vm->caps.has_mirror_root ? v->mirror_root : v->root;
}

/*
 * One thread per vCPU runs the guest function, handed off with the thread
 * in ccvm_vcpu_run(): exactly one of the two runs at a time (guest_turn,
 * under lock), so everything one side wrote is visible to the other after
 * the switch.  The thread is created by the first run after set_guest and
 * joined once the function ended or, at close, after it was unwound: a
 * longjmp back to @start from the exit it was blocked in, so guest code
 * never resumes and nothing of the VMM's is touched.  Lock order: the run
 * caller holds vcpu->mutex while the guest thread runs; the guest thread
 * takes no lock across a switch.
 */
enum ccvm_guest_end {
	CCVM_GUEST_END_RETURN,	/* the function returned: CCVM_EXIT_DONE */
	CCVM_GUEST_END_ABORT,	/* ccvm_guest_abort(): run->abort filled */
	CCVM_GUEST_END_UNWIND,	/* vCPU closed while blocked in an exit */
};

struct ccvm_guest {
	struct ccvm_vcpu *vcpu;
	ccvm_guest_fn fn;
	void *arg;
	struct ccvm_thread *thread;		/* "vcpuN" (ccvm_thread_create) */
	bool thread_live;			/* created, not joined; vcpu->mutex */
	_Atomic bool in_run;			/* a thread is in ccvm_vcpu_run() */
	struct ccvm_mutex lock;			/* the handoff */
	struct ccvm_cond guest_cond;		/* guest_turn became true */
	struct ccvm_cond vmm_cond;		/* guest_turn became false */
	bool guest_turn;			/* under lock */
	int state;				/* enum ccvm_guest_state, under lock */
	bool unwind;				/* under lock: close wants it gone */
	int run_ret;				/* what run returns, under lock */
	int end;				/* enum ccvm_guest_end, guest thread */
	jmp_buf start;				/* the guest thread's start */
	/* run->abort points here: guest strings may not outlive the abort */
	char abort_file[256];
	char abort_msg[256];
};

/* The guest context of the calling thread, NULL outside guest code. */
struct ccvm_guest *ccvm_guest_current(void);
/* The vCPU the calling thread runs the guest of, -1 on a VMM thread: the
 * trace lane of what it does. */
int32_t ccvm_trace_vcpu_id(void);
/*
 * Make the vCPU be in guest mode (vcpu_enter; waits while entry is
 * blocked, retries a busy entry).  Failures become internal-error exits
 * and are retried when the VMM runs the vCPU again, so it always returns
 * in guest mode.  Context: guest thread, no lock held.
 */
void ccvm_guest_enter(struct ccvm_guest *g);
/*
 * Guest mode of a vCPU.  IN runs from a successful vcpu_enter to the exit;
 * EXITING covers the vcpu_exit op, whoever calls it (the vCPU leaving, or a
 * kick), so a kick can wait for an exit already under way instead of
 * skipping that vCPU.  Only the vCPU itself moves OUT -> IN.
 */
#define CCVM_VCPU_OUT		0
#define CCVM_VCPU_IN		1
#define CCVM_VCPU_EXITING	2

/*
 * Take @v out of guest mode (IN -> EXITING -> vcpu_exit -> OUT), or wait
 * for an exit another thread is doing.  Return: true if this call exited it.
 */
bool ccvm_vcpu_exit_guest(struct ccvm_vcpu *v);

static inline bool ccvm_vcpu_in_guest(struct ccvm_vcpu *v)
{
	return atomic_load_explicit(&v->in_guest, memory_order_acquire) == CCVM_VCPU_IN;
}

/* Leave guest mode (in_guest false + vcpu_exit), for a VM exit of any kind. */
void ccvm_vcpu_leave_guest(struct ccvm_vcpu *v);

/*
 * Do guest accesses of @vm go without mmu_lock (free-running), or under
 * mmu_lock read (serial: the explorer's schedules see the lock)?
 */
static inline bool ccvm_vm_lockless_access(const struct ccvm_vm *vm)
{
	return !ccvm_sync_serial(ccvm_sched_of(vm->p));
}

/* Wait until the guest access @v has in flight, if any, is over. */
void ccvm_vcpu_access_wait(struct ccvm_vcpu *v);

/*
 * The TLB shootdown's wait: every guest access of @vm in flight when this
 * is called (one that may still use a translation the caller has just
 * removed) is over when it returns.  Only then may what those
 * translations led to (a page, a page table, a host mapping) be freed.
 * Free-running only; serial accesses hold mmu_lock read, which the
 * callers exclude.
 */
void ccvm_vm_sync_guest_accesses(struct ccvm_vm *vm);

/*
 * Mark @v running (its run hands it to the guest) or not (the run got it
 * back: the guest is out of guest mode with no access in flight).  A
 * sequentially consistent read-modify-write: for_each_running_vcpu() in
 * lib/vm.c says why.
 */
void ccvm_vm_vcpu_running(struct ccvm_vcpu *v, bool running);
/*
 * Exit to the VMM with vcpu->run filled by the caller: leave guest mode,
 * count and trace the exit, switch to the run caller (which returns
 * @run_ret), and re-enter guest mode once the VMM runs the vCPU again.
 * Does not return if the vCPU is closed meanwhile.  Context: guest thread,
 * no lock held.
 */
void ccvm_guest_exit(struct ccvm_guest *g, int run_ret);
/* Exit with CCVM_EXIT_INTERNAL_ERROR {@error}; run returns -EIO for -EIO
 * and a retry bound hit (-EBUSY), else @error. */
void ccvm_guest_exit_error(struct ccvm_guest *g, int error);

/* ccvm_invariant_fail() and ccvm_invariant_count() are in <ccvm/backend.h>. */

/*
 * @bytes of populated memory for a VM's page-table chunk, from the
 * platform's mapping cache when one of that size is kept there: its
 * contents are then what the last user left (not zeroed).  Unmap gives it
 * back to the cache (or to the kernel).  Context: any thread; no lock.
 * Return: map: the chunk or NULL; unmap: nothing.
 */
void *ccvm_chunk_map(size_t bytes);
void ccvm_chunk_unmap(void *chunk, size_t bytes);

/*
 * Check every VM on @p's list and the platform itself; the first broken
 * invariant goes to @msg.  The deterministic scheduler calls it at each
 * quiescent point of a run (no controlled thread holds a lock of the sync
 * layer nor is inside a backend op) and at the end.  Return: 0 or 1.
 */
int ccvm_platform_check_all(struct ccvm_platform *p, char *msg, size_t msg_sz);

/* The calling thread's cached block of counters @id, NULL when not in its cache. */
static inline struct ccvm_counter_block *ccvm_counters_cached(uint64_t id)
{
	struct ccvm_counter_cache *cache = ccvm_counter_cache;
	unsigned int i;

	for (i = 0; i < CCVM_COUNTER_CACHE; i++)
		if (cache[i].id == id)
			return cache[i].b;
	return NULL;
}

/* ccvm_account() past its inline common case: blocks not cached yet, an IPI, a trace. */
void ccvm_account_slow(struct ccvm_platform *p, struct ccvm_vm *vm, enum ccvm_event ev,
		       uint64_t n);

/*
 * ccvm_account(), inline for the library's per-page paths (a fault, a
 * page's allocation, clearing, zap, a kick): the common case is two plain
 * adds, with no call; anything else goes through ccvm_account_slow().
 * ccvm_account() itself is this, out of line.
 */
static inline void ccvm_account_fast(struct ccvm_platform *p, struct ccvm_vm *vm,
				     enum ccvm_event ev, uint64_t n)
{
	struct ccvm_counter_block *bp, *bv = NULL;

	if ((unsigned int)ev >= CCVM_EV_NR)
		return;
	if (ev != CCVM_EV_IPI && !ccvm_tracing(p)) {
		bp = ccvm_counters_cached(p->stats.id);
		if (vm)
			bv = ccvm_counters_cached(vm->stats.id);
		if (ccvm_likely(bp && (bv || !vm))) {
			ccvm_counter_add(&bp->ev[ev], n, true);
			if (bv)
				ccvm_counter_add(&bv->ev[ev], n, true);
			return;
		}
	}
	ccvm_account_slow(p, vm, ev, n);
}

#endif /* CCVM_LIB_INTERNAL_H */
