/* SPDX-License-Identifier: MIT */
/*
 * SEV-SNP with huge gmem folios (docs/huge-folios.md, docs/backends/snp.md):
 * a 2M RMP entry per private 2M folio, PVALIDATE at 2M, the size-mismatch
 * paths both ways (a 4K PVALIDATE in a 2M entry: PSMASH, zap, 4K again; a
 * 2M PVALIDATE over 4K entries: -ERANGE to the guest), PSMASH before the
 * 4K RMPUPDATE of a partial conversion, one 2M RMPUPDATE when a folio goes
 * whole, and the direct map split only where a 4K private page appears.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "internal.h"
#include "../backends/snp/snp.h"
#include "snapshot.h"
#include "testutil.h"

#define PG		CCVM_PAGE_SIZE
#define PER_2M		512ull
#define PRIV		CCVM_MEMORY_ATTRIBUTE_PRIVATE
#define HUGE		CCVM_GMEM_FLAG_HUGETLB
#define SIZE		(4 * TU_2M)

static struct ccvm_platform *p;
static struct ccvm_snp_hw *hw;
static struct ccvm_vm *vm;
static struct ccvm_gmem *gm;
static uint8_t *map, *shared;		/* the VMM's buffer, 2M aligned */

static void setup_scheme(uint32_t scheme)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = "snp", .mem_bytes = TU_GiB,
						     .seed = 11);
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .attr_scheme = scheme);

	p = tu_platform_up(&o);
	hw = ccvm_snp_hw_of(p);
	ck_assert_int_eq(ccvm_vm_create(p, &vo, &vm), 0);
	gm = tu_gmem(vm, SIZE, HUGE);
	/* A 2M-aligned shared buffer, or the slot's 2M pages are disallowed. */
	map = mmap(NULL, SIZE + TU_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	ck_assert(map != MAP_FAILED);
	shared = (uint8_t *)(((uintptr_t)map + TU_2M - 1) & ~(uintptr_t)(TU_2M - 1));
	ck_assert_int_eq(tu_region(vm, 0, CCVM_MEM_GUEST_MEMFD, 0, SIZE,
				   scheme == CCVM_ATTR_SCHEME_GMEM ? NULL : shared, gm, 0), 0);
	if (scheme != CCVM_ATTR_SCHEME_GMEM)
		tu_set_attr(vm, 0, SIZE, PRIV);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
}

static void setup(void)
{
	setup_scheme(CCVM_ATTR_SCHEME_VM);
}

static void setup_inplace(void)
{
	setup_scheme(CCVM_ATTR_SCHEME_GMEM);
}

static void teardown(void)
{
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	tu_platform_down(p);
	munmap(map, SIZE + TU_2M);
}

/* Platform counters: gmem_invalidate's RMP work has no VM to charge. */
static uint64_t ev(enum ccvm_event e)
{
	return tu_event(p, e);
}

static void assert_inv(void)
{
	struct ccvm_invariant_report r = { .sz = sizeof(r) };

	ck_assert_int_eq(ccvm_vm_check_invariants(vm, &r), 0);
	ck_assert_msg(r.invariant == 0, "I%u: %s", r.invariant, r.msg);
}

static struct ccvm_snp_rmp_entry rmp(uint64_t gfn)
{
	struct ccvm_snp_rmp_entry e;
	uint64_t pfn;

	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, gfn, &pfn), 0);
	ck_assert_int_eq(ccvm_snp_rmpread(hw, pfn, &e), 0);
	return e;
}

static int level_at(uint64_t gpa)
{
	int level = 0;

	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, gpa, NULL, &level), 0);
	return level;
}

static struct ccvm_vcpu *new_vcpu(void)
{
	struct ccvm_vcpu *v;

	/* Its VMSA is a 4K private page: one RMPUPDATE and direct-map split of its own. */
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	return v;
}

static void run_on(struct ccvm_vcpu *v, ccvm_guest_fn fn)
{
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, fn, NULL), 0);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}

static void run_guest(ccvm_guest_fn fn)
{
	run_on(new_vcpu(), fn);
}

/* ---- 2M PVALIDATE on a 2M RMP entry ----------------------------------------------- */

