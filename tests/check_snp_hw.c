/* SPDX-License-Identifier: MIT */
/*
 * Tests for the simulated SEV-SNP hardware (backends/snp/snp-hw.c): every
 * RMPUPDATE/PSMASH/PVALIDATE rule, the guest's and the host's RMP checks,
 * the direct map (I22), ASID recycling, leaks, and real FAIL_OVERLAP /
 * FAIL_INUSE between threads.  Each test gets a fresh platform with the snp
 * backend and calls the hardware directly with pages from ccvm_page_alloc().
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "testutil.h"
#include "../backends/snp/snp-hw.h"

#define GIB		(1ull << 30)
#define MIB		(1ull << 20)
#define PER_2M		CCVM_SNP_PAGES_PER_2M

static struct ccvm_platform *P;
static struct ccvm_snp_hw *HW;

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static void platform_up(uint64_t mem_bytes, uint32_t nr_keyids)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = "snp",
						     .mem_bytes = mem_bytes,
						     .nr_keyids = nr_keyids,
						     .seed = 42);

	P = tu_platform_up(&o);
	HW = ccvm_snp_hw_of(P);
	ck_assert_ptr_nonnull(HW);
}

static void setup(void)
{
	platform_up(GIB, 0);
}

static void teardown(void)
{
	tu_platform_down(P);
	P = NULL;
	HW = NULL;
}

/* Allocate pages until one whole 2M-aligned region is ours; its first pfn. */
static uint64_t region(void)
{
	uint64_t nr = ccvm_platform_nr_pages(P) / PER_2M;
	uint16_t *have = calloc(nr, sizeof(*have));
	uint64_t pfn, r = UINT64_MAX, i;

	ck_assert_ptr_nonnull(have);
	for (i = 0; i < 4 * PER_2M && r == UINT64_MAX; i++) {
		pfn = tu_page(P);
		if (pfn / PER_2M < nr && ++have[pfn / PER_2M] == PER_2M)
			r = pfn / PER_2M * PER_2M;
	}
	free(have);
	ck_assert_uint_ne(r, UINT64_MAX);
	return r;
}

static struct ccvm_snp_rmp_entry rmpread(uint64_t pfn)
{
	struct ccvm_snp_rmp_entry e;

	memset(&e, 0xff, sizeof(e));
	ck_assert_int_eq(ccvm_snp_rmpread(HW, pfn, &e), CCVM_SNP_SUCCESS);
	return e;
}

static int update(uint64_t pfn, bool assigned, int level, uint32_t asid, uint64_t gpa,
		  bool immutable)
{
	struct ccvm_snp_rmp_entry n = {
		.assigned = assigned, .level = (uint8_t)level, .asid = asid,
		.gpa = gpa, .immutable = immutable,
	};

	return ccvm_snp_rmpupdate(HW, NULL, pfn, &n);
}

static int assign(uint64_t pfn, int level, uint32_t asid, uint64_t gpa)
{
	return update(pfn, true, level, asid, gpa, false);
}

static int unassign(uint64_t pfn, int level)
{
	return update(pfn, false, level, 0, 0, false);
}

static void assert_unassigned(uint64_t pfn)
{
	struct ccvm_snp_rmp_entry e = rmpread(pfn);

	ck_assert(!e.assigned && !e.validated && !e.immutable && !e.vmsa);
	ck_assert_uint_eq(e.asid, 0);
	ck_assert_uint_eq(e.gpa, 0);
	ck_assert_uint_eq(e.level, CCVM_LEVEL_4K);
}

static void fill(uint64_t pfn, uint8_t seed)
{
	uint8_t *b = ccvm_page_ptr(P, pfn);
	size_t i;

	for (i = 0; i < CCVM_PAGE_SIZE; i++)
		b[i] = (uint8_t)(seed + i * 7);
	ccvm_page_mark_dirty(P, pfn);
}

/* ------------------------------------------------------------------ */
/* Power-on state                                                      */

START_TEST(test_init_state)
{
	uint64_t pfn = tu_page(P);
	uint64_t bad;

	ck_assert_uint_eq(HW->nr_pages, GIB / CCVM_PAGE_SIZE);
	ck_assert_uint_eq(HW->nr_asids, CCVM_SNP_DEFAULT_ASIDS);
	assert_unassigned(pfn);
	assert_unassigned(HW->nr_pages - 1);
	ck_assert_uint_eq(rmpread(pfn).region_assigned_4k, 0);
	/* One whole gigabyte: mapped with a single 1G page at boot. */
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, pfn), CCVM_LEVEL_1G);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, HW->nr_pages - 1), CCVM_LEVEL_1G);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, HW->nr_pages), -EINVAL);
	ck_assert_int_eq(ccvm_snp_directmap_check(HW, &bad), 0);
	ck_assert_int_eq(ccvm_snp_asid_state(HW, 1), CCVM_SNP_ASID_FREE);
	ck_assert_int_eq(ccvm_snp_asid_state(HW, 16), CCVM_SNP_ASID_FREE);
	ck_assert_int_eq(ccvm_snp_asid_state(HW, 0), -EINVAL);
	ck_assert_int_eq(ccvm_snp_asid_state(HW, 17), -EINVAL);
	ck_assert_int_eq(ccvm_snp_rmpread(HW, HW->nr_pages, &(struct ccvm_snp_rmp_entry){0}),
			 CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_rmpread(HW, pfn, NULL), CCVM_SNP_FAIL_INPUT);
	ck_assert(!ccvm_snp_pfn_assigned(HW, HW->nr_pages));
}
END_TEST

START_TEST(test_rc_names)
{
	ck_assert_str_eq(ccvm_snp_rc_name(CCVM_SNP_SUCCESS), "SUCCESS");
	ck_assert_str_eq(ccvm_snp_rc_name(CCVM_SNP_FAIL_INPUT), "FAIL_INPUT");
	ck_assert_str_eq(ccvm_snp_rc_name(CCVM_SNP_FAIL_PERMISSION), "FAIL_PERMISSION");
	ck_assert_str_eq(ccvm_snp_rc_name(CCVM_SNP_FAIL_INUSE), "FAIL_INUSE");
	ck_assert_str_eq(ccvm_snp_rc_name(CCVM_SNP_FAIL_OVERLAP), "FAIL_OVERLAP");
	ck_assert_str_eq(ccvm_snp_rc_name(CCVM_SNP_FAIL_SIZEMISMATCH), "FAIL_SIZEMISMATCH");
	ck_assert_str_eq(ccvm_snp_rc_name(CCVM_SNP_FAIL_NOUPDATE), "FAIL_NOUPDATE");
	ck_assert_str_eq(ccvm_snp_rc_name(CCVM_SNP_NPF_RMP), "NPF_RMP");
	ck_assert_str_eq(ccvm_snp_rc_name(CCVM_SNP_VC_NOT_VALIDATED), "VC_NOT_VALIDATED");
	ck_assert_str_eq(ccvm_snp_rc_name(5), "UNKNOWN");
	ck_assert_str_eq(ccvm_snp_rc_name(-1), "UNKNOWN");
}
END_TEST

