/* SPDX-License-Identifier: MIT */
/*
 * The simulated Intel TDX module: the hardware side of the "tdx" backend.
 *
 * This is a datasheet.  The KVM side of the backend (backends/tdx/tdx.c)
 * drives the module only through the functions below, exactly as KVM drives
 * the real module through SEAMCALLs; it never touches PAMT, S-EPT or TD
 * control state directly.  docs/semantics.md section 6 is the specification.
 *
 * Model
 * -----
 * Module (struct ccvm_tdx_module, one per platform, in the backend's
 * platform private area):
 *   - KeyIDs.  KeyID 0 is the host's (no TD key).  CCVM_TDX_GLOBAL_KEYID
 *     (1) is the module's global private KeyID (TDR pages, PAMT).  TD
 *     HKIDs are 2 .. nr_hkids + 1, nr_hkids = the platform's nr_keyids, or
 *     32 when that is 0.  Two views of an HKID:
 *       host pool (KVM's ida): free / allocated / leaked, through
 *         ccvm_tdx_hkid_alloc/free/leak();
 *       KOT (the module's key ownership table): FREE / ASSIGNED (a TD owns
 *         it, from MNG.CREATE) / RECLAIMED (VPFLUSHDONE done, caches not yet
 *         written back everywhere) -> FREE again at KEY.FREEID.
 *     The host pool refuses to free an HKID the KOT still holds, so an HKID
 *     is reusable only after KEY.FREEID (I14).
 *   - Packages: max(1, nr_cpus / 2), at most 64; CPU c is in package
 *     min(c / 2, nr_packages - 1).  KEY.CONFIG and CACHE.WB are per package.
 *   - PAMT: one 8-byte entry per platform pfn (page type, owner TD, BEPOCH,
 *     an entry lock, a poison bit) in a lazily backed array: entries never
 *     touched cost no memory.  A second level has one entry per 2M region
 *     (same format) plus the region's count of pages in use at 4K and its
 *     Dynamic PAMT page pair.  A page is assigned at exactly one level: a
 *     2M page (PAGE.AUG at 2M) uses only the 2M entry (its 512 4K entries
 *     stay PT_NDA) and needs the region unused at 4K; a 4K page needs the
 *     region's 2M entry PT_NDA.  DEMOTE moves a 2M page to 512 4K entries.
 *   - Dynamic PAMT (ccvm_tdx_set_dynamic_pamt(), off by default): the 4K
 *     level then exists only for 2M regions that hold a page pair
 *     (PHYMEM.PAMT.ADD / REMOVE); a leaf that would give a page to a TD at
 *     4K in a region without one answers TDX_MISSING_PAMT_PAGE_PAIR.  The
 *     PAMT memory of a real module of this size, static or dynamic, is
 *     reported by ccvm_tdx_pamt_usage() (CCVM_TDX_PAMT_* constants).
 *   - The global key lock (KOT lock): MNG.CREATE, KEY.CONFIG, VPFLUSHDONE,
 *     CACHE.WB and KEY.FREEID take it exclusively.
 *
 * TD (struct ccvm_tdx_td, created by MNG.CREATE, freed by a successful
 * PHYMEM.PAGE.RECLAIM of its TDR page):
 *   lifecycle  HKID_ASSIGNED --KEY.CONFIG on every package--> KEYS_CONFIGURED
 *              --VPFLUSHDONE--> BLOCKED --KEY.FREEID--> TEARDOWN
 *   op state   UNINITIALIZED --MNG.INIT--> INITIALIZED --MR.FINALIZE--> RUNNABLE
 *   control    TDR (PT_TDR), CCVM_TDX_NR_TDCS TDCS pages (PT_TDCX, MNG.ADDCX);
 *              the S-EPT root lives in TDCS page CCVM_TDX_TDCS_SEPT_ROOT.
 *   S-EPT      real bytes: 512 8-byte entries per page, in the TDCS root page
 *              and in the pages the host donates with MEM.SEPT.ADD (PT_EPT).
 *              4 levels for GPAW 48, 5 for GPAW 52.  Leaves at 4K, and
 *              at 2M from PAGE.AUG (never PAGE.ADD: 4K only, as KVM builds
 *              a TD at 4K); DEMOTE splits a 2M leaf, nothing merges
 *              (PROMOTE, leaf 23, is not modelled: KVM does not allow it
 *              on the mirror root).
 *   TLB epoch  TD_EPOCH starts at 1.  A vCPU entering the guest is counted in
 *              the current epoch until it exits.  BLOCK records BEPOCH =
 *              TD_EPOCH in the blocked page's PAMT entry; TRACK advances the
 *              epoch, refused (PREVIOUS_TLB_EPOCH_BUSY) while a vCPU that
 *              entered before the previous TRACK is still in the guest.  A
 *              blocked page is "tracked" when BEPOCH < TD_EPOCH - 1, or
 *              BEPOCH == TD_EPOCH - 1 and no vCPU of that epoch is in the
 *              guest: i.e. a TRACK happened after the BLOCK and every vCPU in
 *              the guest at that TRACK has exited since (I12).
 *   locks      all try-locks; a failed one is TDX_OPERAND_BUSY | operand id:
 *                TDR lock (CCVM_TDX_OPERAND_TDR): exclusive for the leaves
 *                  that change the TD's lifecycle, op state or measurement
 *                  (KEY.CONFIG, MNG.ADDCX, MNG.INIT, PAGE.ADD, MR.EXTEND,
 *                  MR.FINALIZE, VPFLUSHDONE, KEY.FREEID, RECLAIM of the TDR);
 *                  shared for every other leaf on the TD;
 *                S-EPT tree lock (CCVM_TDX_OPERAND_SEPT): exclusive for
 *                  BLOCK, REMOVE, SEPT.REMOVE, UNBLOCK; shared for SEPT.ADD,
 *                  PAGE.ADD, MR.EXTEND, PAGE.AUG, SEPT.RD and the guest's
 *                  ACCEPT;
 *                TD epoch lock (CCVM_TDX_OPERAND_TD_EPOCH): exclusive for
 *                  TRACK, shared for VP.ENTER (and after it, until the
 *                  guest runs, with ccvm_tdx_set_entry_window());
 *                S-EPT entry lock (operand RCX, the GPA): SEPT.ADD, PAGE.ADD,
 *                  PAGE.AUG and ACCEPT on the same entry;
 *                PAMT entry lock (the page's operand register): any leaf
 *                  that changes the page's PAMT entry;
 *                TDVPR lock (CCVM_TDX_OPERAND_TDVPR): held by VP.ADDCX,
 *                  VP.INIT, VP.FLUSH and by a vCPU for as long as it is in
 *                  the guest (VP.ENTER .. ccvm_tdx_vp_exit()).
 *              The TDR, tree and epoch locks are sharex words on a serial
 *              platform; free-running, big-reader locks whose sharers
 *              count themselves on their host CPU's line, so that the
 *              vCPUs' leaves do not move one line between the CPUs (a
 *              try still never waits; of a sharer and an exclusive taker
 *              that meet, at most one holds the lock).
 *
 * vCPU (struct ccvm_tdx_vp, created by VP.CREATE, freed by a successful
 * RECLAIM of its TDVPR page): TDVPR (PT_TDVPR) + CCVM_TDX_NR_TDCX TDCX
 * pages (PT_TDCX), CREATED --VP.INIT--> INITIALIZED, associated with one
 * host CPU from VP.INIT/VP.ENTER until VP.FLUSH; in guest mode between a
 * successful VP.ENTER and ccvm_tdx_vp_exit().
 *
 * Pages: a page is given to a TD only if its PAMT type is PT_NDA; it then
 * belongs to exactly one TD and returns to PT_NDA only through
 * MEM.PAGE.REMOVE / MEM.SEPT.REMOVE (key assigned) or PHYMEM.PAGE.RECLAIM
 * (TEARDOWN).  Clearing a page after it comes back is the caller's job
 * (ccvm_page_clear()).  A host read of a TD-owned page sees ciphertext
 * (ccvm_tdx_host_ciphertext()); a host write poisons it: the guest's next
 * access to it is a machine check.  Private page content is stored in the
 * platform page in plaintext (the guest's view).
 *
 * Status values
 * -------------
 * Every SEAMCALL returns the 64-bit TDX status: TDX_SUCCESS, or a class from
 * the list below (upper 32 bits; bit 63 = error, bit 62 = non-recoverable)
 * ORed with an operand id in the low bits (CCVM_TDX_OPERAND_*).  Two statuses
 * with bit 63 clear are warnings, not success: TDX_KEY_CONFIGURED and
 * TDX_GPA_RANGE_ALREADY_BLOCKED, TDX_PAGE_ALREADY_ACCEPTED,
 * TDX_NO_HKID_READY_TO_WBCACHE.  Statuses of class TDX_SW_ERROR (bits 63
 * and 47:40) are the model's own: TD exits and guest faults of the
 * guest-side calls, and host memory exhaustion.
 *
 * A SEAMCALL on a NULL handle (module, TD or vCPU), or on a module not set
 * up, returns OPERAND_INVALID | the handle's operand (none for CACHE.WB) and is
 * not counted.
 * Past that, every SEAMCALL may also return any status injected with
 * ccvm_tdx_inject(), before any other check and without changing state.
 *
 * Accounting: each SEAMCALL counts its CCVM_EV_TDH_* event once per call for
 * the platform and the TD's VM; an OPERAND_BUSY result also counts
 * CCVM_EV_TDX_BUSY, any other error (bit 63, not TDX_SW_ERROR, not
 * INTERRUPTED_RESUMABLE) CCVM_EV_TDX_ERROR.  ACCEPT counts
 * CCVM_EV_TDG_MEM_PAGE_ACCEPT.  The host pool counts CCVM_EV_KEYID_*.
 * The host memory the module holds (KOT, pool, TD and vCPU objects, and
 * each 4K page of the PAMT from its first write) is reported through
 * ccvm_model_bytes(), and given back at ccvm_tdx_module_fini().
 *
 * Context: every function is thread-safe.  No SEAMCALL blocks, allocates or
 * makes a system call on the S-EPT and reclaim paths (SEPT.ADD, PAGE.AUG,
 * BLOCK, TRACK, REMOVE, WBINVD, RECLAIM, ACCEPT, guest access): they are
 * O(S-EPT levels), unless ccvm_tdx_set_entry_lock_yields() asked for more.  A handle (td, vp) must not be used after the RECLAIM
 * that frees it returned TDX_SUCCESS, nor concurrently with that RECLAIM.
 */
