/* SPDX-License-Identifier: MIT */
/*
 * Simulated AMD SEV-SNP hardware; snp-hw.h is the datasheet.
 *
 * Memory layout: the RMP is an array of 64-bit entries and the per-2M
 * region words an array of 32-bit words, both anonymous MAP_NORESERVE
 * mappings, so a 1 TiB platform reserves address space only and untouched
 * entries read as zero (unassigned, direct map not split, unlocked).
 *
 * Consistency without a reader lock: an entry changes by one atomic store.
 * A 2M region changes shape only in two ways: a 2M RMPUPDATE writes the
 * head alone (the other 511 entries are zero before and after), and PSMASH
 * writes the 511 tail entries first and the head last.  Readers therefore
 * load the head first and a tail second: a head still 2M is the answer
 * whatever the tails hold, and a head no longer 2M guarantees the tails
 * written before it are visible (release/acquire on the head).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "snp-hw.h"

/* RMP entry bits (model layout, not AMD's 16-byte format). */
#define RMPE_ASSIGNED		(1ull << 0)
#define RMPE_SIZE_2M		(1ull << 1)
#define RMPE_VALIDATED		(1ull << 2)
#define RMPE_IMMUTABLE		(1ull << 3)
#define RMPE_VMSA		(1ull << 4)
#define RMPE_ASID_SHIFT		8
#define RMPE_ASID_MASK		(0xffffull << RMPE_ASID_SHIFT)
#define RMPE_GFN_SHIFT		24

/* Per-2M-region word. */
#define REGION_LOCK		(1u << 0)
#define REGION_DMAP_4K		(1u << 1)	/* host maps the region with 4K pages */
#define REGION_COUNT_SHIFT	16		/* assigned 4K entries, 0..512 */
#define REGION_COUNT_ONE	(1u << REGION_COUNT_SHIFT)

#define PFN_2M_MASK		((uint64_t)CCVM_SNP_PAGES_PER_2M - 1)

/* ---- entry helpers ------------------------------------------------- */

static inline uint32_t rmpe_asid(uint64_t e)
{
	return (uint32_t)((e & RMPE_ASID_MASK) >> RMPE_ASID_SHIFT);
}

static inline uint64_t rmpe_gpa(uint64_t e)
{
	return (e >> RMPE_GFN_SHIFT) << CCVM_PAGE_SHIFT;
}

static inline bool rmpe_is_2m(uint64_t e)
{
	return (e & (RMPE_ASSIGNED | RMPE_SIZE_2M)) == (RMPE_ASSIGNED | RMPE_SIZE_2M);
}

static inline uint64_t rmp_load(struct ccvm_snp_hw *hw, uint64_t pfn)
{
	return atomic_load_explicit(&hw->rmp[pfn], memory_order_acquire);
}

static inline void rmp_store(struct ccvm_snp_hw *hw, uint64_t pfn, uint64_t e)
{
	atomic_store_explicit(&hw->rmp[pfn], e, memory_order_release);
}

/*
 * The entry that governs @pfn and the pfn holding it: the head's 2M entry
 * if there is one, else @pfn's own entry (zero when unassigned).
 */
static uint64_t rmp_effective(struct ccvm_snp_hw *hw, uint64_t pfn, uint64_t *entry_pfn)
{
	uint64_t head_pfn = pfn & ~PFN_2M_MASK;
	uint64_t head = rmp_load(hw, head_pfn);

	if (rmpe_is_2m(head)) {
		*entry_pfn = head_pfn;
		return head;
	}
	*entry_pfn = pfn;
	return pfn == head_pfn ? head : rmp_load(hw, pfn);
}

/* The GPA the effective entry @e (held at @entry_pfn) expects for @pfn. */
static inline uint64_t rmpe_expected_gpa(uint64_t e, uint64_t entry_pfn, uint64_t pfn)
{
	return rmpe_gpa(e) + ((pfn - entry_pfn) << CCVM_PAGE_SHIFT);
}

/* ---- region words -------------------------------------------------- */

/*
 * Region words are 32 bits, 16 to a cache line, and the allocator's
 * windows give consecutive 2M regions to different vCPUs: side by side,
 * two vCPUs' RMPUPDATEs and PVALIDATEs would write one line.  So the
 * index is transposed within each block of 256 regions (the array is
 * whole blocks): region r's word is on line r % 16 of its block, and a
 * line holds regions 16 apart.
 */
static inline uint64_t region_slot(uint64_t r)
{
	return (r & ~255ull) | ((r & 15) << 4) | ((r >> 4) & 15);
}

static inline _Atomic uint32_t *region_of(struct ccvm_snp_hw *hw, uint64_t pfn)
{
	return &hw->region[region_slot(pfn / CCVM_SNP_PAGES_PER_2M)];
}

static inline uint32_t region_count(uint32_t word)
{
	return word >> REGION_COUNT_SHIFT;
}

static inline bool region_full(struct ccvm_snp_hw *hw, uint64_t head_pfn)
{
	return head_pfn + CCVM_SNP_PAGES_PER_2M <= hw->nr_pages;
}

/*
 * The region lock is the RMP's contention: taking it and letting it go are
 * scheduling points on a serial platform, so which RMPUPDATE, PSMASH or
 * PVALIDATE meets another's window is the schedule's choice, and replays.
 */
