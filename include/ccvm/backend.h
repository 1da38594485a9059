/* SPDX-License-Identifier: MIT */
/*
 * libccvm backend ABI: what a backend (the hardware rules of one platform)
 * implements, and the core services it may call.
 *
 * The core does the generic work (attribute store, memslots, gmem, the TDP
 * MMU, the fault path, vCPU runs) and calls the backend through struct
 * ccvm_backend_ops at the points where KVM calls its x86 ops.  A backend
 * touches only its own simulated hardware state (kept in the platform,
 * VM and vCPU private areas that the core allocates with the sizes in the
 * table) and the services below.  It never calls the public API.
 *
 * Ops are marked, in lib/backend-ops.h, mandatory, optional (the core checks
 * for NULL and does without), or optional-returning-0 (a NULL op is replaced
 * at registration by one that returns 0).  The table is validated once when
 * a platform is created: an ABI major mismatch, a table smaller than the
 * first ABI's, a missing mandatory op, or a mirror-root backend without all
 * four mirror ops gives -EINVAL.
 *
 * GFNs passed to ops never carry the shared bit.  "mmu_lock" is the VM's
 * MMU reader-writer lock, "slots_lock" its memslot/attribute mutex.
 */
#ifndef CCVM_BACKEND_H
#define CCVM_BACKEND_H

#include <stdarg.h>
#include <ccvm/ccvm.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CCVM_BACKEND_ABI_MAJOR	1
#define CCVM_BACKEND_ABI_MINOR	1	/* 1: check_invariants */
#define CCVM_BACKEND_ABI_VERSION \
	((uint32_t)((CCVM_BACKEND_ABI_MAJOR << 16) | CCVM_BACKEND_ABI_MINOR))

struct ccvm_memslot;
struct ccvm_gmem_inode;

/* Filters for zaps, as KVM's attr_filter. */
#define CCVM_FILTER_SHARED	(1u << 0)
#define CCVM_FILTER_PRIVATE	(1u << 1)

/* host_access() result: reads see ciphertext, not the plaintext. */
#define CCVM_HOST_ACCESS_CIPHERTEXT	1

/* guest_access() / guest_accept() result: map the page first, then retry. */
#define CCVM_GUEST_NEEDS_FAULT		1

struct ccvm_backend_ops {
	uint32_t abi_version;	/* CCVM_BACKEND_ABI_VERSION the backend was built for */
	uint32_t size;		/* sizeof(struct ccvm_backend_ops) at build time */
	const char *name;	/* "mock", "tdx", "snp" */
	size_t platform_priv_size; /* backend-global hardware state */
	size_t vm_priv_size;	/* per-VM backend state */
	size_t vcpu_priv_size;	/* per-vCPU backend state */

	/* Fill @caps; @vm is NULL for the backend's defaults.  Mandatory. */
	void (*get_caps)(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps);

	/* Set up / tear down global hardware state (PAMT, RMP, key pool). */
	int (*platform_init)(struct ccvm_platform *p);
	/* Free global state; every VM is gone. */
	void (*platform_destroy)(struct ccvm_platform *p);

	/* KVM_CREATE_VM (+ TDX INIT_VM / SNP LAUNCH_START): key id, control pages. */
	int (*vm_init)(struct ccvm_vm *vm);
	/* Last VM reference gone, before vCPUs and roots: TDX releases the HKID. */
	void (*vm_pre_destroy)(struct ccvm_vm *vm);
	/* After vCPUs are freed and every root is zapped: reclaim control pages. */
	void (*vm_destroy)(struct ccvm_vm *vm);
	/* TDX MR.FINALIZE / SNP LAUNCH_FINISH; NULL: launch has no finalize. */
	int (*vm_finalize)(struct ccvm_vm *vm);
	/* Release the key id early and mark the VM dead; NULL: -EOPNOTSUPP. */
	int (*vm_terminate)(struct ccvm_vm *vm);
	/* Launch-time copy of one page: TDX PAGE.ADD(+MR.EXTEND), SNP LAUNCH_UPDATE. */
	int (*populate)(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn,
			const void *src, uint64_t flags);
	/* vCPU created (TDVPR/TDCX, VMSA). */
	int (*vcpu_create)(struct ccvm_vcpu *vcpu);
	/* vCPU freed at VM teardown, after vm_pre_destroy. */
	void (*vcpu_free)(struct ccvm_vcpu *vcpu);
	/* Guest entry (TDH.VP.ENTER); -EAGAIN: entry blocked, try again. */
	int (*vcpu_enter)(struct ccvm_vcpu *vcpu);
	/* The vCPU left the guest (exit to the VMM or a kick). */
	void (*vcpu_exit)(struct ccvm_vcpu *vcpu);

