/* SPDX-License-Identifier: MIT */
/*
 * Tests for the invariant checker (lib/invariants.c, backends/tdx/
 * tdx-check.c, backends/snp/snp-check.c): a healthy VM passes, and each
 * state below, built on purpose behind the library's back through
 * internal.h, the MMU test hook or raw hardware calls, breaks exactly one
 * invariant, which must be the number reported.  Each case restores what it
 * broke where it can, so teardown runs on a sound state.
 *
 * Not built here: I24 (the simulated RMPUPDATE refuses to make a 4K entry
 * inside a 2M one, so no call can produce that state) and the TDX I13 side
 * "KVM released the HKID but the TD is keyed" (only the KVM side's private
 * state could say so).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "internal.h"
#include "conformance.h"
#include "snapshot.h"
#include "../backends/snp/snp.h"
#include "../backends/tdx/tdx.h"

#define MIB		(1ull << 20)
#define PG		CCVM_PAGE_SIZE
#define FILE_SIZE	(8 * MIB)	/* slot 0 binds the first half */
#define SLOT0_SIZE	(4 * MIB)
#define SLOT1_GPA	(8 * MIB + PG)	/* plain, sticks out of its 2M pages */
#define SLOT1_SIZE	MIB
#define PRIVATE_SIZE	MIB		/* [0, 1M) private, the rest shared */

static struct {
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct ccvm_vcpu *v;
	uint8_t *buf;			/* VMM memory: slot 0, then slot 1 */
	uint64_t sbit;
} F;

static struct ccvm_invariant_report check(void)
{
	return cf_invariants(F.vm);
}

static void assert_clean_report(void)
{
	struct ccvm_invariant_report r = check();

	ck_assert_msg(r.invariant == 0, "I%u: %s", r.invariant, r.msg);
	ck_assert_str_eq(r.msg, "");
	ck_assert_uint_eq(r.gfn, UINT64_MAX);
	ck_assert_uint_eq(r.pfn, UINT64_MAX);
}

static void expect(unsigned int want)
{
	struct ccvm_invariant_report r = check();

	ck_assert_msg(r.invariant == want, "expected I%u, got I%u: %s", want, r.invariant,
		      r.msg);
	ck_assert_int_eq(r.msg[0], 'I');
	ck_assert_ptr_nonnull(ccvm_invariant_name(r.invariant));
}

static uint64_t pfn_at(uint64_t gpa)
{
	uint64_t pfn = 0;

	ck_assert_int_eq(ccvm_vm_lookup_mapping(F.vm, gpa, &pfn, NULL), 0);
	return pfn;
}

static void prefault(uint64_t gpa, uint64_t size)
{
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(F.v, &gpa, &size), 0);
	ck_assert_uint_eq(size, 0);
}

static void attr_store(uint64_t gfn, uint64_t value)
{
	ccvm_brlock_wrlock(&F.vm->attr_lock);
	ck_assert_int_eq(ccvm_xa_store(&F.vm->attrs, gfn, value), 0);
	ccvm_brlock_wrunlock(&F.vm->attr_lock);
}

static struct ccvm_memslot *slot_at(uint64_t gfn)
{
	unsigned int slots_sh;
	struct ccvm_memslot *s;

	slots_sh = ccvm_brlock_rdlock(&F.vm->memslots_rw);
	s = ccvm_memslot_find(F.vm, gfn);
	ccvm_brlock_rdunlock(&F.vm->memslots_rw, slots_sh);
	ck_assert_ptr_nonnull(s);
	return s;
}

static void teardown(void)
{
	if (F.v)
		ck_assert_int_eq(ccvm_vcpu_close(F.v), 0);
	if (F.g)
		ck_assert_int_eq(ccvm_gmem_close(F.g), 0);
	if (F.vm)
		ck_assert_int_eq(ccvm_vm_close(F.vm), 0);
	if (F.p)
		ck_assert_int_eq(ccvm_platform_destroy(F.p), 0);
	free(F.buf);
	memset(&F, 0, sizeof(F));
}

/* ------------------------------------------------------------------ */
/* mock: the core's invariants                                         */
/* ------------------------------------------------------------------ */

/*
 * Slot 0: [0, 4M) over gmem pages 0..1023 of an 8M file and a 2M-aligned
 * buffer; [0, 1M) private.  Slot 1: plain, misaligned.  Pre-faulted:
 * private 4K leaves on [0, 1M), shared 4K on [1M, 2M), a shared 2M leaf on
 * [2M, 4M).
 */