static bool region_trylock(struct ccvm_snp_hw *hw, _Atomic uint32_t *r, uint32_t *seen)
{
	uint32_t old;

	ccvm_sched_point(hw->sched, CCVM_SCHED_HW(hw->sched), "rmp region lock");
	old = atomic_fetch_or_explicit(r, REGION_LOCK, memory_order_acquire);
	if (seen)
		*seen = old;
	return !(old & REGION_LOCK);
}

static void region_unlock(struct ccvm_snp_hw *hw, _Atomic uint32_t *r)
{
	ccvm_sched_point(hw->sched, CCVM_SCHED_HW(hw->sched), "rmp region unlock");
	atomic_fetch_and_explicit(r, ~REGION_LOCK, memory_order_release);
}

/*
 * Back off while another CPU holds something we need (a retry on the
 * operation's own result): pause, and yield now and then; on a serial
 * platform every round yields to another thread.
 */
static void snp_cpu_relax(struct ccvm_snp_hw *hw, unsigned int *spins)
{
	if (hw->sched || (++*spins & 63) == 0) {
		ccvm_sched_yield(hw->sched, "rmp busy");
		return;
	}
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Hardware operations that do not fail on contention wait for the region. */
static void region_lock_wait(struct ccvm_snp_hw *hw, _Atomic uint32_t *r)
{
	unsigned int spins = 0;
	uint32_t seen;

	while (!region_trylock(hw, r, &seen)) {
		if (hw->sched)
			ccvm_spin_wait(hw->sched, r, seen, "rmp region");
		else
			snp_cpu_relax(hw, &spins);
	}
}

static void region_count_add(_Atomic uint32_t *r, uint32_t n)
{
	atomic_fetch_add_explicit(r, n * REGION_COUNT_ONE, memory_order_relaxed);
}

static void region_count_sub(_Atomic uint32_t *r, uint32_t n)
{
	atomic_fetch_sub_explicit(r, n * REGION_COUNT_ONE, memory_order_relaxed);
}

/* Consume one injected failure, if any is armed. */
static bool inject_take(_Atomic uint64_t *left)
{
	uint64_t n = atomic_load_explicit(left, memory_order_relaxed);

	while (n) {
		if (atomic_compare_exchange_weak_explicit(left, &n, n - 1,
							  memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	}
	return false;
}

static inline void snp_account(struct ccvm_snp_hw *hw, struct ccvm_vm *vm,
			       enum ccvm_event ev, uint64_t n)
{
	ccvm_account(hw->platform, vm, ev, n);
}

/* ---- names ------------------------------------------------------------ */

const char *ccvm_snp_rc_name(int rc)
{
	switch (rc) {
	case CCVM_SNP_SUCCESS:			return "SUCCESS";
	case CCVM_SNP_FAIL_INPUT:		return "FAIL_INPUT";
	case CCVM_SNP_FAIL_PERMISSION:		return "FAIL_PERMISSION";
	case CCVM_SNP_FAIL_INUSE:		return "FAIL_INUSE";
	case CCVM_SNP_FAIL_OVERLAP:		return "FAIL_OVERLAP";
	case CCVM_SNP_FAIL_SIZEMISMATCH:	return "FAIL_SIZEMISMATCH";
	case CCVM_SNP_FAIL_NOUPDATE:		return "FAIL_NOUPDATE";
	case CCVM_SNP_NPF_RMP:			return "NPF_RMP";
	case CCVM_SNP_VC_NOT_VALIDATED:		return "VC_NOT_VALIDATED";
	default:				return "UNKNOWN";
	}
}

/* ---- setup ------------------------------------------------------------ */

static size_t round_to_page(size_t bytes)
{
	return (bytes + CCVM_PAGE_SIZE - 1) & ~(size_t)(CCVM_PAGE_SIZE - 1);
}

/*
 * Heap the tables take, for model_bytes.  The RMP and region arrays are
 * lazy mappings that cost only the pages touched: left out.
 */
static size_t hw_heap_bytes(const struct ccvm_snp_hw *hw)
{
	return hw->nr_gigs * sizeof(hw->gig_1g[0]) +
	       (hw->nr_asids + 1) * (sizeof(hw->asid_state[0]) + sizeof(hw->asid_key[0]));
}

/* Give back the tables (any may be missing) and zero @hw. */
static void hw_free_tables(struct ccvm_snp_hw *hw)
{
	free(hw->asid_key);
	free(hw->asid_state);
	free(hw->gig_1g);
	ccvm_table_unmap(hw->region, hw->region_bytes);
	ccvm_table_unmap(hw->rmp, hw->rmp_bytes);
	memset(hw, 0, sizeof(*hw));
}

int ccvm_snp_hw_init(struct ccvm_platform *p, struct ccvm_snp_hw *hw)
{
	uint32_t nr_asids;
	uint64_t g;

	if (!p || !hw)
		return -EINVAL;
	memset(hw, 0, sizeof(*hw));
	hw->platform = p;
	hw->nr_pages = ccvm_platform_nr_pages(p);
	nr_asids = ccvm_platform_nr_keyids(p);
	if (!nr_asids)
		nr_asids = CCVM_SNP_DEFAULT_ASIDS;
	if (!hw->nr_pages || nr_asids > CCVM_SNP_MAX_ASIDS)
		return -EINVAL;
	hw->nr_asids = nr_asids;
	hw->nr_regions = (hw->nr_pages + CCVM_SNP_PAGES_PER_2M - 1) / CCVM_SNP_PAGES_PER_2M;
	hw->nr_gigs = (hw->nr_pages + CCVM_SNP_PAGES_PER_1G - 1) / CCVM_SNP_PAGES_PER_1G;

	hw->rmp_bytes = round_to_page(hw->nr_pages * sizeof(hw->rmp[0]));
	hw->region_bytes = round_to_page(((hw->nr_regions + 255) & ~255ull) *
					 sizeof(hw->region[0]));
	hw->rmp = ccvm_table_map(hw->rmp_bytes);
	hw->region = ccvm_table_map(hw->region_bytes);
	hw->gig_1g = calloc(hw->nr_gigs, sizeof(hw->gig_1g[0]));
	hw->asid_state = calloc(nr_asids + 1, sizeof(hw->asid_state[0]));
	hw->asid_key = calloc(nr_asids + 1, sizeof(hw->asid_key[0]));
	if (!hw->rmp || !hw->region || !hw->gig_1g || !hw->asid_state || !hw->asid_key)
		goto err_free;
	hw->sched = ccvm_platform_sched(p);
	if (ccvm_mutex_init(&hw->asid_lock, hw->sched, "asid_lock"))
		goto err_free;
	if (ccvm_mutex_init(&hw->leak_lock, hw->sched, "leak_lock"))
		goto err_asid_lock;

	/* Boot-time direct map: 1G pages where a whole gigabyte exists. */
	for (g = 0; g < hw->nr_gigs; g++)
		if ((g + 1) * CCVM_SNP_PAGES_PER_1G <= hw->nr_pages)
			atomic_init(&hw->gig_1g[g], 1);
	/* A partial last 2M region can only be mapped with 4K pages. */
	if (hw->nr_pages % CCVM_SNP_PAGES_PER_2M)
		atomic_store(&hw->region[region_slot(hw->nr_regions - 1)], REGION_DMAP_4K);

	atomic_init(&hw->fw_key, ccvm_platform_random(p));
	ccvm_model_bytes(p, (int64_t)hw_heap_bytes(hw));
	return 0;

err_asid_lock:
	ccvm_mutex_destroy(&hw->asid_lock);
err_free:
	hw_free_tables(hw);
	return -ENOMEM;
}

void ccvm_snp_hw_fini(struct ccvm_snp_hw *hw)
{
	if (!hw || !hw->platform)
		return;
	ccvm_model_bytes(hw->platform,
			 -(int64_t)(hw_heap_bytes(hw) + hw->leaked_cap * sizeof(hw->leaked[0])));
	ccvm_mutex_destroy(&hw->leak_lock);
	ccvm_mutex_destroy(&hw->asid_lock);
	free(hw->leaked);
	hw_free_tables(hw);
}

void ccvm_snp_inject_overlap(struct ccvm_snp_hw *hw, uint64_t n)
{
	atomic_store(&hw->inject_overlap, n);
}

void ccvm_snp_inject_inuse(struct ccvm_snp_hw *hw, uint64_t n)
{
	atomic_store(&hw->inject_inuse, n);
}

bool ccvm_snp_region_trylock(struct ccvm_snp_hw *hw, uint64_t pfn)
{
	if (pfn >= hw->nr_pages)
		return false;
	return region_trylock(hw, region_of(hw, pfn), NULL);
}

void ccvm_snp_region_unlock(struct ccvm_snp_hw *hw, uint64_t pfn)
{
	if (pfn < hw->nr_pages)
		region_unlock(hw, region_of(hw, pfn));
}

/* ---- RMPUPDATE / PSMASH / RMPREAD ------------------------------------ */

/* RMPUPDATE's input checks; builds the entry value it would store. */
static int rmpupdate_encode(struct ccvm_snp_hw *hw, uint64_t pfn,
			    const struct ccvm_snp_rmp_entry *new, uint64_t *val)
{
	uint64_t align;

	if (!new || pfn >= hw->nr_pages)
		return CCVM_SNP_FAIL_INPUT;
	if (new->level == CCVM_LEVEL_2M) {
		if ((pfn & PFN_2M_MASK) || !region_full(hw, pfn))
			return CCVM_SNP_FAIL_INPUT;
		align = CCVM_HPAGE_2M_SIZE;
	} else if (new->level == CCVM_LEVEL_4K) {
		align = CCVM_PAGE_SIZE;
	} else {
		return CCVM_SNP_FAIL_INPUT;
	}

	if (!new->assigned) {
		if (new->asid || new->gpa || new->immutable)
			return CCVM_SNP_FAIL_INPUT;
		*val = 0;
		return CCVM_SNP_SUCCESS;
	}
	if (new->asid > hw->nr_asids || (new->gpa & (align - 1)) ||
	    new->gpa >= CCVM_SNP_GPA_LIMIT)
		return CCVM_SNP_FAIL_INPUT;
	*val = RMPE_ASSIGNED | ((uint64_t)new->asid << RMPE_ASID_SHIFT) |
	       ((new->gpa >> CCVM_PAGE_SHIFT) << RMPE_GFN_SHIFT);
	if (new->level == CCVM_LEVEL_2M)
		*val |= RMPE_SIZE_2M;
	if (new->immutable)
		*val |= RMPE_IMMUTABLE;
	return CCVM_SNP_SUCCESS;
}

/* RMPUPDATE proper, inputs already checked and encoded in @val. */
static int rmpupdate_exec(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			  int level, uint64_t val)
{
	_Atomic uint32_t *r = region_of(hw, pfn);
	uint64_t head_pfn = pfn & ~PFN_2M_MASK;
	uint64_t head, cur;
	int rc = CCVM_SNP_SUCCESS;

	snp_account(hw, vm, CCVM_EV_RMPUPDATE, 1);
	if (inject_take(&hw->inject_overlap) || !region_trylock(hw, r, NULL)) {
		atomic_fetch_add_explicit(&hw->nr_fail_overlap, 1, memory_order_relaxed);
		return CCVM_SNP_FAIL_OVERLAP;
	}

	head = rmp_load(hw, head_pfn);
	if (level == CCVM_LEVEL_4K) {
		if (rmpe_is_2m(head)) {
			rc = CCVM_SNP_FAIL_SIZEMISMATCH;	/* I24: PSMASH first */
			goto out;
		}
		cur = pfn == head_pfn ? head : rmp_load(hw, pfn);
		if (cur & RMPE_IMMUTABLE) {
			rc = CCVM_SNP_FAIL_PERMISSION;
			goto out;
		}
		rmp_store(hw, pfn, val);
		if (!(cur & RMPE_ASSIGNED) && (val & RMPE_ASSIGNED))
			region_count_add(r, 1);
		else if ((cur & RMPE_ASSIGNED) && !(val & RMPE_ASSIGNED))
			region_count_sub(r, 1);
	} else if (rmpe_is_2m(head)) {
		if (head & RMPE_IMMUTABLE)
			rc = CCVM_SNP_FAIL_PERMISSION;
		else
			rmp_store(hw, head_pfn, val);
	} else if (region_count(atomic_load_explicit(r, memory_order_relaxed))) {
		rc = CCVM_SNP_FAIL_SIZEMISMATCH;	/* assigned 4K entries inside */
	} else {
		rmp_store(hw, head_pfn, val);
	}
out:
	region_unlock(hw, r);
	return rc;
}

int ccvm_snp_rmpupdate(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
		       const struct ccvm_snp_rmp_entry *new)
{
	uint64_t val;
	int rc;

	rc = rmpupdate_encode(hw, pfn, new, &val);
	if (rc)
		return rc;
	return rmpupdate_exec(hw, vm, pfn, new->level, val);
}

int ccvm_snp_psmash(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn)
{
	_Atomic uint32_t *r;
	uint64_t head, tail, gfn, i;
	int rc = CCVM_SNP_SUCCESS;

	if (pfn >= hw->nr_pages || (pfn & PFN_2M_MASK) || !region_full(hw, pfn))
		return CCVM_SNP_FAIL_INPUT;
	snp_account(hw, vm, CCVM_EV_PSMASH, 1);
	r = region_of(hw, pfn);
	if (inject_take(&hw->inject_inuse) || !region_trylock(hw, r, NULL)) {
		atomic_fetch_add_explicit(&hw->nr_fail_inuse, 1, memory_order_relaxed);
		return CCVM_SNP_FAIL_INUSE;
	}

	head = rmp_load(hw, pfn);
	if (!rmpe_is_2m(head)) {
		rc = CCVM_SNP_FAIL_INPUT;
		goto out;
	}
	/* Tails first, head last: see the comment at the top of the file. */
	tail = head & (RMPE_ASSIGNED | RMPE_VALIDATED | RMPE_IMMUTABLE | RMPE_ASID_MASK);
	gfn = head >> RMPE_GFN_SHIFT;
	for (i = 1; i < CCVM_SNP_PAGES_PER_2M; i++)
		rmp_store(hw, pfn + i, tail | ((gfn + i) << RMPE_GFN_SHIFT));
	region_count_add(r, CCVM_SNP_PAGES_PER_2M);
	rmp_store(hw, pfn, head & ~RMPE_SIZE_2M);
out:
	region_unlock(hw, r);
	return rc;
}

static void rmpe_decode(uint64_t e, struct ccvm_snp_rmp_entry *out)
{
	out->assigned = e & RMPE_ASSIGNED;
	out->immutable = e & RMPE_IMMUTABLE;
	out->validated = e & RMPE_VALIDATED;
	out->vmsa = e & RMPE_VMSA;
	out->level = (e & RMPE_SIZE_2M) ? CCVM_LEVEL_2M : CCVM_LEVEL_4K;
	out->asid = rmpe_asid(e);
	out->gpa = rmpe_gpa(e);
}

int ccvm_snp_rmpread(struct ccvm_snp_hw *hw, uint64_t pfn, struct ccvm_snp_rmp_entry *out)
{
	uint64_t e, entry_pfn;

	if (!out || pfn >= hw->nr_pages)
		return CCVM_SNP_FAIL_INPUT;
	e = rmp_effective(hw, pfn, &entry_pfn);
	rmpe_decode(e, out);
	out->entry_pfn = entry_pfn;
	out->region_assigned_4k =
		region_count(atomic_load_explicit(region_of(hw, pfn), memory_order_acquire));
	return CCVM_SNP_SUCCESS;
}

bool ccvm_snp_pfn_assigned(struct ccvm_snp_hw *hw, uint64_t pfn)
{
	uint64_t entry_pfn;

	if (pfn >= hw->nr_pages)
		return false;
	return rmp_effective(hw, pfn, &entry_pfn) & RMPE_ASSIGNED;
}

/* ---- guest side ------------------------------------------------------- */

/* Is the effective entry @e (at @entry_pfn) owned by @asid at @gpa for @pfn? */
static bool rmpe_owned_by(uint64_t e, uint64_t entry_pfn, uint32_t asid, uint64_t gpa,
			  uint64_t pfn)
{
	return (e & RMPE_ASSIGNED) && rmpe_asid(e) == asid &&
	       rmpe_expected_gpa(e, entry_pfn, pfn) == gpa;
}

int ccvm_snp_pvalidate(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint32_t asid,
		       uint64_t gpa, uint64_t pfn, int level, bool validate)
{
	_Atomic uint32_t *r;
	uint64_t e, entry_pfn, pages;
	int rc;

	if (pfn >= hw->nr_pages || !asid || asid > hw->nr_asids ||
	    gpa >= CCVM_SNP_GPA_LIMIT)
		return CCVM_SNP_FAIL_INPUT;
	if (level == CCVM_LEVEL_2M)
		pages = CCVM_SNP_PAGES_PER_2M;
	else if (level == CCVM_LEVEL_4K)
		pages = 1;
	else
		return CCVM_SNP_FAIL_INPUT;
	if ((pfn & (pages - 1)) || (gpa & ((pages << CCVM_PAGE_SHIFT) - 1)))
		return CCVM_SNP_FAIL_INPUT;

	snp_account(hw, vm, CCVM_EV_PVALIDATE, 1);
	r = region_of(hw, pfn);
	region_lock_wait(hw, r);
	e = rmp_effective(hw, pfn, &entry_pfn);
	if (!rmpe_owned_by(e, entry_pfn, asid, gpa, pfn) || (e & RMPE_IMMUTABLE)) {
		rc = CCVM_SNP_NPF_RMP;
	} else if ((level == CCVM_LEVEL_2M) != rmpe_is_2m(e)) {
		rc = CCVM_SNP_FAIL_SIZEMISMATCH;
	} else if (!!(e & RMPE_VALIDATED) == validate) {
		rc = CCVM_SNP_FAIL_NOUPDATE;
	} else {
		rmp_store(hw, entry_pfn, validate ? e | RMPE_VALIDATED : e & ~RMPE_VALIDATED);
		rc = CCVM_SNP_SUCCESS;
	}
	region_unlock(hw, r);

	if (rc == CCVM_SNP_NPF_RMP)
		snp_account(hw, vm, CCVM_EV_RMP_NPF, 1);
	return rc;
}

int ccvm_snp_guest_access(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint32_t asid,
			  uint64_t gpa, uint64_t pfn, bool is_private, bool write)
{
	uint64_t e, entry_pfn;
	int rc;

	if (pfn >= hw->nr_pages)
		return CCVM_SNP_FAIL_INPUT;
	if (is_private && (!asid || asid > hw->nr_asids))
		return CCVM_SNP_FAIL_INPUT;
	gpa &= ~(uint64_t)(CCVM_PAGE_SIZE - 1);

	e = rmp_effective(hw, pfn, &entry_pfn);
	if (!is_private)
		rc = (e & RMPE_ASSIGNED) ? CCVM_SNP_NPF_RMP : CCVM_SNP_SUCCESS;
	else if (!rmpe_owned_by(e, entry_pfn, asid, gpa, pfn) ||
		 (write && (e & RMPE_IMMUTABLE)))
		rc = CCVM_SNP_NPF_RMP;
	else if (!(e & RMPE_VALIDATED))
		rc = CCVM_SNP_VC_NOT_VALIDATED;
	else
		rc = CCVM_SNP_SUCCESS;

	if (rc == CCVM_SNP_NPF_RMP)
		snp_account(hw, vm, CCVM_EV_RMP_NPF, 1);
	return rc;
}

/* ---- host side -------------------------------------------------------- */

int ccvm_snp_directmap_level(struct ccvm_snp_hw *hw, uint64_t pfn)
{
	if (pfn >= hw->nr_pages)
		return -EINVAL;
	if (atomic_load_explicit(region_of(hw, pfn), memory_order_acquire) & REGION_DMAP_4K)
		return CCVM_LEVEL_4K;
	if (atomic_load_explicit(&hw->gig_1g[pfn / CCVM_SNP_PAGES_PER_1G],
				 memory_order_acquire))
		return CCVM_LEVEL_1G;
	return CCVM_LEVEL_2M;
}

int ccvm_snp_directmap_split(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn)
{
	_Atomic uint32_t *r;
	uint64_t splits = 0;

	if (pfn >= hw->nr_pages)
		return -EINVAL;
	r = region_of(hw, pfn);
	if (atomic_load_explicit(r, memory_order_acquire) & REGION_DMAP_4K)
		return 0;
	/* The gigabyte goes to 2M pages before its 2M page goes to 4K. */
	ccvm_sched_point(hw->sched, CCVM_SCHED_HW(hw->sched), "direct map split");
	if (atomic_exchange_explicit(&hw->gig_1g[pfn / CCVM_SNP_PAGES_PER_1G], 0,
				     memory_order_acq_rel))
		splits++;
	if (!(atomic_fetch_or_explicit(r, REGION_DMAP_4K, memory_order_acq_rel) &
	      REGION_DMAP_4K))
		splits++;
	if (splits)
		snp_account(hw, vm, CCVM_EV_DIRECTMAP_SPLIT, splits);
	return 0;
}

int ccvm_snp_directmap_check(struct ccvm_snp_hw *hw, uint64_t *bad_pfn)
{
	uint64_t i;
	uint32_t word, n;

	for (i = 0; i < hw->nr_regions; i++) {
		word = atomic_load_explicit(&hw->region[region_slot(i)], memory_order_acquire);
		if (word & REGION_DMAP_4K)
			continue;
		n = region_count(word);
		if (n && n < CCVM_SNP_PAGES_PER_2M) {
			if (bad_pfn)
				*bad_pfn = i * CCVM_SNP_PAGES_PER_2M;
			return -EFAULT;
		}
	}
	return 0;
}

int ccvm_snp_host_access(struct ccvm_snp_hw *hw, uint64_t pfn, bool write)
{
	uint64_t entry_pfn;
	uint32_t word;
	bool fault;

	if (pfn >= hw->nr_pages)
		return -EINVAL;
	if (!write)
		return ccvm_snp_pfn_assigned(hw, pfn) ? CCVM_HOST_ACCESS_CIPHERTEXT : 0;

	word = atomic_load_explicit(region_of(hw, pfn), memory_order_acquire);
	if (word & REGION_DMAP_4K)
		fault = rmp_effective(hw, pfn, &entry_pfn) & RMPE_ASSIGNED;
	else
		fault = region_count(word) ||
			rmpe_is_2m(rmp_load(hw, pfn & ~PFN_2M_MASK));
	if (!fault)
		return 0;
	snp_account(hw, NULL, CCVM_EV_RMP_FAULT, 1);
	return -EFAULT;
}

/* splitmix64's finaliser: a cheap, well-mixed 64-bit hash. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

void ccvm_snp_host_ciphertext(struct ccvm_snp_hw *hw, uint64_t pfn, void *page)
{
	uint8_t *bytes = page;
	uint64_t e, entry_pfn, key, ks;
	uint32_t asid;
	size_t i, j;
	uint8_t k;

	if (!page || pfn >= hw->nr_pages)
		return;
	e = rmp_effective(hw, pfn, &entry_pfn);
	if (!(e & RMPE_ASSIGNED))
		return;
	asid = rmpe_asid(e);
	key = asid ? atomic_load_explicit(&hw->asid_key[asid], memory_order_relaxed)
		   : atomic_load_explicit(&hw->fw_key, memory_order_relaxed);
	/* The physical address tweaks the stream, as the memory encryption does. */
	key = mix64(key ^ (pfn * 0x9e3779b97f4a7c15ull));
	for (i = 0; i < CCVM_PAGE_SIZE / 8; i++) {
		ks = mix64(key + i);
		for (j = 0; j < 8; j++) {
			k = (uint8_t)(ks >> (8 * j));
			/* A zero byte would leak the plaintext byte. */
			bytes[i * 8 + j] ^= k ? k : 0xa5;
		}
	}
}

/* ---- KVM-level helpers ------------------------------------------------ */

static void log_rmpupdate_failure(struct ccvm_snp_hw *hw, const char *what, uint64_t pfn,
				  int rc)
{
	struct ccvm_snp_rmp_entry e;

	ccvm_snp_rmpread(hw, pfn, &e);
	ccvm_log(CCVM_LOG_WARN,
		 "snp: %s of pfn %#" PRIx64 " failed: %s; RMP entry at pfn %#" PRIx64
		 ": assigned %d asid %u gpa %#" PRIx64 " level %u validated %d immutable %d",
		 what, pfn, ccvm_snp_rc_name(rc), e.entry_pfn, e.assigned, e.asid, e.gpa,
		 e.level, e.validated, e.immutable);
}

/* rmpupdate() of the kernel: RMPUPDATE, looping while it overlaps. */
static int rmpupdate_retry(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			   int level, uint64_t val)
{
	unsigned int spins = 0;
	int rc;

	while ((rc = rmpupdate_exec(hw, vm, pfn, level, val)) == CCVM_SNP_FAIL_OVERLAP) {
		snp_account(hw, vm, CCVM_EV_RMPUPDATE_RETRY, 1);
		snp_cpu_relax(hw, &spins);
	}
	return rc;
}

static int rmp_make(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
		    const struct ccvm_snp_rmp_entry *new, const char *what)
{
	uint64_t val;
	int rc;

	if (!hw || rmpupdate_encode(hw, pfn, new, &val))
		return -EINVAL;
	/*
	 * I22: a 4K entry must not sit under a large host mapping, or a host
	 * write to a shared neighbour would take an RMP fault.  Split first.
	 */
	if (new->level == CCVM_LEVEL_4K)
		ccvm_snp_directmap_split(hw, vm, pfn);
	rc = rmpupdate_retry(hw, vm, pfn, new->level, val);
	if (rc) {
		log_rmpupdate_failure(hw, what, pfn, rc);
		return -EFAULT;
	}
	return 0;
}

int ccvm_snp_rmp_make_private(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			      uint64_t gpa, int level, uint32_t asid, bool immutable)
{
	struct ccvm_snp_rmp_entry new = {
		.assigned = true,
		.immutable = immutable,
		.level = (uint8_t)level,
		.asid = asid,
		.gpa = gpa,
	};

	/* Only firmware pages are assigned to ASID 0, and they are immutable. */
	if (!asid && !immutable)
		return -EINVAL;
	if (level != CCVM_LEVEL_4K && level != CCVM_LEVEL_2M)
		return -EINVAL;
	return rmp_make(hw, vm, pfn, &new, "rmp_make_private");
}

int ccvm_snp_rmp_make_shared(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			     int level)
{
	struct ccvm_snp_rmp_entry new = { .level = (uint8_t)level };

	if (level != CCVM_LEVEL_4K && level != CCVM_LEVEL_2M)
		return -EINVAL;
	return rmp_make(hw, vm, pfn, &new, "rmp_make_shared");
}

int ccvm_snp_rmp_psmash(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn)
{
	unsigned int spins = 0;
	uint64_t head_pfn;
	int rc;

	if (!hw || pfn >= hw->nr_pages)
		return -EINVAL;
	head_pfn = pfn & ~PFN_2M_MASK;
	if (!region_full(hw, head_pfn))
		return -EINVAL;
	for (;;) {
		if (!rmpe_is_2m(rmp_load(hw, head_pfn)))
			return 0;
		rc = ccvm_snp_psmash(hw, vm, head_pfn);
		if (rc != CCVM_SNP_FAIL_INUSE)
			break;
		snp_cpu_relax(hw, &spins);
	}
	/* FAIL_INPUT here means another CPU split or freed it meanwhile. */
	return 0;
}

void ccvm_snp_clflush_pages(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			    uint64_t npages)
{
	(void)pfn;
	if (npages)
		snp_account(hw, vm, CCVM_EV_CACHE_FLUSH_PAGE, npages);
}

static bool pfn_range_ok(struct ccvm_snp_hw *hw, uint64_t pfn, uint64_t npages)
{
	return hw && npages && pfn < hw->nr_pages && npages <= hw->nr_pages - pfn;
}

int ccvm_snp_leak_pages(struct ccvm_snp_hw *hw, uint64_t pfn, uint64_t npages)
{
	uint64_t *grown;
	size_t cap;
	int ret = 0;
	uint64_t i;

	if (!pfn_range_ok(hw, pfn, npages))
		return -EINVAL;
	ccvm_mutex_lock(&hw->leak_lock);
	for (i = 0; i < npages; i++) {
		ccvm_page_leak(hw->platform, pfn + i);
		if (hw->nr_leaked == hw->leaked_cap) {
			cap = hw->leaked_cap ? hw->leaked_cap * 2 : 16;
			grown = realloc(hw->leaked, cap * sizeof(*grown));
			if (!grown) {
				ret = -ENOMEM;
				continue;
			}
			ccvm_model_bytes(hw->platform, (int64_t)((cap - hw->leaked_cap) *
								 sizeof(*grown)));
			hw->leaked = grown;
			hw->leaked_cap = cap;
		}
		hw->leaked[hw->nr_leaked++] = pfn + i;
	}
	ccvm_mutex_unlock(&hw->leak_lock);
	ccvm_log(CCVM_LOG_WARN, "snp: leaked %" PRIu64 " page(s) at pfn %#" PRIx64,
		 npages, pfn);
	return ret;
}

size_t ccvm_snp_nr_leaked(struct ccvm_snp_hw *hw)
{
	size_t n;

	ccvm_mutex_lock(&hw->leak_lock);
	n = hw->nr_leaked;
	ccvm_mutex_unlock(&hw->leak_lock);
	return n;
}

int ccvm_snp_leaked_pfn(struct ccvm_snp_hw *hw, size_t idx, uint64_t *pfn)
{
	int ret = -ENOENT;

	ccvm_mutex_lock(&hw->leak_lock);
	if (idx < hw->nr_leaked && pfn) {
		*pfn = hw->leaked[idx];
		ret = 0;
	}
	ccvm_mutex_unlock(&hw->leak_lock);
	return ret;
}

/* ---- firmware --------------------------------------------------------- */

int ccvm_snp_fw_page_reclaim(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn)
{
	_Atomic uint32_t *r;
	uint64_t e, entry_pfn;
	int ret = -EINVAL;

	(void)vm;
	if (!hw || pfn >= hw->nr_pages)
		return -EINVAL;
	r = region_of(hw, pfn);
	region_lock_wait(hw, r);
	e = rmp_effective(hw, pfn, &entry_pfn);
	if ((e & (RMPE_ASSIGNED | RMPE_IMMUTABLE)) == (RMPE_ASSIGNED | RMPE_IMMUTABLE) &&
	    !(e & RMPE_SIZE_2M)) {
		rmp_store(hw, pfn, e & ~(RMPE_IMMUTABLE | RMPE_VALIDATED | RMPE_VMSA));
		ret = 0;
	}
	region_unlock(hw, r);
	return ret;
}

int ccvm_snp_fw_reclaim_pages(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			      uint64_t npages)
{
	int ret = 0;
	uint64_t i;

	if (!pfn_range_ok(hw, pfn, npages))
		return -EINVAL;
	for (i = 0; i < npages; i++) {
		if (!ccvm_snp_fw_page_reclaim(hw, vm, pfn + i) &&
		    !ccvm_snp_rmp_make_shared(hw, vm, pfn + i, CCVM_LEVEL_4K))
			continue;
		ccvm_snp_leak_pages(hw, pfn + i, 1);
		ret = -EFAULT;
	}
	return ret;
}

int ccvm_snp_fw_mark_pages(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			   uint64_t npages)
{
	uint64_t i;

	if (!pfn_range_ok(hw, pfn, npages))
		return -EINVAL;
	for (i = 0; i < npages; i++) {
		if (ccvm_snp_rmp_make_private(hw, vm, pfn + i, 0, CCVM_LEVEL_4K, 0, true))
			goto undo;
	}
	return 0;

undo:
	if (i)
		ccvm_snp_fw_reclaim_pages(hw, vm, pfn, i);
	return -EFAULT;
}

int ccvm_snp_fw_launch_update(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint64_t pfn,
			      uint32_t asid, enum ccvm_snp_launch_page type)
{
	_Atomic uint32_t *r;
	uint64_t e, entry_pfn;
	int ret = -EPERM;

	(void)vm;
	if (!hw || pfn >= hw->nr_pages || !asid || asid > hw->nr_asids ||
	    (type != CCVM_SNP_LAUNCH_PAGE_NORMAL && type != CCVM_SNP_LAUNCH_PAGE_VMSA))
		return -EINVAL;
	r = region_of(hw, pfn);
	region_lock_wait(hw, r);
	e = rmp_effective(hw, pfn, &entry_pfn);
	if (!(e & RMPE_ASSIGNED) || rmpe_asid(e) != asid || (e & RMPE_VALIDATED))
		goto out;
	if (type == CCVM_SNP_LAUNCH_PAGE_NORMAL) {
		rmp_store(hw, entry_pfn, (e | RMPE_VALIDATED) & ~RMPE_IMMUTABLE);
		ret = 0;
	} else if ((e & RMPE_IMMUTABLE) && !(e & RMPE_SIZE_2M)) {
		rmp_store(hw, entry_pfn, e | RMPE_VALIDATED | RMPE_VMSA);
		ret = 0;
	}
out:
	region_unlock(hw, r);
	return ret;
}

/* ---- ASIDs ------------------------------------------------------------ */

/* Called with asid_lock held. */
static uint32_t asid_flush_locked(struct ccvm_snp_hw *hw)
{
	uint32_t asid, n = 0;

	for (asid = 1; asid <= hw->nr_asids; asid++) {
		if (hw->asid_state[asid] == CCVM_SNP_ASID_DIRTY) {
			hw->asid_state[asid] = CCVM_SNP_ASID_FREE;
			n++;
		}
	}
	return n;
}

static uint32_t asid_find_free_locked(struct ccvm_snp_hw *hw)
{
	uint32_t asid;

	for (asid = 1; asid <= hw->nr_asids; asid++)
		if (hw->asid_state[asid] == CCVM_SNP_ASID_FREE)
			return asid;
	return 0;
}

int ccvm_snp_asid_alloc(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint32_t *out)
{
	uint64_t key;
	uint32_t asid, flushed = 0;

	if (!hw || !out)
		return -EINVAL;
	key = ccvm_platform_random(hw->platform);
	ccvm_mutex_lock(&hw->asid_lock);
	asid = asid_find_free_locked(hw);
	if (!asid) {
		/* KVM recycles freed ASIDs only after WBINVD + SNP_DF_FLUSH. */
		flushed = asid_flush_locked(hw);
		asid = asid_find_free_locked(hw);
	}
	if (asid) {
		hw->asid_state[asid] = CCVM_SNP_ASID_IN_USE;
		atomic_store_explicit(&hw->asid_key[asid], key, memory_order_relaxed);
	}
	ccvm_mutex_unlock(&hw->asid_lock);

	if (flushed)
		snp_account(hw, NULL, CCVM_EV_ASID_FLUSH, 1);
	if (!asid)
		return -ENOSPC;
	snp_account(hw, vm, CCVM_EV_KEYID_ALLOC, 1);
	*out = asid;
	return 0;
}

int ccvm_snp_asid_free(struct ccvm_snp_hw *hw, struct ccvm_vm *vm, uint32_t asid)
{
	int ret = -EINVAL;

	if (!hw || !asid || asid > hw->nr_asids)
		return -EINVAL;
	ccvm_mutex_lock(&hw->asid_lock);
	if (hw->asid_state[asid] == CCVM_SNP_ASID_IN_USE) {
		hw->asid_state[asid] = CCVM_SNP_ASID_DIRTY;
		ret = 0;
	}
	ccvm_mutex_unlock(&hw->asid_lock);
	if (!ret)
		snp_account(hw, vm, CCVM_EV_KEYID_FREE, 1);
	return ret;
}

uint32_t ccvm_snp_asid_flush(struct ccvm_snp_hw *hw)
{
	uint32_t n;

	ccvm_mutex_lock(&hw->asid_lock);
	n = asid_flush_locked(hw);
	ccvm_mutex_unlock(&hw->asid_lock);
	if (n)
		snp_account(hw, NULL, CCVM_EV_ASID_FLUSH, 1);
	return n;
}

int ccvm_snp_asid_state(struct ccvm_snp_hw *hw, uint32_t asid)
{
	int state;

	if (!hw || !asid || asid > hw->nr_asids)
		return -EINVAL;
	ccvm_mutex_lock(&hw->asid_lock);
	state = hw->asid_state[asid];
	ccvm_mutex_unlock(&hw->asid_lock);
	return state;
}
