/* SPDX-License-Identifier: MIT */
/*
 * The "tdx" backend: KVM's TDX code (arch/x86/kvm/vmx/tdx.c of Linux 6.16,
 * with the newer design where PAGE.ADD is issued from the map path) driving
 * the simulated TDX module of tdx-module.h, through SEAMCALLs only.
 * docs/semantics.md sections 4-6 and 9 are the specification.
 *
 * State per TD (struct kvm_tdx, the VM's private area):
 *   state      UNINITIALIZED --vm_init (INIT_VM)--> INITIALIZED
 *              --vm_finalize (MR.FINALIZE)--> RUNNABLE
 *   hkid       ASSIGNED from INIT_VM until vm_pre_destroy or vm_terminate
 *              releases it (RELEASED), or LEAKED when the release failed.
 *              While ASSIGNED, private pages leave the S-EPT by BLOCK,
 *              TRACK + kick, REMOVE, WBINVD; once RELEASED (module lifecycle
 *              TEARDOWN) by one PHYMEM.PAGE.RECLAIM each, and only then may
 *              S-EPT, vCPU and TD control pages be reclaimed (I13, I15).
 *              The release holds the VM's mmu_lock for write, as KVM's
 *              does: every op that needs the key to stay (installs,
 *              removals, guest entry and accesses) runs under mmu_lock, so
 *              a release never runs under a removal (the race of
 *              docs/semantics.md 9) and the hot paths take no lock of ours.
 *
 * Two EPTs: the shared EPT is the core's direct root; the Secure-EPT is
 * mirrored by the core's mirror root, whose hooks below turn every change
 * into SEAMCALLs.  GFNs never carry the shared bit (I29): an op that sees
 * one bugs the VM.
 *
 * Busy policy (docs/semantics.md 6.11).  Installs (SEPT.ADD, PAGE.AUG,
 * PAGE.ADD) run under mmu_lock read and answer a busy module with -EBUSY:
 * the core restores the frozen SPTE and runs the whole fault again, never
 * spinning on a SEAMCALL (I20).  Removals run under mmu_lock write and
 * cannot be undone halfway, so each of BLOCK, TRACK and REMOVE gets exactly
 * two tries: the second after blocking guest entry (wait_for_sept_zap) and
 * kicking every vCPU out of the guest, which leaves nobody to contend; a
 * second failure bugs the VM (I19, I21).  The study knob
 * CCVM_STUDY_TDX_BUSY (ccvm.h, docs/studies/003.md) brings back the two
 * policies the thread weighed against this one: spinning on the busy leaf
 * inside the SEAMCALL wrapper, and giving up at once (busy_spin_again(),
 * install_errno(), removal_seamcall()).
 *
 * Pages the module still owns after a failed removal, or that a failed
 * vCPU creation donated, are "orphans": they cannot go back to the host
 * while the HKID is held, so vm_destroy reclaims them after the release
 * (the PAMT then holds nothing of the TD) and leaks them if that fails.
 * A bugged VM issues no more SEAMCALLs but teardown ones (I27): its
 * removals are refused (the core leaks those pages) and a gmem release
 * defers to teardown whenever it can pin the inode.
 *
 * Deferred removal (the gmem_defer_removal RFC, NAKed upstream) is off by
 * default, as in KVM 6.16: a guest_memfd released while the TD holds its
 * HKID has every page removed dynamically.  The study knob
 * CCVM_STUDY_GMEM_DEFER_REMOVAL (ccvm.h) turns it on per TD;
 * ccvm_vm_terminate() releases the HKID early
 * instead (KVM_TDX_TERMINATE_VM), after which a release is RECLAIM only.
 *
 * Locks, outer to inner: mmu_lock (core; the HKID release takes it for
 * write through ccvm_vm_mmu_write_lock(), as KVM's does) ->
 * tdx_platform.tdx_lock (KVM's global tdx_lock: every key-management
 * leaf, so TDs created and destroyed in parallel never meet in the KOT)
 * -> kvm_tdx.lock (deferred inodes, orphans).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/backend.h>

#include "tdx.h"

#define TDX_CACHE_WB_MAX_TRIES	10000u	/* resumes of one package's write-back */
#define TDX_MR_EXTEND_CHUNK	256u
#define TDX_MAP_GPA_MAX_LEN	CCVM_HPAGE_2M_SIZE
/* TD_PARAMS.max_vcpus: the core enforces each VM's own, lower limit. */
#define TDX_TD_MAX_VCPUS	1024u
#define TDX_PAGES_2M		(CCVM_HPAGE_2M_SIZE >> CCVM_PAGE_SHIFT)
/* An orphan the core already leaked: reclaim it, never free it. */
#define ORPHAN_LEAKED		(1ull << 63)

/*
 * The platform's private area: the module, then KVM's global state.
 * Dynamic PAMT (CCVM_PLATFORM_TDX_DYNAMIC_PAMT): pamt_refs counts, per 2M
 * region of host memory, the pages TDs hold in it at 4K (guest pages
 * mapped at 4K, S-EPT pages, TDR, TDCS, TDVPR, TDCX); a region holds a
 * page pair exactly while its count is non-zero (I38).  The count moves
 * without the lock except from and to 0: pamt_lock serialises those
 * transitions with their PAMT.ADD / REMOVE (the kernel's pamt_lock).
 */
struct tdx_platform {
	struct ccvm_tdx_module module;	/* first: the priv pointer is the module */
	struct ccvm_mutex tdx_lock;
	_Atomic uint32_t *pamt_refs;	/* [nr_regions], NULL: static PAMT */
	uint64_t nr_regions;
	struct ccvm_mutex pamt_lock;
	uint64_t nr_pairs;		/* pairs added and not removed (pamt_lock) */
	uint64_t nr_stuck;		/* of those, pairs whose REMOVE failed (pamt_lock) */
};

enum tdx_td_state {
	TD_STATE_UNINITIALIZED,
	TD_STATE_INITIALIZED,
	TD_STATE_RUNNABLE,
};

enum tdx_hkid_state {
	HKID_NONE,
	HKID_ASSIGNED,
	HKID_RELEASED,
	HKID_LEAKED,
};

/*
 * vCPUs between a VP.ENTER and its vcpu_exit op, counted on the host CPU
 * each entered or left from (the sum over the CPUs counts; each wraps): a
 * line of its own, so that two vCPUs' entries and exits do not move one
 * line between the CPUs.
 */
struct tdx_cpu_count {
	_Alignas(64) _Atomic uint32_t nr_in_guest;
};

struct kvm_tdx {
	struct ccvm_tdx_module *m;
	struct ccvm_tdx_td *td;
	uint32_t hkid;
	uint64_t tdr_pfn;
	uint64_t tdcs_pfn[CCVM_TDX_NR_TDCS];
	unsigned int nr_tdcs;		/* TDCS pages the TD owns */
	_Atomic int state;		/* enum tdx_td_state */
	_Atomic int hkid_state;		/* enum tdx_hkid_state, written under mmu_lock */
	_Atomic bool wait_for_sept_zap;
	struct tdx_cpu_count *in_guest;	/* [nr_cpu_slots] (ccvm_tdx_cpu_slots()) */
	unsigned int nr_cpu_slots;

	struct ccvm_mutex lock;
	struct ccvm_gmem_inode *deferred[CCVM_TDX_MAX_GMEM_INODES];
	unsigned int nr_deferred;
	uint64_t *orphans;		/* pfn | ORPHAN_LEAKED */
	size_t nr_orphans, cap_orphans;
	bool locks_ready;
};

struct vcpu_tdx {
	struct ccvm_tdx_vp *vp;
	uint64_t tdvpr_pfn;
	uint64_t tdcx_pfn[CCVM_TDX_NR_TDCX];
	unsigned int nr_tdcx;
	unsigned int cpu;		/* the host CPU it runs on */
};

/* ---- helpers ---------------------------------------------------------- */

static inline struct tdx_platform *tdx_plat(struct ccvm_platform *p)
{
	return ccvm_platform_priv(p);
}

static inline struct kvm_tdx *to_kvm_tdx(struct ccvm_vm *vm)
{
	return ccvm_vm_priv(vm);
}

static inline struct vcpu_tdx *to_tdx(struct ccvm_vcpu *v)
{
	return ccvm_vcpu_priv(v);
}

static inline int hkid_state(struct kvm_tdx *kt)
{
	return atomic_load_explicit(&kt->hkid_state, memory_order_acquire);
}

static inline int td_state(struct kvm_tdx *kt)
{
	return atomic_load_explicit(&kt->state, memory_order_acquire);
}

static inline bool tdx_error(uint64_t st)
{
	return st & TDX_ERROR;
}

/* PREVIOUS_TLB_EPOCH_BUSY is contention too: a kick clears it. */
static inline bool tdx_busy(uint64_t st)
{
	return ccvm_tdx_is_busy(st) || TDX_STATUS_CLASS(st) == TDX_PREVIOUS_TLB_EPOCH_BUSY;
}

/*
 * Study 003's policies (CCVM_STUDY_TDX_BUSY).  busy_spin_again(): whether
 * the wrapper calls a leaf that answered @st again, @calls made so far:
 * only under SPIN, with mmu_lock held, no yield and no kick, up to
 * CCVM_TDX_BUSY_SPIN_MAX calls.
 */
static bool busy_spin_again(struct ccvm_vm *vm, uint64_t st, unsigned int calls)
{
	return tdx_busy(st) && calls < CCVM_TDX_BUSY_SPIN_MAX &&
	       ccvm_vm_study_knob(vm, CCVM_STUDY_TDX_BUSY) == CCVM_TDX_BUSY_SPIN;
}

/* Whether a busy status that is left is an error (SPIN, GIVE_UP). */
static bool busy_gives_up(struct ccvm_vm *vm, uint64_t st)
{
	if (!tdx_busy(st) || ccvm_vm_study_knob(vm, CCVM_STUDY_TDX_BUSY) == CCVM_TDX_BUSY_MERGED)
		return false;
	ccvm_log(CCVM_LOG_DEBUG, "tdx vm %u: busy SEAMCALL given up (study knob "
		 "CCVM_STUDY_TDX_BUSY = %u)", ccvm_vm_id(vm),
		 ccvm_vm_study_knob(vm, CCVM_STUDY_TDX_BUSY));
	return true;
}

