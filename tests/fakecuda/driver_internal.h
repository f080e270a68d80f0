/* Shared between the files of the libcuda double (driver*.c) only.
 *
 * Every exported CUDA entry point goes through TRACE/TRACE0: they count the
 * call, deliver the CUPTI entry callback, apply FAKECUDA_FAIL, run the body
 * and deliver the exit callback.  No lock is held around the callbacks. */
#ifndef FAKECUDA_DRIVER_INTERNAL_H
#define FAKECUDA_DRIVER_INTERNAL_H

/* As the real driver sources do: no version/ptds renaming, so every symbol
 * (cuMemAlloc_v2, cuMemAlloc legacy, cuMemsetD8Async_ptsz ...) is declared
 * with its real prototype and can be defined under its real name. */
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#include <cupti_callbacks.h>
#include <cupti_driver_cbid.h>
#include <generated_cuda_meta.h>

#include <stdint.h>

#include "fakecuda.h"

#define FC_EXPORT __attribute__((visibility("default")))
#define FC_HIDDEN __attribute__((visibility("hidden")))

struct _fc_call {
	CUpti_CallbackData data;
	const struct fakecuda_cupti_hook *hook;
	uint64_t correlation_data;
	uint32_t cbid;
	int delivered;
};

/* Returns 1 when FAKECUDA_FAIL fails this call (*rc set, skip the body). */
FC_HIDDEN int _fc_enter(struct _fc_call *c, uint32_t cbid, const char *name,
			const void *params, CUresult *rc);
FC_HIDDEN CUresult _fc_exit(struct _fc_call *c, CUresult *rc);
/* Calls made so far to the symbol of this cbid. */
FC_HIDDEN uint64_t _fc_calls_by_cbid(uint32_t cbid);
/* 1 when NAME is SYMBOL or SYMBOL's base name (see FAKECUDA_FAIL). */
FC_HIDDEN int _fc_name_matches(const char *name, const char *symbol);
/* Bytes FAKECUDA_OTHERS_FILE says other processes hold (driver_others.c). */
FC_HIDDEN uint64_t _fc_others_bytes(void);

/* Process checkpoint (driver_checkpoint.c).  gate_enter/exit bracket every
 * traced call: new calls block while the process is locked or checkpointed.
 * released: 1 while the device memory is checkpointed (used reads 0).
 * start: at cuInit.  cupti_subscribed: a subscriber was installed (the
 * process can never be locked again).  hidden: cuGetProcAddress must not
 * know SYMBOL (FAKECUDA_NO_CHECKPOINT). */
FC_HIDDEN void _fc_ckpt_gate_enter(uint32_t cbid);
FC_HIDDEN void _fc_ckpt_gate_exit(uint32_t cbid);
FC_HIDDEN int _fc_ckpt_released(void);
FC_HIDDEN void _fc_ckpt_start(void);
FC_HIDDEN void _fc_ckpt_cupti_subscribed(void);
FC_HIDDEN int _fc_ckpt_hidden(const char *symbol);

#define TRACE(fn, expr, ...)                                                  \
	{                                                                     \
		fn##_params p_ = { __VA_ARGS__ };                             \
		struct _fc_call c_;                                           \
		CUresult rc_;                                                 \
		if (!_fc_enter(&c_, CUPTI_DRIVER_TRACE_CBID_##fn, #fn, &p_, &rc_)) \
			rc_ = (expr);                                         \
		return _fc_exit(&c_, &rc_);                                   \
	}

#define TRACE0(fn, expr)                                                      \
	{                                                                     \
		struct _fc_call c_;                                           \
		CUresult rc_;                                                 \
		if (!_fc_enter(&c_, CUPTI_DRIVER_TRACE_CBID_##fn, #fn, NULL, &rc_)) \
			rc_ = (expr);                                         \
		return _fc_exit(&c_, &rc_);                                   \
	}

#endif /* FAKECUDA_DRIVER_INTERNAL_H */
