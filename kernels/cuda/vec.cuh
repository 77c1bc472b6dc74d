// 16-byte vector loads and stores of f32 / bf16 / f16 storage to and from fp32 registers: one
// memory instruction moves kVec<T> values (4 f32, 8 bf16 or f16). Callers guarantee 16-byte
// alignment (see aligned16); the conversions round as from_f32 does (to nearest even).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

template <typename T> constexpr int kVec = 16 / static_cast<int>(sizeof(T));

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
// Every operand a vector kernel would touch is 16-byte aligned (null ones are not touched).
inline bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (p && !aligned16(p)) return false;
  return true;
}

namespace detail {
__device__ __forceinline__ float2 unpack2(uint32_t w, const __nv_bfloat16*) {
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}
__device__ __forceinline__ float2 unpack2(uint32_t w, const __half*) {
  __half2 h = *reinterpret_cast<const __half2*>(&w);
  return __half22float2(h);
}
__device__ __forceinline__ uint32_t pack2(float a, float b, const __nv_bfloat16*) {
  __nv_bfloat162 h = __floats2bfloat162_rn(a, b);  // .x = a (low half), .y = b
  return *reinterpret_cast<const uint32_t*>(&h);
}
__device__ __forceinline__ uint32_t pack2(float a, float b, const __half*) {
  __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&h);
}
}  // namespace detail

template <typename T>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[kVec<T>]) {
  if constexpr (sizeof(T) == 4) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  } else {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = detail::unpack2(w[i], static_cast<const T*>(nullptr));
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
}

template <typename T>
__device__ __forceinline__ void store_vec(T* p, const float (&in)[kVec<T>]) {
  if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(in[0], in[1], in[2], in[3]);
  } else {
    uint4 v;
    v.x = detail::pack2(in[0], in[1], static_cast<const T*>(nullptr));
    v.y = detail::pack2(in[2], in[3], static_cast<const T*>(nullptr));
    v.z = detail::pack2(in[4], in[5], static_cast<const T*>(nullptr));
    v.w = detail::pack2(in[6], in[7], static_cast<const T*>(nullptr));
    *reinterpret_cast<uint4*>(p) = v;
  }
}

}  // namespace lockstep::cuda
