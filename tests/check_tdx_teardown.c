/* SPDX-License-Identifier: MIT */
/*
 * Tests for TD teardown on the tdx backend (backends/tdx/tdx.c): every
 * order of closing two gmem files, two vCPUs and the VM handle, with
 * removal as it goes, with deferral and after terminate; the deferral limit;
 * HKID release failures (VP.FLUSH, a resumed CACHE.WB) and a RECLAIM that
 * fails and leaks.  The removal and HKID release orders are read from an
 * event trace of the SEAMCALLs (I12-I18); the TD fixture is tdx_fixture.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "tdx_fixture.h"

/* ------------------------------------------------------------------ */
/* fd-close orders: which teardown path runs, and nothing leaks        */

enum close_mode { MODE_DYNAMIC, MODE_DEFER, MODE_TERMINATE, NR_MODES };
#define NR_ITEMS	5	/* gmem 0, gmem 1, vCPU 0, vCPU 1, the VM handle */
#define NR_PERMS	120

static void perm_of(unsigned int k, int out[NR_ITEMS])
{
	int items[NR_ITEMS] = { 0, 1, 2, 3, 4 }, n = NR_ITEMS, i, j;

	for (i = 0; i < NR_ITEMS; i++) {
		unsigned int f = 1;

		for (j = 2; j < n; j++)
			f *= (unsigned int)j;
		j = (int)(k / f);
		k %= f;
		out[i] = items[j];
		memmove(items + j, items + j + 1, (size_t)(n - j - 1) * sizeof(int));
		n--;
	}
}

static void close_order_one(enum close_mode mode, unsigned int perm)
{
	struct fill_arg a0 = { .gpa = 0x20000, .n = 24, .salt = 1 };
	struct fill_arg a1 = { .gpa = SLOT1_GPA + 0x1000, .n = 16, .salt = 2 };
	uint64_t seen[64], leaves, ept, block0, reclaim0;
	uint8_t src[4 * PG];
	int order[NR_ITEMS], i;

	td_build(2, true);
	memset(src, 0x33, sizeof(src));
	ck_assert_int_eq(ccvm_vm_populate(T.vm, 0, src, sizeof(src), 0), 0);
	ck_assert_int_eq(ccvm_vm_finalize(T.vm), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[0], guest_accept_fill, &a0), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[1], guest_accept_fill, &a1), 0);
	expect_sync(T.v[0], 1, NULL);
	expect_sync(T.v[1], 1, NULL);
	leaves = check_sept_mirror(SLOT0_GPA, SLOT0_SIZE / PG) +
		 check_sept_mirror(SLOT1_GPA, SLOT1_SIZE / PG);
	ck_assert_uint_eq(leaves, 4 + 24 + 16);
	ept = sept_pages_reachable(SLOT0_GPA, SLOT1_GPA + SLOT1_SIZE, seen, 64);
	check_td_pages(leaves, ept);

	if (mode == MODE_DEFER)
		ck_assert_int_eq(ccvm_vm_set_study_knob(T.vm, CCVM_STUDY_GMEM_DEFER_REMOVAL,
								 CCVM_GMEM_DEFER_RFC), 0);
	if (mode == MODE_TERMINATE) {
		ck_assert_int_eq(ccvm_vm_terminate(T.vm), 0);
		ck_assert(!ccvm_tdx_hkid_assigned(T.vm));
		ck_assert_int_eq(ccvm_vcpu_run(T.v[0]), -EIO);
	}
	block0 = pev(CCVM_EV_TDH_MEM_RANGE_BLOCK);
	reclaim0 = pev(CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM);
	perm_of(perm, order);
	for (i = 0; i < NR_ITEMS; i++) {
		switch (order[i]) {
		case 0:
		case 1:
			close_gmem(order[i]);
			break;
		case 2:
		case 3:
			close_vcpu(order[i] - 2);
			break;
		default:
			close_vm();
			break;
		}
	}
	if (mode == MODE_DYNAMIC) {
		/* The gmem files keep the VM, so its HKID, until they are gone. */
		ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_RANGE_BLOCK) - block0, leaves);
		ck_assert_uint_eq(pev(CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM) - reclaim0,
				  NR_CONTROL_TD + 2 * NR_CONTROL_VCPU + ept);
	} else {
		ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_RANGE_BLOCK) - block0, 0);
		ck_assert_uint_eq(pev(CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM) - reclaim0,
				  leaves + NR_CONTROL_TD + 2 * NR_CONTROL_VCPU + ept);
	}
	assert_clean();
	for (i = 0; i < 2; i++) {
		free(T.shared[i]);
		T.shared[i] = NULL;
	}
	T.nr_v = 0;
}

