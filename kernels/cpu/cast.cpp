// CPU cast between f32 / bf16 / f16 (the CPU backend computes in f32 but must produce and read
// 16-bit tensors for the GPU path and checkpoints), and scale-and-check-finite.
#include "kernels/cast.h"

#include <cstring>

#include "kernels/args.h"
#include "kernels/half.h"

namespace lockstep::cpu {

namespace {
float load(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::f32: return static_cast<const float*>(t.raw())[i];
    case DType::bf16: return f32_from_bf16(static_cast<const uint16_t*>(t.raw())[i]);
    default: return f32_from_f16(static_cast<const uint16_t*>(t.raw())[i]);
  }
}
void store(Tensor& t, int64_t i, float v) {
  switch (t.dtype()) {
    case DType::f32: static_cast<float*>(t.raw())[i] = v; break;
    case DType::bf16: static_cast<uint16_t*>(t.raw())[i] = bf16_from_f32(v); break;
    default: static_cast<uint16_t*>(t.raw())[i] = f16_from_f32(v); break;
  }
}
}  // namespace

void cast(Context& ctx, const Tensor& src, Tensor& dst) {
  expect_on(ctx, src, "cast", "src");
  expect_on(ctx, dst, "cast", "dst");
  expect_float(src, "cast", "src");
  expect_float(dst, "cast", "dst");
  expect_numel(dst, src.numel(), "cast", "dst");
  if (src.dtype() == dst.dtype()) {
    std::memmove(dst.raw(), src.raw(), src.bytes());
    return;
  }
  const int64_t n = src.numel();
  for (int64_t i = 0; i < n; ++i) store(dst, i, load(src, i));
}

void scale_and_check_finite(Context& ctx, Tensor& x, float scale, Tensor& found_nonfinite) {
  expect_on(ctx, x, "scale_and_check_finite", "x");
  expect_on(ctx, found_nonfinite, "scale_and_check_finite", "found_nonfinite");
  expect_dtype(x, DType::f32, "scale_and_check_finite", "x");
  expect_dtype(found_nonfinite, DType::i32, "scale_and_check_finite", "found_nonfinite");
  expect_numel(found_nonfinite, 1, "scale_and_check_finite", "found_nonfinite");
  float* p = x.data<float>();
  bool bad = false;
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) {
    bad |= is_nonfinite(p[i]);
    p[i] *= scale;
  }
  if (bad) *found_nonfinite.data<int32_t>() = 1;
}

}  // namespace lockstep::cpu
