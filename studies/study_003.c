/* SPDX-License-Identifier: MIT */
/*
 * Study 003: TDX_OPERAND_BUSY without contention-and-wait
 * (docs/studies/003.md).  The TDX module answers busy instead of waiting
 * for a lock; the thread weighed spinning on the SEAMCALL inside KVM's
 * wrapper ("retry X times and hope"), handing the error up at once, and
 * what was merged: an install unwinds and the fault runs again, a removal
 * (which cannot unwind) tries once more with guest entry blocked and every
 * vCPU kicked out.
 *
 * Rows: each contention under each policy, over the same random and PCT
 * schedules of the deterministic scheduler.
 */
#include <stdlib.h>
#include <string.h>

#include <ccvm/explore.h>

#include "study.h"

#define RUNS_FULL	200
#define RUNS_QUICK	20

/*
 * What a row shows, or UNEXPECTED.  Install vs accept: spinning costs busy
 * calls under mmu_lock, giving up hands errors to the VMM, the merged
 * policy retries the fault.  Removal vs entry: a spin meets an entry that
 * cannot end while it holds mmu_lock and runs out at its cap, giving up
 * fails the removal (the VM is bugged), the merged policy kicks the vCPUs
 * and its one retry succeeds: more kicks than the others, nothing bad.
 */
/* The figure that tells a row's story (the table has them all). */
static void s003_figure(unsigned int race, unsigned int pol,
			struct s003_result sum[S003_NR_RACES][S003_NR_POLICIES], char *buf,
			size_t sz)
{
	const struct s003_result *a = &sum[race][pol];
	double n = a->runs ? (double)a->runs : 1;

	if (pol == S003_SPIN)
		snprintf(buf, sz, "%.2f busy calls/run under mmu_lock, max %llu (cap %u); %llu bugged VMs",
			 (double)a->busy / n, (unsigned long long)a->max_busy,
			 CCVM_TDX_BUSY_SPIN_MAX, (unsigned long long)a->bugged);
	else if (pol == S003_GIVE_UP)
		snprintf(buf, sz, "%llu errors surfaced, %llu bugged VMs, %llu pages leaked",
			 (unsigned long long)a->errors, (unsigned long long)a->bugged,
			 (unsigned long long)a->leaked);
	else if (race == S003_INSTALL_ACCEPT)
		snprintf(buf, sz, "%.2f fault retries/run (give-up %.2f)", (double)a->fault_retries / n,
			 (double)sum[race][S003_GIVE_UP].fault_retries / n);
	else
		snprintf(buf, sz, "%.2f kicks/run (give-up %.2f), %llu bugged VMs",
			 (double)a->kicks / n, (double)sum[race][S003_GIVE_UP].kicks / n,
			 (unsigned long long)a->bugged);
}

static const char *s003_outcome(unsigned int race, unsigned int pol,
				struct s003_result sum[S003_NR_RACES][S003_NR_POLICIES])
{
	const struct s003_result *a = &sum[race][pol];
	bool bad = a->bad_runs > 0;

	if (!a->contended_runs)
		return "UNEXPECTED";
	if (race == S003_INSTALL_ACCEPT) {
		if (pol == S003_SPIN)
			return !bad ? "cost: spins under mmu_lock" : "UNEXPECTED";
		if (pol == S003_GIVE_UP)
			return a->errors ? "bad: errors to the VMM" : "UNEXPECTED";
		return !bad && a->fault_retries ? "good: faults retried" : "UNEXPECTED";
	}
	if (pol == S003_SPIN)
		return bad && a->max_busy >= CCVM_TDX_BUSY_SPIN_MAX ?
		       "bad: spun out at the cap" : "UNEXPECTED";
	if (pol == S003_GIVE_UP)
		return a->bugged ? "bad: removal failed, VM bugged" : "UNEXPECTED";
	return !bad && a->kicks > sum[race][S003_GIVE_UP].kicks ?
	       "good: kicked, one retry" : "UNEXPECTED";
}

