/* SPDX-License-Identifier: MIT */
/*
 * Tests for the guest side of the tdx backend (backends/tdx/tdx.c) through
 * the public API: TDG.MEM.PAGE.ACCEPT and #VE, MapGPA conversions with and
 * without punching the old backing, the private and shared aliases of one
 * gfn (I29), the backend's hooks refusing misuse when called directly, and
 * host writes that poison a private page.  The S-EPT, the mirror root and
 * the PAMT are checked to agree with tdx_fixture.h's checkers.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <check.h>

#include "tdx_fixture.h"

/* ------------------------------------------------------------------ */
/* Guest side: accept, #VE, MapGPA, conversions                        */

static void guest_ve(struct ccvm_guest *g, void *arg)
{
	uint64_t gpa = *(uint64_t *)arg;
	uint8_t buf[PG];

	/* Never accepted: the access faults (AUG), then #VE on the pending page. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, gpa, buf, 8) == -EACCES);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, gpa, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, gpa, PG) == -EEXIST);
	memset(buf, 0xff, sizeof(buf));
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, gpa, buf, PG) == 0);
	CCVM_GUEST_ASSERT(g, page_zero(buf));
	fill(buf, gpa, 9);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, gpa, buf, PG) == 0);
	ccvm_guest_sync(g, 1);
}

START_TEST(test_accept_and_ve)
{
	uint64_t gpa = 0x23000, pfn;
	struct ccvm_run *run;
	uint8_t host[PG], plain[PG];
	int level, i;

	td_up(1, false);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[0], guest_ve, &gpa), 0);
	run = ccvm_vcpu_run_state(T.v[0]);
	ck_assert_int_eq(vmm_run(T.v[0], NULL), 0);
	ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_EXCEPTION);
	ck_assert_uint_eq(run->exception.vector, CCVM_X86_VE_VECTOR);
	ck_assert_uint_eq(run->exception.gpa, gpa);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_PAGE_AUG), 1);
	check_invariants();
	expect_sync(T.v[0], 1, NULL);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_PAGE_AUG), 1);
	ck_assert_uint_ge(pev(CCVM_EV_TDG_MEM_PAGE_ACCEPT), 2);
	check_invariants();

	ck_assert_int_eq(ccvm_vm_lookup_mapping(T.vm, gpa, &pfn, &level), 0);
	ck_assert_int_eq(ccvm_host_read_phys(T.p, pfn, 0, host, PG), 0);
	fill(plain, gpa, 9);
	for (i = 0; i < (int)PG; i++)
		ck_assert_uint_ne(host[i], plain[i]);
	close_all();
	assert_clean();
}
END_TEST

#define CONV_GPA	0x180000ull	/* straddles a 2M boundary */
#define CONV_SIZE	0x280000ull	/* 2.5 MiB: a 2M and a 512K MapGPA exit */

static void guest_convert(struct ccvm_guest *g, void *arg)
{
	uint64_t s = ccvm_guest_shared_bit(g), i;
	uint8_t buf[PG];

	(void)arg;
	for (i = 0; i < CONV_SIZE; i += PG) {
		CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, CONV_GPA + i, PG) == 0);
		fill(buf, CONV_GPA + i, 1);
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, CONV_GPA + i, buf, PG) == 0);
	}
	ccvm_guest_sync(g, 1);
	/* To shared: the guest names the range by either alias. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, CONV_GPA | s, CONV_SIZE, false) == 0);
	for (i = 0; i < CONV_SIZE; i += 64 * PG) {
		fill(buf, CONV_GPA + i, 2);
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, (CONV_GPA + i) | s, buf, PG) == 0);
	}
	ccvm_guest_sync(g, 2);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, CONV_GPA, CONV_SIZE, true) == 0);
	for (i = 0; i < CONV_SIZE; i += 64 * PG) {
		/* Contents are gone: accept, then zeros. */
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, CONV_GPA + i, buf, 8) == -EACCES);
		CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, CONV_GPA + i, PG) == 0);
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, CONV_GPA + i, buf, PG) == 0);
		CCVM_GUEST_ASSERT(g, page_zero(buf));
	}
	ccvm_guest_sync(g, 3);
}