/* The errno KVM gives userspace for a failed SEAMCALL. */
static int tdx_errno(uint64_t st)
{
	if (!tdx_error(st))
		return 0;
	if (tdx_busy(st))
		return -EBUSY;
	switch (TDX_STATUS_CLASS(st)) {
	case TDX_RND_NO_ENTROPY:
		return -EAGAIN;
	case TDX_OPERAND_INVALID:
		return -EINVAL;
	default:
		return st == CCVM_TDX_SW_NOMEM ? -ENOMEM : -EIO;
	}
}

static void tdx_warn(struct ccvm_vm *vm, unsigned int leaf, uint64_t st)
{
	ccvm_log(CCVM_LOG_WARN, "tdx vm %u: %s failed: %s (%#" PRIx64 ")",
		 vm ? ccvm_vm_id(vm) : 0, ccvm_tdx_leaf_name(leaf),
		 ccvm_tdx_status_name(st), st);
}

/* A host CPU of package @pkg (KEY.CONFIG and CACHE.WB run once per package). */
static unsigned int package_cpu(struct ccvm_tdx_module *m, struct ccvm_platform *p,
				unsigned int pkg)
{
	unsigned int c, n = ccvm_platform_nr_cpus(p);

	for (c = 0; c < n; c++)
		if (ccvm_tdx_cpu_package(m, c) == pkg)
			return c;
	return 0;
}

static void free_pages(struct ccvm_platform *p, const uint64_t *pfn, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		ccvm_page_free(p, pfn[i]);
}

/* ---- Dynamic PAMT (tdx_pamt_get / tdx_pamt_put) ---------------------------- */

#define PAMT_REMOVE_TRIES	2u	/* a busy REMOVE: the lock holder is transient */

static inline _Atomic uint32_t *pamt_ref(struct tdx_platform *tp, uint64_t pfn)
{
	return &tp->pamt_refs[pfn / TDX_PAGES_2M];
}

/*
 * @n more 4K users of @pfn's 2M region (a page about to go to a TD at 4K,
 * or a 2M page about to be demoted to 512): on the region's first user,
 * two pages from the platform and PHYMEM.PAMT.ADD, under pamt_lock.  Every
 * get is matched by a pamt_put() once the page is the host's again, or at
 * once when the SEAMCALL that would hand it over fails.
 * Return: 0; -ENOMEM (no pages for the pair: nothing changed); -EBUSY or
 * -EIO (PAMT.ADD failed: nothing changed).
 */
static int pamt_get_n(struct ccvm_vm *vm, struct tdx_platform *tp, uint64_t pfn, uint32_t n)
{
	struct ccvm_platform *p = tp->module.p;
	uint64_t pair[CCVM_TDX_DPAMT_PAIR_PAGES], st;
	_Atomic uint32_t *ref;
	uint32_t cur;
	int err;

	if (!tp->pamt_refs)
		return 0;
	ref = pamt_ref(tp, pfn);
	cur = atomic_load_explicit(ref, memory_order_acquire);
	while (cur)
		if (atomic_compare_exchange_weak_explicit(ref, &cur, cur + n, memory_order_acq_rel,
							  memory_order_acquire))
			return 0;
	ccvm_mutex_lock(&tp->pamt_lock);
	if (atomic_load_explicit(ref, memory_order_acquire)) {
		atomic_fetch_add_explicit(ref, n, memory_order_acq_rel);
		ccvm_mutex_unlock(&tp->pamt_lock);
		return 0;
	}
	err = ccvm_page_alloc(p, &pair[0]);
	if (!err) {
		err = ccvm_page_alloc(p, &pair[1]);
		if (err)
			ccvm_page_free(p, pair[0]);
	}
	if (err) {
		ccvm_mutex_unlock(&tp->pamt_lock);
		ccvm_log(CCVM_LOG_DEBUG, "tdx: no pages for the PAMT pair of the 2M region of "
			 "pfn %#" PRIx64, pfn);
		return err;
	}
	st = ccvm_tdh_phymem_pamt_add(&tp->module, vm, pfn - pfn % TDX_PAGES_2M, pair[0],
				      pair[1]);
	if (tdx_error(st)) {
		free_pages(p, pair, CCVM_TDX_DPAMT_PAIR_PAGES);
		ccvm_mutex_unlock(&tp->pamt_lock);
		tdx_warn(vm, CCVM_TDH_PHYMEM_PAMT_ADD, st);
		return tdx_busy(st) ? -EBUSY : -EIO;
	}
	atomic_store_explicit(ref, n, memory_order_release);
	tp->nr_pairs++;
	ccvm_pamt_account(p, 1, CCVM_TDX_DPAMT_PAIR_PAGES * CCVM_PAGE_SIZE);
	ccvm_mutex_unlock(&tp->pamt_lock);
	return 0;
}

static int pamt_get(struct ccvm_vm *vm, struct tdx_platform *tp, uint64_t pfn)
{
	return pamt_get_n(vm, tp, pfn, 1);
}

/*
 * @n fewer 4K users of @pfn's region; the last one takes the pair back
 * (PHYMEM.PAMT.REMOVE) and frees its pages.  A REMOVE that fails leaves
 * the pair with the module for good (counted as stuck, warned about).
 */
static void pamt_put_n(struct ccvm_vm *vm, struct tdx_platform *tp, uint64_t pfn, uint32_t n)
{
	struct ccvm_platform *p = tp->module.p;
	uint64_t pair[CCVM_TDX_DPAMT_PAIR_PAGES], st = TDX_SUCCESS;
	_Atomic uint32_t *ref;
	unsigned int tries;
	uint32_t cur;

	if (!tp->pamt_refs)
		return;
	ref = pamt_ref(tp, pfn);
	cur = atomic_load_explicit(ref, memory_order_acquire);
	while (cur > n)
		if (atomic_compare_exchange_weak_explicit(ref, &cur, cur - n, memory_order_acq_rel,
							  memory_order_acquire))
			return;
	ccvm_mutex_lock(&tp->pamt_lock);
	cur = atomic_fetch_sub_explicit(ref, n, memory_order_acq_rel);
	if (cur != n) {
		if (cur < n) {
			atomic_store_explicit(ref, 0, memory_order_release);
			ccvm_log(CCVM_LOG_WARN, "tdx: PAMT count of the 2M region of pfn %#" PRIx64
				 " below zero", pfn);
		}
		ccvm_mutex_unlock(&tp->pamt_lock);
		return;
	}
	for (tries = 0; tries < PAMT_REMOVE_TRIES; tries++) {
		st = ccvm_tdh_phymem_pamt_remove(&tp->module, vm, pfn - pfn % TDX_PAGES_2M,
						 &pair[0], &pair[1]);
		if (!tdx_busy(st))
			break;
	}
	if (tdx_error(st)) {
		tp->nr_stuck++;
		ccvm_mutex_unlock(&tp->pamt_lock);
		tdx_warn(vm, CCVM_TDH_PHYMEM_PAMT_REMOVE, st);
		ccvm_log(CCVM_LOG_WARN, "tdx: the PAMT pair of the 2M region of pfn %#" PRIx64
			 " stays with the module", pfn);
		return;
	}
	ccvm_page_clear(p, pair[0]);
	ccvm_page_clear(p, pair[1]);
	free_pages(p, pair, CCVM_TDX_DPAMT_PAIR_PAGES);
	tp->nr_pairs--;
	ccvm_pamt_account(p, -1, -(int64_t)(CCVM_TDX_DPAMT_PAIR_PAGES * CCVM_PAGE_SIZE));
	ccvm_mutex_unlock(&tp->pamt_lock);
}

static void pamt_put(struct ccvm_vm *vm, struct tdx_platform *tp, uint64_t pfn)
{
	pamt_put_n(vm, tp, pfn, 1);
}

/* Remember a TD-owned page for reclaim after the HKID release. */
static void orphan_add(struct kvm_tdx *kt, uint64_t pfn, bool leaked)
{
	ccvm_mutex_lock(&kt->lock);
	if (kt->nr_orphans == kt->cap_orphans) {
		size_t cap = kt->cap_orphans ? kt->cap_orphans * 2 : 16;
		uint64_t *o = realloc(kt->orphans, cap * sizeof(*o));

		if (!o) {
			/* Without a record it can never be reclaimed: it stays leaked. */
			ccvm_mutex_unlock(&kt->lock);
			ccvm_log(CCVM_LOG_WARN, "tdx: pfn %#" PRIx64 " lost for reclaim", pfn);
			return;
		}
		ccvm_model_bytes(kt->m->p, (int64_t)((cap - kt->cap_orphans) * sizeof(*o)));
		kt->orphans = o;
		kt->cap_orphans = cap;
	}
	kt->orphans[kt->nr_orphans++] = pfn | (leaked ? ORPHAN_LEAKED : 0);
	ccvm_mutex_unlock(&kt->lock);
}

/*
 * Take back a TD-owned control or S-EPT page after the HKID release and
 * give it to the host (cleared), or leak it when the module refuses (I18).
 */
static bool reclaim_page(struct ccvm_vm *vm, struct kvm_tdx *kt, uint64_t pfn, bool give_back)
{
	struct ccvm_platform *p = ccvm_vm_platform(vm);
	struct ccvm_tdx_reclaim_info info = { 0 };
	uint64_t st = ccvm_tdh_phymem_page_reclaim(kt->m, vm, pfn, &info);

	if (tdx_error(st)) {
		tdx_warn(vm, CCVM_TDH_PHYMEM_PAGE_RECLAIM, st);
		if (give_back)
			ccvm_page_leak(p, pfn);
		return false;
	}
	/* A page held at 4K leaves its region (a 2M page never entered one). */
	if (info.level == CCVM_TDX_LEVEL_4K)
		pamt_put(vm, tdx_plat(p), pfn);
	if (give_back) {
		ccvm_page_clear(p, pfn);
		ccvm_page_free(p, pfn);
	}
	return true;
}

