/* SPDX-License-Identifier: MIT */
/*
 * libccvm: a user-space model of the private-memory layer of a
 * confidential-VM hypervisor (Linux KVM with Intel TDX and AMD SEV-SNP).
 *
 * The objects and who owns what:
 *
 *   platform  The simulated host: physical memory (pfns), CPUs, key ids
 *             (TDX HKIDs / SNP ASIDs), the backend's global hardware state
 *             (PAMT, RMP table, direct map), the cost model, statistics and
 *             the trace sink.  Several VMs share one platform.
 *   vm        Attribute store, memslots, MMU roots, vCPUs and backend state.
 *             Reference counted: the VMM's handle, every vCPU handle and
 *             every gmem file hold one.  It is destroyed when the last one
 *             is dropped, exactly as in KVM: a gmem file keeps its VM alive,
 *             the VM keeps no reference on its gmem files.
 *   gmem      A guest_memfd: the file (bindings to memslots, a VM reference)
 *             over an inode (the page cache holding private memory).  The
 *             inode can outlive the file when a backend pins it.
 *   memslot   A GPA range backed by VMM memory (shared) and optionally a
 *             gmem range (private).
 *   vcpu      Runs a guest function on its own thread, handed off with the
 *             caller of ccvm_vcpu_run() like KVM_RUN.
 *
 * Conventions: every int function returns 0 or a negative errno and never
 * exits or aborts.  Bad input changes nothing.  Constructors return through
 * an out parameter.  Option structs start with `size_t sz` (set it with
 * CCVM_OPTS_INIT); fields beyond the caller's size read as zero, unknown
 * non-zero trailing bytes of a newer caller are -EINVAL.  Names and constant
 * values follow KVM's uAPI where KVM has one.
 *
 * Addresses: GPAs are byte addresses.  A GPA carrying the VM's shared bit
 * (ccvm_vm_shared_bit(), 0 for mock) is the shared alias of the same gfn;
 * memslots and attributes are always indexed without it.
 */
#ifndef CCVM_CCVM_H
#define CCVM_CCVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ccvm/api.h>
#include <ccvm/version.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ccvm_platform;
struct ccvm_vm;
struct ccvm_gmem;
struct ccvm_vcpu;
struct ccvm_guest;

/*
 * CCVM_OPTS_INIT() - an option struct with .sz set, as an expression:
 *	struct ccvm_vm_opts o = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = 4);
 * Pass NULL instead of an options struct for all defaults.
 */
#define CCVM_OPTS_INIT(type, ...) ((type){ .sz = sizeof(type), __VA_ARGS__ })

#define CCVM_PAGE_SHIFT		12
#define CCVM_PAGE_SIZE		(1ull << CCVM_PAGE_SHIFT)
#define CCVM_HPAGE_2M_SIZE	(1ull << 21)

/* Mapping levels, as KVM's PG_LEVEL_*. */
enum ccvm_level {
	CCVM_LEVEL_NONE = 0,
	CCVM_LEVEL_4K = 1,
	CCVM_LEVEL_2M = 2,
	CCVM_LEVEL_1G = 3,
};

/* Orders of huge gmem folios (pages of 4 KiB): 2 MiB and 1 GiB. */
#define CCVM_FOLIO_ORDER_2M	9
#define CCVM_FOLIO_ORDER_1G	18

/* ------------------------------------------------------------------ */
/* Statistics, cost model and tracing                                  */
/* ------------------------------------------------------------------ */

/*
 * Events counted per VM and per platform.  Each occurrence also adds the
 * cost model's nanoseconds for it to the simulated clock.  New events are
 * only appended.
 */
enum ccvm_event {
	/* core */
	CCVM_EV_FAULT,			/* guest or pre-fault TDP fault handled */
	CCVM_EV_FAULT_RETRY,		/* fault found stale (seq/range) and retried */
	CCVM_EV_MAP_4K,			/* 4K leaf installed */
	CCVM_EV_MAP_2M,			/* 2M leaf installed */
	CCVM_EV_ZAP,			/* leaf removed from a root */
	CCVM_EV_TLB_FLUSH,		/* remote TLB flush of a VM */
	CCVM_EV_INVALIDATE,		/* invalidate_begin..end pair */
	CCVM_EV_ATTR_CHANGE,		/* attribute update that changed the store */
	CCVM_EV_MEMSLOT_UPDATE,		/* memslot create/delete/move */
	CCVM_EV_FAST_ZAP,		/* all direct roots invalidated at once */
	CCVM_EV_ROOT_ALLOC,		/* TDP root allocated */
	CCVM_EV_ROOT_FREE,		/* TDP root freed */
	CCVM_EV_SP_ALLOC,		/* page-table page allocated */
	CCVM_EV_SP_FREE,		/* page-table page freed */
	CCVM_EV_PAGE_ALLOC,		/* platform page handed out */
	CCVM_EV_PAGE_FREE,		/* platform page returned */
	CCVM_EV_PAGE_CLEAR,		/* page cleared for reuse (e.g. MOVDIR64B) */
	CCVM_EV_PAGE_LEAK,		/* page leaked on purpose (failed reclaim) */
	CCVM_EV_GMEM_PREPARE,		/* gmem_prepare call */
	CCVM_EV_GMEM_INVALIDATE,	/* pages passed to gmem_invalidate */
	CCVM_EV_EXIT,			/* vCPU exit to the VMM */
	CCVM_EV_MEMORY_FAULT_EXIT,	/* CCVM_EXIT_MEMORY_FAULT */
	CCVM_EV_HYPERCALL_EXIT,		/* CCVM_EXIT_HYPERCALL */
	CCVM_EV_MMIO_EXIT,		/* CCVM_EXIT_MMIO */
	CCVM_EV_IPI,			/* kick of every vCPU of a VM */
	CCVM_EV_GUEST_ENTER,		/* guest (re)entered */
	CCVM_EV_GUEST_ACCESS,		/* guest read/write of one page */
	/* TDX: SEAMCALL leaves and key ids */
	CCVM_EV_TDH_MNG_CREATE,
	CCVM_EV_TDH_MNG_KEY_CONFIG,
	CCVM_EV_TDH_MNG_ADDCX,
	CCVM_EV_TDH_MNG_INIT,
	CCVM_EV_TDH_VP_CREATE,
	CCVM_EV_TDH_VP_ADDCX,
	CCVM_EV_TDH_VP_INIT,
	CCVM_EV_TDH_VP_ENTER,
	CCVM_EV_TDH_VP_FLUSH,
	CCVM_EV_TDH_MNG_VPFLUSHDONE,
	CCVM_EV_TDH_PHYMEM_CACHE_WB,
	CCVM_EV_TDH_MNG_KEY_FREEID,
	CCVM_EV_TDH_MEM_SEPT_ADD,
	CCVM_EV_TDH_MEM_PAGE_ADD,
	CCVM_EV_TDH_MR_EXTEND,
	CCVM_EV_TDH_MR_FINALIZE,
	CCVM_EV_TDH_MEM_PAGE_AUG,
	CCVM_EV_TDH_MEM_RANGE_BLOCK,
	CCVM_EV_TDH_MEM_TRACK,
	CCVM_EV_TDH_MEM_PAGE_REMOVE,
	CCVM_EV_TDH_PHYMEM_PAGE_WBINVD,
	CCVM_EV_TDH_PHYMEM_PAGE_RECLAIM,
	CCVM_EV_TDH_MEM_SEPT_RD,
	CCVM_EV_TDG_MEM_PAGE_ACCEPT,	/* guest-side TDCALL */
	CCVM_EV_TDX_BUSY,		/* a SEAMCALL answered OPERAND_BUSY */
	CCVM_EV_TDX_ERROR,		/* a SEAMCALL failed otherwise */
	CCVM_EV_KEYID_ALLOC,		/* HKID or ASID taken */
	CCVM_EV_KEYID_FREE,		/* HKID or ASID returned */
	CCVM_EV_KEYID_LEAK,		/* HKID or ASID lost for good */
	/* SNP */
	CCVM_EV_RMPUPDATE,
	CCVM_EV_RMPUPDATE_RETRY,	/* FAIL_OVERLAP, retried */
	CCVM_EV_PSMASH,
	CCVM_EV_CACHE_FLUSH_PAGE,	/* clflush of one page */
	CCVM_EV_DIRECTMAP_SPLIT,	/* host 2M/1G mapping split to 4K */
	CCVM_EV_RMP_FAULT,		/* host write to an assigned page refused */
	CCVM_EV_RMP_NPF,		/* guest nested fault with the RMP bit */
	CCVM_EV_PVALIDATE,
	CCVM_EV_ASID_FLUSH,		/* WBINVD + DF_FLUSH before ASID reuse */
	CCVM_EV_TDH_MEM_SEPT_REMOVE,	/* modelled; KVM does not use it */
	CCVM_EV_TDH_MEM_RANGE_UNBLOCK,	/* modelled; KVM does not use it */
	CCVM_EV_ROOT_LEAK,		/* root left with references at teardown */
	CCVM_EV_KICK_VCPU,		/* a vCPU a kick visited (request, mode check) */
	CCVM_EV_FOLIO_SPLIT,		/* huge gmem folio split into 4K folios */
	CCVM_EV_FOLIO_MERGE,		/* split gmem folio restored whole */
	CCVM_EV_TDH_MEM_PAGE_DEMOTE,	/* 2M S-EPT leaf split into 512 4K leaves */
	CCVM_EV_TDH_PHYMEM_PAMT_ADD,	/* Dynamic PAMT: page pair added to a 2M region */
	CCVM_EV_TDH_PHYMEM_PAMT_REMOVE,	/* Dynamic PAMT: page pair taken back */
	CCVM_EV_ACCESS_WAIT,		/* a flush or kick waited for a guest access in flight */
	CCVM_EV_NR
};

#define CCVM_STATS_MAX_EVENTS	128
#define CCVM_STATS_MAX_OPS	64

struct ccvm_stats {
	size_t sz;
	uint32_t nr_events;		/* out: valid entries of events[] */
	uint32_t nr_ops;		/* out: valid entries of op_calls[] */
	uint64_t events[CCVM_STATS_MAX_EVENTS];	/* by enum ccvm_event */
	uint64_t op_calls[CCVM_STATS_MAX_OPS];	/* by backend op index */
	uint64_t op_errors[CCVM_STATS_MAX_OPS];	/* calls that returned < 0 */
	uint64_t sim_ns;		/* simulated nanoseconds (cost model) */
	/* platform only (0 for a VM): physical memory */
	uint64_t total_pages;
	uint64_t free_pages;
	uint64_t leaked_pages;
	uint64_t model_bytes;		/* host memory the model itself uses */
	/* platform only: TDX Dynamic PAMT (CCVM_PLATFORM_TDX_DYNAMIC_PAMT),
	 * the page pairs the host gave the module and their bytes (counted in
	 * free_pages too); 0 without it */
	uint64_t pamt_pairs;
	uint64_t pamt_bytes;
};

/*
 * ccvm_event_name() / ccvm_backend_op_name() - The name of event @ev
 * (enum ccvm_event: "fault", "tdh.mem.page.aug", ...) and of backend op
 * number @op as counted in ccvm_stats.op_calls[] ("vm_init", ...), for
 * printing statistics.
 * Context: any thread; no lock.
 * Return: a static string; NULL for a number the library does not know.
 * Example:
 *	#include <stdio.h>
 *
 *	void print_stats(const struct ccvm_stats *st)
 *	{
 *		for (unsigned int i = 0; i < st->nr_events; i++)
 *			if (st->events[i])
 *				printf("%-24s %llu\n", ccvm_event_name(i),
 *					   (unsigned long long)st->events[i]);
 *		for (unsigned int op = 0; op < st->nr_ops; op++)
 *			if (st->op_calls[op])
 *				printf("op %-21s %llu calls, %llu failed\n", ccvm_backend_op_name(op),
 *					   (unsigned long long)st->op_calls[op],
 *					   (unsigned long long)st->op_errors[op]);
 *	}
 */
CCVM_API const char *ccvm_event_name(unsigned int ev);
CCVM_API const char *ccvm_backend_op_name(unsigned int op);

/*
 * Cost model: simulated nanoseconds per event.  A zero entry means the
 * built-in default for it (see ccvm_cost_model_default()).  The defaults are
 * labelled assumptions: no per-leaf SEAMCALL, RMPUPDATE or IPI latency is
 * published.  A kick of every vCPU costs ns[CCVM_EV_IPI] once and
 * ns[CCVM_EV_KICK_VCPU] per vCPU it visits, plus ipi_per_vcpu_ns times the
 * VM's vCPUs (an older form of the same slope; 0 by default).
 */
struct ccvm_cost_model {
	size_t sz;
	uint64_t ns[CCVM_STATS_MAX_EVENTS];
	uint64_t ipi_per_vcpu_ns;
};

/*
 * ccvm_cost_model_default() - Fill @cm with the built-in simulated costs,
 * to change a few entries and pass it as ccvm_platform_opts.costs.  The
 * caller sets cm->sz (CCVM_OPTS_INIT); at most that many bytes are written.
 * Context: any thread; no lock.
 * Return: 0; -EINVAL (NULL @cm, or cm->sz smaller than a size_t).
 * Example:
 *	#include <stdio.h>
 *
 *	// What if IPIs cost four times the default?
 *	int main(void)
 *	{
 *		struct ccvm_cost_model cm = CCVM_OPTS_INIT(struct ccvm_cost_model);
 *		struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
 *													 .costs = &cm);
 *		struct ccvm_platform *p;
 *
 *		if (ccvm_cost_model_default(&cm))
 *			return 1;
 *		cm.ns[CCVM_EV_IPI] *= 4;
 *		if (ccvm_platform_create(&o, &p)) {     // the platform copies the table
 *			fprintf(stderr, "%s\n", ccvm_last_error());
 *			return 1;
 *		}
 *		printf("IPI: %llu simulated ns\n", (unsigned long long)cm.ns[CCVM_EV_IPI]);
 *		return ccvm_platform_destroy(p) != 0;
 *	}
 */
