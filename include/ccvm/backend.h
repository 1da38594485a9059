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
 * table) and the services below.  It never calls the public API and never
 * includes the core's private headers (lib/internal.h and the rest of
 * lib/): the core's structures are opaque here, and `make check-boundary`
 * fails a backend that reaches them.
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
#include <ccvm/api.h>
#include <ccvm/ccvm.h>
#include <ccvm/sync.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CCVM_BACKEND_ABI_MAJOR	1
/* Minor 1: check_invariants.  2: the services a backend's checks and
 * conversions need (page state, gmem and mapping walks, invariant reports),
 * functions only: the ops table did not change.  3: ccvm_vcpu_guest_mode(),
 * for checks made while vCPUs run (a schedule's quiescent points).
 * 4: huge gmem folios: gmem_prepare's max_order may be non-zero,
 * gmem_invalidate gets a whole huge folio in one call,
 * ccvm_page_folio_order() and ccvm_vm_gfn_to_gmem_folio().  5: the
 * guest_accept_level op (appended) and CCVM_GUEST_NEEDS_ZAP.  6: the
 * split_private_spte op (appended) and CCVM_GUEST_NEEDS_SPLIT.
 * 7: ccvm_platform_flags() and ccvm_pamt_account() (TDX Dynamic PAMT).
 * 8: ccvm_vcpu_private_level(), for accept ops that must know the size of
 * the private leaf (SNP: PSMASH only under a 4K one). */
#define CCVM_BACKEND_ABI_MINOR	8
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
/*
 * guest_accept() / guest_accept_level() result: the backend changed what
 * backs the mapping (SNP: PSMASHed a 2M RMP entry under a 4K PVALIDATE);
 * the core zaps the 2M block of gfns around the page, faults it in again
 * (now at the smaller level) and retries, as sev_handle_rmp_fault() zaps.
 */
#define CCVM_GUEST_NEEDS_ZAP		2
/*
 * guest_accept() / guest_accept_level() result: the accept is smaller than
 * the private leaf that maps the page (TDX: a 4K TDG.MEM.PAGE.ACCEPT under
 * a PENDING 2M leaf exits to the host); the core splits that leaf into 4K
 * leaves (split_private_spte) and retries.
 */
#define CCVM_GUEST_NEEDS_SPLIT		3

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

	/*
	 * Before mapping private page @pfn at @gfn; idempotent (SNP: RMPUPDATE
	 * assigned).  @max_order (kvm_arch_gmem_prepare's order): the block of
	 * 2^max_order gfns around @gfn (gfn & ~(2^max_order - 1) on) is backed
	 * one to one, in the same order, by the block of pfns around @pfn, all
	 * in one gmem folio and inside one memslot; 0 with 4K folios, 9 or
	 * more with huge ones.  The op may prepare the whole block (SNP: a 2M
	 * RMP entry) or only the page; a later fault in the block calls it
	 * again, for its own page.
	 */
	int (*gmem_prepare)(struct ccvm_vm *vm, uint64_t pfn, uint64_t gfn, int max_order);
	/*
	 * gmem gives [pfn_start, pfn_end) back to the host: freed, converted to
	 * shared in place, or zeroed by a punch over part of a huge folio.  A
	 * huge folio freed whole comes in one call over its whole naturally
	 * aligned range (ccvm_page_folio_order() still tells its order then);
	 * other calls may cover any part of a folio.  Cannot fail.
	 */
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
	 * Guest asked to convert [gpa, gpa+size) (no shared bit): return the
	 * length in bytes (> 0, page aligned) of the first chunk to exit with,
	 * or a negative errno that the guest gets back.  The core has filled
	 * run->hypercall for the whole range and narrows args[1] to the chunk;
	 * the op may set the chunk's page size (CCVM_MAP_GPA_RANGE_PAGE_SZ_2M)
	 * in args[2].  NULL: one exit for the whole range.
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

	/*
	 * ABI minor 5.  The guest accepts the naturally aligned block of
	 * ccvm_level_pages(@level) pages at @gfn with one accept of page size
	 * @level (CCVM_LEVEL_4K or _2M: TDG.MEM.PAGE.ACCEPT's level, PVALIDATE's
	 * size).  @pfn and @map_level: the private mapping covering @gfn (its
	 * frame at @gfn, its level), UINT64_MAX and 0 when
	 * @gfn is not mapped private.  mmu_lock read held.
	 * Return: 0; CCVM_GUEST_NEEDS_FAULT (fault @gfn in, retry);
	 * CCVM_GUEST_NEEDS_ZAP (see above); -ERANGE (the page size does not
	 * match the mapping or the hardware's entry and the guest must accept at
	 * another level: TDX_PAGE_SIZE_MISMATCH, SNP FAIL_SIZEMISMATCH);
	 * -EEXIST (accepted already); another negative errno.
	 * NULL: the core accepts the block page by page through guest_accept.
	 */
	int (*guest_accept_level)(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn,
				  int map_level, int level);

	/*
	 * ABI minor 6.  Mirror root: the leaf at @gfn of @level (CCVM_LEVEL_2M;
	 * its first page @pfn) becomes a table of 4K leaves over the same
	 * pages, in the page-table page @spt_pfn (TDX: BLOCK, TRACK and the
	 * kick, DEMOTE).  The core calls it with mmu_lock held for write
	 * before it removes part of a 2M leaf (a zap of a range that does
	 * not cover the leaf) and for CCVM_GUEST_NEEDS_SPLIT; each page keeps
	 * its state (accepted or not).  On 0 the core links the table in
	 * place of the leaf; on an error nothing changed as far as the core
	 * is concerned and it removes the leaf whole (zap) or fails the
	 * accept.  NULL: a partial zap removes a 2M mirror leaf whole.
	 */
	int (*split_private_spte)(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn,
				  uint64_t spt_pfn);
};

/*
 * ccvm_backend_register() - Add an out-of-tree backend (or a test backend)
 * to the table next to the built-in ones, so ccvm_platform_create() can
 * find it by name and the conformance suite can run it.  The table is
 * validated here; the table must outlive every platform using it.
 * Context: any thread, before the platforms that use it are created.
 * Return: 0; -EINVAL (invalid table); -EEXIST (name taken); -ENOSPC (at
 * most 8 registered backends).
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	static void plain_caps(const struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
 *	{
 *		// Software protection only: 4K mappings, no shared bit, no launch.
 *		caps->private_max_level = caps->shared_max_level = CCVM_LEVEL_4K;
 *		caps->memory_attributes = CCVM_MEMORY_ATTRIBUTE_PRIVATE;
 *		caps->vm_type = 1;      // KVM_X86_SW_PROTECTED_VM
 *		caps->name = vm ? ccvm_vm_backend_name(vm) : "plain";
 *	}
 *
 *	// The table must outlive every platform that uses it: static.
 *	static const struct ccvm_backend_ops plain_ops = {
 *		.name = "plain", .get_caps = plain_caps,
 *		.abi_version = CCVM_BACKEND_ABI_VERSION, .size = sizeof(plain_ops),
 *	};
 *
 *	int main(void)
 *	{
 *		struct ccvm_platform_opts o = CCVM_OPTS_INIT(struct ccvm_platform_opts,
 *													 .backend = "plain");
 *		struct ccvm_platform *p;
 *
 *		if (ccvm_backend_register(&plain_ops)) {    // -EINVAL: a bad table
 *			fprintf(stderr, "%s\n", ccvm_last_error());
 *			return 1;
 *		}
 *		if (ccvm_backend_register(&plain_ops) != -EEXIST)  // one backend a name
 *			return 1;
 *		if (ccvm_platform_create(&o, &p))
 *			return 1;
 *		printf("platform runs \"%s\"\n", ccvm_platform_backend_name(p));
 *		return ccvm_platform_destroy(p) != 0;
 *	}
 */
CCVM_API int ccvm_backend_register(const struct ccvm_backend_ops *ops);

/*
 * ---- core services for backends ------------------------------------
 *
 * Grouped by what they reach: identity and private areas; vCPUs and guest
 * entry; VM state; attributes, memslots and gmem; the VM's mappings;
 * physical memory; accounting, tracing and logging; invariant reports;
 * fault injection and inspection.  Unless a comment says otherwise a
 * service takes no core lock but leaf locks of its own, may be called
 * from any op, and its arguments are valid handles (no NULL checks).
 */

/* ---- identity and private areas ---- */

/*
 * ccvm_platform_priv() / ccvm_vm_priv() / ccvm_vcpu_priv() - The backend's
 * private area of a platform, VM or vCPU: platform_priv_size,
 * vm_priv_size and vcpu_priv_size bytes of the ops table, allocated
 * zeroed by the core before the matching init op and freed after the
 * matching destroy op.  Each area starts on a cache line (64 bytes) and
 * shares its lines with nothing else, so members aligned to a line stay
 * apart from other CPUs' data.
 * Context: any op; no lock.
 * Return: the area (never NULL when its size is not 0).
 * Example:
 *	#include <errno.h>
 *	#include <stdatomic.h>
 *
 *	struct acme_platform { atomic_uint keys_used; };    // platform_priv_size
 *	struct acme_vm { uint32_t keyid; };                 // vm_priv_size
 *	struct acme_vcpu { uint32_t keyid; };               // vcpu_priv_size
 *
 *	// vm_init: take a key id from the platform's pool.
 *	int acme_vm_init(struct ccvm_vm *vm)
 *	{
 *		struct ccvm_platform *p = ccvm_vm_platform(vm);
 *		struct acme_platform *hw = ccvm_platform_priv(p);
 *		struct acme_vm *avm = ccvm_vm_priv(vm);     // zeroed by the core
 *		unsigned int n = atomic_fetch_add(&hw->keys_used, 1);
 *
 *		if (n >= ccvm_platform_nr_keyids(p)) {
 *			atomic_fetch_sub(&hw->keys_used, 1);
 *			return -ENOSPC;
 *		}
 *		avm->keyid = n + 1;
 *		return 0;
 *	}
 *
 *	// vcpu_create: the vCPU runs with its VM's key.
 *	int acme_vcpu_create(struct ccvm_vcpu *vcpu)
 *	{
 *		struct acme_vcpu *av = ccvm_vcpu_priv(vcpu);
 *
 *		av->keyid = ((struct acme_vm *)ccvm_vm_priv(ccvm_vcpu_vm(vcpu)))->keyid;
 *		return 0;
 *	}
 */
