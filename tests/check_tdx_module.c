/* SPDX-License-Identifier: MIT */
/*
 * Tests for the simulated TDX module (backends/tdx/tdx-module.c): every
 * SEAMCALL's preconditions and status codes, the S-EPT state machine, TLB
 * tracking, the HKID pool and release order, reclaim and PAMT ownership,
 * ciphertext and poison, injected busy at every leaf and real
 * OPERAND_BUSY between threads.  Each test gets a fresh platform with the
 * tdx backend and calls the module directly with pages from
 * ccvm_page_alloc().
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "testutil.h"
#include "../backends/tdx/tdx-module.h"

#define MIB		(1ull << 20)
#define GPA0		(64 * MIB)		/* first test GPA, 1G region 0 */
#define GPA_2M		(2 * MIB)
#define MAX_DONATED	256
#define HAMMER_MAX	20000000u		/* iterations before giving up */

static struct ccvm_platform *P;
static struct ccvm_tdx_module *M;

/* A TD under test and every page donated to it (reclaimed at teardown). */
struct ttd {
	struct ccvm_tdx_td *td;
	uint32_t hkid;
	uint64_t tdr;
	struct ccvm_tdx_vp *vp[4];
	unsigned int vp_cpu[4];
	int nr_vp;
	uint64_t donated[MAX_DONATED];
	int nr_donated;
	bool hkid_released;
};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static void platform_up(uint32_t nr_cpus, uint32_t nr_keyids)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = "tdx",
						     .mem_bytes = 256 * MIB,
						     .nr_cpus = nr_cpus,
						     .nr_keyids = nr_keyids,
						     .seed = 7);

	P = tu_platform_up(&o);
	M = ccvm_platform_priv(P);
	ck_assert_ptr_nonnull(M);
}

static void setup(void)
{
	platform_up(0, 0);
}

static void teardown(void)
{
	tu_platform_down(P);
	P = NULL;
	M = NULL;
}

static uint64_t donate(struct ttd *t)
{
	uint64_t pfn = tu_page(P);

	ck_assert_int_lt(t->nr_donated, MAX_DONATED);
	t->donated[t->nr_donated++] = pfn;
	return pfn;
}

static unsigned int pamt_type(uint64_t pfn)
{
	struct ccvm_tdx_pamt_info pi;

	ck_assert_int_eq(ccvm_tdx_pamt_get(M, pfn, &pi), 0);
	return pi.type;
}

static uint64_t pamt_owner(uint64_t pfn)
{
	struct ccvm_tdx_pamt_info pi;

	ck_assert_int_eq(ccvm_tdx_pamt_get(M, pfn, &pi), 0);
	return pi.owner;
}

#define ck_status(expr, want) do {						\
	uint64_t _s = (expr), _w = (want);					\
	ck_assert_msg(_s == _w, "%s: got %#llx (%s), want %#llx (%s)", #expr,	\
		      (unsigned long long)_s, ccvm_tdx_status_name(_s),		\
		      (unsigned long long)_w, ccvm_tdx_status_name(_w));		\
} while (0)

#define OK(expr)	ck_status(expr, TDX_SUCCESS)
#define RCX		CCVM_TDX_OPERAND_RCX

static unsigned int sept_state(struct ttd *t, uint64_t gpa, int level)
{
	struct ccvm_tdx_sept_info si;

	gpa &= ~((CCVM_PAGE_SIZE << (9 * level)) - 1);
	OK(ccvm_tdh_mem_sept_rd(t->td, gpa, level, &si));
	ck_assert_int_eq(si.level, level);
	return si.state;
}

/* MNG.CREATE and KEY.CONFIG on every package: lifecycle KEYS_CONFIGURED. */
static void td_create_keyed(struct ttd *t)
{
	unsigned int pkg;

	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &t->hkid), 0);
	t->tdr = tu_page(P);
	OK(ccvm_tdh_mng_create(M, NULL, t->tdr, t->hkid, &t->td));
	for (pkg = 0; pkg < ccvm_tdx_nr_packages(M); pkg++)
		OK(ccvm_tdh_mng_key_config(t->td, pkg * 2));
	ck_assert_int_eq(ccvm_tdx_td_lifecycle(t->td), CCVM_TDX_TD_KEYS_CONFIGURED);
}

static void td_add_vp(struct ttd *t, unsigned int cpu)
{
	struct ccvm_tdx_vp *vp;
	unsigned int i;

	OK(ccvm_tdh_vp_create(t->td, donate(t), &vp));
	for (i = 0; i < CCVM_TDX_NR_TDCX; i++)
		OK(ccvm_tdh_vp_addcx(vp, donate(t)));
	OK(ccvm_tdh_vp_init(vp, cpu));
	t->vp_cpu[t->nr_vp] = cpu;
	t->vp[t->nr_vp++] = vp;
}

/* A TD through MNG.INIT with @nr_vp vCPUs (vCPU i on CPU i % nr_cpus). */
static void td_build(struct ttd *t, uint64_t attributes, uint32_t gpaw, int nr_vp)
{
	struct ccvm_tdx_td_params params = {
		.attributes = attributes, .gpaw = gpaw, .max_vcpus = 8,
	};
	unsigned int i;

	td_create_keyed(t);
	for (i = 0; i < CCVM_TDX_NR_TDCS; i++)
		OK(ccvm_tdh_mng_addcx(t->td, donate(t)));
	OK(ccvm_tdh_mng_init(t->td, &params));
	for (i = 0; i < (unsigned int)nr_vp; i++)
		td_add_vp(t, i % ccvm_platform_nr_cpus(P));
}

static int root_level(uint32_t gpaw)
{
	return gpaw == 52 ? CCVM_TDX_LEVEL_256T : CCVM_TDX_LEVEL_512G;
}

/* SEPT.ADD every missing S-EPT page from the root down to the 4K table. */
static void map_path(struct ttd *t, uint64_t gpa, uint32_t gpaw)
{
	int level;

	for (level = root_level(gpaw); level >= CCVM_TDX_LEVEL_2M; level--) {
		uint64_t a = gpa & ~((CCVM_PAGE_SIZE << (9 * level)) - 1);
		uint64_t pfn = tu_page(P);
		uint64_t st = ccvm_tdh_mem_sept_add(t->td, a, level, pfn);

		if (st == (TDX_EPT_ENTRY_NOT_FREE | RCX)) {
			ccvm_page_free(P, pfn);
			continue;
		}
		OK(st);
		ck_assert_int_lt(t->nr_donated, MAX_DONATED);
		t->donated[t->nr_donated++] = pfn;
	}
}

/* A TD that is RUNNABLE with @nr_vp vCPUs and the S-EPT path to GPA0. */
static void td_runnable(struct ttd *t, uint64_t attributes, int nr_vp)
{
	td_build(t, attributes, 48, nr_vp);
	map_path(t, GPA0, 48);
	OK(ccvm_tdh_mr_finalize(t->td));
	ck_assert_int_eq(ccvm_tdx_td_op_state(t->td), CCVM_TDX_OP_RUNNABLE);
}

/* The vCPU runs guest code: the end of its VP.ENTER's window (epoch lock). */
static void guest_runs(struct ccvm_tdx_vp *vp)
{
	(void)ccvm_tdx_guest_access(vp, GPA0, false);
}

static uint64_t aug(struct ttd *t, uint64_t gpa)
{
	uint64_t pfn = donate(t);

	OK(ccvm_tdh_mem_page_aug(t->td, gpa, CCVM_TDX_LEVEL_4K, pfn));
	return pfn;
}

/* The KVM HKID release: VP.FLUSH, VPFLUSHDONE, CACHE.WB, KEY.FREEID. */
static void td_release_hkid(struct ttd *t)
{
	unsigned int pkg;
	uint64_t st;
	int i;

	for (i = 0; i < t->nr_vp; i++) {
		if (!t->vp[i])
			continue;
		ccvm_tdx_vp_exit(t->vp[i]);
		st = ccvm_tdh_vp_flush(t->vp[i], t->vp_cpu[i]);
		ck_assert(st == TDX_SUCCESS || st == TDX_VCPU_NOT_ASSOCIATED);
	}
	OK(ccvm_tdh_mng_vpflushdone(t->td));
	for (pkg = 0; pkg < ccvm_tdx_nr_packages(M); pkg++) {
		st = ccvm_tdh_phymem_cache_wb(M, NULL, pkg * 2, false);
		while (st == TDX_INTERRUPTED_RESUMABLE)
			st = ccvm_tdh_phymem_cache_wb(M, NULL, pkg * 2, true);
		ck_assert(st == TDX_SUCCESS || st == TDX_NO_HKID_READY_TO_WBCACHE);
	}
	OK(ccvm_tdh_mng_key_freeid(t->td));
	ck_assert_int_eq(ccvm_tdx_td_lifecycle(t->td), CCVM_TDX_TD_TEARDOWN);
	t->hkid_released = true;
}

/* Reclaim every donated page still owned, then the TDR; free the HKID. */
static void td_destroy(struct ttd *t)
{
	struct ccvm_tdx_reclaim_info ri;
	int i;

	if (!t->td)
		return;
	if (!t->hkid_released)
		td_release_hkid(t);
	for (i = 0; i < t->nr_donated; i++) {
		uint64_t pfn = t->donated[i];

		if (pamt_type(pfn) != CCVM_TDX_PT_NDA) {
			OK(ccvm_tdh_phymem_page_reclaim(M, NULL, pfn, &ri));
			ck_assert_uint_eq(ri.owner, t->tdr);
		}
		ck_assert_uint_eq(pamt_type(pfn), CCVM_TDX_PT_NDA);
		ccvm_page_clear(P, pfn);
		ccvm_page_free(P, pfn);
	}
	ck_assert_uint_eq(ccvm_tdx_td_nr_children(t->td), 0);
	OK(ccvm_tdh_phymem_page_reclaim(M, NULL, t->tdr, &ri));
	ck_assert_uint_eq(ri.type, CCVM_TDX_PT_TDR);
	OK(ccvm_tdh_phymem_page_wbinvd(M, NULL, t->tdr, CCVM_TDX_GLOBAL_KEYID));
	ccvm_page_clear(P, t->tdr);
	ccvm_page_free(P, t->tdr);
	ck_assert_int_eq(ccvm_tdx_hkid_free(M, NULL, t->hkid), 0);
	t->td = NULL;
}

/* BLOCK, TRACK, REMOVE, WBINVD of the 4K page at @gpa (no vCPU in guest). */
static uint64_t remove_page(struct ttd *t, uint64_t gpa)
{
	uint64_t pfn = 0;

	OK(ccvm_tdh_mem_range_block(t->td, gpa, CCVM_TDX_LEVEL_4K));
	OK(ccvm_tdh_mem_track(t->td));
	OK(ccvm_tdh_mem_page_remove(t->td, gpa, CCVM_TDX_LEVEL_4K, &pfn));
	OK(ccvm_tdh_phymem_page_wbinvd(M, NULL, pfn, t->hkid));
	return pfn;
}

/* ------------------------------------------------------------------ */
/* Module, names, HKID pool                                            */

START_TEST(test_init_defaults)
{
	ck_assert_uint_eq(ccvm_tdx_nr_hkids(M), CCVM_TDX_DEFAULT_NR_HKIDS);
	ck_assert_uint_eq(ccvm_tdx_nr_packages(M), 1);	/* 2 CPUs */
	ck_assert_uint_eq(ccvm_tdx_cpu_package(M, 0), 0);
	ck_assert_uint_eq(ccvm_tdx_cpu_package(M, 1), 0);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(M), 0);
	ck_assert_uint_eq(pamt_type(tu_page(P)), CCVM_TDX_PT_NDA);
	ck_assert_int_eq(ccvm_tdx_module_init(NULL, M), -EINVAL);
}
END_TEST

START_TEST(test_init_topology)
{
	ck_assert_int_eq(ccvm_platform_destroy(P), 0);
	platform_up(7, 5);
	ck_assert_uint_eq(ccvm_tdx_nr_hkids(M), 5);
	ck_assert_uint_eq(ccvm_tdx_nr_packages(M), 3);
	ck_assert_uint_eq(ccvm_tdx_cpu_package(M, 5), 2);
	ck_assert_uint_eq(ccvm_tdx_cpu_package(M, 6), 2);	/* odd CPU out */
	ck_assert_uint_eq(ccvm_tdx_cpu_package(M, 1000), 2);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(ccvm_tdx_status_name(TDX_SUCCESS), "TDX_SUCCESS");
	ck_assert_str_eq(ccvm_tdx_status_name(TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_SEPT),
			 "TDX_OPERAND_BUSY");
	ck_assert_str_eq(ccvm_tdx_status_name(TDX_TLB_TRACKING_NOT_DONE | RCX),
			 "TDX_TLB_TRACKING_NOT_DONE");
	ck_assert_str_eq(ccvm_tdx_status_name(CCVM_TDX_SW_VE), "CCVM_TDX_SW_VE");
	ck_assert_str_eq(ccvm_tdx_status_name(0xC0DE000000000000ull), "TDX_UNKNOWN");
	ck_assert_str_eq(ccvm_tdx_leaf_name(CCVM_TDH_MEM_PAGE_AUG), "TDH.MEM.PAGE.AUG");
	ck_assert_str_eq(ccvm_tdx_leaf_name(CCVM_TDX_LEAF_TDG_MEM_PAGE_ACCEPT),
			 "TDG.MEM.PAGE.ACCEPT");
	ck_assert_ptr_null(ccvm_tdx_leaf_name(5));
	ck_assert_ptr_null(ccvm_tdx_leaf_name(1000));
	/* The 6.7 values. */
	ck_assert_uint_eq(TDX_OPERAND_BUSY, 0x8000020000000000ull);
	ck_assert_uint_eq(TDX_EPT_ENTRY_STATE_INCORRECT, 0xC0000B0D00000000ull);
	ck_assert(ccvm_tdx_is_busy(TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TD_EPOCH));
	ck_assert(!ccvm_tdx_is_busy(TDX_PREVIOUS_TLB_EPOCH_BUSY));
}
END_TEST

START_TEST(test_hkid_pool_exhaustion_and_reuse)
{
	struct ttd a, b;
	uint32_t h[3], extra, i;

	ck_assert_int_eq(ccvm_platform_destroy(P), 0);
	platform_up(0, 3);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &h[i]), 0);
		ck_assert_uint_ge(h[i], CCVM_TDX_FIRST_HKID);
	}
	ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &extra), -ENOSPC);
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(M), 3);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_KEYID_ALLOC), 3);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(ccvm_tdx_hkid_free(M, NULL, h[i]), 0);
	ck_assert_int_eq(ccvm_tdx_hkid_free(M, NULL, h[0]), -EINVAL);
	ck_assert_int_eq(ccvm_tdx_hkid_free(M, NULL, 0), -EINVAL);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_KEYID_FREE), 3);

	/* A TD holds its HKID in the KOT: the pool cannot hand it back. */
	td_build(&a, 0, 48, 1);
	ck_assert_int_eq(ccvm_tdx_hkid_free(M, NULL, a.hkid), -EBUSY);
	td_release_hkid(&a);		/* KEY.FREEID */
	memset(&b, 0, sizeof(b));
	b.tdr = tu_page(P);
	/* The KOT is free again, but the host pool still has it allocated. */
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(M), 1);
	td_destroy(&a);
	ck_assert_uint_eq(ccvm_tdx_hkids_in_use(M), 0);
	ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &extra), 0);
	ck_assert_uint_eq(extra, a.hkid);	/* reused, lowest first */
	OK(ccvm_tdh_mng_create(M, NULL, b.tdr, extra, &b.td));
	b.hkid = extra;
	td_destroy(&b);

	/* A leaked HKID is never handed out again. */
	ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &extra), 0);
	ccvm_tdx_hkid_leak(M, NULL, extra);
	ccvm_tdx_hkid_leak(M, NULL, extra);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_KEYID_LEAK), 1);
	ck_assert_int_eq(ccvm_tdx_hkid_free(M, NULL, extra), -EINVAL);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &h[i]), 0);
	ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &h[2]), -ENOSPC);
	ck_assert_uint_ne(h[0], extra);
	ck_assert_uint_ne(h[1], extra);
}
END_TEST

/* ------------------------------------------------------------------ */
/* TD management                                                       */

