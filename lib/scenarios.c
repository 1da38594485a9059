/* SPDX-License-Identifier: MIT */
/*
 * The built-in scenarios of the explorer: small VMM programs, written
 * against the public API only, that put two paths of the library against
 * each other on one range.  ccvm-explore (tools/) runs them by name, the
 * tests replay their tokens, and `make explore` sweeps them on every
 * backend.  docs/scheduler.md describes each one.
 *
 * Every scenario has the same frame: thread 0 builds the VM (a slot of
 * SC_PAGES pages at GPA 0 backed by one gmem file and 2M-aligned shared
 * memory), starts its threads (vCPU run loops, whose guest threads the
 * library makes, and VMM threads), joins them, closes everything, and
 * checks that nothing leaked.  The invariant checker runs at every
 * quiescent point in between.  A run's state lives in struct sc, reset by
 * each run: the explorer runs a scenario many times in one process.
 *
 * Guests tolerate every outcome a correct library may give them in a race
 * (a memory-fault exit while the page has the other attribute, a #VE/#VC
 * on a page converted or punched since it was accepted, an MMIO exit for a
 * slot being moved); anything else is a guest assertion, which fails the
 * run with its line in the report.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/explore.h>

#include "internal.h"
#include "scheduler.h"

#define SC_PAGE		CCVM_PAGE_SIZE
#define SC_PAGES	16u
#define SC_2M		CCVM_HPAGE_2M_SIZE
#define SC_MAX_VCPUS	2
#define SC_MAX_THREADS	6

/* Pages of slot 0 (GPA 0): */
#define SC_P		(4 * SC_PAGE)		/* the page the threads meet on */
#define SC_Q		(5 * SC_PAGE)		/* a second private page */
/* The extra plain slot of memslot-fault, and where it moves. */
#define SC_SLOT1_GPA	(1ull << 20)
#define SC_SLOT1_MOVED	(2ull << 20)

struct sc;

struct sc_def {
	struct ccvm_builtin_scenario pub;
	uint32_t nr_vcpus;
	bool needs_accept;		/* only where guests accept (tdx, snp) */
	bool needs_finalize;		/* only where launch is a phase */
	bool mirror_only;		/* only with a mirror root (tdx) */
	bool tdx_only, snp_only;
	bool no_finalize;		/* the threads run before finalize */
	uint64_t private_at_start;	/* pages of slot 0 made private, mask */
	bool populate_pq;		/* populate P and Q before finalize */
	uint32_t snp_rmp;		/* SNP: CCVM_STUDY_SNP_RMP_UPDATE + 1, 0: default */
	bool fault_ends_run;		/* a memory-fault exit ends the run loop */
	bool huge;			/* slot 0 is 2M of a 2M-folio gmem file, all
					 * private at start; tdx runs Dynamic PAMT */
	ccvm_guest_fn guest;
	ccvm_thread_fn vmm;		/* the VMM thread, NULL: none */
	const char *vmm_name;
	int (*after)(struct sc *x);	/* thread 0, after the joins; may be NULL */
};

struct sc {
	struct ccvm_scenario sc;	/* first: what create() hands out */
	const struct sc_def *def;
	struct ccvm_platform_opts po;
	struct ccvm_backend_caps caps;
	char backend[16];
	/* per run */
	struct ccvm_platform *p;
	struct ccvm_sched *s;
	struct ccvm_vm *vm;
	struct ccvm_gmem *g;
	uint8_t *shared_buf;		/* 2M, aligned; kept across runs */
	uint8_t *shared;
	uint64_t sbit;
	struct ccvm_vcpu *v[SC_MAX_VCPUS];
	struct sc_vcpu { struct sc *x; struct ccvm_vcpu *v; } arg[SC_MAX_VCPUS];
	char why[256];			/* the first failure a thread saw */
};

