// Tests of softmax cross-entropy with label smoothing: forward and gradient against a naive
// double reference, gradient against finite differences, the top-1 / top-5 rule on hand-made
// logits (ties with the label, K < 5), accumulation of stats, bad labels, argument errors, and
// CUDA against CPU for f32 / bf16 / f16.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/loss.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

struct Reference {
  double loss = 0;
  int top1 = 0, top5 = 0;
  std::vector<double> dlogits;
};

// Naive double reference: log-softmax by the definition, the smoothed target, and the top-k rule
// as a count of strictly greater logits.
Reference naive_ce(const std::vector<float>& z, const std::vector<int32_t>& y, int64_t K, double e,
                   double grad_scale) {
  const int64_t N = static_cast<int64_t>(y.size());
  Reference r;
  r.dlogits.resize(z.size());
  for (int64_t n = 0; n < N; ++n) {
    double m = z[n * K];
    for (int64_t k = 0; k < K; ++k) m = std::max(m, static_cast<double>(z[n * K + k]));
    double s = 0;
    for (int64_t k = 0; k < K; ++k) s += std::exp(z[n * K + k] - m);
    int greater = 0;
    for (int64_t k = 0; k < K; ++k) {
      const double logp = z[n * K + k] - m - std::log(s);
      const double q = (k == y[n] ? 1 - e : 0) + e / K;
      r.loss -= q * logp;
      r.dlogits[n * K + k] = grad_scale * (std::exp(logp) - q);
      greater += z[n * K + k] > z[n * K + y[n]];
    }
    r.top1 += greater == 0;
    r.top5 += greater < std::min<int64_t>(5, K);
  }
  return r;
}

std::vector<int32_t> random_labels(int64_t n, int64_t K, uint32_t seed) {
  std::vector<float> v = test::random_small_ints(n, seed, 0, static_cast<int>(K - 1));
  return std::vector<int32_t>(v.begin(), v.end());
}

