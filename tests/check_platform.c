/* SPDX-License-Identifier: MIT */
/*
 * The platform: option structs (libbpf size rules), memory, CPU and key-id
 * limits, the cost model, destroy while objects remain, statistics, backend
 * capabilities and names, ccvm_strerror and the version.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

/* ---- creation with defaults ---------------------------------------------- */

START_TEST(test_create_null_opts)
{
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };
	struct ccvm_platform *p = NULL;
	struct ccvm_stats st;
	struct ccvm_vm *vm;

	ck_assert_int_eq(ccvm_platform_create(NULL, &p), 0);
	ck_assert_ptr_nonnull(p);
	/* Defaults: the mock backend, 1 GiB, 2 CPUs. */
	ck_assert_uint_eq(ccvm_platform_nr_cpus(p), 2);
	st = tu_pstats(p);
	ck_assert_uint_le(st.total_pages, TU_GiB / TU_PAGE);
	ck_assert_uint_ge(st.total_pages, TU_GiB / TU_PAGE - 1);
	ck_assert_uint_eq(st.free_pages, st.total_pages);
	ck_assert_uint_eq(st.leaked_pages, 0);
	vm = tu_vm(p);
	ck_assert_int_eq(ccvm_vm_caps(vm, &caps), 0);
	ck_assert_str_eq(caps.name, "mock");
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

START_TEST(test_create_null_out)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts);

	ck_assert_int_eq(ccvm_platform_create(&o, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_platform_create(NULL, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_platform_destroy(NULL), -EINVAL);
}
END_TEST

/* ---- option struct size rules --------------------------------------------- */

/* A caller built against a newer header: one more field after ours. */
struct newer_platform_opts {
	struct ccvm_platform_opts o;
	uint64_t future_field;
};

static const struct {
	size_t sz;		/* 0: sizeof the whole newer struct */
	uint64_t future;	/* the newer field's value */
	int err;
} opts_size_cases[] = {
	{ 1, 0, -EINVAL },			/* smaller than sz itself */
	{ sizeof(size_t) - 1, 0, -EINVAL },
	{ sizeof(size_t), 0, 0 },		/* only sz: all defaults */
	{ sizeof(struct ccvm_platform_opts), 0, 0 },
	{ 0, 0, 0 },				/* newer struct, zero tail */
	{ 0, 1, -EINVAL },			/* newer struct, unknown non-zero */
	{ 0, 1ull << 63, -EINVAL },
};

START_TEST(test_opts_size)
{
	struct newer_platform_opts n;
	struct ccvm_platform *p = NULL;
	int r;

	memset(&n, 0, sizeof(n));
	n.o.sz = opts_size_cases[_i].sz ? opts_size_cases[_i].sz : sizeof(n);
	n.future_field = opts_size_cases[_i].future;
	/*
	 * Fields beyond the caller's sz must read as zero: plant invalid
	 * values there, which only a struct that covers them would pass.
	 */
	if (n.o.sz <= offsetof(struct ccvm_platform_opts, nr_cpus))
		n.o.nr_cpus = 1u << 30;
	r = ccvm_platform_create(&n.o, &p);
	ck_assert_int_eq(r, opts_size_cases[_i].err);
	if (!r) {
		ck_assert_uint_eq(ccvm_platform_nr_cpus(p), 2);
		ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	}
}
END_TEST

/* Fields past a short sz are ignored even when they hold garbage. */
START_TEST(test_opts_short_ignores_tail)
{
	struct ccvm_platform_opts o;
	struct ccvm_platform *p = NULL;

	memset(&o, 0xa5, sizeof(o));
	o.sz = offsetof(struct ccvm_platform_opts, mem_bytes) + sizeof(o.mem_bytes);
	o.backend = "mock";
	o.mem_bytes = 64 * TU_MiB;
	ck_assert_int_eq(ccvm_platform_create(&o, &p), 0);
	ck_assert_uint_eq(tu_pstats(p).total_pages + 1, 64 * TU_MiB / TU_PAGE);
	ck_assert_uint_eq(ccvm_platform_nr_cpus(p), 2);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

/* ---- backend name ---------------------------------------------------------- */

static const char *const unknown_backends[] = { "nope", "", "MOCK", "mock ", "tdx2" };

START_TEST(test_unknown_backend)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = unknown_backends[_i]);
	struct ccvm_platform *p = NULL;

	ck_assert_int_eq(ccvm_platform_create(&o, &p), -ENOENT);
	ck_assert_ptr_null(p);
}
END_TEST

/* ---- memory, CPUs, key ids -------------------------------------------------- */