/* Note the first failure of a run; the report carries it. */
static int sc_fail(struct sc *x, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int sc_fail(struct sc *x, int err, const char *fmt, ...)
{
	va_list ap;

	if (!x->why[0]) {
		va_start(ap, fmt);
		vsnprintf(x->why, sizeof(x->why), fmt, ap);
		va_end(ap);
		ccvm_sched_note(x->s, "%s", x->why);
	}
	return err;
}

/* ---- guest helpers ------------------------------------------------------------ */

/*
 * Accept (where the backend asks for it) then write @val at private @gpa
 * and read it back, again from the accept when the page was converted or
 * punched since (#VE / #VC: -EACCES).  Between the write and the read
 * another path may have replaced the page: the read gives the value or a
 * fresh page's zero.
 */
static void g_private(struct ccvm_guest *g, const struct sc *x, uint64_t gpa, uint64_t val)
{
	uint64_t got;
	unsigned int k;
	int r;

	for (k = 0; k < 8; k++) {
		if (x->caps.requires_accept) {
			r = ccvm_guest_accept(g, gpa & ~(SC_PAGE - 1), SC_PAGE);
			CCVM_GUEST_ASSERT(g, r == 0 || r == -EEXIST || r == -EACCES);
		}
		r = ccvm_guest_write(g, gpa, &val, sizeof(val));
		if (r == -EACCES)
			continue;
		CCVM_GUEST_ASSERT(g, r == 0);
		r = ccvm_guest_read(g, gpa, &got, sizeof(got));
		if (r == -EACCES)
			continue;
		CCVM_GUEST_ASSERT(g, r == 0);
		CCVM_GUEST_ASSERT(g, got == val || got == 0);
		return;
	}
	CCVM_GUEST_ASSERT(g, !"the private page never settled");
}

/* A write to the shared alias of @gpa (an MMIO exit where no slot is). */
static void g_shared(struct ccvm_guest *g, const struct sc *x, uint64_t gpa, uint64_t val)
{
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, gpa | x->sbit, &val, sizeof(val)) == 0);
}

/* ---- the vCPU run loop ------------------------------------------------------------ */

static int sc_runner(void *arg)
{
	struct sc_vcpu *a = arg;
	struct ccvm_vcpu *v = a->v;
	struct sc *x = a->x;
	struct ccvm_run *run = ccvm_vcpu_run_state(v);
	unsigned int n;
	int r;

	for (n = 0; n < 256; n++) {
		r = ccvm_vcpu_run(v);
		if (r == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT &&
		    x->def->fault_ends_run)
			return 0;	/* the page went shared for good: the guest stays blocked */
		if (r == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT) {
			/* The other path has the page of the other kind: let it go on. */
			ccvm_sched_yield(x->s, "memory fault exit");
			continue;
		}
		if (r)
			return sc_fail(x, r, "vcpu%u: run failed: %s (exit %u)", run->vcpu_id,
				       ccvm_strerror(r), run->exit_reason);
		switch (run->exit_reason) {
		case CCVM_EXIT_DONE:
			return 0;
		case CCVM_EXIT_SYNC:
		case CCVM_EXIT_MMIO:
		case CCVM_EXIT_EXCEPTION:	/* the guest sees -EACCES next */
			continue;
		case CCVM_EXIT_GUEST_ABORT:
			return sc_fail(x, -EPROTO, "vcpu%u: guest assertion failed at %s:%d: %s",
				       run->vcpu_id, run->abort.file ? run->abort.file : "?",
				       run->abort.line, run->abort.msg ? run->abort.msg : "?");
		default:
			return sc_fail(x, -EPROTO, "vcpu%u: unexpected exit %u", run->vcpu_id,
				       run->exit_reason);
		}
	}
	return sc_fail(x, -ELOOP, "vcpu%u: no end after %u runs", run->vcpu_id, n);
}

/* ---- the scenarios ------------------------------------------------------------------- */

static uint64_t vcpu_val(const struct ccvm_guest *g, unsigned int k)
{
	return 0x1000ull * (ccvm_guest_vcpu_id(g) + 1) + k;
}

static int set_attr(struct sc *x, uint64_t gpa, bool private_)
{
	int r = ccvm_vm_set_memory_attributes(x->vm, gpa, SC_PAGE,
					      private_ ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);

	return r ? sc_fail(x, r, "set_memory_attributes(%#" PRIx64 ", %s): %s", gpa,
			   private_ ? "private" : "shared", ccvm_strerror(r)) : 0;
}

/*
 * conv-fault: two vCPUs write their word of private page P while the VMM
 * converts P to shared and back.
 */
