/* SPDX-License-Identifier: MIT */
/*
 * VM lifecycle.  The VM is reference counted exactly as struct kvm: the
 * VMM's handle, each vCPU handle and each gmem file hold a reference, and
 * the VM is torn down (kvm_destroy_vm order) when the last one is dropped:
 *   vm_pre_destroy (TDX: HKID release) -> free vCPUs -> zap and free every
 *   root, mirror included -> vm_destroy (control pages) -> memslots and
 *   attributes.
 * Because gmem files hold references, every gmem file is already released
 * when this runs, which is what decides TDX's teardown path.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend-call.h"
#include "scheduler.h"

#define DEFAULT_MAX_VCPUS	8
#define MAX_VCPUS		1024
#define DEFAULT_GPA_BITS	48
#define MIN_GPA_BITS		36
#define MAX_GPA_BITS		52

/* vm->running: a bit per vCPU, in 64-bit words. */
static size_t running_bytes(uint32_t max_vcpus)
{
	return (max_vcpus + 63) / 64 * sizeof(uint64_t);
}

/* ---- big-reader locks (lib/brlock.h) ------------------------------------ */

/* Shards of a free-running brlock: the host's online CPUs, at most the array. */
unsigned int ccvm_host_cpu_shards(void)
{
	static _Atomic unsigned int cached;
	unsigned int n = atomic_load_explicit(&cached, memory_order_relaxed);
	long cpus;

	if (n)
		return n;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	n = cpus < 1 ? 1 : cpus > CCVM_BRLOCK_SHARDS ? CCVM_BRLOCK_SHARDS : (unsigned int)cpus;
	atomic_store_explicit(&cached, n, memory_order_relaxed);
	return n;
}

int ccvm_brlock_init(struct ccvm_brlock *b, struct ccvm_sched *s, const char *name)
{
	unsigned int i;
	int err;

	if (!b)
		return -EINVAL;
	/* Serial: one shard, so schedules do not depend on the host. */
	b->nr = s ? 1 : ccvm_host_cpu_shards();
	for (i = 0; i < b->nr; i++) {
		err = ccvm_rwlock_init(&b->shard[i].l, s, name);
		if (err) {
			while (i--)
				ccvm_rwlock_destroy(&b->shard[i].l);
			b->nr = 0;
			return err;
		}
	}
	return 0;
}

void ccvm_brlock_destroy(struct ccvm_brlock *b)
{
	unsigned int i;

	if (!b)
		return;
	for (i = 0; i < b->nr; i++)
		ccvm_rwlock_destroy(&b->shard[i].l);
	b->nr = 0;
}

static void vm_free(struct ccvm_vm *vm)
{
	struct ccvm_platform *p = vm->p;

	ccvm_model_bytes_add(p, -(int64_t)ccvm_xa_memory(&vm->attrs));
	ccvm_xa_destroy(&vm->attrs);
	ccvm_xa_destroy(&vm->slot_ids);
	ccvm_mutex_destroy(&vm->lock);
	ccvm_mutex_destroy(&vm->slots_lock);
	ccvm_brlock_destroy(&vm->memslots_rw);
	ccvm_brlock_destroy(&vm->mmu_lock);
	ccvm_brlock_destroy(&vm->attr_lock);
	ccvm_model_bytes_add(p, -(int64_t)(sizeof(*vm) + ccvm_vm_priv_size(vm) +
					   vm->max_vcpus * sizeof(vm->vcpus[0]) +
					   running_bytes(vm->max_vcpus)));
	free(vm->vcpus);
	free(vm->running);
	free(vm->priv);
	ccvm_counters_destroy(&vm->stats);
	free(vm);
	ccvm_mutex_lock(&p->lock);
	p->nr_vms--;
	ccvm_mutex_unlock(&p->lock);
}

/*
 * What the attribute scheme changes in the caps (upstream-2026 A.3, A.9):
 * with in-place conversion the VM store takes no PRIVATE (its cap reads 0),
 * the gmem takes it, and INIT_SHARED becomes available to VMs with private
 * memory; without it INIT_SHARED is refused to them, as
 * kvm_arch_supports_gmem_init_shared() does.  Every backend's VM type has
 * private memory.  The content modes of the posted RFC are offered only
 * with in-place conversion.
 */
