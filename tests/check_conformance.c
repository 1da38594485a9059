/* SPDX-License-Identifier: MIT */
/*
 * The conformance suite: the public contract, end to end, on every built
 * backend in both attribute schemes, with 4 KiB and with 2 MiB gmem folios.
 * Each test is looped over the variants of tests/conformance.h (a backend
 * and a mode: per-VM attributes, or in-place conversion with the VMM's
 * shared memory in the gmem file itself; slot 0's folios 4 KiB, or 2 MiB
 * where the caps have CCVM_GMEM_FLAG_HUGETLB) and reads what may differ
 * from the backend's caps: the guest
 * accepts when requires_accept, uses the shared alias when has_shared_bit,
 * populates and finalizes when needs_finalize; a round trip without a
 * punch keeps the bytes iff preserves_data_without_punch; a host read of a
 * private page sees the plaintext iff private_readable_by_host.
 *
 * Covered: conversion round trips with data checks (with and without a
 * punch), pages next to a conversion at 4K and 2M edges, punch then
 * re-fault, launch (populate, finalize), the errno tables of attributes,
 * memslots and gmem, the exact fields of memory-fault, hypercall and MMIO
 * exits, pre-fault, a gmem file outliving its VM handle, several memslots
 * over one file (and a delete that zaps only its own gfns, I30), and 1 or
 * 4 vCPU threads running at once.  Every scenario ends with the invariant
 * checker (cf_finish()).  The scheme changes the VMM's side only, through
 * conformance.h's helpers: the conversion call, where an attribute is
 * read, and how the VMM reaches shared memory; where a part of a scenario
 * cannot happen in a variant (say, PRIVATE on a slot without gmem in
 * place), cf_skip() says so and why.  Pages allocated and mappings kept or
 * zapped are derived from the folio (a whole folio is allocated, a punch
 * frees only folios it covers whole) and from the level the backend
 * reports for each mapping (a 2M leaf across a converted or punched page
 * is zapped whole, or split where private mappings live in a mirror root).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "conformance.h"
#include "snapshot.h"

#define MIB		(1ull << 20)
#define PG		CCVM_PAGE_SIZE
#define MMIO_BASE	(1ull << 30)	/* no memslot there */
#define PRIV		CCVM_MEMORY_ATTRIBUTE_PRIVATE
#define KEEP		CCVM_FALLOC_KEEP_SIZE
#define PUNCH		(CCVM_FALLOC_KEEP_SIZE | CCVM_FALLOC_PUNCH_HOLE)

/* ---- small helpers -------------------------------------------------------- */

static uint64_t attr_at(uint64_t gpa, uint64_t *run)
{
	return cf_attr_at(gpa, run);
}

static bool mapped(uint64_t gpa, uint64_t *pfn)
{
	return ccvm_vm_lookup_mapping(cf.vm, gpa, pfn, NULL) == 0;
}

/* The private mapping of @gpa as the host sees it through the direct map. */
static void host_view(uint64_t gpa, uint8_t *page)
{
	uint64_t pfn = 0;

	ck_assert_msg(mapped(gpa, &pfn), "%s: %#" PRIx64 " not mapped", cf.name, gpa);
	ck_assert_int_eq(ccvm_host_read_phys(cf.p, pfn, 0, page, PG), 0);
}

static void snap(struct tu_snap *s)
{
	tu_snap_take(s, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
}

/* ------------------------------------------------------------------ */
/* Conversion round trip                                               */
/* ------------------------------------------------------------------ */

struct rt {
	uint64_t gpa;
	uint8_t seen_shared[PG];
	uint8_t seen_private[PG];
};

static void guest_roundtrip(struct ccvm_guest *g, void *arg)
{
	struct rt *a = arg;
	uint64_t sbit = ccvm_guest_shared_bit(g);
	uint8_t buf[PG];

	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, a->gpa, PG) == 0);
	cf_fill(buf, PG, 0x11);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, a->gpa, buf, PG) == 0);
	ccvm_guest_sync(g, 1);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, a->gpa, PG, false) == 0);
	cf_fill(buf, PG, 0x22);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, a->gpa | sbit, buf, PG) == 0);
	ccvm_guest_sync(g, 2);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, a->gpa | sbit, a->seen_shared, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, a->gpa, PG, true) == 0);
	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, a->gpa, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, a->gpa, a->seen_private, PG) == 0);
}

static void roundtrip(int i, bool punch)
{
	static struct rt a;
	struct cf_vmm m = { .punch = punch };
	struct ccvm_vcpu *v;
	uint8_t page[PG], buf[PG];
	bool keeps;

	if (!cf_up(i, 4 * MIB, true))
		return;
	cf_runnable(1);
	v = cf.v[0];
	memset(&a, 0, sizeof(a));
	a.gpa = 5 * PG;
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_roundtrip, &a), 0);

	cf_expect_sync(v, &m, 1);
	cf_assert_invariants(cf.vm);
	host_view(a.gpa, page);
	if (cf.caps.private_readable_by_host)
		ck_assert_msg(cf_is(page, PG, 0x11), "%s: host must see the plaintext", cf.name);
	else
		ck_assert_msg(!cf_is(page, PG, 0x11), "%s: host must not see the plaintext",
			      cf.name);
	/* Not through the VMM's view of shared memory either. */
	cf_host_refused(a.gpa);
	if (!cf.in_place)
		ck_assert(memcmp(page, cf.shared + a.gpa, PG));

	cf_expect_sync(v, &m, 2);
	ck_assert_uint_eq(m.nr_hc, 1);
	ck_assert_uint_eq(m.hc[0].gpa, a.gpa);
	ck_assert_uint_eq(m.hc[0].npages, 1);
	ck_assert(!(m.hc[0].attrs & CCVM_MAP_GPA_RANGE_ENCRYPTED));
	ck_assert_uint_eq(attr_at(a.gpa, NULL), 0);
	ck_assert_uint_eq(attr_at(a.gpa + PG, NULL), PRIV);
	/* The shared alias wrote the VMM's shared memory: in place, the file's page. */
	cf_host_read(a.gpa, buf, PG);
	ck_assert(cf_is(buf, PG, 0x22));
	/*
	 * A punch frees only a folio it covers whole (here: a 4 KiB one); of
	 * a 2M folio it zeroes the page, and the folio stays.  In place the
	 * shared side lives in the file: its page is there, punched or not.
	 */
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages,
			  punch && !cf.in_place && cf_folio_pages() == 1 ? 0 : cf_folio_pages());
	cf_assert_invariants(cf.vm);

	cf_expect_done(v, &m);
	ck_assert_uint_eq(m.nr_hc, 2);
	ck_assert(m.hc[1].attrs & CCVM_MAP_GPA_RANGE_ENCRYPTED);
	ck_assert_uint_eq(attr_at(a.gpa, NULL), PRIV);
	ck_assert(cf_is(a.seen_shared, PG, 0x22));
	/*
	 * Per VM the private page is another page than the shared one: a round
	 * trip without a punch finds the guest's bytes where the backend keeps
	 * them.  In place they are one page, which a backend that keeps bytes
	 * hands back as the shared side last wrote it, punched or not.
	 */
	keeps = cf.caps.preserves_data_without_punch && (cf.in_place || !punch);
	if (keeps)
		ck_assert_msg(cf_is(a.seen_private, PG, cf.in_place ? 0x22 : 0x11),
			      "%s: data lost in a round trip", cf.name);
	else
		ck_assert_msg(cf_is_zero(a.seen_private, PG), "%s: private page not zeroed",
			      cf.name);
	cf_finish();
}

START_TEST(test_roundtrip)
{
	roundtrip(_i, false);
}
END_TEST

START_TEST(test_roundtrip_punch)
{
	roundtrip(_i, true);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Neighbours of a conversion, at 4K and 2M edges                      */
/* ------------------------------------------------------------------ */

#define NB_A	(2 * MIB - PG)			/* last page of a 2M page */
#define NB_B	(4 * MIB)			/* a whole 2M page */
static const uint64_t nb_keep[] = {
	2 * MIB - 2 * PG, 2 * MIB,		/* around A */
	4 * MIB - PG, 6 * MIB,			/* around B */
	0, 8 * MIB - PG,			/* far away */
};

struct nb {
	uint8_t seen[TU_ARRAY_SIZE(nb_keep)][PG];
	uint8_t seen_a[PG], seen_b0[PG], seen_b1[PG];
};

static void guest_neighbours(struct ccvm_guest *g, void *arg)
{
	struct nb *a = arg;
	uint64_t sbit = ccvm_guest_shared_bit(g);
	uint8_t buf[PG];
	unsigned int i;

	for (i = 0; i < TU_ARRAY_SIZE(nb_keep); i++) {
		CCVM_GUEST_ASSERT(g, cf_guest_accept(g, nb_keep[i], PG) == 0);
		cf_fill(buf, PG, (uint8_t)(0x30 + i));
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, nb_keep[i], buf, PG) == 0);
	}
	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, NB_A, PG) == 0);
	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, NB_B, PG) == 0);
	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, NB_B + 2 * MIB - PG, PG) == 0);
	cf_fill(buf, PG, 0x50);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, NB_A, buf, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, NB_B, buf, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, NB_B + 2 * MIB - PG, buf, PG) == 0);
	ccvm_guest_sync(g, 1);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, NB_A, PG, false) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, NB_B, 2 * MIB, false) == 0);
	ccvm_guest_sync(g, 2);
	for (i = 0; i < TU_ARRAY_SIZE(nb_keep); i++)
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, nb_keep[i], a->seen[i], PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, NB_A | sbit, a->seen_a, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, NB_B | sbit, a->seen_b0, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, (NB_B + 2 * MIB - PG) | sbit, a->seen_b1, PG) == 0);
}