static void conv_fault_guest(struct ccvm_guest *g, void *arg)
{
	g_private(g, arg, SC_P + 8 * ccvm_guest_vcpu_id(g), vcpu_val(g, 0));
}

static int conv_fault_vmm(void *arg)
{
	struct sc *x = arg;
	int r = set_attr(x, SC_P, false);

	return r ? r : set_attr(x, SC_P, true);
}

/*
 * conv-punch: a vCPU writes private P and Q while one VMM thread converts P
 * to shared and back and another punches Q out of gmem: two invalidations
 * in progress at once, each with its own range.
 */
static void conv_punch_guest(struct ccvm_guest *g, void *arg)
{
	g_private(g, arg, SC_P, vcpu_val(g, 0));
	g_private(g, arg, SC_Q, vcpu_val(g, 1));
}

/* The VMM punches the page at @offset out of the gmem file. */
static int punch_page(struct sc *x, uint64_t offset)
{
	int r = ccvm_gmem_fallocate(x->g, CCVM_FALLOC_KEEP_SIZE | CCVM_FALLOC_PUNCH_HOLE, offset,
				    SC_PAGE);

	return r ? sc_fail(x, r, "punch: %s", ccvm_strerror(r)) : 0;
}

static int punch_q_vmm(void *arg)
{
	return punch_page(arg, SC_Q);
}

/*
 * conv-fault-1: the smallest conversion against a fault: one vCPU accepts
 * and writes private P once while the VMM converts P to shared, once.  If
 * the conversion wins, the guest's access is a memory-fault exit and the
 * run loop stops there (the guest is left blocked; closing the vCPU
 * unwinds it).
 */
static int conv_once_vmm(void *arg)
{
	return set_attr(arg, SC_P, false);
}

static void conv_once_guest(struct ccvm_guest *g, void *arg)
{
	g_private(g, arg, SC_P, vcpu_val(g, 0));
}

/*
 * conv-fault-2: conv-fault-1 with two vCPUs: each accepts P and writes its
 * word once (no read back) while the VMM converts P to shared once; a
 * memory-fault exit ends that vCPU's run loop.  Sized for DFS at bound 2.
 */
static void conv_once2_guest(struct ccvm_guest *g, void *arg)
{
	const struct sc *x = arg;
	uint64_t gpa = SC_P + 8 * ccvm_guest_vcpu_id(g), val = vcpu_val(g, 0);
	int r;

	if (x->caps.requires_accept) {
		r = ccvm_guest_accept(g, SC_P, SC_PAGE);
		CCVM_GUEST_ASSERT(g, r == 0 || r == -EEXIST || r == -EACCES);
	}
	r = ccvm_guest_write(g, gpa, &val, sizeof(val));
	CCVM_GUEST_ASSERT(g, r == 0 || r == -EACCES);
}

/* punch-write: a vCPU writes private P twice while the VMM punches P out of gmem. */
static void punch_write_guest(struct ccvm_guest *g, void *arg)
{
	g_private(g, arg, SC_P, vcpu_val(g, 0));
	g_private(g, arg, SC_P, vcpu_val(g, 1));
}

static int punch_write_vmm(void *arg)
{
	return punch_page(arg, SC_P);
}

/*
 * memslot-fault: a vCPU writes a plain slot's page and private P in turn
 * while the VMM wraps the memslot generation (a fast zap), moves the slot
 * and deletes it.
 */
static void memslot_fault_guest(struct ccvm_guest *g, void *arg)
{
	g_shared(g, arg, SC_SLOT1_GPA, vcpu_val(g, 0));
	g_private(g, arg, SC_P, vcpu_val(g, 1));
	g_shared(g, arg, SC_SLOT1_GPA, vcpu_val(g, 2));
	g_private(g, arg, SC_P, vcpu_val(g, 3));
}

static int slot1(struct sc *x, uint64_t gpa, uint64_t size)
{
	struct ccvm_memory_region mr = {
		.slot = 1, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = size ? x->shared + SC_PAGES * SC_PAGE : NULL,
	};
	int r = ccvm_vm_set_user_memory_region(x->vm, &mr);

	return r ? sc_fail(x, r, "memslot 1 at %#" PRIx64 " size %#" PRIx64 ": %s", gpa, size,
			   ccvm_strerror(r)) : 0;
}

