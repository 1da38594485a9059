/* SPDX-License-Identifier: MIT */
/*
 * The invariant checker (docs/invariants.md): walk the live state of
 * a VM, or a platform's physical memory, and report the first invariant of
 * docs/semantics.md section 11 that does not hold.  Tests run it after every
 * scenario; a VMM may run it at any quiescent point.  It changes, counts and
 * traces nothing.
 *
 * Several invariants are about the order of operations (I3, I4, I12, I14,
 * I19, I20 ...): those are enforced where the operations run and leave
 * traces in the state at rest, which is what is checked here ("derived").
 *
 * | #   | checked at rest                                              | where       |
 * |-----|--------------------------------------------------------------|-------------|
 * | I1  | a private leaf: every gfn it covers is PRIVATE in the store, | core, leaf  |
 * |     | inside one gmem slot, and its pfn is the gmem page at        |             |
 * |     | pgoff + (gfn - base_gfn) (after the file's release, with     |             |
 * |     | removal deferred, the pfn is left to I5 and TDX's I10)       |             |
 * | I2  | a shared leaf: no gfn it covers is PRIVATE, it maps the      | core, leaf  |
 * |     | slot's userspace_addr + (gfn - base_gfn)                     |             |
 * | I3  | no invalidation left open (in_progress 0): every begin had   | core        |
 * |     | its end, so no range stays closed to faults (also I4)        |             |
 * | I5  | every platform pfn a leaf or a mirror table maps is          | core, leaf  |
 * |     | allocated (not on the free list, I5 zap-before-free); the    | platform    |
 * |     | free list and per-page state agree and add up                |             |
 * | I6  | memslots sorted, disjoint, inside the GPA space, found by    | core        |
 * |     | id; a gmem slot's file range is bound to it and only it; a   |             |
 * |     | file's bindings name only its live slots, inside their range |             |
 * | I7  | VM references >= VMM handle + open vCPU handles + gmem files | core        |
 * |     | bound to it, and each of those files belongs to the VM       |             |
 * | I8  | a leaf's level <= the caps' max for its kind (TDX private:   | core, leaf  |
 * |     | 4K); SNP: a 2M private leaf sits on a 2M RMP entry           | snp         |
 * | I9  | a 2M leaf lies inside one slot, its lpage entry is 0 (MIXED  | core, leaf  |
 * |     | clear) and its attributes are uniform; lpage entries of 2M   | core        |
 * |     | pages sticking out of a slot stay nonzero, MIXED of the      |             |
 * |     | others says exactly whether the attributes are uniform       |             |
 * | I10 | a mirror leaf/table is present iff its S-EPT entry is        | tdx         |
 * |     | MAPPED/PENDING (same pfn) or NL_MAPPED (the table's page);   |             |
 * |     | every TD page of type REG/EPT is mapped/linked by the mirror |             |
 * | I11 | no frozen SPTE at rest (an install neither published nor     | core, leaf  |
 * |     | restored)                                                    |             |
 * | I12 | no S-EPT entry behind a mirror SPTE is left BLOCKED (a       | tdx         |
 * |     | removal that stopped after BLOCK); BEPOCH <= TD_EPOCH        |             |
 * | I13 | a TD whose HKID KVM released is not KEYS_CONFIGURED          | tdx         |
 * | I14 | a TD holding its HKID is KEYS_CONFIGURED (no half release)   | tdx         |
 * | I15 | the TDR is the TD's, each vCPU's TDVPR page is the TD's, the | tdx         |
 * |     | TD's child count matches the pages the PAMT gives it         |             |
 * | I16 | finalized VM <=> TD op state RUNNABLE                        | tdx         |
 * | I17 | a TD page the platform counts as leaked belongs to a bugged  | tdx         |
 * |     | VM; pinned (deferred) inodes are bounded and alive           |             |
 * | I18 | no page the PAMT gives any TD is free in the host allocator; | tdx         |
 * |     | a leaked page is still allocated and counted                 | platform    |
 * | I21 | at rest no vCPU is in guest mode and guest entry is not      | core, tdx   |
 * |     | blocked (wait_for_sept_zap ended)                            |             |
 * | I22 | ccvm_snp_directmap_check(): no large host mapping over a mix | snp         |
 * |     | of private 4K and shared pages                               |             |
 * | I23 | an RMP page assigned to the VM's ASID is a VMSA or the gmem  | snp         |
 * |     | page at its RMP GPA (unless leaked: failure => leak);        |             |
 * |     | a private leaf's pfn is assigned to the ASID at that gfn; no |             |
 * |     | assigned page is free                                        |             |
 * | I24 | a 2M RMP entry has no assigned 4K entry inside its region    | snp         |
 * | I26 | the attribute store holds only PRIVATE (absent = shared)     | core        |
 * | I27 | a bugged VM is dead (no more guest entry); leaf and backend  | core        |
 * |     | checks are skipped for it: its state is allowed to be broken |             |
 * |     | (failed removals), only teardown follows                     |             |
 * | I28 | at most one valid root of each kind; no invalid mirror root  | core        |
 * |     | while the VM lives; refcounts = MMU's own (valid roots) +    |             |
 * |     | vCPUs using it, >= 1; a vCPU's roots are listed, of the right|             |
 * |     | kind, and a valid direct root comes with a valid mirror root |             |
 * | I29 | VMs with a mirror root: private leaves only in the mirror    | core, leaf  |
 * |     | root, shared ones only in the direct root; no leaf at a gfn  |             |
 * |     | carrying the shared bit (past the guest's GPA space)         |             |
 * | I31 | no host pin on a page its file holds private (pins block the | core        |
 * |     | conversion, and the host reaches pages only through them and |             |
 * |     | the file's access calls, which check under the lock)         |             |
 * | I32 | in place: a leaf over a gfn bound to a file has the kind of  | core, leaf  |
 * |     | the file's attribute at that index, and maps the file's page |             |
 * |     | (private and shared alike)                                   |             |
 * | I33 | in place: the VM store holds no PRIVATE; a file's store only | core        |
 * |     | 0 or PRIVATE, nothing past its last page                     |             |
 * | I34 | a live gmem slot is GMEM_ONLY iff the VM converts in place;  | core, leaf  |
 * |     | a GMEM_ONLY slot's shared leaf is never the VMM's buffer     |             |
 * | I35 | a whole huge gmem folio is one naturally aligned run over a  | core        |
 * |     | naturally aligned pfn block whose pages record its order; in |             |
 * |     | place it holds only private pages (split on the first shared |             |
 * |     | page, merged only when all private again)                    |             |
 * | I36 | a private leaf is never larger than the gmem folio behind it | core, leaf  |
 * |     | (TDX huge pages' rule 1; SNP: I8 caps it by the RMP too)     |             |
 * | I37 | a TD's private page is assigned in the PAMT at the level of  | tdx         |
 * |     | the S-EPT leaf that maps it (2M leaf: its 2M entry)          |             |
 * | I38 | TDX Dynamic PAMT: a 2M region of host memory holds a PAMT    | tdx         |
 * |     | page pair exactly while TDs hold pages of it at 4K; the      | (platform)  |
 * |     | backend's count of those pages is the PAMT's                 |             |
 *
 * Not checked here: I4 (the fault's seq check; its only trace at rest is
 * I3's), I19, I20 (retry policies), I25 (populate's own checks), I30
 * (memslot deletion: the memslot and conformance tests compare mappings
 * before and after).
 *
 * Order.  The first broken invariant found is reported, and the walk
 * stops.  Checks run in this order: I26, I33, I31, I35, I27, I6, I34 (slots), I9
 * (lpage entries), I7, I28, I3, I21, then every entry of every root in gfn
 * order (per entry: I11, I29, I1 or I2 (I32, I34 in place, I36), I5, I8, I9),
 * then the backend's check_invariants
 * (its own order, in its file).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-call.h"

#define NONE	UINT64_MAX

static const char *const invariant_names[] = {
	[1] = "private mapping: PRIVATE attribute, pfn from the slot's gmem",
	[2] = "shared mapping: not PRIVATE, frame from the slot's userspace_addr",
	[3] = "attribute changes zap the old kind before invalidate_end",
	[4] = "faults install only with an unchanged seq, outside in-progress ranges",
	[5] = "gmem memory is freed only after every mapping of it was zapped",
	[6] = "each gmem index is bound to at most one memslot",
	[7] = "the VM outlives every gmem file bound to it",
	[8] = "private mappings are 4K (TDX) / NPT level <= RMP level (SNP)",
	[9] = "hugepage mappings only over uniform attributes, inside one slot",
	[10] = "mirror SPTE present iff the S-EPT entry is MAPPED/PENDING/NL_MAPPED",
	[11] = "mirror SPTEs: frozen while the backend is told, never left frozen",
	[12] = "runtime removal: BLOCK, TRACK + kick, REMOVE, WBINVD",
	[13] = "no RECLAIM with the HKID assigned, no BLOCK/REMOVE after it is freed",
	[14] = "HKID release order: VP.FLUSH, VPFLUSHDONE, CACHE.WB, KEY.FREEID",
	[15] = "S-EPT and control pages reclaimed only after HKID release, TDR last",
	[16] = "PAGE.ADD only before FINALIZE, AUG only after, FINALIZE once",
	[17] = "every page pin is released once, or the page is leaked",
	[18] = "a TD-owned page never returns to the host allocator",
	[19] = "removal SEAMCALLs tried at most twice, then the VM is bugged",
	[20] = "install-path busy unwinds and retries the fault, never spins",
	[21] = "no guest entry while wait_for_sept_zap is set",
	[22] = "no host write to an RMP-assigned page; no large host mapping over it",
	[23] = "a page becomes RMP-private only via prepare/launch, shared before reuse",
	[24] = "RMPUPDATE of a 4K page inside a 2M entry needs PSMASH first",
	[25] = "populate only PRIVATE gfns, once per page, under slots_lock",
	[26] = "the attribute store holds only the PRIVATE bit",
	[27] = "a bugged/dead VM does nothing but teardown",
	[28] = "mirror roots never fast-zapped nor re-allocated while valid",
	[29] = "TDX private GPAs never carry the shared bit; aliases only in the direct root",
	[30] = "memslot delete zaps exactly that slot's gfns in all roots",
	[31] = "no host mapping or pin of a private gmem page",
	[32] = "a gmem's attributes and every mapping of it agree",
	[33] = "in place, PRIVATE lives only in the gmem stores, over each file's pages",
	[34] = "GMEM_ONLY slots exactly with in-place conversion; their shared leaves map gmem",
	[35] = "a whole huge gmem folio is aligned, contiguous and (in place) all private",
	[36] = "a private mapping is never larger than its gmem folio",
};

const char *ccvm_invariant_name(unsigned int n)
{
	return n < CCVM_ARRAY_SIZE(invariant_names) ? invariant_names[n] : NULL;
}

void ccvm_invariant_fail(struct ccvm_invariant_report *r, unsigned int invariant,
			 uint64_t gfn, uint64_t pfn, const char *fmt, ...)
{
	int n;
	va_list ap;

	if (r->invariant)
		return;		/* the first one found is the one reported */
	r->invariant = invariant;
	r->gfn = gfn;
	r->pfn = pfn;
	n = snprintf(r->msg, sizeof(r->msg), "I%u: ", invariant);
	if (n < 0 || (size_t)n >= sizeof(r->msg))
		return;
	va_start(ap, fmt);
	vsnprintf(r->msg + n, sizeof(r->msg) - (size_t)n, fmt, ap);
	va_end(ap);
}

