/* SPDX-License-Identifier: MIT */
/*
 * bench_vcpus: does the simulation scale with vCPU threads?
 *
 * On each backend, N = 1, 2, 4 and 8 vCPUs each own a disjoint 128 MiB of
 * private guest memory (with populated RAM a touch costs the model's work
 * only, about 400 ns a page: 32 MiB made a phase of 3 ms, shorter than a
 * host time slice).  Every vCPU is driven by its own VMM thread (real
 * threads, free-running), and its guest runs two timed phases separated by
 * a sync exit:
 *   touch   accept the region if the backend requires it, then write one
 *           word into every page: every page takes a private fault;
 *   access  read one word from every page, READ_PASSES times: no fault.
 * Before either, each guest stops at a first sync exit, so that its
 * thread exists before the clock starts.  A phase's time runs from the
 * first vCPU's start (each VMM thread reads the clock after the barrier
 * that releases them all) to the last vCPU's sync exit; throughput is
 * pages (or reads) per second over all vCPUs.  The peer is the same benchmark with one vCPU, measured in the
 * same run: the goals (issue: vCPUs that scale) are 2 vCPUs at least 1.7x
 * the throughput of 1, and 8 no slower than 2.
 *
 * Then conversions elsewhere: one vCPU runs the access phase while a VMM
 * thread converts a range of the same VM that the vCPU never touches
 * (never faulted, never allocated: nothing in it is mapped), private to
 * shared and back, as fast as it can; the vCPU's throughput is set against
 * the same phase without the converter (goal: at least 0.7x; the converter
 * takes one of the two cores, so this is not 1.0).  The converter starts
 * with the touch phase, so it is converting in its steady state when the
 * measured phase begins, and the line prints how many conversions it made
 * inside that phase: a run in which the converter stalled cannot pass for
 * an undisturbed vCPU.
 *
 * Next to each wall-clock figure the vCPU threads' own CPU time per page
 * (CLOCK_THREAD_CPUTIME_ID, summed over the guest threads) is printed: on
 * a shared machine it does not depend on how many cores the bench got, so
 * it tells a lock whose cache line bounces (CPU per page grows with the
 * vCPUs) from a host that was busy (only the wall time grows).
 *
 * The simulated RAM is in transparent huge pages and resident from the
 * platform's creation on (CCVM_PLATFORM_RAM_THP | CCVM_PLATFORM_RAM_POPULATE):
 * with lazily mapped RAM a first touch pays the host's own page fault,
 * which with THP zeroes 2 MiB in the host kernel (about 40% of a touch
 * phase), and on the 2-vCPU virtual machines this runs on two threads
 * zeroing at once scale no better than 1x: that measured the host kernel,
 * not the model.
 *
 * Each figure is the best of REPS runs, with the median next to it: the
 * machines are shared, and one preempted thread must not decide a ratio.
 * The runs of all configurations take turns (1, 2, 4, 8 vCPUs, the
 * converter; REPS times), so that load from elsewhere falls on all alike.
 *
 * Load from elsewhere does not fall on all alike, though: a compiler
 * running on one of two CPUs halves a 2-vCPU phase and leaves a 1-vCPU one
 * alone.  A whole run (every backend, minutes) nearly always met one, and
 * its 2-vs-1 touch came out at 1.0-1.3x where a short run at a quiet
 * moment gave 1.8x (issue 14; a trace of the host's scheduler during the
 * 2-vCPU phases showed cc1 on the second CPU, and the guest threads
 * sharing the first).  So each guest thread reads how long it waited for
 * a CPU while runnable (run_delay, /proc/thread-self/schedstat: not the
 * time it slept on a lock or in an exit) over each phase, and a run of no
 * more threads than the host has CPUs counts for a phase only if none of
 * its threads waited more than 1/WAIT_SHARE of it (and more than WAIT_MIN:
 * a wake-up's latency is no CPU held by another process, and with -m 2 a
 * touch phase lasts 0.3 ms); the configurations short of REPS runs that
 * count get more runs, in turn, up to MAX_RUNS.
 * Runs of more vCPUs than CPUs wait for each other by design and always
 * count.  Each line says how many runs counted; a goal whose figures come
 * from none is not met, whatever the ratio.
 *
 * Found later: some runs that counted showed two concurrent guest threads
 * costing 1.3-1.4x the CPU per page of one, following the runs of one
 * process (which threads shared a malloc arena), never with both threads
 * on one CPU, and never in two processes at once.  The cause was the
 * library's per-thread counter blocks: from calloc(), two threads' blocks
 * could be neighbours in one arena, and every count bounced the line they
 * shared.  They are on lines of their own now (docs/architecture.md 5.1).
 * Exits non-zero when a run fails.
 *
 * Usage: bench_vcpus [-b BACKEND] [-c] [-m MIB] [-n 1|2|4|8]
 *   -b: one backend only; -c: only the conversions-elsewhere run; -n: only
 *   the runs with VCPUS vCPUs (all three for profiling: no summary rows);
 *   -m: MIB of private memory per vCPU (even, 2..1024; default 128), to
 *   tell a lock from the memory hierarchy: 8 vCPUs of 128 MiB read 1 GiB,
 *   more than some hosts' last-level cache, where 2 of 128 MiB fit.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <ccvm/ccvm.h>

#define MIB		(1ull << 20)
#define PAGE		4096ull
#define REGION_MIB	128			/* per vCPU: a touch phase of over 10 ms */
#define CONV_REGION	(16 * MIB)		/* the converter's range */
#define MAX_VCPUS	8
#define READ_PASSES	32
#define REPS		5
#define MAX_RUNS	(2 * REPS)		/* runs of a configuration, at most (main) */
#define WAIT_SHARE	20			/* a thread may wait for a CPU 1/20 of a phase */
#define WAIT_MIN	200000ull		/* ns, or this long whatever the phase */

