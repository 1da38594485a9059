/* SPDX-License-Identifier: MIT */
/*
 * bench_xarray: libccvm's range store and attribute queries against peers
 * measured in the same run.
 *
 *  1. Flip 64 GiB of gfns private then shared, over a range aligned to
 *     2^18 pages and over one whose ends are no multiple of 512 pages:
 *       - libccvm's range store (ccvm_xa_store_range), one call each way;
 *       - the public API (ccvm_vm_set_memory_attributes) on a mock VM with
 *         one memslot over the range, so the invalidation and the per-2M
 *         tracking are in;
 *       - a flat byte array (memset over the range), a bitmap (set, clear);
 *       - JudyL per gfn as KVM's xarray does it: a reservation and a store
 *         per page (JudyLIns then JudyLGet and write; JudyLGet then
 *         JudyLDel), two Judy operations per page each way.
 *  2. Random point lookups in two maps of 100,000 runs of alternating
 *     private and shared pages, run lengths 1..16 and 1..1024 pages:
 *     ccvm_xa_load, the public point query, the public run query, against
 *     JudyLGet in a JudyL holding every private gfn (KVM's map) and
 *     JudyLLast in a JudyL of run starts.
 *  3. Memory of the 1..1024 map: the xarray against that JudyL of run
 *     starts.
 *  4. Conversion cost follows what is allocated, not the range: on each
 *     backend, a VM with one memslot of the largest size the API accepts
 *     (2^31 - 1 pages, nothing allocated) flips an empty 64 GiB range and
 *     then the whole slot; TDX and SNP against mock, the slot against the
 *     issue's 10 ms bound.  Then 256 private pages are mapped, spread over
 *     the slot (the slot flipped) or packed (a 1 MiB range flipped): the
 *     two should cost alike.  SNP runs twice: as upstream (no RMP work at
 *     a conversion) and with study 004's posted RMP update, which walks
 *     the pages gmem holds.
 *
 * Every figure is the minimum over its repetitions, with the median next
 * to it; SUMMARY lines (see bench/README.md) carry the goals.  Exits
 * non-zero if a store fails or two answers disagree.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <Judy.h>

#include <ccvm/ccvm.h>

#include "xarray.h"

#define PAGE_SHIFT		12
#define FLIP_BASE_GFN		0x100000ull	/* 4 GiB: where RAM above the hole starts */
#define FLIP_PAGES		(1ull << 24)	/* 64 GiB of 4 KiB pages */
/* The memslot (and the arrays) cover the flip range and this much more. */
#define SLOT_PAGES		(FLIP_PAGES + (1ull << 18))
#define PRIV			CCVM_MEMORY_ATTRIBUTE_PRIVATE

#define FAST_REPS		31	/* microseconds per pass */
#define ARRAY_REPS		11	/* milliseconds per pass */
#define JUDY_REPS		3	/* seconds per pass */

#define NR_RUNS			100000
#define NR_LOOKUPS		(1u << 21)
#define LOOKUP_REPS		5

/* Keeps the compiler from dropping work whose results are unused. */
static volatile uint64_t sink;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* splitmix64, fixed seed: the same ranges, maps and lookups on every run. */
static uint64_t rng_state = 0xbe7c4a11;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void die(const char *what)
{
	fprintf(stderr, "bench_xarray: %s\n", what);
	exit(EXIT_FAILURE);
}

