/* SPDX-License-Identifier: MIT */
/*
 * vCPUs: lifetime, the guest execution context and the run loop.
 *
 * Lifetime follows KVM.  ccvm_vcpu_create() takes a VM reference and calls
 * vcpu_create; the vCPU is published in vm->vcpus with a release store of
 * nr_vcpus, so kicks and for_each walk the array without a lock.  Closing
 * the handle ends the guest thread and drops the reference, but the struct
 * and the backend's state live until VM teardown (ccvm_vcpu_destroy():
 * vcpu_free, then the MMU drops its roots), because the VM's walkers may
 * still look at it.
 *
 * Guest code runs on a thread of its own, so it reads like a KVM selftest
 * guest: straight-line code whose accesses may exit to the VMM.  The run
 * caller and the guest thread hand the vCPU back and forth (struct
 * ccvm_guest in internal.h): ccvm_vcpu_run() gives the guest its turn and
 * sleeps until the guest exits, the guest sleeps in its exit until the
 * next run.  A guest access that needs the VMM re-executes after the next
 * run, as a CPU re-executes a faulting instruction.
 *
 * Guest mode.  vcpu->in_guest is true between a successful vcpu_enter
 * (TDH.VP.ENTER) and the next exit, to the VMM or for a TDP fault (an EPT
 * violation / NPF is a VM exit too), or until a kick clears it.  Entry
 * happens under mmu_lock read: kicks come from removals that hold mmu_lock
 * for write, so an entry never slips between a kick and the retry it
 * protects, and a vCPU that was kicked notices before its next access.
 * An access itself takes no lock when free-running (lib/guest.c): a kick
 * that takes a vCPU out waits for the access it has in flight, as an IPI
 * is taken between two instructions, never inside one.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-call.h"
#include "scheduler.h"

static _Thread_local struct ccvm_guest *current_guest;

struct ccvm_guest *ccvm_guest_current(void)
{
	return current_guest;
}

int32_t ccvm_trace_vcpu_id(void)
{
	return current_guest ? (int32_t)current_guest->vcpu->id : -1;
}

/* The guest of @v calling into the VMM API of its own vCPU would deadlock. */
static bool called_from_own_guest(const struct ccvm_vcpu *v)
{
	return current_guest && current_guest->vcpu == v;
}

/* ---- accessors ------------------------------------------------------------ */

void *ccvm_vcpu_priv(struct ccvm_vcpu *vcpu)
{
	return vcpu->priv;
}

struct ccvm_vm *ccvm_vcpu_vm(const struct ccvm_vcpu *vcpu)
{
	return vcpu->vm;
}

uint32_t ccvm_vcpu_id(const struct ccvm_vcpu *vcpu)
{
	return vcpu->id;
}

bool ccvm_vcpu_guest_mode(const struct ccvm_vcpu *v)
{
	return atomic_load_explicit(&v->in_guest, memory_order_acquire) != CCVM_VCPU_OUT;
}

int ccvm_vcpu_private_level(struct ccvm_vcpu *v, uint64_t gfn)
{
	struct ccvm_xlate x;

	if (!v || gfn >= v->vm->max_gfn)
		return 0;
	/* Without the shared bit: the private view where the VM has one. */
	if (ccvm_mmu_translate(v, gfn << CCVM_PAGE_SHIFT, &x) || !x.is_private)
		return 0;
	return x.level;
}

struct ccvm_run *ccvm_vcpu_run_state(struct ccvm_vcpu *v)
{
	return v ? &v->run : NULL;
}

/* ---- create, close, destroy ----------------------------------------------- */

static size_t vcpu_model_bytes(const struct ccvm_vm *vm)
{
	return sizeof(struct ccvm_vcpu) + sizeof(struct ccvm_guest) + ccvm_vcpu_priv_size(vm);
}

static void vcpu_free_memory(struct ccvm_vcpu *v)
{
	struct ccvm_guest *g = v->guest;

	ccvm_cond_destroy(&g->guest_cond);
	ccvm_cond_destroy(&g->vmm_cond);
	ccvm_mutex_destroy(&g->lock);
	ccvm_mutex_destroy(&v->mutex);
	free(g);
	free(v->priv);
	free(v);
}