static void run_conversion(bool punch)
{
	struct vmm_opts o = { .punch = punch };
	struct ccvm_run *run;
	uint64_t pages = CONV_SIZE / PG, i, leaves, block0;
	int r;

	td_up(1, false);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[0], guest_convert, NULL), 0);
	expect_sync(T.v[0], 1, &o);
	leaves = check_sept_mirror(SLOT0_GPA, SLOT0_SIZE / PG);
	ck_assert_uint_eq(leaves, pages);
	block0 = pev(CCVM_EV_TDH_MEM_RANGE_BLOCK);
	ck_assert_uint_eq(block0, 0);

	trace_start();
	expect_sync(T.v[0], 2, &o);
	trace_stop();
	ck_assert_uint_eq(check_removal_order(true), pages);
	trace_free();
	/* MapGPA: one exit per 2 MiB at most, gpa without the shared bit. */
	ck_assert_int_eq(o.nr_hypercalls, 2);
	ck_assert_uint_eq(o.hc_gpa[0], CONV_GPA);
	ck_assert_uint_eq(o.hc_npages[0], CCVM_HPAGE_2M_SIZE / PG);
	ck_assert_uint_eq(o.hc_attrs[0], CCVM_MAP_GPA_RANGE_DECRYPTED);
	ck_assert_uint_eq(o.hc_gpa[1], CONV_GPA + CCVM_HPAGE_2M_SIZE);
	ck_assert_uint_eq(o.hc_npages[1], (CONV_SIZE - CCVM_HPAGE_2M_SIZE) / PG);
	/* Dynamic removal of every page, none left in the S-EPT. */
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_RANGE_BLOCK), pages);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_TRACK), pages);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_PAGE_REMOVE), pages);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_PHYMEM_PAGE_WBINVD), pages);
	ck_assert_uint_eq(check_sept_mirror(SLOT0_GPA, SLOT0_SIZE / PG), 0);
	/* The shared writes went to the VMM's memory. */
	for (i = 0; i < CONV_SIZE; i += 64 * PG)
		ck_assert(page_has(T.shared[0] + CONV_GPA + i, CONV_GPA + i, 2));
	if (punch)
		ck_assert_uint_eq(tu_gmem_info(T.g[0]).nr_pages, 0);
	else
		ck_assert_uint_eq(tu_gmem_info(T.g[0]).nr_pages, pages);

	o.nr_hypercalls = 0;
	o.punch = false;
	run = ccvm_vcpu_run_state(T.v[0]);
	for (i = 0; i < CONV_SIZE / (64 * PG); i++) {
		r = vmm_run(T.v[0], &o);
		ck_assert_int_eq(r, 0);
		ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_EXCEPTION);
		ck_assert_uint_eq(run->exception.vector, CCVM_X86_VE_VECTOR);
	}
	expect_sync(T.v[0], 3, &o);
	ck_assert_int_eq(o.nr_hypercalls, 2);
	ck_assert_uint_eq(o.hc_attrs[0], CCVM_MAP_GPA_RANGE_ENCRYPTED);
	check_invariants();
	close_all();
	assert_clean();
}

START_TEST(test_conversion_punch)
{
	run_conversion(true);
}
END_TEST

START_TEST(test_conversion_keep_backing)
{
	run_conversion(false);
}
END_TEST

/* Private and shared aliases of one gfn are different memory (I29). */
static void guest_aliases(struct ccvm_guest *g, void *arg)
{
	uint64_t s = ccvm_guest_shared_bit(g), gpa = 0x300000;
	uint8_t buf[PG];

	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, gpa, PG) == 0);
	fill(buf, gpa, 5);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, gpa, buf, PG) == 0);
	/* The shared alias of a private gfn: a memory-fault exit, no conversion. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, gpa | s, buf, 8) == 0);
	ccvm_guest_sync(g, 1);
}

START_TEST(test_shared_alias)
{
	struct ccvm_run *run;
	uint64_t pfn = 0;
	int level;

	td_up(1, false);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[0], guest_aliases, NULL), 0);
	run = ccvm_vcpu_run_state(T.v[0]);
	ck_assert_int_eq(vmm_run(T.v[0], NULL), -EFAULT);
	ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(run->memory_fault.gpa, 0x300000);
	ck_assert_uint_eq(run->memory_fault.flags, 0);
	/* The VMM converts the page to shared: the private mapping goes. */
	tu_set_attr(T.vm, 0x300000, PG, 0);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_PAGE_REMOVE), 1);
	expect_sync(T.v[0], 1, NULL);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(T.vm, 0x300000 | T.sbit, &pfn, &level), 0);
	ck_assert_uint_eq(pfn, UINT64_MAX);	/* the VMM's memory, not a platform page */
	ck_assert_int_eq(ccvm_vm_lookup_mapping(T.vm, 0x300000, &pfn, &level), -ENOENT);
	check_invariants();
	close_all();
	assert_clean();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Hooks called directly, host writes                                  */

