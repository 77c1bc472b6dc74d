// SHA-256: the FIPS 180-4 / NIST example vectors, every way of splitting a message across
// update() calls, the lengths around the padding boundary (expected digests computed with
// Python's hashlib, an independent implementation), reuse after finish(), and file hashing:
// a multi-chunk file matches the in-memory digest, a missing file is an IoError naming it.
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/checkpoint/atomic_dir.h"
#include "engine/checkpoint/sha256.h"

namespace lockstep::engine {
namespace {

namespace fs = std::filesystem;

std::string hex(const std::array<uint8_t, 32>& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : digest) {
    s += kDigits[b >> 4];
    s += kDigits[b & 0xf];
  }
  return s;
}

std::string hex_of(std::string_view text) { return sha256_hex(std::as_bytes(std::span(text.data(), text.size()))); }

// The bytes the hashlib reference values below were computed from: bytes((i*31+7) & 0xff).
std::vector<std::byte> pattern(size_t n) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + 7) & 0xff);
  return v;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::path(testing::TempDir()) / "sha256-XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// ---- NIST vectors (FIPS 180-4 examples, NIST CSRC "SHA256.pdf" and the one-million-'a' test) -

TEST(Sha256Nist, Empty) {
  EXPECT_EQ(hex_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256Nist, Abc) {
  EXPECT_EQ(hex_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Nist, TwoBlockMessage448Bits) {
  EXPECT_EQ(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Nist, Message896Bits) {
  EXPECT_EQ(hex_of("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
                   "lmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256Nist, OneMillionA) {
  const std::string expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  const std::string a(1'000'000, 'a');
  EXPECT_EQ(hex_of(a), expected);
  // The same in 1000-byte pieces: not a multiple of the 64-byte block, so most calls straddle one.
  Sha256 h;
  for (size_t i = 0; i < a.size(); i += 1000) h.update(a.data() + i, 1000);
  EXPECT_EQ(hex(h.finish()), expected);
}

// ---- chunking and padding ------------------------------------------------------------------

TEST(Sha256, EverySplitPointGivesTheSameDigest) {
  const auto msg = pattern(200);
  EXPECT_EQ(sha256_hex(msg), "44cae5223d431caed4a9e32271d6abf17c3f2f4abac45fcdb48a99fcc6072a09");
  Sha256 h;
  h.update(msg.data(), msg.size());
  const auto whole = h.finish();
  for (size_t i = 0; i <= msg.size(); ++i) {
    h.update(msg.data(), i);
    h.update(msg.data() + i, msg.size() - i);
    ASSERT_EQ(h.finish(), whole) << "split at " << i;
  }
  for (size_t i = 0; i <= msg.size(); ++i) {
    for (size_t j = i; j <= msg.size(); ++j) {
      h.update(msg.data(), i);
      h.update(msg.data() + i, j - i);
      h.update(msg.data() + j, msg.size() - j);
      ASSERT_EQ(h.finish(), whole) << "splits at " << i << " and " << j;
    }
  }
  for (const std::byte& b : msg) h.update(&b, 1);
  EXPECT_EQ(h.finish(), whole) << "one byte at a time";
}

TEST(Sha256, LengthsAroundThePaddingBoundary) {
  // 55 is the longest message whose padding fits its last block; 56..63 need one more block.
  struct Case {
    size_t length;
    const char* digest;  // hashlib.sha256(bytes((i*31+7) & 0xff for i in range(length)))
  };
  const Case cases[] = {
      {55, "8aa994584139d128848eeebc4e815639ba5ab6e6e39574195a63ac4f14f7c43b"},
      {56, "ad574708f75c044c9b85de64cb568ee7711ff4f36448c6242f053ba8f6cc2b63"},
      {63, "280ed3e8ff1df845b2e7dfe6ac6cee817bef20e783cc65abc41b818b4d2fe076"},
      {64, "c6ab9724ade5b6a7a1edfffb12f3aa9181351355af8fd08c919952ad211339dd"},
      {65, "788367c73c7ddf4c53f65e68cc0d943e6227ab55b0e78ba63ace822b1c6301c0"},
      {119, "3d610547d68216dedf7435a4fb6260353911f6b3fd3f18805ddb8be285d726fe"},
      {120, "1f80156a804cb7862ad113e8200e9d74499723e7c7854d5f48776d3148e09656"},
      {128, "cc548ca2dec1f6fe4f58b2e27aa9c7521607df1130d140b55a4dad0665302356"},
  };
  for (const Case& c : cases) EXPECT_EQ(sha256_hex(pattern(c.length)), c.digest) << "length " << c.length;
}

TEST(Sha256, FinishResetsToEmpty) {
  Sha256 h;
  h.update("abc", 3);
  EXPECT_EQ(hex(h.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex(h.finish()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  h.update(nullptr, 0);
  h.update("ab", 2);
  h.update("c", 1);
  EXPECT_EQ(hex(h.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---- files ---------------------------------------------------------------------------------

TEST(Sha256File, MatchesTheInMemoryDigest) {
  TempDir dir;
  // Over 3 MiB and not a multiple of any power of two: several read chunks, a partial last one.
  for (size_t size : {size_t{0}, size_t{1}, size_t{64}, size_t{3 * 1024 * 1024 + 77}}) {
    const fs::path path = dir.path() / (std::to_string(size) + ".bin");  // not "f" + ...: GCC 12 -Wrestrict
    const auto bytes = pattern(size);
    write_file_synced(path, bytes);
    EXPECT_EQ(sha256_file_hex(path), sha256_hex(bytes)) << "size " << size;
  }
}

TEST(Sha256File, MissingFileThrowsIoErrorNamingThePath) {
  TempDir dir;
  const fs::path path = dir.path() / "missing.safetensors";
  try {
    sha256_file_hex(path);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.error_code(), ENOENT);
    EXPECT_EQ(e.path(), path);
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

TEST(Sha256File, DirectoryThrowsIoError) {
  TempDir dir;
  try {
    sha256_file_hex(dir.path());
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.error_code(), EISDIR);
    EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lockstep::engine
