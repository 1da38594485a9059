/* SPDX-License-Identifier: MIT */
/*
 * The fixture of the tdx suites (tests/check_tdx_*.c): a platform with the
 * tdx backend, a TD with up to two gmem-backed slots and four vCPUs, a VMM
 * loop that serves MapGPA, guests that accept and fill memory, and the
 * checks every suite makes: the S-EPT, the mirror root and the PAMT agree
 * (I10, I15, I18, I29), and an event trace of the SEAMCALLs shows the
 * removal and HKID release orders (I12-I15).
 *
 * Everything is static, and the functions static inline, as in testutil.h:
 * each suite has its own TD in T, and no unused-function warnings.
 */
#ifndef CCVM_TESTS_TDX_FIXTURE_H
#define CCVM_TESTS_TDX_FIXTURE_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "internal.h"
#include "testutil.h"
#include "../backends/tdx/tdx.h"

#define MIB		(1ull << 20)
#define SLOT0_GPA	0ull
#define SLOT0_SIZE	(4 * MIB)
#define SLOT1_GPA	(8 * MIB)
#define SLOT1_SIZE	(2 * MIB)
#define PG		CCVM_PAGE_SIZE
#define MAX_VCPUS	4
#define NR_CONTROL_TD	(1 + CCVM_TDX_NR_TDCS)		/* TDR + TDCS */
#define NR_CONTROL_VCPU	(1 + CCVM_TDX_NR_TDCX)		/* TDVPR + TDCX */

/*
 * For loops over thousands of pages: Check reports every passed ck_assert
 * to its parent process, which costs a system call each.
 */
#define CHECK(cond, ...) \
	do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)

/* ------------------------------------------------------------------ */
/* Fixture: a platform, a TD, up to two gmem files and four vCPUs      */

struct td {
	struct ccvm_platform *p;
	struct ccvm_tdx_module *m;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g[2];
	struct ccvm_vcpu *v[MAX_VCPUS];
	int nr_v;
	uint8_t *shared[2];		/* VMM memory behind the shared aliases */
	uint64_t sbit;
	uint64_t free0;			/* free platform pages before the VM */
	bool vm_open;
};

static struct td T;

static inline struct ccvm_platform *platform_new(uint32_t nr_keyids)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = "tdx",
						     .mem_bytes = 256 * MIB,
						     .nr_cpus = 4,
						     .nr_keyids = nr_keyids,
						     .seed = 11);
	struct ccvm_platform *p = NULL;

	ck_assert_int_eq(ccvm_platform_create(&o, &p), 0);
	return p;
}

static inline void setup(void)
{
	tu_quiet_log();
	memset(&T, 0, sizeof(T));
	T.p = platform_new(0);
	T.m = ccvm_tdx_module_of(T.p);
	T.free0 = tu_free_pages(T.p);
}

static inline void teardown(void)
{
	int i;

	for (i = 0; i < T.nr_v; i++)
		if (T.v[i])
			ccvm_vcpu_close(T.v[i]);
	for (i = 0; i < 2; i++)
		if (T.g[i])
			ccvm_gmem_close(T.g[i]);
	if (T.vm_open)
		ccvm_vm_close(T.vm);
	if (T.p)
		ck_assert_int_eq(ccvm_platform_destroy(T.p), 0);
	for (i = 0; i < 2; i++)
		free(T.shared[i]);
	memset(&T, 0, sizeof(T));
}

static inline struct ccvm_vm *td_vm_create(struct ccvm_platform *p, uint32_t gpa_bits, int *err)
{
	struct ccvm_vm_opts o = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = 8,
					       .gpa_bits = gpa_bits);
	struct ccvm_vm *vm = NULL;

	*err = ccvm_vm_create(p, &o, &vm);
	return vm;
}

