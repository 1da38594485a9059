/* SPDX-License-Identifier: MIT */
/*
 * Fault-injection sweep: every backend-op call of a scenario, failed in
 * turn with each errno the op can really return, on every built backend.
 *
 * For a scenario and a backend, one clean run records how many times each
 * op was called (ccvm_op_calls).  Then for every int op, every call index
 * 1..N and every errno of the op's table below, the scenario runs again on
 * a fresh platform with ccvm_inject_op_failure(p, op, index, err, 1).  Each
 * run must
 *   - reach the injected call (the run is deterministic up to it, so the
 *     op's error counter moves), and end either with an error returned to
 *     the VMM (an API call, a run, or the guest's own call reporting it) or
 *     with a clean recovery, where every data check passed;
 *   - never give a wrong answer without an error: data that does not match
 *     what was written, or an outcome the contract rules out, fails the
 *     test whatever was injected;
 *   - tear down with every close succeeding and the platform destroyable;
 *   - give back every page: free pages after teardown plus the pages the
 *     run leaked (a failed reclaim may leak, by design) equal the free pages
 *     before the VM existed, and on the mock nothing leaks at all;
 *   - leave no heap behind (LeakSanitizer, in the ASan build: fork mode
 *     reports a leak as the test's exit status);
 *   - pass the invariant checker on the VM at rest after the scenario and
 *     on the platform after teardown (a bugged VM may hold what a failed
 *     removal left; the checker knows).
 *
 * Scenarios are small (8-16 pages, one vCPU) so that the whole sweep takes
 * seconds.  The guest of a scenario is a script (struct gstep) run by one
 * guest function; the VMM loop is strict: an exit the script did not ask
 * for ends the run with an error, except MAP_GPA_RANGE, which it serves by
 * setting attributes (and punching the private backing, as a VMM that
 * discards does).
 *
 * Every API call a scenario makes that can fail is guarded: the observable
 * state (attributes, memslots, the gmem file's pages and bindings, the
 * invalidation state, every mapping of the GPA window) is taken before the
 * call and, if the call fails on a VM that is not bugged, compared after
 * it: nothing may have changed, except that mappings may only have gone
 * (a zap costs a refault, nothing else) and, on the fault paths
 * (pre-fault, populate), gmem may have allocated pages, as KVM's
 * kvm_gmem_get_pfn() keeps a folio whose mapping failed; populate also
 * keeps the pages before the failing one (documented progress).  A failure that
 * bugs the VM returns -EIO and is exempt: a bugged VM is reported, not
 * repaired.
 *
 * Set CCVM_SWEEP_VERBOSE=1 for a per-op summary of recovered and failed
 * runs on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <check.h>

#include <ccvm/backend.h>
#include <ccvm/ccvm.h>

#include "snapshot.h"
#include "testutil.h"

#define PAGE		CCVM_PAGE_SIZE
#define NPAGES		8			/* slot 0: GPA [0, 8 pages) */
#define GMEM_PAGES	16			/* slot 0 + the memslot scenario's slot 2 */
#define SLOT1_GPA	(64 * PAGE)		/* memslot scenario: plain slot */
#define SLOT2_GPA	(32 * PAGE)		/* memslot scenario: gmem slot */
#define SHARED_PAGES	(GMEM_PAGES + 8)	/* VMM memory behind every slot */
#define MAX_EXITS	256			/* a scenario needs far fewer */
/* Call indices swept per op; more are sampled evenly (none needs it today). */
#define MAX_INDICES	256

/* Run outcomes besides 0 and negative errnos: contract violations. */
#define BAD_DATA	1			/* data differs, no error was seen */
#define BAD_OUTCOME	2			/* an outcome the contract rules out */
#define NOT_APPLICABLE	3			/* the backend cannot run it (clean) */

/*
 * Errnos each op can really return, from the backends and the contract
 * (backend.h, docs/semantics.md).  -EBUSY and -EAGAIN are the contention
 * answers the core retries (install path, entry, accept); the others end
 * the operation.  An op missing here (one appended later) gets -EIO.
 */
