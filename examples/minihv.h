/* SPDX-License-Identifier: MIT */
/*
 * minihv.h: what minihv and minihv_inplace share, the whole of a small
 * hypervisor in the shape of a KVM VMM but for its memory: the guest, the
 * KVM_RUN loop of each vCPU's VMM thread, its exit handlers, the options,
 * the launch and the report.  Each program supplies the part that differs
 * between the attribute schemes as a struct minihv_ops: how guest memory
 * is set up, how a conversion is done, how the VMM reaches shared memory,
 * and calls minihv_main().
 *
 * The guest does what a confidential guest does with its share of memory:
 * checks the boot image, accepts its private memory (TDX accept / SNP
 * PVALIDATE), writes and checks private data, shares a bounce buffer with
 * MAP_GPA_RANGE, exchanges messages with the VMM through it (sync exits say
 * when), converts it back to private and checks what it reads there, and
 * touches one page through its shared alias without asking first, which the
 * VMM sees as a memory-fault exit (an implicit conversion request).
 *
 * Static functions only: each example is one program built from its own
 * source.  Nothing here calls exit(): every failure unwinds through
 * minihv_main().
 */
#ifndef CCVM_EXAMPLES_MINIHV_H
#define CCVM_EXAMPLES_MINIHV_H

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ccvm/ccvm.h>

#define PAGE		CCVM_PAGE_SIZE
#define MEM_BASE	0ull			/* guest memory starts at GPA 0 */
#define IMAGE_SIZE	(16 * PAGE)		/* the populated boot image */
#define BOUNCE_PAGES	4
#define MIN_REGION	(32 * PAGE)		/* per vCPU */
#define MAX_VCPUS	64
#define STAMP_MAGIC	0x6d696e6968760000ull	/* "minihv\0\0" */
#define MSG_LEN		64

/* Sync values: the guest tells its VMM thread where it is. */
enum guest_sync {
	SYNC_PRIVATE_OK = 1,	/* private memory accepted, written, checked */
	SYNC_BOUNCE_WRITTEN,	/* the VMM may read the bounce buffer */
	SYNC_REPLY_READ,	/* the guest read the VMM's reply */
	SYNC_IMPLICIT_WRITTEN,	/* written through an unconverted shared alias */
	SYNC_ALL_OK,		/* every check passed */
};

/* What one guest owns, shared by the guest and its VMM thread. */
struct layout {
	uint32_t id;
	uint64_t shared_bit;
	bool image_populated;
	uint64_t start, size;		/* this vCPU's private region */
	uint64_t neighbour;		/* the page right below the bounce buffer */
	uint64_t bounce;		/* BOUNCE_PAGES at the end of the region */
	uint64_t implicit;		/* converted by a memory-fault exit */
	bool in_place;			/* the VM converts in place */
	bool punch;			/* the VMM punches private pages going shared */
	bool expect_old_data;		/* private bytes survive a round trip */
};

struct vmm;
struct vcpu_thread;

/* The memory side of a VMM: what the two programs do differently. */
struct minihv_ops {
	const char *name;		/* the program, for messages */
	uint32_t attr_scheme;		/* enum ccvm_attr_scheme of the VM */
	/* Guest memory: the gmem file, slot 0 over [MEM_BASE, + m->mem_size), all private. */
	int (*memory_up)(struct vmm *m);
	/* After the VM and its file are closed: what memory_up allocated besides. */
	void (*memory_down)(struct vmm *m);
	/* A conversion the guest asked for; *how completes the log line. */
	int (*convert)(struct vcpu_thread *t, uint64_t gpa, uint64_t size, bool to_private,
		       const char **how);
	/* The VMM reads shared guest memory at @gpa, or writes the reply there. */
	int (*host_read)(struct vmm *m, uint64_t gpa, void *buf, size_t len);
	int (*reply)(struct vcpu_thread *t, uint64_t gpa, const void *buf, size_t len);
	/* What a guest of this VMM expects (punch, expect_old_data). */
	void (*plan)(const struct vmm *m, struct layout *l);
	/* A last report after the run, or NULL. */
	void (*report)(struct vmm *m);
};

struct vmm {
	const struct minihv_ops *ops;
	struct ccvm_platform *p;
	struct ccvm_vm *vm;
	struct ccvm_gmem *gmem;
	uint8_t *shared;		/* per-VM scheme: the VMM's shared memory */
	uint64_t mem_size;
	struct ccvm_backend_caps caps;
	pthread_mutex_t print_lock;
};

