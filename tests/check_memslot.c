/* SPDX-License-Identifier: MIT */
/*
 * KVM_SET_USER_MEMORY_REGION2 semantics (docs/semantics.md 3.3,
 * docs/real-kvm.md): the errno table, create/delete/move, gmem bindings,
 * the generation counter and its wrap.  Every refused call must leave the
 * slots, the generation, the gmem bindings and every counter as they were.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"
#include "snapshot.h"
#include "testutil.h"

#define PRIV		CCVM_MEMORY_ATTRIBUTE_PRIVATE
#define GMEM		CCVM_MEM_GUEST_MEMFD
#define TOP		(UINT64_MAX & CCVM_PAGE_MASK)

#define SLOT0_GPA	(256 * TU_MiB)		/* gmem slot, G [0, 2M) */
#define SLOT1_GPA	(512 * TU_MiB)		/* plain slot */
#define FREE_GPA	TU_GiB			/* nothing here */
#define GMEM_SIZE	(8 * TU_MiB)

static struct ccvm_platform *p;
static struct ccvm_vm *vm, *vm2;
static struct ccvm_gmem *g, *g2;		/* g2 belongs to vm2 */
static _Alignas(TU_2M) uint8_t backing[4 * TU_MiB];

static void setup(void)
{
	tu_caps_reset_to_mock();
	p = tu_platform("mock");
	vm = tu_vm(p);
	vm2 = tu_vm(p);
	g = tu_gmem(vm, GMEM_SIZE, 0);
	g2 = tu_gmem(vm2, GMEM_SIZE, 0);
	tu_gmem_slot(vm, 0, SLOT0_GPA, TU_2M, g, 0);
	tu_plain_slot(vm, 1, SLOT1_GPA, TU_2M, backing);
}

