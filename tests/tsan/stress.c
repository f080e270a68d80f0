/* make tsan: the concurrency stress of issue 16 under ThreadSanitizer.
 *
 * Runs with libmemsaver.so preloaded on the fake driver (tests/tsan/run.sh),
 * reaching the driver as libcudart does (dlopen + cuGetProcAddress_v2):
 *   - ALLOC_THREADS threads allocate (1-6 MiB, every fourth one inside an
 *     explicit "kv" region), write, and free, in a loop;
 *   - two threads call msv_pause / msv_resume directly, racing each other;
 *   - one thread asks for status over the control socket, and sends pause
 *     and resume there too (so the socket's thread races the API callers);
 *   - one thread takes snapshots and writes reports.
 * Every call may fail (a write into paused memory gets
 * CUDA_ERROR_ILLEGAL_ADDRESS on the fake; a pause racing a pause gets a
 * "nothing to do" warning); what must not happen is a crash, a hang or a
 * data race.  At the end everything is resumed and freed, and the fake's
 * accounting must be back to the context alone.
 *
 * Exit: 0 done, 1 a broken invariant, 2 setup failed.  ThreadSanitizer
 * prints its own reports; run.sh fails on any of them. */
#include <cuda.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)
#define ALLOC_THREADS 16

typedef CUresult (*gpa_t)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);

static struct {
	CUresult (*init)(unsigned);
	CUresult (*deviceGet)(CUdevice *, int);
	CUresult (*retain)(CUcontext *, CUdevice);
	CUresult (*setCurrent)(CUcontext);
	CUresult (*alloc)(CUdeviceptr *, size_t);
	CUresult (*free)(CUdeviceptr);
	CUresult (*memset)(CUdeviceptr, unsigned char, size_t);
	CUresult (*info)(size_t *, size_t *);
	int (*pause)(const char *);
	int (*resume)(const char *);
	int (*snapshot)(const char *);
	int (*report)(const char *);
	int (*region_begin)(const char *);
	int (*region_end)(void);
} D;
static CUcontext CTX;
static atomic_int stop;
static atomic_long n_alloc, n_alloc_fail, n_pause, n_resume, n_status, n_set_fail;
static int seconds = 10;
static char report_path[512];

static void *proc(gpa_t gpa, const char *name, int ver)
{
	void *p = NULL;
	CUdriverProcAddressQueryResult st;
	if (gpa(name, &p, ver, CU_GET_PROC_ADDRESS_DEFAULT, &st) != CUDA_SUCCESS || !p) {
		fprintf(stderr, "tsan-stress: cuGetProcAddress(%s) failed\n", name);
		exit(2);
	}
	return p;
}

static void setup(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW);
	if (!h) {
		fprintf(stderr, "tsan-stress: %s\n", dlerror());
		exit(2);
	}
	gpa_t gpa = (gpa_t)dlsym(h, "cuGetProcAddress_v2");
	if (!gpa)
		exit(2);
	D.init = proc(gpa, "cuInit", 2000);
	D.deviceGet = proc(gpa, "cuDeviceGet", 2000);
	D.retain = proc(gpa, "cuDevicePrimaryCtxRetain", 7000);
	D.setCurrent = proc(gpa, "cuCtxSetCurrent", 4000);
	D.alloc = proc(gpa, "cuMemAlloc", 3020);
	D.free = proc(gpa, "cuMemFree", 3020);
	D.memset = proc(gpa, "cuMemsetD8", 3020);
	D.info = proc(gpa, "cuMemGetInfo", 3020);
	CUdevice dev;
	if (D.init(0) || D.deviceGet(&dev, 0) || D.retain(&CTX, dev) || D.setCurrent(CTX)) {
		fprintf(stderr, "tsan-stress: CUDA init on the fake failed\n");
		exit(2);
	}
	D.pause = dlsym(RTLD_DEFAULT, "msv_pause");
	D.resume = dlsym(RTLD_DEFAULT, "msv_resume");
	D.snapshot = dlsym(RTLD_DEFAULT, "msv_snapshot");
	D.report = dlsym(RTLD_DEFAULT, "msv_report_write");
	D.region_begin = dlsym(RTLD_DEFAULT, "msv_region_begin");
	D.region_end = dlsym(RTLD_DEFAULT, "msv_region_end");
	if (!D.pause || !D.resume || !D.snapshot || !D.report || !D.region_begin || !D.region_end) {
		fprintf(stderr, "tsan-stress: libmemsaver.so is not preloaded\n");
		exit(2);
	}
}

static unsigned rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void nap_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	nanosleep(&ts, NULL);
}

static void *alloc_thread(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 7919u + 1;
	CUdeviceptr live[8] = {0};
	D.setCurrent(CTX);
	while (!atomic_load(&stop)) {
		int slot = (int)(rnd(&seed) % 8);
		if (live[slot]) {
			D.free(live[slot]);
			live[slot] = 0;
			continue;
		}
		size_t size = (1 + rnd(&seed) % 6) * MiB - (rnd(&seed) % 2) * 4096;
		int kv = slot % 4 == 0;
		if (kv)
			D.region_begin("kv");
		CUresult r = D.alloc(&live[slot], size);
		if (kv)
			D.region_end();
		if (r != CUDA_SUCCESS) {
			live[slot] = 0;
			atomic_fetch_add(&n_alloc_fail, 1);
			continue;
		}
		atomic_fetch_add(&n_alloc, 1);
		/* Fails with ILLEGAL_ADDRESS when a pause released it meanwhile. */
		if (D.memset(live[slot], (unsigned char)slot, 4096) != CUDA_SUCCESS)
			atomic_fetch_add(&n_set_fail, 1);
	}
	for (int i = 0; i < 8; i++)
		if (live[i])
			D.free(live[i]);
	return NULL;
}

