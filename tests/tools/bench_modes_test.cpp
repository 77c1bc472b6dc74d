// `lockstep bench modes` in-process on synthetic data: every mode runs, and the report's files
// exist and parse (modes.json with each mode's evaluations, the table, two PNGs that decode).
// Not the shapes of the curves: those are measurements (README, bench/RESULTS.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/decode.h"
#include "tools/lockstep/cli_bench_modes.h"
#include "tools/lockstep/cli_train.h"

namespace lockstep::cli {
namespace {

namespace fs = std::filesystem;

int bench(std::vector<std::string> args, std::ostream& out) {
  args.insert(args.begin(), "modes");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return run_bench_modes(static_cast<int>(argv.size()), argv.data(), out);
}

TEST(BenchModes, EveryModeRunsAndTheReportParses) {
  const fs::path dir = fs::path(::testing::TempDir()) / "lockstep_bench_modes";
  fs::remove_all(dir);
  std::ostringstream out;
  ASSERT_EQ(bench({"--arch", "tiny", "--synthetic", "--device", "cpu", "--workers", "2", "--epochs", "2",
                   "--steps-per-epoch", "4", "--eval-steps", "1", "--batch-size", "8", "--out", dir.string()},
                  out),
            0);
  std::ifstream in(dir / "modes.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  ASSERT_EQ(j["modes"].size(), 5u);
  std::vector<std::string> names;
  for (const auto& m : j["modes"]) {
    names.push_back(m["mode"]);
    ASSERT_EQ(m["evals"].size(), 2u) << m.dump();
    for (const auto& e : m["evals"]) {
      EXPECT_TRUE(e["top1"].is_number()) << e.dump();
      EXPECT_GE(e["time"].get<double>(), 0.0);
    }
    EXPECT_TRUE(fs::exists(dir / m["mode"].get<std::string>() / "log.jsonl"));
  }
  EXPECT_EQ(names, (std::vector<std::string>{"allreduce", "sign", "backup", "average", "async"}));
  std::ifstream md(dir / "modes.md");
  std::stringstream table;
  table << md.rdbuf();
  for (const std::string& n : names) EXPECT_NE(table.str().find("| " + n + " |"), std::string::npos) << table.str();
  for (const char* png : {"accuracy_vs_epoch.png", "accuracy_vs_time.png"}) {
    std::vector<uint8_t> bytes;
    data::Decoder::read_file(dir / png, bytes);
    data::Decoder d;
    const data::ImageInfo info = d.info(bytes.data(), bytes.size());
    EXPECT_EQ(info.width, 900) << png;
    EXPECT_EQ(info.height, 600) << png;
  }
  EXPECT_NE(out.str().find("report: "), std::string::npos);
}

TEST(BenchModes, ChoosingModesAndRefusingSync) {
  std::ostringstream out;
  EXPECT_THROW(bench({"--modes", "allreduce,bogus", "--synthetic", "--device", "cpu"}, out), ConfigError);
  EXPECT_THROW(bench({"--sync", "sign", "--synthetic", "--device", "cpu"}, out), ConfigError);
  EXPECT_THROW(bench({"--modes", "sign,sign", "--synthetic", "--device", "cpu"}, out), ConfigError);
  const fs::path dir = fs::path(::testing::TempDir()) / "lockstep_bench_modes_one";
  fs::remove_all(dir);
  ASSERT_EQ(bench({"--modes", "average", "--arch", "tiny", "--synthetic", "--device", "cpu", "--epochs", "1",
                   "--steps-per-epoch", "2", "--eval-steps", "1", "--batch-size", "4", "--out", dir.string()},
                  out),
            0);
  std::ifstream in(dir / "modes.json");
  EXPECT_EQ(nlohmann::json::parse(in)["modes"].size(), 1u);
}

}  // namespace
}  // namespace lockstep::cli

namespace lockstep::cli {
namespace {

TEST(BenchStragglers, ReportsUpdateTimesPerModeUnderAStragglerPattern) {
  const fs::path dir = fs::path(::testing::TempDir()) / "lockstep_bench_stragglers";
  fs::remove_all(dir);
  std::vector<std::string> args{"stragglers", "--arch", "tiny", "--synthetic", "--device", "cpu", "--workers", "3",
                                "--epochs", "2", "--steps-per-epoch", "6", "--eval-steps", "1", "--batch-size", "4",
                                "--straggler", "rank=2,delay=5ms", "--target", "0.01", "--out", dir.string()};
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream out;
  ASSERT_EQ(run_bench_stragglers(static_cast<int>(argv.size()), argv.data(), out), 0);
  std::ifstream in(dir / "stragglers.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  ASSERT_EQ(j["modes"].size(), 3u);
  for (const auto& m : j["modes"]) {
    EXPECT_EQ(m["updates"].get<int64_t>(), 12) << m.dump();
    EXPECT_TRUE(m["update_ms_median"].is_number()) << m.dump();
    EXPECT_LE(m["update_ms_median"].get<double>(), m["update_ms_p90"].get<double>());
    EXPECT_LE(m["update_ms_p90"].get<double>(), m["update_ms_p99"].get<double>());
    EXPECT_TRUE(m["time_to_target"].is_number()) << "any evaluation reaches 1%: " << m.dump();
    EXPECT_EQ(m["straggler_delay_s"].size(), 3u);
  }
  EXPECT_EQ(j["modes"][1]["mode"], "backup");
  EXPECT_EQ(j["modes"][1]["dropped_per_worker"].size(), 3u);
  EXPECT_NE(out.str().find("| coded |"), std::string::npos);
  // Refused by name: a target that is not a fraction, one worker (nothing to compare), --resume.
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"stragglers", "--synthetic", "--device", "cpu", "--steps-per-epoch", "2", "--workers",
                                 "2", "--target", "2"},
        std::vector<std::string>{"stragglers", "--synthetic", "--device", "cpu", "--steps-per-epoch", "2", "--workers",
                                 "1"},
        std::vector<std::string>{"stragglers", "--synthetic", "--device", "cpu", "--steps-per-epoch", "2", "--workers",
                                 "2", "--resume", "x"}}) {
    argv.clear();
    for (const std::string& a : bad) argv.push_back(a.c_str());
    try {
      run_bench_stragglers(static_cast<int>(argv.size()), argv.data(), out);
      ADD_FAILURE() << bad.back() << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.option(), bad[bad.size() - 2]) << e.what();
    }
  }
}

}  // namespace
}  // namespace lockstep::cli
