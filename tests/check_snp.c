/* SPDX-License-Identifier: MIT */
/*
 * Tests for the KVM side of the snp backend (backends/snp/snp.c), through
 * the public API wherever the API reaches: VM create (ASID, context page),
 * vCPUs (VMSA), launch (populate, finalize), guest PVALIDATE and accesses
 * (#VC, RMP nested faults, double validation), conversions driven by the
 * guest's page-state changes (the MAP_GPA_RANGE exits and their fields),
 * punch, host reads and writes through the direct map, direct-map splits,
 * ASID exhaustion and reuse, the attribute/RMPUPDATE race with real
 * threads, vCPUs converting their memory while the VMM converts and punches
 * its own, and teardown leaving nothing behind.
 *
 * The RMP state is read back with the hardware's RMPREAD (snp-hw.h).  A 2M
 * RMP entry needs a 2M gmem folio, which gmem does not hand out yet (order
 * 0, as upstream), so the 2M cases call the backend's gmem_prepare with
 * max_order 9 over 512 gmem pages that happen to be physically contiguous
 * and aligned, exactly what a 2M folio would give; everything after that
 * goes through the API again.
 *
 * Every test ends in the fixture's teardown, which closes everything and
 * checks that the platform got every page back, nothing leaked, and no 2M
 * host mapping covers a private 4K page (I22).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <check.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "internal.h"
#include "../backends/snp/snp.h"
#include "testutil.h"

extern const struct ccvm_backend_ops ccvm_snp_backend_ops;

#define GIB		(1ull << 30)
#define MIB		(1ull << 20)
#define PG		CCVM_PAGE_SIZE
#define PER_2M		512ull
#define MEM_SIZE	(4 * MIB)		/* the test memslot */
#define MEM_PAGES	(MEM_SIZE / PG)
#define VMSA_GPA	0xfffffffff000ull
#define PRIV		CCVM_MEMORY_ATTRIBUTE_PRIVATE

static struct ccvm_platform *p;
static struct ccvm_snp_hw *hw;
static struct ccvm_vm *vm;
static struct ccvm_gmem *gm;
static uint8_t *shared;			/* the slot's shared backing */
static size_t shared_size;
static uint64_t sbit;			/* the C-bit, as the shared bit */
static uint32_t asid;
static uint64_t free_at_start;		/* platform free pages before any VM */
static unsigned int warnings_allowed;
static uint64_t leaks_expected;

/* ---- fixtures ------------------------------------------------------------------- */

static void platform_up(uint32_t nr_keyids)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = "snp",
						     .mem_bytes = GIB,
						     .nr_keyids = nr_keyids,
						     .seed = 7);

	warnings_allowed = 0;
	leaks_expected = 0;
	p = tu_platform_up(&o);
	hw = ccvm_snp_hw_of(p);
	free_at_start = tu_free_pages(p);
	vm = NULL;
	gm = NULL;
	shared = NULL;
}

/*
 * The VM of most tests here runs the update_mem_attr design as posted (study
 * 004's CCVM_SNP_RMP_POSTED: the RMP follows each attribute change), which
 * is what they check; the "merged" case checks the default.
 */
static void vm_up_design(uint32_t design)
{
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vm), 0);
	ck_assert_int_eq(ccvm_vm_set_study_knob(vm, CCVM_STUDY_SNP_RMP_UPDATE, design), 0);
	sbit = ccvm_vm_shared_bit(vm);
	ck_assert_int_eq(ccvm_snp_vm_asid(vm, &asid), 0);
}

static void vm_up(void)
{
	vm_up_design(CCVM_SNP_RMP_POSTED);
}

/* A gmem file of @gsize and slot 0 at GPA 0 over @slot_size bytes of it from @off. */
static void slot_up(uint64_t gsize, uint64_t slot_size, uint64_t off)
{
	struct ccvm_memory_region r = {
		.slot = 0,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = 0,
		.memory_size = slot_size,
		.gmem_offset = off,
	};

	if (!gm)
		ck_assert_int_eq(ccvm_gmem_create(vm, gsize, 0, &gm), 0);
	shared_size = slot_size;
	shared = mmap(NULL, shared_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	ck_assert(shared != MAP_FAILED);
	r.userspace_addr = shared;
	r.gmem = gm;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &r), 0);
}

static void setup(void)
{
	platform_up(0);
	vm_up();
	slot_up(MEM_SIZE, MEM_SIZE, 0);
}

static void setup_platform_only(void)
{
	platform_up(4);
}

/* Close what is open and check that the platform is whole again. */
static void teardown(void)
{
	struct ccvm_stats st = { .sz = sizeof(st) };
	uint64_t bad = 0;

	if (gm)
		ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	if (vm)
		ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_get_stats(p, &st), 0);
	ck_assert_msg(st.free_pages + leaks_expected == free_at_start,
		      "free pages %llu, %llu at start", (unsigned long long)st.free_pages,
		      (unsigned long long)free_at_start);
	ck_assert_uint_eq(st.leaked_pages, leaks_expected);
	ck_assert_uint_eq(ccvm_snp_nr_leaked(hw), leaks_expected);
	ck_assert_msg(ccvm_snp_directmap_check(hw, &bad) == 0,
		      "I22: region at pfn %#llx", (unsigned long long)bad);
	ck_assert_msg(tu_warnings() <= warnings_allowed, "%u warnings logged", tu_warnings());
	ccvm_snp_set_update_mem_attr_hook(p, NULL, NULL);
	tu_platform_down(p);
	if (shared)
		munmap(shared, shared_size);
}

/* ---- helpers -------------------------------------------------------------------- */

static uint64_t vm_ev(struct ccvm_vm *v, enum ccvm_event e)
{
	struct ccvm_stats st = { .sz = sizeof(st) };

	if (ccvm_vm_get_stats(v, &st))
		return 0;
	return st.events[e];
}

static struct ccvm_snp_rmp_entry rmp(uint64_t pfn)
{
	struct ccvm_snp_rmp_entry e;

	ck_assert_int_eq(ccvm_snp_rmpread(hw, pfn, &e), CCVM_SNP_SUCCESS);
	return e;
}

/* The entry of @pfn is the guest's private page at @gfn. */
#define assert_rmp_guest(pfn, gfn, validated)	\
	assert_rmp_guest_at((pfn), (gfn), (validated), __LINE__)
static void assert_rmp_guest_at(uint64_t pfn, uint64_t gfn, bool validated, int line)
{
	struct ccvm_snp_rmp_entry e = rmp(pfn);

	ck_assert_msg(e.assigned && e.asid == asid && !e.immutable && !e.vmsa,
		      "line %d: pfn %#llx: assigned %d asid %u immutable %d", line,
		      (unsigned long long)pfn, e.assigned, e.asid, e.immutable);
	ck_assert_msg(e.gpa + ((pfn - e.entry_pfn) << 12) == gfn << 12,
		      "line %d: pfn %#llx expects gpa %#llx, not gfn %#llx", line,
		      (unsigned long long)pfn, (unsigned long long)e.gpa,
		      (unsigned long long)gfn);
	ck_assert_msg(e.validated == validated, "line %d: validated %d", line, e.validated);
}

static void assert_rmp_shared(uint64_t pfn)
{
	struct ccvm_snp_rmp_entry e = rmp(pfn);

	ck_assert_msg(!e.assigned && !e.validated, "pfn %#llx still assigned",
		      (unsigned long long)pfn);
}

static uint64_t gmem_pfn(uint64_t gfn)
{
	uint64_t pfn = 0;

	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, gfn, &pfn), 0);
	return pfn;
}

static uint64_t mapped_pfn(uint64_t gpa)
{
	uint64_t pfn = 0;
	int level = 0;

	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, gpa, &pfn, &level), 0);
	ck_assert_int_eq(level, CCVM_LEVEL_4K);
	return pfn;
}

static void set_attr(uint64_t gpa, uint64_t size, uint64_t attrs)
{
	int r = ccvm_vm_set_memory_attributes(vm, gpa, size, attrs, 0);

	ck_assert_msg(r == 0, "set_memory_attributes(%#llx, %#llx, %#llx): %d",
		      (unsigned long long)gpa, (unsigned long long)size,
		      (unsigned long long)attrs, r);
}

static void punch(uint64_t offset, uint64_t len)
{
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_KEEP_SIZE | CCVM_FALLOC_PUNCH_HOLE,
					     offset, len), 0);
}

/*
 * I1/I2/I8 against the RMP: every private leaf of the slot maps the gmem
 * page of its gfn, which the RMP assigns to the VM at that GPA with a page
 * size no smaller than the leaf; every shared leaf maps VMM memory of a
 * shared gfn.  And I22 over the whole platform.
 */
static void check_mappings_agree_with_rmp(void)
{
	uint64_t gfn, bad = 0;

	for (gfn = 0; gfn < shared_size / PG; gfn++) {
		uint64_t pfn, attrs;
		int level;

		ck_assert_int_eq(ccvm_vm_get_memory_attributes(vm, gfn << 12, &attrs, NULL), 0);
		if (!ccvm_vm_lookup_mapping(vm, gfn << 12, &pfn, &level)) {
			struct ccvm_snp_rmp_entry e = rmp(pfn);

			ck_assert_msg(attrs & PRIV, "gfn %#llx mapped private, attribute shared",
				      (unsigned long long)gfn);
			ck_assert_uint_eq(pfn, gmem_pfn(gfn));
			assert_rmp_guest_at(pfn, gfn, e.validated, __LINE__);
			ck_assert_int_le(level, e.level);
		}
		if (!ccvm_vm_lookup_mapping(vm, (gfn << 12) | sbit, &pfn, &level)) {
			ck_assert_msg(!(attrs & PRIV), "gfn %#llx mapped shared, attribute private",
				      (unsigned long long)gfn);
			ck_assert_uint_eq(pfn, UINT64_MAX);
		}
	}
	ck_assert_msg(ccvm_snp_directmap_check(hw, &bad) == 0, "I22: region at pfn %#llx",
		      (unsigned long long)bad);
}


