/* SPDX-License-Identifier: MIT */
/*
 * TDX with huge gmem folios (docs/huge-folios.md, docs/backends/tdx.md):
 * PAGE.AUG of a 2M page into the Secure-EPT through the mirror root, the
 * guest's ACCEPT at 2M, the accept-level rules (a 4K accept maps 4K; a 4K
 * accept under a PENDING 2M leaf makes KVM DEMOTE it; a 2M accept over 4K
 * leaves is TDX_PAGE_SIZE_MISMATCH, -ERANGE), BLOCK + TRACK + DEMOTE before
 * a partial conversion or punch (the pages outside keep their contents and
 * their accepted state), one REMOVE of a whole 2M page, RECLAIM of 2M pages
 * at teardown, and I37 (the PAMT level of a page is its S-EPT leaf's).
 *
 * Dynamic PAMT (CCVM_PLATFORM_TDX_DYNAMIC_PAMT, tcase "dpamt"): the tests
 * above again on such a platform (the checker adds I38: a 2M region holds
 * a page pair exactly while TDs hold 4K pages of it), then the pair
 * counts over AUG at 4K and 2M, DEMOTE, removal and teardown, and the
 * failures: no memory for a pair, PAMT.ADD refused, AUG refused after its
 * pair was added (the pair goes again), each changing nothing else.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "internal.h"
#include "../backends/tdx/tdx.h"
#include "snapshot.h"
#include "testutil.h"

#define PG		CCVM_PAGE_SIZE
#define PER_2M		512ull
#define PRIV		CCVM_MEMORY_ATTRIBUTE_PRIVATE
#define HUGE		CCVM_GMEM_FLAG_HUGETLB
#define SIZE		(4 * TU_2M)
#define MARK		0xc3

static struct ccvm_platform *p;
static struct ccvm_tdx_module *m;
static struct ccvm_vm *vm;
static struct ccvm_gmem *gm;
static struct ccvm_vcpu *v;
static uint8_t *map, *shared;		/* the VMM's buffer, 2M aligned */
static uint32_t scheme;

static void setup_scheme_flags(uint32_t s, uint64_t flags)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = "tdx", .mem_bytes = TU_GiB,
						     .nr_cpus = 2, .seed = 11, .flags = flags);
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .attr_scheme = s);

	scheme = s;
	p = tu_platform_up(&o);
	m = ccvm_tdx_module_of(p);
	ck_assert_int_eq(ccvm_vm_create(p, &vo, &vm), 0);
	gm = tu_gmem(vm, SIZE, HUGE);
	map = mmap(NULL, SIZE + TU_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	ck_assert(map != MAP_FAILED);
	shared = (uint8_t *)(((uintptr_t)map + TU_2M - 1) & ~(uintptr_t)(TU_2M - 1));
	ck_assert_int_eq(tu_region(vm, 0, CCVM_MEM_GUEST_MEMFD, 0, SIZE,
				   s == CCVM_ATTR_SCHEME_GMEM ? NULL : shared, gm, 0), 0);
	if (s != CCVM_ATTR_SCHEME_GMEM)
		tu_set_attr(vm, 0, SIZE, PRIV);
	else
		ck_assert_int_eq(ccvm_gmem_set_memory_attributes(gm, &(struct
			ccvm_memory_attributes2){ .offset = 0, .size = SIZE,
			.attributes = PRIV }), 0);
	/* vCPUs are created between INIT_VM and finalize. */
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
}

static void setup(void)
{
	setup_scheme_flags(CCVM_ATTR_SCHEME_VM, 0);
}

static void setup_inplace(void)
{
	setup_scheme_flags(CCVM_ATTR_SCHEME_GMEM, 0);
}

static void setup_dpamt(void)
{
	setup_scheme_flags(CCVM_ATTR_SCHEME_VM, CCVM_PLATFORM_TDX_DYNAMIC_PAMT);
}

static void teardown(void)
{
	if (v)
		ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	v = NULL;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	tu_platform_down(p);
	munmap(map, SIZE + TU_2M);
}

static uint64_t vev(enum ccvm_event e)
{
	return tu_vm_event(vm, e);
}

static void assert_inv(void)
{
	struct ccvm_invariant_report r = { .sz = sizeof(r) };

	ck_assert_int_eq(ccvm_vm_check_invariants(vm, &r), 0);
	ck_assert_msg(r.invariant == 0, "I%u: %s", r.invariant, r.msg);
}

static int level_at(uint64_t gpa)
{
	int level = 0;

	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, gpa, NULL, &level), 0);
	return level;
}

static uint64_t pfn_at(uint64_t gfn)
{
	uint64_t pfn;

	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, gfn, &pfn), 0);
	return pfn;
}

/* The PAMT level (CCVM_TDX_LEVEL_*) of the page behind @gfn. */
static int pamt_level(uint64_t gfn)
{
	struct ccvm_tdx_pamt_info info;

	ck_assert_int_eq(ccvm_tdx_pamt_get(m, pfn_at(gfn), &info), 0);
	ck_assert_uint_eq(info.type, CCVM_TDX_PT_REG);
	return info.level;
}

