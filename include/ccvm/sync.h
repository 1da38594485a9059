/* SPDX-License-Identifier: MIT */
/*
 * libccvm synchronisation layer: every lock, condition variable, spin-wait
 * and thread of the library, its backends and a VMM that wants its own
 * threads scheduled goes through these calls.
 *
 * Two modes, chosen per platform when it is created (struct
 * ccvm_platform_opts.sched, or by ccvm_explore()):
 *
 *  - free-running (the default): each call is the plain pthread call behind
 *    one predictable branch on the object's scheduler pointer, which is NULL.
 *    Nothing else is added: no counter, no site record, no atomic.
 *
 *  - serial: the platform has a deterministic scheduler (lib/sched.c).
 *    Exactly one controlled thread runs at a time; every call below is a
 *    scheduling point where the scheduler may hand the CPU to another
 *    thread.  Locks are then models (owner, readers) that the scheduler
 *    reads to know who can run; a thread waiting for a lock, a condition, a
 *    join or a change of a watched word is not runnable, and a state where
 *    no thread can run is reported as a deadlock naming every thread's wait
 *    point instead of hanging.  The slow path is out of line.
 *
 * An object takes its mode from the scheduler pointer given to its init
 * call: ccvm_platform_sched(p), NULL when @p is free-running.  Objects that
 * are not tied to a platform (process-wide registries) pass NULL and stay
 * plain pthread objects in both modes.
 *
 * Call sites.  The lock, wait and point calls are macros that pass a
 * static record of their file, function and line (CCVM_SYNC_SITE) to the
 * *_at() function, so a deadlock report names the line each thread waits
 * at.  In free-running mode the record is never touched.  Code that cannot
 * use the macros (another language) calls the *_at() functions with a NULL
 * site.
 *
 * Names.  Every object carries a name for reports ("mmu_lock",
 * "vcpu->mutex"); it is stored, not copied: pass a string literal.
 *
 * Rules in serial mode (the scheduler reports a breach as a failed run):
 * a mutex is unlocked only by its owner and never locked twice by one
 * thread; a thread touching a serial platform's objects is one that the
 * scheduler controls (the platform's creator, or one made by
 * ccvm_thread_create()); shared words written outside a lock are announced
 * with ccvm_sched_point() naming the word, so the explorer knows which
 * steps conflict (see docs/scheduler.md).
 */
#ifndef CCVM_SYNC_H
#define CCVM_SYNC_H

#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/api.h>

#if !defined(__GNUC__) && !defined(__cplusplus)
#include <stdatomic.h>		/* ccvm_full_barrier() without the GNU builtin */
#endif

/* glibc's rseq area (2.35 and later) holds the CPU a thread runs on. */
#if defined(__GLIBC__) && defined(__x86_64__) && defined(__has_include)
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#define CCVM_HAVE_RSEQ_CPU	1
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

struct ccvm_platform;
struct ccvm_sched;
struct ccvm_thread;

/* ---- call sites ------------------------------------------------------------ */

/* Where a thread waits: filled once per call site, at compile time. */
struct ccvm_sync_site {
	const char *file;
	const char *func;
	unsigned int line;
};

#if defined(__GNUC__)
#define CCVM_SYNC_SITE							\
	(__extension__({						\
		static const struct ccvm_sync_site ccvm_sync_site_ = {	\
			__FILE__, __func__, __LINE__ };			\
		&ccvm_sync_site_;					\
	}))
#define ccvm_sync_serial(sched)	__builtin_expect((sched) != 0, 0)
#else
#define CCVM_SYNC_SITE		((const struct ccvm_sync_site *)0)
#define ccvm_sync_serial(sched)	((sched) != 0)
#endif

/* ---- objects ----------------------------------------------------------------- */

/*
 * glibc shows pthread_rwlock_t only to POSIX 2001 code; a strict C11 user
 * gets storage of the same size and alignment and an out-of-line
 * free-running path, so the struct is the same for everyone.
 */
#if defined(__GLIBC__) && !defined(__USE_XOPEN2K)
#define CCVM_SYNC_RWLOCK_INLINE	0
#else
#define CCVM_SYNC_RWLOCK_INLINE	1
#endif

/*
 * The scheduler pointer comes first so that the mode test and the pthread
 * object share a cache line.  u.model is the serial-mode state; only the
 * scheduler reads or writes it, and only in serial mode.
 */
struct ccvm_mutex {
	struct ccvm_sched *sched;		/* NULL: free-running */
	const char *name;
	unsigned int waiters;			/* free-running: threads blocked in lock */
	unsigned int held;			/* free-running: locked (a hint to lockers) */
	union {
		pthread_mutex_t lock;
		struct {
			int owner;		/* thread id, -1 = free */
			int outer;		/* held, still quiescent (lib/scheduler.h) */
		} model;
	} u;
};