extern const struct ccvm_backend_ops ccvm_tdx_backend_ops;

START_TEST(test_hooks_refuse_misuse)
{
	const struct ccvm_backend_ops *ops = &ccvm_tdx_backend_ops;
	uint64_t pfn;
	int err;

	/* An S-EPT page freed while the HKID is held (I15). */
	td_up(1, false);
	ck_assert_int_eq(ccvm_page_alloc(T.p, &pfn), 0);
	ck_assert_int_eq(ops->free_private_spt(T.vm, 0, 2, pfn), -EINVAL);
	ck_assert(ccvm_vm_is_bugged(T.vm));
	close_all();
	ccvm_page_free(T.p, pfn);
	assert_clean();

	/* A gfn with the shared bit never reaches the S-EPT (I29). */
	T.vm = td_vm_create(T.p, 48, &err);
	ck_assert_int_eq(err, 0);
	T.vm_open = true;
	ck_assert_int_eq(ops->set_private_spte(T.vm, (1ull << 47) >> 12, CCVM_LEVEL_4K, 1),
			 -EINVAL);
	ck_assert(ccvm_vm_is_bugged(T.vm));
	close_vm();
	assert_clean();

	/* Private leaves are 4K or 2M, and 2M only by PAGE.AUG (I8). */
	T.vm = td_vm_create(T.p, 48, &err);
	ck_assert_int_eq(err, 0);
	T.vm_open = true;
	ck_assert_int_eq(ops->remove_private_spte(T.vm, 0, CCVM_LEVEL_2M + 1, 1), -EINVAL);
	ck_assert(ccvm_vm_is_bugged(T.vm));
	close_vm();
	assert_clean();
	T.vm = td_vm_create(T.p, 48, &err);
	ck_assert_int_eq(err, 0);
	T.vm_open = true;
	/* Before finalize (PAGE.ADD): 4K only. */
	ck_assert_int_eq(ops->set_private_spte(T.vm, 0, CCVM_LEVEL_2M, 0), -EINVAL);
	ck_assert(ccvm_vm_is_bugged(T.vm));
	ck_assert_int_eq(ops->max_mapping_level(T.vm, 1, true), CCVM_LEVEL_4K);
	ck_assert_int_eq(ops->max_mapping_level(T.vm, 1, false), 0);
	close_vm();
	assert_clean();
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_RANGE_BLOCK) + pev(CCVM_EV_TDH_MEM_PAGE_AUG), 0);
}
END_TEST

static void guest_read_one(struct ccvm_guest *g, void *arg)
{
	uint8_t buf[8];

	ccvm_guest_sync(g, 1);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, *(uint64_t *)arg, buf, sizeof(buf)) == 0);
	ccvm_guest_sync(g, 2);
}

/* A host write to a private page breaks it: the guest's next access is #MC. */
START_TEST(test_host_write_poisons)
{
	struct fill_arg a;
	uint64_t gpa = 0x10000, pfn;
	uint8_t junk[16] = { 1 };
	int level;

	td_up(2, false);
	guest_map_pages(gpa, 1, &a);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(T.vm, gpa, &pfn, &level), 0);
	ck_assert_int_eq(ccvm_host_write_phys(T.p, pfn, 0, junk, sizeof(junk)), 0);
	ck_assert_uint_eq(ccvm_tdx_nr_poisoned(T.m), 1);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[1], guest_read_one, &gpa), 0);
	expect_sync(T.v[1], 1, NULL);
	ck_assert_int_eq(ccvm_vcpu_run(T.v[1]), -EIO);
	ck_assert(ccvm_vm_is_dead(T.vm));
	close_all();
	assert_clean();
}
END_TEST

/* ------------------------------------------------------------------ */

Suite *tdx_guest_suite(void)
{
	Suite *s = suite_create("tdx_guest");
	TCase *tc;

	tc = tcase_create("guest");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_accept_and_ve);
	tcase_add_test(tc, test_conversion_punch);
	tcase_add_test(tc, test_conversion_keep_backing);
	tcase_add_test(tc, test_shared_alias);
	tcase_add_test(tc, test_host_write_poisons);
	tcase_add_test(tc, test_hooks_refuse_misuse);
	suite_add_tcase(s, tc);
	return s;
}
