/* SPDX-License-Identifier: MIT */
/*
 * Stress: vCPUs faulting and writing while the host converts, punches and
 * churns memslots, on every backend that has private memory.
 *
 * Memory (slot 0, gmem-backed with the VMM's buffer as shared backing):
 *   owned    NR_VCPUS x OWN_PAGES private pages, each vCPU's own.  Its guest
 *            stamps every page and checks the stamps, and cycles one page a
 *            round through shared and back (MAP_GPA_RANGE; the VMM converts
 *            and punches), checking the shared copy and that the page reads
 *            zeros once private again.  Nobody else touches these pages.
 *   common   COMMON_PAGES that a converter thread flips between private and
 *            shared and a puncher thread punches and re-allocates.  Guests
 *            read and write them both ways: through the shared alias (a
 *            private page is a memory-fault exit; the VMM converts it, as an
 *            implicit conversion), and as private memory (a #VE/#VC on an
 *            unaccepted page makes the guest accept and retry; a shared page
 *            is a memory-fault exit).  Each vCPU uses its own 64 bytes of
 *            every page, so guests never race on the same bytes.
 *   churn    slot 1, a second gmem slot with a fixed pattern in its shared
 *            backing, created and deleted over and over by a churner thread
 *            (forcing a memslot generation wrap, a fast zap, now and then).
 *            Guests read it: the pattern when the slot exists, else an MMIO
 *            exit that reads zeros.  Anything else is a failure.
 *
 * Operations counted: guest page accesses (one read or write within a
 * page), conversions (converter and VMM), punches and allocations, and slot
 * updates.  The host threads pace themselves against the guests so that
 * guest accesses stay the bulk.  Every OPS/10 operations every thread is
 * stopped at a quiescent point (vCPUs between runs, host threads between
 * calls) and the state is checked: owned pages private, nothing leaked,
 * the invariant checker.  The run stops at CCVM_STRESS_OPS operations
 * (default 1,000,000; the Makefile lowers it for ThreadSanitizer) or at
 * the first failure.  No clock is involved: the test thread sleeps on a
 * condition that the vCPU threads signal after each guest round (and every
 * thread on failure or exit), so a loaded machine or a sanitizer only makes
 * it slower, and Check's timeout catches a hang.  How fast it goes is for
 * `make bench`.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <check.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "testutil.h"

#define PAGE		CCVM_PAGE_SIZE
#define NR_VCPUS	4
#define OWN_PAGES	16
#define COMMON_PAGES	64
#define CHURN_PAGES	16
#define OWN_BASE	0ull
#define COMMON_BASE	(NR_VCPUS * OWN_PAGES * PAGE)
#define SLOT0_PAGES	(NR_VCPUS * OWN_PAGES + COMMON_PAGES)
#define CHURN_BASE	(1ull << 20)			/* slot 1's GPA */
#define CHURN_GMEM_OFF	(SLOT0_PAGES * PAGE)		/* slot 1's file offset */
#define GMEM_PAGES	(SLOT0_PAGES + CHURN_PAGES)
#define SHARED_PAGES	GMEM_PAGES			/* VMM memory, same layout */
#define CHURN_BYTE	0xc5
#define SLICE		64		/* each vCPU's bytes of a common page */
#define STAMP_MAGIC	0x5354524553530000ull	/* "STRESS\0\0" */

#define DEFAULT_OPS	1000000ull
#define CHECKS		10		/* quiescent checks per run */

/* Host threads may do one operation per this many guest accesses. */
#define CONVERT_RATIO	12
#define PUNCH_RATIO	24
#define CHURN_RATIO	48
#define HOST_SLACK	64		/* operations allowed before any guest one */

#define SYNC_ROUND	1		/* a guest finished a round */

struct stress;

