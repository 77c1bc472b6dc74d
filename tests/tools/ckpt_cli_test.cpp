// `lockstep ckpt inspect` on checkpoints a real (tiny, CPU) training wrote in-process: what a
// valid checkpoint reports (position, tensors, parameters, metrics), a flipped byte reported
// INVALID with the SHA-256 reason and exit 1, a run whose `latest` is corrupt showing the
// checkpoint --resume falls back to, a .safetensors file on its own, and bad usage as ConfigError.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "engine/trainer.h"
#include "tools/lockstep/cli_ckpt.h"

namespace lockstep::cli {
namespace {

namespace fs = std::filesystem;

TrainConfig tiny_config(const fs::path& out, int workers = 1, engine::SyncKind sync = engine::SyncKind::allreduce) {
  TrainConfig c;
  c.arch = "tiny";
  c.classes = 10;
  c.image_size = 16;
  c.synthetic = true;
  c.device = Device::cpu();
  c.precision = DType::f32;
  c.workers = workers;
  c.sync = sync;
  c.batch_size = 8;
  c.epochs = 2;
  c.steps_per_epoch = 2;
  c.eval_steps = 1;
  c.lr_scaling = false;
  c.warmup_epochs = 0;
  c.log_every = 1;
  c.checkpoint_every = 1;  // step-1 .. step-4
  c.out_dir = out.string();
  c.validate();
  return c;
}

struct TrainedRun {
  engine::RunSummary summary;
  int64_t parameters = 0;
};

TrainedRun train(const TrainConfig& c) {
  std::ostringstream sink;
  engine::Progress progress(sink, false);
  engine::Trainer t(c, progress);
  TrainedRun r;
  r.summary = t.run();
  r.parameters = t.worker().model().params().count();
  return r;
}

struct Inspected {
  int rc = -1;
  std::string out;
};

Inspected inspect(std::initializer_list<std::string> args) {
  std::vector<std::string> words{"ckpt", "inspect"};
  words.insert(words.end(), args);
  std::vector<const char*> argv;
  for (const std::string& w : words) argv.push_back(w.c_str());
  std::ostringstream out;
  Inspected r;
  r.rc = run_ckpt(static_cast<int>(argv.size()), argv.data(), out);
  r.out = out.str();
  return r;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

void flip_last_byte(const fs::path& p) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-1, std::ios::end);
  char c = 0;
  f.get(c);
  f.seekp(-1, std::ios::end);
  f.put(static_cast<char>(c ^ 1));
  ASSERT_TRUE(f.good()) << p;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// One training per test process (gtest_discover_tests runs each test on its own); tests that
// damage files work on a copy.
class CkptInspect : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(fs::path(::testing::TempDir()) / ("ckpt-cli-" + std::to_string(getpid())));
    fs::remove_all(*root_);
    run_ = new TrainedRun(train(tiny_config(*root_ / "run")));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete run_;
    delete root_;
  }
  static fs::path run_dir() { return *root_ / "run"; }
  static fs::path step(const fs::path& run, int n) { return run / "checkpoints" / ("step-" + std::to_string(n)); }
  // A copy of the run to damage.
  static fs::path copy_of_run(const std::string& name) {
    const fs::path dst = *root_ / name;
    fs::remove_all(dst);
    fs::copy(run_dir(), dst, fs::copy_options::recursive);
    return dst;
  }
  static size_t model_tensors() {
    return engine::SafetensorsFile::open(step(run_dir(), 4) / "model.safetensors").tensors().size();
  }

  static fs::path* root_;
  static TrainedRun* run_;
};

fs::path* CkptInspect::root_ = nullptr;
TrainedRun* CkptInspect::run_ = nullptr;

