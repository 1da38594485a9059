/* SPDX-License-Identifier: MIT */
/*
 * The deterministic scheduler: the serial mode of the sync layer
 * (include/ccvm/sync.h).  docs/scheduler.md is the long version.
 *
 * Threads.  Every controlled thread is a real OS thread with a semaphore,
 * its baton.  Exactly one holds the baton at a time; it runs until its next
 * scheduling point, where it announces its pending operation (op, wait
 * predicate, object, call site) and picks the next thread.  If that is
 * another one, it posts that thread's baton and sleeps on its own.  The
 * semaphores order everything one thread did before the switch before
 * everything the next does, so the model's plain fields need no atomics
 * and ThreadSanitizer sees the happens-before.  Nothing spins.
 *
 * Steps.  A scheduling point comes before every visible operation (lock,
 * unlock, wait, signal, create, join, exit, explicit point); picking a
 * thread at a point is one step, numbered from 0.  A thread parked at a
 * point can run when its wait predicate holds: a lock free, a condition
 * signalled, a joined thread ended, a watched word changed, another thread
 * run since a yield.  No runnable thread while some are alive is a
 * deadlock; more than step_bound steps is a livelock.  Either ends the run:
 * every other thread is woken in turn and longjmps back to its start
 * (abandoning its stack, as a guest unwind does), then thread 0 does.
 *
 * Choice.  At a step the default is to keep the running thread, or the
 * lowest runnable id if it cannot run; the strategy may pick another.  The
 * record of a run is the list of (step, thread) where the pick was not the
 * default, which is all a replay needs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "scheduler.h"

#define BIT(i)		(1ull << (i))

/* The controlled thread running on this OS thread, if any. */
static _Thread_local struct ccvm_thread *sched_self;

static const char *const op_names[CCVM_SCHED_OP_NR] = {
	[CCVM_SCHED_OP_START] = "start",
	[CCVM_SCHED_OP_EXIT] = "exit",
	[CCVM_SCHED_OP_CREATE] = "create",
	[CCVM_SCHED_OP_JOIN] = "join",
	[CCVM_SCHED_OP_LOCK] = "lock",
	[CCVM_SCHED_OP_TRYLOCK] = "trylock",
	[CCVM_SCHED_OP_UNLOCK] = "unlock",
	[CCVM_SCHED_OP_RDLOCK] = "rdlock",
	[CCVM_SCHED_OP_WRLOCK] = "wrlock",
	[CCVM_SCHED_OP_TRYRDLOCK] = "tryrdlock",
	[CCVM_SCHED_OP_TRYWRLOCK] = "trywrlock",
	[CCVM_SCHED_OP_RWUNLOCK] = "rwunlock",
	[CCVM_SCHED_OP_COND_WAIT] = "cond_wait",
	[CCVM_SCHED_OP_COND_WAKE] = "cond_wake",
	[CCVM_SCHED_OP_SIGNAL] = "signal",
	[CCVM_SCHED_OP_BROADCAST] = "broadcast",
	[CCVM_SCHED_OP_POINT] = "point",
	[CCVM_SCHED_OP_YIELD] = "yield",
	[CCVM_SCHED_OP_SPIN] = "spin",
};

const char *ccvm_sched_op_name(unsigned int op)
{
	return op < CCVM_SCHED_OP_NR ? op_names[op] : NULL;
}

/* ---- small helpers -------------------------------------------------------- */

static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned int lowest(uint64_t mask)
{
	return (unsigned int)__builtin_ctzll(mask);
}

/* The @n-th (0-based) set bit of @mask. */
static unsigned int nth_bit(uint64_t mask, unsigned int n)
{
	while (n--)
		mask &= mask - 1;
	return lowest(mask);
}

static void sem_wait_nointr(sem_t *sem)
{
	while (sem_wait(sem) && errno == EINTR)
		;
}

static uint64_t load_word(const volatile void *addr, size_t size)
{
	switch (size) {
	case 1: return __atomic_load_n((const volatile uint8_t *)addr, __ATOMIC_RELAXED);
	case 2: return __atomic_load_n((const volatile uint16_t *)addr, __ATOMIC_RELAXED);
	case 4: return __atomic_load_n((const volatile uint32_t *)addr, __ATOMIC_RELAXED);
	default: return __atomic_load_n((const volatile uint64_t *)addr, __ATOMIC_RELAXED);
	}
}

static const char *site_file(const struct ccvm_sync_site *site)
{
	const char *f;

	if (!site || !site->file)
		return "?";
	f = strrchr(site->file, '/');
	return f ? f + 1 : site->file;
}