/* One vCPU: its VMM thread and what it shares with its guest. */
struct vcpu_ctx {
	struct stress *s;
	uint32_t id;
	struct ccvm_vcpu *v;
	pthread_t thread;
	bool started;
	/* written by the guest, read by the VMM after the sync (handoff) */
	uint64_t round_ops;
	/* written by the VMM before a run, read by the guest after it */
	bool stop;
	/* fixed before the first run */
	uint64_t sbit;
	bool needs_accept;
	bool mock_like;			/* no shared bit: the attribute decides */
};

struct stress {
	const char *backend;
	struct ccvm_backend_caps caps;
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	uint8_t *shared;
	struct vcpu_ctx vc[NR_VCPUS];
	pthread_t host[3];
	unsigned int nr_host;

	uint64_t target;
	uint64_t free_at_start;		/* platform free pages before the VM */
	_Atomic uint64_t guest_ops, convert_ops, punch_ops, slot_ops;
	_Atomic uint64_t mmio_exits, memfault_exits, exceptions;
	_Atomic bool stop;

	/* quiescent points */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	_Atomic bool pause_req;
	bool pause;			/* qlock */
	unsigned int parked, running;	/* qlock */

	_Atomic bool failed;
	pthread_mutex_t flock;
	char failure[512];

	/* progress: the test thread waits here for the next milestone */
	pthread_mutex_t plock;
	pthread_cond_t pcond;
	_Atomic unsigned int vcpus_left;	/* vCPU threads not ended yet */
};

static bool workers_left(struct stress *s)
{
	return atomic_load(&s->vcpus_left) != 0;
}

/*
 * Wake whoever waits for progress: the test thread (operations were
 * counted, or a thread failed or ended) and host threads waiting for the
 * guests to catch up (pace()).
 */
static void progress(struct stress *s)
{
	pthread_mutex_lock(&s->plock);
	pthread_cond_broadcast(&s->pcond);
	pthread_mutex_unlock(&s->plock);
}

static uint64_t total_ops(struct stress *s)
{
	return atomic_load(&s->guest_ops) + atomic_load(&s->convert_ops) +
	       atomic_load(&s->punch_ops) + atomic_load(&s->slot_ops);
}

/* Threads other than the test's own cannot ck_assert: they record and stop. */
static void stress_fail(struct stress *s, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->flock);
	if (!atomic_load(&s->failed)) {
		va_start(ap, fmt);
		vsnprintf(s->failure, sizeof(s->failure), fmt, ap);
		va_end(ap);
		atomic_store(&s->failed, true);
	}
	pthread_mutex_unlock(&s->flock);
	atomic_store(&s->stop, true);
	progress(s);
}

/* ---- quiescent points ------------------------------------------------------ */

static void checkpoint(struct stress *s)
{
	if (!atomic_load_explicit(&s->pause_req, memory_order_acquire))
		return;
	pthread_mutex_lock(&s->qlock);
	s->parked++;
	pthread_cond_broadcast(&s->qcond);
	while (s->pause)
		pthread_cond_wait(&s->qcond, &s->qlock);
	s->parked--;
	pthread_mutex_unlock(&s->qlock);
}

static void worker_done(struct stress *s)
{
	pthread_mutex_lock(&s->qlock);
	s->running--;
	pthread_cond_broadcast(&s->qcond);
	pthread_mutex_unlock(&s->qlock);
}

static void pause_all(struct stress *s)
{
	pthread_mutex_lock(&s->qlock);
	s->pause = true;
	atomic_store_explicit(&s->pause_req, true, memory_order_release);
	pthread_mutex_unlock(&s->qlock);
	progress(s);		/* a pacing host thread must come and park */
	pthread_mutex_lock(&s->qlock);
	while (s->parked < s->running)
		pthread_cond_wait(&s->qcond, &s->qlock);
	pthread_mutex_unlock(&s->qlock);
}

static void resume_all(struct stress *s)
{
	pthread_mutex_lock(&s->qlock);
	s->pause = false;
	atomic_store_explicit(&s->pause_req, false, memory_order_release);
	pthread_cond_broadcast(&s->qcond);
	pthread_mutex_unlock(&s->qlock);
}