/* ---- HKID release (tdx_mmu_release_hkid) -------------------------------- */

struct flush_ctx {
	struct kvm_tdx *kt;
	struct ccvm_vm *vm;
};

/* TDH.VP.FLUSH on the CPU the vCPU is associated with. */
static int flush_vcpu(struct ccvm_vcpu *v, void *arg)
{
	struct flush_ctx *ctx = arg;
	struct vcpu_tdx *vt = to_tdx(v);
	uint64_t st;
	int cpu;

	if (!vt->vp)
		return 0;
	/* The kick's IPI takes a vCPU out that entered between kick and flush. */
	ccvm_tdx_vp_exit(vt->vp);
	cpu = ccvm_tdx_vp_cpu(vt->vp);
	if (cpu < 0)
		return 0;
	st = ccvm_tdh_vp_flush(vt->vp, (unsigned int)cpu);
	if (tdx_error(st) && TDX_STATUS_CLASS(st) != TDX_VCPU_NOT_ASSOCIATED)
		tdx_warn(ctx->vm, CCVM_TDH_VP_FLUSH, st);
	return 0;
}

/* The write-back of one package, resumed while the module asks (bounded). */
static uint64_t cache_wb_package(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				 unsigned int cpu)
{
	uint64_t st = ccvm_tdh_phymem_cache_wb(m, vm, cpu, false);
	unsigned int tries = 0;

	while (TDX_STATUS_CLASS(st) == TDX_INTERRUPTED_RESUMABLE &&
	       ++tries < TDX_CACHE_WB_MAX_TRIES)
		st = ccvm_tdh_phymem_cache_wb(m, vm, cpu, true);
	return st;
}

/*
 * Release the HKID (I14): flush every vCPU, VPFLUSHDONE, CACHE.WB on every
 * package, KEY.FREEID, then the host's id.  Any failure leaks the HKID for
 * good, and with it every page the TD still owns.  The caller holds
 * mmu_lock for write.  Return: 0 or -EIO (leaked).
 */
static int release_hkid_locked(struct ccvm_vm *vm, struct kvm_tdx *kt)
{
	struct ccvm_platform *p = ccvm_vm_platform(vm);
	struct tdx_platform *tp = tdx_plat(p);
	struct flush_ctx ctx = { .kt = kt, .vm = vm };
	unsigned int pkg, leaf = 0;
	uint64_t st;

	if (hkid_state(kt) != HKID_ASSIGNED)
		return hkid_state(kt) == HKID_LEAKED ? -EIO : 0;

	/* No vCPU may be in the guest or enter it again (entry checks the state). */
	if (ccvm_vm_nr_vcpus(vm))
		ccvm_vm_kick_all(vm);
	ccvm_vm_for_each_vcpu(vm, flush_vcpu, &ctx);

	ccvm_mutex_lock(&tp->tdx_lock);
	st = ccvm_tdh_mng_vpflushdone(kt->td);
	if (tdx_error(st)) {
		leaf = CCVM_TDH_MNG_VPFLUSHDONE;
		goto leak;
	}
	for (pkg = 0; pkg < ccvm_tdx_nr_packages(kt->m); pkg++) {
		st = cache_wb_package(kt->m, vm, package_cpu(kt->m, p, pkg));
		if (tdx_error(st)) {
			leaf = CCVM_TDH_PHYMEM_CACHE_WB;
			goto leak;
		}
	}
	st = ccvm_tdh_mng_key_freeid(kt->td);
	if (tdx_error(st)) {
		leaf = CCVM_TDH_MNG_KEY_FREEID;
		goto leak;
	}
	if (ccvm_tdx_hkid_free(kt->m, vm, kt->hkid))
		ccvm_log(CCVM_LOG_WARN, "tdx vm %u: HKID %u not returned to the pool",
			 ccvm_vm_id(vm), kt->hkid);
	atomic_store_explicit(&kt->hkid_state, HKID_RELEASED, memory_order_release);
	ccvm_mutex_unlock(&tp->tdx_lock);
	return 0;

leak:
	ccvm_mutex_unlock(&tp->tdx_lock);
	tdx_warn(vm, leaf, st);
	ccvm_log(CCVM_LOG_WARN, "tdx vm %u: HKID %u leaked, the TD's pages with it",
		 ccvm_vm_id(vm), kt->hkid);
	ccvm_tdx_hkid_leak(kt->m, vm, kt->hkid);
	atomic_store_explicit(&kt->hkid_state, HKID_LEAKED, memory_order_release);
	return -EIO;
}

static int release_hkid(struct ccvm_vm *vm, struct kvm_tdx *kt)
{
	int ret;

	ccvm_vm_mmu_write_lock(vm);
	ret = release_hkid_locked(vm, kt);
	ccvm_vm_mmu_write_unlock(vm);
	return ret;
}

/*
 * Give back the TD's own pages once nothing else is left: orphans, TDCS,
 * then the TDR last with a write-back under the global key (I15).  With
 * the HKID leaked nothing can be reclaimed: every page is leaked and the
 * TD stays in the module, detached from the VM.
 */
static void reclaim_td(struct ccvm_vm *vm, struct kvm_tdx *kt)
{
	struct ccvm_platform *p = ccvm_vm_platform(vm);
	bool released = hkid_state(kt) == HKID_RELEASED;
	bool tdr_ok = released;
	unsigned int i;
	size_t j;
	uint64_t st;

	for (j = 0; j < kt->nr_orphans; j++) {
		uint64_t pfn = kt->orphans[j] & ~ORPHAN_LEAKED;
		bool leaked = kt->orphans[j] & ORPHAN_LEAKED;

		/* Teardown reclaim is a long loop: let others in now and then. */
		if (j && j % CCVM_RESCHED_ENTRIES == 0)
			ccvm_sched_yield(ccvm_platform_sched(p), "tdx reclaim");
		if (!released) {
			ccvm_page_leak(p, pfn);
			continue;
		}
		/* A page the core leaked stays leaked; the PAMT lets go of it. */
		if (!reclaim_page(vm, kt, pfn, !leaked))
			tdr_ok = false;
	}
	kt->nr_orphans = 0;
	for (i = 0; i < kt->nr_tdcs; i++) {
		if (!released)
			ccvm_page_leak(p, kt->tdcs_pfn[i]);
		else if (!reclaim_page(vm, kt, kt->tdcs_pfn[i], true))
			tdr_ok = false;
	}
	kt->nr_tdcs = 0;
	if (tdr_ok) {
		st = ccvm_tdh_phymem_page_reclaim(kt->m, vm, kt->tdr_pfn, NULL);
		if (tdx_error(st)) {
			tdx_warn(vm, CCVM_TDH_PHYMEM_PAGE_RECLAIM, st);
			tdr_ok = false;
		} else {
			pamt_put(vm, tdx_plat(p), kt->tdr_pfn);
		}
	}
	if (!tdr_ok) {
		ccvm_tdx_td_detach_vm(kt->td);
		ccvm_page_leak(p, kt->tdr_pfn);
	} else {
		/* The TDR was encrypted with the module's global key. */
		st = ccvm_tdh_phymem_page_wbinvd(kt->m, vm, kt->tdr_pfn, CCVM_TDX_GLOBAL_KEYID);
		if (tdx_error(st)) {
			tdx_warn(vm, CCVM_TDH_PHYMEM_PAGE_WBINVD, st);
			ccvm_page_leak(p, kt->tdr_pfn);
		} else {
			ccvm_page_clear(p, kt->tdr_pfn);
			ccvm_page_free(p, kt->tdr_pfn);
		}
	}
	kt->td = NULL;
}

/* ---- platform and caps ---------------------------------------------------- */

