/* SPDX-License-Identifier: MIT */
/*
 * The TDP MMU and the fault path (lib/mmu.c): pre-fault, hugepages,
 * conversions, punch, memslot delete, fast zap and root reuse, the
 * invalidation retry, the FROZEN protocol on a mirror root, teardown, and
 * concurrent faults against a converter.
 *
 * Most cases run on the mock backend.  Mirror-root cases use "mmutest", a
 * test-only backend registered here: a TDX-like VM (shared bit, mirror
 * root, finalize) whose mirror ops only count, and check their context.
 * "mmutest1" is its SNP-like sibling: a shared bit but one root for both
 * kinds.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "internal.h"
#include "testutil.h"

#define MiB		(1ull << 20)
#define PAGE		CCVM_PAGE_SIZE
#define SLOT_SIZE	(4 * MiB)
#define SP_BYTES	4160	/* one table: 512 entries plus metadata, 64-aligned */

/* ---- the mirror-root test backend ---------------------------------------- */

static _Atomic long tb_link, tb_set, tb_remove, tb_free;
static _Atomic long tb_bad_context;	/* an op saw a level/gfn/lock it must not */
static _Atomic int tb_bump_seq;		/* gmem_prepare moves the seq once */

static bool mmu_lock_held_for_write(struct ccvm_vm *vm)
{
	/* A writer holds every shard of the big-reader lock, the first one too. */
	if (ccvm_rwlock_tryrdlock(&vm->mmu_lock.shard[0].l) == 0) {
		ccvm_rwlock_unlock(&vm->mmu_lock.shard[0].l);
		return false;
	}
	return true;
}

static void tb_get_caps(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
{
	(void)vm;
	caps->vm_type = 5;
	caps->memory_attributes = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
	caps->private_max_level = CCVM_LEVEL_4K;
	caps->shared_max_level = CCVM_LEVEL_2M;
	caps->has_shared_bit = true;
	caps->has_mirror_root = true;
	caps->needs_finalize = true;
}

static int tb_vm_finalize(struct ccvm_vm *vm)
{
	(void)vm;
	return 0;
}

static int tb_gmem_prepare(struct ccvm_vm *vm, uint64_t pfn, uint64_t gfn, int order)
{
	(void)pfn; (void)gfn; (void)order;
	if (atomic_exchange(&tb_bump_seq, 0)) {
		/* An invalidation elsewhere completes while the fault resolves. */
		ccvm_brlock_wrlock(&vm->mmu_lock);
		ccvm_mmu_invalidate_begin(vm);
		ccvm_mmu_invalidate_range_add(vm, 1ull << 30, (1ull << 30) + 1);
		ccvm_mmu_invalidate_end(vm);
		ccvm_brlock_wrunlock(&vm->mmu_lock);
	}
	return 0;
}

static int tb_link_private_spt(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t spt_pfn)
{
	(void)vm; (void)spt_pfn;
	/* The entry's level: 2 links a table of 4K leaves. */
	if (level < CCVM_LEVEL_2M || level > 5 ||
	    (gfn & ((1ull << (9 * (level - 1))) - 1)))
		tb_bad_context++;
	tb_link++;
	return 0;
}

static int tb_set_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
{
	(void)gfn; (void)pfn;
	if (level != CCVM_LEVEL_4K || !ccvm_vm_is_finalized(vm))
		tb_bad_context++;
	tb_set++;
	return 0;
}

static int tb_remove_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
{
	(void)gfn; (void)pfn;
	if (level != CCVM_LEVEL_4K || !mmu_lock_held_for_write(vm))
		tb_bad_context++;
	tb_remove++;
	return 0;
}

static int tb_free_private_spt(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t spt_pfn)
{
	(void)gfn; (void)level; (void)spt_pfn;
	if (!mmu_lock_held_for_write(vm))
		tb_bad_context++;
	tb_free++;
	return 0;
}

static const struct ccvm_backend_ops mmutest_ops = {
	.abi_version = CCVM_BACKEND_ABI_VERSION,
	.size = sizeof(struct ccvm_backend_ops),
	.name = "mmutest",
	.get_caps = tb_get_caps,
	.vm_finalize = tb_vm_finalize,
	.gmem_prepare = tb_gmem_prepare,
	.link_private_spt = tb_link_private_spt,
	.set_private_spte = tb_set_private_spte,
	.remove_private_spte = tb_remove_private_spte,
	.free_private_spt = tb_free_private_spt,
};

static void tb1_get_caps(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
{
	tb_get_caps(vm, caps);
	caps->has_mirror_root = false;
	caps->needs_finalize = false;
}

static const struct ccvm_backend_ops mmutest1_ops = {
	.abi_version = CCVM_BACKEND_ABI_VERSION,
	.size = sizeof(struct ccvm_backend_ops),
	.name = "mmutest1",
	.get_caps = tb1_get_caps,
};

/* ---- environment: one VM, one 4 MiB slot (VMM buffer + gmem), vCPUs -------- */

struct env {
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct ccvm_vcpu *v[2];
	uint8_t *buf;		/* shared backing of slot 0, 2M aligned */
	uint64_t sbit;		/* the VM's shared bit */
};

static void env_open(struct env *e, const char *backend, uint64_t gmem_size)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = backend);
	struct ccvm_memory_region r = {
		.slot = 0, .flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = 0,
		.memory_size = SLOT_SIZE,
	};
	int err, i;

	memset(e, 0, sizeof(*e));
	tb_link = tb_set = tb_remove = tb_free = tb_bad_context = 0;
	tb_bump_seq = 0;
	if (!strcmp(backend, mmutest_ops.name) || !strcmp(backend, mmutest1_ops.name)) {
		err = ccvm_backend_register(strcmp(backend, mmutest_ops.name) ?
					    &mmutest1_ops : &mmutest_ops);
		ck_assert(err == 0 || err == -EEXIST);
	}
	ck_assert_int_eq(ccvm_platform_create(&po, &e->p), 0);
	ck_assert_int_eq(ccvm_vm_create(e->p, NULL, &e->vm), 0);
	e->sbit = ccvm_vm_shared_bit(e->vm);
	e->buf = aligned_alloc(CCVM_HPAGE_2M_SIZE, SLOT_SIZE);
	ck_assert_ptr_nonnull(e->buf);
	for (i = 0; i < (int)(SLOT_SIZE / PAGE); i++)
		memset(e->buf + (uint64_t)i * PAGE, 0x40 + (i & 0x3f), PAGE);
	ck_assert_int_eq(ccvm_gmem_create(e->vm, gmem_size, 0, &e->g), 0);
	r.userspace_addr = e->buf;
	r.gmem = e->g;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(e->vm, &r), 0);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(ccvm_vcpu_create(e->vm, (uint32_t)i, &e->v[i]), 0);
}

