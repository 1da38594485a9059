/* SPDX-License-Identifier: MIT */
/*
 * Errors that explain themselves: each refusal names its rule in the
 * calling thread's last error (ccvm_last_error()) and in one debug-level
 * log line, misuses that share an errno read differently, the launch order
 * of a backend that needs finalize is enforced by the core, and the
 * strings of ccvm_strerror() say what the errno means here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <ccvm/ccvm.h>

#define MIB	(1ull << 20)
#define PG	CCVM_PAGE_SIZE
#define GPA	0x100000ull
#define SIZE	(2 * MIB)

static _Alignas(4096) uint8_t shared_mem[SIZE];

struct env {
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *gmem;
	struct ccvm_vcpu *vcpu;
};

static void env_up(struct env *e, const char *backend, bool memory)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = backend, .mem_bytes = 64 * MIB);
	struct ccvm_memory_region r = {
		.slot = 0, .flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = GPA,
		.memory_size = SIZE, .userspace_addr = shared_mem,
	};

	memset(e, 0, sizeof(*e));
	ck_assert_int_eq(ccvm_platform_create(&po, &e->p), 0);
	ck_assert_int_eq(ccvm_vm_create(e->p, NULL, &e->vm), 0);
	if (memory) {
		ck_assert_int_eq(ccvm_gmem_create(e->vm, SIZE, 0, &e->gmem), 0);
		r.gmem = e->gmem;
		ck_assert_int_eq(ccvm_vm_set_user_memory_region(e->vm, &r), 0);
		ck_assert_int_eq(ccvm_vm_set_memory_attributes(e->vm, GPA, SIZE,
							       CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0), 0);
	}
	ck_assert_int_eq(ccvm_vcpu_create(e->vm, 0, &e->vcpu), 0);
}

static void env_down(struct env *e)
{
	ck_assert_int_eq(ccvm_vcpu_close(e->vcpu), 0);
	if (e->gmem)
		ck_assert_int_eq(ccvm_gmem_close(e->gmem), 0);
	ck_assert_int_eq(ccvm_vm_close(e->vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(e->p), 0);
}

static void guest_nop(struct ccvm_guest *g, void *arg)
{
	(void)g;
	(void)arg;
}

/* ck_assert that @err is @want and the last error contains @what. */
#define ck_assert_fails(call, want, what) do {					\
	int err_ = (call);							\
	ck_assert_int_eq(err_, (want));						\
	ck_assert_msg(strstr(ccvm_last_error(), (what)) != NULL,		\
		      "last error \"%s\" does not name \"%s\"",			\
		      ccvm_last_error(), (what));				\
} while (0)

/* ---- each rule named ------------------------------------------------------------ */