static int memslot_fault_vmm(void *arg)
{
	struct sc *x = arg;
	int r = ccvm_vm_force_generation_wrap(x->vm);

	if (r)
		return sc_fail(x, r, "generation wrap: %s", ccvm_strerror(r));
	r = slot1(x, SC_SLOT1_MOVED, SC_PAGE);
	return r ? r : slot1(x, SC_SLOT1_MOVED, 0);
}

/*
 * gmem-terminate (tdx): two populated private pages; the VMM closes the
 * gmem file (which zaps and removes them) while another VMM thread
 * terminates the TD (which releases the HKID).  No vCPU.
 */
static int gmem_close_vmm(void *arg)
{
	struct sc *x = arg;
	struct ccvm_gmem *g = x->g;
	int r;

	x->g = NULL;
	r = ccvm_gmem_close(g);
	return r ? sc_fail(x, r, "gmem close: %s", ccvm_strerror(r)) : 0;
}

static int terminate_vmm(void *arg)
{
	struct sc *x = arg;
	int r = ccvm_vm_terminate(x->vm);

	return r ? sc_fail(x, r, "terminate: %s", ccvm_strerror(r)) : 0;
}

/*
 * install-accept (tdx): both vCPUs accept P and write their word: one
 * accept's fault installs the page (TDH.MEM.PAGE.AUG) while the other's
 * TDG.MEM.PAGE.ACCEPT walks the same S-EPT entry.
 */
static void install_accept_guest(struct ccvm_guest *g, void *arg)
{
	g_private(g, arg, SC_P + 8 * ccvm_guest_vcpu_id(g), vcpu_val(g, 0));
}

/*
 * rmp-fault (snp): P starts shared; the vCPU validates and writes it as
 * private (memory-fault exits until it is) while the VMM converts it to
 * private: the RMPUPDATE of update_mem_attr, so the VM runs the posted
 * design of that op (study knob CCVM_STUDY_SNP_RMP_UPDATE = POSTED; the
 * merged design has no RMP work at conversion, conv-fault covers it).
 */
static void rmp_fault_guest(struct ccvm_guest *g, void *arg)
{
	g_private(g, arg, SC_P, vcpu_val(g, 0));
}

static int rmp_fault_vmm(void *arg)
{
	return set_attr(arg, SC_P, true);
}

/*
 * kick-exit (tdx): P is populated (mapped in the S-EPT); the vCPU writes
 * Q and exits (sync), twice, while the VMM converts P to shared: the
 * removal's TRACK kicks the vCPU wherever it is in its entries and exits.
 */
static void kick_exit_guest(struct ccvm_guest *g, void *arg)
{
	g_private(g, arg, SC_Q, vcpu_val(g, 0));
	ccvm_guest_sync(g, 1);
	g_private(g, arg, SC_Q, vcpu_val(g, 1));
	ccvm_guest_sync(g, 2);
}

static int kick_exit_vmm(void *arg)
{
	return set_attr(arg, SC_P, false);
}

/*
 * populate-punch (tdx, snp): before finalize, one VMM thread populates P
 * and Q (TDX: measured) while another punches them out of gmem.  Either
 * order is legal; finalize must work after both.
 */
static int populate_vmm(void *arg)
{
	struct sc *x = arg;
	static const uint8_t src[2 * SC_PAGE];
	int r = ccvm_vm_populate(x->vm, SC_P, src, 2 * SC_PAGE,
				 x->caps.vm_type == 5 ? CCVM_POPULATE_MEASURE : 0);

	/* -EEXIST: the pages were populated already; nothing else is legal. */
	return r && r != -EEXIST ? sc_fail(x, r, "populate: %s", ccvm_strerror(r)) : 0;
}

static int punch_pq_vmm(void *arg)
{
	struct sc *x = arg;
	int r = ccvm_gmem_fallocate(x->g, CCVM_FALLOC_KEEP_SIZE | CCVM_FALLOC_PUNCH_HOLE, SC_P,
				    2 * SC_PAGE);

	return r ? sc_fail(x, r, "punch: %s", ccvm_strerror(r)) : 0;
}

static int populate_punch_after(struct sc *x)
{
	int r = ccvm_vm_finalize(x->vm);

	return r ? sc_fail(x, r, "finalize: %s", ccvm_strerror(r)) : 0;
}