START_TEST(test_neighbours)
{
	static struct nb a;
	struct cf_vmm m = { .punch = true };
	uint64_t pfn_before[TU_ARRAY_SIZE(nb_keep)], pfn, run;
	int level[TU_ARRAY_SIZE(nb_keep)];
	uint8_t buf[PG];
	unsigned int i;

	if (!cf_up(_i, 8 * MIB, true))
		return;
	cf_runnable(1);
	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_neighbours, &a), 0);
	cf_expect_sync(cf.v[0], &m, 1);
	for (i = 0; i < TU_ARRAY_SIZE(nb_keep); i++) {
		ck_assert(mapped(nb_keep[i], &pfn_before[i]));
		level[i] = cf_level_at(nb_keep[i]);
	}
	cf_assert_invariants(cf.vm);
	cf_host_refused(NB_A);

	/* Converted (and punched): the VMM fills the shared pages. */
	cf_expect_sync(cf.v[0], &m, 2);
	/*
	 * Before the guest touches them again: a neighbour with its own 4 KiB
	 * leaf is not even zapped, nor one whose 2M leaf is split instead (a
	 * mirror root: TDX DEMOTEs).  Elsewhere a 2M leaf that crosses a
	 * converted range is zapped whole, and only such a one.
	 */
	for (i = 0; i < TU_ARRAY_SIZE(nb_keep); i++) {
		uint64_t blk = nb_keep[i] & ~(2 * MIB - 1);
		bool crossed = blk == (NB_A & ~(2 * MIB - 1)) || blk == NB_B;

		if (level[i] == CCVM_LEVEL_2M && !cf.caps.has_mirror_root && crossed) {
			ck_assert_msg(!mapped(nb_keep[i], NULL), "%s: %#" PRIx64 ": a 2M leaf "
				      "over a conversion stayed", cf.name, nb_keep[i]);
			continue;
		}
		ck_assert_msg(mapped(nb_keep[i], &pfn), "%s: %#" PRIx64 " next to a conversion "
			      "was zapped", cf.name, nb_keep[i]);
		ck_assert_uint_eq(pfn, pfn_before[i]);
		if (crossed)
			ck_assert_int_eq(cf_level_at(nb_keep[i]), CCVM_LEVEL_4K);
	}
	cf_fill(buf, PG, 0x61);
	cf_host_write(NB_A, buf, PG);
	cf_fill(buf, PG, 0x62);
	cf_host_write(NB_B, buf, PG);
	cf_fill(buf, PG, 0x63);
	cf_host_write(NB_B + 2 * MIB - PG, buf, PG);
	cf_host_refused(NB_A - PG);
	cf_host_refused(NB_B + 2 * MIB);

	cf_expect_done(cf.v[0], &m);
	for (i = 0; i < TU_ARRAY_SIZE(nb_keep); i++) {
		ck_assert_msg(cf_is(a.seen[i], PG, (uint8_t)(0x30 + i)),
			      "%s: page %#" PRIx64 " next to a conversion changed", cf.name,
			      nb_keep[i]);
		/* The same page is mapped (faulted again where its 2M leaf went). */
		ck_assert(mapped(nb_keep[i], &pfn));
		ck_assert_uint_eq(pfn, pfn_before[i]);
		ck_assert_uint_eq(attr_at(nb_keep[i], NULL), PRIV);
	}
	ck_assert(cf_is(a.seen_a, PG, 0x61));
	ck_assert(cf_is(a.seen_b0, PG, 0x62));
	ck_assert(cf_is(a.seen_b1, PG, 0x63));
	/* Exactly the converted ranges changed their attribute. */
	ck_assert_uint_eq(attr_at(NB_A, &run), 0);
	ck_assert_uint_eq(run, PG);
	ck_assert_uint_eq(attr_at(NB_B, &run), 0);
	ck_assert_uint_eq(run, 2 * MIB);
	ck_assert_uint_eq(attr_at(2 * MIB - 2 * PG, &run), PRIV);
	ck_assert_uint_eq(run, PG);
	cf_finish();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Punch while mapped, then re-fault                                   */
/* ------------------------------------------------------------------ */

struct pr {
	uint8_t before[PG], after[PG], other[PG];
};

static void guest_punch(struct ccvm_guest *g, void *arg)
{
	struct pr *a = arg;
	uint8_t buf[PG];

	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, 0, 2 * PG) == 0);
	cf_fill(buf, PG, 0x71);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, 0, buf, PG) == 0);
	cf_fill(buf, PG, 0x72);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, PG, buf, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 0, a->before, PG) == 0);
	ccvm_guest_sync(g, 1);
	/* The page is new: accepted again where the caps want it. */
	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, 0, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 0, a->after, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, PG, a->other, PG) == 0);
}

static const uint64_t pr_pages[] = { 0, PG };

START_TEST(test_punch_refault)
{
	static struct pr a;
	uint64_t pfn, pfn1;
	int level;

	if (!cf_up(_i, 2 * MIB, true))
		return;
	cf_runnable(1);
	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_punch, &a), 0);
	cf_expect_sync(cf.v[0], NULL, 1);
	ck_assert(cf_is(a.before, PG, 0x71));
	ck_assert(mapped(PG, &pfn1));
	level = cf_level_at(0);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, cf_alloc_pages(pr_pages, 2));
	ck_assert_int_eq(ccvm_gmem_fallocate(cf.g, PUNCH, 0, PG), 0);
	/* Zapped before freed (or zeroed, in a 2M folio); the attribute stays. */
	ck_assert(!mapped(0, NULL));
	/*
	 * The next page stays mapped when it had its own 4 KiB leaf, or when a
	 * 2M leaf over both is split rather than zapped (a mirror root: TDX
	 * DEMOTEs); elsewhere the zap takes the 2M leaf that crosses the range.
	 */
	if (level == CCVM_LEVEL_2M && !cf.caps.has_mirror_root) {
		ck_assert(!mapped(PG, NULL));
	} else {
		ck_assert(mapped(PG, &pfn));
		ck_assert_uint_eq(pfn, pfn1);
		ck_assert_int_eq(cf_level_at(PG), CCVM_LEVEL_4K);
	}
	/* The folio of page 0 goes only if the punch covered it whole. */
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, cf_alloc_pages(&pr_pages[1], 1));
	ck_assert_uint_eq(attr_at(0, NULL), PRIV);
	cf_assert_invariants(cf.vm);
	cf_expect_done(cf.v[0], NULL);
	ck_assert_msg(cf_is_zero(a.after, PG), "%s: a punched page re-faulted non-zero",
		      cf.name);
	ck_assert(cf_is(a.other, PG, 0x72));
	cf_finish();
}
END_TEST

/* ------------------------------------------------------------------ */
/* 2M blocks: accept sizes, part of a folio converted, punched whole   */
/* ------------------------------------------------------------------ */

#define HB_A	0			/* a 4K accept, then a 2M accept over it */
#define HB_B	(2 * MIB)		/* accepted at 2M; one page converts */
#define HB_C	(4 * MIB)		/* pre-faulted whole, then a 4K accept in it */
#define HB_X	(HB_B + 3 * PG)		/* the page of B that goes shared and back */
#define HB_N	(HB_B + 5 * PG)		/* a neighbour of X */
#define HB_LAST	(HB_B + 2 * MIB - PG)

struct hb {
	int r_a, r_b, r_c;		/* the 2M accepts of A and B, the 4K one in C */
	uint8_t seen_n[PG], seen_last[PG], seen_c[PG];
};

/*
 * Guest: a 2M accept falls back to 4K accepts where the host says the
 * sizes do not match (-ERANGE), as Linux does.
 */
static int hb_accept_2m(struct ccvm_guest *g, uint64_t gpa)
{
	int r = ccvm_guest_accept_level(g, gpa, 2 * MIB, CCVM_LEVEL_2M);

	if (r == -ERANGE)
		CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, gpa, 2 * MIB, CCVM_LEVEL_4K) == 0);
	return r;
}

