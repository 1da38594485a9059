/* SPDX-License-Identifier: MIT */
/*
 * The backend table: built-in backends listed explicitly (constructor-based
 * self-registration would vanish from a static archive), registration-time
 * validation and default fill-in generated from backend-ops.h, failure
 * injection, and the out-of-line half of the op-call bracket of
 * backend-call.h (the calls made while a trace or an injection is armed).
 */
#include <stdlib.h>
#include <string.h>

#include "backend-call.h"
#include "scheduler.h"

extern const struct ccvm_backend_ops ccvm_mock_backend_ops;
extern const struct ccvm_backend_ops ccvm_snp_backend_ops;
extern const struct ccvm_backend_ops ccvm_tdx_backend_ops;

static const struct ccvm_backend_ops *const builtin_backends[] = {
	&ccvm_mock_backend_ops,
	&ccvm_tdx_backend_ops,
	&ccvm_snp_backend_ops,
};

#define MAX_REGISTERED	8

/* Process-wide, no platform's: a plain mutex in both modes. */
static struct ccvm_mutex registry_lock = CCVM_MUTEX_INITIALIZER("registry_lock");
static struct ccvm_backend_ops registered[MAX_REGISTERED];
static unsigned int nr_registered;
static const char *backend_names[CCVM_ARRAY_SIZE(builtin_backends) + MAX_REGISTERED + 1];

const char *const ccvm_op_names[CCVM_OPI_NR] = {
#define CCVM_BACKEND_OP(name, ...) [CCVM_OPI_##name] = #name,
#include "backend-ops.h"
};

/* Ops an injection rule may fail: the counted ones that return an errno. */
#define INJECTABLE_INT		true
#define INJECTABLE_I64		true
#define INJECTABLE_VOID		false
#define INJECTABLE_DIRECT_INT	false
#define INJECTABLE_DIRECT_VOID	false
static const bool op_injectable[CCVM_OPI_NR] = {
#define CCVM_BACKEND_OP(name, kind, call, ...) [CCVM_OPI_##name] = INJECTABLE_##call,
#include "backend-ops.h"
};

/* backend-ops.h says of each op what struct ccvm_backend_ops says. */
#define RET_TYPE_INT		int
#define RET_TYPE_I64		int64_t
#define RET_TYPE_VOID		void
#define RET_TYPE_DIRECT_INT	int
#define RET_TYPE_DIRECT_VOID	void
#define CCVM_BACKEND_OP(name, kind, call, ctx, gfn, params, args)		\
	_Static_assert(_Generic(((struct ccvm_backend_ops *)0)->name,		\
				RET_TYPE_##call (*)params: 1, default: 0),	\
		       "lib/backend-ops.h: the entry of " #name " does not match "	\
		       "struct ccvm_backend_ops");
#include "backend-ops.h"

/* The default of each OPTIONAL_RET0 op: ret0_<name>(), returning 0. */
#define RET0_MANDATORY(name, params)
#define RET0_OPTIONAL(name, params)
#define RET0_OPTIONAL_RET0(name, params) static int ret0_##name params { return 0; }
#define CCVM_BACKEND_OP(name, kind, call, ctx, gfn, params, args) RET0_##kind(name, params)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "backend-ops.h"
#pragma GCC diagnostic pop

/* The smallest table a backend of ABI major 1 may hand us. */
#define OPS_SIZE_V1	(offsetof(struct ccvm_backend_ops, host_ciphertext) + \
			 sizeof(void (*)(void)))

int ccvm_backend_validate(const struct ccvm_backend_ops *ops,
			  struct ccvm_backend_ops *out)
{
	struct ccvm_backend_ops v;

	if (!ops)
		return -EINVAL;
	if ((ops->abi_version >> 16) != CCVM_BACKEND_ABI_MAJOR) {
		ccvm_log(CCVM_LOG_WARN, "backend %s: ABI major %u, expected %u",
			 ops->name ? ops->name : "?", ops->abi_version >> 16,
			 CCVM_BACKEND_ABI_MAJOR);
		return -EINVAL;
	}
	if (ops->size < OPS_SIZE_V1) {
		ccvm_log(CCVM_LOG_WARN, "backend %s: ops table of %u bytes is too small",
			 ops->name ? ops->name : "?", ops->size);
		return -EINVAL;
	}
	if (!ops->name || !ops->name[0])
		return -EINVAL;

