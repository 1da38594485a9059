/* SPDX-License-Identifier: MIT */
/*
 * Range-capable radix store (see xarray.h for the model and contracts).
 *
 * Entries (the root and every slot) are one word: a value v is kept as
 * v << 1, so bit 0 clear and "absent" is all-zero, which makes a zeroed xa
 * or node empty; a child node is kept as its address with bit 0 set.
 *
 * A slot of a node at height h covers 64^(h - 1) indices, the root covers
 * 64^height.  Height 11 covers 2^66, so at that height only the first 16
 * slots of the root map real indices; the other 48 are never consulted.
 *
 * Invariant kept by every store: no node's subtree holds one value
 * everywhere (such a node is replaced by that value in its parent), and the
 * root is never a node whose only non-absent slot is slot 0.  So memory
 * follows the number of run edges, an all-absent store is root 0, and a
 * walk that descends into a node always finds a change of value there.
 *
 * Recursion is bounded by the height (at most 11 levels), never by the
 * number of entries.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "xarray.h"

#define XA_CHUNK_SHIFT	6
#define XA_CHUNK_SIZE	(1u << XA_CHUNK_SHIFT)
#define XA_CHUNK_MASK	(XA_CHUNK_SIZE - 1)
#define XA_MAX_HEIGHT	11	/* smallest h with 6 * h >= 64 */
#define XA_TOP_SLOTS	16	/* slots of a height-11 node below 2^64 */

/* Compared against stored values, it matches none: used to size reserves. */
#define XA_ANY_VALUE	UINT64_MAX

_Static_assert(sizeof(uintptr_t) == sizeof(uint64_t),
	       "entries pack a 63-bit value into one pointer-sized word");

struct ccvm_xa_node {
	uintptr_t slots[XA_CHUNK_SIZE];
};

static inline bool entry_is_node(uintptr_t entry)
{
	return entry & 1;
}

static inline struct ccvm_xa_node *entry_to_node(uintptr_t entry)
{
	return (struct ccvm_xa_node *)(entry - 1);
}

static inline uintptr_t node_to_entry(const struct ccvm_xa_node *node)
{
	return (uintptr_t)node | 1;
}

static inline uint64_t entry_to_value(uintptr_t entry)
{
	return entry >> 1;
}

static inline uintptr_t value_to_entry(uint64_t value)
{
	return (uintptr_t)(value << 1);
}

