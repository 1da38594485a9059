/* SPDX-License-Identifier: MIT */
/*
 * KVM_SET_MEMORY_ATTRIBUTES semantics (docs/semantics.md 1.1-1.4): the
 * validation table, the no-op fast path, invalidation only where a memslot
 * intersects, -ENOMEM before anything changed, run queries, neighbours of
 * a conversion, and the hugepage MIXED flags.
 *
 * internal.h is used for what the API does not show:
 * the invalidation sequence, in-progress count and range, and the MIXED
 * flags of a slot's 2M pages.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "snapshot.h"
#include "testutil.h"

#define PRIV		CCVM_MEMORY_ATTRIBUTE_PRIVATE
#define GFN(gpa)	((gpa) >> CCVM_PAGE_SHIFT)
#define TOP		(UINT64_MAX & CCVM_PAGE_MASK)	/* the last page's address */

static struct ccvm_platform *p;
static struct ccvm_vm *vm;
static struct ccvm_gmem *g;

/* ---- an observing backend: the mock plus recording attribute hooks --------- */

struct obs_call {
	uint64_t start, end, attrs;
	uint64_t slot_base;		/* update_mem_attr only */
	uint64_t range_start, range_end;	/* in-progress range, pre only */
	long in_progress;
};

#define OBS_MAX	16

static struct {
	unsigned int nr_pre, nr_post, nr_update;
	struct obs_call pre[OBS_MAX], post[OBS_MAX], update[OBS_MAX];
} obs;

static int obs_pre(struct ccvm_vm *v, uint64_t start, uint64_t end, uint64_t attrs)
{
	struct obs_call *c = &obs.pre[obs.nr_pre++ % OBS_MAX];

	*c = (struct obs_call){ .start = start, .end = end, .attrs = attrs };
	/* internal.h: the in-progress range as a concurrent fault would see it. */
	c->range_start = atomic_load(&v->mmu.range_start);
	c->range_end = atomic_load(&v->mmu.range_end);
	c->in_progress = atomic_load(&v->mmu.invalidate_in_progress);
	return 0;
}

static void obs_post(struct ccvm_vm *v, uint64_t start, uint64_t end, uint64_t attrs)
{
	struct obs_call *c = &obs.post[obs.nr_post++ % OBS_MAX];

	*c = (struct obs_call){ .start = start, .end = end, .attrs = attrs };
	c->in_progress = atomic_load(&v->mmu.invalidate_in_progress);
}

static int obs_update(struct ccvm_vm *v, struct ccvm_memslot *slot, uint64_t attrs,
		      uint64_t start, uint64_t end)
{
	struct obs_call *c = &obs.update[obs.nr_update++ % OBS_MAX];

	*c = (struct obs_call){ .start = start, .end = end, .attrs = attrs,
				.slot_base = ccvm_memslot_base_gfn(slot) };
	/* Runs after the invalidation ended, outside mmu_lock. */
	c->in_progress = atomic_load(&v->mmu.invalidate_in_progress);
	return 0;
}

static void setup_on(const char *backend)
{
	memset(&obs, 0, sizeof(obs));
	tu_caps_reset_to_mock();
	if (backend && !strcmp(backend, "attr-obs")) {
		struct ccvm_backend_ops o = tu_ops("attr-obs");

		o.pre_set_mem_attr = obs_pre;
		o.post_set_mem_attr = obs_post;
		o.update_mem_attr = obs_update;
		tu_register(&o);
	}
	p = tu_platform(backend);
	vm = tu_vm(p);
	g = tu_gmem(vm, 16 * TU_MiB, 0);
}

/* mock, a 16M gmem file, slot 0: gmem [0, 8M), no attributes yet */
static void setup_mock(void)
{
	setup_on("mock");
	tu_gmem_slot(vm, 0, 0, 8 * TU_MiB, g, 0);
}

static void setup_obs(void)
{
	setup_on("attr-obs");
}

