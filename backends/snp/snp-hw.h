/* SPDX-License-Identifier: MIT */
/*
 * Simulated AMD SEV-SNP hardware: the RMP table, RMPUPDATE / PSMASH /
 * RMPREAD / PVALIDATE, the guest's and the host's RMP access checks, the
 * host kernel direct map, the ASID pool, and the few firmware (PSP)
 * commands that change RMP entries.  docs/semantics.md section 7 is the
 * specification; this header is the datasheet the KVM side of the snp
 * backend (backends/snp/snp.c, declared in snp.h) programs against.
 *
 * Model
 * -----
 * All state is global to one platform and lives in struct ccvm_snp_hw,
 * the snp backend's platform private area (ccvm_platform_priv()).
 *
 * RMP table: one 8-byte entry per platform pfn, in a lazily backed array
 * (untouched entries cost no memory and read as "unassigned").  An entry
 * holds: assigned, page size (4K or 2M), validated, immutable, VMSA, ASID
 * (16 bits) and GPA (40-bit gfn).  An unassigned entry is all-zero and
 * reads back with page size 4K.
 *
 * 2M entries: a 2M RMP entry lives in the entry of the 2M-aligned pfn (the
 * "head") and is authoritative for all 512 pfns of the region; the other
 * 511 entries are unassigned while it exists.  The GPA of pfn head+i inside
 * it is the entry's GPA + i * 4K.  A 2M region is therefore always in one of
 * two shapes: one 2M entry, or 512 independent 4K entries.  PSMASH turns the
 * first shape into the second; nothing turns it back except making every
 * 4K entry shared and issuing a 2M RMPUPDATE.
 *
 * Effective entry of a pfn: its own entry if assigned, else the head's if
 * the head is an assigned 2M entry, else unassigned.  Every check below
 * uses the effective entry.
 *
 * Who changes which field:
 *   RMPUPDATE (host)            assigned, size, ASID, GPA, immutable; clears
 *                               validated and VMSA
 *   PSMASH (host)               one 2M entry -> 512 4K entries
 *   PVALIDATE (guest)           validated
 *   SNP_LAUNCH_UPDATE (fw)      validated (+ VMSA for a save area)
 *   SNP_PAGE_RECLAIM (fw)       clears immutable, validated, VMSA
 *
 * Host direct map: every platform page has a host kernel mapping whose
 * page size is tracked per 2M region.  At init, every fully populated
 * 1G-aligned gigabyte is mapped with one 1G page, the remaining full 2M
 * regions with 2M pages, and a trailing partial 2M region with 4K pages.
 * ccvm_snp_directmap_split() splits the mapping(s) covering a pfn down to
 * 4K (each split of one mapping counts CCVM_EV_DIRECTMAP_SPLIT: 1G->2M is
 * one, 2M->4K one more); splits are never merged back.  The host's RMP
 * write check is done at the size of the host mapping, where a 1G mapping
 * is checked as 2M (the hardware checks large host mappings at 2M
 * granularity, which is why a 2M RMP transition needs no split).
 *
 * ASIDs: 1..nr_asids (ccvm_platform_nr_keyids(), 16 if 0; ASID 0 is the
 * host/firmware).  Each ASID is FREE (clean), IN_USE, or DIRTY (freed by
 * its VM, reusable only after WBINVD + SNP_DF_FLUSH).  Each allocation draws
 * a new memory-encryption key for the ASID, so a reused ASID encrypts
 * differently.
 *
 * Return codes
 * ------------
 * Instructions (RMPUPDATE, PSMASH, RMPREAD, PVALIDATE) and the access
 * checks return an enum ccvm_snp_rc (>= 0): 0 on success, else the
 * hardware status or a model-defined exception outcome (#NPF, #VC).  They
 * never return a negative errno.  The KVM-level helpers
 * (ccvm_snp_rmp_make_private() etc.), the ASID pool and the firmware
 * commands return 0 or a negative errno, like the kernel functions they
 * model.
 *
 * Accounting: every instruction and helper takes @vm, the VM whose
 * counters are charged besides the platform's (NULL: platform only).  It is
 * never dereferenced otherwise.
 *
 * Concurrency
 * -----------
 * Every function may be called from any thread.  Each 2M region has a lock
 * word that hardware operations on the region take.  RMPUPDATE and PSMASH
 * only try the lock: if another operation on the same 2M region is in
 * flight they fail with FAIL_OVERLAP / FAIL_INUSE (transient: retry).
 * PVALIDATE and the firmware commands wait for the lock.  Reads (RMPREAD,
 * the access checks) take no lock and see a consistent entry.  No
 * instruction allocates memory or makes a system call; the retry loops of
 * the helpers yield the CPU only while contended.
 *
 * How the KVM side maps onto this (docs/semantics.md 7.2-7.6)
 * ----------------------------------------------------------
 *   vm_init          ccvm_snp_asid_alloc(); context page: fw_mark_pages()
 *   vcpu_create      VMSA page (never 2M aligned): rmp_make_private(
 *                    immutable) + fw_launch_update(VMSA)
 *   vm_destroy       fw_reclaim_pages() of firmware/VMSA pages, asid_free()
 *   gmem_prepare     already assigned -> 0; else rmp_make_private(pfn,
 *                    gfn << 12, 2M (at the 2M heads of gfn and pfn) only if
 *                    max_order >= 9, the region is unassigned (head and
 *                    region_assigned_4k) and no update in flight owns it,
 *                    else 4K)
 *   gmem_invalidate  per assigned pfn: whole 2M entry in range -> 2M
 *                    make_shared; else rmp_psmash() then 4K make_shared;
 *                    clflush_pages(); failure -> leak_pages()
 *   update_mem_attr  pages already in gmem: to private directmap_split()
 *                    then rmp_make_private(4K); to shared rmp_psmash() if
 *                    inside a 2M entry, rmp_make_shared(), clflush_pages()
 *   max_mapping_level  rmpread().level (4K when unassigned)
 *   populate         rmp_make_private() + fw_launch_update(NORMAL)
 *   guest_accept     pvalidate(4K); SIZEMISMATCH -> rmp_psmash() and
 *                    CCVM_GUEST_NEEDS_ZAP (the core zaps the 2M gfn block
 *                    and faults again at 4K); NPF_RMP -> fault it in first
 *   guest_accept_level  pvalidate(2M); SIZEMISMATCH -> -ERANGE (the guest
 *                    validates the 2M page by page)
 *   guest_access     guest_access(): NPF_RMP -> CCVM_GUEST_NEEDS_FAULT,
 *                    VC_NOT_VALIDATED -> -EACCES (#VC)
 *   host_access / host_ciphertext   the functions of the same name
 */
