/* SPDX-License-Identifier: MIT */
/*
 * The simulated Intel TDX module.  tdx-module.h is the datasheet; this file
 * follows it leaf by leaf.
 *
 * Every leaf comes in through seamcall(), which finds it in the leaf table
 * at the end of this file (number, name, handler, counted event) and does
 * what every leaf does: the handle check, fault injection, and counting the
 * call and its outcome.  The handlers do the leaf's own work; the S-EPT
 * leaves start with sept_lookup(), which applies their row of sept_gates[].
 *
 * Locks are try-locks built on single atomic words, so contention turns
 * into TDX_OPERAND_BUSY exactly where the real module answers busy, and the
 * hot leaves (AUG, BLOCK, TRACK, REMOVE, WBINVD, RECLAIM) cost a handful of
 * atomic operations and an S-EPT walk, with no allocation or system call.
 * Every lock is taken in lock_try() or lock_wait().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tdx-module.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* ---- internal objects ---------------------------------------------- */

enum kot_state { KOT_FREE = 0, KOT_ASSIGNED, KOT_RECLAIMED };

struct ccvm_tdx_kot_entry {
	_Atomic uint32_t state;		/* enum kot_state; written under key_lock */
	uint32_t slot;			/* owner TD while not FREE */
	uint64_t wb_started;		/* packages whose write-back covers it */
	uint64_t wb_done;		/* packages that wrote it back */
};

enum hkid_pool_state { POOL_FREE = 0, POOL_ALLOCATED, POOL_LEAKED };

/*
 * A TD's PAMT owner is a slot number (16 bits fit the 8-byte PAMT entry);
 * the slot gives the TD and the key that encrypts its pages.  The key stays
 * after the TD is freed so a racing host read still finds one.
 */
struct ccvm_tdx_slot {
	_Atomic(struct ccvm_tdx_td *) td;
	_Atomic uint64_t key;
};

struct ccvm_tdx_inject_rule {
	uint64_t nth;
	uint64_t status;
	uint64_t count;
	uint64_t calls;
	uint64_t fired;
	bool active;
};

/*
 * The 2M level of the PAMT: the entry of a page assigned at 2M (same
 * format as a 4K entry), the count of the region's pages assigned at 4K
 * (any type), and its Dynamic PAMT page pair (0: none).  A 4K assignment
 * raises nr_4k before it reads v, a 2M one (or PAMT.REMOVE) locks v before
 * it reads nr_4k, both sequentially consistent: of two racing, at least one
 * sees the other and refuses, without either taking the other's lock.
 * One region to a cache line: the platform's allocator windows give
 * consecutive 2M regions to different vCPUs, whose every 4K assignment
 * writes nr_4k.
 */
struct ccvm_tdx_pamt2m {
	_Alignas(64) _Atomic uint64_t v;
	_Atomic uint64_t nr_4k;
	_Atomic uint64_t nr_pamt;	/* of nr_4k: pair pages (PT_PAMT) of any region */
	_Atomic uint64_t pair[CCVM_TDX_DPAMT_PAIR_PAGES];
};

#define PAGES_2M	512u

/* One host CPU's share of the module's counts: a line of its own. */
struct ccvm_tdx_module_cpu {
	_Alignas(64) _Atomic uint64_t nr_assigned;	/* wraps: the sum counts */
};

/* A TD's sharex locks (struct ccvm_tdx_td's lock[]). */
enum td_lock { TDR_LOCK, SEPT_LOCK, EPOCH_LOCK, NR_TD_LOCKS };

/*
 * One host CPU's share of a TD's hot words, on a line of its own: the
 * sharers of each sharex lock that took it on this CPU (big-reader form,
 * free-running only), the vCPUs that entered the guest from this CPU per
 * epoch parity, and the pages added minus those removed on this CPU.  The
 * last two are counts whose sum over the CPUs is the TD's (each wraps: a
 * vCPU may leave on another CPU than it entered from).
 */
struct td_cpu {
	_Alignas(64) _Atomic uint64_t sharers[NR_TD_LOCKS];
	_Atomic uint64_t in_guest[2];
	_Atomic uint64_t children;
};

/* Leaf slots: SEAMCALL leaves 0..63, then ACCEPT.  One injection rule each. */
#define NR_TDH_LEAVES	64
#define LEAF_SLOT_TDG_MEM_PAGE_ACCEPT NR_TDH_LEAVES
#define NR_LEAF_SLOTS	(NR_TDH_LEAVES + 1)

struct ccvm_tdx_td {
	struct ccvm_tdx_module *m;
	_Atomic(struct ccvm_vm *) vm;
	uint64_t tdr_pfn;
	uint32_t slot;
	uint32_t hkid;

	_Atomic int lifecycle;		/* written under tdr_lock exclusive */
	_Atomic int op_state;		/* written under tdr_lock exclusive */
	uint64_t pkg_configured;	/* under key_lock + tdr_lock exclusive */

	/* Set before the op state leaves UNINITIALIZED, read-only after. */
	uint64_t tdcs_pfn[CCVM_TDX_NR_TDCS];
	uint64_t root_pfn;
	int root_level;
	unsigned int gpaw;
	uint64_t shared_bit;
	uint64_t attributes;
	uint32_t max_vcpus;
	unsigned int nr_tdcs;

	_Atomic uint32_t nr_assoc;	/* vCPUs associated with a CPU */
	_Atomic uint32_t nr_vcpus_init;
	uint64_t mrtd;			/* under tdr_lock exclusive */

	struct ccvm_mutex vp_list_lock;
	struct ccvm_tdx_vp *vps;

	/*
	 * The sharex lock words (SX_*: TDR, S-EPT tree, epoch) and TD_EPOCH
	 * (bits 63:24 of epoch_word, the low bits 0).  On a serial platform
	 * (nr_cpu 1) a sharer adds to the word, and every leaf on the TD
	 * writes it; free-running, the words hold only the exclusive bit and
	 * a sharer counts itself in cpu[] (td_lock_try()), so this line is
	 * written by exclusive takers and TRACK alone, and stays in every
	 * CPU's cache.  A line of its own; the struct is allocated line-aligned
	 * (ccvm_zalloc_lines()).
	 */
	_Alignas(64) _Atomic uint64_t lock[NR_TD_LOCKS];
	_Atomic uint64_t epoch_word;
	/*
	 * Child pages removed by PAGE.REMOVE and SEPT.REMOVE (negated, wraps):
	 * written only under the S-EPT tree lock held exclusively, so a plain
	 * add does (no locked instruction per removed page), on the line the
	 * tree lock's taker writes anyway.  Part of td_children()'s sum.
	 */
	_Atomic uint64_t children_excl;
	/*
	 * Slots of cpu[] in use, set at creation: 1 when serial, else the
	 * host's online CPUs (at most CCVM_TDX_CPU_SLOTS).  The vCPUs in the
	 * guest per epoch parity and the TD's child pages are sums over them.
	 */
	unsigned int nr_cpu;
	struct td_cpu cpu[CCVM_TDX_CPU_SLOTS];
};

/*
 * The TDVPR lock word.  A leaf takes it IDLE -> BUSY; VP.ENTER leaves it
 * IN_GUEST (the guest holds it); an exit takes it IN_GUEST -> IN_GUEST +
 * BUSY, then drops it to IDLE.  With the entry window on
 * (ccvm_tdx_set_entry_window()), VP.ENTER leaves IN_GUEST + ENTERING: the
 * entry still holds the TD epoch lock (shared) until vp_entry_done().
 */
enum vp_run { VP_IDLE = 0, VP_BUSY = 1, VP_IN_GUEST = 2, VP_ENTERING = 4 };

struct ccvm_tdx_vp {
	struct ccvm_tdx_td *td;
	uint64_t tdvpr_pfn;
	uint64_t tdcx_pfn[CCVM_TDX_NR_TDCX];
	_Atomic uint64_t run;		/* enum vp_run: the TDVPR lock */
	_Atomic int cpu;		/* associated host CPU, -1 none */
	uint16_t nr_tdcx;		/* under the TDVPR lock (run) */
	_Atomic bool initialized;
	uint64_t epoch;			/* TD epoch entered; valid in the guest */
	_Atomic unsigned int epoch_slot; /* of the entry's epoch lock (shared) */
	struct ccvm_tdx_vp *next;
};

/* ---- PAMT entry: type 3:0, lock 4, poison 5, owner slot 23:8, BEPOCH 63:24 */

#define PAMT_TYPE_MASK		0xfull
#define PAMT_LOCK		(1ull << 4)
#define PAMT_POISON		(1ull << 5)
#define PAMT_OWNER_SHIFT	8
#define PAMT_OWNER_MASK		(0xffffull << PAMT_OWNER_SHIFT)
#define PAMT_BEPOCH_SHIFT	24
#define PAMT_BEPOCH_MASK	(~0ull << PAMT_BEPOCH_SHIFT)
#define EPOCH_MAX		((1ull << 40) - 1)

#define pamt_type(v)		((unsigned int)((v) & PAMT_TYPE_MASK))
#define pamt_owner(v)		((uint32_t)(((v) & PAMT_OWNER_MASK) >> PAMT_OWNER_SHIFT))
#define pamt_bepoch(v)		((v) >> PAMT_BEPOCH_SHIFT)

static inline uint64_t pamt_make(unsigned int type, uint32_t slot, uint64_t bepoch)
{
	return (uint64_t)type | ((uint64_t)slot << PAMT_OWNER_SHIFT) |
	       ((bepoch & EPOCH_MAX) << PAMT_BEPOCH_SHIFT);
}

/* ---- S-EPT entry: state 3:0, entry lock 4, pfn 51:12 -------------------- */

#define SEPTE_STATE_MASK	0xfull
#define SEPTE_LOCK		(1ull << 4)
#define SEPTE_PFN_SHIFT		12
#define SEPTE_PFN_MASK		(((1ull << 40) - 1) << SEPTE_PFN_SHIFT)
#define SEPT_ENTRIES		512u

static inline uint64_t septe_make(unsigned int state, uint64_t pfn)
{
	return (uint64_t)state | ((pfn << SEPTE_PFN_SHIFT) & SEPTE_PFN_MASK);
}

static inline bool sept_is_leaf(unsigned int s)
{
	return s == CCVM_TDX_SEPT_MAPPED || s == CCVM_TDX_SEPT_BLOCKED ||
	       s == CCVM_TDX_SEPT_PENDING || s == CCVM_TDX_SEPT_PENDING_BLOCKED;
}

static inline bool sept_is_blocked(unsigned int s)
{
	return s == CCVM_TDX_SEPT_BLOCKED || s == CCVM_TDX_SEPT_PENDING_BLOCKED ||
	       s == CCVM_TDX_SEPT_NL_BLOCKED;
}

/* ---- epoch word ---------------------------------------------------------- */

#define EPOCH_SHIFT		24

static inline uint64_t epoch_of(uint64_t w)
{
	return w >> EPOCH_SHIFT;
}

/* ---- locks ------------------------------------------------------------------ */

/*
 * lock_try() - Try lock word @w once: the attempt succeeds when the word's
 * bits @mask equal @want, and then adds @take to it.  *@was (may be NULL)
 * gets the word as it was.  Never waits.  Every module lock (the sharex
 * locks, the TDVPR lock, the PAMT and S-EPT entry locks) is tried here,
 * and the few callers that must have a lock retry it here.  Each try is a
 * scheduling point named @what, and so is each release (lock_release()):
 * on a serial platform OPERAND_BUSY comes exactly from the schedules that
 * run another leaf inside a holder's window, and replays.
 */
static bool lock_try(const struct ccvm_tdx_module *m, _Atomic uint64_t *w, uint64_t mask,
		     uint64_t want, uint64_t take, uint64_t *was, const char *what)
{
	uint64_t v;

	/* Whether it is free decides busy: a choice the scheduler explores. */
	ccvm_sched_point(m->sched, CCVM_SCHED_HW(m->sched), what);
	v = atomic_load_explicit(w, memory_order_acquire);

	do {
		if ((v & mask) != want)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(w, &v, v + take, memory_order_acq_rel,
							memory_order_acquire));
	if (was)
		*was = v;
	return true;
}

/*
 * lock_wait() - Take a host-side mutex (HKID pool, injection rules, a TD's
 * vCPU list): bookkeeping the real module does not have, so it blocks
 * instead of answering busy.  The only place the module blocks on a lock.
 */
static void lock_wait(struct ccvm_mutex *l)
{
	ccvm_mutex_lock(l);
}

/* The scheduling point before a module lock is let go (see lock_try()). */
static void lock_release(const struct ccvm_tdx_module *m, const char *what)
{
	ccvm_sched_point(m->sched, CCVM_SCHED_HW(m->sched), what);
}

/* Sharex lock word: bit 0 exclusive, +2 per sharer. */
#define SX_EXCL		1ull
#define SX_SHARER	2ull

static bool sx_try(const struct ccvm_tdx_module *m, _Atomic uint64_t *l, bool excl,
		   const char *what)
{
	return excl ? lock_try(m, l, ~0ull, 0, SX_EXCL, NULL, what) :
		      lock_try(m, l, SX_EXCL, 0, SX_SHARER, NULL, what);
}

static void sx_release(const struct ccvm_tdx_module *m, _Atomic uint64_t *l, bool excl,
		       const char *what)
{
	lock_release(m, what);
	if (excl)
		atomic_store_explicit(l, 0, memory_order_release);
	else
		atomic_fetch_sub_explicit(l, SX_SHARER, memory_order_release);
}

/*
 * td_lock_try() - Try TD sharex lock @i once, exclusively or shared; never
 * waits.  *@slot gets what td_lock_release() needs back.
 *
 * Serial (one slot): sx_try() on the word, the same scheduling points and
 * outcomes as ever.  Free-running, the lock is a big-reader one, so that
 * the sharers (nearly every leaf on the TD, every entry and accept) do not
 * move one cache line between the CPUs: a sharer that finds the word free
 * counts itself on the slot of the CPU it runs on, then looks at the word
 * again, and backs off (busy) if an exclusive taker set it meanwhile; an
 * exclusive taker sets the word's exclusive bit, then must find every
 * slot empty, or clears it again (busy).  Both orders are sequentially
 * consistent, so of a sharer and an exclusive taker racing, at least one
 * sees the other: never both hold it.  When both see each other, both
 * answer busy, as two leaves meeting on a lock do.  A sharer gives back
 * the slot it took, wherever it runs by then.
 */
static bool td_lock_try(struct ccvm_tdx_td *td, enum td_lock i, bool excl, unsigned int *slot,
			const char *what)
{
	_Atomic uint64_t *w = &td->lock[i];
	unsigned int s;

	*slot = 0;
	if (td->nr_cpu <= 1)
		return sx_try(td->m, w, excl, what);
	/* Free-running: no scheduling point to make (m->sched is NULL). */
	if (excl) {
		uint64_t v = 0;

		if (!atomic_compare_exchange_strong(w, &v, SX_EXCL))
			return false;
		for (s = 0; s < td->nr_cpu; s++) {
			if (atomic_load(&td->cpu[s].sharers[i])) {
				atomic_store_explicit(w, 0, memory_order_release);
				return false;
			}
		}
		return true;
	}
	if (atomic_load_explicit(w, memory_order_relaxed) & SX_EXCL)
		return false;
	s = ccvm_host_cpu_slot(td->nr_cpu);
	atomic_fetch_add(&td->cpu[s].sharers[i], 1);
	if (atomic_load(w) & SX_EXCL) {
		atomic_fetch_sub_explicit(&td->cpu[s].sharers[i], 1, memory_order_release);
		return false;
	}
	*slot = s;
	return true;
}

static void td_lock_release(struct ccvm_tdx_td *td, enum td_lock i, bool excl, unsigned int slot,
			    const char *what)
{
	if (td->nr_cpu <= 1)
		sx_release(td->m, &td->lock[i], excl, what);
	else if (excl)
		atomic_store_explicit(&td->lock[i], 0, memory_order_release);
	else
		atomic_fetch_sub_explicit(&td->cpu[slot].sharers[i], 1, memory_order_release);
}

/* The slot of the calling thread's CPU among @td's. */
static inline struct td_cpu *td_cpu_here(struct ccvm_tdx_td *td)
{
	return &td->cpu[ccvm_host_cpu_slot(td->nr_cpu)];
}

/* vCPUs in the guest that entered in an epoch of @parity: the slots' sum. */
static uint64_t td_in_guest(struct ccvm_tdx_td *td, unsigned int parity)
{
	uint64_t n = 0;
	unsigned int s;

	for (s = 0; s < td->nr_cpu; s++)
		n += atomic_load(&td->cpu[s].in_guest[parity]);
	return n;
}

static void td_children_add(struct ccvm_tdx_td *td, int64_t delta, memory_order mo)
{
	atomic_fetch_add_explicit(&td_cpu_here(td)->children, (uint64_t)delta, mo);
}

/* td_children_add() for a holder of the S-EPT tree lock exclusively. */
static void td_children_add_excl(struct ccvm_tdx_td *td, int64_t delta)
{
	atomic_store_explicit(&td->children_excl,
			      atomic_load_explicit(&td->children_excl, memory_order_relaxed) +
			      (uint64_t)delta, memory_order_relaxed);
}

static uint64_t td_children(const struct ccvm_tdx_td *td)
{
	uint64_t n = atomic_load_explicit(&td->children_excl, memory_order_acquire);
	unsigned int s;

	for (s = 0; s < td->nr_cpu; s++)
		n += atomic_load_explicit(&td->cpu[s].children, memory_order_acquire);
	return n;
}

static void module_assigned_add(struct ccvm_tdx_module *m, int64_t delta)
{
	atomic_fetch_add_explicit(&m->cpu[ccvm_host_cpu_slot(m->nr_cpu_slots)].nr_assigned,
				  (uint64_t)delta, memory_order_relaxed);
}

/* Lock a word whose bit @lock_bit is its lock; *@val gets the unlocked value. */
static bool word_trylock(const struct ccvm_tdx_module *m, _Atomic uint64_t *w,
			 uint64_t lock_bit, uint64_t *val, const char *what)
{
	return lock_try(m, w, lock_bit, 0, lock_bit, val, what);
}