static void vm_scheme_caps(struct ccvm_vm *vm)
{
	struct ccvm_backend_caps *c = &vm->caps;
	uint64_t private = c->memory_attributes & CCVM_MEMORY_ATTRIBUTE_PRIVATE;

	c->attr_scheme = vm->attr_scheme;
	if (ccvm_vm_in_place(vm)) {
		c->gmem_memory_attributes = private;
		c->memory_attributes &= ~CCVM_MEMORY_ATTRIBUTE_PRIVATE;
		c->gmem_attributes_flags = private ? CCVM_MEMORY_ATTRIBUTES2_ZERO |
						     CCVM_MEMORY_ATTRIBUTES2_PRESERVE : 0;
		if (!private)
			c->gmem_flags &= ~CCVM_GMEM_FLAG_INIT_SHARED;
	} else {
		c->gmem_memory_attributes = 0;
		c->gmem_attributes_flags = 0;
		if (private)
			c->gmem_flags &= ~CCVM_GMEM_FLAG_INIT_SHARED;
	}
}

int ccvm_vm_create(struct ccvm_platform *p, const struct ccvm_vm_opts *uopts,
		   struct ccvm_vm **out)
{
	struct ccvm_vm_opts opts;
	struct ccvm_vm *vm;
	int err;

	if (!p || !out)
		return ccvm_fail(-EINVAL, "NULL %s", p ? "out" : "platform");
	err = ccvm_opts_copy(&opts, sizeof(opts), uopts, uopts ? uopts->sz : 0);
	if (err)
		return err;
	if (opts.flags)
		return ccvm_fail(-EINVAL, "opts.flags 0x%llx: must be 0",
				 (unsigned long long)opts.flags);
	if (!opts.max_vcpus)
		opts.max_vcpus = DEFAULT_MAX_VCPUS;
	if (!opts.gpa_bits)
		opts.gpa_bits = DEFAULT_GPA_BITS;
	if (opts.max_vcpus > MAX_VCPUS)
		return ccvm_fail(-EINVAL, "opts.max_vcpus %u: at most %u", opts.max_vcpus,
				 MAX_VCPUS);
	if (opts.gpa_bits < MIN_GPA_BITS || opts.gpa_bits > MAX_GPA_BITS)
		return ccvm_fail(-EINVAL, "opts.gpa_bits %u: must be %u..%u", opts.gpa_bits,
				 MIN_GPA_BITS, MAX_GPA_BITS);
	if (opts.attr_scheme > CCVM_ATTR_SCHEME_GMEM)
		return ccvm_fail(-EINVAL, "opts.attr_scheme %u: unknown", opts.attr_scheme);

	vm = ccvm_zalloc_lines(sizeof(*vm));	/* mmu_lock's shards are line-aligned */
	if (!vm)
		return -ENOMEM;
	vm->p = p;
	vm->ops = p->ops;
	vm->vcpus = calloc(opts.max_vcpus, sizeof(vm->vcpus[0]));
	vm->running = ccvm_zalloc_lines(running_bytes(opts.max_vcpus));
	/* On whole lines, so that a backend's _Alignas(64) words are aligned. */
	if (ccvm_vm_priv_size(vm))
		vm->priv = ccvm_zalloc_lines(ccvm_vm_priv_size(vm));
	if (!vm->vcpus || !vm->running || (ccvm_vm_priv_size(vm) && !vm->priv)) {
		free(vm->vcpus);
		free(vm->running);
		free(vm->priv);
		free(vm);
		return -ENOMEM;
	}
	ccvm_counters_init(&vm->stats);
	vm->refcount = 1;
	vm->max_vcpus = opts.max_vcpus;
	vm->gpa_bits = opts.gpa_bits;
	vm->caps = p->caps;
	if (vm->caps.has_shared_bit) {
		vm->shared_bit = 1ull << (opts.gpa_bits - 1);
		vm->max_gfn = vm->shared_bit >> CCVM_PAGE_SHIFT;
	} else {
		vm->max_gfn = (1ull << opts.gpa_bits) >> CCVM_PAGE_SHIFT;
	}
	/* The rwlocks prefer writers: vCPUs fault continuously, zaps must not starve. */
	ccvm_mutex_init(&vm->lock, ccvm_sched_of(p), "vm->lock");
	ccvm_mutex_init(&vm->slots_lock, ccvm_sched_of(p), "slots_lock");
	ccvm_brlock_init(&vm->memslots_rw, ccvm_sched_of(p), "memslots_rw");
	ccvm_brlock_init(&vm->mmu_lock, ccvm_sched_of(p), "mmu_lock");
	/* SPTEs are written under the read lock and read by every walker. */
	for (unsigned int i = 0; i < vm->mmu_lock.nr; i++)
		ccvm_sched_rwlock_hw(&vm->mmu_lock.shard[i].l);
	ccvm_brlock_init(&vm->attr_lock, ccvm_sched_of(p), "attr_lock");
	ccvm_xa_init(&vm->attrs);
	ccvm_xa_init(&vm->slot_ids);
	vm->state = CCVM_VM_CREATED;

