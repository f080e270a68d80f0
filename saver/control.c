/* The control server: one detached thread per process serving a Unix socket,
 * one client at a time (see control.h for the protocol).
 *
 * Why one thread and one client at a time: pause and resume are not meant to
 * run concurrently, and a server that never runs two requests at once needs
 * no locking beyond what the msv_* API already does.  What one client may
 * cost the others is bounded instead: every request must arrive within
 * request_timeout_ms and every reply must be taken within the same time, so a
 * client that connects and stalls delays the next one by seconds, not
 * forever.  A connection as a whole ends connection_budget_ms after it was
 * accepted (a request already running finishes first): without that, a
 * client sending one request every few seconds would keep every other client
 * waiting for as long as it liked.  The clients memsaver ships send one
 * request per connection.
 *
 * Why the fork handlers: a child forked by the engine (Python multiprocessing,
 * a tokenizer pool) inherits the listening socket but not the thread.  It
 * must neither hold the parent's socket open nor believe it serves one; the
 * child handler closes the inherited descriptors and forgets the server, so
 * the library can call _msv_control_start() again for the child's own pid.
 * Only async-signal-safe calls (close) run in that handler. */
#include "saver/control.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "memsaver.h"
#include "saver/deep.h"
#include "saver/state.h"
#include "saver/status.h"
#include "tracer/log.h"
#include "tracer/options.h"

/* How long one request may take to arrive and its reply to be taken.  Not a
 * MEMSAVER_* option: nobody needs to tune it; tests shorten it. */
static int request_timeout_ms = 5000;
/* How long one connection may hold the server, from accept to the start of
 * its last request; likewise not an option. */
static int connection_budget_ms = 30000;

struct server {
	int lfd;
	int wake[2]; /* written by _msv_control_stop to end the thread's poll */
	pid_t pid;   /* the process that bound the socket */
	atomic_int cfd; /* the client being served, -1 if none */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static pthread_mutex_t srv_lock = PTHREAD_MUTEX_INITIALIZER;
static struct server *srv_cur; /* under srv_lock */
static pthread_once_t srv_atfork_once = PTHREAD_ONCE_INIT;

static void srv_close_fds(struct server *s)
{
	int c = atomic_exchange(&s->cfd, -1);
	if (c >= 0)
		close(c);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->wake[0] >= 0)
		close(s->wake[0]);
	if (s->wake[1] >= 0)
		close(s->wake[1]);
	s->lfd = s->wake[0] = s->wake[1] = -1;
}

static void srv_atfork_prepare(void)
{
	pthread_mutex_lock(&srv_lock);
}

static void srv_atfork_parent(void)
{
	pthread_mutex_unlock(&srv_lock);
}

static void srv_atfork_child(void)
{
	/* The struct stays allocated: the parent's thread owns its copy, and
	 * free() is not async-signal-safe.  A few hundred bytes per fork. */
	if (srv_cur)
		srv_close_fds(srv_cur);
	srv_cur = NULL;
	pthread_mutex_init(&srv_lock, NULL);
}

static void srv_register_atfork(void)
{
	int rc = pthread_atfork(srv_atfork_prepare, srv_atfork_parent, srv_atfork_child);
	if (rc)
		MSV_WARN("pthread_atfork failed: %s; a forked child keeps the parent's socket",
			 strerror(rc));
}

/* ---- directories and the socket file ---------------------------------- */

static int srv_mkdirs(const char *dir)
{
	char tmp[4096];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, dir, n + 1);
	for (char *p = tmp + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
			int e = errno;
			MSV_WARN("control socket disabled: mkdir %s failed: %s", tmp, strerror(e));
			return -e;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	return 0;
}

/* A directory that someone else owns or can write to could hand our socket
 * path to an impostor: refuse it instead of fixing its mode. */
