/* Deep pause from inside the engine (deep.h).
 *
 * Why posix_spawn and not fork: the engine holds a CUDA context and many
 * threads; glibc's posix_spawn is a vfork-like clone that runs no atfork
 * handler and copies no address space, so nothing of the driver's state is
 * duplicated into a child that would only exec. */
#include "saver/deep.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "saver/control.h"
#include "tracer/log.h"
#include "tracer/tracer.h"

extern char **environ;

static int executable(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

static int find_cli(char *out, size_t len)
{
	const char *env = getenv("MEMSAVER_BIN");
	Dl_info info;
	if (env && *env) {
		snprintf(out, len, "%s", env);
		return executable(out) ? 0 : -ENOENT;
	}
	if (!dladdr((void *)find_cli, &info) || !info.dli_fname || !strchr(info.dli_fname, '/'))
		return -ENOENT;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", info.dli_fname);
	*strrchr(dir, '/') = '\0';
	if (snprintf(out, len, "%s/../bin/memsaver", dir) < (int)len && executable(out))
		return 0;
	if (snprintf(out, len, "%s/memsaver", dir) < (int)len && executable(out))
		return 0;
	return -ENOENT;
}

/* This environment minus what would load memsaver into the ctl.  The
 * strings stay environ's; only the array is new. */
static char **child_env(void)
{
	static const char *const drop[] = {"LD_PRELOAD=", "CUDA_INJECTION64_PATH=", "NVTX_INJECTION64_PATH="};
	size_t n = 0, k = 0;
	while (environ && environ[n])
		n++;
	char **env = calloc(n + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int keep = 1;
		for (size_t d = 0; d < sizeof(drop) / sizeof(drop[0]); d++)
			keep &= strncmp(environ[i], drop[d], strlen(drop[d])) != 0;
		if (keep)
			env[k++] = environ[i];
	}
	return env;
}

int _msv_deep_ctl(const char *verb, const char *categories, char *err, size_t len)
{
	char cli[PATH_MAX], sock[PATH_MAX], out[2048] = "";
	int fds[2] = {-1, -1}, rc = 0, status = 0;
	size_t have = 0;
	pid_t pid = -1;
	char **env = NULL;
	posix_spawn_file_actions_t fa;
	int fa_ok = 0;

	if (find_cli(cli, sizeof(cli)) != 0) {
		snprintf(err, len, "a deep %s needs the memsaver CLI and none was found (set MEMSAVER_BIN, "
				   "or keep bin/memsaver beside lib/libmemsaver.so)", verb);
		return -ENOENT;
	}
	if ((rc = _msv_control_path(NULL, 0, sock, sizeof(sock))) != 0) {
		snprintf(err, len, "a deep %s needs this process's control socket: %s", verb, strerror(-rc));
		return rc;
	}
	const char *argv[10];
	int a = 0;
	argv[a++] = cli;
	argv[a++] = "ctl";
	argv[a++] = "--socket";
	argv[a++] = sock;
	argv[a++] = verb;
	if (!strcmp(verb, "pause"))
		argv[a++] = "--deep";
	if (categories && *categories) {
		argv[a++] = "--tags";
		argv[a++] = categories;
	}
	argv[a] = NULL;

	if (pipe2(fds, O_CLOEXEC) != 0 || !(env = child_env()) || posix_spawn_file_actions_init(&fa) != 0) {
		rc = errno ? -errno : -ENOMEM;
		snprintf(err, len, "cannot start %s: %s", cli, strerror(-rc));
		goto cleanup;
	}
	fa_ok = 1;
	if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
	    posix_spawn_file_actions_adddup2(&fa, fds[1], 1) != 0 ||
	    posix_spawn_file_actions_adddup2(&fa, fds[1], 2) != 0 ||
	    (rc = posix_spawn(&pid, cli, &fa, NULL, (char *const *)argv, env)) != 0) {
		rc = rc > 0 ? -rc : -ENOMEM;
		snprintf(err, len, "cannot start %s: %s", cli, strerror(-rc));
		pid = -1;
		goto cleanup;
	}
	close(fds[1]);
	fds[1] = -1;
	/* Keep the tail of what it says: its last line is the reason. */
	for (;;) {
		char buf[512];
		ssize_t r = read(fds[0], buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (have + (size_t)r >= sizeof(out)) {
			size_t drop = have + (size_t)r - (sizeof(out) - 1);
			drop = drop > have ? have : drop;
			memmove(out, out + drop, have - drop);
			have -= drop;
		}
		size_t take = (size_t)r < sizeof(out) - 1 - have ? (size_t)r : sizeof(out) - 1 - have;
		memcpy(out + have, buf, take);
		have += take;
		out[have] = '\0';
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			/* SIGCHLD ignored by the host: the status is gone; the
			 * caller judges by the state the ctl left. */
			status = 0;
			break;
		}
	}
	while (have && out[have - 1] == '\n')
		out[--have] = '\0';
	MSV_DEBUG("%s %s: %s", cli, verb, out);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		const char *last = strrchr(out, '\n');
		snprintf(err, len, "%s", last ? last + 1 : out[0] ? out : "memsaver ctl failed without a word");
		rc = -EIO;
	}
cleanup:
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	free(env);
	return rc;
}

void _msv_deep_record_checkpoint(const json_t *detail)
{
	json_t *d = json_object_get(detail, "device");
	json_t *tot = json_object_get(d, "total_bytes"), *u0 = json_object_get(d, "used_before_bytes"),
	       *u1 = json_object_get(d, "used_after_bytes"), *ix = json_object_get(d, "index");
	json_t *ms = json_object_get(detail, "checkpoint_ms");
	struct msv_trace_writer *w = _msv_tracer_log();
	if (!_msv_tracer_active() || !w || !json_is_integer(tot) || !json_is_integer(u0) || !json_is_integer(u1) ||
	    !json_is_integer(ix))
		return;
	uint64_t now = _msv_now_ns();
	uint64_t took = json_is_integer(ms) ? (uint64_t)json_integer_value(ms) * 1000000 : 0;
	/* The first reading was taken before the checkpoint ran. */
	struct msv_rec r = {.type = MSV_REC_PHASE, .t_ns = took < now ? now - took : now,
			    .size = (uint64_t)json_integer_value(tot), .aux = (uint64_t)json_integer_value(u0),
			    .aux2 = MSV_NO_VALUE, .device = (uint8_t)json_integer_value(ix)};
	r.site = _msv_trace_intern(w, "before_checkpoint");
	_msv_tracer_record(&r);
	r.t_ns = now;
	r.aux = (uint64_t)json_integer_value(u1);
	r.site = _msv_trace_intern(w, "checkpointed");
	_msv_tracer_record(&r);
}