#define CHECK(expr)							\
	do {								\
		int err_ = (expr);					\
		if (err_) {						\
			fprintf(stderr, "bench_xarray: %s:%d: %s: %s\n", \
				__FILE__, __LINE__, #expr, ccvm_strerror(err_)); \
			exit(EXIT_FAILURE);				\
		}							\
	} while (0)

/* Repetitions of one measurement: min and median. */
struct timing {
	uint64_t ns[64];
	unsigned int n;
};

static void timing_add(struct timing *t, uint64_t ns)
{
	if (t->n < sizeof(t->ns) / sizeof(t->ns[0]))
		t->ns[t->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double timing_min(struct timing *t)
{
	qsort(t->ns, t->n, sizeof(t->ns[0]), cmp_u64);
	return (double)t->ns[0];
}

static double timing_median(struct timing *t)
{
	qsort(t->ns, t->n, sizeof(t->ns[0]), cmp_u64);
	return (double)t->ns[t->n / 2];
}

/* "12.3 us" style: @ns in the unit that keeps 3-4 digits. */
static const char *fmt_ns(char *buf, size_t len, double ns)
{
	if (ns < 1e3)
		snprintf(buf, len, "%.1f ns", ns);
	else if (ns < 1e6)
		snprintf(buf, len, "%.1f us", ns / 1e3);
	else if (ns < 1e9)
		snprintf(buf, len, "%.1f ms", ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", ns / 1e9);
	return buf;
}

/* One figure: min and median of @t divided by @div (operations per pass). */
static void print_timing(const char *what, struct timing *t, double div, const char *per)
{
	char a[32], b[32];

	printf("     %-36s min %10s   median %10s%s\n", what,
	       fmt_ns(a, sizeof(a), timing_min(t) / div),
	       fmt_ns(b, sizeof(b), timing_median(t) / div), per ? per : "");
}

/*
 * One SUMMARY line (bench/README.md): @ratio is how the goal compares, met
 * is "yes", "no", or "-" for a figure reported without a goal.
 */
static void summary(const char *goal, const char *ours, const char *peer, double ratio,
		    const char *met)
{
	printf("SUMMARY|%s|%s|%s|%.2fx|%s\n", goal, ours, peer, ratio, met);
}

/* ------------------------------------------------------------------ */
/* 1. Flipping 64 GiB                                                  */

struct flip_range {
	const char *name;
	uint64_t first, last;		/* gfns */
};

/* The public API's VM: one memslot (gmem-backed) over the flip range and more. */
struct api_vm {
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	void *shared;
};

static void api_vm_up(struct api_vm *a)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = "mock");
	struct ccvm_memory_region r = {
		.slot = 0,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = FLIP_BASE_GFN << PAGE_SHIFT,
		.memory_size = SLOT_PAGES << PAGE_SHIFT,
	};

	/* Never touched: the mapping costs no RAM. */
	a->shared = mmap(NULL, r.memory_size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (a->shared == MAP_FAILED)
		die("mmap failed");
	CHECK(ccvm_platform_create(&po, &a->p));
	CHECK(ccvm_vm_create(a->p, NULL, &a->vm));
	CHECK(ccvm_gmem_create(a->vm, r.memory_size, 0, &a->g));
	r.gmem = a->g;
	r.userspace_addr = a->shared;
	CHECK(ccvm_vm_set_user_memory_region(a->vm, &r));
}

static void api_vm_down(struct api_vm *a)
{
	CHECK(ccvm_gmem_close(a->g));
	CHECK(ccvm_vm_close(a->vm));
	CHECK(ccvm_platform_destroy(a->p));
	munmap(a->shared, SLOT_PAGES << PAGE_SHIFT);
}

static void bitmap_assign(uint64_t *bm, uint64_t first, uint64_t last, bool set)
{
	uint64_t fw = first / 64, lw = last / 64;
	uint64_t fmask = ~0ull << (first % 64), lmask = ~0ull >> (63 - last % 64);

	if (fw == lw) {
		fmask &= lmask;
		bm[fw] = set ? bm[fw] | fmask : bm[fw] & ~fmask;
		return;
	}
	bm[fw] = set ? bm[fw] | fmask : bm[fw] & ~fmask;
	memset(bm + fw + 1, set ? 0xff : 0, (lw - fw - 1) * sizeof(*bm));
	bm[lw] = set ? bm[lw] | lmask : bm[lw] & ~lmask;
}

static void judy_flip(Pvoid_t *judy, uint64_t first, uint64_t last, bool set)
{
	uint64_t g;

	if (set) {
		/* kvm_vm_set_mem_attributes(): xa_reserve() each, then xa_store() each. */
		for (g = first; g <= last; g++) {
			if (JudyLIns(judy, (Word_t)g, PJE0) == PJERR)
				die("JudyLIns failed");
		}
		for (g = first; g <= last; g++) {
			PWord_t slot = (PWord_t)JudyLGet(*judy, (Word_t)g, PJE0);

			if (!slot)
				die("JudyLGet lost a reserved gfn");
			*slot = PRIV;
		}
	} else {
		/* Shared is no entry: the reservation finds the entry, the store erases it. */
		for (g = first; g <= last; g++) {
			if (!JudyLGet(*judy, (Word_t)g, PJE0))
				die("JudyLGet lost a private gfn");
		}
		for (g = first; g <= last; g++) {
			if (JudyLDel(judy, (Word_t)g, PJE0) != 1)
				die("JudyLDel failed");
		}
	}
}

struct flip_result {
	struct timing xa, api, memset, bitmap, judy;
};

static void bench_flip_range(const struct flip_range *fr, struct api_vm *a, uint8_t *flat,
			     uint64_t *bm, struct flip_result *res)
{
	uint64_t pages = fr->last - fr->first + 1;
	uint64_t gpa = fr->first << PAGE_SHIFT, size = pages << PAGE_SHIFT;
	uint64_t off = fr->first - FLIP_BASE_GFN, t, v;
	struct ccvm_xa xa;
	Pvoid_t judy = NULL;
	Word_t freed;
	int i;

	ccvm_xa_init(&xa);
	for (i = 0; i < FAST_REPS; i++) {
		t = now_ns();
		if (ccvm_xa_store_range(&xa, fr->first, fr->last, PRIV) ||
		    ccvm_xa_store_range(&xa, fr->first, fr->last, 0))
			die("range store failed");
		timing_add(&res->xa, now_ns() - t);
	}
	if (!ccvm_xa_empty(&xa))
		die("range store did not take");
	ccvm_xa_destroy(&xa);

	for (i = 0; i < FAST_REPS; i++) {
		t = now_ns();
		CHECK(ccvm_vm_set_memory_attributes(a->vm, gpa, size, PRIV, 0));
		CHECK(ccvm_vm_set_memory_attributes(a->vm, gpa, size, 0, 0));
		timing_add(&res->api, now_ns() - t);
	}
	CHECK(ccvm_vm_get_memory_attribute(a->vm, gpa, &v));
	if (v)
		die("public API flip did not take");

	for (i = 0; i < ARRAY_REPS; i++) {
		t = now_ns();
		memset(flat + off, PRIV, pages);
		sink = flat[off + pages / 2];
		memset(flat + off, 0, pages);
		sink = flat[off + pages / 3];
		timing_add(&res->memset, now_ns() - t);

		t = now_ns();
		bitmap_assign(bm, off, off + pages - 1, true);
		sink = bm[(off + pages / 2) / 64];
		bitmap_assign(bm, off, off + pages - 1, false);
		sink = bm[(off + pages / 3) / 64];
		timing_add(&res->bitmap, now_ns() - t);
	}

	for (i = 0; i < JUDY_REPS; i++) {
		t = now_ns();
		judy_flip(&judy, fr->first, fr->last, true);
		judy_flip(&judy, fr->first, fr->last, false);
		timing_add(&res->judy, now_ns() - t);
		if (judy)
			die("JudyL flip left entries");
	}
	freed = JudyLFreeArray(&judy, PJE0);
	(void)freed;
}

static void flip_summary(const char *name, struct flip_result *r)
{
	double api = timing_min(&r->api), mset = timing_min(&r->memset), judy = timing_min(&r->judy);
	char goal[96], ours[48], peer[48], a[32];

	snprintf(ours, sizeof(ours), "public API %s", fmt_ns(a, sizeof(a), api));
	snprintf(goal, sizeof(goal), "flip 64 GiB %s: public API >= 50x faster than memset", name);
	snprintf(peer, sizeof(peer), "memset %s", fmt_ns(a, sizeof(a), mset));
	summary(goal, ours, peer, mset / api, mset / api >= 50 ? "yes" : "no");
	snprintf(goal, sizeof(goal), "flip 64 GiB %s: public API >= 1000x faster than JudyL/gfn",
		 name);
	snprintf(peer, sizeof(peer), "JudyL/gfn %s", fmt_ns(a, sizeof(a), judy));
	summary(goal, ours, peer, judy / api, judy / api >= 1000 ? "yes" : "no");
}

static void bench_flip(void)
{
	struct flip_range ranges[2] = {
		{ "aligned", FLIP_BASE_GFN, FLIP_BASE_GFN + FLIP_PAGES - 1 },
		{ "unaligned", 0, 0 },
	};
	struct flip_result res[2];
	uint64_t first, last;
	struct api_vm a;
	uint8_t *flat;
	uint64_t *bm;
	unsigned int i;

	/* Random ends, neither a multiple of 512 pages (nor of 2^18). */
	do {
		first = FLIP_BASE_GFN + 1 + rng_next() % ((1ull << 18) - 2);
		last = first + FLIP_PAGES - 1 - rng_next() % (1ull << 17);
	} while (!(first % 512) || !((last + 1) % 512));
	ranges[1].first = first;
	ranges[1].last = last;

	flat = malloc(SLOT_PAGES);
	bm = malloc(SLOT_PAGES / 8);
	if (!flat || !bm)
		die("out of memory");
	/* Fault the peers' arrays in first: their first touch is not the flip. */
	memset(flat, 0, SLOT_PAGES);
	memset(bm, 0, SLOT_PAGES / 8);
	memset(res, 0, sizeof(res));
	api_vm_up(&a);

	printf("1. Flip 64 GiB private then shared (min and median of each pass)\n");
	for (i = 0; i < 2; i++) {
		struct flip_range *fr = &ranges[i];
		struct flip_result *r = &res[i];
		char pp[64];

		bench_flip_range(fr, &a, flat, bm, r);
		printf("   %s: gfn %#" PRIx64 "..%#" PRIx64 " (%" PRIu64 " pages)\n", fr->name,
		       fr->first, fr->last, fr->last - fr->first + 1);
		print_timing("ccvm_xa_store_range, 2 calls", &r->xa, 1, NULL);
		print_timing("ccvm_vm_set_memory_attributes x2", &r->api, 1, NULL);
		print_timing("flat byte array: memset x2", &r->memset, 1, NULL);
		print_timing("bitmap: set, clear", &r->bitmap, 1, NULL);
		snprintf(pp, sizeof(pp), "   (%.1f ns/page)",
			 timing_min(&r->judy) / (double)(fr->last - fr->first + 1));
		print_timing("JudyL per gfn, 2 ops/page each way", &r->judy, 1, pp);
		printf("     public API: %.0fx memset, %.0fx bitmap, %.0fx JudyL/gfn;"
		       " range store: %.0fx memset, %.0fx JudyL/gfn\n",
		       timing_min(&r->memset) / timing_min(&r->api),
		       timing_min(&r->bitmap) / timing_min(&r->api),
		       timing_min(&r->judy) / timing_min(&r->api),
		       timing_min(&r->memset) / timing_min(&r->xa),
		       timing_min(&r->judy) / timing_min(&r->xa));
	}
	printf("\n");
	for (i = 0; i < 2; i++)
		flip_summary(ranges[i].name, &res[i]);
	api_vm_down(&a);
	free(flat);
	free(bm);
}

/* ------------------------------------------------------------------ */
/* 2, 3. Lookups and memory                                            */

struct run_map {
	uint64_t max_len;
	uint64_t span;			/* pages */
	struct ccvm_xa xa;
	Pvoid_t judy_gfn;		/* every private gfn -> value */
	Pvoid_t judy_runs;		/* run start -> value */
	struct api_vm_nomem {
		struct ccvm_platform *p;
		struct ccvm_vm *vm;
	} api;
};

static void run_map_build(struct run_map *m, uint64_t max_len)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = "mock");
	uint64_t start = 0, i, g;
	PWord_t slot;

	m->max_len = max_len;
	ccvm_xa_init(&m->xa);
	m->judy_gfn = NULL;
	m->judy_runs = NULL;
	CHECK(ccvm_platform_create(&po, &m->api.p));
	CHECK(ccvm_vm_create(m->api.p, NULL, &m->api.vm));
	for (i = 0; i < NR_RUNS; i++) {
		uint64_t len = 1 + rng_next() % max_len;
		uint64_t value = i & 1 ? 0 : PRIV;

		if (ccvm_xa_store_range(&m->xa, start, start + len - 1, value))
			die("building the run map failed");
		slot = (PWord_t)JudyLIns(&m->judy_runs, (Word_t)start, PJE0);
		if (slot == PJERR)
			die("JudyLIns failed");
		*slot = value;
		if (value) {
			/* No memslot: the attribute store alone, as the lookups see it. */
			CHECK(ccvm_vm_set_memory_attributes(m->api.vm, start << PAGE_SHIFT,
							    len << PAGE_SHIFT, value, 0));
			for (g = start; g < start + len; g++) {
				slot = (PWord_t)JudyLIns(&m->judy_gfn, (Word_t)g, PJE0);
				if (slot == PJERR)
					die("JudyLIns failed");
				*slot = value;
			}
		}
		start += len;
	}
	m->span = start;
}

static void run_map_free(struct run_map *m)
{
	JudyLFreeArray(&m->judy_gfn, PJE0);
	JudyLFreeArray(&m->judy_runs, PJE0);
	ccvm_xa_destroy(&m->xa);
	CHECK(ccvm_vm_close(m->api.vm));
	CHECK(ccvm_platform_destroy(m->api.p));
}

struct lookup_result {
	struct timing xa, point, run, judy_get, judy_last;
};

static void bench_lookups(struct run_map *m, const uint64_t *keys, struct lookup_result *r)
{
	uint64_t sums[5], i, t, v, bytes;
	int rep;

	for (rep = 0; rep < LOOKUP_REPS; rep++) {
		memset(sums, 0, sizeof(sums));

		t = now_ns();
		for (i = 0; i < NR_LOOKUPS; i++)
			sums[0] += ccvm_xa_load(&m->xa, keys[i]);
		timing_add(&r->xa, now_ns() - t);

		t = now_ns();
		for (i = 0; i < NR_LOOKUPS; i++) {
			ccvm_vm_get_memory_attribute(m->api.vm, keys[i] << PAGE_SHIFT, &v);
			sums[1] += v;
		}
		timing_add(&r->point, now_ns() - t);

		t = now_ns();
		for (i = 0; i < NR_LOOKUPS; i++) {
			ccvm_vm_get_memory_attributes(m->api.vm, keys[i] << PAGE_SHIFT, &v, &bytes);
			sums[2] += v;
			sink = bytes;
		}
		timing_add(&r->run, now_ns() - t);

		t = now_ns();
		for (i = 0; i < NR_LOOKUPS; i++) {
			PWord_t slot = (PWord_t)JudyLGet(m->judy_gfn, (Word_t)keys[i], PJE0);

			sums[3] += slot ? *slot : 0;
		}
		timing_add(&r->judy_get, now_ns() - t);

		t = now_ns();
		for (i = 0; i < NR_LOOKUPS; i++) {
			Word_t index = keys[i];
			PWord_t slot = (PWord_t)JudyLLast(m->judy_runs, &index, PJE0);

			sums[4] += slot ? *slot : 0;
		}
		timing_add(&r->judy_last, now_ns() - t);

		for (i = 1; i < 5; i++) {
			if (sums[i] != sums[0])
				die("the lookups disagree");
		}
		sink = sums[0];
	}
}

static void lookup_summary(uint64_t max_len, struct lookup_result *r)
{
	double point = timing_min(&r->point) / NR_LOOKUPS;
	double run = timing_min(&r->run) / NR_LOOKUPS;
	double get = timing_min(&r->judy_get) / NR_LOOKUPS;
	char goal[96], ours[48], peer[48], a[32];

	snprintf(goal, sizeof(goal), "point query, runs 1..%" PRIu64 ": public <= 1.5x JudyLGet",
		 max_len);
	snprintf(ours, sizeof(ours), "public point %s", fmt_ns(a, sizeof(a), point));
	snprintf(peer, sizeof(peer), "JudyLGet/gfn %s", fmt_ns(a, sizeof(a), get));
	summary(goal, ours, peer, point / get, point / get <= 1.5 ? "yes" : "no");
	snprintf(goal, sizeof(goal), "run query, runs 1..%" PRIu64 ": public vs JudyLGet (report)",
		 max_len);
	snprintf(ours, sizeof(ours), "public run %s", fmt_ns(a, sizeof(a), run));
	summary(goal, ours, peer, run / get, "-");
}

static void bench_maps(void)
{
	static const uint64_t max_lens[2] = { 16, 1024 };
	struct lookup_result res[2];
	size_t xa_bytes = 0;
	Word_t judy_bytes = 0, judy_gfn_bytes = 0;
	uint64_t *keys;
	unsigned int i;
	uint64_t k;

	keys = malloc(NR_LOOKUPS * sizeof(*keys));
	if (!keys)
		die("out of memory");
	memset(res, 0, sizeof(res));
	printf("2. Random point lookups: %d runs, private and shared alternating,"
	       " %u lookups (min and median per lookup)\n", NR_RUNS, NR_LOOKUPS);
	for (i = 0; i < 2; i++) {
		struct lookup_result *r = &res[i];
		struct run_map m;

		run_map_build(&m, max_lens[i]);
		for (k = 0; k < NR_LOOKUPS; k++)
			keys[k] = rng_next() % m.span;
		bench_lookups(&m, keys, r);
		printf("   runs of 1..%" PRIu64 " pages (%" PRIu64 " pages):\n", m.max_len, m.span);
		print_timing("ccvm_xa_load", &r->xa, NR_LOOKUPS, NULL);
		print_timing("ccvm_vm_get_memory_attribute", &r->point, NR_LOOKUPS, NULL);
		print_timing("ccvm_vm_get_memory_attributes", &r->run, NR_LOOKUPS,
			     "   (with run_bytes)");
		print_timing("JudyLGet, JudyL per gfn", &r->judy_get, NR_LOOKUPS, NULL);
		print_timing("JudyLLast, JudyL of run starts", &r->judy_last, NR_LOOKUPS, NULL);
		printf("     point query %.2fx JudyLGet, run query %.2fx JudyLGet\n",
		       timing_min(&r->point) / timing_min(&r->judy_get),
		       timing_min(&r->run) / timing_min(&r->judy_get));
		if (i == 1) {
			xa_bytes = ccvm_xa_memory(&m.xa);
			judy_bytes = JudyLMemUsed(m.judy_runs);
			judy_gfn_bytes = JudyLMemUsed(m.judy_gfn);
		}
		run_map_free(&m);
	}
	printf("\n3. Memory for the 1..1024 map (%d runs)\n", NR_RUNS);
	printf("     xarray              %10zu bytes  %6.1f bytes/run\n", xa_bytes,
	       (double)xa_bytes / NR_RUNS);
	printf("     JudyL of run starts %10lu bytes  %6.1f bytes/run\n", (unsigned long)judy_bytes,
	       (double)judy_bytes / NR_RUNS);
	printf("     JudyL per gfn       %10lu bytes  %6.1f bytes/run\n",
	       (unsigned long)judy_gfn_bytes, (double)judy_gfn_bytes / NR_RUNS);
	printf("     xarray/JudyL of run starts %.2f\n\n", (double)xa_bytes / (double)judy_bytes);

	for (i = 0; i < 2; i++)
		lookup_summary(max_lens[i], &res[i]);
	{
		char ours[48], peer[48];

		snprintf(ours, sizeof(ours), "%.1f B/run", (double)xa_bytes / NR_RUNS);
		snprintf(peer, sizeof(peer), "JudyL run starts %.1f B/run",
			 (double)judy_bytes / NR_RUNS);
		summary("memory, fragmented map: xarray <= 4x JudyL", ours, peer,
			(double)xa_bytes / (double)judy_bytes,
			xa_bytes <= 4 * (size_t)judy_bytes ? "yes" : "no");
	}
	free(keys);
}

/* ------------------------------------------------------------------ */
/* 4. Empty conversions on every backend                               */

#define BIG_SLOT_PAGES		((1ull << 31) - 1)	/* KVM_MEM_MAX_NR_PAGES */
#define BIG_SLOT_REPS		7
#define BIG_SLOT_BOUND_NS	10e6

struct empty_result {
	const char *backend;
	bool posted;			/* snp: the posted RMP update (study 004) */
	struct timing flip64, slot;
	struct timing sparse, dense;	/* MAPPED_PAGES mapped: over the slot, packed */
};

/* Pages mapped (private, pre-faulted) for the conversions that have work. */
#define MAPPED_PAGES		256u
/* Between two of them in the spread layout: the slot's pages, whole 2M. */
#define MAPPED_STRIDE		((BIG_SLOT_PAGES / MAPPED_PAGES) & ~511ull)

/* Private-fault MAPPED_PAGES pages from @gpa on, @stride bytes apart. */
static void map_pages(struct ccvm_vm *vm, struct ccvm_vcpu *v, uint64_t gpa, uint64_t stride)
{
	unsigned int i;

	CHECK(ccvm_vm_set_memory_attributes(vm, gpa, (MAPPED_PAGES - 1) * stride + 4096,
					    PRIV, 0));
	for (i = 0; i < MAPPED_PAGES; i++) {
		uint64_t at = gpa + i * stride, size = 4096;

		while (size)
			CHECK(ccvm_vcpu_pre_fault_memory(v, &at, &size));
	}
}

/*
 * The same MAPPED_PAGES pages mapped, then [gpa, gpa + size) (which holds
 * them) to shared and back to private, timed: the zap and, on snp with the
 * posted update, the RMP work of every page gmem holds there.
 */
static uint64_t timed_mapped_flip(struct ccvm_vm *vm, struct ccvm_vcpu *v, uint64_t gpa,
				  uint64_t stride, uint64_t size)
{
	uint64_t t;

	map_pages(vm, v, gpa, stride);
	t = now_ns();
	CHECK(ccvm_vm_set_memory_attributes(vm, gpa, size, 0, 0));
	CHECK(ccvm_vm_set_memory_attributes(vm, gpa, size, PRIV, 0));
	return now_ns() - t;
}

/* Private then shared over [gpa, gpa + size), timed as one pass. */
static uint64_t timed_flip(struct ccvm_vm *vm, uint64_t gpa, uint64_t size)
{
	uint64_t t = now_ns();

	CHECK(ccvm_vm_set_memory_attributes(vm, gpa, size, PRIV, 0));
	CHECK(ccvm_vm_set_memory_attributes(vm, gpa, size, 0, 0));
	return now_ns() - t;
}

/* 0, or -ENOMEM when the host refuses the slot's shared address space. */
static int bench_empty_on(struct empty_result *r)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = r->backend);
	struct ccvm_memory_region mr = {
		.slot = 0,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = FLIP_BASE_GFN << PAGE_SHIFT,
		.memory_size = BIG_SLOT_PAGES << PAGE_SHIFT,
	};
	struct ccvm_backend_caps caps = CCVM_OPTS_INIT(struct ccvm_backend_caps);
	struct ccvm_platform *p;
	struct ccvm_vcpu *v;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	void *shared;
	int i;

	shared = mmap(NULL, mr.memory_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (shared == MAP_FAILED)
		return -ENOMEM;
	CHECK(ccvm_platform_create(&po, &p));
	CHECK(ccvm_vm_create(p, NULL, &vm));
	CHECK(ccvm_gmem_create(vm, mr.memory_size, 0, &g));
	mr.gmem = g;
	mr.userspace_addr = shared;
	CHECK(ccvm_vm_set_user_memory_region(vm, &mr));
	for (i = 0; i < FAST_REPS; i++)
		timing_add(&r->flip64, timed_flip(vm, mr.guest_phys_addr + (1ull << 21),
						  FLIP_PAGES << PAGE_SHIFT));
	for (i = 0; i < BIG_SLOT_REPS; i++)
		timing_add(&r->slot, timed_flip(vm, mr.guest_phys_addr, mr.memory_size));

	/*
	 * With work to do: MAPPED_PAGES private pages mapped one per 32 GiB
	 * over the whole slot, flipped with the slot; against the same number
	 * mapped side by side and flipped as one 1 MiB range (between the
	 * first two spread pages).  Cost that follows the mapped pages makes
	 * the two alike, whatever the range.
	 */
	CHECK(ccvm_vcpu_create(vm, 0, &v));
	if (r->posted)
		CHECK(ccvm_vm_set_study_knob(vm, CCVM_STUDY_SNP_RMP_UPDATE, CCVM_SNP_RMP_POSTED));
	CHECK(ccvm_vm_caps(vm, &caps));
	if (caps.needs_finalize)
		CHECK(ccvm_vm_finalize(vm));
	for (i = 0; i < BIG_SLOT_REPS; i++) {
		uint64_t packed = mr.guest_phys_addr + (MAPPED_STRIDE / 2 << PAGE_SHIFT);

		timing_add(&r->sparse, timed_mapped_flip(vm, v, mr.guest_phys_addr,
							 MAPPED_STRIDE << PAGE_SHIFT,
							 mr.memory_size));
		timing_add(&r->dense, timed_mapped_flip(vm, v, packed, 4096,
							(uint64_t)MAPPED_PAGES << PAGE_SHIFT));
	}
	CHECK(ccvm_vcpu_close(v));
	CHECK(ccvm_gmem_close(g));
	CHECK(ccvm_vm_close(vm));
	CHECK(ccvm_platform_destroy(p));
	munmap(shared, mr.memory_size);
	return 0;
}

