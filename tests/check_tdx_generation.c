/* SPDX-License-Identifier: MIT */
/*
 * Tests for the memslot generation wrap on a TD (backends/tdx/tdx.c and
 * the core's fast zap): thousands of wraps with private and shared faults
 * between the memslot updates keep one mirror root, the same, held by the
 * MMU and every vCPU, while direct roots come and go (I28).  The TD fixture
 * is tdx_fixture.h.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <check.h>

#include "tdx_fixture.h"

/* ------------------------------------------------------------------ */
/* Memslot generation wrap (I28)                                       */

struct root_census {
	int mirror, direct_valid, direct_invalid;
	struct ccvm_root *mirror_root;
	long mirror_refs;
};

static struct root_census roots_of(struct ccvm_vm *vm)
{
	struct root_census c = { 0 };
	struct ccvm_root *r;
	unsigned int shard;

	shard = ccvm_brlock_rdlock(&vm->mmu_lock);
	for (r = vm->mmu.roots; r; r = r->next) {
		if (r->mirror) {
			c.mirror++;
			c.mirror_root = r;
			c.mirror_refs = atomic_load(&r->refcount);
			ck_assert(!atomic_load(&r->invalid));
		} else if (atomic_load(&r->invalid)) {
			c.direct_invalid++;
		} else {
			c.direct_valid++;
		}
	}
	ccvm_brlock_rdunlock(&vm->mmu_lock, shard);
	return c;
}

START_TEST(test_generation_wrap)
{
	enum { WRAPS = 3000 };
	uint8_t *extra = aligned_alloc(PG, 16 * PG);
	struct root_census c;
	struct ccvm_root *m0;
	uint64_t gpa, size, fast0;
	int i;

	ck_assert_ptr_nonnull(extra);
	td_up(2, false);
	tu_set_attr(T.vm, 3 * MIB, MIB, 0);	/* shared pages for the direct root */
	gpa = 0;
	size = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(T.v[0], &gpa, &size), 0);
	gpa = 3 * MIB;
	size = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(T.v[1], &gpa, &size), 0);
	c = roots_of(T.vm);
	ck_assert_int_eq(c.mirror, 1);
	m0 = c.mirror_root;
	fast0 = pev(CCVM_EV_FAST_ZAP);

	for (i = 0; i < WRAPS; i++) {
		struct ccvm_vcpu *v = T.v[i & 1];

		ck_assert_int_eq(ccvm_vm_force_generation_wrap(T.vm), 0);
		tu_plain_slot(T.vm, 5, 64 * MIB, 16 * PG, extra);
		ck_assert_uint_eq(ccvm_vm_memslot_generation(T.vm), 0);
		/* A private and a shared fault between the updates. */
		gpa = (uint64_t)(i % 512) * PG;
		size = PG;
		ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
		gpa = 3 * MIB + (uint64_t)(i % 256) * PG;
		size = PG;
		ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
		ck_assert_int_eq(tu_region(T.vm, 5, 0, 64 * MIB, 0, NULL, NULL, 0), 0);

		c = roots_of(T.vm);
		/* One mirror root, the same, held by the MMU and both vCPUs. */
		ck_assert_int_eq(c.mirror, 1);
		ck_assert_ptr_eq(c.mirror_root, m0);
		ck_assert_int_eq(c.mirror_refs, 3);
		ck_assert_ptr_eq(T.v[0]->mirror_root, m0);
		ck_assert_ptr_eq(T.v[1]->mirror_root, m0);
		ck_assert_int_le(c.direct_valid, 1);
		/* An invalid direct root lives only while the other vCPU holds it. */
		ck_assert_int_le(c.direct_invalid, 1);
	}
	ck_assert_uint_eq(pev(CCVM_EV_FAST_ZAP) - fast0, WRAPS);
	ck_assert(!ccvm_vm_is_bugged(T.vm));
	check_invariants();
	close_all();
	ck_assert_uint_eq(pev(CCVM_EV_ROOT_ALLOC), pev(CCVM_EV_ROOT_FREE));
	assert_clean();
	free(extra);
}
END_TEST

/* ------------------------------------------------------------------ */

Suite *tdx_generation_suite(void)
{
	Suite *s = suite_create("tdx_generation");
	TCase *tc;

	tc = tcase_create("generation_wrap");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_generation_wrap);
	suite_add_tcase(s, tc);
	return s;
}