static void teardown(void)
{
	ccvm_xa_test_fail_alloc(0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	ccvm_set_log(NULL, NULL);
}

static void snap(struct tu_snap *s)
{
	tu_snap_take(s, p, vm, g, NULL, 0, 16 * TU_MiB);
}

/* ---- validation (docs/semantics.md 1.1, in KVM's order) ----------------------- */

static const struct {
	uint64_t gpa, size, attrs, flags;
} invalid_cases[] = {
	{ 2 * TU_MiB, TU_PAGE, PRIV, 1 },			/* flags != 0 */
	{ 2 * TU_MiB, TU_PAGE, 0, 1ull << 63 },
	{ 2 * TU_MiB, TU_PAGE, 1ull << 0, 0 },			/* unknown bits */
	{ 2 * TU_MiB, TU_PAGE, PRIV | (1ull << 4), 0 },
	{ 2 * TU_MiB, TU_PAGE, 1ull << 63, 0 },
	{ 2 * TU_MiB, TU_PAGE, ~0ull, 0 },
	{ 2 * TU_MiB, 0, PRIV, 0 },				/* size 0 */
	{ 0, 0, 0, 0 },
	{ TOP, 2 * TU_PAGE, PRIV, 0 },				/* wraps */
	{ TU_PAGE, TOP, PRIV, 0 },				/* ends at 2^64 */
	{ TOP, TU_PAGE, PRIV, 0 },				/* the last page, too */
	{ 2 * TU_MiB + 1, TU_PAGE, PRIV, 0 },			/* unaligned gpa */
	{ 2 * TU_MiB + 2048, TU_PAGE, 0, 0 },
	{ 2 * TU_MiB, 100, PRIV, 0 },				/* unaligned size */
	{ 2 * TU_MiB, TU_PAGE + 1, PRIV, 0 },
	{ 2 * TU_MiB, TU_2M - 1, 0, 0 },
};

START_TEST(test_set_invalid)
{
	struct tu_snap before, after;
	int r;

	/* Something to lose: a private page in the middle of the slot. */
	tu_set_attr(vm, 2 * TU_MiB, TU_PAGE, PRIV);
	snap(&before);
	r = ccvm_vm_set_memory_attributes(vm, invalid_cases[_i].gpa, invalid_cases[_i].size,
					  invalid_cases[_i].attrs, invalid_cases[_i].flags);
	ck_assert_int_eq(r, -EINVAL);
	snap(&after);
	tu_snap_assert_same(&before, &after);
}
END_TEST

START_TEST(test_null_and_get_invalid)
{
	struct tu_snap before, after;
	uint64_t a = 0x1234, run = 0x5678;

	/* Something to lose: a private page in the middle of the slot. */
	tu_set_attr(vm, 4 * TU_MiB, TU_PAGE, PRIV);
	snap(&before);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(NULL, 0, TU_PAGE, PRIV, 0), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_memory_attributes(NULL, 0, &a, &run), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_memory_attributes(vm, 0, NULL, &run), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_memory_attributes(vm, 1, &a, &run), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_memory_attributes(vm, 2 * TU_MiB + 8, &a, &run), -EINVAL);
	ck_assert_uint_eq(a, 0x1234);
	ck_assert_uint_eq(run, 0x5678);
	/* run_bytes is optional. */
	ck_assert_int_eq(ccvm_vm_get_memory_attributes(vm, 0, &a, NULL), 0);
	ck_assert_uint_eq(a, 0);

	/* The point query: the same errno rules, nothing written on error. */
	a = 0x1234;
	ck_assert_int_eq(ccvm_vm_get_memory_attribute(NULL, 0, &a), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_memory_attribute(vm, 0, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_memory_attribute(vm, 1, &a), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_memory_attribute(vm, 2 * TU_MiB + 8, &a), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_memory_attribute(vm, UINT64_MAX, &a), -EINVAL);
	ck_assert_uint_eq(a, 0x1234);
	/* A refused query, either one, changes nothing either. */
	snap(&after);
	tu_snap_assert_same(&before, &after);
	tu_set_attr(vm, 2 * TU_MiB, TU_PAGE, PRIV);
	ck_assert_int_eq(ccvm_vm_get_memory_attribute(vm, 2 * TU_MiB, &a), 0);
	ck_assert_uint_eq(a, PRIV);
	ck_assert_int_eq(ccvm_vm_get_memory_attribute(vm, 2 * TU_MiB + TU_PAGE, &a), 0);
	ck_assert_uint_eq(a, 0);
	/* Any aligned gpa is valid, beyond the GPA width up to the last page. */
	ck_assert_int_eq(ccvm_vm_get_memory_attribute(vm, UINT64_MAX - TU_PAGE + 1, &a), 0);
	ck_assert_uint_eq(a, 0);
}
END_TEST

/* A backend without private memory supports no attribute at all. */
START_TEST(test_unsupported_attribute)
{
	struct ccvm_backend_ops o = tu_ops("no-attrs");
	struct ccvm_platform *q;
	struct ccvm_vm *w;
	uint64_t a;

	tu_caps()->memory_attributes = 0;
	tu_register(&o);
	q = tu_platform("no-attrs");
	w = tu_vm(q);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(w, 0, TU_PAGE, PRIV, 0), -EINVAL);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(w, 0, TU_PAGE, 0, 0), 0);
	ck_assert_uint_eq(tu_get_attr(w, 0, NULL), 0);
	ck_assert_int_eq(ccvm_vm_get_memory_attributes(w, 0, &a, NULL), 0);
	ck_assert_int_eq(ccvm_vm_close(w), 0);
	ck_assert_int_eq(ccvm_platform_destroy(q), 0);
}
END_TEST

