/* SPDX-License-Identifier: MIT */
/*
 * Huge gmem folios (docs/huge-folios.md): creation flags, allocation and
 * punch at folio granularity, the mapping order a fault gets from the
 * folio and the slot, the split of a folio when part of it converts to
 * shared and its merge when it is all private again, on the mock backend
 * (which maps private memory at 2M wherever folio, slot and attributes
 * allow).  Every refused call is checked against a snapshot.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <ccvm/backend.h>

#include "internal.h"
#include "../backends/snp/snp.h"
#include "snapshot.h"
#include "testutil.h"

#define PRIV		CCVM_MEMORY_ATTRIBUTE_PRIVATE
#define MMAP		CCVM_GMEM_FLAG_MMAP
#define HUGE		CCVM_GMEM_FLAG_HUGETLB
#define KEEP		CCVM_FALLOC_KEEP_SIZE
#define PUNCH		(CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE)
#define PAGES_2M	512ull

static struct ccvm_platform *p;
static struct ccvm_vm *vm;	/* VM scheme */
static struct ccvm_vm *ivm;	/* GMEM scheme: conversions in place */

static void setup(void)
{
	tu_caps_reset_to_mock();
	p = tu_platform("mock");
	vm = tu_vm(p);
	ivm = tu_vm_scheme(p, CCVM_ATTR_SCHEME_GMEM);
}

static void teardown(void)
{
	ck_assert_int_eq(ccvm_vm_close(ivm), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	ccvm_set_log(NULL, NULL);
}

static uint64_t gfn_pfn(struct ccvm_vm *v, uint64_t gfn)
{
	uint64_t pfn = 0;

	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(v, gfn, &pfn), 0);
	return pfn;
}

/* Pre-fault [gpa, gpa + size) with a new vCPU of @v (closed again). */
static void prefault(struct ccvm_vm *v, uint32_t id, uint64_t gpa, uint64_t size)
{
	struct ccvm_vcpu *c = NULL;

	ck_assert_int_eq(ccvm_vcpu_create(v, id, &c), 0);
	while (size)
		ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(c, &gpa, &size), 0);
	ck_assert_int_eq(ccvm_vcpu_close(c), 0);
}

static int level_at(struct ccvm_vm *v, uint64_t gpa)
{
	int level = 0;

	ck_assert_int_eq(ccvm_vm_lookup_mapping(v, gpa, NULL, &level), 0);
	return level;
}

static void assert_inv(struct ccvm_vm *v)
{
	struct ccvm_invariant_report r = { .sz = sizeof(r) };

	ck_assert_int_eq(ccvm_vm_check_invariants(v, &r), 0);
	ck_assert_msg(r.invariant == 0, "I%u: %s", r.invariant, r.msg);
}

/* Close @c, delete slot 0 of @v, close @g and @v, then @q and @map. */
static void world_down(struct ccvm_platform *q, struct ccvm_vm *v, struct ccvm_vcpu *c,
		       struct ccvm_gmem *g, void *map, size_t map_bytes)
{
	ck_assert_int_eq(ccvm_vcpu_close(c), 0);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(v, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(v), 0);
	tu_platform_down(q);
	munmap(map, map_bytes);
}

/* ---- create ---------------------------------------------------------------- */

static const struct {
	uint64_t size, flags;
} bad_create[] = {
	{ TU_2M, CCVM_GMEM_HUGE_2MB },			/* a size without HUGETLB */
	{ TU_2M, CCVM_GMEM_HUGE_1GB },
	{ TU_2M, HUGE | (12ull << CCVM_GMEM_HUGE_SHIFT) },	/* 4K "huge" pages */
	{ TU_2M, HUGE | (24ull << CCVM_GMEM_HUGE_SHIFT) },	/* 16M: no such size */
	{ TU_2M, HUGE | CCVM_GMEM_HUGE_MASK },
	{ TU_2M + TU_PAGE, HUGE },			/* not a multiple of 2M */
	{ TU_PAGE, HUGE },
	{ TU_2M, HUGE | CCVM_GMEM_HUGE_1GB },		/* 2M of a 1G-folio file */
	{ TU_GiB + TU_2M, HUGE | CCVM_GMEM_HUGE_1GB },
	{ TU_2M, HUGE | (1ull << 32) },			/* unknown bit above the size */
};

START_TEST(test_create_invalid)
{
	struct ccvm_gmem *g = NULL;
	struct tu_snap before, after;

	tu_snap_take(&before, p, vm, NULL, NULL, 0, TU_MiB);
	ck_assert_int_eq(ccvm_gmem_create(vm, bad_create[_i].size, bad_create[_i].flags, &g),
			 -EINVAL);
	ck_assert_ptr_null(g);
	ck_assert_ptr_nonnull(strstr(ccvm_last_error(), "ccvm_gmem_create"));
	tu_snap_take(&after, p, vm, NULL, NULL, 0, TU_MiB);
	tu_snap_assert_same(&before, &after);
}
END_TEST