/* A platform that is not a whole number of 2M regions or gigabytes. */
START_TEST(test_partial_memory)
{
	uint64_t last, full;

	teardown();
	platform_up(3 * CCVM_HPAGE_2M_SIZE + 16 * CCVM_PAGE_SIZE, 4);
	ck_assert_uint_eq(HW->nr_asids, 4);
	last = 3 * PER_2M;		/* the partial region */
	full = 2 * PER_2M;
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, full), CCVM_LEVEL_2M);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, last), CCVM_LEVEL_4K);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, last + 15), CCVM_LEVEL_4K);
	ck_assert_int_eq(assign(last, CCVM_LEVEL_2M, 1, 0), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_psmash(HW, NULL, last), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_rmp_psmash(HW, NULL, last + 3), -EINVAL);
	ck_assert_int_eq(assign(last + 15, CCVM_LEVEL_4K, 1, 0x5000), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(assign(last + 16, CCVM_LEVEL_4K, 1, 0x5000), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_host_access(HW, last + 14, true), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, last + 15, true), -EFAULT);
	ck_assert_int_eq(ccvm_snp_directmap_check(HW, NULL), 0);
}
END_TEST

START_TEST(test_too_many_asids)
{
	struct ccvm_platform *p2;
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = "snp",
						     .mem_bytes = 16 * MIB,
						     .nr_keyids = CCVM_SNP_MAX_ASIDS);

	ck_assert_int_eq(ccvm_platform_create(&o, &p2), 0);
	ck_assert_uint_eq(ccvm_snp_hw_of(p2)->nr_asids, CCVM_SNP_MAX_ASIDS);
	ck_assert_int_eq(ccvm_platform_destroy(p2), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* RMPUPDATE                                                           */

START_TEST(test_rmpupdate_4k)
{
	uint64_t pfn = tu_page(P);
	struct ccvm_snp_rmp_entry e;

	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 3, 0x7000), CCVM_SNP_SUCCESS);
	e = rmpread(pfn);
	ck_assert(e.assigned && !e.validated && !e.immutable && !e.vmsa);
	ck_assert_uint_eq(e.asid, 3);
	ck_assert_uint_eq(e.gpa, 0x7000);
	ck_assert_uint_eq(e.level, CCVM_LEVEL_4K);
	ck_assert_uint_eq(e.entry_pfn, pfn);
	ck_assert_uint_eq(e.region_assigned_4k, 1);
	ck_assert(ccvm_snp_pfn_assigned(HW, pfn));
	ck_assert(!ccvm_snp_pfn_assigned(HW, pfn + 1));

	/* RMPUPDATE clears validated, even with the same state. */
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 3, 0x7000, pfn, CCVM_LEVEL_4K, true),
			 CCVM_SNP_SUCCESS);
	ck_assert(rmpread(pfn).validated);
	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 3, 0x7000), CCVM_SNP_SUCCESS);
	ck_assert(!rmpread(pfn).validated);
	ck_assert_uint_eq(rmpread(pfn).region_assigned_4k, 1);

	/* Reassign in place to another guest/GPA, then give it back. */
	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 4, 0x9000), CCVM_SNP_SUCCESS);
	ck_assert_uint_eq(rmpread(pfn).asid, 4);
	ck_assert_uint_eq(rmpread(pfn).gpa, 0x9000);
	ck_assert_int_eq(unassign(pfn, CCVM_LEVEL_4K), CCVM_SNP_SUCCESS);
	assert_unassigned(pfn);
	ck_assert_uint_eq(rmpread(pfn).region_assigned_4k, 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMPUPDATE), 4);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_PVALIDATE), 1);
}
END_TEST

START_TEST(test_rmpupdate_bad_input)
{
	uint64_t pfn = tu_page(P);
	uint64_t r = region();
	struct ccvm_snp_rmp_entry bad = { .assigned = true, .level = CCVM_LEVEL_4K, .asid = 1 };

	ck_assert_int_eq(ccvm_snp_rmpupdate(HW, NULL, pfn, NULL), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_rmpupdate(HW, NULL, HW->nr_pages, &bad), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(assign(pfn, 0, 1, 0), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_1G, 1, 0), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(assign(r + 1, CCVM_LEVEL_2M, 1, 0), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 1, 0x1000), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 1, 0x1001), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 1, CCVM_SNP_GPA_LIMIT), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 17, 0), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(update(pfn, false, CCVM_LEVEL_4K, 1, 0, false), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(update(pfn, false, CCVM_LEVEL_4K, 0, 0x1000, false), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(update(pfn, false, CCVM_LEVEL_4K, 0, 0, true), CCVM_SNP_FAIL_INPUT);
	/* Nothing changed and nothing executed. */
	assert_unassigned(pfn);
	assert_unassigned(r);
	assert_unassigned(r + 1);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMPUPDATE), 0);
	/* The largest legal GPA and ASID are accepted. */
	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 16, CCVM_SNP_GPA_LIMIT - CCVM_PAGE_SIZE),
			 CCVM_SNP_SUCCESS);
	ck_assert_uint_eq(rmpread(pfn).gpa, CCVM_SNP_GPA_LIMIT - CCVM_PAGE_SIZE);
	ck_assert_uint_eq(rmpread(pfn).asid, 16);
}
END_TEST

START_TEST(test_rmpupdate_2m_rules)
{
	uint64_t r = region();
	uint64_t gpa = 7 * CCVM_HPAGE_2M_SIZE;
	struct ccvm_snp_rmp_entry e;
	uint64_t i;

	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 2, gpa), CCVM_SNP_SUCCESS);
	/* The head is authoritative for all 512 pfns. */
	for (i = 0; i < PER_2M; i += 73) {
		e = rmpread(r + i);
		ck_assert(e.assigned);
		ck_assert_uint_eq(e.level, CCVM_LEVEL_2M);
		ck_assert_uint_eq(e.asid, 2);
		ck_assert_uint_eq(e.gpa, gpa);
		ck_assert_uint_eq(e.entry_pfn, r);
		ck_assert(ccvm_snp_pfn_assigned(HW, r + i));
	}
	ck_assert_uint_eq(rmpread(r).region_assigned_4k, 0);
	ck_assert(!ccvm_snp_pfn_assigned(HW, r + PER_2M));

	/* I24: no 4K RMPUPDATE inside a 2M entry, head or tail. */
	ck_assert_int_eq(assign(r + 5, CCVM_LEVEL_4K, 2, gpa + 0x5000),
			 CCVM_SNP_FAIL_SIZEMISMATCH);
	ck_assert_int_eq(unassign(r + 5, CCVM_LEVEL_4K), CCVM_SNP_FAIL_SIZEMISMATCH);
	ck_assert_int_eq(unassign(r, CCVM_LEVEL_4K), CCVM_SNP_FAIL_SIZEMISMATCH);
	ck_assert_uint_eq(rmpread(r + 5).level, CCVM_LEVEL_2M);

	/* 2M over 2M: allowed; 2M back to shared: allowed. */
	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 3, 0), CCVM_SNP_SUCCESS);
	ck_assert_uint_eq(rmpread(r + 9).asid, 3);
	ck_assert_int_eq(unassign(r, CCVM_LEVEL_2M), CCVM_SNP_SUCCESS);
	for (i = 0; i < PER_2M; i += 73)
		assert_unassigned(r + i);

	/* A 2M update must not overlap an assigned 4K entry, either way. */
	ck_assert_int_eq(assign(r + 511, CCVM_LEVEL_4K, 2, 0x1000), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 2, gpa), CCVM_SNP_FAIL_SIZEMISMATCH);
	ck_assert_int_eq(unassign(r, CCVM_LEVEL_2M), CCVM_SNP_FAIL_SIZEMISMATCH);
	ck_assert_uint_eq(rmpread(r + 511).asid, 2);
	ck_assert_uint_eq(rmpread(r).level, CCVM_LEVEL_4K);
	/* The head as a 4K entry counts too. */
	ck_assert_int_eq(unassign(r + 511, CCVM_LEVEL_4K), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(assign(r, CCVM_LEVEL_4K, 2, 0x1000), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 2, gpa), CCVM_SNP_FAIL_SIZEMISMATCH);
	ck_assert_int_eq(unassign(r, CCVM_LEVEL_4K), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 2, gpa), CCVM_SNP_SUCCESS);
}
END_TEST

