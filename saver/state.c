/* The deep-pause note (state.h).  Kept apart from saver/pause.c because it
 * is set by the control socket on the word of another process and read by
 * status: the pause machinery never depends on it. */
#include "saver/state.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "tracer/options.h"

static pthread_mutex_t st_lock = PTHREAD_MUTEX_INITIALIZER;
static enum msv_state st_deep = MSV_STATE_RUNNING; /* under st_lock */
static int st_cli;
static long long st_since_ms;
static json_t *st_detail;

static const char *const names[] = {"running", "paused", "locked", "checkpointed"};

const char *_msv_state_name(enum msv_state s)
{
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

int _msv_state_parse(const char *name, enum msv_state *out)
{
	for (unsigned i = 0; name && i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return *out = (enum msv_state)i, 0;
	return -EINVAL;
}

static long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int _msv_state_note(enum msv_state s, int cli_pid, json_t *detail)
{
	if ((unsigned)s > MSV_STATE_CHECKPOINTED || (detail && !json_is_object(detail)))
		return -EINVAL;
	int deep = s == MSV_STATE_LOCKED || s == MSV_STATE_CHECKPOINTED;
	pthread_mutex_lock(&st_lock);
	if (deep && st_deep == MSV_STATE_RUNNING)
		st_since_ms = wall_ms();
	st_deep = deep ? s : MSV_STATE_RUNNING;
	st_cli = deep ? cli_pid : 0;
	/* A later note without detail keeps the first one's: "checkpointed"
	 * carries the bytes, "locked" after a restore need not repeat them. */
	if (!deep || detail) {
		json_decref(st_detail);
		st_detail = deep ? json_incref(detail) : NULL;
	}
	pthread_mutex_unlock(&st_lock);
	return 0;
}

enum msv_state _msv_state_deep(void)
{
	pthread_mutex_lock(&st_lock);
	enum msv_state s = st_deep;
	pthread_mutex_unlock(&st_lock);
	return s;
}

void _msv_state_status(json_t *status)
{
	if (!status)
		return;
	json_t *deep = json_null();
	pthread_mutex_lock(&st_lock);
	enum msv_state s = st_deep;
	if (s != MSV_STATE_RUNNING)
		deep = json_pack("{s:s,s:i,s:I,s:O?}", "state", _msv_state_name(s), "cli_pid", st_cli,
				 "since_ms", (json_int_t)st_since_ms, "detail", st_detail);
	pthread_mutex_unlock(&st_lock);
	if (s == MSV_STATE_RUNNING && json_array_size(json_object_get(status, "paused")))
		s = MSV_STATE_PAUSED;
	json_object_set_new(status, "state", json_string(_msv_state_name(s)));
	json_object_set_new(status, "deep", deep ? deep : json_null());
	json_object_set_new(status, "cupti", json_boolean(_msv_options()->cupti));
}
