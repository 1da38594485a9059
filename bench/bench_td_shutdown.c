/* SPDX-License-Identifier: MIT */
/*
 * TD shutdown: dynamic removal versus teardown reclaim, against the
 * published figures (docs/semantics.md section 12, Adrian Hunter's 2025
 * measurements): 4 vCPUs / 18 GB, 72 s -> 24 s; 32 vCPUs / 107 GB,
 * 517 s -> 134 s; 64 vCPUs / 400 GB, 5,539 s -> 467 s (the cover letter of
 * KVM_TDX_TERMINATE_VM).  The model's fit and its miss of the third row are
 * studies/study_002.c's subject (docs/studies/002.md); here the rows also
 * measure the library's own speed: a SUMMARY line per row gives its wall
 * seconds against the goal (issue: the 107 GB row under 15 s, the 400 GB
 * row under 60 s).
 *
 * Each row builds a TD of that size, maps every page of its guest_memfd
 * into the S-EPT (KVM_PRE_FAULT_MEMORY: PAGE.AUG, the pages are never
 * written, so no guest byte is ever materialised), then shuts it down two
 * ways and reports the simulated seconds the cost model charged:
 *   dynamic    gmem closed before the VM (KVM 6.16): every page goes by
 *              BLOCK, TRACK, a kick of every vCPU, REMOVE, WBINVD, clear;
 *   terminate  KVM_TDX_TERMINATE_VM first: the HKID is released, then
 *              every page goes by one RECLAIM and a clear.
 * The cost model's TDX defaults (lib/stats.c) were fitted on the first row
 * only; the second row's ratio is the model's prediction, checked against
 * the published 517 / 134 = 3.86 (the program fails beyond 15 %).
 *
 * The TDs of a row are built, mapped and shut down in parallel, one
 * thread and one platform each.  Also
 * printed: wall seconds, and the memory per 4K guest page with every page
 * mapped: the platform's model_bytes, and the process's peak resident
 * memory over all the pages of the row's TDs (guest bytes never written
 * are never touched, so neither grows with guest memory, only metadata).
 *
 * Usage: bench_td_shutdown [-r ROW] [-d DIVISOR] [-D] [-m MODE]
 *   -r ROW      only row 1, 2 or 3 (row 3 runs at full size only this way)
 *   -d DIVISOR  guest sizes divided by DIVISOR (quick runs; the ratio is
 *               unchanged, the seconds scale down)
 *   -D          also the deferred-removal hook (gmem_defer_removal RFC)
 *   -m MODE     only one shutdown (dynamic, terminate, deferred): profiling
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "../backends/tdx/tdx.h"

#define GIB		(1ull << 30)
#define MAX_VCPUS	64
#define TOLERANCE	0.15

struct row {
	unsigned int vcpus;
	uint64_t guest_gb;	/* published "GB"; taken as GiB (QEMU -m NG) */
	double pub_dynamic, pub_reclaim;
};

static const struct row rows[] = {
	{ 4, 18, 72.0, 24.0 },
	{ 32, 107, 517.0, 134.0 },
	{ 64, 400, 5539.0, 467.0 },
};

/*
 * Wall-time goals of a whole row (both TDs built, mapped and shut down,
 * in parallel): row 2 under 15 s, row 3 under 60 s.  Row 3 runs at 1/8 of
 * its size unless -r 3 asks for it alone; its wall time is then the
 * measured one times 8, labelled "est.", and judged neither met nor
 * missed: the work is linear in pages but the time is not quite (mapping
 * a page took 320 ns at 1/8 of the size and 380 ns at full size on the
 * 2-core hosts: the metadata outgrows the caches and the TLB), so only
 * `bench_td_shutdown -r 3` decides that goal.
 */
static const double row_goal_s[] = { 0, 15.0, 60.0 };
#define ROW3_DIVISOR	8

enum mode { MODE_DYNAMIC, MODE_TERMINATE, MODE_DEFER };