START_TEST(test_immutable)
{
	uint64_t pfn = tu_page(P), r = region();

	/* Firmware pages: assigned, ASID 0, immutable. */
	ck_assert_int_eq(ccvm_snp_fw_mark_pages(HW, NULL, pfn, 1), 0);
	ck_assert(rmpread(pfn).assigned && rmpread(pfn).immutable);
	ck_assert_uint_eq(rmpread(pfn).asid, 0);
	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 1, 0), CCVM_SNP_FAIL_PERMISSION);
	ck_assert_int_eq(unassign(pfn, CCVM_LEVEL_4K), CCVM_SNP_FAIL_PERMISSION);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, pfn, CCVM_LEVEL_4K), -EFAULT);
	ck_assert_uint_ge(tu_warnings(), 1);
	ck_assert(rmpread(pfn).immutable);

	/* An immutable 2M entry cannot be rewritten either. */
	ck_assert_int_eq(update(r, true, CCVM_LEVEL_2M, 1, 0, true), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 1, 0), CCVM_SNP_FAIL_PERMISSION);
	ck_assert_int_eq(unassign(r, CCVM_LEVEL_2M), CCVM_SNP_FAIL_PERMISSION);
	ck_assert(rmpread(r + 1).immutable);
}
END_TEST

/* ------------------------------------------------------------------ */
/* PSMASH                                                              */

START_TEST(test_psmash)
{
	uint64_t r = region();
	uint64_t gpa = 5 * CCVM_HPAGE_2M_SIZE;
	struct ccvm_snp_rmp_entry e;
	uint64_t i;

	/* Unassigned, unaligned, out of range: only the first one executes. */
	ck_assert_int_eq(ccvm_snp_psmash(HW, NULL, r), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_psmash(HW, NULL, r + 1), CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_psmash(HW, NULL, HW->nr_pages), CCVM_SNP_FAIL_INPUT);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_PSMASH), 1);

	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 6, gpa), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 6, gpa, r, CCVM_LEVEL_2M, true),
			 CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_psmash(HW, NULL, r), CCVM_SNP_SUCCESS);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_PSMASH), 2);
	for (i = 0; i < PER_2M; i++) {
		e = rmpread(r + i);
		ck_assert(e.assigned && e.validated && !e.immutable);
		ck_assert_uint_eq(e.level, CCVM_LEVEL_4K);
		ck_assert_uint_eq(e.asid, 6);
		ck_assert_uint_eq(e.gpa, gpa + i * CCVM_PAGE_SIZE);
		ck_assert_uint_eq(e.entry_pfn, r + i);
		ck_assert_uint_eq(e.region_assigned_4k, PER_2M);
	}
	/* Already split: nothing left to PSMASH. */
	ck_assert_int_eq(ccvm_snp_psmash(HW, NULL, r), CCVM_SNP_FAIL_INPUT);

	/* Now 4K updates work and touch one entry only. */
	ck_assert_int_eq(assign(r + 3, CCVM_LEVEL_4K, 6, gpa + 3 * CCVM_PAGE_SIZE),
			 CCVM_SNP_SUCCESS);
	ck_assert(!rmpread(r + 3).validated);
	ck_assert(rmpread(r + 2).validated && rmpread(r + 4).validated);
	ck_assert_int_eq(unassign(r + 3, CCVM_LEVEL_4K), CCVM_SNP_SUCCESS);
	ck_assert_uint_eq(rmpread(r).region_assigned_4k, PER_2M - 1);
	/* The region is 4K-shaped now: a 2M update overlaps. */
	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 6, gpa), CCVM_SNP_FAIL_SIZEMISMATCH);
}
END_TEST

/* ------------------------------------------------------------------ */
/* PVALIDATE                                                           */

START_TEST(test_pvalidate_4k)
{
	uint64_t pfn = tu_page(P), other = tu_page(P);
	uint64_t gpa = 0x40000;

	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 1, gpa), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, pfn, CCVM_LEVEL_4K, true),
			 CCVM_SNP_SUCCESS);
	ck_assert(rmpread(pfn).validated);
	/* Double validation is detected and changes nothing. */
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, pfn, CCVM_LEVEL_4K, true),
			 CCVM_SNP_FAIL_NOUPDATE);
	ck_assert(rmpread(pfn).validated);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, pfn, CCVM_LEVEL_4K, false),
			 CCVM_SNP_SUCCESS);
	ck_assert(!rmpread(pfn).validated);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, pfn, CCVM_LEVEL_4K, false),
			 CCVM_SNP_FAIL_NOUPDATE);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMP_NPF), 0);

	/* Wrong ASID, wrong GPA, unassigned page: #NPF(RMP), counted. */
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 2, gpa, pfn, CCVM_LEVEL_4K, true),
			 CCVM_SNP_NPF_RMP);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa + 0x1000, pfn, CCVM_LEVEL_4K, true),
			 CCVM_SNP_NPF_RMP);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, other, CCVM_LEVEL_4K, true),
			 CCVM_SNP_NPF_RMP);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMP_NPF), 3);
	ck_assert(!rmpread(pfn).validated);

	/* Bad operands: not executed. */
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 0, gpa, pfn, CCVM_LEVEL_4K, true),
			 CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 17, gpa, pfn, CCVM_LEVEL_4K, true),
			 CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, pfn, CCVM_LEVEL_1G, true),
			 CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa + 1, pfn, CCVM_LEVEL_4K, true),
			 CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, HW->nr_pages, CCVM_LEVEL_4K,
					    true), CCVM_SNP_FAIL_INPUT);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_PVALIDATE), 7);

	/* Immutable pages cannot be validated by the guest. */
	ck_assert_int_eq(update(other, true, CCVM_LEVEL_4K, 1, gpa, true), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, other, CCVM_LEVEL_4K, true),
			 CCVM_SNP_NPF_RMP);
}
END_TEST

START_TEST(test_pvalidate_size_mismatch)
{
	uint64_t r = region();
	uint64_t gpa = 3 * CCVM_HPAGE_2M_SIZE;
	uint64_t tail = r + 17, tail_gpa = gpa + 17 * CCVM_PAGE_SIZE;

	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 1, gpa), CCVM_SNP_SUCCESS);
	/* 4K PVALIDATE inside a 2M entry: SIZEMISMATCH ... */
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, tail_gpa, tail, CCVM_LEVEL_4K, true),
			 CCVM_SNP_FAIL_SIZEMISMATCH);
	/* ... but a wrong GPA inside it is still a #NPF. */
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, tail, CCVM_LEVEL_4K, true),
			 CCVM_SNP_NPF_RMP);
	ck_assert(!rmpread(tail).validated);
	/* KVM's answer: PSMASH; the guest's retry then succeeds. */
	ck_assert_int_eq(ccvm_snp_rmp_psmash(HW, NULL, tail), 0);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, tail_gpa, tail, CCVM_LEVEL_4K, true),
			 CCVM_SNP_SUCCESS);
	ck_assert(rmpread(tail).validated);
	ck_assert(!rmpread(tail + 1).validated);
	/* 2M PVALIDATE on a region of 4K entries: SIZEMISMATCH. */
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, r, CCVM_LEVEL_2M, true),
			 CCVM_SNP_FAIL_SIZEMISMATCH);
	/* Misaligned 2M operands are bad input. */
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa + 0x1000, r, CCVM_LEVEL_2M, true),
			 CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, r + 1, CCVM_LEVEL_2M, true),
			 CCVM_SNP_FAIL_INPUT);
}
END_TEST

