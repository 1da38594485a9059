/* SPDX-License-Identifier: MIT */
/*
 * The deterministic scheduler (lib/sched.c) as the explorer (lib/explore.c)
 * and the platform (lib/platform.c) drive it.  docs/scheduler.md has the
 * design; this header is the contract between those three files.
 *
 * One struct ccvm_sched outlives many runs: its thread slots, semaphores,
 * DFS stack and record buffer are reused, so a step allocates nothing.
 */
#ifndef CCVM_LIB_SCHEDULER_H
#define CCVM_LIB_SCHEDULER_H

#include <setjmp.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>

#include <ccvm/explore.h>
#include <ccvm/sync.h>

#define CCVM_SCHED_MAX_THREADS	64		/* ids fit a mask word */
#define CCVM_SCHED_MAX_HELD	16		/* locks one thread holds, for reports */
#define CCVM_SCHED_RING		CCVM_EXPLORE_MAX_EVENTS	/* power of two */
#define CCVM_SCHED_NONE		0xffu		/* no thread */
#define CCVM_SCHED_MSG_MAX	8192
#define CCVM_SCHED_DEFAULT_STEP_BOUND	100000ull

/* How the next thread is picked at a step with several runnable threads. */
enum ccvm_sched_strategy {
	CCVM_SCHED_FIFO,	/* keep the running thread, else the lowest id */
	CCVM_SCHED_RANDOM,
	CCVM_SCHED_PCT,
	CCVM_SCHED_DFS,
	CCVM_SCHED_REPLAY,
};

/* When a thread parked at a step may run (its pending operation can). */
enum ccvm_sched_wait {
	CCVM_W_NONE,		/* always */
	CCVM_W_MUTEX,		/* the mutex is free */
	CCVM_W_RDLOCK,		/* no writer holds or waits behind readers */
	CCVM_W_WRLOCK,		/* nobody holds it */
	CCVM_W_COND,		/* signalled and the mutex is free */
	CCVM_W_JOIN,		/* the thread ended */
	CCVM_W_CHANGE,		/* the watched word moved */
	CCVM_W_YIELD,		/* who could run at the yield has run since */
};

enum ccvm_thread_state {
	CCVM_T_FREE,		/* slot unused in this run */
	CCVM_T_LIVE,
	CCVM_T_DONE,		/* ended or unwound, not joined */
	CCVM_T_JOINED,
};

struct ccvm_held {
	const void *obj;
	const char *name;
	uint8_t kind;		/* 0 mutex, 1 read, 2 write, 3 inside (busy) */
};

struct ccvm_thread {
	struct ccvm_sched *s;			/* NULL: a free-running thread */
	ccvm_thread_fn fn;
	void *arg;
	int ret;
	char name[CCVM_SCHED_NAME_MAX];

	/* serial mode */
	uint8_t id;
	uint8_t state;				/* enum ccvm_thread_state */
	bool has_jmp;				/* start can be jumped to */
	bool unwound;				/* ended by a failed schedule */
	bool signaled;				/* CCVM_W_COND: woken */
	/* the pending operation: what it does when it is next picked */
	uint8_t op;				/* enum ccvm_sched_op */
	uint8_t wait;				/* enum ccvm_sched_wait */
	uint8_t wsize;				/* CCVM_W_CHANGE: bytes */
	const void *wobj;			/* what it waits on (predicate, report) */
	const void *dobj;			/* what it touches; NULL: anything */
	const void *dobj2;			/* a second object it touches, or NULL */
	const void *dobj3;			/* the machine (CCVM_SCHED_HW), or NULL */
	uint8_t dread;				/* bit i: object i is only read */
	const char *oname;
	const struct ccvm_sync_site *site;
	struct ccvm_mutex *cmutex;		/* CCVM_W_COND: to take again */
	uint64_t wold;				/* W_CHANGE: value seen; W_YIELD: threads to run first */
	uint64_t ticket;			/* CCVM_W_COND: arrival order */
	uint64_t prio;				/* PCT priority, higher runs */
	uint32_t nheld;
	struct ccvm_held held[CCVM_SCHED_MAX_HELD];
	/*
	 * Kept across runs (not cleared when the slot is taken): a serial
	 * slot's OS thread outlives the controlled thread it ran and parks on
	 * its baton until the slot is taken again (the pool, docs/scheduler.md
	 * section 7), or until the scheduler is freed.
	 */
	sem_t baton;				/* posted when it is picked */
	pthread_t pt;
	bool os_thread;				/* pt runs (serial: parked in the pool) */
	bool quit;				/* the pooled OS thread is to end */
	jmp_buf start;				/* where an unwind lands */
};

