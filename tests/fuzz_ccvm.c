/* SPDX-License-Identifier: MIT */
/*
 * Differential fuzzer: the same sequence of public-API operations on every
 * built backend, whose guest-visible results must agree wherever the
 * backends' capabilities say they should.
 *
 * An input is decoded into up to MAX_HOST_OPS host operations: set
 * attributes (valid and invalid), punch and allocate gmem, memslot create,
 * move and delete (valid and invalid), pre-fault, gmem host read/write,
 * attribute and gmem queries, a memslot generation wrap, in-place
 * conversion (KVM_SET_MEMORY_ATTRIBUTES2 on the gmem file, with its
 * content modes, bad input and error_offset), host pins of gmem pages,
 * host access through the gmem mapping (ccvm_gmem_access(), with the
 * faulting offset), and RUN: a fresh
 * vCPU whose guest executes a decoded list of guest operations (read,
 * write, MAP_GPA_RANGE, accept) while the VMM serves its exits with a fixed
 * policy (MAP_GPA_RANGE and memory faults convert, punching on the way to
 * shared when the input says so; MMIO reads return a pattern).  Each
 * backend runs the sequence on its own platform and produces one record
 * per host and per guest operation: errno, data read, MMIO and
 * memory-fault exits.  After every host operation, and after teardown, the
 * invariant checker must pass and, at the end, every page must be back.
 *
 * What may differ, and how it is handled (everything else must agree, or
 * the harness aborts, which is how libFuzzer reports):
 *   - has_shared_bit: an access through the alias that does not match the
 *     page's attribute is a memory-fault exit with a shared bit and a plain
 *     access without one.  Such an access (only the FORCE alias modes make
 *     one) ends the comparison of backend pairs that differ in the cap.
 *   - requires_accept: a private access may see #VE/#VC; the guest then
 *     accepts and retries once, so the result is the same everywhere.  An
 *     explicit accept of a page that is not private gmem memory may fault
 *     or exit where accept is needed and is a no-op elsewhere: it ends the
 *     comparison of pairs that differ in the cap.  Accepting an accepted
 *     page (-EEXIST) counts as success.  Accept faults pages in where it is
 *     needed, so after one the gmem page count is not compared across the
 *     cap.  Exception exits are not compared
 *     (when acceptance is lost differs: TDX loses it with any removal).
 *   - preserves_data_without_punch: private bytes read back after the
 *     private mapping was zapped without a punch (a conversion to shared,
 *     a gmem memslot deleted) are compared only between backends that
 *     agree on the cap.
 *   - gmem flags: gmem host read/write needs CCVM_GMEM_FLAG_MMAP; where the
 *     backends differ in it, the results are not compared, and a success
 *     on one side (it allocates, or writes the page cache) ends the
 *     comparison of that pair.
 *   - exit counts of MAP_GPA_RANGE (chunking) are not compared, only the
 *     guest's result and the attributes it leaves.
 *
 * Header bit 0x40 makes the VM convert in place (CCVM_ATTR_SCHEME_GMEM) on
 * every backend: PRIVATE lives in the gmem file (INIT_SHARED, slot 0 made
 * private by a file conversion when bit 4 says so), gmem memslots are
 * GMEM_ONLY (slot 0 has no VMM buffer), and the VMM serves MAP_GPA_RANGE
 * and memory faults by converting the file ranges bound at those gfns (a
 * gfn without gmem cannot become private: -EINVAL).  There a conversion
 * without a content mode leaves the bytes of a page to the backend (mock
 * and SNP keep them, TDX's removal and fresh AUG zero them), in both
 * directions, and shared accesses reach the same gmem page: such pages are
 * compared as preserves_data_without_punch allows, whether read by the
 * guest or through the host mapping.  PRESERVE is refused after finalize
 * (and to shared) where needs_finalize: compared where that cap agrees.
 *
 * Besides those: failure injection into any backend op, closing the gmem
 * file mid-sequence, terminate, populate and finalize, a second VM, two
 * runs at once (on the serial scheduler when the header says so), the
 * explorer's scenarios, the query, name, inspection (host_read_phys) and
 * trace calls, and guest syncs and aborts.  A backend's platform is kept
 * from one input to the next when the input left it clean (struct kept).
 *
 * Built with -fsanitize=fuzzer (CCVM_FUZZ_LIBFUZZER), libFuzzer drives it
 * (`make fuzz`, `make fuzz-smoke`).  Built without, it is a replay program
 * (`make fuzz-replay`): `fuzz_ccvm FILE|DIR...` runs each input, and
 * `fuzz_ccvm --write-seeds DIR` writes the seed corpus kept in
 * tests/fuzz-corpus.
 */
#include <dirent.h>
#include <stdatomic.h>
#include <stddef.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>
#include <ccvm/explore.h>

#define PAGE		CCVM_PAGE_SIZE
#define WIN_PAGES	96		/* guest ops address [0, 96 pages) */
#define SLOT_BACKING	(WIN_PAGES + 8)	/* VMM page backing fuzzed slot 1, +8 per id */
#define SHARED_PAGES	(SLOT_BACKING + NR_SLOTS * 8)
#define SLOT0_PAGES	16		/* slot 0: GPA pages 0-15, gmem pages 0-15 */
#define GMEM_PAGES	32
#define NR_SLOTS	4		/* slot 0 and fuzzed slots 1-3 */
#define MAX_BACKENDS	8
#define MAX_HOST_OPS	48
#define MAX_GUEST_OPS	16
#define MAX_RUNS	12
#define MAX_RECS	(MAX_HOST_OPS * (1 + MAX_GUEST_OPS))
/*
 * Per run, MMIO and memory-fault exits beyond MAX_EXITS end it (the same
 * everywhere); exceptions and hypercalls, whose number depends on the
 * backend, have a bound of their own that only a loop reaches.
 */
#define MAX_EXITS	256
#define MAX_OTHER_EXITS	4096
#define GUEST_BUF	(2 * PAGE)

#define NOT_RUN		9999		/* a guest op the run never reached */

/*
 * The huge-folio file: 2 MiB of gmem with 2 MiB folios where the backend
 * has them (4 KiB folios elsewhere: every guest-visible result must be the
 * same), bound whole at HUGE_GPA by its own slot, made on the first H_HUGE.
 */
#define HUGE_PAGES	512
#define HUGE_GPA	(8ull << 20)
#define HUGE_SLOT	8

/* ---- records ------------------------------------------------------------------ */

enum rec_kind {
	R_SET_ATTR, R_PUNCH, R_ALLOC, R_SLOT, R_PREFAULT, R_RUN, R_GMEM_RW, R_GET_ATTR,
	R_GMEM_INFO, R_WRAP,
	R_G_READ, R_G_WRITE, R_G_MAP, R_G_ACCEPT,
	R_INJECT, R_GMEM_CLOSE, R_TERMINATE, R_POPULATE, R_FINALIZE, R_QUERY, R_KNOB, R_TRACE,
	R_MT_RUN, R_VM2, R_EXPLORE, R_GSET, R_PIN,
	R_INFO, R_PHYS, R_SCHED, R_G_INFO, R_G_SYNC, R_G_ABORT,
	R_HUGE, R_G_HUGE,
	R_NR_KINDS
};

static const char *const rec_names[R_NR_KINDS] = {
	"set_attr", "punch", "alloc", "slot", "prefault", "run", "gmem_rw", "get_attr",
	"gmem_info", "wrap", "guest_read", "guest_write", "guest_map_gpa", "guest_accept",
	"inject", "gmem_close", "terminate", "populate", "finalize", "query", "knob", "trace",
	"mt_run", "vm2", "explore", "gmem_set_attr", "pin",
	"info", "phys", "sched", "guest_info", "guest_sync", "guest_abort",
	"huge", "guest_huge",
};

#define F_MISMATCH	(1u << 0)	/* access through the alias the attribute does not say */
#define F_ACCEPT_ODD	(1u << 1)	/* accept of a page that is not private gmem memory */
#define F_ZAPDEP	(1u << 2)	/* read private bytes zapped without a punch */
#define F_GMEM_HOST	(1u << 3)	/* gmem host access */
#define F_ACCEPTED	(1u << 4)	/* gmem_info after an explicit accept */
#define F_DIVERGE	(1u << 5)	/* backends may part here: nothing after is compared */
#define F_LAUNCH	(1u << 6)	/* launch op: compared where needs_finalize agrees */
#define F_NOCMP		(1u << 7)	/* recorded, not compared (backend-specific values) */

struct rec {
	uint8_t kind;
	uint8_t flags;
	int32_t err;
	uint64_t v0, v1;	/* op-specific results */
	uint64_t data;		/* hash of the bytes read */
	uint64_t mmio;		/* hash of the MMIO exits during a guest op */
	uint64_t memfault;	/* hash of the memory-fault exits during a guest op */
	uint32_t nr_mmio, nr_memfault, nr_exc;
	char what[48];		/* the decoded op, for reports */
};

static uint64_t hash_mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	return h * 0x100000001b3ull;
}

static uint64_t hash_bytes(const uint8_t *b, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

/* ---- the world of one backend ---------------------------------------------------- */

struct slot_shadow {
	bool used;
	bool gmem;
	bool backing;		/* has shared backing (userspace_addr) */
	uint64_t gpa_page, npages, gmem_page;
};

struct world {
	const char *backend;
	bool in_place;			/* header 0x40: the VM converts in place */
	bool mt;			/* two VMM threads convert at once */
	struct ccvm_backend_caps caps;
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	/*
	 * VMM memory: slot 0's shared backing at the start, each fuzzed slot's
	 * at SLOT_BACKING + 8 * id pages (fixed, so a slot can move).
	 */
	uint8_t *shared;
	uint64_t sbit;
	uint64_t free_start;
	bool punch_on_share;
	bool gmem_first;		/* teardown closes the gmem file first */
	unsigned int nr_runs;
	/*
	 * The vCPUs, made before finalize (TDX refuses them after): one per
	 * RUN, used once and closed, and one for pre-faults.
	 */
	struct ccvm_vcpu *vcpus[MAX_RUNS];
	struct ccvm_vcpu *pv;
	bool accepted;
	bool serial;			/* the platform runs on the serial scheduler */
	bool finalized;
	bool injected;			/* a failure was injected: leaks are allowed */
	bool tracing;			/* a trace file is open */
	struct kept *kept;		/* what this backend keeps across inputs */
	/* The second VM (header bit 4): its own gmem file, slot and vCPU. */
	struct ccvm_vm *vm2;
	struct ccvm_gmem *g2;
	struct ccvm_vcpu *v2;
	uint8_t *shared2;			/* the guest ran an explicit accept */
	/* The huge-folio file (H_HUGE), its slot and, per VM, its VMM buffer. */
	struct ccvm_gmem *hg;
	bool hbound;
	int hcreate_err;
	uint8_t *hmap;			/* the mmap behind hshared */
	uint8_t *hshared;		/* 2 MiB aligned */
	uint8_t hattr[HUGE_PAGES];	/* PRIVATE per page, read back after each op */
	bool hzap[HUGE_PAGES];		/* bytes left to the backend by a conversion */

	/*
	 * Shadows, written by the harness thread and read by the guest after
	 * the run handoff.  attr[] is read back from the library after every
	 * attribute change, so it is the truth.
	 */
	uint8_t attr[WIN_PAGES];
	uint8_t fattr[GMEM_PAGES];	/* in place: the file's attributes */
	struct slot_shadow slots[NR_SLOTS];
	bool zapdep[GMEM_PAGES];
	/*
	 * File pages a deleted slot had bound: SNP's RMP entry of such a page,
	 * once private, keeps the slot's GPA until the file frees the page, so
	 * a private access through a slot that binds it elsewhere fails there
	 * (the TDX zap removed it from the S-EPT; the mock keeps no GPA).
	 * Cleared by a punch.
	 */
	bool moved[GMEM_PAGES];

	struct rec recs[MAX_RECS];
	unsigned int nrec;
};

/* The input being replayed, for reports (NULL under libFuzzer). */
static const char *current_input;

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "fuzz_ccvm: %s%s", current_input ? current_input : "",
		current_input ? ": " : "");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

static void quiet_log(enum ccvm_log_level level, const char *msg, void *ctx)
{
	(void)level;
	(void)msg;
	(void)ctx;
}

static struct rec *rec_new(struct world *w, enum rec_kind kind)
{
	struct rec *r;

