/* SPDX-License-Identifier: MIT */
/*
 * The backend table: built-in backends listed explicitly (constructor-based
 * self-registration would vanish from a static archive), registration-time
 * validation and default fill-in generated from backend-ops.h, and the op
 * dispatch bracket that counts, injects failures and traces.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

extern const struct ccvm_backend_ops ccvm_mock_backend_ops;
extern const struct ccvm_backend_ops ccvm_snp_backend_ops;
extern const struct ccvm_backend_ops ccvm_tdx_backend_ops;

static const struct ccvm_backend_ops *const builtin_backends[] = {
	&ccvm_mock_backend_ops,
	&ccvm_tdx_backend_ops,
	&ccvm_snp_backend_ops,
};

#define MAX_REGISTERED	8

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ccvm_backend_ops registered[MAX_REGISTERED];
static unsigned int nr_registered;
static const char *backend_names[CCVM_ARRAY_SIZE(builtin_backends) + MAX_REGISTERED + 1];

const char *const ccvm_op_names[CCVM_OPI_NR] = {
#define CCVM_BACKEND_OP(name, kind, ret) [CCVM_OPI_##name] = #name,
#include "backend-ops.h"
#undef CCVM_BACKEND_OP
};

static const bool op_returns_int[CCVM_OPI_NR] = {
#define CCVM_BACKEND_OP(name, kind, ret) [CCVM_OPI_##name] = CCVM_RET_IS_##ret,
#define CCVM_RET_IS_INT		true
#define CCVM_RET_IS_VOID	false
#include "backend-ops.h"
#undef CCVM_BACKEND_OP
};

/*
 * Defaults for OPTIONAL_RET0 ops.  Each needs its own signature, so they
 * are written out; the fill-in below refers to them by op name.
 */
static int ret0_platform_init(struct ccvm_platform *p) { (void)p; return 0; }
static int ret0_vm_init(struct ccvm_vm *vm) { (void)vm; return 0; }
static int ret0_vcpu_create(struct ccvm_vcpu *v) { (void)v; return 0; }
static int ret0_vcpu_enter(struct ccvm_vcpu *v) { (void)v; return 0; }

static int ret0_gmem_prepare(struct ccvm_vm *vm, uint64_t pfn, uint64_t gfn, int order)
{
	(void)vm; (void)pfn; (void)gfn; (void)order;
	return 0;
}

static int ret0_gmem_defer_removal(struct ccvm_vm *vm, struct ccvm_gmem_inode *inode)
{
	(void)vm; (void)inode;
	return 0;
}

static int ret0_pre_set_mem_attr(struct ccvm_vm *vm, uint64_t start, uint64_t end,
				 uint64_t attrs)
{
	(void)vm; (void)start; (void)end; (void)attrs;
	return 0;
}

static int ret0_update_mem_attr(struct ccvm_vm *vm, struct ccvm_memslot *slot,
				uint64_t attrs, uint64_t start, uint64_t end)
{
	(void)vm; (void)slot; (void)attrs; (void)start; (void)end;
	return 0;
}

static int ret0_max_mapping_level(struct ccvm_vm *vm, uint64_t pfn, bool is_private)
{
	(void)vm; (void)pfn; (void)is_private;
	return 0;
}

static int ret0_guest_accept(struct ccvm_vcpu *v, uint64_t gfn, uint64_t pfn, bool mapped)
{
	(void)v; (void)gfn; (void)pfn; (void)mapped;
	return 0;
}

static int ret0_guest_access(struct ccvm_vcpu *v, uint64_t gfn, uint64_t pfn,
			     bool is_private, bool write)
{
	(void)v; (void)gfn; (void)pfn; (void)is_private; (void)write;
	return 0;
}

static int ret0_host_access(struct ccvm_platform *p, uint64_t pfn, bool write)
{
	(void)p; (void)pfn; (void)write;
	return 0;
}

static int ret0_check_invariants(struct ccvm_vm *vm, struct ccvm_invariant_report *r)
{
	(void)vm; (void)r;
	return 0;
}

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
#define CCVM_BACKEND_OP(op, kind, ret) FILL_##kind(op)
#include "backend-ops.h"
#undef CCVM_BACKEND_OP
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
	pthread_mutex_lock(&registry_lock);
	for (i = 0; i < nr_registered; i++)
		if (!strcmp(registered[i].name, name))
			found = &registered[i];
	pthread_mutex_unlock(&registry_lock);
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
	pthread_mutex_lock(&registry_lock);
	for (i = 0; i < nr_registered && !err; i++)
		if (!strcmp(registered[i].name, v.name))
			err = -EEXIST;
	if (!err && nr_registered == MAX_REGISTERED)
		err = -ENOSPC;
	/* Entries are never removed, so pointers handed out stay valid. */
	if (!err)
		registered[nr_registered++] = v;
	pthread_mutex_unlock(&registry_lock);
	return err;
}