CCVM_API int ccvm_cost_model_default(struct ccvm_cost_model *cm);

enum ccvm_trace_kind {
	CCVM_TRACE_OP,		/* backend op call; ret is its result */
	CCVM_TRACE_EXIT,	/* vCPU exit; arg0 = exit reason */
	CCVM_TRACE_EVENT,	/* counted event (enum ccvm_event in id) */
	CCVM_TRACE_API,		/* public call; ret is its result */
};

struct ccvm_trace_record {
	uint32_t kind;		/* enum ccvm_trace_kind */
	uint32_t id;		/* op index, exit reason or event */
	const char *name;	/* static string */
	uint32_t vm_id;		/* 0 = platform-wide */
	int32_t vcpu_id;	/* -1 when not on a vCPU */
	uint64_t gfn;		/* ~0 when not about one gfn */
	uint64_t arg0, arg1;
	int64_t ret;
	uint64_t sim_ns;	/* simulated clock after the record */
	uint64_t wall_ns;	/* CLOCK_MONOTONIC at the record, at its start
				 * for an op (serial platform: the simulated
				 * clock) */
	uint64_t dur_ns;	/* duration of an op on that clock, 0 otherwise */
	uint64_t sim_dur_ns;	/* duration of an op on the simulated clock */
};

/*
 * Trace callback.  Context: called on the thread doing the work, possibly
 * with library locks held: it must not call back into libccvm.
 */
typedef void (*ccvm_trace_fn)(const struct ccvm_trace_record *rec, void *ctx);

/* ------------------------------------------------------------------ */
/* Logging, errors, version                                            */
/* ------------------------------------------------------------------ */

enum ccvm_log_level { CCVM_LOG_WARN, CCVM_LOG_INFO, CCVM_LOG_DEBUG };
typedef void (*ccvm_log_fn)(enum ccvm_log_level level, const char *msg, void *ctx);

/*
 * ccvm_set_log() - Set the process-wide log sink: @fn gets every message
 * of every level with @ctx, and filters for itself; NULL restores the
 * default, which prints to stderr the levels up to the environment's
 * CCVM_LOG_LEVEL ("warn", the default, "info" or "debug").  At debug level
 * every failing call logs the rule it enforced, as ccvm_last_error() gives
 * it.  Messages are formatted before the sink is called, and never two at
 * once.
 * Context: any thread.  @fn runs on the thread that logs, possibly with
 * library locks held: it must not call back into libccvm.
 * Return: the previous sink (the default's address if none was set).
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// Keep the debug lines (the rule behind each failure) for a test log.
 *	static void count_debug(enum ccvm_log_level level, const char *msg, void *ctx)
 *	{
 *		unsigned int *n = ctx;
 *
 *		if (level == CCVM_LOG_DEBUG)
 *			++*n;
 *		(void)msg;      // a real sink writes it somewhere; no libccvm call here
 *	}
 *
 *	int main(void)
 *	{
 *		struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
 *													 .mem_bytes = 4095);
 *		struct ccvm_platform *p;
 *		unsigned int n = 0;
 *		ccvm_log_fn old = ccvm_set_log(count_debug, &n);
 *		int err = ccvm_platform_create(&o, &p);     // not a 4K multiple
 *
 *		ccvm_set_log(old, NULL);
 *		printf("-EINVAL: %s; %u debug line(s)\n", err == -EINVAL ? "yes" : "no", n);
 *		return err != -EINVAL || n == 0;
 *	}
 */
CCVM_API ccvm_log_fn ccvm_set_log(ccvm_log_fn fn, void *ctx);

/*
 * ccvm_strerror() - A description of @err, a negative errno returned by a
 * libccvm call, in the words of this model.
 * Context: any thread.
 * Return: a string, never NULL: static, or for an errno the library does
 * not name, a buffer of the calling thread overwritten by its next call.
 * Example:
 *	#include <stdio.h>
 *
 *	// The errno in the model's words, then the rule the call broke.
 *	void report(const char *what, int err)
 *	{
 *		fprintf(stderr, "%s: %s\n  %s\n", what, ccvm_strerror(err), ccvm_last_error());
 *	}
 */
CCVM_API const char *ccvm_strerror(int err);

#define CCVM_LAST_ERROR_MAX	256

/*
 * ccvm_last_error() - The rule behind the last call of the calling thread
 * that failed, as one line: the function, the rule in words, the errno,
 * e.g. "ccvm_vcpu_run: vCPU 0: the tdx VM is not finalized: call
 * ccvm_vm_finalize() after populating, before the first run (-EINVAL)".
 * Like errno, it is set by failures only: read it right after a call
 * returned an error.  The same line is logged at debug level.
 * Context: any thread; each thread has its own.
 * Return: the message (at most CCVM_LAST_ERROR_MAX bytes with its NUL),
 * "" if no call of this thread failed yet; valid until its next failure.
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *	#include <string.h>
 *
 *	int main(void)
 *	{
 *		struct ccvm_memory_region r = {
 *			.slot = 0, .guest_phys_addr = 0x1001, .memory_size = CCVM_PAGE_SIZE,
 *		};
 *		struct ccvm_platform *p;
 *		struct ccvm_vm *vm;
 *		int err;
 *
 *		if (ccvm_platform_create(NULL, &p) || ccvm_vm_create(p, NULL, &vm))
 *			return 1;
 *		err = ccvm_vm_set_user_memory_region(vm, &r);
 *		// The line names the call, the rule and the errno.
 *		printf("%s\n", ccvm_last_error());
 *		ccvm_vm_close(vm);
 *		ccvm_platform_destroy(p);
 *		return err != -EINVAL || !strstr(ccvm_last_error(), "ccvm_vm_set_user_memory_region");
 *	}
 */
CCVM_API const char *ccvm_last_error(void);

/*
 * ccvm_version() - The version of the library running, as a string.
 * Context: any thread.
 * Return: a static string, e.g. "0.1.0"; CCVM_VERSION_STRING is the
 * headers' version.
 * Example:
 *	#include <stdio.h>
 *
 *	int main(void)
 *	{
 *		// The headers' version and the library's can differ with libccvm.so.
 *		printf("built with libccvm %s, running %s\n", CCVM_VERSION_STRING, ccvm_version());
 *		return 0;
 *	}
 */
CCVM_API const char *ccvm_version(void);

/*
 * The version of the library running, as one number that compares
 * (CCVM_VERSION_NUMBER's form, 0x00MMmmpp): a program built against newer
 * headers can check what it got at run time.
 * Context: any thread.  Return: e.g. 0x000100 for 0.1.0.
 * Example:
 *	#include <stdio.h>
 *
 *	// At start-up: the same major version, at least the minor built against.
 *	int check_library(void)
 *	{
 *		unsigned int v = ccvm_version_number();
 *
 *		if ((v >> 16) != CCVM_VERSION_MAJOR || v < CCVM_VERSION_NUMBER) {
 *			fprintf(stderr, "needs libccvm %s or a later %u.x, found %s\n",
 *					CCVM_VERSION_STRING, CCVM_VERSION_MAJOR, ccvm_version());
 *			return -1;
 *		}
 *		return 0;
 *	}
 */
CCVM_API unsigned int ccvm_version_number(void);

/* ------------------------------------------------------------------ */
/* Platform                                                            */
/* ------------------------------------------------------------------ */

/*
 * Where the PRIVATE attribute lives (docs/semantics.md 1.6), chosen per
 * platform like KVM's read-only module parameter (kvm.vm_memory_attributes
 * in the in-place conversion series up to v7, gmem_in_place_conversion
 * from v8), and overridable per VM.
 *   CCVM_ATTR_SCHEME_VM    the per-VM store, KVM_SET_MEMORY_ATTRIBUTES on
 *                          the VM; shared memory is the memslot's
 *                          userspace_addr (KVM 6.8 to 7.x; the default)
 *   CCVM_ATTR_SCHEME_GMEM  per-guest_memfd attributes, converted in place
 *                          with ccvm_gmem_set_memory_attributes(); gmem
 *                          memslots are GMEM_ONLY: shared accesses are
 *                          served from the gmem pages themselves
 */
enum ccvm_attr_scheme {
	CCVM_ATTR_SCHEME_DEFAULT = 0,	/* VM: the platform's; platform: VM */
	CCVM_ATTR_SCHEME_VM = 1,
	CCVM_ATTR_SCHEME_GMEM = 2,
};

/* How a platform's threads are scheduled (include/ccvm/sync.h). */
enum ccvm_sched_mode {
	CCVM_SCHED_FREE,	/* real threads, the OS schedules them (default) */
	CCVM_SCHED_SERIAL,	/* one controlled thread at a time, seeded choices */
};

/*
 * Long loops of the library (the zap of a range or of a root at teardown,
 * freeing a gmem punch's pages) drop their lock and yield after this many
 * entries, as KVM's cond_resched points do, in both scheduling modes.  A
 * platform option lowers it, to make a window narrow enough to explore.
 */
#define CCVM_RESCHED_ENTRIES	64u

struct ccvm_platform_opts {
	size_t sz;
	const char *backend;	/* "mock" (default), "tdx", "snp" */
	uint64_t mem_bytes;	/* simulated RAM, default 1 GiB, 4K multiple */
	uint32_t nr_cpus;	/* host CPUs, default 2 */
	uint32_t nr_keyids;	/* TDX HKIDs / SNP ASIDs, backend default */
	uint64_t seed;		/* contention and key-stream seed */
	const struct ccvm_cost_model *costs;	/* NULL = defaults */
	uint32_t sched;		/* enum ccvm_sched_mode; SERIAL: the creating
				 * thread is controlled thread 0 */
	uint64_t sched_seed;	/* SERIAL: seed of the random schedule */
	uint32_t resched_entries; /* entries between yields of long loops;
				   * 0 = CCVM_RESCHED_ENTRIES */
	uint32_t attr_scheme;	/* enum ccvm_attr_scheme of its VMs, as KVM's
				 * module parameter; 0 = CCVM_ATTR_SCHEME_VM */
	uint64_t flags;		/* CCVM_PLATFORM_* below; other bits: -EINVAL */
};

/*
 * Simulated RAM in transparent huge pages where the host allows them: the
 * host takes one page fault per 2 MiB of RAM first touched instead of 512,
 * which makes a guest's first touch of its memory far cheaper, but the
 * process's resident memory grows 2 MiB at a time (a TD whose guest never
 * writes its pages but whose page tables sit among them keeps far more
 * resident).  Off by default.
 */
#define CCVM_PLATFORM_RAM_THP	(1ull << 0)

/*
 * tdx only (-EINVAL with another backend): the TDX module runs Dynamic
 * PAMT, as with the kernel's Dynamic PAMT series.  The 4K level of the
 * PAMT then exists only for the 2 MiB regions of host memory that hold a
 * page pair: the backend adds one (TDH.PHYMEM.PAMT.ADD, two pages from the
 * platform's memory) before the first page of a region goes to a TD at
 * 4 KiB (guest pages, S-EPT pages, TD and vCPU control pages), counts the
 * users of each region and takes the pair back (PAMT.REMOVE) when the last
 * one leaves; a 2 MiB guest page needs none.  ccvm_stats.pamt_pairs and
 * pamt_bytes count the pairs held.  Off by default (static PAMT).
 */
#define CCVM_PLATFORM_TDX_DYNAMIC_PAMT	(1ull << 1)

/*
 * Simulated RAM resident from the start: ccvm_platform_create() has the
 * host kernel fault in (and zero) every page of it, as a VMM that
 * preallocates guest memory does, so that no later first touch pays the
 * host's page fault (with CCVM_PLATFORM_RAM_THP, a 2 MiB page zeroed in
 * the host kernel).  Creation costs time in proportion to mem_bytes and
 * all of it stays resident: for measuring the model, not the host, and
 * for RAM that is going to be used anyway.  Off by default.
 */
#define CCVM_PLATFORM_RAM_POPULATE	(1ull << 2)

/*
 * ccvm_platform_create() - Create a simulated host running the backend
 * named in @opts (NULL: defaults, the mock backend), and store it in *@out.
 * Memory is reserved lazily: untouched pages cost nothing (unless
 * CCVM_PLATFORM_RAM_POPULATE asks for all of RAM resident at once).
 * Context: any thread.  With .sched = CCVM_SCHED_SERIAL the calling
 * thread becomes the platform's controlled thread 0.
 * Return: 0; -EINVAL for bad options (an unknown sched mode or flag too); -ENOENT
 * for an unknown backend; -ENOMEM.
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// A 64 MiB TDX host with 4 CPUs, reproducible contention (seed 1).
 *	int make_tdx_host(struct ccvm_platform **out)
 *	{
 *		struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
 *			.backend = "tdx", .mem_bytes = 64ull << 20, .nr_cpus = 4, .seed = 1);
 *		int err = ccvm_platform_create(&o, out);
 *
 *		if (err == -ENOENT)
 *			fprintf(stderr, "this libccvm has no tdx backend\n");
 *		else if (err)
 *			fprintf(stderr, "%s\n", ccvm_last_error());
 *		return err;
 *	}
 */