static const struct op_errnos {
	const char *op;
	int err[4];
} op_errnos[] = {
	{ "vm_init",		 { -ENOMEM, -EBUSY, -EIO } },	/* no HKID/ASID: -EBUSY */
	{ "vm_finalize",	 { -EIO, -EINVAL, -EBUSY } },
	{ "vm_terminate",	 { -EIO } },
	{ "populate",		 { -EIO, -EBUSY, -EINVAL } },
	{ "vcpu_create",	 { -ENOMEM, -EIO } },
	{ "vcpu_enter",		 { -EAGAIN, -EIO } },		/* busy: retried */
	{ "gmem_prepare",	 { -ENOMEM, -EIO, -EINVAL } },	/* RMPUPDATE refused */
	{ "gmem_defer_removal",	 { -ENOMEM, -EIO } },		/* zaps now */
	{ "pre_set_mem_attr",	 { -EINVAL, -EBUSY } },
	{ "update_mem_attr",	 { -ENOMEM, -EIO, -EINVAL } },
	{ "link_private_spt",	 { -EBUSY, -ENOMEM, -EIO } },	/* SEPT.ADD */
	{ "set_private_spte",	 { -EBUSY, -EIO, -EINVAL } },	/* PAGE.AUG / PAGE.ADD */
	{ "remove_private_spte", { -EBUSY, -EIO } },		/* bugs the VM, leaks */
	{ "free_private_spt",	 { -EBUSY, -EIO } },		/* leaks the page */
	{ "fault_is_private",	 { -EIO } },
	{ "max_mapping_level",	 { -EIO } },			/* falls back to 4K */
	{ "handle_exit_hypercall", { -EINVAL, -EIO } },
	{ "guest_accept",	 { -EAGAIN, -EINVAL, -EIO } },	/* busy is retried */
	{ "guest_access",	 { -EIO, -EACCES } },		/* -EACCES: #VE/#VC */
	{ "host_access",	 { -EFAULT } },			/* SNP RMP fault */
};

static const int default_errnos[] = { -EIO };

/* ---- the guest: a script of accesses ---------------------------------------- */

enum gop {
	G_END,
	G_WRITE,	/* fill [gpa, gpa+len) with pattern(seed) */
	G_CHECK,	/* read it back, must be pattern(seed) */
	G_ZERO,		/* read, must be zeros */
	G_ACCEPT,	/* ccvm_guest_accept, only when the backend needs it */
	G_MAP,		/* ccvm_guest_map_gpa(to_private = priv) */
	G_SYNC,		/* ccvm_guest_sync(seed) */
};

struct gstep {
	uint8_t op;
	bool shared;	/* through the shared alias */
	bool priv;	/* G_MAP direction */
	uint8_t seed;
	uint64_t gpa, len;
};

/* Sync values the guest reports its end with (the script uses small ones). */
#define SYNC_GUEST_ERR	(1ull << 40)	/* | -errno of the guest's call */
#define SYNC_GUEST_BAD	(1ull << 41)	/* | index of the step that saw bad data */

struct guest_script {
	const struct gstep *steps;
	bool needs_accept;
};

static uint8_t pattern(uint8_t seed, uint64_t gpa)
{
	return (uint8_t)(seed * 37 + (gpa >> 12) * 11 + gpa * 3 + 1);
}

#define GBUF	(4 * PAGE)

static void guest_script_fn(struct ccvm_guest *g, void *arg)
{
	const struct guest_script *s = arg;
	const uint64_t sbit = ccvm_guest_shared_bit(g);
	static _Thread_local uint8_t buf[GBUF];
	unsigned int i;
	uint64_t k;
	int err = 0;

	for (i = 0; s->steps[i].op != G_END; i++) {
		const struct gstep *st = &s->steps[i];
		uint64_t gpa = st->gpa | (st->shared ? sbit : 0);
		bool bad = false;

		switch (st->op) {
		case G_WRITE:
			for (k = 0; k < st->len; k++)
				buf[k] = pattern(st->seed, st->gpa + k);
			err = ccvm_guest_write(g, gpa, buf, st->len);
			break;
		case G_CHECK:
		case G_ZERO:
			memset(buf, 0xee, st->len);
			err = ccvm_guest_read(g, gpa, buf, st->len);
			for (k = 0; !err && k < st->len; k++)
				bad |= buf[k] != (st->op == G_ZERO ? 0 :
						  pattern(st->seed, st->gpa + k));
			break;
		case G_ACCEPT:
			if (s->needs_accept)
				err = ccvm_guest_accept(g, st->gpa, st->len);
			break;
		case G_MAP:
			err = ccvm_guest_map_gpa(g, st->gpa, st->len, st->priv);
			break;
		case G_SYNC:
			ccvm_guest_sync(g, st->seed);
			break;
		}
		if (err) {
			ccvm_guest_sync(g, SYNC_GUEST_ERR | (uint64_t)(uint32_t)-err);
			return;
		}
		if (bad) {
			ccvm_guest_sync(g, SYNC_GUEST_BAD | i);
			return;
		}
	}
}

/* ---- one run ----------------------------------------------------------------- */

/* The GPA window whose mappings a guard compares (every scenario slot is in it). */
#define WIN_PAGES	128

struct guard_state {
	struct tu_snap snap;
	uint64_t pfn[2][WIN_PAGES];	/* [private alias, shared alias], UINT64_MAX: none */
};

struct run {
	const char *backend;
	struct guard_state before, after;
	struct ccvm_backend_caps caps;
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	struct ccvm_vcpu *v;
	uint8_t *shared;		/* SHARED_PAGES of VMM memory */
	uint64_t sbit;
	bool punch_on_share;		/* the VMM discards private pages going shared */
	struct guest_script script;
	const char *why;		/* what a contract violation was */
};


/* ---- guards: a failing call changes nothing ------------------------------- */

