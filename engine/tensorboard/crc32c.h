// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TensorFlow's record
// files, and TensorFlow's "masked" form of it. TensorFlow masks the CRCs it stores because a CRC
// computed over data that itself holds CRCs (a record file inside a record) is weak; the mask is
// a rotation plus a constant: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
//
// Byte-at-a-time with a 256-entry table: the event writer checksums a few hundred bytes per
// logged step, so nothing faster is needed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace lockstep::engine::tensorboard {

// The CRC-32C of `n` bytes at `data`, continued from `crc` (the CRC of the bytes before them;
// 0 to start). crc32c("123456789") = 0xE3069283.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32c(const void* data, size_t n) { return crc32c_extend(0, data, n); }
inline uint32_t crc32c(std::string_view s) { return crc32c(s.data(), s.size()); }

// TensorFlow's masked CRC (tensorflow/core/lib/hash/crc32c.h: Mask).
constexpr uint32_t mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
inline uint32_t masked_crc32c(std::string_view s) { return mask_crc(crc32c(s)); }

}  // namespace lockstep::engine::tensorboard
