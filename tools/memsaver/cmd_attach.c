/* memsaver attach: observe a CUDA process that was started without memsaver.
 *
 * BPF uprobes on the target's libcuda.so.1 (tracer/bpf/) report its driver
 * calls; each becomes the same trace record the injected tracer writes
 * (tracer/trace_format.h), classified by the same policy code, so analyze,
 * report and diff read an attach trace like any other.  What attach cannot
 * see -- memory allocated before it, NVTX ranges, Python frames -- the
 * report names: the memory as the source "before_attach", sized by NVML's
 * per-process reading, and the rules that cannot match on stderr.
 *
 * Built only when clang, bpftool and libbpf-dev were present (MSV_HAVE_BPF);
 * otherwise the command says which build it needs. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/memsaver/commands.h"

static const char usage_text[] =
	"usage: memsaver attach PID [-p POLICY] [--duration S] [--trace PATH] [-o REPORT]\n"
	"\n"
	"Observe a running CUDA process that was started without memsaver: uprobes\n"
	"on its libcuda.so.1 record every allocation, free and app-owned VMM call\n"
	"from now on, classified by POLICY.  Ctrl-C, --duration or the end of the\n"
	"process stops it and writes the report.  Observe only: nothing is\n"
	"redirected, nothing can be paused.  Needs root, or CAP_BPF and CAP_PERFMON.\n"
	"\n"
	"  -p, --policy FILE    classification rules (docs/policy.md); rules on NVTX\n"
	"                       ranges or Python frames cannot match here (listed)\n"
	"  -d, --duration S     stop after S seconds (default: until Ctrl-C or exit)\n"
	"  -t, --trace PATH     write the binary event trace here (%p = PID)\n"
	"  -o, --report PATH    write the JSON report here (default: the table on stdout)\n"
	"      --lib PATH       the libcuda.so.1 to probe (default: the one PID has mapped;\n"
	"                       needed when PID has not loaded the driver yet)\n"
	"  -h, --help           this text\n"
	"\n"
	"What it cannot see: memory allocated before the attach (one source,\n"
	"\"before_attach\", sized from NVML's per-process reading when NVML lists the\n"
	"process), NVTX ranges and Python frames (rules on them do not apply), call\n"
	"sites beyond the driver's caller in code built without frame pointers.\n"
	"\n"
	"Overhead: two uprobe hits per probed driver call (allocations, frees, VMM,\n"
	"graph instantiation, module loads, contexts), none on kernel launches or\n"
	"copies; see docs/attach.md for the measured cost.\n"
	"\n"
	"Example:\n"
	"  $ sudo memsaver attach 4242 -p tools/policies/bench.json --duration 60 -o r.json\n"
	"  memsaver attach: pid 4242: 38 driver functions probed in /usr/lib/x86_64-linux-gnu/libcuda.so.1\n"
	"  memsaver attach: before attach: 12.41 GiB (NVML, per process)\n"
	"  memsaver attach: detached after 60.0 s: 214 allocations, 198 frees; report r.json\n";

static int usage(FILE *f, int rc)
{
	return _msv_usage(f, usage_text, "attach", rc);
}

#if !MSV_HAVE_BPF

int _msv_cmd_attach(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
		return usage(stdout, MSV_EXIT_OK);
	fprintf(stderr, "memsaver attach: this memsaver was built without BPF support; rebuild "
			"with clang, bpftool and libbpf-dev (static libbpf.a, libelf.a, libz.a) "
			"installed (`make` names what it lacked)\n");
	return MSV_EXIT_FAIL;
}

#else

#include <dlfcn.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "analyzer/analyzer.h"
#include "tracer/bpf/attach.h"
#include "tracer/classify.h"
#include "tracer/nvml_abi.h"
#include "tracer/options.h"
#include "tracer/policy.h"
#include "tracer/proc_cmdline.h"
#include "tracer/trace_writer.h"

/* ---- NVML, read from this process about the target ------------------- */