	ccvm_mutex_lock(&p->lock);
	vm->id = p->next_vm_id++;
	p->nr_vms++;
	ccvm_mutex_unlock(&p->lock);
	ccvm_model_bytes_add(p, (int64_t)(sizeof(*vm) + ccvm_vm_priv_size(vm) +
					  opts.max_vcpus * sizeof(vm->vcpus[0]) +
					  running_bytes(opts.max_vcpus)));
	/* The caps a VM reports depend on it (the shared bit's position). */
	ccvm_op_get_caps(vm, &vm->caps);
	vm->caps.name = p->caps.name;
	vm->attr_scheme = opts.attr_scheme ? opts.attr_scheme : p->attr_scheme;
	vm_scheme_caps(vm);

	err = ccvm_mmu_vm_init(vm);
	if (err) {
		vm_free(vm);
		return err;
	}
	err = ccvm_op_vm_init(vm);
	if (err) {
		ccvm_mmu_vm_uninit(vm);
		vm_free(vm);
		return err;
	}
	/* Complete: the invariant checker of a schedule may look at it now. */
	ccvm_mutex_lock(&p->lock);
	vm->next_vm = p->vms;
	p->vms = vm;
	ccvm_mutex_unlock(&p->lock);
	*out = vm;
	return 0;
}

void ccvm_vm_get(struct ccvm_vm *vm)
{
	atomic_fetch_add_explicit(&vm->refcount, 1, memory_order_relaxed);
}

/* kvm_destroy_vm(): see the file comment for the order and why. */
static void vm_destroy(struct ccvm_vm *vm)
{
	struct ccvm_platform *p = vm->p;
	struct ccvm_vm **pp;
	uint32_t i, n;

	/* Off the list first: from here on its state is half gone. */
	ccvm_mutex_lock(&p->lock);
	for (pp = &p->vms; *pp; pp = &(*pp)->next_vm) {
		if (*pp == vm) {
			*pp = vm->next_vm;
			break;
		}
	}
	ccvm_mutex_unlock(&p->lock);
	ccvm_op_vm_pre_destroy(vm);
	n = atomic_load(&vm->nr_vcpus);
	for (i = 0; i < n; i++)
		ccvm_vcpu_destroy(vm->vcpus[i]);
	ccvm_mmu_vm_uninit(vm);
	ccvm_op_vm_destroy(vm);
	ccvm_memslots_free_all(vm);
	vm_free(vm);
}

void ccvm_vm_put(struct ccvm_vm *vm)
{
	/* Whoever drops the last reference destroys the VM: the schedule decides. */
	ccvm_sched_point(ccvm_sched_of(vm->p), NULL, "vm put");
	if (atomic_fetch_sub_explicit(&vm->refcount, 1, memory_order_acq_rel) == 1)
		vm_destroy(vm);
}

int ccvm_vm_close(struct ccvm_vm *vm)
{
	bool closed;

	if (!vm)
		return ccvm_fail(-EINVAL, "NULL vm");
	ccvm_mutex_lock(&vm->lock);
	closed = vm->handle_closed;
	vm->handle_closed = true;
	ccvm_mutex_unlock(&vm->lock);
	if (closed)
		return ccvm_fail(-EINVAL, "VM %u: the handle is already closed", vm->id);
	ccvm_vm_put(vm);
	return 0;
}

/* ---- accessors ---------------------------------------------------------- */

uint64_t ccvm_vm_shared_bit(const struct ccvm_vm *vm)
{
	return vm ? vm->shared_bit : 0;
}

void *ccvm_vm_priv(struct ccvm_vm *vm)
{
	return vm->priv;
}

struct ccvm_platform *ccvm_vm_platform(const struct ccvm_vm *vm)
{
	return vm->p;
}

uint32_t ccvm_vm_id(const struct ccvm_vm *vm)
{
	return vm->id;
}

uint32_t ccvm_vm_gpa_bits(const struct ccvm_vm *vm)
{
	return vm->gpa_bits;
}

