/* SPDX-License-Identifier: MIT */
/*
 * In-place conversion (docs/semantics.md 1.6, 3.9; upstream-2026 A): the
 * attribute scheme option, per-gmem attributes and
 * ccvm_gmem_set_memory_attributes() (KVM_SET_MEMORY_ATTRIBUTES2), host
 * pins, MMAP / INIT_SHARED per scheme, GMEM_ONLY memslots and the fault
 * deciding from the file's attributes; every refused call leaves the
 * state as it was.  The guest round trips run on every backend.
 */
#include <errno.h>
#include <string.h>

#include <ccvm/explore.h>
#include <ccvm/sync.h>

#include "conformance.h"
#include "snapshot.h"

#define PG		CCVM_PAGE_SIZE
#define MIB		TU_MiB
#define PRIV		CCVM_MEMORY_ATTRIBUTE_PRIVATE
#define MMAP		CCVM_GMEM_FLAG_MMAP
#define SHARED		CCVM_GMEM_FLAG_INIT_SHARED
#define ZERO		CCVM_MEMORY_ATTRIBUTES2_ZERO
#define PRESERVE	CCVM_MEMORY_ATTRIBUTES2_PRESERVE
#define PUNCH		(CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE)
#define SENTINEL	0x5e5e5e5e5e5e5e5eull

static struct ccvm_platform *p;
static struct ccvm_vm *vm;	/* in place */

static void setup(void)
{
	tu_caps_reset_to_mock();
	tu_quiet_log();
	p = tu_platform("mock");
	vm = tu_vm_scheme(p, CCVM_ATTR_SCHEME_GMEM);
}

static void teardown(void)
{
	cf_assert_invariants(vm);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	cf_assert_platform_invariants(p);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	ccvm_set_log(NULL, NULL);
}

static int gset(struct ccvm_gmem *g, uint64_t off, uint64_t size, uint64_t attr,
		uint64_t flags, uint64_t *error_offset)
{
	struct ccvm_memory_attributes2 a = {
		.offset = off, .size = size, .attributes = attr, .flags = flags,
		.error_offset = SENTINEL,
	};
	int r = ccvm_gmem_set_memory_attributes(g, &a);

	if (error_offset)
		*error_offset = a.error_offset;
	return r;
}

static uint64_t gattr(struct ccvm_gmem *g, uint64_t off, uint64_t *run)
{
	uint64_t v = ~0ull;

	ck_assert_int_eq(ccvm_gmem_get_memory_attributes(g, off, &v, run), 0);
	return v;
}

static void fill(uint8_t *b, size_t n, uint8_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (uint8_t)(seed + 3 * i);
}

/* ---- the scheme option -------------------------------------------------------- */

