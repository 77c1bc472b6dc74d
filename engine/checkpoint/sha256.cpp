// SHA-256 as specified in FIPS 180-4, sections 4.1.2, 4.2.2, 5.1.1, 5.3.3 and 6.2.
#include "engine/checkpoint/sha256.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <vector>

#include "engine/checkpoint/atomic_dir.h"

namespace lockstep::engine {

namespace {

constexpr std::array<uint32_t, 64> kRound = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr std::array<uint32_t, 8> kInitial = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                              0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

// A file is hashed through a buffer of this size: large enough that syscalls cost little next
// to the hashing, small enough not to matter for memory however large the checkpoint is.
constexpr size_t kFileChunk = 1 << 20;

// Byte by byte: input blocks may sit at any address, and this is right on any host byte order.
inline uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

inline void store_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// One round. Instead of shifting a..h down by one each round, the caller rotates which
// variable plays which role, so a round writes only d and h and no copies are made.
inline void round(uint32_t a, uint32_t b, uint32_t c, uint32_t& d, uint32_t e, uint32_t f, uint32_t g,
                  uint32_t& h, uint32_t k_plus_w) {
  const uint32_t s1 = std::rotr(e, 6) ^ std::rotr(e, 11) ^ std::rotr(e, 25);
  const uint32_t ch = (e & f) ^ (~e & g);
  const uint32_t t1 = h + s1 + ch + k_plus_w;
  const uint32_t s0 = std::rotr(a, 2) ^ std::rotr(a, 13) ^ std::rotr(a, 22);
  const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
  d += t1;
  h = t1 + s0 + maj;
}

void compress(std::array<uint32_t, 8>& state, const uint8_t* data, size_t blocks) {
  uint32_t w[64];
  for (; blocks > 0; --blocks, data += 64) {
    for (int i = 0; i < 16; ++i) w[i] = load_be32(data + 4 * i);
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = std::rotr(w[i - 15], 7) ^ std::rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = std::rotr(w[i - 2], 17) ^ std::rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i += 8) {
      round(a, b, c, d, e, f, g, h, kRound[i + 0] + w[i + 0]);
      round(h, a, b, c, d, e, f, g, kRound[i + 1] + w[i + 1]);
      round(g, h, a, b, c, d, e, f, kRound[i + 2] + w[i + 2]);
      round(f, g, h, a, b, c, d, e, kRound[i + 3] + w[i + 3]);
      round(e, f, g, h, a, b, c, d, kRound[i + 4] + w[i + 4]);
      round(d, e, f, g, h, a, b, c, kRound[i + 5] + w[i + 5]);
      round(c, d, e, f, g, h, a, b, kRound[i + 6] + w[i + 6]);
      round(b, c, d, e, f, g, h, a, kRound[i + 7] + w[i + 7]);
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

std::string to_hex(const std::array<uint8_t, 32>& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(2 * digest.size(), '0');
  for (size_t i = 0; i < digest.size(); ++i) {
    s[2 * i] = kDigits[digest[i] >> 4];
    s[2 * i + 1] = kDigits[digest[i] & 0xf];
  }
  return s;
}

}  // namespace

Sha256::Sha256() { reset(); }

void Sha256::reset() {
  state_ = kInitial;
  block_len_ = 0;
  total_bytes_ = 0;
}

void Sha256::update(const void* data, size_t bytes) {
  if (bytes == 0) return;  // data may be null then, and memcpy must not see a null pointer
  const auto* p = static_cast<const uint8_t*>(data);
  total_bytes_ += bytes;
  if (block_len_ > 0) {
    const size_t take = std::min(bytes, block_.size() - block_len_);
    std::memcpy(block_.data() + block_len_, p, take);
    block_len_ += take;
    p += take;
    bytes -= take;
    if (block_len_ < block_.size()) return;
    compress(state_, block_.data(), 1);
    block_len_ = 0;
  }
  // Whole blocks are hashed straight from the caller's memory, skipping the copy.
  const size_t whole = bytes / 64;
  compress(state_, p, whole);
  p += whole * 64;
  bytes -= whole * 64;
  std::memcpy(block_.data(), p, bytes);
  block_len_ = bytes;
}

std::array<uint8_t, 32> Sha256::finish() {
  const uint64_t bits = total_bytes_ * 8;
  // 0x80, zeros up to 56 mod 64, then the 64-bit big-endian length: one or two blocks.
  block_[block_len_++] = 0x80;
  if (block_len_ > 56) {
    std::memset(block_.data() + block_len_, 0, block_.size() - block_len_);
    compress(state_, block_.data(), 1);
    block_len_ = 0;
  }
  std::memset(block_.data() + block_len_, 0, 56 - block_len_);
  store_be32(block_.data() + 56, static_cast<uint32_t>(bits >> 32));
  store_be32(block_.data() + 60, static_cast<uint32_t>(bits));
  compress(state_, block_.data(), 1);

  std::array<uint8_t, 32> digest;
  for (size_t i = 0; i < state_.size(); ++i) store_be32(digest.data() + 4 * i, state_[i]);
  reset();
  return digest;
}

std::string sha256_hex(std::span<const std::byte> bytes) {
  Sha256 h;
  h.update(bytes.data(), bytes.size());
  return to_hex(h.finish());
}

std::string sha256_file_hex(const std::filesystem::path& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw IoError("open", path, errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  std::vector<uint8_t> buf(kFileChunk);
  Sha256 h;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError("read", path, errno);  // EISDIR for a directory lands here too
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<size_t>(n));
  }
  return to_hex(h.finish());
}

}  // namespace lockstep::engine