static void setup_mock(void)
{
	tu_quiet_log();
	memset(&F, 0, sizeof(F));
	F.p = cf_platform("mock");
	F.vm = tu_vm(F.p);
	F.buf = aligned_alloc(CF_2M, SLOT0_SIZE + 2 * MIB);
	ck_assert_ptr_nonnull(F.buf);
	memset(F.buf, 0, SLOT0_SIZE + 2 * MIB);
	F.g = tu_gmem(F.vm, FILE_SIZE, 0);
	ck_assert_int_eq(tu_region(F.vm, 0, CCVM_MEM_GUEST_MEMFD, 0, SLOT0_SIZE, F.buf, F.g, 0),
			 0);
	tu_plain_slot(F.vm, 1, SLOT1_GPA, SLOT1_SIZE, F.buf + SLOT0_SIZE);
	tu_set_attr(F.vm, 0, PRIVATE_SIZE, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	ck_assert_int_eq(ccvm_vm_finalize(F.vm), 0);
	ck_assert_int_eq(ccvm_vcpu_create(F.vm, 0, &F.v), 0);
	prefault(0, SLOT0_SIZE);
	prefault(SLOT1_GPA, SLOT1_SIZE);
}

START_TEST(test_mock_healthy)
{
	int level = 0;

	ck_assert_int_eq(ccvm_vm_lookup_mapping(F.vm, 2 * MIB, NULL, &level), 0);
	ck_assert_int_eq(level, CCVM_LEVEL_2M);
	assert_clean_report();
	cf_assert_platform_invariants(F.p);
}
END_TEST

struct brk {
	const char *name;
	unsigned int want;
	void (*do_break)(void);
	void (*restore)(void);
};

/*
 * The one runner of the break tables: on a state that passes @assert_clean,
 * apply @b; @report, the checker of that kind, must name exactly @b's
 * invariant.  Restore, then check with @assert_clean_after unless NULL.
 */
static void run_break(const struct brk *b, struct ccvm_invariant_report (*report)(void),
		      void (*assert_clean)(void), void (*assert_clean_after)(void))
{
	struct ccvm_invariant_report r;

	assert_clean();
	b->do_break();
	r = report();
	ck_assert_msg(r.invariant == b->want, "%s: expected I%u, got I%u: %s", b->name,
		      b->want, r.invariant, r.msg);
	b->restore();
	if (assert_clean_after)
		assert_clean_after();
}

static struct {
	struct ccvm_mmu_entry old;
	uint64_t pfn;
} S;

static void poke(struct ccvm_root *root, uint64_t gfn, int level, const struct ccvm_mmu_entry *e)
{
	ck_assert_int_eq(ccvm_mmu_test_poke(F.vm, root, gfn, level, e, &S.old), 0);
}

static void unpoke(struct ccvm_root *root)
{
	ck_assert_int_eq(ccvm_mmu_test_poke(F.vm, root, S.old.gfn, S.old.level,
					    S.old.leaf || S.old.frozen ? &S.old : NULL, NULL), 0);
}

/* I1: an attribute flipped to shared under a private leaf. */
static void brk_attr_flip(void) { attr_store(5, 0); }
static void fix_attr_flip(void) { attr_store(5, CCVM_MEMORY_ATTRIBUTE_PRIVATE); }

/* I1: a private leaf pointing at its neighbour's gmem page. */
static void brk_private_pfn(void)
{
	struct ccvm_mmu_entry e = { .leaf = true, .is_private = true, .frame = pfn_at(4 * PG) };

	poke(F.v->root, 3, CCVM_LEVEL_4K, &e);
}
static void fix_private_pfn(void) { unpoke(F.v->root); }

/* I2: PRIVATE under a shared leaf. */
static void brk_shared_attr(void) { attr_store(261, CCVM_MEMORY_ATTRIBUTE_PRIVATE); }
static void fix_shared_attr(void) { attr_store(261, 0); }

/* I2: a shared leaf one page off the VMM buffer. */
static void brk_shared_frame(void)
{
	struct ccvm_mmu_entry e = {
		.leaf = true, .host = true,
		.frame = ((uintptr_t)F.buf >> CCVM_PAGE_SHIFT) + 262,
	};

	poke(F.v->root, 261, CCVM_LEVEL_4K, &e);
}
static void fix_shared_frame(void) { unpoke(F.v->root); }

/* I3: an invalidation that never ended. */
static void brk_open_inval(void) { atomic_store(&F.vm->mmu.invalidate_in_progress, 1); }
static void fix_open_inval(void) { atomic_store(&F.vm->mmu.invalidate_in_progress, 0); }

/* I5: a mapped gmem page handed back to the allocator. */
static void brk_freed_pfn(void)
{
	S.pfn = pfn_at(7 * PG);
	ccvm_page_free(F.p, S.pfn);
}
static void fix_freed_pfn(void)
{
	uint64_t pfn = 0;

	/* The free list is LIFO: the same page comes back. */
	ck_assert_int_eq(ccvm_page_alloc(F.p, &pfn), 0);
	ck_assert_uint_eq(pfn, S.pfn);
}

/* I6: file page 1500 bound to slot 0, which covers only 0..1023. */
static void brk_stray_binding(void)
{
	ck_assert_int_eq(ccvm_xa_store(&F.g->bindings, 1500, (uint64_t)(uintptr_t)slot_at(0)), 0);
}
static void fix_stray_binding(void) { ck_assert_int_eq(ccvm_xa_store(&F.g->bindings, 1500, 0), 0); }

/* I6: the file counts a binding too many. */
static void brk_binding_count(void) { F.g->nr_bindings++; }
static void fix_binding_count(void) { F.g->nr_bindings--; }

/* I6: slot 0 no longer found by its id. */
static void brk_slot_id(void)
{
	S.pfn = ccvm_xa_load(&F.vm->slot_ids, 0);
	ck_assert_int_eq(ccvm_xa_store(&F.vm->slot_ids, 0, 0), 0);
}
static void fix_slot_id(void) { ck_assert_int_eq(ccvm_xa_store(&F.vm->slot_ids, 0, S.pfn), 0); }

/* I7: one reference fewer than the handle, the vCPU and the file hold. */
static void brk_refcount(void) { atomic_fetch_sub(&F.vm->refcount, 1); }
static void fix_refcount(void) { atomic_fetch_add(&F.vm->refcount, 1); }

/* I8: the 2M shared leaf once the backend allows only 4K shared. */
static void brk_level(void) { F.vm->caps.shared_max_level = CCVM_LEVEL_4K; }
static void fix_level(void) { F.vm->caps.shared_max_level = CCVM_LEVEL_2M; }

/* I9: MIXED set over the uniform 2M page at gfn 512. */
static void brk_mixed(void) { ccvm_lpage_assign(slot_at(512)->lpage_mixed, 1, true); }
static void fix_mixed(void) { ccvm_lpage_assign(slot_at(512)->lpage_mixed, 1, false); }

/* I9: slot 1's partial 2M page made mappable at 2M. */
static void brk_partial(void) { ccvm_lpage_assign(slot_at(SLOT1_GPA >> 12)->lpage_disallow, 0, false); }
static void fix_partial(void) { ccvm_lpage_assign(slot_at(SLOT1_GPA >> 12)->lpage_disallow, 0, true); }

/* I11: a frozen SPTE left behind. */
static void brk_frozen(void)
{
	struct ccvm_mmu_entry e = { .frozen = true };

	poke(F.v->root, 8, CCVM_LEVEL_4K, &e);
}
static void fix_frozen(void) { unpoke(F.v->root); }

/* I21: a vCPU in guest mode, or guest entry blocked, at rest. */
static void brk_in_guest(void) { atomic_store(&F.v->in_guest, true); }
static void fix_in_guest(void) { atomic_store(&F.v->in_guest, false); }
static void brk_entry_blocked(void) { ccvm_vm_block_entry(F.vm); }
static void fix_entry_blocked(void) { ccvm_vm_unblock_entry(F.vm); }

/* I26: an attribute bit that does not exist. */
static void brk_attr_bits(void) { attr_store(3000, 1ull << 5); }
static void fix_attr_bits(void) { attr_store(3000, 0); }

/* I27: bugged but still allowed to enter. */
static void brk_bugged(void) { atomic_store(&F.vm->bugged, true); }
static void fix_bugged(void) { atomic_store(&F.vm->bugged, false); }

/* I28: a leaked root reference (the mirror-root bug's symptom). */
static void brk_root_ref(void) { atomic_fetch_add(&F.v->root->refcount, 1); }
static void fix_root_ref(void) { atomic_fetch_sub(&F.v->root->refcount, 1); }

/* I28: the vCPU's root invalid while it still counts as valid. */
static void brk_root_invalid(void) { atomic_store(&F.v->root->invalid, true); }
static void fix_root_invalid(void) { atomic_store(&F.v->root->invalid, false); }

static const struct brk mock_breaks[] = {
	{ "attribute flipped under a private leaf", 1, brk_attr_flip, fix_attr_flip },
	{ "private leaf on the wrong gmem page", 1, brk_private_pfn, fix_private_pfn },
	{ "PRIVATE under a shared leaf", 2, brk_shared_attr, fix_shared_attr },
	{ "shared leaf off the VMM buffer", 2, brk_shared_frame, fix_shared_frame },
	{ "invalidation left open", 3, brk_open_inval, fix_open_inval },
	{ "mapped page freed", 5, brk_freed_pfn, fix_freed_pfn },
	{ "stray binding", 6, brk_stray_binding, fix_stray_binding },
	{ "binding count", 6, brk_binding_count, fix_binding_count },
	{ "slot not found by id", 6, brk_slot_id, fix_slot_id },
	{ "VM reference missing", 7, brk_refcount, fix_refcount },
	{ "leaf above the level cap", 8, brk_level, fix_level },
	{ "MIXED over uniform attributes", 9, brk_mixed, fix_mixed },
	{ "partial 2M page allowed", 9, brk_partial, fix_partial },
	{ "frozen SPTE at rest", 11, brk_frozen, fix_frozen },
	{ "vCPU in guest mode at rest", 21, brk_in_guest, fix_in_guest },
	{ "guest entry blocked at rest", 21, brk_entry_blocked, fix_entry_blocked },
	{ "unknown attribute bit", 26, brk_attr_bits, fix_attr_bits },
	{ "bugged VM not dead", 27, brk_bugged, fix_bugged },
	{ "root reference leaked", 28, brk_root_ref, fix_root_ref },
	{ "root invalid, MMU reference kept", 28, brk_root_invalid, fix_root_invalid },
};

START_TEST(test_mock_break)
{
	run_break(&mock_breaks[_i], check, assert_clean_report, assert_clean_report);
}
END_TEST

/* A bugged VM: reported as such only if it could still run; leaves not judged. */
START_TEST(test_mock_bugged_vm)
{
	struct ccvm_invariant_report r;

	ccvm_vm_bug(F.vm, "test");
	r = check();
	ck_assert_uint_eq(r.invariant, 0);
	/* What a failed removal may leave is not held against it. */
	brk_attr_flip();
	r = check();
	ck_assert_uint_eq(r.invariant, 0);
	fix_attr_flip();
	/* But the rest still is. */
	brk_attr_bits();
	expect(26);
	fix_attr_bits();
}
END_TEST

/* A released file: the slot stays with a stale inode that must not be read. */
START_TEST(test_mock_released_file)
{
	ck_assert_int_eq(ccvm_gmem_close(F.g), 0);
	F.g = NULL;
	ck_assert_int_ne(ccvm_vm_lookup_mapping(F.vm, 0, NULL, NULL), 0);
	assert_clean_report();
	cf_assert_platform_invariants(F.p);
}
END_TEST

START_TEST(test_report_fields)
{
	struct ccvm_invariant_report r;
	char big[sizeof(r) + 16];
	struct ccvm_invariant_report *rp = (struct ccvm_invariant_report *)(void *)big;

	ck_assert_int_eq(ccvm_vm_check_invariants(NULL, &r), -EINVAL);
	ck_assert_int_eq(ccvm_vm_check_invariants(F.vm, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_platform_check_invariants(NULL, &r), -EINVAL);
	ck_assert_int_eq(ccvm_platform_check_invariants(F.p, NULL), -EINVAL);
	memset(&r, 0, sizeof(r));
	r.sz = offsetof(struct ccvm_invariant_report, nr_checks) - 1;
	ck_assert_int_eq(ccvm_vm_check_invariants(F.vm, &r), -EINVAL);

	/* An older caller's report ends before nr_checks: only what fits. */
	memset(big, 0x5a, sizeof(big));
	rp->sz = offsetof(struct ccvm_invariant_report, nr_checks);
	brk_attr_flip();
	ck_assert_int_eq(ccvm_vm_check_invariants(F.vm, rp), 0);
	ck_assert_uint_eq(rp->sz, offsetof(struct ccvm_invariant_report, nr_checks));
	ck_assert_uint_eq(rp->invariant, 1);
	ck_assert_int_eq((uint8_t)big[offsetof(struct ccvm_invariant_report, nr_checks)], 0x5a);

	/* A report cut inside msg still ends in a NUL. */
	memset(big, 0x5a, sizeof(big));
	rp->sz = offsetof(struct ccvm_invariant_report, msg) + 8;
	ck_assert_int_eq(ccvm_vm_check_invariants(F.vm, rp), 0);
	ck_assert_uint_eq(rp->invariant, 1);
	ck_assert_uint_eq(rp->gfn, 5);
	ck_assert_uint_eq(rp->pfn, pfn_at(5 * PG));
	ck_assert_uint_eq(strlen(rp->msg), 7);
	ck_assert_int_eq(memcmp(rp->msg, "I1: pri", 7), 0);
	ck_assert_int_eq((uint8_t)big[offsetof(struct ccvm_invariant_report, msg) + 8], 0x5a);
	fix_attr_flip();

	/* A newer caller's bigger struct: sz says what was written. */
	memset(big, 0, sizeof(big));
	rp->sz = sizeof(big);
	ck_assert_int_eq(ccvm_vm_check_invariants(F.vm, rp), 0);
	ck_assert_uint_eq(rp->sz, sizeof(r));
	ck_assert_uint_eq(rp->invariant, 0);

	ck_assert_ptr_null(ccvm_invariant_name(0));
	ck_assert_ptr_null(ccvm_invariant_name(37));
	ck_assert_ptr_nonnull(ccvm_invariant_name(36));
	ck_assert_ptr_nonnull(ccvm_invariant_name(1));
	ck_assert_ptr_nonnull(ccvm_invariant_name(30));
}
END_TEST

/* Nothing observable changes: the checker counts, traces and bumps nothing. */
START_TEST(test_check_is_invisible)
{
	struct tu_snap a, b;

	tu_snap_take(&a, F.p, F.vm, F.g, NULL, 0, 16 * MIB);
	check();
	cf_assert_platform_invariants(F.p);
	tu_snap_take(&b, F.p, F.vm, F.g, NULL, 0, 16 * MIB);
	tu_snap_assert_same(&a, &b);
}
END_TEST

/* ---- the platform check --------------------------------------------------- */

static void brk_nr_free(void) { atomic_fetch_add(&F.p->nr_free, 1); }
static void fix_nr_free(void) { atomic_fetch_sub(&F.p->nr_free, 1); }

static void brk_free_and_allocated(void)
{
	ck_assert_int_eq(ccvm_page_alloc(F.p, &S.pfn), 0);
	ccvm_page_free(F.p, S.pfn);
	atomic_fetch_or(&F.p->pfn_state[S.pfn], CCVM_PFN_ALLOCATED);
}
static void fix_free_and_allocated(void)
{
	atomic_fetch_and(&F.p->pfn_state[S.pfn], (uint8_t)~CCVM_PFN_ALLOCATED);
}

static void brk_nr_leaked(void) { atomic_fetch_add(&F.p->nr_leaked, 1); }
static void fix_nr_leaked(void) { atomic_fetch_sub(&F.p->nr_leaked, 1); }

static void brk_leaked_free(void)
{
	ck_assert_int_eq(ccvm_page_alloc(F.p, &S.pfn), 0);
	ccvm_page_free(F.p, S.pfn);
	atomic_fetch_or(&F.p->pfn_state[S.pfn], CCVM_PFN_LEAKED);
	atomic_fetch_add(&F.p->nr_leaked, 1);
}
static void fix_leaked_free(void)
{
	atomic_fetch_and(&F.p->pfn_state[S.pfn], (uint8_t)~CCVM_PFN_LEAKED);
	atomic_fetch_sub(&F.p->nr_leaked, 1);
}

static const struct brk platform_breaks[] = {
	{ "free count off", 5, brk_nr_free, fix_nr_free },
	{ "page free and allocated", 5, brk_free_and_allocated, fix_free_and_allocated },
	{ "leak count off", 18, brk_nr_leaked, fix_nr_leaked },
	{ "leaked page on the free list", 18, brk_leaked_free, fix_leaked_free },
};

static struct ccvm_invariant_report platform_check(void)
{
	struct ccvm_invariant_report r;

	memset(&r, 0, sizeof(r));
	r.sz = sizeof(r);
	ck_assert_int_eq(ccvm_platform_check_invariants(F.p, &r), 0);
	ck_assert_uint_gt(r.nr_checks, 0);
	return r;
}

static void assert_platform_clean(void)
{
	cf_assert_platform_invariants(F.p);
}

START_TEST(test_platform_break)
{
	run_break(&platform_breaks[_i], platform_check, assert_platform_clean,
		  assert_platform_clean);
}
END_TEST

/* ------------------------------------------------------------------ */
/* the allocator's windows                                              */
/* ------------------------------------------------------------------ */

#define WIN_PAGES	2048ull			/* an 8 MiB platform */

/* Run the calling thread on @cpu (ignored if the host refuses). */
static void pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

struct win_alloc {
	struct ccvm_platform *p;
	uint64_t pfn;
	int err;
};

static void *win_alloc_thread(void *arg)
{
	struct win_alloc *a = arg;

	a->err = ccvm_page_alloc(a->p, &a->pfn);
	return NULL;
}

/* One page allocated by a thread of its own (a new window slot). */
static int alloc_in_new_thread(struct ccvm_platform *p, uint64_t *pfn)
{
	struct win_alloc a = { .p = p };
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, win_alloc_thread, &a), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	*pfn = a.pfn;
	return a.err;
}

/*
 * Free-running on several CPUs, fresh pages come from one window of the
 * bump region per allocating thread: two threads get pages of different
 * 2 MiB blocks, one thread's pages stay contiguous even when it moves to
 * another CPU between two allocations, the windows' free pages keep the
 * invariants whole, every page can still be allocated (the last ones
 * from any window) and freed, and a broken window is reported.  With one
 * CPU the windows are off and the same walk checks the plain bump.
 */
START_TEST(test_page_windows)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = "mock");
	struct ccvm_invariant_report r = { .sz = sizeof(r) };
	cpu_set_t allowed;
	int cpus[2] = { -1, -1 }, nr_cpus = 0, cpu, err;
	uint64_t *pfns = calloc(WIN_PAGES, sizeof(*pfns)), n = 0, i, saved;
	struct ccvm_platform *p;

	ck_assert_ptr_nonnull(pfns);
	tu_quiet_log();
	ck_assert_int_eq(pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed), 0);
	for (cpu = 0; cpu < CPU_SETSIZE && nr_cpus < 2; cpu++)
		if (CPU_ISSET(cpu, &allowed))
			cpus[nr_cpus++] = cpu;
	po.mem_bytes = WIN_PAGES * PG;
	ck_assert_int_eq(ccvm_platform_create(&po, &p), 0);
	/* Free-running on a host of several CPUs: windows on, one per thread up to 8. */
	if (ccvm_host_cpu_shards() > 1)
		ck_assert_uint_eq(p->nr_windows, CCVM_BRLOCK_SHARDS);
	else
		ck_assert_uint_eq(p->nr_windows, 0);

	/* This thread, moved to another CPU between its two pages. */
	pin_to(cpus[0]);
	ck_assert_int_eq(ccvm_page_alloc(p, &pfns[n++]), 0);
	if (nr_cpus == 2)
		pin_to(cpus[1]);
	ck_assert_int_eq(ccvm_page_alloc(p, &pfns[n++]), 0);
	ck_assert_uint_eq(pfns[1], pfns[0] + 1);
	pthread_setaffinity_np(pthread_self(), sizeof(allowed), &allowed);
	/* The next thread is dealt the next window. */
	ck_assert_int_eq(alloc_in_new_thread(p, &pfns[n++]), 0);
	if (p->nr_windows > 1)
		ck_assert_uint_ne(pfns[2] >> 9, pfns[0] >> 9);
	else
		ck_assert_uint_eq(pfns[2], pfns[1] + 1);
	ck_assert_int_eq(ccvm_platform_check_invariants(p, &r), 0);
	ck_assert_int_eq(r.invariant, 0);

	/* A window past the bump pointer is a broken allocator. */
	if (p->nr_windows) {
		uint64_t next;

		saved = atomic_load(&p->window[0].w);
		next = ccvm_window_next(saved);
		atomic_store(&p->window[0].w, ccvm_window_make(next, p->bump + 1 - next));
		ck_assert_int_eq(ccvm_platform_check_invariants(p, &r), 0);
		ck_assert_int_eq(r.invariant, 5);
		atomic_store(&p->window[0].w, saved);
		ck_assert_int_eq(ccvm_platform_check_invariants(p, &r), 0);
		ck_assert_int_eq(r.invariant, 0);
	}

	/* Every page, every eighth from a thread of its own, then nothing. */
	for (;;) {
		ck_assert_uint_lt(n, WIN_PAGES);
		err = n % 8 ? ccvm_page_alloc(p, &pfns[n]) : alloc_in_new_thread(p, &pfns[n]);
		if (err) {
			ck_assert_int_eq(err, -ENOMEM);
			break;
		}
		n++;
	}
	ck_assert_uint_eq(n, WIN_PAGES - 1);
	ck_assert_uint_eq(atomic_load(&p->nr_free), 0);
	for (i = 0; i < n; i++)
		ck_assert(ccvm_page_is_allocated(p, pfns[i]));
	ck_assert_int_eq(ccvm_platform_check_invariants(p, &r), 0);
	ck_assert_int_eq(r.invariant, 0);
	for (i = 0; i < n; i++)
		ccvm_page_free(p, pfns[i]);
	ck_assert_uint_eq(atomic_load(&p->nr_free), WIN_PAGES - 1);
	ck_assert_int_eq(ccvm_platform_check_invariants(p, &r), 0);
	ck_assert_int_eq(r.invariant, 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	free(pfns);
}
END_TEST

