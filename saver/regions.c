#include "regions.h"

#include <pthread.h>
#include <stdlib.h>

#include "app_vmm.h"
#include "host_backup.h"
#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/thread.h"
#include "tracer/trace_writer.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct msv_region *table;

void _msv_regions_lock(void)
{
	pthread_mutex_lock(&lock);
}

void _msv_regions_unlock(void)
{
	pthread_mutex_unlock(&lock);
}

struct msv_region *_msv_regions_all(void)
{
	return table;
}

/* A fork while another thread holds the lock would leave it locked forever
 * in the child (whose first free then hangs): fork waits for it instead.
 * The lock is only ever held for table work, never across GPU work. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&lock);
}

static void fork_done(void)
{
	pthread_mutex_unlock(&lock);
}

__attribute__((constructor)) static void regions_atfork(void)
{
	pthread_atfork(fork_prepare, fork_done, fork_done);
}

size_t _msv_granularity(CUdevice dev)
{
	static size_t cache[64];
	const struct msv_driver *d = _msv_drv();
	if (dev < 0 || dev >= 64)
		return 2u << 20;
	if (!cache[dev] && d && d->cuMemGetAllocationGranularity) {
		CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
					    .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev}};
		size_t g = 0;
		if (d->cuMemGetAllocationGranularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) ==
			    CUDA_SUCCESS &&
		    g)
			cache[dev] = g;
	}
	return cache[dev] ? cache[dev] : 2u << 20;
}

/* Devices allowed to access each owner device's memory (peer access the
 * application enabled); bit per device.  Written under the lock. */
#define MAX_DEV 64
static uint64_t peers[MAX_DEV];

/* GPUDirect RDMA on VMM memory needs the flag at cuMemCreate: cuMemAlloc
 * memory is registrable by NICs (KV-transfer connectors), so ours must be
 * too wherever the device supports it. */
static int rdma_capable(const struct msv_driver *d, CUdevice dev)
{
	static int cache[MAX_DEV]; /* 0 unknown, 1 yes, -1 no */
	if (dev < 0 || dev >= MAX_DEV)
		return 0;
	if (!cache[dev]) {
		int v = 0;
		cache[dev] = d->cuDeviceGetAttribute &&
					     d->cuDeviceGetAttribute(
						     &v, CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED,
						     dev) == CUDA_SUCCESS &&
					     v
				     ? 1
				     : -1;
	}
	return cache[dev] == 1;
}

/* Access for the owner and every peer allowed so far (they must be granted
 * again after every map). */
static CUresult grant(const struct msv_driver *d, CUdeviceptr va, size_t mapped, CUdevice dev)
{
	CUmemAccessDesc access[MAX_DEV];
	size_t n = 0;
	uint64_t allowed = dev >= 0 && dev < MAX_DEV ? __atomic_load_n(&peers[dev], __ATOMIC_ACQUIRE) : 0;
	access[n++] = (CUmemAccessDesc){.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev},
					.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
	for (int p = 0; p < MAX_DEV; p++)
		if (p != dev && (allowed >> p & 1))
			access[n++] = (CUmemAccessDesc){.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = p},
							.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
	return d->cuMemSetAccess(va, mapped, access, n);
}

static CUresult create_and_map(const struct msv_driver *d, CUdeviceptr va, size_t mapped, CUdevice dev,
			       CUmemGenericAllocationHandle *out)
{
	CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
				    .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev}};
	prop.allocFlags.gpuDirectRDMACapable = rdma_capable(d, dev);
	CUmemGenericAllocationHandle h;
	uint64_t t0 = _msv_now_ns();
	CUresult r = d->cuMemCreate(&h, mapped, &prop, 0);
	if (r != CUDA_SUCCESS)
		return r;
	uint64_t t1 = _msv_now_ns();
	r = d->cuMemMap(va, mapped, 0, h, 0);
	if (r != CUDA_SUCCESS)
		goto release;
	uint64_t t2 = _msv_now_ns();
	/* Access must be granted again after every map. */
	r = grant(d, va, mapped, dev);
	if (r != CUDA_SUCCESS)
		goto unmap;
	if (mapped >= (1ull << 30))
		MSV_DEBUG("%zu bytes: cuMemCreate %.2f ms, cuMemMap %.2f ms, cuMemSetAccess %.2f ms", mapped,
			  (t1 - t0) / 1e6, (t2 - t1) / 1e6, (_msv_now_ns() - t2) / 1e6);
	*out = h;
	return CUDA_SUCCESS;