static void guest_huge_blocks(struct ccvm_guest *g, void *arg)
{
	struct hb *a = arg;
	uint8_t buf[PG];

	/* A: one page accepted, so mapped, at 4K; then all of A at 2M. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, HB_A, PG, CCVM_LEVEL_4K) == 0);
	cf_fill(buf, PG, 0xa1);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, HB_A, buf, PG) == 0);
	ccvm_guest_sync(g, 1);
	a->r_a = ccvm_guest_accept_level(g, HB_A, 2 * MIB, CCVM_LEVEL_2M);
	ccvm_guest_sync(g, 2);
	if (a->r_a == -ERANGE)
		CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, HB_A + PG, 2 * MIB - PG,
							     CCVM_LEVEL_4K) == 0);
	/* B: at 2M from the start. */
	a->r_b = hb_accept_2m(g, HB_B);
	cf_fill(buf, PG, 0xb1);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, HB_N, buf, PG) == 0);
	cf_fill(buf, PG, 0xb2);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, HB_LAST, buf, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, HB_X, buf, PG) == 0);
	ccvm_guest_sync(g, 3);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, HB_X, PG, false) == 0);
	ccvm_guest_sync(g, 4);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, HB_N, a->seen_n, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, HB_X, PG, true) == 0);
	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, HB_X, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, HB_LAST, a->seen_last, PG) == 0);
	/* C: the host mapped it whole; a 4K accept inside. */
	a->r_c = ccvm_guest_accept_level(g, HB_C + PG, PG, CCVM_LEVEL_4K);
	ccvm_guest_sync(g, 5);
	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, HB_C, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, HB_C + PG, a->seen_c, PG) == 0);
}

/* What a refused accept must leave alone: gmem, attributes, every mapping of [0, 4M). */
struct hb_state {
	uint64_t nr_pages, nr_private, nr_huge, order;
	uint64_t attr_a, run_a, free_pages;
	uint64_t pfn[2 * 512];
	int level[2 * 512];
};

static void hb_state(struct hb_state *s)
{
	struct ccvm_gmem_info gi = tu_gmem_info(cf.g);
	unsigned int i;

	memset(s, 0, sizeof(*s));
	s->nr_pages = gi.nr_pages;
	s->nr_private = gi.nr_private;
	s->nr_huge = gi.nr_huge_folios;
	s->order = gi.folio_order;
	s->attr_a = attr_at(HB_A, &s->run_a);
	s->free_pages = tu_pstats(cf.p).free_pages;
	for (i = 0; i < TU_ARRAY_SIZE(s->pfn); i++)
		if (ccvm_vm_lookup_mapping(cf.vm, (uint64_t)i * PG, &s->pfn[i], &s->level[i]))
			s->pfn[i] = CF_NONE, s->level[i] = -1;
}

/* The refused accept's debug line: TDX_PAGE_SIZE_MISMATCH or FAIL_SIZEMISMATCH. */
static atomic_bool hb_mismatch_logged;

static void hb_log(enum ccvm_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level == CCVM_LOG_DEBUG && strstr(msg, "SIZE_MISMATCH"))
		hb_mismatch_logged = true;
	if (level == CCVM_LOG_DEBUG && strstr(msg, "SIZEMISMATCH"))
		hb_mismatch_logged = true;
}

START_TEST(test_huge_blocks)
{
	static struct hb a;
	struct cf_vmm m = { 0 };
	struct hb_state s0, s1;
	static const uint64_t hb_written[] = { HB_N, HB_X, HB_LAST };
	uint64_t nr, huge, pfn_n, pfn, gpa, len, b_pages;
	bool huge_folios;
	int lvl_n, lvl;

	if (!cf_up(_i, 8 * MIB, true))
		return;
	huge_folios = cf_folio_pages() > 1;
	cf_runnable(1);
	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_huge_blocks, &a), 0);

	/*
	 * A 2M accept over a page mapped at 4K: TDX's PAGE_SIZE_MISMATCH,
	 * SNP's FAIL_SIZEMISMATCH (a 4K PVALIDATE first smashed any 2M RMP
	 * entry), -ERANGE to the guest and nothing changed.  Without accepts
	 * (mock) an accept of any size is a no-op that succeeds.
	 */
	cf_expect_sync(cf.v[0], &m, 1);
	/* Only an accept caps the level: mock's write maps what the folio allows. */
	ck_assert_int_eq(cf_level_at(HB_A), huge_folios && !cf.caps.requires_accept ?
			 CCVM_LEVEL_2M : CCVM_LEVEL_4K);
	hb_state(&s0);
	hb_mismatch_logged = false;
	ccvm_set_log(hb_log, NULL);
	cf_expect_sync(cf.v[0], &m, 2);
	tu_quiet_log();
	hb_state(&s1);
	ck_assert_msg(a.r_a == (cf.caps.requires_accept ? -ERANGE : 0), "%s: 2M accept over "
		      "a 4K leaf: %d", cf.name, a.r_a);
	ck_assert_msg(!memcmp(&s0, &s1, sizeof(s0)), "%s: a refused 2M accept changed the "
		      "gmem file, an attribute or a mapping", cf.name);
	/* Said at debug level, naming the hardware's rule. */
	ck_assert_msg(hb_mismatch_logged == cf.caps.requires_accept, "%s: size mismatch %slogged",
		      cf.name, hb_mismatch_logged ? "" : "not ");

	/*
	 * B, accepted at 2M: one 2M leaf where the folio is 2M (every backend
	 * maps it so once the whole 2M is private and accepted at that size);
	 * with 4 KiB folios the host maps 4K and a 2M accept is a mismatch.
	 */
	cf_expect_sync(cf.v[0], &m, 3);
	ck_assert_int_eq(a.r_b, huge_folios || !cf.caps.requires_accept ? 0 : -ERANGE);
	lvl_n = cf_level_at(HB_N);
	ck_assert_int_eq(lvl_n, huge_folios ? CCVM_LEVEL_2M : CCVM_LEVEL_4K);
	ck_assert_int_eq(cf_level_at(HB_LAST), lvl_n);
	ck_assert(mapped(HB_N, &pfn_n));
	ck_assert_uint_eq(tu_gmem_info(cf.g).folio_order, cf.mode->folio_order);
	huge = tu_gmem_info(cf.g).nr_huge_folios;
	ck_assert_uint_eq(huge, huge_folios ? 2 : 0);		/* A and B, whole */
	cf_assert_invariants(cf.vm);

	/*
	 * One page of B to shared: in place its folio splits (shared pages
	 * are 4 KiB), per VM the folio stays whole (the shared page is the
	 * VMM's).  The 2M leaf goes, or is split (mirror root: DEMOTE).
	 */
	cf_expect_sync(cf.v[0], &m, 4);
	ck_assert_uint_eq(attr_at(HB_X, &len), 0);
	ck_assert_uint_eq(len, PG);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_huge_folios,
			  huge_folios && cf.in_place ? huge - 1 : huge);
	if (lvl_n == CCVM_LEVEL_2M && !cf.caps.has_mirror_root) {
		ck_assert(!mapped(HB_N, NULL));
	} else {
		ck_assert(mapped(HB_N, &pfn));
		ck_assert_uint_eq(pfn, pfn_n);
		ck_assert_int_eq(cf_level_at(HB_N), CCVM_LEVEL_4K);
	}
	cf_assert_invariants(cf.vm);

	/*
	 * C, pre-faulted whole by the host: one 2M leaf where the folio is 2M
	 * (TDX: AUGed PENDING, SNP: a 2M RMP entry not yet validated).
	 */
	gpa = HB_C, len = 2 * MIB;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), 0);
	ck_assert_uint_eq(len, 0);
	lvl = cf_level_at(HB_C + PG);
	ck_assert_int_eq(lvl, huge_folios ? CCVM_LEVEL_2M : CCVM_LEVEL_4K);

	/*
	 * A 4K accept inside C's 2M leaf succeeds: TDX DEMOTEs the leaf, SNP
	 * PSMASHes the entry and the NPT maps 4K; without accepts the leaf
	 * stays as it was.
	 */
	cf_expect_sync(cf.v[0], &m, 5);
	ck_assert_int_eq(a.r_c, 0);
	ck_assert_int_eq(cf_level_at(HB_C + PG), cf.caps.requires_accept ? CCVM_LEVEL_4K : lvl);
	/* B is whole and private again (X was not punched): its folio merged. */
	ck_assert_uint_eq(attr_at(HB_B, &len), PRIV);
	ck_assert_uint_ge(len, 2 * MIB);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_huge_folios, huge_folios ? 3 : 0);
	cf_assert_invariants(cf.vm);

	cf_expect_done(cf.v[0], &m);
	ck_assert_msg(cf_is(a.seen_n, PG, 0xb1), "%s: a neighbour of a conversion lost its "
		      "bytes", cf.name);
	ck_assert(cf_is(a.seen_last, PG, 0xb2));
	ck_assert(cf_is_zero(a.seen_c, PG));

	/*
	 * A punch of all of B frees its folio whole, or its 4 KiB pages: all
	 * 512 where the accepts faulted them in, else the three written.
	 */
	nr = tu_gmem_info(cf.g).nr_pages;
	b_pages = huge_folios || cf.caps.requires_accept ? 512 : cf_alloc_pages(hb_written, 3);
	huge = tu_gmem_info(cf.g).nr_huge_folios;
	ck_assert_int_eq(ccvm_gmem_fallocate(cf.g, PUNCH, HB_B, 2 * MIB), 0);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, nr - b_pages);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_huge_folios, huge_folios ? huge - 1 : 0);
	ck_assert(!mapped(HB_N, NULL));
	ck_assert(!mapped(HB_LAST, NULL));
	ck_assert(mapped(HB_C + PG, NULL));
	cf_finish();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Launch: populate and finalize                                       */
/* ------------------------------------------------------------------ */

struct launch {
	uint8_t seen[4][PG];
};

