// Multi-worker synchronous SGD on CPU workers: N workers with batch B equal one worker with batch
// N x B (BatchNorm-free net), with and without overlap and with accumulation; the reducer starts
// bucket 0's exchange before backward ends; a failing worker stops the run promptly.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <sstream>

#include "engine/comm/group.h"
#include "engine/trainer.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

TrainConfig nobn_config(const std::string& out, int workers, int batch, int accumulate) {
  TrainConfig c;
  c.arch = "tiny_nobn";
  c.classes = 10;
  c.image_size = 8;
  c.synthetic = true;
  c.device = Device::cpu();
  c.precision = DType::f32;
  c.workers = workers;
  c.batch_size = batch;
  c.accumulate = accumulate;
  c.epochs = 1;
  c.steps_per_epoch = 5 * accumulate;
  c.base_lr = 0.2;
  c.lr_scaling = false;
  c.warmup_epochs = 0;
  c.schedule = ScheduleKind::step;
  c.weight_decay = 1e-3;
  c.log_every = 100;
  c.bucket_mb = 0.0005;  // 512 bytes: several buckets even for this small net
  c.out_dir = ::testing::TempDir() + "/" + out;
  c.validate();
  return c;
}

std::vector<float> trained_params(const TrainConfig& c) {
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  return test::host_values(t.worker(0).model().params().params());
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) { return test::rel_error(a, b); }

TEST(Distributed, WorkersEqualOneWorkerWithTheGlobalBatch) {
  const std::vector<float> one = trained_params(nobn_config("d1", 1, 8, 1));
  TrainConfig still = nobn_config("d0", 1, 8, 1);
  still.base_lr = 0;
  still.weight_decay = 0;
  ASSERT_GT(rel_diff(trained_params(still), one), 1e-2) << "training must move the weights for the comparison to mean anything";
  for (int n : {2, 4}) {
    for (bool overlap : {true, false}) {
      TrainConfig c = nobn_config("dn", n, 8 / n, 1);
      c.overlap = overlap;
      const std::vector<float> many = trained_params(c);
      EXPECT_LT(rel_diff(many, one), 1e-5) << n << " workers, overlap " << overlap;
      EXPECT_NE(many, std::vector<float>(many.size(), 0.f));
    }
  }
}

TEST(Distributed, AccumulationEqualsTheBigBatch) {
  const std::vector<float> big = trained_params(nobn_config("a1", 1, 8, 1));
  EXPECT_LT(rel_diff(trained_params(nobn_config("a4", 1, 2, 4)), big), 1e-5);
  EXPECT_LT(rel_diff(trained_params(nobn_config("a22", 2, 2, 2)), big), 1e-5);  // both at once
}

// Several workers sharing one GPU (host-staged LocalCommunicator) against one CPU worker.
TEST(Distributed, WorkersSharingAGpuMatchTheCpu) {
  LS_REQUIRE_GPU();
  const std::vector<float> cpu = trained_params(nobn_config("g1", 1, 8, 1));
  TrainConfig c = nobn_config("g2", 2, 4, 1);
  c.device = Device::cuda(0);
  c.workers_per_gpu = 2;
  c.validate();
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  Worker& w = t.worker(0);
  EXPECT_LT(rel_diff(test::to_host_f32(w.ctx(), w.model().params().params()), cpu), 1e-4);
}

TEST(Distributed, ReplicasStayIdentical) {
  TrainConfig c = nobn_config("same", 3, 4, 1);
  c.arch = "tiny";  // with BatchNorm: replicas differ in batch statistics, never in weights
  c.validate();
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  const std::vector<float> p0 = test::host_values(t.worker(0).model().params().params());
  for (int r = 1; r < 3; ++r) EXPECT_EQ(test::host_values(t.worker(r).model().params().params()), p0) << r;
}

// A communicator that records what it is asked to do, next to a log of gradient readiness.
struct Recorder {
  std::vector<std::string> events;
};