CCVM_API int ccvm_platform_create(const struct ccvm_platform_opts *opts,
				  struct ccvm_platform **out);

/*
 * ccvm_platform_destroy() - Free the platform, its memory and its trace
 * file.  Every VM must be gone first: close the VM handle, every vCPU
 * handle and every gmem file of each (the last one destroys the VM).
 * Context: any thread but a guest's; on a serial platform, its creator
 * after every controlled thread was joined.
 * Return: 0; -EBUSY (nothing freed) while VMs or gmem inodes remain, or
 * threads of a serial platform are not joined (the debug log and the last
 * error message say which and how many); -EINVAL for NULL.
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	int shutdown_host(struct ccvm_platform *p)
 *	{
 *		int err = ccvm_platform_destroy(p);
 *
 *		// -EBUSY: a VM handle, vCPU handle or gmem file is still open and
 *		// nothing was freed; the message says what is left.
 *		if (err == -EBUSY)
 *			fprintf(stderr, "leak: %s\n", ccvm_last_error());
 *		return err;
 *	}
 */
CCVM_API int ccvm_platform_destroy(struct ccvm_platform *p);

/*
 * ccvm_platform_get_stats() / ccvm_vm_get_stats() - Copy the event counts,
 * op calls and errors, simulated time and (platform) page counts of @p or
 * @vm into @st.  The caller sets st->sz; fields past it are not written,
 * and st->sz comes back as the size written.
 * Context: any thread; the counters are read without stopping the threads
 * that update them, so a snapshot taken while they run is not atomic.
 * Return: 0; -EINVAL (NULL argument, st->sz too small for the counts).
 * Example:
 *	#include <stdio.h>
 *
 *	int print_memory(struct ccvm_platform *p, struct ccvm_vm *vm)
 *	{
 *		struct ccvm_stats ps = CCVM_OPTS_INIT(struct ccvm_stats);
 *		struct ccvm_stats vs = CCVM_OPTS_INIT(struct ccvm_stats);
 *		int err = ccvm_platform_get_stats(p, &ps);
 *
 *		if (!err)
 *			err = ccvm_vm_get_stats(vm, &vs);
 *		if (err)
 *			return err;
 *		printf("host: %llu of %llu pages free, %llu leaked\n",
 *			   (unsigned long long)ps.free_pages, (unsigned long long)ps.total_pages,
 *			   (unsigned long long)ps.leaked_pages);
 *		printf("VM: %llu faults, %.3f simulated ms\n",
 *			   (unsigned long long)vs.events[CCVM_EV_FAULT], vs.sim_ns / 1e6);
 *		return 0;
 *	}
 */
CCVM_API int ccvm_platform_get_stats(struct ccvm_platform *p, struct ccvm_stats *st);
CCVM_API int ccvm_vm_get_stats(struct ccvm_vm *vm, struct ccvm_stats *st);

/*
 * ccvm_platform_set_trace() - Install @fn (with @ctx) as the trace
 * callback of @p, or remove it with NULL.  Every op call, exit, counted
 * event and public call of @p and its VMs is then passed to @fn as a
 * struct ccvm_trace_record.  Replaces a trace file's writer.
 * Context: any thread.  @fn runs on the thread doing the work, possibly
 * with library locks held: it must not call back into libccvm.
 * Return: 0; -EINVAL (NULL @p).
 * Example:
 *	#include <stdatomic.h>
 *
 *	// Exits per vCPU, counted as they happen.
 *	static atomic_ulong exits[8];
 *
 *	static void count_exits(const struct ccvm_trace_record *rec, void *ctx)
 *	{
 *		(void)ctx;      // runs with library locks held: no libccvm call here
 *		if (rec->kind == CCVM_TRACE_EXIT && rec->vcpu_id >= 0 && rec->vcpu_id < 8)
 *			atomic_fetch_add(&exits[rec->vcpu_id], 1);
 *	}
 *
 *	int watch_exits(struct ccvm_platform *p)
 *	{
 *		return ccvm_platform_set_trace(p, count_exits, NULL);
 *	}
 */
CCVM_API int ccvm_platform_set_trace(struct ccvm_platform *p, ccvm_trace_fn fn, void *ctx);

/*
 * ccvm_trace_open() / ccvm_trace_close() - Start writing every trace
 * record of @p to the file @path as Chrome trace-event JSON (opens in
 * Perfetto or chrome://tracing), or finish and close that file: the
 * defaults of ccvm_trace_open_opts().  Replaces any trace callback.
 * Platform destroy also closes the file.
 * Context: any thread, not from a trace or log callback.
 * Return: 0; -EINVAL (NULL argument); the negative errno of fopen() (e.g.
 * -ENOENT for a directory that does not exist, -EACCES).  ccvm_trace_close()
 * returns the first write error of the trace, negated (e.g. -ENOSPC on a
 * full disk; the file is closed anyway), 0 if every write succeeded or no
 * trace was open.
 * Example:
 *	#include <stdio.h>
 *
 *	int run_traced(struct ccvm_platform *p, int (*workload)(struct ccvm_platform *))
 *	{
 *		int err = ccvm_trace_open(p, "run.json");   // open it in ui.perfetto.dev
 *
 *		if (err) {
 *			fprintf(stderr, "run.json: %s\n", ccvm_last_error());
 *			return err;
 *		}
 *		err = workload(p);
 *		// close reports the first write error of the whole trace (-ENOSPC)
 *		int cerr = ccvm_trace_close(p);
 *		return err ? err : cerr;
 *	}
 */
CCVM_API int ccvm_trace_open(struct ccvm_platform *p, const char *path);
CCVM_API int ccvm_trace_close(struct ccvm_platform *p);

/* Trace timestamps (ccvm_trace_opts.clock). */
enum ccvm_trace_clock {
	CCVM_TRACE_CLOCK_WALL,	/* wall-clock time (serial platform: simulated) */
	CCVM_TRACE_CLOCK_SIM,	/* the simulated clock of the cost model */
};

/* Categories (ccvm_trace_opts.categories), one per enum ccvm_trace_kind. */
#define CCVM_TRACE_CAT_OP	(1u << CCVM_TRACE_OP)
#define CCVM_TRACE_CAT_EXIT	(1u << CCVM_TRACE_EXIT)
#define CCVM_TRACE_CAT_EVENT	(1u << CCVM_TRACE_EVENT)
#define CCVM_TRACE_CAT_API	(1u << CCVM_TRACE_API)
#define CCVM_TRACE_CAT_ALL	0xfu

struct ccvm_trace_opts {
	size_t sz;
	uint32_t clock;		/* enum ccvm_trace_clock; default wall */
	uint32_t categories;	/* CCVM_TRACE_CAT_* to write; 0 = all */
	uint64_t max_bytes;	/* stop writing records past this file size
				 * (the file stays valid JSON; the dropped
				 * records are counted in it); 0 = no bound */
};

/*
 * ccvm_trace_open_opts() - Start writing the trace records of @p to @path
 * as Chrome trace-event JSON, as @opts says (NULL: defaults).  The file
 * has one process per VM ("VM 1 (tdx)", the platform as process 0) and
 * one named thread per vCPU ("vCPU 0") and per VMM thread working on the
 * VM ("VMM", then "VMM thread 1", ...), so Perfetto shows each in its own
 * lane.  Timestamps are
 * wall-clock or simulated time (@opts->clock); every record carries both
 * in its args (sim_ns, wall_us).  The category of a record ("op", "exit",
 * "event", "api") can be filtered here and in the viewer.
 * Context: any thread, not from a trace or log callback.
 * Return: 0; -EINVAL (NULL @p or @path, bad options: unknown clock or
 * category bits); the negative errno of fopen().
 * Example:
 *	// Simulated time, only exits and counted events, at most 8 MiB.
 *	int trace_exits(struct ccvm_platform *p, const char *path)
 *	{
 *		struct ccvm_trace_opts o = CCVM_OPTS_INIT(struct ccvm_trace_opts,
 *			.clock = CCVM_TRACE_CLOCK_SIM,
 *			.categories = CCVM_TRACE_CAT_EXIT | CCVM_TRACE_CAT_EVENT,
 *			.max_bytes = 8u << 20);
 *
 *		return ccvm_trace_open_opts(p, path, &o);
 *	}
 */
CCVM_API int ccvm_trace_open_opts(struct ccvm_platform *p, const char *path,
				  const struct ccvm_trace_opts *opts);

/* ------------------------------------------------------------------ */
/* Backend capabilities                                                */
/* ------------------------------------------------------------------ */

struct ccvm_backend_caps {
	size_t sz;
	const char *name;
	uint32_t vm_type;		/* KVM type: SW_PROTECTED 1, SNP 4, TDX 5 */
	uint64_t memory_attributes;	/* supported mask (PRIVATE) */
	uint64_t gmem_flags;		/* supported ccvm_gmem_create() flags */
	uint32_t private_max_level;	/* enum ccvm_level for private mappings */
	uint32_t shared_max_level;	/* enum ccvm_level for shared mappings */
	bool has_shared_bit;		/* guest accesses select shared by a GPA bit */
	bool has_mirror_root;		/* private mappings live in a mirror root */
	bool requires_accept;		/* guest must accept private pages */
	bool needs_finalize;		/* launch: populate, then finalize */
	bool preserves_data_without_punch; /* private->shared->private keeps bytes */
	bool private_readable_by_host;	/* host sees plaintext of private pages */
	uint64_t map_gpa_max_bytes;	/* largest MAP_GPA_RANGE exit, 0 = any */
	uint64_t study_knobs;		/* 1 << knob for each study knob the
					 * backend implements (see below) */
	/* filled by the core from the VM's attribute scheme: */
	uint32_t attr_scheme;		/* enum ccvm_attr_scheme; 0 without a VM */
	uint64_t gmem_memory_attributes; /* KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES:
					  * PRIVATE in the GMEM scheme, else 0 */
	uint64_t gmem_attributes_flags;	/* flags ccvm_gmem_set_memory_attributes()
					 * takes (KVM_CAP_MEMORY_ATTRIBUTES2_FLAGS) */
};

/*
 * ccvm_backend_caps() / ccvm_vm_caps() - What backend @name (NULL: "mock")
 * or the backend of @vm supports and requires: VM type, attributes, gmem
 * flags, mapping levels, shared bit, mirror root, whether the guest must
 * accept pages and whether launch needs ccvm_vm_finalize().  The caller
 * sets caps->sz; caps->sz comes back as the size written.
 * Context: any thread.
 * Return: 0; -EINVAL (NULL @caps or @vm, caps->sz too small); -ENOENT (no
 * backend of that name is built or registered).
 * Example:
 *	#include <stdio.h>
 *
 *	int print_launch_rules(const char *backend)
 *	{
 *		struct ccvm_backend_caps c = CCVM_OPTS_INIT(struct ccvm_backend_caps);
 *		int err = ccvm_backend_caps(backend, &c);
 *
 *		if (err)
 *			return err;     // -ENOENT: neither built in nor registered
 *		printf("%s: %s%s%s\n", c.name,
 *			   c.needs_finalize ? "populate, then finalize; " : "",
 *			   c.requires_accept ? "the guest accepts private pages; " : "",
 *			   c.has_shared_bit ? "shared accesses carry the shared bit" : "");
 *		return 0;
 *	}
 */
CCVM_API int ccvm_backend_caps(const char *name, struct ccvm_backend_caps *caps);
CCVM_API int ccvm_vm_caps(struct ccvm_vm *vm, struct ccvm_backend_caps *caps);

/*
 * ccvm_backend_names() - The names of the backends built into the
 * library, for a VMM's --backend option.
 * Context: any thread.
 * Return: a static NULL-terminated array, e.g. {"mock", "tdx", "snp", NULL}.
 * Example:
 *	#include <stdio.h>
 *	#include <string.h>
 *
 *	// A VMM's --backend option.
 *	const char *pick_backend(const char *arg)
 *	{
 *		for (const char *const *n = ccvm_backend_names(); *n; n++)
 *			if (!strcmp(*n, arg))
 *				return *n;
 *		fprintf(stderr, "--backend %s: not one of", arg);
 *		for (const char *const *n = ccvm_backend_names(); *n; n++)
 *			fprintf(stderr, " %s", *n);
 *		fputc('\n', stderr);
 *		return NULL;
 *	}
 */
CCVM_API const char *const *ccvm_backend_names(void);

/* ------------------------------------------------------------------ */
/* VM                                                                  */
/* ------------------------------------------------------------------ */

struct ccvm_vm_opts {
	size_t sz;
	uint32_t max_vcpus;	/* default 8, at most 1024 */
	/*
	 * Guest physical width, 36..52, default 48: the host's limit on
	 * memslot GPAs.  KVM's is kvm_mmu_max_gfn(): the host's MAXPHYADDR
	 * with TDP (48 here), 52 bits with shadow paging.
	 */
	uint32_t gpa_bits;
	uint64_t flags;		/* must be 0 */
	uint32_t attr_scheme;	/* enum ccvm_attr_scheme; 0 = the platform's */
};