static const struct {
	uint64_t mem_bytes;
	int err;
} mem_cases[] = {
	{ 0, 0 },				/* default */
	{ 1 * TU_MiB, 0 },
	{ 64 * TU_MiB + TU_PAGE, 0 },
	{ 1, -EINVAL },
	{ 4095, -EINVAL },
	{ 4097, -EINVAL },
	{ TU_GiB + 2048, -EINVAL },
	{ TU_PAGE, -EINVAL },			/* tiny: one page */
	{ 1ull << 45, -EINVAL },		/* huge */
	{ 1ull << 63, -EINVAL },
	{ UINT64_MAX & ~(TU_PAGE - 1), -EINVAL },
};

START_TEST(test_mem_bytes)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .mem_bytes = mem_cases[_i].mem_bytes);
	struct ccvm_platform *p = NULL;
	uint64_t want = mem_cases[_i].mem_bytes ? mem_cases[_i].mem_bytes : TU_GiB;
	struct ccvm_stats st;
	int r;

	r = ccvm_platform_create(&o, &p);
	ck_assert_msg(r == mem_cases[_i].err, "mem_bytes %#" PRIx64 ": %d",
		      mem_cases[_i].mem_bytes, r);
	if (r)
		return;
	st = tu_pstats(p);
	ck_assert_uint_le(st.total_pages, want / TU_PAGE);
	ck_assert_uint_ge(st.total_pages, want / TU_PAGE - 1);
	ck_assert_uint_eq(st.free_pages, st.total_pages);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

static const struct {
	uint32_t nr_cpus, nr_keyids;
	int err;
} limit_cases[] = {
	{ 0, 0, 0 },
	{ 1, 0, 0 },
	{ 1024, 0, 0 },
	{ 1025, 0, -EINVAL },
	{ UINT32_MAX, 0, -EINVAL },
	{ 0, 1, 0 },
	{ 0, 65535, 0 },
	{ 0, 65536, -EINVAL },
	{ 0, UINT32_MAX, -EINVAL },
};

START_TEST(test_cpu_keyid_limits)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .nr_cpus = limit_cases[_i].nr_cpus,
						     .nr_keyids = limit_cases[_i].nr_keyids);
	struct ccvm_platform *p = NULL;
	int r;

	r = ccvm_platform_create(&o, &p);
	ck_assert_int_eq(r, limit_cases[_i].err);
	if (r)
		return;
	ck_assert_uint_eq(ccvm_platform_nr_cpus(p),
			  limit_cases[_i].nr_cpus ? limit_cases[_i].nr_cpus : 2);
	if (limit_cases[_i].nr_keyids)
		ck_assert_uint_eq(ccvm_platform_nr_keyids(p), limit_cases[_i].nr_keyids);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

/* ---- cost model --------------------------------------------------------------- */

/* Simulated ns that allocating one gmem page costs on a platform with @costs. */
static uint64_t one_page_alloc_ns(const struct ccvm_cost_model *costs)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .mem_bytes = 16 * TU_MiB, .costs = costs);
	struct ccvm_platform *p = NULL;
	struct ccvm_stats before, after;
	struct ccvm_gmem *g;
	struct ccvm_vm *vm;

	ck_assert_int_eq(ccvm_platform_create(&o, &p), 0);
	vm = tu_vm(p);
	g = tu_gmem(vm, TU_2M, 0);
	before = tu_pstats(p);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, CCVM_FALLOC_KEEP_SIZE, 0, TU_PAGE), 0);
	after = tu_pstats(p);
	ck_assert_uint_eq(after.events[CCVM_EV_PAGE_ALLOC] - before.events[CCVM_EV_PAGE_ALLOC], 1);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	return after.sim_ns - before.sim_ns;
}

START_TEST(test_cost_model_override)
{
	struct ccvm_cost_model def = { .sz = sizeof(def) };
	struct ccvm_cost_model cm;
	uint64_t base, custom;

	ck_assert_int_eq(ccvm_cost_model_default(&def), 0);
	ck_assert_uint_gt(def.ns[CCVM_EV_PAGE_ALLOC], 0);
	memset(&cm, 0, sizeof(cm));
	cm.sz = sizeof(cm);
	cm.ns[CCVM_EV_PAGE_ALLOC] = 777777;	/* every other entry: the default */

	base = one_page_alloc_ns(NULL);
	custom = one_page_alloc_ns(&cm);
	ck_assert_uint_eq(custom - base, 777777 - def.ns[CCVM_EV_PAGE_ALLOC]);
	/* A model that overrides nothing is the default model. */
	cm.ns[CCVM_EV_PAGE_ALLOC] = 0;
	ck_assert_uint_eq(one_page_alloc_ns(&cm), base);
}
END_TEST

struct newer_cost_model {
	struct ccvm_cost_model cm;
	uint64_t future_field;
};