START_TEST(test_pvalidate_2m)
{
	uint64_t r = region();
	uint64_t gpa = 9 * CCVM_HPAGE_2M_SIZE;

	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 4, gpa), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 4, gpa, r, CCVM_LEVEL_2M, true),
			 CCVM_SNP_SUCCESS);
	ck_assert(rmpread(r + 300).validated);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 4, gpa, r, CCVM_LEVEL_2M, true),
			 CCVM_SNP_FAIL_NOUPDATE);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 5, gpa, r, CCVM_LEVEL_2M, true),
			 CCVM_SNP_NPF_RMP);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 4, gpa, r, CCVM_LEVEL_2M, false),
			 CCVM_SNP_SUCCESS);
	ck_assert(!rmpread(r + 300).validated);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Guest accesses                                                      */

START_TEST(test_guest_access)
{
	uint64_t pfn = tu_page(P), shared = tu_page(P), r = region();
	uint64_t gpa = 0x80000, g2 = 11 * CCVM_HPAGE_2M_SIZE;

	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 1, gpa), CCVM_SNP_SUCCESS);
	/* Private access before PVALIDATE: #VC. */
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, pfn, true, false),
			 CCVM_SNP_VC_NOT_VALIDATED);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, pfn, true, true),
			 CCVM_SNP_VC_NOT_VALIDATED);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, pfn, CCVM_LEVEL_4K, true),
			 CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, pfn, true, true),
			 CCVM_SNP_SUCCESS);
	/* Any byte of the page: the offset is ignored. */
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa + 0x123, pfn, true, false),
			 CCVM_SNP_SUCCESS);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMP_NPF), 0);

	/* Mismatches: #NPF(RMP). */
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 2, gpa, pfn, true, false),
			 CCVM_SNP_NPF_RMP);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa + 0x1000, pfn, true, false),
			 CCVM_SNP_NPF_RMP);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, shared, true, false),
			 CCVM_SNP_NPF_RMP);
	/* Shared (C-bit clear) access to an assigned page: #NPF, read or write. */
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, pfn, false, false),
			 CCVM_SNP_NPF_RMP);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, pfn, false, true),
			 CCVM_SNP_NPF_RMP);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMP_NPF), 5);
	/* Shared access to a shared page is fine, whatever the ASID. */
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, shared, false, true),
			 CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 0, gpa, shared, false, true),
			 CCVM_SNP_SUCCESS);
	/* Bad operands. */
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 0, gpa, pfn, true, false),
			 CCVM_SNP_FAIL_INPUT);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, HW->nr_pages, false, false),
			 CCVM_SNP_FAIL_INPUT);

	/* Inside a 2M entry each pfn expects its own GPA. */
	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 1, g2), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, g2, r, CCVM_LEVEL_2M, true),
			 CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, g2 + 40 * CCVM_PAGE_SIZE, r + 40,
					       true, true), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, g2, r + 40, true, true),
			 CCVM_SNP_NPF_RMP);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, g2, r + 40, false, false),
			 CCVM_SNP_NPF_RMP);
}
END_TEST

START_TEST(test_guest_access_immutable)
{
	uint64_t vmsa = tu_page(P);
	uint64_t gpa = 0xfff000;

	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, vmsa, gpa, CCVM_LEVEL_4K, 1, true), 0);
	ck_assert_int_eq(ccvm_snp_fw_launch_update(HW, NULL, vmsa, 1, CCVM_SNP_LAUNCH_PAGE_VMSA),
			 0);
	ck_assert(rmpread(vmsa).vmsa && rmpread(vmsa).validated && rmpread(vmsa).immutable);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, vmsa, true, false),
			 CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, vmsa, true, true),
			 CCVM_SNP_NPF_RMP);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Host accesses and ciphertext                                        */

START_TEST(test_host_access_private_page)
{
	uint64_t pfn = tu_page(P);
	uint8_t plain[CCVM_PAGE_SIZE], c1[CCVM_PAGE_SIZE], c2[CCVM_PAGE_SIZE];
	uint32_t a1, a2;
	size_t i;

	fill(pfn, 0);
	memcpy(plain, ccvm_page_ptr(P, pfn), CCVM_PAGE_SIZE);
	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &a1), 0);
	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &a2), 0);

	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, 0x1000, CCVM_LEVEL_4K, a1,
						   false), 0);
	/* Reads are not blocked but see ciphertext. */
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, false), CCVM_HOST_ACCESS_CIPHERTEXT);
	memcpy(c1, plain, sizeof(c1));
	ccvm_snp_host_ciphertext(HW, pfn, c1);
	for (i = 0; i < CCVM_PAGE_SIZE; i++)
		ck_assert_uint_ne(c1[i], plain[i]);
	/* Deterministic for one key. */
	memcpy(c2, plain, sizeof(c2));
	ccvm_snp_host_ciphertext(HW, pfn, c2);
	ck_assert_mem_eq(c1, c2, sizeof(c1));

	/* A write is an RMP fault: counted, page untouched. */
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMP_FAULT), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, true), -EFAULT);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMP_FAULT), 1);
	ck_assert_mem_eq(ccvm_page_ptr(P, pfn), plain, CCVM_PAGE_SIZE);

	/* The same plaintext under another ASID reads differently. */
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, pfn, CCVM_LEVEL_4K), 0);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, 0x1000, CCVM_LEVEL_4K, a2,
						   false), 0);
	memcpy(c2, plain, sizeof(c2));
	ccvm_snp_host_ciphertext(HW, pfn, c2);
	ck_assert(memcmp(c1, c2, sizeof(c1)) != 0);
	for (i = 0; i < CCVM_PAGE_SIZE; i++)
		ck_assert_uint_ne(c2[i], plain[i]);
}
END_TEST

START_TEST(test_host_access_shared_and_freed)
{
	uint64_t pfn = tu_page(P);
	uint8_t plain[CCVM_PAGE_SIZE], copy[CCVM_PAGE_SIZE];

	fill(pfn, 3);
	memcpy(plain, ccvm_page_ptr(P, pfn), CCVM_PAGE_SIZE);
	/* Shared: plain access both ways, no ciphertext. */
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, false), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, true), 0);
	memcpy(copy, plain, sizeof(copy));
	ccvm_snp_host_ciphertext(HW, pfn, copy);
	ck_assert_mem_eq(copy, plain, sizeof(copy));

	/* Private, then freed (made shared and flushed): plain access again. */
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, 0, CCVM_LEVEL_4K, 1, false), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, true), -EFAULT);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, pfn, CCVM_LEVEL_4K), 0);
	ccvm_snp_clflush_pages(HW, NULL, pfn, 1);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_CACHE_FLUSH_PAGE), 1);
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, false), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, true), 0);
	ccvm_snp_host_ciphertext(HW, pfn, copy);
	ck_assert_mem_eq(copy, plain, sizeof(copy));
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMP_FAULT), 1);
	ck_assert_int_eq(ccvm_snp_host_access(HW, HW->nr_pages, false), -EINVAL);
}
END_TEST