/*
 * split-fault (mock, tdx, snp): slot 0 is one 2M folio, all private.  The
 * vCPU accepts the 2M (where guests accept: the host maps 2M, or 4K once
 * P went shared, and a 2M accept over 4K is -ERANGE), then accepts and
 * writes Q while the VMM converts P, in the same 2M, to shared: the split
 * of the 2M mapping (TDX: BLOCK, TRACK, DEMOTE with Dynamic PAMT's pair
 * added first; SNP: PSMASH before the 4K RMPUPDATE; mock: the 2M leaf
 * split) against the vCPU's fault, accept and write of Q.  On snp the 4K
 * accept of Q inside the 2M RMP entry takes the size-mismatch path: PCT
 * found I8 broken there (token S1:AI8Bo7WvA04CBwM, seed 1) while the
 * backend PSMASHed under the 2M NPT leaf and the zap came after; now the
 * zap comes first and the PSMASH under a 4K leaf (backends/snp/snp.c,
 * snp_pvalidate_as_guest; the old order is the snp-psmash-before-zap
 * mutant, tests/check_mutants.c).
 */
static void split_fault_guest(struct ccvm_guest *g, void *arg)
{
	const struct sc *x = arg;
	int r;

	if (x->caps.requires_accept) {
		r = ccvm_guest_accept_level(g, 0, SC_2M, CCVM_LEVEL_2M);
		CCVM_GUEST_ASSERT(g, r == 0 || r == -ERANGE || r == -EEXIST || r == -EACCES);
	}
	g_private(g, x, SC_Q, vcpu_val(g, 0));
}

/* Both threads of the two-VMM-thread scenarios; the defs name the first. */
static int second_vmm(struct sc *x, ccvm_thread_fn *fn, const char **name)
{
	if (x->def->vmm == gmem_close_vmm) {
		*fn = terminate_vmm;
		*name = "terminator";
		return 1;
	}
	if (x->def->guest == conv_punch_guest) {
		*fn = punch_q_vmm;
		*name = "puncher";
		return 1;
	}
	if (x->def->vmm == populate_vmm) {
		*fn = punch_pq_vmm;
		*name = "puncher";
		return 1;
	}
	return 0;
}

#define PAGE_BIT(gpa)	(1ull << ((gpa) / SC_PAGE))