CCVM_API void *ccvm_platform_priv(struct ccvm_platform *p);
CCVM_API void *ccvm_vm_priv(struct ccvm_vm *vm);
CCVM_API void *ccvm_vcpu_priv(struct ccvm_vcpu *vcpu);

/*
 * ccvm_vm_platform() / ccvm_vcpu_vm() - The platform of @vm, the VM of
 * @vcpu.
 * Context: any op; no lock.
 * Return: the owner, valid as long as the object itself.
 * Example:
 *	struct acme_vcpu { uint64_t state_pfn; };
 *
 *	// vcpu_create: a state page per vCPU (as SNP's VMSA) from host memory.
 *	int acme_vcpu_create(struct ccvm_vcpu *vcpu)
 *	{
 *		struct acme_vcpu *av = ccvm_vcpu_priv(vcpu);
 *
 *		return ccvm_page_alloc(ccvm_vm_platform(ccvm_vcpu_vm(vcpu)), &av->state_pfn);
 *	}
 *
 *	// vcpu_free: at VM teardown, the page goes back.
 *	void acme_vcpu_free(struct ccvm_vcpu *vcpu)
 *	{
 *		const struct acme_vcpu *av = ccvm_vcpu_priv(vcpu);
 *
 *		ccvm_page_free(ccvm_vm_platform(ccvm_vcpu_vm(vcpu)), av->state_pfn);
 *	}
 */
CCVM_API struct ccvm_platform *ccvm_vm_platform(const struct ccvm_vm *vm);
CCVM_API struct ccvm_vm *ccvm_vcpu_vm(const struct ccvm_vcpu *vcpu);

/*
 * ccvm_vm_id() / ccvm_vcpu_id() - The number of @vm on its platform (as
 * trace records carry it; never 0) and the id the VMM gave @vcpu.
 * Context: any op; no lock.
 * Return: the id.
 * Example:
 *	#include <errno.h>
 *
 *	#define ACME_MAX_VCPUS 64
 *
 *	struct acme_vm { uint64_t entries[ACME_MAX_VCPUS]; };
 *
 *	// vcpu_enter: per-vCPU counters in the VM's area, by the VMM's vCPU id.
 *	int acme_vcpu_enter(struct ccvm_vcpu *vcpu)
 *	{
 *		struct ccvm_vm *vm = ccvm_vcpu_vm(vcpu);
 *		struct acme_vm *avm = ccvm_vm_priv(vm);
 *		uint32_t id = ccvm_vcpu_id(vcpu);
 *
 *		if (id >= ACME_MAX_VCPUS) {
 *			ccvm_vm_bug(vm, "acme: VM %u: vCPU id %u past the table", ccvm_vm_id(vm), id);
 *			return -EIO;
 *		}
 *		avm->entries[id]++;
 *		return 0;
 *	}
 */
CCVM_API uint32_t ccvm_vm_id(const struct ccvm_vm *vm);
CCVM_API uint32_t ccvm_vcpu_id(const struct ccvm_vcpu *vcpu);

/*
 * ccvm_vcpu_guest_mode() - Whether the core has @vcpu in guest mode: from
 * a successful vcpu_enter until the vcpu_exit that ends it (the vCPU's own
 * exit or a kick) has returned.  It is only ever in guest mode while a run
 * has handed it to guest code, so at rest it is false.
 * Context: any; exact at a quiescent point (check_invariants).
 * Return: true in guest mode.
 * Example:
 *	#include <stdbool.h>
 *
 *	struct acme_vcpu { bool in_guest; };   // set by vcpu_enter, cleared by vcpu_exit
 *
 *	static int check_vcpu(struct ccvm_vcpu *vcpu, void *ctx)
 *	{
 *		struct ccvm_invariant_report *r = ctx;
 *		const struct acme_vcpu *av = ccvm_vcpu_priv(vcpu);
 *
 *		ccvm_invariant_count(r, 1);
 *		if (av->in_guest != ccvm_vcpu_guest_mode(vcpu))
 *			ccvm_invariant_fail(r, 21, UINT64_MAX, UINT64_MAX,
 *								"vCPU %u: the hardware says %s guest mode",
 *								ccvm_vcpu_id(vcpu), av->in_guest ? "in" : "out of");
 *		return 0;
 *	}
 *
 *	// check_invariants: the backend's view of each vCPU agrees with the core's.
 *	int acme_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r)
 *	{
 *		return ccvm_vm_for_each_vcpu(vm, check_vcpu, r);
 *	}
 */
CCVM_API bool ccvm_vcpu_guest_mode(const struct ccvm_vcpu *vcpu);

/*
 * ccvm_vcpu_private_level() - The level of the private leaf through which
 * @vcpu's guest reaches @gfn now (CCVM_LEVEL_4K, CCVM_LEVEL_2M), 0 if no
 * private leaf maps it: the walk a guest access does, on the vCPU's own
 * root (the mirror root where the VM has one).
 * Context: mmu_lock held, read or write: inside the guest_accept and
 * guest_accept_level ops (read), or between ccvm_vm_mmu_write_lock() and
 * ccvm_vm_mmu_write_unlock(); takes no lock.
 * Return: the level, or 0 (not mapped private, @vcpu NULL, @gfn past the
 * GPA width).
 * Example:
 *	// guest_accept: a 4K accept under a larger private leaf: rebuild the
 *	// mapping at 4K first (the core zaps the 2M block and faults again).
 *	int acme_guest_accept(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn, bool mapped)
 *	{
 *		if (!mapped || pfn == UINT64_MAX)
 *			return CCVM_GUEST_NEEDS_FAULT;
 *		if (ccvm_vcpu_private_level(vcpu, gfn) > CCVM_LEVEL_4K)
 *			return CCVM_GUEST_NEEDS_ZAP;
 *		return 0;       // accepted at 4K
 *	}
 */
CCVM_API int ccvm_vcpu_private_level(struct ccvm_vcpu *vcpu, uint64_t gfn);

/*
 * ccvm_vm_gpa_bits() / ccvm_platform_nr_cpus() / ccvm_platform_nr_keyids()
 * - The VM's guest physical width (ccvm_vm_opts.gpa_bits) and the
 * platform's host CPUs and key ids (TDX HKIDs, SNP ASIDs) as created.
 * Context: any op; no lock.
 * Return: the value.
 * Example:
 *	#include <errno.h>
 *	#include <stdlib.h>
 *
 *	struct acme_hw { uint8_t *key_owner; uint64_t *cpu_flushes; };
 *
 *	// platform_init: a key table and per-CPU counters sized from the platform.
 *	int acme_platform_init(struct ccvm_platform *p)
 *	{
 *		struct acme_hw *hw = ccvm_platform_priv(p);
 *
 *		hw->key_owner = calloc(ccvm_platform_nr_keyids(p), 1);
 *		hw->cpu_flushes = calloc(ccvm_platform_nr_cpus(p), sizeof(uint64_t));
 *		if (!hw->key_owner || !hw->cpu_flushes) {
 *			free(hw->key_owner);
 *			free(hw->cpu_flushes);
 *			return -ENOMEM;
 *		}
 *		return 0;
 *	}
 *
 *	// fault_is_private: the top GPA bit selects the shared alias.
 *	int acme_fault_is_private(struct ccvm_vm *vm, uint64_t gpa)
 *	{
 *		return !(gpa & (1ull << (ccvm_vm_gpa_bits(vm) - 1)));
 *	}
 */
CCVM_API uint32_t ccvm_vm_gpa_bits(const struct ccvm_vm *vm);
CCVM_API uint32_t ccvm_platform_nr_cpus(const struct ccvm_platform *p);
CCVM_API uint32_t ccvm_platform_nr_keyids(const struct ccvm_platform *p);

/*
 * ccvm_platform_random() - The next number of the platform's pseudo-random
 * sequence, seeded with ccvm_platform_opts.seed: the source of every
 * simulated contention and key stream, so a run repeats with its seed.
 * Context: any op; takes a leaf lock.
 * Return: 64 random bits.
 * Example:
 *	#include <errno.h>
 *
 *	// vcpu_enter: the simulated hardware is busy one entry in 64; seeded, so
 *	// a run repeats with the same ccvm_platform_opts.seed.
 *	int acme_vcpu_enter(struct ccvm_vcpu *vcpu)
 *	{
 *		struct ccvm_platform *p = ccvm_vm_platform(ccvm_vcpu_vm(vcpu));
 *
 *		if ((ccvm_platform_random(p) & 63) == 0)
 *			return -EAGAIN;     // the core tries the entry again
 *		return 0;
 *	}
 */
CCVM_API uint64_t ccvm_platform_random(struct ccvm_platform *p);

/*
 * ccvm_platform_backend_name() / ccvm_vm_backend_name() - The name of the
 * backend (its ops table's name) that runs @p / @vm, so a backend's
 * exported helpers can refuse a handle of another backend.
 * Context: any thread; no lock.
 * Return: a static string, never NULL.
 * Example:
 *	#include <errno.h>
 *	#include <string.h>
 *
 *	struct acme_vm { uint32_t keyid; };
 *
 *	// A helper the backend exports to its tests: refuse another backend's VM
 *	// (its private area has another layout).
 *	int acme_vm_keyid(struct ccvm_vm *vm, uint32_t *keyid)
 *	{
 *		if (strcmp(ccvm_vm_backend_name(vm), "acme"))
 *			return -EINVAL;
 *		*keyid = ((const struct acme_vm *)ccvm_vm_priv(vm))->keyid;
 *		return 0;
 *	}
 */
CCVM_API const char *ccvm_platform_backend_name(const struct ccvm_platform *p);
CCVM_API const char *ccvm_vm_backend_name(const struct ccvm_vm *vm);