static bool vp_trylock(struct ccvm_tdx_vp *vp)
{
	return lock_try(vp->td->m, &vp->run, ~0ull, VP_IDLE, VP_BUSY, NULL, "tdvpr lock");
}

static void vp_unlock(struct ccvm_tdx_vp *vp)
{
	lock_release(vp->td->m, "tdvpr unlock");
	atomic_store_explicit(&vp->run, VP_IDLE, memory_order_release);
}

/* ---- helpers ---------------------------------------------------------------- */

static inline _Atomic uint64_t *pamt_entry(struct ccvm_tdx_module *m, uint64_t pfn)
{
	return &m->pamt[pfn];
}

static inline bool pfn_ok(const struct ccvm_tdx_module *m, uint64_t pfn)
{
	return pfn && pfn < m->nr_pages;
}

static inline struct ccvm_tdx_pamt2m *region_of(struct ccvm_tdx_module *m, uint64_t pfn)
{
	return &m->pamt2m[pfn / PAGES_2M];
}

/* The first pfn of a 2M region (region 0 included). */
static inline bool region_ok(const struct ccvm_tdx_module *m, uint64_t pfn)
{
	return !(pfn % PAGES_2M) && pfn + PAGES_2M <= m->nr_pages;
}

/* A whole 2M page: aligned, inside memory. */
static inline bool pfn_2m_ok(const struct ccvm_tdx_module *m, uint64_t pfn)
{
	return pfn_ok(m, pfn) && !(pfn % PAGES_2M) && pfn + PAGES_2M <= m->nr_pages;
}

static inline _Atomic uint64_t *sept_page(struct ccvm_tdx_module *m, uint64_t pfn)
{
	return (_Atomic uint64_t *)ccvm_page_ptr(m->p, pfn);
}

static inline unsigned int sept_index(uint64_t gpa, int level)
{
	return (unsigned int)(gpa >> (CCVM_PAGE_SHIFT + 9 * level)) & (SEPT_ENTRIES - 1);
}

static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline struct ccvm_vm *td_vm(const struct ccvm_tdx_td *td)
{
	return atomic_load_explicit(&td->vm, memory_order_relaxed);
}

static inline int td_lifecycle(const struct ccvm_tdx_td *td)
{
	return atomic_load_explicit(&td->lifecycle, memory_order_relaxed);
}

static inline int td_op_state(const struct ccvm_tdx_td *td)
{
	return atomic_load_explicit(&td->op_state, memory_order_relaxed);
}

static inline uint64_t busy(uint32_t operand)
{
	return TDX_OPERAND_BUSY | operand;
}

static inline bool cpu_ok(const struct ccvm_tdx_module *m, unsigned int cpu)
{
	return cpu < m->nr_cpus;
}

static inline bool hkid_ok(const struct ccvm_tdx_module *m, uint32_t hkid)
{
	return hkid >= CCVM_TDX_FIRST_HKID && hkid < CCVM_TDX_FIRST_HKID + m->nr_hkids;
}

static inline bool is_sw_status(uint64_t s)
{
	return (s & TDX_SW_ERROR) == TDX_SW_ERROR;
}

/*
 * The TD-scoped prologue: TDR lock, lifecycle, TDCS and op state.  @op_mask:
 * op states allowed (bit per state), 0 = do not check.  The op state only
 * changes under the TDR lock held exclusively, so the shared holders see a
 * stable one.  On success the lock is held; release it with td_leave().
 */
struct td_guard {
	bool tdr_excl;
	unsigned int slot;	/* of the TDR lock taken shared */
};

#define OPS(x)		(1u << CCVM_TDX_OP_##x)
#define OPS_BUILT	(OPS(INITIALIZED) | OPS(RUNNABLE))

static uint64_t td_enter(struct ccvm_tdx_td *td, struct td_guard *g, bool tdr_excl,
			 unsigned int op_mask)
{
	uint64_t st = TDX_SUCCESS;

	g->tdr_excl = tdr_excl;
	if (!td_lock_try(td, TDR_LOCK, tdr_excl, &g->slot, "tdr_lock"))
		return busy(CCVM_TDX_OPERAND_TDR);
	if (td_lifecycle(td) != CCVM_TDX_TD_KEYS_CONFIGURED)
		st = TDX_TD_KEYS_NOT_CONFIGURED;
	else if (op_mask && td->nr_tdcs < CCVM_TDX_NR_TDCS)
		st = TDX_TDCS_NOT_ALLOCATED;
	else if (op_mask && !(op_mask & (1u << td_op_state(td))))
		st = TDX_OP_STATE_INCORRECT;
	if (st)
		td_lock_release(td, TDR_LOCK, tdr_excl, g->slot, "tdr_lock");
	return st;
}

static void td_leave(struct ccvm_tdx_td *td, struct td_guard *g)
{
	td_lock_release(td, TDR_LOCK, g->tdr_excl, g->slot, "tdr_lock");
}

/* The global key (KOT) lock, always exclusive; kot_unlock() returns @st. */
static uint64_t kot_lock(struct ccvm_tdx_module *m)
{
	return sx_try(m, &m->key_lock, true, "key_lock") ? TDX_SUCCESS : busy(CCVM_TDX_OPERAND_KOT);
}

static uint64_t kot_unlock(struct ccvm_tdx_module *m, uint64_t st)
{
	sx_release(m, &m->key_lock, true, "key_lock");
	return st;
}

/* The key-management prologue: the KOT lock, then the TDR lock, both exclusive. */
static uint64_t key_enter(struct ccvm_tdx_td *td)
{
	uint64_t st = kot_lock(td->m);
	unsigned int slot;

	if (st)
		return st;
	if (!td_lock_try(td, TDR_LOCK, true, &slot, "tdr_lock"))
		return kot_unlock(td->m, busy(CCVM_TDX_OPERAND_TDR));
	return TDX_SUCCESS;
}

static uint64_t key_leave(struct ccvm_tdx_td *td, uint64_t st)
{
	td_lock_release(td, TDR_LOCK, true, 0, "tdr_lock");
	return kot_unlock(td->m, st);
}

/*
 * Private GPA of @td within [min_level, max_level], aligned to @align bytes
 * (0: to the size of @level).
 */
static bool gpa_ok(const struct ccvm_tdx_td *td, uint64_t gpa, int level, int min_level,
		   int max_level, uint64_t align)
{
	if (level < min_level || level > max_level)
		return false;
	if (gpa & ((align ? align : CCVM_PAGE_SIZE << (9 * level)) - 1))
		return false;
	if (gpa >> td->gpaw)
		return false;
	return !(gpa & td->shared_bit);
}

/*
 * Walk from the root to the entry of @level covering @gpa.  Every entry on
 * the way must be NL_MAPPED.  On failure *@entry is the entry where the walk
 * stopped and *@reached its level.
 */
static bool sept_walk(struct ccvm_tdx_td *td, uint64_t gpa, int level,
		      _Atomic uint64_t **entry, int *reached)
{
	struct ccvm_tdx_module *m = td->m;
	uint64_t pfn = td->root_pfn;
	int l;

	for (l = td->root_level;; l--) {
		_Atomic uint64_t *e = sept_page(m, pfn) + sept_index(gpa, l);
		uint64_t v;

		*entry = e;
		*reached = l;
		if (l == level)
			return true;
		v = atomic_load_explicit(e, memory_order_acquire);
		if (CCVM_TDX_SEPTE_STATE(v) != CCVM_TDX_SEPT_NL_MAPPED)
			return false;
		pfn = CCVM_TDX_SEPTE_PFN(v);
		/* Only a host write over an S-EPT page could get here. */
		if (!pfn_ok(m, pfn))
			return false;
	}
}

/*
 * BEPOCH tracked: a TRACK after the BLOCK and its epoch's vCPUs all gone.
 * Without a lock: while TD_EPOCH stays bepoch + 1, the count of bepoch's
 * parity only falls (entries count in the other parity), so a sum of 0 read
 * slot by slot is 0 at its end, and one above 0 was so at its start; the
 * epoch is read again after the sum, and a TRACK in between means bepoch
 * was tracked (TRACK needs the previous epoch's count at 0).
 */
static bool tlb_tracked(struct ccvm_tdx_td *td, uint64_t bepoch)
{
	uint64_t epoch = epoch_of(atomic_load(&td->epoch_word));
	uint64_t rc;

	if (bepoch + 1 < epoch)
		return true;
	if (bepoch + 1 != epoch)
		return false;
	rc = td_in_guest(td, bepoch & 1);
	if (epoch_of(atomic_load(&td->epoch_word)) != epoch)
		return true;
	return rc == 0;
}

static void td_measure(struct ccvm_tdx_td *td, uint64_t tag, const void *data, size_t len)
{
	const uint8_t *b = data;
	uint64_t h = mix64(td->mrtd ^ tag);
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, b + i, 8);
		h = mix64(h ^ w);
	}
	td->mrtd = h;
}

/* Host memory the model itself holds, reported to the platform. */
static void model_bytes(struct ccvm_tdx_module *m, int64_t delta)
{
	atomic_fetch_add_explicit(&m->model_bytes, (uint64_t)delta, memory_order_relaxed);
	ccvm_model_bytes(m->p, delta);
}

/*
 * The PAMT is a lazily backed array: a 4K page of it costs memory from the
 * first write to one of its entries.  Every page a TD gets passes through
 * pamt_lock_free_page() first, so that is where the growth is counted.
 */
static void pamt_note_touch(struct ccvm_tdx_module *m, uint64_t pfn)
{
	uint64_t page = pfn / (CCVM_PAGE_SIZE / sizeof(uint64_t));
	_Atomic uint64_t *w = &m->pamt_touched[page / 64];
	uint64_t bit = 1ull << (page % 64);

	if (atomic_load_explicit(w, memory_order_relaxed) & bit)
		return;
	if (!(atomic_fetch_or_explicit(w, bit, memory_order_relaxed) & bit))
		model_bytes(m, CCVM_PAGE_SIZE);
}

/*
 * Make a page donated as an S-EPT or control page all zero (FREE entries).
 * A page nobody wrote is zero already, but the host kernel is asked to
 * back it now, writable (MADV_POPULATE_WRITE; failing that, one write):
 * otherwise the next leaf's walk would map the shared zero page and the
 * first entry lock after it take a copy-on-write fault, with a TLB
 * shootdown to every CPU the process runs on, and where a host fault is
 * expensive (a guest under shadow paging) the system call is several
 * times cheaper than even one fault.  The simulated cost is the same.
 */
static void page_zero_if_dirty(struct ccvm_tdx_module *m, uint64_t pfn)
{
	void *page = ccvm_page_ptr(m->p, pfn);

	if (ccvm_page_is_dirty(m->p, pfn))
		memset(page, 0, CCVM_PAGE_SIZE);
	else if (madvise(page, CCVM_PAGE_SIZE, MADV_POPULATE_WRITE))
		atomic_store_explicit((_Atomic uint64_t *)page, 0, memory_order_relaxed);
}

/* Lock @pfn's PAMT entry: 0 with *@v its value, or busy for @operand. */
static uint64_t pamt_lock(struct ccvm_tdx_module *m, uint64_t pfn, uint32_t operand,
			  uint64_t *v)
{
	return word_trylock(m, pamt_entry(m, pfn), PAMT_LOCK, v, "pamt entry lock") ? TDX_SUCCESS : busy(operand);
}

/* Unlock PAMT entry @e with new value @v, keeping a poison bit set meanwhile. */
static void pamt_unlock_w(struct ccvm_tdx_module *m, _Atomic uint64_t *e, uint64_t v)
{
	uint64_t cur;

	lock_release(m, "pamt entry unlock");
	cur = atomic_load_explicit(e, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(e, &cur, (v & ~PAMT_LOCK) | (cur & PAMT_POISON),
						      memory_order_release, memory_order_relaxed))
		;
}

static void pamt_unlock(struct ccvm_tdx_module *m, uint64_t pfn, uint64_t v)
{
	pamt_unlock_w(m, pamt_entry(m, pfn), v);
}

/*
 * Count a page of @pfn's region as assigned at 4K, if the region allows it:
 * not assigned (or being assigned) at 2M and, with Dynamic PAMT and
 * @need_pair, holding a pair.  Return: 0, or the status for @operand with
 * nothing counted.
 */
static uint64_t region_reserve_4k(struct ccvm_tdx_module *m, uint64_t pfn, uint32_t operand,
				  bool need_pair)
{
	struct ccvm_tdx_pamt2m *r = region_of(m, pfn);
	uint64_t st = TDX_SUCCESS, v;

	atomic_fetch_add_explicit(&r->nr_4k, 1, memory_order_seq_cst);
	v = atomic_load_explicit(&r->v, memory_order_seq_cst);
	if (v & PAMT_LOCK)
		st = busy(operand);
	else if (pamt_type(v) != CCVM_TDX_PT_NDA)
		st = TDX_PAGE_METADATA_INCORRECT | operand;
	else if (need_pair && atomic_load_explicit(&m->dpamt, memory_order_relaxed) &&
		 !atomic_load_explicit(&r->pair[0], memory_order_acquire))
		st = TDX_MISSING_PAMT_PAGE_PAIR | operand;
	if (st)
		atomic_fetch_sub_explicit(&r->nr_4k, 1, memory_order_relaxed);
	return st;
}

static void region_unreserve_4k(struct ccvm_tdx_module *m, uint64_t pfn)
{
	atomic_fetch_sub_explicit(&region_of(m, pfn)->nr_4k, 1, memory_order_release);
}

/*
 * Lock @pfn's PAMT entry expecting PT_NDA.  Return: 0 with the entry locked,
 * or the status for @operand.
 */
static uint64_t pamt_lock_free_page_as(struct ccvm_tdx_module *m, uint64_t pfn,
				       uint32_t operand, bool need_pair)
{
	uint64_t st, v;

	if (!pfn_ok(m, pfn))
		return TDX_OPERAND_INVALID | operand;
	pamt_note_touch(m, pfn);
	if (!word_trylock(m, pamt_entry(m, pfn), PAMT_LOCK, &v, "pamt entry lock"))
		return busy(operand);
	if (pamt_type(v) != CCVM_TDX_PT_NDA) {
		pamt_unlock(m, pfn, v);
		return TDX_PAGE_METADATA_INCORRECT | operand;
	}
	st = region_reserve_4k(m, pfn, operand, need_pair);
	if (st)
		pamt_unlock(m, pfn, v);
	return st;
}

/* ... for a TD: with Dynamic PAMT the region needs its pair. */
static uint64_t pamt_lock_free_page(struct ccvm_tdx_module *m, uint64_t pfn, uint32_t operand)
{
	return pamt_lock_free_page_as(m, pfn, operand, true);
}

/* Unlock a page pamt_lock_free_page() locked, when the leaf fails after all. */
static void pamt_give_back(struct ccvm_tdx_module *m, uint64_t pfn)
{
	region_unreserve_4k(m, pfn);
	pamt_unlock(m, pfn, atomic_load_explicit(pamt_entry(m, pfn), memory_order_relaxed));
}

/*
 * Lock the 2M PAMT entry of the 2M page at @pfn expecting it PT_NDA with no
 * page of the region assigned at 4K.  Return: 0 with it locked, *@v its
 * value; or the status for @operand.
 */
static uint64_t pamt_lock_free_2m(struct ccvm_tdx_module *m, uint64_t pfn, uint32_t operand,
				  uint64_t *v)
{
	struct ccvm_tdx_pamt2m *r;

	if (!pfn_2m_ok(m, pfn))
		return TDX_OPERAND_INVALID | operand;
	r = region_of(m, pfn);
	if (!word_trylock(m, &r->v, PAMT_LOCK, v, "pamt 2m entry lock"))
		return busy(operand);
	ccvm_full_barrier();
	if (pamt_type(*v) != CCVM_TDX_PT_NDA ||
	    atomic_load_explicit(&r->nr_4k, memory_order_seq_cst)) {
		pamt_unlock_w(m, &r->v, *v);
		return TDX_PAGE_METADATA_INCORRECT | operand;
	}
	return TDX_SUCCESS;
}

/* Give a locked PT_NDA page to @td as @type (unlocks it). */
static void pamt_assign(struct ccvm_tdx_td *td, uint64_t pfn, unsigned int type, bool child)
{
	struct ccvm_tdx_module *m = td->m;

	lock_release(m, "pamt entry unlock");
	atomic_store_explicit(pamt_entry(m, pfn), pamt_make(type, td->slot, 0),
			      memory_order_release);
	module_assigned_add(m, 1);
	if (child)
		td_children_add(td, 1, memory_order_relaxed);
}

/* Return a locked page to PT_NDA (unlocks it; poison goes with the owner). */
static void pamt_release(struct ccvm_tdx_module *m, uint64_t pfn)
{
	lock_release(m, "pamt entry unlock");
	atomic_store_explicit(pamt_entry(m, pfn), 0, memory_order_release);
	module_assigned_add(m, -1);
	region_unreserve_4k(m, pfn);
}

/* Give the locked 2M page at @pfn to @td (unlocks its 2M entry). */
static void pamt_assign_2m(struct ccvm_tdx_td *td, uint64_t pfn)
{
	struct ccvm_tdx_module *m = td->m;

	lock_release(m, "pamt 2m entry unlock");
	atomic_store_explicit(&region_of(m, pfn)->v, pamt_make(CCVM_TDX_PT_REG, td->slot, 0),
			      memory_order_release);
	module_assigned_add(m, PAGES_2M);
	td_children_add(td, PAGES_2M, memory_order_relaxed);
}

/* Return the locked 2M page at @pfn to PT_NDA (unlocks it). */
static void pamt_release_2m(struct ccvm_tdx_module *m, uint64_t pfn)
{
	lock_release(m, "pamt 2m entry unlock");
	atomic_store_explicit(&region_of(m, pfn)->v, 0, memory_order_release);
	module_assigned_add(m, -(int64_t)PAGES_2M);
}

