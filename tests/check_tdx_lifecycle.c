/* SPDX-License-Identifier: MIT */
/*
 * Tests for a TD's life on the tdx backend (backends/tdx/tdx.c) through the
 * public API: KVM_TDX_INIT_VM for every GPA width and its unwinding when a
 * leaf fails, HKID exhaustion, vCPUs, launch (populate, measure, finalize)
 * and the memory the model itself uses.  Each test ends with nothing of the
 * TD left: pages, PAMT entries, HKIDs (I13-I18).  The TD fixture is
 * tdx_fixture.h.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <check.h>

#include "tdx_fixture.h"

/* ------------------------------------------------------------------ */
/* KVM_TDX_INIT_VM, HKIDs, vCPUs                                       */

START_TEST(test_create_destroy)
{
	struct ccvm_tdx_td *td;
	struct census c;
	uint32_t pk = ccvm_tdx_nr_packages(T.m);
	int err;

	T.vm = td_vm_create(T.p, 48, &err);
	ck_assert_int_eq(err, 0);
	T.vm_open = true;
	td = ccvm_tdx_vm_td(T.vm);
	ck_assert_ptr_nonnull(td);
	ck_assert(ccvm_tdx_hkid_assigned(T.vm));
	ck_assert_int_eq(ccvm_tdx_td_lifecycle(td), CCVM_TDX_TD_KEYS_CONFIGURED);
	ck_assert_int_eq(ccvm_tdx_td_op_state(td), CCVM_TDX_OP_INITIALIZED);
	ck_assert_uint_eq(ccvm_tdx_td_shared_bit(td), ccvm_vm_shared_bit(T.vm));
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(T.m), 1);
	ck_assert_uint_eq(pk, 2);
	c = pamt_census(ccvm_tdx_td_tdr_pfn(td));
	ck_assert_uint_eq(c.by_type[CCVM_TDX_PT_TDR], 1);
	ck_assert_uint_eq(c.by_type[CCVM_TDX_PT_TDCX], CCVM_TDX_NR_TDCS);
	ck_assert_uint_eq(c.total, NR_CONTROL_TD);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MNG_CREATE), 1);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MNG_KEY_CONFIG), pk);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MNG_ADDCX), CCVM_TDX_NR_TDCS);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MNG_INIT), 1);
	ck_assert_uint_eq(tu_free_pages(T.p), T.free0 - NR_CONTROL_TD);

	trace_start();
	close_vm();
	trace_stop();
	check_release_order(0);
	trace_free();
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MNG_VPFLUSHDONE), 1);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_PHYMEM_CACHE_WB), pk);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MNG_KEY_FREEID), 1);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM), NR_CONTROL_TD);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_PHYMEM_PAGE_WBINVD), 1);
	ck_assert_uint_eq(pev(CCVM_EV_TDX_ERROR), 0);
	assert_clean();
}
END_TEST

static const uint32_t gpa_bits_cases[] = { 36, 40, 47, 48, 51, 52 };

START_TEST(test_create_gpa_bits)
{
	uint32_t bits = gpa_bits_cases[_i];
	struct ccvm_vm *vm;
	int err;

	vm = td_vm_create(T.p, bits, &err);
	if (bits != 48 && bits != 52) {
		/* The S-EPT has 4 or 5 levels: nothing else is a TD. */
		ck_assert_int_eq(err, -EINVAL);
		assert_clean();
		ck_assert_uint_eq(pev(CCVM_EV_TDH_MNG_CREATE), 0);
		return;
	}
	ck_assert_int_eq(err, 0);
	ck_assert_uint_eq(ccvm_vm_shared_bit(vm), 1ull << (bits - 1));
	ck_assert_uint_eq(ccvm_tdx_td_shared_bit(ccvm_tdx_vm_td(vm)), 1ull << (bits - 1));
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	assert_clean();
}
END_TEST