/*
 * ccvm_vm_create() - Create a VM on @p with the platform's backend (KVM's
 * KVM_CREATE_VM plus, for TDX, KVM_TDX_INIT_VM; for SNP, SNP_LAUNCH_START)
 * and store the VMM's handle in *@out.  @opts may be NULL for defaults.
 * Context: any thread but a guest's.
 * Return: 0; -EINVAL for bad options; -EBUSY/-ENOSPC when no key id is left
 * (TDX HKID, SNP ASID); -EAGAIN when the simulated RNG ran dry; -ENOMEM.
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	int make_vm(struct ccvm_platform *p, struct ccvm_vm **out)
 *	{
 *		struct ccvm_vm_opts o = CCVM_OPTS_INIT(struct ccvm_vm_opts,
 *											   .max_vcpus = 4, .gpa_bits = 48);
 *		int err = ccvm_vm_create(p, &o, out);
 *
 *		// TDX HKIDs and SNP ASIDs are few: wait for another VM to go.
 *		if (err == -EBUSY || err == -ENOSPC)
 *			fprintf(stderr, "no key id left: %s\n", ccvm_last_error());
 *		return err;
 *	}
 */
CCVM_API int ccvm_vm_create(struct ccvm_platform *p, const struct ccvm_vm_opts *opts,
			    struct ccvm_vm **out);

/*
 * ccvm_vm_close() - Drop the VMM's reference.  The VM lives on while vCPU
 * handles or gmem files hold references; its teardown runs when the last
 * one goes, on the thread that drops it.
 * Context: any thread but a guest's; no other call on the handle may run
 * or follow.
 * Return: 0; -EINVAL (NULL, or the handle was already closed).
 * Example:
 *	// Any order works: the VM is torn down when the last of its handles
 *	// (VM, vCPU, gmem file) is closed, on the thread that closes it.
 *	int stop_vm(struct ccvm_vm *vm, struct ccvm_vcpu **vcpus, unsigned int n,
 *				struct ccvm_gmem *gmem)
 *	{
 *		int err = ccvm_vm_close(vm);
 *
 *		for (unsigned int i = 0; i < n; i++)
 *			ccvm_vcpu_close(vcpus[i]);
 *		ccvm_gmem_close(gmem);      // the last reference: teardown runs here
 *		return err;
 *	}
 */
CCVM_API int ccvm_vm_close(struct ccvm_vm *vm);

/*
 * ccvm_vm_shared_bit() - The GPA bit that selects the shared alias of a
 * gfn: the top bit of the guest physical width (gpa_bits - 1) on TDX
 * (GPA.SHARED) and SNP (the C-bit, modelled as a shared bit), 0 for mock.
 * Context: any thread; no lock.
 * Return: the bit as a mask, 0 if the backend has none (or @vm is NULL).
 * Example:
 *	// The offset in its memslot of a GPA the guest used, shared alias or not.
 *	uint64_t slot_offset(const struct ccvm_vm *vm, uint64_t gpa, uint64_t slot_base)
 *	{
 *		return (gpa & ~ccvm_vm_shared_bit(vm)) - slot_base;
 *	}
 */
CCVM_API uint64_t ccvm_vm_shared_bit(const struct ccvm_vm *vm);

/*
 * ccvm_vm_finalize() - End the launch: TDX MR.FINALIZE, SNP LAUNCH_FINISH.
 * After it ccvm_vm_populate() is refused and vCPUs may run.  A backend
 * whose capabilities say needs_finalize refuses ccvm_vcpu_run() (and,
 * TDX, pre-faulting) before it; on the others it only closes populate.
 * Context: any thread but a guest's; takes the VM lock and slots_lock.
 * Return: 0; -EINVAL (NULL, or already finalized); -EIO (VM bugged or
 * dead); the backend's error (e.g. TDX: a failed MR.FINALIZE).
 * Example:
 *	#include <stdio.h>
 *
 *	int end_launch(struct ccvm_vm *vm)
 *	{
 *		int err = ccvm_vm_finalize(vm);     // TDX MR.FINALIZE, SNP LAUNCH_FINISH
 *
 *		// Before it TDX and SNP refuse to run a vCPU (-EINVAL);
 *		// after it populating is refused.
 *		if (err)
 *			fprintf(stderr, "finalize: %s\n", ccvm_last_error());
 *		return err;
 *	}
 */
CCVM_API int ccvm_vm_finalize(struct ccvm_vm *vm);

#define CCVM_POPULATE_MEASURE	(1ull << 0)	/* TDX: MR.EXTEND each page */
/*
 * ccvm_vm_populate() - Copy @size bytes from @src into private memory at
 * @gpa before finalize (TDX INIT_MEM_REGION / SNP LAUNCH_UPDATE).  The range
 * must be PRIVATE and backed by gmem.
 * Context: any thread but a guest's, before ccvm_vm_finalize().
 * Return: 0; -EINVAL (alignment, flags, not private, no gmem, after
 * finalize); -EEXIST (a page was already populated); -EOPNOTSUPP (mock).
 * Example:
 *	#include <errno.h>
 *
 *	// Copy a firmware image into private memory before finalize.
 *	int load_firmware(struct ccvm_vm *vm, uint64_t gpa, const void *fw, uint64_t size)
 *	{
 *		// The range must be PRIVATE and backed by a gmem memslot.
 *		int err = ccvm_vm_set_memory_attributes(vm, gpa, size,
 *												CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
 *
 *		if (!err)
 *			err = ccvm_vm_populate(vm, gpa, fw, size, CCVM_POPULATE_MEASURE);
 *		if (err == -EOPNOTSUPP)     // mock: no launch copy; the guest writes
 *			err = 0;                // its memory itself
 *		return err;
 *	}
 */
CCVM_API int ccvm_vm_populate(struct ccvm_vm *vm, uint64_t gpa, const void *src,
			      uint64_t size, uint64_t flags);

/*
 * ccvm_vm_terminate() - Release the VM's key id now and mark it dead
 * (KVM_TDX_TERMINATE_VM style): later runs fail with -EIO, and private
 * memory is reclaimed without the dynamic-removal protocol.
 * Context: any thread but a guest's; takes the VM lock.
 * Return: 0; -EINVAL (NULL, or already dead); -EOPNOTSUPP (the backend
 * has no early release); the backend's error.
 * Example:
 *	#include <errno.h>
 *
 *	// Fast shutdown: give the key id back first, so that private memory is
 *	// reclaimed without the page-by-page removal protocol.
 *	int fast_shutdown(struct ccvm_vm *vm)
 *	{
 *		int err = ccvm_vm_terminate(vm);
 *
 *		if (err == -EOPNOTSUPP)     // mock, snp: no early release
 *			err = 0;
 *		return err ? err : ccvm_vm_close(vm);
 *	}
 */
CCVM_API int ccvm_vm_terminate(struct ccvm_vm *vm);

/* ------------------------------------------------------------------ */
/* Study knobs                                                         */
/* ------------------------------------------------------------------ */

/*
 * A study knob selects, for one VM, code the kernel discussed and did not
 * merge (or replaced), so that a study program (studies/, `make seeds`,
 * docs/studies/) runs the code under review and the merged code side by
 * side on the same model.  Value 0 of every knob is what upstream merged: a
 * VMM never sets one.  A knob is read where the behaviour it selects runs,
 * so set it before that; a later change applies from then on.  New knobs
 * are only appended.
 */
enum ccvm_study_knob {
	/*
	 * Study 001, the mirror root and the memslot generation wrap
	 * (docs/studies/001.md).  Any VM with a mirror root (tdx).
	 *   CCVM_MIRROR_RELOAD_MERGED  a reload takes a mirror root only when
	 *                              the vCPU has no valid one
	 *   CCVM_MIRROR_RELOAD_V3      the code under review: a reload that
	 *                              replaces the direct root takes the mirror
	 *                              root again, and the vCPU's reference on
	 *                              the one it had is lost
	 */
	CCVM_STUDY_MIRROR_RELOAD = 0,
	/*
	 * Study 002, TD shutdown (docs/studies/002.md): what the release of a
	 * guest_memfd does while the TD holds its HKID.  Backends that list it
	 * in caps.study_knobs (tdx).
	 *   CCVM_GMEM_DEFER_OFF        remove every page now (KVM 6.16)
	 *   CCVM_GMEM_DEFER_RFC        the gmem_defer_removal RFC ("option 2"):
	 *                              pin the inode, leave the pages to the
	 *                              RECLAIM after the HKID release (at most
	 *                              64 inodes per TD; more are removed now)
	 */
	CCVM_STUDY_GMEM_DEFER_REMOVAL = 1,
	/*
	 * Study 004, SNP update_mem_attr (docs/studies/004.md): when the RMP
	 * follows a change of the PRIVATE attribute.  Backends that list it in
	 * caps.study_knobs (snp).
	 *   CCVM_SNP_RMP_MERGED   what upstream merged: no RMP work at the
	 *                         attribute change; a page becomes private
	 *                         when a fault prepares it (gmem_prepare) and
	 *                         shared when gmem frees it (gmem_invalidate)
	 *   CCVM_SNP_RMP_POSTED   the update_mem_attr op as posted (RFC v8):
	 *                         the RMPUPDATEs of the pages gmem holds run
	 *                         after the attribute store and after the
	 *                         invalidation ended, outside mmu_lock
	 *   CCVM_SNP_RMP_LOCKED   the variant proposed in the thread: the same
	 *                         RMPUPDATEs while the range is still published
	 *                         as in progress (before invalidate_end), so a
	 *                         fault meanwhile is stale and retries
	 */
	CCVM_STUDY_SNP_RMP_UPDATE = 2,
	/*
	 * Study 000, HKID release against fd-close order (docs/studies/000.md):
	 * how an early HKID release (ccvm_vm_terminate(), which stands for the
	 * v19 series' release from the mmu notifier when the owner's mm went
	 * away) is ordered against removals in flight.  Backends that list it
	 * in caps.study_knobs (tdx).
	 *   CCVM_HKID_RELEASE_MERGED  the release holds mmu_lock for write,
	 *                             so it lands between two removals and
	 *                             the rest of the zap reclaims
	 *   CCVM_HKID_RELEASE_V19     as v19 released it: under the global
	 *                             tdx_lock only, so a zap in flight meets
	 *                             the HKID half released
	 */
	CCVM_STUDY_HKID_RELEASE = 3,
	/*
	 * Study 003, TDX_OPERAND_BUSY (docs/studies/003.md): what KVM does
	 * with an S-EPT SEAMCALL (SEPT.ADD, PAGE.AUG, PAGE.ADD; BLOCK, TRACK,
	 * REMOVE) that the module answers busy.  Backends that list it in
	 * caps.study_knobs (tdx).
	 *   CCVM_TDX_BUSY_MERGED   what upstream merged: an install unwinds
	 *                          (the fault runs again, after a yield); a
	 *                          removal tries once more after blocking guest
	 *                          entry and kicking every vCPU out, and a
	 *                          second busy bugs the VM
	 *   CCVM_TDX_BUSY_SPIN     retry in the SEAMCALL wrapper, with mmu_lock
	 *                          held and no kick, up to CCVM_TDX_BUSY_SPIN_MAX
	 *                          calls ("retry X times and hope"); then as
	 *                          GIVE_UP
	 *   CCVM_TDX_BUSY_GIVE_UP  no retry: the busy status is an error, an
	 *                          install's fault fails (-EIO to the VMM) and
	 *                          a removal bugs the VM
	 */
	CCVM_STUDY_TDX_BUSY = 4,
	CCVM_STUDY_NR_KNOBS
};

#define CCVM_MIRROR_RELOAD_MERGED	0u
#define CCVM_MIRROR_RELOAD_V3		1u
#define CCVM_GMEM_DEFER_OFF		0u
#define CCVM_GMEM_DEFER_RFC		1u
#define CCVM_SNP_RMP_MERGED		0u
#define CCVM_SNP_RMP_POSTED		1u
#define CCVM_SNP_RMP_LOCKED		2u
#define CCVM_HKID_RELEASE_MERGED	0u
#define CCVM_HKID_RELEASE_V19		1u
#define CCVM_TDX_BUSY_MERGED		0u
#define CCVM_TDX_BUSY_SPIN		1u
#define CCVM_TDX_BUSY_GIVE_UP		2u
#define CCVM_TDX_BUSY_SPIN_MAX		64u	/* calls of one leaf under SPIN */

/*
 * ccvm_vm_set_study_knob() - Set study knob @knob of @vm to @value.
 * Context: any thread; takes effect where the selected behaviour next runs.
 * Return: 0; -EINVAL (NULL, unknown knob, value out of range); -EOPNOTSUPP
 * (the knob does not apply to this VM's backend); nothing changes on error.
 * Example:
 *	#include <errno.h>
 *
 *	// Run the code under review of study 002 on this VM.
 *	int use_defer_rfc(struct ccvm_vm *vm)
 *	{
 *		int err = ccvm_vm_set_study_knob(vm, CCVM_STUDY_GMEM_DEFER_REMOVAL,
 *										 CCVM_GMEM_DEFER_RFC);
 *
 *		return err == -EOPNOTSUPP ? 0 : err;    // not a TDX VM: nothing to study
 *	}
 */
CCVM_API int ccvm_vm_set_study_knob(struct ccvm_vm *vm, unsigned int knob, uint32_t value);

/*
 * ccvm_vm_get_study_knob() - Read study knob @knob of @vm into *@value.
 * Context: any thread.
 * Return: 0; -EINVAL (NULL argument, unknown knob).
 * Example:
 *	#include <stdio.h>
 *
 *	void print_knobs(struct ccvm_vm *vm)
 *	{
 *		for (unsigned int k = 0; k < CCVM_STUDY_NR_KNOBS; k++) {
 *			uint32_t v;
 *
 *			if (ccvm_vm_get_study_knob(vm, k, &v) == 0 && v != 0)
 *				printf("knob %u = %u: not what upstream merged\n", k, v);
 *		}
 *	}
 */
