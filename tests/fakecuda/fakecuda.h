/* fakecuda: test doubles of libcuda.so.1, libcupti.so.13 and
 * libnvidia-ml.so.1, built from the real CUDA 13 headers.  No GPU needed.
 *
 * The doubles implement the real prototypes and export the real versioned
 * symbol names (cuMemAlloc_v2, cuMemsetD8Async_ptsz, cuGetProcAddress_v2 ...),
 * so an unmodified libcudart, a tool loaded through CUDA_INJECTION64_PATH and
 * libmemsaver.so run on them exactly as on a GPU machine.  This header is the
 * contract between the three doubles and the tests; nothing in the product
 * includes it.
 *
 * Memory model
 *   "Device" memory is host memory: device pointers are real addresses and
 *   copies are memcpy.  Everything is mmap(MAP_NORESERVE), so 80 GiB of
 *   "device" costs nothing until touched.
 *   - cuMemAlloc_v2 / cuMemAllocPitch_v2 / cuMemAllocAsync: an anonymous
 *     mapping, rounded up to 2 MiB; the ACCOUNTED size is that rounded size
 *     (like the real driver, whose cuMemGetInfo moves in 2 MiB steps).
 *   - cuMemAddressReserve: a PROT_NONE mapping that keeps its address
 *     (addr hint honoured when free, alignment >= 2 MiB).
 *   - cuMemCreate: a memfd of the size (must be a multiple of 2 MiB).
 *   - cuMemMap: MAP_FIXED|MAP_SHARED of the memfd into the reservation,
 *     PROT_NONE until cuMemSetAccess grants READ or READWRITE (real driver:
 *     access must be granted after every map).  cuMemUnmap puts an anonymous
 *     PROT_NONE mapping back, so the address stays reserved and any CPU
 *     access faults (SIGSEGV).
 *   - cuMemRelease drops the creation reference; the physical memory (and
 *     its accounting) goes when no reference and no mapping holds it.
 *   - Fresh memory (cuMemCreate, cuMemAlloc*, cuMemAllocAsync) is filled
 *     with a non-zero byte pattern that changes with every allocation, so
 *     code that relies on zeroed or preserved pages is caught.  Only the
 *     first FAKECUDA_GARBAGE_MAX bytes are filled (filling commits memory).
 *   - Copies and memsets through the API validate their device ranges:
 *     unknown pointers give CUDA_ERROR_INVALID_VALUE; reserved but unmapped
 *     or not-yet-accessible VMM ranges give CUDA_ERROR_ILLEGAL_ADDRESS
 *     instead of crashing the test.  Copies may span adjacent VMM mappings.
 *
 * Accounting (cuMemGetInfo_v2, nvmlDeviceGetMemoryInfo, fakecuda_get_usage)
 *   used = sum over live contexts of context_bytes
 *        + every live cuMemAlloc/Pitch/Async allocation (rounded to 2 MiB)
 *        + every live cuMemCreate handle (until freed, see cuMemRelease)
 *        + FAKECUDA_MODULE_BYTES per loaded module or library
 *        + FAKECUDA_GRAPH_EXEC_BYTES per live graph exec
 *   context_bytes = FAKECUDA_CONTEXT_BYTES - 1024 * FAKECUDA_STACK_THREADS
 *                 + stack_limit * FAKECUDA_STACK_THREADS
 *   (stack_limit = CU_LIMIT_STACK_SIZE, default 1024: with the defaults a
 *   context costs 512 MiB and 256 MiB at stack 0, as measured on an H200.)
 *   Any allocation that would push used above FAKECUDA_TOTAL_BYTES fails
 *   with CUDA_ERROR_OUT_OF_MEMORY.  Destroying a context frees the
 *   cuMemAlloc allocations, streams, events and modules made in it.
 *   Host allocations (cuMemHostAlloc ...) are not device memory.
 *
 * Streams and graphs
 *   Work runs synchronously at the call.  While a stream captures
 *   (cuStreamBeginCapture_v2), async memcpy/memset on it are recorded into
 *   the capture graph instead; cuGraphLaunch replays them in order (and a
 *   launch into a capturing stream appends them to that capture).  Capture
 *   modes follow the CUDA documentation: a "potentially unsafe" call
 *   (cuMemAlloc_v2, cuMemAllocPitch_v2, cuMemFree_v2, cuMemAllocHost_v2,
 *   cuMemHostAlloc, cuMemFreeHost, cuMemHostRegister_v2, cuCtxSynchronize,
 *   synchronous cuMemcpy* / cuMemsetD*) fails with
 *   CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture when
 *   the calling thread's mode is not RELAXED and either the thread itself
 *   captures in a non-relaxed mode or (thread mode GLOBAL) another thread
 *   captures in GLOBAL mode.  cuStreamSynchronize / cuStreamQuery on a
 *   capturing stream fail the same way.  cuMemAllocAsync on a capturing
 *   stream allocates at once (no graph memory node).
 *
 * CUPTI
 *   The libcupti double registers itself with fakecuda_set_cupti_hook() on
 *   cuptiSubscribe.  The driver double then delivers DRIVER_API callbacks at
 *   entry and exit of every traced call (real CUpti_CallbackData, real
 *   *_params struct, real cbid of the exported symbol actually called;
 *   functionReturnValue is NULL at entry and points to the CUresult at exit)
 *   and RESOURCE callbacks CU_INIT_FINISHED, CONTEXT_CREATED,
 *   CONTEXT_DESTROY_STARTING, STREAM_CREATED, STREAM_DESTROY_STARTING,
 *   MODULE_LOADED, MODULE_UNLOAD_STARTING (resourceDescriptor =
 *   CUpti_ModuleResourceData), GRAPH_CREATED, GRAPH_DESTROY_STARTING,
 *   GRAPHEXEC_CREATED, GRAPHEXEC_DESTROY_STARTING (resourceDescriptor =
 *   CUpti_GraphData).  No lock is held while a callback runs, so callbacks
 *   may call back into the driver.  Calls made from inside a callback are
 *   traced too.  One subscriber at a time; the second gets
 *   CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED and, through
 *   cuptiSubscribe_v2, the holder's name "CUPTI for <name>" (or "CUPTI" when
 *   the holder gave none).
 *
 * CUDA_INJECTION64_PATH is dlopen()ed (RTLD_NOW|RTLD_GLOBAL) during the first
 * cuInit and its InitializeInjection() called once; a load failure prints a
 * warning on stderr and cuInit goes on.  The driver counts as initialized
 * while InitializeInjection runs; calling cuInit from it deadlocks (as it
 * may on the real driver: do CUPTI calls only).
 *
 * Environment (read once, at the first call into any double; set it before)
 *   FAKECUDA_TOTAL_BYTES       device memory, default 80GiB
 *   FAKECUDA_CONTEXT_BYTES     cost of a context at stack limit 1024,
 *                              default 512MiB
 *   FAKECUDA_STACK_THREADS     threads the stack limit is multiplied by,
 *                              default 262144 (256 MiB at 1024 bytes)
 *   FAKECUDA_MODULE_BYTES      cost of a loaded module/library, default 2MiB
 *   FAKECUDA_GRAPH_EXEC_BYTES  cost of a live graph exec, default 4MiB
 *   FAKECUDA_LAZY_LOADING      1/true/on: a module costs FAKECUDA_MODULE_BYTES
 *                              from the first launch of one of its functions
 *                              (the MODULE_LOADED callback comes from inside
 *                              that launch), not at cuModuleLoad*, default 0
 *   FAKECUDA_ZERO_FRESH        1/true/on: fresh memory reads zero instead of
 *                              the garbage pattern, default 0
 *   FAKECUDA_GARBAGE_MAX       bytes of each fresh allocation filled with
 *                              the pattern, default 64MiB
 *   FAKECUDA_REUSE_HANDLES     1/true/on: cuMemCreate returns the lowest handle
 *                              value not in use (a released value comes back,
 *                              as from a real driver), default 0
 *   FAKECUDA_FAIL              fault injection, comma-separated list of
 *                              NAME:N:ERROR  fail the Nth call (1-based)
 *                              NAME:N+:ERROR fail the Nth call and all later
 *                              NAME is the exported symbol (cuMemAlloc_v2,
 *                              cuMemsetD8Async_ptsz), counting that symbol
 *                              only, or the base name (cuMemAlloc,
 *                              cuMemsetD8Async), counting every symbol that
 *                              is the base plus an optional _vN and an
 *                              optional _ptsz/_ptds.  ERROR is a CUresult
 *                              name (CUDA_ERROR_OUT_OF_MEMORY) or number.
 *                              Calls are counted from process start, before
 *                              cuInit included.  A failed call does nothing
 *                              but still delivers its CUPTI callbacks.
 *   Sizes accept plain bytes or a K/M/G/T suffix with optional "iB"/"B"
 *   (8GiB, 512MiB, 4096); all suffixes are powers of 1024.
 *   FAKECUDA_TRACE_PROCADDR    1: print every cuGetProcAddress request and
 *                              its answer on stderr (debugging aid)
 *   FAKECUDA_OTHERS_FILE       a file holding the bytes other processes use
 *                              on the device (a size as above; missing = 0),
 *                              read at every allocation and cuMemGetInfo
 *                              (driver_others.c)
 *   CUDA_INJECTION64_PATH      see above.
 *   FAKECUDA_DEVICE_DIR        one "device" shared by every process that sets
 *                              it: each serves a socket there from cuInit on,
 *                              cuCheckpointProcess* on another pid work through
 *                              it, and NVML reports device-wide memory
 *                              (driver_checkpoint.c has the state machine)
 *   FAKECUDA_CHECKPOINT_MS     time a checkpoint or restore takes, default 0
 *   FAKECUDA_NO_CHECKPOINT     1: cuGetProcAddress does not know the API
 *   FAKECUDA_DRIVER_RELEASE    nvmlSystemGetDriverVersion, default 580.159.04
 *
 * Fixed facts: one device, "NVIDIA H100 80GB HBM3" (sm_90, 132 SMs),
 * driver version 13000, granularity 2 MiB, CUmemGenericAllocationHandle
 * values are small integers (never 0).
 *
 * All hook functions below are exported by libcuda.so.1 (the driver double),
 * thread-safe, and usable before cuInit.  They never take ownership of
 * memory passed in. */
