/* The control server and the ctl client against each other, with the msv_*
 * API replaced by fakes that record their calls.  The server and the CLI are
 * compiled into this file (libmsvcore.a holds neither), so their static
 * knobs (request_timeout_ms) and helpers (ctl_resolve) are reachable.
 * Each test runs in its own forked process (CK_FORK): _msv_options() then
 * reads the environment the fixture set. */
#include "saver/control.c"
#include "saver/control_path.c"
#include "tools/memsaver/cmd_ctl.c"
#include "tools/memsaver/checkpoint.c"

#include <check.h>
#include <sys/wait.h>

/* ---- fakes of the public API and of the saver's status ------------------ */

static char fake_last_tags[256];
static int fake_tags_null;
static int fake_calls;
static int fake_rc;
static char fake_error[256];
static char fake_label[256];

static int fake_record(const char *tags)
{
	fake_calls++;
	fake_tags_null = tags == NULL;
	snprintf(fake_last_tags, sizeof(fake_last_tags), "%s", tags ? tags : "");
	return fake_rc;
}

int msv_pause(const char *c) { return fake_record(c); }
int msv_resume(const char *c) { return fake_record(c); }
int msv_region_begin(const char *c) { (void)c; return 0; }
int msv_region_end(void) { return 0; }
const char *msv_last_error(void) { return fake_error; }

int msv_snapshot(const char *label)
{
	snprintf(fake_label, sizeof(fake_label), "%s", label);
	return fake_rc;
}

int msv_report_write(const char *path)
{
	if (!path) {
		snprintf(fake_error, sizeof(fake_error), "no report path: set MEMSAVER_REPORT");
		return -EINVAL;
	}
	json_t *r = json_pack("{s:i,s:s}", "schema_version", 1, "note", "fake");
	int rc = json_dump_file(r, path, 0);
	json_decref(r);
	return rc ? -EIO : 0;
}

/* The library records the checkpoint in its trace; no tracer here. */
void _msv_deep_record_checkpoint(const json_t *detail) { (void)detail; }

json_t *_msv_status_json(void)
{
	return json_pack("{s:i,s:s,s:[s]}", "pid", (int)getpid(), "session", "t", "paused", "kv");
}

/* ---- fixture ------------------------------------------------------------ */

static char tmpdir[256], sockdir[300], sockpath[512];

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/msv-test-control-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(sockdir, sizeof(sockdir), "%s/socks", tmpdir);
	setenv("MEMSAVER_SOCKET_DIR", sockdir, 1);
	setenv("MEMSAVER_SESSION", "t", 1);
	unsetenv("MEMSAVER_REPORT");
	setenv("MEMSAVER_LOG", "error", 1);
	request_timeout_ms = 300;
	connection_budget_ms = 1000;
	fake_rc = 0;
	fake_calls = 0;
	fake_error[0] = '\0';
	ck_assert_int_eq(_msv_control_start(), 0);
	ck_assert_int_eq(_msv_control_path(NULL, 0, sockpath, sizeof(sockpath)), 0);
}

static void teardown(void)
{
	char cmd[600];
	_msv_control_stop();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

/* ---- a raw client -------------------------------------------------------- */

static int raw_connect(const char *path)
{
	int fd = ctl_connect(path, 2000);
	ck_assert_int_ge(fd, 0);
	return fd;
}

static void raw_send(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		ck_assert_int_gt(w, 0);
		p += w, n -= (size_t)w;
	}
}

/* One reply line, or NULL when the server closed without one.  Bytes after
 * the line are kept for the next call on the same descriptor. */
static json_t *raw_reply(int fd)
{
	static char buf[1 << 16];
	static size_t have;
	static int last_fd = -1;
	if (fd != last_fd)
		have = 0, last_fd = fd;
	for (;;) {
		char *nl = memchr(buf, '\n', have);
		if (nl) {
			json_error_t je;
			json_t *j = json_loadb(buf, (size_t)(nl - buf), 0, &je);
			ck_assert_msg(j != NULL, "reply not JSON: %s", je.text);
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have);
			return j;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ck_assert_int_eq(poll(&p, 1, 3000), 1);
		ssize_t r = recv(fd, buf + have, sizeof(buf) - have - 1, 0);
		if (r <= 0)
			return NULL;
		have += (size_t)r;
	}
}