START_TEST(test_bugged_vm)
{
	struct tu_snap before, after;

	tu_set_attr(vm, 2 * TU_MiB, TU_PAGE, PRIV);
	tu_quiet_log();
	ccvm_vm_bug(vm, "bugged on purpose");
	snap(&before);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 3 * TU_MiB, TU_PAGE, PRIV, 0), -EIO);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 2 * TU_MiB, TU_PAGE, 0, 0), -EIO);
	snap(&after);
	tu_snap_assert_same(&before, &after);
	/* Queries still answer. */
	ck_assert_uint_eq(tu_get_attr(vm, 2 * TU_MiB, NULL), PRIV);
}
END_TEST

/* ---- the sequence: fast path, no-slot ranges, per-slot hooks ---------------------- */

START_TEST(test_noop_fast_path)
{
	struct tu_snap before, after;

	tu_gmem_slot(vm, 0, 0, 8 * TU_MiB, g, 0);
	tu_set_attr(vm, 2 * TU_MiB, TU_2M, PRIV);
	ck_assert_uint_eq(obs.nr_pre, 1);
	snap(&before);
	/* Already holds the value: 0, no invalidation, no hook, no event. */
	tu_set_attr(vm, 2 * TU_MiB, TU_2M, PRIV);
	tu_set_attr(vm, 2 * TU_MiB + TU_PAGE, 64 * TU_KiB, PRIV);
	tu_set_attr(vm, 6 * TU_MiB, TU_2M, 0);
	tu_set_attr(vm, TU_GiB, TU_GiB, 0);
	snap(&after);
	tu_snap_assert_same(&before, &after);
	ck_assert_uint_eq(obs.nr_pre, 1);
	ck_assert_uint_eq(obs.nr_post, 1);
	ck_assert_uint_eq(obs.nr_update, 1);
}
END_TEST

START_TEST(test_no_memslot)
{
	struct ccvm_stats vst0, vst1;
	uint64_t seq0, run;

	tu_gmem_slot(vm, 0, 0, 8 * TU_MiB, g, 0);
	seq0 = tu_seq(vm);
	vst0 = tu_vstats(vm);
	/* Nothing can be mapped without a memslot: the store changes silently. */
	tu_set_attr(vm, TU_GiB, 2 * TU_PAGE, PRIV);
	ck_assert_uint_eq(tu_get_attr(vm, TU_GiB, &run), PRIV);
	ck_assert_uint_eq(run, 2 * TU_PAGE);
	ck_assert_uint_eq(tu_get_attr(vm, TU_GiB - TU_PAGE, &run), 0);
	ck_assert_uint_eq(run, TU_PAGE);
	ck_assert_uint_eq(tu_seq(vm), seq0);
	ck_assert_int_eq(tu_in_progress(vm), 0);
	ck_assert_uint_eq(obs.nr_pre + obs.nr_post + obs.nr_update, 0);
	ck_assert_int_eq(ccvm_op_calls(p, "pre_set_mem_attr"), 0);
	vst1 = tu_vstats(vm);
	ck_assert_uint_eq(vst1.events[CCVM_EV_ATTR_CHANGE], vst0.events[CCVM_EV_ATTR_CHANGE] + 1);
	ck_assert_uint_eq(vst1.events[CCVM_EV_INVALIDATE], vst0.events[CCVM_EV_INVALIDATE]);

	/* The attributes survive a memslot created over them later. */
	tu_gmem_slot(vm, 1, TU_GiB, TU_2M, g, 8 * TU_MiB);
	ck_assert_uint_eq(tu_get_attr(vm, TU_GiB, &run), PRIV);
	ck_assert_uint_eq(run, 2 * TU_PAGE);
}
END_TEST