/* ---- vCPUs and guest entry ---- */

/*
 * ccvm_vm_for_each_vcpu() / ccvm_vm_nr_vcpus() - Call @fn(vcpu, @ctx) for
 * every vCPU of @vm created so far, in creation order, stopping at a
 * nonzero return; the number of created vCPUs.
 * Context: any op; no lock (the list only grows, and a vCPU lives until
 * VM teardown).
 * Return: 0 after every vCPU, or the nonzero value @fn stopped with; the
 * count.
 * Example:
 *	#include <stdbool.h>
 *
 *	struct acme_vcpu { bool initialized; };
 *
 *	static int init_vcpu(struct ccvm_vcpu *vcpu, void *ctx)
 *	{
 *		struct acme_vcpu *av = ccvm_vcpu_priv(vcpu);
 *
 *		++*(uint32_t *)ctx;
 *		av->initialized = true;
 *		return 0;
 *	}
 *
 *	// vm_finalize: every vCPU created so far gets its initial state.
 *	int acme_vm_finalize(struct ccvm_vm *vm)
 *	{
 *		uint32_t done = 0;
 *		int err = ccvm_vm_for_each_vcpu(vm, init_vcpu, &done);
 *
 *		ccvm_log(CCVM_LOG_DEBUG, "acme: VM %u: %u of %u vCPUs initialized",
 *				 ccvm_vm_id(vm), done, ccvm_vm_nr_vcpus(vm));
 *		return err;
 *	}
 */
CCVM_API int ccvm_vm_for_each_vcpu(struct ccvm_vm *vm,
				   int (*fn)(struct ccvm_vcpu *vcpu, void *ctx), void *ctx);
CCVM_API uint32_t ccvm_vm_nr_vcpus(const struct ccvm_vm *vm);

/*
 * ccvm_vm_kick_all() - Force every vCPU out of guest mode and wait for it
 * (an IPI with KVM_REQ_OUTSIDE_GUEST_MODE); counted as CCVM_EV_IPI.  Each
 * vCPU that was in the guest gets vcpu_exit.
 * Context: an op that may sleep, not on a vCPU's own guest path.
 * Return: nothing.
 * Example:
 *	// update_mem_attr (may sleep): the hardware's translation cache is
 *	// tagged per VM; after a change, kick every vCPU out so none keeps using
 *	// a stale entry, and count the flush.
 *	int acme_update_mem_attr(struct ccvm_vm *vm, struct ccvm_memslot *slot,
 *							 uint64_t attrs, uint64_t start, uint64_t end)
 *	{
 *		(void)slot;
 *		(void)attrs;
 *		if (start == end)
 *			return 0;
 *		ccvm_account(ccvm_vm_platform(vm), vm, CCVM_EV_TLB_FLUSH, 1);
 *		ccvm_vm_kick_all(vm);   // each vCPU in the guest gets vcpu_exit
 *		return 0;
 *	}
 */
CCVM_API void ccvm_vm_kick_all(struct ccvm_vm *vm);

/*
 * ccvm_vm_block_entry() / ccvm_vm_unblock_entry() - Hold off guest entry
 * of every vCPU of @vm until the matching unblock (TDX's
 * wait_for_sept_zap): a run waits before vcpu_enter meanwhile.  Calls
 * nest (a counter).
 * Context: any op; pair each block with one unblock.
 * Return: nothing.
 * Example:
 *	#include <errno.h>
 *
 *	int acme_hw_remove(struct ccvm_vm *vm, uint64_t gfn, int level);  // the hardware model
 *
 *	// remove_private_spte: a vCPU in the guest can hold the entry (busy):
 *	// keep every vCPU out, kick them, try once more (TDX's wait_for_sept_zap).
 *	int acme_remove_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
 *	{
 *		int err = acme_hw_remove(vm, gfn, level);
 *
 *		(void)pfn;
 *		if (err == -EBUSY) {
 *			ccvm_vm_block_entry(vm);
 *			ccvm_vm_kick_all(vm);
 *			err = acme_hw_remove(vm, gfn, level);
 *			ccvm_vm_unblock_entry(vm);
 *		}
 *		return err;
 *	}
 */
CCVM_API void ccvm_vm_block_entry(struct ccvm_vm *vm);
CCVM_API void ccvm_vm_unblock_entry(struct ccvm_vm *vm);

/* ---- VM state ---- */

/*
 * ccvm_vm_mmu_write_lock() / ccvm_vm_mmu_write_unlock() - Take / drop the
 * VM's mmu_lock for write, for backend work that must not run beside
 * faults, zaps or guest accesses (TDX's HKID release).
 * Context: never from inside an op the core calls with mmu_lock held.
 * Return: nothing.
 * Example:
 *	static int count_private(const struct ccvm_mmu_entry *e, void *ctx)
 *	{
 *		if (e->leaf && e->is_private)
 *			++*(uint64_t *)ctx;
 *		return 0;
 *	}
 *
 *	// A helper the backend exports to its tests: private leaves mapped now.
 *	uint64_t acme_nr_private_leaves(struct ccvm_vm *vm)
 *	{
 *		uint64_t n = 0;
 *
 *		ccvm_vm_mmu_write_lock(vm);     // no fault or zap changes a root meanwhile
 *		ccvm_vm_for_each_mapping(vm, CCVM_ROOT_ALL, count_private, &n);
 *		ccvm_vm_mmu_write_unlock(vm);
 *		return n;
 *	}
 */
CCVM_API void ccvm_vm_mmu_write_lock(struct ccvm_vm *vm);
CCVM_API void ccvm_vm_mmu_write_unlock(struct ccvm_vm *vm);

/*
 * ccvm_vm_bug() / ccvm_vm_is_bugged() - Mark @vm bugged (KVM_BUG_ON), with
 * a printf-style reason logged as a warning: from then on every operation
 * on it but teardown gets -EIO and no vCPU enters; whether it is.
 * Context: any op, any lock held.
 * Return: nothing; true once bugged.
 * Example:
 *	#include <errno.h>
 *
 *	// set_private_spte: an install the hardware cannot do means the model and
 *	// the core disagree; there is no recovery: bug the VM (KVM_BUG_ON).
 *	int acme_set_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
 *	{
 *		if (ccvm_vm_is_bugged(vm))
 *			return -EIO;
 *		if (level != CCVM_LEVEL_4K) {
 *			ccvm_vm_bug(vm, "acme: gfn %#llx pfn %#llx: level %d not supported",
 *						(unsigned long long)gfn, (unsigned long long)pfn, level);
 *			return -EIO;        // every later call on the VM gets -EIO too
 *		}
 *		return 0;
 *	}
 */
CCVM_API void ccvm_vm_bug(struct ccvm_vm *vm, const char *fmt, ...);
CCVM_API bool ccvm_vm_is_bugged(const struct ccvm_vm *vm);

/*
 * ccvm_vm_set_dead() / ccvm_vm_is_dead() - Mark @vm dead (no more guest
 * entry; runs fail with -EIO) without bugging it, as a terminated TD;
 * whether it is.
 * Context: any op.
 * Return: nothing; true once dead.
 * Example:
 *	#include <errno.h>
 *	#include <stdbool.h>
 *
 *	struct acme_vm { bool key_released; };
 *
 *	// vm_terminate: release the key now; the VM is dead, not bugged, so its
 *	// teardown runs as usual.
 *	int acme_vm_terminate(struct ccvm_vm *vm)
 *	{
 *		struct acme_vm *avm = ccvm_vm_priv(vm);
 *
 *		if (ccvm_vm_is_dead(vm))
 *			return -EINVAL;
 *		ccvm_vm_mmu_write_lock(vm);     // no removal runs beside the release
 *		avm->key_released = true;
 *		ccvm_vm_mmu_write_unlock(vm);
 *		ccvm_account(ccvm_vm_platform(vm), vm, CCVM_EV_KEYID_FREE, 1);
 *		ccvm_vm_set_dead(vm);           // later runs get -EIO
 *		return 0;
 *	}
 */
CCVM_API void ccvm_vm_set_dead(struct ccvm_vm *vm);
CCVM_API bool ccvm_vm_is_dead(const struct ccvm_vm *vm);

/*
 * ccvm_vm_study_knob() - The value of study knob @knob of @vm (enum
 * ccvm_study_knob in ccvm.h).  A backend reads the knobs it lists in
 * caps.study_knobs where the behaviour they select runs.
 * Context: any op; no lock.
 * Return: the value; 0 (what upstream merged) for an unknown knob.
 * Example:
 *	#include <errno.h>
 *
 *	int acme_hw_remove(struct ccvm_vm *vm, uint64_t gfn, int level);  // the hardware model
 *
 *	// remove_private_spte: what a busy answer leads to depends on study 003
 *	// (the backend lists CCVM_STUDY_TDX_BUSY in caps.study_knobs).
 *	int acme_remove_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
 *	{
 *		uint32_t policy = ccvm_vm_study_knob(vm, CCVM_STUDY_TDX_BUSY);
 *		unsigned int tries = policy == CCVM_TDX_BUSY_SPIN ? CCVM_TDX_BUSY_SPIN_MAX : 1;
 *		int err;
 *
 *		(void)pfn;
 *		do
 *			err = acme_hw_remove(vm, gfn, level);
 *		while (err == -EBUSY && --tries);
 *		return err;
 *	}
 */
CCVM_API uint32_t ccvm_vm_study_knob(const struct ccvm_vm *vm, unsigned int knob);

/*
 * ccvm_vm_is_finalized() - Whether ccvm_vm_finalize() succeeded on @vm.
 * Context: any op; no lock.
 * Return: true after finalize.
 * Example:
 *	// max_mapping_level: launch pages are added 4K at a time; after finalize
 *	// private memory may be mapped as large as the caps allow.
 *	int acme_max_mapping_level(struct ccvm_vm *vm, uint64_t pfn, bool is_private)
 *	{
 *		(void)pfn;
 *		if (is_private && !ccvm_vm_is_finalized(vm))
 *			return CCVM_LEVEL_4K;
 *		return 0;       // no limit here
 *	}
 */
