/* SPDX-License-Identifier: MIT */
/*
 * The guest side: what guest code calls, on its vCPU's guest thread.
 *
 * An access goes page by page, as the CPU's page walk does: in guest mode,
 * translate through the vCPU's roots and ask the backend whether the guest
 * may touch the page (guest_access: TDX #VE on a pending page, SNP
 * validated bit), then copy the bytes.  Like a CPU's load, it takes no
 * lock (free-running): a conversion or a zap elsewhere in the VM does not
 * stall it.  It announces itself instead (vcpu->access_seq odd while in
 * flight), and whoever removes a translation waits for the accesses in
 * flight before freeing what it led to: the TLB shootdown
 * (ccvm_vm_sync_guest_accesses(), and a kick).  On a serial platform the
 * access holds mmu_lock read instead, so the explorer's schedules, which
 * see every lock, stay those of the lock's protocol.  A miss is a TDP
 * fault (a VM exit handled in the kernel): the fault path maps the page, or
 * asks to retry, or needs the VMM (a memory-fault or MMIO exit); then the
 * access runs again, which is how a CPU re-executes the faulting
 * instruction.  Only the VMM's own exits return to ccvm_vcpu_run().
 *
 * Everything here is only legal on the calling guest's own thread; a
 * guest context used from anywhere else is -EINVAL.
 */
#include <stdio.h>
#include <string.h>

#include "backend-call.h"

#define MMIO_MAX_BYTES	8	/* one MMIO exit carries at most this much */

/*
 * Guest memory accesses are a CPU's loads and stores: two vCPUs may write
 * one page at the same time, and that is the guest's business, not a data
 * race in the library.  So the copy between the guest's buffer and guest
 * memory is made of relaxed atomic loads and stores (8 bytes at a time
 * where both sides are aligned, which is what a plain mov is on x86), and
 * ThreadSanitizer sees each of them as an atomic access: vCPUs racing on a
 * page are not reported, while a VMM that writes guest memory with plain
 * stores behind a running guest's back still is.
 */
