/* SPDX-License-Identifier: MIT */
/*
 * Tests for the guest side (lib/guest.c): reads and writes across pages,
 * the exact fields of every exit (memory faults with their flags, MMIO
 * reads and writes with data both ways, MAP_GPA_RANGE hypercalls, #VE/#VC),
 * accept, a guest-driven conversion round trip, punch then re-fault, a
 * memslot deleted under a running vCPU, closing a vCPU blocked in an MMIO
 * exit, vCPUs faulting while another thread converts and punches, and the
 * lock-free access: it goes on under a held mmu_lock, and a conversion
 * that zaps its page waits for it.
 *
 * Most tests run on the mock backend.  Behaviour the mock cannot show (a
 * shared bit, accept, #VE/#VC, chunked hypercalls, busy entries, nested
 * faults) runs on "guest-test": the mock's table with a shared bit and a
 * few guest-side ops of its own, registered like any out-of-tree backend.
 */
#include <errno.h>
#include <sched.h>
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
#define MMIO_BASE	(1ull << 30)	/* no memslot there */
#define TEST_BACKEND	"guest-test"

static struct ccvm_platform *p;
static struct ccvm_vm *vm;
static struct ccvm_gmem *gm;
static uint8_t *shared;
static uint64_t sbit;		/* the VM's shared bit */

/* ---- the guest-test backend ------------------------------------------------ */

extern const struct ccvm_backend_ops ccvm_mock_backend_ops;

#define TB_PAGES	1024

static struct {
	_Atomic bool accept_required;
	_Atomic uint8_t accepted[TB_PAGES];
	_Atomic int enter_eagain;
	_Atomic uint64_t needs_fault_gfn;
	/* An access to hold_gfn waits inside guest_access for a flush to wait on it. */
	_Atomic uint64_t hold_gfn;
	_Atomic bool hold_done;		/* the flushing call has returned */
	_Atomic int hold_saw_done;	/* 1: it had, while the access was in flight */
	pthread_mutex_t lock;
	int nr_accepts;
	struct { uint64_t gfn, pfn; bool mapped; } accepts[16];
} tb = { .lock = PTHREAD_MUTEX_INITIALIZER };

static struct tu_event tb_held = TU_EVENT_INIT;	/* accesses that stopped in tb_hold() */
/*
 * What lets a held access go: an access.wait event (the platform's trace,
 * tu_watch_event()), or one added by the call that should have waited,
 * once it has returned (after setting tb.hold_done).
 */
static struct tu_event_watch tb_release;

static void tb_reset(void)
{
	int i;

	atomic_store(&tb.accept_required, false);
	for (i = 0; i < TB_PAGES; i++)
		atomic_store(&tb.accepted[i], 0);
	atomic_store(&tb.enter_eagain, 0);
	atomic_store(&tb.needs_fault_gfn, UINT64_MAX);
	atomic_store(&tb.hold_gfn, UINT64_MAX);
	atomic_store(&tb.hold_done, false);
	atomic_store(&tb.hold_saw_done, -1);
	tu_event_set(&tb_held, 0);
	tb.nr_accepts = 0;
}

static void tb_get_caps(const struct ccvm_vm *v, struct ccvm_backend_caps *caps)
{
	ccvm_mock_backend_ops.get_caps(v, caps);
	caps->has_shared_bit = true;
	caps->requires_accept = true;
	caps->map_gpa_max_bytes = CCVM_HPAGE_2M_SIZE;
}

static int tb_vcpu_enter(struct ccvm_vcpu *v)
{
	(void)v;
	if (atomic_load(&tb.enter_eagain) > 0) {
		atomic_fetch_sub(&tb.enter_eagain, 1);
		return -EAGAIN;
	}
	return 0;
}


/*
 * Inside a guest access: tell the test, then stay until a flush or kick
 * has found this access in flight and waits for it, or the call that
 * should flush has returned without waiting (the bug this catches), and
 * note which.
 */
static void tb_hold(void)
{
	tu_event_add(&tb_held, 1);
	tu_event_wait(&tb_release.ev, 1);
	atomic_store(&tb.hold_saw_done, atomic_load(&tb.hold_done));
}

/* Private pages must be accepted first (#VC), as with SNP's validated bit. */
static int tb_guest_access(struct ccvm_vcpu *v, uint64_t gfn, uint64_t pfn,
			   bool is_private, bool write)
{
	uint64_t want = gfn;

	(void)v; (void)pfn; (void)write;
	if (atomic_compare_exchange_strong(&tb.needs_fault_gfn, &want, UINT64_MAX))
		return CCVM_GUEST_NEEDS_FAULT;
	want = gfn;
	if (atomic_compare_exchange_strong(&tb.hold_gfn, &want, UINT64_MAX))
		tb_hold();
	if (atomic_load(&tb.accept_required) && is_private && gfn < TB_PAGES &&
	    !atomic_load(&tb.accepted[gfn]))
		return -EACCES;
	return 0;
}

static int tb_guest_accept(struct ccvm_vcpu *v, uint64_t gfn, uint64_t pfn, bool mapped)
{
	(void)v;
	pthread_mutex_lock(&tb.lock);
	if (tb.nr_accepts < 16) {
		tb.accepts[tb.nr_accepts].gfn = gfn;
		tb.accepts[tb.nr_accepts].pfn = pfn;
		tb.accepts[tb.nr_accepts].mapped = mapped;
		tb.nr_accepts++;
	}
	pthread_mutex_unlock(&tb.lock);
	if (!mapped)
		return CCVM_GUEST_NEEDS_FAULT;
	if (gfn < TB_PAGES)
		atomic_store(&tb.accepted[gfn], 1);
	return 0;
}

/* TDX's MapGPA: at most 2 MiB per exit. */
static int64_t tb_hypercall(struct ccvm_vcpu *v, uint64_t gpa, uint64_t size,
			    bool to_private, struct ccvm_run *run)
{
	uint64_t chunk = size < CCVM_HPAGE_2M_SIZE ? size : CCVM_HPAGE_2M_SIZE;

	(void)v;
	run->hypercall.nr = CCVM_HC_MAP_GPA_RANGE;
	run->hypercall.args[0] = gpa;
	run->hypercall.args[1] = chunk >> CCVM_PAGE_SHIFT;
	run->hypercall.args[2] = to_private ? CCVM_MAP_GPA_RANGE_ENCRYPTED : 0;
	return (int64_t)chunk;
}