static void env_close(struct env *e)
{
	int i;

	for (i = 0; i < 2; i++)
		if (e->v[i])
			ck_assert_int_eq(ccvm_vcpu_close(e->v[i]), 0);
	if (e->g)
		ck_assert_int_eq(ccvm_gmem_close(e->g), 0);
	ck_assert_int_eq(ccvm_vm_close(e->vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(e->p), 0);
	free(e->buf);
}

static uint64_t vm_ev(struct env *e, enum ccvm_event ev)
{
	struct ccvm_stats st = { .sz = sizeof(st) };

	ck_assert_int_eq(ccvm_vm_get_stats(e->vm, &st), 0);
	return st.events[ev];
}

static struct ccvm_stats platform_stats(struct env *e)
{
	struct ccvm_stats st = { .sz = sizeof(st) };

	ck_assert_int_eq(ccvm_platform_get_stats(e->p, &st), 0);
	return st;
}

static void set_attr(struct env *e, uint64_t gpa, uint64_t size, bool to_private)
{
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(e->vm, gpa, size,
			 to_private ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0), 0);
}

static int prefault(struct ccvm_vcpu *v, uint64_t gpa, uint64_t size)
{
	return ccvm_vcpu_pre_fault_memory(v, &gpa, &size);
}

static void prefault_all(struct ccvm_vcpu *v, uint64_t gpa, uint64_t size)
{
	uint64_t g = gpa, s = size;

	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &g, &s), 0);
	ck_assert_uint_eq(g, gpa + size);
	ck_assert_uint_eq(s, 0);
}

static int xlate(struct ccvm_vcpu *v, uint64_t gpa, struct ccvm_xlate *x)
{
	struct ccvm_vm *vm = ccvm_vcpu_vm(v);
	unsigned int shard;
	int ret;

	shard = ccvm_brlock_rdlock(&vm->mmu_lock);
	ret = ccvm_mmu_translate(v, gpa, x);
	ccvm_brlock_rdunlock(&vm->mmu_lock, shard);
	return ret;
}

static int lookup_level(struct env *e, uint64_t gpa)
{
	uint64_t pfn;
	int level;

	if (ccvm_vm_lookup_mapping(e->vm, gpa, &pfn, &level))
		return 0;
	return level;
}

static uint64_t gmem_pfn(struct env *e, uint64_t gpa)
{
	uint64_t pfn;

	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(e->vm, gpa >> CCVM_PAGE_SHIFT, &pfn), 0);
	return pfn;
}

static long refs(struct ccvm_root *root)
{
	return atomic_load(&root->refcount);
}

static bool invalid(struct ccvm_root *root)
{
	return atomic_load(&root->invalid);
}

static long nr_roots(struct env *e, bool mirror)
{
	struct ccvm_root *r;
	unsigned int shard;
	long n = 0;

	shard = ccvm_brlock_rdlock(&e->vm->mmu_lock);
	for (r = e->vm->mmu.roots; r; r = r->next)
		n += r->mirror == mirror;
	ccvm_brlock_rdunlock(&e->vm->mmu_lock, shard);
	return n;
}

/* ---- pre-fault: contents, kinds, errors ----------------------------------- */

START_TEST(test_prefault_private_from_gmem_shared_from_buffer)
{
	struct env e;
	struct ccvm_xlate x;
	uint8_t bytes[16], pattern[16];

	env_open(&e, "mock", SLOT_SIZE);
	set_attr(&e, 2 * MiB, 2 * PAGE, true);
	prefault_all(e.v[0], 0, SLOT_SIZE);

	/* Uniform shared 2M over an aligned buffer: one 2M leaf into the buffer. */
	ck_assert_int_eq(xlate(e.v[0], 5 * PAGE, &x), 0);
	ck_assert_int_eq(x.level, CCVM_LEVEL_2M);
	ck_assert(!x.is_private);
	ck_assert_ptr_eq(x.hva, e.buf + 5 * PAGE);
	ck_assert_uint_eq(x.pfn, UINT64_MAX);
	ck_assert_uint_eq(x.hva[0], 0x40 + 5);

	/* Private pages come from gmem, at 4K. */
	ck_assert_int_eq(xlate(e.v[0], 2 * MiB + PAGE, &x), 0);
	ck_assert(x.is_private);
	ck_assert_int_eq(x.level, CCVM_LEVEL_4K);
	ck_assert_uint_eq(x.pfn, gmem_pfn(&e, 2 * MiB + PAGE));
	memset(pattern, 0xc3, sizeof(pattern));
	memcpy(x.hva, pattern, sizeof(pattern));
	ccvm_page_mark_dirty(e.p, x.pfn);
	ck_assert_int_eq(ccvm_host_read_phys(e.p, x.pfn, 0, bytes, sizeof(bytes)), 0);
	ck_assert_mem_eq(bytes, pattern, sizeof(pattern));
	ck_assert_uint_ne(e.buf[2 * MiB + PAGE], 0xc3);

	/* The rest of that mixed 2M is shared, at 4K, in the buffer. */
	ck_assert_int_eq(xlate(e.v[0], 2 * MiB + 2 * PAGE, &x), 0);
	ck_assert(!x.is_private);
	ck_assert_int_eq(x.level, CCVM_LEVEL_4K);
	ck_assert_ptr_eq(x.hva, e.buf + 2 * MiB + 2 * PAGE);

	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_MAP_2M), 1);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_MAP_4K), 512);
	/* A gpa past the guest's width never aliases a mapped one. */
	ck_assert_int_eq(xlate(e.v[0], (1ull << 50) | 5 * PAGE, &x), -ENOENT);
	ck_assert_int_eq(lookup_level(&e, (1ull << 50) | 5 * PAGE), 0);
	/* The other vCPU shares the root: nothing new to map. */
	prefault_all(e.v[1], 0, SLOT_SIZE);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_MAP_4K), 512);
	ck_assert_ptr_eq(e.v[0]->root, e.v[1]->root);
	env_close(&e);
}
END_TEST