static struct ccvm_vcpu *vcpu_alloc(struct ccvm_vm *vm, uint32_t id)
{
	/* Each on lines of its own: vCPUs on different CPUs write their own. */
	struct ccvm_vcpu *v = ccvm_zalloc_lines(sizeof(*v));
	struct ccvm_guest *g = ccvm_zalloc_lines(sizeof(*g));
	size_t priv_size = ccvm_vcpu_priv_size(vm);
	/* The backend's part too: the next vCPU's was its neighbour in malloc. */
	void *priv = priv_size ? ccvm_zalloc_lines(priv_size) : NULL;
	struct ccvm_sched *s = ccvm_sched_of(vm->p);

	if (!v || !g || (priv_size && !priv)) {
		free(v);
		free(g);
		free(priv);
		return NULL;
	}
	v->vm = vm;
	v->id = id;
	v->priv = priv;
	v->guest = g;
	v->run.vcpu_id = id;
	ccvm_mutex_init(&v->mutex, s, "vcpu->mutex");
	/* Held across a whole run, while the guest works: not a reason to skip checks. */
	ccvm_sched_mutex_outer(&v->mutex);
	atomic_init(&v->in_guest, CCVM_VCPU_OUT);
	g->vcpu = v;
	g->state = CCVM_GUEST_NONE;
	atomic_init(&g->in_run, false);
	ccvm_mutex_init(&g->lock, s, "guest->lock");
	ccvm_cond_init(&g->guest_cond, s, "guest_cond");
	ccvm_cond_init(&g->vmm_cond, s, "vmm_cond");
	return v;
}

int ccvm_vcpu_create(struct ccvm_vm *vm, uint32_t id, struct ccvm_vcpu **out)
{
	struct ccvm_vcpu *v;
	uint32_t i, n;
	int err = 0;

	if (!vm || !out)
		return ccvm_fail(-EINVAL, "NULL %s", vm ? "out" : "vm");
	if (id >= vm->max_vcpus)
		return ccvm_fail(-EINVAL, "vCPU id %u: the VM's max_vcpus is %u", id,
				 vm->max_vcpus);
	v = vcpu_alloc(vm, id);
	if (!v)
		return -ENOMEM;

	ccvm_mutex_lock(&vm->lock);
	n = atomic_load_explicit(&vm->nr_vcpus, memory_order_relaxed);
	if (vm->handle_closed)
		err = ccvm_fail(-EINVAL, "VM %u: its handle is closed", vm->id);
	else if (!ccvm_vm_usable(vm) || ccvm_vm_is_dead(vm))
		err = ccvm_fail(-EIO, "VM %u is bugged or dead", vm->id);
	for (i = 0; !err && i < n; i++)
		if (vm->vcpus[i]->id == id)
			err = ccvm_fail(-EEXIST, "vCPU id %u is in use", id);
	if (!err) {
		err = ccvm_op_vcpu_create(v);
	}
	if (err) {
		ccvm_mutex_unlock(&vm->lock);
		vcpu_free_memory(v);
		return err;
	}
	/* Lock-free walkers load nr_vcpus with acquire, then read the slot. */
	v->index = n;
	vm->vcpus[n] = v;
	atomic_store_explicit(&vm->nr_vcpus, n + 1, memory_order_release);
	ccvm_vm_get(vm);
	ccvm_mutex_unlock(&vm->lock);
	ccvm_model_bytes_add(vm->p, (int64_t)vcpu_model_bytes(vm));
	*out = v;
	return 0;
}

/*
 * End a guest thread that is blocked in an exit: it unwinds from there
 * without returning into guest code.  vcpu->mutex held, so nobody is in run
 * and the thread, if live, is blocked in an exit.
 */
static void guest_stop(struct ccvm_guest *g)
{
	if (!g->thread_live)
		return;
	ccvm_mutex_lock(&g->lock);
	if (g->state == CCVM_GUEST_EXITED) {
		g->unwind = true;
		g->guest_turn = true;
		ccvm_cond_signal(&g->guest_cond);
		while (g->guest_turn)
			ccvm_cond_wait(&g->vmm_cond, &g->lock);
	}
	ccvm_mutex_unlock(&g->lock);
	ccvm_thread_join(g->thread, NULL);
	g->thread = NULL;
	g->thread_live = false;
}