START_TEST(test_mng_create)
{
	struct ccvm_tdx_td *td, *td2;
	uint64_t tdr = tu_page(P), tdr2 = tu_page(P);
	uint32_t hkid;

	ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &hkid), 0);
	ck_status(ccvm_tdh_mng_create(M, NULL, 0, hkid, &td), TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdh_mng_create(M, NULL, ccvm_platform_nr_pages(P), hkid, &td),
		  TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdh_mng_create(M, NULL, tdr, 0, &td),
		  TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RDX);
	ck_status(ccvm_tdh_mng_create(M, NULL, tdr, CCVM_TDX_GLOBAL_KEYID, &td),
		  TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RDX);
	ck_status(ccvm_tdh_mng_create(M, NULL, tdr, CCVM_TDX_FIRST_HKID + 32, &td),
		  TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RDX);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(M), 0);

	OK(ccvm_tdh_mng_create(M, NULL, tdr, hkid, &td));
	ck_assert_uint_eq(pamt_type(tdr), CCVM_TDX_PT_TDR);
	ck_assert_uint_eq(pamt_owner(tdr), tdr);
	ck_assert_int_eq(ccvm_tdx_td_lifecycle(td), CCVM_TDX_TD_HKID_ASSIGNED);
	ck_assert_int_eq(ccvm_tdx_td_op_state(td), CCVM_TDX_OP_UNINITIALIZED);
	ck_assert_uint_eq(ccvm_tdx_td_hkid(td), hkid);
	ck_assert_uint_eq(ccvm_tdx_td_tdr_pfn(td), tdr);
	ck_assert_uint_eq(ccvm_tdx_td_epoch(td), 1);
	ck_assert_uint_eq(ccvm_tdx_td_shared_bit(td), 0);

	/* The TDR page is taken; the HKID is assigned. */
	ck_status(ccvm_tdh_mng_create(M, NULL, tdr, hkid + 1, &td2),
		  TDX_PAGE_METADATA_INCORRECT | RCX);
	ck_status(ccvm_tdh_mng_create(M, NULL, tdr2, hkid, &td2),
		  TDX_HKID_NOT_FREE | CCVM_TDX_OPERAND_RDX);
	ck_assert_uint_eq(pamt_type(tdr2), CCVM_TDX_PT_NDA);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDH_MNG_CREATE), 8);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDX_ERROR), 7);

	/* Nothing else was added: a KEY.CONFIG-less TD can go straight down. */
	ck_status(ccvm_tdh_mng_key_freeid(td), TDX_LIFECYCLE_STATE_INCORRECT);
	OK(ccvm_tdh_mng_vpflushdone(td));
	ck_status(ccvm_tdh_mng_key_freeid(td), TDX_WBCACHE_NOT_COMPLETE);
	OK(ccvm_tdh_phymem_cache_wb(M, NULL, 0, false));
	OK(ccvm_tdh_mng_key_freeid(td));
	OK(ccvm_tdh_phymem_page_reclaim(M, NULL, tdr, NULL));
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(M), 0);
}
END_TEST

START_TEST(test_key_config_packages)
{
	struct ccvm_tdx_td *td;
	uint64_t tdr;
	uint32_t hkid;

	ck_assert_int_eq(ccvm_platform_destroy(P), 0);
	platform_up(4, 0);		/* 2 packages: CPUs 0-1 and 2-3 */
	ck_assert_uint_eq(ccvm_tdx_nr_packages(M), 2);
	tdr = tu_page(P);
	ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &hkid), 0);
	OK(ccvm_tdh_mng_create(M, NULL, tdr, hkid, &td));
	ck_status(ccvm_tdh_mng_key_config(td, 4), TDX_OPERAND_INVALID);
	OK(ccvm_tdh_mng_key_config(td, 1));
	ck_status(ccvm_tdh_mng_key_config(td, 0), TDX_KEY_CONFIGURED);
	ck_assert_int_eq(ccvm_tdx_td_lifecycle(td), CCVM_TDX_TD_HKID_ASSIGNED);
	/* Not keyed everywhere yet: S-EPT and TDCS work is refused. */
	ck_status(ccvm_tdh_mng_addcx(td, tu_page(P)), TDX_TD_KEYS_NOT_CONFIGURED);
	OK(ccvm_tdh_mng_key_config(td, 3));
	ck_assert_int_eq(ccvm_tdx_td_lifecycle(td), CCVM_TDX_TD_KEYS_CONFIGURED);
	/* Every package done: the module says the lifecycle is wrong. */
	ck_status(ccvm_tdh_mng_key_config(td, 2), TDX_LIFECYCLE_STATE_INCORRECT);
	/* KEY_CONFIGURED is a warning, not an error. */
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDX_ERROR), 3);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDH_MNG_KEY_CONFIG), 5);

	/* Release needs a write-back on both packages. */
	OK(ccvm_tdh_mng_vpflushdone(td));
	OK(ccvm_tdh_phymem_cache_wb(M, NULL, 0, false));
	ck_status(ccvm_tdh_phymem_cache_wb(M, NULL, 1, false), TDX_NO_HKID_READY_TO_WBCACHE);
	ck_status(ccvm_tdh_mng_key_freeid(td), TDX_WBCACHE_NOT_COMPLETE);
	OK(ccvm_tdh_phymem_cache_wb(M, NULL, 2, false));
	OK(ccvm_tdh_mng_key_freeid(td));
	OK(ccvm_tdh_phymem_page_reclaim(M, NULL, tdr, NULL));
}
END_TEST

START_TEST(test_addcx_and_init)
{
	struct ccvm_tdx_td_params params = { .gpaw = 48, .max_vcpus = 4 };
	struct ttd t;
	uint64_t used;
	int i;

	td_create_keyed(&t);
	ck_status(ccvm_tdh_mng_init(t.td, &params), TDX_TDCS_NOT_ALLOCATED);
	ck_status(ccvm_tdh_mng_addcx(t.td, 0), TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdh_mng_addcx(t.td, t.tdr), TDX_PAGE_METADATA_INCORRECT | RCX);
	for (i = 0; i < (int)CCVM_TDX_NR_TDCS; i++) {
		uint64_t pfn = donate(&t);

		OK(ccvm_tdh_mng_addcx(t.td, pfn));
		ck_assert_uint_eq(pamt_type(pfn), CCVM_TDX_PT_TDCX);
		ck_assert_uint_eq(pamt_owner(pfn), t.tdr);
	}
	used = tu_page(P);
	ck_status(ccvm_tdh_mng_addcx(t.td, used), TDX_TDCX_NUM_INCORRECT | RCX);
	ck_assert_uint_eq(pamt_type(used), CCVM_TDX_PT_NDA);
	ck_assert_uint_eq(ccvm_tdx_td_nr_children(t.td), CCVM_TDX_NR_TDCS);

	/* S-EPT work needs MNG.INIT first. */
	ck_status(ccvm_tdh_mem_sept_add(t.td, 0, CCVM_TDX_LEVEL_512G, used),
		  TDX_OP_STATE_INCORRECT);
	ck_status(ccvm_tdh_mng_init(t.td, NULL), TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_RDX);
	params.attributes = 1;
	ck_status(ccvm_tdh_mng_init(t.td, &params),
		  TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_ATTRIBUTES);
	params.attributes = 0;
	params.gpaw = 40;
	ck_status(ccvm_tdh_mng_init(t.td, &params),
		  TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_EXEC_CONTROLS);
	params.gpaw = 48;
	params.max_vcpus = 0;
	ck_status(ccvm_tdh_mng_init(t.td, &params),
		  TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_MAX_VCPUS);
	params.max_vcpus = 4;
	ck_assert_int_eq(ccvm_tdx_td_op_state(t.td), CCVM_TDX_OP_UNINITIALIZED);
	OK(ccvm_tdh_mng_init(t.td, &params));
	ck_assert_int_eq(ccvm_tdx_td_op_state(t.td), CCVM_TDX_OP_INITIALIZED);
	ck_assert_uint_eq(ccvm_tdx_td_shared_bit(t.td), 1ull << 47);
	ck_status(ccvm_tdh_mng_init(t.td, &params), TDX_OP_STATE_INCORRECT);
	ccvm_page_free(P, used);
	td_destroy(&t);
}
END_TEST

