/* SPDX-License-Identifier: MIT */
/*
 * The tdx backend's part of the invariant checker (lib/invariants.c has the
 * table): the KVM side's view (mirror root, HKID, finalize) against the
 * simulated module's state (S-EPT entries, PAMT, TD lifecycle and op
 * state), read the way a debugger reads hardware state: the PAMT through
 * ccvm_tdx_pamt_get() and the S-EPT as the bytes of its pages (the
 * datasheet's entry encoding), never through a SEAMCALL, so a check changes
 * no counter, takes no module lock and cannot be answered busy.
 *
 * Order: I13/I14/I16 (lifecycle and op state), I21 (vCPUs out of the
 * guest), then every mirror entry in gfn order against its S-EPT entry
 * (I10, I12) and, for each mirror table, every S-EPT entry of its page
 * (I10), then the PAMT page by page (I18, I10, I37, I15, I12, I17), then
 * the pins (I17).  I37: a private page is assigned in the PAMT at the level
 * of the S-EPT leaf that maps it (a 2M leaf's 512 pages in the 2M entry,
 * a 4K leaf's page in its 4K entry), checked from both sides: each mirror
 * leaf against the PAMT level of its page, each REG page of the PAMT
 * against the leaves.
 *
 * A vCPU whose creation failed after VP.CREATE leaves its TDVPR and TDCX
 * pages with the TD until teardown (they cannot come back while the HKID
 * is held) without bugging the VM, so a TDVPR page need not be a live
 * vCPU's; each live vCPU's TDVPR must be the TD's, though.
 *
 * The S-EPT contents are checked only while the TD holds its HKID: after
 * the release a zap reclaims the page and leaves its S-EPT entry behind
 * (nothing walks the S-EPT in TEARDOWN), so there only the PAMT counts.
 * The S-EPT root lives in a TDCS page the KVM side keeps to itself; the
 * entries in it are covered by the PAMT (every S-EPT page the TD owns must
 * be a mirror table's).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/backend.h>

#include "tdx.h"

#define NONE		UINT64_MAX
#define SEPT_ENTRIES	512u

struct mirror_entry {
	uint64_t gfn;
	int level;
	bool leaf;
	uint64_t pfn;		/* leaf: the page; table: its S-EPT page */
	uint64_t parent_ext;	/* the S-EPT page holding the entry, NONE at the root */
};

struct tdx_check {
	struct ccvm_vm *vm;
	struct ccvm_platform *p;
	struct ccvm_invariant_report *r;
	struct ccvm_tdx_module *m;
	struct ccvm_tdx_td *td;
	uint64_t tdr;
	uint64_t epoch;
	bool sept_live;			/* HKID held: the S-EPT is authoritative */
	struct mirror_entry *ents;	/* walk order, then sorted by (gfn, level) */
	size_t n, cap;
	uint64_t *leaf_pfns, *ext_pfns;	/* sorted */
	uint64_t *leaf2m_pfns;		/* first pages of the 2M leaves, sorted */
	size_t nr_leaf, nr_ext, nr_leaf2m;
	int err;
};

static bool failed(const struct tdx_check *c)
{
	return ccvm_invariant_failed(c->r);
}

static uint64_t level_pages(int level)
{
	return 1ull << (9 * (level - 1));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct mirror_entry *x = a, *y = b;

	if (x->gfn != y->gfn)
		return x->gfn < y->gfn ? -1 : 1;
	return x->level - y->level;
}

static bool has_u64(const uint64_t *v, size_t n, uint64_t key)
{
	return n && bsearch(&key, v, n, sizeof(*v), cmp_u64) != NULL;
}

static bool has_entry(const struct tdx_check *c, uint64_t gfn, int level)
{
	struct mirror_entry key = { .gfn = gfn, .level = level };

	return bsearch(&key, c->ents, c->n, sizeof(key), cmp_entry) != NULL;
}

/* ---- collecting the mirror root --------------------------------------- */

static int collect_cb(const struct ccvm_mmu_entry *e, void *ctx)
{
	struct tdx_check *c = ctx;

	if (e->frozen)
		return 0;	/* the core reports it (I11) */
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct mirror_entry *v = realloc(c->ents, cap * sizeof(*v));

		if (!v) {
			c->err = -ENOMEM;
			return 1;
		}
		c->ents = v;
		c->cap = cap;
	}
	c->ents[c->n++] = (struct mirror_entry){
		.gfn = e->gfn, .level = e->level, .leaf = e->leaf,
		.pfn = e->frame, .parent_ext = e->parent_ext,
	};
	return 0;
}