/* ---- the guest ---------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

struct stamp {
	uint64_t magic, where;
};

#define GUEST_OK(g, expr) CCVM_GUEST_ASSERT(g, (expr) == 0)

static void stamp_of(struct stamp *st, uint32_t id, uint64_t gpa, uint64_t round)
{
	st->magic = STAMP_MAGIC | id;
	st->where = gpa ^ (round << 32);
}

/* A private access to a common page: accept and retry on #VE/#VC. */
static void common_private(struct ccvm_guest *g, struct vcpu_ctx *c, uint64_t gpa, bool write,
			   uint64_t *ops)
{
	uint64_t val = STAMP_MAGIC | c->id;
	int tries, r = 0;

	for (tries = 0; tries < 4; tries++) {
		r = write ? ccvm_guest_write(g, gpa, &val, sizeof(val))
			  : ccvm_guest_read(g, gpa, &val, sizeof(val));
		if (r != -EACCES)
			break;
		/* Converted under us: accept what is there now (errors are fine). */
		ccvm_guest_accept(g, gpa & ~(PAGE - 1), PAGE);
	}
	CCVM_GUEST_ASSERT(g, r == 0 || r == -EACCES);
	if (!r)
		(*ops)++;
}

static void stress_guest(struct ccvm_guest *g, void *arg)
{
	struct vcpu_ctx *c = arg;
	const uint64_t own = OWN_BASE + c->id * OWN_PAGES * PAGE;
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (c->id + 1);
	uint64_t round, p, ops;
	struct stamp st, want;

	if (c->needs_accept)
		GUEST_OK(g, ccvm_guest_accept(g, own, OWN_PAGES * PAGE));
	for (round = 0;; round++) {
		uint64_t off = (round * sizeof(st)) % PAGE;
		uint64_t cycled = own + (round % OWN_PAGES) * PAGE;
		uint8_t churn[8];
		unsigned int k;

		ops = 0;
		/* Private data this vCPU owns. */
		for (p = 0; p < OWN_PAGES; p++) {
			stamp_of(&st, c->id, own + p * PAGE, round);
			GUEST_OK(g, ccvm_guest_write(g, own + p * PAGE + off, &st, sizeof(st)));
			ops++;
		}
		for (p = 0; p < OWN_PAGES; p++) {
			stamp_of(&want, c->id, own + p * PAGE, round);
			GUEST_OK(g, ccvm_guest_read(g, own + p * PAGE + off, &st, sizeof(st)));
			CCVM_GUEST_ASSERT(g, !memcmp(&st, &want, sizeof(st)));
			ops++;
		}

		/* One owned page through shared (punched) and back. */
		GUEST_OK(g, ccvm_guest_map_gpa(g, cycled, PAGE, false));
		stamp_of(&want, c->id, cycled | c->sbit, round);
		GUEST_OK(g, ccvm_guest_write(g, (cycled + off) | c->sbit, &want, sizeof(want)));
		GUEST_OK(g, ccvm_guest_read(g, (cycled + off) | c->sbit, &st, sizeof(st)));
		CCVM_GUEST_ASSERT(g, !memcmp(&st, &want, sizeof(st)));
		GUEST_OK(g, ccvm_guest_map_gpa(g, cycled, PAGE, true));
		if (c->needs_accept)
			GUEST_OK(g, ccvm_guest_accept(g, cycled, PAGE));
		memset(&want, 0, sizeof(want));
		GUEST_OK(g, ccvm_guest_read(g, cycled + off, &st, sizeof(st)));
		CCVM_GUEST_ASSERT(g, !memcmp(&st, &want, sizeof(st)));
		ops += 3;

		/* Common pages, both kinds, in this vCPU's slice. */
		for (k = 0; k < 8; k++) {
			uint64_t r = rng_next(&rnd);
			uint64_t gpa = COMMON_BASE + (r % COMMON_PAGES) * PAGE + c->id * SLICE +
				       ((r >> 32) % (SLICE / 8)) * 8;
			bool write = r & (1ull << 20);
			uint64_t val = r;

			if (c->mock_like || (r & (1ull << 21))) {
				common_private(g, c, gpa, write, &ops);
				continue;
			}
			gpa |= c->sbit;
			if (write)
				GUEST_OK(g, ccvm_guest_write(g, gpa, &val, sizeof(val)));
			else
				GUEST_OK(g, ccvm_guest_read(g, gpa, &val, sizeof(val)));
			ops++;
		}

		/* The churned slot: its pattern, or zeros from an MMIO exit. */
		GUEST_OK(g, ccvm_guest_read(g, (CHURN_BASE + (round % CHURN_PAGES) * PAGE +
						c->id * SLICE) | c->sbit, churn, sizeof(churn)));
		for (k = 1; k < sizeof(churn); k++)
			CCVM_GUEST_ASSERT(g, churn[k] == churn[0]);
		CCVM_GUEST_ASSERT(g, churn[0] == CHURN_BYTE || churn[0] == 0);
		ops++;

		c->round_ops = ops;
		ccvm_guest_sync(g, SYNC_ROUND);
		if (c->stop)
			return;
	}
}

