/* SPDX-License-Identifier: MIT */
/*
 * A big-reader lock: a reader/writer lock whose read side does not bounce
 * one cache line between CPUs.  It is made of the sync layer's rwlocks
 * (<ccvm/sync.h>), one per shard, each on cache lines of its own: a
 * reader takes the shard of the CPU it runs on for read (and unlocks that
 * same shard, wherever it runs by then), a writer takes every shard for
 * write, in index order, and so excludes every reader.  This is the old
 * Linux brlock, and the same trade as KVM's per-CPU schemes: reads are
 * what the hot paths do (a guest access, a fault's install); writes
 * (zaps, invalidations, root changes) are rarer and pay one lock per
 * shard.
 *
 * On a serial platform (a deterministic scheduler) there is one shard, so
 * the lock is exactly one ccvm_rwlock under its name, with the same
 * scheduling points as before: schedules, their replay and the explorer's
 * state space do not depend on the host's CPU count.  Free-running, the
 * number of shards is the host's online CPUs, at most CCVM_BRLOCK_SHARDS.
 *
 * Semantics are the rwlock's: writer-preferring per shard, so a thread
 * that read-locks twice can deadlock against a writer, as with one rwlock.
 */
#ifndef CCVM_LIB_BRLOCK_H
#define CCVM_LIB_BRLOCK_H

#include <sched.h>

#include <ccvm/sync.h>

#define CCVM_BRLOCK_SHARDS	8

/*
 * One shard: its lock and nothing else on its cache lines.  The struct is
 * aligned to a line, so the object that holds a brlock must be too
 * (ccvm_zalloc_lines()): a shard that began in the middle of a line shared
 * it with the read-mostly count before it, and every reader on another CPU
 * missed on that line when this shard's readers wrote theirs.
 */
struct ccvm_brlock_shard {
	_Alignas(64) struct ccvm_rwlock l;
	char pad[192 - sizeof(struct ccvm_rwlock)];
};

struct ccvm_brlock {
	unsigned int nr;			/* shards in use: 1 when serial */
	struct ccvm_brlock_shard shard[CCVM_BRLOCK_SHARDS];
};

/* The host's online CPUs, at least 1, at most CCVM_BRLOCK_SHARDS. */
unsigned int ccvm_host_cpu_shards(void);

/* Set up @b in the mode of @s, every shard named @name.  0 or -errno. */
int ccvm_brlock_init(struct ccvm_brlock *b, struct ccvm_sched *s, const char *name);
void ccvm_brlock_destroy(struct ccvm_brlock *b);

#define ccvm_brlock_rdlock(b)		ccvm_brlock_rdlock_at((b), CCVM_SYNC_SITE)
#define ccvm_brlock_rdunlock(b, i)	ccvm_brlock_rdunlock_at((b), (i), CCVM_SYNC_SITE)
#define ccvm_brlock_wrlock(b)		ccvm_brlock_wrlock_at((b), CCVM_SYNC_SITE)
#define ccvm_brlock_wrunlock(b)		ccvm_brlock_wrunlock_at((b), CCVM_SYNC_SITE)
#define ccvm_brlock_cond_resched(b)	ccvm_brlock_cond_resched_at((b), CCVM_SYNC_SITE)

/*
 * Take @b for read.  Return: the shard taken, to give back to
 * ccvm_brlock_rdunlock() (the thread may have moved to another CPU).
 */
static inline unsigned int ccvm_brlock_rdlock_at(struct ccvm_brlock *b,
						 const struct ccvm_sync_site *site)
{
	unsigned int i = ccvm_host_cpu_slot(b->nr);

	ccvm_rwlock_rdlock_at(&b->shard[i].l, site);
	return i;
}

static inline void ccvm_brlock_rdunlock_at(struct ccvm_brlock *b, unsigned int i,
					   const struct ccvm_sync_site *site)
{
	ccvm_rwlock_unlock_at(&b->shard[i].l, site);
}

static inline void ccvm_brlock_wrlock_at(struct ccvm_brlock *b, const struct ccvm_sync_site *site)
{
	unsigned int i;

	for (i = 0; i < b->nr; i++)
		ccvm_rwlock_wrlock_at(&b->shard[i].l, site);
}

static inline void ccvm_brlock_wrunlock_at(struct ccvm_brlock *b, const struct ccvm_sync_site *site)
{
	unsigned int i = b->nr;

	while (i--)
		ccvm_rwlock_unlock_at(&b->shard[i].l, site);
}

/* Should a writer in a long loop let others in (ccvm_rwlock_needbreak())? */
static inline int ccvm_brlock_needbreak(const struct ccvm_brlock *b)
{
	unsigned int i;

	for (i = 0; i < b->nr; i++)
		if (ccvm_rwlock_needbreak(&b->shard[i].l))
			return 1;
	return 0;
}

/* A writer drops @b, lets others run, takes it again (ccvm_rwlock_cond_resched()). */
static inline void ccvm_brlock_cond_resched_at(struct ccvm_brlock *b,
					       const struct ccvm_sync_site *site)
{
	if (b->nr == 1) {
		ccvm_rwlock_cond_resched_at(&b->shard[0].l, 1, site);
		return;
	}
	ccvm_brlock_wrunlock_at(b, site);
	sched_yield();
	ccvm_brlock_wrlock_at(b, site);
}

#endif /* CCVM_LIB_BRLOCK_H */
