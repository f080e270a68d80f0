#include "regions.h"

#include <pthread.h>
#include <stdlib.h>

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

static CUresult create_and_map(const struct msv_driver *d, CUdeviceptr va, size_t mapped, CUdevice dev,
			       CUmemGenericAllocationHandle *out)
{
	CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
				    .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev}};
	CUmemAccessDesc access = {.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev},
				  .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
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
	r = d->cuMemSetAccess(va, mapped, &access, 1);
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
	MSV_BUSY_BEGIN();
	CUresult rc = create_and_map(d, r->va, r->mapped, r->device, &r->handle);
	MSV_BUSY_END();
	if (rc == CUDA_SUCCESS)
		r->resident = 1;
	return rc;
}

CUresult _msv_region_unmap(struct msv_region *r)
{
	const struct msv_driver *d = _msv_drv();
	MSV_BUSY_BEGIN();
	CUresult rc = d->cuMemUnmap(r->va, r->mapped);
	if (rc == CUDA_SUCCESS) {
		/* Unmapped, the handle is ours alone; a failed release leaks it
		 * but the address space stays consistent. */
		CUresult rr = d->cuMemRelease(r->handle);
		if (rr != CUDA_SUCCESS)
			MSV_WARN("cuMemRelease failed: %s", _msv_cu_error(rr));
		r->resident = 0;
	}
	MSV_BUSY_END();
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

struct msv_region *_msv_regions_take(CUdeviceptr va)
{
	struct msv_region *r;
	pthread_mutex_lock(&lock);
	HASH_FIND(hh, table, &va, sizeof(va), r);
	if (r)
		HASH_DEL(table, r);
	pthread_mutex_unlock(&lock);
	return r;
}

CUresult _msv_region_destroy(struct msv_region *r)
{
	CUresult rc = CUDA_SUCCESS;
	const struct msv_driver *d = _msv_drv();
	if (r->wrapped && d) {
		MSV_BUSY_BEGIN();
		if (r->resident)
			rc = _msv_region_unmap(r);
		CUresult fr = d->cuMemAddressFree(r->va, r->mapped);
		if (rc == CUDA_SUCCESS)
			rc = fr;
		if (r->backup && r->backup_pinned)
			d->cuMemFreeHost(r->backup);
		MSV_BUSY_END();
	}
	if (r->backup && !r->backup_pinned)
		free(r->backup);
	free(r);
	return rc;
}

#define MIB (1024u * 1024u)

size_t _msv_region_keep(struct msv_region *r, int action)
{
	r->keep_off = 0;
	r->keep_len = 0;
	if (action == MSV_ACT_BACKUP || (action == MSV_ACT_DISCARD && (r->size == 2 * MIB || r->size == 20 * MIB))) {
		r->keep_len = r->size;
	} else if (action == MSV_ACT_DISCARD && r->size > 20 * MIB) {
		r->keep_off = r->size - 2 * MIB;
		r->keep_len = 2 * MIB;
	}
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