START_TEST(test_hooks_once_per_slot)
{
	static _Alignas(4096) uint8_t backing[4 * TU_MiB];
	struct ccvm_stats vst0, vst1;
	uint64_t seq0;
	unsigned int i;

	tu_gmem_slot(vm, 1, 2 * TU_MiB, TU_2M, g, 0);			/* A */
	tu_plain_slot(vm, 2, 4 * TU_MiB, TU_2M, backing);		/* B */
	tu_plain_slot(vm, 3, 8 * TU_MiB, TU_2M, backing + TU_2M);	/* C */
	seq0 = tu_seq(vm);
	vst0 = tu_vstats(vm);

	tu_set_attr(vm, 3 * TU_MiB, 2 * TU_MiB, PRIV);
	/* One invalidation for the whole update, hooks once per slot, clipped. */
	ck_assert_uint_eq(tu_seq(vm), seq0 + 1);
	ck_assert_int_eq(tu_in_progress(vm), 0);
	ck_assert_uint_eq(obs.nr_pre, 2);
	ck_assert_uint_eq(obs.nr_post, 2);
	ck_assert_uint_eq(obs.nr_update, 2);
	ck_assert_uint_eq(obs.pre[0].start, GFN(3 * TU_MiB));
	ck_assert_uint_eq(obs.pre[0].end, GFN(4 * TU_MiB));
	ck_assert_uint_eq(obs.pre[1].start, GFN(4 * TU_MiB));
	ck_assert_uint_eq(obs.pre[1].end, GFN(5 * TU_MiB));
	for (i = 0; i < 2; i++) {
		ck_assert_uint_eq(obs.pre[i].attrs, PRIV);
		ck_assert_int_eq(obs.pre[i].in_progress, 1);
		ck_assert_uint_eq(obs.post[i].start, obs.pre[i].start);
		ck_assert_uint_eq(obs.post[i].end, obs.pre[i].end);
		ck_assert_int_eq(obs.post[i].in_progress, 1);
		ck_assert_uint_eq(obs.update[i].start, obs.pre[i].start);
		ck_assert_uint_eq(obs.update[i].end, obs.pre[i].end);
		ck_assert_uint_eq(obs.update[i].attrs, PRIV);
		ck_assert_int_eq(obs.update[i].in_progress, 0);
	}
	ck_assert_uint_eq(obs.update[0].slot_base, GFN(2 * TU_MiB));
	ck_assert_uint_eq(obs.update[1].slot_base, GFN(4 * TU_MiB));
	ck_assert_int_eq(ccvm_op_calls(p, "pre_set_mem_attr"), 2);
	ck_assert_int_eq(ccvm_op_calls(p, "post_set_mem_attr"), 2);
	ck_assert_int_eq(ccvm_op_calls(p, "update_mem_attr"), 2);
	vst1 = tu_vstats(vm);
	ck_assert_uint_eq(vst1.events[CCVM_EV_INVALIDATE], vst0.events[CCVM_EV_INVALIDATE] + 1);
	ck_assert_uint_eq(vst1.events[CCVM_EV_ATTR_CHANGE], vst0.events[CCVM_EV_ATTR_CHANGE] + 1);

	/* Back to shared over a range that also covers a gap: only B is touched. */
	memset(&obs, 0, sizeof(obs));
	tu_set_attr(vm, 4 * TU_MiB, 3 * TU_MiB, 0);
	ck_assert_uint_eq(tu_seq(vm), seq0 + 2);
	ck_assert_uint_eq(obs.nr_pre, 1);
	ck_assert_uint_eq(obs.pre[0].start, GFN(4 * TU_MiB));
	ck_assert_uint_eq(obs.pre[0].end, GFN(6 * TU_MiB));
	ck_assert_uint_eq(obs.pre[0].attrs, 0);
	ck_assert_uint_eq(obs.nr_update, 1);
	ck_assert_uint_eq(obs.update[0].slot_base, GFN(4 * TU_MiB));
	ck_assert_uint_eq(tu_get_attr(vm, 3 * TU_MiB, NULL), PRIV);
	ck_assert_uint_eq(tu_get_attr(vm, 4 * TU_MiB, NULL), 0);
}
END_TEST

START_TEST(test_enomem_leaves_everything)
{
	struct tu_snap before, after;

	tu_gmem_slot(vm, 0, 0, 8 * TU_MiB, g, 0);
	tu_set_attr(vm, 2 * TU_MiB, TU_PAGE, PRIV);
	memset(&obs, 0, sizeof(obs));
	snap(&before);
	/* Every node allocation fails: the reservation cannot be made. */
	ccvm_xa_test_fail_alloc(1 << 20);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 5 * TU_MiB, 3 * TU_PAGE, PRIV, 0),
			 -ENOMEM);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 1ull << 47, TU_PAGE, PRIV, 0),
			 -ENOMEM);
	ccvm_xa_test_fail_alloc(0);
	snap(&after);
	tu_snap_assert_same(&before, &after);
	ck_assert_uint_eq(obs.nr_pre + obs.nr_post + obs.nr_update, 0);
	/* Nothing half-done is left behind: the same call now succeeds. */
	tu_set_attr(vm, 5 * TU_MiB, 3 * TU_PAGE, PRIV);
	ck_assert_uint_eq(tu_get_attr(vm, 5 * TU_MiB, NULL), PRIV);
	ck_assert_uint_eq(obs.nr_pre, 1);
}
END_TEST

