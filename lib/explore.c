/* SPDX-License-Identifier: MIT */
/*
 * The explorer: many runs of a scenario, each on a fresh platform under one
 * schedule of the deterministic scheduler (lib/sched.c), until one fails.
 *
 * Run i of a random or PCT sweep uses seed + i, whatever else ran before or
 * beside it, so a shard (runs with i % n == shard) is a pure slice of the
 * sweep.  PCT needs the run length k: it is measured once, by the FIFO
 * schedule, before the sweep, so every shard uses the same k.  DFS is
 * stateless (CHESS): each run replays the recorded prefix of choices and
 * extends it with the default choice, noting the alternatives; the next
 * run backtracks to the deepest alternative left.  Shards split the tree at
 * its first branching nodes (sched.c, alt_range()).
 *
 * A failed run unwinds its threads (sched.c) and returns here; its platform
 * is destroyed if it can be (a run that failed half-way through a library
 * call may leave VMs behind, which then leak: the sweep stops at the first
 * failure anyway).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ccvm/explore.h>

#include "internal.h"
#include "scheduler.h"

#define DEFAULT_RUNS		1000
#define DEFAULT_PCT_DEPTH	3
#define DEFAULT_LAST_EVENTS	32

static const char *const strategy_names[CCVM_EXPLORE_NR] = {
	[CCVM_EXPLORE_RANDOM] = "random",
	[CCVM_EXPLORE_PCT] = "pct",
	[CCVM_EXPLORE_DFS] = "dfs",
};

static const char *const failure_names[] = {
	[CCVM_EXPLORE_OK] = "ok",
	[CCVM_EXPLORE_FAIL_SCENARIO] = "scenario error",
	[CCVM_EXPLORE_FAIL_CHECK] = "check failed",
	[CCVM_EXPLORE_FAIL_DEADLOCK] = "deadlock",
	[CCVM_EXPLORE_FAIL_LIVELOCK] = "livelock",
	[CCVM_EXPLORE_FAIL_MISUSE] = "sync misuse",
	[CCVM_EXPLORE_FAIL_DIVERGED] = "replay diverged",
};

const char *ccvm_explore_strategy_name(unsigned int strategy)
{
	return strategy < CCVM_EXPLORE_NR ? strategy_names[strategy] : NULL;
}

const char *ccvm_explore_failure_name(unsigned int failure)
{
	return failure < CCVM_ARRAY_SIZE(failure_names) ? failure_names[failure] : NULL;
}

int ccvm_explore_parse_shard(const char *str, uint32_t *index, uint32_t *count)
{
	unsigned long long i, n;
	char *end;

	if (!str || !index || !count || *str < '0' || *str > '9')
		return -EINVAL;
	errno = 0;
	i = strtoull(str, &end, 10);
	if (errno || *end != '/' || end[1] < '0' || end[1] > '9')
		return -EINVAL;
	n = strtoull(end + 1, &end, 10);
	if (errno || *end || !n || n > UINT32_MAX || i >= n)
		return -EINVAL;
	*index = (uint32_t)i;
	*count = (uint32_t)n;
	return 0;
}

/* ---- crash reports ----------------------------------------------------------- */

/*
 * While a run is on, a fatal signal or a sanitizer's death first writes the
 * running schedule's token to stderr with write(2), then the previous
 * handler runs as if we were not there.
 */
static struct ccvm_sched *volatile crash_sched;
static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
static struct sigaction crash_old[CCVM_ARRAY_SIZE(crash_signals)];
static bool crash_installed;

/* Weak: present only in sanitizer builds. */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

static void crash_report(void)
{
	struct ccvm_sched *s = crash_sched;

	if (!s)
		return;
	crash_sched = NULL;
	ccvm_sched_write_token(s, STDERR_FILENO,
			       "ccvm-explore: the process died during a schedule; replay it with "
			       "ccvm_replay() and the token ");
}

static void crash_handler(int sig, siginfo_t *si, void *uc)
{
	unsigned int i;

	(void)uc;
	crash_report();
	for (i = 0; i < CCVM_ARRAY_SIZE(crash_signals); i++)
		if (crash_signals[i] == sig)
			sigaction(sig, &crash_old[i], NULL);
	/* A fault re-executes and meets the old handler; a sent signal is re-sent. */
	if (si->si_code <= 0 || sig == SIGABRT)
		raise(sig);
}

static void crash_install(void)
{
	struct sigaction sa;
	unsigned int i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = crash_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < CCVM_ARRAY_SIZE(crash_signals); i++)
		sigaction(crash_signals[i], &sa, &crash_old[i]);
	if (__sanitizer_set_death_callback)
		__sanitizer_set_death_callback(crash_report);
	crash_installed = true;
}