START_TEST(test_prefault_errors_and_partial_progress)
{
	struct ccvm_memory_region r2 = { .slot = 2, .guest_phys_addr = 8 * MiB,
					 .memory_size = 2 * MiB };
	struct ccvm_memory_region r3 = { .slot = 3, .flags = CCVM_MEM_GUEST_MEMFD,
					 .guest_phys_addr = 16 * MiB,
					 .memory_size = 2 * MiB, .gmem_offset = SLOT_SIZE };
	uint64_t gpa, size;
	uint8_t *buf2 = aligned_alloc(CCVM_HPAGE_2M_SIZE, 2 * MiB);
	struct env e;

	env_open(&e, "mock", SLOT_SIZE + 2 * MiB);
	r2.userspace_addr = buf2;
	r3.gmem = e.g;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(e.vm, &r2), 0);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(e.vm, &r3), 0);

	ck_assert_int_eq(prefault(e.v[0], 0, 0), -EINVAL);
	ck_assert_int_eq(prefault(e.v[0], 1, PAGE), -EINVAL);
	ck_assert_int_eq(prefault(e.v[0], 0, PAGE + 1), -EINVAL);
	ck_assert_int_eq(prefault(e.v[0], UINT64_MAX & ~(PAGE - 1), 2 * PAGE), -EINVAL);

	/* Runs into the hole after slot 0: stops there with progress, then -ENOENT. */
	gpa = SLOT_SIZE - 2 * PAGE;
	size = 4 * PAGE;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(e.v[0], &gpa, &size), 0);
	ck_assert_uint_eq(gpa, SLOT_SIZE);
	ck_assert_uint_eq(size, 2 * PAGE);
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(e.v[0], &gpa, &size), -ENOENT);
	ck_assert_uint_eq(gpa, SLOT_SIZE);
	ck_assert_uint_eq(size, 2 * PAGE);

	/* Private without gmem, shared without a VMM buffer: memory faults. */
	set_attr(&e, 8 * MiB, PAGE, true);
	ck_assert_int_eq(prefault(e.v[0], 8 * MiB, PAGE), -EFAULT);
	ck_assert_int_eq(prefault(e.v[0], 8 * MiB + PAGE, PAGE), 0);
	ck_assert_int_eq(prefault(e.v[0], 16 * MiB, PAGE), -EFAULT);
	set_attr(&e, 16 * MiB, PAGE, true);
	ck_assert_int_eq(prefault(e.v[0], 16 * MiB, PAGE), 0);
	ck_assert_int_eq(lookup_level(&e, 16 * MiB), CCVM_LEVEL_4K);
	env_close(&e);
	free(buf2);
}
END_TEST

START_TEST(test_five_level_tables_above_48_bits)
{
	const uint64_t base = 1ull << 50;
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .gpa_bits = 52);
	struct ccvm_memory_region r = { .slot = 0, .flags = CCVM_MEM_GUEST_MEMFD,
					.guest_phys_addr = base, .memory_size = 2 * MiB };
	uint8_t *buf = aligned_alloc(CCVM_HPAGE_2M_SIZE, 2 * MiB);
	struct ccvm_platform *p;
	struct ccvm_vcpu *v;
	struct ccvm_gmem *g;
	struct ccvm_vm *vm;
	struct ccvm_xlate x;
	uint64_t pfn;

	ck_assert_int_eq(ccvm_platform_create(NULL, &p), 0);
	ck_assert_int_eq(ccvm_vm_create(p, &vo, &vm), 0);
	ck_assert_int_eq(vm->mmu.root_level, 5);
	ck_assert_int_eq(ccvm_gmem_create(vm, 2 * MiB, 0, &g), 0);
	r.userspace_addr = buf;
	r.gmem = g;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &r), 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, base + 3 * PAGE, PAGE,
						       CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0), 0);
	prefault_all(v, base, 2 * MiB);
	ck_assert_int_eq(xlate(v, base + 3 * PAGE, &x), 0);
	ck_assert(x.is_private);
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, (base >> CCVM_PAGE_SHIFT) + 3, &pfn), 0);
	ck_assert_uint_eq(x.pfn, pfn);
	ck_assert_int_eq(xlate(v, base + 4 * PAGE, &x), 0);
	ck_assert_ptr_eq(x.hva, buf + 4 * PAGE);
	ck_assert_int_eq(xlate(v, 3 * PAGE, &x), -ENOENT);
	/* One table per level, 5 to 1. */
	ck_assert_uint_eq(atomic_load(&vm->mmu.nr_sp), 5);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	free(buf);
}
END_TEST

/* ---- hugepages and conversions ------------------------------------------------ */

START_TEST(test_hugepage_follows_attributes)
{
	struct env e;

	env_open(&e, "mock", SLOT_SIZE);
	prefault_all(e.v[0], 0, 2 * MiB);
	ck_assert_int_eq(lookup_level(&e, 0), CCVM_LEVEL_2M);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_MAP_2M), 1);

	/* One page turns private: the shared 2M leaf goes whole. */
	set_attr(&e, PAGE, PAGE, true);
	ck_assert_int_eq(lookup_level(&e, 0), 0);
	ck_assert_int_eq(lookup_level(&e, 100 * PAGE), 0);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ZAP), 1);
	prefault_all(e.v[0], 0, 2 * MiB);
	ck_assert_int_eq(lookup_level(&e, 0), CCVM_LEVEL_4K);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_MAP_4K), 512);

	/* All private: only the 511 shared leaves are zapped. */
	set_attr(&e, 0, 2 * MiB, true);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ZAP), 1 + 511);
	ck_assert_int_eq(lookup_level(&e, PAGE), CCVM_LEVEL_4K);
	prefault_all(e.v[0], 0, 2 * MiB);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_MAP_4K), 512 + 511);

	/* Back to shared: the emptied table goes, so the range maps 2M again. */
	set_attr(&e, 0, 2 * MiB, false);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ZAP), 1 + 511 + 512);
	prefault_all(e.v[0], 0, 2 * MiB);
	ck_assert_int_eq(lookup_level(&e, 77 * PAGE), CCVM_LEVEL_2M);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_MAP_2M), 2);
	env_close(&e);
}
END_TEST

START_TEST(test_conversion_zaps_old_kind_only)
{
	struct env e;
	struct ccvm_xlate x;

	env_open(&e, "mock", SLOT_SIZE);
	set_attr(&e, 0, PAGE, true);
	prefault_all(e.v[0], 0, 2 * PAGE);
	ck_assert_int_eq(xlate(e.v[0], 0, &x), 0);
	ck_assert(x.is_private);
	ck_assert_int_eq(xlate(e.v[0], PAGE, &x), 0);
	ck_assert(!x.is_private);

	/* To shared over both: the private leaf goes, the shared one stays. */
	set_attr(&e, 0, 2 * PAGE, false);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ZAP), 1);
	ck_assert_int_eq(xlate(e.v[0], 0, &x), -ENOENT);
	ck_assert_int_eq(xlate(e.v[0], PAGE, &x), 0);

	/* To private over both: now the shared one goes. */
	prefault_all(e.v[0], 0, PAGE);
	set_attr(&e, 0, 2 * PAGE, true);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ZAP), 3);
	ck_assert_int_eq(xlate(e.v[0], 0, &x), -ENOENT);
	ck_assert_int_eq(xlate(e.v[0], PAGE, &x), -ENOENT);
	prefault_all(e.v[0], 0, 2 * PAGE);
	ck_assert_int_eq(xlate(e.v[0], PAGE, &x), 0);
	ck_assert(x.is_private);
	ck_assert_uint_eq(x.pfn, gmem_pfn(&e, PAGE));
	env_close(&e);
}
END_TEST

