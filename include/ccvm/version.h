/* SPDX-License-Identifier: MIT */
#ifndef CCVM_VERSION_H
#define CCVM_VERSION_H

#define CCVM_VERSION_MAJOR 0
#define CCVM_VERSION_MINOR 1
#define CCVM_VERSION_PATCH 0
#define CCVM_VERSION_STRING "0.1.0"

/* One number that compares: 0x00MMmmpp. */
#define CCVM_VERSION_NUMBER \
	((CCVM_VERSION_MAJOR << 16) | (CCVM_VERSION_MINOR << 8) | CCVM_VERSION_PATCH)

#endif /* CCVM_VERSION_H */
