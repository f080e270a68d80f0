#include "app_vmm.h"

#include "copy.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "shared.h"
#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/thread.h"
#include "tracer/trace_format.h"
#include "uthash.h"

/* Locations an application grants access to (owner and peers). */
#define MAX_ACCESS 8

struct handle {
	CUmemGenericAllocationHandle key;  /* the value the application holds */
	CUmemGenericAllocationHandle phys; /* current physical handle; 0 while released */
	size_t size;
	CUmemAllocationProp prop; /* of the original, for the re-creation */
	unsigned long long flags;
	int refs;        /* the application's: create + retains - releases */
	int retains;     /* of which retains */
	int maps;        /* mapping regions in the region table */
	int live;        /* mappings of phys in the driver, and maps in flight */
	int cat;         /* -1 until first mapped */
	unsigned shared; /* 1 << enum msv_share_kind */
	UT_hash_handle hh;
};

struct msv_app_map {
	struct handle *h;
	size_t offset;
	int mixed;
	size_t nacc;
	CUmemAccessDesc acc[MAX_ACCESS];
};

static struct handle *handles; /* by key, under the regions lock */
/* Set once the application created its first handle: until then every
 * wrapper passes straight through without the lock. */
static atomic_int any;

/* Entry points memsaver's driver table lacks, from the driver itself. */
static CUresult (*drv_props)(CUmemAllocationProp *, CUmemGenericAllocationHandle);
static CUresult (*drv_export)(void *, CUmemGenericAllocationHandle, CUmemAllocationHandleType, unsigned long long);
static pthread_once_t procs_once = PTHREAD_ONCE_INIT;

static void procs_load(void)
{
	const struct msv_driver *d = _msv_drv();
	CUdriverProcAddressQueryResult st;
	void *p = NULL;
	if (!d || !d->cuGetProcAddress)
		return;
	if (d->cuGetProcAddress("cuMemGetAllocationPropertiesFromHandle", &p, 10020, CU_GET_PROC_ADDRESS_DEFAULT,
				&st) == CUDA_SUCCESS)
		drv_props = (__typeof__(drv_props))p;
	p = NULL;
	if (d->cuGetProcAddress("cuMemExportToShareableHandle", &p, 10020, CU_GET_PROC_ADDRESS_DEFAULT, &st) ==
	    CUDA_SUCCESS)
		drv_export = (__typeof__(drv_export))p;
}

static struct handle *find(CUmemGenericAllocationHandle key)
{
	struct handle *e;
	HASH_FIND(hh, handles, &key, sizeof(key), e);
	return e;
}

/* The application's mapping containing addr (locked). */
static struct msv_region *find_map(CUdeviceptr addr)
{
	struct msv_region *all = _msv_regions_all(), *r, *tmp;
	HASH_FIND(hh, all, &addr, sizeof(addr), r);
	if (r)
		return r->app ? r : NULL;
	HASH_ITER(hh, all, r, tmp)
		if (r->app && addr >= r->va && addr < r->va + r->mapped)
			return r;
	return NULL;
}

/* The physical memory to release now, if any, and the entry freed once the
 * application holds neither a reference nor a mapping (locked).  Physical
 * memory goes when nothing maps it and either the application released its
 * last reference or its mappings are all released by a pause. */
static CUmemGenericAllocationHandle settle(struct handle *e)
{
	CUmemGenericAllocationHandle rel = 0;
	if (e->phys && !e->live && (e->maps || !e->refs)) {
		rel = e->phys;
		e->phys = 0;
	}
	if (!e->maps && !e->refs) {
		HASH_DEL(handles, e);
		free(e);
	}
	return rel;
}

static void release_phys(CUmemGenericAllocationHandle h)
{
	const struct msv_driver *d = _msv_drv();
	if (!h || !d)
		return;
	MSV_BUSY_BEGIN();
	CUresult rc = d->cuMemRelease(h);
	MSV_BUSY_END();
	if (rc != CUDA_SUCCESS)
		MSV_WARN("cuMemRelease of an application's physical memory failed: %s; it leaks",
			 _msv_cu_error(rc));
}