START_TEST(test_create_orders)
{
	struct ccvm_gmem *g;

	g = tu_gmem(vm, 4 * TU_2M, HUGE);
	ck_assert_uint_eq(tu_gmem_info(g).folio_order, CCVM_FOLIO_ORDER_2M);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	g = tu_gmem(vm, TU_2M, HUGE | CCVM_GMEM_HUGE_2MB);
	ck_assert_uint_eq(tu_gmem_info(g).folio_order, CCVM_FOLIO_ORDER_2M);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	g = tu_gmem(vm, TU_GiB, HUGE | CCVM_GMEM_HUGE_1GB);
	ck_assert_uint_eq(tu_gmem_info(g).folio_order, CCVM_FOLIO_ORDER_1G);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	g = tu_gmem(vm, TU_PAGE, 0);
	ck_assert_uint_eq(tu_gmem_info(g).folio_order, 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* ---- allocation and punch ------------------------------------------------------ */

START_TEST(test_allocate_rounds_down)
{
	struct ccvm_gmem *g = tu_gmem(vm, 8 * TU_2M, HUGE);
	uint64_t free0 = tu_free_pages(p);

	/* Inside one folio: both ends round down to its start, nothing to do. */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, 0, TU_PAGE), 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, TU_PAGE, TU_2M - 2 * TU_PAGE), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 0);
	/* [2M - 4K, 4M + 4K) -> folios [0, 4M). */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, TU_2M - TU_PAGE, TU_2M + 2 * TU_PAGE), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 2 * PAGES_2M);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 2);
	ck_assert_uint_eq(free0 - tu_free_pages(p), 2 * PAGES_2M);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_uint_eq(tu_free_pages(p), free0);
}
END_TEST

START_TEST(test_folio_is_aligned_block)
{
	struct ccvm_gmem *g = tu_gmem(vm, 4 * TU_2M, HUGE);
	uint64_t pfn, i;

	tu_gmem_slot(vm, 0, 0, 4 * TU_2M, g, 0);
	/* A 4K page first, so the folio cannot start where the bump is. */
	ck_assert_int_eq(ccvm_page_alloc(p, &pfn), 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, TU_2M, TU_2M), 0);
	pfn = gfn_pfn(vm, PAGES_2M);
	ck_assert_uint_eq(pfn & (PAGES_2M - 1), 0);
	for (i = 0; i < PAGES_2M; i++) {
		ck_assert_uint_eq(gfn_pfn(vm, PAGES_2M + i), pfn + i);
		ck_assert_int_eq(ccvm_page_folio_order(p, pfn + i), CCVM_FOLIO_ORDER_2M);
	}
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, 0, &pfn), -ENOENT);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_page_folio_order(p, pfn), 0);
}
END_TEST

START_TEST(test_punch_whole_and_partial)
{
	struct ccvm_gmem *g = tu_gmem(vm, 4 * TU_2M, HUGE);
	uint64_t free0, pfn, st;
	uint8_t buf[16], zero[16] = { 0 };

	tu_gmem_slot(vm, 0, 0, 4 * TU_2M, g, 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, 0, 4 * TU_2M), 0);
	free0 = tu_free_pages(p);
	/* Part of folio 1: the folio stays, the pages are zeroed. */
	pfn = gfn_pfn(vm, PAGES_2M + 3);
	memset(buf, 0xab, sizeof(buf));
	ck_assert_int_eq(ccvm_host_write_phys(p, pfn, 0, buf, sizeof(buf)), 0);
	st = tu_event(p, CCVM_EV_GMEM_INVALIDATE);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, TU_2M + 3 * TU_PAGE, TU_PAGE), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 4 * PAGES_2M);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 4);
	ck_assert_uint_eq(tu_free_pages(p), free0);
	ck_assert_uint_eq(gfn_pfn(vm, PAGES_2M + 3), pfn);
	ck_assert_int_eq(ccvm_host_read_phys(p, pfn, 0, buf, sizeof(buf)), 0);
	ck_assert_mem_eq(buf, zero, sizeof(buf));
	ck_assert_uint_eq(tu_event(p, CCVM_EV_GMEM_INVALIDATE) - st, 1);
	/* [2M - 4K, 6M + 4K): folios 1 and 2 go, the edges of 0 and 3 are zeroed. */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, TU_2M - TU_PAGE, 2 * TU_2M + 2 * TU_PAGE),
			 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 2 * PAGES_2M);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 2);
	ck_assert_uint_eq(tu_free_pages(p), free0 + 2 * PAGES_2M);
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, PAGES_2M, &pfn), -ENOENT);
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, 3 * PAGES_2M - 1, &pfn), -ENOENT);
	(void)gfn_pfn(vm, PAGES_2M - 1);
	(void)gfn_pfn(vm, 3 * PAGES_2M);
	/* A freed block comes back whole. */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, TU_2M, TU_2M), 0);
	pfn = gfn_pfn(vm, PAGES_2M);
	ck_assert_uint_eq(pfn & (PAGES_2M - 1), 0);
	ck_assert_int_eq(ccvm_page_folio_order(p, pfn), CCVM_FOLIO_ORDER_2M);
	assert_inv(vm);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* A pinned page in a folio the punch would free: -EAGAIN, nothing changes. */