/* Private memory per vCPU (-m; REGION_MIB by default). */
static uint64_t region = REGION_MIB * MIB;

#define CHECK(expr)								\
	do {									\
		int err_ = (expr);						\
		if (err_) {							\
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__,	\
				#expr, ccvm_strerror(err_));			\
			exit(EXIT_FAILURE);					\
		}								\
	} while (0)

enum { SYNC_TOUCHED = 1, SYNC_READ = 2, SYNC_READY = 3 };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct run;

/* What a thread spent in a phase: CPU ns, sleeps (voluntary switches), preemptions. */
struct cost {
	uint64_t cpu, sleeps, preempted;
};

struct vcpu_ctx {
	struct run *run;
	struct ccvm_vcpu *v;
	uint64_t gpa;			/* start of its region */
	uint64_t touch_start, touch_end;	/* its phases, on its own clock reads */
	uint64_t read_start, read_end;
	uint64_t conv_start, conv_end;		/* the converter's count at read_start/end */
	struct cost touch_cost, read_cost;	/* its guest thread's, in each phase */
	uint64_t touch_wait, read_wait;		/* ns its guest thread waited for a CPU */
	pthread_t thread;
	int err;
};

struct run {
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	uint8_t *shared;
	uint64_t mem;
	unsigned int nr;
	bool accept, converter_on;
	pthread_barrier_t start, between;
	_Atomic bool stop;
	_Atomic uint64_t conversions;
	struct vcpu_ctx vcpus[MAX_VCPUS];
};

/* The calling thread's cost so far. */
static struct cost thread_cost(void)
{
	struct cost c = { 0 };
	struct timespec ts;
	struct rusage ru;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	c.cpu = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (!getrusage(RUSAGE_THREAD, &ru)) {
		c.sleeps = (uint64_t)ru.ru_nvcsw;
		c.preempted = (uint64_t)ru.ru_nivcsw;
	}
	return c;
}

/* @c becomes the cost since @c was taken with thread_cost(). */
static void cost_since(struct cost *c)
{
	struct cost now = thread_cost();

	c->cpu = now.cpu - c->cpu;
	c->sleeps = now.sleeps - c->sleeps;
	c->preempted = now.preempted - c->preempted;
}

static void cost_add(struct cost *sum, const struct cost *c)
{
	sum->cpu += c->cpu;
	sum->sleeps += c->sleeps;
	sum->preempted += c->preempted;
}

/*
 * Nanoseconds the thread that opened @fd (/proc/thread-self/schedstat)
 * spent runnable but waiting for a CPU (run_delay), so far; 0 if unknown.
 * A thread asleep (on a lock, in a sync exit) does not wait for a CPU.
 */
static uint64_t cpu_wait_ns(int fd)
{
	unsigned long long on_cpu, delay;
	char buf[128];
	ssize_t n;

	if (fd < 0 || (n = pread(fd, buf, sizeof(buf) - 1, 0)) <= 0)
		return 0;
	buf[n] = '\0';
	return sscanf(buf, "%llu %llu", &on_cpu, &delay) == 2 ? delay : 0;
}

