/* SPDX-License-Identifier: MIT */
/*
 * The studies' outcomes (studies/, docs/studies/), asserted on every run:
 * each study's scenario, linked in from studies/, must show the bad
 * behaviour under the code under review and the good one under the merged
 * code.  Also the study-knob calls themselves (include/ccvm/ccvm.h).
 */
#include <errno.h>
#include <stdint.h>

#include <check.h>

#include "study.h"
#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Study knobs                                                         */

static struct ccvm_vm *knob_vm(const char *backend, struct ccvm_platform **p)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = backend, .mem_bytes = 64 << 20);
	struct ccvm_vm *vm;

	ck_assert_int_eq(ccvm_platform_create(&po, p), 0);
	ck_assert_int_eq(ccvm_vm_create(*p, NULL, &vm), 0);
	return vm;
}

START_TEST(test_knob_bad_input)
{
	struct ccvm_platform *p;
	struct ccvm_vm *vm = knob_vm("tdx", &p);
	uint32_t v = 7;
	unsigned int k;

	ck_assert_int_eq(ccvm_vm_set_study_knob(NULL, CCVM_STUDY_MIRROR_RELOAD, 1), -EINVAL);
	ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_NR_KNOBS, 0), -EINVAL);
	ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_MIRROR_RELOAD, 2), -EINVAL);
	ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_GMEM_DEFER_REMOVAL, 9), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_study_knob(NULL, 0, &v), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_study_knob(vm, 0, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_study_knob(vm, CCVM_STUDY_NR_KNOBS, &v), -EINVAL);
	/* Nothing changed: every knob is still what upstream merged. */
	for (k = 0; k < CCVM_STUDY_NR_KNOBS; k++) {
		ck_assert_int_eq(ccvm_vm_get_study_knob(vm, k, &v), 0);
		ck_assert_uint_eq(v, 0);
	}
	ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_MIRROR_RELOAD,
						CCVM_MIRROR_RELOAD_V3), 0);
	ck_assert_int_eq(ccvm_vm_get_study_knob(vm, CCVM_STUDY_MIRROR_RELOAD, &v), 0);
	ck_assert_uint_eq(v, CCVM_MIRROR_RELOAD_V3);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

/* A knob for behaviour a backend does not have is -EOPNOTSUPP. */
START_TEST(test_knob_not_supported)
{
	static const char *const backends[] = { "mock", "snp" };
	unsigned int i;

	for (i = 0; i < 2; i++) {
		struct ccvm_platform *p;
		struct ccvm_vm *vm = knob_vm(backends[i], &p);
		uint32_t v = 5;

		ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_MIRROR_RELOAD, 1),
				 -EOPNOTSUPP);
		ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_GMEM_DEFER_REMOVAL, 1),
				 -EOPNOTSUPP);
		/* Not even the merged value: the knob does not exist there. */
		ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_GMEM_DEFER_REMOVAL, 0),
				 -EOPNOTSUPP);
		ck_assert_int_eq(ccvm_vm_get_study_knob(vm, CCVM_STUDY_MIRROR_RELOAD, &v), 0);
		ck_assert_uint_eq(v, 0);
		ck_assert_int_eq(ccvm_vm_close(vm), 0);
		ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Study 001: mirror root and the generation wrap                      */

#define S001_VCPUS	3

/* v3: every wrap leaks one reference per vCPU; teardown leaks the root. */
START_TEST(test_s001_v3_leaks)
{
	struct s001_result r[3];
	unsigned int wraps[3] = { 1, 2, 5 }, i;
	const char *what;

	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(s001_run(CCVM_MIRROR_RELOAD_V3, S001_VCPUS, wraps[i], true,
					  NULL, &r[i], &what), 0);
		ck_assert_uint_eq(r[i].mirror_roots, 1);
		ck_assert_uint_eq(r[i].mirror_refs, 1 + S001_VCPUS + S001_VCPUS * wraps[i]);
		ck_assert_uint_eq(r[i].broken_invariant, 28);
		ck_assert_uint_eq(r[i].roots_leaked, 1);
		ck_assert_uint_gt(r[i].pages_leaked, 0);
	}
	/* One more S-EPT table per round, all lost with the root. */
	ck_assert_uint_gt(r[1].pages_leaked, r[0].pages_leaked);
	ck_assert_uint_eq(r[2].pages_leaked - r[1].pages_leaked, 3);
}
END_TEST

/* v3 without a wrap: no reload replaces the direct root, nothing leaks. */
START_TEST(test_s001_v3_no_wrap)
{
	struct s001_result r;
	const char *what;

	ck_assert_int_eq(s001_run(CCVM_MIRROR_RELOAD_V3, S001_VCPUS, 4, false, NULL, &r,
				  &what), 0);
	ck_assert_uint_eq(r.mirror_refs, 1 + S001_VCPUS);
	ck_assert_uint_eq(r.broken_invariant, 0);
	ck_assert_uint_eq(r.roots_leaked, 0);
	ck_assert_uint_eq(r.pages_leaked, 0);
}
END_TEST

/* The merged code: one mirror root held by the MMU and each vCPU. */
START_TEST(test_s001_merged_one_root)
{
	struct s001_result r;
	const char *what;

	ck_assert_int_eq(s001_run(CCVM_MIRROR_RELOAD_MERGED, S001_VCPUS, 5, true, NULL, &r,
				  &what), 0);
	ck_assert_uint_eq(r.mirror_roots, 1);
	ck_assert_uint_eq(r.direct_roots, 1);
	ck_assert_uint_eq(r.mirror_refs, 1 + S001_VCPUS);
	ck_assert_uint_eq(r.broken_invariant, 0);
	ck_assert_uint_eq(r.roots_leaked, 0);
	ck_assert_uint_eq(r.pages_leaked, 0);
}
END_TEST

Suite *studies_suite(void)
{
	Suite *s = suite_create("studies");
	TCase *tc = tcase_create("knobs");

	tcase_add_test(tc, test_knob_bad_input);
	tcase_add_test(tc, test_knob_not_supported);
	suite_add_tcase(s, tc);
	tc = tcase_create("s001");
	tcase_add_test(tc, test_s001_v3_leaks);
	tcase_add_test(tc, test_s001_v3_no_wrap);
	tcase_add_test(tc, test_s001_merged_one_root);
	suite_add_tcase(s, tc);
	return s;
}