static bool tu_run_once_maybe_ve(struct ccvm_vcpu *c);

/* Run @fn to its end; a #VE exit goes back to the guest (as -EACCES). */
static void run(ccvm_guest_fn fn)
{
	unsigned int ve = 0;

	ck_assert_int_eq(ccvm_vcpu_set_guest(v, fn, NULL), 0);
	while (tu_run_once_maybe_ve(v))
		ck_assert_uint_lt(++ve, 16);
}

static void convert(uint64_t gpa, uint64_t size, uint64_t attrs)
{
	if (scheme == CCVM_ATTR_SCHEME_GMEM)
		ck_assert_int_eq(ccvm_gmem_set_memory_attributes(gm, &(struct
			ccvm_memory_attributes2){ .offset = gpa, .size = size,
			.attributes = attrs }), 0);
	else
		tu_set_attr(vm, gpa, size, attrs);
}

/* One run: true on a #VE exit, false when the guest function returned. */
static bool tu_run_once_maybe_ve(struct ccvm_vcpu *c)
{
	int ret = ccvm_vcpu_run(c);
	struct ccvm_run *r = ccvm_vcpu_run_state(c);

	if (r->exit_reason == CCVM_EXIT_GUEST_ABORT)
		ck_abort_msg("guest aborted at %s:%d: %s", r->abort.file, r->abort.line,
			     r->abort.msg);
	ck_assert_int_eq(ret, 0);
	if (r->exit_reason == CCVM_EXIT_EXCEPTION)
		return true;
	ck_assert_uint_eq(r->exit_reason, CCVM_EXIT_DONE);
	return false;
}

/* ---- guests ----------------------------------------------------------------------- */

/* Accept the first two 2M pages at 2M and mark page 7 of each. */
static void guest_accept_2m(struct ccvm_guest *g, void *arg)
{
	uint8_t w[64], r[64];

	(void)arg;
	memset(w, MARK, sizeof(w));
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, 2 * TU_2M, CCVM_LEVEL_2M) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, 7 * PG, w, sizeof(w)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, TU_2M + 7 * PG, w, sizeof(w)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 7 * PG, r, sizeof(r)) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(w, r, sizeof(r)) == 0);
	/* Accepted already, at either level. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, TU_2M, TU_2M, CCVM_LEVEL_2M) == -EEXIST);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 3 * PG, PG) == -EEXIST);
}

static void guest_accept_first_2m(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, TU_2M, CCVM_LEVEL_2M) == 0);
}

/* Page 7 of the first 2M still holds the mark, and is still accepted. */
static void guest_check_mark(struct ccvm_guest *g, void *arg)
{
	uint8_t r[64], w[64];

	(void)arg;
	memset(w, MARK, sizeof(w));
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 7 * PG, r, sizeof(r)) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(w, r, sizeof(r)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 7 * PG, PG) == -EEXIST);
}

/* 4K accepts map 4K; a 2M accept over them is a page-size mismatch. */
static void guest_accept_4k(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, TU_2M, CCVM_LEVEL_2M) == -ERANGE);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, PG, TU_2M - PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, TU_2M, CCVM_LEVEL_2M) == -ERANGE);
}

/* A touch maps 2M PENDING (#VE); a 4K accept in it makes the host DEMOTE. */
static void guest_touch_then_4k(struct ccvm_guest *g, void *arg)
{
	uint8_t buf[8] = { 1 };

	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, TU_2M, buf, sizeof(buf)) == -EACCES);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, TU_2M + 3 * PG, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, TU_2M + 3 * PG, buf, sizeof(buf)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, TU_2M, TU_2M, CCVM_LEVEL_2M) == -ERANGE);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, TU_2M + 4 * PG, buf, sizeof(buf)) == -EACCES);
}

/* ---- tests -------------------------------------------------------------------------- */

START_TEST(test_aug_accept_2m)
{
	uint64_t aug = vev(CCVM_EV_TDH_MEM_PAGE_AUG), acc = vev(CCVM_EV_TDG_MEM_PAGE_ACCEPT);

	run(guest_accept_2m);
	ck_assert_int_eq(level_at(0), CCVM_LEVEL_2M);
	ck_assert_int_eq(level_at(TU_2M + 5 * PG), CCVM_LEVEL_2M);
	ck_assert_int_eq(pamt_level(0), CCVM_TDX_LEVEL_2M);
	ck_assert_int_eq(pamt_level(PER_2M + 511), CCVM_TDX_LEVEL_2M);
	/*
	 * One AUG per 2M; two ACCEPTs per 2M (the first exits: nothing mapped,
	 * and the host AUGs at the accept's level), plus the two -EEXIST probes.
	 */
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_AUG) - aug, 2);
	ck_assert_uint_eq(vev(CCVM_EV_TDG_MEM_PAGE_ACCEPT) - acc, 6);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_DEMOTE), 0);
	assert_inv();
}
END_TEST

