// CPU LARS gradient preparation: norms in double, then the scaled update direction.
#include <cmath>

#include "kernels/lars.h"

namespace lockstep::cpu {

void lars_scale_gradients(Context&, const Tensor& params, Tensor& grads, const Tensor& segments,
                          const Tensor& flags, float weight_decay, float eta, float grad_scale, Tensor& norms) {
  const float* w = params.data<float>();
  float* g = grads.data<float>();
  const uint32_t* seg = segments.data<uint32_t>();
  const uint8_t* fl = flags.data<uint8_t>();
  float* nr = norms.data<float>();
  for (int64_t s = 0; s < segments.dim(0); ++s) {
    const uint32_t b = seg[2 * s], e = seg[2 * s + 1];
    LS_CHECK(b <= e && e <= params.numel(), "lars_scale_gradients: segment " << s << " [" << b << ", " << e
                                                                            << ") is outside the buffer");
    double ww = 0, gg = 0;
    for (uint32_t i = b; i < e; ++i) {
      ww += double(w[i]) * w[i];
      double gs = double(grad_scale) * g[i];
      gg += gs * gs;
    }
    nr[2 * s] = static_cast<float>(std::sqrt(ww));
    nr[2 * s + 1] = static_cast<float>(std::sqrt(gg));
    const bool adapt = fl[s] & 1, decay = fl[s] & 2;
    const float trust = adapt ? lars_trust(nr[2 * s], nr[2 * s + 1], weight_decay, eta) : 1.f;
    const float wd = decay ? weight_decay : 0.f;
    for (uint32_t i = b; i < e; ++i) g[i] = trust * (grad_scale * g[i] + wd * w[i]);
  }
}

}  // namespace lockstep::cpu