static int collect(struct tdx_check *c)
{
	size_t i;

	ccvm_vm_for_each_mapping(c->vm, CCVM_ROOT_MIRROR, collect_cb, c);
	if (c->err)
		return c->err;
	c->leaf_pfns = malloc((c->n + 1) * sizeof(uint64_t));
	c->ext_pfns = malloc((c->n + 1) * sizeof(uint64_t));
	c->leaf2m_pfns = malloc((c->n + 1) * sizeof(uint64_t));
	if (!c->leaf_pfns || !c->ext_pfns || !c->leaf2m_pfns)
		return -ENOMEM;
	for (i = 0; i < c->n; i++) {
		if (c->ents[i].leaf && c->ents[i].level == CCVM_LEVEL_2M)
			c->leaf2m_pfns[c->nr_leaf2m++] = c->ents[i].pfn;
		else if (c->ents[i].leaf)
			c->leaf_pfns[c->nr_leaf++] = c->ents[i].pfn;
		else if (c->ents[i].pfn != NONE)
			c->ext_pfns[c->nr_ext++] = c->ents[i].pfn;
	}
	if (c->nr_leaf)
		qsort(c->leaf_pfns, c->nr_leaf, sizeof(uint64_t), cmp_u64);
	if (c->nr_ext)
		qsort(c->ext_pfns, c->nr_ext, sizeof(uint64_t), cmp_u64);
	if (c->nr_leaf2m)
		qsort(c->leaf2m_pfns, c->nr_leaf2m, sizeof(uint64_t), cmp_u64);
	return 0;
}

/* ---- TD state -------------------------------------------------------------- */

static void check_td_state(struct tdx_check *c)
{
	bool assigned = ccvm_tdx_hkid_assigned(c->vm);
	enum ccvm_tdx_lifecycle lc = ccvm_tdx_td_lifecycle(c->td);
	enum ccvm_tdx_op_state os = ccvm_tdx_td_op_state(c->td);
	bool finalized = ccvm_vm_is_finalized(c->vm);

	ccvm_invariant_count(c->r, 3);
	if (assigned && lc != CCVM_TDX_TD_KEYS_CONFIGURED) {
		ccvm_invariant_fail(c->r, 14, NONE, c->tdr,
				    "TD %u holds its HKID %u for KVM but its lifecycle is %d, "
				    "not KEYS_CONFIGURED: a release stopped halfway",
				    ccvm_vm_id(c->vm), ccvm_tdx_td_hkid(c->td), (int)lc);
		return;
	}
	if (!assigned && (lc == CCVM_TDX_TD_KEYS_CONFIGURED || !ccvm_vm_is_dead(c->vm))) {
		ccvm_invariant_fail(c->r, 13, NONE, c->tdr,
				    "TD %u: KVM released the HKID but the TD is %s (lifecycle %d)",
				    ccvm_vm_id(c->vm),
				    lc == CCVM_TDX_TD_KEYS_CONFIGURED ? "still keyed" : "not dead",
				    (int)lc);
		return;
	}
	if ((os == CCVM_TDX_OP_RUNNABLE) != finalized || os == CCVM_TDX_OP_UNINITIALIZED) {
		ccvm_invariant_fail(c->r, 16, NONE, c->tdr,
				    "TD %u: op state %d but the VM is %sfinalized",
				    ccvm_vm_id(c->vm), (int)os, finalized ? "" : "not ");
		return;
	}
}

/* One vCPU: out of the TD (I21), its TDVPR the TD's (I15); nonzero stops. */
static int check_vcpu(struct ccvm_vcpu *v, void *ctx)
{
	struct tdx_check *c = ctx;
	struct ccvm_tdx_vp *vp = ccvm_tdx_vcpu_vp(v);
	struct ccvm_tdx_pamt_info info;
	uint64_t tdvpr;

	if (!vp)
		return 0;
	ccvm_invariant_count(c->r, 2);
	/* In the TD only while the core has it in guest mode: never at rest. */
	if (ccvm_tdx_vp_in_guest(vp) && !ccvm_vcpu_guest_mode(v)) {
		ccvm_invariant_fail(c->r, 21, NONE, NONE,
				    "vCPU %u is in the TD but out of guest mode (VP.ENTER "
				    "without exit)", ccvm_vcpu_id(v));
		return 1;
	}
	tdvpr = ccvm_tdx_vp_tdvpr_pfn(vp);
	if (ccvm_tdx_pamt_get(c->m, tdvpr, &info) || info.type != CCVM_TDX_PT_TDVPR ||
	    info.owner != c->tdr) {
		ccvm_invariant_fail(c->r, 15, NONE, tdvpr,
				    "vCPU %u: its TDVPR page %#" PRIx64 " is not the TD's "
				    "TDVPR in the PAMT", ccvm_vcpu_id(v), tdvpr);
		return 1;
	}
	return 0;
}

