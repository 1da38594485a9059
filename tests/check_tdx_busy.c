/* SPDX-License-Identifier: MIT */
/*
 * Tests for TDX_OPERAND_BUSY on the tdx backend (backends/tdx/tdx.c):
 * injected at every S-EPT leaf of an install and of a removal (once: the
 * second try works after entry is blocked and the vCPUs kicked; twice: the
 * VM is bugged and still torn down whole), VP.ENTER busy for good, the
 * fault retry bound, and real contention: vCPU threads faulting and
 * accepting the same pages, kicks that wait for the exit (I12, I21).  The
 * TD fixture is tdx_fixture.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <check.h>

#include "tdx_fixture.h"

/* ------------------------------------------------------------------ */
/* Busy: injected at every leaf                                        */

START_TEST(test_busy_install)
{
	struct fill_arg a;
	struct ccvm_stats st;
	uint8_t src[2 * PG];

	td_build(1, false);
	/* PAGE.ADD busy: the populate map is retried, measured once. */
	memset(src, 0x5a, sizeof(src));
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_MEM_PAGE_ADD, 1,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TDR, 2), 0);
	ck_assert_int_eq(ccvm_vm_populate(T.vm, 0, src, 2 * PG, CCVM_POPULATE_MEASURE), 0);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_PAGE_ADD), 4);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MR_EXTEND), 2 * PG / 256);
	ck_assert_int_eq(ccvm_vm_finalize(T.vm), 0);

	/* SEPT.ADD, AUG, ACCEPT and VP.ENTER busy: faults and entries retried. */
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_MEM_SEPT_ADD, 1,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_SEPT, 1), 0);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_MEM_PAGE_AUG, 1,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_RCX, 3), 0);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDX_LEAF_TDG_MEM_PAGE_ACCEPT, 2,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_RCX, 2), 0);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_VP_ENTER, 1,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TD_EPOCH, 3), 0);
	guest_map_pages(0x200000, 4, &a);	/* a new 2M region: SEPT.ADD */
	expect_sync(T.v[0], 2, NULL);
	st = tu_pstats(T.p);
	ck_assert(!ccvm_vm_is_bugged(T.vm));
	ck_assert_uint_eq(st.events[CCVM_EV_TDX_BUSY], 2 + 1 + 3 + 2 + 3);
	ck_assert_uint_eq(st.events[CCVM_EV_TDH_MEM_PAGE_AUG], 4 + 3);
	ck_assert_uint_ge(st.events[CCVM_EV_FAULT_RETRY], 4);
	ck_assert_uint_eq(st.op_errors[CCVM_OPI_set_private_spte], 2 + 3);
	ck_assert_uint_eq(st.op_errors[CCVM_OPI_link_private_spt], 1);
	check_invariants();
	close_all();
	assert_clean();
}
END_TEST

static const unsigned int removal_leaves[] = {
	CCVM_TDH_MEM_RANGE_BLOCK, CCVM_TDH_MEM_TRACK, CCVM_TDH_MEM_PAGE_REMOVE,
};

static enum ccvm_event leaf_event(unsigned int leaf)
{
	switch (leaf) {
	case CCVM_TDH_MEM_RANGE_BLOCK:
		return CCVM_EV_TDH_MEM_RANGE_BLOCK;
	case CCVM_TDH_MEM_TRACK:
		return CCVM_EV_TDH_MEM_TRACK;
	default:
		return CCVM_EV_TDH_MEM_PAGE_REMOVE;
	}
}

/* One busy answer: the second try, after blocking entry and a kick, works. */
START_TEST(test_busy_removal_once)
{
	unsigned int leaf = removal_leaves[_i % 3];
	uint64_t status = _i == 3 ? TDX_PREVIOUS_TLB_EPOCH_BUSY
				  : TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_SEPT;
	struct fill_arg a;
	uint64_t ipi0;

	if (_i == 3)
		leaf = CCVM_TDH_MEM_TRACK;
	td_up(1, false);
	guest_map_pages(0x10000, 4, &a);
	ipi0 = pev(CCVM_EV_IPI);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, leaf, 2, status, 1), 0);
	trace_start();
	tu_set_attr(T.vm, 0x10000, 4 * PG, 0);
	trace_stop();
	ck_assert_uint_eq(check_removal_order(true), 4);
	trace_free();
	ck_assert(!ccvm_vm_is_bugged(T.vm));
	ck_assert_uint_eq(pev(leaf_event(leaf)), 4 + 1);
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_PAGE_REMOVE), leaf == CCVM_TDH_MEM_PAGE_REMOVE ? 5 : 4);
	/* One kick per TRACK, one more for the retry. */
	ck_assert_uint_eq(pev(CCVM_EV_IPI) - ipi0, 4 + 1);
	ck_assert_int_eq(atomic_load(&T.vm->entry_blocked), 0);
	ck_assert_uint_eq(check_sept_mirror(0x10000, 4), 0);
	check_invariants();
	close_all();
	assert_clean();
}
END_TEST