enum guard_kind {
	GUARD_ALL,	/* nothing may change but mappings going */
	GUARD_FAULT,	/* gmem may also have allocated pages */
	GUARD_PROGRESS,	/* and pages before the failing one stay mapped (populate) */
};

static void guard_take(struct run *r, struct guard_state *st)
{
	uint64_t i;
	int a;

	tu_snap_take(&st->snap, r->p, r->vm, r->g, NULL, 0, WIN_PAGES * PAGE);
	for (a = 0; a < 2; a++) {
		for (i = 0; i < WIN_PAGES; i++) {
			uint64_t gpa = i * PAGE | (a ? r->sbit : 0), pfn;
			int level;

			st->pfn[a][i] = r->vm && !ccvm_vm_lookup_mapping(r->vm, gpa, &pfn, &level) ?
					pfn : UINT64_MAX;
		}
	}
}

static void guard_begin(struct run *r)
{
	if (r->vm)
		guard_take(r, &r->before);
}

/*
 * After a guarded call that returned @err: if it failed on a VM that is not
 * bugged, compare.  Return: @err, or BAD_OUTCOME with r->why set.
 */
static int guard_end(struct run *r, int err, enum guard_kind kind, const char *call)
{
	struct guard_state *b = &r->before, *a = &r->after;
	static char why[256];
	unsigned int i;
	int al;

	if (!err || !r->vm || ccvm_vm_is_bugged(r->vm))
		return err;
	guard_take(r, a);
#define GUARD_FAIL(...) do {						\
		snprintf(why, sizeof(why), __VA_ARGS__);		\
		r->why = why;						\
		return BAD_OUTCOME;					\
	} while (0)
	if (a->snap.nr_runs != b->snap.nr_runs)
		GUARD_FAIL("%s failed (%d) but the attribute runs changed (%u -> %u)", call, err,
			   b->snap.nr_runs, a->snap.nr_runs);
	for (i = 0; i < a->snap.nr_runs; i++)
		if (memcmp(&a->snap.runs[i], &b->snap.runs[i], sizeof(a->snap.runs[i])))
			GUARD_FAIL("%s failed (%d) but attribute run %u changed (gpa %#" PRIx64
				   " attr %#" PRIx64 " -> gpa %#" PRIx64 " attr %#" PRIx64 ")",
				   call, err, i, b->snap.runs[i].gpa, b->snap.runs[i].attr,
				   a->snap.runs[i].gpa, a->snap.runs[i].attr);
	if (a->snap.generation != b->snap.generation || a->snap.nr_slots != b->snap.nr_slots ||
	    memcmp(a->snap.slots, b->snap.slots, sizeof(a->snap.slots)))
		GUARD_FAIL("%s failed (%d) but the memslots changed", call, err);
	if (a->snap.in_progress != b->snap.in_progress)
		GUARD_FAIL("%s failed (%d) but left an invalidation in progress", call, err);
	if (a->snap.gmem[0].nr_bindings != b->snap.gmem[0].nr_bindings ||
	    a->snap.gmem[0].size != b->snap.gmem[0].size)
		GUARD_FAIL("%s failed (%d) but the gmem file's bindings or size changed", call,
			   err);
	if (kind == GUARD_ALL ? a->snap.gmem[0].nr_pages != b->snap.gmem[0].nr_pages :
	    a->snap.gmem[0].nr_pages < b->snap.gmem[0].nr_pages)
		GUARD_FAIL("%s failed (%d) but gmem pages went %" PRIu64 " -> %" PRIu64, call,
			   err, b->snap.gmem[0].nr_pages, a->snap.gmem[0].nr_pages);
	for (al = 0; al < 2 && kind != GUARD_PROGRESS; al++)
		for (i = 0; i < WIN_PAGES; i++)
			if (a->pfn[al][i] != UINT64_MAX && a->pfn[al][i] != b->pfn[al][i])
				GUARD_FAIL("%s failed (%d) but gfn %#x (%s alias) is mapped to "
					   "pfn %#" PRIx64 " (before: %#" PRIx64 ")", call, err,
					   i, al ? "shared" : "private", a->pfn[al][i],
					   b->pfn[al][i]);
#undef GUARD_FAIL
	return err;
}

/* Run @call guarded: a failure must leave the state as it was. */
#define GUARDED(r, kind, call) (guard_begin(r), guard_end((r), (call), (kind), #call))

static int vm_setup(struct run *r, bool with_vcpu)
{
	struct ccvm_memory_region mr = {
		.slot = 0,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = 0,
		.memory_size = NPAGES * PAGE,
	};
	int err;

	err = ccvm_vm_create(r->p, NULL, &r->vm);
	if (err)
		return err;
	r->sbit = ccvm_vm_shared_bit(r->vm);
	err = GUARDED(r, GUARD_ALL, ccvm_gmem_create(r->vm, GMEM_PAGES * PAGE, 0, &r->g));
	if (err)
		return err;
	mr.userspace_addr = r->shared;
	mr.gmem = r->g;
	err = GUARDED(r, GUARD_ALL, ccvm_vm_set_user_memory_region(r->vm, &mr));
	if (err)
		return err;
	err = GUARDED(r, GUARD_ALL, ccvm_vm_set_memory_attributes(r->vm, 0, NPAGES * PAGE,
								 CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0));
	if (err || !with_vcpu)
		return err;
	return GUARDED(r, GUARD_ALL, ccvm_vcpu_create(r->vm, 0, &r->v));
}

