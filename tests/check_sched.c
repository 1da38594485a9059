/* SPDX-License-Identifier: MIT */
/*
 * The deterministic scheduler, the sync layer and the explorer, on
 * synthetic threads (no VM): determinism, the three strategies finding a
 * lost update, exhaustive DFS with exact schedule counts, deadlock and
 * livelock reports, condition, rwlock, try-lock and spin-wait semantics,
 * shards, replay tokens, crash tokens, the free-running and direct serial
 * modes, and bad input.
 *
 * Scenario state lives in a context struct that each run resets, since the
 * explorer runs a scenario many times in one process.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include <inttypes.h>

#include <ccvm/explore.h>
#include <ccvm/sync.h>

/* DFS over the tree as it is: no state cache, preemptions before releases too. */
#define RAW	(CCVM_EXPLORE_NO_STATE_CACHE | CCVM_EXPLORE_PREEMPT_ALL)

static const struct ccvm_platform_opts small_platform = {
	.sz = sizeof(struct ccvm_platform_opts),
	.backend = "mock",
	.mem_bytes = 16 * 4096,
};

static struct ccvm_scenario scenario(const char *name,
				     int (*run)(struct ccvm_platform *, void *), void *ctx)
{
	return CCVM_OPTS_INIT(struct ccvm_scenario, .name = name, .run = run, .ctx = ctx,
			      .platform = &small_platform);
}

static struct ccvm_explore_opts quiet(uint32_t strategy)
{
	return CCVM_OPTS_INIT(struct ccvm_explore_opts, .strategy = strategy,
			      .flags = CCVM_EXPLORE_QUIET);
}

#define RESULT_INIT	CCVM_OPTS_INIT(struct ccvm_explore_result)

/* Create @n threads running @fn(@arg[i]) and join them; first error wins. */
static int spawn_join(struct ccvm_platform *p, unsigned int n, ccvm_thread_fn fn,
		      void *const *arg, const char *const *names)
{
	struct ccvm_thread *t[8];
	unsigned int i;
	int err = 0, ret, r;

	for (i = 0; i < n; i++) {
		r = ccvm_thread_create(p, &t[i], fn, arg[i], names[i]);
		ck_assert_int_eq(r, 0);
	}
	for (i = 0; i < n; i++) {
		ret = 0;
		r = ccvm_thread_join(t[i], &ret);
		if (!err)
			err = r ? r : ret;
	}
	return err;
}

/* ---- determinism: four threads, one seed, byte-identical logs ------------------- */

struct mix {
	struct ccvm_sched *s;
	struct ccvm_mutex m;
	struct ccvm_rwlock l;
	struct ccvm_cond c;
	int counter, word;
};

static int mix_worker(void *arg)
{
	struct mix *x = arg;
	int i, v;

	for (i = 0; i < 4; i++) {
		ccvm_mutex_lock(&x->m);
		x->counter++;
		ccvm_cond_broadcast(&x->c);
		ccvm_mutex_unlock(&x->m);
		ccvm_rwlock_rdlock(&x->l);
		v = x->word;
		ccvm_rwlock_unlock(&x->l);
		ccvm_sched_point(x->s, &x->word, "word");
		ccvm_rwlock_wrlock(&x->l);
		x->word = v + 1;
		ccvm_rwlock_unlock(&x->l);
	}
	return 0;
}

static int mix_run(struct ccvm_platform *p, void *ctx)
{
	static const char *const names[] = { "w0", "w1", "w2", "w3" };
	struct mix *x = ctx;
	void *args[4] = { x, x, x, x };
	int err;

	memset(x, 0, sizeof(*x));
	x->s = ccvm_platform_sched(p);
	ck_assert_ptr_nonnull(x->s);
	ck_assert_int_eq(ccvm_mutex_init(&x->m, x->s, "m"), 0);
	ck_assert_int_eq(ccvm_rwlock_init(&x->l, x->s, "l"), 0);
	ck_assert_int_eq(ccvm_cond_init(&x->c, x->s, "c"), 0);
	err = spawn_join(p, 4, mix_worker, args, names);
	ccvm_cond_destroy(&x->c);
	ccvm_rwlock_destroy(&x->l);
	ccvm_mutex_destroy(&x->m);
	if (!err && x->counter != 16)
		err = -EPROTO;
	return err;
}

struct log {
	char buf[1 << 16];
	size_t len;
};

static void log_event(const struct ccvm_sched_event *ev, void *ctx)
{
	struct log *lg = ctx;
	int n = snprintf(lg->buf + lg->len, sizeof(lg->buf) - lg->len, "%llu %u %s %s %s:%u\n",
			 (unsigned long long)ev->step, ev->thread, ccvm_sched_op_name(ev->op),
			 ev->obj ? ev->obj : "-", ev->func ? ev->func : "-", ev->line);

	if (n > 0 && (size_t)n < sizeof(lg->buf) - lg->len)
		lg->len += (size_t)n;
}

static void mix_log(uint64_t seed, struct log *lg)
{
	struct mix x;
	struct ccvm_scenario sc = scenario("mix4", mix_run, &x);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_RANDOM);
	struct ccvm_explore_result res = RESULT_INIT;

	o.seed = seed;
	o.runs = 1;
	o.event_fn = log_event;
	o.fn_ctx = lg;
	lg->len = 0;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert_uint_eq(res.runs, 1);
	ck_assert_uint_gt(res.switches, 10);
	ccvm_explore_result_release(&res);
}

START_TEST(test_determinism)
{
	static struct log first, again, other;
	int i;

	mix_log(42, &first);
	ck_assert_uint_gt(first.len, 0);
	ck_assert_uint_lt(first.len, sizeof(first.buf) - 1);
	for (i = 0; i < 100; i++) {
		mix_log(42, &again);
		ck_assert_uint_eq(again.len, first.len);
		ck_assert(!memcmp(again.buf, first.buf, first.len));
	}
	mix_log(43, &other);
	ck_assert(other.len != first.len || memcmp(other.buf, first.buf, first.len));
}
END_TEST

/* ---- a lost update, found by every strategy and replayed ---------------------- */

struct lost {
	struct ccvm_sched *s;
	struct ccvm_mutex m;
	bool locked;
	int counter;
};

static int lost_worker(void *arg)
{
	struct lost *c = arg;
	int v;

	if (c->locked)
		ccvm_mutex_lock(&c->m);
	v = c->counter;
	ccvm_sched_point(c->s, &c->counter, "between load and store");
	c->counter = v + 1;
	if (c->locked)
		ccvm_mutex_unlock(&c->m);
	return 0;
}

static int lost_run(struct ccvm_platform *p, void *ctx)
{
	static const char *const names[] = { "inc0", "inc1" };
	struct lost *c = ctx;
	void *args[2] = { c, c };
	int err;

	c->s = ccvm_platform_sched(p);
	c->counter = 0;
	ccvm_mutex_init(&c->m, c->s, "counter_lock");
	err = spawn_join(p, 2, lost_worker, args, names);
	ccvm_mutex_destroy(&c->m);
	return err ? err : c->counter == 2 ? 0 : -EPROTO;
}

