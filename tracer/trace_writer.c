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
	size_t len, cap;
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

static int grow(struct msv_trace_writer *w, size_t need)
{
	if (w->len + need <= w->cap)
		return 0;
	size_t cap = w->cap ? w->cap : 1 << 16;
	while (cap < w->len + need)
		cap *= 2;
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
