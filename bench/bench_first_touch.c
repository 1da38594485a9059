/* SPDX-License-Identifier: MIT */
/*
 * bench_first_touch: what a guest's first touch of a 4 KiB page of private
 * memory costs in the model, against the real KVM on this host.
 *
 * libccvm: one vCPU of a mock and of a TDX VM writes one word into every
 * page of 64 MiB of private memory (TDX accepts the range first, as a TD's
 * kernel does, so each page is a PAGE.AUG fault and an ACCEPT); the time
 * per page is the guest's, from its start to its sync exit.  The simulated
 * RAM is in transparent huge pages (CCVM_PLATFORM_RAM_THP) and, as a
 * second figure, in 4 KiB pages, where the host's own page fault on the
 * lazily mapped RAM is part of the cost.  A third figure, not judged,
 * has the RAM resident from the platform's creation
 * (CCVM_PLATFORM_RAM_POPULATE): the difference to the first is the host
 * kernel zeroing the huge pages the guest touches first, which is not the
 * model's work but is part of what a user of lazily mapped RAM pays.
 *
 * Real KVM: a 64-bit guest at CPL3 (which runs natively on these hosts'
 * KVM, where CPL0 code is emulated) writes one byte into every page of
 * 64 MiB of fresh anonymous memory behind a plain memslot, then exits with
 * an OUT: every page is a guest page fault in KVM plus the host's first
 * touch.  When /dev/kvm cannot be opened, or the guest cannot be set up,
 * the program says so in one line and the goal is reported as skipped.
 *
 * A second real figure, not judged, has the slot's memory populated
 * before the guest runs (MADV_POPULATE_WRITE): its difference to the first
 * is the host kernel's own page fault on fresh anonymous memory, which on
 * the nested virtual machines these benches run on is most of the real
 * first touch.  Next to the model's resident-RAM figure it compares the two
 * with neither paying the host for a fresh page.
 *
 * Goal (issue: vCPUs that scale): the model's first touch at least 40x
 * cheaper than the real one.  Each figure is the best of REPS runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <ccvm/ccvm.h>

#define MIB		(1ull << 20)
#define PAGE		4096ull
#define TOUCH_BYTES	(64 * MIB)
#define REPS		3
#define GOAL		40.0

#define CHECK(expr)								\
	do {									\
		int err_ = (expr);						\
		if (err_) {							\
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__,	\
				#expr, ccvm_strerror(err_));			\
			exit(EXIT_FAILURE);					\
		}								\
	} while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- libccvm --------------------------------------------------------------- */

struct touch {
	bool accept;
	uint64_t t0, t1;	/* the guest's own clock reads */
};

static void touch_guest(struct ccvm_guest *g, void *arg)
{
	struct touch *t = arg;
	uint64_t off, word = 1;

	t->t0 = now_ns();
	if (t->accept)
		CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, 0, TOUCH_BYTES) == 0);
	for (off = 0; off < TOUCH_BYTES; off += PAGE)
		CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, off, &word, sizeof(word)) == 0);
	t->t1 = now_ns();
	ccvm_guest_sync(g, 1);
}

