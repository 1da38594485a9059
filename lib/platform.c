/* SPDX-License-Identifier: MIT */
/*
 * The simulated host: physical memory, CPUs, key ids, the cost model and
 * the backend's global state.
 *
 * Physical memory is one anonymous MAP_NORESERVE mapping.  A page costs
 * host memory only once something writes it, so a platform of 128 GiB whose
 * guests touch little stays small.  Pages are handed out zeroed: a page that
 * was never written is zero already; one that was (its DIRTY bit is set by
 * whoever writes it) is cleared when it is freed.  pfn 0 is never handed
 * out, so a zero pfn in a data structure always means "none".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend-call.h"
#include "scheduler.h"

#define DEFAULT_MEM_BYTES	(1ull << 30)
#define MAX_MEM_BYTES		(1ull << 44)	/* 16 TiB: free-list links are 32-bit pfns */
#define DEFAULT_NR_CPUS		2
#define MAX_NR_CPUS		1024
#define MAX_NR_KEYIDS		65535
#define FREE_LIST_END		UINT64_MAX

/* ---- option structs (libbpf rules) ---------------------------------- */

/*
 * Copy a caller's option struct of @src_sz bytes into @dst of @dst_sz.
 * Fields past the caller's size stay zero; bytes a newer caller has past
 * ours must be zero.
 */
int ccvm_opts_copy_at(const char *func, void *dst, size_t dst_sz, const void *src,
		      size_t src_sz)
{
	const uint8_t *s = src;
	size_t i;

	memset(dst, 0, dst_sz);
	if (!src)
		return 0;
	if (src_sz < sizeof(size_t))
		return ccvm_fail_at(func, -EINVAL,
				    "options .sz is %zu: initialise the struct with CCVM_OPTS_INIT() "
				    "(or set .sz = sizeof(the struct)), or pass NULL for defaults",
				    src_sz);
	for (i = dst_sz; i < src_sz; i++)
		if (s[i])
			return ccvm_fail_at(func, -EINVAL,
					    "options .sz %zu is larger than this library's %zu "
					    "and byte %zu past it is not zero: a field this "
					    "version does not know is set", src_sz, dst_sz, i);
	memcpy(dst, src, src_sz < dst_sz ? src_sz : dst_sz);
	return 0;
}

/* ---- creation --------------------------------------------------------- */

/*
 * The mapping cache.  A platform's memory and tables are fresh anonymous
 * mappings, whose pages the kernel makes on first touch (a read maps the
 * zero page, the write after it copies it and flushes the TLB of every CPU
 * the process runs on) and whose munmap flushes those TLBs again.  For a
 * platform that lives long that is nothing; the explorer makes one per
 * schedule, and there it was a fifth of a run's time.  So a destroyed
 * platform's mappings are kept, up to MAP_CACHE of them holding at most
 * MAP_CACHE_RESIDENT written bytes together, and the next platform (or
 * table) of the same size and kind takes one back, its written bytes
 * zeroed: what it gets reads as a fresh mapping does, all zero, and only
 * the bytes the last user wrote cost a memset.  Under AddressSanitizer
 * nothing is kept, so that a use after destroy still faults.
 */
#if defined(__SANITIZE_ADDRESS__)
#define MAP_CACHE		0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MAP_CACHE		0
#endif
#endif
#ifndef MAP_CACHE
#define MAP_CACHE		16
#endif
#define MAP_CACHE_RESIDENT	(4ull << 20)

/*
 * MAP_CHUNK: a VM's page-table chunk (lib/mmu.c), populated when mapped
 * and handed back as it was left: its user writes every table it takes.
 */
enum map_kind { MAP_RAM, MAP_RAM_THP, MAP_TABLE, MAP_CHUNK };

struct map_entry {
	void *addr;
	size_t bytes, dirty;		/* dirty: a prefix that may be written */
	size_t resident;		/* what it counts in MAP_CACHE_RESIDENT */
	enum map_kind kind;
};

/* A plain leaf lock: nothing under it waits or reaches a scheduling point. */
static pthread_mutex_t map_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct map_entry map_cache[MAP_CACHE ? MAP_CACHE : 1];
static unsigned int map_cache_n;
static size_t map_cache_resident;
/* Not a constant expression, so "n < 0" under ASan is no type-limits warning. */
static const unsigned int map_cache_cap = MAP_CACHE;

/*
 * Write-fault every page of [@m, @m + @bytes) in now (MADV_POPULATE_WRITE,
 * or one write per page where the host kernel lacks it).  The pages read as
 * zero either way.
 */
static void map_populate(void *m, size_t bytes)
{
	volatile uint8_t *b = m;
	size_t off;

#ifdef MADV_POPULATE_WRITE
	if (!madvise(m, bytes, MADV_POPULATE_WRITE))
		return;
#endif
	for (off = 0; off < bytes; off += CCVM_PAGE_SIZE)
		b[off] = 0;
}