/* Backends with a launch protocol are runnable only after finalize. */
static int launch(struct run *r)
{
	return r->caps.needs_finalize ? GUARDED(r, GUARD_ALL, ccvm_vm_finalize(r->vm)) : 0;
}

static int vmm_convert(struct run *r, uint64_t gpa, uint64_t size, bool to_private)
{
	int err;

	if (gpa >= NPAGES * PAGE || size > NPAGES * PAGE - gpa)
		return -EINVAL;
	err = GUARDED(r, GUARD_ALL, ccvm_vm_set_memory_attributes(r->vm, gpa, size,
				to_private ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0));
	if (!err && !to_private && r->punch_on_share)
		err = GUARDED(r, GUARD_ALL, ccvm_gmem_fallocate(r->g, CCVM_FALLOC_PUNCH_HOLE |
								CCVM_FALLOC_KEEP_SIZE, gpa, size));
	return err;
}

/*
 * Run the guest script to its end.  Return: 0 (the guest finished and every
 * check passed), the first error seen, or BAD_DATA / BAD_OUTCOME.
 */
static int vmm_run(struct run *r, const struct gstep *steps)
{
	struct ccvm_run *run;
	unsigned int n;
	int err;

	r->script.steps = steps;
	r->script.needs_accept = r->caps.requires_accept;
	err = ccvm_vcpu_set_guest(r->v, guest_script_fn, &r->script);
	if (err)
		return err;
	run = ccvm_vcpu_run_state(r->v);
	for (n = 0; n < MAX_EXITS; n++) {
		err = ccvm_vcpu_run(r->v);
		/*
		 * -EFAULT with a memory-fault exit is the guest asking for a
		 * conversion (its access and the attribute differ).  Scripts
		 * always use the alias the attribute says, so whatever failed,
		 * that request is wrong: a VMM would convert on it.
		 */
		if (err == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT) {
			r->why = "memory-fault exit (a conversion request) the guest never made";
			return BAD_OUTCOME;
		}
		if (err)
			return err;
		switch (run->exit_reason) {
		case CCVM_EXIT_DONE:
			return 0;
		case CCVM_EXIT_HYPERCALL:
			if (run->hypercall.nr != CCVM_HC_MAP_GPA_RANGE) {
				r->why = "unknown hypercall";
				return BAD_OUTCOME;
			}
			err = vmm_convert(r, run->hypercall.args[0],
					  run->hypercall.args[1] * PAGE,
					  run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED);
			run->hypercall.ret = (uint64_t)-err;
			/* The guest gets it back and reports it; keep running. */
			break;
		case CCVM_EXIT_SYNC:
			if (run->sync.value & SYNC_GUEST_ERR)
				return -(int)(uint32_t)run->sync.value;
			if (run->sync.value & SYNC_GUEST_BAD) {
				r->why = "guest read wrong data";
				return BAD_DATA;
			}
			break;
		case CCVM_EXIT_EXCEPTION:
			return -EACCES;		/* #VE/#VC: an injected access refusal */
		case CCVM_EXIT_GUEST_ABORT:
			r->why = "guest abort";
			return BAD_OUTCOME;
		default:
			/* MMIO or a memory fault the script never provokes. */
			r->why = "unexpected exit";
			return BAD_OUTCOME;
		}
	}
	r->why = "guest never finished";
	return BAD_OUTCOME;
}

/* The VMM's own copy of what the guest wrote through the shared alias. */
static int check_shared_copy(struct run *r, uint64_t gpa, uint64_t len, uint8_t seed)
{
	uint64_t k;

	for (k = 0; k < len; k++) {
		if (r->shared[gpa + k] != pattern(seed, gpa + k)) {
			r->why = "VMM memory differs from the guest's shared writes";
			return BAD_DATA;
		}
	}
	return 0;
}

/* ---- scenarios ------------------------------------------------------------------ */

enum close_order {
	CLOSE_VM_FIRST,		/* vCPU, VM, then the gmem file (VM dies with it) */
	CLOSE_GMEM_FIRST,	/* gmem file, vCPU, then the VM */
};

struct scenario {
	const char *name;
	int (*body)(struct run *r);
	enum close_order order;
};

#define S_W(a, n, s)	{ .op = G_WRITE, .gpa = (a) * PAGE, .len = (n) * PAGE, .seed = (s) }
#define S_WS(a, n, s)	{ .op = G_WRITE, .gpa = (a) * PAGE, .len = (n) * PAGE, .seed = (s), \
			  .shared = true }