#ifndef FAKECUDA_H
#define FAKECUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FAKECUDA_EXPORT __attribute__((visibility("default")))

/* The link from the CUPTI double to the driver double.  enabled() is asked
 * before a callback record is built; deliver() gets the domain, the cbid
 * and a pointer to CUpti_CallbackData (DRIVER_API) or CUpti_ResourceData
 * (RESOURCE) valid only during the call.  Both may run on any thread,
 * concurrently, with no driver lock held. */
struct fakecuda_cupti_hook {
	int (*enabled)(uint32_t domain, uint32_t cbid);
	void (*deliver)(uint32_t domain, uint32_t cbid, const void *cbdata);
};

/* Install (hook != NULL) or remove (NULL) the CUPTI hook.  The driver keeps
 * the pointer: the struct must stay valid until it is removed. */
FAKECUDA_EXPORT void fakecuda_set_cupti_hook(const struct fakecuda_cupti_hook *hook);

/* A snapshot of the accounting described above (bytes). */
struct fakecuda_usage {
	uint64_t total;         /* FAKECUDA_TOTAL_BYTES */
	uint64_t used;          /* the sum of the next five */
	uint64_t context_bytes; /* all live contexts */
	uint64_t alloc_bytes;   /* cuMemAlloc/Pitch/Async, rounded */
	uint64_t vmm_bytes;     /* live cuMemCreate handles */
	uint64_t module_bytes;  /* modules and libraries */
	uint64_t graph_bytes;   /* graph execs */
	uint32_t contexts;      /* live contexts */
	uint32_t vmm_handles;   /* live cuMemCreate handles */
	uint32_t vmm_mappings;  /* live cuMemMap mappings */
	uint32_t allocations;   /* live cuMemAlloc-family allocations */
	uint64_t restore_launches; /* memsaver's restore kernel (msv_restore) run so far */
};

/* Fill *out (never fails; NULL is ignored). */
FAKECUDA_EXPORT void fakecuda_get_usage(struct fakecuda_usage *out);

/* Device memory used by every process of FAKECUDA_DEVICE_DIR (*shared 1),
 * or by this process alone when it is not set (*shared 0).  Either pointer
 * may be NULL. */
FAKECUDA_EXPORT void fakecuda_device_used(uint64_t *used, int *shared);

/* Calls made so far to the exported symbol NAME, or to every symbol of base
 * name NAME (same matching as FAKECUDA_FAIL).  Counts calls that failed. */
FAKECUDA_EXPORT uint64_t fakecuda_call_count(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* FAKECUDA_H */