static void teardown(void)
{
	ccvm_xa_test_fail_alloc(0);
	ck_assert_int_eq(ccvm_gmem_close(g2), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(vm2), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	ccvm_set_log(NULL, NULL);
}

static void snap(struct tu_snap *s)
{
	tu_snap_take(s, p, vm, g, g2, 0, 16 * TU_MiB);
}

/* ---- the errno table ------------------------------------------------------------ */

enum uaddr_kind { UA_NULL, UA_BACKING, UA_BACKING_PLUS_1, UA_BACKING_PLUS_4K, UA_KERNEL,
		  UA_USER_END_MINUS_1M, UA_USER_END };

/* x86-64's TASK_SIZE_MAX with 4-level paging: where KVM's access_ok() stops. */
#define USER_END	((1ull << 47) - TU_PAGE)
enum gmem_kind { GM_NONE, GM_OWN, GM_OTHER_VM };

static const struct {
	const char *what;
	uint32_t slot, flags;
	uint64_t gpa, size;
	enum uaddr_kind ua;
	enum gmem_kind gm;
	uint64_t off;
	int err;
} bad_cases[] = {
	/* flags */
	{ "unknown flag", 5, 1u << 3, FREE_GPA, TU_2M, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "flag bit 31", 5, 1u << 31, FREE_GPA, TU_2M, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "LOG_DIRTY_PAGES", 5, CCVM_MEM_LOG_DIRTY_PAGES, FREE_GPA, TU_2M, UA_BACKING, GM_NONE,
	  0, -EINVAL },
	{ "READONLY", 5, CCVM_MEM_READONLY, FREE_GPA, TU_2M, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "GUEST_MEMFD|LOG_DIRTY", 5, GMEM | CCVM_MEM_LOG_DIRTY_PAGES, FREE_GPA, TU_2M,
	  UA_NULL, GM_OWN, 2 * TU_MiB, -EINVAL },
	{ "GUEST_MEMFD|READONLY", 5, GMEM | CCVM_MEM_READONLY, FREE_GPA, TU_2M, UA_NULL, GM_OWN,
	  2 * TU_MiB, -EINVAL },
	/* alignment */
	{ "size 4097", 5, 0, FREE_GPA, 4097, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "size 100", 5, 0, FREE_GPA, 100, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "gpa +1", 5, 0, FREE_GPA + 1, TU_2M, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "gpa +2048", 5, 0, FREE_GPA + 2048, TU_2M, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "userspace_addr +1", 5, 0, FREE_GPA, TU_2M, UA_BACKING_PLUS_1, GM_NONE, 0, -EINVAL },
	/* access_ok(): the range must be user memory (issue 16 #6) */
	{ "userspace_addr in the kernel's direct map", 5, 0, FREE_GPA, TU_2M, UA_KERNEL, GM_NONE,
	  0, -EINVAL },
	{ "userspace_addr range ending past the user limit", 5, 0, FREE_GPA, TU_2M,
	  UA_USER_END_MINUS_1M, GM_NONE, 0, -EINVAL },
	{ "userspace_addr at the user limit", 5, 0, FREE_GPA, TU_PAGE, UA_USER_END, GM_NONE, 0,
	  -EINVAL },
	{ "gmem slot, userspace_addr in the kernel", 5, GMEM, FREE_GPA, TU_2M, UA_KERNEL, GM_OWN,
	  2 * TU_MiB, -EINVAL },
	{ "delete, userspace_addr in the kernel", 1, 0, SLOT1_GPA, 0, UA_KERNEL, GM_NONE, 0,
	  -EINVAL },
	{ "gmem offset 100", 5, GMEM, FREE_GPA, TU_2M, UA_NULL, GM_OWN, 100, -EINVAL },
	{ "gmem offset 2M+2048", 5, GMEM, FREE_GPA, TU_2M, UA_NULL, GM_OWN, TU_2M + 2048,
	  -EINVAL },
	{ "gmem offset+size overflows", 5, GMEM, FREE_GPA, TU_2M, UA_NULL, GM_OWN, TOP,
	  -EINVAL },
	/* slot id and address space */
	{ "address space 1", 0x10005, 0, FREE_GPA, TU_2M, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "address space 1, id of slot 1", 0x10001, 0, SLOT1_GPA, TU_2M, UA_BACKING, GM_NONE,
	  0, -EINVAL },
	{ "slot id 32764", CCVM_MAX_MEMSLOTS, 0, FREE_GPA, TU_2M, UA_BACKING, GM_NONE, 0,
	  -EINVAL },
	{ "slot id 0xffff", 0xffff, 0, FREE_GPA, TU_2M, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "slot id ~0", UINT32_MAX, 0, FREE_GPA, TU_2M, UA_BACKING, GM_NONE, 0, -EINVAL },
	/* GPA range */
	{ "gpa + size wraps", 5, 0, TOP - TU_MiB + TU_PAGE, TU_2M, UA_BACKING, GM_NONE, 0,
	  -EINVAL },
	{ "at the end of the GPA space", 5, 0, 1ull << 48, TU_PAGE, UA_BACKING, GM_NONE, 0,
	  -EINVAL },
	{ "across the end of the GPA space", 5, 0, (1ull << 48) - TU_PAGE, 2 * TU_PAGE,
	  UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "size 2^63", 5, 0, 0, 1ull << 63, UA_BACKING, GM_NONE, 0, -EINVAL },
	/* KVM_MEM_MAX_NR_PAGES: at most 2^31 - 1 pages in a slot */
	{ "2^31 pages", 5, 0, FREE_GPA, 1ull << 43, UA_BACKING, GM_NONE, 0, -EINVAL },
	/* overlap */
	{ "inside slot 1", 5, 0, SLOT1_GPA + TU_PAGE, TU_PAGE, UA_BACKING, GM_NONE, 0, -EEXIST },
	{ "over slot 1's start", 5, 0, SLOT1_GPA - TU_PAGE, 2 * TU_PAGE, UA_BACKING, GM_NONE, 0,
	  -EEXIST },
	{ "over slot 1's end", 5, 0, SLOT1_GPA + TU_2M - TU_PAGE, 2 * TU_PAGE, UA_BACKING,
	  GM_NONE, 0, -EEXIST },
	{ "around both slots", 5, 0, SLOT0_GPA - TU_2M, 512 * TU_MiB, UA_BACKING, GM_NONE, 0,
	  -EEXIST },
	{ "gmem slot over slot 0", 5, GMEM, SLOT0_GPA + TU_MiB, TU_2M, UA_NULL, GM_OWN,
	  4 * TU_MiB, -EEXIST },
	/* delete */
	{ "delete a missing slot", 9, 0, FREE_GPA, 0, UA_NULL, GM_NONE, 0, -EINVAL },
	{ "delete in address space 1", 0x10001, 0, SLOT1_GPA, 0, UA_NULL, GM_NONE, 0, -EINVAL },
	/* gmem binding */
	{ "GUEST_MEMFD without a gmem", 5, GMEM, FREE_GPA, TU_2M, UA_NULL, GM_NONE, 0, -EBADF },
	/* KVM looks the file up only to bind a new slot, after the overlap check */
	{ "GUEST_MEMFD without a gmem, overlapping", 5, GMEM, SLOT1_GPA, TU_2M, UA_NULL,
	  GM_NONE, 0, -EEXIST },
	{ "GUEST_MEMFD without a gmem, on plain slot 1", 1, GMEM, SLOT1_GPA, TU_2M,
	  UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "gmem of another VM", 5, GMEM, FREE_GPA, TU_2M, UA_NULL, GM_OTHER_VM, 0, -EINVAL },
	{ "gmem range past EOF", 5, GMEM, FREE_GPA, 2 * TU_PAGE, UA_NULL, GM_OWN,
	  GMEM_SIZE - TU_PAGE, -EINVAL },
	{ "gmem offset at EOF", 5, GMEM, FREE_GPA, TU_PAGE, UA_NULL, GM_OWN, GMEM_SIZE, -EINVAL },
	{ "gmem offset past EOF", 5, GMEM, FREE_GPA, TU_PAGE, UA_NULL, GM_OWN, 2 * GMEM_SIZE,
	  -EINVAL },
	{ "gmem slot bigger than the file", 5, GMEM, FREE_GPA, 2 * GMEM_SIZE, UA_NULL, GM_OWN,
	  0, -EINVAL },
	{ "gmem range bound to slot 0", 5, GMEM, FREE_GPA, TU_2M, UA_NULL, GM_OWN, TU_MiB,
	  -EINVAL },
	{ "gmem range bound to slot 0, exactly", 5, GMEM, FREE_GPA, TU_2M, UA_NULL, GM_OWN, 0,
	  -EINVAL },
	{ "gmem range bound to slot 0, last page", 5, GMEM, FREE_GPA, TU_PAGE, UA_NULL, GM_OWN,
	  TU_2M - TU_PAGE, -EINVAL },
	/* a gmem slot is immutable */
	{ "move gmem slot 0", 0, GMEM, FREE_GPA, TU_2M, UA_NULL, GM_OWN, 0, -EINVAL },
	{ "resize gmem slot 0", 0, GMEM, SLOT0_GPA, 2 * TU_2M, UA_NULL, GM_OWN, 0, -EINVAL },
	{ "drop slot 0's GUEST_MEMFD", 0, 0, SLOT0_GPA, TU_2M, UA_NULL, GM_NONE, 0, -EINVAL },
	{ "re-set slot 0 as it is", 0, GMEM, SLOT0_GPA, TU_2M, UA_NULL, GM_OWN, 0, -EINVAL },
	{ "rebind slot 0 elsewhere in the file", 0, GMEM, SLOT0_GPA, TU_2M, UA_NULL, GM_OWN,
	  4 * TU_MiB, -EINVAL },
	/* a plain slot may only move */
	{ "give slot 1 GUEST_MEMFD", 1, GMEM, SLOT1_GPA, TU_2M, UA_BACKING, GM_OWN, 4 * TU_MiB,
	  -EINVAL },
	{ "grow slot 1", 1, 0, SLOT1_GPA, 2 * TU_2M, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "shrink slot 1", 1, 0, SLOT1_GPA, TU_MiB, UA_BACKING, GM_NONE, 0, -EINVAL },
	{ "change slot 1's userspace_addr", 1, 0, SLOT1_GPA, TU_2M, UA_BACKING_PLUS_4K, GM_NONE,
	  0, -EINVAL },
	{ "clear slot 1's userspace_addr", 1, 0, SLOT1_GPA, TU_2M, UA_NULL, GM_NONE, 0, -EINVAL },
	{ "move slot 1 onto slot 0", 1, 0, SLOT0_GPA, TU_2M, UA_BACKING, GM_NONE, 0, -EEXIST },
	{ "move slot 1 past the GPA space", 1, 0, 1ull << 48, TU_2M, UA_BACKING, GM_NONE, 0,
	  -EINVAL },
};

static int bad_call(unsigned int i)
{
	void *ua = NULL;
	struct ccvm_gmem *gm = NULL;

	switch (bad_cases[i].ua) {
	case UA_NULL:
		break;
	case UA_BACKING:
		ua = backing;
		break;
	case UA_BACKING_PLUS_1:
		ua = backing + 1;
		break;
	case UA_BACKING_PLUS_4K:
		ua = backing + TU_PAGE;
		break;
	case UA_KERNEL:
		ua = (void *)(uintptr_t)0xffff888000000000ull;
		break;
	case UA_USER_END_MINUS_1M:
		ua = (void *)(uintptr_t)(USER_END - TU_MiB);
		break;
	case UA_USER_END:
		ua = (void *)(uintptr_t)USER_END;
		break;
	}
	if (bad_cases[i].gm == GM_OWN)
		gm = g;
	else if (bad_cases[i].gm == GM_OTHER_VM)
		gm = g2;
	return tu_region(vm, bad_cases[i].slot, bad_cases[i].flags, bad_cases[i].gpa,
			 bad_cases[i].size, ua, gm, bad_cases[i].off);
}

START_TEST(test_bad_region)
{
	struct tu_snap before, after;
	uint64_t gen2 = ccvm_vm_memslot_generation(vm2);
	int r;

	snap(&before);
	r = bad_call(_i);
	ck_assert_msg(r == bad_cases[_i].err, "%s: %d, wanted %d", bad_cases[_i].what, r,
		      bad_cases[_i].err);
	snap(&after);
	tu_snap_assert_same(&before, &after);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm2), gen2);
	/* Refused again, the same way, still changing nothing. */
	ck_assert_int_eq(bad_call(_i), bad_cases[_i].err);
	snap(&after);
	tu_snap_assert_same(&before, &after);
	/* The VM still takes a valid update at the free place. */
	tu_plain_slot(vm, 5, FREE_GPA, TU_2M, backing + TU_2M);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), before.generation + 1);
}
END_TEST

