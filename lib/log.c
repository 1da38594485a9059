/* SPDX-License-Identifier: MIT */
/*
 * The log sink: one process-wide callback, warnings to stderr by default.
 * Messages are formatted before the lock is taken, and the callback runs
 * under that lock, so two messages never interleave.
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static void default_log(enum ccvm_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level == CCVM_LOG_WARN)
		fprintf(stderr, "libccvm: %s\n", msg);
}

/* Process-wide, no platform's: a plain mutex in both modes. */
static struct ccvm_mutex log_lock = CCVM_MUTEX_INITIALIZER("log_lock");
static ccvm_log_fn log_fn = default_log;
static void *log_ctx;

ccvm_log_fn ccvm_set_log(ccvm_log_fn fn, void *ctx)
{
	ccvm_log_fn old;

	ccvm_mutex_lock(&log_lock);
	old = log_fn;
	log_fn = fn ? fn : default_log;
	log_ctx = fn ? ctx : NULL;
	ccvm_mutex_unlock(&log_lock);
	return old;
}

void ccvm_log(enum ccvm_log_level level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ccvm_mutex_lock(&log_lock);
	log_fn(level, msg, log_ctx);
	ccvm_mutex_unlock(&log_lock);
}
