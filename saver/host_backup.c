#include "host_backup.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "own_thread.h"
#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/thread.h"
#include "tracer/trace_writer.h"

#define MAX_THREADS 64
#define PIECE_TARGET (64u << 20)

enum piece_state { PENDING, CLAIMED, REGISTERED, PAGEABLE };

struct item {
	char *buf;
	int adopted;  /* touched before (_msv_host_touch): the caller's until prep_start succeeds */
	size_t len;   /* bytes mapped */
	size_t first; /* its first piece in the flat list */
	size_t n;     /* its pieces */
	CUcontext ctx;
};

struct msv_host_prep {
	struct item *items;
	size_t n;
	uint32_t *owner;        /* flat piece -> item */
	_Atomic unsigned char *state;
	size_t pieces;
	atomic_size_t next;     /* the next flat piece to claim */
	atomic_ullong bytes, touch_ns, register_ns;
	pthread_mutex_t m;
	pthread_cond_t c;
	pthread_t th[MAX_THREADS];
	int nth;
};

size_t _msv_host_piece(void)
{
	size_t chunk = _msv_options()->chunk_bytes;
	return (PIECE_TARGET + chunk - 1) / chunk * chunk;
}

/* Whole 2 MiB pages (huge pages where the kernel gives them). */
static size_t host_len(size_t len)
{
	size_t page = 2u << 20;
	return len ? (len + page - 1) / page * page : page;
}

static size_t piece_off(const struct msv_host_prep *p, size_t k, size_t *len)
{
	const struct item *it = &p->items[p->owner[k]];
	size_t off = (k - it->first) * _msv_host_piece();
	*len = it->len - off < _msv_host_piece() ? it->len - off : _msv_host_piece();
	return off;
}

/* Touch one piece (the kernel zeroes each page at its first write: the
 * slow part, which scales with threads and holds no driver lock; an
 * adopted buffer was touched before), then register it.  Registering from
 * the copying thread alone instead was measured on the H200: first pause
 * 388 ms against 352 ms. */
static void prepare(struct msv_host_prep *p, size_t k)
{
	const struct msv_driver *d = _msv_drv();
	const struct item *it = &p->items[p->owner[k]];
	size_t len, off = piece_off(p, k, &len);
	uint64_t t0 = _msv_now_ns();
	for (size_t b = 0; !it->adopted && b < len; b += 4096)
		((volatile char *)it->buf)[off + b] = 0;
	uint64_t t1 = _msv_now_ns();
	CUcontext old;
	MSV_BUSY_BEGIN();
	int pushed = it->ctx && d->cuCtxPushCurrent(it->ctx) == CUDA_SUCCESS;
	/* Mapped too: a resume right after a pause reads it from a kernel
	 * (saver/copy.h). */
	int ok = d->cuMemHostRegister &&
		 d->cuMemHostRegister(it->buf + off, len, CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP) ==
			 CUDA_SUCCESS;
	if (pushed)
		d->cuCtxPopCurrent(&old);
	MSV_BUSY_END();
	atomic_fetch_add(&p->bytes, len);
	atomic_fetch_add(&p->touch_ns, t1 - t0);
	atomic_fetch_add(&p->register_ns, _msv_now_ns() - t1);
	pthread_mutex_lock(&p->m);
	atomic_store(&p->state[k], ok ? REGISTERED : PAGEABLE);
	pthread_cond_broadcast(&p->c);
	pthread_mutex_unlock(&p->m);
}

/* Claim and prepare the next pending piece; 0 when none is left. */
static int help(struct msv_host_prep *p)
{
	size_t k = atomic_fetch_add(&p->next, 1);
	if (k >= p->pieces)
		return 0;
	atomic_store(&p->state[k], CLAIMED);
	prepare(p, k);
	return 1;
}

static void *worker(void *arg)
{
	struct msv_host_prep *p = arg;
	_msv_own_thread_start();
	while (help(p))
		;
	return NULL;
}

static void unmap_all(struct msv_host_prep *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->items[i].buf && !p->items[i].adopted)
			munmap(p->items[i].buf, p->items[i].len);
}

static void prep_free(struct msv_host_prep *p)
{
	free(p->items);
	free(p->owner);
	free((void *)p->state);
	free(p);
}

static __thread unsigned long long short_need, short_avail;

int _msv_host_shortfall(unsigned long long *need, unsigned long long *avail)
{
	*need = short_need;
	*avail = short_avail;
	short_need = short_avail = 0;
	return *need != 0;
}

/* The host's available memory (/proc/meminfo MemAvailable), or -1. */
static long long mem_available(void)
{
	char line[128];
	long long kib = -1;
	FILE *f = fopen("/proc/meminfo", "re");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %lld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib < 0 ? -1 : kib * 1024;
}

/* Whether `bytes` more can be touched and leave the reserve available. */
static int fits(unsigned long long bytes)
{
	long long have = mem_available();
	unsigned long long reserve = _msv_options()->host_reserve;
	short_need = short_avail = 0;
	if (have < 0 || (unsigned long long)have >= bytes + reserve)
		return 1;
	short_need = bytes;
	short_avail = (unsigned long long)have > reserve ? (unsigned long long)have - reserve : 0;
	return 0;
}

/* An anonymous mapping of host_len(len) bytes with huge pages asked for. */
static char *map_host(size_t len)
{
	char *buf = mmap(NULL, host_len(len), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			 -1, 0);
	if (buf == MAP_FAILED)
		return NULL;
	madvise(buf, host_len(len), MADV_HUGEPAGE);
	return buf;
}