START_TEST(test_firmware_page_ciphertext)
{
	uint64_t pfn = tu_page(P);
	uint8_t plain[CCVM_PAGE_SIZE], c[CCVM_PAGE_SIZE];
	size_t i;

	fill(pfn, 9);
	memcpy(plain, ccvm_page_ptr(P, pfn), CCVM_PAGE_SIZE);
	ck_assert_int_eq(ccvm_snp_fw_mark_pages(HW, NULL, pfn, 1), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, false), CCVM_HOST_ACCESS_CIPHERTEXT);
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, true), -EFAULT);
	memcpy(c, plain, sizeof(c));
	ccvm_snp_host_ciphertext(HW, pfn, c);
	for (i = 0; i < CCVM_PAGE_SIZE; i++)
		ck_assert_uint_ne(c[i], plain[i]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Host direct map (I22)                                               */

START_TEST(test_directmap_split_on_4k_private)
{
	uint64_t r = region(), pfn = r + 10, bad;
	uint64_t far = r + 4 * PER_2M;		/* same gigabyte, other region */

	ck_assert_uint_lt(far, HW->nr_pages);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, pfn), CCVM_LEVEL_1G);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, 0, CCVM_LEVEL_4K, 1, false), 0);
	/* 1G -> 2M, then that 2M -> 4K: two splits. */
	ck_assert_uint_eq(tu_event(P, CCVM_EV_DIRECTMAP_SPLIT), 2);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, pfn), CCVM_LEVEL_4K);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, r), CCVM_LEVEL_4K);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, far), CCVM_LEVEL_2M);
	/* Neighbours are writable; the private page is not. */
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn + 1, true), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, true), -EFAULT);

	/* Same region: nothing more to split. */
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn + 1, 0x1000, CCVM_LEVEL_4K, 1,
						   false), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_DIRECTMAP_SPLIT), 2);
	/* Another region of the already split gigabyte: one 2M split. */
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, far, 0x2000, CCVM_LEVEL_4K, 1,
						   false), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_DIRECTMAP_SPLIT), 3);

	/* Never merged back, even when everything is shared again. */
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, pfn, CCVM_LEVEL_4K), 0);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, pfn + 1, CCVM_LEVEL_4K), 0);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, far, CCVM_LEVEL_4K), 0);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, pfn), CCVM_LEVEL_4K);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, far), CCVM_LEVEL_4K);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_DIRECTMAP_SPLIT), 3);
	ck_assert_int_eq(ccvm_snp_directmap_split(HW, NULL, pfn), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_DIRECTMAP_SPLIT), 3);
	ck_assert_int_eq(ccvm_snp_directmap_split(HW, NULL, HW->nr_pages), -EINVAL);
	ck_assert_int_eq(ccvm_snp_directmap_check(HW, &bad), 0);
}
END_TEST

START_TEST(test_directmap_no_split_for_2m)
{
	uint64_t r = region();

	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, r, 0, CCVM_LEVEL_2M, 1, false), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_DIRECTMAP_SPLIT), 0);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, r), CCVM_LEVEL_1G);
	/* A large host mapping over a wholly private 2M region is consistent ... */
	ck_assert_int_eq(ccvm_snp_directmap_check(HW, NULL), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, r + 100, true), -EFAULT);
	ck_assert_int_eq(ccvm_snp_host_access(HW, r + PER_2M, true), 0);
	/* ... and stays so after PSMASH: all 512 are still private. */
	ck_assert_int_eq(ccvm_snp_rmp_psmash(HW, NULL, r), 0);
	ck_assert_int_eq(ccvm_snp_directmap_check(HW, NULL), 0);
	/* Making one 4K page shared splits first, so the check still holds. */
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, r + 7, CCVM_LEVEL_4K), 0);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, r), CCVM_LEVEL_4K);
	ck_assert_int_eq(ccvm_snp_directmap_check(HW, NULL), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, r + 7, true), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, r + 8, true), -EFAULT);
	/* Back to one 2M shared entry is impossible while 4K entries remain. */
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, r, CCVM_LEVEL_2M), -EFAULT);
}
END_TEST

/*
 * I22 through the raw instruction: a 4K private page under a still-2M host
 * mapping makes a host write to a *shared* neighbour fault.  The helpers
 * never build this; the check must still catch it.
 */
START_TEST(test_i22_raw_rmpupdate_under_large_mapping)
{
	uint64_t r = region(), pfn = r + 200, bad = 0;
	uint64_t other = r + PER_2M;	/* next region */

	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 1, 0), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, pfn), CCVM_LEVEL_1G);
	ck_assert(!ccvm_snp_pfn_assigned(HW, pfn + 1));
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn + 1, true), -EFAULT);
	ck_assert_int_eq(ccvm_snp_host_access(HW, r, true), -EFAULT);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMP_FAULT), 2);
	/* Reads are never blocked, and read plaintext of the shared page. */
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn + 1, false), 0);
	/* The 1G mapping is checked as 2M: the next region is unaffected. */
	if (other < HW->nr_pages)
		ck_assert_int_eq(ccvm_snp_host_access(HW, other, true), 0);
	ck_assert_int_eq(ccvm_snp_directmap_check(HW, &bad), -EFAULT);
	ck_assert_uint_eq(bad, r);

	/* The fix the kernel applies before the RMPUPDATE: split to 4K. */
	ck_assert_int_eq(ccvm_snp_directmap_split(HW, NULL, pfn), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn + 1, true), 0);
	ck_assert_int_eq(ccvm_snp_host_access(HW, pfn, true), -EFAULT);
	ck_assert_int_eq(ccvm_snp_directmap_check(HW, &bad), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* KVM-level helpers                                                   */

START_TEST(test_make_private_shared_errors)
{
	uint64_t pfn = tu_page(P), r = region();

	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, 0, CCVM_LEVEL_4K, 0, false),
			 -EINVAL);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, 0, CCVM_LEVEL_1G, 1, false),
			 -EINVAL);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, 0x10, CCVM_LEVEL_4K, 1, false),
			 -EINVAL);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, 0, CCVM_LEVEL_4K, 99, false),
			 -EINVAL);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, HW->nr_pages, 0, CCVM_LEVEL_4K, 1,
						   false), -EINVAL);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, r + 1, 0, CCVM_LEVEL_2M, 1, false),
			 -EINVAL);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, pfn, 0), -EINVAL);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, r + 1, CCVM_LEVEL_2M), -EINVAL);
	/* Bad input changes nothing: no split, no RMPUPDATE, no log. */
	ck_assert_uint_eq(tu_event(P, CCVM_EV_DIRECTMAP_SPLIT), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMPUPDATE), 0);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, pfn), CCVM_LEVEL_1G);
	ck_assert_uint_eq(tu_warnings(), 0);
	assert_unassigned(pfn);

	/* I24 through the helpers: 4K make_shared inside 2M fails until PSMASH. */
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, r, 0, CCVM_LEVEL_2M, 1, false), 0);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, r + 4, CCVM_LEVEL_4K), -EFAULT);
	ck_assert_uint_eq(tu_warnings(), 1);
	ck_assert(ccvm_snp_pfn_assigned(HW, r + 4));
	ck_assert_int_eq(ccvm_snp_rmp_psmash(HW, NULL, r + 4), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_PSMASH), 1);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, r + 4, CCVM_LEVEL_4K), 0);
	assert_unassigned(r + 4);
	/* Already 4K-shaped: psmash() is a no-op success. */
	ck_assert_int_eq(ccvm_snp_rmp_psmash(HW, NULL, r), 0);
	ck_assert_int_eq(ccvm_snp_rmp_psmash(HW, NULL, pfn), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_PSMASH), 1);
	ck_assert_int_eq(ccvm_snp_rmp_psmash(HW, NULL, HW->nr_pages), -EINVAL);
}
END_TEST

START_TEST(test_make_2m_round_trip)
{
	uint64_t r = region();
	uint64_t gpa = 2 * CCVM_HPAGE_2M_SIZE;

	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, r, gpa, CCVM_LEVEL_2M, 2, false), 0);
	ck_assert_uint_eq(rmpread(r + 511).level, CCVM_LEVEL_2M);
	ck_assert_uint_eq(rmpread(r + 511).gpa, gpa);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, r, CCVM_LEVEL_2M), 0);
	assert_unassigned(r + 511);
	ccvm_snp_clflush_pages(HW, NULL, r, PER_2M);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_CACHE_FLUSH_PAGE), PER_2M);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMPUPDATE), 2);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMPUPDATE_RETRY), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Firmware commands                                                   */