uint32_t ccvm_vm_nr_vcpus(const struct ccvm_vm *vm)
{
	return atomic_load_explicit(&vm->nr_vcpus, memory_order_acquire);
}

const char *ccvm_vm_backend_name(const struct ccvm_vm *vm)
{
	return vm->caps.name;
}

/* vCPUs are only appended while the VM lives, so no lock is needed. */
int ccvm_vm_for_each_vcpu(struct ccvm_vm *vm,
			  int (*fn)(struct ccvm_vcpu *vcpu, void *ctx), void *ctx)
{
	uint32_t i, n = ccvm_vm_nr_vcpus(vm);
	int r;

	for (i = 0; i < n; i++) {
		r = fn(vm->vcpus[i], ctx);
		if (r)
			return r;
	}
	return 0;
}

int ccvm_vm_caps(struct ccvm_vm *vm, struct ccvm_backend_caps *caps)
{
	size_t sz;

	if (!vm || !caps || caps->sz < offsetof(struct ccvm_backend_caps, name))
		return -EINVAL;
	sz = caps->sz < sizeof(vm->caps) ? caps->sz : sizeof(vm->caps);
	memcpy(caps, &vm->caps, sz);
	caps->sz = sz;
	return 0;
}

int ccvm_vm_get_stats(struct ccvm_vm *vm, struct ccvm_stats *st)
{
	struct ccvm_stats s;
	size_t sz;

	if (!vm || !st || st->sz < offsetof(struct ccvm_stats, events))
		return -EINVAL;
	memset(&s, 0, sizeof(s));
	ccvm_counters_read(&vm->stats, &vm->p->costs, &s);
	sz = st->sz < sizeof(s) ? st->sz : sizeof(s);
	s.sz = sz;
	memcpy(st, &s, sz);
	return 0;
}

/* ---- state --------------------------------------------------------------- */

void ccvm_vm_bug(struct ccvm_vm *vm, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* bugged and dead are read lock-free next to the machine's state. */
	ccvm_sched_point(ccvm_sched_of(vm->p), CCVM_SCHED_HW(ccvm_sched_of(vm->p)), "vm bug");
	if (!atomic_exchange(&vm->bugged, true))
		ccvm_log(CCVM_LOG_WARN, "VM %u bugged: %s", vm->id, msg);
	atomic_store(&vm->dead, true);
}

bool ccvm_vm_is_bugged(const struct ccvm_vm *vm)
{
	return atomic_load(&vm->bugged);
}

void ccvm_vm_set_dead(struct ccvm_vm *vm)
{
	ccvm_sched_point(ccvm_sched_of(vm->p), CCVM_SCHED_HW(ccvm_sched_of(vm->p)), "vm dead");
	atomic_store(&vm->dead, true);
}

bool ccvm_vm_is_dead(const struct ccvm_vm *vm)
{
	return atomic_load(&vm->dead);
}

bool ccvm_vm_is_finalized(const struct ccvm_vm *vm)
{
	return atomic_load(&vm->state) == CCVM_VM_FINALIZED;
}

void ccvm_vm_vcpu_running(struct ccvm_vcpu *v, bool running)
{
	_Atomic uint64_t *w = &v->vm->running[v->index / 64];
	uint64_t bit = 1ull << (v->index % 64);

	if (running)
		atomic_fetch_or(w, bit);
	else
		atomic_fetch_and(w, ~bit);
}

/*
 * Call @fn on every vCPU of @vm that a run has handed to its guest (only
 * those can be in guest mode or in an access), free-running, after a full
 * barrier: the caller's change (a zapped translation, a bumped epoch)
 * before any vCPU's state is read.  A vCPU not seen running here marks
 * itself running later (a sequentially consistent read-modify-write, in
 * the total order after this read), so its guest's next entry and access,
 * which open with full barriers too, see the change.  A vCPU seen no
 * longer running gave its guest back after the guest left guest mode:
 * the acquire orders its last access before what the caller does next.
 */
static void for_each_running_vcpu(struct ccvm_vm *vm, void (*fn)(struct ccvm_vcpu *v))
{
	uint32_t w, words = (ccvm_vm_nr_vcpus(vm) + 63) / 64;
	struct ccvm_vcpu *const *vcpus = vm->vcpus;

	ccvm_full_barrier();
	for (w = 0; w < words; w++) {
		uint64_t bits = atomic_load_explicit(&vm->running[w], memory_order_acquire);

		while (bits) {
			fn(vcpus[w * 64 + (uint32_t)__builtin_ctzll(bits)]);
			bits &= bits - 1;
		}
	}
}

