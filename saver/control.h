/* The control socket: one Unix socket per process, line-delimited JSON.
 *
 * Path: <dir>/<session>/memsaver-<pid>.sock where dir is MEMSAVER_SOCKET_DIR,
 * else $XDG_RUNTIME_DIR/memsaver, else /tmp/memsaver-<uid>; session is
 * MEMSAVER_SESSION (set by `memsaver run`, shared by every process it
 * starts), else "default".  Directories 0700, socket 0600, and the peer's
 * uid is checked with SO_PEERCRED.
 *
 * Requests, one JSON object per line (at most MSV_CONTROL_MAX_REQUEST bytes):
 *   {"cmd":"pause","tags":"kv,graph"}   tags optional (all wrapped categories)
 *   {"cmd":"resume","tags":...}
 *   {"cmd":"status"}
 *   {"cmd":"snapshot","label":"after_load"}
 *   {"cmd":"report","path":"/x.json"}    path optional: the configured one
 *   {"cmd":"deep","state":"locked","cli_pid":N,"detail":{...}}
 *                                        the CLI's note on the driver checkpoint
 *                                        (saver/state.h); while locked or
 *                                        checkpointed, every command but status
 *                                        and deep is refused (it would block in
 *                                        CUDA)
 * Replies, one line each: {"ok":true,...} or {"ok":false,"error":"..."}.
 * status replies {"ok":true,"status":{...}} with "state" (running, paused,
 * locked, checkpointed), "deep" and "cupti" (saver/state.h); report replies
 * {"ok":true,"path":...,"report":{...}}.  A malformed or oversized request
 * gets an error reply and the connection is closed; the engine is never
 * disturbed. */
#ifndef MSV_CONTROL_H
#define MSV_CONTROL_H

#include <stddef.h>

#define MSV_CONTROL_MAX_REQUEST 65536

/* Start the server thread (idempotent per process: a fork child may and
 * should call it again for its own pid).  Returns 0, also when
 * MEMSAVER_CONTROL=0 makes it a no-op, or a negative errno (-EPERM: an
 * unsafe directory, -EINVAL: a bad session, -EADDRINUSE: the path is served
 * by someone else); on failure the process goes on without a control socket
 * and the log says why. */
int _msv_control_start(void);
/* Stop the server and unlink the socket (at exit; idempotent).  Does
 * nothing in a forked child that never started its own server.  Does not
 * wait for a request in progress. */
void _msv_control_stop(void);
/* The socket path of process pid (<= 0: this process) in session (NULL:
 * MEMSAVER_SESSION, else "default").  Returns 0, -EINVAL for a session that
 * is not one path component, -ENAMETOOLONG when it does not fit len (a
 * socket path must fit sockaddr_un: 107 bytes).  Needs no CUDA
 * (saver/control_path.c, linked into the CLI too). */
int _msv_control_path(const char *session, int pid, char *out, size_t len);
/* The directory holding the sessions' directories, without a trailing
 * slash.  Neither function creates anything. */
int _msv_control_dir(char *out, size_t len);

#endif
