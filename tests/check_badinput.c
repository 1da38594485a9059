/* SPDX-License-Identifier: MIT */
/*
 * Bad input for every public call, on every backend: NULL handles and out
 * pointers, zero sizes, overflowing ranges, misalignment, unknown flags and
 * option bytes, calls in the wrong lifecycle state, calls on closed handles
 * where the library can tell, and guest-side calls with bad arguments or
 * from the wrong thread.  Each must give its errno and change nothing
 * observable (attributes, memslots, gmem pages and bindings, invalidation
 * state, every counter and the free page count: tu_snap_*).  The errno
 * tables of attributes, memslots and gmem are in the conformance suite.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "conformance.h"
#include "snapshot.h"

#define MIB		(1ull << 20)
#define PG		CCVM_PAGE_SIZE
#define PRIV		CCVM_MEMORY_ATTRIBUTE_PRIVATE
#define KEEP		CCVM_FALLOC_KEEP_SIZE

static uint8_t scratch[2 * PG];
static struct ccvm_stats st_small = { .sz = 4 };
static struct ccvm_backend_caps caps_small = { .sz = 4 };
static struct ccvm_gmem_info info_small = { .sz = 4 };
static struct ccvm_invariant_report report;

static void guest_nop(struct ccvm_guest *g, void *arg)
{
	(void)g;
	(void)arg;
}

/* ---- calls on bad handles and arguments, one row each ------------------------ */

struct call {
	const char *what;
	int (*fn)(void);
	int want;
};

#define CALL(name, expr) static int name(void) { return (expr); }

static uint64_t v_gpa, v_size;
static uint64_t *v_attr = &v_gpa;