static int srv_check_dir(const char *dir, int follow)
{
	struct stat st;
	if ((follow ? stat(dir, &st) : lstat(dir, &st)) != 0) {
		int e = errno;
		MSV_WARN("control socket disabled: stat %s failed: %s", dir, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		MSV_WARN("control socket disabled: %s is not a directory", dir);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid()) {
		MSV_WARN("control socket disabled: %s is owned by uid %u, not by us (uid %u)", dir,
			 (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & 022) {
		MSV_WARN("control socket disabled: %s is group- or world-writable (mode %03o); "
			 "chmod 700 it or set MEMSAVER_SOCKET_DIR",
			 dir, (unsigned)(st.st_mode & 0777));
		return -EPERM;
	}
	return 0;
}

/* A socket file at our path is left over from an earlier process with our
 * pid (a crash, or pid reuse).  It is removed unless something answers on it
 * (a process of another pid namespace sharing the directory). */
static int srv_remove_stale(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		MSV_WARN("control socket disabled: %s exists and is not a socket", path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, path);
	int live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN;
	close(fd);
	if (live) {
		MSV_WARN("control socket disabled: %s is served by another process", path);
		return -EADDRINUSE;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		int e = errno;
		MSV_WARN("control socket disabled: unlink stale %s failed: %s", path, strerror(e));
		return -e;
	}
	return 0;
}

static int srv_open(struct server *s)
{
	char base[4096], sess[4096];
	int rc = _msv_control_dir(base, sizeof(base));
	if (rc == 0)
		rc = _msv_control_path(NULL, (int)s->pid, s->path, sizeof(s->path));
	if (rc) {
		MSV_WARN("control socket disabled: no usable socket path (%s; at most %zu bytes, "
			 "MEMSAVER_SESSION must be one path component)",
			 strerror(-rc), sizeof(s->path) - 1);
		return rc;
	}
	snprintf(sess, sizeof(sess), "%s", s->path);
	*strrchr(sess, '/') = '\0';
	if ((rc = srv_mkdirs(sess)) != 0)
		return rc;
	/* An explicit MEMSAVER_SOCKET_DIR may be a symlink the user made; the
	 * directories memsaver names itself must not be. */
	if ((rc = srv_check_dir(base, _msv_options()->socket_dir[0] != '\0')) != 0 ||
	    (rc = srv_check_dir(sess, 0)) != 0)
		return rc;
	if ((rc = srv_remove_stale(s->path)) != 0)
		return rc;

	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0) {
		rc = -errno;
		MSV_WARN("control socket disabled: socket failed: %s", strerror(-rc));
		return rc;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, s->path);
	if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = -errno;
		MSV_WARN("control socket disabled: bind %s failed: %s", s->path, strerror(-rc));
		return rc;
	}
	if (chmod(s->path, 0600) != 0 || listen(s->lfd, 16) != 0) {
		rc = -errno;
		MSV_WARN("control socket disabled: chmod/listen %s failed: %s", s->path, strerror(-rc));
		unlink(s->path);
		return rc;
	}
	if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		rc = -errno;
		MSV_WARN("control socket disabled: pipe2 failed: %s", strerror(-rc));
		unlink(s->path);
		return rc;
	}
	return 0;
}

/* ---- one client --------------------------------------------------------- */

static long long srv_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int srv_wait(int fd, short ev, long long deadline)
{
	for (;;) {
		long long left = deadline - srv_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = ev};
		int n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n > 0)
			return 0;
	}
}

static int srv_send_all(int fd, const char *p, size_t n, long long deadline)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w, n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN)
			return -errno;
		int rc = srv_wait(fd, POLLOUT, deadline);
		if (rc)
			return rc;
	}
	return 0;
}

