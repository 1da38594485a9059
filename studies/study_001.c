/* SPDX-License-Identifier: MIT */
/*
 * Study 001: the mirror root and the memslot generation wrap
 * (docs/studies/001.md).  The v3 mirror-root patch took a mirror root on
 * every MMU reload; after a generation wrap every vCPU reloads, so each
 * wrap costs one mirror-root reference per vCPU that is never dropped, and
 * the root outlives the VM with the S-EPT pages under it.  The merged code
 * takes a mirror root only when the vCPU has no valid one.
 *
 * For each policy and number of wraps: the roots and references while the
 * TD runs (and whether I28 holds), then what teardown leaked.
 */
#include <stdlib.h>
#include <string.h>

#include "study.h"

#define NR_VCPUS	4

static const unsigned int wraps_full[] = { 0, 1, 2, 4, 8, 16, 32 };
static const unsigned int wraps_quick[] = { 0, 1, 4 };

struct policy {
	const char *name;
	uint32_t knob;
};

static const struct policy policies[] = {
	{ "v3", CCVM_MIRROR_RELOAD_V3 },
	{ "merged", CCVM_MIRROR_RELOAD_MERGED },
};

int main(int argc, char **argv)
{
	static const char *const cols[] = {
		"policy", "wraps", "vcpus", "mirror_roots", "mirror_refs", "direct_roots",
		"invariant", "roots_leaked", "pages_leaked",
	};
	static const int width[] = { 7, 5, 5, 12, 11, 12, 9, 12, 12 };
	const unsigned int *wraps = wraps_full;
	unsigned int nr_wraps = sizeof(wraps_full) / sizeof(wraps_full[0]), k, w;
	struct s001_result last[2] = { { 0 } };
	struct study_table t;
	struct study_opts o;
	int err = study_parse(argc, argv, "", &o);

	if (err)
		return err > 0 ? 0 : 2;
	if (o.argi < argc) {
		fprintf(stderr, "%s: unknown option %s\n", argv[0], argv[o.argi]);
		return 2;
	}
	if (o.quick) {
		wraps = wraps_quick;
		nr_wraps = sizeof(wraps_quick) / sizeof(wraps_quick[0]);
	}
	study_quiet_log();
	printf("Study 001: mirror root and the memslot generation wrap (%u vCPUs; every round\n"
	       "hot-plugs memory and each vCPU faults a page of a fresh 2 MiB region)\n",
	       NR_VCPUS);
	err = study_table_open(&t, &o, cols, width, sizeof(cols) / sizeof(cols[0]));
	if (err) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], o.csv, strerror(-err));
		return 1;
	}
	for (k = 0; k < 2; k++) {
		for (w = 0; w < nr_wraps; w++) {
			struct s001_result r;
			const char *what;
			/* The trace shows one wrap under each policy. */
			char path[512];
			const char *trace = NULL;
			char inv[16];

			if (o.trace && wraps[w] == 1) {
				snprintf(path, sizeof(path), "%s.%s.json", o.trace, policies[k].name);
				trace = path;
			}
			err = s001_run(policies[k].knob, NR_VCPUS, wraps[w], true, trace, &r, &what);
			if (err) {
				fprintf(stderr, "%s: %s: %s\n", argv[0], what, ccvm_strerror(err));
				return 1;
			}
			if (r.broken_invariant)
				snprintf(inv, sizeof(inv), "I%u", r.broken_invariant);
			else
				snprintf(inv, sizeof(inv), "ok");
			study_table_row(&t, "%s|%u|%u|%u|%llu|%u|%s|%llu|%llu",
					policies[k].name, wraps[w], NR_VCPUS, r.mirror_roots,
					(unsigned long long)r.mirror_refs, r.direct_roots, inv,
					(unsigned long long)r.roots_leaked,
					(unsigned long long)r.pages_leaked);
			last[k] = r;
		}
	}
	if (study_table_close(&t))
		return 1;
	w = wraps[nr_wraps - 1];
	printf("references on the mirror root: 1 (the MMU's) + %u (the vCPUs') under the fix;\n"
	       "v3 adds %u per wrap (one per vCPU reload), and teardown leaks the root\n",
	       NR_VCPUS, NR_VCPUS);
	study_seed_line("001 mirror root / generation wrap", "v3 (under review)",
			last[0].roots_leaked && last[0].pages_leaked ? "bad: root leaked" : "UNEXPECTED",
			"%llu refs, %llu pages leaked after %u wraps",
			(unsigned long long)last[0].mirror_refs,
			(unsigned long long)last[0].pages_leaked, w);
	study_seed_line("001 mirror root / generation wrap", "merged",
			!last[1].roots_leaked && !last[1].pages_leaked &&
			last[1].mirror_roots == 1 ? "good: one root" : "UNEXPECTED",
			"%u mirror root, %llu refs, 0 leaked after %u wraps",
			last[1].mirror_roots, (unsigned long long)last[1].mirror_refs, w);
	return 0;
}