START_TEST(test_cost_model_sz)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts);
	struct newer_cost_model n;
	struct ccvm_platform *p = NULL;
	struct ccvm_cost_model d;

	memset(&n, 0, sizeof(n));
	o.costs = &n.cm;
	n.cm.sz = 4;
	ck_assert_int_eq(ccvm_platform_create(&o, &p), -EINVAL);
	n.cm.sz = sizeof(n);
	n.future_field = 42;
	ck_assert_int_eq(ccvm_platform_create(&o, &p), -EINVAL);
	ck_assert_ptr_null(p);
	n.future_field = 0;
	ck_assert_int_eq(ccvm_platform_create(&o, &p), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);

	ck_assert_int_eq(ccvm_cost_model_default(NULL), -EINVAL);
	memset(&d, 0xa5, sizeof(d));
	d.sz = 2;
	ck_assert_int_eq(ccvm_cost_model_default(&d), -EINVAL);
	/* A short struct gets only what its sz covers. */
	d.sz = offsetof(struct ccvm_cost_model, ns) + sizeof(d.ns[0]);
	ck_assert_int_eq(ccvm_cost_model_default(&d), 0);
	ck_assert_uint_eq(d.ns[1], 0xa5a5a5a5a5a5a5a5ull);
}
END_TEST

/* ---- destroy while objects remain ------------------------------------------- */


