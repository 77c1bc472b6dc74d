// Small f32 values written into device memory by value: the numbers travel inside the launch
// (the kernel's arguments), so the host may change its copy at once and nothing races. It is how
// per-step values (the learning rate) reach work that reads them from memory, such as a replayed
// CUDA graph, whose own arguments are frozen at capture.
#pragma once

#include <initializer_list>

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

inline constexpr int kMaxScalars = 8;

// dst[i] <- values[i] for every value given (at most kMaxScalars); dst is f32 on ctx's device
// with at least that many elements. Queued on the compute stream (CUDA); done on return (CPU).
void write_scalars(Context& ctx, Tensor& dst, std::initializer_list<float> values);

struct ScalarPack {
  float v[kMaxScalars];
  int n;
};

namespace cpu {
void write_scalars(Context&, Tensor& dst, const ScalarPack& values);
}
namespace cuda {
void write_scalars(Context&, Tensor& dst, const ScalarPack& values);
}

}  // namespace lockstep
