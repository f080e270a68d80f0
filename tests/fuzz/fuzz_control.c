/* Fuzz target: the control socket's request handling (saver/control.c):
 * the line framing of srv_client over a real socket (partial lines, CR LF,
 * blank lines, oversized requests, a last request without a newline) and
 * srv_dispatch on every request.  As in tests/unit/test_control.c the
 * server is compiled into this file and the msv_* API is replaced by fakes
 * that only check what they are given; a reader thread takes the replies
 * and checks each is one line of JSON with an "ok" member. */
#define FUZZ_NAME "control"
#include "tests/fuzz/fuzz.h"

#include "saver/control.c"
/* The process state the control server reports (deep pause); no CUDA. */
#if __has_include("saver/state.c")
#include "saver/state.c"
#endif

#include <sys/socket.h>

static int fake_api(const char *tags)
{
	if (tags)
		(void)strlen(tags); /* a string the API may read to its end */
	return tags && tags[0] == 'x' ? -EINVAL : 0;
}

int msv_pause(const char *c) { return fake_api(c); }
int msv_resume(const char *c) { return fake_api(c); }
const char *msv_last_error(void) { return ""; }
int msv_snapshot(const char *label) { return fake_api(label); }
/* Never touch the file system: report requests get the API's error path. */
int msv_report_write(const char *path) { (void)path; return -EIO; }
json_t *_msv_status_json(void)
{
	return json_pack("{s:i,s:[s]}", "pid", 1, "paused", "kv");
}
/* A "checkpointed" note's readings go to the trace; no tracer here. */
void _msv_deep_record_checkpoint(const json_t *detail) { (void)detail; }

struct drain {
	int fd;
	size_t replies;
};

/* Every reply is one line holding a JSON object with a boolean "ok". */
static void *drain_thread(void *arg)
{
	struct drain *d = arg;
	size_t cap = 1 << 16, have = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (have == cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = recv(d->fd, buf + have, cap - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		char *nl;
		while ((nl = memchr(buf, '\n', have))) {
			json_error_t je;
			json_t *r = json_loadb(buf, (size_t)(nl - buf), 0, &je);
			if (!r || !json_is_boolean(json_object_get(r, "ok"))) {
				fprintf(stderr, "bad reply: %.*s\n", (int)(nl - buf), buf);
				__builtin_trap();
			}
			json_decref(r);
			d->replies++;
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have);
		}
	}
	if (have) {
		fprintf(stderr, "reply without a newline: %.*s\n", (int)have, buf);
		__builtin_trap();
	}
	free(buf);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *buf;
	int sv[2];
	if (!buf) {
		buf = malloc(MSV_CONTROL_MAX_REQUEST + 1);
		setenv("MEMSAVER_LOG", "error", 1);
		request_timeout_ms = 200;
	}
	/* The way the server reads: nonblocking, from accept4. */
	if (!buf || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return 0;
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	struct drain d = {.fd = sv[1]};
	pthread_t th;
	if (pthread_create(&th, NULL, drain_thread, &d) != 0) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	/* Send everything, then half-close: srv_client reads to EOF. */
	size_t off = 0;
	while (off < size) {
		ssize_t w = send(sv[1], data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EAGAIN) {
			/* The server has not started reading: serve what is
			 * there first, then go on (same as a slow client). */
			break;
		}
		break;
	}
	shutdown(sv[1], SHUT_WR);
	srv_client(sv[0], buf);
	close(sv[0]);
	pthread_join(th, NULL);
	close(sv[1]);
	return 0;
}

#ifdef MSV_FUZZ_REPLAY
#include "tests/fuzz/replay.c"
#endif