int ccvm_vcpu_close(struct ccvm_vcpu *v)
{
	struct ccvm_vm *vm;

	if (!v)
		return ccvm_fail(-EINVAL, "NULL vcpu");
	if (called_from_own_guest(v))
		return ccvm_fail(-EDEADLK, "vCPU %u: called from its own guest", v->id);
	ccvm_mutex_lock(&v->mutex);
	if (v->handle_closed) {
		ccvm_mutex_unlock(&v->mutex);
		return ccvm_fail(-EINVAL, "vCPU %u: the handle is already closed", v->id);
	}
	v->handle_closed = true;
	guest_stop(v->guest);
	ccvm_mutex_unlock(&v->mutex);
	/* A run that raced with the close sees it and leaves: wait for that. */
	while (atomic_load(&v->guest->in_run))
		ccvm_spin_wait(ccvm_sched_of(v->vm->p), &v->guest->in_run, true, "in_run");

	/* Last: this may be the VM's last reference, which frees @v. */
	vm = v->vm;
	ccvm_vm_put(vm);
	return 0;
}

/* kvm_vcpu_destroy(): the backend's state first, then the MMU's roots. */
void ccvm_vcpu_destroy(struct ccvm_vcpu *v)
{
	struct ccvm_vm *vm = v->vm;

	/* Only a handle that was never closed can still have a thread. */
	ccvm_mutex_lock(&v->mutex);
	guest_stop(v->guest);
	ccvm_mutex_unlock(&v->mutex);
	ccvm_op_vcpu_free(v);
	ccvm_mmu_vcpu_unload(v);
	ccvm_model_bytes_add(vm->p, -(int64_t)vcpu_model_bytes(vm));
	vcpu_free_memory(v);
}

int ccvm_vcpu_set_guest(struct ccvm_vcpu *v, ccvm_guest_fn fn, void *arg)
{
	struct ccvm_guest *g;
	int err = 0;

	if (!v || !fn)
		return ccvm_fail(-EINVAL, "NULL %s", v ? "guest function" : "vcpu");
	if (called_from_own_guest(v))
		return ccvm_fail(-EDEADLK, "vCPU %u: called from its own guest", v->id);
	g = v->guest;
	ccvm_mutex_lock(&v->mutex);
	if (v->handle_closed) {
		err = ccvm_fail(-EINVAL, "vCPU %u: the handle is closed", v->id);
	} else if (g->thread_live) {
		/* a guest is blocked in an exit */
		err = ccvm_fail(-EBUSY, "vCPU %u: a guest is blocked in an exit: run it to "
				"the end or close the vCPU first", v->id);
	} else {
		ccvm_mutex_lock(&g->lock);
		g->fn = fn;
		g->arg = arg;
		g->state = CCVM_GUEST_READY;
		g->unwind = false;
		ccvm_mutex_unlock(&g->lock);
		memset(&v->run, 0, sizeof(v->run));
		v->run.vcpu_id = v->id;
	}
	ccvm_mutex_unlock(&v->mutex);
	return err;
}

/* ---- guest mode ------------------------------------------------------------- */

void ccvm_vcpu_access_wait(struct ccvm_vcpu *v)
{
	uint64_t seq = atomic_load_explicit(&v->access_seq, memory_order_seq_cst);

	/*
	 * Even: none in flight (and the acquire orders the last one's copy
	 * before what the caller frees).  The guest thread's own vCPU is
	 * never waited for: a kick from inside its own access would wait
	 * for itself.
	 */
	if (!(seq & 1) || called_from_own_guest(v))
		return;
	ccvm_account(v->vm->p, v->vm, CCVM_EV_ACCESS_WAIT, 1);
	while (atomic_load_explicit(&v->access_seq, memory_order_acquire) == seq)
		sched_yield();
}

bool ccvm_vcpu_exit_guest(struct ccvm_vcpu *v)
{
	struct ccvm_sched *s = ccvm_sched_of(v->vm->p);
	int state;

	/* A kick (IPI) meets the vCPU wherever the schedule has it. */
	ccvm_sched_point2(s, &v->in_guest, CCVM_SCHED_HW(s), 0, "kick");
	state = atomic_load_explicit(&v->in_guest, memory_order_acquire);
	/* Most vCPUs a kick visits are out: a plain load, no locked write. */
	if (state == CCVM_VCPU_OUT)
		return false;
	if (state == CCVM_VCPU_IN &&
	    atomic_compare_exchange_strong(&v->in_guest, &state, CCVM_VCPU_EXITING)) {
		/* The IPI lands between instructions: an access finishes first. */
		ccvm_vcpu_access_wait(v);
		ccvm_op_vcpu_exit(v);
		ccvm_sched_point2(s, &v->in_guest, CCVM_SCHED_HW(s), 0, "guest mode off");
		atomic_store_explicit(&v->in_guest, CCVM_VCPU_OUT, memory_order_release);
		return true;
	}
	/* Someone else is taking it out: an IPI returns only once it is out. */
	while (atomic_load_explicit(&v->in_guest, memory_order_acquire) == CCVM_VCPU_EXITING)
		ccvm_spin_wait(s, &v->in_guest, CCVM_VCPU_EXITING, "in_guest exiting");
	return false;
}