unmap:
	d->cuMemUnmap(va, mapped);
release:
	d->cuMemRelease(h);
	return r;
}

CUresult _msv_region_create(size_t size, enum msv_category cat, CUdeviceptr *out, size_t *mapped_out)
{
	const struct msv_driver *d = _msv_drv();
	if (!d || !d->cuMemAddressReserve || !d->cuMemCreate || !d->cuMemMap || !d->cuMemSetAccess)
		return CUDA_ERROR_NOT_SUPPORTED;
	CUdevice dev;
	CUcontext ctx;
	CUresult r;
	MSV_BUSY_BEGIN();
	if ((r = d->cuCtxGetDevice(&dev)) != CUDA_SUCCESS || (r = d->cuCtxGetCurrent(&ctx)) != CUDA_SUCCESS)
		goto out;
	size_t g = _msv_granularity(dev);
	size_t mapped = (size + g - 1) / g * g;
	if (!mapped)
		mapped = g;
	CUdeviceptr va = 0;
	if ((r = d->cuMemAddressReserve(&va, mapped, g, 0, 0)) != CUDA_SUCCESS)
		goto out;
	CUmemGenericAllocationHandle h;
	if ((r = create_and_map(d, va, mapped, dev, &h)) != CUDA_SUCCESS) {
		d->cuMemAddressFree(va, mapped);
		goto out;
	}
	struct msv_region *reg = calloc(1, sizeof(*reg));
	if (!reg) {
		d->cuMemUnmap(va, mapped);
		d->cuMemRelease(h);
		d->cuMemAddressFree(va, mapped);
		r = CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	*reg = (struct msv_region){.va = va, .size = size, .mapped = mapped, .handle = h, .device = dev,
				   .ctx = ctx, .cat = cat, .wrapped = 1, .resident = 1};
	pthread_mutex_lock(&lock);
	HASH_ADD(hh, table, va, sizeof(reg->va), reg);
	pthread_mutex_unlock(&lock);
	*out = va;
	*mapped_out = mapped;
out:
	MSV_BUSY_END();
	return r;
}

CUresult _msv_region_map(struct msv_region *r)
{
	const struct msv_driver *d = _msv_drv();
	CUmemGenericAllocationHandle h;
	MSV_BUSY_BEGIN();
	CUresult rc = r->app ? _msv_app_vmm_map(r, &h) : create_and_map(d, r->va, r->mapped, r->device, &h);
	MSV_BUSY_END();
	if (rc == CUDA_SUCCESS) {
		pthread_mutex_lock(&lock);
		r->handle = h;
		r->resident = 1;
		pthread_mutex_unlock(&lock);
	}
	return rc;
}

/* Unmap and release; resident is the caller's to clear. */
static CUresult unmap_release(const struct msv_driver *d, struct msv_region *r)
{
	MSV_BUSY_BEGIN();
	CUresult rc = d->cuMemUnmap(r->va, r->mapped);
	if (rc == CUDA_SUCCESS) {
		/* Unmapped, the handle is ours alone; a failed release leaks it
		 * but the address space stays consistent. */
		CUresult rr = d->cuMemRelease(r->handle);
		if (rr != CUDA_SUCCESS)
			MSV_WARN("cuMemRelease failed: %s", _msv_cu_error(rr));
	}
	MSV_BUSY_END();
	return rc;
}

CUresult _msv_region_unmap(struct msv_region *r)
{
	CUresult rc = r->app ? _msv_app_vmm_unmap(r) : unmap_release(_msv_drv(), r);
	if (rc == CUDA_SUCCESS) {
		pthread_mutex_lock(&lock);
		r->resident = 0;
		r->stale = 0;
		pthread_mutex_unlock(&lock);
	}
	return rc;
}

CUresult _msv_regions_grant_peer(CUdevice owner, CUdevice dev)
{
	const struct msv_driver *d = _msv_drv();
	if (owner < 0 || owner >= MAX_DEV || dev < 0 || dev >= MAX_DEV || owner == dev || !d)
		return CUDA_SUCCESS;
	CUresult rc = CUDA_SUCCESS;
	pthread_mutex_lock(&lock);
	__atomic_or_fetch(&peers[owner], 1ull << dev, __ATOMIC_RELEASE);
	/* Regions mapped now get the access at once; a pinned one is being
	 * mapped or unmapped by a resume or pause, which grants it itself. */
	struct msv_region *r, *tmp;
	HASH_ITER(hh, table, r, tmp) {
		/* An application grants its own mappings (cuMemSetAccess). */
		if (!r->wrapped || r->app || !r->resident || r->pinned || r->device != owner)
			continue;
		MSV_BUSY_BEGIN();
		CUresult g = grant(d, r->va, r->mapped, owner);
		MSV_BUSY_END();
		if (g != CUDA_SUCCESS && rc == CUDA_SUCCESS)
			rc = g;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

void _msv_regions_note(CUdeviceptr va, size_t size, enum msv_category cat)
{
	struct msv_region *reg = calloc(1, sizeof(*reg));
	if (!reg)
		return;
	*reg = (struct msv_region){.va = va, .size = size, .cat = cat, .resident = 1};
	pthread_mutex_lock(&lock);
	struct msv_region *old;
	HASH_FIND(hh, table, &va, sizeof(va), old);
	if (old) { /* the driver reused an address we missed the free of */
		HASH_DEL(table, old);
		free(old);
	}
	HASH_ADD(hh, table, va, sizeof(reg->va), reg);
	pthread_mutex_unlock(&lock);
}

struct msv_region *_msv_regions_take(CUdeviceptr va, int *deferred)
{
	struct msv_region *r;
	*deferred = 0;
	pthread_mutex_lock(&lock);
	HASH_FIND(hh, table, &va, sizeof(va), r);
	if (r && r->app)
		r = NULL; /* cuMemFree of VMM memory: the driver refuses it */
	if (r) {
		HASH_DEL(table, r);
		if (r->pinned)
			r->doomed = *deferred = 1;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

void _msv_regions_add_locked(struct msv_region *r)
{
	HASH_ADD(hh, table, va, sizeof(r->va), r);
}

void _msv_regions_del_locked(struct msv_region *r)
{
	HASH_DEL(table, r);
}

void _msv_regions_put(struct msv_region *r)
{
	pthread_mutex_lock(&lock);
	HASH_ADD(hh, table, va, sizeof(r->va), r);
	pthread_mutex_unlock(&lock);
}

void _msv_regions_pin(struct msv_region **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		list[i]->pinned = 1;
}

void _msv_regions_unpin(struct msv_region **list, size_t n)
{
	size_t k = 0;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < n; i++) {
		list[i]->pinned = 0;
		if (list[i]->doomed)
			list[k++] = list[i];
	}
	pthread_mutex_unlock(&lock);
	/* Out of the table since their free: nobody else can reach them. */
	for (size_t i = 0; i < k; i++) {
		CUresult rc = _msv_region_free(list[i]);
		if (rc != CUDA_SUCCESS)
			MSV_WARN("releasing a region freed during a pause or resume failed: %s; its memory leaks",
				 _msv_cu_error(rc));
	}
}

CUresult _msv_region_free(struct msv_region *r)
{
	const struct msv_driver *d = _msv_drv();
	if (r->wrapped && r->resident && d) {
		/* cuMemFree waits for the device before the memory goes; so
		 * does this, on the context that owns the region (the current
		 * one may be another device's). */
		CUcontext old;
		MSV_BUSY_BEGIN();
		CUresult rc = d->cuCtxPushCurrent(r->ctx);
		if (rc == CUDA_SUCCESS) {
			rc = d->cuCtxSynchronize();
			d->cuCtxPopCurrent(&old);
		}
		MSV_BUSY_END();
		if (rc != CUDA_SUCCESS)
			return rc;
	}
	return _msv_region_destroy(r);
}

size_t _msv_region_host_bytes(const struct msv_region *r)
{
	return (r->backup ? r->keep_len : 0) + (r->ahead ? r->ahead_len : 0);
}

CUresult _msv_region_destroy(struct msv_region *r)
{
	CUresult rc = CUDA_SUCCESS;
	const struct msv_driver *d = _msv_drv();
	if (r->wrapped && !r->app && d) {
		MSV_BUSY_BEGIN();
		if (r->resident)
			rc = unmap_release(d, r);
		CUresult fr = d->cuMemAddressFree(r->va, r->mapped);
		if (rc == CUDA_SUCCESS)
			rc = fr;
		MSV_BUSY_END();
	}
	_msv_host_free(r->backup, r->backup_len, r->backup_pinned);
	_msv_host_free(r->ahead, r->ahead_len, 0);
	free(r->digest);
	free(r->digest_new);
	free(r->app);
	free(r);
	return rc;
}

#define MIB (1024u * 1024u)

/* PyTorch's CUDACachingAllocator (c10/cuda/CUDACachingAllocator.cpp):
 * kSmallBuffer 2 MiB, kMinLargeAlloc 10 MiB, kLargeBuffer 20 MiB,
 * kRoundLarge 2 MiB, kMinBlockSize 512. */
#define SMALL_BUFFER (2 * MIB)
#define MIN_LARGE_ALLOC (10 * MIB)
#define LARGE_BUFFER (20 * MIB)
#define ROUND_LARGE (2 * MIB)
#define MIN_BLOCK 512u

void _msv_segment_shared(size_t size, size_t *off, size_t *len)
{
	*off = *len = 0;
	if (size == SMALL_BUFFER || size == LARGE_BUFFER) {
		*len = size;
	} else if (size >= MIN_LARGE_ALLOC && size % ROUND_LARGE == 0) {
		/* The first block is the request rounded to 512 bytes and lies
		 * above size - 2 MiB: what is left is under 2 MiB - 512. */
		*len = ROUND_LARGE - MIN_BLOCK;
		*off = size - *len;
	}
}

size_t _msv_region_keep(struct msv_region *r, int action)
{
	r->keep_off = 0;
	r->keep_len = 0;
	if (action == MSV_ACT_BACKUP)
		r->keep_len = r->size;
	else if (r->app && (action == MSV_ACT_DISCARD || action == MSV_ACT_ZERO))
		r->keep_len = _msv_app_vmm_mixed(r) ? r->size : 0;
	else if (action == MSV_ACT_DISCARD || action == MSV_ACT_ZERO)
		_msv_segment_shared(r->size, &r->keep_off, &r->keep_len);
	return r->keep_len;
}

struct msv_region *_msv_regions_find(CUdeviceptr addr)
{
	struct msv_region *r, *tmp;
	HASH_FIND(hh, table, &addr, sizeof(addr), r);
	if (r)
		return r->wrapped ? r : NULL;
	HASH_ITER(hh, table, r, tmp)
		if (r->wrapped && addr >= r->va && addr < r->va + r->size)
			return r;
	return NULL;
}
