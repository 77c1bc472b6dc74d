// CPU cast between f32 / bf16 / f16 (the CPU backend computes in f32 but must produce and read
// 16-bit tensors for the GPU path and checkpoints), and scale-and-check-finite.
#include "kernels/cast.h"

#include <cstring>

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
  if (src.dtype() == dst.dtype()) {
    std::memmove(dst.raw(), src.raw(), src.bytes());
    return;
  }
  const int64_t n = src.numel();
  for (int64_t i = 0; i < n; ++i) store(dst, i, load(src, i));
}

void scale_and_check_finite(Context& ctx, Tensor& x, float scale, Tensor& found_nonfinite) {
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
