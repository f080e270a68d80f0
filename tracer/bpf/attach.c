/* Loader: skeleton from bpftool (attach.skel.h), one uprobe and one
 * uretprobe per probed function, the function named by the cookie. */
#include "attach.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "attach.skel.h"
#include "tracer/trace_format.h"

enum shape { A12, PITCH, MAP };

/* The driver entry points the injected tracer records (tracer/cupti.c and
 * saver/ wrappers), by exported name.  The _ptsz forms are separate
 * exports; cuGetProcAddress hands out the same addresses. */
static const struct probe {
	const char *name;
	enum msv_bpf_kind kind;
	unsigned sub;
	enum shape shape;
} probes[] = {
	{"cuMemAlloc_v2", MSV_BPF_ALLOC, MSV_API_MEM_ALLOC, A12},
	{"cuMemAllocPitch_v2", MSV_BPF_ALLOC_PITCH, MSV_API_MEM_ALLOC_PITCH, PITCH},
	{"cuMemAllocAsync", MSV_BPF_ALLOC, MSV_API_MEM_ALLOC_ASYNC, A12},
	{"cuMemAllocAsync_ptsz", MSV_BPF_ALLOC, MSV_API_MEM_ALLOC_ASYNC, A12},
	{"cuMemAllocFromPoolAsync", MSV_BPF_ALLOC, MSV_API_MEM_ALLOC_ASYNC, A12},
	{"cuMemAllocFromPoolAsync_ptsz", MSV_BPF_ALLOC, MSV_API_MEM_ALLOC_ASYNC, A12},
	{"cuMemAllocManaged", MSV_BPF_ALLOC, MSV_API_MEM_ALLOC_MANAGED, A12},
	{"cuMemFree_v2", MSV_BPF_FREE, MSV_API_MEM_FREE, A12},
	{"cuMemFreeAsync", MSV_BPF_FREE, MSV_API_MEM_FREE_ASYNC, A12},
	{"cuMemFreeAsync_ptsz", MSV_BPF_FREE, MSV_API_MEM_FREE_ASYNC, A12},
	{"cuMemCreate", MSV_BPF_VMM_CREATE, MSV_API_MEM_CREATE, A12},
	{"cuMemRelease", MSV_BPF_VMM_RELEASE, MSV_API_MEM_CREATE, A12},
	{"cuMemMap", MSV_BPF_VMM_MAP, MSV_API_MEM_CREATE, MAP},
	{"cuMemUnmap", MSV_BPF_VMM_UNMAP, MSV_API_MEM_CREATE, A12},
	{"cuStreamBeginCapture_v2", MSV_BPF_CAPTURE_BEGIN, 0, A12},
	{"cuStreamBeginCapture_v2_ptsz", MSV_BPF_CAPTURE_BEGIN, 0, A12},
	{"cuStreamBeginCaptureToGraph", MSV_BPF_CAPTURE_BEGIN, 0, A12},
	{"cuStreamBeginCaptureToGraph_ptsz", MSV_BPF_CAPTURE_BEGIN, 0, A12},
	{"cuStreamEndCapture", MSV_BPF_CAPTURE_END, 0, A12},
	{"cuStreamEndCapture_ptsz", MSV_BPF_CAPTURE_END, 0, A12},
	{"cuGraphInstantiateWithFlags", MSV_BPF_MEASURE, MSV_DRV_GRAPH_EXEC, A12},
	{"cuGraphInstantiate_v2", MSV_BPF_MEASURE, MSV_DRV_GRAPH_EXEC, A12},
	{"cuGraphInstantiateWithParams", MSV_BPF_MEASURE, MSV_DRV_GRAPH_EXEC, A12},
	{"cuGraphInstantiateWithParams_ptsz", MSV_BPF_MEASURE, MSV_DRV_GRAPH_EXEC, A12},
	{"cuGraphUpload", MSV_BPF_MEASURE, MSV_DRV_GRAPH_EXEC, A12},
	{"cuGraphUpload_ptsz", MSV_BPF_MEASURE, MSV_DRV_GRAPH_EXEC, A12},
	{"cuModuleLoad", MSV_BPF_MEASURE, MSV_DRV_MODULES, A12},
	{"cuModuleLoadData", MSV_BPF_MEASURE, MSV_DRV_MODULES, A12},
	{"cuModuleLoadDataEx", MSV_BPF_MEASURE, MSV_DRV_MODULES, A12},
	{"cuModuleLoadFatBinary", MSV_BPF_MEASURE, MSV_DRV_MODULES, A12},
	{"cuLibraryLoadData", MSV_BPF_MEASURE, MSV_DRV_MODULES, A12},
	{"cuLibraryLoadFromFile", MSV_BPF_MEASURE, MSV_DRV_MODULES, A12},
	{"cuCtxCreate_v2", MSV_BPF_MEASURE, MSV_DRV_CONTEXT, A12},
	{"cuCtxCreate_v3", MSV_BPF_MEASURE, MSV_DRV_CONTEXT, A12},
	{"cuCtxCreate_v4", MSV_BPF_MEASURE, MSV_DRV_CONTEXT, A12},
	{"cuDevicePrimaryCtxRetain", MSV_BPF_MEASURE, MSV_DRV_CONTEXT, A12},
	{"cuCtxDestroy_v2", MSV_BPF_MEASURE, MSV_DRV_CONTEXT, A12},
	{"cuDevicePrimaryCtxRelease_v2", MSV_BPF_MEASURE, MSV_DRV_CONTEXT, A12},
};
#define N_PROBES (sizeof(probes) / sizeof(probes[0]))