START_TEST(test_pre_hook_failure)
{
	static _Alignas(4096) uint8_t backing[TU_2M];
	struct tu_snap before, after;
	bool mixed_before[4];
	unsigned int i;

	tu_gmem_slot(vm, 0, 0, 8 * TU_MiB, g, 0);
	tu_plain_slot(vm, 1, 8 * TU_MiB, TU_2M, backing);
	tu_set_attr(vm, 2 * TU_MiB, TU_PAGE, PRIV);
	for (i = 0; i < 4; i++)
		mixed_before[i] = ccvm_lpage_test(vm->memslots->by_gfn[0]->lpage_mixed, i);
	memset(&obs, 0, sizeof(obs));
	snap(&before);

	/* The second slot's hook refuses: the whole update is refused. */
	ck_assert_int_eq(ccvm_inject_op_failure(p, "pre_set_mem_attr", 2, -EBUSY, 1), 0);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 4 * TU_MiB + TU_PAGE,
						       6 * TU_MiB, PRIV, 0), -EBUSY);
	snap(&after);
	/* The store and MIXED flags are as they were, the invalidation ended. */
	ck_assert_int_eq(tu_in_progress(vm), 0);
	ck_assert_uint_eq(after.nr_runs, before.nr_runs);
	ck_assert_mem_eq(after.runs, before.runs, before.nr_runs * sizeof(before.runs[0]));
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(ccvm_lpage_test(vm->memslots->by_gfn[0]->lpage_mixed, i),
				 mixed_before[i]);
	ck_assert_uint_eq(after.vst.events[CCVM_EV_ATTR_CHANGE],
			  before.vst.events[CCVM_EV_ATTR_CHANGE]);
	ck_assert_uint_eq(obs.nr_post, 0);
	ck_assert_uint_eq(obs.nr_update, 0);
	ck_assert_uint_eq(after.pst.op_errors[CCVM_OPI_pre_set_mem_attr],
			  before.pst.op_errors[CCVM_OPI_pre_set_mem_attr] + 1);

	/* The rule is used up: the same update now goes through. */
	tu_set_attr(vm, 4 * TU_MiB + TU_PAGE, 6 * TU_MiB, PRIV);
	ck_assert_uint_eq(tu_get_attr(vm, 9 * TU_MiB, NULL), PRIV);
	ck_assert_int_eq(tu_in_progress(vm), 0);
}
END_TEST

/* ---- queries ------------------------------------------------------------------------ */

START_TEST(test_get_runs)
{
	struct ccvm_vm *w = tu_vm(p);
	uint64_t run;

	/* Nothing set: shared as far as the address space goes. */
	ck_assert_uint_eq(tu_get_attr(w, 0, &run), 0);
	ck_assert_uint_ge(run, 1ull << ccvm_vm_gpa_bits(w));
	ck_assert_uint_eq(run % TU_PAGE, 0);

	tu_set_attr(w, 8 * TU_KiB, 8 * TU_KiB, PRIV);
	ck_assert_uint_eq(tu_get_attr(w, 0, &run), 0);
	ck_assert_uint_eq(run, 8 * TU_KiB);
	ck_assert_uint_eq(tu_get_attr(w, 4 * TU_KiB, &run), 0);
	ck_assert_uint_eq(run, 4 * TU_KiB);
	ck_assert_uint_eq(tu_get_attr(w, 8 * TU_KiB, &run), PRIV);
	ck_assert_uint_eq(run, 8 * TU_KiB);
	ck_assert_uint_eq(tu_get_attr(w, 12 * TU_KiB, &run), PRIV);
	ck_assert_uint_eq(run, 4 * TU_KiB);
	ck_assert_uint_eq(tu_get_attr(w, 16 * TU_KiB, &run), 0);
	ck_assert_uint_ge(run, (1ull << ccvm_vm_gpa_bits(w)) - 16 * TU_KiB);
	ck_assert_uint_le(run, UINT64_MAX - 16 * TU_KiB + 1);

	/* gfn 0 itself. */
	tu_set_attr(w, 0, TU_PAGE, PRIV);
	ck_assert_uint_eq(tu_get_attr(w, 0, &run), PRIV);
	ck_assert_uint_eq(run, TU_PAGE);
	ck_assert_uint_eq(tu_get_attr(w, TU_PAGE, &run), 0);
	ck_assert_uint_eq(run, TU_PAGE);
	/* Adjacent equal ranges merge into one run. */
	tu_set_attr(w, TU_PAGE, TU_PAGE, PRIV);
	ck_assert_uint_eq(tu_get_attr(w, 0, &run), PRIV);
	ck_assert_uint_eq(run, 16 * TU_KiB);
	ck_assert_int_eq(ccvm_vm_close(w), 0);
}
END_TEST

/*
 * Attributes are not bounded by gpa_bits (KVM does not check), so the store
 * reaches the top of the 64-bit space; a run must never claim more bytes
 * than are left before 2^64.
 */
START_TEST(test_get_near_top)
{
	struct ccvm_vm *w = tu_vm(p);
	uint64_t run;

	tu_set_attr(w, TOP - TU_PAGE, TU_PAGE, PRIV);
	ck_assert_uint_eq(tu_get_attr(w, TOP - 2 * TU_PAGE, &run), 0);
	ck_assert_uint_eq(run, TU_PAGE);
	ck_assert_uint_eq(tu_get_attr(w, TOP - TU_PAGE, &run), PRIV);
	ck_assert_uint_eq(run, TU_PAGE);
	ck_assert_uint_eq(tu_get_attr(w, TOP, &run), 0);
	ck_assert_msg(run == TU_PAGE, "run_bytes at the last page: %#" PRIx64
		      " (only one page is left before 2^64)", run);
	/* A run of a shared range up to the top of the space. */
	ck_assert_uint_eq(tu_get_attr(w, 1ull << 60, &run), 0);
	ck_assert_msg(run == TOP - TU_PAGE - (1ull << 60),
		      "run_bytes from 2^60: %#" PRIx64, run);
	ck_assert_int_eq(ccvm_vm_close(w), 0);
}
END_TEST

