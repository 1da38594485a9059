/* SPDX-License-Identifier: MIT */
/*
 * Fixtures for suites that run the same test on every built backend
 * (conformance, badinput, invariants): a test added with
 *	tcase_add_loop_test(tc, fn, 0, cf_nr_backends());
 * gets the backend's index in _i, and cf_up(_i, ...) builds a platform,
 * a VM and a gmem-backed memslot on it.  What differs between backends is
 * read from the caps (cf.caps), never from the name: accept when
 * requires_accept, the shared alias when has_shared_bit, finalize when
 * needs_finalize, the bytes a round trip keeps per
 * preserves_data_without_punch, what a host read sees per
 * private_readable_by_host.
 *
 * Every scenario ends in cf_finish(): the invariant checker over the VM
 * (a failure names the invariant), then teardown, then the platform's own
 * check and its free page count back where it started.
 *
 * Public headers only (ccvm.h, backend.h, and testutil.h, which uses no
 * other): an out-of-tree backend's author can run the suite against the
 * installed library.  A suite that also looks at the core's internals
 * includes the core's private header (or snapshot.h) itself.
 *
 * Static inline throughout, like testutil.h, so a suite that does not use
 * a helper gets no warning.
 */
#ifndef CCVM_TESTS_CONFORMANCE_H
#define CCVM_TESTS_CONFORMANCE_H

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "testutil.h"

#define CF_MAX_VCPUS	8
#define CF_PAGE		CCVM_PAGE_SIZE
#define CF_2M		CCVM_HPAGE_2M_SIZE
#define CF_NONE		UINT64_MAX

/* ---- backends -------------------------------------------------------------- */

/* Built backends when the suite is built (test backends come later). */
static inline int cf_nr_backends(void)
{
	const char *const *n = ccvm_backend_names();
	int i = 0;

	while (n[i])
		i++;
	return i;
}

static inline const char *cf_backend(int i)
{
	const char *name = ccvm_backend_names()[i];

	ck_assert_ptr_nonnull(name);
	return name;
}

/* ---- the invariant checker ------------------------------------------------- */

/* The checker's report on @vm (core and backend). */
static inline struct ccvm_invariant_report cf_invariants(struct ccvm_vm *vm)
{
	struct ccvm_invariant_report r;

	memset(&r, 0, sizeof(r));
	r.sz = sizeof(r);
	ck_assert_int_eq(ccvm_vm_check_invariants(vm, &r), 0);
	ck_assert_uint_gt(r.nr_checks, 0);
	return r;
}

#define cf_assert_invariants(vm) do {						\
	struct ccvm_invariant_report r_ = cf_invariants(vm);			\
	ck_assert_msg(r_.invariant == 0, "invariant I%u broken: %s",		\
		      r_.invariant, r_.msg);					\
} while (0)

#define cf_assert_platform_invariants(p) do {					\
	struct ccvm_invariant_report r_;					\
	memset(&r_, 0, sizeof(r_));						\
	r_.sz = sizeof(r_);							\
	ck_assert_int_eq(ccvm_platform_check_invariants((p), &r_), 0);		\
	ck_assert_msg(r_.invariant == 0, "platform invariant I%u broken: %s",	\
		      r_.invariant, r_.msg);					\
} while (0)

/* ---- one environment per test -------------------------------------------------- */

struct cf_env {
	const char *backend;
	struct ccvm_backend_caps caps;
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;		/* slot 0's file, offset 0 */
	uint8_t *shared;		/* VMM memory behind slot 0, 2M aligned */
	uint64_t size;			/* slot 0 is [0, size) */
	uint64_t sbit;			/* the VM's shared bit, 0 for none */
	struct ccvm_vcpu *v[CF_MAX_VCPUS];
	int nr_v;
	uint64_t free0;			/* free pages before the VM */
	bool vm_open;
};

static struct cf_env cf;

static inline struct ccvm_platform *cf_platform(const char *backend)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = backend,
						     .mem_bytes = 256 * TU_MiB,
						     .nr_cpus = 4,
						     .seed = 7);
	struct ccvm_platform *p = NULL;

	ck_assert_int_eq(ccvm_platform_create(&o, &p), 0);
	return p;
}

