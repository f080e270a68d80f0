/* The trace file: the record that crosses tracer -> file -> analyzer.
 *
 * Layout: one struct msv_trace_header, then a stream of 64-byte
 * struct msv_rec.  A MSV_REC_STRING record is followed by
 * ceil(size / 64) blocks holding the string bytes (no terminating NUL,
 * zero padded); every other record stands alone.  Strings get ids in order
 * of appearance starting at 1; id 0 means "no string".
 *
 * The file is append-only and written record by record, so a crash leaves at
 * most one torn record (a short block, a zero type, or a string whose payload
 * is cut).  Readers stop there with a warning; everything before it is valid.
 *
 * Little-endian, fixed-width fields, no pointers.  Bump MSV_TRACE_VERSION on
 * any incompatible change.  Category and action numbers come from
 * tracer/categories.h. */
#ifndef MSV_TRACE_FORMAT_H
#define MSV_TRACE_FORMAT_H

#include <stdint.h>

#define MSV_TRACE_MAGIC "MSVTRACE"
#define MSV_TRACE_VERSION 1u
#define MSV_REC_SIZE 64u
#define MSV_NO_VALUE UINT64_MAX /* a reading or number that is unknown */

struct msv_trace_header {
	char magic[8];     /* MSV_TRACE_MAGIC, no NUL */
	uint32_t version;  /* MSV_TRACE_VERSION */
	uint32_t rec_size; /* MSV_REC_SIZE */
	uint64_t start_realtime_ns; /* CLOCK_REALTIME when the trace began */
	uint64_t start_mono_ns;     /* CLOCK_MONOTONIC at the same instant */
	uint32_t pid;
	uint32_t reserved;
	uint8_t pad[24];
};

enum msv_rec_type {
	MSV_REC_NONE = 0,   /* never written: a zero block is a torn tail */
	MSV_REC_STRING = 1, /* id = .addr; .size = byte length; payload follows */
	MSV_REC_META = 2,   /* .api = enum msv_meta_key; value in .size or string .site */
	MSV_REC_ALLOC = 3,  /* a device allocation (cuMemAlloc family or redirected) */
	MSV_REC_FREE = 4,   /* .addr freed; .size = bytes of the allocation */
	MSV_REC_VMM_CREATE = 5,  /* app-owned cuMemCreate: .addr = handle, .size */
	MSV_REC_VMM_RELEASE = 6, /* app-owned cuMemRelease: .addr = handle */
	MSV_REC_VMM_MAP = 7,     /* app-owned cuMemMap: .addr = va, .size, .aux = handle */
	MSV_REC_VMM_UNMAP = 8,   /* app-owned cuMemUnmap: .addr = va, .size */
	MSV_REC_PHASE = 9,  /* phase marker: .site = label, readings as MSV_REC_READING */
	MSV_REC_DRIVER = 10, /* driver-internal delta: .api = enum msv_driver_cause,
	                        .size = bytes (int64 stored as two's complement) */
	MSV_REC_PAUSE = 11,  /* .addr = category mask, .size = bytes released,
	                        .aux = duration ns, .aux2 = bytes backed up (copied),
	                        .pysite = backup copy time in us, .site = backup KiB
	                        skipped as unchanged since the last backup, flags MSV_F_FAILED */
	MSV_REC_RESUME = 12, /* .addr = category mask, .size = bytes restored,
	                        .aux = duration ns, .aux2 = bytes restored from backup,
	                        .pysite = restore copy time in us, flags MSV_F_FAILED */
	MSV_REC_WRAP_FAIL = 13, /* redirect of .addr failed, fell back: .aux = CUresult */
	MSV_REC_CONTEXT = 14,   /* context trim: .size = bytes trimmed (int64),
	                           .api = 0 trim on pause / 1 restore on resume */
	MSV_REC_SHARED = 15,    /* wrapped memory shared outside memsaver (saver/shared.c):
	                           .addr = region, .size = its mapped bytes, .category,
	                           .api = enum msv_share_kind, call site in .site/.pysite/.nvtx */
	MSV_REC_LAST = MSV_REC_SHARED
};

enum msv_share_kind {
	MSV_SHARE_RETAINED = 1,    /* cuMemRetainAllocationHandle (NCCL buffer registration) */
	MSV_SHARE_EXPORTED = 2,    /* cuMemExportToShareableHandle: another process may import it */
	MSV_SHARE_DMABUF = 3,      /* cuMemGetHandleForAddressRange (NIC, RDMA) */
	MSV_SHARE_IPC_REFUSED = 4, /* cuIpcGetMemHandle refused: legacy IPC cannot share VMM memory */
	MSV_SHARE_ENDED = 5,       /* the last retained handle was released: releasable again */
};

/* MSV_REC_PHASE and readings: .size = device total bytes,
 * .aux = device used bytes (total - free from cuMemGetInfo, or NVML),
 * .aux2 = this process's used bytes from NVML or MSV_NO_VALUE. */

enum msv_meta_key {
	MSV_META_CMDLINE = 1,     /* .site = string */
	MSV_META_HOSTNAME = 2,    /* .site = string */
	MSV_META_POLICY = 3,      /* .site = string: effective policy as JSON */
	MSV_META_DEVICE_NAME = 4, /* .site = string, .device = index */
	MSV_META_DEVICE_TOTAL = 5,/* .size = bytes */
	MSV_META_RANK = 6,        /* .size = rank */
	MSV_META_CUPTI = 7,       /* .size = 1 attached, 0 not; .site = why not */
	MSV_META_GRANULARITY = 8, /* .size = VMM granularity in bytes */
	MSV_META_STAGING = 9,     /* .size = host bytes the backups hold (after each pause) */
};