/* ---- conversions against a page model, with MIXED flags -------------------------- */

#define WIN_PAGES	(16 * TU_MiB / TU_PAGE)

static uint8_t model[WIN_PAGES];

struct conv {
	uint64_t gpa, size, attrs;
};

#define CONV_MAX	6

static const struct {
	const char *what;
	struct conv ops[CONV_MAX];
} conv_cases[] = {
	{ "4K at a 2M edge, both sides, then back",
	  { { 2 * TU_MiB - TU_PAGE, TU_PAGE, PRIV }, { 2 * TU_MiB, TU_PAGE, PRIV },
	    { 2 * TU_MiB - TU_PAGE, 2 * TU_PAGE, 0 } } },
	{ "straddling a 2M edge, then a smaller hole",
	  { { 2 * TU_MiB - 2 * TU_PAGE, 4 * TU_PAGE, PRIV },
	    { 2 * TU_MiB - TU_PAGE, 2 * TU_PAGE, 0 } } },
	{ "a whole 2M page, then 4K inside it back",
	  { { 4 * TU_MiB, TU_2M, PRIV }, { 5 * TU_MiB, TU_PAGE, 0 },
	    { 5 * TU_MiB, TU_PAGE, PRIV } } },
	{ "several 2M pages, a hole, all, nothing",
	  { { 1 * TU_MiB, 6 * TU_MiB, PRIV }, { 3 * TU_MiB, 2 * TU_MiB, 0 },
	    { 0, 16 * TU_MiB, PRIV }, { 0, 16 * TU_MiB, 0 } } },
	{ "across slot boundaries",
	  { { 7 * TU_MiB + TU_PAGE, 2 * TU_MiB - 2 * TU_PAGE, PRIV },
	    { 8 * TU_MiB - TU_PAGE, 2 * TU_PAGE, 0 },
	    { 12 * TU_MiB - TU_PAGE, 2 * TU_PAGE + TU_2M, PRIV } } },
	{ "gfn 0",
	  { { 0, TU_PAGE, PRIV }, { 0, TU_2M, PRIV }, { TU_PAGE, TU_PAGE, 0 },
	    { 0, TU_PAGE, 0 } } },
	{ "the unaligned slot's partial 2M pages",
	  { { 12 * TU_MiB + 2 * TU_PAGE, TU_PAGE, PRIV },
	    { 14 * TU_MiB - TU_PAGE, 2 * TU_PAGE, PRIV },
	    { 12 * TU_MiB, 4 * TU_MiB, PRIV } } },
};

/* Slots: gmem [0, 8M), plain [8M, 12M), plain [12M + 8K, 14M + 4K). */
static _Alignas(TU_2M) uint8_t plain_backing[8 * TU_MiB];

static void conv_slots(void)
{
	tu_gmem_slot(vm, 0, 0, 8 * TU_MiB, g, 0);
	tu_plain_slot(vm, 1, 8 * TU_MiB, 4 * TU_MiB, plain_backing);
	tu_plain_slot(vm, 2, 12 * TU_MiB + 2 * TU_PAGE, TU_2M - TU_PAGE,
		      plain_backing + 4 * TU_MiB + 2 * TU_PAGE);
}

static void model_check(const char *what, unsigned int step)
{
	uint64_t gpa = 0, a, run, i;
	struct ccvm_memslots *s;
	uint32_t k;

	/* Every page of the window, run by run. */
	while (gpa < 16 * TU_MiB) {
		ck_assert_int_eq(ccvm_vm_get_memory_attributes(vm, gpa, &a, &run), 0);
		ck_assert_msg(run && run % TU_PAGE == 0, "%s #%u: run %#" PRIx64, what, step,
			      run);
		for (i = 0; i < run / TU_PAGE && GFN(gpa) + i < WIN_PAGES; i++)
			ck_assert_msg(model[GFN(gpa) + i] == (a ? 1 : 0),
				      "%s #%u: page %#" PRIx64 " reads %#" PRIx64, what, step,
				      (uint64_t)(gpa + i * TU_PAGE), a);
		/* A run is maximal: the page after it differs. */
		if (run < 16 * TU_MiB - gpa)
			ck_assert_msg(model[GFN(gpa + run)] != (a ? 1 : 0),
				      "%s #%u: run at %#" PRIx64 " is not maximal", what, step,
				      gpa);
		if (run >= 16 * TU_MiB - gpa)
			break;
		gpa += run;
	}
	/* internal.h: MIXED of every 2M page fully inside a slot. */
	s = vm->memslots;
	for (k = 0; k < s->nr; k++) {
		struct ccvm_memslot *m = s->by_gfn[k];

		for (i = 0; i < m->nr_lpage_2m; i++) {
			uint64_t hp = ((m->base_gfn >> 9) + i) << 9, j;
			bool uniform = true, mixed;

			if (hp < m->base_gfn || hp + 512 > m->base_gfn + m->npages)
				continue;
			for (j = 1; j < 512; j++)
				uniform &= model[hp + j] == model[hp];
			mixed = ccvm_lpage_test(m->lpage_mixed, i);
			ck_assert_msg(mixed == !uniform, "%s #%u: 2M page %#" PRIx64
				      " MIXED %d, uniform %d", what, step, hp << 12, mixed,
				      uniform);
		}
	}
}