#ifndef CCVM_BACKENDS_TDX_MODULE_H
#define CCVM_BACKENDS_TDX_MODULE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <ccvm/backend.h>

/* ---- SEAMCALL / TDCALL leaf numbers --------------------------------- */

#define CCVM_TDH_VP_ENTER		0
#define CCVM_TDH_MNG_ADDCX		1
#define CCVM_TDH_MEM_PAGE_ADD		2
#define CCVM_TDH_MEM_SEPT_ADD		3
#define CCVM_TDH_VP_ADDCX		4
#define CCVM_TDH_MEM_PAGE_AUG		6
#define CCVM_TDH_MEM_RANGE_BLOCK	7
#define CCVM_TDH_MNG_KEY_CONFIG		8
#define CCVM_TDH_MNG_CREATE		9
#define CCVM_TDH_VP_CREATE		10
#define CCVM_TDH_MEM_PAGE_DEMOTE	15
#define CCVM_TDH_MR_EXTEND		16
#define CCVM_TDH_MR_FINALIZE		17
#define CCVM_TDH_VP_FLUSH		18
#define CCVM_TDH_MNG_VPFLUSHDONE	19
#define CCVM_TDH_MNG_KEY_FREEID		20
#define CCVM_TDH_MNG_INIT		21
#define CCVM_TDH_VP_INIT		22
#define CCVM_TDH_MEM_SEPT_RD		25
#define CCVM_TDH_PHYMEM_PAGE_RECLAIM	28
#define CCVM_TDH_MEM_PAGE_REMOVE	29
#define CCVM_TDH_MEM_SEPT_REMOVE	30
#define CCVM_TDH_MEM_TRACK		38
#define CCVM_TDH_MEM_RANGE_UNBLOCK	39
#define CCVM_TDH_PHYMEM_CACHE_WB	40
#define CCVM_TDH_PHYMEM_PAGE_WBINVD	41
#define CCVM_TDH_PHYMEM_PAMT_ADD	58	/* Dynamic PAMT */
#define CCVM_TDH_PHYMEM_PAMT_REMOVE	59	/* Dynamic PAMT */

/* TDCALL leaf numbers share the space: ccvm_tdx_inject() takes them ORed
 * with CCVM_TDX_TDCALL. */
#define CCVM_TDX_TDCALL			0x100u
#define CCVM_TDG_MEM_PAGE_ACCEPT	6
#define CCVM_TDX_LEAF_TDG_MEM_PAGE_ACCEPT (CCVM_TDX_TDCALL | CCVM_TDG_MEM_PAGE_ACCEPT)

/* ---- status codes (docs/semantics.md 6.7, tdx-module ABI values) ------ */

#define TDX_SUCCESS			0x0000000000000000ull
#define TDX_NON_RECOVERABLE_VCPU	0x4000000100000000ull
#define TDX_NON_RECOVERABLE_TD		0x4000000200000000ull
#define TDX_INTERRUPTED_RESUMABLE	0x8000000300000000ull
#define TDX_OPERAND_INVALID		0xC000010000000000ull
#define TDX_OPERAND_BUSY		0x8000020000000000ull
#define TDX_PREVIOUS_TLB_EPOCH_BUSY	0x8000020100000000ull
#define TDX_RND_NO_ENTROPY		0x8000020300000000ull
#define TDX_PAGE_METADATA_INCORRECT	0xC000030000000000ull
#define TDX_HPA_RANGE_NOT_FREE		0xC000030400000000ull
/* Dynamic PAMT: the 2M region of a page has no 4K PAMT page pair.  The
 * name is the module's; the value is the model's own (no published source
 * gave it), so match it by name, as the kernel does. */
#define TDX_MISSING_PAMT_PAGE_PAIR	0xC000030500000000ull
#define TDX_TD_ASSOCIATED_PAGES_EXIST	0xC000040000000000ull
#define TDX_TDCS_NOT_ALLOCATED		0xC000060600000000ull
#define TDX_LIFECYCLE_STATE_INCORRECT	0xC000060700000000ull
#define TDX_OP_STATE_INCORRECT		0xC000060800000000ull
#define TDX_TDCX_NUM_INCORRECT		0xC000061000000000ull
#define TDX_VCPU_STATE_INCORRECT	0xC000070000000000ull
#define TDX_VCPU_ASSOCIATED		0x8000070100000000ull
#define TDX_VCPU_NOT_ASSOCIATED		0x8000070200000000ull
#define TDX_MAX_VCPUS_EXCEEDED		0xC000070500000000ull
#define TDX_TD_KEYS_NOT_CONFIGURED	0x8000081000000000ull
#define TDX_KEY_STATE_INCORRECT		0xC000081100000000ull
#define TDX_KEY_CONFIGURED		0x0000081500000000ull
#define TDX_WBCACHE_NOT_COMPLETE	0x8000081700000000ull
#define TDX_HKID_NOT_FREE		0xC000082000000000ull
#define TDX_NO_HKID_READY_TO_WBCACHE	0x0000082100000000ull
#define TDX_WBCACHE_RESUME_ERROR	0xC000082300000000ull
#define TDX_FLUSHVP_NOT_DONE		0x8000082400000000ull
#define TDX_EPT_WALK_FAILED		0xC0000B0000000000ull
#define TDX_EPT_ENTRY_NOT_FREE		0xC0000B0200000000ull
#define TDX_GPA_RANGE_NOT_BLOCKED	0xC0000B0600000000ull
#define TDX_GPA_RANGE_ALREADY_BLOCKED	0x00000B0700000000ull
#define TDX_TLB_TRACKING_NOT_DONE	0xC0000B0800000000ull
#define TDX_PAGE_ALREADY_ACCEPTED	0x00000B0A00000000ull
#define TDX_PAGE_SIZE_MISMATCH		0xC0000B0B00000000ull
#define TDX_EPT_ENTRY_STATE_INCORRECT	0xC0000B0D00000000ull
#define TDX_EPT_PAGE_NOT_FREE		0xC0000B0E00000000ull

#define TDX_STATUS_CLASS_MASK		0xFFFFFFFF00000000ull
#define TDX_STATUS_OPERAND_MASK		0x00000000FFFFFFFFull
#define TDX_STATUS_CLASS(s)		((s) & TDX_STATUS_CLASS_MASK)
#define TDX_STATUS_OPERAND(s)		((uint32_t)((s) & TDX_STATUS_OPERAND_MASK))
#define TDX_ERROR			(1ull << 63)
#define TDX_NON_RECOVERABLE		(1ull << 62)
/* Software-defined class (bits 47:40 set), as the kernel's wrappers use. */
#define TDX_SW_ERROR			(TDX_ERROR | 0x0000FF0000000000ull)

/*
 * The model's own statuses (class TDX_SW_ERROR):
 * VE           the guest took #VE (vector 20): it touched a PENDING page
 *              of a TD without SEPT_VE_DISABLE; the guest must accept it.
 * MCE          machine check (vector 18): the page was poisoned by a host
 *              write.
 * EPT_VIOLATION          TD exit to the host, exit reason EPT violation
 *              (48): no S-EPT leaf, or the leaf is blocked.  The host maps
 *              the page (AUG) and resumes the vCPU, which re-executes.
 * EPT_VIOLATION_PENDING  TD exit, EPT violation with the "pending" extended
 *              exit qualification: a PENDING page was touched by a TD with
 *              SEPT_VE_DISABLE (KVM treats it as fatal).
 * NOMEM        the model could not allocate host memory (MNG.CREATE,
 *              VP.CREATE only).
 */