START_TEST(test_null_args)
{
	struct ccvm_memory_region r = { .slot = 5, .guest_phys_addr = FREE_GPA,
					.memory_size = TU_2M };

	ck_assert_int_eq(ccvm_vm_set_user_memory_region(NULL, &r), -EINVAL);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_vm_force_generation_wrap(NULL), -EINVAL);
}
END_TEST

START_TEST(test_bugged_vm)
{
	struct tu_snap before, after;

	tu_quiet_log();
	ccvm_vm_bug(vm, "bugged on purpose");
	snap(&before);
	ck_assert_int_eq(tu_region(vm, 5, 0, FREE_GPA, TU_2M, backing, NULL, 0), -EIO);
	ck_assert_int_eq(tu_region(vm, 1, 0, SLOT1_GPA, 0, NULL, NULL, 0), -EIO);
	ck_assert_int_eq(tu_region(vm, 5, GMEM, FREE_GPA, TU_2M, NULL, g, 4 * TU_MiB), -EIO);
	snap(&after);
	tu_snap_assert_same(&before, &after);
}
END_TEST

START_TEST(test_enomem)
{
	struct tu_snap before, after;

	snap(&before);
	ccvm_xa_test_fail_alloc(1 << 20);
	ck_assert_int_eq(tu_region(vm, 3000, 0, FREE_GPA, TU_2M, backing, NULL, 0), -ENOMEM);
	ck_assert_int_eq(tu_region(vm, 3001, GMEM, FREE_GPA, TU_2M, NULL, g, 4 * TU_MiB),
			 -ENOMEM);
	ccvm_xa_test_fail_alloc(0);
	snap(&after);
	tu_snap_assert_same(&before, &after);
	tu_gmem_slot(vm, 3001, FREE_GPA, TU_2M, g, 4 * TU_MiB);
	ck_assert_uint_eq(tu_gmem_info(g).nr_bindings, 2);
}
END_TEST