/* Writer-preferring: a waiting writer holds off new readers. */
struct ccvm_rwlock {
	struct ccvm_sched *sched;
	const char *name;
	unsigned int waiters;			/* free-running: threads blocked in lock */
	union {
#if CCVM_SYNC_RWLOCK_INLINE
		pthread_rwlock_t lock;
#else
		char lock_storage[__SIZEOF_PTHREAD_RWLOCK_T];
		long lock_align;
#endif
		struct {
			int writer;		/* thread id, -1 = none */
			uint32_t readers;	/* read holds, recursion included */
			uint32_t wpending;	/* threads about to write-lock */
			uint32_t hw;		/* guards state read lock-free (lib/scheduler.h) */
			uint64_t reader_mask;	/* threads holding it for read */
		} model;
	} u;
};

struct ccvm_cond {
	struct ccvm_sched *sched;
	const char *name;
	pthread_cond_t cond;			/* free-running only */
};

/* A process-wide mutex, always free-running: static struct ccvm_mutex m = ...; */
#define CCVM_MUTEX_INITIALIZER(lock_name) \
	{ 0, lock_name, 0, 0, { PTHREAD_MUTEX_INITIALIZER } }

/*
 * ccvm_platform_sched() - The scheduler of @p, to pass to the init calls.
 * Context: any thread.
 * Return: the scheduler, or NULL when @p is free-running (or NULL).
 * Example:
 *	#include <stdio.h>
 *
 *	int main(void)
 *	{
 *		struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
 *			.sched = CCVM_SCHED_SERIAL, .sched_seed = 7);
 *		struct ccvm_platform *p;
 *
 *		if (ccvm_platform_create(&o, &p))   // this thread: controlled thread 0
 *			return 1;
 *		// Pass it to every init call; NULL on a free-running platform.
 *		printf("scheduler: %s\n", ccvm_platform_sched(p) ? "serial" : "none");
 *		return ccvm_platform_destroy(p) != 0;
 *	}
 */
CCVM_API struct ccvm_sched *ccvm_platform_sched(const struct ccvm_platform *p);

/*
 * ccvm_mutex_init() / ccvm_rwlock_init() / ccvm_cond_init() - Set up @m in
 * the mode of @s (NULL: free-running), named @name (a string literal).
 * The rwlock prefers writers in both modes.
 * Context: any thread; the object is not in use.
 * Return: 0; -EINVAL (NULL object); a pthread init error, negated.
 * Example:
 *	// A device table: many readers, rare writers, and a condition to wait
 *	// for a change; scheduled with the library's locks on a serial platform.
 *	struct table {
 *		struct ccvm_rwlock lock;
 *		struct ccvm_mutex wait_lock;
 *		struct ccvm_cond changed;
 *		uint64_t gen;
 *	};
 *
 *	int table_init(struct table *t, struct ccvm_platform *p)
 *	{
 *		struct ccvm_sched *s = ccvm_platform_sched(p);
 *		int err = ccvm_rwlock_init(&t->lock, s, "table->lock");
 *
 *		if (!err && (err = ccvm_mutex_init(&t->wait_lock, s, "table->wait_lock")))
 *			ccvm_rwlock_destroy(&t->lock);
 *		if (!err && (err = ccvm_cond_init(&t->changed, s, "table->changed"))) {
 *			ccvm_mutex_destroy(&t->wait_lock);
 *			ccvm_rwlock_destroy(&t->lock);
 *		}
 *		t->gen = 0;
 *		return err;
 *	}
 */
CCVM_API int ccvm_mutex_init(struct ccvm_mutex *m, struct ccvm_sched *s, const char *name);
CCVM_API int ccvm_rwlock_init(struct ccvm_rwlock *l, struct ccvm_sched *s, const char *name);
CCVM_API int ccvm_cond_init(struct ccvm_cond *c, struct ccvm_sched *s, const char *name);

/*
 * ccvm_mutex_destroy() / ccvm_rwlock_destroy() / ccvm_cond_destroy() -
 * Destroy an object set up by the init calls (NULL is ignored).
 * Context: nobody holds or waits on it.
 * Return: nothing.
 * Example:
 *	struct counter {
 *		struct ccvm_mutex lock;
 *		uint64_t value;
 *	};
 *
 *	uint64_t counter_add(struct counter *c, uint64_t n)
 *	{
 *		uint64_t v;
 *
 *		ccvm_mutex_lock(&c->lock);
 *		v = c->value += n;
 *		ccvm_mutex_unlock(&c->lock);
 *		return v;
 *	}
 *
 *	// Once every thread that used it is joined.
 *	void counter_fini(struct counter *c)
 *	{
 *		ccvm_mutex_destroy(&c->lock);
 *	}
 */