CALL(c_pdestroy_null, ccvm_platform_destroy(NULL))
CALL(c_pstats_null, ccvm_platform_get_stats(NULL, &(struct ccvm_stats){ .sz = sizeof(struct ccvm_stats) }))
CALL(c_pstats_out_null, ccvm_platform_get_stats(cf.p, NULL))
CALL(c_pstats_small, ccvm_platform_get_stats(cf.p, &st_small))
CALL(c_trace_null, ccvm_platform_set_trace(NULL, NULL, NULL))
CALL(c_trace_open_null, ccvm_trace_open(NULL, "/tmp/x.json"))
CALL(c_trace_open_path_null, ccvm_trace_open(cf.p, NULL))
CALL(c_trace_open_path_empty, ccvm_trace_open(cf.p, ""))
CALL(c_trace_open_no_dir, ccvm_trace_open(cf.p, "/nonexistent-ccvm-dir/t.json"))
CALL(c_trace_close_null, ccvm_trace_close(NULL))
CALL(c_caps_out_null, ccvm_backend_caps(cf.backend, NULL))
CALL(c_caps_small, ccvm_backend_caps(cf.backend, &caps_small))
CALL(c_caps_unknown, ccvm_backend_caps("no-such-backend", &(struct ccvm_backend_caps){ .sz = sizeof(struct ccvm_backend_caps) }))
CALL(c_cost_null, ccvm_cost_model_default(NULL))
CALL(c_cost_small, ccvm_cost_model_default(&(struct ccvm_cost_model){ .sz = 0 }))
CALL(c_register_null, ccvm_backend_register(NULL))
CALL(c_vm_create_null, ccvm_vm_create(NULL, NULL, &(struct ccvm_vm *){ NULL }))
CALL(c_vm_create_out_null, ccvm_vm_create(cf.p, NULL, NULL))
CALL(c_vm_close_null, ccvm_vm_close(NULL))
CALL(c_vm_caps_null, ccvm_vm_caps(NULL, &(struct ccvm_backend_caps){ .sz = sizeof(struct ccvm_backend_caps) }))
CALL(c_vm_caps_out_null, ccvm_vm_caps(cf.vm, NULL))
CALL(c_vm_caps_small, ccvm_vm_caps(cf.vm, &caps_small))
CALL(c_vm_stats_null, ccvm_vm_get_stats(NULL, &(struct ccvm_stats){ .sz = sizeof(struct ccvm_stats) }))
CALL(c_vm_stats_out_null, ccvm_vm_get_stats(cf.vm, NULL))
CALL(c_vm_stats_small, ccvm_vm_get_stats(cf.vm, &st_small))
CALL(c_finalize_null, ccvm_vm_finalize(NULL))
CALL(c_terminate_null, ccvm_vm_terminate(NULL))
CALL(c_populate_null, ccvm_vm_populate(NULL, 0, scratch, PG, 0))
CALL(c_populate_src_null, ccvm_vm_populate(cf.vm, 0, NULL, PG, 0))
CALL(c_populate_size0, ccvm_vm_populate(cf.vm, 0, scratch, 0, 0))
CALL(c_populate_unaligned, ccvm_vm_populate(cf.vm, 8, scratch, PG, 0))
CALL(c_populate_unaligned_size, ccvm_vm_populate(cf.vm, 0, scratch, 8, 0))
CALL(c_populate_wrap, ccvm_vm_populate(cf.vm, ~0ull << 12, scratch, 2 * PG, 0))
CALL(c_populate_past, ccvm_vm_populate(cf.vm, 1ull << 52, scratch, PG, 0))
CALL(c_populate_flags, ccvm_vm_populate(cf.vm, 0, scratch, PG, 1ull << 9))
CALL(c_region_null, ccvm_vm_set_user_memory_region(NULL, &(struct ccvm_memory_region){ .slot = 1 }))
CALL(c_region_r_null, ccvm_vm_set_user_memory_region(cf.vm, NULL))
CALL(c_wrap_null, ccvm_vm_force_generation_wrap(NULL))
CALL(c_attr_null, ccvm_vm_set_memory_attributes(NULL, 0, PG, PRIV, 0))
CALL(c_get_attr_null, ccvm_vm_get_memory_attributes(NULL, 0, v_attr, NULL))
CALL(c_get_attr_out_null, ccvm_vm_get_memory_attributes(cf.vm, 0, NULL, NULL))
CALL(c_get_attr_unaligned, ccvm_vm_get_memory_attributes(cf.vm, 8, v_attr, NULL))
CALL(c_get_attr_run_unaligned, ccvm_vm_get_memory_attributes(cf.vm, 8, v_attr, &v_size))
CALL(c_get_point_null, ccvm_vm_get_memory_attribute(NULL, 0, v_attr))
CALL(c_get_point_out_null, ccvm_vm_get_memory_attribute(cf.vm, 0, NULL))
CALL(c_get_point_unaligned, ccvm_vm_get_memory_attribute(cf.vm, 8, v_attr))
CALL(c_get_point_top_unaligned, ccvm_vm_get_memory_attribute(cf.vm, UINT64_MAX, v_attr))
CALL(c_gmem_create_null, ccvm_gmem_create(NULL, PG, 0, &(struct ccvm_gmem *){ NULL }))
CALL(c_gmem_create_out_null, ccvm_gmem_create(cf.vm, PG, 0, NULL))
CALL(c_falloc_null, ccvm_gmem_fallocate(NULL, KEEP, 0, PG))
CALL(c_gmem_read_null, ccvm_gmem_read(NULL, 0, scratch, 1))
CALL(c_gmem_read_buf_null, ccvm_gmem_read(cf.g, 0, NULL, 1))
CALL(c_gmem_write_null, ccvm_gmem_write(NULL, 0, scratch, 1))
CALL(c_gmem_write_buf_null, ccvm_gmem_write(cf.g, 0, NULL, 1))
CALL(c_gmem_info_null, ccvm_gmem_get_info(NULL, &(struct ccvm_gmem_info){ .sz = sizeof(struct ccvm_gmem_info) }))
CALL(c_gmem_info_out_null, ccvm_gmem_get_info(cf.g, NULL))
CALL(c_gmem_info_small, ccvm_gmem_get_info(cf.g, &info_small))
CALL(c_gmem_close_null, ccvm_gmem_close(NULL))
CALL(c_vcpu_create_null, ccvm_vcpu_create(NULL, 1, &(struct ccvm_vcpu *){ NULL }))
CALL(c_vcpu_create_out_null, ccvm_vcpu_create(cf.vm, 1, NULL))
CALL(c_vcpu_create_id, ccvm_vcpu_create(cf.vm, CF_MAX_VCPUS, &(struct ccvm_vcpu *){ NULL }))
CALL(c_vcpu_create_dup, ccvm_vcpu_create(cf.vm, 0, &(struct ccvm_vcpu *){ NULL }))
CALL(c_vcpu_close_null, ccvm_vcpu_close(NULL))
CALL(c_prefault_null, ccvm_vcpu_pre_fault_memory(NULL, &v_gpa, &v_size))
CALL(c_prefault_gpa_null, ccvm_vcpu_pre_fault_memory(cf.v[0], NULL, &v_size))
CALL(c_prefault_size_null, ccvm_vcpu_pre_fault_memory(cf.v[0], &v_gpa, NULL))
CALL(c_set_guest_null, ccvm_vcpu_set_guest(NULL, guest_nop, NULL))
CALL(c_set_guest_fn_null, ccvm_vcpu_set_guest(cf.v[0], NULL, NULL))
CALL(c_run_null, ccvm_vcpu_run(NULL))
CALL(c_run_no_guest, ccvm_vcpu_run(cf.v[0]))
CALL(c_run_state_null, ccvm_vcpu_run_state(NULL) ? -1 : 0)
CALL(c_shared_bit_null, ccvm_vm_shared_bit(NULL) ? -1 : 0)
CALL(c_generation_null, ccvm_vm_memslot_generation(NULL) ? -1 : 0)
CALL(c_guest_read_null, ccvm_guest_read(NULL, 0, scratch, 1))
CALL(c_guest_write_null, ccvm_guest_write(NULL, 0, scratch, 1))
CALL(c_guest_map_null, ccvm_guest_map_gpa(NULL, 0, PG, true))
CALL(c_guest_accept_null, ccvm_guest_accept(NULL, 0, PG))
CALL(c_guest_id_null, ccvm_guest_vcpu_id(NULL) == UINT32_MAX ? 0 : -1)
CALL(c_guest_sbit_null, ccvm_guest_shared_bit(NULL) ? -1 : 0)
CALL(c_check_null, ccvm_vm_check_invariants(NULL, &report))
CALL(c_check_out_null, ccvm_vm_check_invariants(cf.vm, NULL))
CALL(c_pcheck_null, ccvm_platform_check_invariants(NULL, &report))
CALL(c_inject_null, ccvm_inject_op_failure(NULL, "vm_init", 1, -EIO, 0))
CALL(c_op_calls_null, (int)ccvm_op_calls(NULL, "vm_init"))
CALL(c_host_read_null, ccvm_host_read_phys(NULL, 1, 0, scratch, 1))
CALL(c_host_read_pfn0, ccvm_host_read_phys(cf.p, 0, 0, scratch, 1))
CALL(c_host_read_pfn_past, ccvm_host_read_phys(cf.p, ccvm_platform_nr_pages(cf.p), 0, scratch, 1))
CALL(c_host_read_span, ccvm_host_read_phys(cf.p, 1, PG - 8, scratch, 16))
CALL(c_host_read_buf_null, ccvm_host_read_phys(cf.p, 1, 0, NULL, 1))
CALL(c_host_write_null, ccvm_host_write_phys(NULL, 1, 0, scratch, 1))
CALL(c_host_write_span, ccvm_host_write_phys(cf.p, 1, PG, scratch, 1))
CALL(c_lookup_null, ccvm_vm_lookup_mapping(NULL, 0, NULL, NULL))
CALL(c_lookup_none, ccvm_vm_lookup_mapping(cf.vm, 64 * MIB, NULL, NULL))
CALL(c_names, ccvm_event_name(CCVM_EV_NR) || ccvm_backend_op_name(1000) ||
	      ccvm_invariant_name(0) || !ccvm_strerror(-99999) || !ccvm_strerror(7) ? -1 : 0)

