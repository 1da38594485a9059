/* SPDX-License-Identifier: MIT */
/*
 * minihv_inplace: minihv for the in-place conversion scheme (the guest_memfd
 * series that moves PRIVATE from the VM to each guest_memfd).
 *
 * What changes for the VMM, and what this program shows:
 *   - one allocation for guest memory: a guest_memfd created with MMAP,
 *     bound to a GMEM_ONLY memslot (no userspace_addr).  Shared pages are
 *     the file's own pages, reached by the guest through its shared alias
 *     and by the VMM through the file (ccvm_gmem_read/write, standing for
 *     an mmap of it); there is no second, shared copy of guest memory;
 *   - conversions go to the file, KVM_SET_MEMORY_ATTRIBUTES2 on its offset
 *     (ccvm_gmem_set_memory_attributes()), and no punch follows: the page
 *     changes state where it is;
 *   - a conversion to private fails with -EAGAIN while the host holds a
 *     reference on a page (a device's DMA pin, a GUP): the error offset
 *     names the page, the VMM drops the reference and tries again;
 *   - touching a private page through the file is a SIGBUS (-EFAULT here,
 *     with the faulting offset).
 * The guest and the KVM_RUN loop are minihv's (minihv.h): the guest
 * checks the boot image, accepts and fills its private memory, shares a
 * bounce buffer with MAP_GPA_RANGE, exchanges messages through it,
 * converts it back and checks what the backend left there (the bytes on
 * mock and SNP's model, zeros on TDX), and writes one
 * page through its shared alias unasked (a memory-fault exit on backends
 * with a shared bit, which the VMM answers by converting).
 *
 *   minihv_inplace [--backend mock|tdx|snp] [--vcpus N] [--mem SIZE] [--trace FILE]
 *
 * Exit status: 0 when every guest check passed, 1 otherwise, 2 for usage.
 */
#include "minihv.h"

/* One gmem file, mmap-able, bound GMEM_ONLY: no userspace_addr. */
static int memory_up(struct vmm *m)
{
	struct ccvm_memory_region slot = {
		.slot = 0,
		.flags = CCVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = MEM_BASE,
		.memory_size = m->mem_size,
	};
	/* MMAP: the VMM reaches the shared pages through the file.  PRIVATE at first. */
	int err = ccvm_gmem_create(m->vm, m->mem_size, CCVM_GMEM_FLAG_MMAP, &m->gmem);

	if (err)
		return err;
	slot.gmem = m->gmem;
	return ccvm_vm_set_user_memory_region(m->vm, &slot);
}

static void memory_down(struct vmm *m)
{
	(void)m;	/* nothing besides the file */
}

/*
 * In place, on the file; nothing to punch or scrub.  A page the host still
 * holds refuses a conversion to private: drop the reference (here, the
 * device's pin on the reply page) and try again.
 */
static int convert(struct vcpu_thread *t, uint64_t gpa, uint64_t size, bool to_private,
		   const char **how)
{
	struct vmm *m = t->vmm;
	struct ccvm_memory_attributes2 a;
	int err, tries;

	*how = " in place";
	for (tries = 0; tries < 2; tries++) {
		memset(&a, 0, sizeof(a));
		a.offset = gpa - MEM_BASE;
		a.size = size;
		a.attributes = to_private ? CCVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
		err = ccvm_gmem_set_memory_attributes(m->gmem, &a);
		if (err != -EAGAIN || !t->pinned)
			return err;
		vmm_print(t, "to private: page at offset %#" PRIx64 " is pinned; unpinning",
			  (uint64_t)a.error_offset);
		err = ccvm_gmem_unpin(m->gmem, a.error_offset, PAGE);
		if (err)
			return err;
		t->pinned = false;
	}
	return -EAGAIN;
}

/* Through the file's mapping, which refuses private pages. */
static int host_read(struct vmm *m, uint64_t gpa, void *buf, size_t len)
{
	return ccvm_gmem_read(m->gmem, gpa - MEM_BASE, buf, len);
}

/* A device DMAs the reply: it pins the page (GUP) and keeps it. */
static int reply(struct vcpu_thread *t, uint64_t gpa, const void *buf, size_t len)
{
	struct ccvm_gmem *gm = t->vmm->gmem;
	uint64_t neighbour = t->lay.neighbour - MEM_BASE, off = 0;
	uint8_t b;
	int err = ccvm_gmem_pin(gm, gpa - MEM_BASE, PAGE);

	if (err)
		return err;
	t->pinned = true;
	err = ccvm_gmem_write(gm, gpa - MEM_BASE, buf, len);
	if (err)
		return err;
	/* The neighbour is private: the file refuses the host (SIGBUS), naming it. */
	if (ccvm_gmem_access(gm, neighbour, &b, 1, 0, &off) != -EFAULT || off != neighbour) {
		vmm_print(t, "sync: a private page was readable through the file");
		return -EIO;
	}
	return 0;
}

/* The page stays where it is: the hardware decides what survives. */
static void plan(const struct vmm *m, struct layout *l)
{
	l->punch = false;
	l->expect_old_data = m->caps.preserves_data_without_punch;
}

/* Host memory behind guest memory: the file's pages, and nothing else. */
static void report(struct vmm *m)
{
	struct ccvm_gmem_info gi = { .sz = sizeof(gi) };

	if (ccvm_gmem_get_info(m->gmem, &gi))
		return;
	printf("host memory for guest memory: %" PRIu64 " KiB in the guest_memfd (%" PRIu64
	       " of %" PRIu64 " pages private), no separate shared mapping\n",
	       (uint64_t)(gi.nr_pages * PAGE >> 10), gi.nr_private, (uint64_t)(gi.size / PAGE));
}

static const struct minihv_ops in_place_ops = {
	.name = "minihv_inplace",
	.attr_scheme = CCVM_ATTR_SCHEME_GMEM,
	.memory_up = memory_up,
	.memory_down = memory_down,
	.convert = convert,
	.host_read = host_read,
	.reply = reply,
	.plan = plan,
	.report = report,
};

int main(int argc, char **argv)
{
	return minihv_main(argc, argv, &in_place_ops);
}