CCVM_API void ccvm_mutex_destroy(struct ccvm_mutex *m);
CCVM_API void ccvm_rwlock_destroy(struct ccvm_rwlock *l);
CCVM_API void ccvm_cond_destroy(struct ccvm_cond *c);

/*
 * ccvm_sync_mutex_lock() and the other ccvm_sync_*() calls - The
 * out-of-line halves of the inline lock, condition and point calls of
 * <ccvm/sync.h>.
 * They are the serial-mode paths of ccvm_mutex_lock() and the rest, where the
 * scheduler picks the thread that goes on, and the free-running blocking
 * paths, which count the waiter and block.  Programs call the inlines,
 * never these; they are exported because the inlines are compiled into
 * the caller.  ccvm_sync_rwlock_plain() does the free-running rwlock
 * operation @op (CCVM_SYNC_RW_*) for code that cannot see
 * pthread_rwlock_t.
 * Context: as the inline call that uses it; the serial paths only on a
 * controlled thread of the object's scheduler.
 * Return: the trylocks: 0 or -EBUSY; ccvm_sync_rwlock_plain(): as the
 * pthread call, 0 or a positive error number (EINVAL for an unknown @op);
 * the others nothing.
 * Example:
 *	// Programs write the inline calls: on a serial platform they go out of
 *	// line to ccvm_sync_cond_wait() and the rest, where the scheduler decides.
 *	struct flag {
 *		struct ccvm_mutex m;
 *		struct ccvm_cond c;
 *		int set;
 *	};
 *
 *	void flag_wait(struct flag *f)
 *	{
 *		ccvm_mutex_lock(&f->m);
 *		while (!f->set)
 *			ccvm_cond_wait(&f->c, &f->m);
 *		ccvm_mutex_unlock(&f->m);
 *	}
 *
 *	void flag_set(struct flag *f)
 *	{
 *		ccvm_mutex_lock(&f->m);
 *		f->set = 1;
 *		ccvm_cond_broadcast(&f->c);
 *		ccvm_mutex_unlock(&f->m);
 *	}
 */
CCVM_API void ccvm_sync_mutex_lock(struct ccvm_mutex *m, const struct ccvm_sync_site *site);
CCVM_API int ccvm_sync_mutex_trylock(struct ccvm_mutex *m, const struct ccvm_sync_site *site);
CCVM_API void ccvm_sync_mutex_unlock(struct ccvm_mutex *m, const struct ccvm_sync_site *site);
CCVM_API void ccvm_sync_rwlock_lock(struct ccvm_rwlock *l, int write, const struct ccvm_sync_site *site);
CCVM_API int ccvm_sync_rwlock_trylock(struct ccvm_rwlock *l, int write,
				      const struct ccvm_sync_site *site);
CCVM_API void ccvm_sync_rwlock_unlock(struct ccvm_rwlock *l, const struct ccvm_sync_site *site);
CCVM_API void ccvm_sync_mutex_wait(struct ccvm_mutex *m);
CCVM_API void ccvm_sync_rwlock_wait(struct ccvm_rwlock *l, int write);
CCVM_API int ccvm_sync_rwlock_plain(struct ccvm_rwlock *l, int op);
CCVM_API void ccvm_sync_cond_wait(struct ccvm_cond *c, struct ccvm_mutex *m,
				  const struct ccvm_sync_site *site);
CCVM_API void ccvm_sync_cond_wake(struct ccvm_cond *c, int all, const struct ccvm_sync_site *site);
CCVM_API void ccvm_sync_point(struct ccvm_sched *s, const void *obj, const char *where,
			      const struct ccvm_sync_site *site);
CCVM_API void ccvm_sync_point2(struct ccvm_sched *s, const void *a, const void *b,
			       unsigned int reads, const char *where,
			       const struct ccvm_sync_site *site);
CCVM_API void ccvm_sync_yield(struct ccvm_sched *s, const char *where, const struct ccvm_sync_site *site);
CCVM_API void ccvm_sync_spin_wait(struct ccvm_sched *s, const volatile void *addr, size_t size,
				  uint64_t old, const char *where, const struct ccvm_sync_site *site);
CCVM_API void ccvm_sync_spin_wait_on(struct ccvm_sched *s, const volatile void *addr, size_t size,
				     uint64_t old, const void *obj, const char *where,
				     const struct ccvm_sync_site *site);