START_TEST(test_firmware_pages)
{
	uint64_t a = tu_page(P), b = tu_page(P), shared = tu_page(P);
	uint64_t leaked;

	ck_assert_int_eq(ccvm_snp_fw_mark_pages(HW, NULL, a, 0), -EINVAL);
	ck_assert_int_eq(ccvm_snp_fw_mark_pages(HW, NULL, HW->nr_pages - 1, 2), -EINVAL);
	ck_assert_int_eq(ccvm_snp_fw_mark_pages(HW, NULL, a, 2), 0);
	ck_assert(rmpread(b).assigned && rmpread(b).immutable);
	ck_assert_int_eq(ccvm_snp_directmap_level(HW, a), CCVM_LEVEL_4K);

	/* Reclaim: firmware lets go, the host makes the pages shared. */
	ck_assert_int_eq(ccvm_snp_fw_reclaim_pages(HW, NULL, a, 2), 0);
	assert_unassigned(a);
	assert_unassigned(b);
	ck_assert_uint_eq(ccvm_snp_nr_leaked(HW), 0);

	/* SNP_PAGE_RECLAIM needs an immutable page. */
	ck_assert_int_eq(ccvm_snp_fw_page_reclaim(HW, NULL, shared), -EINVAL);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, shared, 0, CCVM_LEVEL_4K, 1,
						   false), 0);
	ck_assert_int_eq(ccvm_snp_fw_page_reclaim(HW, NULL, shared), -EINVAL);
	/* A page that cannot be reclaimed is leaked, and stays assigned. */
	ck_assert_int_eq(ccvm_snp_fw_reclaim_pages(HW, NULL, shared, 1), -EFAULT);
	ck_assert_uint_eq(ccvm_snp_nr_leaked(HW), 1);
	ck_assert_int_eq(ccvm_snp_leaked_pfn(HW, 0, &leaked), 0);
	ck_assert_uint_eq(leaked, shared);
	ck_assert(ccvm_snp_pfn_assigned(HW, shared));
}
END_TEST

START_TEST(test_firmware_mark_undo)
{
	uint64_t r = region();

	/* The third page sits inside a 2M entry: marking fails, the first two
	 * are reclaimed again. */
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, r, 0, CCVM_LEVEL_2M, 1, false), 0);
	ck_assert_int_eq(ccvm_snp_fw_mark_pages(HW, NULL, r - 2, 3), -EFAULT);
	assert_unassigned(r - 2);
	assert_unassigned(r - 1);
	ck_assert_uint_eq(rmpread(r).level, CCVM_LEVEL_2M);
	ck_assert_uint_eq(ccvm_snp_nr_leaked(HW), 0);
}
END_TEST

START_TEST(test_launch_update)
{
	uint64_t pfn = tu_page(P), vmsa = tu_page(P), other = tu_page(P);
	uint64_t gpa = 0x3000;

	ck_assert_int_eq(ccvm_snp_fw_launch_update(HW, NULL, pfn, 1, CCVM_SNP_LAUNCH_PAGE_NORMAL),
			 -EPERM);	/* not assigned */
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, gpa, CCVM_LEVEL_4K, 1, false),
			 0);
	ck_assert_int_eq(ccvm_snp_fw_launch_update(HW, NULL, pfn, 2, CCVM_SNP_LAUNCH_PAGE_NORMAL),
			 -EPERM);	/* other guest */
	ck_assert_int_eq(ccvm_snp_fw_launch_update(HW, NULL, pfn, 0, CCVM_SNP_LAUNCH_PAGE_NORMAL),
			 -EINVAL);
	ck_assert_int_eq(ccvm_snp_fw_launch_update(HW, NULL, pfn, 1, 7), -EINVAL);
	ck_assert_int_eq(ccvm_snp_fw_launch_update(HW, NULL, pfn, 1, CCVM_SNP_LAUNCH_PAGE_VMSA),
			 -EPERM);	/* VMSA must be immutable */
	ck_assert_int_eq(ccvm_snp_fw_launch_update(HW, NULL, pfn, 1, CCVM_SNP_LAUNCH_PAGE_NORMAL),
			 0);
	/* Launched pages are validated: the guest uses them without PVALIDATE. */
	ck_assert_int_eq(ccvm_snp_guest_access(HW, NULL, 1, gpa, pfn, true, true),
			 CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_fw_launch_update(HW, NULL, pfn, 1, CCVM_SNP_LAUNCH_PAGE_NORMAL),
			 -EPERM);	/* once */
	ck_assert_int_eq(ccvm_snp_pvalidate(HW, NULL, 1, gpa, pfn, CCVM_LEVEL_4K, true),
			 CCVM_SNP_FAIL_NOUPDATE);

	/* A VMSA page: immutable, reclaimed through the firmware. */
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, vmsa, 0, CCVM_LEVEL_4K, 1, true), 0);
	ck_assert_int_eq(ccvm_snp_fw_launch_update(HW, NULL, vmsa, 1, CCVM_SNP_LAUNCH_PAGE_VMSA),
			 0);
	ck_assert(rmpread(vmsa).vmsa);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, vmsa, CCVM_LEVEL_4K), -EFAULT);
	ck_assert_int_eq(ccvm_snp_fw_reclaim_pages(HW, NULL, vmsa, 1), 0);
	assert_unassigned(vmsa);
	ck_assert_int_eq(ccvm_snp_fw_launch_update(HW, NULL, other, 1, CCVM_SNP_LAUNCH_PAGE_VMSA),
			 -EPERM);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Leaks                                                               */

START_TEST(test_leaks)
{
	uint64_t a = tu_page(P), pfn;
	struct ccvm_stats st;

	tu_page(P);
	tu_page(P);
	ck_assert_int_eq(ccvm_snp_leak_pages(HW, a, 0), -EINVAL);
	ck_assert_int_eq(ccvm_snp_leak_pages(HW, HW->nr_pages, 1), -EINVAL);
	ck_assert_int_eq(ccvm_snp_leak_pages(HW, a, 3), 0);
	ck_assert_uint_eq(ccvm_snp_nr_leaked(HW), 3);
	ck_assert_int_eq(ccvm_snp_leaked_pfn(HW, 2, &pfn), 0);
	ck_assert_uint_eq(pfn, a + 2);
	ck_assert_int_eq(ccvm_snp_leaked_pfn(HW, 3, &pfn), -ENOENT);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_PAGE_LEAK), 3);
	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	ck_assert_int_eq(ccvm_platform_get_stats(P, &st), 0);
	ck_assert_uint_eq(st.leaked_pages, 3);
}
END_TEST

/* ------------------------------------------------------------------ */
/* ASIDs                                                               */