CCVM_API bool ccvm_vm_is_finalized(const struct ccvm_vm *vm);

/*
 * ccvm_vm_populate_source() - During ccvm_vm_populate() on a mirror-root
 * backend: the source page being added (set_private_spte issues PAGE.ADD
 * from it) and, in *@flags, the populate flags.
 * Context: set_private_spte, inside populate.
 * Return: the page; NULL outside populate.
 * Example:
 *	#include <string.h>
 *
 *	struct acme_vm { uint64_t measurement; };
 *
 *	// set_private_spte: inside ccvm_vm_populate() copy the source page in
 *	// (PAGE.ADD) and, if asked, extend the launch measurement with it.
 *	int acme_set_private_spte(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t pfn)
 *	{
 *		struct ccvm_platform *p = ccvm_vm_platform(vm);
 *		struct acme_vm *avm = ccvm_vm_priv(vm);
 *		uint64_t flags;
 *		const unsigned char *src = ccvm_vm_populate_source(vm, &flags);
 *
 *		(void)gfn;
 *		(void)level;
 *		if (!src)
 *			return 0;       // a fault at run time: nothing to copy
 *		ccvm_page_mark_dirty(p, pfn);
 *		memcpy(ccvm_page_ptr(p, pfn), src, CCVM_PAGE_SIZE);
 *		for (size_t i = 0; (flags & CCVM_POPULATE_MEASURE) && i < CCVM_PAGE_SIZE; i++)
 *			avm->measurement = (avm->measurement ^ src[i]) * 0x100000001b3ull;
 *		return 0;
 *	}
 */
CCVM_API const void *ccvm_vm_populate_source(struct ccvm_vm *vm, uint64_t *flags);

/* ---- attributes, memslots and gmem ---- */

/*
 * ccvm_vm_gfn_is_private() - Whether the attribute store says @gfn is
 * PRIVATE.
 * Context: any op; takes the attribute lock for read.
 * Return: true for a private gfn.
 * Example:
 *	#include <errno.h>
 *	#include <stdbool.h>
 *
 *	// guest_access: this hardware raises #VC when the guest touches, through
 *	// the shared alias, a gfn the attributes say is private.
 *	int acme_guest_access(struct ccvm_vcpu *vcpu, uint64_t gfn, uint64_t pfn,
 *						  bool is_private, bool write)
 *	{
 *		(void)pfn;
 *		(void)write;
 *		if (!is_private && ccvm_vm_gfn_is_private(ccvm_vcpu_vm(vcpu), gfn))
 *			return -EACCES;
 *		return 0;
 *	}
 */
CCVM_API bool ccvm_vm_gfn_is_private(struct ccvm_vm *vm, uint64_t gfn);

/*
 * ccvm_vm_zap_gfn_range() - Remove every mapping of gfns [@start, @end) in
 * every root of @vm, private ones through the mirror ops.
 * Context: an op called without mmu_lock; takes mmu_lock for write.
 * Return: nothing.
 * Example:
 *	// update_mem_attr: the hardware keeps 2M entries; a change that does not
 *	// cover a whole one drops every mapping of the 2M ranges it touches, which
 *	// then fault back at 4K.
 *	int acme_update_mem_attr(struct ccvm_vm *vm, struct ccvm_memslot *slot,
 *							 uint64_t attrs, uint64_t start, uint64_t end)
 *	{
 *		uint64_t first = start & ~511ull, last = (end + 511) & ~511ull;
 *
 *		(void)slot;
 *		(void)attrs;
 *		if (first != start || last != end)
 *			ccvm_vm_zap_gfn_range(vm, first, last);     // takes mmu_lock itself
 *		return 0;
 *	}
 */
CCVM_API void ccvm_vm_zap_gfn_range(struct ccvm_vm *vm, uint64_t start, uint64_t end);

/*
 * ccvm_vm_gfn_to_gmem_pfn() - The gmem page behind @gfn, if its memslot
 * has a live gmem binding and the page is allocated: nothing is allocated.
 * Context: any op called without memslots_rw held for write; takes it for
 * read.
 * Return: 0 with *@pfn set; -ENOENT (no memslot, no gmem, or a hole).
 * Example:
 *	#include <string.h>
 *
 *	// A helper the backend exports to its tests: the first 8 bytes the
 *	// hardware holds for a private gfn (looking allocates nothing).
 *	int acme_peek_private(struct ccvm_vm *vm, uint64_t gfn, uint64_t *val)
 *	{
 *		uint64_t pfn;
 *		int err = ccvm_vm_gfn_to_gmem_pfn(vm, gfn, &pfn);
 *
 *		if (err)
 *			return err;     // -ENOENT: no memslot, no gmem, or a hole
 *		memcpy(val, ccvm_page_ptr(ccvm_vm_platform(vm), pfn), sizeof(*val));
 *		return 0;
 *	}
 */
CCVM_API int ccvm_vm_gfn_to_gmem_pfn(struct ccvm_vm *vm, uint64_t gfn, uint64_t *pfn);

/*
 * ccvm_vm_gfn_to_gmem_folio() - As ccvm_vm_gfn_to_gmem_pfn(), with the
 * mapping order gmem allows at @gfn: the order of the folio holding the
 * page, lowered until the naturally aligned block of gfns around @gfn
 * maps one to one onto the folio's pfns (memslot base_gfn and file offset
 * co-aligned) and lies inside the memslot: the max_order gmem_prepare
 * gets.  The mapping level the core then uses is further capped by the
 * slot's hugepage tracking (mixed attributes, alignment) and by the
 * backend's max_mapping_level.  Nothing is allocated.
 * Context: any op called without memslots_rw held for write; takes it for
 * read, and the file's page lock.
 * Return: 0 with *@pfn and *@order (may be NULL) set; -ENOENT (no memslot,
 * no gmem, or a hole); -EINVAL (NULL @vm or @pfn).
 * Example:
 *	#include <stdbool.h>
 *
 *	// A helper the backend exports to its tests: may a fault at @gfn map a
 *	// 2M page, as far as gmem is concerned (max_mapping_level and the
 *	// attributes may still say no)?
 *	bool acme_gfn_can_map_2m(struct ccvm_vm *vm, uint64_t gfn)
 *	{
 *		uint64_t pfn;
 *		int order;
 *
 *		if (ccvm_vm_gfn_to_gmem_folio(vm, gfn, &pfn, &order))
 *			return false;   // -ENOENT: no memslot, no gmem, or a hole
 *		return order >= CCVM_FOLIO_ORDER_2M;
 *	}
 */
CCVM_API int ccvm_vm_gfn_to_gmem_folio(struct ccvm_vm *vm, uint64_t gfn, uint64_t *pfn,
				       int *order);

/*
 * ccvm_memslot_base_gfn() / ccvm_memslot_npages() - The first gfn and the
 * size in pages of @slot (for update_mem_attr).
 * Context: slots_lock held (update_mem_attr).
 * Return: the value.
 * Example:
 *	// update_mem_attr: charge one hardware update per page of the change
 *	// that lies inside this slot.
 *	int acme_update_mem_attr(struct ccvm_vm *vm, struct ccvm_memslot *slot,
 *							 uint64_t attrs, uint64_t start, uint64_t end)
 *	{
 *		uint64_t base = ccvm_memslot_base_gfn(slot);
 *		uint64_t limit = base + ccvm_memslot_npages(slot);
 *		uint64_t s = start > base ? start : base;
 *		uint64_t e = end < limit ? end : limit;
 *
 *		(void)attrs;
 *		if (s < e)
 *			ccvm_account(ccvm_vm_platform(vm), vm, CCVM_EV_RMPUPDATE, e - s);
 *		return 0;
 *	}
 */
CCVM_API uint64_t ccvm_memslot_base_gfn(const struct ccvm_memslot *slot);
CCVM_API uint64_t ccvm_memslot_npages(const struct ccvm_memslot *slot);
/*
 * ccvm_memslot_has_gmem() - Whether @slot is a gmem slot whose file is
 * still bound (not released).  Context: slots_lock held (update_mem_attr),
 * which keeps the answer true until the op returns.
 * Return: true for a live gmem binding, false for a plain slot or a
 * released file.
 * Example:
 *	// update_mem_attr: a plain slot, or one whose file was released, has no
 *	// private pages for the hardware to change.
 *	int acme_update_mem_attr(struct ccvm_vm *vm, struct ccvm_memslot *slot,
 *							 uint64_t attrs, uint64_t start, uint64_t end)
 *	{
 *		if (!ccvm_memslot_has_gmem(slot))
 *			return 0;
 *		ccvm_log(CCVM_LOG_DEBUG, "acme: VM %u: gfns [%#llx, %#llx) now %s",
 *				 ccvm_vm_id(vm), (unsigned long long)start, (unsigned long long)end,
 *				 attrs & CCVM_MEMORY_ATTRIBUTE_PRIVATE ? "private" : "shared");
 *		return 0;
 *	}
 */
CCVM_API bool ccvm_memslot_has_gmem(const struct ccvm_memslot *slot);

/*
 * Called for one allocated gmem page: @gfn of the slot, @pfn behind it.
 * Return: how many gfns from @gfn on the callback dealt with (0 or 1: this
 * page; more when it handled a larger unit such as a 2M RMP entry), the
 * walk resuming after them; or a negative errno that ends the walk.
 */