/*
 * The PAMT entry that describes @pfn: its 4K one, or the 2M one of its
 * region when the page is part of a 2M page (*@level, may be NULL, says).
 */
static _Atomic uint64_t *pamt_effective(struct ccvm_tdx_module *m, uint64_t pfn, int *level)
{
	_Atomic uint64_t *e = pamt_entry(m, pfn);
	_Atomic uint64_t *e2 = &region_of(m, pfn)->v;

	if (level)
		*level = CCVM_TDX_LEVEL_4K;
	if (pamt_type(atomic_load_explicit(e, memory_order_acquire)) == CCVM_TDX_PT_NDA &&
	    pamt_type(atomic_load_explicit(e2, memory_order_acquire)) != CCVM_TDX_PT_NDA) {
		if (level)
			*level = CCVM_TDX_LEVEL_2M;
		return e2;
	}
	return e;
}

/*
 * One call's operands by meaning (the real leaves take them in RCX, RDX, R8,
 * R9): the entry points fill those of their leaf, seamcall() the module, TD
 * and VM from the handle.  RECLAIM sets @vm to the page owner's.
 */
struct leaf_args {
	unsigned int leaf;
	struct ccvm_tdx_module *m;
	struct ccvm_vm *vm;		/* charged for the call */
	struct ccvm_tdx_td *td;
	struct ccvm_tdx_vp *vp;
	uint64_t gpa;
	int level;
	uint64_t pfn;			/* the page the leaf adds, removes or flushes */
	uint32_t keyid;			/* MNG.CREATE's HKID, WBINVD's KeyID */
	unsigned int cpu;		/* the host CPU the call runs on */
	bool resume;
	const void *src;
	const struct ccvm_tdx_td_params *params;

	struct ccvm_tdx_td **td_out;
	struct ccvm_tdx_vp **vp_out;
	uint64_t *pfn_out;
	uint64_t pair[CCVM_TDX_DPAMT_PAIR_PAGES];	/* PAMT.ADD's pages (RDX, R8) */
	uint64_t *pair_out[CCVM_TDX_DPAMT_PAIR_PAGES];	/* PAMT.REMOVE's */
	struct ccvm_tdx_sept_info *sept_info;
	struct ccvm_tdx_reclaim_info *reclaim_info;
};

/*
 * No operands: what the entry points of the leaves made per page (a dynamic
 * removal's BLOCK, TRACK, REMOVE, WBINVD; a teardown's RECLAIM; a fault's
 * PAGE.AUG; a guest's ACCEPT and the VP.ENTER after its fault) start from.
 * gcc clears a compound literal of this size with `rep stos`, whose
 * start-up cost was about 7% of a removal's time; a copy of this constant
 * is a few vector moves.
 */
static const struct leaf_args leaf_args_none;

static uint64_t seamcall(unsigned int nr, struct leaf_args *a);

/* Leaf @nr on @td with a GPA operand (BLOCK, UNBLOCK, REMOVE, SEPT.REMOVE; TRACK: none). */
static inline uint64_t seamcall_td_gpa(unsigned int nr, struct ccvm_tdx_td *td, uint64_t gpa,
				       int level, uint64_t *pfn_out)
{
	struct leaf_args a = leaf_args_none;

	a.td = td;
	a.gpa = gpa;
	a.level = level;
	a.pfn_out = pfn_out;
	return seamcall(nr, &a);
}

/* ---- module setup ----------------------------------------------------------- */

/* Words of the bitmap with one bit per 4K page of the PAMT. */
static size_t pamt_touched_words(const struct ccvm_tdx_module *m)
{
	uint64_t entries_per_page = CCVM_PAGE_SIZE / sizeof(uint64_t);
	uint64_t pages = (m->nr_pages + entries_per_page - 1) / entries_per_page;

	return (size_t)((pages + 63) / 64) + 1;
}

/* Give back the module's tables (any may be missing) and zero @m. */
static void module_free(struct ccvm_tdx_module *m)
{
	ccvm_table_unmap((void *)m->pamt, m->pamt_bytes ? m->pamt_bytes : CCVM_PAGE_SIZE);
	free(m->kot);
	free(m->hkid_pool);
	free(m->slots);
	free(m->inject);
	free((void *)m->pamt_touched);
	free(m->pamt2m);
	free(m->cpu);
	memset(m, 0, sizeof(*m));
}

/*
 * Per-CPU slots: one on a serial platform (the counts and locks are then
 * single words, as the explorer's schedules were recorded with), else one
 * per online host CPU, at most CCVM_TDX_CPU_SLOTS.
 */
static unsigned int host_cpu_slots(const struct ccvm_sched *s)
{
	long n = s ? 1 : sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > CCVM_TDX_CPU_SLOTS ? CCVM_TDX_CPU_SLOTS : (unsigned int)n;
}

unsigned int ccvm_tdx_cpu_slots(const struct ccvm_tdx_module *m)
{
	return m && m->nr_cpu_slots ? m->nr_cpu_slots : 1;
}

int ccvm_tdx_module_init(struct ccvm_platform *p, struct ccvm_tdx_module *m)
{
	uint32_t nr_keyids;

	if (!p || !m)
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	m->p = p;
	m->nr_pages = ccvm_platform_nr_pages(p);
	m->nr_cpus = ccvm_platform_nr_cpus(p);
	if (!m->nr_cpus)
		m->nr_cpus = 1;
	m->nr_packages = m->nr_cpus / 2;
	if (!m->nr_packages)
		m->nr_packages = 1;
	if (m->nr_packages > CCVM_TDX_MAX_PACKAGES)
		m->nr_packages = CCVM_TDX_MAX_PACKAGES;
	m->all_packages = m->nr_packages == 64 ? ~0ull : (1ull << m->nr_packages) - 1;
	nr_keyids = ccvm_platform_nr_keyids(p);
	m->nr_hkids = nr_keyids ? nr_keyids : CCVM_TDX_DEFAULT_NR_HKIDS;
	m->wb_steps = 1;
	m->secret = ccvm_platform_random(p);

	m->pamt_bytes = m->nr_pages * sizeof(uint64_t);
	m->pamt = ccvm_table_map(m->pamt_bytes ? m->pamt_bytes : CCVM_PAGE_SIZE);
	m->kot = calloc(CCVM_TDX_FIRST_HKID + m->nr_hkids, sizeof(*m->kot));
	m->hkid_pool = calloc(CCVM_TDX_FIRST_HKID + m->nr_hkids, 1);
	/* 1 MiB, mostly never touched: calloc hands out lazily zeroed pages. */
	m->slots = calloc(CCVM_TDX_MAX_TDS + 1, sizeof(*m->slots));
	m->inject = calloc(NR_LEAF_SLOTS, sizeof(*m->inject));
	m->pamt_touched = calloc(pamt_touched_words(m), sizeof(*m->pamt_touched));
	m->nr_2m = (m->nr_pages + PAGES_2M - 1) / PAGES_2M;
	m->pamt2m = ccvm_zalloc_lines((m->nr_2m ? m->nr_2m : 1) * sizeof(*m->pamt2m));
	m->sched = ccvm_platform_sched(p);
	m->nr_cpu_slots = host_cpu_slots(m->sched);
	m->cpu = ccvm_zalloc_lines(m->nr_cpu_slots * sizeof(*m->cpu));
	if (!m->pamt || !m->kot || !m->hkid_pool || !m->slots || !m->inject ||
	    !m->pamt_touched || !m->pamt2m || !m->cpu) {
		module_free(m);
		return -ENOMEM;
	}
	/* The slot table is calloc'ed lazily: counted per TD as slots fill. */
	model_bytes(m, (int64_t)((CCVM_TDX_FIRST_HKID + m->nr_hkids) *
				 (sizeof(*m->kot) + 1) +
				 NR_LEAF_SLOTS * sizeof(*m->inject) +
				 pamt_touched_words(m) * sizeof(*m->pamt_touched) +
				 m->nr_2m * sizeof(*m->pamt2m) +
				 m->nr_cpu_slots * sizeof(*m->cpu)));
	m->slot_hint = 1;
	ccvm_mutex_init(&m->pool_lock, m->sched, "tdx pool_lock");
	ccvm_mutex_init(&m->inject_lock, m->sched, "tdx inject_lock");
	m->initialized = true;
	return 0;
}

static void vp_free(struct ccvm_tdx_vp *vp)
{
	if (!vp)
		return;
	model_bytes(vp->td->m, -(int64_t)sizeof(*vp));
	free(vp);
}

static void vp_free_all(struct ccvm_tdx_td *td)
{
	struct ccvm_tdx_vp *vp, *next;

	for (vp = td->vps; vp; vp = next) {
		next = vp->next;
		vp_free(vp);
	}
	td->vps = NULL;
}

static void td_free(struct ccvm_tdx_td *td)
{
	vp_free_all(td);
	ccvm_mutex_destroy(&td->vp_list_lock);
	model_bytes(td->m, -(int64_t)(sizeof(*td) + sizeof(struct ccvm_tdx_slot)));
	free(td);
}

void ccvm_tdx_module_fini(struct ccvm_tdx_module *m)
{
	uint32_t i;

	if (!m || !m->initialized)
		return;
	/* Slots past the highest ever handed out were never touched. */
	for (i = 1; i <= m->slot_max; i++) {
		struct ccvm_tdx_td *td = atomic_load(&m->slots[i].td);

		if (td)
			td_free(td);
	}
	ccvm_model_bytes(m->p, -(int64_t)atomic_load(&m->model_bytes));
	ccvm_mutex_destroy(&m->pool_lock);
	ccvm_mutex_destroy(&m->inject_lock);
	module_free(m);
}

uint32_t ccvm_tdx_nr_packages(const struct ccvm_tdx_module *m)
{
	return m->nr_packages;
}

unsigned int ccvm_tdx_cpu_package(const struct ccvm_tdx_module *m, unsigned int cpu)
{
	unsigned int pkg = cpu / 2;

	return pkg < m->nr_packages ? pkg : m->nr_packages - 1;
}

uint32_t ccvm_tdx_nr_hkids(const struct ccvm_tdx_module *m)
{
	return m->nr_hkids;
}

int ccvm_tdx_set_cache_wb_steps(struct ccvm_tdx_module *m, uint32_t steps)
{
	if (!m || !steps)
		return -EINVAL;
	while (kot_lock(m)) {
		uint64_t seen = atomic_load_explicit(&m->key_lock, memory_order_relaxed);

		if (seen)
			ccvm_spin_wait(m->sched, &m->key_lock, seen, "key_lock");
	}
	m->wb_steps = steps;
	memset(m->wb_progress, 0, sizeof(m->wb_progress));
	return (int)kot_unlock(m, 0);
}

int ccvm_tdx_set_entry_lock_yields(struct ccvm_tdx_module *m, uint32_t yields)
{
	if (!m)
		return -EINVAL;
	atomic_store_explicit(&m->entry_lock_yields, yields, memory_order_relaxed);
	return 0;
}

int ccvm_tdx_set_entry_window(struct ccvm_tdx_module *m, bool on)
{
	if (!m)
		return -EINVAL;
	atomic_store_explicit(&m->entry_window, on, memory_order_relaxed);
	return 0;
}

/*
 * The end of a VP.ENTER's window: the vCPU runs guest code now (or an IPI
 * met it), so the entry lets go of the TD epoch lock.  Whoever ends it
 * first (the vCPU's thread, or a kicker) drops the lock, exactly once.
 */
static __attribute__((noinline)) void vp_entry_end(struct ccvm_tdx_vp *vp)
{
	uint64_t cur = VP_IN_GUEST | VP_ENTERING;
	/* This entry's: a next one needs the CAS below to have succeeded. */
	unsigned int slot = atomic_load_explicit(&vp->epoch_slot, memory_order_relaxed);

	if (atomic_compare_exchange_strong_explicit(&vp->run, &cur, VP_IN_GUEST,
						    memory_order_acq_rel, memory_order_acquire))
		td_lock_release(vp->td, EPOCH_LOCK, false, slot, "epoch_lock (entry done)");
}

/* Every guest access calls it: the common case (no window open) inline. */
static inline void vp_entry_done(struct ccvm_tdx_vp *vp)
{
	if (atomic_load_explicit(&vp->run, memory_order_acquire) == (VP_IN_GUEST | VP_ENTERING))
		vp_entry_end(vp);
}

/* The rest of a real leaf's latency, spent holding an S-EPT entry lock. */
static void entry_lock_hold(struct ccvm_tdx_module *m)
{
	uint32_t n = atomic_load_explicit(&m->entry_lock_yields, memory_order_relaxed);

	/* Serial: the window is one scheduling point, whatever its length. */
	if (m->sched) {
		if (n)
			ccvm_sched_point(m->sched, CCVM_SCHED_HW(m->sched), "sept entry held");
		return;
	}
	while (n--)
		sched_yield();
}

/* ---- host HKID pool ---------------------------------------------------------- */

int ccvm_tdx_hkid_alloc(struct ccvm_tdx_module *m, struct ccvm_vm *vm, uint32_t *hkid)
{
	uint32_t i;
	int err = -ENOSPC;

	if (!m || !hkid)
		return -EINVAL;
	lock_wait(&m->pool_lock);
	for (i = CCVM_TDX_FIRST_HKID; i < CCVM_TDX_FIRST_HKID + m->nr_hkids; i++) {
		if (m->hkid_pool[i] == POOL_FREE) {
			m->hkid_pool[i] = POOL_ALLOCATED;
			*hkid = i;
			err = 0;
			break;
		}
	}
	ccvm_mutex_unlock(&m->pool_lock);
	if (!err)
		ccvm_account(m->p, vm, CCVM_EV_KEYID_ALLOC, 1);
	return err;
}

int ccvm_tdx_hkid_free(struct ccvm_tdx_module *m, struct ccvm_vm *vm, uint32_t hkid)
{
	int err = 0;

	if (!m || !hkid_ok(m, hkid))
		return -EINVAL;
	lock_wait(&m->pool_lock);
	if (m->hkid_pool[hkid] != POOL_ALLOCATED)
		err = -EINVAL;
	else if (atomic_load_explicit(&m->kot[hkid].state, memory_order_acquire) != KOT_FREE)
		err = -EBUSY;
	else
		m->hkid_pool[hkid] = POOL_FREE;
	ccvm_mutex_unlock(&m->pool_lock);
	if (!err)
		ccvm_account(m->p, vm, CCVM_EV_KEYID_FREE, 1);
	return err;
}

void ccvm_tdx_hkid_leak(struct ccvm_tdx_module *m, struct ccvm_vm *vm, uint32_t hkid)
{
	bool leaked = false;

	if (!m || !hkid_ok(m, hkid))
		return;
	lock_wait(&m->pool_lock);
	if (m->hkid_pool[hkid] != POOL_LEAKED) {
		m->hkid_pool[hkid] = POOL_LEAKED;
		leaked = true;
	}
	ccvm_mutex_unlock(&m->pool_lock);
	if (leaked) {
		ccvm_account(m->p, vm, CCVM_EV_KEYID_LEAK, 1);
		ccvm_log(CCVM_LOG_INFO, "tdx: HKID %u leaked", hkid);
	}
}

uint32_t ccvm_tdx_hkids_in_use(struct ccvm_tdx_module *m)
{
	uint32_t i, n = 0;

	lock_wait(&m->pool_lock);
	for (i = CCVM_TDX_FIRST_HKID; i < CCVM_TDX_FIRST_HKID + m->nr_hkids; i++)
		n += m->hkid_pool[i] != POOL_FREE;
	ccvm_mutex_unlock(&m->pool_lock);
	return n;
}

/* ---- TD management ---------------------------------------------------------- */

static uint32_t slot_alloc(struct ccvm_tdx_module *m)
{
	uint32_t i, s;

	for (i = 0; i < CCVM_TDX_MAX_TDS; i++) {
		s = (m->slot_hint - 1 + i) % CCVM_TDX_MAX_TDS + 1;
		if (!atomic_load_explicit(&m->slots[s].td, memory_order_relaxed)) {
			m->slot_hint = s % CCVM_TDX_MAX_TDS + 1;
			if (s > m->slot_max)
				m->slot_max = s;
			return s;
		}
	}
	return 0;
}

/* Move KOT entry @k to @state, no write-back started or done (key lock held). */
static void kot_set(struct ccvm_tdx_kot_entry *k, enum kot_state state)
{
	k->wb_started = 0;
	k->wb_done = 0;
	atomic_store_explicit(&k->state, state, memory_order_release);
}

/* The TD's lifecycle changes under the TDR lock held exclusively. */
static void td_set_lifecycle(struct ccvm_tdx_td *td, enum ccvm_tdx_lifecycle lc)
{
	atomic_store_explicit(&td->lifecycle, lc, memory_order_relaxed);
}

static uint64_t mng_create(struct leaf_args *a)
{
	struct ccvm_tdx_module *m = a->m;
	uint64_t tdr_pfn = a->pfn;
	uint32_t hkid = a->keyid;
	struct ccvm_tdx_td *td;
	uint64_t st;
	uint32_t slot;

	if (!a->td_out || !pfn_ok(m, tdr_pfn))
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
	if (!hkid_ok(m, hkid))
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RDX;
	st = kot_lock(m);
	if (st)
		return st;
	st = pamt_lock_free_page(m, tdr_pfn, CCVM_TDX_OPERAND_RCX);
	if (st)
		return kot_unlock(m, st);
	if (atomic_load_explicit(&m->kot[hkid].state, memory_order_relaxed) != KOT_FREE) {
		st = TDX_HKID_NOT_FREE | CCVM_TDX_OPERAND_RDX;
		goto out_pamt;
	}
	td = ccvm_zalloc_lines(sizeof(*td));
	lock_wait(&m->pool_lock);
	slot = td ? slot_alloc(m) : 0;
	if (slot)
		atomic_store_explicit(&m->slots[slot].td, td, memory_order_release);
	ccvm_mutex_unlock(&m->pool_lock);
	if (!slot) {
		free(td);
		st = CCVM_TDX_SW_NOMEM;
		goto out_pamt;
	}
	td->m = m;
	td->nr_cpu = m->nr_cpu_slots;
	model_bytes(m, (int64_t)(sizeof(*td) + sizeof(struct ccvm_tdx_slot)));
	atomic_init(&td->vm, a->vm);
	td->tdr_pfn = tdr_pfn;
	td->slot = slot;
	td->hkid = hkid;
	atomic_init(&td->lifecycle, CCVM_TDX_TD_HKID_ASSIGNED);
	atomic_init(&td->op_state, CCVM_TDX_OP_UNINITIALIZED);
	atomic_init(&td->epoch_word, 1ull << EPOCH_SHIFT);
	ccvm_mutex_init(&td->vp_list_lock, m->sched, "vp_list_lock");
	atomic_store_explicit(&m->slots[slot].key,
			      mix64(m->secret ^ ((uint64_t)hkid << 40) ^ ++m->td_serial),
			      memory_order_relaxed);
	m->kot[hkid].slot = slot;
	kot_set(&m->kot[hkid], KOT_ASSIGNED);
	pamt_assign(td, tdr_pfn, CCVM_TDX_PT_TDR, false);
	*a->td_out = td;
	return kot_unlock(m, TDX_SUCCESS);

out_pamt:
	pamt_give_back(m, tdr_pfn);
	return kot_unlock(m, st);
}