/*
 * Platform and VM of backend @i, a gmem file of @size bytes bound as slot 0
 * at gpa 0 over a 2M-aligned VMM buffer, attributes PRIVATE over the slot
 * when @private.  Not finalized.
 */
static inline void cf_up(int i, uint64_t size, bool private)
{
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts,
						.max_vcpus = CF_MAX_VCPUS);

	tu_quiet_log();
	memset(&cf, 0, sizeof(cf));
	cf.backend = cf_backend(i);
	cf.caps.sz = sizeof(cf.caps);
	ck_assert_int_eq(ccvm_backend_caps(cf.backend, &cf.caps), 0);
	cf.p = cf_platform(cf.backend);
	cf.free0 = tu_free_pages(cf.p);
	ck_assert_int_eq(ccvm_vm_create(cf.p, &vo, &cf.vm), 0);
	cf.vm_open = true;
	cf.sbit = ccvm_vm_shared_bit(cf.vm);
	ck_assert_int_eq(!!cf.sbit, cf.caps.has_shared_bit);
	cf.size = size;
	/* aligned_alloc() wants a size that is a multiple of the alignment. */
	cf.shared = aligned_alloc(CF_2M, (size + CF_2M - 1) / CF_2M * CF_2M);
	ck_assert_ptr_nonnull(cf.shared);
	memset(cf.shared, 0, size);
	cf.g = tu_gmem(cf.vm, size, 0);
	ck_assert_int_eq(tu_region(cf.vm, 0, CCVM_MEM_GUEST_MEMFD, 0, size, cf.shared, cf.g, 0),
			 0);
	if (private)
		tu_set_attr(cf.vm, 0, size, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
}

/* Launch done (TDX MR.FINALIZE / SNP LAUNCH_FINISH; mock: runnable already). */
static inline void cf_finalize(void)
{
	ck_assert_int_eq(ccvm_vm_finalize(cf.vm), 0);
}

static inline struct ccvm_vcpu *cf_vcpu(void)
{
	struct ccvm_vcpu *v = NULL;

	ck_assert_int_lt(cf.nr_v, CF_MAX_VCPUS);
	ck_assert_int_eq(ccvm_vcpu_create(cf.vm, (uint32_t)cf.nr_v, &v), 0);
	cf.v[cf.nr_v++] = v;
	return v;
}

/*
 * Make @n vCPUs and finalize: a runnable guest.  vCPUs come first: TDX
 * creates them only between INIT_VM and FINALIZE_VM (tdx_vcpu_create()).
 */
static inline void cf_runnable(int n)
{
	int i;

	for (i = 0; i < n; i++)
		cf_vcpu();
	cf_finalize();
}

static inline void cf_close_vcpus(void)
{
	int i;

	for (i = 0; i < cf.nr_v; i++) {
		if (cf.v[i])
			ck_assert_int_eq(ccvm_vcpu_close(cf.v[i]), 0);
		cf.v[i] = NULL;
	}
}

/*
 * The end of every scenario: invariants of the VM, then close everything,
 * then the platform's own invariants and every page back.
 */
static inline void cf_finish(void)
{
	struct ccvm_stats st;

	if (cf.vm_open)
		cf_assert_invariants(cf.vm);
	cf_close_vcpus();
	if (cf.g)
		ck_assert_int_eq(ccvm_gmem_close(cf.g), 0);
	cf.g = NULL;
	if (cf.vm_open)
		ck_assert_int_eq(ccvm_vm_close(cf.vm), 0);
	cf.vm_open = false;
	cf.vm = NULL;
	cf_assert_platform_invariants(cf.p);
	st = tu_pstats(cf.p);
	ck_assert_uint_eq(st.leaked_pages, 0);
	ck_assert_msg(st.free_pages == cf.free0, "%s: %" PRIu64 " pages not given back",
		      cf.backend, cf.free0 - st.free_pages);
	ck_assert_int_eq(ccvm_platform_destroy(cf.p), 0);
	cf.p = NULL;
	free(cf.shared);
	cf.shared = NULL;
}

/* ---- running guests ---------------------------------------------------------------- */

#define CF_MAX_HC	64

/* What the VMM does on MAP_GPA_RANGE exits, and what it saw. */
struct cf_vmm {
	bool punch;			/* to shared: punch the gmem pages too */
	uint64_t hc_ret;		/* hypercall.ret to answer with */
	unsigned int nr_hc;
	struct { uint64_t nr, gpa, npages, attrs; } hc[CF_MAX_HC];
};

