// CPU dst += src for f32 tensors.
#include "kernels/accumulate.h"

#include "kernels/args.h"

namespace lockstep::cpu {

void accumulate_into(Context& ctx, const Tensor& src, Tensor& dst) {
  expect_on(ctx, src, "accumulate_into", "src");
  expect_on(ctx, dst, "accumulate_into", "dst");
  expect_cpu_f32({&src, &dst}, "accumulate_into");
  expect_numel(dst, src.numel(), "accumulate_into", "dst");
  const float* s = src.data<float>();
  float* d = dst.data<float>();
  const int64_t n = src.numel();
  for (int64_t i = 0; i < n; ++i) d[i] += s[i];
}

}  // namespace lockstep::cpu