START_TEST(test_punch_then_refault)
{
	struct env e;
	struct ccvm_xlate x;

	env_open(&e, "mock", SLOT_SIZE);
	set_attr(&e, 0, 2 * PAGE, true);
	prefault_all(e.v[0], 0, 2 * PAGE);
	ck_assert_int_eq(xlate(e.v[0], 0, &x), 0);
	/* As a guest write: the page must be cleared before reuse. */
	memset(x.hva, 0x77, PAGE);
	ccvm_page_mark_dirty(e.p, x.pfn);

	ck_assert_int_eq(ccvm_gmem_fallocate(e.g, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					     0, PAGE), 0);
	ck_assert_int_eq(lookup_level(&e, 0), 0);
	ck_assert_int_eq(lookup_level(&e, PAGE), CCVM_LEVEL_4K);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ZAP), 1);

	prefault_all(e.v[0], 0, PAGE);
	ck_assert_int_eq(xlate(e.v[0], 0, &x), 0);
	ck_assert_uint_eq(x.pfn, gmem_pfn(&e, 0));
	ck_assert_uint_eq(x.hva[0], 0);
	ck_assert_uint_eq(x.hva[PAGE - 1], 0);
	env_close(&e);
}
END_TEST

START_TEST(test_memslot_delete_zaps_only_that_slot)
{
	struct ccvm_memory_region r2 = { .slot = 2, .guest_phys_addr = 8 * MiB,
					 .memory_size = 2 * MiB };
	uint8_t *buf2 = aligned_alloc(CCVM_HPAGE_2M_SIZE, 2 * MiB);
	struct env e;

	env_open(&e, "mock", SLOT_SIZE);
	r2.userspace_addr = buf2;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(e.vm, &r2), 0);
	set_attr(&e, 0, PAGE, true);
	prefault_all(e.v[0], 0, 4 * PAGE);
	prefault_all(e.v[0], 8 * MiB, 2 * MiB);
	ck_assert_int_eq(lookup_level(&e, 8 * MiB), CCVM_LEVEL_2M);

	r2.memory_size = 0;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(e.vm, &r2), 0);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ZAP), 1);
	ck_assert_int_eq(lookup_level(&e, 8 * MiB), 0);
	ck_assert_int_eq(lookup_level(&e, 0), CCVM_LEVEL_4K);
	ck_assert_int_eq(lookup_level(&e, 3 * PAGE), CCVM_LEVEL_4K);
	ck_assert_int_eq(prefault(e.v[0], 8 * MiB, PAGE), -ENOENT);
	env_close(&e);
	free(buf2);
}
END_TEST

START_TEST(test_vm_zap_gfn_range_service)
{
	struct env e;
	uint64_t invalidations;

	env_open(&e, "mock", SLOT_SIZE);
	set_attr(&e, 0, 2 * PAGE, true);
	prefault_all(e.v[0], 0, SLOT_SIZE);
	invalidations = vm_ev(&e, CCVM_EV_INVALIDATE);
	ccvm_vm_zap_gfn_range(e.vm, 1, 2);
	ck_assert_int_eq(lookup_level(&e, 0), CCVM_LEVEL_4K);
	ck_assert_int_eq(lookup_level(&e, PAGE), 0);
	/* A 2M leaf partly inside the range goes whole. */
	ccvm_vm_zap_gfn_range(e.vm, 600, 601);
	ck_assert_int_eq(lookup_level(&e, 512 * PAGE), 0);
	ck_assert_int_eq(lookup_level(&e, 1023 * PAGE), 0);
	ck_assert_int_eq(lookup_level(&e, 2 * PAGE), CCVM_LEVEL_4K);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_INVALIDATE), invalidations + 2);
	env_close(&e);
}
END_TEST

/* ---- the invalidation retry (docs/semantics.md 2.3) -------------------------- */

START_TEST(test_fault_retries_inside_in_progress_range)
{
	struct ccvm_fault_exit ex;
	struct env e;

	env_open(&e, "mock", SLOT_SIZE);
	ccvm_brlock_wrlock(&e.vm->mmu_lock);
	ccvm_mmu_invalidate_begin(e.vm);
	ccvm_mmu_invalidate_range_add(e.vm, 10, 11);
	ccvm_brlock_wrunlock(&e.vm->mmu_lock);

	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 10 * PAGE, false, &ex), CCVM_PF_RETRY);
	ck_assert_int_eq(lookup_level(&e, 10 * PAGE), 0);
	/* Same 2M as the range: a 2M leaf would cover it, so it waits too. */
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 20 * PAGE, false, &ex), CCVM_PF_RETRY);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_FAULT_RETRY), 2);
	/* Outside it, faults go on. */
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 700 * PAGE, false, &ex), 0);
	ck_assert_int_eq(lookup_level(&e, 700 * PAGE), CCVM_LEVEL_2M);

	ccvm_brlock_wrlock(&e.vm->mmu_lock);
	ccvm_mmu_invalidate_end(e.vm);
	ccvm_brlock_wrunlock(&e.vm->mmu_lock);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 10 * PAGE, false, &ex), 0);
	ck_assert_int_eq(lookup_level(&e, 10 * PAGE), CCVM_LEVEL_2M);

	/* In progress with no range yet: the locked check refuses everything. */
	ccvm_brlock_wrlock(&e.vm->mmu_lock);
	ccvm_mmu_invalidate_begin(e.vm);
	ccvm_brlock_wrunlock(&e.vm->mmu_lock);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 3 * MiB, false, &ex), CCVM_PF_RETRY);
	ccvm_brlock_wrlock(&e.vm->mmu_lock);
	ccvm_mmu_invalidate_range_add(e.vm, 0, 1);
	ccvm_mmu_invalidate_end(e.vm);
	ccvm_brlock_wrunlock(&e.vm->mmu_lock);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 3 * MiB, false, &ex), 0);
	ck_assert(ccvm_vm_usable(e.vm));
	env_close(&e);
}
END_TEST

