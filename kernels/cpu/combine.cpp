// CPU gradient combinations (kernels/combine.h): one pass, element arithmetic from combine_math.h.
#include "kernels/combine.h"

#include "kernels/combine_math.h"

namespace lockstep::cpu {

void combine_gradients(Context&, const CombineArgs& a, Tensor& out) {
  float* o = out.data<float>();
  const int64_t n = out.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) o[i] = combine_element(a, i);
}

void axpy(Context&, float alpha, const Tensor& x, Tensor& y) {
  const float* xs = x.data<float>();
  float* ys = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) ys[i] = axpy_element(alpha, xs[i], ys[i]);
}

}  // namespace lockstep::cpu