static const struct sc_def sc_defs[] = {
	{
		.pub = { "conv-fault", "2 vCPUs write private page P while a VMM thread "
			 "converts P to shared and back", "mock tdx snp" },
		.nr_vcpus = 2, .private_at_start = PAGE_BIT(SC_P),
		.guest = conv_fault_guest, .vmm = conv_fault_vmm, .vmm_name = "converter",
	},
	{
		.pub = { "conv-fault-1", "a vCPU writes private page P once while a VMM thread "
			 "converts P to shared once (small enough to exhaust)", "mock tdx snp" },
		.nr_vcpus = 1, .private_at_start = PAGE_BIT(SC_P), .fault_ends_run = true,
		.guest = conv_once_guest, .vmm = conv_once_vmm, .vmm_name = "converter",
	},
	{
		.pub = { "conv-fault-2", "2 vCPUs write their word of private page P once while "
			 "a VMM thread converts P to shared once (sized for DFS)", "mock tdx snp" },
		.nr_vcpus = 2, .private_at_start = PAGE_BIT(SC_P), .fault_ends_run = true,
		.guest = conv_once2_guest, .vmm = conv_once_vmm, .vmm_name = "converter",
	},
	{
		.pub = { "conv-punch", "a vCPU writes private pages P and Q while one VMM thread "
			 "converts P to shared and back and another punches Q", "mock tdx snp" },
		.nr_vcpus = 1, .private_at_start = PAGE_BIT(SC_P) | PAGE_BIT(SC_Q),
		.guest = conv_punch_guest, .vmm = conv_fault_vmm, .vmm_name = "converter",
	},
	{
		.pub = { "punch-write", "a vCPU writes private page P twice while a VMM thread "
			 "punches P out of gmem", "mock tdx snp" },
		.nr_vcpus = 1, .private_at_start = PAGE_BIT(SC_P),
		.guest = punch_write_guest, .vmm = punch_write_vmm, .vmm_name = "puncher",
	},
	{
		.pub = { "memslot-fault", "a vCPU writes a plain slot and private page P while "
			 "a VMM thread wraps the generation, moves the slot and deletes it",
			 "mock tdx snp" },
		.nr_vcpus = 1, .private_at_start = PAGE_BIT(SC_P),
		.guest = memslot_fault_guest, .vmm = memslot_fault_vmm, .vmm_name = "mover",
	},
	{
		.pub = { "gmem-terminate", "two populated pages; one VMM thread closes the gmem "
			 "file while another terminates the TD", "tdx" },
		.tdx_only = true, .private_at_start = PAGE_BIT(SC_P) | PAGE_BIT(SC_Q),
		.populate_pq = true, .vmm = gmem_close_vmm, .vmm_name = "closer",
	},
	{
		.pub = { "install-accept", "2 vCPUs accept and write private page P: AUG "
			 "against ACCEPT on one S-EPT entry", "tdx" },
		.tdx_only = true, .nr_vcpus = 2, .private_at_start = PAGE_BIT(SC_P),
		.guest = install_accept_guest,
	},
	{
		.pub = { "rmp-fault", "a vCPU validates and writes page P while a VMM thread "
			 "converts it from shared to private (update_mem_attr as posted)", "snp" },
		.snp_only = true, .nr_vcpus = 1, .snp_rmp = CCVM_SNP_RMP_POSTED + 1,
		.guest = rmp_fault_guest, .vmm = rmp_fault_vmm, .vmm_name = "converter",
	},
	{
		.pub = { "kick-exit", "a vCPU writes Q with exits between while a VMM thread "
			 "converts populated page P to shared (TRACK kicks the vCPU)", "tdx" },
		.tdx_only = true, .nr_vcpus = 1, .populate_pq = true,
		.private_at_start = PAGE_BIT(SC_P) | PAGE_BIT(SC_Q),
		.guest = kick_exit_guest, .vmm = kick_exit_vmm, .vmm_name = "converter",
	},
	{
		.pub = { "populate-punch", "before finalize, a VMM thread populates P and Q "
			 "while another punches them out of gmem", "tdx snp" },
		.no_finalize = true, .private_at_start = PAGE_BIT(SC_P) | PAGE_BIT(SC_Q),
		.vmm = populate_vmm, .vmm_name = "populator", .after = populate_punch_after,
	},
	{
		.pub = { "split-fault", "a vCPU accepts a private 2M folio and writes page Q "
			 "while a VMM thread converts page P of it to shared (the 2M mapping "
			 "split: DEMOTE)", "mock tdx snp" },
		.nr_vcpus = 1, .huge = true,
		.guest = split_fault_guest, .vmm = conv_once_vmm, .vmm_name = "converter",
	},
};

/* ---- the frame -------------------------------------------------------------------------- */