struct vcpu_thread {
	struct vmm *vmm;
	struct ccvm_vcpu *vcpu;
	struct layout lay;
	pthread_t thread;
	bool started;
	bool passed;		/* the guest reported SYNC_ALL_OK and returned */
	bool failed;		/* anything the VMM saw go wrong */
	bool pinned;		/* in place: a "device" pins the reply page */
	unsigned int exits;
};

/* ---- the guest ----------------------------------------------------------- */

static uint8_t image_byte(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 12) + 0x3c);
}

static uint8_t fill_byte(uint32_t id, uint64_t page, uint64_t off)
{
	return (uint8_t)(0xa0 + id * 5 + page * 3 + off);
}

static void guest_msg(char *buf, const char *what, uint32_t id)
{
	memset(buf, 0, MSG_LEN);
	snprintf(buf, MSG_LEN, "%s vcpu %u", what, id);
}

static void guest_fill_page(struct ccvm_guest *g, const struct layout *l, uint64_t gpa)
{
	uint8_t buf[PAGE];
	uint64_t i;

	for (i = 0; i < PAGE; i++)
		buf[i] = fill_byte(l->id, gpa / PAGE, i);
	CCVM_GUEST_ASSERT(g, ccvm_guest_write(g, gpa, buf, sizeof(buf)) == 0);
}

/* The page holds its fill pattern, or zeros when @zero. */
static void guest_check_page(struct ccvm_guest *g, const struct layout *l, uint64_t gpa,
			     bool zero)
{
	uint8_t buf[PAGE];
	uint64_t i;

	CCVM_GUEST_ASSERT(g, ccvm_guest_read(g, gpa, buf, sizeof(buf)) == 0);
	for (i = 0; i < PAGE; i++)
		CCVM_GUEST_ASSERT(g, buf[i] == (zero ? 0 : fill_byte(l->id, gpa / PAGE, i)));
}

/* One 16-byte stamp at the start of every other page of the region. */
static bool stamped(const struct layout *l, uint64_t gpa)
{
	return gpa < l->neighbour && gpa != l->implicit;
}

static void guest_stamps(struct ccvm_guest *g, const struct layout *l, bool write)
{
	uint64_t gpa, stamp[2];

	for (gpa = l->start; gpa < l->start + l->size; gpa += PAGE) {
		if (!stamped(l, gpa))
			continue;
		if (write) {
			stamp[0] = STAMP_MAGIC | l->id;
			stamp[1] = gpa;
			CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, gpa, stamp, sizeof(stamp)));
		} else {
			CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, gpa, stamp, sizeof(stamp)));
			CCVM_GUEST_ASSERT(g, stamp[0] == (STAMP_MAGIC | l->id));
			CCVM_GUEST_ASSERT(g, stamp[1] == gpa);
		}
	}
}