START_TEST(test_destroy_busy_vm)
{
	struct ccvm_platform *p = tu_platform(NULL);
	struct ccvm_vm *vm = tu_vm(p), *vm2 = tu_vm(p);
	struct ccvm_stats before, after;
	struct ccvm_gmem *g;

	before = tu_pstats(p);
	ck_assert_int_eq(ccvm_platform_destroy(p), -EBUSY);
	after = tu_pstats(p);
	tu_stats_assert_same("platform after -EBUSY", &before, &after);
	/* Nothing was torn down: the VMs still work. */
	g = tu_gmem(vm, TU_2M, 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), -EBUSY);
	ck_assert_int_eq(ccvm_vm_close(vm2), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

START_TEST(test_destroy_busy_gmem)
{
	struct ccvm_platform *p = tu_platform(NULL);
	struct ccvm_vm *vm = tu_vm(p);
	struct ccvm_gmem *g = tu_gmem(vm, TU_2M, 0);
	uint64_t free0 = tu_free_pages(p);

	/* The file keeps the VM alive after the VMM closed it. */
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), -EBUSY);
	ck_assert_int_eq(ccvm_gmem_fallocate(g, CCVM_FALLOC_KEEP_SIZE, 0, 4 * TU_PAGE), 0);
	ck_assert_uint_eq(tu_free_pages(p), free0 - 4);
	ck_assert_int_eq(ccvm_platform_destroy(p), -EBUSY);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_uint_eq(tu_free_pages(p), free0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

/* ---- statistics size handling ---------------------------------------------- */

struct newer_stats {
	struct ccvm_stats st;
	uint64_t future_field;
};

#define POISON	0xa5a5a5a5a5a5a5a5ull

START_TEST(test_stats_sz)
{
	struct ccvm_platform *p = tu_platform(NULL);
	struct ccvm_vm *vm = tu_vm(p);
	struct ccvm_gmem *g = tu_gmem(vm, TU_2M, 0);
	struct newer_stats n;
	struct ccvm_stats st;

	ck_assert_int_eq(ccvm_gmem_fallocate(g, CCVM_FALLOC_KEEP_SIZE, 0, TU_PAGE), 0);
	ck_assert_int_eq(ccvm_platform_get_stats(NULL, &st), -EINVAL);
	ck_assert_int_eq(ccvm_platform_get_stats(p, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_stats(NULL, &st), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_stats(vm, NULL), -EINVAL);

	/* Too small to hold even the counts: refused, untouched. */
	memset(&st, 0xa5, sizeof(st));
	st.sz = offsetof(struct ccvm_stats, events) - 1;
	ck_assert_int_eq(ccvm_platform_get_stats(p, &st), -EINVAL);
	ck_assert_int_eq(ccvm_vm_get_stats(vm, &st), -EINVAL);
	ck_assert_uint_eq(st.nr_events, 0xa5a5a5a5u);

	/* A short struct is filled up to its sz, not one byte further. */
	memset(&st, 0xa5, sizeof(st));
	st.sz = offsetof(struct ccvm_stats, op_calls);
	ck_assert_int_eq(ccvm_platform_get_stats(p, &st), 0);
	ck_assert_uint_eq(st.sz, offsetof(struct ccvm_stats, op_calls));
	ck_assert_uint_eq(st.nr_events, CCVM_EV_NR);
	ck_assert_uint_eq(st.events[CCVM_EV_PAGE_ALLOC], 1);
	ck_assert_uint_eq(st.op_calls[0], POISON);
	ck_assert_uint_eq(st.free_pages, POISON);

	memset(&st, 0xa5, sizeof(st));
	st.sz = offsetof(struct ccvm_stats, op_calls);
	ck_assert_int_eq(ccvm_vm_get_stats(vm, &st), 0);
	ck_assert_uint_eq(st.op_calls[0], POISON);

	/* Whole struct: everything, consistent counts. */
	st = tu_pstats(p);
	ck_assert_uint_eq(st.sz, sizeof(st));
	ck_assert_uint_eq(st.nr_events, CCVM_EV_NR);
	ck_assert_uint_gt(st.nr_ops, 0);
	ck_assert_uint_le(st.nr_ops, CCVM_STATS_MAX_OPS);
	ck_assert_ptr_nonnull(ccvm_backend_op_name(st.nr_ops - 1));
	ck_assert_ptr_null(ccvm_backend_op_name(st.nr_ops));
	ck_assert_uint_ge(st.op_calls[CCVM_OPI_platform_init], 1);
	ck_assert_uint_eq(st.free_pages, st.total_pages - 1);

	/* A newer caller's bigger struct: ours is filled, sz says how much. */
	memset(&n, 0xa5, sizeof(n));
	n.st.sz = sizeof(n);
	ck_assert_int_eq(ccvm_platform_get_stats(p, &n.st), 0);
	ck_assert_uint_eq(n.st.sz, sizeof(struct ccvm_stats));
	ck_assert_uint_eq(n.future_field, POISON);
	ck_assert_uint_eq(n.st.free_pages, st.free_pages);
	memset(&n, 0xa5, sizeof(n));
	n.st.sz = sizeof(n);
	ck_assert_int_eq(ccvm_vm_get_stats(vm, &n.st), 0);
	ck_assert_uint_eq(n.st.sz, sizeof(struct ccvm_stats));
	ck_assert_uint_eq(n.future_field, POISON);
	ck_assert_uint_eq(n.st.free_pages, 0);		/* platform only */

	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

START_TEST(test_event_and_op_names)
{
	struct ccvm_platform *p = tu_platform(NULL);
	struct ccvm_stats st = tu_pstats(p);
	unsigned int i, j;

	for (i = 0; i < CCVM_EV_NR; i++) {
		ck_assert_msg(ccvm_event_name(i) && ccvm_event_name(i)[0], "event %u", i);
		for (j = 0; j < i; j++)
			ck_assert_str_ne(ccvm_event_name(i), ccvm_event_name(j));
	}
	ck_assert_ptr_null(ccvm_event_name(CCVM_EV_NR));
	ck_assert_ptr_null(ccvm_event_name(~0u));
	for (i = 0; i < st.nr_ops; i++) {
		const char *name = ccvm_backend_op_name(i);

		ck_assert_msg(name && name[0], "op %u", i);
		/* The names are the ones the counters answer to. */
		ck_assert_int_eq(ccvm_op_calls(p, name), (int64_t)st.op_calls[i]);
	}
	ck_assert_ptr_null(ccvm_backend_op_name(~0u));
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

/* ---- backend capabilities and names ----------------------------------------- */

static const struct {
	const char *name;
	uint32_t vm_type;
	uint64_t gmem_flags;
} builtin_backends[] = {
	{ "mock", 1, CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED | CCVM_GMEM_FLAG_HUGETLB },
	{ "tdx", 5, CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED | CCVM_GMEM_FLAG_HUGETLB },
	{ "snp", 4, CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED | CCVM_GMEM_FLAG_HUGETLB },
};

START_TEST(test_backend_caps_builtin)
{
	const char *name = builtin_backends[_i].name;
	struct ccvm_backend_caps caps, vcaps = { .sz = sizeof(vcaps) };
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .backend = name, .mem_bytes = 256 * TU_MiB);
	struct ccvm_platform *p = NULL;
	struct ccvm_vm *vm;

	memset(&caps, 0xa5, sizeof(caps));
	caps.sz = sizeof(caps);
	ck_assert_int_eq(ccvm_backend_caps(name, &caps), 0);
	ck_assert_uint_eq(caps.sz, sizeof(caps));
	ck_assert_str_eq(caps.name, name);
	ck_assert_uint_eq(caps.vm_type, builtin_backends[_i].vm_type);
	ck_assert_uint_eq(caps.memory_attributes, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	ck_assert_uint_eq(caps.gmem_flags, builtin_backends[_i].gmem_flags);
	ck_assert_uint_ge(caps.private_max_level, CCVM_LEVEL_4K);
	ck_assert_uint_le(caps.private_max_level, CCVM_LEVEL_1G);
	ck_assert_uint_ge(caps.shared_max_level, CCVM_LEVEL_4K);
	ck_assert_uint_le(caps.shared_max_level, CCVM_LEVEL_1G);

	/* A platform and a VM on it report the same backend. */
	ck_assert_int_eq(ccvm_platform_create(&o, &p), 0);
	vm = tu_vm(p);
	ck_assert_int_eq(ccvm_vm_caps(vm, &vcaps), 0);
	ck_assert_str_eq(vcaps.name, name);
	ck_assert_uint_eq(vcaps.vm_type, caps.vm_type);
	/* The default scheme (per VM): no INIT_SHARED for a VM with private memory. */
	ck_assert_uint_eq(vcaps.gmem_flags, caps.gmem_flags & ~CCVM_GMEM_FLAG_INIT_SHARED);
	ck_assert_uint_eq(vcaps.attr_scheme, CCVM_ATTR_SCHEME_VM);
	ck_assert_uint_eq(vcaps.memory_attributes, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	ck_assert_uint_eq(vcaps.gmem_memory_attributes, 0);
	ck_assert_uint_eq(vcaps.gmem_attributes_flags, 0);
	ck_assert_uint_eq(!!ccvm_vm_shared_bit(vm), caps.has_shared_bit);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	/* In place: PRIVATE moves from the VM's cap to the gmem's. */
	vm = tu_vm_scheme(p, CCVM_ATTR_SCHEME_GMEM);
	ck_assert_int_eq(ccvm_vm_caps(vm, &vcaps), 0);
	ck_assert_uint_eq(vcaps.gmem_flags, caps.gmem_flags);
	ck_assert_uint_eq(vcaps.attr_scheme, CCVM_ATTR_SCHEME_GMEM);
	ck_assert_uint_eq(vcaps.memory_attributes, 0);
	ck_assert_uint_eq(vcaps.gmem_memory_attributes, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	ck_assert_uint_eq(vcaps.gmem_attributes_flags,
			  CCVM_MEMORY_ATTRIBUTES2_ZERO | CCVM_MEMORY_ATTRIBUTES2_PRESERVE);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	/* The platform option sets the default; a VM may override it. */
	o.attr_scheme = CCVM_ATTR_SCHEME_GMEM;
	ck_assert_int_eq(ccvm_platform_create(&o, &p), 0);
	vm = tu_vm(p);
	ck_assert_int_eq(ccvm_vm_caps(vm, &vcaps), 0);
	ck_assert_uint_eq(vcaps.attr_scheme, CCVM_ATTR_SCHEME_GMEM);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	vm = tu_vm_scheme(p, CCVM_ATTR_SCHEME_VM);
	ck_assert_int_eq(ccvm_vm_caps(vm, &vcaps), 0);
	ck_assert_uint_eq(vcaps.attr_scheme, CCVM_ATTR_SCHEME_VM);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	/* Unknown schemes. */
	o.attr_scheme = CCVM_ATTR_SCHEME_GMEM + 1;
	p = NULL;
	ck_assert_int_eq(ccvm_platform_create(&o, &p), -EINVAL);
	ck_assert_ptr_null(p);
}
END_TEST

/* A guest writes a word at 4 KiB steps across two 2M pages and reads it back. */
static void thp_guest(struct ccvm_guest *g, void *arg)
{
	uint64_t gpa, v;

	(void)arg;
	for (gpa = 0; gpa < 2 * TU_2M; gpa += TU_PAGE)
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, gpa, &gpa, sizeof(gpa)) == 0);
	for (gpa = 0; gpa < 2 * TU_2M; gpa += TU_PAGE) {
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, gpa, &v, sizeof(v)) == 0);
		CCVM_GUEST_ASSERT(g, v == gpa);
	}
	ccvm_guest_sync(g, 1);
}

/* A guest that writes one private page and stops. */
static void one_write_guest(struct ccvm_guest *g, void *arg)
{
	uint64_t v = 1;

	(void)arg;
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, 0, &v, sizeof(v)) == 0);
	ccvm_guest_sync(g, 1);
}