static int sc_setup(struct sc *x)
{
	const struct sc_def *d = x->def;
	struct ccvm_vm_opts vo = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = SC_MAX_VCPUS);
	struct ccvm_memory_region mr = {
		.slot = 0, .flags = CCVM_MEM_GUEST_MEMFD, .guest_phys_addr = 0,
		.memory_size = d->huge ? SC_2M : SC_PAGES * SC_PAGE, .gmem_offset = 0,
	};
	uint32_t i;
	int r;

	r = ccvm_vm_create(x->p, &vo, &x->vm);
	if (r)
		return sc_fail(x, r, "vm_create: %s", ccvm_strerror(r));
	x->sbit = ccvm_vm_shared_bit(x->vm);
	if (d->snp_rmp) {
		r = ccvm_vm_set_study_knob(x->vm, CCVM_STUDY_SNP_RMP_UPDATE, d->snp_rmp - 1);
		if (r)
			return sc_fail(x, r, "SNP RMP design: %s", ccvm_strerror(r));
	}
	if (d->huge)
		r = ccvm_gmem_create(x->vm, SC_2M, CCVM_GMEM_FLAG_HUGETLB | CCVM_GMEM_HUGE_2MB,
				     &x->g);
	else
		r = ccvm_gmem_create(x->vm, SC_PAGES * SC_PAGE, 0, &x->g);
	if (r)
		return sc_fail(x, r, "gmem_create: %s", ccvm_strerror(r));
	/*
	 * 2M aligned, so that what the fault path decides does not depend on
	 * addresses; made once per scenario, and only the pages the slots map
	 * are cleared per run (clearing all 2M cost most of a run).
	 */
	if (!x->shared_buf) {
		x->shared_buf = aligned_alloc(SC_2M, SC_2M);
		if (!x->shared_buf)
			return -ENOMEM;
	}
	x->shared = x->shared_buf;
	memset(x->shared, 0, (SC_PAGES + 1) * SC_PAGE);
	mr.userspace_addr = x->shared;
	mr.gmem = x->g;
	r = ccvm_vm_set_user_memory_region(x->vm, &mr);
	if (r)
		return sc_fail(x, r, "memslot 0: %s", ccvm_strerror(r));
	if (d->vmm == memslot_fault_vmm) {
		r = slot1(x, SC_SLOT1_GPA, SC_PAGE);
		if (r)
			return r;
	}
	if (d->huge) {
		r = ccvm_vm_set_memory_attributes(x->vm, 0, SC_2M, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
		if (r)
			return sc_fail(x, r, "2M private: %s", ccvm_strerror(r));
	}
	for (i = 0; i < SC_PAGES; i++) {
		if (!(d->private_at_start & (1ull << i)))
			continue;
		r = set_attr(x, (uint64_t)i * SC_PAGE, true);
		if (r)
			return r;
	}
	if (d->populate_pq) {
		static const uint8_t src[2 * SC_PAGE];

		r = ccvm_vm_populate(x->vm, SC_P, src, 2 * SC_PAGE, CCVM_POPULATE_MEASURE);
		if (r)
			return sc_fail(x, r, "populate: %s", ccvm_strerror(r));
	}
	/* vCPUs before finalize: TDX refuses them after (tdx_vcpu_create()). */
	for (i = 0; i < d->nr_vcpus; i++) {
		r = ccvm_vcpu_create(x->vm, i, &x->v[i]);
		if (!r)
			r = ccvm_vcpu_set_guest(x->v[i], d->guest, x);
		if (r)
			return sc_fail(x, r, "vcpu %u: %s", i, ccvm_strerror(r));
	}
	if (!d->no_finalize) {
		r = ccvm_vm_finalize(x->vm);
		if (r)
			return sc_fail(x, r, "finalize: %s", ccvm_strerror(r));
	}
	return 0;
}

/* After everything is closed: nothing may be left behind. */
static int sc_leaks(struct sc *x)
{
	struct ccvm_stats st = { .sz = sizeof(st) };
	int r = ccvm_platform_get_stats(x->p, &st);

	if (r)
		return r;
	if (st.leaked_pages)
		return sc_fail(x, -EPROTO, "%" PRIu64 " pages leaked", st.leaked_pages);
	if (CCVM_EV_ROOT_LEAK < st.nr_events && st.events[CCVM_EV_ROOT_LEAK])
		return sc_fail(x, -EPROTO, "%" PRIu64 " roots leaked with references",
			       st.events[CCVM_EV_ROOT_LEAK]);
	return 0;
}

static int sc_run(struct ccvm_platform *p, void *ctx)
{
	struct sc *x = ctx;
	const struct sc_def *d = x->def;
	struct ccvm_thread *t[SC_MAX_THREADS];
	unsigned int i, n = 0;
	ccvm_thread_fn fn2;
	const char *name2;
	int err, r, ret;

	x->p = p;
	x->s = ccvm_platform_sched(p);
	x->vm = NULL;
	x->g = NULL;
	x->shared = NULL;
	memset(x->v, 0, sizeof(x->v));
	x->why[0] = '\0';

	err = sc_setup(x);
	if (!err && d->vmm) {
		err = ccvm_thread_create(p, &t[n], d->vmm, x, d->vmm_name);
		n += !err;
	}
	if (!err && second_vmm(x, &fn2, &name2)) {
		err = ccvm_thread_create(p, &t[n], fn2, x, name2);
		n += !err;
	}
	for (i = 0; i < d->nr_vcpus && !err; i++) {
		static const char *const names[SC_MAX_VCPUS] = { "run0", "run1" };

		x->arg[i] = (struct sc_vcpu){ x, x->v[i] };
		err = ccvm_thread_create(p, &t[n], sc_runner, &x->arg[i], names[i]);
		n += !err;
	}
	for (i = 0; i < n; i++) {
		ret = 0;
		r = ccvm_thread_join(t[i], &ret);
		if (!err)
			err = r ? r : ret;
	}
	if (!err && d->after)
		err = d->after(x);
	for (i = 0; i < SC_MAX_VCPUS; i++)
		if (x->v[i])
			ccvm_vcpu_close(x->v[i]);
	if (x->g)
		ccvm_gmem_close(x->g);
	if (x->vm)
		ccvm_vm_close(x->vm);
	if (!err)
		err = sc_leaks(x);
	return err;
}