static void guest_main(struct ccvm_guest *g, void *arg)
{
	const struct layout *l = arg;
	const uint64_t s = ccvm_guest_shared_bit(g);
	const uint64_t bounce_size = BOUNCE_PAGES * PAGE;
	char msg[MSG_LEN], want[MSG_LEN];
	uint64_t i;
	int r;

	/* The boot image the VMM measured in at launch. */
	if (l->image_populated) {
		uint8_t buf[256];

		for (i = 0; i < IMAGE_SIZE; i += sizeof(buf)) {
			uint64_t j;

			CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, MEM_BASE + i, buf, sizeof(buf)));
			for (j = 0; j < sizeof(buf); j++)
				CCVM_GUEST_ASSERT(g, buf[j] == image_byte(i + j));
		}
	}

	/* Accept private memory, write it, read it back. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, l->start, l->size) == 0);
	guest_stamps(g, l, true);
	guest_fill_page(g, l, l->neighbour);
	for (i = 0; i < BOUNCE_PAGES; i++)
		guest_fill_page(g, l, l->bounce + i * PAGE);
	guest_stamps(g, l, false);
	guest_check_page(g, l, l->neighbour, false);
	for (i = 0; i < BOUNCE_PAGES; i++)
		guest_check_page(g, l, l->bounce + i * PAGE, false);
	ccvm_guest_sync(g, SYNC_PRIVATE_OK);

	/* A shared bounce buffer: MapGPA / page-state change to shared. */
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, l->bounce, bounce_size, false) == 0);
	guest_msg(msg, "hello from", l->id);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, l->bounce | s, msg, MSG_LEN));
	ccvm_guest_sync(g, SYNC_BOUNCE_WRITTEN);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, (l->bounce + PAGE) | s, msg, MSG_LEN));
	guest_msg(want, "reply to", l->id);
	CCVM_GUEST_ASSERT(g, !memcmp(msg, want, MSG_LEN));
	guest_check_page(g, l, l->neighbour, false);
	ccvm_guest_sync(g, SYNC_REPLY_READ);

	/*
	 * Private again: accept, then the old bytes or zeros.  In place the
	 * pages are the ones the messages went through: the message pages hold
	 * the last message (or zeros), the others their fill (or zeros).
	 */
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, l->bounce, bounce_size, true) == 0);
	CCVM_GUEST_ASSERT(g, ccvm_guest_accept(g, l->bounce, bounce_size) == 0);
	for (i = l->in_place ? 2 : 0; i < BOUNCE_PAGES; i++)
		guest_check_page(g, l, l->bounce + i * PAGE, !l->expect_old_data);
	if (l->in_place) {
		CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, l->bounce + PAGE, msg, MSG_LEN));
		for (i = 0; i < MSG_LEN; i++)
			CCVM_GUEST_ASSERT(g, msg[i] == (l->expect_old_data ? want[i] : 0));
	}
	guest_check_page(g, l, l->neighbour, false);

	/*
	 * Through the shared alias of a private page without asking: with a
	 * shared bit that is a memory-fault exit, which this VMM takes as a
	 * request to convert.  (Without one, mock, it is a private access.)
	 */
	guest_msg(msg, "implicit", l->id);
	CCVM_GUEST_ASSERT(g, !ccvm_guest_write(g, l->implicit | s, msg, MSG_LEN));
	CCVM_GUEST_ASSERT(g, !ccvm_guest_read(g, l->implicit | s, want, MSG_LEN));
	CCVM_GUEST_ASSERT(g, !memcmp(msg, want, MSG_LEN));
	ccvm_guest_sync(g, SYNC_IMPLICIT_WRITTEN);
	CCVM_GUEST_ASSERT(g, ccvm_guest_map_gpa(g, l->implicit, PAGE, true) == 0);
	/*
	 * An implicit conversion has no page-state change of the guest's, so
	 * nothing rescinded the page's validation: on SNP, when the VMM kept
	 * the private page, the RMP still holds it validated and PVALIDATE
	 * changes nothing (FAIL_NOUPDATE, -EEXIST).  A punched page is new, and
	 * so is, to the RMP, a page converted in place (its RMP entry went back
	 * to the hypervisor).
	 */
	r = ccvm_guest_accept(g, l->implicit, PAGE);
	CCVM_GUEST_ASSERT(g, r == 0 || (r == -EEXIST && !l->punch && !l->in_place));
	guest_fill_page(g, l, l->implicit);
	guest_check_page(g, l, l->implicit, false);

	/* Nothing else moved. */
	guest_stamps(g, l, false);
	ccvm_guest_sync(g, SYNC_ALL_OK);
}

/* ---- the VMM ----------------------------------------------------------------- */

#define vmm_print(t, ...)						\
	do {								\
		pthread_mutex_lock(&(t)->vmm->print_lock);		\
		printf("vcpu%u: ", (t)->lay.id);			\
		printf(__VA_ARGS__);					\
		putchar('\n');						\
		pthread_mutex_unlock(&(t)->vmm->print_lock);		\
	} while (0)

static int vmm_convert(struct vcpu_thread *t, uint64_t gpa, uint64_t size, bool to_private,
		       const char **how)
{
	struct vmm *m = t->vmm;

	if (gpa - MEM_BASE >= m->mem_size || size > m->mem_size - (gpa - MEM_BASE))
		return -EINVAL;
	return m->ops->convert(t, gpa, size, to_private, how);
}