START_TEST(test_close_orders)
{
	unsigned int perm;

	for (perm = 0; perm < NR_PERMS; perm++)
		close_order_one((enum close_mode)_i, perm);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MNG_KEY_FREEID), NR_PERMS);
	ck_assert_uint_eq(pev(CCVM_EV_KEYID_FREE), NR_PERMS);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Terminate, deferral, HKID release failures                          */

static void guest_spin(struct ccvm_guest *g, void *arg)
{
	struct tu_event *started = arg;
	uint8_t buf[8];

	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0x50000, PG) == 0);
	tu_event_set(started, 1);
	/* Until the TD is gone under it. */
	while (ccvm_guest_read(g, 0x50000, buf, sizeof(buf)) == 0)
		;
}

START_TEST(test_terminate)
{
	struct fill_arg a = { .gpa = 0x10000, .n = 16, .salt = 8 };
	struct tu_event started = TU_EVENT_INIT;
	struct tu_run sr;
	struct ccvm_vcpu *v;
	uint64_t leaves, reclaim0;
	pthread_t th;

	td_up(2, false);
	guest_map_pages(a.gpa, a.n, &a);
	/* vCPU 1 runs in the guest on its own thread while the TD is terminated. */
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[1], guest_spin, &started), 0);
	sr = (struct tu_run){ .v = T.v[1] };
	ck_assert_int_eq(pthread_create(&th, NULL, tu_run_thread, &sr), 0);
	tu_event_wait(&started, 1);
	leaves = check_sept_mirror(SLOT0_GPA, SLOT0_SIZE / PG);
	ck_assert_uint_eq(leaves, 17);

	trace_start();
	ck_assert_int_eq(ccvm_vm_terminate(T.vm), 0);
	pthread_join(th, NULL);
	ck_assert_int_eq(sr.ret, -EIO);
	ck_assert(ccvm_vm_is_dead(T.vm));
	ck_assert(!ccvm_vm_is_bugged(T.vm));
	ck_assert(!ccvm_tdx_hkid_assigned(T.vm));
	ck_assert_int_eq(ccvm_tdx_td_lifecycle(ccvm_tdx_vm_td(T.vm)), CCVM_TDX_TD_TEARDOWN);
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(T.m), 0);
	ck_assert_int_eq(ccvm_vm_terminate(T.vm), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_run(T.v[0]), -EIO);
	ck_assert_int_eq(ccvm_vcpu_create(T.vm, 5, &v), -EIO);

	/* The gmem release now takes every page by RECLAIM. */
	reclaim0 = pev(CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM);
	close_gmem(0);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM) - reclaim0, leaves);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_RANGE_BLOCK), 0);
	close_all();
	trace_stop();
	check_release_order(2);
	trace_free();
	assert_clean();
}
END_TEST

/* At most 64 inodes per TD are pinned; the 65th is zapped at once. */
START_TEST(test_defer_limit)
{
	enum { NR = CCVM_TDX_MAX_GMEM_INODES + 1 };
	struct ccvm_gmem *g[NR];
	uint64_t gpa, size, block0, reclaim0, seen[64], ept;
	int i;

	td_up(1, false);
	ck_assert_int_eq(ccvm_vm_set_study_knob(T.vm, CCVM_STUDY_GMEM_DEFER_REMOVAL,
							 CCVM_GMEM_DEFER_RFC), 0);
	for (i = 0; i < NR; i++) {
		g[i] = tu_gmem(T.vm, 2 * PG, 0);
		gpa = 16 * MIB + (uint64_t)i * 2 * PG;
		tu_gmem_slot(T.vm, (uint32_t)(10 + i), gpa, 2 * PG, g[i], 0);
		tu_set_attr(T.vm, gpa, 2 * PG, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
		size = 2 * PG;
		ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(T.v[0], &gpa, &size), 0);
		ck_assert_uint_eq(size, 0);
	}
	ck_assert_uint_eq(check_sept_mirror(16 * MIB, 2 * NR), 2 * NR);
	ept = sept_pages_reachable(16 * MIB, 2 * MIB, seen, 64);
	ck_assert_uint_eq(ept, 3);
	block0 = pev(CCVM_EV_TDH_MEM_RANGE_BLOCK);
	for (i = 0; i < NR; i++)
		ck_assert_int_eq(ccvm_gmem_close(g[i]), 0);
	ck_assert_uint_eq(ccvm_tdx_nr_deferred(T.vm), CCVM_TDX_MAX_GMEM_INODES);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_RANGE_BLOCK) - block0, 2);
	/* The deferred pages stay mapped until the HKID is gone. */
	ck_assert_uint_eq(check_sept_mirror(16 * MIB, 2 * NR), 2 * (NR - 1));
	reclaim0 = pev(CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM);
	close_all();
	ck_assert_uint_eq(pev(CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM) - reclaim0,
			  2 * (NR - 1) + NR_CONTROL_TD + NR_CONTROL_VCPU + ept);
	assert_clean();
}
END_TEST