/* ---- the registry -------------------------------------------------------------------------- */

static const struct sc_def *sc_def_find(const char *name)
{
	size_t i;

	for (i = 0; name && i < CCVM_ARRAY_SIZE(sc_defs); i++)
		if (!strcmp(sc_defs[i].pub.name, name))
			return &sc_defs[i];
	return NULL;
}

/* Whether @backend is a word of @list. */
static bool word_in(const char *list, const char *backend)
{
	size_t n = strlen(backend);
	const char *w;

	for (w = list; (w = strstr(w, backend)); w += n)
		if ((w == list || w[-1] == ' ') && (w[n] == ' ' || !w[n]))
			return true;
	return false;
}

const struct ccvm_builtin_scenario *ccvm_builtin_scenario(size_t i)
{
	return i < CCVM_ARRAY_SIZE(sc_defs) ? &sc_defs[i].pub : NULL;
}

int ccvm_builtin_scenario_create(const char *name, const char *backend,
				 const struct ccvm_platform_opts *platform,
				 struct ccvm_scenario **out)
{
	const struct sc_def *d;
	struct sc *x;
	int err;

	if (!name || !out)
		return -EINVAL;
	d = sc_def_find(name);
	if (!d) {
		ccvm_log(CCVM_LOG_DEBUG, "explore: no built-in scenario \"%s\"", name);
		return -ENOENT;
	}
	if (!backend)
		backend = platform && platform->backend ? platform->backend : "mock";
	if (platform && platform->backend && strcmp(platform->backend, backend)) {
		ccvm_log(CCVM_LOG_DEBUG, "explore: backend \"%s\" and platform backend \"%s\" "
			 "differ", backend, platform->backend);
		return -EINVAL;
	}
	if (!word_in(d->pub.backends, backend)) {
		ccvm_log(CCVM_LOG_DEBUG, "explore: scenario \"%s\" runs on %s, not on \"%s\"",
			 name, d->pub.backends, backend);
		return -EOPNOTSUPP;
	}
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->caps.sz = sizeof(x->caps);
	err = ccvm_backend_caps(backend, &x->caps);
	if (err) {
		free(x);
		return err;
	}
	snprintf(x->backend, sizeof(x->backend), "%s", backend);
	if (platform) {
		err = ccvm_opts_copy(&x->po, sizeof(x->po), platform, platform->sz);
		if (err || !platform->sz) {
			free(x);
			return -EINVAL;
		}
	} else {
		x->po = CCVM_OPTS_INIT(struct ccvm_platform_opts, .mem_bytes = 64ull << 20,
				       .nr_cpus = 2, .seed = 11);
	}
	x->po.sz = sizeof(x->po);
	x->po.backend = x->backend;
	/* The split of a 2M page adds a Dynamic PAMT pair on TDX: run with it. */
	if (d->huge && !strcmp(backend, "tdx"))
		x->po.flags |= CCVM_PLATFORM_TDX_DYNAMIC_PAMT;
	x->def = d;
	x->sc = CCVM_OPTS_INIT(struct ccvm_scenario, .name = d->pub.name, .run = sc_run,
			       .ctx = x, .platform = &x->po);
	*out = &x->sc;
	return 0;
}

void ccvm_builtin_scenario_destroy(struct ccvm_scenario *sc)
{
	struct sc *x;

	if (!sc || sc->run != sc_run)
		return;
	x = ccvm_container_of(sc, struct sc, sc);
	free(x->shared_buf);
	free(x);
}