static struct {
	int (*count)(unsigned *);
	int (*by_index)(unsigned, nvmlDevice_t *);
	int (*mem)(nvmlDevice_t, nvmlMemory_t *);
	int (*procs)(nvmlDevice_t, unsigned *, nvmlProcessInfo_t *);
	int (*name)(nvmlDevice_t, char *, unsigned);
	int ok;
	char why[256];
} nvml;

static void nvml_open(void)
{
	void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(nvml.why, sizeof(nvml.why), "libnvidia-ml.so.1 cannot be loaded");
		return;
	}
	int (*init)(void) = (int (*)(void))dlsym(h, "nvmlInit_v2");
	nvml.count = (int (*)(unsigned *))dlsym(h, "nvmlDeviceGetCount_v2");
	nvml.by_index = (int (*)(unsigned, nvmlDevice_t *))dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
	nvml.mem = (int (*)(nvmlDevice_t, nvmlMemory_t *))dlsym(h, "nvmlDeviceGetMemoryInfo");
	nvml.procs = (int (*)(nvmlDevice_t, unsigned *, nvmlProcessInfo_t *))dlsym(
		h, "nvmlDeviceGetComputeRunningProcesses_v3");
	nvml.name = (int (*)(nvmlDevice_t, char *, unsigned))dlsym(h, "nvmlDeviceGetName");
	if (!init || !nvml.count || !nvml.by_index || !nvml.mem || !nvml.procs) {
		snprintf(nvml.why, sizeof(nvml.why), "libnvidia-ml.so.1 lacks the functions used");
		return;
	}
	int rc = init();
	if (rc != 0) {
		snprintf(nvml.why, sizeof(nvml.why), "nvmlInit_v2 returned %d", rc);
		return;
	}
	nvml.ok = 1;
}

/* The target's device (the first that lists it) and its readings.  The
 * figures are about the target only when NVML lists it; otherwise every
 * field is MSV_NO_VALUE (the fake driver's NVML sees only its own process). */
struct reading {
	int dev;
	uint64_t total, used, proc;
};

static void nvml_read(int pid, struct reading *r)
{
	r->dev = 0;
	r->total = r->used = r->proc = MSV_NO_VALUE;
	unsigned n = 0;
	if (!nvml.ok || nvml.count(&n) != 0)
		return;
	for (unsigned d = 0; d < n && d < 64; d++) {
		nvmlDevice_t h;
		nvmlProcessInfo_t info[128];
		unsigned np = 128;
		nvmlMemory_t m;
		if (nvml.by_index(d, &h) != 0 || nvml.procs(h, &np, info) != 0)
			continue;
		for (unsigned i = 0; i < np; i++) {
			if (info[i].pid != (unsigned)pid || nvml.mem(h, &m) != 0)
				continue;
			r->dev = (int)d;
			r->total = m.total;
			r->used = m.used;
			/* NVML says "not available" with all ones (under some MIG or
			 * container set-ups). */
			r->proc = info[i].usedGpuMemory == ~0ull ? MSV_NO_VALUE : info[i].usedGpuMemory;
			return;
		}
	}
}

/* ---- native call sites -------------------------------------------------- */

struct sym {
	uint64_t lo, hi;
	char *name;
};

struct object {
	char path[PATH_MAX];
	struct sym *syms; /* sorted by lo */
	size_t n;
	int loaded;
	/* file offset -> link-time address of the executable segment */
	uint64_t seg_off, seg_vaddr, seg_size;
};

struct mapping {
	uint64_t start, end, off;
	struct object *obj;
};

struct maps {
	int pid;
	struct mapping *m;
	size_t n;
	struct object **objs;
	size_t n_objs;
};

