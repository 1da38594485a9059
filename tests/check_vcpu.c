/* SPDX-License-Identifier: MIT */
/*
 * Tests for vCPUs and the run loop (lib/vcpu.c): the create/close errno
 * table, run without a guest or after it ended, aborts, sync exits, -EBUSY
 * and self-deadlock refusals, closing a vCPU whose guest is blocked in an
 * exit, vCPUs that really run in parallel, guest entry (blocked entry,
 * kicks), tracing, and injected vcpu_enter / gmem_prepare failures.
 *
 * Each test builds a mock VM with one 4 MiB memslot (gmem for private, an
 * anonymous mapping as the VMM's shared buffer) and checks, in teardown,
 * that closing everything lets the platform go: a leaked VM or page
 * reference makes ccvm_platform_destroy() fail.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <check.h>

#include "internal.h"
#include "testutil.h"

#define MEM_SIZE	(4ull << 20)

static struct ccvm_platform *p;
static struct ccvm_vm *vm;
static struct ccvm_gmem *gm;
static uint8_t *shared;

static void setup(void)
{
	ck_assert_int_eq(ccvm_platform_create(NULL, &p), 0);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vm), 0);
	shared = tu_private_slot0(vm, MEM_SIZE, &gm);
}

/* Tests close their vCPUs; whatever else is left must let the platform go. */
static void teardown(void)
{
	ccvm_set_log(NULL, NULL);
	if (gm)
		ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	if (vm)
		ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	munmap(shared, MEM_SIZE);
	gm = NULL;
	vm = NULL;
	p = NULL;
}


static void guest_return(struct ccvm_guest *g, void *arg);

/* Waits are tu_event_wait() on what the other thread signals: never a spin. */

/* ---- create and close ------------------------------------------------------ */

START_TEST(test_create_errors)
{
	struct ccvm_vcpu *v = NULL, *w = NULL, *all[8];
	uint32_t i;

	ck_assert_int_eq(ccvm_vcpu_create(NULL, 0, &v), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 8, &v), -EINVAL);	/* default max 8 */
	ck_assert_int_eq(ccvm_vcpu_create(vm, UINT32_MAX, &v), -EINVAL);
	ck_assert_ptr_null(v);
	ck_assert_uint_eq(ccvm_vm_nr_vcpus(vm), 0);

	ck_assert_int_eq(ccvm_vcpu_create(vm, 3, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 3, &w), -EEXIST);
	ck_assert_ptr_null(w);
	ck_assert_uint_eq(ccvm_vm_nr_vcpus(vm), 1);
	ck_assert_uint_eq(ccvm_vcpu_id(v), 3);
	ck_assert_ptr_eq(ccvm_vcpu_vm(v), vm);
	ck_assert_uint_eq(ccvm_vcpu_run_state(v)->vcpu_id, 3);
	ck_assert_ptr_null(ccvm_vcpu_run_state(NULL));

	/* A failed vcpu_create publishes nothing and keeps the id free. */
	ck_assert_int_eq(ccvm_inject_op_failure(p, "vcpu_create", 1, -ENOMEM, 1), 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 4, &w), -ENOMEM);
	ck_assert_uint_eq(ccvm_vm_nr_vcpus(vm), 1);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 4, &w), 0);
	ck_assert_uint_eq(ccvm_vm_nr_vcpus(vm), 2);

	ck_assert_int_eq(ccvm_vcpu_close(NULL), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	/* The VM is alive, so the closed handle is still detectable. */
	ck_assert_int_eq(ccvm_vcpu_close(v), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_run(v), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_return, NULL), -EINVAL);
	/* As KVM: the vCPU lives until VM teardown, so its id stays taken. */
	ck_assert_int_eq(ccvm_vcpu_create(vm, 3, &v), -EEXIST);
	ck_assert_int_eq(ccvm_vcpu_close(w), 0);

	/* The remaining ids up to max_vcpus. */
	for (i = 0; i < 8; i++) {
		all[i] = NULL;
		if (i == 3 || i == 4)
			continue;
		ck_assert_int_eq(ccvm_vcpu_create(vm, i, &all[i]), 0);
	}
	ck_assert_uint_eq(ccvm_vm_nr_vcpus(vm), 8);
	for (i = 0; i < 8; i++)
		if (all[i])
			ck_assert_int_eq(ccvm_vcpu_close(all[i]), 0);
}
END_TEST

