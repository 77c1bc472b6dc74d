// Gradient combinations (kernels/combine.h): the average and the decoded weighted sum against
// their formulas on the CPU (the average bit for bit, in rank order), axpy likewise, argument
// errors, and every CUDA op against the CPU op on fresh random inputs.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/combine.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

struct Inputs {
  std::vector<std::vector<float>> values;
  std::vector<OwnedTensor> owned;
  std::vector<Tensor> views;
};

Inputs make_inputs(Context& ctx, int k, int64_t n, uint32_t seed) {
  Inputs in;
  for (int i = 0; i < k; ++i) {
    in.values.push_back(test::random_floats(n, seed + static_cast<uint32_t>(i), -3.f, 3.f));
    in.owned.push_back(test::device_tensor(ctx, {n}, in.values.back()));
  }
  for (auto& t : in.owned) in.views.push_back(t.view());
  return in;
}

TEST(Combine, AverageIsTheRankOrderSumOverKBitForBit) {
  Context ctx(Device::cpu());
  const int64_t n = 2049;
  Inputs in = make_inputs(ctx, 3, n, 7);
  OwnedTensor out(Device::cpu(), {n}, DType::f32);
  combine_gradients(ctx, in.views, {}, out);
  const std::vector<float> got = test::host_values(out);
  for (int64_t i = 0; i < n; ++i) {
    const float want = ((in.values[0][i] + in.values[1][i]) + in.values[2][i]) / 3.f;
    ASSERT_EQ(got[i], want) << i;
  }
}

TEST(Combine, CoefficientsAccumulateInDouble) {
  Context ctx(Device::cpu());
  const int64_t n = 1000;
  Inputs in = make_inputs(ctx, 4, n, 17);
  const std::vector<double> a{0.5, -1.25, 2.0, 1.0 / 3.0};
  OwnedTensor out(Device::cpu(), {n}, DType::f32);
  combine_gradients(ctx, in.views, a, out);
  const std::vector<float> got = test::host_values(out);
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0;
    for (size_t k = 0; k < a.size(); ++k) acc += a[k] * static_cast<double>(in.values[k][i]);
    ASSERT_EQ(got[i], static_cast<float>(acc)) << i;
  }
}

TEST(Combine, AxpyAddsTheScaledVector) {
  Context ctx(Device::cpu());
  OwnedTensor x = test::host_tensor({3}, {1, 2, 3}), y = test::host_tensor({3}, {10, 20, 30});
  axpy(ctx, 0.5f, x, y);
  EXPECT_EQ(test::host_values(y), (std::vector<float>{10.5f, 21.f, 31.5f}));
}

TEST(Combine, ArgumentErrors) {
  Context ctx(Device::cpu());
  OwnedTensor a = test::host_tensor({3}, {1, 2, 3}), short_t = test::host_tensor({2}, {1, 2});
  OwnedTensor out(Device::cpu(), {3}, DType::f32), ints(Device::cpu(), {3}, DType::i32);
  EXPECT_THROW(combine_gradients(ctx, {}, {}, out), Error);
  EXPECT_THROW(combine_gradients(ctx, {a.view(), a.view()}, {1.0}, out), Error);  // one coefficient for two
  EXPECT_THROW(combine_gradients(ctx, {short_t.view()}, {}, out), Error);
  EXPECT_THROW(combine_gradients(ctx, {a.view()}, {}, ints), Error);
  std::vector<Tensor> many(kMaxCombine + 1, a.view());
  EXPECT_THROW(combine_gradients(ctx, many, {}, out), Error);
  EXPECT_THROW(axpy(ctx, 1.f, short_t, out), Error);
}

TEST(CombineCuda, MatchesCpu) {
  LS_REQUIRE_GPU();
  Context cpu(Device::cpu()), gpu(Device::cuda(0));
  const int64_t n = 100003;
  for (int k : {1, 2, 5}) {
    SCOPED_TRACE(k);
    Inputs hc = make_inputs(cpu, k, n, 40), hg = make_inputs(gpu, k, n, 40);
    std::vector<double> a;
    for (int i = 0; i < k; ++i) a.push_back(0.3 * (i + 1) - 0.7);
    for (bool average : {true, false}) {
      OwnedTensor oc(Device::cpu(), {n}, DType::f32), og(gpu.device(), {n}, DType::f32);
      combine_gradients(cpu, hc.views, average ? std::vector<double>{} : a, oc);
      combine_gradients(gpu, hg.views, average ? std::vector<double>{} : a, og);
      EXPECT_LT(test::rel_error(test::to_host_f32(gpu, og), test::host_values(oc)), 1e-6) << average;
    }
    OwnedTensor yc = test::host_tensor({n}, hc.values[0]), yg = test::device_tensor(gpu, {n}, hc.values[0]);
    axpy(cpu, -0.75f, hc.views.back(), yc);
    axpy(gpu, -0.75f, hg.views.back(), yg);
    EXPECT_LT(test::rel_error(test::to_host_f32(gpu, yg), test::host_values(yc)), 1e-6);
  }
}

}  // namespace
}  // namespace lockstep