static void *map_get(size_t bytes, enum map_kind kind, bool populate)
{
	struct map_entry e = { NULL, 0, 0, 0, MAP_RAM };
	unsigned int i;
	void *m;

	pthread_mutex_lock(&map_cache_lock);
	for (i = 0; i < map_cache_n; i++) {
		if (map_cache[i].bytes != bytes || map_cache[i].kind != kind)
			continue;
		e = map_cache[i];
		map_cache[i] = map_cache[--map_cache_n];
		map_cache_resident -= e.resident;
		break;
	}
	pthread_mutex_unlock(&map_cache_lock);
	if (e.addr && kind == MAP_CHUNK)
		return e.addr;		/* populated, and not zeroed: see MAP_CHUNK */
	if (e.addr) {
		memset(e.addr, 0, e.dirty);
		m = e.addr;
	} else {
		m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		/* Best effort: a host without THP keeps 4K pages. */
		if (kind == MAP_RAM_THP || kind == MAP_TABLE)
			madvise(m, bytes, MADV_HUGEPAGE);
	}
	if (populate)
		map_populate(m, bytes);
	return m;
}

/*
 * Give back @addr; nothing past its first @dirty bytes was written, and
 * @populated says whether all of it is resident all the same.
 */
static void map_put(void *addr, size_t bytes, size_t dirty, enum map_kind kind,
		    bool populated)
{
	size_t resident;
	bool kept = false;

	if (!addr)
		return;
	if (dirty > bytes)
		dirty = bytes;
	resident = populated ? bytes : dirty;
	pthread_mutex_lock(&map_cache_lock);
	if (map_cache_n < map_cache_cap && map_cache_resident + resident <= MAP_CACHE_RESIDENT) {
		map_cache[map_cache_n++] = (struct map_entry){ addr, bytes, dirty, resident,
								kind };
		map_cache_resident += resident;
		kept = true;
	}
	pthread_mutex_unlock(&map_cache_lock);
	if (!kept)
		munmap(addr, bytes);
}

void *ccvm_table_map(size_t bytes)
{
	return map_get(bytes, MAP_TABLE, false);
}

void ccvm_table_unmap(void *table, size_t bytes)
{
	/* Any byte of a table may have been written. */
	map_put(table, bytes, bytes, MAP_TABLE, false);
}

void *ccvm_chunk_map(size_t bytes)
{
	return map_get(bytes, MAP_CHUNK, true);
}

void ccvm_chunk_unmap(void *chunk, size_t bytes)
{
	map_put(chunk, bytes, bytes, MAP_CHUNK, true);
}

static void platform_unmap(struct ccvm_platform *p)
{
	/* Nothing past the bump pointer was ever handed out, so never written. */
	map_put(p->mem, p->nr_pages * CCVM_PAGE_SIZE, p->bump * CCVM_PAGE_SIZE,
		(enum map_kind)p->mem_kind, p->flags & CCVM_PLATFORM_RAM_POPULATE);
	ccvm_table_unmap((void *)p->pfn_state, p->nr_pages);
	ccvm_table_unmap(p->free_next, p->nr_pages * sizeof(uint32_t));
}

static void cost_model_fill(struct ccvm_cost_model *dst, const struct ccvm_cost_model *user)
{
	unsigned int i;

	memset(dst, 0, sizeof(*dst));
	dst->sz = sizeof(*dst);
	for (i = 0; i < CCVM_EV_NR; i++)
		dst->ns[i] = ccvm_default_costs[i];
	dst->ipi_per_vcpu_ns = ccvm_default_ipi_per_vcpu_ns;
	if (!user)
		return;
	for (i = 0; i < CCVM_EV_NR; i++)
		if (user->ns[i])
			dst->ns[i] = user->ns[i];
	if (user->ipi_per_vcpu_ns)
		dst->ipi_per_vcpu_ns = user->ipi_per_vcpu_ns;
}

/*
 * The platform's locks, in the mode of its scheduler.  trace_lock stays a
 * plain mutex in both modes: it only keeps two trace callbacks apart, and
 * a trace must not change the schedule it records (a token recorded
 * without a trace replays with one).
 */
static void platform_locks_init(struct ccvm_platform *p)
{
	struct ccvm_sched *s = ccvm_sched_of(p);

	ccvm_mutex_init(&p->lock, s, "platform->lock");
	ccvm_mutex_init(&p->mem_lock, s, "mem_lock");
	ccvm_mutex_init(&p->trace_lock, NULL, "trace_lock");
	ccvm_mutex_init(&p->inject_lock, s, "inject_lock");
	/*
	 * Serial or one CPU: the plain bump, so pfns do not depend on the host.
	 * Otherwise as many windows as there is room for, not one per CPU:
	 * threads are dealt windows, and 8 vCPU threads on 2 CPUs sharing 2
	 * windows interleaved their pages and met on the windows' locks.
	 */
	p->nr_windows = s || ccvm_host_cpu_shards() < 2 ? 0 : CCVM_BRLOCK_SHARDS;
}

static void platform_locks_destroy(struct ccvm_platform *p)
{
	ccvm_mutex_destroy(&p->lock);
	ccvm_mutex_destroy(&p->mem_lock);
	ccvm_mutex_destroy(&p->trace_lock);
	ccvm_mutex_destroy(&p->inject_lock);
}

