/* SPDX-License-Identifier: MIT */
/*
 * bench_core: the core's figures (mock unless a backend is named), each printed next to a
 * peer measured in the same run (these machines are noisy: read ratios).
 *
 *  1. private fault-in per 4K page (KVM_PRE_FAULT_MEMORY path: attribute,
 *     gmem allocation, install) vs the host kernel's own first-touch fault
 *     of an anonymous 4K page;
 *  2. fault-in per 2M: one 2M leaf over shared VMM memory, and a private 2M
 *     region (512 4K leaves: gmem folios are order-0 as upstream), vs the
 *     kernel's first touch of a transparent huge page;
 *  3. 2 MiB conversions per second, both directions, over ranges that are
 *     2M pages (aligned) and over ranges one gfn off (each straddles two
 *     2M pages): the public API (KVM_SET_MEMORY_ATTRIBUTES with the range
 *     mapped, so the zap is included) vs the same attribute changes kept
 *     by peers over the same gfns: a JudyL per gfn KVM's way (a
 *     reservation and a store per page, two Judy operations each), a flat
 *     byte array (memset) and a bitmap; libccvm's xarray called per page
 *     is shown too;
 *  4. model memory per mapped 4K page (page tables, gmem page cache,
 *     attributes, the backend's own bookkeeping; not the guest data) on
 *     every backend, goal <= 32 bytes: the larger of the library's own
 *     accounting and the C heap's growth while mapping, vs the host's own
 *     page tables (VmPTE) for the same memory first-touched.
 * The goals end as SUMMARY lines (bench/README.md).
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <Judy.h>

#include <ccvm/ccvm.h>

#include "xarray.h"

#define MIB		(1ull << 20)
#define GPA_BASE	(1ull << 30)
#define REPS		3

/* Keeps the compiler from dropping work whose results are unused. */
static volatile uint64_t sink;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define CHECK(expr)							\
	do {								\
		int err_ = (expr);					\
		if (err_) {						\
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, \
				#expr, ccvm_strerror(err_));		\
			exit(1);					\
		}							\
	} while (0)

struct env {
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct ccvm_vcpu *v;
	void *map;			/* the mapping, @shared its 2M-aligned part */
	void *shared;
	uint64_t bytes;
};

static void env_up_on(struct env *e, const char *backend, uint64_t bytes, bool private)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = backend,
						      .mem_bytes = 2 * bytes + 64 * MIB);
	struct ccvm_memory_region r = {
		.slot = 0,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = GPA_BASE,
		.memory_size = bytes,
	};
	struct ccvm_backend_caps caps = CCVM_OPTS_INIT(struct ccvm_backend_caps);

	memset(e, 0, sizeof(*e));
	e->bytes = bytes;
	/* 2M-aligned VMM memory, never touched: mapping it costs no RAM. */
	e->shared = mmap(NULL, bytes + 2 * MIB, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (e->shared == MAP_FAILED)
		exit(1);
	e->map = e->shared;
	e->shared = (void *)(((uintptr_t)e->shared + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1));
	CHECK(ccvm_platform_create(&po, &e->p));
	CHECK(ccvm_vm_create(e->p, NULL, &e->vm));
	CHECK(ccvm_gmem_create(e->vm, bytes, 0, &e->g));
	r.gmem = e->g;
	r.userspace_addr = e->shared;
	CHECK(ccvm_vm_set_user_memory_region(e->vm, &r));
	if (private)
		CHECK(ccvm_vm_set_memory_attributes(e->vm, GPA_BASE, bytes,
						    CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0));
	CHECK(ccvm_vcpu_create(e->vm, 0, &e->v));
	/* TDX pre-faults only a finalized TD; finalize wherever launch needs it. */
	CHECK(ccvm_vm_caps(e->vm, &caps));
	if (caps.needs_finalize)
		CHECK(ccvm_vm_finalize(e->vm));
}

static void env_up(struct env *e, uint64_t bytes, bool private)
{
	env_up_on(e, "mock", bytes, private);
}