static void bench_empty(void)
{
	struct empty_result res[4] = { { .backend = "mock" }, { .backend = "tdx" },
				       { .backend = "snp" },
				       { .backend = "snp", .posted = true } };
	char goal[128], ours[48], peer[48], a[32], b[32];
	unsigned int i;

	printf("4. Conversions of empty ranges: 64 GiB, and the largest slot (%llu pages),\n"
	       "   private then shared; then with %u pages mapped, shared then private: spread\n"
	       "   over the whole slot and the slot flipped, or packed in a %u KiB range and it\n"
	       "   flipped (min and median)\n", (unsigned long long)BIG_SLOT_PAGES, MAPPED_PAGES,
	       MAPPED_PAGES * 4);
	for (i = 0; i < 4; i++) {
		if (bench_empty_on(&res[i])) {
			printf("   skipped: the host refused %llu GiB of shared address space\n",
			       (unsigned long long)(BIG_SLOT_PAGES >> 18));
			return;
		}
		printf("   %s%s\n", res[i].backend, res[i].posted ? " (posted RMP update)" : "");
		print_timing("empty 64 GiB, 2 calls", &res[i].flip64, 1, NULL);
		print_timing("whole empty slot, 2 calls", &res[i].slot, 1, NULL);
		print_timing("whole slot, pages spread, 2 calls", &res[i].sparse, 1, NULL);
		print_timing("packed range, 2 calls", &res[i].dense, 1, NULL);
	}
	printf("\n");
	for (i = 1; i < 3; i++) {
		double ours_ns = timing_min(&res[i].flip64), mock_ns = timing_min(&res[0].flip64);

		snprintf(goal, sizeof(goal), "flip empty 64 GiB: %s <= 2x mock", res[i].backend);
		snprintf(ours, sizeof(ours), "%s %s", res[i].backend, fmt_ns(a, sizeof(a), ours_ns));
		snprintf(peer, sizeof(peer), "mock %s", fmt_ns(b, sizeof(b), mock_ns));
		summary(goal, ours, peer, ours_ns / mock_ns, ours_ns / mock_ns <= 2 ? "yes" : "no");
	}
	for (i = 0; i < 4; i++) {
		double ours_ns = timing_min(&res[i].slot);

		snprintf(goal, sizeof(goal), "flip the largest empty slot (8 TiB) on %s%s < 10 ms",
			 res[i].backend, res[i].posted ? " (posted)" : "");
		snprintf(ours, sizeof(ours), "%s", fmt_ns(a, sizeof(a), ours_ns));
		snprintf(peer, sizeof(peer), "bound %s", fmt_ns(b, sizeof(b), BIG_SLOT_BOUND_NS));
		summary(goal, ours, peer, ours_ns / BIG_SLOT_BOUND_NS,
			ours_ns < BIG_SLOT_BOUND_NS ? "yes" : "no");
	}
	for (i = 0; i < 4; i++) {
		double ours_ns = timing_min(&res[i].sparse), packed_ns = timing_min(&res[i].dense);

		snprintf(goal, sizeof(goal), "flip 8 TiB slot with %u pages mapped on %s%s vs "
			 "the same pages packed (report)", MAPPED_PAGES, res[i].backend,
			 res[i].posted ? " (posted)" : "");
		snprintf(ours, sizeof(ours), "slot %s", fmt_ns(a, sizeof(a), ours_ns));
		snprintf(peer, sizeof(peer), "packed %s", fmt_ns(b, sizeof(b), packed_ns));
		summary(goal, ours, peer, ours_ns / packed_ns, "-");
	}
}

int main(void)
{
	/* Line by line, so a pipe (make bench) shows progress as it comes. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	bench_flip();
	bench_maps();
	bench_empty();
	return EXIT_SUCCESS;
}
