#include "trace_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "options.h"

/* Why the in-memory copy is bounded: every allocating thread appends under
 * w->lock, so a copy that grew with the process's lifetime would both eat
 * host memory without end and, at each doubling, make every allocation wait
 * for a realloc of it.  The file has no such bound: it costs disk, not the
 * host's memory or its allocations' latency.
 *
 * What is dropped when the bound is reached: allocation/free pairs that no
 * other record separates (see compact()).  Every record the analyzer takes a
 * reading or a decision at (phases, driver checkpoints, pause, resume,
 * sharing, app-owned VMM) then sees exactly the allocations it saw before,
 * so the live report's sources still add up; only the memory-over-time
 * timeline and the allocation counts lose those transient allocations.
 * When that does not free half the room, the copy stops growing: the live
 * report is then built from a prefix of the trace, like a torn trace. */
#define TRACE_MIN_MAX (64u << 10)

/* Interned strings: open addressing on a power-of-two table. */
struct str_slot {
	uint64_t hash;
	char *s;
	uint32_t id;
};

struct msv_trace_writer {
	pthread_mutex_t lock;
	int fd;
	unsigned char *buf; /* the same bytes as the file */
	size_t len, cap, max;
	int full;        /* at max after compacting: memory keeps no more records */
	int compacted;   /* compact() has dropped something (said once) */
	uint64_t n_dropped; /* allocation/free pairs compacted away */
	struct str_slot *slots;
	size_t n_slots, n_strings;
	int write_failed;
};

uint64_t _msv_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* Records of the in-memory copy: index i is at buf + sizeof(header) + 64 i. */
static inline struct msv_rec *rec_at(struct msv_trace_writer *w, size_t i)
{
	return (struct msv_rec *)(w->buf + sizeof(struct msv_trace_header) + i * MSV_REC_SIZE);
}

/* Blocks a record occupies: a string carries its payload. */
static inline size_t rec_blocks(const struct msv_rec *r)
{
	return 1 + (r->type == MSV_REC_STRING ? (r->size + MSV_REC_SIZE - 1) / MSV_REC_SIZE : 0);
}

/* The open-addressing table of compact(): record index + 1 of the live
 * allocation at an address, top bit set when that allocation replaced one
 * whose free was missed (the analyzer then forgets the old one; dropping the
 * new pair would bring it back). */
#define LIVE_KEEP 0x80000000u

static size_t live_find(struct msv_trace_writer *w, const uint32_t *t, size_t mask, uint64_t addr)
{
	size_t j = (size_t)((addr >> 6) * 0x9e3779b97f4a7c15ull) & mask;
	while (t[j] && rec_at(w, (t[j] & ~LIVE_KEEP) - 1)->addr != addr)
		j = (j + 1) & mask;
	return j;
}

/* Linear probing keeps no tombstones: later entries of the run shift back. */
static void live_del(struct msv_trace_writer *w, uint32_t *t, size_t mask, size_t j)
{
	for (size_t k = (j + 1) & mask; t[k]; k = (k + 1) & mask) {
		uint64_t a = rec_at(w, (t[k] & ~LIVE_KEEP) - 1)->addr;
		size_t home = (size_t)((a >> 6) * 0x9e3779b97f4a7c15ull) & mask;
		if (((k - home) & mask) >= ((k - j) & mask)) {
			t[j] = t[k];
			j = k;
		}
	}
	t[j] = 0;
}

/* Drop every ALLOC whose FREE follows with only allocations, frees and
 * strings in between, and that FREE; then close the gaps.  Caller holds the
 * lock.  Its one allocation is bounded: 8 bytes per allocation record, at
 * most max / 8 bytes.  Returns the bytes freed. */