/* The operations of ccvm_sync_rwlock_plain(). */
#define CCVM_SYNC_RW_RDLOCK	0
#define CCVM_SYNC_RW_WRLOCK	1
#define CCVM_SYNC_RW_TRYRDLOCK	2
#define CCVM_SYNC_RW_TRYWRLOCK	3
#define CCVM_SYNC_RW_UNLOCK	4
#if CCVM_SYNC_RWLOCK_INLINE
#define ccvm_sync_rw_plain(l, op, call)	(call)
#else
#define ccvm_sync_rw_plain(l, op, call)	ccvm_sync_rwlock_plain((l), (op))
#endif

/* ---- mutex ------------------------------------------------------------------- */

/*
 * ccvm_mutex_lock() / ccvm_mutex_unlock() - As pthread_mutex_lock/unlock.
 * Context: any thread of the object's platform; a mutex is not recursive.
 */
#define ccvm_mutex_lock(m)	ccvm_mutex_lock_at((m), CCVM_SYNC_SITE)
#define ccvm_mutex_unlock(m)	ccvm_mutex_unlock_at((m), CCVM_SYNC_SITE)
/*
 * ccvm_mutex_trylock() - Take @m if it is free.  In serial mode the answer
 * depends only on the schedule.  Return: 0 (taken) or -EBUSY.
 */
#define ccvm_mutex_trylock(m)	ccvm_mutex_trylock_at((m), CCVM_SYNC_SITE)

/*
 * Free-running, a locker that finds the mutex held goes out of line, where
 * it is counted for ccvm_mutex_needbreak() and spins a little before it
 * blocks; otherwise it calls pthread_mutex_lock() (not trylock, whose glibc
 * path costs more).  The held flag is a hint: a locker that loses a race in
 * the few instructions between its test and the lock blocks uncounted, so
 * needbreak() may miss it once, as a holder polling a plain spinlock may.
 */
static inline void ccvm_mutex_lock_at(struct ccvm_mutex *m, const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(m->sched)) {
		ccvm_sync_mutex_lock(m, site);
		return;
	}
	if (__builtin_expect(__atomic_load_n(&m->held, __ATOMIC_RELAXED) != 0, 0))
		ccvm_sync_mutex_wait(m);
	else
		pthread_mutex_lock(&m->u.lock);
	__atomic_store_n(&m->held, 1, __ATOMIC_RELAXED);
}

static inline int ccvm_mutex_trylock_at(struct ccvm_mutex *m, const struct ccvm_sync_site *site)
{
	int err;

	if (ccvm_sync_serial(m->sched))
		return ccvm_sync_mutex_trylock(m, site);
	err = pthread_mutex_trylock(&m->u.lock);
	if (!err)
		__atomic_store_n(&m->held, 1, __ATOMIC_RELAXED);
	return -err;
}

static inline void ccvm_mutex_unlock_at(struct ccvm_mutex *m, const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(m->sched)) {
		ccvm_sync_mutex_unlock(m, site);
		return;
	}
	__atomic_store_n(&m->held, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&m->u.lock);
}

/* ---- rwlock ------------------------------------------------------------------ */

/*
 * ccvm_rwlock_rdlock() / _wrlock() / _unlock() - As the pthread calls; one
 * unlock for both kinds.  _tryrdlock() / _trywrlock() return 0 or -EBUSY.
 * A read lock is not taken while a writer waits, so a thread that read-locks
 * twice can deadlock against a writer (as glibc's writer-preferring kind).
 */
#define ccvm_rwlock_rdlock(l)		ccvm_rwlock_rdlock_at((l), CCVM_SYNC_SITE)
#define ccvm_rwlock_wrlock(l)		ccvm_rwlock_wrlock_at((l), CCVM_SYNC_SITE)
#define ccvm_rwlock_tryrdlock(l)	ccvm_rwlock_tryrdlock_at((l), CCVM_SYNC_SITE)
#define ccvm_rwlock_trywrlock(l)	ccvm_rwlock_trywrlock_at((l), CCVM_SYNC_SITE)
#define ccvm_rwlock_unlock(l)		ccvm_rwlock_unlock_at((l), CCVM_SYNC_SITE)

static inline void ccvm_rwlock_rdlock_at(struct ccvm_rwlock *l, const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(l->sched))
		ccvm_sync_rwlock_lock(l, 0, site);
	else if (__builtin_expect(ccvm_sync_rw_plain(l, CCVM_SYNC_RW_TRYRDLOCK,
						     pthread_rwlock_tryrdlock(&l->u.lock)) != 0, 0))
		ccvm_sync_rwlock_wait(l, 0);
}

static inline void ccvm_rwlock_wrlock_at(struct ccvm_rwlock *l, const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(l->sched))
		ccvm_sync_rwlock_lock(l, 1, site);
	else if (__builtin_expect(ccvm_sync_rw_plain(l, CCVM_SYNC_RW_TRYWRLOCK,
						     pthread_rwlock_trywrlock(&l->u.lock)) != 0, 0))
		ccvm_sync_rwlock_wait(l, 1);
}