static json_t *ask(const char *line)
{
	int fd = raw_connect(sockpath);
	raw_send(fd, line, strlen(line));
	/* No newline: the end of the stream ends the request, as with nc. */
	if (line[strlen(line) - 1] != '\n')
		ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
	json_t *r = raw_reply(fd);
	close(fd);
	ck_assert_ptr_nonnull(r);
	return r;
}

static void assert_error_contains(json_t *r, const char *needle)
{
	ck_assert(json_is_false(json_object_get(r, "ok")));
	const char *e = json_string_value(json_object_get(r, "error"));
	ck_assert_ptr_nonnull(e);
	ck_assert_msg(strstr(e, needle) != NULL, "error \"%s\" lacks \"%s\"", e, needle);
}

static void assert_serving(void)
{
	json_t *r = ask("{\"cmd\":\"status\"}\n");
	ck_assert(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
}

/* ---- server tests -------------------------------------------------------- */

START_TEST(test_path_and_modes)
{
	struct stat st;
	char want[512];
	snprintf(want, sizeof(want), "%s/t/memsaver-%d.sock", sockdir, (int)getpid());
	ck_assert_str_eq(sockpath, want);
	ck_assert_int_eq(stat(sockdir, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	snprintf(want, sizeof(want), "%s/t", sockdir);
	ck_assert_int_eq(stat(want, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	ck_assert_int_eq(stat(sockpath, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	/* Idempotent. */
	ck_assert_int_eq(_msv_control_start(), 0);
	/* Sessions that would leave the directory are refused. */
	ck_assert_int_eq(_msv_control_path("../x", 1, want, sizeof(want)), -EINVAL);
	ck_assert_int_eq(_msv_control_path("a/b", 1, want, sizeof(want)), -EINVAL);
	ck_assert_int_eq(_msv_control_path("s", 7, want, 10), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_unsafe_dir_refused)
{
	char dir[600], path[700];
	_msv_control_stop();
	snprintf(dir, sizeof(dir), "%s/t", sockdir);
	ck_assert_int_eq(chmod(dir, 0777), 0);
	ck_assert_int_eq(_msv_control_start(), -EPERM);
	snprintf(path, sizeof(path), "%s/memsaver-%d.sock", dir, (int)getpid());
	ck_assert_int_ne(access(path, F_OK), 0);
	ck_assert_int_eq(chmod(dir, 0700), 0);
	ck_assert_int_eq(_msv_control_start(), 0);
	assert_serving();
}
END_TEST

START_TEST(test_status_round_trip)
{
	json_t *r = ask("{\"cmd\":\"status\"}\n");
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "status"), "pid")),
			 getpid());
	json_decref(r);
}
END_TEST

START_TEST(test_pause_tags)
{
	json_t *r = ask("{\"cmd\":\"pause\",\"tags\":\"kv,graph\"}\n");
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_str_eq(fake_last_tags, "kv,graph");
	ck_assert_int_eq(fake_tags_null, 0);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(r, "paused"), 0)), "kv");
	json_decref(r);

	r = ask("{\"cmd\":\"resume\"}\n");
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_int_eq(fake_tags_null, 1);
	json_decref(r);

	r = ask("{\"cmd\":\"resume\",\"tags\":[\"weights\",\"kv\"]}\n");
	ck_assert_str_eq(fake_last_tags, "weights,kv");
	json_decref(r);

	r = ask("{\"cmd\":\"pause\",\"tags\":7}\n");
	assert_error_contains(r, "tags");
	json_decref(r);
	ck_assert_int_eq(fake_calls, 3);
}
END_TEST

START_TEST(test_error_propagates)
{
	fake_rc = -ENOMEM;
	snprintf(fake_error, sizeof(fake_error), "resume needs 2.0 GiB, 1.5 GiB free");
	json_t *r = ask("{\"cmd\":\"resume\",\"tags\":\"weights\"}\n");
	assert_error_contains(r, "needs 2.0 GiB");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "code")), -ENOMEM);
	json_decref(r);
}
END_TEST

