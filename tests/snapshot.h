/* SPDX-License-Identifier: MIT */
/*
 * A snapshot of every piece of state a failing call must leave alone, and
 * the assertion that two snapshots agree (tu_snap_*).
 *
 * It reads through the public API wherever it can (attributes, generation,
 * gmem info, stats) and includes lib/internal.h only for what the API does
 * not show: the invalidation sequence and in-progress count, and the list
 * of memslots (there is no call that enumerates slots).  conformance.h,
 * written for out-of-tree backends too, does not include it: the suites
 * that take snapshots include it themselves.
 */
#ifndef CCVM_TESTS_SNAPSHOT_H
#define CCVM_TESTS_SNAPSHOT_H

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <check.h>

#include "internal.h"
#include "testutil.h"

#define TU_SNAP_RUNS	64
#define TU_SNAP_SLOTS	16

/* internal.h: the invalidation state is not visible through the API. */
static inline uint64_t tu_seq(struct ccvm_vm *vm)
{
	return atomic_load(&vm->mmu.invalidate_seq);
}

static inline long tu_in_progress(struct ccvm_vm *vm)
{
	return atomic_load(&vm->mmu.invalidate_in_progress);
}

struct tu_slot_state {
	uint32_t id, flags;
	uint64_t base_gfn, npages, pgoff;
	void *uaddr;
	void *gmem;
};

struct tu_snap {
	/* attributes: the runs that cover [win_start, win_end) */
	struct tu_attr_run runs[TU_SNAP_RUNS];
	unsigned int nr_runs;
	uint64_t generation;
	uint32_t nr_slots;
	struct tu_slot_state slots[TU_SNAP_SLOTS];
	uint64_t seq;
	long in_progress;
	struct ccvm_gmem_info gmem[2];
	/* each file's own attributes (in place), run by run from offset 0 */
	struct tu_attr_run gruns[2][TU_SNAP_RUNS];
	unsigned int nr_gruns[2];
	struct ccvm_stats pst, vst;
};

/* The attribute runs of file @g from offset 0, at most @max. */
static inline unsigned int tu_gmem_attr_runs(struct ccvm_gmem *g, struct tu_attr_run *runs,
					     unsigned int max)
{
	uint64_t off = 0, size = tu_gmem_info(g).size;
	unsigned int n = 0;

	while (off < size && n < max) {
		ck_assert_int_eq(ccvm_gmem_get_memory_attributes(g, off, &runs[n].attr,
								 &runs[n].run_bytes), 0);
		runs[n].gpa = off;
		ck_assert_uint_gt(runs[n].run_bytes, 0);
		off += runs[n].run_bytes;
		n++;
	}
	return n;
}

/*
 * Take a snapshot of @vm (attributes over [win_start, win_end) and the
 * neighbours the runs reach), its platform, and up to two gmem files (NULL
 * allowed).
 */
static inline void tu_snap_take(struct tu_snap *s, struct ccvm_platform *p, struct ccvm_vm *vm,
				struct ccvm_gmem *g0, struct ccvm_gmem *g1,
				uint64_t win_start, uint64_t win_end)
{
	struct ccvm_gmem *g[2] = { g0, g1 };
	unsigned int i;

	memset(s, 0, sizeof(*s));
	if (vm) {
		s->nr_runs = tu_attr_runs(vm, win_start, win_end, s->runs, TU_SNAP_RUNS);
		s->generation = ccvm_vm_memslot_generation(vm);
		/* internal.h: memslots cannot be listed through the API. */
		unsigned int slots_sh = ccvm_brlock_rdlock(&vm->memslots_rw);
		if (vm->memslots) {
			s->nr_slots = vm->memslots->nr;
			for (i = 0; i < vm->memslots->nr && i < TU_SNAP_SLOTS; i++) {
				struct ccvm_memslot *m = vm->memslots->by_gfn[i];

				s->slots[i] = (struct tu_slot_state){
					.id = m->id, .flags = m->flags,
					.base_gfn = m->base_gfn, .npages = m->npages,
					.pgoff = m->pgoff, .uaddr = m->userspace_addr,
					.gmem = (void *)atomic_load(&m->gmem),
				};
			}
		}
		ccvm_brlock_rdunlock(&vm->memslots_rw, slots_sh);
		s->seq = tu_seq(vm);
		s->in_progress = tu_in_progress(vm);
		s->vst = tu_vstats(vm);
	}
	for (i = 0; i < 2; i++) {
		if (g[i]) {
			s->gmem[i] = tu_gmem_info(g[i]);
			s->nr_gruns[i] = tu_gmem_attr_runs(g[i], s->gruns[i], TU_SNAP_RUNS);
		}
	}
	s->pst = tu_pstats(p);
}

