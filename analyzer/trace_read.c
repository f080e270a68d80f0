/* Trace reader: bytes -> struct msv_trace, and records -> JSON for --dump.
 *
 * The writer appends with one write(2) per record (a string and its payload
 * in one), so a crash tears at most the last piece.  Anything that cannot be
 * the result of a torn append (bad header, unknown record type, out-of-order
 * string id) is an error, not a torn tail: such a file was not written by
 * memsaver, or was damaged in the middle, and a report from it would lie. */
#include "analyzer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tracer/categories.h"
#include "tracer/classify.h"

/* A string longer than this is not something the tracer writes. */
#define MAX_STRING (16u << 20)

static int grow_recs(struct msv_trace *t, size_t *cap)
{
	if (t->n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 1024;
	struct msv_rec *nr = realloc(t->recs, nc * sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	t->recs = nr;
	*cap = nc;
	return 0;
}

static int grow_strings(struct msv_trace *t, size_t *cap)
{
	if (t->n_strings < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 256;
	char **ns = realloc(t->strings, nc * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	t->strings = ns;
	*cap = nc;
	return 0;
}

int _msv_trace_parse(const void *buf, size_t len, const char *name, struct msv_trace **out,
		     char *err, size_t errlen)
{
	const unsigned char *b = buf;
	struct msv_trace *t = NULL;
	size_t rcap = 0, scap = 0;
	int rc = 0;

	if (err && errlen)
		err[0] = '\0';
	*out = NULL;
	if (!name)
		name = "trace";
	if (len < sizeof(struct msv_trace_header)) {
		snprintf(err, errlen,
			 "%s: offset 0: not a memsaver trace: %zu bytes, shorter than the %zu-byte header",
			 name, len, sizeof(struct msv_trace_header));
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	memcpy(&t->hdr, b, sizeof(t->hdr));
	snprintf(t->name, sizeof(t->name), "%s", name);
	if (memcmp(t->hdr.magic, MSV_TRACE_MAGIC, 8) != 0) {
		snprintf(err, errlen, "%s: offset 0: not a memsaver trace (magic is not \"%s\")", name,
			 MSV_TRACE_MAGIC);
		rc = -EINVAL;
		goto cleanup;
	}
	if (t->hdr.version != MSV_TRACE_VERSION) {
		snprintf(err, errlen,
			 "%s: offset 8: trace format version %u, this memsaver reads version %u",
			 name, t->hdr.version, MSV_TRACE_VERSION);
		rc = -EINVAL;
		goto cleanup;
	}
	if (t->hdr.rec_size != MSV_REC_SIZE) {
		snprintf(err, errlen, "%s: offset 12: record size %u, expected %u", name,
			 t->hdr.rec_size, MSV_REC_SIZE);
		rc = -EINVAL;
		goto cleanup;
	}
	/* strings[0] is the "no string" slot. */
	if ((rc = grow_strings(t, &scap)) != 0)
		goto cleanup;
	t->strings[0] = NULL;
	t->n_strings = 1;

	size_t off = sizeof(struct msv_trace_header);
	const char *torn = NULL;
	while (off < len) {
		struct msv_rec r;
		if (len - off < MSV_REC_SIZE) {
			torn = "a short record";
			break;
		}
		memcpy(&r, b + off, sizeof(r));
		if (r.type == MSV_REC_NONE) {
			torn = "a zero record";
			break;
		}
		if (r.type > MSV_REC_LAST) {
			snprintf(err, errlen, "%s: offset %zu: unknown record type %u", name, off,
				 r.type);
			rc = -EINVAL;
			goto cleanup;
		}
		if (r.type == MSV_REC_STRING) {
			if (r.addr != t->n_strings) {
				snprintf(err, errlen,
					 "%s: offset %zu: string id %llu out of order (expected %zu)",
					 name, off, (unsigned long long)r.addr, t->n_strings);
				rc = -EINVAL;
				goto cleanup;
			}
			if (r.size > MAX_STRING) {
				snprintf(err, errlen, "%s: offset %zu: string of %llu bytes", name,
					 off, (unsigned long long)r.size);
				rc = -EINVAL;
				goto cleanup;
			}
			size_t blocks = (r.size + MSV_REC_SIZE - 1) / MSV_REC_SIZE;
			if (len - off - MSV_REC_SIZE < blocks * MSV_REC_SIZE) {
				torn = "a string whose payload is cut";
				break;
			}
			char *s = malloc(r.size + 1);
			if (!s || grow_strings(t, &scap) != 0) {
				free(s);
				rc = -ENOMEM;
				goto cleanup;
			}
			memcpy(s, b + off + MSV_REC_SIZE, r.size);
			s[r.size] = '\0';
			t->strings[t->n_strings++] = s;
			off += MSV_REC_SIZE + blocks * MSV_REC_SIZE;
			continue;
		}
		if ((rc = grow_recs(t, &rcap)) != 0)
			goto cleanup;
		t->recs[t->n++] = r;
		off += MSV_REC_SIZE;
	}
	if (torn) {
		t->torn = 1;
		snprintf(err, errlen,
			 "%s: torn tail at byte offset %zu (%s); %zu records before it are used, "
			 "the last %zu bytes are ignored",
			 name, off, torn, t->n, len - off);
	}
	*out = t;
	return 0;
cleanup:
	_msv_trace_free(t);
	return rc;
}

int _msv_trace_load(const char *path, struct msv_trace **out, char *err, size_t errlen)
{
	int rc = 0;
	unsigned char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*out = NULL;
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
		goto cleanup;
	}
	buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (!buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory reading %lld bytes", path,
			 (long long)st.st_size);
		goto cleanup;
	}
	while (len < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + len, (size_t)st.st_size - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: read failed: %s", path, strerror(errno));
			goto cleanup;
		}
		if (k == 0)
			break;
		len += (size_t)k;
	}
	rc = _msv_trace_parse(buf, len, path, out, err, errlen);
cleanup:
	free(buf);
	close(fd);
	return rc;
}

void _msv_trace_free(struct msv_trace *t)
{
	if (!t)
		return;
	for (size_t i = 1; i < t->n_strings; i++)
		free(t->strings[i]);
	free(t->strings);
	free(t->recs);
	free(t);
}

const char *_msv_trace_string(const struct msv_trace *t, uint32_t id)
{
	if (!t || id == 0 || id >= t->n_strings)
		return NULL;
	return t->strings[id];
}

/* ---- --dump ------------------------------------------------------------ */

const char *_msv_share_kind_name(unsigned kind)
{
	static const char *const names[] = {
		[MSV_SHARE_RETAINED] = "retained", [MSV_SHARE_EXPORTED] = "exported",
		[MSV_SHARE_DMABUF] = "dmabuf", [MSV_SHARE_IPC_REFUSED] = "ipc_refused",
		[MSV_SHARE_ENDED] = "ended",
	};
	return kind < sizeof(names) / sizeof(names[0]) && names[kind] ? names[kind] : "?";
}

static const char *const type_names[] = {
	[MSV_REC_NONE] = "none",	     [MSV_REC_STRING] = "string",
	[MSV_REC_META] = "meta",	     [MSV_REC_ALLOC] = "alloc",
	[MSV_REC_FREE] = "free",	     [MSV_REC_VMM_CREATE] = "vmm_create",
	[MSV_REC_VMM_RELEASE] = "vmm_release", [MSV_REC_VMM_MAP] = "vmm_map",
	[MSV_REC_VMM_UNMAP] = "vmm_unmap",   [MSV_REC_PHASE] = "phase",
	[MSV_REC_DRIVER] = "driver",	     [MSV_REC_PAUSE] = "pause",
	[MSV_REC_RESUME] = "resume",	     [MSV_REC_WRAP_FAIL] = "wrap_fail",
	[MSV_REC_CONTEXT] = "context",	     [MSV_REC_SHARED] = "shared",
};

const char *_msv_rec_type_name(unsigned type)
{
	return type < sizeof(type_names) / sizeof(type_names[0]) ? type_names[type] : "?";
}

const char *_msv_meta_key_name(unsigned key)
{
	switch (key) {
	case MSV_META_CMDLINE: return "cmdline";
	case MSV_META_HOSTNAME: return "hostname";
	case MSV_META_POLICY: return "policy";
	case MSV_META_DEVICE_NAME: return "device_name";
	case MSV_META_DEVICE_TOTAL: return "device_total";
	case MSV_META_RANK: return "rank";
	case MSV_META_CUPTI: return "cupti";
	case MSV_META_GRANULARITY: return "granularity";
	case MSV_META_STAGING: return "staging";
	default: return "?";
	}
}

const char *_msv_driver_cause_name(unsigned cause)
{
	switch (cause) {
	case MSV_DRV_CONTEXT: return "context";
	case MSV_DRV_MODULES: return "modules";
	case MSV_DRV_GRAPH_EXEC: return "graph_exec";
	case MSV_DRV_LIBRARY: return "library";
	case MSV_DRV_UNOBSERVED: return "unobserved";
	case MSV_DRV_LAZY_LOAD: return "lazy_load";
	default: return "?";
	}
}

static const char *api_name(unsigned api)
{
	switch (api) {
	case MSV_API_MEM_ALLOC: return "cuMemAlloc";
	case MSV_API_MEM_ALLOC_PITCH: return "cuMemAllocPitch";
	case MSV_API_MEM_ALLOC_ASYNC: return "cuMemAllocAsync";
	case MSV_API_MEM_ALLOC_MANAGED: return "cuMemAllocManaged";
	case MSV_API_MEM_CREATE: return "cuMemCreate";
	case MSV_API_GRAPH_MEM_NODE: return "cuGraphAddMemAllocNode";
	case MSV_API_MEM_FREE: return "cuMemFree";
	case MSV_API_MEM_FREE_ASYNC: return "cuMemFreeAsync";
	default: return "unknown";
	}
}

static json_t *jstr_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *ju64(uint64_t v)
{
	return v == MSV_NO_VALUE ? json_null() : json_integer((json_int_t)v);
}

json_t *_msv_flags_json(unsigned flags)
{
	static const struct {
		unsigned bit;
		const char *name;
	} fl[] = {
		{MSV_F_WRAPPED, "wrapped"},   {MSV_F_WRAP_FAILED, "wrap_failed"},
		{MSV_F_CAPTURING, "capturing"}, {MSV_F_REGION, "region"},
		{MSV_F_FAILED, "failed"},     {MSV_F_CUPTI, "cupti"},
		{MSV_F_APP_VMM, "app_vmm"},
	};
	json_t *a = json_array();
	for (size_t i = 0; a && i < sizeof(fl) / sizeof(fl[0]); i++)
		if (flags & fl[i].bit)
			json_array_append_new(a, json_string(fl[i].name));
	return a;
}

json_t *_msv_mask_json(uint64_t mask)
{
	json_t *a = json_array();
	for (int c = 0; a && c < MSV_CAT_COUNT; c++)
		if (mask & (1ull << c))
			json_array_append_new(a, json_string(_msv_category_name(c)));
	return a;
}

json_t *_msv_trace_record_json(const struct msv_trace *t, const struct msv_rec *r)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "type", json_string(_msv_rec_type_name(r->type)));
	json_object_set_new(o, "t_ns", json_integer((json_int_t)(r->t_ns - t->hdr.start_mono_ns)));
	json_object_set_new(o, "tid", json_integer(r->tid));
	switch (r->type) {
	case MSV_REC_META:
		json_object_set_new(o, "key", json_string(_msv_meta_key_name(r->api)));
		switch (r->api) {
		case MSV_META_CMDLINE:
		case MSV_META_HOSTNAME:
		case MSV_META_POLICY:
			json_object_set_new(o, "value", jstr_or_null(_msv_trace_string(t, r->site)));
			break;
		case MSV_META_DEVICE_NAME:
			json_object_set_new(o, "value", jstr_or_null(_msv_trace_string(t, r->site)));
			json_object_set_new(o, "device", json_integer(r->device));
			break;
		case MSV_META_CUPTI:
			json_object_set_new(o, "value", json_integer((json_int_t)r->size));
			json_object_set_new(o, "why", jstr_or_null(_msv_trace_string(t, r->site)));
			break;
		default:
			json_object_set_new(o, "value", ju64(r->size));
			break;
		}
		break;
	case MSV_REC_ALLOC: {
		char rb[64];
		json_object_set_new(o, "addr", json_integer((json_int_t)r->addr));
		json_object_set_new(o, "size", json_integer((json_int_t)r->size));
		json_object_set_new(o, "mapped", json_integer((json_int_t)r->aux));
		json_object_set_new(o, "category", json_string(_msv_category_name(r->category)));
		json_object_set_new(o, "rule", json_integer(r->rule));
		json_object_set_new(o, "rule_text",
				    json_string(_msv_classify_rule_text(r->rule, rb, sizeof(rb))));
		json_object_set_new(o, "flags", _msv_flags_json(r->flags));
		json_object_set_new(o, "api", json_string(api_name(r->api)));
		json_object_set_new(o, "library", jstr_or_null(_msv_trace_string(t, r->site)));
		json_object_set_new(o, "python", jstr_or_null(_msv_trace_string(t, r->pysite)));
		json_object_set_new(o, "nvtx", jstr_or_null(_msv_trace_string(t, r->nvtx)));
		json_object_set_new(o, "stream", json_integer((json_int_t)r->aux2));
		json_object_set_new(o, "device", json_integer(r->device));
		break;
	}
	case MSV_REC_FREE:
	case MSV_REC_VMM_CREATE:
	case MSV_REC_VMM_RELEASE:
	case MSV_REC_VMM_UNMAP:
		json_object_set_new(o, r->type == MSV_REC_FREE || r->type == MSV_REC_VMM_UNMAP ?
					       "addr" : "handle",
				    json_integer((json_int_t)r->addr));
		json_object_set_new(o, "size", json_integer((json_int_t)r->size));
		if (r->type == MSV_REC_FREE)
			json_object_set_new(o, "api", json_string(api_name(r->api)));
		if (r->type == MSV_REC_VMM_CREATE) {
			json_object_set_new(o, "library", jstr_or_null(_msv_trace_string(t, r->site)));
			json_object_set_new(o, "python", jstr_or_null(_msv_trace_string(t, r->pysite)));
			json_object_set_new(o, "nvtx", jstr_or_null(_msv_trace_string(t, r->nvtx)));
		}
		break;
	case MSV_REC_VMM_MAP:
		json_object_set_new(o, "addr", json_integer((json_int_t)r->addr));
		json_object_set_new(o, "size", json_integer((json_int_t)r->size));
		json_object_set_new(o, "handle", json_integer((json_int_t)r->aux));
		break;
	case MSV_REC_PHASE:
		json_object_set_new(o, "label", jstr_or_null(_msv_trace_string(t, r->site)));
		json_object_set_new(o, "device_total_bytes", ju64(r->size));
		json_object_set_new(o, "device_used_bytes", ju64(r->aux));
		json_object_set_new(o, "process_used_bytes", ju64(r->aux2));
		break;
	case MSV_REC_DRIVER:
		json_object_set_new(o, "cause", json_string(_msv_driver_cause_name(r->api)));
		json_object_set_new(o, "bytes", json_integer((json_int_t)(int64_t)r->size));
		break;
	case MSV_REC_PAUSE:
	case MSV_REC_RESUME:
		json_object_set_new(o, "categories", _msv_mask_json(r->addr));
		json_object_set_new(o, "bytes", json_integer((json_int_t)r->size));
		json_object_set_new(o, "duration_ns", json_integer((json_int_t)r->aux));
		json_object_set_new(o, "copy_bytes", json_integer((json_int_t)r->aux2));
		json_object_set_new(o, "copy_us", json_integer(r->pysite));
		json_object_set_new(o, "failed", json_boolean(r->flags & MSV_F_FAILED));
		break;
	case MSV_REC_WRAP_FAIL:
		json_object_set_new(o, "addr", json_integer((json_int_t)r->addr));
		json_object_set_new(o, "size", json_integer((json_int_t)r->size));
		json_object_set_new(o, "cuda_result", json_integer((json_int_t)r->aux));
		json_object_set_new(o, "category", json_string(_msv_category_name(r->category)));
		break;
	case MSV_REC_CONTEXT:
		json_object_set_new(o, "action", json_string(r->api == 0 ? "trim" : "restore"));
		json_object_set_new(o, "bytes", json_integer((json_int_t)(int64_t)r->size));
		break;
	case MSV_REC_SHARED:
		json_object_set_new(o, "addr", json_integer((json_int_t)r->addr));
		json_object_set_new(o, "bytes", json_integer((json_int_t)r->size));
		json_object_set_new(o, "kind", json_string(_msv_share_kind_name(r->api)));
		json_object_set_new(o, "category", json_string(_msv_category_name(r->category)));
		break;
	default:
		break;
	}
	return o;
}