START_TEST(test_scheme_option)
{
	struct ccvm_vm_opts o = CCVM_OPTS_INIT(struct ccvm_vm_opts, .attr_scheme = 3);
	struct ccvm_vm *w = NULL, *legacy;
	struct ccvm_gmem *g;
	struct tu_snap before, after;
	uint64_t eo;

	ck_assert_int_eq(ccvm_vm_create(p, &o, &w), -EINVAL);
	ck_assert_ptr_null(w);
	/* The VM scheme: the gmem call is unknown to it, as the ioctl without in place. */
	legacy = tu_vm_scheme(p, CCVM_ATTR_SCHEME_VM);
	g = tu_gmem(legacy, 2 * MIB, MMAP);
	tu_snap_take(&before, p, legacy, g, NULL, 0, 4 * MIB);
	ck_assert_int_eq(gset(g, 0, PG, 0, 0, &eo), -ENOTTY);
	ck_assert_uint_eq(eo, SENTINEL);
	tu_snap_take(&after, p, legacy, g, NULL, 0, 4 * MIB);
	tu_snap_assert_same(&before, &after);
	/* ... and its files read PRIVATE everywhere: the host may touch none. */
	ck_assert_uint_eq(gattr(g, PG, NULL), PRIV);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(legacy), 0);

	/* In place: PRIVATE through the VM is refused and changes nothing. */
	g = tu_gmem(vm, 2 * MIB, 0);
	tu_gmem_slot(vm, 0, 0, 2 * MIB, g, 0);
	tu_snap_take(&before, p, vm, g, NULL, 0, 4 * MIB);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 0, PG, PRIV, 0), -EINVAL);
	tu_snap_take(&after, p, vm, g, NULL, 0, 4 * MIB);
	tu_snap_assert_same(&before, &after);
	/* Attributes 0 are a subset of nothing: accepted, a no-op. */
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 0, PG, 0, 0), 0);
	ck_assert_int_eq(tu_region(vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* ---- the file's attributes ------------------------------------------------------ */

START_TEST(test_initial_attributes)
{
	struct ccvm_gmem *priv = tu_gmem(vm, 2 * MIB, MMAP);
	struct ccvm_gmem *shr = tu_gmem(vm, 2 * MIB, MMAP | SHARED);
	uint64_t run = 0, v;

	ck_assert_uint_eq(gattr(priv, 0, &run), PRIV);
	ck_assert_uint_eq(run, 2 * MIB);
	ck_assert_uint_eq(gattr(shr, PG, &run), 0);
	ck_assert_uint_eq(run, 2 * MIB - PG);
	ck_assert_uint_eq(tu_gmem_info(priv).nr_private, 512);
	ck_assert_uint_eq(tu_gmem_info(shr).nr_private, 0);
	/* The store exists before any page does. */
	ck_assert_uint_eq(tu_gmem_info(priv).nr_pages, 0);
	ck_assert_int_eq(gset(shr, 4 * PG, 2 * PG, PRIV, 0, NULL), 0);
	ck_assert_uint_eq(gattr(shr, 0, &run), 0);
	ck_assert_uint_eq(run, 4 * PG);
	ck_assert_uint_eq(gattr(shr, 4 * PG, &run), PRIV);
	ck_assert_uint_eq(run, 2 * PG);
	ck_assert_uint_eq(tu_gmem_info(shr).nr_private, 2);
	/* Bad queries write nothing. */
	v = SENTINEL;
	ck_assert_int_eq(ccvm_gmem_get_memory_attributes(shr, 1, &v, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_get_memory_attributes(shr, 2 * MIB, &v, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_get_memory_attributes(NULL, 0, &v, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_get_memory_attributes(shr, 0, NULL, NULL), -EINVAL);
	ck_assert_uint_eq(v, SENTINEL);
	/* A punch leaves attributes alone (they live on the inode). */
	ck_assert_int_eq(ccvm_gmem_fallocate(shr, CCVM_FALLOC_KEEP_SIZE, 0, 8 * PG), 0);
	ck_assert_int_eq(ccvm_gmem_fallocate(shr, PUNCH, 0, 8 * PG), 0);
	ck_assert_uint_eq(gattr(shr, 4 * PG, &run), PRIV);
	ck_assert_uint_eq(run, 2 * PG);
	ck_assert_int_eq(ccvm_gmem_close(shr), 0);
	ck_assert_int_eq(ccvm_gmem_close(priv), 0);
}
END_TEST

static const struct {
	uint64_t off, size, attr, flags;
	int reserved;		/* index of a reserved word to set, -1 none */
	int err;
} bad_set_rows[] = {
	{ 0, PG, PRIV, 1ull << 2, -1, -EINVAL },		/* unknown flag */
	{ 0, PG, PRIV, 1ull << 63, -1, -EINVAL },
	{ 0, PG, 0, ZERO | PRESERVE, -1, -EINVAL },		/* two content modes */
	{ 0, PG, PRIV, 0, 0, -EINVAL },				/* reserved[0] */
	{ 0, PG, PRIV, 0, 10, -EINVAL },			/* reserved[10] */
	{ 0, PG, PRIV | 1, 0, -1, -EINVAL },			/* RWX bits: not here */
	{ 0, PG, 1ull << 4, 0, -1, -EINVAL },
	{ 0, 0, PRIV, 0, -1, -EINVAL },				/* size 0 */
	{ PG, ~0ull & CCVM_PAGE_MASK, PRIV, 0, -1, -EINVAL },	/* wraps */
	{ 1, PG, PRIV, 0, -1, -EINVAL },			/* misaligned */
	{ 0, PG + 1, PRIV, 0, -1, -EINVAL },
	{ 2048, PG, PRIV, 0, -1, -EINVAL },
	{ 2 * MIB, PG, PRIV, 0, -1, -EINVAL },			/* at EOF */
	{ 2 * MIB - PG, 2 * PG, PRIV, 0, -1, -EINVAL },		/* across EOF */
	{ 64 * MIB, PG, PRIV, 0, -1, -EINVAL },			/* past EOF */
	{ 0, PG, PRIV, ZERO, -1, -EINVAL },			/* ZERO into private */
};

START_TEST(test_set_bad_input)
{
	struct ccvm_gmem *g = tu_gmem(vm, 2 * MIB, MMAP | SHARED);
	struct ccvm_memory_attributes2 a = {
		.offset = bad_set_rows[_i].off, .size = bad_set_rows[_i].size,
		.attributes = bad_set_rows[_i].attr, .flags = bad_set_rows[_i].flags,
		.error_offset = SENTINEL,
	};
	struct tu_snap before, after;
	int r;

	tu_gmem_slot(vm, 0, 0, 2 * MIB, g, 0);
	ck_assert_int_eq(gset(g, 8 * PG, PG, PRIV, 0, NULL), 0);
	ck_assert_int_eq(ccvm_gmem_pin(g, 0, PG), 0);
	if (bad_set_rows[_i].reserved >= 0)
		a.reserved[bad_set_rows[_i].reserved] = 1;
	tu_snap_take(&before, p, vm, g, NULL, 0, 4 * MIB);
	r = ccvm_gmem_set_memory_attributes(g, &a);
	ck_assert_msg(r == bad_set_rows[_i].err, "row %d: %d", _i, r);
	/* Validation errors write nothing back. */
	ck_assert_uint_eq(a.error_offset, SENTINEL);
	tu_snap_take(&after, p, vm, g, NULL, 0, 4 * MIB);
	tu_snap_assert_same(&before, &after);
	ck_assert_int_eq(ccvm_gmem_unpin(g, 0, PG), 0);
	ck_assert_int_eq(tu_region(vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

START_TEST(test_set_null_and_bugged)
{
	struct ccvm_gmem *g = tu_gmem(vm, 2 * MIB, MMAP | SHARED);
	struct ccvm_memory_attributes2 a = { .size = PG, .attributes = PRIV };
	struct tu_snap before, after;

	ck_assert_int_eq(ccvm_gmem_set_memory_attributes(NULL, &a), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_set_memory_attributes(g, NULL), -EINVAL);
	ccvm_vm_bug(vm, "bugged on purpose");
	tu_snap_take(&before, p, vm, g, NULL, 0, 4 * MIB);
	ck_assert_int_eq(ccvm_gmem_set_memory_attributes(g, &a), -EIO);
	tu_snap_take(&after, p, vm, g, NULL, 0, 4 * MIB);
	tu_snap_assert_same(&before, &after);
	ck_assert_uint_eq(gattr(g, 0, NULL), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* Nothing to change: no invalidation, no count, even over mapped memory. */
START_TEST(test_set_noop)
{
	struct ccvm_gmem *g = tu_gmem(vm, 2 * MIB, MMAP);
	struct ccvm_vcpu *v = NULL;
	uint64_t gpa = 0, size = 4 * PG, seq;
	struct tu_snap before, after;

	tu_gmem_slot(vm, 0, 0, 2 * MIB, g, 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	seq = tu_seq(vm);
	tu_snap_take(&before, p, vm, g, NULL, 0, 4 * MIB);
	ck_assert_int_eq(gset(g, 0, 2 * MIB, PRIV, 0, NULL), 0);
	tu_snap_take(&after, p, vm, g, NULL, 0, 4 * MIB);
	tu_snap_assert_same(&before, &after);
	ck_assert_uint_eq(tu_seq(vm), seq);
	/* A real change invalidates once and zaps the mapped private pages. */
	ck_assert_int_eq(gset(g, 0, 2 * PG, 0, 0, NULL), 0);
	ck_assert_uint_eq(tu_seq(vm), seq + 1);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 0, NULL, NULL), -ENOENT);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 2 * PG, NULL, NULL), 0);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_ATTR_CHANGE), 1);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(tu_region(vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* One file bound by two slots: a conversion zaps both. */
START_TEST(test_set_invalidates_every_slot)
{
	struct ccvm_gmem *g = tu_gmem(vm, 4 * MIB, MMAP);
	struct ccvm_vcpu *v = NULL;
	uint64_t gpa, size, pfn0 = 0, pfn1 = 0;

	tu_gmem_slot(vm, 0, 0, MIB, g, 0);		/* file [0, 1M) */
	tu_gmem_slot(vm, 1, 16 * MIB, MIB, g, MIB);	/* file [1M, 2M) */
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	gpa = MIB - PG;
	size = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	gpa = 16 * MIB;
	size = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, MIB - PG, &pfn0, NULL), 0);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 16 * MIB, &pfn1, NULL), 0);
	/* File [1M - 4K, 1M + 4K) straddles the two bindings. */
	ck_assert_int_eq(gset(g, MIB - PG, 2 * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, MIB - PG, NULL, NULL), -ENOENT);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 16 * MIB, NULL, NULL), -ENOENT);
	cf_assert_invariants(vm);
	/* Shared now: the same pages come back, mapped shared from gmem. */
	gpa = 16 * MIB;
	size = PG;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 16 * MIB, &pfn0, NULL), 0);
	ck_assert_uint_eq(pfn0, pfn1);
	cf_assert_invariants(vm);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(tu_region(vm, 1, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_int_eq(tu_region(vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* ---- pins --------------------------------------------------------------------- */

START_TEST(test_pins_block_to_private)
{
	struct ccvm_gmem *g = tu_gmem(vm, 2 * MIB, MMAP | SHARED);
	struct tu_snap before, after;
	uint8_t w[PG], r[PG];
	uint64_t eo;

	tu_gmem_slot(vm, 0, 0, 2 * MIB, g, 0);
	fill(w, PG, 9);
	ck_assert_int_eq(ccvm_gmem_write(g, 2 * PG, w, PG), 0);
	ck_assert_int_eq(ccvm_gmem_pin(g, 2 * PG, PG), 0);
	ck_assert_int_eq(ccvm_gmem_pin(g, 2 * PG, PG), 0);	/* pins count */
	ck_assert_int_eq(ccvm_gmem_pin(g, 5 * PG, 2 * PG), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pinned, 3);

	/* Bulk: EAGAIN at the first pinned page, nothing converted. */
	tu_snap_take(&before, p, vm, g, NULL, 0, 4 * MIB);
	ck_assert_int_eq(gset(g, 0, 8 * PG, PRIV, 0, &eo), -EAGAIN);
	ck_assert_uint_eq(eo, 2 * PG);
	tu_snap_take(&after, p, vm, g, NULL, 0, 4 * MIB);
	tu_snap_assert_same(&before, &after);
	/* Single page, and a range starting past the first pin. */
	ck_assert_int_eq(gset(g, 6 * PG, PG, PRIV, 0, &eo), -EAGAIN);
	ck_assert_uint_eq(eo, 6 * PG);
	ck_assert_int_eq(gset(g, 3 * PG, 4 * PG, PRIV, 0, &eo), -EAGAIN);
	ck_assert_uint_eq(eo, 5 * PG);
	/* The unpinned pages convert. */
	ck_assert_int_eq(gset(g, 0, 2 * PG, PRIV, 0, &eo), 0);
	ck_assert_uint_eq(eo, SENTINEL);
	ck_assert_int_eq(gset(g, 3 * PG, 2 * PG, PRIV, 0, NULL), 0);
	/* To shared never fails on pins. */
	ck_assert_int_eq(gset(g, 0, 8 * PG, 0, 0, NULL), 0);
	/* One unpin of two: still pinned. */
	ck_assert_int_eq(ccvm_gmem_unpin(g, 2 * PG, PG), 0);
	ck_assert_int_eq(gset(g, 2 * PG, PG, PRIV, 0, &eo), -EAGAIN);
	ck_assert_uint_eq(eo, 2 * PG);
	ck_assert_int_eq(ccvm_gmem_unpin(g, 2 * PG, PG), 0);
	ck_assert_int_eq(ccvm_gmem_unpin(g, 5 * PG, 2 * PG), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pinned, 0);
	ck_assert_int_eq(gset(g, 0, 8 * PG, PRIV, 0, NULL), 0);
	/* Back to shared: the bytes survived (SW_PROTECTED preserves). */
	ck_assert_int_eq(gset(g, 0, 8 * PG, 0, 0, NULL), 0);
	ck_assert_int_eq(ccvm_gmem_read(g, 2 * PG, r, PG), 0);
	ck_assert_mem_eq(r, w, PG);
	ck_assert_int_eq(tu_region(vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

START_TEST(test_pin_errors)
{
	struct ccvm_gmem *plain = tu_gmem(vm, 2 * MIB, SHARED);
	struct ccvm_gmem *g = tu_gmem(vm, 2 * MIB, MMAP | SHARED);
	struct tu_snap before, after;

	ck_assert_int_eq(gset(g, 4 * PG, PG, PRIV, 0, NULL), 0);
	ck_assert_int_eq(ccvm_gmem_pin(g, 0, PG), 0);
	tu_snap_take(&before, p, vm, g, plain, 0, 4 * MIB);
	ck_assert_int_eq(ccvm_gmem_pin(NULL, 0, PG), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_pin(plain, 0, PG), -ENODEV);
	ck_assert_int_eq(ccvm_gmem_pin(g, 0, 0), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_pin(g, 1, PG), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_pin(g, 0, PG + 1), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_pin(g, 2 * MIB, PG), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_pin(g, PG, ~0ull & CCVM_PAGE_MASK), -EINVAL);
	/* A private page cannot be pinned (GUP would SIGBUS): all or nothing. */
	ck_assert_int_eq(ccvm_gmem_pin(g, 2 * PG, 4 * PG), -EFAULT);
	ck_assert_int_eq(ccvm_gmem_unpin(g, PG, PG), -EINVAL);	/* not pinned */
	ck_assert_int_eq(ccvm_gmem_unpin(g, 0, 2 * PG), -EINVAL);	/* partly */
	ck_assert_int_eq(ccvm_gmem_unpin(plain, 0, PG), -ENODEV);
	ck_assert_int_eq(ccvm_gmem_unpin(NULL, 0, PG), -EINVAL);
	tu_snap_take(&after, p, vm, g, plain, 0, 4 * MIB);
	tu_snap_assert_same(&before, &after);
	ck_assert_uint_eq(tu_gmem_info(g).nr_pinned, 1);
	/* A punch drops the page: the pin no longer blocks, its unpin still balances. */
	ck_assert_int_eq(ccvm_gmem_fallocate(g, PUNCH, 0, PG), 0);
	ck_assert_int_eq(gset(g, 0, PG, PRIV, 0, NULL), 0);
	ck_assert_int_eq(ccvm_gmem_unpin(g, 0, PG), 0);
	/* The close drops the pins left. */
	ck_assert_int_eq(ccvm_gmem_pin(g, 8 * PG, PG), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_gmem_close(plain), 0);
}
END_TEST

/* ---- content modes ------------------------------------------------------------ */

START_TEST(test_content_modes)
{
	struct ccvm_gmem *g = tu_gmem(vm, 2 * MIB, MMAP | SHARED);
	uint8_t w[PG], r[PG], z[PG];

	memset(z, 0, sizeof(z));
	fill(w, PG, 3);
	ck_assert_int_eq(ccvm_gmem_write(g, 0, w, PG), 0);
	ck_assert_int_eq(ccvm_gmem_write(g, PG, w, PG), 0);
	/* PRESERVE both ways on SW_PROTECTED. */
	ck_assert_int_eq(gset(g, 0, 2 * PG, PRIV, PRESERVE, NULL), 0);
	ck_assert_int_eq(gset(g, 0, PG, 0, PRESERVE, NULL), 0);
	ck_assert_int_eq(ccvm_gmem_read(g, 0, r, PG), 0);
	ck_assert_mem_eq(r, w, PG);
	/* ZERO to shared: allocated pages read zero. */
	ck_assert_int_eq(gset(g, PG, 3 * PG, 0, ZERO, NULL), 0);
	ck_assert_int_eq(ccvm_gmem_read(g, PG, r, PG), 0);
	ck_assert_mem_eq(r, z, PG);
	ck_assert_int_eq(ccvm_gmem_read(g, 0, r, PG), 0);
	ck_assert_mem_eq(r, w, PG);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* ---- host access through the mapping ----------------------------------------------- */

START_TEST(test_host_access_sigbus_offset)
{
	struct ccvm_gmem *g = tu_gmem(vm, 2 * MIB, MMAP | SHARED);
	uint8_t buf[3 * PG];
	uint64_t off = SENTINEL;
	struct tu_snap before, after;

	ck_assert_int_eq(gset(g, 5 * PG, PG, PRIV, 0, NULL), 0);
	tu_snap_take(&before, p, vm, g, NULL, 0, 4 * MIB);
	ck_assert_int_eq(ccvm_gmem_access(g, 4 * PG + 10, buf, 2 * PG, 0, &off), -EFAULT);
	ck_assert_uint_eq(off, 5 * PG);
	ck_assert_int_eq(ccvm_gmem_access(g, 2 * MIB - 8, buf, 16, 0, &off), -EFAULT);
	ck_assert_uint_eq(off, 2 * MIB);
	off = SENTINEL;
	ck_assert_int_eq(ccvm_gmem_access(g, 0, buf, 8, 1u << 5, &off), -EINVAL);
	ck_assert_uint_eq(off, SENTINEL);
	tu_snap_take(&after, p, vm, g, NULL, 0, 4 * MIB);
	tu_snap_assert_same(&before, &after);
	ck_assert_int_eq(ccvm_gmem_access(g, 4 * PG, buf, PG, CCVM_GMEM_ACCESS_WRITE, &off), 0);
	ck_assert_uint_eq(off, SENTINEL);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* ---- guests on every backend ---------------------------------------------------- */

#define RT_SIZE		(2 * MIB)
#define RT_A		(3 * PG)

struct rt_arg {
	uint64_t sbit;
};

/*
 * The guest: private write to page A, then (after the VMM converts it to
 * shared and writes it) a shared read of the VMM's bytes, then (converted
 * back) a private read of what the backend leaves there.
 */
static void rt_guest(struct ccvm_guest *g, void *arg)
{
	struct rt_arg *a = arg;
	uint8_t buf[PG];

	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, RT_A, PG) == 0);
	cf_fill(buf, PG, 0x41);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, RT_A, buf, PG) == 0);
	ccvm_guest_sync(g, 1);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, RT_A | a->sbit, buf, PG) == 0);
	CCVM_GUEST_ASSERT(g, cf_is(buf, PG, 0x42));
	ccvm_guest_sync(g, 2);
	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, RT_A, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, RT_A, buf, PG) == 0);
	ccvm_guest_sync(g, cf_is(buf, PG, 0x42) ? 3 : cf_is_zero(buf, PG) ? 4 : 5);
}

/* The conformance fixture in its in-place mode: a GMEM_ONLY slot, no VMM buffer. */
static const struct cf_mode *in_place_mode(void)
{
	const struct cf_mode *m = cf_mode(1);

	ck_assert_uint_eq(m->scheme, CCVM_ATTR_SCHEME_GMEM);
	return m;
}

START_TEST(test_guest_roundtrip_all_backends)
{
	struct rt_arg arg;
	struct ccvm_vcpu *v;
	uint8_t buf[PG];
	uint64_t off = 0, nr;
	struct ccvm_run *run;

	ck_assert(cf_up_in(_i, in_place_mode(), RT_SIZE, true));
	ck_assert_uint_eq(tu_gmem_info(cf.g).flags, MMAP);
	cf_runnable(1);
	v = cf.v[0];
	arg.sbit = cf.sbit;
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, rt_guest, &arg), 0);

	cf_expect_sync(v, NULL, 1);
	/* Private: the host may not touch it. */
	ck_assert_int_eq(ccvm_gmem_access(cf.g, RT_A, buf, PG, 0, &off), -EFAULT);
	ck_assert_uint_eq(off, RT_A);
	nr = tu_gmem_info(cf.g).nr_pages;
	ck_assert_int_eq(gset(cf.g, RT_A, PG, 0, 0, NULL), 0);
	cf_assert_invariants(cf.vm);
	ck_assert_int_eq(ccvm_gmem_read(cf.g, RT_A, buf, PG), 0);
	/*
	 * What the host sees of the guest's private bytes depends on the
	 * hardware: the plaintext where nothing protects it (mock), zeros where
	 * the removal clears the page (TDX); SNP's RMP model keeps the bytes,
	 * ciphertext on hardware: not checked.
	 */
	if (cf.caps.preserves_data_without_punch && cf.caps.private_readable_by_host)
		ck_assert(cf_is(buf, PG, 0x41));
	else if (!cf.caps.preserves_data_without_punch)
		ck_assert(cf_is_zero(buf, PG));
	cf_fill(buf, PG, 0x42);
	ck_assert_int_eq(ccvm_gmem_write(cf.g, RT_A, buf, PG), 0);
	cf_expect_sync(v, NULL, 2);
	/* The guest's shared page is the file's page: nothing else was allocated. */
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, nr);
	cf_assert_invariants(cf.vm);
	ck_assert_int_eq(gset(cf.g, RT_A, PG, PRIV, 0, NULL), 0);
	ck_assert_int_eq(ccvm_gmem_read(cf.g, RT_A, buf, PG), -EFAULT);
	/*
	 * Back to private: SW_PROTECTED keeps the host's bytes; TDX AUGs a
	 * fresh page (zeros after ACCEPT); SNP's RMP model keeps the bytes (on
	 * hardware they are not the guest's plaintext: unconfirmed upstream).
	 */
	cf_expect_sync(v, NULL, cf.caps.preserves_data_without_punch ? 3 : 4);
	cf_assert_invariants(cf.vm);
	run = tu_run_once(v, 0, CCVM_EXIT_DONE);
	(void)run;
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, nr);
	cf_finish();
}
END_TEST