/* A guest that keeps touching memory until told to stop. */
struct spin_guest {
	_Atomic bool stop;
	/* the guest is up: signalled, not spun on */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started;
};

static void guest_touch_loop(struct ccvm_guest *g, void *arg)
{
	struct spin_guest *sg = arg;
	uint8_t buf[8];

	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0x50000, PG) == 0);
	pthread_mutex_lock(&sg->lock);
	sg->started = true;
	pthread_cond_broadcast(&sg->cond);
	pthread_mutex_unlock(&sg->lock);
	while (!atomic_load(&sg->stop))
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 0x50000, buf, sizeof(buf)) == 0);
}

/*
 * I21: with a vCPU entering and leaving the guest all the time, no
 * VP.ENTER comes between a removal leaf answered busy and its second try.
 */
START_TEST(test_busy_removal_blocks_entry)
{
	unsigned int leaf = removal_leaves[_i];
	struct spin_guest sg;
	struct tu_run sr;
	struct fill_arg a;
	uint64_t enters0;
	uint32_t i, busy = 0;
	bool waiting = false;
	pthread_t th;

	td_up(2, false);
	guest_map_pages(0x10000, 8, &a);
	pthread_mutex_init(&sg.lock, NULL);
	pthread_cond_init(&sg.cond, NULL);
	sg.started = false;
	atomic_init(&sg.stop, false);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[1], guest_touch_loop, &sg), 0);
	sr = (struct tu_run){ .v = T.v[1] };
	ck_assert_int_eq(pthread_create(&th, NULL, tu_run_thread, &sr), 0);
	pthread_mutex_lock(&sg.lock);
	while (!sg.started)
		pthread_cond_wait(&sg.cond, &sg.lock);
	pthread_mutex_unlock(&sg.lock);
	enters0 = pev(CCVM_EV_TDH_VP_ENTER);
	trace_start();
	/*
	 * Every page's leaf is busy once: eight retries with the guest running.
	 * After each removal the test waits until the guest entered again (the
	 * removal's kick took it out, or it was on its way in): each removal
	 * meets a guest that is entering and leaving, not one the OS happened
	 * to leave unscheduled.
	 */
	for (i = 0; i < 8; i++) {
		uint64_t e = tu_event_get(&TR->enters);

		ck_assert_int_eq(ccvm_tdx_inject(T.m, leaf, 1,
						 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_SEPT, 1), 0);
		tu_set_attr(T.vm, 0x10000 + i * PG, PG, 0);
		tu_event_wait(&TR->enters, e + 1);
	}
	trace_stop();
	atomic_store(&sg.stop, true);
	pthread_join(th, NULL);
	ck_assert_int_eq(sr.ret, 0);
	ck_assert(!ccvm_vm_is_bugged(T.vm));
	for (i = 0; i < TR->n; i++) {
		uint16_t e = TR->ev[i];

		if (e == CCVM_EV_TDX_BUSY && i && TR->ev[i - 1] == leaf_event(leaf)) {
			waiting = true;
			busy++;
		} else if (e == leaf_event(leaf)) {
			waiting = false;
		} else if (e == CCVM_EV_TDH_VP_ENTER) {
			CHECK(!waiting, "VP.ENTER at %u while a removal waits for its retry", i);
		}
	}
	trace_free();
	ck_assert_uint_eq(busy, 8);
	/* The guest did run meanwhile. */
	ck_assert_uint_gt(pev(CCVM_EV_TDH_VP_ENTER), enters0);
	check_invariants();
	close_all();
	assert_clean();
}
END_TEST

static void guest_after_bug(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	ccvm_guest_sync(g, 3);
}

