/* Where control sockets live.  Shared by the library (saver/control.c) and
 * the CLI (tools/memsaver/cmd_ctl.c), so it needs no CUDA and no thread: it
 * belongs in CORE_SRCS. */
#include "saver/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tracer/options.h"

/* A session id becomes one path component: anything that could climb out of
 * the socket directory is refused rather than sanitised, so two spellings
 * never name the same directory. */
static int session_ok(const char *s)
{
	if (!*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strlen(s) >= 64)
		return 0;
	return strchr(s, '/') == NULL;
}

int _msv_control_dir(char *out, size_t len)
{
	const struct msv_options *o = _msv_options();
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;
	if (!out || len == 0)
		return -EINVAL;
	if (o->socket_dir[0])
		n = snprintf(out, len, "%s", o->socket_dir);
	else if (xdg && xdg[0] == '/')
		n = snprintf(out, len, "%s/memsaver", xdg);
	else
		n = snprintf(out, len, "/tmp/memsaver-%u", (unsigned)geteuid());
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	/* "dir/" and "dir" must give the same socket path. */
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
	return 0;
}

int _msv_control_path(const char *session, int pid, char *out, size_t len)
{
	char dir[4096];
	int rc = _msv_control_dir(dir, sizeof(dir));
	if (rc)
		return rc;
	if (!session) {
		session = _msv_options()->session;
		if (!session[0])
			session = "default";
	}
	if (!session_ok(session))
		return -EINVAL;
	if (pid <= 0)
		pid = (int)getpid();
	int n = snprintf(out, len, "%s/%s/memsaver-%d.sock", dir, session, pid);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}