/* ccvm_vcpu_exit_guest() itself returns at once for a vCPU out of guest mode. */
static void kick_one(struct ccvm_vcpu *v)
{
	ccvm_vcpu_exit_guest(v);
}

void ccvm_vm_kick_all(struct ccvm_vm *vm)
{
	struct ccvm_sched *s = ccvm_sched_of(vm->p);
	uint32_t i, n = ccvm_vm_nr_vcpus(vm);
	/* Sized for max_vcpus at creation: the array never moves. */
	struct ccvm_vcpu *const *vcpus = vm->vcpus;

	/*
	 * Serial, every vCPU gets the kick's scheduling point.  Free-running
	 * the point is nothing, and a vCPU out of guest mode needs nothing
	 * either: only the running ones are looked at (a dynamic removal
	 * kicks every vCPU per page).
	 */
	if (ccvm_sync_serial(s)) {
		for (i = 0; i < n; i++)
			ccvm_vcpu_exit_guest(vcpus[i]);
	} else {
		for_each_running_vcpu(vm, kick_one);
	}
	ccvm_account(vm->p, vm, CCVM_EV_IPI, 1);
	ccvm_account_fast(vm->p, vm, CCVM_EV_KICK_VCPU, n);
}

void ccvm_vm_sync_guest_accesses(struct ccvm_vm *vm)
{
	/*
	 * Dekker's pattern with the access's opening: it stores its odd count
	 * and then reads the translation; this side has removed the
	 * translation and now reads the counts (after the full barrier of
	 * for_each_running_vcpu()): an access either saw the removal or is
	 * seen here.
	 */
	if (ccvm_vm_lockless_access(vm))
		for_each_running_vcpu(vm, ccvm_vcpu_access_wait);
}

void ccvm_vm_mmu_write_lock(struct ccvm_vm *vm)
{
	ccvm_brlock_wrlock(&vm->mmu_lock);
}

void ccvm_vm_mmu_write_unlock(struct ccvm_vm *vm)
{
	ccvm_brlock_wrunlock(&vm->mmu_lock);
}

void ccvm_vm_block_entry(struct ccvm_vm *vm)
{
	atomic_fetch_add(&vm->entry_blocked, 1);
}

void ccvm_vm_unblock_entry(struct ccvm_vm *vm)
{
	atomic_fetch_sub(&vm->entry_blocked, 1);
}

/* ---- launch ---------------------------------------------------------------- */

int ccvm_vm_finalize(struct ccvm_vm *vm)
{
	int err = 0;

	if (!vm)
		return ccvm_fail(-EINVAL, "NULL vm");
	ccvm_mutex_lock(&vm->lock);
	ccvm_mutex_lock(&vm->slots_lock);
	if (!ccvm_vm_usable(vm) || ccvm_vm_is_dead(vm)) {
		err = ccvm_fail(-EIO, "VM %u is bugged or dead", vm->id);
	} else if (atomic_load(&vm->state) != CCVM_VM_CREATED) {
		err = ccvm_fail(-EINVAL, "VM %u is already finalized", vm->id);
	} else if (ccvm_has_op(vm, vm_finalize)) {
		/* A backend without a launch protocol is runnable from the start. */
		err = ccvm_op_vm_finalize(vm);
	}
	if (!err)
		atomic_store(&vm->state, CCVM_VM_FINALIZED);
	ccvm_mutex_unlock(&vm->slots_lock);
	ccvm_mutex_unlock(&vm->lock);
	return err;
}

const void *ccvm_vm_populate_source(struct ccvm_vm *vm, uint64_t *flags)
{
	if (flags)
		*flags = vm->populate_flags;
	return vm->populate_src;
}