static unsigned int counter_blocks(struct ccvm_platform *p)
{
	const struct ccvm_counter_block *b = atomic_load(&p->stats.blocks);
	unsigned int n = 0;

	for (; b; b = b->next)
		n++;
	return n;
}

/*
 * A platform that outlives many VMs, each with a vCPU thread of its own
 * that counts on the platform: the per-thread counter blocks of threads
 * that exited (or that a thread dropped from its cache) are taken again,
 * so the platform holds a few, not one per thread it ever saw, and the
 * counts they hold are still summed.
 */
START_TEST(test_counter_blocks_recycled)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .mem_bytes = 16 * TU_MiB);
	struct ccvm_stats st = { .sz = sizeof(st) };
	struct ccvm_platform *p = NULL;
	uint64_t faults = 0;
	unsigned int i;

	ck_assert_int_eq(ccvm_platform_create(&o, &p), 0);
	for (i = 0; i < 40; i++) {
		struct ccvm_vm *vm = tu_vm(p);
		struct ccvm_gmem *g = tu_gmem(vm, TU_PAGE, 0);
		struct ccvm_vcpu *v;

		tu_gmem_slot(vm, 0, 0, TU_PAGE, g, 0);
		tu_set_attr(vm, 0, TU_PAGE, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
		ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
		ck_assert_int_eq(ccvm_vcpu_set_guest(v, one_write_guest, NULL), 0);
		tu_expect_sync(v, 1);
		ck_assert_int_eq(ccvm_vcpu_close(v), 0);
		ck_assert_int_eq(ccvm_gmem_close(g), 0);
		ck_assert_int_eq(ccvm_vm_close(vm), 0);
	}
	/* 40 vCPU threads and 40 VMs through the main thread's cache of 8. */
	ck_assert_uint_le(counter_blocks(p), 4);
	ck_assert_int_eq(ccvm_platform_get_stats(p, &st), 0);
	faults = st.events[CCVM_EV_FAULT];
	ck_assert_uint_ge(faults, 40);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

/*
 * On @p: one VM with 4 MiB of private gmem at gpa 0, one vCPU running @guest
 * until its sync exit 1; then everything closed and @p destroyed.
 */
static void run_private_guest(struct ccvm_platform *p, ccvm_guest_fn guest)
{
	struct ccvm_vm *vm = tu_vm(p);
	struct ccvm_gmem *g = tu_gmem(vm, 2 * TU_2M, 0);
	struct ccvm_vcpu *v;

	tu_gmem_slot(vm, 0, 0, 2 * TU_2M, g, 0);
	tu_set_attr(vm, 0, 2 * TU_2M, CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	ck_assert_int_eq(ccvm_vcpu_create(vm, 0, &v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest, NULL), 0);
	tu_expect_sync(v, 1);
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}

/* CCVM_PLATFORM_RAM_THP changes where RAM comes from, not what it holds. */
START_TEST(test_ram_thp_flag)
{
	struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						     .mem_bytes = 64 * TU_MiB,
						     .flags = CCVM_PLATFORM_RAM_THP);
	struct ccvm_platform *p = NULL;

	ck_assert_int_eq(ccvm_platform_create(&o, &p), 0);
	run_private_guest(p, thp_guest);

	/* Unknown bits: refused, nothing created, the rule named. */
	o.flags = CCVM_PLATFORM_RAM_THP << 1;
	p = NULL;
	ck_assert_int_eq(ccvm_platform_create(&o, &p), -EINVAL);
	ck_assert_ptr_null(p);
	ck_assert_ptr_nonnull(strstr(ccvm_last_error(), "opts.flags"));
}
END_TEST

/* Fresh RAM reads zero: the first read of every page, then its own writes. */
static void zero_guest(struct ccvm_guest *g, void *arg)
{
	uint64_t gpa, v;

	(void)arg;
	for (gpa = 0; gpa < 2 * TU_2M; gpa += TU_PAGE) {
		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, gpa, &v, sizeof(v)) == 0);
		CCVM_GUEST_ASSERT(g, v == 0);
	}
	thp_guest(g, arg);
}

