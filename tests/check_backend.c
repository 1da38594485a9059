/* SPDX-License-Identifier: MIT */
/*
 * The backend ABI: registration and validation of out-of-tree tables,
 * default fill-in of optional ops, per-op call counters, fault injection,
 * and the core services a backend's checks and conversions use.
 *
 * Registration is process-wide and permanent; in fork mode (the default)
 * every test starts with an empty registry.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

/* ---- an out-of-tree backend that counts its own calls ---------------------- */

struct oot_counts {
	unsigned int platform_init, platform_destroy, vm_init, vm_destroy;
	void *platform_priv, *vm_priv;
};

static struct oot_counts oot;

static int oot_platform_init(struct ccvm_platform *p)
{
	oot.platform_init++;
	oot.platform_priv = ccvm_platform_priv(p);
	return 0;
}

static void oot_platform_destroy(struct ccvm_platform *p)
{
	(void)p;
	oot.platform_destroy++;
}

static int oot_vm_init(struct ccvm_vm *vm)
{
	oot.vm_init++;
	oot.vm_priv = ccvm_vm_priv(vm);
	return 0;
}

static void oot_vm_destroy(struct ccvm_vm *vm)
{
	(void)vm;
	oot.vm_destroy++;
}

static struct ccvm_backend_ops oot_ops(const char *name)
{
	struct ccvm_backend_ops o = tu_ops(name);

	o.platform_priv_size = 64;
	o.vm_priv_size = 32;
	o.platform_init = oot_platform_init;
	o.platform_destroy = oot_platform_destroy;
	o.vm_init = oot_vm_init;
	o.vm_destroy = oot_vm_destroy;
	return o;
}

static void setup(void)
{
	memset(&oot, 0, sizeof(oot));
	tu_caps_reset_to_mock();
	tu_caps()->vm_type = 77;	/* tells the test backend from the mock */
}

static unsigned int nr_names(void)
{
	const char *const *names = ccvm_backend_names();
	unsigned int n = 0;

	while (names[n])
		n++;
	return n;
}

static bool name_listed(const char *name)
{
	const char *const *names = ccvm_backend_names();
	unsigned int i;

	for (i = 0; names[i]; i++)
		if (!strcmp(names[i], name))
			return true;
	return false;
}

static struct ccvm_platform *platform_on(const char *backend)
{
	return tu_platform(backend);
}

static const char zero_block[64];

START_TEST(test_register_valid)
{
	struct ccvm_backend_ops o = oot_ops("oot");
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };
	unsigned int n0 = nr_names();
	struct ccvm_platform *p;
	struct ccvm_vm *vm;

	ck_assert_int_eq(ccvm_backend_register(&o), 0);
	ck_assert_uint_eq(nr_names(), n0 + 1);
	ck_assert(name_listed("oot"));
	ck_assert_int_eq(ccvm_backend_caps("oot", &caps), 0);
	ck_assert_str_eq(caps.name, "oot");
	ck_assert_uint_eq(caps.vm_type, 77);

	p = platform_on("oot");
	ck_assert_uint_eq(oot.platform_init, 1);
	ck_assert_int_eq(ccvm_op_calls(p, "platform_init"), 1);
	/* The core allocated the private area with the table's size, zeroed. */
	ck_assert_ptr_nonnull(oot.platform_priv);
	ck_assert_mem_eq(oot.platform_priv, zero_block, 64);

	vm = tu_vm(p);
	ck_assert_uint_eq(oot.vm_init, 1);
	ck_assert_int_eq(ccvm_op_calls(p, "vm_init"), 1);
	ck_assert_ptr_nonnull(oot.vm_priv);
	ck_assert_mem_eq(oot.vm_priv, zero_block, 32);
	ck_assert_ptr_eq(ccvm_vm_platform(vm), p);

	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_uint_eq(oot.vm_destroy, 1);
	ck_assert_int_eq(ccvm_op_calls(p, "vm_destroy"), 1);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	ck_assert_uint_eq(oot.platform_destroy, 1);
}
END_TEST