CCVM_API int ccvm_vm_get_study_knob(struct ccvm_vm *vm, unsigned int knob, uint32_t *value);

/* ------------------------------------------------------------------ */
/* Memslots                                                            */
/* ------------------------------------------------------------------ */

#define CCVM_MEM_LOG_DIRTY_PAGES	(1u << 0)	/* not supported: -EINVAL */
#define CCVM_MEM_READONLY		(1u << 1)	/* not supported: -EINVAL */
#define CCVM_MEM_GUEST_MEMFD		(1u << 2)
#define CCVM_MAX_MEMSLOTS		32764u

struct ccvm_memory_region {
	uint32_t slot;		/* 0 .. CCVM_MAX_MEMSLOTS-1; address space 0 only */
	uint32_t flags;		/* CCVM_MEM_GUEST_MEMFD */
	uint64_t guest_phys_addr;
	uint64_t memory_size;	/* 0 deletes the slot */
	void *userspace_addr;	/* shared backing owned by the VMM, may be NULL */
	struct ccvm_gmem *gmem;	/* with CCVM_MEM_GUEST_MEMFD */
	uint64_t gmem_offset;	/* byte offset into @gmem */
};

/*
 * ccvm_vm_set_user_memory_region() - KVM_SET_USER_MEMORY_REGION2.
 * Create, delete (size 0), or move a slot without gmem.  Deleting or moving
 * zaps exactly that slot's gfns in every root.
 * Context: any thread but a guest's; takes slots_lock, then mmu_lock for
 * write while it zaps; may sleep.
 * Return: 0; -EINVAL (flags, alignment, wrap, beyond gpa_bits, more than
 * 2^31 - 1 pages, slot id, resize, changing a gmem slot, gmem of another
 * VM, gmem range past EOF or already bound, delete of a missing slot);
 * -EEXIST (GPA overlap); -EBADF (CCVM_MEM_GUEST_MEMFD with a NULL gmem);
 * -EIO (VM bugged); -ENOMEM.
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// Slot 1: 16 MiB at 4 GiB; shared pages from @buf, private ones from
 *	// @gmem from byte @off of the file.
 *	int add_ram(struct ccvm_vm *vm, void *buf, struct ccvm_gmem *gmem, uint64_t off)
 *	{
 *		struct ccvm_memory_region r = {
 *			.slot = 1, .flags = CCVM_MEM_GUEST_MEMFD,
 *			.guest_phys_addr = 4ull << 30, .memory_size = 16ull << 20,
 *			.userspace_addr = buf, .gmem = gmem, .gmem_offset = off,
 *		};
 *		int err = ccvm_vm_set_user_memory_region(vm, &r);
 *
 *		if (err == -EEXIST)
 *			fprintf(stderr, "slot 1 overlaps another slot\n");
 *		else if (err)
 *			fprintf(stderr, "%s\n", ccvm_last_error());
 *		return err;
 *	}
 */
CCVM_API int ccvm_vm_set_user_memory_region(struct ccvm_vm *vm,
					    const struct ccvm_memory_region *r);

/*
 * ccvm_vm_force_generation_wrap() - A test hook: set the memslot
 * generation so that the next memslot update wraps it, to test what
 * depends on the generation (cached translations, study 001).
 * Context: any thread; takes slots_lock.
 * Return: 0; -EINVAL (NULL).
 * Example:
 *	// A test: move a plain (non-gmem) slot across a generation wrap.
 *	int move_across_wrap(struct ccvm_vm *vm, struct ccvm_memory_region *slot)
 *	{
 *		int err = ccvm_vm_force_generation_wrap(vm);
 *
 *		if (err)
 *			return err;
 *		slot->guest_phys_addr += 2ull << 20;    // the update that wraps
 *		return ccvm_vm_set_user_memory_region(vm, slot);
 *	}
 */
CCVM_API int ccvm_vm_force_generation_wrap(struct ccvm_vm *vm);

/*
 * ccvm_vm_memslot_generation() - The memslot generation of @vm, which
 * every memslot update advances (and which wraps).
 * Context: any thread; no lock (a racing update may be seen or not).
 * Return: the generation.
 * Example:
 *	#include <stdbool.h>
 *
 *	// A VMM-side cache of one GPA translation, valid for one generation.
 *	struct gpa_cache { uint64_t gen, gpa; void *host; };
 *
 *	bool gpa_cache_valid(const struct ccvm_vm *vm, const struct gpa_cache *c)
 *	{
 *		return c->host && c->gen == ccvm_vm_memslot_generation(vm);
 *	}
 */
CCVM_API uint64_t ccvm_vm_memslot_generation(const struct ccvm_vm *vm);

/* ------------------------------------------------------------------ */
/* Memory attributes                                                   */
/* ------------------------------------------------------------------ */

#define CCVM_MEMORY_ATTRIBUTE_PRIVATE	(1ull << 3)

/*
 * ccvm_vm_set_memory_attributes() - KVM_SET_MEMORY_ATTRIBUTES: set the
 * attributes of [@gpa, @gpa + @size) to @attributes (0 for shared,
 * CCVM_MEMORY_ATTRIBUTE_PRIVATE).  Mappings of the old kind in the range
 * are zapped before the store changes; nothing is freed (punch the old
 * backing with ccvm_gmem_fallocate()).
 * Context: any thread but a guest's; takes slots_lock, then mmu_lock for
 * write; may sleep.
 * Return: 0 (also when the range already holds @attributes); -EINVAL
 * (flags != 0, unknown bits, size 0, unaligned, wrap; PRIVATE on a VM of
 * the GMEM scheme, whose VM store takes none); -ENOMEM; a backend's errno;
 * -EIO (VM bugged).  On any error but -EIO nothing changed (mappings of
 * the old kind may be gone: they fault back); a failing backend update
 * after the store is rolled back, and -EIO with the VM bugged if even that
 * fails.
 * Example:
 *	// Make [gpa, gpa + len) shared and free its private copy (at gmem
 *	// offset gpa - base): the conversion does not free it by itself.
 *	int make_shared(struct ccvm_vm *vm, struct ccvm_gmem *g, uint64_t base,
 *					uint64_t gpa, uint64_t len)
 *	{
 *		int err = ccvm_vm_set_memory_attributes(vm, gpa, len, 0, 0);
 *
 *		if (err)
 *			return err;     // nothing changed (unless -EIO: VM bugged)
 *		return ccvm_gmem_fallocate(g, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
 *								   gpa - base, len);
 *	}
 */
CCVM_API int ccvm_vm_set_memory_attributes(struct ccvm_vm *vm, uint64_t gpa, uint64_t size,
					   uint64_t attributes, uint64_t flags);

/*
 * ccvm_vm_get_memory_attributes() - The attributes at @gpa and, in
 * *@run_bytes when not NULL, how many bytes from @gpa on hold the same value
 * (up to the end of the GPA space): the run query, which walks to the end
 * of the run.  With @run_bytes NULL it is ccvm_vm_get_memory_attribute().
 * Context: takes the attribute lock for read; does not sleep.
 * Return: 0; -EINVAL (NULL @vm or @attributes, @gpa not page aligned), with
 * nothing written.
 * Example:
 *	#include <stdio.h>
 *
 *	// Print the private and shared runs of [gpa, end).
 *	int print_layout(struct ccvm_vm *vm, uint64_t gpa, uint64_t end)
 *	{
 *		while (gpa < end) {
 *			uint64_t attrs, run;
 *			int err = ccvm_vm_get_memory_attributes(vm, gpa, &attrs, &run);
 *
 *			if (err)
 *				return err;
 *			if (run > end - gpa)    // the last run goes on past @end
 *				run = end - gpa;
 *			printf("%#llx +%#llx %s\n", (unsigned long long)gpa, (unsigned long long)run,
 *				   attrs & CCVM_MEMORY_ATTRIBUTE_PRIVATE ? "private" : "shared");
 *			gpa += run;
 *		}
 *		return 0;
 *	}
 */
CCVM_API int ccvm_vm_get_memory_attributes(struct ccvm_vm *vm, uint64_t gpa,
					   uint64_t *attributes, uint64_t *run_bytes);

/*
 * ccvm_vm_get_memory_attribute() - The attributes of the page at @gpa: the
 * point query, which does not look for where the value ends.  Any page
 * aligned @gpa is valid, as for the run query (attributes are not bounded
 * by the GPA width).
 * Context: takes the attribute lock for read; does not sleep.
 * Return: 0; -EINVAL (NULL @vm or @attributes, @gpa not page aligned), with
 * nothing written.
 * Example:
 *	#include <stdbool.h>
 *
 *	// Decode a guest access: is the page at @gpa private now?
 *	bool gpa_is_private(struct ccvm_vm *vm, uint64_t gpa)
 *	{
 *		uint64_t attrs = 0;
 *		uint64_t page = (gpa & ~ccvm_vm_shared_bit(vm)) & ~(CCVM_PAGE_SIZE - 1);
 *
 *		return ccvm_vm_get_memory_attribute(vm, page, &attrs) == 0 &&
 *			   (attrs & CCVM_MEMORY_ATTRIBUTE_PRIVATE);
 *	}
 */
CCVM_API int ccvm_vm_get_memory_attribute(struct ccvm_vm *vm, uint64_t gpa,
					  uint64_t *attributes);

/* ------------------------------------------------------------------ */
/* guest_memfd                                                         */
/* ------------------------------------------------------------------ */

#define CCVM_GMEM_FLAG_MMAP		(1ull << 0)
#define CCVM_GMEM_FLAG_INIT_SHARED	(1ull << 1)
/*
 * Huge folios, as the HugeTLB-backed guest_memfd of the "1G page support"
 * series: CCVM_GMEM_FLAG_HUGETLB, with the folio size in the bits of
 * CCVM_GMEM_HUGE_MASK as log2 of its bytes (MAP_HUGE_* style):
 * CCVM_GMEM_HUGE_2MB (also the default when the bits are 0) or
 * CCVM_GMEM_HUGE_1GB.  docs/huge-folios.md has the rules.
 */
#define CCVM_GMEM_FLAG_HUGETLB		(1ull << 2)
#define CCVM_GMEM_HUGE_SHIFT		26
#define CCVM_GMEM_HUGE_MASK		(0x3full << CCVM_GMEM_HUGE_SHIFT)
#define CCVM_GMEM_HUGE_2MB		(21ull << CCVM_GMEM_HUGE_SHIFT)
#define CCVM_GMEM_HUGE_1GB		(30ull << CCVM_GMEM_HUGE_SHIFT)
#define CCVM_FALLOC_KEEP_SIZE		0x01	/* as FALLOC_FL_KEEP_SIZE */
#define CCVM_FALLOC_PUNCH_HOLE		0x02	/* as FALLOC_FL_PUNCH_HOLE */

/*
 * ccvm_gmem_create() - KVM_CREATE_GUEST_MEMFD: a file of @size bytes
 * (fixed) for @vm, stored in *@out; it takes a VM reference.  @flags:
 * CCVM_GMEM_FLAG_MMAP (host access with ccvm_gmem_read() and
 * ccvm_gmem_write()), CCVM_GMEM_FLAG_INIT_SHARED (the file starts shared;
 * only for VMs of the GMEM scheme, as KVM allows it only with in-place
 * conversion to VMs with private memory), CCVM_GMEM_FLAG_HUGETLB with a
 * CCVM_GMEM_HUGE_* size (2 MiB or 1 GiB folios: allocation, punch and
 * conversion work per folio, see ccvm_gmem_fallocate()), as
 * caps.gmem_flags says.
 * Context: any thread but a guest's.
 * Return: 0; -EINVAL (size 0, unaligned or above INT64_MAX, flags unknown
 * or not supported by the backend, a huge size without HUGETLB, a folio
 * size other than 2 MiB and 1 GiB, a size that is not a multiple of the
 * folio size); -EIO (VM bugged or dead); -ENOMEM.
 * Example:
 *	#include <stdio.h>
 *
 *	// Private memory for @vm that the VMM can also touch where it is shared,
 *	// when the backend allows it.
 *	int make_gmem(struct ccvm_vm *vm, uint64_t size, struct ccvm_gmem **out)
 *	{
 *		struct ccvm_backend_caps c = CCVM_OPTS_INIT(struct ccvm_backend_caps);
 *		int err = ccvm_vm_caps(vm, &c);
 *
 *		if (err)
 *			return err;
 *		err = ccvm_gmem_create(vm, size, c.gmem_flags & CCVM_GMEM_FLAG_MMAP, out);
 *		if (err)
 *			fprintf(stderr, "gmem: %s\n", ccvm_last_error());
 *		return err;
 *	}
 */
CCVM_API int ccvm_gmem_create(struct ccvm_vm *vm, uint64_t size, uint64_t flags,
			      struct ccvm_gmem **out);