static void *pause_thread(void *arg)
{
	const char *tags = arg;
	unsigned seed = (unsigned)(uintptr_t)tags;
	while (!atomic_load(&stop)) {
		if (D.pause(tags) == 0)
			atomic_fetch_add(&n_pause, 1);
		nap_us(rnd(&seed) % 3000);
		if (D.resume(tags) == 0)
			atomic_fetch_add(&n_resume, 1);
		nap_us(rnd(&seed) % 3000);
	}
	return NULL;
}

/* One request on a fresh connection; 0 when the reply says ok. */
static int ctl(const char *path, const char *req)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	struct timeval tv = {30, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
		char buf[65536];
		size_t have = 0;
		ssize_t n;
		while (have < sizeof(buf) - 1 && (n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0) {
			have += (size_t)n;
			if (memchr(buf, '\n', have))
				break;
		}
		buf[have] = '\0';
		if (!memchr(buf, '\n', have)) {
			fprintf(stderr, "tsan-stress: no reply to %s", req);
			ok = -2;
		} else {
			ok = strstr(buf, "\"ok\":true") ? 0 : -1;
		}
	}
	if (fd >= 0)
		close(fd);
	return ok;
}

static char sock_path[512];
static atomic_int ctl_broken;

static void *socket_thread(void *arg)
{
	(void)arg;
	unsigned seed = 99;
	while (!atomic_load(&stop)) {
		unsigned k = rnd(&seed) % 4;
		const char *req = k == 0 ? "{\"cmd\":\"pause\",\"tags\":\"kv\"}\n" :
				  k == 1 ? "{\"cmd\":\"resume\"}\n" : "{\"cmd\":\"status\"}\n";
		int rc = ctl(sock_path, req);
		if (rc == -2)
			atomic_store(&ctl_broken, 1);
		if (k >= 2 && rc == 0)
			atomic_fetch_add(&n_status, 1);
		nap_us(rnd(&seed) % 2000);
	}
	return NULL;
}

static void *snapshot_thread(void *arg)
{
	(void)arg;
	for (int i = 0; !atomic_load(&stop); i++) {
		char label[32];
		snprintf(label, sizeof(label), "s%d", i);
		D.snapshot(label);
		if (i % 8 == 0)
			D.report(report_path);
		nap_us(5000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		seconds = atoi(argv[1]);
	const char *dir = getenv("MEMSAVER_SOCKET_DIR"), *sess = getenv("MEMSAVER_SESSION");
	const char *tmp = getenv("TSAN_STRESS_DIR");
	if (!dir || !sess || !tmp) {
		fprintf(stderr, "tsan-stress: set MEMSAVER_SOCKET_DIR, MEMSAVER_SESSION and TSAN_STRESS_DIR "
				"(tests/tsan/run.sh does)\n");
		return 2;
	}
	snprintf(report_path, sizeof(report_path), "%s/report.json", tmp);
	setup();
	size_t fr0, tot;
	D.info(&fr0, &tot);
	snprintf(sock_path, sizeof(sock_path), "%s/%s/memsaver-%d.sock", dir, sess, (int)getpid());
	for (int i = 0; i < 200 && access(sock_path, F_OK) != 0; i++)
		nap_us(10000);
	if (access(sock_path, F_OK) != 0) {
		fprintf(stderr, "tsan-stress: no control socket at %s\n", sock_path);
		return 2;
	}
	pthread_t th[ALLOC_THREADS + 4];
	int n = 0;
	for (int i = 0; i < ALLOC_THREADS; i++)
		pthread_create(&th[n++], NULL, alloc_thread, (void *)(uintptr_t)(i + 1));
	pthread_create(&th[n++], NULL, pause_thread, NULL);
	pthread_create(&th[n++], NULL, pause_thread, (void *)"weights");
	pthread_create(&th[n++], NULL, socket_thread, NULL);
	pthread_create(&th[n++], NULL, snapshot_thread, NULL);
	nap_us((long)seconds * 1000000);
	atomic_store(&stop, 1);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	/* Everything freed: whatever state the last pause left, resume it and
	 * the fake's used memory is the context's again. */
	D.resume(NULL);
	size_t fr1;
	D.info(&fr1, &tot);
	printf("tsan-stress: %ds, %d allocating threads: %ld allocations (%ld failed), %ld pauses, "
	       "%ld resumes, %ld status/ctl ok, %ld writes refused while paused\n",
	       seconds, ALLOC_THREADS, atomic_load(&n_alloc), atomic_load(&n_alloc_fail),
	       atomic_load(&n_pause), atomic_load(&n_resume), atomic_load(&n_status),
	       atomic_load(&n_set_fail));
	int bad = 0;
	if (fr1 != fr0) {
		fprintf(stderr, "tsan-stress: %lld bytes still used after every free (leak)\n",
			(long long)fr0 - (long long)fr1);
		bad = 1;
	}
	if (atomic_load(&ctl_broken)) {
		fprintf(stderr, "tsan-stress: a control request got no reply\n");
		bad = 1;
	}
	if (atomic_load(&n_alloc) == 0 || atomic_load(&n_pause) == 0) {
		fprintf(stderr, "tsan-stress: nothing was exercised\n");
		bad = 1;
	}
	return bad;
}