/* ---- the VMM side of each vCPU -------------------------------------------------- */

static bool in_own(uint64_t gpa)
{
	return gpa < COMMON_BASE;
}

static bool in_common(uint64_t gpa, uint64_t size)
{
	return gpa >= COMMON_BASE && size <= COMMON_BASE + COMMON_PAGES * PAGE - gpa;
}

static int convert(struct stress *s, uint64_t gpa, uint64_t size, bool to_private, bool punch)
{
	int err = ccvm_vm_set_memory_attributes(s->vm, gpa, size,
						to_private ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);

	if (err)
		return err;
	atomic_fetch_add(&s->convert_ops, 1);
	if (!to_private && punch) {
		err = ccvm_gmem_fallocate(s->g, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					  gpa, size);
		if (!err)
			atomic_fetch_add(&s->punch_ops, 1);
	}
	return err;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu_ctx *c = arg;
	struct stress *s = c->s;
	struct ccvm_run *run = ccvm_vcpu_run_state(c->v);
	uint64_t gpa, size;
	int err;

	for (;;) {
		err = ccvm_vcpu_run(c->v);
		if (err == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT) {
			gpa = run->memory_fault.gpa;
			size = run->memory_fault.size;
			atomic_fetch_add(&s->memfault_exits, 1);
			if (!in_common(gpa, size)) {
				stress_fail(s, "vcpu %u: memory fault at %#" PRIx64
					    " outside the common pages", c->id, gpa);
				break;
			}
			/* An implicit conversion: the guest's access says which way. */
			err = convert(s, gpa, size,
				      run->memory_fault.flags & CCVM_MEMORY_EXIT_FLAG_PRIVATE,
				      false);
			if (err) {
				stress_fail(s, "vcpu %u: implicit conversion: %d", c->id, err);
				break;
			}
			continue;
		}
		if (err) {
			stress_fail(s, "vcpu %u: run: %d, exit %u (internal error %d)", c->id, err,
			     run->exit_reason, run->exit_reason == CCVM_EXIT_INTERNAL_ERROR ?
			     run->internal.error : 0);
			break;
		}
		switch (run->exit_reason) {
		case CCVM_EXIT_HYPERCALL:
			gpa = run->hypercall.args[0];
			size = run->hypercall.args[1] * PAGE;
			if (run->hypercall.nr != CCVM_HC_MAP_GPA_RANGE || !in_own(gpa)) {
				stress_fail(s, "vcpu %u: unexpected hypercall at %#" PRIx64,
					    c->id, gpa);
				goto out;
			}
			err = convert(s, gpa, size,
				      run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED, true);
			if (err) {
				stress_fail(s, "vcpu %u: MAP_GPA_RANGE: %d", c->id, err);
				goto out;
			}
			run->hypercall.ret = 0;
			break;
		case CCVM_EXIT_SYNC:
			atomic_fetch_add(&s->guest_ops, c->round_ops);
			progress(s);
			checkpoint(s);
			c->stop = atomic_load(&s->stop);
			break;
		case CCVM_EXIT_MMIO:
			/* Slot 1 is gone right now: no device, reads see zeros. */
			if (run->mmio.phys_addr < CHURN_BASE ||
			    run->mmio.phys_addr >= CHURN_BASE + CHURN_PAGES * PAGE) {
				stress_fail(s, "vcpu %u: MMIO at %#" PRIx64, c->id,
				     (uint64_t)run->mmio.phys_addr);
				goto out;
			}
			memset(run->mmio.data, 0, sizeof(run->mmio.data));
			atomic_fetch_add(&s->mmio_exits, 1);
			break;
		case CCVM_EXIT_EXCEPTION:
			/* #VE/#VC on a common page converted under the guest. */
			if (in_own(run->exception.gpa & ~c->sbit)) {
				stress_fail(s, "vcpu %u: exception on owned page %#" PRIx64, c->id,
				     (uint64_t)run->exception.gpa);
				goto out;
			}
			atomic_fetch_add(&s->exceptions, 1);
			break;
		case CCVM_EXIT_DONE:
			goto out;
		case CCVM_EXIT_GUEST_ABORT:
			stress_fail(s, "vcpu %u: guest assertion %s:%d: %s", c->id, run->abort.file,
			     run->abort.line, run->abort.msg);
			goto out;
		default:
			stress_fail(s, "vcpu %u: unexpected exit %u", c->id, run->exit_reason);
			goto out;
		}
	}
out:
	worker_done(s);
	atomic_fetch_sub(&s->vcpus_left, 1);
	progress(s);
	return NULL;
}

