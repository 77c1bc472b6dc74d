// Checkpoints end to end through the `lockstep` binary, like Caffe's snapshot test: a run stopped
// after N updates and resumed by a fresh process ends bit-identical to an uninterrupted run
// (every checkpoint file byte for byte, every logged loss equal), for 1 and 2 workers, all-reduce
// and sign, mid-epoch and at an epoch boundary, on the default dataset's loader; a SIGINT stops
// a run with a checkpoint and exit 0; a SIGKILL at every stage of a save leaves a valid latest
// checkpoint; a full disk fails the save cleanly; resume refuses what would change the run.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/checkpoint.h"
#include "tests/resume/process.h"

namespace lockstep::test {
namespace {

namespace fs = std::filesystem;
using engine::LoadedCheckpoint;

// A clean folder of the build tree for one test.
fs::path workdir(const std::string& name) {
  fs::path d = fs::path(LOCKSTEP_RESUME_WORK) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<std::string> cmd(std::vector<std::string> args) {
  args.insert(args.begin(), LOCKSTEP_BIN);
  return args;
}

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

ProcessResult lockstep(const std::vector<std::string>& args, const fs::path& log, const ProcessOptions& o = {}) {
  return run_process(cmd(args), log.string(), o);
}

// The (type, update, loss, top1) of every step and eval record of a run's log.
std::vector<std::string> logged(const fs::path& run) {
  std::vector<std::string> out;
  std::ifstream in(run / "log.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    const std::string type = j["type"];
    if (type != "step" && type != "eval") continue;
    out.push_back(type + " " + j["update"].dump() + " " + j["loss"].dump() + " " + j["top1"].dump());
  }
  return out;
}

// Every file of the two checkpoints but state.json (times, paths) is byte-identical.
void expect_same_checkpoint(const fs::path& a, const fs::path& b) {
  ASSERT_TRUE(fs::exists(a / "model.safetensors")) << a;
  ASSERT_TRUE(fs::exists(b / "model.safetensors")) << b;
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "workers.safetensors"}) {
    ASSERT_EQ(fs::exists(a / f), fs::exists(b / f)) << f;
    if (fs::exists(a / f)) {
      EXPECT_TRUE(read_text((a / f).string()) == read_text((b / f).string())) << f << " differs";
    }
  }
}

std::string latest_of(const fs::path& run) {
  std::string s = read_text((run / "checkpoints" / "latest").string());
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// ---- exact resume on the default dataset's loader ----

struct LoaderCase {
  int workers;
  const char* sync;
};

class ExactResume : public ::testing::TestWithParam<LoaderCase> {};

TEST_P(ExactResume, StoppedAndResumedEqualsStraightMidEpochAndAtTheEpochBoundary) {
  const LoaderCase p = GetParam();
  const fs::path data = LOCKSTEP_FASHION_TRAIN;
  ASSERT_TRUE(fs::is_directory(data)) << data << ": the default job's import (cli.default_job_cpu) makes it";
  const std::string name = "loader-" + std::to_string(p.workers) + "-" + p.sync;
  const fs::path dir = workdir(name);
  // 3 epochs of 4 updates; Fashion-MNIST's training images through the loader (no val split in
  // this folder, so the epochs end without an evaluation: the synthetic case below has them).
  const std::vector<std::string> base{"train",        "--data",         data.string(), "--arch", "tiny",
                                      "--classes",    "10",             "--image-size", "28",    "--device",
                                      "cpu",          "--workers",      std::to_string(p.workers),
                                      "--batch-size", "16",             "--steps-per-epoch", "4", "--epochs",
                                      "3",            "--log-every",    "1",           "--sync", p.sync,
                                      "--loader-threads", "2"};
  const fs::path straight = dir / "straight";
  ProcessResult s = lockstep(plus(base, {"--out", straight.string()}), dir / "straight.txt");
  ASSERT_EQ(s.rc, 0) << s.output;
  for (int stop : {6, 8}) {  // update 6: epoch 2, step 2 of 4; update 8: the end of epoch 2
    SCOPED_TRACE("stop after " + std::to_string(stop));
    const fs::path run = dir / ("stop" + std::to_string(stop));
    ProcessResult a = lockstep(plus(base, {"--out", run.string(), "--stop-after", std::to_string(stop)}),
                               dir / ("stop" + std::to_string(stop) + ".txt"));
    ASSERT_EQ(a.rc, 0) << a.output;
    EXPECT_NE(a.output.find("continue with: lockstep train --resume " + run.string()), std::string::npos) << a.output;
    EXPECT_EQ(latest_of(run), "step-" + std::to_string(stop));
    ProcessResult b = lockstep({"train", "--resume", run.string()}, dir / ("resume" + std::to_string(stop) + ".txt"));
    ASSERT_EQ(b.rc, 0) << b.output;
    EXPECT_NE(b.output.find("resume: "), std::string::npos) << b.output;
    expect_same_checkpoint(straight / "checkpoints" / "step-12", run / "checkpoints" / "step-12");
    EXPECT_EQ(logged(straight), logged(run));
    EXPECT_EQ(logged(straight).size(), 12u);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ExactResume,
                         ::testing::Values(LoaderCase{1, "allreduce"}, LoaderCase{2, "allreduce"},
                                           LoaderCase{1, "sign"}, LoaderCase{2, "sign"}),
                         [](const auto& info) {
                           return std::to_string(info.param.workers) + "workers_" + info.param.sync;
                         });

// Synthetic data with evaluations at the epoch ends and gradient accumulation: the stop falls
// between updates of an accumulating epoch, and the evaluation losses must agree too.
std::vector<std::string> synthetic_args(const fs::path& out, int workers, const char* sync) {
  return {"train",     "--arch",   "tiny",      "--synthetic",          "--device",   "cpu",
          "--workers", std::to_string(workers), "--sync", sync,          "--batch-size", "8",
          "--accumulate", "2",     "--steps-per-epoch", "6",             "--epochs",   "2",
          "--eval-steps", "2",     "--log-every", "1",   "--out",        out.string()};
}

TEST(ExactResumeSynthetic, AccumulationAndEvaluationsTwoWorkers) {
  const fs::path dir = workdir("synthetic-accumulate");
  ProcessResult s = lockstep(synthetic_args(dir / "straight", 2, "allreduce"), dir / "straight.txt");
  ASSERT_EQ(s.rc, 0) << s.output;
  ProcessResult a = lockstep(plus(synthetic_args(dir / "run", 2, "allreduce"), {"--stop-after", "4"}), dir / "a.txt");
  ASSERT_EQ(a.rc, 0) << a.output;
  ProcessResult b = lockstep({"train", "--resume", (dir / "run").string()}, dir / "b.txt");
  ASSERT_EQ(b.rc, 0) << b.output;
  expect_same_checkpoint(dir / "straight" / "checkpoints" / "step-6", dir / "run" / "checkpoints" / "step-6");
  const std::vector<std::string> la = logged(dir / "straight");
  EXPECT_EQ(la, logged(dir / "run"));
  EXPECT_EQ(std::count_if(la.begin(), la.end(), [](const std::string& l) { return l.rfind("eval", 0) == 0; }), 2);
}

TEST(ExactResumeSynthetic, AverageModeKeepsEachWorkersModel) {
  const fs::path dir = workdir("synthetic-average");
  auto args = [&](const fs::path& out) {
    return plus(synthetic_args(out, 2, "average"), {"--average-every", "4", "--accumulate", "1"});
  };
  ASSERT_EQ(lockstep(args(dir / "straight"), dir / "straight.txt").rc, 0);
  ProcessResult a = lockstep(plus(args(dir / "run"), {"--stop-after", "6"}), dir / "a.txt");  // between averagings
  ASSERT_EQ(a.rc, 0) << a.output;
  ProcessResult b = lockstep({"train", "--resume", (dir / "run").string()}, dir / "b.txt");
  ASSERT_EQ(b.rc, 0) << b.output;
  expect_same_checkpoint(dir / "straight" / "checkpoints" / "step-12", dir / "run" / "checkpoints" / "step-12");
  EXPECT_EQ(logged(dir / "straight"), logged(dir / "run"));
}

// ---- SIGINT ----

void interrupt_and_resume(int workers) {
  const fs::path dir = workdir("sigint-" + std::to_string(workers));
  auto args = [&](const fs::path& out) {
    return std::vector<std::string>{"train", "--arch", "tiny", "--synthetic", "--device", "cpu", "--workers",
                                    std::to_string(workers), "--batch-size", "8", "--steps-per-epoch", "60",
                                    "--epochs", "2", "--log-every", "1", "--eval-steps", "1", "--out", out.string()};
  };
  const fs::path run = dir / "run";
  const pid_t pid = spawn(cmd(args(run)), (dir / "a.txt").string());
  // Wait for a few logged updates, then Ctrl-C.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<std::string> l = logged(run);
    if (l.size() >= 5) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(kill(pid, SIGINT), 0);
  ProcessResult a = wait_for(pid, (dir / "a.txt").string());
  ASSERT_EQ(a.rc, 0) << a.output;
  EXPECT_NE(a.output.find("stopping after this update"), std::string::npos) << a.output;
  EXPECT_NE(a.output.find("continue with: lockstep train --resume"), std::string::npos) << a.output;
  const std::string latest = latest_of(run);
  ASSERT_TRUE(engine::checkpoint_step(latest)) << latest;
  EXPECT_LT(*engine::checkpoint_step(latest), 120) << "the run should have stopped early";
  engine::open_checkpoint(run / "checkpoints" / latest);  // valid

  ProcessResult b = lockstep({"train", "--resume", run.string()}, dir / "b.txt");
  ASSERT_EQ(b.rc, 0) << b.output;
  ProcessResult s = lockstep(args(dir / "straight"), dir / "s.txt");
  ASSERT_EQ(s.rc, 0) << s.output;
  expect_same_checkpoint(dir / "straight" / "checkpoints" / "step-120", run / "checkpoints" / "step-120");
  EXPECT_EQ(logged(dir / "straight"), logged(run));
}

TEST(Sigint, OneWorkerStopsWithACheckpointAndResumesExactly) { interrupt_and_resume(1); }
TEST(Sigint, TwoWorkersAgreeWhereToStopAndResumeExactly) { interrupt_and_resume(2); }

// ---- crash safety ----

class CrashDuringSave : public ::testing::TestWithParam<const char*> {};

TEST_P(CrashDuringSave, LeavesAValidLatestAndTheRunResumesExactly) {
  const std::string stage = GetParam();
  const fs::path dir = workdir("crash-" + stage);
  auto args = [&](const fs::path& out) {
    return std::vector<std::string>{"train", "--arch", "tiny", "--synthetic", "--device", "cpu", "--batch-size", "8",
                                    "--steps-per-epoch", "6", "--epochs", "1", "--eval-steps", "1",
                                    "--checkpoint-every", "2", "--log-every", "1", "--out", out.string()};
  };
  const fs::path run = dir / "run";
  ProcessOptions o;
  o.env = {"LOCKSTEP_TEST_CRASH_AT=" + stage + ":2"};  // during the second save (step-4)
  ProcessResult a = lockstep(args(run), dir / "a.txt", o);
  ASSERT_EQ(a.signal, SIGKILL) << "rc " << a.rc << "\n" << a.output;
  const std::string latest = latest_of(run);
  ASSERT_TRUE(latest == "step-2" || latest == "step-4") << latest;
  engine::open_checkpoint(run / "checkpoints" / latest);  // what latest names is complete
  std::vector<std::string> warnings;
  LoadedCheckpoint ck = engine::resolve_checkpoint(run, &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  // The resumed run cleans what the crash left and ends where a straight run ends.
  ProcessResult b = lockstep({"train", "--resume", run.string()}, dir / "b.txt");
  ASSERT_EQ(b.rc, 0) << b.output;
  for (const fs::directory_entry& e : fs::directory_iterator(run / "checkpoints"))
    EXPECT_FALSE(engine::is_temporary_name(e.path().filename().string())) << e.path();
  ProcessResult s = lockstep(args(dir / "straight"), dir / "s.txt");
  ASSERT_EQ(s.rc, 0) << s.output;
  expect_same_checkpoint(dir / "straight" / "checkpoints" / "step-6", run / "checkpoints" / "step-6");
}

INSTANTIATE_TEST_SUITE_P(Stages, CrashDuringSave,
                         ::testing::Values("files-written", "dir-synced", "renamed", "parent-synced",
                                           "latest-files-written", "latest-renamed", "latest-parent-synced"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(FullDisk, SaveFailsCleanlyAndKeepsTheLastCheckpoint) {
  const fs::path dir = workdir("full-disk");
  const fs::path run = dir / "run";
  ProcessResult a = lockstep({"train", "--arch", "tiny", "--synthetic", "--device", "cpu", "--batch-size", "8",
                              "--steps-per-epoch", "4", "--epochs", "1", "--stop-after", "2", "--out", run.string()},
                             dir / "a.txt");
  ASSERT_EQ(a.rc, 0) << a.output;
  const std::string before = read_text((run / "checkpoints" / "step-2" / "model.safetensors").string());
  ASSERT_GT(before.size(), 8000u);
  // Files may not grow past 8000 bytes: the log and config fit, a model file does not.
  ProcessOptions o;
  o.fsize_limit = 8000;
  ProcessResult b = lockstep({"train", "--resume", run.string()}, dir / "b.txt", o);
  EXPECT_EQ(b.rc, 1) << b.output;
  EXPECT_NE(b.output.find("lockstep: error: "), std::string::npos) << b.output;
  EXPECT_NE(b.output.find("File too large"), std::string::npos) << b.output;
  EXPECT_EQ(latest_of(run), "step-2");
  engine::open_checkpoint(run / "checkpoints" / "step-2");
  EXPECT_EQ(read_text((run / "checkpoints" / "step-2" / "model.safetensors").string()), before);
  EXPECT_FALSE(fs::exists(run / "checkpoints" / "step-4"));
  for (const fs::directory_entry& e : fs::directory_iterator(run / "checkpoints"))
    EXPECT_FALSE(engine::is_temporary_name(e.path().filename().string())) << e.path();
}

// ---- what resume refuses, and what it allows ----

TEST(ResumeRules, RefusesAnotherNetworkAndSignWorkerChangesAllowsAllReduceResharding) {
  const fs::path dir = workdir("rules");
  const fs::path sign = dir / "sign", ar = dir / "ar";
  ASSERT_EQ(lockstep(plus(synthetic_args(sign, 2, "sign"), {"--stop-after", "2"}), dir / "1.txt").rc, 0);
  ASSERT_EQ(lockstep(plus(synthetic_args(ar, 2, "allreduce"), {"--stop-after", "2"}), dir / "2.txt").rc, 0);

  ProcessResult r = lockstep({"train", "--resume", ar.string(), "--arch", "resnet20"}, dir / "3.txt");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.output.find("--arch resnet20 but the checkpoint"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("has tiny"), std::string::npos) << r.output;

  r = lockstep({"train", "--resume", ar.string(), "--classes", "7"}, dir / "4.txt");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.output.find("--classes 7 but the checkpoint"), std::string::npos) << r.output;

  r = lockstep({"train", "--resume", sign.string(), "--workers", "1", "--device", "cpu"}, dir / "5.txt");
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("--workers 1 but the checkpoint"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("momentum per worker"), std::string::npos) << r.output;

  r = lockstep({"train", "--resume", ar.string(), "--workers", "1", "--device", "cpu"}, dir / "6.txt");
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("re-sharded"), std::string::npos) << r.output;

  r = lockstep({"train", "--resume", (dir / "missing").string()}, dir / "7.txt");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;
}

TEST(ResumeRules, CorruptLatestFallsBackToTheNewestValidCheckpoint) {
  const fs::path dir = workdir("fallback");
  const fs::path run = dir / "run";
  ASSERT_EQ(lockstep(plus(synthetic_args(run, 1, "allreduce"), {"--checkpoint-every", "1", "--stop-after", "3"}),
                     dir / "a.txt")
                .rc,
            0);
  ASSERT_EQ(latest_of(run), "step-3");
  // One flipped bit in step-3's model data.
  const fs::path model = run / "checkpoints" / "step-3" / "model.safetensors";
  std::string bytes = read_text(model.string());
  bytes[bytes.size() - 5] ^= 0x10;
  std::ofstream(model, std::ios::binary | std::ios::trunc) << bytes;
  ProcessResult r = lockstep({"train", "--resume", run.string()}, dir / "b.txt");
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("step-3 is unusable"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("SHA-256"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("resume: " + (run / "checkpoints" / "step-2").string()), std::string::npos) << r.output;
}

TEST(ResumeRules, KeepLastPrunesOldCheckpoints) {
  const fs::path dir = workdir("keep-last");
  const fs::path run = dir / "run";
  ProcessResult r =
      lockstep(plus(synthetic_args(run, 1, "allreduce"), {"--checkpoint-every", "1", "--keep-last", "2"}), dir / "a.txt");
  ASSERT_EQ(r.rc, 0) << r.output;
  std::vector<fs::path> left = engine::list_checkpoints(run);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].filename(), "step-6");
  EXPECT_EQ(left[1].filename(), "step-5");
  EXPECT_EQ(latest_of(run), "step-6");
}

// A run that diverges between two loss checks (they run at log steps) writes no checkpoint of
// non-finite values: --keep-last never prunes the good ones for it, `latest` stays on the last
// good one, the error names it, and the run resumes from it.
TEST(ResumeRules, ADivergedRunWritesNoCheckpointAndKeepsTheLastGoodOne) {
  const fs::path dir = workdir("diverged");
  const fs::path run = dir / "run";
  ProcessResult r = lockstep({"train", "--arch", "tiny", "--synthetic", "--device", "cpu", "--batch-size", "8",
                              "--image-size", "16", "--steps-per-epoch", "10", "--epochs", "2", "--base-lr", "1e20",
                              "--log-every", "10", "--checkpoint-every", "1", "--keep-last", "2", "--out",
                              run.string()},
                             dir / "a.txt");
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("training diverged"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no checkpoint was written, the last good one is " +
                          (run / "checkpoints" / latest_of(run)).string()),
            std::string::npos)
      << r.output;
  const std::vector<fs::path> left = engine::list_checkpoints(run);
  ASSERT_FALSE(left.empty());
  for (const fs::path& ck : left) EXPECT_NO_THROW(engine::open_checkpoint(ck)) << ck;  // finite, verified
  EXPECT_EQ(left[0].filename(), latest_of(run));
  // It resumes (and, with the same rate, diverges again with the same message).
  ProcessResult b = lockstep({"train", "--resume", run.string()}, dir / "b.txt");
  EXPECT_NE(b.output.find("resume: " + (run / "checkpoints" / latest_of(run)).string()), std::string::npos) << b.output;
}

// A run folder holds one run: a new run into it is refused (re-running the first command after a
// crash must not replace its log and prune its checkpoints) unless --overwrite; resuming an older
// checkpoint in place is refused while newer ones exist; a folder another process trains into is
// refused whatever the flags (its .lock is held).
TEST(ResumeRules, ARunFolderHoldsOneRunAtATime) {
  const fs::path dir = workdir("run-folder");
  const fs::path run = dir / "run";
  const std::vector<std::string> tiny{"train", "--arch", "tiny", "--synthetic", "--device", "cpu", "--batch-size", "8",
                                      "--image-size", "16", "--steps-per-epoch", "3", "--epochs", "2",
                                      "--checkpoint-every", "2", "--out", run.string()};
  ProcessResult a = lockstep(tiny, dir / "a.txt");
  ASSERT_EQ(a.rc, 0) << a.output;
  const std::string log_before = read_text((run / "log.jsonl").string());

  ProcessResult again = lockstep(tiny, dir / "again.txt");
  EXPECT_EQ(again.rc, 2) << again.output;
  EXPECT_NE(again.output.find("--out " + run.string() + " already holds a run"), std::string::npos) << again.output;
  EXPECT_EQ(read_text((run / "log.jsonl").string()), log_before) << "the refused run touched the old one";
  EXPECT_EQ(engine::list_checkpoints(run).size(), 3u);  // step-2, step-4, step-6

  ProcessResult older = lockstep({"train", "--resume", (run / "checkpoints" / "step-2").string()}, dir / "older.txt");
  EXPECT_EQ(older.rc, 2) << older.output;
  EXPECT_NE(older.output.find("the run has newer checkpoints (step-6, step-4)"), std::string::npos) << older.output;

  {
    // Another process holds the folder: refused, --overwrite or not.
    const int fd = ::open((run / ".lock").c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
    ProcessResult busy = lockstep(plus(tiny, {"--overwrite"}), dir / "busy.txt");
    EXPECT_EQ(busy.rc, 2) << busy.output;
    EXPECT_NE(busy.output.find("is in use by another lockstep run"), std::string::npos) << busy.output;
    ::close(fd);
  }
  EXPECT_EQ(read_text((run / "log.jsonl").string()), log_before);

  ProcessResult replaced = lockstep(plus(tiny, {"--epochs", "1", "--overwrite"}), dir / "replaced.txt");
  ASSERT_EQ(replaced.rc, 0) << replaced.output;
  const std::vector<fs::path> left = engine::list_checkpoints(run);
  ASSERT_EQ(left.size(), 2u) << "the old run's checkpoints are gone, the new run's written";
  EXPECT_EQ(left[0].filename(), "step-3");
  EXPECT_EQ(left[1].filename(), "step-2");

  // The run folder starts another run (--init-from takes a folder as eval's --weights does).
  ProcessResult init = lockstep(plus(tiny, {"--init-from", run.string(), "--out", (dir / "init").string()}),
                                dir / "init.txt");
  ASSERT_EQ(init.rc, 0) << init.output;
  EXPECT_NE(init.output.find("init: weights from " + (run / "checkpoints" / "step-3" / "model.safetensors").string()),
            std::string::npos)
      << init.output;
}

// What --resume refuses because of the run's saved settings says so (the user never typed them),
// --no-checkpoint drops the saved checkpoint schedule, and a synthetic run cannot continue on a
// folder.
TEST(ResumeRules, SavedSettingsAreNamedAsSuch) {
  const fs::path dir = workdir("saved-settings");
  const fs::path run = dir / "run";
  ASSERT_EQ(lockstep({"train", "--arch", "tiny", "--synthetic", "--device", "cpu", "--batch-size", "8", "--image-size",
                      "16", "--steps-per-epoch", "3", "--epochs", "4", "--warmup-epochs", "3", "--checkpoint-every", "2",
                      "--keep-last", "2", "--stop-after", "4", "--out", run.string()},
                     dir / "a.txt")
                .rc,
            0);
  ProcessResult shorter = lockstep({"train", "--resume", run.string(), "--epochs", "2"}, dir / "b.txt");
  EXPECT_EQ(shorter.rc, 2) << shorter.output;
  EXPECT_NE(shorter.output.find("(--warmup-epochs is the run's saved setting; give --warmup-epochs to change it)"),
            std::string::npos)
      << shorter.output;
  ProcessResult data = lockstep({"train", "--resume", run.string(), "--data", dir.string()}, dir / "c.txt");
  EXPECT_EQ(data.rc, 2) << data.output;
  EXPECT_NE(data.output.find("trained on synthetic data"), std::string::npos) << data.output;
  ProcessResult early = lockstep({"train", "--resume", run.string(), "--stop-after", "3"}, dir / "e.txt");
  EXPECT_EQ(early.rc, 2) << early.output;
  EXPECT_NE(early.output.find("is already at update 4"), std::string::npos) << early.output;
  ProcessResult none = lockstep({"train", "--resume", run.string(), "--no-checkpoint", "--stop-after", "5"}, dir / "d.txt");
  EXPECT_EQ(none.rc, 0) << none.output;
  EXPECT_NE(none.output.find("--no-checkpoint: nothing saved"), std::string::npos) << none.output;
  EXPECT_EQ(latest_of(run), "step-4");
}

// Resuming on a training set of another size would renumber the epochs and move the update count
// backwards: refused, naming --data and both sizes.
TEST(ResumeRules, AnotherTrainingSetIsRefused) {
  const fs::path dir = workdir("other-data");
  for (const auto& [name, per_class] : {std::pair{"big", "8"}, std::pair{"small", "2"}})
    ASSERT_EQ(lockstep({"dataset", "make-synthetic", "--out", (dir / name).string(), "--classes", "3", "--per-class",
                        per_class},
                       dir / (std::string(name) + ".txt"))
                  .rc,
              0);
  const fs::path run = dir / "run";
  ASSERT_EQ(lockstep({"train", "--arch", "tiny", "--device", "cpu", "--data", (dir / "big").string(), "--classes", "3",
                      "--batch-size", "2", "--image-size", "16", "--epochs", "2", "--stop-after", "3", "--out",
                      run.string()},
                     dir / "a.txt")
                .rc,
            0);
  ProcessResult r = lockstep({"train", "--resume", run.string(), "--data", (dir / "small").string()}, dir / "b.txt");
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("was saved by a run of 12 updates per epoch; this one has 3"), std::string::npos) << r.output;
  EXPECT_EQ(latest_of(run), "step-3");
}

// ---- evaluating saved weights ----

// "loss 2.3026  top-1 ..." of the last evaluation line of an output.
std::string last_eval(const std::string& out) {
  const size_t at = out.rfind("eval  epoch");
  if (at == std::string::npos) return "";
  const size_t loss = out.find("loss ", at);
  return out.substr(loss, out.find('\n', loss) - loss);
}

TEST(EvalWeights, RunFolderCheckpointAndFileGiveTheTrainingRunsLastEvaluation) {
  const fs::path dir = workdir("eval-weights");
  const fs::path run = dir / "run";
  ProcessResult t = lockstep({"train", "--arch", "tiny", "--classes", "5", "--synthetic", "--device", "cpu",
                              "--batch-size", "8", "--steps-per-epoch", "4", "--epochs", "1", "--eval-steps", "3",
                              "--out", run.string()},
                             dir / "train.txt");
  ASSERT_EQ(t.rc, 0) << t.output;
  const std::string want = last_eval(t.output);
  ASSERT_FALSE(want.empty()) << t.output;
  const fs::path model = run / "checkpoints" / "step-4" / "model.safetensors";
  for (const std::string& w : {run.string(), (run / "checkpoints" / "step-4").string(), model.string()}) {
    SCOPED_TRACE(w);
    // The same synthetic validation batches (seed 0, 3 steps): the same loss, to the digit.
    ProcessResult e = lockstep({"eval", "--weights", w, "--synthetic", "--device", "cpu", "--batch-size", "8",
                                "--eval-steps", "3"},
                               dir / "eval.txt");
    ASSERT_EQ(e.rc, 0) << e.output;
    EXPECT_NE(e.output.find("weights: " + model.string()), std::string::npos) << e.output;
    EXPECT_EQ(last_eval(e.output), want) << e.output;
  }
  ProcessResult bad = lockstep({"eval", "--weights", model.string(), "--classes", "7", "--synthetic", "--device",
                                "cpu", "--eval-steps", "1"},
                               dir / "bad.txt");
  EXPECT_EQ(bad.rc, 1) << bad.output;
  EXPECT_NE(bad.output.find("tensor 'fc.weight': shape [5, 16] in the file, the model's is [7, 16]"), std::string::npos)
      << bad.output;
}

}  // namespace
}  // namespace lockstep::test