/* A #VC exit for an unvalidated private page at @gpa. */
#define expect_vc(v, gpa_) do {						\
	struct ccvm_run *r_ = tu_run_once((v), 0, CCVM_EXIT_EXCEPTION);		\
	ck_assert_uint_eq(r_->exception.vector, CCVM_X86_VC_VECTOR);		\
	ck_assert_uint_eq(r_->exception.gpa, (uint64_t)(gpa_));			\
} while (0)

#define expect_memory_fault(v, gpa_, flags_) do {				\
	struct ccvm_run *r_ = tu_run_once((v), -EFAULT, CCVM_EXIT_MEMORY_FAULT);	\
	ck_assert_uint_eq(r_->memory_fault.gpa, (uint64_t)(gpa_));		\
	ck_assert_uint_eq(r_->memory_fault.size, PG);				\
	ck_assert_uint_eq(r_->memory_fault.flags, (uint64_t)(flags_));		\
} while (0)

static struct ccvm_vcpu *vcpu_with_guest(uint32_t id, ccvm_guest_fn fn, void *arg)
{
	struct ccvm_vcpu *v;

	ck_assert_int_eq(ccvm_vcpu_create(vm, id, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, fn, arg), 0);
	return v;
}

static void fill(uint8_t *b, size_t n, uint8_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (uint8_t)(seed + i * 7);
}

static bool all_bytes(const uint8_t *b, size_t n, uint8_t v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i] != v)
			return false;
	return true;
}

/* ---- lifecycle ------------------------------------------------------------------ */

START_TEST(test_caps)
{
	struct ccvm_backend_caps c = { .sz = sizeof(c) };

	ck_assert_int_eq(ccvm_backend_caps("snp", &c), 0);
	ck_assert_str_eq(c.name, "snp");
	ck_assert_uint_eq(c.vm_type, 4);
	ck_assert_uint_eq(c.memory_attributes, PRIV);
	/* What any SNP VM may pass (as on /dev/kvm); a VM's own caps say more. */
	ck_assert_uint_eq(c.gmem_flags, CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED |
					CCVM_GMEM_FLAG_HUGETLB);
	ck_assert(c.has_shared_bit);
	ck_assert(!c.has_mirror_root);
	ck_assert(c.requires_accept);
	ck_assert(c.needs_finalize);
	ck_assert(c.preserves_data_without_punch);
	ck_assert(!c.private_readable_by_host);
	ck_assert_uint_eq(c.private_max_level, CCVM_LEVEL_2M);
	ck_assert_uint_eq(sbit, 1ull << 47);
	/* INIT_SHARED gmem (in-place shared pages) is not for SNP VMs without in place. */
	{
		struct ccvm_gmem *g2;

		ck_assert_int_eq(ccvm_gmem_create(vm, MEM_SIZE, CCVM_GMEM_FLAG_INIT_SHARED, &g2),
				 -EINVAL);
	}
}
END_TEST

START_TEST(test_vm_asid_and_context_page)
{
	uint8_t page[PG], zero[PG];
	struct ccvm_snp_rmp_entry e;
	uint64_t ctx, splits;

	memset(zero, 0, sizeof(zero));
	ck_assert_uint_ge(asid, 1);
	ck_assert_uint_le(asid, CCVM_SNP_DEFAULT_ASIDS);
	ck_assert_int_eq(ccvm_snp_asid_state(hw, asid), CCVM_SNP_ASID_IN_USE);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_KEYID_ALLOC), 1);

	/* SNP_GCTX_CREATE: the firmware owns the context page. */
	ck_assert_int_eq(ccvm_snp_vm_context_pfn(vm, &ctx), 0);
	e = rmp(ctx);
	ck_assert(e.assigned && e.immutable && !e.vmsa);
	ck_assert_uint_eq(e.asid, 0);
	ck_assert_uint_eq(e.level, CCVM_LEVEL_4K);
	/* A 4K firmware page split the 1G and then the 2M host mapping. */
	splits = tu_event(p, CCVM_EV_DIRECTMAP_SPLIT);
	ck_assert_uint_eq(splits, 2);
	ck_assert_int_eq(ccvm_snp_directmap_level(hw, ctx), CCVM_LEVEL_4K);
	ck_assert_int_eq(ccvm_host_write_phys(p, ctx, 0, "x", 1), -EFAULT);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMP_FAULT), 1);
	ck_assert_int_eq(ccvm_host_read_phys(p, ctx, 0, page, PG), 0);
	ck_assert(memcmp(page, zero, PG) != 0);

	/* Wrong kinds of object. */
	ck_assert_int_eq(ccvm_snp_vm_asid(NULL, &e.asid), -EINVAL);
	ck_assert_int_eq(ccvm_snp_vm_context_pfn(vm, NULL), -EINVAL);

	/* Teardown: reclaimed, shared again, ASID waits for a flush. */
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	gm = NULL;
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	vm = NULL;
	assert_rmp_shared(ctx);
	ck_assert_int_eq(ccvm_snp_asid_state(hw, asid), CCVM_SNP_ASID_DIRTY);
	ck_assert_int_eq(ccvm_host_write_phys(p, ctx, 0, zero, 1), 0);
	/* Splits are never merged back. */
	ck_assert_int_eq(ccvm_snp_directmap_level(hw, ctx), CCVM_LEVEL_4K);
}
END_TEST

START_TEST(test_vcpu_vmsa_avoids_2m_aligned_pfn)
{
	uint64_t taken[PER_2M], pfn, vmsa, before;
	struct ccvm_snp_rmp_entry e;
	struct ccvm_vcpu *v;
	unsigned int n = 0, i;

	/* Take pages until the allocator's next one is 2M aligned. */
	for (;;) {
		ck_assert_int_eq(ccvm_page_alloc(p, &pfn), 0);
		taken[n++] = pfn;
		if ((pfn + 1) % PER_2M == 0)
			break;
		ck_assert_uint_lt(n, PER_2M);
	}
	before = tu_free_pages(p);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_snp_vcpu_vmsa_pfn(v, &vmsa), 0);
	/* snp_safe_alloc_page(): the aligned page went back. */
	ck_assert_uint_ne(vmsa % PER_2M, 0);
	ck_assert_uint_eq(tu_free_pages(p), before - 1);
	ck_assert_uint_eq(vmsa, pfn + 2);
	e = rmp(vmsa);
	ck_assert(e.assigned && e.immutable && e.vmsa && e.validated);
	ck_assert_uint_eq(e.asid, asid);
	ck_assert_uint_eq(e.gpa, VMSA_GPA);
	ck_assert_int_eq(ccvm_host_write_phys(p, vmsa, 0, "x", 1), -EFAULT);
	for (i = 0; i < n; i++)
		ccvm_page_free(p, taken[i]);

	/* Closing the handle keeps the vCPU's state until VM teardown, as KVM. */
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	e = rmp(vmsa);
	ck_assert(e.assigned && e.vmsa);
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	gm = NULL;
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	vm = NULL;
	assert_rmp_shared(vmsa);
}
END_TEST

START_TEST(test_reclaim_failure_leaks_and_bugs)
{
	uint64_t ctx;

	/* Firmware already gave the context page up: the teardown reclaim fails. */
	ck_assert_int_eq(ccvm_snp_vm_context_pfn(vm, &ctx), 0);
	ck_assert_int_eq(ccvm_snp_fw_page_reclaim(hw, NULL, ctx), 0);
	warnings_allowed = 8;
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	gm = NULL;
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	vm = NULL;
	ck_assert_uint_ge(tu_warnings(), 1);
	ck_assert_uint_eq(ccvm_snp_nr_leaked(hw), 1);
	{
		uint64_t leaked;
		struct ccvm_stats st = { .sz = sizeof(st) };

		ck_assert_int_eq(ccvm_snp_leaked_pfn(hw, 0, &leaked), 0);
		ck_assert_uint_eq(leaked, ctx);
		ck_assert_int_eq(ccvm_platform_get_stats(p, &st), 0);
		ck_assert_uint_eq(st.leaked_pages, 1);
		ck_assert_uint_eq(st.free_pages, free_at_start - 1);
	}
	leaks_expected = 1;
}
END_TEST

START_TEST(test_asid_exhaustion_and_reuse)
{
	struct ccvm_vm *vms[5];
	uint32_t a[5], i, flushes;
	uint64_t before;

	/* Four ASIDs on this platform. */
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(ccvm_vm_create(p, NULL, &vms[i]), 0);
		ck_assert_int_eq(ccvm_snp_vm_asid(vms[i], &a[i]), 0);
		ck_assert_uint_eq(a[i], i + 1);
	}
	before = tu_free_pages(p);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vms[4]), -ENOSPC);
	ck_assert_uint_eq(tu_free_pages(p), before);

	/* A freed ASID waits for WBINVD + DF_FLUSH before it is handed out. */
	ck_assert_int_eq(ccvm_vm_close(vms[1]), 0);
	ck_assert_int_eq(ccvm_snp_asid_state(hw, 2), CCVM_SNP_ASID_DIRTY);
	flushes = (uint32_t)tu_event(p, CCVM_EV_ASID_FLUSH);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vms[1]), 0);
	ck_assert_int_eq(ccvm_snp_vm_asid(vms[1], &a[1]), 0);
	ck_assert_uint_eq(a[1], 2);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_ASID_FLUSH), flushes + 1);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vms[4]), -ENOSPC);

	/* With a clean one left, a dirty one is not reused. */
	ck_assert_int_eq(ccvm_vm_close(vms[0]), 0);
	ck_assert_int_eq(ccvm_vm_close(vms[3]), 0);
	ck_assert_int_eq(ccvm_snp_asid_flush(hw), 2);
	ck_assert_int_eq(ccvm_vm_close(vms[2]), 0);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vms[0]), 0);
	ck_assert_int_eq(ccvm_snp_vm_asid(vms[0], &a[0]), 0);
	ck_assert_uint_eq(a[0], 1);
	ck_assert_int_eq(ccvm_snp_asid_state(hw, 3), CCVM_SNP_ASID_DIRTY);

	ck_assert_int_eq(ccvm_vm_close(vms[0]), 0);
	ck_assert_int_eq(ccvm_vm_close(vms[1]), 0);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_KEYID_FREE), tu_event(p, CCVM_EV_KEYID_ALLOC));
}
END_TEST

