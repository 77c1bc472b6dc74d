// The TensorBoard event writer (engine/tensorboard/): CRC-32C against published test vectors,
// TensorFlow's masked CRC, the protobuf bytes of an Event and the record framing byte for byte
// (the expected bytes are what the protobuf library serializes for the same Event), files that
// a reader reads back whole or, cut short, up to the last whole record, and the scalars a run's
// log records become.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/metrics.h"
#include "engine/tensorboard/crc32c.h"
#include "engine/tensorboard/event_record.h"
#include "engine/tensorboard/event_writer.h"
#include "engine/tensorboard/run_scalars.h"
#include "tests/engine/event_file_reader.h"

namespace lockstep::engine::tensorboard {
namespace {

namespace fs = std::filesystem;
using test::decode_event;
using test::read_records;

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("lockstep_tb_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

std::string unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

// The only file in `dir`.
fs::path only_file(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  EXPECT_EQ(files.size(), 1u) << dir;
  return files.empty() ? fs::path() : files.front();
}

TEST(Crc32c, PublishedTestVectors) {
  // The check value of the CRC catalogue, and RFC 3720 (iSCSI) appendix B.4.
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(crc32c(up), 0x46DD794Eu);
  EXPECT_EQ(crc32c(down), 0x113FDB5Cu);
  EXPECT_EQ(crc32c(""), 0u);
}

TEST(Crc32c, ExtendingEqualsTheWhole) {
  const std::string s = "The quick brown fox jumps over the lazy dog";
  for (size_t cut : {size_t{0}, size_t{1}, size_t{17}, s.size()})
    EXPECT_EQ(crc32c_extend(crc32c(s.data(), cut), s.data() + cut, s.size() - cut), crc32c(s)) << cut;
}

TEST(Crc32c, TensorFlowMask) {
  EXPECT_EQ(mask_crc(0), 0xa282ead8u);
  const uint32_t c = 0xE3069283u;
  EXPECT_EQ(mask_crc(c), ((c >> 15) | (c << 17)) + 0xa282ead8u);
  EXPECT_EQ(masked_crc32c("123456789"), 0xC78AB0E5u);  // TensorBoard's Python masked_crc32c agrees
}

TEST(EventRecord, ScalarEventBytes) {
  const Scalar s[] = {{"a", 2.0f}};
  // 09 <double 1.5>  10 03  2a 0a [0a 08 [0a 01 'a'  15 <float 2.0>]]
  EXPECT_EQ(encode_scalars_event(1.5, 3, s), unhex("09000000000000f83f10032a0a0a080a01611500000040"));
}

TEST(EventRecord, FileVersionEventBytes) {
  // 09 <double 1.5>  1a 0d "brain.Event:2"
  EXPECT_EQ(encode_file_version_event(1.5), unhex("09000000000000f83f1a0d627261696e2e4576656e743a32"));
}

TEST(EventRecord, SessionStartEventBytes) {
  // 09 <double 1.5>  10 04  3a 02 [08 01]: session_log { status: START }
  EXPECT_EQ(encode_session_start_event(1.5, 4), unhex("09000000000000f83f10043a020801"));
}

TEST(EventRecord, MultiByteVarintsAndSeveralValues) {
  const Scalar s[] = {{"x", 0.f}, {std::string_view("y/z"), -1.f}};
  const test::Event e = decode_event(encode_scalars_event(0, 300, s));
  EXPECT_EQ(e.step, 300);  // 10 ac 02
  ASSERT_EQ(e.scalars.size(), 2u);
  EXPECT_EQ(e.scalars[1].first, "y/z");
  EXPECT_EQ(e.scalars[1].second, -1.f);
  EXPECT_NE(encode_scalars_event(0, 300, s).find("\x10\xac\x02"), std::string::npos);
}

TEST(EventRecord, FramingByteForByte) {
  const std::string data = unhex("09000000000000f83f10032a0a0a080a01611500000040");
  // length 23 (8 bytes LE), masked CRC of those 8 bytes, the data, masked CRC of the data.
  EXPECT_EQ(frame_record(data), unhex("1700000000000000e7cef81e") + data + unhex("e81c3a9d"));
  const std::string empty = frame_record("");
  ASSERT_EQ(empty.size(), 16u);
  EXPECT_EQ(empty.substr(12), unhex("d8ea82a2"));  // the mask of crc32c("") = 0
}

TEST(EventWriter, FileName) {
  EXPECT_EQ(event_file_name(1700000000, "host"), "events.out.tfevents.1700000000.host");
  EXPECT_EQ(event_file_name(12345, "a.b"), "events.out.tfevents.0000012345.a.b");
}

TEST(EventWriter, RecordsReadBack) {
  const fs::path dir = fresh_dir("read") / "tb";
  fs::path path;
  {
    EventWriter w(dir);  // creates the folder
    path = w.path();
    EXPECT_EQ(path.parent_path(), dir);
    EXPECT_EQ(path.filename().string().rfind("events.out.tfevents.", 0), 0u) << path;
    const Scalar a[] = {{"train/loss", 2.5f}, {"train/top1", 0.25f}};
    const Scalar b[] = {{"eval/top1", 0.5f}};
    w.add_scalars(10, a);
    EXPECT_EQ(read_records(read_all(path)).records.size(), 2u);  // on disk before close
    w.add_scalars(20, b);
    w.close();
    EXPECT_THROW(w.add_scalars(30, b), Error);
  }
  const test::RecordFile f = read_records(read_all(path));
  EXPECT_FALSE(f.truncated);
  EXPECT_FALSE(f.corrupt);
  ASSERT_EQ(f.records.size(), 3u);
  const test::Event first = decode_event(f.records[0]);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_GT(first.wall_time, 1.6e9);  // seconds since 1970, not since the run started
  const test::Event e1 = decode_event(f.records[1]), e2 = decode_event(f.records[2]);
  EXPECT_EQ(e1.step, 10);
  ASSERT_EQ(e1.scalars.size(), 2u);
  EXPECT_EQ(e1.scalars[0], (std::pair<std::string, float>{"train/loss", 2.5f}));
  EXPECT_EQ(e1.scalars[1], (std::pair<std::string, float>{"train/top1", 0.25f}));
  EXPECT_EQ(e2.step, 20);
  EXPECT_GE(e2.wall_time, e1.wall_time);
  fs::remove_all(dir.parent_path());
}

TEST(EventWriter, CutShortReadsUpToTheLastWholeRecord) {
  const fs::path dir = fresh_dir("cut");
  std::string bytes;
  {
    EventWriter w(dir);
    for (int k = 1; k <= 3; ++k) {
      const Scalar s[] = {{"v", static_cast<float>(k)}};
      w.add_scalars(k, s);
    }
    w.close();
    bytes = read_all(w.path());
  }
  const test::RecordFile whole = read_records(bytes);
  ASSERT_EQ(whole.records.size(), 4u);
  const size_t last_start = bytes.size() - (whole.records.back().size() + 16);
  // A crash can stop the file anywhere inside its last record: every cut reads the three before.
  for (size_t cut = last_start + 1; cut < bytes.size(); ++cut) {
    const test::RecordFile f = read_records(std::string_view(bytes).substr(0, cut));
    EXPECT_TRUE(f.truncated) << cut;
    EXPECT_FALSE(f.corrupt) << cut;
    ASSERT_EQ(f.records.size(), 3u) << cut;
    EXPECT_EQ(decode_event(f.records[2]).scalars.at(0).second, 2.f);
  }
  // A flipped byte is caught by the data CRC.
  std::string bad = bytes;
  bad[bad.size() - 6] ^= 0x01;
  EXPECT_TRUE(read_records(bad).corrupt);
  fs::remove_all(dir);
}

TEST(EventWriter, ALaterFileSortsAfterAnEarlierOne) {
  const fs::path dir = fresh_dir("two");
  EventWriter a(dir), b(dir);  // within the same second: b takes the next second's name
  EXPECT_LT(a.path().filename().string(), b.path().filename().string());
  EXPECT_EQ(read_records(read_all(a.path())).records.size(), 1u);  // a was not touched by b
  fs::remove_all(dir);
}

TEST(EventWriter, ClearErrorWhenTheFolderCannotBeMade) {
  const fs::path base = fresh_dir("blocked");
  fs::create_directories(base);
  std::ofstream(base / "tb") << "x";
  try {
    EventWriter w(base / "tb");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create TensorBoard folder"), std::string::npos) << e.what();
  }
  fs::remove_all(base);
}

std::map<std::string, float> as_map(const ScalarEvent& e) {
  std::map<std::string, float> m;
  for (const Scalar& s : e.scalars) m[std::string(s.tag)] = s.value;
  return m;
}

TEST(RunScalars, StepRecordsAndTheirDerivedFractions) {
  StepRecord r{.epoch = 2, .step = 8, .update = 40, .lr = 0.1, .loss = 1.5, .top1 = 0.25, .top5 = 0.75,
               .img_per_s = 300, .time = 9, .comm_s = 0.5, .wait_s = 1, .bytes_sent = 1000, .bytes_received = 1000,
               .interval_s = 4, .interval_updates = 8, .skipped_updates = 3};
  ScalarEvent e = step_scalars(r);
  EXPECT_EQ(e.step, 40);
  const std::map<std::string, float> m = as_map(e);
  EXPECT_EQ(m.size(), 9u);
  EXPECT_EQ(m.at("train/loss"), 1.5f);
  EXPECT_EQ(m.at("train/top1"), 0.25f);
  EXPECT_EQ(m.at("train/top5"), 0.75f);
  EXPECT_EQ(m.at("train/lr"), 0.1f);
  EXPECT_EQ(m.at("train/images_per_s"), 300.f);
  EXPECT_EQ(m.at("train/data_wait_fraction"), 0.25f);
  EXPECT_EQ(m.at("train/comm_exposed_fraction"), 0.125f);
  EXPECT_EQ(m.at("train/bytes_sent_per_step"), 125.f);
  EXPECT_EQ(m.at("train/skipped_steps"), 3.f);
  // An empty interval gives 0, never a division by 0.
  r.interval_s = 0;
  r.interval_updates = 0;
  const std::map<std::string, float> s = as_map(step_scalars(r));
  EXPECT_EQ(s.at("train/comm_exposed_fraction"), 0.f);
  EXPECT_EQ(s.at("train/data_wait_fraction"), 0.f);
  EXPECT_EQ(s.at("train/bytes_sent_per_step"), 0.f);
}

TEST(RunScalars, EvalAndOtherRecords) {
  const ScalarEvent e = eval_scalars({.epoch = 3, .update = 60, .samples = 10, .loss = 0.5, .top1 = 0.8, .top5 = 1, .time = 2});
  EXPECT_EQ(e.step, 60);
  EXPECT_EQ(as_map(e), (std::map<std::string, float>{{"eval/loss", 0.5f}, {"eval/top1", 0.8f}, {"eval/top5", 1.f},
                                                     {"eval/epoch", 3.f}}));
  const ScalarEvent a = record_scalars({{"type", "async"}, {"epoch", 1}, {"update", 12}, {"active_workers", 2},
                                        {"updates", 12}, {"staleness_mean", 0.5}, {"staleness_max", 2},
                                        {"staleness_histogram", {6, 5, 1}}});
  EXPECT_EQ(a.step, 12);
  EXPECT_EQ(as_map(a), (std::map<std::string, float>{{"async/staleness_mean", 0.5f}, {"async/staleness_max", 2.f},
                                                     {"async/active_workers", 2.f}}));
  const ScalarEvent b = record_scalars({{"type", "backup"}, {"epoch", 1}, {"update", 5}, {"accepted", {5, 3, 2}},
                                        {"dropped", {0, 2, 3}}});
  EXPECT_EQ(b.step, 5);
  EXPECT_EQ(as_map(b), (std::map<std::string, float>{{"backup/dropped_gradients", 5.f}}));
  EXPECT_TRUE(record_scalars({{"type", "resume"}, {"update", 4}}).scalars.empty());
}

// RunLog with open_tensorboard(): every record also lands in tb/ at its update, and the summary
// goes to summary.json as well as the log.
TEST(RunLogTensorBoard, RecordsBecomeScalarsAndTheSummaryAFile) {
  const fs::path dir = fresh_dir("runlog");
  {
    RunLog log(dir);
    EXPECT_EQ(log.open_tensorboard(), dir / "tb");
    log.log_step({.epoch = 1, .step = 5, .update = 5, .lr = 0.1, .loss = 2, .top1 = 0.5, .interval_s = 1,
                  .interval_updates = 5});
    log.log_eval({.epoch = 1, .update = 5, .samples = 8, .loss = 1, .top1 = 0.75, .top5 = 1, .time = 1});
    log.log_record({{"type", "backup"}, {"update", 5}, {"dropped", {1, 1}}});
    log.log_record({{"type", "note"}, {"update", 5}});  // no charts: no event
    RunSummary s;
    s.epochs = 1;
    s.updates = 5;
    s.out_dir = dir.string();
    s.tensorboard_dir = (dir / "tb").string();
    s.checkpoints_written = 2;
    s.add_eval({.epoch = 1, .update = 5, .samples = 8, .loss = 1, .top1 = 0.75, .top5 = 1, .time = 1});
    log.log_summary(s);
  }
  const test::RecordFile f = read_records(read_all(only_file(dir / "tb")));
  ASSERT_EQ(f.records.size(), 4u);
  EXPECT_EQ(decode_event(f.records[1]).scalars.at(0).first, "train/loss");
  EXPECT_EQ(decode_event(f.records[2]).scalars.at(1), (std::pair<std::string, float>{"eval/top1", 0.75f}));
  EXPECT_EQ(decode_event(f.records[3]).scalars.at(0), (std::pair<std::string, float>{"backup/dropped_gradients", 2.f}));
  for (size_t k = 1; k < 4; ++k) EXPECT_EQ(decode_event(f.records[k]).step, 5);

  nlohmann::json summary = nlohmann::json::parse(std::ifstream(dir / "summary.json"));
  std::ifstream in(dir / "log.jsonl");
  nlohmann::json last;
  for (std::string line; std::getline(in, line);) last = nlohmann::json::parse(line);
  EXPECT_EQ(last["type"], "summary");
  last.erase("type");
  EXPECT_EQ(summary, last);
  EXPECT_EQ(summary["checkpoints_written"], 2);
  EXPECT_EQ(summary["best_eval"]["top1"], 0.75);
  EXPECT_EQ(summary["best_eval"]["epoch"], 1);
  EXPECT_EQ(summary["tensorboard"], (dir / "tb").string());
  fs::remove_all(dir);
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

// A new run in a used folder replaces the earlier event files (as it replaces log.jsonl); a
// resumed run adds a file that starts with a SessionLog START just after the checkpoint.
TEST(RunLogTensorBoard, NewRunReplacesResumedRunAdds) {
  const fs::path dir = fresh_dir("files");
  fs::create_directories(dir / "tb");
  std::ofstream(dir / "tb" / "notes.txt") << "not ours";
  { RunLog(dir).open_tensorboard(); }
  { RunLog(dir).open_tensorboard(); }
  std::vector<fs::path> files = files_in(dir / "tb");
  ASSERT_EQ(files.size(), 2u);  // one event file and the user's notes
  const fs::path first = files[0];
  EXPECT_EQ(files[1].filename(), "notes.txt");
  {
    RunLog resumed(dir, 6);
    resumed.open_tensorboard();
    resumed.log_step({.update = 8});
  }
  files = files_in(dir / "tb");
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0], first);
  const test::RecordFile f = read_records(read_all(files[1]));
  ASSERT_EQ(f.records.size(), 3u);
  const test::Event start = decode_event(f.records[1]);
  EXPECT_TRUE(start.session_start);
  EXPECT_EQ(start.step, 7);
  EXPECT_EQ(decode_event(f.records[2]).step, 8);
  fs::remove_all(dir);
}

TEST(RunLogTensorBoard, ResumedLogKeepsTheBestEvaluation) {
  const fs::path dir = fresh_dir("best");
  {
    RunLog log(dir);
    log.log_eval({.epoch = 1, .update = 4, .top1 = 0.5});
    log.log_eval({.epoch = 2, .update = 8, .top1 = 0.7});
    log.log_eval({.epoch = 3, .update = 12, .top1 = 0.6});
    log.log_eval({.epoch = 4, .update = 16, .top1 = 0.9});  // after the checkpoint: dropped
  }
  RunLog resumed(dir, 12);
  ASSERT_TRUE(resumed.kept_best_eval().has_value());
  EXPECT_EQ(resumed.kept_best_eval()->epoch, 2);
  EXPECT_DOUBLE_EQ(resumed.kept_best_eval()->top1, 0.7);
  EXPECT_FALSE(RunLog(fresh_dir("fresh")).kept_best_eval().has_value());
  fs::remove_all(dir);
  fs::remove_all(fresh_dir("fresh"));
}

TEST(RunSummary, BestEvaluationIsTheFirstHighest) {
  RunSummary s;
  s.add_eval({.epoch = 1, .top1 = 0.5});
  s.add_eval({.epoch = 2, .top1 = 0.8});
  s.add_eval({.epoch = 3, .top1 = 0.8});
  s.add_eval({.epoch = 4, .top1 = std::nan("")});
  EXPECT_EQ(s.best_eval->epoch, 2);
  EXPECT_EQ(s.last_eval.epoch, 4);
  EXPECT_TRUE(s.has_eval);
}

TEST(RunSummary, TerminalSummaryHasBestTimesAndHints) {
  std::ostringstream os;
  Progress p(os, false);
  RunSummary s;
  s.epochs = 2;
  s.updates = 20;
  s.images = 640;
  s.seconds = 100;
  s.wait_seconds = 25;
  s.comm_seconds = 10;
  s.out_dir = "runs/x";
  s.tensorboard_dir = "runs/x/tb";
  s.checkpoint = "runs/x/checkpoints/step-20";
  s.checkpoints_written = 2;
  s.add_eval({.epoch = 1, .update = 10, .top1 = 0.9});
  s.add_eval({.epoch = 2, .update = 20, .top1 = 0.85});
  p.summary(s);
  const std::string out = os.str();
  EXPECT_NE(out.find("best:  top-1 90.00% (epoch 1, update 10)"), std::string::npos) << out;
  EXPECT_NE(out.find("exposed communication 0:00:10 (10.0%), waiting for data 0:00:25 (25.0%)"), std::string::npos) << out;
  EXPECT_NE(out.find("checkpoint: runs/x/checkpoints/step-20 (2 written by this run)"), std::string::npos) << out;
  EXPECT_NE(out.find("summary: runs/x/summary.json"), std::string::npos) << out;
  EXPECT_NE(out.find("watch: tensorboard --logdir runs/x/tb\n"), std::string::npos) << out;
  EXPECT_NE(out.find("plot:  python3 tools/plot.py runs/x\n"), std::string::npos) << out;
  s.tensorboard_dir.clear();
  std::ostringstream off;
  Progress(off, false).summary(s);
  EXPECT_EQ(off.str().find("tensorboard"), std::string::npos) << off.str();
}

}  // namespace
}  // namespace lockstep::engine::tensorboard