/* Every mapping of e gets e's sharing (locked): the physical memory is one. */
static void spread_shared(struct handle *e)
{
	struct msv_region *r, *tmp;
	HASH_ITER(hh, _msv_regions_all(), r, tmp)
		if (r->app && r->app->h == e) {
			r->shared = e->shared;
			r->noted &= e->shared;
		}
}

int _msv_app_vmm_created(CUmemGenericAllocationHandle h, size_t size, const CUmemAllocationProp *prop,
			 unsigned long long flags)
{
	struct handle *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	pthread_once(&procs_once, procs_load);
	*e = (struct handle){.key = h, .phys = h, .size = size, .flags = flags, .refs = 1, .cat = -1};
	MSV_BUSY_BEGIN();
	if (!drv_props || drv_props(&e->prop, h) != CUDA_SUCCESS)
		e->prop = *prop;
	MSV_BUSY_END();
	_msv_regions_lock();
	int clash = find(h) != NULL;
	if (!clash)
		HASH_ADD(hh, handles, key, sizeof(e->key), e);
	atomic_store_explicit(&any, 1, memory_order_relaxed);
	_msv_regions_unlock();
	if (clash)
		free(e);
	return clash ? -EEXIST : 0;
}

int _msv_app_vmm_known(CUmemGenericAllocationHandle h)
{
	if (!atomic_load_explicit(&any, memory_order_relaxed))
		return 0;
	_msv_regions_lock();
	int known = find(h) != NULL;
	_msv_regions_unlock();
	return known;
}

CUresult _msv_app_vmm_map_app(CUdeviceptr va, size_t size, size_t off, CUmemGenericAllocationHandle key,
			      unsigned long long flags, struct msv_decision *dec, int *wrapped)
{
	static atomic_int said;
	const struct msv_driver *d = _msv_drv();
	struct msv_region *r = calloc(1, sizeof(*r));
	struct msv_app_map *m = calloc(1, sizeof(*m));
	CUcontext ctx = NULL;
	CUresult rc = r && m ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
	if (rc == CUDA_SUCCESS && d->cuCtxGetCurrent(&ctx) != CUDA_SUCCESS)
		ctx = NULL;
	_msv_regions_lock();
	struct handle *e = find(key);
	CUmemGenericAllocationHandle phys = e ? e->phys : 0;
	if (rc == CUDA_SUCCESS && !e)
		rc = CUDA_ERROR_INVALID_VALUE; /* released meanwhile */
	else if (rc == CUDA_SUCCESS && !phys)
		rc = CUDA_ERROR_ILLEGAL_STATE;
	if (rc == CUDA_SUCCESS)
		e->live++; /* a pause must not release it while it is being mapped */
	_msv_regions_unlock();
	if (rc != CUDA_SUCCESS) {
		if (rc == CUDA_ERROR_ILLEGAL_STATE && !atomic_exchange(&said, 1))
			MSV_WARN("cuMemMap of a handle whose memory memsaver released (paused): refused until resume");
		free(r);
		free(m);
		return rc;
	}
	MSV_BUSY_BEGIN();
	rc = d->cuMemMap(va, size, off, phys, flags);
	MSV_BUSY_END();
	CUmemGenericAllocationHandle rel = 0;
	_msv_regions_lock();
	if (rc != CUDA_SUCCESS) {
		e->live--;
		rel = settle(e);
	} else {
		if (e->cat < 0)
			e->cat = (int)dec->cat;
		dec->cat = (enum msv_category)e->cat;
		*wrapped = _msv_options()->redirect && _msv_policy_action(_msv_tracer_policy(), dec->cat) != MSV_ACT_KEEP;
		*m = (struct msv_app_map){.h = e, .offset = off};
		*r = (struct msv_region){.va = va, .size = size, .mapped = size, .handle = phys,
					 .device = e->prop.location.id, .ctx = ctx, .cat = dec->cat,
					 .wrapped = *wrapped, .resident = 1, .shared = e->shared, .app = m};
		e->maps++;
		/* An expandable segment grows by pages; the block that made it
		 * grow begins in the free end of the page below.  That page then
		 * holds blocks of both categories. */
		struct msv_region *all = _msv_regions_all(), *below;
		CUdeviceptr bva = va - size;
		HASH_FIND(hh, all, &bva, sizeof(bva), below);
		if (below && below->app && below->mapped == size && below->cat != r->cat)
			below->app->mixed = 1;
		_msv_regions_add_locked(r);
	}
	_msv_regions_unlock();
	if (rc != CUDA_SUCCESS) {
		release_phys(rel);
		free(r);
		free(m);
	}
	return rc;
}

