/* SPDX-License-Identifier: MIT */
/*
 * Tracing: a per-platform callback that receives every backend op, exit
 * and counted event, and a built-in writer that turns the records into
 * Chrome trace-event JSON (Perfetto and chrome://tracing open it).
 *
 * Timestamps are wall-clock microseconds since the trace was opened, so
 * concurrent vCPUs show up side by side, or the simulated clock by option;
 * each record carries both in its args.  On a serial platform wall-clock
 * time is the simulated clock too (ccvm_trace_clock()): one schedule, one
 * trace.  Lanes: one process per VM (pid = VM id, 0 for the platform), one
 * thread per vCPU (tid = vCPU id + 1) and one per VMM thread that works on
 * the VM (tid 0 for the first, VMM_TID + n for the n-th after it), each
 * named by metadata records the first time it appears.  A size bound stops
 * the records (not the file's end) once reached.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/*
 * Lanes already named: (pid, tid) pairs, and processes (tid -1).  A VMM
 * lane also records its thread: two VMM threads never share a lane, so
 * their slices cannot overlap in one.
 */
struct trace_lane {
	uint32_t pid;
	int32_t tid;
	bool vmm;
	pthread_t thread;
};

/* VMM lanes after a VM's first: above any vCPU's tid (vCPU ids are 32-bit). */
#define VMM_TID		(1 << 30)

struct ccvm_trace_writer {
	struct ccvm_platform *p;
	FILE *f;
	uint64_t t0;		/* trace clock at open */
	uint64_t sim0;		/* simulated clock at open */
	uint64_t nr;		/* JSON objects written */
	uint64_t records;	/* records written */
	uint64_t dropped;	/* records past max_bytes */
	uint64_t bytes;
	struct ccvm_trace_opts opts;
	struct trace_lane *lanes;
	size_t nr_lanes, cap_lanes;
	bool full;
	int err;		/* first write error (negative errno), or 0 */
};

/* Remember the first failed write: stdio reports it only through ferror(). */
static void writer_check(struct ccvm_trace_writer *w)
{
	if (!w->err && ferror(w->f))
		w->err = errno > 0 ? -errno : -EIO;
}

uint64_t ccvm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t ccvm_trace_clock(struct ccvm_platform *p)
{
	if (ccvm_sched_of(p))
		return ccvm_counters_sim_ns(&p->stats, &p->costs);
	return ccvm_now_ns();
}

void ccvm_trace_emit(struct ccvm_platform *p, const struct ccvm_trace_record *rec)
{
	ccvm_trace_fn fn;

	ccvm_mutex_lock(&p->trace_lock);
	fn = atomic_load(&p->trace_fn);
	if (fn)
		fn(rec, atomic_load(&p->trace_ctx));
	ccvm_mutex_unlock(&p->trace_lock);
}

int ccvm_platform_set_trace(struct ccvm_platform *p, ccvm_trace_fn fn, void *ctx)
{
	if (!p)
		return -EINVAL;
	ccvm_mutex_lock(&p->trace_lock);
	atomic_store(&p->trace_ctx, ctx);
	atomic_store(&p->trace_fn, fn);
	ccvm_op_hooks_set(p, CCVM_OP_HOOK_TRACE, fn != NULL);
	ccvm_mutex_unlock(&p->trace_lock);
	return 0;
}

static const char *const kind_names[] = {
	[CCVM_TRACE_OP] = "op",
	[CCVM_TRACE_EXIT] = "exit",
	[CCVM_TRACE_EVENT] = "event",
	[CCVM_TRACE_API] = "api",
};

/* Names are static identifiers of ours, but keep the JSON valid anyway. */
static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if ((unsigned char)*s >= 0x20)
			fputc(*s, f);
	}
	fputc('"', f);
}

/* One JSON object: the separator first, the byte count after. */
static void obj_begin(struct ccvm_trace_writer *w)
{
	fputs(w->nr++ ? ",\n" : "\n", w->f);
}

static void obj_end(struct ccvm_trace_writer *w, long before)
{
	long after = ftell(w->f);

	if (after >= 0 && before >= 0)
		w->bytes += (uint64_t)(after - before);
}

static void meta(struct ccvm_trace_writer *w, const char *what, uint32_t pid, int32_t tid,
		 const char *name, int64_t sort)
{
	long before = ftell(w->f);

	obj_begin(w);
	fprintf(w->f, "{\"name\":\"%s\",\"ph\":\"M\",\"pid\":%u,\"tid\":%d,\"args\":{\"name\":",
		what, pid, tid);
	json_string(w->f, name);
	fputs("}}", w->f);
	obj_end(w, before);
	if (sort >= 0) {
		before = ftell(w->f);
		obj_begin(w);
		fprintf(w->f, "{\"name\":\"%s_sort_index\",\"ph\":\"M\",\"pid\":%u,\"tid\":%d,"
			"\"args\":{\"sort_index\":%lld}}", what[0] == 'p' ? "process" : "thread",
			pid, tid, (long long)sort);
		obj_end(w, before);
	}
}

