// --sync sign (engine/sync/sign_sync.h): the whole multi-worker step against a plain scalar model
// of majority-vote Signum, bit for bit, for N = 1, 2, 3, 4, 8 CPU workers and both exchange
// algorithms; the bytes each worker reports against the formulas; the all-reduce warmup hands
// over to the vote at the right update; and sign mode learns the tiny synthetic problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/synthetic_source.h"
#include "engine/trainer.h"
#include "kernels/sign.h"
#include "kernels/threads.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

// The convergence test's learning rate for the tiny net (chosen by trying: README "1-bit sign sync").
constexpr double kTinySignLr = 0.02;

TrainConfig sign_config(const std::string& out, int workers, SignExchangeKind exchange) {
  TrainConfig c;
  c.arch = "tiny_nobn";  // no BN statistics: a worker's gradient depends on its batch and the weights only
  c.classes = 10;
  c.image_size = 8;
  c.synthetic = true;
  c.device = Device::cpu();
  c.precision = DType::f32;
  c.workers = workers;
  c.batch_size = 2;
  c.epochs = 1;
  c.steps_per_epoch = 4;
  c.base_lr = 0.01;
  c.lr_scaling = false;
  c.warmup_epochs = 0;
  c.schedule = ScheduleKind::cosine;  // a different rate every update
  c.weight_decay = 0.05;
  c.log_every = 1;
  c.bucket_mb = 0.0005;  // several buckets, one not a multiple of 32 elements
  c.sync = SyncKind::sign;
  c.sign_momentum = 0.9;
  c.sign_exchange = exchange;
  c.out_dir = ::testing::TempDir() + "/" + out;
  c.validate();
  return c;
}

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// Majority-vote Signum written plainly, one element at a time. Each worker's gradient at the
// model's weights comes from a separate one-worker oracle that runs the same batch of the same
// shard (same code, same CPU thread count as a trainer worker), so the comparison is exact.
std::vector<float> scalar_signum(const TrainConfig& c) {
  const int N = c.workers;
  set_cpu_threads(std::max(1, available_cores() / N));
  Worker oracle(Device::cpu(), worker_options(c));
  nets::ParamTable& table = oracle.model().params();
  std::vector<float> x = test::host_values(table.params());
  const int64_t P = static_cast<int64_t>(x.size());
  std::vector<bool> decayed(P, false);
  for (auto [b, e] : oracle.optimizer().decay_segments())
    for (uint32_t i = b; i < e; ++i) decayed[i] = true;
  std::vector<std::unique_ptr<data::SyntheticSource>> shards;
  for (int r = 0; r < N; ++r) {
    data::SyntheticSpec spec;
    spec.classes = c.classes;
    spec.image_size = c.image_size;
    spec.batch = c.batch_size;
    spec.seed = c.seed;
    spec.rank = r;
    spec.world = N;
    spec.batches_per_epoch = c.steps_per_epoch;
    shards.push_back(std::make_unique<data::SyntheticSource>(spec));
    shards.back()->start_epoch(0);
  }
  const LrSchedule schedule(c.schedule_config(c.steps_per_epoch));
  const float beta = static_cast<float>(c.sign_momentum), wd = static_cast<float>(c.weight_decay);
  std::vector<std::vector<float>> m(N, std::vector<float>(P, 0.f));
  for (int64_t u = 0; u < c.steps_per_epoch; ++u) {
    std::vector<std::vector<float>> bit(N);  // sign(m) with sign(0) = +, NaN = -
    for (int r = 0; r < N; ++r) {
      std::copy(x.begin(), x.end(), table.params().data<float>());
      oracle.model().parameters_updated(oracle.ctx());
      oracle.forward_backward(shards[r]->next(), false, 1.f / c.batch_size);
      const std::vector<float> g = test::host_values(table.grads());
      bit[r].resize(P);
      for (int64_t i = 0; i < P; ++i) {
        m[r][i] = beta * m[r][i] + (1.f - beta) * g[i];
        bit[r][i] = m[r][i] >= 0.f ? 1.f : 0.f;
      }
    }
    const float lr = schedule.lr(u);
    for (int64_t i = 0; i < P; ++i) {
      int ones = 0;
      for (int r = 0; r < N; ++r) ones += bit[r][i] != 0.f;
      float vote = 2 * ones > N ? 1.f : 2 * ones < N ? -1.f : (bit[0][i] != 0.f ? 1.f : -1.f);  // tie: rank 0
      x[i] = decayed[i] ? x[i] - lr * (vote + wd * x[i]) : x[i] - lr * vote;
    }
  }
  return x;
}