/*
 * The access phase reads one word of each page, at a cache line that moves
 * with the page (line 0 of page 0, line 1 of page 1, ...): at one offset in
 * every page, all the reads fall in one set of each cache level and evict
 * whatever else of the model sits there, and the figure moved by a third
 * (11 to 16 M reads/s on one vCPU) with the layout of unrelated code.  The
 * host's plain loop reads the same words.
 */
static uint64_t line_of(uint64_t page_off)
{
	return (page_off / PAGE) % (PAGE / 64) * 64;
}

/* The phases are functions of their own: a profile tells them apart. */
static __attribute__((noinline)) void touch_phase(struct ccvm_guest *g, struct vcpu_ctx *c)
{
	uint64_t off, word = 1;

	if (c->run->accept)
		CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, c->gpa, region) == 0);
	for (off = 0; off < region; off += PAGE)
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, c->gpa + off, &word, sizeof(word)) == 0);
}

static __attribute__((noinline)) void read_phase(struct ccvm_guest *g, struct vcpu_ctx *c)
{
	uint64_t off, word = 1;
	int pass;

	for (pass = 0; pass < READ_PASSES; pass++)
		for (off = 0; off < region; off += PAGE)
			CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, c->gpa + off + line_of(off),
							     &word, sizeof(word)) == 0);
}

static void guest(struct ccvm_guest *g, void *arg)
{
	struct vcpu_ctx *c = arg;
	int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	uint64_t wait;

	/*
	 * Started, outside the clock: a phase does not time thread creation.
	 * The waits for a CPU are read before each sync exit: a guest thread
	 * woken for a phase that waits for a CPU before its first access waits
	 * inside the phase.
	 */
	wait = cpu_wait_ns(fd);
	ccvm_guest_sync(g, SYNC_READY);
	c->touch_cost = thread_cost();
	touch_phase(g, c);
	cost_since(&c->touch_cost);
	c->touch_wait = cpu_wait_ns(fd) - wait;
	wait += c->touch_wait;
	ccvm_guest_sync(g, SYNC_TOUCHED);
	c->read_cost = thread_cost();
	read_phase(g, c);
	cost_since(&c->read_cost);
	c->read_wait = cpu_wait_ns(fd) - wait;
	if (fd >= 0)
		close(fd);
	ccvm_guest_sync(g, SYNC_READ);
}

/* Run the guest to its next sync exit; 0 or a negative errno. */
static int run_to_sync(struct vcpu_ctx *c, uint64_t want)
{
	struct ccvm_run *r = ccvm_vcpu_run_state(c->v);
	int err = ccvm_vcpu_run(c->v);

	if (err)
		return err;
	return r->exit_reason == CCVM_EXIT_SYNC && r->sync.value == want ? 0 : -EPROTO;
}

static void *vmm_thread(void *arg)
{
	struct vcpu_ctx *c = arg;
	struct run *r = c->run;

	c->err = run_to_sync(c, SYNC_READY);
	pthread_barrier_wait(&r->start);
	c->touch_start = now_ns();
	if (!c->err)
		c->err = run_to_sync(c, SYNC_TOUCHED);
	c->touch_end = now_ns();
	pthread_barrier_wait(&r->between);
	c->conv_start = atomic_load(&r->conversions);
	c->read_start = now_ns();
	if (!c->err)
		c->err = run_to_sync(c, SYNC_READ);
	c->read_end = now_ns();
	c->conv_end = atomic_load(&r->conversions);
	return NULL;
}

static void *converter_thread(void *arg)
{
	struct run *r = arg;
	uint64_t gpa = r->mem - CONV_REGION;

	/* From the touch phase on: in its steady state when the access phase starts. */
	pthread_barrier_wait(&r->start);
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		CHECK(ccvm_vm_set_memory_attributes(r->vm, gpa, CONV_REGION, 0, 0));
		CHECK(ccvm_vm_set_memory_attributes(r->vm, gpa, CONV_REGION,
						    CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0));
		atomic_fetch_add(&r->conversions, 2);
	}
	return NULL;
}

