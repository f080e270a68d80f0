/* memsaver ctl: talk to the control socket of running engines.
 *
 * Target resolution is kept in small functions (ctl_scan, ctl_probe,
 * ctl_resolve) so that tests/unit/test_control.c can drive them against a
 * real server in a temporary directory. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "saver/control.h"
#include "tools/memsaver/checkpoint.h"
#include "tools/memsaver/commands.h"
#include "tracer/categories.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/proc_cmdline.h"

#define CTL_SLOW_TIMEOUT_MS (600 * 1000) /* pause/resume: backups of tens of GiB */
#define CTL_FAST_TIMEOUT_MS (10 * 1000)
/* The lock waits for the engine's CUDA calls in flight; after a pause
 * (which synchronized) there are none, so a long wait means a stuck call. */
#define CTL_LOCK_TIMEOUT_MS (30 * 1000)

static const char ctl_usage[] =
	"usage: memsaver ctl [--pid PID | --socket PATH | --all [--session ID]] COMMAND [ARGS]\n"
	"\n"
	"Send a command to the control socket of engines running under `memsaver run`.\n"
	"\n"
	"Target (default: the only live memsaver process of this user; with several,\n"
	"they are listed and nothing is sent):\n"
	"  -p, --pid PID         the process with this pid (searched in every session)\n"
	"  -s, --socket PATH     this socket file\n"
	"  -a, --all             every process of one session: --session ID, else\n"
	"                        $MEMSAVER_SESSION, else the newest session.  pause and\n"
	"                        resume reach every process at once; a pause is all or\n"
	"                        nothing: when one process fails, the ones it paused are\n"
	"                        resumed and the failure names the pid\n"
	"  -S, --session ID      restrict the search to this session\n"
	"  -t, --timeout SEC     wait this long for each reply (default: 600 for\n"
	"                        pause/resume, which may back up tens of GiB; 10 otherwise)\n"
	"  -h, --help            this text\n"
	"\n"
	"Commands:\n"
	"  pause [--tags kv,graph] [--deep]\n"
	"                            release the listed categories (default: every\n"
	"                            category the policy wraps); --deep then has the\n"
	"                            driver checkpoint the rest, CUDA context included,\n"
	"                            to host memory (not for an engine started with\n"
	"                            `memsaver run --cupti`; docs/deep-pause.md); a policy with\n"
	"                            \"residue\": \"checkpoint\" makes every pause deep.\n"
	"                            With --all:\n"
	"                            every rank or none.  The engine need not be idle:\n"
	"                            its launches, copies and memsets wait for resume\n"
	"                            (MEMSAVER_GATE_TIMEOUT s, default 600, then they\n"
	"                            fail with CUDA_ERROR_TIMEOUT; docs/control.md)\n"
	"  resume [--tags kv,graph]  restore a deep-paused engine first (refused, and\n"
	"                            it stays checkpointed, when the GPU lacks the\n"
	"                            memory), then map the categories again at the\n"
	"                            same addresses\n"
	"  status                    print the process's status as JSON; \"state\" is\n"
	"                            running, paused, locked or checkpointed\n"
	"  snapshot LABEL            record a phase marker with a memory reading\n"
	"  report [-o FILE]          write the attribution report JSON to FILE (%p is\n"
	"                            replaced by the pid) or to stdout\n"
	"Categories: weights, kv, graph, workspace, comm, other.\n"
	"\n"
	"Sockets: <dir>/<session>/memsaver-<pid>.sock, dir = $MEMSAVER_SOCKET_DIR, else\n"
	"$XDG_RUNTIME_DIR/memsaver, else /tmp/memsaver-<uid>.  Sockets of processes that\n"
	"are gone are skipped with a note and removed.  With --all, status prints one\n"
	"JSON object keyed by pid, and so does report unless FILE contains %p.\n"
	"\n"
	"Overhead: none while idle (one sleeping thread per engine).  The engine serves\n"
	"one request at a time; pause/resume cost what the backup and restore cost.\n"
	"\n"
	"Exit status: 0 success, 1 the operation failed in some process, 2 bad usage\n"
	"or no unique target.\n"
	"\n"
	"Example:\n"
	"  $ memsaver ctl pause --tags kv,graph\n"
	"  pid 4242: paused kv,graph (812 ms)\n"
	"  $ memsaver ctl pause --deep\n"
	"  pid 4242: paused weights,kv,graph,workspace (95 ms)\n"
	"  pid 4242: deep-paused: checkpointed 448.0 MiB (lock 1 ms, checkpoint 438 ms)\n"
	"  $ memsaver ctl --all resume\n"
	"  pid 4242: resumed all wrapped categories (905 ms)\n"
	"  pid 4243: resumed all wrapped categories (899 ms)\n"
	"  $ memsaver ctl\n"
	"  memsaver ctl: 2 memsaver processes are running; choose one with --pid or --all:\n"
	"    pid 4242  session 20240611-101500-4240  python -m sglang.launch_server ...\n"
	"    pid 4243  session 20240611-101500-4240  python -m sglang.launch_server ...\n";

struct ctl_target {
	int pid;
	char session[64];
	char path[PATH_MAX];
	long long mtime; /* of the session directory, for "the newest session" */
};

struct ctl_list {
	struct ctl_target *v;
	size_t n, cap;
};

static void ctl_list_free(struct ctl_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static int ctl_list_add(struct ctl_list *l, const struct ctl_target *t)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].path, t->path) == 0)
			return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct ctl_target *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *t;
	return 0;
}

/* The socket directories to search: the one this environment names, plus the
 * /tmp fallback when the engine may have run without XDG_RUNTIME_DIR (a
 * container, nohup from cron) while we run with it. */
static int ctl_bases(char bases[2][PATH_MAX])
{
	int n = 0;
	if (_msv_control_dir(bases[0], PATH_MAX) == 0)
		n++;
	if (!_msv_options()->socket_dir[0]) {
		snprintf(bases[n], PATH_MAX, "/tmp/memsaver-%u", (unsigned)geteuid());
		if (n == 0 || strcmp(bases[0], bases[1]) != 0)
			n++;
	}
	return n;
}

/* Add every memsaver-<pid>.sock under base/<session> (session NULL: every
 * session) to l, live or not. */
static int ctl_scan(const char *base, const char *session, struct ctl_list *l)
{
	DIR *d = opendir(base);
	struct dirent *e;
	int rc = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		char sdir[PATH_MAX];
		struct stat st;
		if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof(((struct ctl_target *)0)->session))
			continue;
		if (session && strcmp(session, e->d_name) != 0)
			continue;
		if (snprintf(sdir, sizeof(sdir), "%s/%s", base, e->d_name) >= (int)sizeof(sdir))
			continue;
		if (lstat(sdir, &st) != 0 || !S_ISDIR(st.st_mode))
			continue;
		DIR *sd = opendir(sdir);
		struct dirent *f;
		if (!sd)
			continue;
		while (rc == 0 && (f = readdir(sd)) != NULL) {
			struct ctl_target t = {0};
			int pid, end = 0;
			if (sscanf(f->d_name, "memsaver-%d.sock%n", &pid, &end) != 1 || pid <= 0 ||
			    f->d_name[end] != '\0')
				continue;
			t.pid = pid;
			snprintf(t.session, sizeof(t.session), "%s", e->d_name);
			if (snprintf(t.path, sizeof(t.path), "%s/%s", sdir, f->d_name) >= (int)sizeof(t.path))
				continue;
			t.mtime = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
			rc = ctl_list_add(l, &t);
		}
		closedir(sd);
	}
	closedir(d);
	return rc;
}