	if (w->nrec == MAX_RECS)
		die("record table full");
	r = &w->recs[w->nrec++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	return r;
}

static int gmem_index(const struct world *w, uint64_t page);

/* In place: the file's attributes, page by page; a closed file is shared. */
static void refresh_file_attrs(struct world *w)
{
	uint64_t page = 0;

	memset(w->fattr, 0, sizeof(w->fattr));
	while (w->g && page < GMEM_PAGES) {
		uint64_t a = 0, run = 0, n;

		if (ccvm_gmem_get_memory_attributes(w->g, page * PAGE, &a, &run))
			die("%s: gmem_get_memory_attributes failed", w->backend);
		n = run / PAGE;
		if (!n)
			die("%s: gmem attribute run of 0 pages", w->backend);
		for (; n && page < GMEM_PAGES; n--, page++)
			w->fattr[page] = (a & CCVM_MEMORY_ATTRIBUTE_PRIVATE) != 0;
	}
}

static void refresh_attrs(struct world *w)
{
	uint64_t page = 0;

	if (w->in_place) {
		/* A gfn is private iff the file page bound there is; the VM store never. */
		refresh_file_attrs(w);
		for (page = 0; page < WIN_PAGES; page++) {
			int idx = gmem_index(w, page);
			uint64_t a = 0;

			if (ccvm_vm_get_memory_attribute(w->vm, page * PAGE, &a) || a)
				die("%s: PRIVATE in the VM store of an in-place VM", w->backend);
			w->attr[page] = idx >= 0 && w->fattr[idx];
		}
		return;
	}
	while (page < WIN_PAGES) {
		uint64_t a = 0, run = 0, n;

		if (ccvm_vm_get_memory_attributes(w->vm, page * PAGE, &a, &run))
			die("%s: get_memory_attributes failed", w->backend);
		n = run / PAGE;
		if (!n)
			die("%s: attribute run of 0 pages", w->backend);
		for (; n && page < WIN_PAGES; n--, page++)
			w->attr[page] = (a & CCVM_MEMORY_ATTRIBUTE_PRIVATE) != 0;
	}
}

static const struct slot_shadow *slot_at(const struct world *w, uint64_t page)
{
	unsigned int i;

	for (i = 0; i < NR_SLOTS; i++) {
		const struct slot_shadow *s = &w->slots[i];

		if (s->used && page >= s->gpa_page && page < s->gpa_page + s->npages)
			return s;
	}
	return NULL;
}

/* The gmem page behind GPA page @page, or -1. */
static int gmem_index(const struct world *w, uint64_t page)
{
	const struct slot_shadow *s = slot_at(w, page);

	if (!s || !s->gmem)
		return -1;
	return (int)(s->gmem_page + (page - s->gpa_page));
}

/* Attributes changed: private pages that went shared lost their mapping. */
static void attrs_changed(struct world *w, const uint8_t *before)
{
	uint64_t page;

	refresh_attrs(w);
	for (page = 0; page < WIN_PAGES; page++) {
		int idx = gmem_index(w, page);

		if (before[page] && !w->attr[page] && idx >= 0)
			w->zapdep[idx] = true;
	}
}

/*
 * In place, KVM_SET_MEMORY_ATTRIBUTES2 on the file, its shadow updated.  A
 * page whose attribute changed holds what the backend left there, unless
 * ZERO cleared the range (then every page of it reads zero everywhere).
 */
static int file_set(struct world *w, struct ccvm_memory_attributes2 *a)
{
	uint8_t before[GMEM_PAGES];
	bool changed = false;
	uint64_t i;
	int err;

	memcpy(before, w->fattr, sizeof(before));
	err = ccvm_gmem_set_memory_attributes(w->g, a);
	refresh_attrs(w);
	for (i = 0; i < GMEM_PAGES; i++) {
		if (before[i] == w->fattr[i])
			continue;
		/* Nothing changes on an error (another VMM thread's may have). */
		if (err && !w->mt)
			die("%s: a failed gmem conversion changed page %" PRIu64, w->backend, i);
		changed = true;
		w->zapdep[i] = true;
	}
	if (!err && changed && (a->flags & CCVM_MEMORY_ATTRIBUTES2_ZERO))
		for (i = a->offset / PAGE; i < (a->offset + a->size) / PAGE && i < GMEM_PAGES; i++)
			w->zapdep[i] = false;
	return err;
}

/*
 * In place, the VMM converts the file pages bound at [gpa, gpa + size), run
 * by run; a gfn without gmem has no PRIVATE to take (-EINVAL), nor needs
 * a conversion to shared.
 */
static int set_attrs_in_place(struct world *w, uint64_t gpa, uint64_t size, bool priv)
{
	uint64_t page = gpa / PAGE, end = (gpa + size) / PAGE;
	int err = 0;

	if (!w->g)
		return priv ? -EINVAL : 0;
	while (page < end && !err) {
		int idx = gmem_index(w, page);
		uint64_t n = 1;
		struct ccvm_memory_attributes2 a = {
			.attributes = priv ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
		};

		if (idx < 0) {
			if (priv)
				err = -EINVAL;
			page++;
			continue;
		}
		while (page + n < end && gmem_index(w, page + n) == idx + (int)n)
			n++;
		a.offset = (uint64_t)idx * PAGE;
		a.size = n * PAGE;
		err = file_set(w, &a);
		page += n;
	}
	return err;
}

static int set_attrs(struct world *w, uint64_t gpa, uint64_t size, bool priv)
{
	uint8_t before[WIN_PAGES];
	int err;

	if (w->in_place)
		return set_attrs_in_place(w, gpa, size, priv);
	memcpy(before, w->attr, sizeof(before));
	err = ccvm_vm_set_memory_attributes(w->vm, gpa, size,
					    priv ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);
	/* Even a failed update may have changed the store (update_mem_attr). */
	attrs_changed(w, before);
	return err;
}

static int punch(struct world *w, uint64_t off, uint64_t len)
{
	int err = ccvm_gmem_fallocate(w->g, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
				      off, len);
	uint64_t i;

	if (!err)
		for (i = off / PAGE; i < (off + len) / PAGE && i < GMEM_PAGES; i++)
			w->zapdep[i] = w->moved[i] = false;
	return err;
}

/* Does [@gpa, @gpa + @len) reach a file page a deleted slot had bound (moved[])? */
static bool reaches_moved(const struct world *w, uint64_t gpa, uint64_t len)
{
	uint64_t p;

	for (p = gpa / PAGE; p < (gpa + len + PAGE - 1) / PAGE && p < WIN_PAGES; p++) {
		int idx = gmem_index(w, p);

		if (idx >= 0 && w->moved[idx])
			return true;
	}
	return false;
}

static void check_invariants(struct world *w, const char *when)
{
	struct ccvm_invariant_report rep = { .sz = sizeof(rep) };

	if (w->vm) {
		if (ccvm_vm_check_invariants(w->vm, &rep))
			die("%s: vm invariant check failed to run", w->backend);
		if (rep.invariant)
			die("%s: after %s: invariant I%u broken (gfn %#" PRIx64 " pfn %#" PRIx64
			    "): %s", w->backend, when, rep.invariant, rep.gfn, rep.pfn, rep.msg);
	}
	memset(&rep, 0, sizeof(rep));
	rep.sz = sizeof(rep);
	if (ccvm_platform_check_invariants(w->p, &rep))
		die("%s: platform invariant check failed to run", w->backend);
	if (rep.invariant)
		die("%s: after %s: platform invariant I%u broken: %s", w->backend, when,
		    rep.invariant, rep.msg);
}

/* ---- decoding ------------------------------------------------------------------- */

struct input {
	const uint8_t *d;
	size_t n, pos;
};

static bool take(struct input *in, uint8_t *b, size_t k)
{
	if (in->n - in->pos < k)
		return false;
	memcpy(b, in->d + in->pos, k);
	in->pos += k;
	return true;
}

enum host_op {
	H_SET_ATTR, H_PUNCH, H_ALLOC, H_SLOT, H_PREFAULT, H_RUN, H_GMEM_RW, H_GET_ATTR,
	H_GMEM_INFO, H_WRAP,
	H_INJECT, H_GMEM_CLOSE, H_TERMINATE, H_POPULATE, H_FINALIZE, H_QUERY, H_KNOB,
	H_TRACE, H_MT_RUN, H_VM2, H_EXPLORE, H_GSET, H_PIN,
	H_INFO, H_PHYS, H_SCHED, H_HUGE,
	H_NR
};

/*
 * Argument bytes after the op byte (H_RUN: then 4 bytes per guest op;
 * H_MT_RUN: then 4 bytes per guest op of each of its two runs).
 */
static const uint8_t host_args[H_NR] = {
	[H_SET_ATTR] = 3, [H_PUNCH] = 3, [H_ALLOC] = 3, [H_SLOT] = 4, [H_PREFAULT] = 2,
	[H_RUN] = 1, [H_GMEM_RW] = 4, [H_GET_ATTR] = 1, [H_GMEM_INFO] = 0, [H_WRAP] = 0,
	[H_INJECT] = 3, [H_GMEM_CLOSE] = 0, [H_TERMINATE] = 0, [H_POPULATE] = 2,
	[H_FINALIZE] = 0, [H_QUERY] = 1, [H_KNOB] = 2, [H_TRACE] = 1, [H_MT_RUN] = 1,
	[H_VM2] = 2, [H_EXPLORE] = 3, [H_GSET] = 4, [H_PIN] = 3,
	[H_INFO] = 2, [H_PHYS] = 3, [H_SCHED] = 1, [H_HUGE] = 3,
};

enum guest_op { G_READ, G_WRITE, G_MAP, G_ACCEPT, G_NR };

/*
 * A guest op whose first byte has bit 2 set is one of these, picked by
 * bits 5-7 (the seeds' ops leave those bits clear).
 */
#define G_EXT		4
enum guest_ext_op { GX_INFO, GX_SYNC, GX_ABORT, GX_HUGE, GX_NR };

enum alias_mode { ALIAS_AUTO, ALIAS_AUTO2, ALIAS_PRIVATE, ALIAS_SHARED };

struct gop {
	uint8_t b[4];
};

struct prog {
	struct gop ops[MAX_GUEST_OPS];
	unsigned int n;
};

static const uint32_t lens[8] = { 1, 8, 16, 64, 512, 4096, 4097, 6000 };

/* ---- host operations -------------------------------------------------------------- */

static uint64_t npages_of(uint8_t b, unsigned int max)
{
	return 1 + b % max;
}

static void op_set_attr(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_SET_ATTR);
	uint64_t gpa = (a[0] % WIN_PAGES) * PAGE, size = npages_of(a[1], 16) * PAGE;
	uint64_t attrs = (a[2] & 1) ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, flags = 0;
	uint8_t before[WIN_PAGES];

	switch ((a[2] >> 1) % 12) {
	case 1: gpa += 1; break;
	case 2: size = 0; break;
	case 3: flags = 1; break;
	case 4: attrs |= 1; break;
	case 5: size += 1; break;
	case 6: size = UINT64_MAX & ~(PAGE - 1); break;	/* wraps */
	default: break;
	}
	snprintf(r->what, sizeof(r->what), "set_attr %#" PRIx64 "+%#" PRIx64 " %#" PRIx64,
		 gpa, size, attrs);
	memcpy(before, w->attr, sizeof(before));
	r->err = ccvm_vm_set_memory_attributes(w->vm, gpa, size, attrs, flags);
	attrs_changed(w, before);
}

static void op_fallocate(struct world *w, const uint8_t *a, bool is_punch)
{
	struct rec *r = rec_new(w, is_punch ? R_PUNCH : R_ALLOC);
	uint64_t off = (a[0] % GMEM_PAGES) * PAGE, len = npages_of(a[1], 16) * PAGE;
	int mode = CCVM_FALLOC_KEEP_SIZE | (is_punch ? CCVM_FALLOC_PUNCH_HOLE : 0);

	switch (a[2] % 8) {
	case 1: mode &= ~CCVM_FALLOC_KEEP_SIZE; break;
	case 2: off += 512; break;
	case 3: len = (GMEM_PAGES + 4) * PAGE; break;		/* past EOF */
	case 4: off = (uint64_t)INT64_MAX & ~(PAGE - 1); break;	/* loff_t overflow */
	default: break;
	}
	snprintf(r->what, sizeof(r->what), "%s %#" PRIx64 "+%#" PRIx64 " mode %d",
		 is_punch ? "punch" : "alloc", off, len, mode);
	if (is_punch && mode == (CCVM_FALLOC_KEEP_SIZE | CCVM_FALLOC_PUNCH_HOLE) &&
	    off % PAGE == 0) {
		r->err = punch(w, off, len);
		return;
	}
	r->err = ccvm_gmem_fallocate(w->g, mode, off, len);
}

static void op_slot(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_SLOT);
	uint32_t id = 1 + a[0] % (NR_SLOTS - 1);
	uint64_t gpa_page = a[1] % (WIN_PAGES - 16), npages = a[2] % 9;	/* 0 deletes */
	bool gmem = a[3] & 1, backing = !(a[3] & 2);
	uint64_t gmem_page = 16 + ((a[3] >> 2) % 4) * 4;
	struct ccvm_memory_region mr = {
		.slot = id,
		.flags = gmem ? CCVM_MEM_GUEST_MEMFD : 0,
		.guest_phys_addr = gpa_page * PAGE,
		.memory_size = npages * PAGE,
		.userspace_addr = backing ? w->shared + (SLOT_BACKING + 8 * id) * PAGE : NULL,
		.gmem = gmem ? w->g : NULL,
		.gmem_offset = gmem_page * PAGE,
	};
	struct slot_shadow *s = &w->slots[id];
	uint64_t i;

	switch ((a[3] >> 4) % 8) {
	case 1: mr.gmem = NULL; break;				/* -EBADF with gmem */
	case 2: mr.gmem_offset = (GMEM_PAGES - 2) * PAGE; break;	/* past EOF */
	case 3: mr.flags |= CCVM_MEM_READONLY; break;
	case 4: mr.guest_phys_addr += 1; break;
	default: break;
	}
	snprintf(r->what, sizeof(r->what), "slot %u gpa %#" PRIx64 " %" PRIu64 "p %s%s", id,
		 (uint64_t)mr.guest_phys_addr, npages, gmem ? "gmem" : "plain",
		 backing ? "" : " nobacking");
	r->err = ccvm_vm_set_user_memory_region(w->vm, &mr);
	if (r->err)
		return;
	if (!npages) {
		/* Deleted: its private mappings went without a punch. */
		for (i = 0; s->gmem && i < s->npages; i++)
			w->zapdep[s->gmem_page + i] = w->moved[s->gmem_page + i] = true;
		s->used = false;
		return;
	}
	if (s->used && s->gmem)
		die("%s: a gmem slot was modified (%s)", w->backend, r->what);
	s->used = true;
	s->gmem = mr.flags & CCVM_MEM_GUEST_MEMFD;
	s->backing = mr.userspace_addr != NULL;
	s->gpa_page = gpa_page;
	s->npages = npages;
	s->gmem_page = gmem_page;
}

static void op_prefault(struct world *w, const uint8_t *a, struct ccvm_vcpu *v)
{
	struct rec *r = rec_new(w, R_PREFAULT);
	uint64_t gpa = (a[0] % WIN_PAGES) * PAGE, size = npages_of(a[1], 16) * PAGE;
	int err = 0;

	snprintf(r->what, sizeof(r->what), "prefault %#" PRIx64 "+%#" PRIx64, gpa, size);
	if (reaches_moved(w, gpa, size))
		r->flags |= F_DIVERGE;
	/* Partial progress returns 0: go on until done or an error, as a VMM. */
	while (size) {
		uint64_t left = size;

		err = ccvm_vcpu_pre_fault_memory(v, &gpa, &size);
		if (err)
			break;
		if (size >= left)
			die("%s: pre-fault returned 0 without progress (%s)", w->backend,
			    r->what);
	}
	r->err = err;
	r->v0 = gpa;
}

#define NO_OFFSET	0x5e5e5e5e5e5e5e5eull	/* an out field the call did not write */

/* Pages of the file range [off, off + len) whose bytes are the backend's own. */
static bool file_zapdep(const struct world *w, uint64_t off, uint64_t len)
{
	uint64_t i;

	for (i = off / PAGE; i <= (off + len - 1) / PAGE && i < GMEM_PAGES; i++)
		if (w->zapdep[i])
			return true;
	return false;
}

/*
 * Host access through the file's mapping: ccvm_gmem_read/write, or (a[3]
 * bit 1) ccvm_gmem_access() with the offset a refused access faulted at.
 */