static void check_vcpus(struct tdx_check *c)
{
	ccvm_vm_for_each_vcpu(c->vm, check_vcpu, c);
}

/* ---- mirror root vs S-EPT ----------------------------------------------------- */

static uint64_t sept_entry(struct tdx_check *c, uint64_t page, uint64_t gfn, int level)
{
	const _Atomic uint64_t *e = ccvm_page_ptr(c->p, page);
	unsigned int index = (unsigned int)(gfn >> (9 * (level - 1))) & (SEPT_ENTRIES - 1);

	return atomic_load_explicit(&e[index], memory_order_acquire);
}

static bool pamt_is(struct tdx_check *c, uint64_t pfn, unsigned int type)
{
	struct ccvm_tdx_pamt_info info;

	return !ccvm_tdx_pamt_get(c->m, pfn, &info) && info.type == type &&
	       info.owner == c->tdr;
}

static void check_entry(struct tdx_check *c, const struct mirror_entry *e)
{
	unsigned int want_type = e->leaf ? CCVM_TDX_PT_REG : CCVM_TDX_PT_EPT;
	unsigned int state;
	uint64_t se;

	ccvm_invariant_count(c->r, 1);
	if (!e->leaf && e->pfn == NONE) {
		ccvm_invariant_fail(c->r, 10, e->gfn, NONE,
				    "mirror table at gfn %#" PRIx64 " level %d has no S-EPT page",
				    e->gfn, e->level);
		return;
	}
	if (!pamt_is(c, e->pfn, want_type)) {
		ccvm_invariant_fail(c->r, 10, e->gfn, e->pfn,
				    "mirror %s at gfn %#" PRIx64 " level %d: pfn %#" PRIx64
				    " is not the TD's %s page in the PAMT",
				    e->leaf ? "leaf" : "table", e->gfn, e->level, e->pfn,
				    e->leaf ? "REG" : "S-EPT");
		return;
	}
	if (e->leaf) {
		struct ccvm_tdx_pamt_info info;
		int want = e->level == CCVM_LEVEL_2M ? CCVM_TDX_LEVEL_2M : CCVM_TDX_LEVEL_4K;

		ccvm_invariant_count(c->r, 1);
		if (ccvm_tdx_pamt_get(c->m, e->pfn, &info) || info.level != want) {
			ccvm_invariant_fail(c->r, 37, e->gfn, e->pfn,
					    "mirror leaf at gfn %#" PRIx64 " is %s but the PAMT "
					    "assigns its page %#" PRIx64 " at %s", e->gfn,
					    e->level == CCVM_LEVEL_2M ? "2M" : "4K", e->pfn,
					    info.level == CCVM_TDX_LEVEL_2M ? "2M" : "4K");
			return;
		}
	}
	if (!c->sept_live || e->parent_ext == NONE)
		return;
	ccvm_invariant_count(c->r, 1);
	se = sept_entry(c, e->parent_ext, e->gfn, e->level);
	state = CCVM_TDX_SEPTE_STATE(se);
	if (state == CCVM_TDX_SEPT_BLOCKED || state == CCVM_TDX_SEPT_PENDING_BLOCKED ||
	    state == CCVM_TDX_SEPT_NL_BLOCKED) {
		ccvm_invariant_fail(c->r, 12, e->gfn, e->pfn,
				    "S-EPT entry of gfn %#" PRIx64 " level %d is blocked (state %u) "
				    "under a present mirror SPTE: a removal stopped after BLOCK",
				    e->gfn, e->level, state);
		return;
	}
	if ((e->leaf && state != CCVM_TDX_SEPT_MAPPED && state != CCVM_TDX_SEPT_PENDING) ||
	    (!e->leaf && state != CCVM_TDX_SEPT_NL_MAPPED) ||
	    CCVM_TDX_SEPTE_PFN(se) != e->pfn) {
		ccvm_invariant_fail(c->r, 10, e->gfn, e->pfn,
				    "mirror %s at gfn %#" PRIx64 " level %d (pfn %#" PRIx64 ") but "
				    "its S-EPT entry is state %u pfn %#" PRIx64,
				    e->leaf ? "leaf" : "table", e->gfn, e->level, e->pfn, state,
				    (uint64_t)CCVM_TDX_SEPTE_PFN(se));
	}
}