/* ---- launch --------------------------------------------------------------------- */

struct launch_guest {
	uint8_t src[2 * PG];
};

static void guest_launched(struct ccvm_guest *g, void *arg)
{
	struct launch_guest *l = arg;
	uint8_t buf[2 * PG];

	/* Launched pages are validated by the firmware: no PVALIDATE needed. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 0x10000, buf, sizeof(buf)) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(buf, l->src, sizeof(buf)) == 0);
	/* Validating one again is the guest's bug, reported to it. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0x10000, PG) == -EEXIST);
	ccvm_guest_sync(g, 1);
}

START_TEST(test_populate_rules)
{
	static struct launch_guest l;
	uint8_t page[PG];
	uint64_t pfn0, pfn1, updates;
	struct ccvm_vcpu *v;

	fill(l.src, sizeof(l.src), 3);
	set_attr(0x10000, 4 * PG, PRIV);
	updates = vm_ev(vm, CCVM_EV_RMPUPDATE);
	ck_assert_int_eq(ccvm_vm_populate(vm, 0x10000, l.src, 2 * PG, 0), 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 2);
	pfn0 = gmem_pfn(0x10);
	pfn1 = gmem_pfn(0x11);
	assert_rmp_guest(pfn0, 0x10, true);
	assert_rmp_guest(pfn1, 0x11, true);
	ck_assert(memcmp(ccvm_page_ptr(p, pfn1), l.src + PG, PG) == 0);
	/* Nothing is mapped by populate on SNP: the guest's faults map it. */
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 0x10000, NULL, NULL), -ENOENT);

	/* Once per page. */
	ck_assert_int_eq(ccvm_vm_populate(vm, 0x11000, l.src, PG, 0), -EEXIST);
	/* Page by page up to the first error: 0x13 is populated, 0x14 shared. */
	ck_assert_int_eq(ccvm_vm_populate(vm, 0x12000, l.src, PG, 0), 0);
	ck_assert_int_eq(ccvm_vm_populate(vm, 0x13000, l.src, 2 * PG, 0), -EINVAL);
	assert_rmp_guest(gmem_pfn(0x13), 0x13, true);
	/* Only private gfns, never through the shared alias. */
	ck_assert_int_eq(ccvm_vm_populate(vm, 0x20000, l.src, PG, 0), -EINVAL);
	ck_assert_int_eq(ccvm_vm_populate(vm, 0x14000 | sbit, l.src, PG, 0), -EINVAL);
	/* The host cannot write a launched page, and reads ciphertext. */
	ck_assert_int_eq(ccvm_host_write_phys(p, pfn0, 0, page, 8), -EFAULT);
	ck_assert_int_eq(ccvm_host_read_phys(p, pfn0, 0, page, PG), 0);
	ck_assert(memcmp(page, l.src, PG) != 0);

	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	ck_assert_int_eq(ccvm_vm_finalize(vm), -EINVAL);
	set_attr(0x14000, PG, PRIV);
	ck_assert_int_eq(ccvm_vm_populate(vm, 0x14000, l.src, PG, 0), -EINVAL);

	v = vcpu_with_guest(0, guest_launched, &l);
	tu_expect_sync(v, 1);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMP_NPF), 0);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	check_mappings_agree_with_rmp();
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- guest accesses ------------------------------------------------------------- */

#define G_BASIC		0x5000ull

static void guest_basic(struct ccvm_guest *g, void *arg)
{
	uint8_t w[64], r[64];

	(void)arg;
	fill(w, sizeof(w), 9);
	/* Not validated yet: #VC, which the guest handles by PVALIDATE. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, G_BASIC, r, sizeof(r)) == -EACCES);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, G_BASIC, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, G_BASIC + 100, w, sizeof(w)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, G_BASIC + 100, r, sizeof(r)) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(w, r, sizeof(r)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, G_BASIC, PG) == -EEXIST);
	ccvm_guest_sync(g, 1);
}

START_TEST(test_fault_prepare_pvalidate_access)
{
	uint64_t updates, pfn, prepares;
	struct ccvm_vcpu *v;

	set_attr(0, 16 * PG, PRIV);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	v = vcpu_with_guest(0, guest_basic, NULL);
	updates = vm_ev(vm, CCVM_EV_RMPUPDATE);

	expect_vc(v, G_BASIC);
	pfn = mapped_pfn(G_BASIC);
	ck_assert_uint_eq(pfn, gmem_pfn(G_BASIC >> 12));
	assert_rmp_guest(pfn, G_BASIC >> 12, false);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 1);

	tu_expect_sync(v, 1);
	assert_rmp_guest(pfn, G_BASIC >> 12, true);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_PVALIDATE), 2);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMP_NPF), 0);
	/* gmem_prepare runs on every get and changes nothing the second time. */
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 1);
	prepares = vm_ev(vm, CCVM_EV_GMEM_PREPARE);
	ck_assert_uint_ge(prepares, 1);
	ck_assert_int_eq(ccvm_snp_backend_ops.gmem_prepare(vm, pfn, G_BASIC >> 12, 0), 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 1);
	assert_rmp_guest(pfn, G_BASIC >> 12, true);

	/* The guest's bytes are in the page; the host sees something else. */
	{
		uint8_t w[64], h[64];

		fill(w, sizeof(w), 9);
		ck_assert(memcmp((uint8_t *)ccvm_page_ptr(p, pfn) + 100, w, 64) == 0);
		ck_assert_int_eq(ccvm_host_read_phys(p, pfn, 100, h, 64), 0);
		ck_assert(memcmp(h, w, 64) != 0);
	}
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	check_mappings_agree_with_rmp();
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

#define G_PRIV		0x3000ull	/* private attribute */
#define G_SHRD		0x4000ull	/* shared attribute */

static void guest_mismatch(struct ccvm_guest *g, void *arg)
{
	uint64_t sb = ccvm_guest_shared_bit(g);
	uint8_t w[16], r[16];

	(void)arg;
	fill(w, sizeof(w), 1);
	/* Private access to a shared gfn: memory-fault exit, VMM converts. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, G_SHRD, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, G_SHRD, w, sizeof(w)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, G_SHRD, r, sizeof(r)) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(w, r, sizeof(r)) == 0);
	/* Shared access (C-bit clear) to a private gfn: exit too. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, G_PRIV | sb, w, sizeof(w)) == 0);
	ccvm_guest_sync(g, 1);
}

START_TEST(test_memory_fault_exits)
{
	uint8_t w[16];
	struct ccvm_vcpu *v;
	uint64_t npf;

	fill(w, sizeof(w), 1);
	set_attr(G_PRIV, PG, PRIV);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	v = vcpu_with_guest(0, guest_mismatch, NULL);
	npf = vm_ev(vm, CCVM_EV_RMP_NPF);

	expect_memory_fault(v, G_SHRD, CCVM_MEMORY_EXIT_FLAG_PRIVATE);
	set_attr(G_SHRD, PG, PRIV);
	expect_memory_fault(v, G_PRIV, 0);
	set_attr(G_PRIV, PG, 0);
	tu_expect_sync(v, 1);
	/* The shared write went to the VMM's own memory, not to gmem. */
	ck_assert(memcmp(shared + G_PRIV, w, sizeof(w)) == 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMP_NPF), npf);
	assert_rmp_guest(mapped_pfn(G_SHRD), G_SHRD >> 12, true);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	check_mappings_agree_with_rmp();
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- host accesses -------------------------------------------------------------- */

#define G_HOST		0x7000ull

