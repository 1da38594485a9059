/* SPDX-License-Identifier: MIT */
/*
 * The study framework (docs/studies/README.md).  A study replays one of the
 * KVM threads libccvm is built from: a study knob (ccvm.h) brings back the
 * code under review, a scenario (studies/sNNN.c) runs it and the merged
 * code on the same model, and a program (studies/study_NNN.c) prints one
 * table, writes a CSV and states its outcome as
 *	SEED|<thread>|<policy>|<outcome>|<key figure>
 * lines, which `make seeds` gathers into one summary table.  The scenarios
 * are linked into the tests too (tests/check_studies.c), so the outcome
 * each study reports is asserted on every `make check`.
 *
 * A scenario that runs threads creates its platforms with
 * .sched = CCVM_SCHED_SERIAL and the study's --seed, so every run of it
 * takes the same schedule (docs/scheduler.md).
 */
#ifndef CCVM_STUDIES_STUDY_H
#define CCVM_STUDIES_STUDY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <ccvm/ccvm.h>

#define STUDY_GIB	(1ull << 30)
#define STUDY_MIB	(1ull << 20)

/* Command line every study takes. */
struct study_opts {
	const char *csv;	/* --csv FILE: the table as CSV (default: none) */
	const char *trace;	/* --trace FILE: Chrome trace JSON of a small run */
	uint64_t seed;		/* --seed N: schedules and platform seeds */
	bool quick;		/* --quick: smaller sizes (tests, smoke runs) */
	int argi;		/* first argument the framework did not take */
};

/*
 * Parse the common options; a study's own come after them.  Return: 0,
 * 1 when --help was printed (exit 0), or -EINVAL (usage printed).
 */
int study_parse(int argc, char **argv, const char *usage, struct study_opts *o);

/*
 * One table: printed on stdout as aligned columns and, when a CSV file is
 * open, written there as rows.  Columns are given once; each row is a
 * printf-style line of fields separated by '|'.
 */
struct study_table {
	FILE *csv;
	unsigned int nr_cols;
	int width[24];
};

int study_table_open(struct study_table *t, const struct study_opts *o,
		     const char *const *cols, const int *width, unsigned int nr_cols);