/* ---- host threads ------------------------------------------------------------- */

/* Keep host operations a fraction of the guests' so both stay busy. */
static bool ahead(struct stress *s, _Atomic uint64_t *mine, unsigned int ratio)
{
	return atomic_load(mine) * ratio > atomic_load(&s->guest_ops) + HOST_SLACK * ratio;
}

/*
 * A host thread ahead of the guests waits for their next round (or a stop,
 * or a pause request, which must find it parked), instead of sleeping.
 */
static void pace(struct stress *s)
{
	uint64_t g;

	pthread_mutex_lock(&s->plock);
	g = atomic_load(&s->guest_ops);
	while (!atomic_load(&s->stop) && !atomic_load(&s->pause_req) &&
	       atomic_load(&s->guest_ops) == g && workers_left(s))
		pthread_cond_wait(&s->pcond, &s->plock);
	pthread_mutex_unlock(&s->plock);
}

static void *converter_thread(void *arg)
{
	struct stress *s = arg;
	uint64_t rnd = 0x2545f4914f6cdd1dull;

	while (!atomic_load(&s->stop)) {
		uint64_t r, page, n;
		int err;

		checkpoint(s);
		if (ahead(s, &s->convert_ops, CONVERT_RATIO)) {
			pace(s);
			continue;
		}
		r = rng_next(&rnd);
		page = r % COMMON_PAGES;
		n = 1 + (r >> 8) % 4;
		if (page + n > COMMON_PAGES)
			n = COMMON_PAGES - page;
		err = convert(s, COMMON_BASE + page * PAGE, n * PAGE, r & (1ull << 16), false);
		if (err) {
			stress_fail(s, "converter: %d", err);
			break;
		}
	}
	worker_done(s);
	return NULL;
}