static void guest_host_test(struct ccvm_guest *g, void *arg)
{
	uint8_t w[PG], r[PG];

	(void)arg;
	fill(w, sizeof(w), 42);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, G_HOST, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, G_HOST, w, PG) == 0);
	ccvm_guest_sync(g, 1);
	/* The host's write failed: the page is as the guest left it. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, G_HOST, r, PG) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(w, r, PG) == 0);
	ccvm_guest_sync(g, 2);
	/* Back from shared without a punch: the host's bytes, after PVALIDATE. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, G_HOST, r, 8) == -EACCES);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, G_HOST, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, G_HOST, r, 8) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(r, "hostdata", 8) == 0);
	ccvm_guest_sync(g, 3);
}

START_TEST(test_host_access_private_shared_freed)
{
	uint8_t w[PG], h[PG];
	uint64_t pfn, faults, flushes;
	struct ccvm_vcpu *v;
	size_t i;

	fill(w, sizeof(w), 42);
	set_attr(0, MEM_SIZE, PRIV);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	v = vcpu_with_guest(0, guest_host_test, NULL);
	tu_expect_sync(v, 1);
	pfn = mapped_pfn(G_HOST);

	/* Private: reads are ciphertext (no byte equal), writes are RMP faults. */
	ck_assert_int_eq(ccvm_host_read_phys(p, pfn, 0, h, PG), 0);
	for (i = 0; i < PG; i++)
		ck_assert_msg(h[i] != w[i], "byte %zu of ciphertext equals the plaintext", i);
	faults = tu_event(p, CCVM_EV_RMP_FAULT);
	ck_assert_int_eq(ccvm_host_write_phys(p, pfn, 8, "host", 4), -EFAULT);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMP_FAULT), faults + 1);
	ck_assert(memcmp(ccvm_page_ptr(p, pfn), w, PG) == 0);
	/* Its shared 4K neighbour in the same 2M region is writable (I22). */
	ck_assert_int_eq(ccvm_snp_directmap_level(hw, pfn), CCVM_LEVEL_4K);
	tu_expect_sync(v, 2);

	/* Shared (converted, not punched): plaintext, writable. */
	flushes = tu_event(p, CCVM_EV_CACHE_FLUSH_PAGE);
	set_attr(G_HOST, PG, 0);
	assert_rmp_shared(pfn);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_CACHE_FLUSH_PAGE), flushes + 1);
	ck_assert_int_eq(ccvm_host_read_phys(p, pfn, 0, h, PG), 0);
	ck_assert(memcmp(h, w, PG) == 0);
	ck_assert_int_eq(ccvm_host_write_phys(p, pfn, 0, "hostdata", 8), 0);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMP_FAULT), faults + 1);
	set_attr(G_HOST, PG, PRIV);
	assert_rmp_guest(pfn, G_HOST >> 12, false);
	expect_vc(v, G_HOST);
	tu_expect_sync(v, 3);

	/* Freed (punched): shared again after a flush, zeroed, writable. */
	flushes = tu_event(p, CCVM_EV_CACHE_FLUSH_PAGE);
	punch(G_HOST, PG);
	assert_rmp_shared(pfn);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_CACHE_FLUSH_PAGE), flushes + 1);
	ck_assert_int_eq(ccvm_host_read_phys(p, pfn, 0, h, PG), 0);
	ck_assert(all_bytes(h, PG, 0));
	memset(h, 0, 8);
	ck_assert_int_eq(ccvm_host_write_phys(p, pfn, 0, h, 8), 0);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMP_FAULT), faults + 1);

	tu_run_once(v, 0, CCVM_EXIT_DONE);
	check_mappings_agree_with_rmp();
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

START_TEST(test_directmap_splits_counted_never_merged)
{
	uint64_t gfn, a = UINT64_MAX, splits, gpa, size;
	struct ccvm_vcpu *v;

	set_attr(0, MEM_SIZE, PRIV);
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_KEEP_SIZE, 0, MEM_SIZE), 0);
	/* Allocating does not prepare: nothing is private, nothing split. */
	for (gfn = 0; gfn < MEM_PAGES; gfn++)
		assert_rmp_shared(gmem_pfn(gfn));
	/* A gfn whose page starts a 2M host region nobody split yet. */
	for (gfn = 0; gfn < MEM_PAGES - 2; gfn++) {
		uint64_t pfn = gmem_pfn(gfn);

		if (pfn % PER_2M == 0 && ccvm_snp_directmap_level(hw, pfn) == CCVM_LEVEL_2M) {
			a = gfn;
			break;
		}
	}
	ck_assert_uint_ne(a, UINT64_MAX);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);

	splits = tu_event(p, CCVM_EV_DIRECTMAP_SPLIT);
	gpa = a << 12;
	size = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_DIRECTMAP_SPLIT), splits + 1);
	ck_assert_int_eq(ccvm_snp_directmap_level(hw, gmem_pfn(a)), CCVM_LEVEL_4K);
	assert_rmp_guest(gmem_pfn(a), a, false);
	/* The same region again: already 4K, nothing to count. */
	gpa = (a + 1) << 12;
	size = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_DIRECTMAP_SPLIT), splits + 1);
	check_mappings_agree_with_rmp();

	/* Shared again and freed: the split stays. */
	set_attr(a << 12, 2 * PG, 0);
	punch(a << 12, 2 * PG);
	ck_assert_int_eq(ccvm_snp_directmap_level(hw, gmem_pfn(a + 2)), CCVM_LEVEL_4K);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_DIRECTMAP_SPLIT), splits + 1);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- conversions ---------------------------------------------------------------- */

#define G_CONV		0x8000ull
#define CONV_PAGES	3

struct conv_guest {
	bool punched;
};

static void guest_round_trip(struct ccvm_guest *g, void *arg)
{
	struct conv_guest *c = arg;
	uint64_t sb = ccvm_guest_shared_bit(g);
	uint8_t d[CONV_PAGES * PG], r[CONV_PAGES * PG], s[64];

	fill(d, sizeof(d), 77);
	fill(s, sizeof(s), 5);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, G_CONV, sizeof(d)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, G_CONV, d, sizeof(d)) == 0);
	/* Page-state change to shared (C-bit clear names the alias). */
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, G_CONV | sb, sizeof(d), false) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, G_CONV | sb, s, sizeof(s)) == 0);
	/* And back to private. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, G_CONV, sizeof(d), true) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, G_CONV, r, 8) == -EACCES);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, G_CONV, sizeof(d)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, G_CONV, r, sizeof(r)) == 0);
	if (c->punched)
		CCVM_GUEST_ASSERT(g, all_bytes(r, sizeof(r), 0));
	else
		CCVM_GUEST_ASSERT(g, memcmp(r, d, sizeof(r)) == 0);
	ccvm_guest_sync(g, 1);
}

static void round_trip(bool punched)
{
	static struct conv_guest c;
	uint64_t pfn[CONV_PAGES], i, free_before;
	struct ccvm_run *run;
	struct ccvm_vcpu *v;
	uint8_t s[64];

	c.punched = punched;
	fill(s, sizeof(s), 5);
	set_attr(0, MEM_SIZE, PRIV);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	v = vcpu_with_guest(0, guest_round_trip, &c);

	/* PSC to shared: one MAP_GPA_RANGE exit, gpa without the C-bit. */
	run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
	ck_assert_uint_eq(run->hypercall.nr, CCVM_HC_MAP_GPA_RANGE);
	ck_assert_uint_eq(run->hypercall.args[0], G_CONV);
	ck_assert_uint_eq(run->hypercall.args[1], CONV_PAGES);
	ck_assert_uint_eq(run->hypercall.args[2],
			  CCVM_MAP_GPA_RANGE_DECRYPTED | CCVM_MAP_GPA_RANGE_PAGE_SZ_4K);
	/* The guest rescinded each page's validation before it asked. */
	for (i = 0; i < CONV_PAGES; i++) {
		pfn[i] = mapped_pfn(G_CONV + i * PG);
		assert_rmp_guest(pfn[i], (G_CONV >> 12) + i, false);
	}
	set_attr(run->hypercall.args[0], run->hypercall.args[1] * PG, 0);
	/* Shared now: any RMPUPDATE clears validated. */
	for (i = 0; i < CONV_PAGES; i++)
		assert_rmp_shared(pfn[i]);
	free_before = tu_free_pages(p);
	if (punched) {
		punch(G_CONV, CONV_PAGES * PG);
		ck_assert_uint_eq(tu_free_pages(p), free_before + CONV_PAGES);
	}
	run->hypercall.ret = 0;

	run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
	ck_assert_uint_eq(run->hypercall.nr, CCVM_HC_MAP_GPA_RANGE);
	ck_assert_uint_eq(run->hypercall.args[0], G_CONV);
	ck_assert_uint_eq(run->hypercall.args[1], CONV_PAGES);
	ck_assert_uint_eq(run->hypercall.args[2],
			  CCVM_MAP_GPA_RANGE_ENCRYPTED | CCVM_MAP_GPA_RANGE_PAGE_SZ_4K);
	ck_assert(memcmp(shared + G_CONV, s, sizeof(s)) == 0);
	set_attr(G_CONV, CONV_PAGES * PG, PRIV);
	for (i = 0; i < CONV_PAGES; i++) {
		uint64_t now;

		if (punched) {
			ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, (G_CONV >> 12) + i, &now),
					 -ENOENT);
		} else {
			/* The same folio, assigned again, to be validated again. */
			ck_assert_uint_eq(gmem_pfn((G_CONV >> 12) + i), pfn[i]);
			assert_rmp_guest(pfn[i], (G_CONV >> 12) + i, false);
		}
	}
	run->hypercall.ret = 0;

	expect_vc(v, G_CONV);
	tu_expect_sync(v, 1);
	for (i = 0; i < CONV_PAGES; i++)
		assert_rmp_guest(mapped_pfn(G_CONV + i * PG), (G_CONV >> 12) + i, true);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	check_mappings_agree_with_rmp();
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}

START_TEST(test_round_trip_without_punch_keeps_data)
{
	round_trip(false);
}
END_TEST

START_TEST(test_round_trip_with_punch_zeroes)
{
	round_trip(true);
}
END_TEST

/*
 * update_mem_attr failing (issue 16 #1): the call returns the error with
 * nothing changed.  The range spans two memslots; the backend's update of
 * the first succeeded (its pages went shared in the RMP) before the
 * second's failed, so the rollback must make the attribute private again
 * and the first slot's pages assigned again (to be validated again, as
 * after any round trip).  If the rollback fails too, the VM is bugged and
 * the call returns -EIO.
 */
#define ROLL_PAGES	4
#define ROLL_GPA	(MEM_SIZE - ROLL_PAGES * PG)	/* spans slot 0 and slot 1 */

static void rollback_setup(struct ccvm_gmem **gm2, uint8_t **shared2, struct ccvm_vcpu **v,
			   uint64_t *pfn)
{
	struct ccvm_memory_region r = {
		.slot = 1,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = MEM_SIZE,
		.memory_size = 2 * MIB,
	};
	uint64_t gpa = ROLL_GPA, size = 2 * ROLL_PAGES * PG, i;

	ck_assert_int_eq(ccvm_gmem_create(vm, 2 * MIB, 0, gm2), 0);
	*shared2 = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	ck_assert(*shared2 != MAP_FAILED);
	r.userspace_addr = *shared2;
	r.gmem = *gm2;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &r), 0);
	set_attr(0, MEM_SIZE + 2 * MIB, PRIV);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, v), 0);
	while (size)
		ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(*v, &gpa, &size), 0);
	for (i = 0; i < 2 * ROLL_PAGES; i++) {
		pfn[i] = gmem_pfn((ROLL_GPA >> 12) + i);
		assert_rmp_guest(pfn[i], (ROLL_GPA >> 12) + i, false);
	}
}