OwnedTensor label_tensor(const std::vector<int32_t>& y) {
  OwnedTensor t(Device::cpu(), {static_cast<int64_t>(y.size())}, DType::i32);
  std::copy(y.begin(), y.end(), t.data<int32_t>());
  return t;
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

TEST(SoftmaxCrossEntropy, ForwardMatchesNaiveDouble) {
  Context ctx(Device::cpu());
  uint32_t seed = 1;
  for (int64_t K : {1, 3, 10, 1000}) {
    for (float e : {0.f, 0.1f}) {
      const int64_t N = 7;
      std::vector<float> z = test::random_floats(N * K, seed++, -5.f, 5.f);
      std::vector<int32_t> y = random_labels(N, K, seed++);
      OwnedTensor logits = test::host_tensor({N, K}, z), labels = label_tensor(y);
      OwnedTensor dlogits(Device::cpu(), {N, K}, DType::f32);
      OwnedTensor stats = test::host_tensor({3}, {0, 0, 0});
      test::poison(ctx, dlogits);
      Tensor d = dlogits;
      softmax_cross_entropy(ctx, logits, labels, e, 0.5f, &d, stats);
      const Reference r = naive_ce(z, y, K, e, 0.5);
      const std::vector<float> s = test::host_values(stats);
      EXPECT_NEAR(s[0], r.loss, 1e-5 * std::max(1.0, std::fabs(r.loss))) << "K " << K << " e " << e;
      EXPECT_EQ(s[1], r.top1) << "K " << K;
      EXPECT_EQ(s[2], r.top5) << "K " << K;
      EXPECT_LT(test::rel_error(test::host_values(dlogits), to_float(r.dlogits)), 1e-5) << "K " << K;
    }
  }
}

TEST(SoftmaxCrossEntropy, LargeLogitsAreStable) {
  Context ctx(Device::cpu());
  OwnedTensor logits = test::host_tensor({1, 3}, {1000.f, 999.f, -1000.f});
  OwnedTensor labels = label_tensor({1});
  OwnedTensor stats = test::host_tensor({3}, {0, 0, 0});
  OwnedTensor dlogits(Device::cpu(), {1, 3}, DType::f32);
  Tensor d = dlogits;
  softmax_cross_entropy(ctx, logits, labels, 0.f, 1.f, &d, stats);
  const double expected = std::log(1 + std::exp(-1.0)) + 1.0;  // -log softmax at the 999
  EXPECT_NEAR(test::host_values(stats)[0], expected, 1e-5);
  for (float v : test::host_values(dlogits)) EXPECT_TRUE(std::isfinite(v));
}

TEST(SoftmaxCrossEntropy, GradientMatchesFiniteDifferences) {
  Context ctx(Device::cpu());
  uint32_t seed = 50;
  for (auto [N, K] : {std::pair<int64_t, int64_t>{3, 7}, {1, 37}, {4, 2}}) {
    for (float e : {0.f, 0.1f}) {
      OwnedTensor logits = test::host_tensor({N, K}, test::random_floats(N * K, seed++, -2.f, 2.f));
      OwnedTensor labels = label_tensor(random_labels(N, K, seed++));
      OwnedTensor stats(Device::cpu(), {3}, DType::f32);
      auto loss = [&] {
        zero(ctx, stats);
        softmax_cross_entropy(ctx, logits, labels, e, 1.f, nullptr, stats);
        return static_cast<double>(test::host_values(stats)[0]);
      };
      OwnedTensor dlogits(Device::cpu(), {N, K}, DType::f32);
      test::poison(ctx, dlogits);
      Tensor d = dlogits;
      zero(ctx, stats);
      softmax_cross_entropy(ctx, logits, labels, e, 1.f, &d, stats);
      test::expect_gradient(loss, logits.data<float>(), N * K, test::host_values(dlogits), "dlogits");
    }
  }
}

TEST(SoftmaxCrossEntropy, TopKCountsWithTiesAndSmallK) {
  Context ctx(Device::cpu());
  // Row logits [1, 2, 2, 2, 0, 3] with each label:
  //   label 0 (1): 4 greater -> top-5 only;  label 1 (2): 1 greater (the 3) -> top-5 only;
  //   label 4 (0): 5 greater -> neither;     label 5 (3): none greater -> both.
  const std::vector<float> row{1, 2, 2, 2, 0, 3};
  std::vector<float> z;
  for (int i = 0; i < 4; ++i) z.insert(z.end(), row.begin(), row.end());
  OwnedTensor logits = test::host_tensor({4, 6}, z);
  OwnedTensor labels = label_tensor({0, 1, 4, 5});
  OwnedTensor stats = test::host_tensor({3}, {0, 0, 0});
  softmax_cross_entropy(ctx, logits, labels, 0.f, 1.f, nullptr, stats);
  EXPECT_EQ(test::host_values(stats)[1], 1.f);
  EXPECT_EQ(test::host_values(stats)[2], 3.f);

  // All logits equal: ties favour the label, so it is top-1.
  OwnedTensor flat = test::host_tensor({2, 6}, std::vector<float>(12, 0.5f));
  OwnedTensor flat_labels = label_tensor({0, 5});
  OwnedTensor s2 = test::host_tensor({3}, {0, 0, 0});
  softmax_cross_entropy(ctx, flat, flat_labels, 0.f, 1.f, nullptr, s2);
  EXPECT_EQ(test::host_values(s2)[1], 2.f);
  EXPECT_EQ(test::host_values(s2)[2], 2.f);
  EXPECT_NEAR(test::host_values(s2)[0], 2 * std::log(6.0), 1e-5);

  // K = 3 < 5: top-5 means top-3, always correct; the smallest logit is not top-1.
  OwnedTensor small = test::host_tensor({2, 3}, {3, 2, 1, 1, 2, 3});
  OwnedTensor small_labels = label_tensor({2, 2});
  OwnedTensor s3 = test::host_tensor({3}, {0, 0, 0});
  softmax_cross_entropy(ctx, small, small_labels, 0.f, 1.f, nullptr, s3);
  EXPECT_EQ(test::host_values(s3)[1], 1.f);
  EXPECT_EQ(test::host_values(s3)[2], 2.f);

  // K = 1: the loss is 0 and the sample is always right.
  OwnedTensor one = test::host_tensor({1, 1}, {-7.f});
  OwnedTensor one_label = label_tensor({0});
  OwnedTensor s4 = test::host_tensor({3}, {0, 0, 0});
  OwnedTensor d4(Device::cpu(), {1, 1}, DType::f32);
  Tensor d4v = d4;
  softmax_cross_entropy(ctx, one, one_label, 0.1f, 1.f, &d4v, s4);
  EXPECT_EQ(test::host_values(s4), (std::vector<float>{0.f, 1.f, 1.f}));
  EXPECT_NEAR(test::host_values(d4)[0], 0.f, 1e-7);
}

TEST(SoftmaxCrossEntropy, StatsAccumulateAcrossCalls) {
  Context ctx(Device::cpu());
  const int64_t N = 5, K = 8;
  std::vector<float> z = test::random_floats(N * K, 70, -3.f, 3.f);
  std::vector<int32_t> y = random_labels(N, K, 71);
  OwnedTensor logits = test::host_tensor({N, K}, z), labels = label_tensor(y);
  OwnedTensor stats = test::host_tensor({3}, {1.5f, 2.f, 3.f});
  softmax_cross_entropy(ctx, logits, labels, 0.1f, 1.f, nullptr, stats);
  softmax_cross_entropy(ctx, logits, labels, 0.1f, 1.f, nullptr, stats);
  const Reference r = naive_ce(z, y, K, 0.1, 1.0);
  const std::vector<float> s = test::host_values(stats);
  EXPECT_NEAR(s[0], 1.5 + 2 * r.loss, 1e-5 * (1.5 + 2 * r.loss));
  EXPECT_EQ(s[1], 2.f + 2 * r.top1);
  EXPECT_EQ(s[2], 3.f + 2 * r.top5);
}

TEST(SoftmaxCrossEntropy, DlogitsMayAliasLogits) {
  Context ctx(Device::cpu());
  const int64_t N = 3, K = 11;
  std::vector<float> z = test::random_floats(N * K, 80, -3.f, 3.f);
  OwnedTensor labels = label_tensor({0, 5, 10});
  OwnedTensor a = test::host_tensor({N, K}, z), b = test::host_tensor({N, K}, z);
  OwnedTensor da(Device::cpu(), {N, K}, DType::f32);
  OwnedTensor s1 = test::host_tensor({3}, {0, 0, 0}), s2 = test::host_tensor({3}, {0, 0, 0});
  Tensor dav = da;
  softmax_cross_entropy(ctx, a, labels, 0.1f, 0.25f, &dav, s1);
  Tensor bv = b;
  softmax_cross_entropy(ctx, b, labels, 0.1f, 0.25f, &bv, s2);
  EXPECT_EQ(test::host_values(b), test::host_values(da));
  EXPECT_EQ(test::host_values(s1), test::host_values(s2));
}

TEST(SoftmaxCrossEntropy, BadLabelThrowsNamingTheSample) {
  Context ctx(Device::cpu());
  OwnedTensor logits = test::host_tensor({3, 4}, test::random_floats(12, 90));
  OwnedTensor stats = test::host_tensor({3}, {0, 0, 0});
  for (int32_t bad : {-1, 4}) {
    OwnedTensor labels = label_tensor({0, 3, bad});
    try {
      softmax_cross_entropy(ctx, logits, labels, 0.f, 1.f, nullptr, stats);
      ADD_FAILURE() << "no error for label " << bad;
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find("sample 2"), std::string::npos) << err.what();
    }
  }
  EXPECT_EQ(test::host_values(stats), (std::vector<float>{0, 0, 0}));  // untouched
}