static void op_gmem_rw(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_GMEM_RW);
	uint64_t off = (a[0] % GMEM_PAGES) * PAGE + (a[1] & 0xf) * 256, fault = NO_OFFSET, p;
	uint32_t len = lens[(a[1] >> 4) % 8];
	bool write = a[3] & 1, access = a[3] & 2;
	static uint8_t buf[2 * PAGE];
	uint32_t i;

	r->flags = F_GMEM_HOST;
	snprintf(r->what, sizeof(r->what), "gmem_%s%s %#" PRIx64 "+%u", access ? "access_" : "",
		 write ? "write" : "read", off, len);
	if (write)
		for (i = 0; i < len; i++)
			buf[i] = (uint8_t)(a[2] + i * 7);
	else
		memset(buf, 0, len);
	if (access)
		r->err = ccvm_gmem_access(w->g, off, buf, len,
					  write ? CCVM_GMEM_ACCESS_WRITE : 0, &fault);
	else
		r->err = write ? ccvm_gmem_write(w->g, off, buf, len)
			       : ccvm_gmem_read(w->g, off, buf, len);
	r->v0 = fault;
	if (!write && !r->err) {
		r->data = hash_bytes(buf, len);
		if (file_zapdep(w, off, len))
			r->flags |= F_ZAPDEP;
	}
	/* Whole pages written: the same bytes everywhere again. */
	if (write && !r->err)
		for (p = (off + PAGE - 1) / PAGE; (p + 1) * PAGE <= off + len && p < GMEM_PAGES;
		     p++)
			w->zapdep[p] = false;
}

/*
 * KVM_SET_MEMORY_ATTRIBUTES2 on the main file: a[0] offset, a[1] pages,
 * a[2] bit 0 private, bits 1-2 the content mode (3: both, refused), bits
 * 3-6 a bad field; a[3] which reserved word.  Records the errno, the
 * error_offset (NO_OFFSET when not written) and the file's private pages.
 */
static void op_gset(struct world *w, const uint8_t *a)
{
	static const uint64_t modes[4] = {
		0, CCVM_MEMORY_ATTRIBUTES2_ZERO, CCVM_MEMORY_ATTRIBUTES2_PRESERVE,
		CCVM_MEMORY_ATTRIBUTES2_ZERO | CCVM_MEMORY_ATTRIBUTES2_PRESERVE,
	};
	struct rec *r = rec_new(w, R_GSET);
	struct ccvm_memory_attributes2 m = {
		.offset = (a[0] % GMEM_PAGES) * PAGE,
		.size = npages_of(a[1], 16) * PAGE,
		.attributes = (a[2] & 1) ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
		.flags = modes[(a[2] >> 1) % 4],
		.error_offset = NO_OFFSET,
	};
	struct ccvm_gmem_info gi = { .sz = sizeof(gi) };

	switch ((a[2] >> 3) % 16) {
	case 1: m.offset += 512; break;
	case 2: m.size = 0; break;
	case 3: m.reserved[a[3] % 11] = 1 + a[3]; break;
	case 4: m.flags |= 1ull << (2 + a[3] % 62); break;
	case 5: m.attributes |= 1ull << (a[3] % 64); break;
	case 6: m.size = UINT64_MAX & ~(PAGE - 1); break;	/* wraps */
	case 7: m.offset = GMEM_PAGES * PAGE; break;		/* at EOF */
	case 8: m.size += 1; break;
	default: break;
	}
	snprintf(r->what, sizeof(r->what), "gset %#" PRIx64 "+%#" PRIx64 " %s mode %u",
		 m.offset, m.size, m.attributes ? "private" : "shared", (unsigned int)(m.flags & 3));
	/* PRESERVE's rules are the launch's: compared where needs_finalize agrees. */
	if (m.flags & CCVM_MEMORY_ATTRIBUTES2_PRESERVE)
		r->flags = F_LAUNCH;
	if (!w->g) {
		r->err = -EBADF;
		return;
	}
	r->err = w->in_place ? file_set(w, &m) : ccvm_gmem_set_memory_attributes(w->g, &m);
	r->v0 = m.error_offset;
	if (ccvm_gmem_get_info(w->g, &gi))
		die("%s: gmem_get_info", w->backend);
	r->v1 = gi.nr_private;
}

/*
 * A host pin (a[2] bit 0 clear) or unpin of [a[0], + a[1] % 4 + 1 pages)
 * of the main file, with a bad field per a[2] bits 1-3.  Records the errno
 * and the pinned page count.
 */
static void op_pin(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_PIN);
	uint64_t off = (a[0] % GMEM_PAGES) * PAGE, size = npages_of(a[1], 4) * PAGE;
	bool unpin = a[2] & 1;
	struct ccvm_gmem_info gi = { .sz = sizeof(gi) };

	switch ((a[2] >> 1) % 8) {
	case 1: off += 8; break;
	case 2: size = 0; break;
	case 3: off = (GMEM_PAGES - 1) * PAGE; size = 2 * PAGE; break;	/* across EOF */
	default: break;
	}
	snprintf(r->what, sizeof(r->what), "%s %#" PRIx64 "+%#" PRIx64, unpin ? "unpin" : "pin",
		 off, size);
	if (!w->g) {
		r->err = -EBADF;
		return;
	}
	r->err = unpin ? ccvm_gmem_unpin(w->g, off, size) : ccvm_gmem_pin(w->g, off, size);
	if (ccvm_gmem_get_info(w->g, &gi))
		die("%s: gmem_get_info", w->backend);
	/* Pins only: which pages a backend has allocated is its own before launch. */
	r->v0 = gi.nr_pinned;
}

static void op_get_attr(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_GET_ATTR);
	uint64_t gpa = (a[0] % WIN_PAGES) * PAGE;

	snprintf(r->what, sizeof(r->what), "get_attr %#" PRIx64, gpa);
	r->err = ccvm_vm_get_memory_attributes(w->vm, gpa, &r->v0, &r->v1);
}

static void op_gmem_info(struct world *w)
{
	struct rec *r = rec_new(w, R_GMEM_INFO);
	struct ccvm_gmem_info i = { .sz = sizeof(i) };

	snprintf(r->what, sizeof(r->what), "gmem_info");
	if (w->accepted)
		r->flags |= F_ACCEPTED;
	r->err = ccvm_gmem_get_info(w->g, &i);
	r->v0 = i.nr_pages;
	r->v1 = i.nr_bindings;
}

/* ---- the guest ------------------------------------------------------------------- */

struct guest_ctx {
	struct world *w;
	const struct prog *prog;
	unsigned int rec_base;
	unsigned int cur;		/* record of the running guest op */
};

static uint8_t fill_byte(uint8_t seed, uint64_t gpa)
{
	return (uint8_t)(seed * 29 + gpa * 13 + (gpa >> 12) * 3 + 7);
}

/* Does the attribute of every window page of [gpa, gpa+len) equal @priv? */
static bool attr_matches(const struct world *w, uint64_t gpa, uint64_t len, bool priv)
{
	uint64_t p;

	for (p = gpa / PAGE; p <= (gpa + len - 1) / PAGE && p < WIN_PAGES; p++)
		if (w->attr[p] != priv)
			return false;
	return true;
}

/*
 * Private gmem pages of the range that were zapped without a punch; in
 * place, shared ones too (the guest's shared access reaches the gmem page,
 * whose bytes a conversion left to the backend).
 */
static bool reads_zapdep(const struct world *w, uint64_t gpa, uint64_t len)
{
	uint64_t p;

	for (p = gpa / PAGE; p <= (gpa + len - 1) / PAGE && p < WIN_PAGES; p++) {
		int idx = gmem_index(w, p);

		if ((w->attr[p] || w->in_place) && idx >= 0 && w->zapdep[idx])
			return true;
	}
	return false;
}

/*
 * A guest read or write; on #VE/#VC, accept every page of the range (one by
 * one: an accepted page answers -EEXIST) and retry once.
 */
static int guest_access(struct ccvm_guest *g, uint64_t gpa, uint64_t sbit, uint8_t *buf,
			size_t len, bool write)
{
	uint64_t p;
	int tries, r = 0;

	for (tries = 0; tries < 2; tries++) {
		r = write ? ccvm_guest_write(g, gpa | sbit, buf, len)
			  : ccvm_guest_read(g, gpa | sbit, buf, len);
		if (r != -EACCES)
			break;
		for (p = gpa & ~(PAGE - 1); p < gpa + len; p += PAGE)
			ccvm_guest_accept(g, p, PAGE);
	}
	return r;
}

static void guest_rw(struct ccvm_guest *g, struct world *w, struct rec *r, const struct gop *o,
		     bool write)
{
	static _Thread_local uint8_t buf[GUEST_BUF];
	uint64_t page = o->b[1] % WIN_PAGES;
	uint64_t gpa = page * PAGE + (o->b[2] & 0xf) * 256;
	uint64_t len = lens[(o->b[2] >> 4) % 8], p;
	enum alias_mode mode = (o->b[0] >> 3) % 4;
	bool priv;
	uint64_t i;

	if (gpa + len > WIN_PAGES * PAGE)
		len = WIN_PAGES * PAGE - gpa;
	if (mode == ALIAS_PRIVATE || mode == ALIAS_SHARED) {
		priv = mode == ALIAS_PRIVATE;
		if (!attr_matches(w, gpa, len, priv))
			r->flags |= F_MISMATCH;
	} else {
		priv = w->attr[page];
		/* A range over both kinds: the second part is a mismatch. */
		if (!attr_matches(w, gpa, len, priv))
			r->flags |= F_MISMATCH;
	}
	snprintf(r->what, sizeof(r->what), "guest_%s %#" PRIx64 "+%" PRIu64 " %s",
		 write ? "write" : "read", gpa, len, priv ? "private" : "shared");
	if (!write && reads_zapdep(w, gpa, len))
		r->flags |= F_ZAPDEP;
	if (reaches_moved(w, gpa, len))
		r->flags |= F_DIVERGE;
	if (write)
		for (i = 0; i < len; i++)
			buf[i] = fill_byte(o->b[3], gpa + i);
	else
		memset(buf, 0xee, len);
	r->err = guest_access(g, gpa, priv ? 0 : w->sbit, buf, len, write);
	if (!write && !r->err)
		r->data = hash_bytes(buf, len);
	/* The access may have converted pages on the way (memory-fault exits). */
	if (!write && reads_zapdep(w, gpa, len))
		r->flags |= F_ZAPDEP;
	/* Whole gmem pages rewritten (shared ones too in place): the same bytes again. */
	if (write && !r->err && (priv || w->in_place))
		for (p = (gpa + PAGE - 1) / PAGE; (p + 1) * PAGE <= gpa + len; p++)
			if (gmem_index(w, p) >= 0)
				w->zapdep[gmem_index(w, p)] = false;
}

/*
 * A guest access of 8 bytes in the huge-folio file's slot, through the
 * alias its attribute says (b[0] bit 3: write, bit 4: accept the 2 MiB
 * block at 2 MiB first when it is all private; b[1] and b[2] bit 0: the
 * page; b[2] bits 1-7: the offset in 32-byte steps; b[3]: the bytes).  On
 * #VE/#VC the guest accepts the page and retries: an SNP 4K accept inside
 * a 2M RMP entry needs KVM to PSMASH first, so a few times.
 */
static void guest_huge(struct ccvm_guest *g, struct world *w, struct rec *r,
		       const struct gop *o)
{
	uint64_t page = o->b[1] | ((uint64_t)(o->b[2] & 1) << 8);
	uint64_t gpa = HUGE_GPA + page * PAGE + (uint64_t)(o->b[2] >> 1) * 32;
	bool write = o->b[0] & 8, priv = w->hattr[page];
	uint8_t buf[8];
	int tries, i;

	snprintf(r->what, sizeof(r->what), "guest_huge %s %#" PRIx64 " %s",
		 write ? "write" : "read", gpa, priv ? "private" : "shared");
	if (!w->hbound) {
		r->err = -ENOENT;
		return;
	}
	if ((o->b[0] & 0x10) && priv) {
		bool all = true;

		for (i = 0; i < HUGE_PAGES; i++)
			all &= w->hattr[i];
		/* The result is the backend's own (-ERANGE over 4K mappings). */
		if (all)
			(void)ccvm_guest_accept_level(g, HUGE_GPA, HUGE_PAGES * PAGE,
						      CCVM_LEVEL_2M);
	}
	if (w->hzap[page])
		r->flags |= F_ZAPDEP;
	for (i = 0; i < (int)sizeof(buf); i++)
		buf[i] = write ? fill_byte(o->b[3], gpa + (uint64_t)i) : 0xee;
	for (tries = 0; tries < 4; tries++) {
		r->err = write ? ccvm_guest_write(g, gpa | (priv ? 0 : w->sbit), buf, sizeof(buf))
			       : ccvm_guest_read(g, gpa | (priv ? 0 : w->sbit), buf, sizeof(buf));
		if (r->err != -EACCES)
			break;
		(void)ccvm_guest_accept(g, gpa & ~(PAGE - 1), PAGE);
	}
	if (!write && !r->err)
		r->data = hash_bytes(buf, sizeof(buf));
}

static void guest_fn(struct ccvm_guest *g, void *arg)
{
	struct guest_ctx *c = arg;
	struct world *w = c->w;
	unsigned int i;

	for (i = 0; i < c->prog->n; i++) {
		const struct gop *o = &c->prog->ops[i];
		struct rec *r = &w->recs[c->rec_base + i];
		uint64_t gpa = (o->b[1] % WIN_PAGES) * PAGE;
		uint64_t size = npages_of(o->b[2], 8) * PAGE, p;

		c->cur = c->rec_base + i;
		if (gpa + size > WIN_PAGES * PAGE)
			size = WIN_PAGES * PAGE - gpa;
		switch (r->kind) {
		case R_G_READ:
			guest_rw(g, w, r, o, false);
			break;
		case R_G_WRITE:
			guest_rw(g, w, r, o, true);
			break;
		case R_G_MAP:
			snprintf(r->what, sizeof(r->what), "guest_map_gpa %#" PRIx64 "+%#" PRIx64
				 " %s", gpa, size, (o->b[3] & 1) ? "private" : "shared");
			r->err = ccvm_guest_map_gpa(g, gpa, size, o->b[3] & 1);
			break;
		case R_G_ACCEPT:
			snprintf(r->what, sizeof(r->what), "guest_accept %#" PRIx64 "+%#" PRIx64,
				 gpa, size);
			for (p = gpa / PAGE; p < (gpa + size) / PAGE; p++)
				if (!w->attr[p] || gmem_index(w, p) < 0)
					r->flags |= F_ACCEPT_ODD;
			if (reaches_moved(w, gpa, size))
				r->flags |= F_DIVERGE;
			w->accepted = true;
			r->err = ccvm_guest_accept(g, gpa, size);
			if (r->err == -EEXIST)
				r->err = 0;	/* already accepted: the page is usable */
			break;
		case R_G_INFO:
			snprintf(r->what, sizeof(r->what), "guest_info");
			r->err = 0;
			r->v0 = ccvm_guest_vcpu_id(g);
			/* The guest's view of the shared bit is the VMM's. */
			r->v1 = ccvm_guest_shared_bit(g) == w->sbit;
			break;
		case R_G_SYNC:
			snprintf(r->what, sizeof(r->what), "guest_sync %u", o->b[3]);
			r->err = 0;
			ccvm_guest_sync(g, o->b[3]);
			break;
		case R_G_ABORT:
			snprintf(r->what, sizeof(r->what), "guest_abort");
			r->err = 0;
			ccvm_guest_abort(g, "fuzz", o->b[3], "the input asked");
			break;
		case R_G_HUGE:
			guest_huge(g, w, r, o);
			break;
		}
	}
}