/* Assert that nothing observable differs between @a (before) and @b (after). */
static inline void tu_snap_assert_same(const struct tu_snap *a, const struct tu_snap *b)
{
	unsigned int i;

	ck_assert_msg(a->nr_runs == b->nr_runs, "attribute runs: %u -> %u", a->nr_runs,
		      b->nr_runs);
	for (i = 0; i < a->nr_runs; i++)
		ck_assert_msg(a->runs[i].gpa == b->runs[i].gpa &&
			      a->runs[i].attr == b->runs[i].attr &&
			      a->runs[i].run_bytes == b->runs[i].run_bytes,
			      "attribute run %u changed: %#" PRIx64 " attr %#" PRIx64 " run %#"
			      PRIx64 " -> %#" PRIx64 " attr %#" PRIx64 " run %#" PRIx64, i,
			      a->runs[i].gpa, a->runs[i].attr, a->runs[i].run_bytes,
			      b->runs[i].gpa, b->runs[i].attr, b->runs[i].run_bytes);
	ck_assert_msg(a->generation == b->generation, "memslot generation: %" PRIu64
		      " -> %" PRIu64, a->generation, b->generation);
	ck_assert_msg(a->nr_slots == b->nr_slots, "memslots: %u -> %u", a->nr_slots,
		      b->nr_slots);
	for (i = 0; i < a->nr_slots && i < TU_SNAP_SLOTS; i++)
		ck_assert_msg(!memcmp(&a->slots[i], &b->slots[i], sizeof(a->slots[i])),
			      "memslot %u (id %u) changed", i, a->slots[i].id);
	ck_assert_msg(a->seq == b->seq, "invalidate seq: %" PRIu64 " -> %" PRIu64, a->seq,
		      b->seq);
	ck_assert_msg(a->in_progress == b->in_progress, "invalidate in progress: %ld -> %ld",
		      a->in_progress, b->in_progress);
	for (i = 0; i < 2; i++) {
		ck_assert_msg(a->gmem[i].size == b->gmem[i].size &&
			      a->gmem[i].flags == b->gmem[i].flags, "gmem %u size/flags", i);
		ck_assert_msg(a->gmem[i].nr_pages == b->gmem[i].nr_pages,
			      "gmem %u nr_pages: %" PRIu64 " -> %" PRIu64, i,
			      a->gmem[i].nr_pages, b->gmem[i].nr_pages);
		ck_assert_msg(a->gmem[i].nr_bindings == b->gmem[i].nr_bindings,
			      "gmem %u nr_bindings: %u -> %u", i, a->gmem[i].nr_bindings,
			      b->gmem[i].nr_bindings);
		ck_assert_msg(a->gmem[i].folio_order == b->gmem[i].folio_order &&
			      a->gmem[i].nr_huge_folios == b->gmem[i].nr_huge_folios,
			      "gmem %u folios: order %u, %" PRIu64 " whole -> order %u, %" PRIu64
			      " whole", i, a->gmem[i].folio_order, a->gmem[i].nr_huge_folios,
			      b->gmem[i].folio_order, b->gmem[i].nr_huge_folios);
		ck_assert_msg(a->gmem[i].nr_private == b->gmem[i].nr_private &&
			      a->gmem[i].nr_pinned == b->gmem[i].nr_pinned,
			      "gmem %u private/pinned pages changed", i);
		ck_assert_msg(a->nr_gruns[i] == b->nr_gruns[i], "gmem %u attribute runs: %u -> %u",
			      i, a->nr_gruns[i], b->nr_gruns[i]);
		ck_assert_msg(!memcmp(a->gruns[i], b->gruns[i],
				      a->nr_gruns[i] * sizeof(a->gruns[i][0])),
			      "gmem %u attribute runs changed", i);
	}
	tu_stats_assert_same("platform", &a->pst, &b->pst);
	tu_stats_assert_same("vm", &a->vst, &b->vst);
}

#endif /* CCVM_TESTS_SNAPSHOT_H */
