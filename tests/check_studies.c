/* SPDX-License-Identifier: MIT */
/*
 * The studies' outcomes (studies/, docs/studies/), asserted on every run:
 * each study's scenario, linked in from studies/, must show the bad
 * behaviour under the code under review and the good one under the merged
 * code.  Also the study-knob calls themselves (include/ccvm/ccvm.h).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ccvm/explore.h>

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
	ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_SNP_RMP_UPDATE,
						CCVM_SNP_RMP_POSTED), -EOPNOTSUPP);
	ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_HKID_RELEASE, 2), -EINVAL);
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
		if (i == 0)
			ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_SNP_RMP_UPDATE,
								CCVM_SNP_RMP_POSTED), -EOPNOTSUPP);
		else
			ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_SNP_RMP_UPDATE,
								CCVM_SNP_RMP_LOCKED + 1), -EINVAL);
		ck_assert_int_eq(ccvm_vm_get_study_knob(vm, CCVM_STUDY_SNP_RMP_UPDATE, &v), 0);
		ck_assert_uint_eq(v, CCVM_SNP_RMP_MERGED);
		ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_HKID_RELEASE,
							CCVM_HKID_RELEASE_V19), -EOPNOTSUPP);
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

/* ------------------------------------------------------------------ */
/* Study 002: TD shutdown                                              */

static void s002(enum s002_policy pol, unsigned int nv, uint64_t bytes, struct s002_result *r)
{
	struct s002_cfg cfg = { .policy = pol, .nr_vcpus = nv, .bytes = bytes };
	const char *what;

	ck_assert_int_eq(s002_shutdown(&cfg, r, &what), 0);
	ck_assert_uint_eq(r->pages_left, 0);
}

/*
 * The default order removes every page dynamically, each with one kick of
 * every vCPU; the RFC's deferral and terminate-first reclaim every page
 * with one RECLAIM and no removal leaf, and cost less than half.
 */
START_TEST(test_s002_outcomes)
{
	enum { NV = 6 };
	const uint64_t bytes = 8 * STUDY_MIB, pages = bytes >> 12;
	struct ccvm_cost_model cm = { .sz = sizeof(cm) };
	struct s002_result r[S002_NR_POLICIES];
	unsigned int p;

	ccvm_cost_model_default(&cm);
	for (p = 0; p < S002_NR_POLICIES; p++) {
		s002((enum s002_policy)p, NV, bytes, &r[p]);
		/* The platform's clock is its cost model applied to the counts. */
		ck_assert_uint_eq(s002_price(r[p].ev, &cm), r[p].sim_ns);
	}
	ck_assert_uint_eq(r[S002_DYNAMIC].ev[CCVM_EV_TDH_MEM_RANGE_BLOCK], pages);
	ck_assert_uint_eq(r[S002_DYNAMIC].ev[CCVM_EV_TDH_MEM_TRACK], pages);
	ck_assert_uint_eq(r[S002_DYNAMIC].ev[CCVM_EV_TDH_MEM_PAGE_REMOVE], pages);
	ck_assert_uint_eq(r[S002_DYNAMIC].ev[CCVM_EV_IPI], pages + 1);	/* + HKID release */
	ck_assert_uint_eq(r[S002_DYNAMIC].ev[CCVM_EV_KICK_VCPU], (pages + 1) * NV);
	for (p = S002_DEFERRED; p <= S002_TERMINATE; p++) {
		ck_assert_uint_eq(r[p].ev[CCVM_EV_TDH_MEM_RANGE_BLOCK], 0);
		ck_assert_uint_eq(r[p].ev[CCVM_EV_TDH_MEM_PAGE_REMOVE], 0);
		/* Every guest page, its S-EPT tables and the TD's control pages. */
		ck_assert_uint_ge(r[p].ev[CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM], pages);
		ck_assert_uint_lt(2 * r[p].sim_ns, r[S002_DYNAMIC].sim_ns);
	}
	ck_assert_uint_eq(r[S002_DEFERRED].ev[CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM],
			  r[S002_TERMINATE].ev[CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM]);
}
END_TEST