/* A step of a DFS run where several threads could run. */
struct ccvm_sched_node {
	uint64_t enabled;			/* runnable threads */
	uint64_t sleep;				/* sleep set on arrival */
	uint32_t lo, hi;			/* shards owning the subtree */
	uint16_t preempt;			/* preemptions before it */
	uint8_t cur;				/* running thread if runnable, else NONE */
	uint8_t chosen;				/* index in its alternatives */
	bool nopreempt;				/* cur's next op is a release: no preemption */
};

/* An object's happens-before hash in the current run (state caching). */
struct ccvm_sched_obj {
	const void *key;
	uint64_t w;				/* hash of the last step writing it */
	uint64_t r;				/* sum of the reads since that write */
	uint32_t gen;				/* == run_gen: in use this run */
};

#define CCVM_SCHED_OBJS		4096		/* objects one run can hash */

/* A DFS state seen: fingerprint, and the fewest preemptions it was reached with. */
struct ccvm_sched_seen {
	uint64_t key;				/* 0: empty */
	uint32_t preempt;
};

struct ccvm_sched_choice {
	uint64_t step;
	uint32_t tid;
};

/* One ring entry: what the event report needs, without copying names. */
struct ccvm_sched_ring {
	uint64_t step;
	const char *obj;
	const struct ccvm_sync_site *site;
	uint8_t tid, op;
};

struct ccvm_sched {
	/* ---- configuration, set between runs ---- */
	uint32_t strategy;			/* enum ccvm_sched_strategy */
	uint64_t seed;
	uint64_t step_bound;
	uint32_t pct_depth;
	uint64_t pct_steps;
	int32_t bound;				/* DFS preemption bound, -1 none */
	bool sleep_sets;			/* DFS: reduce with sleep sets */
	uint32_t shard_index, shard_count;
	struct ccvm_platform *p;		/* first platform of the run */
	const struct ccvm_scenario *sc;		/* check hook, NULL: none */
	bool lib_check;				/* invariants at quiescent points */
	bool checks_armed;			/* the scenario runs: checks may start */
	void (*event_fn)(const struct ccvm_sched_event *ev, void *ctx);
	void *event_ctx;
	bool owned;				/* made by a platform (direct mode) */
	uint32_t refs;				/* platforms attached (+1 explorer) */

	/* ---- one run ---- */
	struct ccvm_thread threads[CCVM_SCHED_MAX_THREADS];
	uint32_t nr_threads;
	uint64_t live;				/* threads in CCVM_T_LIVE */
	struct ccvm_thread *current;
	struct ccvm_thread *unwinder;
	bool running, in_check, failed, aborting;
	uint64_t step, nswitch, ticket, rng;
	uint32_t hash;
	uint32_t nr_held;			/* lock holds, every thread */
	uint64_t nr_checks;			/* quiescent checks this run */
	int error;				/* failure errno */
	uint32_t failure;			/* enum ccvm_explore_failure */
	char msg[CCVM_SCHED_MSG_MAX];
	char note[512];				/* the scenario's word on its error */

	/* PCT */
	uint64_t pct_change[CCVM_EXPLORE_MAX_PCT_DEPTH];
	uint32_t pct_nchange;

	/* DFS: nodes[0..prefix) are replayed, later ones found by this run */
	struct ccvm_sched_node *nodes;
	size_t nr_nodes, cap_nodes, prefix, node_idx;
	uint64_t sleep;
	uint32_t preempt, lo, hi;
	bool dfs_off;				/* sleep-set blocked or state seen: no more nodes */
	bool preempt_all;			/* DFS: preempt before releases too */
	bool after_join;			/* DFS: the last step was an eager join */

	/*
	 * DFS state caching: the state after a sequence of steps is named by a
	 * Merkle hash of its happens-before graph: per thread the hash of its
	 * last step, per object the hash of the last step on it, and the hash
	 * of the last step that named no object (which conflicts with all).
	 * Two runs with the same hashes ran equivalent interleavings and are
	 * in the same state (docs/scheduler.md, 4.3).
	 */
	bool cache;				/* on for this sweep */
	bool cache_off;				/* this run: the object table is full */
	uint64_t th_hash[CCVM_SCHED_MAX_THREADS];
	uint64_t g_hash;			/* last step with no object */
	uint64_t fp_threads;			/* sum over the threads */
	uint32_t run_gen;
	struct ccvm_sched_obj *objs;		/* CCVM_SCHED_OBJS entries */
	struct ccvm_sched_seen *seen;		/* open addressing, power of two */
	size_t nr_seen, cap_seen;
	uint64_t cache_hits;			/* runs cut short by a seen state */