static void guest_copy(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	if ((((uintptr_t)d | (uintptr_t)s) & 7) == 0) {
		for (; n >= 8; n -= 8, d += 8, s += 8)
			__atomic_store_n((uint64_t *)(void *)d,
					 __atomic_load_n((const uint64_t *)(const void *)s,
							 __ATOMIC_RELAXED),
					 __ATOMIC_RELAXED);
	}
	for (; n; n--, d++, s++)
		__atomic_store_n(d, __atomic_load_n(s, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
}

static struct ccvm_vcpu *guest_vcpu(struct ccvm_guest *g)
{
	if (!g || g != ccvm_guest_current())
		return NULL;
	return g->vcpu;
}

uint32_t ccvm_guest_vcpu_id(const struct ccvm_guest *g)
{
	return g ? g->vcpu->id : UINT32_MAX;
}

uint64_t ccvm_guest_shared_bit(const struct ccvm_guest *g)
{
	return g ? g->vcpu->vm->shared_bit : 0;
}

/* [gpa, gpa + len) without wrap and inside the guest physical width. */
static bool gpa_range_ok(const struct ccvm_vm *vm, uint64_t gpa, uint64_t len)
{
	uint64_t last;

	if (!len || len - 1 > UINT64_MAX - gpa)
		return false;
	last = gpa + len - 1;
	return vm->gpa_bits >= 64 || !(last >> vm->gpa_bits);
}

/* ---- faults ------------------------------------------------------------------ */

enum fault_outcome {
	FAULT_AGAIN,	/* execute the access again */
	FAULT_MMIO,	/* no memslot: emulate it through the VMM */
};

/*
 * The access at @gpa missed: a TDP fault, which is a VM exit (EPT violation
 * / NPF), so the vCPU leaves guest mode.  The fault path retries by itself;
 * *@tries is the access's budget for it, so that an access faulting again
 * and again without completing ends the run with an internal error
 * (-EBUSY) instead of hanging, and faults again after the next run.
 */
static enum fault_outcome guest_fault(struct ccvm_guest *g, uint64_t gpa, bool write,
				      unsigned int *tries)
{
	struct ccvm_vcpu *v = g->vcpu;
	struct ccvm_run *run = &v->run;
	struct ccvm_fault_exit e = { .reason = CCVM_EXIT_UNKNOWN };
	int r;

	ccvm_vcpu_leave_guest(v);
	r = ccvm_fault_in(v, gpa, write, &e, tries);
	if (r == 0)
		return FAULT_AGAIN;
	if (r == CCVM_PF_EXIT && e.reason == CCVM_EXIT_MMIO)
		return FAULT_MMIO;
	if (e.reason == CCVM_EXIT_MEMORY_FAULT) {
		/* As KVM: -EFAULT, or gmem's own error with the exit filled. */
		memset(&run->memory_fault, 0, sizeof(run->memory_fault));
		run->exit_reason = CCVM_EXIT_MEMORY_FAULT;
		run->memory_fault.flags = e.flags;
		run->memory_fault.gpa = e.gpa;
		run->memory_fault.size = e.size;
		ccvm_guest_exit(g, r == CCVM_PF_EXIT ? -EFAULT : r);
		return FAULT_AGAIN;
	}
	ccvm_guest_exit_error(g, r < 0 ? r : -EIO);
	return FAULT_AGAIN;
}

/* One MMIO exit of at most 8 bytes; reads get what the VMM put in data. */
static size_t guest_mmio(struct ccvm_guest *g, uint64_t gpa, uint8_t *rbuf,
			 const uint8_t *wbuf, size_t n)
{
	struct ccvm_vcpu *v = g->vcpu;
	struct ccvm_run *run = &v->run;
	size_t len = n < MMIO_MAX_BYTES ? n : MMIO_MAX_BYTES;

	memset(&run->mmio, 0, sizeof(run->mmio));
	run->exit_reason = CCVM_EXIT_MMIO;
	run->mmio.phys_addr = gpa & ~v->vm->shared_bit;
	run->mmio.len = (uint32_t)len;
	run->mmio.is_write = wbuf != NULL;
	if (wbuf)
		memcpy(run->mmio.data, wbuf, len);
	ccvm_guest_exit(g, 0);
	if (rbuf)
		memcpy(rbuf, run->mmio.data, len);
	return len;
}

/* #VE (TDX) / #VC (SNP): reported to the VMM, then to the guest code. */
static void guest_exception(struct ccvm_guest *g, uint64_t gpa)
{
	struct ccvm_vcpu *v = g->vcpu;
	struct ccvm_run *run = &v->run;

	memset(&run->exception, 0, sizeof(run->exception));
	run->exit_reason = CCVM_EXIT_EXCEPTION;
	run->exception.vector = v->vm->caps.has_mirror_root ? CCVM_X86_VE_VECTOR
							    : CCVM_X86_VC_VECTOR;
	run->exception.gpa = gpa;
	ccvm_guest_exit(g, 0);
}

/*
 * Take mmu_lock read in guest mode.  A kick (or a terminate) between the
 * entry and the lock took the vCPU out again: enter again.
 */
static void guest_lock_in_guest_mode(struct ccvm_guest *g)
{
	struct ccvm_vcpu *v = g->vcpu;
	struct ccvm_vm *vm = v->vm;

	for (;;) {
		ccvm_guest_enter(g);
		v->mmu_shard = ccvm_brlock_rdlock(&vm->mmu_lock);
		if (ccvm_likely(ccvm_vcpu_in_guest(v) && !ccvm_vm_is_dead(vm)))
			return;
		ccvm_brlock_rdunlock(&vm->mmu_lock, v->mmu_shard);
		ccvm_vcpu_leave_guest(v);
	}
}

/*
 * Open an access in guest mode: under mmu_lock read on a serial platform;
 * free-running, by making vcpu->access_seq odd.  The store and the mode
 * check after it are sequentially consistent: a kick (compare-exchange of
 * the mode, then a read of the count) either finds this access and waits
 * for it, or is seen here, and the access goes round to enter again.
 */
static void access_begin(struct ccvm_guest *g)
{
	struct ccvm_vcpu *v = g->vcpu;
	struct ccvm_vm *vm = v->vm;
	uint64_t seq;

	if (!ccvm_vm_lockless_access(vm)) {
		guest_lock_in_guest_mode(g);
		return;
	}
	seq = atomic_load_explicit(&v->access_seq, memory_order_relaxed);
	for (;;) {
		ccvm_guest_enter(g);
		atomic_store_explicit(&v->access_seq, seq + 1, memory_order_seq_cst);
		if (ccvm_likely(atomic_load_explicit(&v->in_guest, memory_order_seq_cst) ==
				CCVM_VCPU_IN && !ccvm_vm_is_dead(vm)))
			return;
		seq += 2;
		atomic_store_explicit(&v->access_seq, seq, memory_order_release);
		ccvm_vcpu_leave_guest(v);
	}
}

/* Close the access access_begin() opened: release what it read to a waiter. */
static void access_end(struct ccvm_vcpu *v)
{
	struct ccvm_vm *vm = v->vm;

	if (!ccvm_vm_lockless_access(vm)) {
		ccvm_brlock_rdunlock(&vm->mmu_lock, v->mmu_shard);
		return;
	}
	atomic_store_explicit(&v->access_seq,
			      atomic_load_explicit(&v->access_seq, memory_order_relaxed) + 1,
			      memory_order_release);
}

/* ---- read and write ---------------------------------------------------------- */

/*
 * Access @n bytes at @gpa, all inside one page.  Return: bytes done (@n,
 * or at most 8 for MMIO) or -EACCES.
 */
static int64_t access_page(struct ccvm_guest *g, uint64_t gpa, uint8_t *rbuf,
			   const uint8_t *wbuf, size_t n)
{
	struct ccvm_vcpu *v = g->vcpu;
	struct ccvm_vm *vm = v->vm;
	uint64_t gfn = (gpa & ~vm->shared_bit) >> CCVM_PAGE_SHIFT;
	uint64_t off = gpa & (CCVM_PAGE_SIZE - 1);
	bool write = wbuf != NULL;
	unsigned int tries = 0;
	struct ccvm_xlate x;
	int r;

	for (;;) {
		access_begin(g);
		/* The access itself: the guest's own step against faults and zaps. */
		ccvm_sched_point(ccvm_sched_of(vm->p), CCVM_SCHED_HW(ccvm_sched_of(vm->p)),
				 "guest access");
		if (ccvm_mmu_translate(v, gpa, &x)) {
			access_end(v);
			goto fault;
		}
		r = ccvm_op_guest_access(v, gfn, x.pfn, x.is_private, write);
		if (r == 0) {
			if (write) {
				/* Marked first: the mark's locked instruction then does
				 * not wait for a store to a page not yet in the cache. */
				if (x.pfn != CCVM_NO_PFN)
					ccvm_page_mark_dirty(vm->p, x.pfn);
				guest_copy(x.hva + off, wbuf, n);
			} else {
				guest_copy(rbuf, x.hva + off, n);
			}
			access_end(v);
			ccvm_account(vm->p, vm, CCVM_EV_GUEST_ACCESS, 1);
			return (int64_t)n;
		}
		access_end(v);
		if (r == -EACCES) {
			guest_exception(g, gpa);
			return -EACCES;
		}
		if (r != CCVM_GUEST_NEEDS_FAULT) {
			ccvm_guest_exit_error(g, r < 0 ? r : -EIO);
			continue;
		}
		/*
		 * A nested fault (SNP RMP #NPF): drop the mapping, fault again.
		 * While a conversion owns the page this repeats until it lands:
		 * back off as the other busy loops do, so that it can.
		 */
		ccvm_sched_yield(ccvm_sched_of(vm->p), "nested fault");
		ccvm_vm_zap_gfn_range(vm, gfn, gfn + 1);
fault:
		if (guest_fault(g, gpa, write, &tries) == FAULT_MMIO)
			return (int64_t)guest_mmio(g, gpa, rbuf, wbuf, n);
	}
}

static int guest_rw(struct ccvm_guest *g, uint64_t gpa, uint8_t *rbuf,
		    const uint8_t *wbuf, size_t len)
{
	struct ccvm_vcpu *v = guest_vcpu(g);
	uint64_t done = 0;

	if (!v)
		return -EINVAL;
	if (!len)
		return 0;
	if ((!rbuf && !wbuf) || !gpa_range_ok(v->vm, gpa, len))
		return -EINVAL;
	while (done < len) {
		uint64_t cur = gpa + done;
		uint64_t room = CCVM_PAGE_SIZE - (cur & (CCVM_PAGE_SIZE - 1));
		size_t n = len - done < room ? len - done : room;
		int64_t r;

		r = access_page(g, cur, rbuf ? rbuf + done : NULL, wbuf ? wbuf + done : NULL, n);
		if (r < 0)
			return (int)r;
		done += (uint64_t)r;
	}
	return 0;
}

int ccvm_guest_read(struct ccvm_guest *g, uint64_t gpa, void *buf, size_t len)
{
	if (!buf && len)
		return -EINVAL;
	return guest_rw(g, gpa, buf, NULL, len);
}

int ccvm_guest_write(struct ccvm_guest *g, uint64_t gpa, const void *buf, size_t len)
{
	if (!buf && len)
		return -EINVAL;
	return guest_rw(g, gpa, NULL, buf, len);
}

/* ---- hypercalls --------------------------------------------------------------- */

/* The VMM's hypercall.ret (a positive errno, or 0) as the guest's result. */
static int hypercall_ret_to_errno(uint64_t ret)
{
	if (ret <= 4095)
		return -(int)ret;
	if ((int64_t)ret < 0 && (int64_t)ret >= -4095)
		return (int)(int64_t)ret;
	return -EIO;
}

/*
 * The KVM_HC_MAP_GPA_RANGE exit for [gpa, gpa + size): TDX's MapGPA and
 * SNP's page-state change reach the VMM in this one form.
 */
static void map_gpa_exit_fill(struct ccvm_run *run, uint64_t gpa, uint64_t size,
			      bool to_private)
{
	memset(&run->hypercall, 0, sizeof(run->hypercall));
	run->exit_reason = CCVM_EXIT_HYPERCALL;
	run->hypercall.nr = CCVM_HC_MAP_GPA_RANGE;
	run->hypercall.args[0] = gpa;
	run->hypercall.args[1] = size >> CCVM_PAGE_SHIFT;
	run->hypercall.args[2] = (to_private ? CCVM_MAP_GPA_RANGE_ENCRYPTED
					     : CCVM_MAP_GPA_RANGE_DECRYPTED) |
				 CCVM_MAP_GPA_RANGE_PAGE_SZ_4K;
}

int ccvm_guest_map_gpa(struct ccvm_guest *g, uint64_t gpa, uint64_t size, bool to_private)
{
	struct ccvm_vcpu *v = guest_vcpu(g);
	struct ccvm_run *run;
	struct ccvm_vm *vm;
	uint64_t limit;

	if (!v)
		return -EINVAL;
	vm = v->vm;
	run = &v->run;
	/* Direction is explicit; either alias of the range names it. */
	gpa &= ~vm->shared_bit;
	limit = vm->max_gfn << CCVM_PAGE_SHIFT;
	if (!size || !ccvm_is_page_aligned(gpa) || !ccvm_is_page_aligned(size) ||
	    gpa >= limit || size > limit - gpa)
		return -EINVAL;

	while (size) {
		uint64_t chunk = size;
		int64_t r;

		ccvm_guest_enter(g);
		map_gpa_exit_fill(run, gpa, size, to_private);
		if (ccvm_has_op(vm, handle_exit_hypercall)) {
			r = ccvm_op_handle_exit_hypercall(v, gpa, size, to_private, run);
			if (r < 0)
				return (int)r;
			if (r == 0 || (uint64_t)r > size || !ccvm_is_page_aligned((uint64_t)r)) {
				ccvm_log(CCVM_LOG_WARN, "vm %u: handle_exit_hypercall chunk %lld "
					 "for a %llu-byte range", vm->id, (long long)r,
					 (unsigned long long)size);
				return -EIO;
			}
			chunk = (uint64_t)r;
			run->exit_reason = CCVM_EXIT_HYPERCALL;
			run->hypercall.args[1] = chunk >> CCVM_PAGE_SHIFT;
		}
		ccvm_guest_exit(g, 0);
		if (run->hypercall.ret)
			return hypercall_ret_to_errno(run->hypercall.ret);
		gpa += chunk;
		size -= chunk;
	}
	return 0;
}

/* ---- accept -------------------------------------------------------------------- */

/*
 * One accept of page size @level at @gpa (aligned to it): through
 * guest_accept_level when @level is not 4K, else guest_accept.
 */
static int accept_page(struct ccvm_guest *g, uint64_t gpa, int level)
{
	struct ccvm_vcpu *v = g->vcpu;
	struct ccvm_vm *vm = v->vm;
	uint64_t gfn = gpa >> CCVM_PAGE_SHIFT;
	unsigned int tries = 0, busy = 0;
	struct ccvm_xlate x;
	bool mapped;
	int r;

	for (;;) {
		guest_lock_in_guest_mode(g);
		mapped = !ccvm_mmu_translate(v, gpa, &x) && x.is_private;
		if (level == CCVM_LEVEL_4K)
			r = ccvm_op_guest_accept(v, gfn, mapped ? x.pfn : CCVM_NO_PFN, mapped);
		else
			r = ccvm_op_guest_accept_level(v, gfn, mapped ? x.pfn : CCVM_NO_PFN,
						       mapped ? x.level : 0, level);
		ccvm_brlock_rdunlock(&vm->mmu_lock, v->mmu_shard);
		if (r == 0)
			return 0;
		/* Host S-EPT operations hold the entry: the guest kernel retries. */
		if (r == -EAGAIN && ++busy <= CCVM_FAULT_RETRY_LIMIT) {
			ccvm_sched_yield(ccvm_sched_of(vm->p), "accept busy");
			continue;
		}
		if (r == CCVM_GUEST_NEEDS_SPLIT) {
			/* A smaller accept than the leaf: KVM splits it (TDX DEMOTE). */
			if (++tries > CCVM_FAULT_RETRY_LIMIT)
				return -EIO;
			r = ccvm_mmu_split_private(vm, gfn);
			if (r)
				return r;
			continue;
		}
		if (r == CCVM_GUEST_NEEDS_ZAP) {
			/* The backing shrank under a larger mapping: rebuild it. */
			ccvm_vm_zap_gfn_range(vm, gfn & ~(CCVM_PAGES_PER_2M - 1),
					      (gfn & ~(CCVM_PAGES_PER_2M - 1)) + CCVM_PAGES_PER_2M);
			r = CCVM_GUEST_NEEDS_FAULT;
		}
		if (r != CCVM_GUEST_NEEDS_FAULT)
			return r < 0 ? r : -EIO;
		/*
		 * Nothing to accept yet: the private fault maps (TDX: AUGs) it.
		 * Again and again while a conversion owns the page: back off.
		 */
		if (tries)
			ccvm_sched_yield(ccvm_sched_of(vm->p), "accept fault");
		v->accept_level = level;
		r = guest_fault(g, gpa, true, &tries) == FAULT_MMIO;
		v->accept_level = 0;
		if (r)
			return -EINVAL;
	}
}

int ccvm_guest_accept_level(struct ccvm_guest *g, uint64_t gpa, uint64_t size, int level)
{
	struct ccvm_vcpu *v = guest_vcpu(g);
	uint64_t limit, off, bytes, i;
	int r;

	if (!v)
		return -EINVAL;
	if (level != CCVM_LEVEL_4K && level != CCVM_LEVEL_2M)
		return ccvm_reject(-EINVAL, "accept level %d: 4K or 2M", level);
	bytes = ccvm_level_pages(level) << CCVM_PAGE_SHIFT;
	limit = v->vm->max_gfn << CCVM_PAGE_SHIFT;
	if (!size || (gpa & (bytes - 1)) || (size & (bytes - 1)) ||
	    (gpa & v->vm->shared_bit) || gpa >= limit || size > limit - gpa)
		return ccvm_reject(-EINVAL, "accept of [%#llx, +%#llx) at level %d: range "
				   "unaligned to the level, wrapping, shared or past the GPA "
				   "width", (unsigned long long)gpa, (unsigned long long)size,
				   level);
	for (off = 0; off < size; off += bytes) {
		if (level == CCVM_LEVEL_4K || ccvm_has_op(v->vm, guest_accept_level)) {
			r = accept_page(g, gpa + off, level);
			if (r)
				return r;
			continue;
		}
		/* A backend without level accepts: the block page by page. */
		for (i = 0; i < bytes; i += CCVM_PAGE_SIZE) {
			r = accept_page(g, gpa + off + i, CCVM_LEVEL_4K);
			if (r)
				return r;
		}
	}
	return 0;
}

int ccvm_guest_accept(struct ccvm_guest *g, uint64_t gpa, uint64_t size)
{
	return ccvm_guest_accept_level(g, gpa, size, CCVM_LEVEL_4K);
}

/* ---- sync and abort ------------------------------------------------------------ */

void ccvm_guest_sync(struct ccvm_guest *g, uint64_t value)
{
	struct ccvm_vcpu *v = guest_vcpu(g);

	if (!v) {
		ccvm_log(CCVM_LOG_WARN, "ccvm_guest_sync called outside its guest; ignored");
		return;
	}
	ccvm_guest_enter(g);
	memset(&v->run.sync, 0, sizeof(v->run.sync));
	v->run.exit_reason = CCVM_EXIT_SYNC;
	v->run.sync.value = value;
	ccvm_guest_exit(g, 0);
}

void ccvm_guest_abort(struct ccvm_guest *g, const char *file, int line, const char *msg)
{
	struct ccvm_guest *cur = ccvm_guest_current();
	struct ccvm_run *run;

	if (!cur) {
		/*
		 * No guest to end and no way to return: end the calling
		 * thread rather than the process.
		 */
		ccvm_log(CCVM_LOG_WARN, "ccvm_guest_abort called outside guest code "
			 "(%s:%d: %s); ending the calling thread",
			 file ? file : "?", line, msg ? msg : "");
		pthread_exit(NULL);
	}
	if (g != cur)
		ccvm_log(CCVM_LOG_WARN, "ccvm_guest_abort: wrong guest context; "
			 "aborting the calling guest");
	snprintf(cur->abort_file, sizeof(cur->abort_file), "%s", file ? file : "?");
	snprintf(cur->abort_msg, sizeof(cur->abort_msg), "%s", msg ? msg : "");
	run = &cur->vcpu->run;
	memset(&run->abort, 0, sizeof(run->abort));
	run->exit_reason = CCVM_EXIT_GUEST_ABORT;
	run->abort.file = cur->abort_file;
	run->abort.line = line;
	run->abort.msg = cur->abort_msg;
	cur->end = CCVM_GUEST_END_ABORT;
	longjmp(cur->start, 1);
}
