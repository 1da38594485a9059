/* SPDX-License-Identifier: MIT */
/*
 * Calling the backend: ccvm_op_<name>(), one inline wrapper per op with the
 * op's own parameters, generated from lib/backend-ops.h, the way KVM calls
 * its vendor code through static_call(kvm_x86_<name>) generated from
 * kvm-x86-ops.h.  The core calls every op through these and nothing else.
 *
 * A wrapper counts the call, and an error result, per platform and per VM
 * (ccvm_op_calls(), ccvm_stats.op_calls/op_errors).  Tracing and failure
 * injection are rare, so they are not tested for on every call: whoever
 * arms one sets a bit in platform->op_hooks, and a wrapper that finds any
 * bit set hands the whole call to the out-of-line bracket in lib/backend.c
 * (ccvm_op_hooked_enter/leave), which counts it the same way, may fail it
 * instead of calling the op, and traces it.  With nothing armed a call
 * costs its counters and one well-predicted branch.  Whatever else must
 * happen at every op call and return goes behind that same branch, as one
 * more op_hooks bit, so the fast path never grows.
 *
 * An OPTIONAL op the backend left NULL is not called: its wrapper returns
 * -EOPNOTSUPP (or nothing), uncounted.  Where a missing op means something
 * else, the caller asks ccvm_has_op() first.
 *
 * Apart from registration and validation (lib/backend.c), this is the one
 * file of the core that reads the backend's table.
 */
#ifndef CCVM_LIB_BACKEND_CALL_H
#define CCVM_LIB_BACKEND_CALL_H

#include "internal.h"

/* Has the backend of @x (a platform or a VM) op @name?  OPTIONAL ones may be NULL. */
#define ccvm_has_op(x, name)	((x)->ops->name != NULL)

/* The backend's per-VM and per-vCPU state sizes, for the core's allocations. */
static inline size_t ccvm_vm_priv_size(const struct ccvm_vm *vm)
{
	return vm->ops->vm_priv_size;
}

static inline size_t ccvm_vcpu_priv_size(const struct ccvm_vm *vm)
{
	return vm->ops->vcpu_priv_size;
}

/* ---- the bracket ------------------------------------------------------- */

/* One op call taking the slow path, from enter to leave. */
struct ccvm_op_call {
	struct ccvm_platform *p;
	struct ccvm_vm *vm;		/* NULL for a platform op */
	enum ccvm_op_index op;
	uint64_t gfn;			/* for the trace */
	uint64_t t0;			/* trace clock at enter, if traced */
	uint64_t sim0;			/* simulated clock at enter, if traced */
	bool traced;
};

/*
 * Count the call, stamp it for the trace, and apply an injection rule.
 * Return: 0 (call the op), or the injected errno to use as its result.
 */
int ccvm_op_hooked_enter(struct ccvm_op_call *c, struct ccvm_platform *p,
			 struct ccvm_vm *vm, enum ccvm_op_index op, uint64_t gfn);
/* Count an error result and trace the call.  Return: @ret. */
int64_t ccvm_op_hooked_leave(struct ccvm_op_call *c, int64_t ret);

static inline bool ccvm_op_hooked(const struct ccvm_platform *p)
{
	return ccvm_unlikely(atomic_load_explicit(&p->op_hooks, memory_order_relaxed) != 0);
}

static inline void ccvm_op_count(struct ccvm_platform *p, struct ccvm_vm *vm,
				 enum ccvm_op_index op)
{
	CCVM_COUNT(&p->stats, op_calls[op], 1);
	if (vm)
		CCVM_COUNT(&vm->stats, op_calls[op], 1);
}

static inline void ccvm_op_count_error(struct ccvm_platform *p, struct ccvm_vm *vm,
				       enum ccvm_op_index op)
{
	CCVM_COUNT(&p->stats, op_errors[op], 1);
	if (vm)
		CCVM_COUNT(&vm->stats, op_errors[op], 1);
}

/* ---- the wrappers ------------------------------------------------------ */

/* Platform, VM (NULL for a platform op) and table of a call, by its ctx. */
#define CCVM_OPCTX_P_PLATFORM(x)	(x)
#define CCVM_OPCTX_VM_PLATFORM(x)	((struct ccvm_vm *)NULL)
#define CCVM_OPCTX_OPS_PLATFORM(x)	((x)->ops)
#define CCVM_OPCTX_P_VM(x)		((x)->p)
#define CCVM_OPCTX_VM_VM(x)		(x)
#define CCVM_OPCTX_OPS_VM(x)		((x)->ops)
#define CCVM_OPCTX_P_VCPU(x)		((x)->vm->p)
#define CCVM_OPCTX_VM_VCPU(x)		((x)->vm)
#define CCVM_OPCTX_OPS_VCPU(x)		((x)->vm->ops)

