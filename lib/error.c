/* SPDX-License-Identifier: MIT */
/*
 * What the library says about itself: the text of the errnos its calls
 * return, in the words of this model, and its version.
 */
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

const char *ccvm_strerror(int err)
{
	static _Thread_local char buf[64];

	switch (err) {
	case 0:
		return "success";
	case -EINVAL:
		return "invalid argument (alignment, range, flags or state)";
	case -EEXIST:
		return "already exists (overlapping memslot, populated page, vCPU id)";
	case -EFAULT:
		return "memory fault: access does not match the memory attribute or backing";
	case -EIO:
		return "VM is bugged or dead";
	case -EBUSY:
		return "busy (objects still in use, or contention)";
	case -ENOMEM:
		return "out of memory (host or simulated RAM)";
	case -ENOSPC:
		return "no key id (HKID/ASID) or slot left";
	case -ENOENT:
		return "not found (no memslot, unknown backend)";
	case -ENODEV:
		return "gmem file not mappable (no CCVM_GMEM_FLAG_MMAP)";
	case -EOPNOTSUPP:
		return "operation not supported by this backend or mode";
	case -EACCES:
		return "guest access to a page it has not accepted (#VE/#VC)";
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