void ccvm_invariant_count(struct ccvm_invariant_report *r, uint64_t n)
{
	r->nr_checks += n;
}

bool ccvm_invariant_failed(const struct ccvm_invariant_report *r)
{
	return r->invariant != 0;
}

/* ---- report plumbing -------------------------------------------------- */

static int report_begin(struct ccvm_invariant_report *out, struct ccvm_invariant_report *r)
{
	if (!out || out->sz < offsetof(struct ccvm_invariant_report, nr_checks))
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	r->sz = sizeof(*r);
	r->gfn = NONE;
	r->pfn = NONE;
	return 0;
}

static void report_end(struct ccvm_invariant_report *out, const struct ccvm_invariant_report *r)
{
	size_t sz = out->sz < sizeof(*r) ? out->sz : sizeof(*r);

	memcpy(out, r, sz);
	out->sz = sz;
	/* A caller's msg cut short by its sz still ends in a NUL. */
	if (sz > offsetof(struct ccvm_invariant_report, msg))
		((char *)out)[sz - 1] = '\0';
}

/* ---- the state of one check -------------------------------------------- */

struct check {
	struct ccvm_vm *vm;
	struct ccvm_invariant_report *r;
	struct ccvm_gmem **files;	/* distinct live files bound to slots */
	size_t nr_files, cap_files;
	long handles;			/* open VM and vCPU handles */
};

static bool failed(const struct check *c)
{
	return ccvm_invariant_failed(c->r);
}

static void count(struct check *c, uint64_t n)
{
	ccvm_invariant_count(c->r, n);
}

static struct ccvm_memslots *slots(const struct check *c)
{
	return c->vm->memslots;
}

static bool slot_listed(const struct check *c, const struct ccvm_memslot *slot)
{
	struct ccvm_memslots *s = slots(c);
	uint32_t i;

	for (i = 0; s && i < s->nr; i++)
		if (s->by_gfn[i] == slot)
			return true;
	return false;
}

static int file_add(struct check *c, struct ccvm_gmem *g)
{
	size_t i;

	for (i = 0; i < c->nr_files; i++)
		if (c->files[i] == g)
			return 0;
	if (c->nr_files == c->cap_files) {
		size_t cap = c->cap_files ? c->cap_files * 2 : 8;
		struct ccvm_gmem **f = realloc(c->files, cap * sizeof(*f));

		if (!f)
			return -ENOMEM;
		c->files = f;
		c->cap_files = cap;
	}
	c->files[c->nr_files++] = g;
	return 0;
}

/* Attribute store lookups; attr_lock is a leaf lock, taken per query. */
static bool attrs_are(struct ccvm_vm *vm, uint64_t first, uint64_t last, uint64_t attrs)
{
	unsigned int attr_sh;
	bool ok;

	attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
	ok = ccvm_xa_range_is(&vm->attrs, first, last, attrs);
	ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
	return ok;
}

