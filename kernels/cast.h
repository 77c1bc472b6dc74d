// Precision conversions and the loss-scaling check.
// cast(): any pair of f32 / bf16 / f16 (same type copies), round to nearest even.
// scale_and_check_finite(): x *= scale in place over an f32 buffer and raise a flag when any
// element (before scaling) is Inf or NaN, so fp16 loss scaling can skip a step without a sync.
#pragma once

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

// src and dst: same element count, float dtypes. Both backends support every pair.
void cast(Context& ctx, const Tensor& src, Tensor& dst);
// x: f32 (any shape). found_nonfinite: i32 (1), set to 1 when a non-finite is seen, otherwise
// left as it was (the caller zeroes it once per step).
void scale_and_check_finite(Context& ctx, Tensor& x, float scale, Tensor& found_nonfinite);

#define LS_CAST_BACKEND_DECLS                                    \
  void cast(Context&, const Tensor& src, Tensor& dst);           \
  void scale_and_check_finite(Context&, Tensor& x, float scale, Tensor& found_nonfinite);
namespace cpu { LS_CAST_BACKEND_DECLS }
namespace cuda { LS_CAST_BACKEND_DECLS }
#undef LS_CAST_BACKEND_DECLS

}  // namespace lockstep