/* The VM, two gmem-backed slots (all private), @nr_v vCPUs; not finalized. */
static inline void td_build(int nr_v, bool two_slots)
{
	int err, i;

	T.vm = td_vm_create(T.p, 48, &err);
	ck_assert_int_eq(err, 0);
	T.vm_open = true;
	T.sbit = ccvm_vm_shared_bit(T.vm);
	ck_assert_uint_eq(T.sbit, 1ull << 47);
	T.shared[0] = aligned_alloc(CCVM_HPAGE_2M_SIZE, SLOT0_SIZE);
	ck_assert_ptr_nonnull(T.shared[0]);
	memset(T.shared[0], 0, SLOT0_SIZE);
	T.g[0] = tu_gmem(T.vm, SLOT0_SIZE, 0);
	ck_assert_int_eq(tu_region(T.vm, 0, CCVM_MEM_GUEST_MEMFD, SLOT0_GPA, SLOT0_SIZE,
				   T.shared[0], T.g[0], 0), 0);
	if (two_slots) {
		T.shared[1] = aligned_alloc(CCVM_HPAGE_2M_SIZE, SLOT1_SIZE);
		ck_assert_ptr_nonnull(T.shared[1]);
		memset(T.shared[1], 0, SLOT1_SIZE);
		T.g[1] = tu_gmem(T.vm, SLOT1_SIZE, 0);
		ck_assert_int_eq(tu_region(T.vm, 1, CCVM_MEM_GUEST_MEMFD, SLOT1_GPA, SLOT1_SIZE,
					   T.shared[1], T.g[1], 0), 0);
		tu_set_attr(T.vm, SLOT1_GPA, SLOT1_SIZE, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	}
	tu_set_attr(T.vm, SLOT0_GPA, SLOT0_SIZE, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	for (i = 0; i < nr_v; i++)
		ck_assert_int_eq(ccvm_vcpu_create(T.vm, (uint32_t)i, &T.v[i]), 0);
	T.nr_v = nr_v;
}

static inline void td_up(int nr_v, bool two_slots)
{
	td_build(nr_v, two_slots);
	ck_assert_int_eq(ccvm_vm_finalize(T.vm), 0);
}

static inline void close_vcpu(int i)
{
	ck_assert_int_eq(ccvm_vcpu_close(T.v[i]), 0);
	T.v[i] = NULL;
}

static inline void close_gmem(int i)
{
	ck_assert_int_eq(ccvm_gmem_close(T.g[i]), 0);
	T.g[i] = NULL;
}

static inline void close_vm(void)
{
	ck_assert_int_eq(ccvm_vm_close(T.vm), 0);
	T.vm_open = false;
}

static inline void close_all(void)
{
	int i;

	for (i = 0; i < T.nr_v; i++)
		if (T.v[i])
			close_vcpu(i);
	for (i = 0; i < 2; i++)
		if (T.g[i])
			close_gmem(i);
	if (T.vm_open)
		close_vm();
}

static inline uint64_t pev(enum ccvm_event ev)
{
	return tu_pstats(T.p).events[ev];
}

/* Nothing of any TD is left: pages, PAMT, HKIDs, leaks. */
static inline void assert_clean(void)
{
	struct ccvm_stats st = tu_pstats(T.p);

	ck_assert_uint_eq(st.free_pages, T.free0);
	ck_assert_uint_eq(st.leaked_pages, 0);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(T.m), 0);
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(T.m), 0);
	ck_assert_uint_eq(st.events[CCVM_EV_KEYID_LEAK], 0);
}

/* Pages the PAMT assigns to the TD whose TDR is @tdr, by type. */
struct census {
	uint64_t by_type[16];
	uint64_t total;
};

static inline struct census pamt_census(uint64_t tdr)
{
	struct census c;
	uint64_t pfn, n = ccvm_platform_nr_pages(T.p);

	memset(&c, 0, sizeof(c));
	for (pfn = 1; pfn < n; pfn++) {
		struct ccvm_tdx_pamt_info info;

		CHECK(ccvm_tdx_pamt_get(T.m, pfn, &info) == 0, "pamt_get(%#" PRIx64 ")", pfn);
		if (info.type == CCVM_TDX_PT_NDA || info.owner != tdr)
			continue;
		c.by_type[info.type & 15]++;
		c.total++;
	}
	return c;
}

