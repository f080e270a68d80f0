/* Replays fuzz inputs through a target's LLVMFuzzerTestOneInput, built with
 * the normal compiler (no libFuzzer): `make test` runs it as
 * $(BUILD)/tests/test_fuzz_NAME over every file of tests/fuzz/corpus/NAME
 * and tests/fuzz/regress/NAME (the inputs that once crashed, hung or
 * leaked), or over the files and directories given as arguments.
 * A crash fails the test; each input gets MSV_REPLAY_TIMEOUT seconds
 * (default 10) before it counts as a hang.  Exit 0 when every input ran. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"

static const char *current;

static void on_alarm(int sig)
{
	(void)sig;
	static const char m[] = "replay: hang (timeout) on ";
	if (write(2, m, sizeof(m) - 1) < 0 || write(2, current, strlen(current)) < 0 ||
	    write(2, "\n", 1) < 0)
		_exit(3);
	_exit(3);
}

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 4096, len = 0;
	unsigned char *b = malloc(cap);
	size_t n;
	while (b && (n = fread(b + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap)
			b = realloc(b, cap *= 2);
	}
	fclose(f);
	if (!b)
		return -1;
	current = path;
	const char *to = getenv("MSV_REPLAY_TIMEOUT");
	alarm(to && *to ? (unsigned)atoi(to) : 10);
	LLVMFuzzerTestOneInput(b, len);
	alarm(0);
	free(b);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Files of a directory in name order; returns inputs run, -1 on error. */
static int run_path(const char *path, int quiet_missing)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		if (quiet_missing && errno == ENOENT)
			return 0;
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path) == 0 ? 1 : -1;
	DIR *d = opendir(path);
	if (!d)
		return -1;
	char **names = NULL;
	size_t nn = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		names = realloc(names, (nn + 1) * sizeof(*names));
		if (asprintf(&names[nn], "%s/%s", path, e->d_name) < 0)
			return -1;
		nn++;
	}
	closedir(d);
	qsort(names, nn, sizeof(*names), cmp);
	int count = 0, bad = 0;
	for (size_t i = 0; i < nn; i++) {
		int r = run_path(names[i], 0);
		if (r < 0)
			bad = 1;
		else
			count += r;
		free(names[i]);
	}
	free(names);
	return bad ? -1 : count;
}

int main(int argc, char **argv)
{
	signal(SIGALRM, on_alarm);
	int total = 0;
	if (argc > 1) {
		for (int i = 1; i < argc; i++) {
			int r = run_path(argv[i], 0);
			if (r < 0)
				return 1;
			total += r;
		}
	} else {
		const char *dirs[] = {"tests/fuzz/corpus/" FUZZ_NAME, "tests/fuzz/regress/" FUZZ_NAME};
		for (int i = 0; i < 2; i++) {
			int r = run_path(dirs[i], 1);
			if (r < 0)
				return 1;
			printf("replay %s: %d inputs of %s\n", FUZZ_NAME, r, dirs[i]);
			total += r;
		}
		if (total == 0) {
			fprintf(stderr, "replay %s: no inputs (run from the repository root)\n", FUZZ_NAME);
			return 1;
		}
	}
	printf("replay %s: %d inputs, no crash, no hang\n", FUZZ_NAME, total);
	return 0;
}