	/* replay */
	struct ccvm_sched_choice *replay;
	size_t replay_n, replay_i;
	uint64_t replay_steps;
	uint32_t replay_hash;
	bool replay_partial;

	/* the schedule being recorded: varint (step delta, thread) pairs */
	uint8_t *_Atomic rec;
	size_t rec_len, rec_cap;
	uint64_t rec_last;

	struct ccvm_sched_ring ring[CCVM_SCHED_RING];
};

int ccvm_sched_new(struct ccvm_sched **out);
void ccvm_sched_free(struct ccvm_sched *s);

/*
 * Start a run with the configuration in @s: the calling thread becomes
 * controlled thread 0 named "main"; @can_unwind says it set (or will set)
 * threads[0].start with setjmp before any step.
 */
void ccvm_sched_run_begin(struct ccvm_sched *s, bool can_unwind);
/*
 * Thread 0's scenario returned @err: unwind threads still alive (a failure
 * unless one is already recorded), check the token's end in replay, run
 * the final check.  Return: the run's status (0 or the failure's errno).
 */
int ccvm_sched_run_finish(struct ccvm_sched *s, int err);
/* Leave run mode and join every OS thread of the run.  Thread 0 calls it. */
void ccvm_sched_run_end(struct ccvm_sched *s);

/*
 * After a DFS run: move to the next schedule of this shard.  Return: true
 * if there is one (the next run replays nodes[0..prefix)).
 */
bool ccvm_sched_dfs_next(struct ccvm_sched *s);
/* Whether the last DFS run's leaf belongs to this shard. */
bool ccvm_sched_dfs_owned(const struct ccvm_sched *s);

/*
 * The recorded schedule as a token ("S1:" + base64url), NUL-terminated,
 * malloc'd.  Return: 0 or -ENOMEM.
 */
int ccvm_sched_token(const struct ccvm_sched *s, char **out);
/* Load @token for CCVM_SCHED_REPLAY.  Return: 0, -EINVAL, -ENOMEM. */
int ccvm_sched_load_token(struct ccvm_sched *s, const char *token);
/*
 * Async-signal-safe: write "<prefix><token of the run so far>\n" to @fd
 * (marked partial: replay stops checking at its end).
 */
void ccvm_sched_write_token(const struct ccvm_sched *s, int fd, const char *prefix);

/* The last @n events of the run, oldest first, into @ev; returns how many. */
uint32_t ccvm_sched_last_events(const struct ccvm_sched *s, struct ccvm_sched_event *ev,
				uint32_t n);

/*
 * Note why the scenario is about to fail (the first note of a run wins);
 * a scenario error's report carries it.  No-op when @s is NULL.
 */
void ccvm_sched_note(struct ccvm_sched *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Whether the calling thread is controlled by a scheduler that is running. */
bool ccvm_sched_caller_controlled(void);

/*
 * Mark the calling thread as inside something whose intermediate states
 * the invariant checker must not see (a backend op: the module's locks,
 * an RMP update in flight): until the matching _leave, no point is
 * quiescent.  @key identifies the mark (unique while it is held), @what
 * names it in reports.  No-ops when @s is NULL or not running.
 */
void ccvm_sched_busy_enter(struct ccvm_sched *s, const void *key, const char *what);

/*
 * Make @m (just initialised) an outer mutex: held across a wait for other
 * threads (vcpu->mutex across a run), guarding nothing the invariant
 * checker reads mid-change, so holding it does not end quiescence.  Its
 * waits and steps are those of any mutex.  No-op when free-running.
 */
void ccvm_sched_mutex_outer(struct ccvm_mutex *m);
void ccvm_sched_busy_leave(struct ccvm_sched *s, const void *key);

/*
 * Make @l (just initialised) a lock whose holders write state that others
 * read without it or under its read side (mmu_lock: SPTEs are installed
 * under the read lock and read by every walker): its lock and unlock
 * steps, and every step of a thread holding it, touch the machine
 * (CCVM_SCHED_HW) for the DFS reductions.  No-op when free-running.
 */
void ccvm_sched_rwlock_hw(struct ccvm_rwlock *l);

/* lib/platform.c hooks: join the caller's scheduler or make one (SERIAL). */
int ccvm_sched_platform_attach(struct ccvm_platform *p, uint32_t mode, uint64_t seed);
/* True while @p may not be destroyed: its own scheduler has live threads. */
bool ccvm_sched_platform_busy(struct ccvm_platform *p);
void ccvm_sched_platform_detach(struct ccvm_platform *p);

#endif /* CCVM_LIB_SCHEDULER_H */