START_TEST(test_punch_pinned_folio)
{
	struct ccvm_gmem *g = tu_gmem(ivm, 2 * TU_2M, HUGE | MMAP | CCVM_GMEM_FLAG_INIT_SHARED);
	struct tu_snap before, after;

	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, 0, 2 * TU_2M), 0);
	ck_assert_int_eq(ccvm_gmem_pin(g, TU_2M + 5 * TU_PAGE, TU_PAGE), 0);
	tu_snap_take(&before, p, ivm, g, NULL, 0, 2 * TU_2M);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, 0, 2 * TU_2M), -EAGAIN);
	ck_assert_ptr_nonnull(strstr(ccvm_last_error(), "pinned"));
	tu_snap_take(&after, p, ivm, g, NULL, 0, 2 * TU_2M);
	tu_snap_assert_same(&before, &after);
	/* The folio without the pin goes; a partial punch of the pinned one zeroes. */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, 0, TU_2M), 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, TU_2M, TU_PAGE * 8), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, PAGES_2M);
	ck_assert_int_eq(ccvm_gmem_unpin(g, TU_2M + 5 * TU_PAGE, TU_PAGE), 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, TU_2M, TU_2M), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* ---- mapping level -------------------------------------------------------------- */

START_TEST(test_mock_maps_2m)
{
	struct ccvm_gmem *g = tu_gmem(vm, 4 * TU_2M, HUGE);
	uint64_t m2 = tu_vm_event(vm, CCVM_EV_MAP_2M);
	uint64_t pfn = 0;
	int order = -1;

	tu_gmem_slot(vm, 0, 0, 4 * TU_2M, g, 0);
	tu_set_attr(vm, 0, 4 * TU_2M, PRIV);
	prefault(vm, 0, 0, 4 * TU_2M);
	ck_assert_int_eq(level_at(vm, 0), CCVM_LEVEL_2M);
	ck_assert_int_eq(level_at(vm, 3 * TU_2M + 7 * TU_PAGE), CCVM_LEVEL_2M);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_MAP_2M) - m2, 4);
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_folio(vm, 5, &pfn, &order), 0);
	ck_assert_int_eq(order, CCVM_FOLIO_ORDER_2M);
	ck_assert_uint_eq(pfn, gfn_pfn(vm, 5));
	assert_inv(vm);
	/* A shared page in the 2M: that 2M maps at 4K after the conversion. */
	tu_set_attr(vm, TU_2M + TU_PAGE, TU_PAGE, 0);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, TU_2M, NULL, NULL), -ENOENT);
	prefault(vm, 1, TU_2M, TU_PAGE);
	ck_assert_int_eq(level_at(vm, TU_2M), CCVM_LEVEL_4K);
	ck_assert_int_eq(level_at(vm, 0), CCVM_LEVEL_2M);
	assert_inv(vm);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* 4K folios, or a slot whose gmem offset is not co-aligned with its gfns: 4K. */
START_TEST(test_mock_4k_when_folio_or_slot_disallow)
{
	struct ccvm_gmem *g4 = tu_gmem(vm, 2 * TU_2M, 0);
	struct ccvm_gmem *g = tu_gmem(vm, 4 * TU_2M, HUGE);
	int order = -1;
	uint64_t pfn;

	tu_gmem_slot(vm, 0, 0, 2 * TU_2M, g4, 0);
	/* Slot 1 at gpa 8M, file offset 4K: every 2M of gfns straddles folios. */
	tu_gmem_slot(vm, 1, 4 * TU_2M, 2 * TU_2M, g, TU_PAGE);
	tu_set_attr(vm, 0, 6 * TU_2M, PRIV);
	prefault(vm, 0, 0, 2 * TU_2M);
	prefault(vm, 1, 4 * TU_2M, 2 * TU_2M);
	ck_assert_int_eq(level_at(vm, 0), CCVM_LEVEL_4K);
	ck_assert_int_eq(level_at(vm, 4 * TU_2M), CCVM_LEVEL_4K);
	ck_assert_int_eq(level_at(vm, 5 * TU_2M + TU_PAGE), CCVM_LEVEL_4K);
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_folio(vm, 4 * PAGES_2M, &pfn, &order), 0);
	ck_assert_int_eq(order, 0);
	ck_assert_int_eq(ccvm_page_folio_order(p, pfn), CCVM_FOLIO_ORDER_2M);
	assert_inv(vm);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 1 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g4), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/*
 * A binding whose size (or offset) is not a whole number of folios is not
 * an error, upstream or here: the slot's hugepage tracking disallows 2M
 * wherever the 2M of gfns leaves the slot or straddles folios, so those
 * parts map at 4K while the aligned whole folios inside map at 2M.
 */