TEST(SoftmaxCrossEntropy, ArgumentErrors) {
  Context ctx(Device::cpu());
  OwnedTensor logits(Device::cpu(), {2, 5}, DType::f32);
  zero(ctx, logits);
  OwnedTensor labels = label_tensor({0, 1});
  OwnedTensor stats(Device::cpu(), {3}, DType::f32);
  OwnedTensor bad_stats(Device::cpu(), {2}, DType::f32);
  OwnedTensor f_labels(Device::cpu(), {2}, DType::f32);
  OwnedTensor short_labels = label_tensor({0});
  OwnedTensor bad_d(Device::cpu(), {5, 2}, DType::f32);
  OwnedTensor h_logits(Device::cpu(), {2, 5}, DType::bf16);
  OwnedTensor flat(Device::cpu(), {10}, DType::f32);
  Tensor bd = bad_d;
  EXPECT_NO_THROW(softmax_cross_entropy(ctx, logits, labels, 0.f, 1.f, nullptr, stats));
  EXPECT_THROW(softmax_cross_entropy(ctx, logits, labels, 0.f, 1.f, nullptr, bad_stats), Error);
  EXPECT_THROW(softmax_cross_entropy(ctx, logits, f_labels, 0.f, 1.f, nullptr, stats), Error);
  EXPECT_THROW(softmax_cross_entropy(ctx, logits, short_labels, 0.f, 1.f, nullptr, stats), Error);
  EXPECT_THROW(softmax_cross_entropy(ctx, logits, labels, 0.f, 1.f, &bd, stats), Error);
  EXPECT_THROW(softmax_cross_entropy(ctx, h_logits, labels, 0.f, 1.f, nullptr, stats), Error);
  EXPECT_THROW(softmax_cross_entropy(ctx, flat, labels, 0.f, 1.f, nullptr, stats), Error);
  EXPECT_THROW(softmax_cross_entropy(ctx, logits, labels, -0.1f, 1.f, nullptr, stats), Error);
  EXPECT_THROW(softmax_cross_entropy(ctx, logits, labels, 1.5f, 1.f, nullptr, stats), Error);
}