START_TEST(test_forgotten_sz)
{
	struct ccvm_platform *p;
	struct ccvm_vm *vm = NULL;
	struct ccvm_vm_opts o = { .max_vcpus = 4 };	/* no .sz */

	ck_assert_int_eq(ccvm_platform_create(NULL, &p), 0);
	ck_assert_fails(ccvm_vm_create(p, &o, &vm), -EINVAL, "CCVM_OPTS_INIT");
	ck_assert_ptr_null(vm);
	ck_assert_fails(ccvm_vm_create(p, &o, &vm), -EINVAL, "ccvm_vm_create: options .sz is 0");
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

START_TEST(test_misaligned_gmem_offset)
{
	struct env e;
	struct ccvm_gmem *g2;
	struct ccvm_memory_region r = {
		.slot = 1, .flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = 16 * MIB,
		.memory_size = PG, .gmem_offset = 0x1001,
	};
	uint64_t gen;

	env_up(&e, "mock", true);
	ck_assert_int_eq(ccvm_gmem_create(e.vm, 2 * PG, 0, &g2), 0);
	r.gmem = g2;
	gen = ccvm_vm_memslot_generation(e.vm);
	ck_assert_fails(ccvm_vm_set_user_memory_region(e.vm, &r), -EINVAL,
			"ccvm_vm_set_user_memory_region: slot 1: gmem_offset 0x1001 not page aligned");
	ck_assert_uint_eq(ccvm_vm_memslot_generation(e.vm), gen);	/* nothing changed */
	r.gmem_offset = 0;
	r.guest_phys_addr = 16 * MIB + 0x800;
	ck_assert_fails(ccvm_vm_set_user_memory_region(e.vm, &r), -EINVAL,
			"guest_phys_addr 0x1000800 not page aligned");
	ck_assert_uint_eq(ccvm_vm_memslot_generation(e.vm), gen);
	ck_assert_int_eq(ccvm_gmem_close(g2), 0);
	env_down(&e);
}
END_TEST

START_TEST(test_wrong_attribute_bit)
{
	struct env e;
	uint64_t a;

	env_up(&e, "mock", true);
	ck_assert_fails(ccvm_vm_set_memory_attributes(e.vm, GPA, PG, 1ull << 2, 0), -EINVAL,
			"attributes 0x4: bits 0x4 not supported");
	ck_assert_int_eq(ccvm_vm_get_memory_attribute(e.vm, GPA, &a), 0);
	ck_assert_uint_eq(a, CCVM_MEMORY_ATTRIBUTE_PRIVATE);	/* unchanged */
	ck_assert_fails(ccvm_vm_set_memory_attributes(e.vm, GPA + 1, PG, 0, 0), -EINVAL,
			"not page aligned");
	ck_assert_fails(ccvm_vm_set_memory_attributes(e.vm, GPA, PG, 0, 1), -EINVAL,
			"flags 0x1: must be 0");
	env_down(&e);
}
END_TEST

START_TEST(test_missing_guest)
{
	struct env e;

	env_up(&e, "mock", false);
	ck_assert_fails(ccvm_vcpu_run(e.vcpu), -EINVAL,
			"vCPU 0 has no guest: call ccvm_vcpu_set_guest() first");
	ck_assert_int_eq(ccvm_vcpu_set_guest(e.vcpu, guest_nop, NULL), 0);
	ck_assert_int_eq(ccvm_vcpu_run(e.vcpu), 0);
	ck_assert_uint_eq(ccvm_vcpu_run_state(e.vcpu)->exit_reason, CCVM_EXIT_DONE);
	ck_assert_fails(ccvm_vcpu_run(e.vcpu), -EINVAL, "the guest function returned");
	env_down(&e);
}
END_TEST

/* Launch order: a backend whose caps say needs_finalize refuses to run. */
START_TEST(test_missing_finalize)
{
	const char *backend = _i ? "snp" : "tdx";
	struct ccvm_backend_caps caps = CCVM_OPTS_INIT(struct ccvm_backend_caps);
	struct env e;

	ck_assert_int_eq(ccvm_backend_caps(backend, &caps), 0);
	ck_assert(caps.needs_finalize);
	env_up(&e, backend, true);
	ck_assert_int_eq(ccvm_vcpu_set_guest(e.vcpu, guest_nop, NULL), 0);
	ck_assert_fails(ccvm_vcpu_run(e.vcpu), -EINVAL, "VM is not finalized");
	ck_assert_fails(ccvm_vcpu_run(e.vcpu), -EINVAL, backend);
	ck_assert_uint_eq(ccvm_vcpu_run_state(e.vcpu)->exit_reason, CCVM_EXIT_INTERNAL_ERROR);
	ck_assert_int_eq(ccvm_vm_finalize(e.vm), 0);
	ck_assert_int_eq(ccvm_vcpu_run(e.vcpu), 0);
	ck_assert_uint_eq(ccvm_vcpu_run_state(e.vcpu)->exit_reason, CCVM_EXIT_DONE);
	ck_assert_fails(ccvm_vm_finalize(e.vm), -EINVAL, "already finalized");
	env_down(&e);
}
END_TEST

/* Mock needs no finalize: it runs from the start. */
START_TEST(test_mock_runs_unfinalized)
{
	struct env e;

	env_up(&e, "mock", false);
	ck_assert_int_eq(ccvm_vcpu_set_guest(e.vcpu, guest_nop, NULL), 0);
	ck_assert_int_eq(ccvm_vcpu_run(e.vcpu), 0);
	env_down(&e);
}
END_TEST

/* The four misuses of the issue, all -EINVAL, read four different ways. */
START_TEST(test_einval_causes_differ)
{
	struct ccvm_vm_opts o = { .max_vcpus = 1 };
	char msgs[4][CCVM_LAST_ERROR_MAX];
	struct ccvm_memory_region r = {
		.slot = 2, .flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = 32 * MIB,
		.memory_size = PG, .gmem_offset = 0x1001,
	};
	struct ccvm_vm *vm2;
	struct env e;
	int i, j;

	env_up(&e, "tdx", true);
	r.gmem = e.gmem;
	ck_assert_int_eq(ccvm_vm_create(e.p, &o, &vm2), -EINVAL);
	strcpy(msgs[0], ccvm_last_error());
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(e.vm, &r), -EINVAL);
	strcpy(msgs[1], ccvm_last_error());
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(e.vm, GPA, PG, 1, 0), -EINVAL);
	strcpy(msgs[2], ccvm_last_error());
	ck_assert_int_eq(ccvm_vcpu_set_guest(e.vcpu, guest_nop, NULL), 0);
	ck_assert_int_eq(ccvm_vcpu_run(e.vcpu), -EINVAL);
	strcpy(msgs[3], ccvm_last_error());
	for (i = 0; i < 4; i++) {
		ck_assert_msg(strstr(msgs[i], "(-EINVAL)") != NULL, "%s", msgs[i]);
		for (j = 0; j < i; j++)
			ck_assert_str_ne(msgs[i], msgs[j]);
	}
	env_down(&e);
}
END_TEST