static int sym_cmp(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Function symbols (.symtab, else .dynsym) of one file, and where its
 * executable segment sits, read once with libelf. */
static void object_load(struct object *o)
{
	o->loaded = 1;
	int fd = open(o->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	size_t nph = 0;
	if (e && elf_getphdrnum(e, &nph) == 0) {
		for (size_t i = 0; i < nph; i++) {
			GElf_Phdr ph;
			if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X)) {
				o->seg_off = ph.p_offset;
				o->seg_vaddr = ph.p_vaddr;
				o->seg_size = ph.p_filesz;
				break;
			}
		}
	}
	for (int want = SHT_SYMTAB; e && want && !o->n; want = want == SHT_SYMTAB ? SHT_DYNSYM : 0) {
		Elf_Scn *scn = NULL;
		while ((scn = elf_nextscn(e, scn))) {
			GElf_Shdr sh;
			if (!gelf_getshdr(scn, &sh) || sh.sh_type != (unsigned)want || !sh.sh_entsize)
				continue;
			Elf_Data *data = elf_getdata(scn, NULL);
			size_t cnt = sh.sh_size / sh.sh_entsize;
			struct sym *s = data ? calloc(cnt ? cnt : 1, sizeof(*s)) : NULL;
			if (!s)
				continue;
			size_t k = 0;
			for (size_t i = 0; i < cnt; i++) {
				GElf_Sym gs;
				if (!gelf_getsym(data, (int)i, &gs) || GELF_ST_TYPE(gs.st_info) != STT_FUNC ||
				    !gs.st_value)
					continue;
				const char *nm = elf_strptr(e, sh.sh_link, gs.st_name);
				if (!nm || !*nm || !(s[k].name = strdup(nm)))
					continue;
				s[k].lo = gs.st_value;
				s[k].hi = gs.st_value + (gs.st_size ? gs.st_size : 1);
				k++;
			}
			qsort(s, k, sizeof(*s), sym_cmp);
			o->syms = s;
			o->n = k;
			break;
		}
	}
	if (e)
		elf_end(e);
	close(fd);
}

static const char *object_symbol(struct object *o, uint64_t file_off, uint64_t *delta)
{
	if (!o->loaded)
		object_load(o);
	if (!o->n || file_off < o->seg_off || file_off >= o->seg_off + o->seg_size)
		return NULL;
	uint64_t va = file_off - o->seg_off + o->seg_vaddr;
	size_t lo = 0, hi = o->n;
	while (lo < hi) { /* last symbol starting at or below va */
		size_t mid = (lo + hi) / 2;
		if (o->syms[mid].lo <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || va >= o->syms[lo - 1].hi)
		return NULL;
	*delta = va - o->syms[lo - 1].lo;
	return o->syms[lo - 1].name;
}

static struct object *object_get(struct maps *mp, const char *path)
{
	for (size_t i = 0; i < mp->n_objs; i++)
		if (strcmp(mp->objs[i]->path, path) == 0)
			return mp->objs[i];
	struct object **v = realloc(mp->objs, (mp->n_objs + 1) * sizeof(*v));
	struct object *o = calloc(1, sizeof(*o));
	if (v)
		mp->objs = v;
	if (!v || !o) {
		free(o);
		return NULL;
	}
	snprintf(o->path, sizeof(o->path), "%s", path);
	mp->objs[mp->n_objs++] = o;
	return o;
}

/* Executable file mappings of the target, re-read when an address is not in
 * them (a library loaded after the last read). */
static int maps_read(struct maps *mp)
{
	char p[64], line[PATH_MAX + 128];
	snprintf(p, sizeof(p), "/proc/%d/maps", mp->pid);
	FILE *f = fopen(p, "re");
	if (!f)
		return -errno;
	mp->n = 0;
	size_t cap = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, e, off;
		char perms[8], path[PATH_MAX];
		path[0] = '\0';
		if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %4095[^\n]", &s, &e, perms, &off, path) < 4 ||
		    perms[2] != 'x' || path[0] != '/')
			continue;
		if (mp->n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct mapping *v = realloc(mp->m, nc * sizeof(*v));
			if (!v)
				break;
			mp->m = v;
			cap = nc;
		}
		struct object *o = object_get(mp, path);
		if (o)
			mp->m[mp->n++] = (struct mapping){s, e, off, o};
	}
	fclose(f);
	return 0;
}

