/* SPDX-License-Identifier: MIT */
/*
 * libccvm schedule explorer: run a scenario many times, each on a fresh
 * platform under the deterministic scheduler and a new schedule, and report
 * the first schedule that fails with a token that replays it exactly.
 *
 *	static int run(struct ccvm_platform *p, void *ctx) { ... threads ... }
 *	struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario,
 *						 .name = "lost-update", .run = run);
 *	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
 *						    .strategy = CCVM_EXPLORE_PCT,
 *						    .runs = 10000);
 *	struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
 *	int err = ccvm_explore(&sc, &o, &res);	// < 0 with res.failure set
 *	...
 *	ccvm_replay(&sc, res.token, NULL, &res2);	// the same failure again
 *	ccvm_explore_result_release(&res);
 *
 * The scenario runs on the calling thread, which the scheduler controls as
 * thread 0; it makes its threads with ccvm_thread_create() and joins them
 * before it returns.  Its only nondeterminism must come from the schedule.
 * docs/scheduler.md describes the strategies, tokens and guarantees.
 */
#ifndef CCVM_EXPLORE_H
#define CCVM_EXPLORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ccvm/api.h>
#include <ccvm/ccvm.h>
#include <ccvm/sync.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- scheduling events --------------------------------------------------------- */

/* What a scheduling step did (the operation the chosen thread performed). */
enum ccvm_sched_op {
	CCVM_SCHED_OP_START,		/* a new thread's first step */
	CCVM_SCHED_OP_EXIT,		/* its function returned */
	CCVM_SCHED_OP_CREATE,		/* ccvm_thread_create() */
	CCVM_SCHED_OP_JOIN,
	CCVM_SCHED_OP_LOCK,
	CCVM_SCHED_OP_TRYLOCK,
	CCVM_SCHED_OP_UNLOCK,
	CCVM_SCHED_OP_RDLOCK,
	CCVM_SCHED_OP_WRLOCK,
	CCVM_SCHED_OP_TRYRDLOCK,
	CCVM_SCHED_OP_TRYWRLOCK,
	CCVM_SCHED_OP_RWUNLOCK,
	CCVM_SCHED_OP_COND_WAIT,	/* release the mutex and sleep */
	CCVM_SCHED_OP_COND_WAKE,	/* woken: take the mutex again */
	CCVM_SCHED_OP_SIGNAL,
	CCVM_SCHED_OP_BROADCAST,
	CCVM_SCHED_OP_POINT,		/* ccvm_sched_point() */
	CCVM_SCHED_OP_YIELD,
	CCVM_SCHED_OP_SPIN,		/* ccvm_spin_wait() */
	CCVM_SCHED_OP_NR
};

#define CCVM_SCHED_NAME_MAX	16

struct ccvm_sched_event {
	uint64_t step;			/* 0-based index in the run */
	uint32_t thread;		/* controlled thread id, 0 = the scenario */
	uint32_t op;			/* enum ccvm_sched_op */
	const char *obj;		/* lock, condition or point name; may be NULL */
	const char *file;		/* call site, NULL if unknown */
	const char *func;
	uint32_t line;
	char thread_name[CCVM_SCHED_NAME_MAX];
};

/*
 * ccvm_sched_op_name() - The name of scheduling operation @op (enum
 * ccvm_sched_op): "lock", "cond_wait", ..., for printing events.
 * Context: any thread.
 * Return: a static string; NULL for an unknown value.
 * Example:
 *	#include <stdio.h>
 *
 *	// An event_fn for ccvm_explore_opts (fn_ctx: a FILE *): every step.
 *	void print_step(const struct ccvm_sched_event *ev, void *ctx)
 *	{
 *		fprintf(ctx, "%6llu %-15s %-10s %s at %s:%u\n", (unsigned long long)ev->step,
 *				ev->thread_name, ccvm_sched_op_name(ev->op), ev->obj ? ev->obj : "-",
 *				ev->file ? ev->file : "?", ev->line);
 *	}
 */
CCVM_API const char *ccvm_sched_op_name(unsigned int op);

/* ---- scenarios ------------------------------------------------------------------- */