static int count_vcpu(struct ccvm_vcpu *v, void *ctx)
{
	(*(uint32_t *)ctx) += 1 + ccvm_vcpu_id(v);
	return 0;
}

START_TEST(test_for_each_vcpu)
{
	struct ccvm_vcpu *a, *b;
	uint32_t sum = 0;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 5, &a), 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 1, &b), 0);
	ck_assert_int_eq(ccvm_vm_for_each_vcpu(vm, count_vcpu, &sum), 0);
	ck_assert_uint_eq(sum, 6 + 2);
	ck_assert_int_eq(ccvm_vcpu_close(a), 0);
	ck_assert_int_eq(ccvm_vcpu_close(b), 0);
}
END_TEST

START_TEST(test_create_on_closed_bugged_dead_vm)
{
	struct ccvm_vm *other;
	struct ccvm_gmem *keep;
	struct ccvm_vcpu *v = NULL;

	/* A closed handle, with the VM kept alive by a gmem file. */
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &other), 0);
	ck_assert_int_eq(ccvm_gmem_create(other, 1 << 20, 0, &keep), 0);
	ck_assert_int_eq(ccvm_vm_close(other), 0);
	ck_assert_int_eq(ccvm_vcpu_create(other, 0, &v), -EINVAL);
	ck_assert_int_eq(ccvm_gmem_close(keep), 0);

	ck_assert_int_eq(ccvm_vm_create(p, NULL, &other), 0);
	ccvm_vm_set_dead(other);
	ck_assert_int_eq(ccvm_vcpu_create(other, 0, &v), -EIO);
	ck_assert_int_eq(ccvm_vm_close(other), 0);

	ck_assert_int_eq(ccvm_vm_create(p, NULL, &other), 0);
	tu_quiet_log();
	ccvm_vm_bug(other, "test");
	ck_assert_uint_eq(*tu_log_count(), 1);
	ck_assert_int_eq(ccvm_vcpu_create(other, 0, &v), -EIO);
	ck_assert_int_eq(ccvm_vm_close(other), 0);
	ck_assert_ptr_null(v);
}
END_TEST

/* The vCPU handle holds a VM reference: the VM outlives the VMM's handle. */
START_TEST(test_vcpu_keeps_vm_alive)
{
	struct ccvm_vm *other;
	struct ccvm_vcpu *v;
	struct ccvm_stats st = { .sz = sizeof(st) };

	ck_assert_int_eq(ccvm_vm_create(p, NULL, &other), 0);
	ck_assert_int_eq(ccvm_vcpu_create(other, 0, &v), 0);
	ck_assert_int_eq(ccvm_vm_close(other), 0);
	/* Still usable through the vCPU: the VM is alive. */
	ck_assert_ptr_eq(ccvm_vcpu_vm(v), other);
	ck_assert_int_eq(ccvm_vm_get_stats(other, &st), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);	/* the last reference */
	ck_assert_int_eq(ccvm_platform_get_stats(p, &st), 0);
}
END_TEST

/* ---- run basics ------------------------------------------------------------- */

static void guest_return(struct ccvm_guest *g, void *arg)
{
	(void)g;
	atomic_fetch_add((_Atomic int *)arg, 1);
}

START_TEST(test_run_without_guest)
{
	struct ccvm_vcpu *v;

	ck_assert_int_eq(ccvm_vcpu_run(NULL), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_run(v), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, NULL, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_set_guest(NULL, guest_return, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_run(v), -EINVAL);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_EXIT), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

START_TEST(test_run_after_done)
{
	struct ccvm_vcpu *v;
	_Atomic int calls = 0;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_return, &calls), 0);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(atomic_load(&calls), 1);
	ck_assert_int_eq(ccvm_vcpu_run(v), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_run(v), -EINVAL);
	ck_assert_int_eq(atomic_load(&calls), 1);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_EXIT), 1);

	/* A new guest function starts a new context. */
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_return, &calls), 0);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(atomic_load(&calls), 2);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