START_TEST(test_asid_exhaustion)
{
	uint32_t asid, i;

	teardown();
	platform_up(64 * MIB, 4);
	for (i = 1; i <= 4; i++) {
		ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &asid), 0);
		ck_assert_uint_eq(asid, i);
		ck_assert_int_eq(ccvm_snp_asid_state(HW, asid), CCVM_SNP_ASID_IN_USE);
	}
	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &asid), -ENOSPC);
	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, NULL), -EINVAL);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_ASID_FLUSH), 0);

	/* A freed ASID waits for the flush ... */
	ck_assert_int_eq(ccvm_snp_asid_free(HW, NULL, 2), 0);
	ck_assert_int_eq(ccvm_snp_asid_state(HW, 2), CCVM_SNP_ASID_DIRTY);
	ck_assert_int_eq(ccvm_snp_asid_free(HW, NULL, 2), -EINVAL);
	ck_assert_int_eq(ccvm_snp_asid_free(HW, NULL, 0), -EINVAL);
	ck_assert_int_eq(ccvm_snp_asid_free(HW, NULL, 5), -EINVAL);
	/* ... which allocation performs when nothing else is free. */
	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &asid), 0);
	ck_assert_uint_eq(asid, 2);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_ASID_FLUSH), 1);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_KEYID_ALLOC), 5);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_KEYID_FREE), 1);
	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &asid), -ENOSPC);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_ASID_FLUSH), 1);
}
END_TEST

START_TEST(test_asid_reuse_only_after_flush)
{
	uint32_t a, b, c;

	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &a), 0);
	ck_assert_int_eq(ccvm_snp_asid_free(HW, NULL, a), 0);
	/* Clean ASIDs remain: the dirty one is not reused, no flush. */
	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &b), 0);
	ck_assert_uint_ne(b, a);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_ASID_FLUSH), 0);
	ck_assert_int_eq(ccvm_snp_asid_state(HW, a), CCVM_SNP_ASID_DIRTY);
	/* An explicit flush makes it allocatable again. */
	ck_assert_uint_eq(ccvm_snp_asid_flush(HW), 1);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_ASID_FLUSH), 1);
	ck_assert_uint_eq(ccvm_snp_asid_flush(HW), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_ASID_FLUSH), 1);
	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &c), 0);
	ck_assert_uint_eq(c, a);
}
END_TEST

START_TEST(test_asid_new_key_on_reuse)
{
	uint64_t pfn;
	uint8_t plain[CCVM_PAGE_SIZE], c1[CCVM_PAGE_SIZE], c2[CCVM_PAGE_SIZE];
	uint32_t a, b;

	teardown();
	platform_up(64 * MIB, 1);
	pfn = tu_page(P);
	fill(pfn, 1);
	memcpy(plain, ccvm_page_ptr(P, pfn), sizeof(plain));
	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &a), 0);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, 0, CCVM_LEVEL_4K, a, false), 0);
	memcpy(c1, plain, sizeof(c1));
	ccvm_snp_host_ciphertext(HW, pfn, c1);
	ck_assert_int_eq(ccvm_snp_asid_free(HW, NULL, a), 0);
	ck_assert_int_eq(ccvm_snp_asid_alloc(HW, NULL, &b), 0);
	ck_assert_uint_eq(b, a);
	memcpy(c2, plain, sizeof(c2));
	ccvm_snp_host_ciphertext(HW, pfn, c2);
	ck_assert(memcmp(c1, c2, sizeof(c1)) != 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Transient failures: injected and real                               */

START_TEST(test_injected_overlap_and_inuse)
{
	uint64_t pfn = tu_page(P), r = region();

	ccvm_snp_inject_overlap(HW, 1);
	ck_assert_int_eq(assign(pfn, CCVM_LEVEL_4K, 1, 0), CCVM_SNP_FAIL_OVERLAP);
	assert_unassigned(pfn);
	ck_assert_uint_eq(atomic_load(&HW->nr_fail_overlap), 1);

	ccvm_snp_inject_overlap(HW, 3);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, pfn, 0, CCVM_LEVEL_4K, 1, false), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMPUPDATE_RETRY), 3);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMPUPDATE), 5);
	ck_assert(ccvm_snp_pfn_assigned(HW, pfn));

	ck_assert_int_eq(assign(r, CCVM_LEVEL_2M, 1, 0), CCVM_SNP_SUCCESS);
	ccvm_snp_inject_inuse(HW, 1);
	ck_assert_int_eq(ccvm_snp_psmash(HW, NULL, r), CCVM_SNP_FAIL_INUSE);
	ck_assert_uint_eq(rmpread(r + 1).level, CCVM_LEVEL_2M);
	ccvm_snp_inject_inuse(HW, 2);
	ck_assert_int_eq(ccvm_snp_rmp_psmash(HW, NULL, r), 0);
	ck_assert_uint_eq(rmpread(r + 1).level, CCVM_LEVEL_4K);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_PSMASH), 4);
	ck_assert_uint_eq(atomic_load(&HW->nr_fail_inuse), 3);

	/* Cancelling works. */
	ccvm_snp_inject_overlap(HW, 5);
	ccvm_snp_inject_overlap(HW, 0);
	ck_assert_int_eq(unassign(pfn, CCVM_LEVEL_4K), CCVM_SNP_SUCCESS);
}
END_TEST

struct make_arg {
	uint64_t pfn;
	int level;
	int ret;
	bool psmash;
};

static void *make_private_thread(void *opaque)
{
	struct make_arg *a = opaque;

	if (a->psmash)
		a->ret = ccvm_snp_rmp_psmash(HW, NULL, a->pfn);
	else
		a->ret = ccvm_snp_rmp_make_private(HW, NULL, a->pfn, 0, a->level, 1, false);
	return NULL;
}

/*
 * Another CPU holds the region (here: this thread, through the debug lock):
 * a second thread's rmp_make_private() really gets FAIL_OVERLAP, retries,
 * and finishes once the region is released.  Same for PSMASH / FAIL_INUSE.
 * The test waits for the hardware to say so (its counted events, through
 * the trace callback), not by polling: RMPUPDATE_RETRY follows a failed
 * RMPUPDATE; a second PSMASH follows a first that found the region held.
 */
START_TEST(test_overlap_held_region_two_threads)
{
	uint64_t r = region();
	struct make_arg a = { .pfn = r + 33, .level = CCVM_LEVEL_4K };
	struct tu_event_watch w;
	pthread_t t;

	ck_assert(ccvm_snp_region_trylock(HW, r + 400));
	ck_assert(!ccvm_snp_region_trylock(HW, r));
	tu_watch_event(P, &w, CCVM_EV_RMPUPDATE_RETRY);
	ck_assert_int_eq(pthread_create(&t, NULL, make_private_thread, &a), 0);
	tu_event_wait(&w.ev, 1);
	ck_assert_uint_ge(atomic_load(&HW->nr_fail_overlap), 1);
	ck_assert(!ccvm_snp_pfn_assigned(HW, r + 33));
	ccvm_snp_region_unlock(HW, r);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(ccvm_platform_set_trace(P, NULL, NULL), 0);
	tu_event_destroy(&w.ev);
	ck_assert_int_eq(a.ret, 0);
	ck_assert(ccvm_snp_pfn_assigned(HW, r + 33));
	ck_assert_uint_ge(tu_event(P, CCVM_EV_RMPUPDATE_RETRY), 1);

	/* PSMASH of a 2M entry while the region is held. */
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, r + 33, CCVM_LEVEL_4K), 0);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, r, 0, CCVM_LEVEL_2M, 1, false), 0);
	a = (struct make_arg){ .pfn = r + 5, .psmash = true };
	ck_assert(ccvm_snp_region_trylock(HW, r));
	tu_watch_event(P, &w, CCVM_EV_PSMASH);
	ck_assert_int_eq(pthread_create(&t, NULL, make_private_thread, &a), 0);
	tu_event_wait(&w.ev, 2);
	ck_assert_uint_ge(atomic_load(&HW->nr_fail_inuse), 1);
	ck_assert_uint_eq(rmpread(r + 5).level, CCVM_LEVEL_2M);
	ccvm_snp_region_unlock(HW, r);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(ccvm_platform_set_trace(P, NULL, NULL), 0);
	tu_event_destroy(&w.ev);
	ck_assert_int_eq(a.ret, 0);
	ck_assert_uint_eq(rmpread(r + 5).level, CCVM_LEVEL_4K);
}
END_TEST