/* ---- the VMM side of a run ---------------------------------------------------------- */

enum run_end { END_DONE, END_STUCK, END_ERROR, END_EXITS, END_CREATE, END_ABORT };

/*
 * One RUN: the guest ops' records first, then the run's own (how it ended),
 * so that a comparison stopped by a guest op never judges the run's end.
 */
struct vmm_job {
	struct world *w;
	const struct prog *prog;
	struct ccvm_vcpu *v;
	unsigned int rec_base, run_rec;
};

static void vmm_run_job(struct vmm_job *j);

/* Records for a run of @prog on the next unused vCPU; the run comes after. */
static void vmm_prepare(struct world *w, const struct prog *prog, struct vmm_job *j)
{
	struct rec *rr;
	unsigned int i;

	j->w = w;
	j->prog = prog;
	j->rec_base = w->nrec;
	for (i = 0; i < prog->n; i++) {
		static const uint8_t kinds[G_NR] = { R_G_READ, R_G_WRITE, R_G_MAP, R_G_ACCEPT };
		static const uint8_t ext_kinds[GX_NR] = { R_G_INFO, R_G_SYNC, R_G_ABORT,
							  R_G_HUGE };
		uint8_t b0 = prog->ops[i].b[0];
		struct rec *r = rec_new(w, (b0 & G_EXT) ? ext_kinds[(b0 >> 5) % GX_NR]
						       : kinds[b0 % G_NR]);

		r->err = NOT_RUN;
		snprintf(r->what, sizeof(r->what), "%s (not run)", rec_names[r->kind]);
	}
	j->run_rec = w->nrec;
	rr = rec_new(w, R_RUN);
	snprintf(rr->what, sizeof(rr->what), "run of %u guest ops", prog->n);
	j->v = w->nr_runs < MAX_RUNS ? w->vcpus[w->nr_runs] : NULL;
	if (w->nr_runs < MAX_RUNS)
		w->vcpus[w->nr_runs++] = NULL;
}

static void vmm_run(struct world *w, const struct prog *prog)
{
	struct vmm_job j;

	vmm_prepare(w, prog, &j);
	vmm_run_job(&j);
}

/* Serial or free, a VMM thread of the platform runs one job. */
static int vmm_thread(void *arg)
{
	vmm_run_job(arg);
	return 0;
}

static void vmm_run_job(struct vmm_job *j)
{
	struct world *w = j->w;
	struct rec *rr = &w->recs[j->run_rec];
	struct guest_ctx ctx = { .w = w, .prog = j->prog, .rec_base = j->rec_base };
	struct ccvm_vcpu *v = j->v;
	struct ccvm_run *run;
	unsigned int i, n = 0, other = 0;
	int err;

	ctx.cur = ctx.rec_base;
	if (!v) {
		rr->err = -ENOENT;
		rr->v0 = END_CREATE;
		return;
	}
	err = ccvm_vcpu_set_guest(v, guest_fn, &ctx);
	if (err && w->injected) {
		rr->err = err;
		rr->v0 = END_CREATE;
		ccvm_vcpu_close(v);
		return;
	}
	if (err)
		die("%s: set_guest: %d", w->backend, err);
	run = ccvm_vcpu_run_state(v);
	rr->v0 = END_EXITS;
	while (n < MAX_EXITS && other < MAX_OTHER_EXITS) {
		struct rec *r;

		err = ccvm_vcpu_run(v);
		r = &w->recs[ctx.cur];	/* the op the guest is in now */
		if (err == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT) {
			uint64_t gpa = run->memory_fault.gpa, page = gpa / PAGE;
			bool want = run->memory_fault.flags & CCVM_MEMORY_EXIT_FLAG_PRIVATE;

			r->nr_memfault++;
			n++;
			r->memfault = hash_mix(hash_mix(r->memfault, gpa), run->memory_fault.flags);
			/* Convert as asked, unless that is the attribute already. */
			if (page >= WIN_PAGES || w->attr[page] == want) {
				rr->v0 = END_STUCK;
				rr->v1 = gpa;
				break;
			}
			err = set_attrs(w, gpa, run->memory_fault.size, want);
			if (err) {
				rr->v0 = END_ERROR;
				rr->err = err;
				break;
			}
			continue;
		}
		if (err) {
			rr->v0 = END_ERROR;
			rr->err = err;
			rr->v1 = run->exit_reason;
			break;
		}
		if (run->exit_reason == CCVM_EXIT_DONE) {
			rr->v0 = END_DONE;
			break;
		}
		switch (run->exit_reason) {
		case CCVM_EXIT_HYPERCALL: {
			other++;
			uint64_t gpa = run->hypercall.args[0];
			uint64_t size = run->hypercall.args[1] * PAGE;
			bool priv = run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED;

			if (run->hypercall.nr != CCVM_HC_MAP_GPA_RANGE)
				die("%s: hypercall %" PRIu64, w->backend, run->hypercall.nr);
			err = set_attrs(w, gpa, size, priv);
			if (!err && !priv && w->punch_on_share) {
				/* Punch what of the range is slot 0's gmem. */
				uint64_t end = gpa + size < SLOT0_PAGES * PAGE ? gpa + size
									: SLOT0_PAGES * PAGE;

				if (gpa < end)
					err = punch(w, gpa, end - gpa);
			}
			run->hypercall.ret = (uint64_t)-err;
			break;
		}
		case CCVM_EXIT_MMIO:
			r->nr_mmio++;
			n++;
			r->mmio = hash_mix(hash_mix(hash_mix(r->mmio, run->mmio.phys_addr),
						    run->mmio.len), run->mmio.is_write);
			if (run->mmio.is_write) {
				r->mmio = hash_mix(r->mmio, hash_bytes(run->mmio.data,
								       run->mmio.len));
			} else {
				for (i = 0; i < sizeof(run->mmio.data); i++)
					run->mmio.data[i] = (uint8_t)(run->mmio.phys_addr + i);
			}
			break;
		case CCVM_EXIT_EXCEPTION:
			r->nr_exc++;	/* the guest accepts and retries */
			other++;
			break;
		case CCVM_EXIT_SYNC:
			n++;
			r->v0 = run->sync.value;
			break;
		case CCVM_EXIT_GUEST_ABORT:
			rr->v0 = END_ABORT;
			rr->v1 = (uint64_t)run->abort.line;
			goto out;
		default:
			die("%s: unexpected exit %u in %s", w->backend, run->exit_reason,
			    r->what);
		}
	}
out:
	/* Closing unwinds a guest left in an exit. */
	if (ccvm_vcpu_close(v))
		die("%s: vcpu close failed", w->backend);
}

/* ---- the extended operations ------------------------------------------------------------- */

static const int inject_errs[] = { -EIO, -ENOMEM, -EBUSY, -EAGAIN, -EINVAL, -EFAULT, -EACCES };

/*
 * Fail a backend op from here on, as the fuzzer says: which op, which call,
 * which errno, how many times (0: for good).  Backends call different ops,
 * so nothing after it is compared; the invariants, the teardown and the
 * page accounting are still checked.
 */
static void op_inject(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_INJECT);
	unsigned int nops = 0, op, times;
	const char *name;
	int err;

	while (ccvm_backend_op_name(nops))
		nops++;
	op = nops ? a[0] % nops : 0;
	name = ccvm_backend_op_name(op);
	r->flags = F_DIVERGE;
	snprintf(r->what, sizeof(r->what), "inject %s", name ? name : "?");
	if (!name)
		return;
	err = inject_errs[a[2] % (sizeof(inject_errs) / sizeof(inject_errs[0]))];
	times = (a[2] >> 3) % 4;
	/*
	 * A backend busy for good (-EBUSY, -EAGAIN) is retried: every fault
	 * and entry would spin to CCVM_FAULT_RETRY_LIMIT before it reports,
	 * seconds per page under the sanitizers and minutes per input.  The
	 * bound itself has its tests; here busy is a passing state.
	 */
	if (!times && (err == -EBUSY || err == -EAGAIN))
		times = 3;
	r->err = ccvm_inject_op_failure(w->p, name, 1 + a[1] % 8, err, times);
	if (!r->err)
		w->injected = true;
}

/* The gmem file closed mid-sequence: its VM lives on without it. */
static void op_gmem_close(struct world *w)
{
	struct rec *r = rec_new(w, R_GMEM_CLOSE);

	snprintf(r->what, sizeof(r->what), "gmem_close");
	/* TDX may defer removal, the others zap: mappings part here. */
	r->flags = F_DIVERGE;
	if (!w->g)
		return;
	r->err = ccvm_gmem_close(w->g);
	w->g = NULL;
}

static void op_terminate(struct world *w)
{
	struct rec *r = rec_new(w, R_TERMINATE);

	snprintf(r->what, sizeof(r->what), "terminate");
	r->flags = F_DIVERGE;	/* the mock has no early key release */
	r->err = ccvm_vm_terminate(w->vm);
}

static void op_populate(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_POPULATE);
	uint64_t gpa = (a[0] % WIN_PAGES) * PAGE, n = npages_of(a[1], 4);
	static uint8_t src[4 * PAGE];
	uint64_t i;

	for (i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(a[0] + i * 3);
	snprintf(r->what, sizeof(r->what), "populate %#" PRIx64 "+%" PRIu64 "p", gpa, n);
	r->flags = F_LAUNCH;
	/*
	 * A page a conversion took back from the guest: each backend finds
	 * double population its own way.  TDX removed the page from the
	 * S-EPT with the zap and adds it again; SNP's RMP entry stays
	 * assigned until the file frees the page, -EEXIST.
	 */
	for (i = gpa / PAGE; i < gpa / PAGE + n && i < WIN_PAGES; i++) {
		int idx = gmem_index(w, i);

		if (idx >= 0 && w->zapdep[idx])
			r->flags |= F_DIVERGE;
	}
	r->err = ccvm_vm_populate(w->vm, gpa, src, n * PAGE,
				  (a[1] & 0x80) ? CCVM_POPULATE_MEASURE : 0);
}

static void op_finalize(struct world *w)
{
	struct rec *r = rec_new(w, R_FINALIZE);

	snprintf(r->what, sizeof(r->what), "finalize");
	r->flags = F_LAUNCH;
	r->err = ccvm_vm_finalize(w->vm);
	if (!r->err)
		w->finalized = true;
}

/* The read-only calls: values are the backend's own, only errnos compare. */
static void op_query(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_QUERY);
	struct ccvm_stats st = { .sz = sizeof(st) };
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };
	uint64_t attr = 0, pfn = 0;
	uint32_t knob = 0;
	int level = 0;

	snprintf(r->what, sizeof(r->what), "query %u", a[0] % 6);
	switch (a[0] % 6) {
	case 0:
		r->err = ccvm_vm_get_stats(w->vm, &st);
		break;
	case 1:
		r->err = ccvm_platform_get_stats(w->p, &st);
		break;
	case 2:
		r->err = ccvm_vm_get_memory_attribute(w->vm, (a[0] % WIN_PAGES) * PAGE, &attr);
		r->v0 = attr;
		break;
	case 3:
		r->err = ccvm_vm_caps(w->vm, &caps);
		break;
	case 4:
		r->err = ccvm_vm_get_study_knob(w->vm, a[0] >> 4, &knob);
		r->flags |= F_NOCMP;
		break;
	default:
		r->err = ccvm_vm_lookup_mapping(w->vm, (a[0] % WIN_PAGES) * PAGE, &pfn, &level);
		r->flags |= F_NOCMP;	/* TDX keeps what others zap */
		break;
	}
}

static void op_knob(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_KNOB);

	snprintf(r->what, sizeof(r->what), "knob %u = %u", a[0] % 8, a[1] % 4);
	r->flags = F_DIVERGE;	/* knobs are per backend */
	r->err = ccvm_vm_set_study_knob(w->vm, a[0] % 8, a[1] % 4);
}

static _Atomic uint64_t trace_records;

/* A trace callback: it may not call into the library, it counts. */
static void count_record(const struct ccvm_trace_record *rec, void *ctx)
{
	(void)rec;
	(void)ctx;
	atomic_fetch_add_explicit(&trace_records, 1, memory_order_relaxed);
}

/*
 * Bit 0 clear: close the trace (the file's first write error, if any).
 * Set: by bits 1-2, open /dev/null, open with options (clock, categories,
 * a size bound, unknown bits) on /dev/null or /dev/full, or a callback.
 */
static void op_trace(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_TRACE);
	struct ccvm_trace_opts o = CCVM_OPTS_INIT(struct ccvm_trace_opts,
						  .clock = (a[0] >> 3) % 3,
						  .categories = (a[0] >> 5) * 3,
						  .max_bytes = (a[0] & 0x80) ? 4096 : 0);

	if (!(a[0] & 1)) {
		snprintf(r->what, sizeof(r->what), "trace close");
		r->err = ccvm_trace_close(w->p);
		return;
	}
	/* Traced: the platform is not kept (a callback would outlive the input). */
	w->tracing = true;
	switch ((a[0] >> 1) % 4) {
	case 0:
	case 3:
		snprintf(r->what, sizeof(r->what), "trace open");
		r->err = ccvm_trace_open(w->p, "/dev/null");
		break;
	case 1:
		snprintf(r->what, sizeof(r->what), "trace open_opts %u %#x %" PRIu64, o.clock,
			 o.categories, (uint64_t)o.max_bytes);
		r->err = ccvm_trace_open_opts(w->p, (a[0] & 0x40) ? "/dev/full" : "/dev/null", &o);
		break;
	default:
		snprintf(r->what, sizeof(r->what), "trace callback");
		r->err = ccvm_platform_set_trace(w->p, count_record, NULL);
		break;
	}
}