START_TEST(test_bind_unaligned_to_folio)
{
	struct ccvm_gmem *g = tu_gmem(vm, 4 * TU_2M, HUGE);

	/* Slot 0: file [0, 3M); slot 1: file [4M, 8M - 4K) at gpa 16M. */
	ck_assert_int_eq(tu_region(vm, 0, CCVM_MEM_GUEST_MEMFD, 0, TU_2M + TU_MiB, NULL, g, 0),
			 0);
	ck_assert_int_eq(tu_region(vm, 1, CCVM_MEM_GUEST_MEMFD, 8 * TU_2M, 2 * TU_2M - TU_PAGE,
				   NULL, g, 2 * TU_2M), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_bindings, 2);
	tu_set_attr(vm, 0, 10 * TU_2M, PRIV);
	prefault(vm, 0, 0, TU_2M + TU_MiB);
	prefault(vm, 1, 8 * TU_2M, 2 * TU_2M - TU_PAGE);
	/* Whole folios inside the slot: 2M. */
	ck_assert_int_eq(level_at(vm, 0), CCVM_LEVEL_2M);
	ck_assert_int_eq(level_at(vm, 8 * TU_2M + 9 * TU_PAGE), CCVM_LEVEL_2M);
	/* The 2M that the slot's end cuts: 4K, its last page included. */
	ck_assert_int_eq(level_at(vm, TU_2M), CCVM_LEVEL_4K);
	ck_assert_int_eq(level_at(vm, TU_2M + TU_MiB - TU_PAGE), CCVM_LEVEL_4K);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, TU_2M + TU_MiB, NULL, NULL), -ENOENT);
	ck_assert_int_eq(level_at(vm, 9 * TU_2M), CCVM_LEVEL_4K);
	ck_assert_int_eq(level_at(vm, 10 * TU_2M - 2 * TU_PAGE), CCVM_LEVEL_4K);
	/* Each folio touched is allocated whole, the cut ones too. */
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 4 * PAGES_2M);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 4);
	assert_inv(vm);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 1 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* ---- split and merge (in place) ----------------------------------------------------- */

static void convert(struct ccvm_gmem *g, uint64_t off, uint64_t size, uint64_t attrs)
{
	struct ccvm_memory_attributes2 a = { .offset = off, .size = size, .attributes = attrs };

	ck_assert_int_eq(ccvm_gmem_set_memory_attributes(g, &a), 0);
}

START_TEST(test_split_and_merge)
{
	struct ccvm_gmem *g = tu_gmem(ivm, 2 * TU_2M, HUGE);
	uint64_t pfn0, pfn1, splits = tu_event(p, CCVM_EV_FOLIO_SPLIT);
	uint64_t merges = tu_event(p, CCVM_EV_FOLIO_MERGE);
	uint64_t i;

	tu_gmem_slot(ivm, 0, 0, 2 * TU_2M, g, 0);
	prefault(ivm, 0, 0, 2 * TU_2M);
	ck_assert_int_eq(level_at(ivm, 0), CCVM_LEVEL_2M);
	pfn0 = gfn_pfn(ivm, 0);
	pfn1 = gfn_pfn(ivm, PAGES_2M);
	/* Two pages of folio 0 to shared: it splits, folio 1 does not. */
	convert(g, 2 * TU_PAGE, 2 * TU_PAGE, 0);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_FOLIO_SPLIT) - splits, 1);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 1);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 2 * PAGES_2M);
	for (i = 0; i < PAGES_2M; i++) {
		ck_assert_uint_eq(gfn_pfn(ivm, i), pfn0 + i);
		ck_assert_int_eq(ccvm_page_folio_order(p, pfn0 + i), 0);
	}
	ck_assert_int_eq(ccvm_page_folio_order(p, pfn1), CCVM_FOLIO_ORDER_2M);
	ck_assert_int_eq(level_at(ivm, TU_2M), CCVM_LEVEL_2M);
	/* The 2M leaf over folio 0 went with the conversion. */
	ck_assert_int_eq(ccvm_vm_lookup_mapping(ivm, 0, NULL, NULL), -ENOENT);
	prefault(ivm, 1, 0, TU_2M);
	ck_assert_int_eq(level_at(ivm, 0), CCVM_LEVEL_4K);
	assert_inv(ivm);
	/* Half the shared pages back: still split.  The other half: whole again. */
	convert(g, 2 * TU_PAGE, TU_PAGE, PRIV);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 1);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_FOLIO_MERGE) - merges, 0);
	convert(g, 3 * TU_PAGE, TU_PAGE, PRIV);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_FOLIO_MERGE) - merges, 1);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 2);
	ck_assert_int_eq(ccvm_page_folio_order(p, pfn0 + 77), CCVM_FOLIO_ORDER_2M);
	ck_assert_uint_eq(gfn_pfn(ivm, 77), pfn0 + 77);
	assert_inv(ivm);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(ivm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* A folio allocated while a page of it is shared comes split at once. */
START_TEST(test_alloc_over_shared_is_split)
{
	struct ccvm_gmem *g = tu_gmem(ivm, 2 * TU_2M, HUGE);
	uint64_t pfn;

	convert(g, TU_2M + TU_PAGE, TU_PAGE, 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, 0, 2 * TU_2M), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 1);
	tu_gmem_slot(ivm, 0, 0, 2 * TU_2M, g, 0);
	pfn = gfn_pfn(ivm, PAGES_2M);
	ck_assert_uint_eq(pfn & (PAGES_2M - 1), 0);
	ck_assert_int_eq(ccvm_page_folio_order(p, pfn), 0);
	convert(g, TU_2M + TU_PAGE, TU_PAGE, PRIV);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 2);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(ivm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* 1G folios: allocated whole, mapped at 2M, split straight to 4K, merged back. */
START_TEST(test_1g_folio)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = "mock",
						     .mem_bytes = 3 * TU_GiB);
	struct ccvm_platform *q = tu_platform_up(&o);
	struct ccvm_vm *w = tu_vm_scheme(q, CCVM_ATTR_SCHEME_GMEM);
	struct ccvm_gmem *g = tu_gmem(w, TU_GiB, HUGE | CCVM_GMEM_HUGE_1GB);
	uint64_t pfn;

	tu_gmem_slot(w, 0, 0, TU_GiB, g, 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, 0, TU_2M), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 0);
	prefault(w, 0, 3 * TU_2M, TU_2M);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 1ull << CCVM_FOLIO_ORDER_1G);
	pfn = gfn_pfn(w, 0);
	ck_assert_uint_eq(pfn & ((1ull << CCVM_FOLIO_ORDER_1G) - 1), 0);
	ck_assert_int_eq(ccvm_page_folio_order(q, pfn + 12345), CCVM_FOLIO_ORDER_1G);
	ck_assert_int_eq(level_at(w, 3 * TU_2M), CCVM_LEVEL_2M);
	convert(g, 100 * TU_2M, TU_PAGE, 0);
	ck_assert_int_eq(ccvm_page_folio_order(q, pfn + 12345), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 0);
	convert(g, 100 * TU_2M, TU_PAGE, PRIV);
	ck_assert_int_eq(ccvm_page_folio_order(q, pfn + 12345), CCVM_FOLIO_ORDER_1G);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 1);
	assert_inv(w);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(w, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(w), 0);
	tu_platform_down(q);
}
END_TEST