static void run_up(struct run *r, const char *backend, unsigned int nr, bool converter)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = backend);
	struct ccvm_memory_region mr = { .slot = 0, .flags = CCVM_MEM_GUEST_MEMFD };
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };
	unsigned int i;

	memset(r, 0, sizeof(*r));
	r->nr = nr;
	r->converter_on = converter;
	r->mem = nr * region + CONV_REGION;
	po.mem_bytes = r->mem + 128 * MIB;	/* the guest memory, tables, control pages */
	po.nr_cpus = MAX_VCPUS;
	/* The model's scaling, not the host's page faults (and zeroing) on first touch. */
	po.flags = CCVM_PLATFORM_RAM_THP | CCVM_PLATFORM_RAM_POPULATE;
	r->shared = mmap(NULL, r->mem, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->shared == MAP_FAILED)
		exit(EXIT_FAILURE);
	CHECK(ccvm_platform_create(&po, &r->p));
	CHECK(ccvm_vm_create(r->p, NULL, &r->vm));
	CHECK(ccvm_vm_caps(r->vm, &caps));
	r->accept = caps.requires_accept;
	CHECK(ccvm_gmem_create(r->vm, r->mem, 0, &r->g));
	mr.memory_size = r->mem;
	mr.gmem = r->g;
	mr.userspace_addr = r->shared;
	CHECK(ccvm_vm_set_user_memory_region(r->vm, &mr));
	CHECK(ccvm_vm_set_memory_attributes(r->vm, 0, r->mem, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0));
	for (i = 0; i < nr; i++) {
		struct vcpu_ctx *c = &r->vcpus[i];

		c->run = r;
		c->gpa = i * region;
		CHECK(ccvm_vcpu_create(r->vm, i, &c->v));
		CHECK(ccvm_vcpu_set_guest(c->v, guest, c));
	}
	if (caps.needs_finalize)
		CHECK(ccvm_vm_finalize(r->vm));
	pthread_barrier_init(&r->start, NULL, nr + 1 + converter);
	pthread_barrier_init(&r->between, NULL, nr + 1);
}

static void run_down(struct run *r)
{
	unsigned int i;

	for (i = 0; i < r->nr; i++)
		CHECK(ccvm_vcpu_close(r->vcpus[i].v));
	CHECK(ccvm_gmem_close(r->g));
	CHECK(ccvm_vm_close(r->vm));
	CHECK(ccvm_platform_destroy(r->p));
	munmap(r->shared, r->mem);
	pthread_barrier_destroy(&r->start);
	pthread_barrier_destroy(&r->between);
}

struct result {
	double touch_pps, read_pps;	/* pages/s, reads/s over all vCPUs */
	struct cost touch, read;	/* the guest threads', summed */
	uint64_t conversions;		/* by the converter inside the access phase */
	bool touch_ok, read_ok;		/* the phase's threads had the host's CPUs (see main) */
};

/* Online host CPUs: runs of at most this many vCPUs must get a CPU each. */
static unsigned int host_cpus;

static void run_once(const char *backend, unsigned int nr, bool converter, struct result *res)
{
	struct run *r = calloc(1, sizeof(*r));
	uint64_t touch_start = UINT64_MAX, touch_end = 0, read_start = UINT64_MAX, read_end = 0;
	pthread_t conv;
	unsigned int i;

	if (!r)
		exit(EXIT_FAILURE);
	memset(res, 0, sizeof(*res));
	run_up(r, backend, nr, converter);
	for (i = 0; i < nr; i++)
		if (pthread_create(&r->vcpus[i].thread, NULL, vmm_thread, &r->vcpus[i]))
			exit(EXIT_FAILURE);
	if (converter && pthread_create(&conv, NULL, converter_thread, r))
		exit(EXIT_FAILURE);
	pthread_barrier_wait(&r->start);
	pthread_barrier_wait(&r->between);
	for (i = 0; i < nr; i++)
		pthread_join(r->vcpus[i].thread, NULL);
	atomic_store(&r->stop, true);
	if (converter)
		pthread_join(conv, NULL);
	for (i = 0; i < nr; i++) {
		struct vcpu_ctx *c = &r->vcpus[i];

		if (c->err) {
			fprintf(stderr, "bench_vcpus: %s, %u vCPUs: vcpu %u: %s\n", backend, nr, i,
				ccvm_strerror(c->err));
			exit(EXIT_FAILURE);
		}
		touch_start = c->touch_start < touch_start ? c->touch_start : touch_start;
		touch_end = c->touch_end > touch_end ? c->touch_end : touch_end;
		read_start = c->read_start < read_start ? c->read_start : read_start;
		read_end = c->read_end > read_end ? c->read_end : read_end;
		cost_add(&res->touch, &c->touch_cost);
		cost_add(&res->read, &c->read_cost);
	}
	/*
	 * Did every guest thread have a CPU through the phase?  Only asked of
	 * runs with no more threads (converter included) than the host has
	 * CPUs: 8 vCPUs on 2 CPUs wait for each other by design.
	 */
	res->touch_ok = res->read_ok = true;
	for (i = 0; i < nr && nr + converter <= host_cpus; i++) {
		struct vcpu_ctx *c = &r->vcpus[i];

		if (c->touch_wait > WAIT_MIN &&
		    c->touch_wait * WAIT_SHARE > touch_end - touch_start)
			res->touch_ok = false;
		if (c->read_wait > WAIT_MIN && c->read_wait * WAIT_SHARE > read_end - read_start)
			res->read_ok = false;
	}
	res->touch_pps = (double)(nr * (region / PAGE)) / ((double)(touch_end - touch_start) / 1e9);
	res->read_pps = (double)(nr * (region / PAGE) * READ_PASSES) /
			((double)(read_end - read_start) / 1e9);
	res->conversions = nr ? r->vcpus[0].conv_end - r->vcpus[0].conv_start : 0;
	run_down(r);
	free(r);
}