#ifndef CCVM_BACKENDS_SNP_HW_H
#define CCVM_BACKENDS_SNP_HW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#define CCVM_SNP_PAGES_PER_2M		512u
#define CCVM_SNP_PAGES_PER_1G		(512u * 512u)
#define CCVM_SNP_DEFAULT_ASIDS		16u
#define CCVM_SNP_MAX_ASIDS		0xffffu		/* 16-bit ASID field */
#define CCVM_SNP_GPA_LIMIT		(1ull << 52)	/* 40-bit gfn field */

/*
 * Status of an SNP instruction or access check.  Values below 0x100 are the
 * architectural RAX codes (FAIL_NOUPDATE is the software value Linux uses
 * for PVALIDATE's rFLAGS.CF = 1); values from 0x100 are exceptions the
 * model reports instead of raising them.
 */
enum ccvm_snp_rc {
	CCVM_SNP_SUCCESS		= 0,
	/* Bad operand: pfn out of range, misaligned, bad field, wrong shape. */
	CCVM_SNP_FAIL_INPUT		= 1,
	/* The entry is immutable (firmware-owned): only firmware may change it. */
	CCVM_SNP_FAIL_PERMISSION	= 2,
	/* PSMASH: another operation holds the 2M region.  Transient: retry. */
	CCVM_SNP_FAIL_INUSE		= 3,
	/* RMPUPDATE: another operation holds the 2M region.  Transient: retry. */
	CCVM_SNP_FAIL_OVERLAP		= 4,
	/*
	 * Page-size conflict, not transient.  RMPUPDATE: a 4K update inside an
	 * assigned 2M entry (PSMASH first, I24), or a 2M update over a region
	 * holding assigned 4K entries.  PVALIDATE: the size operand differs
	 * from the RMP entry's (4K inside 2M: the host PSMASHes and the guest
	 * retries; 2M on 4K entries: the guest validates 4K pages instead).
	 */
	CCVM_SNP_FAIL_SIZEMISMATCH	= 6,
	/* PVALIDATE: validated already had the requested value (CF = 1). */
	CCVM_SNP_FAIL_NOUPDATE		= 255,
	/*
	 * Nested page fault with the RMP bit, delivered to the host: the page is
	 * not assigned to the accessing guest at that GPA, or a shared access
	 * hit an assigned page, or a write hit an immutable page.  Counted
	 * CCVM_EV_RMP_NPF.
	 */
	CCVM_SNP_NPF_RMP		= 0x100,
	/* #VC to the guest: private access to a page it has not validated. */
	CCVM_SNP_VC_NOT_VALIDATED	= 0x101,
};