START_TEST(test_finalize_once)
{
	struct ttd t;

	td_build(&t, 0, 48, 0);
	ck_assert_uint_eq(ccvm_tdx_td_measurement(t.td), 0);
	OK(ccvm_tdh_mr_finalize(t.td));
	ck_assert_uint_ne(ccvm_tdx_td_measurement(t.td), 0);
	ck_status(ccvm_tdh_mr_finalize(t.td), TDX_OP_STATE_INCORRECT);
	ck_assert_int_eq(ccvm_tdx_td_op_state(t.td), CCVM_TDX_OP_RUNNABLE);
	td_destroy(&t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* vCPUs                                                               */

START_TEST(test_vp_lifecycle)
{
	struct ccvm_tdx_td_params params = { .gpaw = 48, .max_vcpus = 1 };
	struct ccvm_tdx_vp *vp, *vp2;
	struct ttd t;
	unsigned int i;

	td_create_keyed(&t);
	ck_status(ccvm_tdh_vp_create(t.td, tu_page(P), &vp), TDX_TDCS_NOT_ALLOCATED);
	for (i = 0; i < CCVM_TDX_NR_TDCS; i++)
		OK(ccvm_tdh_mng_addcx(t.td, donate(&t)));
	ck_status(ccvm_tdh_vp_create(t.td, tu_page(P), &vp), TDX_OP_STATE_INCORRECT);
	OK(ccvm_tdh_mng_init(t.td, &params));

	ck_status(ccvm_tdh_vp_create(t.td, t.tdr, &vp), TDX_PAGE_METADATA_INCORRECT | RCX);
	OK(ccvm_tdh_vp_create(t.td, donate(&t), &vp));
	ck_assert_uint_eq(pamt_type(ccvm_tdx_vp_tdvpr_pfn(vp)), CCVM_TDX_PT_TDVPR);
	ck_assert_ptr_eq(ccvm_tdx_vp_td(vp), t.td);
	ck_status(ccvm_tdh_vp_init(vp, 0), TDX_TDCX_NUM_INCORRECT | RCX);
	OK(ccvm_tdh_vp_addcx(vp, donate(&t)));
	OK(ccvm_tdh_vp_addcx(vp, donate(&t)));
	ck_status(ccvm_tdh_vp_addcx(vp, tu_page(P)), TDX_TDCX_NUM_INCORRECT | RCX);
	ck_assert_int_eq(ccvm_tdx_vp_cpu(vp), -1);
	ck_status(ccvm_tdh_vp_init(vp, 9), TDX_OPERAND_INVALID);
	OK(ccvm_tdh_vp_init(vp, 1));
	ck_assert(ccvm_tdx_vp_initialized(vp));
	ck_assert_int_eq(ccvm_tdx_vp_cpu(vp), 1);
	ck_status(ccvm_tdh_vp_init(vp, 1), TDX_VCPU_STATE_INCORRECT);
	ck_status(ccvm_tdh_vp_addcx(vp, tu_page(P)), TDX_VCPU_STATE_INCORRECT);

	/* max_vcpus 1: a second vCPU can be created but not initialised. */
	OK(ccvm_tdh_vp_create(t.td, donate(&t), &vp2));
	OK(ccvm_tdh_vp_addcx(vp2, donate(&t)));
	OK(ccvm_tdh_vp_addcx(vp2, donate(&t)));
	ck_status(ccvm_tdh_vp_init(vp2, 0), TDX_MAX_VCPUS_EXCEEDED);
	ck_assert(!ccvm_tdx_vp_initialized(vp2));

	/* Not runnable yet. */
	ck_status(ccvm_tdh_vp_enter(vp, 1), TDX_OP_STATE_INCORRECT);
	OK(ccvm_tdh_mr_finalize(t.td));
	ck_status(ccvm_tdh_vp_enter(vp2, 0), TDX_VCPU_STATE_INCORRECT);
	ck_status(ccvm_tdh_vp_enter(vp, 0), TDX_VCPU_ASSOCIATED);
	OK(ccvm_tdh_vp_enter(vp, 1));
	ck_assert(ccvm_tdx_vp_in_guest(vp));
	ck_status(ccvm_tdh_vp_enter(vp, 1), TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TDVPR);
	ck_status(ccvm_tdh_vp_flush(vp, 1), TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TDVPR);
	ck_status(ccvm_tdh_mng_vpflushdone(t.td), TDX_FLUSHVP_NOT_DONE);
	ccvm_tdx_vp_exit(vp);
	ccvm_tdx_vp_exit(vp);		/* a second exit is harmless */
	ck_assert(!ccvm_tdx_vp_in_guest(vp));

	/* Migration: flush on the old CPU, enter on the new one. */
	ck_status(ccvm_tdh_vp_flush(vp, 0), TDX_VCPU_ASSOCIATED);
	OK(ccvm_tdh_vp_flush(vp, 1));
	ck_status(ccvm_tdh_vp_flush(vp, 1), TDX_VCPU_NOT_ASSOCIATED);
	ck_status(ccvm_tdh_vp_flush(vp2, 0), TDX_VCPU_NOT_ASSOCIATED);
	OK(ccvm_tdh_vp_enter(vp, 0));
	ck_assert_int_eq(ccvm_tdx_vp_cpu(vp), 0);
	ccvm_tdx_vp_exit(vp);
	t.vp[0] = vp;
	t.vp_cpu[0] = 0;
	t.nr_vp = 1;
	td_destroy(&t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* S-EPT                                                               */

START_TEST(test_sept_add_walk)
{
	struct ccvm_tdx_sept_info si;
	struct ttd t;
	uint64_t spt, gpa = GPA0;

	td_build(&t, 0, 48, 0);
	spt = donate(&t);
	/* A 4K table needs the PDPT and PD first. */
	ck_status(ccvm_tdh_mem_sept_add(t.td, gpa, CCVM_TDX_LEVEL_2M, spt),
		  TDX_EPT_WALK_FAILED | RCX);
	ck_status(ccvm_tdh_mem_sept_rd(t.td, gpa, CCVM_TDX_LEVEL_4K, &si),
		  TDX_EPT_WALK_FAILED | RCX);
	ck_assert_int_eq(si.level, CCVM_TDX_LEVEL_512G);
	ck_assert_uint_eq(si.state, CCVM_TDX_SEPT_FREE);
	ck_status(ccvm_tdh_mem_sept_add(t.td, gpa, CCVM_TDX_LEVEL_4K, spt),
		  TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdh_mem_sept_add(t.td, gpa + CCVM_PAGE_SIZE, CCVM_TDX_LEVEL_2M, spt),
		  TDX_OPERAND_INVALID | RCX);	/* not 2M aligned */
	ck_status(ccvm_tdh_mem_sept_add(t.td, 1ull << 47, CCVM_TDX_LEVEL_512G, spt),
		  TDX_OPERAND_INVALID | RCX);	/* shared bit */
	ck_status(ccvm_tdh_mem_sept_add(t.td, 1ull << 48, CCVM_TDX_LEVEL_512G, spt),
		  TDX_OPERAND_INVALID | RCX);	/* beyond GPAW */
	ck_status(ccvm_tdh_mem_sept_add(t.td, 0, CCVM_TDX_LEVEL_256T, spt),
		  TDX_OPERAND_INVALID | RCX);	/* 4-level TD */
	ck_status(ccvm_tdh_mem_sept_add(t.td, 0, CCVM_TDX_LEVEL_512G, t.tdr),
		  TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_R8);
	ck_status(ccvm_tdh_mem_sept_add(t.td, 0, CCVM_TDX_LEVEL_512G, 0),
		  TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_R8);

	map_path(&t, gpa, 48);
	ck_assert_uint_eq(sept_state(&t, gpa, CCVM_TDX_LEVEL_512G), CCVM_TDX_SEPT_NL_MAPPED);
	ck_assert_uint_eq(sept_state(&t, gpa, CCVM_TDX_LEVEL_1G), CCVM_TDX_SEPT_NL_MAPPED);
	ck_assert_uint_eq(sept_state(&t, gpa, CCVM_TDX_LEVEL_2M), CCVM_TDX_SEPT_NL_MAPPED);
	ck_assert_uint_eq(sept_state(&t, gpa, CCVM_TDX_LEVEL_4K), CCVM_TDX_SEPT_FREE);
	OK(ccvm_tdh_mem_sept_rd(t.td, gpa, CCVM_TDX_LEVEL_2M, &si));
	ck_assert_uint_eq(pamt_type(si.pfn), CCVM_TDX_PT_EPT);
	ck_assert_uint_eq(pamt_owner(si.pfn), t.tdr);
	ck_assert_uint_eq(CCVM_TDX_SEPTE_PFN(si.raw), si.pfn);
	/* The entry is in use; a sibling 2M is not. */
	ck_status(ccvm_tdh_mem_sept_add(t.td, gpa, CCVM_TDX_LEVEL_2M, spt),
		  TDX_EPT_ENTRY_NOT_FREE | RCX);
	OK(ccvm_tdh_mem_sept_add(t.td, gpa + GPA_2M, CCVM_TDX_LEVEL_2M, spt));
	ck_status(ccvm_tdh_mem_sept_add(t.td, gpa + 2 * GPA_2M, CCVM_TDX_LEVEL_2M, spt),
		  TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_R8);
	td_destroy(&t);
}
END_TEST

START_TEST(test_sept_page_is_initialised)
{
	struct ttd t;
	uint64_t spt, *bytes;

	td_build(&t, 0, 48, 0);
	map_path(&t, GPA0, 48);
	/* A dirty page donated as an S-EPT page reads as all-FREE entries. */
	spt = donate(&t);
	bytes = ccvm_page_ptr(P, spt);
	ccvm_page_mark_dirty(P, spt);
	memset(bytes, 0xff, CCVM_PAGE_SIZE);
	OK(ccvm_tdh_mem_sept_add(t.td, GPA0 + GPA_2M, CCVM_TDX_LEVEL_2M, spt));
	ck_assert_uint_eq(sept_state(&t, GPA0 + GPA_2M, CCVM_TDX_LEVEL_4K), CCVM_TDX_SEPT_FREE);
	ck_assert_uint_eq(bytes[17], 0);
	td_destroy(&t);
}
END_TEST

START_TEST(test_page_add_before_finalize)
{
	struct ttd t;
	uint8_t src[CCVM_PAGE_SIZE];
	uint64_t pfn, pfn2, m0, m1, m2, gpa = GPA0;
	struct ccvm_tdx_sept_info si;

	memset(src, 0x3c, sizeof(src));
	td_build(&t, 0, 48, 0);
	pfn = donate(&t);
	ck_status(ccvm_tdh_mem_page_add(t.td, gpa, CCVM_TDX_LEVEL_4K, pfn, src),
		  TDX_EPT_WALK_FAILED | RCX);
	map_path(&t, gpa, 48);
	ck_status(ccvm_tdh_mem_page_add(t.td, gpa, CCVM_TDX_LEVEL_4K, pfn, NULL),
		  TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_R9);
	ck_status(ccvm_tdh_mem_page_add(t.td, gpa, CCVM_TDX_LEVEL_2M, pfn, src),
		  TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdh_mem_page_aug(t.td, gpa, CCVM_TDX_LEVEL_4K, pfn),
		  TDX_OP_STATE_INCORRECT);	/* AUG only after finalize */
	ck_status(ccvm_tdh_mr_extend(t.td, gpa), TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	m0 = ccvm_tdx_td_measurement(t.td);
	OK(ccvm_tdh_mem_page_add(t.td, gpa, CCVM_TDX_LEVEL_4K, pfn, src));
	m1 = ccvm_tdx_td_measurement(t.td);
	ck_assert_uint_ne(m0, m1);
	ck_assert_int_eq(memcmp(ccvm_page_ptr(P, pfn), src, sizeof(src)), 0);
	ck_assert(ccvm_page_is_dirty(P, pfn));
	ck_assert_uint_eq(pamt_type(pfn), CCVM_TDX_PT_REG);
	ck_assert_uint_eq(pamt_owner(pfn), t.tdr);
	OK(ccvm_tdh_mem_sept_rd(t.td, gpa, CCVM_TDX_LEVEL_4K, &si));
	ck_assert_uint_eq(si.state, CCVM_TDX_SEPT_MAPPED);
	ck_assert_uint_eq(si.pfn, pfn);

	/* Already mapped; the second page is untouched. */
	pfn2 = donate(&t);
	ck_status(ccvm_tdh_mem_page_add(t.td, gpa, CCVM_TDX_LEVEL_4K, pfn2, src),
		  TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	ck_assert_uint_eq(pamt_type(pfn2), CCVM_TDX_PT_NDA);
	ck_status(ccvm_tdh_mem_page_add(t.td, gpa + CCVM_PAGE_SIZE, CCVM_TDX_LEVEL_4K, pfn, src),
		  TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_R8);

	/* MR.EXTEND measures 256-byte chunks of mapped pages. */
	ck_status(ccvm_tdh_mr_extend(t.td, gpa + 8), TDX_OPERAND_INVALID | RCX);
	OK(ccvm_tdh_mr_extend(t.td, gpa + 256));
	m2 = ccvm_tdx_td_measurement(t.td);
	ck_assert_uint_ne(m1, m2);

	/* Before finalize no vCPU ran: a mapped page is removed unblocked. */
	OK(ccvm_tdh_mem_page_add(t.td, gpa + CCVM_PAGE_SIZE, CCVM_TDX_LEVEL_4K, pfn2, src));
	OK(ccvm_tdh_mem_page_remove(t.td, gpa + CCVM_PAGE_SIZE, CCVM_TDX_LEVEL_4K, &pfn2));
	ck_assert_uint_eq(pamt_type(pfn2), CCVM_TDX_PT_NDA);

	OK(ccvm_tdh_mr_finalize(t.td));
	ck_status(ccvm_tdh_mem_page_add(t.td, gpa + CCVM_PAGE_SIZE, CCVM_TDX_LEVEL_4K, pfn2, src),
		  TDX_OP_STATE_INCORRECT);
	ck_status(ccvm_tdh_mr_extend(t.td, gpa), TDX_OP_STATE_INCORRECT);
	td_destroy(&t);
}
END_TEST

START_TEST(test_sept_state_machine)
{
	struct ttd t;
	uint64_t pend = GPA0, mapped = GPA0 + CCVM_PAGE_SIZE, free_gpa = GPA0 + 2 * CCVM_PAGE_SIZE;
	uint64_t pfn, removed;
	uint8_t src[CCVM_PAGE_SIZE] = { 1 };

	td_build(&t, 0, 48, 0);
	map_path(&t, GPA0, 48);
	pfn = donate(&t);
	OK(ccvm_tdh_mem_page_add(t.td, mapped, CCVM_TDX_LEVEL_4K, pfn, src));
	OK(ccvm_tdh_mr_finalize(t.td));

	/* FREE --AUG--> PENDING; a second AUG finds it in use. */
	pfn = aug(&t, pend);
	ck_assert_uint_eq(sept_state(&t, pend, 0), CCVM_TDX_SEPT_PENDING);
	ck_status(ccvm_tdh_mem_page_aug(t.td, pend, 0, tu_page(P)),
		  TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	ck_status(ccvm_tdh_mem_page_aug(t.td, pend + 3 * CCVM_PAGE_SIZE, 0, pfn),
		  TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_R8);
	ck_status(ccvm_tdh_mem_page_aug(t.td, GPA0 + GPA_2M, 0, tu_page(P)),
		  TDX_EPT_WALK_FAILED | RCX);
	ck_status(ccvm_tdh_mem_page_aug(t.td, GPA0, CCVM_TDX_LEVEL_2M, tu_page(P)),
		  TDX_EPT_ENTRY_STATE_INCORRECT | RCX);	/* the 2M entry links a table */
	ck_status(ccvm_tdh_mem_page_aug(t.td, pend | (1ull << 47), 0, tu_page(P)),
		  TDX_OPERAND_INVALID | RCX);

	/* Illegal: BLOCK/REMOVE/UNBLOCK of FREE, REMOVE unblocked. */
	ck_status(ccvm_tdh_mem_range_block(t.td, free_gpa, 0), TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	ck_status(ccvm_tdh_mem_page_remove(t.td, free_gpa, 0, NULL),
		  TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	ck_status(ccvm_tdh_mem_range_unblock(t.td, free_gpa, 0),
		  TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	ck_status(ccvm_tdh_mem_page_remove(t.td, mapped, 0, NULL), TDX_GPA_RANGE_NOT_BLOCKED | RCX);
	ck_status(ccvm_tdh_mem_page_remove(t.td, pend, 0, NULL), TDX_GPA_RANGE_NOT_BLOCKED | RCX);
	ck_status(ccvm_tdh_mem_range_unblock(t.td, mapped, 0), TDX_GPA_RANGE_NOT_BLOCKED | RCX);
	ck_status(ccvm_tdh_mem_page_remove(t.td, GPA0, CCVM_TDX_LEVEL_2M, NULL),
		  TDX_EPT_ENTRY_STATE_INCORRECT | RCX);	/* the 2M entry links a table */

	/* MAPPED --BLOCK--> BLOCKED, PENDING --BLOCK--> PENDING_BLOCKED. */
	OK(ccvm_tdh_mem_range_block(t.td, mapped, 0));
	OK(ccvm_tdh_mem_range_block(t.td, pend, 0));
	ck_assert_uint_eq(sept_state(&t, mapped, 0), CCVM_TDX_SEPT_BLOCKED);
	ck_assert_uint_eq(sept_state(&t, pend, 0), CCVM_TDX_SEPT_PENDING_BLOCKED);
	ck_status(ccvm_tdh_mem_range_block(t.td, mapped, 0), TDX_GPA_RANGE_ALREADY_BLOCKED | RCX);
	ck_status(ccvm_tdh_mem_page_aug(t.td, mapped, 0, tu_page(P)),
		  TDX_EPT_ENTRY_STATE_INCORRECT | RCX);

	/* UNBLOCK and REMOVE want a completed TRACK. */
	ck_status(ccvm_tdh_mem_range_unblock(t.td, pend, 0), TDX_TLB_TRACKING_NOT_DONE | RCX);
	ck_status(ccvm_tdh_mem_page_remove(t.td, mapped, 0, NULL),
		  TDX_TLB_TRACKING_NOT_DONE | RCX);
	OK(ccvm_tdh_mem_track(t.td));
	OK(ccvm_tdh_mem_range_unblock(t.td, pend, 0));
	ck_assert_uint_eq(sept_state(&t, pend, 0), CCVM_TDX_SEPT_PENDING);
	OK(ccvm_tdh_mem_page_remove(t.td, mapped, 0, &removed));
	ck_assert_uint_eq(sept_state(&t, mapped, 0), CCVM_TDX_SEPT_FREE);
	ck_assert_uint_eq(pamt_type(removed), CCVM_TDX_PT_NDA);

	/* PENDING_BLOCKED --TRACK; REMOVE--> FREE. */
	removed = remove_page(&t, pend);
	ck_assert_uint_eq(removed, pfn);
	ck_assert_uint_eq(sept_state(&t, pend, 0), CCVM_TDX_SEPT_FREE);
	td_destroy(&t);
}
END_TEST

START_TEST(test_sept_nonleaf_block_and_remove)
{
	struct ccvm_tdx_sept_info si;
	struct ttd t;
	uint64_t gpa = GPA0, spt, removed;

	td_runnable(&t, 0, 0);
	aug(&t, gpa);
	OK(ccvm_tdh_mem_sept_rd(t.td, gpa, CCVM_TDX_LEVEL_2M, &si));
	spt = si.pfn;

	ck_status(ccvm_tdh_mem_sept_remove(t.td, gpa, CCVM_TDX_LEVEL_2M, NULL),
		  TDX_GPA_RANGE_NOT_BLOCKED | RCX);
	ck_status(ccvm_tdh_mem_sept_remove(t.td, gpa, CCVM_TDX_LEVEL_4K, NULL),
		  TDX_OPERAND_INVALID | RCX);
	OK(ccvm_tdh_mem_range_block(t.td, gpa, CCVM_TDX_LEVEL_2M));
	ck_assert_uint_eq(sept_state(&t, gpa, CCVM_TDX_LEVEL_2M), CCVM_TDX_SEPT_NL_BLOCKED);
	/* Nothing walks through a blocked table. */
	ck_status(ccvm_tdh_mem_page_aug(t.td, gpa + CCVM_PAGE_SIZE, 0, tu_page(P)),
		  TDX_EPT_WALK_FAILED | RCX);
	ck_status(ccvm_tdh_mem_sept_remove(t.td, gpa, CCVM_TDX_LEVEL_2M, NULL),
		  TDX_TLB_TRACKING_NOT_DONE | RCX);
	OK(ccvm_tdh_mem_track(t.td));
	ck_status(ccvm_tdh_mem_sept_remove(t.td, gpa, CCVM_TDX_LEVEL_2M, NULL),
		  TDX_EPT_PAGE_NOT_FREE | RCX);
	/* Unblock, empty the table, block it again. */
	OK(ccvm_tdh_mem_range_unblock(t.td, gpa, CCVM_TDX_LEVEL_2M));
	remove_page(&t, gpa);
	OK(ccvm_tdh_mem_range_block(t.td, gpa, CCVM_TDX_LEVEL_2M));
	OK(ccvm_tdh_mem_track(t.td));
	OK(ccvm_tdh_mem_sept_remove(t.td, gpa, CCVM_TDX_LEVEL_2M, &removed));
	ck_assert_uint_eq(removed, spt);
	ck_assert_uint_eq(pamt_type(spt), CCVM_TDX_PT_NDA);
	ck_assert_uint_eq(sept_state(&t, gpa, CCVM_TDX_LEVEL_2M), CCVM_TDX_SEPT_FREE);
	ck_status(ccvm_tdh_mem_sept_remove(t.td, gpa, CCVM_TDX_LEVEL_2M, NULL),
		  TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	td_destroy(&t);
}
END_TEST

START_TEST(test_five_level_sept)
{
	struct ttd t;
	uint64_t high = (1ull << 50) + GPA0;

	td_build(&t, 0, 52, 0);
	ck_assert_uint_eq(ccvm_tdx_td_shared_bit(t.td), 1ull << 51);
	map_path(&t, high, 52);
	ck_assert_uint_eq(sept_state(&t, high, CCVM_TDX_LEVEL_256T), CCVM_TDX_SEPT_NL_MAPPED);
	OK(ccvm_tdh_mr_finalize(t.td));
	aug(&t, high);
	ck_assert_uint_eq(sept_state(&t, high, 0), CCVM_TDX_SEPT_PENDING);
	ck_status(ccvm_tdh_mem_page_aug(t.td, high | (1ull << 51), 0, tu_page(P)),
		  TDX_OPERAND_INVALID | RCX);
	remove_page(&t, high);
	td_destroy(&t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* TLB tracking                                                        */

/*
 * The entry window (ccvm_tdx_set_entry_window(), on in the tdx backend): a
 * VP.ENTER holds the TD epoch lock shared until its vCPU runs guest code
 * or exits, so a TRACK in between is busy and changes nothing; entries
 * share the lock.  Off, the lock goes inside VP.ENTER.
 */
START_TEST(test_entry_window)
{
	struct ttd t;
	struct ccvm_tdx_vp *a, *b;

	td_runnable(&t, 0, 2);
	a = t.vp[0];
	b = t.vp[1];
	ck_assert_int_eq(ccvm_tdx_set_entry_window(NULL, true), -EINVAL);
	ck_assert_int_eq(ccvm_tdx_set_entry_window(M, true), 0);

	OK(ccvm_tdh_vp_enter(a, t.vp_cpu[0]));
	ck_assert(ccvm_tdx_vp_in_guest(a));
	ck_status(ccvm_tdh_mem_track(t.td), TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TD_EPOCH);
	ck_assert_uint_eq(ccvm_tdx_td_epoch(t.td), 1);
	/* A second entry shares the lock while A's window is open. */
	OK(ccvm_tdh_vp_enter(b, t.vp_cpu[1]));
	guest_runs(a);		/* A's window ends, B's is open */
	ck_assert(ccvm_tdx_vp_in_guest(a));
	ck_status(ccvm_tdh_mem_track(t.td), TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TD_EPOCH);
	ck_assert_uint_eq(ccvm_tdx_td_epoch(t.td), 1);
	ccvm_tdx_vp_exit(b);	/* a kick: the IPI lands as the entry completes */
	ck_assert(!ccvm_tdx_vp_in_guest(b));
	OK(ccvm_tdh_mem_track(t.td));
	ck_assert_uint_eq(ccvm_tdx_td_epoch(t.td), 2);
	/* An ACCEPT is guest code too. */
	ccvm_tdx_vp_exit(a);
	OK(ccvm_tdh_vp_enter(a, t.vp_cpu[0]));
	(void)ccvm_tdg_mem_page_accept(a, GPA0, CCVM_TDX_LEVEL_4K);
	OK(ccvm_tdh_mem_track(t.td));
	ck_assert_uint_eq(ccvm_tdx_td_epoch(t.td), 3);

	/* Off: the entry lets the lock go before it returns. */
	ck_assert_int_eq(ccvm_tdx_set_entry_window(M, false), 0);
	ccvm_tdx_vp_exit(a);
	OK(ccvm_tdh_vp_enter(a, t.vp_cpu[0]));
	OK(ccvm_tdh_mem_track(t.td));
	ck_assert_uint_eq(ccvm_tdx_td_epoch(t.td), 4);
	ccvm_tdx_vp_exit(a);
}
END_TEST

START_TEST(test_tlb_tracking)
{
	struct ttd t;
	struct ccvm_tdx_pamt_info pi;
	struct ccvm_tdx_vp *a, *b;
	uint64_t gpa = GPA0, pfn;

	td_runnable(&t, 0, 2);
	a = t.vp[0];
	b = t.vp[1];
	pfn = aug(&t, gpa);
	aug(&t, gpa + CCVM_PAGE_SIZE);

	OK(ccvm_tdh_vp_enter(a, t.vp_cpu[0]));		/* A in the guest, epoch 1 */
	guest_runs(a);
	OK(ccvm_tdh_mem_range_block(t.td, gpa, 0));	/* BEPOCH 1 */
	ck_assert_int_eq(ccvm_tdx_pamt_get(M, pfn, &pi), 0);
	ck_assert_uint_eq(pi.bepoch, 1);
	ck_status(ccvm_tdh_mem_page_remove(t.td, gpa, 0, NULL), TDX_TLB_TRACKING_NOT_DONE | RCX);
	OK(ccvm_tdh_mem_track(t.td));			/* epoch 2 */
	ck_assert_uint_eq(ccvm_tdx_td_epoch(t.td), 2);
	/* A was in the guest at the TRACK and has not exited. */
	ck_status(ccvm_tdh_mem_page_remove(t.td, gpa, 0, NULL), TDX_TLB_TRACKING_NOT_DONE | RCX);
	/* A cannot be lapped: the previous epoch is not done. */
	ck_status(ccvm_tdh_mem_track(t.td), TDX_PREVIOUS_TLB_EPOCH_BUSY);
	/* B enters after the TRACK: it does not hold the page up. */
	OK(ccvm_tdh_vp_enter(b, t.vp_cpu[1]));
	guest_runs(b);
	ck_status(ccvm_tdh_mem_page_remove(t.td, gpa, 0, NULL), TDX_TLB_TRACKING_NOT_DONE | RCX);
	ccvm_tdx_vp_exit(a);
	OK(ccvm_tdh_mem_page_remove(t.td, gpa, 0, NULL));
	ck_assert_uint_eq(pamt_type(pfn), CCVM_TDX_PT_NDA);

	/* A page blocked now, in epoch 2 with B inside: B must go. */
	OK(ccvm_tdh_mem_range_block(t.td, gpa + CCVM_PAGE_SIZE, 0));
	OK(ccvm_tdh_mem_track(t.td));			/* epoch 3, B from 2 */
	ck_status(ccvm_tdh_mem_page_remove(t.td, gpa + CCVM_PAGE_SIZE, 0, NULL),
		  TDX_TLB_TRACKING_NOT_DONE | RCX);
	ccvm_tdx_vp_exit(b);
	/* Re-entering puts A in the new epoch: no longer an obstacle. */
	OK(ccvm_tdh_vp_enter(a, t.vp_cpu[0]));
	guest_runs(a);
	OK(ccvm_tdh_mem_page_remove(t.td, gpa + CCVM_PAGE_SIZE, 0, NULL));
	OK(ccvm_tdh_mem_track(t.td));
	ccvm_tdx_vp_exit(a);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDH_MEM_TRACK), 4);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDH_MEM_PAGE_REMOVE), 6);
	td_destroy(&t);
}
END_TEST

START_TEST(test_track_two_epochs_later)
{
	struct ttd t;
	uint64_t gpa = GPA0;

	td_runnable(&t, 0, 1);
	aug(&t, gpa);
	OK(ccvm_tdh_mem_range_block(t.td, gpa, 0));
	OK(ccvm_tdh_mem_track(t.td));
	OK(ccvm_tdh_mem_track(t.td));		/* BEPOCH < TD_EPOCH - 1 */
	OK(ccvm_tdh_vp_enter(t.vp[0], t.vp_cpu[0]));
	OK(ccvm_tdh_mem_page_remove(t.td, gpa, 0, NULL));
	ccvm_tdx_vp_exit(t.vp[0]);
	td_destroy(&t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Guest side                                                          */

START_TEST(test_accept_and_access)
{
	struct ttd t;
	struct ccvm_tdx_vp *vp;
	uint64_t gpa = GPA0, pfn, *data;

	td_runnable(&t, 0, 1);
	vp = t.vp[0];
	pfn = donate(&t);
	/* Stale bytes in the page: the guest must see zeros after accept. */
	data = ccvm_page_ptr(P, pfn);
	ccvm_page_mark_dirty(P, pfn);
	memset(data, 0x77, CCVM_PAGE_SIZE);

	ck_status(ccvm_tdg_mem_page_accept(vp, gpa, 0), TDX_VCPU_STATE_INCORRECT);
	ck_status(ccvm_tdx_guest_access(vp, gpa, false), TDX_VCPU_STATE_INCORRECT);
	OK(ccvm_tdh_vp_enter(vp, t.vp_cpu[0]));
	ck_status(ccvm_tdx_guest_access(vp, gpa, true), CCVM_TDX_SW_EPT_VIOLATION);
	ck_status(ccvm_tdg_mem_page_accept(vp, gpa, 0), CCVM_TDX_SW_EPT_VIOLATION);
	ck_status(ccvm_tdg_mem_page_accept(vp, GPA0 + GPA_2M, 0), CCVM_TDX_SW_EPT_VIOLATION);
	ck_status(ccvm_tdg_mem_page_accept(vp, GPA0 + GPA_2M, CCVM_TDX_LEVEL_2M),
		  CCVM_TDX_SW_EPT_VIOLATION);
	ck_status(ccvm_tdg_mem_page_accept(vp, gpa + 8, 0), TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdg_mem_page_accept(vp, gpa | (1ull << 47), 0), TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdg_mem_page_accept(vp, gpa, CCVM_TDX_LEVEL_1G), TDX_OPERAND_INVALID | RCX);

	OK(ccvm_tdh_mem_page_aug(t.td, gpa, 0, pfn));
	ck_assert_uint_eq(data[5], 0x7777777777777777ull);	/* AUG does not touch it */
	ck_status(ccvm_tdx_guest_access(vp, gpa + 100, false), CCVM_TDX_SW_VE);
	ck_status(ccvm_tdg_mem_page_accept(vp, gpa, CCVM_TDX_LEVEL_2M),
		  TDX_PAGE_SIZE_MISMATCH | RCX);
	OK(ccvm_tdg_mem_page_accept(vp, gpa, 0));
	ck_assert_uint_eq(data[5], 0);
	ck_assert_uint_eq(sept_state(&t, gpa, 0), CCVM_TDX_SEPT_MAPPED);
	ck_status(ccvm_tdg_mem_page_accept(vp, gpa, 0), TDX_PAGE_ALREADY_ACCEPTED | RCX);
	OK(ccvm_tdx_guest_access(vp, gpa + 100, true));
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDG_MEM_PAGE_ACCEPT), 10);

	/* Blocked: the hardware walk faults to the host. */
	ccvm_tdx_vp_exit(vp);
	OK(ccvm_tdh_mem_range_block(t.td, gpa, 0));
	OK(ccvm_tdh_vp_enter(vp, t.vp_cpu[0]));
	ck_status(ccvm_tdx_guest_access(vp, gpa, false), CCVM_TDX_SW_EPT_VIOLATION);
	ck_status(ccvm_tdg_mem_page_accept(vp, gpa, 0), CCVM_TDX_SW_EPT_VIOLATION);
	ccvm_tdx_vp_exit(vp);
	td_destroy(&t);
}
END_TEST

START_TEST(test_accept_leaves_clean_pages_alone)
{
	struct ttd t;
	uint64_t pfn;

	td_runnable(&t, 0, 1);
	pfn = aug(&t, GPA0);
	ck_assert(!ccvm_page_is_dirty(P, pfn));
	OK(ccvm_tdh_vp_enter(t.vp[0], t.vp_cpu[0]));
	OK(ccvm_tdg_mem_page_accept(t.vp[0], GPA0, 0));
	ccvm_tdx_vp_exit(t.vp[0]);
	/* A page nobody wrote is zero already: it stays untouched. */
	ck_assert(!ccvm_page_is_dirty(P, pfn));
	ck_assert_uint_eq(tu_event(P, CCVM_EV_PAGE_CLEAR), 0);
	td_destroy(&t);
}
END_TEST

START_TEST(test_sept_ve_disable)
{
	struct ttd t;

	td_runnable(&t, CCVM_TDX_ATTR_SEPT_VE_DISABLE, 1);
	aug(&t, GPA0);
	OK(ccvm_tdh_vp_enter(t.vp[0], t.vp_cpu[0]));
	ck_status(ccvm_tdx_guest_access(t.vp[0], GPA0, false), CCVM_TDX_SW_EPT_VIOLATION_PENDING);
	OK(ccvm_tdg_mem_page_accept(t.vp[0], GPA0, 0));
	OK(ccvm_tdx_guest_access(t.vp[0], GPA0, false));
	ccvm_tdx_vp_exit(t.vp[0]);
	td_destroy(&t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Teardown: HKID release, reclaim, PAMT                               */

START_TEST(test_release_order)
{
	struct ttd t;
	uint64_t pfn;

	td_runnable(&t, 0, 1);
	pfn = aug(&t, GPA0);
	ck_status(ccvm_tdh_mng_key_freeid(t.td), TDX_LIFECYCLE_STATE_INCORRECT);
	ck_status(ccvm_tdh_phymem_cache_wb(M, NULL, 0, false), TDX_NO_HKID_READY_TO_WBCACHE);
	ck_status(ccvm_tdh_phymem_cache_wb(M, NULL, 0, true), TDX_WBCACHE_RESUME_ERROR);
	ck_status(ccvm_tdh_phymem_cache_wb(M, NULL, 2, false), TDX_OPERAND_INVALID);
	/* vCPU 0 is associated with CPU 0 since VP.INIT. */
	ck_status(ccvm_tdh_mng_vpflushdone(t.td), TDX_FLUSHVP_NOT_DONE);
	OK(ccvm_tdh_vp_flush(t.vp[0], t.vp_cpu[0]));
	OK(ccvm_tdh_mng_vpflushdone(t.td));
	ck_assert_int_eq(ccvm_tdx_td_lifecycle(t.td), CCVM_TDX_TD_BLOCKED);
	ck_status(ccvm_tdh_mng_vpflushdone(t.td), TDX_LIFECYCLE_STATE_INCORRECT);
	/* BLOCKED: no entry, no S-EPT work. */
	ck_status(ccvm_tdh_vp_enter(t.vp[0], 0), TDX_TD_KEYS_NOT_CONFIGURED);
	ck_status(ccvm_tdh_mem_range_block(t.td, GPA0, 0), TDX_TD_KEYS_NOT_CONFIGURED);
	ck_status(ccvm_tdh_mng_key_freeid(t.td), TDX_WBCACHE_NOT_COMPLETE);
	/* Reclaim is refused until TEARDOWN (I13). */
	ck_status(ccvm_tdh_phymem_page_reclaim(M, NULL, pfn, NULL), TDX_LIFECYCLE_STATE_INCORRECT);

	OK(ccvm_tdx_set_cache_wb_steps(M, 3));
	ck_status(ccvm_tdh_phymem_cache_wb(M, NULL, 0, false), TDX_INTERRUPTED_RESUMABLE);
	ck_status(ccvm_tdh_phymem_cache_wb(M, NULL, 1, true), TDX_INTERRUPTED_RESUMABLE);
	/* Starting over loses the progress. */
	ck_status(ccvm_tdh_phymem_cache_wb(M, NULL, 0, false), TDX_INTERRUPTED_RESUMABLE);
	ck_status(ccvm_tdh_phymem_cache_wb(M, NULL, 0, true), TDX_INTERRUPTED_RESUMABLE);
	ck_status(ccvm_tdh_mng_key_freeid(t.td), TDX_WBCACHE_NOT_COMPLETE);
	OK(ccvm_tdh_phymem_cache_wb(M, NULL, 0, true));
	ck_status(ccvm_tdh_phymem_cache_wb(M, NULL, 0, false), TDX_NO_HKID_READY_TO_WBCACHE);
	/* INTERRUPTED_RESUMABLE is part of the protocol, not an error. */
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDH_PHYMEM_CACHE_WB), 9);

	OK(ccvm_tdh_mng_key_freeid(t.td));
	/* TEARDOWN: the key is gone (I13). */
	ck_status(ccvm_tdh_mem_range_block(t.td, GPA0, 0), TDX_TD_KEYS_NOT_CONFIGURED);
	ck_status(ccvm_tdh_mem_page_remove(t.td, GPA0, 0, NULL), TDX_TD_KEYS_NOT_CONFIGURED);
	ck_status(ccvm_tdh_mem_page_aug(t.td, GPA0 + CCVM_PAGE_SIZE, 0, tu_page(P)),
		  TDX_TD_KEYS_NOT_CONFIGURED);
	ck_status(ccvm_tdh_mem_track(t.td), TDX_TD_KEYS_NOT_CONFIGURED);
	ck_status(ccvm_tdh_vp_flush(t.vp[0], 0), TDX_LIFECYCLE_STATE_INCORRECT);
	ck_status(ccvm_tdh_phymem_page_wbinvd(M, NULL, tu_page(P), t.hkid),
		  TDX_KEY_STATE_INCORRECT | RCX);
	t.hkid_released = true;
	t.nr_vp = 0;
	td_destroy(&t);
}
END_TEST

START_TEST(test_reclaim_rules)
{
	struct ttd t;
	struct ccvm_tdx_reclaim_info ri;
	uint64_t pfn, tdcs_pfn, nda = tu_page(P);

	td_runnable(&t, 0, 1);
	pfn = aug(&t, GPA0);
	ck_assert_uint_gt(ccvm_tdx_pamt_nr_assigned(M), 10);
	ck_status(ccvm_tdh_phymem_page_reclaim(M, NULL, t.tdr, NULL),
		  TDX_LIFECYCLE_STATE_INCORRECT);
	td_release_hkid(&t);
	ck_status(ccvm_tdh_phymem_page_reclaim(M, NULL, nda, NULL),
		  TDX_PAGE_METADATA_INCORRECT | RCX);
	ck_status(ccvm_tdh_phymem_page_reclaim(M, NULL, 0, NULL), TDX_OPERAND_INVALID | RCX);
	/* TDR last. */
	ck_status(ccvm_tdh_phymem_page_reclaim(M, NULL, t.tdr, NULL),
		  TDX_TD_ASSOCIATED_PAGES_EXIST);
	OK(ccvm_tdh_phymem_page_reclaim(M, NULL, pfn, &ri));
	ck_assert_uint_eq(ri.type, CCVM_TDX_PT_REG);
	ck_assert_uint_eq(ri.owner, t.tdr);
	ck_assert_int_eq(ri.level, CCVM_TDX_LEVEL_4K);
	ck_status(ccvm_tdh_phymem_page_reclaim(M, NULL, pfn, NULL),
		  TDX_PAGE_METADATA_INCORRECT | RCX);
	/* A freed page may now be written back with the global key. */
	OK(ccvm_tdh_phymem_page_wbinvd(M, NULL, pfn, CCVM_TDX_GLOBAL_KEYID));
	tdcs_pfn = t.donated[0];
	ck_assert_uint_eq(pamt_type(tdcs_pfn), CCVM_TDX_PT_TDCX);
	OK(ccvm_tdh_phymem_page_reclaim(M, NULL, tdcs_pfn, &ri));
	ck_assert_uint_eq(ri.type, CCVM_TDX_PT_TDCX);
	ck_status(ccvm_tdh_phymem_page_reclaim(M, NULL, t.tdr, NULL),
		  TDX_TD_ASSOCIATED_PAGES_EXIST);
	td_destroy(&t);
	ccvm_page_free(P, nda);
	/* Nothing is owned by a TD any more. */
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(M), 0);
}
END_TEST

START_TEST(test_full_teardown_leaves_no_owned_page)
{
	struct ttd a, b;
	uint64_t pfn, i, n = ccvm_platform_nr_pages(P), owned = 0;

	td_runnable(&a, 0, 2);
	td_runnable(&b, CCVM_TDX_ATTR_SEPT_VE_DISABLE, 1);
	ck_assert_uint_ne(a.hkid, b.hkid);
	for (i = 0; i < 16; i++) {
		aug(&a, GPA0 + i * CCVM_PAGE_SIZE);
		aug(&b, GPA0 + i * CCVM_PAGE_SIZE);
	}
	/* A's pages go dynamically, B's at teardown. */
	for (i = 0; i < 8; i++) {
		pfn = remove_page(&a, GPA0 + i * CCVM_PAGE_SIZE);
		ck_assert_uint_eq(pamt_type(pfn), CCVM_TDX_PT_NDA);
	}
	/* B's pages are not A's to touch. */
	ck_status(ccvm_tdh_mem_range_block(a.td, GPA0 + 2 * GPA_2M, 0), TDX_EPT_WALK_FAILED | RCX);
	td_destroy(&a);
	td_destroy(&b);
	for (pfn = 1; pfn < n; pfn++) {
		struct ccvm_tdx_pamt_info pi;

		ck_assert_int_eq(ccvm_tdx_pamt_get(M, pfn, &pi), 0);
		owned += pi.type != CCVM_TDX_PT_NDA;
	}
	ck_assert_uint_eq(owned, 0);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(M), 0);
	ck_assert_int_eq(ccvm_tdx_pamt_get(M, 0, &(struct ccvm_tdx_pamt_info){ 0 }), -EINVAL);
	ck_assert_int_eq(ccvm_tdx_pamt_get(M, n, &(struct ccvm_tdx_pamt_info){ 0 }), -EINVAL);
}
END_TEST

START_TEST(test_wbinvd)
{
	struct ttd t;
	uint64_t pfn;

	td_runnable(&t, 0, 0);
	pfn = aug(&t, GPA0);
	ck_status(ccvm_tdh_phymem_page_wbinvd(M, NULL, pfn, t.hkid),
		  TDX_PAGE_METADATA_INCORRECT | RCX);
	ck_status(ccvm_tdh_phymem_page_wbinvd(M, NULL, pfn, 0), TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdh_phymem_page_wbinvd(M, NULL, pfn, CCVM_TDX_FIRST_HKID + 32),
		  TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdh_phymem_page_wbinvd(M, NULL, 0, t.hkid), TDX_OPERAND_INVALID | RCX);
	/* An HKID nobody holds in the KOT. */
	ck_status(ccvm_tdh_phymem_page_wbinvd(M, NULL, tu_page(P), t.hkid + 1),
		  TDX_KEY_STATE_INCORRECT | RCX);
	remove_page(&t, GPA0);		/* WBINVD with the HKID inside */
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDH_PHYMEM_PAGE_WBINVD), 6);
	td_destroy(&t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Host access: ciphertext and poison                                  */

static void check_ciphertext(uint64_t pfn)
{
	uint8_t plain[CCVM_PAGE_SIZE], cipher[CCVM_PAGE_SIZE];
	unsigned int i;

	ck_assert_int_eq(ccvm_tdx_host_access(M, pfn, false), CCVM_HOST_ACCESS_CIPHERTEXT);
	memcpy(plain, ccvm_page_ptr(P, pfn), sizeof(plain));
	memcpy(cipher, plain, sizeof(cipher));
	ccvm_tdx_host_ciphertext(M, pfn, cipher);
	for (i = 0; i < CCVM_PAGE_SIZE; i++)
		ck_assert_msg(cipher[i] != plain[i], "pfn %llu byte %u is plaintext",
			      (unsigned long long)pfn, i);
}

START_TEST(test_ciphertext)
{
	struct ttd a, b;
	uint8_t src[CCVM_PAGE_SIZE], ca[CCVM_PAGE_SIZE], cb[CCVM_PAGE_SIZE];
	uint64_t pa, pb, nda = tu_page(P);
	struct ccvm_tdx_sept_info si;
	unsigned int i;

	for (i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 7);
	td_build(&a, 0, 48, 1);
	td_build(&b, 0, 48, 0);
	map_path(&a, GPA0, 48);
	map_path(&b, GPA0, 48);
	pa = donate(&a);
	pb = donate(&b);
	OK(ccvm_tdh_mem_page_add(a.td, GPA0, 0, pa, src));
	OK(ccvm_tdh_mem_page_add(b.td, GPA0, 0, pb, src));

	/* Every TD-owned page type, including zero pages and control pages. */
	check_ciphertext(pa);
	check_ciphertext(a.tdr);
	check_ciphertext(a.donated[0]);				/* TDCS */
	check_ciphertext(ccvm_tdx_vp_tdvpr_pfn(a.vp[0]));	/* TDVPR */
	OK(ccvm_tdh_mem_sept_rd(a.td, GPA0, CCVM_TDX_LEVEL_2M, &si));
	check_ciphertext(si.pfn);				/* S-EPT page */

	/* The same plaintext under two keys reads differently. */
	memcpy(ca, src, sizeof(ca));
	memcpy(cb, src, sizeof(cb));
	ccvm_tdx_host_ciphertext(M, pa, ca);
	ccvm_tdx_host_ciphertext(M, pb, cb);
	ck_assert_int_ne(memcmp(ca, cb, sizeof(ca)), 0);
	/* The key stream is stable. */
	memcpy(cb, src, sizeof(cb));
	ccvm_tdx_host_ciphertext(M, pa, cb);
	ck_assert_int_eq(memcmp(ca, cb, sizeof(ca)), 0);

	/* A host page reads as itself. */
	ck_assert_int_eq(ccvm_tdx_host_access(M, nda, false), 0);
	ck_assert_int_eq(ccvm_tdx_host_access(M, nda, true), 0);
	memcpy(ca, src, sizeof(ca));
	ccvm_tdx_host_ciphertext(M, nda, ca);
	ck_assert_int_eq(memcmp(ca, src, sizeof(ca)), 0);
	ck_assert_int_eq(ccvm_tdx_host_access(M, 0, false), -EINVAL);
	ck_assert_uint_eq(ccvm_tdx_nr_poisoned(M), 0);
	td_destroy(&a);
	td_destroy(&b);
	ccvm_page_free(P, nda);
}
END_TEST

START_TEST(test_poison)
{
	struct ttd t;
	struct ccvm_tdx_pamt_info pi;
	uint8_t src[CCVM_PAGE_SIZE] = { 9 };
	uint64_t mapped = GPA0, pend = GPA0 + CCVM_PAGE_SIZE, pm, pp;

	td_build(&t, 0, 48, 1);
	map_path(&t, GPA0, 48);
	pm = donate(&t);
	OK(ccvm_tdh_mem_page_add(t.td, mapped, 0, pm, src));
	OK(ccvm_tdh_mr_finalize(t.td));
	pp = aug(&t, pend);

	/* A host write through another KeyID breaks the integrity. */
	ck_assert_int_eq(ccvm_tdx_host_access(M, pm, true), CCVM_HOST_ACCESS_CIPHERTEXT);
	ck_assert_int_eq(ccvm_tdx_host_access(M, pp, true), CCVM_HOST_ACCESS_CIPHERTEXT);
	ck_assert_uint_eq(ccvm_tdx_nr_poisoned(M), 2);
	ck_assert_int_eq(ccvm_tdx_pamt_get(M, pm, &pi), 0);
	ck_assert(pi.poisoned);

	OK(ccvm_tdh_vp_enter(t.vp[0], t.vp_cpu[0]));
	ck_status(ccvm_tdx_guest_access(t.vp[0], mapped, false), CCVM_TDX_SW_MCE);
	/* ACCEPT rewrites the page with the TD's key: clean again. */
	OK(ccvm_tdg_mem_page_accept(t.vp[0], pend, 0));
	OK(ccvm_tdx_guest_access(t.vp[0], pend, true));
	ccvm_tdx_vp_exit(t.vp[0]);

	/* Removal forgets the poison along with the owner. */
	remove_page(&t, mapped);
	ck_assert_int_eq(ccvm_tdx_pamt_get(M, pm, &pi), 0);
	ck_assert(!pi.poisoned);
	td_destroy(&t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Accounting and injection                                            */

START_TEST(test_accounting)
{
	struct ttd t;
	uint64_t busy0, err0, aug0;

	td_runnable(&t, 0, 1);
	aug0 = tu_event(P, CCVM_EV_TDH_MEM_PAGE_AUG);
	err0 = tu_event(P, CCVM_EV_TDX_ERROR);
	busy0 = tu_event(P, CCVM_EV_TDX_BUSY);
	aug(&t, GPA0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDH_MEM_PAGE_AUG), aug0 + 1);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDX_ERROR), err0);
	ck_status(ccvm_tdh_mem_page_aug(t.td, GPA0, 0, tu_page(P)),
		  TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDH_MEM_PAGE_AUG), aug0 + 2);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDX_ERROR), err0 + 1);
	OK(ccvm_tdh_vp_enter(t.vp[0], t.vp_cpu[0]));
	ck_status(ccvm_tdh_vp_enter(t.vp[0], t.vp_cpu[0]),
		  TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TDVPR);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDX_BUSY), busy0 + 1);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDX_ERROR), err0 + 1);
	/* Guest faults are exits, not SEAMCALL errors. */
	ck_status(ccvm_tdg_mem_page_accept(t.vp[0], GPA0 + CCVM_PAGE_SIZE, 0),
		  CCVM_TDX_SW_EPT_VIOLATION);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDX_ERROR), err0 + 1);
	ccvm_tdx_vp_exit(t.vp[0]);
	td_destroy(&t);
}
END_TEST