static void env_down(struct env *e)
{
	CHECK(ccvm_vcpu_close(e->v));
	CHECK(ccvm_gmem_close(e->g));
	CHECK(ccvm_vm_close(e->vm));
	CHECK(ccvm_platform_destroy(e->p));
	munmap(e->map, e->bytes + 2 * MIB);
}

static uint64_t model_bytes(struct ccvm_platform *p)
{
	struct ccvm_stats st = { .sz = sizeof(st) };

	CHECK(ccvm_platform_get_stats(p, &st));
	return st.model_bytes;
}

static void pre_fault_all(struct env *e)
{
	uint64_t gpa = GPA_BASE, size = e->bytes;

	while (size)
		CHECK(ccvm_vcpu_pre_fault_memory(e->v, &gpa, &size));
}

/* Bytes the C library has handed out (every arena, mmapped blocks too). */
static uint64_t heap_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();

	return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

/*
 * Best-of-REPS ns for mapping @bytes on @backend; also the model bytes per
 * 4K page the mapping added: the larger of the library's own accounting
 * (stats.model_bytes) and the growth of the C heap over the same interval,
 * which catches memory the accounting missed.
 */
static double bench_fault_on(const char *backend, uint64_t bytes, bool private,
			     double *bytes_per_page)
{
	double best = 1e30;
	int rep;

	for (rep = 0; rep < REPS; rep++) {
		struct env e;
		uint64_t m0, h0, t0, t, model, heap;

		env_up_on(&e, backend, bytes, private);
		m0 = model_bytes(e.p);
		h0 = heap_bytes();
		t0 = now_ns();
		pre_fault_all(&e);
		t = now_ns() - t0;
		model = model_bytes(e.p) - m0;
		heap = heap_bytes();
		heap = heap > h0 ? heap - h0 : 0;
		if (bytes_per_page)
			*bytes_per_page = (double)(model > heap ? model : heap) /
					  (double)(bytes >> 12);
		if (t < best)
			best = (double)t;
		env_down(&e);
	}
	return best;
}

static double bench_fault(uint64_t bytes, bool private, double *bytes_per_page)
{
	return bench_fault_on("mock", bytes, private, bytes_per_page);
}

/* This process's page-table bytes (VmPTE), 0 if /proc does not say. */
static uint64_t host_pte_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	unsigned long long kib = 0;
	char line[256];

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmPTE: %llu kB", &kib) == 1)
			break;
	}
	fclose(f);
	return (uint64_t)kib * 1024;
}

/*
 * The kernel's first touch of fresh anonymous memory, per page of @page;
 * also the host page-table bytes per 4K page it took.
 */