START_TEST(test_conversions)
{
	unsigned int k;
	uint64_t i;

	conv_slots();
	memset(model, 0, sizeof(model));
	model_check(conv_cases[_i].what, 0);
	for (k = 0; k < CONV_MAX && conv_cases[_i].ops[k].size; k++) {
		const struct conv *c = &conv_cases[_i].ops[k];

		tu_set_attr(vm, c->gpa, c->size, c->attrs);
		for (i = GFN(c->gpa); i < GFN(c->gpa + c->size); i++)
			model[i] = c->attrs ? 1 : 0;
		model_check(conv_cases[_i].what, k + 1);
		ck_assert_int_eq(tu_in_progress(vm), 0);
	}
}
END_TEST

/*
 * A conversion clears MIXED of the 2M pages strictly inside it a bitmap
 * word at a time: 300 2M pages (five words), each MIXED, then one range
 * with a misaligned head and tail crossing every word boundary.
 */
START_TEST(test_mixed_cleared_by_range)
{
	const uint64_t n = 300, size = n * TU_2M;
	struct ccvm_invariant_report r = { .sz = sizeof(r) };
	struct ccvm_gmem *big = tu_gmem(vm, size, 0);
	struct ccvm_memslot *m;
	uint64_t i;

	tu_gmem_slot(vm, 1, TU_GiB, size, big, 0);
	m = vm->memslots->by_gfn[vm->memslots->nr - 1];	/* the highest slot */
	for (i = 0; i < n; i++)
		tu_set_attr(vm, TU_GiB + i * TU_2M + 7 * TU_PAGE, TU_PAGE, PRIV);
	for (i = 0; i < n; i++)
		ck_assert(ccvm_lpage_test(m->lpage_mixed, i));
	/* From inside 2M page 3 to inside 2M page 250. */
	tu_set_attr(vm, TU_GiB + 3 * TU_2M + 9 * TU_PAGE, 247 * TU_2M, PRIV);
	for (i = 0; i < n; i++)
		ck_assert_msg(ccvm_lpage_test(m->lpage_mixed, i) == (i <= 3 || i >= 250),
			      "2M page %" PRIu64, i);
	ck_assert_int_eq(ccvm_vm_check_invariants(vm, &r), 0);
	ck_assert_msg(r.invariant == 0, "I%u: %s", r.invariant, r.msg);
	/* And back: the whole slot uniform, nothing MIXED. */
	tu_set_attr(vm, TU_GiB, size, 0);
	for (i = 0; i < n; i++)
		ck_assert(!ccvm_lpage_test(m->lpage_mixed, i));
	ck_assert_int_eq(ccvm_vm_check_invariants(vm, &r), 0);
	ck_assert_msg(r.invariant == 0, "I%u: %s", r.invariant, r.msg);
	ck_assert_int_eq(ccvm_gmem_close(big), 0);
}
END_TEST

/* MIXED is computed at memslot creation from attributes set earlier. */
START_TEST(test_mixed_at_slot_creation)
{
	struct ccvm_memslot *m;

	tu_set_attr(vm, 2 * TU_MiB + TU_PAGE, TU_PAGE, PRIV);
	tu_set_attr(vm, 4 * TU_MiB, TU_2M, PRIV);
	tu_gmem_slot(vm, 0, 0, 8 * TU_MiB, g, 0);
	m = vm->memslots->by_gfn[0];
	ck_assert(!ccvm_lpage_test(m->lpage_mixed, 0));
	ck_assert(ccvm_lpage_test(m->lpage_mixed, 1));
	ck_assert(!ccvm_lpage_test(m->lpage_mixed, 2));
	ck_assert(!ccvm_lpage_test(m->lpage_mixed, 3));
	/* Un-MIXED once converted back. */
	tu_set_attr(vm, 2 * TU_MiB + TU_PAGE, TU_PAGE, 0);
	ck_assert(!ccvm_lpage_test(m->lpage_mixed, 1));
}
END_TEST

/* ---- the in-progress range while the hooks run ------------------------------------- */