TEST_F(CkptInspect, ValidCheckpointSummary) {
  const fs::path dir = step(run_dir(), 4);
  const Inspected r = inspect({dir.string()});
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "checkpoint " + dir.string() + ": valid\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "update 4, training finished (epoch 2 done), 32 samples seen")) << r.out;
  EXPECT_TRUE(contains(r.out, "by lockstep ")) << r.out;
  EXPECT_TRUE(contains(r.out, "tiny, 10 classes, 16 px, synthetic data")) << r.out;
  EXPECT_TRUE(contains(r.out, "1 worker (cpu, f32), sync allreduce, global batch 8")) << r.out;
  // The metrics at save time are the run's last logged step and evaluation.
  const engine::RunSummary& s = run_->summary;
  ASSERT_TRUE(s.has_eval);
  EXPECT_TRUE(contains(r.out, "train     loss " + fixed(s.final_loss, 4) + "  top-1 " + fixed(100 * s.final_top1, 2) +
                                  "% (update 4, epoch 2)"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "eval      loss " + fixed(s.last_eval.loss, 4) + "  top-1 " +
                                  fixed(100 * s.last_eval.top1, 2) + "%  top-5 " +
                                  fixed(100 * s.last_eval.top5, 2) + "% (update 4, epoch 2)"))
      << r.out;
  // The model file: its tensor count, and the model's parameter count (BN statistics excluded).
  EXPECT_TRUE(contains(r.out, "model.safetensors")) << r.out;
  EXPECT_TRUE(contains(r.out, std::to_string(model_tensors()) + " tensors, ")) << r.out;
  EXPECT_TRUE(contains(r.out, ", " + std::to_string(run_->parameters) + " parameters  sha256 ")) << r.out;
  EXPECT_TRUE(contains(r.out, "optimizer.safetensors")) << r.out;
  EXPECT_FALSE(contains(r.out, "fc.weight")) << "tensors listed without --tensors\n" << r.out;
}

TEST_F(CkptInspect, MidEpochPositionAndTensorList) {
  const Inspected r = inspect({step(run_dir(), 3).string(), "--tensors"});
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "update 3, not finished: a resume continues at epoch 2 step 1/2, 24 samples seen"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "tensors of model.safetensors\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "fc.weight")) << r.out;
  EXPECT_TRUE(contains(r.out, "F32   [10, ")) << r.out;  // fc.weight (classes, features)
  EXPECT_TRUE(contains(r.out, "num_batches_tracked")) << r.out;
}

TEST_F(CkptInspect, FlippedByteIsInvalidWithTheShaReason) {
  const fs::path run = copy_of_run("flipped");
  const fs::path dir = step(run, 4);
  flip_last_byte(dir / "model.safetensors");
  const Inspected r = inspect({dir.string()});
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "checkpoint " + dir.string() +
                                  ": INVALID: model.safetensors: SHA-256 differs from state.json's"))
      << r.out;
  // The file lines say which file is wrong; what state.json says still shows.
  EXPECT_TRUE(contains(r.out, "INVALID: SHA-256 differs from state.json's (on disk: ")) << r.out;
  EXPECT_TRUE(contains(r.out, "  ok\n")) << r.out;  // optimizer.safetensors
  EXPECT_TRUE(contains(r.out, "update 4, training finished")) << r.out;
}

TEST_F(CkptInspect, RunDirectoryListsNewestFirstAndSummarisesLatest) {
  const Inspected r = inspect({run_dir().string()});
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "run " + run_dir().string() + ": 4 checkpoints")) << r.out;
  const size_t s4 = r.out.find("step-4  valid"), s3 = r.out.find("step-3  valid"), s1 = r.out.find("step-1  valid");
  ASSERT_NE(s4, std::string::npos) << r.out;
  ASSERT_NE(s3, std::string::npos) << r.out;
  ASSERT_NE(s1, std::string::npos) << r.out;
  EXPECT_LT(s4, s3);
  EXPECT_LT(s3, s1);
  EXPECT_TRUE(contains(r.out, "finished after epoch 2  <- latest\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "  latest: step-4\n--resume takes step-4\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "checkpoint " + step(run_dir(), 4).string() + ": valid")) << r.out;
}