static bool lane_seen(struct ccvm_trace_writer *w, uint32_t pid, int32_t tid)
{
	size_t i;

	for (i = 0; i < w->nr_lanes; i++)
		if (w->lanes[i].pid == pid && w->lanes[i].tid == tid)
			return true;
	return false;
}

/* Name the process and thread of a lane the first time it is used. */
static void lane_name(struct ccvm_trace_writer *w, uint32_t pid, int32_t tid)
{
	char name[64];
	struct trace_lane *l;

	if (lane_seen(w, pid, tid))
		return;
	if (w->nr_lanes + 2 > w->cap_lanes) {
		size_t cap = w->cap_lanes ? 2 * w->cap_lanes : 16;

		l = realloc(w->lanes, cap * sizeof(*l));
		if (!l)
			return;		/* unnamed, but the record is still written */
		w->lanes = l;
		w->cap_lanes = cap;
	}
	if (!lane_seen(w, pid, -1)) {
		const char *backend = w->p->caps.name ? w->p->caps.name : "?";

		if (pid)
			snprintf(name, sizeof(name), "VM %u (%s)", pid, backend);
		else
			snprintf(name, sizeof(name), "platform (%s)", backend);
		meta(w, "process_name", pid, 0, name, pid);
		w->lanes[w->nr_lanes++] = (struct trace_lane){ .pid = pid, .tid = -1 };
	}
	if (tid >= VMM_TID)
		snprintf(name, sizeof(name), "VMM thread %d", tid - VMM_TID + 1);
	else if (tid)
		snprintf(name, sizeof(name), "vCPU %d", tid - 1);
	else
		snprintf(name, sizeof(name), "VMM");
	meta(w, "thread_name", pid, tid, name, tid);
	w->lanes[w->nr_lanes++] = (struct trace_lane){
		.pid = pid, .tid = tid, .vmm = tid == 0 || tid >= VMM_TID, .thread = pthread_self(),
	};
}

/*
 * The lane of a VMM-side record of VM @pid: the one this thread already
 * has there, else the VM's next.  Records come one at a time (trace_lock)
 * on the thread doing the work, so pthread_self() names the VMM thread.
 */
static int32_t vmm_lane(const struct ccvm_trace_writer *w, uint32_t pid)
{
	pthread_t self = pthread_self();
	int32_t n = 0;
	size_t i;

	for (i = 0; i < w->nr_lanes; i++) {
		const struct trace_lane *l = &w->lanes[i];

		if (l->pid != pid || !l->vmm)
			continue;
		if (pthread_equal(l->thread, self))
			return l->tid;
		n++;
	}
	return n ? VMM_TID + n - 1 : 0;
}

/*
 * Counted events that repeat a record the file has anyway, under the
 * same occurrence: the op slice of the same call (gmem_prepare,
 * gmem_invalidate, guest_access) or the exit record.  The file keeps one
 * record, under one name, per occurrence; a callback still gets both.
 */
static bool event_repeats_a_record(uint32_t ev)
{
	switch (ev) {
	case CCVM_EV_GMEM_PREPARE:
	case CCVM_EV_GMEM_INVALIDATE:
	case CCVM_EV_GUEST_ACCESS:
	case CCVM_EV_EXIT:
	case CCVM_EV_MEMORY_FAULT_EXIT:
	case CCVM_EV_HYPERCALL_EXIT:
	case CCVM_EV_MMIO_EXIT:
		return true;
	default:
		return false;
	}
}

static double us_since(uint64_t now, uint64_t t0)
{
	return now > t0 ? (double)(now - t0) / 1000.0 : 0.0;
}

static void writer_record(const struct ccvm_trace_record *rec, void *ctx)
{
	struct ccvm_trace_writer *w = ctx;
	uint64_t wall = rec->wall_ns ? rec->wall_ns : ccvm_trace_clock(w->p);
	uint32_t kind = rec->kind < CCVM_ARRAY_SIZE(kind_names) ? rec->kind : CCVM_TRACE_EVENT;
	int32_t tid;
	double ts, dur;
	long before;

	if (w->opts.categories && !(w->opts.categories & (1u << kind)))
		return;
	if (rec->kind == CCVM_TRACE_EVENT && event_repeats_a_record(rec->id))
		return;
	if (w->full || (w->opts.max_bytes && w->bytes >= w->opts.max_bytes)) {
		w->full = true;
		w->dropped++;
		return;
	}
	if (w->opts.clock == CCVM_TRACE_CLOCK_SIM) {
		uint64_t start = rec->sim_ns - (rec->sim_dur_ns < rec->sim_ns ? rec->sim_dur_ns
								      : rec->sim_ns);

		ts = us_since(start, w->sim0);
		dur = (double)rec->sim_dur_ns / 1000.0;
	} else {
		ts = us_since(wall, w->t0);
		dur = (double)rec->dur_ns / 1000.0;
	}
	tid = rec->vcpu_id >= 0 ? rec->vcpu_id + 1 : vmm_lane(w, rec->vm_id);
	lane_name(w, rec->vm_id, tid);
	before = ftell(w->f);
	obj_begin(w);
	fputs("{\"name\":", w->f);
	json_string(w->f, rec->name ? rec->name : "unnamed");
	fprintf(w->f, ",\"cat\":\"%s\",\"pid\":%u,\"tid\":%d,\"ts\":%.3f",
		kind_names[kind], rec->vm_id, tid, ts);
	if (rec->kind == CCVM_TRACE_OP)
		fprintf(w->f, ",\"ph\":\"X\",\"dur\":%.3f", dur);
	else
		fputs(",\"ph\":\"i\",\"s\":\"t\"", w->f);
	fputs(",\"args\":{", w->f);
	if (rec->gfn != CCVM_INVALID_GFN)
		fprintf(w->f, "\"gfn\":\"0x%llx\",", (unsigned long long)rec->gfn);
	fprintf(w->f, "\"arg0\":%llu,\"arg1\":%llu,\"ret\":%lld,\"sim_ns\":%llu,"
		"\"wall_us\":%.3f}}",
		(unsigned long long)rec->arg0, (unsigned long long)rec->arg1,
		(long long)rec->ret, (unsigned long long)rec->sim_ns, us_since(wall, w->t0));
	obj_end(w, before);
	w->records++;
	writer_check(w);
}