/* ------------------------------------------------------------------ */
/* Guest helpers                                                       */

/* Run @v until an exit the test wants; MAP_GPA_RANGE is served here. */
struct vmm_opts {
	bool punch;			/* discard the old backing on conversion */
	int nr_hypercalls;		/* out */
	uint64_t hc_gpa[16], hc_npages[16], hc_attrs[16];
};

static inline uint64_t pattern(uint64_t gpa, uint32_t salt)
{
	uint64_t z = gpa * 0x9e3779b97f4a7c15ull + salt;

	z ^= z >> 29;
	return z * 0xbf58476d1ce4e5b9ull | 1;
}

static inline void fill(uint8_t *buf, uint64_t gpa, uint32_t salt)
{
	uint64_t w = pattern(gpa, salt);
	unsigned int i;

	for (i = 0; i < PG; i += 8)
		memcpy(buf + i, &w, 8);
}

static inline bool page_has(const uint8_t *buf, uint64_t gpa, uint32_t salt)
{
	uint8_t want[PG];

	fill(want, gpa, salt);
	return !memcmp(buf, want, PG);
}

static inline bool page_zero(const uint8_t *buf)
{
	unsigned int i;

	for (i = 0; i < PG; i++)
		if (buf[i])
			return false;
	return true;
}

/* Convert [gpa, gpa + size) as asked by a MAP_GPA_RANGE exit. */
static inline void serve_map_gpa(struct ccvm_vm *vm, struct ccvm_run *run, struct vmm_opts *o)
{
	uint64_t gpa = run->hypercall.args[0], size = run->hypercall.args[1] * PG;
	bool to_private = run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED;

	if (o && o->nr_hypercalls < 16) {
		o->hc_gpa[o->nr_hypercalls] = gpa;
		o->hc_npages[o->nr_hypercalls] = run->hypercall.args[1];
		o->hc_attrs[o->nr_hypercalls] = run->hypercall.args[2];
	}
	if (o)
		o->nr_hypercalls++;
	run->hypercall.ret = (uint64_t)-ccvm_vm_set_memory_attributes(vm, gpa, size,
			to_private ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);
	if (!run->hypercall.ret && o && o->punch && !to_private) {
		/* Only slot 0 is punched by these tests. */
		if (gpa + size <= SLOT0_SIZE)
			ck_assert_int_eq(ccvm_gmem_fallocate(T.g[0], CCVM_FALLOC_KEEP_SIZE |
							     CCVM_FALLOC_PUNCH_HOLE, gpa, size), 0);
	}
}

/* Run until a sync, done, exception or error; returns run's result. */
static inline int vmm_run(struct ccvm_vcpu *v, struct vmm_opts *o)
{
	struct ccvm_run *run = ccvm_vcpu_run_state(v);

	for (;;) {
		int r = ccvm_vcpu_run(v);

		if (r)
			return r;
		if (run->exit_reason == CCVM_EXIT_HYPERCALL) {
			ck_assert_uint_eq(run->hypercall.nr, CCVM_HC_MAP_GPA_RANGE);
			serve_map_gpa(ccvm_vcpu_vm(v), run, o);
			continue;
		}
		if (run->exit_reason == CCVM_EXIT_GUEST_ABORT)
			ck_abort_msg("guest abort at %s:%d: %s", run->abort.file, run->abort.line,
				     run->abort.msg);
		return 0;
	}
}

static inline void expect_sync(struct ccvm_vcpu *v, uint64_t value, struct vmm_opts *o)
{
	struct ccvm_run *run = ccvm_vcpu_run_state(v);
	int r = vmm_run(v, o);

	ck_assert_msg(r == 0, "run: %d (exit %u)", r, run->exit_reason);
	ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_SYNC);
	ck_assert_uint_eq(run->sync.value, value);
}