#define CCVM_TDX_SW_VE			(TDX_SW_ERROR | 20)
#define CCVM_TDX_SW_MCE			(TDX_SW_ERROR | 18)
#define CCVM_TDX_SW_EPT_VIOLATION	(TDX_SW_ERROR | 48)
#define CCVM_TDX_SW_EPT_VIOLATION_PENDING (TDX_SW_ERROR | 0x100 | 48)
#define CCVM_TDX_SW_NOMEM		(TDX_SW_ERROR | 0x0000000100000000ull)

/* Operand ids (low bits of a status). */
#define CCVM_TDX_OPERAND_RCX		0x01
#define CCVM_TDX_OPERAND_RDX		0x02
#define CCVM_TDX_OPERAND_R8		0x08
#define CCVM_TDX_OPERAND_R9		0x09
#define CCVM_TDX_OPERAND_ATTRIBUTES	0x40
#define CCVM_TDX_OPERAND_EXEC_CONTROLS	0x42
#define CCVM_TDX_OPERAND_MAX_VCPUS	0x44
#define CCVM_TDX_OPERAND_TDR		0x80
#define CCVM_TDX_OPERAND_TDCX		0x81
#define CCVM_TDX_OPERAND_TDVPR		0x82
#define CCVM_TDX_OPERAND_TDCS		0x90
#define CCVM_TDX_OPERAND_SEPT		0x92
#define CCVM_TDX_OPERAND_SEPT_ENTRY	0x93
#define CCVM_TDX_OPERAND_TD_EPOCH	0xa9
#define CCVM_TDX_OPERAND_OP_STATE	0xac
#define CCVM_TDX_OPERAND_KOT		0xba

/* True for an OPERAND_BUSY status with any operand. */
static inline bool ccvm_tdx_is_busy(uint64_t status)
{
	return TDX_STATUS_CLASS(status) == TDX_OPERAND_BUSY;
}

/* ---- constants ------------------------------------------------------- */

#define CCVM_TDX_GLOBAL_KEYID		1u
#define CCVM_TDX_FIRST_HKID		2u
#define CCVM_TDX_DEFAULT_NR_HKIDS	32u
#define CCVM_TDX_MAX_PACKAGES		64u
#define CCVM_TDX_MAX_TDS		65535u
#define CCVM_TDX_NR_TDCS		4u	/* TDCS pages per TD */
#define CCVM_TDX_TDCS_SEPT_ROOT		3u	/* the TDCS page holding the S-EPT root */
#define CCVM_TDX_NR_TDCX		2u	/* TDCX pages per vCPU */
#define CCVM_TDX_MAX_VCPUS		4095u

/* S-EPT levels in the TDX encoding (KVM's PG_LEVEL minus one). */
#define CCVM_TDX_LEVEL_4K		0
#define CCVM_TDX_LEVEL_2M		1
#define CCVM_TDX_LEVEL_1G		2
#define CCVM_TDX_LEVEL_512G		3
#define CCVM_TDX_LEVEL_256T		4

/* TD attributes accepted by MNG.INIT. */
#define CCVM_TDX_ATTR_SEPT_VE_DISABLE	(1ull << 28)

/* PAMT page types. */
enum ccvm_tdx_page_type {
	CCVM_TDX_PT_NDA = 0,	/* not assigned: host memory */
	CCVM_TDX_PT_RSVD = 1,
	CCVM_TDX_PT_REG = 3,	/* guest private page */
	CCVM_TDX_PT_TDR = 4,
	CCVM_TDX_PT_TDCX = 5,	/* TDCS and TDCX pages */
	CCVM_TDX_PT_TDVPR = 6,
	CCVM_TDX_PT_EPT = 8,	/* S-EPT page */
	CCVM_TDX_PT_PAMT = 15,
};

/* S-EPT entry states (tdx-module sept_manager.h). */
enum ccvm_tdx_sept_state {
	CCVM_TDX_SEPT_FREE = 0,
	CCVM_TDX_SEPT_NL_MAPPED,	/* non-leaf, points to an S-EPT page */
	CCVM_TDX_SEPT_NL_BLOCKED,
	CCVM_TDX_SEPT_MAPPED,		/* leaf, accessible */
	CCVM_TDX_SEPT_BLOCKED,
	CCVM_TDX_SEPT_PENDING,		/* AUGed, not accepted yet */
	CCVM_TDX_SEPT_PENDING_BLOCKED,
	CCVM_TDX_SEPT_REMOVED,		/* import only: never produced */
};

/* S-EPT entry encoding: state in bits 3:0, pfn in bits 51:12. */
#define CCVM_TDX_SEPTE_STATE(e)		((unsigned int)((e) & 0xf))
#define CCVM_TDX_SEPTE_PFN(e)		(((e) >> 12) & ((1ull << 40) - 1))

enum ccvm_tdx_lifecycle {
	CCVM_TDX_TD_HKID_ASSIGNED = 0,
	CCVM_TDX_TD_KEYS_CONFIGURED = 1,
	CCVM_TDX_TD_BLOCKED = 2,
	CCVM_TDX_TD_TEARDOWN = 3,
};

enum ccvm_tdx_op_state {
	CCVM_TDX_OP_UNINITIALIZED = 0,
	CCVM_TDX_OP_INITIALIZED = 1,
	CCVM_TDX_OP_RUNNABLE = 2,
};

/* ---- objects ----------------------------------------------------------- */

struct ccvm_tdx_td;
struct ccvm_tdx_vp;
struct ccvm_tdx_kot_entry;
struct ccvm_tdx_slot;
struct ccvm_tdx_inject_rule;
struct ccvm_tdx_pamt2m;
struct ccvm_tdx_module_cpu;

/* Per-CPU slots of the module's and its TDs' hot counts, at most. */
#define CCVM_TDX_CPU_SLOTS	8

/*
 * Global module state.  Lives in the tdx backend's platform private area
 * (platform_priv_size = sizeof(struct ccvm_tdx_module)); its fields are
 * private to tdx-module.c: use the functions below.
 */
struct ccvm_tdx_module {
	struct ccvm_platform *p;
	uint64_t nr_pages;
	_Atomic uint64_t *pamt;		/* [nr_pages], lazily backed */
	size_t pamt_bytes;
	uint32_t nr_cpus;
	uint32_t nr_packages;
	uint64_t all_packages;		/* mask of every package */
	uint32_t nr_hkids;
	struct ccvm_tdx_kot_entry *kot;	/* [CCVM_TDX_FIRST_HKID + nr_hkids] */
	uint8_t *hkid_pool;		/* host allocator state, by KeyID */
	struct ccvm_tdx_slot *slots;	/* [CCVM_TDX_MAX_TDS + 1], 0 unused */
	uint32_t slot_hint;
	uint32_t slot_max;		/* highest slot handed out (pool_lock) */
	uint64_t td_serial;
	struct ccvm_sched *sched;	/* the platform's, NULL: free-running */
	struct ccvm_mutex pool_lock;	/* hkid_pool, slots allocation */
	_Atomic uint64_t key_lock;	/* the global key (KOT) lock */
	uint32_t wb_steps;		/* CACHE.WB calls per package write-back */
	_Atomic uint32_t entry_lock_yields; /* yields inside an entry lock (free-running) */
	_Atomic bool entry_window;	/* VP.ENTER holds the epoch lock until the guest runs */
	uint32_t wb_progress[CCVM_TDX_MAX_PACKAGES];
	uint64_t secret;		/* key-stream seed */
	/* PAMT entries not PT_NDA: the sum over the per-CPU slots */
	struct ccvm_tdx_module_cpu *cpu;	/* [nr_cpu_slots], line-aligned */
	uint32_t nr_cpu_slots;		/* 1 when serial, else host CPUs (at most 8) */
	_Atomic uint64_t nr_poisoned;	/* host writes to TD pages */
	_Atomic uint32_t nr_inject_rules;
	struct ccvm_mutex inject_lock;
	struct ccvm_tdx_inject_rule *inject;
	_Atomic uint64_t *pamt_touched;	/* bit per 4K page of the PAMT written */
	_Atomic uint64_t model_bytes;	/* reported with ccvm_model_bytes() */
	struct ccvm_tdx_pamt2m *pamt2m;	/* [nr_2m]: the 2M level */
	uint64_t nr_2m;
	_Atomic uint64_t nr_pairs;	/* Dynamic PAMT page pairs added */
	_Atomic bool dpamt;		/* Dynamic PAMT on */
	bool initialized;
};

/*
 * Size of the PAMT a real module keeps (docs/semantics.md 6.9): an entry of
 * CCVM_TDX_PAMT_ENTRY_BYTES per 4K page, per 2M and per 1G region, all
 * allocated at module init (static PAMT, about 1/256 of memory).  With
 * Dynamic PAMT the 4K level becomes a bitmap of CCVM_TDX_DPAMT_BITMAP_BITS
 * per 4K page plus, per 2M region that holds pages at 4K, a pair of 4K
 * pages (CCVM_TDX_DPAMT_PAIR_PAGES) holding its 512 entries.
 */