int ccvm_trace_writer_close(struct ccvm_platform *p)
{
	struct ccvm_trace_writer *w;
	int err;

	ccvm_mutex_lock(&p->trace_lock);
	w = p->trace_writer;
	p->trace_writer = NULL;
	if (w && atomic_load(&p->trace_ctx) == w) {
		atomic_store(&p->trace_fn, NULL);
		atomic_store(&p->trace_ctx, NULL);
		ccvm_op_hooks_set(p, CCVM_OP_HOOK_TRACE, false);
	}
	ccvm_mutex_unlock(&p->trace_lock);
	if (!w)
		return 0;
	errno = 0;
	fprintf(w->f, "\n],\"displayTimeUnit\":\"ns\",\"otherData\":{\"clock\":\"%s\","
		"\"records\":\"%llu\",\"dropped\":\"%llu\",\"max_bytes\":\"%llu\"}}\n",
		w->opts.clock == CCVM_TRACE_CLOCK_SIM ? "simulated" : "wall",
		(unsigned long long)w->records, (unsigned long long)w->dropped,
		(unsigned long long)w->opts.max_bytes);
	writer_check(w);
	errno = 0;
	if (fflush(w->f) != 0 && !w->err)
		w->err = errno > 0 ? -errno : -EIO;
	writer_check(w);
	errno = 0;
	if (fclose(w->f) != 0 && !w->err)
		w->err = errno > 0 ? -errno : -EIO;
	err = w->err;
	if (err)
		ccvm_log(CCVM_LOG_DEBUG, "trace: a write failed (%d): the trace file is incomplete", err);
	free(w->lanes);
	free(w);
	return err;
}

int ccvm_trace_open_opts(struct ccvm_platform *p, const char *path,
			 const struct ccvm_trace_opts *uopts)
{
	struct ccvm_trace_writer *w;
	struct ccvm_trace_opts opts;
	int err;

	if (!p || !path || !path[0])
		return ccvm_fail(-EINVAL, "NULL platform or empty path");
	err = ccvm_opts_copy(&opts, sizeof(opts), uopts, uopts ? uopts->sz : 0);
	if (err)
		return err;
	if (opts.clock > CCVM_TRACE_CLOCK_SIM)
		return ccvm_fail(-EINVAL, "opts.clock %u: CCVM_TRACE_CLOCK_WALL or _SIM",
				 opts.clock);
	if (opts.categories & ~CCVM_TRACE_CAT_ALL)
		return ccvm_fail(-EINVAL, "opts.categories 0x%x: unknown bits 0x%x",
				 opts.categories, opts.categories & ~CCVM_TRACE_CAT_ALL);
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->f = fopen(path, "w");
	if (!w->f) {
		err = -errno;
		free(w);
		return ccvm_fail(err, "cannot open the trace file %s: %s", path,
				 strerror(-err));
	}
	w->p = p;
	w->opts = opts;
	w->t0 = ccvm_trace_clock(p);
	w->sim0 = ccvm_counters_sim_ns(&p->stats, &p->costs);
	fputs("{\"traceEvents\":[", w->f);
	writer_check(w);
	(void)ccvm_trace_writer_close(p);
	ccvm_mutex_lock(&p->trace_lock);
	p->trace_writer = w;
	atomic_store(&p->trace_ctx, w);
	atomic_store(&p->trace_fn, writer_record);
	ccvm_op_hooks_set(p, CCVM_OP_HOOK_TRACE, true);
	ccvm_mutex_unlock(&p->trace_lock);
	return 0;
}

int ccvm_trace_open(struct ccvm_platform *p, const char *path)
{
	return ccvm_trace_open_opts(p, path, NULL);
}

int ccvm_trace_close(struct ccvm_platform *p)
{
	if (!p)
		return ccvm_fail(-EINVAL, "NULL platform");
	return ccvm_trace_writer_close(p);
}