static int abort_line;
static _Atomic int after_abort;

static void guest_assert_fails(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	ccvm_guest_sync(g, 1);
	abort_line = __LINE__ + 1;
	CCVM_GUEST_ASSERT(g, 1 + 1 == 3);
	atomic_store(&after_abort, 1);
}

static void guest_abort_stack_msg(struct ccvm_guest *g, void *arg)
{
	char msg[32];

	(void)arg;
	snprintf(msg, sizeof(msg), "stack %d", 42);
	ccvm_guest_abort(g, "here.c", 7, msg);
}

START_TEST(test_guest_abort)
{
	struct ccvm_vcpu *v;
	struct ccvm_run *run;
	const char *base;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_assert_fails, NULL), 0);
	tu_expect_sync(v, 1);
	run = tu_run_once(v, 0, CCVM_EXIT_GUEST_ABORT);
	base = strrchr(run->abort.file, '/');
	ck_assert_str_eq(base ? base + 1 : run->abort.file, "check_vcpu.c");
	ck_assert_int_eq(run->abort.line, abort_line);
	ck_assert_str_eq(run->abort.msg, "1 + 1 == 3");
	ck_assert_int_eq(atomic_load(&after_abort), 0);
	ck_assert_int_eq(ccvm_vcpu_run(v), -EINVAL);

	/* The message is kept even though the guest's stack is gone. */
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_abort_stack_msg, NULL), 0);
	run = tu_run_once(v, 0, CCVM_EXIT_GUEST_ABORT);
	ck_assert_str_eq(run->abort.file, "here.c");
	ck_assert_int_eq(run->abort.line, 7);
	ck_assert_str_eq(run->abort.msg, "stack 42");
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_EXIT), 3);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

#define NR_SYNCS	100

static void guest_syncs(struct ccvm_guest *g, void *arg)
{
	uint64_t i;

	(void)arg;
	for (i = 0; i < NR_SYNCS; i++)
		ccvm_guest_sync(g, i * 3 + 1);
}

START_TEST(test_sync_values)
{
	struct ccvm_vcpu *v;
	uint64_t i;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 2, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_syncs, NULL), 0);
	for (i = 0; i < NR_SYNCS; i++) {
		struct ccvm_run *run = tu_run_once(v, 0, CCVM_EXIT_SYNC);

		ck_assert_uint_eq(run->sync.value, i * 3 + 1);
		ck_assert_uint_eq(run->vcpu_id, 2);
	}
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_EXIT), NR_SYNCS + 1);
	/* Every run enters the guest once: nothing else took it out. */
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_GUEST_ENTER), NR_SYNCS + 1);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_MEMORY_FAULT_EXIT), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- concurrency on one vCPU ------------------------------------------------ */

struct busy_ctx {
	struct ccvm_vcpu *v;
	struct tu_event started;
	struct tu_event go;
	int self_run, self_close, self_set_guest;
	int run_ret;
	uint32_t exit_reason;
};

static void guest_waits(struct ccvm_guest *g, void *arg)
{
	struct busy_ctx *c = arg;

	(void)g;
	c->self_run = ccvm_vcpu_run(c->v);
	c->self_close = ccvm_vcpu_close(c->v);
	c->self_set_guest = ccvm_vcpu_set_guest(c->v, guest_waits, c);
	tu_event_set(&c->started, 1);
	tu_event_wait(&c->go, 1);
}

static void *run_thread(void *arg)
{
	struct busy_ctx *c = arg;

	c->run_ret = ccvm_vcpu_run(c->v);
	c->exit_reason = ccvm_vcpu_run_state(c->v)->exit_reason;
	return NULL;
}