/* ns per page of one run on @backend. */
static double ccvm_touch_once(const char *backend, uint64_t flags)
{
	struct ccvm_platform_opts po = CCVM_OPTS_INIT(struct ccvm_platform_opts,
						      .backend = backend,
						      .mem_bytes = 2 * TOUCH_BYTES + 64 * MIB,
						      .flags = flags);
	struct ccvm_memory_region mr = { .slot = 0, .flags = CCVM_MEM_GUEST_MEMFD,
					 .memory_size = TOUCH_BYTES };
	struct ccvm_backend_caps caps = { .sz = sizeof(caps) };
	struct ccvm_platform *p;
	struct ccvm_vcpu *v;
	struct ccvm_gmem *g;
	struct ccvm_vm *vm;
	struct touch t = { 0 };
	struct ccvm_run *run;
	void *shared;

	shared = mmap(NULL, TOUCH_BYTES, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (shared == MAP_FAILED)
		exit(EXIT_FAILURE);
	CHECK(ccvm_platform_create(&po, &p));
	CHECK(ccvm_vm_create(p, NULL, &vm));
	CHECK(ccvm_vm_caps(vm, &caps));
	t.accept = caps.requires_accept;
	CHECK(ccvm_gmem_create(vm, TOUCH_BYTES, 0, &g));
	mr.gmem = g;
	mr.userspace_addr = shared;
	CHECK(ccvm_vm_set_user_memory_region(vm, &mr));
	CHECK(ccvm_vm_set_memory_attributes(vm, 0, TOUCH_BYTES, CCVM_MEMORY_ATTRIBUTE_PRIVATE, 0));
	CHECK(ccvm_vcpu_create(vm, 0, &v));
	CHECK(ccvm_vcpu_set_guest(v, touch_guest, &t));
	if (caps.needs_finalize)
		CHECK(ccvm_vm_finalize(vm));
	CHECK(ccvm_vcpu_run(v));
	run = ccvm_vcpu_run_state(v);
	if (run->exit_reason != CCVM_EXIT_SYNC) {
		fprintf(stderr, "bench_first_touch: %s guest exit %u\n", backend, run->exit_reason);
		exit(EXIT_FAILURE);
	}
	CHECK(ccvm_vcpu_close(v));
	CHECK(ccvm_gmem_close(g));
	CHECK(ccvm_vm_close(vm));
	CHECK(ccvm_platform_destroy(p));
	munmap(shared, TOUCH_BYTES);
	return (double)(t.t1 - t.t0) / (double)(TOUCH_BYTES / PAGE);
}

static double ccvm_touch(const char *backend, uint64_t flags)
{
	double best = 1e30;
	int rep;

	for (rep = 0; rep < REPS; rep++) {
		double ns = ccvm_touch_once(backend, flags);

		best = ns < best ? ns : best;
	}
	return best;
}

/* ---- real KVM ---------------------------------------------------------------- */

/*
 * Guest physical layout, one plain memslot from GPA 0: page tables, the
 * code, then the memory the guest touches from DATA_GPA.  The first 1 GiB
 * is identity-mapped with 2 MiB user pages.
 */
#define PML4_GPA	0x1000ull
#define PDPT_GPA	0x2000ull
#define PD_GPA		0x3000ull
#define CODE_GPA	0x4000ull
#define DATA_GPA	(2 * MIB)
#define SLOT_BYTES	(DATA_GPA + TOUCH_BYTES)
#define EXIT_PORT	0x10

#define PTE_P		0x1ull
#define PTE_RW		0x2ull
#define PTE_US		0x4ull
#define PTE_PS		0x80ull

/*
 * The guest, 64-bit code run at CPL3 with IOPL 3:
 *	mov rdi, DATA_GPA; mov rcx, pages
 *   1:	mov byte [rdi], 1; add rdi, 4096; dec rcx; jnz 1b
 *	mov dx, EXIT_PORT; out dx, al; jmp .
 */
static size_t guest_code(uint8_t *c, uint64_t pages)
{
	size_t n = 0;
	unsigned int i;

	c[n++] = 0x48; c[n++] = 0xbf;			/* mov rdi, imm64 */
	for (i = 0; i < 8; i++)
		c[n++] = (uint8_t)(DATA_GPA >> (8 * i));
	c[n++] = 0x48; c[n++] = 0xb9;			/* mov rcx, imm64 */
	for (i = 0; i < 8; i++)
		c[n++] = (uint8_t)(pages >> (8 * i));
	c[n++] = 0xc6; c[n++] = 0x07; c[n++] = 0x01;	/* mov byte [rdi], 1 */
	c[n++] = 0x48; c[n++] = 0x81; c[n++] = 0xc7;	/* add rdi, 4096 */
	c[n++] = 0x00; c[n++] = 0x10; c[n++] = 0x00; c[n++] = 0x00;
	c[n++] = 0x48; c[n++] = 0xff; c[n++] = 0xc9;	/* dec rcx */
	c[n++] = 0x75; c[n++] = (uint8_t)-15;		/* jnz back over the 15-byte loop */
	c[n++] = 0x66; c[n++] = 0xba;			/* mov dx, EXIT_PORT */
	c[n++] = EXIT_PORT; c[n++] = 0x00;
	c[n++] = 0xee;					/* out dx, al */
	c[n++] = 0xeb; c[n++] = 0xfe;			/* jmp . */
	return n;
}

static void user_segment(struct kvm_segment *s, uint16_t selector, uint8_t type, bool code)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = selector;
	s->type = type;
	s->present = 1;
	s->dpl = 3;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

struct kvm_env {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *mem;
};

static void kvm_env_down(struct kvm_env *e)
{
	if (e->run)
		munmap(e->run, e->run_size);
	if (e->mem)
		munmap(e->mem, SLOT_BYTES);
	if (e->vcpu >= 0)
		close(e->vcpu);
	if (e->vm >= 0)
		close(e->vm);
	if (e->kvm >= 0)
		close(e->kvm);
}

/*
 * One run: ns per page, or a negative errno with *@why saying which step
 * failed.  @populate: the slot's memory is faulted in (and zeroed) by the
 * host before the guest runs; a host without MADV_POPULATE_WRITE is -EINVAL.
 */
static double kvm_touch_once(bool populate, const char **why)
{
	struct kvm_env e = { .kvm = -1, .vm = -1, .vcpu = -1 };
	struct kvm_userspace_memory_region r = { 0 };
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint64_t *pml4, *pdpt, *pd, t0, t;
	unsigned int i;
	int mmap_size;
	double ret;

#define KVM_STEP(what, expr)					\
	do {							\
		if ((expr) < 0) {				\
			ret = -errno;				\
			*why = (what);				\
			goto out;				\
		}						\
	} while (0)

	KVM_STEP("open /dev/kvm", e.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC));
	KVM_STEP("KVM_CREATE_VM", e.vm = ioctl(e.kvm, KVM_CREATE_VM, 0));
	e.mem = mmap(NULL, SLOT_BYTES, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (e.mem == MAP_FAILED) {
		e.mem = NULL;
		KVM_STEP("mmap guest memory", -1);
	}
	madvise(e.mem, SLOT_BYTES, MADV_NOHUGEPAGE);
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
	if (populate)
		KVM_STEP("MADV_POPULATE_WRITE", madvise(e.mem, SLOT_BYTES, MADV_POPULATE_WRITE));
	pml4 = (uint64_t *)(void *)(e.mem + PML4_GPA);
	pdpt = (uint64_t *)(void *)(e.mem + PDPT_GPA);
	pd = (uint64_t *)(void *)(e.mem + PD_GPA);
	pml4[0] = PDPT_GPA | PTE_P | PTE_RW | PTE_US;
	pdpt[0] = PD_GPA | PTE_P | PTE_RW | PTE_US;
	for (i = 0; i < 512; i++)
		pd[i] = (uint64_t)i * 2 * MIB | PTE_P | PTE_RW | PTE_US | PTE_PS;
	guest_code(e.mem + CODE_GPA, TOUCH_BYTES / PAGE);
	r.slot = 0;
	r.guest_phys_addr = 0;
	r.memory_size = SLOT_BYTES;
	r.userspace_addr = (uintptr_t)e.mem;
	KVM_STEP("KVM_SET_USER_MEMORY_REGION", ioctl(e.vm, KVM_SET_USER_MEMORY_REGION, &r));
	KVM_STEP("KVM_CREATE_VCPU", e.vcpu = ioctl(e.vm, KVM_CREATE_VCPU, 0));
	KVM_STEP("KVM_GET_VCPU_MMAP_SIZE", mmap_size = ioctl(e.kvm, KVM_GET_VCPU_MMAP_SIZE, 0));
	e.run_size = (size_t)mmap_size;
	e.run = mmap(NULL, e.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, e.vcpu, 0);
	if (e.run == MAP_FAILED) {
		e.run = NULL;
		KVM_STEP("mmap kvm_run", -1);
	}
	KVM_STEP("KVM_GET_SREGS", ioctl(e.vcpu, KVM_GET_SREGS, &sregs));
	sregs.cr3 = PML4_GPA;
	sregs.cr4 = 0x20;				/* PAE */
	sregs.cr0 = 0x80000033;				/* PG, NE, ET, MP, PE */
	sregs.efer = 0x500;				/* LMA, LME */
	user_segment(&sregs.cs, 0x1b, 0xb, true);	/* execute/read, accessed */
	user_segment(&sregs.ss, 0x23, 0x3, false);	/* read/write, accessed */
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss;
	KVM_STEP("KVM_SET_SREGS", ioctl(e.vcpu, KVM_SET_SREGS, &sregs));
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_GPA;
	regs.rflags = 0x3002;				/* IOPL 3: OUT at CPL3 */
	KVM_STEP("KVM_SET_REGS", ioctl(e.vcpu, KVM_SET_REGS, &regs));
	t0 = now_ns();
	KVM_STEP("KVM_RUN", ioctl(e.vcpu, KVM_RUN, 0));
	t = now_ns() - t0;
	if (e.run->exit_reason != KVM_EXIT_IO || e.run->io.port != EXIT_PORT) {
		ret = -EPROTO;
		*why = "the guest's exit (not its OUT)";
		goto out;
	}
	/* The guest really wrote every page. */
	for (i = 0; i < TOUCH_BYTES / PAGE; i++)
		if (e.mem[DATA_GPA + i * PAGE] != 1) {
			ret = -EPROTO;
			*why = "the guest's writes";
			goto out;
		}
	ret = (double)t / (double)(TOUCH_BYTES / PAGE);
out:
	kvm_env_down(&e);
	return ret;
#undef KVM_STEP
}

/* Best of REPS real runs; -1 with a line saying why when one fails. */
static double kvm_touch(bool populate)
{
	double best = 1e30;
	const char *why = NULL;
	int rep;

	for (rep = 0; rep < REPS; rep++) {
		double ns = kvm_touch_once(populate, &why);

		if (ns < 0) {
			printf("  real KVM%s: skipped: %s failed: %s\n",
			       populate ? ", memory populated first" : "", why, strerror((int)-ns));
			return -1;
		}
		best = ns < best ? ns : best;
	}
	return best;
}

int main(void)
{
	double thp_mock, thp_tdx, k4_mock, k4_tdx, res_tdx, kvm, kvm_res;
	char ours[64], peer[64];

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("First touch of 4K private pages, %llu MiB, ns per page (best of %d)\n",
	       (unsigned long long)(TOUCH_BYTES / MIB), REPS);
	thp_mock = ccvm_touch("mock", CCVM_PLATFORM_RAM_THP);
	thp_tdx = ccvm_touch("tdx", CCVM_PLATFORM_RAM_THP);
	k4_mock = ccvm_touch("mock", 0);
	k4_tdx = ccvm_touch("tdx", 0);
	res_tdx = ccvm_touch("tdx", CCVM_PLATFORM_RAM_THP | CCVM_PLATFORM_RAM_POPULATE);
	printf("  libccvm mock, RAM in THP    %9.0f ns\n", thp_mock);
	printf("  libccvm tdx,  RAM in THP    %9.0f ns   (accept, AUG, write)\n", thp_tdx);
	printf("  libccvm mock, RAM in 4K     %9.0f ns   (the host's 4K page fault included)\n",
	       k4_mock);
	printf("  libccvm tdx,  RAM in 4K     %9.0f ns\n", k4_tdx);
	printf("  libccvm tdx,  RAM in THP, resident from creation %9.0f ns   (not judged: the "
	       "host's zeroing of the RAM left out)\n", res_tdx);
	kvm = kvm_touch(false);
	if (kvm > 0)
		printf("  real KVM, CPL3 guest, plain memslot %9.0f ns\n", kvm);
	kvm_res = kvm > 0 ? kvm_touch(true) : -1;
	if (kvm_res > 0)
		printf("  real KVM, memory populated first    %9.0f ns   (not judged: the host's "
		       "page fault left out; %.1fx the model's resident figure)\n",
		       kvm_res, kvm_res / res_tdx);
	snprintf(ours, sizeof(ours), "tdx %.0f ns", thp_tdx);
	if (kvm > 0) {
		snprintf(peer, sizeof(peer), "real KVM %.0f ns", kvm);
		printf("SUMMARY|first touch: libccvm >= %.0fx cheaper than real KVM|%s|%s|%.2fx|%s\n",
		       GOAL, ours, peer, kvm / thp_tdx, kvm / thp_tdx >= GOAL ? "yes" : "no");
	} else {
		printf("SUMMARY|first touch: libccvm >= %.0fx cheaper than real KVM|%s|"
		       "real KVM unavailable|-|skipped\n", GOAL, ours);
	}
	return EXIT_SUCCESS;
}