static void vmm_hypercall(struct vcpu_thread *t, struct ccvm_run *run)
{
	uint64_t gpa = run->hypercall.args[0];
	uint64_t size = run->hypercall.args[1] * PAGE;
	bool to_private = run->hypercall.args[2] & CCVM_MAP_GPA_RANGE_ENCRYPTED;
	const char *how = "";
	int err;

	if (run->hypercall.nr != CCVM_HC_MAP_GPA_RANGE) {
		vmm_print(t, "hypercall %" PRIu64 ": not supported", run->hypercall.nr);
		run->hypercall.ret = ENOSYS;
		return;
	}
	err = vmm_convert(t, gpa, size, to_private, &how);
	vmm_print(t, "map_gpa %#" PRIx64 "+%" PRIu64 "K -> %s%s%s", gpa, size >> 10,
		  to_private ? "private" : "shared", how, err ? " FAILED" : "");
	if (err)
		t->failed = true;
	run->hypercall.ret = (uint64_t)-err;
}

static void vmm_memory_fault(struct vcpu_thread *t, struct ccvm_run *run)
{
	bool to_private = run->memory_fault.flags & CCVM_MEMORY_EXIT_FLAG_PRIVATE;
	const char *how = "";
	int err = vmm_convert(t, run->memory_fault.gpa, run->memory_fault.size, to_private, &how);

	vmm_print(t, "memory fault %#" PRIx64 " (%s access) -> converted%s",
		  (uint64_t)run->memory_fault.gpa, to_private ? "private" : "shared",
		  err ? " FAILED" : "");
	if (err)
		t->failed = true;
}

static void vmm_sync(struct vcpu_thread *t, struct ccvm_run *run)
{
	const struct layout *l = &t->lay;
	struct vmm *m = t->vmm;
	char want[MSG_LEN], got[MSG_LEN];

	switch (run->sync.value) {
	case SYNC_PRIVATE_OK:
		vmm_print(t, "sync: %" PRIu64 " KiB private memory accepted and checked",
			  l->size >> 10);
		break;
	case SYNC_BOUNCE_WRITTEN:
		guest_msg(want, "hello from", l->id);
		if (m->ops->host_read(m, l->bounce, got, MSG_LEN) || memcmp(got, want, MSG_LEN)) {
			vmm_print(t, "sync: bounce buffer holds the wrong message");
			t->failed = true;
		} else {
			vmm_print(t, "sync: VMM read \"%s\" from the bounce buffer", want);
		}
		guest_msg(want, "reply to", l->id);
		if (m->ops->reply(t, l->bounce + PAGE, want, MSG_LEN)) {
			vmm_print(t, "sync: could not write the reply");
			t->failed = true;
		}
		break;
	case SYNC_REPLY_READ:
		vmm_print(t, "sync: guest read the VMM's reply");
		break;
	case SYNC_IMPLICIT_WRITTEN:
		guest_msg(want, "implicit", l->id);
		/* With a shared bit, the write went to the VMM's shared memory. */
		if (l->shared_bit && (m->ops->host_read(m, l->implicit, got, MSG_LEN) ||
				      memcmp(got, want, MSG_LEN))) {
			vmm_print(t, "sync: implicit conversion did not reach the VMM");
			t->failed = true;
		} else {
			vmm_print(t, "sync: %s", l->shared_bit ?
				  "VMM read the implicitly shared page" :
				  "no shared bit: the alias write stayed private");
		}
		break;
	case SYNC_ALL_OK:
		vmm_print(t, "sync: every guest check passed");
		t->passed = true;
		break;
	default:
		vmm_print(t, "sync: unknown value %" PRIu64, (uint64_t)run->sync.value);
		t->failed = true;
	}
}

