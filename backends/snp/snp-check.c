/* SPDX-License-Identifier: MIT */
/*
 * The snp backend's part of the invariant checker (lib/invariants.c has the
 * table): the KVM side's view (NPT leaves, gmem pages, attributes) against
 * the simulated RMP and host direct map, read with RMPREAD and the
 * datasheet's inspection calls only, so a check changes and counts nothing.
 *
 * Order: I22 (direct map), I24 (2M entries), every private NPT leaf in gfn
 * order (I8, I23), then the RMP page by page (I23).
 *
 * I23 from the RMP's side: an immutable page assigned to the VM's ASID is
 * a vCPU's VMSA, any other is cached by one of the VM's open gmem files
 * (not necessarily the one bound at its RMP GPA now: gmem keeps a page
 * assigned across unbinding and rebinding of that GPA); no assigned page of
 * any ASID is free in the host allocator.
 * A page that could not be made shared again is leaked (never reused),
 * which is I23's failure branch: it may stay assigned to anyone.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/backend.h>

#include "snp.h"

#define NONE	UINT64_MAX

struct snp_check {
	struct ccvm_vm *vm;
	struct ccvm_platform *p;
	struct ccvm_snp_hw *hw;
	struct ccvm_invariant_report *r;
	uint32_t asid;
	uint64_t *gmem_pfns;		/* bitmap of pfns cached by the VM's gmem */
	uint64_t nr_bits;
};

static bool failed(const struct snp_check *c)
{
	return ccvm_invariant_failed(c->r);
}

/* The GPA the effective entry @e expects for @pfn. */
static uint64_t rmp_gpa(const struct ccvm_snp_rmp_entry *e, uint64_t pfn)
{
	return e->gpa + ((pfn - e->entry_pfn) << CCVM_PAGE_SHIFT);
}

/* ---- I22, I24: the direct map and the shape of 2M entries ------------- */

static void check_directmap(struct snp_check *c)
{
	uint64_t bad = NONE;

	ccvm_invariant_count(c->r, 1);
	if (ccvm_snp_directmap_check(c->hw, &bad))
		ccvm_invariant_fail(c->r, 22, NONE, bad,
				    "the 2M region at pfn %#" PRIx64 " mixes private 4K pages "
				    "and shared ones under a large host mapping", bad);
}

static void check_2m_entries(struct snp_check *c, uint64_t limit)
{
	uint64_t head;

	for (head = 0; head + CCVM_SNP_PAGES_PER_2M <= c->hw->nr_pages && head < limit &&
	     !failed(c); head += CCVM_SNP_PAGES_PER_2M) {
		struct ccvm_snp_rmp_entry e;

		ccvm_invariant_count(c->r, 1);
		if (ccvm_snp_rmpread(c->hw, head, &e) || !e.assigned ||
		    e.level != CCVM_LEVEL_2M || e.entry_pfn != head)
			continue;
		if (e.region_assigned_4k)
			ccvm_invariant_fail(c->r, 24, NONE, head,
					    "2M RMP entry at pfn %#" PRIx64 " with %u assigned 4K "
					    "entries inside it", head, e.region_assigned_4k);
	}
}

/* ---- private NPT leaves: I8, I23 --------------------------------------------- */

static int leaf_cb(const struct ccvm_mmu_entry *me, void *ctx)
{
	struct snp_check *c = ctx;
	uint64_t n, i;

	if (!me->leaf || !me->is_private)
		return 0;
	n = 1ull << (9 * (me->level - 1));
	for (i = 0; i < n; i++) {
		uint64_t pfn = me->frame + i, gfn = me->gfn + i;
		struct ccvm_snp_rmp_entry e;

		ccvm_invariant_count(c->r, 1);
		if (ccvm_snp_rmpread(c->hw, pfn, &e) || !e.assigned || e.immutable ||
		    e.asid != c->asid || rmp_gpa(&e, pfn) != gfn << CCVM_PAGE_SHIFT) {
			ccvm_invariant_fail(c->r, 23, gfn, pfn,
					    "private leaf maps gfn %#" PRIx64 " to pfn %#" PRIx64
					    " which the RMP does not assign to ASID %u there (%s, "
					    "asid %u, gpa %#" PRIx64 ")", gfn, pfn, c->asid,
					    e.assigned ? "assigned" : "unassigned", e.asid,
					    e.assigned ? rmp_gpa(&e, pfn) : 0);
			return 1;
		}
		if (i == 0 && (int)e.level < me->level) {
			ccvm_invariant_fail(c->r, 8, gfn, pfn,
					    "private leaf at gfn %#" PRIx64 " is level %d over a "
					    "level %u RMP entry", gfn, me->level, e.level);
			return 1;
		}
	}
	return 0;
}