/* VP.FLUSH fails: VPFLUSHDONE refuses, the HKID and the TD's pages leak. */
START_TEST(test_hkid_release_failure)
{
	struct fill_arg a;
	struct ccvm_stats st;
	struct ccvm_vm *vm2;
	uint64_t assigned;
	int err;

	td_up(1, false);
	guest_map_pages(0x10000, 4, &a);
	assigned = ccvm_tdx_pamt_nr_assigned(T.m);
	ck_assert_int_eq(ccvm_vm_set_study_knob(T.vm, CCVM_STUDY_GMEM_DEFER_REMOVAL,
							 CCVM_GMEM_DEFER_RFC), 0);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_VP_FLUSH, 0,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TDVPR, 0), 0);
	close_all();
	st = tu_pstats(T.p);
	ck_assert_uint_eq(st.events[CCVM_EV_KEYID_LEAK], 1);
	ck_assert_uint_eq(st.events[CCVM_EV_TDH_MNG_KEY_FREEID], 0);
	ck_assert_uint_eq(st.events[CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM], 0);
	/* Every page the TD owned is lost for good, and counted. */
	ck_assert_uint_eq(st.leaked_pages, assigned);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(T.m), assigned);
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(T.m), 1);
	ck_assert_uint_eq(st.free_pages + assigned, T.free0);
	/* Another TD still gets another HKID. */
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_VP_FLUSH, 0, 0, 0), 0);
	vm2 = td_vm_create(T.p, 48, &err);
	ck_assert_int_eq(err, 0);
	ck_assert_int_eq(ccvm_vm_close(vm2), 0);
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(T.m), 1);
}
END_TEST

START_TEST(test_cache_wb_resumable)
{
	ck_assert_int_eq(ccvm_tdx_set_cache_wb_steps(T.m, 3), 0);
	td_up(2, false);
	close_all();
	ck_assert_uint_eq(pev(CCVM_EV_TDH_PHYMEM_CACHE_WB), 3 * ccvm_tdx_nr_packages(T.m));
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MNG_KEY_FREEID), 1);
	assert_clean();
}
END_TEST

/* A removal refused twice at teardown: RECLAIM fails, the page leaks (I18). */
START_TEST(test_reclaim_failure_leaks)
{
	struct fill_arg a;

	td_up(1, false);
	guest_map_pages(0x10000, 4, &a);
	ck_assert_int_eq(ccvm_vm_terminate(T.vm), 0);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_PHYMEM_PAGE_RECLAIM, 2,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_RCX, 1), 0);
	close_all();
	/* The page stays leaked; the TD let go of it at its last reclaim pass. */
	ck_assert_uint_eq(tu_pstats(T.p).leaked_pages, 1);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(T.m), 0);
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(T.m), 0);
	ck_assert_uint_eq(tu_free_pages(T.p), T.free0 - 1);
}
END_TEST

/* ------------------------------------------------------------------ */

Suite *tdx_teardown_suite(void)
{
	Suite *s = suite_create("tdx_teardown");
	TCase *tc;

	tc = tcase_create("teardown");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_close_orders, 0, NR_MODES);
	tcase_add_test(tc, test_terminate);
	tcase_add_test(tc, test_defer_limit);
	tcase_add_test(tc, test_hkid_release_failure);
	tcase_add_test(tc, test_cache_wb_resumable);
	tcase_add_test(tc, test_reclaim_failure_leaks);
	suite_add_tcase(s, tc);
	return s;
}