static void crash_uninstall(void)
{
	unsigned int i;

	if (!crash_installed)
		return;
	for (i = 0; i < CCVM_ARRAY_SIZE(crash_signals); i++)
		sigaction(crash_signals[i], &crash_old[i], NULL);
	if (__sanitizer_set_death_callback)
		__sanitizer_set_death_callback(NULL);
	crash_installed = false;
}

/* ---- one run ------------------------------------------------------------------- */

struct explore {
	struct ccvm_scenario sc;
	struct ccvm_explore_opts o;
	struct ccvm_sched *s;
	struct ccvm_explore_result r;	/* full size; copied out at the end */
	FILE *out;
	int setup_err;			/* platform creation failed: not a finding */
};

static int run_once(struct explore *x)
{
	struct ccvm_sched *s = x->s;
	struct ccvm_platform *volatile p = NULL;
	volatile int err = 0;
	int status, r;

	ccvm_sched_run_begin(s, true);
	crash_sched = s;
	if (setjmp(s->threads[0].start) == 0) {
		struct ccvm_platform *pp = NULL;

		err = ccvm_platform_create(x->sc.platform, &pp);
		if (err)
			x->setup_err = err;
		else
			p = pp;
		if (!err) {
			/* From here the platform is the scenario's: check it. */
			s->checks_armed = true;
			err = x->sc.run(pp, x->sc.ctx);
		}
	}
	/* Here normally, or by longjmp from wherever thread 0 was unwound. */
	status = ccvm_sched_run_finish(s, err);
	crash_sched = NULL;
	ccvm_sched_run_end(s);
	if (p) {
		r = ccvm_platform_destroy(p);
		if (r)
			ccvm_log(CCVM_LOG_WARN, "explore: the platform of a failed run could not "
				 "be destroyed (%s); it is leaked", ccvm_strerror(r));
	}
	x->r.steps += s->step;
	x->r.switches += s->nswitch;
	x->r.checks += s->nr_checks;
	if (s->step > x->r.max_steps)
		x->r.max_steps = s->step;
	return status;
}

static void run_callback(struct explore *x, uint64_t index, uint64_t seed, int status)
{
	struct ccvm_explore_run run = {
		.index = index, .seed = seed, .steps = x->s->step,
		.switches = x->s->nswitch, .status = status,
	};
	char *token = NULL;

	if (!x->o.run_fn)
		return;
	if (ccvm_sched_token(x->s, &token))
		return;
	run.token = token;
	x->o.run_fn(&run, x->o.fn_ctx);
	free(token);
}

/* ---- failure reports -------------------------------------------------------------- */

static void print_report(struct explore *x)
{
	const struct ccvm_explore_result *r = &x->r;
	FILE *f = x->out;
	uint32_t i;

	fprintf(f, "ccvm-explore: scenario \"%s\": %s (%s)",
		x->sc.name ? x->sc.name : "?", ccvm_explore_failure_name(r->failure),
		ccvm_strerror(r->error));
	if (r->failed_run == UINT64_MAX)
		fprintf(f, " in the PCT calibration run (FIFO schedule)\n");
	else if (x->s->strategy == CCVM_SCHED_REPLAY)
		fprintf(f, " in the replayed run\n");
	else if (x->o.strategy == CCVM_EXPLORE_DFS)
		fprintf(f, " in run %llu (dfs)\n", (unsigned long long)r->failed_run);
	else
		fprintf(f, " in run %llu (%s, seed %llu)\n", (unsigned long long)r->failed_run,
			ccvm_explore_strategy_name(x->o.strategy),
			(unsigned long long)r->failed_seed);
	if (r->message)
		fputs(r->message, f);
	if (r->nr_events)
		fprintf(f, "last %u steps:\n", r->nr_events);
	for (i = 0; i < r->nr_events; i++) {
		const struct ccvm_sched_event *e = &r->events[i];
		const char *file = e->file ? strrchr(e->file, '/') : NULL;

		file = file ? file + 1 : e->file;
		fprintf(f, "  %6llu  %2u %-12s %-10s %-20s ", (unsigned long long)e->step,
			e->thread, e->thread_name, ccvm_sched_op_name(e->op),
			e->obj ? e->obj : "-");
		if (file)
			fprintf(f, "%s:%u\n", file, e->line);
		else
			fprintf(f, "-\n");
	}
	if (r->token)
		fprintf(f, "replay token: %s\n", r->token);
	fflush(f);
}

