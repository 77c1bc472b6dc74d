// CPU image normalization: u8 NHWC -> f32 NHWC, one loop over the output elements.
#include "kernels/normalize.h"

#include "kernels/normalize_math.h"

namespace lockstep::cpu {

void normalize_images(Context& ctx, const Normalization& norm, const Tensor& src, const Tensor* flip,
                      Tensor& dst) {
  check_normalize_args(ctx, norm, src, flip, dst);
  expect_cpu_f32({&dst}, "normalize_images");
  const int64_t H = src.dim(1), W = src.dim(2), C = src.dim(3), n = dst.numel();
  const NormalizeParams p = normalize_params(norm);
  const uint8_t* s = src.data<uint8_t>();
  const uint8_t* f = flip ? flip->data<uint8_t>() : nullptr;
  float* d = dst.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    d[i] = normalize_value(p, s[normalize_src_index(i, H, W, C, f)], i % C);
}

}  // namespace lockstep::cpu