static void srv_reply(int fd, json_t *reply)
{
	if (!reply)
		reply = json_pack("{s:b,s:s}", "ok", 0, "error", "out of memory building the reply");
	char *s = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	json_decref(reply);
	if (!s) {
		static const char oom[] = "{\"ok\":false,\"error\":\"out of memory\"}\n";
		srv_send_all(fd, oom, sizeof(oom) - 1, srv_now_ms() + request_timeout_ms);
		return;
	}
	size_t n = strlen(s);
	/* JSON_COMPACT escapes newlines inside strings: the reply is one line. */
	int rc = srv_send_all(fd, s, n, srv_now_ms() + request_timeout_ms);
	if (rc == 0)
		rc = srv_send_all(fd, "\n", 1, srv_now_ms() + request_timeout_ms);
	if (rc && rc != -EPIPE && rc != -ECONNRESET)
		MSV_WARN("control: sending a reply failed: %s", strerror(-rc));
	free(s);
}

static json_t *srv_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *srv_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b,s:s}", "ok", 0, "error", msg);
}

static json_t *srv_api_error(int rc)
{
	const char *e = msv_last_error();
	return json_pack("{s:b,s:s,s:i}", "ok", 0, "error", e && *e ? e : strerror(rc < 0 ? -rc : rc),
			 "code", rc);
}

/* "tags": absent or null (every wrapped category), a string, or a list of
 * strings joined with commas.  Returns NULL with *err set on a bad value. */
static const char *srv_tags(json_t *req, char *buf, size_t len, json_t **err)
{
	json_t *t = json_object_get(req, "tags");
	*err = NULL;
	if (!t || json_is_null(t))
		return NULL;
	if (json_is_string(t))
		return json_string_value(t);
	if (json_is_array(t)) {
		size_t i, o = 0;
		json_t *v;
		buf[0] = '\0';
		json_array_foreach(t, i, v) {
			if (!json_is_string(v))
				break;
			int n = snprintf(buf + o, len - o, "%s%s", i ? "," : "", json_string_value(v));
			if (n < 0 || (size_t)n >= len - o)
				break;
			o += (size_t)n;
		}
		if (i == json_array_size(t))
			return buf;
	}
	*err = srv_error("\"tags\" must be a string like \"kv,graph\" or a list of category names");
	return NULL;
}

static json_t *srv_pause_resume(json_t *req, int pause)
{
	char buf[1024];
	json_t *err;
	const char *tags = srv_tags(req, buf, sizeof(buf), &err);
	if (err)
		return err;
	long long t0 = srv_now_ms();
	int rc = pause ? msv_pause(tags) : msv_resume(tags);
	long long ms = srv_now_ms() - t0;
	if (rc)
		return srv_api_error(rc);
	json_t *r = json_pack("{s:b,s:s,s:I}", "ok", 1, "tags", tags ? tags : "", "ms", (json_int_t)ms);
	const char *note = msv_last_error();
	if (r && note && *note)
		json_object_set_new(r, "warning", json_string(note));
	json_t *st = _msv_status_json();
	json_t *paused = st ? json_object_get(st, "paused") : NULL;
	if (r && paused)
		json_object_set(r, "paused", paused);
	json_decref(st);
	return r;
}

static json_t *srv_report(json_t *req)
{
	json_t *p = json_object_get(req, "path");
	const char *path = NULL;
	char conf[4096];
	if (p && !json_is_null(p) && !json_is_string(p))
		return srv_error("\"path\" must be a string");
	if (p && json_is_string(p) && json_string_value(p)[0])
		path = json_string_value(p);
	int rc = msv_report_write(path);
	if (rc)
		return srv_api_error(rc);
	if (!path) {
		/* msv_report_write(NULL) wrote the configured report; find it. */
		if (_msv_expand_path(_msv_options()->report, (int)getpid(), conf, sizeof(conf)) != 0 ||
		    !conf[0])
			return srv_error("the report was written, but no report path is configured "
					 "to read it back from; pass \"path\"");
		path = conf;
	}
	json_error_t je;
	json_t *rep = json_load_file(path, 0, &je);
	if (!rep)
		return srv_error("the report was written to %s but cannot be read back: %s", path,
				 je.text);
	return json_pack("{s:b,s:s,s:o}", "ok", 1, "path", path, "report", rep);
}