static void lost_found(uint32_t strategy, uint32_t depth, int32_t bound)
{
	struct lost c = { .locked = false };
	struct ccvm_scenario sc = scenario("lost-update", lost_run, &c);
	struct ccvm_explore_opts o = quiet(strategy);
	struct ccvm_explore_result res = RESULT_INIT, again = RESULT_INIT;
	char *token;

	o.runs = strategy == CCVM_EXPLORE_DFS ? 0 : 200;
	o.pct_depth = depth;
	o.preemption_bound = bound;
	o.seed = 1;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EPROTO);
	ck_assert_uint_eq(res.failure, CCVM_EXPLORE_FAIL_SCENARIO);
	ck_assert_int_eq(res.error, -EPROTO);
	ck_assert_ptr_nonnull(res.token);
	ck_assert_ptr_nonnull(res.message);
	ck_assert_ptr_nonnull(strstr(res.message, "returned -71"));
	ck_assert_uint_gt(res.nr_events, 0);
	ck_assert_uint_le(res.runs, o.runs ? o.runs : 100);
	token = res.token;

	/* The token replays the failure exactly, twice. */
	ck_assert_int_eq(ccvm_replay(&sc, token, &o, &again), -EPROTO);
	ck_assert_uint_eq(again.failure, CCVM_EXPLORE_FAIL_SCENARIO);
	ck_assert_str_eq(again.token, token);
	ccvm_explore_result_release(&again);
	ck_assert_int_eq(ccvm_replay(&sc, token, &o, NULL), -EPROTO);

	/* With the lock held the same schedule cannot exist: the scenario took another path. */
	c.locked = true;
	ck_assert_int_eq(ccvm_replay(&sc, token, &o, &again), -ESTALE);
	ck_assert_uint_eq(again.failure, CCVM_EXPLORE_FAIL_DIVERGED);
	ck_assert_ptr_nonnull(strstr(again.message, "diverged"));
	ccvm_explore_result_release(&again);
	ccvm_explore_result_release(&res);
}

START_TEST(test_lost_update_random)
{
	lost_found(CCVM_EXPLORE_RANDOM, 0, 0);
}
END_TEST

START_TEST(test_lost_update_pct)
{
	lost_found(CCVM_EXPLORE_PCT, 2, 0);
}
END_TEST

START_TEST(test_lost_update_dfs)
{
	lost_found(CCVM_EXPLORE_DFS, 0, 1);
}
END_TEST

/* With the lock, every schedule is correct: DFS exhausts the space. */
START_TEST(test_lost_update_locked_exhaustive)
{
	struct lost c = { .locked = true };
	struct ccvm_scenario sc = scenario("locked-update", lost_run, &c);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;

	o.preemption_bound = CCVM_EXPLORE_UNBOUNDED;
	o.flags |= CCVM_EXPLORE_NO_SLEEP_SETS | RAW;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert(res.exhausted);
	ck_assert_uint_gt(res.runs, 10);
	ck_assert_uint_eq(res.pruned, 0);
	ck_assert_uint_eq(res.failure, CCVM_EXPLORE_OK);
	ck_assert_ptr_null(res.token);

	/* Sleep sets cut the same space down and still find nothing. */
	o.flags &= ~CCVM_EXPLORE_NO_SLEEP_SETS;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert(res.exhausted);
	ck_assert_uint_gt(res.runs - res.pruned, 0);
}
END_TEST

/* ---- exact schedule counts ------------------------------------------------------------ */

/*
 * main: create(A) create(B) join(A) join(B); A and B: start, point, exit.
 * Ten steps (after the two of the platform's creation, where main alone
 * runs: the call and return of the backend's platform_init op); a schedule is an order of them that respects each thread's
 * program order, "B starts after create(B)" and "join(X) after X's exit".
 * create(A) is first and join(B) last (it comes after everything), so the
 * count is the interleavings of the chains a1 a2 a3 join(A) and create(B)
 * b1 b2 b3 with create(B) before join(A): C(8,4) = 70 minus the one that
 * puts all of A's chain first, 69.
 * With no preemption (bound 0) a switch happens only where the running
 * thread blocks or ends.  main does cA cB and blocks in join(A); A or B
 * may run.  A: it runs to its end, then main (join(A) now possible) or B
 * may run, and each order ends one way: 2 schedules.  B: it runs to its
 * end, then only A can run: 1 schedule.  3 in all.
 * Dependent steps for sleep sets: creations share the thread table,
 * start/exit/join of X share X, the points have one object each: every
 * interleaving is equivalent, and sleep sets keep 1 run.  With both points
 * on one word (tiny_shared) the points conflict: 2 Mazurkiewicz traces (A's
 * point first or B's), and sleep sets keep one run of each.
 */
struct tiny {
	struct ccvm_sched *s;
	int word[2];
};

static struct tiny *tiny_ctx;
static bool tiny_shared;		/* both workers' points on word[0] */

static int tiny_worker(void *arg)
{
	int *w = arg;

	ccvm_sched_point(tiny_ctx->s, w, "tiny point");
	return 0;
}

static int tiny_run(struct ccvm_platform *p, void *ctx)
{
	static const char *const names[] = { "A", "B" };
	struct tiny *t = ctx;
	void *args[2] = { &t->word[0], &t->word[tiny_shared ? 0 : 1] };

	t->s = ccvm_platform_sched(p);
	tiny_ctx = t;
	return spawn_join(p, 2, tiny_worker, args, names);
}


static uint64_t tiny_count_flags(int32_t bound, uint32_t flags, uint64_t *kept)
{
	struct tiny t;
	struct ccvm_scenario sc = scenario("tiny", tiny_run, &t);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;

	o.preemption_bound = bound;
	o.flags |= flags;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert(res.exhausted);
	ck_assert_uint_eq(res.max_steps, 2 + 10);
	if (kept)
		*kept = res.runs - res.pruned;
	return res.runs;
}

static uint64_t tiny_count(int32_t bound, bool sleep_sets, uint64_t *kept)
{
	return tiny_count_flags(bound, RAW | (sleep_sets ? 0 : CCVM_EXPLORE_NO_SLEEP_SETS), kept);
}

START_TEST(test_dfs_counts)
{
	uint64_t kept = 0;

	ck_assert_uint_eq(tiny_count(CCVM_EXPLORE_UNBOUNDED, false, NULL), 69);
	ck_assert_uint_eq(tiny_count(0, false, NULL), 3);
	/* Preemption bounds 1 and 2, counted by enumerating the same rules. */
	ck_assert_uint_eq(tiny_count(1, false, NULL), 12);
	ck_assert_uint_eq(tiny_count(2, false, NULL), 32);
	tiny_count(CCVM_EXPLORE_UNBOUNDED, true, &kept);
	ck_assert_uint_eq(kept, 1);
	tiny_shared = true;
	/* The raw tree does not depend on what the steps touch. */
	ck_assert_uint_eq(tiny_count(CCVM_EXPLORE_UNBOUNDED, false, NULL), 69);
	tiny_count(CCVM_EXPLORE_UNBOUNDED, true, &kept);
	ck_assert_uint_eq(kept, 2);
	tiny_shared = false;
	/* A bound disables sleep sets (not sound together): same count as without. */
	ck_assert_uint_eq(tiny_count(1, true, NULL), 12);
}
END_TEST

/*
 * The reductions of bounded DFS on the same program.  No preemption before
 * a release (here: the workers' exits; main's joins follow them, and
 * with a bound a join of an ended worker runs at once, as an invisible
 * step, docs/scheduler.md 4.3): bound 1
 * drops the schedules that preempt A or B just before its exit, bound 2
 * likewise.  State caching then cuts the runs that reach a state an
 * equivalent interleaving reached before with no more preemptions spent;
 * the runs it keeps still hold one of each Mazurkiewicz trace (a run is
 * cut only where one of its kept equivalents went on): 2 with the points
 * on one word.
 */
