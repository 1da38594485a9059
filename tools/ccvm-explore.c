/* SPDX-License-Identifier: MIT */
/*
 * ccvm-explore: run a built-in scenario of libccvm under many schedules of
 * the deterministic scheduler, or replay one schedule from its token.
 *
 *   ccvm-explore SCENARIO [--backend B] [--strategy random|pct|dfs]
 *                [--depth D] [--bound P] [--runs N] [--seed S] [--shard i/n]
 *                [--steps N] [--resched N] [--replay TOKEN] [--trace] [--quiet]
 *   ccvm-explore --list
 *
 * Exit status: 0 nothing failed (or the replayed run passed); 1 a failing
 * schedule was found (its report and token are on stdout); 2 bad usage;
 * 3 the scenario could not be set up.  docs/scheduler.md has the details.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ccvm/ccvm.h>
#include <ccvm/explore.h>

struct progress {
	struct timespec start, last;
	uint64_t runs, target;
	bool tty;
	bool printed;
};

static double elapsed(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* One line every second on a terminal, every 10 s otherwise; only on long runs. */
static void on_run(const struct ccvm_explore_run *run, void *ctx)
{
	struct progress *pg = ctx;
	struct timespec now;
	double t;

	(void)run;
	pg->runs++;
	if (pg->runs % 64)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (elapsed(&pg->last, &now) < (pg->tty ? 1.0 : 10.0))
		return;
	pg->last = now;
	t = elapsed(&pg->start, &now);
	if (pg->target)
		fprintf(stderr, "%s%" PRIu64 " / %" PRIu64 " schedules, %.0f s, %.0f /s%s",
			pg->tty ? "\r" : "", pg->runs, pg->target, t, (double)pg->runs / t,
			pg->tty ? "   " : "\n");
	else
		fprintf(stderr, "%s%" PRIu64 " schedules, %.0f s, %.0f /s%s",
			pg->tty ? "\r" : "", pg->runs, t, (double)pg->runs / t,
			pg->tty ? "   " : "\n");
	pg->printed = true;
}

static void on_event(const struct ccvm_sched_event *e, void *ctx)
{
	const char *f = e->file ? strrchr(e->file, '/') : NULL;

	(void)ctx;
	printf("  %6" PRIu64 "  %2u %-12s %-10s %-24s %s:%u\n", e->step, e->thread,
	       e->thread_name, ccvm_sched_op_name(e->op), e->obj ? e->obj : "-",
	       f ? f + 1 : (e->file ? e->file : "-"), e->line);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ccvm-explore SCENARIO [--backend B] [--strategy random|pct|dfs]\n"
		"                    [--depth D] [--bound P] [--runs N] [--seed S] [--shard i/n]\n"
		"                    [--steps N] [--resched N] [--replay TOKEN] [--trace] [--quiet]\n"
		"                    [--no-cache] [--preempt-all]\n"
		"       ccvm-explore --list\n"
		"  --backend B     mock (default), tdx or snp\n"
		"  --strategy S    random (default), pct or dfs\n"
		"  --depth D       pct: bug depth (default 3)\n"
		"  --bound P       dfs: preemption bound (default 2; -1 unbounded)\n"
		"  --runs N        random/pct: schedules (default 1000); dfs: limit (default none)\n"
		"  --seed S        random/pct: run i uses seed S + i (default 0)\n"
		"  --shard i/n     run shard i of n of the sweep\n"
		"  --steps N       steps before a run counts as a livelock (default 100000)\n"
		"  --resched N     long loops yield every N entries (default 64)\n"
		"  --replay TOKEN  run the one schedule of TOKEN\n"
		"  --no-cache      dfs: no state caching\n"
		"  --preempt-all   dfs: also preempt before unlocks, exits and yields\n"
		"  --trace         print every step (of the replayed run, or of every run)\n"
		"  --quiet         no progress line and no failure report, only the summary\n");
}

