// Dispatch and argument checks for kernels/combine.h.
#include "kernels/combine.h"

#include "kernels/args.h"
#include "kernels/dispatch.h"

namespace lockstep {

void combine_gradients(Context& ctx, const std::vector<Tensor>& inputs, const std::vector<double>& coefficients,
                       Tensor& out) {
  const char* op = "combine_gradients";
  const int k = static_cast<int>(inputs.size());
  LS_CHECK(k >= 1 && k <= kMaxCombine, op << ": 1 to " << kMaxCombine << " inputs, got " << k);
  LS_CHECK(coefficients.empty() || static_cast<int>(coefficients.size()) == k,
           op << ": " << coefficients.size() << " coefficients for " << k << " inputs");
  expect_on(ctx, out, op, "out");
  expect_dtype(out, DType::f32, op, "out");
  CombineArgs a;
  a.k = k;
  a.average = coefficients.empty();
  for (int i = 0; i < k; ++i) {
    expect_on(ctx, inputs[i], op, "inputs");
    expect_dtype(inputs[i], DType::f32, op, "inputs");
    expect_numel(inputs[i], out.numel(), op, "inputs");
    a.in[i] = inputs[i].data<float>();
    a.coef[i] = a.average ? 0.0 : coefficients[static_cast<size_t>(i)];
  }
  if (out.numel() == 0) return;
  LS_DISPATCH(ctx, combine_gradients, ctx, a, out);
}

void axpy(Context& ctx, float alpha, const Tensor& x, Tensor& y) {
  expect_on(ctx, x, "axpy", "x");
  expect_on(ctx, y, "axpy", "y");
  expect_dtype(x, DType::f32, "axpy", "x");
  expect_dtype(y, DType::f32, "axpy", "y");
  expect_numel(x, y.numel(), "axpy", "x");
  if (y.numel() == 0) return;
  LS_DISPATCH(ctx, axpy, ctx, alpha, x, y);
}

}  // namespace lockstep
