// --cuda-graph: a training run whose micro-batches are captured once and replayed must end with
// the same parameters, bit for bit, as the same run stepped eagerly (the same kernels in the same
// order; the learning rate changes every update, so a graph that froze it would drift), and the
// configurations a graph cannot replay are refused naming the flag.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "engine/trainer.h"
#include "tests/engine/engine_test_util.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

std::string config_error(TrainConfig c) {
  try {
    c.validate();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.option(), "--cuda-graph") << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(CudaGraphConfig, NeedsACudaDevice) {
  TrainConfig c = test_util::cpu_config("graph-cpu", "tiny", 1, 8);
  c.cuda_graph = true;
  EXPECT_EQ(config_error(c), "--cuda-graph needs --device cuda (CUDA graphs replay GPU work)");
  c.cuda_graph = false;
  EXPECT_NO_THROW(c.validate());
}

TEST(CudaGraphConfig, RefusesWhatCannotReplay) {
  LS_REQUIRE_GPU();
  TrainConfig c = test_util::cpu_config("graph-refused", "tiny", 1, 8);
  c.device = Device::cuda(0);
  c.cuda_graph = true;
  EXPECT_NO_THROW(c.validate());
  TrainConfig f = c;
  f.precision = DType::f16;
  EXPECT_NE(config_error(f).find("fp16"), std::string::npos);
  TrainConfig s = c;
  s.sync = SyncKind::sign;
  EXPECT_NE(config_error(s).find("--sync sign"), std::string::npos);
  TrainConfig st = c;
  st.straggler = "rank=0:10ms";
  EXPECT_NE(config_error(st).find("--straggler"), std::string::npos);
  TrainConfig shared = c;
  shared.workers = 2;
  shared.workers_per_gpu = 2;
  EXPECT_NE(config_error(shared).find("one worker per GPU"), std::string::npos);
  shared.sync = SyncKind::average;  // averaging runs between steps, outside the graph
  EXPECT_NO_THROW(shared.validate());
}

// The step and eval lines of a run's log: accuracy and learning rate as written, the loss as a
// number. (Until 2026-11-27 the CUDA loss kernel summed with float atomics, and on an H100 graph
// and eager runs with bit-identical parameters logged losses a few ulps apart.)
struct LogLines {
  std::vector<std::string> exact;
  std::vector<double> loss;
};

LogLines step_lines(const std::string& dir) {
  std::ifstream in(dir + "/log.jsonl");
  LogLines out;
  std::string line;
  while (std::getline(in, line))
    if (line.find("\"type\":\"step\"") != std::string::npos || line.find("\"type\":\"eval\"") != std::string::npos) {
      // Timing fields differ between runs; the loss, accuracy and lr must not.
      std::string keep;
      for (const char* key : {"\"top1\":", "\"lr\":"}) {
        const size_t p = line.find(key);
        if (p != std::string::npos) keep += line.substr(p, line.find(',', p) - p) + " ";
      }
      out.exact.push_back(keep);
      const size_t p = line.find("\"loss\":");
      out.loss.push_back(p == std::string::npos ? -1.0 : std::stod(line.substr(p + 7)));
    }
  return out;
}

// The logged losses too, exactly: the CUDA loss sums in a fixed order (kernels/cuda/loss.cu), so
// identical logits give identical bits, captured or not.
void expect_same_log(const LogLines& a, const LogLines& b) {
  EXPECT_EQ(a.exact, b.exact);
  EXPECT_EQ(a.loss, b.loss);
}

struct RunResult {
  std::vector<float> params, buffers;
  LogLines log;
  int graphs = 0;
};

RunResult train(TrainConfig c, bool graph, const std::string& name) {
  c.cuda_graph = graph;
  c.out_dir = ::testing::TempDir() + "/" + name + (graph ? "-graph" : "-eager");
  c.validate();
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  const RunSummary s = t.run();
  EXPECT_EQ(s.updates, int64_t{c.epochs} * c.steps_per_epoch / c.accumulate) << out.str();
  Worker& w = t.worker();
  w.ctx().make_current();
  RunResult r;
  r.params = test::to_host_f32(w.ctx(), w.model().params().params());
  r.buffers = test::to_host_f32(w.ctx(), w.model().params().buffers());
  r.log = step_lines(c.out_dir);
  r.graphs = w.graphs_captured();
  return r;
}

void expect_same_run(const TrainConfig& c, const std::string& name, int graphs) {
  const RunResult eager = train(c, false, name), graph = train(c, true, name);
  EXPECT_EQ(eager.graphs, 0);
  EXPECT_EQ(graph.graphs, graphs);
  ASSERT_EQ(eager.params.size(), graph.params.size());
  size_t differ = 0;
  for (size_t i = 0; i < eager.params.size(); ++i) differ += eager.params[i] != graph.params[i];
  EXPECT_EQ(differ, 0u) << "of " << eager.params.size() << " parameters";
  EXPECT_EQ(eager.buffers, graph.buffers) << "BN running statistics";
  expect_same_log(eager.log, graph.log);
  EXPECT_FALSE(eager.log.exact.empty());
}

// One micro-batch per update, f32, a warmup that changes the rate at every update, evaluations
// in between (they use the same device batch slots): two graphs (one per upload slot).
TEST(CudaGraph, SameParametersAsEagerSteps) {
  LS_REQUIRE_GPU();
  TrainConfig c = test_util::cpu_config("graph-same", "tiny", 1, 16);
  c.device = Device::cuda(0);
  c.image_size = 16;
  c.epochs = 3;
  c.steps_per_epoch = 6;
  c.warmup_epochs = 2;
  c.lr_scaling = true;
  c.eval_steps = 2;
  c.log_every = 2;
  expect_same_run(c, "graph-same", 2);
}

// bf16 ResNet-18 with two micro-batches per update and LARS: an accumulating micro-batch and an
// updating one, each in its own graph.
TEST(CudaGraph, AccumulationAndLarsReplay) {
  LS_REQUIRE_GPU();
  TrainConfig c = test_util::cpu_config("graph-accum", "resnet18", 1, 8);
  c.device = Device::cuda(0);
  c.precision = DType::bf16;
  c.image_size = 32;
  c.accumulate = 2;
  c.steps_per_epoch = 8;
  c.epochs = 2;
  c.optimizer = OptimizerKind::lars;
  c.base_lr = 1.0;
  c.warmup_epochs = 1;
  c.log_every = 4;
  c.eval_steps = 0;
  expect_same_run(c, "graph-accum", 2);
}

}  // namespace
}  // namespace lockstep::engine