/* ------------------------------------------------------------------ */
/* tdx                                                                 */
/* ------------------------------------------------------------------ */

static struct ccvm_tdx_td *td(void)
{
	struct ccvm_tdx_td *t = ccvm_tdx_vm_td(F.vm);

	ck_assert_ptr_nonnull(t);
	return t;
}

/* A TD with slot 0 [0, 4M), [0, 2M) private, launched or not, a vCPU or not. */
static void tdx_up(bool finalize, bool vcpu)
{
	tu_quiet_log();
	memset(&F, 0, sizeof(F));
	F.p = cf_platform("tdx");
	F.vm = tu_vm(F.p);
	F.sbit = ccvm_vm_shared_bit(F.vm);
	F.buf = aligned_alloc(CF_2M, SLOT0_SIZE);
	ck_assert_ptr_nonnull(F.buf);
	memset(F.buf, 0, SLOT0_SIZE);
	F.g = tu_gmem(F.vm, SLOT0_SIZE, 0);
	ck_assert_int_eq(tu_region(F.vm, 0, CCVM_MEM_GUEST_MEMFD, 0, SLOT0_SIZE, F.buf, F.g, 0),
			 0);
	tu_set_attr(F.vm, 0, 2 * MIB, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	if (finalize)
		ck_assert_int_eq(ccvm_vm_finalize(F.vm), 0);
	if (vcpu)
		ck_assert_int_eq(ccvm_vcpu_create(F.vm, 0, &F.v), 0);
}

static void setup_tdx(void)
{
	uint8_t page[PG];

	tdx_up(false, true);
	/* Two pages added at launch, then private and shared faults. */
	cf_fill(page, sizeof(page), 3);
	ck_assert_int_eq(ccvm_vm_populate(F.vm, 64 * PG, page, PG, CCVM_POPULATE_MEASURE), 0);
	ck_assert_int_eq(ccvm_vm_populate(F.vm, 65 * PG, page, PG, 0), 0);
	ck_assert_int_eq(ccvm_vm_finalize(F.vm), 0);
	prefault(0, 16 * PG);
	prefault(2 * MIB, 16 * PG);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(F.vm, (2 * MIB) | F.sbit, NULL, NULL), 0);
}