static void guest_launch(struct ccvm_guest *g, void *arg)
{
	struct launch *a = arg;
	int i;

	/* Launched pages are accepted/validated by the launch itself. */
	for (i = 0; i < 4; i++)
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, (uint64_t)i * PG, a->seen[i], PG) == 0);
}

START_TEST(test_launch)
{
	static struct launch a;
	uint8_t src[4 * PG], page[PG];
	struct tu_snap s0, s1;
	int i;

	if (!cf_up(_i, 2 * MIB, true))
		return;
	for (i = 0; i < 4; i++)
		cf_fill(src + i * PG, PG, (uint8_t)(0x51 + i));
	if (!cf.caps.needs_finalize) {
		ck_assert_int_eq(ccvm_vm_populate(cf.vm, 0, src, PG, 0), -EOPNOTSUPP);
		cf_runnable(0);
		ck_assert_int_eq(ccvm_vm_finalize(cf.vm), -EINVAL);
		cf_finish();
		return;
	}
	/* Bad requests change nothing. */
	cf_set_attr(10 * PG, PG, 0);
	snap(&s0);
	ck_assert_int_eq(ccvm_vm_populate(cf.vm, 10 * PG, src, PG, 0), -EINVAL);
	ck_assert_int_eq(ccvm_vm_populate(cf.vm, 1, src, PG, 0), -EINVAL);
	ck_assert_int_eq(ccvm_vm_populate(cf.vm, 0, src, 0, 0), -EINVAL);
	ck_assert_int_eq(ccvm_vm_populate(cf.vm, 0, src, PG, 1ull << 7), -EINVAL);
	ck_assert_int_eq(ccvm_vm_populate(cf.vm, 0, NULL, PG, 0), -EINVAL);
	ck_assert_int_eq(ccvm_vm_populate(cf.vm, cf.sbit ? cf.sbit : 1ull << 47, src, PG, 0),
			 -EINVAL);
	snap(&s1);
	tu_snap_assert_same(&s0, &s1);

	ck_assert_int_eq(ccvm_vm_populate(cf.vm, 0, src, 4 * PG, CCVM_POPULATE_MEASURE), 0);
	ck_assert_int_eq(ccvm_vm_populate(cf.vm, 0, src, PG, 0), -EEXIST);
	cf_host_refused(3 * PG);
	cf_assert_invariants(cf.vm);
	cf_vcpu();
	cf_finalize();
	ck_assert_int_eq(ccvm_vm_finalize(cf.vm), -EINVAL);
	ck_assert_int_eq(ccvm_vm_populate(cf.vm, 4 * PG, src, PG, 0), -EINVAL);
	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_launch, &a), 0);
	cf_expect_done(cf.v[0], NULL);
	for (i = 0; i < 4; i++)
		ck_assert_msg(cf_is(a.seen[i], PG, (uint8_t)(0x51 + i)),
			      "%s: launched page %d reads wrong", cf.name, i);
	host_view(0, page);
	ck_assert(cf.caps.private_readable_by_host ? cf_is(page, PG, 0x51)
						   : !cf_is(page, PG, 0x51));
	cf_finish();
}
END_TEST

/* ------------------------------------------------------------------ */
/* errno tables                                                        */
/* ------------------------------------------------------------------ */

/*
 * The conversion call of each scheme on the same rows: per VM
 * KVM_SET_MEMORY_ATTRIBUTES at gpa, in place KVM_SET_MEMORY_ATTRIBUTES2 on
 * slot 0's 2M file at that offset (flags 1 is its ZERO content mode there,
 * which only converts to shared).
 */
static const struct {
	uint64_t gpa, size, attrs, flags;
	int want_vm, want_gmem;
} attr_rows[] = {
	{ 0, PG, PRIV, 1, -EINVAL, -EINVAL },			/* flags; ZERO to private */
	{ 0, PG, 1ull << 0, 0, -EINVAL, -EINVAL },		/* unknown attribute */
	{ 0, PG, PRIV | (1ull << 4), 0, -EINVAL, -EINVAL },
	{ 0, 0, PRIV, 0, -EINVAL, -EINVAL },			/* size 0 */
	{ 0x1000ull << 40, ~0ull << 12, PRIV, 0, -EINVAL, -EINVAL }, /* wraps */
	{ 0x800, PG, PRIV, 0, -EINVAL, -EINVAL },		/* unaligned gpa */
	{ 0, PG + 1, PRIV, 0, -EINVAL, -EINVAL },		/* unaligned size */
	{ 0, PG, PRIV, 0, 0, 0 },
	{ 0, PG, PRIV, 0, 0, 0 },				/* no change */
	{ 1ull << 40, 2 * MIB, PRIV, 0, 0, -EINVAL },		/* no memslot needed; EOF */
	{ 0, 2 * MIB, 0, 0, 0, 0 },
};
#define ATTR_ROW_NOOP	8

static int set_attr_row(unsigned int r)
{
	struct ccvm_memory_attributes2 a = {
		.offset = attr_rows[r].gpa, .size = attr_rows[r].size,
		.attributes = attr_rows[r].attrs, .flags = attr_rows[r].flags,
	};

	if (!cf.in_place)
		return ccvm_vm_set_memory_attributes(cf.vm, attr_rows[r].gpa, attr_rows[r].size,
						     attr_rows[r].attrs, attr_rows[r].flags);
	return ccvm_gmem_set_memory_attributes(cf.g, &a);
}

/* The other scheme's call: refused, with nothing changed. */
static void other_scheme_refused(void)
{
	struct ccvm_memory_attributes2 a = { .size = PG, .attributes = PRIV };
	struct tu_snap s0, s1;

	snap(&s0);
	if (cf.in_place) {
		/* The VM store takes no PRIVATE; attributes 0 are a no-op. */
		ck_assert_int_eq(ccvm_vm_set_memory_attributes(cf.vm, 0, PG, PRIV, 0), -EINVAL);
		ck_assert_int_eq(ccvm_vm_set_memory_attributes(cf.vm, 0, 2 * MIB, 0, 0), 0);
		/* And the reserved words of the gmem call must be 0. */
		a.reserved[3] = 1;
		ck_assert_int_eq(ccvm_gmem_set_memory_attributes(cf.g, &a), -EINVAL);
	} else {
		/* No in-place conversion: the gmem ioctl is unknown, as upstream. */
		ck_assert_int_eq(ccvm_gmem_set_memory_attributes(cf.g, &a), -ENOTTY);
	}
	snap(&s1);
	tu_snap_assert_same(&s0, &s1);
}