class SoftmaxCrossEntropyCuda : public ::testing::TestWithParam<DType> {};

OwnedTensor device_labels(Context& gpu, const std::vector<int32_t>& y) {
  OwnedTensor h = label_tensor(y);
  OwnedTensor d(gpu.device(), h.shape(), DType::i32);
  copy(gpu, h, d);
  return d;
}

TEST_P(SoftmaxCrossEntropyCuda, MatchesCpu) {
  LS_REQUIRE_GPU();
  const DType dt = GetParam();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  uint32_t seed = 100;
  for (auto [N, K] : {std::pair<int64_t, int64_t>{8, 10}, {3, 1000}, {5, 3}, {1, 1}, {4, 21841}, {300, 100}}) {
    for (float e : {0.f, 0.1f}) {
      // The CPU sees the logits rounded to dt, so both backends rank the same values and the
      // counts match exactly.
      std::vector<float> z = test::rounded(test::random_floats(N * K, seed++, -4.f, 4.f), dt);
      std::vector<int32_t> y = random_labels(N, K, seed++);
      const std::string what = "N " + std::to_string(N) + " K " + std::to_string(K) + " e " + std::to_string(e);
      OwnedTensor hz = test::host_tensor({N, K}, z), hy = label_tensor(y);
      OwnedTensor hd(Device::cpu(), {N, K}, DType::f32);
      OwnedTensor hs = test::host_tensor({3}, {0.5f, 1.f, 2.f});
      Tensor hdv = hd;
      softmax_cross_entropy(cpu, hz, hy, e, 1.f / N, &hdv, hs);

      OwnedTensor dz = test::device_tensor(gpu, {N, K}, z, dt), dy = device_labels(gpu, y);
      OwnedTensor dd(gpu.device(), {N, K}, dt);
      OwnedTensor ds = test::device_tensor(gpu, {3}, {0.5f, 1.f, 2.f});
      test::poison(gpu, dd);
      Tensor ddv = dd;
      softmax_cross_entropy(gpu, dz, dy, e, 1.f / N, &ddv, ds);
      const std::vector<float> gs = test::to_host_f32(gpu, ds), cs = test::host_values(hs);
      EXPECT_NEAR(gs[0], cs[0], 1e-4 * std::fabs(cs[0])) << what;
      EXPECT_EQ(gs[1], cs[1]) << what;
      EXPECT_EQ(gs[2], cs[2]) << what;
      EXPECT_LT(test::rel_error(test::to_host_f32(gpu, dd), test::host_values(hd)), test::tolerance(dt)) << what;

      // Evaluation (no dlogits) accumulates the same stats again.
      softmax_cross_entropy(gpu, dz, dy, e, 1.f / N, nullptr, ds);
      const std::vector<float> gs2 = test::to_host_f32(gpu, ds);
      EXPECT_NEAR(gs2[0] - 0.5f, 2 * (cs[0] - 0.5f), 2e-4 * std::fabs(cs[0])) << what;
      EXPECT_EQ(gs2[1], 2 * cs[1] - 1.f) << what;
      EXPECT_EQ(gs2[2], 2 * cs[2] - 2.f) << what;
    }
  }
}

