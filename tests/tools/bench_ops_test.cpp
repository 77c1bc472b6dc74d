// `lockstep bench ops` in-process on the tiny net on the CPU: a row for every layer, FLOPs that
// match a hand computation, JSON that parses, and bad options as ConfigErrors. Never the speed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tools/lockstep/cli_bench_data.h"
#include "kernels/op_profile.h"
#include "tools/lockstep/cli_bench_ops.h"
#include "tools/lockstep/cli_train.h"

namespace lockstep::cli {
namespace {

namespace fs = std::filesystem;

BenchOpsConfig parse(std::vector<std::string> args) {
  args.insert(args.begin(), "ops");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream notes;
  return parse_bench_ops_args(static_cast<int>(argv.size()), argv.data(), notes);
}

TEST(BenchOps, TinyOnCpuHasEveryLayerAndHandCheckedFlops) {
  const fs::path json = fs::path(::testing::TempDir()) / "lockstep_bench_ops.json";
  fs::remove(json);
  const BenchOpsConfig c =
      parse({"--arch", "tiny", "--device", "cpu", "--batch-size", "4", "--iters", "1", "--warmup", "0", "--json",
             json.string()});
  EXPECT_EQ(c.image_size, 32);
  EXPECT_EQ(c.classes, 10);
  std::ostringstream out;
  ASSERT_EQ(run_bench_ops(c, out), 0);
  const std::string text = out.str();
  for (const char* name : {"stem", "layer1.0", "layer2.0", "fc", "total", "sum of layers"})
    EXPECT_NE(text.find(name), std::string::npos) << name << "\n" << text;

  std::ifstream in(json);
  ASSERT_TRUE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["arch"], "tiny");
  EXPECT_EQ(j["batch"], 4);
  ASSERT_EQ(j["layers"].size(), 4u);
  std::map<std::string, nlohmann::json> rows;
  for (const auto& r : j["layers"]) rows[r["name"].get<std::string>()] = r;
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& [name, r] : rows) {
    EXPECT_GT(r["fwd_flops"].get<double>(), 0) << name;
    EXPECT_GT(r["bwd_flops"].get<double>(), 0) << name;
    EXPECT_GT(r["fwd_bytes"].get<double>(), 0) << name;
    EXPECT_GE(r["fwd_ms"].get<double>(), 0) << name;
    EXPECT_GE(r["bwd_ms"].get<double>(), 0) << name;
  }
  // The stem: conv 3x3, 3 -> 8 channels, stride 1, pad 1 on 4x32x32x3: 2*N*K*C*R*S*P*Q, plus
  // BN + ReLU at 5 FLOPs an output element; backward is the filter gradient only (no dx).
  const double N = 4, K = 8, C = 3, R = 3, S = 3, P = 32, Q = 32;
  const double conv = 2 * N * K * C * R * S * P * Q;
  EXPECT_DOUBLE_EQ(conv, 1769472.0);
  EXPECT_DOUBLE_EQ(rows["stem"]["fwd_flops"].get<double>(), conv + 5 * N * P * Q * K);
  EXPECT_DOUBLE_EQ(rows["stem"]["bwd_flops"].get<double>(), conv + 10 * N * P * Q * K);
  EXPECT_EQ(rows["stem"]["output_shape"], nlohmann::json({4, 32, 32, 8}));
  // layer1.0: two 3x3 convs 8 -> 8 on 32x32 (no projection): backward 2x forward for each.
  const double c8 = 2 * N * 8 * 8 * 9 * 32 * 32;
  EXPECT_DOUBLE_EQ(rows["layer1.0"]["fwd_flops"].get<double>(), 2 * c8 + 5 * N * 32 * 32 * 8 + 6 * N * 32 * 32 * 8);
  EXPECT_EQ(rows["layer2.0"]["kind"], "basic block + proj");
  EXPECT_EQ(rows["layer2.0"]["output_shape"], nlohmann::json({4, 16, 16, 16}));
  // fc: average pool over 4x16x16x16 and a 16 -> 10 GEMM.
  EXPECT_DOUBLE_EQ(rows["fc"]["fwd_flops"].get<double>(), 4.0 * 16 * 16 * 16 + 2 * N * 16 * 10);
  EXPECT_EQ(rows["fc"]["output_shape"], nlohmann::json({4, 10}));