static void setup_tdx_unfinalized(void)
{
	tdx_up(false, true);
}

static void setup_tdx_no_vcpu(void)
{
	tdx_up(true, false);
}

START_TEST(test_tdx_healthy)
{
	assert_clean_report();
	cf_assert_platform_invariants(F.p);
}
END_TEST

/* I10: the mirror SPTE of gfn 2 gone, its S-EPT entry still PENDING. */
static void brk_tdx_mirror_gone(void) { poke(F.v->mirror_root, 2, CCVM_LEVEL_4K, NULL); }
static void fix_tdx_mirror_gone(void) { unpoke(F.v->mirror_root); }

/* I12: a removal that stopped after BLOCK. */
static void brk_tdx_blocked(void)
{
	ck_assert_uint_eq(ccvm_tdh_mem_range_block(td(), 3 * PG, CCVM_TDX_LEVEL_4K), TDX_SUCCESS);
}
static void fix_nothing(void) { }

/* I17: a TD page leaked although nothing failed (the VM is not bugged). */
static void brk_tdx_leak(void) { ccvm_page_leak(F.p, pfn_at(4 * PG)); }

/* I18: the vCPU's TDVPR page back in the allocator while the TD owns it. */
static void brk_tdx_tdvpr_free(void)
{
	S.pfn = ccvm_tdx_vp_tdvpr_pfn(ccvm_tdx_vcpu_vp(F.v));
	ccvm_page_free(F.p, S.pfn);
}