/* Library-wide and per-object names and values; only the errnos compare. */
static void op_info(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_INFO);
	struct ccvm_cost_model cm;
	unsigned int nops = 0;
	char shard[8];
	uint32_t si = 0, sn = 0;
	const char *str = NULL;

	snprintf(r->what, sizeof(r->what), "info %u %u", a[0] % 10, a[1]);
	switch (a[0] % 10) {
	case 0:
		str = ccvm_strerror(-(int)a[1]);
		break;
	case 1:
		str = ccvm_last_error();
		r->flags = F_NOCMP;	/* the message names the backend */
		break;
	case 2:
		str = ccvm_version();
		r->v0 = (uint64_t)ccvm_version_number();
		break;
	case 3:
		str = ccvm_event_name(a[1]);
		break;
	case 4:
		str = ccvm_invariant_name(a[1] % 40);
		break;
	case 5:
		str = ccvm_explore_failure_name(a[1] % 16);
		r->v0 = ccvm_sched_op_name(a[1] % 16) != NULL;
		break;
	case 6:
		/* "i/n" and its malformed cousins, from the input's bytes. */
		shard[0] = (char)('0' + a[1] % 11);
		shard[1] = (a[1] & 0x10) ? '/' : (char)a[1];
		shard[2] = (char)('0' + (a[1] >> 5) % 11);
		shard[3] = (a[1] & 0x80) ? '0' : '\0';
		shard[4] = '\0';
		r->err = ccvm_explore_parse_shard(shard, &si, &sn);
		r->v0 = si;
		r->v1 = sn;
		break;
	case 7:
		while (ccvm_backend_op_name(nops))
			nops++;
		r->v0 = (uint64_t)ccvm_op_calls(w->p, ccvm_backend_op_name(a[1] % (nops + 1)));
		r->flags = F_NOCMP;	/* each backend calls its own ops */
		break;
	case 8:
		r->v0 = ccvm_vm_memslot_generation(w->vm);
		r->flags = F_NOCMP;
		break;
	default:
		memset(&cm, 0, sizeof(cm));
		cm.sz = a[1] % 2 ? sizeof(cm) : a[1] % 16;
		r->err = ccvm_cost_model_default(&cm);
		break;
	}
	if (str)
		r->data = hash_bytes((const uint8_t *)str, strlen(str));
}

/*
 * The inspection calls: where a GPA is mapped, and the bytes of that page
 * through the host's direct map (TDX private: ciphertext, SNP assigned: a
 * fault), or of a pfn or range that does not exist.  Values are each
 * backend's own.
 */
static void op_phys(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_PHYS);
	uint64_t gpa = (a[0] % WIN_PAGES) * PAGE | ((a[2] & 1) ? w->sbit : 0);
	uint64_t pfn = UINT64_MAX;
	uint32_t off = (a[1] & 0xf) * 256, len = lens[(a[1] >> 4) % 8];
	static uint8_t buf[2 * PAGE];
	int level = 0;

	snprintf(r->what, sizeof(r->what), "phys %#" PRIx64 " %u+%u", gpa, off, len);
	r->flags = F_NOCMP;
	r->err = ccvm_vm_lookup_mapping(w->vm, gpa, &pfn, &level);
	switch ((a[2] >> 1) % 4) {
	case 0:
		if (r->err || pfn == UINT64_MAX)
			return;
		break;
	case 1:
		pfn = UINT64_MAX - 1;		/* past the platform */
		break;
	case 2:
		/* A write that must be refused before it touches a page. */
		r->err = ccvm_host_write_phys(w->p, (a[2] & 0x80) ? 0 : UINT64_MAX >> 1, off, buf,
					      len > PAGE ? len : PAGE + 1);
		return;
	default:
		r->err = ccvm_host_read_phys(w->p, pfn, off, NULL, len);
		return;
	}
	r->err = ccvm_host_read_phys(w->p, pfn, off, buf, len);
	if (!r->err)
		r->data = hash_bytes(buf, len);
}

/* The serial scheduler's status (NULL scheduler on a free platform). */
static void op_sched(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_SCHED);
	char msg[256];

	snprintf(r->what, sizeof(r->what), "sched status");
	r->err = ccvm_sched_status(ccvm_platform_sched(w->p), (a[0] & 1) ? msg : NULL,
				   (a[0] & 1) ? sizeof(msg) : 0);
}

/*
 * Two runs at once, each on its own VMM thread of the platform: on a serial
 * platform the schedule is the scheduler's, seeded from the input; free,
 * it is the OS's.  The order of their conversions is the schedule's, so
 * nothing after it is compared.
 */
static void op_mt_run(struct world *w, struct input *in, const uint8_t *a)
{
	struct prog prog[2];
	struct vmm_job j[2];
	struct ccvm_thread *t[2] = { NULL, NULL };
	struct rec *r;
	unsigned int k, i;

	for (k = 0; k < 2; k++) {
		prog[k].n = 1 + (a[0] >> (4 * k)) % 4;
		for (i = 0; i < prog[k].n; i++)
			if (!take(in, prog[k].ops[i].b, 4))
				break;
		prog[k].n = i;
	}
	r = rec_new(w, R_MT_RUN);
	snprintf(r->what, sizeof(r->what), "mt_run %u+%u", prog[0].n, prog[1].n);
	r->flags = F_DIVERGE;
	if (!prog[0].n || !prog[1].n || w->nr_runs + 2 > MAX_RUNS)
		return;
	for (k = 0; k < 2; k++)
		vmm_prepare(w, &prog[k], &j[k]);
	w->mt = true;
	for (k = 0; k < 2; k++) {
		r->err = ccvm_thread_create(w->p, &t[k], vmm_thread, &j[k], k ? "vmm1" : "vmm0");
		if (r->err)
			die("%s: thread_create: %d", w->backend, r->err);
	}
	for (k = 0; k < 2; k++)
		if (ccvm_thread_join(t[k], NULL))
			die("%s: thread_join", w->backend);
	w->mt = false;
}

/*
 * A built-in scenario of the explorer on this world's backend, under a
 * schedule strategy and seed the input picks, for a couple of runs; a
 * failure is replayed from its token.  Each backend runs its own
 * scenario: recorded, not compared.  Not from a serial platform's thread,
 * which is already under a scheduler.
 */
static void op_explore(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_EXPLORE);
	const struct ccvm_builtin_scenario *b;
	struct ccvm_scenario *sc = NULL;
	struct ccvm_explore_opts o = CCVM_OPTS_INIT(struct ccvm_explore_opts,
		.strategy = a[1] % CCVM_EXPLORE_NR,
		.flags = CCVM_EXPLORE_QUIET | CCVM_EXPLORE_NO_CRASH_HANDLER |
			 ((a[1] & 0x10) ? CCVM_EXPLORE_PREEMPT_ALL : 0),
		.seed = a[2], .runs = 1 + (a[1] >> 5) % 2,
		.pct_depth = 1 + a[2] % 4, .preemption_bound = (a[1] >> 2) % 3,
		.step_bound = 20000);
	struct ccvm_explore_result res = CCVM_OPTS_INIT(struct ccvm_explore_result);
	size_t n = 0;

	r->flags = F_NOCMP;
	while (ccvm_builtin_scenario(n))
		n++;
	b = n ? ccvm_builtin_scenario(a[0] % n) : NULL;
	snprintf(r->what, sizeof(r->what), "explore %s %s", b ? b->name : "?",
		 ccvm_explore_strategy_name(o.strategy));
	if (!b || w->serial) {
		r->err = -EPERM;
		return;
	}
	r->err = ccvm_builtin_scenario_create(b->name, w->backend, NULL, &sc);
	if (r->err)
		return;
	r->err = ccvm_explore(sc, &o, &res);
	if (r->err && res.token) {
		struct ccvm_explore_result again = CCVM_OPTS_INIT(struct ccvm_explore_result);

		o.flags = CCVM_EXPLORE_QUIET | CCVM_EXPLORE_NO_CRASH_HANDLER;
		if (ccvm_replay(sc, res.token, &o, &again) != r->err)
			die("%s: explore %s: the token does not replay its failure", w->backend,
			    b->name);
		ccvm_explore_result_release(&again);
	}
	ccvm_explore_result_release(&res);
	ccvm_builtin_scenario_destroy(sc);
}

/* ---- the huge-folio file ---------------------------------------------------------------- */

static void huge_refresh(struct world *w)
{
	uint64_t page = 0;

	memset(w->hattr, 0, sizeof(w->hattr));
	while (w->hbound && w->in_place && page < HUGE_PAGES) {
		uint64_t a = 0, run = 0, n;

		if (ccvm_gmem_get_memory_attributes(w->hg, page * PAGE, &a, &run) || run < PAGE)
			die("%s: huge file attributes", w->backend);
		for (n = run / PAGE; n && page < HUGE_PAGES; n--, page++)
			w->hattr[page] = (a & CCVM_MEMORY_ATTRIBUTE_PRIVATE) != 0;
	}
	for (page = 0; w->hbound && !w->in_place && page < HUGE_PAGES; page++) {
		uint64_t a = 0;

		if (ccvm_vm_get_memory_attribute(w->vm, HUGE_GPA + page * PAGE, &a))
			die("%s: huge slot attributes", w->backend);
		w->hattr[page] = (a & CCVM_MEMORY_ATTRIBUTE_PRIVATE) != 0;
	}
}