	/* A newer backend's extra ops are not ours to call: copy what we know. */
	memset(&v, 0, sizeof(v));
	memcpy(&v, ops, ops->size < sizeof(v) ? ops->size : sizeof(v));

#define FILL_MANDATORY(op)						\
	if (!v.op) {							\
		ccvm_log(CCVM_LOG_WARN, "backend %s: mandatory op %s missing", \
			 ops->name, #op);				\
		return -EINVAL;						\
	}
#define FILL_OPTIONAL(op)
#define FILL_OPTIONAL_RET0(op)	if (!v.op) v.op = ret0_##op;
#define CCVM_BACKEND_OP(op, kind, ...) FILL_##kind(op)
#include "backend-ops.h"
#undef FILL_MANDATORY
#undef FILL_OPTIONAL
#undef FILL_OPTIONAL_RET0

	{
		struct ccvm_backend_caps caps = { .sz = sizeof(caps) };

		v.get_caps(NULL, &caps);
		if (caps.has_mirror_root &&
		    (!v.link_private_spt || !v.set_private_spte ||
		     !v.remove_private_spte || !v.free_private_spt)) {
			ccvm_log(CCVM_LOG_WARN,
				 "backend %s: a mirror root needs all four mirror ops",
				 v.name);
			return -EINVAL;
		}
	}
	v.size = sizeof(v);
	if (out)
		*out = v;
	return 0;
}

const struct ccvm_backend_ops *ccvm_backend_lookup(const char *name)
{
	const struct ccvm_backend_ops *found = NULL;
	unsigned int i;

	if (!name)
		name = "mock";
	for (i = 0; i < CCVM_ARRAY_SIZE(builtin_backends); i++)
		if (!strcmp(builtin_backends[i]->name, name))
			return builtin_backends[i];
	ccvm_mutex_lock(&registry_lock);
	for (i = 0; i < nr_registered; i++)
		if (!strcmp(registered[i].name, name))
			found = &registered[i];
	ccvm_mutex_unlock(&registry_lock);
	return found;
}

int ccvm_backend_register(const struct ccvm_backend_ops *ops)
{
	struct ccvm_backend_ops v;
	unsigned int i;
	int err;

	err = ccvm_backend_validate(ops, &v);
	if (err)
		return err;
	for (i = 0; i < CCVM_ARRAY_SIZE(builtin_backends); i++)
		if (!strcmp(builtin_backends[i]->name, v.name))
			return -EEXIST;
	/* Look and add under one lock, so two registrations cannot both win. */
	ccvm_mutex_lock(&registry_lock);
	for (i = 0; i < nr_registered && !err; i++)
		if (!strcmp(registered[i].name, v.name))
			err = -EEXIST;
	if (!err && nr_registered == MAX_REGISTERED)
		err = -ENOSPC;
	/* Entries are never removed, so pointers handed out stay valid. */
	if (!err)
		registered[nr_registered++] = v;
	ccvm_mutex_unlock(&registry_lock);
	return err;
}

const char *const *ccvm_backend_names(void)
{
	unsigned int i, n = 0;

	ccvm_mutex_lock(&registry_lock);
	for (i = 0; i < CCVM_ARRAY_SIZE(builtin_backends); i++)
		backend_names[n++] = builtin_backends[i]->name;
	for (i = 0; i < nr_registered; i++)
		backend_names[n++] = registered[i].name;
	backend_names[n] = NULL;
	ccvm_mutex_unlock(&registry_lock);
	return backend_names;
}

int ccvm_backend_caps(const char *name, struct ccvm_backend_caps *caps)
{
	const struct ccvm_backend_ops *ops;
	struct ccvm_backend_caps c;
	size_t sz;

	if (!caps || caps->sz < offsetof(struct ccvm_backend_caps, name))
		return -EINVAL;
	ops = ccvm_backend_lookup(name);
	if (!ops)
		return -ENOENT;
	sz = caps->sz < sizeof(c) ? caps->sz : sizeof(c);
	memset(&c, 0, sizeof(c));
	c.sz = sizeof(c);
	ops->get_caps(NULL, &c);
	c.name = ops->name;
	memcpy(caps, &c, sz);
	caps->sz = sz;
	return 0;
}

const char *ccvm_backend_op_name(unsigned int op)
{
	return op < CCVM_OPI_NR ? ccvm_op_names[op] : NULL;
}

/* ---- injection and the slow op-call bracket ------------------------- */

static int op_index(const char *name)
{
	unsigned int i;

	if (!name)
		return -EINVAL;
	for (i = 0; i < CCVM_OPI_NR; i++)
		if (!strcmp(ccvm_op_names[i], name))
			return (int)i;
	return -ENOENT;
}

int ccvm_inject_op_failure(struct ccvm_platform *p, const char *op_name,
			   uint64_t nth, int err, uint64_t count)
{
	struct ccvm_inject_rule *r;
	unsigned int i;
	bool armed = false;
	int op;

	if (!p || err > 0)
		return -EINVAL;
	op = op_index(op_name);
	if (op < 0)
		return op;
	if (!op_injectable[op])
		return -EINVAL;

	ccvm_mutex_lock(&p->inject_lock);
	r = &p->inject[op];
	atomic_store(&r->calls, 0);
	r->nth = nth ? nth : 1;
	r->count = err ? (count ? count : UINT64_MAX) : 0;
	r->err = err;
	for (i = 0; i < CCVM_OPI_NR; i++)
		armed |= p->inject[i].count != 0;
	ccvm_op_hooks_set(p, CCVM_OP_HOOK_INJECT, armed);
	ccvm_mutex_unlock(&p->inject_lock);
	return 0;
}

int64_t ccvm_op_calls(struct ccvm_platform *p, const char *op_name)
{
	int op;

	if (!p)
		return -EINVAL;
	op = op_index(op_name);
	if (op < 0)
		return -EINVAL;
	return (int64_t)ccvm_counters_op_calls(&p->stats, op);
}

static int inject_check(struct ccvm_platform *p, enum ccvm_op_index op)
{
	struct ccvm_inject_rule *r = &p->inject[op];
	int err = 0;

	ccvm_mutex_lock(&p->inject_lock);
	if (r->count) {
		uint64_t n = atomic_fetch_add(&r->calls, 1) + 1;

		if (n >= r->nth) {
			err = r->err;
			if (r->count != UINT64_MAX)
				r->count--;
		}
	}
	ccvm_mutex_unlock(&p->inject_lock);
	return err;
}

int ccvm_op_hooked_enter(struct ccvm_op_call *c, struct ccvm_platform *p,
			 struct ccvm_vm *vm, enum ccvm_op_index op, uint64_t gfn)
{
	unsigned int hooks = atomic_load_explicit(&p->op_hooks, memory_order_relaxed);