START_TEST(test_malformed_then_next_client)
{
	int fd = raw_connect(sockpath);
	raw_send(fd, "{\"cmd\": pause}\n{\"cmd\":\"status\"}\n", 31);
	json_t *r = raw_reply(fd);
	assert_error_contains(r, "request is not JSON: ");
	assert_error_contains(r, "at column");
	json_decref(r);
	/* ... and the connection is closed after it. */
	ck_assert_ptr_null(raw_reply(fd));
	close(fd);
	assert_serving();

	r = ask("[1,2]\n");
	assert_error_contains(r, "JSON object");
	json_decref(r);
}
END_TEST

START_TEST(test_oversized)
{
	size_t n = MSV_CONTROL_MAX_REQUEST + 4000;
	char *big = malloc(n);
	ck_assert_ptr_nonnull(big);
	memset(big, 'a', n);
	big[n - 1] = '\n';
	int fd = raw_connect(sockpath);
	raw_send(fd, big, n);
	json_t *r = raw_reply(fd);
	assert_error_contains(r, "longer than 65536");
	json_decref(r);
	close(fd);
	free(big);
	assert_serving();
}
END_TEST

START_TEST(test_unknown_and_missing)
{
	json_t *r = ask("{\"cmd\":\"explode\"}\n");
	assert_error_contains(r, "valid: pause, resume, status, snapshot, report");
	json_decref(r);
	r = ask("{\"tags\":\"kv\"}\n");
	assert_error_contains(r, "no \"cmd\"");
	json_decref(r);
	r = ask("{\"cmd\":\"snapshot\"}\n");
	assert_error_contains(r, "label");
	json_decref(r);
	r = ask("{\"cmd\":\"snapshot\",\"label\":\"after_load\"}");
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_str_eq(fake_label, "after_load");
	json_decref(r);
}
END_TEST

START_TEST(test_stalled_client)
{
	int idle = raw_connect(sockpath);
	int partial = raw_connect(sockpath);
	raw_send(partial, "{\"cmd\":", 7);
	long long t0 = ctl_now_ms();
	assert_serving();
	/* Two stalled clients ahead of us cost two timeouts at most. */
	ck_assert_int_lt(ctl_now_ms() - t0, 3 * request_timeout_ms + 500);
	json_t *r = raw_reply(partial);
	assert_error_contains(r, "incomplete request");
	json_decref(r);
	close(idle);
	close(partial);
}
END_TEST

/* A client that keeps one connection busy with a request every 200 ms (each
 * within request_timeout_ms) is cut off after connection_budget_ms, and the
 * client queued behind it is served. */
START_TEST(test_connection_budget)
{
	int hog = raw_connect(sockpath), other = -1, served = 0, cut = 0;
	long long t0 = ctl_now_ms();
	while (!served && ctl_now_ms() - t0 < 4 * connection_budget_ms) {
		if (!cut) {
			raw_send(hog, "{\"cmd\":\"status\"}\n", 17);
			json_t *r = raw_reply(hog);
			if (r && json_is_false(json_object_get(r, "ok"))) {
				assert_error_contains(r, "connection open longer than");
				cut = 1;
			}
			ck_assert_ptr_nonnull(r);
			json_decref(r);
		}
		if (other < 0) {
			other = raw_connect(sockpath);
			raw_send(other, "{\"cmd\":\"status\"}\n", 17);
		}
		struct pollfd p = {.fd = other, .events = POLLIN};
		if (poll(&p, 1, 200) == 1) {
			json_t *r = raw_reply(other);
			ck_assert(json_is_true(json_object_get(r, "ok")));
			json_decref(r);
			served = 1;
		}
	}
	long long waited = ctl_now_ms() - t0;
	ck_assert_msg(served, "a client behind a busy connection was not served in %lld ms", waited);
	ck_assert_int_lt(waited, connection_budget_ms + 2 * request_timeout_ms + 500);
	if (!cut) { /* cut off while idle between two of its requests */
		json_t *r = raw_reply(hog);
		ck_assert_ptr_nonnull(r);
		assert_error_contains(r, "connection open longer than");
		json_decref(r);
	}
	close(hog);
	close(other);
}
END_TEST