static void rollback_teardown(struct ccvm_gmem *gm2, uint8_t *shared2, struct ccvm_vcpu *v)
{
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(ccvm_gmem_close(gm2), 0);
	munmap(shared2, 2 * MIB);
}

START_TEST(test_update_mem_attr_failure_rolls_back)
{
	uint64_t pfn[2 * ROLL_PAGES], i, attrs, run;
	struct ccvm_invariant_report rep = { .sz = sizeof(rep) };
	struct ccvm_gmem *gm2;
	struct ccvm_vcpu *v;
	uint8_t *shared2;

	rollback_setup(&gm2, &shared2, &v, pfn);
	/* Slot 0's update goes through, slot 1's fails. */
	ck_assert_int_eq(ccvm_inject_op_failure(p, "update_mem_attr", 2, -ENOMEM, 1), 0);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, ROLL_GPA, 2 * ROLL_PAGES * PG, 0, 0),
			 -ENOMEM);
	ck_assert(!ccvm_vm_is_bugged(vm));
	ck_assert_int_eq(ccvm_vm_get_memory_attributes(vm, 0, &attrs, &run), 0);
	ck_assert_uint_eq(attrs, PRIV);
	ck_assert_uint_eq(run, MEM_SIZE + 2 * MIB);
	for (i = 0; i < 2 * ROLL_PAGES; i++) {
		ck_assert_uint_eq(gmem_pfn((ROLL_GPA >> 12) + i), pfn[i]);
		assert_rmp_guest(pfn[i], (ROLL_GPA >> 12) + i, false);
	}
	ck_assert_int_eq(ccvm_vm_check_invariants(vm, &rep), 0);
	ck_assert_msg(rep.invariant == 0, "I%u: %s", rep.invariant, rep.msg);
	/* And the same call without the failure works. */
	set_attr(ROLL_GPA, 2 * ROLL_PAGES * PG, 0);
	for (i = 0; i < 2 * ROLL_PAGES; i++)
		assert_rmp_shared(pfn[i]);
	rollback_teardown(gm2, shared2, v);
}
END_TEST

START_TEST(test_update_mem_attr_rollback_failure_bugs_vm)
{
	uint64_t pfn[2 * ROLL_PAGES];
	struct ccvm_gmem *gm2;
	struct ccvm_vcpu *v;
	uint8_t *shared2;

	rollback_setup(&gm2, &shared2, &v, pfn);
	/* Every update fails from the second on: the rollback's too. */
	ck_assert_int_eq(ccvm_inject_op_failure(p, "update_mem_attr", 2, -ENOMEM, 0), 0);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, ROLL_GPA, 2 * ROLL_PAGES * PG, 0, 0),
			 -EIO);
	ck_assert(ccvm_vm_is_bugged(vm));
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 0, PG, 0, 0), -EIO);
	ck_assert_int_eq(ccvm_inject_op_failure(p, "update_mem_attr", 0, 0, 0), 0);
	warnings_allowed = 1000;
	rollback_teardown(gm2, shared2, v);
}
END_TEST

static void guest_psc(struct ccvm_guest *g, void *arg)
{
	uint64_t sb = ccvm_guest_shared_bit(g);

	(void)arg;
	/* 600 pages from an unaligned GPA: 4K entries only, 253 a request. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, PG | sb, 600 * PG, false) == 0);
	/* 1000 pages from 0: one 2M entry, then 4K entries. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, 0, 1000 * PG, true) == 0);
	/* The VMM refuses: an error back to the guest. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, 0, PG, false) == -EINVAL);
	ccvm_guest_sync(g, 1);
}

#define DEC_4K	(CCVM_MAP_GPA_RANGE_DECRYPTED | CCVM_MAP_GPA_RANGE_PAGE_SZ_4K)
#define ENC_4K	(CCVM_MAP_GPA_RANGE_ENCRYPTED | CCVM_MAP_GPA_RANGE_PAGE_SZ_4K)
#define ENC_2M	(CCVM_MAP_GPA_RANGE_ENCRYPTED | CCVM_MAP_GPA_RANGE_PAGE_SZ_2M)

START_TEST(test_psc_exits_coalesced_per_request)
{
	static const struct { uint64_t gpa, npages, attrs; } want[] = {
		{ PG, 253, DEC_4K },			/* request 1: 253 4K entries */
		{ PG + 253 * PG, 253, DEC_4K },		/* request 2 */
		{ PG + 506 * PG, 94, DEC_4K },		/* request 3 */
		{ 0, 512, ENC_2M },			/* request 1: one 2M entry, */
		{ 2 * MIB, 252, ENC_4K },		/* then 252 4K entries */
		{ 2 * MIB + 252 * PG, 236, ENC_4K },	/* request 2 */
		{ 0, 1, DEC_4K },			/* refused by the VMM */
	};
	struct ccvm_vcpu *v;
	unsigned int i;

	set_attr(0, MEM_SIZE, PRIV);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	v = vcpu_with_guest(0, guest_psc, NULL);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct ccvm_run *run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);

		ck_assert_uint_eq(run->hypercall.nr, CCVM_HC_MAP_GPA_RANGE);
		ck_assert_msg(run->hypercall.args[0] == want[i].gpa &&
			      run->hypercall.args[1] == want[i].npages &&
			      run->hypercall.args[2] == want[i].attrs,
			      "exit %u: gpa %#llx npages %llu attrs %#llx", i,
			      (unsigned long long)run->hypercall.args[0],
			      (unsigned long long)run->hypercall.args[1],
			      (unsigned long long)run->hypercall.args[2]);
		if (i == 6) {
			run->hypercall.ret = EINVAL;
			continue;
		}
		set_attr(run->hypercall.args[0], run->hypercall.args[1] * PG,
			 (run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED) ? PRIV : 0);
		run->hypercall.ret = 0;
	}
	tu_expect_sync(v, 1);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_HYPERCALL_EXIT), 7);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- 2M RMP entries ------------------------------------------------------------- */

static uint64_t base_pfn;	/* pfn of gfn 0; 2M aligned, the slot's pages contiguous */
static uint64_t huge_off;	/* gmem offset of gfn 0 */

/*
 * gmem of 8 MiB, every page allocated, and slot 0 at GPA 0 over the 4 MiB
 * of it whose pages are physically contiguous from a 2M-aligned pfn: the
 * layout a 2M gmem folio would give the first two 2M gfn blocks.
 */
static void setup_huge(void)
{
	uint64_t first, k, i;

	platform_up(0);
	vm_up();
	ck_assert_int_eq(ccvm_gmem_create(vm, 2 * MEM_SIZE, 0, &gm), 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_KEEP_SIZE, 0, 2 * MEM_SIZE), 0);
	first = CCVM_GMEM_PFN(ccvm_gmem_pages_load(gm->inode, 0));
	k = (PER_2M - first % PER_2M) % PER_2M;
	for (i = 0; i < MEM_PAGES; i++)
		ck_assert_uint_eq(CCVM_GMEM_PFN(ccvm_gmem_pages_load(gm->inode, k + i)),
				  first + k + i);
	base_pfn = first + k;
	huge_off = k * PG;
	ck_assert_uint_eq(base_pfn % PER_2M, 0);
	/* Private before the slot exists, so no page is converted yet. */
	set_attr(0, MEM_SIZE, PRIV);
	slot_up(2 * MEM_SIZE, MEM_SIZE, k * PG);
	assert_rmp_shared(base_pfn);
	ck_assert_uint_eq(gmem_pfn(0), base_pfn);
}

static int prepare_op(uint64_t gfn, int order)
{
	return ccvm_snp_backend_ops.gmem_prepare(vm, base_pfn + gfn, gfn, order);
}

START_TEST(test_prepare_2m_rules)
{
	const struct ccvm_backend_ops *ops = &ccvm_snp_backend_ops;
	struct ccvm_snp_rmp_entry e;
	uint64_t updates;

	/* A 2M folio over a wholly shared region: one 2M entry. */
	ck_assert_int_eq(prepare_op(0, 9), 0);
	e = rmp(base_pfn + 7);
	ck_assert(e.assigned && !e.validated);
	ck_assert_uint_eq(e.level, CCVM_LEVEL_2M);
	ck_assert_uint_eq(e.entry_pfn, base_pfn);
	ck_assert_uint_eq(e.gpa, 0);
	assert_rmp_guest(base_pfn + 7, 7, false);
	/* The NPT level never exceeds the RMP entry (I8). */
	ck_assert_int_eq(ops->max_mapping_level(vm, base_pfn + 7, true), CCVM_LEVEL_2M);
	ck_assert_int_eq(ops->max_mapping_level(vm, base_pfn + PER_2M, true), CCVM_LEVEL_4K);
	ck_assert_int_eq(ops->max_mapping_level(vm, UINT64_MAX, false), 0);
	/* Every page of it is prepared already. */
	updates = vm_ev(vm, CCVM_EV_RMPUPDATE);
	ck_assert_int_eq(prepare_op(7, 0), 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates);

	/* A region already holding a 4K entry gets 4K entries. */
	ck_assert_int_eq(prepare_op(PER_2M + 3, 0), 0);
	ck_assert_int_eq(prepare_op(PER_2M, 9), 0);
	e = rmp(base_pfn + PER_2M);
	ck_assert_uint_eq(e.level, CCVM_LEVEL_4K);
	ck_assert_uint_eq(e.region_assigned_4k, 2);
	ck_assert_int_eq(ops->max_mapping_level(vm, base_pfn + PER_2M, true), CCVM_LEVEL_4K);
	/* Misaligned: 4K. */
	ck_assert_int_eq(prepare_op(PER_2M + 5, 9), 0);
	ck_assert_uint_eq(rmp(base_pfn + PER_2M + 5).level, CCVM_LEVEL_4K);

	/* A shared gfn is not prepared (the fault asking is stale). */
	set_attr((PER_2M + 9) * PG, PG, 0);
	ck_assert_int_eq(prepare_op(PER_2M + 9, 0), 0);
	assert_rmp_shared(base_pfn + PER_2M + 9);
	/* A page that belongs to someone else is an error, not stolen. */
	{
		uint64_t ctx;

		ck_assert_int_eq(ccvm_snp_vm_context_pfn(vm, &ctx), 0);
		warnings_allowed = 1;
		ck_assert_int_eq(ops->gmem_prepare(vm, ctx, PER_2M + 10, 0), -EINVAL);
		ck_assert(rmp(ctx).immutable);
	}

	/* A guest fault maps it 4K (order-0 folios) under the 2M entry. */
	{
		struct ccvm_vcpu *v;
		uint64_t gpa = 7 * PG, size = PG, pfn;
		int level;

		ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
		ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
		ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
		ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 7 * PG, &pfn, &level), 0);
		ck_assert_uint_eq(pfn, base_pfn + 7);
		ck_assert_int_eq(level, CCVM_LEVEL_4K);
		ck_assert_uint_eq(rmp(base_pfn + 7).level, CCVM_LEVEL_2M);
		check_mappings_agree_with_rmp();
		ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	}
}
END_TEST