/* Busy twice: the VM is bugged, runs fail, teardown still takes everything. */
START_TEST(test_busy_removal_twice)
{
	unsigned int leaf = removal_leaves[_i];
	struct fill_arg a;
	struct ccvm_run *run;
	uint64_t leaves;

	td_up(2, false);
	guest_map_pages(0x10000, 8, &a);
	leaves = check_sept_mirror(SLOT0_GPA, SLOT0_SIZE / PG);
	ck_assert_uint_eq(leaves, 8);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, leaf, 1,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_SEPT, 2), 0);
	ccvm_vm_set_memory_attributes(T.vm, 0x10000, PG, 0, 0);
	ck_assert(ccvm_vm_is_bugged(T.vm));
	ck_assert_uint_eq(pev(leaf_event(leaf)), 2);
	ck_assert_int_eq(atomic_load(&T.vm->entry_blocked), 0);
	/* -EIO for everything but teardown. */
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(T.vm, 0x20000, PG, 0, 0), -EIO);
	ck_assert_int_eq(ccvm_vcpu_run(T.v[0]), -EIO);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[1], guest_after_bug, NULL), 0);
	ck_assert_int_eq(ccvm_vcpu_run(T.v[1]), -EIO);
	run = ccvm_vcpu_run_state(T.v[1]);
	ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_INTERNAL_ERROR);

	close_all();
	/* The page whose removal failed stays leaked; the PAMT let go of it. */
	ck_assert_uint_eq(tu_pstats(T.p).leaked_pages, 1);
	ck_assert_uint_eq(tu_free_pages(T.p), T.free0 - 1);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(T.m), 0);
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(T.m), 0);
	/* The other 7 went by RECLAIM after the release, not by BLOCK. */
	ck_assert_uint_eq(pev(CCVM_EV_TDH_MEM_RANGE_BLOCK), leaf == CCVM_TDH_MEM_RANGE_BLOCK ? 2 : 1);
}
END_TEST

/* VP.ENTER busy for good: run ends with an error exit, not a hang. */
static void guest_sync_twice(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	ccvm_guest_sync(g, 1);
	ccvm_guest_sync(g, 2);
}

START_TEST(test_busy_entry_forever)
{
	struct ccvm_run *run;

	td_up(1, false);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[0], guest_sync_twice, NULL), 0);
	expect_sync(T.v[0], 1, NULL);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_VP_ENTER, 0,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TD_EPOCH, 0), 0);
	run = ccvm_vcpu_run_state(T.v[0]);
	ck_assert_int_eq(ccvm_vcpu_run(T.v[0]), -EIO);
	ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_INTERNAL_ERROR);
	ck_assert_int_eq(run->internal.error, -EBUSY);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_VP_ENTER, 0, 0, 0), 0);
	expect_sync(T.v[0], 2, NULL);
	close_all();
	assert_clean();
}
END_TEST

/* A guest faulting on one GPA without progress: an error exit past the bound. */
START_TEST(test_fault_retry_bound)
{
	struct fill_arg a = { .gpa = 0x40000, .n = 1, .salt = 4 };
	struct ccvm_run *run;

	td_up(1, false);
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_MEM_PAGE_AUG, 0,
					 TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_RCX, 0), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[0], guest_accept_fill, &a), 0);
	run = ccvm_vcpu_run_state(T.v[0]);
	ck_assert_int_eq(ccvm_vcpu_run(T.v[0]), -EIO);
	ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_INTERNAL_ERROR);
	ck_assert_int_eq(run->internal.error, -EBUSY);
	ck_assert_uint_ge(pev(CCVM_EV_FAULT_RETRY), CCVM_FAULT_RETRY_LIMIT);
	ck_assert(!ccvm_vm_is_bugged(T.vm));
	check_invariants();
	/* Once the module stops refusing, the same access completes. */
	ck_assert_int_eq(ccvm_tdx_inject(T.m, CCVM_TDH_MEM_PAGE_AUG, 0, 0, 0), 0);
	expect_sync(T.v[0], 1, NULL);
	expect_sync(T.v[0], 2, NULL);
	close_all();
	assert_clean();
}
END_TEST

/* ------------------------------------------------------------------ */
/* Real contention: vCPU threads faulting and accepting the same pages */

#define CONC_GPA	0x100000ull
#define CONC_PAGES	64u
#define CONC_MAX_ROUNDS	400

struct conc {
	int nr;
	pthread_barrier_t bar;
	_Atomic bool stop;
	_Atomic int failures;
	/* a barrier for guest code: vCPUs in step, page by page */
	pthread_barrier_t guest_bar;
};

struct conc_vcpu {
	struct conc *c;
	int id;
};

static void guest_barrier(struct conc *c)
{
	pthread_barrier_wait(&c->guest_bar);
}