START_TEST(test_several_requests_one_connection)
{
	int fd = raw_connect(sockpath);
	const char *two = "{\"cmd\":\"pause\",\"tags\":\"kv\"}\r\n\n{\"cmd\":\"resume\",\"tags\":\"kv\"}\n";
	raw_send(fd, two, strlen(two));
	for (int i = 0; i < 2; i++) {
		json_t *r = raw_reply(fd);
		ck_assert(json_is_true(json_object_get(r, "ok")));
		json_decref(r);
	}
	close(fd);
	ck_assert_int_eq(fake_calls, 2);
}
END_TEST

START_TEST(test_report)
{
	char path[600], line[800];
	snprintf(path, sizeof(path), "%s/r.json", tmpdir);
	snprintf(line, sizeof(line), "{\"cmd\":\"report\",\"path\":\"%s\"}\n", path);
	json_t *r = ask(line);
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_str_eq(json_string_value(json_object_get(r, "path")), path);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "report"),
							    "schema_version")), 1);
	json_decref(r);
	r = ask("{\"cmd\":\"report\"}\n");
	assert_error_contains(r, "MEMSAVER_REPORT");
	json_decref(r);
}
END_TEST

START_TEST(test_stop_unlinks_and_restarts)
{
	_msv_control_stop();
	ck_assert_int_ne(access(sockpath, F_OK), 0);
	_msv_control_stop();
	ck_assert_int_eq(_msv_control_start(), 0);
	assert_serving();
}
END_TEST

START_TEST(test_fork_child)
{
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		char mine[512];
		int ok = srv_cur == NULL && _msv_control_start() == 0 &&
			 _msv_control_path(NULL, 0, mine, sizeof(mine)) == 0 &&
			 strcmp(mine, sockpath) != 0 && access(mine, F_OK) == 0;
		_msv_control_stop();
		ok = ok && access(mine, F_OK) != 0 && access(sockpath, F_OK) == 0;
		_exit(ok ? 0 : 1);
	}
	int st;
	ck_assert_int_eq(waitpid(child, &st, 0), child);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_serving();
}
END_TEST

/* ---- CLI ------------------------------------------------------------------ */

static int bind_path(int fd, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	return bind(fd, (struct sockaddr *)&sa, sizeof(sa));
}

/* A socket file nobody listens on, named after a pid that is gone. */
static void make_stale(char *path, size_t len)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	snprintf(path, len, "%s/t/memsaver-%d.sock", sockdir, (int)p);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind_path(fd, path), 0);
	close(fd);
}

START_TEST(test_cli_resolve)
{
	char stale[512];
	make_stale(stale, sizeof(stale));
	struct ctl_opts o = {0};
	struct ctl_list l = {0};
	ck_assert_int_eq(ctl_resolve(&o, &l), MSV_EXIT_OK);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_int_eq(l.v[0].pid, getpid());
	ck_assert_str_eq(l.v[0].session, "t");
	ck_assert_int_ne(access(stale, F_OK), 0); /* removed: its process is gone */
	ctl_list_free(&l);

	o.pid = 1; /* not ours */
	ck_assert_int_eq(ctl_resolve(&o, &l), MSV_EXIT_USAGE);
	o.pid = 0;

	/* A second live listener: no unique target without --pid or --all. */
	char other[512];
	snprintf(other, sizeof(other), "%s/t/memsaver-1.sock", sockdir);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind_path(fd, other), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	ck_assert_int_eq(ctl_resolve(&o, &l), MSV_EXIT_USAGE);
	o.all = 1;
	ck_assert_int_eq(ctl_resolve(&o, &l), MSV_EXIT_OK);
	ck_assert_uint_eq(l.n, 2);
	ctl_list_free(&l);
	o.all = 0;
	o.pid = getpid();
	ck_assert_int_eq(ctl_resolve(&o, &l), MSV_EXIT_OK);
	ck_assert_uint_eq(l.n, 1);
	ctl_list_free(&l);
	close(fd);
}
END_TEST