void ccvm_vcpu_leave_guest(struct ccvm_vcpu *v)
{
	/* A kick may have taken the vCPU out already: exit once per entry. */
	ccvm_vcpu_exit_guest(v);
}

/* Positive: entry is blocked (TDX wait_for_sept_zap), wait without bound. */
#define ENTRY_BLOCKED	1

/* With mmu_lock read held: 0 in guest mode, ENTRY_BLOCKED, or -errno. */
static int vcpu_try_enter(struct ccvm_vcpu *v)
{
	struct ccvm_vm *vm = v->vm;
	int err;

	if (ccvm_vcpu_in_guest(v))
		return 0;
	/* A kick still taking it out: let it finish before entering again. */
	ccvm_vcpu_exit_guest(v);
	if (!ccvm_vm_usable(vm) || ccvm_vm_is_dead(vm))
		return -EIO;
	if (atomic_load(&vm->entry_blocked) > 0)
		return ENTRY_BLOCKED;
	err = ccvm_op_vcpu_enter(v);
	if (err)
		return err;
	atomic_store_explicit(&v->in_guest, CCVM_VCPU_IN, memory_order_release);
	ccvm_account(vm->p, vm, CCVM_EV_GUEST_ENTER, 1);
	return 0;
}

/* ---- exits ------------------------------------------------------------------ */

static const char *const exit_names[] = {
	[CCVM_EXIT_UNKNOWN] = "exit.unknown",
	[CCVM_EXIT_MEMORY_FAULT] = "exit.memory_fault",
	[CCVM_EXIT_HYPERCALL] = "exit.hypercall",
	[CCVM_EXIT_MMIO] = "exit.mmio",
	[CCVM_EXIT_SYNC] = "exit.sync",
	[CCVM_EXIT_DONE] = "exit.done",
	[CCVM_EXIT_GUEST_ABORT] = "exit.guest_abort",
	[CCVM_EXIT_EXCEPTION] = "exit.exception",
	[CCVM_EXIT_INTERNAL_ERROR] = "exit.internal_error",
};

static void exit_account(struct ccvm_vcpu *v, int run_ret)
{
	struct ccvm_vm *vm = v->vm;
	const struct ccvm_run *run = &v->run;
	uint64_t gfn = CCVM_INVALID_GFN, arg1 = 0;

	ccvm_account(vm->p, vm, CCVM_EV_EXIT, 1);
	switch (run->exit_reason) {
	case CCVM_EXIT_MEMORY_FAULT:
		ccvm_account(vm->p, vm, CCVM_EV_MEMORY_FAULT_EXIT, 1);
		gfn = run->memory_fault.gpa >> CCVM_PAGE_SHIFT;
		arg1 = run->memory_fault.flags;
		break;
	case CCVM_EXIT_HYPERCALL:
		ccvm_account(vm->p, vm, CCVM_EV_HYPERCALL_EXIT, 1);
		gfn = run->hypercall.args[0] >> CCVM_PAGE_SHIFT;
		arg1 = run->hypercall.args[1];
		break;
	case CCVM_EXIT_MMIO:
		ccvm_account(vm->p, vm, CCVM_EV_MMIO_EXIT, 1);
		gfn = run->mmio.phys_addr >> CCVM_PAGE_SHIFT;
		arg1 = run->mmio.len;
		break;
	case CCVM_EXIT_SYNC:
		arg1 = run->sync.value;
		break;
	case CCVM_EXIT_EXCEPTION:
		gfn = run->exception.gpa >> CCVM_PAGE_SHIFT;
		arg1 = run->exception.vector;
		break;
	default:
		break;
	}
	if (ccvm_tracing(vm->p)) {
		struct ccvm_trace_record rec = {
			.kind = CCVM_TRACE_EXIT,
			.id = run->exit_reason,
			.name = run->exit_reason < CCVM_ARRAY_SIZE(exit_names)
				? exit_names[run->exit_reason] : "exit.unknown",
			.vm_id = vm->id,
			.vcpu_id = (int32_t)v->id,
			.gfn = gfn,
			.arg0 = run->exit_reason,
			.arg1 = arg1,
			.ret = run_ret,
			.sim_ns = ccvm_counters_sim_ns(&vm->p->stats, &vm->p->costs),
			.wall_ns = ccvm_trace_clock(vm->p),
			.sim_dur_ns = 0,
		};
		ccvm_trace_emit(vm->p, &rec);
	}
}

