/* SPDX-License-Identifier: MIT */
/*
 * minihv: a small hypervisor in the shape of a KVM VMM, running confidential
 * guests on libccvm, in the per-VM attribute scheme (KVM 6.8 on).
 *
 * The VMM creates a VM with one memslot: guest_memfd-like private backing
 * plus its own memory as the shared backing (userspace_addr).  All guest
 * memory starts PRIVATE.  On a backend with a launch protocol (TDX, SNP) it
 * populates a small boot image and finalizes the VM first.  Each vCPU then
 * runs from a VMM thread of its own, in a loop that switches on the exit
 * reason, exactly as a KVM VMM loops on KVM_RUN.  The guest, the loop and
 * everything but the memory are in minihv.h, which minihv_inplace shares.
 *
 * The VMM answers conversions the way QEMU does: set the attributes, then
 * drop the old backing.  Going shared, even vCPUs' VMM threads punch the
 * private pages out of the gmem file and odd ones keep them, so one run
 * shows both outcomes: whether the old private bytes come back after a
 * round trip depends on that and on the backend (preserves_data_without_punch).
 * Going private, the VMM scrubs its own shared copy.
 *
 *   minihv [--backend mock|tdx|snp] [--vcpus N] [--mem SIZE] [--trace FILE]
 *
 * Exit status: 0 when every guest check passed, 1 otherwise, 2 for usage.
 */
#include <sys/mman.h>

#include "minihv.h"

/* A gmem file for private pages, the VMM's own memory for shared ones. */
static int memory_up(struct vmm *m)
{
	struct ccvm_memory_region slot = {
		.slot = 0,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = MEM_BASE,
		.memory_size = m->mem_size,
	};
	int err = ccvm_gmem_create(m->vm, m->mem_size, 0, &m->gmem);

	if (err)
		return err;
	/* The VMM's own memory backs every shared page (lazily, untouched = free). */
	m->shared = mmap(NULL, m->mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (m->shared == MAP_FAILED) {
		m->shared = NULL;
		return -ENOMEM;
	}
	slot.userspace_addr = m->shared;
	slot.gmem = m->gmem;
	err = ccvm_vm_set_user_memory_region(m->vm, &slot);
	if (!err)
		err = ccvm_vm_set_memory_attributes(m->vm, MEM_BASE, m->mem_size,
						    CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0);
	return err;
}

static void memory_down(struct vmm *m)
{
	if (m->shared)
		munmap(m->shared, m->mem_size);
}

/* Attributes first, then the old backing. */
static int convert(struct vcpu_thread *t, uint64_t gpa, uint64_t size, bool to_private,
		   const char **how)
{
	struct vmm *m = t->vmm;
	int err = ccvm_vm_set_memory_attributes(m->vm, gpa, size,
						to_private ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0);

	if (err)
		return err;
	if (to_private) {
		/* The shared copy is dead: scrub it (QEMU discards the RAM). */
		memset(m->shared + (gpa - MEM_BASE), 0, size);
		*how = ", shared copy scrubbed";
	} else if (t->lay.punch) {
		err = ccvm_gmem_fallocate(m->gmem, CCVM_FALLOC_PUNCH_HOLE | CCVM_FALLOC_KEEP_SIZE,
					  gpa - MEM_BASE, size);
		*how = ", private pages punched";
	} else {
		*how = ", private pages kept";
	}
	return err;
}

static int host_read(struct vmm *m, uint64_t gpa, void *buf, size_t len)
{
	memcpy(buf, m->shared + (gpa - MEM_BASE), len);
	return 0;
}

static int reply(struct vcpu_thread *t, uint64_t gpa, const void *buf, size_t len)
{
	memcpy(t->vmm->shared + (gpa - MEM_BASE), buf, len);
	return 0;
}

/* Even vCPUs punch; the bytes survive where kept and the backend keeps them. */
static void plan(const struct vmm *m, struct layout *l)
{
	l->punch = l->id % 2 == 0;
	l->expect_old_data = !l->punch && m->caps.preserves_data_without_punch;
}

static const struct minihv_ops per_vm_ops = {
	.name = "minihv",
	.attr_scheme = CCVM_ATTR_SCHEME_VM,
	.memory_up = memory_up,
	.memory_down = memory_down,
	.convert = convert,
	.host_read = host_read,
	.reply = reply,
	.plan = plan,
};

int main(int argc, char **argv)
{
	return minihv_main(argc, argv, &per_vm_ops);
}
