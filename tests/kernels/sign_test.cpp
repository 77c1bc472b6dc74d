// Tests of the 1-bit sign ops: pack / unpack / vote against a naive scalar model for lengths
// that do and do not fill whole words, zeros, -0, NaN and ties; padding bits; argument errors;
// and CUDA against CPU bit for bit (pack from f32, bf16 and f16).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/copy.h"
#include "kernels/sign.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

const int64_t kLengths[] = {1, 31, 32, 33, 1000003};

OwnedTensor u32_tensor(Context& ctx, Shape s, const std::vector<uint32_t>& v) {
  OwnedTensor h(Device::cpu(), s, DType::u32);
  if (!v.empty()) std::memcpy(h.view().raw(), v.data(), h.bytes());
  OwnedTensor d(ctx.device(), s, DType::u32);
  copy(ctx, h, d);
  return d;
}

std::vector<uint32_t> u32_values(Context& ctx, const Tensor& t) {
  OwnedTensor h(Device::cpu(), t.shape(), DType::u32);
  copy(ctx, t, h);
  const uint32_t* p = h.data<uint32_t>();
  return std::vector<uint32_t>(p, p + h.numel());
}

std::vector<uint32_t> random_words(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<uint32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<uint32_t>(gen());
  return v;
}

// Random values with zeros, -0, NaN of both signs, infinities and tiny negatives mixed in.
std::vector<float> sign_inputs(int64_t n, uint32_t seed) {
  std::vector<float> v = test::random_floats(n, seed);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t i = 0; i < n; ++i) {
    if (i % 7 == 3) v[i] = 0.0f;
    if (i % 11 == 5) v[i] = -0.0f;
    if (i % 13 == 6) v[i] = nan;
    if (i % 17 == 8) v[i] = -nan;
    if (i % 19 == 9) v[i] = (i % 2) ? INFINITY : -INFINITY;
    if (i % 23 == 10) v[i] = -1e-30f;  // negative in f32 and bf16, -0 once rounded to f16
  }
  return v;
}

// The scalar model: 1 for x >= 0 including -0, 0 for x < 0 and NaN.
uint32_t naive_bit(float x) { return (!std::isnan(x) && (x > 0 || x == 0)) ? 1u : 0u; }

std::vector<uint32_t> naive_pack(const std::vector<float>& x) {
  std::vector<uint32_t> w(static_cast<size_t>(sign_words(static_cast<int64_t>(x.size()))), 0u);
  for (size_t i = 0; i < x.size(); ++i) w[i / 32] |= naive_bit(x[i]) << (i % 32);
  return w;
}

uint32_t bit_of(const std::vector<uint32_t>& words, size_t offset, int64_t i) {
  return (words[offset + static_cast<size_t>(i / 32)] >> (i % 32)) & 1u;
}

// rows: N x words row-major. Counts per element; ties take row 0's bit; padding stays 0.
std::vector<uint32_t> naive_vote(const std::vector<uint32_t>& rows, int N, int64_t n) {
  const int64_t words = sign_words(n);
  std::vector<uint32_t> out(static_cast<size_t>(words), 0u);
  for (int64_t i = 0; i < n; ++i) {
    int ones = 0;
    for (int r = 0; r < N; ++r) ones += static_cast<int>(bit_of(rows, static_cast<size_t>(r * words), i));
    const uint32_t bit = 2 * ones > N ? 1u : 2 * ones == N ? bit_of(rows, 0, i) : 0u;
    out[i / 32] |= bit << (i % 32);
  }
  return out;
}

void expect_padding_clear(const std::vector<uint32_t>& words, int64_t n) {
  if (n % 32 == 0) return;
  EXPECT_EQ(words.back() >> (n % 32), 0u) << "padding bits of the last word";
}

TEST(SignCpu, PackMatchesNaive) {
  Context ctx(Device::cpu());
  for (int64_t n : kLengths) {
    SCOPED_TRACE(n);
    std::vector<float> x = sign_inputs(n, static_cast<uint32_t>(n));
    OwnedTensor xt = test::host_tensor({n}, x);
    OwnedTensor packed(Device::cpu(), {sign_words(n)}, DType::u32);
    test::poison(ctx, packed);
    sign_pack(ctx, xt, packed);
    std::vector<uint32_t> got = u32_values(ctx, packed);
    EXPECT_EQ(got, naive_pack(x));
    expect_padding_clear(got, n);
  }
}