/* Make and bind the file once; the errno is compared like any other. */
static int huge_setup(struct world *w)
{
	uint64_t gflags = w->caps.gmem_flags & (CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED |
						CCVM_GMEM_FLAG_HUGETLB);
	struct ccvm_memory_region mr = {
		.slot = HUGE_SLOT, .flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = HUGE_GPA,
		.memory_size = HUGE_PAGES * PAGE,
	};
	int err;

	if (w->hg || w->hcreate_err)
		return w->hcreate_err;
	err = ccvm_gmem_create(w->vm, HUGE_PAGES * PAGE, gflags, &w->hg);
	if (!err && w->in_place && !(gflags & CCVM_GMEM_FLAG_INIT_SHARED)) {
		struct ccvm_memory_attributes2 a = { .size = HUGE_PAGES * PAGE };

		err = ccvm_gmem_set_memory_attributes(w->hg, &a);
	}
	if (!err && !w->in_place) {
		/* A 2 MiB-aligned VMM buffer, or the slot disallows 2M pages. */
		w->hmap = mmap(NULL, 2 * HUGE_PAGES * PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (w->hmap == MAP_FAILED)
			die("mmap");
		w->hshared = (uint8_t *)(((uintptr_t)w->hmap + HUGE_PAGES * PAGE - 1) &
					 ~(uintptr_t)(HUGE_PAGES * PAGE - 1));
		mr.userspace_addr = w->hshared;
	}
	mr.gmem = w->hg;
	if (!err)
		err = ccvm_vm_set_user_memory_region(w->vm, &mr);
	w->hbound = !err;
	w->hcreate_err = err ? err : 0;
	huge_refresh(w);
	return err;
}

static void huge_teardown(struct world *w)
{
	if (w->hg && ccvm_gmem_close(w->hg) && !w->injected)
		die("%s: huge gmem close", w->backend);
	w->hg = NULL;
	if (w->hmap)
		munmap(w->hmap, 2 * HUGE_PAGES * PAGE);
	w->hmap = w->hshared = NULL;
}

/*
 * H_HUGE: a[0] bits 0-2 the operation, bit 3 the page's bit 8; a[1] the
 * page's low bits; a[2] bits 0-2 the length, bit 3 set: not clipped to the
 * file (the errno of a range past its end is compared too).  Lengths of 1
 * to 511 pages convert or punch part of a folio: a split, a zeroing.
 */
static void op_huge(struct world *w, const uint8_t *a)
{
	static const uint16_t hlens[8] = { 1, 2, 3, 16, 64, 256, 511, 512 };
	static const char *const names[8] = {
		"to-private", "to-shared", "punch", "allocate", "prefault", "info",
		"all-private", "all-shared",
	};
	struct rec *r = rec_new(w, R_HUGE);
	unsigned int sub = a[0] & 7;
	uint64_t page = a[1] | ((uint64_t)((a[0] >> 3) & 1) << 8), n = hlens[a[2] & 7];
	uint8_t before[HUGE_PAGES];
	uint64_t i;

	if (sub >= 6) {
		page = 0;
		n = HUGE_PAGES;
	} else if (!(a[2] & 8) && page + n > HUGE_PAGES) {
		n = HUGE_PAGES - page;
	}
	snprintf(r->what, sizeof(r->what), "huge %s %" PRIu64 "+%" PRIu64, names[sub], page, n);
	r->err = huge_setup(w);
	if (r->err)
		return;
	memcpy(before, w->hattr, sizeof(before));
	switch (sub) {
	case 0: case 1: case 6: case 7: {
		bool priv = !(sub & 1);
		struct ccvm_memory_attributes2 at = {
			.offset = page * PAGE, .size = n * PAGE,
			.attributes = priv ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
		};

		if (w->in_place)
			r->err = ccvm_gmem_set_memory_attributes(w->hg, &at);
		else
			r->err = ccvm_vm_set_memory_attributes(w->vm, HUGE_GPA + page * PAGE,
							       n * PAGE, at.attributes, 0);
		break;
	}
	case 2:
	case 3:
		r->err = ccvm_gmem_fallocate(w->hg, CCVM_FALLOC_KEEP_SIZE |
					     (sub == 2 ? CCVM_FALLOC_PUNCH_HOLE : 0),
					     page * PAGE, n * PAGE);
		if (sub == 2 && !r->err)
			for (i = page; i < page + n && i < HUGE_PAGES; i++)
				w->hzap[i] = false;
		break;
	case 4: {
		uint64_t gpa = HUGE_GPA + page * PAGE, size = n * PAGE;

		while (size) {
			uint64_t left = size;

			r->err = ccvm_vcpu_pre_fault_memory(w->pv, &gpa, &size);
			if (r->err)
				break;
			if (size >= left)
				die("%s: pre-fault returned 0 without progress (%s)", w->backend,
				    r->what);
		}
		break;
	}
	case 5: {
		struct ccvm_gmem_info info = CCVM_OPTS_INIT(struct ccvm_gmem_info);
		int level = 0;

		/* Folio orders and mapping levels are each backend's own. */
		r->flags |= F_NOCMP;
		r->err = ccvm_gmem_get_info(w->hg, &info);
		r->v0 = info.folio_order | (info.nr_huge_folios << 8);
		if (!ccvm_vm_lookup_mapping(w->vm, HUGE_GPA + page * PAGE, NULL, &level))
			r->v1 = (uint64_t)level;
		break;
	}
	}
	huge_refresh(w);
	for (i = 0; i < HUGE_PAGES; i++) {
		if (before[i] == w->hattr[i])
			continue;
		if (r->err)
			die("%s: a failed %s changed page %" PRIu64, w->backend, r->what, i);
		w->hzap[i] = true;
	}
}

/* The second VM: attributes, punch, pre-fault, on a VM of its own. */
static void op_vm2(struct world *w, const uint8_t *a)
{
	struct rec *r = rec_new(w, R_VM2);
	uint64_t gpa = (a[0] % SLOT0_PAGES) * PAGE, size = npages_of(a[1], 8) * PAGE;
	uint64_t left;

	snprintf(r->what, sizeof(r->what), "vm2 %u %#" PRIx64 "+%#" PRIx64, a[1] >> 6, gpa,
		 size);
	if (!w->vm2) {
		r->err = -ENOENT;
		return;
	}
	switch (a[1] >> 6) {
	case 0:
	case 1:
		r->err = ccvm_vm_set_memory_attributes(w->vm2, gpa, size,
						       (a[1] >> 6) ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
						       0);
		break;
	case 2:
		r->err = ccvm_gmem_fallocate(w->g2, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					     gpa, size);
		break;
	default:
		/* Pre-faults differ before finalize (TDX refuses them). */
		r->flags = F_LAUNCH;
		do {
			left = size;
			r->err = ccvm_vcpu_pre_fault_memory(w->v2, &gpa, &size);
		} while (!r->err && size && size < left);
		break;
	}
}

/* ---- one backend's whole sequence ------------------------------------------------------ */

#define VM2_PAGES	SLOT0_PAGES

/* A second VM on the platform: gmem, one private slot, a vCPU, finalized. */
static void vm2_setup(struct world *w, const char *backend)
{
	struct ccvm_memory_region mr = {
		.slot = 0,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.memory_size = VM2_PAGES * PAGE,
	};

	if (ccvm_vm_create(w->p, NULL, &w->vm2))
		die("%s: vm2", backend);
	if (ccvm_gmem_create(w->vm2, VM2_PAGES * PAGE, 0, &w->g2))
		die("%s: vm2 gmem", backend);
	mr.userspace_addr = w->shared2;
	mr.gmem = w->g2;
	if (ccvm_vm_set_user_memory_region(w->vm2, &mr) ||
	    ccvm_vm_set_memory_attributes(w->vm2, 0, VM2_PAGES * PAGE,
					  CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0) ||
	    ccvm_vcpu_create(w->vm2, 0, &w->v2))
		die("%s: vm2 setup", backend);
	if (w->caps.needs_finalize && ccvm_vm_finalize(w->vm2))
		die("%s: vm2 finalize", backend);
}

static void vm2_teardown(struct world *w)
{
	if (!w->vm2)
		return;
	if (ccvm_vcpu_close(w->v2) || ccvm_gmem_close(w->g2) || ccvm_vm_close(w->vm2))
		die("%s: vm2 teardown", w->backend);
	w->vm2 = NULL;
}

/*
 * What one backend keeps from one input to the next: creating and
 * destroying a platform (its page arrays; TDX's PAMT and TD table, SNP's
 * RMP) and mapping the VMM's memory were most of an input's time.  A
 * platform is kept only when the input left it as a later input cannot
 * tell apart from a new one: on the free scheduler, with the same yield
 * setting, no failure injected, no page leaked, no trace open.  Every
 * teardown check (invariants, every page back, nothing leaked) still runs
 * after each input.  CCVM_FUZZ_FRESH=1 makes a platform for every input.
 */
struct kept {
	struct ccvm_platform *p;
	bool resched;			/* made with resched_entries = 1 */
	uint8_t *shared;		/* the VMM memory of the VM and of vm2 */
	uint8_t *shared2;
};

static struct kept kept[MAX_BACKENDS];
static int fresh_platforms = -1;

static bool keep_platforms(void)
{
	if (fresh_platforms < 0) {
		const char *e = getenv("CCVM_FUZZ_FRESH");

		fresh_platforms = e && *e && strcmp(e, "0");
	}
	return !fresh_platforms;
}

static uint8_t *map_vmm(uint64_t pages)
{
	void *m = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		die("mmap");
	return m;
}

/* The platform of @backend for this input: the kept one or a new one. */
static void platform_get(struct world *w, unsigned int idx, const struct ccvm_platform_opts *po)
{
	struct kept *k = &kept[idx];
	bool resched = po->resched_entries != 0;

	w->kept = k;
	if (k->p && (w->serial || k->resched != resched)) {
		if (ccvm_platform_destroy(k->p))
			die("%s: kept platform busy", w->backend);
		k->p = NULL;
	}
	if (!k->shared) {
		k->shared = map_vmm(SHARED_PAGES);
		k->shared2 = map_vmm(VM2_PAGES);
	} else {
		/* The VMM's memory as a new mapping has it. */
		memset(k->shared, 0, SHARED_PAGES * PAGE);
		memset(k->shared2, 0, VM2_PAGES * PAGE);
	}
	w->shared = k->shared;
	w->shared2 = k->shared2;
	if (k->p) {
		w->p = k->p;
		return;
	}
	if (ccvm_platform_create(po, &w->p))
		die("%s: platform_create", w->backend);
	if (!w->serial && keep_platforms()) {
		k->p = w->p;
		k->resched = resched;
	}
}

/*
 * After the teardown checks: destroy the platform unless it is kept and
 * clean (see struct kept).
 */
static void platform_put(struct world *w, uint64_t leaked)
{
	struct kept *k = w->kept;

	if (k->p == w->p && !w->injected && !leaked && !w->tracing)
		return;
	if (ccvm_platform_destroy(w->p))
		die("%s: platform still busy after teardown", w->backend);
	if (k->p == w->p)
		k->p = NULL;
}

/*
 * The header byte: 1 punch on the way to shared, 2 close the gmem file
 * first at teardown, 4 slot 0 private at the start, 8 the serial scheduler
 * (seeded by the second byte), 16 a second VM, 32 launch left to the input
 * (populate and finalize are ops), 0x40 in-place conversion, 0x80 long
 * loops yield at every entry.
 */
static void world_setup(struct world *w, unsigned int idx, const char *backend, uint8_t header,
			uint8_t seed, unsigned int nr_vcpus)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = backend,
						      .mem_bytes = 64ull << 20, .seed = 3,
						      .sched = (header & 8) ? CCVM_SCHED_SERIAL
									    : CCVM_SCHED_FREE,
						      .sched_seed = seed,
						      .resched_entries = (header & 0x80) ? 1 : 0);
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = MAX_RUNS + 2,
						.attr_scheme = (header & 0x40) ? CCVM_ATTR_SCHEME_GMEM
									       : CCVM_ATTR_SCHEME_VM);
	struct ccvm_stats st = { .sz = sizeof(st) };
	struct ccvm_memory_region mr = {
		.slot = 0,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.memory_size = SLOT0_PAGES * PAGE,
	};
	uint64_t gflags;
	unsigned int i;

	/* Everything but the records, which rec_new() clears one by one. */
	memset(w, 0, offsetof(struct world, recs));
	w->nrec = 0;
	w->serial = header & 8;
	w->in_place = header & 0x40;
	w->backend = backend;
	w->punch_on_share = header & 1;
	w->gmem_first = header & 2;
	w->caps.sz = sizeof(w->caps);
	if (ccvm_backend_caps(backend, &w->caps))
		die("%s: caps", backend);
	platform_get(w, idx, &po);
	ccvm_platform_get_stats(w->p, &st);
	w->free_start = st.free_pages;
	if (ccvm_vm_create(w->p, &vo, &w->vm))
		die("%s: vm_create", backend);
	w->sbit = ccvm_vm_shared_bit(w->vm);
	/* The VM's own caps: what its attribute scheme allows (INIT_SHARED). */
	if (ccvm_vm_caps(w->vm, &w->caps))
		die("%s: vm caps", backend);
	/*
	 * Host access where the backend allows it (a caps difference); in
	 * place INIT_SHARED too, so that the file starts shared as the VM
	 * store does.
	 */
	gflags = w->caps.gmem_flags & (CCVM_GMEM_FLAG_MMAP | CCVM_GMEM_FLAG_INIT_SHARED);
	if (ccvm_gmem_create(w->vm, GMEM_PAGES * PAGE, gflags, &w->g))
		die("%s: gmem_create", backend);
	/* In place slot 0 is GMEM_ONLY: no VMM buffer behind it. */
	mr.userspace_addr = w->in_place ? NULL : w->shared;
	mr.gmem = w->g;
	if (ccvm_vm_set_user_memory_region(w->vm, &mr))
		die("%s: slot 0", backend);
	w->slots[0] = (struct slot_shadow){ .used = true, .gmem = true,
					    .backing = !w->in_place, .npages = SLOT0_PAGES };
	if (w->in_place) {
		struct ccvm_memory_attributes2 a = { .size = GMEM_PAGES * PAGE };

		if (!(gflags & CCVM_GMEM_FLAG_INIT_SHARED) && ccvm_gmem_set_memory_attributes(w->g, &a))
			die("%s: the file made shared", backend);
		a.size = SLOT0_PAGES * PAGE;
		a.attributes = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
		if ((header & 4) && ccvm_gmem_set_memory_attributes(w->g, &a))
			die("%s: initial attributes in place", backend);
	} else if (header & 4) {
		if (ccvm_vm_set_memory_attributes(w->vm, 0, SLOT0_PAGES * PAGE,
						  CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0))
			die("%s: initial attributes", backend);
	}
	refresh_attrs(w);
	for (i = 0; i < nr_vcpus; i++)
		if (ccvm_vcpu_create(w->vm, i, &w->vcpus[i]))
			die("%s: vcpu %u", backend, i);
	if (ccvm_vcpu_create(w->vm, MAX_RUNS + 1, &w->pv))
		die("%s: pre-fault vcpu", backend);
	if (header & 16)
		vm2_setup(w, backend);
	/* Runnable from here on, unless the input does the launch itself. */
	if (!(header & 32)) {
		if (w->caps.needs_finalize && ccvm_vm_finalize(w->vm))
			die("%s: finalize", backend);
		w->finalized = true;
	}
	check_invariants(w, "setup");
}

static void world_teardown(struct world *w)
{
	vm2_teardown(w);
	struct ccvm_stats st = { .sz = sizeof(st) };
	bool bugged = ccvm_vm_is_bugged(w->vm);
	unsigned int i;

	for (i = 0; i < MAX_RUNS; i++)
		if (w->vcpus[i] && ccvm_vcpu_close(w->vcpus[i]))
			die("%s: vcpu close", w->backend);
	if (ccvm_vcpu_close(w->pv))
		die("%s: vcpu close", w->backend);
	if (w->gmem_first && w->g) {
		ccvm_gmem_close(w->g);
		w->g = NULL;
	}
	if (ccvm_vm_close(w->vm))
		die("%s: vm_close", w->backend);
	w->vm = NULL;
	huge_teardown(w);
	if (w->g && ccvm_gmem_close(w->g))
		die("%s: gmem_close", w->backend);
	w->g = NULL;
	check_invariants(w, "teardown");
	ccvm_platform_get_stats(w->p, &st);
	if (st.free_pages + st.leaked_pages != w->free_start)
		die("%s: %" PRIu64 " free and %" PRIu64 " leaked pages after teardown, %" PRIu64
		    " free before: pages lost", w->backend, st.free_pages, st.leaked_pages,
		    w->free_start);
	if (st.leaked_pages && !bugged && !w->injected)
		die("%s: %" PRIu64 " pages leaked by a VM that was never bugged", w->backend,
		    st.leaked_pages);
	platform_put(w, st.leaked_pages);
}

/*
 * How many vCPUs the runs of an input use: decoded as world_run() does, so
 * that only those are made before finalize.
 */
static unsigned int count_runs(const uint8_t *data, size_t size)
{
	struct input in = { .d = data, .n = size, .pos = 1 };
	unsigned int nops = 0, runs = 0, k, i, n;
	uint8_t op, a[4], b[4];

	while (nops++ < MAX_HOST_OPS && take(&in, &op, 1)) {
		enum host_op h = op % H_NR;

		if (!take(&in, a, host_args[h]))
			break;
		if (h == H_RUN) {
			n = 1 + a[0] % MAX_GUEST_OPS;
			for (i = 0; i < n && take(&in, b, 4); i++)
				;
			if (runs >= MAX_RUNS || !i)
				break;
			runs++;
		} else if (h == H_MT_RUN) {
			unsigned int got[2];

			for (k = 0; k < 2; k++) {
				n = 1 + (a[0] >> (4 * k)) % 4;
				for (i = 0; i < n && take(&in, b, 4); i++)
					;
				got[k] = i;
			}
			if (got[0] && got[1] && runs + 2 <= MAX_RUNS)
				runs += 2;
		}
	}
	return runs;
}

static void world_run(struct world *w, const uint8_t *data, size_t size)
{
	struct input in = { .d = data, .n = size, .pos = 1 };
	struct ccvm_vcpu *pv = w->pv;
	unsigned int nops = 0;
	uint8_t op, a[4];

	while (nops++ < MAX_HOST_OPS && take(&in, &op, 1)) {
		enum host_op h = op % H_NR;
		bool launched = w->finalized;
		unsigned int first = w->nrec;
		struct prog prog;
		unsigned int i;

		if (!take(&in, a, host_args[h]))
			break;
		switch (h) {
		case H_SET_ATTR:
			op_set_attr(w, a);
			break;
		case H_PUNCH:
		case H_ALLOC:
			op_fallocate(w, a, h == H_PUNCH);
			break;
		case H_SLOT:
			op_slot(w, a);
			break;
		case H_PREFAULT:
			op_prefault(w, a, pv);
			break;
		case H_RUN:
			prog.n = 1 + a[0] % MAX_GUEST_OPS;	/* byte n - 1 */
			for (i = 0; i < prog.n; i++)
				if (!take(&in, prog.ops[i].b, 4))
					break;
			prog.n = i;
			if (w->nr_runs >= MAX_RUNS || !prog.n) {
				nops = MAX_HOST_OPS;	/* stop here, on every backend alike */
				break;
			}
			vmm_run(w, &prog);
			break;
		case H_GMEM_RW:
			op_gmem_rw(w, a);
			break;
		case H_GET_ATTR:
			op_get_attr(w, a);
			break;
		case H_GMEM_INFO:
			op_gmem_info(w);
			break;
		case H_WRAP:
			snprintf(rec_new(w, R_WRAP)->what, sizeof(w->recs[0].what), "wrap");
			ccvm_vm_force_generation_wrap(w->vm);
			break;
		case H_INJECT:
			op_inject(w, a);
			break;
		case H_GMEM_CLOSE:
			op_gmem_close(w);
			break;
		case H_TERMINATE:
			op_terminate(w);
			break;
		case H_POPULATE:
			op_populate(w, a);
			break;
		case H_FINALIZE:
			op_finalize(w);
			break;
		case H_QUERY:
			op_query(w, a);
			break;
		case H_KNOB:
			op_knob(w, a);
			break;
		case H_TRACE:
			op_trace(w, a);
			break;
		case H_MT_RUN:
			op_mt_run(w, &in, a);
			break;
		case H_VM2:
			op_vm2(w, a);
			break;
		case H_EXPLORE:
			op_explore(w, a);
			break;
		case H_GSET:
			op_gset(w, a);
			break;
		case H_PIN:
			op_pin(w, a);
			break;
		case H_INFO:
			op_info(w, a);
			break;
		case H_PHYS:
			op_phys(w, a);
			break;
		case H_SCHED:
			op_sched(w, a);
			break;
		case H_HUGE:
			op_huge(w, a);
			break;
		default:
			break;
		}
		/* Before finalize, guests and pre-faults are each backend's own. */
		if (!launched && (h == H_RUN || h == H_PREFAULT || h == H_MT_RUN ||
				  h == H_VM2 || h == H_GMEM_RW || (h == H_HUGE && (a[0] & 7) == 4)))
			for (i = first; i < w->nrec; i++)
				w->recs[i].flags |= F_DIVERGE;
		/* In place a gfn's attribute follows the slots and the file too. */
		if (w->in_place)
			refresh_attrs(w);
		check_invariants(w, w->nrec ? w->recs[w->nrec - 1].what : "?");
	}
}