static bool attrs_uniform(struct ccvm_vm *vm, uint64_t first, uint64_t last)
{
	unsigned int attr_sh;
	uint64_t end;

	attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
	ccvm_xa_run(&vm->attrs, first, &end);
	ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
	return end >= last;
}

/*
 * In place: do the file pages behind [gfn, gfn + n) of @slot all hold
 * @attrs?  A slot whose file was released has none: not checked (true).
 */
static bool file_attrs_are(struct ccvm_memslot *slot, uint64_t gfn, uint64_t n, uint64_t attrs)
{
	uint64_t first = slot->pgoff + (gfn - slot->base_gfn);
	bool ok;

	if (!atomic_load(&slot->gmem))
		return true;
	ccvm_rwlock_rdlock(&slot->inode->attr_lock);
	ok = ccvm_xa_range_is(&slot->inode->attrs, first, first + n - 1, attrs);
	ccvm_rwlock_unlock(&slot->inode->attr_lock);
	return ok;
}

/* The inode page at @index (the page cache, whatever became of the file). */
static uint64_t inode_pfn(struct ccvm_gmem_inode *inode, uint64_t index)
{
	struct ccvm_gmem_shard *s = ccvm_gmem_shard_of(inode, index);
	uint64_t v;

	ccvm_mutex_lock(&s->lock);
	v = ccvm_xa_load(&s->pages, index);
	ccvm_mutex_unlock(&s->lock);
	return v ? ccvm_gmem_pfn_at(v, index) : NONE;
}

/* ---- I26: the attribute store --------------------------------------------- */

static int attr_value_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct check *c = ctx;

	(void)last;
	count(c, 1);
	if (value & ~CCVM_MEMORY_ATTRIBUTE_PRIVATE) {
		ccvm_invariant_fail(c->r, 26, first, NONE,
				    "attribute store holds %#llx at gfn %#llx (only PRIVATE "
				    "may be stored)", (unsigned long long)value,
				    (unsigned long long)first);
		return 1;
	}
	return 0;
}

static void check_attr_store(struct check *c)
{
	unsigned int attr_sh;
	struct ccvm_vm *vm = c->vm;

	attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
	ccvm_xa_for_each_run(&vm->attrs, 0, UINT64_MAX, attr_value_cb, c);
	ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
}

/* ---- I33, I31: the in-place stores and the host's pins -------------------------- */

struct file_check {
	struct check *c;
	struct ccvm_gmem_inode *inode;
};

static int file_attr_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct file_check *fc = ctx;

	count(fc->c, 1);
	if ((value & ~CCVM_MEMORY_ATTRIBUTE_PRIVATE) || (value && last >= fc->inode->npages)) {
		ccvm_invariant_fail(fc->c->r, 33, NONE, NONE,
				    "a gmem store holds %#llx over [%#llx, %#llx] (%llu pages)",
				    (unsigned long long)value, (unsigned long long)first,
				    (unsigned long long)last,
				    (unsigned long long)fc->inode->npages);
		return 1;
	}
	return 0;
}

static int pin_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct file_check *fc = ctx;
	struct ccvm_gmem_inode *inode = fc->inode;
	uint64_t i, v;

	if (!value)
		return 0;
	for (i = first; ; i++) {
		count(fc->c, 1);
		v = ccvm_gmem_pages_load(inode, i);
		/* A pin on a punched page holds a folio the file no longer has. */
		if (v && ccvm_gmem_pfn_at(v, i) ==
			 CCVM_GMEM_PIN_PFN(ccvm_xa_load(&inode->pins, i)) &&
		    (inode->in_place ? ccvm_xa_load(&inode->attrs, i) != 0
				     : !(inode->flags & CCVM_GMEM_FLAG_INIT_SHARED))) {
			ccvm_invariant_fail(fc->c->r, 31, NONE, ccvm_gmem_pfn_at(v, i),
					    "gmem page %#llx (pfn %#llx) is pinned by the host but "
					    "private", (unsigned long long)i,
					    (unsigned long long)ccvm_gmem_pfn_at(v, i));
			return 1;
		}
		if (i == last)
			break;
	}
	return 0;
}

/*
 * I35: a huge folio in a page cache is one naturally aligned run of
 * indices over a naturally aligned block of pfns whose pages all record its
 * order, and in place holds only private pages (a split folio is merged
 * only once it is all private again); a 4K folio's page records order 0.
 */
static int folio_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct file_check *fc = ctx;
	struct ccvm_gmem_inode *inode = fc->inode;
	struct ccvm_platform *p = inode->p;
	unsigned int order;
	uint64_t nr, head, i, idx;

	if (!value)
		return 0;
	order = CCVM_GMEM_ORDER(value);
	nr = 1ull << order;
	head = CCVM_GMEM_PFN(value);
	count(fc->c, 1);
	if (!order) {
		if (ccvm_page_folio_order(p, head)) {
			ccvm_invariant_fail(fc->c->r, 35, NONE, head,
					    "gmem page %#llx is a 4K folio but pfn %#llx records "
					    "order %d", (unsigned long long)first,
					    (unsigned long long)head, ccvm_page_folio_order(p, head));
			return 1;
		}
		return 0;
	}
	if (order != inode->folio_order || (first & (nr - 1)) || (head & (nr - 1)) ||
	    ((last - first + 1) % nr)) {
		ccvm_invariant_fail(fc->c->r, 35, NONE, head,
				    "gmem folio of order %u at pages [%#llx, %#llx] pfn %#llx is "
				    "not one naturally aligned block of the file's order %u",
				    order, (unsigned long long)first, (unsigned long long)last,
				    (unsigned long long)head, inode->folio_order);
		return 1;
	}
	/* A run may hold several folios only if their values were equal: one each. */
	if (last - first + 1 != nr) {
		ccvm_invariant_fail(fc->c->r, 35, NONE, head,
				    "pfn %#llx is the folio of %llu pages of the file",
				    (unsigned long long)head,
				    (unsigned long long)(last - first + 1));
		return 1;
	}
	for (i = 0; i < nr; i++) {
		count(fc->c, 1);
		if (ccvm_page_folio_order(p, head + i) != (int)order) {
			ccvm_invariant_fail(fc->c->r, 35, NONE, head + i,
					    "pfn %#llx of a whole folio of order %u records order %d",
					    (unsigned long long)(head + i), order,
					    ccvm_page_folio_order(p, head + i));
			return 1;
		}
	}
	if (inode->in_place) {
		idx = first;
		count(fc->c, 1);
		if (!ccvm_xa_range_is(&inode->attrs, idx, last, CCVM_MEMORY_ATTRIBUTE_PRIVATE)) {
			ccvm_invariant_fail(fc->c->r, 35, NONE, head,
					    "whole gmem folio at pages [%#llx, %#llx] holds a shared "
					    "page (it should have been split, or not merged)",
					    (unsigned long long)first, (unsigned long long)last);
			return 1;
		}
	}
	return 0;
}

static int vm_attr_private_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct check *c = ctx;

	(void)last;
	count(c, 1);
	if (value & CCVM_MEMORY_ATTRIBUTE_PRIVATE) {
		ccvm_invariant_fail(c->r, 33, first, NONE,
				    "in-place VM %u has PRIVATE in its VM store at gfn %#llx",
				    c->vm->id, (unsigned long long)first);
		return 1;
	}
	return 0;
}