START_TEST(test_accept_4k_maps_4k)
{
	run(guest_accept_4k);
	/* The accept's level capped the fault: never 2M, never a DEMOTE. */
	ck_assert_int_eq(level_at(0), CCVM_LEVEL_4K);
	ck_assert_int_eq(pamt_level(0), CCVM_TDX_LEVEL_4K);
	ck_assert_int_eq(pamt_level(511), CCVM_TDX_LEVEL_4K);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_AUG), PER_2M);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_DEMOTE), 0);
	assert_inv();
}
END_TEST

START_TEST(test_accept_4k_under_pending_2m)
{
	uint64_t block;

	run(guest_touch_then_4k);
	/* BLOCK, TRACK, DEMOTE: the PENDING 2M leaf became 512 4K leaves. */
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_DEMOTE), 1);
	ck_assert_uint_ge(vev(CCVM_EV_TDH_MEM_TRACK), 1);
	block = vev(CCVM_EV_TDH_MEM_RANGE_BLOCK);
	ck_assert_uint_eq(block, 1);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_REMOVE), 0);
	ck_assert_int_eq(level_at(TU_2M), CCVM_LEVEL_4K);
	ck_assert_int_eq(pamt_level(PER_2M + 3), CCVM_TDX_LEVEL_4K);
	ck_assert_int_eq(pamt_level(PER_2M + 4), CCVM_TDX_LEVEL_4K);
	assert_inv();
}
END_TEST

/* Part of a 2M page to shared: DEMOTE, then only those 4K pages go. */
START_TEST(test_partial_conversion_demotes)
{
	uint64_t rm;

	run(guest_accept_2m);
	rm = vev(CCVM_EV_TDH_MEM_PAGE_REMOVE);
	convert(4 * PG, 2 * PG, 0);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_DEMOTE), 1);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_REMOVE) - rm, 2);
	ck_assert_int_eq(level_at(7 * PG), CCVM_LEVEL_4K);
	ck_assert_int_eq(pamt_level(7), CCVM_TDX_LEVEL_4K);
	ck_assert_int_eq(level_at(TU_2M), CCVM_LEVEL_2M);
	assert_inv();
	/* The private pages around kept their contents and their acceptance. */
	run(guest_check_mark);
	/* A whole 2M page to shared: one REMOVE of the 2M leaf, no DEMOTE. */
	rm = vev(CCVM_EV_TDH_MEM_PAGE_REMOVE);
	convert(TU_2M, TU_2M, 0);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_DEMOTE), 1);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_REMOVE) - rm, 1);
	assert_inv();
	/* Private again: faults map 4K where the range is mixed, 2M where whole. */
	convert(4 * PG, 2 * PG, PRIV);
	convert(TU_2M, TU_2M, PRIV);
	assert_inv();
}
END_TEST

/* A punch of part of a 2M folio DEMOTEs; of a whole one, one 2M REMOVE. */
START_TEST(test_punch)
{
	uint64_t rm, wb;

	run(guest_accept_2m);
	rm = vev(CCVM_EV_TDH_MEM_PAGE_REMOVE);
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					     PG, PG), 0);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_DEMOTE), 1);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_REMOVE) - rm, 1);
	assert_inv();
	run(guest_check_mark);
	rm = vev(CCVM_EV_TDH_MEM_PAGE_REMOVE);
	wb = vev(CCVM_EV_TDH_PHYMEM_PAGE_WBINVD);
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					     TU_2M, TU_2M), 0);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_DEMOTE), 1);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_REMOVE) - rm, 1);
	/* Every 4K of the 2M page is written back with the HKID. */
	ck_assert_uint_eq(vev(CCVM_EV_TDH_PHYMEM_PAGE_WBINVD) - wb, PER_2M);
	assert_inv();
}
END_TEST

/* Teardown takes a 2M page back with one RECLAIM; nothing leaks. */
START_TEST(test_teardown_reclaims_2m)
{
	uint64_t rc;

	run(guest_accept_2m);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	v = NULL;
	rc = tu_event(p, CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	/* 2 pages at 2M, S-EPT pages, TDCS, TDCX, TDVPR, TDR: far below 1024. */
	ck_assert_uint_lt(tu_event(p, CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM) - rc, 32);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(m), 0);
	/* Re-create what teardown() closes. */
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vm), 0);
	gm = tu_gmem(vm, SIZE, HUGE);
	ck_assert_int_eq(tu_region(vm, 0, CCVM_MEM_GUEST_MEMFD, 0, SIZE, shared, gm, 0), 0);
}
END_TEST

/* ---- Dynamic PAMT -------------------------------------------------------------------- */

static struct ccvm_stats pstats(void)
{
	struct ccvm_stats st = { .sz = sizeof(st) };

	ck_assert_int_eq(ccvm_platform_get_stats(p, &st), 0);
	return st;
}