START_TEST(test_dfs_reductions)
{
	uint64_t kept = 0, runs, release_only;

	/* Fewer than the raw 12 and 32 of test_dfs_counts, more than bound 0's 3. */
	release_only = tiny_count_flags(1, CCVM_EXPLORE_NO_STATE_CACHE, NULL);
	ck_assert_uint_lt(release_only, 12);
	ck_assert_uint_gt(release_only, 3);
	release_only = tiny_count_flags(2, CCVM_EXPLORE_NO_STATE_CACHE, NULL);
	ck_assert_uint_lt(release_only, 32);
	ck_assert_uint_gt(release_only, 3);
	tiny_shared = true;
	runs = tiny_count_flags(2, 0, &kept);
	ck_assert_uint_le(runs, release_only);
	ck_assert_uint_lt(kept, release_only);
	ck_assert_uint_ge(kept, 2);
	runs = tiny_count_flags(CCVM_EXPLORE_UNBOUNDED, CCVM_EXPLORE_NO_SLEEP_SETS, &kept);
	ck_assert_uint_lt(runs, 69);
	ck_assert_uint_ge(kept, 2);
	tiny_shared = false;
}
END_TEST

/* ---- shards ------------------------------------------------------------------------------ */

struct shard_seen {
	char tokens[128][96];
	uint64_t index[128];
	unsigned int n;
};

static void shard_run_fn(const struct ccvm_explore_run *run, void *ctx)
{
	struct shard_seen *seen = ctx;

	ck_assert_uint_lt(seen->n, 128);
	ck_assert_uint_lt(strlen(run->token), sizeof(seen->tokens[0]));
	strcpy(seen->tokens[seen->n], run->token);
	seen->index[seen->n] = run->index;
	seen->n++;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

START_TEST(test_shards_dfs)
{
	static struct shard_seen all, parts;
	struct tiny t;
	struct ccvm_scenario sc = scenario("tiny", tiny_run, &t);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;
	uint32_t n, i;
	uint64_t sum;

	o.preemption_bound = CCVM_EXPLORE_UNBOUNDED;
	o.flags |= CCVM_EXPLORE_NO_SLEEP_SETS | RAW;
	o.run_fn = shard_run_fn;
	o.fn_ctx = &all;
	all.n = 0;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert_uint_eq(all.n, 69);
	qsort(all.tokens, all.n, sizeof(all.tokens[0]), cmp_str);
	for (i = 1; i < all.n; i++)
		ck_assert_str_ne(all.tokens[i - 1], all.tokens[i]);

	for (n = 1; n <= 7; n++) {
		o.fn_ctx = &parts;
		parts.n = 0;
		sum = 0;
		for (i = 0; i < n; i++) {
			o.shard_index = i;
			o.shard_count = n;
			ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
			ck_assert(res.exhausted);
			sum += res.runs;
		}
		/* Between them the shards ran every schedule exactly once. */
		ck_assert_uint_eq(sum, 69);
		ck_assert_uint_eq(parts.n, 69);
		qsort(parts.tokens, parts.n, sizeof(parts.tokens[0]), cmp_str);
		for (i = 0; i < parts.n; i++)
			ck_assert_str_eq(parts.tokens[i], all.tokens[i]);
	}
}
END_TEST

START_TEST(test_shards_random)
{
	static struct shard_seen parts;
	struct tiny t;
	struct ccvm_scenario sc = scenario("tiny", tiny_run, &t);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_PCT);
	struct ccvm_explore_result res = RESULT_INIT;
	char whole[40][96];
	unsigned int seen[40] = { 0 };
	uint32_t i;

	o.runs = 40;
	o.seed = 1000;
	o.run_fn = shard_run_fn;
	o.fn_ctx = &parts;
	parts.n = 0;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert_uint_eq(res.runs, 40);
	for (i = 0; i < 40; i++)
		strcpy(whole[parts.index[i]], parts.tokens[i]);
	parts.n = 0;
	for (i = 0; i < 3; i++) {
		o.shard_index = i;
		o.shard_count = 3;
		ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	}
	ck_assert_uint_eq(parts.n, 40);
	for (i = 0; i < parts.n; i++) {
		/* Run i of a shard is run i of the whole sweep: same schedule. */
		ck_assert_str_eq(parts.tokens[i], whole[parts.index[i]]);
		seen[parts.index[i]]++;
	}
	for (i = 0; i < 40; i++)
		ck_assert_uint_eq(seen[i], 1);
}
END_TEST

/* ---- deadlock -------------------------------------------------------------------------------- */

struct abba {
	struct ccvm_mutex a, b;
	unsigned int line_b, line_a;	/* where each thread waits for its second lock */
};

static int abba_first(void *arg)
{
	struct abba *x = arg;

	ccvm_mutex_lock(&x->a);
	x->line_b = __LINE__; ccvm_mutex_lock(&x->b);
	ccvm_mutex_unlock(&x->b);
	ccvm_mutex_unlock(&x->a);
	return 0;
}

static int abba_second(void *arg)
{
	struct abba *x = arg;

	ccvm_mutex_lock(&x->b);
	x->line_a = __LINE__; ccvm_mutex_lock(&x->a);
	ccvm_mutex_unlock(&x->a);
	ccvm_mutex_unlock(&x->b);
	return 0;
}

static int abba_run(struct ccvm_platform *p, void *ctx)
{
	struct abba *x = ctx;
	struct ccvm_thread *t1, *t2;
	int r1, r2;

	ccvm_mutex_init(&x->a, ccvm_platform_sched(p), "A");
	ccvm_mutex_init(&x->b, ccvm_platform_sched(p), "B");
	ck_assert_int_eq(ccvm_thread_create(p, &t1, abba_first, x, "ab"), 0);
	ck_assert_int_eq(ccvm_thread_create(p, &t2, abba_second, x, "ba"), 0);
	r1 = ccvm_thread_join(t1, NULL);
	r2 = ccvm_thread_join(t2, NULL);
	return r1 ? r1 : r2;
}

START_TEST(test_deadlock_abba)
{
	struct abba x;
	struct ccvm_scenario sc = scenario("abba", abba_run, &x);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;
	char want[160];

	o.preemption_bound = 1;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EDEADLK);
	ck_assert_uint_eq(res.failure, CCVM_EXPLORE_FAIL_DEADLOCK);
	ck_assert_ptr_nonnull(strstr(res.message, "deadlock"));
	snprintf(want, sizeof(want), "thread 1 \"ab\": waits for mutex \"B\" held by thread 2 "
		 "\"ba\", at check_sched.c:%u (abba_first); holds mutex \"A\"", x.line_b);
	ck_assert_msg(strstr(res.message, want), "%s\nnot in:\n%s", want, res.message);
	snprintf(want, sizeof(want), "thread 2 \"ba\": waits for mutex \"A\" held by thread 1 "
		 "\"ab\", at check_sched.c:%u (abba_second); holds mutex \"B\"", x.line_a);
	ck_assert_msg(strstr(res.message, want), "%s\nnot in:\n%s", want, res.message);
	ck_assert_ptr_nonnull(strstr(res.message, "thread 0 \"main\": waits to join thread 1"));
	/* The replay deadlocks the same way and returns instead of hanging. */
	ck_assert_int_eq(ccvm_replay(&sc, res.token, &o, NULL), -EDEADLK);
	ccvm_explore_result_release(&res);

	/* Random schedules meet it too. */
	o = quiet(CCVM_EXPLORE_RANDOM);
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EDEADLK);
	ccvm_explore_result_release(&res);
}
END_TEST

