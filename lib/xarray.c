/* SPDX-License-Identifier: MIT */
/*
 * Range-capable radix store (see xarray.h for the model and contracts).
 *
 * Entries (the root and every slot) are one word.  A value v is kept as
 * v << 1, so bit 0 clear and "absent" is all-zero.  A child node is kept as
 * its address (16-byte aligned) with bit 0 set and its size class in bits
 * 1-3, so a lookup knows a node's form from the slot that points to it.
 *
 * Two node forms:
 *  - run node (classes 0-6): `starts` has bit i set where a run of equal
 *    entries begins (bit 0 always), `ent[]` one entry per run, with room for
 *    xa_class_runs[class] runs.  A child node is always a run of its own.
 *  - plain node (class XA_PLAIN): 64 slots, no header, 8 bytes per index
 *    for a dense page cache.
 * A node takes the smallest class its runs fit, so the memory of a node is
 * about 8 bytes per run edge inside it.
 *
 * A slot of a node at height h covers 64^(h - 1) indices, the root covers
 * 64^height.  Height 11 covers 2^66, so at that height only the first 16
 * slots of the root map real indices; the others are never consulted.
 *
 * Invariant kept by every store: no node's subtree holds one value
 * everywhere (such a node is replaced by that value in its parent), and the
 * root is never a node whose only non-absent slot is slot 0.  So memory
 * follows the number of run edges, an all-absent store is root 0, and a
 * walk that descends into a node always finds a change of value there.
 *
 * A store walks the tree once.  It plans the change of every node on the
 * (at most two) edge paths bottom-up, taking every node it needs before it
 * changes anything, so a failed allocation leaves the tree as it was; then
 * it applies the plans.  Nodes come from a per-xa list of free nodes (the
 * reserve, and a small cache refilled by the nodes stores free) before
 * malloc.  ccvm_xa_reserve() runs the same planning for a value that
 * matches nothing, which needs at each node at least as many runs as any
 * real value, so the nodes it sets aside cover the store that follows.
 *
 * Recursion is bounded by the height (at most 11 levels), never by the
 * number of entries.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "xarray.h"

#define XA_SHIFT	6
#define XA_SLOTS	64u
#define XA_MASK		(XA_SLOTS - 1)
#define XA_MAX_HEIGHT	11	/* smallest h with 6 * h >= 64 */
#define XA_TOP_SLOTS	16	/* slots of a height-11 node below 2^64 */

#define XA_NR_CLASSES	CCVM_XA_NR_CLASSES
#define XA_PLAIN	(XA_NR_CLASSES - 1)

/* Runs each class holds; even counts make 16n + 8 bytes, malloc's sizes. */
static const unsigned char xa_class_runs[XA_NR_CLASSES] = { 2, 4, 6, 8, 12, 16, 24, 64 };

/* The plans of one store: two edge paths, one node per height each. */
#define XA_MAX_PLANS	(2 * XA_MAX_HEIGHT)
/* Nodes one store can take: growth, plus a required and a wished one per plan. */
#define XA_MAX_TAKEN	(XA_MAX_HEIGHT + 2 * XA_MAX_PLANS)

_Static_assert(sizeof(uintptr_t) == sizeof(uint64_t),
	       "entries pack a 63-bit value into one pointer-sized word");

struct xa_run_node {
	uint64_t starts;
	uintptr_t ent[];
};

struct xa_plain_node {
	uintptr_t slots[XA_SLOTS];
};

/* The free lists link nodes through their first word. */
struct ccvm_xa_node {
	struct ccvm_xa_node *next;
};

/*
 * A value that equals no entry: sizing a reserve plans with it.  It looks
 * like a node (bit 0) so that nothing collapses into it, but is never
 * written or followed.
 */
#define XA_ANY_ENTRY	((uintptr_t)1)

static inline bool entry_is_node(uintptr_t entry)
{
	return entry & 1;
}

static inline unsigned int entry_class(uintptr_t entry)
{
	return (entry >> 1) & 7;
}

static inline void *entry_to_node(uintptr_t entry)
{
	return (void *)(entry & ~(uintptr_t)15);
}

static inline struct xa_run_node *entry_to_run(uintptr_t entry)
{
	return entry_to_node(entry);
}

static inline struct xa_plain_node *entry_to_plain(uintptr_t entry)
{
	return entry_to_node(entry);
}

static inline uintptr_t node_to_entry(void *node, unsigned int cls)
{
	return (uintptr_t)node | ((uintptr_t)cls << 1) | 1;
}

static inline uint64_t entry_to_value(uintptr_t entry)
{
	return entry >> 1;
}

static inline uintptr_t value_to_entry(uint64_t value)
{
	return (uintptr_t)(value << 1);
}

static inline size_t class_bytes(unsigned int cls)
{
	return cls == XA_PLAIN ? sizeof(struct xa_plain_node) :
	       sizeof(struct xa_run_node) + xa_class_runs[cls] * sizeof(uintptr_t);
}

/* The smallest class holding @runs runs. */
static inline unsigned int class_for(unsigned int runs)
{
	unsigned int cls = 0;

	while (xa_class_runs[cls] < runs)
		cls++;
	return cls;
}

#if !defined(__POPCNT__) && defined(__x86_64__) && defined(__GNUC__)
#define XA_POPCNT_ASM	1
/* Set once at load time, read-only after: the CPU has the instruction. */
static bool xa_have_popcnt;

__attribute__((constructor)) static void xa_detect_popcnt(void)
{
	__builtin_cpu_init();
	xa_have_popcnt = __builtin_cpu_supports("popcnt");
}
#endif

/*
 * Every lookup ranks a slot with a population count.  A default x86-64
 * build (no -mpopcnt) would make the builtin a library call; the
 * instruction is on every x86-64 CPU of the last fifteen years, so use it
 * when the CPU says so and the shift-and-add sum otherwise.
 */
static inline unsigned int popcount64(uint64_t x)
{
#if defined(__POPCNT__)
	return (unsigned int)__builtin_popcountll(x);
#else
#if defined(XA_POPCNT_ASM)
	if (__builtin_expect(xa_have_popcnt, 1)) {
		uint64_t n;

		__asm__("popcnt %1, %0" : "=r"(n) : "rm"(x) : "cc");
		return (unsigned int)n;
	}
#endif
	x = x - ((x >> 1) & 0x5555555555555555ull);
	x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
	return (unsigned int)((x * 0x0101010101010101ull) >> 56);
#endif
}

/* Bits 0..k, bits 0..k-1, bits > k. */
static inline uint64_t bits_upto(unsigned int k)
{
	return ~0ull >> (63 - k);
}

static inline uint64_t bits_below(unsigned int k)
{
	return k ? ~0ull >> (64 - k) : 0;
}

static inline uint64_t bits_above(unsigned int k)
{
	return k < 63 ? ~0ull << (k + 1) : 0;
}

static inline uint64_t bit(unsigned int k)
{
	return 1ull << k;
}

/* Run number (from 0) holding slot @off of a run node. */
static inline unsigned int run_of(uint64_t starts, unsigned int off)
{
	return popcount64(starts & bits_upto(off)) - 1;
}

/* The entry in slot @off of node entry @node. */
static inline uintptr_t node_slot(uintptr_t node, unsigned int off)
{
	const struct xa_run_node *rn;

	if (entry_class(node) == XA_PLAIN)
		return entry_to_plain(node)->slots[off];
	rn = entry_to_run(node);
	return rn->ent[run_of(rn->starts, off)];
}