static uint64_t mng_key_config(struct leaf_args *a)
{
	struct ccvm_tdx_td *td = a->td;
	struct ccvm_tdx_module *m = td->m;
	uint64_t st, bit;

	if (!cpu_ok(m, a->cpu))
		return TDX_OPERAND_INVALID;
	st = key_enter(td);
	if (st)
		return st;
	bit = 1ull << ccvm_tdx_cpu_package(m, a->cpu);
	if (td_lifecycle(td) != CCVM_TDX_TD_HKID_ASSIGNED) {
		st = TDX_LIFECYCLE_STATE_INCORRECT;
	} else if (td->pkg_configured & bit) {
		st = TDX_KEY_CONFIGURED;
	} else {
		td->pkg_configured |= bit;
		if (td->pkg_configured == m->all_packages)
			td_set_lifecycle(td, CCVM_TDX_TD_KEYS_CONFIGURED);
	}
	return key_leave(td, st);
}

static uint64_t mng_addcx(struct leaf_args *a)
{
	struct ccvm_tdx_td *td = a->td;
	struct td_guard g;
	uint64_t st = td_enter(td, &g, true, 0);

	if (st)
		return st;
	if (td->nr_tdcs >= CCVM_TDX_NR_TDCS)
		st = TDX_TDCX_NUM_INCORRECT | CCVM_TDX_OPERAND_RCX;
	else
		st = pamt_lock_free_page(a->m, a->pfn, CCVM_TDX_OPERAND_RCX);
	if (!st && td->nr_tdcs == CCVM_TDX_TDCS_SEPT_ROOT) {
		/* The S-EPT root: all entries FREE before anyone walks it. */
		page_zero_if_dirty(a->m, a->pfn);
		ccvm_page_mark_dirty(a->m->p, a->pfn);
	}
	if (!st) {
		td->tdcs_pfn[td->nr_tdcs++] = a->pfn;
		pamt_assign(td, a->pfn, CCVM_TDX_PT_TDCX, true);
	}
	td_leave(td, &g);
	return st;
}

static uint64_t mng_init(struct leaf_args *a)
{
	const struct ccvm_tdx_td_params *params = a->params;
	struct ccvm_tdx_td *td = a->td;
	struct td_guard g;
	uint64_t st;

	st = td_enter(td, &g, true, 0);
	if (st)
		return st;
	if (td->nr_tdcs < CCVM_TDX_NR_TDCS) {
		st = TDX_TDCS_NOT_ALLOCATED;
	} else if (td_op_state(td) != CCVM_TDX_OP_UNINITIALIZED) {
		st = TDX_OP_STATE_INCORRECT;
	} else if (!params) {
		st = TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RDX;
	} else if (params->attributes & ~CCVM_TDX_ATTR_SEPT_VE_DISABLE) {
		st = TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_ATTRIBUTES;
	} else if (params->gpaw != 48 && params->gpaw != 52) {
		st = TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_EXEC_CONTROLS;
	} else if (!params->max_vcpus || params->max_vcpus > CCVM_TDX_MAX_VCPUS) {
		st = TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_MAX_VCPUS;
	} else {
		td->gpaw = params->gpaw;
		td->shared_bit = 1ull << (params->gpaw - 1);
		td->root_level = params->gpaw == 52 ? CCVM_TDX_LEVEL_256T : CCVM_TDX_LEVEL_512G;
		td->root_pfn = td->tdcs_pfn[CCVM_TDX_TDCS_SEPT_ROOT];
		td->attributes = params->attributes;
		td->max_vcpus = params->max_vcpus;
		atomic_store_explicit(&td->op_state, CCVM_TDX_OP_INITIALIZED, memory_order_relaxed);
	}
	td_leave(td, &g);
	return st;
}

static uint64_t mr_finalize(struct leaf_args *a)
{
	struct ccvm_tdx_td *td = a->td;
	struct td_guard g;
	uint64_t st;

	st = td_enter(td, &g, true, OPS(INITIALIZED));
	if (st)
		return st;
	td->mrtd = mix64(td->mrtd ^ 0x46494e414c495a45ull);
	atomic_store_explicit(&td->op_state, CCVM_TDX_OP_RUNNABLE, memory_order_relaxed);
	td_leave(td, &g);
	return TDX_SUCCESS;
}

static uint64_t mng_vpflushdone(struct leaf_args *a)
{
	struct ccvm_tdx_td *td = a->td;
	uint64_t st;
	int lc;

	st = key_enter(td);
	if (st)
		return st;
	lc = td_lifecycle(td);
	if (lc != CCVM_TDX_TD_HKID_ASSIGNED && lc != CCVM_TDX_TD_KEYS_CONFIGURED) {
		st = TDX_LIFECYCLE_STATE_INCORRECT;
	} else if (atomic_load_explicit(&td->nr_assoc, memory_order_acquire)) {
		st = TDX_FLUSHVP_NOT_DONE;
	} else {
		kot_set(&td->m->kot[td->hkid], KOT_RECLAIMED);
		td_set_lifecycle(td, CCVM_TDX_TD_BLOCKED);
	}
	return key_leave(td, st);
}

static uint64_t cache_wb(struct leaf_args *a)
{
	struct ccvm_tdx_module *m = a->m;
	unsigned int pkg;
	uint64_t bit, st;
	uint32_t i, first = CCVM_TDX_FIRST_HKID, end = CCVM_TDX_FIRST_HKID + m->nr_hkids;
	bool pending = false;

	if (!cpu_ok(m, a->cpu))
		return TDX_OPERAND_INVALID;
	st = kot_lock(m);
	if (st)
		return st;
	pkg = ccvm_tdx_cpu_package(m, a->cpu);
	bit = 1ull << pkg;
	if (a->resume && !m->wb_progress[pkg]) {
		st = TDX_WBCACHE_RESUME_ERROR;
		goto out;
	}
	if (!a->resume) {
		/* A new write-back covers the HKIDs reclaimed by now. */
		m->wb_progress[pkg] = 0;
		for (i = first; i < end; i++) {
			struct ccvm_tdx_kot_entry *k = &m->kot[i];

			k->wb_started &= ~bit;
			if (atomic_load_explicit(&k->state, memory_order_relaxed) == KOT_RECLAIMED &&
			    !(k->wb_done & bit)) {
				k->wb_started |= bit;
				pending = true;
			}
		}
		if (!pending) {
			st = TDX_NO_HKID_READY_TO_WBCACHE;
			goto out;
		}
	}
	if (++m->wb_progress[pkg] < m->wb_steps) {
		st = TDX_INTERRUPTED_RESUMABLE;
		goto out;
	}
	m->wb_progress[pkg] = 0;
	for (i = first; i < end; i++) {
		struct ccvm_tdx_kot_entry *k = &m->kot[i];

		if (k->wb_started & bit) {
			k->wb_started &= ~bit;
			if (atomic_load_explicit(&k->state, memory_order_relaxed) == KOT_RECLAIMED)
				k->wb_done |= bit;
		}
	}
out:
	return kot_unlock(m, st);
}

static uint64_t mng_key_freeid(struct leaf_args *a)
{
	struct ccvm_tdx_td *td = a->td;
	struct ccvm_tdx_module *m = td->m;
	struct ccvm_tdx_kot_entry *k = &m->kot[td->hkid];
	uint64_t st;

	st = key_enter(td);
	if (st)
		return st;
	if (td_lifecycle(td) != CCVM_TDX_TD_BLOCKED) {
		st = TDX_LIFECYCLE_STATE_INCORRECT;
	} else if ((k->wb_done & m->all_packages) != m->all_packages) {
		st = TDX_WBCACHE_NOT_COMPLETE;
	} else {
		k->slot = 0;
		kot_set(k, KOT_FREE);
		td_set_lifecycle(td, CCVM_TDX_TD_TEARDOWN);
	}
	return key_leave(td, st);
}

/* ---- vCPUs --------------------------------------------------------------------- */

static uint64_t vp_create(struct leaf_args *a)
{
	struct ccvm_tdx_td *td = a->td;
	struct ccvm_tdx_module *m = td->m;
	struct ccvm_tdx_vp *vp;
	struct td_guard g;
	uint64_t st;

	if (!a->vp_out)
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
	st = td_enter(td, &g, false, OPS_BUILT);
	if (st)
		return st;
	st = pamt_lock_free_page(m, a->pfn, CCVM_TDX_OPERAND_RCX);
	if (st)
		goto out;
	vp = calloc(1, sizeof(*vp));
	if (!vp) {
		pamt_give_back(m, a->pfn);
		st = CCVM_TDX_SW_NOMEM;
		goto out;
	}
	vp->td = td;
	model_bytes(td->m, (int64_t)sizeof(*vp));
	vp->tdvpr_pfn = a->pfn;
	atomic_init(&vp->cpu, -1);
	lock_wait(&td->vp_list_lock);
	vp->next = td->vps;
	td->vps = vp;
	ccvm_mutex_unlock(&td->vp_list_lock);
	pamt_assign(td, a->pfn, CCVM_TDX_PT_TDVPR, true);
	*a->vp_out = vp;
out:
	td_leave(td, &g);
	return st;
}

/*
 * The vCPU prologue: the TD's (td_enter(), TDR lock shared), then the TDVPR
 * lock.  Undone by vp_leave().
 */
static uint64_t vp_lock(struct ccvm_tdx_vp *vp, struct td_guard *g, unsigned int op_mask)
{
	uint64_t st = td_enter(vp->td, g, false, op_mask);

	if (st)
		return st;
	if (!vp_trylock(vp)) {
		td_leave(vp->td, g);
		return busy(CCVM_TDX_OPERAND_TDVPR);
	}
	return TDX_SUCCESS;
}

static uint64_t vp_leave(struct ccvm_tdx_vp *vp, struct td_guard *g, uint64_t st)
{
	vp_unlock(vp);
	td_leave(vp->td, g);
	return st;
}

static uint64_t vp_addcx(struct leaf_args *a)
{
	struct ccvm_tdx_vp *vp = a->vp;
	struct td_guard g;
	uint64_t st;

	st = vp_lock(vp, &g, OPS_BUILT);
	if (st)
		return st;
	if (atomic_load_explicit(&vp->initialized, memory_order_relaxed))
		st = TDX_VCPU_STATE_INCORRECT;
	else if (vp->nr_tdcx >= CCVM_TDX_NR_TDCX)
		st = TDX_TDCX_NUM_INCORRECT | CCVM_TDX_OPERAND_RCX;
	else
		st = pamt_lock_free_page(a->m, a->pfn, CCVM_TDX_OPERAND_RCX);
	if (!st) {
		vp->tdcx_pfn[vp->nr_tdcx++] = a->pfn;
		pamt_assign(a->td, a->pfn, CCVM_TDX_PT_TDCX, true);
	}
	return vp_leave(vp, &g, st);
}

/* Associate @vp with @cpu (TDVPR lock held).  Return: 0 or VCPU_ASSOCIATED. */
static uint64_t vp_associate(struct ccvm_tdx_vp *vp, unsigned int cpu)
{
	int cur = atomic_load_explicit(&vp->cpu, memory_order_relaxed);

	if (cur == (int)cpu)
		return TDX_SUCCESS;
	if (cur >= 0)
		return TDX_VCPU_ASSOCIATED;
	atomic_store_explicit(&vp->cpu, (int)cpu, memory_order_relaxed);
	atomic_fetch_add_explicit(&vp->td->nr_assoc, 1, memory_order_release);
	return TDX_SUCCESS;
}

/* Count one more initialised vCPU of @td, unless max_vcpus are already. */
static bool vp_count_init(struct ccvm_tdx_td *td)
{
	uint32_t n = atomic_load_explicit(&td->nr_vcpus_init, memory_order_relaxed);

	do {
		if (n >= td->max_vcpus)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&td->nr_vcpus_init, &n, n + 1,
							memory_order_relaxed,
							memory_order_relaxed));
	return true;
}

static uint64_t vp_init(struct leaf_args *a)
{
	struct ccvm_tdx_vp *vp = a->vp;
	struct td_guard g;
	uint64_t st;

	if (!cpu_ok(a->m, a->cpu))
		return TDX_OPERAND_INVALID;
	st = vp_lock(vp, &g, OPS_BUILT);
	if (st)
		return st;
	if (vp->nr_tdcx < CCVM_TDX_NR_TDCX) {
		st = TDX_TDCX_NUM_INCORRECT | CCVM_TDX_OPERAND_RCX;
	} else if (atomic_load_explicit(&vp->initialized, memory_order_relaxed)) {
		st = TDX_VCPU_STATE_INCORRECT;
	} else if (!vp_count_init(a->td)) {
		st = TDX_MAX_VCPUS_EXCEEDED;
	} else {
		st = vp_associate(vp, a->cpu);
		if (st)
			atomic_fetch_sub_explicit(&a->td->nr_vcpus_init, 1, memory_order_relaxed);
		else
			atomic_store_explicit(&vp->initialized, true, memory_order_relaxed);
	}
	return vp_leave(vp, &g, st);
}

/* On success the vCPU keeps its TDVPR lock: it is in the guest. */
static uint64_t vp_enter(struct leaf_args *a)
{
	struct ccvm_tdx_vp *vp = a->vp;
	struct ccvm_tdx_td *td = a->td;
	struct td_guard g;
	unsigned int slot;
	uint64_t st;
	bool entering;

	if (!cpu_ok(a->m, a->cpu))
		return TDX_OPERAND_INVALID;
	st = vp_lock(vp, &g, OPS(RUNNABLE));
	if (st)
		return st;
	if (!atomic_load_explicit(&vp->initialized, memory_order_relaxed))
		st = TDX_VCPU_STATE_INCORRECT;
	else
		st = vp_associate(vp, a->cpu);
	if (!st && !td_lock_try(td, EPOCH_LOCK, false, &slot, "epoch_lock"))
		st = busy(CCVM_TDX_OPERAND_TD_EPOCH);
	if (st)
		return vp_leave(vp, &g, st);
	/* TRACK needs the epoch lock exclusively: the epoch is stable here. */
	vp->epoch = epoch_of(atomic_load_explicit(&td->epoch_word, memory_order_relaxed));
	atomic_fetch_add(&td_cpu_here(td)->in_guest[vp->epoch & 1], 1);
	/* With the entry window, the epoch lock goes at vp_entry_done(). */
	entering = atomic_load_explicit(&td->m->entry_window, memory_order_relaxed);
	if (!entering)
		td_lock_release(td, EPOCH_LOCK, false, slot, "epoch_lock");
	else
		atomic_store_explicit(&vp->epoch_slot, slot, memory_order_relaxed);
	lock_release(td->m, "tdvpr unlock");
	atomic_store_explicit(&vp->run, entering ? VP_IN_GUEST | VP_ENTERING : VP_IN_GUEST,
			      memory_order_release);
	td_leave(td, &g);
	return TDX_SUCCESS;
}

void ccvm_tdx_vp_exit(struct ccvm_tdx_vp *vp)
{
	uint64_t cur;

	if (!vp)
		return;
	/*
	 * Keep the TDVPR lock until the epoch count is dropped: a VP.FLUSH or
	 * VP.ENTER that finds the vCPU idle finds it out of its epoch too.  A
	 * kicker that finds the lock held (an exit or an entry in flight on
	 * the vCPU's thread) waits for it: a TRACK or REMOVE after the kick
	 * must not see the vCPU in the epoch it is leaving.
	 */
	for (;;) {
		ccvm_sched_point(vp->td->m->sched, CCVM_SCHED_HW(vp->td->m->sched), "tdvpr exit");
		cur = atomic_load_explicit(&vp->run, memory_order_acquire);
		if (cur == VP_IDLE)
			return;
		if (cur & VP_ENTERING) {
			/* The IPI lands as the entry completes: it ends first. */
			vp_entry_done(vp);
			continue;
		}
		if (cur & VP_BUSY) {
			ccvm_spin_wait(vp->td->m->sched, &vp->run, cur, "tdvpr lock");
			continue;
		}
		if (lock_try(vp->td->m, &vp->run, ~0ull, VP_IN_GUEST, VP_BUSY, NULL, "tdvpr lock"))
			break;
	}
	/* The try of the TDVPR lock just before is the epoch count's point. */
	atomic_fetch_sub_explicit(&td_cpu_here(vp->td)->in_guest[vp->epoch & 1], 1,
				  memory_order_release);
	lock_release(vp->td->m, "tdvpr unlock");
	atomic_store_explicit(&vp->run, VP_IDLE, memory_order_release);
}