#define CCVM_OP_MAY_BE_NULL_MANDATORY		0
#define CCVM_OP_MAY_BE_NULL_OPTIONAL		1
#define CCVM_OP_MAY_BE_NULL_OPTIONAL_RET0	0

/* A counted op returning @type: 0 or a negative errno (or a length). */
#define CCVM_OP_WRAPPER_RETURNING(type, name, kind, ctx, gfn, params, args)	\
static inline type ccvm_op_##name params					\
{										\
	struct ccvm_platform *p_ = CCVM_OPCTX_P_##ctx;				\
	struct ccvm_vm *vm_ = CCVM_OPCTX_VM_##ctx;				\
	const struct ccvm_backend_ops *ops_ = CCVM_OPCTX_OPS_##ctx;		\
	struct ccvm_op_call c_;							\
	type ret_;								\
										\
	if (CCVM_OP_MAY_BE_NULL_##kind && !ops_->name)				\
		return -EOPNOTSUPP;						\
	if (ccvm_op_hooked(p_)) {						\
		ret_ = ccvm_op_hooked_enter(&c_, p_, vm_, CCVM_OPI_##name, gfn); \
		if (!ret_)							\
			ret_ = ops_->name args;					\
		return (type)ccvm_op_hooked_leave(&c_, ret_);			\
	}									\
	ccvm_op_count(p_, vm_, CCVM_OPI_##name);				\
	ret_ = ops_->name args;							\
	if (ccvm_unlikely(ret_ < 0))						\
		ccvm_op_count_error(p_, vm_, CCVM_OPI_##name);			\
	return ret_;								\
}

#define CCVM_OP_WRAPPER_INT(name, kind, ctx, gfn, params, args)		\
	CCVM_OP_WRAPPER_RETURNING(int, name, kind, ctx, gfn, params, args)
#define CCVM_OP_WRAPPER_I64(name, kind, ctx, gfn, params, args)		\
	CCVM_OP_WRAPPER_RETURNING(int64_t, name, kind, ctx, gfn, params, args)

/* A counted op that cannot fail (no injection rule can name it). */
#define CCVM_OP_WRAPPER_VOID(name, kind, ctx, gfn, params, args)		\
static inline void ccvm_op_##name params					\
{										\
	struct ccvm_platform *p_ = CCVM_OPCTX_P_##ctx;				\
	struct ccvm_vm *vm_ = CCVM_OPCTX_VM_##ctx;				\
	const struct ccvm_backend_ops *ops_ = CCVM_OPCTX_OPS_##ctx;		\
	struct ccvm_op_call c_;							\
										\
	if (CCVM_OP_MAY_BE_NULL_##kind && !ops_->name)				\
		return;								\
	if (ccvm_op_hooked(p_)) {						\
		ccvm_op_hooked_enter(&c_, p_, vm_, CCVM_OPI_##name, gfn);	\
		ops_->name args;						\
		ccvm_op_hooked_leave(&c_, 0);					\
		return;								\
	}									\
	ccvm_op_count(p_, vm_, CCVM_OPI_##name);				\
	ops_->name args;							\
}

/* Not counted, traced or injectable (see backend-ops.h). */
#define CCVM_OP_WRAPPER_DIRECT_INT(name, kind, ctx, gfn, params, args)	\
static inline int ccvm_op_##name params					\
{										\
	const struct ccvm_backend_ops *ops_ = CCVM_OPCTX_OPS_##ctx;		\
										\
	if (CCVM_OP_MAY_BE_NULL_##kind && !ops_->name)				\
		return -EOPNOTSUPP;						\
	return ops_->name args;							\
}

#define CCVM_OP_WRAPPER_DIRECT_VOID(name, kind, ctx, gfn, params, args)	\
static inline void ccvm_op_##name params					\
{										\
	const struct ccvm_backend_ops *ops_ = CCVM_OPCTX_OPS_##ctx;		\
										\
	if (CCVM_OP_MAY_BE_NULL_##kind && !ops_->name)				\
		return;								\
	ops_->name args;							\
}

#define CCVM_BACKEND_OP(name, kind, call, ctx, gfn, params, args)		\
	CCVM_OP_WRAPPER_##call(name, kind, ctx, gfn, params, args)
#include "backend-ops.h"

#endif /* CCVM_LIB_BACKEND_CALL_H */
