/* SPDX-License-Identifier: MIT */
/*
 * Tests for the range-capable radix store (lib/xarray.c): edge cases, the
 * reserve and -ENOMEM contracts, memory following the number of runs, and
 * long randomized comparisons against a simple interval model.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "xarray.h"

#define NODE_BYTES	(64 * sizeof(uintptr_t))
/* Free nodes a store may keep for the next ones. */
#define CACHE_MAX_NODES	(CCVM_XA_NR_CLASSES * CCVM_XA_CACHE_PER_CLASS)

/*
 * Check's own assertions report every passing check to the parent process
 * (a write(2) each); the model comparisons make millions of checks, so these
 * only call into Check when they fail.
 */
#define expect(cond)							\
	do {								\
		if (!(cond))						\
			ck_abort_msg("Assertion '%s' failed", #cond);	\
	} while (0)

#define expect_cmp(type, fmt, x, op, y)					\
	do {								\
		type x_val = (x), y_val = (y);				\
		if (!(x_val op y_val))					\
			ck_abort_msg("Assertion '%s %s %s' failed: " fmt " vs " fmt, \
				     #x, #op, #y, x_val, y_val);	\
	} while (0)

#define expect_u64_eq(x, y)	expect_cmp(unsigned long long, "%llu", x, ==, y)
#define expect_u64_le(x, y)	expect_cmp(unsigned long long, "%llu", x, <=, y)
#define expect_u64_gt(x, y)	expect_cmp(unsigned long long, "%llu", x, >, y)
#define expect_int_eq(x, y)	expect_cmp(int, "%d", x, ==, y)
#define expect_int_gt(x, y)	expect_cmp(int, "%d", x, >, y)
#define expect_nonnull(p)	expect((p) != NULL)

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

/* splitmix64: a fixed seed gives the same sequence everywhere. */
static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
	rng_state = seed;
}

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0 (the bias is irrelevant here). */
static uint64_t rng_below(uint64_t n)
{
	return rng_next() % n;
}

/* Uniform with @bits random low bits, 0 <= bits <= 64. */
static uint64_t rng_bits(unsigned int bits)
{
	return bits >= 64 ? rng_next() : rng_next() & ((1ull << bits) - 1);
}

/* Uniform in [lo, hi], the whole index space included. */
static uint64_t rng_between(uint64_t lo, uint64_t hi)
{
	uint64_t n = hi - lo + 1;

	return n ? lo + rng_below(n) : rng_next();
}

struct run {
	uint64_t first;
	uint64_t last;
	uint64_t value;
};

/* Runs reported by ccvm_xa_for_each_run(). */
struct run_list {
	struct run *runs;
	size_t nr;
	size_t cap;
};

static int collect_run(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct run_list *list = ctx;

	if (list->nr == list->cap) {
		list->cap = list->cap ? list->cap * 2 : 64;
		list->runs = realloc(list->runs, list->cap * sizeof(*list->runs));
		expect_nonnull(list->runs);
	}
	list->runs[list->nr++] = (struct run){ first, last, value };
	return 0;
}

static void collect_runs(const struct ccvm_xa *xa, uint64_t first, uint64_t last,
			 struct run_list *list)
{
	list->nr = 0;
	expect_int_eq(ccvm_xa_for_each_run(xa, first, last, collect_run, list), 0);
}

/*
 * The model: the whole index space as a sorted list of maximal runs (so
 * adjacent runs differ in value), absent runs included.
 */
struct model {
	struct run *runs;
	size_t nr;
	size_t cap;
};

static void model_init(struct model *m)
{
	m->cap = 16;
	m->runs = malloc(m->cap * sizeof(*m->runs));
	expect_nonnull(m->runs);
	m->runs[0] = (struct run){ 0, UINT64_MAX, 0 };
	m->nr = 1;
}

static void model_free(struct model *m)
{
	free(m->runs);
}

static void model_append(struct run *runs, size_t *nr, struct run r)
{
	if (*nr && runs[*nr - 1].value == r.value)
		runs[*nr - 1].last = r.last;
	else
		runs[(*nr)++] = r;
}

static void model_store(struct model *m, uint64_t first, uint64_t last,
			uint64_t value)
{
	struct run *out = malloc((m->nr + 2) * sizeof(*out));
	size_t i, nr = 0;

	expect_nonnull(out);
	for (i = 0; i < m->nr; i++) {
		struct run r = m->runs[i];

		if (r.last < first || r.first > last) {
			model_append(out, &nr, r);
			continue;
		}
		if (r.first < first)
			model_append(out, &nr, (struct run){ r.first, first - 1, r.value });
		if (r.first <= first)
			model_append(out, &nr, (struct run){ first, last, value });
		if (r.last > last)
			model_append(out, &nr, (struct run){ last + 1, r.last, r.value });
	}
	free(m->runs);
	m->runs = out;
	m->nr = nr;
	m->cap = m->nr + 2;
}

/* The run holding @index. */
static const struct run *model_run(const struct model *m, uint64_t index)
{
	size_t lo = 0, hi = m->nr;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->runs[mid].first <= index)
			lo = mid;
		else
			hi = mid;
	}
	return &m->runs[lo];
}

static bool model_range_is(const struct model *m, uint64_t first, uint64_t last,
			   uint64_t value)
{
	const struct run *r = model_run(m, first);

	return r->value == value && r->last >= last;
}

static int model_find(const struct model *m, uint64_t *index, uint64_t max,
		      uint64_t *value)
{
	const struct run *r = model_run(m, *index);
	const struct run *end = m->runs + m->nr;

	for (; r < end && r->first <= max; r++) {
		if (r->value) {
			if (r->first > *index)
				*index = r->first;
			*value = r->value;
			return 0;
		}
	}
	return -ENOENT;
}

static void check_run_at(const struct ccvm_xa *xa, const struct model *m,
			 uint64_t index)
{
	const struct run *r = model_run(m, index);
	uint64_t last = 0;

	expect_u64_eq(ccvm_xa_load(xa, index), r->value);
	expect_u64_eq(ccvm_xa_run(xa, index, &last), r->value);
	expect_u64_eq(last, r->last);
}

static void check_range_is(const struct ccvm_xa *xa, const struct model *m,
			   uint64_t first, uint64_t last)
{
	uint64_t held = model_run(m, first)->value;

	expect_int_eq(ccvm_xa_range_is(xa, first, last, held),
			 model_range_is(m, first, last, held));
	expect_int_eq(ccvm_xa_range_is(xa, first, last, held + 1),
			 model_range_is(m, first, last, held + 1));
}

static void check_find(const struct ccvm_xa *xa, const struct model *m,
		       uint64_t start, uint64_t max)
{
	uint64_t got_index = start, want_index = start;
	uint64_t got_value = 0, want_value = 0;
	int want = model_find(m, &want_index, max, &want_value);

	expect_int_eq(ccvm_xa_find(xa, &got_index, max, &got_value), want);
	if (want == 0) {
		expect_u64_eq(got_index, want_index);
		expect_u64_eq(got_value, want_value);
	}
}

/* for_each_run over [first, last] must be the model clipped to it. */
static void check_runs_in(const struct ccvm_xa *xa, const struct model *m,
			  uint64_t first, uint64_t last, struct run_list *list)
{
	const struct run *r = model_run(m, first);
	size_t i;

	collect_runs(xa, first, last, list);
	for (i = 0; i < list->nr; i++, r++) {
		expect(r < m->runs + m->nr);
		expect_u64_eq(list->runs[i].first, r->first < first ? first : r->first);
		expect_u64_eq(list->runs[i].last, r->last > last ? last : r->last);
		expect_u64_eq(list->runs[i].value, r->value);
	}
	expect_u64_eq(list->runs[list->nr - 1].last, last);
}

/* Checks that are cheap enough after every operation, whatever the space. */
static void check_against_model(const struct ccvm_xa *xa, const struct model *m,
				struct run_list *list)
{
	size_t i;

	check_runs_in(xa, m, 0, UINT64_MAX, list);
	for (i = 0; i < m->nr; i++) {
		check_run_at(xa, m, m->runs[i].first);
		check_run_at(xa, m, m->runs[i].last);
	}
	expect_int_eq(ccvm_xa_empty(xa), m->nr == 1 && m->runs[0].value == 0);
	/* Memory follows the runs: at most two edge paths per run edge. */
	expect_u64_le(xa->nr_nodes, 2 * 11 * m->nr);
	expect_int_eq(ccvm_xa_test_shape(xa, (size_t[CCVM_XA_NR_CLASSES]){ 0 }), 0);
}

/* ------------------------------------------------------------------ */
/* Edge cases                                                          */