struct vcpu_arg {
	uint64_t r;
	_Atomic bool stop;
	unsigned long nr_ops;
};

/* A "vCPU": PVALIDATEs in the region as fast as it can, any outcome. */
static void *vcpu_thread(void *opaque)
{
	struct vcpu_arg *a = opaque;
	uint64_t gpa = 4 * CCVM_HPAGE_2M_SIZE;
	bool v = true;

	while (!atomic_load(&a->stop)) {
		ccvm_snp_pvalidate(HW, NULL, 1, gpa, a->r, CCVM_LEVEL_2M, v);
		ccvm_snp_pvalidate(HW, NULL, 1, gpa + 9 * CCVM_PAGE_SIZE, a->r + 9,
				   CCVM_LEVEL_4K, v);
		ccvm_snp_guest_access(HW, NULL, 1, gpa + 9 * CCVM_PAGE_SIZE, a->r + 9, true,
				      false);
		ccvm_snp_host_access(HW, a->r + 100, true);
		v = !v;
		a->nr_ops++;
	}
	return NULL;
}

/*
 * A converter cycles a region through 2M private -> PSMASH -> 4K shared
 * while a vCPU thread PVALIDATEs in it: real FAIL_OVERLAP and FAIL_INUSE
 * happen (the PVALIDATEs hold the region) and every one resolves by retry.
 */
START_TEST(test_converter_vs_vcpu_threads)
{
	uint64_t r = region();
	uint64_t gpa = 4 * CCVM_HPAGE_2M_SIZE;
	struct vcpu_arg a = { .r = r };
	unsigned long iter;
	pthread_t t;
	uint64_t i;

	ck_assert_int_eq(pthread_create(&t, NULL, vcpu_thread, &a), 0);
	for (iter = 0; iter < 100000; iter++) {
		ck_assert_int_eq(ccvm_snp_rmp_make_private(HW, NULL, r, gpa, CCVM_LEVEL_2M, 1,
							   false), 0);
		ck_assert_int_eq(ccvm_snp_rmp_psmash(HW, NULL, r), 0);
		for (i = 0; i < PER_2M; i++)
			ck_assert_int_eq(ccvm_snp_rmp_make_shared(HW, NULL, r + i,
								  CCVM_LEVEL_4K), 0);
		if (iter >= 2 && atomic_load(&HW->nr_fail_overlap) &&
		    atomic_load(&HW->nr_fail_inuse))
			break;
	}
	atomic_store(&a.stop, true);
	ck_assert_int_eq(pthread_join(t, NULL), 0);

	ck_assert_uint_gt(atomic_load(&HW->nr_fail_overlap), 0);
	ck_assert_uint_gt(atomic_load(&HW->nr_fail_inuse), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMPUPDATE_RETRY), atomic_load(&HW->nr_fail_overlap));
	for (i = 0; i < PER_2M; i++)
		assert_unassigned(r + i);
	ck_assert_uint_eq(rmpread(r).region_assigned_4k, 0);
	ck_assert_int_eq(ccvm_snp_directmap_check(HW, NULL), 0);
	ck_assert_uint_gt(a.nr_ops, 0);
}
END_TEST

/* Converters on different 4K pages of one region contend with each other. */
struct conv_arg {
	uint64_t first;
	unsigned int rounds;
};

static void *converter_thread(void *opaque)
{
	struct conv_arg *a = opaque;
	unsigned int n, i;

	for (n = 0; n < a->rounds; n++) {
		for (i = 0; i < 8; i++)
			if (ccvm_snp_rmp_make_private(HW, NULL, a->first + i,
						      (a->first + i) << CCVM_PAGE_SHIFT,
						      CCVM_LEVEL_4K, 1, false))
				return (void *)1;
		for (i = 0; i < 8; i++)
			if (ccvm_snp_rmp_make_shared(HW, NULL, a->first + i, CCVM_LEVEL_4K))
				return (void *)1;
	}
	return NULL;
}

START_TEST(test_two_converters_same_region)
{
	uint64_t r = region();
	struct conv_arg a = { .first = r, .rounds = 2000 };
	struct conv_arg b = { .first = r + 256, .rounds = 2000 };
	pthread_t ta, tb;
	void *ra, *rb;
	uint64_t i;

	ck_assert_int_eq(pthread_create(&ta, NULL, converter_thread, &a), 0);
	ck_assert_int_eq(pthread_create(&tb, NULL, converter_thread, &b), 0);
	ck_assert_int_eq(pthread_join(ta, &ra), 0);
	ck_assert_int_eq(pthread_join(tb, &rb), 0);
	ck_assert_ptr_null(ra);
	ck_assert_ptr_null(rb);
	for (i = 0; i < PER_2M; i++)
		assert_unassigned(r + i);
	ck_assert_uint_eq(rmpread(r).region_assigned_4k, 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_RMPUPDATE),
			  2 * 2000 * 16 + tu_event(P, CCVM_EV_RMPUPDATE_RETRY));
}
END_TEST

/* ------------------------------------------------------------------ */

Suite *snp_hw_suite(void)
{
	Suite *s = suite_create("snp_hw");
	TCase *tc;

	tc = tcase_create("rmp");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_init_state);
	tcase_add_test(tc, test_rc_names);
	tcase_add_test(tc, test_partial_memory);
	tcase_add_test(tc, test_too_many_asids);
	tcase_add_test(tc, test_rmpupdate_4k);
	tcase_add_test(tc, test_rmpupdate_bad_input);
	tcase_add_test(tc, test_rmpupdate_2m_rules);
	tcase_add_test(tc, test_immutable);
	tcase_add_test(tc, test_psmash);
	suite_add_tcase(s, tc);

	tc = tcase_create("guest");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_pvalidate_4k);
	tcase_add_test(tc, test_pvalidate_size_mismatch);
	tcase_add_test(tc, test_pvalidate_2m);
	tcase_add_test(tc, test_guest_access);
	tcase_add_test(tc, test_guest_access_immutable);
	suite_add_tcase(s, tc);

	tc = tcase_create("host");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_host_access_private_page);
	tcase_add_test(tc, test_host_access_shared_and_freed);
	tcase_add_test(tc, test_firmware_page_ciphertext);
	tcase_add_test(tc, test_directmap_split_on_4k_private);
	tcase_add_test(tc, test_directmap_no_split_for_2m);
	tcase_add_test(tc, test_i22_raw_rmpupdate_under_large_mapping);
	suite_add_tcase(s, tc);

	tc = tcase_create("helpers");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_make_private_shared_errors);
	tcase_add_test(tc, test_make_2m_round_trip);
	tcase_add_test(tc, test_firmware_pages);
	tcase_add_test(tc, test_firmware_mark_undo);
	tcase_add_test(tc, test_launch_update);
	tcase_add_test(tc, test_leaks);
	suite_add_tcase(s, tc);

	tc = tcase_create("asid");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_asid_exhaustion);
	tcase_add_test(tc, test_asid_reuse_only_after_flush);
	tcase_add_test(tc, test_asid_new_key_on_reuse);
	suite_add_tcase(s, tc);

	tc = tcase_create("concurrency");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_injected_overlap_and_inuse);
	tcase_add_test(tc, test_overlap_held_region_two_threads);
	tcase_add_test(tc, test_converter_vs_vcpu_threads);
	tcase_add_test(tc, test_two_converters_same_region);
	suite_add_tcase(s, tc);

	return s;
}