typedef int (*ccvm_gmem_gfn_fn)(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn, void *ctx);
/*
 * ccvm_memslot_for_each_gmem_pfn() - Call @fn for every gfn of [@start,
 * @end) inside @slot whose gmem page is already allocated, in gfn order;
 * nothing is allocated and holes are skipped.  The file's invalidate lock
 * is held for read across the walk, as a gmem fault holds it, so no punch
 * and no release can free a page while @fn works on it; faults may
 * allocate pages meanwhile (those behind the walk's position are not
 * visited).
 * Context: slots_lock held (update_mem_attr), no other core lock.  @fn is
 * called with the invalidate lock only: it may sleep and take backend locks
 * that gmem_prepare also takes, and must not punch, release or change
 * memslots.
 * Return: 0 once the range is walked (also for a slot without a live gmem
 * binding, or an empty range); the negative errno @fn returned; -EINVAL
 * (NULL @slot or @fn).
 * Example:
 *	struct acme_hw { uint8_t *assigned; };  // one byte a page
 *
 *	static int set_owner(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn, void *ctx)
 *	{
 *		struct ccvm_platform *p = ccvm_vm_platform(vm);
 *		struct acme_hw *hw = ccvm_platform_priv(p);
 *
 *		(void)gfn;
 *		hw->assigned[pfn] = *(const uint8_t *)ctx;
 *		ccvm_account(p, vm, CCVM_EV_RMPUPDATE, 1);
 *		return 1;   // dealt with this one page
 *	}
 *
 *	// update_mem_attr: the pages gmem holds follow the change at once.
 *	int acme_update_mem_attr(struct ccvm_vm *vm, struct ccvm_memslot *slot,
 *							 uint64_t attrs, uint64_t start, uint64_t end)
 *	{
 *		uint8_t assigned = (attrs & CCVM_MEMORY_ATTRIBUTE_PRIVATE) != 0;
 *
 *		return ccvm_memslot_for_each_gmem_pfn(vm, slot, start, end, set_owner, &assigned);
 *	}
 */
CCVM_API int ccvm_memslot_for_each_gmem_pfn(struct ccvm_vm *vm, struct ccvm_memslot *slot,
					    uint64_t start, uint64_t end, ccvm_gmem_gfn_fn fn,
					    void *ctx);

/*
 * Called for one page cached by a gmem file: its page @index in the file
 * and its @pfn.  Return: 0 to go on, nonzero to stop the walk.
 */
typedef int (*ccvm_gmem_page_fn)(uint64_t index, uint64_t pfn, void *ctx);
/*
 * ccvm_vm_for_each_gmem_file_pfn() - Call @fn for every page cached by
 * every open gmem file of @vm, whatever binds it now (a page stays cached
 * across unbinding and rebinding), file by file in index order.
 * Context: slots_lock held (check_invariants), which keeps the file list
 * still.  @fn runs under the file's page lock, a leaf: it must not call a
 * core service that takes a lock.
 * Return: 0, or the nonzero value @fn stopped the walk with.
 * Example:
 *	struct acme_hw { const uint8_t *assigned; };   // one byte a page
 *
 *	struct walk {
 *		const struct acme_hw *hw;
 *		struct ccvm_invariant_report *r;
 *	};
 *
 *	static int page_ok(uint64_t index, uint64_t pfn, void *ctx)
 *	{
 *		struct walk *w = ctx;
 *
 *		ccvm_invariant_count(w->r, 1);
 *		if (w->hw->assigned[pfn] > 1)   // no core service here: a leaf lock is held
 *			ccvm_invariant_fail(w->r, 23, UINT64_MAX, pfn, "gmem page %llu: owner %u",
 *								(unsigned long long)index, w->hw->assigned[pfn]);
 *		return ccvm_invariant_failed(w->r);
 *	}
 *
 *	// check_invariants: every page a gmem file caches has a sane hardware entry.
 *	int acme_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r)
 *	{
 *		struct walk w = { ccvm_platform_priv(ccvm_vm_platform(vm)), r };
 *
 *		ccvm_vm_for_each_gmem_file_pfn(vm, page_ok, &w);
 *		return 0;
 *	}
 */
CCVM_API int ccvm_vm_for_each_gmem_file_pfn(struct ccvm_vm *vm, ccvm_gmem_page_fn fn, void *ctx);

/*
 * ccvm_gmem_inode_get() / ccvm_gmem_inode_put() - Pin / unpin a gmem
 * inode: a pinned inode keeps its pages (and mappings) after its file is
 * released, as gmem_defer_removal asks; the last put frees them.
 * Context: get: gmem_defer_removal or later with a pin held; put: any op,
 * without the inode's locks.
 * Return: nothing.
 * Example:
 *	#define ACME_MAX_DEFERRED 64
 *
 *	struct acme_vm {
 *		struct ccvm_gmem_inode *deferred[ACME_MAX_DEFERRED];
 *		unsigned int nr_deferred;
 *	};
 *
 *	// gmem_defer_removal: keep the pages of at most 64 released files mapped
 *	// until teardown; the rest are removed now.
 *	int acme_gmem_defer_removal(struct ccvm_vm *vm, struct ccvm_gmem_inode *inode)
 *	{
 *		struct acme_vm *avm = ccvm_vm_priv(vm);
 *
 *		if (avm->nr_deferred == ACME_MAX_DEFERRED)
 *			return 0;
 *		ccvm_gmem_inode_get(inode);
 *		avm->deferred[avm->nr_deferred++] = inode;
 *		return 1;
 *	}
 *
 *	// vm_destroy: every root is zapped by now; the last put frees the pages.
 *	void acme_vm_destroy(struct ccvm_vm *vm)
 *	{
 *		struct acme_vm *avm = ccvm_vm_priv(vm);
 *
 *		while (avm->nr_deferred)
 *			ccvm_gmem_inode_put(avm->deferred[--avm->nr_deferred]);
 *	}
 */
CCVM_API void ccvm_gmem_inode_get(struct ccvm_gmem_inode *inode);
CCVM_API void ccvm_gmem_inode_put(struct ccvm_gmem_inode *inode);

/*
 * ccvm_platform_nr_gmem_inodes() - The gmem inodes alive on @p: open
 * files and pinned inodes (what keeps ccvm_platform_destroy() at -EBUSY).
 * Context: any thread; takes a leaf lock.
 * Return: the count.
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// A teardown test of the backend: once the VMM closed everything, no
 *	// inode may stay pinned by a deferred removal (platform destroy would
 *	// say -EBUSY).
 *	int acme_expect_no_inodes(struct ccvm_platform *p)
 *	{
 *		uint64_t n = ccvm_platform_nr_gmem_inodes(p);
 *
 *		if (n)
 *			fprintf(stderr, "%llu gmem inode(s) still alive\n", (unsigned long long)n);
 *		return n ? -EBUSY : 0;
 *	}
 */
CCVM_API uint64_t ccvm_platform_nr_gmem_inodes(struct ccvm_platform *p);

/* ---- the VM's mappings ---- */

/*
 * One present (or frozen) entry of a TDP root, as the mapping walk reports
 * it.  Tables come before the entries below them.  Produced by the core and
 * only read by backends: fields may be appended, never reordered.
 */
struct ccvm_mmu_entry {
	uint64_t gfn;		/* first gfn the entry covers, without the shared bit */
	int level;		/* level of the entry: CCVM_LEVEL_4K for a 4K leaf */
	bool leaf;		/* a mapping; else a table (or frozen) */
	bool frozen;		/* SPTE_FROZEN: a mirror install in flight */
	bool is_private;	/* leaf: a gmem pfn mapped as private memory */
	bool host;		/* leaf: frame is a page of the VMM's shared buffer */
	bool mirror;		/* the entry is in a mirror root (else a direct one) */
	uint64_t frame;		/* leaf: frame of its first page; table: the child's
				 * external (S-EPT) page, UINT64_MAX if none */
	uint64_t parent_ext;	/* external page of the table holding the entry,
				 * UINT64_MAX for a root table or a direct root */
};

/* Which roots a mapping walk visits. */
#define CCVM_ROOT_DIRECT	(1u << 0)
#define CCVM_ROOT_MIRROR	(1u << 1)
#define CCVM_ROOT_ALL		(CCVM_ROOT_DIRECT | CCVM_ROOT_MIRROR)

typedef int (*ccvm_mapping_fn)(const struct ccvm_mmu_entry *e, void *ctx);
/*
 * ccvm_vm_for_each_mapping() - Call @fn for every present or frozen entry
 * of every root of @vm of the kinds in @roots (valid and invalid roots
 * alike), root by root, each in gfn order.
 * Context: mmu_lock held, read or write: inside an op the core calls with
 * it (check_invariants holds it for write), or between
 * ccvm_vm_mmu_write_lock() and ccvm_vm_mmu_write_unlock().  @fn must not
 * take mmu_lock nor change a root.
 * Return: 0 after every entry; the first nonzero value of @fn, which ends
 * the walk; -EINVAL (NULL @fn, or @roots names no root kind).
 * Example:
 *	struct leaf_check {
 *		struct ccvm_platform *p;
 *		struct ccvm_invariant_report *r;
 *	};
 *
 *	static int leaf_ok(const struct ccvm_mmu_entry *e, void *ctx)
 *	{
 *		struct leaf_check *c = ctx;
 *
 *		if (!e->leaf || e->host)    // tables, and pages of the VMM's buffer
 *			return 0;
 *		ccvm_invariant_count(c->r, 1);
 *		if (!ccvm_page_is_allocated(c->p, e->frame)) {
 *			ccvm_invariant_fail(c->r, 5, e->gfn, e->frame, "%s leaf on a free page",
 *								e->mirror ? "mirror" : "direct");
 *			return 1;       // ends the walk
 *		}
 *		return 0;
 *	}
 *
 *	// check_invariants (mmu_lock held for write): no mapping of a freed page.
 *	int acme_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r)
 *	{
 *		struct leaf_check c = { ccvm_vm_platform(vm), r };
 *		int ret = ccvm_vm_for_each_mapping(vm, CCVM_ROOT_ALL, leaf_ok, &c);
 *
 *		return ret < 0 ? ret : 0;
 *	}
 */
CCVM_API int ccvm_vm_for_each_mapping(struct ccvm_vm *vm, unsigned int roots, ccvm_mapping_fn fn,
				      void *ctx);

/* ---- physical memory ---- */