/* Name of @rc ("FAIL_OVERLAP", ...); "UNKNOWN" for other values. */
const char *ccvm_snp_rc_name(int rc);

/*
 * One RMP entry as software sees it (RMPREAD output, RMPUPDATE input).
 * RMPUPDATE reads only assigned, level, asid, gpa and immutable.
 */
struct ccvm_snp_rmp_entry {
	bool assigned;		/* owned by a guest (asid != 0) or firmware (asid 0) */
	bool immutable;		/* only firmware may change the entry */
	bool validated;		/* set/cleared by the guest's PVALIDATE only */
	bool vmsa;		/* a vCPU save area (set by firmware) */
	uint8_t level;		/* CCVM_LEVEL_4K or CCVM_LEVEL_2M */
	uint32_t asid;		/* owning guest, 0 = firmware/hypervisor */
	uint64_t gpa;		/* where the guest must map it (2M entry: its base) */
	/* RMPREAD only: */
	uint64_t entry_pfn;	/* pfn holding the entry (the head for 2M) */
	uint32_t region_assigned_4k; /* assigned 4K entries in the 2M region */
};

/* Per-ASID state. */
enum ccvm_snp_asid_state {
	CCVM_SNP_ASID_FREE = 0,		/* clean, can be allocated */
	CCVM_SNP_ASID_IN_USE,
	CCVM_SNP_ASID_DIRTY,		/* freed, waits for WBINVD + DF_FLUSH */
};

/*
 * Global hardware state of one platform.  Fields are private to snp-hw.c
 * except where marked "read:" (tests and the KVM side may read them with
 * atomic loads).
 */
struct ccvm_snp_hw {
	struct ccvm_platform *platform;
	struct ccvm_sched *sched;	/* the platform's, NULL: free-running */
	uint64_t nr_pages;
	uint64_t nr_regions;		/* 2M regions, the last may be partial */
	uint64_t nr_gigs;		/* 1G regions, the last may be partial */

	_Atomic uint64_t *rmp;		/* nr_pages entries, lazily backed */
	size_t rmp_bytes;
	_Atomic uint32_t *region;	/* per 2M region: lock, split, count */
	size_t region_bytes;
	_Atomic uint8_t *gig_1g;	/* per 1G region: still one 1G mapping */

	uint32_t nr_asids;
	struct ccvm_mutex asid_lock;
	uint8_t *asid_state;		/* enum ccvm_snp_asid_state, [0..nr_asids] */
	_Atomic uint64_t *asid_key;	/* memory-encryption key per ASID */
	_Atomic uint64_t fw_key;	/* key of firmware (ASID 0) pages */

	struct ccvm_mutex leak_lock;
	uint64_t *leaked;
	size_t nr_leaked, leaked_cap;

	_Atomic uint64_t inject_overlap;	/* next n RMPUPDATEs: FAIL_OVERLAP */
	_Atomic uint64_t inject_inuse;		/* next n PSMASHes: FAIL_INUSE */
	/* read: transient failures returned so far (real and injected) */
	_Atomic uint64_t nr_fail_overlap;
	_Atomic uint64_t nr_fail_inuse;
};