/* ---- what works -------------------------------------------------------------------- */

START_TEST(test_create_delete)
{
	struct ccvm_stats st0 = tu_vstats(vm), st1;
	uint64_t gen0 = ccvm_vm_memslot_generation(vm);

	ck_assert_uint_eq(tu_gmem_info(g).nr_bindings, 1);
	/* A disjoint range of the same file in a second slot. */
	tu_gmem_slot(vm, 2, FREE_GPA, 4 * TU_MiB, g, TU_2M);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), gen0 + 1);
	ck_assert_uint_eq(tu_gmem_info(g).nr_bindings, 2);
	st1 = tu_vstats(vm);
	ck_assert_uint_eq(st1.events[CCVM_EV_MEMSLOT_UPDATE],
			  st0.events[CCVM_EV_MEMSLOT_UPDATE] + 1);

	/* Delete: size 0; the flags and gmem of the request do not matter. */
	ck_assert_int_eq(tu_region(vm, 2, GMEM, FREE_GPA, 0, NULL, NULL, 0), 0);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), gen0 + 2);
	ck_assert_uint_eq(tu_gmem_info(g).nr_bindings, 1);
	ck_assert_int_eq(tu_region(vm, 2, 0, FREE_GPA, 0, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(tu_region(vm, 1, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), gen0 + 3);
	st1 = tu_vstats(vm);
	ck_assert_uint_eq(st1.events[CCVM_EV_MEMSLOT_UPDATE],
			  st0.events[CCVM_EV_MEMSLOT_UPDATE] + 3);
	/* The freed GPA range takes a new slot. */
	tu_plain_slot(vm, 7, SLOT1_GPA, 4 * TU_MiB, backing);
}
END_TEST

START_TEST(test_identical_reset)
{
	struct tu_snap before, after;

	snap(&before);
	tu_plain_slot(vm, 1, SLOT1_GPA, TU_2M, backing);
	snap(&after);
	tu_snap_assert_same(&before, &after);
}
END_TEST

START_TEST(test_slot_id_range)
{
	uint64_t gen0 = ccvm_vm_memslot_generation(vm);

	tu_plain_slot(vm, CCVM_MAX_MEMSLOTS - 1, FREE_GPA, TU_2M, backing + TU_2M);
	tu_plain_slot(vm, CCVM_MAX_MEMSLOTS - 2, FREE_GPA + TU_2M, TU_2M, backing);
	ck_assert_int_eq(tu_region(vm, CCVM_MAX_MEMSLOTS - 1, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), gen0 + 3);
}
END_TEST

/* A GPA range above gpa_bits is refused; a wider VM takes it. */
START_TEST(test_gpa_bits)
{
	struct ccvm_vm_opts o = CCVM_OPTS_INIT(struct ccvm_vm_opts, .gpa_bits = 52);
	struct ccvm_vm *w = NULL;

	tu_plain_slot(vm, 6, (1ull << 48) - TU_2M, TU_2M, backing);
	ck_assert_int_eq(ccvm_vm_create(p, &o, &w), 0);
	tu_plain_slot(w, 0, 1ull << 48, TU_2M, backing);
	tu_plain_slot(w, 1, (1ull << 52) - TU_2M, TU_2M, backing);
	ck_assert_int_eq(tu_region(w, 2, 0, 1ull << 52, TU_PAGE, backing, NULL, 0), -EINVAL);
	ck_assert_int_eq(ccvm_vm_close(w), 0);
}
END_TEST

/* A backend with a shared bit: memslots live below it. */
START_TEST(test_shared_bit_limit)
{
	struct ccvm_backend_ops o = tu_ops("shared-bit");
	struct ccvm_platform *q;
	struct ccvm_vm *w;
	uint64_t sbit;

	tu_caps()->has_shared_bit = true;
	tu_register(&o);
	q = tu_platform("shared-bit");
	w = tu_vm(q);
	sbit = ccvm_vm_shared_bit(w);
	ck_assert_uint_eq(sbit, 1ull << 47);
	tu_plain_slot(w, 0, sbit - TU_2M, TU_2M, backing);
	ck_assert_int_eq(tu_region(w, 1, 0, sbit, TU_PAGE, backing, NULL, 0), -EINVAL);
	ck_assert_int_eq(tu_region(w, 1, 0, sbit - 4 * TU_MiB, 2 * TU_2M + TU_PAGE, backing,
				   NULL, 0), -EINVAL);
	ck_assert_int_eq(tu_region(w, 1, 0, sbit | SLOT1_GPA, TU_2M, backing, NULL, 0),
			 -EINVAL);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(w), 1);
	ck_assert_int_eq(ccvm_vm_close(w), 0);
	ck_assert_int_eq(ccvm_platform_destroy(q), 0);
}
END_TEST

