/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the Check suites: build a platform, a VM, gmem files
 * and memslots with assertions, register test backends, compare counters,
 * run vCPUs; for the suites that call the simulated hardware directly, a
 * platform of their own, its event counts and raw pages.  Public headers
 * only, so that the conformance fixtures (conformance.h) can build on it;
 * the snapshot that also reads the core's internals is snapshot.h.
 *
 * Everything here is static inline so that a suite that does not use a
 * helper gets no unused-function warning.
 */
#ifndef CCVM_TESTS_TESTUTIL_H
#define CCVM_TESTS_TESTUTIL_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <check.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#define TU_KiB			(1ull << 10)
#define TU_MiB			(1ull << 20)
#define TU_GiB			(1ull << 30)
#define TU_PAGE			CCVM_PAGE_SIZE
#define TU_2M			CCVM_HPAGE_2M_SIZE
#define TU_ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/* ---- construction, each step asserted ---------------------------------- */

static inline struct ccvm_platform *tu_platform(const char *backend)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = backend,
						     .mem_bytes = 256 * TU_MiB);
	struct ccvm_platform *p = NULL;
	int r = ccvm_platform_create(&o, &p);

	ck_assert_msg(r == 0, "platform_create(%s): %d", backend ? backend : "NULL", r);
	ck_assert_ptr_nonnull(p);
	return p;
}

static inline struct ccvm_vm *tu_vm(struct ccvm_platform *p)
{
	struct ccvm_vm *vm = NULL;
	int r = ccvm_vm_create(p, NULL, &vm);

	ck_assert_msg(r == 0, "vm_create: %d", r);
	ck_assert_ptr_nonnull(vm);
	return vm;
}

/* A VM of @p with attribute scheme @scheme (enum ccvm_attr_scheme). */
static inline struct ccvm_vm *tu_vm_scheme(struct ccvm_platform *p, uint32_t scheme)
{
	struct ccvm_vm_opts o = CCVM_OPTS_INIT(struct ccvm_vm_opts, .attr_scheme = scheme);
	struct ccvm_vm *vm = NULL;
	int r = ccvm_vm_create(p, &o, &vm);

	ck_assert_msg(r == 0, "vm_create(scheme %u): %d", scheme, r);
	return vm;
}

static inline struct ccvm_gmem *tu_gmem(struct ccvm_vm *vm, uint64_t size, uint64_t flags)
{
	struct ccvm_gmem *g = NULL;
	int r = ccvm_gmem_create(vm, size, flags, &g);

	ck_assert_msg(r == 0, "gmem_create(%#" PRIx64 ", %#" PRIx64 "): %d", size, flags, r);
	ck_assert_ptr_nonnull(g);
	return g;
}

/* KVM_SET_USER_MEMORY_REGION2 with every field spelled out; returns its result. */
static inline int tu_region(struct ccvm_vm *vm, uint32_t slot, uint32_t flags, uint64_t gpa,
			    uint64_t size, void *uaddr, struct ccvm_gmem *g, uint64_t off)
{
	struct ccvm_memory_region r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = uaddr,
		.gmem = g,
		.gmem_offset = off,
	};

	return ccvm_vm_set_user_memory_region(vm, &r);
}

static inline void tu_gmem_slot(struct ccvm_vm *vm, uint32_t slot, uint64_t gpa,
				uint64_t size, struct ccvm_gmem *g, uint64_t off)
{
	int r = tu_region(vm, slot, CCVM_MEM_GUEST_MEMFD, gpa, size, NULL, g, off);

	ck_assert_msg(r == 0, "gmem slot %u at %#" PRIx64 "+%#" PRIx64 ": %d", slot, gpa,
		      size, r);
}

static inline void tu_plain_slot(struct ccvm_vm *vm, uint32_t slot, uint64_t gpa,
				 uint64_t size, void *uaddr)
{
	int r = tu_region(vm, slot, 0, gpa, size, uaddr, NULL, 0);

	ck_assert_msg(r == 0, "slot %u at %#" PRIx64 "+%#" PRIx64 ": %d", slot, gpa, size, r);
}