static inline int ccvm_rwlock_tryrdlock_at(struct ccvm_rwlock *l,
					   const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(l->sched))
		return ccvm_sync_rwlock_trylock(l, 0, site);
	return -ccvm_sync_rw_plain(l, CCVM_SYNC_RW_TRYRDLOCK,
				   pthread_rwlock_tryrdlock(&l->u.lock));
}

static inline int ccvm_rwlock_trywrlock_at(struct ccvm_rwlock *l,
					   const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(l->sched))
		return ccvm_sync_rwlock_trylock(l, 1, site);
	return -ccvm_sync_rw_plain(l, CCVM_SYNC_RW_TRYWRLOCK,
				   pthread_rwlock_trywrlock(&l->u.lock));
}

static inline void ccvm_rwlock_unlock_at(struct ccvm_rwlock *l, const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(l->sched))
		ccvm_sync_rwlock_unlock(l, site);
	else
		ccvm_sync_rw_plain(l, CCVM_SYNC_RW_UNLOCK, pthread_rwlock_unlock(&l->u.lock));
}

/*
 * ccvm_rwlock_needbreak() / ccvm_mutex_needbreak() - Whether a holder of
 * the lock in a long loop should let others in now, as KVM's
 * rwlock_needbreak(): free-running, when a thread waits for it; on a
 * serial platform always (the scheduler decides who runs next).
 */
static inline int ccvm_rwlock_needbreak(const struct ccvm_rwlock *l)
{
	return ccvm_sync_serial(l->sched) || __atomic_load_n(&l->waiters, __ATOMIC_RELAXED) != 0;
}

static inline int ccvm_mutex_needbreak(const struct ccvm_mutex *m)
{
	return ccvm_sync_serial(m->sched) || __atomic_load_n(&m->waiters, __ATOMIC_RELAXED) != 0;
}

/*
 * ccvm_rwlock_cond_resched() - Drop @l (held for write if @write, else for
 * read), let others run, take it again: KVM's cond_resched_rwlock_write /
 * _read, for long loops that must let other paths in (zaps, punches,
 * teardown reclaim).  The caller revalidates what it walked afterwards.
 * Free-running: unlock, sched_yield(), lock.  Serial: the unlock and the
 * lock are steps, so any other thread may run between them.  Callers that
 * yield only when it is needed test ccvm_rwlock_needbreak() first.
 */
#define ccvm_rwlock_cond_resched(l, write) \
	ccvm_rwlock_cond_resched_at((l), (write), CCVM_SYNC_SITE)

static inline void ccvm_rwlock_cond_resched_at(struct ccvm_rwlock *l, int write,
					       const struct ccvm_sync_site *site)
{
	ccvm_rwlock_unlock_at(l, site);
	if (!ccvm_sync_serial(l->sched))
		sched_yield();
	if (write)
		ccvm_rwlock_wrlock_at(l, site);
	else
		ccvm_rwlock_rdlock_at(l, site);
}

/* ccvm_mutex_cond_resched() - The same for a mutex (KVM's cond_resched_lock). */
#define ccvm_mutex_cond_resched(m)	ccvm_mutex_cond_resched_at((m), CCVM_SYNC_SITE)

static inline void ccvm_mutex_cond_resched_at(struct ccvm_mutex *m,
					      const struct ccvm_sync_site *site)
{
	ccvm_mutex_unlock_at(m, site);
	if (!ccvm_sync_serial(m->sched))
		sched_yield();
	ccvm_mutex_lock_at(m, site);
}

/* ---- condition variable -------------------------------------------------------- */

/*
 * ccvm_cond_wait() - As pthread_cond_wait: release @m, sleep until woken,
 * take @m again.  In serial mode wake-ups are never spurious and a signal
 * wakes the longest waiter; callers still loop on their predicate.
 * ccvm_cond_signal() / _broadcast() - Wake one / every waiter.
 * Context: @m held (wait); @c and @m of the same platform.
 */
#define ccvm_cond_wait(c, m)		ccvm_cond_wait_at((c), (m), CCVM_SYNC_SITE)
#define ccvm_cond_signal(c)		ccvm_cond_signal_at((c), CCVM_SYNC_SITE)
#define ccvm_cond_broadcast(c)		ccvm_cond_broadcast_at((c), CCVM_SYNC_SITE)

static inline void ccvm_cond_wait_at(struct ccvm_cond *c, struct ccvm_mutex *m,
				     const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(c->sched)) {
		ccvm_sync_cond_wait(c, m, site);
		return;
	}
	__atomic_store_n(&m->held, 0, __ATOMIC_RELAXED);
	pthread_cond_wait(&c->cond, &m->u.lock);
	__atomic_store_n(&m->held, 1, __ATOMIC_RELAXED);
}