static void check_files(struct check *c)
{
	unsigned int attr_sh;
	struct ccvm_vm *vm = c->vm;
	struct ccvm_gmem *g;

	if (ccvm_vm_in_place(vm)) {
		attr_sh = ccvm_brlock_rdlock(&vm->attr_lock);
		ccvm_xa_for_each_run(&vm->attrs, 0, UINT64_MAX, vm_attr_private_cb, c);
		ccvm_brlock_rdunlock(&vm->attr_lock, attr_sh);
	}
	for (g = vm->gmem_files; g && !failed(c); g = g->next_file) {
		struct file_check fc = { .c = c, .inode = g->inode };

		count(c, 1);
		if (g->inode->in_place != ccvm_vm_in_place(vm)) {
			ccvm_invariant_fail(c->r, 33, NONE, NONE,
					    "a gmem file of VM %u is %sin place, its VM is not",
					    vm->id, g->inode->in_place ? "" : "not ");
			return;
		}
		ccvm_rwlock_rdlock(&g->inode->attr_lock);
		ccvm_xa_for_each_run(&g->inode->attrs, 0, UINT64_MAX, file_attr_cb, &fc);
		ccvm_gmem_pages_lock_all(g->inode);
		if (!failed(c))
			ccvm_xa_for_each_run(&g->inode->pins, 0, UINT64_MAX, pin_cb, &fc);
		if (!failed(c))
			ccvm_gmem_pages_for_each_run(g->inode, 0, UINT64_MAX, folio_cb, &fc);
		ccvm_gmem_pages_unlock_all(g->inode);
		ccvm_rwlock_unlock(&g->inode->attr_lock);
	}
}

/* ---- I27: a bugged VM --------------------------------------------------------- */

static void check_bugged(struct check *c)
{
	count(c, 1);
	if (ccvm_vm_is_bugged(c->vm) && !ccvm_vm_is_dead(c->vm))
		ccvm_invariant_fail(c->r, 27, NONE, NONE,
				    "VM %u is bugged but not dead: its vCPUs may still enter",
				    c->vm->id);
}

/* ---- I6: memslots and gmem bindings -------------------------------------------- */

static void check_slot(struct check *c, struct ccvm_memslot *m, struct ccvm_memslot *prev)
{
	struct ccvm_vm *vm = c->vm;
	struct ccvm_gmem *g = atomic_load(&m->gmem);
	struct ccvm_memslot *by_id;

	count(c, 1);
	if (g && m->gmem_only != ccvm_vm_in_place(vm)) {
		ccvm_invariant_fail(c->r, 34, m->base_gfn, NONE,
				    "memslot %u is %sGMEM_ONLY in a VM that %s in place", m->id,
				    m->gmem_only ? "" : "not ",
				    ccvm_vm_in_place(vm) ? "converts" : "does not convert");
		return;
	}

	count(c, 4);
	if (!m->npages || m->base_gfn + m->npages < m->base_gfn ||
	    m->base_gfn + m->npages > vm->max_gfn) {
		ccvm_invariant_fail(c->r, 6, m->base_gfn, NONE,
				    "memslot %u [%#llx, +%#llx) is empty or leaves the GPA space",
				    m->id, (unsigned long long)m->base_gfn,
				    (unsigned long long)m->npages);
		return;
	}
	if (prev && prev->base_gfn + prev->npages > m->base_gfn) {
		ccvm_invariant_fail(c->r, 6, m->base_gfn, NONE,
				    "memslots %u and %u overlap or are out of order at gfn %#llx",
				    prev->id, m->id, (unsigned long long)m->base_gfn);
		return;
	}
	by_id = (struct ccvm_memslot *)(uintptr_t)ccvm_xa_load(&vm->slot_ids, m->id);
	if (by_id != m) {
		ccvm_invariant_fail(c->r, 6, m->base_gfn, NONE,
				    "memslot %u is not the one its id finds", m->id);
		return;
	}
	if (!(m->flags & CCVM_MEM_GUEST_MEMFD)) {
		if (g || m->inode)
			ccvm_invariant_fail(c->r, 6, m->base_gfn, NONE,
					    "memslot %u without GUEST_MEMFD has a gmem binding",
					    m->id);
		return;
	}
	/* Released: the release cut the bindings, and the inode may be freed. */
	if (!g)
		return;
	if (!m->inode || m->pgoff + m->npages > m->inode->npages ||
	    m->pgoff + m->npages < m->pgoff) {
		ccvm_invariant_fail(c->r, 6, m->base_gfn, NONE,
				    "gmem memslot %u: no inode, or pages [%#llx, +%#llx) past "
				    "its end", m->id, (unsigned long long)m->pgoff,
				    (unsigned long long)m->npages);
		return;
	}
	if (g->inode != m->inode || g->vm != vm) {
		ccvm_invariant_fail(c->r, 6, m->base_gfn, NONE,
				    "gmem memslot %u: its file is of another inode or VM", m->id);
		return;
	}
	if (!ccvm_xa_range_is(&g->bindings, m->pgoff, m->pgoff + m->npages - 1,
			      (uint64_t)(uintptr_t)m)) {
		ccvm_invariant_fail(c->r, 6, m->base_gfn, NONE,
				    "gmem memslot %u: file pages [%#llx, +%#llx) are not all "
				    "bound to it", m->id, (unsigned long long)m->pgoff,
				    (unsigned long long)m->npages);
		return;
	}
	if (file_add(c, g))
		ccvm_invariant_fail(c->r, 6, NONE, NONE, "out of memory while checking");
}

struct binding_walk {
	struct check *c;
	struct ccvm_gmem *g;
	uint32_t nr_slots;
	const struct ccvm_memslot *last;
};

static int binding_cb(uint64_t first, uint64_t last, uint64_t value, void *ctx)
{
	struct binding_walk *w = ctx;
	struct ccvm_memslot *slot = (struct ccvm_memslot *)(uintptr_t)value;

	if (!slot)
		return 0;
	count(w->c, 1);
	if (!slot_listed(w->c, slot) || atomic_load(&slot->gmem) != w->g ||
	    first < slot->pgoff || last >= slot->pgoff + slot->npages) {
		ccvm_invariant_fail(w->c->r, 6, NONE, NONE,
				    "file pages [%#llx, %#llx] are bound to a memslot that is "
				    "gone, of another file, or does not cover them",
				    (unsigned long long)first, (unsigned long long)last);
		return 1;
	}
	/* Each slot's range is one run (checked per slot): count runs. */
	if (slot != w->last)
		w->nr_slots++;
	w->last = slot;
	return 0;
}

static void check_memslots(struct check *c)
{
	struct ccvm_memslots *s = slots(c);
	uint32_t i;
	size_t f;

	for (i = 0; s && i < s->nr && !failed(c); i++)
		check_slot(c, s->by_gfn[i], i ? s->by_gfn[i - 1] : NULL);
	for (f = 0; f < c->nr_files && !failed(c); f++) {
		struct binding_walk w = { .c = c, .g = c->files[f] };

		ccvm_xa_for_each_run(&w.g->bindings, 0, UINT64_MAX, binding_cb, &w);
		count(c, 1);
		if (!failed(c) && w.nr_slots != w.g->nr_bindings)
			ccvm_invariant_fail(c->r, 6, NONE, NONE,
					    "a gmem file counts %u bindings but %u memslots are "
					    "bound to it", w.g->nr_bindings, w.nr_slots);
	}
}