static inline void tu_set_attr(struct ccvm_vm *vm, uint64_t gpa, uint64_t size, uint64_t attr)
{
	int r = ccvm_vm_set_memory_attributes(vm, gpa, size, attr, 0);

	ck_assert_msg(r == 0, "set_memory_attributes(%#" PRIx64 ", %#" PRIx64 ", %#" PRIx64
		      "): %d", gpa, size, attr, r);
}

/*
 * Slot 0 at GPA 0: @size bytes of a new gmem file, all private, over a new
 * anonymous mapping as the VMM's shared buffer, which is returned (munmap it
 * with @size).
 */
static inline uint8_t *tu_private_slot0(struct ccvm_vm *vm, uint64_t size,
					struct ccvm_gmem **gm)
{
	uint8_t *shared;

	*gm = tu_gmem(vm, size, 0);
	shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(shared != MAP_FAILED);
	ck_assert_int_eq(tu_region(vm, 0, CCVM_MEM_GUEST_MEMFD, 0, size, shared, *gm, 0), 0);
	tu_set_attr(vm, 0, size, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	return shared;
}

static inline uint64_t tu_get_attr(struct ccvm_vm *vm, uint64_t gpa, uint64_t *run_bytes)
{
	uint64_t a = ~0ull, point = ~0ull;
	int r = ccvm_vm_get_memory_attributes(vm, gpa, &a, run_bytes);

	ck_assert_msg(r == 0, "get_memory_attributes(%#" PRIx64 "): %d", gpa, r);
	/* The point query answers the same, every time. */
	r = ccvm_vm_get_memory_attribute(vm, gpa, &point);
	ck_assert_msg(r == 0 && point == a, "get_memory_attribute(%#" PRIx64 "): %d", gpa, r);
	return a;
}

static inline struct ccvm_stats tu_pstats(struct ccvm_platform *p)
{
	struct ccvm_stats st = { .sz = sizeof(st) };

	ck_assert_int_eq(ccvm_platform_get_stats(p, &st), 0);
	return st;
}

static inline struct ccvm_stats tu_vstats(struct ccvm_vm *vm)
{
	struct ccvm_stats st = { .sz = sizeof(st) };

	ck_assert_int_eq(ccvm_vm_get_stats(vm, &st), 0);
	return st;
}

/* How often @vm counted event @e. */
static inline uint64_t tu_vm_event(struct ccvm_vm *vm, enum ccvm_event e)
{
	return tu_vstats(vm).events[e];
}

static inline uint64_t tu_free_pages(struct ccvm_platform *p)
{
	return tu_pstats(p).free_pages;
}

static inline struct ccvm_gmem_info tu_gmem_info(struct ccvm_gmem *g)
{
	struct ccvm_gmem_info i = { .sz = sizeof(i) };

	ck_assert_int_eq(ccvm_gmem_get_info(g, &i), 0);
	return i;
}

static inline int64_t tu_calls(struct ccvm_platform *p, const char *op)
{
	int64_t n = ccvm_op_calls(p, op);

	ck_assert_msg(n >= 0, "ccvm_op_calls(%s): %" PRId64, op, n);
	return n;
}

/* ---- log sink that keeps expected warnings off stderr ------------------ */

/* Atomic: the hardware suites' threads may warn at the same time. */
static inline _Atomic unsigned int *tu_log_count(void)
{
	static _Atomic unsigned int n;

	return &n;
}

static inline void tu_log_sink(enum ccvm_log_level level, const char *msg, void *ctx)
{
	(void)msg;
	(void)ctx;
	if (level == CCVM_LOG_WARN)
		(*tu_log_count())++;
}

/* Count warnings instead of printing them (for tests that provoke them). */
static inline void tu_quiet_log(void)
{
	*tu_log_count() = 0;
	ccvm_set_log(tu_log_sink, NULL);
}

/* Warnings counted since tu_quiet_log(). */
static inline unsigned int tu_warnings(void)
{
	return atomic_load(tu_log_count());
}

/* ---- a platform of its own, for the suites that drive the hardware ------- */

/* Create a platform from @o, its warnings counted rather than printed. */
static inline struct ccvm_platform *tu_platform_up(const struct ccvm_platform_opts *o)
{
	struct ccvm_platform *p = NULL;
	int r;

	tu_quiet_log();
	r = ccvm_platform_create(o, &p);
	ck_assert_msg(r == 0, "platform_create(%s): %d", o->backend ? o->backend : "NULL", r);
	ck_assert_ptr_nonnull(p);
	return p;
}

/* Destroy @p, which must succeed, and print warnings again. */
static inline void tu_platform_down(struct ccvm_platform *p)
{
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	ccvm_set_log(NULL, NULL);
}

/* How often @p counted event @e. */
static inline uint64_t tu_event(struct ccvm_platform *p, enum ccvm_event e)
{
	return tu_pstats(p).events[e];
}

/* One page from @p's allocator, as a backend would take it. */
static inline uint64_t tu_page(struct ccvm_platform *p)
{
	uint64_t pfn;

	ck_assert_int_eq(ccvm_page_alloc(p, &pfn), 0);
	return pfn;
}

/* ---- test backends ------------------------------------------------------- */

/* The caps every test backend reports: the mock's, adjusted by the test. */
static inline struct ccvm_backend_caps *tu_caps(void)
{
	static struct ccvm_backend_caps caps;

	return &caps;
}

static inline void tu_caps_reset_to_mock(void)
{
	struct ccvm_backend_caps *c = tu_caps();

	memset(c, 0, sizeof(*c));
	c->sz = sizeof(*c);
	ck_assert_int_eq(ccvm_backend_caps("mock", c), 0);
}

/* get_caps of test backends: copy tu_caps() past sz and name. */
static inline void tu_get_caps(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
{
	const size_t from = offsetof(struct ccvm_backend_caps, vm_type);

	(void)vm;
	if (caps->sz > from)
		memcpy((char *)caps + from, (const char *)tu_caps() + from,
		       (caps->sz < sizeof(*caps) ? caps->sz : sizeof(*caps)) - from);
}

/* A table with only the mandatory op, for tests to extend. */
static inline struct ccvm_backend_ops tu_ops(const char *name)
{
	struct ccvm_backend_ops o;

	memset(&o, 0, sizeof(o));
	o.abi_version = CCVM_BACKEND_ABI_VERSION;
	o.size = sizeof(o);
	o.name = name;
	o.get_caps = tu_get_caps;
	return o;
}

/*
 * Register a test backend.  In fork mode every test starts with an empty
 * registry; with CK_FORK=no a second registration of the same name finds
 * the first, which serves as well.
 */
static inline void tu_register(const struct ccvm_backend_ops *ops)
{
	int r = ccvm_backend_register(ops);

	ck_assert_msg(r == 0 || r == -EEXIST, "register %s: %d", ops->name, r);
}

/* ---- attribute runs and counters, compared -------------------------------- */

struct tu_attr_run {
	uint64_t gpa, attr, run_bytes;
};

/* Runs of attributes from @start until @end is covered (or the table is full). */
static inline unsigned int tu_attr_runs(struct ccvm_vm *vm, uint64_t start, uint64_t end,
					struct tu_attr_run *runs, unsigned int max)
{
	uint64_t gpa = start;
	unsigned int n = 0;

	while (n < max && gpa < end) {
		uint64_t a, run = 0;

		ck_assert_int_eq(ccvm_vm_get_memory_attributes(vm, gpa, &a, &run), 0);
		ck_assert_msg(run >= TU_PAGE && run % TU_PAGE == 0,
			      "run_bytes %#" PRIx64 " at %#" PRIx64, run, gpa);
		runs[n++] = (struct tu_attr_run){ gpa, a, run };
		if (run > UINT64_MAX - gpa)
			break;
		gpa += run;
	}
	return n;
}

static inline void tu_stats_assert_same(const char *what, const struct ccvm_stats *a,
					const struct ccvm_stats *b)
{
	unsigned int i;

	for (i = 0; i < CCVM_STATS_MAX_EVENTS; i++)
		ck_assert_msg(a->events[i] == b->events[i],
			      "%s: event %s changed: %" PRIu64 " -> %" PRIu64, what,
			      ccvm_event_name(i) ? ccvm_event_name(i) : "?", a->events[i],
			      b->events[i]);
	for (i = 0; i < CCVM_STATS_MAX_OPS; i++) {
		ck_assert_msg(a->op_calls[i] == b->op_calls[i],
			      "%s: calls of op %s changed: %" PRIu64 " -> %" PRIu64, what,
			      ccvm_backend_op_name(i) ? ccvm_backend_op_name(i) : "?",
			      a->op_calls[i], b->op_calls[i]);
		ck_assert_msg(a->op_errors[i] == b->op_errors[i],
			      "%s: errors of op %s changed", what,
			      ccvm_backend_op_name(i) ? ccvm_backend_op_name(i) : "?");
	}
	ck_assert_msg(a->sim_ns == b->sim_ns, "%s: sim_ns changed: %" PRIu64 " -> %" PRIu64,
		      what, a->sim_ns, b->sim_ns);
	ck_assert_msg(a->free_pages == b->free_pages,
		      "%s: free_pages changed: %" PRIu64 " -> %" PRIu64, what,
		      a->free_pages, b->free_pages);
	ck_assert_msg(a->leaked_pages == b->leaked_pages, "%s: leaked_pages changed", what);
}

/* ---- vCPU runs ------------------------------------------------------------ */

/*
 * ccvm_vcpu_run() on a thread of its own:
 *	struct tu_run r = { .v = v };
 *	pthread_create(&t, NULL, tu_run_thread, &r); ... pthread_join(t, NULL);
 * then r.ret, the exit reason and, for a sync exit, its value.
 */
struct tu_run {
	struct ccvm_vcpu *v;
	int ret;
	uint32_t exit_reason;
	uint64_t value;
};

static inline void *tu_run_thread(void *arg)
{
	struct tu_run *r = arg;

	r->ret = ccvm_vcpu_run(r->v);
	r->exit_reason = ccvm_vcpu_run_state(r->v)->exit_reason;
	r->value = ccvm_vcpu_run_state(r->v)->sync.value;
	return NULL;
}

/*
 * One ccvm_vcpu_run(): it must return @want_ret with exit @want_exit; a guest
 * abort nobody expected fails with the guest's file, line and message.
 */
static inline struct ccvm_run *tu_run_once_at(struct ccvm_vcpu *v, int want_ret,
					      uint32_t want_exit, int line)
{
	int ret = ccvm_vcpu_run(v);
	struct ccvm_run *run = ccvm_vcpu_run_state(v);

	if (run->exit_reason == CCVM_EXIT_GUEST_ABORT && want_exit != CCVM_EXIT_GUEST_ABORT)
		ck_abort_msg("line %d: guest aborted at %s:%d: %s", line, run->abort.file,
			     run->abort.line, run->abort.msg);
	ck_assert_msg(ret == want_ret, "line %d: run returned %d, expected %d (exit %u)", line,
		      ret, want_ret, run->exit_reason);
	ck_assert_msg(run->exit_reason == want_exit, "line %d: exit %u, expected %u", line,
		      run->exit_reason, want_exit);
	return run;
}
#define tu_run_once(v, ret, exit)	tu_run_once_at((v), (ret), (exit), __LINE__)
#define tu_expect_sync(v, val) \
	ck_assert_uint_eq(tu_run_once((v), 0, CCVM_EXIT_SYNC)->sync.value, (uint64_t)(val))

/* ---- waiting for another thread: event-driven, bounded -------------------- */

/*
 * A value that another thread moves (a guest, a VMM thread, or the library
 * itself through a trace callback, see tu_watch_event()) and a test waits
 * on: a condition variable, never a spin, a sleep or a clock.  Every change
 * wakes the waiters.  A waiter checks the value at each wake-up and gives up
 * after TU_WAIT_WAKEUPS of them, failing the test with the name of what it
 * waited for (a livelock of wake-ups that never reach the value); an event
 * that never comes hangs the wait, which Check's timeout reports.  The
 * mutex is the test's own: it may be taken with library locks held (a trace
 * callback), and no libccvm call is made under it.
 */
struct tu_event {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t value;
};

#define TU_EVENT_INIT	{ PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 }
#define TU_WAIT_WAKEUPS	(1u << 20)

static inline void tu_event_init(struct tu_event *e)
{
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	e->value = 0;
}

static inline void tu_event_destroy(struct tu_event *e)
{
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
}

static inline void tu_event_set(struct tu_event *e, uint64_t value)
{
	pthread_mutex_lock(&e->lock);
	e->value = value;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

/* Adds @n; returns the new value. */
static inline uint64_t tu_event_add(struct tu_event *e, uint64_t n)
{
	uint64_t v;

	pthread_mutex_lock(&e->lock);
	v = e->value += n;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	return v;
}

static inline uint64_t tu_event_get(struct tu_event *e)
{
	uint64_t v;

	pthread_mutex_lock(&e->lock);
	v = e->value;
	pthread_mutex_unlock(&e->lock);
	return v;
}

/* Until the value is at least @value; returns it. */
static inline uint64_t tu_event_wait_at(struct tu_event *e, uint64_t value, const char *what,
					const char *file, int line)
{
	uint32_t wakeups = 0;
	uint64_t v;

	pthread_mutex_lock(&e->lock);
	while (e->value < value && wakeups < TU_WAIT_WAKEUPS) {
		pthread_cond_wait(&e->cond, &e->lock);
		wakeups++;
	}
	v = e->value;
	pthread_mutex_unlock(&e->lock);
	if (v < value)
		ck_abort_msg("%s:%d: %s still %" PRIu64 " (waiting for %" PRIu64 ") after %u "
			     "wake-ups", file, line, what, v, value, wakeups);
	return v;
}
#define tu_event_wait(e, value)	tu_event_wait_at((e), (value), #e, __FILE__, __LINE__)

/*
 * Counts into @w->ev the counted events of kind @id (enum ccvm_event) of
 * @p, as they happen, through the platform's trace callback (which this
 * replaces): a test waits with tu_event_wait(&w->ev, n) for the library to
 * have done something, instead of polling its counters.  Stop with
 * ccvm_platform_set_trace(p, NULL, NULL) before @w goes.
 */
struct tu_event_watch {
	struct tu_event ev;
	uint32_t id;
};

static inline void tu_watch_cb(const struct ccvm_trace_record *rec, void *ctx)
{
	struct tu_event_watch *w = ctx;

	if (rec->kind == CCVM_TRACE_EVENT && rec->id == w->id)
		tu_event_add(&w->ev, rec->arg0);
}

static inline void tu_watch_event(struct ccvm_platform *p, struct tu_event_watch *w,
				  uint32_t id)
{
	tu_event_init(&w->ev);
	w->id = id;
	ck_assert_int_eq(ccvm_platform_set_trace(p, tu_watch_cb, w), 0);
}

/*
 * TU_SANITIZED: built with ASan or TSan, which slow a schedule down 5 to 20
 * times; the few tests whose explored trees have thousands of schedules
 * search a smaller bound there.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TU_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TU_SANITIZED 1
#endif
#endif
#ifndef TU_SANITIZED
#define TU_SANITIZED 0
#endif

#endif /* CCVM_TESTS_TESTUTIL_H */