/* The fault decides from the file: a private access to a shared page exits. */
static void mf_guest(struct ccvm_guest *g, void *arg)
{
	uint8_t b = 1;

	(void)arg;
	CCVM_GUEST_ASSERT(g, cf_guest_accept(g, 0, PG) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, 0, &b, 1) == 0);
	ccvm_guest_sync(g, 7);
}

START_TEST(test_fault_follows_file_all_backends)
{
	struct ccvm_vcpu *v;
	struct ccvm_run *run;

	ck_assert(cf_up_in(_i, in_place_mode(), RT_SIZE, false));
	ck_assert_uint_eq(tu_gmem_info(cf.g).flags, MMAP | SHARED);
	cf_runnable(1);
	v = cf.v[0];
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, mf_guest, NULL), 0);
	if (cf.caps.has_shared_bit) {
		/* Shared in the file, private in the access: an exit, no conversion. */
		run = tu_run_once(v, -EFAULT, CCVM_EXIT_MEMORY_FAULT);
		ck_assert_uint_eq(run->memory_fault.gpa, 0);
		ck_assert_uint_eq(run->memory_fault.flags, CCVM_MEMORY_EXIT_FLAG_PRIVATE);
		ck_assert_uint_eq(gattr(cf.g, 0, NULL), 0);
		ck_assert_int_eq(gset(cf.g, 0, PG, PRIV, 0, NULL), 0);
	}
	cf_expect_sync(v, NULL, 7);
	cf_assert_invariants(cf.vm);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	cf_finish();
}
END_TEST