/* Convert [gpa, gpa + size) as a VMM does on MAP_GPA_RANGE (slot 0's gmem). */
static inline void cf_convert(struct ccvm_vm *vm, uint64_t gpa, uint64_t size,
			      bool to_private, bool punch)
{
	tu_set_attr(vm, gpa, size, to_private ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
	if (!to_private && punch && gpa + size <= cf.size)
		ck_assert_int_eq(ccvm_gmem_fallocate(cf.g, CCVM_FALLOC_KEEP_SIZE |
						     CCVM_FALLOC_PUNCH_HOLE, gpa, size), 0);
}

/*
 * Run @v until an exit other than MAP_GPA_RANGE, which is handled here when
 * @m is not NULL (recorded, converted, answered with m->hc_ret).
 */
static inline int cf_run(struct ccvm_vcpu *v, struct cf_vmm *m)
{
	for (;;) {
		int r = ccvm_vcpu_run(v);
		struct ccvm_run *run = ccvm_vcpu_run_state(v);
		uint64_t gpa, size;
		bool to_private;

		if (r || !m || run->exit_reason != CCVM_EXIT_HYPERCALL)
			return r;
		ck_assert_uint_eq(run->hypercall.nr, CCVM_HC_MAP_GPA_RANGE);
		gpa = run->hypercall.args[0];
		size = run->hypercall.args[1] << CCVM_PAGE_SHIFT;
		to_private = run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED;
		if (m->nr_hc < CF_MAX_HC) {
			m->hc[m->nr_hc].nr = run->hypercall.nr;
			m->hc[m->nr_hc].gpa = gpa;
			m->hc[m->nr_hc].npages = run->hypercall.args[1];
			m->hc[m->nr_hc].attrs = run->hypercall.args[2];
		}
		m->nr_hc++;
		if (!m->hc_ret)
			cf_convert(ccvm_vcpu_vm(v), gpa, size, to_private, m->punch);
		run->hypercall.ret = m->hc_ret;
	}
}

/* Run until the guest syncs @value (anything else fails the test). */
static inline void cf_expect_sync(struct ccvm_vcpu *v, struct cf_vmm *m, uint64_t value)
{
	int r = cf_run(v, m);
	struct ccvm_run *run = ccvm_vcpu_run_state(v);

	ck_assert_msg(r == 0 && run->exit_reason == CCVM_EXIT_SYNC,
		      "%s: expected sync %" PRIu64 ", run %d exit %u%s%s", cf.backend, value, r,
		      run->exit_reason,
		      run->exit_reason == CCVM_EXIT_GUEST_ABORT ? ": guest assert " : "",
		      run->exit_reason == CCVM_EXIT_GUEST_ABORT ? run->abort.msg : "");
	ck_assert_uint_eq(run->sync.value, value);
}

static inline void cf_expect_done(struct ccvm_vcpu *v, struct cf_vmm *m)
{
	int r = cf_run(v, m);
	struct ccvm_run *run = ccvm_vcpu_run_state(v);

	ck_assert_msg(r == 0 && run->exit_reason == CCVM_EXIT_DONE,
		      "%s: expected done, run %d exit %u%s%s", cf.backend, r, run->exit_reason,
		      run->exit_reason == CCVM_EXIT_GUEST_ABORT ? ": guest assert " : "",
		      run->exit_reason == CCVM_EXIT_GUEST_ABORT ? run->abort.msg : "");
}

/* Guest side: make private [gpa, gpa + size) usable (accept when the caps say). */
static inline int cf_guest_accept(struct ccvm_guest *g, uint64_t gpa, uint64_t size)
{
	return cf.caps.requires_accept ? ccvm_guest_accept(g, gpa, size) : 0;
}

static inline void cf_fill(uint8_t *buf, size_t len, uint8_t seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

static inline bool cf_is(const uint8_t *buf, size_t len, uint8_t seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i] != (uint8_t)(seed + i * 7 + (i >> 8)))
			return false;
	return true;
}

static inline bool cf_is_zero(const uint8_t *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

#endif /* CCVM_TESTS_CONFORMANCE_H */