static uint64_t vp_flush(struct leaf_args *a)
{
	struct ccvm_tdx_vp *vp = a->vp;
	struct ccvm_tdx_td *td = vp->td;
	uint64_t st = TDX_SUCCESS;
	unsigned int slot;
	int lc, cur;

	if (!cpu_ok(td->m, a->cpu))
		return TDX_OPERAND_INVALID;
	if (!td_lock_try(td, TDR_LOCK, false, &slot, "tdr_lock"))
		return busy(CCVM_TDX_OPERAND_TDR);
	lc = td_lifecycle(td);
	if (lc != CCVM_TDX_TD_HKID_ASSIGNED && lc != CCVM_TDX_TD_KEYS_CONFIGURED) {
		st = TDX_LIFECYCLE_STATE_INCORRECT;
		goto out;
	}
	if (!vp_trylock(vp)) {
		st = busy(CCVM_TDX_OPERAND_TDVPR);
		goto out;
	}
	cur = atomic_load_explicit(&vp->cpu, memory_order_relaxed);
	if (cur < 0) {
		st = TDX_VCPU_NOT_ASSOCIATED;
	} else if (cur != (int)a->cpu) {
		st = TDX_VCPU_ASSOCIATED;
	} else {
		atomic_store_explicit(&vp->cpu, -1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&td->nr_assoc, 1, memory_order_release);
	}
	vp_unlock(vp);
out:
	td_lock_release(td, TDR_LOCK, false, slot, "tdr_lock");
	return st;
}

/* ---- S-EPT leaves ----------------------------------------------------------- */

/*
 * How each S-EPT leaf on the TD gets at its entry (the lock list in
 * tdx-module.h says why): the op states it needs, whether it holds the TDR
 * and S-EPT tree locks exclusively (EX) or shared (SH), the levels its GPA
 * operand may name (ROOT: the TD's root level), the GPA alignment when not
 * the level's size, and whether it needs a source page (R9).
 */
struct sept_gate {
	unsigned int ops;
	bool tdr_excl;
	bool tree_excl;
	int min_level;
	int max_level;
	uint64_t align;
	bool src;
};

#define SH	false
#define EX	true
#define L4K	CCVM_TDX_LEVEL_4K
#define L2M	CCVM_TDX_LEVEL_2M
#define ROOT	(-1)

static const struct sept_gate sept_gates[NR_TDH_LEAVES] = {
	/*				  op states	    TDR tree levels	align src */
	[CCVM_TDH_MEM_SEPT_ADD]		= { OPS_BUILT,	      SH, SH, L2M, ROOT, 0,	false },
	[CCVM_TDH_MEM_PAGE_ADD]		= { OPS(INITIALIZED), EX, SH, L4K, L4K,	 0,	true },
	[CCVM_TDH_MR_EXTEND]		= { OPS(INITIALIZED), EX, SH, L4K, L4K,	 256,	false },
	[CCVM_TDH_MEM_PAGE_AUG]		= { OPS(RUNNABLE),    SH, SH, L4K, L2M,	 0,	false },
	[CCVM_TDH_MEM_PAGE_DEMOTE]	= { OPS_BUILT,	      SH, SH, L2M, L2M,	 0,	false },
	[CCVM_TDH_MEM_RANGE_BLOCK]	= { OPS_BUILT,	      SH, EX, L4K, ROOT, 0,	false },
	[CCVM_TDH_MEM_PAGE_REMOVE]	= { OPS_BUILT,	      SH, EX, L4K, L2M,	 0,	false },
	[CCVM_TDH_MEM_SEPT_RD]		= { OPS_BUILT,	      SH, SH, L4K, ROOT, 0,	false },
	[CCVM_TDH_MEM_SEPT_REMOVE]	= { OPS_BUILT,	      SH, EX, L2M, ROOT, 0,	false },
	[CCVM_TDH_MEM_RANGE_UNBLOCK]	= { OPS_BUILT,	      SH, EX, L4K, ROOT, 0,	false },
};

/* An S-EPT leaf in flight: the locks it holds and the entry it works on. */
struct sept_op {
	struct ccvm_tdx_td *td;
	const struct sept_gate *gate;
	struct td_guard g;
	unsigned int tree_slot;	/* of the tree lock taken shared */
	bool locked;		/* TDR and tree locks held */
	_Atomic uint64_t *e;	/* the entry asked for, or where the walk stopped */
	int reached;		/* its level */
	uint64_t v;		/* its value after the walk, */
	unsigned int state;	/* state */
	uint64_t pfn;		/* and pfn */
};

/*
 * sept_lookup() - The start of an S-EPT leaf on the TD, as its row of
 * sept_gates[] says: the TD's state and TDR lock (td_enter()), the S-EPT tree
 * lock, the GPA operand, the walk to the entry of a->level covering a->gpa.
 * Whatever it returns, the leaf ends with sept_done().
 * Return: TDX_SUCCESS, op->e the entry; EPT_WALK_FAILED|RCX, op->e the entry
 * where the walk stopped; else the status that stopped it, op->e NULL.
 */
static uint64_t sept_lookup(struct sept_op *op, struct leaf_args *a)
{
	const struct sept_gate *gate = &sept_gates[a->leaf];
	struct ccvm_tdx_td *td = a->td;
	uint64_t st;
	bool found;

	*op = (struct sept_op){ .td = td, .gate = gate };
	st = td_enter(td, &op->g, gate->tdr_excl, gate->ops);
	if (st)
		return st;
	if (!td_lock_try(td, SEPT_LOCK, gate->tree_excl, &op->tree_slot, "sept_lock")) {
		td_leave(td, &op->g);
		return busy(CCVM_TDX_OPERAND_SEPT);
	}
	op->locked = true;
	if (!gpa_ok(td, a->gpa, a->level, gate->min_level,
		    gate->max_level == ROOT ? td->root_level : gate->max_level, gate->align))
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
	if (gate->src && !a->src)
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_R9;
	found = sept_walk(td, a->gpa, a->level, &op->e, &op->reached);
	op->v = atomic_load_explicit(op->e, memory_order_acquire);
	op->state = CCVM_TDX_SEPTE_STATE(op->v);
	op->pfn = CCVM_TDX_SEPTE_PFN(op->v);
	return found ? TDX_SUCCESS : TDX_EPT_WALK_FAILED | CCVM_TDX_OPERAND_RCX;
}

#undef SH
#undef EX
#undef L4K
#undef L2M
#undef ROOT

/* Release what sept_lookup() took; return @st. */
static uint64_t sept_done(struct sept_op *op, uint64_t st)
{
	if (op->locked) {
		td_lock_release(op->td, SEPT_LOCK, op->gate->tree_excl, op->tree_slot, "sept_lock");
		td_leave(op->td, &op->g);
	}
	return st;
}

/*
 * Lock S-EPT entry @e for a change under the shared tree lock; *@v gets its
 * value.  Return: 0, or OPERAND_BUSY|RCX when another leaf holds it.
 */
static uint64_t sept_entry_lock(struct ccvm_tdx_module *m, _Atomic uint64_t *e, uint64_t *v)
{
	if (!word_trylock(m, e, SEPTE_LOCK, v, "sept entry lock"))
		return busy(CCVM_TDX_OPERAND_RCX);
	entry_lock_hold(m);
	return TDX_SUCCESS;
}

static void sept_entry_unlock(const struct ccvm_tdx_module *m, _Atomic uint64_t *e, uint64_t v)
{
	lock_release(m, "sept entry unlock");
	atomic_store_explicit(e, v & ~SEPTE_LOCK, memory_order_release);
}

/*
 * SEPT.ADD, PAGE.ADD, PAGE.AUG: the FREE entry at the GPA gets page a->pfn
 * (R8), which the TD owns from now on: an S-EPT page linked NL_MAPPED, a copy
 * of a->src MAPPED and measured, or a PENDING page for the guest to accept.
 */
static uint64_t sept_fill(struct leaf_args *a)
{
	struct ccvm_tdx_module *m = a->m;
	unsigned int type = CCVM_TDX_PT_REG, state = CCVM_TDX_SEPT_PENDING;
	bool link = a->leaf == CCVM_TDH_MEM_SEPT_ADD;
	bool huge = !link && a->level == CCVM_TDX_LEVEL_2M;
	struct sept_op op;
	uint64_t st, v, pv;

	st = sept_lookup(&op, a);
	if (!st)
		st = sept_entry_lock(m, op.e, &v);
	if (st)
		return sept_done(&op, st);
	if (CCVM_TDX_SEPTE_STATE(v) != CCVM_TDX_SEPT_FREE)
		st = (link ? TDX_EPT_ENTRY_NOT_FREE : TDX_EPT_ENTRY_STATE_INCORRECT) |
		     CCVM_TDX_OPERAND_RCX;
	else if (huge)
		st = pamt_lock_free_2m(m, a->pfn, CCVM_TDX_OPERAND_R8, &pv);
	else
		st = pamt_lock_free_page(m, a->pfn, CCVM_TDX_OPERAND_R8);
	if (!st && link) {
		/* Every entry FREE before the link makes the page reachable. */
		page_zero_if_dirty(m, a->pfn);
		ccvm_page_mark_dirty(m->p, a->pfn);
		type = CCVM_TDX_PT_EPT;
		state = CCVM_TDX_SEPT_NL_MAPPED;
	} else if (!st && a->leaf == CCVM_TDH_MEM_PAGE_ADD) {
		ccvm_page_mark_dirty(m->p, a->pfn);
		memcpy(ccvm_page_ptr(m->p, a->pfn), a->src, CCVM_PAGE_SIZE);
		td_measure(a->td, 0x4d454d2e41444400ull, &a->gpa, sizeof(a->gpa));
		state = CCVM_TDX_SEPT_MAPPED;
	}
	if (!st) {
		if (huge)
			pamt_assign_2m(a->td, a->pfn);
		else
			pamt_assign(a->td, a->pfn, type, true);
		v = septe_make(state, a->pfn);
	}
	sept_entry_unlock(m, op.e, v);
	return sept_done(&op, st);
}

static uint64_t mr_extend(struct leaf_args *a)
{
	struct sept_op op;
	uint64_t st;

	st = sept_lookup(&op, a);
	if (st)
		return sept_done(&op, st);
	if (op.state != CCVM_TDX_SEPT_MAPPED)
		return sept_done(&op, TDX_EPT_ENTRY_STATE_INCORRECT | CCVM_TDX_OPERAND_RCX);
	td_measure(a->td, a->gpa,
		   (const uint8_t *)ccvm_page_ptr(a->m->p, op.pfn) +
		   (a->gpa & (CCVM_PAGE_SIZE - 1)), 256);
	return sept_done(&op, TDX_SUCCESS);
}

/* What BLOCK and UNBLOCK turn each state into; FREE: not from that state. */
static const uint8_t sept_blocked[SEPTE_STATE_MASK + 1] = {
	[CCVM_TDX_SEPT_MAPPED]		= CCVM_TDX_SEPT_BLOCKED,
	[CCVM_TDX_SEPT_PENDING]		= CCVM_TDX_SEPT_PENDING_BLOCKED,
	[CCVM_TDX_SEPT_NL_MAPPED]	= CCVM_TDX_SEPT_NL_BLOCKED,
};

static const uint8_t sept_unblocked[SEPTE_STATE_MASK + 1] = {
	[CCVM_TDX_SEPT_BLOCKED]		= CCVM_TDX_SEPT_MAPPED,
	[CCVM_TDX_SEPT_PENDING_BLOCKED]	= CCVM_TDX_SEPT_PENDING,
	[CCVM_TDX_SEPT_NL_BLOCKED]	= CCVM_TDX_SEPT_NL_MAPPED,
};

/* A blocked page with BEPOCH @bepoch may go: tracked, or the TD never ran. */
static bool sept_tracked(struct ccvm_tdx_td *td, uint64_t bepoch)
{
	/* Before finalize no vCPU ever ran: no TLB can hold the page. */
	return td_op_state(td) != CCVM_TDX_OP_RUNNABLE || tlb_tracked(td, bepoch);
}

/* True when the entry an S-EPT leaf found is a 2M leaf. */
static bool op_huge(const struct sept_op *op)
{
	return op->reached == CCVM_TDX_LEVEL_2M && sept_is_leaf(op->state);
}

/* The PAMT entry of what the entry maps: a 2M page's is its 2M entry. */
static _Atomic uint64_t *op_pamt(struct ccvm_tdx_module *m, const struct sept_op *op)
{
	return op_huge(op) ? &region_of(m, op->pfn)->v : pamt_entry(m, op->pfn);
}

static uint64_t op_pamt_lock(struct ccvm_tdx_module *m, const struct sept_op *op, uint64_t *pv)
{
	return word_trylock(m, op_pamt(m, op), PAMT_LOCK, pv, "pamt entry lock") ? TDX_SUCCESS :
	       busy(CCVM_TDX_OPERAND_RCX);
}

/* Under the exclusive tree lock no entry lock is held and no entry changes. */
static uint64_t range_block(struct leaf_args *a)
{
	struct sept_op op;
	uint64_t st, pv;

	st = sept_lookup(&op, a);
	if (!st && !sept_blocked[op.state])
		st = (sept_is_blocked(op.state) ? TDX_GPA_RANGE_ALREADY_BLOCKED :
		      TDX_EPT_ENTRY_STATE_INCORRECT) | CCVM_TDX_OPERAND_RCX;
	if (!st)
		st = op_pamt_lock(a->m, &op, &pv);
	if (st)
		return sept_done(&op, st);
	atomic_store_explicit(op.e, septe_make(sept_blocked[op.state], op.pfn),
			      memory_order_release);
	/* The epoch is sampled after the entry is blocked. */
	pv = (pv & ~PAMT_BEPOCH_MASK) |
	     (epoch_of(atomic_load_explicit(&a->td->epoch_word, memory_order_acquire)) <<
	      PAMT_BEPOCH_SHIFT);
	pamt_unlock_w(a->m, op_pamt(a->m, &op), pv);
	return sept_done(&op, TDX_SUCCESS);
}

static uint64_t range_unblock(struct leaf_args *a)
{
	struct sept_op op;
	uint64_t st = sept_lookup(&op, a);

	if (st)
		return sept_done(&op, st);
	if (!sept_unblocked[op.state])
		st = (op.state == CCVM_TDX_SEPT_FREE ? TDX_EPT_ENTRY_STATE_INCORRECT :
		      TDX_GPA_RANGE_NOT_BLOCKED) | CCVM_TDX_OPERAND_RCX;
	else if (!sept_tracked(a->td, pamt_bepoch(atomic_load_explicit(op_pamt(a->m, &op),
								      memory_order_acquire))))
		st = TDX_TLB_TRACKING_NOT_DONE | CCVM_TDX_OPERAND_RCX;
	else
		atomic_store_explicit(op.e, septe_make(sept_unblocked[op.state], op.pfn),
				      memory_order_release);
	return sept_done(&op, st);
}

static uint64_t mem_track(struct leaf_args *a)
{
	struct ccvm_tdx_td *td = a->td;
	struct td_guard g;
	unsigned int slot;
	uint64_t st, epoch;

	st = td_enter(td, &g, false, OPS_BUILT);
	if (st)
		return st;
	if (!td_lock_try(td, EPOCH_LOCK, true, &slot, "epoch_lock")) {
		st = busy(CCVM_TDX_OPERAND_TD_EPOCH);
		goto out;
	}
	/* No entry in flight: the previous epoch's count can only fall. */
	epoch = epoch_of(atomic_load(&td->epoch_word));
	if (td_in_guest(td, (epoch - 1) & 1)) {
		st = TDX_PREVIOUS_TLB_EPOCH_BUSY;
	} else {
		/*
		 * The previous epoch's (zero) count becomes the new one's.  Only
		 * TRACK writes the word, under the epoch lock held exclusively:
		 * a release store does (no locked instruction); the lock's
		 * release orders it for the entries, and tlb_tracked() reads it
		 * with its own loads.
		 */
		atomic_store_explicit(&td->epoch_word, (epoch + 1) << EPOCH_SHIFT,
				      memory_order_release);
	}
	td_lock_release(td, EPOCH_LOCK, true, slot, "epoch_lock");
out:
	td_leave(td, &g);
	return st;
}

/* True when every entry of S-EPT page @pfn is FREE. */
static bool sept_page_empty(struct ccvm_tdx_module *m, uint64_t pfn)
{
	_Atomic uint64_t *child = sept_page(m, pfn);
	unsigned int i;

	for (i = 0; i < SEPT_ENTRIES; i++)
		if (CCVM_TDX_SEPTE_STATE(atomic_load_explicit(&child[i], memory_order_relaxed)) !=
		    CCVM_TDX_SEPT_FREE)
			return false;
	return true;
}

/*
 * The rest of PAGE.REMOVE and SEPT.REMOVE once the entry's state is right
 * (@st TDX_SUCCESS): under its PAMT entry lock, the page must be blocked
 * when the TD runs, tracked, and as an S-EPT page have no entry left; then
 * the entry becomes FREE and the page goes back to PT_NDA, into *a->pfn_out.
 */
static uint64_t sept_unmap(struct sept_op *op, struct leaf_args *a, uint64_t st)
{
	bool huge = op_huge(op);
	uint64_t pv;

	if (!st)
		st = op_pamt_lock(a->m, op, &pv);
	if (st)
		return sept_done(op, st);
	if (!sept_is_blocked(op->state) && td_op_state(a->td) == CCVM_TDX_OP_RUNNABLE)
		st = TDX_GPA_RANGE_NOT_BLOCKED | CCVM_TDX_OPERAND_RCX;
	else if (!sept_tracked(a->td, pamt_bepoch(pv)))
		st = TDX_TLB_TRACKING_NOT_DONE | CCVM_TDX_OPERAND_RCX;
	else if (op->state == CCVM_TDX_SEPT_NL_BLOCKED && !sept_page_empty(a->m, op->pfn))
		st = TDX_EPT_PAGE_NOT_FREE | CCVM_TDX_OPERAND_RCX;
	if (st) {
		pamt_unlock_w(a->m, op_pamt(a->m, op), pv);
		return sept_done(op, st);
	}
	atomic_store_explicit(op->e, 0, memory_order_release);
	if (huge)
		pamt_release_2m(a->m, op->pfn);
	else
		pamt_release(a->m, op->pfn);
	td_children_add_excl(a->td, huge ? -(int64_t)PAGES_2M : -1);
	if (a->pfn_out)
		*a->pfn_out = op->pfn;
	return sept_done(op, TDX_SUCCESS);
}