struct msv_attach {
	struct attach_bpf *skel;
	struct ring_buffer *rb;
	struct bpf_link *links[2 * N_PROBES];
	unsigned n_links, probed, missing;
	msv_attach_cb cb;
	void *arg;
};

/* libbpf explains failures on stderr; the caller gets one line from us
 * instead, and MEMSAVER_LOG=debug shows libbpf's own. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	static int debug = -1;
	if (debug < 0) {
		const char *l = getenv("MEMSAVER_LOG");
		debug = l && strcmp(l, "debug") == 0;
	}
	if (!debug || level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

/* capget(2) directly: libcap is one more library the GPU machine lacks. */
static int has_cap(int c)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) != 0)
		return 0;
	return (d[c / 32].effective >> (c % 32)) & 1;
}

int _msv_attach_check(char *err, size_t errlen)
{
	if (access("/sys/bus/event_source/devices/uprobe/type", R_OK) != 0) {
		snprintf(err, errlen, "this kernel has no uprobe events "
				      "(/sys/bus/event_source/devices/uprobe is missing: CONFIG_UPROBE_EVENTS)");
		return -ENOSYS;
	}
	if (geteuid() != 0 && !(has_cap(CAP_SYS_ADMIN) || (has_cap(CAP_BPF) && has_cap(CAP_PERFMON)))) {
		snprintf(err, errlen, "loading BPF programs needs root, or CAP_BPF and CAP_PERFMON "
				      "(this process has %s%s)",
			 has_cap(CAP_BPF) ? "CAP_BPF but not CAP_PERFMON" : "no CAP_BPF",
			 has_cap(CAP_BPF) || has_cap(CAP_PERFMON) ? "" : " and no CAP_PERFMON");
		return -EPERM;
	}
	return 0;
}

static int on_event(void *ctx, void *data, size_t len)
{
	struct msv_attach *a = ctx;
	if (len >= sizeof(struct msv_bpf_event))
		a->cb(data, a->arg);
	return 0;
}