START_TEST(test_errno_attr)
{
	uint64_t v = 0;
	unsigned int r;

	if (!cf_up(_i, 2 * MIB, false))
		return;
	for (r = 0; r < TU_ARRAY_SIZE(attr_rows); r++) {
		int want = cf.in_place ? attr_rows[r].want_gmem : attr_rows[r].want_vm;
		struct tu_snap a, b;
		int got;

		snap(&a);
		got = set_attr_row(r);
		ck_assert_msg(got == want, "%s: row %u: %d, want %d", cf.name, r, got, want);
		if (got || r == ATTR_ROW_NOOP) {
			snap(&b);
			tu_snap_assert_same(&a, &b);
		}
	}
	if (!cf.in_place)
		ck_assert_uint_eq(attr_at(1ull << 40, NULL), PRIV);
	ck_assert_uint_eq(attr_at(0, NULL), 0);
	other_scheme_refused();
	ck_assert_int_eq(ccvm_vm_get_memory_attributes(cf.vm, 0x800, &v, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_get_memory_attributes(cf.g, 0x800, &v, NULL), -EINVAL);
	cf_finish();
}
END_TEST

enum { G_NONE, G_MAIN, G_SPARE, G_OTHER_VM };

static const struct {
	const char *what;
	uint32_t slot, flags;
	uint64_t gpa, size;
	bool uaddr;			/* the VMM buffer (else NULL) */
	uint64_t uaddr_off;
	int gmem;			/* G_* */
	uint64_t off;
	int want;
} slot_rows[] = {
	{ "unknown flag", 1, 1u << 3, 16 * MIB, 2 * MIB, true, 0, G_NONE, 0, -EINVAL },
	{ "dirty logging", 1, CCVM_MEM_LOG_DIRTY_PAGES, 16 * MIB, 2 * MIB, true, 0, G_NONE, 0,
	  -EINVAL },
	{ "read-only", 1, CCVM_MEM_READONLY, 16 * MIB, 2 * MIB, true, 0, G_NONE, 0, -EINVAL },
	{ "gmem + dirty logging", 1, CCVM_MEM_GUEST_MEMFD | CCVM_MEM_LOG_DIRTY_PAGES, 16 * MIB,
	  2 * MIB, false, 0, G_SPARE, 0, -EINVAL },
	{ "unaligned gpa", 1, 0, 16 * MIB + 8, 2 * MIB, true, 0, G_NONE, 0, -EINVAL },
	{ "unaligned size", 1, 0, 16 * MIB, 2 * MIB - 8, true, 0, G_NONE, 0, -EINVAL },
	{ "unaligned uaddr", 1, 0, 16 * MIB, PG, true, 8, G_NONE, 0, -EINVAL },
	{ "unaligned gmem offset", 1, CCVM_MEM_GUEST_MEMFD, 16 * MIB, PG, false, 0, G_SPARE, 8,
	  -EINVAL },
	{ "slot id too big", CCVM_MAX_MEMSLOTS, 0, 16 * MIB, PG, true, 0, G_NONE, 0, -EINVAL },
	{ "address space 1", 1u << 16, 0, 16 * MIB, PG, true, 0, G_NONE, 0, -EINVAL },
	{ "gpa wraps", 1, 0, ~0ull << 12, 2 * PG, true, 0, G_NONE, 0, -EINVAL },
	{ "past the GPA space", 1, 0, 1ull << 48, PG, true, 0, G_NONE, 0, -EINVAL },
	{ "too many pages", 1, 0, 0, 1ull << 43, true, 0, G_NONE, 0, -EINVAL },
	{ "overlap", 1, 0, MIB, 2 * MIB, true, 0, G_NONE, 0, -EEXIST },
	{ "gmem flag, no file", 1, CCVM_MEM_GUEST_MEMFD, 16 * MIB, PG, false, 0, G_NONE, 0,
	  -EBADF },
	{ "gmem past EOF", 1, CCVM_MEM_GUEST_MEMFD, 16 * MIB, 4 * MIB, false, 0, G_SPARE,
	  2 * MIB, -EINVAL },
	{ "file range bound already", 1, CCVM_MEM_GUEST_MEMFD, 16 * MIB, PG, false, 0, G_MAIN,
	  PG, -EINVAL },
	{ "gmem of another VM", 1, CCVM_MEM_GUEST_MEMFD, 16 * MIB, PG, false, 0, G_OTHER_VM, 0,
	  -EINVAL },
	{ "delete a missing slot", 5, 0, 0, 0, false, 0, G_NONE, 0, -EINVAL },
	{ "move a gmem slot", 0, CCVM_MEM_GUEST_MEMFD, 16 * MIB, 2 * MIB, true, 0, G_MAIN, 0,
	  -EINVAL },
	{ "resize a gmem slot", 0, CCVM_MEM_GUEST_MEMFD, 0, MIB, true, 0, G_MAIN, 0, -EINVAL },
	{ "create", 1, CCVM_MEM_GUEST_MEMFD, 16 * MIB, 2 * MIB, true, 0, G_SPARE, 0, 0 },
	{ "delete", 1, 0, 0, 0, false, 0, G_NONE, 0, 0 },
};

START_TEST(test_errno_memslot)
{
	struct ccvm_vm *other = NULL;
	struct ccvm_gmem *spare, *foreign;
	uint8_t *ubuf;
	unsigned int r;

	if (!cf_up(_i, 2 * MIB, false))
		return;
	/* A VMM buffer for the rows that pass one (in place slot 0 has none). */
	ubuf = aligned_alloc(CF_2M, 2 * MIB);
	ck_assert_ptr_nonnull(ubuf);
	spare = tu_gmem(cf.vm, 4 * MIB, 0);
	ck_assert_int_eq(ccvm_vm_create(cf.p, NULL, &other), 0);
	foreign = tu_gmem(other, 2 * MIB, 0);
	for (r = 0; r < TU_ARRAY_SIZE(slot_rows); r++) {
		struct ccvm_gmem *files[] = { NULL, cf.g, spare, foreign };
		struct tu_snap a, b;
		int got;

		tu_snap_take(&a, cf.p, cf.vm, cf.g, spare, 0, 64 * MIB);
		got = tu_region(cf.vm, slot_rows[r].slot, slot_rows[r].flags, slot_rows[r].gpa,
				slot_rows[r].size,
				slot_rows[r].uaddr ? ubuf + slot_rows[r].uaddr_off : NULL,
				files[slot_rows[r].gmem], slot_rows[r].off);
		ck_assert_msg(got == slot_rows[r].want, "%s: %s: %d, want %d", cf.name,
			      slot_rows[r].what, got, slot_rows[r].want);
		if (got) {
			tu_snap_take(&b, cf.p, cf.vm, cf.g, spare, 0, 64 * MIB);
			tu_snap_assert_same(&a, &b);
		}
		cf_assert_invariants(cf.vm);
	}
	ck_assert_uint_eq(tu_gmem_info(spare).nr_bindings, 0);
	ck_assert_int_eq(ccvm_gmem_close(spare), 0);
	ck_assert_int_eq(ccvm_gmem_close(foreign), 0);
	ck_assert_int_eq(ccvm_vm_close(other), 0);
	cf_finish();
	free(ubuf);
}
END_TEST

START_TEST(test_errno_gmem)
{
	static const struct {
		uint64_t size, flags;
		int want;	/* 1: 0 if the caps support the flags, else -EINVAL */
	} create_rows[] = {
		{ 0, 0, -EINVAL },
		{ PG + 1, 0, -EINVAL },
		{ 1ull << 63, 0, -EINVAL },
		{ PG, 1ull << 2, -EINVAL },
		{ PG, CCVM_GMEM_FLAG_MMAP, 1 },
		{ PG, CCVM_GMEM_FLAG_INIT_SHARED, 1 },
		{ PG, 0, 0 },
		/* Huge folios: the size is a whole number of folios. */
		{ 2 * MIB, CCVM_GMEM_FLAG_HUGETLB, 1 },
		{ 2 * MIB, CCVM_GMEM_FLAG_HUGETLB | CCVM_GMEM_HUGE_2MB, 1 },
		{ PG, CCVM_GMEM_FLAG_HUGETLB, -EINVAL },
		{ 2 * MIB + PG, CCVM_GMEM_FLAG_HUGETLB | CCVM_GMEM_HUGE_2MB, -EINVAL },
		{ MIB, CCVM_GMEM_FLAG_HUGETLB | CCVM_GMEM_HUGE_2MB, -EINVAL },
		{ 2 * MIB, CCVM_GMEM_FLAG_HUGETLB | CCVM_GMEM_HUGE_1GB, -EINVAL },
		{ 2 * MIB, CCVM_GMEM_HUGE_2MB, -EINVAL },		/* size bits alone */
		{ 2 * MIB, CCVM_GMEM_FLAG_HUGETLB | (22ull << CCVM_GMEM_HUGE_SHIFT), -EINVAL },
	};
	static const struct {
		int mode;
		uint64_t off, len;
		int want;
	} falloc_rows[] = {
		{ 0, 0, PG, -EOPNOTSUPP },			/* no KEEP_SIZE */
		{ CCVM_FALLOC_PUNCH_HOLE, 0, PG, -EOPNOTSUPP },
		{ KEEP | 0x4, 0, PG, -EOPNOTSUPP },
		{ KEEP, 8, PG, -EINVAL },
		{ KEEP, 0, PG + 8, -EINVAL },
		{ KEEP, 0, 0, -EINVAL },
		{ PUNCH, 0, 0, -EINVAL },
		{ KEEP, MIB, 2 * MIB, -EINVAL },		/* allocate past EOF */
		{ KEEP, 1ull << 63, PG, -EINVAL },		/* negative loff_t */
		{ KEEP, PG, (uint64_t)INT64_MAX & ~(PG - 1), -EFBIG },
		{ PUNCH, 4 * MIB, PG, 0 },			/* punch past EOF: nothing */
		{ KEEP, 0, 2 * PG, 0 },
		{ PUNCH, 0, PG, 0 },
	};
	struct ccvm_backend_caps vcaps = { .sz = sizeof(vcaps) };
	unsigned int r;

	if (!cf_up(_i, 2 * MIB, true))
		return;
	/* The VM's own caps: INIT_SHARED depends on its attribute scheme. */
	ck_assert_int_eq(ccvm_vm_caps(cf.vm, &vcaps), 0);
	for (r = 0; r < TU_ARRAY_SIZE(create_rows); r++) {
		struct ccvm_gmem *g = (struct ccvm_gmem *)&r;	/* must stay untouched */
		int want = create_rows[r].want, got;
		struct tu_snap a, b;

		if (want == 1)
			want = (create_rows[r].flags & ~CCVM_GMEM_HUGE_MASK & ~vcaps.gmem_flags) ?
			       -EINVAL : 0;
		snap(&a);
		got = ccvm_gmem_create(cf.vm, create_rows[r].size, create_rows[r].flags, &g);
		ck_assert_msg(got == want, "%s: create row %u: %d, want %d", cf.name, r, got,
			      want);
		if (got) {
			ck_assert_ptr_eq(g, (struct ccvm_gmem *)&r);
			snap(&b);
			tu_snap_assert_same(&a, &b);
		} else {
			ck_assert_uint_eq(tu_gmem_info(g).size, create_rows[r].size);
			ck_assert_uint_eq(tu_gmem_info(g).folio_order,
					  create_rows[r].flags & CCVM_GMEM_FLAG_HUGETLB ?
					  CCVM_FOLIO_ORDER_2M : 0);
			ck_assert_int_eq(ccvm_gmem_close(g), 0);
		}
	}
	for (r = 0; r < TU_ARRAY_SIZE(falloc_rows); r++) {
		struct tu_snap a, b;
		int got;

		snap(&a);
		got = ccvm_gmem_fallocate(cf.g, falloc_rows[r].mode, falloc_rows[r].off,
					  falloc_rows[r].len);
		ck_assert_msg(got == falloc_rows[r].want, "%s: fallocate row %u: %d, want %d",
			      cf.name, r, got, falloc_rows[r].want);
		if (got || r == 10) {
			snap(&b);
			tu_snap_assert_same(&a, &b);
		}
	}
	/*
	 * Allocated [0, 2 pages), punched [0, 1 page): one page with 4 KiB
	 * folios; with 2M folios the allocate, rounded down at both ends to
	 * the folio, allocated nothing.
	 */
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, cf_folio_pages() == 1 ? 1 : 0);
	cf_finish();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Exits                                                               */
/* ------------------------------------------------------------------ */

struct one {
	uint64_t gpa;
	bool accept;		/* accept (a private access) instead of reading */
	int ret;
	uint8_t buf[16];
};

static void guest_one(struct ccvm_guest *g, void *arg)
{
	struct one *a = arg;

	if (a->accept)
		a->ret = ccvm_guest_accept(g, a->gpa & ~(PG - 1), PG);
	if (!a->accept || !a->ret)
		a->ret = ccvm_guest_read(g, a->gpa, a->buf, sizeof(a->buf));
	ccvm_guest_sync(g, 9);
}

static void expect_memory_fault(struct ccvm_vcpu *v, uint64_t gpa, bool private)
{
	struct ccvm_run *run = ccvm_vcpu_run_state(v);
	int r = ccvm_vcpu_run(v);

	ck_assert_msg(r == -EFAULT, "%s: run %d, want -EFAULT", cf.name, r);
	ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(run->memory_fault.gpa, gpa);
	ck_assert_uint_eq(run->memory_fault.size, PG);
	ck_assert_uint_eq(run->memory_fault.flags, private ? CCVM_MEMORY_EXIT_FLAG_PRIVATE : 0);
}

START_TEST(test_exit_memory_fault)
{
	static struct one a, b, c;
	uint8_t *plain = aligned_alloc(CF_2M, 2 * MIB);
	uint8_t page[PG];

	ck_assert_ptr_nonnull(plain);
	if (!cf_up(_i, 2 * MIB, true)) {
		free(plain);
		return;
	}
	memset(plain, 0x3c, 2 * MIB);
	/*
	 * A slot without gmem.  Per VM, PRIVATE there can never be mapped.  In
	 * place no store can make it PRIVATE: only an access that is private
	 * by itself (the shared bit clear) finds it so.
	 */
	tu_plain_slot(cf.vm, 1, 16 * MIB, 2 * MIB, plain);
	if (!cf.in_place)
		tu_set_attr(cf.vm, 16 * MIB, 2 * MIB, PRIV);
	cf_runnable(3);

	if (!cf.in_place || cf.caps.has_shared_bit) {
		memset(&a, 0, sizeof(a));
		a.gpa = 16 * MIB + 3 * PG + 0x10;
		a.accept = cf.caps.requires_accept;
		ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_one, &a), 0);
		expect_memory_fault(cf.v[0], 16 * MIB + 3 * PG, true);
		/* The access runs again on the next run, and faults again. */
		expect_memory_fault(cf.v[0], 16 * MIB + 3 * PG, true);
		cf_assert_invariants(cf.vm);
	} else {
		cf_skip("a private access to a slot without gmem: in place without a shared "
			"bit every access to such a slot is shared");
	}

	if (cf.caps.has_shared_bit) {
		/* A shared access to a private page... */
		memset(&b, 0, sizeof(b));
		b.gpa = (5 * PG + 0x20) | cf.sbit;
		ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[1], guest_one, &b), 0);
		expect_memory_fault(cf.v[1], 5 * PG, false);
		/* ...runs once the VMM converts (and fills the shared page). */
		cf_set_attr(5 * PG, PG, 0);
		memset(page, 0x5d, PG);
		cf_host_write(5 * PG, page, PG);
		cf_expect_sync(cf.v[1], NULL, 9);
		ck_assert_int_eq(b.ret, 0);
		ck_assert_uint_eq(b.buf[0], 0x5d);

		/* A private access to a shared page. */
		cf_set_attr(6 * PG, PG, 0);
		memset(&c, 0, sizeof(c));
		c.gpa = 6 * PG + 0x30;
		c.accept = cf.caps.requires_accept;
		ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[2], guest_one, &c), 0);
		expect_memory_fault(cf.v[2], 6 * PG, true);
		cf_set_attr(6 * PG, PG, PRIV);
		cf_expect_sync(cf.v[2], NULL, 9);
		ck_assert_int_eq(c.ret, 0);
		ck_assert(cf_is_zero(c.buf, sizeof(c.buf)));
	} else {
		cf_skip("a shared access to a private page and the reverse: without a shared "
			"bit an access is private exactly when its page is");
	}
	cf_assert_invariants(cf.vm);
	cf_finish();
	free(plain);
}
END_TEST