START_TEST(test_hkid_exhaustion)
{
	struct ccvm_vm *vm[3];
	uint64_t free_before;
	uint32_t hkid0;
	int err;

	ck_assert_int_eq(ccvm_platform_destroy(T.p), 0);
	T.p = platform_new(2);
	T.m = ccvm_tdx_module_of(T.p);
	T.free0 = tu_free_pages(T.p);

	vm[0] = td_vm_create(T.p, 48, &err);
	ck_assert_int_eq(err, 0);
	vm[1] = td_vm_create(T.p, 48, &err);
	ck_assert_int_eq(err, 0);
	hkid0 = ccvm_tdx_td_hkid(ccvm_tdx_vm_td(vm[0]));
	ck_assert_uint_ne(hkid0, ccvm_tdx_td_hkid(ccvm_tdx_vm_td(vm[1])));
	free_before = tu_free_pages(T.p);
	ck_assert_ptr_null(td_vm_create(T.p, 48, &err));
	ck_assert_int_eq(err, -ENOSPC);
	/* Nothing taken by the refused one. */
	ck_assert_uint_eq(tu_free_pages(T.p), free_before);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(T.m), 2 * NR_CONTROL_TD);
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(T.m), 2);

	ck_assert_int_eq(ccvm_vm_close(vm[0]), 0);
	vm[2] = td_vm_create(T.p, 48, &err);
	ck_assert_int_eq(err, 0);
	/* Reusable only after KEY.FREEID: it was. */
	ck_assert_uint_eq(ccvm_tdx_td_hkid(ccvm_tdx_vm_td(vm[2])), hkid0);
	ck_assert_int_eq(ccvm_vm_close(vm[1]), 0);
	ck_assert_int_eq(ccvm_vm_close(vm[2]), 0);
	assert_clean();
}
END_TEST

/* Each INIT_VM leaf failing: the errno KVM gives, and nothing left behind. */
static const struct {
	unsigned int leaf;
	uint64_t nth;
	uint64_t status;
	int err;
} init_fail[] = {
	{ CCVM_TDH_MNG_CREATE, 1, TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_KOT, -EBUSY },
	{ CCVM_TDH_MNG_CREATE, 1, TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX, -EINVAL },
	{ CCVM_TDH_MNG_KEY_CONFIG, 1, TDX_RND_NO_ENTROPY, -EAGAIN },
	{ CCVM_TDH_MNG_KEY_CONFIG, 2, TDX_RND_NO_ENTROPY, -EAGAIN },
	{ CCVM_TDH_MNG_ADDCX, 3, TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_RCX, -EIO },
	{ CCVM_TDH_MNG_INIT, 1, TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_ATTRIBUTES, -EINVAL },
	{ CCVM_TDH_MNG_INIT, 1, TDX_RND_NO_ENTROPY, -EAGAIN },
};