int ccvm_platform_create(const struct ccvm_platform_opts *uopts, struct ccvm_platform **out)
{
	struct ccvm_platform_opts opts;
	struct ccvm_cost_model ucosts;
	const struct ccvm_backend_ops *ops;
	struct ccvm_backend_ops *vops;
	struct ccvm_platform *p;
	int err;

	if (!out)
		return ccvm_fail(-EINVAL, "NULL out");
	err = ccvm_opts_copy(&opts, sizeof(opts), uopts, uopts ? uopts->sz : 0);
	if (err)
		return err;
	if (!opts.mem_bytes)
		opts.mem_bytes = DEFAULT_MEM_BYTES;
	if (!ccvm_is_page_aligned(opts.mem_bytes) || opts.mem_bytes > MAX_MEM_BYTES ||
	    opts.mem_bytes < 16 * CCVM_PAGE_SIZE)
		return ccvm_fail(-EINVAL, "opts.mem_bytes 0x%llx: a multiple of 4096, from 16 "
				 "pages up to 0x%llx", (unsigned long long)opts.mem_bytes,
				 (unsigned long long)MAX_MEM_BYTES);
	if (!opts.nr_cpus)
		opts.nr_cpus = DEFAULT_NR_CPUS;
	if (opts.nr_cpus > MAX_NR_CPUS)
		return ccvm_fail(-EINVAL, "opts.nr_cpus %u: at most %u", opts.nr_cpus,
				 (unsigned int)MAX_NR_CPUS);
	if (opts.nr_keyids > MAX_NR_KEYIDS)
		return ccvm_fail(-EINVAL, "opts.nr_keyids %u: at most %u", opts.nr_keyids,
				 (unsigned int)MAX_NR_KEYIDS);
	if (opts.sched > CCVM_SCHED_SERIAL)
		return ccvm_fail(-EINVAL, "opts.sched %u: CCVM_SCHED_FREE or CCVM_SCHED_SERIAL",
				 opts.sched);
	if (opts.attr_scheme > CCVM_ATTR_SCHEME_GMEM)
		return ccvm_fail(-EINVAL, "opts.attr_scheme %u: unknown", opts.attr_scheme);
	if (opts.flags & ~(CCVM_PLATFORM_RAM_THP | CCVM_PLATFORM_TDX_DYNAMIC_PAMT |
			   CCVM_PLATFORM_RAM_POPULATE))
		return ccvm_fail(-EINVAL, "opts.flags %#llx: unknown bits (CCVM_PLATFORM_*)",
				 (unsigned long long)opts.flags);
	if (opts.costs) {
		err = ccvm_opts_copy(&ucosts, sizeof(ucosts), opts.costs, opts.costs->sz);
		if (err)
			return err;
	}
	ops = ccvm_backend_lookup(opts.backend);
	if (!ops)
		return ccvm_fail(-ENOENT, "no backend \"%s\" is built or registered",
				 opts.backend ? opts.backend : "mock");

	if ((opts.flags & CCVM_PLATFORM_TDX_DYNAMIC_PAMT) && strcmp(ops->name, "tdx"))
		return ccvm_fail(-EINVAL, "opts.flags: CCVM_PLATFORM_TDX_DYNAMIC_PAMT is for the "
				 "tdx backend, not \"%s\"", ops->name);

	p = ccvm_zalloc_lines(sizeof(*p));	/* the allocator's windows are line-aligned */
	vops = calloc(1, sizeof(*vops));
	if (!p || !vops)
		goto err_nomem;
	ccvm_counters_init(&p->stats);
	err = ccvm_backend_validate(ops, vops);
	if (err)
		goto err_free;
	p->ops = vops;
	p->caps.sz = sizeof(p->caps);
	vops->get_caps(NULL, &p->caps);
	p->caps.name = vops->name;

	p->nr_pages = opts.mem_bytes >> CCVM_PAGE_SHIFT;
	p->mem_kind = opts.flags & CCVM_PLATFORM_RAM_THP ? MAP_RAM_THP : MAP_RAM;
	p->mem = map_get(opts.mem_bytes, (enum map_kind)p->mem_kind,
			 opts.flags & CCVM_PLATFORM_RAM_POPULATE);
	p->pfn_state = ccvm_table_map(p->nr_pages);
	p->free_next = ccvm_table_map(p->nr_pages * sizeof(uint32_t));
	if (!p->mem || !p->pfn_state || !p->free_next)
		goto err_unmap;
	p->free_head = FREE_LIST_END;
	p->folio_head[0] = p->folio_head[1] = FREE_LIST_END;
	p->bump = 1;
	p->nr_free = p->nr_pages - 1;
	p->nr_cpus = opts.nr_cpus;
	p->nr_keyids = opts.nr_keyids;
	p->rng = opts.seed ? opts.seed : 0x5eed5eed5eed5eedull;
	cost_model_fill(&p->costs, opts.costs ? &ucosts : NULL);
	p->next_vm_id = 1;
	p->resched_entries = opts.resched_entries ? opts.resched_entries : CCVM_RESCHED_ENTRIES;
	p->attr_scheme = opts.attr_scheme ? opts.attr_scheme : CCVM_ATTR_SCHEME_VM;
	p->flags = opts.flags;
	ccvm_model_bytes_add(p, sizeof(*p) + sizeof(*vops));
	/* The scheduler first: every lock of the platform takes its mode from it. */
	err = ccvm_sched_platform_attach(p, opts.sched, opts.sched_seed);
	if (err)
		goto err_unmap;
	platform_locks_init(p);
	/* Serial: every op call and return is a scheduling point (backend-call.h). */
	ccvm_op_hooks_set(p, CCVM_OP_HOOK_SCHED, p->sched != NULL);

	if (vops->platform_priv_size) {
		/* On whole lines, so that a backend's _Alignas(64) words are aligned. */
		p->priv = ccvm_zalloc_lines(vops->platform_priv_size);
		if (!p->priv)
			goto err_locks;
		ccvm_model_bytes_add(p, (int64_t)vops->platform_priv_size);
	}
	err = ccvm_op_platform_init(p);
	if (err)
		goto err_priv;
	*out = p;
	return 0;

err_priv:
	free(p->priv);
err_locks:
	platform_locks_destroy(p);
	ccvm_sched_platform_detach(p);
	platform_unmap(p);
	free(vops);
	ccvm_counters_destroy(&p->stats);
	free(p);
	return err ? err : -ENOMEM;
err_unmap:
	platform_unmap(p);
	if (err)
		goto err_free;
err_nomem:
	err = -ENOMEM;
err_free:
	free(vops);
	if (p)
		ccvm_counters_destroy(&p->stats);
	free(p);
	return err;
}