static long long ctl_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connect to a socket; the send timeout bounds a connect to a full backlog.
 * Returns the descriptor or a negative errno. */
static int ctl_connect(const char *path, int timeout_ms)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Is someone serving this socket?  1 yes, 0 no (stale: removed when its
 * process is gone, with a note on stderr), negative errno when unknown. */
static int ctl_probe(const struct ctl_target *t, int quiet)
{
	int fd = ctl_connect(t->path, 2000);
	if (fd >= 0) {
		close(fd);
		return 1;
	}
	if (fd != -ECONNREFUSED && fd != -ENOENT)
		return fd;
	if (fd == -ENOENT)
		return 0;
	int dead = kill(t->pid, 0) != 0 && errno == ESRCH;
	if (dead && unlink(t->path) == 0) {
		if (!quiet)
			fprintf(stderr, "memsaver ctl: note: removed stale socket %s (process %d is gone)\n",
				t->path, t->pid);
	} else if (!quiet) {
		fprintf(stderr, "memsaver ctl: note: skipping stale socket %s (nobody answers)\n", t->path);
	}
	return 0;
}

/* Send one request line and read one reply line.  Returns 0 and the reply,
 * or a negative errno with a sentence in err. */
static int ctl_request(const char *path, json_t *req, int timeout_ms, json_t **reply, char *err,
		       size_t errlen)
{
	long long deadline = ctl_now_ms() + timeout_ms;
	char *line = json_dumps(req, JSON_COMPACT), *buf = NULL;
	size_t have = 0, cap = 0;
	int rc = 0, fd = -1;
	*reply = NULL;
	if (!line) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	fd = ctl_connect(path, timeout_ms);
	if (fd < 0) {
		rc = fd;
		snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(-rc));
		goto cleanup;
	}
	size_t n = strlen(line);
	line[n++] = '\n'; /* json_dumps leaves room: replaces the terminator */
	for (size_t off = 0; off < n;) {
		ssize_t w = send(fd, line + off, n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = -errno;
			snprintf(err, errlen, "sending to %s failed: %s", path, strerror(-rc));
			goto cleanup;
		}
		off += (size_t)w;
	}
	for (;;) {
		char *nl = have ? memchr(buf, '\n', have) : NULL;
		if (nl) {
			json_error_t je;
			*reply = json_loadb(buf, (size_t)(nl - buf), 0, &je);
			if (!*reply || !json_is_object(*reply)) {
				json_decref(*reply);
				*reply = NULL;
				rc = -EPROTO;
				snprintf(err, errlen, "the reply from %s is not a JSON object: %s", path,
					 je.text);
			}
			goto cleanup;
		}
		long long left = deadline - ctl_now_ms();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int k = left > 0 ? poll(&p, 1, (int)left) : 0;
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = k < 0 ? -errno : -ETIMEDOUT;
			snprintf(err, errlen, "no reply from %s within %d s", path, timeout_ms / 1000);
			goto cleanup;
		}
		if (have + 65536 > cap) {
			size_t ncap = cap ? cap * 2 : 131072;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				rc = -ENOMEM;
				snprintf(err, errlen, "out of memory reading the reply");
				goto cleanup;
			}
			buf = nb;
			cap = ncap;
		}
		ssize_t r = recv(fd, buf + have, cap - have, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -ECONNRESET;
			snprintf(err, errlen, "%s closed the connection without a reply", path);
			goto cleanup;
		}
		have += (size_t)r;
	}
cleanup:
	if (fd >= 0)
		close(fd);
	free(line);
	free(buf);
	return rc;
}

/* A listing's command line: "?" when unreadable, long ones cut at 100. */
static void ctl_cmdline(int pid, char *out, size_t len)
{
	size_t n = _msv_proc_cmdline(pid, out, len);
	if (!n)
		snprintf(out, len, "?");
	if (n > 100)
		strcpy(out + 96, " ...");
}

struct ctl_opts {
	int pid;
	const char *socket;
	int all;
	const char *session;
	int timeout_ms; /* 0: by command */
};

/* Turn the target options into a list of live sockets.  Returns MSV_EXIT_OK,
 * or MSV_EXIT_USAGE after saying why on stderr. */
static int ctl_resolve(const struct ctl_opts *o, struct ctl_list *out)
{
	struct ctl_list all = {0};
	char bases[2][PATH_MAX];
	int nb = ctl_bases(bases), rc = MSV_EXIT_OK;
	const char *session = o->session;

	if (o->socket) {
		struct ctl_target t = {0};
		const char *b = strrchr(o->socket, '/');
		snprintf(t.path, sizeof(t.path), "%s", o->socket);
		if (sscanf(b ? b + 1 : o->socket, "memsaver-%d.sock", &t.pid) != 1)
			t.pid = 0;
		/* Nobody there is "no target", as for --pid, not a failed operation. */
		int fd = ctl_connect(t.path, 2000);
		if (fd < 0) {
			fprintf(stderr, "memsaver ctl: cannot connect to %s: %s (is it the socket of an engine "
					"running under `memsaver run`?)\n", t.path, strerror(-fd));
			return MSV_EXIT_USAGE;
		}
		close(fd);
		return ctl_list_add(out, &t) ? MSV_EXIT_FAIL : MSV_EXIT_OK;
	}
	if (o->all && !session) {
		const char *env = getenv("MEMSAVER_SESSION");
		if (env && *env)
			session = env;
	}
	for (int i = 0; i < nb; i++) {
		int e = ctl_scan(bases[i], session, &all);
		if (e != 0) {
			fprintf(stderr, "memsaver ctl: cannot read %s: %s\n", bases[i], strerror(-e));
			ctl_list_free(&all);
			return MSV_EXIT_USAGE;
		}
	}
	/* Keep only the live ones (and the requested pid). */
	struct ctl_list live = {0};
	for (size_t i = 0; i < all.n; i++) {
		if (o->pid && all.v[i].pid != o->pid)
			continue;
		if (ctl_probe(&all.v[i], 0) == 1 && ctl_list_add(&live, &all.v[i]) != 0) {
			rc = MSV_EXIT_FAIL;
			goto cleanup;
		}
	}
	if (o->all && !session && live.n) {
		/* The newest session: the directory changed last. */
		size_t best = 0;
		for (size_t i = 1; i < live.n; i++)
			if (live.v[i].mtime > live.v[best].mtime)
				best = i;
		char newest[64];
		snprintf(newest, sizeof(newest), "%s", live.v[best].session);
		for (size_t i = 0; i < live.n; i++)
			if (strcmp(live.v[i].session, newest) == 0 && ctl_list_add(out, &live.v[i]) != 0)
				rc = MSV_EXIT_FAIL;
		/* Another engine's session is never reached silently: name the choice. */
		if (out->n < live.n) {
			fprintf(stderr, "memsaver ctl: --all: session %s (the newest); %zu process(es) of other "
					"sessions left alone (choose with --session ID):\n", newest, live.n - out->n);
			for (size_t i = 0; i < live.n; i++) {
				char cmd[256];
				if (!strcmp(live.v[i].session, newest))
					continue;
				ctl_cmdline(live.v[i].pid, cmd, sizeof(cmd));
				fprintf(stderr, "  pid %d  session %s  %s\n", live.v[i].pid, live.v[i].session, cmd);
			}
		}
		goto cleanup;
	}
	if (live.n == 0) {
		if (o->pid)
			fprintf(stderr, "memsaver ctl: process %d has no live memsaver socket%s%s "
					"(is it running under `memsaver run`?)\n",
				o->pid, session ? " in session " : "", session ? session : "");
		else
			fprintf(stderr, "memsaver ctl: no live memsaver process%s%s found under %s%s%s\n",
				session ? " in session " : "", session ? session : "", bases[0],
				nb > 1 ? " or " : "", nb > 1 ? bases[1] : "");
		rc = MSV_EXIT_USAGE;
		goto cleanup;
	}
	if (live.n > 1 && !o->all) {
		fprintf(stderr, "memsaver ctl: %zu memsaver processes are running; choose one with "
				"--pid or --all:\n", live.n);
		for (size_t i = 0; i < live.n; i++) {
			char cmd[256];
			ctl_cmdline(live.v[i].pid, cmd, sizeof(cmd));
			fprintf(stderr, "  pid %d  session %s  %s\n", live.v[i].pid, live.v[i].session, cmd);
		}
		rc = MSV_EXIT_USAGE;
		goto cleanup;
	}
	for (size_t i = 0; i < live.n && rc == MSV_EXIT_OK; i++)
		if (ctl_list_add(out, &live.v[i]) != 0)
			rc = MSV_EXIT_FAIL;
cleanup:
	ctl_list_free(&all);
	ctl_list_free(&live);
	return rc;
}

