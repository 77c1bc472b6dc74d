// Dispatch and argument checks for write_scalars.
#include "kernels/scalars.h"

#include "kernels/args.h"
#include "kernels/dispatch.h"

namespace lockstep {

void write_scalars(Context& ctx, Tensor& dst, std::initializer_list<float> values) {
  const int n = static_cast<int>(values.size());
  LS_CHECK(n <= kMaxScalars, "write_scalars: at most " << kMaxScalars << " values, got " << n);
  expect_on(ctx, dst, "write_scalars", "dst");
  expect_dtype(dst, DType::f32, "write_scalars", "dst");
  LS_CHECK(dst.numel() >= n, "write_scalars: dst holds " << dst.numel() << " values, " << n << " given");
  ScalarPack p{};
  p.n = n;
  int i = 0;
  for (float v : values) p.v[i++] = v;
  if (n == 0) return;
  LS_DISPATCH(ctx, write_scalars, ctx, dst, p);
}

}  // namespace lockstep
