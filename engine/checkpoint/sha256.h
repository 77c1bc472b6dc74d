// SHA-256 (FIPS 180-4) for the hashes recorded with checkpoint files, so that a changed or
// corrupted file is detected on load. Self-contained (no OpenSSL): digests are byte-exact with
// any other SHA-256, and files are hashed in fixed-size chunks, never read whole into memory.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace lockstep::engine {

class Sha256 {
 public:
  Sha256();
  // Any number of calls with any sizes (0 included) hash the same as one call with all the bytes.
  void update(const void* data, size_t bytes);
  // The digest of everything passed to update() since construction or the last finish(); the
  // object is then reset to empty, ready for the next message.
  std::array<uint8_t, 32> finish();

 private:
  void reset();

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> block_;  // a partial block waiting for more bytes
  size_t block_len_ = 0;
  uint64_t total_bytes_ = 0;  // the padding encodes the length in bits, mod 2^64
};

// Lowercase, 64 hex characters.
std::string sha256_hex(std::span<const std::byte> bytes);
// The file's digest as sha256_hex; throws IoError (atomic_dir.h) naming the path when the file
// cannot be opened or read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace lockstep::engine