/* Append to s->msg, truncating quietly. */
static void msg_add(struct ccvm_sched *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void msg_add(struct ccvm_sched *s, const char *fmt, ...)
{
	size_t len = strlen(s->msg);
	va_list ap;

	if (len + 1 >= sizeof(s->msg))
		return;
	va_start(ap, fmt);
	vsnprintf(s->msg + len, sizeof(s->msg) - len, fmt, ap);
	va_end(ap);
}

/* ---- held locks (reports and the quiescence test) ---------------------------- */

/* An outer mutex (ccvm_sched_mutex_outer()) held does not end quiescence. */
static bool held_counts(const void *obj, uint8_t kind)
{
	return kind != 0 || !((const struct ccvm_mutex *)obj)->u.model.outer;
}

static void held_add(struct ccvm_sched *s, struct ccvm_thread *t, const void *obj,
		     const char *name, uint8_t kind)
{
	if (held_counts(obj, kind))
		s->nr_held++;
	if (t && t->nheld < CCVM_SCHED_MAX_HELD)
		t->held[t->nheld] = (struct ccvm_held){ obj, name, kind };
	if (t)
		t->nheld++;
}

/* Drop one hold of @obj; return how many holds of @obj of @kind remain. */
static unsigned int held_del(struct ccvm_sched *s, struct ccvm_thread *t, const void *obj,
			     uint8_t kind)
{
	unsigned int i, n, left = 0;
	bool gone = false;

	if (s->nr_held && held_counts(obj, kind))
		s->nr_held--;
	if (!t || !t->nheld)
		return 0;
	n = t->nheld < CCVM_SCHED_MAX_HELD ? t->nheld : CCVM_SCHED_MAX_HELD;
	for (i = n; i-- > 0;) {
		if (t->held[i].obj != obj || t->held[i].kind != kind)
			continue;
		if (!gone) {
			memmove(&t->held[i], &t->held[i + 1], (n - i - 1) * sizeof(t->held[0]));
			n--;
			gone = true;
		} else {
			left++;
		}
	}
	t->nheld--;
	return left;
}

/* ---- wait predicates ---------------------------------------------------------- */

static bool rd_ok(const struct ccvm_rwlock *l)
{
	/* Writer first: readers join readers only while no writer waits. */
	return l->u.model.writer < 0 && (l->u.model.readers == 0 || l->u.model.wpending == 0);
}

static bool wr_ok(const struct ccvm_rwlock *l)
{
	return l->u.model.writer < 0 && l->u.model.readers == 0;
}

static bool runnable(const struct ccvm_sched *s, const struct ccvm_thread *t);

/*
 * The threads of @mask that can run and are not yielding.  A yield is fair
 * (as CHESS's, Musuvathi and Qadeer, PLDI 2008): the yielder records these
 * threads at its yield (t->wold; each is cleared when it is picked) and can
 * run again once none of those left can run.  Waiting only until *some* other thread had run let
 * two back-off loops take turns forever while the thread they waited for
 * never ran, at no preemption cost: the DFS found such unfair schedules and
 * reported them as failures.
 */
static uint64_t runnable_nonyielding(const struct ccvm_sched *s, uint64_t mask)
{
	uint64_t m, en = 0;

	for (m = mask & s->live; m; m &= m - 1) {
		const struct ccvm_thread *u = &s->threads[lowest(m)];

		if (u->wait != CCVM_W_YIELD && runnable(s, u))
			en |= BIT(u->id);
	}
	return en;
}

static bool runnable(const struct ccvm_sched *s, const struct ccvm_thread *t)
{
	switch (t->wait) {
	case CCVM_W_NONE:
		return true;
	case CCVM_W_MUTEX:
		return ((const struct ccvm_mutex *)t->wobj)->u.model.owner < 0;
	case CCVM_W_RDLOCK:
		return rd_ok(t->wobj);
	case CCVM_W_WRLOCK:
		return wr_ok(t->wobj);
	case CCVM_W_COND:
		return t->signaled && t->cmutex->u.model.owner < 0;
	case CCVM_W_JOIN:
		return ((const struct ccvm_thread *)t->wobj)->state != CCVM_T_LIVE;
	case CCVM_W_CHANGE:
		return load_word(t->wobj, t->wsize) != t->wold;
	case CCVM_W_YIELD:
		return !runnable_nonyielding(s, t->wold);
	}
	return true;
}

/* ---- reports --------------------------------------------------------------------- */

static void thread_ref(struct ccvm_sched *s, int id)
{
	if (id < 0)
		msg_add(s, "nobody");
	else if ((unsigned int)id >= s->nr_threads)
		msg_add(s, "a thread outside the schedule");
	else
		msg_add(s, "thread %d \"%s\"%s", id, s->threads[id].name,
			s->threads[id].state == CCVM_T_LIVE ? "" : " (ended)");
}

static void describe_wait(struct ccvm_sched *s, const struct ccvm_thread *t)
{
	const struct ccvm_rwlock *l = t->wobj;
	const char *name = t->oname ? t->oname : "?";
	uint64_t m;

	switch (t->wait) {
	case CCVM_W_NONE:
		msg_add(s, "can run, next: %s \"%s\"", op_names[t->op], name);
		break;
	case CCVM_W_MUTEX:
		msg_add(s, "waits for mutex \"%s\" held by ", name);
		thread_ref(s, ((const struct ccvm_mutex *)t->wobj)->u.model.owner);
		break;
	case CCVM_W_RDLOCK:
	case CCVM_W_WRLOCK:
		msg_add(s, "waits to %s-lock rwlock \"%s\" ",
			t->wait == CCVM_W_RDLOCK ? "read" : "write", name);
		if (l->u.model.writer >= 0) {
			msg_add(s, "held for write by ");
			thread_ref(s, l->u.model.writer);
		} else if (l->u.model.readers) {
			msg_add(s, "held for read by");
			for (m = l->u.model.reader_mask; m; m &= m - 1) {
				msg_add(s, " ");
				thread_ref(s, (int)lowest(m));
			}
			if (t->wait == CCVM_W_RDLOCK)
				msg_add(s, ", behind a waiting writer");
		}
		break;
	case CCVM_W_COND:
		if (t->signaled) {
			msg_add(s, "woken on cond \"%s\", waits for mutex \"%s\" held by ",
				name, t->cmutex->name ? t->cmutex->name : "?");
			thread_ref(s, t->cmutex->u.model.owner);
		} else {
			msg_add(s, "waits on cond \"%s\" (mutex \"%s\")", name,
				t->cmutex->name ? t->cmutex->name : "?");
		}
		break;
	case CCVM_W_JOIN:
		msg_add(s, "waits to join ");
		thread_ref(s, ((const struct ccvm_thread *)t->wobj)->id);
		break;
	case CCVM_W_CHANGE:
		msg_add(s, "waits for \"%s\" to change from %#llx", name,
			(unsigned long long)t->wold);
		break;
	case CCVM_W_YIELD:
		msg_add(s, "yields at \"%s\"", name);
		break;
	}
	if (t->site)
		msg_add(s, ", at %s:%u (%s)", site_file(t->site), t->site->line,
			t->site->func ? t->site->func : "?");
}

static void describe_threads(struct ccvm_sched *s)
{
	uint32_t i, j, n;

	for (i = 0; i < s->nr_threads; i++) {
		const struct ccvm_thread *t = &s->threads[i];

		if (t->state != CCVM_T_LIVE)
			continue;
		msg_add(s, "  thread %u \"%s\": ", i, t->name);
		describe_wait(s, t);
		n = t->nheld < CCVM_SCHED_MAX_HELD ? t->nheld : CCVM_SCHED_MAX_HELD;
		for (j = 0; j < n; j++)
			msg_add(s, "%s %s \"%s\"", j ? "," : "; holds",
				t->held[j].kind == 0 ? "mutex" :
				t->held[j].kind == 1 ? "rwlock (read)" :
				t->held[j].kind == 2 ? "rwlock (write)" : "is inside",
				t->held[j].name ? t->held[j].name : "?");
		msg_add(s, "\n");
	}
}

/* Record the run's failure; the first one wins. */
static void sched_fail(struct ccvm_sched *s, uint32_t kind, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void sched_fail(struct ccvm_sched *s, uint32_t kind, int err, const char *fmt, ...)
{
	va_list ap;

	if (s->failed)
		return;
	s->failed = true;
	s->failure = kind;
	s->error = err;
	va_start(ap, fmt);
	vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
	va_end(ap);
}

/* ---- unwinding a failed run ------------------------------------------------------ */

/* What setjmp(t->start) returns after an unwind. */
#define UNWOUND_BY_OTHER	1	/* woken by the unwinder: report back to it */
#define UNWOUND_SELF		2	/* it unwound the others: touch nothing */

static void ccvm_noreturn_unwind(struct ccvm_thread *t, int how) __attribute__((noreturn));
static void ccvm_noreturn_unwind(struct ccvm_thread *t, int how)
{
	longjmp(t->start, how);
}

static void mark_done(struct ccvm_sched *s, struct ccvm_thread *t, bool unwound)
{
	t->state = CCVM_T_DONE;
	t->unwound = unwound;
	s->live &= ~BIT(t->id);
}

/*
 * @r holds the baton and the run has failed: unwind every other thread but
 * thread 0, one at a time, then hand thread 0 the baton.  Returns only on
 * thread 0 (which decides how to leave) or for an @r without a start.
 */
static void sched_abort(struct ccvm_sched *s, struct ccvm_thread *r)
{
	struct ccvm_thread *t0 = &s->threads[0];
	uint32_t i;

	s->aborting = true;
	s->unwinder = r;
	for (i = 1; i < s->nr_threads; i++) {
		struct ccvm_thread *t = &s->threads[i];

		if (t == r || t->state != CCVM_T_LIVE)
			continue;
		s->current = t;
		sem_post(&t->baton);
		sem_wait_nointr(&r->baton);
	}
	s->current = r;
	if (r == t0)
		return;
	if (r->state == CCVM_T_LIVE)
		mark_done(s, r, true);
	if (t0->state == CCVM_T_LIVE) {
		s->current = t0;
		sem_post(&t0->baton);
	}
	/*
	 * Touch nothing shared from here, not even *r: thread 0 may start the
	 * next run and take r's slot again.
	 */
	ccvm_noreturn_unwind(r, UNWOUND_SELF);
}

/* Woken while the run is being aborted. */
static void unwind_self(struct ccvm_sched *s, struct ccvm_thread *t)
{
	if (t->id == 0) {
		if (t->has_jmp)
			ccvm_noreturn_unwind(t, UNWOUND_BY_OTHER);
		return;		/* a direct-mode creator: its call returns */
	}
	(void)s;
	ccvm_noreturn_unwind(t, UNWOUND_BY_OTHER);
}

/* The failed run must end now; returns only for a direct-mode thread 0. */
static void fail_now(struct ccvm_sched *s, struct ccvm_thread *r)
{
	sched_abort(s, r);
	if (r->has_jmp)
		ccvm_noreturn_unwind(r, UNWOUND_BY_OTHER);
}

/* ---- strategies ------------------------------------------------------------------- */

/* The alternatives of DFS node @n in the order they are tried. */
static unsigned int node_alts(const struct ccvm_sched *s, const struct ccvm_sched_node *n,
			      uint8_t *alts)
{
	unsigned int def = n->cur != CCVM_SCHED_NONE ? n->cur : lowest(n->enabled);
	unsigned int k = 0;
	uint64_t m;

	if (!(n->sleep & BIT(def)))
		alts[k++] = (uint8_t)def;
	for (m = n->enabled & ~BIT(def) & ~n->sleep; m; m &= m - 1) {
		/* Taking another thread while the running one can go on preempts it. */
		unsigned int cost = n->cur != CCVM_SCHED_NONE;

		if (cost && n->nopreempt)
			break;

		if (s->bound >= 0 && n->preempt + cost > (unsigned int)s->bound)
			continue;
		alts[k++] = (uint8_t)lowest(m);
	}
	return k;
}

/*
 * Shards [lo, hi) of node @n's subtree split between its @nalts
 * alternatives: one shard each round-robin when there are enough
 * alternatives, else contiguous slices that split further down.
 */
static void alt_range(const struct ccvm_sched_node *n, unsigned int k, unsigned int nalts,
		      uint32_t *lo, uint32_t *hi)
{
	uint32_t r = n->hi - n->lo;

	if (r <= 1) {
		*lo = n->lo;
		*hi = n->hi;
	} else if (nalts >= r) {
		*lo = n->lo + k % r;
		*hi = *lo + 1;
	} else {
		*lo = n->lo + (uint32_t)((uint64_t)k * r / nalts);
		*hi = n->lo + (uint32_t)((uint64_t)(k + 1) * r / nalts);
	}
}

static struct ccvm_sched_node *node_push(struct ccvm_sched *s)
{
	if (s->nr_nodes == s->cap_nodes) {
		size_t cap = s->cap_nodes ? 2 * s->cap_nodes : 256;
		struct ccvm_sched_node *n = realloc(s->nodes, cap * sizeof(*n));

		if (!n)
			return NULL;
		s->nodes = n;
		s->cap_nodes = cap;
	}
	return &s->nodes[s->nr_nodes++];
}

/*
 * A preemption just before a release (unlock, thread exit, yield) is never
 * needed: what other threads do until the releasing thread runs again
 * cannot need what it releases (they would wait for it), so the same
 * interleaving, with the preemption one step later, is explored anyway.
 * (A try-lock of the sync layer on the lock being released would tell the
 * difference; the library has none.  CCVM_EXPLORE_PREEMPT_ALL turns this
 * off.)
 */
static bool is_release(uint8_t op)
{
	return op == CCVM_SCHED_OP_UNLOCK || op == CCVM_SCHED_OP_RWUNLOCK ||
	       op == CCVM_SCHED_OP_EXIT || op == CCVM_SCHED_OP_YIELD;
}

/* ---- state caching ------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t hb_mix(uint64_t a, uint64_t b)
{
	return mix64(a * 0x9e3779b97f4a7c15ull + b + 0x632be59bd9b4e019ull);
}

/* The hash slot of @obj in this run; NULL when the table is full. */
static struct ccvm_sched_obj *hb_obj(struct ccvm_sched *s, const void *obj)
{
	size_t i = (size_t)mix64((uint64_t)(uintptr_t)obj), n;

	for (n = 0; n < CCVM_SCHED_OBJS; n++, i++) {
		struct ccvm_sched_obj *o = &s->objs[i & (CCVM_SCHED_OBJS - 1)];

		if (o->gen != s->run_gen) {
			*o = (struct ccvm_sched_obj){ .key = obj, .gen = s->run_gen };
			return o;
		}
		if (o->key == obj)
			return o;
	}
	return NULL;
}

/*
 * Object @obj is destroyed: forget its history, so that an object made
 * later at the same address starts afresh.  Without this the state
 * fingerprint would depend on whether the allocator reuses addresses (it
 * does in a plain build, ASan's quarantine does not), and so would the
 * size of the DFS tree.
 */
static void hb_forget(struct ccvm_sched *s, const void *obj)
{
	size_t i = (size_t)mix64((uint64_t)(uintptr_t)obj), n;

	if (!s || !s->cache || s->cache_off || s->dfs_off || !s->objs)
		return;
	for (n = 0; n < CCVM_SCHED_OBJS; n++, i++) {
		struct ccvm_sched_obj *o = &s->objs[i & (CCVM_SCHED_OBJS - 1)];

		if (o->gen != s->run_gen)
			return;
		if (o->key != obj)
			continue;
		o->w = o->r = 0;
		o->key = &s->objs;	/* a tombstone: no object has this address */
		return;
	}
}

/*
 * The access of @t's pending step to object @obj (its first or second):
 * whether it only reads it.  Lock operations, condition operations,
 * creation, start, exit and join write their objects; a point or a
 * spin-wait reads or writes as its caller says.
 */
static bool hb_reads(const struct ccvm_thread *t, unsigned int which)
{
	return t->dread & (1u << which);
}

/*
 * Thread @t performs its pending operation: extend the happens-before
 * hashes (a Merkle hash of the Mazurkiewicz trace so far).
 *
 * A step's hash folds its thread's previous hash (program order), its
 * operation, and the hashes of the steps it depends on:
 *
 *  - a step with no object conflicts with every step: it folds the hash of
 *    every thread (fp_threads: each thread's last step, which folds its
 *    own history), and becomes the last global step (g_hash);
 *  - any other step conflicts with the last global step (folds g_hash) and,
 *    per object it touches, with the last write of it (reads and writes)
 *    and with the reads since that write (writes only).  Reads of one
 *    object commute: they are summed, not chained.
 *
 * Two interleavings that order every dependent pair alike get the same
 * thread hashes, whatever they did with independent steps.
 */
static void hb_step(struct ccvm_sched *s, const struct ccvm_thread *t)
{
	uint64_t old = s->th_hash[t->id];
	uint64_t h = hb_mix(hb_mix(old, t->op), (uint64_t)(uintptr_t)t->oname);
	const void *obj[3] = { t->dobj, t->dobj2, t->dobj3 };
	struct ccvm_sched_obj *o[3] = { NULL, NULL, NULL };
	unsigned int i;

	if (!t->dobj) {
		h = hb_mix(hb_mix(h, s->fp_threads), s->g_hash);
		s->g_hash = h;
	} else {
		h = hb_mix(h, s->g_hash);
		for (i = 0; i < 3; i++) {
			if (!obj[i] || (i && obj[i] == obj[0]) || (i == 2 && obj[2] == obj[1]))
				continue;
			o[i] = hb_obj(s, obj[i]);
			if (!o[i]) {
				s->cache_off = true;
				return;
			}
			h = hb_mix(h, o[i]->w);
			if (!hb_reads(t, i))
				h = hb_mix(h, o[i]->r);
		}
		for (i = 0; i < 3; i++) {
			if (!o[i])
				continue;
			if (hb_reads(t, i)) {
				o[i]->r += mix64(h ^ 0x72656164);
			} else {
				o[i]->w = h;
				o[i]->r = 0;
			}
		}
	}
	s->fp_threads += hb_mix(t->id, h) - (old ? hb_mix(t->id, old) : 0);
	s->th_hash[t->id] = h;
}

/*
 * A new DFS node at this state: was the state seen before, with no more
 * preemptions spent?  Then everything below it was explored already.
 * Otherwise note it.  Return: true to prune.
 */
static bool state_seen(struct ccvm_sched *s, unsigned int cur)
{
	uint64_t key = hb_mix(hb_mix(s->fp_threads, s->g_hash),
			      (uint64_t)cur | (uint64_t)s->lo << 8 | (uint64_t)s->hi << 40) | 1;
	size_t i;

	if (s->nr_seen * 2 >= s->cap_seen) {
		size_t cap = s->cap_seen ? 2 * s->cap_seen : 1 << 14, j;
		struct ccvm_sched_seen *t = calloc(cap, sizeof(*t));

		if (!t)
			return false;		/* no memory: explore without caching */
		for (j = 0; j < s->cap_seen; j++) {
			if (!s->seen[j].key)
				continue;
			for (i = (size_t)mix64(s->seen[j].key); t[i & (cap - 1)].key; i++)
				;
			t[i & (cap - 1)] = s->seen[j];
		}
		free(s->seen);
		s->seen = t;
		s->cap_seen = cap;
	}
	for (i = (size_t)mix64(key);; i++) {
		struct ccvm_sched_seen *e = &s->seen[i & (s->cap_seen - 1)];

		if (!e->key) {
			*e = (struct ccvm_sched_seen){ key, s->preempt };
			s->nr_seen++;
			return false;
		}
		if (e->key == key) {
			if (e->preempt <= s->preempt)
				return true;
			e->preempt = s->preempt;
			return false;
		}
	}
}

/* DFS pick at a step where @en (two or more threads) can run. */
static int pick_dfs(struct ccvm_sched *s, uint64_t en, unsigned int cur, unsigned int def)
{
	uint8_t alts[CCVM_SCHED_MAX_THREADS];
	struct ccvm_sched_node *n;
	unsigned int nalts, k, i;

	if (s->dfs_off)
		return (int)def;
	if (s->node_idx < s->prefix) {
		n = &s->nodes[s->node_idx];
		if (n->enabled != en || n->cur != cur) {
			sched_fail(s, CCVM_EXPLORE_FAIL_DIVERGED, -ESTALE,
				   "the scenario is not deterministic: at step %llu threads %#llx "
				   "could run, in the run before %#llx\n",
				   (unsigned long long)s->step, (unsigned long long)en,
				   (unsigned long long)n->enabled);
			return -1;
		}
		nalts = node_alts(s, n, alts);
		k = n->chosen;
	} else {
		n = node_push(s);
		if (!n) {
			sched_fail(s, CCVM_EXPLORE_FAIL_MISUSE, -ENOMEM, "out of memory for the DFS stack\n");
			return -1;
		}
		*n = (struct ccvm_sched_node){
			.enabled = en, .sleep = s->sleep, .lo = s->lo, .hi = s->hi,
			.preempt = (uint16_t)s->preempt, .cur = (uint8_t)cur,
			.nopreempt = !s->preempt_all && cur != CCVM_SCHED_NONE &&
				     (is_release(s->threads[cur].op) ||
				      s->threads[cur].op == CCVM_SCHED_OP_JOIN),
		};
		if (s->cache && !s->cache_off && state_seen(s, cur)) {
			/* Explored from here already, by an equivalent interleaving. */
			s->nr_nodes--;
			s->dfs_off = true;
			s->cache_hits++;
			return (int)def;
		}
		nalts = node_alts(s, n, alts);
		if (!nalts) {
			/* Every runnable thread sleeps: the rest was explored elsewhere. */
			s->nr_nodes--;
			s->dfs_off = true;
			return (int)def;
		}
		for (k = 0; k < nalts; k++) {
			uint32_t lo, hi;

			alt_range(n, k, nalts, &lo, &hi);
			if (lo <= s->shard_index && s->shard_index < hi)
				break;
		}
		n->chosen = (uint8_t)k;
	}
	s->node_idx++;
	alt_range(n, k, nalts, &s->lo, &s->hi);
	if (s->sleep_sets) {
		/* Alternatives tried before this one (here or by other shards) sleep. */
		s->sleep = n->sleep;
		for (i = 0; i < k; i++)
			s->sleep |= BIT(alts[i]);
	}
	if (cur != CCVM_SCHED_NONE && alts[k] != cur)
		s->preempt++;
	return alts[k];
}

static int pick_replay(struct ccvm_sched *s, uint64_t en, unsigned int def)
{
	unsigned int id;

	if (s->replay_i >= s->replay_n || s->replay[s->replay_i].step != s->step)
		return (int)def;
	id = s->replay[s->replay_i++].tid;
	if (id < CCVM_SCHED_MAX_THREADS && (en & BIT(id)) && id != def)
		return (int)id;
	sched_fail(s, CCVM_EXPLORE_FAIL_DIVERGED, -ESTALE,
		   "replay diverged at step %llu: the token runs thread %u, which %s "
		   "(runnable: %#llx); the scenario no longer matches the token\n",
		   (unsigned long long)s->step, id,
		   id == def ? "would run anyway" : "cannot run here",
		   (unsigned long long)en);
	return -1;
}

/*
 * PCT (Burckhardt et al., ASPLOS 2010): the runnable thread of highest
 * priority runs; at change point i (a step drawn uniformly from the run
 * length estimate) the running thread's priority drops to i, below every
 * start priority (which are >= d).
 */
static unsigned int pick_pct(struct ccvm_sched *s, struct ccvm_thread *r, uint64_t en)
{
	unsigned int best = lowest(en), i;
	uint64_t m;

	for (i = 0; i < s->pct_nchange; i++)
		if (s->pct_change[i] == s->step && r && r->state == CCVM_T_LIVE)
			r->prio = i + 1;
	for (m = en & (en - 1); m; m &= m - 1)
		if (s->threads[lowest(m)].prio > s->threads[best].prio)
			best = lowest(m);
	return best;
}

/* ---- the step ------------------------------------------------------------------------ */

static void rec_push(struct ccvm_sched *s, uint64_t v)
{
	uint8_t *rec = s->rec;

	if (s->rec_cap - s->rec_len < 10) {
		size_t cap = s->rec_cap ? 2 * s->rec_cap : 4096;

		rec = realloc(rec, cap);
		if (!rec) {
			sched_fail(s, CCVM_EXPLORE_FAIL_MISUSE, -ENOMEM,
				   "out of memory for the schedule record\n");
			return;
		}
		s->rec_cap = cap;
		s->rec = rec;
	}
	do {
		rec[s->rec_len++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

static void emit_event(struct ccvm_sched *s, const struct ccvm_thread *t)
{
	struct ccvm_sched_event ev = {
		.step = s->step,
		.thread = t->id,
		.op = t->op,
		.obj = t->oname,
		.file = t->site ? t->site->file : NULL,
		.func = t->site ? t->site->func : NULL,
		.line = t->site ? t->site->line : 0,
	};

	memcpy(ev.thread_name, t->name, sizeof(ev.thread_name));
	s->event_fn(&ev, s->event_ctx);
}

/* Whether the pending steps of @a and @b conflict (do not commute). */
static bool dependent(const struct ccvm_thread *a, const struct ccvm_thread *b)
{
	const void *ao[3] = { a->dobj, a->dobj2, a->dobj3 };
	const void *bo[3] = { b->dobj, b->dobj2, b->dobj3 };
	unsigned int i, j;

	if (!a->dobj || !b->dobj)
		return true;
	for (i = 0; i < 3; i++)
		for (j = 0; j < 3; j++)
			if (ao[i] && ao[i] == bo[j] && !(hb_reads(a, i) && hb_reads(b, j)))
				return true;
	return false;
}

static bool quiescent_check(struct ccvm_sched *s);

/*
 * Pick the thread that performs the next step; @r is the one at the point
 * (NULL or ended after an exit).  Return: the thread, or NULL when the run
 * failed here.
 */
static struct ccvm_thread *pick(struct ccvm_sched *s, struct ccvm_thread *r)
{
	uint64_t en = 0, m;
	unsigned int cur, def, dcur;
	struct ccvm_thread *t;
	struct ccvm_sched_ring *ring;
	int id, eager = -1;

	if (s->step >= s->step_bound) {
		sched_fail(s, CCVM_EXPLORE_FAIL_LIVELOCK, -ELOOP,
			   "livelock: the run did not end within %llu steps\n",
			   (unsigned long long)s->step_bound);
		describe_threads(s);
		return NULL;
	}
	if (((s->sc && s->sc->check) || s->lib_check) && s->checks_armed && !s->nr_held &&
	    !quiescent_check(s))
		return NULL;
	for (m = s->live; m; m &= m - 1)
		if (runnable(s, &s->threads[lowest(m)]))
			en |= BIT(lowest(m));
	if (!en) {
		/* A yield cannot block: with nobody else to run, yielders go on. */
		for (m = s->live; m; m &= m - 1)
			if (s->threads[lowest(m)].wait == CCVM_W_YIELD)
				en |= BIT(lowest(m));
	}
	if (!en) {
		sched_fail(s, CCVM_EXPLORE_FAIL_DEADLOCK, -EDEADLK,
			   "deadlock at step %llu: no thread can run\n",
			   (unsigned long long)s->step);
		describe_threads(s);
		return NULL;
	}
	cur = r && (en & BIT(r->id)) ? r->id : CCVM_SCHED_NONE;
	def = cur != CCVM_SCHED_NONE ? cur : lowest(en);
	dcur = cur;
	if (s->sleep_sets && !s->dfs_off && !(en & ~s->sleep))
		s->dfs_off = true;	/* only sleeping threads can run: redundant */

	if (s->strategy == CCVM_SCHED_DFS && !s->preempt_all) {
		/*
		 * A join whose thread ended is invisible (section 4.3): after
		 * a step at which nobody kept running it runs at once, with
		 * no node, and the step after it is picked as if it had not
		 * happened (nobody is running), so what the join did not
		 * decide costs no preemption.  The token records it as usual.
		 */
		bool after_join = s->after_join;

		s->after_join = false;
		if (after_join)
			dcur = CCVM_SCHED_NONE;
		if (dcur == CCVM_SCHED_NONE && (en & (en - 1))) {
			for (m = en; m; m &= m - 1)
				if (s->threads[lowest(m)].op == CCVM_SCHED_OP_JOIN)
					break;
			if (m) {
				eager = (int)lowest(m);
				s->after_join = true;
			}
		}
	}
	if (eager >= 0) {
		id = eager;
	} else if (!(en & (en - 1))) {
		id = (int)def;
	} else {
		switch (s->strategy) {
		case CCVM_SCHED_RANDOM:
			id = (int)nth_bit(en, (unsigned int)(rng_next(&s->rng) %
						(unsigned int)__builtin_popcountll(en)));
			break;
		case CCVM_SCHED_PCT:
			id = (int)pick_pct(s, r, en);
			break;
		case CCVM_SCHED_DFS:
			id = pick_dfs(s, en, dcur, dcur != CCVM_SCHED_NONE ? dcur : lowest(en));
			break;
		case CCVM_SCHED_REPLAY:
			id = pick_replay(s, en, def);
			break;
		default:
			id = (int)def;
			break;
		}
		if (id < 0)
			return NULL;
	}
	if ((unsigned int)id != def) {
		rec_push(s, s->step - s->rec_last);
		rec_push(s, (uint64_t)id);
		s->rec_last = s->step;
		if (s->failed)
			return NULL;
	}
	t = &s->threads[id];
	if (!r || r != t)
		s->nswitch++;	/* reported in the explorer's statistics */
	for (m = s->live & ~BIT(id); m; m &= m - 1)
		if (s->threads[lowest(m)].wait == CCVM_W_YIELD)
			s->threads[lowest(m)].wold &= ~BIT(id);
	if (s->sleep_sets && !s->dfs_off) {
		for (m = s->sleep; m; m &= m - 1)
			if (dependent(&s->threads[lowest(m)], t))
				s->sleep &= ~BIT(lowest(m));
		s->sleep &= ~BIT(id);
	}
	if (s->cache && !s->cache_off && !s->dfs_off)
		hb_step(s, t);
	ring = &s->ring[s->step & (CCVM_SCHED_RING - 1)];
	ring->step = s->step;
	ring->obj = t->oname;
	ring->site = t->site;
	ring->tid = (uint8_t)id;
	ring->op = t->op;
	s->hash = (s->hash ^ (uint32_t)(id | t->op << 8)) * 16777619u;
	if (s->event_fn)
		emit_event(s, t);
	s->step++;
	return t;
}

/* Sleep until picked; a failed run unwinds from here. */
static void park(struct ccvm_sched *s, struct ccvm_thread *t)
{
	sem_wait_nointr(&t->baton);
	if (s->aborting)
		unwind_self(s, t);
}

/*
 * The running thread @t announces its next operation and waits until it is
 * picked to do it.  Return: true to do it; false only for a direct-mode
 * thread 0 after the run failed (skip the operation).
 */
/*
 * Whether @t's step @op (on @wobj) touches the machine besides its own
 * objects: a lock operation on a machine lock (ccvm_sched_rwlock_hw()),
 * or any step while @t holds one or is inside a backend op.  The state
 * they guard is written by holders and read lock-free or by readers, so
 * each segment of such a thread is ordered with the machine's other users.
 */
static bool touches_hw(const struct ccvm_thread *t, uint8_t op, const void *wobj)
{
	unsigned int i, n = t->nheld < CCVM_SCHED_MAX_HELD ? t->nheld : CCVM_SCHED_MAX_HELD;

	if ((op == CCVM_SCHED_OP_RDLOCK || op == CCVM_SCHED_OP_WRLOCK ||
	     op == CCVM_SCHED_OP_TRYRDLOCK || op == CCVM_SCHED_OP_TRYWRLOCK ||
	     op == CCVM_SCHED_OP_RWUNLOCK) &&
	    ((const struct ccvm_rwlock *)wobj)->u.model.hw)
		return true;
	for (i = 0; i < n; i++) {
		const struct ccvm_held *hd = &t->held[i];

		if (hd->kind == 3 ||
		    ((hd->kind == 1 || hd->kind == 2) &&
		     ((const struct ccvm_rwlock *)hd->obj)->u.model.hw))
			return true;
	}
	return false;
}

static bool step_x(struct ccvm_sched *s, struct ccvm_thread *t, uint8_t op, uint8_t wait,
		   const void *wobj, const void *dobj, const void *dobj2, uint8_t dread,
		   const char *name, const struct ccvm_sync_site *site)
{
	struct ccvm_thread *next;

	t->op = op;
	t->wait = wait;
	t->wobj = wobj;
	t->dobj = dobj;
	t->dobj2 = dobj ? dobj2 : NULL;
	t->dread = dobj ? dread : 0;
	t->dobj3 = NULL;
	if (dobj && touches_hw(t, op, wobj)) {
		/* It writes the machine, whether or not it names it. */
		if (dobj == CCVM_SCHED_HW(s))
			t->dread &= (uint8_t)~1u;
		else if (t->dobj2 == CCVM_SCHED_HW(s))
			t->dread &= (uint8_t)~2u;
		else
			t->dobj3 = CCVM_SCHED_HW(s);
	}
	t->oname = name;
	t->site = site;
	next = pick(s, t);
	if (!next) {
		fail_now(s, t);
		return false;
	}
	if (next != t) {
		s->current = next;
		sem_post(&next->baton);
		park(s, t);
		if (s->aborting)
			return false;
	}
	t->wait = CCVM_W_NONE;
	return true;
}

/* A step touching (writing) @dobj alone; NULL: anything. */
static bool step(struct ccvm_sched *s, struct ccvm_thread *t, uint8_t op, uint8_t wait,
		 const void *wobj, const void *dobj, const char *name,
		 const struct ccvm_sync_site *site)
{
	return step_x(s, t, op, wait, wobj, dobj, NULL, 0, name, site);
}

/* A rule of the sync layer broken by @t: fail the run. */
static void misuse(struct ccvm_sched *s, struct ccvm_thread *t, const struct ccvm_sync_site *site,
		   const char *what, const char *name)
{
	sched_fail(s, CCVM_EXPLORE_FAIL_MISUSE, -EPERM,
		   "misuse at step %llu: thread %u \"%s\" %s \"%s\", at %s:%u\n",
		   (unsigned long long)s->step, t->id, t->name, what, name ? name : "?",
		   site_file(site), site ? site->line : 0);
	describe_threads(s);
	fail_now(s, t);
}

/*
 * The controlled thread calling into @s, or NULL to act directly on the
 * model without scheduling: outside a run, inside a check, after a failure,
 * or from a thread the scheduler does not control.
 */
static struct ccvm_thread *controlled(struct ccvm_sched *s)
{
	struct ccvm_thread *t = sched_self;

	if (t && t->s == s && s->running && !s->in_check && !s->failed)
		return t;
	return NULL;
}

static int self_id(struct ccvm_sched *s)
{
	struct ccvm_thread *t = sched_self;

	return t && t->s == s ? t->id : CCVM_SCHED_MAX_THREADS;
}

static struct ccvm_thread *self_of(struct ccvm_sched *s)
{
	struct ccvm_thread *t = sched_self;

	return t && t->s == s ? t : NULL;
}

/* ---- sync objects -------------------------------------------------------------------- */

struct ccvm_sched *ccvm_platform_sched(const struct ccvm_platform *p)
{
	return p ? p->sched : NULL;
}

int ccvm_mutex_init(struct ccvm_mutex *m, struct ccvm_sched *s, const char *name)
{
	if (!m)
		return -EINVAL;
	m->sched = s;
	m->name = name;
	m->waiters = 0;
	m->held = 0;
	if (s) {
		m->u.model.owner = -1;
		m->u.model.outer = 0;
		return 0;
	}
	return -pthread_mutex_init(&m->u.lock, NULL);
}

void ccvm_mutex_destroy(struct ccvm_mutex *m)
{
	if (m && !m->sched)
		pthread_mutex_destroy(&m->u.lock);
	else if (m)
		hb_forget(m->sched, m);
}

int ccvm_rwlock_init(struct ccvm_rwlock *l, struct ccvm_sched *s, const char *name)
{
	pthread_rwlockattr_t a;
	int err;

	if (!l)
		return -EINVAL;
	l->sched = s;
	l->name = name;
	l->waiters = 0;
	if (s) {
		memset(&l->u.model, 0, sizeof(l->u.model));
		l->u.model.writer = -1;
		return 0;
	}
	/* Writers first: vCPUs fault continuously, a zap must not starve. */
	err = pthread_rwlockattr_init(&a);
	if (err)
		return -err;
#ifdef PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP	/* glibc: the kind is an enum */
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
	err = pthread_rwlock_init(&l->u.lock, &a);
	pthread_rwlockattr_destroy(&a);
	return -err;
}

/*
 * Free-running slow paths: spin a while before sleeping.  The library's
 * locks are held for short sections (a zap of a small range, an xarray
 * store, an install), and KVM's own mmu_lock is a spinning rwlock: a vCPU
 * that went to sleep on the futex each time a conversion elsewhere took
 * mmu_lock for write would pay a wakeup per section, and with a writer
 * that takes the lock again a few hundred nanoseconds after it let it go
 * (a converter's pre and post sections, back to back) the sleeper is
 * woken only to find it taken again.  A waiter that stays on its CPU gets
 * in between.  The spin is bounded (SPIN_TRIES tries, a few microseconds),
 * then the waiter blocks as before: a holder that was preempted costs the
 * spin, never more.  The waiter is counted for needbreak() from the start.
 */
#define SPIN_TRIES	256
#define SPIN_PAUSES	16

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
#endif
}

static void spin_pause(void)
{
	int i;

	for (i = 0; i < SPIN_PAUSES; i++)
		cpu_relax();
}

void ccvm_sync_mutex_wait(struct ccvm_mutex *m)
{
	int i;

	__atomic_fetch_add(&m->waiters, 1, __ATOMIC_RELAXED);
	for (i = 0; i < SPIN_TRIES; i++) {
		spin_pause();
		if (pthread_mutex_trylock(&m->u.lock) == 0)
			goto out;
	}
	pthread_mutex_lock(&m->u.lock);
out:
	__atomic_fetch_sub(&m->waiters, 1, __ATOMIC_RELAXED);
}

void ccvm_sync_rwlock_wait(struct ccvm_rwlock *l, int write)
{
	int i;

	__atomic_fetch_add(&l->waiters, 1, __ATOMIC_RELAXED);
	for (i = 0; i < SPIN_TRIES; i++) {
		spin_pause();
		if (ccvm_sync_rwlock_plain(l, write ? CCVM_SYNC_RW_TRYWRLOCK
						    : CCVM_SYNC_RW_TRYRDLOCK) == 0)
			goto out;
	}
	ccvm_sync_rwlock_plain(l, write ? CCVM_SYNC_RW_WRLOCK : CCVM_SYNC_RW_RDLOCK);
out:
	__atomic_fetch_sub(&l->waiters, 1, __ATOMIC_RELAXED);
}

int ccvm_sync_rwlock_plain(struct ccvm_rwlock *l, int op)
{
	switch (op) {
	case CCVM_SYNC_RW_RDLOCK: return pthread_rwlock_rdlock(&l->u.lock);
	case CCVM_SYNC_RW_WRLOCK: return pthread_rwlock_wrlock(&l->u.lock);
	case CCVM_SYNC_RW_TRYRDLOCK: return pthread_rwlock_tryrdlock(&l->u.lock);
	case CCVM_SYNC_RW_TRYWRLOCK: return pthread_rwlock_trywrlock(&l->u.lock);
	case CCVM_SYNC_RW_UNLOCK: return pthread_rwlock_unlock(&l->u.lock);
	}
	return EINVAL;
}

void ccvm_rwlock_destroy(struct ccvm_rwlock *l)
{
	if (l && !l->sched)
		pthread_rwlock_destroy(&l->u.lock);
	else if (l)
		hb_forget(l->sched, l);
}

int ccvm_cond_init(struct ccvm_cond *c, struct ccvm_sched *s, const char *name)
{
	if (!c)
		return -EINVAL;
	c->sched = s;
	c->name = name;
	if (s)
		return 0;
	return -pthread_cond_init(&c->cond, NULL);
}

void ccvm_cond_destroy(struct ccvm_cond *c)
{
	if (c && !c->sched)
		pthread_cond_destroy(&c->cond);
	else if (c)
		hb_forget(c->sched, c);
}

void ccvm_sync_mutex_lock(struct ccvm_mutex *m, const struct ccvm_sync_site *site)
{
	struct ccvm_sched *s = m->sched;
	struct ccvm_thread *t = controlled(s);

	if (s->in_check)
		return;		/* nothing else runs: the checker reads as if it held it */
	if (!t) {
		m->u.model.owner = self_id(s);
		held_add(s, self_of(s), m, m->name, 0);
		return;
	}
	if (m->u.model.owner == t->id) {
		misuse(s, t, site, "locks the mutex it holds:", m->name);
		return;
	}
	if (!step(s, t, CCVM_SCHED_OP_LOCK, CCVM_W_MUTEX, m, m, m->name, site))
		return;
	m->u.model.owner = t->id;
	held_add(s, t, m, m->name, 0);
}

int ccvm_sync_mutex_trylock(struct ccvm_mutex *m, const struct ccvm_sync_site *site)
{
	struct ccvm_sched *s = m->sched;
	struct ccvm_thread *t = controlled(s);

	if (s->in_check)
		return 0;
	if (t && !step(s, t, CCVM_SCHED_OP_TRYLOCK, CCVM_W_NONE, m, m, m->name, site))
		return -EBUSY;
	if (m->u.model.owner >= 0)
		return -EBUSY;
	m->u.model.owner = t ? t->id : self_id(s);
	held_add(s, t ? t : self_of(s), m, m->name, 0);
	return 0;
}

void ccvm_sync_mutex_unlock(struct ccvm_mutex *m, const struct ccvm_sync_site *site)
{
	struct ccvm_sched *s = m->sched;
	struct ccvm_thread *t = controlled(s);

	if (s->in_check)
		return;
	if (t) {
		if (m->u.model.owner != t->id) {
			misuse(s, t, site, "unlocks a mutex it does not hold:", m->name);
			return;
		}
		if (!step(s, t, CCVM_SCHED_OP_UNLOCK, CCVM_W_NONE, m, m, m->name, site))
			return;
	}
	m->u.model.owner = -1;
	held_del(s, t ? t : self_of(s), m, 0);
}

static void rw_take(struct ccvm_sched *s, struct ccvm_thread *t, struct ccvm_rwlock *l,
		    int write)
{
	int id = t ? t->id : self_id(s);

	if (write) {
		l->u.model.writer = id;
	} else {
		l->u.model.readers++;
		if (id < CCVM_SCHED_MAX_THREADS)
			l->u.model.reader_mask |= BIT(id);
	}
	held_add(s, t ? t : self_of(s), l, l->name, write ? 2 : 1);
}

void ccvm_sync_rwlock_lock(struct ccvm_rwlock *l, int write, const struct ccvm_sync_site *site)
{
	struct ccvm_sched *s = l->sched;
	struct ccvm_thread *t = controlled(s);
	bool ok;

	if (s->in_check)
		return;
	if (!t) {
		rw_take(s, NULL, l, write);
		return;
	}
	if (l->u.model.writer == t->id ||
	    (write && (l->u.model.reader_mask & BIT(t->id)))) {
		misuse(s, t, site, write ? "write-locks an rwlock it holds:" :
			  "read-locks an rwlock it holds for write:", l->name);
		return;
	}
	if (write) {
		l->u.model.wpending++;
		ok = step(s, t, CCVM_SCHED_OP_WRLOCK, CCVM_W_WRLOCK, l, l, l->name, site);
		l->u.model.wpending--;
	} else {
		ok = step(s, t, CCVM_SCHED_OP_RDLOCK, CCVM_W_RDLOCK, l, l, l->name, site);
	}
	if (ok)
		rw_take(s, t, l, write);
}

int ccvm_sync_rwlock_trylock(struct ccvm_rwlock *l, int write, const struct ccvm_sync_site *site)
{
	struct ccvm_sched *s = l->sched;
	struct ccvm_thread *t = controlled(s);

	if (s->in_check)
		return 0;
	if (t && !step(s, t, write ? CCVM_SCHED_OP_TRYWRLOCK : CCVM_SCHED_OP_TRYRDLOCK,
		       CCVM_W_NONE, l, l, l->name, site))
		return -EBUSY;
	if (write ? !wr_ok(l) : !rd_ok(l))
		return -EBUSY;
	rw_take(s, t, l, write);
	return 0;
}

void ccvm_sync_rwlock_unlock(struct ccvm_rwlock *l, const struct ccvm_sync_site *site)
{
	struct ccvm_sched *s = l->sched;
	struct ccvm_thread *t = controlled(s);
	struct ccvm_thread *me = t ? t : self_of(s);
	int id = t ? t->id : self_id(s);

	if (s->in_check)
		return;
	if (t) {
		if (l->u.model.writer != t->id && !(l->u.model.reader_mask & BIT(t->id))) {
			misuse(s, t, site, "unlocks an rwlock it does not hold:", l->name);
			return;
		}
		if (!step(s, t, CCVM_SCHED_OP_RWUNLOCK, CCVM_W_NONE, l, l, l->name, site))
			return;
	}
	if (l->u.model.writer >= 0 && (l->u.model.writer == id || !t)) {
		l->u.model.writer = -1;
		held_del(s, me, l, 2);
	} else if (l->u.model.readers) {
		l->u.model.readers--;
		if (!held_del(s, me, l, 1) && id < CCVM_SCHED_MAX_THREADS)
			l->u.model.reader_mask &= ~BIT(id);
		if (!l->u.model.readers)
			l->u.model.reader_mask = 0;
	}
}

void ccvm_sync_cond_wait(struct ccvm_cond *c, struct ccvm_mutex *m,
			 const struct ccvm_sync_site *site)
{
	struct ccvm_sched *s = c->sched;
	struct ccvm_thread *t = controlled(s);

	if (!t)
		return;		/* nobody else can run: a spurious wake-up */
	if (m->sched != s || m->u.model.owner != t->id) {
		misuse(s, t, site, "waits on a condition without holding its mutex:", c->name);
		return;
	}
	/* Release and sleep are one step; taking the mutex back is another. */
	/*
	 * The wait releases the mutex and queues on the condition; the wake
	 * takes the mutex back once signalled: each touches both, nothing
	 * else (what follows is guarded by the mutex).
	 */
	if (!step_x(s, t, CCVM_SCHED_OP_COND_WAIT, CCVM_W_NONE, c, c, m, 0, c->name, site))
		return;
	m->u.model.owner = -1;
	held_del(s, t, m, 0);
	t->ticket = s->ticket++;
	t->signaled = false;
	t->cmutex = m;
	if (!step_x(s, t, CCVM_SCHED_OP_COND_WAKE, CCVM_W_COND, c, c, m, 0, c->name, site))
		return;
	m->u.model.owner = t->id;
	held_add(s, t, m, m->name, 0);
}

void ccvm_sync_cond_wake(struct ccvm_cond *c, int all, const struct ccvm_sync_site *site)
{
	struct ccvm_sched *s = c->sched;
	struct ccvm_thread *t = controlled(s), *first = NULL;
	uint64_t m;

	if (t && !step(s, t, all ? CCVM_SCHED_OP_BROADCAST : CCVM_SCHED_OP_SIGNAL, CCVM_W_NONE,
		       c, c, c->name, site))
		return;
	/* A signal wakes the longest waiter: the choice is the schedule's, not ours. */
	for (m = s->live; m; m &= m - 1) {
		struct ccvm_thread *w = &s->threads[lowest(m)];

		if (w->wait != CCVM_W_COND || w->wobj != c || w->signaled)
			continue;
		if (all)
			w->signaled = true;
		else if (!first || w->ticket < first->ticket)
			first = w;
	}
	if (first)
		first->signaled = true;
}

void ccvm_sync_point(struct ccvm_sched *s, const void *obj, const char *where,
		     const struct ccvm_sync_site *site)
{
	struct ccvm_thread *t = controlled(s);

	if (t)
		step(s, t, CCVM_SCHED_OP_POINT, CCVM_W_NONE, obj, obj, where, site);
}

void ccvm_sync_point2(struct ccvm_sched *s, const void *a, const void *b, unsigned int reads,
		      const char *where, const struct ccvm_sync_site *site)
{
	struct ccvm_thread *t = controlled(s);

	if (t)
		step_x(s, t, CCVM_SCHED_OP_POINT, CCVM_W_NONE, a, a, b, (uint8_t)(reads & 3u),
		       where, site);
}

void ccvm_sync_yield(struct ccvm_sched *s, const char *where, const struct ccvm_sync_site *site)
{
	struct ccvm_thread *t = controlled(s);

	if (!t) {
		sched_yield();
		return;
	}
	t->wold = runnable_nonyielding(s, ~BIT(t->id));	/* who runs before it again */
	/*
	 * PCT: a yield is a back-off in a loop that waits for another thread;
	 * run below every other thread from now on, or a yielder of high
	 * priority and a peer could take turns forever while the thread they
	 * wait for never runs (priority inversion, not a bug of the program).
	 */
	if (s->strategy == CCVM_SCHED_PCT)
		t->prio = 0;
	step(s, t, CCVM_SCHED_OP_YIELD, CCVM_W_YIELD, NULL, NULL, where, site);
}

/* A spin-wait step on @addr, touching @obj (read when @obj_read) and the machine (read). */
static void spin_wait(struct ccvm_sched *s, const volatile void *addr, size_t size, uint64_t old,
		      const void *obj, bool obj_read, const char *where,
		      const struct ccvm_sync_site *site)
{
	struct ccvm_thread *t = controlled(s);

	if (!t || (size != 1 && size != 2 && size != 4 && size != 8)) {
		sched_yield();
		return;
	}
	t->wsize = (uint8_t)size;
	/* Compare as the caller does: the low @size bytes of @old. */
	t->wold = size == 8 ? old : old & ((1ull << (size * 8)) - 1);
	step_x(s, t, CCVM_SCHED_OP_SPIN, CCVM_W_CHANGE, (const void *)addr, obj, CCVM_SCHED_HW(s),
	       (uint8_t)(CCVM_SCHED_RD_B | (obj_read ? CCVM_SCHED_RD_A : 0u)), where, site);
}

void ccvm_sync_spin_wait(struct ccvm_sched *s, const volatile void *addr, size_t size,
			 uint64_t old, const char *where, const struct ccvm_sync_site *site)
{
	/* It reads its word, and words the machine's users write (in_guest, entry_blocked). */
	spin_wait(s, addr, size, old, (const void *)addr, false, where, site);
}

void ccvm_sync_spin_wait_on(struct ccvm_sched *s, const volatile void *addr, size_t size,
			    uint64_t old, const void *obj, const char *where,
			    const struct ccvm_sync_site *site)
{
	spin_wait(s, addr, size, old, obj ? obj : (const void *)addr, obj != NULL, where, site);
}

/* ---- threads ---------------------------------------------------------------------------- */

static void *free_thread_main(void *arg)
{
	struct ccvm_thread *t = arg;

	t->ret = t->fn(t->arg);
	return NULL;
}

/* Thread @t has run its function: its exit is a step, then it hands over. */
static void thread_exit(struct ccvm_sched *s, struct ccvm_thread *t)
{
	struct ccvm_thread *next;

	if (!step(s, t, CCVM_SCHED_OP_EXIT, CCVM_W_NONE, t, t, t->name, NULL))
		return;
	mark_done(s, t, false);
	next = pick(s, NULL);
	if (!next) {
		sched_abort(s, t);
		return;
	}
	s->current = next;
	sem_post(&next->baton);
}

/*
 * The OS thread of a serial slot: it runs the slot's controlled threads,
 * one per run, and parks on the baton in between (the pool): the next run
 * that takes the slot sets fn and arg, and the thread starts it when it is
 * first picked, like a thread just created.  After its exit step, or an
 * unwind, it touches nothing of the slot before it is woken again: the
 * baton's post orders the next run's writes before its reads.
 */
static void *controlled_thread_main(void *arg)
{
	struct ccvm_thread *t = arg;
	struct ccvm_sched *s = t->s;

	sched_self = t;
	for (;;) {
		int how = setjmp(t->start);

		if (how == UNWOUND_BY_OTHER) {
			/* Unwound by another thread's abort: report back to it. */
			mark_done(s, t, true);
			sem_post(&s->unwinder->baton);
			continue;
		}
		if (how == UNWOUND_SELF)
			continue;
		sem_wait_nointr(&t->baton);
		if (t->quit)
			break;
		if (s->aborting)
			unwind_self(s, t);
		t->ret = t->fn(t->arg);
		thread_exit(s, t);
	}
	sched_self = NULL;
	return NULL;
}

int ccvm_thread_create(struct ccvm_platform *p, struct ccvm_thread **out, ccvm_thread_fn fn,
		       void *arg, const char *name)
{
	struct ccvm_sched *s;
	struct ccvm_thread *t, *self;
	int err;

	if (!p || !out || !fn)
		return -EINVAL;
	s = p->sched;
	if (!s) {
		t = calloc(1, sizeof(*t));
		if (!t)
			return -ENOMEM;
		t->fn = fn;
		t->arg = arg;
		snprintf(t->name, sizeof(t->name), "%s", name ? name : "thread");
		err = pthread_create(&t->pt, NULL, free_thread_main, t);
		if (err) {
			free(t);
			return -err;
		}
		*out = t;
		return 0;
	}
	self = controlled(s);
	if (!self)
		return -EPERM;
	if (s->nr_threads >= CCVM_SCHED_MAX_THREADS)
		return -EAGAIN;
	/*
	 * Creation writes the thread table (ids go in creation order); the new
	 * thread's history starts from its creator's (below).
	 */
	if (!step(s, self, CCVM_SCHED_OP_CREATE, CCVM_W_NONE, NULL, &s->nr_threads, NULL, NULL))
		return -ECANCELED;

	t = &s->threads[s->nr_threads];
	/* The slot's OS thread, if any, is parked on the baton (count 0). */
	memset(t, 0, offsetof(struct ccvm_thread, baton));
	t->s = s;
	t->fn = fn;
	t->arg = arg;
	snprintf(t->name, sizeof(t->name), "%s", name ? name : "thread");
	t->id = (uint8_t)s->nr_threads;
	t->state = CCVM_T_LIVE;
	t->has_jmp = true;
	t->op = CCVM_SCHED_OP_START;
	t->wait = CCVM_W_NONE;
	t->dobj = t;
	t->dobj2 = t->dobj3 = NULL;
	t->dread = 0;
	t->oname = t->name;
	/* PCT: a random priority among the start priorities (above every change). */
	t->prio = s->pct_depth + (rng_next(&s->rng) >> 8);
	/* Its history starts with its creation. */
	s->th_hash[t->id] = hb_mix(s->th_hash[self->id], 0x6e6577ull + t->id);
	s->fp_threads += hb_mix(t->id, s->th_hash[t->id]);
	if (!t->os_thread) {
		err = pthread_create(&t->pt, NULL, controlled_thread_main, t);
		if (err) {
			t->state = CCVM_T_FREE;
			return -err;
		}
		t->os_thread = true;
	}
	s->nr_threads++;
	s->live |= BIT(t->id);
	*out = t;
	return 0;
}

/* End the pooled OS thread of slot @t (between runs). */
static void reap(struct ccvm_thread *t)
{
	if (t->os_thread) {
		t->quit = true;
		sem_post(&t->baton);
		pthread_join(t->pt, NULL);
		t->os_thread = false;
		t->quit = false;
	}
}

int ccvm_thread_join_at(struct ccvm_thread *t, int *ret, const struct ccvm_sync_site *site)
{
	struct ccvm_sched *s;
	struct ccvm_thread *self;

	if (!t)
		return -EINVAL;
	s = t->s;
	if (!s) {
		if (pthread_equal(t->pt, pthread_self()))
			return -EDEADLK;
		pthread_join(t->pt, NULL);
		if (ret)
			*ret = t->ret;
		free(t);
		return 0;
	}
	self = controlled(s);
	if (self == t || t->id == 0)
		return -EDEADLK;
	if (t->state == CCVM_T_JOINED || t->state == CCVM_T_FREE)
		return -EINVAL;
	if (self && !step(s, self, CCVM_SCHED_OP_JOIN, CCVM_W_JOIN, t, t, t->name, site))
		return -ECANCELED;
	if (!self && t->state == CCVM_T_LIVE)
		return -EPERM;		/* cannot wait outside the schedule */
	/* Its OS thread goes back to the pool: nothing to wait for. */
	t->state = CCVM_T_JOINED;
	if (t->unwound)
		return -ECANCELED;
	if (ret)
		*ret = t->ret;
	return 0;
}

const char *ccvm_thread_name(const struct ccvm_thread *t)
{
	return t ? t->name : NULL;
}

/* ---- runs ---------------------------------------------------------------------------- */

int ccvm_sched_new(struct ccvm_sched **out)
{
	struct ccvm_sched *s = calloc(1, sizeof(*s));
	unsigned int i;

	if (!s)
		return -ENOMEM;
	for (i = 0; i < CCVM_SCHED_MAX_THREADS; i++)
		sem_init(&s->threads[i].baton, 0, 0);
	s->step_bound = CCVM_SCHED_DEFAULT_STEP_BOUND;
	s->bound = -1;
	s->shard_count = 1;
	*out = s;
	return 0;
}

void ccvm_sched_free(struct ccvm_sched *s)
{
	unsigned int i;

	if (!s)
		return;
	for (i = 0; i < CCVM_SCHED_MAX_THREADS; i++) {
		reap(&s->threads[i]);
		sem_destroy(&s->threads[i].baton);
	}
	free(s->nodes);
	free(s->objs);
	free(s->seen);
	free(s->replay);
	free(s->rec);
	free(s);
}

void ccvm_sched_run_begin(struct ccvm_sched *s, bool can_unwind)
{
	struct ccvm_thread *t0 = &s->threads[0];
	uint32_t i;

	s->nr_threads = 1;
	s->live = 1;
	s->running = true;
	s->in_check = s->failed = s->aborting = false;
	s->step = s->nswitch = s->ticket = 0;
	s->hash = 2166136261u;
	s->nr_held = 0;
	s->nr_checks = 0;
	s->checks_armed = false;
	s->error = 0;
	s->failure = CCVM_EXPLORE_OK;
	s->msg[0] = '\0';
	s->note[0] = '\0';
	s->rng = s->seed;
	s->rec_len = 0;
	s->rec_last = 0;
	s->unwinder = NULL;
	/* DFS: replay the prefix, and explore on from there. */
	s->node_idx = 0;
	s->nr_nodes = s->prefix;
	s->sleep = 0;
	s->preempt = 0;
	s->lo = 0;
	s->hi = s->shard_count;
	s->dfs_off = false;
	s->after_join = false;
	s->replay_i = 0;
	/* State caching: fresh hashes; the object table is reset by generation. */
	s->cache_off = s->cache && !s->objs;
	memset(s->th_hash, 0, sizeof(s->th_hash));
	s->g_hash = s->fp_threads = 0;
	if (!++s->run_gen) {
		if (s->objs)
			memset(s->objs, 0, CCVM_SCHED_OBJS * sizeof(*s->objs));
		s->run_gen = 1;
	}

	sem_destroy(&t0->baton);
	memset(t0, 0, offsetof(struct ccvm_thread, baton));
	sem_init(&t0->baton, 0, 0);
	t0->s = s;
	snprintf(t0->name, sizeof(t0->name), "main");
	t0->state = CCVM_T_LIVE;
	t0->has_jmp = can_unwind;
	t0->op = CCVM_SCHED_OP_START;
	t0->prio = s->pct_depth + (rng_next(&s->rng) >> 8);
	s->current = t0;
	sched_self = t0;

	/* PCT: d - 1 change points spread over the estimated run length. */
	s->pct_nchange = 0;
	if (s->strategy == CCVM_SCHED_PCT)
		for (i = 0; i + 1 < s->pct_depth; i++)
			s->pct_change[s->pct_nchange++] =
				1 + rng_next(&s->rng) % (s->pct_steps ? s->pct_steps : 1);
}

/*
 * The checks of a quiescent point: the scenario's hook, then (unless the
 * explorer was told not to) the library's invariant checker over every VM
 * of the run's platform and the platform itself.
 */
static bool quiescent_check(struct ccvm_sched *s)
{
	char msg[512] = "";
	int r = 0;

	s->in_check = true;
	s->nr_checks++;
	if (s->sc && s->sc->check)
		r = s->sc->check(s->p, s->sc->ctx, msg, sizeof(msg));
	if (!r && s->lib_check && s->p)
		r = ccvm_platform_check_all(s->p, msg, sizeof(msg));
	s->in_check = false;
	if (!r)
		return true;
	msg[sizeof(msg) - 1] = '\0';
	sched_fail(s, CCVM_EXPLORE_FAIL_CHECK, -EPROTO, "check failed at step %llu: %s\n",
		   (unsigned long long)s->step, msg[0] ? msg : "(no message)");
	describe_threads(s);
	return false;
}

int ccvm_sched_run_finish(struct ccvm_sched *s, int err)
{
	struct ccvm_thread *t0 = &s->threads[0];
	uint64_t others = s->live & ~1ull;

	if (err && !s->failed)
		sched_fail(s, CCVM_EXPLORE_FAIL_SCENARIO, err,
			   "the scenario returned %d (%s) at step %llu%s%s\n", err,
			   ccvm_strerror(err), (unsigned long long)s->step,
			   s->note[0] ? ": " : "", s->note);
	if (others && !s->failed) {
		sched_fail(s, CCVM_EXPLORE_FAIL_MISUSE, -EBUSY,
			   "the scenario returned with threads it did not join:\n");
		describe_threads(s);
	}
	if (others)
		sched_abort(s, t0);
	if (!s->failed && s->strategy == CCVM_SCHED_REPLAY) {
		if (s->replay_i < s->replay_n)
			sched_fail(s, CCVM_EXPLORE_FAIL_DIVERGED, -ESTALE,
				   "replay diverged: the run ended at step %llu, before the token's "
				   "choice at step %llu\n", (unsigned long long)s->step,
				   (unsigned long long)s->replay[s->replay_i].step);
		else if (!s->replay_partial && (s->replay_steps != s->step ||
						s->replay_hash != s->hash))
			sched_fail(s, CCVM_EXPLORE_FAIL_DIVERGED, -ESTALE,
				   "replay diverged: the run took %llu steps (token: %llu)%s; the "
				   "scenario no longer matches the token\n",
				   (unsigned long long)s->step,
				   (unsigned long long)s->replay_steps,
				   s->replay_steps == s->step ? " of other operations" : "");
	}
	if (!s->failed && ((s->sc && s->sc->check) || s->lib_check) && s->checks_armed)
		quiescent_check(s);
	return s->failed ? s->error : 0;
}

void ccvm_sched_run_end(struct ccvm_sched *s)
{
	/* The run's OS threads stay, parked, for the next run (the pool). */
	s->running = false;
	if (sched_self && sched_self->s == s)
		sched_self = NULL;
}

bool ccvm_sched_dfs_next(struct ccvm_sched *s)
{
	uint8_t alts[CCVM_SCHED_MAX_THREADS];
	size_t j;

	for (j = s->nr_nodes; j-- > 0;) {
		struct ccvm_sched_node *n = &s->nodes[j];
		unsigned int nalts = node_alts(s, n, alts), k;

		for (k = n->chosen + 1u; k < nalts; k++) {
			uint32_t lo, hi;

			alt_range(n, k, nalts, &lo, &hi);
			if (lo <= s->shard_index && s->shard_index < hi) {
				n->chosen = (uint8_t)k;
				s->nr_nodes = s->prefix = j + 1;
				return true;
			}
		}
	}
	s->nr_nodes = s->prefix = 0;
	return false;
}

bool ccvm_sched_dfs_owned(const struct ccvm_sched *s)
{
	return s->lo == s->shard_index;
}

uint32_t ccvm_sched_last_events(const struct ccvm_sched *s, struct ccvm_sched_event *ev,
				uint32_t n)
{
	uint64_t first, i;
	uint32_t k = 0;

	if (n > CCVM_SCHED_RING)
		n = CCVM_SCHED_RING;
	first = s->step > n ? s->step - n : 0;
	for (i = first; i < s->step; i++) {
		const struct ccvm_sched_ring *r = &s->ring[i & (CCVM_SCHED_RING - 1)];

		ev[k] = (struct ccvm_sched_event){
			.step = r->step, .thread = r->tid, .op = r->op, .obj = r->obj,
			.file = r->site ? r->site->file : NULL,
			.func = r->site ? r->site->func : NULL,
			.line = r->site ? r->site->line : 0,
		};
		memcpy(ev[k].thread_name, s->threads[r->tid].name, sizeof(ev[k].thread_name));
		k++;
	}
	return k;
}

/* ---- tokens ---------------------------------------------------------------------------- */

/*
 * Token v1: "S1:" then base64url (no padding) of varints: flags (bit 0:
 * partial, the run did not end), steps, hash of the (thread, op) sequence,
 * then (step delta, thread) per non-default pick.
 */
#define TOKEN_PREFIX		"S1:"
#define TOKEN_PARTIAL		1u

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	do {
		p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return n;
}

/* Base64url of @n bytes at @in into @out (room for 4 * ceil(n / 3) + 1). */
static size_t b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = b64url[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = b64url[v & 63];
	}
	out[o] = '\0';
	return o;
}

static size_t token_header(const struct ccvm_sched *s, bool partial, uint8_t *hdr)
{
	size_t n = put_varint(hdr, partial ? TOKEN_PARTIAL : 0);

	n += put_varint(hdr + n, s->step);
	n += put_varint(hdr + n, s->hash);
	return n;
}

int ccvm_sched_token(const struct ccvm_sched *s, char **out)
{
	uint8_t hdr[32];
	size_t hn = token_header(s, false, hdr), n = hn + s->rec_len;
	uint8_t *raw = malloc(n ? n : 1);
	char *tok = malloc(sizeof(TOKEN_PREFIX) + 4 * (n / 3 + 1));

	if (!raw || !tok) {
		free(raw);
		free(tok);
		return -ENOMEM;
	}
	memcpy(raw, hdr, hn);
	if (s->rec_len)
		memcpy(raw + hn, s->rec, s->rec_len);
	memcpy(tok, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1);
	b64_encode(raw, n, tok + sizeof(TOKEN_PREFIX) - 1);
	free(raw);
	*out = tok;
	return 0;
}

void ccvm_sched_write_token(const struct ccvm_sched *s, int fd, const char *prefix)
{
	static char buf[65536];
	uint8_t raw[48];
	const uint8_t *rec = s->rec;
	size_t len = s->rec_len, hn, o, i, chunk;
	ssize_t w;

	hn = token_header(s, true, raw);
	o = strlen(prefix);
	if (o + sizeof(TOKEN_PREFIX) + 4 * ((hn + len) / 3 + 2) > sizeof(buf)) {
		static const char too_long[] = "(the schedule is too long to print here)\n";

		w = write(fd, prefix, strlen(prefix));
		w = write(fd, too_long, sizeof(too_long) - 1);
		(void)w;
		return;
	}
	memcpy(buf, prefix, o);
	memcpy(buf + o, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1);
	o += sizeof(TOKEN_PREFIX) - 1;
	/* Header and record are encoded as one byte string, 3 bytes at a time. */
	for (i = 0; i < hn + len; i += chunk) {
		uint8_t tri[3];
		size_t k;

		chunk = hn + len - i < 3 ? hn + len - i : 3;
		for (k = 0; k < chunk; k++)
			tri[k] = i + k < hn ? raw[i + k] : rec[i + k - hn];
		o += b64_encode(tri, chunk, buf + o);
	}
	buf[o++] = '\n';
	for (i = 0; i < o; i += (size_t)w) {
		w = write(fd, buf + i, o - i);
		if (w <= 0)
			break;
	}
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64url, c) : NULL;

	return p ? (int)(p - b64url) : -1;
}

static int get_varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *v)
{
	unsigned int shift = 0;

	*v = 0;
	while (*pos < n && shift < 64) {
		uint8_t b = p[(*pos)++];

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
		shift += 7;
	}
	return -EINVAL;
}

int ccvm_sched_load_token(struct ccvm_sched *s, const char *token)
{
	const size_t plen = sizeof(TOKEN_PREFIX) - 1;
	size_t tl, n = 0, pos = 0, nc = 0, i;
	uint64_t flags, steps, hash, step = 0, v, tid;
	struct ccvm_sched_choice *c;
	uint32_t acc = 0;
	uint8_t *raw;
	int bits = 0, err = -EINVAL;

	if (!token || strncmp(token, TOKEN_PREFIX, plen))
		return -EINVAL;
	token += plen;
	tl = strlen(token);
	if (tl % 4 == 1)
		return -EINVAL;
	raw = malloc(tl * 3 / 4 + 1);
	if (!raw)
		return -ENOMEM;
	for (i = 0; i < tl; i++) {
		int d = b64_value(token[i]);

		if (d < 0)
			goto out;
		acc = acc << 6 | (uint32_t)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			raw[n++] = (uint8_t)(acc >> bits);
		}
	}
	if (acc & ((1u << bits) - 1))
		goto out;		/* non-canonical trailing bits */
	if (get_varint(raw, n, &pos, &flags) || flags > TOKEN_PARTIAL ||
	    get_varint(raw, n, &pos, &steps) || get_varint(raw, n, &pos, &hash) ||
	    hash > UINT32_MAX)
		goto out;
	c = malloc((n - pos) / 2 * sizeof(*c) + sizeof(*c));
	if (!c) {
		err = -ENOMEM;
		goto out;
	}
	while (pos < n) {
		if (get_varint(raw, n, &pos, &v) || get_varint(raw, n, &pos, &tid) ||
		    tid >= CCVM_SCHED_MAX_THREADS || (nc && !v) || v > UINT64_MAX - step ||
		    (!(flags & TOKEN_PARTIAL) && step + v >= steps)) {
			free(c);
			goto out;
		}
		step += v;
		c[nc++] = (struct ccvm_sched_choice){ step, (uint32_t)tid };
	}
	free(s->replay);
	s->replay = c;
	s->replay_n = nc;
	s->replay_steps = steps;
	s->replay_hash = (uint32_t)hash;
	s->replay_partial = flags & TOKEN_PARTIAL;
	err = 0;
out:
	free(raw);
	return err;
}

