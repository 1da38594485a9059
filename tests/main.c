/* SPDX-License-Identifier: MIT */
/*
 * The single Check runner: every suite of tests/check_*.c.
 *
 * Tests run in Check's fork mode (the default), so a crash, a leak or a
 * sanitizer report is blamed on one test and the others still run.
 * Check's environment variables apply: CK_RUN_SUITE / CK_RUN_CASE select
 * one suite / test case, CK_FORK=no runs in-process for a debugger,
 * CK_VERBOSITY=verbose names every test, CK_TIMEOUT_MULTIPLIER stretches
 * timeouts (the Makefile sets it for sanitizer builds).
 */
#include <stdio.h>
#include <stdlib.h>

#include <check.h>

/*
 * Every suite, one line each: add new suites here, sorted.  SUITE(area)
 * names the constructor area_suite() of tests/check_<area>.c.
 */
#define CCVM_TEST_SUITES(SUITE) \
	SUITE(attr) \
	SUITE(backend) \
	SUITE(badinput) \
	SUITE(conformance) \
	SUITE(errors) \
	SUITE(explore) \
	SUITE(faultsweep) \
	SUITE(folio) \
	SUITE(gmem) \
	SUITE(guest) \
	SUITE(inplace) \
	SUITE(invariants) \
	SUITE(memslot) \
	SUITE(mmu) \
	SUITE(mutants) \
	SUITE(platform) \
	SUITE(sched) \
	SUITE(sched_lib) \
	SUITE(snp) \
	SUITE(snp_folio) \
	SUITE(snp_hw) \
	SUITE(stress) \
	SUITE(studies) \
	SUITE(tdx_busy) \
	SUITE(tdx_generation) \
	SUITE(tdx_guest) \
	SUITE(tdx_huge) \
	SUITE(tdx_lifecycle) \
	SUITE(tdx_module) \
	SUITE(tdx_teardown) \
	SUITE(trace) \
	SUITE(twins) \
	SUITE(vcpu) \
	SUITE(xarray) \
	/* end of the suite list */

#define DECLARE_SUITE(area) Suite *area##_suite(void);
CCVM_TEST_SUITES(DECLARE_SUITE)

#define SUITE_CONSTRUCTOR(area) area##_suite,
static Suite *(*const suite_constructors[])(void) = {
	CCVM_TEST_SUITES(SUITE_CONSTRUCTOR)
};

/*
 * Check's own default of 4 s is too short for sanitizer builds on a busy
 * 2-core machine.  tcase_create() reads the variable, so it must be set
 * before any suite is built; an explicit caller value wins.
 */
#define DEFAULT_TIMEOUT_SECONDS "60"

int main(void)
{
	SRunner *runner;
	size_t i;
	int tests_run, tests_failed;

	if (setenv("CK_DEFAULT_TIMEOUT", DEFAULT_TIMEOUT_SECONDS, 0)) {
		perror("setenv");
		return EXIT_FAILURE;
	}

	runner = srunner_create(NULL);
	for (i = 0; i < sizeof(suite_constructors) / sizeof(suite_constructors[0]); i++)
		srunner_add_suite(runner, suite_constructors[i]());

	srunner_run_all(runner, CK_ENV);
	tests_run = srunner_ntests_run(runner);
	tests_failed = srunner_ntests_failed(runner);
	srunner_free(runner);

	/* A misspelt CK_RUN_SUITE or CK_RUN_CASE must not pass silently. */
	if (tests_run == 0) {
		fprintf(stderr, "no test ran: check CK_RUN_SUITE / CK_RUN_CASE\n");
		return EXIT_FAILURE;
	}
	return tests_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