// Bytes per worker per step for the buckets of `layout` (engine/sync/sign_sync.h).
CommBytes expected_sign_bytes(const BucketLayout& layout, int N, SignExchangeKind exchange) {
  int64_t b = 0;
  for (const Bucket& bucket : layout.buckets) {
    const int64_t W = sign_words(bucket.numel()), S = (W + N - 1) / N;
    b += exchange == SignExchangeKind::allgather ? (N - 1) * 4 * W : 2 * (N - 1) * 4 * S;
  }
  return {b, b};
}

std::vector<nlohmann::json> log_lines(const std::string& dir, const std::string& type) {
  std::ifstream in(dir + "/log.jsonl");
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["type"] == type) out.push_back(j);
  }
  return out;
}

struct Case {
  int workers;
  SignExchangeKind exchange;
};

class SignSyncModel : public ::testing::TestWithParam<Case> {};

TEST_P(SignSyncModel, EqualsScalarSignumBitForBit) {
  const Case k = GetParam();
  // A folder per case: ctest runs the cases in parallel processes.
  TrainConfig c = sign_config("sign-" + std::to_string(k.workers) + std::string(sign_exchange_kind_name(k.exchange)),
                              k.workers, k.exchange);
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  ASSERT_NE(t.sign_sync(0), nullptr);
  ASSERT_GE(t.sync(0)->layout().buckets.size(), 3u);
  const RunSummary s = t.run();
  const std::vector<float> want = scalar_signum(c);
  std::vector<float> before;
  {
    Worker fresh(Device::cpu(), worker_options(c));
    before = test::host_values(fresh.model().params().params());
  }
  ASSERT_FALSE(bits_equal(want, before)) << "training must move the weights";
  for (int r = 0; r < k.workers; ++r)
    EXPECT_TRUE(bits_equal(test::host_values(t.worker(r).model().params().params()), want)) << "rank " << r;

  // Bytes: every step moves what the formula says; the log and the summary add them up.
  const CommBytes per_step = expected_sign_bytes(t.sync(0)->layout(), k.workers, c.resolved_sign_exchange());
  for (int r = 0; r < k.workers; ++r) EXPECT_EQ(t.sync(r)->last_step_bytes(), per_step) << "rank " << r;
  for (const nlohmann::json& step : log_lines(c.out_dir, "step")) {
    EXPECT_EQ(step["bytes_sent"].get<int64_t>(), per_step.sent);
    EXPECT_EQ(step["bytes_received"].get<int64_t>(), per_step.received);
  }
  EXPECT_EQ(s.bytes_sent, per_step.sent * c.steps_per_epoch);
  EXPECT_EQ(s.bytes_received, per_step.received * c.steps_per_epoch);
  EXPECT_EQ(s.sync, "sign");
  if (k.workers == 1) {
    EXPECT_EQ(per_step, CommBytes{});
  }
}

INSTANTIATE_TEST_SUITE_P(Workers, SignSyncModel,
                         ::testing::Values(Case{1, SignExchangeKind::allgather}, Case{2, SignExchangeKind::allgather},
                                           Case{2, SignExchangeKind::sharded}, Case{3, SignExchangeKind::allgather},
                                           Case{3, SignExchangeKind::sharded}, Case{4, SignExchangeKind::allgather},
                                           Case{4, SignExchangeKind::sharded}, Case{8, SignExchangeKind::allgather},
                                           Case{8, SignExchangeKind::sharded}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return "N" + std::to_string(i.param.workers) + "_" +
                                  std::string(sign_exchange_kind_name(i.param.exchange));
                         });

TEST(SignSync, PlainSignSgdWithoutMomentumEqualsTheModel) {
  TrainConfig c = sign_config("sgd0", 3, SignExchangeKind::sharded);
  c.sign_momentum = 0;
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  EXPECT_TRUE(bits_equal(test::host_values(t.worker(0).model().params().params()), scalar_signum(c)));
}