void ccvm_sched_note(struct ccvm_sched *s, const char *fmt, ...)
{
	va_list ap;

	if (!s || s->note[0])
		return;
	va_start(ap, fmt);
	vsnprintf(s->note, sizeof(s->note), fmt, ap);
	va_end(ap);
}

bool ccvm_sched_caller_controlled(void)
{
	return sched_self && sched_self->s && sched_self->s->running;
}

void ccvm_sched_mutex_outer(struct ccvm_mutex *m)
{
	if (m->sched)
		m->u.model.outer = 1;
}

void ccvm_sched_rwlock_hw(struct ccvm_rwlock *l)
{
	if (l->sched)
		l->u.model.hw = 1;
}

void ccvm_sched_busy_enter(struct ccvm_sched *s, const void *key, const char *what)
{
	if (s && s->running)
		held_add(s, self_of(s), key, what, 3);
}

void ccvm_sched_busy_leave(struct ccvm_sched *s, const void *key)
{
	if (s && s->running)
		held_del(s, self_of(s), key, 3);
}

/* ---- platforms --------------------------------------------------------------------------- */

int ccvm_sched_platform_attach(struct ccvm_platform *p, uint32_t mode, uint64_t seed)
{
	struct ccvm_thread *self = sched_self;
	struct ccvm_sched *s;
	int err;

	/* Made by a controlled thread: the platform joins that thread's schedule. */
	if (self && self->s && self->s->running) {
		s = self->s;
		s->refs++;
		if (!s->p)
			s->p = p;
		p->sched = s;
		return 0;
	}
	if (mode != CCVM_SCHED_SERIAL)
		return 0;
	err = ccvm_sched_new(&s);
	if (err)
		return err;
	s->owned = true;
	s->refs = 1;
	s->strategy = CCVM_SCHED_RANDOM;
	s->seed = seed;
	s->step_bound = UINT64_MAX;	/* a program, not a test run: no livelock bound */
	s->p = p;
	ccvm_sched_run_begin(s, false);
	p->sched = s;
	return 0;
}

bool ccvm_sched_platform_busy(struct ccvm_platform *p)
{
	struct ccvm_sched *s = p->sched;

	uint32_t i;

	if (!s || !s->owned || s->refs > 1)
		return false;
	/* Only the creator (thread 0) ends its scheduler, once it joined all. */
	if (sched_self != &s->threads[0])
		return true;
	for (i = 1; i < s->nr_threads; i++)
		if (!s->failed && s->threads[i].state != CCVM_T_JOINED)
			return true;
	return false;
}

void ccvm_sched_platform_detach(struct ccvm_platform *p)
{
	struct ccvm_sched *s = p->sched;

	if (!s)
		return;
	p->sched = NULL;
	if (s->p == p)
		s->p = NULL;
	if (--s->refs || !s->owned)
		return;
	ccvm_sched_run_end(s);
	ccvm_sched_free(s);
}

int ccvm_sched_status(struct ccvm_sched *s, char *msg, size_t msg_sz)
{
	if (msg && msg_sz)
		snprintf(msg, msg_sz, "%s", s && s->failed ? s->msg : "");
	return s && s->failed ? s->error : 0;
}