struct ccvm_scenario {
	size_t sz;
	const char *name;
	/*
	 * One execution on a fresh platform @p (made from @platform, then
	 * destroyed by the explorer).  Return 0, or a negative errno: the run
	 * fails.  Context: controlled thread 0.
	 */
	int (*run)(struct ccvm_platform *p, void *ctx);
	/*
	 * Optional check, called with scheduling suspended at every quiescent
	 * point (no controlled thread holds a lock of the sync layer) and once
	 * after @run returned.  It may take locks.  Return 0, or nonzero with a
	 * message in @msg: the run fails.
	 */
	int (*check)(struct ccvm_platform *p, void *ctx, char *msg, size_t msg_sz);
	void *ctx;
	const struct ccvm_platform_opts *platform;	/* NULL: mock defaults */
};

/* ---- options ----------------------------------------------------------------------- */

enum ccvm_explore_strategy {
	CCVM_EXPLORE_RANDOM,	/* a uniformly random runnable thread at every step */
	CCVM_EXPLORE_PCT,	/* probabilistic concurrency testing, depth pct_depth */
	CCVM_EXPLORE_DFS,	/* every schedule within the preemption bound */
	CCVM_EXPLORE_NR
};

#define CCVM_EXPLORE_UNBOUNDED		(-1)	/* preemption_bound: no bound */
#define CCVM_EXPLORE_MAX_PCT_DEPTH	32
#define CCVM_EXPLORE_MAX_EVENTS		256

/* flags */
#define CCVM_EXPLORE_QUIET		(1u << 0)	/* print nothing */
#define CCVM_EXPLORE_NO_SLEEP_SETS	(1u << 1)	/* DFS: no reduction */
#define CCVM_EXPLORE_NO_CRASH_HANDLER	(1u << 2)	/* leave signals alone */
/* Skip the library's invariant checker at quiescent points (and at the end). */
#define CCVM_EXPLORE_NO_LIBRARY_CHECK	(1u << 3)
/* DFS: no state caching (docs/scheduler.md 4.3). */
#define CCVM_EXPLORE_NO_STATE_CACHE	(1u << 4)
/* DFS: also preempt just before an unlock, a thread exit or a yield. */
#define CCVM_EXPLORE_PREEMPT_ALL	(1u << 5)

/* What ccvm_explore() tells the run callback about each finished run. */
struct ccvm_explore_run {
	uint64_t index;		/* run number in the whole sweep (all shards) */
	uint64_t seed;		/* random/PCT: the run's seed */
	uint64_t steps;
	uint64_t switches;	/* context switches */
	int status;		/* 0 or the run's failure errno */
	const char *token;	/* the run's schedule; valid during the call */
};

struct ccvm_explore_opts {
	size_t sz;
	uint32_t strategy;	/* enum ccvm_explore_strategy; default random */
	uint32_t flags;		/* CCVM_EXPLORE_* */
	uint64_t seed;		/* random/PCT: run i uses seed + i */
	uint64_t runs;		/* random/PCT: runs (default 1000); DFS: limit, 0 = none */
	uint32_t pct_depth;	/* PCT bug depth d >= 1 (default 3) */
	uint64_t pct_steps;	/* PCT run length estimate k; 0 = measure it */
	int32_t preemption_bound; /* DFS: preemptions per schedule, -1 = unbounded */
	uint64_t step_bound;	/* steps before a run is a livelock; 0 = 100000 */
	uint32_t shard_index;	/* this process runs shard shard_index ... */
	uint32_t shard_count;	/* ... of shard_count (0 or 1: no sharding) */
	uint32_t last_events;	/* events kept for a failure report; 0 = 32 */
	FILE *report;		/* failure reports; NULL = stderr */
	/* Called after every run of this shard (progress lines, tests). */
	void (*run_fn)(const struct ccvm_explore_run *run, void *ctx);
	/* Called at every step of every run (full traces). */
	void (*event_fn)(const struct ccvm_sched_event *ev, void *ctx);
	void *fn_ctx;
};

/* ---- results ------------------------------------------------------------------------- */