START_TEST(test_inject_rules)
{
	struct ttd t;
	uint64_t b = TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_SEPT;

	td_runnable(&t, 0, 0);
	ck_assert_int_eq(ccvm_tdx_inject(M, 5, 1, b, 1), -EINVAL);
	ck_assert_int_eq(ccvm_tdx_inject(M, 64, 1, b, 1), -EINVAL);
	ck_assert_int_eq(ccvm_tdx_inject(NULL, CCVM_TDH_MEM_TRACK, 1, b, 1), -EINVAL);
	ck_assert_int_eq(ccvm_tdx_inject(M, CCVM_TDH_MEM_TRACK, 0, 0, 0), -ENOENT);

	/* The 2nd and 3rd calls from now. */
	ck_assert_int_eq(ccvm_tdx_inject(M, CCVM_TDH_MEM_TRACK, 2, b, 2), 0);
	OK(ccvm_tdh_mem_track(t.td));
	ck_status(ccvm_tdh_mem_track(t.td), b);
	ck_status(ccvm_tdh_mem_track(t.td), b);
	OK(ccvm_tdh_mem_track(t.td));
	ck_assert_uint_eq(ccvm_tdx_td_epoch(t.td), 3);	/* injected calls did nothing */
	ck_assert_int_eq(ccvm_tdx_inject(M, CCVM_TDH_MEM_TRACK, 0, 0, 0), -ENOENT);

	/* Every call, until removed. */
	ck_assert_int_eq(ccvm_tdx_inject(M, CCVM_TDH_MEM_TRACK, 0, TDX_RND_NO_ENTROPY, 0), 0);
	ck_status(ccvm_tdh_mem_track(t.td), TDX_RND_NO_ENTROPY);
	ck_status(ccvm_tdh_mem_track(t.td), TDX_RND_NO_ENTROPY);
	ck_assert_int_eq(ccvm_tdx_inject(M, CCVM_TDH_MEM_TRACK, 0, 0, 0), 0);
	OK(ccvm_tdh_mem_track(t.td));
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDH_MEM_TRACK), 7);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDX_BUSY), 2);
	td_destroy(&t);
}
END_TEST