int ccvm_platform_destroy(struct ccvm_platform *p)
{
	bool busy;

	uint64_t vms, inodes;
	bool threads;

	if (!p)
		return ccvm_fail(-EINVAL, "NULL platform");
	ccvm_mutex_lock(&p->lock);
	vms = p->nr_vms;
	inodes = p->nr_inodes;
	threads = ccvm_sched_platform_busy(p);
	busy = vms || inodes || threads;
	ccvm_mutex_unlock(&p->lock);
	if (busy)
		return ccvm_fail(-EBUSY, "still alive: %llu VM(s), %llu gmem inode(s)%s: close "
				 "every VM, vCPU and gmem handle first (the last one destroys "
				 "the VM)", (unsigned long long)vms, (unsigned long long)inodes,
				 threads ? ", controlled threads not joined (or not called "
				 "from thread 0)" : "");
	ccvm_op_platform_destroy(p);
	(void)ccvm_trace_writer_close(p);
	platform_locks_destroy(p);
	ccvm_sched_platform_detach(p);
	free(p->priv);
	platform_unmap(p);
	free((void *)p->ops);
	ccvm_counters_destroy(&p->stats);
	free(p);
	return 0;
}

void ccvm_platform_inode_get(struct ccvm_platform *p)
{
	ccvm_mutex_lock(&p->lock);
	p->nr_inodes++;
	ccvm_mutex_unlock(&p->lock);
}

void ccvm_platform_inode_put(struct ccvm_platform *p)
{
	ccvm_mutex_lock(&p->lock);
	p->nr_inodes--;
	ccvm_mutex_unlock(&p->lock);
}

/* ---- accessors for backends ------------------------------------------- */

void ccvm_model_bytes(struct ccvm_platform *p, int64_t delta)
{
	ccvm_model_bytes_add(p, delta);
}

void *ccvm_platform_priv(struct ccvm_platform *p)
{
	return p->priv;
}

uint64_t ccvm_platform_flags(const struct ccvm_platform *p)
{
	return p->flags;
}

void ccvm_pamt_account(struct ccvm_platform *p, int64_t pairs, int64_t bytes)
{
	atomic_fetch_add_explicit(&p->pamt_pairs, (uint64_t)pairs, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->pamt_bytes, (uint64_t)bytes, memory_order_relaxed);
}

uint32_t ccvm_platform_nr_cpus(const struct ccvm_platform *p)
{
	return p->nr_cpus;
}

uint32_t ccvm_platform_nr_keyids(const struct ccvm_platform *p)
{
	return p->nr_keyids;
}

uint64_t ccvm_platform_nr_pages(const struct ccvm_platform *p)
{
	return p->nr_pages;
}

const char *ccvm_platform_backend_name(const struct ccvm_platform *p)
{
	return p->caps.name;
}

uint64_t ccvm_platform_nr_gmem_inodes(struct ccvm_platform *p)
{
	uint64_t n;

	ccvm_mutex_lock(&p->lock);
	n = p->nr_inodes;
	ccvm_mutex_unlock(&p->lock);
	return n;
}