/* PRESERVE on hardware that owns private pages: to private, before finalize only. */
START_TEST(test_preserve_rules_all_backends)
{
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts,
						.attr_scheme = CCVM_ATTR_SCHEME_GMEM);
	struct ccvm_platform *q;
	struct ccvm_vm *w = NULL;
	struct ccvm_gmem *g;
	struct ccvm_backend_caps c = { .sz = sizeof(c) };
	struct tu_snap before, after;

	tu_quiet_log();
	q = cf_platform(cf_backend(_i));
	ck_assert_int_eq(ccvm_vm_create(q, &vo, &w), 0);
	ck_assert_int_eq(ccvm_vm_caps(w, &c), 0);
	g = tu_gmem(w, RT_SIZE, MMAP | SHARED);
	tu_snap_take(&before, q, w, g, NULL, 0, 4 * MIB);
	ck_assert_int_eq(gset(g, 0, PG, 0, PRESERVE, NULL), c.needs_finalize ? -EINVAL : 0);
	tu_snap_take(&after, q, w, g, NULL, 0, 4 * MIB);
	tu_snap_assert_same(&before, &after);
	ck_assert_int_eq(gset(g, 0, PG, PRIV, PRESERVE, NULL), 0);
	ck_assert_int_eq(ccvm_vm_finalize(w), 0);
	ck_assert_int_eq(gset(g, PG, PG, PRIV, PRESERVE, NULL), c.needs_finalize ? -EINVAL : 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(w), 0);
	ck_assert_int_eq(ccvm_platform_destroy(q), 0);
}
END_TEST