#define S_C(a, n, s)	{ .op = G_CHECK, .gpa = (a) * PAGE, .len = (n) * PAGE, .seed = (s) }
#define S_CS(a, n, s)	{ .op = G_CHECK, .gpa = (a) * PAGE, .len = (n) * PAGE, .seed = (s), \
			  .shared = true }
#define S_Z(a, n)	{ .op = G_ZERO, .gpa = (a) * PAGE, .len = (n) * PAGE }
#define S_A(a, n)	{ .op = G_ACCEPT, .gpa = (a) * PAGE, .len = (n) * PAGE }
#define S_M(a, n, p)	{ .op = G_MAP, .gpa = (a) * PAGE, .len = (n) * PAGE, .priv = (p) }
#define S_END		{ .op = G_END }

/* Private writes and reads of 4 pages: the path every guest takes. */
static const struct gstep steps_private[] = {
	S_A(0, 4), S_W(0, 4, 1), S_C(0, 4, 1), S_END,
};

static int sc_run_private(struct run *r)
{
	int err = vm_setup(r, true);

	if (!err)
		err = launch(r);
	if (!err)
		err = vmm_run(r, steps_private);
	return err;
}

/*
 * A conversion round trip with punch: pages 2-3 go shared (the VMM punches
 * their private backing), are written through the shared alias, come back
 * private and read zeros; pages 0-1 keep their data throughout.
 */
static const struct gstep steps_convert[] = {
	S_A(0, 4), S_W(0, 4, 2), S_C(0, 4, 2),
	S_M(2, 2, false), S_WS(2, 2, 3), S_CS(2, 2, 3), S_C(0, 2, 2),
	S_M(2, 2, true), S_A(2, 2), S_Z(2, 2), S_W(2, 2, 4), S_C(0, 2, 2), S_C(2, 2, 4),
	S_END,
};

static int sc_convert(struct run *r)
{
	int err = vm_setup(r, true);

	r->punch_on_share = true;
	if (!err)
		err = launch(r);
	if (!err)
		err = vmm_run(r, steps_convert);
	if (!err)
		err = check_shared_copy(r, 2 * PAGE, 2 * PAGE, 3);
	return err;
}

/*
 * KVM_PRE_FAULT_MEMORY makes partial progress and returns 0 if anything
 * was mapped: the VMM calls again for the rest, as userspace does.
 */
static int prefault(struct run *r, uint64_t gpa, uint64_t size)
{
	while (size) {
		uint64_t left = size;
		int err = GUARDED(r, GUARD_FAULT, ccvm_vcpu_pre_fault_memory(r->v, &gpa, &size));

		if (err)
			return err;
		if (size >= left) {
			r->why = "pre-fault returned 0 without progress";
			return BAD_OUTCOME;
		}
	}
	return 0;
}

/*
 * KVM_PRE_FAULT_MEMORY over 4 private and 4 shared pages, then a guest
 * that uses them (accepting what the pre-fault mapped).
 */
static const struct gstep steps_prefault[] = {
	S_A(0, 4), S_W(0, 4, 5), S_WS(4, 4, 6), S_C(0, 4, 5), S_CS(4, 4, 6), S_END,
};

static int sc_prefault(struct run *r)
{
	int err = vm_setup(r, true);

	if (!err)
		err = GUARDED(r, GUARD_ALL, ccvm_vm_set_memory_attributes(r->vm, 4 * PAGE,
									 4 * PAGE, 0, 0));
	if (!err)
		err = launch(r);
	if (!err)
		err = prefault(r, 0, NPAGES * PAGE);
	if (!err)
		err = vmm_run(r, steps_prefault);
	if (!err)
		err = check_shared_copy(r, 4 * PAGE, 4 * PAGE, 6);
	return err;
}

/*
 * The gmem file closed while the VM and its vCPU live: a private fault on a
 * page never mapped must find no file (-EFAULT), then the rest goes.
 */
static int sc_gmem_close_first(struct run *r)
{
	uint64_t gpa = 6 * PAGE, size = PAGE;
	int err = sc_run_private(r);

	if (err)
		return err;
	err = ccvm_gmem_close(r->g);
	r->g = NULL;
	if (err)
		return err;
	err = GUARDED(r, GUARD_FAULT, ccvm_vcpu_pre_fault_memory(r->v, &gpa, &size));
	if (err == -EFAULT)
		return 0;
	r->why = "pre-fault after gmem close did not see the file gone";
	return err ? err : BAD_OUTCOME;
}

/*
 * The VM handle and vCPU closed before the gmem file, which keeps the VM
 * alive: punching the whole file must still work, and its last close
 * destroys the VM.
 */
static int sc_vm_close_first(struct run *r)
{
	int err = sc_run_private(r);

	if (err)
		return err;
	err = ccvm_vcpu_close(r->v);
	r->v = NULL;
	if (!err)
		err = ccvm_vm_close(r->vm);
	r->vm = NULL;
	if (err)
		return err;
	return ccvm_gmem_fallocate(r->g, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE, 0,
				   GMEM_PAGES * PAGE);
}