#define CCVM_TDX_PAMT_ENTRY_BYTES	16u
#define CCVM_TDX_DPAMT_BITMAP_BITS	1u
#define CCVM_TDX_DPAMT_PAIR_PAGES	2u

struct ccvm_tdx_pamt_usage {
	bool dynamic;		/* Dynamic PAMT on */
	uint64_t static_bytes;	/* allocated at init: 1G + 2M levels + 4K level or bitmap */
	uint64_t dynamic_bytes;	/* page pairs added at run time */
	uint64_t nr_pairs;
	uint64_t pages_2m;	/* pages assigned at 2M (in 4K units) */
	uint64_t pages_4k;	/* pages assigned at 4K, any type */
};

/* MNG.INIT parameters (the TD_PARAMS page). */
struct ccvm_tdx_td_params {
	uint64_t attributes;	/* CCVM_TDX_ATTR_*, others are invalid */
	uint32_t gpaw;		/* guest physical address width: 48 or 52 */
	uint32_t max_vcpus;	/* 1 .. CCVM_TDX_MAX_VCPUS */
};

/* PAMT entry of a page, as ccvm_tdx_pamt_get() reports it. */
struct ccvm_tdx_pamt_info {
	unsigned int type;	/* enum ccvm_tdx_page_type */
	int level;		/* CCVM_TDX_LEVEL_4K, or _2M: part of a 2M page */
	uint64_t owner;		/* TDR pfn of the owning TD, 0 if PT_NDA */
	uint64_t bepoch;	/* TD epoch when the page was last blocked */
	bool poisoned;		/* a host write broke its integrity */
};

/* Outputs of PHYMEM.PAGE.RECLAIM (RCX, RDX, R8 of the real leaf). */
struct ccvm_tdx_reclaim_info {
	unsigned int type;	/* page type before the reclaim */
	uint64_t owner;		/* TDR pfn of the former owner */
	int level;		/* CCVM_TDX_LEVEL_4K, or _2M for a 2M page */
};

/* Output of MEM.SEPT.RD. */
struct ccvm_tdx_sept_info {
	uint64_t raw;		/* entry value (CCVM_TDX_SEPTE_*) */
	unsigned int state;	/* enum ccvm_tdx_sept_state */
	uint64_t pfn;		/* page it maps or links, 0 if FREE */
	int level;		/* level of the entry read (or where the walk stopped) */
};

/* ---- module setup -------------------------------------------------------- */

/*
 * ccvm_tdx_module_init() - Set up the module of platform @p in @m (zeroed
 * memory): HKIDs, packages, PAMT, locks.
 * Return: 0, -EINVAL (NULL), -ENOMEM.
 */
int ccvm_tdx_module_init(struct ccvm_platform *p, struct ccvm_tdx_module *m);
/* Free everything, including TDs and vCPUs never reclaimed.  Idempotent. */
void ccvm_tdx_module_fini(struct ccvm_tdx_module *m);

uint32_t ccvm_tdx_nr_packages(const struct ccvm_tdx_module *m);
/* Package of host CPU @cpu (the last one for an out-of-range cpu). */
unsigned int ccvm_tdx_cpu_package(const struct ccvm_tdx_module *m, unsigned int cpu);
uint32_t ccvm_tdx_nr_hkids(const struct ccvm_tdx_module *m);
/*
 * Per-CPU slots for counts that every vCPU's entry or fault writes (for
 * ccvm_host_cpu_slot()): 1 on a serial platform, else the host's online
 * CPUs, at most CCVM_TDX_CPU_SLOTS.
 */
unsigned int ccvm_tdx_cpu_slots(const struct ccvm_tdx_module *m);

/*
 * CACHE.WB of one package takes @steps calls (the first steps - 1 return
 * TDX_INTERRUPTED_RESUMABLE).  Default 1.  Return: 0 or -EINVAL (0).
 */
int ccvm_tdx_set_cache_wb_steps(struct ccvm_tdx_module *m, uint32_t steps);

/*
 * A real SEAMCALL takes microseconds, during which the S-EPT entry it locked
 * stays locked while other CPUs run; the model's leaves take nanoseconds.
 * With @yields > 0 the leaves that lock an S-EPT entry (SEPT.ADD, PAGE.ADD,
 * PAGE.AUG, ACCEPT) give up the CPU that many times while holding it, so
 * concurrent vCPUs meet OPERAND_BUSY even on a loaded machine.  Default 0,
 * which keeps the no-system-call rule below.  On a serial platform any
 * @yields > 0 is one scheduling point inside the window (the scheduler, not
 * the OS, decides who meets it).  Return: 0 or -EINVAL (NULL).
 */
int ccvm_tdx_set_entry_lock_yields(struct ccvm_tdx_module *m, uint32_t yields);

/*
 * A real TDH.VP.ENTER runs for a while in the module after the host issued
 * it (TLB tracking, the zero-step filter, the guest state restore) and
 * holds the TD epoch lock for its tracking step; KVM issues it without
 * mmu_lock, so a TRACK under mmu_lock can meet it.  The model's host side
 * issues VP.ENTER under mmu_lock read, so the call alone can never overlap
 * a removal.  With @on, a successful VP.ENTER keeps the epoch lock
 * (shared) until the vCPU first runs guest code: its next ACCEPT or guest
 * access, or its exit (its own, or a kicker's ccvm_tdx_vp_exit(): the IPI
 * lands as the entry completes).  A TRACK inside that window answers
 * OPERAND_BUSY|TD_EPOCH; other VP.ENTERs share the lock.  Default off (the
 * lock is let go inside VP.ENTER).  Return: 0 or -EINVAL (NULL).
 */
int ccvm_tdx_set_entry_window(struct ccvm_tdx_module *m, bool on);

/*
 * ccvm_tdx_set_dynamic_pamt() - Turn Dynamic PAMT on or off (the module's
 * feature as the host enables it at init).  Only while no page is
 * assigned to any TD at 4K and no pair is added.
 * Return: 0; -EINVAL (NULL); -EBUSY (pages or pairs in use; nothing changed).
 */
int ccvm_tdx_set_dynamic_pamt(struct ccvm_tdx_module *m, bool on);

/* ---- host HKID pool (KVM's ida + misc cgroup) ---------------------------- */

/*
 * ccvm_tdx_hkid_alloc() - Take a free HKID for @vm (counts
 * CCVM_EV_KEYID_ALLOC).  Return: 0, -ENOSPC (pool exhausted), -EINVAL.
 */
int ccvm_tdx_hkid_alloc(struct ccvm_tdx_module *m, struct ccvm_vm *vm, uint32_t *hkid);
/*
 * ccvm_tdx_hkid_free() - Return @hkid to the pool (counts
 * CCVM_EV_KEYID_FREE).  Return: 0; -EINVAL (not allocated); -EBUSY (the KOT
 * still holds it: KEY.FREEID has not run; nothing changed).
 */
int ccvm_tdx_hkid_free(struct ccvm_tdx_module *m, struct ccvm_vm *vm, uint32_t hkid);
/* Lose @hkid for good (VPFLUSHDONE failed); counts CCVM_EV_KEYID_LEAK. */
void ccvm_tdx_hkid_leak(struct ccvm_tdx_module *m, struct ccvm_vm *vm, uint32_t hkid);
/* Allocated (or leaked) HKIDs in the host pool. */
uint32_t ccvm_tdx_hkids_in_use(struct ccvm_tdx_module *m);

/* ---- TD management SEAMCALLs ------------------------------------------- */

/*
 * TDH.MNG.CREATE (leaf 9) - Create a TD with TDR page @tdr_pfn (RCX) and
 * key @hkid (RDX); *@td gets the handle.  @vm is the VM charged for the TD's
 * calls (a back-pointer; see ccvm_tdx_td_detach_vm()).
 * Before: TDR page PT_NDA; KOT[hkid] FREE.
 * After: TDR page PT_TDR owned by the new TD; KOT[hkid] ASSIGNED; lifecycle
 * HKID_ASSIGNED, op state UNINITIALIZED, TD_EPOCH 1.
 * Status: SUCCESS; OPERAND_INVALID|RCX (pfn 0 or past memory, td NULL);
 * OPERAND_INVALID|RDX (hkid not a TD HKID); PAGE_METADATA_INCORRECT|RCX (TDR
 * not PT_NDA); HKID_NOT_FREE|RDX; OPERAND_BUSY|KOT (key lock);
 * OPERAND_BUSY|RCX (TDR PAMT entry locked); CCVM_TDX_SW_NOMEM.
 */
uint64_t ccvm_tdh_mng_create(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
			     uint64_t tdr_pfn, uint32_t hkid, struct ccvm_tdx_td **td);