/* {"cmd":"deep","state":"locked"|"checkpointed"|"running"|"paused",
 * "cli_pid":N,"detail":{...}}: the CLI's note on the driver checkpoint it is
 * doing to this process (saver/state.h).  Touches no CUDA. */
static json_t *srv_deep(json_t *req)
{
	enum msv_state s;
	json_t *detail = json_object_get(req, "detail");
	json_t *cli = json_object_get(req, "cli_pid");
	if (_msv_state_parse(json_string_value(json_object_get(req, "state")), &s) != 0)
		return srv_error("deep needs \"state\": locked, checkpointed, running or paused");
	if ((detail && !json_is_null(detail) && !json_is_object(detail)) || (cli && !json_is_integer(cli)))
		return srv_error("deep: \"detail\" must be an object and \"cli_pid\" an integer");
	int first_checkpoint = s == MSV_STATE_CHECKPOINTED && _msv_state_deep() != MSV_STATE_CHECKPOINTED;
	if (_msv_state_note(s, cli ? (int)json_integer_value(cli) : 0,
			    json_is_object(detail) ? detail : NULL) != 0)
		return srv_error("deep: bad note");
	if (first_checkpoint)
		_msv_deep_record_checkpoint(detail);
	return json_pack("{s:b,s:s}", "ok", 1, "state", _msv_state_name(s));
}

/* While the driver holds this process locked or checkpointed, every CUDA
 * call blocks until the unlock: a request that needs CUDA would hang this
 * thread, and with it every later status.  Refuse it instead. */
static json_t *srv_refuse_deep(const char *cmd)
{
	enum msv_state s = _msv_state_deep();
	if (s == MSV_STATE_RUNNING)
		return NULL;
	return srv_error("%s refused: the process is %s by the driver's process checkpoint (deep "
			 "pause); `memsaver ctl resume` restores it first",
			 cmd, _msv_state_name(s));
}

/* *bad: the line was not JSON at all. */
static json_t *srv_dispatch(const char *line, size_t len, int *bad)
{
	json_error_t je;
	json_t *req = json_loadb(line, len, 0, &je);
	*bad = req == NULL;
	if (!req)
		return srv_error("request is not JSON: %s at column %d", je.text, je.column);
	json_t *r;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	if (!json_is_object(req))
		r = srv_error("request must be a JSON object like {\"cmd\":\"status\"}");
	else if (!cmd)
		r = srv_error("request has no \"cmd\" string; valid: pause, resume, status, snapshot, "
			      "report, deep");
	else if (strcmp(cmd, "deep") == 0)
		r = srv_deep(req);
	else if (strcmp(cmd, "status") == 0) {
		json_t *st = _msv_status_json();
		_msv_state_status(st);
		r = st ? json_pack("{s:b,s:o}", "ok", 1, "status", st)
		       : srv_error("out of memory building the status");
	} else if ((r = srv_refuse_deep(cmd)) != NULL)
		;
	else if (strcmp(cmd, "pause") == 0)
		r = srv_pause_resume(req, 1);
	else if (strcmp(cmd, "resume") == 0)
		r = srv_pause_resume(req, 0);
	else if (strcmp(cmd, "snapshot") == 0) {
		const char *label = json_string_value(json_object_get(req, "label"));
		int rc;
		if (!label || !*label)
			r = srv_error("snapshot needs a \"label\" string");
		else if ((rc = msv_snapshot(label)) != 0)
			r = srv_api_error(rc);
		else
			r = json_pack("{s:b,s:s}", "ok", 1, "label", label);
	} else if (strcmp(cmd, "report") == 0)
		r = srv_report(req);
	else
		r = srv_error("unknown command \"%.64s\"; valid: pause, resume, status, snapshot, report, deep",
			      cmd);
	json_decref(req);
	return r;
}