/*
 * ccvm_gmem_fallocate() - Allocate (KEEP_SIZE) or punch a hole
 * (PUNCH_HOLE|KEEP_SIZE).  A punch zaps every mapping of the range first,
 * then frees the pages.  Works after the VM handle is closed.
 * Context: any thread but a guest's; takes the file's invalidate lock for
 * write and mmu_lock for write while it zaps; may sleep.
 * With huge folios (CCVM_GMEM_FLAG_HUGETLB), as the HugeTLB guest_memfd:
 * an allocate covers the folios from the one holding @offset up to the
 * last folio that ends at or before @offset + @len (both rounded down, so
 * an allocate inside one folio allocates nothing); a punch frees every
 * folio it covers whole (split or not) and only zeroes the pages of a
 * folio it covers in part, which stays allocated (their content is handed
 * back to the host through gmem_invalidate first).
 * Return: 0; -EOPNOTSUPP (mode); -EINVAL (offset or len above INT64_MAX,
 * as loff_t, len 0, unaligned, allocate past EOF); -EFBIG (offset + len
 * above INT64_MAX); -EAGAIN (huge folios: a folio the punch would free
 * has a page the host pinned; nothing changed); -ENOMEM (simulated RAM
 * exhausted; pages allocated so far stay).
 * Example:
 *	#include <errno.h>
 *
 *	// Back the first @len bytes now rather than at the first faults.
 *	int prealloc(struct ccvm_gmem *g, uint64_t len)
 *	{
 *		int err = ccvm_gmem_fallocate(g, CCVM_FALLOC_KEEP_SIZE, 0, len);
 *
 *		// -ENOMEM keeps what was allocated: give it back, the VM won't fit
 *		if (err == -ENOMEM)
 *			ccvm_gmem_fallocate(g, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE, 0, len);
 *		return err;
 *	}
 */
CCVM_API int ccvm_gmem_fallocate(struct ccvm_gmem *g, int mode, uint64_t offset, uint64_t len);

/*
 * ccvm_gmem_read() / ccvm_gmem_write() - Host access to @len bytes at
 * @offset of the file, as through an mmap of it.  Only pages that are
 * shared may be touched: in the VM scheme no page of a file of a VM with
 * private memory is (every touch SIGBUSes, as in 6.18); in the GMEM scheme
 * the file's attributes decide page by page.  Reading a hole reads zeros
 * and, like a fault on a MAP_SHARED mapping, allocates it.  The access is
 * all or nothing.
 * Context: any thread but a guest's; takes the file's invalidate lock for
 * read.
 * Return: 0; -ENODEV (file without CCVM_GMEM_FLAG_MMAP); -EFAULT (a private
 * page, or past EOF: where Linux raises SIGBUS); -EINVAL (NULL buf, wrap);
 * -ENOMEM.
 * Example:
 *	#include <errno.h>
 *	#include <string.h>
 *
 *	// Put a kernel command line in a shared page of the file, read it back.
 *	int write_cmdline(struct ccvm_gmem *g, uint64_t off, const char *cmdline)
 *	{
 *		char page[4096] = { 0 }, check[4096];
 *		int err;
 *
 *		strncpy(page, cmdline, sizeof(page) - 1);
 *		err = ccvm_gmem_write(g, off, page, sizeof(page));
 *		if (!err)   // -EFAULT: the page is private (Linux raises SIGBUS)
 *			err = ccvm_gmem_read(g, off, check, sizeof(check));
 *		if (!err && memcmp(page, check, sizeof(page)))
 *			err = -EIO;
 *		return err;
 *	}
 */
CCVM_API int ccvm_gmem_read(struct ccvm_gmem *g, uint64_t offset, void *buf, size_t len);
CCVM_API int ccvm_gmem_write(struct ccvm_gmem *g, uint64_t offset, const void *buf, size_t len);

#define CCVM_GMEM_ACCESS_WRITE	(1u << 0)
/*
 * ccvm_gmem_access() - ccvm_gmem_read() (flags 0) or ccvm_gmem_write()
 * (CCVM_GMEM_ACCESS_WRITE; @buf is then only read), reporting where a
 * refused access faulted: on -EFAULT, *@fault_offset (if not NULL) is the
 * byte offset of the first page that would raise SIGBUS (the first private
 * page, or EOF), as si_addr names the faulting address.  Nothing is written
 * to it on success or any other error.
 * Context: any thread but a guest's; takes the file's invalidate lock for
 * read.
 * Return: as ccvm_gmem_read(); -EINVAL also for unknown @flags.
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// Copy out [off, off + len), naming the page that faulted if it fails.
 *	int dump(struct ccvm_gmem *g, uint64_t off, void *buf, size_t len)
 *	{
 *		uint64_t bad;
 *		int err = ccvm_gmem_access(g, off, buf, len, 0, &bad);
 *
 *		if (err == -EFAULT)
 *			fprintf(stderr, "SIGBUS at file offset %#llx (private or past EOF)\n",
 *					(unsigned long long)bad);
 *		return err;
 *	}
 */
CCVM_API int ccvm_gmem_access(struct ccvm_gmem *g, uint64_t offset, void *buf, size_t len,
			      unsigned int flags, uint64_t *fault_offset);

/*
 * KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd (the in-place conversion
 * series): the same first four fields as KVM_SET_MEMORY_ATTRIBUTES, then
 * the offset that blocked a failing call and reserved words; 128 bytes.
 */
struct ccvm_memory_attributes2 {
	uint64_t offset;	/* in: byte offset into the file */
	uint64_t size;		/* in: bytes */
	uint64_t attributes;	/* in: 0 (shared) or CCVM_MEMORY_ATTRIBUTE_PRIVATE */
	uint64_t flags;		/* in: one content mode or 0 */
	uint64_t error_offset;	/* out, on -EAGAIN and -ENOMEM only */
	uint64_t reserved[11];	/* in: must be 0 */
};

/*
 * Content modes (posted RFC v3 to v5, KVM_SET_MEMORY_ATTRIBUTES2_ZERO and
 * _PRESERVE; listed in caps.gmem_attributes_flags).  Without one the
 * contents follow the VM type: mock keeps them both ways, TDX's host and
 * guest see zeros, SNP's host sees ciphertext.
 *   ZERO      to shared only: every allocated page of the range reads zero
 *             afterwards
 *   PRESERVE  the bytes stay: mock both ways; TDX and SNP only to private
 *             and only before the VM is finalized (for launch data)
 */
#define CCVM_MEMORY_ATTRIBUTES2_ZERO		(1ull << 0)
#define CCVM_MEMORY_ATTRIBUTES2_PRESERVE	(1ull << 1)

/*
 * ccvm_gmem_set_memory_attributes() - KVM_SET_MEMORY_ATTRIBUTES2 on @g: set
 * [a->offset, a->offset + a->size) of the file shared or private, in place.
 * All or nothing.  If the range already holds @attributes nothing happens
 * (no invalidation).  Otherwise, to private: a page the host has pinned
 * (ccvm_gmem_pin()) refuses the call; then every mapping of the range's old
 * kind is zapped in every memslot that binds it; to shared, the backend
 * takes populated private pages back (SNP: RMP to hypervisor-owned; TDX:
 * the S-EPT removal zeroes them); the store changes; private pages are
 * prepared again lazily, at the next private fault.  With huge folios the
 * invalidation covers every folio the range touches (mappings of its
 * other pages are not zapped, but none can be installed meanwhile); a
 * conversion to shared splits each huge folio it touches into 4K folios
 * (shared pages are 4K), and a conversion to private restores a split
 * folio whole once every page of it is private, present and unpinned
 * (CCVM_EV_FOLIO_SPLIT / _MERGE).
 * Context: any thread but a guest's; takes the file's invalidate lock for
 * write, then mmu_lock for write; may sleep.  Only VMs of the GMEM scheme.
 * Return: 0; -ENOTTY (the VM uses the VM scheme, as the ioctl without
 * in-place conversion); -EINVAL (NULL, flags unknown or two content modes,
 * a reserved word non-zero, attributes other than PRIVATE, size 0, wrap,
 * misaligned, past EOF, a content mode the direction or VM state does not
 * allow), with nothing written to @a; -EAGAIN (a page to make private is
 * pinned: a->error_offset is the first such page's offset); -ENOMEM
 * (a->error_offset = a->offset); -EIO (VM bugged).  Nothing changes on any
 * error.
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// In-place conversion (GMEM scheme): make one page of the file private.
 *	int page_to_private(struct ccvm_gmem *g, uint64_t off)
 *	{
 *		struct ccvm_memory_attributes2 a = {
 *			.offset = off, .size = CCVM_PAGE_SIZE,
 *			.attributes = CCVM_MEMORY_ATTRIBUTE_PRIVATE,
 *		};
 *		int err = ccvm_gmem_set_memory_attributes(g, &a);
 *
 *		if (err == -EAGAIN)         // the host pins it: unpin, then retry
 *			fprintf(stderr, "pinned at %#llx\n", (unsigned long long)a.error_offset);
 *		else if (err == -ENOTTY)    // a VM of the VM scheme
 *			fprintf(stderr, "convert with ccvm_vm_set_memory_attributes()\n");
 *		return err;
 *	}
 */
CCVM_API int ccvm_gmem_set_memory_attributes(struct ccvm_gmem *g, struct ccvm_memory_attributes2 *a);

/*
 * ccvm_gmem_get_memory_attributes() - The attributes of the file page at
 * @offset and, in *@run_bytes when not NULL, how many bytes from @offset
 * to the end of the file hold the same value.  In the VM scheme a file of a
 * VM with private memory reads PRIVATE everywhere (the host may touch none
 * of it).
 * Context: any thread; takes the file's attribute lock for read; does not
 * sleep.
 * Return: 0; -EINVAL (NULL @g or @attributes, @offset unaligned or not
 * below the size), with nothing written.
 * Example:
 *	#include <stdio.h>
 *
 *	// Print the shared part of a file (GMEM scheme), one line a run.
 *	int print_shared(struct ccvm_gmem *g)
 *	{
 *		struct ccvm_gmem_info info = CCVM_OPTS_INIT(struct ccvm_gmem_info);
 *		uint64_t attrs, run;
 *		int err = ccvm_gmem_get_info(g, &info);
 *
 *		for (uint64_t off = 0; !err && off < info.size; off += run) {
 *			err = ccvm_gmem_get_memory_attributes(g, off, &attrs, &run);
 *			if (!err && !(attrs & CCVM_MEMORY_ATTRIBUTE_PRIVATE))
 *				printf("shared: [%#llx, %#llx)\n", (unsigned long long)off,
 *					   (unsigned long long)(off + run));
 *		}
 *		return err;
 *	}
 */
CCVM_API int ccvm_gmem_get_memory_attributes(struct ccvm_gmem *g, uint64_t offset,
					     uint64_t *attributes, uint64_t *run_bytes);

/*
 * ccvm_gmem_pin() / ccvm_gmem_unpin() - A host reference on the pages of
 * [@offset, @offset + @size), as pin_user_pages() on an mmap of the file:
 * pinning faults the pages in (they must be shared, and the file
 * mmap-able); while a page is pinned, converting it to private fails with
 * -EAGAIN.  Pins count; each pin needs its unpin.  A punch drops the page
 * from the file and the pin stops blocking (the folio lives on with its
 * pinner, outside the file); closing the file drops its pins.
 * Context: any thread but a guest's; takes the file's invalidate lock for
 * read, then its page lock.
 * Return: 0; -EINVAL (NULL, size 0, misaligned, wrap, past EOF; unpin of a
 * page not pinned); -ENODEV (no CCVM_GMEM_FLAG_MMAP); -EFAULT (pin of a
 * private page); -ENOMEM; nothing changes on any error.
 * Example:
 *	// A device writes into a shared page: pin it for the transfer, so that
 *	// converting it to private fails with -EAGAIN meanwhile.
 *	int dma_to_page(struct ccvm_gmem *g, uint64_t off, const void *data, size_t len)
 *	{
 *		int err = ccvm_gmem_pin(g, off, CCVM_PAGE_SIZE);
 *
 *		if (err)
 *			return err;     // -EFAULT: private; -ENODEV: no MMAP flag
 *		err = ccvm_gmem_write(g, off, data, len);
 *		ccvm_gmem_unpin(g, off, CCVM_PAGE_SIZE);    // one unpin per pin
 *		return err;
 *	}
 */
CCVM_API int ccvm_gmem_pin(struct ccvm_gmem *g, uint64_t offset, uint64_t size);
CCVM_API int ccvm_gmem_unpin(struct ccvm_gmem *g, uint64_t offset, uint64_t size);

struct ccvm_gmem_info {
	size_t sz;
	uint64_t size;		/* bytes */
	uint64_t flags;
	uint64_t nr_pages;	/* pages allocated in the page cache */
	uint32_t nr_bindings;	/* memslots bound to the file */
	uint64_t nr_private;	/* pages PRIVATE (GMEM scheme; else every page
				 * of a VM with private memory) */
	uint64_t nr_pinned;	/* pages the host has pinned */
	uint32_t folio_order;	/* order of the file's folios: 0, 9 (2M), 18 (1G) */
	uint64_t nr_huge_folios;	/* allocated folios of that order still whole */
};

/*
 * ccvm_gmem_get_info() - The size, flags, allocated pages and bindings of
 * the file @g in @info.  The caller sets info->sz; info->sz comes back as
 * the size written.
 * Context: any thread; takes the file's page and invalidate locks.
 * Return: 0; -EINVAL (NULL argument, info->sz smaller than a size_t).
 * Example:
 *	#include <stdio.h>
 *
 *	int print_gmem(struct ccvm_gmem *g)
 *	{
 *		struct ccvm_gmem_info i = CCVM_OPTS_INIT(struct ccvm_gmem_info);
 *		int err = ccvm_gmem_get_info(g, &i);
 *
 *		if (!err)
 *			printf("%llu MiB: %llu pages cached, %llu private, %llu pinned; "
 *				   "%u memslot(s)\n", (unsigned long long)(i.size >> 20),
 *				   (unsigned long long)i.nr_pages, (unsigned long long)i.nr_private,
 *				   (unsigned long long)i.nr_pinned, i.nr_bindings);
 *		return err;
 *	}
 */
