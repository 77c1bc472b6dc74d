// CPU SGD: one loop over the flat buffer. The segments are validated here (sorted, disjoint,
// inside the buffer), which the CUDA path cannot do without a device-to-host copy.
#include "kernels/optimizer.h"

#include "kernels/optimizer_math.h"

namespace lockstep::cpu {

void sgd_update(Context& ctx, const SgdArgs& args, Tensor& params, const Tensor& grads,
                Tensor& momentum_buf, const Tensor& wd_segments) {
  const int64_t S = check_sgd_args(ctx, args, params, grads, momentum_buf, wd_segments);
  const int64_t n = params.numel();
  const uint32_t* seg = wd_segments.data<uint32_t>();
  for (int64_t s = 0; s < S; ++s) {
    LS_CHECK(seg[2 * s] <= seg[2 * s + 1] && static_cast<int64_t>(seg[2 * s + 1]) <= n &&
                 (s == 0 || seg[2 * s - 1] <= seg[2 * s]),
             "sgd_update: wd segment " << s << " [" << seg[2 * s] << ", " << seg[2 * s + 1]
                                       << ") is not sorted, disjoint and inside " << n << " parameters");
  }
  const SgdStepParams a = sgd_step_params(args);
  float* p = params.data<float>();
  const float* g = grads.data<float>();
  float* buf = args.momentum != 0.0f ? momentum_buf.data<float>() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    p[i] = sgd_element(a, p[i], g[i], buf ? buf + i : nullptr, in_wd_segment(seg, S, i));
}

}  // namespace lockstep::cpu
