// Random fills from Philox4x32-10 keyed by (seed, offset): element i uses counter offset + i/4,
// word i % 4 (normal: Box-Muller over the counter's word pairs). The same (seed, offset) gives the
// same numbers on CPU and GPU (up to the last bits of log/cos on normals), whatever the threads.
#pragma once

#include <cstdint>

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

// t: any float dtype (f32 on CPU). Uniform in (lo, hi].
void fill_uniform(Context& ctx, Tensor& t, float lo, float hi, uint64_t seed, uint64_t offset);
void fill_normal(Context& ctx, Tensor& t, float mean, float stddev, uint64_t seed, uint64_t offset);
// Counter values consumed by a fill of n elements (advance the offset by this for the next fill).
constexpr uint64_t random_counters(int64_t n) { return static_cast<uint64_t>((n + 3) / 4); }

#define LS_RANDOM_BACKEND_DECLS                                                                  \
  void fill_uniform(Context&, Tensor& t, float lo, float hi, uint64_t seed, uint64_t offset);    \
  void fill_normal(Context&, Tensor& t, float mean, float stddev, uint64_t seed, uint64_t offset);
namespace cpu { LS_RANDOM_BACKEND_DECLS }
namespace cuda { LS_RANDOM_BACKEND_DECLS }
#undef LS_RANDOM_BACKEND_DECLS

}  // namespace lockstep