static uint64_t module_pairs(void)
{
	struct ccvm_tdx_pamt_usage u;

	ck_assert_int_eq(ccvm_tdx_pamt_usage(m, &u), 0);
	ck_assert(u.dynamic);
	return u.nr_pairs;
}

/* The pairs the module holds are the ones the stats count, at 8 KiB each. */
static uint64_t pairs(void)
{
	struct ccvm_stats st = pstats();

	ck_assert_uint_eq(st.pamt_pairs, module_pairs());
	ck_assert_uint_eq(st.pamt_bytes, st.pamt_pairs * 2 * PG);
	return st.pamt_pairs;
}

/* The TD's control and S-EPT pages got pairs; a 2M page needs none. */
START_TEST(test_dpamt_2m_needs_no_pair)
{
	uint64_t before = pairs(), add = tu_event(p, CCVM_EV_TDH_PHYMEM_PAMT_ADD);

	ck_assert_uint_gt(before, 0);
	ck_assert(ccvm_tdx_pamt_has_pair(m, ccvm_tdx_td_tdr_pfn(ccvm_tdx_vm_td(vm))));
	run(guest_accept_2m);
	ck_assert_int_eq(pamt_level(0), CCVM_TDX_LEVEL_2M);
	ck_assert(!ccvm_tdx_pamt_has_pair(m, pfn_at(0)));
	ck_assert(!ccvm_tdx_pamt_has_pair(m, pfn_at(PER_2M)));
	/* At most the S-EPT pages above the 2M leaves needed new pairs. */
	ck_assert_uint_le(pairs() - before, 2);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_TDH_PHYMEM_PAMT_ADD) - add, pairs() - before);
	assert_inv();
}
END_TEST

/* 4K pages share one pair per 2M region; it goes with the last of them. */
START_TEST(test_dpamt_4k_pair_per_region)
{
	uint64_t region, before, rm;

	run(guest_accept_4k);
	region = pfn_at(0);
	ck_assert(ccvm_tdx_pamt_has_pair(m, region));
	ck_assert(ccvm_tdx_pamt_has_pair(m, region + PER_2M - 1));
	before = pairs();
	assert_inv();
	/* All but one page of the region leave: the pair stays. */
	rm = tu_event(p, CCVM_EV_TDH_PHYMEM_PAMT_REMOVE);
	convert(0, TU_2M - PG, 0);
	ck_assert(ccvm_tdx_pamt_has_pair(m, region));
	ck_assert_uint_eq(tu_event(p, CCVM_EV_TDH_PHYMEM_PAMT_REMOVE), rm);
	assert_inv();
	/* The last one: PAMT.REMOVE, the pair's pages back to the host. */
	convert(TU_2M - PG, PG, 0);
	ck_assert(!ccvm_tdx_pamt_has_pair(m, region));
	ck_assert_uint_eq(tu_event(p, CCVM_EV_TDH_PHYMEM_PAMT_REMOVE), rm + 1);
	ck_assert_uint_eq(pairs(), before - 1);
	assert_inv();
}
END_TEST

/* DEMOTE adds the pair of the 2M page's region first; removal takes it back. */
START_TEST(test_dpamt_demote_adds_pair)
{
	uint64_t region, before;

	run(guest_accept_2m);
	region = pfn_at(0);
	before = pairs();
	ck_assert(!ccvm_tdx_pamt_has_pair(m, region));
	convert(4 * PG, 2 * PG, 0);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_DEMOTE), 1);
	ck_assert(ccvm_tdx_pamt_has_pair(m, region));
	ck_assert_uint_ge(pairs(), before + 1);
	assert_inv();
	run(guest_check_mark);
	/* The rest of the region to shared: its 4K pages leave, so does the pair. */
	convert(0, 4 * PG, 0);
	convert(6 * PG, TU_2M - 6 * PG, 0);
	ck_assert(!ccvm_tdx_pamt_has_pair(m, region));
	assert_inv();
}
END_TEST

/* Teardown gives every pair back, and every page of them. */
START_TEST(test_dpamt_teardown_returns_pairs)
{
	struct ccvm_stats st;

	run(guest_accept_4k);
	ck_assert_uint_gt(pairs(), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	v = NULL;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	st = pstats();
	ck_assert_uint_eq(st.pamt_pairs, 0);
	ck_assert_uint_eq(st.pamt_bytes, 0);
	ck_assert_uint_eq(module_pairs(), 0);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(m), 0);
	ck_assert_uint_eq(st.free_pages, st.total_pages);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_TDH_PHYMEM_PAMT_ADD),
			  tu_event(p, CCVM_EV_TDH_PHYMEM_PAMT_REMOVE));
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vm), 0);
	gm = tu_gmem(vm, SIZE, HUGE);
	ck_assert_int_eq(tu_region(vm, 0, CCVM_MEM_GUEST_MEMFD, 0, SIZE, shared, gm, 0), 0);
}
END_TEST