/* Every non-FREE entry of a mirror table's S-EPT page has its mirror SPTE. */
static void check_sept_page(struct tdx_check *c, const struct mirror_entry *t)
{
	const _Atomic uint64_t *page = ccvm_page_ptr(c->p, t->pfn);
	int level = t->level - 1;
	unsigned int i;

	for (i = 0; i < SEPT_ENTRIES; i++) {
		uint64_t se = atomic_load_explicit(&page[i], memory_order_acquire);
		uint64_t gfn = t->gfn + i * level_pages(level);

		ccvm_invariant_count(c->r, 1);
		if (CCVM_TDX_SEPTE_STATE(se) == CCVM_TDX_SEPT_FREE)
			continue;
		if (!has_entry(c, gfn, level)) {
			ccvm_invariant_fail(c->r, 10, gfn, CCVM_TDX_SEPTE_PFN(se),
					    "S-EPT entry of gfn %#" PRIx64 " level %d is state %u "
					    "(pfn %#" PRIx64 ") but the mirror SPTE is not present",
					    gfn, level, CCVM_TDX_SEPTE_STATE(se),
					    (uint64_t)CCVM_TDX_SEPTE_PFN(se));
			return;
		}
	}
}

static void check_mirror(struct tdx_check *c)
{
	size_t i;

	for (i = 0; i < c->n && !failed(c); i++)
		check_entry(c, &c->ents[i]);
	if (failed(c) || !c->sept_live || !c->n)
		return;
	/* Sorted from here on, for the lookups of check_sept_page(). */
	qsort(c->ents, c->n, sizeof(c->ents[0]), cmp_entry);
	for (i = 0; i < c->n && !failed(c); i++)
		if (!c->ents[i].leaf)
			check_sept_page(c, &c->ents[i]);
}

/* ---- PAMT ------------------------------------------------------------------------ */

static void check_pamt_page(struct tdx_check *c, uint64_t pfn,
			    const struct ccvm_tdx_pamt_info *info)
{
	if (!ccvm_page_is_allocated(c->p, pfn)) {
		ccvm_invariant_fail(c->r, 18, NONE, pfn,
				    "pfn %#" PRIx64 " (PAMT type %u) belongs to a TD but is free "
				    "in the host allocator", pfn, info->type);
		return;
	}
	if (info->owner != c->tdr)
		return;
	switch (info->type) {
	case CCVM_TDX_PT_REG: {
		uint64_t head = pfn & ~(uint64_t)(SEPT_ENTRIES - 1);
		bool in_2m = has_u64(c->leaf2m_pfns, c->nr_leaf2m, head);
		bool in_4k = has_u64(c->leaf_pfns, c->nr_leaf, pfn);

		if (info->level == CCVM_TDX_LEVEL_2M ? in_2m : in_4k)
			break;
		if (in_2m || in_4k)
			ccvm_invariant_fail(c->r, 37, NONE, pfn,
					    "TD page %#" PRIx64 " is assigned at %s in the PAMT but "
					    "mapped by a %s leaf", pfn,
					    info->level == CCVM_TDX_LEVEL_2M ? "2M" : "4K",
					    in_2m ? "2M" : "4K");
		else
			ccvm_invariant_fail(c->r, 10, NONE, pfn,
					    "TD page %#" PRIx64 " (REG) is mapped by no mirror SPTE",
					    pfn);
		break;
	}
	case CCVM_TDX_PT_EPT:
		if (!has_u64(c->ext_pfns, c->nr_ext, pfn))
			ccvm_invariant_fail(c->r, 10, NONE, pfn,
					    "S-EPT page %#" PRIx64 " is linked by no mirror table", pfn);
		break;
	case CCVM_TDX_PT_TDR:
		if (pfn != c->tdr)
			ccvm_invariant_fail(c->r, 15, NONE, pfn,
					    "a second TDR page %#" PRIx64 " for the TD", pfn);
		break;
	default:
		break;
	}
	if (failed(c))
		return;
	if (info->bepoch > c->epoch) {
		ccvm_invariant_fail(c->r, 12, NONE, pfn,
				    "page %#" PRIx64 " was blocked in epoch %" PRIu64 ", after the "
				    "TD's epoch %" PRIu64, pfn, info->bepoch, c->epoch);
		return;
	}
	if (ccvm_page_is_leaked(c->p, pfn))
		ccvm_invariant_fail(c->r, 17, NONE, pfn,
				    "TD page %#" PRIx64 " is leaked but the VM is not bugged", pfn);
}