static double bench_host_touch(uint64_t bytes, uint64_t page, bool thp, double *pte_per_page)
{
	double best = 1e30;
	int rep;

	for (rep = 0; rep < REPS; rep++) {
		uint8_t *m = mmap(NULL, bytes + 2 * MIB, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint8_t *a;
		uint64_t t0, t, off;

		if (m == MAP_FAILED)
			exit(1);
		a = (uint8_t *)(((uintptr_t)m + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1));
		uint64_t pte0 = host_pte_bytes();

		madvise(a, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		t0 = now_ns();
		for (off = 0; off < bytes; off += page)
			((volatile uint8_t *)a)[off] = 1;
		t = now_ns() - t0;
		if (pte_per_page)
			*pte_per_page = (double)(host_pte_bytes() - pte0) / (double)(bytes >> 12);
		munmap(m, bytes + 2 * MIB);
		if (t < best)
			best = (double)t;
	}
	return best / (double)(bytes / page);
}

/*
 * 2 MiB conversions.  One pass converts @n ranges of 512 gfns, the first
 * at @off gfns into the slot (0: every range is a 2M page; 1: every range
 * straddles two), all to shared, then all back to private.  The public API
 * has the range mapped first, so its zap is in; the peers keep the same
 * attributes their own way, over the same gfns.
 */
#define CONV_PAGES	512u		/* gfns per conversion (2 MiB) */
#define CONV_INNER	32		/* passes per timing of the cheap peers */

struct conv_set {
	const char *name;
	uint64_t off;			/* first gfn, from the slot's base */
	uint64_t n;			/* conversions each way */
};

static uint64_t conv_gfn(const struct conv_set *c, uint64_t i)
{
	return (GPA_BASE >> 12) + c->off + i * CONV_PAGES;
}

/* Conversions per second of a pass that took @ns. */
static double conv_rate(const struct conv_set *c, double ns)
{
	return (double)(2 * c->n) / (ns / 1e9);
}

/* The public API: KVM_SET_MEMORY_ATTRIBUTES both ways, range mapped first. */
static double bench_convert(uint64_t bytes, const struct conv_set *c)
{
	double best = 1e30;
	uint64_t i, t0, t;
	int rep;

	for (rep = 0; rep < REPS; rep++) {
		struct env e;

		env_up(&e, bytes, true);
		pre_fault_all(&e);
		t0 = now_ns();
		for (i = 0; i < c->n; i++)
			CHECK(ccvm_vm_set_memory_attributes(e.vm, conv_gfn(c, i) << 12,
							    CONV_PAGES << 12, 0, 0));
		for (i = 0; i < c->n; i++)
			CHECK(ccvm_vm_set_memory_attributes(e.vm, conv_gfn(c, i) << 12,
							    CONV_PAGES << 12,
							    CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0));
		t = now_ns() - t0;
		if (t < best)
			best = (double)t;
		env_down(&e);
	}
	return conv_rate(c, best);
}

/* A flat byte array, one byte per gfn: a memset per conversion. */
static double bench_convert_memset(uint64_t bytes, const struct conv_set *c)
{
	uint64_t pages = bytes >> 12, i, t0, t, base = GPA_BASE >> 12;
	uint8_t *flat = malloc(pages);
	double best = 1e30;
	int rep, k;

	if (!flat)
		exit(1);
	memset(flat, CCVM_MEMORY_ATTRIBUTE_PRIVATE, pages);
	for (rep = 0; rep < REPS; rep++) {
		t0 = now_ns();
		for (k = 0; k < CONV_INNER; k++) {
			for (i = 0; i < c->n; i++)
				memset(flat + (conv_gfn(c, i) - base), 0, CONV_PAGES);
			sink = flat[(conv_gfn(c, c->n / 2) - base) + k];
			for (i = 0; i < c->n; i++)
				memset(flat + (conv_gfn(c, i) - base), CCVM_MEMORY_ATTRIBUTE_PRIVATE,
				       CONV_PAGES);
			sink = flat[(conv_gfn(c, c->n / 3) - base) + k];
		}
		t = now_ns() - t0;
		if (t < best)
			best = (double)t;
	}
	free(flat);
	return conv_rate(c, best / CONV_INNER);
}

/* Set (@set) or clear bits [first, last] of @bm. */
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

/* A bitmap, one bit per gfn. */
static double bench_convert_bitmap(uint64_t bytes, const struct conv_set *c)
{
	uint64_t pages = bytes >> 12, i, t0, t, base = GPA_BASE >> 12;
	uint64_t *bm = malloc(pages / 8 + 8);
	double best = 1e30;
	int rep, k;

	if (!bm)
		exit(1);
	memset(bm, 0xff, pages / 8 + 8);
	for (rep = 0; rep < REPS; rep++) {
		t0 = now_ns();
		for (k = 0; k < CONV_INNER; k++) {
			for (i = 0; i < c->n; i++) {
				uint64_t g = conv_gfn(c, i) - base;

				bitmap_assign(bm, g, g + CONV_PAGES - 1, false);
			}
			sink = bm[(conv_gfn(c, c->n / 2) - base) / 64];
			for (i = 0; i < c->n; i++) {
				uint64_t g = conv_gfn(c, i) - base;

				bitmap_assign(bm, g, g + CONV_PAGES - 1, true);
			}
			sink = bm[(conv_gfn(c, c->n / 3) - base) / 64];
		}
		t = now_ns() - t0;
		if (t < best)
			best = (double)t;
	}
	free(bm);
	return conv_rate(c, best / CONV_INNER);
}

/*
 * libccvm's own xarray used KVM's way: a reservation and a store per gfn
 * (kvm_vm_set_mem_attributes).  Not a peer: how much the range store
 * saves over the same structure called per page.
 */
static double bench_convert_per_page(uint64_t bytes, const struct conv_set *c)
{
	uint64_t base = GPA_BASE >> 12, i, j, t0, t;
	double best = 1e30;
	int rep, dir;

	for (rep = 0; rep < REPS; rep++) {
		struct ccvm_xa xa;

		ccvm_xa_init(&xa);
		CHECK(ccvm_xa_store_range(&xa, base, base + (bytes >> 12) - 1,
					  CCVM_MEMORY_ATTRIBUTE_PRIVATE));
		t0 = now_ns();
		for (dir = 0; dir < 2; dir++) {
			uint64_t val = dir ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0;

			for (i = 0; i < c->n; i++) {
				uint64_t g = conv_gfn(c, i);

				for (j = 0; j < CONV_PAGES; j++)
					CHECK(ccvm_xa_reserve(&xa, g + j, g + j));
				for (j = 0; j < CONV_PAGES; j++)
					CHECK(ccvm_xa_store(&xa, g + j, val));
			}
		}
		t = now_ns() - t0;
		ccvm_xa_destroy(&xa);
		if (t < best)
			best = (double)t;
	}
	return conv_rate(c, best);
}

/*
 * The same conversions in a JudyL per gfn, KVM's way: for each range a
 * reservation pass and a store pass over its 512 gfns (JudyLIns, then
 * JudyLGet and write to make them private; JudyLGet, then JudyLDel to make
 * them shared: shared is no entry).
 */
static double bench_convert_judy(uint64_t bytes, const struct conv_set *c)
{
	uint64_t base = GPA_BASE >> 12, i, j, t0, t;
	double best = 1e30;
	int rep, dir;

	for (rep = 0; rep < REPS; rep++) {
		Pvoid_t judy = NULL;

		for (i = 0; i < (bytes >> 12); i++) {
			PWord_t slot = (PWord_t)JudyLIns(&judy, (Word_t)(base + i), PJE0);

			if (slot == PJERR)
				exit(1);
			*slot = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
		}
		t0 = now_ns();
		for (dir = 0; dir < 2; dir++) {
			for (i = 0; i < c->n; i++) {
				uint64_t g = conv_gfn(c, i);

				for (j = 0; j < CONV_PAGES; j++) {
					if (dir ? JudyLIns(&judy, (Word_t)(g + j), PJE0) == PJERR :
						  !JudyLGet(judy, (Word_t)(g + j), PJE0))
						exit(1);
				}
				for (j = 0; j < CONV_PAGES; j++) {
					if (dir) {
						PWord_t slot = (PWord_t)JudyLGet(judy, (Word_t)(g + j), PJE0);

						*slot = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
					} else if (JudyLDel(&judy, (Word_t)(g + j), PJE0) != 1) {
						exit(1);
					}
				}
			}
		}
		t = now_ns() - t0;
		JudyLFreeArray(&judy, PJE0);
		if (t < best)
			best = (double)t;
	}
	return conv_rate(c, best);
}

/*
 * One report line: the public API's rate against a peer's, same gfns (a
 * ratio below 1 is the peer faster: a memset of 512 bytes beats a zap).
 */
static void conv_summary(const struct conv_set *c, const char *peer, double ours, double theirs)
{
	printf("SUMMARY|2 MiB conversions %s: public API (zap in) vs %s (report)|%.0f /s|"
	       "%s %.0f /s|%.3gx|-\n", c->name, peer, ours, peer, theirs, ours / theirs);
}

static void bench_conversions(uint64_t bytes)
{
	struct conv_set sets[2] = {
		{ "aligned", 0, bytes / (2 * MIB) },
		/* One gfn in: each range straddles two 2M pages (MIXED on both). */
		{ "unaligned", 1, bytes / (2 * MIB) - 1 },
	};
	unsigned int i;

	for (i = 0; i < 2; i++) {
		const struct conv_set *c = &sets[i];
		double api = bench_convert(bytes, c);
		double per_page = bench_convert_per_page(bytes, c);
		double judy = bench_convert_judy(bytes, c);
		double mset = bench_convert_memset(bytes, c);
		double bm = bench_convert_bitmap(bytes, c);

		printf("2 MiB conversions per second, %s (%llu each way, gfn offset %llu):\n",
		       c->name, (unsigned long long)c->n, (unsigned long long)c->off);
		printf("   public API, range mapped (zap in)  %12.0f /s\n", api);
		printf("   JudyL per gfn, 2 ops/page (KVM)    %12.0f /s   public API %.2fx\n",
		       judy, api / judy);
		printf("   libccvm xarray per gfn (KVM's way) %12.0f /s   public API %.2fx\n",
		       per_page, api / per_page);
		printf("   flat byte array, memset            %12.0f /s   public API %.3gx\n",
		       mset, api / mset);
		printf("   bitmap, set/clear                  %12.0f /s   public API %.3gx\n",
		       bm, api / bm);
		conv_summary(c, "JudyL/gfn", api, judy);
		conv_summary(c, "memset", api, mset);
		conv_summary(c, "bitmap", api, bm);
	}
}

/*
 * Model memory per mapped 4K page on @backend: the whole slot private and
 * pre-faulted.  Returns the bytes per page.
 */
static double memory_per_page(const char *backend, uint64_t bytes, double pte)
{
	double bpp = 0, ns;

	ns = bench_fault_on(backend, bytes, true, &bpp) / (double)(bytes >> 12);
	printf("model memory per mapped 4K page on %-4s: %5.1f bytes (goal <= 32)   %s"
	       "   (fault-in %.0f ns/page)\n", backend, bpp, bpp <= 32.0 ? "met" : "NOT MET", ns);
	printf("SUMMARY|model memory per mapped 4K page on %s <= 32 B|%.1f B/page|"
	       "host page tables %.1f B/page|%.2fx|%s\n", backend, bpp, pte,
	       pte > 0 ? bpp / pte : 0.0, bpp <= 32.0 ? "yes" : "no");
	return bpp;
}

int main(void)
{
	static const char *const backends[] = { "mock", "tdx", "snp" };
	const uint64_t bytes = 256 * MIB;
	double pte = 0, ours4k, host4k, ours2m_shared, ours2m_priv, host2m;
	bool mem_met = true;
	unsigned int i;

	/* Line by line, so a pipe (make bench) shows progress as it comes. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("bench_core (%llu MiB per run, best of %d; mock unless named)\n",
	       (unsigned long long)(bytes / MIB), REPS);

	ours4k = bench_fault(bytes, true, NULL) / (double)(bytes >> 12);
	host4k = bench_host_touch(bytes, 4096, false, &pte);
	printf("private fault-in per 4K page:   libccvm %8.0f ns   host anon first touch %8.0f ns"
	       "   ratio %.2f\n", ours4k, host4k, ours4k / host4k);

	ours2m_shared = bench_fault(bytes, false, NULL) / (double)(bytes / (2 * MIB));
	ours2m_priv = ours4k * 512;
	host2m = bench_host_touch(bytes, 2 * MIB, true, NULL);
	printf("fault-in per 2M (shared 2M leaf): libccvm %8.0f ns   host THP first touch %8.0f ns"
	       "   ratio %.2f\n", ours2m_shared, host2m, ours2m_shared / host2m);
	printf("fault-in per 2M (private, 512x4K): libccvm %8.0f ns   host THP first touch %8.0f ns"
	       "   ratio %.2f\n", ours2m_priv, host2m, ours2m_priv / host2m);

	bench_conversions(bytes);

	printf("(the host's first touch zeroes the page; the model maps never-written pages\n"
	       " without touching them, as they read as zero: compare the map work, not RAM)\n");
	printf("host page tables (VmPTE) for the same memory first-touched: %.1f bytes per 4K page\n",
	       pte);
	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		mem_met &= memory_per_page(backends[i], bytes, pte) <= 32.0;
	return mem_met ? 0 : 1;
}