static void *puncher_thread(void *arg)
{
	struct stress *s = arg;
	uint64_t rnd = 0x853c49e6748fea9bull;

	while (!atomic_load(&s->stop)) {
		uint64_t r, page, n;
		int mode, err;

		checkpoint(s);
		if (ahead(s, &s->punch_ops, PUNCH_RATIO)) {
			pace(s);
			continue;
		}
		r = rng_next(&rnd);
		page = r % COMMON_PAGES;
		n = 1 + (r >> 8) % 8;
		if (page + n > COMMON_PAGES)
			n = COMMON_PAGES - page;
		/* Mostly punch; sometimes allocate ahead of the faults. */
		mode = CCVM_FALLOC_KEEP_SIZE | ((r & (3ull << 16)) ? CCVM_FALLOC_PUNCH_HOLE : 0);
		err = ccvm_gmem_fallocate(s->g, mode, COMMON_BASE + page * PAGE, n * PAGE);
		if (err) {
			stress_fail(s, "puncher: fallocate(%#x): %d", mode, err);
			break;
		}
		atomic_fetch_add(&s->punch_ops, 1);
	}
	worker_done(s);
	return NULL;
}

static int churn_slot(struct stress *s, bool create)
{
	struct ccvm_memory_region r = {
		.slot = 1,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = CHURN_BASE,
		.memory_size = create ? CHURN_PAGES * PAGE : 0,
		.userspace_addr = s->shared + CHURN_GMEM_OFF,
		.gmem = s->g,
		.gmem_offset = CHURN_GMEM_OFF,
	};

	return ccvm_vm_set_user_memory_region(s->vm, &r);
}

static void *churner_thread(void *arg)
{
	struct stress *s = arg;
	bool present = false;
	uint64_t n = 0;

	while (!atomic_load(&s->stop)) {
		int err;

		checkpoint(s);
		if (ahead(s, &s->slot_ops, CHURN_RATIO)) {
			pace(s);
			continue;
		}
		/* Now and then the generation wraps: a fast zap of direct roots. */
		if (++n % 256 == 0)
			ccvm_vm_force_generation_wrap(s->vm);
		err = churn_slot(s, !present);
		if (err) {
			stress_fail(s, "churner: %s slot 1: %d",
				    present ? "delete" : "create", err);
			break;
		}
		present = !present;
		atomic_fetch_add(&s->slot_ops, 1);
	}
	worker_done(s);
	return NULL;
}

/* ---- checks at quiescent points ------------------------------------------------- */

static void check_invariants(struct stress *s, const char *when)
{
	struct ccvm_invariant_report rep = { .sz = sizeof(rep) };

	ck_assert_int_eq(ccvm_vm_check_invariants(s->vm, &rep), 0);
	ck_assert_msg(rep.invariant == 0, "%s on %s: invariant I%u broken at gfn %#" PRIx64
		      ": %s", when, s->backend, rep.invariant, rep.gfn, rep.msg);
	memset(&rep, 0, sizeof(rep));
	rep.sz = sizeof(rep);
	ck_assert_int_eq(ccvm_platform_check_invariants(s->p, &rep), 0);
	ck_assert_msg(rep.invariant == 0, "%s on %s: platform invariant I%u broken: %s", when,
		      s->backend, rep.invariant, rep.msg);
}

static void check_quiescent(struct stress *s, const char *when)
{
	struct ccvm_stats st = { .sz = sizeof(st) };
	uint64_t attr = 0, run = 0;

	/* Guests park only between rounds, when every owned page is private. */
	ck_assert_int_eq(ccvm_vm_get_memory_attributes(s->vm, OWN_BASE, &attr, &run), 0);
	ck_assert_msg(attr == CCVM_MEMORY_ATTRIBUTE_PRIVATE && run >= COMMON_BASE - OWN_BASE,
		      "%s on %s: owned pages not all private (attr %#" PRIx64 " for %#"
		      PRIx64 " bytes)", when, s->backend, attr, run);
	ck_assert_int_eq(ccvm_platform_get_stats(s->p, &st), 0);
	ck_assert_msg(st.leaked_pages == 0, "%s on %s: %" PRIu64 " pages leaked", when,
		      s->backend, st.leaked_pages);
	ck_assert_msg(st.free_pages <= st.total_pages, "%s on %s: free pages %" PRIu64
		      " > total %" PRIu64, when, s->backend, st.free_pages, st.total_pages);
	ck_assert_msg(!ccvm_vm_is_bugged(s->vm), "%s on %s: VM bugged", when, s->backend);
	check_invariants(s, when);
}