START_TEST(test_fault_retries_when_seq_moves)
{
	struct ccvm_fault_exit ex;
	struct env e;

	env_open(&e, "mmutest", SLOT_SIZE);
	ck_assert_int_eq(ccvm_vm_finalize(e.vm), 0);
	set_attr(&e, 0, PAGE, true);
	tb_bump_seq = 1;
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 0, true, &ex), CCVM_PF_RETRY);
	ck_assert_int_eq(tb_bump_seq, 0);
	ck_assert_int_eq(lookup_level(&e, 0), 0);
	ck_assert_int_eq(tb_set, 0);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 0, true, &ex), 0);
	ck_assert_int_eq(lookup_level(&e, 0), CCVM_LEVEL_4K);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_FAULT_RETRY), 1);
	env_close(&e);
}
END_TEST

START_TEST(test_fault_exits)
{
	struct ccvm_fault_exit ex;
	struct env e;

	env_open(&e, "mmutest", SLOT_SIZE);
	ck_assert_int_eq(ccvm_vm_finalize(e.vm), 0);
	ck_assert_uint_ne(e.sbit, 0);

	/* Private access to a shared gfn: an exit, never a conversion. */
	memset(&ex, 0, sizeof(ex));
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 3 * PAGE, false, &ex), CCVM_PF_EXIT);
	ck_assert_uint_eq(ex.reason, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(ex.gpa, 3 * PAGE);
	ck_assert_uint_eq(ex.size, PAGE);
	ck_assert_uint_eq(ex.flags, CCVM_MEMORY_EXIT_FLAG_PRIVATE);

	/* Shared access to a private gfn: gpa without the shared bit. */
	set_attr(&e, 3 * PAGE, PAGE, true);
	memset(&ex, 0, sizeof(ex));
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], e.sbit | 3 * PAGE, false, &ex),
			 CCVM_PF_EXIT);
	ck_assert_uint_eq(ex.reason, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(ex.gpa, 3 * PAGE);
	ck_assert_uint_eq(ex.flags, 0);
	ck_assert_int_eq(vm_ev(&e, CCVM_EV_MAP_4K), 0);

	/* No slot: MMIO with the raw gpa. */
	memset(&ex, 0, sizeof(ex));
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], e.sbit | 64 * MiB, false, &ex),
			 CCVM_PF_EXIT);
	ck_assert_uint_eq(ex.reason, CCVM_EXIT_MMIO);
	ck_assert_uint_eq(ex.gpa, e.sbit | 64 * MiB);

	/* Both aliases of one slot, each in its own root. */
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 3 * PAGE, true, &ex), 0);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], e.sbit | 4 * PAGE, true, &ex), 0);
	ck_assert_int_eq(lookup_level(&e, 3 * PAGE), CCVM_LEVEL_4K);
	ck_assert_int_eq(lookup_level(&e, e.sbit | 3 * PAGE), 0);
	ck_assert_int_eq(lookup_level(&e, e.sbit | 4 * PAGE), CCVM_LEVEL_4K);
	ck_assert_int_eq(lookup_level(&e, 4 * PAGE), 0);
	ck_assert_int_eq(tb_set, 1);
	ck_assert_int_eq(tb_link, 3);		/* levels 4, 3 and 2 of the mirror */
	ck_assert_int_eq(tb_bad_context, 0);
	env_close(&e);
}
END_TEST

START_TEST(test_one_root_with_a_shared_bit)
{
	struct ccvm_fault_exit ex;
	struct ccvm_xlate x;
	struct env e;

	env_open(&e, "mmutest1", SLOT_SIZE);
	ck_assert_uint_ne(e.sbit, 0);
	set_attr(&e, 0, PAGE, true);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 0, true, &ex), 0);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], e.sbit | PAGE, true, &ex), 0);
	ck_assert_ptr_null(e.v[0]->mirror_root);
	ck_assert_int_eq(nr_roots(&e, false), 1);

	/* Both kinds in one root; each alias finds only its own kind. */
	ck_assert_int_eq(xlate(e.v[0], 0, &x), 0);
	ck_assert(x.is_private);
	ck_assert_int_eq(xlate(e.v[0], e.sbit, &x), -ENOENT);
	ck_assert_int_eq(xlate(e.v[0], e.sbit | PAGE, &x), 0);
	ck_assert(!x.is_private);
	ck_assert_ptr_eq(x.hva, e.buf + PAGE);
	ck_assert_int_eq(xlate(e.v[0], PAGE, &x), -ENOENT);
	ck_assert_int_eq(lookup_level(&e, 0), CCVM_LEVEL_4K);
	ck_assert_int_eq(lookup_level(&e, e.sbit), 0);
	ck_assert_int_eq(lookup_level(&e, e.sbit | PAGE), CCVM_LEVEL_4K);

	/* The wrong alias is a memory fault, not a mapping. */
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], e.sbit, true, &ex), CCVM_PF_EXIT);
	ck_assert_uint_eq(ex.reason, CCVM_EXIT_MEMORY_FAULT);

	/* The leaf's private bit picks what a filtered zap removes. */
	set_attr(&e, 0, 2 * PAGE, true);
	ck_assert_int_eq(lookup_level(&e, 0), CCVM_LEVEL_4K);
	ck_assert_int_eq(lookup_level(&e, e.sbit | PAGE), 0);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ZAP), 1);
	set_attr(&e, 0, 2 * PAGE, false);
	ck_assert_int_eq(lookup_level(&e, 0), 0);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ZAP), 2);
	env_close(&e);
}
END_TEST

/* Expected warnings are counted here instead of printed. */
static _Atomic int warnings;

static void count_warnings(enum ccvm_log_level level, const char *msg, void *ctx)
{
	(void)msg; (void)ctx;
	if (level == CCVM_LOG_WARN)
		warnings++;
}

/* ---- mirror root: FROZEN protocol, busy, removal, teardown ------------------- */