static void guest_accept_page0(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0, PG) == 0);
}

/* What a failed pair must leave as it was. */
struct dpamt_state {
	uint64_t free, leaked, pairs, bytes, assigned, add, remove, aug;
};

static struct dpamt_state dstate(void)
{
	struct ccvm_stats st = pstats();

	return (struct dpamt_state){
		.free = st.free_pages, .leaked = st.leaked_pages, .pairs = st.pamt_pairs,
		.bytes = st.pamt_bytes, .assigned = ccvm_tdx_pamt_nr_assigned(m),
		.add = st.events[CCVM_EV_TDH_PHYMEM_PAMT_ADD],
		.remove = st.events[CCVM_EV_TDH_PHYMEM_PAMT_REMOVE],
		.aug = st.events[CCVM_EV_TDH_MEM_PAGE_AUG],
	};
}

/* Run a guest whose fault fails: the run returns @err, the guest waits. */
static void run_fails(ccvm_guest_fn fn, int err)
{
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, fn, NULL), 0);
	ck_assert_int_eq(ccvm_vcpu_run(v), err);
}

/* Run the waiting guest to its end (its accept faults again). */
static void resume(void)
{
	unsigned int ve = 0;

	while (tu_run_once_maybe_ve(v))
		ck_assert_uint_lt(++ve, 16);
}

/*
 * Page 0's folio allocated and its S-EPT tables linked, but no page of its
 * region held by the TD (nor a pair): a 4K accept of page 0 then needs
 * only the pair, so a failed pair leaves free memory exactly as it was.
 */
static void prepare_page0(void)
{
	run(guest_accept_4k);
	convert(0, TU_2M, 0);
	convert(0, TU_2M, PRIV);
	ck_assert(!ccvm_tdx_pamt_has_pair(m, pfn_at(0)));
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 0, NULL, NULL), -ENOENT);
	assert_inv();
}

/* No memory for a pair: the fault fails with -ENOMEM and nothing changed. */
START_TEST(test_dpamt_pair_alloc_fails)
{
	uint64_t *hoard, n = 0, cap = TU_GiB / PG;
	struct dpamt_state a, b;
	struct tu_snap sa, sb;

	prepare_page0();
	hoard = calloc(cap, sizeof(*hoard));
	ck_assert(hoard);
	while (n < cap && !ccvm_page_alloc(p, &hoard[n]))
		n++;
	ck_assert_uint_gt(n, 0);
	a = dstate();
	tu_snap_take(&sa, p, vm, gm, NULL, 0, SIZE);
	run_fails(guest_accept_page0, -ENOMEM);
	b = dstate();
	tu_snap_take(&sb, p, vm, gm, NULL, 0, SIZE);
	ck_assert_mem_eq(&a, &b, sizeof(a));
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 0, NULL, NULL), -ENOENT);
	ck_assert_mem_eq(&sa.gmem[0], &sb.gmem[0], sizeof(sa.gmem[0]));
	ck_assert_uint_eq(sa.nr_runs, sb.nr_runs);
	while (n)
		ccvm_page_free(p, hoard[--n]);
	free(hoard);
	assert_inv();
	/* With memory back the same accept works. */
	resume();
	ck_assert(ccvm_tdx_pamt_has_pair(m, pfn_at(0)));
	assert_inv();
}
END_TEST

/* PAMT.ADD refused (injected): the fault fails, the pair's pages go back. */
START_TEST(test_dpamt_add_refused)
{
	struct dpamt_state a, b;

	prepare_page0();
	a = dstate();
	ck_assert_int_eq(ccvm_tdx_inject(m, CCVM_TDH_PHYMEM_PAMT_ADD, 0,
					 TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX, 0), 0);
	run_fails(guest_accept_page0, -EIO);
	ck_assert_int_eq(ccvm_tdx_inject(m, CCVM_TDH_PHYMEM_PAMT_ADD, 0, 0, 0), 0);
	b = dstate();
	ck_assert_uint_gt(b.add, a.add);
	b.add = a.add;
	ck_assert_mem_eq(&a, &b, sizeof(a));
	ck_assert(!ccvm_vm_is_bugged(vm));
	assert_inv();
	resume();
	ck_assert(ccvm_tdx_pamt_has_pair(m, pfn_at(0)));
	assert_inv();
}
END_TEST

/* AUG busy once after its pair was added: the pair goes, the retried fault adds it again. */
START_TEST(test_dpamt_aug_busy_drops_pair)
{
	struct dpamt_state a, b;

	prepare_page0();
	a = dstate();
	ck_assert_int_eq(ccvm_tdx_inject(m, CCVM_TDH_MEM_PAGE_AUG, 0,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_RCX, 1), 0);
	run(guest_accept_page0);
	b = dstate();
	ck_assert(ccvm_tdx_pamt_has_pair(m, pfn_at(0)));
	/* The gmem region's pair: added, removed after the busy AUG, added again. */
	ck_assert_uint_eq(b.add - a.add, 2);
	ck_assert_uint_eq(b.remove - a.remove, 1);
	ck_assert_uint_eq(b.aug - a.aug, 2);
	ck_assert_uint_eq(b.pairs, a.pairs + 1);
	ck_assert_uint_eq(b.free, a.free - 2);
	assert_inv();
}
END_TEST