static const struct {
	const char *what;
	uint64_t pre_gpa, pre_size;	/* done first, size 0 = nothing */
	uint64_t gpa, size;
	uint64_t want_start, want_end;	/* in-progress range, gpa */
} widen_cases[] = {
	{ "4K inside a uniform 2M page: the whole 2M page",
	  0, 0, 2 * TU_MiB + TU_PAGE, TU_PAGE, 2 * TU_MiB, 4 * TU_MiB },
	{ "4K inside a MIXED 2M page: just the range",
	  2 * TU_MiB + TU_PAGE, TU_PAGE, 2 * TU_MiB + 3 * TU_PAGE, TU_PAGE,
	  2 * TU_MiB + 3 * TU_PAGE, 2 * TU_MiB + 4 * TU_PAGE },
	{ "straddling two uniform 2M pages: both",
	  0, 0, 2 * TU_MiB - TU_PAGE, 2 * TU_PAGE, 0, 4 * TU_MiB },
	{ "a whole 2M page: nothing to widen",
	  0, 0, 2 * TU_MiB, TU_2M, 2 * TU_MiB, 4 * TU_MiB },
	{ "head uniform, tail MIXED: only the head",
	  5 * TU_MiB, TU_PAGE, 3 * TU_MiB, TU_2M, 2 * TU_MiB, 5 * TU_MiB },
	{ "2M page sticking out of the slot: never widened",
	  0, 0, 8 * TU_MiB + TU_PAGE, TU_PAGE, 8 * TU_MiB + TU_PAGE, 8 * TU_MiB + 2 * TU_PAGE },
};

START_TEST(test_in_progress_widening)
{
	uint64_t seq0;

	/* gmem [0, 8M), and [8M, 9M) whose only 2M page sticks out. */
	tu_gmem_slot(vm, 0, 0, 8 * TU_MiB, g, 0);
	tu_gmem_slot(vm, 1, 8 * TU_MiB, TU_MiB, g, 8 * TU_MiB);
	if (widen_cases[_i].pre_size)
		tu_set_attr(vm, widen_cases[_i].pre_gpa, widen_cases[_i].pre_size, PRIV);
	memset(&obs, 0, sizeof(obs));
	seq0 = tu_seq(vm);

	tu_set_attr(vm, widen_cases[_i].gpa, widen_cases[_i].size, PRIV);
	ck_assert_uint_eq(obs.nr_pre, 1);
	/* The hook sees the request; faults see the widened range. */
	ck_assert_uint_eq(obs.pre[0].start, GFN(widen_cases[_i].gpa));
	ck_assert_uint_eq(obs.pre[0].end, GFN(widen_cases[_i].gpa + widen_cases[_i].size));
	ck_assert_int_eq(obs.pre[0].in_progress, 1);
	ck_assert_msg(obs.pre[0].range_start == GFN(widen_cases[_i].want_start) &&
		      obs.pre[0].range_end == GFN(widen_cases[_i].want_end),
		      "%s: in progress [%#" PRIx64 ", %#" PRIx64 "), wanted [%#" PRIx64
		      ", %#" PRIx64 ")", widen_cases[_i].what, obs.pre[0].range_start << 12,
		      obs.pre[0].range_end << 12, widen_cases[_i].want_start,
		      widen_cases[_i].want_end);
	ck_assert_int_eq(tu_in_progress(vm), 0);
	ck_assert_uint_eq(tu_seq(vm), seq0 + 1);
}
END_TEST

#define LOOP(tc, fn, table) \
	tcase_add_loop_test(tc, fn, 0, (int)(sizeof(table) / sizeof((table)[0])))

Suite *attr_suite(void)
{
	Suite *s = suite_create("attr");
	TCase *tc;

	tc = tcase_create("validate");
	tcase_add_checked_fixture(tc, setup_mock, teardown);
	LOOP(tc, test_set_invalid, invalid_cases);
	tcase_add_test(tc, test_null_and_get_invalid);
	tcase_add_test(tc, test_unsupported_attribute);
	tcase_add_test(tc, test_bugged_vm);
	suite_add_tcase(s, tc);

	tc = tcase_create("sequence");
	tcase_add_checked_fixture(tc, setup_obs, teardown);
	tcase_add_test(tc, test_noop_fast_path);
	tcase_add_test(tc, test_no_memslot);
	tcase_add_test(tc, test_hooks_once_per_slot);
	tcase_add_test(tc, test_enomem_leaves_everything);
	tcase_add_test(tc, test_pre_hook_failure);
	LOOP(tc, test_in_progress_widening, widen_cases);
	suite_add_tcase(s, tc);

	tc = tcase_create("query");
	tcase_add_checked_fixture(tc, setup_obs, teardown);
	tcase_add_test(tc, test_get_runs);
	tcase_add_test(tc, test_get_near_top);
	suite_add_tcase(s, tc);

	tc = tcase_create("mixed");
	tcase_add_checked_fixture(tc, setup_obs, teardown);
	LOOP(tc, test_conversions, conv_cases);
	tcase_add_test(tc, test_mixed_at_slot_creation);
	tcase_add_test(tc, test_mixed_cleared_by_range);
	suite_add_tcase(s, tc);
	return s;
}