const char *const *ccvm_backend_names(void)
{
	unsigned int i, n = 0;

	pthread_mutex_lock(&registry_lock);
	for (i = 0; i < CCVM_ARRAY_SIZE(builtin_backends); i++)
		backend_names[n++] = builtin_backends[i]->name;
	for (i = 0; i < nr_registered; i++)
		backend_names[n++] = registered[i].name;
	backend_names[n] = NULL;
	pthread_mutex_unlock(&registry_lock);
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

/* ---- dispatch, counting and injection ------------------------------ */

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
	if (!op_returns_int[op])
		return -EINVAL;

	pthread_mutex_lock(&p->inject_lock);
	r = &p->inject[op];
	atomic_store(&r->calls, 0);
	r->nth = nth ? nth : 1;
	r->count = err ? (count ? count : UINT64_MAX) : 0;
	r->err = err;
	for (i = 0; i < CCVM_OPI_NR; i++)
		armed |= p->inject[i].count != 0;
	atomic_store(&p->inject_armed, armed);
	pthread_mutex_unlock(&p->inject_lock);
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
	return (int64_t)atomic_load(&p->stats.op_calls[op]);
}

static int inject_check(struct ccvm_platform *p, enum ccvm_op_index op)
{
	struct ccvm_inject_rule *r = &p->inject[op];
	int err = 0;

	pthread_mutex_lock(&p->inject_lock);
	if (r->count) {
		uint64_t n = atomic_fetch_add(&r->calls, 1) + 1;

		if (n >= r->nth) {
			err = r->err;
			if (r->count != UINT64_MAX)
				r->count--;
		}
	}
	pthread_mutex_unlock(&p->inject_lock);
	return err;
}

static void op_count(struct ccvm_platform *p, struct ccvm_vm *vm, enum ccvm_op_index op)
{
	atomic_fetch_add_explicit(&p->stats.op_calls[op], 1, memory_order_relaxed);
	if (vm)
		atomic_fetch_add_explicit(&vm->stats.op_calls[op], 1, memory_order_relaxed);
}

int ccvm_op_enter(struct ccvm_op_call *c, struct ccvm_platform *p, struct ccvm_vm *vm,
		  enum ccvm_op_index op, uint64_t gfn)
{
	c->p = p;
	c->vm = vm;
	c->op = op;
	c->gfn = gfn;
	c->t0 = 0;
	op_count(p, vm, op);
	if (ccvm_tracing(p))
		c->t0 = ccvm_now_ns();
	if (ccvm_unlikely(atomic_load_explicit(&p->inject_armed, memory_order_relaxed)))
		return inject_check(p, op);
	return 0;
}

int ccvm_op_leave(struct ccvm_op_call *c, int ret)
{
	if (ret < 0) {
		atomic_fetch_add_explicit(&c->p->stats.op_errors[c->op], 1,
					  memory_order_relaxed);
		if (c->vm)
			atomic_fetch_add_explicit(&c->vm->stats.op_errors[c->op], 1,
						  memory_order_relaxed);
	}
	if (c->t0 && ccvm_tracing(c->p)) {
		uint64_t now = ccvm_now_ns();
		struct ccvm_trace_record rec = {
			.kind = CCVM_TRACE_OP,
			.id = c->op,
			.name = ccvm_op_names[c->op],
			.vm_id = c->vm ? c->vm->id : 0,
			.vcpu_id = -1,
			.gfn = c->gfn,
			.ret = ret,
			.wall_ns = c->t0,
			.dur_ns = now - c->t0,
		};
		ccvm_trace_emit(c->p, &rec);
	}
	return ret;
}

void ccvm_op_note(struct ccvm_platform *p, struct ccvm_vm *vm, enum ccvm_op_index op,
		  uint64_t gfn)
{
	op_count(p, vm, op);
	if (ccvm_tracing(p)) {
		struct ccvm_trace_record rec = {
			.kind = CCVM_TRACE_OP,
			.id = op,
			.name = ccvm_op_names[op],
			.vm_id = vm ? vm->id : 0,
			.vcpu_id = -1,
			.gfn = gfn,
			.wall_ns = ccvm_now_ns(),
		};
		ccvm_trace_emit(p, &rec);
	}
}