/*
 * Injected busy at every leaf: the call returns the status, changes
 * nothing, and counts its leaf event and a busy.
 */
struct leaf_case {
	unsigned int leaf;
	enum ccvm_event ev;	/* CCVM_EV_NR: the leaf has no event */
};

static const struct leaf_case leaf_cases[] = {
	{ CCVM_TDH_MNG_CREATE, CCVM_EV_TDH_MNG_CREATE },
	{ CCVM_TDH_MNG_KEY_CONFIG, CCVM_EV_TDH_MNG_KEY_CONFIG },
	{ CCVM_TDH_MNG_ADDCX, CCVM_EV_TDH_MNG_ADDCX },
	{ CCVM_TDH_MNG_INIT, CCVM_EV_TDH_MNG_INIT },
	{ CCVM_TDH_VP_CREATE, CCVM_EV_TDH_VP_CREATE },
	{ CCVM_TDH_VP_ADDCX, CCVM_EV_TDH_VP_ADDCX },
	{ CCVM_TDH_VP_INIT, CCVM_EV_TDH_VP_INIT },
	{ CCVM_TDH_VP_ENTER, CCVM_EV_TDH_VP_ENTER },
	{ CCVM_TDH_VP_FLUSH, CCVM_EV_TDH_VP_FLUSH },
	{ CCVM_TDH_MNG_VPFLUSHDONE, CCVM_EV_TDH_MNG_VPFLUSHDONE },
	{ CCVM_TDH_PHYMEM_CACHE_WB, CCVM_EV_TDH_PHYMEM_CACHE_WB },
	{ CCVM_TDH_MNG_KEY_FREEID, CCVM_EV_TDH_MNG_KEY_FREEID },
	{ CCVM_TDH_MEM_SEPT_ADD, CCVM_EV_TDH_MEM_SEPT_ADD },
	{ CCVM_TDH_MEM_PAGE_ADD, CCVM_EV_TDH_MEM_PAGE_ADD },
	{ CCVM_TDH_MR_EXTEND, CCVM_EV_TDH_MR_EXTEND },
	{ CCVM_TDH_MR_FINALIZE, CCVM_EV_TDH_MR_FINALIZE },
	{ CCVM_TDH_MEM_PAGE_AUG, CCVM_EV_TDH_MEM_PAGE_AUG },
	{ CCVM_TDH_MEM_RANGE_BLOCK, CCVM_EV_TDH_MEM_RANGE_BLOCK },
	{ CCVM_TDH_MEM_TRACK, CCVM_EV_TDH_MEM_TRACK },
	{ CCVM_TDH_MEM_PAGE_REMOVE, CCVM_EV_TDH_MEM_PAGE_REMOVE },
	{ CCVM_TDH_PHYMEM_PAGE_WBINVD, CCVM_EV_TDH_PHYMEM_PAGE_WBINVD },
	{ CCVM_TDH_PHYMEM_PAGE_RECLAIM, CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM },
	{ CCVM_TDH_MEM_SEPT_RD, CCVM_EV_TDH_MEM_SEPT_RD },
	{ CCVM_TDH_MEM_SEPT_REMOVE, CCVM_EV_TDH_MEM_SEPT_REMOVE },
	{ CCVM_TDH_MEM_RANGE_UNBLOCK, CCVM_EV_TDH_MEM_RANGE_UNBLOCK },
	{ CCVM_TDX_LEAF_TDG_MEM_PAGE_ACCEPT, CCVM_EV_TDG_MEM_PAGE_ACCEPT },
};