static void tb_register(void)
{
	static struct ccvm_backend_ops ops;
	int err;

	ops = ccvm_mock_backend_ops;
	ops.name = TEST_BACKEND;
	ops.get_caps = tb_get_caps;
	ops.fault_is_private = NULL;	/* the shared-bit rule */
	ops.vcpu_enter = tb_vcpu_enter;
	ops.guest_access = tb_guest_access;
	ops.guest_accept = tb_guest_accept;
	ops.handle_exit_hypercall = tb_hypercall;
	err = ccvm_backend_register(&ops);
	ck_assert_msg(err == 0 || err == -EEXIST, "register: %d", err);
}

/* ---- fixtures ---------------------------------------------------------------- */

static void env_up(const char *backend)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = backend);

	ck_assert_int_eq(ccvm_platform_create(&po, &p), 0);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vm), 0);
	sbit = ccvm_vm_shared_bit(vm);
	shared = tu_private_slot0(vm, MEM_SIZE, &gm);
}

static void setup_mock(void)
{
	env_up("mock");
}

static void setup_tb(void)
{
	tb_reset();
	tb_register();
	env_up(TEST_BACKEND);
	ck_assert_uint_eq(sbit, 1ull << 47);
}

static void teardown(void)
{
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	munmap(shared, MEM_SIZE);
}

/* ---- helpers ------------------------------------------------------------------ */


static struct ccvm_vcpu *vcpu_with_guest(uint32_t id, ccvm_guest_fn fn, void *arg)
{
	struct ccvm_vcpu *v;

	ck_assert_int_eq(ccvm_vcpu_create(vm, id, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, fn, arg), 0);
	return v;
}

static void add_slot(uint32_t id, uint64_t gpa, uint64_t size, void *hva,
		     struct ccvm_gmem *g)
{
	struct ccvm_memory_region r = {
		.slot = id,
		.flags = g ? CCVM_MEM_GUEST_MEMFD : 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = hva,
		.gmem = g,
	};

	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &r), 0);
}

/* What the host sees of the gmem page behind @gfn (mock: plain text). */
static void host_read_private(uint64_t gfn, void *buf, uint32_t len)
{
	uint64_t pfn;

	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, gfn, &pfn), 0);
	ck_assert_int_eq(ccvm_host_read_phys(p, pfn, 0, buf, len), 0);
}

static bool all_bytes(const uint8_t *b, size_t n, uint8_t v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i] != v)
			return false;
	return true;
}

/*
 * A counter another thread (a guest) bumps, and the test waits on: a
 * condition variable, not a spin.  A thread that never gets there hangs
 * the test, which Check's timeout reports.
 */
struct tu_counter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int n;
};

#define TU_COUNTER_INIT	{ PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 }

static void counter_add(struct tu_counter *c)
{
	pthread_mutex_lock(&c->lock);
	c->n++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void wait_for(struct tu_counter *c, int value)
{
	pthread_mutex_lock(&c->lock);
	while (c->n < value)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
}

/* ---- reads and writes ---------------------------------------------------------- */

struct rw_ctx {
	struct ccvm_guest *g;
};

#define RW_GPA	0x1ffd
#define RW_LEN	9000

static void guest_rw(struct ccvm_guest *g, void *arg)
{
	static uint8_t buf[RW_LEN], rd[RW_LEN];
	struct rw_ctx *c = arg;
	int i;

	c->g = g;
	for (i = 0; i < RW_LEN; i++)
		buf[i] = (uint8_t)(i * 13 + 1);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, RW_GPA, buf, RW_LEN) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, RW_GPA, rd, RW_LEN) == 0);
	CCVM_GUEST_ASSERT(g, memcmp(buf, rd, RW_LEN) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 0, NULL, 0) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 0, NULL, 8) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, 0, NULL, 8) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 1ull << 48, rd, 1) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, (1ull << 48) - 4, rd, 8) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, UINT64_MAX - 2, rd, 8) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(NULL, 0, rd, 8) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_vcpu_id(g) == 3);
	CCVM_GUEST_ASSERT(g, ccvm_guest_shared_bit(g) == 0);
	ccvm_guest_sync(g, 1);
}

START_TEST(test_rw_round_trip)
{
	struct rw_ctx c = { 0 };
	struct ccvm_vcpu *v = vcpu_with_guest(3, guest_rw, &c);
	uint8_t page[4096];
	uint64_t accesses;
	int i;

	tu_expect_sync(v, 1);
	/* The bytes are in gmem (private), the VMM's buffer is untouched. */
	host_read_private(RW_GPA >> 12, page, sizeof(page));
	for (i = RW_GPA & 4095; i < 4096; i++)
		ck_assert_uint_eq(page[i], (uint8_t)((i - (RW_GPA & 4095)) * 13 + 1));
	ck_assert(all_bytes(shared, 0x5000, 0));
	/* 9000 bytes from 0x1ffd touch 4 pages, once to write, once to read. */
	accesses = tu_vm_event(vm, CCVM_EV_GUEST_ACCESS);
	ck_assert_uint_eq(accesses, 8);
	/* Not from outside the guest's own thread. */
	ck_assert_int_eq(ccvm_guest_read(c.g, 0, page, 8), -EINVAL);
	ck_assert_int_eq(ccvm_guest_write(c.g, 0, page, 8), -EINVAL);
	ck_assert_int_eq(ccvm_guest_map_gpa(c.g, 0, 4096, false), -EINVAL);
	ck_assert_int_eq(ccvm_guest_accept(c.g, 0, 4096), -EINVAL);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

static void guest_shared_exchange(struct ccvm_guest *g, void *arg)
{
	char msg[] = "to the vmm", rd[16];

	(void)arg;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, 0x5010 | ccvm_guest_shared_bit(g),
					       msg, sizeof(msg)));
	ccvm_guest_sync(g, 1);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, 0x5020 | ccvm_guest_shared_bit(g), rd, 9));
	CCVM_GUEST_ASSERT(g, !memcmp(rd, "from vmm", 9));
}

START_TEST(test_shared_access_uses_vmm_buffer)
{
	struct ccvm_vcpu *v;

	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 0x5000, 4096, 0, 0), 0);
	v = vcpu_with_guest(0, guest_shared_exchange, NULL);
	tu_expect_sync(v, 1);
	ck_assert_str_eq((char *)shared + 0x5010, "to the vmm");
	memcpy(shared + 0x5020, "from vmm", 9);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- memory-fault exits --------------------------------------------------------- */

#define SLOT1_GPA	(8ull << 20)
#define SLOT2_GPA	(12ull << 20)