static void guest_pvalidate_in_2m(struct ccvm_guest *g, void *arg)
{
	uint8_t b[8];

	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 5 * PG, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, 5 * PG, "in2m", 4) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 6 * PG, b, 8) == -EACCES);
	ccvm_guest_sync(g, 1);
}

START_TEST(test_pvalidate_4k_inside_2m_psmashes)
{
	struct ccvm_snp_rmp_entry e;
	struct ccvm_vcpu *v;
	uint64_t psmash;

	ck_assert_int_eq(prepare_op(0, 9), 0);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	v = vcpu_with_guest(0, guest_pvalidate_in_2m, NULL);
	psmash = vm_ev(vm, CCVM_EV_PSMASH);
	expect_vc(v, 6 * PG);
	tu_expect_sync(v, 1);
	/* Size mismatch: KVM PSMASHed the 2M entry, the retry validated 4K. */
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_PSMASH), psmash + 1);
	e = rmp(base_pfn);
	ck_assert_uint_eq(e.level, CCVM_LEVEL_4K);
	ck_assert_uint_eq(e.region_assigned_4k, PER_2M);
	assert_rmp_guest(base_pfn + 5, 5, true);
	assert_rmp_guest(base_pfn + 6, 6, false);
	assert_rmp_guest(base_pfn + 511, 511, false);
	ck_assert_int_eq(ccvm_snp_backend_ops.max_mapping_level(vm, base_pfn + 5, true),
			 CCVM_LEVEL_4K);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	check_mappings_agree_with_rmp();
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

START_TEST(test_punch_inside_2m_psmashes_first)
{
	uint64_t psmash, updates, flushes;

	ck_assert_int_eq(prepare_op(0, 9), 0);
	ck_assert_int_eq(prepare_op(PER_2M, 9), 0);
	ck_assert_uint_eq(rmp(base_pfn + PER_2M).level, CCVM_LEVEL_2M);

	/* One 4K page inside a 2M entry: PSMASH, then a 4K RMPUPDATE (I24). */
	psmash = tu_event(p, CCVM_EV_PSMASH);
	updates = tu_event(p, CCVM_EV_RMPUPDATE);
	punch(huge_off + 5 * PG, PG);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_PSMASH), psmash + 1);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMPUPDATE), updates + 1);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMPUPDATE_RETRY), 0);
	assert_rmp_shared(base_pfn + 5);
	assert_rmp_guest(base_pfn + 6, 6, false);
	ck_assert_uint_eq(rmp(base_pfn + 6).level, CCVM_LEVEL_4K);
	ck_assert_uint_eq(rmp(base_pfn).region_assigned_4k, PER_2M - 1);

	/*
	 * gmem frees order-0 pages, so a punch of a whole 2M entry still
	 * frees 4K pages: PSMASH, then 512 4K RMPUPDATEs.
	 */
	psmash = tu_event(p, CCVM_EV_PSMASH);
	updates = tu_event(p, CCVM_EV_RMPUPDATE);
	punch(huge_off + 16 * PG, (PER_2M - 16) * PG);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_PSMASH), psmash);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMPUPDATE), updates + PER_2M - 16);
	assert_rmp_shared(base_pfn + 100);

	/* The free of a 2M folio: one 2M RMPUPDATE, no PSMASH, 512 flushes. */
	psmash = tu_event(p, CCVM_EV_PSMASH);
	updates = tu_event(p, CCVM_EV_RMPUPDATE);
	flushes = tu_event(p, CCVM_EV_CACHE_FLUSH_PAGE);
	ccvm_snp_backend_ops.gmem_invalidate(p, base_pfn + PER_2M, base_pfn + 2 * PER_2M);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_PSMASH), psmash);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMPUPDATE), updates + 1);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_CACHE_FLUSH_PAGE), flushes + PER_2M);
	assert_rmp_shared(base_pfn + PER_2M);
	assert_rmp_shared(base_pfn + PER_2M + 100);
	/* Freed for real later: nothing assigned, nothing to do. */
	updates = tu_event(p, CCVM_EV_RMPUPDATE);
	punch(huge_off + PER_2M * PG, 2 * MIB);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMPUPDATE), updates);
}
END_TEST

START_TEST(test_convert_4k_inside_2m_psmashes_first)
{
	uint64_t psmash, updates;

	ck_assert_int_eq(prepare_op(0, 9), 0);
	ck_assert_int_eq(prepare_op(PER_2M, 9), 0);

	/* One page of a 2M entry to shared: PSMASH first (I24). */
	psmash = vm_ev(vm, CCVM_EV_PSMASH);
	updates = vm_ev(vm, CCVM_EV_RMPUPDATE);
	set_attr(9 * PG, PG, 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_PSMASH), psmash + 1);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 1);
	assert_rmp_shared(base_pfn + 9);
	assert_rmp_guest(base_pfn + 10, 10, false);
	ck_assert_uint_eq(rmp(base_pfn).region_assigned_4k, PER_2M - 1);

	/* A whole 2M entry: one 2M RMPUPDATE. */
	psmash = vm_ev(vm, CCVM_EV_PSMASH);
	updates = vm_ev(vm, CCVM_EV_RMPUPDATE);
	set_attr(2 * MIB, 2 * MIB, 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_PSMASH), psmash);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 1);
	assert_rmp_shared(base_pfn + PER_2M);
	assert_rmp_shared(base_pfn + 2 * PER_2M - 1);

	/* Back to private: page by page, 4K entries (order-0 pages). */
	updates = vm_ev(vm, CCVM_EV_RMPUPDATE);
	set_attr(2 * MIB, 4 * PG, PRIV);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 4);
	assert_rmp_guest(base_pfn + PER_2M + 3, PER_2M + 3, false);
	ck_assert_uint_eq(rmp(base_pfn + PER_2M).level, CCVM_LEVEL_4K);
}
END_TEST

/* ---- a page gmem_invalidate cannot return --------------------------------------- */

START_TEST(test_invalidate_failure_leaks)
{
	uint64_t pfn, pfn2, free_before;

	/* A gmem page the host cannot take back (immutable, as if firmware's). */
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_KEEP_SIZE, 0, 2 * PG), 0);
	pfn = gmem_pfn(0);
	pfn2 = gmem_pfn(1);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(hw, NULL, pfn, 0, CCVM_LEVEL_4K, asid, true),
			 0);
	ck_assert_int_eq(ccvm_snp_rmp_make_private(hw, NULL, pfn2, PG, CCVM_LEVEL_4K, asid,
						   false), 0);
	free_before = tu_free_pages(p);
	warnings_allowed = 8;
	punch(0, 2 * PG);
	/* The good page came back; the bad one is leaked, never reused. */
	ck_assert_uint_eq(tu_free_pages(p), free_before + 1);
	ck_assert_uint_eq(ccvm_snp_nr_leaked(hw), 1);
	assert_rmp_shared(pfn2);
	ck_assert(rmp(pfn).assigned);
	ck_assert_int_eq(ccvm_host_write_phys(p, pfn, 0, "x", 1), -EFAULT);
	leaks_expected = 1;
}
END_TEST

/* ---- update_mem_attr: only pages gmem holds ------------------------------------- */

START_TEST(test_update_mem_attr_touches_allocated_pages_only)
{
	uint64_t updates, i;

	/* Three pages allocated in a 64-page range, the rest holes. */
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_KEEP_SIZE, 8 * PG, PG), 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_KEEP_SIZE, 20 * PG, 2 * PG), 0);
	updates = vm_ev(vm, CCVM_EV_RMPUPDATE);
	set_attr(0, 64 * PG, PRIV);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 3);
	assert_rmp_guest(gmem_pfn(8), 8, false);
	assert_rmp_guest(gmem_pfn(21), 21, false);
	/* The direct map was split before the pages became private (I22). */
	ck_assert_int_eq(ccvm_snp_directmap_level(hw, gmem_pfn(8)), CCVM_LEVEL_4K);
	for (i = 0; i < 64; i++) {
		uint64_t pfn;

		if (i != 8 && i != 20 && i != 21)
			ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, i, &pfn), -ENOENT);
	}
	/* Back to shared: the same three, flushed for the host. */
	updates = vm_ev(vm, CCVM_EV_RMPUPDATE);
	i = tu_event(p, CCVM_EV_CACHE_FLUSH_PAGE);
	set_attr(0, 64 * PG, 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 3);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_CACHE_FLUSH_PAGE), i + 3);
	assert_rmp_shared(gmem_pfn(20));
	/* Outside any gmem slot nothing is asked of the backend. */
	set_attr(1ull << 32, PG, PRIV);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 3);
}
END_TEST

