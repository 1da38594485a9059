/* SPDX-License-Identifier: MIT */
/*
 * Benchmark of the range-capable radix store (lib/xarray.c):
 *  1. converting a 64 GiB gfn range with one range store, against the same
 *     store written one entry per 4 KiB page as KVM does;
 *  2. random point lookups in a map of 100,000 runs, against JudyL holding
 *     run start -> value and answering with JudyLLast();
 *  3. memory per run of that map, for both.
 *
 * Build: gcc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Ilib bench/bench_xarray.c \
 *            lib/xarray.c -lJudy
 * Every figure is the best of several repetitions; exits non-zero if a
 * store fails or the two maps disagree.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <Judy.h>

#include "xarray.h"

#define FLIP_BASE_GFN		0x100000ull	/* 4 GiB: where RAM above the hole starts */
#define FLIP_PAGES		(1ull << 24)	/* 64 GiB of 4 KiB pages */
#define FLIP_VALUE		8		/* KVM_MEMORY_ATTRIBUTE_PRIVATE */
#define RANGE_REPEATS		50
/* A per-page pass slower than this is measured on a prefix and scaled. */
#define PER_PAGE_BUDGET_NS	8000000000ull

#define NR_RUNS			100000
#ifndef MAX_RUN_PAGES
/* Run lengths are uniform in [1, MAX_RUN_PAGES]; -D to try other maps. */
#define MAX_RUN_PAGES		1024ull
#endif
#define NR_LOOKUPS		(1u << 22)
#define LOOKUP_REPEATS		5

/* Keeps the compiler from dropping lookups whose results are unused. */
static volatile uint64_t sink;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* splitmix64, fixed seed: the same map and lookups on every run. */
static uint64_t rng_state = 0xbe7c4a11;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int fail(const char *what)
{
	fprintf(stderr, "bench_xarray: %s\n", what);
	return EXIT_FAILURE;
}

/* One pass storing @value page by page over the first @pages of the flip range. */
static int store_per_page(struct ccvm_xa *xa, uint64_t pages, uint64_t value,
			  uint64_t *ns)
{
	uint64_t gfn, start = now_ns();

	for (gfn = FLIP_BASE_GFN; gfn < FLIP_BASE_GFN + pages; gfn++) {
		if (ccvm_xa_store(xa, gfn, value))
			return -1;
	}
	*ns = now_ns() - start;
	return 0;
}

static int bench_flip(void)
{
	const uint64_t last = FLIP_BASE_GFN + FLIP_PAGES - 1;
	uint64_t range_set = UINT64_MAX, range_clear = UINT64_MAX;
	uint64_t page_set = UINT64_MAX, page_clear = UINT64_MAX;
	uint64_t pages = FLIP_PAGES, t, ns;
	double scale = 1.0;
	struct ccvm_xa xa;
	int i;

	ccvm_xa_init(&xa);
	for (i = 0; i < RANGE_REPEATS; i++) {
		t = now_ns();
		if (ccvm_xa_store_range(&xa, FLIP_BASE_GFN, last, FLIP_VALUE))
			return fail("range store failed");
		ns = now_ns() - t;
		range_set = ns < range_set ? ns : range_set;
		if (!ccvm_xa_range_is(&xa, FLIP_BASE_GFN, last, FLIP_VALUE))
			return fail("range store did not take");

		t = now_ns();
		if (ccvm_xa_store_range(&xa, FLIP_BASE_GFN, last, 0))
			return fail("range erase failed");
		ns = now_ns() - t;
		range_clear = ns < range_clear ? ns : range_clear;
		if (!ccvm_xa_empty(&xa))
			return fail("range erase did not take");
	}

	/* A 1/16 pilot decides whether a full per-page pass fits the budget. */
	if (store_per_page(&xa, FLIP_PAGES / 16, FLIP_VALUE, &ns) ||
	    store_per_page(&xa, FLIP_PAGES / 16, 0, &t))
		return fail("per-page store failed");
	if ((ns + t) * 16 / 2 > PER_PAGE_BUDGET_NS) {
		pages = FLIP_PAGES / 16;
		scale = 16.0;
	}
	for (i = 0; i < 2; i++) {
		if (store_per_page(&xa, pages, FLIP_VALUE, &ns))
			return fail("per-page store failed");
		page_set = ns < page_set ? ns : page_set;
		if (!ccvm_xa_range_is(&xa, FLIP_BASE_GFN, FLIP_BASE_GFN + pages - 1, FLIP_VALUE))
			return fail("per-page store did not take");
		if (store_per_page(&xa, pages, 0, &ns))
			return fail("per-page erase failed");
		page_clear = ns < page_clear ? ns : page_clear;
		if (!ccvm_xa_empty(&xa))
			return fail("per-page erase did not take");
	}
	ccvm_xa_destroy(&xa);

	printf("1. Flip 64 GiB (%llu x 4 KiB pages, gfn 0x%llx..0x%llx) to %d and back to 0\n",
	       (unsigned long long)FLIP_PAGES, (unsigned long long)FLIP_BASE_GFN,
	       (unsigned long long)last, FLIP_VALUE);
	printf("   ccvm_xa_store_range, one call each way (best of %d):\n", RANGE_REPEATS);
	printf("     set %10.3f us   clear %10.3f us   total %10.3f us\n",
	       range_set / 1e3, range_clear / 1e3, (range_set + range_clear) / 1e3);
	if (scale > 1.0)
		printf("   ccvm_xa_store per page (best of 2; measured on %llu pages,"
		       " scaled x%.0f):\n", (unsigned long long)pages, scale);
	else
		printf("   ccvm_xa_store per page, %llu stores each way (best of 2):\n",
		       (unsigned long long)pages);
	printf("     set %10.3f ms   clear %10.3f ms   total %10.3f ms   (%.1f ns/store)\n",
	       page_set * scale / 1e6, page_clear * scale / 1e6,
	       (page_set + page_clear) * scale / 1e6,
	       (double)(page_set + page_clear) / (2.0 * (double)pages));
	printf("   range store is %.0fx faster (set %.0fx, clear %.0fx; goal >= 1000x)\n\n",
	       (page_set + page_clear) * scale / (double)(range_set + range_clear),
	       page_set * scale / (double)range_set, page_clear * scale / (double)range_clear);
	return 0;
}