/* How many of the @bytes at @addr (page aligned) the host has resident. */
static size_t resident_pages(void *addr, size_t bytes)
{
	size_t i, n = bytes / TU_PAGE, in = 0;
	unsigned char *vec = malloc(n);

	ck_assert_ptr_nonnull(vec);
	ck_assert_int_eq(mincore(addr, bytes, vec), 0);
	for (i = 0; i < n; i++)
		in += vec[i] & 1;
	free(vec);
	return in;
}

/*
 * CCVM_PLATFORM_RAM_POPULATE: all of RAM is resident once the platform
 * exists, with or without THP, and still reads as fresh memory.
 */
START_TEST(test_ram_populate_flag)
{
	static const uint64_t kinds[] = { 0, CCVM_PLATFORM_RAM_THP };
	unsigned int k;

	for (k = 0; k < 2; k++) {
		struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
							     .mem_bytes = 64 * TU_MiB,
							     .flags = CCVM_PLATFORM_RAM_POPULATE |
								      kinds[k]);
		struct ccvm_platform *p = NULL;

		ck_assert_int_eq(ccvm_platform_create(&o, &p), 0);
		ck_assert_uint_eq(resident_pages(p->mem, 64 * TU_MiB), 64 * TU_MiB / TU_PAGE);
		run_private_guest(p, zero_guest);
	}
}
END_TEST