static void ctl_join(json_t *arr, char *out, size_t len)
{
	size_t i, o = 0;
	json_t *v;
	out[0] = '\0';
	json_array_foreach(arr, i, v) {
		int n = snprintf(out + o, len - o, "%s%s", o ? "," : "", json_string_value(v) ? json_string_value(v) : "?");
		if (n < 0 || (size_t)n >= len - o)
			break;
		o += (size_t)n;
	}
}

static int ctl_write_json(const char *path, json_t *v)
{
	int flags = JSON_INDENT(2);
	if (!path || strcmp(path, "-") == 0) {
		if (json_dumpf(v, stdout, flags) != 0)
			return -EIO;
		fputc('\n', stdout);
		return fflush(stdout) == 0 ? 0 : -EIO;
	}
	if (json_dump_file(v, path, flags) != 0)
		return -EIO;
	return 0;
}

/* ---- deep pause: the driver's process checkpoint on top of a pause -------
 *
 * Order, for one engine or every rank of --all (vLLM #58183 does the same
 * across ranks): pause every rank (memsaver, over the socket), then note +
 * lock every rank, then checkpoint every rank; resume restores every rank
 * before it unlocks any.  Any failure brings back what this command did, in
 * reverse, and leaves every rank normally paused.  The note to the engine
 * goes BEFORE the lock and AFTER the unlock: a locked engine blocks in every
 * CUDA call, its control thread does not (saver/state.h). */

struct deep_rank {
	const struct ctl_target *t;
	json_t *status;
	int was_paused, paused, noted, locked, checkpointed;
	uint64_t held[MSV_CKPT_MAX_DEVICES], held_total;
	long long lock_ms, ckpt_ms;
};

/* One request that must answer ok.  Returns 0 and the reply (or NULL when
 * reply_out is NULL), or -1 with the reason in err. */
static int ctl_ok(const struct ctl_target *t, json_t *req, int timeout_ms, json_t **reply_out, char *err,
		  size_t len)
{
	json_t *reply = NULL;
	if (reply_out)
		*reply_out = NULL;
	if (!req) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	int r = ctl_request(t->path, req, timeout_ms, &reply, err, len);
	json_decref(req);
	if (r)
		return -1;
	if (!json_is_true(json_object_get(reply, "ok"))) {
		const char *e = json_string_value(json_object_get(reply, "error"));
		snprintf(err, len, "%s", e ? e : "(no message)");
		json_decref(reply);
		return -1;
	}
	if (reply_out)
		*reply_out = reply;
	else
		json_decref(reply);
	return 0;
}

static int ctl_note(const struct ctl_target *t, const char *state, json_t *detail, char *err, size_t len)
{
	json_t *req = json_pack("{s:s,s:s,s:i}", "cmd", "deep", "state", state, "cli_pid", (int)getpid());
	if (req && detail)
		json_object_set(req, "detail", detail);
	return ctl_ok(t, req, CTL_FAST_TIMEOUT_MS, NULL, err, len);
}

static json_t *ctl_status_of(const struct ctl_target *t, char *err, size_t len)
{
	json_t *reply, *st;
	if (ctl_ok(t, json_pack("{s:s}", "cmd", "status"), CTL_FAST_TIMEOUT_MS, &reply, err, len))
		return NULL;
	st = json_incref(json_object_get(reply, "status"));
	json_decref(reply);
	if (!json_is_object(st)) {
		json_decref(st);
		snprintf(err, len, "the status reply has no status object");
		return NULL;
	}
	return st;
}

/* libnccl mapped into pid: it may talk to other processes through CUDA IPC. */
static int ctl_maps_nccl(int pid)
{
	char p[64], line[4096];
	snprintf(p, sizeof(p), "/proc/%d/maps", pid);
	FILE *f = fopen(p, "re");
	int found = 0;
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "/libnccl") != NULL;
	fclose(f);
	return found;
}

/* Live memsaver processes in a session. */
static size_t ctl_session_live(const char *session)
{
	struct ctl_list l = {0};
	char bases[2][PATH_MAX];
	int nb = ctl_bases(bases);
	size_t n = 0;
	for (int i = 0; i < nb; i++)
		ctl_scan(bases[i], session, &l);
	for (size_t i = 0; i < l.n; i++)
		n += ctl_probe(&l.v[i], 1) == 1;
	ctl_list_free(&l);
	return n;
}

/* Why this driver cannot checkpoint these engines, or NULL.  Known before
 * anything is done, so every rank can fall back to a plain pause. */
static const char *ctl_deep_refusal(struct deep_rank *r, size_t n, struct msv_ckpt **api, char *why,
				    size_t len)
{
	for (size_t i = 0; i < n; i++) {
		if (json_is_true(json_object_get(r[i].status, "cupti"))) {
			snprintf(why, len, "pid %d subscribed to CUPTI (it was started by `memsaver run "
					   "--cupti`), and the driver refuses to checkpoint a process that ever "
					   "subscribed (CUDA_ERROR_NOT_SUPPORTED, 801); restart the engine "
					   "without --cupti",
				 r[i].t->pid);
			return why;
		}
	}
	char e[512];
	int rc = _msv_ckpt_open(api, 1, e, sizeof(e));
	if (rc) {
		snprintf(why, len, "%s", e);
		return why;
	}
	int major = _msv_ckpt_driver_major(*api);
	for (size_t i = 0; major > 0 && major < 610 && i < n; i++) {
		if (ctl_maps_nccl(r[i].t->pid) && ctl_session_live(r[i].t->session) > 1) {
			snprintf(why, len, "pid %d uses NCCL and runs beside other processes of its "
					   "session: the driver's checkpoint of a process that shares GPU "
					   "memory with another (CUDA IPC) needs driver 610 or newer, this is "
					   "%d",
				 r[i].t->pid, major);
			return why;
		}
	}
	return NULL;
}

static void ctl_print_paused(const struct ctl_target *t, json_t *reply, const char *tags)
{
	char list[256];
	json_t *ms = json_object_get(reply, "ms");
	if (tags && *tags)
		snprintf(list, sizeof(list), "%s", tags);
	else if (json_array_size(json_object_get(reply, "paused")))
		ctl_join(json_object_get(reply, "paused"), list, sizeof(list));
	else
		snprintf(list, sizeof(list), "all wrapped categories");
	printf("pid %d: paused %s", t->pid, list);
	if (json_is_integer(ms))
		printf(" (%lld ms)", (long long)json_integer_value(ms));
	putchar('\n');
}