static int run_ctl(int n, ...)
{
	char *argv[16];
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[n] = NULL;
	return _msv_cmd_ctl(n, argv);
}

START_TEST(test_cli_commands)
{
	char pid[16], out[600];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	ck_assert_int_eq(run_ctl(4, "ctl", "pause", "--tags", "kv,graph"), MSV_EXIT_OK);
	ck_assert_str_eq(fake_last_tags, "kv,graph");
	ck_assert_int_eq(run_ctl(3, "ctl", "resume", "kv"), MSV_EXIT_OK);
	ck_assert_str_eq(fake_last_tags, "kv");
	ck_assert_int_eq(run_ctl(4, "ctl", "--pid", pid, "status"), MSV_EXIT_OK);
	ck_assert_int_eq(run_ctl(4, "ctl", "--socket", sockpath, "status"), MSV_EXIT_OK);
	ck_assert_int_eq(run_ctl(3, "ctl", "--all", "status"), MSV_EXIT_OK);
	ck_assert_int_eq(run_ctl(3, "ctl", "snapshot", "warm"), MSV_EXIT_OK);
	ck_assert_str_eq(fake_label, "warm");
	snprintf(out, sizeof(out), "%s/rep-%%p.json", tmpdir);
	ck_assert_int_eq(run_ctl(4, "ctl", "report", "-o", out), MSV_EXIT_OK);
	snprintf(out, sizeof(out), "%s/rep-%d.json", tmpdir, (int)getpid());
	ck_assert_int_eq(access(out, R_OK), 0);
	/* Failures and usage errors. */
	fake_rc = -EAGAIN;
	snprintf(fake_error, sizeof(fake_error), "already paused");
	ck_assert_int_eq(run_ctl(2, "ctl", "pause"), MSV_EXIT_FAIL);
	ck_assert_int_eq(run_ctl(3, "ctl", "pause", "--tags=bogus"), MSV_EXIT_USAGE);
	ck_assert_int_eq(run_ctl(2, "ctl", "frobnicate"), MSV_EXIT_USAGE);
	ck_assert_int_eq(run_ctl(1, "ctl"), MSV_EXIT_USAGE);
	ck_assert_int_eq(run_ctl(2, "ctl", "snapshot"), MSV_EXIT_USAGE);
	ck_assert_int_eq(run_ctl(5, "ctl", "--all", "--pid", pid, "status"), MSV_EXIT_USAGE);
	/* Nobody at the socket is "no target", as for --pid (issue 18). */
	ck_assert_int_eq(run_ctl(4, "ctl", "--socket", "/nonexistent/x.sock", "status"), MSV_EXIT_USAGE);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("control");
	TCase *tc = tcase_create("server");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_path_and_modes);
	tcase_add_test(tc, test_unsafe_dir_refused);
	tcase_add_test(tc, test_status_round_trip);
	tcase_add_test(tc, test_pause_tags);
	tcase_add_test(tc, test_error_propagates);
	tcase_add_test(tc, test_malformed_then_next_client);
	tcase_add_test(tc, test_oversized);
	tcase_add_test(tc, test_unknown_and_missing);
	tcase_add_test(tc, test_stalled_client);
	tcase_add_test(tc, test_connection_budget);
	tcase_add_test(tc, test_several_requests_one_connection);
	tcase_add_test(tc, test_report);
	tcase_add_test(tc, test_stop_unlinks_and_restarts);
	tcase_add_test(tc, test_fork_child);
	suite_add_tcase(s, tc);
	TCase *cli = tcase_create("cli");
	tcase_add_checked_fixture(cli, setup, teardown);
	tcase_set_timeout(cli, 10);
	tcase_add_test(cli, test_cli_resolve);
	tcase_add_test(cli, test_cli_commands);
	suite_add_tcase(s, cli);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