	c->p = p;
	c->vm = vm;
	c->op = op;
	c->gfn = gfn;
	c->t0 = 0;
	c->traced = false;
	/*
	 * A backend op is one step of the hardware or the vendor code: the call
	 * is a scheduling point, so every SEAMCALL or RMPUPDATE is an
	 * interleaving boundary.  It touches the machine (CCVM_SCHED_HW):
	 * backend and hardware state; so does every step inside the op.
	 */
	if (hooks & CCVM_OP_HOOK_SCHED) {
		ccvm_sched_point(p->sched, CCVM_SCHED_HW(p->sched), ccvm_op_names[op]);
		/* Mid-op states (module locks, an RMP update) are not quiescent. */
		ccvm_sched_busy_enter(p->sched, c, ccvm_op_names[op]);
	}
	ccvm_op_count(p, vm, op);
	if (ccvm_tracing(p)) {
		c->traced = true;
		c->t0 = ccvm_trace_clock(p);
		c->sim0 = ccvm_counters_sim_ns(&p->stats, &p->costs);
	}
	if (hooks & CCVM_OP_HOOK_INJECT)
		return inject_check(p, op);
	return 0;
}

int64_t ccvm_op_hooked_leave(struct ccvm_op_call *c, int64_t ret)
{
	if (atomic_load_explicit(&c->p->op_hooks, memory_order_relaxed) & CCVM_OP_HOOK_SCHED) {
		ccvm_sched_busy_leave(c->p->sched, c);
		ccvm_sched_point(c->p->sched, CCVM_SCHED_HW(c->p->sched), ccvm_op_names[c->op]);
	}
	if (ret < 0)
		ccvm_op_count_error(c->p, c->vm, c->op);
	if (c->traced && ccvm_tracing(c->p)) {
		uint64_t now = ccvm_trace_clock(c->p);
		uint64_t sim = ccvm_counters_sim_ns(&c->p->stats, &c->p->costs);
		struct ccvm_trace_record rec = {
			.kind = CCVM_TRACE_OP,
			.id = c->op,
			.name = ccvm_op_names[c->op],
			.vm_id = c->vm ? c->vm->id : 0,
			.vcpu_id = ccvm_trace_vcpu_id(),
			.gfn = c->gfn,
			.ret = ret,
			.sim_ns = sim,
			.wall_ns = c->t0,
			.dur_ns = now - c->t0,
			.sim_dur_ns = sim > c->sim0 ? sim - c->sim0 : 0,
		};
		ccvm_trace_emit(c->p, &rec);
	}
	return ret;
}