/* ---- invalid tables ------------------------------------------------------------ */

enum table_defect {
	DEFECT_ABI_MAJOR_0,
	DEFECT_ABI_MAJOR_2,
	DEFECT_SIZE_0,
	DEFECT_SIZE_SHORT,
	DEFECT_NO_GET_CAPS,
	DEFECT_NULL_NAME,
	DEFECT_EMPTY_NAME,
	DEFECT_MIRROR_NO_LINK,
	DEFECT_MIRROR_NO_SET,
	DEFECT_MIRROR_NO_REMOVE,
	DEFECT_MIRROR_NO_FREE,
	NR_DEFECTS
};

static int mirror_link(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
{
	(void)vm; (void)gfn; (void)level; (void)pfn;
	return 0;
}

static int mirror_set(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
{
	(void)vm; (void)gfn; (void)level; (void)pfn;
	return 0;
}

static void mirror_ops(struct ccvm_backend_ops *o)
{
	tu_caps()->has_mirror_root = true;
	o->link_private_spt = mirror_link;
	o->set_private_spte = mirror_set;
	o->remove_private_spte = mirror_set;
	o->free_private_spt = mirror_link;
}

START_TEST(test_register_invalid)
{
	struct ccvm_backend_ops o = oot_ops("bad");
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = "bad");
	struct ccvm_platform *p = NULL;
	unsigned int n0 = nr_names();

	switch ((enum table_defect)_i) {
	case DEFECT_ABI_MAJOR_0:
		o.abi_version = CCVM_BACKEND_ABI_MINOR;
		break;
	case DEFECT_ABI_MAJOR_2:
		o.abi_version = (uint32_t)(CCVM_BACKEND_ABI_MAJOR + 1) << 16;
		break;
	case DEFECT_SIZE_0:
		o.size = 0;
		break;
	case DEFECT_SIZE_SHORT:
		/* The first ABI's table ends with host_ciphertext. */
		o.size = offsetof(struct ccvm_backend_ops, host_ciphertext);
		break;
	case DEFECT_NO_GET_CAPS:
		o.get_caps = NULL;
		break;
	case DEFECT_NULL_NAME:
		o.name = NULL;
		break;
	case DEFECT_EMPTY_NAME:
		o.name = "";
		break;
	case DEFECT_MIRROR_NO_LINK:
		mirror_ops(&o);
		o.link_private_spt = NULL;
		break;
	case DEFECT_MIRROR_NO_SET:
		mirror_ops(&o);
		o.set_private_spte = NULL;
		break;
	case DEFECT_MIRROR_NO_REMOVE:
		mirror_ops(&o);
		o.remove_private_spte = NULL;
		break;
	case DEFECT_MIRROR_NO_FREE:
		mirror_ops(&o);
		o.free_private_spt = NULL;
		break;
	case NR_DEFECTS:
		break;
	}
	tu_quiet_log();
	ck_assert_int_eq(ccvm_backend_register(&o), -EINVAL);
	/* Nothing was registered. */
	ck_assert_uint_eq(nr_names(), n0);
	ck_assert(!name_listed("bad"));
	ck_assert_int_eq(ccvm_backend_caps("bad", &caps), -ENOENT);
	ck_assert_int_eq(ccvm_platform_create(&po, &p), -ENOENT);
	ck_assert_ptr_null(p);
	ccvm_set_log(NULL, NULL);
}
END_TEST

START_TEST(test_register_null)
{
	unsigned int n0 = nr_names();

	ck_assert_int_eq(ccvm_backend_register(NULL), -EINVAL);
	ck_assert_uint_eq(nr_names(), n0);
}
END_TEST

/* A complete mirror-root table, a newer minor version, a newer bigger table. */
struct newer_ops {
	struct ccvm_backend_ops o;
	void (*future_op)(void);
};

static void future_op(void)
{
	ck_abort_msg("an op the core does not know was called");
}

START_TEST(test_register_accepts)
{
	struct ccvm_backend_ops o = oot_ops("mirror");
	struct newer_ops n;
	struct ccvm_platform *p;

	mirror_ops(&o);
	ck_assert_int_eq(ccvm_backend_register(&o), 0);
	ck_assert(name_listed("mirror"));

	tu_caps()->has_mirror_root = false;
	o = oot_ops("minor");
	o.abi_version = CCVM_BACKEND_ABI_VERSION + 7;
	ck_assert_int_eq(ccvm_backend_register(&o), 0);

	memset(&n, 0, sizeof(n));
	n.o = oot_ops("newer");
	n.o.size = sizeof(n);
	n.future_op = future_op;
	ck_assert_int_eq(ccvm_backend_register(&n.o), 0);
	p = platform_on("newer");
	ck_assert_uint_eq(oot.platform_init, 1);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

START_TEST(test_register_duplicate)
{
	struct ccvm_backend_ops o = oot_ops("mock");
	unsigned int n0 = nr_names();
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };

	ck_assert_int_eq(ccvm_backend_register(&o), -EEXIST);
	o.name = "tdx";
	ck_assert_int_eq(ccvm_backend_register(&o), -EEXIST);
	o.name = "snp";
	ck_assert_int_eq(ccvm_backend_register(&o), -EEXIST);
	ck_assert_uint_eq(nr_names(), n0);
	/* The built-in is still the one answering. */
	ck_assert_int_eq(ccvm_backend_caps("mock", &caps), 0);
	ck_assert_uint_eq(caps.vm_type, 1);

	o.name = "twice";
	ck_assert_int_eq(ccvm_backend_register(&o), 0);
	ck_assert_int_eq(ccvm_backend_register(&o), -EEXIST);
	ck_assert_uint_eq(nr_names(), n0 + 1);
}
END_TEST

START_TEST(test_register_full)
{
	static const char *const names[] = {
		"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9",
	};
	struct ccvm_backend_ops o = oot_ops("r0");
	unsigned int i, n0 = nr_names();
	int r = 0;

	/* At most 8 registered backends: the 9th is refused, and changes nothing. */
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		o.name = names[i];
		r = ccvm_backend_register(&o);
		if (r)
			break;
	}
	ck_assert_int_eq(r, -ENOSPC);
	ck_assert_uint_eq(i, 8);
	ck_assert_uint_eq(nr_names(), n0 + 8);
	ck_assert(!name_listed(names[8]));
	/* Every registered one still works. */
	for (i = 0; i < 8; i++)
		ck_assert_int_eq(ccvm_platform_destroy(platform_on(names[i])), 0);
}
END_TEST