/* ---- condition variables ------------------------------------------------------------------- */

struct condx {
	struct ccvm_mutex m;
	struct ccvm_cond ready, go;
	int waiting, woken;
	int wait_order[2], wake_order[2];
	bool use_predicate;
};

static int cond_waiter(void *arg)
{
	void **a = arg;
	struct condx *c = a[0];
	int me = (int)(intptr_t)a[1];

	ccvm_mutex_lock(&c->m);
	c->wait_order[c->waiting++] = me;
	ccvm_cond_signal(&c->ready);
	ccvm_cond_wait(&c->go, &c->m);
	c->wake_order[c->woken++] = me;
	ccvm_cond_signal(&c->ready);
	ccvm_mutex_unlock(&c->m);
	return 0;
}

static int cond_run(struct ccvm_platform *p, void *ctx)
{
	struct condx *c = ctx;
	struct ccvm_sched *s = ccvm_platform_sched(p);
	void *a0[2] = { c, (void *)(intptr_t)0 }, *a1[2] = { c, (void *)(intptr_t)1 };
	struct ccvm_thread *t0, *t1;
	int err = 0;

	c->waiting = c->woken = 0;
	ccvm_mutex_init(&c->m, s, "m");
	ccvm_cond_init(&c->ready, s, "ready");
	ccvm_cond_init(&c->go, s, "go");
	ck_assert_int_eq(ccvm_thread_create(p, &t0, cond_waiter, a0, "w0"), 0);
	ck_assert_int_eq(ccvm_thread_create(p, &t1, cond_waiter, a1, "w1"), 0);
	ccvm_mutex_lock(&c->m);
	while (c->waiting < 2)
		ccvm_cond_wait(&c->ready, &c->m);
	/* Both sleep on go: a signal wakes exactly one, the one that came first. */
	ccvm_cond_signal(&c->go);
	while (c->woken < 1)
		ccvm_cond_wait(&c->ready, &c->m);
	if (c->woken != 1 || c->wake_order[0] != c->wait_order[0])
		err = -EPROTO;
	ccvm_cond_broadcast(&c->go);
	while (c->woken < 2)
		ccvm_cond_wait(&c->ready, &c->m);
	ccvm_mutex_unlock(&c->m);
	ccvm_thread_join(t0, NULL);
	ccvm_thread_join(t1, NULL);
	return err;
}

/* A signal nobody waits for is lost: waiting without a predicate can hang. */
static int lost_signal_waiter(void *arg)
{
	struct condx *c = arg;

	ccvm_mutex_lock(&c->m);
	ccvm_cond_wait(&c->go, &c->m);
	ccvm_mutex_unlock(&c->m);
	return 0;
}

static int lost_signal_run(struct ccvm_platform *p, void *ctx)
{
	struct condx *c = ctx;
	struct ccvm_sched *s = ccvm_platform_sched(p);
	struct ccvm_thread *t;

	ccvm_mutex_init(&c->m, s, "m");
	ccvm_cond_init(&c->go, s, "go");
	ck_assert_int_eq(ccvm_thread_create(p, &t, lost_signal_waiter, c, "waiter"), 0);
	ccvm_mutex_lock(&c->m);
	ccvm_cond_signal(&c->go);
	ccvm_mutex_unlock(&c->m);
	return ccvm_thread_join(t, NULL);
}

START_TEST(test_cond)
{
	struct condx c;
	struct ccvm_scenario sc = scenario("cond", cond_run, &c);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;

	o.preemption_bound = 2;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert(res.exhausted);
	/* 50 since cond waits name their condition and mutex (the cache merges more). */
	ck_assert_uint_gt(res.runs, 20);

	sc = scenario("lost-signal", lost_signal_run, &c);
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EDEADLK);
	ck_assert_ptr_nonnull(strstr(res.message, "waits on cond \"go\" (mutex \"m\")"));
	ccvm_explore_result_release(&res);
}
END_TEST

/* ---- rwlocks ---------------------------------------------------------------------------------- */

struct rwx {
	struct ccvm_sched *s;
	struct ccvm_rwlock l;
	int readers_in, writer_in, max_readers;
	bool writer_arrived;
	int try_busy, try_ok;
	bool bad;
};

static int rw_reader(void *arg)
{
	struct rwx *x = arg;

	ccvm_rwlock_rdlock(&x->l);
	if (x->writer_in)
		x->bad = true;
	x->readers_in++;
	if (x->readers_in > x->max_readers)
		x->max_readers = x->readers_in;
	ccvm_sched_point(x->s, &x->readers_in, "reading");
	x->readers_in--;
	ccvm_rwlock_unlock(&x->l);
	return 0;
}

static int rw_writer(void *arg)
{
	struct rwx *x = arg;

	ccvm_rwlock_wrlock(&x->l);
	if (x->readers_in || x->writer_in)
		x->bad = true;
	x->writer_in = 1;
	ccvm_sched_point(x->s, &x->writer_in, "writing");
	x->writer_in = 0;
	ccvm_rwlock_unlock(&x->l);
	return 0;
}

static int rw_run(struct ccvm_platform *p, void *ctx)
{
	static const char *const names[] = { "r0", "r1", "w" };
	struct rwx *x = ctx;
	int shared = x->max_readers;	/* kept across runs */
	struct ccvm_thread *t[3];
	unsigned int i;

	memset(x, 0, sizeof(*x));
	x->max_readers = shared;
	x->s = ccvm_platform_sched(p);
	ccvm_rwlock_init(&x->l, x->s, "l");
	ck_assert_int_eq(ccvm_thread_create(p, &t[0], rw_reader, x, names[0]), 0);
	ck_assert_int_eq(ccvm_thread_create(p, &t[1], rw_reader, x, names[1]), 0);
	ck_assert_int_eq(ccvm_thread_create(p, &t[2], rw_writer, x, names[2]), 0);
	for (i = 0; i < 3; i++)
		ccvm_thread_join(t[i], NULL);
	return x->bad ? -EPROTO : 0;
}

/* main holds a read lock; a writer queues; a new reader must not get in. */
static int pref_writer(void *arg)
{
	struct rwx *x = arg;

	x->writer_arrived = true;
	ccvm_rwlock_wrlock(&x->l);
	ccvm_rwlock_unlock(&x->l);
	return 0;
}

static int pref_reader(void *arg)
{
	struct rwx *x = arg;
	bool queued = x->writer_arrived;
	int r = ccvm_rwlock_tryrdlock(&x->l);

	if (queued) {
		x->try_busy += r == -EBUSY;
		x->bad |= r != -EBUSY;
	} else {
		x->try_ok += r == 0;
		x->bad |= r != 0;
	}
	if (!r)
		ccvm_rwlock_unlock(&x->l);
	return 0;
}

static int pref_run(struct ccvm_platform *p, void *ctx)
{
	struct rwx *x = ctx;
	struct ccvm_thread *w, *r;

	x->s = ccvm_platform_sched(p);
	x->writer_arrived = false;
	ccvm_rwlock_init(&x->l, x->s, "l");
	ccvm_rwlock_rdlock(&x->l);
	ck_assert_int_eq(ccvm_thread_create(p, &w, pref_writer, x, "writer"), 0);
	ck_assert_int_eq(ccvm_thread_create(p, &r, pref_reader, x, "reader"), 0);
	ccvm_thread_join(r, NULL);
	ccvm_rwlock_unlock(&x->l);
	ccvm_thread_join(w, NULL);
	return x->bad ? -EPROTO : 0;
}