static void tdx_get_caps(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
{
	(void)vm;
	caps->vm_type = 5;	/* KVM_X86_TDX_VM */
	caps->memory_attributes = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	/* MMAP always (6.18); the core allows INIT_SHARED only in place. */
	caps->gmem_flags = CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED |
			   CCVM_GMEM_FLAG_HUGETLB;
	/* 2M private leaves after finalize (max_mapping_level); PAGE.ADD is 4K. */
	caps->private_max_level = CCVM_LEVEL_2M;
	caps->shared_max_level = CCVM_LEVEL_2M;
	caps->has_shared_bit = true;
	caps->has_mirror_root = true;
	caps->requires_accept = true;
	caps->needs_finalize = true;
	caps->preserves_data_without_punch = false;
	caps->private_readable_by_host = false;
	caps->map_gpa_max_bytes = TDX_MAP_GPA_MAX_LEN;
	caps->study_knobs = 1ull << CCVM_STUDY_GMEM_DEFER_REMOVAL |
			    1ull << CCVM_STUDY_HKID_RELEASE | 1ull << CCVM_STUDY_TDX_BUSY;
}

static int tdx_platform_init(struct ccvm_platform *p)
{
	struct tdx_platform *tp = tdx_plat(p);
	int err = ccvm_tdx_module_init(p, &tp->module);

	if (err)
		return err;
	/*
	 * KVM issues VP.ENTER without mmu_lock, so a removal can meet an entry
	 * still inside the module; ours is issued under mmu_lock read, and the
	 * module's entry window gives the entry back its length (TRACK vs
	 * VP.ENTER on the TD epoch lock, docs/semantics.md 6.11).
	 */
	ccvm_tdx_set_entry_window(&tp->module, true);
	if (ccvm_platform_flags(p) & CCVM_PLATFORM_TDX_DYNAMIC_PAMT) {
		tp->nr_regions = (ccvm_platform_nr_pages(p) + TDX_PAGES_2M - 1) / TDX_PAGES_2M;
		tp->pamt_refs = calloc(tp->nr_regions, sizeof(*tp->pamt_refs));
		if (!tp->pamt_refs) {
			ccvm_tdx_module_fini(&tp->module);
			return -ENOMEM;
		}
		ccvm_model_bytes(p, (int64_t)(tp->nr_regions * sizeof(*tp->pamt_refs)));
		ccvm_tdx_set_dynamic_pamt(&tp->module, true);
		ccvm_mutex_init(&tp->pamt_lock, ccvm_platform_sched(p), "tdx pamt_lock");
	}
	ccvm_mutex_init(&tp->tdx_lock, ccvm_platform_sched(p), "tdx_lock");
	return 0;
}

static void tdx_platform_destroy(struct ccvm_platform *p)
{
	struct tdx_platform *tp = tdx_plat(p);

	ccvm_tdx_module_fini(&tp->module);
	ccvm_mutex_destroy(&tp->tdx_lock);
	if (tp->pamt_refs) {
		ccvm_mutex_destroy(&tp->pamt_lock);
		ccvm_model_bytes(p, -(int64_t)(tp->nr_regions * sizeof(*tp->pamt_refs)));
		free(tp->pamt_refs);
		tp->pamt_refs = NULL;
	}
}

/* ---- VM lifecycle ------------------------------------------------------------ */

static void kvm_tdx_locks_fini(struct kvm_tdx *kt)
{
	if (!kt->locks_ready)
		return;
	ccvm_mutex_destroy(&kt->lock);
	free(kt->in_guest);
	kt->in_guest = NULL;
	ccvm_model_bytes(kt->m->p, -(int64_t)(kt->cap_orphans * sizeof(*kt->orphans)));
	free(kt->orphans);
	kt->orphans = NULL;
	kt->cap_orphans = 0;
	kt->locks_ready = false;
}

/*
 * KVM_TDX_INIT_VM (tdx_td_init): HKID, TDR and TDCS pages, MNG.CREATE,
 * KEY.CONFIG on every package, ADDCX, MNG.INIT.  A failure unwinds it all:
 * what the TD owns comes back through the HKID release and RECLAIM.
 */
static int tdx_vm_init(struct ccvm_vm *vm)
{
	struct ccvm_platform *p = ccvm_vm_platform(vm);
	struct tdx_platform *tp = tdx_plat(p);
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	uint64_t pages[1 + CCVM_TDX_NR_TDCS];
	struct ccvm_tdx_td_params params = {
		.attributes = 0,	/* no SEPT_VE_DISABLE: pending pages give #VE */
		.gpaw = ccvm_vm_gpa_bits(vm),
		.max_vcpus = TDX_TD_MAX_VCPUS,
	};
	unsigned int i, n = 0, pkg, leaf;
	uint64_t st = TDX_SUCCESS;
	int err;

	/* The S-EPT has 4 or 5 levels: GPAW 48 or 52 only. */
	if (params.gpaw != 48 && params.gpaw != 52)
		return -EINVAL;
	memset(kt, 0, sizeof(*kt));
	kt->m = &tp->module;
	kt->nr_cpu_slots = ccvm_tdx_cpu_slots(kt->m);
	kt->in_guest = ccvm_zalloc_lines(kt->nr_cpu_slots * sizeof(*kt->in_guest));
	if (!kt->in_guest)
		return -ENOMEM;
	ccvm_mutex_init(&kt->lock, ccvm_platform_sched(p), "kvm_tdx->lock");
	kt->locks_ready = true;

	err = ccvm_tdx_hkid_alloc(kt->m, vm, &kt->hkid);
	if (err)
		goto out_locks;
	for (n = 0; n < 1 + CCVM_TDX_NR_TDCS; n++) {
		err = ccvm_page_alloc(p, &pages[n]);
		if (err)
			goto out_pages;
	}
	kt->tdr_pfn = pages[0];
	err = pamt_get(vm, tp, kt->tdr_pfn);
	if (err)
		goto out_pages;

	ccvm_mutex_lock(&tp->tdx_lock);
	leaf = CCVM_TDH_MNG_CREATE;
	st = ccvm_tdh_mng_create(kt->m, vm, kt->tdr_pfn, kt->hkid, &kt->td);
	if (!tdx_error(st)) {
		atomic_store(&kt->hkid_state, HKID_ASSIGNED);
		leaf = CCVM_TDH_MNG_KEY_CONFIG;
		for (pkg = 0; pkg < ccvm_tdx_nr_packages(kt->m) && !tdx_error(st); pkg++)
			st = ccvm_tdh_mng_key_config(kt->td, package_cpu(kt->m, p, pkg));
	}
	ccvm_mutex_unlock(&tp->tdx_lock);
	if (tdx_error(st)) {
		err = tdx_errno(st);
		tdx_warn(vm, leaf, st);
		if (!kt->td) {
			pamt_put(vm, tp, kt->tdr_pfn);
			goto out_pages;
		}
		goto out_td;
	}
	for (i = 0; i < CCVM_TDX_NR_TDCS; i++) {
		err = pamt_get(vm, tp, pages[1 + i]);
		if (err)
			goto out_td;
		st = ccvm_tdh_mng_addcx(kt->td, pages[1 + i]);
		if (tdx_error(st)) {
			pamt_put(vm, tp, pages[1 + i]);
			leaf = CCVM_TDH_MNG_ADDCX;
			goto out_seamcall;
		}
		kt->tdcs_pfn[kt->nr_tdcs++] = pages[1 + i];
	}
	st = ccvm_tdh_mng_init(kt->td, &params);
	if (tdx_error(st)) {
		leaf = CCVM_TDH_MNG_INIT;
		goto out_seamcall;
	}
	atomic_store(&kt->state, TD_STATE_INITIALIZED);
	return 0;

out_seamcall:
	err = tdx_errno(st);
	tdx_warn(vm, leaf, st);
out_td:
	/* Pages never handed to the module are still the host's. */
	free_pages(p, pages + 1 + kt->nr_tdcs, CCVM_TDX_NR_TDCS - kt->nr_tdcs);
	release_hkid(vm, kt);
	reclaim_td(vm, kt);
	kvm_tdx_locks_fini(kt);
	return err;
out_pages:
	free_pages(p, pages, n);
	ccvm_tdx_hkid_free(kt->m, vm, kt->hkid);
out_locks:
	kvm_tdx_locks_fini(kt);
	return err;
}

/* Last reference gone: the HKID goes first, so everything after is RECLAIM. */
static void tdx_vm_pre_destroy(struct ccvm_vm *vm)
{
	struct kvm_tdx *kt = to_kvm_tdx(vm);

	if (kt->td)
		release_hkid(vm, kt);
}

/* After vCPUs and roots: orphans, TDCS, TDR; deferred inodes unpinned. */
static void tdx_vm_destroy(struct ccvm_vm *vm)
{
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	unsigned int i;

	if (kt->td) {
		if (hkid_state(kt) == HKID_ASSIGNED) {
			/* Not reached: vm_pre_destroy released it.  Never reclaim with it. */
			ccvm_log(CCVM_LOG_WARN, "tdx vm %u: destroyed with its HKID",
				 ccvm_vm_id(vm));
			release_hkid(vm, kt);
		}
		reclaim_td(vm, kt);
	}
	/* Every page of these inodes left the S-EPT with the roots. */
	for (i = 0; i < kt->nr_deferred; i++)
		ccvm_gmem_inode_put(kt->deferred[i]);
	kt->nr_deferred = 0;
	atomic_store(&kt->state, TD_STATE_UNINITIALIZED);
	kvm_tdx_locks_fini(kt);
}

/* KVM_TDX_FINALIZE_VM: MR.FINALIZE; busy is the caller's to retry. */
static int tdx_vm_finalize(struct ccvm_vm *vm)
{
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	uint64_t st;
	int err;

	if (td_state(kt) != TD_STATE_INITIALIZED)
		return -EINVAL;
	/* The caller holds the VM's lock, as terminate does. */
	if (hkid_state(kt) != HKID_ASSIGNED)
		return -EIO;
	st = ccvm_tdh_mr_finalize(kt->td);
	err = tdx_errno(st);
	if (!err)
		atomic_store(&kt->state, TD_STATE_RUNNABLE);
	else if (err != -EBUSY)
		tdx_warn(vm, CCVM_TDH_MR_FINALIZE, st);
	return err;
}

/* KVM_TDX_TERMINATE_VM: the core marked the VM dead; release the HKID now. */
static int tdx_vm_terminate(struct ccvm_vm *vm)
{
	struct kvm_tdx *kt = to_kvm_tdx(vm);

	if (!kt->td)
		return -EINVAL;
	/*
	 * Study 000: v19 released the HKID from the mmu notifier under
	 * tdx_lock alone; a removal in flight then meets the TD between
	 * VPFLUSHDONE and KEY.FREEID, where the module refuses both the
	 * removal leaves and RECLAIM (docs/studies/000.md).
	 */
	if (ccvm_vm_study_knob(vm, CCVM_STUDY_HKID_RELEASE) == CCVM_HKID_RELEASE_V19)
		return release_hkid_locked(vm, kt);
	return release_hkid(vm, kt);
}

/* ---- vCPUs ---------------------------------------------------------------------- */

/*
 * KVM_TDX_INIT_VCPU: TDVPR and TDCX pages, VP.CREATE, VP.ADDCX, VP.INIT.
 * Pages the TD took cannot come back before the HKID release: on failure
 * they become orphans, the rest goes back to the host.
 */
static int tdx_vcpu_create(struct ccvm_vcpu *v)
{
	struct ccvm_vm *vm = ccvm_vcpu_vm(v);
	struct ccvm_platform *p = ccvm_vm_platform(vm);
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	struct vcpu_tdx *vt = to_tdx(v);
	struct tdx_platform *tp = tdx_plat(p);
	struct ccvm_tdx_vp *vp = NULL;
	uint64_t pages[1 + CCVM_TDX_NR_TDCX];
	unsigned int i, n, owned = 0, leaf = CCVM_TDH_VP_CREATE;
	uint32_t nr_cpus = ccvm_platform_nr_cpus(p);
	uint64_t st;
	int err;

	/* tdx_vcpu_create(): only between INIT_VM and FINALIZE_VM. */
	if (td_state(kt) != TD_STATE_INITIALIZED || hkid_state(kt) != HKID_ASSIGNED) {
		ccvm_log(CCVM_LOG_DEBUG, "tdx: vm %u: vCPUs are created after INIT_VM and before "
			 "finalize", ccvm_vm_id(vm));
		return -EIO;
	}
	for (n = 0; n < 1 + CCVM_TDX_NR_TDCX; n++) {
		err = ccvm_page_alloc(p, &pages[n]);
		if (err) {
			free_pages(p, pages, n);
			return err;
		}
	}
	vt->cpu = ccvm_vcpu_id(v) % (nr_cpus ? nr_cpus : 1);
	err = pamt_get(vm, tp, pages[0]);
	if (err)
		goto fail_pamt;
	st = ccvm_tdh_vp_create(kt->td, pages[0], &vp);
	if (tdx_error(st)) {
		pamt_put(vm, tp, pages[0]);
		goto fail;
	}
	owned = 1;
	leaf = CCVM_TDH_VP_ADDCX;
	for (i = 0; i < CCVM_TDX_NR_TDCX; i++) {
		err = pamt_get(vm, tp, pages[1 + i]);
		if (err)
			goto fail_pamt;
		st = ccvm_tdh_vp_addcx(vp, pages[1 + i]);
		if (tdx_error(st)) {
			pamt_put(vm, tp, pages[1 + i]);
			goto fail;
		}
		owned++;
	}
	leaf = CCVM_TDH_VP_INIT;
	st = ccvm_tdh_vp_init(vp, vt->cpu);
	if (tdx_error(st))
		goto fail;
	vt->vp = vp;
	vt->tdvpr_pfn = pages[0];
	memcpy(vt->tdcx_pfn, pages + 1, sizeof(vt->tdcx_pfn));
	vt->nr_tdcx = CCVM_TDX_NR_TDCX;
	return 0;

fail:
	tdx_warn(vm, leaf, st);
	err = tdx_errno(st);
fail_pamt:
	/* TDCX before TDVPR, as a vCPU free reclaims them. */
	for (i = owned; i > 1; i--)
		orphan_add(kt, pages[i - 1], false);
	if (owned)
		orphan_add(kt, pages[0], false);
	free_pages(p, pages + owned, 1 + CCVM_TDX_NR_TDCX - owned);
	return err == -EBUSY ? -EAGAIN : err;
}

/* After the HKID release: TDCX then TDVPR back to the host (or leaked). */
static void tdx_vcpu_free(struct ccvm_vcpu *v)
{
	struct ccvm_vm *vm = ccvm_vcpu_vm(v);
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	struct vcpu_tdx *vt = to_tdx(v);
	struct ccvm_platform *p = ccvm_vm_platform(vm);
	bool released = hkid_state(kt) == HKID_RELEASED;
	unsigned int i;

	if (!vt->vp)
		return;
	for (i = 0; i < vt->nr_tdcx; i++) {
		if (released)
			reclaim_page(vm, kt, vt->tdcx_pfn[i], true);
		else
			ccvm_page_leak(p, vt->tdcx_pfn[i]);
	}
	/* A reclaimed TDVPR takes the module's vCPU handle with it. */
	if (released)
		reclaim_page(vm, kt, vt->tdvpr_pfn, true);
	else
		ccvm_page_leak(p, vt->tdvpr_pfn);
	vt->vp = NULL;
	vt->nr_tdcx = 0;
}

/* The calling thread's CPU's count of vCPUs in the TD. */
static struct tdx_cpu_count *in_guest_here(struct kvm_tdx *kt)
{
	return &kt->in_guest[ccvm_host_cpu_slot(kt->nr_cpu_slots)];
}

/*
 * Whether a vCPU is between an entry and its exit op.  No entry is in
 * flight (mmu_lock is held for write), so the counts only fall while they
 * are read one by one: a sum of 0 was so at its end, and one above 0
 * (a vCPU that left on a CPU read before) only costs a kick.
 */
static bool any_in_guest(struct kvm_tdx *kt)
{
	uint32_t n = 0;
	unsigned int s;

	for (s = 0; s < kt->nr_cpu_slots; s++)
		n += atomic_load_explicit(&kt->in_guest[s].nr_in_guest, memory_order_acquire);
	return n != 0;
}

/* TDH.VP.ENTER; never while a removal waits for the vCPUs to stay out (I21). */
static int tdx_vcpu_enter(struct ccvm_vcpu *v)
{
	struct kvm_tdx *kt = to_kvm_tdx(ccvm_vcpu_vm(v));
	struct vcpu_tdx *vt = to_tdx(v);
	uint64_t st;
	int err = 0;

	if (atomic_load_explicit(&kt->wait_for_sept_zap, memory_order_acquire))
		return -EAGAIN;
	if (hkid_state(kt) != HKID_ASSIGNED || !vt->vp)
		err = -EIO;
	else if (td_state(kt) != TD_STATE_RUNNABLE)
		err = -EINVAL;
	if (!err) {
		st = ccvm_tdh_vp_enter(vt->vp, vt->cpu);
		if (!tdx_error(st)) {
			atomic_fetch_add_explicit(&in_guest_here(kt)->nr_in_guest, 1,
						  memory_order_relaxed);
		} else if (tdx_busy(st)) {
			err = -EAGAIN;
		} else {
			tdx_warn(ccvm_vcpu_vm(v), CCVM_TDH_VP_ENTER, st);
			err = -EIO;
		}
	}
	return err;
}

/* Once per entry (the core's guest-mode flag decides who calls it). */
static void tdx_vcpu_exit(struct ccvm_vcpu *v)
{
	struct kvm_tdx *kt = to_kvm_tdx(ccvm_vcpu_vm(v));
	struct vcpu_tdx *vt = to_tdx(v);

	if (!vt->vp)
		return;
	ccvm_tdx_vp_exit(vt->vp);
	/* After the module let go: a count of 0 means nobody is in the TD. */
	atomic_fetch_sub_explicit(&in_guest_here(kt)->nr_in_guest, 1, memory_order_release);
}

/* ---- guest_memfd ------------------------------------------------------------------- */

/*
 * The gmem_defer_removal RFC: keep the release from zapping (pin the
 * inode) so the pages go by one RECLAIM each after the HKID release.  Only
 * while the HKID is held (after it, zapping is a RECLAIM already) and, but
 * for a bugged VM, only when asked for.
 */
static int tdx_gmem_defer_removal(struct ccvm_vm *vm, struct ccvm_gmem_inode *inode)
{
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	int defer = 0;

	if (!kt->td || hkid_state(kt) != HKID_ASSIGNED)
		return 0;
	ccvm_mutex_lock(&kt->lock);
	if ((ccvm_vm_study_knob(vm, CCVM_STUDY_GMEM_DEFER_REMOVAL) == CCVM_GMEM_DEFER_RFC ||
	     ccvm_vm_is_bugged(vm)) &&
	    kt->nr_deferred < CCVM_TDX_MAX_GMEM_INODES) {
		ccvm_gmem_inode_get(inode);
		kt->deferred[kt->nr_deferred++] = inode;
		defer = 1;
	}
	ccvm_mutex_unlock(&kt->lock);
	return defer;
}

/*
 * ---- Secure-EPT hooks of the mirror root ---------------------------------------------
 *
 * Called with mmu_lock held (read for installs, write for removals and
 * root teardown), which keeps the HKID state still underneath them.
 */

/* The S-EPT level of a core level (KVM's PG_LEVEL_4K is 1, TDX's 0). */
static inline int tdx_level(int level)
{
	return level - CCVM_LEVEL_4K;
}

static inline uint64_t level_pages(int level)
{
	return level == CCVM_LEVEL_2M ? TDX_PAGES_2M : 1;
}

/* A private GPA of @vm for @gfn; false (and the VM bugged) if it is not one. */
static bool private_gpa(struct ccvm_vm *vm, uint64_t gfn, uint64_t *gpa)
{
	*gpa = gfn << CCVM_PAGE_SHIFT;
	if ((*gpa >> CCVM_PAGE_SHIFT) != gfn || (*gpa & ccvm_vm_shared_bit(vm))) {
		ccvm_vm_bug(vm, "tdx: gfn %#" PRIx64 " reached the S-EPT with the shared bit",
			    gfn);
		return false;
	}
	return true;
}

/* link_external_spt: SEPT.ADD of the page under the entry at @level. */
static int tdx_link_private_spt(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t spt_pfn)
{
	struct tdx_platform *tp = tdx_plat(ccvm_vm_platform(vm));
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	uint64_t gpa, st;
	unsigned int calls;
	int err;

	if (!private_gpa(vm, gfn, &gpa))
		return -EINVAL;
	if (level <= CCVM_LEVEL_4K) {
		ccvm_vm_bug(vm, "tdx: S-EPT page linked at level %d", level);
		return -EINVAL;
	}
	if (hkid_state(kt) != HKID_ASSIGNED || ccvm_vm_is_bugged(vm))
		return -EIO;
	err = pamt_get(vm, tp, spt_pfn);
	if (err)
		return err;
	for (calls = 1;; calls++) {
		st = ccvm_tdh_mem_sept_add(kt->td, gpa, level - 1, spt_pfn);
		if (!busy_spin_again(vm, st, calls))
			break;
	}
	err = tdx_errno(st);
	if (busy_gives_up(vm, st)) {
		err = -EIO;	/* the fault fails: the VMM sees the error */
	} else if (err && err != -EBUSY) {
		tdx_warn(vm, CCVM_TDH_MEM_SEPT_ADD, st);
		ccvm_vm_bug(vm, "tdx: SEPT.ADD at gfn %#" PRIx64 " level %d", gfn, level);
		err = -EIO;
	}
	if (err)
		pamt_put(vm, tp, spt_pfn);
	return err;
}

/* Take a page just ADDed back out (before finalize no TLB can hold it). */
static void page_add_undo(struct ccvm_vm *vm, struct kvm_tdx *kt, uint64_t gpa, uint64_t pfn)
{
	struct ccvm_platform *p = ccvm_vm_platform(vm);
	uint64_t st = ccvm_tdh_mem_page_remove(kt->td, gpa, 0, NULL);

	if (!tdx_error(st))
		st = ccvm_tdh_phymem_page_wbinvd(kt->m, vm, pfn, kt->hkid);
	if (tdx_error(st)) {
		/* Possibly still the TD's: it must never reach the host again. */
		ccvm_page_leak(p, pfn);
		orphan_add(kt, pfn, true);
		ccvm_vm_bug(vm, "tdx: could not undo PAGE.ADD at %#" PRIx64, gpa);
		return;
	}
	pamt_put(vm, tdx_plat(p), pfn);
	ccvm_page_clear(p, pfn);
}

/* PAGE.ADD from the populate source, then MR.EXTEND of each 256 bytes. */
static int page_add(struct ccvm_vm *vm, struct kvm_tdx *kt, uint64_t gpa, uint64_t pfn)
{
	struct tdx_platform *tp = tdx_plat(ccvm_vm_platform(vm));
	uint64_t flags = 0, st;
	const void *src = ccvm_vm_populate_source(vm, &flags);
	unsigned int off, calls;
	int err;

	if (!src) {
		/* Only populate maps before finalize (pre-fault is refused). */
		ccvm_vm_bug(vm, "tdx: private map at %#" PRIx64 " before finalize", gpa);
		return -EIO;
	}
	err = pamt_get(vm, tp, pfn);
	if (err)
		return err;
	for (calls = 1;; calls++) {
		st = ccvm_tdh_mem_page_add(kt->td, gpa, 0, pfn, src);
		if (!busy_spin_again(vm, st, calls))
			break;
	}
	if (tdx_error(st))
		pamt_put(vm, tp, pfn);
	if (busy_gives_up(vm, st))
		return -EIO;
	if (tdx_busy(st))
		return -EBUSY;
	if (tdx_error(st)) {
		/* The core only maps a FREE entry: the two views disagree. */
		tdx_warn(vm, CCVM_TDH_MEM_PAGE_ADD, st);
		ccvm_vm_bug(vm, "tdx: PAGE.ADD at %#" PRIx64, gpa);
		return -EIO;
	}
	if (!(flags & CCVM_POPULATE_MEASURE))
		return 0;
	for (off = 0; off < CCVM_PAGE_SIZE; off += TDX_MR_EXTEND_CHUNK) {
		st = ccvm_tdh_mr_extend(kt->td, gpa + off);
		if (tdx_error(st)) {
			tdx_warn(vm, CCVM_TDH_MR_EXTEND, st);
			/* The SPTE goes back to non-present: so must the S-EPT entry. */
			page_add_undo(vm, kt, gpa, pfn);
			return -EIO;
		}
	}
	return 0;
}

/* set_external_spte: PAGE.AUG once runnable, PAGE.ADD while populating. */
static int tdx_set_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
{
	struct tdx_platform *tp = tdx_plat(ccvm_vm_platform(vm));
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	uint64_t gpa, st;
	unsigned int calls;
	int err;

	if (!private_gpa(vm, gfn, &gpa))
		return -EINVAL;
	/* 2M only by PAGE.AUG: max_mapping_level keeps the launch at 4K. */
	if (level != CCVM_LEVEL_4K &&
	    (level != CCVM_LEVEL_2M || td_state(kt) != TD_STATE_RUNNABLE)) {
		ccvm_vm_bug(vm, "tdx: private leaf at level %d", level);
		return -EINVAL;
	}
	if (hkid_state(kt) != HKID_ASSIGNED || ccvm_vm_is_bugged(vm))
		return -EIO;
	if (td_state(kt) != TD_STATE_RUNNABLE)
		return page_add(vm, kt, gpa, pfn);
	/* Dynamic PAMT: a 4K page needs its region's pair; a 2M page none. */
	if (level == CCVM_LEVEL_4K) {
		err = pamt_get(vm, tp, pfn);
		if (err)
			return err;
	}
	for (calls = 1;; calls++) {
		st = ccvm_tdh_mem_page_aug(kt->td, gpa, tdx_level(level), pfn);
		if (!busy_spin_again(vm, st, calls))
			break;
	}
	err = tdx_errno(st);
	if (busy_gives_up(vm, st)) {
		err = -EIO;
	} else if (err && err != -EBUSY) {
		tdx_warn(vm, CCVM_TDH_MEM_PAGE_AUG, st);
		ccvm_vm_bug(vm, "tdx: PAGE.AUG at %#" PRIx64, gpa);
		err = -EIO;
	}
	if (err && level == CCVM_LEVEL_4K)
		pamt_put(vm, tp, pfn);
	return err;
}

/* The IPI reaching a vCPU that was already on its way out of the guest. */
static int vcpu_force_exit(struct ccvm_vcpu *v, void *ctx)
{
	struct vcpu_tdx *vt = to_tdx(v);

	(void)ctx;
	if (vt->vp)
		ccvm_tdx_vp_exit(vt->vp);
	return 0;
}

/*
 * KVM_REQ_OUTSIDE_GUEST_MODE to every vCPU, waiting until each is out.
 * The core's kick covers the vCPUs it sees in guest mode; a vCPU whose
 * thread cleared its guest-mode flag but has not told the module yet
 * (lib/vcpu.c leaves in that order) is still in the TD's epoch, so it is
 * taken out here too, unless no vCPU is between an entry and its exit op.
 * mmu_lock is held for write: no entry is in flight (entry takes it for
 * read).  A guest access takes no lock; the core's kick waits for one in
 * flight before the vCPU is out.
 */
static void kick_all_vcpus(struct ccvm_vm *vm, struct kvm_tdx *kt)
{
	ccvm_vm_kick_all(vm);
	if (any_in_guest(kt))
		ccvm_vm_for_each_vcpu(vm, vcpu_force_exit, NULL);
}

enum removal_leaf { RM_BLOCK, RM_TRACK, RM_REMOVE, RM_DEMOTE };

static const unsigned int removal_leaf_nr[] = {
	[RM_BLOCK] = CCVM_TDH_MEM_RANGE_BLOCK,
	[RM_TRACK] = CCVM_TDH_MEM_TRACK,
	[RM_REMOVE] = CCVM_TDH_MEM_PAGE_REMOVE,
	[RM_DEMOTE] = CCVM_TDH_MEM_PAGE_DEMOTE,
};

/* One removal leaf at S-EPT level @tl; *@pfn: REMOVE's output, DEMOTE's input. */
static uint64_t removal_call(struct kvm_tdx *kt, enum removal_leaf leaf, uint64_t gpa,
			     int tl, uint64_t *pfn)
{
	switch (leaf) {
	case RM_BLOCK:
		return ccvm_tdh_mem_range_block(kt->td, gpa, tl);
	case RM_TRACK:
		return ccvm_tdh_mem_track(kt->td);
	case RM_DEMOTE:
		return ccvm_tdh_mem_page_demote(kt->td, gpa, tl, *pfn);
	default:
		return ccvm_tdh_mem_page_remove(kt->td, gpa, tl, pfn);
	}
}

/*
 * One removal leaf, at most twice (tdh_do_no_vcpus): the second try runs
 * with guest entry blocked and every vCPU kicked out, so neither a host
 * task (mmu_lock is held for write) nor a vCPU can hold what it needs.
 * Under study 003's SPIN the leaf is called again as it is instead, and
 * under GIVE_UP not at all: a busy status left fails the removal.
 */
static uint64_t removal_seamcall(struct ccvm_vm *vm, struct kvm_tdx *kt,
				 enum removal_leaf leaf, uint64_t gpa, int tl, uint64_t *pfn)
{
	uint64_t st = removal_call(kt, leaf, gpa, tl, pfn);
	unsigned int calls = 1;

	while (busy_spin_again(vm, st, calls++))
		st = removal_call(kt, leaf, gpa, tl, pfn);
	if (!tdx_busy(st) || busy_gives_up(vm, st))
		return st;
	ccvm_vm_block_entry(vm);
	atomic_store_explicit(&kt->wait_for_sept_zap, true, memory_order_release);
#ifndef CCVM_MUTANT_TDX_NO_KICK
	kick_all_vcpus(vm, kt);
#endif	/* else broken on purpose (tests only): the retry meets a vCPU in the TD */
	st = removal_call(kt, leaf, gpa, tl, pfn);
	atomic_store_explicit(&kt->wait_for_sept_zap, false, memory_order_release);
	ccvm_vm_unblock_entry(vm);
	return st;
}

/*
 * BLOCK the leaf at @gpa (S-EPT level @tl), then TRACK and kick every vCPU
 * (their next entry flushes the TD's TLB): what REMOVE and DEMOTE need
 * (I12).  *@leaf gets the leaf that failed.
 */
static uint64_t block_and_track(struct ccvm_vm *vm, struct kvm_tdx *kt, uint64_t gpa, int tl,
				enum removal_leaf *leaf)
{
	uint64_t st;

	*leaf = RM_BLOCK;
	st = removal_seamcall(vm, kt, RM_BLOCK, gpa, tl, NULL);
	if (tdx_error(st))
		return st;
	/* Before finalize no vCPU ran: nothing to track. */
#ifdef CCVM_MUTANT_TDX_NO_TRACK
	if (false) {	/* broken on purpose (tests only): no TRACK, no kick */
#else
	if (td_state(kt) == TD_STATE_RUNNABLE) {
#endif
		*leaf = RM_TRACK;
		st = removal_seamcall(vm, kt, RM_TRACK, gpa, tl, NULL);
		if (tdx_error(st))
			return st;
		kick_all_vcpus(vm, kt);
	}
	return TDX_SUCCESS;
}

/*
 * Runtime removal with the HKID held (I12): BLOCK, TRACK and the kick,
 * REMOVE, WBINVD with the HKID of every 4K page, then clear them for the
 * host.  A 2M leaf goes in one REMOVE.
 */
static int sept_zap(struct ccvm_vm *vm, struct kvm_tdx *kt, uint64_t gpa, int level,
		    uint64_t pfn)
{
	struct ccvm_platform *p = ccvm_vm_platform(vm);
	enum removal_leaf leaf;
	uint64_t st, removed = 0, i, n = level_pages(level);

	st = block_and_track(vm, kt, gpa, tdx_level(level), &leaf);
	if (tdx_error(st))
		goto fail;
	leaf = RM_REMOVE;
	st = removal_seamcall(vm, kt, RM_REMOVE, gpa, tdx_level(level), &removed);
	if (tdx_error(st))
		goto fail;
	if (removed != pfn)
		ccvm_vm_bug(vm, "tdx: REMOVE at %#" PRIx64 " took pfn %#" PRIx64 ", not %#"
			    PRIx64, gpa, removed, pfn);
	/* No TD holds it any more: its region loses a 4K user. */
	if (level == CCVM_LEVEL_4K)
		pamt_put(vm, tdx_plat(p), pfn);
	for (i = 0; i < n; i++) {
		st = ccvm_tdh_phymem_page_wbinvd(kt->m, vm, pfn + i, kt->hkid);
		if (tdx_error(st)) {
			/* Out of the TD, but its key may still have dirty lines: leak it. */
			tdx_warn(vm, CCVM_TDH_PHYMEM_PAGE_WBINVD, st);
			ccvm_vm_bug(vm, "tdx: WBINVD of pfn %#" PRIx64, pfn + i);
			return -EIO;
		}
	}
	for (i = 0; i < n; i++)
		ccvm_page_clear(p, pfn + i);
	return 0;

fail:
	tdx_warn(vm, removal_leaf_nr[leaf], st);
	ccvm_vm_bug(vm, "tdx: removal of %#" PRIx64 " failed twice", gpa);
	/* The core leaks the page; the module lets go of it at teardown. */
	orphan_add(kt, pfn, true);
	return -EIO;
}

/* remove_external_spte: the dynamic sequence, or RECLAIM in TEARDOWN. */
static int tdx_remove_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
{
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	uint64_t gpa;
	int err = -EIO;

	if (!private_gpa(vm, gfn, &gpa))
		return -EINVAL;
	if (level != CCVM_LEVEL_4K && level != CCVM_LEVEL_2M) {
		ccvm_vm_bug(vm, "tdx: private leaf removed at level %d", level);
		return -EINVAL;
	}
	switch (hkid_state(kt)) {
	case HKID_RELEASED:
		/* The first pfn of a 2M page reclaims all of it. */
		if (reclaim_page(vm, kt, pfn, false)) {
			uint64_t i;

			for (i = 0; i < level_pages(level); i++)
				ccvm_page_clear(ccvm_vm_platform(vm), pfn + i);
			err = 0;
		} else {
			orphan_add(kt, pfn, true);
		}
		break;
	case HKID_ASSIGNED:
		if (ccvm_vm_is_bugged(vm)) {
			/* No SEAMCALL after a bug but teardown's: reclaim it then. */
			orphan_add(kt, pfn, true);
			break;
		}
		err = sept_zap(vm, kt, gpa, level, pfn);
		break;
	default:
		break;		/* the HKID leaked: so does the page */
	}
	return err;
}

/* free_external_spt: only at root teardown, after the HKID release. */
static int tdx_free_private_spt(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t spt_pfn)
{
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	int err = -EIO;

	(void)level;
	switch (hkid_state(kt)) {
	case HKID_ASSIGNED:
		ccvm_vm_bug(vm, "tdx: S-EPT page of gfn %#" PRIx64 " freed while the TD "
			    "holds its HKID", gfn);
		err = -EINVAL;
		break;
	case HKID_RELEASED:
		if (reclaim_page(vm, kt, spt_pfn, false)) {
			ccvm_page_clear(ccvm_vm_platform(vm), spt_pfn);
			err = 0;
		} else {
			orphan_add(kt, spt_pfn, true);
		}
		break;
	default:
		break;
	}
	return err;
}

/*
 * split_external_spt: the 2M leaf at @gfn becomes 512 4K leaves in S-EPT
 * page @spt_pfn, each page in its state (MAPPED or PENDING): BLOCK, TRACK
 * and the kick, DEMOTE, each tried twice as a removal's leaves are.  The
 * module refuses DEMOTE without the BLOCK and the TRACK.  Only while the
 * HKID is held (after the release every removal is a RECLAIM of the whole
 * 2M page: the core removes it whole).
 */
static int tdx_split_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn,
				  uint64_t spt_pfn)
{
	struct tdx_platform *tp = tdx_plat(ccvm_vm_platform(vm));
	struct kvm_tdx *kt = to_kvm_tdx(vm);
	enum removal_leaf leaf;
	uint64_t gpa, st;
	int err;

	if (!private_gpa(vm, gfn, &gpa))
		return -EINVAL;
	if (level != CCVM_LEVEL_2M) {
		ccvm_vm_bug(vm, "tdx: split of a leaf at level %d", level);
		return -EINVAL;
	}
	if (hkid_state(kt) != HKID_ASSIGNED || ccvm_vm_is_bugged(vm)) {
		ccvm_log(CCVM_LOG_DEBUG, "tdx vm %u: no DEMOTE of gfn %#" PRIx64 " without the "
			 "HKID: the 2M page goes whole", ccvm_vm_id(vm), gfn);
		return -EIO;
	}
	/*
	 * Dynamic PAMT: the new S-EPT page and the 512 pages about to be 4K
	 * need their regions' pairs before the BLOCK (nothing changed yet if
	 * that fails); given back if the DEMOTE does not happen.
	 */
	err = pamt_get(vm, tp, spt_pfn);
	if (err)
		return err;
	err = pamt_get_n(vm, tp, pfn, TDX_PAGES_2M);
	if (err) {
		pamt_put(vm, tp, spt_pfn);
		return err;
	}
	st = block_and_track(vm, kt, gpa, tdx_level(level), &leaf);
	if (!tdx_error(st)) {
		leaf = RM_DEMOTE;
		st = removal_seamcall(vm, kt, RM_DEMOTE, gpa, tdx_level(level), &spt_pfn);
	}
	if (tdx_error(st)) {
		/* Blocked and not split: the S-EPT and the mirror disagree now. */
		tdx_warn(vm, removal_leaf_nr[leaf], st);
		ccvm_vm_bug(vm, "tdx: DEMOTE of %#" PRIx64 " failed", gpa);
		pamt_put_n(vm, tp, pfn, TDX_PAGES_2M);
		pamt_put(vm, tp, spt_pfn);
		return -EIO;
	}
	return 0;
}

/*
 * gmem_max_mapping_level: 2M once the TD runs (PAGE.AUG at 2M; the launch
 * adds 4K pages with PAGE.ADD); the folio and the slot cap it further.
 */
static int tdx_max_mapping_level(struct ccvm_vm *vm, uint64_t pfn, bool is_private)
{
	(void)pfn;
	if (!is_private)
		return 0;
	return td_state(to_kvm_tdx(vm)) == TD_STATE_RUNNABLE ? CCVM_LEVEL_2M : CCVM_LEVEL_4K;
}

/* ---- guest side -------------------------------------------------------------------- */

/* TDVMCALL MapGPA: one KVM_HC_MAP_GPA_RANGE exit per 2 MiB at most. */
static int64_t tdx_handle_exit_hypercall(struct ccvm_vcpu *v, uint64_t gpa, uint64_t size,
					 bool to_private, struct ccvm_run *run)
{
	(void)v;
	(void)gpa;
	(void)to_private;
	(void)run;
	return (int64_t)(size < TDX_MAP_GPA_MAX_LEN ? size : TDX_MAP_GPA_MAX_LEN);
}

/*
 * TDG.MEM.PAGE.ACCEPT.  No leaf yet is an EPT violation: the core faults
 * the page in (AUG) and the guest accepts again.  Accepting twice is the
 * guest's error (-EEXIST); busy entries make the guest retry (-EAGAIN).
 */
static int accept_at(struct ccvm_vcpu *v, uint64_t gfn, int map_level, int level)
{
	struct vcpu_tdx *vt = to_tdx(v);
	uint64_t st;

	if (!vt->vp)
		return -EIO;
	st = ccvm_tdg_mem_page_accept(vt->vp, gfn << CCVM_PAGE_SHIFT, tdx_level(level));
	if (!st)
		return 0;
	if (st == CCVM_TDX_SW_EPT_VIOLATION) {
		/*
		 * The EPT violation carries the accept's level.  Under a larger
		 * leaf (a 4K accept in a PENDING 2M page) KVM splits the leaf;
		 * with nothing mapped it maps at most at that level.
		 */
		return map_level > level ? CCVM_GUEST_NEEDS_SPLIT : CCVM_GUEST_NEEDS_FAULT;
	}
	switch (TDX_STATUS_CLASS(st)) {
	case TDX_PAGE_ALREADY_ACCEPTED:
		return -EEXIST;
	case TDX_PAGE_SIZE_MISMATCH:
		/* A 2M accept over 4K leaves: the guest accepts page by page. */
		ccvm_log(CCVM_LOG_DEBUG, "tdx vm %u: accept of gfn %#" PRIx64 " at level %d "
			 "over a smaller mapping: TDX_PAGE_SIZE_MISMATCH",
			 ccvm_vm_id(ccvm_vcpu_vm(v)), gfn, level);
		return -ERANGE;
	default:
		break;
	}
	if (tdx_busy(st))
		return -EAGAIN;
	return -EIO;
}

/*
 * TDG.MEM.PAGE.ACCEPT at 4K.  The core tells only whether the page is
 * mapped: a mapped page the module answers with an EPT violation is under
 * a 2M leaf (a blocked one is never seen under mmu_lock read).
 */
static int tdx_guest_accept(struct ccvm_vcpu *v, uint64_t gfn, uint64_t pfn, bool mapped)
{
	(void)pfn;
	return accept_at(v, gfn, mapped ? CCVM_LEVEL_2M : 0, CCVM_LEVEL_4K);
}

/* TDG.MEM.PAGE.ACCEPT at @level, against the mapping at @map_level. */
static int tdx_guest_accept_level(struct ccvm_vcpu *v, uint64_t gfn, uint64_t pfn,
				  int map_level, int level)
{
	(void)pfn;
	if (level != CCVM_LEVEL_4K && level != CCVM_LEVEL_2M)
		return -EINVAL;
	return accept_at(v, gfn, map_level, level);
}

/*
 * A guest access through the S-EPT.  Pending (AUGed, not accepted) gives
 * the guest #VE; no leaf or a blocked one is an EPT violation the core
 * resolves with a fault.  A machine check (host-poisoned page) kills the TD.
 */
static int tdx_guest_access(struct ccvm_vcpu *v, uint64_t gfn, uint64_t pfn,
			    bool is_private, bool write)
{
	struct ccvm_vm *vm = ccvm_vcpu_vm(v);
	struct vcpu_tdx *vt = to_tdx(v);
	uint64_t st;

	(void)pfn;
	if (!is_private)
		return 0;	/* the shared EPT is the VMM's own */
	if (!vt->vp)
		return -EIO;
	st = ccvm_tdx_guest_access(vt->vp, gfn << CCVM_PAGE_SHIFT, write);
	switch (st) {
	case TDX_SUCCESS:
		return 0;
	case CCVM_TDX_SW_VE:
		return -EACCES;
	case CCVM_TDX_SW_EPT_VIOLATION:
		return CCVM_GUEST_NEEDS_FAULT;
	case CCVM_TDX_SW_EPT_VIOLATION_PENDING:
		ccvm_log(CCVM_LOG_WARN, "tdx vm %u: guest access before accepting gfn %#"
			 PRIx64, ccvm_vm_id(vm), gfn);
		ccvm_vm_set_dead(vm);
		return -EIO;
	case CCVM_TDX_SW_MCE:
		ccvm_log(CCVM_LOG_WARN, "tdx vm %u: machine check on gfn %#" PRIx64,
			 ccvm_vm_id(vm), gfn);
		ccvm_vm_set_dead(vm);
		return -EIO;
	default:
		return -EIO;
	}
}

static int tdx_host_access(struct ccvm_platform *p, uint64_t pfn, bool write)
{
	return ccvm_tdx_host_access(&tdx_plat(p)->module, pfn, write);
}

static void tdx_host_ciphertext(struct ccvm_platform *p, uint64_t pfn, void *page)
{
	ccvm_tdx_host_ciphertext(&tdx_plat(p)->module, pfn, page);
}

/* ---- knobs and inspection (tdx.h) ---------------------------------------------------- */

static bool vm_is_td(struct ccvm_vm *vm)
{
	return vm && !strcmp(ccvm_vm_backend_name(vm), "tdx");
}

struct ccvm_tdx_module *ccvm_tdx_module_of(struct ccvm_platform *p)
{
	return p ? &tdx_plat(p)->module : NULL;
}

struct ccvm_tdx_td *ccvm_tdx_vm_td(struct ccvm_vm *vm)
{
	return vm_is_td(vm) ? to_kvm_tdx(vm)->td : NULL;
}

struct ccvm_tdx_vp *ccvm_tdx_vcpu_vp(struct ccvm_vcpu *v)
{
	return v && vm_is_td(ccvm_vcpu_vm(v)) ? to_tdx(v)->vp : NULL;
}

unsigned int ccvm_tdx_nr_deferred(struct ccvm_vm *vm)
{
	struct kvm_tdx *kt;
	unsigned int n;

	if (!vm_is_td(vm))
		return 0;
	kt = to_kvm_tdx(vm);
	ccvm_mutex_lock(&kt->lock);
	n = kt->nr_deferred;
	ccvm_mutex_unlock(&kt->lock);
	return n;
}

bool ccvm_tdx_hkid_assigned(struct ccvm_vm *vm)
{
	return vm_is_td(vm) && hkid_state(to_kvm_tdx(vm)) == HKID_ASSIGNED;
}

/* Pages TDs hold at 4K in the 2M region starting at @first, per the PAMT. */
static uint64_t region_td_pages_4k(struct ccvm_tdx_module *m, uint64_t first, uint64_t nr_pages)
{
	struct ccvm_tdx_pamt_info info;
	uint64_t pfn, n = 0;

	for (pfn = first; pfn < first + TDX_PAGES_2M && pfn < nr_pages; pfn++) {
		if (ccvm_tdx_pamt_get(m, pfn, &info) || info.level != CCVM_TDX_LEVEL_4K)
			continue;
		switch (info.type) {
		case CCVM_TDX_PT_REG:
		case CCVM_TDX_PT_TDR:
		case CCVM_TDX_PT_TDCX:
		case CCVM_TDX_PT_TDVPR:
		case CCVM_TDX_PT_EPT:
			n++;
			break;
		default:
			break;
		}
	}
	return n;
}

int ccvm_tdx_check_dpamt(struct ccvm_platform *p, struct ccvm_invariant_report *r)
{
	struct tdx_platform *tp;
	struct ccvm_tdx_pamt_usage u;
	struct ccvm_stats st = { .sz = sizeof(st) };
	uint64_t reg, nr_pages, refs, pages, used = 0, idle = 0, nr_pairs, nr_stuck;
	bool pair;

	if (!p || !r)
		return -EINVAL;
	tp = tdx_plat(p);
	if (ccvm_tdx_pamt_usage(&tp->module, &u) || ccvm_platform_get_stats(p, &st))
		return -EINVAL;
	if (!tp->pamt_refs) {
		ccvm_invariant_count(r, 1);
		if (u.dynamic || u.nr_pairs || st.pamt_pairs)
			ccvm_invariant_fail(r, 38, UINT64_MAX, UINT64_MAX, "static PAMT, yet Dynamic "
					    "PAMT %s with %" PRIu64 " pairs", u.dynamic ? "on" : "off",
					    u.nr_pairs);
		return 0;
	}
	nr_pages = ccvm_platform_nr_pages(p);
	ccvm_mutex_lock(&tp->pamt_lock);
	nr_pairs = tp->nr_pairs;
	nr_stuck = tp->nr_stuck;
	ccvm_mutex_unlock(&tp->pamt_lock);
	for (reg = 0; reg < tp->nr_regions && !ccvm_invariant_failed(r); reg++) {
		refs = atomic_load_explicit(&tp->pamt_refs[reg], memory_order_acquire);
		pair = ccvm_tdx_pamt_has_pair(&tp->module, reg * TDX_PAGES_2M);
		if (!refs && !pair)
			continue;
		ccvm_invariant_count(r, 1);
		pages = region_td_pages_4k(&tp->module, reg * TDX_PAGES_2M, nr_pages);
		if (refs && !pair)
			ccvm_invariant_fail(r, 38, UINT64_MAX, reg * TDX_PAGES_2M, "2M region with "
					    "%" PRIu64 " 4K users holds no PAMT pair", refs);
		else if (refs != pages)
			ccvm_invariant_fail(r, 38, UINT64_MAX, reg * TDX_PAGES_2M, "2M region "
					    "counts %" PRIu64 " 4K users, the PAMT has %" PRIu64
					    " TD pages at 4K", refs, pages);
		used += refs != 0;
		idle += refs == 0;
	}
	ccvm_invariant_count(r, 1);
	if (!ccvm_invariant_failed(r) && (idle > nr_stuck || used + idle != nr_pairs ||
					  u.nr_pairs != nr_pairs || st.pamt_pairs != nr_pairs))
		ccvm_invariant_fail(r, 38, UINT64_MAX, UINT64_MAX, "%" PRIu64 " PAMT pairs held "
				    "(module %" PRIu64 ", stats %" PRIu64 ") for %" PRIu64 " regions "
				    "in use at 4K and %" PRIu64 " idle (%" PRIu64 " stuck)", nr_pairs,
				    u.nr_pairs, st.pamt_pairs, used, idle, nr_stuck);
	return 0;
}

const struct ccvm_backend_ops ccvm_tdx_backend_ops = {
	.abi_version = CCVM_BACKEND_ABI_VERSION,
	.size = sizeof(struct ccvm_backend_ops),
	.name = "tdx",
	.platform_priv_size = sizeof(struct tdx_platform),
	.vm_priv_size = sizeof(struct kvm_tdx),
	.vcpu_priv_size = sizeof(struct vcpu_tdx),
	.get_caps = tdx_get_caps,
	.platform_init = tdx_platform_init,
	.platform_destroy = tdx_platform_destroy,
	.vm_init = tdx_vm_init,
	.vm_pre_destroy = tdx_vm_pre_destroy,
	.vm_destroy = tdx_vm_destroy,
	.vm_finalize = tdx_vm_finalize,
	.vm_terminate = tdx_vm_terminate,
	/* populate: PAGE.ADD happens in set_private_spte, from the map path */
	.vcpu_create = tdx_vcpu_create,
	.vcpu_free = tdx_vcpu_free,
	.vcpu_enter = tdx_vcpu_enter,
	.vcpu_exit = tdx_vcpu_exit,
	/* gmem_prepare, gmem_invalidate: the S-EPT hooks do TDX's preparation */
	.gmem_defer_removal = tdx_gmem_defer_removal,
	/* update_mem_attr: a conversion zaps one EPT and faults into the other */
	.link_private_spt = tdx_link_private_spt,
	.set_private_spte = tdx_set_private_spte,
	.remove_private_spte = tdx_remove_private_spte,
	.free_private_spt = tdx_free_private_spt,
	/* fault_is_private: the shared bit decides */
	.max_mapping_level = tdx_max_mapping_level,
	.handle_exit_hypercall = tdx_handle_exit_hypercall,
	.guest_accept = tdx_guest_accept,
	.guest_access = tdx_guest_access,
	.host_access = tdx_host_access,
	.host_ciphertext = tdx_host_ciphertext,
	.check_invariants = ccvm_tdx_check_invariants,
	.guest_accept_level = tdx_guest_accept_level,
	.split_private_spte = tdx_split_private_spte,
};