CCVM_API int ccvm_gmem_get_info(struct ccvm_gmem *g, struct ccvm_gmem_info *info);

/*
 * ccvm_gmem_close() - Close the file.  The last close releases it:
 * bindings are cut (private faults on them become memory-fault exits),
 * mappings are zapped unless the backend defers removal to teardown, and
 * the VM reference is dropped (possibly destroying the VM).
 * Context: any thread but a guest's; takes slots_lock and the file's
 * invalidate lock; may sleep.  No other call on @g may run or follow.
 * Return: 0; -EINVAL (NULL).
 * Example:
 *	// Take private memory away: delete the slot, then close the file (its
 *	// last close frees the pages unless the backend defers removal).
 *	int drop_private(struct ccvm_vm *vm, struct ccvm_gmem *g, uint32_t slot)
 *	{
 *		struct ccvm_memory_region del = { .slot = slot, .memory_size = 0 };
 *		int err = ccvm_vm_set_user_memory_region(vm, &del);
 *
 *		return err ? err : ccvm_gmem_close(g);
 *	}
 */
CCVM_API int ccvm_gmem_close(struct ccvm_gmem *g);

/* ------------------------------------------------------------------ */
/* vCPUs and guest code                                                */
/* ------------------------------------------------------------------ */

enum ccvm_exit_reason {
	CCVM_EXIT_UNKNOWN = 0,
	CCVM_EXIT_MEMORY_FAULT,	/* run returned -EFAULT: convert or give up */
	CCVM_EXIT_HYPERCALL,	/* MAP_GPA_RANGE: set attributes, set ret */
	CCVM_EXIT_MMIO,		/* access with no memslot */
	CCVM_EXIT_SYNC,		/* ccvm_guest_sync() */
	CCVM_EXIT_DONE,		/* the guest function returned */
	CCVM_EXIT_GUEST_ABORT,	/* ccvm_guest_abort()/CCVM_GUEST_ASSERT failed */
	CCVM_EXIT_EXCEPTION,	/* #VE (TDX) / #VC (SNP) on an unaccepted page */
	CCVM_EXIT_INTERNAL_ERROR, /* run returned an error; see internal.error */
};

#define CCVM_MEMORY_EXIT_FLAG_PRIVATE	(1ull << 3)
#define CCVM_HC_MAP_GPA_RANGE		12
#define CCVM_MAP_GPA_RANGE_PAGE_SZ_4K	0
#define CCVM_MAP_GPA_RANGE_PAGE_SZ_2M	(1ull << 0)
#define CCVM_MAP_GPA_RANGE_ENCRYPTED	(1ull << 4)
#define CCVM_MAP_GPA_RANGE_DECRYPTED	0
#define CCVM_X86_VE_VECTOR		20
#define CCVM_X86_VC_VECTOR		29

struct ccvm_run {
	uint32_t exit_reason;	/* enum ccvm_exit_reason */
	uint32_t vcpu_id;
	union {
		struct { uint64_t flags, gpa, size; } memory_fault;
		/* MAP_GPA_RANGE: args[0] gpa (no shared bit), args[1] npages,
		 * args[2] attrs; the VMM sets ret to 0 or a positive errno. */
		struct { uint64_t nr, args[6], ret; } hypercall;
		/* reads: the VMM fills data[0..len) before the next run */
		struct { uint64_t phys_addr; uint8_t data[8]; uint32_t len;
			 uint8_t is_write; } mmio;
		struct { uint64_t value; } sync;
		struct { const char *file; int line; const char *msg; } abort;
		struct { uint32_t vector; uint64_t gpa; } exception;
		struct { int error; } internal;
	};
};

typedef void (*ccvm_guest_fn)(struct ccvm_guest *g, void *arg);

/*
 * ccvm_vcpu_create() - Create vCPU @id (< max_vcpus, unique) of @vm and
 * store its handle in *@out; it takes a VM reference.  The backend creates
 * its per-vCPU state (TDX TDVPR and TDCX pages, SNP VMSA).
 * Context: any thread but a guest's.
 * Return: 0; -EINVAL (NULL argument, @id >= max_vcpus); -EEXIST (id in
 * use); -EIO (VM bugged or dead); -ENOMEM.
 * Example:
 *	// vCPUs 0..n-1; on a failure, none.
 *	int make_vcpus(struct ccvm_vm *vm, struct ccvm_vcpu **v, uint32_t n)
 *	{
 *		for (uint32_t i = 0; i < n; i++) {
 *			int err = ccvm_vcpu_create(vm, i, &v[i]);
 *
 *			if (err) {      // -EINVAL: i >= max_vcpus; -EEXIST: id taken
 *				while (i--)
 *					ccvm_vcpu_close(v[i]);
 *				return err;
 *			}
 *		}
 *		return 0;
 *	}
 */
CCVM_API int ccvm_vcpu_create(struct ccvm_vm *vm, uint32_t id, struct ccvm_vcpu **out);

/*
 * ccvm_vcpu_close() - Close the handle: a guest blocked in an exit is
 * unwound, the thread joined, the VM reference dropped.  The vCPU's backend
 * state lives until VM teardown, as in KVM.
 * Context: any thread but the vCPU's own guest; no other call on @v may
 * run or follow.
 * Return: 0; -EINVAL (NULL, or already closed); -EDEADLK (called from the
 * vCPU's own guest function).
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// Stop a vCPU even while its guest waits in an exit: close unwinds it.
 *	void stop_vcpu(struct ccvm_vcpu *v)
 *	{
 *		int err = ccvm_vcpu_close(v);
 *
 *		if (err == -EDEADLK)
 *			fprintf(stderr, "close a vCPU from the VMM, not from its guest\n");
 *	}
 */
CCVM_API int ccvm_vcpu_close(struct ccvm_vcpu *v);

/*
 * ccvm_vcpu_pre_fault_memory() - KVM_PRE_FAULT_MEMORY: map [*gpa, *gpa +
 * *size) as a guest access would (private if the attribute says so),
 * advancing both as pages are mapped.
 * Context: any thread but a guest's, not while @v runs; takes mmu_lock
 * for read (the fault path).
 * Return: 0 if anything was mapped; -EINVAL (size 0, unaligned, wrap);
 * -ENOENT (no memslot at *gpa); -EFAULT (attribute/backing mismatch);
 * -EOPNOTSUPP (TDX before finalize); -EBUSY (the fault at *gpa kept
 * asking for a retry, past the library's bound); -EIO.
 * Example:
 *	#include <stdio.h>
 *
 *	// Map the first 2 MiB of guest memory before the guest boots.
 *	int prefault(struct ccvm_vcpu *v, uint64_t base)
 *	{
 *		uint64_t gpa = base, size = 2ull << 20;
 *		int err = 0;
 *
 *		// gpa and size advance by what each call mapped
 *		while (size && !(err = ccvm_vcpu_pre_fault_memory(v, &gpa, &size)))
 *			;
 *		if (err)    // e.g. -EOPNOTSUPP: a TDX VM not finalized yet
 *			fprintf(stderr, "stopped at %#llx: %s\n", (unsigned long long)gpa,
 *					ccvm_last_error());
 *		return err;
 *	}
 */
CCVM_API int ccvm_vcpu_pre_fault_memory(struct ccvm_vcpu *v, uint64_t *gpa, uint64_t *size);

/*
 * ccvm_vcpu_set_guest() - Set the function the next ccvm_vcpu_run() starts
 * in the guest: @fn(guest, @arg) on the vCPU's own thread.  The run state
 * is cleared.
 * Context: any thread but the vCPU's own guest, while no guest of @v is
 * running or blocked in an exit.
 * Return: 0; -EINVAL (NULL @v or @fn, handle closed); -EBUSY (a guest is
 * blocked in an exit: run it to the end or close the vCPU); -EDEADLK
 * (called from the vCPU's own guest).
 * Example:
 *	static void boot(struct ccvm_guest *g, void *arg)
 *	{
 *		const uint64_t *entry = arg;
 *
 *		ccvm_guest_sync(g, *entry);
 *	}
 *
 *	// Start the guest at @entry and run it to its first exit.
 *	int start_guest(struct ccvm_vcpu *v, const uint64_t *entry)
 *	{
 *		// -EBUSY: the previous guest still waits in an exit
 *		int err = ccvm_vcpu_set_guest(v, boot, (void *)entry);
 *
 *		return err ? err : ccvm_vcpu_run(v);
 *	}
 */
CCVM_API int ccvm_vcpu_set_guest(struct ccvm_vcpu *v, ccvm_guest_fn fn, void *arg);

/*
 * ccvm_vcpu_run() - Resume the guest until its next exit (KVM_RUN).  A
 * backend whose capabilities say needs_finalize (TDX, SNP) refuses to
 * run before ccvm_vm_finalize(), as KVM does.
 * Context: one caller per vCPU at a time; vCPUs run in parallel.
 * Return: 0 with the exit in ccvm_vcpu_run_state(); -EFAULT with a
 * CCVM_EXIT_MEMORY_FAULT exit; -EINVAL (no guest, or the guest is done);
 * -EIO (VM bugged/dead, with CCVM_EXIT_INTERNAL_ERROR); -EBUSY (another
 * thread is in run); -EPERM (serial platform: the first run of a guest from
 * a thread the scheduler does not control: the guest thread is a
 * controlled thread made by the caller, ccvm_thread_create()).
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// KVM_RUN loop: convert on memory-fault exits until the guest is done.
 *	int run_loop(struct ccvm_vm *vm, struct ccvm_vcpu *v)
 *	{
 *		struct ccvm_run *run = ccvm_vcpu_run_state(v);
 *
 *		for (;;) {
 *			int err = ccvm_vcpu_run(v);
 *
 *			if (err == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT)
 *				err = ccvm_vm_set_memory_attributes(vm, run->memory_fault.gpa,
 *						run->memory_fault.size,
 *						run->memory_fault.flags & CCVM_MEMORY_EXIT_FLAG_PRIVATE ?
 *						CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);
 *			if (err) {      // -EINVAL on TDX/SNP: not finalized yet
 *				fprintf(stderr, "run: %s\n", ccvm_last_error());
 *				return err;
 *			}
 *			if (run->exit_reason == CCVM_EXIT_DONE)
 *				return 0;
 *		}
 *	}
 */
CCVM_API int ccvm_vcpu_run(struct ccvm_vcpu *v);

/*
 * ccvm_vcpu_run_state() - The vCPU's struct ccvm_run (KVM's mmap'ed
 * kvm_run): the last exit's reason and data, where the VMM also writes
 * its answers (MMIO read data, hypercall ret) before the next run.
 * Context: the thread that calls ccvm_vcpu_run() on @v, between runs.
 * Return: a pointer valid until the vCPU is closed; NULL for NULL @v.
 * Example:
 *	#include <string.h>
 *
 *	// A VMM device: every read of its MMIO page returns the next number.
 *	void answer_mmio(struct ccvm_vcpu *v, uint64_t *counter)
 *	{
 *		struct ccvm_run *run = ccvm_vcpu_run_state(v);
 *
 *		if (run->exit_reason != CCVM_EXIT_MMIO || run->mmio.is_write)
 *			return;
 *		++*counter;
 *		// the guest's read completes with these bytes at the next run
 *		memcpy(run->mmio.data, counter, run->mmio.len);
 *	}
 */
CCVM_API struct ccvm_run *ccvm_vcpu_run_state(struct ccvm_vcpu *v);

/*
 * ccvm_guest_read() / ccvm_guest_write() - The guest reads or writes @len
 * bytes at @gpa (with the shared bit: the shared alias).  An access that
 * needs the VMM (a fault on a page the attributes and backing disagree
 * on, MMIO) blocks the guest until the next ccvm_vcpu_run(), then runs
 * again, as a CPU re-executes a faulting instruction.
 * Context: guest side: only from inside a guest function, on its vCPU.
 * Return: 0; -EINVAL (bad range, not called from a guest); -EACCES
 * (#VE/#VC: page not accepted); -EIO (VM dead).
 * Example:
 *	// Guest: copy 64 private bytes out through a shared page.
 *	static void copy_out(struct ccvm_guest *g, void *arg)
 *	{
 *		const uint64_t *gpa = arg;  // gpa[0]: private, gpa[1]: shared page
 *		char buf[64];
 *
 *		CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, gpa[0], buf, sizeof(buf)) == 0);
 *		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, gpa[1] | ccvm_guest_shared_bit(g),
 *											  buf, sizeof(buf)) == 0);
 *	}
 *
 *	int set_copy_out(struct ccvm_vcpu *v, uint64_t gpa[2])
 *	{
 *		return ccvm_vcpu_set_guest(v, copy_out, gpa);
 *	}
 */
CCVM_API int ccvm_guest_read(struct ccvm_guest *g, uint64_t gpa, void *buf, size_t len);
CCVM_API int ccvm_guest_write(struct ccvm_guest *g, uint64_t gpa, const void *buf, size_t len);