/*
 * Launch: populate two measured pages, finalize, then a guest that reads
 * them and accepts and writes the rest.  Only for backends with a launch
 * protocol.
 */
static const struct gstep steps_launch[] = {
	S_C(0, 2, 7), S_A(2, 2), S_W(2, 2, 8), S_C(2, 2, 8), S_C(0, 2, 7), S_END,
};

static int sc_launch(struct run *r)
{
	uint8_t src[2 * PAGE];
	uint64_t k;
	int err;

	if (!r->caps.needs_finalize)
		return NOT_APPLICABLE;
	err = vm_setup(r, true);
	for (k = 0; k < sizeof(src); k++)
		src[k] = pattern(7, k);
	if (!err)
		err = GUARDED(r, GUARD_PROGRESS, ccvm_vm_populate(r->vm, 0, src, sizeof(src),
							       CCVM_POPULATE_MEASURE));
	if (!err)
		err = GUARDED(r, GUARD_ALL, ccvm_vm_finalize(r->vm));
	if (!err)
		err = vmm_run(r, steps_launch);
	return err;
}

/* Terminate (early key release) after a run, then the usual teardown. */
static int sc_terminate(struct run *r)
{
	int err = sc_run_private(r);

	if (err)
		return err;
	err = GUARDED(r, GUARD_ALL, ccvm_vm_terminate(r->vm));
	if (err == -EOPNOTSUPP)
		return NOT_APPLICABLE;
	if (err)
		return err;
	/* A dead VM runs no more. */
	err = vmm_run(r, steps_private);
	if (err == -EIO)
		return 0;
	r->why = "run after terminate did not fail with -EIO";
	return err ? err : BAD_OUTCOME;
}

/*
 * Memslot churn: a plain slot and a second gmem slot (file pages 8-15) are
 * created, pre-faulted, moved (the plain one) and deleted; the gmem slot
 * comes back and is faulted again.
 */
static int slot(struct run *r, uint32_t id, uint32_t flags, uint64_t gpa, uint64_t pages,
		uint64_t shared_page, uint64_t gmem_page)
{
	struct ccvm_memory_region mr = {
		.slot = id,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = pages * PAGE,
		.userspace_addr = pages ? r->shared + shared_page * PAGE : NULL,
		.gmem = (flags & CCVM_MEM_GUEST_MEMFD) ? r->g : NULL,
		.gmem_offset = gmem_page * PAGE,
	};

	return GUARDED(r, GUARD_ALL, ccvm_vm_set_user_memory_region(r->vm, &mr));
}

static int sc_memslot(struct run *r)
{
	int err = vm_setup(r, true);

	if (!err)
		err = slot(r, 1, 0, SLOT1_GPA, 4, NPAGES, 0);
	if (!err)
		err = slot(r, 2, CCVM_MEM_GUEST_MEMFD, SLOT2_GPA, 4, NPAGES + 4, NPAGES);
	if (!err)
		err = GUARDED(r, GUARD_ALL, ccvm_vm_set_memory_attributes(r->vm, SLOT2_GPA,
					4 * PAGE, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0));
	if (!err)
		err = launch(r);
	if (!err)
		err = prefault(r, SLOT1_GPA, 4 * PAGE);
	if (!err)
		err = prefault(r, SLOT2_GPA, 4 * PAGE);
	if (!err)
		err = prefault(r, 0, 2 * PAGE);
	if (!err)	/* move the plain slot */
		err = slot(r, 1, 0, SLOT1_GPA + 8 * PAGE, 4, NPAGES, 0);
	if (!err)
		err = slot(r, 2, 0, 0, 0, 0, 0);
	if (!err)
		err = slot(r, 2, CCVM_MEM_GUEST_MEMFD, SLOT2_GPA, 4, NPAGES + 4, NPAGES);
	if (!err)
		err = prefault(r, SLOT2_GPA, 2 * PAGE);
	if (!err)
		err = prefault(r, SLOT1_GPA + 8 * PAGE, PAGE);
	if (!err)
		err = slot(r, 1, 0, 0, 0, 0, 0);
	return err;
}

static const struct scenario scenarios[] = {
	{ "run_private",	sc_run_private,		CLOSE_VM_FIRST },
	{ "convert_punch",	sc_convert,		CLOSE_GMEM_FIRST },
	{ "prefault",		sc_prefault,		CLOSE_VM_FIRST },
	{ "gmem_close_first",	sc_gmem_close_first,	CLOSE_GMEM_FIRST },
	{ "vm_close_first",	sc_vm_close_first,	CLOSE_VM_FIRST },
	{ "launch",		sc_launch,		CLOSE_VM_FIRST },
	{ "terminate",		sc_terminate,		CLOSE_GMEM_FIRST },
	{ "memslot",		sc_memslot,		CLOSE_VM_FIRST },
};

#define NR_SCENARIOS	((int)TU_ARRAY_SIZE(scenarios))

/* ---- run, tear down, account -------------------------------------------------- */

