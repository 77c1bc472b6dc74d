// Tests of the random fills: range, moments and shape of 1e6 draws, the documented mapping from
// (seed, offset, index) to Philox counter and word, determinism, independence of the length,
// argument errors, and CUDA against CPU (uniform bit for bit, normal within 1e-5).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/philox.h"
#include "kernels/random.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

std::vector<float> uniform_cpu(int64_t n, float lo, float hi, uint64_t seed, uint64_t offset) {
  Context ctx(Device::cpu());
  OwnedTensor t(Device::cpu(), {n}, DType::f32);
  test::poison(ctx, t);
  fill_uniform(ctx, t, lo, hi, seed, offset);
  return test::host_values(t);
}

std::vector<float> normal_cpu(int64_t n, float mean, float stddev, uint64_t seed, uint64_t offset) {
  Context ctx(Device::cpu());
  OwnedTensor t(Device::cpu(), {n}, DType::f32);
  test::poison(ctx, t);
  fill_normal(ctx, t, mean, stddev, seed, offset);
  return test::host_values(t);
}

struct Moments {
  double mean, var;
};
Moments moments(const std::vector<float>& v) {
  double s = 0, s2 = 0;
  for (float x : v) s += x;
  const double mean = s / v.size();
  for (float x : v) s2 += (x - mean) * (x - mean);
  return {mean, s2 / (v.size() - 1)};
}

TEST(RandomCpu, UniformRangeAndMoments) {
  const int64_t n = 1000000;
  const float lo = -2.f, hi = 3.f;
  std::vector<float> v = uniform_cpu(n, lo, hi, 1234, 0);
  int below_half = 0;
  for (float x : v) {
    ASSERT_TRUE(x > lo && x <= hi) << x;
    below_half += x < 0.5f;
  }
  // Mean 0.5 (standard error 1.4e-3), variance 25/12 (standard error 1.9e-3): bounds of ~5 sigma.
  Moments m = moments(v);
  EXPECT_NEAR(m.mean, 0.5, 0.0075);
  EXPECT_NEAR(m.var, 25.0 / 12, 0.01);
  EXPECT_NEAR(below_half / double(n), 0.5, 0.0025);
  // Ten equal bins, each 1e5 +- 5 sigma (sigma = 300).
  std::vector<int> bins(10, 0);
  for (float x : v) bins[std::min(9, static_cast<int>((x - lo) / (hi - lo) * 10))]++;
  for (int b = 0; b < 10; ++b) EXPECT_NEAR(bins[b], 100000, 1500) << "bin " << b;
}

TEST(RandomCpu, NormalMomentsAndShape) {
  const int64_t n = 1000000;
  std::vector<float> v = normal_cpu(n, 1.5f, 2.f, 99, 17);
  for (float x : v) ASSERT_TRUE(std::isfinite(x));
  Moments m = moments(v);
  EXPECT_NEAR(m.mean, 1.5, 0.01);              // standard error 2e-3
  EXPECT_NEAR(std::sqrt(m.var), 2.0, 0.008);  // standard error 1.4e-3
  int within1 = 0, within2 = 0;
  double s3 = 0, s4 = 0;
  for (float x : v) {
    const double z = (x - 1.5) / 2.0;
    within1 += std::fabs(z) < 1;
    within2 += std::fabs(z) < 2;
    s3 += z * z * z;
    s4 += z * z * z * z;
  }
  EXPECT_NEAR(within1 / double(n), 0.682689, 0.0025);
  EXPECT_NEAR(within2 / double(n), 0.954500, 0.0015);
  EXPECT_NEAR(s3 / n, 0.0, 0.015);   // skewness
  EXPECT_NEAR(s4 / n, 3.0, 0.06);    // kurtosis
  // The two Box-Muller outputs of a pair (r cos, r sin) are uncorrelated.
  double c = 0;
  for (int64_t i = 0; i + 1 < n; i += 2) c += (v[i] - 1.5) * (v[i + 1] - 1.5);
  EXPECT_NEAR(c / (n / 2) / 4.0, 0.0, 0.015);
}

TEST(RandomCpu, ElementMapsToCounterAndWord) {
  // Element i uses Philox(seed, offset + i / 4), word i % 4; normals pair words (0,1), (2,3).
  const uint64_t seed = 0x123456789abcdefULL, offset = (1ULL << 33) + 5;
  const int64_t n = 103;
  std::vector<float> u = uniform_cpu(n, -1.f, 1.f, seed, offset);
  std::vector<float> g = normal_cpu(n, 0.f, 1.f, seed, offset);
  for (int64_t i = 0; i < n; ++i) {
    const Philox4 r = philox4x32_10(seed, offset + static_cast<uint64_t>(i / 4));
    const double ui = -1.0 + 2.0 * philox_uniform(r.v[i % 4]);
    EXPECT_NEAR(u[i], ui, 1e-6) << i;
    const int pair = static_cast<int>(i % 4) / 2;
    const double radius = std::sqrt(-2.0 * std::log(static_cast<double>(philox_uniform(r.v[2 * pair]))));
    const double angle = 2.0 * M_PI * philox_uniform(r.v[2 * pair + 1]);
    const double gi = radius * (i % 2 == 0 ? std::cos(angle) : std::sin(angle));
    EXPECT_NEAR(g[i], gi, 1e-5) << i;
  }
}