// The loss sum is reduced in a fixed order (kernels/cuda/loss.cu): repeated runs give the same
// bits, with more samples than the kernel has blocks (several rows per block) and with fewer.
TEST_P(SoftmaxCrossEntropyCuda, LossSumIsTheSameBitsEveryRun) {
  LS_REQUIRE_GPU();
  const DType dt = GetParam();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  for (auto [N, K] : {std::pair<int64_t, int64_t>{5000, 1000}, {257, 10}}) {
    std::vector<float> z = test::rounded(test::random_floats(N * K, 21, -4.f, 4.f), dt);
    std::vector<int32_t> y = random_labels(N, K, 22);
    OwnedTensor dz = test::device_tensor(gpu, {N, K}, z, dt), dy = device_labels(gpu, y);
    OwnedTensor dd(gpu.device(), {N, K}, dt);
    Tensor ddv = dd;
    std::vector<float> first;
    for (int run = 0; run < 5; ++run) {
      OwnedTensor ds = test::device_tensor(gpu, {3}, {0.f, 0.f, 0.f});
      softmax_cross_entropy(gpu, dz, dy, 0.1f, 1.f / N, &ddv, ds);
      const std::vector<float> s = test::to_host_f32(gpu, ds);
      if (run == 0) first = s;
      else EXPECT_EQ(s, first) << "N " << N << " run " << run;  // bit for bit: float == on each
    }
    OwnedTensor hz = test::host_tensor({N, K}, z), hy = label_tensor(y);
    OwnedTensor hs = test::host_tensor({3}, {0.f, 0.f, 0.f});
    softmax_cross_entropy(cpu, hz, hy, 0.1f, 1.f / N, nullptr, hs);
    EXPECT_NEAR(first[0], test::host_values(hs)[0], 1e-4 * std::fabs(test::host_values(hs)[0])) << "N " << N;
    EXPECT_EQ(first[1], test::host_values(hs)[1]) << "N " << N;
  }
}