/* The run just done failed with @status: fill the result and print it. */
static void record_failure(struct explore *x, int status, uint64_t index, uint64_t seed)
{
	struct ccvm_explore_result *r = &x->r;
	struct ccvm_sched *s = x->s;
	uint32_t n = x->o.last_events;

	r->failure = s->failure ? s->failure : CCVM_EXPLORE_FAIL_SCENARIO;
	r->error = status;
	r->failed_run = index;
	r->failed_seed = seed;
	if (ccvm_sched_token(s, &r->token))
		r->token = NULL;
	r->message = strdup(s->msg);
	r->events = calloc(n, sizeof(*r->events));
	if (r->events)
		r->nr_events = ccvm_sched_last_events(s, r->events, n);
	if (!(x->o.flags & CCVM_EXPLORE_QUIET))
		print_report(x);
}

/* ---- sweeps -------------------------------------------------------------------------- */

static int sweep_seeds(struct explore *x)
{
	uint64_t n = x->o.shard_count > 1 ? x->o.shard_count : 1, i;
	struct ccvm_sched *s = x->s;
	int status;

	if (x->o.strategy == CCVM_EXPLORE_PCT) {
		s->pct_depth = x->o.pct_depth;
		s->pct_steps = x->o.pct_steps;
		if (!s->pct_steps) {
			s->strategy = CCVM_SCHED_FIFO;
			status = run_once(x);
			if (x->setup_err)
				return x->setup_err;
			if (status) {
				record_failure(x, status, UINT64_MAX, 0);
				return status;
			}
			s->pct_steps = s->step ? s->step : 1;
		}
		x->r.pct_steps = s->pct_steps;
		s->strategy = CCVM_SCHED_PCT;
	} else {
		s->strategy = CCVM_SCHED_RANDOM;
	}
	for (i = x->o.shard_index; i < x->o.runs; i += n) {
		s->seed = x->o.seed + i;
		status = run_once(x);
		if (x->setup_err)
			return x->setup_err;
		x->r.runs++;
		run_callback(x, i, s->seed, status);
		if (status) {
			record_failure(x, status, i, s->seed);
			return status;
		}
	}
	return 0;
}

static int sweep_dfs(struct explore *x)
{
	struct ccvm_sched *s = x->s;
	uint64_t index;
	int status;

	s->strategy = CCVM_SCHED_DFS;
	s->bound = x->o.preemption_bound;
	/* Sleep sets are sound only without a preemption bound (docs/scheduler.md). */
	s->sleep_sets = s->bound < 0 && !(x->o.flags & CCVM_EXPLORE_NO_SLEEP_SETS);
	s->preempt_all = x->o.flags & CCVM_EXPLORE_PREEMPT_ALL;
	/* Caching and sleep sets together need more care than this: one or the other. */
	s->cache = !s->sleep_sets && !(x->o.flags & CCVM_EXPLORE_NO_STATE_CACHE);
	if (s->cache && !s->objs) {
		s->objs = calloc(CCVM_SCHED_OBJS, sizeof(*s->objs));
		s->cache = s->objs != NULL;
	}
	s->prefix = s->nr_nodes = 0;
	for (index = 0;; index++) {
		if (x->o.runs && x->r.runs >= x->o.runs)
			return 0;
		status = run_once(x);
		if (x->setup_err)
			return x->setup_err;
		if (ccvm_sched_dfs_owned(s)) {
			x->r.runs++;
			x->r.pruned += s->dfs_off;
			x->r.cached = s->cache_hits;
			x->r.states = s->nr_seen;
			run_callback(x, index, 0, status);
			if (status) {
				record_failure(x, status, index, 0);
				return status;
			}
		}
		if (!ccvm_sched_dfs_next(s)) {
			x->r.exhausted = true;
			return 0;
		}
	}
}

/* ---- API ------------------------------------------------------------------------------ */