/* AUG refused for good: the VM is bugged, and the pair was dropped first. */
START_TEST(test_dpamt_aug_error_drops_pair)
{
	struct ccvm_invariant_report r = { .sz = sizeof(r) };
	struct dpamt_state a, b;

	prepare_page0();
	a = dstate();
	ck_assert_int_eq(ccvm_tdx_inject(m, CCVM_TDH_MEM_PAGE_AUG, 0,
					 TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX, 1), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_accept_page0, NULL), 0);
	ck_assert_int_lt(ccvm_vcpu_run(v), 0);
	ck_assert(ccvm_vm_is_bugged(vm));
	b = dstate();
	/* Added for the AUG, removed when it failed: as before. */
	ck_assert_uint_eq(b.add - a.add, 1);
	ck_assert_uint_eq(b.remove - a.remove, 1);
	ck_assert_uint_eq(b.pairs, a.pairs);
	ck_assert_uint_eq(b.free, a.free);
	ck_assert_uint_eq(b.pairs, module_pairs());
	ck_assert(!ccvm_tdx_pamt_has_pair(m, pfn_at(0)));
	ck_assert_int_eq(ccvm_tdx_check_dpamt(p, &r), 0);
	ck_assert_msg(r.invariant == 0, "I%u: %s", r.invariant, r.msg);
	/* A bugged VM: close it here, then give teardown() a fresh one. */
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	v = NULL;
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_uint_eq(pstats().pamt_pairs, 0);
	ck_assert_uint_eq(module_pairs(), 0);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vm), 0);
	gm = tu_gmem(vm, SIZE, HUGE);
	ck_assert_int_eq(tu_region(vm, 0, CCVM_MEM_GUEST_MEMFD, 0, SIZE, shared, gm, 0), 0);
}
END_TEST

/* I38 broken behind the backend's back: a pair no region count explains. */
START_TEST(test_i38_pair_without_users)
{
	struct ccvm_invariant_report r = { .sz = sizeof(r) };
	uint64_t a, b, region = 0, p0, p1;

	assert_inv();
	ck_assert_int_eq(ccvm_page_alloc(p, &a), 0);
	ck_assert_int_eq(ccvm_page_alloc(p, &b), 0);
	/* A region nothing uses: the last 2M of the platform. */
	region = (TU_GiB / PG) - PER_2M;
	ck_assert_uint_eq(ccvm_tdh_phymem_pamt_add(m, NULL, region, a, b), TDX_SUCCESS);
	ck_assert_int_eq(ccvm_vm_check_invariants(vm, &r), 0);
	ck_assert_msg(r.invariant == 38, "I%u: %s", r.invariant, r.msg);
	ck_assert_uint_eq(ccvm_tdh_phymem_pamt_remove(m, NULL, region, &p0, &p1), TDX_SUCCESS);
	ccvm_page_free(p, a);
	ccvm_page_free(p, b);
	assert_inv();
}
END_TEST

/* ---- bad input: nothing changes --------------------------------------------------- */

static void guest_bad_accepts(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	/* Misaligned against the level, a bad level: refused before anything. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, PG, TU_2M, CCVM_LEVEL_2M) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, PG, CCVM_LEVEL_2M) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, TU_2M, CCVM_LEVEL_1G) == -EINVAL);
}

START_TEST(test_bad_accept_changes_nothing)
{
	static const enum ccvm_event same[] = {
		CCVM_EV_TDG_MEM_PAGE_ACCEPT, CCVM_EV_TDH_MEM_PAGE_AUG, CCVM_EV_TDH_MEM_PAGE_DEMOTE,
		CCVM_EV_FAULT, CCVM_EV_MAP_4K, CCVM_EV_MAP_2M, CCVM_EV_ZAP,
	};
	struct tu_snap a, b;
	unsigned int i;

	run(guest_accept_4k);
	tu_snap_take(&a, p, vm, gm, NULL, 0, SIZE);
	run(guest_bad_accepts);
	tu_snap_take(&b, p, vm, gm, NULL, 0, SIZE);
	/* The run itself enters and leaves the guest: compare the rest. */
	for (i = 0; i < TU_ARRAY_SIZE(same); i++)
		ck_assert_uint_eq(b.vst.events[same[i]], a.vst.events[same[i]]);
	ck_assert_mem_eq(&a.gmem[0], &b.gmem[0], sizeof(a.gmem[0]));
	ck_assert_uint_eq(a.nr_runs, b.nr_runs);
	ck_assert_int_eq(level_at(0), CCVM_LEVEL_4K);
	assert_inv();
}
END_TEST