static void check_pamt(struct tdx_check *c)
{
	struct ccvm_tdx_pamt_info info;
	uint64_t pfn, limit = ccvm_platform_pfn_limit(c->p), children = 0;

	ccvm_invariant_count(c->r, 1);
	if (!pamt_is(c, c->tdr, CCVM_TDX_PT_TDR)) {
		ccvm_invariant_fail(c->r, 15, NONE, c->tdr,
				    "the TDR page %#" PRIx64 " is not the TD's TDR in the PAMT",
				    c->tdr);
		return;
	}
	/* Past the allocator's limit no page was ever handed to anyone. */
	for (pfn = 1; pfn < limit && !failed(c); pfn++) {
		ccvm_invariant_count(c->r, 1);
		if (ccvm_tdx_pamt_get(c->m, pfn, &info) || info.type == CCVM_TDX_PT_NDA)
			continue;
		if (info.owner == c->tdr && info.type != CCVM_TDX_PT_TDR)
			children++;
		check_pamt_page(c, pfn, &info);
	}
	if (failed(c))
		return;
	ccvm_invariant_count(c->r, 1);
	if (children != ccvm_tdx_td_nr_children(c->td))
		ccvm_invariant_fail(c->r, 15, NONE, c->tdr,
				    "the PAMT gives the TD %" PRIu64 " pages besides its TDR, the "
				    "TDR counts %" PRIu64, children, ccvm_tdx_td_nr_children(c->td));
}

/* Deferred-removal pins: bounded, and every pinned inode still alive. */
static void check_pins(struct tdx_check *c)
{
	unsigned int pinned = ccvm_tdx_nr_deferred(c->vm);
	uint64_t inodes = ccvm_platform_nr_gmem_inodes(c->p);

	ccvm_invariant_count(c->r, 1);
	if (pinned > CCVM_TDX_MAX_GMEM_INODES || inodes < pinned)
		ccvm_invariant_fail(c->r, 17, NONE, NONE,
				    "TD %u pins %u gmem inodes, %" PRIu64 " exist (at most %u)",
				    ccvm_vm_id(c->vm), pinned, inodes, CCVM_TDX_MAX_GMEM_INODES);
}

int ccvm_tdx_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r)
{
	struct tdx_check c;
	int err;

	if (!vm || !r)
		return -EINVAL;
	memset(&c, 0, sizeof(c));
	c.vm = vm;
	c.p = ccvm_vm_platform(vm);
	c.r = r;
	c.m = ccvm_tdx_module_of(c.p);
	c.td = ccvm_tdx_vm_td(vm);
	err = ccvm_tdx_check_dpamt(c.p, r);
	if (err || failed(&c) || !c.td)
		return err;	/* not a TD (yet): nothing of the module to compare */
	c.tdr = ccvm_tdx_td_tdr_pfn(c.td);
	c.epoch = ccvm_tdx_td_epoch(c.td);
	c.sept_live = ccvm_tdx_hkid_assigned(vm) &&
		      ccvm_tdx_td_lifecycle(c.td) == CCVM_TDX_TD_KEYS_CONFIGURED;

	check_td_state(&c);
	if (!failed(&c))
		check_vcpus(&c);
	err = failed(&c) ? 0 : collect(&c);
	if (!err && !failed(&c))
		check_mirror(&c);
	if (!err && !failed(&c))
		check_pamt(&c);
	if (!err && !failed(&c))
		check_pins(&c);
	free(c.ents);
	free(c.leaf_pfns);
	free(c.ext_pfns);
	free(c.leaf2m_pfns);
	return err;
}
