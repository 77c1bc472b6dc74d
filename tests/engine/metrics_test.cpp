// RunLog writes parseable JSON lines and the config; Progress writes plain lines off a
// terminal and rewrites one line with '\r' on one.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "engine/config.h"
#include "engine/metrics.h"

namespace lockstep::engine {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("lockstep_metrics_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

std::vector<nlohmann::json> read_lines(const fs::path& p) {
  std::ifstream f(p);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(f, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(RunLog, WritesJsonLinesAndConfig) {
  fs::path dir = fresh_dir("log") / "nested" / "run";
  {
    RunLog log(dir);
    TrainConfig c;
    c.out_dir = dir.string();
    log.write_config(c.to_json());
    log.log_step({.epoch = 1, .step = 10, .update = 10, .lr = 0.1, .loss = 6.9, .top1 = 0.001, .top5 = 0.005,
                  .img_per_s = 1234.5, .time = 1.5});
    log.log_step({.epoch = 1, .step = 20, .update = 20, .lr = 0.12, .loss = std::nan(""), .top1 = 0, .top5 = 0,
                  .img_per_s = 1300, .time = 3});
    log.log_eval({.epoch = 1, .update = 20, .samples = 500, .loss = 6.5, .top1 = 0.01, .top5 = 0.05, .time = 4});
    RunSummary s;
    s.epochs = 1;
    s.updates = 20;
    s.images = 640;
    s.seconds = 4;
    s.has_eval = true;
    s.last_eval.top1 = 0.01;
    log.log_summary(s);
  }
  nlohmann::json config = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  EXPECT_EQ(config["arch"], "resnet50");
  EXPECT_EQ(TrainConfig::from_json(config).out_dir, dir.string());

  std::vector<nlohmann::json> lines = read_lines(dir / "log.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  const nlohmann::json& a = lines[0];
  EXPECT_EQ(a["type"], "step");
  for (const char* key : {"epoch", "step", "update", "lr", "loss", "top1", "top5", "img_per_s", "time"})
    EXPECT_TRUE(a.contains(key)) << key;
  EXPECT_EQ(a["step"], 10);
  EXPECT_DOUBLE_EQ(a["lr"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(a["img_per_s"].get<double>(), 1234.5);
  EXPECT_TRUE(lines[1]["loss"].is_null());  // NaN has no JSON spelling
  EXPECT_EQ(lines[2]["type"], "eval");
  EXPECT_EQ(lines[2]["samples"], 500);
  EXPECT_DOUBLE_EQ(lines[2]["top5"].get<double>(), 0.05);
  EXPECT_EQ(lines[3]["type"], "summary");
  EXPECT_DOUBLE_EQ(lines[3]["img_per_s"].get<double>(), 160);
  EXPECT_DOUBLE_EQ(lines[3]["eval"]["top1"].get<double>(), 0.01);
  fs::remove_all(fresh_dir("log"));
}

// A resumed run re-reads its log.jsonl; lines a user edited into other types are skipped or
// read as absent, never an escaped nlohmann exception.
TEST(RunLog, ResumeReadsALogWithMistypedFields) {
  const fs::path d = fresh_dir("mistyped");
  fs::create_directories(d);
  {
    std::ofstream f(d / "log.jsonl");
    f << R"({"type":"eval","update":4,"epoch":1,"top1":0.5,"loss":1.0,"top5":0.9,"samples":10})" << "\n"
      << R"({"type":7,"update":5})" << "\n"
      << R"({"type":"eval","update":6,"epoch":"two","top1":0.75,"samples":[1]})" << "\n"
      << R"({"type":"step","update":7,"loss":"x","top1":0.1})" << "\n"
      << "not json\n";
  }
  RunLog log(d, 9);
  ASSERT_TRUE(log.kept_best_eval().has_value());
  EXPECT_EQ(log.kept_best_eval()->update, 6);
  EXPECT_EQ(log.kept_best_eval()->epoch, 0);  // "two" reads as absent
  EXPECT_EQ(log.kept_best_eval()->samples, 0);
  EXPECT_DOUBLE_EQ(log.kept_best_eval()->top1, 0.75);
  EXPECT_FALSE(log.kept_last_loss_top1().has_value());
  fs::remove_all(d);
}

TEST(RunLog, LinesAreOnDiskAsWritten) {
  fs::path dir = fresh_dir("flush");
  RunLog log(dir);
  log.log_step({});
  EXPECT_EQ(read_lines(dir / "log.jsonl").size(), 1u);  // before the log is closed
  fs::remove_all(dir);
}

TEST(RunLog, ClearErrorWhenTheFolderCannotBeMade) {
  fs::path base = fresh_dir("blocked");
  fs::create_directories(base);
  std::ofstream(base / "file") << "x";
  try {
    RunLog log(base / "file" / "run");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create run folder"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find((base / "file" / "run").string()), std::string::npos) << e.what();
  }
  fs::remove_all(base);
}

ProgressState state(int64_t step) {
  return {.epoch = 2, .epochs = 90, .step = step, .steps = 5004, .img_per_s = 2500.25, .loss = 5.4321,
          .top1 = 0.1234, .lr = 0.4, .eta_s = 3725};
}

TEST(Progress, FormatShowsEveryField) {
  EXPECT_EQ(Progress::format(state(10)),
            "epoch 2/90  step 10/5004  2500.2 img/s  loss 5.4321  top-1 12.34%  lr 0.4  eta 1:02:05");
}

TEST(Progress, PlainLinesOffATerminal) {
  std::ostringstream os;
  Progress p(os, false);
  p.update(state(10));
  p.update(state(20));
  p.eval({.epoch = 2, .update = 20, .samples = 100, .loss = 5, .top1 = 0.2, .top5 = 0.5, .time = 1});
  std::string out = os.str();
  EXPECT_EQ(out.find('\r'), std::string::npos);
  std::istringstream lines(out);
  std::string l1, l2, l3;
  std::getline(lines, l1);
  std::getline(lines, l2);
  std::getline(lines, l3);
  EXPECT_EQ(l1, Progress::format(state(10)));
  EXPECT_EQ(l2, Progress::format(state(20)));
  EXPECT_NE(l3.find("top-5 50.00%"), std::string::npos) << l3;
}

TEST(Progress, LiveLineOnATerminal) {
  std::ostringstream os;
  Progress p(os, true);
  p.update(state(10));
  p.update(state(20));
  std::string out = os.str();
  EXPECT_EQ(out, "\r" + Progress::format(state(10)) + "\r" + Progress::format(state(20)));
  EXPECT_EQ(out.find('\n'), std::string::npos);
  p.message("note");  // ends the live line before printing
  EXPECT_EQ(os.str(), out + "\nnote\n");
}

TEST(Progress, ShorterLivePadsOverTheLonger) {
  std::ostringstream os;
  Progress p(os, true);
  ProgressState s = state(1000);
  p.update(s);
  size_t first = os.str().size() - 1;
  s.step = 1;
  p.update(s);
  EXPECT_EQ(os.str().size() - first - 2, first) << "second line padded to the first's length";
}

TEST(Progress, Summary) {
  std::ostringstream os;
  Progress p(os, true);
  p.update(state(1));
  RunSummary s;
  s.epochs = 1;
  s.updates = 20;
  s.images = 640;
  s.seconds = 3661;
  s.final_loss = 2.5;
  s.final_top1 = 0.5;
  s.skipped_updates = 2;
  s.out_dir = "runs/x";
  p.summary(s);
  std::string out = os.str();
  EXPECT_NE(out.find("\ndone: 1 epochs, 20 updates, 640 images in 1:01:01"), std::string::npos) << out;
  EXPECT_NE(out.find("top-1 50.00%"), std::string::npos) << out;
  EXPECT_NE(out.find("skipped updates (fp16 overflow): 2"), std::string::npos) << out;
  EXPECT_NE(out.find("runs/x/log.jsonl"), std::string::npos) << out;
  EXPECT_EQ(out.back(), '\n');
}

TEST(Progress, Durations) {
  EXPECT_EQ(format_duration(0), "0:00:00");
  EXPECT_EQ(format_duration(59.9), "0:00:59");
  EXPECT_EQ(format_duration(3725), "1:02:05");
  EXPECT_EQ(format_duration(100 * 3600), "100:00:00");
  EXPECT_EQ(format_duration(-1), "-:--:--");
  EXPECT_EQ(format_duration(std::nan("")), "-:--:--");
  EXPECT_DOUBLE_EQ(eta_seconds(10, 100, 5), 45);
  EXPECT_LT(eta_seconds(0, 100, 5), 0);
}

}  // namespace
}  // namespace lockstep::engine