static struct mapping *maps_find(struct maps *mp, uint64_t addr, int reread)
{
	for (size_t i = 0; i < mp->n; i++)
		if (addr >= mp->m[i].start && addr < mp->m[i].end)
			return &mp->m[i];
	if (reread && maps_read(mp) == 0)
		return maps_find(mp, addr, 0);
	return NULL;
}

static void maps_free(struct maps *mp)
{
	for (size_t i = 0; i < mp->n_objs; i++) {
		for (size_t k = 0; k < mp->objs[i]->n; k++)
			free(mp->objs[i]->syms[k].name);
		free(mp->objs[i]->syms);
		free(mp->objs[i]);
	}
	free(mp->objs);
	free(mp->m);
}

/* Objects between the application and the driver (tracer/callsite.c's list). */
static int between(const char *base)
{
	static const char *const skip[] = {"libcuda.so", "libcudart.so", "libcupti.so",
					   "libnvidia-ml.so"};
	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		if (strncmp(base, skip[i], strlen(skip[i])) == 0)
			return 1;
	return 0;
}

/* The first frame outside CUDA's own libraries: its library's basename (what
 * library rules match) and "basename:function+0xN" (what the report shows). */
static void callsite(struct maps *mp, const struct msv_bpf_event *e, char *lib, size_t llen,
		     char *site, size_t slen)
{
	lib[0] = site[0] = '\0';
	for (unsigned i = 0; i < e->nframes && i < MSV_BPF_STACK_DEPTH; i++) {
		uint64_t pc = e->stack[i];
		if (!pc)
			continue;
		struct mapping *m = maps_find(mp, pc, 1);
		if (!m)
			continue;
		const char *base = strrchr(m->obj->path, '/');
		base = base ? base + 1 : m->obj->path;
		if (between(base))
			continue;
		snprintf(lib, llen, "%.200s", base);
		uint64_t delta = 0;
		/* pc - 1: a return address points after the call. */
		const char *fn = object_symbol(m->obj, pc - 1 - m->start + m->off, &delta);
		if (fn)
			snprintf(site, slen, "%.200s:%.280s+0x%llx", base, fn, (unsigned long long)delta + 1);
		else
			snprintf(site, slen, "%.200s", base);
		return;
	}
}

/* ---- the session -------------------------------------------------------- */

static volatile sig_atomic_t stop_sig;

static void on_stop(int sig)
{
	stop_sig = sig;
}

struct measure {
	uint32_t tid;
	uint8_t cause;
	uint64_t proc, allocated;
};

struct session {
	int pid;
	struct msv_trace_writer *w;
	struct msv_policy *policy;
	struct maps maps;
	int dev;
	int nvml_sees;     /* NVML lists the target: readings are about it */
	uint64_t allocated; /* bytes of the allocations and VMM handles recorded */
	uint64_t n_alloc, n_free, n_vmm, n_drv;
	struct measure open[64]; /* measured calls in flight, by thread */
};

static void meta_str(struct session *s, int key, const char *v)
{
	struct msv_rec r = {.type = MSV_REC_META, .api = (uint8_t)key};
	r.site = _msv_trace_intern(s->w, v);
	_msv_trace_append(s->w, &r);
}

static void meta_num(struct session *s, int key, uint64_t v, int dev)
{
	struct msv_rec r = {.type = MSV_REC_META, .api = (uint8_t)key, .size = v, .device = (uint8_t)dev};
	_msv_trace_append(s->w, &r);
}

/* A reading as a phase record: used = device bytes used by every process. */
static void phase(struct session *s, const char *label, const struct reading *rd, uint64_t used)
{
	struct msv_rec r = {.type = MSV_REC_PHASE, .size = rd->total, .aux = used, .aux2 = rd->proc,
			    .device = (uint8_t)s->dev};
	r.site = _msv_trace_intern(s->w, label);
	_msv_trace_append(s->w, &r);
}

