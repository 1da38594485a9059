/* SPDX-License-Identifier: MIT */
/*
 * Traces: records of work done on a guest's thread carry its vCPU (the
 * lane Perfetto shows it in), op records carry both clocks, and the file
 * writer's options are checked and honoured (the size bound leaves a
 * complete file that counts what it dropped).  scripts/check-trace.py
 * checks whole files (`make check-trace`).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include <ccvm/ccvm.h>

#define GPA	0x100000ull
#define SIZE	(1ull << 20)

static _Alignas(4096) uint8_t shared_mem[SIZE];

struct seen {
	unsigned int ops_on_vcpu3, ops_on_vmm, bad_sim;
};

static void collect(const struct ccvm_trace_record *rec, void *ctx)
{
	struct seen *s = ctx;

	if (rec->kind != CCVM_TRACE_OP)
		return;
	if (rec->vcpu_id == 3)
		s->ops_on_vcpu3++;
	else if (rec->vcpu_id == -1)
		s->ops_on_vmm++;
	if (rec->sim_dur_ns > rec->sim_ns)
		s->bad_sim++;
}

static void guest_touch(struct ccvm_guest *g, void *arg)
{
	uint64_t v = 1;

	(void)arg;
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, GPA, &v, sizeof(v)));
}

static void vm_up(struct ccvm_platform **p, struct ccvm_vm **vm, struct ccvm_gmem **g,
		  struct ccvm_vcpu **v)
{
	struct ccvm_memory_region r = {
		.flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = GPA, .memory_size = SIZE,
		.userspace_addr = shared_mem,
	};

	ck_assert_int_eq(ccvm_platform_create(NULL, p), 0);
	ck_assert_int_eq(ccvm_vm_create(*p, NULL, vm), 0);
	ck_assert_int_eq(ccvm_gmem_create(*vm, SIZE, 0, g), 0);
	r.gmem = *g;
	ck_assert_int_eq(ccvm_vm_set_user_memory_region(*vm, &r), 0);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(*vm, GPA, SIZE,
						       CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0), 0);
	ck_assert_int_eq(ccvm_vcpu_create(*vm, 3, v), 0);
	ck_assert_int_eq(ccvm_vcpu_set_guest(*v, guest_touch, NULL), 0);
}

static void vm_down(struct ccvm_platform *p, struct ccvm_vm *vm, struct ccvm_gmem *g,
		    struct ccvm_vcpu *v)
{
	ck_assert_int_eq(ccvm_vcpu_close(v), 0);
	ck_assert_int_eq(ccvm_gmem_close(g), 0);
	ck_assert_int_eq(ccvm_vm_close(vm), 0);
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}

START_TEST(test_guest_work_on_its_vcpu_lane)
{
	struct seen s = { 0 };
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct ccvm_vcpu *v;

	vm_up(&p, &vm, &g, &v);
	ck_assert_int_eq(ccvm_platform_set_trace(p, collect, &s), 0);
	ck_assert_int_eq(ccvm_vcpu_run(v), 0);		/* the fault: gmem_prepare, ... */
	ck_assert_int_eq(ccvm_platform_set_trace(p, NULL, NULL), 0);
	ck_assert_uint_gt(s.ops_on_vcpu3, 0);
	ck_assert_uint_eq(s.bad_sim, 0);
	vm_down(p, vm, g, v);
}
END_TEST

START_TEST(test_open_opts_checked)
{
	struct ccvm_trace_opts o = CCVM_OPTS_INIT(struct ccvm_trace_opts, .clock = 7);
	struct ccvm_platform *p;

	ck_assert_int_eq(ccvm_platform_create(NULL, &p), 0);
	ck_assert_int_eq(ccvm_trace_open_opts(p, "/dev/null", &o), -EINVAL);
	ck_assert_ptr_nonnull(strstr(ccvm_last_error(), "opts.clock 7"));
	o.clock = CCVM_TRACE_CLOCK_SIM;
	o.categories = 1u << 9;
	ck_assert_int_eq(ccvm_trace_open_opts(p, "/dev/null", &o), -EINVAL);
	ck_assert_ptr_nonnull(strstr(ccvm_last_error(), "unknown bits 0x200"));
	ck_assert_int_eq(ccvm_platform_destroy(p), 0);
}
END_TEST

START_TEST(test_size_bound_keeps_file_complete)
{
	struct ccvm_trace_opts o = CCVM_OPTS_INIT(struct ccvm_trace_opts, .max_bytes = 2000);
	char path[] = "/tmp/ccvm-trace-XXXXXX", buf[65536];
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct ccvm_vcpu *v;
	size_t n;
	FILE *f;
	int fd;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	vm_up(&p, &vm, &g, &v);
	ck_assert_int_eq(ccvm_trace_open_opts(p, path, &o), 0);
	ck_assert_int_eq(ccvm_vcpu_run(v), 0);
	vm_down(p, vm, g, v);			/* destroy closes the file */
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	unlink(path);
	buf[n] = 0;
	ck_assert_uint_lt(n, 2000 + 1024);
	ck_assert_ptr_nonnull(strstr(buf, "\"otherData\""));
	ck_assert_ptr_null(strstr(buf, "\"dropped\":\"0\""));
	ck_assert_str_eq(buf + n - 3, "}}\n");
}
END_TEST

struct convert_arg {
	struct ccvm_vm *vm;
	int ret;
};

static void *convert_to_shared(void *arg)
{
	struct convert_arg *a = arg;

	a->ret = ccvm_vm_set_memory_attributes(a->vm, GPA, SIZE, 0, 0);
	return NULL;
}

/* Two VMM threads working on one VM get a lane each, named apart. */
START_TEST(test_vmm_threads_get_their_own_lanes)
{
	char path[] = "/tmp/ccvm-trace-XXXXXX", buf[1 << 16];
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct ccvm_vcpu *v;
	struct convert_arg a;
	pthread_t t;
	size_t n;
	FILE *f;
	int fd;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	vm_up(&p, &vm, &g, &v);
	ck_assert_int_eq(ccvm_trace_open(p, path), 0);
	ck_assert_int_eq(ccvm_vcpu_run(v), 0);		/* private pages to zap */
	a = (struct convert_arg){ .vm = vm };
	ck_assert_int_eq(pthread_create(&t, NULL, convert_to_shared, &a), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(a.ret, 0);
	ck_assert_int_eq(ccvm_vm_set_memory_attributes(vm, GPA, SIZE,
						       CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0), 0);
	vm_down(p, vm, g, v);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	unlink(path);
	buf[n] = 0;
	ck_assert_ptr_nonnull(strstr(buf, "\"name\":\"VMM\""));
	ck_assert_ptr_nonnull(strstr(buf, "\"name\":\"VMM thread 1\""));
}
END_TEST

Suite *trace_suite(void)
{
	Suite *s = suite_create("trace");
	TCase *tc = tcase_create("trace");

	tcase_add_test(tc, test_guest_work_on_its_vcpu_lane);
	tcase_add_test(tc, test_open_opts_checked);
	tcase_add_test(tc, test_size_bound_keeps_file_complete);
	tcase_add_test(tc, test_vmm_threads_get_their_own_lanes);
	suite_add_tcase(s, tc);
	return s;
}