/* I28: the mirror root invalidated while the VM lives (a fast zap did it). */
static void brk_tdx_mirror_invalid(void) { atomic_store(&F.v->mirror_root->invalid, true); }
static void fix_tdx_mirror_invalid(void) { atomic_store(&F.v->mirror_root->invalid, false); }

/* I29: a shared leaf in the mirror root. */
static void brk_tdx_shared_in_mirror(void)
{
	struct ccvm_mmu_entry e = { .leaf = true, .frame = pfn_at(5 * PG) };

	poke(F.v->mirror_root, 5, CCVM_LEVEL_4K, &e);
}

/* I29: a private leaf in the direct root. */
static void brk_tdx_private_in_direct(void)
{
	struct ccvm_mmu_entry e = { .leaf = true, .is_private = true, .frame = pfn_at(6 * PG) };

	/* Over the 2M shared leaf the direct root holds at 2M. */
	poke(F.v->root, 512, CCVM_LEVEL_2M, &e);
}
static void fix_tdx_direct(void) { unpoke(F.v->root); }

static const struct brk tdx_breaks[] = {
	{ "mirror SPTE gone, S-EPT entry left", 10, brk_tdx_mirror_gone, fix_tdx_mirror_gone },
	{ "S-EPT entry blocked under a mirror SPTE", 12, brk_tdx_blocked, fix_nothing },
	{ "TD page leaked without a bug", 17, brk_tdx_leak, fix_nothing },
	{ "TDVPR page freed", 18, brk_tdx_tdvpr_free, fix_freed_pfn },
	{ "mirror root invalid", 28, brk_tdx_mirror_invalid, fix_tdx_mirror_invalid },
	{ "shared leaf in the mirror root", 29, brk_tdx_shared_in_mirror, fix_tdx_mirror_gone },
	{ "private leaf in the direct root", 29, brk_tdx_private_in_direct, fix_tdx_direct },
};