static const char *const mode_names[] = {
	[MODE_DYNAMIC] = "dynamic",
	[MODE_TERMINATE] = "terminate",
	[MODE_DEFER] = "deferred",
};

struct run {
	/* in */
	const struct row *row;
	enum mode mode;
	uint64_t bytes;

	/* out */
	int err;
	const char *what;
	double sim_s, wall_s, map_wall_s;
	uint64_t model_bytes;		/* platform model_bytes with every page mapped */
	uint64_t ev[CCVM_STATS_MAX_EVENTS];	/* during the shutdown */
};


static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds the process used so far, every thread. */
static double cpu_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* The process's peak resident memory so far. */
static uint64_t peak_rss_bytes(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (uint64_t)ru.ru_maxrss * 1024;
}

/*
 * Every page into the S-EPT.  One thread per TD: the TDs of a row map in
 * parallel, and two threads on one TD only fight over its locks.
 */
static int map_all(struct ccvm_vcpu *v, uint64_t bytes)
{
	uint64_t gpa = 0, size = bytes;
	int err = 0;

	/* Partial progress is allowed: go on until the range is mapped. */
	while (size && !err)
		err = ccvm_vcpu_pre_fault_memory(v, &gpa, &size);
	return err;
}

static void quiet(enum ccvm_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level == CCVM_LOG_WARN)
		fprintf(stderr, "libccvm: %s\n", msg);
}

#define FAIL(r, call) do { (r)->what = #call; goto out; } while (0)

static void *run_one(void *arg)
{
	struct run *r = arg;
	unsigned int nv = r->row->vcpus, i;
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
		.backend = "tdx",
		/* the guest, its S-EPT (1/512), control pages and slack */
		.mem_bytes = r->bytes + r->bytes / 256 + 64 * (1ull << 20),
		.nr_cpus = 4,
		.seed = 1);
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = MAX_VCPUS);
	struct ccvm_stats st0 = { .sz = sizeof(st0) }, st1 = { .sz = sizeof(st1) };
	struct ccvm_memory_region mr = { 0 };
	struct ccvm_vcpu *v[MAX_VCPUS] = { 0 };
	struct ccvm_platform *p = NULL;
	struct ccvm_vm *vm = NULL;
	struct ccvm_gmem *g = NULL;
	uint64_t free0;
	double t0;

	r->err = ccvm_platform_create(&po, &p);
	if (r->err)
		FAIL(r, ccvm_platform_create);
	ccvm_platform_get_stats(p, &st0);
	free0 = st0.free_pages;
	r->err = ccvm_vm_create(p, &vo, &vm);
	if (r->err)
		FAIL(r, ccvm_vm_create);
	r->err = ccvm_gmem_create(vm, r->bytes, 0, &g);
	if (r->err)
		FAIL(r, ccvm_gmem_create);
	mr.slot = 0;
	mr.flags = CCVM_MEM_GUEST_MEMFD;
	mr.guest_phys_addr = 0;
	mr.memory_size = r->bytes;
	mr.gmem = g;
	r->err = ccvm_vm_set_user_memory_region(vm, &mr);
	if (r->err)
		FAIL(r, ccvm_vm_set_user_memory_region);
	r->err = ccvm_vm_set_memory_attributes(vm, 0, r->bytes, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	if (r->err)
		FAIL(r, ccvm_vm_set_memory_attributes);
	for (i = 0; i < nv; i++) {
		r->err = ccvm_vcpu_create(vm, i, &v[i]);
		if (r->err)
			FAIL(r, ccvm_vcpu_create);
	}
	r->err = ccvm_vm_finalize(vm);
	if (r->err)
		FAIL(r, ccvm_vm_finalize);

	t0 = now_s();
	r->err = map_all(v[0], r->bytes);
	if (r->err)
		FAIL(r, ccvm_vcpu_pre_fault_memory);
	r->map_wall_s = now_s() - t0;
	ccvm_platform_get_stats(p, &st0);
	r->model_bytes = st0.model_bytes;

	/* The shutdown under test. */
	t0 = now_s();
	if (r->mode == MODE_TERMINATE) {
		r->err = ccvm_vm_terminate(vm);
		if (r->err)
			FAIL(r, ccvm_vm_terminate);
	}
	if (r->mode == MODE_DEFER) {
		r->err = ccvm_vm_set_study_knob(vm, CCVM_STUDY_GMEM_DEFER_REMOVAL,
						CCVM_GMEM_DEFER_RFC);
		if (r->err)
			FAIL(r, ccvm_vm_set_study_knob);
	}
	for (i = 0; i < nv; i++) {
		ccvm_vcpu_close(v[i]);
		v[i] = NULL;
	}
	ccvm_gmem_close(g);
	g = NULL;
	ccvm_vm_close(vm);
	vm = NULL;
	r->wall_s = now_s() - t0;
	ccvm_platform_get_stats(p, &st1);
	r->sim_s = (double)(st1.sim_ns - st0.sim_ns) * 1e-9;
	for (i = 0; i < CCVM_STATS_MAX_EVENTS; i++)
		r->ev[i] = st1.events[i] - st0.events[i];
	if (st1.free_pages != free0 || st1.leaked_pages) {
		r->err = -EIO;
		r->what = "the shutdown left pages behind";
		goto out;
	}
out:
	for (i = 0; i < nv; i++)
		if (v[i])
			ccvm_vcpu_close(v[i]);
	if (g)
		ccvm_gmem_close(g);
	if (vm)
		ccvm_vm_close(vm);
	if (p)
		ccvm_platform_destroy(p);
	return NULL;
}