/* Host calls over a 2M-mapped TD refused for their range: nothing moves. */
START_TEST(test_bad_ranges_change_nothing)
{
	struct tu_snap a, b;
	int r;

	run(guest_accept_2m);
	tu_snap_take(&a, p, vm, gm, NULL, 0, SIZE);
	/* Page alignment is the rule (misalignment against the folio is not an error). */
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					     PG + 1, PG), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					     TU_2M, PG - 1), -EINVAL);
	if (scheme == CCVM_ATTR_SCHEME_GMEM)
		r = ccvm_gmem_set_memory_attributes(gm, &(struct ccvm_memory_attributes2){
			.offset = 4 * PG + 8, .size = PG, .attributes = 0 });
	else
		r = ccvm_vm_set_memory_attributes(vm, 4 * PG + 8, PG, 0, 0);
	ck_assert_int_eq(r, -EINVAL);
	/* An unknown mode bit. */
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE |
					     (1u << 20), 0, TU_2M), -EOPNOTSUPP);
	tu_snap_take(&b, p, vm, gm, NULL, 0, SIZE);
	tu_snap_assert_same(&a, &b);
	ck_assert_int_eq(level_at(0), CCVM_LEVEL_2M);
	ck_assert_int_eq(pamt_level(0), CCVM_TDX_LEVEL_2M);
	ck_assert_uint_eq(vev(CCVM_EV_TDH_MEM_PAGE_DEMOTE), 0);
	assert_inv();
}
END_TEST

/* The public calls never reach the module with a DEMOTE lacking BLOCK/TRACK. */
START_TEST(test_module_refuses_demote_without_block)
{
	struct ccvm_tdx_td *td = ccvm_tdx_vm_td(vm);
	struct tu_snap a, b;
	uint64_t spt, st;

	run(guest_accept_2m);
	ck_assert_int_eq(ccvm_page_alloc(p, &spt), 0);
	tu_snap_take(&a, p, vm, gm, NULL, 0, SIZE);
	st = ccvm_tdh_mem_page_demote(td, 0, CCVM_TDX_LEVEL_2M, spt);
	ck_assert_uint_eq(TDX_STATUS_CLASS(st), TDX_GPA_RANGE_NOT_BLOCKED);
	tu_snap_take(&b, p, vm, gm, NULL, 0, SIZE);
	/* The refused SEAMCALL is counted (and its error), nothing else moved. */
	ck_assert_uint_eq(b.pst.events[CCVM_EV_TDH_MEM_PAGE_DEMOTE],
			  a.pst.events[CCVM_EV_TDH_MEM_PAGE_DEMOTE] + 1);
	b.pst.events[CCVM_EV_TDH_MEM_PAGE_DEMOTE] = a.pst.events[CCVM_EV_TDH_MEM_PAGE_DEMOTE];
	b.vst.events[CCVM_EV_TDH_MEM_PAGE_DEMOTE] = a.vst.events[CCVM_EV_TDH_MEM_PAGE_DEMOTE];
	b.pst.events[CCVM_EV_TDX_ERROR] = a.pst.events[CCVM_EV_TDX_ERROR];
	b.vst.events[CCVM_EV_TDX_ERROR] = a.vst.events[CCVM_EV_TDX_ERROR];
	b.pst.sim_ns = a.pst.sim_ns;	/* the SEAMCALL's simulated time */
	b.vst.sim_ns = a.vst.sim_ns;
	tu_snap_assert_same(&a, &b);
	ck_assert_uint_eq(level_at(0), CCVM_LEVEL_2M);
	ck_assert_int_eq(pamt_level(0), CCVM_TDX_LEVEL_2M);
	ccvm_page_free(p, spt);
	assert_inv();
}
END_TEST

/* ---- I37, broken on purpose -------------------------------------------------------- */