/* ---- the merged design: the RMP changes at prepare and at free ------------------ */

static void setup_merged(void)
{
	platform_up(0);
	vm_up_design(CCVM_SNP_RMP_MERGED);
	slot_up(MEM_SIZE, MEM_SIZE, 0);
}

START_TEST(test_merged_rmp_follows_prepare_and_free)
{
	struct ccvm_vcpu *v;
	uint64_t updates, gpa, size, pfn;
	uint32_t design = 9;

	/* The default, which this VM did not need to ask for. */
	ck_assert_int_eq(ccvm_vm_get_study_knob(vm, CCVM_STUDY_SNP_RMP_UPDATE, &design), 0);
	ck_assert_uint_eq(design, CCVM_SNP_RMP_MERGED);
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_KEEP_SIZE, 8 * PG, PG), 0);
	pfn = gmem_pfn(8);
	updates = vm_ev(vm, CCVM_EV_RMPUPDATE);
	/* A conversion touches no RMP entry: the allocated page stays shared. */
	set_attr(0, 64 * PG, PRIV);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates);
	assert_rmp_shared(pfn);
	/* Its first fault prepares it. */
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	updates = vm_ev(vm, CCVM_EV_RMPUPDATE);		/* the VMSA's */
	gpa = 8 * PG;
	size = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 1);
	assert_rmp_guest(pfn, 8, false);
	check_mappings_agree_with_rmp();
	/* Shared again: unmapped, but the page stays the guest's until freed. */
	set_attr(0, 64 * PG, 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 1);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 8 * PG, &gpa, NULL), -ENOENT);
	assert_rmp_guest(pfn, 8, false);
	/* Private again: the next fault finds it prepared (no RMPUPDATE). */
	set_attr(0, 64 * PG, PRIV);
	gpa = 8 * PG;
	size = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_RMPUPDATE), updates + 1);
	ck_assert_uint_eq(mapped_pfn(8 * PG), pfn);
	/* Freed: back to the host, flushed. */
	set_attr(0, 64 * PG, 0);
	updates = tu_event(p, CCVM_EV_RMPUPDATE);
	punch(8 * PG, PG);
	ck_assert_uint_eq(tu_event(p, CCVM_EV_RMPUPDATE), updates + 1);
	assert_rmp_shared(pfn);
	check_mappings_agree_with_rmp();
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- the attribute/RMPUPDATE race ----------------------------------------------- */

#define G_RACE		0x9000ull
#define RACE_NPFS	3		/* nested faults to see before letting it land */

/*
 * Waits are on events, not clocks: the trace callback signals each RMP
 * nested fault, the hook signals that it holds the window.  A vCPU that
 * never faults hangs the test, which Check's timeout reports.
 */
struct race {
	_Atomic int armed;
	int entered;			/* lock */
	uint64_t npfs;			/* lock: RMP nested faults since armed */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t npf0, zap0;
	_Atomic uint64_t npf_seen, zap_seen;
	_Atomic int converter_ret;
};

static void race_trace(const struct ccvm_trace_record *rec, void *ctx)
{
	struct race *r = ctx;

	if (rec->kind != CCVM_TRACE_EVENT || rec->id != CCVM_EV_RMP_NPF)
		return;
	pthread_mutex_lock(&r->lock);
	r->npfs++;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/*
 * In update_mem_attr's window, on the converter thread: hold the window
 * open until the vCPU has taken RACE_NPFS RMP nested faults.
 */
static void race_hook(struct ccvm_vm *v, uint64_t start, uint64_t end, uint64_t attrs,
		      void *ctx)
{
	struct race *r = ctx;
	uint64_t npf;

	(void)start;
	(void)end;
	if (!(attrs & PRIV) || !atomic_exchange(&r->armed, 0))
		return;
	pthread_mutex_lock(&r->lock);
	r->entered = 1;
	pthread_cond_broadcast(&r->cond);
	while (r->npfs < RACE_NPFS)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
	npf = vm_ev(v, CCVM_EV_RMP_NPF);
	/* Nested faults first: every one of them zapped before the next fault. */
	atomic_store(&r->npf_seen, npf - r->npf0);
	atomic_store(&r->zap_seen, vm_ev(v, CCVM_EV_ZAP) - r->zap0);
}

static void *race_converter(void *arg)
{
	struct race *r = arg;

	atomic_store(&r->converter_ret,
		     ccvm_vm_set_memory_attributes(vm, G_RACE, PG, PRIV, 0));
	return NULL;
}

static void guest_race(struct ccvm_guest *g, void *arg)
{
	bool accept_first = *(const bool *)arg;
	uint8_t d[PG], r[PG];

	fill(d, sizeof(d), 11);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, G_RACE, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, G_RACE, d, PG) == 0);
	ccvm_guest_sync(g, 1);
	/*
	 * The VMM made the page shared and is converting it back; the RMP
	 * update has not landed.  A read takes RMP nested faults until it
	 * does, then #VC for the page it must validate again; a PVALIDATE
	 * finds the page not assigned and faults it in until it is.
	 */
	if (!accept_first)
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, G_RACE, r, PG) == -EACCES);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, G_RACE, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, G_RACE, r, PG) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(r, d, PG) == 0);
	ccvm_guest_sync(g, 2);
}

/* _i = 0: the vCPU reads in the window; 1: it PVALIDATEs in the window. */
START_TEST(test_attr_rmpupdate_race)
{
	static struct race r;
	static bool accept_first;
	struct ccvm_vcpu *v;
	pthread_t t;
	uint64_t pfn;

	accept_first = _i == 1;
	memset(&r, 0, sizeof(r));
	pthread_mutex_init(&r.lock, NULL);
	pthread_cond_init(&r.cond, NULL);
	set_attr(0, MEM_SIZE, PRIV);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	v = vcpu_with_guest(0, guest_race, &accept_first);
	tu_expect_sync(v, 1);
	pfn = mapped_pfn(G_RACE);
	assert_rmp_guest(pfn, G_RACE >> 12, true);

	/* To shared without a punch: the page stays in gmem, RMP shared. */
	set_attr(G_RACE, PG, 0);
	assert_rmp_shared(pfn);

	/* Back to private on another thread, held inside the window. */
	r.npf0 = vm_ev(vm, CCVM_EV_RMP_NPF);
	r.zap0 = vm_ev(vm, CCVM_EV_ZAP);
	atomic_store(&r.armed, 1);
	ck_assert_int_eq(ccvm_platform_set_trace(p, race_trace, &r), 0);
	ccvm_snp_set_update_mem_attr_hook(p, race_hook, &r);
	ck_assert_int_eq(pthread_create(&t, NULL, race_converter, &r), 0);
	pthread_mutex_lock(&r.lock);
	while (!r.entered)
		pthread_cond_wait(&r.cond, &r.lock);
	pthread_mutex_unlock(&r.lock);

	if (accept_first) {
		tu_expect_sync(v, 2);
	} else {
		expect_vc(v, G_RACE);
		/* Every nested fault dropped the mapping before the next try. */
		ck_assert_uint_ge(atomic_load(&r.zap_seen), atomic_load(&r.npf_seen) - 1);
	}
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ccvm_snp_set_update_mem_attr_hook(p, NULL, NULL);
	ck_assert_int_eq(ccvm_platform_set_trace(p, NULL, NULL), 0);
	ck_assert_int_eq(atomic_load(&r.converter_ret), 0);
	ck_assert_uint_ge(atomic_load(&r.npf_seen), RACE_NPFS);
	/* The update landed on the same folio; the mapping agrees with it. */
	ck_assert_uint_eq(mapped_pfn(G_RACE), pfn);
	assert_rmp_guest(pfn, G_RACE >> 12, accept_first);
	check_mappings_agree_with_rmp();

	if (!accept_first)
		tu_expect_sync(v, 2);
	assert_rmp_guest(pfn, G_RACE >> 12, true);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	check_mappings_agree_with_rmp();
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- vCPUs converting while the VMM converts and punches elsewhere -------------- */

#define STRESS_VCPUS	2
#define STRESS_PAGES	8
#define STRESS_ROUNDS	12
#define STRESS_AREA(id)	(0x100000ull + (uint64_t)(id) * 0x40000ull)
#define STRESS_VMM_GPA	0x200000ull	/* the VMM's own range, 16 pages */

struct stress {
	struct ccvm_vcpu *v;
	uint32_t id;
	_Atomic int failed;
	char why[128];
};

static _Atomic int stress_done;

static void guest_stress(struct ccvm_guest *g, void *arg)
{
	const uint64_t area = STRESS_AREA(ccvm_guest_vcpu_id(g));
	const uint64_t len = STRESS_PAGES * PG;
	uint64_t sb = ccvm_guest_shared_bit(g);
	uint8_t w[STRESS_PAGES * PG], r[STRESS_PAGES * PG];
	int i;

	(void)arg;
	for (i = 0; i < STRESS_ROUNDS; i++) {
		CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, area, len, true) == 0);
		CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, area, len) == 0);
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, area, r, len) == 0);
		/* The VMM punches on every other conversion to shared: 0, 2, ... */
		if (i == 0 || (i - 1) % 2 == 0) {
			CCVM_GUEST_ASSERT(g, all_bytes(r, len, 0));
		} else {
			fill(w, len, (uint8_t)(i - 1));
			CCVM_GUEST_ASSERT(g, !memcmp(r, w, len));
		}
		fill(w, len, (uint8_t)i);
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, area, w, len) == 0);
		CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, area | sb, len, false) == 0);
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, area | sb, w, 64) == 0);
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, area | sb, r, 64) == 0);
		CCVM_GUEST_ASSERT(g, !memcmp(r, w, 64));
	}
}

