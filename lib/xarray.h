/* SPDX-License-Identifier: MIT */
/*
 * A range-capable radix store: index (uint64_t) -> value (uint64_t), where 0
 * means "absent".  One structure serves the VM attribute store (gfn ->
 * attributes), the gmem page cache (index -> pfn) and gmem bindings (index
 * -> memslot).
 *
 * Model: a 64-way radix tree.  A slot holds a child node or a value; a value
 * in a slot at height h covers 64^h indices (a multi-index entry).  Storing
 * a value over [first, last] writes O(height) aligned multi-index entries
 * per edge, never one entry per index, and nodes whose slots end up holding
 * one value collapse back into their parent, so memory follows the number
 * of runs of equal value, not the number of indices.
 *
 * A node keeps its 64 slots as runs: a 64-bit map of the slots where a run
 * starts and one entry per run, in one of seven sizes (2 to 24 runs), or as
 * a plain array of 64 slots once it has more runs than that.  A lookup
 * never searches: the entry of slot i is entry number popcount(starts up to
 * i) - 1.  So a fragmented map costs a few words per run edge, and a dense
 * one (the page cache) 8 bytes per index.
 *
 * Values are limited to 63 bits (CCVM_XA_VALUE_MAX).
 *
 * Context: not thread-safe; the owner serialises writers and excludes
 * readers from writers (attr_lock, the gmem invalidate lock, slots_lock).
 * Failure: only the storing calls allocate; they are all-or-nothing.  Use
 * ccvm_xa_reserve() to move the only possible failure (-ENOMEM) ahead of a
 * sequence that must not fail, as KVM reserves before it invalidates.
 * Memory: a store keeps up to CCVM_XA_CACHE_PER_CLASS free nodes of each
 * size for the next ones instead of returning them to malloc, as long as
 * the tree has nodes; a store that leaves none frees them all, so an empty
 * store holds no memory.
 */
#ifndef CCVM_LIB_XARRAY_H
#define CCVM_LIB_XARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CCVM_XA_VALUE_MAX	((1ull << 63) - 1)
#define CCVM_XA_INDEX_MAX	UINT64_MAX

#define CCVM_XA_NR_CLASSES	8	/* node sizes */
#define CCVM_XA_CACHE_PER_CLASS	4	/* free nodes of each size a store keeps */

struct ccvm_xa_node;

struct ccvm_xa {
	uintptr_t root;			/* tagged node pointer or tagged value */
	unsigned int height;		/* root covers 64^height indices */
	size_t nr_nodes;		/* nodes in the tree */
	size_t bytes;			/* their size */
	size_t nr_spare;		/* free nodes kept (reserve and cache) */
	size_t spare_bytes;		/* their size */
	struct ccvm_xa_node *spare[CCVM_XA_NR_CLASSES];	/* by size, singly linked */
	unsigned int nr_spare_class[CCVM_XA_NR_CLASSES];
	unsigned int spare_over;	/* classes with more than the cache keeps */
};

void ccvm_xa_init(struct ccvm_xa *xa);
/* Free every node (and the reserve). The xa is empty and reusable after. */
void ccvm_xa_destroy(struct ccvm_xa *xa);

/* Value at @index, 0 if absent.  O(height), no search at any level. */
uint64_t ccvm_xa_load(const struct ccvm_xa *xa, uint64_t index);

/*
 * ccvm_xa_store_range() - Set every index in [first, last] to @value (0
 * erases).  Return: 0; -EINVAL (first > last, value > CCVM_XA_VALUE_MAX);
 * -ENOMEM with the store unchanged.
 */
int ccvm_xa_store_range(struct ccvm_xa *xa, uint64_t first, uint64_t last,
			uint64_t value);
static inline int ccvm_xa_store(struct ccvm_xa *xa, uint64_t index, uint64_t value)
{
	return ccvm_xa_store_range(xa, index, index, value);
}

/*
 * ccvm_xa_reserve() - Make sure a following ccvm_xa_store_range() over
 * [first, last] (any value) cannot fail for lack of memory.  The reserve
 * stays with the xa until used or destroyed; it is sized for one store.
 * Return: 0 or -ENOMEM (nothing changed).
 */
int ccvm_xa_reserve(struct ccvm_xa *xa, uint64_t first, uint64_t last);