static void on_measure(struct session *s, const struct msv_bpf_event *e)
{
	struct measure *slot = NULL;
	for (size_t i = 0; i < sizeof(s->open) / sizeof(s->open[0]); i++) {
		struct measure *m = &s->open[i];
		if (m->tid == e->tid && m->cause == e->sub) {
			slot = m;
			break;
		}
		if (!slot && !m->tid && (e->flags & MSV_BPF_EV_ENTRY))
			slot = m;
	}
	if (!slot || !s->nvml_sees)
		return;
	struct reading rd;
	nvml_read(s->pid, &rd);
	if (e->flags & MSV_BPF_EV_ENTRY) {
		*slot = (struct measure){e->tid, e->sub, rd.proc, s->allocated};
		return;
	}
	if (e->rc == 0 && rd.proc != MSV_NO_VALUE && slot->proc != MSV_NO_VALUE) {
		struct msv_rec r = {.type = MSV_REC_DRIVER, .api = e->sub, .t_ns = e->t_ns, .tid = e->tid,
				    .size = (uint64_t)((int64_t)(rd.proc - slot->proc) -
						       (int64_t)(s->allocated - slot->allocated))};
		_msv_trace_append(s->w, &r);
		s->n_drv++;
	}
	slot->tid = 0;
}

static void on_event(const struct msv_bpf_event *e, void *arg)
{
	struct session *s = arg;
	struct msv_rec r = {.t_ns = e->t_ns, .tid = e->tid, .api = e->sub, .device = (uint8_t)s->dev};
	switch (e->kind) {
	case MSV_BPF_ALLOC:
	case MSV_BPF_ALLOC_PITCH: {
		if (e->rc != 0 || !e->addr)
			return;
		char lib[256], site[512];
		callsite(&s->maps, e, lib, sizeof(lib), site, sizeof(site));
		struct msv_site cs = {.library = lib[0] ? lib : NULL,
				      .capturing = (e->flags & MSV_BPF_EV_CAPTURING) != 0,
				      .bytes = e->size, .region = -1};
		enum msv_reason why;
		int rule;
		r.type = MSV_REC_ALLOC;
		r.category = (uint8_t)_msv_classify(s->policy, &cs, &why, &rule);
		r.rule = _msv_classify_rule_code(why, rule);
		r.flags = cs.capturing ? MSV_F_CAPTURING : 0;
		r.addr = e->addr;
		r.size = e->size;
		r.site = _msv_trace_intern(s->w, site);
		s->allocated += e->size;
		s->n_alloc++;
		break;
	}
	case MSV_BPF_FREE:
		if (e->rc != 0 || !e->addr)
			return;
		r.type = MSV_REC_FREE;
		r.addr = e->addr;
		s->n_free++;
		break;
	case MSV_BPF_VMM_CREATE:
		if (e->rc != 0)
			return;
		r.type = MSV_REC_VMM_CREATE;
		r.addr = e->addr;
		r.size = e->size;
		s->allocated += e->size;
		s->n_vmm++;
		break;
	case MSV_BPF_VMM_RELEASE:
	case MSV_BPF_VMM_MAP:
	case MSV_BPF_VMM_UNMAP:
		if (e->rc != 0)
			return;
		r.type = e->kind == MSV_BPF_VMM_RELEASE ? MSV_REC_VMM_RELEASE :
			 e->kind == MSV_BPF_VMM_MAP     ? MSV_REC_VMM_MAP :
							  MSV_REC_VMM_UNMAP;
		r.addr = e->addr;
		r.size = e->kind == MSV_BPF_VMM_RELEASE ? 0 : e->size;
		r.aux = e->aux;
		break;
	case MSV_BPF_MEASURE:
		on_measure(s, e);
		return;
	default:
		return;
	}
	_msv_trace_append(s->w, &r);
}