static inline void expect_done(struct ccvm_vcpu *v, struct vmm_opts *o)
{
	struct ccvm_run *run = ccvm_vcpu_run_state(v);
	int r = vmm_run(v, o);

	ck_assert_msg(r == 0, "run: %d (exit %u)", r, run->exit_reason);
	ck_assert_uint_eq(run->exit_reason, CCVM_EXIT_DONE);
}

/* A guest that accepts and writes [gpa, gpa + n pages) with @salt, then syncs 1. */
struct fill_arg {
	uint64_t gpa;
	uint64_t n;
	uint32_t salt;
};

static inline void guest_accept_fill(struct ccvm_guest *g, void *arg)
{
	struct fill_arg *a = arg;
	uint8_t buf[PG];
	uint64_t i;

	for (i = 0; i < a->n; i++) {
		uint64_t gpa = a->gpa + i * PG;

		CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, gpa, PG) == 0);
		fill(buf, gpa, a->salt);
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, gpa, buf, PG) == 0);
	}
	ccvm_guest_sync(g, 1);
	for (i = 0; i < a->n; i++) {
		uint64_t gpa = a->gpa + i * PG;

		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, gpa, buf, PG) == 0);
		CCVM_GUEST_ASSERT(g, page_has(buf, gpa, a->salt));
	}
	ccvm_guest_sync(g, 2);
}

/* Map @n pages at @gpa from vCPU 0 (accepted, written) and park it. */
static inline void guest_map_pages(uint64_t gpa, uint64_t n, struct fill_arg *a)
{
	a->gpa = gpa;
	a->n = n;
	a->salt = 7;
	ck_assert_int_eq(ccvm_vcpu_set_guest(T.v[0], guest_accept_fill, a), 0);
	expect_sync(T.v[0], 1, NULL);
}

/* ------------------------------------------------------------------ */
/* Invariant checkers                                                  */

/*
 * I10, I18, I29 over [gpa, gpa + n pages): a private mapping in the mirror
 * root exists iff the S-EPT has a MAPPED or PENDING leaf there, with the
 * same pfn, a 4K leaf, owned by the TD as a guest page in the PAMT; no
 * leaf is left blocked while the TD runs.  Return: the leaves seen.
 */
static inline uint64_t check_sept_mirror(uint64_t gpa, uint64_t n)
{
	struct ccvm_tdx_td *td = ccvm_tdx_vm_td(T.vm);
	uint64_t tdr = ccvm_tdx_td_tdr_pfn(td), i, leaves = 0;

	for (i = 0; i < n; i++) {
		uint64_t a = gpa + i * PG, mpfn = 0, st;
		struct ccvm_tdx_sept_info info;
		struct ccvm_tdx_pamt_info pi;
		bool mirror, leaf;
		int level = 0;

		mirror = ccvm_vm_lookup_mapping(T.vm, a, &mpfn, &level) == 0;
		st = ccvm_tdh_mem_sept_rd(td, a, CCVM_TDX_LEVEL_4K, &info);
		CHECK(st == TDX_SUCCESS || TDX_STATUS_CLASS(st) == TDX_EPT_WALK_FAILED,
			      "SEPT.RD %#" PRIx64 ": %s", a, ccvm_tdx_status_name(st));
		leaf = st == TDX_SUCCESS && (info.state == CCVM_TDX_SEPT_MAPPED ||
					     info.state == CCVM_TDX_SEPT_PENDING);
		CHECK(!(st == TDX_SUCCESS &&
				(info.state == CCVM_TDX_SEPT_BLOCKED ||
				 info.state == CCVM_TDX_SEPT_PENDING_BLOCKED)),
			      "gpa %#" PRIx64 " left blocked", a);
		CHECK(mirror == leaf, "gpa %#" PRIx64 ": mirror %d, S-EPT state %u", a,
			      mirror, st == TDX_SUCCESS ? info.state : 99);
		if (!mirror)
			continue;
		leaves++;
		CHECK(level == CCVM_LEVEL_4K, "gpa %#" PRIx64 ": level %d", a, level);
		CHECK(info.pfn == mpfn, "gpa %#" PRIx64 ": S-EPT pfn %#" PRIx64 ", mirror %#"
		      PRIx64, a, info.pfn, mpfn);
		CHECK(ccvm_tdx_pamt_get(T.m, mpfn, &pi) == 0, "pamt_get");
		CHECK(pi.type == CCVM_TDX_PT_REG && pi.owner == tdr,
		      "pfn %#" PRIx64 ": PAMT type %u owner %#" PRIx64, mpfn, pi.type, pi.owner);
		/* The shared alias never reaches the S-EPT (I29). */
		st = ccvm_tdh_mem_sept_rd(td, a | T.sbit, CCVM_TDX_LEVEL_4K, &info);
		CHECK(TDX_STATUS_CLASS(st) == TDX_OPERAND_INVALID, "SEPT.RD of the shared alias");
	}
	return leaves;
}