/*
 * One index, looked up once: ccvm_xa_load_leaf() is ccvm_xa_load() that
 * also gives the node holding @index's slot (0 when the walk met a value
 * above it); with the xa unchanged since, ccvm_xa_reserve_leaf() and
 * ccvm_xa_store_leaf() are ccvm_xa_reserve() and ccvm_xa_store() of that
 * index, with the same results and tree, without walking down again when
 * the store fits that node in place (the page cache's miss: a load, then a
 * reserve and a store of the page allocated in between).
 */
uint64_t ccvm_xa_load_leaf(const struct ccvm_xa *xa, uint64_t index, uintptr_t *leaf);
int ccvm_xa_reserve_leaf(struct ccvm_xa *xa, uint64_t index, uintptr_t leaf);
int ccvm_xa_store_leaf(struct ccvm_xa *xa, uint64_t index, uintptr_t leaf, uint64_t value);

/*
 * ccvm_xa_run() - The value at @index and, in *@last, the last index of the
 * maximal run of that value that contains @index ("how far does the value
 * at i run").  Absent (0) is a value like any other.
 */
uint64_t ccvm_xa_run(const struct ccvm_xa *xa, uint64_t index, uint64_t *last);

/* True if every index in [first, last] holds @value (0 = all absent). */
bool ccvm_xa_range_is(const struct ccvm_xa *xa, uint64_t first, uint64_t last,
		      uint64_t value);

/*
 * ccvm_xa_find() - The first index >= *@index and <= @max holding a
 * non-zero value: 0 found (*@index set, value in *@value), -ENOENT none.
 */
int ccvm_xa_find(const struct ccvm_xa *xa, uint64_t *index, uint64_t max,
		 uint64_t *value);

/*
 * Iterate the maximal runs of equal value (absent runs included) that
 * intersect [first, last], clipped to it, in index order.  @fn returning
 * nonzero stops the walk and is returned.
 */
typedef int (*ccvm_xa_run_fn)(uint64_t first, uint64_t last, uint64_t value,
			      void *ctx);
int ccvm_xa_for_each_run(const struct ccvm_xa *xa, uint64_t first, uint64_t last,
			 ccvm_xa_run_fn fn, void *ctx);

/* True if nothing is stored. */
bool ccvm_xa_empty(const struct ccvm_xa *xa);

/* Bytes of memory the store uses (nodes, reserve and cache). */
size_t ccvm_xa_memory(const struct ccvm_xa *xa);

/*
 * ---- Test hooks: for the unit tests only, not part of the API ----
 *
 * ccvm_xa_test_fail_alloc() - Make the next @n node allocations (by any xa
 * in the process) fail, so -ENOMEM paths can be tested without real memory
 * exhaustion; @n <= 0 makes none fail.  Nodes taken from the reserve or the
 * cache are not allocations.  Context: any thread (an atomic counter), but
 * meant for single-threaded tests.
 */
void ccvm_xa_test_fail_alloc(int n);
/* The same after letting the next @skip allocations succeed. */
void ccvm_xa_test_fail_alloc_from(int skip, int n);

/*
 * ccvm_xa_test_shape() - Count the tree's nodes by size class into
 * @per_class[CCVM_XA_NR_CLASSES] (class CCVM_XA_NR_CLASSES - 1 is the plain
 * 64-slot node) and check the invariants: every node is 16-byte aligned,
 * holds at least two runs in the slots it uses, fits its class, keeps its
 * run map exact, and the node, byte and free-list counts (and the mask of
 * classes over the cache size) add up.
 * Return: 0 or -EUCLEAN (the tests compare against a model for details).
 */
int ccvm_xa_test_shape(const struct ccvm_xa *xa, size_t *per_class);

/*
 * ccvm_xa_test_nr_allocs() - Node allocations from malloc so far by the
 * calling thread, any xa: how a test or a benchmark shows that a sequence
 * of stores allocates nothing.
 */
unsigned long ccvm_xa_test_nr_allocs(void);

/* Free the nodes kept for later stores (reserve and cache). */
void ccvm_xa_test_drop_spare(struct ccvm_xa *xa);

/* Runs a node of size class @cls holds at most; its size in bytes. */
unsigned int ccvm_xa_test_class_runs(unsigned int cls);
size_t ccvm_xa_test_class_bytes(unsigned int cls);

#endif /* CCVM_LIB_XARRAY_H */