static size_t compact(struct msv_trace_writer *w)
{
	size_t n = (w->len - sizeof(struct msv_trace_header)) / MSV_REC_SIZE, n_alloc = 0, i;
	for (i = 0; i < n; i += rec_blocks(rec_at(w, i)))
		n_alloc += rec_at(w, i)->type == MSV_REC_ALLOC;
	size_t slots = 16;
	while (slots < 2 * n_alloc)
		slots *= 2;
	uint32_t *t = calloc(slots, sizeof(*t));
	if (!t)
		return 0;
	size_t mask = slots - 1, barrier = 0; /* index + 1 of the last other record */
	for (i = 0; i < n; i += rec_blocks(rec_at(w, i))) {
		struct msv_rec *r = rec_at(w, i);
		if (r->type == MSV_REC_STRING)
			continue;
		if (r->type != MSV_REC_ALLOC && r->type != MSV_REC_FREE) {
			barrier = i + 1;
			continue;
		}
		size_t j = live_find(w, t, mask, r->addr);
		if (r->type == MSV_REC_ALLOC) {
			t[j] = (uint32_t)(i + 1) | (t[j] ? LIVE_KEEP : 0);
			continue;
		}
		if (!t[j])
			continue; /* a free of something not recorded: keep it */
		size_t a = (t[j] & ~LIVE_KEEP) - 1;
		if (!(t[j] & LIVE_KEEP) && a >= barrier) {
			rec_at(w, a)->type = MSV_REC_NONE;
			r->type = MSV_REC_NONE;
			w->n_dropped++;
		}
		live_del(w, t, mask, j);
	}
	free(t);
	size_t o = 0;
	for (i = 0; i < n;) {
		size_t b = rec_blocks(rec_at(w, i));
		if (rec_at(w, i)->type != MSV_REC_NONE) {
			if (o != i)
				memmove(rec_at(w, o), rec_at(w, i), b * MSV_REC_SIZE);
			o += b;
		}
		i += b;
	}
	size_t freed = (n - o) * MSV_REC_SIZE;
	w->len -= freed;
	return freed;
}

/* Room for need more bytes in memory, within w->max.  Caller holds the lock. */
static int grow(struct msv_trace_writer *w, size_t need)
{
	if (w->full)
		return -ENOSPC;
	if (w->len + need > w->max) {
		size_t freed = compact(w);
		if (freed && !w->compacted++)
			MSV_INFO("in-memory event log reached MEMSAVER_TRACE_MAX (%zu bytes): "
				 "dropping allocation/free pairs no other event separates; the live "
				 "report keeps every live allocation", w->max);
		if (w->len + need > w->max || w->len > w->max / 2) {
			w->full = 1;
			MSV_WARN("in-memory event log full at MEMSAVER_TRACE_MAX (%zu bytes) with %zu "
				 "bytes of live allocations and events: the live report stops here%s",
				 w->max, w->len,
				 w->fd >= 0 ? "; the trace file goes on, `memsaver report` reads all of it"
					    : "");
			return -ENOSPC;
		}
	}
	if (w->len + need <= w->cap)
		return 0;
	size_t cap = w->cap ? w->cap : 1 << 16;
	while (cap < w->len + need)
		cap *= 2;
	if (cap > w->max)
		cap = w->max;
	unsigned char *nb = realloc(w->buf, cap);
	if (!nb)
		return -ENOMEM;
	w->buf = nb;
	w->cap = cap;
	return 0;
}

/* Caller holds the lock.  One write(2) per call keeps a crash to one torn
 * piece at the tail. */
static void emit(struct msv_trace_writer *w, const void *p, size_t n)
{
	if (grow(w, n) == 0) {
		memcpy(w->buf + w->len, p, n);
		w->len += n;
	}
	if (w->fd < 0 || w->write_failed)
		return;
	const char *c = p;
	while (n) {
		ssize_t k = write(w->fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			w->write_failed = 1;
			MSV_ERROR("trace write failed: %s; the trace file stops here, the live report goes on",
				  strerror(errno));
			return;
		}
		c += k;
		n -= (size_t)k;
	}
}