/* ---- misleading strings corrected ------------------------------------------------ */

START_TEST(test_trace_file_unopenable)
{
	struct ccvm_platform *p;

	ck_assert_int_eq(ccvm_platform_create(NULL, &p), 0);
	ck_assert_fails(ccvm_trace_open(p, "/nonexistent-dir/trace.json"), -ENOENT,
			"cannot open the trace file /nonexistent-dir/trace.json");
	ck_assert_ptr_nonnull(strstr(ccvm_strerror(-ENOENT), "file"));
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

START_TEST(test_destroy_busy_names_survivors)
{
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;

	ck_assert_int_eq(ccvm_platform_create(NULL, &p), 0);
	ck_assert_int_eq(ccvm_vm_create(p, NULL, &vm), 0);
	ck_assert_int_eq(ccvm_gmem_create(vm, PG, 0, &g), 0);
	ck_assert_fails(ccvm_platform_destroy(p), -EBUSY, "still alive: 1 VM(s), 1 gmem inode(s)");
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	/* The file keeps the VM alive. */
	ck_assert_fails(ccvm_platform_destroy(p), -EBUSY, "1 VM(s), 1 gmem inode(s)");
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
	ck_assert_ptr_nonnull(strstr(ccvm_strerror(-EBUSY), "still alive"));
}
END_TEST

/* ---- the log ---------------------------------------------------------------------- */

struct logged {
	int debug;
	char last[512];
};

static void log_sink(enum ccvm_log_level level, const char *msg, void *ctx)
{
	struct logged *l = ctx;

	if (level == CCVM_LOG_DEBUG) {
		l->debug++;
		strncpy(l->last, msg, sizeof(l->last) - 1);
	}
}

START_TEST(test_debug_log_line)
{
	struct logged l = { 0 };
	struct ccvm_platform *p;

	ck_assert_int_eq(ccvm_platform_create(NULL, &p), 0);
	ccvm_set_log(log_sink, &l);
	ck_assert_int_eq(ccvm_platform_destroy(NULL), -EINVAL);
	ck_assert_int_eq(l.debug, 1);
	ck_assert_str_eq(l.last, ccvm_last_error());
	ck_assert_str_eq(l.last, "ccvm_platform_destroy: NULL platform (-EINVAL)");
	ccvm_set_log(NULL, NULL);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

Suite *errors_suite(void)
{
	Suite *s = suite_create("errors");
	TCase *tc = tcase_create("errors");

	tcase_add_test(tc, test_forgotten_sz);
	tcase_add_test(tc, test_misaligned_gmem_offset);
	tcase_add_test(tc, test_wrong_attribute_bit);
	tcase_add_test(tc, test_missing_guest);
	tcase_add_loop_test(tc, test_missing_finalize, 0, 2);
	tcase_add_test(tc, test_mock_runs_unfinalized);
	tcase_add_test(tc, test_einval_causes_differ);
	tcase_add_test(tc, test_trace_file_unopenable);
	tcase_add_test(tc, test_destroy_busy_names_survivors);
	tcase_add_test(tc, test_debug_log_line);
	suite_add_tcase(s, tc);
	return s;
}