enum ccvm_explore_failure {
	CCVM_EXPLORE_OK,
	CCVM_EXPLORE_FAIL_SCENARIO,	/* run returned an error */
	CCVM_EXPLORE_FAIL_CHECK,	/* the check hook failed */
	CCVM_EXPLORE_FAIL_DEADLOCK,	/* no thread could run */
	CCVM_EXPLORE_FAIL_LIVELOCK,	/* the step bound was hit */
	CCVM_EXPLORE_FAIL_MISUSE,	/* a sync-layer rule was broken */
	CCVM_EXPLORE_FAIL_DIVERGED,	/* replay: the run no longer matches the token */
};

struct ccvm_explore_result {
	size_t sz;
	uint64_t runs;		/* runs done by this shard */
	uint64_t pruned;	/* DFS: runs found redundant (sleep sets, state cache) */
	uint64_t steps;		/* steps over every run */
	uint64_t max_steps;	/* longest run */
	uint64_t switches;	/* context switches over every run */
	uint64_t pct_steps;	/* PCT: the run length estimate used */
	bool exhausted;		/* DFS: every schedule of this shard was run */
	uint32_t failure;	/* enum ccvm_explore_failure */
	int error;		/* errno of the failure, 0 if none */
	uint64_t failed_run;	/* index of the failing run */
	uint64_t failed_seed;	/* its seed (random/PCT) */
	char *token;		/* failing schedule; free with _release() */
	char *message;		/* what failed, multi-line; free with _release() */
	struct ccvm_sched_event *events; /* the last nr_events steps, oldest first */
	uint32_t nr_events;
	uint64_t checks;	/* quiescent points checked (hook and library), all runs */
	uint64_t cached;	/* DFS: runs cut short at a state seen before */
	uint64_t states;	/* DFS: states noted by the state cache */
};

/*
 * ccvm_explore() - Run @sc under schedules chosen by @opts (NULL: 1000
 * random schedules from seed 0) until one fails or the budget is spent.
 * Each run gets a fresh platform whose creator is the calling thread,
 * controlled as thread 0.  On a failure the token, the message and the
 * last events are stored in @res (and printed unless QUIET); a crash of
 * the process during a run prints the token of the running schedule to
 * stderr first (unless NO_CRASH_HANDLER).
 * Context: a thread that is not itself under a scheduler; one exploration
 * at a time per process has the crash handler.
 * Return: 0 (nothing failed); a failure's negative errno with
 * res->failure set: the scenario's error, -EPROTO (check), -EDEADLK,
 * -ELOOP (livelock), -EPERM (misuse); -EINVAL (bad scenario or options:
 * nothing run, @res untouched); -ENOMEM.
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	struct shared {
 *		struct ccvm_sched *s;
 *		int counter;
 *	};
 *
 *	static int bump(void *arg)
 *	{
 *		struct shared *sh = arg;
 *
 *		ccvm_sched_point(sh->s, &sh->counter, "load");
 *		int v = sh->counter;
 *		ccvm_sched_point(sh->s, &sh->counter, "store");
 *		sh->counter = v + 1;    // no lock: an update can be lost
 *		return 0;
 *	}
 *
 *	static int lost_update(struct ccvm_platform *p, void *ctx)
 *	{
 *		struct shared sh = { ccvm_platform_sched(p), 0 };
 *		struct ccvm_thread *t[2];
 *
 *		(void)ctx;
 *		for (int i = 0; i < 2; i++)
 *			if (ccvm_thread_create(p, &t[i], bump, &sh, "bump"))
 *				return -EAGAIN;
 *		for (int i = 0; i < 2; i++)
 *			ccvm_thread_join(t[i], NULL);
 *		return sh.counter == 2 ? 0 : -EPROTO;
 *	}
 *
 *	int main(void)
 *	{
 *		struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario,
 *			.name = "lost-update", .run = lost_update);
 *		struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
 *			.strategy = CCVM_EXPLORE_PCT, .runs = 500, .flags = CCVM_EXPLORE_QUIET);
 *		struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
 *		int err = ccvm_explore(&sc, &o, &res);
 *
 *		if (err)
 *			printf("run %llu failed: replay it with token %s\n",
 *				   (unsigned long long)res.failed_run, res.token);
 *		ccvm_explore_result_release(&res);
 *		return err != -EPROTO;      // the bug is there: it must be found
 *	}
 */