/* ---- the test ---------------------------------------------------------------------- */

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	char *end;
	uint64_t x;

	if (!v || !*v)
		return def;
	x = strtoull(v, &end, 0);
	return *end || !x ? def : x;
}

static void setup_vm(struct stress *s)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = s->backend,
						      .mem_bytes = 256 * TU_MiB,
						      .nr_cpus = 4, .seed = 7);
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = NR_VCPUS);
	uint32_t i;

	ck_assert_int_eq(ccvm_platform_create(&po, &s->p), 0);
	s->free_at_start = tu_free_pages(s->p);
	ck_assert_int_eq(ccvm_vm_create(s->p, &vo, &s->vm), 0);
	ck_assert_int_eq(ccvm_gmem_create(s->vm, GMEM_PAGES * PAGE, 0, &s->g), 0);
	s->shared = mmap(NULL, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(s->shared != MAP_FAILED);
	memset(s->shared + CHURN_GMEM_OFF, CHURN_BYTE, CHURN_PAGES * PAGE);
	ck_assert_int_eq(tu_region(s->vm, 0, CCVM_MEM_GUEST_MEMFD, 0, SLOT0_PAGES * PAGE,
				   s->shared, s->g, 0), 0);
	tu_set_attr(s->vm, OWN_BASE, COMMON_BASE - OWN_BASE, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	for (i = 0; i < NR_VCPUS; i++) {
		struct vcpu_ctx *c = &s->vc[i];

		c->s = s;
		c->id = i;
		c->sbit = ccvm_vm_shared_bit(s->vm);
		c->needs_accept = s->caps.requires_accept;
		c->mock_like = !s->caps.has_shared_bit;
		ck_assert_int_eq(ccvm_vcpu_create(s->vm, i, &c->v), 0);
		ck_assert_int_eq(ccvm_vcpu_set_guest(c->v, stress_guest, c), 0);
	}
	if (s->caps.needs_finalize)
		ck_assert_int_eq(ccvm_vm_finalize(s->vm), 0);
}

START_TEST(test_stress)
{
	const char *backend = ccvm_backend_names()[_i];
	uint64_t next_check;
	struct stress *s;
	unsigned int i, checks = 0;

	s = calloc(1, sizeof(*s));
	ck_assert_ptr_nonnull(s);
	s->backend = backend;
	s->caps.sz = sizeof(s->caps);
	ck_assert_int_eq(ccvm_backend_caps(backend, &s->caps), 0);
	if (!(s->caps.memory_attributes & CCVM_MEMORY_ATTRIBUTE_PRIVATE)) {
		free(s);
		return;		/* no private memory: nothing to stress */
	}
	s->target = env_u64("CCVM_STRESS_OPS", DEFAULT_OPS);
	pthread_mutex_init(&s->qlock, NULL);
	pthread_cond_init(&s->qcond, NULL);
	pthread_mutex_init(&s->flock, NULL);
	pthread_mutex_init(&s->plock, NULL);
	pthread_cond_init(&s->pcond, NULL);

	setup_vm(s);

	s->running = NR_VCPUS + 3;
	atomic_store(&s->vcpus_left, NR_VCPUS);
	for (i = 0; i < NR_VCPUS; i++) {
		ck_assert_int_eq(pthread_create(&s->vc[i].thread, NULL, vcpu_thread, &s->vc[i]), 0);
		s->vc[i].started = true;
	}
	ck_assert_int_eq(pthread_create(&s->host[0], NULL, converter_thread, s), 0);
	ck_assert_int_eq(pthread_create(&s->host[1], NULL, puncher_thread, s), 0);
	ck_assert_int_eq(pthread_create(&s->host[2], NULL, churner_thread, s), 0);
	s->nr_host = 3;

	next_check = s->target / CHECKS;
	for (;;) {
		uint64_t total;

		/* Sleep until a vCPU thread counts a round, or a thread fails or ends. */
		pthread_mutex_lock(&s->plock);
		while (!atomic_load(&s->stop) && (total = total_ops(s)) < next_check &&
		       total < s->target && workers_left(s))
			pthread_cond_wait(&s->pcond, &s->plock);
		pthread_mutex_unlock(&s->plock);
		total = total_ops(s);
		if (atomic_load(&s->stop) || total >= s->target || !workers_left(s))
			break;
		if (total >= next_check) {
			pause_all(s);
			if (!atomic_load(&s->failed))
				check_quiescent(s, "quiescent point");
			checks++;
			resume_all(s);
			next_check += s->target / CHECKS;
		}
	}
	atomic_store(&s->stop, true);
	progress(s);
	for (i = 0; i < NR_VCPUS; i++)
		pthread_join(s->vc[i].thread, NULL);
	for (i = 0; i < s->nr_host; i++)
		pthread_join(s->host[i], NULL);

	ck_assert_msg(!atomic_load(&s->failed), "%s: %s", backend, s->failure);
	check_quiescent(s, "end");
	if (getenv("CCVM_STRESS_VERBOSE"))
		fprintf(stderr, "stress %-4s: %" PRIu64 " ops (guest %" PRIu64
			", conversions %" PRIu64 ", punches %" PRIu64 ", slot updates %" PRIu64
			"), %u checks; exits: memory fault %" PRIu64 ", mmio %" PRIu64
			", exception %" PRIu64 "\n", backend, total_ops(s),
			atomic_load(&s->guest_ops), atomic_load(&s->convert_ops),
			atomic_load(&s->punch_ops), atomic_load(&s->slot_ops), checks,
			atomic_load(&s->memfault_exits), atomic_load(&s->mmio_exits),
			atomic_load(&s->exceptions));
	ck_assert_msg(total_ops(s) >= s->target,
		      "%s: only %" PRIu64 " of %" PRIu64 " operations: every vCPU "
		      "thread ended first", backend, total_ops(s), s->target);
	ck_assert_msg(checks >= CHECKS - 1, "%s: %u quiescent checks", backend, checks);
	/* Every kind of operation really ran alongside the guests. */
	ck_assert_msg(atomic_load(&s->convert_ops) && atomic_load(&s->punch_ops) &&
		      atomic_load(&s->slot_ops), "%s: a host thread never ran", backend);

	for (i = 0; i < NR_VCPUS; i++)
		ck_assert_int_eq(ccvm_vcpu_close(s->vc[i].v), 0);
	ck_assert_int_eq(ccvm_gmem_close(s->g), 0);
	ck_assert_int_eq(ccvm_vm_close(s->vm), 0);
	ck_assert_msg(tu_free_pages(s->p) == s->free_at_start, "%s: %" PRIu64 " free pages "
		      "after teardown, %" PRIu64 " before the VM", backend,
		      tu_free_pages(s->p), s->free_at_start);
	ck_assert_int_eq(ccvm_platform_destroy(s->p), 0);
	munmap(s->shared, SHARED_PAGES * PAGE);
	pthread_mutex_destroy(&s->qlock);
	pthread_cond_destroy(&s->qcond);
	pthread_mutex_destroy(&s->flock);
	pthread_mutex_destroy(&s->plock);
	pthread_cond_destroy(&s->pcond);
	free(s);
}
END_TEST

Suite *stress_suite(void)
{
	Suite *s = suite_create("stress");
	TCase *tc = tcase_create("stress");
	int n;

	for (n = 0; ccvm_backend_names()[n]; n++)
		;
	/* The run ends at its operation count; this only catches a hang. */
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, test_stress, 0, n);
	suite_add_tcase(s, tc);
	return s;
}