/* ---- I9: hugepage tracking of the slots -------------------------------------- */

static void check_lpage(struct check *c, struct ccvm_memslot *m)
{
	uint64_t first = m->base_gfn >> 9, i;
	bool misaligned = false;

	if (m->userspace_addr &&
	    (((uintptr_t)m->userspace_addr >> CCVM_PAGE_SHIFT) ^ m->base_gfn) & 511)
		misaligned = true;
	if ((m->flags & CCVM_MEM_GUEST_MEMFD) && ((m->pgoff ^ m->base_gfn) & 511))
		misaligned = true;
	for (i = 0; i < m->nr_lpage_2m; i++) {
		uint64_t hp = (first + i) << 9;
		bool disallow = ccvm_lpage_test(m->lpage_disallow, i);
		bool mixed = ccvm_lpage_test(m->lpage_mixed, i);
		bool inside = hp >= m->base_gfn &&
			      hp + CCVM_PAGES_PER_2M <= m->base_gfn + m->npages;

		count(c, 1);
		if (!inside || misaligned) {
			if (!disallow) {
				ccvm_invariant_fail(c->r, 9, hp, NONE,
						    "memslot %u: 2M page at gfn %#llx %s but may be "
						    "mapped 2M", m->id, (unsigned long long)hp,
						    inside ? "has a misaligned backing"
							   : "sticks out of the slot");
				return;
			}
			continue;
		}
		if (mixed != !attrs_uniform(c->vm, hp, hp + CCVM_PAGES_PER_2M - 1)) {
			ccvm_invariant_fail(c->r, 9, hp, NONE,
					    "memslot %u: 2M page at gfn %#llx is %s but MIXED is %s",
					    m->id, (unsigned long long)hp,
					    mixed ? "uniform" : "mixed", mixed ? "set" : "clear");
			return;
		}
	}
}

static void check_lpages(struct check *c)
{
	struct ccvm_memslots *s = slots(c);
	uint32_t i;

	for (i = 0; s && i < s->nr && !failed(c); i++)
		check_lpage(c, s->by_gfn[i]);
}

/* ---- I7: references ---------------------------------------------------------- */

/*
 * Open handles, counted before the check takes slots_lock: vm->lock and
 * vcpu->mutex come first in the lock order.
 */
static long open_handles(struct ccvm_vm *vm)
{
	uint32_t i, n = ccvm_vm_nr_vcpus(vm);
	long handles = 0;

	ccvm_mutex_lock(&vm->lock);
	handles += !vm->handle_closed;
	ccvm_mutex_unlock(&vm->lock);
	for (i = 0; i < n; i++) {
		struct ccvm_vcpu *v = vm->vcpus[i];

		ccvm_mutex_lock(&v->mutex);
		handles += !v->handle_closed;
		ccvm_mutex_unlock(&v->mutex);
	}
	return handles;
}

static void check_refs(struct check *c)
{
	struct ccvm_vm *vm = c->vm;
	long need = c->handles + (long)c->nr_files;
	long refs = atomic_load(&vm->refcount);

	count(c, 1);
	if (refs < need)
		ccvm_invariant_fail(c->r, 7, NONE, NONE,
				    "VM %u holds %ld references but its %ld open handles and "
				    "%zu bound gmem files need %ld", vm->id, refs, c->handles,
				    c->nr_files, need);
}

/* ---- I28: roots ----------------------------------------------------------------- */

static bool root_listed(const struct ccvm_vm *vm, const struct ccvm_root *root)
{
	const struct ccvm_root *it;

	for (it = vm->mmu.roots; it; it = it->next)
		if (it == root)
			return true;
	return false;
}

static void check_vcpu_roots(struct check *c)
{
	struct ccvm_vm *vm = c->vm;
	uint32_t i, n = ccvm_vm_nr_vcpus(vm);

	for (i = 0; i < n && !failed(c); i++) {
		struct ccvm_vcpu *v = vm->vcpus[i];

		count(c, 3);
		if ((v->root && (!root_listed(vm, v->root) || v->root->mirror)) ||
		    (v->mirror_root && (!root_listed(vm, v->mirror_root) ||
					!v->mirror_root->mirror))) {
			ccvm_invariant_fail(c->r, 28, NONE, NONE,
					    "vCPU %u holds a root that is not listed or of the "
					    "wrong kind", v->id);
			return;
		}
		if (v->mirror_root && !vm->caps.has_mirror_root) {
			ccvm_invariant_fail(c->r, 28, NONE, NONE,
					    "vCPU %u has a mirror root on a VM without one", v->id);
			return;
		}
		/* docs/semantics.md 10: the mirror root is never dropped alone. */
		if (vm->caps.has_mirror_root && v->root && !v->root->invalid &&
		    (!v->mirror_root || v->mirror_root->invalid)) {
			ccvm_invariant_fail(c->r, 28, NONE, NONE,
					    "vCPU %u has a valid direct root but %s mirror root",
					    v->id, v->mirror_root ? "an invalid" : "no");
			return;
		}
	}
}

static void check_roots(struct check *c)
{
	struct ccvm_vm *vm = c->vm;
	uint32_t n = ccvm_vm_nr_vcpus(vm);
	unsigned int valid[2] = { 0, 0 };
	struct ccvm_root *root;

	for (root = vm->mmu.roots; root && !failed(c); root = root->next) {
		bool invalid = atomic_load(&root->invalid);
		long refs = atomic_load(&root->refcount), users = 0;
		uint32_t i;

		for (i = 0; i < n; i++)
			users += vm->vcpus[i]->root == root || vm->vcpus[i]->mirror_root == root;
		count(c, 3);
		if (root->mirror && !vm->caps.has_mirror_root) {
			ccvm_invariant_fail(c->r, 28, NONE, NONE,
					    "a mirror root on a VM without mirror roots");
			return;
		}
		if (root->mirror && invalid) {
			ccvm_invariant_fail(c->r, 28, NONE, NONE,
					    "an invalid mirror root while the VM lives (mirror "
					    "roots are never fast-zapped)");
			return;
		}
		if (!invalid && ++valid[root->mirror] > 1) {
			ccvm_invariant_fail(c->r, 28, NONE, NONE,
					    "more than one valid %s root",
					    root->mirror ? "mirror" : "direct");
			return;
		}
		/* A valid root also holds the MMU's own reference (5.6). */
		if (refs != users + !invalid || refs < 1) {
			ccvm_invariant_fail(c->r, 28, NONE, NONE,
					    "%s %s root has %ld references, expected %ld "
					    "(%ld vCPUs use it)", invalid ? "an invalid" : "the valid",
					    root->mirror ? "mirror" : "direct", refs,
					    users + !invalid, users);
			return;
		}
	}
	if (!failed(c))
		check_vcpu_roots(c);
}

/* ---- I3 and I21: nothing left in flight ---------------------------------------- */