TEST(SignCpu, PackKnownBits) {
  Context ctx(Device::cpu());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Elements 0..4: +1, -1, +0, -0, NaN -> bits 1, 0, 1, 1, 0 = 0b01101.
  OwnedTensor x = test::host_tensor({5}, {1.f, -1.f, 0.f, -0.f, nan});
  OwnedTensor packed(Device::cpu(), {1}, DType::u32);
  sign_pack(ctx, x, packed);
  EXPECT_EQ(u32_values(ctx, packed)[0], 0b01101u);
  // Element 32 lands in bit 0 of word 1.
  std::vector<float> v(33, -1.f);
  v[32] = 2.f;
  v[31] = 3.f;
  OwnedTensor y = test::host_tensor({33}, v);
  OwnedTensor p2(Device::cpu(), {2}, DType::u32);
  sign_pack(ctx, y, p2);
  EXPECT_EQ(u32_values(ctx, p2), (std::vector<uint32_t>{0x80000000u, 1u}));
}

TEST(SignCpu, UnpackMatchesNaive) {
  Context ctx(Device::cpu());
  for (int64_t n : kLengths) {
    SCOPED_TRACE(n);
    std::vector<uint32_t> words = random_words(sign_words(n), static_cast<uint32_t>(n) + 1);  // garbage padding
    OwnedTensor packed = u32_tensor(ctx, {sign_words(n)}, words);
    OwnedTensor out(Device::cpu(), {n}, DType::f32);
    test::poison(ctx, out);
    sign_unpack(ctx, packed, out);
    std::vector<float> got = test::host_values(out);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(got[i], bit_of(words, 0, i) ? 1.f : -1.f) << i;
  }
}

TEST(SignCpu, PackThenUnpackGivesTheSigns) {
  Context ctx(Device::cpu());
  const int64_t n = 1000;
  std::vector<float> x = sign_inputs(n, 5);
  OwnedTensor xt = test::host_tensor({n}, x), out(Device::cpu(), {n}, DType::f32);
  OwnedTensor packed(Device::cpu(), {sign_words(n)}, DType::u32);
  sign_pack(ctx, xt, packed);
  sign_unpack(ctx, packed, out);
  std::vector<float> got = test::host_values(out);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(got[i], naive_bit(x[i]) ? 1.f : -1.f) << i << ": " << x[i];
}

TEST(SignCpu, VoteMatchesNaive) {
  Context ctx(Device::cpu());
  uint32_t seed = 10;
  for (int64_t n : kLengths) {
    const int64_t words = sign_words(n);
    for (int N : {1, 2, 3, 4, 5, 6, 7, 8, 64, 255}) {
      if (n > 100000 && N > 8) continue;
      SCOPED_TRACE("n " + std::to_string(n) + " N " + std::to_string(N));
      // Random rows (their padding bits random too: the vote must still clear them).
      std::vector<uint32_t> rows = random_words(N * words, seed++);
      OwnedTensor packed = u32_tensor(ctx, {N, words}, rows);
      OwnedTensor vote(Device::cpu(), {words}, DType::u32);
      test::poison(ctx, vote);
      sign_vote(ctx, packed, n, vote);
      std::vector<uint32_t> got = u32_values(ctx, vote);
      ASSERT_EQ(got, naive_vote(rows, N, n));
      expect_padding_clear(got, n);
    }
  }
}

TEST(SignCpu, VoteOfPackedSigns) {
  // Rows packed from real inputs with zeros, -0 and NaN: the vote is the naive majority.
  Context ctx(Device::cpu());
  const int64_t n = 1001, words = sign_words(n);
  for (int N = 1; N <= 8; ++N) {
    std::vector<uint32_t> rows;
    for (int r = 0; r < N; ++r) {
      std::vector<uint32_t> w = naive_pack(sign_inputs(n, 100 + r));
      rows.insert(rows.end(), w.begin(), w.end());
    }
    OwnedTensor packed(Device::cpu(), {N, words}, DType::u32);
    for (int r = 0; r < N; ++r) {
      std::vector<float> x = sign_inputs(n, 100 + r);
      OwnedTensor xt = test::host_tensor({n}, x);
      Tensor row = packed.view().slice(r * words, words);
      sign_pack(ctx, xt, row);
    }
    OwnedTensor vote(Device::cpu(), {words}, DType::u32);
    sign_vote(ctx, packed, n, vote);
    EXPECT_EQ(u32_values(ctx, vote), naive_vote(rows, N, n)) << N;
  }
}