/* The whole process's malloc'd bytes: at debug level each request says how
 * far it moved them, which tells a leak of the pause/resume path (memsaver,
 * the driver, CUPTI) from one of the engine's own work (bench/soak.py). */
static size_t heap_in_use(void)
{
	if (!_msv_log_enabled(MSV_LOG_DEBUG))
		return 0;
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}

/* Serve requests on one connection until the client closes it, stalls, or
 * sends something that is not a request.  buf holds
 * MSV_CONTROL_MAX_REQUEST + 1 bytes: a longest request and its newline. */
static void srv_client(int c, char *buf)
{
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0) {
		MSV_WARN("control: SO_PEERCRED failed: %s; closing the connection", strerror(errno));
		return;
	}
	if (cr.uid != geteuid()) {
		MSV_WARN("control: refused a client of uid %u (pid %d): only uid %u may control "
			 "this process",
			 (unsigned)cr.uid, (int)cr.pid, (unsigned)geteuid());
		srv_reply(c, srv_error("permission denied: uid %u may not control a process of uid %u",
				       (unsigned)cr.uid, (unsigned)geteuid()));
		return;
	}
	size_t have = 0;
	const size_t cap = MSV_CONTROL_MAX_REQUEST + 1;
	const long long budget_end = srv_now_ms() + connection_budget_ms;
	long long deadline = srv_now_ms() + request_timeout_ms;
	for (;;) {
		char *nl = memchr(buf, '\n', have);
		int eof = 0;
		if (srv_now_ms() >= budget_end) {
			/* Checked before every read and every request, so that a
			 * client that keeps requests coming, slowly or back to back,
			 * cannot keep the others out. */
			srv_reply(c, srv_error("connection open longer than %d ms; send one request per "
					       "connection", connection_budget_ms));
			return;
		}
		if (!nl) {
			if (have >= cap) {
				srv_reply(c, srv_error("request longer than %d bytes",
						       MSV_CONTROL_MAX_REQUEST));
				return;
			}
			ssize_t r = recv(c, buf + have, cap - have, 0);
			if (r > 0) {
				have += (size_t)r;
				continue;
			}
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 && errno == EAGAIN) {
				int rc = srv_wait(c, POLLIN, deadline < budget_end ? deadline : budget_end);
				if (rc == -ETIMEDOUT && srv_now_ms() >= budget_end)
					continue; /* the budget check above says why */
				if (rc == -ETIMEDOUT && have)
					srv_reply(c, srv_error("incomplete request after %d ms",
							       request_timeout_ms));
				if (rc)
					return;
				continue;
			}
			if (r < 0 || have == 0)
				return;
			/* The client closed its side after a last request without
			 * a newline: serve it anyway, as `printf '{...}' | nc` sends. */
			eof = 1;
			nl = buf + have;
		}
		size_t len = (size_t)(nl - buf);
		size_t used = eof ? have : len + 1;
		if (len && buf[len - 1] == '\r')
			len--;
		int blank = 1;
		for (size_t i = 0; i < len && blank; i++)
			blank = buf[i] == ' ' || buf[i] == '\t';
		if (!blank) {
			int bad;
			size_t heap0 = heap_in_use();
			srv_reply(c, srv_dispatch(buf, len, &bad));
			if (_msv_log_enabled(MSV_LOG_DEBUG))
				MSV_DEBUG("control: %.32s: process heap in use %+lld bytes", buf,
					  (long long)heap_in_use() - (long long)heap0);
			/* A client that sends garbage is not talking our protocol:
			 * answer once and hang up rather than guess at line breaks. */
			if (bad)
				return;
		}
		if (eof)
			return;
		memmove(buf, buf + used, have - used);
		have -= used;
		deadline = srv_now_ms() + request_timeout_ms;
	}
}