START_TEST(test_backend_caps_errors)
{
	struct ccvm_backend_caps caps;

	memset(&caps, 0xa5, sizeof(caps));
	caps.sz = sizeof(caps);
	ck_assert_int_eq(ccvm_backend_caps("nope", &caps), -ENOENT);
	ck_assert_uint_eq(caps.vm_type, 0xa5a5a5a5u);
	ck_assert_int_eq(ccvm_backend_caps("mock", NULL), -EINVAL);
	caps.sz = 0;
	ck_assert_int_eq(ccvm_backend_caps("mock", &caps), -EINVAL);
	ck_assert_uint_eq(caps.vm_type, 0xa5a5a5a5u);

	/* NULL names the default backend. */
	caps.sz = sizeof(caps);
	ck_assert_int_eq(ccvm_backend_caps(NULL, &caps), 0);
	ck_assert_str_eq(caps.name, "mock");

	/* A short struct is filled up to its sz only. */
	memset(&caps, 0xa5, sizeof(caps));
	caps.sz = offsetof(struct ccvm_backend_caps, vm_type) + sizeof(caps.vm_type);
	ck_assert_int_eq(ccvm_backend_caps("mock", &caps), 0);
	ck_assert_uint_eq(caps.sz, offsetof(struct ccvm_backend_caps, vm_type) +
			  sizeof(caps.vm_type));
	ck_assert_str_eq(caps.name, "mock");
	ck_assert_uint_eq(caps.vm_type, 1);
	ck_assert_uint_eq(caps.memory_attributes, POISON);
}
END_TEST

START_TEST(test_backend_names)
{
	const char *const *names = ccvm_backend_names();
	unsigned int i, j, found = 0;

	ck_assert_ptr_nonnull(names);
	for (i = 0; names[i]; i++) {
		struct ccvm_backend_caps caps = { .sz = sizeof(caps) };

		ck_assert_uint_lt(i, 64);
		for (j = 0; j < i; j++)
			ck_assert_str_ne(names[i], names[j]);
		ck_assert_int_eq(ccvm_backend_caps(names[i], &caps), 0);
		ck_assert_str_eq(caps.name, names[i]);
		for (j = 0; j < sizeof(builtin_backends) / sizeof(builtin_backends[0]); j++)
			if (!strcmp(names[i], builtin_backends[j].name))
				found++;
	}
	ck_assert_uint_eq(found, sizeof(builtin_backends) / sizeof(builtin_backends[0]));
	ck_assert_str_eq(names[0], "mock");
}
END_TEST

/* ---- errors, log, version ------------------------------------------------------ */

static const int lib_errnos[] = {
	EINVAL, EEXIST, EFAULT, EIO, EBUSY, ENOMEM, ENOSPC, ENOENT, ENODEV,
	EOPNOTSUPP, EACCES, EAGAIN, EINTR, EBADF, EHWPOISON,
};

#define NR_LIB_ERRNOS	(sizeof(lib_errnos) / sizeof(lib_errnos[0]))

START_TEST(test_strerror)
{
	char text[NR_LIB_ERRNOS][128];
	const char *s;
	unsigned int i, j;

	for (i = 0; i < NR_LIB_ERRNOS; i++) {
		s = ccvm_strerror(-lib_errnos[i]);
		ck_assert_msg(s && s[0], "no text for -%d", lib_errnos[i]);
		/* Copy: an unnamed errno may come from a per-thread buffer. */
		snprintf(text[i], sizeof(text[i]), "%s", s);
		for (j = 0; j < i; j++)
			ck_assert_msg(strcmp(text[i], text[j]),
				      "-%d and -%d share the text \"%s\"", lib_errnos[i],
				      lib_errnos[j], text[i]);
	}
	s = ccvm_strerror(0);
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_nonnull(ccvm_strerror(-4095));
	ck_assert_ptr_nonnull(ccvm_strerror(5));
	ck_assert_ptr_nonnull(ccvm_strerror(INT32_MIN));
	ck_assert_str_ne(ccvm_strerror(5), ccvm_strerror(-EIO));
}
END_TEST

struct log_capture {
	unsigned int n;
	enum ccvm_log_level level;
	char msg[128];
};

static void capture_log(enum ccvm_log_level level, const char *msg, void *ctx)
{
	struct log_capture *c = ctx;

	c->n++;
	c->level = level;
	snprintf(c->msg, sizeof(c->msg), "%s", msg);
}

START_TEST(test_log_sink)
{
	struct log_capture c = { 0 };
	ccvm_log_fn prev;

	prev = ccvm_set_log(capture_log, &c);
	ck_assert_ptr_nonnull((void *)prev);
	ccvm_log(CCVM_LOG_WARN, "answer %d", 42);
	ck_assert_uint_eq(c.n, 1);
	ck_assert_int_eq(c.level, CCVM_LOG_WARN);
	ck_assert_str_eq(c.msg, "answer 42");
	ck_assert_ptr_eq((void *)ccvm_set_log(NULL, NULL), (void *)capture_log);
	/* Back to the default sink: ours is not called any more. */
	ccvm_log(CCVM_LOG_DEBUG, "not captured");
	ck_assert_uint_eq(c.n, 1);
	ck_assert_ptr_eq((void *)ccvm_set_log(NULL, NULL), (void *)prev);
}
END_TEST