// Sharded: each worker sends and receives about d/4 bytes per step whatever N; allgather grows
// with N. Checked on the formulas' closed forms for one big bucket.
TEST(SignSync, ByteFormulas) {
  EXPECT_EQ(all_reduce_bytes(4000, 4), (CommBytes{6000, 6000}));
  EXPECT_EQ(all_gather_bytes(100, 5), (CommBytes{400, 400}));
  EXPECT_EQ(all_to_all_bytes(400, 4), (CommBytes{300, 300}));
  EXPECT_EQ(all_reduce_bytes(4000, 1), CommBytes{});
  BucketLayout one;
  one.buckets.push_back(Bucket{0, 32 * 1000 * 8, {}});  // d = 256000 elements, 8000 words
  for (int N : {2, 4, 8}) {
    const int64_t d = 256000;
    EXPECT_EQ(expected_sign_bytes(one, N, SignExchangeKind::sharded).sent, 2 * (N - 1) * d / 8 / N);  // < d / 4
    EXPECT_EQ(expected_sign_bytes(one, N, SignExchangeKind::allgather).sent, (N - 1) * d / 8);
  }
}

TEST(SignSync, WarmupAllReducesThenSwitchesToTheVote) {
  TrainConfig c = sign_config("warm", 3, SignExchangeKind::sharded);
  c.steps_per_epoch = 5;
  c.sign_warmup_steps = 2;
  c.validate();
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  int64_t all_reduce = 0;
  for (const Bucket& b : t.sync(0)->layout().buckets) all_reduce += all_reduce_bytes(b.numel() * 4, 3).sent;
  const CommBytes sign = expected_sign_bytes(t.sync(0)->layout(), 3, SignExchangeKind::sharded);
  const std::vector<nlohmann::json> steps = log_lines(c.out_dir, "step");
  ASSERT_EQ(steps.size(), 5u);
  for (size_t i = 0; i < steps.size(); ++i)
    EXPECT_EQ(steps[i]["bytes_sent"].get<int64_t>(), i < 2 ? all_reduce : sign.sent) << "update " << i;
  EXPECT_FALSE(t.sign_sync(0)->in_warmup());
  EXPECT_EQ(t.sign_sync(0)->updates(), 5);
  // The replicas agree through the switch.
  for (int r = 1; r < 3; ++r)
    EXPECT_TRUE(bits_equal(test::host_values(t.worker(r).model().params().params()),
                           test::host_values(t.worker(0).model().params().params())));
}

TEST(SignSync, TinyNetLearnsTheSyntheticProblem) {
  TrainConfig c;
  c.arch = "tiny";
  c.classes = 10;
  c.image_size = 16;
  c.synthetic = true;
  c.device = Device::cpu();
  c.precision = DType::f32;
  c.workers = 2;
  c.batch_size = 16;
  c.epochs = 5;
  c.steps_per_epoch = 25;
  c.base_lr = kTinySignLr;
  c.lr_scaling = false;
  c.warmup_epochs = 0;
  c.schedule = ScheduleKind::cosine;
  c.log_every = 5;
  c.sync = SyncKind::sign;
  c.out_dir = ::testing::TempDir() + "/sign-learn";
  c.validate();
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  const RunSummary s = t.run();
  EXPECT_GT(s.final_top1, 0.9) << out.str();
  EXPECT_NE(out.str().find("sync: sign"), std::string::npos) << out.str();
}

TEST(SignSyncConfig, ValidationNamesTheOption) {
  auto option_of = [](TrainConfig c) -> std::string {
    try {
      c.validate();
    } catch (const ConfigError& e) {
      return e.option();
    }
    return "";
  };
  TrainConfig c = sign_config("cfg", 2, SignExchangeKind::allgather);
  TrainConfig bad = c;
  bad.sign_momentum = 1.0;
  EXPECT_EQ(option_of(bad), "--sign-momentum");
  bad = c;
  bad.sign_warmup_steps = -1;
  EXPECT_EQ(option_of(bad), "--sign-warmup-steps");
  bad = c;
  bad.optimizer = OptimizerKind::lars;
  EXPECT_EQ(option_of(bad), "--optimizer");
  bad = c;
  bad.momentum = 0.9;
  bad.nesterov = true;
  EXPECT_EQ(option_of(bad), "--nesterov");
  EXPECT_EQ(c.resolved_sign_exchange(), SignExchangeKind::allgather);
  c.sign_exchange = SignExchangeKind::auto_;
  EXPECT_EQ(c.resolved_sign_exchange(), SignExchangeKind::allgather);
  c.workers = 3;
  EXPECT_EQ(c.resolved_sign_exchange(), SignExchangeKind::sharded);
  EXPECT_EQ(TrainConfig::from_json(c.to_json()), c);
}

}  // namespace
}  // namespace lockstep::engine