/* The target's libcuda.so*, as the path this process can open. */
static int find_libcuda(int pid, char *out, size_t len)
{
	char p[64], line[PATH_MAX + 128];
	snprintf(p, sizeof(p), "/proc/%d/maps", pid);
	FILE *f = fopen(p, "re");
	if (!f)
		return -errno;
	int rc = -ENOENT;
	while (rc && fgets(line, sizeof(line), f)) {
		char path[PATH_MAX];
		if (sscanf(line, "%*s %*s %*s %*s %*s %4095[^\n]", path) != 1)
			continue;
		const char *base = strrchr(path, '/');
		if (!base || strncmp(base + 1, "libcuda.so", 10) != 0)
			continue;
		/* Through /proc/PID/root: the target may live in another mount
		 * namespace (a container). */
		snprintf(out, len, "/proc/%d/root%s", pid, path);
		if (access(out, R_OK) != 0)
			snprintf(out, len, "%s", path);
		rc = 0;
	}
	fclose(f);
	return rc;
}

/* Gone or a zombie: a zombie still answers kill(pid, 0). */
static int target_alive(int pid)
{
	char p[64], buf[512];
	snprintf(p, sizeof(p), "/proc/%d/stat", pid);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Rules on what attach cannot see never match: say which, once. */
static void unmatchable_rules(const struct msv_policy *p)
{
	size_t n = _msv_policy_rule_count(p);
	for (size_t i = 0; i < n; i++) {
		const struct msv_rule *r = _msv_policy_rule(p, i);
		if (r->python || r->nvtx)
			fprintf(stderr, "memsaver attach: rule %zu (line %lld) matches on %s%s%s: attach "
					"cannot see %s, so it never matches here\n",
				i, (long long)r->line, r->python ? "Python frames" : "",
				r->python && r->nvtx ? " and " : "", r->nvtx ? "NVTX ranges" : "",
				r->python && r->nvtx ? "either" : r->python ? "Python frames" : "NVTX ranges");
	}
}

static int write_report(struct session *s, const char *out)
{
	void *buf = NULL;
	size_t len = 0;
	struct msv_trace *t = NULL;
	json_t *rep = NULL;
	char err[512];
	int rc = MSV_EXIT_FAIL;
	FILE *f = NULL;
	if (_msv_trace_copy(s->w, &buf, &len) != 0 ||
	    _msv_trace_parse(buf, len, "attach", &t, err, sizeof(err)) != 0) {
		fprintf(stderr, "memsaver attach: cannot read back the trace: %s\n", err);
		goto cleanup;
	}
	if (!(rep = _msv_report_build(t))) {
		fprintf(stderr, "memsaver attach: out of memory building the report\n");
		goto cleanup;
	}
	f = out ? fopen(out, "w") : stdout;
	if (!f) {
		fprintf(stderr, "memsaver attach: cannot create %s: %s\n", out, strerror(errno));
		goto cleanup;
	}
	int bad = out ? json_dumpf(rep, f, JSON_INDENT(2)) != 0 || fputc('\n', f) == EOF :
			_msv_render_text(rep, f) != 0;
	bad |= out ? fclose(f) != 0 : fflush(f) != 0;
	if (bad) {
		fprintf(stderr, "memsaver attach: cannot write %s: %s\n", out ? out : "stdout",
			strerror(errno));
		goto cleanup;
	}
	rc = MSV_EXIT_OK;
cleanup:
	json_decref(rep);
	_msv_trace_free(t);
	free(buf);
	return rc;
}

static int attach(struct session *s, const char *lib, double duration, const char *trace,
		  const char *out)
{
	char err[512], fmt[32];
	struct msv_attach *a = NULL;
	int rc = MSV_EXIT_FAIL;
	if (_msv_trace_writer_new(trace, s->pid, &s->w) != 0) {
		fprintf(stderr, "memsaver attach: cannot create %s: %s\n", trace ? trace : "the trace",
			strerror(errno));
		goto cleanup;
	}
	int arc = _msv_attach_open(s->pid, lib, &a, err, sizeof(err));
	if (arc != 0) {
		fprintf(stderr, "memsaver attach: %s\n", err);
		goto cleanup;
	}
	/* Readings right after the probes are in: what NVML shows now existed
	 * before the first event the trace can hold. */
	nvml_open();
	struct reading rd;
	nvml_read(s->pid, &rd);
	s->nvml_sees = rd.proc != MSV_NO_VALUE;
	s->dev = rd.dev;
	char cmd[2048], host[256] = "";
	_msv_proc_cmdline(s->pid, cmd, sizeof(cmd));
	gethostname(host, sizeof(host) - 1);
	meta_str(s, MSV_META_CMDLINE, cmd);
	meta_str(s, MSV_META_HOSTNAME, host);
	json_t *pj = _msv_policy_to_json(s->policy);
	char *ptext = pj ? json_dumps(pj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	meta_str(s, MSV_META_POLICY, ptext ? ptext : "{}");
	free(ptext);
	json_decref(pj);
	{
		struct msv_rec c = {.type = MSV_REC_META, .api = MSV_META_CUPTI, .size = 0};
		c.site = _msv_trace_intern(s->w, "memsaver attach: BPF uprobes on libcuda.so.1, no CUPTI");
		_msv_trace_append(s->w, &c);
	}
	if (s->nvml_sees) {
		char name[96] = "";
		nvmlDevice_t h;
		if (nvml.name && nvml.by_index((unsigned)s->dev, &h) == 0)
			nvml.name(h, name, sizeof(name));
		if (name[0]) {
			struct msv_rec n = {.type = MSV_REC_META, .api = MSV_META_DEVICE_NAME,
					    .device = (uint8_t)s->dev};
			n.site = _msv_trace_intern(s->w, name);
			_msv_trace_append(s->w, &n);
		}
		meta_num(s, MSV_META_DEVICE_TOTAL, rd.total, s->dev);
	}
	/* The baseline is the device's memory used by everyone else, so the
	 * footprint is this process's alone. */
	uint64_t others = s->nvml_sees && rd.used != MSV_NO_VALUE ? rd.used - rd.proc : MSV_NO_VALUE;
	phase(s, "baseline", &rd, others);
	phase(s, "attach", &rd, rd.used);
	unsigned probed, missing;
	uint64_t dropped;
	_msv_attach_counts(a, &probed, &missing, &dropped);
	fprintf(stderr, "memsaver attach: pid %d: %u driver functions probed in %s (%u not exported)\n",
		s->pid, probed, lib, missing);
	if (s->nvml_sees)
		fprintf(stderr, "memsaver attach: before attach: %s (NVML, per process)\n",
			_msv_fmt_bytes((long long)rd.proc, fmt, sizeof(fmt)));
	else
		fprintf(stderr, "memsaver attach: before attach: unknown (%s)\n",
			nvml.ok ? "NVML does not list this process" : nvml.why);
	double t0 = now_s();
	int gone = 0;
	while (!stop_sig) {
		double left = duration > 0 ? duration - (now_s() - t0) : 100;
		if (left <= 0)
			break;
		int n = _msv_attach_poll(a, left < 0.1 ? (int)(left * 1000) + 1 : 100, on_event, s);
		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "memsaver attach: reading the BPF ring buffer failed: %s\n",
				strerror(-n));
			break;
		}
		if (!target_alive(s->pid)) {
			gone = 1;
			break;
		}
	}
	/* Whatever the probes sent before we stopped. */
	while (_msv_attach_poll(a, 0, on_event, s) > 0)
		;
	_msv_attach_counts(a, &probed, &missing, &dropped);
	if (dropped)
		fprintf(stderr, "memsaver attach: %llu events were lost (ring buffer full); the trace "
				"misses them\n", (unsigned long long)dropped);
	nvml_read(s->pid, &rd);
	if (!s->nvml_sees)
		rd.total = rd.used = rd.proc = MSV_NO_VALUE;
	phase(s, gone ? "exit" : "detach", &rd, rd.used);
	rc = write_report(s, out);
	fprintf(stderr, "memsaver attach: %s after %.1f s: %llu allocations, %llu frees, %llu VMM "
			"handles%s%s%s%s\n",
		gone ? "process exited" : "detached", now_s() - t0, (unsigned long long)s->n_alloc,
		(unsigned long long)s->n_free, (unsigned long long)s->n_vmm, trace ? "; trace " : "",
		trace ? trace : "", out ? "; report " : "", out ? out : "");
cleanup:
	_msv_attach_free(a);
	_msv_trace_writer_free(s->w);
	return rc;
}