TEST(SignCpu, VoteTieTakesTheFirstRow) {
  Context ctx(Device::cpu());
  const uint32_t a = 0xA5A5F00Fu, b = ~a;
  OwnedTensor vote(Device::cpu(), {1}, DType::u32);
  // Two rows that disagree everywhere: every bit is a tie, so the vote is row 0.
  sign_vote(ctx, u32_tensor(ctx, {2, 1}, {a, b}), 32, vote);
  EXPECT_EQ(u32_values(ctx, vote)[0], a);
  sign_vote(ctx, u32_tensor(ctx, {2, 1}, {b, a}), 32, vote);
  EXPECT_EQ(u32_values(ctx, vote)[0], b);
  // Four rows 2-2 everywhere: row 0 again; a 3-1 split is a majority against row 0.
  sign_vote(ctx, u32_tensor(ctx, {4, 1}, {b, a, a, b}), 32, vote);
  EXPECT_EQ(u32_values(ctx, vote)[0], b);
  sign_vote(ctx, u32_tensor(ctx, {4, 1}, {b, a, a, a}), 32, vote);
  EXPECT_EQ(u32_values(ctx, vote)[0], a);
  // Three rows: plain majority, row 0 has no say beyond its vote.
  sign_vote(ctx, u32_tensor(ctx, {3, 1}, {b, a, a}), 32, vote);
  EXPECT_EQ(u32_values(ctx, vote)[0], a);
  // 20 elements: bits 20..31 cleared even though every row has them set.
  sign_vote(ctx, u32_tensor(ctx, {3, 1}, {~0u, ~0u, ~0u}), 20, vote);
  EXPECT_EQ(u32_values(ctx, vote)[0], 0xFFFFFu);
  // 64 rows, 32 of each: ties -> row 0; 33 ones -> 1.
  std::vector<uint32_t> rows(64);
  for (int r = 0; r < 64; ++r) rows[r] = (r % 2) ? a : b;
  sign_vote(ctx, u32_tensor(ctx, {64, 1}, rows), 32, vote);
  EXPECT_EQ(u32_values(ctx, vote)[0], b);
}

TEST(SignCpu, ArgumentErrors) {
  Context ctx(Device::cpu());
  OwnedTensor x(Device::cpu(), {33}, DType::f32), x_bf16(Device::cpu(), {33}, DType::bf16);
  OwnedTensor p2(Device::cpu(), {2}, DType::u32), p1(Device::cpu(), {1}, DType::u32);
  OwnedTensor p2_i32(Device::cpu(), {2}, DType::i32);
  EXPECT_THROW(sign_pack(ctx, x, p1), Error);
  EXPECT_THROW(sign_pack(ctx, x, p2_i32), Error);
  EXPECT_THROW(sign_pack(ctx, x_bf16, p2), Error);  // CPU: f32 only
  EXPECT_THROW(sign_unpack(ctx, p1, x), Error);
  EXPECT_THROW(sign_unpack(ctx, p2, x_bf16), Error);
  OwnedTensor rows(Device::cpu(), {3, 2}, DType::u32), vote(Device::cpu(), {2}, DType::u32);
  test::poison(ctx, rows);
  EXPECT_THROW(sign_vote(ctx, rows, 65, vote), Error);  // 65 elements need 3 words
  EXPECT_THROW(sign_vote(ctx, rows, 33, p1), Error);
  EXPECT_THROW(sign_vote(ctx, rows.view().reshape({6}), 33, vote), Error);
  EXPECT_THROW(sign_vote(ctx, rows, -1, vote), Error);
  OwnedTensor no_rows(Device::cpu(), {0, 2}, DType::u32);
  EXPECT_THROW(sign_vote(ctx, no_rows, 33, vote), Error);
  OwnedTensor too_many(Device::cpu(), {256, 1}, DType::u32), v1(Device::cpu(), {1}, DType::u32);
  EXPECT_THROW(sign_vote(ctx, too_many, 32, v1), Error);
  EXPECT_NO_THROW(sign_vote(ctx, rows, 33, vote));
}

TEST(SignCuda, PackMatchesCpuForEveryInputType) {
  LS_REQUIRE_GPU();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  for (int64_t n : kLengths) {
    const std::vector<float> x = sign_inputs(n, static_cast<uint32_t>(n) + 7);
    for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
      SCOPED_TRACE(std::to_string(n) + " " + std::string(dtype_name(dt)));
      // The CPU sees exactly the values the GPU holds (bf16 / f16 can round -1e-30 to -0).
      OwnedTensor xc = test::host_tensor({n}, test::rounded(x, dt));
      OwnedTensor pc(Device::cpu(), {sign_words(n)}, DType::u32);
      sign_pack(cpu, xc, pc);
      OwnedTensor xg = test::device_tensor(gpu, {n}, x, dt);
      OwnedTensor pg(gpu.device(), {sign_words(n)}, DType::u32);
      test::poison(gpu, pg);
      sign_pack(gpu, xg, pg);
      EXPECT_EQ(u32_values(gpu, pg), u32_values(cpu, pc));
    }
  }
}