/* The hardware of platform @p (its snp backend private area). */
static inline struct ccvm_snp_hw *ccvm_snp_hw_of(struct ccvm_platform *p)
{
	return (struct ccvm_snp_hw *)ccvm_platform_priv(p);
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */
/* ------------------------------------------------------------------ */

/*
 * ccvm_snp_hw_init() - Power on: every RMP entry unassigned, the direct map
 * in large pages, every ASID free.  Reserves address space only.
 * Context: platform creation (platform_init).
 * Return: 0; -EINVAL (no memory, more than CCVM_SNP_MAX_ASIDS key ids);
 * -ENOMEM.  On error nothing is left allocated.
 */
int ccvm_snp_hw_init(struct ccvm_platform *p, struct ccvm_snp_hw *hw);

/* Free everything ccvm_snp_hw_init() set up.  Context: platform destroy. */
void ccvm_snp_hw_fini(struct ccvm_snp_hw *hw);

/*
 * Fault injection: the next @n RMPUPDATEs (PSMASHes) that pass their input
 * checks fail with FAIL_OVERLAP (FAIL_INUSE) without changing anything, as
 * if another CPU held the region.  @n = 0 cancels.
 */
void ccvm_snp_inject_overlap(struct ccvm_snp_hw *hw, uint64_t n);
void ccvm_snp_inject_inuse(struct ccvm_snp_hw *hw, uint64_t n);

/*
 * Test/debug: hold or release the 2M region lock of @pfn as an in-flight
 * hardware operation would, to produce real FAIL_OVERLAP / FAIL_INUSE from
 * another thread.  trylock returns true if taken.  While held, PVALIDATE
 * and firmware commands on the region wait.
 */
bool ccvm_snp_region_trylock(struct ccvm_snp_hw *hw, uint64_t pfn);
void ccvm_snp_region_unlock(struct ccvm_snp_hw *hw, uint64_t pfn);

/* ------------------------------------------------------------------ */
/* Host instructions: RMPUPDATE, PSMASH, RMPREAD                       */
/* ------------------------------------------------------------------ */

/*
 * ccvm_snp_rmpupdate() - RMPUPDATE: write the RMP entry of @pfn.
 * @new: assigned, level, asid, gpa, immutable (other fields ignored).
 *
 * Input checks (FAIL_INPUT, nothing changed):
 *   - @pfn < nr_pages; level is 4K or 2M;
 *   - 2M: @pfn 2M-aligned and the whole region inside platform memory;
 *   - assigned: asid <= nr_asids, gpa page aligned (2M aligned for 2M) and
 *     below CCVM_SNP_GPA_LIMIT;
 *   - unassigned: asid, gpa and immutable are 0.
 * Then the 2M region lock is tried: held -> FAIL_OVERLAP (also when
 * injected; counted in hw->nr_fail_overlap).  Under the lock:
 *   - 4K, the region is one assigned 2M entry -> FAIL_SIZEMISMATCH (I24);
 *   - 4K, the entry is immutable -> FAIL_PERMISSION;
 *   - 2M, the region is a 2M entry that is immutable -> FAIL_PERMISSION;
 *   - 2M, the region holds any assigned 4K entry -> FAIL_SIZEMISMATCH;
 *   - else the entry (the head for 2M) takes the new state with
 *     validated = 0 and vmsa = 0; an unassigned result is all-zero.
 * The host direct map is not touched (see ccvm_snp_rmp_make_private()).
 * Counts CCVM_EV_RMPUPDATE for every execution past the input checks.
 * Return: enum ccvm_snp_rc.
 */
int ccvm_snp_rmpupdate(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
		       const struct ccvm_snp_rmp_entry *new);

/*
 * ccvm_snp_psmash() - PSMASH: split the 2M entry at @pfn into 512 4K
 * entries with the same assigned/ASID/immutable/validated state and GPAs
 * base + i * 4K (VMSA stays on the head only).
 * Checks: @pfn 2M-aligned with the region inside memory, and the head an
 * assigned 2M entry, else FAIL_INPUT (so a PSMASH that lost a race to
 * another PSMASH gets FAIL_INPUT: check with RMPREAD).  Region lock held by
 * another operation -> FAIL_INUSE (transient; counted in
 * hw->nr_fail_inuse).  Counts CCVM_EV_PSMASH for every execution past the
 * alignment check.  Return: enum ccvm_snp_rc.
 */
int ccvm_snp_psmash(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn);

/*
 * ccvm_snp_rmpread() - RMPREAD: the effective entry of @pfn into @out
 * (level 2M and the head's GPA for a pfn inside a 2M entry), with
 * entry_pfn and the region's count of assigned 4K entries.
 * Return: SUCCESS or FAIL_INPUT (pfn out of range, @out NULL).
 */
int ccvm_snp_rmpread(struct ccvm_snp_hw *hw, uint64_t pfn, struct ccvm_snp_rmp_entry *out);

/* True if the effective entry of @pfn is assigned (false if out of range). */
bool ccvm_snp_pfn_assigned(struct ccvm_snp_hw *hw, uint64_t pfn);

/* ------------------------------------------------------------------ */
/* Guest side: PVALIDATE and the RMP check of guest accesses           */
/* ------------------------------------------------------------------ */

/*
 * ccvm_snp_pvalidate() - PVALIDATE by a guest running with @asid: set
 * (@validate) or clear the validated bit of the page at @gpa, which the
 * NPT maps to @pfn, with page size @level.
 * Checks, in order:
 *   - FAIL_INPUT: pfn out of range, asid 0 or > nr_asids, level not 4K/2M,
 *     gpa/pfn not aligned to @level, gpa beyond CCVM_SNP_GPA_LIMIT;
 *   - NPF_RMP (counted CCVM_EV_RMP_NPF): effective entry not assigned, of
 *     another ASID, expecting another GPA for this pfn, or immutable;
 *   - FAIL_SIZEMISMATCH: @level differs from the entry's page size;
 *   - FAIL_NOUPDATE: validated already equals @validate (double
 *     validation / double rescind); nothing changes;
 *   - SUCCESS: validated = @validate (on the head for a 2M entry).
 * Waits for the 2M region lock.  Counts CCVM_EV_PVALIDATE per execution.
 * Return: enum ccvm_snp_rc.
 */
int ccvm_snp_pvalidate(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint32_t asid,
		       uint64_t gpa, uint64_t pfn, int level, bool validate);

/*
 * ccvm_snp_guest_access() - RMP check of one guest access by @asid to
 * @gpa (page address, no C-bit) mapped by the NPT to @pfn.  @is_private is
 * the C-bit (encrypted access).
 *   private: effective entry assigned, same ASID, expecting @gpa for @pfn,
 *            not (immutable and @write) -> then validated ? SUCCESS :
 *            VC_NOT_VALIDATED; otherwise NPF_RMP.
 *   shared:  effective entry assigned -> NPF_RMP; else SUCCESS.
 * NPF_RMP is counted CCVM_EV_RMP_NPF.  The NPT-level vs RMP-level check is
 * left to max_mapping_level (I8).  No lock.
 * Return: SUCCESS, NPF_RMP, VC_NOT_VALIDATED, or FAIL_INPUT (pfn out of
 * range, asid 0 or > nr_asids for a private access).
 */
int ccvm_snp_guest_access(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint32_t asid,
			  uint64_t gpa, uint64_t pfn, bool is_private, bool write);

/* ------------------------------------------------------------------ */
/* Host side: direct map, host accesses, ciphertext                    */
/* ------------------------------------------------------------------ */

/* Page size of the host mapping of @pfn: CCVM_LEVEL_1G/2M/4K, -EINVAL. */
int ccvm_snp_directmap_level(struct ccvm_snp_hw *hw, uint64_t pfn);

/*
 * ccvm_snp_directmap_split() - set_memory_4k() of @pfn: split the 1G and/or
 * 2M mapping covering @pfn so that it is mapped with 4K pages; one
 * CCVM_EV_DIRECTMAP_SPLIT per mapping split, none if already 4K.  Never
 * merged back.  Return: 0 or -EINVAL (pfn out of range).
 */
int ccvm_snp_directmap_split(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn);

/*
 * ccvm_snp_directmap_check() - I22: find a 2M region still mapped with a
 * 2M/1G host page that holds assigned 4K entries next to shared pages (a
 * host write to a shared page there would take an RMP fault).  A region
 * wholly assigned (one 2M entry, or 512 4K entries just after PSMASH) is
 * consistent.  Return: 0, or -EFAULT with the region's first pfn in
 * *@bad_pfn (may be NULL).
 */
int ccvm_snp_directmap_check(struct ccvm_snp_hw *hw, uint64_t *bad_pfn);

/*
 * ccvm_snp_host_access() - The host touches @pfn through the direct map.
 * Write: RMP-checked at the host mapping's size (a 1G mapping as 2M): a 4K
 * mapping faults if @pfn's effective entry is assigned; a large mapping
 * faults if any page of its 2M region is assigned, even when @pfn itself is
 * shared.  A fault counts CCVM_EV_RMP_FAULT and the write must not happen.
 * Read: never faults; an assigned page reads as ciphertext.
 * Return: 0; CCVM_HOST_ACCESS_CIPHERTEXT (read of an assigned page);
 * -EFAULT (RMP fault); -EINVAL (pfn out of range).
 */
int ccvm_snp_host_access(struct ccvm_snp_hw *hw, uint64_t pfn, bool write);

/*
 * ccvm_snp_host_ciphertext() - Turn @page, a copy of @pfn's plaintext,
 * into what the host reads: each byte XORed with a keystream of non-zero
 * bytes derived from the owning ASID's current key (firmware key for ASID
 * 0) and @pfn, so every byte differs from the plaintext and the same data
 * reads differently under another ASID, key or pfn.  Unassigned pages are
 * left as they are.
 */
void ccvm_snp_host_ciphertext(struct ccvm_snp_hw *hw, uint64_t pfn, void *page);

/* ------------------------------------------------------------------ */
/* KVM-level helpers (arch/x86/virt/svm/sev.c)                         */
/* ------------------------------------------------------------------ */

/*
 * ccvm_snp_rmp_make_private() - rmp_make_private(): assign @pfn (the head
 * for CCVM_LEVEL_2M) to @asid at @gpa with @level, validated = 0.  For a 4K
 * entry the direct map is split first (I22); a 2M transition needs no
 * split.  Loops on FAIL_OVERLAP (CCVM_EV_RMPUPDATE_RETRY each time).
 * Return: 0; -EINVAL (out-of-range pfn, bad level/alignment/asid: nothing
 * changed, nothing logged); -EFAULT (RMPUPDATE failed: logged with the
 * entry, nothing changed).
 */
int ccvm_snp_rmp_make_private(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			      uint64_t gpa, int level, uint32_t asid, bool immutable);

/*
 * ccvm_snp_rmp_make_shared() - rmp_make_shared(): make @pfn's entry (the
 * head for CCVM_LEVEL_2M) hypervisor-owned.  4K: splits the direct map
 * first, as the kernel does for every 4K RMPUPDATE.  Loops on FAIL_OVERLAP.
 * The caller flushes the page from caches (ccvm_snp_clflush_pages()) before
 * the host reuses it (I23).
 * Return: 0; -EINVAL; -EFAULT (e.g. immutable, or 4K inside a 2M entry:
 * PSMASH first; logged, nothing changed).
 */
int ccvm_snp_rmp_make_shared(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			     int level);

/*
 * ccvm_snp_rmp_psmash() - psmash(): PSMASH @pfn's 2M region (@pfn may be
 * any pfn inside it), looping on FAIL_INUSE.  Afterwards the region is made
 * of 4K entries: a region that is not a 2M entry (never was, or a racing
 * PSMASH won) is success without a PSMASH.
 * Return: 0; -EINVAL (pfn out of range, or its region is partial).
 */
int ccvm_snp_rmp_psmash(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn);

/* clflush of @npages pages from @pfn: counts CCVM_EV_CACHE_FLUSH_PAGE each. */
void ccvm_snp_clflush_pages(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			    uint64_t npages);

/*
 * ccvm_snp_leak_pages() - snp_leak_pages(): @npages pages from @pfn can
 * never be returned to shared: ccvm_page_leak() each and record it on the
 * leak list.  Context: may allocate; not for hot paths.
 * Return: 0, -EINVAL (range), -ENOMEM (pages leaked but not listed).
 */
int ccvm_snp_leak_pages(struct ccvm_snp_hw *hw, uint64_t pfn, uint64_t npages);

/* Number of leaked pages, and the @idx-th one (0 or -ENOENT). */
size_t ccvm_snp_nr_leaked(struct ccvm_snp_hw *hw);
int ccvm_snp_leaked_pfn(struct ccvm_snp_hw *hw, size_t idx, uint64_t *pfn);

/* ------------------------------------------------------------------ */
/* Firmware (PSP) commands on RMP entries                              */
/* ------------------------------------------------------------------ */

/*
 * ccvm_snp_fw_mark_pages() - rmp_mark_pages_firmware(): make @npages 4K
 * pages from @pfn firmware-owned (assigned, ASID 0, immutable), splitting
 * the direct map first.  On failure the pages already marked are made
 * shared again (leaked if that fails too).
 * Return: 0; -EINVAL (range); -EFAULT (nothing left marked).
 */
int ccvm_snp_fw_mark_pages(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			   uint64_t npages);

/*
 * ccvm_snp_fw_page_reclaim() - SNP_PAGE_RECLAIM of one 4K page: an
 * assigned immutable page (firmware page, or guest VMSA/context page)
 * becomes assigned, mutable, not validated, not VMSA; the host then makes
 * it shared.  Return: 0; -EINVAL (range, or not assigned+immutable+4K).
 */
int ccvm_snp_fw_page_reclaim(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn);

/*
 * ccvm_snp_fw_reclaim_pages() - snp_page_reclaim() + rmp_make_shared() for
 * @npages 4K pages from @pfn; a page for which either step fails is leaked
 * (ccvm_snp_leak_pages()).  Return: 0, -EINVAL (range), -EFAULT (some page
 * leaked).
 */
int ccvm_snp_fw_reclaim_pages(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			      uint64_t npages);

enum ccvm_snp_launch_page {
	CCVM_SNP_LAUNCH_PAGE_NORMAL,	/* measured guest page */
	CCVM_SNP_LAUNCH_PAGE_VMSA,	/* vCPU save area */
};

/*
 * ccvm_snp_fw_launch_update() - The RMP side of SNP_LAUNCH_UPDATE for one
 * page of the guest with @asid: the effective entry must be assigned to
 * @asid and not validated.  NORMAL: becomes validated and mutable (the
 * guest does not PVALIDATE launched pages).  VMSA: must be a 4K immutable
 * entry; becomes validated + VMSA and stays immutable (reclaim with
 * SNP_PAGE_RECLAIM).  Return: 0; -EINVAL (range, asid, page type); -EPERM
 * (entry in the wrong state; nothing changed).
 */
int ccvm_snp_fw_launch_update(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			      uint32_t asid, enum ccvm_snp_launch_page type);

/* ------------------------------------------------------------------ */
/* ASIDs                                                               */
/* ------------------------------------------------------------------ */

/*
 * ccvm_snp_asid_alloc() - Take the lowest FREE ASID with a new key.  If
 * none is FREE but some are DIRTY, flush first (ccvm_snp_asid_flush()).
 * Counts CCVM_EV_KEYID_ALLOC.  Return: 0; -ENOSPC (every ASID in use);
 * -EINVAL (@asid NULL).
 */
int ccvm_snp_asid_alloc(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint32_t *asid);

/*
 * ccvm_snp_asid_free() - The VM using @asid is gone (decommissioned): the
 * ASID becomes DIRTY, reusable after the next flush.  Counts
 * CCVM_EV_KEYID_FREE.  Return: 0 or -EINVAL (not in use).
 */
int ccvm_snp_asid_free(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint32_t asid);

/*
 * ccvm_snp_asid_flush() - WBINVD on every CPU + SNP_DF_FLUSH: every DIRTY
 * ASID becomes FREE.  Counts CCVM_EV_ASID_FLUSH once if any was DIRTY.
 * Return: the number of ASIDs made FREE.
 */
uint32_t ccvm_snp_asid_flush(struct ccvm_snp_hw *hw);

/* State of @asid (enum ccvm_snp_asid_state) or -EINVAL (0 or > nr_asids). */
int ccvm_snp_asid_state(struct ccvm_snp_hw *hw, uint32_t asid);

#endif /* CCVM_BACKENDS_SNP_HW_H */