static void check_at_rest(struct check *c)
{
	struct ccvm_vm *vm = c->vm;
	long in_progress = atomic_load(&vm->mmu.invalidate_in_progress);
	uint32_t i, n = ccvm_vm_nr_vcpus(vm);

	count(c, 2);
	if (in_progress) {
		ccvm_invariant_fail(c->r, 3, atomic_load(&vm->mmu.range_start), NONE,
				    "%ld invalidation(s) still in progress at rest (range "
				    "[%#llx, %#llx))", in_progress,
				    (unsigned long long)atomic_load(&vm->mmu.range_start),
				    (unsigned long long)atomic_load(&vm->mmu.range_end));
		return;
	}
	if (atomic_load(&vm->entry_blocked)) {
		ccvm_invariant_fail(c->r, 21, NONE, NONE,
				    "guest entry still blocked (depth %ld) at rest",
				    atomic_load(&vm->entry_blocked));
		return;
	}
	/*
	 * A vCPU is in guest mode only while a run has handed it to its guest
	 * (guest_turn): at rest never, and at a quiescent point of a schedule
	 * only the vCPUs whose guest thread has the turn.
	 */
	for (i = 0; i < n; i++) {
		struct ccvm_vcpu *v = vm->vcpus[i];
		bool turn;

		count(c, 1);
		if (!ccvm_vcpu_guest_mode(v))
			continue;
		ccvm_mutex_lock(&v->guest->lock);
		turn = v->guest->guest_turn;
		ccvm_mutex_unlock(&v->guest->lock);
		if (!turn) {
			ccvm_invariant_fail(c->r, 21, NONE, NONE,
					    "vCPU %u is in guest mode with no run giving it to "
					    "its guest (an entry without its exit)", v->id);
			return;
		}
	}
}

/* ---- the leaves: I1, I2, I5, I8, I9, I11, I29 ------------------------------------ */

static uint64_t level_pages(int level)
{
	return 1ull << (9 * (level - 1));
}

/* I1: a private leaf maps the gmem pages of its gfns. */
static void check_private_leaf(struct check *c, const struct ccvm_mmu_entry *e,
			       struct ccvm_memslot *slot, uint64_t n)
{
	uint64_t i;

	if (ccvm_vm_in_place(c->vm)) {
		if (!file_attrs_are(slot, e->gfn, n, CCVM_MEMORY_ATTRIBUTE_PRIVATE))
			ccvm_invariant_fail(c->r, 32, e->gfn, e->frame,
					    "private leaf at gfn %#llx (pfn %#llx) over a page its "
					    "gmem file holds shared", (unsigned long long)e->gfn,
					    (unsigned long long)e->frame);
	} else if (!attrs_are(c->vm, e->gfn, e->gfn + n - 1, CCVM_MEMORY_ATTRIBUTE_PRIVATE)) {
		ccvm_invariant_fail(c->r, 1, e->gfn, e->frame,
				    "private leaf at gfn %#llx (pfn %#llx) over a gfn that is "
				    "not PRIVATE", (unsigned long long)e->gfn,
				    (unsigned long long)e->frame);
	}
	if (failed(c))
		return;
	if (!(slot->flags & CCVM_MEM_GUEST_MEMFD) || !slot->inode) {
		ccvm_invariant_fail(c->r, 1, e->gfn, e->frame,
				    "private leaf at gfn %#llx in memslot %u without gmem",
				    (unsigned long long)e->gfn, slot->id);
		return;
	}
	/*
	 * After the file's release the slot's inode pointer is only good while
	 * a backend pins the inode (deferred removal), which is also the only
	 * way a leaf survives the release: leave the pfn to I5 and the
	 * backend's own ownership check rather than read a freed inode.
	 */
	if (!atomic_load(&slot->gmem))
		return;
	for (i = 0; i < n; i++) {
		uint64_t index = slot->pgoff + (e->gfn + i - slot->base_gfn);
		uint64_t pfn = inode_pfn(slot->inode, index);

		count(c, 1);
		if (pfn != e->frame + i) {
			ccvm_invariant_fail(c->r, 1, e->gfn + i, e->frame + i,
					    "private leaf maps gfn %#llx to pfn %#llx but its gmem "
					    "page (index %#llx) is %s%#llx",
					    (unsigned long long)(e->gfn + i),
					    (unsigned long long)(e->frame + i),
					    (unsigned long long)index, pfn == NONE ? "a hole, " : "",
					    (unsigned long long)(pfn == NONE ? 0 : pfn));
			return;
		}
	}
	/* I36: a mapping is never larger than the folio behind it. */
	count(c, 1);
	if (n > 1 && (uint64_t)1 << ccvm_page_folio_order(c->vm->p, e->frame) < n) {
		ccvm_invariant_fail(c->r, 36, e->gfn, e->frame,
				    "private leaf at gfn %#llx maps %llu pages but pfn %#llx is in "
				    "a folio of order %d", (unsigned long long)e->gfn,
				    (unsigned long long)n, (unsigned long long)e->frame,
				    ccvm_page_folio_order(c->vm->p, e->frame));
	}
}

/* I32, I34: a shared leaf of a GMEM_ONLY slot maps the file's shared pages. */
static void check_gmem_only_shared_leaf(struct check *c, const struct ccvm_mmu_entry *e,
					struct ccvm_memslot *slot, uint64_t n)
{
	uint64_t i;

	if (e->host) {
		ccvm_invariant_fail(c->r, 34, e->gfn, NONE,
				    "shared leaf at gfn %#llx of GMEM_ONLY memslot %u maps the "
				    "VMM's buffer", (unsigned long long)e->gfn, slot->id);
		return;
	}
	/* As for I1: after a release the pages are left to I5. */
	if (!atomic_load(&slot->gmem))
		return;
	if (!file_attrs_are(slot, e->gfn, n, 0)) {
		ccvm_invariant_fail(c->r, 32, e->gfn, e->frame,
				    "shared leaf at gfn %#llx over a page its gmem file holds "
				    "private", (unsigned long long)e->gfn);
		return;
	}
	for (i = 0; i < n; i++) {
		uint64_t index = slot->pgoff + (e->gfn + i - slot->base_gfn);

		count(c, 1);
		if (inode_pfn(slot->inode, index) != e->frame + i) {
			ccvm_invariant_fail(c->r, 32, e->gfn + i, e->frame + i,
					    "shared leaf maps gfn %#llx to pfn %#llx, not its gmem "
					    "page (index %#llx)", (unsigned long long)(e->gfn + i),
					    (unsigned long long)(e->frame + i),
					    (unsigned long long)index);
			return;
		}
	}
}

/* I2: a shared leaf maps the VMM's buffer. */
static void check_shared_leaf(struct check *c, const struct ccvm_mmu_entry *e,
			      struct ccvm_memslot *slot, uint64_t n)
{
	uint64_t want;

	if (slot->gmem_only) {
		check_gmem_only_shared_leaf(c, e, slot, n);
		return;
	}

	if (!e->host) {
		ccvm_invariant_fail(c->r, 2, e->gfn, e->frame,
				    "shared leaf at gfn %#llx maps platform pfn %#llx, not the "
				    "VMM's buffer", (unsigned long long)e->gfn,
				    (unsigned long long)e->frame);
		return;
	}
	if (!attrs_are(c->vm, e->gfn, e->gfn + n - 1, 0)) {
		ccvm_invariant_fail(c->r, 2, e->gfn, NONE,
				    "shared leaf at gfn %#llx over a PRIVATE gfn",
				    (unsigned long long)e->gfn);
		return;
	}
	want = ((uintptr_t)slot->userspace_addr >> CCVM_PAGE_SHIFT) + (e->gfn - slot->base_gfn);
	if (!slot->userspace_addr || e->frame != want)
		ccvm_invariant_fail(c->r, 2, e->gfn, NONE,
				    "shared leaf at gfn %#llx maps host page %#llx, not memslot "
				    "%u's userspace_addr page %#llx", (unsigned long long)e->gfn,
				    (unsigned long long)e->frame, slot->id,
				    (unsigned long long)want);
}