#define ROW(fn, want) { #fn, fn, want }

static const struct call calls[] = {
	ROW(c_pdestroy_null, -EINVAL),
	ROW(c_pstats_null, -EINVAL),
	ROW(c_pstats_out_null, -EINVAL),
	ROW(c_pstats_small, -EINVAL),
	ROW(c_trace_null, -EINVAL),
	ROW(c_trace_open_null, -EINVAL),
	ROW(c_trace_open_path_null, -EINVAL),
	ROW(c_trace_open_path_empty, -EINVAL),
	ROW(c_trace_open_no_dir, -ENOENT),
	ROW(c_trace_close_null, -EINVAL),
	ROW(c_caps_out_null, -EINVAL),
	ROW(c_caps_small, -EINVAL),
	ROW(c_caps_unknown, -ENOENT),
	ROW(c_cost_null, -EINVAL),
	ROW(c_cost_small, -EINVAL),
	ROW(c_register_null, -EINVAL),
	ROW(c_vm_create_null, -EINVAL),
	ROW(c_vm_create_out_null, -EINVAL),
	ROW(c_vm_close_null, -EINVAL),
	ROW(c_vm_caps_null, -EINVAL),
	ROW(c_vm_caps_out_null, -EINVAL),
	ROW(c_vm_caps_small, -EINVAL),
	ROW(c_vm_stats_null, -EINVAL),
	ROW(c_vm_stats_out_null, -EINVAL),
	ROW(c_vm_stats_small, -EINVAL),
	ROW(c_finalize_null, -EINVAL),
	ROW(c_terminate_null, -EINVAL),
	ROW(c_populate_null, -EINVAL),
	ROW(c_populate_src_null, -EINVAL),
	ROW(c_populate_size0, -EINVAL),
	ROW(c_populate_unaligned, -EINVAL),
	ROW(c_populate_unaligned_size, -EINVAL),
	ROW(c_populate_wrap, -EINVAL),
	ROW(c_populate_past, -EINVAL),
	ROW(c_populate_flags, -EINVAL),
	ROW(c_region_null, -EINVAL),
	ROW(c_region_r_null, -EINVAL),
	ROW(c_wrap_null, -EINVAL),
	ROW(c_attr_null, -EINVAL),
	ROW(c_get_attr_null, -EINVAL),
	ROW(c_get_attr_out_null, -EINVAL),
	ROW(c_get_attr_unaligned, -EINVAL),
	ROW(c_get_attr_run_unaligned, -EINVAL),
	ROW(c_get_point_null, -EINVAL),
	ROW(c_get_point_out_null, -EINVAL),
	ROW(c_get_point_unaligned, -EINVAL),
	ROW(c_get_point_top_unaligned, -EINVAL),
	ROW(c_gmem_create_null, -EINVAL),
	ROW(c_gmem_create_out_null, -EINVAL),
	ROW(c_falloc_null, -EINVAL),
	ROW(c_gmem_read_null, -EINVAL),
	ROW(c_gmem_read_buf_null, -EINVAL),
	ROW(c_gmem_write_null, -EINVAL),
	ROW(c_gmem_write_buf_null, -EINVAL),
	ROW(c_gmem_info_null, -EINVAL),
	ROW(c_gmem_info_out_null, -EINVAL),
	ROW(c_gmem_info_small, -EINVAL),
	ROW(c_gmem_close_null, -EINVAL),
	ROW(c_vcpu_create_null, -EINVAL),
	ROW(c_vcpu_create_out_null, -EINVAL),
	ROW(c_vcpu_create_id, -EINVAL),
	ROW(c_vcpu_create_dup, -EEXIST),
	ROW(c_vcpu_close_null, -EINVAL),
	ROW(c_prefault_null, -EINVAL),
	ROW(c_prefault_gpa_null, -EINVAL),
	ROW(c_prefault_size_null, -EINVAL),
	ROW(c_set_guest_null, -EINVAL),
	ROW(c_set_guest_fn_null, -EINVAL),
	ROW(c_run_null, -EINVAL),
	ROW(c_run_no_guest, -EINVAL),
	ROW(c_run_state_null, 0),
	ROW(c_shared_bit_null, 0),
	ROW(c_generation_null, 0),
	ROW(c_guest_read_null, -EINVAL),
	ROW(c_guest_write_null, -EINVAL),
	ROW(c_guest_map_null, -EINVAL),
	ROW(c_guest_accept_null, -EINVAL),
	ROW(c_guest_id_null, 0),
	ROW(c_guest_sbit_null, 0),
	ROW(c_check_null, -EINVAL),
	ROW(c_check_out_null, -EINVAL),
	ROW(c_pcheck_null, -EINVAL),
	ROW(c_inject_null, -EINVAL),
	ROW(c_op_calls_null, -EINVAL),
	ROW(c_host_read_null, -EINVAL),
	ROW(c_host_read_pfn0, -EINVAL),
	ROW(c_host_read_pfn_past, -EINVAL),
	ROW(c_host_read_span, -EINVAL),
	ROW(c_host_read_buf_null, -EINVAL),
	ROW(c_host_write_null, -EINVAL),
	ROW(c_host_write_span, -EINVAL),
	ROW(c_lookup_null, -EINVAL),
	ROW(c_lookup_none, -ENOENT),
	ROW(c_names, 0),
};