/*
 * A trace that could not be written reports it at close: /dev/full takes
 * the open and fails every write with ENOSPC.  A trace to a real file
 * closes with 0 and holds the records.
 */
static void trace_some_records(struct ccvm_platform *p)
{
	struct ccvm_vm *vm = tu_vm(p);
	struct ccvm_gmem *gm;
	uint8_t *shared = tu_private_slot0(vm, 64 * TU_PAGE, &gm);

	for (int i = 0; i < 64; i++)
		tu_set_attr(vm, (uint64_t)i * TU_PAGE, TU_PAGE, i & 1 ? 0 :
			    CCVM_MEMORY_ATTRIBUTE_PRIVATE);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_gmem_close(gm), 0);
	munmap(shared, 64 * TU_PAGE);
}

START_TEST(test_trace_write_error)
{
	struct ccvm_platform *p = tu_platform("mock");

	if (access("/dev/full", W_OK) != 0)
		return;		/* no /dev/full here: nothing to test */
	ck_assert_int_eq(ccvm_trace_open(p, "/dev/full"), 0);
	trace_some_records(p);
	ck_assert_int_eq(ccvm_trace_close(p), -ENOSPC);
	/* Nothing open any more: closing again is a no-op. */
	ck_assert_int_eq(ccvm_trace_close(p), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

START_TEST(test_trace_write_ok)
{
	struct ccvm_platform *p = tu_platform("mock");
	char path[] = "/tmp/ccvm-trace-XXXXXX";
	int fd = mkstemp(path);
	char buf[64];
	FILE *f;

	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(ccvm_trace_open(p, path), 0);
	trace_some_records(p);
	ck_assert_int_eq(ccvm_trace_close(p), 0);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
	ck_assert_int_eq(strncmp(buf, "{\"traceEvents\":[", 16), 0);
	fclose(f);
	unlink(path);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

START_TEST(test_version)
{
	char want[32];

	ck_assert_ptr_nonnull(ccvm_version());
	ck_assert_str_eq(ccvm_version(), CCVM_VERSION_STRING);
	snprintf(want, sizeof(want), "%d.%d.%d", CCVM_VERSION_MAJOR, CCVM_VERSION_MINOR,
		 CCVM_VERSION_PATCH);
	ck_assert_str_eq(ccvm_version(), want);
}
END_TEST

#define LOOP(tc, fn, table) \
	tcase_add_loop_test(tc, fn, 0, (int)(sizeof(table) / sizeof((table)[0])))

Suite *platform_suite(void)
{
	Suite *s = suite_create("platform");
	TCase *tc;

	tc = tcase_create("create");
	tcase_add_test(tc, test_create_null_opts);
	tcase_add_test(tc, test_create_null_out);
	LOOP(tc, test_opts_size, opts_size_cases);
	tcase_add_test(tc, test_opts_short_ignores_tail);
	LOOP(tc, test_unknown_backend, unknown_backends);
	LOOP(tc, test_mem_bytes, mem_cases);
	LOOP(tc, test_cpu_keyid_limits, limit_cases);
	suite_add_tcase(s, tc);

	tc = tcase_create("cost");
	tcase_add_test(tc, test_cost_model_override);
	tcase_add_test(tc, test_cost_model_sz);
	suite_add_tcase(s, tc);

	tc = tcase_create("destroy");
	tcase_add_test(tc, test_destroy_busy_vm);
	tcase_add_test(tc, test_destroy_busy_gmem);
	suite_add_tcase(s, tc);

	tc = tcase_create("stats");
	tcase_add_test(tc, test_stats_sz);
	tcase_add_test(tc, test_event_and_op_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("backends");
	LOOP(tc, test_backend_caps_builtin, builtin_backends);
	tcase_add_test(tc, test_backend_caps_errors);
	tcase_add_test(tc, test_backend_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("misc");
	tcase_add_test(tc, test_strerror);
	tcase_add_test(tc, test_log_sink);
	tcase_add_test(tc, test_trace_write_error);
	tcase_add_test(tc, test_trace_write_ok);
	tcase_add_test(tc, test_version);
	tcase_add_test(tc, test_ram_thp_flag);
	tcase_add_test(tc, test_ram_populate_flag);
	tcase_add_test(tc, test_counter_blocks_recycled);
	suite_add_tcase(s, tc);
	return s;
}