static void guest_fault_exits(struct ccvm_guest *g, void *arg)
{
	uint64_t x = 0;

	(void)arg;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, SLOT1_GPA + 16, "hi", 3));
	ccvm_guest_sync(g, 1);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, SLOT2_GPA + 8, &x, sizeof(x)));
	ccvm_guest_sync(g, x);
}

START_TEST(test_memory_fault_exits)
{
	uint8_t *buf1 = aligned_alloc(4096, 4096);
	struct ccvm_gmem *gm2;
	struct ccvm_vcpu *v;
	struct ccvm_run *run;

	ck_assert_ptr_nonnull(buf1);
	memset(buf1, 0, 4096);
	/* Slot 1: private attribute but no gmem. */
	add_slot(1, SLOT1_GPA, 4096, buf1, NULL);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, SLOT1_GPA, 4096,
						       CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0), 0);
	/* Slot 2: gmem only, shared attribute: no shared backing. */
	ck_assert_int_eq(ccvm_gmem_create(vm, 4096, 0, &gm2), 0);
	add_slot(2, SLOT2_GPA, 4096, NULL, gm2);

	v = vcpu_with_guest(0, guest_fault_exits, NULL);
	run = tu_run_once(v, -EFAULT, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(run->memory_fault.gpa, SLOT1_GPA);
	ck_assert_uint_eq(run->memory_fault.size, 4096);
	ck_assert_uint_eq(run->memory_fault.flags, CCVM_MEMORY_EXIT_FLAG_PRIVATE);
	/* Nothing converts by itself: running again exits again. */
	run = tu_run_once(v, -EFAULT, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(run->memory_fault.gpa, SLOT1_GPA);
	/* The VMM converts; the write is executed again and lands. */
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, SLOT1_GPA, 4096, 0, 0), 0);
	tu_expect_sync(v, 1);
	ck_assert_str_eq((char *)buf1 + 16, "hi");

	run = tu_run_once(v, -EFAULT, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(run->memory_fault.gpa, SLOT2_GPA);
	ck_assert_uint_eq(run->memory_fault.size, 4096);
	ck_assert_uint_eq(run->memory_fault.flags, 0);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, SLOT2_GPA, 4096,
						       CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0), 0);
	tu_expect_sync(v, 0);	/* a fresh gmem page reads zeros */
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_MEMORY_FAULT_EXIT), 3);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(ccvm_gmem_close(gm2), 0);
	add_slot(1, SLOT1_GPA, 0, NULL, NULL);	/* delete before freeing its backing */
	free(buf1);
}
END_TEST

/* With a shared bit the access kind is the guest's, not the attribute's. */
static void guest_alias_mismatch(struct ccvm_guest *g, void *arg)
{
	uint64_t s = ccvm_guest_shared_bit(g), x = 0x1122334455667788ull, y = 0;

	(void)arg;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, 0x2008 | s, &x, sizeof(x)));
	ccvm_guest_sync(g, 1);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, 0x9008, &x, sizeof(x)));
	ccvm_guest_sync(g, 2);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, MMIO_BASE | s, &y, 4));
	ccvm_guest_sync(g, y);
}

START_TEST(test_memory_fault_shared_bit)
{
	struct ccvm_vcpu *v;
	struct ccvm_run *run;
	uint64_t x;

	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 0x9000, 4096, 0, 0), 0);
	v = vcpu_with_guest(0, guest_alias_mismatch, NULL);
	/* Shared access to a private page. */
	run = tu_run_once(v, -EFAULT, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(run->memory_fault.gpa, 0x2000);
	ck_assert_uint_eq(run->memory_fault.size, 4096);
	ck_assert_uint_eq(run->memory_fault.flags, 0);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 0x2000, 4096, 0, 0), 0);
	tu_expect_sync(v, 1);
	memcpy(&x, shared + 0x2008, sizeof(x));
	ck_assert_uint_eq(x, 0x1122334455667788ull);

	/* Private access to a shared page. */
	run = tu_run_once(v, -EFAULT, CCVM_EXIT_MEMORY_FAULT);
	ck_assert_uint_eq(run->memory_fault.gpa, 0x9000);
	ck_assert_uint_eq(run->memory_fault.flags, CCVM_MEMORY_EXIT_FLAG_PRIVATE);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, 0x9000, 4096,
						       CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0), 0);
	tu_expect_sync(v, 2);
	{
		uint8_t page[16];

		host_read_private(9, page, sizeof(page));
		memcpy(&x, page + 8, sizeof(x));
		ck_assert_uint_eq(x, 0x1122334455667788ull);
	}

	/* MMIO through the shared alias reports the address without the bit. */
	run = tu_run_once(v, 0, CCVM_EXIT_MMIO);
	ck_assert_uint_eq(run->mmio.phys_addr, MMIO_BASE);
	ck_assert_uint_eq(run->mmio.len, 4);
	ck_assert_uint_eq(run->mmio.is_write, 0);
	memcpy(run->mmio.data, "\x01\x02\x03\x04", 4);
	tu_expect_sync(v, 0x04030201);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- MMIO ----------------------------------------------------------------------- */

static void guest_mmio(struct ccvm_guest *g, void *arg)
{
	uint8_t w[13], r[12], x[6];
	int i;

	(void)arg;
	for (i = 0; i < 13; i++)
		w[i] = (uint8_t)(i + 1);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, MMIO_BASE + 4, w, sizeof(w)));
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, MMIO_BASE + 0x100, r, sizeof(r)));
	for (i = 0; i < 12; i++)
		CCVM_GUEST_ASSERT(g, r[i] == 0xa0 + i);
	/* Crossing a page: one piece per page. */
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, MMIO_BASE + 0xffd, x, sizeof(x)));
	for (i = 0; i < 6; i++)
		CCVM_GUEST_ASSERT(g, x[i] == 0x50 + i);
	ccvm_guest_sync(g, 7);
}

static void expect_mmio(struct ccvm_vcpu *v, uint64_t addr, uint32_t len, bool is_write,
			const uint8_t *wdata, uint8_t rfirst)
{
	struct ccvm_run *run = tu_run_once(v, 0, CCVM_EXIT_MMIO);
	uint32_t i;

	ck_assert_uint_eq(run->mmio.phys_addr, addr);
	ck_assert_uint_eq(run->mmio.len, len);
	ck_assert_uint_eq(run->mmio.is_write, is_write);
	if (is_write) {
		ck_assert(!memcmp(run->mmio.data, wdata, len));
		return;
	}
	for (i = 0; i < len; i++)
		run->mmio.data[i] = (uint8_t)(rfirst + i);
}