/* ---- default fill-in of optional ops ----------------------------------------------- */

START_TEST(test_default_ops)
{
	struct ccvm_backend_ops o = tu_ops("minimal");
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	uint8_t page[4096] = { 0 };

	ck_assert_int_eq(ccvm_backend_register(&o), 0);
	p = platform_on("minimal");
	/* OPTIONAL_RET0 ops left NULL answer 0 and are still counted. */
	ck_assert_int_eq(ccvm_op_calls(p, "platform_init"), 1);
	vm = tu_vm(p);
	ck_assert_int_eq(ccvm_op_calls(p, "vm_init"), 1);
	g = tu_gmem(vm, 4 * TU_MiB, 0);
	tu_gmem_slot(vm, 0, 0, 4 * TU_MiB, g, 0);
	tu_set_attr(vm, 0, TU_2M, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	ck_assert_int_eq(ccvm_op_calls(p, "pre_set_mem_attr"), 1);
	ck_assert_int_eq(ccvm_op_calls(p, "update_mem_attr"), 1);
	/* A plain OPTIONAL op left NULL is never called, so never counted. */
	ck_assert_int_eq(ccvm_op_calls(p, "post_set_mem_attr"), 0);
	/* Optional launch ops: absent means no launch protocol. */
	ck_assert_int_eq(ccvm_vm_populate(vm, 0, page, TU_PAGE, 0), -EOPNOTSUPP);
	ck_assert_int_eq(ccvm_vm_terminate(vm), -EOPNOTSUPP);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_op_calls(p, "gmem_defer_removal"), 1);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_op_calls(p, "vm_destroy"), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

/* ---- ccvm_op_calls and ccvm_inject_op_failure ----------------------------------------- */

START_TEST(test_op_calls_errors)
{
	struct ccvm_platform *p = platform_on(NULL);

	ck_assert_int_eq(ccvm_op_calls(NULL, "vm_init"), -EINVAL);
	ck_assert_int_eq(ccvm_op_calls(p, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_op_calls(p, "no_such_op"), -EINVAL);
	ck_assert_int_eq(ccvm_op_calls(p, ""), -EINVAL);
	ck_assert_int_eq(ccvm_op_calls(p, "vm_init"), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

static const struct {
	const char *op;
	uint64_t nth;
	int err;
	int want;
} inject_error_cases[] = {
	{ "no_such_op", 1, -EIO, -ENOENT },
	{ "", 1, -EIO, -ENOENT },
	{ "VM_INIT", 1, -EIO, -ENOENT },
	{ NULL, 1, -EIO, -EINVAL },
	{ "get_caps", 1, -EIO, -EINVAL },		/* void ops cannot fail */
	{ "vm_destroy", 1, -EIO, -EINVAL },
	{ "post_set_mem_attr", 1, -EIO, -EINVAL },
	{ "gmem_invalidate", 1, -EIO, -EINVAL },
	{ "host_ciphertext", 0, 0, -EINVAL },
	{ "vm_init", 1, 1, -EINVAL },			/* positive err */
	{ "vm_init", 1, 4096, -EINVAL },
};

START_TEST(test_inject_errors)
{
	struct ccvm_platform *p = platform_on(NULL);
	struct ccvm_vm *vm;

	ck_assert_int_eq(ccvm_inject_op_failure(p, inject_error_cases[_i].op,
						inject_error_cases[_i].nth,
						inject_error_cases[_i].err, 0),
			 inject_error_cases[_i].want);
	ck_assert_int_eq(ccvm_inject_op_failure(NULL, "vm_init", 1, -EIO, 0), -EINVAL);
	/* No rule was installed: the next VM creation succeeds. */
	vm = tu_vm(p);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

#define INJECT_CALLS	6

static const struct {
	uint64_t nth, count;
	const char *pattern;	/* per call: s = succeeds, f = injected failure */
} inject_cases[] = {
	{ 3, 1, "ssfsss" },	/* only the 3rd call */
	{ 3, 2, "ssffss" },
	{ 3, 0, "ssffff" },	/* from the 3rd on, forever */
	{ 0, 0, "ffffff" },	/* every call */
	{ 0, 2, "ffssss" },
	{ 1, 1, "fsssss" },
	{ 6, 1, "sssssf" },
	{ 7, 1, "ssssss" },
};

START_TEST(test_inject_pattern)
{
	const char *pattern = inject_cases[_i].pattern;
	struct ccvm_backend_ops o = oot_ops("counted");
	struct ccvm_vm *vms[INJECT_CALLS];
	struct ccvm_platform *p;
	unsigned int i, fails = 0;
	struct ccvm_stats st;

	ck_assert_int_eq(ccvm_backend_register(&o), 0);
	p = platform_on("counted");
	ck_assert_int_eq(ccvm_inject_op_failure(p, "vm_init", inject_cases[_i].nth, -EXDEV,
						inject_cases[_i].count), 0);
	for (i = 0; i < INJECT_CALLS; i++) {
		int r;

		vms[i] = NULL;
		r = ccvm_vm_create(p, NULL, &vms[i]);
		if (pattern[i] == 'f') {
			ck_assert_msg(r == -EXDEV, "call %u: %d, wanted the injected error", i + 1,
				      r);
			fails++;
		} else {
			ck_assert_msg(r == 0, "call %u: %d, wanted success", i + 1, r);
		}
	}
	/* Every call is counted; an injected failure skips the backend's op. */
	ck_assert_int_eq(ccvm_op_calls(p, "vm_init"), INJECT_CALLS);
	ck_assert_uint_eq(oot.vm_init, INJECT_CALLS - fails);
	st = tu_pstats(p);
	ck_assert_uint_eq(st.op_errors[CCVM_OPI_vm_init], fails);

	/* err 0 removes the rule. */
	ck_assert_int_eq(ccvm_inject_op_failure(p, "vm_init", 0, 0, 0), 0);
	for (i = 0; i < INJECT_CALLS; i++) {
		if (!vms[i])
			ck_assert_int_eq(ccvm_vm_create(p, NULL, &vms[i]), 0);
		ck_assert_int_eq(ccvm_vm_close(vms[i]), 0);
	}
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

/* Setting a rule again restarts its call count; rules are per platform. */
START_TEST(test_inject_rearm_and_scope)
{
	struct ccvm_platform *p = platform_on(NULL), *q = platform_on(NULL);
	struct ccvm_vm *pv[3], *qv[2], *none = NULL;
	unsigned int i;

	ck_assert_int_eq(ccvm_inject_op_failure(p, "vm_init", 2, -ENOSPC, 1), 0);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &pv[0]), 0);
	ck_assert_int_eq(ccvm_inject_op_failure(p, "vm_init", 2, -ENOSPC, 1), 0);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &pv[1]), 0);
	/* Another platform never sees p's rule. */
	ck_assert_int_eq(ccvm_vm_create(q, NULL, &qv[0]), 0);
	ck_assert_int_eq(ccvm_vm_create(q, NULL, &qv[1]), 0);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &none), -ENOSPC);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &pv[2]), 0);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(ccvm_vm_close(pv[i]), 0);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(ccvm_vm_close(qv[i]), 0);
	ck_assert_int_eq(ccvm_platform_destroy(q), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

/* ---- the services a backend's checks and conversions use ------------------------ */

#define SVC_MAX		8
#define SVC_SKIP_GFN	2	/* the walk callback takes two pages at once here */

/* What the "svc" backend saw through the services, for the test to judge. */
static struct {
	bool fail;			/* check_invariants reports I23 */
	bool had_gmem;
	unsigned int nr_walked;		/* update_mem_attr walk */
	uint64_t gfn[SVC_MAX], pfn[SVC_MAX];
	unsigned int nr_leaves, nr_mirror, nr_file_pages, nr_bad_frames;
	uint64_t limit;
	int bad_roots, bad_fn;
} svc;

static int svc_gfn_cb(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn, void *ctx)
{
	(void)vm;
	(void)ctx;
	if (svc.nr_walked < SVC_MAX) {
		svc.gfn[svc.nr_walked] = gfn;
		svc.pfn[svc.nr_walked] = pfn;
	}
	svc.nr_walked++;
	return gfn == SVC_SKIP_GFN ? 2 : 0;
}

static int svc_update_mem_attr(struct ccvm_vm *vm, struct ccvm_memslot *slot,
			       uint64_t attrs, uint64_t start, uint64_t end)
{
	(void)attrs;
	svc.had_gmem = ccvm_memslot_has_gmem(slot);
	return ccvm_memslot_for_each_gmem_pfn(vm, slot, start, end, svc_gfn_cb, NULL);
}

static int svc_leaf_cb(const struct ccvm_mmu_entry *e, void *ctx)
{
	struct ccvm_platform *p = ctx;

	if (!e->leaf)
		return 0;
	svc.nr_leaves++;
	if (e->mirror)
		svc.nr_mirror++;
	if (!ccvm_page_is_allocated(p, e->frame) || ccvm_page_is_leaked(p, e->frame) ||
	    e->frame >= svc.limit)
		svc.nr_bad_frames++;
	return 0;
}

static int svc_mirror_cb(const struct ccvm_mmu_entry *e, void *ctx)
{
	(void)e;
	(void)ctx;
	svc.nr_mirror++;
	return 0;
}

static int svc_file_cb(uint64_t index, uint64_t pfn, void *ctx)
{
	(void)index;
	(void)pfn;
	(void)ctx;
	svc.nr_file_pages++;
	return 0;
}

static int svc_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r)
{
	struct ccvm_platform *p = ccvm_vm_platform(vm);

	svc.limit = ccvm_platform_pfn_limit(p);
	svc.nr_leaves = svc.nr_mirror = svc.nr_file_pages = svc.nr_bad_frames = 0;
	ccvm_vm_for_each_mapping(vm, CCVM_ROOT_ALL, svc_leaf_cb, p);
	ccvm_vm_for_each_mapping(vm, CCVM_ROOT_MIRROR, svc_mirror_cb, NULL);
	ccvm_vm_for_each_gmem_file_pfn(vm, svc_file_cb, NULL);
	svc.bad_roots = ccvm_vm_for_each_mapping(vm, 0, svc_leaf_cb, p);
	svc.bad_fn = ccvm_vm_for_each_mapping(vm, CCVM_ROOT_ALL, NULL, NULL);
	ccvm_invariant_count(r, 1);
	if (svc.fail)
		ccvm_invariant_fail(r, 23, 5, 6, "svc says %d", 1);
	return ccvm_invariant_failed(r) == svc.fail ? 0 : -EPROTO;
}