/*
 * ccvm_guest_map_gpa() - The guest asks to convert [@gpa, @gpa + @size)
 * to private or shared (TDX TDG.VP.VMCALL<MapGPA>, SNP page-state change):
 * CCVM_EXIT_HYPERCALL exits, in chunks as the backend splits them, each
 * answered by the VMM in run->hypercall.ret.
 * Context: guest side, on the guest's vCPU.
 * Return: 0; -EINVAL (range unaligned, wrapping or past the GPA width, not
 * called from a guest); -EIO (VM dead); the negated errno of the VMM's
 * non-zero ret (e.g. -EAGAIN to ask for a retry).
 * Example:
 *	#include <errno.h>
 *
 *	// Guest: share one page for a ring, again while the VMM says -EAGAIN.
 *	static void share_ring(struct ccvm_guest *g, void *arg)
 *	{
 *		uint64_t ring = *(const uint64_t *)arg;
 *		int err;
 *
 *		while ((err = ccvm_guest_map_gpa(g, ring, CCVM_PAGE_SIZE, false)) == -EAGAIN)
 *			;
 *		CCVM_GUEST_ASSERT(g, err == 0);
 *	}
 *
 *	// VMM: answer the CCVM_EXIT_HYPERCALL exit it causes, then run again.
 *	void answer_map_gpa(struct ccvm_vm *vm, struct ccvm_run *run)
 *	{
 *		uint64_t len = run->hypercall.args[1] * CCVM_PAGE_SIZE;
 *		bool priv = run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED;
 *
 *		run->hypercall.ret = -ccvm_vm_set_memory_attributes(vm, run->hypercall.args[0],
 *				len, priv ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);
 *	}
 *
 *	int start_share_ring(struct ccvm_vcpu *v, uint64_t *ring)
 *	{
 *		return ccvm_vcpu_set_guest(v, share_ring, ring);
 *	}
 */
CCVM_API int ccvm_guest_map_gpa(struct ccvm_guest *g, uint64_t gpa, uint64_t size, bool to_private);

/*
 * ccvm_guest_accept() - The guest accepts private pages (TDX
 * TDG.MEM.PAGE.ACCEPT, SNP PVALIDATE) page by page, stopping at the first
 * failure; a page not yet mapped is faulted in first.
 * Context: guest side, on the guest's vCPU.
 * Return: 0; -EEXIST (a page accepted already); -EINVAL (size 0, range
 * unaligned or past the GPA width, a GPA with the shared bit, no memslot
 * at a page, not called from a guest); -EIO (VM dead); the backend's
 * error for the page.
 * Example:
 *	#include <errno.h>
 *
 *	// Guest: accept (TDX) or validate (SNP) its RAM page by page at boot;
 *	// a page the firmware accepted before is fine.
 *	static void accept_ram(struct ccvm_guest *g, void *arg)
 *	{
 *		const uint64_t *ram = arg;  // base, size
 *
 *		for (uint64_t off = 0; off < ram[1]; off += CCVM_PAGE_SIZE) {
 *			int err = ccvm_guest_accept(g, ram[0] + off, CCVM_PAGE_SIZE);
 *
 *			CCVM_GUEST_ASSERT(g, err == 0 || err == -EEXIST);
 *		}
 *	}
 *
 *	int boot_accepting(struct ccvm_vcpu *v, uint64_t ram[2])
 *	{
 *		return ccvm_vcpu_set_guest(v, accept_ram, ram);
 *	}
 */
CCVM_API int ccvm_guest_accept(struct ccvm_guest *g, uint64_t gpa, uint64_t size);

/*
 * ccvm_guest_accept_level() - As ccvm_guest_accept(), with accepts of page
 * size @level (CCVM_LEVEL_4K or CCVM_LEVEL_2M): one TDG.MEM.PAGE.ACCEPT or
 * PVALIDATE per 2M when @level is 2M.  Whether a 2M accept works depends
 * on the host's mapping and the hardware's entry (TDX: mapped at 4K ->
 * PAGE_SIZE_MISMATCH; SNP: a 4K RMP entry -> FAIL_SIZEMISMATCH): the
 * guest then gets -ERANGE and accepts that 2M page by page, as Linux does.
 * A backend without level accepts takes a 2M accept page by page.
 * Context: guest side, on the guest's vCPU.
 * Return: as ccvm_guest_accept(); -EINVAL also for a level other than 4K
 * and 2M or a range not aligned to it; -ERANGE (page size mismatch, the
 * block stays unaccepted).
 * Example:
 *	#include <errno.h>
 *
 *	// Guest: accept 2M-aligned RAM 2M at a time; where the host mapped it at
 *	// 4K (-ERANGE), accept that 2M block page by page, as Linux does.
 *	static void accept_2m(struct ccvm_guest *g, void *arg)
 *	{
 *		const uint64_t *ram = arg;  // base and size, 2M aligned
 *
 *		for (uint64_t gpa = ram[0]; gpa < ram[0] + ram[1]; gpa += CCVM_HPAGE_2M_SIZE) {
 *			int err = ccvm_guest_accept_level(g, gpa, CCVM_HPAGE_2M_SIZE, CCVM_LEVEL_2M);
 *
 *			if (err == -ERANGE)
 *				err = ccvm_guest_accept_level(g, gpa, CCVM_HPAGE_2M_SIZE, CCVM_LEVEL_4K);
 *			CCVM_GUEST_ASSERT(g, err == 0);
 *		}
 *	}
 *
 *	int boot_accepting_2m(struct ccvm_vcpu *v, uint64_t ram[2])
 *	{
 *		return ccvm_vcpu_set_guest(v, accept_2m, ram);
 *	}
 */
CCVM_API int ccvm_guest_accept_level(struct ccvm_guest *g, uint64_t gpa, uint64_t size,
				     int level);

/*
 * ccvm_guest_sync() - Exit to the VMM with CCVM_EXIT_SYNC and @value (like
 * a selftest ucall); the guest goes on at the next ccvm_vcpu_run().
 * Context: guest side, on the guest's vCPU.
 * Return: nothing; a VMM that closes the vCPU instead unwinds the guest.
 * Example:
 *	// Guest: report progress; the VMM sees CCVM_EXIT_SYNC with the value.
 *	static void count_to_three(struct ccvm_guest *g, void *arg)
 *	{
 *		(void)arg;
 *		for (uint64_t i = 1; i <= 3; i++)
 *			ccvm_guest_sync(g, i);
 *	}
 *
 *	int expect_three(struct ccvm_vcpu *v)
 *	{
 *		struct ccvm_run *run = ccvm_vcpu_run_state(v);
 *		int err = ccvm_vcpu_set_guest(v, count_to_three, NULL);
 *
 *		for (uint64_t want = 1; !err && want <= 3; want++) {
 *			err = ccvm_vcpu_run(v);
 *			if (!err && (run->exit_reason != CCVM_EXIT_SYNC || run->sync.value != want))
 *				err = -1;
 *		}
 *		return err;
 *	}
 */
CCVM_API void ccvm_guest_sync(struct ccvm_guest *g, uint64_t value);

/*
 * ccvm_guest_abort() - End the guest with CCVM_EXIT_GUEST_ABORT, reporting
 * @file, @line and @msg in run->abort (CCVM_GUEST_ASSERT() calls it).
 * Context: guest side, on the guest's vCPU.
 * Return: does not return.
 * Example:
 *	#include <stdio.h>
 *
 *	static void check_header(struct ccvm_guest *g, void *arg)
 *	{
 *		uint32_t magic = 0;
 *
 *		ccvm_guest_read(g, *(const uint64_t *)arg, &magic, sizeof(magic));
 *		if (magic != 0x1badb002)
 *			ccvm_guest_abort(g, __FILE__, __LINE__, "no boot header");
 *	}
 *
 *	// VMM: run it once and say how it ended.
 *	int run_checked(struct ccvm_vcpu *v, uint64_t *hdr_gpa)
 *	{
 *		const struct ccvm_run *run = ccvm_vcpu_run_state(v);
 *		int err = ccvm_vcpu_set_guest(v, check_header, hdr_gpa);
 *
 *		if (!err)
 *			err = ccvm_vcpu_run(v);
 *		if (!err && run->exit_reason == CCVM_EXIT_GUEST_ABORT)
 *			fprintf(stderr, "guest: %s:%d: %s\n", run->abort.file, run->abort.line,
 *					run->abort.msg);
 *		return err;
 *	}
 */
#if defined(__cplusplus)
[[noreturn]]
#else
_Noreturn
#endif
CCVM_API void ccvm_guest_abort(struct ccvm_guest *g, const char *file, int line,
			       const char *msg);
#define CCVM_GUEST_ASSERT(g, cond) \
	do { if (!(cond)) ccvm_guest_abort((g), __FILE__, __LINE__, #cond); } while (0)

/*
 * ccvm_guest_vcpu_id() / ccvm_guest_shared_bit() - The vCPU id and the
 * VM's shared bit, for guest code.
 * Context: guest side.
 * Return: the id (UINT32_MAX for NULL @g); the bit (0 without one).
 * Example:
 *	// Guest: each vCPU writes its id in its own slot of a shared table.
 *	static void check_in(struct ccvm_guest *g, void *arg)
 *	{
 *		uint64_t table = *(const uint64_t *)arg;
 *		uint32_t id = ccvm_guest_vcpu_id(g);
 *
 *		ccvm_guest_write(g, (table + id * sizeof(id)) | ccvm_guest_shared_bit(g),
 *						 &id, sizeof(id));
 *	}
 *
 *	int start_check_in(struct ccvm_vcpu *v, uint64_t *table)
 *	{
 *		return ccvm_vcpu_set_guest(v, check_in, table);
 *	}
 */
CCVM_API uint32_t ccvm_guest_vcpu_id(const struct ccvm_guest *g);
CCVM_API uint64_t ccvm_guest_shared_bit(const struct ccvm_guest *g);

/* ------------------------------------------------------------------ */
/* Invariants                                                          */
/* ------------------------------------------------------------------ */

#define CCVM_INVARIANT_MSG_MAX	256

/*
 * What the invariant checker found.  Invariant numbers are those of the
 * modelling spec's list (I1..I30, docs/semantics.md section 11, and the
 * in-place conversion's I31..I34, docs/invariants.md); the table
 * in lib/invariants.c says which ones are checked and how.
 */
struct ccvm_invariant_report {
	size_t sz;
	uint32_t invariant;	/* out: first broken invariant, 1..36; 0 = none */
	uint64_t nr_checks;	/* out: individual checks done */
	uint64_t gfn;		/* out: gfn involved, UINT64_MAX if none */
	uint64_t pfn;		/* out: pfn involved, UINT64_MAX if none */
	char msg[CCVM_INVARIANT_MSG_MAX]; /* out: what broke, "" if nothing */
};

/*
 * ccvm_vm_check_invariants() - Walk the live state of @vm (attribute store,
 * memslots, gmem bindings and pages, every TDP root, vCPU roots, and the
 * backend's hardware state: S-EPT and PAMT for TDX, RMP and direct map for
 * SNP) and report the first broken invariant in @r.  Nothing is changed,
 * counted or traced; a bugged VM is reported, not repaired.
 * Context: a quiescent point: no other thread in a call on @vm, its vCPUs
 * or its gmem files (the check takes slots_lock, memslots_rw and mmu_lock
 * for write, but a punch or a guest between two steps is not excluded).
 * Return: 0 when the walk ran (r->invariant is 0 if everything held);
 * -EINVAL (NULL, r->sz too small).
 * Example:
 *	#include <stdio.h>
 *
 *	// In a test, after each step: is the VM's state consistent?
 *	int assert_consistent(struct ccvm_vm *vm)
 *	{
 *		struct ccvm_invariant_report r = CCVM_OPTS_INIT(struct ccvm_invariant_report);
 *		int err = ccvm_vm_check_invariants(vm, &r);
 *
 *		if (err)
 *			return err;
 *		if (r.invariant) {
 *			fprintf(stderr, "I%u (%s) broken at gfn %#llx: %s\n", r.invariant,
 *					ccvm_invariant_name(r.invariant), (unsigned long long)r.gfn, r.msg);
 *			return -1;
 *		}
 *		return 0;
 *	}
 */
CCVM_API int ccvm_vm_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r);

/*
 * ccvm_platform_check_invariants() - Check @p's physical memory: the free
 * list and the per-page state agree (no page both free and allocated), free
 * plus allocated pages add up to the total, and leaked pages are counted
 * and never free.
 * Context: a quiescent point, as for ccvm_vm_check_invariants().
 * Return: 0 when the walk ran (r->invariant is 0 if everything held);
 * -EINVAL (NULL, r->sz too small).
 * Example:
 *	#include <stdio.h>
 *
 *	int main(void)
 *	{
 *		struct ccvm_invariant_report r = CCVM_OPTS_INIT(struct ccvm_invariant_report);
 *		struct ccvm_platform *p;
 *		int err = ccvm_platform_create(NULL, &p);
 *
 *		if (err)
 *			return 1;
 *		err = ccvm_platform_check_invariants(p, &r);
 *		printf("%llu checks: %s\n", (unsigned long long)r.nr_checks,
 *			   r.invariant ? r.msg : "physical memory is consistent");
 *		ccvm_platform_destroy(p);
 *		return err || r.invariant;
 *	}
 */
CCVM_API int ccvm_platform_check_invariants(struct ccvm_platform *p, struct ccvm_invariant_report *r);

/*
 * ccvm_invariant_name() - One line naming invariant @n (1..36), as
 * docs/invariants.md lists them.
 * Context: any thread.
 * Return: a static string; NULL for another number.
 * Example:
 *	#include <stdio.h>
 *
 *	// The invariants the checker knows, numbered as docs/invariants.md.
 *	int main(void)
 *	{
 *		const char *s;
 *
 *		for (unsigned int n = 1; (s = ccvm_invariant_name(n)); n++)
 *			printf("I%-2u %s\n", n, s);
 *		return 0;
 *	}
 */
CCVM_API const char *ccvm_invariant_name(unsigned int n);

#ifdef __cplusplus
}
#endif

#endif /* CCVM_CCVM_H */