START_TEST(test_mmio_read_write)
{
	static const uint8_t w[13] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 };
	struct ccvm_vcpu *v = vcpu_with_guest(0, guest_mmio, NULL);

	expect_mmio(v, MMIO_BASE + 4, 8, true, w, 0);
	expect_mmio(v, MMIO_BASE + 12, 5, true, w + 8, 0);
	expect_mmio(v, MMIO_BASE + 0x100, 8, false, NULL, 0xa0);
	expect_mmio(v, MMIO_BASE + 0x108, 4, false, NULL, 0xa8);
	expect_mmio(v, MMIO_BASE + 0xffd, 3, false, NULL, 0x50);
	expect_mmio(v, MMIO_BASE + 0x1000, 3, false, NULL, 0x53);
	tu_expect_sync(v, 7);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_MMIO_EXIT), 6);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_EXIT), 8);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

static _Atomic int mmio_returned;

static void guest_mmio_blocked(struct ccvm_guest *g, void *arg)
{
	uint64_t x;

	(void)arg;
	ccvm_guest_read(g, MMIO_BASE, &x, sizeof(x));
	atomic_store(&mmio_returned, 1);
}

START_TEST(test_close_blocked_in_mmio)
{
	struct ccvm_vcpu *v = vcpu_with_guest(0, guest_mmio_blocked, NULL);

	tu_run_once(v, 0, CCVM_EXIT_MMIO);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(atomic_load(&mmio_returned), 0);
}
END_TEST

/* ---- hypercalls ---------------------------------------------------------------- */

static void guest_map_gpa(struct ccvm_guest *g, void *arg)
{
	const uint64_t top = 1ull << 48;

	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, 0x1001, 4096, false) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, 0x1000, 0, false) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, 0x1000, 0x1001, false) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, top, 4096, true) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, top - 4096, 8192, true) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, top - 4096, UINT64_MAX & ~4095ull,
						true) == -EINVAL);
	ccvm_guest_sync(g, (uint64_t)-ccvm_guest_map_gpa(g, 0x200000, 0x3000, false));
	ccvm_guest_sync(g, (uint64_t)-ccvm_guest_map_gpa(g, 0x200000, 0x3000, true));
}

START_TEST(test_hypercall_args)
{
	struct ccvm_vcpu *v = vcpu_with_guest(0, guest_map_gpa, NULL);
	struct ccvm_run *run;

	run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
	ck_assert_uint_eq(run->hypercall.nr, CCVM_HC_MAP_GPA_RANGE);
	ck_assert_uint_eq(run->hypercall.args[0], 0x200000);
	ck_assert_uint_eq(run->hypercall.args[1], 3);
	ck_assert_uint_eq(run->hypercall.args[2],
			  CCVM_MAP_GPA_RANGE_DECRYPTED | CCVM_MAP_GPA_RANGE_PAGE_SZ_4K);
	ck_assert_uint_eq(run->hypercall.ret, 0);
	tu_expect_sync(v, 0);

	run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
	ck_assert_uint_eq(run->hypercall.args[0], 0x200000);
	ck_assert_uint_eq(run->hypercall.args[1], 3);
	ck_assert_uint_eq(run->hypercall.args[2],
			  CCVM_MAP_GPA_RANGE_ENCRYPTED | CCVM_MAP_GPA_RANGE_PAGE_SZ_4K);
	run->hypercall.ret = EINVAL;
	tu_expect_sync(v, EINVAL);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	/* The bad ranges never left the guest. */
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_HYPERCALL_EXIT), 2);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

static void guest_map_gpa_chunks(struct ccvm_guest *g, void *arg)
{
	uint64_t s = ccvm_guest_shared_bit(g);

	(void)arg;
	ccvm_guest_sync(g, (uint64_t)-ccvm_guest_map_gpa(g, 0x100000 | s, 5ull << 20, true));
	ccvm_guest_sync(g, (uint64_t)-ccvm_guest_map_gpa(g, 0x100000, 5ull << 20, false));
}

START_TEST(test_hypercall_chunks)
{
	static const uint64_t want[3][2] = {
		{ 0x100000, 512 }, { 0x300000, 512 }, { 0x500000, 256 },
	};
	struct ccvm_vcpu *v = vcpu_with_guest(0, guest_map_gpa_chunks, NULL);
	struct ccvm_run *run;
	int i;

	for (i = 0; i < 3; i++) {
		run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
		ck_assert_uint_eq(run->hypercall.nr, CCVM_HC_MAP_GPA_RANGE);
		ck_assert_uint_eq(run->hypercall.args[0], want[i][0]);
		ck_assert_uint_eq(run->hypercall.args[1], want[i][1]);
		ck_assert_uint_eq(run->hypercall.args[2], CCVM_MAP_GPA_RANGE_ENCRYPTED);
	}
	tu_expect_sync(v, 0);
	/* A failure in the second chunk ends the walk there. */
	run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
	ck_assert_uint_eq(run->hypercall.args[2], 0);
	run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
	ck_assert_uint_eq(run->hypercall.args[0], 0x300000);
	run->hypercall.ret = EAGAIN;
	tu_expect_sync(v, EAGAIN);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_HYPERCALL_EXIT), 5);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- accept, #VE/#VC, nested faults, busy entry ------------------------------- */

static void guest_accept_flow(struct ccvm_guest *g, void *arg)
{
	uint64_t s = ccvm_guest_shared_bit(g), x = 1;
	int r;

	(void)arg;
	r = ccvm_guest_read(g, 0x3000, &x, sizeof(x));
	ccvm_guest_sync(g, (uint64_t)-r);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0x3001, 4096) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0x3000 | s, 4096) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0x3000, 0) == -EINVAL);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0x3000, 4096) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0x4000, 4096) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 0x3000, &x, sizeof(x)) == 0 && x == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, 0x4000, &x, sizeof(x)) == 0 && x == 0);
	ccvm_guest_sync(g, 2);
}

START_TEST(test_exception_and_accept)
{
	struct ccvm_vcpu *v;
	struct ccvm_run *run;
	uint64_t pfn3, pfn4;

	atomic_store(&tb.accept_required, true);
	v = vcpu_with_guest(0, guest_accept_flow, NULL);
	run = tu_run_once(v, 0, CCVM_EXIT_EXCEPTION);
	ck_assert_uint_eq(run->exception.vector, CCVM_X86_VC_VECTOR);	/* no mirror root */
	ck_assert_uint_eq(run->exception.gpa, 0x3000);
	tu_expect_sync(v, EACCES);
	tu_expect_sync(v, 2);
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, 3, &pfn3), 0);
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, 4, &pfn4), 0);
	/* gfn 3 was mapped by the failed read; gfn 4 had to be faulted in. */
	ck_assert_int_eq(tb.nr_accepts, 3);
	ck_assert_uint_eq(tb.accepts[0].gfn, 3);
	ck_assert(tb.accepts[0].mapped);
	ck_assert_uint_eq(tb.accepts[0].pfn, pfn3);
	ck_assert_uint_eq(tb.accepts[1].gfn, 4);
	ck_assert(!tb.accepts[1].mapped);
	ck_assert_uint_eq(tb.accepts[2].gfn, 4);
	ck_assert(tb.accepts[2].mapped);
	ck_assert_uint_eq(tb.accepts[2].pfn, pfn4);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