struct hc {
	uint64_t gpa;
	int r1, r2, r3;
};

static void guest_hypercalls(struct ccvm_guest *g, void *arg)
{
	struct hc *a = arg;

	a->r1 = ccvm_guest_map_gpa(g, a->gpa, 3 * PG, false);
	ccvm_guest_sync(g, 1);
	a->r2 = ccvm_guest_map_gpa(g, 2 * MIB, 4 * MIB, true);
	ccvm_guest_sync(g, 2);
	a->r3 = ccvm_guest_map_gpa(g, a->gpa, PG, true);
	ccvm_guest_sync(g, 3);
}

/* Exits from @first on cover [gpa, gpa + npages) in order, at most max each. */
static void assert_chunks(const struct cf_vmm *m, unsigned int first, uint64_t gpa,
			  uint64_t npages, bool to_private)
{
	uint64_t max = cf.caps.map_gpa_max_bytes >> CCVM_PAGE_SHIFT;
	unsigned int i;

	ck_assert_uint_le(m->nr_hc, CF_MAX_HC);
	for (i = first; i < m->nr_hc && npages; i++) {
		ck_assert_uint_eq(m->hc[i].nr, CCVM_HC_MAP_GPA_RANGE);
		ck_assert_uint_eq(m->hc[i].gpa, gpa);
		ck_assert_uint_gt(m->hc[i].npages, 0);
		ck_assert_uint_le(m->hc[i].npages, npages);
		if (max)
			ck_assert_uint_le(m->hc[i].npages, max);
		ck_assert_int_eq(!!(m->hc[i].attrs & CCVM_MAP_GPA_RANGE_ENCRYPTED), to_private);
		if (m->hc[i].attrs & CCVM_MAP_GPA_RANGE_PAGE_SZ_2M)
			ck_assert_uint_eq(m->hc[i].npages % 512, 0);
		gpa += m->hc[i].npages * PG;
		npages -= m->hc[i].npages;
	}
	ck_assert_uint_eq(npages, 0);
	ck_assert_uint_eq(i, m->nr_hc);
}

START_TEST(test_exit_hypercall)
{
	static struct hc a;
	struct cf_vmm m = { 0 };

	if (!cf_up(_i, 8 * MIB, true))
		return;
	cf_runnable(1);
	memset(&a, 0, sizeof(a));
	a.gpa = 7 * PG;
	ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_hypercalls, &a), 0);

	cf_expect_sync(cf.v[0], &m, 1);
	ck_assert_int_eq(a.r1, 0);
	ck_assert_uint_eq(m.nr_hc, 1);
	assert_chunks(&m, 0, a.gpa, 3, false);
	ck_assert_uint_eq(m.hc[0].attrs & CCVM_MAP_GPA_RANGE_PAGE_SZ_2M, 0);
	ck_assert_uint_eq(attr_at(a.gpa, NULL), 0);

	cf_expect_sync(cf.v[0], &m, 2);
	ck_assert_int_eq(a.r2, 0);
	assert_chunks(&m, 1, 2 * MIB, 1024, true);

	m.hc_ret = EINVAL;
	m.nr_hc = 0;
	cf_expect_sync(cf.v[0], &m, 3);
	ck_assert_int_eq(a.r3, -EINVAL);
	ck_assert_uint_eq(m.nr_hc, 1);
	ck_assert_uint_eq(attr_at(a.gpa, NULL), 0);	/* the VMM refused */
	cf_expect_done(cf.v[0], &m);
	cf_finish();
}
END_TEST

struct mmio {
	uint8_t rd[8], rd12[12];
};

static void guest_mmio(struct ccvm_guest *g, void *arg)
{
	struct mmio *a = arg;
	uint64_t sbit = ccvm_guest_shared_bit(g);
	static const uint8_t wr[4] = { 0xde, 0xad, 0xbe, 0xef };

	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, (MMIO_BASE + 0x10) | sbit, wr, 4) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, (MMIO_BASE + 0x20) | sbit, a->rd, 8) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, (MMIO_BASE + 0x40) | sbit, a->rd12, 12) == 0);
}

static struct ccvm_run *expect_mmio(struct ccvm_vcpu *v, uint64_t addr, uint32_t len,
				    bool is_write)
{
	struct ccvm_run *run = ccvm_vcpu_run_state(v);

	ck_assert_int_eq(ccvm_vcpu_run(v), 0);
	ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_MMIO);
	ck_assert_uint_eq(run->mmio.phys_addr, addr);
	ck_assert_uint_eq(run->mmio.len, len);
	ck_assert_uint_eq(run->mmio.is_write, is_write);
	return run;
}