/* Every row on one live VM of the backend; nothing observable may change. */
START_TEST(test_bad_calls)
{
	unsigned int r;

	cf_up_in(_i, cf_mode(0), 2 * MIB, true);
	cf_runnable(1);
	report.sz = sizeof(report);
	for (r = 0; r < TU_ARRAY_SIZE(calls); r++) {
		struct tu_snap a, b;
		int got;

		v_gpa = 0;
		v_size = PG;
		tu_snap_take(&a, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
		got = calls[r].fn();
		ck_assert_msg(got == calls[r].want, "%s: %s: %d, want %d", cf.backend,
			      calls[r].what, got, calls[r].want);
		tu_snap_take(&b, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
		tu_snap_assert_same(&a, &b);
	}
	cf_finish();
}
END_TEST

/* ---- option structs ---------------------------------------------------------- */

/* A newer caller's struct: ours plus a trailing field. */
struct platform_opts_v2 {
	struct ccvm_platform_opts o;
	uint64_t extra;
};

struct vm_opts_v2 {
	struct ccvm_vm_opts o;
	uint64_t extra;
};

START_TEST(test_bad_platform_opts)
{
	const char *b = cf_backend(_i);
	struct ccvm_cost_model bad_costs = { .sz = 0 };
	struct ccvm_platform_opts rows[] = {
		CCVM_OPTS_INIT(struct ccvm_platform_opts, .backend = b, .mem_bytes = MIB + 8),
		CCVM_OPTS_INIT(struct ccvm_platform_opts, .backend = b, .mem_bytes = 15 * PG),
		CCVM_OPTS_INIT(struct ccvm_platform_opts, .backend = b, .mem_bytes = 1ull << 45),
		CCVM_OPTS_INIT(struct ccvm_platform_opts, .backend = b, .nr_cpus = 1025),
		CCVM_OPTS_INIT(struct ccvm_platform_opts, .backend = b, .nr_keyids = 65536),
		CCVM_OPTS_INIT(struct ccvm_platform_opts, .backend = b, .costs = &bad_costs),
		{ .sz = 4, .backend = b },
	};
	struct platform_opts_v2 v2;
	struct ccvm_platform *p = (struct ccvm_platform *)&rows;	/* must stay */
	struct ccvm_platform_opts unknown = CCVM_OPTS_INIT(struct ccvm_platform_opts,
							   .backend = "no-such-backend");
	unsigned int r;

	for (r = 0; r < TU_ARRAY_SIZE(rows); r++) {
		ck_assert_msg(ccvm_platform_create(&rows[r], &p) == -EINVAL, "%s: row %u", b, r);
		ck_assert_ptr_eq(p, (struct ccvm_platform *)&rows);
	}
	ck_assert_int_eq(ccvm_platform_create(&unknown, &p), -ENOENT);
	ck_assert_int_eq(ccvm_platform_create(&rows[0], NULL), -EINVAL);
	memset(&v2, 0, sizeof(v2));
	v2.o = CCVM_OPTS_INIT(struct ccvm_platform_opts, .backend = b);
	v2.o.sz = sizeof(v2);
	v2.extra = 1;
	ck_assert_int_eq(ccvm_platform_create(&v2.o, &p), -EINVAL);
	ck_assert_ptr_eq(p, (struct ccvm_platform *)&rows);
	/* Zero trailing bytes of a newer caller are fine. */
	v2.extra = 0;
	ck_assert_int_eq(ccvm_platform_create(&v2.o, &p), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

START_TEST(test_bad_vm_opts)
{
	struct ccvm_vm_opts rows[] = {
		CCVM_OPTS_INIT(struct ccvm_vm_opts, .flags = 1),
		CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = 1025),
		CCVM_OPTS_INIT(struct ccvm_vm_opts, .gpa_bits = 35),
		CCVM_OPTS_INIT(struct ccvm_vm_opts, .gpa_bits = 53),
		{ .sz = 4 },
	};
	struct vm_opts_v2 v2;
	struct ccvm_vm *vm = (struct ccvm_vm *)&rows;
	struct tu_snap a, b;
	unsigned int r;

	cf_up_in(_i, cf_mode(0), 2 * MIB, true);
	tu_snap_take(&a, cf.p, NULL, NULL, NULL, 0, 0);
	for (r = 0; r < TU_ARRAY_SIZE(rows); r++) {
		ck_assert_msg(ccvm_vm_create(cf.p, &rows[r], &vm) == -EINVAL, "%s: row %u",
			      cf.backend, r);
		ck_assert_ptr_eq(vm, (struct ccvm_vm *)&rows);
	}
	memset(&v2, 0, sizeof(v2));
	v2.o = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = 2);
	v2.o.sz = sizeof(v2);
	v2.extra = 0xff;
	ck_assert_int_eq(ccvm_vm_create(cf.p, &v2.o, &vm), -EINVAL);
	tu_snap_take(&b, cf.p, NULL, NULL, NULL, 0, 0);
	tu_snap_assert_same(&a, &b);
	cf_finish();
}
END_TEST

/* ---- lifecycle ---------------------------------------------------------------- */

static void guest_two_syncs(struct ccvm_guest *g, void *arg)
{
	(void)arg;
	ccvm_guest_sync(g, 1);
	ccvm_guest_sync(g, 2);
}

START_TEST(test_lifecycle)
{
	struct ccvm_vcpu *v;
	struct ccvm_gmem *g = NULL;
	struct tu_snap a, b;
	int r;

	cf_up_in(_i, cf_mode(0), 2 * MIB, true);
	v = cf_vcpu();
	/* No guest function: nothing to run. */
	tu_snap_take(&a, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
	ck_assert_int_eq(ccvm_vcpu_run(v), -EINVAL);
	tu_snap_take(&b, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
	tu_snap_assert_same(&a, &b);

	cf_finalize();
	tu_snap_take(&a, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
	ck_assert_int_eq(ccvm_vm_finalize(cf.vm), -EINVAL);
	ck_assert_int_eq(ccvm_vm_populate(cf.vm, 0, scratch, PG, 0),
			 cf.caps.needs_finalize ? -EINVAL : -EOPNOTSUPP);
	tu_snap_take(&b, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
	tu_snap_assert_same(&a, &b);

	/* A guest blocked in an exit cannot be replaced. */
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_two_syncs, NULL), 0);
	cf_expect_sync(v, NULL, 1);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_nop, NULL), -EBUSY);
	cf_expect_sync(v, NULL, 2);
	cf_expect_done(v, NULL);
	/* A guest that is done does not run again, but may be replaced. */
	ck_assert_int_eq(ccvm_vcpu_run(v), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v, guest_two_syncs, NULL), 0);
	cf_expect_sync(v, NULL, 1);
	cf_assert_invariants(cf.vm);

	/* Terminate, where the backend has it: dead for everything but teardown. */
	r = ccvm_vm_terminate(cf.vm);
	ck_assert_msg(r == 0 || r == -EOPNOTSUPP, "%s: terminate %d", cf.backend, r);
	if (!r) {
		ck_assert_int_eq(ccvm_vm_terminate(cf.vm), -EINVAL);
		ck_assert_int_eq(ccvm_vcpu_run(v), -EIO);
		ck_assert_uint_eq(ccvm_vcpu_run_state(v)->exit_reason, CCVM_EXIT_INTERNAL_ERROR);
		ck_assert_int_eq(ccvm_vcpu_create(cf.vm, 5, &(struct ccvm_vcpu *){ NULL }), -EIO);
		ck_assert_int_eq(ccvm_gmem_create(cf.vm, PG, 0, &g), -EIO);
		ck_assert_ptr_null(g);
		cf_assert_invariants(cf.vm);
	}
	cf_finish();
}
END_TEST

/* ---- closed handles ------------------------------------------------------------ */

START_TEST(test_use_after_close)
{
	struct ccvm_vcpu *v1;
	uint64_t gpa = 0, size = PG;
	struct tu_snap a, b;

	cf_up_in(_i, cf_mode(0), 2 * MIB, true);
	cf_runnable(2);
	v1 = cf.v[1];
	ck_assert_int_eq(ccvm_vcpu_close(v1), 0);
	cf.v[1] = NULL;
	/* The vCPU lives on inside the VM until teardown: the handle is known closed. */
	tu_snap_take(&a, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
	ck_assert_int_eq(ccvm_vcpu_close(v1), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_run(v1), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_set_guest(v1, guest_nop, NULL), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_pre_fault_memory(v1, &gpa, &size), -EINVAL);
	ck_assert_uint_eq(gpa, 0);
	ck_assert_uint_eq(size, PG);
	tu_snap_take(&b, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
	tu_snap_assert_same(&a, &b);
	cf_assert_invariants(cf.vm);

	/* The VM handle: the gmem file and vCPU 0 keep the VM alive. */
	ck_assert_int_eq(ccvm_vm_close(cf.vm), 0);
	cf.vm_open = false;
	tu_snap_take(&a, cf.p, NULL, cf.g, NULL, 0, 0);
	ck_assert_int_eq(ccvm_vm_close(cf.vm), -EINVAL);
	ck_assert_int_eq(ccvm_vcpu_create(cf.vm, 3, &(struct ccvm_vcpu *){ NULL }), -EINVAL);
	tu_snap_take(&b, cf.p, NULL, cf.g, NULL, 0, 0);
	tu_snap_assert_same(&a, &b);
	cf_finish();
}
END_TEST

/* ---- gmem host access ---------------------------------------------------------- */

START_TEST(test_gmem_access)
{
	struct ccvm_gmem *mm = NULL, *shared = NULL;
	uint8_t buf[16];
	struct tu_snap a, b;

	struct ccvm_backend_caps vcaps = { .sz = sizeof(vcaps) };
	struct ccvm_vm *ivm;

	cf_up_in(_i, cf_mode(0), 2 * MIB, true);
	ck_assert_int_eq(ccvm_vm_caps(cf.vm, &vcaps), 0);
	tu_snap_take(&a, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
	/* A file without MMAP cannot be touched by the host at all. */
	ck_assert_int_eq(ccvm_gmem_read(cf.g, 0, buf, sizeof(buf)), -ENODEV);
	ck_assert_int_eq(ccvm_gmem_write(cf.g, 0, buf, sizeof(buf)), -ENODEV);
	ck_assert_int_eq(ccvm_gmem_read(cf.g, 0, buf, 0), -ENODEV);
	tu_snap_take(&b, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
	tu_snap_assert_same(&a, &b);

	if (cf.caps.gmem_flags & CCVM_GMEM_FLAG_MMAP) {
		mm = tu_gmem(cf.vm, 4 * PG, CCVM_GMEM_FLAG_MMAP);
		tu_snap_take(&a, cf.p, cf.vm, mm, NULL, 0, 64 * MIB);
		ck_assert_int_eq(ccvm_gmem_read(mm, 0, buf, sizeof(buf)), -EFAULT);
		ck_assert_int_eq(ccvm_gmem_read(mm, 4 * PG - 8, buf, 16), -EFAULT);
		ck_assert_int_eq(ccvm_gmem_read(mm, ~0ull - 4, buf, 16), -EINVAL);
		ck_assert_int_eq(ccvm_gmem_read(mm, 0, buf, 0), 0);
		tu_snap_take(&b, cf.p, cf.vm, mm, NULL, 0, 64 * MIB);
		tu_snap_assert_same(&a, &b);
		ck_assert_int_eq(ccvm_gmem_close(mm), 0);
	}
	/* INIT_SHARED: refused by the VM scheme for a VM with private memory. */
	ck_assert_uint_eq(vcaps.gmem_flags & CCVM_GMEM_FLAG_INIT_SHARED, 0);
	tu_snap_take(&a, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
	ck_assert_int_eq(ccvm_gmem_create(cf.vm, 4 * PG, CCVM_GMEM_FLAG_MMAP |
					  CCVM_GMEM_FLAG_INIT_SHARED, &shared), -EINVAL);
	tu_snap_take(&b, cf.p, cf.vm, cf.g, NULL, 0, 64 * MIB);
	tu_snap_assert_same(&a, &b);
	/* ... and accepted in place, where the file's attributes decide. */
	ivm = tu_vm_scheme(cf.p, CCVM_ATTR_SCHEME_GMEM);
	if ((cf.caps.gmem_flags & (CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED)) ==
	    (CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED)) {
		shared = tu_gmem(ivm, 4 * PG, CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED);
		memset(buf, 0x77, sizeof(buf));
		ck_assert_int_eq(ccvm_gmem_read(shared, PG, buf, sizeof(buf)), 0);
		ck_assert(cf_is_zero(buf, sizeof(buf)));
		ck_assert_int_eq(ccvm_gmem_read(shared, 4 * PG, buf, 1), -EFAULT);
		ck_assert_int_eq(ccvm_gmem_close(shared), 0);
	}
	ck_assert_int_eq(ccvm_vm_close(ivm), 0);
	cf_finish();
}
END_TEST

/* ---- guest-side bad input -------------------------------------------------------- */

#define GB_MAX	24

struct gb {
	struct ccvm_vcpu *self;
	struct ccvm_guest *g;
	int n;
	int got[GB_MAX];
};

static void guest_bad(struct ccvm_guest *g, void *arg)
{
	struct gb *a = arg;
	uint64_t sbit = ccvm_guest_shared_bit(g);
	uint8_t buf[16];
	int n = 0;

	a->g = g;
	a->got[n++] = ccvm_guest_read(g, 0, buf, 0);
	a->got[n++] = ccvm_guest_read(g, 0, NULL, 8);
	a->got[n++] = ccvm_guest_write(g, 0, NULL, 8);
	a->got[n++] = ccvm_guest_read(g, ~0ull - 3, buf, 8);
	a->got[n++] = ccvm_guest_read(g, 1ull << 52, buf, 8);
	a->got[n++] = ccvm_guest_write(g, (1ull << 48) - 4, buf, 8);
	a->got[n++] = ccvm_guest_map_gpa(g, 0, 0, true);
	a->got[n++] = ccvm_guest_map_gpa(g, 8, PG, true);
	a->got[n++] = ccvm_guest_map_gpa(g, 0, PG + 8, false);
	a->got[n++] = ccvm_guest_map_gpa(g, 1ull << 50, PG, true);
	a->got[n++] = ccvm_guest_map_gpa(g, 0, ~0ull << 12, true);
	a->got[n++] = ccvm_guest_accept(g, 8, PG);
	a->got[n++] = ccvm_guest_accept(g, 0, 0);
	a->got[n++] = ccvm_guest_accept(g, 0, PG + 8);
	a->got[n++] = ccvm_guest_accept(g, 1ull << 50, PG);
	a->got[n++] = sbit ? ccvm_guest_accept(g, sbit, PG) : -EINVAL;
	/* The VMM's calls on its own vCPU would wait for themselves. */
	a->got[n++] = ccvm_vcpu_run(a->self);
	a->got[n++] = ccvm_vcpu_close(a->self);
	a->got[n++] = ccvm_vcpu_set_guest(a->self, guest_nop, NULL);
	a->n = n;
}

static const int gb_want[] = {
	0, -EINVAL, -EINVAL, -EINVAL, -EINVAL, -EINVAL,
	-EINVAL, -EINVAL, -EINVAL, -EINVAL, -EINVAL,
	-EINVAL, -EINVAL, -EINVAL, -EINVAL, -EINVAL,
	-EDEADLK, -EDEADLK, -EDEADLK,
};

START_TEST(test_guest_bad_input)
{
	static struct gb a;
	struct ccvm_stats st;
	uint8_t buf[8];
	int k;

	cf_up_in(_i, cf_mode(0), 2 * MIB, true);
	cf_runnable(1);
	memset(&a, 0, sizeof(a));
	a.self = cf.v[0];
	ck_assert_int_eq(ccvm_vcpu_set_guest(cf.v[0], guest_bad, &a), 0);
	cf_expect_done(cf.v[0], NULL);
	ck_assert_int_eq(a.n, (int)TU_ARRAY_SIZE(gb_want));
	for (k = 0; k < a.n; k++)
		ck_assert_msg(a.got[k] == gb_want[k], "%s: guest call %d: %d, want %d",
			      cf.backend, k, a.got[k], gb_want[k]);
	/* None of it reached the VMM: the only exit is the end. */
	st = tu_vstats(cf.vm);
	ck_assert_uint_eq(st.events[CCVM_EV_EXIT], 1);
	ck_assert_uint_eq(st.events[CCVM_EV_FAULT], 0);
	ck_assert_uint_eq(tu_gmem_info(cf.g).nr_pages, 0);
	/* A guest context used from the VMM's thread. */
	ck_assert_int_eq(ccvm_guest_read(a.g, 0, buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(ccvm_guest_write(a.g, 0, buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(ccvm_guest_map_gpa(a.g, 0, PG, false), -EINVAL);
	ck_assert_int_eq(ccvm_guest_accept(a.g, 0, PG), -EINVAL);
	ccvm_guest_sync(a.g, 5);	/* ignored, with a warning */
	ck_assert_uint_eq(tu_vstats(cf.vm).events[CCVM_EV_EXIT], 1);
	cf_finish();
}
END_TEST

Suite *badinput_suite(void)
{
	Suite *s = suite_create("badinput");
	int n = cf_nr_backends();
	TCase *tc;

	tc = tcase_create("calls");
	tcase_add_loop_test(tc, test_bad_calls, 0, n);
	tcase_add_loop_test(tc, test_bad_platform_opts, 0, n);
	tcase_add_loop_test(tc, test_bad_vm_opts, 0, n);
	tcase_add_loop_test(tc, test_gmem_access, 0, n);
	suite_add_tcase(s, tc);

	tc = tcase_create("state");
	tcase_add_loop_test(tc, test_lifecycle, 0, n);
	tcase_add_loop_test(tc, test_use_after_close, 0, n);
	tcase_add_loop_test(tc, test_guest_bad_input, 0, n);
	suite_add_tcase(s, tc);
	return s;
}