START_TEST(test_rwlock)
{
	struct rwx x = { .max_readers = 0 };
	struct ccvm_scenario sc = scenario("rw", rw_run, &x);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;

	o.preemption_bound = CCVM_EXPLORE_UNBOUNDED;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert(res.exhausted);
	/* Readers shared the lock in some schedule; a writer never did. */
	ck_assert_int_eq(x.max_readers, 2);

	memset(&x, 0, sizeof(x));
	sc = scenario("writer-preference", pref_run, &x);
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert(res.exhausted);
	ck_assert_int_gt(x.try_busy, 0);
	ck_assert_int_gt(x.try_ok, 0);
}
END_TEST

/* A second read lock behind a waiting writer deadlocks, as glibc's kind. */
static int rw_recursive_writer(void *arg)
{
	struct rwx *x = arg;

	ccvm_rwlock_wrlock(&x->l);
	ccvm_rwlock_unlock(&x->l);
	return 0;
}

static int rw_recursive_run(struct ccvm_platform *p, void *ctx)
{
	struct rwx *x = ctx;
	struct ccvm_thread *w;

	ccvm_rwlock_init(&x->l, ccvm_platform_sched(p), "l");
	ccvm_rwlock_rdlock(&x->l);
	ck_assert_int_eq(ccvm_thread_create(p, &w, rw_recursive_writer, x, "writer"), 0);
	ccvm_rwlock_rdlock(&x->l);
	ccvm_rwlock_unlock(&x->l);
	ccvm_rwlock_unlock(&x->l);
	return ccvm_thread_join(w, NULL);
}

START_TEST(test_rwlock_recursive_read)
{
	struct rwx x;
	struct ccvm_scenario sc = scenario("rw-recursive", rw_recursive_run, &x);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;

	o.preemption_bound = 1;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EDEADLK);
	ck_assert_ptr_nonnull(strstr(res.message, "waits to read-lock rwlock \"l\" held for "
				     "read by thread 0 \"main\", behind a waiting writer"));
	ccvm_explore_result_release(&res);
}
END_TEST

/* A long write-locked loop that reschedules lets a reader in half-way. */
struct resched {
	struct ccvm_rwlock l;
	int items[4];
	bool resched;
	unsigned int partial;	/* runs where the reader saw half a walk */
};

static int resched_walker(void *arg)
{
	struct resched *x = arg;
	int i;

	ccvm_rwlock_wrlock(&x->l);
	for (i = 0; i < 4; i++) {
		x->items[i] = 1;
		if (x->resched && i == 1)
			ccvm_rwlock_cond_resched(&x->l, 1);
	}
	ccvm_rwlock_unlock(&x->l);
	return 0;
}

static int resched_reader(void *arg)
{
	struct resched *x = arg;
	int i, n = 0;

	ccvm_rwlock_rdlock(&x->l);
	for (i = 0; i < 4; i++)
		n += x->items[i];
	ccvm_rwlock_unlock(&x->l);
	x->partial += n == 2;
	return n == 0 || n == 4 || (x->resched && n == 2) ? 0 : -EPROTO;
}

static int resched_run(struct ccvm_platform *p, void *ctx)
{
	struct resched *x = ctx;
	struct ccvm_thread *w, *r;
	int rw = 0, rr = 0;

	memset(x->items, 0, sizeof(x->items));
	ccvm_rwlock_init(&x->l, ccvm_platform_sched(p), "walk_lock");
	ck_assert_int_eq(ccvm_thread_create(p, &w, resched_walker, x, "walker"), 0);
	ck_assert_int_eq(ccvm_thread_create(p, &r, resched_reader, x, "reader"), 0);
	ccvm_thread_join(w, &rw);
	ccvm_thread_join(r, &rr);
	return rw ? rw : rr;
}

START_TEST(test_cond_resched)
{
	struct resched x = { .resched = false };
	struct ccvm_scenario sc = scenario("resched", resched_run, &x);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;

	o.preemption_bound = CCVM_EXPLORE_UNBOUNDED;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert_uint_eq(x.partial, 0);
	x.resched = true;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert_uint_gt(x.partial, 0);
}
END_TEST

/* ---- try-locks ---------------------------------------------------------------------------------- */

struct tryx {
	struct ccvm_mutex m;
	struct ccvm_rwlock l;
	int results;
};

static int try_thread(void *arg)
{
	struct tryx *x = arg;

	if (ccvm_mutex_trylock(&x->m) == -EBUSY)
		x->results++;
	if (ccvm_rwlock_trywrlock(&x->l) == -EBUSY)
		x->results++;
	if (ccvm_rwlock_tryrdlock(&x->l) == 0) {
		x->results++;
		ccvm_rwlock_unlock(&x->l);
	}
	return 0;
}

static int try_run(struct ccvm_platform *p, void *ctx)
{
	struct tryx *x = ctx;
	struct ccvm_thread *t;

	x->results = 0;
	ccvm_mutex_init(&x->m, ccvm_platform_sched(p), "m");
	ccvm_rwlock_init(&x->l, ccvm_platform_sched(p), "l");
	ccvm_mutex_lock(&x->m);
	ccvm_rwlock_rdlock(&x->l);
	ck_assert_int_eq(ccvm_thread_create(p, &t, try_thread, x, "try"), 0);
	ccvm_thread_join(t, NULL);
	ccvm_rwlock_unlock(&x->l);
	ccvm_mutex_unlock(&x->m);
	/* Free again: the same calls succeed. */
	ck_assert_int_eq(ccvm_mutex_trylock(&x->m), 0);
	ck_assert_int_eq(ccvm_mutex_trylock(&x->m), -EBUSY);
	ccvm_mutex_unlock(&x->m);
	ck_assert_int_eq(ccvm_rwlock_trywrlock(&x->l), 0);
	ck_assert_int_eq(ccvm_rwlock_tryrdlock(&x->l), -EBUSY);
	ccvm_rwlock_unlock(&x->l);
	return x->results == 3 ? 0 : -EPROTO;
}

START_TEST(test_trylock)
{
	struct tryx x;
	struct ccvm_scenario sc = scenario("trylock", try_run, &x);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;

	o.preemption_bound = CCVM_EXPLORE_UNBOUNDED;
	o.flags |= CCVM_EXPLORE_NO_SLEEP_SETS;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert(res.exhausted);
	/* main holds both locks until T ended: T's answers have no alternative. */
	ck_assert_uint_eq(res.runs, 1);
}
END_TEST

/* ---- spin-waits and yields ------------------------------------------------------------------------ */

struct spinx {
	struct ccvm_sched *s;
	int flag;
	bool setter;
	bool yield;
};

static int spin_waiter(void *arg)
{
	struct spinx *x = arg;
	int seen;

	while (!(seen = __atomic_load_n(&x->flag, __ATOMIC_ACQUIRE))) {
		if (x->yield)
			ccvm_sched_yield(x->s, "poll flag");
		else
			ccvm_spin_wait(x->s, &x->flag, seen, "flag");
	}
	return 0;
}

static int spin_setter(void *arg)
{
	struct spinx *x = arg;

	ccvm_sched_point(x->s, &x->flag, "set flag");
	__atomic_store_n(&x->flag, 1, __ATOMIC_RELEASE);
	return 0;
}