/* ---- 1G folios: punch at folio granularity, every backend ---------------------------- */

/* A 1G folio: allocation rounds down, a partial punch zeroes, a whole one frees. */
START_TEST(test_1g_punch_and_close)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = "mock",
						     .mem_bytes = 3 * TU_GiB);
	struct ccvm_platform *q = tu_platform_up(&o);
	struct ccvm_vm *w = tu_vm(q);
	struct ccvm_gmem *g = tu_gmem(w, 2 * TU_GiB, HUGE | CCVM_GMEM_HUGE_1GB);
	const uint64_t per_1g = 1ull << CCVM_FOLIO_ORDER_1G;
	uint64_t free0 = tu_free_pages(q), pfn, off = 1000 * TU_PAGE;
	uint8_t buf[16], zero[16] = { 0 };
	struct tu_snap a, b;

	tu_gmem_slot(w, 0, 0, 2 * TU_GiB, g, 0);
	/* Both ends round down to the folio: up to 1G - 4K allocates nothing. */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, 0, TU_GiB - TU_PAGE), 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, TU_2M, TU_GiB - 2 * TU_2M), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, TU_PAGE, TU_GiB + TU_2M), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, per_1g);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 1);
	ck_assert_uint_eq(tu_free_pages(q), free0 - per_1g);
	pfn = gfn_pfn(w, off / TU_PAGE);
	ck_assert_uint_eq((pfn - off / TU_PAGE) & (per_1g - 1), 0);
	memset(buf, 0xcd, sizeof(buf));
	ck_assert_int_eq(ccvm_host_write_phys(q, pfn, 0, buf, sizeof(buf)), 0);
	/* Page alignment is the only rule: a misaligned punch changes nothing. */
	tu_snap_take(&a, q, w, g, NULL, 0, 2 * TU_GiB);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, off + 1, TU_2M), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, off, TU_2M - 1), -EINVAL);
	tu_snap_take(&b, q, w, g, NULL, 0, 2 * TU_GiB);
	tu_snap_assert_same(&a, &b);
	/* 2M inside the folio (not 2M aligned): the folio stays, those pages zeroed. */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, off, TU_2M), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, per_1g);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 1);
	ck_assert_uint_eq(tu_free_pages(q), free0 - per_1g);
	ck_assert_uint_eq(gfn_pfn(w, off / TU_PAGE), pfn);
	ck_assert_int_eq(ccvm_page_folio_order(q, pfn), CCVM_FOLIO_ORDER_1G);
	ck_assert_int_eq(ccvm_host_read_phys(q, pfn, 0, buf, sizeof(buf)), 0);
	ck_assert_mem_eq(buf, zero, sizeof(buf));
	/* Everything but the last page of the folio: still a partial punch. */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, 0, TU_GiB - TU_PAGE), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, per_1g);
	/* The whole folio (and the empty one after it): freed in one piece. */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, 0, 2 * TU_GiB), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pages, 0);
	ck_assert_uint_eq(tu_free_pages(q), free0);
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(w, off / TU_PAGE, &pfn), -ENOENT);
	/* Allocated again, the block is whole; closing the file frees it. */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, TU_GiB, TU_GiB), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 1);
	pfn = gfn_pfn(w, TU_GiB / TU_PAGE);
	ck_assert_uint_eq(pfn & (per_1g - 1), 0);
	ck_assert_int_eq(ccvm_page_folio_order(q, pfn + per_1g - 1), CCVM_FOLIO_ORDER_1G);
	assert_inv(w);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(w, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_uint_eq(tu_free_pages(q), free0);
	ck_assert_int_eq(ccvm_page_folio_order(q, pfn), 0);
	ck_assert_int_eq(ccvm_vm_close(w), 0);
	tu_platform_down(q);
}
END_TEST