START_TEST(test_init_unwind)
{
	struct ccvm_vm *vm;
	int err;

	ck_assert_int_eq(ccvm_tdx_inject(T.m, init_fail[_i].leaf, init_fail[_i].nth,
					 init_fail[_i].status, 1), 0);
	vm = td_vm_create(T.p, 48, &err);
	ck_assert_ptr_null(vm);
	ck_assert_int_eq(err, init_fail[_i].err);
	assert_clean();
	/* Everything the TD got came back through the HKID release. */
	if (init_fail[_i].leaf != CCVM_TDH_MNG_CREATE)
		ck_assert_uint_eq(pev(CCVM_EV_TDH_MNG_KEY_FREEID), 1);
	vm = td_vm_create(T.p, 48, &err);
	ck_assert_int_eq(err, 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	assert_clean();
}
END_TEST

START_TEST(test_vcpu_lifecycle)
{
	struct ccvm_vcpu *v = NULL;
	struct ccvm_tdx_vp *vp;
	uint64_t free_before;

	td_build(2, false);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_VP_CREATE), 2);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_VP_ADDCX), 2 * CCVM_TDX_NR_TDCX);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_VP_INIT), 2);
	vp = ccvm_tdx_vcpu_vp(T.v[1]);
	ck_assert_ptr_nonnull(vp);
	ck_assert(ccvm_tdx_vp_initialized(vp));
	ck_assert_int_eq(ccvm_tdx_vp_cpu(vp), 1);

	/* A failure halfway: pages the TD took wait for the HKID release. */
	free_before = tu_free_pages(T.p);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_VP_ADDCX, 2,
					 TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_RCX, 1), 0);
	ck_assert_int_eq(ccvm_vcpu_create(T.vm, 2, &v), -EIO);
	ck_assert_uint_eq(tu_free_pages(T.p), free_before - 2);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_VP_CREATE, 1,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TDR, 1), 0);
	ck_assert_int_eq(ccvm_vcpu_create(T.vm, 2, &v), -EAGAIN);
	ck_assert_uint_eq(tu_free_pages(T.p), free_before - 2);
	ck_assert_int_eq(ccvm_vcpu_create(T.vm, 2, &T.v[2]), 0);
	T.nr_v = 3;
	ck_assert_int_eq(ccvm_vm_finalize(T.vm), 0);

	/*
	 * After finalize the TD takes no new vCPU: tdx_vcpu_create() wants
	 * it INITIALIZED (issue 16 #10).  Nothing is allocated or called.
	 */
	free_before = tu_free_pages(T.p);
	{
		uint64_t creates = pev(CCVM_EV_TDH_VP_CREATE);

		v = NULL;
		ck_assert_int_eq(ccvm_vcpu_create(T.vm, 3, &v), -EIO);
		ck_assert_ptr_null(v);
		ck_assert_uint_eq(pev(CCVM_EV_TDH_VP_CREATE), creates);
		ck_assert_uint_eq(tu_free_pages(T.p), free_before);
	}

	trace_start();
	close_all();
	trace_stop();
	check_release_order(3);
	trace_free();
	/* TDR, TDCS, three vCPUs and the two orphans. */
	ck_assert_uint_eq(pev(CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM),
			  NR_CONTROL_TD + 3 * NR_CONTROL_VCPU + 2);
	assert_clean();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Launch: populate, measure, finalize                                 */

static void guest_read_populated(struct ccvm_guest *g, void *arg)
{
	struct fill_arg *a = arg;
	uint8_t buf[PG];
	uint64_t i;

	for (i = 0; i < a->n; i++) {
		uint64_t gpa = a->gpa + i * PG;

		/* PAGE.ADD pages are MAPPED: no accept, and accepting is an error. */
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, gpa, buf, PG) == 0);
		CCVM_GUEST_ASSERT(g, page_has(buf, gpa, a->salt));
		CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, gpa, PG) == -EEXIST);
	}
}