static inline void ccvm_cond_signal_at(struct ccvm_cond *c, const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(c->sched))
		ccvm_sync_cond_wake(c, 0, site);
	else
		pthread_cond_signal(&c->cond);
}

static inline void ccvm_cond_broadcast_at(struct ccvm_cond *c, const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(c->sched))
		ccvm_sync_cond_wake(c, 1, site);
	else
		pthread_cond_broadcast(&c->cond);
}

/* ---- scheduling points, yields and spin-waits ----------------------------------- */

/*
 * ccvm_sched_point() - A scheduling point before an operation on shared
 * state that no lock orders, typically the atomic that decides contention
 * (a CAS on a try-lock word, an exchange on a state word).  @obj is the word
 * (NULL: may conflict with anything), @where a string literal for reports.
 * Free-running: nothing.  Context: a thread of @s's platform.
 */
#define ccvm_sched_point(s, obj, where) \
	ccvm_sched_point_at((s), (obj), (where), CCVM_SYNC_SITE)

static inline void ccvm_sched_point_at(struct ccvm_sched *s, const void *obj, const char *where,
				       const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(s))
		ccvm_sync_point(s, obj, where, site);
}

/*
 * ccvm_sched_point2() - A scheduling point whose operation, up to the
 * thread's next point, touches shared state of objects @a and @b only (@b
 * may be NULL; @a NULL is ccvm_sched_point(s, NULL, ...)).  @reads:
 * CCVM_SCHED_RD_A if @a is only read, CCVM_SCHED_RD_B if @b is only read.
 * Two steps conflict when they share an object that one of them writes;
 * the DFS reductions (docs/scheduler.md, 4.3) rely on these being complete.
 */
/*
 * CCVM_SCHED_HW(s) - The object standing for the machine: backend and
 * hardware state (module locks, S-EPT, RMP, PAMT) and the page tables,
 * which their users reach without a lock of this layer or under a read
 * lock whose holders write.  Every backend op's call and return point
 * touches it, and so does every step of a thread inside an op or holding
 * mmu_lock.
 */
#define CCVM_SCHED_HW(s)	((const void *)(s))

#define CCVM_SCHED_RD_A		0x1u
#define CCVM_SCHED_RD_B		0x2u

#define ccvm_sched_point2(s, a, b, reads, where) \
	ccvm_sched_point2_at((s), (a), (b), (reads), (where), CCVM_SYNC_SITE)

static inline void ccvm_sched_point2_at(struct ccvm_sched *s, const void *a, const void *b,
					unsigned int reads, const char *where,
					const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(s))
		ccvm_sync_point2(s, a, b, reads, where, site);
}

/*
 * ccvm_sched_yield() - Let others run (a retry loop's back-off).  Free-running:
 * sched_yield().  Serial: the caller is not runnable again until every
 * thread that could run at the yield (and was not yielding) has run or can
 * no longer run, a fair yield; if no other thread can run at all it goes
 * on.  A loop that never ends this way hits the step bound and is reported
 * as a livelock.
 */
#define ccvm_sched_yield(s, where)	ccvm_sched_yield_at((s), (where), CCVM_SYNC_SITE)

static inline void ccvm_sched_yield_at(struct ccvm_sched *s, const char *where,
				       const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(s))
		ccvm_sync_yield(s, where, site);
	else
		sched_yield();
}

/* The host's cache line, for objects that threads on different CPUs write. */
#define CCVM_CACHELINE		64

/*
 * ccvm_zalloc_lines() - @size zeroed bytes on cache lines of their own
 * (free() releases them), or NULL: an object that threads on different
 * CPUs write (a vCPU, per-CPU counts, a sharded lock) must not share a
 * line with its neighbour on the heap, and its _Alignas(CCVM_CACHELINE)
 * members are then aligned.  0 bytes gets one line.
 */
static inline void *ccvm_zalloc_lines(size_t size)
{
	size_t n = (size + CCVM_CACHELINE - 1) & ~(size_t)(CCVM_CACHELINE - 1);
	void *obj;

	if (!n)
		n = CCVM_CACHELINE;
	obj = aligned_alloc(CCVM_CACHELINE, n);
	if (obj)
		memset(obj, 0, n);
	return obj;
}

/*
 * ccvm_host_cpu() - The host CPU the calling thread runs on: a hint (it may
 * have moved by the time it is used), for per-CPU counts and lock shards.
 * From the rseq area that glibc registers for every thread, where the
 * kernel keeps it current (one load); else sched_getcpu() (a call into the
 * vDSO) when the includer defined _GNU_SOURCE, which declares it.  -1 if
 * neither can tell.
 */