/*
 * TDH.MNG.KEY.CONFIG (leaf 8) - Program the TD's key on the package of host
 * CPU @cpu (the CPU the call runs on).
 * Before: lifecycle HKID_ASSIGNED.  After: the package is configured; when
 * every package is, lifecycle KEYS_CONFIGURED.
 * Status: SUCCESS; KEY_CONFIGURED (this package was already done: a
 * warning); LIFECYCLE_STATE_INCORRECT (any other lifecycle, including when
 * all packages are done); OPERAND_INVALID (cpu out of range);
 * OPERAND_BUSY|KOT; OPERAND_BUSY|TDR.  RND_NO_ENTROPY only when injected.
 */
uint64_t ccvm_tdh_mng_key_config(struct ccvm_tdx_td *td, unsigned int cpu);

/*
 * TDH.MNG.ADDCX (leaf 1) - Add TDCS page @tdcs_pfn (RCX); the
 * CCVM_TDX_TDCS_SEPT_ROOT-th becomes the S-EPT root (zeroed: every entry
 * FREE).
 * Before: lifecycle KEYS_CONFIGURED; fewer than CCVM_TDX_NR_TDCS added; page
 * PT_NDA.  After: page PT_TDCX owned by the TD.
 * Status: SUCCESS; TD_KEYS_NOT_CONFIGURED; TDCX_NUM_INCORRECT|RCX (all
 * added); OPERAND_INVALID|RCX (bad pfn); PAGE_METADATA_INCORRECT|RCX;
 * OPERAND_BUSY|RCX (PAMT entry); OPERAND_BUSY|TDR.
 */
uint64_t ccvm_tdh_mng_addcx(struct ccvm_tdx_td *td, uint64_t tdcs_pfn);

/*
 * TDH.MNG.INIT (leaf 21) - Configure the TD from @params (RDX).
 * Before: lifecycle KEYS_CONFIGURED; every TDCS page added; op state
 * UNINITIALIZED.  After: op state INITIALIZED; GPAW, S-EPT depth (4 levels
 * for 48, 5 for 52), attributes, max vCPUs fixed.
 * Status: SUCCESS; TD_KEYS_NOT_CONFIGURED; TDCS_NOT_ALLOCATED;
 * OP_STATE_INCORRECT; OPERAND_INVALID|RDX (params NULL);
 * OPERAND_INVALID|ATTRIBUTES (unknown attribute bits);
 * OPERAND_INVALID|EXEC_CONTROLS (gpaw not 48/52); OPERAND_INVALID|MAX_VCPUS;
 * OPERAND_BUSY|TDR.  RND_NO_ENTROPY only when injected.
 */
uint64_t ccvm_tdh_mng_init(struct ccvm_tdx_td *td, const struct ccvm_tdx_td_params *params);

/*
 * TDH.MR.FINALIZE (leaf 17) - Seal the measurement; the TD becomes runnable.
 * Before: lifecycle KEYS_CONFIGURED, op state INITIALIZED.  After: RUNNABLE
 * (PAGE.ADD and MR.EXTEND refused from now on, PAGE.AUG and VP.ENTER
 * allowed).
 * Status: SUCCESS; TD_KEYS_NOT_CONFIGURED; TDCS_NOT_ALLOCATED;
 * OP_STATE_INCORRECT (not INITIALIZED, e.g. a second FINALIZE);
 * OPERAND_BUSY|TDR (any other leaf on the TD in flight).
 */
uint64_t ccvm_tdh_mr_finalize(struct ccvm_tdx_td *td);

/*
 * TDH.MNG.VPFLUSHDONE (leaf 19) - Every vCPU is flushed: stop the TD using
 * its key.
 * Before: lifecycle HKID_ASSIGNED or KEYS_CONFIGURED; no vCPU associated with
 * a CPU (VP.FLUSH each; a vCPU in the guest is associated).
 * After: lifecycle BLOCKED (no more VP.ENTER, S-EPT changes); KOT[hkid]
 * RECLAIMED: its caches must be written back on every package.
 * Status: SUCCESS; FLUSHVP_NOT_DONE; LIFECYCLE_STATE_INCORRECT;
 * OPERAND_BUSY|KOT; OPERAND_BUSY|TDR.
 */
uint64_t ccvm_tdh_mng_vpflushdone(struct ccvm_tdx_td *td);

/*
 * TDH.PHYMEM.CACHE.WB (leaf 40) - Write back the caches of every RECLAIMED
 * HKID on the package of host CPU @cpu.  @vm is only charged for the call.
 * @resume continues an interrupted write-back; without it a write-back
 * starts over.  A write-back covers the HKIDs RECLAIMED when it started.
 * Status: SUCCESS; INTERRUPTED_RESUMABLE (call again with @resume; see
 * ccvm_tdx_set_cache_wb_steps()); NO_HKID_READY_TO_WBCACHE (nothing to do on
 * this package: a warning meaning done); WBCACHE_RESUME_ERROR (@resume with
 * no interrupted write-back); OPERAND_INVALID (cpu); OPERAND_BUSY|KOT.
 */
uint64_t ccvm_tdh_phymem_cache_wb(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				  unsigned int cpu, bool resume);

/*
 * TDH.MNG.KEY.FREEID (leaf 20) - Release the TD's HKID in the KOT.
 * Before: lifecycle BLOCKED; every package wrote the HKID's caches back.
 * After: lifecycle TEARDOWN (only RECLAIM works on the TD's pages now);
 * KOT[hkid] FREE (the host pool may now free and reuse it).
 * Status: SUCCESS; LIFECYCLE_STATE_INCORRECT; WBCACHE_NOT_COMPLETE;
 * OPERAND_BUSY|KOT; OPERAND_BUSY|TDR.
 */
uint64_t ccvm_tdh_mng_key_freeid(struct ccvm_tdx_td *td);

/* ---- vCPU SEAMCALLs ------------------------------------------------------ */

/*
 * TDH.VP.CREATE (leaf 10) - Create a vCPU with TDVPR page @tdvpr_pfn (RCX);
 * *@vp gets the handle.
 * Before: lifecycle KEYS_CONFIGURED; op state INITIALIZED or RUNNABLE; page
 * PT_NDA.  After: page PT_TDVPR owned by the TD; vCPU CREATED, not
 * associated.
 * Status: SUCCESS; TD_KEYS_NOT_CONFIGURED; TDCS_NOT_ALLOCATED;
 * OP_STATE_INCORRECT; OPERAND_INVALID|RCX (bad pfn, vp NULL);
 * PAGE_METADATA_INCORRECT|RCX; OPERAND_BUSY|RCX; OPERAND_BUSY|TDR;
 * CCVM_TDX_SW_NOMEM.
 */
uint64_t ccvm_tdh_vp_create(struct ccvm_tdx_td *td, uint64_t tdvpr_pfn,
			    struct ccvm_tdx_vp **vp);

/*
 * TDH.VP.ADDCX (leaf 4) - Add TDCX page @tdcx_pfn (RCX) to the vCPU.
 * Before: vCPU CREATED; fewer than CCVM_TDX_NR_TDCX added; page PT_NDA.
 * After: page PT_TDCX owned by the TD.
 * Status: SUCCESS; VCPU_STATE_INCORRECT (initialized); TDCX_NUM_INCORRECT|RCX;
 * TD_KEYS_NOT_CONFIGURED; OPERAND_INVALID|RCX; PAGE_METADATA_INCORRECT|RCX;
 * OPERAND_BUSY|RCX; OPERAND_BUSY|TDVPR; OPERAND_BUSY|TDR.
 */
uint64_t ccvm_tdh_vp_addcx(struct ccvm_tdx_vp *vp, uint64_t tdcx_pfn);

/*
 * TDH.VP.INIT (leaf 22) - Initialise the vCPU, run on host CPU @cpu.
 * Before: vCPU CREATED with every TDCX page; not associated with another CPU;
 * fewer than max_vcpus initialised.  After: INITIALIZED, associated with @cpu.
 * Status: SUCCESS; TDCX_NUM_INCORRECT|RCX; VCPU_STATE_INCORRECT;
 * VCPU_ASSOCIATED (with another CPU); MAX_VCPUS_EXCEEDED;
 * TD_KEYS_NOT_CONFIGURED; OP_STATE_INCORRECT; OPERAND_INVALID (cpu);
 * OPERAND_BUSY|TDVPR; OPERAND_BUSY|TDR.
 */
uint64_t ccvm_tdh_vp_init(struct ccvm_tdx_vp *vp, unsigned int cpu);

/*
 * TDH.VP.ENTER (leaf 0) - Enter the guest on host CPU @cpu.  The vCPU stays
 * in guest mode (holding its TDVPR lock and counted in the TD epoch it
 * entered) until ccvm_tdx_vp_exit().
 * Before: lifecycle KEYS_CONFIGURED; op state RUNNABLE; vCPU INITIALIZED,
 * not in the guest, associated with @cpu or with none (it is associated now).
 * Status: SUCCESS; TD_KEYS_NOT_CONFIGURED; OP_STATE_INCORRECT;
 * VCPU_STATE_INCORRECT; VCPU_ASSOCIATED (another CPU: VP.FLUSH it first);
 * OPERAND_INVALID (cpu); OPERAND_BUSY|TDVPR (already in the guest, or a
 * VP.FLUSH in flight); OPERAND_BUSY|TD_EPOCH (a TRACK in flight).  With
 * the entry window on, the epoch lock stays held (shared) after SUCCESS
 * until the vCPU's next ACCEPT, guest access or exit;
 * OPERAND_BUSY|TDR.  OPERAND_BUSY|SEPT (zero-step
 * mitigation) only when injected.
 */