	/* Before mapping a private page; idempotent (SNP: RMPUPDATE assigned). */
	int (*gmem_prepare)(struct ccvm_vm *vm, uint64_t pfn, uint64_t gfn, int max_order);
	/* gmem freed [pfn_start, pfn_end): give pages back to the host. Cannot fail. */
	void (*gmem_invalidate)(struct ccvm_platform *p, uint64_t pfn_start, uint64_t pfn_end);
	/* gmem release: nonzero = keep mappings (inode pinned), reclaim at teardown. */
	int (*gmem_defer_removal)(struct ccvm_vm *vm, struct ccvm_gmem_inode *inode);

	/* Inside the attribute sequence, mmu_lock write, before the zap. */
	int (*pre_set_mem_attr)(struct ccvm_vm *vm, uint64_t start, uint64_t end,
				uint64_t attrs);
	/* Inside the attribute sequence, mmu_lock write, after the store. */
	void (*post_set_mem_attr)(struct ccvm_vm *vm, uint64_t start, uint64_t end,
				  uint64_t attrs);
	/* After the store, outside mmu_lock, may sleep (SNP: RMP + direct map). */
	int (*update_mem_attr)(struct ccvm_vm *vm, struct ccvm_memslot *slot,
			       uint64_t attrs, uint64_t start, uint64_t end);

	/* Mirror root: a page-table page at @level covering @gfn is linked (SEPT.ADD). */
	int (*link_private_spt)(struct ccvm_vm *vm, uint64_t gfn, int level,
				uint64_t spt_pfn);
	/* Mirror root: a leaf is installed (PAGE.AUG, or PAGE.ADD before finalize). */
	int (*set_private_spte)(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn);
	/* Mirror root: a leaf is removed, mmu_lock write (BLOCK/TRACK/REMOVE or RECLAIM). */
	int (*remove_private_spte)(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn);
	/* Mirror root: a page-table page is freed (teardown only: RECLAIM). */
	int (*free_private_spt)(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t spt_pfn);

	/* Private bit of a guest access to @gpa; NULL: the shared-bit/attribute rule. */
	int (*fault_is_private)(struct ccvm_vm *vm, uint64_t gpa);
	/* Largest level for a mapping of @pfn; 0 = no limit. */
	int (*max_mapping_level)(struct ccvm_vm *vm, uint64_t pfn, bool is_private);

	/*
	 * Guest asked to convert [gpa, gpa+size): fill run->hypercall for the
	 * first chunk, return its length in bytes (> 0) or a negative errno that
	 * the guest gets back.  NULL: one exit for the whole range.
	 */
	int64_t (*handle_exit_hypercall)(struct ccvm_vcpu *vcpu, uint64_t gpa,
					 uint64_t size, bool to_private,
					 struct ccvm_run *run);
	/* Guest accepts one page (TDG.MEM.PAGE.ACCEPT / PVALIDATE);
	 * CCVM_GUEST_NEEDS_FAULT: fault it in first. */
	int (*guest_accept)(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn, bool mapped);
	/* Guest touches a mapped page; -EACCES = #VE/#VC, CCVM_GUEST_NEEDS_FAULT
	 * = nested fault, zap and retry.  mmu_lock read held. */
	int (*guest_access)(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn,
			    bool is_private, bool write);
	/* Host touches @pfn through the direct map: 0, CCVM_HOST_ACCESS_CIPHERTEXT,
	 * or -EFAULT (SNP RMP fault). */
	int (*host_access)(struct ccvm_platform *p, uint64_t pfn, bool write);
	/* Bytes a host read of a private page sees instead of the plaintext. */
	void (*host_ciphertext)(struct ccvm_platform *p, uint64_t pfn, void *page);