/* The guest accepts the first 4M and the last 2M of a 1G slot at 2M. */
static void guest_accept_1g_edges(struct ccvm_guest *g, void *arg)
{
	uint8_t wr[32], rd[32];

	(void)arg;
	memset(wr, 0x3c, sizeof(wr));
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, 2 * TU_2M, CCVM_LEVEL_2M) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, TU_GiB - TU_2M, TU_2M,
						     CCVM_LEVEL_2M) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, TU_2M + 64, wr, sizeof(wr)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, TU_2M + 64, rd, sizeof(rd)) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(wr, rd, sizeof(rd)) == 0);
	/* Reads map what accepting did not (mock has no accept). */
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 0, rd, 1) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, TU_GiB - TU_2M, rd, 1) == 0);
}

/* The guest reads back what it wrote, after the host split and merged the folio. */
static void guest_reads_back(struct ccvm_guest *g, void *arg)
{
	uint8_t want[32], rd[32];

	(void)arg;
	memset(want, 0x3c, sizeof(want));
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, TU_2M + 64, rd, sizeof(rd)) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(want, rd, sizeof(rd)) == 0);
}

static const struct {
	const char *backend;
	uint32_t scheme;
} g1_modes[] = {
	{ "mock", CCVM_ATTR_SCHEME_VM }, { "mock", CCVM_ATTR_SCHEME_GMEM },
	{ "snp", CCVM_ATTR_SCHEME_VM }, { "snp", CCVM_ATTR_SCHEME_GMEM },
	{ "tdx", CCVM_ATTR_SCHEME_VM }, { "tdx", CCVM_ATTR_SCHEME_GMEM },
};

/*
 * A 1G folio on every backend: the mapping level comes from the folio but
 * stops at 2M (no 1G leaves, as upstream TDX and SNP); in place, one page
 * converted to shared splits the whole folio to 4K (no mapping larger than
 * its folio stays, I36), and converted back it is merged (I35), bytes kept.
 */
START_TEST(test_1g_folio_backends)
{
	const char *be = g1_modes[_i].backend;
	bool inplace = g1_modes[_i].scheme == CCVM_ATTR_SCHEME_GMEM;
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = be, .mem_bytes = 3 * TU_GiB,
						     .seed = 13);
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts,
						.attr_scheme = g1_modes[_i].scheme);
	struct ccvm_platform *q = tu_platform_up(&o);
	struct ccvm_vm *w = NULL;
	struct ccvm_gmem *g;
	struct ccvm_vcpu *c = NULL;
	uint8_t *map, *buf;
	uint64_t pfn, merges;

	map = mmap(NULL, TU_GiB + TU_2M, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ck_assert(map != MAP_FAILED);
	buf = (uint8_t *)(((uintptr_t)map + TU_2M - 1) & ~(uintptr_t)(TU_2M - 1));
	ck_assert_int_eq(ccvm_vm_create(q, &vo, &w), 0);
	g = tu_gmem(w, TU_GiB, HUGE | CCVM_GMEM_HUGE_1GB);
	ck_assert_int_eq(tu_region(w, 0, CCVM_MEM_GUEST_MEMFD, 0, TU_GiB, inplace ? NULL : buf,
				   g, 0), 0);
	if (!inplace)
		tu_set_attr(w, 0, TU_GiB, PRIV);
	ck_assert_int_eq(ccvm_vcpu_create(w, 0, &c), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(c, guest_accept_1g_edges, NULL), 0);
	ck_assert_int_eq(ccvm_vm_finalize(w), 0);
	tu_run_once(c, 0, CCVM_EXIT_DONE);
	pfn = gfn_pfn(w, 0);
	ck_assert_uint_eq(pfn & ((1ull << CCVM_FOLIO_ORDER_1G) - 1), 0);
	ck_assert_int_eq(ccvm_page_folio_order(q, pfn), CCVM_FOLIO_ORDER_1G);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 1);
	ck_assert_int_eq(level_at(w, 0), CCVM_LEVEL_2M);
	ck_assert_int_eq(level_at(w, TU_2M), CCVM_LEVEL_2M);
	ck_assert_int_eq(level_at(w, TU_GiB - TU_2M), CCVM_LEVEL_2M);
	assert_inv(w);

	/* One page in the middle of the folio to shared, and back. */
	merges = tu_event(q, CCVM_EV_FOLIO_MERGE);
	if (inplace)
		convert(g, 100 * TU_2M + 7 * TU_PAGE, TU_PAGE, 0);
	else
		tu_set_attr(w, 100 * TU_2M + 7 * TU_PAGE, TU_PAGE, 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, inplace ? 0 : 1);
	ck_assert_int_eq(ccvm_page_folio_order(q, pfn + 3), inplace ? 0 : CCVM_FOLIO_ORDER_1G);
	if (inplace && !strcmp(be, "tdx")) {
		/* The 2M leaves far from the page: demoted, their pages still accepted. */
		ck_assert_int_eq(level_at(w, 0), CCVM_LEVEL_4K);
		ck_assert_int_eq(level_at(w, TU_GiB - TU_2M), CCVM_LEVEL_4K);
	} else if (inplace) {
		/* Zapped: the next fault maps 4K over the 4K folios. */
		ck_assert_int_eq(ccvm_vm_lookup_mapping(w, 0, NULL, NULL), -ENOENT);
		ck_assert_int_eq(ccvm_vm_lookup_mapping(w, TU_GiB - TU_2M, NULL, NULL), -ENOENT);
	} else {
		ck_assert_int_eq(level_at(w, 0), CCVM_LEVEL_2M);
	}
	assert_inv(w);
	if (inplace)
		convert(g, 100 * TU_2M + 7 * TU_PAGE, TU_PAGE, PRIV);
	else
		tu_set_attr(w, 100 * TU_2M + 7 * TU_PAGE, TU_PAGE, PRIV);
	ck_assert_uint_eq(tu_gmem_info(g).nr_huge_folios, 1);
	ck_assert_uint_eq(tu_event(q, CCVM_EV_FOLIO_MERGE) - merges, inplace ? 1 : 0);
	ck_assert_int_eq(ccvm_page_folio_order(q, pfn + 3), CCVM_FOLIO_ORDER_1G);
	ck_assert_uint_eq(gfn_pfn(w, 3), pfn + 3);
	assert_inv(w);
	ck_assert_int_eq(ccvm_vcpu_set_guest(c, guest_reads_back, NULL), 0);
	tu_run_once(c, 0, CCVM_EXIT_DONE);
	assert_inv(w);

	world_down(q, w, c, g, map, TU_GiB + TU_2M);
}
END_TEST