START_TEST(test_populate_finalize)
{
	struct fill_arg a = { .gpa = 0x10000, .n = 8, .salt = 3 };
	struct ccvm_tdx_td *td;
	struct ccvm_run *run;
	uint8_t *src, host[PG];
	uint64_t m0, m1, m2, gpa, size, i, pfn;
	int level;

	td_build(1, false);
	td = ccvm_tdx_vm_td(T.vm);
	src = malloc(16 * PG);
	ck_assert_ptr_nonnull(src);
	for (i = 0; i < 16; i++)
		fill(src + i * PG, a.gpa + i * PG, a.salt);

	m0 = ccvm_tdx_td_measurement(td);
	ck_assert_int_eq(ccvm_vm_populate(T.vm, a.gpa, src, 4 * PG, 0), 0);
	m1 = ccvm_tdx_td_measurement(td);
	ck_assert_uint_ne(m0, m1);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MR_EXTEND), 0);
	ck_assert_int_eq(ccvm_vm_populate(T.vm, a.gpa + 4 * PG, src + 4 * PG, 4 * PG,
					  CCVM_POPULATE_MEASURE), 0);
	m2 = ccvm_tdx_td_measurement(td);
	ck_assert_uint_ne(m1, m2);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_PAGE_ADD), 8);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MR_EXTEND), 4 * PG / 256);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_PAGE_AUG), 0);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_SEPT_ADD), 3);	/* 512G, 1G, 2M tables */

	/* Launch rules. */
	ck_assert_int_eq(ccvm_vm_populate(T.vm, a.gpa, src, PG, 0), -EEXIST);
	ck_assert_int_eq(ccvm_vm_populate(T.vm, a.gpa | T.sbit, src, PG, 0), -EINVAL);
	ck_assert_int_eq(ccvm_vm_populate(T.vm, a.gpa + 1, src, PG, 0), -EINVAL);
	gpa = 0x40000;
	size = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(T.v[0], &gpa, &size), -EOPNOTSUPP);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[0], guest_read_populated, &a), 0);
	run = ccvm_vcpu_run_state(T.v[0]);
	ck_assert_int_eq(ccvm_vcpu_run(T.v[0]), -EINVAL);	/* KVM_RUN needs RUNNABLE */
	ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_INTERNAL_ERROR);

	/* MR.FINALIZE busy is the caller's to retry. */
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_MR_FINALIZE, 1,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TDR, 1), 0);
	ck_assert_int_eq(ccvm_vm_finalize(T.vm), -EBUSY);
	ck_assert_int_eq(ccvm_tdx_td_op_state(td), CCVM_TDX_OP_INITIALIZED);
	ck_assert_int_eq(ccvm_vm_finalize(T.vm), 0);
	ck_assert_int_eq(ccvm_tdx_td_op_state(td), CCVM_TDX_OP_RUNNABLE);
	ck_assert_int_eq(ccvm_vm_finalize(T.vm), -EINVAL);
	ck_assert_int_eq(ccvm_vm_populate(T.vm, 0x80000, src, PG, 0), -EINVAL);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_PAGE_ADD), 8);

	expect_done(T.v[0], NULL);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_PAGE_AUG), 0);
	check_invariants();

	/* The host sees ciphertext: no byte of it is the plaintext. */
	ck_assert_int_eq(ccvm_vm_lookup_mapping(T.vm, a.gpa, &pfn, &level), 0);
	ck_assert_int_eq(ccvm_host_read_phys(T.p, pfn, 0, host, PG), 0);
	for (i = 0; i < PG; i++)
		ck_assert_uint_ne(host[i], src[i]);
	free(src);
	close_all();
	assert_clean();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Model memory                                                        */

START_TEST(test_model_bytes)
{
	uint64_t m0 = atomic_load(&T.m->model_bytes), p0 = tu_pstats(T.p).model_bytes;
	uint64_t during, after;
	struct fill_arg a;

	td_up(2, false);
	guest_map_pages(0x10000, 64, &a);
	during = atomic_load(&T.m->model_bytes);
	ck_assert_uint_gt(during, m0);
	ck_assert_uint_gt(tu_pstats(T.p).model_bytes, p0);
	close_all();
	after = atomic_load(&T.m->model_bytes);
	/* TD and vCPU objects are gone; the PAMT pages written stay, counted. */
	ck_assert_uint_lt(after, during);
	ck_assert_uint_gt(after, m0);
	ck_assert_uint_eq((after - m0) % PG, 0);
	ck_assert_uint_le(after - m0, 4 * PG);
	assert_clean();
}
END_TEST

/* ------------------------------------------------------------------ */

Suite *tdx_lifecycle_suite(void)
{
	Suite *s = suite_create("tdx_lifecycle");
	TCase *tc;

	tc = tcase_create("lifecycle");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_create_destroy);
	tcase_add_loop_test(tc, test_create_gpa_bits, 0, (int)CCVM_ARRAY_SIZE(gpa_bits_cases));
	tcase_add_test(tc, test_hkid_exhaustion);
	tcase_add_loop_test(tc, test_init_unwind, 0, (int)CCVM_ARRAY_SIZE(init_fail));
	tcase_add_test(tc, test_vcpu_lifecycle);
	tcase_add_test(tc, test_populate_finalize);
	tcase_add_test(tc, test_model_bytes);
	suite_add_tcase(s, tc);
	return s;
}
