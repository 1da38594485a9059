/* SPDX-License-Identifier: MIT */
/*
 * Tracing: a per-platform callback that receives every backend op, exit
 * and counted event, and a built-in writer that turns the records into
 * Chrome trace-event JSON (Perfetto and chrome://tracing open it).
 *
 * Timestamps are wall-clock microseconds since the trace was opened, so
 * concurrent vCPUs show up side by side; each record also carries the
 * simulated clock in its args.  On a serial platform the timestamps are
 * the simulated clock too (ccvm_trace_clock()): one schedule, one trace.  Lanes: one process per VM (pid = VM id,
 * 0 for the platform), one thread per vCPU (tid = vCPU id + 1, 0 for the
 * VMM side).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct ccvm_trace_writer {
	struct ccvm_platform *p;
	FILE *f;
	uint64_t t0;
	uint64_t nr;
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

static void writer_record(const struct ccvm_trace_record *rec, void *ctx)
{
	struct ccvm_trace_writer *w = ctx;
	uint64_t wall = rec->wall_ns ? rec->wall_ns : ccvm_trace_clock(w->p);
	double ts = wall > w->t0 ? (double)(wall - w->t0) / 1000.0 : 0.0;

	fputs(w->nr++ ? ",\n" : "\n", w->f);
	fputs("{\"name\":", w->f);
	json_string(w->f, rec->name ? rec->name : "?");
	fprintf(w->f, ",\"cat\":\"%s\",\"pid\":%u,\"tid\":%d,\"ts\":%.3f",
		rec->kind < CCVM_ARRAY_SIZE(kind_names) ? kind_names[rec->kind] : "other",
		rec->vm_id, rec->vcpu_id + 1, ts);
	if (rec->dur_ns)
		fprintf(w->f, ",\"ph\":\"X\",\"dur\":%.3f", (double)rec->dur_ns / 1000.0);
	else
		fputs(",\"ph\":\"i\",\"s\":\"t\"", w->f);
	fputs(",\"args\":{", w->f);
	if (rec->gfn != CCVM_INVALID_GFN)
		fprintf(w->f, "\"gfn\":\"0x%llx\",", (unsigned long long)rec->gfn);
	fprintf(w->f, "\"arg0\":%llu,\"arg1\":%llu,\"ret\":%lld,\"sim_ns\":%llu}}",
		(unsigned long long)rec->arg0, (unsigned long long)rec->arg1,
		(long long)rec->ret, (unsigned long long)rec->sim_ns);
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
	fputs("\n],\"displayTimeUnit\":\"ns\"}\n", w->f);
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
	free(w);
	return err;
}

int ccvm_trace_open(struct ccvm_platform *p, const char *path)
{
	struct ccvm_trace_writer *w;

	if (!p || !path || !path[0])
		return ccvm_fail(-EINVAL, "NULL platform or empty path");
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->f = fopen(path, "w");
	if (!w->f) {
		int err = -errno;

		free(w);
		return ccvm_fail(err, "cannot open the trace file %s: %s", path,
				 strerror(-err));
	}
	w->p = p;
	w->t0 = ccvm_trace_clock(p);
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

int ccvm_trace_close(struct ccvm_platform *p)
{
	if (!p)
		return -EINVAL;
	return ccvm_trace_writer_close(p);
}