class RecordingCommunicator : public Communicator {
 public:
  explicit RecordingCommunicator(Recorder& r) : r_(r) {}
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string_view kind() const override { return "recording"; }
  void all_reduce(Context&, Tensor& buf, ReduceOp) override { r_.events.push_back("all_reduce " + std::to_string(buf.numel())); }
  void all_gather(Context&, const Tensor&, Tensor&) override {}
  void broadcast(Context&, Tensor&, int) override {}
  void all_to_all(Context&, const Tensor&, Tensor&) override {}
  void barrier(Context&) override {}
  void abort(const std::string&) noexcept override {}
  bool aborted() const override { return false; }

 private:
  Recorder& r_;
};

struct LoggingSink : nets::GradSink {
  Recorder& r;
  nets::GradSink& next;
  const nets::ParamTable& params;
  LoggingSink(Recorder& r, nets::GradSink& n, const nets::ParamTable& p) : r(r), next(n), params(p) {}
  void grad_ready(Context& ctx, int p) override {
    r.events.push_back("grad " + params.specs()[p].name);
    next.grad_ready(ctx, p);
  }
};

TEST(Reducer, Bucket0IsExchangedBeforeBackwardEnds) {
  Context ctx(Device::cpu());
  nets::ModelOptions o;
  o.arch = "tiny";
  o.classes = 4;
  o.image_size = 8;
  o.batch = 2;
  nets::Model m(o);
  m.setup(ctx);
  m.init(ctx, 1, false);
  Recorder rec;
  RecordingCommunicator comm(rec);
  ReducerOptions ro;
  ro.bucket_mb = 0.002;
  ro.first_bucket_mb = 0.0002;
  Reducer red(ctx, m.params(), comm, ro);
  ASSERT_GE(red.layout().buckets.size(), 3u);
  LoggingSink sink(rec, red, m.params());
  m.params().set_sink(&sink);
  OwnedTensor x = test::host_tensor(m.input_shape(), test::random_floats(m.input_shape().numel(), 1));
  OwnedTensor dl = test::host_tensor(m.output_shape(), test::random_floats(m.output_shape().numel(), 2));
  red.begin_step(true);
  m.forward(ctx, x, nets::Mode::train);
  m.backward(ctx, dl);
  red.finish(ctx);
  const std::string first = "all_reduce " + std::to_string(red.layout().buckets[0].numel());
  auto at = [&](const std::string& e) { return std::find(rec.events.begin(), rec.events.end(), e) - rec.events.begin(); };
  EXPECT_LT(at(first), at("grad conv1.weight"));  // while backward still runs
  EXPECT_EQ(red.launch_order().size(), red.layout().buckets.size());
  EXPECT_EQ(red.launch_order().front(), 0);
  // Accumulating micro-batches do not communicate at all.
  rec.events.clear();
  red.begin_step(false);
  m.forward(ctx, x, nets::Mode::train);
  m.backward(ctx, dl, true);
  red.finish(ctx);
  for (const std::string& e : rec.events) EXPECT_EQ(e.rfind("all_reduce", 0), std::string::npos) << e;
  m.params().set_sink(nullptr);
}

TEST(Distributed, AFailingWorkerStopsTheRunPromptly) {
  TrainConfig c = nobn_config("fail", 3, 2, 1);
  c.steps_per_epoch = 50;
  c.comm_timeout_s = 60;  // the abort, not the timeout, must end it
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.set_step_hook([](int rank, int, int64_t step) {
    if (rank == 1 && step == 3) throw Error("injected failure");
  });
  auto run = std::async(std::launch::async, [&] {
    try {
      t.run();
      return std::string("no error");
    } catch (const Error& e) {
      return std::string(e.what());
    }
  });
  ASSERT_EQ(run.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "the run hung";
  std::string message = run.get();
  EXPECT_NE(message.find("worker 1 failed: injected failure"), std::string::npos) << message;
}

}  // namespace
}  // namespace lockstep::engine