static int spin_run(struct ccvm_platform *p, void *ctx)
{
	struct spinx *x = ctx;
	struct ccvm_thread *a, *b = NULL;
	int r;

	x->s = ccvm_platform_sched(p);
	x->flag = 0;
	ck_assert_int_eq(ccvm_thread_create(p, &a, spin_waiter, x, "waiter"), 0);
	if (x->setter)
		ck_assert_int_eq(ccvm_thread_create(p, &b, spin_setter, x, "setter"), 0);
	r = ccvm_thread_join(a, NULL);
	if (b)
		ccvm_thread_join(b, NULL);
	return r;
}

START_TEST(test_spin_wait)
{
	struct spinx x = { .setter = true };
	struct ccvm_scenario sc = scenario("spin", spin_run, &x);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;

	/* Every schedule ends, and quickly: a spin never burns steps. */
	o.preemption_bound = CCVM_EXPLORE_UNBOUNDED;
	o.step_bound = 50;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert(res.exhausted);
	ck_assert_uint_le(res.max_steps, 12);
	o = quiet(CCVM_EXPLORE_RANDOM);
	o.step_bound = 50;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);

	/* A yield loop ends too: the yielder waits until the other ran. */
	x.yield = true;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert_uint_le(res.max_steps, 20);

	/* Nobody sets the flag: a spin is a deadlock naming it, a yield a livelock. */
	x.setter = false;
	x.yield = false;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EDEADLK);
	ck_assert_ptr_nonnull(strstr(res.message, "waits for \"flag\" to change from 0"));
	ccvm_explore_result_release(&res);
	x.yield = true;
	o.step_bound = 1000;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -ELOOP);
	ck_assert_uint_eq(res.failure, CCVM_EXPLORE_FAIL_LIVELOCK);
	ck_assert_ptr_nonnull(strstr(res.message, "yields at \"poll flag\""));
	ck_assert_uint_eq(res.nr_events, 32);
	ck_assert_int_eq(ccvm_replay(&sc, res.token, &o, NULL), -ELOOP);
	ccvm_explore_result_release(&res);
}
END_TEST

/* ---- the check hook ------------------------------------------------------------------------------ */

struct pair {
	struct ccvm_mutex m;
	int x, y;
	bool one_section;
	uint64_t checks;
};

static int pair_worker(void *arg)
{
	struct pair *c = arg;

	ccvm_mutex_lock(&c->m);
	c->x++;
	if (c->one_section) {
		c->y++;
	} else {
		ccvm_mutex_unlock(&c->m);
		ccvm_mutex_lock(&c->m);
		c->y++;
	}
	ccvm_mutex_unlock(&c->m);
	return 0;
}

static int pair_run(struct ccvm_platform *p, void *ctx)
{
	static const char *const names[] = { "p0", "p1" };
	struct pair *c = ctx;
	void *args[2] = { c, c };

	c->x = c->y = 0;
	ccvm_mutex_init(&c->m, ccvm_platform_sched(p), "pair_lock");
	return spawn_join(p, 2, pair_worker, args, names);
}

static int pair_check(struct ccvm_platform *p, void *ctx, char *msg, size_t msg_sz)
{
	struct pair *c = ctx;

	(void)p;
	c->checks++;
	/* Checks may take locks: scheduling is off while they run. */
	ccvm_mutex_lock(&c->m);
	ccvm_mutex_unlock(&c->m);
	if (c->x == c->y)
		return 0;
	snprintf(msg, msg_sz, "x %d != y %d", c->x, c->y);
	return 1;
}

START_TEST(test_check_hook)
{
	struct pair c = { .one_section = true };
	struct ccvm_scenario sc = scenario("pair", pair_run, &c);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_DFS);
	struct ccvm_explore_result res = RESULT_INIT;

	sc.check = pair_check;
	o.preemption_bound = CCVM_EXPLORE_UNBOUNDED;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), 0);
	ck_assert(res.exhausted);
	ck_assert_uint_gt(c.checks, res.runs);

	c.one_section = false;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EPROTO);
	ck_assert_uint_eq(res.failure, CCVM_EXPLORE_FAIL_CHECK);
	ck_assert_ptr_nonnull(strstr(res.message, "check failed at step"));
	ck_assert_ptr_nonnull(strstr(res.message, "x 1 != y 0"));
	ck_assert_int_eq(ccvm_replay(&sc, res.token, &o, NULL), -EPROTO);
	ccvm_explore_result_release(&res);
}
END_TEST

/* ---- misuse ------------------------------------------------------------------------------------- */

static int misuse_run(struct ccvm_platform *p, void *ctx)
{
	struct ccvm_mutex *m = ctx;

	ccvm_mutex_init(m, ccvm_platform_sched(p), "m");
	ccvm_mutex_unlock(m);
	return 0;
}

static int leftover_worker(void *arg)
{
	(void)arg;
	return 0;
}

static int leftover_run(struct ccvm_platform *p, void *ctx)
{
	struct ccvm_thread *t;

	(void)ctx;
	return ccvm_thread_create(p, &t, leftover_worker, NULL, "orphan");
}

START_TEST(test_misuse)
{
	struct ccvm_mutex m;
	struct ccvm_scenario sc = scenario("misuse", misuse_run, &m);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_RANDOM);
	struct ccvm_explore_result res = RESULT_INIT;

	o.runs = 3;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EPERM);
	ck_assert_uint_eq(res.failure, CCVM_EXPLORE_FAIL_MISUSE);
	ck_assert_ptr_nonnull(strstr(res.message, "unlocks a mutex it does not hold: \"m\""));
	ccvm_explore_result_release(&res);

	sc = scenario("leftover", leftover_run, NULL);
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EBUSY);
	ck_assert_ptr_nonnull(strstr(res.message, "did not join"));
	ck_assert_ptr_nonnull(strstr(res.message, "\"orphan\""));
	ccvm_explore_result_release(&res);
}
END_TEST

/* ---- crashes print their token ------------------------------------------------------------------- */

static int crash_run(struct ccvm_platform *p, void *ctx)
{
	int err = lost_run(p, ctx);

	if (err == -EPROTO)
		raise(SIGABRT);		/* as a sanitizer or assert() would */
	return err;
}

/* Run @fn in a child with stderr to a pipe; return what it printed. */
static int crash_child(const char *token, char *out, size_t out_sz)
{
	struct lost c = { .locked = false };
	struct ccvm_scenario sc = scenario("crash", crash_run, &c);
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_RANDOM);
	int fd[2], status;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(fd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fd[1], STDERR_FILENO);
		close(fd[0]);
		o.runs = 1000;
		if (token)
			ccvm_replay(&sc, token, &o, NULL);
		else
			ccvm_explore(&sc, &o, NULL);
		_exit(0);
	}
	close(fd[1]);
	while (len + 1 < out_sz && (n = read(fd[0], out + len, out_sz - len - 1)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
		      "child status %#x, printed: %s", status, out);
	return 0;
}

START_TEST(test_crash_token)
{
	char out[4096], again[4096], token[512];
	const char *at;
	size_t n;

	crash_child(NULL, out, sizeof(out));
	at = strstr(out, "the token S1:");
	ck_assert_msg(at != NULL, "no token in: %s", out);
	at += strlen("the token ");
	n = strcspn(at, "\n");
	ck_assert_uint_lt(n, sizeof(token));
	memcpy(token, at, n);
	token[n] = '\0';
	/* The token takes the replay to the same crash, which prints it again. */
	crash_child(token, again, sizeof(again));
	ck_assert_ptr_nonnull(strstr(again, token));
}
END_TEST

/* ---- the direct serial mode and free-running threads --------------------------------------------- */