static void guest_read_9(struct ccvm_guest *g, void *arg)
{
	uint64_t x = 1;

	(void)arg;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, 0x9000, &x, sizeof(x)));
	ccvm_guest_sync(g, x + 10);
}

START_TEST(test_guest_access_needs_fault)
{
	struct ccvm_vcpu *v = vcpu_with_guest(0, guest_read_9, NULL);
	uint64_t zaps = tu_vm_event(vm, CCVM_EV_ZAP);

	atomic_store(&tb.needs_fault_gfn, 9);
	tu_expect_sync(v, 10);
	/* Mapped, refused, zapped, mapped again. */
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_FAULT), 2);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_ZAP), zaps + 1);
	ck_assert_uint_eq(atomic_load(&tb.needs_fault_gfn), UINT64_MAX);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

START_TEST(test_busy_entry_is_retried)
{
	struct ccvm_vcpu *v = vcpu_with_guest(0, guest_read_9, NULL);

	atomic_store(&tb.enter_eagain, 3);
	tu_expect_sync(v, 10);
	ck_assert_int_eq(atomic_load(&tb.enter_eagain), 0);
	/* 3 busy + the first entry + the entry after the read's fault. */
	ck_assert_int_eq(ccvm_op_calls(p, "vcpu_enter"), 5);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- lock-free accesses ------------------------------------------------------------ */

/*
 * A guest access takes no lock, as a CPU's load does not: a vCPU reading
 * mapped memory goes on while another thread holds mmu_lock for write (a
 * conversion or a zap elsewhere in the VM).
 */
#define LF_GPA	0x20000ull

static struct tu_counter lf_in = TU_COUNTER_INIT, lf_locked = TU_COUNTER_INIT,
			 lf_done = TU_COUNTER_INIT;

static void guest_reads_under_writer(struct ccvm_guest *g, void *arg)
{
	uint64_t x = 0x5a5a, y = 0;
	int i;

	(void)arg;
	/* Faults the page in; the vCPU stays in guest mode after the access. */
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, LF_GPA, &x, sizeof(x)));
	counter_add(&lf_in);
	wait_for(&lf_locked, 1);
	for (i = 0; i < 100; i++) {
		CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, LF_GPA, &y, sizeof(y)));
		CCVM_GUEST_ASSERT(g, y == x);
	}
	counter_add(&lf_done);
	ccvm_guest_sync(g, 1);
}

START_TEST(test_access_while_mmu_lock_held_for_write)
{
	struct tu_run r = { .v = vcpu_with_guest(0, guest_reads_under_writer, NULL) };
	uint64_t faults;
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, tu_run_thread, &r), 0);
	wait_for(&lf_in, 1);
	faults = tu_vm_event(vm, CCVM_EV_FAULT);
	ccvm_vm_mmu_write_lock(vm);
	counter_add(&lf_locked);
	/* An access that took mmu_lock read would hang here (Check's timeout). */
	wait_for(&lf_done, 1);
	ccvm_vm_mmu_write_unlock(vm);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(r.ret, 0);
	ck_assert_uint_eq(r.exit_reason, CCVM_EXIT_SYNC);
	ck_assert_uint_eq(r.value, 1);
	/* The reads hit the mapping: no fault while the lock was held. */
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_FAULT), faults);
	tu_run_once(r.v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(r.v), 0);
}
END_TEST

/*
 * The other side: a conversion that zaps a page a vCPU is reading at that
 * moment does not return (and the page is not freed) before that access
 * is over, as a TLB shootdown waits for every CPU's acknowledgement.  The
 * access stops inside guest_access until the conversion counts its wait.
 */
#define LF_VALUE	0x1234abcdull

static void guest_read_lf(struct ccvm_guest *g, void *arg)
{
	uint64_t x = LF_VALUE, y = 0;

	(void)arg;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, LF_GPA, &x, sizeof(x)));
	ccvm_guest_sync(g, 1);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, LF_GPA, &y, sizeof(y)));
	ccvm_guest_sync(g, y);
}

struct conv_one {
	int err;
};

static void *convert_lf_thread(void *arg)
{
	struct conv_one *c = arg;

	tu_event_wait(&tb_held, 1);
	c->err = ccvm_vm_set_memory_attributes(vm, LF_GPA, 4096, 0, 0);
	atomic_store(&tb.hold_done, true);
	tu_event_add(&tb_release.ev, 1);
	return NULL;
}

START_TEST(test_flush_waits_for_access_in_flight)
{
	struct ccvm_vcpu *v = vcpu_with_guest(0, guest_read_lf, NULL);
	struct tu_run r = { .v = v };
	struct conv_one c = { -1 };
	pthread_t conv, t;
	int saw_done;

	/* The page mapped private with a known value; the next read holds. */
	tu_expect_sync(v, 1);
	tu_watch_event(p, &tb_release, CCVM_EV_ACCESS_WAIT);
	atomic_store(&tb.hold_gfn, LF_GPA >> 12);
	ck_assert_int_eq(pthread_create(&conv, NULL, convert_lf_thread, &c), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, tu_run_thread, &r), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(pthread_join(conv, NULL), 0);
	ck_assert_int_eq(ccvm_platform_set_trace(p, NULL, NULL), 0);
	tu_event_destroy(&tb_release.ev);
	ck_assert_int_eq(c.err, 0);
	ck_assert_int_eq(r.ret, 0);
	ck_assert_uint_eq(r.exit_reason, CCVM_EXIT_SYNC);
	/* The access read the private page, then the conversion returned. */
	ck_assert_uint_eq(r.value, LF_VALUE);
	saw_done = atomic_load(&tb.hold_saw_done);
	ck_assert_msg(saw_done == 0, "the conversion returned while an access to the page "
		      "it zapped was in flight (%d)", saw_done);
	ck_assert_uint_ge(tu_vm_event(vm, CCVM_EV_ACCESS_WAIT), 1);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- conversions ---------------------------------------------------------------- */

#define CONV_GPA	0x10000ull
#define CONV_MID	(CONV_GPA + 0x1000)

struct conv_ctx {
	bool expect_zero;	/* the middle page reads zeros when private again */
};

static void guest_page_fill(struct ccvm_guest *g, uint64_t gpa, uint8_t v)
{
	uint8_t buf[4096];

	memset(buf, v, sizeof(buf));
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, gpa, buf, sizeof(buf)));
}