START_TEST(test_mirror_install_restores_on_failure)
{
	struct ccvm_fault_exit ex;
	struct ccvm_stats before;
	struct ccvm_xlate x;
	struct env e;

	env_open(&e, "mmutest", SLOT_SIZE);
	ck_assert_int_eq(ccvm_vm_finalize(e.vm), 0);
	set_attr(&e, 0, 4 * PAGE, true);
	ck_assert_int_eq(ccvm_mmu_reload(e.v[0]), 0);
	before = platform_stats(&e);

	/* Busy linking a table: unwound (external page back), fault retried. */
	ck_assert_int_eq(ccvm_inject_op_failure(e.p, "link_private_spt", 1, -EBUSY, 1), 0);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 0, true, &ex), CCVM_PF_RETRY);
	ck_assert_int_eq(tb_link, 0);
	ck_assert_uint_eq(atomic_load(&e.vm->mmu.nr_sp), 2);	/* the two roots */
	/* Only gmem's page is still out; the external page came back. */
	ck_assert_uint_eq(platform_stats(&e).free_pages, before.free_pages - 1);

	/* Busy on the leaf: the entry is not left FROZEN. */
	ck_assert_int_eq(ccvm_inject_op_failure(e.p, "set_private_spte", 1, -EBUSY, 1), 0);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 0, true, &ex), CCVM_PF_RETRY);
	ck_assert_int_eq(tb_link, 3);
	ck_assert_int_eq(tb_set, 0);
	ck_assert_int_eq(xlate(e.v[0], 0, &x), -ENOENT);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], 0, true, &ex), 0);
	ck_assert_int_eq(xlate(e.v[0], 0, &x), 0);
	ck_assert_uint_eq(x.pfn, gmem_pfn(&e, 0));
	ck_assert_int_eq(tb_set, 1);

	/* Another error is the fault's result, and also restores. */
	ck_assert_int_eq(ccvm_inject_op_failure(e.p, "set_private_spte", 1, -ENOSPC, 1), 0);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], PAGE, true, &ex), -ENOSPC);
	ck_assert_int_eq(xlate(e.v[0], PAGE, &x), -ENOENT);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], PAGE, true, &ex), 0);

	/* The fault path's retry loop runs busy installs again by itself. */
	ck_assert_int_eq(ccvm_inject_op_failure(e.p, "set_private_spte", 1, -EBUSY, 3), 0);
	prefault_all(e.v[0], 2 * PAGE, PAGE);
	ck_assert_int_eq(xlate(e.v[0], 2 * PAGE, &x), 0);
	ck_assert_int_eq(ccvm_op_calls(e.p, "set_private_spte"), 2 + 2 + 4);
	ck_assert_int_eq(tb_bad_context, 0);
	env_close(&e);
}
END_TEST

START_TEST(test_mirror_remove_failure_bugs_vm_and_leaks)
{
	struct ccvm_fault_exit ex;
	struct env e;
	uint64_t leaked;
	int ret;

	env_open(&e, "mmutest", SLOT_SIZE);
	ck_assert_int_eq(ccvm_vm_finalize(e.vm), 0);
	set_attr(&e, 0, 2 * PAGE, true);
	prefault_all(e.v[0], 0, 2 * PAGE);
	leaked = platform_stats(&e).leaked_pages;

	ck_assert_int_eq(ccvm_inject_op_failure(e.p, "remove_private_spte", 1, -EIO, 1), 0);
	ccvm_set_log(count_warnings, NULL);
	ret = ccvm_vm_set_memory_attributes(e.vm, 0, PAGE, 0, 0);
	ck_assert(ret == 0 || ret == -EIO);
	ck_assert(ccvm_vm_is_bugged(e.vm));
	ck_assert_int_ge(warnings, 1);
	ccvm_set_log(NULL, NULL);
	ck_assert_uint_eq(platform_stats(&e).leaked_pages, leaked + 1);
	ck_assert_int_eq(lookup_level(&e, 0), 0);
	ck_assert_int_eq(ccvm_mmu_page_fault(e.v[0], PAGE, true, &ex), -EIO);
	ck_assert_int_eq(prefault(e.v[0], PAGE, PAGE), -EIO);
	env_close(&e);
}
END_TEST

START_TEST(test_mirror_teardown_frees_everything)
{
	struct ccvm_stats st = { .sz = sizeof(st) };
	uint64_t free_pages;
	struct env e;

	env_open(&e, "mmutest", SLOT_SIZE);
	free_pages = platform_stats(&e).free_pages;
	ck_assert_int_eq(prefault(e.v[0], 0, PAGE), -EOPNOTSUPP);
	ck_assert_int_eq(ccvm_vm_finalize(e.vm), 0);
	set_attr(&e, 0, SLOT_SIZE, true);
	prefault_all(e.v[0], 0, SLOT_SIZE);
	set_attr(&e, 0, 2 * MiB, false);
	prefault_all(e.v[1], 0, SLOT_SIZE);
	ck_assert_int_eq(tb_set, 1024);
	ck_assert_int_eq(tb_remove, 512);
	ck_assert_int_eq(tb_link, 4);		/* 4, 3, and two at level 2 */
	ck_assert_int_eq(tb_free, 0);		/* never while the VM runs */

	/* Close the gmem first (zaps private), then everything else. */
	ck_assert_int_eq(ccvm_gmem_close(e.g), 0);
	e.g = NULL;
	ck_assert_int_eq(tb_remove, 1024);
	ck_assert_int_eq(ccvm_vcpu_close(e.v[0]), 0);
	ck_assert_int_eq(ccvm_vcpu_close(e.v[1]), 0);
	e.v[0] = e.v[1] = NULL;
	ck_assert_int_eq(ccvm_vm_close(e.vm), 0);
	ck_assert_int_eq(tb_free, tb_link);
	ck_assert_int_eq(tb_bad_context, 0);
	ck_assert_int_eq(ccvm_platform_get_stats(e.p, &st), 0);
	ck_assert_uint_eq(st.free_pages, free_pages);
	ck_assert_uint_eq(st.leaked_pages, 0);
	ck_assert_uint_eq(st.events[CCVM_EV_ROOT_ALLOC], st.events[CCVM_EV_ROOT_FREE]);
	ck_assert_uint_eq(st.events[CCVM_EV_SP_ALLOC], st.events[CCVM_EV_SP_FREE]);
	ck_assert_int_eq(ccvm_platform_destroy(e.p), 0);
	free(e.buf);
}
END_TEST

START_TEST(test_mirror_teardown_leaks_unreclaimable_tables)
{
	struct ccvm_stats st = { .sz = sizeof(st) };
	uint64_t free_pages;
	struct env e;

	env_open(&e, "mmutest", SLOT_SIZE);
	free_pages = platform_stats(&e).free_pages;
	ck_assert_int_eq(ccvm_vm_finalize(e.vm), 0);
	set_attr(&e, 0, PAGE, true);
	prefault_all(e.v[0], 0, PAGE);
	ck_assert_int_eq(ccvm_inject_op_failure(e.p, "free_private_spt", 1, -EIO, 1), 0);
	ccvm_set_log(count_warnings, NULL);
	ck_assert_int_eq(ccvm_vcpu_close(e.v[0]), 0);
	ck_assert_int_eq(ccvm_vcpu_close(e.v[1]), 0);
	e.v[0] = e.v[1] = NULL;
	ck_assert_int_eq(ccvm_gmem_close(e.g), 0);
	e.g = NULL;
	ck_assert_int_eq(ccvm_vm_close(e.vm), 0);
	ck_assert_int_eq(ccvm_platform_get_stats(e.p, &st), 0);
	ck_assert_uint_eq(st.leaked_pages, 1);
	ck_assert_uint_eq(st.free_pages, free_pages - 1);
	ck_assert_int_eq(warnings, 1);
	ccvm_set_log(NULL, NULL);
	ck_assert_int_eq(ccvm_platform_destroy(e.p), 0);
	free(e.buf);
}
END_TEST