START_TEST(test_run_busy_and_self_calls)
{
	struct busy_ctx c = { .started = TU_EVENT_INIT, .go = TU_EVENT_INIT };
	pthread_t t;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &c.v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(c.v, guest_waits, &c), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, run_thread, &c), 0);
	tu_event_wait(&c.started, 1);
	ck_assert_int_eq(ccvm_vcpu_run(c.v), -EBUSY);
	tu_event_set(&c.go, 1);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(c.run_ret, 0);
	ck_assert_uint_eq(c.exit_reason, CCVM_EXIT_DONE);
	ck_assert_int_eq(c.self_run, -EDEADLK);
	ck_assert_int_eq(c.self_close, -EDEADLK);
	ck_assert_int_eq(c.self_set_guest, -EDEADLK);
	ck_assert_int_eq(ccvm_vcpu_close(c.v), 0);
}
END_TEST

static _Atomic int after_exit;

static void guest_sync_then_flag(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	ccvm_guest_sync(g, 1);
	atomic_store(&after_exit, 1);
	ccvm_guest_sync(g, 2);
}

START_TEST(test_close_blocked_in_exit)
{
	struct ccvm_vcpu *v, *idle, *done;
	_Atomic int calls = 0;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_sync_then_flag, NULL), 0);
	tu_expect_sync(v, 1);
	/* set_guest is refused while a guest is blocked in an exit. */
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_return, &calls), -EBUSY);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(atomic_load(&after_exit), 0);
	/* Unwinding is not an exit the VMM sees. */
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_EXIT), 1);

	/* Closing a vCPU whose guest never ran, or ended. */
	ck_assert_int_eq(ccvm_vcpu_create(vm, 1, &idle), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(idle, guest_return, &calls), 0);
	ck_assert_int_eq(ccvm_vcpu_close(idle), 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 2, &done), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(done, guest_return, &calls), 0);
	tu_run_once(done, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(done), 0);
	ck_assert_int_eq(atomic_load(&calls), 1);
}
END_TEST

/* The VM handle goes first; closing the blocked vCPU then destroys the VM. */
START_TEST(test_close_blocked_last_reference)
{
	struct ccvm_vm *other;
	struct ccvm_vcpu *v;
	struct ccvm_stats st = { .sz = sizeof(st) };

	ck_assert_int_eq(ccvm_vm_create(p, NULL, &other), 0);
	ck_assert_int_eq(ccvm_vcpu_create(other, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_sync_then_flag, NULL), 0);
	tu_expect_sync(v, 1);
	ck_assert_int_eq(ccvm_vm_close(other), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(atomic_load(&after_exit), 0);
	ck_assert_int_eq(ccvm_platform_get_stats(p, &st), 0);
}
END_TEST

/* ---- parallel vCPUs ----------------------------------------------------------- */

struct par_ctx {
	struct ccvm_vcpu *v;
	struct tu_event *mine, *peer;
	uint64_t base;
	int run_ret;
	uint32_t exit_reason;
	char abort[300];
	int syncs;
};

/*
 * Each guest waits for the other to start: both finish only if they really
 * run at the same time.
 */
static void guest_rendezvous(struct ccvm_guest *g, void *arg)
{
	struct par_ctx *c = arg;
	uint8_t buf[6000], rd[6000];
	int i, round;

	tu_event_set(c->mine, 1);
	tu_event_wait(c->peer, 1);
	for (round = 0; round < 20; round++) {
		for (i = 0; i < (int)sizeof(buf); i++)
			buf[i] = (uint8_t)(i * 7 + round + ccvm_guest_vcpu_id(g));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, c->base + 100, buf, sizeof(buf)));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, c->base + 100, rd, sizeof(rd)));
		CCVM_GUEST_ASSERT(g, !memcmp(buf, rd, sizeof(buf)));
		ccvm_guest_sync(g, (uint64_t)round);
	}
}

static void *par_thread(void *arg)
{
	struct par_ctx *c = arg;
	struct ccvm_run *run = ccvm_vcpu_run_state(c->v);

	for (;;) {
		c->run_ret = ccvm_vcpu_run(c->v);
		c->exit_reason = run->exit_reason;
		if (c->run_ret || run->exit_reason != CCVM_EXIT_SYNC)
			break;
		if (run->sync.value != (uint64_t)c->syncs)
			break;
		c->syncs++;
	}
	if (run->exit_reason == CCVM_EXIT_GUEST_ABORT)
		snprintf(c->abort, sizeof(c->abort), "%s:%d: %s", run->abort.file,
			 run->abort.line, run->abort.msg);
	return NULL;
}