TEST(RandomCpu, DeterministicAndOffsetsDiffer) {
  EXPECT_EQ(uniform_cpu(1001, 0.f, 1.f, 7, 40), uniform_cpu(1001, 0.f, 1.f, 7, 40));
  EXPECT_EQ(normal_cpu(1001, 0.f, 1.f, 7, 40), normal_cpu(1001, 0.f, 1.f, 7, 40));
  // Another offset or another seed: (almost) every element changes.
  for (auto other : {uniform_cpu(1001, 0.f, 1.f, 7, 41), uniform_cpu(1001, 0.f, 1.f, 8, 40)}) {
    std::vector<float> base = uniform_cpu(1001, 0.f, 1.f, 7, 40);
    int same = 0;
    for (size_t i = 0; i < base.size(); ++i) same += base[i] == other[i];
    EXPECT_LT(same, 5);
  }
  std::vector<float> a = normal_cpu(1001, 0.f, 1.f, 7, 40), b = normal_cpu(1001, 0.f, 1.f, 7, 41);
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_LT(same, 5);
  // Offset + 1 is the same stream moved by four elements.
  std::vector<float> c = uniform_cpu(1001, 0.f, 1.f, 7, 41);
  std::vector<float> d = uniform_cpu(1005, 0.f, 1.f, 7, 40);
  EXPECT_EQ(c, std::vector<float>(d.begin() + 4, d.end()));
}

TEST(RandomCpu, ValueAtAnIndexDoesNotDependOnTheLength) {
  for (int64_t short_n : {10, 1, 3, 5}) {
    std::vector<float> s = uniform_cpu(short_n, -1.f, 1.f, 3, 9), l = uniform_cpu(1000, -1.f, 1.f, 3, 9);
    EXPECT_EQ(s, std::vector<float>(l.begin(), l.begin() + short_n));
    s = normal_cpu(short_n, 0.f, 1.f, 3, 9);
    l = normal_cpu(1000, 0.f, 1.f, 3, 9);
    EXPECT_EQ(s, std::vector<float>(l.begin(), l.begin() + short_n));
  }
  EXPECT_EQ(random_counters(10), 3u);
  EXPECT_EQ(random_counters(12), 3u);
  EXPECT_EQ(random_counters(0), 0u);
}

TEST(RandomCpu, ArgumentErrors) {
  Context ctx(Device::cpu());
  OwnedTensor bf(Device::cpu(), {4}, DType::bf16), i32(Device::cpu(), {4}, DType::i32);
  EXPECT_THROW(fill_uniform(ctx, bf, 0.f, 1.f, 1, 0), Error);  // CPU: f32 only
  EXPECT_THROW(fill_normal(ctx, i32, 0.f, 1.f, 1, 0), Error);
  OwnedTensor f(Device::cpu(), {4}, DType::f32);
  Tensor elsewhere(f.view().raw(), Shape{4}, DType::f32, Device::cuda(0));
  EXPECT_THROW(fill_uniform(ctx, elsewhere, 0.f, 1.f, 1, 0), Error);
}

TEST(RandomCuda, MatchesCpu) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  for (int64_t n : {1, 2, 3, 4, 5, 1000, 1000003}) {
    SCOPED_TRACE(n);
    const uint64_t seed = 77 + static_cast<uint64_t>(n), offset = 12345;
    const std::vector<float> u_ref = uniform_cpu(n, -0.5f, 2.5f, seed, offset);
    const std::vector<float> g_ref = normal_cpu(n, 0.f, 1.f, seed, offset);
    for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
      SCOPED_TRACE(std::string(dtype_name(dt)));
      OwnedTensor t(gpu.device(), {n}, dt);
      test::poison(gpu, t);
      fill_uniform(gpu, t, -0.5f, 2.5f, seed, offset);
      // The same fmaf on both sides, then the same round to nearest even: identical values.
      EXPECT_EQ(test::to_host_f32(gpu, t), test::rounded(u_ref, dt));
      test::poison(gpu, t);
      fill_normal(gpu, t, 0.f, 1.f, seed, offset);
      const std::vector<float> g = test::to_host_f32(gpu, t);
      const std::vector<float> want = test::rounded(g_ref, dt);
      // logf / sinf / cosf may differ in the last bits; a 16-bit rounding may then flip by one ulp.
      const double tol = dt == DType::f32 ? 1e-5 : (dt == DType::bf16 ? 4e-2 : 4e-3);
      int bad = 0;
      for (int64_t i = 0; i < n && bad < 5; ++i)
        if (!(std::fabs(g[i] - want[i]) <= tol)) {
          ++bad;
          ADD_FAILURE() << "normal[" << i << "]: " << g[i] << " vs " << want[i];
        }
    }
  }
}

TEST(RandomCuda, ArgumentErrors) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  OwnedTensor host(Device::cpu(), {4}, DType::f32), u8(gpu.device(), {4}, DType::u8);
  EXPECT_THROW(fill_uniform(gpu, host, 0.f, 1.f, 1, 0), Error);
  EXPECT_THROW(fill_normal(gpu, u8, 0.f, 1.f, 1, 0), Error);
}

}  // namespace
}  // namespace lockstep