/* A blocked S-EPT entry and a leaked page cannot be undone: not clean after. */
START_TEST(test_tdx_break)
{
	run_break(&tdx_breaks[_i], check, assert_clean_report, NULL);
}
END_TEST

/* I16: MR.FINALIZE behind KVM's back: the TD runs, the VM is not finalized. */
START_TEST(test_tdx_finalize_behind)
{
	assert_clean_report();
	ck_assert_uint_eq(ccvm_tdh_mr_finalize(td()), TDX_SUCCESS);
	expect(16);
}
END_TEST

/* I14: VPFLUSHDONE behind KVM's back: the HKID release stopped halfway. */
START_TEST(test_tdx_half_release)
{
	assert_clean_report();
	ck_assert_uint_eq(ccvm_tdh_mng_vpflushdone(td()), TDX_SUCCESS);
	expect(14);
}
END_TEST

/* A vCPU that failed after VP.CREATE leaves its pages with the TD: allowed. */
START_TEST(test_tdx_vcpu_orphans)
{
	struct ccvm_vcpu *v = NULL;
	struct ccvm_tdx_module *m = ccvm_tdx_module_of(F.p);

	ck_assert_int_eq(ccvm_tdx_inject(m, CCVM_TDH_VP_INIT, 0, TDX_OPERAND_INVALID, 1), 0);
	ck_assert_int_lt(ccvm_vcpu_create(F.vm, 1, &v), 0);
	ck_assert_ptr_null(v);
	assert_clean_report();
}
END_TEST