START_TEST(test_parallel_vcpus)
{
	struct tu_event flags[2] = { TU_EVENT_INIT, TU_EVENT_INIT };
	struct par_ctx c[2];
	pthread_t t[2];
	int i;

	memset(c, 0, sizeof(c));
	for (i = 0; i < 2; i++) {
		c[i].mine = &flags[i];
		c[i].peer = &flags[!i];
		c[i].base = (uint64_t)i << 20;
		ck_assert_int_eq(ccvm_vcpu_create(vm, (uint32_t)i, &c[i].v), 0);
		ck_assert_int_eq(ccvm_vcpu_set_guest(c[i].v, guest_rendezvous, &c[i]), 0);
	}
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, par_thread, &c[i]), 0);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_msg(!c[i].abort[0], "vcpu %d: %s", i, c[i].abort);
		ck_assert_int_eq(c[i].run_ret, 0);
		ck_assert_uint_eq(c[i].exit_reason, CCVM_EXIT_DONE);
		ck_assert_int_eq(c[i].syncs, 20);
	}
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(ccvm_vcpu_close(c[i].v), 0);
	/* Each guest touched two pages (6000 bytes at offset 100) per access. */
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_GUEST_ACCESS), 2 * 20 * 2 * 2);
}
END_TEST

/* ---- guest entry --------------------------------------------------------------- */

static _Atomic int entered;

static void guest_mark_entered(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	atomic_store(&entered, 1);
	ccvm_guest_sync(g, 9);
}

START_TEST(test_entry_blocked)
{
	struct busy_ctx c = { 0 };
	pthread_t t;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &c.v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(c.v, guest_mark_entered, NULL), 0);
	ccvm_vm_block_entry(vm);
	ck_assert_int_eq(pthread_create(&t, NULL, run_thread, &c), 0);
	/*
	 * Whatever the timing, a blocked entry never reaches the backend.  No
	 * sleep to let the runner get there: twins.c test_entry_blocked explores
	 * every interleaving, the runner parked at the blocked entry included.
	 */
	ck_assert_int_eq(atomic_load(&entered), 0);
	ck_assert_int_eq(ccvm_op_calls(p, "vcpu_enter"), 0);
	ccvm_vm_unblock_entry(vm);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(c.run_ret, 0);
	ck_assert_uint_eq(c.exit_reason, CCVM_EXIT_SYNC);
	ck_assert_int_eq(atomic_load(&entered), 1);
	ck_assert_int_eq(ccvm_op_calls(p, "vcpu_enter"), 1);
	ck_assert_int_eq(ccvm_vcpu_close(c.v), 0);
}
END_TEST

static struct tu_event kick_phase = TU_EVENT_INIT;

static void guest_kicked(struct ccvm_guest *g, void *arg)
{
	uint64_t x = 0x1234;

	(void)arg;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, 0x5000, &x, sizeof(x)));
	tu_event_set(&kick_phase, 1);
	tu_event_wait(&kick_phase, 2);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, 0x5000, &x, sizeof(x)));
	ccvm_guest_sync(g, x);
}

START_TEST(test_kick_makes_guest_reenter)
{
	struct busy_ctx c = { 0 };
	uint64_t enters;
	pthread_t t;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &c.v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(c.v, guest_kicked, NULL), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, run_thread, &c), 0);
	tu_event_wait(&kick_phase, 1);
	ck_assert(atomic_load(&c.v->in_guest));
	enters = tu_vm_event(vm, CCVM_EV_GUEST_ENTER);
	ccvm_vm_kick_all(vm);
	ck_assert(!atomic_load(&c.v->in_guest));
	tu_event_set(&kick_phase, 2);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(c.run_ret, 0);
	ck_assert_uint_eq(c.exit_reason, CCVM_EXIT_SYNC);
	ck_assert_uint_eq(ccvm_vcpu_run_state(c.v)->sync.value, 0x1234);
	/* The access after the kick entered again, exactly once. */
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_GUEST_ENTER), enters + 1);
	ck_assert(!atomic_load(&c.v->in_guest));	/* left at the exit */
	ck_assert_int_eq(ccvm_vcpu_close(c.v), 0);
}
END_TEST