enum msv_api {
	MSV_API_UNKNOWN = 0,
	MSV_API_MEM_ALLOC = 1,       /* cuMemAlloc_v2 */
	MSV_API_MEM_ALLOC_PITCH = 2, /* cuMemAllocPitch_v2 */
	MSV_API_MEM_ALLOC_ASYNC = 3, /* cuMemAllocAsync(_ptsz), cuMemAllocFromPoolAsync */
	MSV_API_MEM_ALLOC_MANAGED = 4,
	MSV_API_MEM_CREATE = 5,      /* app-owned VMM */
	MSV_API_GRAPH_MEM_NODE = 6,  /* cuGraphAddMemAllocNode */
	MSV_API_MEM_FREE = 7,
	MSV_API_MEM_FREE_ASYNC = 8,
};

enum msv_driver_cause {
	MSV_DRV_CONTEXT = 1,    /* context creation */
	MSV_DRV_MODULES = 2,    /* module / library loading */
	MSV_DRV_GRAPH_EXEC = 3, /* graph instantiation */
	MSV_DRV_LIBRARY = 4,    /* library handle creation (cuBLAS etc.) */
	MSV_DRV_UNOBSERVED = 5, /* no driver call seen: the interval that ends at this reading */
	MSV_DRV_LAZY_LOAD = 6,  /* kernels loaded at first launch (CUPTI MODULE_LOADED outside
	                           cuModuleLoad* / cuLibraryLoad*, or without CUPTI the first
	                           launch of each function), and whatever ran since the
	                           previous reading */
};

/* MSV_REC_DRIVER with MSV_F_READING is a checkpoint: .aux = device used
 * bytes read at it, .addr = enum msv_mark (what it was taken at), call site
 * in .site/.pysite/.nvtx, .device.  .size = the tracer's own estimate of the
 * interval's driver bytes; the analyzer recomputes it from its replay: device
 * used since the previous checkpoint minus what the records explain. */
enum msv_mark {
	MSV_MARK_NONE = 0,
	MSV_MARK_MODULE_LOADED = 1,    /* CUPTI RESOURCE MODULE_LOADED (lazy: at first launch) */
	MSV_MARK_STREAM_CREATED = 2,   /* CUPTI RESOURCE STREAM_CREATED */
	MSV_MARK_CAPTURE_BEGIN = 3,    /* cuStreamBeginCapture returned */
	MSV_MARK_CAPTURE_END = 4,      /* cuStreamEndCapture returned */
	MSV_MARK_INSTANTIATE_BEGIN = 5,/* before cuGraphInstantiate* */
	MSV_MARK_INSTANTIATE_END = 6,  /* after cuGraphInstantiate* */
	MSV_MARK_LOAD_BEGIN = 7,       /* before cuModuleLoad* / cuLibraryLoad* */
	MSV_MARK_LOAD_END = 8,         /* after cuModuleLoad* / cuLibraryLoad* */
	MSV_MARK_FIRST_LAUNCH = 9,     /* after the first launch of a function, seen by the
	                                  interposer when CUPTI is not attached (lazy loading) */
};

/* Record flags. */
#define MSV_F_WRAPPED 0x01u    /* backed by a memsaver VMM region */
#define MSV_F_WRAP_FAILED 0x02u/* policy asked to wrap; fell back to pass-through */
#define MSV_F_CAPTURING 0x04u  /* the thread was capturing a CUDA graph */
#define MSV_F_REGION 0x08u     /* chosen by an explicit msv_region_begin */
#define MSV_F_FAILED 0x10u     /* pause/resume failed (state unchanged) */
#define MSV_F_CUPTI 0x20u      /* seen by CUPTI, not by the interposer */
#define MSV_F_APP_VMM 0x40u    /* ALLOC/FREE: an application's own cuMemMap/cuMemUnmap
                                  (saver/app_vmm.h); ALLOC .aux2 = its handle value */
#define MSV_F_READING 0x80u    /* DRIVER: a checkpoint carrying a reading (enum msv_mark) */

struct msv_rec {
	uint16_t type;   /* enum msv_rec_type */
	uint8_t category;/* enum msv_category */
	uint8_t api;     /* enum msv_api, or a key/cause per type */
	uint32_t tid;    /* kernel thread id */
	uint64_t t_ns;   /* CLOCK_MONOTONIC */
	uint64_t addr;
	uint64_t size;
	uint64_t aux;    /* ALLOC: bytes mapped (size rounded up) for wrapped memory */
	uint32_t site;   /* ALLOC: string id of the native caller library */
	uint32_t pysite; /* ALLOC: string id of the Python frames, innermost first, "\n"-joined */
	uint32_t nvtx;   /* ALLOC: string id of the NVTX stack, outermost first, "/"-joined */
	uint16_t rule;   /* ALLOC: policy rule index + 1; 0 = built-in default */
	uint8_t flags;   /* MSV_F_* */
	uint8_t device;  /* device ordinal */
	uint64_t aux2;   /* ALLOC: stream handle */
};

_Static_assert(sizeof(struct msv_rec) == MSV_REC_SIZE, "trace record is 64 bytes");
_Static_assert(sizeof(struct msv_trace_header) == 64, "trace header is 64 bytes");

#endif