static inline int ccvm_host_cpu(void)
{
#ifdef CCVM_HAVE_RSEQ_CPU
	if (__rseq_size) {
		const char *tp;
		int cpu;

		__asm__("movq %%fs:0, %0" : "=r"(tp));
		cpu = (int)__atomic_load_n(&((const struct rseq *)(tp + __rseq_offset))->cpu_id,
					   __ATOMIC_RELAXED);
		if (cpu >= 0)
			return cpu;
	}
#endif
#ifdef __USE_GNU
	return sched_getcpu();
#else
	return -1;
#endif
}

/*
 * ccvm_host_cpu_slot() - The slot, below @nr, of the host CPU the calling
 * thread runs on (ccvm_host_cpu(); the same hint), for per-CPU shards of
 * a lock or a count: the CPU itself while it is below @nr (no division,
 * the common case), else the CPU modulo @nr; 0 when @nr is 0 or 1 (one
 * shard: serial) or the CPU is unknown.
 */
static inline unsigned int ccvm_host_cpu_slot(unsigned int nr)
{
	int cpu;

	if (nr <= 1)
		return 0;
	cpu = ccvm_host_cpu();
	if (cpu <= 0)
		return 0;
	return (unsigned int)cpu < nr ? (unsigned int)cpu : (unsigned int)cpu % nr;
}

/*
 * ccvm_full_barrier() - A full memory barrier (x86: mfence): every load and
 * store before it is done before any after it.  For the two sides of a
 * Dekker-style handshake, where each side stores its own word and then
 * reads the other's (a lock taken, then a count that others change without
 * it).  GCC's ThreadSanitizer build warns that it does not model fences
 * (-Wtsan, an error under -Werror); TSan checks happens-before, which such
 * handshakes give through their acquire loads as well, so the warning is
 * off for this one call.
 */
static inline void ccvm_full_barrier(void)
{
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif
#if defined(__GNUC__)
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#else
	atomic_thread_fence(memory_order_seq_cst);
#endif
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic pop
#endif
}

/*
 * ccvm_spin_wait() - One round of a busy-wait on the word at @ptr (1, 2, 4
 * or 8 bytes) that the caller saw holding @old: the caller loads it again
 * afterwards and loops.  Free-running: sched_yield().  Serial: the caller is
 * not runnable until the word differs from @old, so a spin never burns
 * steps, and one that nobody can end is a deadlock naming @where.
 */
#define ccvm_spin_wait(s, ptr, old, where) \
	ccvm_spin_wait_at((s), (ptr), sizeof(*(ptr)), (uint64_t)(old), (where), CCVM_SYNC_SITE)

static inline void ccvm_spin_wait_at(struct ccvm_sched *s, const volatile void *addr,
				     size_t size, uint64_t old, const char *where,
				     const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(s))
		ccvm_sync_spin_wait(s, addr, size, old, where, site);
	else
		sched_yield();
}

/*
 * ccvm_spin_wait_on() - ccvm_spin_wait() for a word that is part of a larger
 * object @obj whose writers announce themselves at points naming @obj (e.g.
 * a record of several words changed after one point).  In serial mode the
 * wait step *reads* @obj instead of writing the word itself, so waiters on
 * one object commute with each other and are ordered against its writers.
 */
#define ccvm_spin_wait_on(s, ptr, old, obj, where) \
	ccvm_spin_wait_on_at((s), (ptr), sizeof(*(ptr)), (uint64_t)(old), (obj), (where), \
			     CCVM_SYNC_SITE)

static inline void ccvm_spin_wait_on_at(struct ccvm_sched *s, const volatile void *addr,
					size_t size, uint64_t old, const void *obj,
					const char *where, const struct ccvm_sync_site *site)
{
	if (ccvm_sync_serial(s))
		ccvm_sync_spin_wait_on(s, addr, size, old, obj, where, site);
	else
		sched_yield();
}

/* ---- threads ------------------------------------------------------------------ */

typedef int (*ccvm_thread_fn)(void *arg);

/*
 * ccvm_thread_create() - Start a thread running @fn(@arg), named @name
 * (copied, at most 15 characters kept) on @p's scheduler: a plain pthread
 * when @p is free-running, a controlled thread in serial mode (it first
 * runs when the scheduler picks it).  Library threads (vCPU guests) and
 * VMM threads alike use it.
 * Context: free-running: any thread; serial: a controlled thread of @p.
 * Return: 0 with *@out set; -EINVAL (NULL argument); -EPERM (serial
 * platform, caller not controlled by it); -EAGAIN (too many threads);
 * -ENOMEM.
 * Example:
 *	#include <stdio.h>
 *
 *	static int worker(void *arg)
 *	{
 *		return *(int *)arg * 2;
 *	}
 *
 *	int main(void)
 *	{
 *		struct ccvm_platform *p;
 *		struct ccvm_thread *t;
 *		int in = 21, out = 0;
 *
 *		if (ccvm_platform_create(NULL, &p))
 *			return 1;
 *		// A plain pthread here; a controlled thread on a serial platform.
 *		if (ccvm_thread_create(p, &t, worker, &in, "worker") ||
 *			ccvm_thread_join(t, &out))
 *			return 1;
 *		printf("worker returned %d\n", out);
 *		return ccvm_platform_destroy(p) != 0 || out != 42;
 *	}
 */