/*
 * What the host gives two threads: the access phase's pattern (one word of
 * every page of region, READ_PASSES times) in a plain loop over plain
 * memory, no model, on 1, 2 and 8 threads released by one barrier, each
 * thread its own region as each vCPU has.  Its 2-vs-1 and 8-vs-2 ratios,
 * taken in turn with the model's runs, are the ceilings the host allowed
 * while they ran: the model cannot scale better than the memory it reads
 * (8 threads read four times the memory of 2, more than the host's caches
 * hold, on the same two cores).
 */
#define HOST_MAX_THREADS	8

struct host_ctx {
	pthread_barrier_t *go;
	volatile uint8_t *mem;
	uint64_t sum, start, end;
};

static void *host_reader(void *arg)
{
	struct host_ctx *h = arg;
	uint64_t off, sum = 0;
	int pass;

	pthread_barrier_wait(h->go);
	h->start = now_ns();
	for (pass = 0; pass < READ_PASSES; pass++)
		for (off = 0; off < region; off += PAGE)
			sum += h->mem[off + line_of(off)];
	h->end = now_ns();
	h->sum = sum;
	return NULL;
}

/* Reads per second over @n (1..HOST_MAX_THREADS) threads of host_reader(). */
static double host_reads(uint8_t *mem, unsigned int n)
{
	struct host_ctx h[HOST_MAX_THREADS];
	pthread_barrier_t go;
	pthread_t t[HOST_MAX_THREADS];
	uint64_t start = UINT64_MAX, end = 0;
	unsigned int i;

	pthread_barrier_init(&go, NULL, n);
	for (i = 0; i < n; i++) {
		h[i] = (struct host_ctx){ .go = &go, .mem = mem + i * region };
		if (pthread_create(&t[i], NULL, host_reader, &h[i]))
			exit(EXIT_FAILURE);
	}
	for (i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		if (h[i].start < start)
			start = h[i].start;
		if (h[i].end > end)
			end = h[i].end;
	}
	pthread_barrier_destroy(&go);
	return (double)(n * (region / PAGE) * READ_PASSES) / ((double)(end - start) / 1e9);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Does run @r count for its touch (its access) phase? */
static bool touch_counts(const struct result *r)
{
	return r->touch_ok;
}

static bool read_counts(const struct result *r, bool converter)
{
	return r->read_ok && (!converter || r->conversions);
}

/* How many of the @n runs in @reps count, for the touch and the access phase. */
static void count_runs(const struct result *reps, int n, bool converter, int *ntouch, int *nread)
{
	int rep;

	*ntouch = *nread = 0;
	for (rep = 0; rep < n; rep++) {
		*ntouch += touch_counts(&reps[rep]);
		*nread += read_counts(&reps[rep], converter);
	}
}

/*
 * The best of the @n results in @reps, and the medians, over the runs that
 * count (touch_counts(), read_counts(): a converter run counts only if the
 * converter worked through the measured phase, since on a loaded host it
 * may not get a CPU at all and the vCPU alone would pass for undisturbed;
 * a run of no more threads than CPUs only if its threads had the CPUs).
 * *@ntouch and *@nread: how many counted.  A phase none of whose runs
 * counted is picked from all of them, and its caller says so.
 */
static void pick(const struct result *reps, int n, bool converter, struct result *best,
		 double *touch_median, double *read_median, int *ntouch, int *nread)
{
	double touch[MAX_RUNS], read[MAX_RUNS];
	int rep, nt = 0, nr = 0, pass;

	memset(best, 0, sizeof(*best));
	count_runs(reps, n, converter, ntouch, nread);
	for (rep = 0; rep < n; rep++) {
		const struct result *r = &reps[rep];

		if (touch_counts(r) || !*ntouch) {
			touch[nt++] = r->touch_pps;
			if (r->touch_pps > best->touch_pps) {
				best->touch_pps = r->touch_pps;
				best->touch = r->touch;
			}
		}
		pass = read_counts(r, converter) || (!*nread && (!converter || r->conversions));
		if (!pass)
			continue;
		read[nr++] = r->read_pps;
		if (r->read_pps > best->read_pps) {
			best->read_pps = r->read_pps;
			best->read = r->read;
			best->conversions = r->conversions;
		}
	}
	qsort(touch, (size_t)nt, sizeof(touch[0]), cmp_double);
	qsort(read, (size_t)nr, sizeof(read[0]), cmp_double);
	*touch_median = nt ? touch[nt / 2] : 0;
	*read_median = nr ? read[nr / 2] : 0;
}

static double per_read(const struct result *r, unsigned int nr)
{
	return (double)r->read.cpu / (double)(nr * (region / PAGE) * READ_PASSES);
}

static void summary(const char *goal, const char *ours, const char *peer, double ratio,
		    bool met)
{
	printf("SUMMARY|%s|%s|%s|%.2fx|%s\n", goal, ours, peer, ratio, met ? "yes" : "no");
}

/*
 * A figure without a goal: the vCPU threads' CPU time per operation in two
 * runs.  Near 1.0x, the extra threads cost no CPU (no line bouncing, no
 * spinning): what the wall-clock ratio misses is the host's cores.
 */
static void cpu_summary(const char *backend, const char *phase, const char *unit,
			const char *ours_name, const char *peer_name, double ours, double peer)
{
	char goal[96], o[48], p[48];

	snprintf(goal, sizeof(goal), "%s %s: vCPU CPU time per %s, %s vs %s", backend, phase,
		 unit, ours_name, peer_name);
	snprintf(o, sizeof(o), "%s %.0f ns", ours_name, ours);
	snprintf(p, sizeof(p), "%s %.0f ns", peer_name, peer);
	printf("SUMMARY|%s|%s|%s|%.2fx|-\n", goal, o, p, ours / peer);
}

/* @measured: both figures come from runs that counted (pick()). */
static void scaling_summary(const char *backend, const char *phase, unsigned int n,
			    unsigned int peer_n, double ours, double peer, double bound,
			    bool measured)
{
	char goal[96], o[48], p[48];

	snprintf(goal, sizeof(goal), "%s %s: %u vCPUs >= %.1fx the throughput of %u", backend,
		 phase, n, bound, peer_n);
	snprintf(o, sizeof(o), "%u vCPUs %.2f M/s", n, ours / 1e6);
	snprintf(p, sizeof(p), "%u vCPU%s %.2f M/s", peer_n, peer_n > 1 ? "s" : "", peer / 1e6);
	summary(goal, o, p, ours / peer, measured && ours / peer >= bound);
}

/* Is configuration @i (counts[0..3], 4: the converter's) part of this run? */
static bool config_runs(unsigned int i, unsigned int only_n, bool conv_only,
			const unsigned int *counts)
{
	return i == 4 ? !only_n : !conv_only && (!only_n || counts[i] == only_n);
}

/* Have @n runs of a configuration enough that count, REPS for each phase it reports? */
static bool enough_counted(const struct result *reps, int n, bool converter)
{
	int nt, nr;

	count_runs(reps, n, converter, &nt, &nr);
	return (converter || nt >= REPS) && nr >= REPS;
}

int main(int argc, char **argv)
{
	uint8_t *host_mem;
	static const char *const backends[] = { "mock", "tdx", "snp" };
	static const unsigned int counts[] = { 1, 2, 4, 8 };
	const char *only = NULL;
	bool conv_only = false;
	unsigned int b, i, only_n = 0;
	long ncpu;
	int opt;

	while ((opt = getopt(argc, argv, "b:cm:n:")) != -1) {
		if (opt == 'b') {
			only = optarg;
		} else if (opt == 'c') {
			conv_only = true;
		} else if (opt == 'm' && atoi(optarg) >= 2 && atoi(optarg) <= 1024 &&
			   !(atoi(optarg) & 1)) {
			region = (uint64_t)atoi(optarg) * MIB;
		} else if (opt == 'n' && (atoi(optarg) == 1 || atoi(optarg) == 2 ||
					  atoi(optarg) == 4 || atoi(optarg) == 8)) {
			only_n = (unsigned int)atoi(optarg);
		} else {
			fprintf(stderr, "usage: %s [-b BACKEND] [-c] [-m MIB] [-n 1|2|4|8]\n",
				argv[0]);
			return EXIT_FAILURE;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	host_cpus = ncpu > 1 ? (unsigned int)ncpu : 1;
	host_mem = mmap(NULL, HOST_MAX_THREADS * region, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (host_mem == MAP_FAILED)
		return EXIT_FAILURE;
	madvise(host_mem, HOST_MAX_THREADS * region, MADV_HUGEPAGE);
	memset(host_mem, 1, HOST_MAX_THREADS * region);
	printf("vCPU scaling: %llu MiB private per vCPU, best of %d (M pages/s touched, "
	       "M reads/s)\n", (unsigned long long)(region / MIB), REPS);
	for (b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
		static struct result reps[5][MAX_RUNS];	/* counts[0..3], then the converter's */
		double tmed[5], rmed[5], host[5][REPS];
		struct result res[5], conv, alone;
		int rep, nruns[5] = { 0 }, ntouch[5] = { 0 }, nread[5] = { 0 };

		memset(res, 0, sizeof(res));

		if (only && strcmp(only, backends[b]))
			continue;
		/*
		 * The runs of every configuration take turns, rep by rep: a
		 * burst of load from elsewhere on the host falls on all of them
		 * alike, not on the 2-vCPU runs that happened to be next.
		 */
		for (rep = 0; rep < REPS; rep++) {
			for (i = 0; i < 5; i++)
				if (config_runs(i, only_n, conv_only, counts))
					run_once(backends[b], i < 4 ? counts[i] : 1, i == 4,
						 &reps[i][nruns[i]++]);
			host[0][rep] = host_reads(host_mem, 1);
			host[1][rep] = host_reads(host_mem, 2);
			host[2][rep] = host[1][rep] / host[0][rep];
			host[3][rep] = host_reads(host_mem, HOST_MAX_THREADS);
			host[4][rep] = host[3][rep] / host[1][rep];
		}
		/*
		 * A run whose guest threads waited for a CPU (another process
		 * had one of them) does not count: a 2-vCPU run on one free CPU
		 * measures the host's load, and a 1-vCPU run hardly notices it.
		 * The configurations short of REPS runs that count get more, in
		 * turn, up to MAX_RUNS each.
		 */
		for (rep = REPS; rep < MAX_RUNS; rep++) {
			bool more = false;

			for (i = 0; i < 5; i++) {
				if (!config_runs(i, only_n, conv_only, counts) ||
				    enough_counted(reps[i], nruns[i], i == 4))
					continue;
				run_once(backends[b], i < 4 ? counts[i] : 1, i == 4,
					 &reps[i][nruns[i]++]);
				more = true;
			}
			if (!more)
				break;
		}
		for (i = 0; i < 5; i++)
			qsort(host[i], REPS, sizeof(double), cmp_double);
		for (i = 0; i < 5; i++)
			if (config_runs(i, only_n, conv_only, counts))
				pick(reps[i], nruns[i], i == 4, &res[i], &tmed[i], &rmed[i],
				     &ntouch[i], &nread[i]);
		conv = res[4];
		if (conv_only) {
			printf("  %-4s 1 vCPU with a converter elsewhere: access %7.2f M/s "
			       "(median %.2f; %.0f ns CPU/read, %" PRIu64 " sleeps, %" PRIu64
			       " preempted), %" PRIu64 " conversions meanwhile; %d of %d runs "
			       "counted\n", backends[b],
			       conv.read_pps / 1e6, rmed[4] / 1e6, per_read(&conv, 1),
			       conv.read.sleeps, conv.read.preempted, conv.conversions, nread[4],
			       nruns[4]);
			continue;
		}
		for (i = 0; i < 4; i++) {
			if (only_n && counts[i] != only_n)
				continue;
			printf("  %-4s %u vCPUs: touch %5.2f M/s (median %5.2f; %4.0f ns CPU/page, "
			       "%3" PRIu64 " sleeps)  access %6.2f M/s (median %6.2f; %3.0f ns "
			       "CPU/read, %3" PRIu64 " sleeps)  runs counted: %d and %d of %d\n",
			       backends[b], counts[i],
			       res[i].touch_pps / 1e6, tmed[i] / 1e6,
			       (double)res[i].touch.cpu / (double)(counts[i] * (region / PAGE)),
			       res[i].touch.sleeps, res[i].read_pps / 1e6, rmed[i] / 1e6,
			       per_read(&res[i], counts[i]), res[i].read.sleeps, ntouch[i],
			       nread[i], nruns[i]);
			if (!ntouch[i] || !nread[i])
				printf("  %-4s %u vCPUs: no %s run had a CPU per thread (another "
				       "process held one): those figures are the host's load, and "
				       "no goal counts them as met\n", backends[b], counts[i],
				       !ntouch[i] && !nread[i] ? "touch or access" :
				       !ntouch[i] ? "touch" : "access");
		}
		if (only_n)
			continue;
		alone = res[0];
		printf("  %-4s 1 vCPU with a converter elsewhere: access %7.2f M/s (median %.2f; "
		       "%.2fx alone, %.0f ns CPU/read, %" PRIu64 " sleeps, %" PRIu64
		       " preempted), %" PRIu64 " conversions meanwhile; %d of %d runs counted\n",
		       backends[b], conv.read_pps / 1e6, rmed[4] / 1e6,
		       conv.read_pps / alone.read_pps, per_read(&conv, 1), conv.read.sleeps,
		       conv.read.preempted, conv.conversions, nread[4], nruns[4]);
		printf("  %-4s host, plain reads of the same pattern, no model, in turn with the "
		       "runs: median 1 thread %.2f M/s, 2 threads %.2f M/s; 2 vs 1 of a turn: "
		       "median %.2fx (%.2fx to %.2fx); 8 threads %.2f M/s, 8 vs 2 of a turn: "
		       "median %.2fx (%.2fx to %.2fx)\n", backends[b], host[0][REPS / 2] / 1e6,
		       host[1][REPS / 2] / 1e6, host[2][REPS / 2], host[2][0], host[2][REPS - 1],
		       host[3][REPS / 2] / 1e6, host[4][REPS / 2], host[4][0], host[4][REPS - 1]);
		printf("  %-4s medians: 2 vs 1 vCPUs touch %.2fx access %.2fx; 8 vs 2 touch %.2fx "
		       "access %.2fx; converter %.2fx alone\n", backends[b], tmed[1] / tmed[0],
		       rmed[1] / rmed[0], tmed[3] / tmed[1], rmed[3] / rmed[1], rmed[4] / rmed[0]);
		scaling_summary(backends[b], "touch", 2, 1, res[1].touch_pps, res[0].touch_pps, 1.7,
				ntouch[1] && ntouch[0]);
		scaling_summary(backends[b], "access", 2, 1, res[1].read_pps, res[0].read_pps, 1.7,
				nread[1] && nread[0]);
		scaling_summary(backends[b], "touch", 8, 2, res[3].touch_pps, res[1].touch_pps, 1.0,
				ntouch[3] && ntouch[1]);
		scaling_summary(backends[b], "access", 8, 2, res[3].read_pps, res[1].read_pps, 1.0,
				nread[3] && nread[1]);
		{
			char goal[96], o[48], p[48];

			snprintf(goal, sizeof(goal),
				 "%s access with conversions elsewhere >= 0.7x alone", backends[b]);
			snprintf(o, sizeof(o), "%.2f M/s", conv.read_pps / 1e6);
			snprintf(p, sizeof(p), "alone %.2f M/s", alone.read_pps / 1e6);
			summary(goal, o, p, conv.read_pps / alone.read_pps,
				nread[4] && nread[0] && conv.read_pps / alone.read_pps >= 0.7);
		}
		cpu_summary(backends[b], "touch", "page", "2 vCPUs", "1 vCPU",
			    (double)res[1].touch.cpu / (2 * (region / PAGE)),
			    (double)res[0].touch.cpu / (region / PAGE));
		cpu_summary(backends[b], "access", "read", "2 vCPUs", "1 vCPU", per_read(&res[1], 2),
			    per_read(&res[0], 1));
		cpu_summary(backends[b], "access", "read", "8 vCPUs", "2 vCPUs", per_read(&res[3], 8),
			    per_read(&res[1], 2));
		cpu_summary(backends[b], "access", "read", "conversions elsewhere", "alone",
			    per_read(&conv, 1), per_read(&res[0], 1));
	}
	return EXIT_SUCCESS;
}