TEST_P(SoftmaxCrossEntropyCuda, DlogitsMayAliasLogits) {
  LS_REQUIRE_GPU();
  const DType dt = GetParam();
  Context gpu(Device::cuda(0));
  const int64_t N = 6, K = 1003;
  std::vector<float> z = test::rounded(test::random_floats(N * K, 7, -4.f, 4.f), dt);
  std::vector<int32_t> y = random_labels(N, K, 8);
  OwnedTensor a = test::device_tensor(gpu, {N, K}, z, dt), b = test::device_tensor(gpu, {N, K}, z, dt);
  OwnedTensor da(gpu.device(), {N, K}, dt), labels = device_labels(gpu, y);
  OwnedTensor s1 = test::device_tensor(gpu, {3}, {0, 0, 0}), s2 = test::device_tensor(gpu, {3}, {0, 0, 0});
  Tensor dav = da, bv = b;
  softmax_cross_entropy(gpu, a, labels, 0.1f, 1.f, &dav, s1);
  softmax_cross_entropy(gpu, b, labels, 0.1f, 1.f, &bv, s2);
  EXPECT_EQ(test::to_host_f32(gpu, b), test::to_host_f32(gpu, da));
}

TEST_P(SoftmaxCrossEntropyCuda, BadLabelsGiveZeroGradientNoCreditAndNaNLoss) {
  LS_REQUIRE_GPU();
  const DType dt = GetParam();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  const int64_t K = 7;
  std::vector<float> z = test::rounded(test::random_floats(3 * K, 9, -4.f, 4.f), dt);
  OwnedTensor dz = test::device_tensor(gpu, {3, K}, z, dt), dy = device_labels(gpu, {2, -1, 7});
  OwnedTensor dd(gpu.device(), {3, K}, dt);
  OwnedTensor ds = test::device_tensor(gpu, {3}, {0, 0, 0});
  test::poison(gpu, dd);
  Tensor ddv = dd;
  softmax_cross_entropy(gpu, dz, dy, 0.1f, 1.f, &ddv, ds);
  // The CPU on the one good row.
  OwnedTensor hz = test::host_tensor({1, K}, std::vector<float>(z.begin(), z.begin() + K));
  OwnedTensor hy = label_tensor({2});
  OwnedTensor hd(Device::cpu(), {1, K}, DType::f32);
  OwnedTensor hs = test::host_tensor({3}, {0, 0, 0});
  Tensor hdv = hd;
  softmax_cross_entropy(cpu, hz, hy, 0.1f, 1.f, &hdv, hs);
  const std::vector<float> g = test::to_host_f32(gpu, dd), gs = test::to_host_f32(gpu, ds);
  const std::vector<float> good(g.begin(), g.begin() + K), rest(g.begin() + K, g.end());
  EXPECT_LT(test::rel_error(good, test::host_values(hd)), test::tolerance(dt));
  EXPECT_EQ(rest, std::vector<float>(2 * K, 0.f));
  EXPECT_TRUE(std::isnan(gs[0]));
  EXPECT_EQ(gs[1], test::host_values(hs)[1]);
  EXPECT_EQ(gs[2], test::host_values(hs)[2]);
}

TEST_P(SoftmaxCrossEntropyCuda, ArgumentErrors) {
  LS_REQUIRE_GPU();
  const DType dt = GetParam();
  Context gpu(Device::cuda(0));
  OwnedTensor z(gpu.device(), {2, 5}, dt), labels = device_labels(gpu, {0, 1});
  OwnedTensor stats(gpu.device(), {3}, DType::f32), h_stats(Device::cpu(), {3}, DType::f32);
  OwnedTensor other(gpu.device(), {2, 5}, dt == DType::f32 ? DType::bf16 : DType::f32);
  OwnedTensor f16_stats(gpu.device(), {3}, DType::f16);
  Tensor ov = other;
  EXPECT_THROW(softmax_cross_entropy(gpu, z, labels, 0.f, 1.f, &ov, stats), Error);
  EXPECT_THROW(softmax_cross_entropy(gpu, z, labels, 0.f, 1.f, nullptr, h_stats), Error);
  EXPECT_THROW(softmax_cross_entropy(gpu, z, labels, 0.f, 1.f, nullptr, f16_stats), Error);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SoftmaxCrossEntropyCuda, ::testing::Values(DType::f32, DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace lockstep