/* S-EPT pages reachable from the root for the 2M regions of [gpa, +size). */
static inline uint64_t sept_pages_reachable(uint64_t gpa, uint64_t size, uint64_t *seen, size_t max)
{
	struct ccvm_tdx_td *td = ccvm_tdx_vm_td(T.vm);
	size_t n = 0, k;
	uint64_t a;
	int level;

	for (a = gpa; a < gpa + size; a += CCVM_HPAGE_2M_SIZE) {
		for (level = CCVM_TDX_LEVEL_512G; level >= CCVM_TDX_LEVEL_2M; level--) {
			struct ccvm_tdx_sept_info info;
			uint64_t base = a & ~((PG << (9 * level)) - 1);
			uint64_t st = ccvm_tdh_mem_sept_rd(td, base, level, &info);
			bool dup = false;

			if (st || info.state != CCVM_TDX_SEPT_NL_MAPPED)
				break;
			for (k = 0; k < n; k++)
				dup |= seen[k] == info.pfn;
			if (!dup && n < max)
				seen[n++] = info.pfn;
		}
	}
	return n;
}

/*
 * The TD's PAMT census matches the KVM side: TDR, TDCS and vCPU pages,
 * every S-EPT page reachable, and one guest page per mirror leaf (I10, I15,
 * I18); the module's child count agrees.
 */
static inline void check_td_pages(uint64_t leaves, uint64_t ept_pages)
{
	struct ccvm_tdx_td *td = ccvm_tdx_vm_td(T.vm);
	struct census c = pamt_census(ccvm_tdx_td_tdr_pfn(td));
	uint64_t nv = ccvm_vm_nr_vcpus(T.vm);

	ck_assert_uint_eq(c.by_type[CCVM_TDX_PT_TDR], 1);
	ck_assert_uint_eq(c.by_type[CCVM_TDX_PT_TDCX], CCVM_TDX_NR_TDCS + nv * CCVM_TDX_NR_TDCX);
	ck_assert_uint_eq(c.by_type[CCVM_TDX_PT_TDVPR], nv);
	ck_assert_uint_eq(c.by_type[CCVM_TDX_PT_REG], leaves);
	ck_assert_uint_eq(c.by_type[CCVM_TDX_PT_EPT], ept_pages);
	ck_assert_uint_eq(ccvm_tdx_td_nr_children(td), c.total - 1);
}

/*
 * The S-EPT, mirror and PAMT of the whole test layout agree, by this
 * file's own reading and by the library's checker (lib/invariants.c and
 * backends/tdx/tdx-check.c).
 */