/* ---- comparison ---------------------------------------------------------------------- */

static void disagree(const struct world *a, const struct world *b, unsigned int i,
		     const char *what)
{
	const struct rec *x = &a->recs[i], *y = &b->recs[i];

	die("backends disagree on record %u (%s): %s\n"
	    "  %-4s: %s: err %d v0 %#" PRIx64 " v1 %#" PRIx64 " data %#" PRIx64 " mmio %u/%#"
	    PRIx64 " memfault %u/%#" PRIx64 " flags %#x\n"
	    "  %-4s: %s: err %d v0 %#" PRIx64 " v1 %#" PRIx64 " data %#" PRIx64 " mmio %u/%#"
	    PRIx64 " memfault %u/%#" PRIx64 " flags %#x",
	    i, rec_names[x->kind], what,
	    a->backend, x->what, x->err, x->v0, x->v1, x->data, x->nr_mmio, x->mmio,
	    x->nr_memfault, x->memfault, x->flags,
	    b->backend, y->what, y->err, y->v0, y->v1, y->data, y->nr_mmio, y->mmio,
	    y->nr_memfault, y->memfault, y->flags);
}

static bool has_mmap(const struct world *w)
{
	return w->caps.gmem_flags & CCVM_GMEM_FLAG_MMAP;
}

/* Records compared and records in all, per backend pair (replay statistics). */
static uint64_t pair_compared[MAX_BACKENDS][MAX_BACKENDS], pair_total[MAX_BACKENDS][MAX_BACKENDS];

/* Return: how many records were compared before a cap difference stopped it. */
static unsigned int compare(const struct world *a, const struct world *b)
{
	unsigned int i;

	if (a->nrec != b->nrec)
		die("%s has %u records, %s %u", a->backend, a->nrec, b->backend, b->nrec);
	for (i = 0; i < a->nrec; i++) {
		const struct rec *x = &a->recs[i], *y = &b->recs[i];
		unsigned int flags = x->flags | y->flags;

		if (x->kind != y->kind)
			disagree(a, b, i, "different operations");
		if (flags & F_DIVERGE)
			return i;
		if ((flags & F_LAUNCH) && a->caps.needs_finalize != b->caps.needs_finalize)
			return i;
		if (flags & F_NOCMP)
			continue;
		/* Caps that make the rest of the sequence incomparable. */
		if ((flags & F_MISMATCH) && a->caps.has_shared_bit != b->caps.has_shared_bit)
			return i;
		/*
		 * How an accept of such a page faults or exits is each
		 * backend's own (TDX and SNP differ in the exits too).
		 */
		if (flags & F_ACCEPT_ODD)
			return i;
		if ((flags & F_GMEM_HOST) && has_mmap(a) != has_mmap(b)) {
			if (x->err != -ENODEV && y->err != -ENODEV)
				disagree(a, b, i, "both have no MMAP but answer otherwise");
			if (!x->err || !y->err)
				return i;
			continue;
		}
		if (x->err != y->err)
			disagree(a, b, i, "errno");
		/*
		 * Accepting faults pages in (allocating them) where accept is
		 * needed and does nothing elsewhere: the page count may differ.
		 */
		if ((x->v0 != y->v0 &&
		     !(x->kind == R_GMEM_INFO && (flags & F_ACCEPTED) &&
		       a->caps.requires_accept != b->caps.requires_accept)) || x->v1 != y->v1)
			disagree(a, b, i, "result values");
		if (x->nr_mmio != y->nr_mmio || x->mmio != y->mmio)
			disagree(a, b, i, "MMIO exits");
		if (x->nr_memfault != y->nr_memfault || x->memfault != y->memfault)
			disagree(a, b, i, "memory-fault exits");
		if (x->data != y->data &&
		    !((flags & F_ZAPDEP) && a->caps.preserves_data_without_punch !=
					    b->caps.preserves_data_without_punch))
			disagree(a, b, i, "data read");
	}
	return i;
}

/* ---- entry points --------------------------------------------------------------------- */

static struct world worlds[MAX_BACKENDS];