void study_table_row(struct study_table *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int study_table_close(struct study_table *t);

/* One line of the `make seeds` summary. */
void study_seed_line(const char *thread, const char *policy, const char *outcome,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Silence the library's log: the old code of a study warns by design. */
void study_quiet_log(void);

/*
 * Join the @n threads of a scenario.  Return: @err if non-zero, else the
 * first join error or non-zero thread return, else 0.
 */
struct ccvm_thread;
int study_join(struct ccvm_thread *const *t, unsigned int n, int err);

/* @vm's event counters into @ev (CCVM_EV_NR entries); zeros without them. */
void study_vm_events(struct ccvm_vm *vm, uint64_t *ev);

/* ---- study 000: HKID release against fd-close order (s000.c) ---- */

enum s000_order {
	S000_GMEM_THEN_VM,	/* close gmem, then the VM: release at the last reference */
	S000_TERMINATE_FIRST,	/* ccvm_vm_terminate(), then close gmem */
	S000_RACE,		/* gmem close on one thread, the early release on another */
	S000_NR_ORDERS
};

extern const char *const s000_order_names[S000_NR_ORDERS];

/* What one shutdown did, counted from the vCPU close on. */
struct s000_run {
	uint64_t removed;	/* private pages removed dynamically (PAGE.REMOVE) */
	uint64_t reclaimed;	/* RECLAIMs: guest pages, S-EPT and control pages */
	uint64_t refused;	/* SEAMCALLs the module refused */
	uint64_t leaked;	/* pages lost for good */
	uint64_t sim_ns;
};

struct s000_result {
	uint64_t explored, runs;
	uint64_t bad_runs;		/* runs that leaked */
	uint64_t first_bad_run;		/* UINT64_MAX if none */
	uint64_t mid_zap_runs;		/* runs whose release landed mid-zap */
	uint64_t removed, reclaimed, refused, leaked, sim_ns;	/* summed */
	uint64_t max_leaked;
	uint32_t failure;		/* enum ccvm_explore_failure */
	uint64_t failed_run;
	char message[512];
};

/*
 * Run @runs random schedules from @seed of the shutdown in @order with
 * CCVM_STUDY_HKID_RELEASE = @knob (sequential orders have one schedule).
 * @check: stop at the first run that leaked a page (res->failure
 * CCVM_EXPLORE_FAIL_CHECK, *@token its replay token), with the library's
 * invariant checker on; without it every run is counted.  @trace: a Chrome
 * trace file each run rewrites (give runs = 1), or NULL.  Return: 0 or the
 * errno of a run that failed otherwise.
 */
int s000_explore(uint32_t knob, enum s000_order order, uint64_t seed, uint64_t runs,
		 bool check, const char *trace, struct s000_result *res, char **token);

/* ---- study 001: mirror root and the generation wrap (s001.c) ---- */

struct s001_result {
	/* after the last wrap, the TD still running */
	uint32_t mirror_roots, direct_roots;	/* valid roots of each kind */
	uint64_t mirror_refs;			/* references on mirror roots */
	uint32_t broken_invariant;		/* ccvm_vm_check_invariants() */
	/* after every handle is closed */
	uint64_t roots_leaked;			/* CCVM_EV_ROOT_LEAK */
	uint64_t pages_leaked;			/* the platform's leaked pages */
	uint64_t pages_left;			/* allocated pages not leaked nor freed */
};

/*
 * A TD with @nr_vcpus vCPUs; every round hot-plugs memory (a memslot update
 * that wraps the generation when @wrap) and each vCPU pre-faults private
 * pages in a fresh 2 MiB region, which reloads its MMU.  @reload is the
 * value of CCVM_STUDY_MIRROR_RELOAD.  @trace: a trace file or NULL.
 * Return: 0 or a negative errno (*@what names the failing call).
 */
int s001_run(uint32_t reload, unsigned int nr_vcpus, unsigned int rounds, bool wrap,
	     const char *trace, struct s001_result *res, const char **what);

/* ---- study 002: TD shutdown (s002.c) ---- */

enum s002_policy {
	S002_DYNAMIC,	/* default order: gmem closed while the TD holds its HKID */
	S002_DEFERRED,	/* CCVM_STUDY_GMEM_DEFER_REMOVAL: the RFC's option 2 */
	S002_TERMINATE,	/* ccvm_vm_terminate() first: option 1 */
	S002_NR_POLICIES
};

extern const char *const s002_policy_names[S002_NR_POLICIES];

struct s002_cfg {
	enum s002_policy policy;
	unsigned int nr_vcpus;
	uint64_t bytes;		/* guest memory, every page mapped before shutdown */
	const char *trace;	/* trace file of the whole run, or NULL */
	bool timed;		/* measure wall seconds (never in tests) */
};

struct s002_result {
	uint64_t pages;			/* 4K guest pages */
	uint64_t ev[CCVM_EV_NR];	/* events of the shutdown alone */
	uint64_t sim_ns;		/* the platform's simulated ns of the shutdown */
	double map_wall_s, shutdown_wall_s;	/* cfg.timed only */
	uint64_t model_bytes;		/* the platform's, every page mapped */
	uint64_t pages_left;		/* pages not back in the pool afterwards */
};

/*
 * Build a TD of @cfg->bytes with @cfg->nr_vcpus vCPUs, map every page of its
 * guest_memfd into the S-EPT (KVM_PRE_FAULT_MEMORY from vCPU 0: PAGE.AUG,
 * no guest byte is written), then shut it down by @cfg->policy.  Each run
 * has its own platform, so runs may go in parallel threads.
 * Return: 0 or a negative errno (*@what names the failing call).
 */
int s002_shutdown(const struct s002_cfg *cfg, struct s002_result *res, const char **what);

/*
 * The events of a shutdown at @full_gib GiB from runs at @small_gib and
 * 2 * @small_gib: every count the model makes is affine in the guest size
 * in whole GiB up to 512 GiB (one S-EPT leaf table per 2 MiB, one
 * directory per GiB, the rest fixed), so the extrapolation is exact; the
 * tests check it against a direct run.  Return: 0, -ERANGE when a count
 * is not affine (it would not be exact), or the runs' errno.
 */
int s002_extrapolate(const struct s002_result *small, const struct s002_result *twice,
		     uint64_t small_gib, uint64_t full_gib, struct s002_result *out);

/* Simulated ns of the events @ev priced by @cm (what the platform charges). */
uint64_t s002_price(const uint64_t *ev, const struct ccvm_cost_model *cm);

/* ---- study 003: TDX_OPERAND_BUSY policies (s003.c) ---- */

enum s003_policy {
	S003_SPIN,	/* CCVM_TDX_BUSY_SPIN: retry in the SEAMCALL wrapper */
	S003_GIVE_UP,	/* CCVM_TDX_BUSY_GIVE_UP: busy is an error */
	S003_MERGED,	/* CCVM_TDX_BUSY_MERGED: unwind the fault; kick and retry once */
	S003_NR_POLICIES
};

enum s003_race {
	S003_INSTALL_ACCEPT,	/* two vCPUs accept one page: PAGE.AUG vs ACCEPT */
	S003_REMOVAL_ENTRY,	/* the VMM converts mapped pages while the vCPU enters */
	S003_NR_RACES
};

extern const char *const s003_policy_names[S003_NR_POLICIES];
extern const char *const s003_race_names[S003_NR_RACES];

struct s003_result {
	uint64_t explored;		/* schedules run */
	uint64_t runs;			/* runs that completed (counted below) */
	uint64_t contended_runs;	/* runs where the module answered busy */
	uint64_t bad_runs;		/* runs with an error surfaced, a bug or a leak */
	uint64_t first_bad_run;		/* UINT64_MAX if none */
	uint64_t busy, max_busy;	/* busy answers (a spin's calls), summed / most */
	uint64_t fault_retries;		/* faults run again (CCVM_EV_FAULT_RETRY) */
	uint64_t kicks;			/* kicks of every vCPU (CCVM_EV_IPI) */
	uint64_t errors;		/* vCPU runs and VMM calls that failed */
	uint64_t bugged;		/* runs whose VM was bugged */
	uint64_t leaked;		/* pages lost for good, summed */
	uint32_t failure;		/* enum ccvm_explore_failure of the sweep */
	uint64_t failed_run;
	char message[512];
};

/*
 * Run the schedules of @race that @strategy gives (random: @runs from
 * @seed; PCT: the same at depth @bound, 0 for the default; DFS: every one
 * within @bound preemptions, at most @runs if not 0) with
 * CCVM_STUDY_TDX_BUSY as @policy says.  @check: stop at the
 * first bad run (res->failure CCVM_EXPLORE_FAIL_CHECK, *@token its replay
 * token), with the library's invariant checker on.  @trace: a Chrome
 * trace file each run rewrites (give runs = 1), or NULL.  Return: 0 (also
 * when the check failed a run), or the errno of a run that failed
 * otherwise.
 */
int s003_explore(enum s003_policy policy, enum s003_race race, uint32_t strategy,
		 int32_t bound, uint64_t seed, uint64_t runs, bool check, const char *trace,
		 struct s003_result *res, char **token);

/* Run @race once under @policy and the schedule @token, with the check. */
int s003_replay(enum s003_policy policy, enum s003_race race, const char *token,
		struct s003_result *res);

/* ---- study 004: SNP update_mem_attr and the RMPUPDATE-vs-fault race (s004.c) ---- */

enum s004_design {
	S004_POSTED,	/* CCVM_SNP_RMP_POSTED: update_mem_attr as posted (RFC v8) */
	S004_LOCKED,	/* CCVM_SNP_RMP_LOCKED: the same inside the invalidation */
	S004_MERGED,	/* CCVM_SNP_RMP_MERGED: RMP changed at prepare and at free */
	S004_NR_DESIGNS
};

extern const char *const s004_design_names[S004_NR_DESIGNS];

struct s004_result {
	uint64_t explored;		/* schedules the explorer ran */
	uint64_t runs;			/* runs that completed (counted below) */
	uint64_t racy_runs;		/* runs whose guest took an RMP nested fault */
	uint64_t first_racy_run;	/* index of the first, UINT64_MAX if none */
	uint64_t max_npf;		/* most RMP nested faults in one run */
	uint64_t rmp_npf, faults, fault_retries, rmpupdates;	/* summed over runs */
	uint64_t checks;		/* quiescent points checked */
	uint32_t failure;		/* enum ccvm_explore_failure of the sweep */
	uint64_t failed_run;		/* its run, UINT64_MAX if none */
};

/*
 * Explore @runs random schedules from @seed of the scenario (a VMM thread
 * converts a page to private while the vCPU validates and uses it) under
 * @design.  @check: stop at the first run whose guest took an RMP nested
 * fault (res->failure CCVM_EXPLORE_FAIL_CHECK, *@token its replay token,
 * *@message the report, both malloc'd or NULL); without it every run is
 * counted.  @trace: a Chrome trace file each run rewrites (give runs = 1),
 * or NULL.  Return: 0 (also when the check found the race), or the errno
 * of a run that failed otherwise.
 */
int s004_explore(enum s004_design design, uint64_t seed, uint64_t runs, bool check,
		 const char *trace, struct s004_result *res, char **token, char **message);

/*
 * Run the scenario once under @design and the schedule @token (with the
 * check).  Return: as s004_explore(); res->failure says what happened
 * (CCVM_EXPLORE_FAIL_DIVERGED when the design takes another path).
 */
int s004_replay(enum s004_design design, const char *token, struct s004_result *res);

#endif /* CCVM_STUDIES_STUDY_H */