struct direct {
	struct ccvm_mutex m;
	struct ccvm_cond c;
	int counter, turn;
};

static int direct_worker(void *arg)
{
	struct direct *d = arg;
	int i;

	for (i = 0; i < 100; i++) {
		ccvm_mutex_lock(&d->m);
		d->counter++;
		ccvm_cond_broadcast(&d->c);
		ccvm_mutex_unlock(&d->m);
	}
	return 7;
}

static void direct_round(uint32_t mode, struct direct *d)
{
	struct ccvm_platform_opts po = small_platform;
	struct ccvm_platform *p;
	struct ccvm_thread *t[2];
	struct ccvm_sched *s;
	int i, ret;

	po.sched = mode;
	po.sched_seed = 5;
	ck_assert_int_eq(ccvm_platform_create(&po, &p), 0);
	s = ccvm_platform_sched(p);
	ck_assert(mode == CCVM_SCHED_SERIAL ? s != NULL : s == NULL);
	d->counter = 0;
	ck_assert_int_eq(ccvm_mutex_init(&d->m, s, "m"), 0);
	ck_assert_int_eq(ccvm_cond_init(&d->c, s, "c"), 0);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(ccvm_thread_create(p, &t[i], direct_worker, d, "w"), 0);
	ccvm_mutex_lock(&d->m);
	while (d->counter < 200)
		ccvm_cond_wait(&d->c, &d->m);
	ccvm_mutex_unlock(&d->m);
	if (mode == CCVM_SCHED_SERIAL)
		ck_assert_int_eq(ccvm_platform_destroy(p), -EBUSY);	/* not joined yet */
	for (i = 0; i < 2; i++) {
		ret = 0;
		ck_assert_int_eq(ccvm_thread_join(t[i], &ret), 0);
		ck_assert_int_eq(ret, 7);
	}
	ck_assert_int_eq(ccvm_sched_status(s, NULL, 0), 0);
	ccvm_cond_destroy(&d->c);
	ccvm_mutex_destroy(&d->m);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}

/*
 * Free-running locks (no scheduler): a writer waiting behind a reader is
 * counted for needbreak() and holds off new readers (the layer's rwlocks
 * prefer writers, as the serial model does); a locker that finds a mutex
 * held is counted too.  Each wait is bounded and polls the state it waits
 * for; nothing is timed.
 */
struct free_locks {
	struct ccvm_rwlock l;
	struct ccvm_mutex m;
	int wrote, locked;
};

static void *free_writer(void *arg)
{
	struct free_locks *f = arg;

	ccvm_rwlock_wrlock(&f->l);
	__atomic_store_n(&f->wrote, 1, __ATOMIC_RELEASE);
	ccvm_rwlock_unlock(&f->l);
	return NULL;
}

static void *free_locker(void *arg)
{
	struct free_locks *f = arg;

	ccvm_mutex_lock(&f->m);
	__atomic_store_n(&f->locked, 1, __ATOMIC_RELEASE);
	ccvm_mutex_unlock(&f->m);
	return NULL;
}

/* Poll @cond (re-evaluated each round) for at most about 60 s of yields. */
#define POLL_UNTIL(cond)						\
	do {								\
		long n_;						\
		for (n_ = 0; n_ < 60L * 1000 * 1000 && !(cond); n_++)	\
			sched_yield();					\
	} while (0)

START_TEST(test_free_running_locks)
{
	struct free_locks f = { .wrote = 0, .locked = 0 };
	pthread_t t;
	int busy = 0;

	ck_assert_int_eq(ccvm_rwlock_init(&f.l, NULL, "l"), 0);
	ck_assert_int_eq(ccvm_mutex_init(&f.m, NULL, "m"), 0);

	ccvm_rwlock_rdlock(&f.l);
	ck_assert(!ccvm_rwlock_needbreak(&f.l));
	ck_assert_int_eq(pthread_create(&t, NULL, free_writer, &f), 0);
	POLL_UNTIL(ccvm_rwlock_needbreak(&f.l));
	ck_assert(ccvm_rwlock_needbreak(&f.l));
	/* Once the writer sleeps in the lock, a new reader is refused. */
	POLL_UNTIL((busy = ccvm_rwlock_tryrdlock(&f.l)) == -EBUSY ||
		   (ccvm_rwlock_unlock(&f.l), 0));
	ck_assert_int_eq(busy, -EBUSY);
	ck_assert_int_eq(__atomic_load_n(&f.wrote, __ATOMIC_ACQUIRE), 0);
	ccvm_rwlock_unlock(&f.l);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(f.wrote, 1);
	ck_assert(!ccvm_rwlock_needbreak(&f.l));

	ccvm_mutex_lock(&f.m);
	ck_assert(!ccvm_mutex_needbreak(&f.m));
	ck_assert_int_eq(pthread_create(&t, NULL, free_locker, &f), 0);
	POLL_UNTIL(ccvm_mutex_needbreak(&f.m));
	ck_assert(ccvm_mutex_needbreak(&f.m));
	ck_assert_int_eq(__atomic_load_n(&f.locked, __ATOMIC_ACQUIRE), 0);
	ccvm_mutex_unlock(&f.m);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(f.locked, 1);
	ck_assert(!ccvm_mutex_needbreak(&f.m));
	ck_assert_int_eq(ccvm_mutex_trylock(&f.m), 0);
	ck_assert_int_eq(ccvm_mutex_trylock(&f.m), -EBUSY);
	ccvm_mutex_unlock(&f.m);

	ccvm_mutex_destroy(&f.m);
	ccvm_rwlock_destroy(&f.l);
}
END_TEST

START_TEST(test_direct_and_free)
{
	struct direct d;

	direct_round(CCVM_SCHED_SERIAL, &d);
	direct_round(CCVM_SCHED_FREE, &d);
}
END_TEST

START_TEST(test_direct_deadlock)
{
	struct ccvm_platform_opts po = small_platform;
	struct ccvm_platform *p;
	struct abba x;
	struct ccvm_thread *t1, *t2;
	char msg[2048];
	int r1, r2, seed, deadlocks = 0;

	/* Some seeds deadlock: the creator's join returns instead of hanging. */
	for (seed = 0; seed < 40; seed++) {
		po.sched = CCVM_SCHED_SERIAL;
		po.sched_seed = (uint64_t)seed;
		ck_assert_int_eq(ccvm_platform_create(&po, &p), 0);
		ccvm_mutex_init(&x.a, ccvm_platform_sched(p), "A");
		ccvm_mutex_init(&x.b, ccvm_platform_sched(p), "B");
		ck_assert_int_eq(ccvm_thread_create(p, &t1, abba_first, &x, "ab"), 0);
		ck_assert_int_eq(ccvm_thread_create(p, &t2, abba_second, &x, "ba"), 0);
		r1 = ccvm_thread_join(t1, NULL);
		r2 = ccvm_thread_join(t2, NULL);
		if (ccvm_sched_status(ccvm_platform_sched(p), msg, sizeof(msg)) == -EDEADLK) {
			deadlocks++;
			ck_assert_ptr_nonnull(strstr(msg, "waits for mutex"));
			ck_assert(r1 == -ECANCELED || r2 == -ECANCELED);
		} else {
			ck_assert_int_eq(r1, 0);
			ck_assert_int_eq(r2, 0);
		}
		ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	}
	ck_assert_int_gt(deadlocks, 0);
	ck_assert_int_lt(deadlocks, 40);
}
END_TEST

/* ---- bad input ---------------------------------------------------------------------------------- */