static uint64_t page_remove(struct leaf_args *a)
{
	struct sept_op op;
	uint64_t st = sept_lookup(&op, a);

	if (!st && !sept_is_leaf(op.state))
		st = TDX_EPT_ENTRY_STATE_INCORRECT | CCVM_TDX_OPERAND_RCX;
	return sept_unmap(&op, a, st);
}

static uint64_t sept_remove(struct leaf_args *a)
{
	struct sept_op op;
	uint64_t st = sept_lookup(&op, a);

	if (!st && op.state != CCVM_TDX_SEPT_NL_BLOCKED)
		st = (op.state == CCVM_TDX_SEPT_NL_MAPPED ? TDX_GPA_RANGE_NOT_BLOCKED :
		      TDX_EPT_ENTRY_STATE_INCORRECT) | CCVM_TDX_OPERAND_RCX;
	return sept_unmap(&op, a, st);
}

/*
 * Take the 512 4K PAMT entries of the 2M page at @pfn (all zero: the page
 * is assigned at 2M) without scheduling points; a 4K leaf that locked one
 * for a moment (and will find the region taken) makes it busy.
 */
static bool pamt_take_4k_entries(struct ccvm_tdx_module *m, uint64_t pfn)
{
	unsigned int i, j;

	for (i = 0; i < PAGES_2M; i++) {
		uint64_t want = 0;

		if (!atomic_compare_exchange_strong_explicit(pamt_entry(m, pfn + i), &want,
							     PAMT_LOCK, memory_order_acq_rel,
							     memory_order_relaxed)) {
			for (j = 0; j < i; j++)
				atomic_store_explicit(pamt_entry(m, pfn + j), 0,
						      memory_order_release);
			return false;
		}
	}
	return true;
}

/*
 * DEMOTE: the checks under the 2M leaf's entry lock and 2M PAMT entry lock
 * (@pv its value), then the split.  Return: the status; on success the
 * entry's new value in *@v.
 */
static uint64_t demote_locked(struct leaf_args *a, uint64_t *v, uint64_t pv)
{
	struct ccvm_tdx_module *m = a->m;
	struct ccvm_tdx_td *td = a->td;
	unsigned int s = CCVM_TDX_SEPTE_STATE(*v), leaf, i;
	uint64_t pfn = CCVM_TDX_SEPTE_PFN(*v), st, poison = pv & PAMT_POISON;
	struct ccvm_tdx_pamt2m *r = region_of(m, pfn);
	_Atomic uint64_t *child;

	if (td_op_state(td) == CCVM_TDX_OP_RUNNABLE && !sept_is_blocked(s))
		return TDX_GPA_RANGE_NOT_BLOCKED | CCVM_TDX_OPERAND_RCX;
	if (!sept_tracked(td, pamt_bepoch(pv)))
		return TDX_TLB_TRACKING_NOT_DONE | CCVM_TDX_OPERAND_RCX;
	if (atomic_load_explicit(&m->dpamt, memory_order_relaxed) &&
	    !atomic_load_explicit(&r->pair[0], memory_order_acquire))
		return TDX_MISSING_PAMT_PAGE_PAIR | CCVM_TDX_OPERAND_RCX;
	st = pamt_lock_free_page(m, a->pfn, CCVM_TDX_OPERAND_R8);
	if (st)
		return st;
	pamt_note_touch(m, pfn);
	if (!pamt_take_4k_entries(m, pfn)) {
		pamt_give_back(m, a->pfn);
		return busy(CCVM_TDX_OPERAND_RCX);
	}
	/* The new table: every entry a 4K leaf before the link publishes it. */
	page_zero_if_dirty(m, a->pfn);
	ccvm_page_mark_dirty(m->p, a->pfn);
	child = sept_page(m, a->pfn);
	leaf = sept_unblocked[s] ? sept_unblocked[s] : s;
	for (i = 0; i < SEPT_ENTRIES; i++)
		atomic_store_explicit(&child[i], septe_make(leaf, pfn + i), memory_order_relaxed);
	atomic_fetch_add_explicit(&r->nr_4k, PAGES_2M, memory_order_seq_cst);
	for (i = 0; i < PAGES_2M; i++)
		atomic_store_explicit(pamt_entry(m, pfn + i),
				      pamt_make(CCVM_TDX_PT_REG, td->slot, 0) | poison,
				      memory_order_release);
	/* The 2M entry goes, its 512 pages stay assigned (now at 4K). */
	lock_release(m, "pamt 2m entry unlock");
	atomic_store_explicit(&r->v, 0, memory_order_release);
	pamt_assign(td, a->pfn, CCVM_TDX_PT_EPT, true);
	*v = septe_make(CCVM_TDX_SEPT_NL_MAPPED, a->pfn);
	return TDX_SUCCESS;
}

static uint64_t page_demote(struct leaf_args *a)
{
	struct ccvm_tdx_module *m = a->m;
	struct sept_op op;
	_Atomic uint64_t *pe;
	uint64_t st, v, pv;

	st = sept_lookup(&op, a);
	if (!st)
		st = sept_entry_lock(m, op.e, &v);
	if (st)
		return sept_done(&op, st);
	if (!sept_is_leaf(CCVM_TDX_SEPTE_STATE(v))) {
		st = TDX_EPT_ENTRY_STATE_INCORRECT | CCVM_TDX_OPERAND_RCX;
	} else {
		pe = &region_of(m, CCVM_TDX_SEPTE_PFN(v))->v;
		if (!word_trylock(m, pe, PAMT_LOCK, &pv, "pamt 2m entry lock")) {
			st = busy(CCVM_TDX_OPERAND_RCX);
		} else {
			st = demote_locked(a, &v, pv);
			if (st)
				pamt_unlock_w(m, pe, pv);
		}
	}
	sept_entry_unlock(m, op.e, v);
	return sept_done(&op, st);
}

static uint64_t sept_rd(struct leaf_args *a)
{
	struct ccvm_tdx_sept_info *info = a->sept_info;
	struct sept_op op;
	uint64_t st;

	if (!info)
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RDX;
	st = sept_lookup(&op, a);
	if (op.e) {
		info->raw = op.v & ~SEPTE_LOCK;
		info->state = op.state;
		info->pfn = op.pfn;
		info->level = op.reached;
	}
	return sept_done(&op, st);
}

/* ---- physical pages ------------------------------------------------------------ */

static uint64_t page_wbinvd(struct leaf_args *a)
{
	struct ccvm_tdx_module *m = a->m;
	uint64_t v;

	if (!pfn_ok(m, a->pfn))
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
	if (a->keyid != CCVM_TDX_GLOBAL_KEYID) {
		if (!hkid_ok(m, a->keyid))
			return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
		if (atomic_load_explicit(&m->kot[a->keyid].state, memory_order_acquire) == KOT_FREE)
			return TDX_KEY_STATE_INCORRECT | CCVM_TDX_OPERAND_RCX;
	}
	/* A PAMT entry lock held by another leaf makes this one busy. */
	ccvm_sched_point(m->sched, CCVM_SCHED_HW(m->sched), "pamt entry");
	v = atomic_load_explicit(pamt_entry(m, a->pfn), memory_order_acquire);
	if (v & PAMT_LOCK)
		return busy(CCVM_TDX_OPERAND_RCX);
	if (pamt_type(v) != CCVM_TDX_PT_NDA)
		return TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_RCX;
	/* Part of a 2M page still assigned: owned as well. */
	v = atomic_load_explicit(&region_of(m, a->pfn)->v, memory_order_acquire);
	if (v & PAMT_LOCK)
		return busy(CCVM_TDX_OPERAND_RCX);
	if (pamt_type(v) != CCVM_TDX_PT_NDA)
		return TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_RCX;
	return TDX_SUCCESS;
}

/* Unlink and free the vCPU whose TDVPR is @pfn (TDR lock held shared). */
static void vp_reclaimed(struct ccvm_tdx_td *td, uint64_t pfn)
{
	struct ccvm_tdx_vp **pp, *vp = NULL;

	lock_wait(&td->vp_list_lock);
	for (pp = &td->vps; *pp; pp = &(*pp)->next) {
		if ((*pp)->tdvpr_pfn == pfn) {
			vp = *pp;
			*pp = vp->next;
			break;
		}
	}
	ccvm_mutex_unlock(&td->vp_list_lock);
	vp_free(vp);
}

static uint64_t page_reclaim(struct leaf_args *a)
{
	struct ccvm_tdx_module *m = a->m;
	struct ccvm_tdx_reclaim_info *info = a->reclaim_info;
	uint64_t pfn = a->pfn;
	_Atomic uint64_t *pe;
	struct ccvm_tdx_td *td;
	uint64_t st, v;
	unsigned int type, slot;
	bool is_tdr, huge = false;

	if (!pfn_ok(m, pfn))
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
	pe = pamt_entry(m, pfn);
	st = pamt_lock(m, pfn, CCVM_TDX_OPERAND_RCX, &v);
	if (st)
		return st;
	if (pamt_type(v) == CCVM_TDX_PT_NDA && pfn_2m_ok(m, pfn) &&
	    pamt_type(atomic_load_explicit(&region_of(m, pfn)->v, memory_order_acquire)) !=
	    CCVM_TDX_PT_NDA) {
		/* The first pfn of a 2M page: the page is its 2M entry. */
		pamt_unlock(m, pfn, v);
		pe = &region_of(m, pfn)->v;
		if (!word_trylock(m, pe, PAMT_LOCK, &v, "pamt 2m entry lock"))
			return busy(CCVM_TDX_OPERAND_RCX);
		huge = true;
	}
	type = pamt_type(v);
	if (type == CCVM_TDX_PT_NDA || type == CCVM_TDX_PT_RSVD || type == CCVM_TDX_PT_PAMT) {
		pamt_unlock_w(m, pe, v);
		return TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_RCX;
	}
	/* Holding a page of the TD keeps its TDR (and the TD) from going away. */
	td = atomic_load_explicit(&m->slots[pamt_owner(v)].td, memory_order_acquire);
	if (!td) {
		pamt_unlock_w(m, pe, v);
		return TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_RCX;
	}
	if (td_vm(td))
		a->vm = td_vm(td);
	if (info) {
		info->type = type;
		info->owner = td->tdr_pfn;
		info->level = huge ? CCVM_TDX_LEVEL_2M : CCVM_TDX_LEVEL_4K;
	}
	is_tdr = type == CCVM_TDX_PT_TDR;
	if (!td_lock_try(td, TDR_LOCK, is_tdr, &slot, "tdr_lock")) {
		pamt_unlock_w(m, pe, v);
		return busy(CCVM_TDX_OPERAND_TDR);
	}
	if (td_lifecycle(td) != CCVM_TDX_TD_TEARDOWN)
		st = TDX_LIFECYCLE_STATE_INCORRECT;
	else if (is_tdr && td_children(td))
		st = TDX_TD_ASSOCIATED_PAGES_EXIST;
	if (st) {
		td_lock_release(td, TDR_LOCK, is_tdr, slot, "tdr_lock");
		pamt_unlock_w(m, pe, v);
		return st;
	}
	if (is_tdr) {
		atomic_store_explicit(&m->slots[td->slot].td, NULL, memory_order_release);
		pamt_release(m, pfn);
		td_lock_release(td, TDR_LOCK, true, slot, "tdr_lock");
		td_free(td);
		return TDX_SUCCESS;
	}
	if (type == CCVM_TDX_PT_TDVPR)
		vp_reclaimed(td, pfn);
	if (huge)
		pamt_release_2m(m, pfn);
	else
		pamt_release(m, pfn);
	td_children_add(td, huge ? -(int64_t)PAGES_2M : -1, memory_order_release);
	td_lock_release(td, TDR_LOCK, false, slot, "tdr_lock");
	return TDX_SUCCESS;
}

/* ---- Dynamic PAMT --------------------------------------------------------------- */

static uint64_t pamt_add(struct leaf_args *a)
{
	static const uint32_t reg[CCVM_TDX_DPAMT_PAIR_PAGES] = {
		CCVM_TDX_OPERAND_RDX, CCVM_TDX_OPERAND_R8,
	};
	struct ccvm_tdx_module *m = a->m;
	struct ccvm_tdx_pamt2m *r;
	uint64_t st = TDX_SUCCESS, v;
	unsigned int i, got = 0;

	if (!atomic_load_explicit(&m->dpamt, memory_order_relaxed) || !region_ok(m, a->pfn))
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
	if (a->pair[0] == a->pair[1])
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_R8;
	r = region_of(m, a->pfn);
	/* The pair's own entries are bookkeeping: they need no pair.  They are
	 * taken before the region, which may be their own. */
	for (i = 0; !st && i < CCVM_TDX_DPAMT_PAIR_PAGES; i++) {
		st = pamt_lock_free_page_as(m, a->pair[i], reg[i], false);
		if (!st)
			got++;
	}
	if (!st && !word_trylock(m, &r->v, PAMT_LOCK, &v, "pamt 2m entry lock"))
		st = busy(CCVM_TDX_OPERAND_RCX);
	else if (!st && atomic_load_explicit(&r->pair[0], memory_order_relaxed)) {
		st = TDX_HPA_RANGE_NOT_FREE | CCVM_TDX_OPERAND_RCX;
		pamt_unlock_w(m, &r->v, v);
	}
	if (st) {
		for (i = 0; i < got; i++)
			pamt_give_back(m, a->pair[i]);
		return st;
	}
	for (i = 0; i < CCVM_TDX_DPAMT_PAIR_PAGES; i++) {
		atomic_fetch_add_explicit(&region_of(m, a->pair[i])->nr_pamt, 1,
					  memory_order_seq_cst);
		lock_release(m, "pamt entry unlock");
		atomic_store_explicit(pamt_entry(m, a->pair[i]),
				      pamt_make(CCVM_TDX_PT_PAMT, 0, 0), memory_order_release);
		atomic_store_explicit(&r->pair[i], a->pair[i], memory_order_release);
	}
	atomic_fetch_add_explicit(&m->nr_pairs, 1, memory_order_relaxed);
	pamt_unlock_w(m, &r->v, v);
	return TDX_SUCCESS;
}

static uint64_t pamt_remove(struct leaf_args *a)
{
	struct ccvm_tdx_module *m = a->m;
	struct ccvm_tdx_pamt2m *r;
	uint64_t st = TDX_SUCCESS, v, pair[CCVM_TDX_DPAMT_PAIR_PAGES], pv;
	unsigned int i, got = 0;

	if (!region_ok(m, a->pfn))
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
	r = region_of(m, a->pfn);
	if (!word_trylock(m, &r->v, PAMT_LOCK, &v, "pamt 2m entry lock"))
		return busy(CCVM_TDX_OPERAND_RCX);
	ccvm_full_barrier();
	for (i = 0; i < CCVM_TDX_DPAMT_PAIR_PAGES; i++)
		pair[i] = atomic_load_explicit(&r->pair[i], memory_order_relaxed);
	if (!pair[0])
		st = TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_RCX;
	/* Pair pages living in the region are the module's, not a TD's. */
	else if (atomic_load_explicit(&r->nr_4k, memory_order_seq_cst) >
		 atomic_load_explicit(&r->nr_pamt, memory_order_seq_cst))
		st = TDX_HPA_RANGE_NOT_FREE | CCVM_TDX_OPERAND_RCX;
	for (i = 0; !st && i < CCVM_TDX_DPAMT_PAIR_PAGES; i++) {
		if (word_trylock(m, pamt_entry(m, pair[i]), PAMT_LOCK, &pv, "pamt entry lock"))
			got++;
		else
			st = busy(CCVM_TDX_OPERAND_RCX);
	}
	if (st) {
		for (i = 0; i < got; i++)
			pamt_unlock(m, pair[i], pamt_make(CCVM_TDX_PT_PAMT, 0, 0));
		pamt_unlock_w(m, &r->v, v);
		return st;
	}
	for (i = 0; i < CCVM_TDX_DPAMT_PAIR_PAGES; i++) {
		atomic_store_explicit(&r->pair[i], 0, memory_order_relaxed);
		lock_release(m, "pamt entry unlock");
		atomic_store_explicit(pamt_entry(m, pair[i]), 0, memory_order_release);
		atomic_fetch_sub_explicit(&region_of(m, pair[i])->nr_pamt, 1,
					  memory_order_seq_cst);
		region_unreserve_4k(m, pair[i]);
		if (a->pair_out[i])
			*a->pair_out[i] = pair[i];
	}
	atomic_fetch_sub_explicit(&m->nr_pairs, 1, memory_order_relaxed);
	pamt_unlock_w(m, &r->v, v);
	return TDX_SUCCESS;
}

/* ---- guest side ------------------------------------------------------------------ */

static inline bool vp_in_guest(const struct ccvm_tdx_vp *vp)
{
	return (atomic_load_explicit(&vp->run, memory_order_acquire) & ~(uint64_t)VP_ENTERING) ==
	       VP_IN_GUEST;
}

/*
 * The zeroing of a 2M accept beyond what a 4K accept does (its first page):
 * the other 511 pages, each charged as one page clear.
 */
static void accept_zero_rest(struct ccvm_tdx_module *m, struct ccvm_vm *vm, uint64_t pfn)
{
	uint64_t clean = 0;
	unsigned int i;

	for (i = 1; i < PAGES_2M; i++) {
		if (ccvm_page_is_dirty(m->p, pfn + i))
			ccvm_page_clear(m->p, pfn + i);
		else
			clean++;
	}
	if (clean)
		ccvm_account(m->p, vm, CCVM_EV_PAGE_CLEAR, clean);
}