START_TEST(test_delete_after_gmem_close)
{
	struct ccvm_gmem *g3 = tu_gmem(vm, TU_2M, 0);
	uint64_t gen0;

	tu_gmem_slot(vm, 3, FREE_GPA, TU_2M, g3, 0);
	ck_assert_int_eq(ccvm_gmem_close(g3), 0);
	gen0 = ccvm_vm_memslot_generation(vm);
	ck_assert_int_eq(tu_region(vm, 3, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), gen0 + 1);
	ck_assert_int_eq(tu_region(vm, 3, 0, 0, 0, NULL, NULL, 0), -EINVAL);
	/* The GPA range is free again. */
	tu_gmem_slot(vm, 3, FREE_GPA, TU_2M, g, 4 * TU_MiB);
}
END_TEST

START_TEST(test_rebind_after_delete)
{
	ck_assert_int_eq(tu_region(vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_bindings, 0);
	/* The same file range, another slot id and GPA. */
	tu_gmem_slot(vm, 4, FREE_GPA, TU_2M, g, 0);
	ck_assert_uint_eq(tu_gmem_info(g).nr_bindings, 1);
	/* And the old id at the old place, another range. */
	tu_gmem_slot(vm, 0, SLOT0_GPA, TU_2M, g, TU_2M);
	ck_assert_uint_eq(tu_gmem_info(g).nr_bindings, 2);
}
END_TEST

START_TEST(test_move)
{
	struct ccvm_vcpu *v = NULL;
	uint64_t gen0 = ccvm_vm_memslot_generation(vm), gpa = SLOT1_GPA, size = TU_PAGE;
	struct ccvm_stats st0, st1;
	int level;

	/* Map a page of slot 1, then move the slot away. */
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, SLOT1_GPA, NULL, &level), 0);
	st0 = tu_vstats(vm);

	tu_plain_slot(vm, 1, FREE_GPA, TU_2M, backing);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), gen0 + 1);
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, SLOT1_GPA, NULL, &level), -ENOENT);
	st1 = tu_vstats(vm);
	ck_assert_uint_gt(st1.events[CCVM_EV_ZAP], st0.events[CCVM_EV_ZAP]);
	/* The old range is free, the new one taken. */
	tu_plain_slot(vm, 6, SLOT1_GPA, TU_2M, backing + TU_2M);
	ck_assert_int_eq(tu_region(vm, 7, 0, FREE_GPA, TU_PAGE, backing, NULL, 0), -EEXIST);
	/* A move that overlaps only the slot's own old range. */
	tu_plain_slot(vm, 1, FREE_GPA + TU_MiB, TU_2M, backing);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), gen0 + 3);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/*
 * Free-running, a pre-fault of 512 pages holds memslots_rw across them
 * while another thread keeps adding and deleting a slot elsewhere, each
 * update taking memslots_rw for write: the pre-fault lets a waiting writer
 * in between pages, so both finish (a hang is the test's timeout), every
 * page is mapped and every update was made.  Under ThreadSanitizer (make
 * ci-tsan) it is the hold-and-drop's race test.
 */