/*
 * ccvm_page_alloc() / ccvm_page_free() / ccvm_page_leak() - Simulated
 * physical memory.  Pages come zeroed.  A page a backend cannot give back
 * (failed reclaim) is leaked with ccvm_page_leak(): never reused, counted
 * (CCVM_EV_PAGE_LEAK, stats.leaked_pages).
 * Context: any op; take the allocator's lock (a leaf).
 * Return: alloc: 0 with *@pfn set, -ENOMEM when simulated RAM is
 * exhausted; free and leak: nothing.
 * Example:
 *	struct acme_vm { uint64_t ctl_pfn; };
 *
 *	int acme_hw_reclaim(struct ccvm_platform *p, uint64_t pfn);   // the hardware model
 *
 *	// vm_init: one control page per VM.
 *	int acme_vm_init(struct ccvm_vm *vm)
 *	{
 *		struct acme_vm *avm = ccvm_vm_priv(vm);
 *
 *		return ccvm_page_alloc(ccvm_vm_platform(vm), &avm->ctl_pfn);     // -ENOMEM
 *	}
 *
 *	// vm_destroy: a page the hardware will not give back is leaked, not freed.
 *	void acme_vm_destroy(struct ccvm_vm *vm)
 *	{
 *		struct ccvm_platform *p = ccvm_vm_platform(vm);
 *		struct acme_vm *avm = ccvm_vm_priv(vm);
 *
 *		if (acme_hw_reclaim(p, avm->ctl_pfn) == 0)
 *			ccvm_page_free(p, avm->ctl_pfn);
 *		else
 *			ccvm_page_leak(p, avm->ctl_pfn);    // never reused, counted
 *	}
 */
CCVM_API int ccvm_page_alloc(struct ccvm_platform *p, uint64_t *pfn);
CCVM_API void ccvm_page_free(struct ccvm_platform *p, uint64_t pfn);
CCVM_API void ccvm_page_leak(struct ccvm_platform *p, uint64_t pfn);

/*
 * ccvm_table_map() / ccvm_table_unmap() - Memory for a table with an
 * entry per simulated page (TDX's PAMT, SNP's RMP): @bytes of zeroes,
 * reserved but not committed, made resident 2 MiB at a time on first touch
 * where the host has transparent huge pages (such tables fill densely, and
 * one host fault per 2 MiB instead of 512 is most of their cost).
 * Context: any thread; no lock.
 * Return: map: the table, NULL when the address space is exhausted;
 * unmap: nothing (NULL @table is ignored).
 * Example:
 *	#include <errno.h>
 *
 *	struct acme_hw {
 *		uint16_t *owner;    // one entry a page: the owning VM's id, 0 = host
 *		size_t bytes;
 *	};
 *
 *	// platform_init: the table costs host memory only where it is touched.
 *	int acme_platform_init(struct ccvm_platform *p)
 *	{
 *		struct acme_hw *hw = ccvm_platform_priv(p);
 *
 *		hw->bytes = ccvm_platform_nr_pages(p) * sizeof(*hw->owner);
 *		hw->owner = ccvm_table_map(hw->bytes);
 *		return hw->owner ? 0 : -ENOMEM;
 *	}
 *
 *	void acme_platform_destroy(struct ccvm_platform *p)
 *	{
 *		struct acme_hw *hw = ccvm_platform_priv(p);
 *
 *		ccvm_table_unmap(hw->owner, hw->bytes);
 *	}
 */
CCVM_API void *ccvm_table_map(size_t bytes);
CCVM_API void ccvm_table_unmap(void *table, size_t bytes);

/*
 * ccvm_page_ptr() - The host direct-map address of page @pfn: its real
 * bytes, CCVM_PAGE_SIZE of them.
 * Context: any op; no lock.
 * Return: the address (@pfn must be a page of @p).
 * Example:
 *	struct acme_hw { uint64_t key; };
 *
 *	// host_ciphertext: what a host read of a private page sees: the bytes
 *	// mixed with a per-platform key stream.
 *	void acme_host_ciphertext(struct ccvm_platform *p, uint64_t pfn, void *page)
 *	{
 *		const struct acme_hw *hw = ccvm_platform_priv(p);
 *		const uint64_t *plain = ccvm_page_ptr(p, pfn);
 *		uint64_t *out = page;
 *
 *		for (size_t i = 0; i < CCVM_PAGE_SIZE / sizeof(uint64_t); i++)
 *			out[i] = plain[i] ^ (hw->key + i) * 0x9e3779b97f4a7c15ull;
 *	}
 */
CCVM_API void *ccvm_page_ptr(struct ccvm_platform *p, uint64_t pfn);

/*
 * ccvm_page_mark_dirty() / ccvm_page_is_dirty() - Note that the page's
 * bytes will be written, so it must be cleared before reuse (the
 * allocator clears only dirty pages); whether it is so marked.
 * Context: any op; lock-free.
 * Return: nothing; true for a dirty page.
 * Example:
 *	#include <string.h>
 *
 *	// populate (a backend without a mirror root): copy the launch data in;
 *	// the page is marked first, so that the allocator clears it before reuse.
 *	int acme_populate(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn,
 *					  const void *src, uint64_t flags)
 *	{
 *		struct ccvm_platform *p = ccvm_vm_platform(vm);
 *
 *		(void)gfn;
 *		(void)flags;
 *		if (!ccvm_page_is_dirty(p, pfn))
 *			ccvm_page_mark_dirty(p, pfn);
 *		memcpy(ccvm_page_ptr(p, pfn), src, CCVM_PAGE_SIZE);
 *		return 0;
 *	}
 */
CCVM_API void ccvm_page_mark_dirty(struct ccvm_platform *p, uint64_t pfn);
CCVM_API bool ccvm_page_is_dirty(struct ccvm_platform *p, uint64_t pfn);
/*
 * ccvm_page_is_allocated() / ccvm_page_is_leaked() - The allocator's state
 * of @pfn: handed out by ccvm_page_alloc() and not freed since; leaked with
 * ccvm_page_leak() (a leaked page also stays allocated, forever).
 * Context: any thread, lock-free; exact while nothing allocates, frees or
 * leaks that page (as inside check_invariants).
 * Return: the state; false for pfn 0 and pfns past the platform.
 * Example:
 *	struct acme_vm { uint64_t ctl_pfn; };
 *
 *	// check_invariants: the VM's control page is still its own.
 *	int acme_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r)
 *	{
 *		struct ccvm_platform *p = ccvm_vm_platform(vm);
 *		uint64_t pfn = ((const struct acme_vm *)ccvm_vm_priv(vm))->ctl_pfn;
 *
 *		ccvm_invariant_count(r, 1);
 *		if (!ccvm_page_is_allocated(p, pfn))
 *			ccvm_invariant_fail(r, 18, UINT64_MAX, pfn, "control page freed under a live VM");
 *		else if (ccvm_page_is_leaked(p, pfn))
 *			ccvm_invariant_fail(r, 17, UINT64_MAX, pfn, "control page leaked, VM not bugged");
 *		return 0;
 *	}
 */
CCVM_API bool ccvm_page_is_allocated(struct ccvm_platform *p, uint64_t pfn);
CCVM_API bool ccvm_page_is_leaked(struct ccvm_platform *p, uint64_t pfn);
/*
 * ccvm_platform_pfn_limit() - The lowest pfn the allocator never handed
 * out: every pfn from there on has always been free, so a walk over the
 * pages anyone may own ends there.  It only grows.
 * Context: any thread; takes the allocator's lock (a leaf).
 * Return: a pfn in [1, ccvm_platform_nr_pages()].
 * Example:
 *	struct acme_hw { const uint8_t *assigned; };   // one byte a page
 *
 *	// A helper the backend exports to its tests: pages the hardware still
 *	// marks assigned; pages from the limit on were never handed out.
 *	uint64_t acme_nr_assigned(struct ccvm_platform *p)
 *	{
 *		const struct acme_hw *hw = ccvm_platform_priv(p);
 *		uint64_t n = 0, limit = ccvm_platform_pfn_limit(p);
 *
 *		for (uint64_t pfn = 1; pfn < limit; pfn++)
 *			n += hw->assigned[pfn] != 0;
 *		return n;
 *	}
 */
CCVM_API uint64_t ccvm_platform_pfn_limit(struct ccvm_platform *p);
/*
 * ccvm_page_folio_order() - The order of the gmem folio page @pfn belongs
 * to: CCVM_FOLIO_ORDER_2M or CCVM_FOLIO_ORDER_1G for a page of a whole
 * huge folio (allocated as one naturally aligned block: pfn &
 * ~(2^order - 1) is its first page), 0 for a 4K folio, a page of a split
 * folio, or a page gmem does not hold.  A split sets the pages' order to 0
 * before the conversion that caused it returns; a merge sets it back.
 * Context: any op; lock-free; exact while gmem does not allocate, split,
 * merge or free that folio (its invalidate lock held, as in gmem_prepare,
 * gmem_invalidate and the mirror ops under an invalidation).
 * Return: the order; 0 for pfns outside the platform.
 * Example:
 *	// gmem_invalidate: pages of a whole huge folio were assigned with one
 *	// large hardware entry; freeing part of one splits that entry first
 *	// (once), then the pages go back one by one.
 *	void acme_gmem_invalidate(struct ccvm_platform *p, uint64_t pfn_start, uint64_t pfn_end)
 *	{
 *		uint64_t smashed = UINT64_MAX;
 *
 *		for (uint64_t pfn = pfn_start; pfn < pfn_end; ) {
 *			uint64_t n = 1ull << ccvm_page_folio_order(p, pfn);
 *			uint64_t head = pfn & ~(n - 1);
 *
 *			if (n > 1 && (head != pfn || pfn + n > pfn_end)) {
 *				if (head != smashed)
 *					ccvm_account(p, NULL, CCVM_EV_PSMASH, 1);
 *				smashed = head;
 *				n = 1;
 *			}
 *			ccvm_account(p, NULL, CCVM_EV_RMPUPDATE, 1);   // back to the host
 *			pfn += n;
 *		}
 *	}
 */
CCVM_API int ccvm_page_folio_order(struct ccvm_platform *p, uint64_t pfn);