  // Time by op: every op the tiny net runs, each as many times per pass as it has such layers
  // (stem + 2 blocks x 2 convs + 1 projection = 6 convs, each with a BN), the total their sum.
  std::map<std::string, nlohmann::json> ops;
  double sum = 0;
  for (const auto& o : j["ops_ms_per_pass"]) {
    ops[o["op"].get<std::string>()] = o;
    sum += o["ms"].get<double>();
  }
  EXPECT_EQ(ops["conv2d_forward"]["calls"].get<double>(), 6);
  EXPECT_EQ(ops["conv2d_backward_filter"]["calls"].get<double>(), 6);
  EXPECT_EQ(ops["conv2d_backward_data"]["calls"].get<double>(), 5) << "the stem needs no input gradient";
  EXPECT_EQ(ops["batchnorm_forward_train"]["calls"].get<double>(), 6);
  EXPECT_EQ(ops["batchnorm_backward"]["calls"].get<double>(), 6);
  EXPECT_EQ(ops["linear_forward"]["calls"].get<double>(), 1);
  EXPECT_FALSE(ops.count("plan_conv2d")) << "setup is not part of a pass";
  EXPECT_NEAR(j["sum_of_ops_ms"].get<double>(), sum, 1e-9);
  EXPECT_NE(text.find("time by op"), std::string::npos);
}

TEST(OpProfile, NestedOpsCountOnceAndCapacityDrops) {
  Context ctx(Device::cpu());
  OpProfile p(ctx, 2);
  ctx.set_op_profile(&p);
  {
    OpScope outer(ctx, "outer");
    OpScope inner(ctx, "inner");
  }
  for (int i = 0; i < 3; ++i) OpScope s(ctx, "leaf");
  ctx.set_op_profile(nullptr);
  { OpScope ignored(ctx, "unprofiled"); }
  int64_t dropped = -1;
  const std::vector<OpTime> t = p.collect(&dropped);
  std::map<std::string, int64_t> calls;
  for (const OpTime& o : t) calls[o.op] = o.calls;
  EXPECT_EQ(calls, (std::map<std::string, int64_t>{{"outer", 1}, {"leaf", 1}}));
  EXPECT_EQ(dropped, 2);
  EXPECT_TRUE(p.collect().empty()) << "collect starts over";
}

TEST(BenchOps, TopLimitsThePrintedRows) {
  std::ostringstream out;
  ASSERT_EQ(run_bench_ops(parse({"--arch", "tiny", "--device", "cpu", "--batch-size", "2", "--iters", "1",
                                 "--warmup", "0", "--top", "1"}),
                          out),
            0);
  EXPECT_NE(out.str().find("3 more layer(s) (--top 1)"), std::string::npos) << out.str();
}

TEST(BenchOps, BadOptionsAreConfigErrors) {
  auto option_of = [](std::vector<std::string> args) -> std::string {
    try {
      parse(std::move(args));
    } catch (const ConfigError& e) {
      return e.option().empty() ? std::string("?") + e.what() : e.option();
    }
    return "no error";
  };
  EXPECT_EQ(option_of({"--device", "cpu", "--iters", "0"}), "--iters");
  EXPECT_EQ(option_of({"--device", "cpu", "--batch-size", "x"}), "--batch-size");
  EXPECT_EQ(option_of({"--device", "cpu", "--arch", "resnet51"}), "--arch");
  EXPECT_EQ(option_of({"--device", "cpu", "--precision", "bf16"}), "--precision");
  EXPECT_EQ(option_of({"--device", "cpu", "--conv-algo", "quick"}), "--conv-algo");
  EXPECT_EQ(option_of({"--device", "cpu", "--stem-channels", "2"}), "--stem-channels");
  EXPECT_EQ(option_of({"--device", "cpu", "--arch", "resnet20", "--stem-space-to-depth"}), "--stem-space-to-depth");
  EXPECT_EQ(option_of({"--device", "cpu", "--stem-space-to-depth", "--stem-channels", "4"}), "--stem-space-to-depth");
  EXPECT_EQ(option_of({"--device", "tpu"}), "--device");
  EXPECT_EQ(option_of({"--device", "cpu", "--arch", "resnet20", "--image-size", "2"}), "--image-size");
  EXPECT_EQ(option_of({"--device", "cpu", "--top", "0"}), "--top");
  EXPECT_NE(option_of({"--device", "cpu", "--bogus", "1"}), "no error");
  EXPECT_THROW(parse({"--help"}), HelpRequested);
  // Through the bench dispatcher.
  const char* argv[] = {"bench", "ops", "--device", "cpu", "--warmup", "-1"};
  std::ostringstream out;
  EXPECT_THROW(run_bench(6, argv, out), ConfigError);
}

}  // namespace
}  // namespace lockstep::cli
