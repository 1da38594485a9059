/* SPDX-License-Identifier: MIT */
/*
 * The TDP MMU: roots and their page tables, installing a leaf (and the
 * mirror protocol that tells the backend), zaps, fast zap, the invalidation
 * protocol's writer side, translation and inspection (docs/semantics.md
 * sections 2 and 5).  What to install, and when, is the fault path's
 * decision (lib/fault.c), which calls in here only through the primitives
 * internal.h declares.
 *
 * Roots.  Every vCPU has a direct root (shared mappings; on VMs without a
 * mirror root, private ones too) and, when the backend's caps say
 * has_mirror_root, a mirror root for private mappings.  Roots are shared by
 * every vCPU that needs the same kind: a reload looks up a valid root of the
 * kind before allocating one.  A new root holds two references, the
 * allocating vCPU's and the MMU's own (docs/semantics.md 5.6), so it outlives
 * vCPU unloads until it is invalidated.  Invalidating a root drops the MMU's
 * reference; the last reference zaps and frees it.  Direct roots are
 * invalidated by a fast zap, mirror roots only at VM teardown.  The root
 * list and every refcount change are under mmu_lock write.
 *
 * Tables.  512 64-bit entries per table, 4 levels (5 when gpa_bits > 48).
 * Both kinds of root are indexed by the gfn without the shared bit; the
 * direct root of a VM with a shared bit stands for the aliases carrying it.
 *
 * SPTE layout (one 64-bit word, read and written atomically):
 *   bit 0      present
 *   bit 1      leaf (at level 2: a 2M mapping)
 *   bit 2      private: the frame is a gmem pfn mapped as private memory, so
 *              a root holding both kinds (mock, SNP) can be zapped by filter
 *   bit 3      host: the frame is a virtual page of the VMM's shared buffer
 *              (userspace_addr >> 12), not a platform pfn
 *   bits 12-63 frame number (leaves)
 * A present non-leaf entry is the address of the child struct ccvm_sp with
 * bit 0 set (tables are 64-byte aligned).  SPTE_FROZEN is a non-present
 * magic value that locks one entry of a mirror root while the backend is
 * told about the change (docs/semantics.md 5.4); walkers that see it retry.
 *
 * Concurrency.  Faults install under mmu_lock read with compare-exchange,
 * so several vCPUs fault in parallel; zaps, fast zaps, root changes and the
 * invalidation primitives hold mmu_lock write, so no fault's walk is inside
 * a table when it is freed.  A guest access walks without the lock when
 * free-running, as the CPU's page walk does (lib/guest.c): a table a zap
 * empties is unlinked at once but freed only after the TLB flush has
 * waited for the accesses in flight (ccvm_vm_sync_guest_accesses()), the
 * way KVM frees its tables after an RCU grace period.  A present mirror
 * entry is never changed under read: mirror roots only see non-present ->
 * present atomically.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend-call.h"

#define SPTE_PRESENT		(1ull << 0)
#define SPTE_LEAF		(1ull << 1)
#define SPTE_PRIVATE		(1ull << 2)
#define SPTE_HOST		(1ull << 3)
#define SPTE_FRAME_SHIFT	12
#define SPTE_TABLE_FLAGS	0x3full
/* Non-present, so every "present" test fails on it, and never a real value. */
#define SPTE_FROZEN		0x5a0ull

#define SPTE_PER_TABLE		512
#define SPTE_LEVEL_BITS		9

struct ccvm_sp {
	_Alignas(64) _Atomic uint64_t spte[SPTE_PER_TABLE];
	uint64_t gfn;		/* first gfn this table covers */
	uint64_t ext_pfn;	/* mirror: page handed to link_private_spt */
	struct ccvm_sp *unlinked_next;	/* a zap's tables waiting to be freed */
	int level;		/* level of this table's entries: 1 = 4K leaves */
};

/* ---- small helpers ------------------------------------------------------- */

static inline unsigned int spte_index(uint64_t gfn, int level)
{
	return (unsigned int)(gfn >> (SPTE_LEVEL_BITS * (level - 1))) & (SPTE_PER_TABLE - 1);
}

static inline bool spte_present(uint64_t e)
{
	return e & SPTE_PRESENT;
}

static inline bool spte_leaf(uint64_t e)
{
	return (e & (SPTE_PRESENT | SPTE_LEAF)) == (SPTE_PRESENT | SPTE_LEAF);
}

static inline uint64_t spte_frame(uint64_t e)
{
	return e >> SPTE_FRAME_SHIFT;
}

static inline struct ccvm_sp *spte_child(uint64_t e)
{
	return (struct ccvm_sp *)(uintptr_t)(e & ~SPTE_TABLE_FLAGS);
}

static inline uint64_t make_leaf(uint64_t frame, bool is_private, bool host)
{
	return (frame << SPTE_FRAME_SHIFT) | SPTE_PRESENT | SPTE_LEAF |
	       (is_private ? SPTE_PRIVATE : 0) | (host ? SPTE_HOST : 0);
}

static inline uint64_t make_table(struct ccvm_sp *sp)
{
	return (uint64_t)(uintptr_t)sp | SPTE_PRESENT;
}

static inline uint64_t spte_load(_Atomic uint64_t *ptr)
{
	return atomic_load_explicit(ptr, memory_order_acquire);
}

static inline void spte_store(_Atomic uint64_t *ptr, uint64_t v)
{
	atomic_store_explicit(ptr, v, memory_order_release);
}

static inline bool spte_cmpxchg(_Atomic uint64_t *ptr, uint64_t old, uint64_t v)
{
	return atomic_compare_exchange_strong_explicit(ptr, &old, v, memory_order_acq_rel,
						       memory_order_acquire);
}

static inline bool vm_has_mirror(const struct ccvm_vm *vm)
{
	return vm->caps.has_mirror_root;
}

/* ---- tables and roots ------------------------------------------------------ */

/*
 * Table memory.  A table is a little over 4 KiB, one per 512 leaves, and
 * a host page touched for the first time costs a page fault: on hosts
 * where a fault is expensive (a guest under shadow paging: tens of us)
 * taking every table from malloc costs more than the table's own work.
 * So tables come from chunks mapped and populated by one madvise
 * (MADV_POPULATE_WRITE, best effort), sized up as the VM grows, and a
 * freed table goes on a free list for the next one; the chunks go back
 * when the VM is torn down.  Under AddressSanitizer each table is its own
 * allocation, so a table used after its free is still caught.  The
 * model's own figures (model_bytes, the SP events) do not change.
 */
#if defined(__SANITIZE_ADDRESS__)
#define SP_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SP_POOL 0
#endif
#endif
#ifndef SP_POOL
#define SP_POOL 1
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct sp_chunk {
	struct sp_chunk *next;
	size_t bytes;
};

/* The chunk header's room: the tables after it stay 64-byte aligned. */
#define SP_CHUNK_HDR	((sizeof(struct sp_chunk) + _Alignof(struct ccvm_sp) - 1) & \
			 ~(_Alignof(struct ccvm_sp) - 1))

/*
 * Chunks double from SP_CHUNK_MIN tables up to one transparent huge page
 * (2 MiB, 503 tables), the size of every chunk after.  A huge chunk is
 * mapped 2 MiB-aligned and populated whole: on hosts where each first
 * touch of a 4 KiB page costs tens of microseconds even after
 * MADV_POPULATE_WRITE (a guest under shadow paging), a populated huge
 * page costs well under a microsecond per 4 KiB.
 */