CCVM_API int ccvm_thread_create(struct ccvm_platform *p, struct ccvm_thread **out, ccvm_thread_fn fn,
				void *arg, const char *name);

/*
 * ccvm_thread_join() - Wait for @t to end; *@ret (may be NULL) gets what
 * its function returned.  @t is freed.
 * Context: free-running: any other thread; serial: a controlled thread.
 * Return: 0; -EINVAL (NULL); -EDEADLK (@t is the caller); -ECANCELED (the
 * schedule failed and @t was unwound: *@ret untouched).
 * Example:
 *	// Join a pool of VMM threads; after a failed schedule a join returns
 *	// -ECANCELED and leaves that thread's result alone.
 *	int join_all(struct ccvm_thread **t, int *ret, unsigned int n)
 *	{
 *		int first = 0;
 *
 *		for (unsigned int i = 0; i < n; i++) {
 *			int err = ccvm_thread_join(t[i], &ret[i]);     // frees t[i]
 *
 *			if (err && !first)
 *				first = err;
 *		}
 *		return first;
 *	}
 */
#define ccvm_thread_join(t, ret)	ccvm_thread_join_at((t), (ret), CCVM_SYNC_SITE)
CCVM_API int ccvm_thread_join_at(struct ccvm_thread *t, int *ret, const struct ccvm_sync_site *site);

/*
 * ccvm_thread_name() - The name @t was given at creation ("main" for a
 * serial platform's creator).
 * Context: any thread while @t is not joined.
 * Return: the name, valid until @t is joined.
 * Example:
 *	#include <stdio.h>
 *
 *	// A watchdog's message names the thread it is about.
 *	void report_stuck(const struct ccvm_thread *t, unsigned int seconds)
 *	{
 *		fprintf(stderr, "%s: no progress for %u s\n", ccvm_thread_name(t), seconds);
 *	}
 */
CCVM_API const char *ccvm_thread_name(const struct ccvm_thread *t);

/*
 * ccvm_sched_status() - Whether the schedule of a serial platform made with
 * .sched = CCVM_SCHED_SERIAL failed (outside ccvm_explore(), which reports
 * failures itself).  After a failure every other controlled thread has been
 * unwound, the creator's pending call returned without effect, and sync
 * calls no longer schedule: the platform is good only for destroying.
 * Context: the platform's creator (controlled thread 0), or any thread
 * once the failure unwound the others.
 * Return: 0 (no failure, or @s NULL); -EDEADLK, -ELOOP, -EPERM with a
 * report in @msg (NUL-terminated, may be NULL).
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	static struct ccvm_mutex m;
 *	static struct ccvm_cond never;
 *
 *	static int waiter(void *arg)
 *	{
 *		(void)arg;
 *		ccvm_mutex_lock(&m);
 *		ccvm_cond_wait(&never, &m);     // nobody signals: a deadlock
 *		ccvm_mutex_unlock(&m);
 *		return 0;
 *	}
 *
 *	int main(void)
 *	{
 *		struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
 *													 .sched = CCVM_SCHED_SERIAL);
 *		struct ccvm_platform *p;
 *		struct ccvm_thread *t;
 *		char msg[2048];
 *		int err;
 *
 *		if (ccvm_platform_create(&o, &p))
 *			return 1;
 *		ccvm_mutex_init(&m, ccvm_platform_sched(p), "m");
 *		ccvm_cond_init(&never, ccvm_platform_sched(p), "never");
 *		if (ccvm_thread_create(p, &t, waiter, NULL, "waiter") == 0)
 *			ccvm_thread_join(t, NULL);  // comes back when the deadlock is found
 *		err = ccvm_sched_status(ccvm_platform_sched(p), msg, sizeof(msg));
 *		printf("%s\n", err == -EDEADLK ? "deadlock found" : "no failure");
 *		ccvm_cond_destroy(&never);
 *		ccvm_mutex_destroy(&m);
 *		ccvm_platform_destroy(p);
 *		return err != -EDEADLK;
 *	}
 */
CCVM_API int ccvm_sched_status(struct ccvm_sched *s, char *msg, size_t msg_sz);

#ifdef __cplusplus
}
#endif

#endif /* CCVM_SYNC_H */