/* Bring back, in reverse, what a failed deep pause did; every rank ends
 * normally paused. */
static void ctl_deep_rollback(struct msv_ckpt *api, struct deep_rank *r, size_t n)
{
	char why[512];
	for (size_t k = n; k-- > 0;) {
		if (r[k].checkpointed && _msv_ckpt_restore(api, r[k].t->pid, why, sizeof(why)) != 0)
			fprintf(stderr, "pid %d: error: rollback: %s\n", r[k].t->pid, why);
		else
			r[k].checkpointed = 0;
	}
	for (size_t k = n; k-- > 0;) {
		if (r[k].locked && !r[k].checkpointed && _msv_ckpt_unlock(api, r[k].t->pid, why, sizeof(why)) != 0)
			fprintf(stderr, "pid %d: error: rollback: %s\n", r[k].t->pid, why);
		else if (!r[k].checkpointed)
			r[k].locked = 0;
	}
	for (size_t k = 0; k < n; k++)
		if (r[k].noted && !r[k].locked && ctl_note(r[k].t, "paused", NULL, why, sizeof(why)) != 0)
			fprintf(stderr, "pid %d: error: rollback note: %s\n", r[k].t->pid, why);
}

static long long ctl_ms_since(long long t0)
{
	return ctl_now_ms() - t0;
}

/* Where a command's time went, printed with MEMSAVER_LOG=debug: a GPU run
 * shows which step to cut (docs/deep-pause.md, "Speed of resume"). */
#define CTL_MAX_STEPS 12
struct ctl_steps {
	long long t_main;
	int n;
	const char *name[CTL_MAX_STEPS];
	long long ms[CTL_MAX_STEPS];
};

static void ctl_step_add(struct ctl_steps *s, const char *name, long long ms)
{
	int i = 0;
	while (i < s->n && strcmp(s->name[i], name) != 0)
		i++;
	if (i == s->n && s->n < CTL_MAX_STEPS)
		s->name[s->n++] = name, s->ms[i] = 0;
	if (i < s->n)
		s->ms[i] += ms;
}

/* Add the time since t0 to step `name` (ranks add up); returns now, the
 * next step's t0. */
static long long ctl_step(struct ctl_steps *s, const char *name, long long t0)
{
	long long now = ctl_now_ms();
	ctl_step_add(s, name, now - t0);
	return now;
}

static void ctl_steps_print(const struct ctl_steps *s, const char *cmd)
{
	if (!_msv_log_enabled(MSV_LOG_DEBUG) || !s->n)
		return;
	fprintf(stderr, "memsaver ctl: %s steps:", cmd);
	for (int i = 0; i < s->n; i++)
		fprintf(stderr, "%s %s %lld ms", i ? "," : "", s->name[i], s->ms[i]);
	fprintf(stderr, "; %lld ms since main\n", ctl_ms_since(s->t_main));
}

/* statuses: the targets' status objects when the caller already asked
 * (taken over, NULL entries asked again), or NULL.  by_policy: the deep
 * pause was asked by the engines' policy, not by --deep. */
