/* The libcupti.so.13 double: the callback API only (subscribe, enable,
 * deliver).  One subscriber at a time, as on driver 580.  Callbacks come
 * from the driver double through fakecuda_set_cupti_hook(); see fakecuda.h.
 *
 * Enable bits are atomics so the driver may ask enabled() on any thread
 * without a lock; subscribe/unsubscribe take g_lock. */
#include <cupti.h>
#include <cupti_callbacks.h>
#include <cupti_driver_cbid.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "fakecuda.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_CBID 1024
#define NDOMAINS CUPTI_CB_DOMAIN_SIZE

struct CUpti_Subscriber_st {
	CUpti_CallbackFunc callback;
	void *userdata;
	char name[CUPTI_OLD_SUBSCRIBER_NAME_MIN_LEN];
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct CUpti_Subscriber_st g_sub;
static struct CUpti_Subscriber_st *_Atomic g_active;
static _Atomic uint8_t g_enabled[NDOMAINS][MAX_CBID];
static __thread CUptiResult t_last_error = CUPTI_SUCCESS;

static uint32_t domain_size(CUpti_CallbackDomain d)
{
	switch (d) {
	case CUPTI_CB_DOMAIN_DRIVER_API: return CUPTI_DRIVER_TRACE_CBID_SIZE;
	case CUPTI_CB_DOMAIN_RUNTIME_API: return MAX_CBID;
	case CUPTI_CB_DOMAIN_RESOURCE: return CUPTI_CBID_RESOURCE_SIZE;
	case CUPTI_CB_DOMAIN_SYNCHRONIZE: return CUPTI_CBID_SYNCHRONIZE_SIZE;
	case CUPTI_CB_DOMAIN_NVTX: return MAX_CBID;
	case CUPTI_CB_DOMAIN_STATE: return CUPTI_CBID_STATE_SIZE;
	default: return 0;
	}
}

static CUptiResult ret(CUptiResult r)
{
	if (r != CUPTI_SUCCESS)
		t_last_error = r;
	return r;
}

static int hook_enabled(uint32_t domain, uint32_t cbid)
{
	if (!atomic_load(&g_active) || domain >= NDOMAINS || cbid >= MAX_CBID)
		return 0;
	return atomic_load(&g_enabled[domain][cbid]);
}

static void hook_deliver(uint32_t domain, uint32_t cbid, const void *cbdata)
{
	struct CUpti_Subscriber_st *s = atomic_load(&g_active);
	if (s && s->callback && hook_enabled(domain, cbid))
		s->callback(s->userdata, (CUpti_CallbackDomain)domain, (CUpti_CallbackId)cbid, cbdata);
}

static const struct fakecuda_cupti_hook g_hook = { hook_enabled, hook_deliver };

static void clear_all(void)
{
	for (int d = 0; d < NDOMAINS; d++)
		for (int i = 0; i < MAX_CBID; i++)
			atomic_store(&g_enabled[d][i], 0);
}

static void copy_name(char *dst, size_t n, const char *src)
{
	if (dst && n)
		snprintf(dst, n, "%s", src);
}

static CUptiResult subscribe(CUpti_SubscriberHandle *out, CUpti_CallbackFunc cb, void *ud,
			     const char *name, char *old, size_t oldsz)
{
	if (!out)
		return ret(CUPTI_ERROR_INVALID_PARAMETER);
	pthread_mutex_lock(&g_lock);
	if (atomic_load(&g_active)) {
		copy_name(old, oldsz, g_sub.name);
		pthread_mutex_unlock(&g_lock);
		*out = NULL;
		return ret(CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED);
	}
	clear_all();
	g_sub.callback = cb;
	g_sub.userdata = ud;
	if (name && *name)
		snprintf(g_sub.name, sizeof(g_sub.name), "CUPTI for %.53s", name);
	else
		snprintf(g_sub.name, sizeof(g_sub.name), "CUPTI");
	atomic_store(&g_active, &g_sub);
	fakecuda_set_cupti_hook(&g_hook);
	pthread_mutex_unlock(&g_lock);
	*out = &g_sub;
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult CUPTIAPI cuptiSubscribe(CUpti_SubscriberHandle *subscriber,
					   CUpti_CallbackFunc callback, void *userdata)
{
	return subscribe(subscriber, callback, userdata, NULL, NULL, 0);
}

EXPORT CUptiResult CUPTIAPI cuptiSubscribe_v2(CUpti_SubscriberHandle *subscriber,
					      CUpti_CallbackFunc callback, void *userdata,
					      CUpti_SubscriberParams *p)
{
	const char *name = NULL;
	char *old = NULL;
	size_t oldsz = 0;
	if (p) {
		if (p->structSize < CUpti_SubscriberParams_STRUCT_SIZE)
			return ret(CUPTI_ERROR_INVALID_PARAMETER);
		name = p->subscriberName;
		old = p->oldSubscriberName;
		oldsz = p->oldSubscriberSize;
	}
	return subscribe(subscriber, callback, userdata, name, old, oldsz);
}

static int valid(CUpti_SubscriberHandle s)
{
	return s && s == atomic_load(&g_active);
}

EXPORT CUptiResult CUPTIAPI cuptiUnsubscribe(CUpti_SubscriberHandle subscriber)
{
	pthread_mutex_lock(&g_lock);
	if (!valid(subscriber)) {
		pthread_mutex_unlock(&g_lock);
		return ret(CUPTI_ERROR_INVALID_PARAMETER);
	}
	atomic_store(&g_active, NULL);
	clear_all();
	fakecuda_set_cupti_hook(NULL);
	pthread_mutex_unlock(&g_lock);
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult CUPTIAPI cuptiFinalize(void)
{
	pthread_mutex_lock(&g_lock);
	atomic_store(&g_active, NULL);
	clear_all();
	fakecuda_set_cupti_hook(NULL);
	pthread_mutex_unlock(&g_lock);
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult CUPTIAPI cuptiEnableCallback(uint32_t enable, CUpti_SubscriberHandle subscriber,
						CUpti_CallbackDomain domain, CUpti_CallbackId cbid)
{
	if (!valid(subscriber) || domain <= CUPTI_CB_DOMAIN_INVALID || domain >= NDOMAINS ||
	    cbid >= domain_size(domain) || cbid >= MAX_CBID)
		return ret(CUPTI_ERROR_INVALID_PARAMETER);
	atomic_store(&g_enabled[domain][cbid], enable ? 1 : 0);
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult CUPTIAPI cuptiEnableDomain(uint32_t enable, CUpti_SubscriberHandle subscriber,
					      CUpti_CallbackDomain domain)
{
	if (!valid(subscriber) || domain <= CUPTI_CB_DOMAIN_INVALID || domain >= NDOMAINS)
		return ret(CUPTI_ERROR_INVALID_PARAMETER);
	uint32_t n = domain_size(domain);
	for (uint32_t i = 1; i < n && i < MAX_CBID; i++)
		atomic_store(&g_enabled[domain][i], enable ? 1 : 0);
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult CUPTIAPI cuptiEnableAllDomains(uint32_t enable, CUpti_SubscriberHandle subscriber)
{
	if (!valid(subscriber))
		return ret(CUPTI_ERROR_INVALID_PARAMETER);
	for (int d = CUPTI_CB_DOMAIN_INVALID + 1; d < NDOMAINS; d++)
		cuptiEnableDomain(enable, subscriber, (CUpti_CallbackDomain)d);
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult CUPTIAPI cuptiGetCallbackState(uint32_t *enable, CUpti_SubscriberHandle subscriber,
						  CUpti_CallbackDomain domain, CUpti_CallbackId cbid)
{
	if (!enable || !valid(subscriber) || domain <= CUPTI_CB_DOMAIN_INVALID ||
	    domain >= NDOMAINS || cbid >= domain_size(domain) || cbid >= MAX_CBID)
		return ret(CUPTI_ERROR_INVALID_PARAMETER);
	*enable = atomic_load(&g_enabled[domain][cbid]);
	return CUPTI_SUCCESS;
}

EXPORT CUptiResult CUPTIAPI cuptiSupportedDomains(size_t *domainCount, CUpti_DomainTable *domainTable)
{
	static CUpti_CallbackDomain table[] = {
		CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_CB_DOMAIN_RESOURCE,
		CUPTI_CB_DOMAIN_SYNCHRONIZE, CUPTI_CB_DOMAIN_NVTX, CUPTI_CB_DOMAIN_STATE,
	};
	if (!domainCount || !domainTable)
		return ret(CUPTI_ERROR_INVALID_PARAMETER);
	*domainCount = sizeof(table) / sizeof(table[0]);
	*domainTable = table;
	return CUPTI_SUCCESS;
}

#define R(x) { x, #x },
static const struct {
	CUptiResult code;
	const char *name;
} g_results[] = {
	R(CUPTI_SUCCESS)
	R(CUPTI_ERROR_INVALID_PARAMETER)
	R(CUPTI_ERROR_INVALID_DEVICE)
	R(CUPTI_ERROR_INVALID_CONTEXT)
	R(CUPTI_ERROR_INVALID_OPERATION)
	R(CUPTI_ERROR_OUT_OF_MEMORY)
	R(CUPTI_ERROR_HARDWARE)
	R(CUPTI_ERROR_API_NOT_IMPLEMENTED)
	R(CUPTI_ERROR_MAX_LIMIT_REACHED)
	R(CUPTI_ERROR_NOT_READY)
	R(CUPTI_ERROR_NOT_COMPATIBLE)
	R(CUPTI_ERROR_NOT_INITIALIZED)
	R(CUPTI_ERROR_INVALID_HANDLE)
	R(CUPTI_ERROR_INVALID_KIND)
	R(CUPTI_ERROR_DISABLED)
	R(CUPTI_ERROR_NOT_SUPPORTED)
	R(CUPTI_ERROR_INSUFFICIENT_PRIVILEGES)
	R(CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED)
	R(CUPTI_ERROR_UNKNOWN)
};
#undef R

EXPORT CUptiResult CUPTIAPI cuptiGetResultString(CUptiResult result, const char **str)
{
	if (!str)
		return ret(CUPTI_ERROR_INVALID_PARAMETER);
	for (size_t i = 0; i < sizeof(g_results) / sizeof(g_results[0]); i++)
		if (g_results[i].code == result) {
			*str = g_results[i].name;
			return CUPTI_SUCCESS;
		}
	*str = NULL;
	return ret(CUPTI_ERROR_INVALID_PARAMETER);
}

EXPORT CUptiResult CUPTIAPI cuptiGetLastError(void)
{
	CUptiResult r = t_last_error;
	t_last_error = CUPTI_SUCCESS;
	return r;
}