uint64_t ccvm_tdh_vp_enter(struct ccvm_tdx_vp *vp, unsigned int cpu);

/*
 * ccvm_tdx_vp_exit() - The simulated VM exit (not a SEAMCALL): the vCPU
 * leaves guest mode and its TD epoch.  Does nothing if it is not in the
 * guest.  On return the vCPU is out of the guest and counted in no epoch,
 * as after the IPI a kick sends: an exit another thread is making is
 * waited for, and so is an entry in flight (then exited).
 * Context: any thread (the vCPU's, or the one that kicked it); the caller
 * must not itself be in a leaf on this vCPU.
 */
void ccvm_tdx_vp_exit(struct ccvm_tdx_vp *vp);

/*
 * TDH.VP.FLUSH (leaf 18) - Flush the vCPU's state and TLB entries on the CPU
 * it is associated with (@cpu, the CPU the call runs on) and disassociate it.
 * Before: lifecycle HKID_ASSIGNED or KEYS_CONFIGURED; vCPU not in the guest.
 * Status: SUCCESS; VCPU_NOT_ASSOCIATED (nothing to do: benign);
 * VCPU_ASSOCIATED (associated with another CPU than @cpu);
 * LIFECYCLE_STATE_INCORRECT; OPERAND_INVALID (cpu); OPERAND_BUSY|TDVPR (in
 * the guest); OPERAND_BUSY|TDR.
 */
uint64_t ccvm_tdh_vp_flush(struct ccvm_tdx_vp *vp, unsigned int cpu);

/* ---- S-EPT and private-memory SEAMCALLs --------------------------------- */

/*
 * Common to the leaves on a GPA (operand RCX = @gpa | @level):
 *   @gpa must be aligned to the size of @level, below 2^GPAW and without the
 *   shared bit (bit GPAW-1): else OPERAND_INVALID|RCX, also for a level out
 *   of the leaf's range.
 *   The TD must have lifecycle KEYS_CONFIGURED (else TD_KEYS_NOT_CONFIGURED;
 *   so none of them works once the HKID is released: I13), every TDCS page
 *   (TDCS_NOT_ALLOCATED) and an op state past UNINITIALIZED
 *   (OP_STATE_INCORRECT), unless stated otherwise.
 *   The walk from the root to @level needs every entry above NL_MAPPED: else
 *   EPT_WALK_FAILED|RCX.
 *   Busy: OPERAND_BUSY|TDR, |SEPT (tree lock), |RCX (entry or the
 *   target page's PAMT entry), |R8 (a donated page's PAMT entry).
 */

/*
 * TDH.MEM.SEPT.ADD (leaf 3) - Link S-EPT page @spt_pfn (R8) at the entry of
 * @level (1 .. root level) covering @gpa: FREE -> NL_MAPPED; the new page's
 * 512 entries (level - 1) start FREE.
 * Before: entry FREE; page PT_NDA.  After: page PT_EPT owned by the TD.
 * Status: SUCCESS; EPT_ENTRY_NOT_FREE|RCX (entry in any other state);
 * EPT_WALK_FAILED|RCX; PAGE_METADATA_INCORRECT|R8; OPERAND_INVALID|R8 (bad
 * pfn); common statuses.  S-EPT tree lock shared.
 */
uint64_t ccvm_tdh_mem_sept_add(struct ccvm_tdx_td *td, uint64_t gpa, int level,
			       uint64_t spt_pfn);

/*
 * TDH.MEM.PAGE.ADD (leaf 2) - Copy the 4K at @src (R9, host memory) into
 * page @pfn (R8) and map it at @gpa: FREE -> MAPPED; the GPA goes into the
 * measurement.  Only @level CCVM_TDX_LEVEL_4K.
 * Before: op state INITIALIZED (not finalized: I16); entry FREE; page PT_NDA.
 * After: page PT_REG owned by the TD, holding the source bytes.
 * Status: SUCCESS; OP_STATE_INCORRECT (finalized); EPT_ENTRY_STATE_INCORRECT|
 * RCX (entry not FREE); EPT_WALK_FAILED|RCX; PAGE_METADATA_INCORRECT|R8;
 * OPERAND_INVALID|R8; OPERAND_INVALID|R9 (@src NULL); common statuses.
 * TDR lock exclusive, tree lock shared.
 */
uint64_t ccvm_tdh_mem_page_add(struct ccvm_tdx_td *td, uint64_t gpa, int level,
			       uint64_t pfn, const void *src);

/*
 * TDH.MR.EXTEND (leaf 16) - Extend the measurement with the 256-byte chunk
 * at @gpa (256-byte aligned) of a MAPPED page.
 * Before: op state INITIALIZED.
 * Status: SUCCESS; OPERAND_INVALID|RCX (alignment, shared bit);
 * OP_STATE_INCORRECT; EPT_WALK_FAILED|RCX; EPT_ENTRY_STATE_INCORRECT|RCX (not
 * MAPPED); common statuses.  TDR lock exclusive, tree lock shared.
 */
uint64_t ccvm_tdh_mr_extend(struct ccvm_tdx_td *td, uint64_t gpa);

/*
 * TDH.MEM.PAGE.AUG (leaf 6) - Add page @pfn (R8) at @gpa as PENDING: the
 * guest must accept it, and sees it zeroed then.  @level CCVM_TDX_LEVEL_4K,
 * or CCVM_TDX_LEVEL_2M: a 2M leaf at the (FREE) 2M entry, @pfn the first of
 * 512 contiguous pages, 2M aligned.  The page's bytes are not touched here.
 * Before: op state RUNNABLE (I16); entry FREE; page PT_NDA (2M: the 2M PAMT
 * entry PT_NDA and no page of the region assigned at 4K; 4K: the region not
 * assigned at 2M and, with Dynamic PAMT, holding a pair).
 * After: page PT_REG owned by the TD at that level, BEPOCH 0.
 * Status: SUCCESS; OP_STATE_INCORRECT; EPT_ENTRY_STATE_INCORRECT|RCX (entry
 * not FREE, e.g. already PENDING after a racing AUG, or a 2M entry that
 * links an S-EPT page); EPT_WALK_FAILED|RCX; PAGE_METADATA_INCORRECT|R8;
 * OPERAND_INVALID|R8 (bad pfn; 2M: not aligned, or past memory);
 * MISSING_PAMT_PAGE_PAIR|R8 (4K, Dynamic PAMT); OPERAND_BUSY|RCX (a guest
 * ACCEPT or another AUG holds the entry); OPERAND_BUSY|R8 (PAMT entry);
 * common statuses.  Tree lock shared.
 */
uint64_t ccvm_tdh_mem_page_aug(struct ccvm_tdx_td *td, uint64_t gpa, int level,
			       uint64_t pfn);

/*
 * TDH.MEM.RANGE.BLOCK (leaf 7) - Block the entry of @level (0 .. root level)
 * at @gpa: MAPPED -> BLOCKED, PENDING -> PENDING_BLOCKED, NL_MAPPED ->
 * NL_BLOCKED; then BEPOCH of the mapped/linked page = TD_EPOCH (of a 2M
 * leaf: in its 2M PAMT entry).
 * Status: SUCCESS; GPA_RANGE_ALREADY_BLOCKED|RCX (a warning);
 * EPT_ENTRY_STATE_INCORRECT|RCX (FREE: e.g. a never-ADDed premapped page);
 * EPT_WALK_FAILED|RCX; common statuses, OPERAND_BUSY|SEPT when a guest
 * ACCEPT or any shared user holds the tree lock.  Tree lock exclusive.
 */
uint64_t ccvm_tdh_mem_range_block(struct ccvm_tdx_td *td, uint64_t gpa, int level);

/*
 * TDH.MEM.TRACK (leaf 38) - Advance TD_EPOCH.  The caller must then make
 * every vCPU exit the guest (KVM's kick) before REMOVE can succeed.
 * Before: no vCPU that entered in the previous epoch is still in the guest.
 * Status: SUCCESS; PREVIOUS_TLB_EPOCH_BUSY; OPERAND_BUSY|TD_EPOCH (a VP.ENTER
 * in flight, or inside its entry window); TD_KEYS_NOT_CONFIGURED; TDCS_NOT_ALLOCATED; OP_STATE_INCORRECT;
 * OPERAND_BUSY|TDR.
 */
uint64_t ccvm_tdh_mem_track(struct ccvm_tdx_td *td);