static inline void check_invariants(void)
{
	struct ccvm_invariant_report r = { .sz = sizeof(r) };
	uint64_t seen[64], leaves, ept;

	ck_assert_int_eq(ccvm_vm_check_invariants(T.vm, &r), 0);
	ck_assert_msg(r.invariant == 0, "I%u: %s", r.invariant, r.msg);

	leaves = check_sept_mirror(SLOT0_GPA, SLOT0_SIZE / PG);
	ept = sept_pages_reachable(SLOT0_GPA, SLOT0_SIZE, seen, 64);
	if (T.g[1] || T.shared[1]) {
		leaves += check_sept_mirror(SLOT1_GPA, SLOT1_SIZE / PG);
		ept = sept_pages_reachable(SLOT0_GPA, SLOT1_GPA + SLOT1_SIZE, seen, 64);
	}
	check_td_pages(leaves, ept);
}

/* ---- an event trace of the platform (I12-I15) ------------------------------ */

#define TRACE_MAX	(1u << 18)

struct evtrace {
	pthread_mutex_t lock;
	uint32_t n;
	uint16_t ev[TRACE_MAX];
	bool overflow;
	struct tu_event enters;	/* VP.ENTERs since trace_start(), to wait on */
};

static struct evtrace *TR;

static inline void trace_cb(const struct ccvm_trace_record *rec, void *ctx)
{
	struct evtrace *t = ctx;

	if (rec->kind != CCVM_TRACE_EVENT)
		return;
	switch (rec->id) {
	case CCVM_EV_TDH_MEM_RANGE_BLOCK:
	case CCVM_EV_TDH_MEM_TRACK:
	case CCVM_EV_TDH_MEM_PAGE_REMOVE:
	case CCVM_EV_TDH_PHYMEM_PAGE_WBINVD:
	case CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM:
	case CCVM_EV_TDH_VP_FLUSH:
	case CCVM_EV_TDH_MNG_VPFLUSHDONE:
	case CCVM_EV_TDH_PHYMEM_CACHE_WB:
	case CCVM_EV_TDH_MNG_KEY_FREEID:
	case CCVM_EV_TDH_MEM_PAGE_AUG:
	case CCVM_EV_TDH_MEM_SEPT_ADD:
	case CCVM_EV_IPI:
	case CCVM_EV_PAGE_CLEAR:
	case CCVM_EV_TDX_BUSY:
	case CCVM_EV_TDH_VP_ENTER:
		break;
	default:
		return;
	}
	pthread_mutex_lock(&t->lock);
	if (t->n < TRACE_MAX)
		t->ev[t->n++] = (uint16_t)rec->id;
	else
		t->overflow = true;
	pthread_mutex_unlock(&t->lock);
	if (rec->id == CCVM_EV_TDH_VP_ENTER)
		tu_event_add(&t->enters, 1);
}

static inline void trace_start(void)
{
	TR = calloc(1, sizeof(*TR));
	ck_assert_ptr_nonnull(TR);
	pthread_mutex_init(&TR->lock, NULL);
	tu_event_init(&TR->enters);
	ck_assert_int_eq(ccvm_platform_set_trace(T.p, trace_cb, TR), 0);
}

static inline void trace_stop(void)
{
	ck_assert_int_eq(ccvm_platform_set_trace(T.p, NULL, NULL), 0);
	ck_assert(!TR->overflow);
}

static inline void trace_free(void)
{
	pthread_mutex_destroy(&TR->lock);
	tu_event_destroy(&TR->enters);
	free(TR);
	TR = NULL;
}

/*
 * I12: every REMOVE follows a BLOCK, then a TRACK, then a kick (IPI) since
 * the previous REMOVE, and is followed by WBINVD and a page clear before
 * the next BLOCK.  Return: REMOVEs seen.
 */