struct result {
	int rc;				/* the scenario's outcome */
	uint64_t op_calls[CCVM_STATS_MAX_OPS];	/* this run's calls per op */
	uint64_t op_errors[CCVM_STATS_MAX_OPS];
	uint64_t leaked;		/* pages leaked by the run */
};

static void close_all(struct run *r, enum close_order order)
{
	if (order == CLOSE_GMEM_FIRST && r->g) {
		ck_assert_int_eq(ccvm_gmem_close(r->g), 0);
		r->g = NULL;
	}
	if (r->v)
		ck_assert_int_eq(ccvm_vcpu_close(r->v), 0);
	if (r->vm)
		ck_assert_int_eq(ccvm_vm_close(r->vm), 0);
	if (r->g)
		ck_assert_int_eq(ccvm_gmem_close(r->g), 0);
	r->v = NULL;
	r->vm = NULL;
	r->g = NULL;
}

static struct ccvm_stats platform_stats(struct ccvm_platform *p)
{
	struct ccvm_stats st = { .sz = sizeof(st) };

	ck_assert_int_eq(ccvm_platform_get_stats(p, &st), 0);
	return st;
}

/*
 * Run @sc on a fresh platform of @backend, failing call @nth of op @op
 * and the @times - 1 calls after it (0: every call from @nth on) with @err
 * (op NULL: a clean run).  Everything the run made is closed
 * and the platform destroyed here; the page accounting is asserted.
 */
static void run_once(const char *backend, const struct scenario *sc, const char *op,
		     uint64_t nth, int err, uint64_t times, uint8_t *shared,
		     struct result *res)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = backend,
						      .mem_bytes = 64 * TU_MiB,
						      .seed = 1);
	struct ccvm_stats before, after;
	struct run r;
	unsigned int i;

	memset(&r, 0, sizeof(r));
	memset(res, 0, sizeof(*res));
	memset(shared, 0, SHARED_PAGES * PAGE);
	r.backend = backend;
	r.shared = shared;
	r.caps.sz = sizeof(r.caps);
	ck_assert_int_eq(ccvm_backend_caps(backend, &r.caps), 0);
	ck_assert_int_eq(ccvm_platform_create(&po, &r.p), 0);
	before = platform_stats(r.p);
	if (op)
		ck_assert_int_eq(ccvm_inject_op_failure(r.p, op, nth, err, times), 0);

	res->rc = sc->body(&r);

	/* At rest (the guest, if any, is blocked in an exit): invariants hold. */
	if (r.vm) {
		struct ccvm_invariant_report rep = { .sz = sizeof(rep) };

		ck_assert_int_eq(ccvm_vm_check_invariants(r.vm, &rep), 0);
		ck_assert_msg(rep.invariant == 0, "%s on %s, %s call %" PRIu64 " failing with "
			      "%d: invariant I%u broken: %s", sc->name, backend,
			      op ? op : "no op", nth, err, rep.invariant, rep.msg);
	}
	close_all(&r, sc->order);
	{
		struct ccvm_invariant_report rep = { .sz = sizeof(rep) };

		ck_assert_int_eq(ccvm_platform_check_invariants(r.p, &rep), 0);
		ck_assert_msg(rep.invariant == 0, "%s on %s, %s call %" PRIu64 " failing with "
			      "%d: after teardown, invariant I%u broken: %s", sc->name, backend,
			      op ? op : "no op", nth, err, rep.invariant, rep.msg);
	}
	after = platform_stats(r.p);
	for (i = 0; i < CCVM_STATS_MAX_OPS; i++) {
		res->op_calls[i] = after.op_calls[i] - before.op_calls[i];
		res->op_errors[i] = after.op_errors[i] - before.op_errors[i];
	}
	res->leaked = after.leaked_pages - before.leaked_pages;
	ck_assert_msg(after.free_pages + res->leaked == before.free_pages,
		      "%s on %s, %s call %" PRIu64 " failing with %d: %" PRIu64
		      " free pages before, %" PRIu64 " after teardown with %" PRIu64
		      " leaked: pages lost", sc->name, backend, op ? op : "no op", nth, err,
		      before.free_pages, after.free_pages, res->leaked);
	if (!strcmp(backend, "mock"))
		ck_assert_msg(res->leaked == 0, "%s on mock leaked %" PRIu64 " pages",
			      sc->name, res->leaked);
	ck_assert_msg(ccvm_platform_destroy(r.p) == 0,
		      "%s on %s, %s call %" PRIu64 " failing with %d: platform still busy "
		      "after teardown (a VM or gmem inode outlived its handles)", sc->name,
		      backend, op ? op : "no op", nth, err);
	if (res->rc > 0 && res->rc != NOT_APPLICABLE)
		ck_abort_msg("%s on %s, %s call %" PRIu64 " failing with %d: %s", sc->name,
			     backend, op ? op : "no op", nth, err, r.why ? r.why : "?");
}