TEST(SignCuda, UnpackMatchesCpuForEveryOutputType) {
  LS_REQUIRE_GPU();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  for (int64_t n : kLengths) {
    std::vector<uint32_t> words = random_words(sign_words(n), static_cast<uint32_t>(n) + 3);
    OwnedTensor pc = u32_tensor(cpu, {sign_words(n)}, words), pg = u32_tensor(gpu, {sign_words(n)}, words);
    OwnedTensor ref(Device::cpu(), {n}, DType::f32);
    sign_unpack(cpu, pc, ref);
    for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
      SCOPED_TRACE(std::to_string(n) + " " + std::string(dtype_name(dt)));
      OwnedTensor out(gpu.device(), {n}, dt);
      test::poison(gpu, out);
      sign_unpack(gpu, pg, out);
      EXPECT_EQ(test::to_host_f32(gpu, out), test::host_values(ref));
    }
  }
}

TEST(SignCuda, VoteMatchesCpu) {
  LS_REQUIRE_GPU();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  uint32_t seed = 1000;
  for (int64_t n : kLengths) {
    const int64_t words = sign_words(n);
    for (int N : {1, 2, 3, 4, 5, 6, 7, 8, 64, 255}) {
      SCOPED_TRACE("n " + std::to_string(n) + " N " + std::to_string(N));
      std::vector<uint32_t> rows = random_words(N * words, seed++);
      OwnedTensor rc = u32_tensor(cpu, {N, words}, rows), rg = u32_tensor(gpu, {N, words}, rows);
      OwnedTensor vc(Device::cpu(), {words}, DType::u32), vg(gpu.device(), {words}, DType::u32);
      sign_vote(cpu, rc, n, vc);
      test::poison(gpu, vg);
      sign_vote(gpu, rg, n, vg);
      ASSERT_EQ(u32_values(gpu, vg), u32_values(cpu, vc));
    }
  }
}

// Signum's momentum, m = beta * m + (1 - beta) * g, against the plain expression, bit for bit;
// beta = 0 copies g exactly.
TEST(SignCpu, MomentumMatchesNaive) {
  Context ctx(Device::cpu());
  for (int64_t n : kLengths) {
    for (float beta : {0.0f, 0.9f, 0.5f}) {
      const std::vector<float> g = test::random_floats(n, 7), m0 = test::random_floats(n, 8);
      OwnedTensor gt = test::host_tensor({n}, g), mt = test::host_tensor({n}, m0);
      sign_momentum(ctx, beta, gt, mt);
      const std::vector<float> got = test::host_values(mt);
      for (int64_t i = 0; i < n; ++i) {
        const float want = beta * m0[i] + (1.0f - beta) * g[i];
        ASSERT_EQ(std::memcmp(&got[i], &want, 4), 0) << "n " << n << " beta " << beta << " i " << i;
        if (beta == 0.0f) {
          ASSERT_EQ(got[i], g[i]);
        }
      }
    }
  }
  OwnedTensor a(Device::cpu(), {3}, DType::f32), b(Device::cpu(), {4}, DType::f32);
  EXPECT_THROW(sign_momentum(ctx, 0.9f, a, b), Error);
  EXPECT_THROW(sign_momentum(ctx, 1.0f, a, a), Error);
}

TEST(SignCuda, MomentumMatchesCpu) {
  LS_REQUIRE_GPU();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  for (int64_t n : kLengths) {
    const std::vector<float> g = test::random_floats(n, 9), m0 = test::random_floats(n, 10);
    OwnedTensor gc = test::host_tensor({n}, g), mc = test::host_tensor({n}, m0);
    OwnedTensor gg(gpu.device(), {n}, DType::f32), mg(gpu.device(), {n}, DType::f32);
    copy(gpu, gc, gg);
    copy(gpu, mc, mg);
    sign_momentum(cpu, 0.9f, gc, mc);
    sign_momentum(gpu, 0.9f, gg, mg);
    ASSERT_EQ(test::to_host_f32(gpu, mg), test::host_values(mc)) << "n " << n;
  }
}

TEST(SignCuda, ArgumentErrors) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  OwnedTensor x(gpu.device(), {33}, DType::f32), p_host(Device::cpu(), {2}, DType::u32);
  OwnedTensor p1(gpu.device(), {1}, DType::u32), x_i32(gpu.device(), {33}, DType::i32);
  OwnedTensor p2(gpu.device(), {2}, DType::u32);
  EXPECT_THROW(sign_pack(gpu, x, p_host), Error);
  EXPECT_THROW(sign_pack(gpu, x, p1), Error);
  EXPECT_THROW(sign_pack(gpu, x_i32, p2), Error);
  EXPECT_THROW(sign_unpack(gpu, p1, x), Error);
}

}  // namespace
}  // namespace lockstep
