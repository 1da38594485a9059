/* SPDX-License-Identifier: MIT */
/*
 * Fixtures for suites that run the same test on every built backend
 * (conformance, badinput, invariants).  A test added with
 *	tcase_add_loop_test(tc, fn, 0, cf_nr_variants());
 * gets a variant's index in _i: a backend and a mode (cf_mode(), the
 * attribute scheme), and cf_up(_i, ...) builds a platform, a VM of that
 * scheme and a gmem-backed memslot on it; cf_up_in() takes a backend
 * index and a mode instead (cf_mode(0): the default, per-VM attributes).
 * What differs between backends is read from the caps (cf.caps), never
 * from the name: accept when requires_accept, the shared alias when
 * has_shared_bit, finalize when needs_finalize, the bytes a round trip
 * keeps per preserves_data_without_punch, what a host read sees per
 * private_readable_by_host.  What differs between schemes
 * goes through the helpers of "the two schemes" below: a conversion, the
 * attribute of a gpa, and the VMM's access to shared memory.
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
#include <stdio.h>
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

/* ---- variants: a backend and a mode ------------------------------------------- */

/*
 * A mode: everything but the backend that a conformance scenario runs
 * under: the attribute scheme and the order of slot 0's gmem folios.
 * Loop index = backend * CF_NR_MODES + mode, so that the modes of
 * one backend are one contiguous range (the out-of-tree backend, the last
 * name once registered, is the range [n * CF_NR_MODES, (n + 1) * CF_NR_MODES)).
 * Another axis is another field here and a row for each combination.
 *
 * Folios: 4 KiB (order 0), or 2 MiB (CCVM_GMEM_FLAG_HUGETLB) on a backend
 * whose caps.gmem_flags have HUGETLB, else the variant is a named skip.
 * What a scenario expects in pages allocated or mapped is derived from
 * the folio (cf_folio_pages(), cf_alloc_pages()) and from the level the
 * backend reports for a mapping (cf_level_at()), never assumed 4 KiB.
 */
struct cf_mode {
	const char *name;
	uint32_t scheme;	/* enum ccvm_attr_scheme */
	uint32_t folio_order;	/* slot 0's gmem folios: 0 or CCVM_FOLIO_ORDER_2M */
};

#define CF_NR_MODES	4

static inline const struct cf_mode *cf_mode(int m)
{
	static const struct cf_mode modes[CF_NR_MODES] = {
		/* the default first; the 4 KiB modes keep their old indices */
		{ "per-VM attributes", CCVM_ATTR_SCHEME_VM, 0 },
		{ "in-place conversion", CCVM_ATTR_SCHEME_GMEM, 0 },
		{ "per-VM attributes, 2M folios", CCVM_ATTR_SCHEME_VM, CCVM_FOLIO_ORDER_2M },
		{ "in-place conversion, 2M folios", CCVM_ATTR_SCHEME_GMEM, CCVM_FOLIO_ORDER_2M },
	};

	ck_assert_int_ge(m, 0);
	ck_assert_int_lt(m, CF_NR_MODES);
	return &modes[m];
}

static inline int cf_nr_variants(void)
{
	return cf_nr_backends() * CF_NR_MODES;
}

/* The loop index of backend @b in mode @m, and back. */
static inline int cf_variant(int b, int m)
{
	return b * CF_NR_MODES + m;
}

static inline int cf_variant_backend(int v)
{
	return v / CF_NR_MODES;
}