/* Call @leaf once with arguments that would succeed on @t's state. */
static uint64_t call_leaf(unsigned int leaf, struct ttd *t, uint64_t spare_pfn)
{
	struct ccvm_tdx_td_params params = { .gpaw = 48, .max_vcpus = 8 };
	struct ccvm_tdx_sept_info si;
	struct ccvm_tdx_td *td2;
	struct ccvm_tdx_vp *vp2;
	uint8_t src[CCVM_PAGE_SIZE] = { 0 };
	uint64_t gpa = GPA0 + 40 * CCVM_PAGE_SIZE;

	switch (leaf) {
	case CCVM_TDH_MNG_CREATE:
		return ccvm_tdh_mng_create(M, NULL, spare_pfn, t->hkid + 1, &td2);
	case CCVM_TDH_MNG_KEY_CONFIG:
		return ccvm_tdh_mng_key_config(t->td, 0);
	case CCVM_TDH_MNG_ADDCX:
		return ccvm_tdh_mng_addcx(t->td, spare_pfn);
	case CCVM_TDH_MNG_INIT:
		return ccvm_tdh_mng_init(t->td, &params);
	case CCVM_TDH_VP_CREATE:
		return ccvm_tdh_vp_create(t->td, spare_pfn, &vp2);
	case CCVM_TDH_VP_ADDCX:
		return ccvm_tdh_vp_addcx(t->vp[0], spare_pfn);
	case CCVM_TDH_VP_INIT:
		return ccvm_tdh_vp_init(t->vp[0], 0);
	case CCVM_TDH_VP_ENTER:
		return ccvm_tdh_vp_enter(t->vp[0], 0);
	case CCVM_TDH_VP_FLUSH:
		return ccvm_tdh_vp_flush(t->vp[0], 0);
	case CCVM_TDH_MNG_VPFLUSHDONE:
		return ccvm_tdh_mng_vpflushdone(t->td);
	case CCVM_TDH_PHYMEM_CACHE_WB:
		return ccvm_tdh_phymem_cache_wb(M, NULL, 0, false);
	case CCVM_TDH_MNG_KEY_FREEID:
		return ccvm_tdh_mng_key_freeid(t->td);
	case CCVM_TDH_MEM_SEPT_ADD:
		return ccvm_tdh_mem_sept_add(t->td, GPA0 + GPA_2M, CCVM_TDX_LEVEL_2M, spare_pfn);
	case CCVM_TDH_MEM_PAGE_ADD:
		return ccvm_tdh_mem_page_add(t->td, gpa, 0, spare_pfn, src);
	case CCVM_TDH_MR_EXTEND:
		return ccvm_tdh_mr_extend(t->td, GPA0);
	case CCVM_TDH_MR_FINALIZE:
		return ccvm_tdh_mr_finalize(t->td);
	case CCVM_TDH_MEM_PAGE_AUG:
		return ccvm_tdh_mem_page_aug(t->td, gpa, 0, spare_pfn);
	case CCVM_TDH_MEM_RANGE_BLOCK:
		return ccvm_tdh_mem_range_block(t->td, GPA0, 0);
	case CCVM_TDH_MEM_TRACK:
		return ccvm_tdh_mem_track(t->td);
	case CCVM_TDH_MEM_PAGE_REMOVE:
		return ccvm_tdh_mem_page_remove(t->td, GPA0, 0, NULL);
	case CCVM_TDH_PHYMEM_PAGE_WBINVD:
		return ccvm_tdh_phymem_page_wbinvd(M, NULL, spare_pfn, CCVM_TDX_GLOBAL_KEYID);
	case CCVM_TDH_PHYMEM_PAGE_RECLAIM:
		return ccvm_tdh_phymem_page_reclaim(M, NULL, t->tdr, NULL);
	case CCVM_TDH_MEM_SEPT_RD:
		return ccvm_tdh_mem_sept_rd(t->td, GPA0, 0, &si);
	case CCVM_TDH_MEM_SEPT_REMOVE:
		return ccvm_tdh_mem_sept_remove(t->td, GPA0, CCVM_TDX_LEVEL_2M, NULL);
	case CCVM_TDH_MEM_RANGE_UNBLOCK:
		return ccvm_tdh_mem_range_unblock(t->td, GPA0, 0);
	case CCVM_TDX_LEAF_TDG_MEM_PAGE_ACCEPT:
		return ccvm_tdg_mem_page_accept(t->vp[0], GPA0, 0);
	}
	ck_abort_msg("no caller for leaf %u", leaf);
	return 0;
}

START_TEST(test_inject_busy_every_leaf)
{
	const struct leaf_case *c = &leaf_cases[_i];
	uint64_t b = TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_SEPT;
	uint64_t spare = tu_page(P), ev0, busy0, assigned, epoch;
	struct ccvm_tdx_sept_info si;
	struct ttd t;

	td_runnable(&t, 0, 1);
	aug(&t, GPA0);
	assigned = ccvm_tdx_pamt_nr_assigned(M);
	epoch = ccvm_tdx_td_epoch(t.td);
	ev0 = c->ev < CCVM_EV_NR ? tu_event(P, c->ev) : 0;
	busy0 = tu_event(P, CCVM_EV_TDX_BUSY);

	ck_assert_int_eq(ccvm_tdx_inject(M, c->leaf, 1, b, 1), 0);
	ck_status(call_leaf(c->leaf, &t, spare), b);
	if (c->ev < CCVM_EV_NR)
		ck_assert_uint_eq(tu_event(P, c->ev), ev0 + 1);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDX_BUSY), busy0 + 1);

	/* Nothing changed. */
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(M), assigned);
	ck_assert_uint_eq(ccvm_tdx_td_epoch(t.td), epoch);
	ck_assert_uint_eq(pamt_type(spare), CCVM_TDX_PT_NDA);
	ck_assert_int_eq(ccvm_tdx_td_lifecycle(t.td), CCVM_TDX_TD_KEYS_CONFIGURED);
	ck_assert_int_eq(ccvm_tdx_td_op_state(t.td), CCVM_TDX_OP_RUNNABLE);
	ck_assert(!ccvm_tdx_vp_in_guest(t.vp[0]));
	ck_assert_int_eq(ccvm_tdx_vp_cpu(t.vp[0]), 0);
	OK(ccvm_tdh_mem_sept_rd(t.td, GPA0, 0, &si));
	ck_assert_uint_eq(si.state, CCVM_TDX_SEPT_PENDING);
	/* count 1: the rule is spent and gone. */
	ck_assert_int_eq(ccvm_tdx_inject(M, c->leaf, 0, 0, 0), -ENOENT);
	ccvm_page_free(P, spare);
	td_destroy(&t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Real contention between threads                                     */

struct hammer {
	struct ttd *t;
	uint64_t gpa;
	struct ccvm_tdx_vp *vp;
	uint64_t want;			/* the busy status this side must see */
	_Atomic bool *seen_self;
	_Atomic bool *seen_other;
	_Atomic bool *stop;
	uint64_t unexpected;		/* first status outside the allowed set */
};

static bool hammer_done(struct hammer *h, unsigned long iter)
{
	return atomic_load(h->stop) || iter >= HAMMER_MAX ||
	       (atomic_load(h->seen_self) && atomic_load(h->seen_other));
}

static void hammer_note(struct hammer *h, uint64_t st, uint64_t ok1, uint64_t ok2)
{
	if (st == h->want)
		atomic_store(h->seen_self, true);
	else if (st != ok1 && st != ok2 && !ccvm_tdx_is_busy(st) && !h->unexpected)
		h->unexpected = st ? st : 1;
}

/* Host side: BLOCK, TRACK, UNBLOCK over and over (S-EPT lock exclusive). */
static void *block_thread(void *arg)
{
	struct hammer *h = arg;
	unsigned long i;

	for (i = 0; !hammer_done(h, i); i++) {
		uint64_t st = ccvm_tdh_mem_range_block(h->t->td, h->gpa, 0);

		hammer_note(h, st, TDX_SUCCESS, TDX_GPA_RANGE_ALREADY_BLOCKED | RCX);
		if (st)
			continue;
		while (ccvm_tdh_mem_track(h->t->td))
			;
		while ((st = ccvm_tdh_mem_range_unblock(h->t->td, h->gpa, 0)))
			hammer_note(h, st, TDX_SUCCESS, TDX_SUCCESS);
	}
	return NULL;
}

/* Installer side: AUG on an entry already in use (S-EPT lock shared). */
static void *aug_thread(void *arg)
{
	struct hammer *h = arg;
	uint64_t pfn = tu_page(P);
	unsigned long i;

	for (i = 0; !hammer_done(h, i); i++)
		hammer_note(h, ccvm_tdh_mem_page_aug(h->t->td, h->gpa, 0, pfn),
			    TDX_EPT_ENTRY_STATE_INCORRECT | RCX, TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	ccvm_page_free(P, pfn);
	return NULL;
}

static void run_pair(void *(*fa)(void *), struct hammer *a, void *(*fb)(void *),
		     struct hammer *b)
{
	pthread_t ta, tb;

	ck_assert_int_eq(pthread_create(&ta, NULL, fa, a), 0);
	ck_assert_int_eq(pthread_create(&tb, NULL, fb, b), 0);
	ck_assert_int_eq(pthread_join(ta, NULL), 0);
	ck_assert_int_eq(pthread_join(tb, NULL), 0);
	ck_assert_msg(!a->unexpected, "side a: %#llx (%s)", (unsigned long long)a->unexpected,
		      ccvm_tdx_status_name(a->unexpected));
	ck_assert_msg(!b->unexpected, "side b: %#llx (%s)", (unsigned long long)b->unexpected,
		      ccvm_tdx_status_name(b->unexpected));
	ck_assert_msg(atomic_load(a->seen_self), "side a never saw %s",
		      ccvm_tdx_status_name(a->want));
	ck_assert_msg(atomic_load(b->seen_self), "side b never saw %s",
		      ccvm_tdx_status_name(b->want));
}

START_TEST(test_real_busy_sept_lock)
{
	_Atomic bool seen_a = false, seen_b = false, stop = false;
	uint64_t sept_busy = TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_SEPT;
	struct hammer a, b;
	struct ttd t;

	td_runnable(&t, 0, 0);
	aug(&t, GPA0);
	aug(&t, GPA0 + CCVM_PAGE_SIZE);
	a = (struct hammer){ .t = &t, .gpa = GPA0, .want = sept_busy,
			     .seen_self = &seen_a, .seen_other = &seen_b, .stop = &stop };
	b = (struct hammer){ .t = &t, .gpa = GPA0 + CCVM_PAGE_SIZE, .want = sept_busy,
			     .seen_self = &seen_b, .seen_other = &seen_a, .stop = &stop };
	run_pair(block_thread, &a, aug_thread, &b);
	ck_assert_uint_ge(tu_event(P, CCVM_EV_TDX_BUSY), 2);
	ck_assert_uint_eq(sept_state(&t, GPA0, 0), CCVM_TDX_SEPT_PENDING);
	td_destroy(&t);
}
END_TEST

/* Guest: ACCEPT of an accepted page (entry lock, S-EPT lock shared). */
static void *accept_thread(void *arg)
{
	struct hammer *h = arg;
	unsigned long i;

	for (i = 0; !hammer_done(h, i); i++)
		hammer_note(h, ccvm_tdg_mem_page_accept(h->vp, h->gpa, 0),
			    TDX_PAGE_ALREADY_ACCEPTED | RCX, TDX_PAGE_ALREADY_ACCEPTED | RCX);
	return NULL;
}

START_TEST(test_real_busy_entry_lock)
{
	_Atomic bool seen_a = false, seen_b = false, stop = false;
	uint64_t entry_busy = TDX_OPERAND_BUSY | RCX;
	struct hammer a, b;
	struct ttd t;

	td_runnable(&t, 0, 1);
	aug(&t, GPA0);
	OK(ccvm_tdh_vp_enter(t.vp[0], t.vp_cpu[0]));
	OK(ccvm_tdg_mem_page_accept(t.vp[0], GPA0, 0));
	a = (struct hammer){ .t = &t, .gpa = GPA0, .vp = t.vp[0], .want = entry_busy,
			     .seen_self = &seen_a, .seen_other = &seen_b, .stop = &stop };
	b = (struct hammer){ .t = &t, .gpa = GPA0, .want = entry_busy,
			     .seen_self = &seen_b, .seen_other = &seen_a, .stop = &stop };
	run_pair(accept_thread, &a, aug_thread, &b);
	ccvm_tdx_vp_exit(t.vp[0]);
	ck_assert_uint_eq(sept_state(&t, GPA0, 0), CCVM_TDX_SEPT_MAPPED);
	td_destroy(&t);
}
END_TEST

/* VP.ENTER and exit over and over (TD epoch lock shared). */
static void *enter_thread(void *arg)
{
	struct hammer *h = arg;
	unsigned long i;

	for (i = 0; !hammer_done(h, i); i++) {
		uint64_t st = ccvm_tdh_vp_enter(h->vp, 0);

		hammer_note(h, st, TDX_SUCCESS, TDX_SUCCESS);
		if (!st)
			ccvm_tdx_vp_exit(h->vp);
	}
	return NULL;
}

/* TRACK over and over (TD epoch lock exclusive). */
static void *track_thread(void *arg)
{
	struct hammer *h = arg;
	unsigned long i;

	for (i = 0; !hammer_done(h, i); i++)
		hammer_note(h, ccvm_tdh_mem_track(h->t->td), TDX_SUCCESS,
			    TDX_PREVIOUS_TLB_EPOCH_BUSY);
	return NULL;
}

START_TEST(test_real_busy_epoch_lock)
{
	_Atomic bool seen_a = false, seen_b = false, stop = false;
	uint64_t epoch_busy = TDX_OPERAND_BUSY | CCVM_TDX_OPERAND_TD_EPOCH;
	struct hammer a, b;
	struct ttd t;

	td_runnable(&t, 0, 1);
	a = (struct hammer){ .t = &t, .vp = t.vp[0], .want = epoch_busy,
			     .seen_self = &seen_a, .seen_other = &seen_b, .stop = &stop };
	b = (struct hammer){ .t = &t, .want = epoch_busy,
			     .seen_self = &seen_b, .seen_other = &seen_a, .stop = &stop };
	run_pair(enter_thread, &a, track_thread, &b);
	ck_assert(!ccvm_tdx_vp_in_guest(t.vp[0]));
	td_destroy(&t);
}
END_TEST

/* vCPU threads AUG and accept their own pages concurrently (TSan). */
struct vcpu_arg {
	struct ttd *t;
	struct ccvm_tdx_vp *vp;
	unsigned int cpu;
	uint64_t first_gpa;
	uint64_t pfns[64];
	uint64_t failures;
};

static void *vcpu_fault_thread(void *arg)
{
	struct vcpu_arg *v = arg;
	unsigned int i;

	for (i = 0; i < 64; i++) {
		uint64_t gpa = v->first_gpa + i * CCVM_PAGE_SIZE, st;

		/* The KVM fault path: AUG (retry on busy), then the guest accepts. */
		do {
			st = ccvm_tdh_mem_page_aug(v->t->td, gpa, 0, v->pfns[i]);
		} while (ccvm_tdx_is_busy(st));
		v->failures += st != TDX_SUCCESS;
		do {
			st = ccvm_tdh_vp_enter(v->vp, v->cpu);
		} while (ccvm_tdx_is_busy(st));
		v->failures += st != TDX_SUCCESS;
		do {
			st = ccvm_tdg_mem_page_accept(v->vp, gpa, 0);
		} while (ccvm_tdx_is_busy(st));
		v->failures += st != TDX_SUCCESS;
		v->failures += ccvm_tdx_guest_access(v->vp, gpa, true) != TDX_SUCCESS;
		ccvm_tdx_vp_exit(v->vp);
	}
	return NULL;
}

START_TEST(test_concurrent_vcpus)
{
	struct vcpu_arg va[2];
	pthread_t th[2];
	struct ttd t;
	unsigned int i, j;

	td_runnable(&t, 0, 2);
	for (i = 0; i < 2; i++) {
		memset(&va[i], 0, sizeof(va[i]));
		va[i].t = &t;
		va[i].vp = t.vp[i];
		va[i].cpu = t.vp_cpu[i];
		/* Interleaved GPAs: siblings in the same S-EPT table. */
		va[i].first_gpa = GPA0 + i * 64 * CCVM_PAGE_SIZE;
		for (j = 0; j < 64; j++)
			va[i].pfns[j] = donate(&t);
	}
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, vcpu_fault_thread, &va[i]), 0);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	for (i = 0; i < 2; i++) {
		ck_assert_uint_eq(va[i].failures, 0);
		for (j = 0; j < 64; j++)
			ck_assert_uint_eq(sept_state(&t, va[i].first_gpa + j * CCVM_PAGE_SIZE, 0),
					  CCVM_TDX_SEPT_MAPPED);
	}
	ck_assert_uint_ge(tu_event(P, CCVM_EV_TDG_MEM_PAGE_ACCEPT), 128);
	td_destroy(&t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 2M pages: AUG, ACCEPT, DEMOTE, REMOVE, RECLAIM; PAMT levels, DPAMT  */

#define HGPA		(GPA0 + GPA_2M)		/* its 2M entry is FREE */
#define NR_2M		512u

/* 512 contiguous platform pages, 2M aligned, from the allocator. */
static uint64_t huge_page(void)
{
	static uint64_t got[4 * NR_2M];
	uint64_t run = 0, start = 0, pfn;
	unsigned int n = 0, i;

	for (;;) {
		ck_assert_uint_lt(n, 4 * NR_2M);
		pfn = tu_page(P);
		got[n++] = pfn;
		if (run && pfn == start + run)
			run++;
		else if (pfn % NR_2M == 0)
			start = pfn, run = 1;
		else
			run = 0;
		if (run == NR_2M)
			break;
	}
	for (i = 0; i < n; i++)
		if (got[i] < start || got[i] >= start + NR_2M)
			ccvm_page_free(P, got[i]);
	return start;
}

static void huge_free(uint64_t pfn)
{
	unsigned int i;

	for (i = 0; i < NR_2M; i++) {
		ck_assert_uint_eq(pamt_type(pfn + i), CCVM_TDX_PT_NDA);
		ccvm_page_clear(P, pfn + i);
		ccvm_page_free(P, pfn + i);
	}
}

/* What a refused leaf must leave alone around a 2M page at @gpa / @pfn. */
struct mstate {
	struct ccvm_tdx_sept_info e2m, e4k;
	uint64_t st4k;
	struct ccvm_tdx_pamt_info head, mid, tail, spt;
	uint64_t assigned, children, epoch;
	struct ccvm_tdx_pamt_usage u;
};

static void mstate_take(struct mstate *s, struct ttd *t, uint64_t gpa, uint64_t pfn,
			uint64_t spt)
{
	memset(s, 0, sizeof(*s));
	OK(ccvm_tdh_mem_sept_rd(t->td, gpa, CCVM_TDX_LEVEL_2M, &s->e2m));
	s->st4k = ccvm_tdh_mem_sept_rd(t->td, gpa + 5 * CCVM_PAGE_SIZE, 0, &s->e4k);
	ck_assert_int_eq(ccvm_tdx_pamt_get(M, pfn, &s->head), 0);
	ck_assert_int_eq(ccvm_tdx_pamt_get(M, pfn + 5, &s->mid), 0);
	ck_assert_int_eq(ccvm_tdx_pamt_get(M, pfn + NR_2M - 1, &s->tail), 0);
	if (spt)
		ck_assert_int_eq(ccvm_tdx_pamt_get(M, spt, &s->spt), 0);
	s->assigned = ccvm_tdx_pamt_nr_assigned(M);
	s->children = ccvm_tdx_td_nr_children(t->td);
	s->epoch = ccvm_tdx_td_epoch(t->td);
	ck_assert_int_eq(ccvm_tdx_pamt_usage(M, &s->u), 0);
}

/* @expr returns @want and changes nothing mstate_take() sees. */
#define REFUSED(t, gpa, pfn, spt, expr, want) do {				\
	struct mstate _a, _b;							\
	mstate_take(&_a, t, gpa, pfn, spt);					\
	ck_status(expr, want);							\
	mstate_take(&_b, t, gpa, pfn, spt);					\
	ck_assert_msg(memcmp(&_a, &_b, sizeof(_a)) == 0, "%s changed state", #expr); \
} while (0)

START_TEST(test_aug_and_accept_2m)
{
	struct ttd t;
	struct ccvm_tdx_vp *vp;
	struct ccvm_tdx_pamt_info pi;
	uint64_t pfn, other, assigned, children, clears;
	uint8_t *b;

	td_runnable(&t, 0, 1);
	vp = t.vp[0];
	pfn = huge_page();
	other = huge_page();
	OK(ccvm_tdh_mem_page_aug(t.td, GPA0, 0, other + 3));	/* in use at 4K */
	ck_assert_uint_eq(sept_state(&t, HGPA, CCVM_TDX_LEVEL_2M), CCVM_TDX_SEPT_FREE);
	/* Refusals: a misaligned or too short page, a 2M entry that links a
	 * table, a region with a page in use at 4K, the shared alias. */
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdh_mem_page_aug(t.td, HGPA, 1, pfn + 1),
		TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_R8);
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdh_mem_page_aug(t.td, HGPA + CCVM_PAGE_SIZE, 1, pfn),
		TDX_OPERAND_INVALID | RCX);
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdh_mem_page_aug(t.td, GPA0, 1, pfn),
		TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdh_mem_page_aug(t.td, HGPA, 1, other),
		TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_R8);
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdh_mem_page_aug(t.td, HGPA | (1ull << 47), 1, pfn),
		TDX_OPERAND_INVALID | RCX);

	assigned = ccvm_tdx_pamt_nr_assigned(M);
	children = ccvm_tdx_td_nr_children(t.td);
	b = ccvm_page_ptr(P, pfn + 300);		/* stale bytes in one page */
	ccvm_page_mark_dirty(P, pfn + 300);
	memset(b, 0x5a, CCVM_PAGE_SIZE);
	OK(ccvm_tdh_mem_page_aug(t.td, HGPA, CCVM_TDX_LEVEL_2M, pfn));
	ck_assert_uint_eq(sept_state(&t, HGPA, CCVM_TDX_LEVEL_2M), CCVM_TDX_SEPT_PENDING);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(M), assigned + NR_2M);
	ck_assert_uint_eq(ccvm_tdx_td_nr_children(t.td), children + NR_2M);
	/* The 2M PAMT entry describes every page; the 4K level is unused. */
	ck_assert_int_eq(ccvm_tdx_pamt_get(M, pfn + 7, &pi), 0);
	ck_assert_uint_eq(pi.type, CCVM_TDX_PT_REG);
	ck_assert_int_eq(pi.level, CCVM_TDX_LEVEL_2M);
	ck_assert_uint_eq(pi.owner, t.tdr);
	/* No page of it can be given again at 4K, nor the 2M page twice. */
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdh_mem_page_aug(t.td, GPA0 + CCVM_PAGE_SIZE, 0, pfn + 3),
		TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_R8);
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdh_mem_page_aug(t.td, HGPA, 1, other),
		TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	REFUSED(&t, HGPA, pfn, 0,
		ccvm_tdh_phymem_page_wbinvd(M, NULL, pfn + 9, t.hkid),
		TDX_PAGE_METADATA_INCORRECT | RCX);

	OK(ccvm_tdh_vp_enter(vp, t.vp_cpu[0]));
	ck_status(ccvm_tdx_guest_access(vp, HGPA + 300 * CCVM_PAGE_SIZE, false), CCVM_TDX_SW_VE);
	/* A 4K accept inside a PENDING 2M leaf: a TD exit for the host to split. */
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdg_mem_page_accept(vp, HGPA + 5 * CCVM_PAGE_SIZE, 0),
		CCVM_TDX_SW_EPT_VIOLATION);
	clears = tu_event(P, CCVM_EV_PAGE_CLEAR);
	OK(ccvm_tdg_mem_page_accept(vp, HGPA, CCVM_TDX_LEVEL_2M));
	ck_assert_uint_eq(tu_event(P, CCVM_EV_PAGE_CLEAR), clears + NR_2M - 1);
	ck_assert_uint_eq(b[17], 0);
	ck_assert_uint_eq(sept_state(&t, HGPA, CCVM_TDX_LEVEL_2M), CCVM_TDX_SEPT_MAPPED);
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdg_mem_page_accept(vp, HGPA, CCVM_TDX_LEVEL_2M),
		TDX_PAGE_ALREADY_ACCEPTED | RCX);
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdg_mem_page_accept(vp, HGPA + 9 * CCVM_PAGE_SIZE, 0),
		TDX_PAGE_ALREADY_ACCEPTED | RCX);
	OK(ccvm_tdx_guest_access(vp, HGPA + 511 * CCVM_PAGE_SIZE + 8, true));
	/* A host write to any page of it poisons the 2M page. */
	ck_assert_int_eq(ccvm_tdx_host_access(M, pfn + 100, true), CCVM_HOST_ACCESS_CIPHERTEXT);
	ck_status(ccvm_tdx_guest_access(vp, HGPA, false), CCVM_TDX_SW_MCE);
	ccvm_tdx_vp_exit(vp);

	/* Teardown reclaims it whole, by its first pfn only. */
	td_release_hkid(&t);
	{
		struct ccvm_tdx_reclaim_info ri;

		ck_status(ccvm_tdh_phymem_page_reclaim(M, NULL, pfn + 1, &ri),
			  TDX_PAGE_METADATA_INCORRECT | RCX);
		ck_assert_uint_eq(pamt_type(pfn + 1), CCVM_TDX_PT_REG);
		OK(ccvm_tdh_phymem_page_reclaim(M, NULL, pfn, &ri));
		ck_assert_int_eq(ri.level, CCVM_TDX_LEVEL_2M);
		ck_assert_uint_eq(ri.type, CCVM_TDX_PT_REG);
		ck_assert_uint_eq(ri.owner, t.tdr);
	}
	ck_assert_uint_eq(ccvm_tdx_td_nr_children(t.td), children);
	OK(ccvm_tdh_phymem_page_reclaim(M, NULL, other + 3, NULL));
	td_destroy(&t);
	huge_free(pfn);
	huge_free(other);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(M), 0);
}
END_TEST

