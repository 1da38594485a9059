/* SPDX-License-Identifier: MIT */
/*
 * The snp backend: KVM's SEV-SNP code (arch/x86/kvm/svm/sev.c and the RMP
 * helpers of arch/x86/virt/svm/sev.c, docs/semantics.md section 7) driving
 * the simulated hardware of snp-hw.c.
 *
 * One NPT.  SNP has no mirror root: the VM's direct root maps private and
 * shared leaves side by side, and the C-bit is modelled as the VM's shared
 * bit (a GPA carrying it is the shared alias).  The RMP table, not a second
 * page table, is what keeps the host and other guests out of private pages.
 *
 * Who makes a page private, and who makes it shared again (I23):
 *   gmem_prepare     on every private fault: a page not yet in the RMP is
 *                    assigned to the VM's ASID at its GPA (validated = 0);
 *                    a page already assigned there is left alone.
 *   populate         LAUNCH_UPDATE: copy, assign, firmware validates it.
 *   update_mem_attr  only under the study knob CCVM_STUDY_SNP_RMP_UPDATE
 *                    (docs/studies/004.md) set to POSTED or LOCKED: after
 *                    the attribute store changed, pages already in gmem
 *                    follow the new attribute (the SNP design posted for
 *                    this op: direct-map handling before a shared->private
 *                    RMPUPDATE, after a private->shared one).  By default
 *                    (MERGED, what upstream has) it does nothing: a page
 *                    made shared stays assigned until gmem frees it, and
 *                    one made private again is prepared by its next fault.
 *   gmem_invalidate  gmem frees pages: back to shared, caches flushed,
 *                    leaked if that fails.
 * Any RMPUPDATE clears the validated bit, so a page converted to shared and
 * back must be PVALIDATEd again.  Without a punch the page and its bytes
 * stay in gmem across the round trip; a punch frees it and the next fault
 * gets a zeroed page.
 *
 * The direct-map mutexes.  The kernel adjusts its direct map (split a 2M/1G
 * mapping to 4K before a 4K page becomes private, I22) under a sleeping
 * lock, which is why the RMP work of a conversion runs in update_mem_attr,
 * outside mmu_lock.  Here a mutex serialises every decision to make a page
 * private with the RMPUPDATE that follows it: gmem_prepare, populate,
 * update_mem_attr and the firmware/VMSA pages take it.  RMPUPDATEs of
 * pages in different 2M regions have nothing in common (the hardware
 * locks the region, and a 2M entry, a PSMASH or a 4K entry inside it stay
 * in that region), so the mutex is striped by 2M region of the pfn: a
 * platform has SNP_DMAP_STRIPES of them, on cache lines of their own, and
 * vCPUs preparing pages of different regions do not wait for each other.
 * The pending range of an update in flight is read under one stripe (the
 * page's) and written under every stripe, in index order.  On a serial
 * platform (a deterministic scheduler) there is one stripe, so schedules
 * and the explorer's state space are those of the single mutex.
 * gmem_invalidate takes none (it runs in the page-free path, which cannot
 * sleep; splitting is lock-free in the hardware model).
 * update_mem_attr takes the page's stripe per page, inside the core's walk
 * of the pages gmem holds (ccvm_memslot_for_each_gmem_pfn()).
 * Lock order: slots_lock -> gmem invalidate_lock (read; the core holds it
 * around gmem_prepare, populate and that walk) -> dmap_mutex stripes (in
 * index order when more than one) -> the core's leaf locks (gmem
 * pages_lock, attr_lock).
 *
 * The race of the posted design.  update_mem_attr runs after the attribute
 * store changed and after the invalidation ended (under LOCKED, the core
 * calls it before invalidate_end, so a fault in the range is stale and
 * retries instead of mapping).  A vCPU that faults on a page being converted to private in
 * between finds the attribute PRIVATE, but the page's RMPUPDATE belongs to
 * the update in flight (its range is published as pending under the
 * mutex), so gmem_prepare leaves it alone and the fault maps a page the RMP
 * does not assign yet (the range stays pending until the walk of
 * update_mem_attr has passed every page; a second walk then catches a page
 * such a fault allocated behind the first).  The guest's access then takes an RMP nested fault
 * (guest_access answers CCVM_GUEST_NEEDS_FAULT), the core zaps the gfn and
 * faults again, and so on until the update lands: no mapping that
 * disagrees with the RMP is ever used.  A test hook
 * (ccvm_snp_set_update_mem_attr_hook()) runs inside that window so a test
 * can hold it open.
 *
 * Page-state changes (docs/semantics.md 7.5).  ccvm_guest_map_gpa() stands
 * for the guest filling GHCB PSC requests of at most
 * CCVM_SNP_PSC_MAX_ENTRIES entries each, as Linux's __set_pages_state()
 * does: a 2M entry wherever the remaining range starts 2M aligned with at
 * least 2M left, else a 4K entry.  KVM turns the run of adjacent entries
 * with the same operation and page size at the start of what is left of a
 * request into one MAP_GPA_RANGE exit (args[0] gpa without the C-bit,
 * args[1] pages, args[2] ENCRYPTED or DECRYPTED | PAGE_SZ_4K or _2M), then
 * goes on with the next entry, and the guest with its next request once a
 * request is used up.  So N 4K pages are ceil(N / 253) exits.  A nonzero
 * ret from the VMM is an error back to the guest (the core's rule).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>

#include <ccvm/backend.h>

#include "snp.h"

#define NO_PFN			UINT64_MAX
#define PAGES_PER_2M		((uint64_t)CCVM_SNP_PAGES_PER_2M)
#define ORDER_2M		9
/* Where KVM tells the RMP a vCPU save area lives (INITIAL_VMSA_GPA). */
#define SNP_VMSA_GPA		0xfffffffff000ull

/*
 * Direct-map mutex stripes (free-running; one when serial).  A writer of
 * the pending range holds all of them at once, inside slots_lock and the
 * invalidate lock: few enough for ThreadSanitizer, whose deadlock
 * detector tracks at most 64 locks held by one thread.
 */
#define SNP_DMAP_STRIPES	16