static void check_leaf(struct check *c, const struct ccvm_mmu_entry *e)
{
	struct ccvm_vm *vm = c->vm;
	uint64_t n = level_pages(e->level), i;
	uint32_t cap = e->is_private ? vm->caps.private_max_level : vm->caps.shared_max_level;
	struct ccvm_memslot *slot;

	count(c, 1);
	/* I29: which root holds which kind, and no gfn with the shared bit. */
	if (e->gfn + n > vm->max_gfn || e->gfn + n < e->gfn) {
		ccvm_invariant_fail(c->r, 29, e->gfn, NONE,
				    "%s leaf at gfn %#llx is past the GPA space (carries the "
				    "shared bit)", e->mirror ? "mirror" : "direct",
				    (unsigned long long)e->gfn);
		return;
	}
	if (vm->caps.has_mirror_root && e->mirror != e->is_private) {
		ccvm_invariant_fail(c->r, 29, e->gfn, e->frame,
				    "%s leaf at gfn %#llx in the %s root",
				    e->is_private ? "private" : "shared",
				    (unsigned long long)e->gfn, e->mirror ? "mirror" : "direct");
		return;
	}

	slot = ccvm_memslot_find(vm, e->gfn);
	if (!slot || e->gfn + n > slot->base_gfn + slot->npages) {
		ccvm_invariant_fail(c->r, e->is_private ? 1 : 2, e->gfn, NONE,
				    "%s leaf at gfn %#llx (%llu pages) is not inside a memslot",
				    e->is_private ? "private" : "shared",
				    (unsigned long long)e->gfn, (unsigned long long)n);
		return;
	}
	if (e->is_private)
		check_private_leaf(c, e, slot, n);
	else
		check_shared_leaf(c, e, slot, n);
	if (failed(c))
		return;

	/* I5: never a platform page that went back to the allocator. */
	for (i = 0; !e->host && i < n; i++) {
		count(c, 1);
		if (!ccvm_page_is_allocated(vm->p, e->frame + i)) {
			ccvm_invariant_fail(c->r, 5, e->gfn + i, e->frame + i,
					    "gfn %#llx maps pfn %#llx, which is free in the "
					    "platform allocator", (unsigned long long)(e->gfn + i),
					    (unsigned long long)(e->frame + i));
			return;
		}
	}

	count(c, 1);
	if (cap && (uint32_t)e->level > cap) {
		ccvm_invariant_fail(c->r, 8, e->gfn, e->frame,
				    "%s leaf at gfn %#llx has level %d, above the backend's %u",
				    e->is_private ? "private" : "shared",
				    (unsigned long long)e->gfn, e->level, cap);
		return;
	}
	if (e->level != CCVM_LEVEL_2M)
		return;
	count(c, 2);
	if (ccvm_memslot_max_level(slot, e->gfn) < CCVM_LEVEL_2M) {
		ccvm_invariant_fail(c->r, 9, e->gfn, e->frame,
				    "2M leaf at gfn %#llx where memslot %u disallows 2M (MIXED "
				    "or partial)", (unsigned long long)e->gfn, slot->id);
		return;
	}
	if (ccvm_vm_in_place(vm) ? !file_attrs_are(slot, e->gfn, n, e->is_private ?
						     CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0)
				 : !attrs_uniform(vm, e->gfn, e->gfn + n - 1))
		ccvm_invariant_fail(c->r, 9, e->gfn, e->frame,
				    "2M leaf at gfn %#llx over non-uniform attributes",
				    (unsigned long long)e->gfn);
}

static int leaf_cb(const struct ccvm_mmu_entry *e, void *ctx)
{
	struct check *c = ctx;

	if (e->frozen) {
		ccvm_invariant_fail(c->r, 11, e->gfn, NONE,
				    "frozen SPTE at gfn %#llx level %d at rest",
				    (unsigned long long)e->gfn, e->level);
		return 1;
	}
	if (!e->leaf) {
		/* A mirror table's external page is the TD's: allocated (I5). */
		count(c, 1);
		if (e->frame != NONE && !ccvm_page_is_allocated(c->vm->p, e->frame)) {
			ccvm_invariant_fail(c->r, 5, e->gfn, e->frame,
					    "mirror table at gfn %#llx level %d: its S-EPT page "
					    "%#llx is free in the platform allocator",
					    (unsigned long long)e->gfn, e->level,
					    (unsigned long long)e->frame);
			return 1;
		}
		return 0;
	}
	check_leaf(c, e);
	return failed(c);
}

static void check_leaves(struct check *c)
{
	ccvm_vm_for_each_mapping(c->vm, CCVM_ROOT_ALL, leaf_cb, c);
}

/* ---- entry points -------------------------------------------------------------- */

static void vm_check(struct check *c)
{
	struct ccvm_vm *vm = c->vm;
	int err;

	check_attr_store(c);
	if (!failed(c))
		check_files(c);
	if (!failed(c))
		check_bugged(c);
	if (!failed(c))
		check_memslots(c);
	if (!failed(c))
		check_lpages(c);
	if (!failed(c))
		check_refs(c);
	if (!failed(c))
		check_roots(c);
	if (!failed(c))
		check_at_rest(c);
	/* A bugged VM may hold what a failed removal left: only teardown follows. */
	if (failed(c) || ccvm_vm_is_bugged(vm))
		return;
	check_leaves(c);
	if (failed(c))
		return;
	err = ccvm_op_check_invariants(vm, c->r);
	if (err && !failed(c))
		ccvm_invariant_fail(c->r, 27, NONE, NONE,
				    "backend %s could not check its invariants: %d",
				    vm->caps.name, err);
}

int ccvm_vm_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *out)
{
	struct ccvm_invariant_report r;
	struct check c;
	int err;

	if (!vm)
		return -EINVAL;
	err = report_begin(out, &r);
	if (err)
		return err;
	memset(&c, 0, sizeof(c));
	c.vm = vm;
	c.r = &r;
	c.handles = open_handles(vm);

	/* A quiescent point: no memslot change, no fault, no zap meanwhile. */
	ccvm_mutex_lock(&vm->slots_lock);
	ccvm_brlock_wrlock(&vm->memslots_rw);
	ccvm_brlock_wrlock(&vm->mmu_lock);
	vm_check(&c);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	ccvm_brlock_wrunlock(&vm->memslots_rw);
	ccvm_mutex_unlock(&vm->slots_lock);

	free(c.files);
	report_end(out, &r);
	return 0;
}