START_TEST(test_empty)
{
	struct ccvm_xa xa;
	struct run_list list = { 0 };
	uint64_t last = 0, index = 0, value = 0;

	ccvm_xa_init(&xa);
	expect(ccvm_xa_empty(&xa));
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
	expect_u64_eq(ccvm_xa_load(&xa, 0), 0);
	expect_u64_eq(ccvm_xa_load(&xa, 12345), 0);
	expect_u64_eq(ccvm_xa_load(&xa, UINT64_MAX), 0);
	expect_u64_eq(ccvm_xa_run(&xa, 77, &last), 0);
	expect_u64_eq(last, UINT64_MAX);
	expect(ccvm_xa_range_is(&xa, 0, UINT64_MAX, 0));
	expect(!ccvm_xa_range_is(&xa, 5, 5, 1));
	expect_int_eq(ccvm_xa_find(&xa, &index, UINT64_MAX, &value), -ENOENT);
	collect_runs(&xa, 0, UINT64_MAX, &list);
	expect_u64_eq(list.nr, 1);
	expect_u64_eq(list.runs[0].first, 0);
	expect_u64_eq(list.runs[0].last, UINT64_MAX);
	expect_u64_eq(list.runs[0].value, 0);
	/* Erasing nothing allocates nothing. */
	expect_int_eq(ccvm_xa_store_range(&xa, 100, 1u << 30, 0), 0);
	expect(ccvm_xa_empty(&xa));
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
	ccvm_xa_destroy(&xa);
	free(list.runs);
}
END_TEST

START_TEST(test_index_zero_and_max)
{
	struct ccvm_xa xa;
	uint64_t last = 0, index, value = 0;

	ccvm_xa_init(&xa);
	expect_int_eq(ccvm_xa_store(&xa, 0, 5), 0);
	expect_u64_eq(ccvm_xa_load(&xa, 0), 5);
	expect_u64_eq(ccvm_xa_load(&xa, 1), 0);
	expect_u64_eq(ccvm_xa_load(&xa, UINT64_MAX), 0);
	expect_u64_eq(ccvm_xa_run(&xa, 0, &last), 5);
	expect_u64_eq(last, 0);
	expect_u64_eq(xa.nr_nodes, 0);	/* a lone index 0 lives in the root */

	expect_int_eq(ccvm_xa_store(&xa, UINT64_MAX, 7), 0);
	expect_u64_eq(ccvm_xa_load(&xa, UINT64_MAX), 7);
	expect_u64_eq(ccvm_xa_load(&xa, UINT64_MAX - 1), 0);
	expect_u64_eq(ccvm_xa_load(&xa, 0), 5);
	expect_u64_eq(ccvm_xa_run(&xa, 1, &last), 0);
	expect_u64_eq(last, UINT64_MAX - 1);
	expect_u64_eq(ccvm_xa_run(&xa, UINT64_MAX, &last), 7);
	expect_u64_eq(last, UINT64_MAX);
	expect(ccvm_xa_range_is(&xa, 1, UINT64_MAX - 1, 0));
	expect(!ccvm_xa_range_is(&xa, 1, UINT64_MAX, 0));
	expect(ccvm_xa_range_is(&xa, UINT64_MAX, UINT64_MAX, 7));

	index = 1;
	expect_int_eq(ccvm_xa_find(&xa, &index, UINT64_MAX, &value), 0);
	expect_u64_eq(index, UINT64_MAX);
	expect_u64_eq(value, 7);
	index = 1;
	expect_int_eq(ccvm_xa_find(&xa, &index, UINT64_MAX - 1, &value), -ENOENT);

	expect_int_eq(ccvm_xa_store(&xa, 0, 0), 0);
	expect_int_eq(ccvm_xa_store(&xa, UINT64_MAX, 0), 0);
	expect(ccvm_xa_empty(&xa));
	expect_u64_eq(xa.nr_nodes, 0);
	expect_u64_eq(xa.height, 0);
	ccvm_xa_destroy(&xa);
}
END_TEST

START_TEST(test_whole_index_space)
{
	struct ccvm_xa xa;
	uint64_t last = 0;

	ccvm_xa_init(&xa);
	expect_int_eq(ccvm_xa_store_range(&xa, 0, UINT64_MAX, 9), 0);
	expect_u64_eq(xa.nr_nodes, 0);
	expect_u64_eq(ccvm_xa_load(&xa, 0), 9);
	expect_u64_eq(ccvm_xa_load(&xa, UINT64_MAX), 9);
	expect_u64_eq(ccvm_xa_run(&xa, 1ull << 62, &last), 9);
	expect_u64_eq(last, UINT64_MAX);

	/* Punch everything but both ends, then fill the top half back. */
	expect_int_eq(ccvm_xa_store_range(&xa, 1, UINT64_MAX - 1, 0), 0);
	expect_u64_eq(ccvm_xa_load(&xa, 0), 9);
	expect_u64_eq(ccvm_xa_load(&xa, 1), 0);
	expect_u64_eq(ccvm_xa_load(&xa, UINT64_MAX - 1), 0);
	expect_u64_eq(ccvm_xa_load(&xa, UINT64_MAX), 9);
	expect_int_eq(ccvm_xa_store_range(&xa, 1ull << 63, UINT64_MAX - 1, 9), 0);
	expect_u64_eq(ccvm_xa_run(&xa, 1ull << 63, &last), 9);
	expect_u64_eq(last, UINT64_MAX);
	expect_u64_eq(ccvm_xa_run(&xa, 1, &last), 0);
	expect_u64_eq(last, (1ull << 63) - 1);

	/* Refilling the hole makes the whole space one value again: no nodes. */
	expect_int_eq(ccvm_xa_store_range(&xa, 1, (1ull << 63) - 1, 9), 0);
	expect_u64_eq(xa.nr_nodes, 0);
	expect_u64_eq(ccvm_xa_run(&xa, 0, &last), 9);
	expect_u64_eq(last, UINT64_MAX);

	/* The same, with the halves written in the other order. */
	expect_int_eq(ccvm_xa_store_range(&xa, 0, UINT64_MAX, 0), 0);
	expect(ccvm_xa_empty(&xa));
	expect_int_eq(ccvm_xa_store_range(&xa, 1ull << 63, UINT64_MAX, 4), 0);
	expect_int_eq(ccvm_xa_store_range(&xa, 0, (1ull << 63) - 1, 4), 0);
	expect_u64_eq(xa.nr_nodes, 0);
	expect(ccvm_xa_range_is(&xa, 0, UINT64_MAX, 4));
	ccvm_xa_destroy(&xa);
	expect(ccvm_xa_empty(&xa));
}
END_TEST

START_TEST(test_invalid_arguments)
{
	struct ccvm_xa xa;
	uint64_t index, value = 0;

	ccvm_xa_init(&xa);
	expect_int_eq(ccvm_xa_store_range(&xa, 10, 20, 3), 0);
	expect_int_eq(ccvm_xa_store_range(&xa, 5, 4, 1), -EINVAL);
	expect_int_eq(ccvm_xa_store_range(&xa, UINT64_MAX, 0, 1), -EINVAL);
	expect_int_eq(ccvm_xa_store_range(&xa, 0, 100, CCVM_XA_VALUE_MAX + 1), -EINVAL);
	expect_int_eq(ccvm_xa_store(&xa, 15, UINT64_MAX), -EINVAL);
	expect_int_eq(ccvm_xa_reserve(&xa, 9, 8), -EINVAL);
	expect_int_eq(ccvm_xa_for_each_run(&xa, 9, 8, collect_run, NULL), -EINVAL);
	expect(!ccvm_xa_range_is(&xa, 12, 11, 3));
	expect(!ccvm_xa_range_is(&xa, 12, 12, CCVM_XA_VALUE_MAX + 1));
	index = 30;
	expect_int_eq(ccvm_xa_find(&xa, &index, 29, &value), -ENOENT);
	expect_u64_eq(index, 30);
	/* Nothing above changed the store. */
	expect_u64_eq(ccvm_xa_load(&xa, 9), 0);
	expect_u64_eq(ccvm_xa_load(&xa, 15), 3);
	expect(ccvm_xa_range_is(&xa, 10, 20, 3));
	expect(ccvm_xa_range_is(&xa, 21, 1000, 0));
	expect_u64_eq(xa.nr_spare, 0);

	/* The largest value round-trips. */
	expect_int_eq(ccvm_xa_store_range(&xa, 1000, 1 << 20, CCVM_XA_VALUE_MAX), 0);
	expect_u64_eq(ccvm_xa_load(&xa, 4096), CCVM_XA_VALUE_MAX);
	expect(ccvm_xa_range_is(&xa, 1000, 1 << 20, CCVM_XA_VALUE_MAX));
	ccvm_xa_destroy(&xa);
}
END_TEST