static void guest_accept_2m(struct ccvm_guest *g, void *arg)
{
	uint8_t w[32], r[32];

	(void)arg;
	memset(w, 0x5a, sizeof(w));
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, 2 * TU_2M, CCVM_LEVEL_2M) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, TU_2M - sizeof(w), w, sizeof(w)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, TU_2M - sizeof(r), r, sizeof(r)) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(w, r, sizeof(r)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, TU_2M, TU_2M, CCVM_LEVEL_2M) == -EEXIST);
	/* Misaligned against the level: refused before anything happens. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, PG, TU_2M, CCVM_LEVEL_2M) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, PG, CCVM_LEVEL_2M) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, TU_2M, CCVM_LEVEL_1G) == -EINVAL);
}

START_TEST(test_pvalidate_2m)
{
	struct ccvm_vcpu *v = new_vcpu();
	uint64_t upd = ev(CCVM_EV_RMPUPDATE), splits = tu_event(p, CCVM_EV_DIRECTMAP_SPLIT);
	uint64_t pv = tu_vm_event(vm, CCVM_EV_PVALIDATE);
	struct ccvm_snp_rmp_entry e;

	run_on(v, guest_accept_2m);
	e = rmp(0);
	ck_assert(e.assigned && e.validated);
	ck_assert_int_eq(e.level, CCVM_LEVEL_2M);
	ck_assert_int_eq(rmp(PER_2M + 17).level, CCVM_LEVEL_2M);
	ck_assert_int_eq(level_at(0), CCVM_LEVEL_2M);
	ck_assert_int_eq(level_at(TU_2M + 5 * PG), CCVM_LEVEL_2M);
	/* One RMPUPDATE per 2M, no PSMASH, and no direct-map split for them. */
	ck_assert_uint_eq(ev(CCVM_EV_RMPUPDATE) - upd, 2);
	ck_assert_uint_eq(ev(CCVM_EV_PSMASH), 0);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_DIRECTMAP_SPLIT), splits);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_PVALIDATE) - pv, 3);
	assert_inv();
}
END_TEST

/* ---- 4K PVALIDATE inside a 2M entry, then 2M over 4K entries -------------------------- */

static void guest_accept_4k_then_2m(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, TU_2M + 3 * PG, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, TU_2M, TU_2M, CCVM_LEVEL_2M) == -ERANGE);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, TU_2M, 3 * PG) == 0);
}

START_TEST(test_pvalidate_size_mismatch)
{
	run_guest(guest_accept_4k_then_2m);
	/* The 4K PVALIDATE met a 2M entry: PSMASH, zap, the 2M NPT leaf became 4K. */
	ck_assert_uint_eq(ev(CCVM_EV_PSMASH), 1);
	ck_assert_int_eq(rmp(PER_2M).level, CCVM_LEVEL_4K);
	ck_assert(rmp(PER_2M + 3).validated);
	ck_assert(!rmp(PER_2M + 4).validated);
	ck_assert_int_eq(level_at(TU_2M + 3 * PG), CCVM_LEVEL_4K);
	assert_inv();
}
END_TEST

/*
 * The guest's page-state change of one page of a 2M page it validated at
 * 2M: its 4K rescind inside the 2M RMP entry PSMASHes it, and the same
 * exit zaps the 2M NPT leaf, so when the exit reaches the VMM (before it
 * converts anything) no 2M leaf stands over the 4K entries (I8).  Before,
 * the 2M leaf stayed until the VMM's conversion zapped it.
 */
static void guest_psc_in_2m(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, TU_2M, CCVM_LEVEL_2M) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, 3 * PG, PG, false) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 4 * PG, PG) == -EEXIST);
}

START_TEST(test_psc_in_2m_zaps_with_psmash)
{
	struct ccvm_vcpu *v = new_vcpu();
	struct ccvm_run *run;
	uint64_t pfn;

	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_psc_in_2m, NULL), 0);
	run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
	ck_assert_uint_eq(run->hypercall.args[0], 3 * PG);
	ck_assert_uint_eq(ev(CCVM_EV_PSMASH), 1);
	ck_assert_int_eq(rmp(0).level, CCVM_LEVEL_4K);
	ck_assert(!rmp(3).validated);
	ck_assert(rmp(4).validated);
	/* The exit at the VMM: the 2M leaf is gone, nothing is broken. */
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 4 * PG, &pfn, NULL), -ENOENT);
	assert_inv();
	tu_set_attr(vm, 3 * PG, PG, 0);
	run->hypercall.ret = 0;
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	/* Page 4 faulted in again at the RMP's level, 4K. */
	ck_assert_int_eq(level_at(4 * PG), CCVM_LEVEL_4K);
	assert_inv();
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/*
 * The 4K PVALIDATE of a page the guest validated at 2M, in the order of
 * the fix: one zap of the 2M NPT leaf, a 4K fault, then one PSMASH; the
 * accept finds the page validated (-EEXIST) and the write goes through
 * the 4K leaf.  (That no check sees a 2M leaf over 4K entries between the
 * steps is what the explorer tests: test_snp_split_fix.)
 */
static void guest_accept_4k_after_2m(struct ccvm_guest *g, void *arg)
{
	uint64_t val = 0x1234;

	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, TU_2M, CCVM_LEVEL_2M) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 5 * PG, PG) == -EEXIST);
	ccvm_guest_sync(g, 1);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, 5 * PG, &val, sizeof(val)) == 0);
}