static void guest_page_check(struct ccvm_guest *g, uint64_t gpa, uint8_t v)
{
	uint8_t buf[4096];

	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, gpa, buf, sizeof(buf)));
	CCVM_GUEST_ASSERT(g, all_bytes(buf, sizeof(buf), v));
}

static void guest_convert(struct ccvm_guest *g, void *arg)
{
	struct conv_ctx *c = arg;
	uint64_t s = ccvm_guest_shared_bit(g);
	int i;

	CCVM_GUEST_ASSERT(g, !ccvm_guest_accept(g, CONV_GPA, 3 * 4096));
	for (i = 0; i < 3; i++)
		guest_page_fill(g, CONV_GPA + i * 4096ull, 0xa1);
	for (i = 0; i < 3; i++)
		guest_page_check(g, CONV_GPA + i * 4096ull, 0xa1);
	ccvm_guest_sync(g, 1);

	/* The middle page becomes a bounce buffer. */
	CCVM_GUEST_ASSERT(g, !ccvm_guest_map_gpa(g, CONV_MID, 4096, false));
	guest_page_fill(g, CONV_MID | s, 0xb2);
	ccvm_guest_sync(g, 2);
	guest_page_check(g, CONV_MID | s, 0xc3);
	guest_page_check(g, CONV_GPA, 0xa1);
	guest_page_check(g, CONV_GPA + 0x2000, 0xa1);

	/* And private again. */
	CCVM_GUEST_ASSERT(g, !ccvm_guest_map_gpa(g, CONV_MID, 4096, true));
	CCVM_GUEST_ASSERT(g, !ccvm_guest_accept(g, CONV_MID, 4096));
	guest_page_check(g, CONV_MID, c->expect_zero ? 0 : 0xa1);
	guest_page_check(g, CONV_GPA, 0xa1);
	guest_page_check(g, CONV_GPA + 0x2000, 0xa1);
	ccvm_guest_sync(g, 3);
}

/* The VMM's side of a MAP_GPA_RANGE exit, as a VMM does it. */
static void vmm_convert(struct ccvm_run *run, bool punch)
{
	uint64_t gpa = run->hypercall.args[0];
	uint64_t size = run->hypercall.args[1] << 12;
	bool to_private = run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED;

	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, gpa, size,
			 to_private ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0), 0);
	if (to_private)
		memset(shared + gpa, 0, size);
	else if (punch)
		ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_PUNCH_HOLE |
						     CCVM_FALLOC_KEEP_SIZE, gpa, size), 0);
	run->hypercall.ret = 0;
}

START_TEST(test_conversion_round_trip)
{
	bool punch = _i == 0;
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };
	struct conv_ctx c;
	struct ccvm_vcpu *v;
	struct ccvm_run *run;
	uint8_t page[4096];

	ck_assert_int_eq(ccvm_vm_caps(vm, &caps), 0);
	c.expect_zero = punch || !caps.preserves_data_without_punch;
	v = vcpu_with_guest(0, guest_convert, &c);
	tu_expect_sync(v, 1);
	host_read_private(CONV_MID >> 12, page, sizeof(page));
	ck_assert(all_bytes(page, sizeof(page), 0xa1));

	run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
	ck_assert_uint_eq(run->hypercall.args[0], CONV_MID);
	vmm_convert(run, punch);
	tu_expect_sync(v, 2);
	ck_assert(all_bytes(shared + CONV_MID, 4096, 0xb2));
	ck_assert(all_bytes(shared + CONV_GPA, 4096, 0));	/* neighbours stay private */
	ck_assert(all_bytes(shared + CONV_GPA + 0x2000, 4096, 0));
	memset(shared + CONV_MID, 0xc3, 4096);

	run = tu_run_once(v, 0, CCVM_EXIT_HYPERCALL);
	ck_assert(run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED);
	vmm_convert(run, punch);
	tu_expect_sync(v, 3);
	ck_assert(all_bytes(shared + CONV_MID, 4096, 0));
	host_read_private(CONV_GPA >> 12, page, sizeof(page));
	ck_assert(all_bytes(page, sizeof(page), 0xa1));
	host_read_private((CONV_GPA >> 12) + 2, page, sizeof(page));
	ck_assert(all_bytes(page, sizeof(page), 0xa1));
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_HYPERCALL_EXIT), 2);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_MEMORY_FAULT_EXIT), 0);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

static void guest_punched(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	guest_page_fill(g, 0x7000, 0x77);
	ccvm_guest_sync(g, 1);
	guest_page_check(g, 0x7000, 0);
	ccvm_guest_sync(g, 2);
}

START_TEST(test_punch_then_refault_reads_zeros)
{
	struct ccvm_vcpu *v = vcpu_with_guest(0, guest_punched, NULL);
	uint64_t zaps, faults;

	tu_expect_sync(v, 1);
	zaps = tu_vm_event(vm, CCVM_EV_ZAP);
	faults = tu_vm_event(vm, CCVM_EV_FAULT);
	ck_assert_int_eq(ccvm_gmem_fallocate(gm, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					     0x7000, 4096), 0);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_ZAP), zaps + 1);
	tu_expect_sync(v, 2);
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_FAULT), faults + 1);
	tu_run_once(v, 0, CCVM_EXIT_DONE);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
}
END_TEST

/* ---- memslot deleted under a running vCPU --------------------------------------- */

#define DEL_GPA		(64ull << 20)
#define DEL_PAGES	16
#define MMIO_MAGIC	0xeeeeeeeeeeeeeeeeull
#define SLOT_BYTE	0x1111111111111111ull

struct del_ctx {
	struct ccvm_vcpu *v;
	struct tu_counter accesses;
	int mmio_reads, run_ret;
	uint32_t exit_reason;
	uint64_t sync_value;
	char abort[300];
};

static void guest_slot_user(struct ccvm_guest *g, void *arg)
{
	struct del_ctx *c = arg;
	uint64_t i, val, seen = 0;

	for (i = 0; seen < 3; i++) {
		uint64_t gpa = DEL_GPA + (i % DEL_PAGES) * 4096 + 8 * (i % 8);

		val = SLOT_BYTE;
		CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, gpa, &val, sizeof(val)));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, gpa, &val, sizeof(val)));
		if (val == MMIO_MAGIC)
			seen++;
		else
			CCVM_GUEST_ASSERT(g, val == SLOT_BYTE);
		counter_add(&c->accesses);
	}
	ccvm_guest_sync(g, seen);
}

