// Per-counter math of the random fills, shared by the CPU and CUDA backends. One Philox call
// (key = seed, counter = offset + j) gives elements 4j .. 4j+3:
//   uniform: element 4j+k = lo + (hi - lo) * u(word k), u in (0, 1]
//   normal:  Box-Muller on words (0, 1) -> elements 4j, 4j+1 (r cos, r sin) and on
//            words (2, 3) -> elements 4j+2, 4j+3, with r = sqrt(-2 ln u_a), angle 2 pi u_b.
// So an element's value depends only on (seed, offset, index), never on threads or length.
// fmaf is spelled out so the host and the device round the affine map identically (nvcc would
// contract a * b + c into an fma on its own, the host compiler might not). Uniform fills are
// bit-identical on both backends; normals differ only in the last bits of logf / sinf / cosf.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/args.h"
#include "kernels/half.h"
#include "kernels/philox.h"
#include "kernels/random.h"

namespace lockstep {

// The four uniform values in (lo, hi] of counter `counter` (lo itself only through rounding).
LS_HD void uniform4(uint64_t seed, uint64_t counter, float lo, float hi, float out[4]) {
  const Philox4 r = philox4x32_10(seed, counter);
  const float span = hi - lo;
  for (int k = 0; k < 4; ++k) out[k] = fmaf(span, philox_uniform(r.v[k]), lo);
}

// The four normal values (mean, stddev) of counter `counter`.
LS_HD void normal4(uint64_t seed, uint64_t counter, float mean, float stddev, float out[4]) {
  const Philox4 r = philox4x32_10(seed, counter);
  for (int pair = 0; pair < 2; ++pair) {
    const float radius = sqrtf(-2.0f * logf(philox_uniform(r.v[2 * pair])));
    const float angle = 6.28318530717958648f * philox_uniform(r.v[2 * pair + 1]);
    out[2 * pair] = fmaf(stddev, radius * cosf(angle), mean);
    out[2 * pair + 1] = fmaf(stddev, radius * sinf(angle), mean);
  }
}

inline void check_random_args(const Context& ctx, const Tensor& t, const char* op) {
  expect_on(ctx, t, op, "t");
  expect_float(t, op, "t");
}

}  // namespace lockstep