void *_msv_host_touch(size_t len)
{
	if (!fits(host_len(len)))
		return NULL;
	char *buf = map_host(len);
	for (size_t b = 0; buf && b < host_len(len); b += 4096)
		((volatile char *)buf)[b] = 0;
	return buf;
}

struct msv_host_prep *_msv_host_prep_start(const size_t *lens, const CUcontext *ctxs, void *const *bufs, size_t n,
					   int threads)
{
	unsigned long long want = 0;
	for (size_t i = 0; i < n; i++)
		want += lens[i] && !(bufs && bufs[i]) ? host_len(lens[i]) : 0;
	if (!fits(want))
		return NULL;
	struct msv_host_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->n = n;
	p->items = calloc(n ? n : 1, sizeof(*p->items));
	size_t piece = _msv_host_piece();
	for (size_t i = 0; p->items && i < n; i++) {
		if (!lens[i])
			continue;
		struct item *it = &p->items[i];
		it->len = host_len(lens[i]);
		it->ctx = ctxs[i];
		it->first = p->pieces;
		it->n = (it->len + piece - 1) / piece;
		p->pieces += it->n;
		it->adopted = bufs && bufs[i];
		it->buf = it->adopted ? bufs[i] : map_host(lens[i]);
		if (!it->buf) {
			unmap_all(p);
			prep_free(p);
			return NULL;
		}
	}
	p->owner = calloc(p->pieces ? p->pieces : 1, sizeof(*p->owner));
	p->state = calloc(p->pieces ? p->pieces : 1, sizeof(*p->state));
	if (!p->items || !p->owner || !p->state) {
		if (p->items)
			unmap_all(p);
		prep_free(p);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < p->items[i].n; k++)
			p->owner[p->items[i].first + k] = (uint32_t)i;
	pthread_mutex_init(&p->m, NULL);
	pthread_cond_init(&p->c, NULL);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus > 0 && threads > cpus)
		threads = (int)cpus;
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	while (p->nth < threads && (size_t)p->nth < p->pieces &&
	       pthread_create(&p->th[p->nth], NULL, worker, p) == 0)
		pthread_setname_np(p->th[p->nth++], "memsaver-prep");
	return p;
}

void *_msv_host_prep_buf(struct msv_host_prep *p, size_t i)
{
	return p->items[i].buf;
}

/* Wait for piece k.  Without threads the caller prepares the pieces; with
 * them it only waits: a pausing thread that touched memory would stop
 * issuing the copies of the pieces already prepared. */
static int wait_piece(struct msv_host_prep *p, size_t k)
{
	while (!p->nth && atomic_load(&p->state[k]) < REGISTERED && help(p))
		;
	pthread_mutex_lock(&p->m);
	while (atomic_load(&p->state[k]) < REGISTERED)
		pthread_cond_wait(&p->c, &p->m);
	pthread_mutex_unlock(&p->m);
	return atomic_load(&p->state[k]) == REGISTERED;
}

int _msv_host_prep_wait(struct msv_host_prep *p, size_t i, size_t off)
{
	return wait_piece(p, p->items[i].first + off / _msv_host_piece());
}

/* Unregister the registered pieces of a buffer that is not registered whole. */
static void unregister(const struct item *it, const _Atomic unsigned char *state)
{
	const struct msv_driver *d = _msv_drv();
	MSV_BUSY_BEGIN();
	for (size_t k = 0; k < it->n; k++)
		if (atomic_load(&state[it->first + k]) == REGISTERED && d->cuMemHostUnregister)
			d->cuMemHostUnregister(it->buf + k * _msv_host_piece());
	MSV_BUSY_END();
}

void _msv_host_prep_finish(struct msv_host_prep *p, int *pinned, struct msv_prep_stats *st)
{
	for (size_t k = 0; k < p->pieces; k++)
		wait_piece(p, k);
	for (int t = 0; t < p->nth; t++)
		pthread_join(p->th[t], NULL);
	for (size_t i = 0; i < p->n; i++) {
		const struct item *it = &p->items[i];
		int whole = it->buf != NULL;
		for (size_t k = 0; whole && k < it->n; k++)
			whole = atomic_load(&p->state[it->first + k]) == REGISTERED;
		if (it->buf && !whole) {
			unregister(it, p->state);
			MSV_WARN("registering %zu bytes of host memory failed; backing up through pageable memory "
				 "(slower)", it->len);
		}
		pinned[i] = whole;
	}
	*st = (struct msv_prep_stats){.bytes = p->bytes, .touch_ns = p->touch_ns, .register_ns = p->register_ns,
				      .threads = p->nth};
	for (size_t i = 0; i < p->n; i++)
		st->adopted_bytes += p->items[i].adopted ? p->items[i].len : 0;
	pthread_cond_destroy(&p->c);
	pthread_mutex_destroy(&p->m);
	prep_free(p);
}

void _msv_host_free(void *buf, size_t len, int pinned)
{
	const struct msv_driver *d = _msv_drv();
	if (!buf)
		return;
	size_t mlen = host_len(len), piece = _msv_host_piece();
	if (pinned && d && d->cuMemHostUnregister) {
		MSV_BUSY_BEGIN();
		for (size_t off = 0; off < mlen; off += piece)
			d->cuMemHostUnregister((char *)buf + off);
		MSV_BUSY_END();
	}
	munmap(buf, mlen);
}