/* The mappings inside [va, va + size) into *list, out of the table, once no
 * pause or resume works on them.  0: none (or one only partly inside: the
 * driver refuses that); 1: *n of them; -1: out of memory. */
static int take_range(CUdeviceptr va, size_t size, struct msv_region ***list, size_t *n)
{
	for (;;) {
		_msv_regions_lock();
		struct msv_region *all = _msv_regions_all(), *r, *tmp, *one;
		size_t k = 0;
		int pinned = 0, partial = 0;
		HASH_FIND(hh, all, &va, sizeof(va), one);
		if (one && one->app && one->mapped == size) { /* one page: PyTorch's case */
			k = 1;
			pinned = one->pinned;
		} else {
			one = NULL;
			HASH_ITER(hh, all, r, tmp) {
				if (!r->app || !(r->va < va + size && va < r->va + r->mapped))
					continue;
				k++;
				pinned |= r->pinned;
				partial |= r->va < va || r->va + r->mapped > va + size;
			}
		}
		if (!k || partial) {
			_msv_regions_unlock();
			return 0;
		}
		if (!pinned) {
			struct msv_region **l = calloc(k, sizeof(*l));
			if (!l) {
				_msv_regions_unlock();
				return -1;
			}
			*n = 0;
			if (one)
				l[(*n)++] = one;
			else
				HASH_ITER(hh, all, r, tmp)
					if (r->app && r->va >= va && r->va + r->mapped <= va + size)
						l[(*n)++] = r;
			for (size_t i = 0; i < *n; i++)
				_msv_regions_del_locked(l[i]);
			_msv_regions_unlock();
			*list = l;
			return 1;
		}
		_msv_regions_unlock();
		/* A pause or resume has it: it is done within its deadline. */
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
}

int _msv_app_vmm_unmap_app(CUdeviceptr va, size_t size, CUresult *rc)
{
	const struct msv_driver *d = _msv_drv();
	struct msv_region **l = NULL;
	size_t n = 0, done = 0;
	if (!atomic_load_explicit(&any, memory_order_relaxed))
		return 0;
	int got = take_range(va, size, &l, &n);
	if (got <= 0) {
		if (got < 0)
			*rc = CUDA_ERROR_OUT_OF_MEMORY;
		return got < 0;
	}
	/* One mapping at a time: released (paused) ones have nothing to unmap. */
	*rc = CUDA_SUCCESS;
	for (; done < n; done++) {
		if (!l[done]->resident)
			continue;
		MSV_BUSY_BEGIN();
		*rc = d->cuMemUnmap(l[done]->va, l[done]->mapped);
		MSV_BUSY_END();
		if (*rc != CUDA_SUCCESS)
			break;
	}
	CUmemGenericAllocationHandle *rel = calloc(n, sizeof(*rel));
	_msv_regions_lock();
	for (size_t i = 0; i < n; i++) {
		if (i >= done) { /* still mapped: back into the table */
			_msv_regions_add_locked(l[i]);
			continue;
		}
		struct handle *e = l[i]->app->h;
		e->maps--;
		e->live -= l[i]->resident;
		CUmemGenericAllocationHandle h = settle(e);
		if (rel)
			rel[i] = h;
		else
			release_phys(h); /* no host memory left: under the lock */
	}
	_msv_regions_unlock();
	for (size_t i = 0; i < done; i++) {
		_msv_tracer_free(MSV_API_MEM_FREE, l[i]->va, l[i]->size, l[i]->mapped, l[i]->cat);
		if (rel)
			release_phys(rel[i]);
		_msv_region_destroy(l[i]); /* its backup; the mapping is gone */
	}
	free(rel);
	free(l);
	return 1;
}

/* A RETAINED share ended: the trace says so for each mapping (locked). */
static void note_ended(const struct handle *e)
{
	struct msv_region *r, *tmp;
	HASH_ITER(hh, _msv_regions_all(), r, tmp) {
		if (!r->app || r->app->h != e || !r->wrapped)
			continue;
		struct msv_rec rec = {.type = MSV_REC_SHARED, .category = (uint8_t)r->cat, .api = MSV_SHARE_ENDED,
				      .addr = r->va, .size = r->mapped, .device = (uint8_t)r->device};
		_msv_tracer_record(&rec);
	}
}

/* Whether h is the physical memory behind something the application holds
 * under another value (locked): a release of it is a stale value's. */
static int hidden_phys(CUmemGenericAllocationHandle h)
{
	struct handle *e, *et;
	HASH_ITER(hh, handles, e, et)
		if (e->phys == h)
			return 1;
	struct msv_region *r, *rt;
	HASH_ITER(hh, _msv_regions_all(), r, rt)
		if (r->wrapped && !r->app && r->resident && r->handle == h)
			return 1;
	return 0;
}

int _msv_app_vmm_release_app(CUmemGenericAllocationHandle h, CUresult *rc)
{
	if (!atomic_load_explicit(&any, memory_order_relaxed))
		return 0;
	CUmemGenericAllocationHandle rel = 0;
	int answered = 1, last = 0;
	_msv_regions_lock();
	struct handle *e = find(h);
	if (!e) {
		answered = hidden_phys(h);
		*rc = CUDA_ERROR_INVALID_VALUE;
	} else if (e->refs <= 0) {
		*rc = CUDA_ERROR_INVALID_VALUE; /* released more often than held */
	} else {
		*rc = CUDA_SUCCESS;
		e->refs--;
		last = !e->refs;
		if (e->retains > 0 && --e->retains == 0) {
			e->shared &= ~(1u << MSV_SHARE_RETAINED);
			spread_shared(e);
			if (!e->shared)
				note_ended(e);
		}
		rel = settle(e);
	}
	_msv_regions_unlock();
	release_phys(rel);
	if (last)
		_msv_tracer_vmm(MSV_REC_VMM_RELEASE, h, 0, 0);
	return answered;
}

int _msv_app_vmm_retain_app(void *addr, CUmemGenericAllocationHandle *h, void *caller)
{
	if (!atomic_load_explicit(&any, memory_order_relaxed))
		return 0;
	_msv_regions_lock();
	struct msv_region *r = find_map((CUdeviceptr)addr);
	if (r) {
		struct handle *e = r->app->h;
		e->refs++;
		e->retains++;
		e->shared |= 1u << MSV_SHARE_RETAINED;
		spread_shared(e);
		*h = e->key;
	}
	_msv_regions_unlock();
	/* The trace names who shared it, once per mapping (saver/shared.c). */
	if (r)
		_msv_share_note((CUdeviceptr)addr, 0, MSV_SHARE_RETAINED, caller);
	return r != NULL;
}

int _msv_app_vmm_props_app(CUmemAllocationProp *prop, CUmemGenericAllocationHandle h, CUresult *rc)
{
	if (!atomic_load_explicit(&any, memory_order_relaxed))
		return 0;
	_msv_regions_lock();
	struct handle *e = find(h);
	if (e && !prop) {
		*rc = CUDA_ERROR_INVALID_VALUE;
	} else if (e && e->phys && drv_props) {
		MSV_BUSY_BEGIN();
		*rc = drv_props(prop, e->phys);
		MSV_BUSY_END();
	} else if (e) {
		*prop = e->prop;
		*rc = CUDA_SUCCESS;
	}
	_msv_regions_unlock();
	return e != NULL;
}

int _msv_app_vmm_export_app(void *sh, CUmemGenericAllocationHandle h, CUmemAllocationHandleType type,
			    unsigned long long flags, void *caller, CUresult *rc)
{
	if (!atomic_load_explicit(&any, memory_order_relaxed))
		return 0;
	CUmemGenericAllocationHandle phys = 0;
	_msv_regions_lock();
	struct handle *e = find(h);
	if (e && !e->phys) {
		*rc = CUDA_ERROR_ILLEGAL_STATE; /* paused: nothing to export */
	} else if (e) {
		MSV_BUSY_BEGIN();
		*rc = drv_export ? drv_export(sh, e->phys, type, flags) : CUDA_ERROR_NOT_SUPPORTED;
		MSV_BUSY_END();
		if (*rc == CUDA_SUCCESS) {
			/* An importer may hold it forever: never released again. */
			e->shared |= 1u << MSV_SHARE_EXPORTED;
			spread_shared(e);
			phys = e->maps ? e->phys : 0;
		}
	}
	_msv_regions_unlock();
	if (phys)
		_msv_share_note(0, phys, MSV_SHARE_EXPORTED, caller);
	return e != NULL;
}

void _msv_app_vmm_access(CUdeviceptr va, size_t size, const CUmemAccessDesc *desc, size_t count)
{
	if (!atomic_load_explicit(&any, memory_order_relaxed) || !desc)
		return;
	_msv_regions_lock();
	for (CUdeviceptr p = va; p < va + size;) {
		struct msv_region *r = find_map(p);
		if (!r)
			break;
		struct msv_app_map *m = r->app;
		for (size_t i = 0; i < count; i++) {
			size_t k = 0;
			while (k < m->nacc && (m->acc[k].location.type != desc[i].location.type ||
					       m->acc[k].location.id != desc[i].location.id))
				k++;
			if (k == m->nacc && m->nacc < MAX_ACCESS)
				m->nacc++;
			if (k < m->nacc)
				m->acc[k] = desc[i];
		}
		p = r->va + r->mapped;
	}
	_msv_regions_unlock();
}

CUresult _msv_app_vmm_map(struct msv_region *r, CUmemGenericAllocationHandle *out)
{
	const struct msv_driver *d = _msv_drv();
	struct msv_app_map m;
	CUmemGenericAllocationHandle fresh = 0, extra = 0, rel = 0;
	CUresult rc = CUDA_SUCCESS;
	_msv_regions_lock();
	struct handle *e = r->app->h;
	m = *r->app;
	CUmemGenericAllocationHandle phys = e->phys;
	if (phys)
		e->live++;
	_msv_regions_unlock();
	if (!phys) {
		/* The same properties as the original: location, RDMA and
		 * compression flags, shareable handle types. */
		rc = d->cuMemCreate(&fresh, e->size, &e->prop, e->flags);
		if (rc != CUDA_SUCCESS)
			return rc;
		_msv_regions_lock();
		if (e->phys)
			extra = fresh;
		else
			e->phys = fresh;
		phys = e->phys;
		e->live++;
		_msv_regions_unlock();
		release_phys(extra);
	}
	rc = d->cuMemMap(r->va, r->mapped, m.offset, phys, 0);
	/* Access is granted again after every map, as the application set it. */
	if (rc == CUDA_SUCCESS && m.nacc) {
		rc = d->cuMemSetAccess(r->va, r->mapped, m.acc, m.nacc);
		if (rc != CUDA_SUCCESS)
			d->cuMemUnmap(r->va, r->mapped);
	}
	if (rc != CUDA_SUCCESS) {
		_msv_regions_lock();
		e->live--;
		rel = settle(e);
		_msv_regions_unlock();
		release_phys(rel);
		return rc;
	}
	*out = phys;
	return CUDA_SUCCESS;
}

CUresult _msv_app_vmm_unmap(struct msv_region *r)
{
	const struct msv_driver *d = _msv_drv();
	CUresult rc = d->cuMemUnmap(r->va, r->mapped);
	if (rc != CUDA_SUCCESS)
		return rc;
	_msv_regions_lock();
	struct handle *e = r->app->h;
	e->live--;
	CUmemGenericAllocationHandle rel = settle(e);
	_msv_regions_unlock();
	release_phys(rel);
	return CUDA_SUCCESS;
}

int _msv_app_vmm_mixed(const struct msv_region *r)
{
	return r->app->mixed;
}