static void *del_vmm_thread(void *arg)
{
	struct del_ctx *c = arg;
	struct ccvm_run *run = ccvm_vcpu_run_state(c->v);

	for (;;) {
		c->run_ret = ccvm_vcpu_run(c->v);
		c->exit_reason = run->exit_reason;
		if (c->run_ret || run->exit_reason != CCVM_EXIT_MMIO)
			break;
		if (!run->mmio.is_write) {
			memset(run->mmio.data, 0xee, sizeof(run->mmio.data));
			c->mmio_reads++;
		}
	}
	if (run->exit_reason == CCVM_EXIT_SYNC)
		c->sync_value = run->sync.value;
	if (run->exit_reason == CCVM_EXIT_GUEST_ABORT)
		snprintf(c->abort, sizeof(c->abort), "%s:%d: %s", run->abort.file,
			 run->abort.line, run->abort.msg);
	return NULL;
}

START_TEST(test_memslot_delete_under_running_vcpu)
{
	uint8_t *buf = aligned_alloc(4096, DEL_PAGES * 4096);
	struct ccvm_memory_region del = { .slot = 1, .guest_phys_addr = DEL_GPA };
	struct del_ctx c = { .accesses = TU_COUNTER_INIT };
	pthread_t t;

	ck_assert_ptr_nonnull(buf);
	memset(buf, 0x11, DEL_PAGES * 4096);
	add_slot(1, DEL_GPA, DEL_PAGES * 4096, buf, NULL);
	c.v = vcpu_with_guest(0, guest_slot_user, &c);
	ck_assert_int_eq(pthread_create(&t, NULL, del_vmm_thread, &c), 0);
	wait_for(&c.accesses, 50);
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(vm, &del), 0);
	/* Any later guest access to the old backing is a use after free. */
	free(buf);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_msg(!c.abort[0], "guest: %s", c.abort);
	ck_assert_int_eq(c.run_ret, 0);
	ck_assert_uint_eq(c.exit_reason, CCVM_EXIT_SYNC);
	ck_assert_uint_eq(c.sync_value, 3);
	ck_assert_int_eq(c.mmio_reads, 3);
	ck_assert_int_eq(ccvm_vcpu_close(c.v), 0);
}
END_TEST

/* ---- vCPUs faulting while a converter converts and punches -------------------- */

#define STABLE_GPA	0x100000ull	/* 4 private pages per vCPU, never converted */
#define CHURN_GPA	0x200000ull	/* 8 pages per vCPU, flipped all the time */
#define CHURN_PAGES	16
#define STRESS_ITERS	150
#define MIN_ROUNDS	20

struct stress_ctx {
	struct ccvm_vcpu *v;
	_Atomic int *rounds;
	int run_ret;
	uint32_t exit_reason;
	int syncs;
	int racing_faults;
	char abort[300];
};

static void guest_stress(struct ccvm_guest *g, void *arg)
{
	struct stress_ctx *c = arg;
	uint32_t id = ccvm_guest_vcpu_id(g);
	uint64_t stable = STABLE_GPA + id * 4 * 4096ull;
	uint64_t churn = CHURN_GPA + id * 8 * 4096ull;
	uint8_t buf[64], rd[64];
	uint64_t x;
	int it, i;

	for (it = 0; it < STRESS_ITERS || atomic_load(c->rounds) < MIN_ROUNDS; it++) {
		uint64_t off = (uint64_t)(it * 64) % 4096;

		memset(buf, (int)(it * 2 + id), sizeof(buf));
		for (i = 0; i < 4; i++) {
			CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, stable + i * 4096ull + off,
							       buf, sizeof(buf)));
			CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, stable + i * 4096ull + off,
							      rd, sizeof(rd)));
			CCVM_GUEST_ASSERT(g, !memcmp(buf, rd, sizeof(buf)));
		}
		/* Either kind, any contents: only that it never breaks. */
		for (i = 0; i < 8; i++) {
			x = (uint64_t)it;
			CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, churn + i * 4096ull + off,
							       &x, sizeof(x)));
			CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, churn + i * 4096ull + off,
							      &x, sizeof(x)));
		}
		if (it % 50 == 0)
			ccvm_guest_sync(g, (uint64_t)it);
	}
}

static void *stress_vmm_thread(void *arg)
{
	struct stress_ctx *c = arg;
	struct ccvm_run *run = ccvm_vcpu_run_state(c->v);

	for (;;) {
		c->run_ret = ccvm_vcpu_run(c->v);
		c->exit_reason = run->exit_reason;
		/*
		 * As in KVM for SW_PROTECTED VMs, the fault's private bit is the
		 * attribute read before the fault's snapshot, so a conversion
		 * racing with it can end in a memory-fault exit.  The converter
		 * owns the attributes: run again, as the access will be.
		 */
		if (c->run_ret == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT &&
		    run->memory_fault.gpa >= CHURN_GPA &&
		    run->memory_fault.gpa < CHURN_GPA + CHURN_PAGES * 4096ull) {
			c->racing_faults++;
			continue;
		}
		if (c->run_ret || run->exit_reason != CCVM_EXIT_SYNC)
			break;
		c->syncs++;
	}
	if (run->exit_reason == CCVM_EXIT_GUEST_ABORT)
		snprintf(c->abort, sizeof(c->abort), "%s:%d: %s", run->abort.file,
			 run->abort.line, run->abort.msg);
	return NULL;
}

/* Not inlined, so that ThreadSanitizer checks it (see lib/guest.c). */
static void *(*volatile const scrub)(void *, int, size_t) = memset;

struct converter {
	_Atomic int rounds;
	_Atomic int stop;
	int err;
};