START_TEST(test_accept_level_mismatch)
{
	struct ttd t;
	struct ccvm_tdx_vp *vp;

	td_runnable(&t, 0, 1);
	vp = t.vp[0];
	aug(&t, GPA0);
	OK(ccvm_tdh_vp_enter(vp, t.vp_cpu[0]));
	/* Mapped at 4K, accepted at 2M: the guest must accept each 4K. */
	REFUSED(&t, GPA0, t.donated[t.nr_donated - 1], 0,
		ccvm_tdg_mem_page_accept(vp, GPA0, CCVM_TDX_LEVEL_2M),
		TDX_PAGE_SIZE_MISMATCH | RCX);
	ck_assert_uint_eq(sept_state(&t, GPA0, 0), CCVM_TDX_SEPT_PENDING);
	OK(ccvm_tdg_mem_page_accept(vp, GPA0, 0));
	/* Nothing mapped at the 2M entry: the host is asked to map it. */
	ck_status(ccvm_tdg_mem_page_accept(vp, HGPA, CCVM_TDX_LEVEL_2M),
		  CCVM_TDX_SW_EPT_VIOLATION);
	ccvm_tdx_vp_exit(vp);
	td_destroy(&t);
}
END_TEST

START_TEST(test_demote_needs_block_and_track)
{
	struct ttd t;
	struct ccvm_tdx_vp *vp;
	struct ccvm_tdx_sept_info si;
	struct ccvm_tdx_pamt_info pi;
	uint64_t pfn, spt, used, assigned, children, out = 0;
	unsigned int i;

	td_runnable(&t, 0, 1);
	vp = t.vp[0];
	pfn = huge_page();
	spt = tu_page(P);
	used = t.donated[0];			/* a TDCS page */
	OK(ccvm_tdh_mem_page_aug(t.td, HGPA, CCVM_TDX_LEVEL_2M, pfn));
	OK(ccvm_tdh_vp_enter(vp, t.vp_cpu[0]));
	OK(ccvm_tdg_mem_page_accept(vp, HGPA, CCVM_TDX_LEVEL_2M));

	/* Not a 2M leaf, or not the 2M level. */
	REFUSED(&t, HGPA, pfn, spt, ccvm_tdh_mem_page_demote(t.td, GPA0, 1, spt),
		TDX_EPT_ENTRY_STATE_INCORRECT | RCX);
	REFUSED(&t, HGPA, pfn, spt, ccvm_tdh_mem_page_demote(t.td, HGPA, 0, spt),
		TDX_OPERAND_INVALID | RCX);
	/* Not blocked. */
	REFUSED(&t, HGPA, pfn, spt, ccvm_tdh_mem_page_demote(t.td, HGPA, 1, spt),
		TDX_GPA_RANGE_NOT_BLOCKED | RCX);
	ccvm_tdx_vp_exit(vp);
	OK(ccvm_tdh_mem_range_block(t.td, HGPA, CCVM_TDX_LEVEL_2M));
	ck_assert_int_eq(ccvm_tdx_pamt_get(M, pfn, &pi), 0);
	ck_assert_uint_eq(pi.bepoch, ccvm_tdx_td_epoch(t.td));
	/* Blocked, not tracked. */
	REFUSED(&t, HGPA, pfn, spt, ccvm_tdh_mem_page_demote(t.td, HGPA, 1, spt),
		TDX_TLB_TRACKING_NOT_DONE | RCX);
	/* Tracked, but a vCPU that entered before the TRACK is still in. */
	OK(ccvm_tdh_vp_enter(vp, t.vp_cpu[0]));
	guest_runs(vp);
	OK(ccvm_tdh_mem_track(t.td));
	REFUSED(&t, HGPA, pfn, spt, ccvm_tdh_mem_page_demote(t.td, HGPA, 1, spt),
		TDX_TLB_TRACKING_NOT_DONE | RCX);
	ccvm_tdx_vp_exit(vp);
	/* The new table page must be free. */
	REFUSED(&t, HGPA, pfn, spt, ccvm_tdh_mem_page_demote(t.td, HGPA, 1, used),
		TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_R8);
	REFUSED(&t, HGPA, pfn, spt, ccvm_tdh_mem_page_demote(t.td, HGPA, 1, 0),
		TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_R8);
	/* Removing part of it is not possible while it is 2M. */
	REFUSED(&t, HGPA, pfn, spt,
		ccvm_tdh_mem_page_remove(t.td, HGPA + 5 * CCVM_PAGE_SIZE, 0, NULL),
		TDX_EPT_WALK_FAILED | RCX);

	assigned = ccvm_tdx_pamt_nr_assigned(M);
	children = ccvm_tdx_td_nr_children(t.td);
	OK(ccvm_tdh_mem_page_demote(t.td, HGPA, CCVM_TDX_LEVEL_2M, spt));
	t.donated[t.nr_donated++] = spt;
	ck_assert_uint_eq(sept_state(&t, HGPA, CCVM_TDX_LEVEL_2M), CCVM_TDX_SEPT_NL_MAPPED);
	for (i = 0; i < NR_2M; i += 73) {
		OK(ccvm_tdh_mem_sept_rd(t.td, HGPA + i * CCVM_PAGE_SIZE, 0, &si));
		ck_assert_uint_eq(si.state, CCVM_TDX_SEPT_MAPPED);	/* as before BLOCK */
		ck_assert_uint_eq(si.pfn, pfn + i);
		ck_assert_int_eq(ccvm_tdx_pamt_get(M, pfn + i, &pi), 0);
		ck_assert_int_eq(pi.level, CCVM_TDX_LEVEL_4K);
		ck_assert_uint_eq(pi.type, CCVM_TDX_PT_REG);
		ck_assert_uint_eq(pi.owner, t.tdr);
	}
	ck_assert_uint_eq(pamt_type(spt), CCVM_TDX_PT_EPT);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(M), assigned + 1);
	ck_assert_uint_eq(ccvm_tdx_td_nr_children(t.td), children + 1);
	/* Now one 4K page can go: the rest stay accepted. */
	out = remove_page(&t, HGPA + 5 * CCVM_PAGE_SIZE);
	ck_assert_uint_eq(out, pfn + 5);
	OK(ccvm_tdh_vp_enter(vp, t.vp_cpu[0]));
	ck_status(ccvm_tdg_mem_page_accept(vp, HGPA + 6 * CCVM_PAGE_SIZE, 0),
		  TDX_PAGE_ALREADY_ACCEPTED | RCX);
	ck_status(ccvm_tdg_mem_page_accept(vp, HGPA, CCVM_TDX_LEVEL_2M),
		  TDX_PAGE_SIZE_MISMATCH | RCX);
	ccvm_tdx_vp_exit(vp);
	/* Teardown: 511 pages reclaimed one by one, the removed one is free. */
	td_release_hkid(&t);
	for (i = 0; i < NR_2M; i++)
		if (i != 5)
			OK(ccvm_tdh_phymem_page_reclaim(M, NULL, pfn + i, NULL));
	td_destroy(&t);
	huge_free(pfn);
}
END_TEST