int _msv_attach_open(int pid, const char *lib, struct msv_attach **out, char *err, size_t errlen)
{
	int rc;
	*out = NULL;
	if ((rc = _msv_attach_check(err, errlen)) != 0)
		return rc;
	if (access(lib, R_OK) != 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot read %s: %s", lib, strerror(-rc));
		return rc;
	}
	libbpf_set_print(libbpf_print);
	struct msv_attach *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->skel = attach_bpf__open_and_load();
	if (!a->skel) {
		rc = -errno;
		snprintf(err, errlen, "loading the BPF programs failed: %s%s", strerror(-rc),
			 rc == -EPERM ? " (root, or CAP_BPF and CAP_PERFMON, and a permitted "
					"kernel.unprivileged_bpf_disabled / lockdown setting)" : "");
		goto cleanup;
	}
	for (size_t i = 0; i < N_PROBES; i++) {
		const struct probe *p = &probes[i];
		struct bpf_program *enter = p->shape == PITCH ? a->skel->progs.enter_pitch :
					    p->shape == MAP   ? a->skel->progs.enter_map :
								a->skel->progs.enter_a12;
		uint64_t cookie = (uint64_t)i << 16 | (uint64_t)p->kind << 8 | p->sub;
		LIBBPF_OPTS(bpf_uprobe_opts, in, .func_name = p->name, .bpf_cookie = cookie);
		struct bpf_link *l = bpf_program__attach_uprobe_opts(enter, pid, lib, 0, &in);
		if (!l) {
			rc = -errno;
			if (rc == -ENOENT || rc == -ESRCH) { /* not exported by this driver */
				a->missing++;
				continue;
			}
			snprintf(err, errlen, "attaching a uprobe to %s in %s failed: %s", p->name, lib,
				 strerror(-rc));
			goto cleanup;
		}
		a->links[a->n_links++] = l;
		LIBBPF_OPTS(bpf_uprobe_opts, ret, .func_name = p->name, .bpf_cookie = cookie,
			    .retprobe = true);
		l = bpf_program__attach_uprobe_opts(a->skel->progs.leave, pid, lib, 0, &ret);
		if (!l) {
			rc = -errno;
			snprintf(err, errlen, "attaching a uretprobe to %s in %s failed: %s", p->name, lib,
				 strerror(-rc));
			goto cleanup;
		}
		a->links[a->n_links++] = l;
		a->probed++;
	}
	if (!a->probed) {
		snprintf(err, errlen, "%s exports none of the driver functions memsaver probes "
				      "(is it libcuda.so.1?)", lib);
		rc = -ENOENT;
		goto cleanup;
	}
	a->rb = ring_buffer__new(bpf_map__fd(a->skel->maps.events), on_event, a, NULL);
	if (!a->rb) {
		rc = -errno;
		snprintf(err, errlen, "creating the BPF ring buffer failed: %s", strerror(-rc));
		goto cleanup;
	}
	*out = a;
	return 0;
cleanup:
	_msv_attach_free(a);
	return rc ? rc : -EIO;
}

int _msv_attach_poll(struct msv_attach *a, int timeout_ms, msv_attach_cb cb, void *arg)
{
	a->cb = cb;
	a->arg = arg;
	return ring_buffer__poll(a->rb, timeout_ms);
}

void _msv_attach_counts(const struct msv_attach *a, unsigned *probed, unsigned *missing,
			uint64_t *dropped)
{
	*probed = a->probed;
	*missing = a->missing;
	*dropped = 0;
	uint32_t k = 0;
	uint64_t v = 0;
	if (bpf_map__lookup_elem(a->skel->maps.dropped, &k, sizeof(k), &v, sizeof(v), 0) == 0)
		*dropped = v;
}

void _msv_attach_free(struct msv_attach *a)
{
	if (!a)
		return;
	ring_buffer__free(a->rb);
	for (unsigned i = 0; i < a->n_links; i++)
		bpf_link__destroy(a->links[i]);
	attach_bpf__destroy(a->skel);
	free(a);
}