static void *srv_thread(void *arg)
{
	struct server *s = arg;
	char *buf = malloc(MSV_CONTROL_MAX_REQUEST + 1);
	if (!buf)
		MSV_WARN("control socket disabled: out of memory");
	while (buf) {
		struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN}, {.fd = s->wake[0], .events = POLLIN}};
		int n = poll(p, 2, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			MSV_WARN("control socket disabled: poll failed: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & (POLLERR | POLLNVAL)) {
			MSV_WARN("control socket disabled: the listening socket failed");
			break;
		}
		int c = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
				continue;
			MSV_WARN("control: accept failed: %s", strerror(errno));
			/* Out of descriptors: do not spin; the next client may
			 * find one free. */
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
			continue;
		}
		atomic_store(&s->cfd, c);
		srv_client(c, buf);
		if (atomic_exchange(&s->cfd, -1) >= 0)
			close(c);
	}
	free(buf);
	pthread_mutex_lock(&srv_lock);
	if (srv_cur == s) {
		/* Ended on an error, not by _msv_control_stop: nobody answers on
		 * the path any more, so do not leave it for clients to find. */
		srv_cur = NULL;
		if (s->pid == getpid())
			unlink(s->path);
	}
	pthread_mutex_unlock(&srv_lock);
	srv_close_fds(s);
	free(s);
	return NULL;
}

/* ---- start and stop ------------------------------------------------------ */

int _msv_control_start(void)
{
	int rc;
	pthread_once(&srv_atfork_once, srv_register_atfork);
	if (!_msv_options()->control)
		return 0;
	pthread_mutex_lock(&srv_lock);
	if (srv_cur && srv_cur->pid == getpid()) {
		pthread_mutex_unlock(&srv_lock);
		return 0;
	}
	struct server *s = calloc(1, sizeof(*s));
	if (!s) {
		pthread_mutex_unlock(&srv_lock);
		MSV_WARN("control socket disabled: out of memory");
		return -ENOMEM;
	}
	s->lfd = s->wake[0] = s->wake[1] = -1;
	atomic_init(&s->cfd, -1);
	s->pid = getpid();
	if ((rc = srv_open(s)) != 0)
		goto fail;

	/* The thread starts with every signal blocked (it inherits the mask set
	 * here), so the host's handlers never run on it. */
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t th;
	sigfillset(&all);
	if ((rc = pthread_attr_init(&attr)) != 0) {
		rc = -rc;
		goto fail_unlink;
	}
	rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (rc == 0)
		rc = pthread_sigmask(SIG_SETMASK, &all, &old);
	if (rc == 0) {
		rc = pthread_create(&th, &attr, srv_thread, s);
		int r2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (r2)
			MSV_ERROR("restoring the signal mask failed: %s", strerror(r2));
	}
	pthread_attr_destroy(&attr);
	if (rc) {
		MSV_WARN("control socket disabled: starting the server thread failed: %s",
			 strerror(rc));
		rc = -rc;
		goto fail_unlink;
	}
	/* The name is what a person sees in top -H or py-spy; not fatal. */
	int nrc = pthread_setname_np(th, "memsaver-ctl");
	if (nrc)
		MSV_DEBUG("pthread_setname_np failed: %s", strerror(nrc));
	srv_cur = s;
	pthread_mutex_unlock(&srv_lock);
	MSV_INFO("control socket %s", s->path);
	return 0;

fail_unlink:
	unlink(s->path);
fail:
	srv_close_fds(s);
	free(s);
	pthread_mutex_unlock(&srv_lock);
	return rc;
}

void _msv_control_stop(void)
{
	pthread_mutex_lock(&srv_lock);
	struct server *s = srv_cur;
	srv_cur = NULL;
	if (s && s->pid == getpid()) {
		unlink(s->path);
		/* The thread frees s once it sees the byte; it may be inside a
		 * request now, and at exit it may never get to it, which is fine. */
		if (write(s->wake[1], "x", 1) != 1)
			MSV_WARN("control: waking the server thread failed: %s", strerror(errno));
	}
	pthread_mutex_unlock(&srv_lock);
}