static void per_page(const struct run *r, uint64_t pages)
{
	printf("        per page: block %.2f track %.2f ipi %.2f remove %.2f wbinvd %.2f "
	       "reclaim %.2f clear %.2f\n",
	       (double)r->ev[CCVM_EV_TDH_MEM_RANGE_BLOCK] / (double)pages,
	       (double)r->ev[CCVM_EV_TDH_MEM_TRACK] / (double)pages,
	       (double)r->ev[CCVM_EV_IPI] / (double)pages,
	       (double)r->ev[CCVM_EV_TDH_MEM_PAGE_REMOVE] / (double)pages,
	       (double)r->ev[CCVM_EV_TDH_PHYMEM_PAGE_WBINVD] / (double)pages,
	       (double)r->ev[CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM] / (double)pages,
	       (double)r->ev[CCVM_EV_PAGE_CLEAR] / (double)pages);
}

int main(int argc, char **argv)
{
	unsigned int first = 0, last = 2, k, m, nr_modes = 2, only = ~0u;
	uint64_t divisor = 1;
	bool fail = false;
	int opt;

	while ((opt = getopt(argc, argv, "r:d:Dm:")) != -1) {
		switch (opt) {
		case 'r':
			first = last = (unsigned int)atoi(optarg) - 1;
			if (first > 2) {
				fprintf(stderr, "-r: row 1, 2 or 3\n");
				return 2;
			}
			break;
		case 'd':
			divisor = strtoull(optarg, NULL, 0);
			if (!divisor) {
				fprintf(stderr, "-d: a divisor >= 1\n");
				return 2;
			}
			break;
		case 'D':
			nr_modes = 3;
			break;
		case 'm':
			/* profiling: one mode only (no ratio) */
			for (only = 0; only < 3 && strcmp(optarg, mode_names[only]); only++)
				;
			if (only == 3) {
				fprintf(stderr, "-m: dynamic, terminate or deferred\n");
				return 2;
			}
			break;
		default:
			fprintf(stderr, "usage: %s [-r ROW] [-d DIVISOR] [-D] [-m MODE]\n", argv[0]);
			return 2;
		}
	}
	ccvm_set_log(quiet, NULL);

	printf("TD shutdown: dynamic removal (gmem closed first) vs teardown reclaim\n");
	printf("cost model: the defaults of lib/stats.c, fitted on row 1 only%s\n",
	       divisor > 1 ? " (guest sizes scaled down: seconds scale too)" : "");
	printf("row vCPUs guest    mode        sim s  published    wall s  "
	       "model B/page  peak RSS B/page\n");
	for (k = first; k <= last; k++) {
		const struct row *row = &rows[k];
		/* Row 3 at full size only when asked for alone. */
		uint64_t row_div = k == 2 && first != last ? ROW3_DIVISOR : 1;
		uint64_t bytes = (row->guest_gb * GIB / divisor / row_div) &
				 ~(CCVM_HPAGE_2M_SIZE - 1);
		uint64_t pages = bytes >> CCVM_PAGE_SHIFT, rss_peak;
		struct run runs[3];
		bool ran[3];
		pthread_t th[3];
		double ratio, pub_ratio = row->pub_dynamic / row->pub_reclaim, scale, err;
		double t0 = now_s(), c0 = cpu_s();

		for (m = 0; m < nr_modes; m++) {
			ran[m] = only == ~0u || m == only;
			if (!ran[m])
				continue;
			runs[m] = (struct run){ .row = row, .mode = (enum mode)m, .bytes = bytes };
			if (pthread_create(&th[m], NULL, run_one, &runs[m])) {
				fprintf(stderr, "pthread_create failed\n");
				return 1;
			}
		}
		for (m = 0; m < nr_modes; m++)
			if (ran[m])
				pthread_join(th[m], NULL);
		rss_peak = peak_rss_bytes();
		scale = (double)(divisor * row_div);
		for (m = 0; m < nr_modes; m++) {
			struct run *r = &runs[m];
			double pub = m == MODE_DYNAMIC ? row->pub_dynamic : row->pub_reclaim;

			if (!ran[m])
				continue;
			if (r->err) {
				fprintf(stderr, "row %u %s: %s: %s\n", k + 1, mode_names[m], r->what,
					ccvm_strerror(r->err));
				return 1;
			}
			printf("%-3u %5u %3" PRIu64 " GiB  %-10s %7.1f  %9.1f  %8.2f  %12.1f  %10.1f\n",
			       k + 1, row->vcpus, row->guest_gb, mode_names[m], r->sim_s,
			       pub / scale, r->wall_s,
			       (double)r->model_bytes / (double)pages,
			       (double)rss_peak / (double)(pages * nr_modes));
			per_page(r, pages);
		}
		if (only != ~0u)
			continue;
		ratio = runs[MODE_DYNAMIC].sim_s / runs[MODE_TERMINATE].sim_s;
		err = ratio / pub_ratio - 1.0;
		printf("    ratio dynamic/terminate %.2f, published %.2f (%+.1f %%)%s\n"
		       "    row: %.1f s wall, %.1f s CPU (mapping the dynamic TD: %.1f s wall)\n\n",
		       ratio, pub_ratio, err * 100.0,
		       k == 0 ? ", fitted" : (err > TOLERANCE || err < -TOLERANCE ?
					       ": OUTSIDE 15 %" : ": predicted, within 15 %"),
		       now_s() - t0, cpu_s() - c0, runs[MODE_DYNAMIC].map_wall_s);
		/* Row 3 is a known miss of the model (docs/studies/002.md). */
		if (k == 1 && (err > TOLERANCE || err < -TOLERANCE))
			fail = true;
		if (row_goal_s[k] > 0 && divisor == 1) {
			double wall = (now_s() - t0) * (double)row_div;
			char goal[96];

			snprintf(goal, sizeof(goal), "TD shutdown row %u (%u vCPUs %" PRIu64
				 " GiB) wall s%s", k + 1, row->vcpus, row->guest_gb,
				 row_div > 1 ? " (est. from 1/8 size)" : "");
			printf("SUMMARY|%s|%.1f|%.0f|%.2f|%s\n", goal, wall, row_goal_s[k],
			       wall / row_goal_s[k], row_div > 1 ? "est., run -r 3" :
			       wall <= row_goal_s[k] ? "yes" : "no");
		}
	}
	return fail ? 1 : 0;
}