static inline uint32_t check_removal_order(bool runnable)
{
	uint32_t i, removes = 0;
	int stage = 0;		/* 0 none, 1 blocked, 2 tracked, 3 kicked */
	int after = 0;		/* after a REMOVE: 1 wbinvd seen, 2 clear seen */
	bool in_remove = false;

	for (i = 0; i < TR->n; i++) {
		switch (TR->ev[i]) {
		case CCVM_EV_TDH_MEM_RANGE_BLOCK:
			CHECK(!in_remove || after == 2,
				      "BLOCK at %u before the last page was flushed and cleared", i);
			in_remove = false;
			stage = 1;
			break;
		case CCVM_EV_TDH_MEM_TRACK:
			if (stage >= 1)
				stage = 2;
			break;
		case CCVM_EV_IPI:
			if (stage == 2)
				stage = 3;
			break;
		case CCVM_EV_TDH_MEM_PAGE_REMOVE:
			CHECK(stage == (runnable ? 3 : 1),
				      "REMOVE at %u without BLOCK, TRACK, kick (stage %d)", i, stage);
			removes++;
			in_remove = true;
			after = 0;
			break;
		case CCVM_EV_TDX_BUSY:
			/* A refused REMOVE is tried again, still tracked. */
			if (i && TR->ev[i - 1] == CCVM_EV_TDH_MEM_PAGE_REMOVE) {
				removes--;
				in_remove = false;
			}
			break;
		case CCVM_EV_TDH_PHYMEM_PAGE_WBINVD:
			if (in_remove && after == 0)
				after = 1;
			break;
		case CCVM_EV_PAGE_CLEAR:
			if (in_remove && after == 1) {
				after = 2;
				stage = 0;
			}
			break;
		default:
			break;
		}
	}
	CHECK(!in_remove || after == 2, "last REMOVE not flushed and cleared");
	return removes;
}

/*
 * I13, I14: the HKID release runs VP.FLUSH, VPFLUSHDONE, CACHE.WB on every
 * package, KEY.FREEID in that order; no RECLAIM before it and no BLOCK,
 * TRACK, REMOVE or AUG after it; the only WBINVD after it is the TDR's.
 */
static inline void check_release_order(unsigned int nr_vcpus)
{
	uint32_t i, flushes = 0, wbs = 0, wbinvd_after = 0;
	int64_t done = -1, freeid = -1;

	for (i = 0; i < TR->n; i++) {
		uint16_t e = TR->ev[i];

		if (e == CCVM_EV_TDH_VP_FLUSH && done < 0)
			flushes++;
		if (e == CCVM_EV_TDH_MNG_VPFLUSHDONE) {
			CHECK(done < 0, "second VPFLUSHDONE");
			done = i;
		}
		if (e == CCVM_EV_TDH_PHYMEM_CACHE_WB) {
			CHECK(done >= 0 && freeid < 0, "CACHE.WB at %u out of order", i);
			wbs++;
		}
		if (e == CCVM_EV_TDH_MNG_KEY_FREEID) {
			CHECK(done >= 0, "KEY.FREEID before VPFLUSHDONE");
			freeid = i;
		}
		if (e == CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM)
			CHECK(freeid >= 0, "RECLAIM at %u with the HKID held", i);
		if (freeid >= 0)
			CHECK(e != CCVM_EV_TDH_MEM_RANGE_BLOCK &&
				      e != CCVM_EV_TDH_MEM_TRACK &&
				      e != CCVM_EV_TDH_MEM_PAGE_REMOVE &&
				      e != CCVM_EV_TDH_MEM_PAGE_AUG,
				      "S-EPT change at %u after KEY.FREEID", i);
		if (freeid >= 0 && e == CCVM_EV_TDH_PHYMEM_PAGE_WBINVD)
			wbinvd_after++;
	}
	ck_assert_int_ge(freeid, 0);
	ck_assert_uint_eq(flushes, nr_vcpus);
	ck_assert_uint_eq(wbs, ccvm_tdx_nr_packages(T.m));
	ck_assert_uint_eq(wbinvd_after, 1);
}

#endif /* CCVM_TESTS_TDX_FIXTURE_H */
