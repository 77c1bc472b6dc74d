// CPU random fills: one Philox counter per group of four elements (kernels/random_math.h).
#include "kernels/random.h"

#include "kernels/random_math.h"

namespace lockstep::cpu {

namespace {
template <typename Gen>
void fill_by_counters(Tensor& t, uint64_t offset, Gen gen) {
  const int64_t n = t.numel();
  const int64_t counters = static_cast<int64_t>(random_counters(n));
  float* p = t.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < counters; ++j) {
    float v[4];
    gen(offset + static_cast<uint64_t>(j), v);
    for (int64_t k = 0; k < 4 && 4 * j + k < n; ++k) p[4 * j + k] = v[k];
  }
}
}  // namespace

void fill_uniform(Context& ctx, Tensor& t, float lo, float hi, uint64_t seed, uint64_t offset) {
  check_random_args(ctx, t, "fill_uniform");
  expect_cpu_f32({&t}, "fill_uniform");
  fill_by_counters(t, offset, [&](uint64_t c, float* v) { uniform4(seed, c, lo, hi, v); });
}

void fill_normal(Context& ctx, Tensor& t, float mean, float stddev, uint64_t seed, uint64_t offset) {
  check_random_args(ctx, t, "fill_normal");
  expect_cpu_f32({&t}, "fill_normal");
  fill_by_counters(t, offset, [&](uint64_t c, float* v) { normal4(seed, c, mean, stddev, v); });
}

}  // namespace lockstep::cpu