/*
 * The scale divisor of study 002 is exact: every count of a shutdown is
 * affine in the guest size in whole GiB, so runs at 1 and 2 GiB extrapolate
 * to a direct run at 3 GiB count for count.
 */
START_TEST(test_s002_scaling_exact)
{
	/* Deferred differs from terminate only in when the HKID goes. */
	unsigned int p = _i ? S002_TERMINATE : S002_DYNAMIC;
	struct s002_result a, b, c, x;

	s002((enum s002_policy)p, 4, 1 * STUDY_GIB, &a);
	s002((enum s002_policy)p, 4, 2 * STUDY_GIB, &b);
	s002((enum s002_policy)p, 4, 3 * STUDY_GIB, &c);
	ck_assert_int_eq(s002_extrapolate(&a, &b, 1, 3, &x), 0);
	ck_assert_uint_eq(x.pages, c.pages);
	ck_assert_mem_eq(x.ev, c.ev, sizeof(x.ev));
	ck_assert_uint_eq(s002_extrapolate(&a, &b, 1, 600, &x), -EINVAL);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Study 000: HKID release against fd-close order                      */

/*
 * Sequential orders are the same under both rules: the merged order
 * removes every page the slow way, terminate first reclaims every one.
 */
START_TEST(test_s000_orders)
{
	struct s000_result r;
	unsigned int k;

	for (k = 0; k < 2; k++) {
		ck_assert_int_eq(s000_explore(k, S000_GMEM_THEN_VM, 1, 1, true, NULL, &r, NULL), 0);
		ck_assert_uint_eq(r.failure, CCVM_EXPLORE_OK);
		ck_assert_uint_eq(r.removed, 32);
		ck_assert_uint_eq(r.leaked, 0);
		ck_assert_int_eq(s000_explore(k, S000_TERMINATE_FIRST, 1, 1, true, NULL, &r,
					      NULL), 0);
		ck_assert_uint_eq(r.failure, CCVM_EXPLORE_OK);
		ck_assert_uint_eq(r.removed, 0);
		ck_assert_uint_eq(r.reclaimed, r.runs * (32 + 11));
		ck_assert_uint_eq(r.leaked, 0);
	}
}
END_TEST

/*
 * The race, same schedules under both rules: v19's release leaks pages
 * (the module refused removals that met the HKID half released), which
 * the explorer reports; the merged release loses nothing, wherever it
 * lands, and some schedules put it mid-zap.
 */
START_TEST(test_s000_race)
{
	struct s000_result v19, merged, f;
	char *token = NULL;

	study_quiet_log();	/* v19's refusals warn by design */

	ck_assert_int_eq(s000_explore(CCVM_HKID_RELEASE_V19, S000_RACE, 1, 40, false, NULL,
				      &v19, NULL), 0);
	ck_assert_int_eq(s000_explore(CCVM_HKID_RELEASE_MERGED, S000_RACE, 1, 40, false, NULL,
				      &merged, NULL), 0);
	ck_assert_uint_eq(v19.runs, 40);
	ck_assert_uint_gt(v19.bad_runs, 0);
	ck_assert_uint_gt(v19.refused, 0);
	ck_assert_uint_eq(merged.runs, 40);
	ck_assert_uint_eq(merged.bad_runs, 0);
	ck_assert_uint_eq(merged.refused, 0);
	ck_assert_uint_gt(merged.mid_zap_runs, 0);
	/* Every guest page went one way or the other. */
	ck_assert_uint_eq(merged.removed + merged.reclaimed, merged.runs * (32 + 11));
	ck_assert_int_eq(s000_explore(CCVM_HKID_RELEASE_V19, S000_RACE, 1, 40, true, NULL, &f,
				      &token), 0);
	ck_assert_uint_eq(f.failure, CCVM_EXPLORE_FAIL_CHECK);
	ck_assert_ptr_nonnull(token);
	free(token);
	ck_assert_int_eq(s000_explore(CCVM_HKID_RELEASE_MERGED, S000_RACE, 1, 40, true, NULL,
				      &f, NULL), 0);
	ck_assert_uint_eq(f.failure, CCVM_EXPLORE_OK);
}
END_TEST

/*
 * --trace: one schedule of the race written as Chrome trace JSON, with the
 * RECLAIMs of the teardown and the HKID release in it.
 */
START_TEST(test_s000_trace)
{
	char path[] = "/tmp/ccvm-s000-trace-XXXXXX";
	struct s000_result r;
	static char buf[1 << 20];
	size_t n;
	FILE *f;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	close(fd);
	study_quiet_log();
	ck_assert_int_eq(s000_explore(CCVM_HKID_RELEASE_V19, S000_RACE, 1, 1, false, path, &r,
				      NULL), 0);
	ck_assert_uint_eq(r.runs, 1);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	unlink(path);
	buf[n] = 0;
	ck_assert_uint_gt(n, 0);
	ck_assert(!strncmp(buf, "{\"traceEvents\":[", 16));
	ck_assert_ptr_nonnull(strstr(buf, "\"tdh.phymem.page.reclaim\""));
	ck_assert_ptr_nonnull(strstr(buf, "\"records\":"));
	ck_assert(n >= 2 && buf[n - 1] == '\n' && buf[n - 2] == '}');
}
END_TEST

/* ------------------------------------------------------------------ */
/* Study 003: TDX_OPERAND_BUSY policies                                  */

#define S003_BUDGET	40

/*
 * The same schedules of two vCPUs accepting the same pages under each
 * policy: the module answers busy in some of them under every policy;
 * giving up surfaces errors to the VMM (the explorer finds such a run and
 * its token replays it), spinning and the merged unwind surface none.
 */
START_TEST(test_s003_install_accept)
{
	struct s003_result r[S003_NR_POLICIES], f, again;
	char *token = NULL;
	unsigned int k;

	study_quiet_log();
	for (k = 0; k < S003_NR_POLICIES; k++) {
		ck_assert_int_eq(s003_explore(k, S003_INSTALL_ACCEPT, CCVM_EXPLORE_RANDOM, 0, 1,
					      S003_BUDGET, false, NULL, &r[k], NULL), 0);
		ck_assert_uint_eq(r[k].runs, S003_BUDGET);
		ck_assert_uint_gt(r[k].contended_runs, 0);
		ck_assert_uint_gt(r[k].busy, 0);
		ck_assert_uint_eq(r[k].bugged, 0);
		ck_assert_uint_eq(r[k].leaked, 0);
	}
	ck_assert_uint_gt(r[S003_GIVE_UP].errors, 0);
	ck_assert_uint_gt(r[S003_GIVE_UP].bad_runs, 0);
	ck_assert_uint_eq(r[S003_SPIN].errors, 0);
	ck_assert_uint_eq(r[S003_MERGED].errors, 0);
	ck_assert_uint_eq(r[S003_MERGED].bad_runs, 0);
	/* The merged policy retries the fault instead: more fault runs. */
	ck_assert_uint_gt(r[S003_MERGED].fault_retries, 0);

	/* With the checks on: give-up fails, its token replays it; merged passes. */
	ck_assert_int_eq(s003_explore(S003_GIVE_UP, S003_INSTALL_ACCEPT, CCVM_EXPLORE_RANDOM, 0,
				      1, S003_BUDGET, true, NULL, &f, &token), 0);
	ck_assert_uint_eq(f.failure, CCVM_EXPLORE_FAIL_CHECK);
	ck_assert_ptr_nonnull(token);
	ck_assert_int_eq(s003_replay(S003_GIVE_UP, S003_INSTALL_ACCEPT, token, &again), 0);
	ck_assert_uint_eq(again.failure, CCVM_EXPLORE_FAIL_CHECK);
	/* The same schedule under the merged policy: no error (or another path). */
	s003_replay(S003_MERGED, S003_INSTALL_ACCEPT, token, &again);
	ck_assert(again.failure == CCVM_EXPLORE_OK || again.failure == CCVM_EXPLORE_FAIL_DIVERGED);
	free(token);
	ck_assert_int_eq(s003_explore(S003_MERGED, S003_INSTALL_ACCEPT, CCVM_EXPLORE_RANDOM, 0,
				      1, S003_BUDGET, true, NULL, &f, NULL), 0);
	ck_assert_uint_eq(f.failure, CCVM_EXPLORE_OK);
}
END_TEST

/*
 * Removal against guest entry: the VMM converts two mapped pages while the
 * vCPU enters and leaves the guest.  In some schedules a TRACK meets an
 * entry still holding the TD epoch lock, the same ones under every policy.
 * Spinning cannot outlast it (the entry ends when the vCPU runs, which
 * needs the mmu_lock the spinner holds): it runs out at its cap and the
 * removal fails, as it does at once under give-up; both bug the VM and
 * leak the page.  The merged kick ends the entry and the one retry
 * succeeds: one more kick, nothing bad.  The explorer finds a bad
 * schedule under give-up, its token replays it, none under merged.
 */
START_TEST(test_s003_removal_entry)
{
	struct s003_result r[S003_NR_POLICIES], f, again;
	char *token = NULL;
	unsigned int k;

	study_quiet_log();
	for (k = 0; k < S003_NR_POLICIES; k++) {
		ck_assert_int_eq(s003_explore(k, S003_REMOVAL_ENTRY, CCVM_EXPLORE_RANDOM, 0, 1,
					      S003_BUDGET, false, NULL, &r[k], NULL), 0);
		ck_assert_uint_eq(r[k].runs, S003_BUDGET);
		ck_assert_uint_gt(r[k].contended_runs, 0);
		ck_assert_uint_eq(r[k].contended_runs, r[0].contended_runs);
	}
	/* Spin: every contended run spins out at the cap, bugs the VM. */
	ck_assert_uint_eq(r[S003_SPIN].max_busy, CCVM_TDX_BUSY_SPIN_MAX);
	ck_assert_uint_eq(r[S003_SPIN].bad_runs, r[S003_SPIN].contended_runs);
	ck_assert_uint_eq(r[S003_SPIN].bugged, r[S003_SPIN].contended_runs);
	ck_assert_uint_eq(r[S003_SPIN].leaked, r[S003_SPIN].contended_runs);
	/* Give-up: the first busy answer fails the removal. */
	ck_assert_uint_eq(r[S003_GIVE_UP].max_busy, 1);
	ck_assert_uint_eq(r[S003_GIVE_UP].bugged, r[S003_GIVE_UP].contended_runs);
	ck_assert_uint_gt(r[S003_GIVE_UP].leaked, 0);
	/* Merged: kicked out, retried once, nothing lost. */
	ck_assert_uint_eq(r[S003_MERGED].bad_runs, 0);
	ck_assert_uint_eq(r[S003_MERGED].errors, 0);
	ck_assert_uint_eq(r[S003_MERGED].bugged, 0);
	ck_assert_uint_eq(r[S003_MERGED].leaked, 0);
	ck_assert_uint_gt(r[S003_MERGED].kicks, 2u * S003_BUDGET);
	ck_assert_uint_gt(r[S003_MERGED].kicks, r[S003_GIVE_UP].kicks);

	ck_assert_int_eq(s003_explore(S003_GIVE_UP, S003_REMOVAL_ENTRY, CCVM_EXPLORE_RANDOM, 0,
				      1, S003_BUDGET, true, NULL, &f, &token), 0);
	ck_assert_uint_eq(f.failure, CCVM_EXPLORE_FAIL_CHECK);
	ck_assert_ptr_nonnull(token);
	ck_assert_int_eq(s003_replay(S003_GIVE_UP, S003_REMOVAL_ENTRY, token, &again), 0);
	ck_assert_uint_eq(again.failure, CCVM_EXPLORE_FAIL_CHECK);
	s003_replay(S003_MERGED, S003_REMOVAL_ENTRY, token, &again);
	ck_assert(again.failure == CCVM_EXPLORE_OK || again.failure == CCVM_EXPLORE_FAIL_DIVERGED);
	free(token);
	ck_assert_int_eq(s003_explore(S003_MERGED, S003_REMOVAL_ENTRY, CCVM_EXPLORE_RANDOM, 0,
				      1, S003_BUDGET, true, NULL, &f, NULL), 0);
	ck_assert_uint_eq(f.failure, CCVM_EXPLORE_OK);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Study 004: SNP update_mem_attr and the RMPUPDATE-vs-fault race       */

#define S004_BUDGET	100

/*
 * The same budget of schedules under each design: the explorer finds the
 * race under the posted op (and its token replays it), none under the
 * locked variant or the merged design.
 */
START_TEST(test_s004_explorer)
{
	struct s004_result r[S004_NR_DESIGNS], again;
	char *token = NULL, *msg = NULL;
	unsigned int d;

	for (d = 0; d < S004_NR_DESIGNS; d++) {
		ck_assert_int_eq(s004_explore(d, 1, S004_BUDGET, true, NULL, &r[d],
					      d == S004_POSTED ? &token : NULL,
					      d == S004_POSTED ? &msg : NULL), 0);
		ck_assert_uint_gt(r[d].checks, 0);
	}
	ck_assert_uint_eq(r[S004_POSTED].failure, CCVM_EXPLORE_FAIL_CHECK);
	ck_assert_uint_lt(r[S004_POSTED].failed_run, S004_BUDGET);
	ck_assert_ptr_nonnull(token);
	ck_assert_ptr_nonnull(strstr(msg, "RMP nested fault"));
	for (d = S004_LOCKED; d <= S004_MERGED; d++) {
		ck_assert_uint_eq(r[d].failure, CCVM_EXPLORE_OK);
		ck_assert_uint_eq(r[d].explored, S004_BUDGET);
		ck_assert_uint_eq(r[d].racy_runs, 0);
		ck_assert_uint_eq(r[d].rmp_npf, 0);
	}
	/* Deterministic: the token gives the same race again. */
	ck_assert_int_eq(s004_replay(S004_POSTED, token, &again), 0);
	ck_assert_uint_eq(again.failure, CCVM_EXPLORE_FAIL_CHECK);
	free(token);
	free(msg);
}
END_TEST

/*
 * What each design costs where it does not race: the posted and locked
 * ops RMPUPDATE every allocated page at the conversion, the merged design
 * only the page the guest faults in; the locked variant's faults meanwhile
 * are stale and retried.
 */
START_TEST(test_s004_costs)
{
	struct s004_result r[S004_NR_DESIGNS];
	unsigned int d;

	for (d = 0; d < S004_NR_DESIGNS; d++) {
		ck_assert_int_eq(s004_explore(d, 7, 10, false, NULL, &r[d], NULL, NULL), 0);
		ck_assert_uint_eq(r[d].runs, 10);
	}
	/* Context page + VMSA + the page the guest uses. */
	ck_assert_uint_eq(r[S004_MERGED].rmpupdates, 10 * 3);
	/* Context page + VMSA + the 8 converted pages. */
	ck_assert_uint_eq(r[S004_LOCKED].rmpupdates, 10 * 10);
	ck_assert_uint_ge(r[S004_POSTED].rmpupdates, 10 * 10);
	ck_assert_uint_gt(r[S004_LOCKED].fault_retries, r[S004_MERGED].fault_retries);
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
	tc = tcase_create("s002");
	/* Whole GiB TDs: the scaling check maps 6 GiB per policy. */
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_s002_outcomes);
	tcase_add_loop_test(tc, test_s002_scaling_exact, 0, 2);
	suite_add_tcase(s, tc);
	tc = tcase_create("s000");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_s000_orders);
	tcase_add_test(tc, test_s000_race);
	tcase_add_test(tc, test_s000_trace);
	suite_add_tcase(s, tc);
	tc = tcase_create("s003");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_s003_install_accept);
	tcase_add_test(tc, test_s003_removal_entry);
	suite_add_tcase(s, tc);
	tc = tcase_create("s004");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_s004_explorer);
	tcase_add_test(tc, test_s004_costs);
	suite_add_tcase(s, tc);
	return s;
}