/*
 * The guest side of the switch: give the vCPU to the run caller and sleep
 * until it is ours again.  A close meanwhile unwinds the guest from here.
 */
static void guest_handoff(struct ccvm_guest *g, int run_ret)
{
	bool unwind;

	ccvm_mutex_lock(&g->lock);
	g->run_ret = run_ret;
	g->state = CCVM_GUEST_EXITED;
	g->guest_turn = false;
	ccvm_cond_signal(&g->vmm_cond);
	while (!g->guest_turn)
		ccvm_cond_wait(&g->guest_cond, &g->lock);
	unwind = g->unwind;
	ccvm_mutex_unlock(&g->lock);
	if (unwind) {
		g->end = CCVM_GUEST_END_UNWIND;
		longjmp(g->start, 1);
	}
}

static void guest_exit_no_enter(struct ccvm_guest *g, int run_ret)
{
	struct ccvm_vcpu *v = g->vcpu;

	ccvm_vcpu_leave_guest(v);
	exit_account(v, run_ret);
	guest_handoff(g, run_ret);
}

static void fill_internal_error(struct ccvm_vcpu *v, int error)
{
	memset(&v->run.internal, 0, sizeof(v->run.internal));
	v->run.exit_reason = CCVM_EXIT_INTERNAL_ERROR;
	v->run.internal.error = error;
}

static int internal_error_run_ret(int error)
{
	return error == -EIO || error == -EBUSY ? -EIO : error;
}

void ccvm_guest_exit_error(struct ccvm_guest *g, int error)
{
	fill_internal_error(g->vcpu, error);
	ccvm_guest_exit(g, internal_error_run_ret(error));
}

void ccvm_guest_enter(struct ccvm_guest *g)
{
	struct ccvm_vcpu *v = g->vcpu;
	struct ccvm_vm *vm = v->vm;
	struct ccvm_sched *s = ccvm_sched_of(vm->p);
	unsigned int busy = 0, mmu_shard;
	long blocked;
	int err;

	for (;;) {
		if (ccvm_vcpu_in_guest(v))
			return;
		err = ccvm_mmu_reload(v);
		if (!err) {
			mmu_shard = ccvm_brlock_rdlock(&vm->mmu_lock);
			err = vcpu_try_enter(v);
			ccvm_brlock_rdunlock(&vm->mmu_lock, mmu_shard);
		}
		if (!err)
			return;
		if (err == ENTRY_BLOCKED) {
			/* Until the removal that blocked entry unblocks it. */
			blocked = atomic_load(&vm->entry_blocked);
			if (blocked > 0)
				ccvm_spin_wait(s, &vm->entry_blocked, blocked, "entry_blocked");
			continue;
		}
		if (err == -EAGAIN && ++busy <= CCVM_FAULT_RETRY_LIMIT) {
			ccvm_sched_yield(s, "vcpu_enter busy");
			continue;
		}
		/* Not in guest mode: exit without entering, then try again. */
		busy = 0;
		if (err == -EAGAIN)
			err = -EBUSY;
		fill_internal_error(v, err);
		guest_exit_no_enter(g, internal_error_run_ret(err));
	}
}

void ccvm_guest_exit(struct ccvm_guest *g, int run_ret)
{
	guest_exit_no_enter(g, run_ret);
	ccvm_guest_enter(g);
}

/* ---- the guest thread ------------------------------------------------------- */

/* The last switch: the thread ends right after, and run joins it. */
static void guest_finish(struct ccvm_guest *g)
{
	struct ccvm_vcpu *v = g->vcpu;

	ccvm_vcpu_leave_guest(v);
	if (g->end != CCVM_GUEST_END_UNWIND)
		exit_account(v, 0);
	ccvm_mutex_lock(&g->lock);
	g->run_ret = 0;
	g->state = CCVM_GUEST_DONE;
	g->guest_turn = false;
	ccvm_cond_signal(&g->vmm_cond);
	ccvm_mutex_unlock(&g->lock);
}

