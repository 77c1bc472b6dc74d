// Element types of lockstep tensors. Floating types are f32 (master weights, CPU), bf16 and f16
// (GPU activations); u8 holds images, i32 labels, u32 packed sign bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lockstep {

enum class DType : uint8_t { f32, bf16, f16, u8, i32, u32 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::u32: return 4;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::u32: return "u32";
  }
  return "?";
}

constexpr bool is_floating(DType t) { return t == DType::f32 || t == DType::bf16 || t == DType::f16; }

// Parses "f32", "bf16", "f16" (also "fp32", "fp16"); throws lockstep::Error naming the text.
DType parse_dtype(std::string_view text);

// The C++ type that stores each dtype on the host, for typed access (bf16/f16 are raw bits).
template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<uint32_t>() { return DType::u32; }

}  // namespace lockstep