int ccvm_platform_check_invariants(struct ccvm_platform *p, struct ccvm_invariant_report *out)
{
	struct ccvm_invariant_report r;
	uint64_t pfn, n = 0, allocated = 0, leaked = 0, nr_free, nr_leaked, in_windows = 0;
	int err;

	if (!p)
		return -EINVAL;
	err = report_begin(out, &r);
	if (err)
		return err;

	ccvm_mutex_lock(&p->mem_lock);
	/* No page leaves a window while the windows are looked at. */
	for (unsigned int w = 0; w < p->nr_windows; w++)
		atomic_fetch_or_explicit(&p->window[w].w, CCVM_WINDOW_FROZEN, memory_order_acq_rel);
	nr_free = atomic_load(&p->nr_free);
	nr_leaked = atomic_load(&p->nr_leaked);
	/* The free list: bounded by the free count, so a cycle cannot hang us. */
	for (pfn = p->free_head; pfn != UINT64_MAX && !r.invariant;
	     pfn = p->free_next[pfn] ? p->free_next[pfn] : UINT64_MAX) {
		uint8_t st;

		r.nr_checks++;
		if (!pfn || pfn >= p->bump || ++n > nr_free) {
			ccvm_invariant_fail(&r, 5, NONE, pfn,
					    "free list is corrupt at pfn %#llx (%llu entries, %llu "
					    "free pages)", (unsigned long long)pfn,
					    (unsigned long long)n, (unsigned long long)nr_free);
			break;
		}
		st = atomic_load_explicit(&p->pfn_state[pfn], memory_order_relaxed);
		if (st & CCVM_PFN_ALLOCATED)
			ccvm_invariant_fail(&r, 5, NONE, pfn,
					    "pfn %#llx is on the free list and allocated",
					    (unsigned long long)pfn);
	}
	/* Free huge blocks (2M, 1G): each counts its pages, each page unallocated. */
	for (unsigned int list = 0; list < 2 && !r.invariant; list++) {
		uint64_t nr = 1ull << (list ? CCVM_FOLIO_ORDER_1G : CCVM_FOLIO_ORDER_2M), i;

		for (pfn = p->folio_head[list]; pfn != UINT64_MAX && !r.invariant;
		     pfn = p->free_next[pfn] ? p->free_next[pfn] : UINT64_MAX) {
			r.nr_checks++;
			if ((pfn & (nr - 1)) || pfn + nr > p->bump || (n += nr) > nr_free) {
				ccvm_invariant_fail(&r, 5, NONE, pfn,
						    "free %lluK block list is corrupt at pfn %#llx",
						    (unsigned long long)(nr * 4),
						    (unsigned long long)pfn);
				break;
			}
			for (i = 0; i < nr && !r.invariant; i++)
				if (atomic_load_explicit(&p->pfn_state[pfn + i],
							 memory_order_relaxed) & CCVM_PFN_ALLOCATED)
					ccvm_invariant_fail(&r, 5, NONE, pfn + i,
							    "pfn %#llx is in a free block and "
							    "allocated", (unsigned long long)(pfn + i));
		}
	}
	/* The per-thread windows of the bump region: free pages on no list, not in nr_free. */
	for (unsigned int w = 0; w < p->nr_windows && !r.invariant; w++) {
		uint64_t word = atomic_load_explicit(&p->window[w].w, memory_order_acquire);
		uint64_t next = ccvm_window_next(word), end = next + ccvm_window_left(word);

		r.nr_checks++;
		if (end > p->bump) {
			ccvm_invariant_fail(&r, 5, NONE, next,
					    "page window %u [%#llx, %#llx) is past the bump pointer "
					    "%#llx", w, (unsigned long long)next,
					    (unsigned long long)end, (unsigned long long)p->bump);
			break;
		}
		for (pfn = next; pfn < end && !r.invariant; pfn++)
			if (atomic_load_explicit(&p->pfn_state[pfn], memory_order_relaxed))
				ccvm_invariant_fail(&r, 5, NONE, pfn,
						    "pfn %#llx is in page window %u but has state "
						    "%#x", (unsigned long long)pfn, w,
						    atomic_load_explicit(&p->pfn_state[pfn],
									 memory_order_relaxed));
		in_windows += end - next;
	}
	for (pfn = 1; pfn < p->nr_pages && !r.invariant; pfn++) {
		uint8_t st = atomic_load_explicit(&p->pfn_state[pfn], memory_order_relaxed);

		r.nr_checks++;
		if (pfn >= p->bump) {
			if (st)
				ccvm_invariant_fail(&r, 5, NONE, pfn,
						    "pfn %#llx was never handed out but has state %#x",
						    (unsigned long long)pfn, st);
			/* Nothing past the bump pointer was ever touched. */
			break;
		}
		if (st & CCVM_PFN_ALLOCATED)
			allocated++;
		if (st & CCVM_PFN_LEAKED) {
			leaked++;
			if (!(st & CCVM_PFN_ALLOCATED))
				ccvm_invariant_fail(&r, 18, NONE, pfn,
						    "pfn %#llx is leaked but not allocated: it went "
						    "back to the allocator", (unsigned long long)pfn);
		}
	}
	if (!r.invariant) {
		uint64_t never = p->nr_pages - p->bump;

		r.nr_checks += 3;
		if (n + never != nr_free)
			ccvm_invariant_fail(&r, 5, NONE, NONE,
					    "%llu pages free but %llu on the free lists and %llu "
					    "never handed out", (unsigned long long)nr_free,
					    (unsigned long long)n, (unsigned long long)never);
		else if (allocated + nr_free + in_windows != p->nr_pages - 1)
			ccvm_invariant_fail(&r, 5, NONE, NONE,
					    "%llu allocated + %llu free pages + %llu in page windows "
					    "!= %llu", (unsigned long long)allocated,
					    (unsigned long long)nr_free, (unsigned long long)in_windows,
					    (unsigned long long)(p->nr_pages - 1));
		else if (leaked != nr_leaked)
			ccvm_invariant_fail(&r, 18, NONE, NONE,
					    "%llu pages are leaked but %llu are counted",
					    (unsigned long long)leaked,
					    (unsigned long long)nr_leaked);
	}
	for (unsigned int w = p->nr_windows; w--; )
		atomic_fetch_and_explicit(&p->window[w].w, ~CCVM_WINDOW_FROZEN, memory_order_acq_rel);
	ccvm_mutex_unlock(&p->mem_lock);
	report_end(out, &r);
	return 0;
}

int ccvm_platform_check_all(struct ccvm_platform *p, char *msg, size_t msg_sz)
{
	struct ccvm_invariant_report r;
	struct ccvm_vm *vm;
	int bad = 0;

	/*
	 * Only at a quiescent point of a schedule: nobody holds p->lock or any
	 * lock the checks take, so the list cannot change under the walk.
	 */
	ccvm_mutex_lock(&p->lock);
	for (vm = p->vms; vm && !bad; vm = vm->next_vm) {
		memset(&r, 0, sizeof(r));
		r.sz = sizeof(r);
		if (!ccvm_vm_check_invariants(vm, &r) && r.invariant) {
			snprintf(msg, msg_sz, "vm %u: invariant I%u broken: %s", vm->id,
				 r.invariant, r.msg);
			bad = 1;
		}
	}
	ccvm_mutex_unlock(&p->lock);
	if (bad)
		return 1;
	memset(&r, 0, sizeof(r));
	r.sz = sizeof(r);
	if (!ccvm_platform_check_invariants(p, &r) && r.invariant) {
		snprintf(msg, msg_sz, "platform: invariant I%u broken: %s", r.invariant, r.msg);
		return 1;
	}
	return 0;
}