static void guest_conc(struct ccvm_guest *g, void *arg)
{
	struct conc_vcpu *cv = arg;
	uint32_t id = ccvm_guest_vcpu_id(g), round;
	uint8_t buf[PG];
	uint64_t i;
	int r;

	for (round = 0;; round++) {
		/*
		 * Every vCPU accepts every page, all at once: one faults it in
		 * (AUG) while the others fault, find it frozen, or find the
		 * S-EPT entry locked by the AUG or by each other's ACCEPT.
		 */
		for (i = 0; i < CONC_PAGES; i++) {
			guest_barrier(cv->c);
			r = ccvm_guest_accept(g, CONC_GPA + i * PG, PG);
			CCVM_GUEST_ASSERT(g, r == 0 || r == -EEXIST);
		}
		for (i = id; i < CONC_PAGES; i += (uint64_t)cv->c->nr) {
			fill(buf, CONC_GPA + i * PG, round);
			CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, CONC_GPA + i * PG, buf, PG) == 0);
		}
		ccvm_guest_sync(g, 1);
		for (i = 0; i < CONC_PAGES; i++) {
			CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, CONC_GPA + i * PG, buf, PG) == 0);
			CCVM_GUEST_ASSERT(g, page_has(buf, CONC_GPA + i * PG, round));
		}
		ccvm_guest_sync(g, 2);
	}
}

static bool run_to_sync(struct ccvm_vcpu *v, uint64_t value)
{
	struct ccvm_run *run = ccvm_vcpu_run_state(v);

	return ccvm_vcpu_run(v) == 0 && run->exit_reason == CCVM_EXIT_SYNC &&
	       run->sync.value == value;
}

static void *conc_thread(void *arg)
{
	struct conc_vcpu *cv = arg;
	struct conc *c = cv->c;

	for (;;) {
		if (!run_to_sync(T.v[cv->id], 1))
			atomic_fetch_add(&c->failures, 1);
		pthread_barrier_wait(&c->bar);		/* everybody wrote */
		if (!run_to_sync(T.v[cv->id], 2))
			atomic_fetch_add(&c->failures, 1);
		pthread_barrier_wait(&c->bar);		/* everybody checked */
		pthread_barrier_wait(&c->bar);		/* the VMM converted */
		if (atomic_load(&c->stop))
			return NULL;
	}
}

START_TEST(test_concurrent_faults)
{
	struct conc c = { .nr = 2 + (int)(_i % 3) };
	struct conc_vcpu cv[MAX_VCPUS];
	pthread_t th[MAX_VCPUS];
	uint64_t busy = 0;
	int i, round;

	td_up(c.nr, false);
	/* Leaves as slow as real ones: contention even on one free core. */
	ck_assert_int_eq(ccvm_tdx_set_entry_lock_yields(T.m, _i < 3 ? 1 : 0), 0);
	pthread_barrier_init(&c.bar, NULL, (unsigned int)c.nr + 1);
	pthread_barrier_init(&c.guest_bar, NULL, (unsigned int)c.nr);
	for (i = 0; i < c.nr; i++) {
		cv[i] = (struct conc_vcpu){ .c = &c, .id = i };
		ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[i], guest_conc, &cv[i]), 0);
		ck_assert_int_eq(pthread_create(&th[i], NULL, conc_thread, &cv[i]), 0);
	}
	for (round = 0;; round++) {
		pthread_barrier_wait(&c.bar);
		pthread_barrier_wait(&c.bar);
		/* Every page is the guests' again only through AUG and ACCEPT. */
		tu_set_attr(T.vm, CONC_GPA, CONC_PAGES * PG, 0);
		tu_set_attr(T.vm, CONC_GPA, CONC_PAGES * PG, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
		busy = pev(CCVM_EV_TDX_BUSY);
		if ((busy && round >= 2) || round >= CONC_MAX_ROUNDS ||
		    atomic_load(&c.failures))
			atomic_store(&c.stop, true);
		pthread_barrier_wait(&c.bar);
		if (atomic_load(&c.stop))
			break;
	}
	for (i = 0; i < c.nr; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&c.bar);
	pthread_barrier_destroy(&c.guest_bar);
	ck_assert_int_eq(atomic_load(&c.failures), 0);
	/* Contention happened for real, and every busy resolved. */
	if (_i < 3)
		ck_assert_uint_gt(busy, 0);
	ck_assert(!ccvm_vm_is_bugged(T.vm));
	ck_assert_uint_eq(pev(CCVM_EV_TDX_ERROR), 0);
	/* One AUG that worked per page and round; the others answered busy. */
	ck_assert_uint_ge(pev(CCVM_EV_TDH_MEM_PAGE_AUG), (uint64_t)(round + 1) * CONC_PAGES);
	check_invariants();
	close_all();
	assert_clean();
}
END_TEST