#define SP_CHUNK_MIN	4u		/* tables in a VM's first chunk */
#define SP_HUGE_BYTES	(2u << 20)
#define SP_CHUNK_MAX	((uint32_t)((SP_HUGE_BYTES - SP_CHUNK_HDR) / sizeof(struct ccvm_sp)))

#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif

/* @bytes of fresh memory for a chunk, populated (best effort); NULL: none. */
static void *sp_chunk_map(size_t bytes)
{
	uint8_t *m, *a;

	/*
	 * The platform's mapping cache: the explorer makes a VM per schedule,
	 * and a fresh mapping's population and its munmap (a TLB shootdown of
	 * every CPU the process ran on) were a fifth of a TDX run.
	 */
	if (bytes != SP_HUGE_BYTES)
		return ccvm_chunk_map(bytes);
	/* Twice the size, then the aligned 2 MiB kept and the rest unmapped. */
	m = mmap(NULL, 2 * (size_t)SP_HUGE_BYTES, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	a = (uint8_t *)(((uintptr_t)m + SP_HUGE_BYTES - 1) & ~(uintptr_t)(SP_HUGE_BYTES - 1));
	if (a > m)
		munmap(m, (size_t)(a - m));
	munmap(a + SP_HUGE_BYTES, (size_t)(m + 2 * (size_t)SP_HUGE_BYTES - (a + SP_HUGE_BYTES)));
	/* Best effort both: a host without THP populates 4 KiB pages. */
	(void)madvise(a, SP_HUGE_BYTES, MADV_HUGEPAGE);
	(void)madvise(a, SP_HUGE_BYTES, MADV_POPULATE_WRITE);
	return a;
}

static void sp_pool_init(struct ccvm_mmu *m)
{
	ccvm_mutex_init(&m->sp_lock, NULL, "sp_lock");
	m->sp_free = NULL;
	m->sp_chunks = NULL;
	m->sp_chunk_tables = SP_CHUNK_MIN;
}

/* A new chunk's tables onto the free list; sp_lock held.  false: no memory. */
static bool sp_pool_grow(struct ccvm_mmu *m)
{
	uint32_t n = m->sp_chunk_tables, i;
	size_t bytes = SP_CHUNK_HDR + (size_t)n * sizeof(struct ccvm_sp);
	struct sp_chunk *c;
	uint8_t *t;

	bytes = n == SP_CHUNK_MAX ? SP_HUGE_BYTES :
		(bytes + CCVM_PAGE_SIZE - 1) & ~(size_t)(CCVM_PAGE_SIZE - 1);
	c = sp_chunk_map(bytes);
	if (!c)
		return false;
	c->bytes = bytes;
	c->next = m->sp_chunks;
	m->sp_chunks = c;
	t = (uint8_t *)c + SP_CHUNK_HDR;
	for (i = (uint32_t)((bytes - SP_CHUNK_HDR) / sizeof(struct ccvm_sp)); i-- > 0;) {
		void **sp = (void **)(t + (size_t)i * sizeof(struct ccvm_sp));

		*sp = m->sp_free;
		m->sp_free = sp;
	}
	if (m->sp_chunk_tables < SP_CHUNK_MAX)
		m->sp_chunk_tables = m->sp_chunk_tables * 2 < SP_CHUNK_MAX ?
				     m->sp_chunk_tables * 2 : SP_CHUNK_MAX;
	return true;
}

static struct ccvm_sp *sp_mem_alloc(struct ccvm_mmu *m)
{
	void **sp;

	if (!SP_POOL)
		return aligned_alloc(_Alignof(struct ccvm_sp), sizeof(struct ccvm_sp));
	ccvm_mutex_lock(&m->sp_lock);
	if (!m->sp_free && !sp_pool_grow(m)) {
		ccvm_mutex_unlock(&m->sp_lock);
		return NULL;
	}
	sp = m->sp_free;
	m->sp_free = *sp;
	ccvm_mutex_unlock(&m->sp_lock);
	return (struct ccvm_sp *)sp;
}

static void sp_mem_free(struct ccvm_mmu *m, struct ccvm_sp *sp)
{
	void **link = (void **)sp;

	if (!SP_POOL) {
		free(sp);
		return;
	}
	ccvm_mutex_lock(&m->sp_lock);
	*link = m->sp_free;
	m->sp_free = link;
	ccvm_mutex_unlock(&m->sp_lock);
}

/*
 * Give the chunks back once every table is free.  A table still counted
 * (a bug elsewhere) keeps them all: a leak, never a use after unmap.
 */
static void sp_pool_release(struct ccvm_vm *vm)
{
	struct ccvm_mmu *m = &vm->mmu;
	struct sp_chunk *c, *next;

	if (atomic_load_explicit(&m->nr_sp, memory_order_relaxed)) {
		ccvm_log(CCVM_LOG_WARN, "vm %u: %llu page tables still allocated at teardown",
			 vm->id, (unsigned long long)atomic_load(&m->nr_sp));
		return;
	}
	for (c = m->sp_chunks; c; c = next) {
		next = c->next;
		if (c->bytes == SP_HUGE_BYTES)
			munmap(c, c->bytes);
		else
			ccvm_chunk_unmap(c, c->bytes);
	}
	m->sp_chunks = NULL;
	m->sp_free = NULL;
	ccvm_mutex_destroy(&m->sp_lock);
}

static struct ccvm_sp *sp_alloc(struct ccvm_vm *vm, int level, uint64_t gfn)
{
	struct ccvm_sp *sp = sp_mem_alloc(&vm->mmu);

	if (!sp)
		return NULL;
	memset(sp, 0, sizeof(*sp));
	sp->gfn = gfn;
	sp->level = level;
	sp->ext_pfn = CCVM_NO_PFN;
	ccvm_model_bytes_add(vm->p, sizeof(*sp));
	atomic_fetch_add_explicit(&vm->mmu.nr_sp, 1, memory_order_relaxed);
	ccvm_account(vm->p, vm, CCVM_EV_SP_ALLOC, 1);
	return sp;
}

static void sp_free(struct ccvm_vm *vm, struct ccvm_sp *sp)
{
	sp_mem_free(&vm->mmu, sp);
	ccvm_model_bytes_add(vm->p, -(int64_t)sizeof(*sp));
	atomic_fetch_sub_explicit(&vm->mmu.nr_sp, 1, memory_order_relaxed);
	ccvm_account(vm->p, vm, CCVM_EV_SP_FREE, 1);
}

/*
 * Give back a mirror table's external page.  Only at root teardown, after
 * the backend released its key (docs/semantics.md 5.5): a page the backend
 * could not reclaim may still belong to the guest, so it is leaked.
 * @level is that of the entry that pointed to the table, as for link.
 */
static void sp_free_external(struct ccvm_vm *vm, struct ccvm_sp *sp, int level)
{
	int ret;

	if (sp->ext_pfn == CCVM_NO_PFN)
		return;
	ret = ccvm_op_free_private_spt(vm, sp->gfn, level, sp->ext_pfn);
	if (ret) {
		ccvm_log(CCVM_LOG_WARN,
			 "vm %u: free_private_spt(gfn %#llx) failed: %d, page leaked",
			 vm->id, (unsigned long long)sp->gfn, ret);
		ccvm_page_leak(vm->p, sp->ext_pfn);
	} else {
		ccvm_page_free(vm->p, sp->ext_pfn);
	}
	sp->ext_pfn = CCVM_NO_PFN;
}

/* The valid root of the kind, if any (at most one); mmu_lock held. */
static struct ccvm_root *root_find_valid(struct ccvm_vm *vm, bool mirror)
{
	struct ccvm_root *root;

	for (root = vm->mmu.roots; root; root = root->next)
		if (root->mirror == mirror && !ccvm_root_is_invalid(root))
			return root;
	return NULL;
}

/* A new root holding @refs references; mmu_lock write held. */
static struct ccvm_root *root_alloc(struct ccvm_vm *vm, bool mirror, long refs)
{
	struct ccvm_root *root = calloc(1, sizeof(*root));

	if (!root)
		return NULL;
	root->sp = sp_alloc(vm, vm->mmu.root_level, 0);
	if (!root->sp) {
		free(root);
		return NULL;
	}
	ccvm_model_bytes_add(vm->p, sizeof(*root));
	root->mirror = mirror;
	atomic_init(&root->refcount, refs);
	atomic_init(&root->invalid, false);
	root->next = vm->mmu.roots;
	vm->mmu.roots = root;
	ccvm_account(vm->p, vm, CCVM_EV_ROOT_ALLOC, 1);
	return root;
}

/*
 * A reference on the valid root of the kind, shared with every vCPU that
 * uses it; a new one starts with the vCPU's and the MMU's reference (5.6).
 * mmu_lock write held.
 */
static struct ccvm_root *root_get_for_vcpu(struct ccvm_vm *vm, bool mirror)
{
	struct ccvm_root *root = root_find_valid(vm, mirror);

	if (root) {
		atomic_fetch_add_explicit(&root->refcount, 1, memory_order_relaxed);
		return root;
	}
	return root_alloc(vm, mirror, 2);
}

struct ccvm_root *ccvm_mmu_launch_root(struct ccvm_vm *vm)
{
	struct ccvm_root *root = root_find_valid(vm, vm_has_mirror(vm));

	return root ? root : root_alloc(vm, vm_has_mirror(vm), 1);
}

static void zap_leaf(struct ccvm_vm *vm, struct ccvm_root *root, _Atomic uint64_t *ptr,
		     uint64_t e, uint64_t gfn, int level);

/*
 * At VM teardown (KVM's zap of the invalidated roots in
 * kvm_mmu_uninit_tdp_mmu(), __tdp_mmu_zap_root()): yield mmu_lock every
 * resched_entries leaves, between leaves, never inside one leaf's removal
 * (TDX: the RECLAIM of each page).  Nobody else holds the VM, so the
 * tables stay as they are; the yield lets other VMs' threads in.  A root
 * freed while the VM runs (its last vCPU reference gone after a fast zap)
 * is freed in one go under mmu_lock: concurrent zaps walk invalid roots,
 * and one of them could free a table this walk is in.
 */
static void teardown_resched(struct ccvm_vm *vm)
{
	struct ccvm_mmu *m = &vm->mmu;

	if (!m->teardown || ++m->teardown_leaves < vm->p->resched_entries)
		return;
	m->teardown_leaves = 0;
	if (ccvm_brlock_needbreak(&vm->mmu_lock))
		ccvm_brlock_cond_resched(&vm->mmu_lock);
}

/* Zap every leaf and free every table below @sp (root teardown). */
static void table_teardown(struct ccvm_vm *vm, struct ccvm_root *root, struct ccvm_sp *sp)
{
	uint64_t span = ccvm_level_pages(sp->level);
	unsigned int i;

	for (i = 0; i < SPTE_PER_TABLE; i++) {
		uint64_t e = spte_load(&sp->spte[i]);
		struct ccvm_sp *child;

		if (!spte_present(e))
			continue;
		if (spte_leaf(e)) {
			zap_leaf(vm, root, &sp->spte[i], e, sp->gfn + i * span, sp->level);
			teardown_resched(vm);
			continue;
		}
		child = spte_child(e);
		table_teardown(vm, root, child);
		spte_store(&sp->spte[i], 0);
		sp_free_external(vm, child, sp->level);
		sp_free(vm, child);
	}
}

/* Last reference gone: zap, free, unlink.  mmu_lock write held. */
static void root_free(struct ccvm_vm *vm, struct ccvm_root *root)
{
	struct ccvm_root **pp;

	table_teardown(vm, root, root->sp);
	sp_free(vm, root->sp);
	for (pp = &vm->mmu.roots; *pp; pp = &(*pp)->next) {
		if (*pp == root) {
			*pp = root->next;
			break;
		}
	}
	free(root);
	ccvm_model_bytes_add(vm->p, -(int64_t)sizeof(*root));
	ccvm_account(vm->p, vm, CCVM_EV_ROOT_FREE, 1);
}

/* Drop one reference; mmu_lock write held.  Return: true if it freed @root. */
static bool root_put(struct ccvm_vm *vm, struct ccvm_root *root)
{
	long left = atomic_fetch_sub_explicit(&root->refcount, 1, memory_order_acq_rel) - 1;

	if (left > 0)
		return false;
	if (left < 0 || !ccvm_root_is_invalid(root)) {
		/* Only invalid roots may lose their last reference (5.6). */
		ccvm_vm_bug(vm, "%s root: refcount %ld while %s",
			    root->mirror ? "mirror" : "direct", left,
			    ccvm_root_is_invalid(root) ? "invalid" : "valid");
		if (left < 0)
			return false;
		atomic_store(&root->invalid, true);
	}
	root_free(vm, root);
	return true;
}

/* Mark @root invalid and drop the MMU's own reference; mmu_lock write held. */
static void root_invalidate(struct ccvm_vm *vm, struct ccvm_root *root)
{
	if (ccvm_root_is_invalid(root))
		return;
	atomic_store_explicit(&root->invalid, true, memory_order_release);
	root_put(vm, root);
}

int ccvm_mmu_vm_init(struct ccvm_vm *vm)
{
	struct ccvm_mmu *m = &vm->mmu;

	m->roots = NULL;
	m->root_level = vm->gpa_bits > 48 ? 5 : 4;
	atomic_init(&m->invalidate_seq, 0);
	atomic_init(&m->invalidate_in_progress, 0);
	atomic_init(&m->range_start, CCVM_INVALID_GFN);
	atomic_init(&m->range_end, CCVM_INVALID_GFN);
	m->range_added = false;
	atomic_init(&m->nr_sp, 0);
	sp_pool_init(m);
	return 0;
}

/* Leak every page below @sp and free the tables (a root nobody may zap). */
static void table_leak(struct ccvm_vm *vm, struct ccvm_sp *sp)
{
	unsigned int i;

	for (i = 0; i < SPTE_PER_TABLE; i++) {
		uint64_t e = spte_load(&sp->spte[i]);
		struct ccvm_sp *child;

		if (!spte_present(e))
			continue;
		if (spte_leaf(e)) {
			/* A private page the backend was never told to let go of. */
			if (e & SPTE_PRIVATE)
				ccvm_page_leak(vm->p, spte_frame(e));
			continue;
		}
		child = spte_child(e);
		table_leak(vm, child);
		if (child->ext_pfn != CCVM_NO_PFN)
			ccvm_page_leak(vm->p, child->ext_pfn);
		sp_free(vm, child);
	}
}

/*
 * KVM's kvm_mmu_uninit_tdp_mmu(): every root still valid (mirror roots
 * included) is invalidated, which drops the MMU's reference and, once the
 * vCPUs have unloaded, zaps and frees it.  The leaves of a mirror root go
 * through remove_private_spte, which a TDX backend answers by RECLAIM since
 * vm_pre_destroy already released the key.
 *
 * A root that still has references now had one leaked (study 001's v3
 * reload): KVM never zaps it, so its S-EPT pages stay the TD's and every
 * page below it is lost; the model leaks them the same way.
 */
void ccvm_mmu_vm_uninit(struct ccvm_vm *vm)
{
	struct ccvm_root *root, *next;

	ccvm_brlock_wrlock(&vm->mmu_lock);
	vm->mmu.teardown = true;
	for (root = vm->mmu.roots; root; root = next) {
		next = root->next;
		root_invalidate(vm, root);
	}
	while (vm->mmu.roots) {
		root = vm->mmu.roots;
		ccvm_log(CCVM_LOG_WARN, "vm %u: %s root leaked with %ld references left",
			 vm->id, root->mirror ? "mirror" : "direct",
			 atomic_load(&root->refcount));
		ccvm_account(vm->p, vm, CCVM_EV_ROOT_LEAK, 1);
		table_leak(vm, root->sp);
		vm->mmu.roots = root->next;
		sp_free(vm, root->sp);
		free(root);
		ccvm_model_bytes_add(vm->p, -(int64_t)sizeof(*root));
	}
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	sp_pool_release(vm);
}

/* Point *@slot at the valid root of the kind, dropping the old one; mmu_lock write. */
static int vcpu_root_replace(struct ccvm_vm *vm, struct ccvm_root **slot, bool mirror)
{
	struct ccvm_root *root = root_get_for_vcpu(vm, mirror);

	if (!root)
		return -ENOMEM;
	if (*slot)
		root_put(vm, *slot);
	*slot = root;
	return 0;
}

/*
 * kvm_mmu_reload(): the direct root is replaced when missing or invalid; a
 * mirror root is only taken when the vCPU has none, so a fast zap never makes
 * a vCPU allocate (or reference) a second mirror root (docs/semantics.md 10).
 *
 * The study knob CCVM_STUDY_MIRROR_RELOAD brings back the code under review
 * (docs/studies/001.md): mmu_alloc_direct_roots() took a mirror root
 * whenever it ran, and kvm_tdp_mmu_alloc_root() hands out a new reference
 * on the valid one and overwrites the vCPU's pointer, so the reference the
 * vCPU held is never dropped.
 */
int ccvm_mmu_reload(struct ccvm_vcpu *v)
{
	struct ccvm_vm *vm = v->vm;
	bool need_direct = !v->root || ccvm_root_is_invalid(v->root);
	bool need_mirror = vm_has_mirror(vm) &&
			   (!v->mirror_root || ccvm_root_is_invalid(v->mirror_root));
	int err = 0;

	if (ccvm_likely(!need_direct && !need_mirror))
		return 0;

	ccvm_brlock_wrlock(&vm->mmu_lock);
	if (need_direct)
		err = vcpu_root_replace(vm, &v->root, false);
	if (need_mirror && !err) {
		err = vcpu_root_replace(vm, &v->mirror_root, true);
	} else if (need_direct && !err && v->mirror_root &&
#ifdef CCVM_MUTANT_MIRROR_EVERY_GEN
		   /* Broken on purpose (tests only): the v3 reload, always. */
		   true) {
#else
		   ccvm_vm_study_knob(vm, CCVM_STUDY_MIRROR_RELOAD) == CCVM_MIRROR_RELOAD_V3) {
#endif
		struct ccvm_root *root = root_get_for_vcpu(vm, true);

		if (!root)
			err = -ENOMEM;
		else
			v->mirror_root = root;	/* the old reference is lost */
	}
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	return err;
}

void ccvm_mmu_root_census(struct ccvm_vm *vm, struct ccvm_root_census *c)
{
	struct ccvm_root *root;
	unsigned int mmu_shard;

	memset(c, 0, sizeof(*c));
	mmu_shard = ccvm_brlock_rdlock(&vm->mmu_lock);
	for (root = vm->mmu.roots; root; root = root->next) {
		unsigned int kind = root->mirror ? 1 : 0;

		if (ccvm_root_is_invalid(root))
			c->invalid[kind]++;
		else
			c->valid[kind]++;
		c->refs[kind] += (uint64_t)atomic_load(&root->refcount);
	}
	ccvm_brlock_rdunlock(&vm->mmu_lock, mmu_shard);
}

void ccvm_mmu_vcpu_unload(struct ccvm_vcpu *v)
{
	struct ccvm_vm *vm = v->vm;

	if (!v->root && !v->mirror_root)
		return;
	ccvm_brlock_wrlock(&vm->mmu_lock);
	if (v->root)
		root_put(vm, v->root);
	if (v->mirror_root)
		root_put(vm, v->mirror_root);
	v->root = NULL;
	v->mirror_root = NULL;
	ccvm_brlock_wrunlock(&vm->mmu_lock);
}

/* ---- invalidation protocol (docs/semantics.md 2.1) ----------------------- */

/*
 * The updates below are scheduling points although mmu_lock is held for
 * write: the fault's early checks read these words without it, and the
 * window between begin and the first range_add (in progress, range still
 * empty) is one those checks must handle.
 */
void ccvm_mmu_invalidate_begin(struct ccvm_vm *vm)
{
	struct ccvm_mmu *m = &vm->mmu;

	ccvm_sched_point(ccvm_sched_of(vm->p), m, "invalidate begin");
#ifdef CCVM_MUTANT_BEGIN_FORGETS_RANGE
	/* Broken on purpose (tests only): a nested begin forgets the range. */
	atomic_fetch_add_explicit(&m->invalidate_in_progress, 1, memory_order_acq_rel);
	{
#else
	if (atomic_fetch_add_explicit(&m->invalidate_in_progress, 1,
				      memory_order_acq_rel) == 0) {
#endif
		atomic_store_explicit(&m->range_start, CCVM_INVALID_GFN, memory_order_relaxed);
		atomic_store_explicit(&m->range_end, CCVM_INVALID_GFN, memory_order_relaxed);
		m->range_added = false;
	}
}

void ccvm_mmu_invalidate_range_add(struct ccvm_vm *vm, uint64_t start, uint64_t end)
{
	struct ccvm_mmu *m = &vm->mmu;
	uint64_t s, e;

	ccvm_sched_point(ccvm_sched_of(vm->p), m, "invalidate range");
	s = atomic_load_explicit(&m->range_start, memory_order_relaxed);
	e = atomic_load_explicit(&m->range_end, memory_order_relaxed);
	if (atomic_load_explicit(&m->invalidate_in_progress, memory_order_relaxed) <= 0)
		ccvm_log(CCVM_LOG_WARN, "vm %u: invalidate range added outside begin/end",
			 vm->id);
	if (s == CCVM_INVALID_GFN) {
		s = start;
		e = end;
	} else {
		s = start < s ? start : s;
		e = end > e ? end : e;
	}
	atomic_store_explicit(&m->range_start, s, memory_order_relaxed);
	atomic_store_explicit(&m->range_end, e, memory_order_release);
	m->range_added = true;
}

void ccvm_mmu_invalidate_end(struct ccvm_vm *vm)
{
	struct ccvm_mmu *m = &vm->mmu;

	ccvm_sched_point(ccvm_sched_of(vm->p), m, "invalidate end");
	if (!m->range_added)
		ccvm_log(CCVM_LOG_DEBUG, "vm %u: invalidate_end without a range", vm->id);
	/* The seq bump is seen by anyone who sees in_progress drop (2.3). */
	atomic_fetch_add_explicit(&m->invalidate_seq, 1, memory_order_release);
	if (atomic_fetch_sub_explicit(&m->invalidate_in_progress, 1,
				      memory_order_release) <= 0) {
		atomic_store(&m->invalidate_in_progress, 0);
		ccvm_vm_bug(vm, "mmu invalidate_end without begin");
	}
}

/* ---- zap ------------------------------------------------------------------ */

static void zap_leaf(struct ccvm_vm *vm, struct ccvm_root *root, _Atomic uint64_t *ptr,
		     uint64_t e, uint64_t gfn, int level)
{
	int ret;

	spte_store(ptr, 0);
	ccvm_account_fast(vm->p, vm, CCVM_EV_ZAP, 1);
	if (!root->mirror)
		return;
	/* No unwinding: a half-removed private page may still be the guest's. */
	ret = ccvm_op_remove_private_spte(vm, gfn, level, spte_frame(e));
	if (ret) {
		uint64_t i;

		ccvm_vm_bug(vm, "remove_private_spte(gfn %#llx, level %d) failed: %d",
			    (unsigned long long)gfn, level, ret);
		for (i = 0; i < ccvm_level_pages(level); i++)
			ccvm_page_leak(vm->p, spte_frame(e) + i);
	}
}

/*
 * Split the 2M mirror leaf @e at *@ptr (gfn @gfn, @level) into a table of
 * 4K leaves over the same frames: the backend first (split_private_spte:
 * TDX's BLOCK, TRACK, DEMOTE), then the table replaces the leaf.  Nothing
 * else translates differently, so nothing is invalidated.  mmu_lock write.
 * Return: 0, or a negative errno with nothing changed (-EOPNOTSUPP: the
 * backend cannot split).
 */
static int mirror_split_leaf(struct ccvm_vm *vm, _Atomic uint64_t *ptr, uint64_t e,
			     uint64_t gfn, int level)
{
	uint64_t frame = spte_frame(e), span;
	struct ccvm_sp *child;
	unsigned int i;
	int ret;

	if (level != CCVM_LEVEL_2M || !ccvm_has_op(vm, split_private_spte))
		return -EOPNOTSUPP;
	child = sp_alloc(vm, level - 1, gfn);
	if (!child)
		return -ENOMEM;
	ret = ccvm_page_alloc(vm->p, &child->ext_pfn);
	if (ret) {
		child->ext_pfn = CCVM_NO_PFN;
		sp_free(vm, child);
		return ret;
	}
	span = ccvm_level_pages(level - 1);
	for (i = 0; i < SPTE_PER_TABLE; i++)
		atomic_store_explicit(&child->spte[i],
				      make_leaf(frame + i * span, (e & SPTE_PRIVATE) != 0, false),
				      memory_order_relaxed);
	ret = ccvm_op_split_private_spte(vm, gfn, level, frame, child->ext_pfn);
	if (ret) {
		/* Never handed over: still the host's page. */
		ccvm_page_free(vm->p, child->ext_pfn);
		child->ext_pfn = CCVM_NO_PFN;
		sp_free(vm, child);
		return ret;
	}
	spte_store(ptr, make_table(child));
	return 0;
}

int ccvm_mmu_split_private(struct ccvm_vm *vm, uint64_t gfn)
{
	struct ccvm_root *root;
	int ret = 0;

	ccvm_brlock_wrlock(&vm->mmu_lock);
	for (root = vm->mmu.roots; root; root = root->next) {
		struct ccvm_sp *sp = root->sp;
		int level = vm->mmu.root_level;
		_Atomic uint64_t *ptr;
		uint64_t e;

		if (!root->mirror || ccvm_root_is_invalid(root))
			continue;
		for (;;) {
			ptr = &sp->spte[spte_index(gfn, level)];
			e = spte_load(ptr);
			if (!spte_present(e) || spte_leaf(e) || level == CCVM_LEVEL_2M)
				break;
			sp = spte_child(e);
			level--;
		}
		/* Gone or split meanwhile: the caller's retry looks again. */
		if (spte_leaf(e) && level == CCVM_LEVEL_2M)
			ret = mirror_split_leaf(vm, ptr, e, gfn & ~(CCVM_PAGES_PER_2M - 1), level);
	}
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	return ret;
}

static bool table_empty(struct ccvm_sp *sp)
{
	unsigned int i;

	for (i = 0; i < SPTE_PER_TABLE; i++)
		if (atomic_load_explicit(&sp->spte[i], memory_order_relaxed))
			return false;
	return true;
}

struct zap_range {
	struct ccvm_vm *vm;
	struct ccvm_root *root;
	uint64_t start, end;	/* start moves on after each yield */
	uint64_t first;		/* the caller's start: emptied tables inside go */
	unsigned int filter;
	bool by_leaf_kind;	/* both kinds in this root: the private bit selects */
	bool huge_only;		/* only private leaves above 4K: split (mirror) or zap */
	bool flush;
	struct ccvm_sp *unlinked;	/* emptied tables, freed after the flush */
	/* KVM's tdp_mmu_iter_cond_resched(): 0 = may not yield */
	uint32_t interval;
	uint32_t leaves;	/* leaves visited since the walk (re)started */
	uint64_t resume;	/* CCVM_INVALID_GFN, or the gfn to restart from */
};

/*
 * @sp is out of its root: free it now if no guest access can be walking
 * it (serial: they hold mmu_lock read), else once they are waited for.
 */
static void zap_unlinked(struct zap_range *z, struct ccvm_sp *sp)
{
	if (!ccvm_vm_lockless_access(z->vm)) {
		sp_free(z->vm, sp);
		return;
	}
	sp->unlinked_next = z->unlinked;
	z->unlinked = sp;
}

/*
 * Free the tables the walk unlinked: after the accesses in flight are done
 * (@waited: a TLB flush just waited for them, after the last unlink).
 */
static void zap_free_unlinked(struct zap_range *z, bool waited)
{
	struct ccvm_sp *sp;

	if (!z->unlinked)
		return;
	if (!waited)
		ccvm_vm_sync_guest_accesses(z->vm);
	while ((sp = z->unlinked)) {
		z->unlinked = sp->unlinked_next;
		sp_free(z->vm, sp);
	}
}

static void zap_table(struct zap_range *z, struct ccvm_sp *sp)
{
	uint64_t span = ccvm_level_pages(sp->level);
	uint64_t first = z->start > sp->gfn ? z->start : sp->gfn;
	uint64_t table_end = sp->gfn + span * SPTE_PER_TABLE;
	uint64_t last = z->end < table_end ? z->end : table_end;
	uint64_t i, i_first, i_last;

	if (first >= last)
		return;
	i_first = (first - sp->gfn) / span;
	i_last = (last - 1 - sp->gfn) / span;
	for (i = i_first; i <= i_last; i++) {
		_Atomic uint64_t *ptr = &sp->spte[i];
		uint64_t e = spte_load(ptr);
		uint64_t gfn = sp->gfn + i * span;
		struct ccvm_sp *child;

		if (!spte_present(e)) {
			if (e == SPTE_FROZEN)
				ccvm_vm_bug(z->vm, "frozen spte at gfn %#llx under mmu_lock write",
					    (unsigned long long)gfn);
			continue;
		}
		/*
		 * Breaking huge leaves (their folio is about to be split): a
		 * mirror leaf is split, keeping its pages and their state
		 * (TDX: DEMOTE); any other, or one the backend cannot split,
		 * goes.  4K leaves and shared leaves stay.
		 */
		if (spte_leaf(e) && z->huge_only) {
			if (sp->level > CCVM_LEVEL_4K && (e & SPTE_PRIVATE) &&
			    (!z->root->mirror || mirror_split_leaf(z->vm, ptr, e, gfn, sp->level))) {
				zap_leaf(z->vm, z->root, ptr, e, gfn, sp->level);
				z->flush = true;
			}
			continue;
		}
		/*
		 * A mirror 2M leaf partly inside the range is split first, so
		 * the private pages outside it stay (TDX: DEMOTE); where the
		 * backend cannot, it goes whole, as every direct 2M leaf does.
		 */
		if (spte_leaf(e) && z->root->mirror && sp->level > CCVM_LEVEL_4K &&
		    (gfn < z->start || gfn + span > z->end) &&
		    !mirror_split_leaf(z->vm, ptr, e, gfn, sp->level))
			e = spte_load(ptr);
		if (spte_leaf(e)) {
			/* A 2M leaf partly inside the range goes whole. */
			if (!z->by_leaf_kind ||
			    (z->filter & ((e & SPTE_PRIVATE) ? CCVM_FILTER_PRIVATE
							     : CCVM_FILTER_SHARED))) {
				zap_leaf(z->vm, z->root, ptr, e, gfn, sp->level);
				z->flush = true;
			}
			/*
			 * Every interval leaves, if someone waits for mmu_lock
			 * (always on a serial platform): stop here and let the
			 * caller yield, then restart from the root at the next
			 * gfn (the walk made progress: no livelock).  Never
			 * inside one leaf's removal: only between leaves.
			 */
			if (z->interval && ++z->leaves >= z->interval && gfn + span < z->end) {
				z->leaves = 0;
				if (ccvm_brlock_needbreak(&z->vm->mmu_lock)) {
					z->resume = gfn + span;
					return;
				}
			}
			continue;
		}
		child = spte_child(e);
		zap_table(z, child);
		if (z->resume != CCVM_INVALID_GFN)
			return;		/* yielding: the restart looks at the table again */
		/*
		 * Mirror tables stay until teardown (S-EPT pages cannot be removed
		 * while the TD runs); an emptied direct table whose whole range was
		 * zapped goes now, so a later fault can map the range 2M again.
		 */
		if (!z->root->mirror && gfn >= z->first && gfn + span <= z->end &&
		    table_empty(child)) {
			spte_store(ptr, 0);
			zap_unlinked(z, child);
		}
	}
}

/*
 * Yield mmu_lock in the middle of a zap of @root (KVM's
 * tdp_mmu_iter_cond_resched): flush the TLBs owed first, and hold a
 * reference across the unlock so the root cannot be freed meanwhile.
 * Return: the root to go on with, @root or, if dropping that reference
 * freed it (it was invalidated meanwhile), the one after it.
 */
static struct ccvm_root *zap_yield(struct zap_range *z, struct ccvm_root *root, bool *gone)
{
	struct ccvm_vm *vm = z->vm;
	bool flushed = z->flush;
	struct ccvm_root *next;

	if (flushed) {
		ccvm_mmu_flush_remote_tlbs(vm);
		z->flush = false;
	}
	zap_free_unlinked(z, flushed);
	atomic_fetch_add_explicit(&root->refcount, 1, memory_order_relaxed);
	ccvm_brlock_cond_resched(&vm->mmu_lock);
	/* Tables may have been freed meanwhile: the walk restarts from the root. */
	next = root->next;
	*gone = root_put(vm, root);
	return *gone ? next : root;
}

bool ccvm_mmu_unmap_gfn_range(struct ccvm_vm *vm, uint64_t start, uint64_t end,
			      unsigned int filter, bool can_yield)
{
	struct zap_range z = {
		.vm = vm, .end = end, .first = start, .filter = filter,
		.by_leaf_kind = !vm_has_mirror(vm),
		.interval = can_yield ? vm->p->resched_entries : 0,
	};
	struct ccvm_root *root = vm->mmu.roots;
	bool gone;

	if (start >= end || !filter)
		return false;
	/*
	 * Invalid roots too: vCPUs may still use them until they reload.  Roots
	 * a yield lets others add are new and empty, and faults stay out of the
	 * range while it is zapped: they are not missed.
	 */
	while (root) {
		if (vm_has_mirror(vm) &&
		    !(filter & (root->mirror ? CCVM_FILTER_PRIVATE : CCVM_FILTER_SHARED))) {
			root = root->next;
			continue;
		}
		z.root = root;
		z.start = start;
		gone = false;
		for (;;) {
			z.resume = CCVM_INVALID_GFN;
			zap_table(&z, root->sp);
			if (z.resume == CCVM_INVALID_GFN || z.resume >= end)
				break;
			z.start = z.resume;
			root = zap_yield(&z, root, &gone);
			if (gone)
				break;
		}
		if (!gone)
			root = root->next;
	}
	zap_free_unlinked(&z, false);
	return z.flush;
}

bool ccvm_mmu_break_huge_private(struct ccvm_vm *vm, uint64_t start, uint64_t end)
{
	struct zap_range z = {
		.vm = vm, .end = end, .first = start, .filter = CCVM_FILTER_PRIVATE,
		.by_leaf_kind = !vm_has_mirror(vm), .huge_only = true,
	};
	struct ccvm_root *root;

	if (start >= end)
		return false;
	/* Invalid roots too, as a zap: vCPUs may still use them until they reload. */
	for (root = vm->mmu.roots; root; root = root->next) {
		if (vm_has_mirror(vm) && !root->mirror)
			continue;	/* private leaves live in the mirror root only */
		z.root = root;
		z.start = start;
		z.resume = CCVM_INVALID_GFN;
		zap_table(&z, root->sp);
	}
	zap_free_unlinked(&z, false);
	return z.flush;
}

void ccvm_mmu_flush_remote_tlbs(struct ccvm_vm *vm)
{
	/*
	 * Nothing is cached to drop (an access translates afresh), but an
	 * access in flight may still use what was removed: wait for it, as
	 * the shootdown's IPIs wait for every CPU to acknowledge.
	 */
	ccvm_account(vm->p, vm, CCVM_EV_TLB_FLUSH, 1);
	ccvm_vm_sync_guest_accesses(vm);
}

void ccvm_mmu_zap_all_fast(struct ccvm_vm *vm)
{
	struct ccvm_root *root, *next;

	ccvm_brlock_wrlock(&vm->mmu_lock);
	for (root = vm->mmu.roots; root; root = next) {
		next = root->next;
		/* S-EPT entries must go one by one with the key: never fast. */
		if (!root->mirror)
			root_invalidate(vm, root);
	}
	ccvm_account(vm->p, vm, CCVM_EV_FAST_ZAP, 1);
	/* No access keeps going through a root it saw valid (KVM's reload request). */
	ccvm_vm_sync_guest_accesses(vm);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
}

void ccvm_vm_zap_gfn_range(struct ccvm_vm *vm, uint64_t start, uint64_t end)
{
	if (!vm || start >= end)
		return;
	ccvm_brlock_wrlock(&vm->mmu_lock);
	ccvm_mmu_invalidate_begin(vm);
	ccvm_mmu_invalidate_range_add(vm, start, end);
	/* A guest's nested fault (one gfn) or a backend's service: no yield. */
	if (ccvm_mmu_unmap_gfn_range(vm, start, end, CCVM_FILTER_PRIVATE | CCVM_FILTER_SHARED,
				     false))
		ccvm_mmu_flush_remote_tlbs(vm);
	ccvm_mmu_invalidate_end(vm);
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	ccvm_account(vm->p, vm, CCVM_EV_INVALIDATE, 1);
}

/* ---- install ---------------------------------------------------------------- */

/* Freeze, tell the backend, then publish or restore (docs/semantics.md 5.4). */
static int mirror_set(struct ccvm_vm *vm, _Atomic uint64_t *ptr, uint64_t new_spte,
		      int (*op)(struct ccvm_vm *, uint64_t, int, uint64_t),
		      uint64_t gfn, int level, uint64_t arg)
{
	int ret;

	if (!spte_cmpxchg(ptr, 0, SPTE_FROZEN))
		return -EAGAIN;		/* changed under us: look again */
	ret = op(vm, gfn, level, arg);
	if (ret) {
		spte_store(ptr, 0);
		/* Busy never spins here: the whole fault is retried. */
		return ret == -EBUSY ? CCVM_PF_RETRY : ret;
	}
	spte_store(ptr, new_spte);
	return 0;
}

/* A table for the entry at @level covering @gfn; 0, CCVM_PF_RETRY, -errno. */
static int link_table(struct ccvm_vm *vm, struct ccvm_root *root, _Atomic uint64_t *ptr,
		      uint64_t gfn, int level)
{
	uint64_t base = gfn & ~(ccvm_level_pages(level) - 1);
	struct ccvm_sp *child = sp_alloc(vm, level - 1, base);
	int ret;

	if (!child)
		return -ENOMEM;
	if (!root->mirror) {
		if (!spte_cmpxchg(ptr, 0, make_table(child)))
			sp_free(vm, child);	/* another vCPU linked one */
		return 0;
	}
	ret = ccvm_page_alloc(vm->p, &child->ext_pfn);
	if (ret) {
		child->ext_pfn = CCVM_NO_PFN;
		sp_free(vm, child);
		return ret;
	}
	ret = mirror_set(vm, ptr, make_table(child), ccvm_op_link_private_spt, base, level,
			 child->ext_pfn);
	if (ret) {
		/* Never handed over: still the host's page. */
		ccvm_page_free(vm->p, child->ext_pfn);
		sp_free(vm, child);
		return ret == -EAGAIN ? 0 : ret;
	}
	return 0;
}

static int set_leaf(struct ccvm_vm *vm, struct ccvm_root *root, _Atomic uint64_t *ptr,
		    struct ccvm_page_fault *f, int level)
{
	uint64_t offset = f->gfn & (ccvm_level_pages(level) - 1);
	uint64_t leaf = make_leaf(f->frame - offset, f->is_private, f->host);
	int ret;

	if (!root->mirror) {
		if (!spte_cmpxchg(ptr, 0, leaf))
			return -EAGAIN;
	} else {
		ret = mirror_set(vm, ptr, leaf, ccvm_op_set_private_spte, f->gfn - offset, level,
				 f->frame - offset);
		if (ret)
			return ret;
	}
	f->installed = true;
	f->level = level;
	return 0;
}

/*
 * Walk @root to f->level, linking missing tables, and install the leaf.
 * mmu_lock held (read or write).  Return: 0 (installed, or a leaf already
 * covers the gfn: f->installed tells), CCVM_PF_RETRY, or a negative errno.
 */
int ccvm_tdp_map(struct ccvm_vm *vm, struct ccvm_root *root, struct ccvm_page_fault *f)
{
	struct ccvm_sp *sp = root->sp;
	int level = vm->mmu.root_level;
	int target = f->level;
	int ret;

	f->installed = false;
	for (;;) {
		_Atomic uint64_t *ptr = &sp->spte[spte_index(f->gfn, level)];
		uint64_t e = spte_load(ptr);

		if (e == SPTE_FROZEN)
			return CCVM_PF_RETRY;
		if (spte_leaf(e)) {
			/* Another vCPU mapped it first: a spurious fault. */
			f->level = level;
			return 0;
		}
		if (level == target && !spte_present(e)) {
			ret = set_leaf(vm, root, ptr, f, level);
			if (ret == -EAGAIN)
				continue;
			return ret;
		}
		if (level == target) {
			/*
			 * A table where a 2M leaf could go (mapped 4K while the range
			 * was mixed).  Replacing it under mmu_lock read would free a
			 * table other walkers may be in, so map 4K below it instead.
			 */
			target = CCVM_LEVEL_4K;
		}
		if (!spte_present(e)) {
			ret = link_table(vm, root, ptr, f->gfn, level);
			if (ret)
				return ret;
			continue;
		}
		sp = spte_child(e);
		level--;
	}
}

/* ---- translation and lookup ------------------------------------------------ */

/* The leaf for @gfn in @root, 0 if none (FROZEN counts as none). */
static uint64_t root_leaf(const struct ccvm_vm *vm, const struct ccvm_root *root,
			  uint64_t gfn, int *level)
{
	struct ccvm_sp *sp = root->sp;
	int l = vm->mmu.root_level;

	for (;;) {
		uint64_t e = spte_load(&sp->spte[spte_index(gfn, l)]);

		if (!spte_present(e))
			return 0;
		if (spte_leaf(e)) {
			*level = l;
			return e;
		}
		sp = spte_child(e);
		l--;
	}
}

/*
 * The hot path of every guest access: one walk, no lock of its own, no op
 * call.  The access kind comes from the shared bit when the VM has one; a
 * VM without one (mock) has no hardware signal, and there a present leaf
 * always has the attribute's kind (a conversion zaps the old kind before
 * the store changes and no fault installs until it ended), so the leaf is
 * trusted rather than asking fault_is_private on every access.
 */
int ccvm_mmu_translate(struct ccvm_vcpu *v, uint64_t gpa, struct ccvm_xlate *x)
{
	struct ccvm_vm *vm = v->vm;
	uint64_t gfn = ccvm_gpa_to_gfn(vm, gpa);
	bool known = vm->shared_bit != 0;
	bool is_private = known && !(gpa & vm->shared_bit);
	struct ccvm_root *root;
	uint64_t e, frame;
	int level;

	root = ccvm_vcpu_root(v, is_private);
	/* Past the guest's width: no slot there, the fault makes it MMIO. */
	if (!root || ccvm_root_is_invalid(root) || gfn >= vm->max_gfn)
		return -ENOENT;
	e = root_leaf(vm, root, gfn, &level);
	if (!e)
		return -ENOENT;
	/* One root holding both kinds (SNP): the other kind must fault. */
	if (known && !!(e & SPTE_PRIVATE) != is_private)
		return -ENOENT;
	frame = spte_frame(e) + (gfn & (ccvm_level_pages(level) - 1));
	if (e & SPTE_HOST) {
		x->hva = (uint8_t *)(uintptr_t)(frame << CCVM_PAGE_SHIFT);
		x->pfn = CCVM_NO_PFN;
	} else {
		x->hva = ccvm_page_ptr(vm->p, frame);
		x->pfn = frame;
	}
	x->level = level;
	x->is_private = e & SPTE_PRIVATE;
	return 0;
}

int ccvm_mmu_lookup(struct ccvm_vm *vm, uint64_t gpa, uint64_t *pfn, int *level)
{
	uint64_t gfn = ccvm_gpa_to_gfn(vm, gpa);
	bool known = vm->shared_bit != 0;
	bool is_private = known && !(gpa & vm->shared_bit);
	bool want_mirror = vm_has_mirror(vm) && is_private;
	struct ccvm_root *root;
	unsigned int mmu_shard;
	int ret = -ENOENT;

	if (gfn >= vm->max_gfn)
		return -ENOENT;
	mmu_shard = ccvm_brlock_rdlock(&vm->mmu_lock);
	for (root = vm->mmu.roots; root; root = root->next) {
		uint64_t e;
		int l;

		if (root->mirror != want_mirror || ccvm_root_is_invalid(root))
			continue;
		e = root_leaf(vm, root, gfn, &l);
		if (!e || (known && !!(e & SPTE_PRIVATE) != is_private))
			continue;
		if (pfn)
			*pfn = (e & SPTE_HOST) ? CCVM_NO_PFN
					       : spte_frame(e) + (gfn & (ccvm_level_pages(l) - 1));
		if (level)
			*level = l;
		ret = 0;
		break;
	}
	ccvm_brlock_rdunlock(&vm->mmu_lock, mmu_shard);
	return ret;
}

int ccvm_vm_lookup_mapping(struct ccvm_vm *vm, uint64_t gpa, uint64_t *pfn, int *level)
{
	if (!vm)
		return -EINVAL;
	return ccvm_mmu_lookup(vm, gpa, pfn, level);
}

/* ---- inspection for the invariant checker (lib/invariants.c) ------------- */

/* Whether the eight entries from @line (64-byte aligned) are all zero. */
static inline bool walk_line_empty(_Atomic uint64_t *line)
{
	uint64_t any = 0;
	unsigned int j;

	for (j = 0; j < 8; j++)
		any |= atomic_load_explicit(&line[j], memory_order_relaxed);
	return !any;
}

static int walk_table(struct ccvm_vm *vm, struct ccvm_root *root, struct ccvm_sp *sp,
		      ccvm_mmu_walk_fn fn, void *ctx)
{
	uint64_t span = ccvm_level_pages(sp->level);
	unsigned int i;
	int ret;

	for (i = 0; i < SPTE_PER_TABLE; i++) {
		/*
		 * The checker walks every table at every quiescent point of an
		 * explored run, and small VMs' tables are mostly empty: a line
		 * of eight zero entries (none present, none frozen) is skipped
		 * with one test.
		 */
		if (!(i & 7) && walk_line_empty(&sp->spte[i])) {
			i += 7;
			continue;
		}
		uint64_t e = spte_load(&sp->spte[i]);
		struct ccvm_mmu_entry me = {
			.gfn = sp->gfn + i * span,
			.level = sp->level,
			.mirror = root->mirror,
			.parent_ext = sp->ext_pfn,
		};
		struct ccvm_sp *child = NULL;

		if (e == SPTE_FROZEN) {
			me.frozen = true;
			me.frame = CCVM_NO_PFN;
		} else if (!spte_present(e)) {
			continue;
		} else if (spte_leaf(e)) {
			me.leaf = true;
			me.is_private = e & SPTE_PRIVATE;
			me.host = e & SPTE_HOST;
			me.frame = spte_frame(e);
		} else {
			child = spte_child(e);
			me.frame = child->ext_pfn;
		}
		ret = fn(root, &me, ctx);
		if (ret)
			return ret;
		if (child) {
			ret = walk_table(vm, root, child, fn, ctx);
			if (ret)
				return ret;
		}
	}
	return 0;
}

int ccvm_mmu_walk(struct ccvm_vm *vm, struct ccvm_root *root, ccvm_mmu_walk_fn fn, void *ctx)
{
	if (!vm || !root || !fn)
		return -EINVAL;
	return walk_table(vm, root, root->sp, fn, ctx);
}

struct mapping_walk {
	ccvm_mapping_fn fn;
	void *ctx;
};

static int mapping_cb(struct ccvm_root *root, const struct ccvm_mmu_entry *e, void *ctx)
{
	struct mapping_walk *w = ctx;

	(void)root;
	return w->fn(e, w->ctx);
}

int ccvm_vm_for_each_mapping(struct ccvm_vm *vm, unsigned int roots, ccvm_mapping_fn fn,
			     void *ctx)
{
	struct mapping_walk w = { .fn = fn, .ctx = ctx };
	struct ccvm_root *root;
	int ret = 0;

	if (!vm || !fn || !(roots & CCVM_ROOT_ALL))
		return -EINVAL;
	for (root = vm->mmu.roots; root && !ret; root = root->next)
		if (roots & (root->mirror ? CCVM_ROOT_MIRROR : CCVM_ROOT_DIRECT))
			ret = walk_table(vm, root, root->sp, mapping_cb, &w);
	return ret;
}

int ccvm_mmu_test_poke(struct ccvm_vm *vm, struct ccvm_root *root, uint64_t gfn, int level,
		       const struct ccvm_mmu_entry *leaf, struct ccvm_mmu_entry *old)
{
	struct ccvm_sp *sp;
	int l, ret = -ENOENT;

	if (!vm || !root || level < CCVM_LEVEL_4K || level > vm->mmu.root_level)
		return -EINVAL;
	ccvm_brlock_wrlock(&vm->mmu_lock);
	sp = root->sp;
	for (l = vm->mmu.root_level;; l--) {
		_Atomic uint64_t *ptr = &sp->spte[spte_index(gfn, l)];
		uint64_t e = spte_load(ptr);

		if (l == level) {
			if (old) {
				memset(old, 0, sizeof(*old));
				old->gfn = gfn & ~(ccvm_level_pages(l) - 1);
				old->level = l;
				old->mirror = root->mirror;
				old->parent_ext = sp->ext_pfn;
				old->frozen = e == SPTE_FROZEN;
				old->leaf = spte_leaf(e);
				old->is_private = spte_leaf(e) && (e & SPTE_PRIVATE);
				old->host = spte_leaf(e) && (e & SPTE_HOST);
				old->frame = spte_leaf(e) ? spte_frame(e) : CCVM_NO_PFN;
			}
			if (spte_present(e) && !spte_leaf(e)) {
				ret = -EEXIST;	/* a table: not a test's to replace */
				break;
			}
			if (!leaf)
				spte_store(ptr, 0);
			else if (leaf->frozen)
				spte_store(ptr, SPTE_FROZEN);
			else
				spte_store(ptr, make_leaf(leaf->frame, leaf->is_private,
							  leaf->host));
			ret = 0;
			break;
		}
		if (!spte_present(e) || spte_leaf(e))
			break;
		sp = spte_child(e);
	}
	ccvm_brlock_wrunlock(&vm->mmu_lock);
	return ret;
}