START_TEST(test_accept_4k_after_2m_keeps_i8)
{
	struct ccvm_vcpu *v = new_vcpu();
	uint64_t zaps = tu_vm_event(vm, CCVM_EV_INVALIDATE);

	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_accept_4k_after_2m, NULL), 0);
	tu_expect_sync(v, 1);
	ck_assert_uint_eq(ev(CCVM_EV_PSMASH), 1);
	ck_assert_int_eq(rmp(0).level, CCVM_LEVEL_4K);
	ck_assert_int_eq(level_at(5 * PG), CCVM_LEVEL_4K);
	/* One zap of the 2M block, before the PSMASH. */
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_INVALIDATE) - zaps, 1);
	assert_inv();
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	assert_inv();
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* Hardware: a 4K RMPUPDATE inside a 2M entry is refused until PSMASH (I24). */
START_TEST(test_rmpupdate_4k_in_2m_refused)
{
	struct ccvm_snp_rmp_entry before, after, sh = { .level = CCVM_LEVEL_4K };
	uint64_t pfn;

	run_guest(guest_accept_2m);
	memset(&before, 0, sizeof(before));
	memset(&after, 0, sizeof(after));
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, 7, &pfn), 0);
	ck_assert_int_eq(ccvm_snp_rmpread(hw, pfn, &before), 0);
	ck_assert_int_eq(ccvm_snp_rmpupdate(hw, vm, pfn, &sh), CCVM_SNP_FAIL_SIZEMISMATCH);
	ck_assert_int_eq(ccvm_snp_rmpread(hw, pfn, &after), 0);
	ck_assert_mem_eq(&before, &after, sizeof(before));
	assert_inv();
}
END_TEST

/* ---- conversions in place ----------------------------------------------------------- */

static void convert(uint64_t off, uint64_t size, uint64_t attrs)
{
	struct ccvm_memory_attributes2 a = { .offset = off, .size = size, .attributes = attrs };

	ck_assert_int_eq(ccvm_gmem_set_memory_attributes(gm, &a), 0);
}

START_TEST(test_partial_conversion_psmashes)
{
	uint64_t splits;

	run_guest(guest_accept_2m);
	splits = tu_event(p, CCVM_EV_DIRECTMAP_SPLIT);
	/* Two pages of the first 2M to shared: PSMASH, then 4K RMPUPDATEs. */
	convert(4 * PG, 2 * PG, 0);
	ck_assert_uint_eq(ev(CCVM_EV_PSMASH), 1);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_FOLIO_SPLIT), 1);
	ck_assert(!rmp(4).assigned);
	ck_assert(!rmp(5).assigned);
	ck_assert(rmp(6).assigned && rmp(6).validated);
	ck_assert_int_eq(rmp(6).level, CCVM_LEVEL_4K);
	ck_assert_int_eq(rmp(PER_2M).level, CCVM_LEVEL_2M);
	/* The direct map splits over the first 2M only. */
	ck_assert_uint_gt(tu_event(p, CCVM_EV_DIRECTMAP_SPLIT), splits);
	ck_assert_int_eq(ccvm_snp_directmap_level(hw, rmp(PER_2M).entry_pfn), CCVM_LEVEL_2M);
	assert_inv();
	/* Private again: gmem merges the folio; the RMP stays 4K (no re-coalescing). */
	convert(4 * PG, 2 * PG, PRIV);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_FOLIO_MERGE), 1);
	ck_assert_int_eq(rmp(6).level, CCVM_LEVEL_4K);
	assert_inv();
}
END_TEST

START_TEST(test_whole_folio_shared_one_rmpupdate)
{
	uint64_t upd;

	run_guest(guest_accept_2m);
	upd = ev(CCVM_EV_RMPUPDATE);
	convert(TU_2M, TU_2M, 0);
	ck_assert_uint_eq(ev(CCVM_EV_PSMASH), 0);
	ck_assert_uint_eq(ev(CCVM_EV_RMPUPDATE) - upd, 1);
	ck_assert(!rmp(PER_2M).assigned);
	ck_assert(rmp(0).assigned);
	assert_inv();
}
END_TEST

/* A punch of a whole 2M folio gives the 2M entry back in one RMPUPDATE. */
START_TEST(test_punch_whole_folio)
{
	uint64_t upd;

	run_guest(guest_accept_2m);
	upd = tu_event(p, CCVM_EV_RMPUPDATE);
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					     0, TU_2M), 0);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMPUPDATE) - upd, 1);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_PSMASH), 0);
	ck_assert_uint_eq(tu_gmem_info(gm).nr_huge_folios, 1);
	assert_inv();
}
END_TEST

Suite *snp_folio_suite(void)
{
	Suite *s = suite_create("snp_folio");
	TCase *tc;

	tc = tcase_create("vm_scheme");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_pvalidate_2m);
	tcase_add_test(tc, test_pvalidate_size_mismatch);
	tcase_add_test(tc, test_psc_in_2m_zaps_with_psmash);
	tcase_add_test(tc, test_accept_4k_after_2m_keeps_i8);
	tcase_add_test(tc, test_rmpupdate_4k_in_2m_refused);
	tcase_add_test(tc, test_punch_whole_folio);
	suite_add_tcase(s, tc);

	tc = tcase_create("in_place");
	tcase_add_checked_fixture(tc, setup_inplace, teardown);
	tcase_add_test(tc, test_partial_conversion_psmashes);
	tcase_add_test(tc, test_whole_folio_shared_one_rmpupdate);
	suite_add_tcase(s, tc);
	return s;
}