static void check_leaves(struct snp_check *c)
{
	ccvm_vm_for_each_mapping(c->vm, CCVM_ROOT_ALL, leaf_cb, c);
}

/* ---- the RMP: I23 -------------------------------------------------------------- */

static int vmsa_cb(struct ccvm_vcpu *vcpu, void *ctx)
{
	const uint64_t *pfn = ctx;
	uint64_t vmsa;

	return !ccvm_snp_vcpu_vmsa_pfn(vcpu, &vmsa) && vmsa == *pfn;
}

static bool is_vmsa(struct snp_check *c, uint64_t pfn)
{
	return ccvm_vm_for_each_vcpu(c->vm, vmsa_cb, &pfn) != 0;
}

static void check_vm_page(struct snp_check *c, uint64_t pfn, const struct ccvm_snp_rmp_entry *e)
{
	uint64_t gfn = rmp_gpa(e, pfn) >> CCVM_PAGE_SHIFT;

	if (e->immutable || e->vmsa) {
		if (!is_vmsa(c, pfn))
			ccvm_invariant_fail(c->r, 23, gfn, pfn,
					    "pfn %#" PRIx64 " is an immutable page of ASID %u but "
					    "no vCPU's VMSA", pfn, c->asid);
		return;
	}
	/*
	 * A guest page is looked for in every open gmem file of the VM, not
	 * only behind the memslot at its RMP GPA: gmem keeps a page assigned
	 * while it is cached, and that file range may since have been unbound
	 * and the GPA given to another slot or file (KVM makes pages shared
	 * only when gmem frees them).
	 */
	if (!c->gmem_pfns)
		return;		/* no memory for the bitmap: this part is skipped */
	if (pfn >= c->nr_bits || !(c->gmem_pfns[pfn / 64] & (1ull << (pfn % 64))))
		ccvm_invariant_fail(c->r, 23, gfn, pfn,
				    "pfn %#" PRIx64 " is assigned to ASID %u (gpa %#" PRIx64
				    ") but is in no open gmem file of the VM", pfn, c->asid,
				    gfn << CCVM_PAGE_SHIFT);
}

static int mark_gmem_pfn(uint64_t index, uint64_t pfn, void *ctx)
{
	struct snp_check *c = ctx;

	(void)index;
	if (pfn < c->nr_bits)
		c->gmem_pfns[pfn / 64] |= 1ull << (pfn % 64);
	return 0;
}

/* The pfns of every open gmem file of the VM (slots_lock held). */
static void collect_gmem_pfns(struct snp_check *c, uint64_t limit)
{
	c->nr_bits = limit;
	c->gmem_pfns = calloc((limit + 63) / 64, sizeof(uint64_t));
	if (c->gmem_pfns)
		ccvm_vm_for_each_gmem_file_pfn(c->vm, mark_gmem_pfn, c);
}

static void check_rmp(struct snp_check *c, uint64_t limit)
{
	uint64_t pfn;

	for (pfn = 1; pfn < limit && pfn < c->hw->nr_pages && !failed(c); pfn++) {
		struct ccvm_snp_rmp_entry e;

		ccvm_invariant_count(c->r, 1);
		if (ccvm_snp_rmpread(c->hw, pfn, &e) || !e.assigned)
			continue;
		if (!ccvm_page_is_allocated(c->p, pfn)) {
			ccvm_invariant_fail(c->r, 23, NONE, pfn,
					    "pfn %#" PRIx64 " is RMP-assigned (ASID %u) but free in "
					    "the host allocator", pfn, e.asid);
			return;
		}
		/* Could not be made shared again: leaked, which I23 allows. */
		if (ccvm_page_is_leaked(c->p, pfn))
			continue;
		if (e.asid == c->asid)
			check_vm_page(c, pfn, &e);
	}
}

int ccvm_snp_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r)
{
	struct snp_check c;
	uint64_t limit;

	if (!vm || !r)
		return -EINVAL;
	memset(&c, 0, sizeof(c));
	c.vm = vm;
	c.p = ccvm_vm_platform(vm);
	c.hw = ccvm_snp_hw_of(c.p);
	c.r = r;
	if (ccvm_snp_vm_asid(vm, &c.asid) || !c.asid)
		return 0;	/* not an SNP guest: nothing of the RMP is its */
	/* Past the allocator's limit no page was ever handed to anyone. */
	limit = ccvm_platform_pfn_limit(c.p);

	check_directmap(&c);
	if (!failed(&c))
		check_2m_entries(&c, limit);
	if (!failed(&c))
		check_leaves(&c);
	if (!failed(&c)) {
		collect_gmem_pfns(&c, limit);
		check_rmp(&c, limit);
		free(c.gmem_pfns);
	}
	return 0;
}