/* Last index covered by a slot of height @height starting at @base. */
static inline uint64_t span_last(uint64_t base, unsigned int height)
{
	if (height >= XA_MAX_HEIGHT)
		return UINT64_MAX;
	return base + ((1ull << (height * XA_CHUNK_SHIFT)) - 1);
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
	return height == XA_MAX_HEIGHT ? XA_TOP_SLOTS : XA_CHUNK_SIZE;
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
/* Node allocation, the reserve, and the test hook                     */

/* Allocations still to fail; shared by every xa (tests run one per process). */
static atomic_int xa_failing_allocs;

void ccvm_xa_test_fail_alloc(int n)
{
	atomic_store(&xa_failing_allocs, n < 0 ? 0 : n);
}

static struct ccvm_xa_node *node_alloc(void)
{
	int left = atomic_load_explicit(&xa_failing_allocs, memory_order_relaxed);

	while (left > 0) {
		if (atomic_compare_exchange_weak(&xa_failing_allocs, &left, left - 1))
			return NULL;
	}
	return malloc(sizeof(struct ccvm_xa_node));
}

static void spare_push(struct ccvm_xa *xa, struct ccvm_xa_node *node)
{
	node->slots[0] = (uintptr_t)xa->spare;
	xa->spare = node;
	xa->nr_spare++;
}

/*
 * Make at least @need nodes available in the reserve.  Fresh nodes are
 * collected on a private list first so that a failure leaves the xa
 * exactly as it was.
 */
static int spare_fill(struct ccvm_xa *xa, size_t need)
{
	struct ccvm_xa_node *fresh = NULL, *node;
	size_t nr_fresh = 0;

	while (xa->nr_spare + nr_fresh < need) {
		node = node_alloc();
		if (!node) {
			while (fresh) {
				node = fresh;
				fresh = (struct ccvm_xa_node *)node->slots[0];
				free(node);
			}
			return -ENOMEM;
		}
		node->slots[0] = (uintptr_t)fresh;
		fresh = node;
		nr_fresh++;
	}
	while (fresh) {
		node = fresh;
		fresh = (struct ccvm_xa_node *)node->slots[0];
		spare_push(xa, node);
	}
	return 0;
}

static void spare_release(struct ccvm_xa *xa)
{
	struct ccvm_xa_node *node;

	while (xa->spare) {
		node = xa->spare;
		xa->spare = (struct ccvm_xa_node *)node->slots[0];
		free(node);
	}
	xa->nr_spare = 0;
}

/* Only called once spare_fill() has covered the whole store. */
static struct ccvm_xa_node *node_from_spare(struct ccvm_xa *xa, uintptr_t fill)
{
	struct ccvm_xa_node *node = xa->spare;
	unsigned int i;

	xa->spare = (struct ccvm_xa_node *)node->slots[0];
	xa->nr_spare--;
	for (i = 0; i < XA_CHUNK_SIZE; i++)
		node->slots[i] = fill;
	xa->nr_nodes++;
	return node;
}

static void node_free(struct ccvm_xa *xa, struct ccvm_xa_node *node)
{
	free(node);
	xa->nr_nodes--;
}

/* Free every node below and including @entry, without recursion. */
static void free_subtree(struct ccvm_xa *xa, uintptr_t entry)
{
	struct ccvm_xa_node *path[XA_MAX_HEIGHT + 1];
	unsigned int next[XA_MAX_HEIGHT + 1];
	unsigned int depth = 0;

	if (!entry_is_node(entry))
		return;
	path[0] = entry_to_node(entry);
	next[0] = 0;
	depth = 1;
	while (depth) {
		struct ccvm_xa_node *node = path[depth - 1];

		if (next[depth - 1] == XA_CHUNK_SIZE) {
			node_free(xa, node);
			depth--;
			continue;
		}
		entry = node->slots[next[depth - 1]++];
		if (entry_is_node(entry)) {
			path[depth] = entry_to_node(entry);
			next[depth] = 0;
			depth++;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Storing                                                             */

/*
 * Nodes needed to set [first, last] (clipped to the slot, not empty) to
 * @value inside a slot holding @entry at @height based at @base: one for
 * each value slot that is only partly overwritten by a different value.
 * Only the slots holding first and last can be partial, so this visits at
 * most two paths.
 */
static size_t count_slot(uintptr_t entry, unsigned int height, uint64_t base,
			 uint64_t first, uint64_t last, uint64_t value)
{
	unsigned int shift = (height - 1) * XA_CHUNK_SHIFT;
	unsigned int edge[2], i;
	size_t need = 0;

	if (first <= base && last >= span_last(base, height))
		return 0;
	if (!entry_is_node(entry)) {
		if (entry_to_value(entry) == value)
			return 0;
		need = 1;
	}
	edge[0] = (first - base) >> shift;
	edge[1] = (last - base) >> shift;
	for (i = 0; i < 2; i++) {
		uint64_t child_base = base + ((uint64_t)edge[i] << shift);
		uintptr_t child = entry;

		if (i == 1 && edge[1] == edge[0])
			break;
		if (entry_is_node(entry))
			child = entry_to_node(entry)->slots[edge[i]];
		need += count_slot(child, height - 1, child_base,
				   max_u64(first, child_base),
				   min_u64(last, span_last(child_base, height - 1)),
				   value);
	}
	return need;
}

/*
 * Like count_slot() for the root the xa would have after growing to
 * @height (> xa->height): a chain of new nodes whose slot 0 leads to the
 * current root and whose other slots are absent.
 */
static size_t count_grown(const struct ccvm_xa *xa, unsigned int height,
			  uint64_t first, uint64_t last, uint64_t value)
{
	unsigned int shift = (height - 1) * XA_CHUNK_SHIFT;
	unsigned int edge[2], i;
	size_t need = 0;

	edge[0] = first >> shift;
	edge[1] = last >> shift;
	for (i = 0; i < 2; i++) {
		uint64_t child_base = (uint64_t)edge[i] << shift;
		uint64_t child_last = span_last(child_base, height - 1);
		uint64_t lo = max_u64(first, child_base);
		uint64_t hi = min_u64(last, child_last);

		if (i == 1 && edge[1] == edge[0])
			break;
		if (lo == child_base && hi == child_last)
			continue;
		if (edge[i] != 0)
			need += count_slot(0, height - 1, child_base, lo, hi, value);
		else if (height - 1 > xa->height)
			need += count_grown(xa, height - 1, lo, hi, value);
		else
			need += count_slot(xa->root, height - 1, 0, lo, hi, value);
	}
	return need;
}

/* Exact node count of a store (an upper bound for any value if XA_ANY_VALUE). */
static size_t nodes_needed(const struct ccvm_xa *xa, uint64_t first,
			   uint64_t last, uint64_t value)
{
	uint64_t covered = span_last(0, xa->height);
	unsigned int height;

	if (last > covered) {
		if (value == 0) {
			/* Beyond the root everything is absent already. */
			if (first > covered)
				return 0;
			last = covered;
		} else {
			height = height_for(last);
			if (first == 0 && last >= span_last(0, height))
				return 0;
			if (xa->root == 0)
				return count_slot(0, height, 0, first, last, value);
			return (height - xa->height) +
			       count_grown(xa, height, first, last, value);
		}
	}
	return count_slot(xa->root, xa->height, 0, first, last, value);
}

/*
 * Set [first, last] (clipped to the slot, not empty) to @entry in @slot.
 * Nodes come from the reserve, which nodes_needed() sized.
 */
static void store_slot(struct ccvm_xa *xa, uintptr_t *slot, unsigned int height,
		       uint64_t base, uint64_t first, uint64_t last, uintptr_t entry)
{
	unsigned int shift = (height - 1) * XA_CHUNK_SHIFT;
	unsigned int i, lo_slot, hi_slot, nr_used;
	struct ccvm_xa_node *node;
	uintptr_t same;

	if (first <= base && last >= span_last(base, height)) {
		free_subtree(xa, *slot);
		*slot = entry;
		return;
	}
	if (!entry_is_node(*slot)) {
		if (*slot == entry)
			return;
		*slot = node_to_entry(node_from_spare(xa, *slot));
	}
	node = entry_to_node(*slot);
	lo_slot = (first - base) >> shift;
	hi_slot = (last - base) >> shift;
	for (i = lo_slot; i <= hi_slot; i++) {
		uint64_t child_base = base + ((uint64_t)i << shift);

		store_slot(xa, &node->slots[i], height - 1, child_base,
			   max_u64(first, child_base),
			   min_u64(last, span_last(child_base, height - 1)), entry);
	}

	/* A node left holding one value everywhere becomes that value. */
	same = node->slots[0];
	if (entry_is_node(same))
		return;
	nr_used = used_slots(height);
	for (i = 1; i < nr_used; i++) {
		if (node->slots[i] != same)
			return;
	}
	*slot = same;
	node_free(xa, node);
}

/* Drop root nodes whose only non-absent slot is slot 0. */
static void shrink(struct ccvm_xa *xa)
{
	while (entry_is_node(xa->root)) {
		struct ccvm_xa_node *node = entry_to_node(xa->root);
		unsigned int i, nr_used = used_slots(xa->height);

		for (i = 1; i < nr_used; i++) {
			if (node->slots[i])
				return;
		}
		xa->root = node->slots[0];
		xa->height--;
		node_free(xa, node);
	}
	if (xa->root == 0)
		xa->height = 0;
}

int ccvm_xa_store_range(struct ccvm_xa *xa, uint64_t first, uint64_t last,
			uint64_t value)
{
	uintptr_t entry = value_to_entry(value);
	uint64_t covered;
	unsigned int height;
	int ret;

	if (first > last || value > CCVM_XA_VALUE_MAX)
		return -EINVAL;
	ret = spare_fill(xa, nodes_needed(xa, first, last, value));
	if (ret)
		return ret;

	covered = span_last(0, xa->height);
	if (last > covered) {
		if (value == 0) {
			if (first > covered)
				goto out;
			last = covered;
		} else {
			height = height_for(last);
			if (first == 0 && last >= span_last(0, height)) {
				free_subtree(xa, xa->root);
				xa->root = entry;
				xa->height = height;
				goto out;
			}
			if (xa->root == 0)
				xa->height = height;
			while (xa->height < height) {
				struct ccvm_xa_node *node = node_from_spare(xa, 0);

				node->slots[0] = xa->root;
				xa->root = node_to_entry(node);
				xa->height++;
			}
		}
	}
	store_slot(xa, &xa->root, xa->height, 0, first, last, entry);
out:
	shrink(xa);
	/* The reserve was sized for this store; keeping a surplus would only hold memory. */
	spare_release(xa);
	return 0;
}

int ccvm_xa_reserve(struct ccvm_xa *xa, uint64_t first, uint64_t last)
{
	if (first > last)
		return -EINVAL;
	return spare_fill(xa, nodes_needed(xa, first, last, XA_ANY_VALUE));
}

void ccvm_xa_init(struct ccvm_xa *xa)
{
	xa->root = 0;
	xa->height = 0;
	xa->spare = NULL;
	xa->nr_spare = 0;
	xa->nr_nodes = 0;
}

void ccvm_xa_destroy(struct ccvm_xa *xa)
{
	free_subtree(xa, xa->root);
	spare_release(xa);
	ccvm_xa_init(xa);
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

uint64_t ccvm_xa_load(const struct ccvm_xa *xa, uint64_t index)
{
	unsigned int shift = xa->height * XA_CHUNK_SHIFT;
	uintptr_t entry = xa->root;

	if (shift < 64 && (index >> shift))
		return 0;
	while (entry_is_node(entry)) {
		shift -= XA_CHUNK_SHIFT;
		entry = entry_to_node(entry)->slots[(index >> shift) & XA_CHUNK_MASK];
	}
	return entry_to_value(entry);
}

/*
 * In-order walk over the value slots from a start index: each step yields
 * one slot (the first one clipped to the start), then the indices beyond
 * the root as one absent segment.  Keeps the path so a step costs O(1)
 * amortised rather than a descent from the root.
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
	const struct ccvm_xa_node *path[XA_MAX_HEIGHT];
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
	unsigned int height;

	if (last == UINT64_MAX) {
		cursor->done = true;
		return;
	}
	cursor->pos = last + 1;
	/* Leave every node that pos has just stepped past the end of. */
	while (cursor->depth) {
		height = cursor->xa->height - cursor->depth + 1;
		if ((cursor->pos >> ((height - 1) * XA_CHUNK_SHIFT)) & XA_CHUNK_MASK)
			break;
		cursor->depth--;
	}
}

static bool cursor_next(struct xa_cursor *cursor, struct xa_segment *seg)
{
	const struct ccvm_xa *xa = cursor->xa;
	unsigned int shift;
	uintptr_t entry;

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
		cursor->path[cursor->depth++] = entry_to_node(xa->root);
	}
	for (;;) {
		shift = (xa->height - cursor->depth) * XA_CHUNK_SHIFT;
		entry = cursor->path[cursor->depth - 1]->slots[(cursor->pos >> shift) &
							       XA_CHUNK_MASK];
		if (!entry_is_node(entry))
			break;
		cursor->path[cursor->depth++] = entry_to_node(entry);
	}
	seg->first = cursor->pos;
	seg->last = cursor->pos | ((1ull << shift) - 1);
	seg->value = entry_to_value(entry);
	cursor_advance(cursor, seg->last);
	return true;
}

/* Merges the cursor's slots into maximal runs of one value. */
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
	return (xa->nr_nodes + xa->nr_spare) * sizeof(struct ccvm_xa_node);
}