/* One stripe: its mutex and nothing else on its cache lines. */
struct snp_dmap_stripe {
	struct ccvm_mutex m;
	char pad[128 - sizeof(struct ccvm_mutex)];
};

/* Platform private area; the hardware first so ccvm_snp_hw_of() works. */
struct snp_platform {
	struct ccvm_snp_hw hw;
	unsigned int nr_dmap;			/* stripes in use */
	struct snp_dmap_stripe dmap[SNP_DMAP_STRIPES];
	_Atomic(ccvm_snp_update_hook_fn) update_hook;
	void *_Atomic update_hook_ctx;
};

/* struct kvm_sev_info, the part that matters here. */
struct snp_vm {
	uint32_t asid;
	uint64_t ctx_pfn;		/* firmware context page, NO_PFN if none */
	bool launch_started;		/* SNP_LAUNCH_START done */
	bool launch_finished;		/* SNP_LAUNCH_FINISH done */
	/* a to-private update_mem_attr in flight: [start, end); read under
	 * one dmap stripe, written under all */
	uint64_t pending_start, pending_end;
};

struct snp_vcpu {
	uint64_t vmsa_pfn;		/* NO_PFN if none */
	/* The guest's PSC request in progress (vCPU thread only). */
	uint64_t psc_next_gpa, psc_end;
	uint32_t psc_entries_left;
	bool psc_to_private;
};

static inline struct snp_platform *snp_plat(struct ccvm_platform *p)
{
	return (struct snp_platform *)ccvm_platform_priv(p);
}

static inline struct ccvm_snp_hw *vm_hw(struct ccvm_vm *vm)
{
	return ccvm_snp_hw_of(ccvm_vm_platform(vm));
}

static inline struct snp_vm *snp_vm(struct ccvm_vm *vm)
{
	return ccvm_vm_priv(vm);
}

/* The direct-map mutex of the 2M region holding @pfn. */
static inline struct ccvm_mutex *dmap_mutex(struct ccvm_vm *vm, uint64_t pfn)
{
	struct snp_platform *sp = snp_plat(ccvm_vm_platform(vm));

	return &sp->dmap[(pfn / PAGES_PER_2M) % sp->nr_dmap].m;
}

/* Every stripe, in index order: to write the pending range. */
static void dmap_lock_all(struct snp_platform *sp)
{
	unsigned int i;

	for (i = 0; i < sp->nr_dmap; i++)
		ccvm_mutex_lock(&sp->dmap[i].m);
}

static void dmap_unlock_all(struct snp_platform *sp)
{
	unsigned int i = sp->nr_dmap;

	while (i--)
		ccvm_mutex_unlock(&sp->dmap[i].m);
}

/* Is the effective entry @e of @pfn the guest @asid's page at @gfn? */
static bool rmp_owned_at(const struct ccvm_snp_rmp_entry *e, uint64_t pfn, uint32_t asid,
			 uint64_t gfn)
{
	return e->assigned && !e->immutable && e->asid == asid &&
	       e->gpa + ((pfn - e->entry_pfn) << CCVM_PAGE_SHIFT) == gfn << CCVM_PAGE_SHIFT;
}

/* ---- capabilities and platform ------------------------------------------- */

