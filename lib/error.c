/* SPDX-License-Identifier: MIT */
/*
 * What the library says about itself: the text of the errnos its calls
 * return, in the words of this model, the rule behind the calling thread's
 * last failure, and its version.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *ccvm_version(void)
{
	return CCVM_VERSION_STRING;
}

unsigned int ccvm_version_number(void)
{
	return CCVM_VERSION_NUMBER;
}

static const char *errno_name(int err)
{
	switch (err) {
	case -EINVAL: return "EINVAL";
	case -EEXIST: return "EEXIST";
	case -EFAULT: return "EFAULT";
	case -EIO: return "EIO";
	case -EBUSY: return "EBUSY";
	case -ENOMEM: return "ENOMEM";
	case -ENOSPC: return "ENOSPC";
	case -ENOENT: return "ENOENT";
	case -ENODEV: return "ENODEV";
	case -EOPNOTSUPP: return "EOPNOTSUPP";
	case -EACCES: return "EACCES";
	case -EAGAIN: return "EAGAIN";
	case -EINTR: return "EINTR";
	case -EPERM: return "EPERM";
	case -EDEADLK: return "EDEADLK";
	case -EBADF: return "EBADF";
	case -EFBIG: return "EFBIG";
	default: return "errno";
	}
}

/* The calling thread's last failure: "<function>: <rule> (-E...)". */
static _Thread_local char last_error[CCVM_LAST_ERROR_MAX];

int ccvm_fail_at(const char *func, int err, const char *fmt, ...)
{
	char rule[CCVM_LAST_ERROR_MAX];
	va_list ap;
	int room;

	va_start(ap, fmt);
	vsnprintf(rule, sizeof(rule), fmt, ap);
	va_end(ap);
	/* The function and the errno always fit; a long rule is cut. */
	room = (int)sizeof(last_error) - (int)strlen(func) - 20;
	snprintf(last_error, sizeof(last_error), "%s: %.*s (-%s)", func, room > 0 ? room : 0,
		 rule, errno_name(err));
	ccvm_log(CCVM_LOG_DEBUG, "%s", last_error);
	return err;
}

const char *ccvm_last_error(void)
{
	return last_error;
}

const char *ccvm_strerror(int err)
{
	static _Thread_local char buf[64];

	switch (err) {
	case 0:
		return "success";
	case -EINVAL:
		return "invalid argument or call out of order (ccvm_last_error() names the rule)";
	case -EEXIST:
		return "already exists (overlapping memslot, populated or accepted page, vCPU id)";
	case -EFAULT:
		return "memory fault: access does not match the memory attribute or backing";
	case -EIO:
		return "VM is bugged or dead";
	case -EBUSY:
		return "busy: objects still alive (VMs, gmem files, threads), or contention";
	case -ENOMEM:
		return "out of memory (host or simulated RAM)";
	case -ENOSPC:
		return "no key id (HKID/ASID) or slot left";
	case -ENOENT:
		return "no such object (memslot, mapping, backend, op) or file";
	case -ENODEV:
		return "gmem file not mappable (no CCVM_GMEM_FLAG_MMAP)";
	case -EOPNOTSUPP:
		return "operation not supported by this backend or mode";
	case -EACCES:
		return "permission denied: guest access to a page it has not accepted (#VE/#VC), "
		       "or a file";
	case -EAGAIN:
		return "try again";
	case -EINTR:
		return "interrupted";
	default:
		if (err < 0 && err != INT32_MIN)
			return strerror_r(-err, buf, sizeof(buf));
		snprintf(buf, sizeof(buf), "not an errno: %d", err);
		return buf;
	}
}