/* ACCEPT of the leaf @e (4K, or 2M when @huge), the tree lock held shared. */
static uint64_t accept_entry(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
			     _Atomic uint64_t *e, bool huge)
{
	uint64_t st, v, pfn;
	unsigned int s;

	st = sept_entry_lock(m, e, &v);
	if (st)
		return st;
	s = CCVM_TDX_SEPTE_STATE(v);
	if (s == CCVM_TDX_SEPT_MAPPED) {
		st = TDX_PAGE_ALREADY_ACCEPTED | CCVM_TDX_OPERAND_RCX;
	} else if (s != CCVM_TDX_SEPT_PENDING) {
		st = CCVM_TDX_SW_EPT_VIOLATION;
	} else {
		pfn = CCVM_TDX_SEPTE_PFN(v);
		/* The module zeroes with the TD's key, which also restores the
		 * page's integrity; a page nobody wrote is zero already. */
		if (ccvm_page_is_dirty(m->p, pfn))
			ccvm_page_clear(m->p, pfn);
		if (huge)
			accept_zero_rest(m, vm, pfn);
		atomic_fetch_and_explicit(huge ? &region_of(m, pfn)->v : pamt_entry(m, pfn),
					  ~PAMT_POISON, memory_order_relaxed);
		v = septe_make(CCVM_TDX_SEPT_MAPPED, pfn);
	}
	sept_entry_unlock(m, e, v);
	return st;
}

/* The guest's TDCALL: no TDR lock, and a walk that stops is a TD exit. */
static uint64_t page_accept(struct leaf_args *a)
{
	struct ccvm_tdx_td *td = a->td;
	_Atomic uint64_t *e;
	uint64_t st;
	unsigned int s, slot;
	int reached;

	vp_entry_done(a->vp);	/* the guest runs: its entry is over */
	if (!vp_in_guest(a->vp))
		return TDX_VCPU_STATE_INCORRECT;
	if (!gpa_ok(td, a->gpa, a->level, CCVM_TDX_LEVEL_4K, CCVM_TDX_LEVEL_2M, 0))
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
	if (!td_lock_try(td, SEPT_LOCK, false, &slot, "sept_lock"))
		return busy(CCVM_TDX_OPERAND_SEPT);
	if (!sept_walk(td, a->gpa, a->level, &e, &reached)) {
		s = CCVM_TDX_SEPTE_STATE(atomic_load_explicit(e, memory_order_acquire));
		/* A 4K accept inside a 2M leaf: accepted already, or (PENDING)
		 * an exit that tells the host to split the mapping. */
		st = reached == CCVM_TDX_LEVEL_2M && s == CCVM_TDX_SEPT_MAPPED ?
		     TDX_PAGE_ALREADY_ACCEPTED | CCVM_TDX_OPERAND_RCX : CCVM_TDX_SW_EPT_VIOLATION;
	} else if (a->level == CCVM_TDX_LEVEL_2M &&
		   CCVM_TDX_SEPTE_STATE(atomic_load_explicit(e, memory_order_acquire)) ==
		   CCVM_TDX_SEPT_NL_MAPPED) {
		/* Mapped with 4K pages: the accept level does not match. */
		st = TDX_PAGE_SIZE_MISMATCH | CCVM_TDX_OPERAND_RCX;
	} else {
		st = accept_entry(a->m, td_vm(td), e, a->level == CCVM_TDX_LEVEL_2M);
	}
	td_lock_release(td, SEPT_LOCK, false, slot, "sept_lock");
	return st;
}

uint64_t ccvm_tdx_guest_access(struct ccvm_tdx_vp *vp, uint64_t gpa, bool write)
{
	struct ccvm_tdx_td *td;
	_Atomic uint64_t *e;
	uint64_t v;
	int reached;

	(void)write;	/* S-EPT leaves are RWX: reads and writes fault alike */
	if (!vp)
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
	td = vp->td;
	vp_entry_done(vp);	/* the guest runs: its entry is over */
	if (!vp_in_guest(vp))
		return TDX_VCPU_STATE_INCORRECT;
	if (!gpa_ok(td, gpa & ~(CCVM_PAGE_SIZE - 1), 0, 0, 0, 0))
		return TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RCX;
	if (!sept_walk(td, gpa, CCVM_TDX_LEVEL_4K, &e, &reached) &&
	    (reached != CCVM_TDX_LEVEL_2M ||
	     !sept_is_leaf(CCVM_TDX_SEPTE_STATE(atomic_load_explicit(e, memory_order_acquire)))))
		return CCVM_TDX_SW_EPT_VIOLATION;
	/* Here e is a 4K leaf, or the 2M leaf covering gpa. */
	v = atomic_load_explicit(e, memory_order_acquire);
	switch (CCVM_TDX_SEPTE_STATE(v)) {
	case CCVM_TDX_SEPT_MAPPED:
		if (atomic_load_explicit(reached == CCVM_TDX_LEVEL_2M ?
					 &region_of(td->m, CCVM_TDX_SEPTE_PFN(v))->v :
					 pamt_entry(td->m, CCVM_TDX_SEPTE_PFN(v)),
					 memory_order_relaxed) & PAMT_POISON)
			return CCVM_TDX_SW_MCE;
		return TDX_SUCCESS;
	case CCVM_TDX_SEPT_PENDING:
		return td->attributes & CCVM_TDX_ATTR_SEPT_VE_DISABLE ?
		       CCVM_TDX_SW_EPT_VIOLATION_PENDING : CCVM_TDX_SW_VE;
	default:
		return CCVM_TDX_SW_EPT_VIOLATION;
	}
}

/* ---- host direct map -------------------------------------------------------------- */

int ccvm_tdx_host_access(struct ccvm_tdx_module *m, uint64_t pfn, bool write)
{
	_Atomic uint64_t *e;
	uint64_t v;

	if (!m || !pfn_ok(m, pfn))
		return -EINVAL;
	e = pamt_effective(m, pfn, NULL);
	v = atomic_load_explicit(e, memory_order_acquire);
	if (pamt_type(v) == CCVM_TDX_PT_NDA)
		return 0;
	if (write) {
		atomic_fetch_or_explicit(e, PAMT_POISON, memory_order_relaxed);
		atomic_fetch_add_explicit(&m->nr_poisoned, 1, memory_order_relaxed);
	}
	return CCVM_HOST_ACCESS_CIPHERTEXT;
}

void ccvm_tdx_host_ciphertext(struct ccvm_tdx_module *m, uint64_t pfn, void *page)
{
	uint8_t *b = page;
	uint64_t v, key;
	unsigned int i, j;

	if (!m || !pfn_ok(m, pfn) || !page)
		return;
	v = atomic_load_explicit(pamt_effective(m, pfn, NULL), memory_order_acquire);
	if (pamt_type(v) == CCVM_TDX_PT_NDA)
		return;
	if (pamt_type(v) == CCVM_TDX_PT_TDR || pamt_type(v) == CCVM_TDX_PT_PAMT)
		key = mix64(m->secret ^ CCVM_TDX_GLOBAL_KEYID);
	else
		key = atomic_load_explicit(&m->slots[pamt_owner(v)].key, memory_order_relaxed);
	key = mix64(key ^ (pfn * 0x9e3779b97f4a7c15ull));
	for (i = 0; i < CCVM_PAGE_SIZE; i += 8) {
		uint64_t ks = mix64(key + i);

		for (j = 0; j < 8; j++) {
			uint8_t k = (uint8_t)(ks >> (8 * j));

			/* A zero key byte would leave the plaintext byte as is. */
			b[i + j] ^= k ? k : 0xa5;
		}
	}
}

uint64_t ccvm_tdx_nr_poisoned(struct ccvm_tdx_module *m)
{
	return atomic_load_explicit(&m->nr_poisoned, memory_order_relaxed);
}

/* ---- fault injection --------------------------------------------------------------- */

/* Slot of @leaf in the leaf table and the injection rules; NR_LEAF_SLOTS if none. */
static unsigned int leaf_slot(unsigned int leaf)
{
	if (leaf == CCVM_TDX_LEAF_TDG_MEM_PAGE_ACCEPT)
		return LEAF_SLOT_TDG_MEM_PAGE_ACCEPT;
	return leaf < NR_TDH_LEAVES ? leaf : NR_LEAF_SLOTS;
}

/* An injected status for this call of @leaf, or false. */
static bool inject_check(struct ccvm_tdx_module *m, unsigned int leaf, uint64_t *status)
{
	struct ccvm_tdx_inject_rule *r;
	bool fire = false;

	if (!atomic_load_explicit(&m->nr_inject_rules, memory_order_relaxed))
		return false;
	lock_wait(&m->inject_lock);
	r = &m->inject[leaf_slot(leaf)];
	if (r->active) {
		r->calls++;
		if (!r->nth || r->calls >= r->nth) {
			fire = true;
			*status = r->status;
			r->fired++;
			if (r->count && r->fired >= r->count) {
				r->active = false;
				atomic_fetch_sub_explicit(&m->nr_inject_rules, 1,
							  memory_order_relaxed);
			}
		}
	}
	ccvm_mutex_unlock(&m->inject_lock);
	return fire;
}

int ccvm_tdx_inject(struct ccvm_tdx_module *m, unsigned int leaf, uint64_t nth,
		    uint64_t status, uint64_t count)
{
	struct ccvm_tdx_inject_rule *r;
	int err = 0;

	if (!m || !ccvm_tdx_leaf_name(leaf))
		return -EINVAL;
	lock_wait(&m->inject_lock);
	r = &m->inject[leaf_slot(leaf)];
	if (!status) {
		if (!r->active)
			err = -ENOENT;
		else
			atomic_fetch_sub_explicit(&m->nr_inject_rules, 1, memory_order_relaxed);
		r->active = false;
	} else {
		if (!r->active)
			atomic_fetch_add_explicit(&m->nr_inject_rules, 1, memory_order_relaxed);
		*r = (struct ccvm_tdx_inject_rule){
			.nth = nth, .status = status, .count = count, .active = true,
		};
	}
	ccvm_mutex_unlock(&m->inject_lock);
	return err;
}

/* ---- names ---------------------------------------------------------------------------- */

struct status_name {
	uint64_t status;
	const char *name;
};

#define STATUS_NAME(s) { s, #s }

static const struct status_name status_names[] = {
	STATUS_NAME(TDX_SUCCESS),
	STATUS_NAME(TDX_NON_RECOVERABLE_VCPU),
	STATUS_NAME(TDX_NON_RECOVERABLE_TD),
	STATUS_NAME(TDX_INTERRUPTED_RESUMABLE),
	STATUS_NAME(TDX_OPERAND_INVALID),
	STATUS_NAME(TDX_OPERAND_BUSY),
	STATUS_NAME(TDX_PREVIOUS_TLB_EPOCH_BUSY),
	STATUS_NAME(TDX_RND_NO_ENTROPY),
	STATUS_NAME(TDX_PAGE_METADATA_INCORRECT),
	STATUS_NAME(TDX_HPA_RANGE_NOT_FREE),
	STATUS_NAME(TDX_MISSING_PAMT_PAGE_PAIR),
	STATUS_NAME(TDX_TD_ASSOCIATED_PAGES_EXIST),
	STATUS_NAME(TDX_TDCS_NOT_ALLOCATED),
	STATUS_NAME(TDX_LIFECYCLE_STATE_INCORRECT),
	STATUS_NAME(TDX_OP_STATE_INCORRECT),
	STATUS_NAME(TDX_TDCX_NUM_INCORRECT),
	STATUS_NAME(TDX_VCPU_STATE_INCORRECT),
	STATUS_NAME(TDX_VCPU_ASSOCIATED),
	STATUS_NAME(TDX_VCPU_NOT_ASSOCIATED),
	STATUS_NAME(TDX_MAX_VCPUS_EXCEEDED),
	STATUS_NAME(TDX_TD_KEYS_NOT_CONFIGURED),
	STATUS_NAME(TDX_KEY_STATE_INCORRECT),
	STATUS_NAME(TDX_KEY_CONFIGURED),
	STATUS_NAME(TDX_WBCACHE_NOT_COMPLETE),
	STATUS_NAME(TDX_HKID_NOT_FREE),
	STATUS_NAME(TDX_NO_HKID_READY_TO_WBCACHE),
	STATUS_NAME(TDX_WBCACHE_RESUME_ERROR),
	STATUS_NAME(TDX_FLUSHVP_NOT_DONE),
	STATUS_NAME(TDX_EPT_WALK_FAILED),
	STATUS_NAME(TDX_EPT_ENTRY_NOT_FREE),
	STATUS_NAME(TDX_GPA_RANGE_NOT_BLOCKED),
	STATUS_NAME(TDX_GPA_RANGE_ALREADY_BLOCKED),
	STATUS_NAME(TDX_TLB_TRACKING_NOT_DONE),
	STATUS_NAME(TDX_PAGE_ALREADY_ACCEPTED),
	STATUS_NAME(TDX_PAGE_SIZE_MISMATCH),
	STATUS_NAME(TDX_EPT_ENTRY_STATE_INCORRECT),
	STATUS_NAME(TDX_EPT_PAGE_NOT_FREE),
};

const char *ccvm_tdx_status_name(uint64_t status)
{
	size_t i;

	switch (status) {
	case CCVM_TDX_SW_VE:
		return "CCVM_TDX_SW_VE";
	case CCVM_TDX_SW_MCE:
		return "CCVM_TDX_SW_MCE";
	case CCVM_TDX_SW_EPT_VIOLATION:
		return "CCVM_TDX_SW_EPT_VIOLATION";
	case CCVM_TDX_SW_EPT_VIOLATION_PENDING:
		return "CCVM_TDX_SW_EPT_VIOLATION_PENDING";
	case CCVM_TDX_SW_NOMEM:
		return "CCVM_TDX_SW_NOMEM";
	}
	for (i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++)
		if (status_names[i].status == TDX_STATUS_CLASS(status))
			return status_names[i].name;
	return "TDX_UNKNOWN";
}

/* ---- the leaves ---------------------------------------------------------------------- */

/* What a leaf is called on; a NULL handle is OPERAND_INVALID | its register. */
enum leaf_on { ON_MODULE, ON_TD, ON_VP };

#define IN_NONE		0
#define IN_RCX		CCVM_TDX_OPERAND_RCX
#define IN_RDX		CCVM_TDX_OPERAND_RDX

struct leaf {
	const char *name;
	uint64_t (*handler)(struct leaf_args *a);
	enum ccvm_event event;		/* counted once per call */
	enum leaf_on on;
	uint32_t handle_reg;		/* the operand a NULL handle is reported in */
};

