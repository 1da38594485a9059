/* SPDX-License-Identifier: MIT */
/*
 * Study 004: SNP's update_mem_attr and the RMPUPDATE-versus-fault race
 * (docs/studies/004.md).  The RFC v8 op ran the RMPUPDATEs of a conversion
 * after the attribute store and after the invalidation had ended, so a
 * fault in between mapped a page by the attribute before the RMP gave it
 * to the guest, which then took RMP nested faults until the update
 * landed.  The thread proposed doing the update inside the invalidation
 * (locked); upstream dropped the op and changes the RMP only when a fault
 * prepares a page and when gmem frees it (merged, the default).
 *
 * For each design the same budget of random schedules of one scenario (the
 * VMM converts 8 pages to private while the vCPU validates and uses the
 * last of them): how many schedules show the race, and what the others
 * cost; then the explorer, with a check that fails a run on an RMP nested
 * fault, either finds the race and prints its replay token or finds none.
 */
#include <stdlib.h>
#include <string.h>

#include <ccvm/explore.h>

#include "study.h"

#define RUNS_FULL	100
#define RUNS_QUICK	40

int main(int argc, char **argv)
{
	static const char *const cols[] = {
		"design", "schedules", "racy", "racy_pct", "max_rmp_npf", "faults_per_run",
		"stale_retries_per_run", "rmpupdates_per_run", "explorer",
	};
	static const int width[] = { 7, 9, 5, 8, 11, 14, 21, 18, 22 };
	struct s004_result res[S004_NR_DESIGNS], found[S004_NR_DESIGNS];
	char *token[S004_NR_DESIGNS] = { NULL };
	struct study_table t;
	struct study_opts o;
	uint64_t runs;
	unsigned int d;
	int err = study_parse(argc, argv, "", &o);

	if (err)
		return err > 0 ? 0 : 2;
	if (o.argi < argc) {
		fprintf(stderr, "%s: unknown option %s\n", argv[0], argv[o.argi]);
		return 2;
	}
	runs = o.quick ? RUNS_QUICK : RUNS_FULL;
	study_quiet_log();
	printf("Study 004: SNP update_mem_attr and the RMPUPDATE-vs-fault race (%llu random\n"
	       "schedules from seed %llu per design; the VMM converts 8 pages to private while\n"
	       "the vCPU validates and uses the last one)\n",
	       (unsigned long long)runs, (unsigned long long)o.seed);
	err = study_table_open(&t, &o, cols, width, sizeof(cols) / sizeof(cols[0]));
	if (err) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], o.csv, strerror(-err));
		return 1;
	}
	for (d = 0; d < S004_NR_DESIGNS; d++) {
		struct s004_result *r = &res[d];
		char verdict[64];

		err = s004_explore(d, o.seed, runs, false, NULL, r, NULL, NULL);
		if (!err)
			err = s004_explore(d, o.seed, runs, true, NULL, &found[d], &token[d], NULL);
		if (err || !r->runs) {
			fprintf(stderr, "%s: %s: %s\n", argv[0], s004_design_names[d],
				ccvm_strerror(err));
			return 1;
		}
		if (found[d].failure == CCVM_EXPLORE_FAIL_CHECK)
			snprintf(verdict, sizeof(verdict), "race found, run %llu",
				 (unsigned long long)found[d].failed_run);
		else
			snprintf(verdict, sizeof(verdict), "none in %llu",
				 (unsigned long long)found[d].explored);
		study_table_row(&t, "%s|%llu|%llu|%.1f|%llu|%.2f|%.2f|%.2f|%s",
				s004_design_names[d], (unsigned long long)r->runs,
				(unsigned long long)r->racy_runs, 100.0 * r->racy_runs / r->runs,
				(unsigned long long)r->max_npf, (double)r->faults / r->runs,
				(double)r->fault_retries / r->runs,
				(double)r->rmpupdates / r->runs, verdict);
	}
	if (study_table_close(&t))
		return 1;
	if (token[S004_POSTED])
		printf("replay the posted design's race: ccvm_replay() with token %s\n",
		       token[S004_POSTED]);
	printf("rmpupdates_per_run counts the VM's context page and VMSA too (2 per run)\n");
	if (o.trace) {
		for (d = 0; d < S004_NR_DESIGNS; d++) {
			char path[512];
			struct s004_result r;

			snprintf(path, sizeof(path), "%s.%s.json", o.trace, s004_design_names[d]);
			/* The first schedule of the sweep, which races under posted. */
			if (s004_explore(d, o.seed, 1, false, path, &r, NULL, NULL)) {
				fprintf(stderr, "%s: trace %s failed\n", argv[0], path);
				return 1;
			}
		}
	}

	study_seed_line("004 SNP update_mem_attr", "posted (RFC v8)",
			found[S004_POSTED].failure == CCVM_EXPLORE_FAIL_CHECK &&
			res[S004_POSTED].racy_runs ? "bad: RMP #NPF race" : "UNEXPECTED",
			"explorer: race at run %llu; %llu/%llu schedules racy",
			(unsigned long long)found[S004_POSTED].failed_run,
			(unsigned long long)res[S004_POSTED].racy_runs,
			(unsigned long long)res[S004_POSTED].runs);
	study_seed_line("004 SNP update_mem_attr", "locked (thread)",
			found[S004_LOCKED].failure == CCVM_EXPLORE_OK &&
			!res[S004_LOCKED].racy_runs ? "good: no race" : "UNEXPECTED",
			"0/%llu racy; %.2f stale-fault retries per run",
			(unsigned long long)res[S004_LOCKED].runs,
			(double)res[S004_LOCKED].fault_retries / res[S004_LOCKED].runs);
	study_seed_line("004 SNP update_mem_attr", "merged (prepare/free)",
			found[S004_MERGED].failure == CCVM_EXPLORE_OK &&
			!res[S004_MERGED].racy_runs ? "good: no race" : "UNEXPECTED",
			"0/%llu racy; %.2f RMPUPDATEs per run",
			(unsigned long long)res[S004_MERGED].runs,
			(double)res[S004_MERGED].rmpupdates / res[S004_MERGED].runs);
	for (d = 0; d < S004_NR_DESIGNS; d++)
		free(token[d]);
	return 0;
}