int _msv_trace_writer_new(const char *path, int pid, struct msv_trace_writer **out)
{
	int rc = 0;
	struct msv_trace_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	w->fd = -1;
	uint64_t max = _msv_options()->trace_max;
	/* A record index fits 31 bits (compact()'s table); a header and a few
	 * records always fit. */
	w->max = max < TRACE_MIN_MAX ? TRACE_MIN_MAX : max > (64ull << 30) ? (64ull << 30) : (size_t)max;
	if (path && *path) {
		w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (w->fd < 0) {
			rc = -errno;
			MSV_ERROR("cannot create trace %s: %s; tracing to memory only", path, strerror(errno));
		}
	}
	struct msv_trace_header h;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, MSV_TRACE_MAGIC, 8);
	h.version = MSV_TRACE_VERSION;
	h.rec_size = MSV_REC_SIZE;
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	h.start_mono_ns = _msv_now_ns();
	h.start_realtime_ns = (uint64_t)rt.tv_sec * 1000000000ull + rt.tv_nsec;
	h.pid = (uint32_t)pid;
	emit(w, &h, sizeof(h));
	*out = w;
	return rc;
}

void _msv_trace_writer_detach(struct msv_trace_writer *w)
{
	if (w && w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
	}
}

void _msv_trace_writer_free(struct msv_trace_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	for (size_t i = 0; i < w->n_slots; i++)
		free(w->slots[i].s);
	free(w->slots);
	free(w->buf);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

void _msv_trace_append(struct msv_trace_writer *w, const struct msv_rec *r)
{
	if (!w)
		return;
	struct msv_rec c = *r;
	if (!c.t_ns)
		c.t_ns = _msv_now_ns();
	if (!c.tid)
		c.tid = (uint32_t)syscall(SYS_gettid);
	pthread_mutex_lock(&w->lock);
	emit(w, &c, sizeof(c));
	pthread_mutex_unlock(&w->lock);
}

static int rehash(struct msv_trace_writer *w)
{
	size_t n = w->n_slots ? w->n_slots * 2 : 256;
	struct str_slot *ns = calloc(n, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	for (size_t i = 0; i < w->n_slots; i++) {
		if (!w->slots[i].s)
			continue;
		size_t j = w->slots[i].hash & (n - 1);
		while (ns[j].s)
			j = (j + 1) & (n - 1);
		ns[j] = w->slots[i];
	}
	free(w->slots);
	w->slots = ns;
	w->n_slots = n;
	return 0;
}

uint32_t _msv_trace_intern(struct msv_trace_writer *w, const char *s)
{
	if (!w || !s || !*s)
		return 0;
	uint64_t h = fnv1a(s);
	uint32_t id = 0;
	pthread_mutex_lock(&w->lock);
	if ((w->n_strings + 1) * 2 > w->n_slots && rehash(w) != 0)
		goto out;
	size_t j = h & (w->n_slots - 1);
	for (; w->slots[j].s; j = (j + 1) & (w->n_slots - 1)) {
		if (w->slots[j].hash == h && strcmp(w->slots[j].s, s) == 0) {
			id = w->slots[j].id;
			goto out;
		}
	}
	size_t len = strlen(s);
	char *copy = strdup(s);
	size_t blocks = (len + MSV_REC_SIZE - 1) / MSV_REC_SIZE;
	unsigned char *payload = calloc(1, sizeof(struct msv_rec) + blocks * MSV_REC_SIZE);
	if (!copy || !payload) {
		free(copy);
		free(payload);
		goto out;
	}
	id = (uint32_t)++w->n_strings;
	w->slots[j] = (struct str_slot){.hash = h, .s = copy, .id = id};
	struct msv_rec r = {.type = MSV_REC_STRING, .addr = id, .size = len, .t_ns = _msv_now_ns()};
	memcpy(payload, &r, sizeof(r));
	memcpy(payload + sizeof(r), s, len);
	/* Header and payload in one write: a torn string is detectable. */
	emit(w, payload, sizeof(r) + blocks * MSV_REC_SIZE);
	free(payload);
out:
	pthread_mutex_unlock(&w->lock);
	return id;
}

int _msv_trace_copy(struct msv_trace_writer *w, void **buf, size_t *len)
{
	pthread_mutex_lock(&w->lock);
	void *c = malloc(w->len ? w->len : 1);
	if (c) {
		memcpy(c, w->buf, w->len);
		*len = w->len;
	}
	pthread_mutex_unlock(&w->lock);
	*buf = c;
	return c ? 0 : -ENOMEM;
}