static int ctl_deep_pause(const struct ctl_list *targets, const char *tags, int timeout_ms, json_t **statuses,
			  int by_policy)
{
	size_t n = targets->n, deep = 0;
	struct deep_rank *r = calloc(n ? n : 1, sizeof(*r));
	struct msv_ckpt *api = NULL;
	char err[PATH_MAX + 1024], why[PATH_MAX + 1024];
	int rc = MSV_EXIT_FAIL;
	if (!r) {
		fprintf(stderr, "memsaver ctl: out of memory\n");
		return MSV_EXIT_FAIL;
	}
	for (size_t i = 0; i < n; i++) {
		r[i].t = &targets->v[i];
		r[i].status = statuses ? statuses[i] : NULL;
		if (statuses)
			statuses[i] = NULL;
		if (!r[i].status && !(r[i].status = ctl_status_of(r[i].t, err, sizeof(err)))) {
			fprintf(stderr, "pid %d: error: %s; nothing was done\n", r[i].t->pid, err);
			goto cleanup;
		}
		const char *st = json_string_value(json_object_get(r[i].status, "state"));
		deep += st && (!strcmp(st, "locked") || !strcmp(st, "checkpointed"));
		r[i].was_paused = st && strcmp(st, "running") != 0;
	}
	if (deep) {
		for (size_t i = 0; i < n; i++)
			printf("pid %d: nothing to do: already %s\n", r[i].t->pid,
			       json_string_value(json_object_get(r[i].status, "state")));
		rc = deep == n ? MSV_EXIT_OK : MSV_EXIT_FAIL;
		if (deep != n)
			fprintf(stderr, "memsaver ctl: some ranks are deep-paused and some not; "
					"`memsaver ctl --all resume` first\n");
		goto cleanup;
	}
	const char *refusal = ctl_deep_refusal(r, n, &api, why, sizeof(why));

	/* 1. The memsaver pause of every rank (none if one fails). */
	for (size_t i = 0; i < n; i++) {
		json_t *reply;
		json_t *req = tags ? json_pack("{s:s,s:s}", "cmd", "pause", "tags", tags)
				   : json_pack("{s:s}", "cmd", "pause");
		if (ctl_ok(r[i].t, req, timeout_ms, &reply, err, sizeof(err))) {
			fprintf(stderr, "pid %d: error: %s\n", r[i].t->pid, err);
			for (size_t k = i; k-- > 0;) {
				if (!r[k].paused)
					continue;
				json_t *rr = tags ? json_pack("{s:s,s:s}", "cmd", "resume", "tags", tags)
						  : json_pack("{s:s}", "cmd", "resume");
				if (ctl_ok(r[k].t, rr, timeout_ms, NULL, err, sizeof(err)))
					fprintf(stderr, "pid %d: error: resuming after the failure: %s\n",
						r[k].t->pid, err);
			}
			fprintf(stderr, "memsaver ctl: pid %d could not pause; the ranks this command "
					"paused were resumed\n", r[i].t->pid);
			goto cleanup;
		}
		r[i].paused = !json_object_get(reply, "warning");
		if (r[i].paused)
			ctl_print_paused(r[i].t, reply, tags);
		json_decref(reply);
	}
	if (refusal) {
		printf("memsaver ctl: deep pause%s refused: %s; paused normally instead\n",
		       by_policy ? " (the policy's \"residue\": \"checkpoint\")" : "", refusal);
		goto cleanup;
	}

	/* 2. Note, then lock, every rank.  The note carries the device memory
	 * in use now: an upper bound of what the checkpoint will hold, for a
	 * resume after a ctl that dies before it measured the checkpoint. */
	for (size_t i = 0; i < n; i++) {
		uint64_t u0[MSV_CKPT_MAX_DEVICES], f0[MSV_CKPT_MAX_DEVICES];
		int n0 = 0;
		char e[256];
		json_t *bound = json_object(), *detail;
		if (_msv_ckpt_memory(api, &n0, u0, f0, e, sizeof(e)) != 0)
			n0 = 0;
		for (int dv = 0; dv < n0; dv++) {
			char k[16];
			snprintf(k, sizeof(k), "%d", dv);
			json_object_set_new(bound, k, json_integer((json_int_t)u0[dv]));
		}
		detail = json_pack("{s:o,s:b,s:b}", "held_bytes", bound, "measured", n0 > 0, "upper_bound", 1);
		int nr = ctl_note(r[i].t, "locked", detail, err, sizeof(err));
		json_decref(detail);
		if (nr) {
			snprintf(why, sizeof(why), "%s", err);
			goto rollback;
		}
		r[i].noted = 1;
		long long t0 = ctl_now_ms();
		if (_msv_ckpt_lock(api, r[i].t->pid, CTL_LOCK_TIMEOUT_MS, why, sizeof(why)) != 0)
			goto rollback;
		r[i].lock_ms = ctl_ms_since(t0);
		r[i].locked = 1;
	}
	/* 3. Checkpoint every rank; the device memory each gives back is what
	 * its restore will need (NVML, device-wide: measured around each). */
	for (size_t i = 0; i < n; i++) {
		uint64_t u0[MSV_CKPT_MAX_DEVICES], u1[MSV_CKPT_MAX_DEVICES], f[MSV_CKPT_MAX_DEVICES];
		int n0 = 0, n1 = 0;
		char e[256];
		if (_msv_ckpt_memory(api, &n0, u0, f, e, sizeof(e)) != 0)
			n0 = 0;
		long long t0 = ctl_now_ms();
		if (_msv_ckpt_checkpoint(api, r[i].t->pid, why, sizeof(why)) != 0)
			goto rollback;
		r[i].ckpt_ms = ctl_ms_since(t0);
		r[i].checkpointed = 1;
		if (_msv_ckpt_memory(api, &n1, u1, f, e, sizeof(e)) != 0 || n1 != n0)
			n0 = 0;
		json_t *held = json_object(), *detail;
		uint64_t total = 0;
		int top = -1; /* the engine's GPU: the one the checkpoint emptied most */
		for (int d = 0; d < n0; d++) {
			r[i].held[d] = u0[d] > u1[d] ? u0[d] - u1[d] : 0;
			total += r[i].held[d];
			if (r[i].held[d]) {
				char k[16];
				snprintf(k, sizeof(k), "%d", d);
				json_object_set_new(held, k, json_integer((json_int_t)r[i].held[d]));
				if (top < 0 || r[i].held[d] > r[i].held[top])
					top = d;
			}
		}
		detail = json_pack("{s:o,s:b,s:b,s:I,s:I}", "held_bytes", held, "measured", n0 > 0,
				   "upper_bound", 0, "lock_ms",
				   (json_int_t)r[i].lock_ms, "checkpoint_ms", (json_int_t)r[i].ckpt_ms);
		/* The readings themselves go into the engine's trace: its report
		 * shows what the deep pause left (docs/report.md). */
		if (detail && top >= 0)
			json_object_set_new(detail, "device",
					    json_pack("{s:i,s:I,s:I,s:I}", "index", top, "total_bytes",
						      (json_int_t)(u1[top] + f[top]), "used_before_bytes",
						      (json_int_t)u0[top], "used_after_bytes", (json_int_t)u1[top]));
		int nr = ctl_note(r[i].t, "checkpointed", detail, err, sizeof(err));
		json_decref(detail);
		if (nr) {
			snprintf(why, sizeof(why), "%s", err);
			goto rollback;
		}
		r[i].held_total = n0 ? total : UINT64_MAX;
	}
	/* Said once every rank is done: a rank printed as deep-paused is. */
	for (size_t i = 0; i < n; i++)
		printf("pid %d: deep-paused: checkpointed %.1f MiB (lock %lld ms, checkpoint %lld ms)%s\n",
		       r[i].t->pid, r[i].held_total == UINT64_MAX ? 0.0 : r[i].held_total / 1048576.0,
		       r[i].lock_ms, r[i].ckpt_ms,
		       r[i].held_total == UINT64_MAX ? "; device memory unknown (no NVML): resume will "
						       "refuse to restore blind" : "");
	rc = MSV_EXIT_OK;
	goto cleanup;
rollback:
	ctl_deep_rollback(api, r, n);
	fprintf(stderr, "memsaver ctl: deep pause failed: %s; %s normally paused (`memsaver ctl%s "
			"resume` brings %s back)\n",
		why, n > 1 ? "every rank was brought back and stays" : "the engine stays",
		n > 1 ? " --all" : "", n > 1 ? "them" : "it");
cleanup:
	for (size_t i = 0; i < n; i++)
		json_decref(r[i].status);
	free(r);
	_msv_ckpt_free(api);
	fflush(stdout);
	return rc;
}

/* A plain pause is deep when the engines' policy says "residue":
 * "checkpoint" (their status tells).  Returns -1 (deep, asked by the
 * policy) with the statuses kept in *out for ctl_deep_pause, or 0 (plain;
 * a target whose status cannot be read pauses plainly and reports its own
 * error).  Ranks that disagree pause plainly, said in one line. */