/* splitmix64 over an atomic counter: deterministic for a seed, thread-safe. */
uint64_t ccvm_platform_random(struct ccvm_platform *p)
{
	uint64_t z = atomic_fetch_add_explicit(&p->rng, 0x9e3779b97f4a7c15ull,
					       memory_order_relaxed) + 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- physical memory --------------------------------------------------- */

static inline uint8_t pfn_state(struct ccvm_platform *p, uint64_t pfn)
{
	return atomic_load_explicit(&p->pfn_state[pfn], memory_order_relaxed);
}

static bool pfn_valid(struct ccvm_platform *p, uint64_t pfn)
{
	return pfn && pfn < p->nr_pages;
}

/* Push @pfn on the 4K free list; mem_lock held, its state already 0. */
static void free_list_push(struct ccvm_platform *p, uint64_t pfn)
{
	/* free_next is 32 bits; 0 ends the list (pfn 0 is never free). */
	p->free_next[pfn] = p->free_head == FREE_LIST_END ? 0 : (uint32_t)p->free_head;
	/* Atomic: an allocation peeks at it without mem_lock (ccvm_page_alloc()). */
	__atomic_store_n(&p->free_head, pfn, __ATOMIC_RELAXED);
}

/* Which folio list holds free blocks of @order: 0 for 2M, 1 for 1G, -1 none. */
static int folio_list(unsigned int order)
{
	return order == CCVM_FOLIO_ORDER_2M ? 0 : order == CCVM_FOLIO_ORDER_1G ? 1 : -1;
}

static uint64_t folio_list_pop(struct ccvm_platform *p, int list)
{
	uint64_t n = p->folio_head[list];

	if (n != FREE_LIST_END)
		p->folio_head[list] = p->free_next[n] ? p->free_next[n] : FREE_LIST_END;
	return n;
}

static void folio_list_push(struct ccvm_platform *p, int list, uint64_t pfn)
{
	p->free_next[pfn] = p->folio_head[list] == FREE_LIST_END ? 0
							       : (uint32_t)p->folio_head[list];
	p->folio_head[list] = pfn;
}

/*
 * The 4K list and the bump are empty: break a free folio block into 4K
 * pages (a 2M block first), so that memory given back as folios serves
 * 4K allocations too.  mem_lock held.  Return: a free pfn or FREE_LIST_END.
 */
static uint64_t break_folio_block(struct ccvm_platform *p)
{
	uint64_t head, i, n;
	int list;

	for (list = 0; list < 2; list++) {
		head = folio_list_pop(p, list);
		if (head == FREE_LIST_END)
			continue;
		n = 1ull << (list ? CCVM_FOLIO_ORDER_1G : CCVM_FOLIO_ORDER_2M);
		for (i = n - 1; i > 0; i--)
			free_list_push(p, head + i);
		return head;
	}
	return FREE_LIST_END;
}

/*
 * The window a thread allocates from: threads are dealt windows round
 * robin on their first allocation and keep theirs.  Not the CPU the thread
 * happens to run on: a thread that migrated in the middle of a fallocate
 * would switch windows and get pages that are not contiguous, which a
 * single allocating thread has always had, and which depended on luck.
 */
static unsigned int window_of_thread(unsigned int nr_windows)
{
	static atomic_uint next_slot;
	static _Thread_local unsigned int slot;	/* 0: not dealt yet */

	if (!slot)
		slot = atomic_fetch_add_explicit(&next_slot, 1, memory_order_relaxed) + 1;
	return (slot - 1) % nr_windows;
}

/*
 * The next page of window @w: one compare-and-swap on the window's word
 * (free-running on several CPUs: nr_windows).  Return: a free pfn, or
 * FREE_LIST_END when the window is empty or frozen.
 */
static uint64_t window_take(struct ccvm_page_window *w)
{
	uint64_t v = atomic_load_explicit(&w->w, memory_order_acquire);

	do {
		if ((v & CCVM_WINDOW_FROZEN) || !ccvm_window_left(v))
			return FREE_LIST_END;
	} while (!atomic_compare_exchange_weak_explicit(&w->w, &v,
							ccvm_window_make(ccvm_window_next(v) + 1,
									 ccvm_window_left(v) - 1),
							memory_order_acq_rel, memory_order_acquire));
	return ccvm_window_next(v);
}

/* A page from the calling thread's window, without mem_lock: window_take(). */
static uint64_t window_alloc(struct ccvm_platform *p)
{
	return window_take(&p->window[window_of_thread(p->nr_windows)]);
}

/*
 * A page never handed out: the next of the bump region, or, with windows,
 * the next of the calling thread's window, which is refilled from the
 * bump up to the next 2 MiB boundary (those pages leave nr_free: window
 * pages are counted apart); once the bump is used up, any window's.
 * mem_lock held.  Return: a free pfn or FREE_LIST_END.
 */
static uint64_t bump_alloc(struct ccvm_platform *p)
{
	const uint64_t chunk = 1ull << CCVM_FOLIO_ORDER_2M;
	unsigned int i;
	uint64_t n;

	if (!p->nr_windows) {
		if (p->bump >= p->nr_pages)
			return FREE_LIST_END;
		atomic_fetch_sub_explicit(&p->nr_free, 1, memory_order_relaxed);
		return p->bump++;
	}
	i = window_of_thread(p->nr_windows);
	for (unsigned int j = 0; j < p->nr_windows; j++, i = (i + 1) % p->nr_windows) {
		struct ccvm_page_window *w = &p->window[i];
		uint64_t v = atomic_load_explicit(&w->w, memory_order_acquire);

		/*
		 * Empty: no allocation changes the word, and only mem_lock's
		 * holder refills or freezes it, so it can be set outright.
		 */
		if (!j && !ccvm_window_left(v) && p->bump < p->nr_pages) {
			uint64_t end = (p->bump | (chunk - 1)) + 1;

			if (end > p->nr_pages)
				end = p->nr_pages;
			atomic_store_explicit(&w->w, ccvm_window_make(p->bump, end - p->bump),
					      memory_order_release);
			atomic_fetch_sub_explicit(&p->nr_free, end - p->bump,
						  memory_order_relaxed);
			p->bump = end;
		}
		n = window_take(w);
		if (n != FREE_LIST_END)
			return n;
	}
	return FREE_LIST_END;
}

/*
 * Free pages in the windows, which nr_free does not count.  Each window's
 * word is read in turn: exact when nothing allocates meanwhile.
 */
static uint64_t window_free_pages(struct ccvm_platform *p)
{
	uint64_t n = 0;

	for (unsigned int i = 0; i < p->nr_windows; i++)
		n += ccvm_window_left(atomic_load_explicit(&p->window[i].w, memory_order_acquire));
	return n;
}

/*
 * The free list first (the page given back last comes back first), then
 * the bump.  With windows, while the free list is empty (a peek without
 * mem_lock), the thread's window, which takes no lock (window_take()).
 */
int ccvm_page_alloc(struct ccvm_platform *p, uint64_t *pfn)
{
	uint64_t n;

	if (p->nr_windows &&
	    __atomic_load_n(&p->free_head, __ATOMIC_RELAXED) == FREE_LIST_END &&
	    (n = window_alloc(p)) != FREE_LIST_END)
		goto out;
	ccvm_mutex_lock(&p->mem_lock);
	if (p->free_head != FREE_LIST_END) {
		n = p->free_head;
		__atomic_store_n(&p->free_head, p->free_next[n] ? p->free_next[n] : FREE_LIST_END,
				 __ATOMIC_RELAXED);
		atomic_fetch_sub_explicit(&p->nr_free, 1, memory_order_relaxed);
	} else if ((n = bump_alloc(p)) != FREE_LIST_END) {
		/* a fresh page, nr_free already counted */
	} else if ((n = break_folio_block(p)) != FREE_LIST_END) {
		atomic_fetch_sub_explicit(&p->nr_free, 1, memory_order_relaxed);
	} else {
		ccvm_mutex_unlock(&p->mem_lock);
		return -ENOMEM;
	}
	ccvm_mutex_unlock(&p->mem_lock);
out:
	atomic_store_explicit(&p->pfn_state[n], CCVM_PFN_ALLOCATED, memory_order_relaxed);
	*pfn = n;
	ccvm_account(p, NULL, CCVM_EV_PAGE_ALLOC, 1);
	return 0;
}

void ccvm_page_set_folio_order(struct ccvm_platform *p, uint64_t pfn, uint64_t nr,
			       unsigned int order)
{
	uint64_t i;

	for (i = 0; i < nr; i++) {
		_Atomic uint8_t *st = &p->pfn_state[pfn + i];
		uint8_t old = atomic_load_explicit(st, memory_order_relaxed), new;

		do {
			new = (uint8_t)((old & ~CCVM_PFN_ORDER_MASK) |
					(order << CCVM_PFN_ORDER_SHIFT));
		} while (!atomic_compare_exchange_weak_explicit(st, &old, new,
								memory_order_relaxed,
								memory_order_relaxed));
	}
}

int ccvm_page_alloc_folio(struct ccvm_platform *p, unsigned int order, uint64_t *pfn)
{
	uint64_t nr = 1ull << order, n, aligned, i;
	int list = folio_list(order);

	if (!order)
		return ccvm_page_alloc(p, pfn);
	if (list < 0)
		return -EINVAL;
	ccvm_mutex_lock(&p->mem_lock);
	n = folio_list_pop(p, list);
	if (n == FREE_LIST_END) {
		aligned = (p->bump + nr - 1) & ~(nr - 1);
		if (aligned < p->nr_pages && p->nr_pages - aligned >= nr) {
			/* The pages skipped to reach the alignment serve 4K allocations. */
			for (i = aligned; i > p->bump; i--)
				free_list_push(p, i - 1);
			p->bump = aligned + nr;
			n = aligned;
		} else if (list == 0 &&
			   (n = folio_list_pop(p, 1)) != FREE_LIST_END) {
			/* A free 1G block becomes 512 2M ones. */
			for (i = (1ull << CCVM_FOLIO_ORDER_1G) - nr; i > 0; i -= nr)
				folio_list_push(p, 0, n + i);
		} else {
			ccvm_mutex_unlock(&p->mem_lock);
			return -ENOMEM;
		}
	}
	for (i = 0; i < nr; i++)
		atomic_store_explicit(&p->pfn_state[n + i],
				      (uint8_t)(CCVM_PFN_ALLOCATED | (order << CCVM_PFN_ORDER_SHIFT)),
				      memory_order_relaxed);
	atomic_fetch_sub_explicit(&p->nr_free, nr, memory_order_relaxed);
	ccvm_mutex_unlock(&p->mem_lock);
	*pfn = n;
	ccvm_account(p, NULL, CCVM_EV_PAGE_ALLOC, nr);
	return 0;
}

void ccvm_page_free_folio(struct ccvm_platform *p, uint64_t pfn, unsigned int order)
{
	uint64_t nr = 1ull << order, i;
	int list = folio_list(order);
	uint8_t st;

	if (!pfn_valid(p, pfn) || pfn + nr > p->nr_pages)
		return;
	/* A folio with a leaked page is not whole: its other pages go one by one. */
	for (i = 0; list >= 0 && i < nr; i++) {
		st = pfn_state(p, pfn + i);
		if ((st & CCVM_PFN_LEAKED) || !(st & CCVM_PFN_ALLOCATED))
			list = -1;
	}
	if (list < 0 || (pfn & (nr - 1))) {
		for (i = 0; i < nr; i++)
			ccvm_page_free(p, pfn + i);
		return;
	}
	for (i = 0; i < nr; i++)
		if (pfn_state(p, pfn + i) & CCVM_PFN_DIRTY)
			memset(ccvm_page_ptr(p, pfn + i), 0, CCVM_PAGE_SIZE);
	ccvm_mutex_lock(&p->mem_lock);
	for (i = 0; i < nr; i++)
		atomic_store_explicit(&p->pfn_state[pfn + i], 0, memory_order_relaxed);
	folio_list_push(p, list, pfn);
	atomic_fetch_add_explicit(&p->nr_free, nr, memory_order_relaxed);
	ccvm_mutex_unlock(&p->mem_lock);
	ccvm_account(p, NULL, CCVM_EV_PAGE_FREE, nr);
}

int ccvm_page_folio_order(struct ccvm_platform *p, uint64_t pfn)
{
	if (!pfn_valid(p, pfn))
		return 0;
	return (pfn_state(p, pfn) & CCVM_PFN_ORDER_MASK) >> CCVM_PFN_ORDER_SHIFT;
}

/* What a free does with one pfn, by its state. */
enum free_kind {
	FREE_SKIP,	/* out of range, or leaked: it may still be a guest's */
	FREE_STRAY,	/* not allocated: warned about */
	FREE_PAGE,	/* freed */
};

static enum free_kind free_kind(struct ccvm_platform *p, uint64_t pfn, uint8_t *st)
{
	if (!pfn_valid(p, pfn))
		return FREE_SKIP;
	*st = pfn_state(p, pfn);
	if (!(*st & CCVM_PFN_ALLOCATED))
		return FREE_STRAY;
	return *st & CCVM_PFN_LEAKED ? FREE_SKIP : FREE_PAGE;
}

/*
 * Free the pages of @pfns[0..@n) that pass the checks, under one hold of
 * mem_lock, counted as one CCVM_EV_PAGE_FREE of their number.  A pfn out
 * of range is ignored; one not allocated is warned about; a leaked page
 * may still belong to a guest, so it never comes back.  Written pages are
 * cleared first, outside the lock; with nothing to free, the lock is not
 * taken at all.
 */
static void pages_free(struct ccvm_platform *p, const uint64_t *pfns, unsigned int n)
{
	unsigned int i, nr = 0, stray = 0, todo = 0;
	uint64_t first_stray = 0;
	enum free_kind k;
	uint8_t st = 0;

	for (i = 0; i < n; i++) {
		k = free_kind(p, pfns[i], &st);
		if (k == FREE_STRAY && !stray++)
			first_stray = pfns[i];
		if (k != FREE_PAGE)
			continue;
		if (st & CCVM_PFN_DIRTY)
			memset(ccvm_page_ptr(p, pfns[i]), 0, CCVM_PAGE_SIZE);
		todo++;
	}
	if (todo) {
		stray = 0;
		ccvm_mutex_lock(&p->mem_lock);
		for (i = 0; i < n; i++) {
			/* Again under the lock: a pfn twice in @pfns is freed once. */
			k = free_kind(p, pfns[i], &st);
			if (k == FREE_STRAY && !stray++)
				first_stray = pfns[i];
			if (k != FREE_PAGE)
				continue;
			/* With the list: the state and the list never disagree unlocked. */
			atomic_store_explicit(&p->pfn_state[pfns[i]], 0, memory_order_relaxed);
			free_list_push(p, pfns[i]);
			nr++;
		}
		atomic_fetch_add_explicit(&p->nr_free, nr, memory_order_relaxed);
		ccvm_mutex_unlock(&p->mem_lock);
	}
	if (stray)
		ccvm_log(CCVM_LOG_WARN, "free of pfn %#llx that is not allocated%s",
			 (unsigned long long)first_stray, stray > 1 ? " (and others)" : "");
	if (nr)
		ccvm_account(p, NULL, CCVM_EV_PAGE_FREE, nr);
}

void ccvm_page_free(struct ccvm_platform *p, uint64_t pfn)
{
	pages_free(p, &pfn, 1);
}

/*
 * ccvm_page_free() of each of @pfns[0..@n), under one hold of mem_lock: as
 * the calls one after another, with no allocation in between.  A serial
 * platform and a traced one take the pages one call each, so that the
 * schedules the explorer sees and the trace's records are those of the
 * single frees.
 */
void ccvm_page_free_many(struct ccvm_platform *p, const uint64_t *pfns, unsigned int n)
{
	unsigned int i;

	if (ccvm_sync_serial(ccvm_sched_of(p)) || ccvm_tracing(p)) {
		for (i = 0; i < n; i++)
			ccvm_page_free(p, pfns[i]);
		return;
	}
	pages_free(p, pfns, n);
}

void ccvm_page_leak(struct ccvm_platform *p, uint64_t pfn)
{
	uint8_t old;

	if (!pfn_valid(p, pfn))
		return;
	old = atomic_fetch_or_explicit(&p->pfn_state[pfn], CCVM_PFN_LEAKED,
				       memory_order_relaxed);
	if (old & CCVM_PFN_LEAKED)
		return;
	atomic_fetch_add_explicit(&p->nr_leaked, 1, memory_order_relaxed);
	ccvm_account(p, NULL, CCVM_EV_PAGE_LEAK, 1);
	ccvm_log(CCVM_LOG_INFO, "pfn %#llx leaked", (unsigned long long)pfn);
}

void *ccvm_page_ptr(struct ccvm_platform *p, uint64_t pfn)
{
	return p->mem + (pfn << CCVM_PAGE_SHIFT);
}

void ccvm_page_mark_dirty(struct ccvm_platform *p, uint64_t pfn)
{
	if (pfn_valid(p, pfn) && !(pfn_state(p, pfn) & CCVM_PFN_DIRTY))
		atomic_fetch_or_explicit(&p->pfn_state[pfn], CCVM_PFN_DIRTY,
					 memory_order_relaxed);
}

bool ccvm_page_is_dirty(struct ccvm_platform *p, uint64_t pfn)
{
	return pfn_valid(p, pfn) && (pfn_state(p, pfn) & CCVM_PFN_DIRTY);
}

bool ccvm_page_is_allocated(struct ccvm_platform *p, uint64_t pfn)
{
	return pfn_valid(p, pfn) && (pfn_state(p, pfn) & CCVM_PFN_ALLOCATED);
}

bool ccvm_page_is_leaked(struct ccvm_platform *p, uint64_t pfn)
{
	return pfn_valid(p, pfn) && (pfn_state(p, pfn) & CCVM_PFN_LEAKED);
}

uint64_t ccvm_platform_pfn_limit(struct ccvm_platform *p)
{
	uint64_t bump;

	ccvm_mutex_lock(&p->mem_lock);
	bump = p->bump;
	ccvm_mutex_unlock(&p->mem_lock);
	return bump;
}

void ccvm_page_clear(struct ccvm_platform *p, uint64_t pfn)
{
	if (!pfn_valid(p, pfn))
		return;
	/* A page nobody wrote is zero already: clearing it would only touch it. */
	if (pfn_state(p, pfn) & CCVM_PFN_DIRTY) {
		memset(ccvm_page_ptr(p, pfn), 0, CCVM_PAGE_SIZE);
		atomic_fetch_and_explicit(&p->pfn_state[pfn], (uint8_t)~CCVM_PFN_DIRTY,
					  memory_order_relaxed);
	}
	ccvm_account_fast(p, NULL, CCVM_EV_PAGE_CLEAR, 1);
}

/* ---- host direct-map access (inspection) ------------------------------ */

static int host_phys_check(struct ccvm_platform *p, uint64_t pfn, uint32_t off,
			   const void *buf, uint32_t len)
{
	if (!p || !buf || !pfn_valid(p, pfn))
		return -EINVAL;
	if ((uint64_t)off + len > CCVM_PAGE_SIZE)
		return -EINVAL;
	return 0;
}

int ccvm_host_read_phys(struct ccvm_platform *p, uint64_t pfn, uint32_t off,
			void *buf, uint32_t len)
{
	uint8_t page[CCVM_PAGE_SIZE];
	int r;

	r = host_phys_check(p, pfn, off, buf, len);
	if (r)
		return r;
	r = ccvm_op_host_access(p, pfn, false);
	if (r < 0)
		return r;
	if (r == CCVM_HOST_ACCESS_CIPHERTEXT && ccvm_has_op(p, host_ciphertext)) {
		memcpy(page, ccvm_page_ptr(p, pfn), CCVM_PAGE_SIZE);
		ccvm_op_host_ciphertext(p, pfn, page);
		memcpy(buf, page + off, len);
	} else {
		memcpy(buf, (uint8_t *)ccvm_page_ptr(p, pfn) + off, len);
	}
	return 0;
}

int ccvm_host_write_phys(struct ccvm_platform *p, uint64_t pfn, uint32_t off,
			 const void *buf, uint32_t len)
{
	int r;

	r = host_phys_check(p, pfn, off, buf, len);
	if (r)
		return r;
	r = ccvm_op_host_access(p, pfn, true);
	if (r < 0)
		return r;
	ccvm_page_mark_dirty(p, pfn);
	memcpy((uint8_t *)ccvm_page_ptr(p, pfn) + off, buf, len);
	return 0;
}

/* ---- statistics -------------------------------------------------------- */

int ccvm_platform_get_stats(struct ccvm_platform *p, struct ccvm_stats *st)
{
	struct ccvm_stats s;
	size_t sz;

	if (!p || !st || st->sz < offsetof(struct ccvm_stats, events))
		return -EINVAL;
	memset(&s, 0, sizeof(s));
	ccvm_counters_read(&p->stats, &p->costs, &s);
	s.total_pages = p->nr_pages - 1;
	s.free_pages = atomic_load(&p->nr_free) + window_free_pages(p);
	s.leaked_pages = atomic_load(&p->nr_leaked);
	s.model_bytes = atomic_load(&p->model_bytes);
	s.pamt_pairs = atomic_load(&p->pamt_pairs);
	s.pamt_bytes = atomic_load(&p->pamt_bytes);
	sz = st->sz < sizeof(s) ? st->sz : sizeof(s);
	s.sz = sz;
	memcpy(st, &s, sz);
	return 0;
}