/* ---- the invariants, each broken on purpose ---------------------------------------- */

static void assert_broken(struct ccvm_vm *v, uint32_t want)
{
	struct ccvm_invariant_report r = { .sz = sizeof(r) };

	ck_assert_int_eq(ccvm_vm_check_invariants(v, &r), 0);
	ck_assert_msg(r.invariant == want, "want I%u, got I%u: %s", want, r.invariant, r.msg);
}

/* I35: a whole folio holding a shared page (a merge too early, a split missed). */
START_TEST(test_i35_whole_folio_with_shared_page)
{
	struct ccvm_gmem *g = tu_gmem(ivm, 2 * TU_2M, HUGE);
	struct ccvm_gmem_inode *inode = g->inode;

	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, 0, 2 * TU_2M), 0);
	assert_inv(ivm);
	ccvm_rwlock_wrlock(&inode->attr_lock);
	ck_assert_int_eq(ccvm_xa_store(&inode->attrs, TU_2M / TU_PAGE + 9, 0), 0);
	ccvm_rwlock_unlock(&inode->attr_lock);
	assert_broken(ivm, 35);
	ccvm_rwlock_wrlock(&inode->attr_lock);
	ck_assert_int_eq(ccvm_xa_store(&inode->attrs, TU_2M / TU_PAGE + 9, PRIV), 0);
	ccvm_rwlock_unlock(&inode->attr_lock);
	assert_inv(ivm);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* I35: a page of a whole folio that does not record the folio's order. */
START_TEST(test_i35_page_order_disagrees)
{
	struct ccvm_gmem *g = tu_gmem(vm, TU_2M, HUGE);
	uint64_t pfn;

	tu_gmem_slot(vm, 0, 0, TU_2M, g, 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, 0, TU_2M), 0);
	pfn = gfn_pfn(vm, 0);
	assert_inv(vm);
	ccvm_page_set_folio_order(p, pfn + 5, 1, 0);
	assert_broken(vm, 35);
	ccvm_page_set_folio_order(p, pfn + 5, 1, CCVM_FOLIO_ORDER_2M);
	assert_inv(vm);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* I36: a 2M private leaf over 4K folios. */
START_TEST(test_i36_leaf_larger_than_folio)
{
	struct ccvm_gmem *g = tu_gmem(vm, 2 * TU_2M, 0);
	struct ccvm_mmu_entry leaf = { .leaf = true, .is_private = true }, old;
	struct ccvm_vcpu *c = NULL;
	uint64_t gpa = TU_2M, size = TU_PAGE, i;

	tu_gmem_slot(vm, 0, 0, 2 * TU_2M, g, 0);
	tu_set_attr(vm, 0, 2 * TU_2M, PRIV);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, KEEP, 0, TU_2M), 0);
	leaf.frame = gfn_pfn(vm, 0);
	for (i = 1; i < PAGES_2M; i++)
		ck_assert_uint_eq(gfn_pfn(vm, i), leaf.frame + i);	/* I1 holds */
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &c), 0);
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(c, &gpa, &size), 0);
	ck_assert_int_eq(ccvm_mmu_test_poke(vm, c->root, 0, CCVM_LEVEL_2M, &leaf, &old), 0);
	assert_broken(vm, 36);
	ck_assert_int_eq(ccvm_mmu_test_poke(vm, c->root, 0, CCVM_LEVEL_2M, NULL, NULL), 0);
	assert_inv(vm);
	ck_assert_int_eq(ccvm_vcpu_close(c), 0);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &(struct ccvm_memory_region){
		.slot = 0 }), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* The guest accepts its first 2M at 2M (SNP: one 2M RMP entry, one PVALIDATE). */
