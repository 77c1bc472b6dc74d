// Bit-exact fp32 <-> bf16 / fp16 conversions on uint16_t storage, usable on host and device.
// Round to nearest even, NaN preserved, fp16 overflow to Inf, subnormals handled: these match
// CUDA's __float2bfloat16_rn / __float2half_rn, so CPU references round exactly as GPUs do.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LS_HD __host__ __device__ __forceinline__
#else
#define LS_HD inline
#endif

namespace lockstep {

LS_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

LS_HD float f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

LS_HD uint16_t bf16_from_f32(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

LS_HD float f32_from_bf16(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

LS_HD uint16_t f16_from_f32(float f) {
  uint32_t u = f32_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);      // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);     // rounds to >= 65520: Inf
  if (a < 0x38800000u) {                                                   // fp16 subnormal or zero
    if (a < 0x33000000u) return static_cast<uint16_t>(sign);               // < 2^-25 rounds to 0
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;                                             // 14..24 + 1
    uint32_t r = m >> (shift - 1 + 0);
    // r holds the result with one extra bit; round to nearest even using the bits shifted out
    uint32_t rest = m & ((1u << (shift - 1)) - 1u);
    uint32_t half = r & 1u;
    r >>= 1;
    if (half && (rest != 0 || (r & 1u))) r += 1;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = a - 0x38000000u;        // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);      // round to nearest even on the 13 dropped bits
  return static_cast<uint16_t>(sign | (r >> 13));
}

LS_HD float f32_from_f16(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  if (e == 0x1f) return f32_from_bits(sign | 0x7f800000u | (m << 13));     // Inf / NaN
  if (e == 0) {
    if (m == 0) return f32_from_bits(sign);
    float v = static_cast<float>(m) * (1.0f / 16777216.0f);               // m * 2^-24
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
}

}  // namespace lockstep

namespace lockstep {
// True for Inf and NaN, without relying on the host library's isfinite.
LS_HD bool is_nonfinite(float v) { return (f32_bits(v) & 0x7f800000u) == 0x7f800000u; }
}  // namespace lockstep