static int noop_run(struct ccvm_platform *p, void *ctx)
{
	(void)p;
	(void)ctx;
	return 0;
}

START_TEST(test_bad_input)
{
	struct ccvm_scenario sc = scenario("noop", noop_run, NULL), bad;
	struct ccvm_explore_opts o = quiet(CCVM_EXPLORE_RANDOM);
	struct ccvm_explore_result res = RESULT_INIT, before;
	struct {
		struct ccvm_explore_opts o;
		uint64_t extra;
	} big;
	struct ccvm_platform_opts po = small_platform;
	struct ccvm_platform *p = NULL;
	static const char *const bad_tokens[] = {
		"", "S1", "S1:", "S2:AAAA", "s1:AAAA", "S1:!!!!", "S1:A", "S1:AAA=",
		"S1:gA", "S1:AAB", "S1:AAAAgA", "S1:AAEAAA",
	};
	uint32_t i = 9, n = 9;
	unsigned int k;

	memcpy(&before, &res, sizeof(res));
	ck_assert_int_eq(ccvm_explore(NULL, &o, &res), -EINVAL);
	bad = sc;
	bad.run = NULL;
	ck_assert_int_eq(ccvm_explore(&bad, &o, &res), -EINVAL);
	bad = sc;
	bad.sz = 0;
	ck_assert_int_eq(ccvm_explore(&bad, &o, &res), -EINVAL);
	bad.sz = sizeof(size_t) - 1;
	ck_assert_int_eq(ccvm_explore(&bad, &o, &res), -EINVAL);

	o.strategy = CCVM_EXPLORE_NR;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EINVAL);
	o = quiet(CCVM_EXPLORE_RANDOM);
	o.shard_index = 3;
	o.shard_count = 2;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EINVAL);
	o.shard_count = 0;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EINVAL);
	o = quiet(CCVM_EXPLORE_PCT);
	o.pct_depth = CCVM_EXPLORE_MAX_PCT_DEPTH + 1;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EINVAL);
	o = quiet(CCVM_EXPLORE_DFS);
	o.preemption_bound = -2;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EINVAL);
	o = quiet(CCVM_EXPLORE_RANDOM);
	o.last_events = CCVM_EXPLORE_MAX_EVENTS + 1;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EINVAL);
	o = quiet(CCVM_EXPLORE_RANDOM);
	o.flags |= 1u << 30;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EINVAL);

	/* Option struct rules: too small, or a newer caller's non-zero tail. */
	o = quiet(CCVM_EXPLORE_RANDOM);
	o.sz = sizeof(size_t) - 1;
	ck_assert_int_eq(ccvm_explore(&sc, &o, &res), -EINVAL);
	memset(&big, 0, sizeof(big));
	big.o = quiet(CCVM_EXPLORE_RANDOM);
	big.o.sz = sizeof(big);
	big.extra = 1;
	ck_assert_int_eq(ccvm_explore(&sc, &big.o, &res), -EINVAL);
	big.extra = 0;
	big.o.runs = 2;
	ck_assert_int_eq(ccvm_explore(&sc, &big.o, NULL), 0);
	/* An old caller's shorter struct: the missing fields are defaults. */
	o = quiet(CCVM_EXPLORE_RANDOM);
	o.sz = offsetof(struct ccvm_explore_opts, seed);
	ck_assert_int_eq(ccvm_explore(&sc, &o, NULL), 0);
	res.sz = sizeof(size_t) - 1;
	ck_assert_int_eq(ccvm_explore(&sc, NULL, &res), -EINVAL);
	res.sz = sizeof(res);
	ck_assert(!memcmp(&res, &before, sizeof(res)));

	for (k = 0; k < sizeof(bad_tokens) / sizeof(bad_tokens[0]); k++)
		ck_assert_msg(ccvm_replay(&sc, bad_tokens[k], NULL, &res) == -EINVAL,
			      "token \"%s\" accepted", bad_tokens[k]);
	ck_assert_int_eq(ccvm_replay(&sc, NULL, NULL, &res), -EINVAL);
	ck_assert_int_eq(ccvm_replay(NULL, "S1:AAAA", NULL, &res), -EINVAL);
	ck_assert(!memcmp(&res, &before, sizeof(res)));
	/* Well-formed, but not a schedule of this scenario. */
	ck_assert_int_eq(ccvm_replay(&sc, "S1:AAAA", &o, &res), -ESTALE);
	ccvm_explore_result_release(&res);

	ck_assert_int_eq(ccvm_explore_parse_shard("1/3", &i, &n), 0);
	ck_assert_uint_eq(i, 1);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(ccvm_explore_parse_shard("3/2", &i, &n), -EINVAL);
	ck_assert_int_eq(ccvm_explore_parse_shard("0/0", &i, &n), -EINVAL);
	ck_assert_int_eq(ccvm_explore_parse_shard("1/2x", &i, &n), -EINVAL);
	ck_assert_int_eq(ccvm_explore_parse_shard("-1/2", &i, &n), -EINVAL);
	ck_assert_int_eq(ccvm_explore_parse_shard("1/99999999999", &i, &n), -EINVAL);
	ck_assert_int_eq(ccvm_explore_parse_shard("", &i, &n), -EINVAL);
	ck_assert_int_eq(ccvm_explore_parse_shard(NULL, &i, &n), -EINVAL);
	ck_assert_uint_eq(i, 1);
	ck_assert_uint_eq(n, 3);

	po.sched = CCVM_SCHED_SERIAL + 1;
	ck_assert_int_eq(ccvm_platform_create(&po, &p), -EINVAL);
	ck_assert_ptr_null(p);

	ck_assert_ptr_null(ccvm_explore_strategy_name(CCVM_EXPLORE_NR));
	ck_assert_str_eq(ccvm_explore_strategy_name(CCVM_EXPLORE_PCT), "pct");
	ck_assert_ptr_null(ccvm_sched_op_name(CCVM_SCHED_OP_NR));
	ck_assert_int_eq(ccvm_thread_create(NULL, NULL, NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_thread_join(NULL, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_mutex_init(NULL, NULL, "x"), -EINVAL);
}
END_TEST

Suite *sched_suite(void)
{
	Suite *s = suite_create("sched");
	TCase *tc = tcase_create("sched");

	tcase_add_test(tc, test_determinism);
	tcase_add_test(tc, test_lost_update_random);
	tcase_add_test(tc, test_lost_update_pct);
	tcase_add_test(tc, test_lost_update_dfs);
	tcase_add_test(tc, test_lost_update_locked_exhaustive);
	tcase_add_test(tc, test_dfs_counts);
	tcase_add_test(tc, test_dfs_reductions);
	tcase_add_test(tc, test_shards_dfs);
	tcase_add_test(tc, test_shards_random);
	tcase_add_test(tc, test_deadlock_abba);
	tcase_add_test(tc, test_cond);
	tcase_add_test(tc, test_rwlock);
	tcase_add_test(tc, test_rwlock_recursive_read);
	tcase_add_test(tc, test_cond_resched);
	tcase_add_test(tc, test_trylock);
	tcase_add_test(tc, test_spin_wait);
	tcase_add_test(tc, test_check_hook);
	tcase_add_test(tc, test_misuse);
	tcase_add_test(tc, test_crash_token);
	tcase_add_test(tc, test_direct_and_free);
	tcase_add_test(tc, test_free_running_locks);
	tcase_add_test(tc, test_direct_deadlock);
	tcase_add_test(tc, test_bad_input);
	suite_add_tcase(s, tc);
	return s;
}