static inline int cf_variant_mode(int v)
{
	return v % CF_NR_MODES;
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
	const struct cf_mode *mode;
	char name[80];			/* "backend, mode", for messages */
	bool in_place;			/* the VM converts in place (GMEM scheme) */
	struct ccvm_backend_caps caps;	/* the backend's */
	struct ccvm_backend_caps vcaps;	/* the VM's: the scheme's share of them */
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;		/* slot 0's file, offset 0 */
	uint8_t *shared;		/* VMM memory behind slot 0, 2M aligned;
					 * NULL in place (slot 0 is GMEM_ONLY) */
	uint64_t size;			/* slot 0 is [0, size) */
	uint64_t gflags;		/* folio flags of slot 0's file (0: 4 KiB) */
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
 * A part of a scenario that does not apply to the variant: said on stderr,
 * with the scenario (the function it is called from) and the reason, so
 * that a skip is never a silent pass.
 */
#define cf_skip(why)	cf_skip_at(__func__, (why))

static inline void cf_skip_at(const char *scenario, const char *why)
{
	size_t n = strlen(scenario);

	/* START_TEST(name) defines name_fn(). */
	if (n > 3 && !strcmp(scenario + n - 3, "_fn"))
		n -= 3;
	fprintf(stderr, "SKIP %.*s on %s: %s\n", (int)n, scenario, cf.name, why);
}

/*
 * Whether the VM just created can run the scenarios in place: PRIVATE in
 * its files (caps.gmem_memory_attributes) and files the host can map
 * (CCVM_GMEM_FLAG_MMAP), through which the VMM reaches shared memory.
 */
static inline bool cf_in_place_usable(const struct ccvm_backend_caps *c)
{
	return (c->gmem_memory_attributes & CCVM_MEMORY_ATTRIBUTE_PRIVATE) &&
	       (c->gmem_flags & CCVM_GMEM_FLAG_MMAP);
}

static inline void cf_file_set(uint64_t off, uint64_t size, uint64_t attrs);

/*
 * Platform and VM of backend @b in mode @m (its attribute scheme), a gmem file
 * of @size bytes bound as slot 0 at gpa 0, attributes PRIVATE over the
 * slot when @private.  Per VM, the slot's shared memory is a 2M-aligned
 * VMM buffer (cf.shared) and PRIVATE lives in the VM's store; in place,
 * the file is mmap-able, the slot GMEM_ONLY (no buffer) and PRIVATE lives
 * in the file (INIT_SHARED when not @private, where the VM offers it).
 * Not finalized.  Returns false, with a named skip and nothing built,
 * when the backend cannot convert in place.
 */
static inline bool cf_up_in(int b, const struct cf_mode *m, uint64_t size, bool private)
{
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts,
						.max_vcpus = CF_MAX_VCPUS,
						.attr_scheme = m->scheme);
	uint64_t gflags = 0;

	tu_quiet_log();
	memset(&cf, 0, sizeof(cf));
	cf.backend = cf_backend(b);
	cf.mode = m;
	snprintf(cf.name, sizeof(cf.name), "%s, %s", cf.backend, m->name);
	cf.in_place = m->scheme == CCVM_ATTR_SCHEME_GMEM;
	cf.caps.sz = sizeof(cf.caps);
	ck_assert_int_eq(ccvm_backend_caps(cf.backend, &cf.caps), 0);
	cf.p = cf_platform(cf.backend);
	cf.free0 = tu_free_pages(cf.p);
	ck_assert_int_eq(ccvm_vm_create(cf.p, &vo, &cf.vm), 0);
	cf.vm_open = true;
	cf.vcaps.sz = sizeof(cf.vcaps);
	ck_assert_int_eq(ccvm_vm_caps(cf.vm, &cf.vcaps), 0);
	ck_assert_uint_eq(cf.vcaps.attr_scheme, m->scheme);
	if (cf.in_place && !cf_in_place_usable(&cf.vcaps)) {
		cf_skip_at("cf_up", "the backend converts nothing in place (no PRIVATE in its "
			   "gmem files, or no CCVM_GMEM_FLAG_MMAP)");
		ck_assert_int_eq(ccvm_vm_close(cf.vm), 0);
		ck_assert_int_eq(ccvm_platform_destroy(cf.p), 0);
		memset(&cf, 0, sizeof(cf));
		return false;
	}
	if (m->folio_order && !(cf.vcaps.gmem_flags & CCVM_GMEM_FLAG_HUGETLB)) {
		cf_skip_at("cf_up", "the backend has no huge gmem folios (no "
			   "CCVM_GMEM_FLAG_HUGETLB in its caps.gmem_flags)");
		ck_assert_int_eq(ccvm_vm_close(cf.vm), 0);
		ck_assert_int_eq(ccvm_platform_destroy(cf.p), 0);
		memset(&cf, 0, sizeof(cf));
		return false;
	}
	if (m->folio_order) {
		ck_assert_uint_eq(m->folio_order, CCVM_FOLIO_ORDER_2M);
		ck_assert_msg(size % CF_2M == 0, "%s: slot 0 of %#" PRIx64 " bytes is not "
			      "a multiple of the 2M folio", cf.name, size);
		cf.gflags = CCVM_GMEM_FLAG_HUGETLB | CCVM_GMEM_HUGE_2MB;
	}
	cf.sbit = ccvm_vm_shared_bit(cf.vm);
	ck_assert_int_eq(!!cf.sbit, cf.caps.has_shared_bit);
	cf.size = size;
	if (cf.in_place) {
		gflags = CCVM_GMEM_FLAG_MMAP | cf.gflags;
		if (!private && (cf.vcaps.gmem_flags & CCVM_GMEM_FLAG_INIT_SHARED))
			gflags |= CCVM_GMEM_FLAG_INIT_SHARED;
		cf.g = tu_gmem(cf.vm, size, gflags);
		ck_assert_int_eq(tu_region(cf.vm, 0, CCVM_MEM_GUEST_MEMFD, 0, size, NULL, cf.g,
					   0), 0);
		if (!private && !(gflags & CCVM_GMEM_FLAG_INIT_SHARED))
			cf_file_set(0, size, 0);
		return true;
	}
	/* aligned_alloc() wants a size that is a multiple of the alignment. */
	cf.shared = aligned_alloc(CF_2M, (size + CF_2M - 1) / CF_2M * CF_2M);
	ck_assert_ptr_nonnull(cf.shared);
	memset(cf.shared, 0, size);
	cf.g = tu_gmem(cf.vm, size, cf.gflags);
	ck_assert_int_eq(tu_region(cf.vm, 0, CCVM_MEM_GUEST_MEMFD, 0, size, cf.shared, cf.g, 0),
			 0);
	if (private)
		tu_set_attr(cf.vm, 0, size, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	return true;
}

/* cf_up_in() for the variant @v (a loop index over cf_nr_variants()). */
static inline bool cf_up(int v, uint64_t size, bool private)
{
	return cf_up_in(cf_variant_backend(v), cf_mode(cf_variant_mode(v)), size, private);
}

/* ---- folios ---------------------------------------------------------------------- */

/* Pages (4 KiB) in one folio of slot 0's file: 1 or 512. */
static inline uint64_t cf_folio_pages(void)
{
	return 1ull << cf.mode->folio_order;
}

/*
 * Pages slot 0's file holds once the pages at the file offsets @off[0..n)
 * (bytes) have been allocated and nothing else: each allocation is a
 * whole folio, so every folio touched counts once with all its pages.
 */
static inline uint64_t cf_alloc_pages(const uint64_t *off, size_t n)
{
	uint64_t fb = cf_folio_pages() * CF_PAGE, nr = 0;
	size_t i, j;

	for (i = 0; i < n; i++) {
		for (j = 0; j < i; j++)
			if (off[j] / fb == off[i] / fb)
				break;
		if (j == i)
			nr += cf_folio_pages();
	}
	return nr;
}

/*
 * The level the backend reports for the mapping at @gpa (CCVM_LEVEL_4K or
 * CCVM_LEVEL_2M), asserted to be mapped.  A 2M level is allowed only with
 * 2M folios: with 4 KiB folios every private mapping is 4 KiB.
 */
static inline int cf_level_at(uint64_t gpa)
{
	int level = -1, r = ccvm_vm_lookup_mapping(cf.vm, gpa, NULL, &level);

	ck_assert_msg(r == 0, "%s: %#" PRIx64 " not mapped: %d", cf.name, gpa, r);
	ck_assert_msg(level == CCVM_LEVEL_4K || level == CCVM_LEVEL_2M, "%s: level %d",
		      cf.name, level);
	if (!cf.mode->folio_order && !(gpa & cf.sbit))
		ck_assert_msg(level == CCVM_LEVEL_4K, "%s: %#" PRIx64 " mapped 2M over 4K "
			      "folios", cf.name, gpa);
	return level;
}

/* Pages (4 KiB) the mapping at @gpa covers as the backend reports its level. */
static inline uint64_t cf_mapped_pages_at(uint64_t gpa)
{
	return cf_level_at(gpa) == CCVM_LEVEL_2M ? CF_2M / CF_PAGE : 1;
}

/* ---- the two schemes ---------------------------------------------------------- */

/* KVM_SET_MEMORY_ATTRIBUTES2 on slot 0's file (in place only), asserted. */
static inline void cf_file_set(uint64_t off, uint64_t size, uint64_t attrs)
{
	struct ccvm_memory_attributes2 a = {
		.offset = off, .size = size, .attributes = attrs,
	};
	int r;

	ck_assert(cf.in_place);
	r = ccvm_gmem_set_memory_attributes(cf.g, &a);
	ck_assert_msg(r == 0, "%s: gmem_set_memory_attributes(%#" PRIx64 ", %#" PRIx64
		      ", %#" PRIx64 "): %d", cf.name, off, size, attrs, r);
}

/*
 * Set [gpa, gpa + size) of slot 0 shared (0) or private, as the VMM does
 * in its scheme: the VM's attribute store per VM, slot 0's file in place
 * (the range must lie in the slot: gpa is the file offset).
 */
static inline void cf_set_attr(uint64_t gpa, uint64_t size, uint64_t attrs)
{
	if (!cf.in_place) {
		tu_set_attr(cf.vm, gpa, size, attrs);
		return;
	}
	ck_assert_msg(gpa < cf.size && size <= cf.size - gpa, "%s: %#" PRIx64 "+%#" PRIx64
		      " is not in slot 0", cf.name, gpa, size);
	cf_file_set(gpa, size, attrs);
}

/*
 * The attributes at @gpa and in *@run the bytes from there that hold them
 * (in place: up to the end of slot 0's file, which @gpa must be in).  In
 * place the VM's own store holds no PRIVATE anywhere.
 */
static inline uint64_t cf_attr_at(uint64_t gpa, uint64_t *run)
{
	uint64_t v = ~0ull;

	if (!cf.in_place)
		return tu_get_attr(cf.vm, gpa, run);
	ck_assert_uint_eq(tu_get_attr(cf.vm, gpa, NULL), 0);
	ck_assert_uint_lt(gpa, cf.size);
	ck_assert_int_eq(ccvm_gmem_get_memory_attributes(cf.g, gpa, &v, run), 0);
	return v;
}

/*
 * The VMM's access to the shared memory at @gpa of slot 0: its buffer per
 * VM, the file through its mapping in place (which refuses private pages).
 */
static inline void cf_host_write(uint64_t gpa, const void *buf, size_t len)
{
	if (!cf.in_place) {
		memcpy(cf.shared + gpa, buf, len);
		return;
	}
	ck_assert_int_eq(ccvm_gmem_write(cf.g, gpa, buf, len), 0);
}

static inline void cf_host_read(uint64_t gpa, void *buf, size_t len)
{
	if (!cf.in_place) {
		memcpy(buf, cf.shared + gpa, len);
		return;
	}
	ck_assert_int_eq(ccvm_gmem_read(cf.g, gpa, buf, len), 0);
}

/*
 * In place, the host's mapping of a private page raises SIGBUS naming the
 * page (ccvm_gmem_access() -EFAULT with its offset); per VM the file has
 * no mapping and the VMM's buffer is another page: nothing to check.
 */
static inline void cf_host_refused(uint64_t gpa)
{
	uint8_t b = 0;
	uint64_t at = ~0ull;

	if (!cf.in_place)
		return;
	ck_assert_int_eq(ccvm_gmem_access(cf.g, gpa, &b, 1, 0, &at), -EFAULT);
	ck_assert_uint_eq(at, gpa & ~(uint64_t)(CF_PAGE - 1));
	ck_assert_int_eq(ccvm_gmem_access(cf.g, gpa, &b, 1, CCVM_GMEM_ACCESS_WRITE, &at),
			 -EFAULT);
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
		      cf.name, cf.free0 - st.free_pages);
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
	ck_assert_ptr_eq(vm, cf.vm);
	cf_set_attr(gpa, size, to_private ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
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
		      "%s: expected sync %" PRIu64 ", run %d exit %u%s%s", cf.name, value, r,
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
		      "%s: expected done, run %d exit %u%s%s", cf.name, r, run->exit_reason,
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