START_TEST(test_overlapping_stores)
{
	struct ccvm_xa xa;
	uint64_t last = 0;

	ccvm_xa_init(&xa);
	expect_int_eq(ccvm_xa_store_range(&xa, 10, 100, 3), 0);
	expect_int_eq(ccvm_xa_store_range(&xa, 50, 60, 4), 0);
	expect_int_eq(ccvm_xa_store_range(&xa, 55, 200, 0), 0);
	expect_u64_eq(ccvm_xa_load(&xa, 9), 0);
	expect_u64_eq(ccvm_xa_load(&xa, 10), 3);
	expect_u64_eq(ccvm_xa_load(&xa, 49), 3);
	expect_u64_eq(ccvm_xa_load(&xa, 50), 4);
	expect_u64_eq(ccvm_xa_load(&xa, 54), 4);
	expect_u64_eq(ccvm_xa_load(&xa, 55), 0);
	expect_u64_eq(ccvm_xa_load(&xa, 100), 0);
	expect_u64_eq(ccvm_xa_run(&xa, 10, &last), 3);
	expect_u64_eq(last, 49);
	expect_u64_eq(ccvm_xa_run(&xa, 52, &last), 4);
	expect_u64_eq(last, 54);
	expect_u64_eq(ccvm_xa_run(&xa, 55, &last), 0);
	expect_u64_eq(last, UINT64_MAX);
	expect_u64_eq(ccvm_xa_run(&xa, 0, &last), 0);
	expect_u64_eq(last, 9);

	/* Same value over a run's neighbour merges them into one run. */
	expect_int_eq(ccvm_xa_store_range(&xa, 50, 54, 3), 0);
	expect_u64_eq(ccvm_xa_run(&xa, 10, &last), 3);
	expect_u64_eq(last, 54);
	/* Storing the value already there changes nothing. */
	expect_int_eq(ccvm_xa_store_range(&xa, 20, 30, 3), 0);
	expect_u64_eq(ccvm_xa_run(&xa, 10, &last), 3);
	expect_u64_eq(last, 54);
	expect_int_eq(ccvm_xa_store_range(&xa, 0, 1000, 0), 0);
	expect(ccvm_xa_empty(&xa));
	expect_u64_eq(xa.nr_nodes, 0);
	ccvm_xa_destroy(&xa);
}
END_TEST

/* Run queries at edges of slots and nodes: 63/64, 4095/4096, 2^18. */
START_TEST(test_run_edges)
{
	static const uint64_t edges[] = { 63, 64, 4095, 4096, (1u << 18) - 1, 1u << 18 };
	struct ccvm_xa xa;
	uint64_t last = 0;
	size_t i;

	ccvm_xa_init(&xa);
	for (i = 0; i + 1 < sizeof(edges) / sizeof(edges[0]); i++)
		expect_int_eq(ccvm_xa_store_range(&xa, edges[i], edges[i + 1] - 1,
						     i + 1), 0);
	for (i = 0; i + 1 < sizeof(edges) / sizeof(edges[0]); i++) {
		uint64_t first = edges[i], end = edges[i + 1] - 1;

		expect_u64_eq(ccvm_xa_run(&xa, first, &last), i + 1);
		expect_u64_eq(last, end);
		expect_u64_eq(ccvm_xa_run(&xa, end, &last), i + 1);
		expect_u64_eq(last, end);
		expect(ccvm_xa_range_is(&xa, first, end, i + 1));
		expect(!ccvm_xa_range_is(&xa, first, end + 1, i + 1));
		if (first)
			expect(!ccvm_xa_range_is(&xa, first - 1, end, i + 1));
	}
	expect_u64_eq(ccvm_xa_run(&xa, 62, &last), 0);
	expect_u64_eq(last, 62);
	expect_u64_eq(ccvm_xa_run(&xa, 1u << 18, &last), 0);
	expect_u64_eq(last, UINT64_MAX);

	/* A run that spans many whole nodes is skipped over, not walked. */
	expect_int_eq(ccvm_xa_store_range(&xa, 5, (1ull << 50) + 3, 8), 0);
	expect_u64_eq(ccvm_xa_run(&xa, 5, &last), 8);
	expect_u64_eq(last, (1ull << 50) + 3);
	expect(ccvm_xa_range_is(&xa, 5, (1ull << 50) + 3, 8));
	expect(!ccvm_xa_range_is(&xa, 5, (1ull << 50) + 4, 8));
	ccvm_xa_destroy(&xa);
}
END_TEST

START_TEST(test_find)
{
	struct ccvm_xa xa;
	uint64_t index, value = 0;

	ccvm_xa_init(&xa);
	expect_int_eq(ccvm_xa_store_range(&xa, 100, 199, 1), 0);
	expect_int_eq(ccvm_xa_store_range(&xa, 1ull << 40, (1ull << 40) + 5, 2), 0);

	index = 0;
	expect_int_eq(ccvm_xa_find(&xa, &index, UINT64_MAX, &value), 0);
	expect_u64_eq(index, 100);
	expect_u64_eq(value, 1);
	index = 150;
	expect_int_eq(ccvm_xa_find(&xa, &index, 150, &value), 0);
	expect_u64_eq(index, 150);
	index = 200;
	expect_int_eq(ccvm_xa_find(&xa, &index, UINT64_MAX, &value), 0);
	expect_u64_eq(index, 1ull << 40);
	expect_u64_eq(value, 2);
	index = 200;
	expect_int_eq(ccvm_xa_find(&xa, &index, (1ull << 40) - 1, &value), -ENOENT);
	index = 200;
	expect_int_eq(ccvm_xa_find(&xa, &index, 1ull << 40, NULL), 0);
	expect_u64_eq(index, 1ull << 40);
	index = (1ull << 40) + 6;
	expect_int_eq(ccvm_xa_find(&xa, &index, UINT64_MAX, &value), -ENOENT);
	index = 0;
	expect_int_eq(ccvm_xa_find(&xa, &index, 99, &value), -ENOENT);
	ccvm_xa_destroy(&xa);
}
END_TEST

START_TEST(test_for_each_run_stops)
{
	struct ccvm_xa xa;
	struct run_list list = { 0 };
	uint64_t i;

	ccvm_xa_init(&xa);
	for (i = 0; i < 10; i++)
		expect_int_eq(ccvm_xa_store_range(&xa, i * 10, i * 10 + 4, i + 1), 0);
	collect_runs(&xa, 3, 42, &list);
	expect_u64_eq(list.nr, 9);
	expect_u64_eq(list.runs[0].first, 3);
	expect_u64_eq(list.runs[0].last, 4);
	expect_u64_eq(list.runs[0].value, 1);
	expect_u64_eq(list.runs[1].first, 5);
	expect_u64_eq(list.runs[1].last, 9);
	expect_u64_eq(list.runs[1].value, 0);
	expect_u64_eq(list.runs[8].first, 40);
	expect_u64_eq(list.runs[8].last, 42);
	expect_u64_eq(list.runs[8].value, 5);
	/* Ten stored runs, each followed by an absent one. */
	collect_runs(&xa, 0, UINT64_MAX, &list);
	expect_u64_eq(list.nr, 20);
	expect_u64_eq(list.runs[19].first, 95);
	expect_u64_eq(list.runs[19].last, UINT64_MAX);
	ccvm_xa_destroy(&xa);
	free(list.runs);
}
END_TEST

static int stop_at_third(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	int *calls = ctx;

	(void)first;
	(void)last;
	(void)value;
	return ++*calls == 3 ? 42 : 0;
}

