// Routes an op to its backend by the context's device. A missing backend is a loud error,
// never a silent fallback to the other one. Every op dispatched here is timed by the context's
// OpProfile when one is set (kernels/op_profile.h). Use as the whole body of a public op:
//   void relu_forward(Context& ctx, const Tensor& x, Tensor& y) { LS_DISPATCH(ctx, relu_forward, ctx, x, y); }
#pragma once

#include "kernels/context.h"
#include "kernels/error.h"
#include "kernels/op_profile.h"

namespace lockstep {
[[noreturn]] void throw_no_cuda_backend(const char* op);
}

#if LOCKSTEP_HAVE_CUDA
#define LS_DISPATCH(ctx, fn, ...)                                  \
  do {                                                             \
    ::lockstep::OpScope ls_op_scope_((ctx), #fn);                  \
    if ((ctx).is_cuda()) return ::lockstep::cuda::fn(__VA_ARGS__); \
    return ::lockstep::cpu::fn(__VA_ARGS__);                       \
  } while (0)
#else
#define LS_DISPATCH(ctx, fn, ...)                                  \
  do {                                                             \
    ::lockstep::OpScope ls_op_scope_((ctx), #fn);                  \
    if ((ctx).is_cuda()) ::lockstep::throw_no_cuda_backend(#fn);   \
    return ::lockstep::cpu::fn(__VA_ARGS__);                       \
  } while (0)
#endif