#define TDH(nr, name, handler, on, reg) \
	[CCVM_TDH_##nr] = { "TDH." name, handler, CCVM_EV_TDH_##nr, ON_##on, IN_##reg }
#define TDG(nr, name, handler, on, reg) \
	[LEAF_SLOT_TDG_##nr] = { "TDG." name, handler, CCVM_EV_TDG_##nr, ON_##on, IN_##reg }

/*
 * Every leaf the model implements, one a row: its number, CCVM_TDH_<nr>
 * (g6: the guest's TDCALL 6, CCVM_TDG_<nr>), its name after "TDH." ("TDG."),
 * the handler, what it is called on, and the register a NULL handle is
 * reported in.  Each call counts event CCVM_EV_TDH_<nr> (CCVM_EV_TDG_<nr>).
 */
static const struct leaf leaves[NR_LEAF_SLOTS] = {
	/*  0 */ TDH(VP_ENTER,            "VP.ENTER",            vp_enter,        VP,     RCX),
	/*  1 */ TDH(MNG_ADDCX,           "MNG.ADDCX",           mng_addcx,       TD,     RDX),
	/*  2 */ TDH(MEM_PAGE_ADD,        "MEM.PAGE.ADD",        sept_fill,       TD,     RDX),
	/*  3 */ TDH(MEM_SEPT_ADD,        "MEM.SEPT.ADD",        sept_fill,       TD,     RDX),
	/*  4 */ TDH(VP_ADDCX,            "VP.ADDCX",            vp_addcx,        VP,     RDX),
	/*  6 */ TDH(MEM_PAGE_AUG,        "MEM.PAGE.AUG",        sept_fill,       TD,     RDX),
	/*  7 */ TDH(MEM_RANGE_BLOCK,     "MEM.RANGE.BLOCK",     range_block,     TD,     RDX),
	/*  8 */ TDH(MNG_KEY_CONFIG,      "MNG.KEY.CONFIG",      mng_key_config,  TD,     RCX),
	/*  9 */ TDH(MNG_CREATE,          "MNG.CREATE",          mng_create,      MODULE, RCX),
	/* 10 */ TDH(VP_CREATE,           "VP.CREATE",           vp_create,       TD,     RDX),
	/* 15 */ TDH(MEM_PAGE_DEMOTE,     "MEM.PAGE.DEMOTE",     page_demote,     TD,     RDX),
	/* 16 */ TDH(MR_EXTEND,           "MR.EXTEND",           mr_extend,       TD,     RDX),
	/* 17 */ TDH(MR_FINALIZE,         "MR.FINALIZE",         mr_finalize,     TD,     RCX),
	/* 18 */ TDH(VP_FLUSH,            "VP.FLUSH",            vp_flush,        VP,     RCX),
	/* 19 */ TDH(MNG_VPFLUSHDONE,     "MNG.VPFLUSHDONE",     mng_vpflushdone, TD,     RCX),
	/* 20 */ TDH(MNG_KEY_FREEID,      "MNG.KEY.FREEID",      mng_key_freeid,  TD,     RCX),
	/* 21 */ TDH(MNG_INIT,            "MNG.INIT",            mng_init,        TD,     RCX),
	/* 22 */ TDH(VP_INIT,             "VP.INIT",             vp_init,         VP,     RCX),
	/* 25 */ TDH(MEM_SEPT_RD,         "MEM.SEPT.RD",         sept_rd,         TD,     RDX),
	/* 28 */ TDH(PHYMEM_PAGE_RECLAIM, "PHYMEM.PAGE.RECLAIM", page_reclaim,    MODULE, RCX),
	/* 29 */ TDH(MEM_PAGE_REMOVE,     "MEM.PAGE.REMOVE",     page_remove,     TD,     RDX),
	/* 30 */ TDH(MEM_SEPT_REMOVE,     "MEM.SEPT.REMOVE",     sept_remove,     TD,     RDX),
	/* 38 */ TDH(MEM_TRACK,           "MEM.TRACK",           mem_track,       TD,     RCX),
	/* 39 */ TDH(MEM_RANGE_UNBLOCK,   "MEM.RANGE.UNBLOCK",   range_unblock,   TD,     RDX),
	/* 40 */ TDH(PHYMEM_CACHE_WB,     "PHYMEM.CACHE.WB",     cache_wb,        MODULE, NONE),
	/* 41 */ TDH(PHYMEM_PAGE_WBINVD,  "PHYMEM.PAGE.WBINVD",  page_wbinvd,     MODULE, RCX),
	/* 58 */ TDH(PHYMEM_PAMT_ADD,     "PHYMEM.PAMT.ADD",     pamt_add,        MODULE, RCX),
	/* 59 */ TDH(PHYMEM_PAMT_REMOVE,  "PHYMEM.PAMT.REMOVE",  pamt_remove,     MODULE, RCX),
	/* g6 */ TDG(MEM_PAGE_ACCEPT,     "MEM.PAGE.ACCEPT",     page_accept,     VP,     RCX),
};

#undef TDH
#undef TDG

/* Count the leaf, and its busy/error outcome. */
static uint64_t seamcall_done(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
			      enum ccvm_event ev, uint64_t status)
{
	ccvm_account(m->p, vm, ev, 1);
	if (!(status & TDX_ERROR) || is_sw_status(status))
		return status;
	if (ccvm_tdx_is_busy(status))
		ccvm_account(m->p, vm, CCVM_EV_TDX_BUSY, 1);
	else if (TDX_STATUS_CLASS(status) != TDX_INTERRUPTED_RESUMABLE)
		ccvm_account(m->p, vm, CCVM_EV_TDX_ERROR, 1);
	return status;
}

/*
 * seamcall() - Make leaf @nr with operands @a: what every leaf does around its
 * handler.  A NULL handle (or a module not set up) is refused, uncounted; an
 * injected status replaces the handler; then ccvm_account() counts, costs and
 * traces the call, and a busy or error outcome, for the platform and the VM
 * charged (the TD's, else the caller's or the one the handler named).
 */
static uint64_t seamcall(unsigned int nr, struct leaf_args *a)
{
	const struct leaf *l = &leaves[leaf_slot(nr)];
	uint64_t st;

	a->leaf = nr;
	if (l->on == ON_VP)
		a->td = a->vp ? a->vp->td : NULL;
	if (l->on != ON_MODULE)
		a->m = a->td ? a->td->m : NULL;
	if (!a->m || !a->m->initialized)
		return TDX_OPERAND_INVALID | l->handle_reg;
	if (!inject_check(a->m, nr, &st))
		st = l->handler(a);
	if (l->on != ON_MODULE)
		a->vm = td_vm(a->td);
	return seamcall_done(a->m, a->vm, l->event, st);
}

const char *ccvm_tdx_leaf_name(unsigned int leaf)
{
	unsigned int slot = leaf_slot(leaf);

	return slot < NR_LEAF_SLOTS ? leaves[slot].name : NULL;
}

/* ---- SEAMCALL and TDCALL entry points (tdx-module.h) -------------------------------- */

uint64_t ccvm_tdh_mng_create(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
			     uint64_t tdr_pfn, uint32_t hkid, struct ccvm_tdx_td **td)
{
	return seamcall(CCVM_TDH_MNG_CREATE, &(struct leaf_args){
		.m = m, .vm = vm, .pfn = tdr_pfn, .keyid = hkid, .td_out = td });
}

uint64_t ccvm_tdh_mng_key_config(struct ccvm_tdx_td *td, unsigned int cpu)
{
	return seamcall(CCVM_TDH_MNG_KEY_CONFIG, &(struct leaf_args){ .td = td, .cpu = cpu });
}

uint64_t ccvm_tdh_mng_addcx(struct ccvm_tdx_td *td, uint64_t tdcs_pfn)
{
	return seamcall(CCVM_TDH_MNG_ADDCX, &(struct leaf_args){ .td = td, .pfn = tdcs_pfn });
}

uint64_t ccvm_tdh_mng_init(struct ccvm_tdx_td *td, const struct ccvm_tdx_td_params *params)
{
	return seamcall(CCVM_TDH_MNG_INIT, &(struct leaf_args){ .td = td, .params = params });
}

uint64_t ccvm_tdh_mr_finalize(struct ccvm_tdx_td *td)
{
	return seamcall(CCVM_TDH_MR_FINALIZE, &(struct leaf_args){ .td = td });
}

uint64_t ccvm_tdh_mng_vpflushdone(struct ccvm_tdx_td *td)
{
	return seamcall(CCVM_TDH_MNG_VPFLUSHDONE, &(struct leaf_args){ .td = td });
}

uint64_t ccvm_tdh_phymem_cache_wb(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				  unsigned int cpu, bool resume)
{
	return seamcall(CCVM_TDH_PHYMEM_CACHE_WB, &(struct leaf_args){
		.m = m, .vm = vm, .cpu = cpu, .resume = resume });
}

uint64_t ccvm_tdh_mng_key_freeid(struct ccvm_tdx_td *td)
{
	return seamcall(CCVM_TDH_MNG_KEY_FREEID, &(struct leaf_args){ .td = td });
}

uint64_t ccvm_tdh_vp_create(struct ccvm_tdx_td *td, uint64_t tdvpr_pfn,
			    struct ccvm_tdx_vp **vp)
{
	return seamcall(CCVM_TDH_VP_CREATE, &(struct leaf_args){
		.td = td, .pfn = tdvpr_pfn, .vp_out = vp });
}

uint64_t ccvm_tdh_vp_addcx(struct ccvm_tdx_vp *vp, uint64_t tdcx_pfn)
{
	return seamcall(CCVM_TDH_VP_ADDCX, &(struct leaf_args){ .vp = vp, .pfn = tdcx_pfn });
}

uint64_t ccvm_tdh_vp_init(struct ccvm_tdx_vp *vp, unsigned int cpu)
{
	return seamcall(CCVM_TDH_VP_INIT, &(struct leaf_args){ .vp = vp, .cpu = cpu });
}

uint64_t ccvm_tdh_vp_enter(struct ccvm_tdx_vp *vp, unsigned int cpu)
{
	struct leaf_args a = leaf_args_none;

	a.vp = vp;
	a.cpu = cpu;
	return seamcall(CCVM_TDH_VP_ENTER, &a);
}

uint64_t ccvm_tdh_vp_flush(struct ccvm_tdx_vp *vp, unsigned int cpu)
{
	return seamcall(CCVM_TDH_VP_FLUSH, &(struct leaf_args){ .vp = vp, .cpu = cpu });
}

uint64_t ccvm_tdh_mem_sept_add(struct ccvm_tdx_td *td, uint64_t gpa, int level,
			       uint64_t spt_pfn)
{
	return seamcall(CCVM_TDH_MEM_SEPT_ADD, &(struct leaf_args){
		.td = td, .gpa = gpa, .level = level, .pfn = spt_pfn });
}

uint64_t ccvm_tdh_mem_page_add(struct ccvm_tdx_td *td, uint64_t gpa, int level,
			       uint64_t pfn, const void *src)
{
	return seamcall(CCVM_TDH_MEM_PAGE_ADD, &(struct leaf_args){
		.td = td, .gpa = gpa, .level = level, .pfn = pfn, .src = src });
}

uint64_t ccvm_tdh_mr_extend(struct ccvm_tdx_td *td, uint64_t gpa)
{
	return seamcall(CCVM_TDH_MR_EXTEND, &(struct leaf_args){ .td = td, .gpa = gpa });
}

uint64_t ccvm_tdh_mem_page_aug(struct ccvm_tdx_td *td, uint64_t gpa, int level,
			       uint64_t pfn)
{
	struct leaf_args a = leaf_args_none;

	a.td = td;
	a.gpa = gpa;
	a.level = level;
	a.pfn = pfn;
	return seamcall(CCVM_TDH_MEM_PAGE_AUG, &a);
}

uint64_t ccvm_tdh_mem_range_block(struct ccvm_tdx_td *td, uint64_t gpa, int level)
{
	return seamcall_td_gpa(CCVM_TDH_MEM_RANGE_BLOCK, td, gpa, level, NULL);
}

uint64_t ccvm_tdh_mem_track(struct ccvm_tdx_td *td)
{
	return seamcall_td_gpa(CCVM_TDH_MEM_TRACK, td, 0, 0, NULL);
}

uint64_t ccvm_tdh_mem_page_remove(struct ccvm_tdx_td *td, uint64_t gpa, int level,
				  uint64_t *pfn)
{
	return seamcall_td_gpa(CCVM_TDH_MEM_PAGE_REMOVE, td, gpa, level, pfn);
}

uint64_t ccvm_tdh_mem_sept_rd(struct ccvm_tdx_td *td, uint64_t gpa, int level,
			      struct ccvm_tdx_sept_info *info)
{
	return seamcall(CCVM_TDH_MEM_SEPT_RD, &(struct leaf_args){
		.td = td, .gpa = gpa, .level = level, .sept_info = info });
}

uint64_t ccvm_tdh_mem_sept_remove(struct ccvm_tdx_td *td, uint64_t gpa, int level,
				  uint64_t *spt_pfn)
{
	return seamcall_td_gpa(CCVM_TDH_MEM_SEPT_REMOVE, td, gpa, level, spt_pfn);
}

uint64_t ccvm_tdh_mem_range_unblock(struct ccvm_tdx_td *td, uint64_t gpa, int level)
{
	return seamcall_td_gpa(CCVM_TDH_MEM_RANGE_UNBLOCK, td, gpa, level, NULL);
}

uint64_t ccvm_tdh_phymem_page_wbinvd(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				     uint64_t pfn, uint32_t keyid)
{
	struct leaf_args a = leaf_args_none;

	a.m = m;
	a.vm = vm;
	a.pfn = pfn;
	a.keyid = keyid;
	return seamcall(CCVM_TDH_PHYMEM_PAGE_WBINVD, &a);
}

uint64_t ccvm_tdh_phymem_page_reclaim(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				      uint64_t pfn, struct ccvm_tdx_reclaim_info *info)
{
	struct leaf_args a = leaf_args_none;

	a.m = m;
	a.vm = vm;
	a.pfn = pfn;
	a.reclaim_info = info;
	return seamcall(CCVM_TDH_PHYMEM_PAGE_RECLAIM, &a);
}

uint64_t ccvm_tdh_mem_page_demote(struct ccvm_tdx_td *td, uint64_t gpa, int level,
				  uint64_t spt_pfn)
{
	return seamcall(CCVM_TDH_MEM_PAGE_DEMOTE, &(struct leaf_args){
		.td = td, .gpa = gpa, .level = level, .pfn = spt_pfn });
}

uint64_t ccvm_tdh_phymem_pamt_add(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				  uint64_t pfn_2m, uint64_t pair0, uint64_t pair1)
{
	return seamcall(CCVM_TDH_PHYMEM_PAMT_ADD, &(struct leaf_args){
		.m = m, .vm = vm, .pfn = pfn_2m, .pair = { pair0, pair1 } });
}

uint64_t ccvm_tdh_phymem_pamt_remove(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				     uint64_t pfn_2m, uint64_t *pair0, uint64_t *pair1)
{
	return seamcall(CCVM_TDH_PHYMEM_PAMT_REMOVE, &(struct leaf_args){
		.m = m, .vm = vm, .pfn = pfn_2m, .pair_out = { pair0, pair1 } });
}

uint64_t ccvm_tdg_mem_page_accept(struct ccvm_tdx_vp *vp, uint64_t gpa, int level)
{
	struct leaf_args a = leaf_args_none;

	a.vp = vp;
	a.gpa = gpa;
	a.level = level;
	return seamcall(CCVM_TDX_LEAF_TDG_MEM_PAGE_ACCEPT, &a);
}

/* ---- inspection -------------------------------------------------------------------------- */

int ccvm_tdx_pamt_get(struct ccvm_tdx_module *m, uint64_t pfn,
		      struct ccvm_tdx_pamt_info *info)
{
	struct ccvm_tdx_td *td;
	uint64_t v;

	if (!m || !info || !pfn_ok(m, pfn))
		return -EINVAL;
	v = atomic_load_explicit(pamt_effective(m, pfn, &info->level), memory_order_acquire);
	info->type = pamt_type(v);
	info->bepoch = pamt_bepoch(v);
	info->poisoned = info->type != CCVM_TDX_PT_NDA && (v & PAMT_POISON);
	info->owner = 0;
	if (info->type != CCVM_TDX_PT_NDA && info->type != CCVM_TDX_PT_PAMT) {
		td = atomic_load_explicit(&m->slots[pamt_owner(v)].td, memory_order_acquire);
		info->owner = td ? td->tdr_pfn : 0;
	}
	return 0;
}

uint64_t ccvm_tdx_pamt_nr_assigned(struct ccvm_tdx_module *m)
{
	uint64_t n = 0;
	unsigned int s;

	for (s = 0; s < m->nr_cpu_slots; s++)
		n += atomic_load_explicit(&m->cpu[s].nr_assigned, memory_order_relaxed);
	return n;
}

bool ccvm_tdx_pamt_has_pair(struct ccvm_tdx_module *m, uint64_t pfn)
{
	if (!m || !m->initialized || pfn >= m->nr_pages)
		return false;
	return atomic_load_explicit(&region_of(m, pfn)->pair[0], memory_order_acquire) != 0;
}

int ccvm_tdx_pamt_usage(struct ccvm_tdx_module *m, struct ccvm_tdx_pamt_usage *u)
{
	uint64_t nr_1g, pages_4k = 0, r;

	if (!m || !u || !m->initialized)
		return -EINVAL;
	memset(u, 0, sizeof(*u));
	nr_1g = (m->nr_pages + PAGES_2M * PAGES_2M - 1) / (PAGES_2M * PAGES_2M);
	u->dynamic = atomic_load_explicit(&m->dpamt, memory_order_relaxed);
	u->static_bytes = (m->nr_2m + nr_1g) * CCVM_TDX_PAMT_ENTRY_BYTES;
	if (u->dynamic)
		u->static_bytes += (m->nr_pages * CCVM_TDX_DPAMT_BITMAP_BITS + 7) / 8;
	else
		u->static_bytes += m->nr_pages * CCVM_TDX_PAMT_ENTRY_BYTES;
	u->nr_pairs = atomic_load_explicit(&m->nr_pairs, memory_order_relaxed);
	u->dynamic_bytes = u->nr_pairs * CCVM_TDX_DPAMT_PAIR_PAGES * CCVM_PAGE_SIZE;
	for (r = 0; r < m->nr_2m; r++) {
		pages_4k += atomic_load_explicit(&m->pamt2m[r].nr_4k, memory_order_relaxed);
		if (pamt_type(atomic_load_explicit(&m->pamt2m[r].v, memory_order_relaxed)) !=
		    CCVM_TDX_PT_NDA)
			u->pages_2m += PAGES_2M;
	}
	u->pages_4k = pages_4k;
	return 0;
}

int ccvm_tdx_set_dynamic_pamt(struct ccvm_tdx_module *m, bool on)
{
	uint64_t r;

	if (!m || !m->initialized)
		return -EINVAL;
	if (atomic_load_explicit(&m->nr_pairs, memory_order_acquire)) {
		ccvm_log(CCVM_LOG_DEBUG, "tdx: Dynamic PAMT switched with pairs added");
		return -EBUSY;
	}
	for (r = 0; r < m->nr_2m; r++) {
		if (atomic_load_explicit(&m->pamt2m[r].nr_4k, memory_order_acquire)) {
			ccvm_log(CCVM_LOG_DEBUG,
				 "tdx: Dynamic PAMT switched with pages assigned at 4K");
			return -EBUSY;
		}
	}
	atomic_store_explicit(&m->dpamt, on, memory_order_release);
	return 0;
}

enum ccvm_tdx_lifecycle ccvm_tdx_td_lifecycle(const struct ccvm_tdx_td *td)
{
	return (enum ccvm_tdx_lifecycle)td_lifecycle(td);
}

enum ccvm_tdx_op_state ccvm_tdx_td_op_state(const struct ccvm_tdx_td *td)
{
	return (enum ccvm_tdx_op_state)td_op_state(td);
}

uint32_t ccvm_tdx_td_hkid(const struct ccvm_tdx_td *td)
{
	return td->hkid;
}

uint64_t ccvm_tdx_td_tdr_pfn(const struct ccvm_tdx_td *td)
{
	return td->tdr_pfn;
}

uint64_t ccvm_tdx_td_nr_children(const struct ccvm_tdx_td *td)
{
	return td_children(td);
}

uint64_t ccvm_tdx_td_epoch(const struct ccvm_tdx_td *td)
{
	return epoch_of(atomic_load_explicit(&td->epoch_word, memory_order_relaxed));
}

uint64_t ccvm_tdx_td_shared_bit(const struct ccvm_tdx_td *td)
{
	return td_op_state(td) == CCVM_TDX_OP_UNINITIALIZED ? 0 : td->shared_bit;
}

uint64_t ccvm_tdx_td_measurement(const struct ccvm_tdx_td *td)
{
	return td->mrtd;
}

struct ccvm_vm *ccvm_tdx_td_vm(const struct ccvm_tdx_td *td)
{
	return td_vm(td);
}

void ccvm_tdx_td_detach_vm(struct ccvm_tdx_td *td)
{
	if (td)
		atomic_store_explicit(&td->vm, NULL, memory_order_relaxed);
}

struct ccvm_tdx_td *ccvm_tdx_vp_td(const struct ccvm_tdx_vp *vp)
{
	return vp->td;
}

uint64_t ccvm_tdx_vp_tdvpr_pfn(const struct ccvm_tdx_vp *vp)
{
	return vp->tdvpr_pfn;
}

bool ccvm_tdx_vp_in_guest(const struct ccvm_tdx_vp *vp)
{
	return vp_in_guest(vp);
}

bool ccvm_tdx_vp_initialized(const struct ccvm_tdx_vp *vp)
{
	return atomic_load_explicit(&vp->initialized, memory_order_relaxed);
}

int ccvm_tdx_vp_cpu(const struct ccvm_tdx_vp *vp)
{
	return atomic_load_explicit(&vp->cpu, memory_order_relaxed);
}