static int bench_lookup(void)
{
	uint64_t *keys, start = 0, span, i, t, ns, sum_xa = 0, sum_judy = 0;
	uint64_t best_xa = UINT64_MAX, best_judy = UINT64_MAX;
	Pvoid_t judy = NULL;
	struct ccvm_xa xa;
	Word_t judy_bytes;
	PWord_t slot;
	int rep, ret = EXIT_FAILURE;

	keys = malloc(NR_LOOKUPS * sizeof(*keys));
	if (!keys)
		return fail("out of memory");
	ccvm_xa_init(&xa);
	for (i = 0; i < NR_RUNS; i++) {
		uint64_t len = 1 + rng_next() % MAX_RUN_PAGES;
		uint64_t value = i & 1 ? 0 : FLIP_VALUE;

		if (ccvm_xa_store_range(&xa, start, start + len - 1, value)) {
			fail("building the run map failed");
			goto out;
		}
		JLI(slot, judy, (Word_t)start);
		if (slot == PJERR) {
			fail("JudyLIns failed");
			goto out;
		}
		*slot = value;
		start += len;
	}
	span = start;
	for (i = 0; i < NR_LOOKUPS; i++)
		keys[i] = rng_next() % span;

	for (rep = 0; rep < LOOKUP_REPEATS; rep++) {
		uint64_t sum = 0;

		t = now_ns();
		for (i = 0; i < NR_LOOKUPS; i++)
			sum += ccvm_xa_load(&xa, keys[i]);
		ns = now_ns() - t;
		sink = sum;
		best_xa = ns < best_xa ? ns : best_xa;
		sum_xa = sum;

		sum = 0;
		t = now_ns();
		for (i = 0; i < NR_LOOKUPS; i++) {
			Word_t index = keys[i];

			slot = (PWord_t)JudyLLast(judy, &index, PJE0);
			sum += slot ? *slot : 0;
		}
		ns = now_ns() - t;
		sink = sum;
		best_judy = ns < best_judy ? ns : best_judy;
		sum_judy = sum;
	}
	if (sum_xa != sum_judy) {
		fail("xarray and JudyL disagree on the lookups");
		goto out;
	}

	judy_bytes = JudyLMemUsed(judy);
	printf("2. Random point lookups: %d runs (lengths 1..%llu pages, values %d/0 alternating,"
	       " %llu pages), %u lookups, best of %d\n",
	       NR_RUNS, (unsigned long long)MAX_RUN_PAGES, FLIP_VALUE,
	       (unsigned long long)span, NR_LOOKUPS, LOOKUP_REPEATS);
	printf("     ccvm_xa_load        %7.1f ns/lookup\n", (double)best_xa / NR_LOOKUPS);
	printf("     JudyLLast           %7.1f ns/lookup\n", (double)best_judy / NR_LOOKUPS);
	printf("     xarray/JudyL time   %7.2f (goal <= 2.00; below 1 means xarray is faster)\n\n",
	       (double)best_xa / (double)best_judy);
	printf("3. Memory for that map\n");
	printf("     xarray  %10zu bytes  %8.1f bytes/run  (%zu nodes)\n",
	       ccvm_xa_memory(&xa), (double)ccvm_xa_memory(&xa) / NR_RUNS, xa.nr_nodes);
	printf("     JudyL   %10lu bytes  %8.1f bytes/run\n",
	       (unsigned long)judy_bytes, (double)judy_bytes / NR_RUNS);
	printf("     xarray/JudyL memory %.1f\n",
	       (double)ccvm_xa_memory(&xa) / (double)judy_bytes);
	ret = 0;
out:
	JudyLFreeArray(&judy, PJE0);
	ccvm_xa_destroy(&xa);
	free(keys);
	return ret;
}

int main(void)
{
	if (bench_flip())
		return EXIT_FAILURE;
	if (bench_lookup())
		return EXIT_FAILURE;
	return EXIT_SUCCESS;
}