START_TEST(test_for_each_run_callback_stop)
{
	struct ccvm_xa xa;
	int calls = 0;

	ccvm_xa_init(&xa);
	expect_int_eq(ccvm_xa_store_range(&xa, 10, 19, 1), 0);
	expect_int_eq(ccvm_xa_store_range(&xa, 30, 39, 1), 0);
	expect_int_eq(ccvm_xa_for_each_run(&xa, 0, UINT64_MAX, stop_at_third, &calls), 42);
	expect_int_eq(calls, 3);
	ccvm_xa_destroy(&xa);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Reserve and -ENOMEM                                                 */

START_TEST(test_reserve_then_store)
{
	static const uint64_t values[] = { 0, 1, 2, CCVM_XA_VALUE_MAX };
	struct ccvm_xa xa;
	struct model m;
	struct run_list list = { 0 };
	int op;

	ccvm_xa_init(&xa);
	model_init(&m);
	rng_seed(0x5eed0001);
	for (op = 0; op < 2000; op++) {
		uint64_t first = rng_below(1ull << (rng_below(56) + 1));
		uint64_t last = first + rng_below(1ull << rng_below(50));
		uint64_t value = values[rng_below(4)];
		size_t spare;

		if (rng_below(50) == 0)
			last = UINT64_MAX - rng_below(3);
		if (last < first)
			last = UINT64_MAX;
		expect_int_eq(ccvm_xa_reserve(&xa, first, last), 0);
		spare = xa.nr_spare;
		/* Reserving again for the same store takes nothing more. */
		expect_int_eq(ccvm_xa_reserve(&xa, first, last), 0);
		expect_u64_eq(xa.nr_spare, spare);
		expect_u64_eq(ccvm_xa_memory(&xa), xa.bytes + xa.spare_bytes);

		ccvm_xa_test_fail_alloc(1 << 30);
		expect_int_eq(ccvm_xa_store_range(&xa, first, last, value), 0);
		ccvm_xa_test_fail_alloc(-1);
		/* What the store did not use stays as a bounded cache. */
		expect_u64_le(xa.nr_spare, CACHE_MAX_NODES);
		model_store(&m, first, last, value);
		check_against_model(&xa, &m, &list);
	}
	ccvm_xa_destroy(&xa);
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
	model_free(&m);
	free(list.runs);
}
END_TEST

struct snapshot {
	struct run_list runs;
	uint64_t loads[64];
	size_t nr_nodes;
	size_t nr_spare;
	size_t memory;
	unsigned int height;
	uintptr_t root;
};

/* Edges of slots and nodes at several heights. */
static const uint64_t edge_probes[] = {
	0, 1, 63, 64, 65, 4095, 4096, 4097, 100000, 262143, 262144, 1u << 30,
	(1ull << 36) - 1, 1ull << 36, 1ull << 40, (1ull << 42) + 17, 1ull << 48,
	(1ull << 60) - 1, 1ull << 60, 1ull << 63, UINT64_MAX - 64, UINT64_MAX - 1,
	UINT64_MAX,
};

#define NR_EDGE_PROBES	(sizeof(edge_probes) / sizeof(edge_probes[0]))

/* The edges, then points spread over the whole index space. */
static uint64_t probe_index(size_t i)
{
	return i < NR_EDGE_PROBES ? edge_probes[i] : i * 0x0400000000000401ull;
}

static void take_snapshot(const struct ccvm_xa *xa, struct snapshot *s)
{
	size_t i;

	collect_runs(xa, 0, UINT64_MAX, &s->runs);
	for (i = 0; i < 64; i++)
		s->loads[i] = ccvm_xa_load(xa, probe_index(i));
	s->nr_nodes = xa->nr_nodes;
	s->nr_spare = xa->nr_spare;
	s->memory = ccvm_xa_memory(xa);
	s->height = xa->height;
	s->root = xa->root;
}

static void check_snapshot(const struct ccvm_xa *xa, const struct snapshot *s)
{
	struct snapshot now = { 0 };
	size_t i;

	take_snapshot(xa, &now);
	expect_u64_eq(now.runs.nr, s->runs.nr);
	expect_int_eq(memcmp(now.runs.runs, s->runs.runs,
				s->runs.nr * sizeof(*s->runs.runs)), 0);
	for (i = 0; i < 64; i++)
		expect_u64_eq(now.loads[i], s->loads[i]);
	expect_u64_eq(now.nr_nodes, s->nr_nodes);
	expect_u64_eq(now.nr_spare, s->nr_spare);
	expect_u64_eq(now.memory, s->memory);
	expect_u64_eq(now.height, s->height);
	expect_u64_eq(now.root, s->root);
	free(now.runs.runs);
}

START_TEST(test_enomem_leaves_store_unchanged)
{
	struct ccvm_xa xa;
	struct snapshot before = { 0 };
	size_t per_class[CCVM_XA_NR_CLASSES];
	int i, failures = 0;

	ccvm_xa_init(&xa);
	rng_seed(0x5eed0002);
	for (i = 0; i < 300; i++) {
		uint64_t first = rng_below(1ull << 40);

		expect_int_eq(ccvm_xa_store_range(&xa, first, first + rng_below(1 << 20),
						     rng_below(4)), 0);
	}
	for (i = 0; i < 500; i++) {
		uint64_t first = rng_bits(1 + rng_below(64));
		uint64_t last = first + rng_below(1ull << rng_below(48));
		uint64_t value = rng_below(5);
		int ret;

		if (last < first)
			last = UINT64_MAX;
		take_snapshot(&xa, &before);
		ccvm_xa_test_fail_alloc(1 + (int)rng_below(3));
		ret = ccvm_xa_store_range(&xa, first, last, value);
		if (ret == -ENOMEM) {
			failures++;
			check_snapshot(&xa, &before);
			ccvm_xa_test_fail_alloc(1);
			expect_int_eq(ccvm_xa_reserve(&xa, first, last), -ENOMEM);
			check_snapshot(&xa, &before);
		} else {
			/* Its nodes were kept ones, or came after the failures. */
			expect_int_eq(ret, 0);
			expect_int_eq(ccvm_xa_test_shape(&xa, per_class), 0);
		}
		ccvm_xa_test_fail_alloc(-1);
	}
	/* The seed must have produced plenty of failing stores. */
	expect_int_gt(failures, 200);

	/* A partial reserve is kept, and a failed top-up does not lose it. */
	expect_int_eq(ccvm_xa_store_range(&xa, 0, UINT64_MAX, 0), 0);
	expect_int_eq(ccvm_xa_reserve(&xa, 1000, 1000), 0);
	expect_u64_gt(xa.nr_spare, 0);
	take_snapshot(&xa, &before);
	/* A store falls back on larger kept nodes: let every allocation fail. */
	ccvm_xa_test_fail_alloc(1 << 30);
	expect_int_eq(ccvm_xa_store_range(&xa, 77, (1ull << 50) + 5, 1), -ENOMEM);
	check_snapshot(&xa, &before);
	ccvm_xa_test_fail_alloc(-1);
	expect_int_eq(ccvm_xa_store_range(&xa, 77, (1ull << 50) + 5, 1), 0);
	expect_u64_le(xa.nr_spare, CACHE_MAX_NODES);
	expect(ccvm_xa_range_is(&xa, 77, (1ull << 50) + 5, 1));

	free(before.runs.runs);
	ccvm_xa_destroy(&xa);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Memory                                                              */

START_TEST(test_memory_back_to_zero)
{
	struct ccvm_xa xa;
	uint64_t firsts[400], lasts[400];
	size_t i;

	ccvm_xa_init(&xa);
	rng_seed(0x5eed0003);
	for (i = 0; i < 400; i++) {
		firsts[i] = rng_below(1ull << (rng_below(60) + 1));
		lasts[i] = firsts[i] + rng_below(1ull << rng_below(40));
		expect_int_eq(ccvm_xa_store_range(&xa, firsts[i], lasts[i],
						     1 + rng_below(6)), 0);
	}
	/* Distinct values at every index of a dense stretch, as the page cache does. */
	for (i = 0; i < 5000; i++)
		expect_int_eq(ccvm_xa_store(&xa, (1ull << 33) + i, 1000 + i), 0);
	expect_u64_gt(ccvm_xa_memory(&xa), 0);

	/* Erase piece by piece, so collapsing has to free every node. */
	for (i = 0; i < 5000; i += 2)
		expect_int_eq(ccvm_xa_store(&xa, (1ull << 33) + i, 0), 0);
	expect(!ccvm_xa_empty(&xa));
	for (i = 1; i < 5000; i += 2)
		expect_int_eq(ccvm_xa_store(&xa, (1ull << 33) + i, 0), 0);
	for (i = 0; i < 400; i++)
		expect_int_eq(ccvm_xa_store_range(&xa, firsts[i], lasts[i], 0), 0);
	expect(ccvm_xa_empty(&xa));
	expect_u64_eq(xa.nr_nodes, 0);
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
	expect_u64_eq(xa.height, 0);
	ccvm_xa_destroy(&xa);
}
END_TEST

START_TEST(test_memory_huge_run)
{
	struct ccvm_xa xa;

	ccvm_xa_init(&xa);
	expect_int_eq(ccvm_xa_store_range(&xa, 0, (1ull << 40) - 1, 1), 0);
	expect_u64_le(xa.nr_nodes, 1);
	expect_u64_le(ccvm_xa_memory(&xa), NODE_BYTES);
	expect(ccvm_xa_range_is(&xa, 0, (1ull << 40) - 1, 1));
	expect_u64_eq(ccvm_xa_load(&xa, 1ull << 40), 0);

	/* Unaligned at both ends: two edge paths down to single indices. */
	expect_int_eq(ccvm_xa_store_range(&xa, 12345, (1ull << 40) + 54321, 2), 0);
	expect_u64_le(xa.nr_nodes, 2 * 7);
	expect_u64_eq(ccvm_xa_load(&xa, 12344), 1);
	expect_u64_eq(ccvm_xa_load(&xa, 12345), 2);
	expect_u64_eq(ccvm_xa_load(&xa, (1ull << 40) + 54321), 2);
	expect_u64_eq(ccvm_xa_load(&xa, (1ull << 40) + 54322), 0);
	ccvm_xa_destroy(&xa);
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
}
END_TEST

/* Erasing a far entry takes the height, and the nodes above, back down. */
START_TEST(test_height_shrinks)
{
	struct ccvm_xa xa;
	unsigned int height;
	size_t nodes;

	ccvm_xa_init(&xa);
	expect_int_eq(ccvm_xa_store_range(&xa, 3, 10, 1), 0);
	height = xa.height;
	nodes = xa.nr_nodes;
	expect_u64_eq(height, 1);
	expect_u64_eq(nodes, 1);
	expect_int_eq(ccvm_xa_store(&xa, 1ull << 40, 2), 0);
	expect_u64_gt(xa.height, height);
	expect_int_eq(ccvm_xa_store(&xa, 1ull << 40, 0), 0);
	expect_u64_eq(xa.height, height);
	expect_u64_eq(xa.nr_nodes, nodes);
	expect_u64_eq(ccvm_xa_load(&xa, 5), 1);

	/* A value in slot 0 of a root node moves up into the root itself. */
	expect_int_eq(ccvm_xa_store_range(&xa, 0, 63, 4), 0);
	expect_int_eq(ccvm_xa_store(&xa, UINT64_MAX, 5), 0);
	expect_u64_eq(xa.height, 11);
	expect_int_eq(ccvm_xa_store(&xa, UINT64_MAX, 0), 0);
	expect_u64_eq(xa.height, 1);
	expect_u64_eq(xa.nr_nodes, 0);
	expect(ccvm_xa_range_is(&xa, 0, 63, 4));
	expect(ccvm_xa_range_is(&xa, 64, UINT64_MAX, 0));
	ccvm_xa_destroy(&xa);
}
END_TEST

/*
 * An index beyond the root's span shares its low bits with one inside it:
 * it must read as absent, at every height.
 */
START_TEST(test_beyond_root_span)
{
	struct ccvm_xa xa;
	unsigned int height;

	for (height = 1; height < 11; height++) {
		uint64_t span = 1ull << (6 * height);
		uint64_t last = 0;

		ccvm_xa_init(&xa);
		expect_int_eq(ccvm_xa_store_range(&xa, span - 2, span - 1, 3), 0);
		expect_u64_eq(xa.height, height);
		expect_u64_eq(ccvm_xa_load(&xa, span - 1), 3);
		expect_u64_eq(ccvm_xa_load(&xa, span + span - 1), 0);
		expect_u64_eq(ccvm_xa_load(&xa, UINT64_MAX), 0);
		expect_u64_eq(ccvm_xa_run(&xa, span - 2, &last), 3);
		expect_u64_eq(last, span - 1);
		expect_u64_eq(ccvm_xa_run(&xa, span, &last), 0);
		expect_u64_eq(last, UINT64_MAX);
		ccvm_xa_destroy(&xa);
	}
}
END_TEST

/* The page cache: one distinct value per index costs about 8 bytes each. */
START_TEST(test_memory_dense_distinct)
{
	struct ccvm_xa xa;
	uint64_t i, n = 1u << 16;

	ccvm_xa_init(&xa);
	for (i = 0; i < n; i++)
		expect_int_eq(ccvm_xa_store(&xa, (1ull << 30) + i, i + 1), 0);
	expect_u64_le(ccvm_xa_memory(&xa), n * sizeof(uintptr_t) * 103 / 100);
	for (i = 0; i < n; i++)
		expect_u64_eq(ccvm_xa_load(&xa, (1ull << 30) + i), i + 1);
	ccvm_xa_destroy(&xa);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Randomized comparison against the model                             */

/* Windows of 4096 indices: at 0, across a 2^36 boundary, at the very top. */
static const uint64_t dense_bases[] = { 0, (1ull << 36) - 2000, UINT64_MAX - 4095 };

START_TEST(test_random_dense)
{
	const uint64_t base = dense_bases[_i];
	const uint64_t size = 4096;
	struct ccvm_xa xa;
	struct model m;
	struct run_list list = { 0 };
	int op, k;

	ccvm_xa_init(&xa);
	model_init(&m);
	rng_seed(0xd15ea5e + _i);
	for (op = 0; op < 4000; op++) {
		uint64_t first = base + rng_below(size);
		uint64_t len = 1 + rng_below(1ull << rng_below(13));
		uint64_t last = first + len - 1 > base + size - 1 || first + len - 1 < first ?
				base + size - 1 : first + len - 1;
		uint64_t value = rng_below(4);
		uint64_t i;
		int ret;

		switch (rng_below(10)) {
		case 0:
			/* A failed store must change nothing. */
			ccvm_xa_test_fail_alloc(1);
			ret = ccvm_xa_store_range(&xa, first, last, value);
			ccvm_xa_test_fail_alloc(-1);
			expect(ret == 0 || ret == -ENOMEM);
			if (ret == 0)
				model_store(&m, first, last, value);
			break;
		case 1:
			expect_int_eq(ccvm_xa_reserve(&xa, first, last), 0);
			ccvm_xa_test_fail_alloc(1 << 30);
			expect_int_eq(ccvm_xa_store_range(&xa, first, last, value), 0);
			ccvm_xa_test_fail_alloc(-1);
			model_store(&m, first, last, value);
			break;
		default:
			expect_int_eq(ccvm_xa_store_range(&xa, first, last, value), 0);
			model_store(&m, first, last, value);
			break;
		}

		for (i = 0; i < size; i++)
			expect_u64_eq(ccvm_xa_load(&xa, base + i),
					  model_run(&m, base + i)->value);
		if (base)
			expect_u64_eq(ccvm_xa_load(&xa, base - 1), 0);
		if (base + size)
			expect_u64_eq(ccvm_xa_load(&xa, base + size), 0);
		check_against_model(&xa, &m, &list);
		for (k = 0; k < 16; k++) {
			uint64_t a = base + rng_below(size), b;

			check_run_at(&xa, &m, a);
			/* Half the ranges end inside the run at a, so both answers occur. */
			b = k & 1 ? a + rng_below(size - (a - base)) :
				    a + rng_below(model_run(&m, a)->last - a + 1);
			check_range_is(&xa, &m, a, b);
			check_find(&xa, &m, a, k & 2 ? UINT64_MAX : b);
		}
		{
			uint64_t a = base + rng_below(size);
			uint64_t b = a + rng_below(size - (a - base));

			check_runs_in(&xa, &m, a, b, &list);
		}
	}
	/* Erase what is left in pieces: no node may survive. */
	for (op = 0; op < 64; op++)
		expect_int_eq(ccvm_xa_store_range(&xa, base + op * 64, base + op * 64 + 63, 0), 0);
	expect(ccvm_xa_empty(&xa));
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
	ccvm_xa_destroy(&xa);
	model_free(&m);
	free(list.runs);
}
END_TEST

/*
 * The one-walk calls of a page-cache miss (ccvm_xa_load_leaf(), then
 * ccvm_xa_reserve_leaf() and ccvm_xa_store_leaf() with the leaf it gave)
 * against ccvm_xa_load(), ccvm_xa_reserve() and ccvm_xa_store() on a twin:
 * the same answers, contents, node shapes and memory after every step, in
 * fills (distinct values, in order and not) and over fragmented stores,
 * with failing allocations now and then.
 */
START_TEST(test_leaf_calls_twin)
{
	const uint64_t base = dense_bases[_i];
	const uint64_t size = 4096;
	struct ccvm_xa a, b;
	int op;

	ccvm_xa_init(&a);
	ccvm_xa_init(&b);
	rng_seed(0x1eaf + _i);
	for (op = 0; op < 20000; op++) {
		uint64_t i = op < 6000 ? base + (uint64_t)op % size : base + rng_below(size);
		uint64_t value = op % 3 ? (uint64_t)op + 1 : rng_below(4);
		size_t pa[CCVM_XA_NR_CLASSES] = { 0 }, pb[CCVM_XA_NR_CLASSES] = { 0 };
		uintptr_t leaf;
		int ra, rb, k;

		if (rng_below(16) == 0) {
			uint64_t last = i + rng_below(300);

			if (last > base + size - 1 || last < i)
				last = base + size - 1;
			expect_int_eq(ccvm_xa_store_range(&a, i, last, rng_below(3)), 0);
			expect_int_eq(ccvm_xa_store_range(&b, i, last, ccvm_xa_load(&a, i)), 0);
			continue;
		}
		expect_u64_eq(ccvm_xa_load_leaf(&b, i, &leaf), ccvm_xa_load(&a, i));
		if (rng_below(8) == 0) {
			ccvm_xa_test_fail_alloc(1);
			ra = ccvm_xa_reserve(&a, i, i);
			ccvm_xa_test_fail_alloc(1);
			rb = ccvm_xa_reserve_leaf(&b, i, leaf);
			ccvm_xa_test_fail_alloc(-1);
		} else {
			ra = ccvm_xa_reserve(&a, i, i);
			rb = ccvm_xa_reserve_leaf(&b, i, leaf);
		}
		expect_int_eq(rb, ra);
		expect_u64_eq(ccvm_xa_memory(&b), ccvm_xa_memory(&a));
		if (!ra) {
			/* Reserved: the store cannot fail. */
			ccvm_xa_test_fail_alloc(1 << 30);
			expect_int_eq(ccvm_xa_store(&a, i, value), 0);
			expect_int_eq(ccvm_xa_store_leaf(&b, i, leaf, value), 0);
			ccvm_xa_test_fail_alloc(-1);
		}
		expect_u64_eq(ccvm_xa_memory(&b), ccvm_xa_memory(&a));
		expect_int_eq(ccvm_xa_test_shape(&a, pa), 0);
		expect_int_eq(ccvm_xa_test_shape(&b, pb), 0);
		for (k = 0; k < CCVM_XA_NR_CLASSES; k++)
			expect_u64_eq(pb[k], pa[k]);
		for (k = 0; k < 8; k++) {
			uint64_t j = base + rng_below(size);

			expect_u64_eq(ccvm_xa_load(&b, j), ccvm_xa_load(&a, j));
		}
	}
	for (op = 0; op < (int)size; op++)
		expect_u64_eq(ccvm_xa_load(&b, base + op), ccvm_xa_load(&a, base + op));
	ccvm_xa_destroy(&a);
	ccvm_xa_destroy(&b);
}
END_TEST

START_TEST(test_random_sparse)
{
	struct ccvm_xa xa;
	struct model m;
	struct run_list list = { 0 };
	int op, k;

	ccvm_xa_init(&xa);
	model_init(&m);
	rng_seed(0x5ba75e);
	for (op = 0; op < 3000; op++) {
		uint64_t first = rng_below(1ull << 48);
		uint64_t last = first + rng_below(1ull << rng_below(40));
		uint64_t value = rng_below(5);
		int ret;

		/* Now and then reach the top of the index space or its bottom. */
		switch (rng_below(40)) {
		case 0:
			last = UINT64_MAX - rng_below(2);
			break;
		case 1:
			first = 0;
			break;
		}
		if (rng_below(8) == 0) {
			ccvm_xa_test_fail_alloc(1 + (int)rng_below(2));
			ret = ccvm_xa_store_range(&xa, first, last, value);
			ccvm_xa_test_fail_alloc(-1);
			expect(ret == 0 || ret == -ENOMEM);
			if (ret == 0)
				model_store(&m, first, last, value);
		} else {
			expect_int_eq(ccvm_xa_store_range(&xa, first, last, value), 0);
			model_store(&m, first, last, value);
		}

		check_against_model(&xa, &m, &list);
		for (k = 0; k < 32; k++) {
			const struct run *r = &m.runs[rng_below(m.nr)];
			uint64_t a = rng_between(r->first, r->last);
			/* Half the ranges end inside the run at a, so both answers occur. */
			uint64_t b = k & 1 ? a + rng_below(1ull << 44) : rng_between(a, r->last);

			if (b < a)
				b = UINT64_MAX;
			check_run_at(&xa, &m, a);
			check_run_at(&xa, &m, rng_below(1ull << 49));
			check_range_is(&xa, &m, a, b);
			check_find(&xa, &m, a, k & 2 ? UINT64_MAX : b);
			check_runs_in(&xa, &m, a, b, &list);
		}
	}
	expect_int_eq(ccvm_xa_store_range(&xa, 0, 1ull << 49, 0), 0);
	expect_int_eq(ccvm_xa_store_range(&xa, 1ull << 49, UINT64_MAX, 0), 0);
	expect(ccvm_xa_empty(&xa));
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
	ccvm_xa_destroy(&xa);
	model_free(&m);
	free(list.runs);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Node forms: run nodes in several sizes, plain nodes                 */

/* The class a node of @runs runs takes: the smallest that holds them. */
static unsigned int class_for_runs(unsigned int runs)
{
	unsigned int cls = 0;

	while (ccvm_xa_test_class_runs(cls) < runs)
		cls++;
	return cls;
}

/* The tree is sound and has exactly the nodes counted in @want. */
static void expect_classes(const struct ccvm_xa *xa, const size_t *want)
{
	size_t got[CCVM_XA_NR_CLASSES], bytes = 0;
	unsigned int cls;

	expect_int_eq(ccvm_xa_test_shape(xa, got), 0);
	for (cls = 0; cls < CCVM_XA_NR_CLASSES; cls++) {
		expect_u64_eq(got[cls], want[cls]);
		bytes += want[cls] * ccvm_xa_test_class_bytes(cls);
	}
	expect_u64_eq(xa->bytes, bytes);
	expect_u64_eq(ccvm_xa_memory(xa), xa->bytes + xa->spare_bytes);
}

/*
 * A root (height 2) with one leaf under slot 1 (indices 64..127) and a
 * value in slot 63, so the leaf's changes show in both.
 */
static void leaf_setup(struct ccvm_xa *xa)
{
	ccvm_xa_init(xa);
	expect_int_eq(ccvm_xa_store_range(xa, 4032, 4095, 99), 0);
	expect_u64_eq(xa->height, 2);
	expect_u64_eq(xa->nr_nodes, 1);
}

/* Classes a leaf of @runs runs under the leaf_setup() root gives. */
static void want_leaf(size_t *want, unsigned int root_runs, unsigned int runs)
{
	memset(want, 0, CCVM_XA_NR_CLASSES * sizeof(*want));
	want[class_for_runs(root_runs)]++;
	if (runs)
		want[class_for_runs(runs)]++;
}

/* One leaf through every class and back, one run at a time. */
START_TEST(test_classes_grow_and_shrink)
{
	size_t want[CCVM_XA_NR_CLASSES];
	struct ccvm_xa xa;
	unsigned int k;

	leaf_setup(&xa);
	for (k = 1; k <= 64; k++) {
		/* Distinct values at 64..64+k-1, absent after: k + 1 runs, 64 at most. */
		expect_int_eq(ccvm_xa_store(&xa, 63 + k, 1000 + k), 0);
		want_leaf(want, 4, k < 64 ? k + 1 : 64);
		expect_classes(&xa, want);
		expect_u64_eq(ccvm_xa_load(&xa, 63 + k), 1000 + k);
		if (k < 64)
			expect_u64_eq(ccvm_xa_load(&xa, 64 + k), 0);
	}
	/* Back down from the top: the node moves to each smaller class. */
	for (k = 64; k >= 2; k--) {
		expect_int_eq(ccvm_xa_store(&xa, 63 + k, 0), 0);
		want_leaf(want, 4, k);
		expect_classes(&xa, want);
	}
	/* The last value goes: the leaf collapses, the root keeps slot 63. */
	expect_int_eq(ccvm_xa_store(&xa, 64, 0), 0);
	want_leaf(want, 2, 0);
	expect_classes(&xa, want);
	expect(ccvm_xa_range_is(&xa, 0, 4031, 0));
	expect_int_eq(ccvm_xa_store_range(&xa, 4032, 4095, 0), 0);
	expect(ccvm_xa_empty(&xa));
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
	ccvm_xa_destroy(&xa);
}
END_TEST

/* Collapses: partly (merging into the parent's runs) and from a plain node. */
START_TEST(test_collapse_forms)
{
	size_t want[CCVM_XA_NR_CLASSES];
	struct ccvm_xa xa;
	uint64_t last = 0;
	unsigned int k;

	leaf_setup(&xa);
	/* Two halves of one leaf, then the second half takes the first's value. */
	expect_int_eq(ccvm_xa_store_range(&xa, 64, 95, 5), 0);
	expect_int_eq(ccvm_xa_store_range(&xa, 96, 127, 6), 0);
	want_leaf(want, 4, 2);
	expect_classes(&xa, want);
	expect_int_eq(ccvm_xa_store_range(&xa, 96, 127, 5), 0);
	want_leaf(want, 4, 0);
	expect_classes(&xa, want);
	expect_u64_eq(ccvm_xa_run(&xa, 64, &last), 5);
	expect_u64_eq(last, 127);
	/* Its neighbours take the value too: the root's runs merge to three. */
	expect_int_eq(ccvm_xa_store_range(&xa, 0, 63, 5), 0);
	expect_int_eq(ccvm_xa_store_range(&xa, 128, 4031, 5), 0);
	want_leaf(want, 2, 0);
	expect_classes(&xa, want);
	expect_int_eq(ccvm_xa_store_range(&xa, 0, 4095, 0), 0);
	expect(ccvm_xa_empty(&xa));

	/* A plain leaf (64 distinct values) made uniform but for its last slot. */
	leaf_setup(&xa);
	for (k = 0; k < 64; k++)
		expect_int_eq(ccvm_xa_store(&xa, 64 + k, 500 + k), 0);
	want_leaf(want, 4, 64);
	expect_classes(&xa, want);
	expect_int_eq(ccvm_xa_store_range(&xa, 64, 126, 3), 0);
	want_leaf(want, 4, 2);
	expect_classes(&xa, want);
	/* Then fully covered from its parent: freed without being visited. */
	expect_int_eq(ccvm_xa_store_range(&xa, 60, 130, 0), 0);
	want_leaf(want, 2, 0);
	expect_classes(&xa, want);
	/* And a plain leaf that collapses straight into a value. */
	for (k = 0; k < 64; k++)
		expect_int_eq(ccvm_xa_store(&xa, 64 + k, 500 + k), 0);
	expect_int_eq(ccvm_xa_store_range(&xa, 65, 127, 500), 0);
	want_leaf(want, 4, 0);
	expect_classes(&xa, want);
	expect(ccvm_xa_range_is(&xa, 64, 127, 500));
	ccvm_xa_destroy(&xa);
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
}
END_TEST

/*
 * A leaf with exactly as many runs as class @_i holds, then a value in the
 * middle of one of its runs (two more runs): the store needs a larger
 * node.  Without memory it fails and changes nothing, at each step of
 * taking its nodes; after a reserve it cannot fail.
 */
START_TEST(test_reserve_at_each_class)
{
	unsigned int cls = (unsigned int)_i;
	unsigned int runs = ccvm_xa_test_class_runs(cls), k, skip;
	size_t want[CCVM_XA_NR_CLASSES];
	struct snapshot before = { 0 };
	struct ccvm_xa xa;
	uint64_t mid;

	leaf_setup(&xa);
	/* runs - 1 stored runs of two indices each from 64, then absent. */
	for (k = 0; k + 1 < runs; k++)
		expect_int_eq(ccvm_xa_store_range(&xa, 64 + 2 * k, 65 + 2 * k, 1 + k), 0);
	want_leaf(want, 4, runs);
	expect_classes(&xa, want);
	mid = 64 + 2 * (runs - 1) + 3;	/* inside the absent run */
	for (skip = 0; skip < 3; skip++) {
		/* Nodes kept from earlier stores would serve this one: none. */
		ccvm_xa_test_drop_spare(&xa);
		take_snapshot(&xa, &before);
		ccvm_xa_test_fail_alloc_from((int)skip, 1 << 30);
		if (ccvm_xa_store(&xa, mid, 77) == 0) {
			/* It needed fewer allocations than skip let through. */
			expect_int_gt((int)skip, 0);
			ccvm_xa_test_fail_alloc(-1);
			expect_int_eq(ccvm_xa_store(&xa, mid, 0), 0);
			ccvm_xa_test_drop_spare(&xa);
			take_snapshot(&xa, &before);
		} else {
			check_snapshot(&xa, &before);
		}
		ccvm_xa_test_fail_alloc(1 << 30);
		expect_int_eq(ccvm_xa_reserve(&xa, mid, mid), -ENOMEM);
		check_snapshot(&xa, &before);
		ccvm_xa_test_fail_alloc(-1);
	}
	ccvm_xa_test_drop_spare(&xa);
	expect_int_eq(ccvm_xa_reserve(&xa, mid, mid), 0);
	expect_u64_gt(xa.nr_spare, 0);
	ccvm_xa_test_fail_alloc(1 << 30);
	expect_int_eq(ccvm_xa_store(&xa, mid, 77), 0);
	ccvm_xa_test_fail_alloc(-1);
	want_leaf(want, 4, runs + 2);
	expect_classes(&xa, want);
	expect_u64_eq(ccvm_xa_load(&xa, mid), 77);
	expect_u64_eq(ccvm_xa_load(&xa, mid - 1), 0);
	expect_u64_eq(ccvm_xa_load(&xa, mid + 1), 0);

	free(before.runs.runs);
	ccvm_xa_destroy(&xa);
}
END_TEST

/* New nodes all the way down, and a taller root: each allocation can fail. */
START_TEST(test_enomem_fresh_chain_and_growth)
{
	struct snapshot before = { 0 };
	struct ccvm_xa xa;
	int skip, ret, failed = 0;

	ccvm_xa_init(&xa);
	expect_int_eq(ccvm_xa_store_range(&xa, 0, (1ull << 30) - 1, 4), 0);
	expect_int_eq(ccvm_xa_store(&xa, 1ull << 30, 2), 0);
	take_snapshot(&xa, &before);
	for (skip = 0; skip < 16; skip++) {
		/* A single index deep inside the run: a new node per level. */
		ccvm_xa_test_fail_alloc_from(skip, 1 << 30);
		ret = ccvm_xa_store(&xa, 12345678, 9);
		ccvm_xa_test_fail_alloc(-1);
		if (ret == 0)
			break;
		expect_int_eq(ret, -ENOMEM);
		check_snapshot(&xa, &before);
		failed++;
	}
	expect_int_gt(failed, 3);
	expect_u64_eq(ccvm_xa_load(&xa, 12345678), 9);
	expect_u64_eq(ccvm_xa_load(&xa, 12345677), 4);
	expect_int_eq(ccvm_xa_store(&xa, 12345678, 4), 0);

	/* The top of the index space: the root grows by several levels. */
	take_snapshot(&xa, &before);
	failed = 0;
	for (skip = 0; skip < 32; skip++) {
		ccvm_xa_test_fail_alloc_from(skip, 1 << 30);
		ret = ccvm_xa_store_range(&xa, UINT64_MAX - 70, UINT64_MAX, 3);
		ccvm_xa_test_fail_alloc(-1);
		if (ret == 0)
			break;
		expect_int_eq(ret, -ENOMEM);
		check_snapshot(&xa, &before);
		failed++;
	}
	expect_int_gt(failed, 5);
	expect_u64_eq(xa.height, 11);
	expect(ccvm_xa_range_is(&xa, UINT64_MAX - 70, UINT64_MAX, 3));
	expect(ccvm_xa_range_is(&xa, (1ull << 30) + 1, UINT64_MAX - 71, 0));
	expect_int_eq(ccvm_xa_test_shape(&xa, (size_t[CCVM_XA_NR_CLASSES]){ 0 }), 0);
	free(before.runs.runs);
	ccvm_xa_destroy(&xa);
}
END_TEST

/*
 * Flipping pages one at a time inside a run needs a new node per level and
 * frees them again: after the first flip every one comes from the cache,
 * none from malloc.
 */
START_TEST(test_cache_serves_flips)
{
	struct ccvm_xa xa;
	unsigned long allocs;
	unsigned int pass;
	uint64_t g;

	const uint64_t mid = (1 << 20) + 7 * 4096 + 7 * 64 + 7;

	ccvm_xa_init(&xa);
	expect_int_eq(ccvm_xa_store_range(&xa, 1 << 20, (2 << 20) - 1, 8), 0);
	/* In the middle of a node at every level: three runs each, the most. */
	expect_int_eq(ccvm_xa_store(&xa, mid, 0), 0);
	expect_int_eq(ccvm_xa_store(&xa, mid, 8), 0);
	expect_u64_gt(xa.nr_spare, 0);
	allocs = ccvm_xa_test_nr_allocs();
	ccvm_xa_test_fail_alloc(1 << 30);
	for (g = 1 << 20; g < (1 << 20) + 100000; g += 7) {
		expect_int_eq(ccvm_xa_store(&xa, g, 0), 0);
		expect_u64_eq(ccvm_xa_load(&xa, g), 0);
		expect_int_eq(ccvm_xa_store(&xa, g, 8), 0);
	}
	ccvm_xa_test_fail_alloc(-1);
	expect_u64_eq(ccvm_xa_test_nr_allocs(), allocs);
	/*
	 * Without the injection a store may also take a smaller node for one
	 * whose runs shrank (a wish the injection refused above): a few, once,
	 * until the cache holds them.  After that pass, none at all.
	 */
	for (pass = 0; pass < 2; pass++) {
		allocs = ccvm_xa_test_nr_allocs();
		for (g = 1 << 20; g < (1 << 20) + 100000; g += 7) {
			expect_int_eq(ccvm_xa_store(&xa, g, 0), 0);
			expect_int_eq(ccvm_xa_store(&xa, g, 8), 0);
		}
		expect_u64_le(ccvm_xa_test_nr_allocs() - allocs,
			      pass ? 0 : CCVM_XA_NR_CLASSES * CCVM_XA_CACHE_PER_CLASS);
	}
	expect(ccvm_xa_range_is(&xa, 1 << 20, (2 << 20) - 1, 8));
	expect_u64_le(xa.nr_spare, CACHE_MAX_NODES);
	/* Erasing everything gives the cache back too. */
	expect_int_eq(ccvm_xa_store_range(&xa, 0, UINT64_MAX, 0), 0);
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
	ccvm_xa_destroy(&xa);
}
END_TEST

/*
 * A page cache filling up one index at a time, each a different value (a
 * pfn): a new node every 64 stores at most, plus the levels above, not
 * one per store; the run nodes a leaf grows through come back from the
 * cache for the next leaf.
 */
START_TEST(test_dense_fill_allocs)
{
	const uint64_t n = 64 * 1024;
	struct ccvm_xa xa;
	unsigned long allocs;
	uint64_t i;

	ccvm_xa_init(&xa);
	allocs = ccvm_xa_test_nr_allocs();
	for (i = 0; i < n; i++)
		expect_int_eq(ccvm_xa_store(&xa, i, 1000 + i), 0);
	for (i = 0; i < n; i += 997)
		expect_u64_eq(ccvm_xa_load(&xa, i), 1000 + i);
	/*
	 * 1024 leaves, 16 nodes above them, 1 root; and the first node of
	 * each of the three levels grows through the run classes before the
	 * cache holds the nodes the others grow through.
	 */
	expect_u64_le(ccvm_xa_test_nr_allocs() - allocs,
		      n / 64 + n / 4096 + 1 + 3 * CCVM_XA_NR_CLASSES);
	ccvm_xa_destroy(&xa);
}
END_TEST

/*
 * The fragmented map of bench_xarray (runs of 1..1024 indices, two values
 * alternating): memory per run stays a few words.  Fixed 64-slot nodes
 * took about 550 bytes per run here.
 */
START_TEST(test_memory_fragmented)
{
	const unsigned int nr_runs = 20000;
	struct ccvm_xa xa;
	uint64_t start = 0;
	unsigned int i;

	ccvm_xa_init(&xa);
	rng_seed(0x5eed0004);
	for (i = 0; i < nr_runs; i++) {
		uint64_t len = 1 + rng_below(1024);

		expect_int_eq(ccvm_xa_store_range(&xa, start, start + len - 1, i & 1 ? 0 : 8), 0);
		start += len;
	}
	expect_int_eq(ccvm_xa_test_shape(&xa, (size_t[CCVM_XA_NR_CLASSES]){ 0 }), 0);
	expect_u64_le(xa.bytes, 64 * nr_runs);
	ccvm_xa_destroy(&xa);
}
END_TEST

/*
 * The shape check covers the mask of classes holding more free nodes than
 * the cache keeps (the store's closing trim tests only the mask): a large
 * reserve sets it, a trim clears it, and a wrong bit either way is caught.
 */
START_TEST(test_shape_checks_spare_mask)
{
	size_t per_class[CCVM_XA_NR_CLASSES];
	unsigned int cls, over = CCVM_XA_NR_CLASSES;
	struct ccvm_xa xa;
	uint64_t i;

	ccvm_xa_init(&xa);
	/* Distinct values every other index: nothing merges, every node is full. */
	for (i = 0; i < 64 * 64; i += 2)
		expect_int_eq(ccvm_xa_store(&xa, i, 1 + i), 0);
	/* A reserve for one store over all of them: more than the cache keeps. */
	ccvm_xa_test_drop_spare(&xa);
	expect_int_eq(ccvm_xa_reserve(&xa, 0, 64 * 64 * 64), 0);
	for (cls = 0; cls < CCVM_XA_NR_CLASSES; cls++)
		if (xa.nr_spare_class[cls] > CCVM_XA_CACHE_PER_CLASS)
			over = cls;
	ck_assert_uint_lt(over, CCVM_XA_NR_CLASSES);
	expect_int_eq(ccvm_xa_test_shape(&xa, per_class), 0);
	ck_assert_uint_ne(xa.spare_over & (1u << over), 0);
	xa.spare_over &= ~(1u << over);
	expect_int_eq(ccvm_xa_test_shape(&xa, per_class), -EUCLEAN);
	xa.spare_over |= 1u << over;
	/* A store trims to the cache size: the mask empties with it. */
	expect_int_eq(ccvm_xa_store_range(&xa, 0, 64 * 64 - 1, 0), 0);
	expect_int_eq(xa.spare_over, 0);
	expect_int_eq(ccvm_xa_test_shape(&xa, per_class), 0);
	xa.spare_over |= 1u << over;
	expect_int_eq(ccvm_xa_test_shape(&xa, per_class), -EUCLEAN);
	xa.spare_over = 0;
	ccvm_xa_destroy(&xa);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Differential test against a flat array, millions of operations      */

#define FLAT_SIZE	(1u << 14)

/* Windows: at 0, across a 2^36 boundary, at the very top of the space. */
static const uint64_t flat_bases[] = { 0, (1ull << 36) - 5000, UINT64_MAX - FLAT_SIZE + 1 };

static void flat_check_all(const struct ccvm_xa *xa, const uint64_t *flat, uint64_t base,
			   struct run_list *list)
{
	size_t i, r = 0;
	uint64_t at = base;

	for (i = 0; i < FLAT_SIZE; i++)
		expect_u64_eq(ccvm_xa_load(xa, base + i), flat[i]);
	/* The runs, clipped to the window, must be the array's runs. */
	collect_runs(xa, base, base + FLAT_SIZE - 1, list);
	for (i = 0; i < FLAT_SIZE; i++) {
		if (i && flat[i] != flat[i - 1]) {
			expect_u64_eq(list->runs[r].last, base + i - 1);
			r++;
			at = base + i;
		}
		expect(r < list->nr);
		expect_u64_eq(list->runs[r].first, at);
		expect_u64_eq(list->runs[r].value, flat[i]);
	}
	expect_u64_eq(r + 1, list->nr);
	expect_int_eq(ccvm_xa_test_shape(xa, (size_t[CCVM_XA_NR_CLASSES]){ 0 }), 0);
	/* Nothing outside the window. */
	if (base)
		expect(ccvm_xa_range_is(xa, 0, base - 1, 0));
	if (base + FLAT_SIZE)
		expect(ccvm_xa_range_is(xa, base + FLAT_SIZE, UINT64_MAX, 0));
}

START_TEST(test_random_flat)
{
	const uint64_t base = flat_bases[_i];
	uint64_t *flat = calloc(FLAT_SIZE, sizeof(*flat));
	struct run_list list = { 0 };
	struct ccvm_xa xa;
	long op, ops = 700000;
	int failures = 0;

	expect_nonnull(flat);
	ccvm_xa_init(&xa);
	rng_seed(0xf1a7 + _i);
	for (op = 0; op < ops; op++) {
		uint64_t first = rng_below(FLAT_SIZE), len, value, i, last;
		unsigned int kind = (unsigned int)rng_below(100);
		int ret;

		len = kind < 30 ? 1 : 1 + rng_below(1ull << rng_below(15));
		last = first + len - 1 >= FLAT_SIZE ? FLAT_SIZE - 1 : first + len - 1;
		/* Few values (runs merge) or one per index (the page cache). */
		value = kind < 20 ? ((base + first) & 0xffffffff) + 1 : rng_below(4);
		if (kind >= 20 && kind < 25)
			value = CCVM_XA_VALUE_MAX - rng_below(2);

		if (kind >= 90 && kind < 95) {
			/* Reserved: must not fail even with no memory at all. */
			expect_int_eq(ccvm_xa_reserve(&xa, base + first, base + last), 0);
			ccvm_xa_test_fail_alloc(1 << 30);
			ret = ccvm_xa_store_range(&xa, base + first, base + last, value);
			ccvm_xa_test_fail_alloc(-1);
			expect_int_eq(ret, 0);
		} else if (kind >= 95) {
			/* Memory runs out after a few allocations: all or nothing. */
			ccvm_xa_test_drop_spare(&xa);
			ccvm_xa_test_fail_alloc_from((int)rng_below(3), 1 << 30);
			ret = ccvm_xa_store_range(&xa, base + first, base + last, value);
			ccvm_xa_test_fail_alloc(-1);
			expect(ret == 0 || ret == -ENOMEM);
			if (ret) {
				failures++;
				continue;
			}
		} else {
			expect_int_eq(ccvm_xa_store_range(&xa, base + first, base + last, value), 0);
		}
		for (i = first; i <= last; i++)
			flat[i] = value;

		expect_u64_eq(ccvm_xa_load(&xa, base + first), flat[first]);
		expect_u64_eq(ccvm_xa_load(&xa, base + last), flat[last]);
		if (first)
			expect_u64_eq(ccvm_xa_load(&xa, base + first - 1), flat[first - 1]);
		if (last + 1 < FLAT_SIZE)
			expect_u64_eq(ccvm_xa_load(&xa, base + last + 1), flat[last + 1]);
		for (i = 0; i < 4; i++) {
			uint64_t at = rng_below(FLAT_SIZE);

			expect_u64_eq(ccvm_xa_load(&xa, base + at), flat[at]);
		}
		/* Now and then the whole window, and the store's invariants. */
		if ((op & 8191) == 0 || op == ops - 1)
			flat_check_all(&xa, flat, base, &list);
		/* Now and then empty it, so small trees get their turn. */
		if (rng_below(50000) == 0) {
			expect_int_eq(ccvm_xa_store_range(&xa, base, base + FLAT_SIZE - 1, 0), 0);
			memset(flat, 0, FLAT_SIZE * sizeof(*flat));
			expect(ccvm_xa_empty(&xa));
			expect_u64_eq(ccvm_xa_memory(&xa), 0);
		}
	}
	expect_int_gt(failures, 1000);
	expect_int_eq(ccvm_xa_store_range(&xa, base, base + FLAT_SIZE - 1, 0), 0);
	expect(ccvm_xa_empty(&xa));
	expect_u64_eq(ccvm_xa_memory(&xa), 0);
	ccvm_xa_destroy(&xa);
	free(list.runs);
	free(flat);
}
END_TEST

Suite *xarray_suite(void)
{
	Suite *s = suite_create("xarray");
	TCase *tc;

	tc = tcase_create("edges");
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_index_zero_and_max);
	tcase_add_test(tc, test_whole_index_space);
	tcase_add_test(tc, test_invalid_arguments);
	tcase_add_test(tc, test_overlapping_stores);
	tcase_add_test(tc, test_run_edges);
	tcase_add_test(tc, test_find);
	tcase_add_test(tc, test_for_each_run_stops);
	tcase_add_test(tc, test_for_each_run_callback_stop);
	suite_add_tcase(s, tc);

	tc = tcase_create("reserve");
	tcase_add_test(tc, test_reserve_then_store);
	tcase_add_test(tc, test_enomem_leaves_store_unchanged);
	suite_add_tcase(s, tc);

	tc = tcase_create("memory");
	tcase_add_test(tc, test_memory_back_to_zero);
	tcase_add_test(tc, test_memory_huge_run);
	tcase_add_test(tc, test_memory_dense_distinct);
	tcase_add_test(tc, test_height_shrinks);
	tcase_add_test(tc, test_beyond_root_span);
	suite_add_tcase(s, tc);

	tc = tcase_create("forms");
	tcase_add_test(tc, test_classes_grow_and_shrink);
	tcase_add_test(tc, test_collapse_forms);
	tcase_add_loop_test(tc, test_reserve_at_each_class, 0, CCVM_XA_NR_CLASSES - 1);
	tcase_add_test(tc, test_enomem_fresh_chain_and_growth);
	tcase_add_test(tc, test_cache_serves_flips);
	tcase_add_test(tc, test_dense_fill_allocs);
	tcase_add_test(tc, test_memory_fragmented);
	tcase_add_test(tc, test_shape_checks_spare_mask);
	suite_add_tcase(s, tc);

	tc = tcase_create("random");
	/* Many thousand checked operations: seconds under a sanitizer. */
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_random_dense, 0,
			    sizeof(dense_bases) / sizeof(dense_bases[0]));
	tcase_add_test(tc, test_random_sparse);
	tcase_add_loop_test(tc, test_leaf_calls_twin, 0,
			    sizeof(dense_bases) / sizeof(dense_bases[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("flat");
	/* 700,000 checked operations per window. */
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_random_flat, 0,
			    sizeof(flat_bases) / sizeof(flat_bases[0]));
	suite_add_tcase(s, tc);
	return s;
}