struct slot_toggler {
	atomic_bool done;
	unsigned int updates;
	int err;
};

static void *toggle_slot(void *arg)
{
	struct slot_toggler *t = arg;
	unsigned int n;

	/* At least a few updates; at most a bound, should the pre-fault hang. */
	for (n = 0; n < 100000 && (n < 8 || !atomic_load(&t->done)); n++) {
		t->err = tu_region(vm, 5, 0, FREE_GPA, TU_2M, backing + TU_2M, NULL, 0);
		if (!t->err)
			t->err = tu_region(vm, 5, 0, FREE_GPA, 0, NULL, NULL, 0);
		if (t->err)
			break;
		t->updates += 2;
	}
	return NULL;
}

START_TEST(test_prefault_beside_slot_updates)
{
	struct slot_toggler t = { .err = 0 };
	uint64_t gen0 = ccvm_vm_memslot_generation(vm), gpa = SLOT0_GPA, size = TU_2M, off;
	struct ccvm_vcpu *v = NULL;
	pthread_t th;
	int level, ret;

	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, SLOT0_GPA, TU_2M, PRIV, 0), 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, toggle_slot, &t), 0);
	ret = ccvm_vcpu_pre_fault_memory(v, &gpa, &size);
	atomic_store(&t.done, true);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(ret, 0);
	ck_assert_uint_eq(size, 0);
	ck_assert_int_eq(t.err, 0);
	ck_assert_uint_ge(t.updates, 16);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), gen0 + t.updates);
	for (off = 0; off < TU_2M; off += TU_PAGE)
		ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, SLOT0_GPA + off, NULL, &level), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