/* The KVM_RUN loop of one vCPU: returns when the guest is done or broke. */
static void *vcpu_loop(void *arg)
{
	struct vcpu_thread *t = arg;
	struct ccvm_run *run = ccvm_vcpu_run_state(t->vcpu);
	bool done = false;
	int err;

	while (!done) {
		err = ccvm_vcpu_run(t->vcpu);
		t->exits++;
		if (err && !(err == -EFAULT && run->exit_reason == CCVM_EXIT_MEMORY_FAULT)) {
			if (run->exit_reason == CCVM_EXIT_INTERNAL_ERROR)
				vmm_print(t, "run: %s (internal error: %s)", ccvm_strerror(err),
					  ccvm_strerror(run->internal.error));
			else
				vmm_print(t, "run: %s (exit %u)", ccvm_strerror(err),
					  run->exit_reason);
			t->failed = true;
			break;
		}
		switch (run->exit_reason) {
		case CCVM_EXIT_HYPERCALL:
			vmm_hypercall(t, run);
			break;
		case CCVM_EXIT_MEMORY_FAULT:
			vmm_memory_fault(t, run);
			break;
		case CCVM_EXIT_SYNC:
			vmm_sync(t, run);
			break;
		case CCVM_EXIT_MMIO:
			/* This guest has no devices: reads see zeros. */
			vmm_print(t, "mmio %s %#" PRIx64 "+%u", run->mmio.is_write ? "write" : "read",
				  (uint64_t)run->mmio.phys_addr, run->mmio.len);
			memset(run->mmio.data, 0, sizeof(run->mmio.data));
			t->failed = true;
			break;
		case CCVM_EXIT_EXCEPTION:
			vmm_print(t, "exception vector %u at %#" PRIx64, run->exception.vector,
				  (uint64_t)run->exception.gpa);
			break;
		case CCVM_EXIT_DONE:
			vmm_print(t, "done");
			done = true;
			break;
		case CCVM_EXIT_GUEST_ABORT:
			vmm_print(t, "guest abort at %s:%d: %s", run->abort.file, run->abort.line,
				  run->abort.msg);
			t->failed = true;
			done = true;
			break;
		default:
			vmm_print(t, "unexpected exit %u", run->exit_reason);
			t->failed = true;
			done = true;
			break;
		}
	}
	if (!t->passed)
		t->failed = true;
	return NULL;
}

/* ---- setup and reporting --------------------------------------------------------- */

struct options {
	const char *backend;
	uint32_t vcpus;
	uint64_t mem;
	const char *trace;
};

