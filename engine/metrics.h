// What a run reports: RunLog writes the machine-readable record (<out>/config.json, one JSON
// object per line in <out>/log.jsonl, <out>/summary.json at the end, and with
// open_tensorboard() the same records as TensorBoard scalars in <out>/tb/: engine/tensorboard/),
// Progress the human one (a live line on a terminal, plain lines otherwise, and a closing
// summary).
//
// Conventions shared by both: epoch is 1-based; step counts the micro-batches done in the epoch
// (1..steps); update counts optimizer updates done since the start of the run; top1/top5 are
// fractions in [0, 1] (Progress shows percent); time is seconds since the run started. A
// non-finite loss is written as JSON null (JSON has no NaN) and shown as "nan".
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lockstep::engine {

struct StepRecord {
  int epoch = 1;
  int64_t step = 0;
  int64_t update = 0;
  double lr = 0;
  double loss = 0;       // mean over the steps since the last record
  double top1 = 0;
  double top5 = 0;
  double img_per_s = 0;  // global images per second since the last record
  double time = 0;
  double comm_s = 0;     // exposed (not overlapped) communication since the last record, rank 0
  double wait_s = 0;     // time waiting for data since the last record, rank 0
  int64_t bytes_sent = 0;      // bytes rank 0 sent through its communicator since the last record
  int64_t bytes_received = 0;  // (engine/sync/strategy.h: per-collective formulas)
  double interval_s = 0;         // seconds since the last record: what img_per_s, comm_s and wait_s cover
  int64_t interval_updates = 0;  // optimizer updates since the last record: what bytes_sent covers
  int64_t skipped_updates = 0;   // updates skipped by fp16 loss scaling so far (rank 0; a resumed run counts on)
};

struct EvalRecord {
  int epoch = 1;
  int64_t update = 0;
  int64_t samples = 0;
  double loss = 0;
  double top1 = 0;
  double top5 = 0;
  double time = 0;
};

struct RunSummary {
  int epochs = 0;
  int64_t updates = 0;
  int64_t images = 0;          // training images processed, all workers
  double seconds = 0;
  double final_loss = 0;       // last logged training loss
  double final_top1 = 0;
  bool has_eval = false;
  EvalRecord last_eval;
  int64_t skipped_updates = 0; // fp16 overflow skips
  int workers = 1;
  double comm_seconds = 0;     // exposed communication, rank 0
  double wait_seconds = 0;     // waiting for data, rank 0
  std::string sync = "allreduce";  // the sync mode (engine/sync/)
  int64_t bytes_sent = 0;      // through the communicator, rank 0, whole run
  int64_t bytes_received = 0;
  std::string out_dir;
  bool stopped = false;        // stopped early (SIGINT/SIGTERM or --stop-after) with a checkpoint
  int64_t start_update = 0;    // > 0: resumed from a checkpoint after this many updates
  std::string checkpoint;      // the last checkpoint written, if any
  std::vector<int64_t> dropped;          // --sync backup: gradients dropped per worker (coded: messages not used)
  std::vector<double> straggler_delay_s; // --straggler: injected delay per worker
  int64_t bad_images = 0;                // skips of unreadable images (--bad-images skip; each epoch
                                         // meets one again), this process's loaders
  std::vector<std::string> bad_paths;    // the distinct ones, "path: reason", up to 100
  std::optional<EvalRecord> best_eval;   // the highest eval top-1 of the run (a resumed run's log included)
  int checkpoints_written = 0;           // by this process
  std::string tensorboard_dir;           // <out>/tb, or "" with --no-tensorboard

  // A new evaluation: the last one, and the best when its top-1 is higher (the earlier on ties).
  void add_eval(const EvalRecord& e);
};

// The summary as one JSON object: <out>/summary.json, and the log's {"type":"summary"} record
// (which adds the type).
nlohmann::json summary_json(const RunSummary& s);

namespace tensorboard {
class EventWriter;
}

// <out>/log.jsonl: {"type":"step",...} per logged step, {"type":"eval",...} per evaluation,
// {"type":"summary",...} at the end. Each line is flushed as written, so a crashed run keeps
// everything it logged. An existing log.jsonl in the folder is replaced, except by a resumed
// run: it keeps the step and eval records up to the checkpoint's update (dropping what a
// stopped or crashed run logged after it, which the resumed run logs again), then appends
// {"type":"resume",...} and its own records.
class RunLog {
 public:
  // Creates `out_dir` (and parents); throws lockstep::Error naming the folder and the reason
  // when it cannot, or when log.jsonl cannot be opened. resume_update: see above.
  explicit RunLog(std::filesystem::path out_dir, std::optional<int64_t> resume_update = std::nullopt);
  ~RunLog();

  const std::filesystem::path& dir() const { return dir_; }
  // From here on every step, eval and other record is also written as TensorBoard scalars to a
  // new event file in <out>/tb/ (engine/tensorboard/run_scalars.h lists the tags). Returns the
  // folder. As with log.jsonl, a new run removes the event files an earlier run left in the
  // folder; a resumed run keeps them, writes its own file beside them (TensorBoard merges a
  // folder's files) and starts it with a SessionLog START at the checkpoint's update + 1, so
  // TensorBoard drops what the earlier process logged after the checkpoint, as the log does.
  std::filesystem::path open_tensorboard();
  // Writes <out>/config.json (pretty-printed, replaced if present).
  void write_config(const nlohmann::json& config);
  void log_step(const StepRecord& r);
  void log_eval(const EvalRecord& r);
  // The last record: the log's summary line, then <out>/summary.json (atomically: a temporary
  // file renamed over it), then the event file is synced and closed.
  void log_summary(const RunSummary& s);
  void log_resume(int64_t update, const std::string& checkpoint);
  // Any other record (one JSON object with a "type"), e.g. --sync async's per-epoch staleness.
  void log_record(const nlohmann::json& j);
  // A resumed run: the best evaluation among the records kept from the run it continues.
  const std::optional<EvalRecord>& kept_best_eval() const { return kept_best_eval_; }
  // ... and its last evaluation and the loss and top-1 of its last step record: what the summary
  // reports when the resumed process logs none of its own (nothing left to train, an early stop).
  const std::optional<EvalRecord>& kept_last_eval() const { return kept_last_eval_; }
  const std::optional<std::pair<double, double>>& kept_last_loss_top1() const { return kept_last_loss_top1_; }

 private:
  void write_line(const nlohmann::json& j);
  std::filesystem::path dir_;
  std::ofstream log_;
  std::optional<int64_t> resume_update_;
  std::unique_ptr<tensorboard::EventWriter> tb_;
  std::optional<EvalRecord> kept_best_eval_, kept_last_eval_;
  std::optional<std::pair<double, double>> kept_last_loss_top1_;
};

struct ProgressState {
  int epoch = 1, epochs = 1;
  int64_t step = 0, steps = 0;
  double img_per_s = 0;
  double loss = 0;
  double top1 = 0;   // fraction
  double lr = 0;
  double eta_s = -1; // < 0: unknown
};

// "h:mm:ss" for non-negative seconds (rounded down), "-:--:--" for negative or non-finite.
std::string format_duration(double seconds);
// Remaining time at the current rate: elapsed * (total - done) / done; -1 when done == 0.
double eta_seconds(int64_t done, int64_t total, double elapsed_s);

class Progress {
 public:
  // is_tty: rewrite one live line with '\r'; otherwise print one plain line per update().
  Progress(std::ostream& os, bool is_tty) : os_(os), tty_(is_tty) {}
  // std::cout, live when stdout is a terminal.
  static Progress for_stdout();

  bool is_tty() const { return tty_; }
  void update(const ProgressState& s);
  void eval(const EvalRecord& r);
  // A free-form line (memory plan, notes); ends the live line first.
  void message(const std::string& line);
  void summary(const RunSummary& s);

  // The text of one progress line, without '\r' or newline.
  static std::string format(const ProgressState& s);

 private:
  void end_live_line();
  std::ostream& os_;
  bool tty_;
  size_t live_len_ = 0;  // characters of the live line now on screen; 0 when none
};

}  // namespace lockstep::engine
