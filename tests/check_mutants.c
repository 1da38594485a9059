/* SPDX-License-Identifier: MIT */
/*
 * The explorer's power: deliberately broken builds (the MUTANTS of the
 * Makefile, each one library file compiled with -DCCVM_MUTANT_<NAME> and
 * linked into its own ccvm-explore) and, for each, a built-in scenario and
 * a budget of schedules (at most 10,000).  The test runs the mutant's
 * ccvm-explore over the budget and expects a failing schedule with the
 * failure the mutant causes; replays the printed token on the mutant and
 * expects the same failure again; then runs the correct ccvm-explore of the
 * same build directory over the same budget and expects nothing.
 *
 * The programs are found next to the test binary: <build>/tests/ccvm-tests,
 * <build>/tools/ccvm-explore, <build>/mutants/ccvm-explore-<name>.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "testutil.h"

struct mutant {
	const char *name;		/* MUTANTS entry */
	const char *scenario, *backend, *strategy;
	const char *runs;		/* the budget, <= 10000 */
	const char *expect;		/* in the mutant's failure report */
};

static const struct mutant mutants[] = {
	/* The fault path never asks "did an invalidation run since my snapshot?". */
	{ "no-seq-retry", "conv-fault", "mock", "random", "200", "invariant I2 broken" },
	/* The same, found by DFS with preemption bound 2, which exhausts the correct build. */
	{ "no-seq-retry", "conv-fault-1", "mock", "dfs", "10000", "invariant I1 broken" },
	/* kvm_mmu_reload() takes a new mirror root reference on every fast zap (v3). */
	{ "mirror-every-gen", "memslot-fault", "tdx", "pct", "200", "invariant I28 broken" },
	/* SNP update_mem_attr (as posted) clears its pending range after its walk. */
	{ "snp-pending-after-walk", "rmp-fault", "snp", "random", "400", "invariant I23 broken" },
	/* SNP: a 4K PVALIDATE in a 2M entry PSMASHes under the 2M NPT leaf, zap after. */
	{ "snp-psmash-before-zap", "split-fault", "snp", "pct", "100", "invariant I8 broken" },
	/* TDX runtime removal without TRACK (and its kick): REMOVE refuses. */
	{ "tdx-no-track", "kick-exit", "tdx", "random", "100", "VM is bugged or dead" },
	/* A nested invalidate_begin forgets the range already in progress. */
	{ "begin-forgets-range", "conv-punch", "mock", "pct", "300", "invariant I2 broken" },
};

/* <build>/<dir>/<file>, from /proc/self/exe = <build>/tests/ccvm-tests. */
static void sibling(char *out, size_t sz, const char *dir, const char *file)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	ck_assert_int_gt(n, 0);
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	ck_assert_ptr_nonnull(slash);
	*slash = '\0';			/* <build>/tests */
	slash = strrchr(exe, '/');
	ck_assert_ptr_nonnull(slash);
	*slash = '\0';			/* <build> */
	ck_assert_int_lt(snprintf(out, sz, "%s/%s/%s", exe, dir, file), (int)sz);
}

/*
 * Run @argv with @env ("NAME=value" strings, NULL-terminated; NULL: none)
 * added to the environment; its stdout into *@out (malloc'd); return its
 * exit status.
 */
static int run_env(char *const argv[], char *const env[], char **out)
{
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	int fds[2], status;
	pid_t pid;
	ssize_t n;

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(fds[1], STDOUT_FILENO);
		if (null >= 0)
			dup2(null, STDERR_FILENO);	/* the library's warnings */
		close(fds[0]);
		close(fds[1]);
		/* A failed run's platform is leaked on purpose (explore.c). */
		setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
		for (; env && *env; env++)
			putenv(*env);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf + len, cap - len - 1)) > 0 || (n < 0 && errno == EINTR)) {
		if (n < 0)
			continue;
		len += (size_t)n;
		if (cap - len < 4096) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
	}
	buf[len] = '\0';
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	*out = buf;
	ck_assert_msg(WIFEXITED(status), "%s died: %s", argv[0], buf);
	return WEXITSTATUS(status);
}

