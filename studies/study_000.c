/* SPDX-License-Identifier: MIT */
/*
 * Study 000: the HKID release against the order in which fds close
 * (docs/studies/000.md).  The v19 TDX series released the HKID from the
 * mmu notifier when the owner's mm went away, hoping to reclaim private
 * memory cheaply; but the guest_memfd may be closing at that moment and
 * zapping every private page with the slow removal, and v19's release
 * took only the global tdx_lock.  Upstream releases the HKID at the last
 * VM reference (every gmem file holds one), under mmu_lock, and offers an
 * explicit terminate first.
 *
 * Rows: each release rule under each close order; the race order is
 * explored over random schedules, counting where the release landed (pages
 * removed the slow way before it, reclaimed after) and what was lost.
 */
#include <stdlib.h>
#include <string.h>

#include <ccvm/explore.h>

#include "study.h"

#define RUNS_FULL	100
#define RUNS_QUICK	20

static const struct {
	const char *name;
	uint32_t knob;
} rules[] = {
	{ "v19", CCVM_HKID_RELEASE_V19 },
	{ "merged", CCVM_HKID_RELEASE_MERGED },
};

int main(int argc, char **argv)
{
	static const char *const cols[] = {
		"rule", "order", "schedules", "mid_zap", "removed_per_run",
		"reclaimed_per_run", "refused_per_run", "leaky_runs", "max_leaked", "explorer",
	};
	static const int width[] = { 6, 36, 9, 7, 15, 17, 15, 10, 10, 24 };
	struct s000_result race[2], found[2];
	char *token = NULL;
	struct study_table t;
	struct study_opts o;
	uint64_t runs;
	unsigned int k, ord;
	int err = study_parse(argc, argv, "", &o);

	if (err)
		return err > 0 ? 0 : 2;
	if (o.argi < argc) {
		fprintf(stderr, "%s: unknown option %s\n", argv[0], argv[o.argi]);
		return 2;
	}
	runs = o.quick ? RUNS_QUICK : RUNS_FULL;
	study_quiet_log();
	printf("Study 000: HKID release against fd-close order (a TD with 32 private pages\n"
	       "mapped; the zap yields every 4 pages; %llu random schedules of the race from\n"
	       "seed %llu)\n", (unsigned long long)runs, (unsigned long long)o.seed);
	err = study_table_open(&t, &o, cols, width, sizeof(cols) / sizeof(cols[0]));
	if (err) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], o.csv, strerror(-err));
		return 1;
	}
	for (k = 0; k < 2; k++) {
		for (ord = 0; ord < S000_NR_ORDERS; ord++) {
			bool is_race = ord == S000_RACE;
			struct s000_result r, f;
			char verdict[64] = "-";

			err = s000_explore(rules[k].knob, ord, o.seed, is_race ? runs : 1, false,
					   NULL, &r, NULL);
			if (!err && is_race)
				err = s000_explore(rules[k].knob, ord, o.seed, runs, true, NULL, &f,
						   k == 0 ? &token : NULL);
			if (err || !r.runs) {
				fprintf(stderr, "%s: %s / %s: %s\n", argv[0], rules[k].name,
					s000_order_names[ord], ccvm_strerror(err));
				return 1;
			}
			if (is_race) {
				race[k] = r;
				found[k] = f;
				if (f.failure == CCVM_EXPLORE_FAIL_CHECK)
					snprintf(verdict, sizeof(verdict), "leak found, run %llu",
						 (unsigned long long)f.failed_run);
				else if (f.failure)
					snprintf(verdict, sizeof(verdict), "%s, run %llu",
						 ccvm_explore_failure_name(f.failure),
						 (unsigned long long)f.failed_run);
				else
					snprintf(verdict, sizeof(verdict), "none in %llu",
						 (unsigned long long)f.explored);
			}
			study_table_row(&t, "%s|%s|%llu|%llu|%.2f|%.2f|%.2f|%llu|%llu|%s",
					rules[k].name, s000_order_names[ord],
					(unsigned long long)r.runs,
					(unsigned long long)r.mid_zap_runs,
					(double)r.removed / r.runs, (double)r.reclaimed / r.runs,
					(double)r.refused / r.runs, (unsigned long long)r.bad_runs,
					(unsigned long long)r.max_leaked, verdict);
		}
	}
	if (study_table_close(&t))
		return 1;
	printf("removed: private pages that went the slow way (BLOCK, TRACK, REMOVE); reclaimed:\n"
	       "RECLAIMs after the release (guest pages, S-EPT pages, control pages: 11 of them)\n");
	if (token)
		printf("replay v19's leak: ccvm_replay() with token %s\n", token);
	/* The race under each rule, the schedule of run 0 from the seed. */
	for (k = 0; o.trace && k < 2; k++) {
		char path[1024];
		struct s000_result r;

		snprintf(path, sizeof(path), "%s.%s.json", o.trace, rules[k].name);
		err = s000_explore(rules[k].knob, S000_RACE, o.seed, 1, false, path, &r, NULL);
		if (err) {
			fprintf(stderr, "%s: trace %s: %s\n", argv[0], path, ccvm_strerror(err));
			free(token);
			return 1;
		}
		printf("trace: %s (%llu removed, %llu reclaimed, %llu leaked)\n", path,
		       (unsigned long long)r.removed, (unsigned long long)r.reclaimed,
		       (unsigned long long)r.leaked);
	}
	free(token);

	study_seed_line("000 HKID release vs fd close", "v19 (release from mm exit)",
			found[0].failure == CCVM_EXPLORE_FAIL_CHECK && race[0].bad_runs ?
			"bad: pages leaked" : "UNEXPECTED",
			"%llu/%llu race schedules leak (up to %llu pages); explorer: run %llu",
			(unsigned long long)race[0].bad_runs, (unsigned long long)race[0].runs,
			(unsigned long long)race[0].max_leaked,
			(unsigned long long)found[0].failed_run);
	study_seed_line("000 HKID release vs fd close", "merged (last ref / terminate)",
			found[1].failure == CCVM_EXPLORE_OK && !race[1].bad_runs ?
			"good: nothing lost" : "UNEXPECTED",
			"0/%llu leak; %llu releases landed mid-zap",
			(unsigned long long)race[1].runs, (unsigned long long)race[1].mid_zap_runs);
	return 0;
}