static void list(void)
{
	const struct ccvm_builtin_scenario *b;
	size_t i;

	for (i = 0; (b = ccvm_builtin_scenario(i)); i++)
		printf("%-16s [%s]\n    %s\n", b->name, b->backends, b->summary);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 0);
	return errno || *end ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
						    .preemption_bound = 2);
	struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .mem_bytes = 64ull << 20, .nr_cpus = 2,
						      .seed = 11);
	const char *name = NULL, *backend = "mock", *replay = NULL;
	struct ccvm_scenario *sc = NULL;
	struct progress pg = { 0 };
	bool trace = false, runs_set = false;
	uint64_t v;
	struct timespec end;
	double t;
	int i, r;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *arg = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--list")) {
			list();
			return 0;
		} else if (!strcmp(a, "--trace")) {
			trace = true;
		} else if (!strcmp(a, "--no-cache")) {
			o.flags |= CCVM_EXPLORE_NO_STATE_CACHE;
		} else if (!strcmp(a, "--preempt-all")) {
			o.flags |= CCVM_EXPLORE_PREEMPT_ALL;
		} else if (!strcmp(a, "--quiet")) {
			o.flags |= CCVM_EXPLORE_QUIET;
		} else if (a[0] != '-') {
			if (name) {
				fprintf(stderr, "ccvm-explore: one scenario at a time\n");
				return 2;
			}
			name = a;
		} else if (!arg) {
			fprintf(stderr, "ccvm-explore: %s needs a value\n", a);
			return 2;
		} else {
			i++;
			if (!strcmp(a, "--backend")) {
				backend = arg;
			} else if (!strcmp(a, "--strategy")) {
				if (!strcmp(arg, "random"))
					o.strategy = CCVM_EXPLORE_RANDOM;
				else if (!strcmp(arg, "pct"))
					o.strategy = CCVM_EXPLORE_PCT;
				else if (!strcmp(arg, "dfs"))
					o.strategy = CCVM_EXPLORE_DFS;
				else
					goto bad;
			} else if (!strcmp(a, "--depth")) {
				if (parse_u64(arg, &v) || !v || v > CCVM_EXPLORE_MAX_PCT_DEPTH)
					goto bad;
				o.pct_depth = (uint32_t)v;
			} else if (!strcmp(a, "--bound")) {
				if (!strcmp(arg, "-1"))
					o.preemption_bound = CCVM_EXPLORE_UNBOUNDED;
				else if (parse_u64(arg, &v) || v > 1000)
					goto bad;
				else
					o.preemption_bound = (int32_t)v;
			} else if (!strcmp(a, "--runs")) {
				if (parse_u64(arg, &v) || !v)
					goto bad;
				o.runs = v;
				runs_set = true;
			} else if (!strcmp(a, "--seed")) {
				if (parse_u64(arg, &v))
					goto bad;
				o.seed = v;
			} else if (!strcmp(a, "--shard")) {
				if (ccvm_explore_parse_shard(arg, &o.shard_index, &o.shard_count))
					goto bad;
			} else if (!strcmp(a, "--steps")) {
				if (parse_u64(arg, &v) || !v)
					goto bad;
				o.step_bound = v;
			} else if (!strcmp(a, "--resched")) {
				if (parse_u64(arg, &v) || !v || v > UINT32_MAX)
					goto bad;
				po.resched_entries = (uint32_t)v;
			} else if (!strcmp(a, "--replay")) {
				replay = arg;
			} else {
				fprintf(stderr, "ccvm-explore: unknown option %s\n", a);
				usage(stderr);
				return 2;
			}
			continue;
bad:
			fprintf(stderr, "ccvm-explore: bad value for %s: %s\n", a, arg);
			return 2;
		}
	}
	if (!name) {
		usage(stderr);
		return 2;
	}
	if (!runs_set && o.strategy != CCVM_EXPLORE_DFS)
		o.runs = 1000;
	po.backend = backend;
	r = ccvm_builtin_scenario_create(name, backend, &po, &sc);
	if (r) {
		fprintf(stderr, "ccvm-explore: scenario %s on %s: %s%s\n", name, backend,
			ccvm_strerror(r), r == -ENOENT ? " (--list names the scenarios)" : "");
		return 3;
	}
	o.report = stdout;
	if (trace)
		o.event_fn = on_event;
	pg.tty = isatty(STDERR_FILENO);
	pg.target = o.strategy == CCVM_EXPLORE_DFS ? o.runs : o.runs / (o.shard_count > 1 ?
									o.shard_count : 1);
	o.run_fn = (o.flags & CCVM_EXPLORE_QUIET) ? NULL : on_run;
	o.fn_ctx = &pg;
	clock_gettime(CLOCK_MONOTONIC, &pg.start);
	pg.last = pg.start;
	if (replay)
		r = ccvm_replay(sc, replay, &o, &res);
	else
		r = ccvm_explore(sc, &o, &res);
	clock_gettime(CLOCK_MONOTONIC, &end);
	t = elapsed(&pg.start, &end);
	if (pg.printed && pg.tty)
		fputc('\n', stderr);
	if (r && !res.failure) {
		fprintf(stderr, "ccvm-explore: %s on %s: %s\n", name, backend, ccvm_strerror(r));
		ccvm_builtin_scenario_destroy(sc);
		return r == -EINVAL ? 2 : 3;
	}
	if (replay) {
		printf("%s on %s: replay: %s\n", name, backend,
		       res.failure ? ccvm_explore_failure_name(res.failure) : "passed");
	} else {
		printf("%s on %s: %s", name, backend, ccvm_explore_strategy_name(o.strategy));
		if (o.strategy == CCVM_EXPLORE_DFS)
			printf(" bound %d", o.preemption_bound);
		else if (o.strategy == CCVM_EXPLORE_PCT)
			printf(" depth %u (k = %" PRIu64 ")", o.pct_depth ? o.pct_depth : 3,
			       res.pct_steps);
		if (o.shard_count > 1)
			printf(" shard %u/%u", o.shard_index, o.shard_count);
		printf(": %" PRIu64 " schedules%s", res.runs,
		       res.exhausted ? " (exhausted)" : "");
		if (res.pruned)
			printf(" (%" PRIu64 " distinct, %" PRIu64 " pruned)", res.runs - res.pruned,
			       res.pruned);
		if (res.states)
			printf(", %" PRIu64 " states cached", res.states);
		printf(", %s, max %" PRIu64 " steps, %.1f s, %.0f schedules/s\n",
		       res.failure ? ccvm_explore_failure_name(res.failure) : "no failure",
		       res.max_steps, t, t > 0 ? (double)res.runs / t : 0.0);
	}
	if (res.failure && res.token)
		printf("token: %s\n", res.token);
	r = res.failure ? 1 : 0;
	ccvm_explore_result_release(&res);
	ccvm_builtin_scenario_destroy(sc);
	return r;
}