/*
 * TDH.MEM.PAGE.REMOVE (leaf 29) - Remove the leaf at @gpa, @level 4K or 2M
 * (a 2M leaf goes whole; to remove part of it, DEMOTE first): entry ->
 * FREE, page -> PT_NDA (not cleared: the caller clears it, all 512 pages of
 * a 2M one); *@pfn (may be NULL) gets its (first) pfn.
 * Before: entry MAPPED, BLOCKED, PENDING or PENDING_BLOCKED.  When the TD is
 * RUNNABLE: the entry is blocked (BLOCKED/PENDING_BLOCKED) and tracked (see
 * the TLB epoch above); before finalize no vCPU ran, so no tracking.
 * Status: SUCCESS; EPT_ENTRY_STATE_INCORRECT|RCX (FREE or non-leaf);
 * GPA_RANGE_NOT_BLOCKED|RCX; TLB_TRACKING_NOT_DONE|RCX; EPT_WALK_FAILED|RCX;
 * common statuses.  Tree lock exclusive.  A 4K @level under a 2M leaf:
 * EPT_WALK_FAILED|RCX.
 */
uint64_t ccvm_tdh_mem_page_remove(struct ccvm_tdx_td *td, uint64_t gpa, int level,
				  uint64_t *pfn);

/*
 * TDH.MEM.PAGE.DEMOTE (leaf 15) - Split the 2M leaf at @gpa (@level
 * CCVM_TDX_LEVEL_2M only) into 512 4K leaves in S-EPT page @spt_pfn (R8):
 * the entry becomes NL_MAPPED linking it, each 4K entry maps the matching
 * 4K page in the leaf's state before the BLOCK (MAPPED or PENDING, so no
 * UNBLOCK follows), and the page's 2M PAMT entry becomes 512 4K entries
 * (PT_REG, same owner, BEPOCH 0, the poison bit copied).
 * Before: the entry a 2M leaf; when the TD is RUNNABLE, blocked (BLOCKED or
 * PENDING_BLOCKED) and tracked, as for REMOVE (KVM: BLOCK, TRACK, kick,
 * DEMOTE); @spt_pfn PT_NDA; with Dynamic PAMT, a pair in the leaf's region
 * (added before: the 4K entries need it) and in @spt_pfn's.
 * After: @spt_pfn PT_EPT owned by the TD.
 * Status: SUCCESS; EPT_ENTRY_STATE_INCORRECT|RCX (FREE or NL entry);
 * GPA_RANGE_NOT_BLOCKED|RCX; TLB_TRACKING_NOT_DONE|RCX;
 * MISSING_PAMT_PAGE_PAIR|RCX (the leaf's region) or |R8 (@spt_pfn's);
 * PAGE_METADATA_INCORRECT|R8; OPERAND_INVALID|R8; OPERAND_BUSY|RCX (the
 * entry lock: a guest ACCEPT; or a PAMT entry); EPT_WALK_FAILED|RCX;
 * common statuses.  Tree lock shared, entry lock.
 */
uint64_t ccvm_tdh_mem_page_demote(struct ccvm_tdx_td *td, uint64_t gpa, int level,
				  uint64_t spt_pfn);

/*
 * TDH.MEM.SEPT.RD (leaf 25) - Read the entry of @level (0 .. root level) at
 * @gpa into *@info.  On EPT_WALK_FAILED, *@info holds the non-present entry
 * where the walk stopped and its level.
 * Status: SUCCESS; EPT_WALK_FAILED|RCX; OPERAND_INVALID|RDX (@info NULL);
 * common statuses.  Tree lock shared.
 */
uint64_t ccvm_tdh_mem_sept_rd(struct ccvm_tdx_td *td, uint64_t gpa, int level,
			      struct ccvm_tdx_sept_info *info);

/*
 * TDH.MEM.SEPT.REMOVE (leaf 30, unused by KVM) - Unlink the S-EPT page under
 * the NL_BLOCKED entry of @level (1 .. root level) at @gpa: entry -> FREE,
 * page -> PT_NDA; *@spt_pfn (may be NULL) gets it.
 * Before: entry NL_BLOCKED and tracked when RUNNABLE; all 512 entries of
 * the page FREE.
 * Status: SUCCESS; GPA_RANGE_NOT_BLOCKED|RCX (NL_MAPPED);
 * EPT_ENTRY_STATE_INCORRECT|RCX (leaf or FREE); TLB_TRACKING_NOT_DONE|RCX;
 * EPT_PAGE_NOT_FREE|RCX; EPT_WALK_FAILED|RCX; common statuses.  Tree lock
 * exclusive.
 */
uint64_t ccvm_tdh_mem_sept_remove(struct ccvm_tdx_td *td, uint64_t gpa, int level,
				  uint64_t *spt_pfn);

/*
 * TDH.MEM.RANGE.UNBLOCK (leaf 39, unused by KVM) - Undo BLOCK: BLOCKED ->
 * MAPPED, PENDING_BLOCKED -> PENDING, NL_BLOCKED -> NL_MAPPED.
 * Before: entry blocked and, when RUNNABLE, tracked.
 * Status: SUCCESS; GPA_RANGE_NOT_BLOCKED|RCX; EPT_ENTRY_STATE_INCORRECT|RCX
 * (FREE); TLB_TRACKING_NOT_DONE|RCX; EPT_WALK_FAILED|RCX; common statuses.
 * Tree lock exclusive.
 */
uint64_t ccvm_tdh_mem_range_unblock(struct ccvm_tdx_td *td, uint64_t gpa, int level);

/* ---- physical-page SEAMCALLs --------------------------------------------- */

/*
 * TDH.PHYMEM.PAGE.WBINVD (leaf 41) - Write back and invalidate the cache
 * lines of page @pfn for KeyID @keyid (a TD HKID, or CCVM_TDX_GLOBAL_KEYID
 * after reclaiming a TDR).  @vm is only charged for the call.
 * Before: page PT_NDA (removed or reclaimed already); a TD HKID must still
 * be in the KOT (ASSIGNED or RECLAIMED): none after KEY.FREEID (I13).
 * Status: SUCCESS; PAGE_METADATA_INCORRECT|RCX (page owned by a TD);
 * KEY_STATE_INCORRECT|RCX (HKID FREE in the KOT); OPERAND_INVALID|RCX (bad
 * pfn, KeyID 0 or out of range); OPERAND_BUSY|RCX (PAMT entry locked).
 */
uint64_t ccvm_tdh_phymem_page_wbinvd(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				     uint64_t pfn, uint32_t keyid);

/*
 * TDH.PHYMEM.PAGE.RECLAIM (leaf 28) - Take back TD-owned page @pfn (any
 * type; the first pfn of a 2M page takes all of it, info->level 2M):
 * page -> PT_NDA (not cleared).  *@info (may be NULL) gets the former
 * type and owner.  Reclaiming a TDVPR frees that vCPU's handle; reclaiming
 * the TDR frees the TD's handle.  The owner TD's VM is charged, else @vm.
 * Before: the owner TD's lifecycle is TEARDOWN (I13, I15); for the TDR, the
 * TD owns no other page any more (TDR last).
 * Status: SUCCESS; PAGE_METADATA_INCORRECT|RCX (PT_NDA or PT_RSVD);
 * LIFECYCLE_STATE_INCORRECT (HKID still assigned); TD_ASSOCIATED_PAGES_EXIST
 * (TDR with other pages left); OPERAND_INVALID|RCX (bad pfn);
 * OPERAND_BUSY|RCX; OPERAND_BUSY|TDR.
 */
uint64_t ccvm_tdh_phymem_page_reclaim(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				      uint64_t pfn, struct ccvm_tdx_reclaim_info *info);

/*
 * TDH.PHYMEM.PAMT.ADD (leaf 58, Dynamic PAMT) - Give the 2M region starting
 * at @pfn_2m (RCX) the page pair @pair0, @pair1 (RDX, R8: two distinct 4K
 * pages, not necessarily contiguous) to hold its 4K PAMT entries.  @vm is
 * only charged.
 * Before: Dynamic PAMT on; the region has no pair; both pages PT_NDA.
 * After: both pages PT_PAMT (owned by no TD); the region may hold 4K pages.
 * Status: SUCCESS; HPA_RANGE_NOT_FREE|RCX (it has a pair already: a racing
 * add won); OPERAND_INVALID|RCX (not 2M aligned, past memory, or Dynamic
 * PAMT off); OPERAND_INVALID|RDX or |R8 (bad pfn, or the same page twice);
 * PAGE_METADATA_INCORRECT|RDX or |R8; OPERAND_BUSY|RCX, |RDX, |R8.
 */
uint64_t ccvm_tdh_phymem_pamt_add(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				  uint64_t pfn_2m, uint64_t pair0, uint64_t pair1);