static int populate_one(struct ccvm_vm *vm, uint64_t gfn, const void *src, uint64_t flags)
{
	struct ccvm_memslot *slot;
	int err;

	slot = ccvm_memslot_find(vm, gfn);
	/* The target must be private: the VM store, or in place the gmem's. */
	if (!ccvm_mem_is_private(vm, slot, gfn))
		return ccvm_fail_at("ccvm_vm_populate", -EINVAL, "gpa 0x%llx is not private: "
				    "set it PRIVATE first", (unsigned long long)gfn << 12);
	if (!slot || !(slot->flags & CCVM_MEM_GUEST_MEMFD) || !atomic_load(&slot->gmem))
		return ccvm_fail_at("ccvm_vm_populate", -EINVAL, "gpa 0x%llx has %s",
				    (unsigned long long)gfn << 12,
				    slot ? "no live gmem binding" : "no memslot");

	if (vm->caps.has_mirror_root) {
		/*
		 * As KVM after the PAGE.ADD rework: map through the mirror root
		 * with the source stashed; set_private_spte sees a VM that is not
		 * finalized and issues PAGE.ADD from it.
		 */
		vm->populate_src = src;
		vm->populate_flags = flags;
		err = ccvm_fault_map_private(vm, gfn);
		vm->populate_src = NULL;
		vm->populate_flags = 0;
		return err;
	}
	return ccvm_gmem_populate(vm, slot, gfn, src, flags);
}

int ccvm_vm_populate(struct ccvm_vm *vm, uint64_t gpa, const void *src, uint64_t size,
		     uint64_t flags)
{
	uint64_t gfn, n, i;
	int err = 0;

	if (!vm || !src)
		return ccvm_fail(-EINVAL, "NULL %s", vm ? "src" : "vm");
	if (!size)
		return ccvm_fail(-EINVAL, "size 0");
	if (flags & ~CCVM_POPULATE_MEASURE)
		return ccvm_fail(-EINVAL, "unknown flags 0x%llx: only CCVM_POPULATE_MEASURE",
				 (unsigned long long)(flags & ~CCVM_POPULATE_MEASURE));
	if (!ccvm_is_page_aligned(gpa) || !ccvm_is_page_aligned(size) || gpa + size < gpa)
		return ccvm_fail(-EINVAL, "gpa 0x%llx size 0x%llx: not page aligned, or wraps",
				 (unsigned long long)gpa, (unsigned long long)size);
	if ((gpa & vm->shared_bit) || ((gpa + size - 1) >> CCVM_PAGE_SHIFT) >= vm->max_gfn)
		return ccvm_fail(-EINVAL, "gpa 0x%llx size 0x%llx: %s", (unsigned long long)gpa,
				 (unsigned long long)size, (gpa & vm->shared_bit)
				 ? "carries the shared bit: populate takes the private GPA"
				 : "goes past the guest physical width");
	if (!ccvm_has_op(vm, populate) && !vm->caps.has_mirror_root)
		return ccvm_fail(-EOPNOTSUPP, "the %s backend has no launch-time populate",
				 vm->caps.name);

	gfn = gpa >> CCVM_PAGE_SHIFT;
	n = size >> CCVM_PAGE_SHIFT;
	ccvm_mutex_lock(&vm->lock);
	ccvm_mutex_lock(&vm->slots_lock);
	if (!ccvm_vm_usable(vm) || ccvm_vm_is_dead(vm))
		err = ccvm_fail(-EIO, "VM %u is bugged or dead", vm->id);
	else if (atomic_load(&vm->state) != CCVM_VM_CREATED)
		err = ccvm_fail(-EINVAL, "VM %u is finalized: populate comes before "
				"ccvm_vm_finalize()", vm->id);
	/*
	 * Page by page, stopping at the first error, as kvm_gmem_populate.
	 * slots_lock keeps every memslot writer out, so the slot lookups need
	 * no memslots_rw here (the mirror path takes it itself, to fault).
	 */
	for (i = 0; !err && i < n; i++)
		err = populate_one(vm, gfn + i, (const uint8_t *)src + i * CCVM_PAGE_SIZE,
				   flags);
	ccvm_mutex_unlock(&vm->slots_lock);
	ccvm_mutex_unlock(&vm->lock);
	return err;
}

int ccvm_vm_terminate(struct ccvm_vm *vm)
{
	int err;

	if (!vm)
		return ccvm_fail(-EINVAL, "NULL vm");
	if (!ccvm_has_op(vm, vm_terminate))
		return ccvm_fail(-EOPNOTSUPP, "the %s backend cannot release its key early",
				 vm->caps.name);
	ccvm_mutex_lock(&vm->lock);
	if (ccvm_vm_is_dead(vm)) {
		ccvm_mutex_unlock(&vm->lock);
		return ccvm_fail(-EINVAL, "VM %u is already dead", vm->id);
	}
	/* No vCPU may enter from here on; the backend releases its key. */
	ccvm_vm_set_dead(vm);
	err = ccvm_op_vm_terminate(vm);
	ccvm_mutex_unlock(&vm->lock);
	return err;
}