/* Deferred removal: the file goes, its private leaves and pinned inode stay. */
START_TEST(test_tdx_deferred_release)
{
	ck_assert_int_eq(ccvm_vm_set_study_knob(F.vm, CCVM_STUDY_GMEM_DEFER_REMOVAL,
							 CCVM_GMEM_DEFER_RFC), 0);
	ck_assert_int_eq(ccvm_gmem_close(F.g), 0);
	F.g = NULL;
	ck_assert_uint_eq(ccvm_tdx_nr_deferred(F.vm), 1);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(F.vm, 0, NULL, NULL), 0);
	assert_clean_report();
}
END_TEST

/* After terminate the HKID is gone and only the PAMT is compared. */
START_TEST(test_tdx_terminated)
{
	ck_assert_int_eq(ccvm_vm_terminate(F.vm), 0);
	ck_assert(!ccvm_tdx_hkid_assigned(F.vm));
	assert_clean_report();
	/* A zap now reclaims the page: still consistent. */
	ck_assert_int_eq(ccvm_gmem_fallocate(F.g, CCVM_FALLOC_KEEP_SIZE | CCVM_FALLOC_PUNCH_HOLE,
					     0, 4 * PG), 0);
	assert_clean_report();
}
END_TEST

/* ------------------------------------------------------------------ */
/* snp                                                                 */
/* ------------------------------------------------------------------ */

static struct ccvm_snp_hw *hw(void)
{
	return ccvm_snp_hw_of(F.p);
}

static uint32_t asid(void)
{
	uint32_t a = 0;

	ck_assert_int_eq(ccvm_snp_vm_asid(F.vm, &a), 0);
	return a;
}

static void setup_snp(void)
{
	uint8_t page[PG];

	tu_quiet_log();
	memset(&F, 0, sizeof(F));
	F.p = cf_platform("snp");
	F.vm = tu_vm(F.p);
	F.sbit = ccvm_vm_shared_bit(F.vm);
	F.buf = aligned_alloc(CF_2M, SLOT0_SIZE);
	ck_assert_ptr_nonnull(F.buf);
	memset(F.buf, 0, SLOT0_SIZE);
	F.g = tu_gmem(F.vm, SLOT0_SIZE, 0);
	ck_assert_int_eq(tu_region(F.vm, 0, CCVM_MEM_GUEST_MEMFD, 0, SLOT0_SIZE, F.buf, F.g, 0),
			 0);
	tu_set_attr(F.vm, 0, 2 * MIB, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	cf_fill(page, sizeof(page), 9);
	ck_assert_int_eq(ccvm_vm_populate(F.vm, 64 * PG, page, PG, 0), 0);
	ck_assert_int_eq(ccvm_vm_finalize(F.vm), 0);
	ck_assert_int_eq(ccvm_vcpu_create(F.vm, 0, &F.v), 0);
	prefault(0, 16 * PG);
	prefault(2 * MIB, 16 * PG);
}

START_TEST(test_snp_healthy)
{
	assert_clean_report();
	cf_assert_platform_invariants(F.p);
}
END_TEST

/* I22: a raw 4K RMPUPDATE without the direct-map split the kernel does. */
START_TEST(test_snp_directmap)
{
	struct ccvm_snp_rmp_entry e = { .assigned = true, .level = CCVM_LEVEL_4K };
	struct ccvm_snp_rmp_entry none = { .level = CCVM_LEVEL_4K };
	uint64_t pfns[CCVM_SNP_PAGES_PER_2M + 1], pfn = 0;
	unsigned int n = 0, i;

	assert_clean_report();
	/* A page still under a large host mapping. */
	do {
		ck_assert_uint_lt(n, CCVM_ARRAY_SIZE(pfns));
		ck_assert_int_eq(ccvm_page_alloc(F.p, &pfns[n]), 0);
		pfn = pfns[n++];
	} while (ccvm_snp_directmap_level(hw(), pfn) == CCVM_LEVEL_4K);
	e.gpa = 100 * PG;
	ck_assert_int_eq(ccvm_snp_rmpupdate(hw(), NULL, pfn, &e), CCVM_SNP_SUCCESS);
	expect(22);
	ck_assert_int_eq(ccvm_snp_rmpupdate(hw(), NULL, pfn, &none), CCVM_SNP_SUCCESS);
	assert_clean_report();
	for (i = 0; i < n; i++)
		ccvm_page_free(F.p, pfns[i]);
}
END_TEST

/* I23: a page assigned to the guest that is not its gmem page there. */
START_TEST(test_snp_stray_private)
{
	uint64_t pfn;

	assert_clean_report();
	ck_assert_int_eq(ccvm_page_alloc(F.p, &pfn), 0);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(hw(), NULL, pfn, 100 * PG, CCVM_LEVEL_4K,
						   asid(), false), 0);
	expect(23);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(hw(), NULL, pfn, CCVM_LEVEL_4K), 0);
	assert_clean_report();
	ccvm_page_free(F.p, pfn);
}
END_TEST