/* Last index covered by a slot of height @height starting at @base. */
static inline uint64_t span_last(uint64_t base, unsigned int height)
{
	if (height >= XA_MAX_HEIGHT)
		return UINT64_MAX;
	return base + ((1ull << (height * XA_SHIFT)) - 1);
}

/* Smallest height whose root covers @index. */
static unsigned int height_for(uint64_t index)
{
	unsigned int height = 0;

	while (height < XA_MAX_HEIGHT && index > span_last(0, height))
		height++;
	return height;
}

static inline unsigned int used_slots(unsigned int height)
{
	return height == XA_MAX_HEIGHT ? XA_TOP_SLOTS : XA_SLOTS;
}

static inline uint64_t used_mask(unsigned int height)
{
	return height == XA_MAX_HEIGHT ? bits_below(XA_TOP_SLOTS) : ~0ull;
}

static inline uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* ------------------------------------------------------------------ */
/* Node allocation, the free lists, and the test hook                  */

/*
 * Allocations still to let through, then to fail; shared by every xa
 * (tests run one per process).
 */
static atomic_int xa_passing_allocs;
static atomic_int xa_failing_allocs;

void ccvm_xa_test_fail_alloc_from(int skip, int n)
{
	atomic_store(&xa_failing_allocs, 0);
	atomic_store(&xa_passing_allocs, skip < 0 ? 0 : skip);
	atomic_store(&xa_failing_allocs, n < 0 ? 0 : n);
}

void ccvm_xa_test_fail_alloc(int n)
{
	ccvm_xa_test_fail_alloc_from(0, n);
}

/* Should this allocation fail (test hook)? */
static bool alloc_fails(void)
{
	int left = atomic_load_explicit(&xa_failing_allocs, memory_order_relaxed);

	if (left <= 0)
		return false;
	left = atomic_load_explicit(&xa_passing_allocs, memory_order_relaxed);
	while (left > 0) {
		if (atomic_compare_exchange_weak(&xa_passing_allocs, &left, left - 1))
			return false;
	}
	left = atomic_load_explicit(&xa_failing_allocs, memory_order_relaxed);
	while (left > 0) {
		if (atomic_compare_exchange_weak(&xa_failing_allocs, &left, left - 1))
			return true;
	}
	return false;
}

/*
 * Nodes this thread took from malloc (ccvm_xa_test_nr_allocs()): per
 * thread, so vCPUs allocating nodes share no counter's cache line.
 */
static _Thread_local unsigned long xa_nr_allocs;

unsigned long ccvm_xa_test_nr_allocs(void)
{
	return xa_nr_allocs;
}

static void *node_alloc(unsigned int cls)
{
	void *node;

	if (alloc_fails())
		return NULL;
	/* The class lives in the low bits of the entry: 16-byte alignment. */
	if (posix_memalign(&node, 16, class_bytes(cls)))
		return NULL;
	xa_nr_allocs++;
	return node;
}

static void spare_push(struct ccvm_xa *xa, void *node, unsigned int cls)
{
	struct ccvm_xa_node *n = node;

	n->next = xa->spare[cls];
	xa->spare[cls] = n;
	if (++xa->nr_spare_class[cls] == CCVM_XA_CACHE_PER_CLASS + 1)
		xa->spare_over |= 1u << cls;
	xa->nr_spare++;
	xa->spare_bytes += class_bytes(cls);
}

static void *spare_pop(struct ccvm_xa *xa, unsigned int cls)
{
	struct ccvm_xa_node *n = xa->spare[cls];

	xa->spare[cls] = n->next;
	if (xa->nr_spare_class[cls]-- == CCVM_XA_CACHE_PER_CLASS + 1)
		xa->spare_over &= ~(1u << cls);
	xa->nr_spare--;
	xa->spare_bytes -= class_bytes(cls);
	return n;
}

/* Smallest class in [lo, hi) with a free node, or XA_NR_CLASSES. */
static unsigned int spare_fit(const struct ccvm_xa *xa, unsigned int lo, unsigned int hi)
{
	for (; lo < hi; lo++) {
		if (xa->nr_spare_class[lo])
			return lo;
	}
	return XA_NR_CLASSES;
}

/*
 * Keep at most @keep free nodes of each class.  Every store ends with a
 * trim to the cache's size, so that case is one test of spare_over (the
 * page cache stores under pages_lock, and the walk over the classes was a
 * few per cent of a fault).
 */
static void spare_trim(struct ccvm_xa *xa, unsigned int keep)
{
	unsigned int cls;

	if (xa->nr_spare <= keep || (keep >= CCVM_XA_CACHE_PER_CLASS && !xa->spare_over))
		return;
	for (cls = 0; cls < XA_NR_CLASSES; cls++) {
		while (xa->nr_spare_class[cls] > keep)
			free(spare_pop(xa, cls));
	}
}

/* A node leaves the tree: into the cache while it has room, else freed. */
static void node_release(struct ccvm_xa *xa, uintptr_t entry)
{
	unsigned int cls = entry_class(entry);

	xa->nr_nodes--;
	xa->bytes -= class_bytes(cls);
	if (xa->nr_spare_class[cls] < CCVM_XA_CACHE_PER_CLASS)
		spare_push(xa, entry_to_node(entry), cls);
	else
		free(entry_to_node(entry));
}