static int explore_setup(struct explore *x, const struct ccvm_scenario *sc,
			 const struct ccvm_explore_opts *opts, struct ccvm_explore_result *res)
{
	int err;

	memset(x, 0, sizeof(*x));
	if (!sc || (res && res->sz < sizeof(size_t)))
		return -EINVAL;
	err = ccvm_opts_copy(&x->sc, sizeof(x->sc), sc, sc->sz);
	if (err || !sc->sz || !x->sc.run)
		return -EINVAL;
	err = ccvm_opts_copy(&x->o, sizeof(x->o), opts, opts ? opts->sz : 0);
	if (err)
		return err;
	if (x->o.strategy >= CCVM_EXPLORE_NR || x->o.pct_depth > CCVM_EXPLORE_MAX_PCT_DEPTH ||
	    x->o.preemption_bound < CCVM_EXPLORE_UNBOUNDED ||
	    x->o.last_events > CCVM_EXPLORE_MAX_EVENTS ||
	    x->o.flags & ~(CCVM_EXPLORE_QUIET | CCVM_EXPLORE_NO_SLEEP_SETS |
			   CCVM_EXPLORE_NO_CRASH_HANDLER | CCVM_EXPLORE_NO_LIBRARY_CHECK |
			   CCVM_EXPLORE_NO_STATE_CACHE | CCVM_EXPLORE_PREEMPT_ALL) ||
	    (x->o.shard_count ? x->o.shard_index >= x->o.shard_count : x->o.shard_index))
		return -EINVAL;
	if (!opts || (!x->o.runs && x->o.strategy != CCVM_EXPLORE_DFS))
		x->o.runs = DEFAULT_RUNS;
	if (!x->o.pct_depth)
		x->o.pct_depth = DEFAULT_PCT_DEPTH;
	if (!x->o.last_events)
		x->o.last_events = DEFAULT_LAST_EVENTS;
	if (!x->o.step_bound)
		x->o.step_bound = CCVM_SCHED_DEFAULT_STEP_BOUND;
	x->out = x->o.report ? x->o.report : stderr;
	/* Not from inside another schedule: its thread 0 is taken. */
	if (ccvm_sched_caller_controlled())
		return -EINVAL;
	err = ccvm_sched_new(&x->s);
	if (err)
		return err;
	x->s->refs = 1;
	x->s->sc = &x->sc;
	x->s->lib_check = !(x->o.flags & CCVM_EXPLORE_NO_LIBRARY_CHECK);
	x->s->step_bound = x->o.step_bound;
	x->s->shard_index = x->o.shard_index;
	x->s->shard_count = x->o.shard_count > 1 ? x->o.shard_count : 1;
	x->s->event_fn = x->o.event_fn;
	x->s->event_ctx = x->o.fn_ctx;
	x->r.sz = sizeof(x->r);
	return 0;
}

/* Copy the result out under the caller's size; what does not fit is freed. */
static void explore_finish(struct explore *x, struct ccvm_explore_result *res)
{
	size_t sz;

	if (res) {
		sz = res->sz < sizeof(x->r) ? res->sz : sizeof(x->r);
		if (sz < offsetof(struct ccvm_explore_result, token) + sizeof(char *)) {
			free(x->r.token);
			x->r.token = NULL;
		}
		if (sz < offsetof(struct ccvm_explore_result, message) + sizeof(char *)) {
			free(x->r.message);
			x->r.message = NULL;
		}
		if (sz < offsetof(struct ccvm_explore_result, nr_events) + sizeof(uint32_t)) {
			free(x->r.events);
			x->r.events = NULL;
		}
		x->r.sz = res->sz;
		memcpy(res, &x->r, sz);
	} else {
		ccvm_explore_result_release(&x->r);
	}
	if (!(x->o.flags & CCVM_EXPLORE_NO_CRASH_HANDLER))
		crash_uninstall();
	ccvm_sched_free(x->s);
}

int ccvm_explore(const struct ccvm_scenario *sc, const struct ccvm_explore_opts *opts,
		 struct ccvm_explore_result *res)
{
	struct explore x;
	int err;

	err = explore_setup(&x, sc, opts, res);
	if (err) {
		ccvm_sched_free(x.s);
		return err;
	}
	if (!(x.o.flags & CCVM_EXPLORE_NO_CRASH_HANDLER))
		crash_install();
	if (x.o.strategy == CCVM_EXPLORE_DFS)
		err = sweep_dfs(&x);
	else
		err = sweep_seeds(&x);
	explore_finish(&x, res);
	return err;
}

int ccvm_replay(const struct ccvm_scenario *sc, const char *token,
		const struct ccvm_explore_opts *opts, struct ccvm_explore_result *res)
{
	struct explore x;
	int err, status;

	if (!token)
		return -EINVAL;
	err = explore_setup(&x, sc, opts, res);
	if (!err)
		err = ccvm_sched_load_token(x.s, token);
	if (err) {
		ccvm_sched_free(x.s);
		return err;
	}
	if (!(x.o.flags & CCVM_EXPLORE_NO_CRASH_HANDLER))
		crash_install();
	x.s->strategy = CCVM_SCHED_REPLAY;
	status = run_once(&x);
	if (x.setup_err) {
		status = x.setup_err;
	} else {
		x.r.runs = 1;
		if (status)
			record_failure(&x, status, 0, 0);
	}
	explore_finish(&x, res);
	return status;
}

void ccvm_explore_result_release(struct ccvm_explore_result *res)
{
	if (!res || res->sz < offsetof(struct ccvm_explore_result, nr_events))
		return;
	free(res->token);
	free(res->message);
	free(res->events);
	res->token = NULL;
	res->message = NULL;
	res->events = NULL;
	res->nr_events = 0;
}
