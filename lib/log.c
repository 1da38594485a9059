/* SPDX-License-Identifier: MIT */
/*
 * The log sink: one process-wide callback.  A sink set with ccvm_set_log()
 * gets every level and filters for itself (as libbpf's print callback);
 * the default one prints to stderr the levels up to CCVM_LOG_LEVEL (warn,
 * info or debug; warn when unset), read at the first message.  Messages
 * are formatted before the lock is taken, and the callback runs under
 * that lock, so two messages never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* CCVM_LOG_LEVEL, parsed once: -1 until read. */
static _Atomic int default_level = -1;

static int parse_level(const char *s)
{
	if (!s || !*s)
		return CCVM_LOG_WARN;
	if (!strcmp(s, "debug") || !strcmp(s, "2"))
		return CCVM_LOG_DEBUG;
	if (!strcmp(s, "info") || !strcmp(s, "1"))
		return CCVM_LOG_INFO;
	return CCVM_LOG_WARN;
}

static int default_sink_level(void)
{
	int level = atomic_load_explicit(&default_level, memory_order_relaxed);

	if (level < 0) {
		level = parse_level(getenv("CCVM_LOG_LEVEL"));
		atomic_store_explicit(&default_level, level, memory_order_relaxed);
	}
	return level;
}

static void default_log(enum ccvm_log_level level, const char *msg, void *ctx)
{
	static const char *const names[] = { "warning", "info", "debug" };

	(void)ctx;
	if ((int)level <= default_sink_level())
		fprintf(stderr, "libccvm: %s: %s\n", names[level], msg);
}

/* Process-wide, no platform's: a plain mutex in both modes. */
static struct ccvm_mutex log_lock = CCVM_MUTEX_INITIALIZER("log_lock");
static ccvm_log_fn log_fn = default_log;
static void *log_ctx;
/* Whether the default sink is installed, read without the lock. */
static _Atomic bool log_default = true;

ccvm_log_fn ccvm_set_log(ccvm_log_fn fn, void *ctx)
{
	ccvm_log_fn old;

	ccvm_mutex_lock(&log_lock);
	old = log_fn;
	log_fn = fn ? fn : default_log;
	log_ctx = fn ? ctx : NULL;
	atomic_store(&log_default, fn == NULL);
	ccvm_mutex_unlock(&log_lock);
	return old;
}

void ccvm_log(enum ccvm_log_level level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	/* The default sink drops it anyway: do not format it. */
	if (atomic_load(&log_default) && (int)level > default_sink_level())
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ccvm_mutex_lock(&log_lock);
	log_fn(level, msg, log_ctx);
	ccvm_mutex_unlock(&log_lock);
}