/*
 * ccvm_page_clear() - Zero page @pfn now (TDX's MOVDIR64B before reuse),
 * counted as CCVM_EV_PAGE_CLEAR.
 * Context: any op; lock-free.
 * Return: nothing.
 * Example:
 *	struct acme_hw { uint8_t *assigned; };  // one byte a page
 *
 *	// gmem_invalidate: freed private pages go back to the host, zeroed first
 *	// so that no guest data survives in them.
 *	void acme_gmem_invalidate(struct ccvm_platform *p, uint64_t pfn_start, uint64_t pfn_end)
 *	{
 *		struct acme_hw *hw = ccvm_platform_priv(p);
 *
 *		for (uint64_t pfn = pfn_start; pfn < pfn_end; pfn++) {
 *			if (!hw->assigned[pfn])
 *				continue;
 *			ccvm_page_clear(p, pfn);    // counted as CCVM_EV_PAGE_CLEAR
 *			hw->assigned[pfn] = 0;
 *		}
 *	}
 */
CCVM_API void ccvm_page_clear(struct ccvm_platform *p, uint64_t pfn);

/*
 * ccvm_platform_nr_pages() - The platform's simulated RAM in pages
 * (ccvm_platform_opts.mem_bytes / 4096).
 * Context: any thread; no lock.
 * Return: the count.
 * Example:
 *	#include <errno.h>
 *	#include <stdbool.h>
 *
 *	struct acme_hw { const uint8_t *assigned; };   // one byte a page
 *
 *	// host_access: a host write to a page assigned to a guest is refused.
 *	int acme_host_access(struct ccvm_platform *p, uint64_t pfn, bool write)
 *	{
 *		const struct acme_hw *hw = ccvm_platform_priv(p);
 *
 *		if (pfn >= ccvm_platform_nr_pages(p))
 *			return -EFAULT;
 *		if (write && hw->assigned[pfn]) {
 *			ccvm_account(p, NULL, CCVM_EV_RMP_FAULT, 1);
 *			return -EFAULT;
 *		}
 *		return 0;
 *	}
 */
CCVM_API uint64_t ccvm_platform_nr_pages(const struct ccvm_platform *p);

/* ---- accounting, tracing and logging ---- */

/*
 * ccvm_account() - Count @n occurrences of event @ev for @p and @vm (may
 * be NULL) and charge the cost model's time for them to the simulated
 * clock; a trace record is emitted.
 * Context: any op; lock-free (the trace sink takes its own lock).
 * Return: nothing.
 * Example:
 *	struct acme_hw { uint8_t *assigned; };  // one byte a page
 *
 *	// gmem_prepare: assign the page(s) to the guest; each hardware step is
 *	// counted and charged to the simulated clock.
 *	int acme_gmem_prepare(struct ccvm_vm *vm, uint64_t pfn, uint64_t gfn, int max_order)
 *	{
 *		struct ccvm_platform *p = ccvm_vm_platform(vm);
 *		struct acme_hw *hw = ccvm_platform_priv(p);
 *		uint64_t n = 1ull << max_order;
 *
 *		(void)gfn;
 *		for (uint64_t i = 0; i < n; i++)
 *			hw->assigned[pfn + i] = 1;
 *		ccvm_account(p, vm, CCVM_EV_RMPUPDATE, n);
 *		return 0;
 *	}
 */
CCVM_API void ccvm_account(struct ccvm_platform *p, struct ccvm_vm *vm, enum ccvm_event ev,
			   uint64_t n);

/*
 * ccvm_model_bytes() - Note that the host memory the backend's model uses
 * grew (or, negative, shrank) by @delta bytes (stats.model_bytes).
 * Context: any op; lock-free.
 * Return: nothing.
 * Example:
 *	#include <errno.h>
 *	#include <stdlib.h>
 *
 *	struct acme_vm {
 *		uint64_t *shadow;   // one entry a GiB of guest physical space
 *		size_t bytes;
 *	};
 *
 *	// vm_init: host memory the model itself uses shows in stats.model_bytes.
 *	int acme_vm_init(struct ccvm_vm *vm)
 *	{
 *		struct acme_vm *avm = ccvm_vm_priv(vm);
 *
 *		avm->bytes = (1ull << (ccvm_vm_gpa_bits(vm) - 30)) * sizeof(uint64_t);
 *		avm->shadow = calloc(1, avm->bytes);
 *		if (!avm->shadow)
 *			return -ENOMEM;
 *		ccvm_model_bytes(ccvm_vm_platform(vm), (int64_t)avm->bytes);
 *		return 0;
 *	}
 *
 *	void acme_vm_destroy(struct ccvm_vm *vm)
 *	{
 *		struct acme_vm *avm = ccvm_vm_priv(vm);
 *
 *		ccvm_model_bytes(ccvm_vm_platform(vm), -(int64_t)avm->bytes);
 *		free(avm->shadow);
 *	}
 */
CCVM_API void ccvm_model_bytes(struct ccvm_platform *p, int64_t delta);

/*
 * ccvm_platform_flags() - The CCVM_PLATFORM_* flags @p was created with
 * (ccvm_platform_opts.flags), e.g. CCVM_PLATFORM_TDX_DYNAMIC_PAMT for the
 * tdx backend.
 * Context: any thread; no lock.
 * Return: the flags.
 * Example:
 *	#include <stdbool.h>
 *
 *	// platform_init: a backend option the VMM chose at platform creation.
 *	bool acme_wants_dynamic_metadata(struct ccvm_platform *p)
 *	{
 *		return (ccvm_platform_flags(p) & CCVM_PLATFORM_TDX_DYNAMIC_PAMT) != 0;
 *	}
 */
CCVM_API uint64_t ccvm_platform_flags(const struct ccvm_platform *p);

/*
 * ccvm_pamt_account() - Note that the host gave the firmware (TDX Dynamic
 * PAMT) @pairs more page pairs, @bytes bytes in all, or took them back
 * (negative): ccvm_stats.pamt_pairs and pamt_bytes of the platform.  The
 * pages themselves come from ccvm_page_alloc() and go back with
 * ccvm_page_free() as any page.
 * Context: any thread; no lock.
 * Return: nothing.
 * Example:
 *	#include <errno.h>
 *
 *	// Two host pages handed to the firmware as one metadata pair, then back.
 *	int acme_pair_add(struct ccvm_platform *p, uint64_t pair[2])
 *	{
 *		if (ccvm_page_alloc(p, &pair[0]))
 *			return -ENOMEM;
 *		if (ccvm_page_alloc(p, &pair[1])) {
 *			ccvm_page_free(p, pair[0]);
 *			return -ENOMEM;
 *		}
 *		ccvm_pamt_account(p, 1, 2 * CCVM_PAGE_SIZE);
 *		return 0;
 *	}
 *
 *	void acme_pair_remove(struct ccvm_platform *p, const uint64_t pair[2])
 *	{
 *		ccvm_page_free(p, pair[0]);
 *		ccvm_page_free(p, pair[1]);
 *		ccvm_pamt_account(p, -1, -2 * (int64_t)CCVM_PAGE_SIZE);
 *	}
 */
CCVM_API void ccvm_pamt_account(struct ccvm_platform *p, int64_t pairs, int64_t bytes);

/*
 * ccvm_account_ns() - Charge @ns simulated nanoseconds to @p (and @vm, may
 * be NULL) without counting an event.
 * Context: any op; lock-free.
 * Return: nothing.
 * Example:
 *	// vcpu_exit: leaving the guest costs more the more vCPUs share the key
 *	// (no event of its own: only time).
 *	void acme_vcpu_exit(struct ccvm_vcpu *vcpu)
 *	{
 *		struct ccvm_vm *vm = ccvm_vcpu_vm(vcpu);
 *
 *		ccvm_account_ns(ccvm_vm_platform(vm), vm, 200 + 20ull * ccvm_vm_nr_vcpus(vm));
 *	}
 */
CCVM_API void ccvm_account_ns(struct ccvm_platform *p, struct ccvm_vm *vm, uint64_t ns);

/*
 * ccvm_trace_note() - Emit a trace record of kind CCVM_TRACE_EVENT named
 * @name (a static string) about @gfn (~0: none), with @arg0 and @ret.
 * Context: any op; takes the trace lock (a leaf).
 * Return: nothing.
 * Example:
 *	#include <stdbool.h>
 *
 *	// handle_exit_hypercall: at most one 2M-aligned 2M chunk per exit, each
 *	// noted in the trace with its size.
 *	int64_t acme_handle_exit_hypercall(struct ccvm_vcpu *vcpu, uint64_t gpa, uint64_t size,
 *									   bool to_private, struct ccvm_run *run)
 *	{
 *		struct ccvm_vm *vm = ccvm_vcpu_vm(vcpu);
 *		uint64_t room = CCVM_HPAGE_2M_SIZE - (gpa & (CCVM_HPAGE_2M_SIZE - 1));
 *		uint64_t chunk = size < room ? size : room;
 *
 *		if (chunk == CCVM_HPAGE_2M_SIZE)
 *			run->hypercall.args[2] |= CCVM_MAP_GPA_RANGE_PAGE_SZ_2M;
 *		ccvm_trace_note(ccvm_vm_platform(vm), vm, "acme.page_state_change",
 *						gpa >> CCVM_PAGE_SHIFT, chunk, to_private);
 *		return (int64_t)chunk;
 *	}
 */
CCVM_API void ccvm_trace_note(struct ccvm_platform *p, struct ccvm_vm *vm, const char *name,
			      uint64_t gfn, uint64_t arg0, int64_t ret);

/*
 * ccvm_log() - Log a printf-style message at @level through the library's
 * log sink (ccvm_set_log()).
 * Context: any op; takes the log lock (a leaf).
 * Return: nothing.
 * Example:
 *	#include <errno.h>
 *	#include <stdatomic.h>
 *
 *	struct acme_vm { atomic_uint nr_tables, max_tables; };
 *
 *	// link_private_spt: the hardware has a fixed number of table pages per
 *	// VM; a refusal says why at debug level (and in ccvm_last_error()).
 *	int acme_link_private_spt(struct ccvm_vm *vm, uint64_t gfn, int level, uint64_t spt_pfn)
 *	{
 *		struct acme_vm *avm = ccvm_vm_priv(vm);
 *		unsigned int max = atomic_load(&avm->max_tables);
 *
 *		(void)spt_pfn;
 *		if (atomic_fetch_add(&avm->nr_tables, 1) >= max) {
 *			atomic_fetch_sub(&avm->nr_tables, 1);
 *			ccvm_log(CCVM_LOG_DEBUG, "acme: VM %u: no table left for gfn %#llx level %d (%u in use)",
 *					 ccvm_vm_id(vm), (unsigned long long)gfn, level, max);
 *			return -ENOSPC;
 *		}
 *		return 0;
 *	}
 */