/*
 * A kick that meets a vCPU on its way out of the guest waits for it: right
 * after ccvm_tdx_vp_exit() from the kicking thread, the vCPU is in no
 * epoch, so the next TRACK never finds the previous epoch busy.
 */
#define KICKS		20000u
#define TRACK_TRIES	(1u << 24)	/* a TRACK busy this often: a lost exit */

struct exit_race {
	struct ccvm_tdx_vp *vp;
	unsigned int cpu;
	_Atomic bool stop;
	_Atomic uint64_t entries;
	struct tu_event reached;	/* entries, signalled at 1 and at KICKS */
};

static void *enter_exit_thread(void *arg)
{
	struct exit_race *x = arg;
	uint64_t n;

	while (!atomic_load(&x->stop)) {
		if (ccvm_tdh_vp_enter(x->vp, x->cpu) == TDX_SUCCESS) {
			n = atomic_fetch_add(&x->entries, 1) + 1;
			ccvm_tdx_vp_exit(x->vp);
			if (n == 1 || n == KICKS)
				tu_event_set(&x->reached, n);
		}
	}
	return NULL;
}

START_TEST(test_kick_waits_for_exit)
{
	struct ccvm_tdx_td *td;
	struct exit_race x;
	uint64_t st, done = 0, entries, tries;
	uint32_t busy;
	pthread_t th;

	td_up(1, false);
	td = ccvm_tdx_vm_td(T.vm);
	x.vp = ccvm_tdx_vcpu_vp(T.v[0]);
	x.cpu = (unsigned int)ccvm_tdx_vp_cpu(x.vp);
	atomic_init(&x.stop, false);
	atomic_init(&x.entries, 0);
	tu_event_init(&x.reached);
	ck_assert_int_eq(pthread_create(&th, NULL, enter_exit_thread, &x), 0);
	tu_event_wait(&x.reached, 1);
	/* KICKS kicks that each met the vCPU somewhere in its loop. */
	for (tries = 0; tries < 50000000 && done < KICKS; tries++) {
		st = ccvm_tdh_mem_track(td);
		if (st) {
			CHECK(ccvm_tdx_is_busy(st) ||
			      TDX_STATUS_CLASS(st) == TDX_PREVIOUS_TLB_EPOCH_BUSY,
			      "TRACK: %s", ccvm_tdx_status_name(st));
			ccvm_tdx_vp_exit(x.vp);
			continue;
		}
		ccvm_tdx_vp_exit(x.vp);		/* the kick */
		/* Busy only while the other thread holds the TD's epoch lock. */
		busy = 0;
		do
			st = ccvm_tdh_mem_track(td);
		while (ccvm_tdx_is_busy(st) && ++busy < TRACK_TRIES);
		CHECK(st == TDX_SUCCESS, "TRACK after the kick (%u tries): %s", busy,
		      ccvm_tdx_status_name(st));
		done++;
	}
	/* And the vCPU went in and out that often too, however the OS ran us. */
	tu_event_wait(&x.reached, KICKS);
	atomic_store(&x.stop, true);
	pthread_join(th, NULL);
	ccvm_tdx_vp_exit(x.vp);
	tu_event_destroy(&x.reached);
	entries = atomic_load(&x.entries);
	ck_assert_uint_ge(done, KICKS);
	ck_assert_uint_ge(entries, KICKS);
	ck_assert(!ccvm_tdx_vp_in_guest(x.vp));
	close_all();
	assert_clean();
}
END_TEST

/* ------------------------------------------------------------------ */

Suite *tdx_busy_suite(void)
{
	Suite *s = suite_create("tdx_busy");
	TCase *tc;

	tc = tcase_create("busy");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_busy_install);
	tcase_add_loop_test(tc, test_busy_removal_once, 0, 4);
	tcase_add_loop_test(tc, test_busy_removal_twice, 0, 3);
	tcase_add_loop_test(tc, test_busy_removal_blocks_entry, 0, 3);
	tcase_add_test(tc, test_busy_entry_forever);
	tcase_add_test(tc, test_fault_retry_bound);
	tcase_add_loop_test(tc, test_concurrent_faults, 0, 4);
	tcase_add_test(tc, test_kick_waits_for_exit);
	suite_add_tcase(s, tc);
	return s;
}
