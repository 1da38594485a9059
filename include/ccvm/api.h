/* SPDX-License-Identifier: MIT */
/*
 * CCVM_API marks every function of the public interface.  The library is
 * built with -fvisibility=hidden, so only the functions so marked are
 * exported from libccvm.so; everything else stays inside the library
 * (`make check-exports` compares the two sets).  A program that includes
 * these headers sees a plain declaration.
 */
#ifndef CCVM_API_H
#define CCVM_API_H

#if defined(__GNUC__) || defined(__clang__)
#define CCVM_API __attribute__((visibility("default")))
#else
#define CCVM_API
#endif

#endif /* CCVM_API_H */