static _Atomic int dead_after;

static void guest_two_syncs(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	ccvm_guest_sync(g, 1);
	atomic_store(&dead_after, 1);
	ccvm_guest_sync(g, 2);
}

START_TEST(test_dead_vm_run_eio)
{
	struct ccvm_vcpu *v;
	struct ccvm_run *run;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_two_syncs, NULL), 0);
	tu_expect_sync(v, 1);
	ccvm_vm_set_dead(vm);
	run = tu_run_once(v, -EIO, CCVM_EXIT_INTERNAL_ERROR);
	ck_assert_int_eq(run->internal.error, -EIO);
	tu_run_once(v, -EIO, CCVM_EXIT_INTERNAL_ERROR);
	ck_assert_int_eq(atomic_load(&dead_after), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* A VM that dies before the guest's first entry: the entry itself fails. */
START_TEST(test_dead_vm_before_start)
{
	struct ccvm_vcpu *v;
	_Atomic int calls = 0;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_return, &calls), 0);
	tu_quiet_log();
	ccvm_vm_bug(vm, "test");
	ck_assert_uint_eq(*tu_log_count(), 1);
	ck_assert_int_eq(ccvm_vcpu_run(v), -EIO);
	ck_assert_uint_eq(ccvm_vcpu_run_state(v)->exit_reason, CCVM_EXIT_INTERNAL_ERROR);
	ck_assert_int_eq(atomic_load(&calls), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- tracing --------------------------------------------------------------------- */

struct trace_log {
	pthread_mutex_t lock;
	int n;
	struct ccvm_trace_record rec[16];
};

static void collect_exits(const struct ccvm_trace_record *rec, void *ctx)
{
	struct trace_log *log = ctx;

	if (rec->kind != CCVM_TRACE_EXIT)
		return;
	pthread_mutex_lock(&log->lock);
	if (log->n < 16)
		log->rec[log->n++] = *rec;
	pthread_mutex_unlock(&log->lock);
}

static void guest_sync5(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	ccvm_guest_sync(g, 5);
}

START_TEST(test_trace_exits)
{
	struct trace_log log = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct ccvm_vcpu *v;

	ck_assert_int_eq(ccvm_platform_set_trace(p, collect_exits, &log), 0);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 6, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_sync5, NULL), 0);
	tu_expect_sync(v, 5);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_platform_set_trace(p, NULL, NULL), 0);
	ck_assert_int_eq(log.n, 2);
	ck_assert_uint_eq(log.rec[0].id, CCVM_EXIT_SYNC);
	ck_assert_uint_eq(log.rec[0].arg0, CCVM_EXIT_SYNC);
	ck_assert_uint_eq(log.rec[0].arg1, 5);
	ck_assert_str_eq(log.rec[0].name, "exit.sync");
	ck_assert_int_eq(log.rec[0].vcpu_id, 6);
	ck_assert_uint_eq(log.rec[0].vm_id, ccvm_vm_id(vm));
	ck_assert_uint_eq(log.rec[1].id, CCVM_EXIT_DONE);
	ck_assert_str_eq(log.rec[1].name, "exit.done");
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- failure injection ------------------------------------------------------------ */

static void guest_write_sync(struct ccvm_guest *g, void *arg)
{
	uint8_t buf[64], rd[64];

	(void)arg;
	memset(buf, 0x5a, sizeof(buf));
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, 0x3000, buf, sizeof(buf)));
	ccvm_guest_sync(g, 1);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, 0x3000, rd, sizeof(rd)));
	CCVM_GUEST_ASSERT(g, !memcmp(buf, rd, sizeof(rd)));
	ccvm_guest_sync(g, 2);
}