START_TEST(test_exit_mmio)
{
	static struct mmio a;
	struct ccvm_run *run;
	int i;

	if (!cf_up(_i, 2 * MIB, false))
		return;
	cf_runnable(1);
	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_mmio, &a), 0);
	run = expect_mmio(cf.v[0], MMIO_BASE + 0x10, 4, true);
	ck_assert_int_eq(memcmp(run->mmio.data, "\xde\xad\xbe\xef", 4), 0);
	run = expect_mmio(cf.v[0], MMIO_BASE + 0x20, 8, false);
	for (i = 0; i < 8; i++)
		run->mmio.data[i] = (uint8_t)(i + 1);
	/* 12 bytes: an exit of 8, then one of 4. */
	run = expect_mmio(cf.v[0], MMIO_BASE + 0x40, 8, false);
	memset(run->mmio.data, 0xa1, 8);
	run = expect_mmio(cf.v[0], MMIO_BASE + 0x48, 4, false);
	memset(run->mmio.data, 0xb2, 8);
	cf_expect_done(cf.v[0], NULL);
	for (i = 0; i < 8; i++)
		ck_assert_uint_eq(a.rd[i], i + 1);
	for (i = 0; i < 12; i++)
		ck_assert_uint_eq(a.rd12[i], i < 8 ? 0xa1 : 0xb2);
	cf_finish();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Pre-fault                                                           */
/* ------------------------------------------------------------------ */

/* Pages test_prefault faults in slot 0's file: 2 at its end, 8 at 0, 8 at 1M. */
static const uint64_t pf_pages[] = {
	4 * MIB - 2 * PG, 4 * MIB - PG,
	0, PG, 2 * PG, 3 * PG, 4 * PG, 5 * PG, 6 * PG, 7 * PG,
	MIB, MIB + PG, MIB + 2 * PG, MIB + 3 * PG, MIB + 4 * PG, MIB + 5 * PG, MIB + 6 * PG,
	MIB + 7 * PG,
};

START_TEST(test_prefault)
{
	const uint64_t size = 4 * MIB;
	uint8_t *plain = aligned_alloc(CF_2M, 2 * MIB);
	struct tu_snap s0, s1;
	uint64_t gpa, len, i, nr;

	ck_assert_ptr_nonnull(plain);
	if (!cf_up(_i, size, true)) {
		free(plain);
		return;
	}
	tu_plain_slot(cf.vm, 1, 16 * MIB, 2 * MIB, plain);
	if (!cf.in_place)
		tu_set_attr(cf.vm, 16 * MIB, PG, PRIV);
	cf_runnable(1);

	snap(&s0);
	gpa = 0, len = 0;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), -EINVAL);
	gpa = 8, len = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), -EINVAL);
	ck_assert_uint_eq(gpa, 8);
	ck_assert_uint_eq(len, PG);
	gpa = 0, len = 8;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), -EINVAL);
	gpa = ~0ull << 12, len = 2 * PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), -EINVAL);
	snap(&s1);
	tu_snap_assert_same(&s0, &s1);

	/* Past the slot's end: partial progress, then -ENOENT. */
	gpa = size - 2 * PG, len = 4 * PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), 0);
	ck_assert_uint_eq(gpa, size);
	ck_assert_uint_eq(len, 2 * PG);
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), -ENOENT);
	ck_assert_uint_eq(gpa, size);
	ck_assert_uint_eq(len, 2 * PG);
	ck_assert(mapped(size - PG, NULL));

	/* Private pages as a private access would map them. */
	gpa = 0, len = 8 * PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), 0);
	ck_assert_uint_eq(gpa, 8 * PG);
	ck_assert_uint_eq(len, 0);
	for (i = 0; i < 8; i++)
		ck_assert(mapped(i * PG, NULL));
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, cf_alloc_pages(pf_pages, 10));

	/* Shared ones at the shared alias: in place, the file's own pages. */
	cf_set_attr(MIB, 8 * PG, 0);
	nr = tu_gmem_info(cf.g).nr_pages;
	gpa = MIB, len = 8 * PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert(mapped(MIB | cf.sbit, NULL));
	if (cf.sbit)
		ck_assert(!mapped(MIB, NULL));
	/* In place the 8 pages come from the file: new folios only where none was. */
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages,
			  cf.in_place ? cf_alloc_pages(pf_pages, TU_ARRAY_SIZE(pf_pages)) : nr);

	gpa = 16 * MIB, len = PG;
	if (!cf.in_place) {
		/* PRIVATE without gmem: the memory-fault case. */
		ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), -EFAULT);
		ck_assert_uint_eq(gpa, 16 * MIB);
		ck_assert_uint_eq(len, PG);
	} else {
		/* A slot without gmem has no PRIVATE in place: the VMM's memory, shared. */
		ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(cf.v[0], &gpa, &len), 0);
		ck_assert_uint_eq(len, 0);
		ck_assert(mapped(16 * MIB | cf.sbit, NULL));
	}
	cf_finish();
	free(plain);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Lifetimes and bindings                                              */
/* ------------------------------------------------------------------ */

/* Pages a guest writes or checks: @pat fills @gpa; gpa CF_NONE ends. */
struct pg {
	uint64_t gpa;
	uint8_t pat;
};

static void guest_write_pages(struct ccvm_guest *g, void *arg)
{
	const struct pg *pages = arg;
	uint8_t buf[PG];
	int i;

	for (i = 0; pages[i].gpa != CF_NONE; i++) {
		CCVM_GUEST_ASSERT(g, cf_guest_accept(g, pages[i].gpa, PG) == 0);
		cf_fill(buf, PG, pages[i].pat);
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, pages[i].gpa, buf, PG) == 0);
	}
}

static void guest_check_pages(struct ccvm_guest *g, void *arg)
{
	const struct pg *pages = arg;
	uint8_t buf[PG];
	int i;

	for (i = 0; pages[i].gpa != CF_NONE; i++) {
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, pages[i].gpa, buf, PG) == 0);
		CCVM_GUEST_ASSERT(g, cf_is(buf, PG, pages[i].pat));
	}
}

START_TEST(test_gmem_outlives_vm)
{
	static const struct pg gpas[] = { { 0, 0x81 }, { 9 * PG, 0x82 }, { CF_NONE, 0 } };
	static const uint64_t gpa_offs[] = { 0, 9 * PG };	/* slot 0 is the file at 0 */

	if (!cf_up(_i, 2 * MIB, true))
		return;
	cf_runnable(1);
	ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_write_pages, (void *)gpas), 0);
	cf_expect_done(cf.v[0], NULL);
	cf_close_vcpus();
	cf_assert_invariants(cf.vm);

	/* The handle goes; the file keeps the VM. */
	ck_assert_int_eq(ccvm_vm_close(cf.vm), 0);
	cf.vm_open = false;
	ck_assert_int_eq(ccvm_vm_close(cf.vm), -EINVAL);
	ck_assert_int_eq(ccvm_platform_destroy(cf.p), -EBUSY);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, cf_alloc_pages(gpa_offs, 2));
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_bindings, 1);
	ck_assert_int_eq(ccvm_gmem_fallocate(cf.g, KEEP, MIB, 16 * PG), 0);
	/*
	 * 16 new pages with 4 KiB folios; with 2M folios an allocate inside
	 * one folio allocates nothing (both ends rounded down), and folio 0
	 * is there already.
	 */
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages,
			  cf_folio_pages() == 1 ? 18 : cf_alloc_pages(gpa_offs, 2));
	ck_assert_int_eq(ccvm_gmem_fallocate(cf.g, PUNCH, 0, 2 * MIB), 0);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(cf.g, KEEP, 0, PG), 0);
	cf_assert_platform_invariants(cf.p);
	cf_finish();
}
END_TEST