static int ctl_policy_deep(const struct ctl_list *targets, json_t ***out)
{
	size_t n = targets->n, yes = 0;
	char err[PATH_MAX + 1024];
	json_t **st = calloc(n ? n : 1, sizeof(*st));
	*out = NULL;
	if (!st)
		return 0;
	for (size_t i = 0; i < n; i++) {
		st[i] = ctl_status_of(&targets->v[i], err, sizeof(err));
		const char *v = json_string_value(json_object_get(st[i], "residue"));
		yes += v && !strcmp(v, "checkpoint");
	}
	if (yes && yes < n)
		printf("memsaver ctl: %zu of %zu processes have \"residue\": \"checkpoint\" in their policy "
		       "and the others not; pausing every one normally (`memsaver ctl pause --deep` checkpoints "
		       "them all)\n", yes, n);
	if (yes && yes == n) {
		*out = st;
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		json_decref(st[i]);
	free(st);
	return 0;
}

/* Before a plain resume: restore and unlock whatever the driver holds, after
 * checking that every GPU has the memory the checkpoints hold (a restore
 * that runs out of memory leaves the process unusable: cuda-checkpoint#44).
 * Returns MSV_EXIT_OK when the plain resume may go on. */
static int ctl_deep_resume(const struct ctl_list *targets, struct ctl_steps *steps)
{
	size_t n = targets->n;
	struct deep_rank *r = calloc(n ? n : 1, sizeof(*r));
	int *state = calloc(n ? n : 1, sizeof(int));
	struct msv_ckpt *api = NULL;
	uint64_t need[MSV_CKPT_MAX_DEVICES] = {0};
	char err[PATH_MAX + 1024], why[1024];
	int rc = MSV_EXIT_FAIL, any = 0, unmeasured = 0;
	if (!r || !state) {
		fprintf(stderr, "memsaver ctl: out of memory\n");
		goto cleanup;
	}
	long long t = ctl_now_ms();
	for (size_t i = 0; i < n; i++) {
		r[i].t = &targets->v[i];
		state[i] = -1;
		if (!(r[i].status = ctl_status_of(r[i].t, err, sizeof(err)))) {
			fprintf(stderr, "pid %d: error: %s; nothing was done\n", r[i].t->pid, err);
			goto cleanup;
		}
		any += json_is_object(json_object_get(r[i].status, "deep"));
	}
	t = ctl_step(steps, "status", t);
	if (!any) {
		rc = MSV_EXIT_OK;
		goto cleanup;
	}
	if (_msv_ckpt_open(&api, 1, why, sizeof(why)) != 0) {
		fprintf(stderr, "memsaver ctl: a deep-paused engine needs the driver's restore, and %s\n", why);
		goto cleanup;
	}
	t = ctl_step(steps, "cuInit", t);
	for (size_t i = 0; i < n; i++) {
		json_t *deep = json_object_get(r[i].status, "deep");
		if (!json_is_object(deep))
			continue;
		if (_msv_ckpt_get_state(api, r[i].t->pid, &state[i], why, sizeof(why)) != 0) {
			fprintf(stderr, "pid %d: error: %s; nothing was done\n", r[i].t->pid, why);
			goto cleanup;
		}
		if (state[i] == MSV_CKPT_FAILED) {
			fprintf(stderr, "pid %d: error: the driver reports the process FAILED (an earlier "
					"restore failed half-way); it cannot be brought back and must be "
					"restarted; nothing was done\n", r[i].t->pid);
			goto cleanup;
		}
		if (state[i] == MSV_CKPT_CHECKPOINTED) {
			json_t *detail = json_object_get(deep, "detail");
			json_t *held = json_object_get(detail, "held_bytes");
			const char *k;
			json_t *v;
			if (!json_is_true(json_object_get(detail, "measured")))
				unmeasured = 1;
			if (json_is_true(json_object_get(detail, "upper_bound")))
				printf("pid %d: note: the ctl that checkpointed it stopped before it measured the "
				       "checkpoint; the check below uses the device memory in use at the lock "
				       "(an upper bound)\n", r[i].t->pid);
			json_object_foreach(held, k, v) {
				int d = atoi(k);
				if (d >= 0 && d < MSV_CKPT_MAX_DEVICES && json_is_integer(v))
					need[d] += (uint64_t)json_integer_value(v);
			}
		}
	}
	t = ctl_step(steps, "driver state", t);
	int nd = 0;
	uint64_t used[MSV_CKPT_MAX_DEVICES], freeb[MSV_CKPT_MAX_DEVICES];
	int checkpointed = 0;
	for (size_t i = 0; i < n; i++)
		checkpointed += state[i] == MSV_CKPT_CHECKPOINTED;
	if (checkpointed) {
		if (unmeasured || _msv_ckpt_memory(api, &nd, used, freeb, why, sizeof(why)) != 0) {
			fprintf(stderr, "memsaver ctl: restore refused: %s; a restore that runs out of "
					"memory leaves the process unusable, so it stays checkpointed\n",
				unmeasured ? "the memory the checkpoint holds was not measured (no NVML at "
					     "the deep pause)" : why);
			goto cleanup;
		}
		for (int d = 0; d < MSV_CKPT_MAX_DEVICES; d++) {
			if (!need[d] || (d < nd && freeb[d] >= need[d]))
				continue;
			for (size_t i = 0; i < n; i++)
				if (state[i] == MSV_CKPT_CHECKPOINTED)
					fprintf(stderr, "pid %d: error: restore refused: GPU %d has %llu bytes "
							"(%.1f MiB) free, the checkpoint%s need%s %llu bytes "
							"(%.1f MiB); the engine stays checkpointed; free memory "
							"and run `memsaver ctl resume` again\n",
						r[i].t->pid, d, (unsigned long long)(d < nd ? freeb[d] : 0),
						(d < nd ? freeb[d] : 0) / 1048576.0, checkpointed > 1 ? "s" : "",
						checkpointed > 1 ? "" : "s", (unsigned long long)need[d],
						need[d] / 1048576.0);
			goto cleanup;
		}
	}
	/* Restore every rank before unlocking any. */
	t = ctl_step(steps, "free memory check (NVML)", t);
	rc = MSV_EXIT_OK;
	for (size_t i = 0; i < n; i++) {
		if (state[i] != MSV_CKPT_CHECKPOINTED)
			continue;
		long long t0 = ctl_now_ms();
		if (_msv_ckpt_restore(api, r[i].t->pid, why, sizeof(why)) != 0) {
			int s = -1;
			_msv_ckpt_get_state(api, r[i].t->pid, &s, err, sizeof(err));
			fprintf(stderr, "pid %d: error: %s; the driver now reports it %s\n", r[i].t->pid, why,
				_msv_ckpt_state_name(s));
			rc = MSV_EXIT_FAIL;
			continue;
		}
		r[i].ckpt_ms = ctl_ms_since(t0);
		t = ctl_step(steps, "restore", t);
		state[i] = MSV_CKPT_LOCKED;
		printf("pid %d: restored from the driver checkpoint (%lld ms)\n", r[i].t->pid, r[i].ckpt_ms);
	}
	for (size_t i = 0; i < n; i++) {
		if (state[i] == MSV_CKPT_LOCKED && _msv_ckpt_unlock(api, r[i].t->pid, why, sizeof(why)) != 0) {
			fprintf(stderr, "pid %d: error: %s\n", r[i].t->pid, why);
			rc = MSV_EXIT_FAIL;
			continue;
		}
		if (state[i] == MSV_CKPT_LOCKED)
			t = ctl_step(steps, "unlock", t);
		if (state[i] == MSV_CKPT_LOCKED || state[i] == MSV_CKPT_RUNNING) {
			if (ctl_note(r[i].t, "paused", NULL, err, sizeof(err)) != 0) {
				fprintf(stderr, "pid %d: error: %s\n", r[i].t->pid, err);
				rc = MSV_EXIT_FAIL;
			}
			t = ctl_step(steps, "note", t);
		}
	}
cleanup:
	if (api) {
		struct msv_ckpt_times ct;
		_msv_ckpt_times(api, &ct);
		ctl_step_add(steps, "(NVML init, beside cuInit)", ct.nvml_ms);
	}
	for (size_t i = 0; r && i < n; i++)
		json_decref(r[i].status);
	free(r);
	free(state);
	_msv_ckpt_free(api);
	fflush(stdout);
	return rc;
}

/* One request to each target at once: with --all, 8 ranks must not cost 8
 * times one rank.  Results land in the job; the caller prints them in
 * target order. */
struct ctl_job {
	const char *path;
	json_t *req;
	int timeout_ms, rc;
	json_t *reply;
	char err[PATH_MAX + 1024];
};

static void *ctl_job_run(void *arg)
{
	struct ctl_job *j = arg;
	j->rc = ctl_request(j->path, j->req, j->timeout_ms, &j->reply, j->err, sizeof(j->err));
	return NULL;
}

/* Returns the jobs (targets->n of them; free with ctl_jobs_free), or NULL
 * when out of memory.  A thread that cannot start runs inline. */
static struct ctl_job *ctl_fanout(const struct ctl_list *targets, json_t *req, int timeout_ms)
{
	struct ctl_job *jobs = calloc(targets->n ? targets->n : 1, sizeof(*jobs));
	pthread_t *th = calloc(targets->n ? targets->n : 1, sizeof(*th));
	char *started = calloc(targets->n ? targets->n : 1, 1);
	if (!jobs || !th || !started) {
		free(jobs), free(th), free(started);
		return NULL;
	}
	for (size_t i = 0; i < targets->n; i++) {
		jobs[i] = (struct ctl_job){.path = targets->v[i].path, .req = req, .timeout_ms = timeout_ms};
		started[i] = targets->n > 1 && pthread_create(&th[i], NULL, ctl_job_run, &jobs[i]) == 0;
		if (!started[i])
			ctl_job_run(&jobs[i]);
	}
	for (size_t i = 0; i < targets->n; i++)
		if (started[i])
			pthread_join(th[i], NULL);
	free(th);
	free(started);
	return jobs;
}

static void ctl_jobs_free(struct ctl_job *jobs, size_t n)
{
	for (size_t i = 0; jobs && i < n; i++)
		json_decref(jobs[i].reply);
	free(jobs);
}

static int ctl_job_ok(const struct ctl_job *j)
{
	return j->rc == 0 && json_is_true(json_object_get(j->reply, "ok"));
}

/* --all pause is all or nothing: when a rank failed, the ranks this call
 * paused are resumed, so the job is where it was before. */
static void ctl_pause_rollback(const struct ctl_list *targets, const struct ctl_job *jobs, const char *tags,
			       int timeout_ms)
{
	struct ctl_list back = {0};
	char failed[256] = "";
	for (size_t i = 0; i < targets->n; i++) {
		if (!ctl_job_ok(&jobs[i]))
			snprintf(failed + strlen(failed), sizeof(failed) - strlen(failed), "%s%d",
				 failed[0] ? ", " : "", targets->v[i].pid);
		else if (!json_object_get(jobs[i].reply, "warning"))
			ctl_list_add(&back, &targets->v[i]);
	}
	json_t *req = json_pack("{s:s}", "cmd", "resume");
	if (req && tags && *tags)
		json_object_set_new(req, "tags", json_string(tags));
	struct ctl_job *res = req && back.n ? ctl_fanout(&back, req, timeout_ms) : NULL;
	for (size_t i = 0; res && i < back.n; i++) {
		if (ctl_job_ok(&res[i]))
			printf("pid %d: resumed again: the pause failed on pid %s, and --all pauses every process "
			       "or none\n", back.v[i].pid, failed);
		else
			fprintf(stderr, "pid %d: error: resuming it after the failed pause failed too: %s; run "
					"`memsaver ctl --all resume`\n", back.v[i].pid,
				res[i].rc ? res[i].err
					  : json_string_value(json_object_get(res[i].reply, "error")) ?: "(no message)");
	}
	if (back.n && !res)
		fprintf(stderr, "memsaver ctl: out of memory; run `memsaver ctl --all resume`\n");
	ctl_jobs_free(res, back.n);
	json_decref(req);
	ctl_list_free(&back);
}

/* A status whose deep note stands is checked against the driver: the note
 * is what the last ctl said, the driver knows (a ctl killed in the middle
 * leaves a note behind).  "state" becomes the driver's answer. */
static void ctl_status_check(json_t *st, int pid, struct msv_ckpt **api, int *api_tried)
{
	char why[1024];
	int s = -1;
	if (!json_is_object(st) || !json_is_object(json_object_get(st, "deep")))
		return;
	if (!*api_tried) {
		*api_tried = 1;
		if (_msv_ckpt_open(api, 0, why, sizeof(why)) != 0) {
			json_object_set_new(st, "driver_error", json_string(why));
			return;
		}
	}
	if (!*api)
		return;
	if (_msv_ckpt_get_state(*api, pid, &s, why, sizeof(why)) != 0) {
		json_object_set_new(st, "driver_error", json_string(why));
		return;
	}
	const char *truth = _msv_ckpt_state_name(s);
	if (s == MSV_CKPT_RUNNING)
		truth = json_array_size(json_object_get(st, "paused")) ? "paused" : "running";
	json_object_set_new(st, "driver_state", json_string(_msv_ckpt_state_name(s)));
	const char *said = json_string_value(json_object_get(st, "state"));
	if (said && strcmp(said, truth) != 0) {
		fprintf(stderr, "pid %d: note: the engine was last told \"%s\", the driver says %s (a ctl "
				"stopped in the middle?); `memsaver ctl resume` brings it back\n",
			pid, said, _msv_ckpt_state_name(s));
		json_object_set_new(st, "state", json_string(truth));
	}
}

int _msv_cmd_ctl(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"pid", required_argument, NULL, 'p'},     {"socket", required_argument, NULL, 's'},
		{"all", no_argument, NULL, 'a'},           {"session", required_argument, NULL, 'S'},
		{"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	static const struct option copts[] = {{"tags", required_argument, NULL, 't'},
					      {"deep", no_argument, NULL, 'd'},
					      {"output", required_argument, NULL, 'o'},
					      {"help", no_argument, NULL, 'h'},
					      {NULL, 0, NULL, 0}};
	struct ctl_opts o = {0};
	struct ctl_list targets = {0};
	json_t *req = NULL, *collected = NULL;
	struct ctl_job *jobs = NULL;
	const char *tags = NULL, *out = NULL, *label = NULL;
	int c, rc = MSV_EXIT_OK, slow = 0, deep = 0;
	struct msv_ckpt *api = NULL;
	int api_tried = 0;
	json_t **statuses = NULL;
	struct ctl_steps steps = {.t_main = ctl_now_ms()};
	char *end;

	optind = 0; /* glibc: reinitialise, the dispatcher may have used getopt */
	while ((c = getopt_long(argc, argv, "+p:s:aS:t:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o.pid = (int)strtol(optarg, &end, 10);
			if (*end || o.pid <= 0) {
				fprintf(stderr, "memsaver ctl: --pid needs a process id, not \"%s\"\n", optarg);
				return MSV_EXIT_USAGE;
			}
			break;
		case 's':
			o.socket = optarg;
			break;
		case 'a':
			o.all = 1;
			break;
		case 'S':
			o.session = optarg;
			break;
		case 't': {
			long s = strtol(optarg, &end, 10);
			if (*end || s <= 0 || s > 86400) {
				fprintf(stderr, "memsaver ctl: --timeout needs seconds, not \"%s\"\n", optarg);
				return MSV_EXIT_USAGE;
			}
			o.timeout_ms = (int)s * 1000;
			break;
		}
		case 'h':
			fputs(ctl_usage, stdout);
			return MSV_EXIT_OK;
		default:
			fputs(ctl_usage, stderr);
			return MSV_EXIT_USAGE;
		}
	}
	if ((o.pid != 0) + (o.socket != NULL) + o.all > 1) {
		fprintf(stderr, "memsaver ctl: --pid, --socket and --all exclude each other\n");
		return MSV_EXIT_USAGE;
	}
	if (optind >= argc) {
		fprintf(stderr, "memsaver ctl: which command? pause, resume, status, snapshot, report\n"
				"(memsaver ctl --help)\n");
		return MSV_EXIT_USAGE;
	}

	/* The command and its own options. */
	const char *cmd = argv[optind];
	int cargc = argc - optind;
	char **cargv = argv + optind;
	optind = 0;
	while ((c = getopt_long(cargc, cargv, "+t:o:dh", copts, NULL)) != -1) {
		if (c == 't' && (!strcmp(cmd, "pause") || !strcmp(cmd, "resume")))
			tags = optarg;
		else if (c == 'd' && (!strcmp(cmd, "pause") || !strcmp(cmd, "resume")))
			deep = 1; /* resume notices a deep pause by itself */
		else if (c == 'o' && !strcmp(cmd, "report"))
			out = optarg;
		else if (c == 'h') {
			fputs(ctl_usage, stdout);
			return MSV_EXIT_OK;
		} else {
			fprintf(stderr, "memsaver ctl: bad option for %s (memsaver ctl --help)\n", cmd);
			return MSV_EXIT_USAGE;
		}
	}
	int npos = cargc - optind;
	char **pos = cargv + optind;
	if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume")) {
		if (npos == 1 && !tags)
			tags = pos[0], npos = 0; /* `pause kv,graph` is what people type */
		char bad[32];
		unsigned mask;
		if (npos || (tags && _msv_category_mask_parse(tags, &mask, bad, sizeof(bad)) != 0)) {
			if (npos)
				fprintf(stderr, "memsaver ctl: %s takes only --tags and --deep\n", cmd);
			else
				fprintf(stderr, "memsaver ctl: unknown category \"%s\"; valid: weights, kv, "
						"graph, workspace, comm, other\n", bad);
			return MSV_EXIT_USAGE;
		}
		req = tags ? json_pack("{s:s,s:s}", "cmd", cmd, "tags", tags) : json_pack("{s:s}", "cmd", cmd);
		slow = 1;
	} else if (!strcmp(cmd, "status") && npos == 0) {
		req = json_pack("{s:s}", "cmd", cmd);
	} else if (!strcmp(cmd, "snapshot") && npos == 1 && pos[0][0]) {
		label = pos[0];
		req = json_pack("{s:s,s:s}", "cmd", cmd, "label", label);
	} else if (!strcmp(cmd, "report") && npos == 0) {
		req = json_pack("{s:s}", "cmd", cmd);
	} else {
		if (!strcmp(cmd, "status") || !strcmp(cmd, "snapshot") || !strcmp(cmd, "report"))
			fprintf(stderr, "memsaver ctl: wrong arguments for %s (memsaver ctl --help)\n", cmd);
		else
			fprintf(stderr, "memsaver ctl: unknown command \"%s\"; valid: pause, resume, status, "
					"snapshot, report\n", cmd);
		return MSV_EXIT_USAGE;
	}
	if (!req) {
		fprintf(stderr, "memsaver ctl: out of memory\n");
		return MSV_EXIT_FAIL;
	}
	int timeout = o.timeout_ms ? o.timeout_ms : slow ? CTL_SLOW_TIMEOUT_MS : CTL_FAST_TIMEOUT_MS;

	if ((rc = ctl_resolve(&o, &targets)) != MSV_EXIT_OK)
		goto cleanup;
	if (!strcmp(cmd, "pause") && (deep || (deep = ctl_policy_deep(&targets, &statuses)) != 0)) {
		rc = ctl_deep_pause(&targets, tags, timeout, statuses, deep < 0);
		goto cleanup;
	}
	if (!strcmp(cmd, "resume") && (rc = ctl_deep_resume(&targets, &steps)) != MSV_EXIT_OK)
		goto cleanup;
	long long t_req = ctl_now_ms();
	int keyed = o.all && (!strcmp(cmd, "status") || (!strcmp(cmd, "report") && !(out && strstr(out, "%p"))));
	if (keyed && !(collected = json_object())) {
		rc = MSV_EXIT_FAIL;
		goto cleanup;
	}
	/* Pause and resume go to every target at once; the replies are
	 * printed in order below. */
	if (slow && !(jobs = ctl_fanout(&targets, req, timeout))) {
		fprintf(stderr, "memsaver ctl: out of memory\n");
		rc = MSV_EXIT_FAIL;
		goto cleanup;
	}
	ctl_step(&steps, !strcmp(cmd, "resume") ? "memsaver resume" : "request", t_req);
	for (size_t i = 0; i < targets.n; i++) {
		const struct ctl_target *t = &targets.v[i];
		json_t *reply;
		char err[PATH_MAX + 1024], key[16], path[PATH_MAX];
		if (out && !keyed) {
			/* The engine writes FILE too (a copy on its side if it sees
			 * another file system); the path must not depend on its cwd. */
			char cwd[PATH_MAX], rel[PATH_MAX];
			if (_msv_expand_path(out, t->pid, rel, sizeof(rel)) != 0 ||
			    (rel[0] != '/' && !getcwd(cwd, sizeof(cwd))) ||
			    snprintf(path, sizeof(path), "%s%s%s", rel[0] == '/' ? "" : cwd,
				     rel[0] == '/' ? "" : "/", rel) >= (int)sizeof(path)) {
				fprintf(stderr, "pid %d: error: output path too long\n", t->pid);
				rc = MSV_EXIT_FAIL;
				continue;
			}
			json_object_set_new(req, "path", json_string(path));
		}
		int r;
		if (jobs) {
			r = jobs[i].rc;
			reply = json_incref(jobs[i].reply);
			snprintf(err, sizeof(err), "%s", jobs[i].err);
		} else {
			r = ctl_request(t->path, req, timeout, &reply, err, sizeof(err));
		}
		snprintf(key, sizeof(key), "%d", t->pid);
		if (r == -ECONNREFUSED || r == -ENOENT) {
			/* It went away between the probe and now. */
			ctl_probe(t, 0);
			if (!o.socket)
				continue;
		}
		if (r) {
			fprintf(stderr, "pid %d: error: %s\n", t->pid, err);
			rc = MSV_EXIT_FAIL;
			continue;
		}
		if (!json_is_true(json_object_get(reply, "ok"))) {
			const char *e = json_string_value(json_object_get(reply, "error"));
			fprintf(stderr, "pid %d: error: %s\n", t->pid, e ? e : "(no message)");
			rc = MSV_EXIT_FAIL;
			json_decref(reply);
			continue;
		}
		const char *warning = json_string_value(json_object_get(reply, "warning"));
		if (slow && warning) {
			/* Nothing was done (already paused, nothing paused): say so
			 * rather than print a pause that did not happen. */
			printf("pid %d: nothing to do: %s\n", t->pid, warning);
		} else if (slow) {
			char list[256];
			json_t *ms = json_object_get(reply, "ms");
			if (tags && *tags)
				snprintf(list, sizeof(list), "%s", tags);
			else
				snprintf(list, sizeof(list), "all wrapped categories");
			if (!strcmp(cmd, "pause") && (!tags || !*tags) &&
			    json_array_size(json_object_get(reply, "paused")))
				ctl_join(json_object_get(reply, "paused"), list, sizeof(list));
			printf("pid %d: %s %s", t->pid, !strcmp(cmd, "pause") ? "paused" : "resumed", list);
			if (json_is_integer(ms))
				printf(" (%lld ms)", (long long)json_integer_value(ms));
			putchar('\n');
		} else if (label) {
			printf("pid %d: snapshot %s\n", t->pid, label);
		} else {
			const char *field = !strcmp(cmd, "status") ? "status" : "report";
			json_t *v = json_object_get(reply, field);
			if (!strcmp(cmd, "status"))
				ctl_status_check(v, t->pid, &api, &api_tried);
			if (keyed) {
				json_object_set(collected, key, v ? v : json_null());
			} else {
				if (ctl_write_json(out ? path : NULL, v ? v : json_null()) != 0) {
					fprintf(stderr, "pid %d: error: cannot write %s: %s\n", t->pid,
						out ? path : "stdout", strerror(errno));
					rc = MSV_EXIT_FAIL;
				} else if (out) {
					printf("pid %d: report written to %s\n", t->pid, path);
				}
			}
		}
		json_decref(reply);
	}
	if (keyed && ctl_write_json(out, collected) != 0) {
		fprintf(stderr, "memsaver ctl: cannot write %s: %s\n", out ? out : "stdout", strerror(errno));
		rc = MSV_EXIT_FAIL;
	}
	if (jobs && o.all && !strcmp(cmd, "pause") && rc != MSV_EXIT_OK)
		ctl_pause_rollback(&targets, jobs, tags, timeout);
	fflush(stdout);
cleanup:
	if (!strcmp(cmd, "resume"))
		ctl_steps_print(&steps, cmd);
	ctl_jobs_free(jobs, targets.n);
	for (size_t i = 0; statuses && i < targets.n; i++)
		json_decref(statuses[i]);
	free(statuses);
	json_decref(req);
	json_decref(collected);
	ctl_list_free(&targets);
	_msv_ckpt_free(api);
	return rc;
}