CCVM_API int ccvm_explore(const struct ccvm_scenario *sc, const struct ccvm_explore_opts *opts,
			  struct ccvm_explore_result *res);

/*
 * ccvm_replay() - Run @sc once under the schedule in @token (from a result
 * or a report).  @opts gives the step bound, events and report stream; its
 * strategy, seeds, runs and shard are ignored.
 * Return: 0 (the run passed); the failure's errno as ccvm_explore(), or
 * -ESTALE (CCVM_EXPLORE_FAIL_DIVERGED: the scenario took another path than
 * the token's, e.g. after a code change); -EINVAL (malformed token or bad
 * arguments, @res untouched).
 * Context: as ccvm_explore().
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// Run again the failure whose token a CI log printed.
 *	int replay_token(const struct ccvm_scenario *sc, const char *token)
 *	{
 *		struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
 *		int err = ccvm_replay(sc, token, NULL, &res);
 *
 *		if (err == -ESTALE)
 *			fprintf(stderr, "the code changed: the schedule no longer applies\n");
 *		else if (err && res.message)
 *			fprintf(stderr, "reproduced:\n%s\n", res.message);
 *		ccvm_explore_result_release(&res);
 *		return err;
 *	}
 */
CCVM_API int ccvm_replay(const struct ccvm_scenario *sc, const char *token,
			 const struct ccvm_explore_opts *opts, struct ccvm_explore_result *res);

/*
 * ccvm_explore_result_release() - Free what a result points to (token,
 * message, events) and clear those fields; the counters stay.  A result
 * released twice, or one that is all zeros but its sz, is fine.
 * Context: any thread.
 * Return: nothing.
 * Example:
 *	// A sweep's step count; what a failure attached is freed, counters stay.
 *	uint64_t explored_steps(const struct ccvm_scenario *sc, const struct ccvm_explore_opts *o)
 *	{
 *		struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
 *
 *		ccvm_explore(sc, o, &res);
 *		ccvm_explore_result_release(&res);  // token, message, events
 *		return res.steps;
 *	}
 */
CCVM_API void ccvm_explore_result_release(struct ccvm_explore_result *res);

/*
 * ccvm_explore_parse_shard() - Parse "i/n" (0 <= i < n) for the shard
 * fields, as a program's --shard option gives it.
 * Context: any thread.
 * Return: 0; -EINVAL (syntax, i >= n, n == 0, overflow; outputs
 * untouched).
 * Example:
 *	#include <stdio.h>
 *	#include <string.h>
 *
 *	// prog --shard 2/8: this process runs the third of eight slices.
 *	int main(int argc, char **argv)
 *	{
 *		struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts);
 *		const char *arg = argc > 2 && !strcmp(argv[1], "--shard") ? argv[2] : "0/1";
 *
 *		if (ccvm_explore_parse_shard(arg, &o.shard_index, &o.shard_count)) {
 *			fprintf(stderr, "--shard %s: want i/n with i < n\n", arg);
 *			return 2;
 *		}
 *		printf("shard %u of %u\n", o.shard_index, o.shard_count);
 *		return 0;
 *	}
 */
CCVM_API int ccvm_explore_parse_shard(const char *s, uint32_t *index, uint32_t *count);

/*
 * ccvm_explore_strategy_name() / ccvm_explore_failure_name() - The name of
 * a strategy ("random", "pct", "dfs") or of a failure (enum
 * ccvm_explore_failure).
 * Context: any thread.
 * Return: a static string; NULL for an unknown value.
 * Example:
 *	#include <stdio.h>
 *
 *	// The last line of a sweep.
 *	void print_summary(const struct ccvm_explore_opts *o, const struct ccvm_explore_result *r)
 *	{
 *		printf("%s: %llu runs, %llu switches: %s\n", ccvm_explore_strategy_name(o->strategy),
 *			   (unsigned long long)r->runs, (unsigned long long)r->switches,
 *			   ccvm_explore_failure_name(r->failure));
 *	}
 */