START_TEST(test_inject_vcpu_enter)
{
	struct ccvm_vcpu *v;
	struct ccvm_run *run;
	int64_t calls;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_write_sync, NULL), 0);
	ck_assert_int_eq(ccvm_inject_op_failure(p, "vcpu_enter", 1, -ENOMEM, 1), 0);
	run = tu_run_once(v, -ENOMEM, CCVM_EXIT_INTERNAL_ERROR);
	ck_assert_int_eq(run->internal.error, -ENOMEM);
	/* The next run enters and the guest goes on where it was. */
	tu_expect_sync(v, 1);

	/* A busy entry is retried without bothering the VMM. */
	calls = ccvm_op_calls(p, "vcpu_enter");
	ck_assert_int_eq(ccvm_inject_op_failure(p, "vcpu_enter", 1, -EAGAIN, 5), 0);
	tu_expect_sync(v, 2);
	ck_assert_int_eq(ccvm_op_calls(p, "vcpu_enter"), calls + 6);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

START_TEST(test_inject_vcpu_enter_then_close)
{
	struct ccvm_vcpu *v;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_write_sync, NULL), 0);
	ck_assert_int_eq(ccvm_inject_op_failure(p, "vcpu_enter", 0, -EIO, 0), 0);
	ck_assert_int_eq(ccvm_vcpu_run(v), -EIO);
	ck_assert_int_eq(ccvm_vcpu_run_state(v)->internal.error, -EIO);
	ck_assert_int_eq(ccvm_vcpu_run(v), -EIO);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

START_TEST(test_inject_gmem_prepare)
{
	struct ccvm_vcpu *v;
	struct ccvm_run *run;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_write_sync, NULL), 0);
	ck_assert_int_eq(ccvm_inject_op_failure(p, "gmem_prepare", 1, -ENOMEM, 1), 0);
	/* As KVM: gmem's error is the result, with the memory-fault exit filled. */
	run = tu_run_once(v, -ENOMEM, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(run->memory_fault.gpa, 0x3000);
	ck_assert_uint_eq(run->memory_fault.size, 4096);
	ck_assert_uint_eq(run->memory_fault.flags, CCVM_MEMORY_EXIT_FLAG_PRIVATE);
	tu_expect_sync(v, 1);
	tu_expect_sync(v, 2);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* The same failure, then the VMM gives up: nothing may leak. */
START_TEST(test_inject_gmem_prepare_then_close)
{
	struct ccvm_vcpu *v;

	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_write_sync, NULL), 0);
	ck_assert_int_eq(ccvm_inject_op_failure(p, "gmem_prepare", 0, -ENOSPC, 0), 0);
	tu_run_once(v, -ENOSPC, CCVM_EXIT_MEMORY_FAULT);
	tu_run_once(v, -ENOSPC, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

Suite *vcpu_suite(void)
{
	Suite *s = suite_create("vcpu");
	TCase *tc;

	tc = tcase_create("lifetime");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_create_errors);
	tcase_add_test(tc, test_for_each_vcpu);
	tcase_add_test(tc, test_create_on_closed_bugged_dead_vm);
	tcase_add_test(tc, test_vcpu_keeps_vm_alive);
	tcase_add_test(tc, test_close_blocked_in_exit);
	tcase_add_test(tc, test_close_blocked_last_reference);
	suite_add_tcase(s, tc);

	tc = tcase_create("run");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_run_without_guest);
	tcase_add_test(tc, test_run_after_done);
	tcase_add_test(tc, test_guest_abort);
	tcase_add_test(tc, test_sync_values);
	tcase_add_test(tc, test_dead_vm_run_eio);
	tcase_add_test(tc, test_dead_vm_before_start);
	tcase_add_test(tc, test_trace_exits);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_run_busy_and_self_calls);
	tcase_add_test(tc, test_parallel_vcpus);
	tcase_add_test(tc, test_entry_blocked);
	tcase_add_test(tc, test_kick_makes_guest_reenter);
	suite_add_tcase(s, tc);

	tc = tcase_create("inject");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_inject_vcpu_enter);
	tcase_add_test(tc, test_inject_vcpu_enter_then_close);
	tcase_add_test(tc, test_inject_gmem_prepare);
	tcase_add_test(tc, test_inject_gmem_prepare_then_close);
	suite_add_tcase(s, tc);
	return s;
}