/* ---- fast zap and roots ---------------------------------------------------------- */

static void memslot_churn(struct env *e, uint8_t *buf)
{
	struct ccvm_memory_region r = { .slot = 9, .guest_phys_addr = 64 * MiB,
					.memory_size = PAGE, .userspace_addr = buf };

	ck_assert_int_eq(ccvm_vm_set_user_memory_region(e->vm, &r), 0);
	r.memory_size = 0;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(e->vm, &r), 0);
}

START_TEST(test_fast_zap_keeps_mirror_root)
{
	uint8_t *page = aligned_alloc(PAGE, PAGE);
	struct ccvm_root *mirror, *direct;
	struct env e;
	uint64_t allocs, mapped;
	int i;

	env_open(&e, "mmutest", SLOT_SIZE);
	ck_assert_int_eq(ccvm_vm_finalize(e.vm), 0);
	set_attr(&e, 0, 2 * PAGE, true);
	prefault_all(e.v[0], 0, 4 * PAGE);
	prefault_all(e.v[1], 0, 4 * PAGE);
	mirror = e.v[0]->mirror_root;
	direct = e.v[0]->root;
	ck_assert_ptr_eq(e.v[1]->mirror_root, mirror);
	ck_assert_ptr_eq(e.v[1]->root, direct);
	ck_assert_int_eq(refs(mirror), 3);
	ck_assert_int_eq(refs(direct), 3);
	allocs = vm_ev(&e, CCVM_EV_ROOT_ALLOC);
	mapped = vm_ev(&e, CCVM_EV_MAP_4K);

	for (i = 0; i < 1000; i++) {
		ck_assert_int_eq(ccvm_vm_force_generation_wrap(e.vm), 0);
		memslot_churn(&e, page);
		ck_assert(invalid(e.v[0]->root));
		ck_assert(!invalid(mirror));
		/* The invalid root still maps what it mapped until the vCPUs reload. */
		prefault_all(e.v[0], 0, 4 * PAGE);
		prefault_all(e.v[1], 0, 4 * PAGE);
		ck_assert_ptr_eq(e.v[0]->mirror_root, mirror);
		ck_assert_ptr_eq(e.v[1]->root, e.v[0]->root);
		ck_assert_int_eq(refs(mirror), 3);
		ck_assert_int_eq(refs(e.v[0]->root), 3);
		ck_assert_int_eq(nr_roots(&e, true), 1);
		ck_assert_int_eq(nr_roots(&e, false), 1);
	}
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_FAST_ZAP), 1000);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ROOT_ALLOC), allocs + 1000);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ROOT_FREE), 1000);
	/* Shared pages are mapped again in each new direct root, private ones stay. */
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_MAP_4K), mapped + 2 * 1000);
	ck_assert_int_eq(tb_set, 2);
	ck_assert_int_eq(tb_remove, 0);
	env_close(&e);
	free(page);
}
END_TEST

START_TEST(test_fast_zap_without_vcpus_frees_at_once)
{
	uint8_t *page = aligned_alloc(PAGE, PAGE);
	struct env e;

	env_open(&e, "mock", SLOT_SIZE);
	prefault_all(e.v[0], 0, SLOT_SIZE);
	ccvm_mmu_vcpu_unload(e.v[0]);
	ck_assert_int_eq(nr_roots(&e, false), 1);	/* the MMU's reference */
	ck_assert_int_eq(ccvm_vm_force_generation_wrap(e.vm), 0);
	memslot_churn(&e, page);
	ck_assert_int_eq(nr_roots(&e, false), 0);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ROOT_FREE), 1);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_ZAP), 2);
	ck_assert_uint_eq(atomic_load(&e.vm->mmu.nr_sp), 0);
	env_close(&e);
	free(page);
}
END_TEST

START_TEST(test_page_table_memory_per_page)
{
	const uint64_t size = 32 * MiB, pages = size / PAGE;
	struct ccvm_memory_region r = { .slot = 1, .flags = CCVM_MEM_GUEST_MEMFD,
					.guest_phys_addr = 1ull << 30, .memory_size = size };
	struct ccvm_gmem *g;
	uint64_t before;
	struct env e;

	env_open(&e, "mock", SLOT_SIZE);
	ck_assert_int_eq(ccvm_gmem_create(e.vm, size, 0, &g), 0);
	r.gmem = g;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(e.vm, &r), 0);
	set_attr(&e, 1ull << 30, size, true);
	ck_assert_int_eq(ccvm_mmu_reload(e.v[0]), 0);
	before = platform_stats(&e).model_bytes;
	prefault_all(e.v[0], 1ull << 30, size);
	ck_assert_uint_eq(vm_ev(&e, CCVM_EV_MAP_4K), pages);
	/* About 8 bytes a page for the leaves plus the tables above. */
	ck_assert_uint_le(atomic_load(&e.vm->mmu.nr_sp) * SP_BYTES, pages * 10);
	/* The whole model (page tables and gmem's page cache): at most 32. */
	ck_assert_uint_le(platform_stats(&e).model_bytes - before, pages * 32);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	env_close(&e);
}
END_TEST

/* ---- concurrency: two faulting vCPUs and a converter (TSan) ---------------- */

#define RACE_CONVERSIONS	300
#define RACE_AHEAD		2	/* pre-faults a faulter runs per conversion */

/*
 * The converter and the faulters pace each other by events, not by yields:
 * after each conversion the converter waits until a pre-fault finished
 * (one that overlapped the conversion or came after it), and a faulter
 * runs at most RACE_AHEAD pre-faults per conversion published so far, a
 * few more once the converter is done (conversions = RACE_CONVERSIONS + 1).
 * Both loops are bounded, neither starves the other, and faults race
 * conversions however the OS runs the threads.
 */
struct race {
	struct env *e;
	struct tu_event conversions;
	struct tu_event faults;
	_Atomic int errors;
};

struct race_faulter_arg {
	struct race *r;
	int vcpu;
};