static void guest_accept_first_2m(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept_level(g, 0, TU_2M, CCVM_LEVEL_2M) == 0);
}

/*
 * I8 on SNP (the NPT level never exceeds the RMP entry's, so a 2M mapping
 * sits on one 2M entry with one validated bit: uniformly private, uniformly
 * accepted): PSMASH behind KVM's back leaves a 2M NPT leaf over 512 4K RMP
 * entries, each of which the guest could now rescind alone.  The checker
 * names I8.
 */
START_TEST(test_i8_snp_npt_over_smashed_rmp)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = "snp", .mem_bytes = TU_GiB,
						     .seed = 13);
	struct ccvm_platform *q = tu_platform_up(&o);
	struct ccvm_snp_hw *hw = ccvm_snp_hw_of(q);
	struct ccvm_vm *w = tu_vm(q);
	struct ccvm_gmem *g;
	struct ccvm_vcpu *c = NULL;
	struct ccvm_snp_rmp_entry e;
	uint8_t *map, *buf;
	uint64_t pfn;

	map = mmap(NULL, 3 * TU_2M, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ck_assert(map != MAP_FAILED);
	buf = (uint8_t *)(((uintptr_t)map + TU_2M - 1) & ~(uintptr_t)(TU_2M - 1));
	g = tu_gmem(w, 2 * TU_2M, HUGE);
	ck_assert_int_eq(tu_region(w, 0, CCVM_MEM_GUEST_MEMFD, 0, 2 * TU_2M, buf, g, 0), 0);
	tu_set_attr(w, 0, 2 * TU_2M, PRIV);
	ck_assert_int_eq(ccvm_vcpu_create(w, 0, &c), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(c, guest_accept_first_2m, NULL), 0);
	ck_assert_int_eq(ccvm_vm_finalize(w), 0);
	tu_run_once(c, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(level_at(w, 0), CCVM_LEVEL_2M);
	pfn = gfn_pfn(w, 0);
	ck_assert_int_eq(ccvm_snp_rmpread(hw, pfn + 5, &e), 0);
	ck_assert_uint_eq(e.level, CCVM_LEVEL_2M);
	ck_assert(e.validated);
	assert_inv(w);
	/* Behind KVM's back: the 2M entry split, the NPT leaf left at 2M. */
	ck_assert_int_eq(ccvm_snp_psmash(hw, w, pfn), CCVM_SNP_SUCCESS);
	ck_assert_int_eq(ccvm_snp_rmpread(hw, pfn + 5, &e), 0);
	ck_assert_uint_eq(e.level, CCVM_LEVEL_4K);
	assert_broken(w, 8);
	world_down(q, w, c, g, map, 3 * TU_2M);
}
END_TEST

Suite *folio_suite(void)
{
	Suite *s = suite_create("folio");
	TCase *tc;

	tc = tcase_create("create");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_create_invalid, 0, TU_ARRAY_SIZE(bad_create));
	tcase_add_test(tc, test_create_orders);
	suite_add_tcase(s, tc);

	tc = tcase_create("fallocate");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_allocate_rounds_down);
	tcase_add_test(tc, test_folio_is_aligned_block);
	tcase_add_test(tc, test_punch_whole_and_partial);
	tcase_add_test(tc, test_punch_pinned_folio);
	suite_add_tcase(s, tc);

	tc = tcase_create("level");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_mock_maps_2m);
	tcase_add_test(tc, test_mock_4k_when_folio_or_slot_disallow);
	tcase_add_test(tc, test_bind_unaligned_to_folio);
	suite_add_tcase(s, tc);

	tc = tcase_create("restructure");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_split_and_merge);
	tcase_add_test(tc, test_alloc_over_shared_is_split);
	tcase_add_test(tc, test_1g_folio);
	suite_add_tcase(s, tc);

	/* Platforms of their own, 3 GiB each (lazily backed). */
	tc = tcase_create("huge_1g");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_1g_punch_and_close);
	tcase_add_loop_test(tc, test_1g_folio_backends, 0, TU_ARRAY_SIZE(g1_modes));
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("invariants");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_i35_whole_folio_with_shared_page);
	tcase_add_test(tc, test_i35_page_order_disagrees);
	tcase_add_test(tc, test_i36_leaf_larger_than_folio);
	tcase_add_test(tc, test_i8_snp_npt_over_smashed_rmp);
	suite_add_tcase(s, tc);
	return s;
}