static struct ccvm_invariant_report svc_check(struct ccvm_vm *vm)
{
	struct ccvm_invariant_report r = { .sz = sizeof(r) };

	ck_assert_int_eq(ccvm_vm_check_invariants(vm, &r), 0);
	return r;
}

START_TEST(test_services)
{
	struct ccvm_backend_ops o = tu_ops("svc");
	struct ccvm_invariant_report r;
	struct ccvm_platform *p;
	struct ccvm_vcpu *v = NULL;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	uint64_t gpa, size, pfn2;

	memset(&svc, 0, sizeof(svc));
	o.update_mem_attr = svc_update_mem_attr;
	o.check_invariants = svc_check_invariants;
	ck_assert_int_eq(ccvm_backend_register(&o), 0);
	p = platform_on("svc");
	vm = tu_vm(p);
	ck_assert_str_eq(ccvm_platform_backend_name(p), "svc");
	ck_assert_str_eq(ccvm_vm_backend_name(vm), "svc");
	g = tu_gmem(vm, 16 * TU_PAGE, 0);
	ck_assert_uint_eq(ccvm_platform_nr_gmem_inodes(p), 1);
	tu_gmem_slot(vm, 0, 0, 16 * TU_PAGE, g, 0);

	/* Nothing allocated yet: the walk visits nothing. */
	tu_set_attr(vm, 0, 16 * TU_PAGE, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	ck_assert(svc.had_gmem);
	ck_assert_uint_eq(svc.nr_walked, 0);

	/* Private pages at gfns 2, 3 and 7, mapped 4K (the slot is below 2M). */
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	gpa = 2 * TU_PAGE;
	size = 2 * TU_PAGE;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	gpa = 7 * TU_PAGE;
	size = TU_PAGE;
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v, &gpa, &size), 0);
	ck_assert_int_eq(ccvm_vm_gfn_to_gmem_pfn(vm, 2, &pfn2), 0);

	/* The private leaf's level as the vCPU sees it, 0 where none (mmu_lock held). */
	ccvm_vm_mmu_write_lock(vm);
	ck_assert_int_eq(ccvm_vcpu_private_level(v, 2), CCVM_LEVEL_4K);
	ck_assert_int_eq(ccvm_vcpu_private_level(v, 7), CCVM_LEVEL_4K);
	ck_assert_int_eq(ccvm_vcpu_private_level(v, 4), 0);
	ck_assert_int_eq(ccvm_vcpu_private_level(v, 1ull << 52), 0);
	ck_assert_int_eq(ccvm_vcpu_private_level(NULL, 2), 0);
	ccvm_vm_mmu_write_unlock(vm);

	r = svc_check(vm);
	ck_assert_msg(r.invariant == 0, "%s", r.msg);
	ck_assert_uint_eq(svc.nr_leaves, 3);
	ck_assert_uint_eq(svc.nr_mirror, 0);
	ck_assert_uint_eq(svc.nr_file_pages, 3);
	ck_assert_uint_eq(svc.nr_bad_frames, 0);
	ck_assert_uint_ge(svc.limit, 1);
	ck_assert_uint_le(svc.limit, ccvm_platform_nr_pages(p));
	ck_assert_int_eq(svc.bad_roots, -EINVAL);
	ck_assert_int_eq(svc.bad_fn, -EINVAL);

	/* The backend's failure reaches the report, with its message. */
	svc.fail = true;
	r = svc_check(vm);
	ck_assert_uint_eq(r.invariant, 23);
	ck_assert_uint_eq(r.gfn, 5);
	ck_assert_uint_eq(r.pfn, 6);
	ck_assert_str_eq(r.msg, "I23: svc says 1");
	svc.fail = false;

	/* Back to shared: gfn 2's callback takes gfn 3 too, then gfn 7. */
	tu_set_attr(vm, 0, 16 * TU_PAGE, 0);
	ck_assert_uint_eq(svc.nr_walked, 2);
	ck_assert_uint_eq(svc.gfn[0], SVC_SKIP_GFN);
	ck_assert_uint_eq(svc.pfn[0], pfn2);
	ck_assert_uint_eq(svc.gfn[1], 7);
	ccvm_vm_mmu_write_lock(vm);
	ck_assert_int_eq(ccvm_vcpu_private_level(v, 2), 0);
	ccvm_vm_mmu_write_unlock(vm);

	/* Bad input, and page state outside the platform. */
	ck_assert_int_eq(ccvm_memslot_for_each_gmem_pfn(vm, NULL, 0, 16, svc_gfn_cb, NULL),
			 -EINVAL);
	ck_assert_int_eq(ccvm_vm_for_each_gmem_file_pfn(vm, NULL, NULL), -EINVAL);
	ck_assert(!ccvm_page_is_allocated(p, 0));
	ck_assert(!ccvm_page_is_allocated(p, ccvm_platform_nr_pages(p)));
	ck_assert(!ccvm_page_is_leaked(p, pfn2));

	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

#define LOOP(tc, fn, table) \
	tcase_add_loop_test(tc, fn, 0, (int)(sizeof(table) / sizeof((table)[0])))

Suite *backend_suite(void)
{
	Suite *s = suite_create("backend");
	TCase *tc;

	tc = tcase_create("register");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_register_valid);
	tcase_add_loop_test(tc, test_register_invalid, 0, NR_DEFECTS);
	tcase_add_test(tc, test_register_null);
	tcase_add_test(tc, test_register_accepts);
	tcase_add_test(tc, test_register_duplicate);
	tcase_add_test(tc, test_register_full);
	tcase_add_test(tc, test_default_ops);
	suite_add_tcase(s, tc);

	tc = tcase_create("inject");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_op_calls_errors);
	LOOP(tc, test_inject_errors, inject_error_cases);
	LOOP(tc, test_inject_pattern, inject_cases);
	tcase_add_test(tc, test_inject_rearm_and_scope);
	suite_add_tcase(s, tc);

	tc = tcase_create("services");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_services);
	suite_add_tcase(s, tc);
	return s;
}