CCVM_API void ccvm_log(enum ccvm_log_level level, const char *fmt, ...)
	 #if defined(__GNUC__)
		 __attribute__((format(printf, 2, 3)))
	 #endif
		 ;

/* ---- invariant reports (for check_invariants) ---- */

/*
 * ccvm_invariant_fail() - Record that invariant @invariant (1..38) is
 * broken at @gfn / @pfn (UINT64_MAX: none) with a printf-style message.
 * Only the first failure of a report is kept: later calls change nothing,
 * so a check may go on or stop as it likes.
 * Context: any; touches only @r.
 * Return: nothing.
 * Example:
 *	struct acme_hw { const uint16_t *owner; };  // VM id a page, 0 = host
 *
 *	struct owner_check {
 *		uint32_t vm_id;
 *		const struct acme_hw *hw;
 *		struct ccvm_invariant_report *r;
 *	};
 *
 *	static int owned(struct ccvm_vm *vm, uint64_t gfn, uint64_t pfn, void *ctx)
 *	{
 *		struct owner_check *c = ctx;
 *
 *		(void)vm;
 *		if (c->hw->owner[pfn] != c->vm_id)
 *			ccvm_invariant_fail(c->r, 23, gfn, pfn, "private page owned by VM %u, not %u",
 *								c->hw->owner[pfn], c->vm_id);
 *		return 1;   // later failures are ignored: the first one is kept
 *	}
 *
 *	// update_mem_attr of a checking build: after the change the pages gmem
 *	// holds for this slot belong to this VM.
 *	int acme_check_slot(struct ccvm_vm *vm, struct ccvm_memslot *slot,
 *						struct ccvm_invariant_report *r)
 *	{
 *		struct owner_check c = { ccvm_vm_id(vm), ccvm_platform_priv(ccvm_vm_platform(vm)), r };
 *		uint64_t base = ccvm_memslot_base_gfn(slot);
 *
 *		return ccvm_memslot_for_each_gmem_pfn(vm, slot, base, base + ccvm_memslot_npages(slot),
 *											  owned, &c);
 *	}
 */
CCVM_API void ccvm_invariant_fail(struct ccvm_invariant_report *r, unsigned int invariant,
				  uint64_t gfn, uint64_t pfn, const char *fmt, ...)
	 #if defined(__GNUC__)
		 __attribute__((format(printf, 5, 6)))
	 #endif
		 ;
/*
 * ccvm_invariant_count() / ccvm_invariant_failed() - Add @n to the
 * report's count of individual checks done (r->nr_checks); whether a
 * failure is recorded in @r (r->invariant != 0).
 * Context: any; touches only @r.
 * Return: nothing; true once a failure is recorded.
 * Example:
 *	struct acme_hw { uint32_t keys_in_use, nr_keys; };
 *
 *	// check_invariants: one check per rule the backend knows, counted even
 *	// when it holds; stop at the first failure.
 *	int acme_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r)
 *	{
 *		const struct acme_hw *hw = ccvm_platform_priv(ccvm_vm_platform(vm));
 *
 *		ccvm_invariant_count(r, 1);
 *		if (hw->keys_in_use == 0 || hw->keys_in_use > hw->nr_keys)
 *			ccvm_invariant_fail(r, 14, UINT64_MAX, UINT64_MAX, "%u of %u keys in use",
 *								hw->keys_in_use, hw->nr_keys);
 *		if (ccvm_invariant_failed(r))
 *			return 0;
 *		ccvm_invariant_count(r, 1);
 *		if (ccvm_vm_is_bugged(vm) && !ccvm_vm_is_dead(vm))
 *			ccvm_invariant_fail(r, 27, UINT64_MAX, UINT64_MAX, "bugged VM not dead");
 *		return 0;
 *	}
 */
CCVM_API void ccvm_invariant_count(struct ccvm_invariant_report *r, uint64_t n);
CCVM_API bool ccvm_invariant_failed(const struct ccvm_invariant_report *r);

/* ---- fault injection and inspection ---- */

/*
 * ccvm_inject_op_failure() - Fault injection (any backend): make the @nth
 * call (1-based, 0 = every call) of op @op_name fail with @err (< 0),
 * @count times (0 = forever).
 * Only counted ops that return an errno can fail: not the void ones, nor
 * host_access and check_invariants, which the core calls uncounted.  One
 * rule per op; err 0 removes it.
 * Context: any thread; takes a leaf lock.
 * Return: 0; -ENOENT (unknown op); -EINVAL (NULL platform, an op that
 * cannot fail, err > 0).
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// A test: the second vm_init fails with -ENOSPC, once; the first VM is
 *	// unharmed and the third creation works again.
 *	int main(void)
 *	{
 *		struct ccvm_platform *p;
 *		struct ccvm_vm *a = NULL, *b = NULL, *c = NULL;
 *		int err;
 *
 *		if (ccvm_platform_create(NULL, &p) ||
 *			ccvm_inject_op_failure(p, "vm_init", 2, -ENOSPC, 1))
 *			return 1;
 *		err = ccvm_vm_create(p, NULL, &a);
 *		if (!err)
 *			err = ccvm_vm_create(p, NULL, &b) == -ENOSPC ? 0 : -1;
 *		if (!err)
 *			err = ccvm_vm_create(p, NULL, &c);
 *		printf("vm_init: %lld calls\n", (long long)ccvm_op_calls(p, "vm_init"));
 *		ccvm_vm_close(a);
 *		ccvm_vm_close(c);
 *		ccvm_platform_destroy(p);
 *		return err != 0;
 *	}
 */
CCVM_API int ccvm_inject_op_failure(struct ccvm_platform *p, const char *op_name,
				    uint64_t nth, int err, uint64_t count);
/*
 * ccvm_op_calls() - How many times op @op_name was called on @p since the
 * platform was created.
 * Context: any thread; lock-free.
 * Return: the count; -EINVAL (NULL @p, unknown op).
 * Example:
 *	// How many private pages reached the backend's gmem_prepare during
 *	// @work (a test's expectation: one per first private touch).
 *	int64_t prepares_during(struct ccvm_platform *p, int (*work)(struct ccvm_platform *))
 *	{
 *		int64_t before = ccvm_op_calls(p, "gmem_prepare");
 *
 *		if (before < 0 || work(p))
 *			return -1;
 *		return ccvm_op_calls(p, "gmem_prepare") - before;
 *	}
 */
CCVM_API int64_t ccvm_op_calls(struct ccvm_platform *p, const char *op_name);

/*
 * ccvm_host_read_phys() / ccvm_host_write_phys() - Inspection (debugfs
 * like, for tests and examples): read or write @len bytes at @off of
 * platform page @pfn through the host direct map, obeying the backend's
 * rules (TDX private: ciphertext; SNP assigned: a write is an RMP fault).
 * Context: any thread; no core lock (the backend's host_access may take
 * its own).
 * Return: 0; -EINVAL (NULL argument, pfn out of range, @off + @len past
 * the page); -EFAULT (the backend refused the access: SNP RMP fault).
 * Example:
 *	#include <errno.h>
 *
 *	// A test of the host's view of a private page (its pfn from
 *	// ccvm_vm_lookup_mapping()): SNP refuses the write (an RMP fault), TDX
 *	// reads ciphertext, mock the plaintext.
 *	int host_pokes(struct ccvm_platform *p, uint64_t pfn, uint64_t *seen)
 *	{
 *		uint64_t junk = 0xdead;
 *		int err = ccvm_host_write_phys(p, pfn, 0, &junk, sizeof(junk));
 *
 *		if (err && err != -EFAULT)
 *			return err;
 *		return ccvm_host_read_phys(p, pfn, 0, seen, sizeof(*seen));
 *	}
 */
CCVM_API int ccvm_host_read_phys(struct ccvm_platform *p, uint64_t pfn, uint32_t off,
				 void *buf, uint32_t len);
CCVM_API int ccvm_host_write_phys(struct ccvm_platform *p, uint64_t pfn, uint32_t off,
				  const void *buf, uint32_t len);
/*
 * ccvm_vm_lookup_mapping() - The pfn and level mapped at @gpa in @vm
 * (each output may be NULL): with the shared bit the shared mapping,
 * without it the private one where the backend has a shared bit.  A page
 * of the VMM's own shared buffer has no pfn: *@pfn reads UINT64_MAX.
 * Context: any thread, not under mmu_lock; takes mmu_lock for read.
 * Return: 0 with the outputs set; -ENOENT (nothing mapped, or @gpa past
 * the GPA width); -EINVAL (NULL @vm).
 * Example:
 *	#include <errno.h>
 *	#include <stdio.h>
 *
 *	// Where did the guest's private page at @gpa land, and at what size?
 *	int print_mapping(struct ccvm_vm *vm, uint64_t gpa)
 *	{
 *		uint64_t pfn;
 *		int level;
 *		int err = ccvm_vm_lookup_mapping(vm, gpa, &pfn, &level);
 *
 *		if (err == -ENOENT)
 *			printf("%#llx: not mapped\n", (unsigned long long)gpa);
 *		else if (!err)
 *			printf("%#llx: pfn %#llx, %s\n", (unsigned long long)gpa, (unsigned long long)pfn,
 *				   level == CCVM_LEVEL_2M ? "2M" : "4K");
 *		return err;
 *	}
 */
CCVM_API int ccvm_vm_lookup_mapping(struct ccvm_vm *vm, uint64_t gpa, uint64_t *pfn, int *level);

#ifdef __cplusplus
}
#endif

#endif /* CCVM_BACKEND_H */