	/*
	 * Backend-specific invariants of @vm (TDX: S-EPT, PAMT, HKID; SNP: RMP,
	 * direct map) for ccvm_vm_check_invariants(): record the first broken
	 * one in @r (see lib/invariants.c), change nothing.  Called after the
	 * core's checks passed, with slots_lock, memslots_rw and mmu_lock held
	 * for write: it must not take them.  Not counted, not injectable.
	 * Return: 0 (broken or not), or a negative errno if it could not check.
	 */
	int (*check_invariants)(struct ccvm_vm *vm, struct ccvm_invariant_report *r);
};

/*
 * ccvm_backend_register() - Add an out-of-tree backend (or a test backend)
 * to the table next to the built-in ones, so ccvm_platform_create() can
 * find it by name and the conformance suite can run it.  The table is
 * validated here.  Return: 0; -EINVAL (invalid table); -EEXIST (name
 * taken); -ENOSPC (at most 8 registered backends).
 */
int ccvm_backend_register(const struct ccvm_backend_ops *ops);

/* ---- core services for backends ---------------------------------- */

void *ccvm_platform_priv(struct ccvm_platform *p);
void *ccvm_vm_priv(struct ccvm_vm *vm);
void *ccvm_vcpu_priv(struct ccvm_vcpu *vcpu);
struct ccvm_platform *ccvm_vm_platform(const struct ccvm_vm *vm);
struct ccvm_vm *ccvm_vcpu_vm(const struct ccvm_vcpu *vcpu);
uint32_t ccvm_vm_id(const struct ccvm_vm *vm);
uint32_t ccvm_vcpu_id(const struct ccvm_vcpu *vcpu);
uint32_t ccvm_vm_gpa_bits(const struct ccvm_vm *vm);
uint32_t ccvm_platform_nr_cpus(const struct ccvm_platform *p);
uint32_t ccvm_platform_nr_keyids(const struct ccvm_platform *p);
/* Deterministic per-platform pseudo-random numbers (seeded). */
uint64_t ccvm_platform_random(struct ccvm_platform *p);

/* Call @fn for every created vCPU of @vm (stops at a nonzero return). */
int ccvm_vm_for_each_vcpu(struct ccvm_vm *vm,
			  int (*fn)(struct ccvm_vcpu *vcpu, void *ctx), void *ctx);
uint32_t ccvm_vm_nr_vcpus(const struct ccvm_vm *vm);
/*
 * Force every vCPU out of guest mode and wait for it (an IPI with
 * KVM_REQ_OUTSIDE_GUEST_MODE); counted as CCVM_EV_IPI.  Each vCPU that was
 * in the guest gets vcpu_exit.
 */
void ccvm_vm_kick_all(struct ccvm_vm *vm);
/* Block guest entry until ccvm_vm_unblock_entry() (TDX wait_for_sept_zap). */
void ccvm_vm_block_entry(struct ccvm_vm *vm);
void ccvm_vm_unblock_entry(struct ccvm_vm *vm);

/*
 * Take / drop the VM's mmu_lock for write, for backend work that must not
 * run beside faults, zaps or guest accesses (TDX's HKID release).  Never
 * from inside an op the core calls with mmu_lock held.
 */
void ccvm_vm_mmu_write_lock(struct ccvm_vm *vm);
void ccvm_vm_mmu_write_unlock(struct ccvm_vm *vm);

/* Mark @vm bugged (KVM_BUG_ON): later operations but teardown get -EIO. */
void ccvm_vm_bug(struct ccvm_vm *vm, const char *fmt, ...);
bool ccvm_vm_is_bugged(const struct ccvm_vm *vm);
/* Mark @vm dead (no more guest entry) without bugging it. */
void ccvm_vm_set_dead(struct ccvm_vm *vm);
bool ccvm_vm_is_dead(const struct ccvm_vm *vm);
bool ccvm_vm_is_finalized(const struct ccvm_vm *vm);
/*
 * During ccvm_vm_populate() on a mirror-root backend: the source page being
 * added (set_private_spte issues PAGE.ADD from it) and the populate flags;
 * NULL outside populate.
 */
const void *ccvm_vm_populate_source(struct ccvm_vm *vm, uint64_t *flags);