static int run(char *const argv[], char **out)
{
	return run_env(argv, NULL, out);
}

/* The value after "@key" on its line of @text, malloc'd; NULL if absent. */
static char *field(const char *text, const char *key)
{
	const char *p = strstr(text, key), *e;

	if (!p)
		return NULL;
	p += strlen(key);
	e = strchr(p, '\n');
	return strndup(p, e ? (size_t)(e - p) : strlen(p));
}

START_TEST(test_mutant)
{
	const struct mutant *m = &mutants[_i];
	char mut[PATH_MAX], good[PATH_MAX], file[128], key[128], *out, *out2, *token, *summary;
	char *argv[] = { mut, (char *)m->scenario, "--backend", (char *)m->backend,
			 "--strategy", (char *)m->strategy, "--runs", (char *)m->runs,
			 "--seed", "0", NULL };
	char *replay[] = { mut, (char *)m->scenario, "--backend", (char *)m->backend,
			   "--replay", NULL, NULL };
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };

	if (ccvm_backend_caps(m->backend, &caps))
		return;		/* the backend is not built */
	snprintf(file, sizeof(file), "ccvm-explore-%s", m->name);
	sibling(mut, sizeof(mut), "mutants", file);
	sibling(good, sizeof(good), "tools", "ccvm-explore");

	/* The mutant: a failing schedule within the budget, with its mark. */
	ck_assert_msg(run(argv, &out) == 1, "%s: no failing schedule in %s runs:\n%s",
		      m->name, m->runs, out);
	ck_assert_msg(strstr(out, m->expect), "%s: expected \"%s\" in:\n%s", m->name, m->expect,
		      out);
	token = field(out, "\ntoken: ");
	snprintf(key, sizeof(key), "\n%s on %s: ", m->scenario, m->backend);
	summary = field(out, key);
	ck_assert_msg(token && !strncmp(token, "S1:", 3), "%s: no token in:\n%s", m->name, out);
	fprintf(stderr, "mutant %s: %s on %s: %s\n", m->name, m->scenario, m->backend,
		summary ? summary : "?");

	/* The token replays it: the same failure again. */
	replay[5] = token;
	ck_assert_msg(run(replay, &out2) == 1, "%s: replay passed:\n%s", m->name, out2);
	ck_assert_msg(strstr(out2, m->expect), "%s: replay: expected \"%s\" in:\n%s", m->name,
		      m->expect, out2);
	ck_assert_msg(strstr(out2, "replay token: ") && strstr(out2, token),
		      "%s: the replay's token differs:\n%s", m->name, out2);
	free(out2);

	/* The correct build, the same budget: nothing. */
	argv[0] = good;
	ck_assert_msg(run(argv, &out2) == 0, "%s: the correct build failed:\n%s", m->name, out2);
	ck_assert_msg(strstr(out2, "no failure"), "%s: %s", m->name, out2);
	free(out2);
	free(summary);
	free(token);
	free(out);
}
END_TEST

/*
 * A mutant shown by a deterministic twin rather than a built-in scenario:
 * tdx-no-kick, the TDX removal path's retry after a busy leaf made without
 * kicking the vCPUs out of the TD (removal_seamcall()).  Its test program
 * (<build>/mutants/ccvm-tests-tdx-no-kick, the whole suite linked with the
 * mutant) runs the busy_removal twin of one leaf by DFS at preemption
 * bound 1 (the bound the sanitizer builds run), which must fail with the
 * leaf's mark; the token in the failure replays it (TW_REPLAY) with the
 * same mark and token; the correct test program (this one) passes the same
 * search.
 */