int main(int argc, char **argv)
{
	static const char *const cols[] = {
		"race", "policy", "schedules", "contended", "busy_per_run", "max_busy",
		"fault_retries_per_run", "kicks_per_run", "errors", "bugged_vms", "leaked",
		"bad_runs",
	};
	static const int width[] = { 17, 7, 12, 9, 12, 8, 21, 13, 6, 10, 6, 8 };
	struct s003_result sum[S003_NR_RACES][S003_NR_POLICIES];
	struct study_table t;
	struct study_opts o;
	unsigned int race, pol;
	uint64_t runs;
	int err = study_parse(argc, argv, "", &o);

	if (err)
		return err > 0 ? 0 : 2;
	if (o.argi < argc) {
		fprintf(stderr, "%s: unknown option %s\n", argv[0], argv[o.argi]);
		return 2;
	}
	runs = o.quick ? RUNS_QUICK : RUNS_FULL;
	study_quiet_log();
	printf("Study 003: busy SEAMCALLs under real contention (a TD; the same %llu random\n"
	       "schedules from seed %llu per row; spin: at most %u calls of a leaf)\n",
	       (unsigned long long)runs, (unsigned long long)o.seed, CCVM_TDX_BUSY_SPIN_MAX);
	err = study_table_open(&t, &o, cols, width, sizeof(cols) / sizeof(cols[0]));
	if (err) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], o.csv, strerror(-err));
		return 1;
	}
	memset(sum, 0, sizeof(sum));
	for (race = 0; race < S003_NR_RACES; race++) {
		for (pol = 0; pol < S003_NR_POLICIES; pol++) {
			struct s003_result *a = &sum[race][pol];

			{
				struct s003_result r;
				char sched[32];

				err = s003_explore(pol, race, CCVM_EXPLORE_RANDOM, 0, o.seed, runs,
						   false, NULL, &r, NULL);
				if (err || !r.runs) {
					fprintf(stderr, "%s: %s / %s: %s %s\n", argv[0],
						s003_race_names[race], s003_policy_names[pol],
						ccvm_strerror(err), r.message);
					return 1;
				}
				snprintf(sched, sizeof(sched), "%llu", (unsigned long long)r.runs);
				study_table_row(&t, "%s|%s|%s|%llu|%.2f|%llu|%.2f|%.2f|%llu|%llu|%llu|%llu",
						s003_race_names[race], s003_policy_names[pol], sched,
						(unsigned long long)r.contended_runs,
						(double)r.busy / r.runs, (unsigned long long)r.max_busy,
						(double)r.fault_retries / r.runs,
						(double)r.kicks / r.runs, (unsigned long long)r.errors,
						(unsigned long long)r.bugged,
						(unsigned long long)r.leaked,
						(unsigned long long)r.bad_runs);
				a->runs += r.runs;
				a->contended_runs += r.contended_runs;
				a->bad_runs += r.bad_runs;
				a->busy += r.busy;
				if (r.max_busy > a->max_busy)
					a->max_busy = r.max_busy;
				a->fault_retries += r.fault_retries;
				a->kicks += r.kicks;
				a->errors += r.errors;
				a->bugged += r.bugged;
				a->leaked += r.leaked;
			}
		}
	}
	if (study_table_close(&t))
		return 1;
	printf("busy: answers TDX_OPERAND_BUSY / PREVIOUS_TLB_EPOCH_BUSY (under spin, each one\n"
	       "is a call made again with mmu_lock held; max_busy %u: a spin ran out at its\n"
	       "cap); kicks: every vCPU kicked out of the guest (each TRACK, and the merged\n"
	       "retry); errors: vCPU runs and VMM calls that failed; bad_runs: runs with an\n"
	       "error, a bugged VM or a leaked page\n", CCVM_TDX_BUSY_SPIN_MAX);
	/* Under each policy, the first contended schedule of each race. */
	for (race = 0; o.trace && race < S003_NR_RACES; race++) {
		for (pol = 0; pol < S003_NR_POLICIES; pol++) {
			char path[1024];
			struct s003_result r = { .busy = 0 };
			uint64_t i;

			snprintf(path, sizeof(path), "%s.%s%s.json", o.trace,
				 race == S003_REMOVAL_ENTRY ? "removal." : "",
				 s003_policy_names[pol]);
			for (i = 0, err = 0; !err && !r.busy && i < runs; i++)
				err = s003_explore(pol, race, CCVM_EXPLORE_RANDOM, 0, o.seed + i,
						   1, false, path, &r, NULL);
			if (err) {
				fprintf(stderr, "%s: trace %s: %s\n", argv[0], path,
					ccvm_strerror(err));
				return 1;
			}
			printf("trace: %s (%s, seed %llu: %llu busy answers)\n", path,
			       s003_race_names[race], (unsigned long long)(o.seed + i - 1),
			       (unsigned long long)r.busy);
		}
	}

	for (race = 0; race < S003_NR_RACES; race++) {
		for (pol = 0; pol < S003_NR_POLICIES; pol++) {
			const struct s003_result *a = &sum[race][pol];
			char policy[64], fig[160];

			snprintf(policy, sizeof(policy), "%s, %s", s003_policy_names[pol],
				 s003_race_names[race]);
			s003_figure(race, pol, sum, fig, sizeof(fig));
			study_seed_line("003 TDX_OPERAND_BUSY", policy, s003_outcome(race, pol, sum),
					"%llu/%llu contended, %llu bad; %s",
					(unsigned long long)a->contended_runs,
					(unsigned long long)a->runs,
					(unsigned long long)a->bad_runs, fig);
		}
	}
	return 0;
}
