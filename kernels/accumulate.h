// dst (f32) += src (any float dtype): folds a layer's gradient, computed in the compute dtype,
// into the f32 flat gradient buffer when micro-batches accumulate (or when the dtypes differ).
#pragma once

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

// src and dst have the same element count; dst is f32. src may be dst's own memory only if f32.
void accumulate_into(Context& ctx, const Tensor& src, Tensor& dst);

namespace cpu {
void accumulate_into(Context&, const Tensor& src, Tensor& dst);
}
namespace cuda {
void accumulate_into(Context&, const Tensor& src, Tensor& dst);
}

}  // namespace lockstep