/* CCVM_FUZZ_DEBUG=1: every record of every backend, to see a disagreement. */
static void dump(const struct world *w)
{
	unsigned int i;

	for (i = 0; i < w->nrec; i++) {
		const struct rec *r = &w->recs[i];

		fprintf(stderr, "%-4s %3u %-40s err %5d v0 %#" PRIx64 " v1 %#" PRIx64
			" data %016" PRIx64 " mmio %u memfault %u exc %u flags %#x\n",
			w->backend, i, r->what, r->err, r->v0, r->v1, r->data, r->nr_mmio,
			r->nr_memfault, r->nr_exc, r->flags);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *const *names = ccvm_backend_names();
	unsigned int n, i, j, runs;

	if (size < 2)
		return 0;
	runs = count_runs(data, size);
	ccvm_set_log(quiet_log, NULL);
	for (n = 0; names[n] && n < MAX_BACKENDS; n++) {
		world_setup(&worlds[n], n, names[n], data[0], data[1], runs);
		world_run(&worlds[n], data, size);
		world_teardown(&worlds[n]);
	}
	if (getenv("CCVM_FUZZ_DEBUG"))
		for (i = 0; i < n; i++)
			dump(&worlds[i]);
	for (i = 0; i < n; i++) {
		for (j = i + 1; j < n; j++) {
			pair_compared[i][j] += compare(&worlds[i], &worlds[j]);
			pair_total[i][j] += worlds[i].nrec;
		}
	}
	return 0;
}

#ifndef CCVM_FUZZ_LIBFUZZER

/* ---- the seed corpus --------------------------------------------------------------------- */

/* Guest op bytes: kind | alias << 3, page, len/offset, seed or direction. */
#define GR(pg, lo, s)	G_READ, (pg), (lo), (s)
#define GW(pg, lo, s)	G_WRITE, (pg), (lo), (s)
#define GRS(pg, lo)	G_READ | (ALIAS_SHARED << 3), (pg), (lo), 0
#define GWS(pg, lo, s)	G_WRITE | (ALIAS_SHARED << 3), (pg), (lo), (s)
#define GWP(pg, lo, s)	G_WRITE | (ALIAS_PRIVATE << 3), (pg), (lo), (s)
#define GM(pg, n, p)	G_MAP, (pg), (n) - 1, (p)
#define GA(pg, n)	G_ACCEPT, (pg), (n) - 1, 0
#define PAGE_LEN	0x50		/* lens[5]: 4096 at offset 0 */
#define SMALL		0x13		/* 8 bytes at offset 0x300 */
#define RUN(n)		H_RUN, (n) - 1
#define GX(k, v)	G_EXT | ((k) << 5), 0, 0, (v)
/* Guest access in the huge file: page, 32-byte step, write, accept at 2M first. */
#define GH(pg, st, wr, acc, v)	G_EXT | (GX_HUGE << 5) | ((wr) << 3) | ((acc) << 4), \
				(pg) & 0xff, ((st) << 1) | ((pg) >> 8), (v)
/* H_HUGE: op, page, length index (| 8: unclipped). */
#define HH(op, pg, len)	H_HUGE, (op) | (((pg) >> 8) << 3), (pg) & 0xff, (len)

struct seed {
	const char *name;
	uint8_t bytes[160];
	size_t len;
};

#define SEED(nm, ...) { nm, { __VA_ARGS__ }, sizeof((uint8_t[]){ __VA_ARGS__ }) }

static const struct seed seeds[] = {
	SEED("private-rw", 4, RUN(4), GA(0, 4), GW(0, PAGE_LEN, 1), GW(1, SMALL, 2),
	     GR(0, PAGE_LEN, 0)),
	SEED("convert-punch", 5, RUN(8), GA(0, 2), GW(0, PAGE_LEN, 3), GM(0, 2, 0),
	     GW(0, PAGE_LEN, 4), GR(0, PAGE_LEN, 0), GM(0, 2, 1), GA(0, 2), GR(0, PAGE_LEN, 0)),
	SEED("convert-keep", 4, RUN(8), GA(2, 1), GW(2, PAGE_LEN, 5), GM(2, 1, 0),
	     GR(2, SMALL, 0), GM(2, 1, 1), GA(2, 1), GR(2, PAGE_LEN, 0), GW(2, SMALL, 6)),
	SEED("attr-errnos", 0, H_SET_ATTR, 0, 3, 1, H_SET_ATTR, 1, 1, 3, H_SET_ATTR, 2, 2, 5,
	     H_SET_ATTR, 3, 0, 7, H_SET_ATTR, 4, 1, 9, H_SET_ATTR, 5, 1, 11, H_SET_ATTR, 6, 1,
	     13, H_GET_ATTR, 0, H_GET_ATTR, 3),
	SEED("punch-refault", 4, RUN(3), GA(3, 2), GW(3, PAGE_LEN, 7), GW(4, PAGE_LEN, 8),
	     H_PUNCH, 3, 1, 0, RUN(3), GA(3, 2), GR(3, PAGE_LEN, 0), GR(4, PAGE_LEN, 0),
	     H_GMEM_INFO),
	SEED("fallocate-errnos", 0, H_ALLOC, 0, 3, 0, H_ALLOC, 1, 0, 1, H_PUNCH, 2, 0, 2,
	     H_PUNCH, 3, 0, 3, H_ALLOC, 4, 0, 4, H_PUNCH, 30, 7, 3, H_GMEM_INFO),
	SEED("memslots", 0, H_SLOT, 0, 20, 4, 1, H_SLOT, 1, 30, 4, 0, H_SLOT, 2, 10, 4, 1,
	     H_SLOT, 2, 40, 4, 0x15, H_SLOT, 1, 34, 4, 0, H_SLOT, 0, 20, 0, 0, H_SLOT, 0, 20,
	     4, 0x14, H_GMEM_INFO, H_SLOT, 1, 0, 0, 0),
	SEED("slot-errnos", 0, H_SLOT, 0, 20, 4, 0x11, H_SLOT, 0, 20, 4, 0x21, H_SLOT, 0, 20,
	     4, 0x30, H_SLOT, 0, 20, 4, 0x40, H_SLOT, 1, 21, 0, 0),
	SEED("prefault", 4, H_SET_ATTR, 8, 3, 0, H_PREFAULT, 0, 15, H_SLOT, 0, 20, 4, 2,
	     H_PREFAULT, 18, 7, H_PREFAULT, 70, 1, RUN(4), GA(0, 8), GR(0, PAGE_LEN, 0),
	     GRS(9, SMALL), GR(20, SMALL, 0)),
	SEED("mmio", 0, RUN(4), GR(80, SMALL, 0), GW(81, 0x10, 9), GR(90, 0x40, 0),
	     GW(95, 0x70, 3)),
	SEED("shared-slot", 0, H_SLOT, 0, 24, 8, 0, RUN(4), GW(24, PAGE_LEN, 1),
	     GR(25, 0x60, 0), GWS(26, SMALL, 2), GRS(26, SMALL)),
	SEED("implicit", 4, RUN(4), GA(5, 1), GWS(5, SMALL, 1), GWP(5, SMALL, 2),
	     GR(5, SMALL, 0)),
	SEED("gmem-host", 0, H_GMEM_RW, 8, 0x52, 1, 1, H_GMEM_RW, 8, 0x52, 0, 0,
	     H_SET_ATTR, 8, 0, 1, H_GMEM_RW, 8, 0x13, 0, 0, H_GMEM_INFO),
	SEED("gmem-slot-delete", 4, H_SLOT, 0, 40, 4, 1, H_SET_ATTR, 40, 3, 1, RUN(3),
	     GA(40, 4), GW(40, PAGE_LEN, 4), GR(41, SMALL, 0), H_SLOT, 0, 40, 0, 0,
	     H_SLOT, 0, 40, 4, 1, RUN(2), GA(40, 1), GR(40, PAGE_LEN, 0)),
	SEED("wrap", 4, RUN(2), GA(0, 1), GW(0, SMALL, 1), H_WRAP, H_SLOT, 0, 50, 2, 0,
	     RUN(2), GR(0, SMALL, 0), GR(50, SMALL, 0)),
	SEED("close-gmem-first", 7, RUN(6), GA(0, 4), GW(0, PAGE_LEN, 1), GM(1, 2, 0),
	     GWS(1, SMALL, 2), GM(1, 2, 1), GA(1, 2), H_PUNCH, 0, 15, 0),
	/* The extended operations (header bits: see world_setup()). */
	SEED("inject", 4, H_INJECT, 10, 0, 0, RUN(3), GA(0, 2), GW(0, PAGE_LEN, 1),
	     GR(0, PAGE_LEN, 0), H_INJECT, 7, 1, 9, H_SET_ATTR, 0, 3, 0, H_PREFAULT, 0, 3),
	SEED("gmem-close", 4, RUN(2), GA(0, 1), GW(0, SMALL, 1), H_GMEM_CLOSE, RUN(1),
	     GR(0, SMALL, 0), H_PREFAULT, 1, 1, H_GMEM_INFO),
	SEED("terminate", 4, RUN(2), GA(0, 1), GW(0, SMALL, 1), H_TERMINATE, RUN(1),
	     GR(0, SMALL, 0), H_SET_ATTR, 0, 1, 0),
	SEED("launch", 36, H_POPULATE, 0, 0x81, H_POPULATE, 2, 1, H_POPULATE, 0, 0,
	     H_FINALIZE, H_FINALIZE, RUN(3), GR(0, PAGE_LEN, 0), GA(2, 1), GW(2, SMALL, 3)),
	SEED("serial-two-runs", 12, H_MT_RUN, 0x11, GA(0, 1), GW(0, PAGE_LEN, 1),
	     GA(4, 1), GW(4, SMALL, 2), H_MT_RUN, 0x22, GM(8, 2, 0), GWS(8, SMALL, 3),
	     GR(8, SMALL, 0), GR(0, SMALL, 0), GM(8, 2, 1), GA(8, 2)),
	SEED("free-two-runs", 4, H_MT_RUN, 0x11, GA(0, 1), GW(0, PAGE_LEN, 1), GA(0, 1),
	     GW(0, PAGE_LEN, 2)),
	SEED("vm2", 20, H_VM2, 3, 0xc3, H_VM2, 0, 0x01, H_VM2, 0, 0x82, H_VM2, 0, 0x43,
	     H_VM2, 5, 0xc0),
	SEED("explore", 0, H_EXPLORE, 0, 1, 5, H_EXPLORE, 1, 2, 7, H_EXPLORE, 2, 0x20, 1),
	SEED("queries", 4, H_TRACE, 1, H_QUERY, 0, H_QUERY, 1, H_QUERY, 2, H_QUERY, 3,
	     H_QUERY, 4, H_QUERY, 5, H_KNOB, 0, 1, RUN(1), GW(0, SMALL, 1), H_TRACE, 0),
	SEED("yield-every-entry", 0x85, RUN(3), GA(0, 8), GW(0, PAGE_LEN, 1),
	     GW(5, PAGE_LEN, 2), H_PUNCH, 0, 15, 0, H_SET_ATTR, 0, 15, 0),
	/*
	 * In-place conversion (header 0x40).  H_GSET: offset, pages - 1,
	 * private | mode << 1 | bad << 3, reserved word; H_PIN: offset, pages
	 * - 1, unpin | bad << 1; H_GMEM_RW a[3] bit 1: ccvm_gmem_access().
	 */
	SEED("inplace-convert", 0x44, RUN(8), GA(0, 2), GW(0, PAGE_LEN, 1), GM(0, 2, 0),
	     GWS(0, SMALL, 2), GRS(0, SMALL), GM(0, 2, 1), GA(0, 2), GR(0, PAGE_LEN, 0),
	     H_GMEM_RW, 0, 0x52, 0, 2, H_GMEM_RW, 0, 0x52, 0, 3, H_GMEM_RW, 2, 0x50, 0, 2,
	     H_GMEM_INFO),
	SEED("inplace-gset", 0x40, H_GMEM_RW, 0, 0x50, 7, 1, H_GSET, 0, 3, 1, 0,
	     H_GSET, 0, 3, 1, 0, H_GSET, 0, 1, 0 | 1 << 1, 0, H_GMEM_RW, 0, 0x50, 0, 0,
	     H_GSET, 2, 1, 0, 0, H_GMEM_RW, 2, 0x50, 0, 0, H_GSET, 0, 0, 1 | 1 << 3, 0,
	     H_GSET, 0, 0, 1 | 2 << 3, 0, H_GSET, 0, 0, 1 | 3 << 3, 4, H_GSET, 0, 0, 1 | 4 << 3, 9,
	     H_GSET, 0, 0, 5 << 3, 1, H_GSET, 0, 0, 6 << 3, 0, H_GSET, 0, 0, 7 << 3, 0,
	     H_GSET, 0, 0, 8 << 3, 0, H_GSET, 0, 0, 1 | 3 << 1, 0, H_GSET, 0, 0, 1 | 1 << 1, 0,
	     H_SET_ATTR, 0, 3, 1, H_SET_ATTR, 0, 3, 0, H_GET_ATTR, 0),
	SEED("inplace-pins", 0x40, H_GMEM_RW, 2, 0x50, 5, 1, H_PIN, 2, 0, 0, H_PIN, 2, 0, 0,
	     H_GSET, 0, 7, 1, 0, H_PIN, 2, 0, 1, H_GSET, 0, 7, 1, 0, H_PIN, 2, 0, 1,
	     H_GSET, 0, 7, 1, 0, H_PIN, 4, 1, 0, H_PIN, 9, 0, 2, H_PIN, 9, 0, 4, H_PIN, 9, 0, 6,
	     H_PIN, 9, 0, 1, H_PIN, 20, 0, 0, H_PUNCH, 20, 0, 0, H_GSET, 20, 0, 1, 0,
	     H_GSET, 0, 15, 0, 0, H_GMEM_RW, 2, 0x50, 0, 0, H_GMEM_INFO),
	SEED("inplace-modes", 0x60, H_GSET, 0, 0, 1 | 2 << 1, 0, H_GSET, 1, 0, 0 | 2 << 1, 0,
	     H_GSET, 1, 0, 1, 0, H_POPULATE, 3, 0x80, H_GSET, 3, 0, 1, 0, H_POPULATE, 3, 0x80,
	     H_FINALIZE, H_GSET, 4, 0, 1 | 2 << 1, 0, H_GSET, 5, 0, 2 << 1, 0,
	     H_GSET, 1, 0, 0, 0, H_GMEM_RW, 1, 0x50, 4, 1, H_GSET, 1, 0, 1, 0,
	     H_GSET, 1, 0, 0 | 1 << 1, 0, H_GMEM_RW, 1, 0x50, 0, 0, H_GSET, 1, 0, 0 | 1 << 1, 0,
	     RUN(3), GA(0, 1), GR(0, PAGE_LEN, 0), GR(1, PAGE_LEN, 0)),
	SEED("inplace-slots", 0x44, H_SLOT, 0, 40, 4, 1, H_GSET, 16, 1, 1, 0, RUN(5),
	     GA(40, 2), GW(40, PAGE_LEN, 4), GWS(42, SMALL, 5), GR(42, SMALL, 0),
	     GM(41, 1, 0), H_PREFAULT, 40, 3, H_GMEM_RW, 17, 0x13, 0, 2, H_PUNCH, 16, 3, 0,
	     H_SLOT, 0, 40, 0, 0, H_GMEM_RW, 16, 0x13, 0, 2, H_PREFAULT, 0, 15, H_GMEM_INFO),
	SEED("inplace-two-runs", 0x48, H_PIN, 9, 0, 0, RUN(2), GM(8, 2, 1), GR(9, SMALL, 0),
	     H_PIN, 9, 0, 1, RUN(2), GM(8, 2, 1), GR(9, SMALL, 0),
	     H_MT_RUN, 0x22, GM(8, 2, 0), GWS(8, SMALL, 3), GM(8, 2, 1), GA(8, 2), GA(0, 1),
	     GW(0, PAGE_LEN, 1), GM(0, 1, 0), GWS(0, SMALL, 2),
	     H_GMEM_CLOSE, H_GSET, 0, 0, 0, 0, H_PIN, 0, 0, 0),
	SEED("gset-per-vm", 4, H_GSET, 0, 0, 1, 0, H_GSET, 0, 0, 0, 0, H_PIN, 0, 0, 0,
	     H_PIN, 0, 0, 1, H_GMEM_RW, 0, 0x13, 0, 2),
	/*
	 * Injected failures by backend op index (ccvm_backend_op_name()):
	 * update_mem_attr 18 on the second slot of a conversion (rolled back;
	 * forever: the roll back fails too and the VM is bugged),
	 * set_private_spte 20 in a fault, remove_private_spte 21 in a punch,
	 * gmem_prepare 13, vcpu_enter 11.
	 */
	SEED("rollback", 0, H_SLOT, 0, 16, 8, 1, H_INJECT, 18, 1, 9, H_SET_ATTR, 8, 15, 1,
	     H_GET_ATTR, 8, H_GET_ATTR, 16, RUN(2), GA(8, 1), GW(8, SMALL, 1)),
	SEED("rollback-fails", 0, H_SLOT, 0, 16, 8, 1, H_INJECT, 18, 1, 1, H_SET_ATTR, 8, 15, 1,
	     H_GET_ATTR, 8, H_QUERY, 0, RUN(1), GW(8, SMALL, 1)),
	SEED("inject-fault-punch", 4, H_INJECT, 20, 0, 9, RUN(3), GA(0, 2), GW(0, PAGE_LEN, 1),
	     GW(1, SMALL, 2), H_INJECT, 21, 0, 2, H_PUNCH, 0, 3, 0, H_GMEM_INFO),
	SEED("inject-prepare-enter", 4, H_INJECT, 13, 0, 8, H_PREFAULT, 0, 3, H_INJECT, 11, 1,
	     10, RUN(2), GA(0, 1), GW(0, SMALL, 1), RUN(1), GR(0, SMALL, 0)),
	/* Names and versions, the inspection calls, the scheduler's status. */
	SEED("info", 0, H_INFO, 0, 12, H_INFO, 1, 0, H_INFO, 2, 0, H_INFO, 3, 3, H_INFO, 4, 7,
	     H_INFO, 5, 2, H_INFO, 6, 0x33, H_INFO, 7, 18, H_INFO, 8, 0, H_INFO, 9, 1,
	     H_INFO, 9, 2, H_INFO, 6, 0x05),
	SEED("phys", 4, RUN(2), GA(0, 1), GW(0, PAGE_LEN, 1), H_PHYS, 0, 0x50, 0,
	     H_PHYS, 0, 0x13, 1, H_PHYS, 0, 0x52, 2, H_PHYS, 0, 0x13, 4, H_PHYS, 0, 0x13, 6,
	     H_SLOT, 0, 24, 2, 0, RUN(1), GW(24, SMALL, 2), H_PHYS, 24, 0x13, 1),
	SEED("guest-ext", 12, RUN(5), GX(GX_INFO, 0), GX(GX_SYNC, 7), GW(80, SMALL, 1),
	     GX(GX_SYNC, 9), GX(GX_ABORT, 3), H_SCHED, 1, RUN(2), GX(GX_INFO, 0), GR(81, SMALL, 0)),
	SEED("trace-opts", 4, H_TRACE, 0x0b, H_TRACE, 0x4b, RUN(1), GW(0, SMALL, 1), H_TRACE, 0,
	     H_TRACE, 0x05, H_SET_ATTR, 0, 3, 0, H_TRACE, 0x8b, H_TRACE, 0x2b, H_TRACE, 0),
	/*
	 * Huge folios, in place: a 2M folio made private and accepted at 2M,
	 * one page converted to shared (the folio splits), the guest reads
	 * across it, the page private again (the folio merges).
	 */
	SEED("huge-split-merge", 0x40, HH(6, 0, 0), RUN(3), GH(5, 2, 1, 1, 7), GH(5, 2, 0, 0, 0),
	     GH(300, 9, 1, 0, 8), HH(5, 0, 0), HH(1, 10, 0), HH(5, 10, 0), RUN(3),
	     GH(5, 2, 0, 0, 0), GH(10, 0, 1, 0, 9), GH(10, 0, 0, 0, 0), HH(0, 10, 0), HH(5, 0, 0),
	     RUN(2), GH(5, 2, 0, 1, 0), GH(300, 9, 0, 0, 0), HH(7, 0, 0), HH(5, 0, 0)),
	/*
	 * Huge folios, per-VM attributes: pre-faulted at 2M, a punch of part
	 * of the folio (zeroed, the folio stays), half of it shared, a whole
	 * punch, an allocation past the end of the file.
	 */
	SEED("huge-punch-part", 0, HH(6, 0, 0), HH(4, 0, 7), RUN(3), GH(3, 0, 1, 1, 3),
	     GH(400, 5, 1, 0, 4), GH(3, 0, 0, 0, 0), HH(2, 3, 1), HH(5, 3, 0), RUN(2),
	     GH(3, 0, 0, 0, 0), GH(400, 5, 0, 0, 0), HH(1, 256, 5), RUN(2), GH(300, 1, 1, 0, 5),
	     GH(300, 1, 0, 0, 0), HH(4, 0, 7), HH(2, 0, 7), HH(3, 200, 15), HH(5, 0, 0)),
	SEED("huge-racing-runs", 0x48, HH(6, 0, 0), RUN(2), GH(1, 0, 1, 1, 1), GH(1, 0, 0, 0, 0),
	     HH(1, 100, 2), HH(2, 101, 0), RUN(3), GH(100, 0, 0, 0, 0), GH(101, 0, 1, 0, 2),
	     GH(102, 0, 0, 0, 0), HH(0, 0, 7), HH(5, 0, 0)),
};

static int write_seeds(const char *dir)
{
	char path[4096];
	size_t i;

	for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/%02zu-%s", dir, i + 1, seeds[i].name);
		f = fopen(path, "wb");
		if (!f || fwrite(seeds[i].bytes, 1, seeds[i].len, f) != seeds[i].len) {
			perror(path);
			if (f)
				fclose(f);
			return 1;
		}
		fclose(f);
	}
	printf("fuzz_ccvm: %zu seeds written to %s\n", i, dir);
	return 0;
}

/* ---- replay ---------------------------------------------------------------------------- */

static int replay_file(const char *path)
{
	static uint8_t buf[1 << 20];
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f) {
		perror(path);
		return 1;
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	current_input = path;
	LLVMFuzzerTestOneInput(buf, n);
	current_input = NULL;
	return 0;
}

static int replay(const char *path, unsigned int *count)
{
	struct dirent **names;
	char sub[4096];
	int n, i, err = 0;

	n = scandir(path, &names, NULL, alphasort);
	if (n < 0) {
		(*count)++;
		return replay_file(path);
	}
	for (i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.' && !err) {
			snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name);
			(*count)++;
			err = replay_file(sub);
		}
		free(names[i]);
	}
	free(names);
	return err;
}

int main(int argc, char **argv)
{
	unsigned int count = 0;
	int i;

	if (argc == 3 && !strcmp(argv[1], "--write-seeds"))
		return write_seeds(argv[2]);
	if (argc < 2) {
		fprintf(stderr, "usage: fuzz_ccvm FILE|DIR...   replay inputs\n"
			"       fuzz_ccvm --write-seeds DIR   write the seed corpus\n");
		return 2;
	}
	for (i = 1; i < argc; i++)
		if (replay(argv[i], &count))
			return 1;
	printf("fuzz_ccvm: %u inputs replayed on every backend, all agree\n", count);
	if (getenv("CCVM_FUZZ_STATS")) {
		const char *const *names = ccvm_backend_names();
		unsigned int a, b;

		for (a = 0; names[a] && a < MAX_BACKENDS; a++)
			for (b = a + 1; names[b] && b < MAX_BACKENDS; b++)
				printf("  %s/%s: %" PRIu64 " of %" PRIu64 " records compared\n",
				       names[a], names[b], pair_compared[a][b], pair_total[a][b]);
	}
	return 0;
}

#endif /* !CCVM_FUZZ_LIBFUZZER */