static const struct {
	const char *leaf;		/* TW_LEAF=<i>: BLOCK, TRACK, REMOVE */
	const char *expect;
} twin_mutants[] = {
	/* The retry finds the vCPU in guest mode: nothing took it out. */
	{ "TW_LEAF=0", "the busy leaf's retry with the vCPU in guest mode" },
	{ "TW_LEAF=1", "the busy leaf's retry with the vCPU in guest mode" },
	/*
	 * REMOVE: the removal never gets there.  TRACK, answered busy by the
	 * module itself while the vCPU is in the TD, is retried without the
	 * kick, is busy again, and the VM is bugged.
	 */
	{ "TW_LEAF=2", "0 busy answers, 0 retries" },
};

/* The token in "(token S1:...)" of @text, malloc'd; NULL if absent. */
static char *twin_token(const char *text)
{
	const char *p = strstr(text, "(token S1:"), *e;

	if (!p)
		return NULL;
	p += strlen("(token ");
	e = strchr(p, ')');
	return e ? strndup(p, (size_t)(e - p)) : NULL;
}

START_TEST(test_twin_mutant)
{
	char mut[PATH_MAX], self[PATH_MAX], replay_env[512], *out, *out2, *token;
	char *argv[] = { mut, NULL };
	char *env[] = { "CK_RUN_SUITE=twins", "CK_RUN_CASE=busy_removal", "TW_BOUND=1",
			(char *)twin_mutants[_i].leaf, NULL, NULL };
	const char *expect = twin_mutants[_i].expect;
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };
	ssize_t n;

	if (ccvm_backend_caps("tdx", &caps))
		return;		/* the backend is not built */
	sibling(mut, sizeof(mut), "mutants", "ccvm-tests-tdx-no-kick");
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	ck_assert_int_gt(n, 0);
	self[n] = '\0';

	/* The mutant: the twin's DFS at bound 1 fails, with a token. */
	ck_assert_msg(run_env(argv, env, &out) != 0, "tdx-no-kick %s: the twin passed:\n%s",
		      twin_mutants[_i].leaf, out);
	ck_assert_msg(strstr(out, expect), "tdx-no-kick %s: expected \"%s\" in:\n%s",
		      twin_mutants[_i].leaf, expect, out);
	token = twin_token(out);
	ck_assert_msg(token, "tdx-no-kick %s: no token in:\n%s", twin_mutants[_i].leaf, out);
	fprintf(stderr, "mutant tdx-no-kick: busy_removal %s, DFS bound 1: token %s\n",
		twin_mutants[_i].leaf, token);

	/* The token replays it: the same failure, the same token. */
	ck_assert_int_lt(snprintf(replay_env, sizeof(replay_env), "TW_REPLAY=%s", token),
			 (int)sizeof(replay_env));
	env[4] = replay_env;
	ck_assert_msg(run_env(argv, env, &out2) != 0, "tdx-no-kick %s: replay passed:\n%s",
		      twin_mutants[_i].leaf, out2);
	ck_assert_msg(strstr(out2, expect),
		      "tdx-no-kick %s: replay: expected \"%s\" in:\n%s",
		      twin_mutants[_i].leaf, expect, out2);
	ck_assert_msg(strstr(out2, token), "tdx-no-kick %s: the replay's token differs:\n%s",
		      twin_mutants[_i].leaf, out2);
	free(out2);

	/* The correct build, the same search: it passes. */
	env[4] = NULL;
	argv[0] = self;
	ck_assert_msg(run_env(argv, env, &out2) == 0, "tdx-no-kick %s: the correct build "
		      "failed:\n%s", twin_mutants[_i].leaf, out2);
	free(out2);
	free(token);
	free(out);
}
END_TEST

Suite *mutants_suite(void)
{
	Suite *s = suite_create("mutants");
	TCase *tc = tcase_create("power");

	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_mutant, 0, (int)TU_ARRAY_SIZE(mutants));
	tcase_add_loop_test(tc, test_twin_mutant, 0, (int)TU_ARRAY_SIZE(twin_mutants));
	suite_add_tcase(s, tc);
	return s;
}