/* ---- the checker learns I31..I34: each broken behind the API, then found ------------ */

static unsigned int broken(struct ccvm_vm *w)
{
	struct ccvm_invariant_report r = cf_invariants(w);

	return r.invariant;
}

START_TEST(test_invariants_in_place)
{
	struct ccvm_gmem *g = tu_gmem(vm, 2 * MIB, MMAP | SHARED);
	struct ccvm_gmem_inode *inode = g->inode;
	struct ccvm_vcpu *v = NULL;
	struct ccvm_memslot *slot;
	uint64_t gpa = 0, size = PG, pfn = 0;

	tu_gmem_slot(vm, 0, 0, 2 * MIB, g, 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, 0, &pfn, NULL), 0);
	ck_assert_int_eq(ccvm_gmem_pin(g, 4 * PG, PG), 0);
	ck_assert_uint_eq(broken(vm), 0);

	/* I32: the file says private under a shared leaf. */
	ccvm_xa_store(&inode->attrs, 0, PRIV);
	ck_assert_uint_eq(broken(vm), 32);
	ccvm_xa_store(&inode->attrs, 0, 0);
	/* I31: a pinned page the file holds private. */
	ccvm_xa_store(&inode->attrs, 4, PRIV);
	ck_assert_uint_eq(broken(vm), 31);
	ccvm_xa_store(&inode->attrs, 4, 0);
	/* I33: PRIVATE in the VM store of an in-place VM; a store past EOF. */
	ccvm_xa_store(&vm->attrs, 100, PRIV);
	ck_assert_uint_eq(broken(vm), 33);
	ccvm_xa_store(&vm->attrs, 100, 0);
	ccvm_xa_store(&inode->attrs, 512, PRIV);
	ck_assert_uint_eq(broken(vm), 33);
	ccvm_xa_store(&inode->attrs, 512, 0);
	/* I34: a gmem slot of an in-place VM that is not GMEM_ONLY. */
	slot = ccvm_memslot_find(vm, 0);
	slot->gmem_only = false;
	ck_assert_uint_eq(broken(vm), 34);
	slot->gmem_only = true;
	ck_assert_uint_eq(broken(vm), 0);

	ck_assert_int_eq(ccvm_gmem_unpin(g, 4 * PG, PG), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(tu_region(vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
}
END_TEST

/* ---- races: a conversion against a pin, a fault and a host access ---------------- */

#define RACE_PAGES	4

struct race {
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct ccvm_vcpu *v;
	unsigned int rounds;
	int bad;		/* a result outside the allowed set */
	_Atomic int conv_ok, conv_eagain;
};

/* Convert page 0 to private and back; EAGAIN only because of the pinner. */
static int race_convert(void *arg)
{
	struct race *r = arg;
	unsigned int i;
	uint64_t eo;
	int e;

	for (i = 0; i < r->rounds; i++) {
		e = gset(r->g, 0, 2 * PG, PRIV, 0, &eo);
		if (e == -EAGAIN && eo == PG)
			atomic_fetch_add(&r->conv_eagain, 1);
		else if (e == 0)
			atomic_fetch_add(&r->conv_ok, 1);
		else
			r->bad = 1;
		if (gset(r->g, 0, 2 * PG, 0, 0, NULL))
			r->bad = 1;
	}
	return 0;
}

/* Pin page 1 while it is shared; a private page refuses (-EFAULT). */
static int race_pin(void *arg)
{
	struct race *r = arg;
	unsigned int i;
	int e;

	for (i = 0; i < r->rounds; i++) {
		e = ccvm_gmem_pin(r->g, PG, PG);
		if (e == 0) {
			/* Pinned: the page must be shared, and stays so until unpinned. */
			if (gattr(r->g, PG, NULL) != 0)
				r->bad = 1;
			if (ccvm_gmem_unpin(r->g, PG, PG))
				r->bad = 1;
		} else if (e != -EFAULT) {
			r->bad = 1;
		}
	}
	return 0;
}

/* Fault page 0 in as the guest would (private or shared per the file) and read it. */
static int race_fault(void *arg)
{
	struct race *r = arg;
	uint8_t b;
	unsigned int i;
	int e;

	for (i = 0; i < r->rounds; i++) {
		uint64_t gpa = 0, size = PG;

		e = ccvm_vcpu_pre_fault_memory(r->v, &gpa, &size);
		if (e && e != -EFAULT)
			r->bad = 1;
		e = ccvm_gmem_read(r->g, 0, &b, 1);
		if (e && e != -EFAULT)
			r->bad = 1;
	}
	return 0;
}

static int race_setup(struct ccvm_platform *q, struct race *r, unsigned int rounds)
{
	memset(r, 0, sizeof(*r));
	r->rounds = rounds;
	r->vm = tu_vm_scheme(q, CCVM_ATTR_SCHEME_GMEM);
	r->g = tu_gmem(r->vm, RACE_PAGES * PG, MMAP | SHARED);
	ck_assert_int_eq(tu_region(r->vm, 0, CCVM_MEM_GUEST_MEMFD, 0, RACE_PAGES * PG, NULL,
				   r->g, 0), 0);
	return ccvm_vcpu_create(r->vm, 0, &r->v);
}

static void race_teardown(struct race *r)
{
	ck_assert_int_eq(ccvm_vcpu_close(r->v), 0);
	ck_assert_int_eq(tu_region(r->vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_int_eq(ccvm_gmem_close(r->g), 0);
	ck_assert_int_eq(ccvm_vm_close(r->vm), 0);
}

static int race_scenario(struct ccvm_platform *q, void *ctx)
{
	static const ccvm_thread_fn fns[3] = { race_convert, race_pin, race_fault };
	static const char *const names[3] = { "convert", "pin", "fault" };
	struct race r;
	struct ccvm_thread *t[3];
	struct ccvm_invariant_report rep = { .sz = sizeof(rep) };
	int i, ret = 0;

	(void)ctx;
	if (race_setup(q, &r, 2))
		return -EIO;
	for (i = 0; i < 3; i++)
		if (ccvm_thread_create(q, &t[i], fns[i], &r, names[i]))
			return -EIO;
	for (i = 0; i < 3; i++)
		ccvm_thread_join(t[i], NULL);
	if (ccvm_vm_check_invariants(r.vm, &rep) || rep.invariant)
		ret = -EIO;
	if (r.bad)
		ret = -EIO;
	race_teardown(&r);
	return ret;
}

/* The explorer: every schedule it tries keeps the results and I31-I34. */
START_TEST(test_explore_conversion_races)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .mem_bytes = 64 * MIB);
	struct ccvm_scenario sc = CCVM_OPTS_INIT(struct ccvm_scenario,
						 .name = "inplace-convert-pin-fault",
						 .run = race_scenario, .platform = &po);
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
						    .strategy = CCVM_EXPLORE_PCT, .runs = 300,
						    .flags = CCVM_EXPLORE_QUIET);
	struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
	int r = ccvm_explore(&sc, &o, &res);

	ck_assert_msg(r == 0, "explore: %d, token %s", r, res.token ? res.token : "-");
	ccvm_explore_result_release(&res);
}
END_TEST

/* Real threads (run under TSan too): the same race, free-running, many rounds. */
START_TEST(test_threads_conversion_races)
{
	static const ccvm_thread_fn fns[3] = { race_convert, race_pin, race_fault };
	struct ccvm_platform *q = tu_platform("mock");
	struct ccvm_thread *t[3];
	struct race r;
	int i;

	tu_quiet_log();
	ck_assert_int_eq(race_setup(q, &r, 300), 0);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(ccvm_thread_create(q, &t[i], fns[i], &r, "race"), 0);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(ccvm_thread_join(t[i], NULL), 0);
	ck_assert_int_eq(r.bad, 0);
	ck_assert_uint_eq(atomic_load(&r.conv_ok) + atomic_load(&r.conv_eagain), 300);
	cf_assert_invariants(r.vm);
	ck_assert_uint_eq(tu_gmem_info(r.g).nr_pinned, 0);
	race_teardown(&r);
	ck_assert_int_eq(ccvm_platform_destroy(q), 0);
}
END_TEST

Suite *inplace_suite(void)
{
	Suite *s = suite_create("inplace");
	TCase *tc;
	int n = cf_nr_backends();

	tc = tcase_create("attributes");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_scheme_option);
	tcase_add_test(tc, test_initial_attributes);
	tcase_add_loop_test(tc, test_set_bad_input, 0,
			    (int)(sizeof(bad_set_rows) / sizeof(bad_set_rows[0])));
	tcase_add_test(tc, test_set_null_and_bugged);
	tcase_add_test(tc, test_set_noop);
	tcase_add_test(tc, test_set_invalidates_every_slot);
	tcase_add_test(tc, test_content_modes);
	tcase_add_test(tc, test_invariants_in_place);
	suite_add_tcase(s, tc);

	tc = tcase_create("pins");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_pins_block_to_private);
	tcase_add_test(tc, test_pin_errors);
	tcase_add_test(tc, test_host_access_sigbus_offset);
	suite_add_tcase(s, tc);

	tc = tcase_create("races");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_explore_conversion_races);
	tcase_add_test(tc, test_threads_conversion_races);
	suite_add_tcase(s, tc);

	tc = tcase_create("guests");
	tcase_add_loop_test(tc, test_guest_roundtrip_all_backends, 0, n);
	tcase_add_loop_test(tc, test_fault_follows_file_all_backends, 0, n);
	tcase_add_loop_test(tc, test_preserve_rules_all_backends, 0, n);
	suite_add_tcase(s, tc);
	return s;
}