static void *converter_thread(void *arg)
{
	struct converter *cv = arg;
	const uint64_t size = CHURN_PAGES * 4096ull;

	while (!atomic_load(&cv->stop) && !cv->err) {
		cv->err = ccvm_vm_set_memory_attributes(vm, CHURN_GPA, size, 0, 0);
		if (!cv->err)
			cv->err = ccvm_gmem_fallocate(gm, CCVM_FALLOC_PUNCH_HOLE |
						      CCVM_FALLOC_KEEP_SIZE, CHURN_GPA, size);
		if (!cv->err)
			cv->err = ccvm_vm_set_memory_attributes(vm, CHURN_GPA, size,
								CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
		/* Shared mappings are gone: the VMM may scrub its side. */
		scrub(shared + CHURN_GPA, 0, size);
		atomic_fetch_add(&cv->rounds, 1);
	}
	return NULL;
}

START_TEST(test_fault_while_converting)
{
	struct converter cv = { 0 };
	struct stress_ctx c[2];
	pthread_t conv, t[2];
	int i;

	memset(c, 0, sizeof(c));
	ck_assert_int_eq(pthread_create(&conv, NULL, converter_thread, &cv), 0);
	for (i = 0; i < 2; i++) {
		c[i].rounds = &cv.rounds;
		c[i].v = vcpu_with_guest((uint32_t)i, guest_stress, &c[i]);
		ck_assert_int_eq(pthread_create(&t[i], NULL, stress_vmm_thread, &c[i]), 0);
	}
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	atomic_store(&cv.stop, 1);
	ck_assert_int_eq(pthread_join(conv, NULL), 0);
	ck_assert_int_eq(cv.err, 0);
	ck_assert_int_ge(atomic_load(&cv.rounds), MIN_ROUNDS);
	for (i = 0; i < 2; i++) {
		ck_assert_msg(!c[i].abort[0], "vcpu %d: %s", i, c[i].abort);
		ck_assert_int_eq(c[i].run_ret, 0);
		ck_assert_uint_eq(c[i].exit_reason, CCVM_EXIT_DONE);
		ck_assert_int_ge(c[i].syncs, STRESS_ITERS / 50);
		ck_assert_int_eq(ccvm_vcpu_close(c[i].v), 0);
	}
	/*
	 * Whether a zap hit a mapping mid-run depends on scheduling, so it is
	 * not asserted; what must hold whatever the interleaving is above.
	 */
	ck_assert_uint_eq(tu_vm_event(vm, CCVM_EV_MEMORY_FAULT_EXIT),
			  (uint64_t)(c[0].racing_faults + c[1].racing_faults));
}
END_TEST

/*
 * Two vCPUs write one page at once (issue 16 #3): guests may, and a user
 * running ThreadSanitizer must not see a report from the library for it
 * (the guest suite runs under TSan in `make ci`).  Each guest writes its
 * own value many times and reads the word back: whatever it reads is one
 * of the two values, never a mix, as with 8-byte aligned stores on x86.
 */
#define SAME_GPA	(STABLE_GPA + 2 * 4 * 4096ull)	/* past both vCPUs' stable pages */
#define SAME_ITERS	2000

static void guest_same_page(struct ccvm_guest *g, void *arg)
{
	uint32_t id = ccvm_guest_vcpu_id(g);
	uint64_t mine = 0x0101010101010101ull * (id + 1), seen;
	uint8_t block[256];
	int it;

	(void)arg;
	memset(block, (int)(id + 1), sizeof(block));
	for (it = 0; it < SAME_ITERS; it++) {
		CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, SAME_GPA + 64, &mine, sizeof(mine)));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, SAME_GPA + 64, &seen, sizeof(seen)));
		CCVM_GUEST_ASSERT(g, seen == 0x0101010101010101ull ||
				     seen == 0x0202020202020202ull);
		/* Unaligned and byte-sized pieces too. */
		CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, SAME_GPA + 1024 + 3, block,
						       sizeof(block)));
		CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, SAME_GPA + 1024 + 3, block,
						      sizeof(block)));
	}
}

static void *same_page_vmm(void *arg)
{
	struct stress_ctx *c = arg;

	c->run_ret = ccvm_vcpu_run(c->v);
	c->exit_reason = ccvm_vcpu_run_state(c->v)->exit_reason;
	if (c->exit_reason == CCVM_EXIT_GUEST_ABORT)
		snprintf(c->abort, sizeof(c->abort), "%s:%d: %s",
			 ccvm_vcpu_run_state(c->v)->abort.file,
			 ccvm_vcpu_run_state(c->v)->abort.line,
			 ccvm_vcpu_run_state(c->v)->abort.msg);
	return NULL;
}

START_TEST(test_two_vcpus_write_one_page)
{
	struct stress_ctx c[2];
	pthread_t t[2];
	int i;

	memset(c, 0, sizeof(c));
	for (i = 0; i < 2; i++) {
		c[i].v = vcpu_with_guest((uint32_t)i, guest_same_page, NULL);
		ck_assert_int_eq(pthread_create(&t[i], NULL, same_page_vmm, &c[i]), 0);
	}
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_msg(!c[i].abort[0], "vcpu %d: %s", i, c[i].abort);
		ck_assert_int_eq(c[i].run_ret, 0);
		ck_assert_uint_eq(c[i].exit_reason, CCVM_EXIT_DONE);
		ck_assert_int_eq(ccvm_vcpu_close(c[i].v), 0);
	}
}
END_TEST

Suite *guest_suite(void)
{
	Suite *s = suite_create("guest");
	TCase *tc;

	tc = tcase_create("mock");
	tcase_add_checked_fixture(tc, setup_mock, teardown);
	tcase_add_test(tc, test_rw_round_trip);
	tcase_add_test(tc, test_shared_access_uses_vmm_buffer);
	tcase_add_test(tc, test_memory_fault_exits);
	tcase_add_test(tc, test_mmio_read_write);
	tcase_add_test(tc, test_close_blocked_in_mmio);
	tcase_add_test(tc, test_hypercall_args);
	tcase_add_loop_test(tc, test_conversion_round_trip, 0, 2);
	tcase_add_test(tc, test_punch_then_refault_reads_zeros);
	suite_add_tcase(s, tc);

	tc = tcase_create("shared-bit");
	tcase_add_checked_fixture(tc, setup_tb, teardown);
	tcase_add_test(tc, test_memory_fault_shared_bit);
	tcase_add_test(tc, test_hypercall_chunks);
	tcase_add_test(tc, test_exception_and_accept);
	tcase_add_test(tc, test_guest_access_needs_fault);
	tcase_add_test(tc, test_busy_entry_is_retried);
	tcase_add_test(tc, test_flush_waits_for_access_in_flight);
	tcase_add_loop_test(tc, test_conversion_round_trip, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_checked_fixture(tc, setup_mock, teardown);
	tcase_add_test(tc, test_memslot_delete_under_running_vcpu);
	tcase_add_test(tc, test_fault_while_converting);
	tcase_add_test(tc, test_two_vcpus_write_one_page);
	tcase_add_test(tc, test_access_while_mmu_lock_held_for_write);
	suite_add_tcase(s, tc);
	return s;
}