/* Attribute of @gfn; true if PRIVATE. */
bool ccvm_vm_gfn_is_private(struct ccvm_vm *vm, uint64_t gfn);
/* Zap [start, end) in every root (takes mmu_lock for write). */
void ccvm_vm_zap_gfn_range(struct ccvm_vm *vm, uint64_t start, uint64_t end);
/* The gmem pfn behind @gfn if allocated (no allocation): 0 or -ENOENT. */
int ccvm_vm_gfn_to_gmem_pfn(struct ccvm_vm *vm, uint64_t gfn, uint64_t *pfn);

/* Memslot accessors (for update_mem_attr). */
uint64_t ccvm_memslot_base_gfn(const struct ccvm_memslot *slot);
uint64_t ccvm_memslot_npages(const struct ccvm_memslot *slot);

/* Pin / unpin a gmem inode (keeps its pages after the file is closed). */
void ccvm_gmem_inode_get(struct ccvm_gmem_inode *inode);
void ccvm_gmem_inode_put(struct ccvm_gmem_inode *inode);

/*
 * Simulated physical memory.  Pages come zeroed.  ccvm_page_ptr() is the
 * host direct-map address of a page: the real bytes.  A page a backend
 * cannot give back (failed reclaim) is leaked with ccvm_page_leak(): never
 * reused, counted.
 */
int ccvm_page_alloc(struct ccvm_platform *p, uint64_t *pfn);
void ccvm_page_free(struct ccvm_platform *p, uint64_t pfn);
void ccvm_page_leak(struct ccvm_platform *p, uint64_t pfn);
void *ccvm_page_ptr(struct ccvm_platform *p, uint64_t pfn);
/* The page's bytes will be written: it must be cleared before reuse. */
void ccvm_page_mark_dirty(struct ccvm_platform *p, uint64_t pfn);
bool ccvm_page_is_dirty(struct ccvm_platform *p, uint64_t pfn);
/* Zero the page now (counts CCVM_EV_PAGE_CLEAR). */
void ccvm_page_clear(struct ccvm_platform *p, uint64_t pfn);
uint64_t ccvm_platform_nr_pages(const struct ccvm_platform *p);

/* Count @n occurrences of @ev for @p and @vm (may be NULL) and charge the cost. */
void ccvm_account(struct ccvm_platform *p, struct ccvm_vm *vm, enum ccvm_event ev,
		  uint64_t n);
/* Host memory the backend's model uses grew (or shrank) by @delta bytes. */
void ccvm_model_bytes(struct ccvm_platform *p, int64_t delta);
/* Charge @ns simulated nanoseconds without counting an event. */
void ccvm_account_ns(struct ccvm_platform *p, struct ccvm_vm *vm, uint64_t ns);
/* Emit a trace record of kind CCVM_TRACE_EVENT with a free-form name. */
void ccvm_trace_note(struct ccvm_platform *p, struct ccvm_vm *vm, const char *name,
		     uint64_t gfn, uint64_t arg0, int64_t ret);

/* Log through the library's log sink. */
void ccvm_log(enum ccvm_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 3)))
#endif
	;

/*
 * Fault injection (any backend): make the @nth call (1-based, 0 = every
 * call) of op @op_name fail with @err (< 0), @count times (0 = forever).
 * Only ops that return int can fail.  One rule per op; err 0 removes it.
 * Return: 0; -ENOENT (unknown op); -EINVAL (NULL platform, a void op, err > 0).
 */
int ccvm_inject_op_failure(struct ccvm_platform *p, const char *op_name,
			   uint64_t nth, int err, uint64_t count);
/* Number of op calls since platform creation, -EINVAL for an unknown op. */
int64_t ccvm_op_calls(struct ccvm_platform *p, const char *op_name);

/*
 * Inspection (debugfs-like, for tests and examples): read or write a
 * platform page through the host direct map, obeying the backend's rules
 * (TDX private: ciphertext; SNP assigned: a write is an RMP fault, -EFAULT).
 */
int ccvm_host_read_phys(struct ccvm_platform *p, uint64_t pfn, uint32_t off,
			void *buf, uint32_t len);
int ccvm_host_write_phys(struct ccvm_platform *p, uint64_t pfn, uint32_t off,
			 const void *buf, uint32_t len);
/* The pfn mapped at @gpa (with or without the shared bit) in @vm, if any. */
int ccvm_vm_lookup_mapping(struct ccvm_vm *vm, uint64_t gpa, uint64_t *pfn, int *level);

#ifdef __cplusplus
}
#endif

#endif /* CCVM_BACKEND_H */