/* Release every node below and including @entry, without recursion. */
static void free_subtree(struct ccvm_xa *xa, uintptr_t entry)
{
	uintptr_t path[XA_MAX_HEIGHT + 1];
	unsigned int next[XA_MAX_HEIGHT + 1];
	unsigned int depth;

	if (!entry_is_node(entry))
		return;
	path[0] = entry;
	next[0] = 0;
	depth = 1;
	while (depth) {
		uintptr_t node = path[depth - 1];
		unsigned int i = next[depth - 1]++;
		uintptr_t child;

		if (entry_class(node) == XA_PLAIN) {
			if (i == XA_SLOTS) {
				node_release(xa, node);
				depth--;
				continue;
			}
			child = entry_to_plain(node)->slots[i];
		} else {
			const struct xa_run_node *rn = entry_to_run(node);

			if (i == popcount64(rn->starts)) {
				node_release(xa, node);
				depth--;
				continue;
			}
			child = rn->ent[i];
		}
		if (entry_is_node(child)) {
			path[depth] = child;
			next[depth] = 0;
			depth++;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Storing: planning                                                   */

/*
 * The change of one node on an edge path: slots [lo, hi] of @old (a node,
 * or a value being split into a new node) become e[0], then the stored
 * value, then e[1] (e[1] == e[0] when lo == hi).  kid[] are the plans of
 * the edge slots' subtrees (their results are e[] once applied), -1 if
 * the slot is covered whole or unchanged.
 */
struct xa_plan {
	uintptr_t old;
	uintptr_t result;	/* the slot's new entry; provisional until applied */
	uintptr_t e[2];
	int kid[2];
	uint64_t starts;	/* run starts after the store (unless keep_plain) */
	void *node;		/* node taken for the result; NULL: @old in place */
	unsigned char lo, hi;
	unsigned char height;	/* of the slot holding @old */
	unsigned char cls;	/* class of the result node */
	bool collapse;		/* the node becomes the value in @result */
	bool keep_plain;	/* a plain node changed in place, runs not counted */
	bool wish;		/* fits a smaller class: move if a node is at hand */
};

struct xa_store {
	struct ccvm_xa *xa;
	uintptr_t entry;	/* the stored entry, XA_ANY_ENTRY when sizing */
	bool sizing;		/* count the nodes needed, change nothing */
	int err;
	uintptr_t next_fake;	/* stand-in entries: nodes not taken (sizing, wishes) */
	unsigned int nr_plans;
	unsigned int nr_wishes;
	unsigned int nr_taken;
	unsigned int need[XA_NR_CLASSES];	/* sizing: nodes needed per class */
	struct xa_plan plans[XA_MAX_PLANS];
	struct {
		void *node;
		unsigned char cls;
		bool fresh;	/* from malloc, not from the free list */
	} taken[XA_MAX_TAKEN];
};

/* Slot @off of @old, a node or a value that fills all its slots. */
static inline uintptr_t old_slot(uintptr_t old, unsigned int off)
{
	return entry_is_node(old) ? node_slot(old, off) : old;
}

/* Slot @k after the plan is applied. */
static inline uintptr_t new_slot(const struct xa_store *st, const struct xa_plan *p,
				 unsigned int k)
{
	if (k < p->lo || k > p->hi)
		return old_slot(p->old, k);
	if (k == p->lo)
		return p->e[0];
	if (k == p->hi)
		return p->e[1];
	return st->entry;
}

/*
 * Take a node of class @cls for this store: a free one of that class, else
 * a new one, else (out of memory) the smallest larger free one, as a
 * reserve sized for any value may hold.  A store under way gives them all
 * back if a later one fails.
 */
static void *take_node(struct xa_store *st, unsigned int cls, unsigned int *got)
{
	struct ccvm_xa *xa = st->xa;
	unsigned int fit = cls;
	bool fresh = false;
	void *node = NULL;

	if (!xa->nr_spare_class[cls]) {
		node = node_alloc(cls);
		fresh = node != NULL;
		if (!node) {
			fit = spare_fit(xa, cls + 1, XA_NR_CLASSES);
			if (fit == XA_NR_CLASSES)
				return NULL;
		}
	}
	if (!node)
		node = spare_pop(xa, fit);
	xa->nr_nodes++;
	xa->bytes += class_bytes(fit);
	st->taken[st->nr_taken].node = node;
	st->taken[st->nr_taken].cls = (unsigned char)fit;
	st->taken[st->nr_taken].fresh = fresh;
	st->nr_taken++;
	*got = fit;
	return node;
}

/* A failed store: every node it took goes back where it came from. */
static void give_back(struct xa_store *st)
{
	struct ccvm_xa *xa = st->xa;

	while (st->nr_taken) {
		unsigned int i = --st->nr_taken;
		unsigned int cls = st->taken[i].cls;

		xa->nr_nodes--;
		xa->bytes -= class_bytes(cls);
		if (st->taken[i].fresh)
			free(st->taken[i].node);
		else
			spare_push(xa, st->taken[i].node, cls);
	}
}

/*
 * A node of @cls the plan cannot do without.  Sizing only counts it and
 * hands out a stand-in entry that differs from every real one.
 */
static uintptr_t need_node(struct xa_store *st, struct xa_plan *p, unsigned int cls)
{
	unsigned int got;

	if (st->sizing) {
		st->need[cls]++;
		p->node = NULL;
		p->cls = (unsigned char)cls;
		st->next_fake += 16;
		return st->next_fake | 1;
	}
	p->node = take_node(st, cls, &got);
	if (!p->node) {
		st->err = -ENOMEM;
		return p->old;
	}
	p->cls = (unsigned char)got;
	return node_to_entry(p->node, got);
}

/*
 * Run starts of a run node (or of a value, which is one run) after the
 * plan: those outside [lo, hi + 1] stay, the others follow from the new
 * entries and their neighbours.
 */
static uint64_t planned_starts(const struct xa_store *st, const struct xa_plan *p,
			       uint64_t starts)
{
	unsigned int lo = p->lo, hi = p->hi;
	uint64_t ns = starts & bits_below(lo);

	if (hi < 63)
		ns |= starts & bits_above(hi + 1);
	if (lo == 0 || old_slot(p->old, lo - 1) != p->e[0])
		ns |= bit(lo);
	if (hi == lo + 1 && p->e[0] != p->e[1])
		ns |= bit(hi);
	if (hi > lo + 1) {
		if (p->e[0] != st->entry)
			ns |= bit(lo + 1);
		if (st->entry != p->e[1])
			ns |= bit(hi);
	}
	if (hi < 63 && old_slot(p->old, hi + 1) != p->e[1])
		ns |= bit(hi + 1);
	return ns;
}

/* Run starts of the whole plan's result, slot by slot (plain nodes). */
static uint64_t counted_starts(const struct xa_store *st, const struct xa_plan *p)
{
	uintptr_t prev = new_slot(st, p, 0), cur;
	uint64_t ns = 1;
	unsigned int k;

	for (k = 1; k < XA_SLOTS; k++) {
		cur = new_slot(st, p, k);
		if (cur != prev)
			ns |= bit(k);
		prev = cur;
	}
	return ns;
}

/* Run edges the plan adds to a plain node (negative: removes). */
static int plain_edge_delta(const struct xa_store *st, const struct xa_plan *p)
{
	const uintptr_t *slots = entry_to_plain(p->old)->slots;
	unsigned int k, first = p->lo ? p->lo : 1;
	/* Edges beyond the used slots (height 11) do not count. */
	unsigned int last = min_u64(p->hi + 1u, used_slots(p->height) - 1u);
	int delta = 0;

	for (k = first; k <= last; k++) {
		delta -= slots[k - 1] != slots[k];
		delta += new_slot(st, p, k - 1) != new_slot(st, p, k);
	}
	return delta;
}

/* Does a plain node as it is hold more than @limit runs?  Stops once it knows. */
static bool plain_runs_above(const struct xa_plain_node *pn, unsigned int limit)
{
	unsigned int k, runs = 1;

	for (k = 1; k < XA_SLOTS; k++) {
		runs += pn->slots[k] != pn->slots[k - 1];
		if (runs > limit)
			return true;
	}
	return false;
}

/*
 * Plan the node in a slot of @height holding @old (a node, or a value to
 * split) once the plans below are made: its slots [lo, hi] become e[0],
 * the stored entry, e[1]; @was is its slot lo as it is.  Returns the
 * slot's new entry; *@kid is the new plan, or -1 if nothing changes here.
 */
static uintptr_t plan_level(struct xa_store *st, uintptr_t old, unsigned int height,
			    unsigned int lo, unsigned int hi, uintptr_t was,
			    const uintptr_t e[2], const int kids[2], int *kid)
{
	unsigned int runs, cls, want;
	struct xa_plan *p;
	uint64_t ns;

	*kid = -1;
	/*
	 * One slot whose entry stays (its node, if planned, changes in place):
	 * nothing changes here.  A node that moves, collapses or may move has
	 * a new or stand-in entry.
	 */
	if (lo == hi && e[0] == was)
		return old;

	p = &st->plans[st->nr_plans];
	*kid = (int)st->nr_plans++;
	p->old = old;
	p->e[0] = e[0];
	p->e[1] = e[1];
	p->kid[0] = kids[0];
	p->kid[1] = kids[1];
	p->node = NULL;
	p->lo = (unsigned char)lo;
	p->hi = (unsigned char)hi;
	p->height = (unsigned char)height;
	p->collapse = false;
	p->keep_plain = false;
	p->wish = false;

	if (entry_is_node(old) && entry_class(old) == XA_PLAIN) {
		int delta = plain_edge_delta(st, p);

		/*
		 * Without a lost edge it can neither collapse nor fit a run node
		 * (it did not before); only then are its runs counted.  The top
		 * node's unused slots would skew the count: count them slot by
		 * slot there.
		 */
		if (delta >= 0 || (height < XA_MAX_HEIGHT &&
				   plain_runs_above(entry_to_plain(old),
						    xa_class_runs[XA_PLAIN - 1] - delta))) {
			p->keep_plain = true;
			p->cls = XA_PLAIN;
			p->result = old;
			return old;
		}
		ns = counted_starts(st, p);
	} else {
		ns = planned_starts(st, p, entry_is_node(old) ? entry_to_run(old)->starts : 1);
	}
	p->starts = ns;

	if (popcount64(ns & used_mask(height)) == 1 && !entry_is_node(new_slot(st, p, 0))) {
		p->collapse = true;
		p->result = new_slot(st, p, 0);
		return p->result;
	}
	runs = popcount64(ns);
	want = class_for(runs);
	if (!entry_is_node(old))
		return p->result = need_node(st, p, want);
	cls = entry_class(old);
	if (runs > xa_class_runs[cls])
		return p->result = need_node(st, p, want);
	p->cls = (unsigned char)cls;
	p->result = old;
	if (want < cls && !st->sizing) {
		/* The entry will change if a smaller node is found: a stand-in for now. */
		p->wish = true;
		st->nr_wishes++;
		st->next_fake += 16;
		p->result = st->next_fake | 1;
	}
	return p->result;
}

static uintptr_t plan_slot(struct xa_store *st, uintptr_t old, unsigned int height,
			   uint64_t base, uint64_t first, uint64_t last, int *kid);

/*
 * Plan setting [first, last] (inside the slot, not covering it whole) in a
 * slot of @height at @base holding @old: the edge slots' subtrees first.
 */
static uintptr_t plan_node(struct xa_store *st, uintptr_t old, unsigned int height,
			   uint64_t base, uint64_t first, uint64_t last, int *kid)
{
	unsigned int shift = (height - 1) * XA_SHIFT;
	unsigned int lo = (unsigned int)((first - base) >> shift);
	unsigned int hi = (unsigned int)((last - base) >> shift);
	uintptr_t was = old_slot(old, lo), e[2];
	int kids[2] = { -1, -1 };
	uint64_t child_base;

	child_base = base + ((uint64_t)lo << shift);
	e[0] = plan_slot(st, was, height - 1, child_base, first,
			 min_u64(last, span_last(child_base, height - 1)), &kids[0]);
	e[1] = e[0];
	if (hi != lo) {
		child_base = base + ((uint64_t)hi << shift);
		e[1] = plan_slot(st, old_slot(old, hi), height - 1, child_base,
				 max_u64(first, child_base), last, &kids[1]);
	}
	*kid = -1;
	if (st->err)
		return old;
	return plan_level(st, old, height, lo, hi, was, e, kids, kid);
}

/*
 * Plan setting [first, last] (clipped to the slot, not empty) in a slot
 * of @height at @base holding @old.  Returns the slot's new entry; *@kid
 * is the plan of the slot's node, or -1 if there is none.
 */
static uintptr_t plan_slot(struct xa_store *st, uintptr_t old, unsigned int height,
			   uint64_t base, uint64_t first, uint64_t last, int *kid)
{
	*kid = -1;
	if (first == base && last == span_last(base, height))
		return st->entry;
	if (!entry_is_node(old) && old == st->entry)
		return old;
	return plan_node(st, old, height, base, first, last, kid);
}

/*
 * plan_slot() for one index, without recursion: down to the index once,
 * recording each level's entry, then the plans bottom-up, stopping at the
 * first level left unchanged.
 */
static uintptr_t plan_index(struct xa_store *st, uintptr_t root, unsigned int height,
			    uint64_t index, int *kid)
{
	uintptr_t olds[XA_MAX_HEIGHT + 1], e[2];
	int kids[2] = { -1, -1 };
	unsigned int h, off;

	*kid = -1;
	olds[height] = root;
	for (h = height; h > 0; h--) {
		if (!entry_is_node(olds[h]) && olds[h] == st->entry)
			return root;
		olds[h - 1] = old_slot(olds[h], (index >> ((h - 1) * XA_SHIFT)) & XA_MASK);
	}
	/* The index's own slot (height 0) is covered whole. */
	e[0] = e[1] = st->entry;
	for (h = 1; h <= height; h++) {
		int made;

		off = (index >> ((h - 1) * XA_SHIFT)) & XA_MASK;
		e[0] = e[1] = plan_level(st, olds[h], h, off, off, olds[h - 1], e, kids, &made);
		if (st->err || made < 0)
			return root;
		kids[0] = made;
	}
	*kid = kids[0];
	return e[0];
}

/* After planning: move the nodes that fit a smaller class, when one is at hand. */
static void grant_wishes(struct xa_store *st)
{
	unsigned int i;

	for (i = 0; i < st->nr_plans; i++) {
		struct xa_plan *p = &st->plans[i];
		unsigned int want, fit;

		if (!p->wish)
			continue;
		want = class_for(popcount64(p->starts));
		p->result = p->old;
		fit = spare_fit(st->xa, want, p->cls);
		if (fit < p->cls) {
			p->node = spare_pop(st->xa, fit);
		} else {
			fit = want;
			p->node = node_alloc(want);
			if (!p->node)
				continue;
		}
		st->xa->nr_nodes++;
		st->xa->bytes += class_bytes(fit);
		p->cls = (unsigned char)fit;
		p->result = node_to_entry(p->node, fit);
	}
}

/* ------------------------------------------------------------------ */
/* Storing: applying                                                   */

/* Release the subtrees the plan overwrites (its kids release their own). */
static void release_overwritten(struct xa_store *st, const struct xa_plan *p)
{
	uintptr_t old = p->old;
	unsigned int j, k;

	if (!entry_is_node(old))
		return;
	for (j = 0; j < 2; j++) {
		uintptr_t was;

		if (j == 1 && p->hi == p->lo)
			break;
		was = node_slot(old, j ? p->hi : p->lo);
		if (p->kid[j] < 0 && entry_is_node(was) && was != p->e[j])
			free_subtree(st->xa, was);
	}
	if (p->hi <= p->lo + 1)
		return;
	if (entry_class(old) == XA_PLAIN) {
		const uintptr_t *slots = entry_to_plain(old)->slots;

		for (k = p->lo + 1u; k < p->hi; k++)
			free_subtree(st->xa, slots[k]);
	} else {
		const struct xa_run_node *rn = entry_to_run(old);
		uint64_t mid = rn->starts & bits_above(p->lo) & bits_below(p->hi);

		/* A child node is a run of its own: its slot is a run start. */
		while (mid) {
			k = (unsigned int)__builtin_ctzll(mid);
			mid &= mid - 1;
			free_subtree(st->xa, rn->ent[run_of(rn->starts, k)]);
		}
	}
}

/*
 * Write the runs of a run node or value @old (starts @starts, entries
 * @ent) with the plan applied into @dst, which may be @old itself: the runs
 * before lo, those the plan writes, then those after hi.
 */
static void splice_runs(const struct xa_store *st, const struct xa_plan *p,
			struct xa_run_node *dst, uint64_t starts, const uintptr_t *ent)
{
	unsigned int lo = p->lo, hi = p->hi;
	uint64_t ns = p->starts;
	unsigned int head = popcount64(starts & bits_below(lo));
	uint64_t seg_bits = ns & bits_upto(hi) & ~bits_below(lo);
	unsigned int tail = popcount64(ns & bits_above(hi));
	unsigned int from = 0, n = 0, k;
	uintptr_t seg[3];

	if (tail)
		from = popcount64(starts & bits_upto(hi + 1)) - (unsigned int)((ns >> (hi + 1)) & 1);
	while (seg_bits) {
		k = (unsigned int)__builtin_ctzll(seg_bits);
		seg_bits &= seg_bits - 1;
		seg[n++] = k == lo ? p->e[0] : k == hi ? p->e[1] : st->entry;
	}
	/* A handful of words each: plain loops beat library calls. */
	if (dst->ent != ent) {
		for (k = 0; k < head; k++)
			dst->ent[k] = ent[k];
	}
	if (head + n > from) {
		for (k = tail; k-- > 0;)
			dst->ent[head + n + k] = ent[from + k];
	} else {
		for (k = 0; k < tail; k++)
			dst->ent[head + n + k] = ent[from + k];
	}
	for (k = 0; k < n; k++)
		dst->ent[head + k] = seg[k];
	dst->starts = ns;
}

static void apply_plan(struct xa_store *st, struct xa_plan *p)
{
	struct ccvm_xa *xa = st->xa;
	uintptr_t old = p->old;
	unsigned int k;

	if (p->kid[0] >= 0)
		p->e[0] = st->plans[p->kid[0]].result;
	if (p->kid[1] >= 0)
		p->e[1] = st->plans[p->kid[1]].result;
	else if (p->hi == p->lo)
		p->e[1] = p->e[0];
	release_overwritten(st, p);

	if (p->collapse) {
		if (entry_is_node(old))
			node_release(xa, old);
		return;
	}
	if (!p->node) {
		/* In place, same class. */
		if (entry_class(old) == XA_PLAIN) {
			uintptr_t *slots = entry_to_plain(old)->slots;

			for (k = p->lo; k <= p->hi; k++)
				slots[k] = new_slot(st, p, k);
		} else {
			struct xa_run_node *rn = entry_to_run(old);

			splice_runs(st, p, rn, rn->starts, rn->ent);
		}
		p->result = old;
		return;
	}

	if (p->cls == XA_PLAIN) {
		uintptr_t *slots = ((struct xa_plain_node *)p->node)->slots;

		if (entry_is_node(old) && entry_class(old) == XA_PLAIN) {
			memcpy(slots, entry_to_plain(old)->slots, sizeof(*slots) * XA_SLOTS);
		} else if (entry_is_node(old)) {
			const struct xa_run_node *from = entry_to_run(old);
			uint64_t bits = from->starts;
			unsigned int n = 0;

			/* Each run fills the slots up to the next run's start. */
			for (k = 0; k < XA_SLOTS; k++) {
				if (bits & bit(k) && k)
					n++;
				slots[k] = from->ent[n];
			}
		} else {
			for (k = 0; k < XA_SLOTS; k++)
				slots[k] = old;
		}
		for (k = p->lo; k <= p->hi; k++)
			slots[k] = new_slot(st, p, k);
	} else if (entry_is_node(old) && entry_class(old) == XA_PLAIN) {
		struct xa_run_node *rn = p->node;
		uint64_t bits = p->starts;
		unsigned int n = 0;

		while (bits) {
			k = (unsigned int)__builtin_ctzll(bits);
			bits &= bits - 1;
			rn->ent[n++] = new_slot(st, p, k);
		}
		rn->starts = p->starts;
	} else if (entry_is_node(old)) {
		const struct xa_run_node *from = entry_to_run(old);

		splice_runs(st, p, p->node, from->starts, from->ent);
	} else {
		splice_runs(st, p, p->node, 1, &old);
	}
	if (entry_is_node(old))
		node_release(xa, old);
	p->result = node_to_entry(p->node, p->cls);
}

/* Drop root nodes whose only non-absent slot is slot 0. */
static void shrink(struct ccvm_xa *xa)
{
	while (entry_is_node(xa->root)) {
		uintptr_t node = xa->root;
		unsigned int i, nr_used = used_slots(xa->height);

		if (entry_class(node) == XA_PLAIN) {
			const uintptr_t *slots = entry_to_plain(node)->slots;

			for (i = 1; i < nr_used; i++) {
				if (slots[i])
					return;
			}
		} else {
			const struct xa_run_node *rn = entry_to_run(node);

			/* Slot 0 a run of its own, then one absent run. */
			if ((rn->starts & used_mask(xa->height)) != 3 || rn->ent[1] != 0)
				return;
		}
		xa->root = node_slot(node, 0);
		xa->height--;
		node_release(xa, node);
	}
	if (xa->root == 0)
		xa->height = 0;
}

/* Make @node (class @cls) hold @entry in slot 0 and absent elsewhere. */
static uintptr_t init_lone_slot0(void *node, unsigned int cls, uintptr_t entry)
{
	if (cls == XA_PLAIN) {
		struct xa_plain_node *pn = node;

		memset(pn, 0, sizeof(*pn));
		pn->slots[0] = entry;
	} else {
		struct xa_run_node *rn = node;

		rn->starts = 3;
		rn->ent[0] = entry;
		rn->ent[1] = 0;
	}
	return node_to_entry(node, cls);
}

/*
 * The whole store, or (sizing) the count of nodes it needs for any value:
 * grow the root when [first, last] reaches beyond it, plan, take nodes,
 * apply.
 */
static int run_store(struct xa_store *st, uint64_t first, uint64_t last)
{
	struct ccvm_xa *xa = st->xa;
	/* Sizing grows the root with stand-ins: aligned like nodes, never linked. */
	struct {
		_Alignas(16) uint64_t words[4];
	} stand_in[XA_MAX_HEIGHT];
	uint64_t covered = span_last(0, xa->height);
	unsigned int height = xa->height, i;
	uintptr_t root = xa->root, result;
	int kid;

	if (last > covered) {
		if (st->entry == 0) {
			/* Beyond the root everything is absent already. */
			if (first > covered)
				return 0;
			last = covered;
		} else {
			height = height_for(last);
			if (first == 0 && last >= span_last(0, height)) {
				if (st->sizing)
					return 0;
				free_subtree(xa, xa->root);
				xa->root = st->entry;
				xa->height = height;
				goto out;
			}
			/* An absent root is absent at any height; else new nodes above it. */
			for (i = xa->height; root && i < height; i++) {
				struct xa_run_node *rn;
				unsigned int got;

				if (st->sizing) {
					st->need[0]++;
					rn = (struct xa_run_node *)stand_in[i].words;
					got = 0;
				} else {
					rn = take_node(st, 0, &got);
					if (!rn) {
						give_back(st);
						return -ENOMEM;
					}
				}
				root = init_lone_slot0(rn, got, root);
			}
		}
	}

	if (first == last)
		result = plan_index(st, root, height, first, &kid);
	else
		result = plan_slot(st, root, height, 0, first, last, &kid);
	if (st->err) {
		give_back(st);
		return st->err;
	}
	if (st->sizing)
		return 0;
	if (st->nr_wishes)
		grant_wishes(st);
	for (i = 0; i < st->nr_plans; i++)
		apply_plan(st, &st->plans[i]);
	if (kid >= 0)
		result = st->plans[kid].result;
	else if (entry_is_node(root) && result != root)
		free_subtree(xa, root);
	xa->root = result;
	xa->height = height;
out:
	shrink(xa);
	if (entry_is_node(xa->root))
		spare_trim(xa, CCVM_XA_CACHE_PER_CLASS);
	else
		spare_trim(xa, 0);
	return 0;
}

/*
 * The node of height 1 holding @index's slot, or 0 when the path to it
 * meets a value first (or the root does not reach @index).
 */
static uintptr_t leaf_node(const struct ccvm_xa *xa, uint64_t index)
{
	unsigned int shift = xa->height * XA_SHIFT;
	uintptr_t entry = xa->root;

	if (!xa->height || (shift < 64 && (index >> shift)))
		return 0;
	for (shift -= XA_SHIFT; shift; shift -= XA_SHIFT) {
		if (!entry_is_node(entry))
			return 0;
		entry = node_slot(entry, (index >> shift) & XA_MASK);
	}
	return entry_is_node(entry) ? entry : 0;
}

/*
 * One index into a plain leaf, when the planned store would change that
 * node in place and nothing above it: the value differs from both
 * neighbours (no run edge lost, so no collapse and no smaller class) and
 * is not absent (the root cannot become shrinkable).  The page cache's
 * common store, without the plan.  Return: whether it was done.
 */
static bool store_plain_in_place(struct ccvm_xa *xa, uintptr_t leaf, unsigned int off,
				 uintptr_t entry)
{
	uintptr_t *slots = entry_to_plain(leaf)->slots;

	if ((off && slots[off - 1] == entry) || (off < XA_MASK && slots[off + 1] == entry))
		return false;
	slots[off] = entry;
	spare_trim(xa, CCVM_XA_CACHE_PER_CLASS);
	return true;
}

/*
 * One index into a run leaf, when the planned store would change that node
 * in place and nothing above it: the value differs from both neighbours (it
 * only adds run edges, so nothing collapses), is not absent, and the runs
 * after the store need exactly the node's class (more would move it to a
 * larger node, fewer would wish it into a smaller one).  Slot @off's run
 * is split around it: zero, one or two new runs.  The page cache's store
 * while a leaf fills up, before the leaf turns plain.  Return: whether it
 * was done.
 */
static bool store_run_in_place(struct ccvm_xa *xa, uintptr_t leaf, unsigned int off,
			       uintptr_t entry)
{
	struct xa_run_node *rn = entry_to_run(leaf);
	uint64_t starts = rn->starts, ns = starts;
	unsigned int k = run_of(starts, off), nr = popcount64(starts), add = 0;
	bool at_start = starts & bit(off);
	bool next_start = off == XA_MASK || (starts & bit(off + 1));
	uintptr_t old = rn->ent[k];

	if (off && entry == (at_start ? rn->ent[k - 1] : old))
		return false;
	if (off < XA_MASK && entry == (next_start ? rn->ent[k + 1] : old))
		return false;
	if (!at_start) {
		ns |= bit(off);
		add++;
	}
	if (!next_start) {
		ns |= bit(off + 1);
		add++;
	}
	if (class_for(nr + add) != entry_class(leaf))
		return false;
	/* Runs after k move up by @add; then k's head (if kept), entry, k's tail. */
	memmove(&rn->ent[k + 1 + add], &rn->ent[k + 1], (nr - k - 1) * sizeof(rn->ent[0]));
	if (!at_start)
		k++;
	rn->ent[k] = entry;
	if (!next_start)
		rn->ent[k + 1] = old;
	rn->starts = ns;
	shrink(xa);
	spare_trim(xa, CCVM_XA_CACHE_PER_CLASS);
	return true;
}

/* store_plain_in_place() or store_run_in_place(), whichever @leaf (@index's) takes. */
static bool store_in_leaf(struct ccvm_xa *xa, uintptr_t leaf, uint64_t index, uintptr_t entry)
{
	if (!entry || !leaf)
		return false;
	if (entry_class(leaf) == XA_PLAIN)
		return store_plain_in_place(xa, leaf, (unsigned int)(index & XA_MASK), entry);
	return store_run_in_place(xa, leaf, (unsigned int)(index & XA_MASK), entry);
}

static bool store_in_place(struct ccvm_xa *xa, uint64_t index, uintptr_t entry)
{
	return entry && store_in_leaf(xa, leaf_node(xa, index), index, entry);
}

/* The planned store of @value over [first, last]: the walk, the plans, the nodes. */
static int store_planned(struct ccvm_xa *xa, uint64_t first, uint64_t last, uint64_t value)
{
	struct xa_store st;

	st.xa = xa;
	st.entry = value_to_entry(value);
	st.sizing = false;
	st.err = 0;
	st.next_fake = 0;
	st.nr_plans = 0;
	st.nr_wishes = 0;
	st.nr_taken = 0;
	return run_store(&st, first, last);
}

int ccvm_xa_store_range(struct ccvm_xa *xa, uint64_t first, uint64_t last,
			uint64_t value)
{
	if (first > last || value > CCVM_XA_VALUE_MAX)
		return -EINVAL;
	if (first == last && store_in_place(xa, first, value_to_entry(value)))
		return 0;
	return store_planned(xa, first, last, value);
}

int ccvm_xa_store_leaf(struct ccvm_xa *xa, uint64_t index, uintptr_t leaf, uint64_t value)
{
	if (value > CCVM_XA_VALUE_MAX)
		return -EINVAL;
	if (store_in_leaf(xa, leaf, index, value_to_entry(value)))
		return 0;
	return store_planned(xa, index, index, value);
}

/*
 * The reserve of one index whose leaf node is @leaf, without the sizing
 * walk when there is a leaf.  When it exists and takes the store's new
 * run edges in place (a plain node always does; a run node when it has
 * room for them: one at the slot unless a run starts there, one after it
 * unless a run starts there or it is the last), the store plans no node
 * anywhere: nothing to set aside (the page cache's common case).  A run
 * leaf out of room (a page-cache leaf filling up, at each of its classes):
 * the store moves it to one node of the class its runs need, and nothing
 * above changes (a child node is a run of its own in its parent), so that
 * node is the whole need, matched against the free nodes as below.
 * Return: 0 or -ENOMEM; 1 when there is no leaf (the sizing walk decides).
 */
static int reserve_in_leaf(struct ccvm_xa *xa, uintptr_t leaf, uint64_t index)
{
	unsigned int off = (unsigned int)(index & XA_MASK), add, cls;
	uint64_t starts;
	void *node;

	if (!leaf)
		return 1;
	if (entry_class(leaf) == XA_PLAIN)
		return 0;
	starts = entry_to_run(leaf)->starts;
	add = !(starts & bit(off)) + (off < XA_MASK && !(starts & bit(off + 1)));
	if (popcount64(starts) + add <= xa_class_runs[entry_class(leaf)])
		return 0;
	cls = class_for(popcount64(starts) + add);
	if (spare_fit(xa, cls, XA_NR_CLASSES) < XA_NR_CLASSES)
		return 0;
	node = node_alloc(cls);
	if (!node)
		return -ENOMEM;
	spare_push(xa, node, cls);
	return 0;
}

int ccvm_xa_reserve_leaf(struct ccvm_xa *xa, uint64_t index, uintptr_t leaf)
{
	int ret = reserve_in_leaf(xa, leaf, index);

	return ret <= 0 ? ret : ccvm_xa_reserve(xa, index, index);
}

int ccvm_xa_reserve(struct ccvm_xa *xa, uint64_t first, uint64_t last)
{
	unsigned int have[XA_NR_CLASSES], missing[XA_NR_CLASSES] = { 0 };
	struct ccvm_xa_node *fresh[XA_NR_CLASSES] = { NULL };
	unsigned int cls, fit, n;
	struct xa_store st;

	if (first > last)
		return -EINVAL;
	/* One index whose leaf node exists: without the sizing walk. */
	if (first == last) {
		int ret = reserve_in_leaf(xa, leaf_node(xa, first), first);

		if (ret <= 0)
			return ret;
	}
	st.xa = xa;
	st.entry = XA_ANY_ENTRY;
	st.sizing = true;
	st.err = 0;
	st.next_fake = 0;
	st.nr_plans = 0;
	st.nr_wishes = 0;
	st.nr_taken = 0;
	memset(st.need, 0, sizeof(st.need));
	run_store(&st, first, last);

	/*
	 * Match the needs against the free nodes as the store will take them
	 * (smallest fit first, largest need first), then allocate what is left.
	 */
	memcpy(have, xa->nr_spare_class, sizeof(have));
	for (cls = XA_NR_CLASSES; cls-- > 0;) {
		for (n = st.need[cls]; n; n--) {
			for (fit = cls; fit < XA_NR_CLASSES && !have[fit]; fit++)
				;
			if (fit < XA_NR_CLASSES)
				have[fit]--;
			else
				missing[cls]++;
		}
	}
	for (cls = 0; cls < XA_NR_CLASSES; cls++) {
		for (n = missing[cls]; n; n--) {
			struct ccvm_xa_node *node = node_alloc(cls);

			if (!node)
				goto fail;
			node->next = fresh[cls];
			fresh[cls] = node;
		}
	}
	for (cls = 0; cls < XA_NR_CLASSES; cls++) {
		while (fresh[cls]) {
			struct ccvm_xa_node *node = fresh[cls];

			fresh[cls] = node->next;
			spare_push(xa, node, cls);
		}
	}
	return 0;
fail:
	for (cls = 0; cls < XA_NR_CLASSES; cls++) {
		while (fresh[cls]) {
			struct ccvm_xa_node *node = fresh[cls];

			fresh[cls] = node->next;
			free(node);
		}
	}
	return -ENOMEM;
}

void ccvm_xa_init(struct ccvm_xa *xa)
{
	memset(xa, 0, sizeof(*xa));
}

void ccvm_xa_destroy(struct ccvm_xa *xa)
{
	free_subtree(xa, xa->root);
	spare_trim(xa, 0);
	ccvm_xa_init(xa);
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

/* The value at @index; in *@leaf (if not NULL) the node of height 1 holding its slot, or 0. */
static inline uint64_t load_walk(const struct ccvm_xa *xa, uint64_t index, uintptr_t *leaf)
{
	unsigned int shift = xa->height * XA_SHIFT;
	uintptr_t entry = xa->root;

	if (leaf)
		*leaf = 0;
	if (shift < 64 && (index >> shift))
		return 0;
	while (entry_is_node(entry)) {
		unsigned int off;

		shift -= XA_SHIFT;
		off = (index >> shift) & XA_MASK;
		if (leaf && !shift)
			*leaf = entry;
		if (entry_class(entry) == XA_PLAIN) {
			entry = entry_to_plain(entry)->slots[off];
		} else {
			const struct xa_run_node *rn = entry_to_run(entry);

			/*
			 * The entry may lie a cache line or more past `starts`:
			 * fetch those lines while `starts` is on its way, rather
			 * than one miss after the other.
			 */
			if (entry_class(entry) >= 4) {
				__builtin_prefetch((const char *)rn + 64);
				__builtin_prefetch((const char *)rn + 128);
				__builtin_prefetch((const char *)rn + 192);
			}
			entry = rn->ent[run_of(rn->starts, off)];
		}
	}
	return entry_to_value(entry);
}

uint64_t ccvm_xa_load(const struct ccvm_xa *xa, uint64_t index)
{
	return load_walk(xa, index, NULL);
}

uint64_t ccvm_xa_load_leaf(const struct ccvm_xa *xa, uint64_t index, uintptr_t *leaf)
{
	return load_walk(xa, index, leaf);
}

/*
 * In-order walk over the value runs of the nodes from a start index: each
 * step yields the rest of one run inside one node (the first one clipped to
 * the start), then the indices beyond the root as one absent segment.
 * Keeps the path so a step costs O(1) amortised rather than a descent from
 * the root.
 */
struct xa_segment {
	uint64_t first;
	uint64_t last;
	uint64_t value;
};

struct xa_cursor {
	const struct ccvm_xa *xa;
	uint64_t pos;			/* first index not yet yielded */
	bool done;
	unsigned int depth;		/* nodes on path[] */
	uintptr_t path[XA_MAX_HEIGHT];
	uint64_t path_last[XA_MAX_HEIGHT];	/* last index under path[i] */
};

static void cursor_init(struct xa_cursor *cursor, const struct ccvm_xa *xa,
			uint64_t index)
{
	cursor->xa = xa;
	cursor->pos = index;
	cursor->done = false;
	cursor->depth = 0;
}

static void cursor_advance(struct xa_cursor *cursor, uint64_t last)
{
	if (last == UINT64_MAX) {
		cursor->done = true;
		return;
	}
	cursor->pos = last + 1;
	/* Leave every node that pos has just stepped past the end of. */
	while (cursor->depth && cursor->pos > cursor->path_last[cursor->depth - 1])
		cursor->depth--;
}

static bool cursor_next(struct xa_cursor *cursor, struct xa_segment *seg)
{
	const struct ccvm_xa *xa = cursor->xa;
	unsigned int shift, off, end, height;
	uintptr_t node, entry;

	if (cursor->done)
		return false;
	if (cursor->depth == 0) {
		uint64_t covered = span_last(0, xa->height);

		seg->first = cursor->pos;
		if (cursor->pos > covered) {
			seg->last = UINT64_MAX;
			seg->value = 0;
			cursor->done = true;
			return true;
		}
		if (!entry_is_node(xa->root)) {
			seg->last = covered;
			seg->value = entry_to_value(xa->root);
			cursor_advance(cursor, covered);
			return true;
		}
		cursor->path[0] = xa->root;
		cursor->path_last[0] = covered;
		cursor->depth = 1;
	}
	for (;;) {
		height = xa->height - cursor->depth + 1;
		shift = (height - 1) * XA_SHIFT;
		node = cursor->path[cursor->depth - 1];
		off = (cursor->pos >> shift) & XA_MASK;
		if (entry_class(node) == XA_PLAIN) {
			const uintptr_t *slots = entry_to_plain(node)->slots;

			entry = slots[off];
			end = off;
			if (!entry_is_node(entry)) {
				while (end + 1 < XA_SLOTS && slots[end + 1] == entry)
					end++;
			}
		} else {
			const struct xa_run_node *rn = entry_to_run(node);
			uint64_t later = rn->starts & bits_above(off);

			entry = rn->ent[run_of(rn->starts, off)];
			end = later ? (unsigned int)__builtin_ctzll(later) - 1 : XA_MASK;
		}
		if (!entry_is_node(entry))
			break;
		cursor->path[cursor->depth] = entry;
		cursor->path_last[cursor->depth] = cursor->pos | ((1ull << shift) - 1);
		cursor->depth++;
	}
	seg->first = cursor->pos;
	if (end + 1 >= used_slots(height))
		seg->last = cursor->path_last[cursor->depth - 1];
	else
		seg->last = (cursor->pos & ~((1ull << shift) - 1)) +
			    ((uint64_t)(end - off + 1) << shift) - 1;
	seg->value = entry_to_value(entry);
	cursor_advance(cursor, seg->last);
	return true;
}

/* Merges the cursor's segments into maximal runs of one value. */
struct xa_run_walk {
	struct xa_cursor cursor;
	struct xa_segment ahead;
	bool have_ahead;
};

static void run_walk_init(struct xa_run_walk *walk, const struct ccvm_xa *xa,
			  uint64_t index)
{
	cursor_init(&walk->cursor, xa, index);
	walk->have_ahead = cursor_next(&walk->cursor, &walk->ahead);
}

/*
 * Next run.  Once a run reaches @limit the walk stops extending it (its
 * last index is then only known to be >= limit) and ends.
 */
static bool run_walk_next(struct xa_run_walk *walk, struct xa_segment *run,
			  uint64_t limit)
{
	if (!walk->have_ahead)
		return false;
	*run = walk->ahead;
	for (;;) {
		if (run->last >= limit) {
			walk->have_ahead = false;
			break;
		}
		walk->have_ahead = cursor_next(&walk->cursor, &walk->ahead);
		if (!walk->have_ahead || walk->ahead.value != run->value)
			break;
		run->last = walk->ahead.last;
	}
	return true;
}

uint64_t ccvm_xa_run(const struct ccvm_xa *xa, uint64_t index, uint64_t *last)
{
	struct xa_run_walk walk;
	struct xa_segment run = { 0 };	/* a fresh walk always yields a run */

	run_walk_init(&walk, xa, index);
	run_walk_next(&walk, &run, UINT64_MAX);
	if (last)
		*last = run.last;
	return run.value;
}

bool ccvm_xa_range_is(const struct ccvm_xa *xa, uint64_t first, uint64_t last,
		      uint64_t value)
{
	struct xa_run_walk walk;
	struct xa_segment run = { 0 };	/* a fresh walk always yields a run */

	if (first > last || value > CCVM_XA_VALUE_MAX)
		return false;
	run_walk_init(&walk, xa, first);
	run_walk_next(&walk, &run, last);
	return run.value == value && run.last >= last;
}

int ccvm_xa_find(const struct ccvm_xa *xa, uint64_t *index, uint64_t max,
		 uint64_t *value)
{
	struct xa_run_walk walk;
	struct xa_segment run;

	if (*index > max)
		return -ENOENT;
	run_walk_init(&walk, xa, *index);
	while (run_walk_next(&walk, &run, max)) {
		if (run.value) {
			*index = run.first;
			if (value)
				*value = run.value;
			return 0;
		}
	}
	return -ENOENT;
}

int ccvm_xa_for_each_run(const struct ccvm_xa *xa, uint64_t first, uint64_t last,
			 ccvm_xa_run_fn fn, void *ctx)
{
	struct xa_run_walk walk;
	struct xa_segment run;
	int ret;

	if (first > last)
		return -EINVAL;
	run_walk_init(&walk, xa, first);
	while (run_walk_next(&walk, &run, last)) {
		ret = fn(run.first, min_u64(run.last, last), run.value, ctx);
		if (ret)
			return ret;
	}
	return 0;
}

bool ccvm_xa_empty(const struct ccvm_xa *xa)
{
	return xa->root == 0;
}

size_t ccvm_xa_memory(const struct ccvm_xa *xa)
{
	return xa->bytes + xa->spare_bytes;
}

/* ------------------------------------------------------------------ */
/* Test hooks                                                          */

void ccvm_xa_test_drop_spare(struct ccvm_xa *xa)
{
	spare_trim(xa, 0);
}

unsigned int ccvm_xa_test_class_runs(unsigned int cls)
{
	return cls < XA_NR_CLASSES ? xa_class_runs[cls] : 0;
}

size_t ccvm_xa_test_class_bytes(unsigned int cls)
{
	return cls < XA_NR_CLASSES ? class_bytes(cls) : 0;
}

/* Check one node at @height (recursively, bounded by the height). */
static int shape_node(uintptr_t node, unsigned int height, size_t *per_class,
		      size_t *nodes, size_t *bytes)
{
	unsigned int cls = entry_class(node), k, runs;
	uint64_t starts = 1;
	uintptr_t prev, cur;
	int ret;

	if (height == 0 || ((uintptr_t)entry_to_node(node) & 15))
		return -EUCLEAN;
	per_class[cls]++;
	(*nodes)++;
	*bytes += class_bytes(cls);
	prev = node_slot(node, 0);
	for (k = 0; k < XA_SLOTS; k++) {
		cur = node_slot(node, k);
		if (k && cur != prev)
			starts |= bit(k);
		/* A child node fills one slot: it differs from both neighbours. */
		if (entry_is_node(cur)) {
			if (k && node_slot(node, k - 1) == cur)
				return -EUCLEAN;
			if (k < used_slots(height)) {
				ret = shape_node(cur, height - 1, per_class, nodes, bytes);
				if (ret)
					return ret;
			}
		}
		prev = cur;
	}
	if (popcount64(starts & used_mask(height)) < 2)
		return -EUCLEAN;
	runs = popcount64(starts);
	if (cls != XA_PLAIN) {
		if (entry_to_run(node)->starts != starts || runs > xa_class_runs[cls])
			return -EUCLEAN;
	}
	return 0;
}

int ccvm_xa_test_shape(const struct ccvm_xa *xa, size_t *per_class)
{
	size_t nodes = 0, bytes = 0, spare = 0, spare_bytes = 0;
	unsigned int cls;
	int ret = 0;

	memset(per_class, 0, XA_NR_CLASSES * sizeof(*per_class));
	if (entry_is_node(xa->root))
		ret = shape_node(xa->root, xa->height, per_class, &nodes, &bytes);
	if (ret)
		return ret;
	for (cls = 0; cls < XA_NR_CLASSES; cls++) {
		const struct ccvm_xa_node *n;
		unsigned int count = 0;

		for (n = xa->spare[cls]; n; n = n->next)
			count++;
		if (count != xa->nr_spare_class[cls])
			return -EUCLEAN;
		/* The trim's one-test shortcut: the mask names exactly the classes over. */
		if (!!(xa->spare_over & (1u << cls)) != (count > CCVM_XA_CACHE_PER_CLASS))
			return -EUCLEAN;
		spare += count;
		spare_bytes += count * class_bytes(cls);
	}
	if (nodes != xa->nr_nodes || bytes != xa->bytes || spare != xa->nr_spare ||
	    spare_bytes != xa->spare_bytes)
		return -EUCLEAN;
	return 0;
}