/* The VMM's run loop of one vCPU: conversions as asked, a punch every other time. */
static void *stress_vmm(void *arg)
{
	struct stress *st = arg;
	unsigned int to_shared = 0;

	for (;;) {
		int ret = ccvm_vcpu_run(st->v);
		struct ccvm_run *run = ccvm_vcpu_run_state(st->v);
		uint64_t gpa, size;
		bool priv;

		if (ret == 0 && run->exit_reason == CCVM_EXIT_DONE)
			break;
		if (ret != 0 || run->exit_reason != CCVM_EXIT_HYPERCALL) {
			snprintf(st->why, sizeof(st->why), "vcpu %u: run %d exit %u%s%s", st->id,
				 ret, run->exit_reason,
				 run->exit_reason == CCVM_EXIT_GUEST_ABORT ? " " : "",
				 run->exit_reason == CCVM_EXIT_GUEST_ABORT ? run->abort.msg : "");
			atomic_store(&st->failed, 1);
			break;
		}
		gpa = run->hypercall.args[0];
		size = run->hypercall.args[1] * PG;
		priv = run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED;
		run->hypercall.ret = (uint64_t)-ccvm_vm_set_memory_attributes(vm, gpa, size,
									    priv ? PRIV : 0, 0);
		if (!priv && (to_shared++ % 2) == 0 && !run->hypercall.ret)
			run->hypercall.ret = (uint64_t)-ccvm_gmem_fallocate(gm,
					CCVM_FALLOC_KEEP_SIZE | CCVM_FALLOC_PUNCH_HOLE, gpa, size);
	}
	return NULL;
}

/* Meanwhile the VMM converts, allocates, punches and touches its own range. */
static void *stress_converter(void *arg)
{
	_Atomic int *failed = arg;
	uint8_t b[8] = { 1 };
	int i = 0;

	while (!atomic_load(&stress_done) || i < 4) {
		uint64_t pfn, attrs = (i % 2) ? 0 : PRIV;
		int err;

		err = ccvm_gmem_fallocate(gm, CCVM_FALLOC_KEEP_SIZE, STRESS_VMM_GPA, 16 * PG);
		err = err ? err : ccvm_vm_set_memory_attributes(vm, STRESS_VMM_GPA, 16 * PG,
								attrs, 0);
		/* Shared pages take host writes; private ones refuse them. */
		if (!err && !ccvm_vm_gfn_to_gmem_pfn(vm, STRESS_VMM_GPA >> 12, &pfn) &&
		    (ccvm_host_write_phys(p, pfn, 0, b, 8) == 0) != !attrs)
			err = -EPROTO;
		if (!err && (i % 3) == 2)
			err = ccvm_gmem_fallocate(gm, CCVM_FALLOC_KEEP_SIZE |
						  CCVM_FALLOC_PUNCH_HOLE, STRESS_VMM_GPA, 16 * PG);
		if (err) {
			atomic_store(failed, err);
			break;
		}
		i++;
	}
	return NULL;
}

START_TEST(test_vcpus_convert_while_vmm_converts)
{
	static struct stress st[STRESS_VCPUS];
	pthread_t vmm[STRESS_VCPUS], conv;
	_Atomic int conv_failed = 0;
	uint32_t i;

	set_attr(0, MEM_SIZE, PRIV);
	/* Shared to start with, so every round of the converter flips it. */
	set_attr(STRESS_VMM_GPA, 16 * PG, 0);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	atomic_store(&stress_done, 0);
	ck_assert_int_eq(pthread_create(&conv, NULL, stress_converter, &conv_failed), 0);
	for (i = 0; i < STRESS_VCPUS; i++) {
		memset(&st[i], 0, sizeof(st[i]));
		st[i].id = i;
		st[i].v = vcpu_with_guest(i, guest_stress, NULL);
		ck_assert_int_eq(pthread_create(&vmm[i], NULL, stress_vmm, &st[i]), 0);
	}
	for (i = 0; i < STRESS_VCPUS; i++)
		ck_assert_int_eq(pthread_join(vmm[i], NULL), 0);
	atomic_store(&stress_done, 1);
	ck_assert_int_eq(pthread_join(conv, NULL), 0);
	for (i = 0; i < STRESS_VCPUS; i++)
		ck_assert_msg(!atomic_load(&st[i].failed), "%s", st[i].why);
	ck_assert_int_eq(atomic_load(&conv_failed), 0);
	ck_assert_uint_eq(vm_ev(vm, CCVM_EV_HYPERCALL_EXIT), STRESS_VCPUS * STRESS_ROUNDS * 2);
	check_mappings_agree_with_rmp();
	for (i = 0; i < STRESS_VCPUS; i++)
		ck_assert_int_eq(ccvm_vcpu_close(st[i].v), 0);
}
END_TEST

/* ---- teardown with everything in use -------------------------------------------- */

static void guest_busy(struct ccvm_guest *g, void *arg)
{
	uint8_t b[16];

	(void)arg;
	fill(b, sizeof(b), 2);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0x20000, 4 * PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, 0x21000, b, sizeof(b)) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, 0x22000, PG, false) == 0);
	ccvm_guest_sync(g, 1);
}

START_TEST(test_teardown_returns_everything)
{
	static uint8_t src[4 * PG];
	uint64_t pfns[8], vmsa[2], ctx;
	struct ccvm_vcpu *v, *v2;
	struct ccvm_run *run;
	unsigned int i, n = 0;

	fill(src, sizeof(src), 1);
	set_attr(0, MEM_SIZE, PRIV);
	ck_assert_int_eq(ccvm_vm_populate(vm, 0, src, sizeof(src), 0), 0);
	for (i = 0; i < 4; i++)
		pfns[n++] = gmem_pfn(i);
	ck_assert_int_eq(ccvm_vm_finalize(vm), 0);
	v = vcpu_with_guest(0, guest_busy, NULL);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 1, &v2), 0);
	ck_assert_int_eq(ccvm_snp_vcpu_vmsa_pfn(v, &vmsa[0]), 0);
	ck_assert_int_eq(ccvm_snp_vcpu_vmsa_pfn(v2, &vmsa[1]), 0);
	ck_assert_int_eq(ccvm_snp_vm_context_pfn(vm, &ctx), 0);
	run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
	set_attr(run->hypercall.args[0], run->hypercall.args[1] * PG, 0);
	run->hypercall.ret = 0;
	tu_expect_sync(v, 1);
	for (i = 0x20; i < 0x24; i++)
		pfns[n++] = gmem_pfn(i);
	check_mappings_agree_with_rmp();

	/* Close in the VMM's order; the vCPU stays blocked in its exit. */
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	gm = NULL;
	/* gmem gave its pages back: shared, flushed, freed (I23). */
	for (i = 0; i < n; i++)
		assert_rmp_shared(pfns[i]);
	ck_assert(rmp(ctx).assigned && rmp(vmsa[0]).vmsa);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v2), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	vm = NULL;
	assert_rmp_shared(ctx);
	assert_rmp_shared(vmsa[0]);
	assert_rmp_shared(vmsa[1]);
	ck_assert_int_eq(ccvm_snp_asid_state(hw, asid), CCVM_SNP_ASID_DIRTY);
}
END_TEST

Suite *snp_suite(void)
{
	Suite *s = suite_create("snp");
	TCase *tc;

	tc = tcase_create("lifecycle");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_caps);
	tcase_add_test(tc, test_vm_asid_and_context_page);
	tcase_add_test(tc, test_vcpu_vmsa_avoids_2m_aligned_pfn);
	tcase_add_test(tc, test_teardown_returns_everything);
	tcase_add_test(tc, test_reclaim_failure_leaks_and_bugs);
	suite_add_tcase(s, tc);

	tc = tcase_create("asid");
	tcase_add_checked_fixture(tc, setup_platform_only, teardown);
	tcase_add_test(tc, test_asid_exhaustion_and_reuse);
	suite_add_tcase(s, tc);

	tc = tcase_create("launch");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_populate_rules);
	suite_add_tcase(s, tc);

	tc = tcase_create("guest");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_fault_prepare_pvalidate_access);
	tcase_add_test(tc, test_memory_fault_exits);
	suite_add_tcase(s, tc);

	tc = tcase_create("host");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_host_access_private_shared_freed);
	tcase_add_test(tc, test_directmap_splits_counted_never_merged);
	suite_add_tcase(s, tc);

	tc = tcase_create("conversion");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_round_trip_without_punch_keeps_data);
	tcase_add_test(tc, test_round_trip_with_punch_zeroes);
	tcase_add_test(tc, test_psc_exits_coalesced_per_request);
	tcase_add_test(tc, test_update_mem_attr_touches_allocated_pages_only);
	tcase_add_test(tc, test_update_mem_attr_failure_rolls_back);
	tcase_add_test(tc, test_update_mem_attr_rollback_failure_bugs_vm);
	tcase_add_test(tc, test_invalidate_failure_leaks);
	suite_add_tcase(s, tc);

	tc = tcase_create("merged");
	tcase_add_checked_fixture(tc, setup_merged, teardown);
	tcase_add_test(tc, test_merged_rmp_follows_prepare_and_free);
	suite_add_tcase(s, tc);

	tc = tcase_create("huge");
	tcase_add_checked_fixture(tc, setup_huge, teardown);
	tcase_add_test(tc, test_prepare_2m_rules);
	tcase_add_test(tc, test_pvalidate_4k_inside_2m_psmashes);
	tcase_add_test(tc, test_punch_inside_2m_psmashes_first);
	tcase_add_test(tc, test_convert_4k_inside_2m_psmashes_first);
	suite_add_tcase(s, tc);

	tc = tcase_create("race");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_attr_rmpupdate_race, 0, 2);
	tcase_add_test(tc, test_vcpus_convert_while_vmm_converts);
	suite_add_tcase(s, tc);

	return s;
}