static int guest_thread(void *arg)
{
	struct ccvm_guest *g = arg;

	current_guest = g;
	g->end = CCVM_GUEST_END_RETURN;
	/* Aborts and unwinds longjmp back here with g->end set. */
	if (setjmp(g->start) == 0) {
		ccvm_guest_enter(g);
		g->fn(g, g->arg);
		g->vcpu->run.exit_reason = CCVM_EXIT_DONE;
	}
	guest_finish(g);
	current_guest = NULL;
	return 0;
}

/* ---- run --------------------------------------------------------------------- */

/* vcpu->mutex held. */
static int run_locked(struct ccvm_vcpu *v)
{
	struct ccvm_guest *g = v->guest;
	struct ccvm_vm *vm = v->vm;
	char name[16];				/* "vcpuN", as a thread name */
	bool done;
	int state, ret, err;

	if (v->handle_closed)
		return ccvm_fail_at("ccvm_vcpu_run", -EINVAL, "vCPU %u: the handle is closed",
				    v->id);
	ccvm_mutex_lock(&g->lock);
	state = g->state;
	ccvm_mutex_unlock(&g->lock);
	if (state == CCVM_GUEST_NONE)
		return ccvm_fail_at("ccvm_vcpu_run", -EINVAL, "vCPU %u has no guest: call "
				    "ccvm_vcpu_set_guest() first", v->id);
	if (state == CCVM_GUEST_DONE)
		return ccvm_fail_at("ccvm_vcpu_run", -EINVAL, "vCPU %u: the guest function "
				    "returned (CCVM_EXIT_DONE): set a new one to run again", v->id);
	if (!ccvm_vm_usable(vm) || ccvm_vm_is_dead(vm)) {
		fill_internal_error(v, -EIO);
		return ccvm_fail_at("ccvm_vcpu_run", -EIO, "vCPU %u: VM %u is %s", v->id, vm->id,
				    ccvm_vm_usable(vm) ? "dead" : "bugged");
	}
	/*
	 * The launch order of the backend's capabilities, enforced here for
	 * every backend as KVM's do theirs (TDX: the TD is not runnable before
	 * MR.FINALIZE; SNP: no vCPU runs before LAUNCH_FINISH).
	 */
	if (vm->caps.needs_finalize && !ccvm_vm_is_finalized(vm)) {
		fill_internal_error(v, -EINVAL);
		return ccvm_fail_at("ccvm_vcpu_run", -EINVAL, "vCPU %u: the %s VM is not "
				    "finalized: call ccvm_vm_finalize() after populating, before "
				    "the first run", v->id, vm->caps.name);
	}

	ccvm_vm_vcpu_running(v, true);
	ccvm_mutex_lock(&g->lock);
	g->guest_turn = true;
	g->state = CCVM_GUEST_RUNNING;
	if (state == CCVM_GUEST_READY) {
		/* A controlled thread on a serial platform, from its first step. */
		snprintf(name, sizeof(name), "vcpu%u", v->id);
		err = ccvm_thread_create(vm->p, &g->thread, guest_thread, g, name);
		if (err) {
			g->guest_turn = false;
			g->state = CCVM_GUEST_READY;
			ccvm_mutex_unlock(&g->lock);
			ccvm_vm_vcpu_running(v, false);
			return err;
		}
		g->thread_live = true;
	} else {
		ccvm_cond_signal(&g->guest_cond);
	}
	while (g->guest_turn)
		ccvm_cond_wait(&g->vmm_cond, &g->lock);
	ret = g->run_ret;
	done = g->state == CCVM_GUEST_DONE;
	ccvm_mutex_unlock(&g->lock);
	/* The guest left guest mode before it handed the vCPU back. */
	ccvm_vm_vcpu_running(v, false);

	if (done) {
		ccvm_thread_join(g->thread, NULL);
		g->thread = NULL;
		g->thread_live = false;
	}
	return ret;
}

int ccvm_vcpu_run(struct ccvm_vcpu *v)
{
	struct ccvm_guest *g;
	int ret;

	if (!v)
		return ccvm_fail(-EINVAL, "NULL vcpu");
	if (called_from_own_guest(v))
		return ccvm_fail(-EDEADLK, "vCPU %u: called from its own guest", v->id);
	g = v->guest;
	if (atomic_exchange(&g->in_run, true))
		return ccvm_fail(-EBUSY, "vCPU %u: another thread is in ccvm_vcpu_run()", v->id);
	ccvm_mutex_lock(&v->mutex);
	ret = run_locked(v);
	ccvm_mutex_unlock(&v->mutex);
	atomic_store(&g->in_run, false);
	return ret;
}