START_TEST(test_generation_wrap)
{
	struct ccvm_stats vst0, pst0, vst1, pst1;
	struct ccvm_vcpu *v = NULL;
	uint64_t gen0 = ccvm_vm_memslot_generation(vm), gpa = SLOT1_GPA, size = TU_PAGE;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	vst0 = tu_vstats(vm);
	pst0 = tu_pstats(p);
	ck_assert_int_eq(ccvm_vm_force_generation_wrap(vm), 0);
	/* Armed, but a refused update publishes nothing and wraps nothing. */
	ck_assert_int_eq(tu_region(vm, 5, 0, SLOT1_GPA, TU_2M, backing, NULL, 0), -EEXIST);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), gen0);
	ck_assert_uint_eq(tu_vstats(vm).events[CCVM_EV_FAST_ZAP], vst0.events[CCVM_EV_FAST_ZAP]);

	tu_plain_slot(vm, 5, FREE_GPA, TU_2M, backing + TU_2M);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), 0);
	vst1 = tu_vstats(vm);
	pst1 = tu_pstats(p);
	ck_assert_uint_eq(vst1.events[CCVM_EV_FAST_ZAP], vst0.events[CCVM_EV_FAST_ZAP] + 1);
	ck_assert_uint_eq(pst1.events[CCVM_EV_FAST_ZAP], pst0.events[CCVM_EV_FAST_ZAP] + 1);
	/* Every direct root was invalidated: the mapping is gone. */
	ck_assert_int_eq(ccvm_vm_lookup_mapping(vm, SLOT1_GPA, NULL, NULL), -ENOENT);

	/* Counting goes on from 0, without another fast zap. */
	ck_assert_int_eq(tu_region(vm, 5, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm), 1);
	ck_assert_uint_eq(tu_vstats(vm).events[CCVM_EV_FAST_ZAP], vst1.events[CCVM_EV_FAST_ZAP]);
	ck_assert_uint_eq(ccvm_vm_memslot_generation(vm2), 0);	/* per VM */
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

START_TEST(test_attributes_survive_slots)
{
	uint64_t run;

	tu_set_attr(vm, SLOT0_GPA, TU_PAGE, PRIV);
	ck_assert_int_eq(tu_region(vm, 0, 0, 0, 0, NULL, NULL, 0), 0);
	ck_assert_uint_eq(tu_get_attr(vm, SLOT0_GPA, &run), PRIV);
	ck_assert_uint_eq(run, TU_PAGE);
	tu_gmem_slot(vm, 0, SLOT0_GPA, TU_2M, g, 0);
	ck_assert_uint_eq(tu_get_attr(vm, SLOT0_GPA, &run), PRIV);
}
END_TEST

#define LOOP(tc, fn, table) \
	tcase_add_loop_test(tc, fn, 0, (int)(sizeof(table) / sizeof((table)[0])))

Suite *memslot_suite(void)
{
	Suite *s = suite_create("memslot");
	TCase *tc;

	tc = tcase_create("refused");
	tcase_add_checked_fixture(tc, setup, teardown);
	LOOP(tc, test_bad_region, bad_cases);
	tcase_add_test(tc, test_null_args);
	tcase_add_test(tc, test_bugged_vm);
	tcase_add_test(tc, test_enomem);
	suite_add_tcase(s, tc);

	tc = tcase_create("update");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_create_delete);
	tcase_add_test(tc, test_identical_reset);
	tcase_add_test(tc, test_slot_id_range);
	tcase_add_test(tc, test_gpa_bits);
	tcase_add_test(tc, test_shared_bit_limit);
	tcase_add_test(tc, test_delete_after_gmem_close);
	tcase_add_test(tc, test_rebind_after_delete);
	tcase_add_test(tc, test_move);
	tcase_add_test(tc, test_generation_wrap);
	tcase_add_test(tc, test_prefault_beside_slot_updates);
	tcase_add_test(tc, test_attributes_survive_slots);
	suite_add_tcase(s, tc);
	return s;
}