int _msv_cmd_attach(int argc, char **argv)
{
	static const struct option opts[] = {
		{"policy", required_argument, NULL, 'p'},
		{"duration", required_argument, NULL, 'd'},
		{"trace", required_argument, NULL, 't'},
		{"report", required_argument, NULL, 'o'},
		{"lib", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *policy = NULL, *trace = NULL, *out = NULL, *lib = NULL;
	double duration = 0;
	char *end;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "p:d:t:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': policy = optarg; break;
		case 't': trace = optarg; break;
		case 'o': out = optarg; break;
		case 'L': lib = optarg; break;
		case 'd':
			duration = strtod(optarg, &end);
			if (*end || duration <= 0) {
				fprintf(stderr, "memsaver attach: --duration wants seconds > 0 (got \"%s\")\n",
					optarg);
				return MSV_EXIT_USAGE;
			}
			break;
		case 'h': return usage(stdout, MSV_EXIT_OK);
		default: return usage(stderr, MSV_EXIT_USAGE);
		}
	}
	if (optind != argc - 1)
		return usage(stderr, MSV_EXIT_USAGE);
	long pid = strtol(argv[optind], &end, 10);
	if (*end || pid <= 0 || pid > INT_MAX) {
		fprintf(stderr, "memsaver attach: \"%s\" is not a process id\n", argv[optind]);
		return MSV_EXIT_USAGE;
	}
	if (!target_alive((int)pid)) {
		fprintf(stderr, "memsaver attach: no process %ld\n", pid);
		return MSV_EXIT_FAIL;
	}
	char err[1024], libpath[PATH_MAX + 32];
	if ((c = _msv_attach_check(err, sizeof(err))) != 0) {
		fprintf(stderr, "memsaver attach: %s\n", err);
		return MSV_EXIT_FAIL;
	}
	if (!lib) {
		if (find_libcuda((int)pid, libpath, sizeof(libpath)) != 0) {
			fprintf(stderr, "memsaver attach: process %ld has not loaded libcuda.so.1 (yet); "
					"name the driver with --lib to attach before it does\n", pid);
			return MSV_EXIT_FAIL;
		}
		lib = libpath;
	}
	struct session s = {.pid = (int)pid, .maps = {.pid = (int)pid}};
	if (policy) {
		if (_msv_policy_load(policy, &s.policy, err, sizeof(err)) != 0) {
			fprintf(stderr, "memsaver attach: %s\n", err);
			return MSV_EXIT_USAGE;
		}
		unmatchable_rules(s.policy);
	} else if (!(s.policy = _msv_policy_default())) {
		fprintf(stderr, "memsaver attach: out of memory\n");
		return MSV_EXIT_FAIL;
	}
	char tpath[PATH_MAX];
	if (trace && _msv_expand_path(trace, (int)pid, tpath, sizeof(tpath)) != 0) {
		fprintf(stderr, "memsaver attach: trace path too long: %s\n", trace);
		_msv_policy_free(s.policy);
		return MSV_EXIT_USAGE;
	}
	elf_version(EV_CURRENT);
	struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART: the poll returns */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	maps_read(&s.maps);
	int rc = attach(&s, lib, duration, trace ? tpath : NULL, out);
	maps_free(&s.maps);
	_msv_policy_free(s.policy);
	return rc;
}

#endif