static void usage(FILE *f, const char *name)
{
	fprintf(f, "usage: %s [--backend mock|tdx|snp] [--vcpus N] [--mem SIZE] "
		"[--trace FILE]\n"
		"  --backend NAME  backend to run on (default mock)\n"
		"  --vcpus N       vCPUs, each run from its own VMM thread (default 2, max %d)\n"
		"  --mem SIZE      guest memory, e.g. 16M or 512K (default 16M)\n"
		"  --trace FILE    write a Chrome trace-event JSON trace\n", name, MAX_VCPUS);
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	uint64_t v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'G': case 'g': v <<= 10; /* fall through */
	case 'M': case 'm': v <<= 10; /* fall through */
	case 'K': case 'k': v <<= 10; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* 0, 1 after --help, or -EINVAL after printing why. */
static int parse_options(int argc, char **argv, const char *name, struct options *o)
{
	static const struct option longopts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "vcpus", required_argument, NULL, 'n' },
		{ "mem", required_argument, NULL, 'm' },
		{ "trace", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t n;
	int c;

	o->backend = "mock";
	o->vcpus = 2;
	o->mem = 16ull << 20;
	o->trace = NULL;
	while ((c = getopt_long(argc, argv, "b:n:m:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			o->backend = optarg;
			break;
		case 'n':
			if (parse_size(optarg, &n) || !n || n > MAX_VCPUS) {
				fprintf(stderr, "%s: --vcpus wants 1..%d\n", name, MAX_VCPUS);
				return -EINVAL;
			}
			o->vcpus = (uint32_t)n;
			break;
		case 'm':
			if (parse_size(optarg, &o->mem) || o->mem % PAGE) {
				fprintf(stderr, "%s: --mem wants a multiple of 4K\n", name);
				return -EINVAL;
			}
			break;
		case 't':
			o->trace = optarg;
			break;
		case 'h':
			usage(stdout, name);
			return 1;
		default:
			usage(stderr, name);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		usage(stderr, name);
		return -EINVAL;
	}
	if (o->mem < IMAGE_SIZE + o->vcpus * MIN_REGION) {
		fprintf(stderr, "%s: --mem too small for %u vCPUs (at least %" PRIu64 "K)\n",
			name, o->vcpus, (uint64_t)((IMAGE_SIZE + o->vcpus * MIN_REGION) >> 10));
		return -EINVAL;
	}
	return 0;
}

/* Each vCPU's share of memory after the image, and what it should expect. */
static void plan_layout(const struct vmm *m, uint32_t nr, uint32_t id, bool populated,
			struct layout *l)
{
	uint64_t region = ((m->mem_size - IMAGE_SIZE) / nr) & ~(PAGE - 1);

	memset(l, 0, sizeof(*l));
	l->id = id;
	l->shared_bit = ccvm_vm_shared_bit(m->vm);
	l->image_populated = populated;
	l->start = MEM_BASE + IMAGE_SIZE + id * region;
	l->size = region;
	l->bounce = l->start + region - BOUNCE_PAGES * PAGE;
	l->neighbour = l->bounce - PAGE;
	l->implicit = l->start + 8 * PAGE;
	l->in_place = m->ops->attr_scheme == CCVM_ATTR_SCHEME_GMEM;
	m->ops->plan(m, l);
}

/* TDX INIT_MEM_REGION / SNP LAUNCH_UPDATE of the image, then finalize. */
static int launch(struct vmm *m, bool *populated)
{
	uint8_t *image;
	uint64_t i;
	int err;

	*populated = false;
	if (!m->caps.needs_finalize)
		return 0;	/* mock: runnable as created */
	image = malloc(IMAGE_SIZE);
	if (!image)
		return -ENOMEM;
	for (i = 0; i < IMAGE_SIZE; i++)
		image[i] = image_byte(i);
	err = ccvm_vm_populate(m->vm, MEM_BASE, image, IMAGE_SIZE, CCVM_POPULATE_MEASURE);
	free(image);
	if (err == -EOPNOTSUPP)
		err = 0;
	else if (!err)
		*populated = true;
	if (err) {
		fprintf(stderr, "%s: populate: %s\n", m->ops->name, ccvm_strerror(err));
		return err;
	}
	err = ccvm_vm_finalize(m->vm);
	if (err)
		fprintf(stderr, "%s: finalize: %s\n", m->ops->name, ccvm_strerror(err));
	return err;
}

static void print_stats(struct vmm *m)
{
	struct ccvm_stats st = { .sz = sizeof(st) };
	uint64_t seamcalls = 0;
	unsigned int ev;
	int col = 0;

	if (ccvm_vm_get_stats(m->vm, &st))
		return;
	printf("counters: faults %" PRIu64 " (retried %" PRIu64 "), maps %" PRIu64
	       ", zaps %" PRIu64 ", tlb flushes %" PRIu64 ", ipis %" PRIu64 "\n",
	       st.events[CCVM_EV_FAULT], st.events[CCVM_EV_FAULT_RETRY],
	       st.events[CCVM_EV_MAP_4K] + st.events[CCVM_EV_MAP_2M], st.events[CCVM_EV_ZAP],
	       st.events[CCVM_EV_TLB_FLUSH], st.events[CCVM_EV_IPI]);
	printf("          exits %" PRIu64 " (memory fault %" PRIu64 ", hypercall %" PRIu64
	       ", mmio %" PRIu64 "), guest entries %" PRIu64 ", attribute changes %" PRIu64
	       "\n",
	       st.events[CCVM_EV_EXIT], st.events[CCVM_EV_MEMORY_FAULT_EXIT],
	       st.events[CCVM_EV_HYPERCALL_EXIT], st.events[CCVM_EV_MMIO_EXIT],
	       st.events[CCVM_EV_GUEST_ENTER], st.events[CCVM_EV_ATTR_CHANGE]);
	/* Backend events (SEAMCALL leaves, RMPUPDATE, ...) that happened. */
	for (ev = CCVM_EV_TDH_MNG_CREATE; ev < st.nr_events && ev < CCVM_STATS_MAX_EVENTS; ev++) {
		const char *name = ccvm_event_name(ev);

		if (!st.events[ev] || !name)
			continue;
		if (!strncmp(name, "tdh.", 4))
			seamcalls += st.events[ev];
		printf("%s%s %" PRIu64, col ? ", " : "          backend: ", name, st.events[ev]);
		if (++col == 5) {
			putchar('\n');
			col = 0;
		}
	}
	if (col)
		putchar('\n');
	if (seamcalls)
		printf("          SEAMCALLs %" PRIu64 "\n", seamcalls);
	printf("simulated time: %.3f ms\n", (double)st.sim_ns / 1e6);
}

/* The whole program, with @ops for its memory.  Return: the exit status. */
static int minihv_main(int argc, char **argv, const struct minihv_ops *ops)
{
	struct ccvm_platform_opts popts;
	struct ccvm_vm_opts vopts;
	struct vcpu_thread *threads = NULL;
	struct options o;
	struct vmm m;
	bool populated = false, all_passed = true;
	uint32_t i, created = 0;
	int err, status = 1;

	err = parse_options(argc, argv, ops->name, &o);
	if (err)
		return err > 0 ? 0 : 2;	/* --help, or a usage error */
	memset(&m, 0, sizeof(m));
	m.ops = ops;
	pthread_mutex_init(&m.print_lock, NULL);
	m.mem_size = o.mem;

	popts = CCVM_OPTS_INIT(struct ccvm_platform_opts, .backend = o.backend);
	err = ccvm_platform_create(&popts, &m.p);
	if (err) {
		fprintf(stderr, "%s: platform (%s): %s\n", ops->name, o.backend,
			ccvm_strerror(err));
		return 1;
	}
	if (o.trace) {
		err = ccvm_trace_open(m.p, o.trace);
		if (err) {
			fprintf(stderr, "%s: trace %s: %s\n", ops->name, o.trace, ccvm_strerror(err));
			goto out_platform;
		}
	}
	vopts = CCVM_OPTS_INIT(struct ccvm_vm_opts, .max_vcpus = o.vcpus,
			       .attr_scheme = ops->attr_scheme);
	err = ccvm_vm_create(m.p, &vopts, &m.vm);
	if (err) {
		fprintf(stderr, "%s: vm: %s\n", ops->name, ccvm_strerror(err));
		goto out_platform;
	}
	m.caps.sz = sizeof(m.caps);
	ccvm_vm_caps(m.vm, &m.caps);
	err = ops->memory_up(&m);
	if (err) {
		fprintf(stderr, "%s: memory: %s\n", ops->name, ccvm_strerror(err));
		goto out_close;
	}

	printf("%s: backend %s, %u vCPUs, %" PRIu64 " KiB guest memory, shared bit %#" PRIx64
	       "%s\n", ops->name, m.caps.name ? m.caps.name : o.backend, o.vcpus, o.mem >> 10,
	       ccvm_vm_shared_bit(m.vm), m.caps.requires_accept ? ", guests must accept" : "");

	/* vCPUs exist before launch completes (TDX initializes them first). */
	threads = calloc(o.vcpus, sizeof(*threads));
	if (!threads) {
		err = -ENOMEM;
		goto out_close;
	}
	for (created = 0; created < o.vcpus; created++) {
		err = ccvm_vcpu_create(m.vm, created, &threads[created].vcpu);
		if (err) {
			fprintf(stderr, "%s: vcpu %u: %s\n", ops->name, created,
				ccvm_strerror(err));
			goto out_vcpus;
		}
	}
	err = launch(&m, &populated);
	if (err)
		goto out_vcpus;

	for (i = 0; i < o.vcpus; i++) {
		struct vcpu_thread *t = &threads[i];

		t->vmm = &m;
		plan_layout(&m, o.vcpus, i, populated, &t->lay);
		err = ccvm_vcpu_set_guest(t->vcpu, guest_main, &t->lay);
		if (!err)
			err = -pthread_create(&t->thread, NULL, vcpu_loop, t);
		if (err) {
			fprintf(stderr, "%s: start vcpu %u: %s\n", ops->name, i, ccvm_strerror(err));
			goto out_join;
		}
		t->started = true;
	}
	status = 0;

out_join:
	for (i = 0; i < o.vcpus; i++) {
		if (!threads[i].started) {
			all_passed = false;
			continue;
		}
		pthread_join(threads[i].thread, NULL);
		if (threads[i].failed)
			all_passed = false;
	}
	if (status == 0) {
		print_stats(&m);
		if (ops->report)
			ops->report(&m);
	}
	if (!all_passed)
		status = 1;
out_vcpus:
	for (i = 0; i < created; i++)
		ccvm_vcpu_close(threads[i].vcpu);
	free(threads);
out_close:
	/* The VM goes before its file: the file's release then frees the pages. */
	ccvm_vm_close(m.vm);
	if (m.gmem)
		ccvm_gmem_close(m.gmem);
	ops->memory_down(&m);
out_platform:
	if (o.trace)
		ccvm_trace_close(m.p);
	err = ccvm_platform_destroy(m.p);
	if (err) {
		fprintf(stderr, "%s: platform destroy: %s\n", ops->name, ccvm_strerror(err));
		status = 1;
	}
	pthread_mutex_destroy(&m.print_lock);
	printf("%s: %s\n", ops->name, status ? "FAILED" : "all guest checks passed");
	return status;
}

#endif /* CCVM_EXAMPLES_MINIHV_H */