CCVM_API const char *ccvm_explore_strategy_name(unsigned int strategy);
CCVM_API const char *ccvm_explore_failure_name(unsigned int failure);

/* ---- built-in scenarios ------------------------------------------------------------ */

/*
 * The library ships scenarios that put two of its paths against each other
 * on one range (docs/scheduler.md, section 9 lists them); ccvm-explore runs
 * them by name and `make explore` sweeps them on every backend.
 */
struct ccvm_builtin_scenario {
	const char *name;	/* "conv-fault", ... */
	const char *summary;	/* one line */
	const char *backends;	/* the backends it runs on, space separated */
};

/*
 * ccvm_builtin_scenario() - Entry @i of the registry, in a fixed order.
 * Context: any thread.
 * Return: the entry (static), or NULL past the last one.
 * Example:
 *	#include <stdio.h>
 *
 *	int main(void)
 *	{
 *		const struct ccvm_builtin_scenario *b;
 *
 *		for (size_t i = 0; (b = ccvm_builtin_scenario(i)); i++)
 *			printf("%-20s [%s]\n    %s\n", b->name, b->backends, b->summary);
 *		return 0;
 *	}
 */
CCVM_API const struct ccvm_builtin_scenario *ccvm_builtin_scenario(size_t i);

/*
 * ccvm_builtin_scenario_create() - A scenario to pass to ccvm_explore() or
 * ccvm_replay(): built-in @name on @backend (NULL: @platform's, else
 * "mock"), on platforms made from @platform (NULL: 64 MiB, 2 CPUs; its
 * backend field, if set, must be @backend).  Free it with _destroy().  On
 * an error *@out is left as it was.
 * Context: any thread.
 * Return: 0 with *@out set; -EINVAL (NULL name or out, bad @platform, two
 * different backends); -ENOENT (no such scenario, backend not built);
 * -EOPNOTSUPP (the scenario does not run on @backend); -ENOMEM.
 * Example:
 *	#include <stdio.h>
 *
 *	int main(void)
 *	{
 *		struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
 *			.strategy = CCVM_EXPLORE_RANDOM, .runs = 20, .seed = 1);
 *		struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
 *		struct ccvm_scenario *sc;
 *		int err = ccvm_builtin_scenario_create("conv-fault", "mock", NULL, &sc);
 *
 *		if (err) {      // -ENOENT: no such scenario; -EOPNOTSUPP: not on mock
 *			fprintf(stderr, "conv-fault: %s\n", ccvm_strerror(err));
 *			return 1;
 *		}
 *		err = ccvm_explore(sc, &o, &res);
 *		printf("%llu runs, %llu steps: %s\n", (unsigned long long)res.runs,
 *			   (unsigned long long)res.steps, err ? res.message : "no failure");
 *		ccvm_explore_result_release(&res);
 *		ccvm_builtin_scenario_destroy(sc);
 *		return err != 0;
 *	}
 */
CCVM_API int ccvm_builtin_scenario_create(const char *name, const char *backend,
					  const struct ccvm_platform_opts *platform,
					  struct ccvm_scenario **out);

/*
 * ccvm_builtin_scenario_destroy() - Free a scenario made by
 * ccvm_builtin_scenario_create(); NULL is a no-op.
 * Context: no exploration or replay of @sc is running.
 * Return: nothing.
 * Example:
 *	// ccvm-explore --replay: a built-in scenario, one schedule, then free it.
 *	int replay_builtin(const char *name, const char *backend, const char *token)
 *	{
 *		struct ccvm_scenario *sc;
 *		int err = ccvm_builtin_scenario_create(name, backend, NULL, &sc);
 *
 *		if (err)
 *			return err;
 *		err = ccvm_replay(sc, token, NULL, NULL);
 *		ccvm_builtin_scenario_destroy(sc);  // no replay of it is running now
 *		return err;
 *	}
 */
CCVM_API void ccvm_builtin_scenario_destroy(struct ccvm_scenario *sc);

#ifdef __cplusplus
}
#endif

#endif /* CCVM_EXPLORE_H */