static const int *errnos_of(const char *op, unsigned int *n)
{
	size_t i;

	for (i = 0; i < TU_ARRAY_SIZE(op_errnos); i++) {
		if (!strcmp(op_errnos[i].op, op)) {
			for (*n = 0; *n < 4 && op_errnos[i].err[*n]; (*n)++)
				;
			return op_errnos[i].err;
		}
	}
	*n = TU_ARRAY_SIZE(default_errnos);
	return default_errnos;
}

/* Call index number @k of @count swept when an op has @n calls. */
static uint64_t sweep_index(uint64_t k, uint64_t n, uint64_t count)
{
	if (count == n)
		return k + 1;
	return 1 + k * (n - 1) / (count - 1);
}

static bool verbose(void)
{
	const char *v = getenv("CCVM_SWEEP_VERBOSE");

	return v && *v && strcmp(v, "0");
}

/* The built-in backends, counted when the suite is built (before any test
 * registers one of its own). */
static int nr_backends;

static int count_backends(void)
{
	const char *const *names = ccvm_backend_names();
	int k;

	for (k = 0; names[k]; k++)
		;
	return k;
}

/*
 * Sweep scenario/backend pair @i.  One-shot: every call index fails once.
 * Persistent: the first and the last call of each op fail from there on
 * (count 0), which must still end: every retry loop is bounded.
 */
static void sweep(int i, bool persistent)
{
	const struct scenario *sc = &scenarios[i / nr_backends];
	const char *backend = ccvm_backend_names()[i % nr_backends];
	struct ccvm_platform *probe;
	struct result clean, res;
	uint64_t runs = 0;
	uint8_t *shared;
	unsigned int op;

	tu_quiet_log();
	shared = mmap(NULL, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(shared != MAP_FAILED);

	run_once(backend, sc, NULL, 0, 0, 1, shared, &clean);
	if (clean.rc == NOT_APPLICABLE) {
		munmap(shared, SHARED_PAGES * PAGE);
		return;
	}
	ck_assert_msg(clean.rc == 0, "%s on %s fails without injection: %d (%s)",
		      sc->name, backend, clean.rc, ccvm_strerror(clean.rc));

	/* Which ops can fail: void ops refuse a rule. */
	ck_assert_int_eq(ccvm_platform_create(NULL, &probe), 0);
	for (op = 0; op < CCVM_STATS_MAX_OPS && ccvm_backend_op_name(op); op++) {
		const char *name = ccvm_backend_op_name(op);
		uint64_t n = clean.op_calls[op], count, k;
		unsigned int nerr, e, recovered = 0, failed = 0;
		const int *errs;

		if (!n || ccvm_inject_op_failure(probe, name, 1, -EIO, 1))
			continue;
		errs = errnos_of(name, &nerr);
		if (persistent)
			count = n > 1 ? 2 : 1;
		else
			count = n < MAX_INDICES ? n : MAX_INDICES;
		for (k = 0; k < count; k++) {
			uint64_t nth = sweep_index(k, n, count);

			for (e = 0; e < nerr; e++) {
				run_once(backend, sc, name, nth, errs[e], persistent ? 0 : 1,
					 shared, &res);
				runs++;
				ck_assert_msg(res.op_errors[op] >= 1,
					      "%s on %s: call %" PRIu64 " of %s (of %" PRIu64
					      " in the clean run) was never made: the run is "
					      "not deterministic", sc->name, backend, nth, name, n);
				ck_assert_msg(res.rc <= 0, "%s on %s: outcome %d", sc->name,
					      backend, res.rc);
				if (res.rc)
					failed++;
				else
					recovered++;
			}
		}
		if (verbose())
			fprintf(stderr, "%s %-16s %-4s %-22s %3" PRIu64 " calls: %3u runs "
				"recovered, %3u failed with an error\n",
				persistent ? "persist" : "sweep", sc->name, backend, name, n,
				recovered, failed);
	}
	ck_assert_int_eq(ccvm_platform_destroy(probe), 0);
	if (verbose())
		fprintf(stderr, "%s %-16s %-4s %" PRIu64 " injected runs\n",
			persistent ? "persist" : "sweep", sc->name, backend, runs);
	munmap(shared, SHARED_PAGES * PAGE);
	ccvm_set_log(NULL, NULL);
}

START_TEST(test_sweep_once)
{
	sweep(_i, false);
}
END_TEST

START_TEST(test_sweep_persistent)
{
	sweep(_i, true);
}
END_TEST

Suite *faultsweep_suite(void)
{
	Suite *s = suite_create("faultsweep");
	TCase *tc = tcase_create("sweep");

	/* A scenario's sweep is hundreds of platform lifetimes. */
	tcase_set_timeout(tc, 300);
	nr_backends = count_backends();
	tcase_add_loop_test(tc, test_sweep_once, 0, NR_SCENARIOS * nr_backends);
	tcase_add_loop_test(tc, test_sweep_persistent, 0, NR_SCENARIOS * nr_backends);
	suite_add_tcase(s, tc);
	return s;
}