START_TEST(test_i37_pamt_level_disagrees)
{
	struct ccvm_invariant_report r = { .sz = sizeof(r) };
	struct ccvm_tdx_td *td = ccvm_tdx_vm_td(vm);
	uint64_t spt, head, i;

	run(guest_accept_first_2m);
	head = pfn_at(0);
	ck_assert_int_eq(pamt_level(0), CCVM_TDX_LEVEL_2M);
	assert_inv();
	/* Behind KVM's back: BLOCK, TRACK, DEMOTE; the mirror still has a 2M leaf. */
	ck_assert_int_eq(ccvm_page_alloc(p, &spt), 0);
	ck_assert_uint_eq(ccvm_tdh_mem_range_block(td, 0, CCVM_TDX_LEVEL_2M), TDX_SUCCESS);
	ck_assert_uint_eq(ccvm_tdh_mem_track(td), TDX_SUCCESS);
	ck_assert_uint_eq(ccvm_tdh_mem_page_demote(td, 0, CCVM_TDX_LEVEL_2M, spt), TDX_SUCCESS);
	ck_assert_int_eq(ccvm_vm_check_invariants(vm, &r), 0);
	ck_assert_msg(r.invariant == 37, "I%u: %s", r.invariant, r.msg);
	/* Undo it with the module alone: the 4K pages out, the S-EPT page out, AUG 2M. */
	for (i = 0; i < PER_2M; i++)
		ck_assert_uint_eq(ccvm_tdh_mem_range_block(td, i * PG, CCVM_TDX_LEVEL_4K),
				  TDX_SUCCESS);
	ck_assert_uint_eq(ccvm_tdh_mem_track(td), TDX_SUCCESS);
	for (i = 0; i < PER_2M; i++)
		ck_assert_uint_eq(ccvm_tdh_mem_page_remove(td, i * PG, CCVM_TDX_LEVEL_4K, NULL),
				  TDX_SUCCESS);
	ck_assert_uint_eq(ccvm_tdh_mem_range_block(td, 0, CCVM_TDX_LEVEL_2M), TDX_SUCCESS);
	ck_assert_uint_eq(ccvm_tdh_mem_track(td), TDX_SUCCESS);
	ck_assert_uint_eq(ccvm_tdh_mem_sept_remove(td, 0, CCVM_TDX_LEVEL_2M, NULL), TDX_SUCCESS);
	ck_assert_uint_eq(ccvm_tdh_mem_page_aug(td, 0, CCVM_TDX_LEVEL_2M, head), TDX_SUCCESS);
	ccvm_page_free(p, spt);
	assert_inv();
}
END_TEST

/* The flag is the tdx backend's: anywhere else it is bad input. */
START_TEST(test_dpamt_flag_needs_tdx)
{
	static const char *const others[] = { "mock", "snp" };
	struct ccvm_platform *q = NULL;
	unsigned int i;

	for (i = 0; i < TU_ARRAY_SIZE(others); i++) {
		struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
			.backend = others[i], .mem_bytes = 64ull << 20,
			.flags = CCVM_PLATFORM_TDX_DYNAMIC_PAMT);

		ck_assert_int_eq(ccvm_platform_create(&o, &q), -EINVAL);
		ck_assert_ptr_null(q);
		ck_assert_ptr_nonnull(strstr(ccvm_last_error(), "CCVM_PLATFORM_TDX_DYNAMIC_PAMT"));
	}
}
END_TEST

Suite *tdx_huge_suite(void)
{
	Suite *s = suite_create("tdx_huge");
	TCase *tc;

	tc = tcase_create("vm_scheme");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_aug_accept_2m);
	tcase_add_test(tc, test_accept_4k_maps_4k);
	tcase_add_test(tc, test_accept_4k_under_pending_2m);
	tcase_add_test(tc, test_partial_conversion_demotes);
	tcase_add_test(tc, test_punch);
	tcase_add_test(tc, test_teardown_reclaims_2m);
	tcase_add_test(tc, test_bad_accept_changes_nothing);
	tcase_add_test(tc, test_bad_ranges_change_nothing);
	tcase_add_test(tc, test_module_refuses_demote_without_block);
	tcase_add_test(tc, test_i37_pamt_level_disagrees);
	suite_add_tcase(s, tc);

	tc = tcase_create("dpamt");
	tcase_add_checked_fixture(tc, setup_dpamt, teardown);
	tcase_add_test(tc, test_aug_accept_2m);
	tcase_add_test(tc, test_accept_4k_maps_4k);
	tcase_add_test(tc, test_accept_4k_under_pending_2m);
	tcase_add_test(tc, test_partial_conversion_demotes);
	tcase_add_test(tc, test_punch);
	tcase_add_test(tc, test_teardown_reclaims_2m);
	tcase_add_test(tc, test_bad_ranges_change_nothing);
	tcase_add_test(tc, test_dpamt_2m_needs_no_pair);
	tcase_add_test(tc, test_dpamt_4k_pair_per_region);
	tcase_add_test(tc, test_dpamt_demote_adds_pair);
	tcase_add_test(tc, test_dpamt_teardown_returns_pairs);
	tcase_add_test(tc, test_dpamt_pair_alloc_fails);
	tcase_add_test(tc, test_dpamt_add_refused);
	tcase_add_test(tc, test_dpamt_aug_busy_drops_pair);
	tcase_add_test(tc, test_dpamt_aug_error_drops_pair);
	tcase_add_test(tc, test_i38_pair_without_users);
	suite_add_tcase(s, tc);

	tc = tcase_create("dpamt_flag");
	tcase_add_test(tc, test_dpamt_flag_needs_tdx);
	suite_add_tcase(s, tc);

	tc = tcase_create("in_place");
	tcase_add_checked_fixture(tc, setup_inplace, teardown);
	tcase_add_test(tc, test_aug_accept_2m);
	tcase_add_test(tc, test_partial_conversion_demotes);
	tcase_add_test(tc, test_punch);
	tcase_add_test(tc, test_bad_ranges_change_nothing);
	suite_add_tcase(s, tc);
	return s;
}