static void *race_faulter(void *arg)
{
	struct race_faulter_arg *a = arg;
	struct race *r = a->r;
	uint64_t i, conv;

	for (i = 0;; i++) {
		uint64_t gpa = 0, size = SLOT_SIZE;
		int ret;

		conv = tu_event_wait(&r->conversions, i / RACE_AHEAD);
		if (conv > RACE_CONVERSIONS && i >= 3)
			break;
		ret = ccvm_vcpu_pre_fault_memory(r->e->v[a->vcpu], &gpa, &size);
		/* A VM with a shared bit picks the alias before the fault: a racing
		 * conversion may make that a memory fault, never a wrong mapping. */
		if (ret && !(ret == -EFAULT && r->e->sbit))
			atomic_fetch_add(&r->errors, 1);
		tu_event_add(&r->faults, 1);
	}
	return NULL;
}

/*
 * Converts random ranges.  Every conversion moves the invalidation seq, so
 * a converter that never waits would starve the faults (as in KVM) instead
 * of racing with them.
 */
static void *race_converter(void *arg)
{
	struct race *r = arg;
	unsigned int seed = 12345;
	uint64_t f;
	int i;

	for (i = 0; i < RACE_CONVERSIONS; i++) {
		uint64_t first = (uint64_t)(rand_r(&seed) % 1024) * PAGE;
		uint64_t len = (uint64_t)(1 + rand_r(&seed) % 64) * PAGE;

		if (first + len > SLOT_SIZE)
			len = SLOT_SIZE - first;
		f = tu_event_get(&r->faults);
		if (ccvm_vm_set_memory_attributes(r->e->vm, first, len,
						  (rand_r(&seed) & 1) ?
						  CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0))
			atomic_fetch_add(&r->errors, 1);
		tu_event_add(&r->conversions, 1);
		tu_event_wait(&r->faults, f + 1);
	}
	tu_event_add(&r->conversions, 1);	/* done */
	return NULL;
}

static void race_check_mappings(struct env *e)
{
	uint64_t gfn;
	int alias;

	for (gfn = 0; gfn < SLOT_SIZE / PAGE; gfn++) {
		bool priv = ccvm_vm_gfn_is_private(e->vm, gfn);

		/* Each alias (one without a shared bit) maps only the attribute's kind. */
		for (alias = 0; alias < (e->sbit ? 2 : 1); alias++) {
			uint64_t gpa = (gfn * PAGE) | (alias ? e->sbit : 0);
			struct ccvm_xlate x;

			if (xlate(e->v[0], gpa, &x))
				continue;
			ck_assert_msg(x.is_private == priv, "gfn %llu mapped %s, attribute %s",
				      (unsigned long long)gfn,
				      x.is_private ? "private" : "shared",
				      priv ? "private" : "shared");
			if (priv)
				ck_assert_uint_eq(x.pfn, gmem_pfn(e, gfn * PAGE));
			else
				ck_assert_ptr_eq(x.hva, e->buf + gfn * PAGE);
		}
	}
}

static void race_run(const char *backend)
{
	struct race_faulter_arg a[2];
	struct race r;
	pthread_t t[3];
	struct env e;
	int i;

	env_open(&e, backend, SLOT_SIZE);
	if (e.sbit)
		ck_assert_int_eq(ccvm_vm_finalize(e.vm), 0);
	r.e = &e;
	tu_event_init(&r.conversions);
	tu_event_init(&r.faults);
	atomic_init(&r.errors, 0);
	ck_assert_int_eq(pthread_create(&t[2], NULL, race_converter, &r), 0);
	for (i = 0; i < 2; i++) {
		a[i].r = &r;
		a[i].vcpu = i;
		ck_assert_int_eq(pthread_create(&t[i], NULL, race_faulter, &a[i]), 0);
	}
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	tu_event_destroy(&r.conversions);
	tu_event_destroy(&r.faults);
	ck_assert_int_eq(atomic_load(&r.errors), 0);
	ck_assert(ccvm_vm_usable(e.vm));
	ck_assert_int_eq(atomic_load(&e.vm->mmu.invalidate_in_progress), 0);
	/*
	 * How often a fault found its range in flux depends on scheduling and
	 * is not asserted; the mappings must agree with the attributes anyway.
	 */
	race_check_mappings(&e);
	prefault_all(e.v[1], 0, SLOT_SIZE);
	race_check_mappings(&e);
	env_close(&e);
}

START_TEST(test_concurrent_faults_and_conversions_mock)
{
	race_run("mock");
}
END_TEST

START_TEST(test_concurrent_faults_and_conversions_mirror)
{
	race_run("mmutest");
	/* Every mirror leaf installed was removed exactly once by teardown. */
	ck_assert_int_eq(tb_set, tb_remove);
	ck_assert_int_eq(tb_link, tb_free);
	ck_assert_int_eq(tb_bad_context, 0);
}
END_TEST

Suite *mmu_suite(void)
{
	Suite *s = suite_create("mmu");
	TCase *tc = tcase_create("prefault");

	tcase_add_test(tc, test_prefault_private_from_gmem_shared_from_buffer);
	tcase_add_test(tc, test_prefault_errors_and_partial_progress);
	tcase_add_test(tc, test_page_table_memory_per_page);
	tcase_add_test(tc, test_five_level_tables_above_48_bits);
	suite_add_tcase(s, tc);

	tc = tcase_create("zap");
	tcase_add_test(tc, test_hugepage_follows_attributes);
	tcase_add_test(tc, test_conversion_zaps_old_kind_only);
	tcase_add_test(tc, test_punch_then_refault);
	tcase_add_test(tc, test_memslot_delete_zaps_only_that_slot);
	tcase_add_test(tc, test_vm_zap_gfn_range_service);
	suite_add_tcase(s, tc);

	tc = tcase_create("fault");
	tcase_add_test(tc, test_fault_retries_inside_in_progress_range);
	tcase_add_test(tc, test_fault_retries_when_seq_moves);
	tcase_add_test(tc, test_fault_exits);
	tcase_add_test(tc, test_one_root_with_a_shared_bit);
	suite_add_tcase(s, tc);

	tc = tcase_create("mirror");
	tcase_add_test(tc, test_mirror_install_restores_on_failure);
	tcase_add_test(tc, test_mirror_remove_failure_bugs_vm_and_leaks);
	tcase_add_test(tc, test_mirror_teardown_frees_everything);
	tcase_add_test(tc, test_mirror_teardown_leaks_unreclaimable_tables);
	suite_add_tcase(s, tc);

	tc = tcase_create("roots");
	tcase_add_test(tc, test_fast_zap_keeps_mirror_root);
	tcase_add_test(tc, test_fast_zap_without_vcpus_frees_at_once);
	suite_add_tcase(s, tc);

	tc = tcase_create("concurrency");
	tcase_add_test(tc, test_concurrent_faults_and_conversions_mock);
	tcase_add_test(tc, test_concurrent_faults_and_conversions_mirror);
	suite_add_tcase(s, tc);
	return s;
}