/* I23: a private leaf whose page the RMP gave back to the host. */
START_TEST(test_snp_leaf_unassigned)
{
	uint64_t pfn = pfn_at(3 * PG);

	assert_clean_report();
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(hw(), NULL, pfn, CCVM_LEVEL_4K), 0);
	expect(23);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(hw(), NULL, pfn, 3 * PG, CCVM_LEVEL_4K,
						   asid(), false), 0);
	assert_clean_report();
}
END_TEST

/* A page that could not be made shared again is leaked: I23 allows it. */
START_TEST(test_snp_leaked_assigned)
{
	uint64_t pfn;

	ck_assert_int_eq(ccvm_page_alloc(F.p, &pfn), 0);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(hw(), NULL, pfn, 100 * PG, CCVM_LEVEL_4K,
						   asid(), false), 0);
	expect(23);
	ccvm_page_leak(F.p, pfn);
	assert_clean_report();
	cf_assert_platform_invariants(F.p);
}
END_TEST

/* I23: an assigned page back in the host allocator. */
START_TEST(test_snp_assigned_free)
{
	uint64_t pfn;

	assert_clean_report();
	ck_assert_int_eq(ccvm_page_alloc(F.p, &pfn), 0);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(hw(), NULL, pfn, 3 * PG, CCVM_LEVEL_4K,
						   asid() + 1, false), 0);
	ccvm_page_free(F.p, pfn);
	expect(23);
	ck_assert_int_eq(ccvm_page_alloc(F.p, &S.pfn), 0);
	ck_assert_uint_eq(S.pfn, pfn);
	ck_assert_int_eq(ccvm_snp_rmp_make_shared(hw(), NULL, pfn, CCVM_LEVEL_4K), 0);
	assert_clean_report();
	ccvm_page_free(F.p, pfn);
}
END_TEST

Suite *invariants_suite(void)
{
	Suite *s = suite_create("invariants");
	TCase *tc;

	tc = tcase_create("mock");
	tcase_add_checked_fixture(tc, setup_mock, teardown);
	tcase_add_test(tc, test_mock_healthy);
	tcase_add_loop_test(tc, test_mock_break, 0, (int)CCVM_ARRAY_SIZE(mock_breaks));
	tcase_add_test(tc, test_mock_bugged_vm);
	tcase_add_test(tc, test_mock_released_file);
	tcase_add_test(tc, test_report_fields);
	tcase_add_test(tc, test_check_is_invisible);
	tcase_add_loop_test(tc, test_platform_break, 0, (int)CCVM_ARRAY_SIZE(platform_breaks));
	suite_add_tcase(s, tc);

	tc = tcase_create("page_windows");
	tcase_add_test(tc, test_page_windows);
	suite_add_tcase(s, tc);

	tc = tcase_create("tdx");
	tcase_add_checked_fixture(tc, setup_tdx, teardown);
	tcase_add_test(tc, test_tdx_healthy);
	tcase_add_loop_test(tc, test_tdx_break, 0, (int)CCVM_ARRAY_SIZE(tdx_breaks));
	tcase_add_test(tc, test_tdx_vcpu_orphans);
	tcase_add_test(tc, test_tdx_deferred_release);
	tcase_add_test(tc, test_tdx_terminated);
	suite_add_tcase(s, tc);

	tc = tcase_create("tdx_unfinalized");
	tcase_add_checked_fixture(tc, setup_tdx_unfinalized, teardown);
	tcase_add_test(tc, test_tdx_finalize_behind);
	suite_add_tcase(s, tc);

	tc = tcase_create("tdx_no_vcpu");
	tcase_add_checked_fixture(tc, setup_tdx_no_vcpu, teardown);
	tcase_add_test(tc, test_tdx_half_release);
	suite_add_tcase(s, tc);

	tc = tcase_create("snp");
	tcase_add_checked_fixture(tc, setup_snp, teardown);
	tcase_add_test(tc, test_snp_healthy);
	tcase_add_test(tc, test_snp_directmap);
	tcase_add_test(tc, test_snp_stray_private);
	tcase_add_test(tc, test_snp_leaf_unassigned);
	tcase_add_test(tc, test_snp_assigned_free);
	tcase_add_test(tc, test_snp_leaked_assigned);
	suite_add_tcase(s, tc);
	return s;
}