/*
 * TDH.PHYMEM.PAMT.REMOVE (leaf 59, Dynamic PAMT) - Take back the page pair
 * of the 2M region at @pfn_2m (RCX) into *@pair0, *@pair1 (may be NULL):
 * both PT_NDA again (not cleared).
 * Before: the region has a pair and no page of it is assigned at 4K but
 * pair pages (PT_PAMT, the region's own or another's: the module's
 * bookkeeping, not a TD's; a pair page may live in the region it serves).
 * Status: SUCCESS; PAGE_METADATA_INCORRECT|RCX (no pair); HPA_RANGE_NOT_FREE|
 * RCX (pages of the region in use at 4K by a TD); OPERAND_INVALID|RCX;
 * OPERAND_BUSY|RCX (2M PAMT entry or a pair page's entry locked).
 */
uint64_t ccvm_tdh_phymem_pamt_remove(struct ccvm_tdx_module *m, struct ccvm_vm *vm,
				     uint64_t pfn_2m, uint64_t *pair0, uint64_t *pair1);

/* ---- guest side ----------------------------------------------------------- */

/*
 * TDG.MEM.PAGE.ACCEPT (TDCALL 6) - The guest on @vp accepts the page at
 * private @gpa: PENDING -> MAPPED, the page zeroed (and its poison cleared).
 * @level CCVM_TDX_LEVEL_4K or CCVM_TDX_LEVEL_2M, which must match the
 * mapping:
 *   2M over a 2M leaf: the whole 2M is accepted (512 pages zeroed: besides
 *     the leaf's own count, 511 CCVM_EV_PAGE_CLEAR for the zeroing a 4K
 *     accept does not do);
 *   2M over 4K leaves: PAGE_SIZE_MISMATCH (accept each 4K then);
 *   4K under a PENDING 2M leaf: a TD exit (EPT violation) for the host to
 *     DEMOTE (the accept level is lower than the mapping); under a MAPPED
 *     one: PAGE_ALREADY_ACCEPTED;
 *   nothing mapped at the level asked: a TD exit (the host AUGs).
 * Context: the vCPU's thread, in guest mode.
 * Status: SUCCESS; PAGE_ALREADY_ACCEPTED|RCX (MAPPED: a warning);
 * PAGE_SIZE_MISMATCH|RCX; CCVM_TDX_SW_EPT_VIOLATION (no leaf, FREE, or
 * blocked: a TD exit, the host must map the page; re-execute after);
 * OPERAND_INVALID|RCX (gpa, level); VCPU_STATE_INCORRECT (not in the guest);
 * OPERAND_BUSY|SEPT (a BLOCK/REMOVE holds the tree); OPERAND_BUSY|RCX (an
 * AUG holds the entry).
 */
uint64_t ccvm_tdg_mem_page_accept(struct ccvm_tdx_vp *vp, uint64_t gpa, int level);

/*
 * ccvm_tdx_guest_access() - The guest on @vp reads or writes private @gpa
 * (no locks: a hardware S-EPT walk).  Not a leaf: not counted, not
 * injectable.
 * Context: the vCPU's thread, in guest mode.  On 0 the caller performs the
 * access on the page before the vCPU leaves guest mode: being in the guest
 * is what holds off a concurrent REMOVE (TLB tracking waits for the exit),
 * exactly as a TLB entry does on hardware.
 * Return: 0 (MAPPED: the access goes to the page); CCVM_TDX_SW_VE (PENDING,
 * no SEPT_VE_DISABLE); CCVM_TDX_SW_EPT_VIOLATION_PENDING (PENDING with
 * SEPT_VE_DISABLE); CCVM_TDX_SW_EPT_VIOLATION (no leaf, FREE or blocked);
 * CCVM_TDX_SW_MCE (the page was poisoned by a host write);
 * VCPU_STATE_INCORRECT (not in the guest); OPERAND_INVALID|RCX (not a
 * private GPA of the TD).
 */
uint64_t ccvm_tdx_guest_access(struct ccvm_tdx_vp *vp, uint64_t gpa, bool write);

/* ---- host direct-map access ------------------------------------------------ */

/*
 * ccvm_tdx_host_access() - The host touches @pfn through the direct map.
 * Return: 0 (host page); CCVM_HOST_ACCESS_CIPHERTEXT (owned by a TD: reads
 * see ccvm_tdx_host_ciphertext(); a write breaks the page's integrity: it is
 * poisoned and counted, and the guest's next access is a machine check);
 * -EINVAL (bad pfn).
 */
int ccvm_tdx_host_access(struct ccvm_tdx_module *m, uint64_t pfn, bool write);

/*
 * ccvm_tdx_host_ciphertext() - Turn @page, a copy of the plaintext of @pfn,
 * into what the host reads: XOR with a key stream of non-zero bytes that
 * depends on the owner's key (the TD's HKID; the global key for a TDR) and
 * on the pfn, so every byte differs from the plaintext.  Unchanged for a
 * page no TD owns.
 */
void ccvm_tdx_host_ciphertext(struct ccvm_tdx_module *m, uint64_t pfn, void *page);

/* Number of host writes that poisoned a TD page since init. */
uint64_t ccvm_tdx_nr_poisoned(struct ccvm_tdx_module *m);

/* ---- fault injection -------------------------------------------------------- */

/*
 * ccvm_tdx_inject() - Make calls of @leaf (a CCVM_TDH_* number or
 * CCVM_TDX_LEAF_TDG_MEM_PAGE_ACCEPT) return @status: the @nth call from now
 * (1-based; 0 = from the next one) and the following ones, @count calls in
 * all (0 = forever).  The call does nothing else but count.  One rule per
 * leaf, replaced by a new one; @status 0 removes it.
 * Return: 0; -EINVAL (unknown leaf, NULL); -ENOENT (removing no rule).
 */
int ccvm_tdx_inject(struct ccvm_tdx_module *m, unsigned int leaf, uint64_t nth,
		    uint64_t status, uint64_t count);

/* ---- inspection (not leaves: no accounting, no injection) ------------------- */

/* "TDX_OPERAND_BUSY", ... for @status's class (operand bits ignored);
 * "TDX_UNKNOWN" for a class the model does not know. */
const char *ccvm_tdx_status_name(uint64_t status);
/* "TDH.MEM.PAGE.AUG", ... or NULL. */
const char *ccvm_tdx_leaf_name(unsigned int leaf);

/* PAMT entry of @pfn (the 2M one when @pfn is part of a 2M page).
 * Return: 0 or -EINVAL. */
int ccvm_tdx_pamt_get(struct ccvm_tdx_module *m, uint64_t pfn,
		      struct ccvm_tdx_pamt_info *info);
/* The PAMT memory a real module would hold now.  Return: 0 or -EINVAL. */
int ccvm_tdx_pamt_usage(struct ccvm_tdx_module *m, struct ccvm_tdx_pamt_usage *u);
/* Whether the 2M region of @pfn holds a Dynamic PAMT pair. */
bool ccvm_tdx_pamt_has_pair(struct ccvm_tdx_module *m, uint64_t pfn);
/* Pages whose PAMT type is not PT_NDA, over every TD. */
uint64_t ccvm_tdx_pamt_nr_assigned(struct ccvm_tdx_module *m);

enum ccvm_tdx_lifecycle ccvm_tdx_td_lifecycle(const struct ccvm_tdx_td *td);
enum ccvm_tdx_op_state ccvm_tdx_td_op_state(const struct ccvm_tdx_td *td);
uint32_t ccvm_tdx_td_hkid(const struct ccvm_tdx_td *td);
uint64_t ccvm_tdx_td_tdr_pfn(const struct ccvm_tdx_td *td);
/* Pages the TD owns besides its TDR (TDR.CHLDCNT). */
uint64_t ccvm_tdx_td_nr_children(const struct ccvm_tdx_td *td);
uint64_t ccvm_tdx_td_epoch(const struct ccvm_tdx_td *td);
/* The GPA bit selecting shared (1 << (GPAW - 1)), 0 before MNG.INIT. */
uint64_t ccvm_tdx_td_shared_bit(const struct ccvm_tdx_td *td);
/* A digest of the TD's measurement (MRTD): PAGE.ADD GPAs and MR.EXTEND data. */
uint64_t ccvm_tdx_td_measurement(const struct ccvm_tdx_td *td);
struct ccvm_vm *ccvm_tdx_td_vm(const struct ccvm_tdx_td *td);
/*
 * ccvm_tdx_td_detach_vm() - The TD's VM is going away while the TD stays
 * (pages leaked after a failed reclaim): stop charging it.
 */
void ccvm_tdx_td_detach_vm(struct ccvm_tdx_td *td);

struct ccvm_tdx_td *ccvm_tdx_vp_td(const struct ccvm_tdx_vp *vp);
uint64_t ccvm_tdx_vp_tdvpr_pfn(const struct ccvm_tdx_vp *vp);
bool ccvm_tdx_vp_in_guest(const struct ccvm_tdx_vp *vp);
bool ccvm_tdx_vp_initialized(const struct ccvm_tdx_vp *vp);
/* Host CPU the vCPU is associated with, -1 if none. */
int ccvm_tdx_vp_cpu(const struct ccvm_tdx_vp *vp);

#endif /* CCVM_BACKENDS_TDX_MODULE_H */
