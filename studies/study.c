/* SPDX-License-Identifier: MIT */
/* The study framework: options, the table and its CSV, summary lines. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/sync.h>

#include "study.h"

static void usage_line(FILE *f, const char *prog, const char *usage)
{
	fprintf(f, "usage: %s [--csv FILE] [--trace FILE] [--seed N] [--quick]%s%s\n",
		prog, usage && *usage ? " " : "", usage ? usage : "");
}

int study_parse(int argc, char **argv, const char *usage, struct study_opts *o)
{
	int i;

	*o = (struct study_opts){ .seed = 1 };
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has_val = i + 1 < argc;

		if (!strcmp(a, "--csv") && has_val) {
			o->csv = argv[++i];
		} else if (!strcmp(a, "--trace") && has_val) {
			o->trace = argv[++i];
		} else if (!strcmp(a, "--seed") && has_val) {
			o->seed = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(a, "--quick")) {
			o->quick = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage_line(stdout, argv[0], usage);
			return 1;
		} else if (a[0] == '-' && a[1] == '-') {
			break;		/* the study's own, or a mistake it reports */
		} else {
			usage_line(stderr, argv[0], usage);
			return -EINVAL;
		}
	}
	o->argi = i;
	return 0;
}

int study_table_open(struct study_table *t, const struct study_opts *o,
		     const char *const *cols, const int *width, unsigned int nr_cols)
{
	unsigned int i;

	*t = (struct study_table){ .nr_cols = nr_cols };
	if (nr_cols > sizeof(t->width) / sizeof(t->width[0]))
		return -EINVAL;
	if (o->csv) {
		t->csv = fopen(o->csv, "w");
		if (!t->csv)
			return -errno;
	}
	for (i = 0; i < nr_cols; i++) {
		t->width[i] = width[i];
		printf("%s%*s", i ? "  " : "", width[i], cols[i]);
		if (t->csv)
			fprintf(t->csv, "%s%s", i ? "," : "", cols[i]);
	}
	printf("\n");
	if (t->csv)
		fprintf(t->csv, "\n");
	return 0;
}

void study_table_row(struct study_table *t, const char *fmt, ...)
{
	char line[1024], *field, *save = NULL;
	unsigned int i = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (field = strtok_r(line, "|", &save); field; field = strtok_r(NULL, "|", &save)) {
		int w = i < t->nr_cols ? t->width[i] : 0;

		printf("%s%*s", i ? "  " : "", w, field);
		if (t->csv)
			fprintf(t->csv, "%s%s", i ? "," : "", field);
		i++;
	}
	printf("\n");
	if (t->csv)
		fprintf(t->csv, "\n");
}

int study_table_close(struct study_table *t)
{
	int err = 0;

	if (t->csv && fclose(t->csv))
		err = -errno;
	t->csv = NULL;
	return err;
}

void study_seed_line(const char *thread, const char *policy, const char *outcome,
		     const char *fmt, ...)
{
	char fig[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fig, sizeof(fig), fmt, ap);
	va_end(ap);
	printf("SEED|%s|%s|%s|%s\n", thread, policy, outcome, fig);
}

static void quiet(enum ccvm_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	(void)level;
	(void)msg;
}

void study_quiet_log(void)
{
	ccvm_set_log(quiet, NULL);
}

int study_join(struct ccvm_thread *const *t, unsigned int n, int err)
{
	unsigned int i;
	int r, ret;

	for (i = 0; i < n; i++) {
		ret = 0;
		r = ccvm_thread_join(t[i], &ret);
		if (!err)
			err = r ? r : ret;
	}
	return err;
}

void study_vm_events(struct ccvm_vm *vm, uint64_t *ev)
{
	struct ccvm_stats st = { .sz = sizeof(st) };

	if (vm && !ccvm_vm_get_stats(vm, &st))
		memcpy(ev, st.events, CCVM_EV_NR * sizeof(*ev));
	else
		memset(ev, 0, CCVM_EV_NR * sizeof(*ev));
}