static void snp_get_caps(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
{
	(void)vm;
	caps->name = "snp";
	caps->vm_type = 4;		/* KVM_X86_SNP_VM */
	caps->memory_attributes = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	/* MMAP always (6.18); the core allows INIT_SHARED only in place. */
	/* Huge folios: 2M RMP entries where a whole 2M folio is private. */
	caps->gmem_flags = CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED |
			   CCVM_GMEM_FLAG_HUGETLB;
	caps->private_max_level = CCVM_LEVEL_2M;
	caps->shared_max_level = CCVM_LEVEL_2M;
	caps->has_shared_bit = true;	/* the C-bit, as the VM's shared bit */
	caps->has_mirror_root = false;
	caps->requires_accept = true;	/* PVALIDATE */
	caps->needs_finalize = true;	/* SNP_LAUNCH_FINISH */
	/* The folio and its bytes stay in gmem until punched. */
	caps->preserves_data_without_punch = true;
	caps->private_readable_by_host = false;
	caps->map_gpa_max_bytes = 0;
	caps->study_knobs = 1ull << CCVM_STUDY_SNP_RMP_UPDATE;
}

static int snp_platform_init(struct ccvm_platform *p)
{
	struct snp_platform *sp = snp_plat(p);
	unsigned int i;
	int err;

	err = ccvm_snp_hw_init(p, &sp->hw);
	if (err)
		return err;
	/* One stripe when serial: the schedules of a single mutex. */
	sp->nr_dmap = ccvm_platform_sched(p) ? 1 : SNP_DMAP_STRIPES;
	for (i = 0; i < sp->nr_dmap; i++) {
		err = ccvm_mutex_init(&sp->dmap[i].m, ccvm_platform_sched(p), "dmap_mutex");
		if (err) {
			while (i--)
				ccvm_mutex_destroy(&sp->dmap[i].m);
			ccvm_snp_hw_fini(&sp->hw);
			return err;
		}
	}
	atomic_init(&sp->update_hook, NULL);
	atomic_init(&sp->update_hook_ctx, NULL);
	return 0;
}

static void snp_platform_destroy(struct ccvm_platform *p)
{
	struct snp_platform *sp = snp_plat(p);
	unsigned int i;

	for (i = 0; i < sp->nr_dmap; i++)
		ccvm_mutex_destroy(&sp->dmap[i].m);
	ccvm_snp_hw_fini(&sp->hw);
}

/* ---- VM lifecycle ------------------------------------------------------------ */

/* KVM_SEV_INIT2 + SNP_LAUNCH_START: an ASID and the firmware context page. */
static int snp_vm_init(struct ccvm_vm *vm)
{
	struct ccvm_snp_hw *hw = vm_hw(vm);
	struct snp_vm *sv = snp_vm(vm);
	uint64_t pfn;
	int err;

	sv->ctx_pfn = NO_PFN;
	err = ccvm_snp_asid_alloc(hw, vm, &sv->asid);
	if (err)
		return err;
	err = ccvm_page_alloc(ccvm_vm_platform(vm), &pfn);
	if (err)
		goto err_asid;
	/* SNP_GCTX_CREATE: the context page becomes the firmware's. */
	ccvm_mutex_lock(dmap_mutex(vm, pfn));
	err = ccvm_snp_fw_mark_pages(hw, vm, pfn, 1);
	ccvm_mutex_unlock(dmap_mutex(vm, pfn));
	if (err) {
		/* fw_mark_pages left it shared, or leaked it. */
		ccvm_page_free(ccvm_vm_platform(vm), pfn);
		err = -EIO;
		goto err_asid;
	}
	sv->ctx_pfn = pfn;
	sv->launch_started = true;
	return 0;

err_asid:
	ccvm_snp_asid_free(hw, vm, sv->asid);
	sv->asid = 0;
	return err;
}

/*
 * snp_page_reclaim() + make shared of a firmware-owned page; on failure the
 * page is leaked (snp-hw did it) and the VM is bugged, as KVM does.
 */
static void reclaim_fw_page(struct ccvm_vm *vm, uint64_t pfn, const char *what)
{
	if (!ccvm_snp_fw_reclaim_pages(vm_hw(vm), vm, pfn, 1)) {
		ccvm_page_free(ccvm_vm_platform(vm), pfn);
		return;
	}
	ccvm_vm_bug(vm, "snp: reclaim of the %s page (pfn %#" PRIx64 ") failed, leaked",
		    what, pfn);
}

/* SNP_DECOMMISSION, reclaim the context page, give the ASID back. */
static void snp_vm_destroy(struct ccvm_vm *vm)
{
	struct snp_vm *sv = snp_vm(vm);

	sv->launch_started = false;
	sv->launch_finished = false;
	if (sv->ctx_pfn != NO_PFN) {
		reclaim_fw_page(vm, sv->ctx_pfn, "context");
		sv->ctx_pfn = NO_PFN;
	}
	if (sv->asid) {
		/* Reusable only after WBINVD + SNP_DF_FLUSH (the hardware's pool). */
		ccvm_snp_asid_free(vm_hw(vm), vm, sv->asid);
		sv->asid = 0;
	}
}

/* SNP_LAUNCH_FINISH. */
static int snp_vm_finalize(struct ccvm_vm *vm)
{
	struct snp_vm *sv = snp_vm(vm);

	if (!sv->launch_started || sv->launch_finished)
		return -EINVAL;
	sv->launch_finished = true;
	return 0;
}

/*
 * SNP_LAUNCH_UPDATE of one page (sev_gmem_post_populate): the page must
 * still be shared (-EEXIST otherwise: each page is populated once), the
 * source is copied in while the host may still write it, then the page is
 * assigned (mutable, as KVM does for guest pages) and the firmware measures
 * and validates it.  A page that fails after the RMPUPDATE goes back to
 * shared, or is leaked.
 */
static int snp_populate(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn, const void *src,
			uint64_t flags)
{
	struct ccvm_platform *p = ccvm_vm_platform(vm);
	struct ccvm_snp_hw *hw = vm_hw(vm);
	struct snp_vm *sv = snp_vm(vm);
	struct ccvm_snp_rmp_entry e;
	int err;

	(void)flags;	/* SNP always measures: no TDX-style MR.EXTEND choice */
	if (ccvm_vm_is_bugged(vm))
		return -EIO;
	if (!sv->launch_started || sv->launch_finished)
		return -EINVAL;
	ccvm_mutex_lock(dmap_mutex(vm, pfn));
	if (ccvm_snp_rmpread(hw, pfn, &e)) {
		err = -EINVAL;
		goto out;
	}
	if (e.assigned) {
		err = -EEXIST;
		goto out;
	}
	/* The host writes the source through the direct map (I22 holds). */
	err = ccvm_snp_host_access(hw, pfn, true);
	if (err)
		goto out;
	ccvm_page_mark_dirty(p, pfn);
	memcpy(ccvm_page_ptr(p, pfn), src, CCVM_PAGE_SIZE);
	err = ccvm_snp_rmp_make_private(hw, vm, pfn, gfn << CCVM_PAGE_SHIFT, CCVM_LEVEL_4K,
					sv->asid, false);
	if (err) {
		err = -EIO;
		goto out;
	}
	err = ccvm_snp_fw_launch_update(hw, vm, pfn, sv->asid, CCVM_SNP_LAUNCH_PAGE_NORMAL);
	if (err) {
		if (ccvm_snp_rmp_make_shared(hw, vm, pfn, CCVM_LEVEL_4K)) {
			ccvm_snp_leak_pages(hw, pfn, 1);
			ccvm_vm_bug(vm, "snp: populate could not return pfn %#" PRIx64, pfn);
		} else {
			ccvm_snp_clflush_pages(hw, vm, pfn, 1);
		}
		err = -EIO;
	}
out:
	ccvm_mutex_unlock(dmap_mutex(vm, pfn));
	return err;
}

/* ---- vCPUs ----------------------------------------------------------------------- */

/*
 * snp_safe_alloc_page(): a page whose pfn is not 2M aligned (the erratum
 * where a 2M-aligned VMSA can collide with a 2M RMP entry).
 */
static int safe_alloc_page(struct ccvm_platform *p, uint64_t *out)
{
	uint64_t aligned[4];
	unsigned int n = 0, i;
	uint64_t pfn;
	int err;

	for (;;) {
		err = ccvm_page_alloc(p, &pfn);
		if (err || pfn % PAGES_PER_2M)
			break;
		if (n == sizeof(aligned) / sizeof(aligned[0])) {
			ccvm_page_free(p, pfn);
			err = -ENOMEM;
			break;
		}
		aligned[n++] = pfn;
	}
	for (i = 0; i < n; i++)
		ccvm_page_free(p, aligned[i]);
	if (!err)
		*out = pfn;
	return err;
}

/* The vCPU's save area: guest-owned, immutable, launched as a VMSA. */
static int snp_vcpu_create(struct ccvm_vcpu *vcpu)
{
	struct ccvm_vm *vm = ccvm_vcpu_vm(vcpu);
	struct ccvm_platform *p = ccvm_vm_platform(vm);
	struct ccvm_snp_hw *hw = vm_hw(vm);
	struct snp_vcpu *sc = ccvm_vcpu_priv(vcpu);
	uint64_t pfn;
	int err;

	sc->vmsa_pfn = NO_PFN;
	err = safe_alloc_page(p, &pfn);
	if (err)
		return err;
	ccvm_mutex_lock(dmap_mutex(vm, pfn));
	err = ccvm_snp_rmp_make_private(hw, vm, pfn, SNP_VMSA_GPA, CCVM_LEVEL_4K,
					snp_vm(vm)->asid, true);
	ccvm_mutex_unlock(dmap_mutex(vm, pfn));
	if (err) {
		ccvm_page_free(p, pfn);
		return -EIO;
	}
	err = ccvm_snp_fw_launch_update(hw, vm, pfn, snp_vm(vm)->asid,
					CCVM_SNP_LAUNCH_PAGE_VMSA);
	if (err) {
		reclaim_fw_page(vm, pfn, "VMSA");
		return -EIO;
	}
	sc->vmsa_pfn = pfn;
	return 0;
}

static void snp_vcpu_free(struct ccvm_vcpu *vcpu)
{
	struct snp_vcpu *sc = ccvm_vcpu_priv(vcpu);

	if (sc->vmsa_pfn == NO_PFN)
		return;
	reclaim_fw_page(ccvm_vcpu_vm(vcpu), sc->vmsa_pfn, "VMSA");
	sc->vmsa_pfn = NO_PFN;
}

/* ---- guest_memfd hooks ------------------------------------------------------------ */

/* A dmap stripe held. */
static bool gfn_pending(const struct snp_vm *sv, uint64_t gfn)
{
	return gfn >= sv->pending_start && gfn < sv->pending_end;
}

/* sev_gmem_prepare(); the dmap stripe of @pfn held (its 2M region's). */
static int prepare_locked(struct ccvm_vm *vm, uint64_t pfn, uint64_t gfn, int max_order)
{
	struct ccvm_snp_hw *hw = vm_hw(vm);
	struct snp_vm *sv = snp_vm(vm);
	struct ccvm_snp_rmp_entry e, h;
	uint64_t hpfn = pfn & ~(PAGES_PER_2M - 1), hgfn = gfn & ~(PAGES_PER_2M - 1);
	int level = CCVM_LEVEL_4K;

	if (ccvm_snp_rmpread(hw, pfn, &e))
		return -EINVAL;
	if (rmp_owned_at(&e, pfn, sv->asid, gfn))
		return 0;
	if (e.assigned) {
		ccvm_log(CCVM_LOG_WARN,
			 "snp: vm %u gfn %#" PRIx64 ": pfn %#" PRIx64 " is assigned to asid %u"
			 " at gpa %#" PRIx64, ccvm_vm_id(vm), gfn, pfn, e.asid, e.gpa);
		return -EINVAL;
	}
	/* The update in flight owns the RMPUPDATE; the fault retries (RMP #NPF). */
	if (gfn_pending(sv, gfn))
		return 0;
	/* A fault that raced with a conversion to shared: it is stale and retries. */
	if (!ccvm_vm_gfn_is_private(vm, gfn))
		return 0;
	/*
	 * A 2M entry for the 2M block around the page when one folio backs it
	 * (max_order, gfn and pfn co-aligned), the whole region is still
	 * shared, and no update in flight owns a page of it: sev_gmem_prepare
	 * with a huge folio.  Otherwise a 4K entry for this page.
	 */
	if (max_order >= ORDER_2M && ((gfn ^ pfn) % PAGES_PER_2M) == 0 &&
	    hpfn + PAGES_PER_2M <= hw->nr_pages && !ccvm_snp_rmpread(hw, hpfn, &h) &&
	    !h.assigned && !h.region_assigned_4k &&
	    !(sv->pending_start < hgfn + PAGES_PER_2M && hgfn < sv->pending_end)) {
		level = CCVM_LEVEL_2M;
		pfn = hpfn;
		gfn = hgfn;
	}
	if (ccvm_snp_rmp_make_private(hw, vm, pfn, gfn << CCVM_PAGE_SHIFT, level, sv->asid,
				      false))
		return -EINVAL;
	return 0;
}

static int snp_gmem_prepare(struct ccvm_vm *vm, uint64_t pfn, uint64_t gfn, int max_order)
{
	struct ccvm_snp_rmp_entry e;
	int err;

	if (ccvm_vm_is_bugged(vm))
		return -EIO;
	/* Called on every get: the common case is a page already prepared. */
	if (ccvm_snp_rmpread(vm_hw(vm), pfn, &e))
		return -EINVAL;
	if (rmp_owned_at(&e, pfn, snp_vm(vm)->asid, gfn))
		return 0;
	ccvm_mutex_lock(dmap_mutex(vm, pfn));
	err = prepare_locked(vm, pfn, gfn, max_order);
	ccvm_mutex_unlock(dmap_mutex(vm, pfn));
	return err;
}

/*
 * sev_gmem_invalidate(): every assigned page of [pfn_start, pfn_end) back to
 * the hypervisor.  A 2M entry wholly inside the range goes in one 2M
 * RMPUPDATE; a page inside a 2M entry that is not is PSMASHed out first
 * (I24).  Pages are flushed from the caches before the host reuses them;
 * one that cannot be made shared is leaked (the free then keeps it).
 */
static void snp_gmem_invalidate(struct ccvm_platform *p, uint64_t pfn_start, uint64_t pfn_end)
{
	struct ccvm_snp_hw *hw = ccvm_snp_hw_of(p);
	uint64_t pfn = pfn_start;

	while (pfn < pfn_end) {
		struct ccvm_snp_rmp_entry e;

		if (ccvm_snp_rmpread(hw, pfn, &e) || !e.assigned) {
			pfn++;
			continue;
		}
		if (e.level == CCVM_LEVEL_2M && e.entry_pfn == pfn &&
		    pfn_end - pfn >= PAGES_PER_2M) {
			if (!ccvm_snp_rmp_make_shared(hw, NULL, pfn, CCVM_LEVEL_2M)) {
				ccvm_snp_clflush_pages(hw, NULL, pfn, PAGES_PER_2M);
				pfn += PAGES_PER_2M;
				continue;
			}
			/* Fall back to 4K pages, so only the bad ones leak. */
		}
		if (e.level == CCVM_LEVEL_2M)
			ccvm_snp_rmp_psmash(hw, NULL, pfn);
		if (ccvm_snp_rmp_make_shared(hw, NULL, pfn, CCVM_LEVEL_4K))
			ccvm_snp_leak_pages(hw, pfn, 1);
		else
			ccvm_snp_clflush_pages(hw, NULL, pfn, 1);
		pfn++;
	}
}

/* sev_gmem_max_mapping_level(): never above the RMP entry (I8). */
static int snp_max_mapping_level(struct ccvm_vm *vm, uint64_t pfn, bool is_private)
{
	struct ccvm_snp_rmp_entry e;

	if (!is_private || pfn == NO_PFN)
		return 0;
	if (ccvm_snp_rmpread(vm_hw(vm), pfn, &e) || !e.assigned)
		return CCVM_LEVEL_4K;
	return e.level;
}

/* ---- conversions: update_mem_attr ---------------------------------------------- */

/* shared -> private of one page already in gmem; its dmap stripe held. */
static int convert_to_private(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn)
{
	struct ccvm_snp_hw *hw = vm_hw(vm);
	struct snp_vm *sv = snp_vm(vm);
	struct ccvm_snp_rmp_entry e;

	if (ccvm_snp_rmpread(hw, pfn, &e))
		return -EINVAL;
	if (rmp_owned_at(&e, pfn, sv->asid, gfn))
		return 0;		/* a fault prepared it first */
	if (e.assigned) {
		ccvm_log(CCVM_LOG_WARN, "snp: vm %u gfn %#" PRIx64 ": pfn %#" PRIx64
			 " belongs to asid %u at gpa %#" PRIx64, ccvm_vm_id(vm), gfn, pfn,
			 e.asid, e.gpa);
		return -EINVAL;
	}
	/* Direct map first: no large host mapping may cover a private 4K page. */
	ccvm_snp_directmap_split(hw, vm, pfn);
	if (ccvm_snp_rmp_make_private(hw, vm, pfn, gfn << CCVM_PAGE_SHIFT, CCVM_LEVEL_4K,
				      sv->asid, false))
		return -EIO;
	return 0;
}

/*
 * private -> shared of the page at @gfn and, for a 2M entry wholly inside
 * [gfn, end), of the whole entry; *@done gets the pages handled.
 * The dmap stripe of @pfn held (a 2M entry and a PSMASH stay in its region).
 */
static int convert_to_shared(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn, uint64_t end,
			     uint64_t *done)
{
	struct ccvm_snp_hw *hw = vm_hw(vm);
	struct snp_vm *sv = snp_vm(vm);
	struct ccvm_snp_rmp_entry e;

	*done = 1;
	if (ccvm_snp_rmpread(hw, pfn, &e))
		return -EINVAL;
	if (!e.assigned)
		return 0;
	if (!rmp_owned_at(&e, pfn, sv->asid, gfn)) {
		ccvm_log(CCVM_LOG_WARN, "snp: vm %u gfn %#" PRIx64 ": pfn %#" PRIx64
			 " is not its page (asid %u gpa %#" PRIx64 ")", ccvm_vm_id(vm), gfn,
			 pfn, e.asid, e.gpa);
		return -EINVAL;
	}
	if (e.level == CCVM_LEVEL_2M) {
		if (e.entry_pfn == pfn && end - gfn >= PAGES_PER_2M) {
			if (ccvm_snp_rmp_make_shared(hw, vm, pfn, CCVM_LEVEL_2M))
				return -EIO;
			/* After the RMPUPDATE: the host gets it back with its key. */
			ccvm_snp_clflush_pages(hw, vm, pfn, PAGES_PER_2M);
			*done = PAGES_PER_2M;
			return 0;
		}
		/* A 4K change inside a 2M entry (I24). */
		if (ccvm_snp_rmp_psmash(hw, vm, pfn))
			return -EIO;
	}
	if (ccvm_snp_rmp_make_shared(hw, vm, pfn, CCVM_LEVEL_4K))
		return -EIO;
	/* Direct map after: nothing to merge back (never), flush for the host. */
	ccvm_snp_clflush_pages(hw, vm, pfn, 1);
	return 0;
}

struct convert_walk {
	uint64_t end;
	bool to_private;
	int err;		/* the first failure; the walk goes on past it */
};

/* One page gmem already holds: make its RMP entry follow the new attribute. */
static int convert_page(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn, void *ctx)
{
	struct convert_walk *w = ctx;
	uint64_t done = 1;
	int err;

	ccvm_mutex_lock(dmap_mutex(vm, pfn));
	if (w->to_private)
		err = convert_to_private(vm, gfn, pfn);
	else
		err = convert_to_shared(vm, gfn, pfn, w->end, &done);
	ccvm_mutex_unlock(dmap_mutex(vm, pfn));
	if (err && !w->err)
		w->err = err;
	return (int)done;
}

static void sv_pending_clear(struct snp_platform *sp, struct snp_vm *sv)
{
	dmap_lock_all(sp);
	sv->pending_start = 0;
	sv->pending_end = 0;
	dmap_unlock_all(sp);
}

/*
 * Make the RMP follow the attribute store for the pages of [start, end)
 * that gmem already holds.  Pages not allocated yet are left to
 * gmem_prepare (to private) or have nothing to undo (to shared).
 */
static int snp_update_mem_attr(struct ccvm_vm *vm, struct ccvm_memslot *slot,
			       uint64_t attrs, uint64_t start, uint64_t end)
{
	struct snp_platform *sp = snp_plat(ccvm_vm_platform(vm));
	struct snp_vm *sv = snp_vm(vm);
	struct convert_walk w = {
		.end = end,
		.to_private = attrs & CCVM_MEMORY_ATTRIBUTE_PRIVATE,
	};
	ccvm_snp_update_hook_fn hook;
	int err;

	/* Upstream: the RMP changes at prepare and at free only. */
	if (ccvm_vm_study_knob(vm, CCVM_STUDY_SNP_RMP_UPDATE) == CCVM_SNP_RMP_MERGED)
		return 0;
	if (!ccvm_memslot_has_gmem(slot) || start >= end)
		return 0;
	if (ccvm_vm_is_bugged(vm))
		return -EIO;

	if (w.to_private) {
		dmap_lock_all(sp);
		sv->pending_start = start;
		sv->pending_end = end;
		dmap_unlock_all(sp);
	}
	/* The window between the attribute store and the RMPUPDATEs. */
	hook = atomic_load(&sp->update_hook);
	if (hook)
		hook(vm, start, end, attrs, atomic_load(&sp->update_hook_ctx));

	/* The walk holds gmem's invalidate lock: no punch frees a page meanwhile. */
	err = ccvm_memslot_for_each_gmem_pfn(vm, slot, start, end, convert_page, &w);
	sv_pending_clear(sp, sv);
#ifndef CCVM_MUTANT_SNP_PENDING_AFTER_WALK
	/*
	 * While the range was pending, a fault in it left the RMPUPDATE to
	 * this walk (the posted op's window: the fault maps the page and the
	 * guest takes RMP nested faults until the walk reaches it).  A page
	 * such a fault allocated behind the walk's position was not visited:
	 * walk once more now that faults prepare their own pages (pages
	 * already assigned are skipped).  Without this second walk that page
	 * stayed unassigned in the RMP under a private leaf: I23, found by the
	 * explorer, replayed by tests/check_explore.c and tests/check_mutants.c.
	 */
	if (w.to_private && !err && !w.err)
		err = ccvm_memslot_for_each_gmem_pfn(vm, slot, start, end, convert_page, &w);
#endif
	return err ? err : w.err;
}

void ccvm_snp_set_update_mem_attr_hook(struct ccvm_platform *p, ccvm_snp_update_hook_fn fn,
				       void *ctx)
{
	struct snp_platform *sp;

	if (!p || strcmp(ccvm_platform_backend_name(p), "snp"))
		return;
	sp = snp_plat(p);
	atomic_store(&sp->update_hook_ctx, ctx);
	atomic_store(&sp->update_hook, fn);
}

/* ---- guest side ------------------------------------------------------------------ */

/* PSMASH @pfn's RMP entry if it is @asid's 2M entry; a racing PSMASH is fine. */
static void psmash_own_2m(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			  uint32_t asid)
{
	struct ccvm_snp_rmp_entry e;

	if (!ccvm_snp_rmpread(hw, pfn, &e) && e.assigned && e.level == CCVM_LEVEL_2M &&
	    e.asid == asid)
		ccvm_snp_rmp_psmash(hw, vm, pfn);
}

/*
 * sev_handle_rmp_fault() for a nested fault with the RMP bit on a private
 * access: a 2M RMP entry under a 4K NPT leaf is PSMASHed (a racing PSMASH
 * is fine); the core then zaps the gfn and faults again.  Under a 2M NPT
 * leaf KVM PSMASHes only for the size-mismatch bit, which the simulated
 * RMP never raises on an access: there the zap and refault alone, so that
 * no 2M NPT leaf stands over 4K RMP entries while the core zaps (I8).
 */
static void handle_rmp_fault(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn)
{
	struct ccvm_vm *vm = ccvm_vcpu_vm(vcpu);
	struct ccvm_snp_rmp_entry e;

	if (!ccvm_vm_gfn_is_private(vm, gfn))
		return;
	if (ccvm_snp_rmpread(vm_hw(vm), pfn, &e) || !e.assigned)
		return;
	if (e.level == CCVM_LEVEL_2M && e.asid == snp_vm(vm)->asid &&
	    ccvm_vcpu_private_level(vcpu, gfn) == CCVM_LEVEL_4K)
		ccvm_snp_rmp_psmash(vm_hw(vm), vm, pfn);
}

static int snp_guest_access(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn,
			    bool is_private, bool write)
{
	struct ccvm_vm *vm = ccvm_vcpu_vm(vcpu);
	int rc;

	/* Shared memory is the VMM's own: no RMP entry covers it. */
	if (pfn == NO_PFN)
		return is_private ? -EIO : 0;
	rc = ccvm_snp_guest_access(vm_hw(vm), vm, snp_vm(vm)->asid, gfn << CCVM_PAGE_SHIFT,
				   pfn, is_private, write);
	switch (rc) {
	case CCVM_SNP_SUCCESS:
		return 0;
	case CCVM_SNP_VC_NOT_VALIDATED:
		return -EACCES;		/* #VC: the guest PVALIDATEs and retries */
	case CCVM_SNP_NPF_RMP:
		if (is_private)
			handle_rmp_fault(vcpu, gfn, pfn);
		return CCVM_GUEST_NEEDS_FAULT;
	default:
		return -EIO;
	}
}

/*
 * PVALIDATE of one page of size @level (4K or 2M) at @gfn.  Not mapped
 * yet, or not assigned to the guest at this GPA yet (a fault will prepare
 * it, or an update in flight will land): fault first.  A 4K PVALIDATE
 * inside a 2M RMP entry takes a nested fault with the size-mismatch bit,
 * which KVM answers with a PSMASH and a zap of the 2M gfn block so the
 * next fault maps 4K (sev_handle_rmp_fault()).  KVM does the PSMASH first
 * and the zap after, with no lock between: until the zap a 2M NPT leaf
 * covers 4K RMP entries, which real hardware tolerates because every
 * access through that leaf takes an RMP nested fault with the size bit
 * and goes through the same handler.  The simulated hardware checks no
 * NPT size on access, so here the NPT level never exceeds the RMP's at
 * any point another thread can see (I8), and the two steps go the other
 * way round, each at the level where it is safe:
 *   - NPT leaf at 2M: CCVM_GUEST_NEEDS_ZAP without the PSMASH; the core
 *     zaps the 2M gfn block (an invalidation: a fault that chose 2M from
 *     the 2M RMP entry before it is stale and retries) and faults the page
 *     in again at the accept's level, 4K, under the 2M RMP entry (a 4K
 *     NPT leaf inside a 2M RMP entry is the legal direction);
 *   - NPT leaf at 4K: PSMASH, under mmu_lock read, while the page table
 *     holding that 4K leaf keeps any fault from putting a 2M leaf over the
 *     block (the fault path never replaces a table by a huge leaf, and a
 *     zap that removes the table is an invalidation, which makes a fault
 *     that read the 2M RMP level before the PSMASH stale); then the
 *     PVALIDATE again, now at a 4K entry.
 * The explorer's split-fault scenario found the old order (I8 broken
 * between the PSMASH and the zap; tests/check_explore.c replays it).
 * A 2M PVALIDATE over
 * 4K RMP entries fails with FAIL_SIZEMISMATCH to the guest (-ERANGE),
 * which validates the 2M page by page, as Linux does.  Validating a
 * validated page is the guest's bug: FAIL_NOUPDATE, reported as -EEXIST.
 */
static int snp_pvalidate_as_guest(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn,
				  bool mapped, int level)
{
	struct ccvm_vm *vm = ccvm_vcpu_vm(vcpu);
	struct ccvm_snp_hw *hw = vm_hw(vm);
	uint32_t asid = snp_vm(vm)->asid;
	int rc;

	if (!mapped || pfn == NO_PFN)
		return CCVM_GUEST_NEEDS_FAULT;
	/* The 2M block's pages are not one 2M frame: no 2M RMP entry can cover it. */
	if (level == CCVM_LEVEL_2M && (pfn % PAGES_PER_2M)) {
		ccvm_log(CCVM_LOG_DEBUG, "snp vm %u: PVALIDATE of gfn %#" PRIx64 " at 2M over "
			 "pages that are no 2M frame: FAIL_SIZEMISMATCH", ccvm_vm_id(vm), gfn);
		return -ERANGE;
	}
	rc = ccvm_snp_pvalidate(hw, vm, asid, gfn << CCVM_PAGE_SHIFT, pfn, level, true);
	if (rc == CCVM_SNP_FAIL_SIZEMISMATCH && level == CCVM_LEVEL_4K) {
		/* sev_handle_rmp_fault(), ordered for I8 (see above). */
#ifndef CCVM_MUTANT_SNP_PSMASH_BEFORE_ZAP
		if (ccvm_vcpu_private_level(vcpu, gfn) > CCVM_LEVEL_4K)
			return CCVM_GUEST_NEEDS_ZAP;
#else
		/* The old order: PSMASH under the 2M leaf, then the core's zap. */
		psmash_own_2m(hw, vm, pfn, asid);
		return CCVM_GUEST_NEEDS_ZAP;
#endif
		psmash_own_2m(hw, vm, pfn, asid);
		rc = ccvm_snp_pvalidate(hw, vm, asid, gfn << CCVM_PAGE_SHIFT, pfn, level, true);
		/* Still 2M: the PSMASH failed; zap and refault, the guest retries. */
		if (rc == CCVM_SNP_FAIL_SIZEMISMATCH)
			return CCVM_GUEST_NEEDS_ZAP;
	}
	switch (rc) {
	case CCVM_SNP_SUCCESS:
		return 0;
	case CCVM_SNP_FAIL_SIZEMISMATCH:
		ccvm_log(CCVM_LOG_DEBUG, "snp vm %u: PVALIDATE of gfn %#" PRIx64 " at 2M "
			 "over 4K RMP entries: FAIL_SIZEMISMATCH", ccvm_vm_id(vm), gfn);
		return -ERANGE;
	case CCVM_SNP_FAIL_NOUPDATE:
		return -EEXIST;
	case CCVM_SNP_NPF_RMP:
		return CCVM_GUEST_NEEDS_FAULT;
	case CCVM_SNP_FAIL_INPUT:
		return -EINVAL;
	default:
		return -EIO;
	}
}

static int snp_guest_accept(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn, bool mapped)
{
	return snp_pvalidate_as_guest(vcpu, gfn, pfn, mapped, CCVM_LEVEL_4K);
}

static int snp_guest_accept_level(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn,
				  int map_level, int level)
{
	return snp_pvalidate_as_guest(vcpu, gfn, pfn, map_level > 0, level);
}

/* The guest's next PSC entry at @gpa: 2M if aligned with 2M left. */
static bool psc_entry_is_2m(uint64_t gpa, uint64_t end)
{
	return !(gpa & (CCVM_HPAGE_2M_SIZE - 1)) && end - gpa >= CCVM_HPAGE_2M_SIZE;
}

/*
 * The guest's side of a PSC to shared: Linux rescinds the validation of
 * each page (PVALIDATE off) before it asks (7.5).  It matters where the
 * RMP entry outlives the conversion (the merged design: nothing is
 * RMPUPDATEd until gmem frees the page), else a page made private again
 * would still be validated and the guest's next PVALIDATE would fail.
 */
static void psc_rescind(struct ccvm_vcpu *vcpu, uint64_t gpa, uint64_t npages)
{
	struct ccvm_vm *vm = ccvm_vcpu_vm(vcpu);
	struct ccvm_snp_hw *hw = vm_hw(vm);
	uint32_t asid = snp_vm(vm)->asid;
	uint64_t i;

	for (i = 0; i < npages; i++) {
		uint64_t gfn = (gpa >> CCVM_PAGE_SHIFT) + i, pfn;
		struct ccvm_snp_rmp_entry e;

		if (ccvm_vm_gfn_to_gmem_pfn(vm, gfn, &pfn) || ccvm_snp_rmpread(hw, pfn, &e) ||
		    !rmp_owned_at(&e, pfn, asid, gfn) || !e.validated)
			continue;
		if (e.level == CCVM_LEVEL_2M) {
			uint64_t hgfn = gfn & ~(PAGES_PER_2M - 1);

			/*
			 * The 4K rescind's size-mismatch fault: PSMASH and zap the
			 * 2M gfn block, as sev_handle_rmp_fault() does, both inside
			 * this exit (no lock held), so that no 2M NPT leaf is left
			 * over the 4K entries when the exit reaches the VMM (I8).
			 */
			ccvm_snp_rmp_psmash(hw, vm, pfn);
			ccvm_vm_zap_gfn_range(vm, hgfn, hgfn + PAGES_PER_2M);
		}
		ccvm_snp_pvalidate(hw, vm, asid, gfn << CCVM_PAGE_SHIFT, pfn, CCVM_LEVEL_4K,
				   false);
	}
}

/* One MAP_GPA_RANGE exit per run of like entries (see the file comment). */
static int64_t snp_handle_exit_hypercall(struct ccvm_vcpu *vcpu, uint64_t gpa, uint64_t size,
					 bool to_private, struct ccvm_run *run)
{
	struct snp_vcpu *sc = ccvm_vcpu_priv(vcpu);
	uint64_t end = gpa + size, cur = gpa, npages = 0;
	uint32_t left;
	bool huge;

	if (ccvm_vm_is_bugged(ccvm_vcpu_vm(vcpu)))
		return -EIO;
	/* The rest of the request in progress, or a new one. */
	if (sc->psc_entries_left && gpa == sc->psc_next_gpa && end == sc->psc_end &&
	    to_private == sc->psc_to_private)
		left = sc->psc_entries_left;
	else
		left = CCVM_SNP_PSC_MAX_ENTRIES;
	huge = psc_entry_is_2m(cur, end);
	while (left && cur < end && psc_entry_is_2m(cur, end) == huge) {
		uint64_t n = huge ? PAGES_PER_2M : 1;

		npages += n;
		cur += n << CCVM_PAGE_SHIFT;
		left--;
	}
	sc->psc_next_gpa = cur;
	sc->psc_end = end;
	sc->psc_entries_left = left;
	sc->psc_to_private = to_private;
	if (!to_private)
		psc_rescind(vcpu, gpa, npages);

	run->hypercall.nr = CCVM_HC_MAP_GPA_RANGE;
	run->hypercall.args[0] = gpa;
	run->hypercall.args[1] = npages;
	run->hypercall.args[2] = (to_private ? CCVM_MAP_GPA_RANGE_ENCRYPTED
					     : CCVM_MAP_GPA_RANGE_DECRYPTED) |
				 (huge ? CCVM_MAP_GPA_RANGE_PAGE_SZ_2M
				       : CCVM_MAP_GPA_RANGE_PAGE_SZ_4K);
	return (int64_t)(npages << CCVM_PAGE_SHIFT);
}

/* ---- host side ---------------------------------------------------------------------- */

static int snp_host_access(struct ccvm_platform *p, uint64_t pfn, bool write)
{
	return ccvm_snp_host_access(ccvm_snp_hw_of(p), pfn, write);
}

static void snp_host_ciphertext(struct ccvm_platform *p, uint64_t pfn, void *page)
{
	ccvm_snp_host_ciphertext(ccvm_snp_hw_of(p), pfn, page);
}

/* ---- inspection ------------------------------------------------------------------------ */

static bool is_snp_vm(const struct ccvm_vm *vm)
{
	return vm && !strcmp(ccvm_vm_backend_name(vm), "snp");
}

int ccvm_snp_vm_asid(struct ccvm_vm *vm, uint32_t *asid)
{
	if (!is_snp_vm(vm) || !asid)
		return -EINVAL;
	*asid = snp_vm(vm)->asid;
	return 0;
}

int ccvm_snp_vm_context_pfn(struct ccvm_vm *vm, uint64_t *pfn)
{
	if (!is_snp_vm(vm) || !pfn)
		return -EINVAL;
	if (snp_vm(vm)->ctx_pfn == NO_PFN)
		return -ENOENT;
	*pfn = snp_vm(vm)->ctx_pfn;
	return 0;
}

int ccvm_snp_vcpu_vmsa_pfn(struct ccvm_vcpu *vcpu, uint64_t *pfn)
{
	struct snp_vcpu *sc;

	if (!vcpu || !is_snp_vm(ccvm_vcpu_vm(vcpu)) || !pfn)
		return -EINVAL;
	sc = ccvm_vcpu_priv(vcpu);
	if (sc->vmsa_pfn == NO_PFN)
		return -ENOENT;
	*pfn = sc->vmsa_pfn;
	return 0;
}

const struct ccvm_backend_ops ccvm_snp_backend_ops = {
	.abi_version = CCVM_BACKEND_ABI_VERSION,
	.size = sizeof(struct ccvm_backend_ops),
	.name = "snp",
	.platform_priv_size = sizeof(struct snp_platform),
	.vm_priv_size = sizeof(struct snp_vm),
	.vcpu_priv_size = sizeof(struct snp_vcpu),
	.get_caps = snp_get_caps,
	.platform_init = snp_platform_init,
	.platform_destroy = snp_platform_destroy,
	.vm_init = snp_vm_init,
	/* vm_pre_destroy: SNP has no key to release before the vCPUs go. */
	.vm_destroy = snp_vm_destroy,
	.vm_finalize = snp_vm_finalize,
	/* vm_terminate: no SNP equivalent of KVM_TDX_TERMINATE_VM. */
	.populate = snp_populate,
	.vcpu_create = snp_vcpu_create,
	.vcpu_free = snp_vcpu_free,
	.gmem_prepare = snp_gmem_prepare,
	.gmem_invalidate = snp_gmem_invalidate,
	.update_mem_attr = snp_update_mem_attr,
	/* fault_is_private: the core's shared-bit rule is the C-bit. */
	.max_mapping_level = snp_max_mapping_level,
	.handle_exit_hypercall = snp_handle_exit_hypercall,
	.guest_accept = snp_guest_accept,
	.guest_accept_level = snp_guest_accept_level,
	.guest_access = snp_guest_access,
	.host_access = snp_host_access,
	.host_ciphertext = snp_host_ciphertext,
	.check_invariants = ccvm_snp_check_invariants,
};