TEST_F(CkptInspect, RunWhoseLatestIsCorruptShowsTheFallback) {
  const fs::path run = copy_of_run("corrupt-latest");
  flip_last_byte(step(run, 4) / "model.safetensors");
  const Inspected r = inspect({run.string()});
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "step-4  INVALID  update 4, finished after epoch 2  <- latest\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "model.safetensors: SHA-256 differs from state.json's")) << r.out;
  EXPECT_TRUE(contains(r.out, "step-3  valid")) << r.out;
  EXPECT_TRUE(contains(r.out, "latest: step-4, which is INVALID\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "--resume takes step-3 (the newest checkpoint that verifies)\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "checkpoint " + step(run, 3).string() + ": valid")) << r.out;
}

TEST_F(CkptInspect, RunWithoutLatestOrValidCheckpoint) {
  const fs::path run = copy_of_run("no-latest");
  fs::remove(run / "checkpoints" / "latest");
  Inspected r = inspect({run.string()});
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "latest: missing\n--resume takes step-4 (the newest checkpoint that verifies)")) << r.out;

  for (int n = 1; n <= 4; ++n) fs::remove(step(run, n) / "optimizer.safetensors");
  r = inspect({run.string()});
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "optimizer.safetensors: missing")) << r.out;
  EXPECT_TRUE(contains(r.out, "--resume would fail: ")) << r.out;
}

TEST_F(CkptInspect, SafetensorsFile) {
  const fs::path file = step(run_dir(), 2) / "model.safetensors";
  Inspected r = inspect({file.string(), "--tensors"});
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "file " + file.string() + ": valid\n  " + std::to_string(model_tensors()) + " tensors, "))
      << r.out;
  EXPECT_TRUE(contains(r.out, "metadata  arch        tiny\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "step        2\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "fc.bias")) << r.out;

  const fs::path cut = *root_ / "cut.safetensors";
  fs::copy_file(file, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, fs::file_size(cut) - 4);
  r = inspect({cut.string()});
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "file " + cut.string() + ": INVALID: tensor '")) << r.out;
}

TEST_F(CkptInspect, TwoWorkersSignSync) {
  const fs::path run = *root_ / "sign";
  train(tiny_config(run, 2, engine::SyncKind::sign));
  const Inspected r = inspect({step(run, 2).string()});
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "2 workers (cpu, f32), sync sign, global batch 16 (batch 8 x 2 workers x accumulate 1)"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "workers.safetensors")) << r.out;
}

// Expects a ConfigError whose message contains `part`.
template <typename F>
void expect_config_error(F f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no ConfigError (" << part << ")";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), part)) << e.what();
  }
}

TEST(CkptCli, BadUsageIsAConfigError) {
  auto run = [](std::initializer_list<const char*> args) {
    std::vector<const char*> argv{"ckpt"};
    argv.insert(argv.end(), args);
    std::ostringstream out;
    return run_ckpt(static_cast<int>(argv.size()), argv.data(), out);
  };
  expect_config_error([&] { run({}); }, "expected a subcommand");
  expect_config_error([&] { run({"frobnicate"}); }, "unknown subcommand 'frobnicate'");
  expect_config_error([&] { run({"inspect"}); }, "expected PATH");
  expect_config_error([&] { run({"inspect", "a", "b"}); }, "expected one PATH, got 2");
  expect_config_error([&] { run({"inspect", "--bogus", "."}); }, "bogus");
  EXPECT_THROW(run({"--help"}), HelpRequested);
  EXPECT_THROW(run({"inspect", "--help"}), HelpRequested);
  // A path that is not there is a failure while working (exit 1), not bad usage.
  try {
    run({"inspect", "/nonexistent/ckpt"});
    ADD_FAILURE() << "no error for a missing path";
  } catch (const ConfigError& e) {
    ADD_FAILURE() << "a missing path is not a usage error: " << e.what();
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "/nonexistent/ckpt: no such file or directory")) << e.what();
  }
}

}  // namespace
}  // namespace lockstep::cli