START_TEST(test_slots_share_gmem)
{
	static const struct pg gpas[] = {
		{ 0, 0x91 }, { 16 * MIB + PG, 0x92 }, { 48 * MIB + 2 * PG, 0x93 }, { CF_NONE, 0 },
	};
	/* Where those pages are in the file: slots 0, 1 and 3 bind it at 0, 2M, 1M. */
	static const uint64_t file_offs[] = { 0, 2 * MIB + PG, MIB + 2 * PG };
	uint64_t pfn[3], p;
	int i, j;

	if (!cf_up(_i, 4 * MIB, false))
		return;
	ck_assert_int_eq(tu_region(cf.vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_bindings, 0);
	tu_gmem_slot(cf.vm, 0, 0, MIB, cf.g, 0);
	tu_gmem_slot(cf.vm, 1, 16 * MIB, MIB, cf.g, 2 * MIB);
	ck_assert_int_eq(tu_region(cf.vm, 2, CCVM_MEM_GUEST_MEMFD, 32 * MIB, MIB, NULL, cf.g,
				   MIB / 2), -EINVAL);
	tu_gmem_slot(cf.vm, 3, 48 * MIB, MIB, cf.g, MIB);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_bindings, 3);
	/* In place one conversion of the file covers its three bindings. */
	if (cf.in_place)
		cf_file_set(0, cf.size, PRIV);
	else
		tu_set_attr(cf.vm, 0, 64 * MIB, PRIV);
	cf_runnable(1);
	ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_write_pages, (void *)gpas), 0);
	cf_expect_done(cf.v[0], NULL);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, cf_alloc_pages(file_offs, 3));
	for (i = 0; i < 3; i++) {
		ck_assert(mapped(gpas[i].gpa, &pfn[i]));
		for (j = 0; j < i; j++)
			ck_assert_uint_ne(pfn[i], pfn[j]);
	}
	cf_assert_invariants(cf.vm);

	/* Deleting slot 0 zaps its gfns and only those (I30). */
	ck_assert_int_eq(tu_region(cf.vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_bindings, 2);
	ck_assert(!mapped(0, NULL));
	for (i = 1; i < 3; i++) {
		ck_assert(mapped(gpas[i].gpa, &p));
		ck_assert_uint_eq(p, pfn[i]);
	}
	/* The file keeps its pages. */
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, cf_alloc_pages(file_offs, 3));
	cf_assert_invariants(cf.vm);
	/* What was written through slots 1 and 3 is still there. */
	ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_check_pages, (void *)&gpas[1]), 0);
	cf_expect_done(cf.v[0], NULL);
	cf_finish();
}
END_TEST

/* ------------------------------------------------------------------ */
/* vCPU threads at once                                                */
/* ------------------------------------------------------------------ */

#define TH_ITERS	64
#define TH_PAGES	4
#define TH_STRIDE	(512 * 1024ull)
#define TH_SHARED	(4 * MIB)

struct th {
	uint32_t k;
	pthread_t thread;
	struct ccvm_vcpu *v;
	int bad;			/* VMM side: unexpected exits */
	unsigned int syncs;
};

static void guest_thread_fn(struct ccvm_guest *g, void *arg)
{
	struct th *t = arg;
	uint64_t sbit = ccvm_guest_shared_bit(g);
	uint64_t priv = t->k * TH_STRIDE, shared = TH_SHARED + t->k * TH_STRIDE;
	uint64_t it, w, r;

	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, priv, TH_PAGES * PG) == 0);
	for (it = 0; it < TH_ITERS; it++) {
		uint64_t off = (it % TH_PAGES) * PG + (it % 64) * 8;

		w = (uint64_t)t->k << 32 | it;
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, priv + off, &w, 8) == 0);
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, priv + off, &r, 8) == 0);
		CCVM_GUEST_ASSERT(g, r == w);
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, (shared + off) | sbit, &w, 8) == 0);
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, (shared + off) | sbit, &r, 8) == 0);
		CCVM_GUEST_ASSERT(g, r == w);
		if (it % 16 == 15)
			ccvm_guest_sync(g, it);
	}
}

static void *vmm_thread_fn(void *arg)
{
	struct th *t = arg;

	for (;;) {
		int r = ccvm_vcpu_run(t->v);
		struct ccvm_run *run = ccvm_vcpu_run_state(t->v);

		if (r == 0 && run->exit_reason == CCVM_EXIT_SYNC) {
			t->syncs++;
			continue;
		}
		if (r != 0 || run->exit_reason != CCVM_EXIT_DONE)
			t->bad = r ? r : (int)run->exit_reason;
		return NULL;
	}
}

static void vcpu_threads(int backend, int n)
{
	struct th t[CF_MAX_VCPUS];
	int k;

	if (!cf_up(backend, 8 * MIB, true))
		return;
	cf_set_attr(TH_SHARED, 4 * MIB, 0);
	cf_runnable(n);
	for (k = 0; k < n; k++) {
		memset(&t[k], 0, sizeof(t[k]));
		t[k].k = (uint32_t)k;
		t[k].v = cf.v[k];
		ck_assert_int_eq(ccvm_vcpu_set_guest(t[k].v, guest_thread_fn, &t[k]), 0);
	}
	for (k = 0; k < n; k++)
		ck_assert_int_eq(pthread_create(&t[k].thread, NULL, vmm_thread_fn, &t[k]), 0);
	for (k = 0; k < n; k++)
		ck_assert_int_eq(pthread_join(t[k].thread, NULL), 0);
	for (k = 0; k < n; k++) {
		struct ccvm_run *run = ccvm_vcpu_run_state(t[k].v);

		ck_assert_msg(!t[k].bad, "%s: vCPU %d ended with %d%s%s", cf.name, k, t[k].bad,
			      run->exit_reason == CCVM_EXIT_GUEST_ABORT ? ": " : "",
			      run->exit_reason == CCVM_EXIT_GUEST_ABORT ? run->abort.msg : "");
		ck_assert_uint_eq(t[k].syncs, TH_ITERS / 16);
	}
	/* The shared halves are the VMM's memory: it sees the last writes. */
	for (k = 0; k < n; k++) {
		uint64_t it = TH_ITERS - 1, w;
		uint64_t off = (it % TH_PAGES) * PG + (it % 64) * 8;

		cf_host_read(TH_SHARED + k * TH_STRIDE + off, &w, 8);
		ck_assert_uint_eq(w, (uint64_t)k << 32 | it);
	}
	cf_finish();
}

START_TEST(test_vcpus_1)
{
	vcpu_threads(_i, 1);
}
END_TEST

START_TEST(test_vcpus_4)
{
	vcpu_threads(_i, 4);
}
END_TEST

/* The out-of-tree backend of examples/backend.c. */
const struct ccvm_backend_ops *example_tiny_backend(void);

static void register_example_backend(void)
{
	ck_assert_int_eq(ccvm_backend_register(example_tiny_backend()), 0);
}

/* Every scenario, looped over the variants [from, to) (conformance.h). */
static void add_scenarios(TCase *tc, int from, int to)
{
	tcase_add_loop_test(tc, test_roundtrip, from, to);
	tcase_add_loop_test(tc, test_roundtrip_punch, from, to);
	tcase_add_loop_test(tc, test_neighbours, from, to);
	tcase_add_loop_test(tc, test_punch_refault, from, to);
	tcase_add_loop_test(tc, test_launch, from, to);
	tcase_add_loop_test(tc, test_huge_blocks, from, to);
	tcase_add_loop_test(tc, test_errno_attr, from, to);
	tcase_add_loop_test(tc, test_errno_memslot, from, to);
	tcase_add_loop_test(tc, test_errno_gmem, from, to);
	tcase_add_loop_test(tc, test_exit_memory_fault, from, to);
	tcase_add_loop_test(tc, test_exit_hypercall, from, to);
	tcase_add_loop_test(tc, test_exit_mmio, from, to);
	tcase_add_loop_test(tc, test_prefault, from, to);
	tcase_add_loop_test(tc, test_gmem_outlives_vm, from, to);
	tcase_add_loop_test(tc, test_slots_share_gmem, from, to);
	tcase_add_loop_test(tc, test_vcpus_1, from, to);
	tcase_add_loop_test(tc, test_vcpus_4, from, to);
}

Suite *conformance_suite(void)
{
	Suite *s = suite_create("conformance");
	int n = cf_nr_backends(), nv = cf_nr_variants();
	TCase *tc;

	tc = tcase_create("conversion");
	tcase_add_loop_test(tc, test_roundtrip, 0, nv);
	tcase_add_loop_test(tc, test_roundtrip_punch, 0, nv);
	tcase_add_loop_test(tc, test_neighbours, 0, nv);
	tcase_add_loop_test(tc, test_punch_refault, 0, nv);
	tcase_add_loop_test(tc, test_launch, 0, nv);
	tcase_add_loop_test(tc, test_huge_blocks, 0, nv);
	suite_add_tcase(s, tc);

	tc = tcase_create("errno");
	tcase_add_loop_test(tc, test_errno_attr, 0, nv);
	tcase_add_loop_test(tc, test_errno_memslot, 0, nv);
	tcase_add_loop_test(tc, test_errno_gmem, 0, nv);
	suite_add_tcase(s, tc);

	tc = tcase_create("exits");
	tcase_add_loop_test(tc, test_exit_memory_fault, 0, nv);
	tcase_add_loop_test(tc, test_exit_hypercall, 0, nv);
	tcase_add_loop_test(tc, test_exit_mmio, 0, nv);
	tcase_add_loop_test(tc, test_prefault, 0, nv);
	suite_add_tcase(s, tc);

	tc = tcase_create("lifetime");
	tcase_add_loop_test(tc, test_gmem_outlives_vm, 0, nv);
	tcase_add_loop_test(tc, test_slots_share_gmem, 0, nv);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_loop_test(tc, test_vcpus_1, 0, nv);
	tcase_add_loop_test(tc, test_vcpus_4, 0, nv);
	suite_add_tcase(s, tc);

	/*
	 * The out-of-tree backend: registered in each test's own process (fork
	 * mode), so that it is the last name of ccvm_backend_names() there and
	 * nowhere else, every mode of it.
	 */
	tc = tcase_create("out-of-tree");
	tcase_add_checked_fixture(tc, register_example_backend, NULL);
	add_scenarios(tc, cf_variant(n, 0), cf_variant(n + 1, 0));
	suite_add_tcase(s, tc);
	return s;
}