START_TEST(test_demote_pending_and_remove_2m)
{
	struct ttd t;
	struct ccvm_tdx_sept_info si;
	uint64_t pfn, pfn2, spt, out = 0;

	td_runnable(&t, 0, 1);
	pfn = huge_page();
	pfn2 = huge_page();
	spt = donate(&t);
	ck_assert_uint_eq(pamt_type(spt), CCVM_TDX_PT_NDA);
	/* A PENDING 2M leaf demotes to PENDING 4K leaves. */
	OK(ccvm_tdh_mem_page_aug(t.td, HGPA, CCVM_TDX_LEVEL_2M, pfn));
	OK(ccvm_tdh_mem_range_block(t.td, HGPA, CCVM_TDX_LEVEL_2M));
	ck_assert_uint_eq(sept_state(&t, HGPA, 1), CCVM_TDX_SEPT_PENDING_BLOCKED);
	OK(ccvm_tdh_mem_track(t.td));
	OK(ccvm_tdh_mem_page_demote(t.td, HGPA, CCVM_TDX_LEVEL_2M, spt));
	OK(ccvm_tdh_mem_sept_rd(t.td, HGPA + 511 * CCVM_PAGE_SIZE, 0, &si));
	ck_assert_uint_eq(si.state, CCVM_TDX_SEPT_PENDING);

	/* A whole 2M leaf goes by one BLOCK, TRACK, REMOVE. */
	OK(ccvm_tdh_mem_page_aug(t.td, HGPA + GPA_2M, CCVM_TDX_LEVEL_2M, pfn2));
	REFUSED(&t, HGPA + GPA_2M, pfn2, 0,
		ccvm_tdh_mem_page_remove(t.td, HGPA + GPA_2M, 1, NULL),
		TDX_GPA_RANGE_NOT_BLOCKED | RCX);
	OK(ccvm_tdh_mem_range_block(t.td, HGPA + GPA_2M, CCVM_TDX_LEVEL_2M));
	REFUSED(&t, HGPA + GPA_2M, pfn2, 0,
		ccvm_tdh_mem_page_remove(t.td, HGPA + GPA_2M, 1, NULL),
		TDX_TLB_TRACKING_NOT_DONE | RCX);
	OK(ccvm_tdh_mem_track(t.td));
	OK(ccvm_tdh_mem_page_remove(t.td, HGPA + GPA_2M, CCVM_TDX_LEVEL_2M, &out));
	ck_assert_uint_eq(out, pfn2);
	ck_assert_uint_eq(sept_state(&t, HGPA + GPA_2M, 1), CCVM_TDX_SEPT_FREE);
	ck_assert_uint_eq(pamt_type(pfn2 + 300), CCVM_TDX_PT_NDA);
	OK(ccvm_tdh_phymem_page_wbinvd(M, NULL, pfn2 + 300, t.hkid));
	td_release_hkid(&t);
	{
		unsigned int i;

		for (i = 0; i < NR_2M; i++)
			OK(ccvm_tdh_phymem_page_reclaim(M, NULL, pfn + i, NULL));
	}
	td_destroy(&t);
	huge_free(pfn);
	huge_free(pfn2);
}
END_TEST

START_TEST(test_pamt_levels_static)
{
	struct ttd t;
	struct ccvm_tdx_pamt_usage u0, u;
	uint64_t pfn, nr = ccvm_platform_nr_pages(P);

	ck_assert_int_eq(ccvm_tdx_pamt_usage(M, &u0), 0);
	ck_assert(!u0.dynamic);
	/* Static: a 16-byte entry per 4K page, 2M and 1G region. */
	ck_assert_uint_eq(u0.static_bytes, (nr + nr / NR_2M + 1) * CCVM_TDX_PAMT_ENTRY_BYTES);
	ck_assert_uint_eq(u0.dynamic_bytes, 0);
	ck_assert_int_eq(ccvm_tdx_pamt_usage(NULL, &u), -EINVAL);
	ck_assert_int_eq(ccvm_tdx_pamt_usage(M, NULL), -EINVAL);
	td_runnable(&t, 0, 1);
	pfn = huge_page();
	ck_assert_int_eq(ccvm_tdx_pamt_usage(M, &u), 0);
	ck_assert_uint_eq(u.pages_2m, 0);
	ck_assert_uint_eq(u.pages_4k, ccvm_tdx_pamt_nr_assigned(M));
	OK(ccvm_tdh_mem_page_aug(t.td, HGPA, CCVM_TDX_LEVEL_2M, pfn));
	ck_assert_int_eq(ccvm_tdx_pamt_usage(M, &u), 0);
	ck_assert_uint_eq(u.pages_2m, NR_2M);
	ck_assert_uint_eq(u.pages_4k + u.pages_2m, ccvm_tdx_pamt_nr_assigned(M));
	ck_assert_uint_eq(u.static_bytes, u0.static_bytes);	/* nothing grows */
	/* PAMT.ADD needs Dynamic PAMT; switching with pages in use is refused. */
	REFUSED(&t, HGPA, pfn, 0, ccvm_tdh_phymem_pamt_add(M, NULL, 0, 1, 2),
		TDX_OPERAND_INVALID | RCX);
	ck_assert_int_eq(ccvm_tdx_set_dynamic_pamt(M, true), -EBUSY);
	ck_assert_int_eq(ccvm_tdx_pamt_usage(M, &u), 0);
	ck_assert(!u.dynamic);
	ck_assert_int_eq(ccvm_tdx_set_dynamic_pamt(NULL, true), -EINVAL);
	td_release_hkid(&t);
	OK(ccvm_tdh_phymem_page_reclaim(M, NULL, pfn, NULL));
	td_destroy(&t);
	huge_free(pfn);
}
END_TEST

/* Give the region of @pfn a pair if it has none. */
static void pair_for(uint64_t pfn)
{
	uint64_t a, b;

	if (ccvm_tdx_pamt_has_pair(M, pfn))
		return;
	a = tu_page(P);
	b = tu_page(P);
	OK(ccvm_tdh_phymem_pamt_add(M, NULL, pfn - pfn % NR_2M, a, b));
}

START_TEST(test_dynamic_pamt)
{
	struct ttd t;
	struct ccvm_tdx_pamt_usage u;
	struct ccvm_tdx_vp *vp;
	uint64_t nr = ccvm_platform_nr_pages(P), tdr, region, p0, p1, a, b, pfn, pfn2, spt, x, y;
	uint32_t hkid;
	unsigned int i;

	ck_assert_int_eq(ccvm_tdx_set_dynamic_pamt(M, true), 0);
	ck_assert_int_eq(ccvm_tdx_pamt_usage(M, &u), 0);
	ck_assert(u.dynamic);
	/* 1 bit per 4K page plus the 2M and 1G levels: about 100x less. */
	ck_assert_uint_eq(u.static_bytes, nr / 8 + (nr / NR_2M + 1) * CCVM_TDX_PAMT_ENTRY_BYTES);
	ck_assert_uint_eq(u.nr_pairs, 0);

	/* A control page in a region without a pair. */
	ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &hkid), 0);
	tdr = tu_page(P);
	region = tdr - tdr % NR_2M;
	ck_status(ccvm_tdh_mng_create(M, NULL, tdr, hkid, &t.td), TDX_MISSING_PAMT_PAGE_PAIR | RCX);
	ck_assert_uint_eq(pamt_type(tdr), CCVM_TDX_PT_NDA);
	ck_assert_int_eq(ccvm_tdx_pamt_usage(M, &u), 0);
	ck_assert_uint_eq(u.pages_4k, 0);
	/* PAMT.ADD: bad operands, then the pair, then a second pair. */
	a = tu_page(P);
	b = tu_page(P);
	ck_status(ccvm_tdh_phymem_pamt_add(M, NULL, region + 1, a, b), TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdh_phymem_pamt_add(M, NULL, region, a, a),
		  TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_R8);
	ck_status(ccvm_tdh_phymem_pamt_add(M, NULL, region, a, 0),
		  TDX_OPERAND_INVALID | CCVM_TDX_OPERAND_R8);
	ck_assert_uint_eq(pamt_type(a), CCVM_TDX_PT_NDA);
	ck_assert(!ccvm_tdx_pamt_has_pair(M, region));
	OK(ccvm_tdh_phymem_pamt_add(M, NULL, region, a, b));
	ck_assert_uint_eq(pamt_type(a), CCVM_TDX_PT_PAMT);
	ck_assert_uint_eq(pamt_type(b), CCVM_TDX_PT_PAMT);
	ck_assert(ccvm_tdx_pamt_has_pair(M, tdr));
	ck_assert_int_eq(ccvm_tdx_pamt_usage(M, &u), 0);
	ck_assert_uint_eq(u.nr_pairs, 1);
	ck_assert_uint_eq(u.dynamic_bytes, 2 * CCVM_PAGE_SIZE);
	x = tu_page(P);
	y = tu_page(P);
	ck_status(ccvm_tdh_phymem_pamt_add(M, NULL, region, x, y), TDX_HPA_RANGE_NOT_FREE | RCX);
	ck_assert_uint_eq(pamt_type(x), CCVM_TDX_PT_NDA);
	ck_status(ccvm_tdh_phymem_pamt_add(M, NULL, region + NR_2M, a, y),
		  TDX_PAGE_METADATA_INCORRECT | CCVM_TDX_OPERAND_RDX);
	ck_assert_uint_eq(pamt_type(y), CCVM_TDX_PT_NDA);
	ck_assert_int_eq(ccvm_tdx_set_dynamic_pamt(M, false), -EBUSY);
	ccvm_page_free(P, x);
	ccvm_page_free(P, y);
	ck_assert_int_eq(ccvm_tdx_hkid_free(M, NULL, hkid), 0);
	ccvm_page_free(P, tdr);

	/* A whole TD: every region that holds a 4K page needs its pair. */
	memset(&t, 0, sizeof(t));
	ck_assert_int_eq(ccvm_tdx_hkid_alloc(M, NULL, &t.hkid), 0);
	t.tdr = tu_page(P);
	pair_for(t.tdr);
	OK(ccvm_tdh_mng_create(M, NULL, t.tdr, t.hkid, &t.td));
	OK(ccvm_tdh_mng_key_config(t.td, 0));
	{
		struct ccvm_tdx_td_params params = { .gpaw = 48, .max_vcpus = 8 };
		uint64_t pg[CCVM_TDX_NR_TDCS];

		for (i = 0; i < CCVM_TDX_NR_TDCS; i++) {
			pg[i] = donate(&t);
			pair_for(pg[i]);
			OK(ccvm_tdh_mng_addcx(t.td, pg[i]));
		}
		OK(ccvm_tdh_mng_init(t.td, &params));
		pg[0] = donate(&t);
		pair_for(pg[0]);
		OK(ccvm_tdh_vp_create(t.td, pg[0], &vp));
		for (i = 0; i < CCVM_TDX_NR_TDCX; i++) {
			pg[0] = donate(&t);
			pair_for(pg[0]);
			OK(ccvm_tdh_vp_addcx(vp, pg[0]));
		}
		OK(ccvm_tdh_vp_init(vp, 0));
		t.vp[0] = vp;
		t.vp_cpu[0] = 0;
		t.nr_vp = 1;
	}
	for (i = 3; i >= 1; i--) {
		uint64_t sp = donate(&t);

		pair_for(sp);
		OK(ccvm_tdh_mem_sept_add(t.td, HGPA & ~((CCVM_PAGE_SIZE << (9 * i)) - 1), (int)i, sp));
	}
	OK(ccvm_tdh_mr_finalize(t.td));
	/* A 2M page needs no pair: it uses the static 2M level. */
	pfn = huge_page();
	OK(ccvm_tdh_mem_page_aug(t.td, HGPA + GPA_2M, CCVM_TDX_LEVEL_2M, pfn));
	ck_assert(!ccvm_tdx_pamt_has_pair(M, pfn));
	/* A 4K page in a region without a pair does. */
	pfn2 = huge_page();
	x = pfn2 + 7;
	ck_assert(!ccvm_tdx_pamt_has_pair(M, x));
	REFUSED(&t, HGPA + GPA_2M, pfn, 0, ccvm_tdh_mem_page_aug(t.td, HGPA, 0, x),
		TDX_MISSING_PAMT_PAGE_PAIR | CCVM_TDX_OPERAND_R8);
	/* DEMOTE needs the pair of the 2M page's region (its 4K entries). */
	OK(ccvm_tdh_mem_range_block(t.td, HGPA + GPA_2M, CCVM_TDX_LEVEL_2M));
	OK(ccvm_tdh_mem_track(t.td));
	spt = donate(&t);
	pair_for(spt);
	REFUSED(&t, HGPA + GPA_2M, pfn, spt,
		ccvm_tdh_mem_page_demote(t.td, HGPA + GPA_2M, CCVM_TDX_LEVEL_2M, spt),
		TDX_MISSING_PAMT_PAGE_PAIR | RCX);
	pair_for(pfn);
	OK(ccvm_tdh_mem_page_demote(t.td, HGPA + GPA_2M, CCVM_TDX_LEVEL_2M, spt));
	/* PAMT.REMOVE refused while pages of the region are in use at 4K. */
	p0 = p1 = 0;
	REFUSED(&t, HGPA + GPA_2M, pfn, spt, ccvm_tdh_phymem_pamt_remove(M, NULL, pfn, &p0, &p1),
		TDX_HPA_RANGE_NOT_FREE | RCX);
	ck_status(ccvm_tdh_phymem_pamt_remove(M, NULL, pfn + 1, &p0, &p1),
		  TDX_OPERAND_INVALID | RCX);
	ck_status(ccvm_tdh_phymem_pamt_remove(M, NULL, (nr - NR_2M) - (nr - NR_2M) % NR_2M,
					      &p0, &p1), TDX_PAGE_METADATA_INCORRECT | RCX);
	td_release_hkid(&t);
	for (i = 0; i < NR_2M; i++)
		OK(ccvm_tdh_phymem_page_reclaim(M, NULL, pfn + i, NULL));
	/* Now the region is unused at 4K: its pair comes back. */
	OK(ccvm_tdh_phymem_pamt_remove(M, NULL, pfn, &p0, &p1));
	ck_assert_uint_ne(p0, 0);
	ck_assert_uint_ne(p1, p0);
	ck_assert_uint_eq(pamt_type(p0), CCVM_TDX_PT_NDA);
	ck_assert(!ccvm_tdx_pamt_has_pair(M, pfn));
	td_destroy(&t);
	huge_free(pfn);
	huge_free(pfn2);
	ck_assert_uint_eq(ccvm_tdx_pamt_nr_assigned(M), 0);
	ck_assert_uint_eq(tu_event(P, CCVM_EV_TDH_PHYMEM_PAMT_REMOVE), 4);
	ck_assert_uint_gt(tu_event(P, CCVM_EV_TDH_PHYMEM_PAMT_ADD), 1);
}
END_TEST

Suite *tdx_module_suite(void)
{
	Suite *s = suite_create("tdx_module");
	TCase *tc;

	tc = tcase_create("module");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_init_defaults);
	tcase_add_test(tc, test_init_topology);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_hkid_pool_exhaustion_and_reuse);
	suite_add_tcase(s, tc);

	tc = tcase_create("mng");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_mng_create);
	tcase_add_test(tc, test_key_config_packages);
	tcase_add_test(tc, test_addcx_and_init);
	tcase_add_test(tc, test_finalize_once);
	tcase_add_test(tc, test_vp_lifecycle);
	suite_add_tcase(s, tc);

	tc = tcase_create("sept");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_sept_add_walk);
	tcase_add_test(tc, test_sept_page_is_initialised);
	tcase_add_test(tc, test_page_add_before_finalize);
	tcase_add_test(tc, test_sept_state_machine);
	tcase_add_test(tc, test_sept_nonleaf_block_and_remove);
	tcase_add_test(tc, test_five_level_sept);
	tcase_add_test(tc, test_entry_window);
	tcase_add_test(tc, test_tlb_tracking);
	tcase_add_test(tc, test_track_two_epochs_later);
	suite_add_tcase(s, tc);

	tc = tcase_create("guest");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_accept_and_access);
	tcase_add_test(tc, test_accept_leaves_clean_pages_alone);
	tcase_add_test(tc, test_sept_ve_disable);
	suite_add_tcase(s, tc);

	tc = tcase_create("teardown");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_release_order);
	tcase_add_test(tc, test_reclaim_rules);
	tcase_add_test(tc, test_full_teardown_leaves_no_owned_page);
	tcase_add_test(tc, test_wbinvd);
	suite_add_tcase(s, tc);

	tc = tcase_create("host");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_ciphertext);
	tcase_add_test(tc, test_poison);
	suite_add_tcase(s, tc);

	tc = tcase_create("inject");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_accounting);
	tcase_add_test(tc, test_inject_rules);
	tcase_add_loop_test(tc, test_inject_busy_every_leaf, 0,
			    (int)(sizeof(leaf_cases) / sizeof(leaf_cases[0])));
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_real_busy_sept_lock);
	tcase_add_test(tc, test_real_busy_entry_lock);
	tcase_add_test(tc, test_real_busy_epoch_lock);
	tcase_add_test(tc, test_concurrent_vcpus);
	suite_add_tcase(s, tc);

	tc = tcase_create("huge");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_aug_and_accept_2m);
	tcase_add_test(tc, test_accept_level_mismatch);
	tcase_add_test(tc, test_demote_needs_block_and_track);
	tcase_add_test(tc, test_demote_pending_and_remove_2m);
	tcase_add_test(tc, test_pamt_levels_static);
	tcase_add_test(tc, test_dynamic_pamt);
	suite_add_tcase(s, tc);

	return s;
}
