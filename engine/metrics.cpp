#include "engine/metrics.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/atomic_dir.h"
#include "engine/tensorboard/event_writer.h"
#include "engine/tensorboard/run_scalars.h"
#include "kernels/error.h"

namespace lockstep::engine {

namespace fs = std::filesystem;

namespace {

nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "nan";
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << v;
  return os.str();
}

std::string lr_text(double v) {
  std::ostringstream os;
  os << std::setprecision(4) << v;
  return os.str();
}

// An eval record's fields (without "type"), and back: the log's eval lines, the summary's
// evaluations, and the records a resumed run keeps.
nlohmann::json eval_fields(const EvalRecord& r) {
  return {{"epoch", r.epoch}, {"update", r.update}, {"samples", r.samples}, {"loss", number(r.loss)},
          {"top1", number(r.top1)}, {"top5", number(r.top5)}, {"time", number(r.time)}};
}

double number_or_nan(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

// A resumed run re-reads its log.jsonl, which a user may have edited: fields of another type
// read as absent rather than throwing nlohmann's type_error.
template <typename T>
T integer_or(const nlohmann::json& j, const char* key, T fallback) {
  return j.contains(key) && j[key].is_number_integer() ? j[key].get<T>() : fallback;
}

EvalRecord eval_from_json(const nlohmann::json& j) {
  EvalRecord r;
  r.epoch = integer_or(j, "epoch", 0);
  r.update = integer_or(j, "update", int64_t{0});
  r.samples = integer_or(j, "samples", int64_t{0});
  r.loss = number_or_nan(j, "loss");
  r.top1 = number_or_nan(j, "top1");
  r.top5 = number_or_nan(j, "top5");
  r.time = number_or_nan(j, "time");
  return r;
}

// Whether `e` is a new best: a higher top-1 (a NaN never is).
bool better(const EvalRecord& e, const std::optional<EvalRecord>& best) { return !best || e.top1 > best->top1; }

}  // namespace

void RunSummary::add_eval(const EvalRecord& e) {
  has_eval = true;
  last_eval = e;
  if (better(e, best_eval)) best_eval = e;
}

RunLog::RunLog(fs::path out_dir, std::optional<int64_t> resume_update)
    : dir_(std::move(out_dir)), resume_update_(resume_update) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_))
    throw Error("cannot create run folder '" + dir_.string() + "': " +
                (ec ? ec.message() : std::string("a file of that name exists")));
  fs::path log = dir_ / "log.jsonl";
  if (resume_update && fs::exists(log)) {
    std::ifstream in(log);
    std::string line, kept;
    while (std::getline(in, line)) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("update") || !j["update"].is_number_integer()) continue;
      const std::string type = j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
      if ((type == "step" || type == "eval" || type == "resume") && j["update"].get<int64_t>() <= *resume_update) {
        kept += line + "\n";
        if (type == "eval") {
          const EvalRecord e = eval_from_json(j);
          if (better(e, kept_best_eval_)) kept_best_eval_ = e;
          kept_last_eval_ = e;
        }
        if (type == "step" && j.value("loss", nlohmann::json()).is_number() && j.value("top1", nlohmann::json()).is_number())
          kept_last_loss_top1_ = std::pair{j["loss"].get<double>(), j["top1"].get<double>()};
      }
    }
    in.close();
    atomic_write_file(log, kept);
    log_.open(log, std::ios::out | std::ios::app);
  } else {
    log_.open(log, std::ios::out | std::ios::trunc);
  }
  if (!log_) throw Error("cannot open '" + log.string() + "' for writing");
}

RunLog::~RunLog() = default;

fs::path RunLog::open_tensorboard() {
  const fs::path dir = dir_ / "tb";
  if (!resume_update_ && fs::is_directory(dir)) {
    for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
      if (e.path().filename().string().rfind("events.out.tfevents.", 0) != 0) continue;  // only what we write
      std::error_code ec;
      fs::remove(e.path(), ec);
      if (ec) throw Error("cannot remove the earlier run's '" + e.path().string() + "': " + ec.message());
    }
  }
  tb_ = std::make_unique<tensorboard::EventWriter>(dir);
  if (resume_update_) tb_->add_session_start(*resume_update_ + 1);
  return dir;
}

void RunLog::write_config(const nlohmann::json& config) {
  fs::path path = dir_ / "config.json";
  std::ofstream f(path, std::ios::out | std::ios::trunc);
  if (!f) throw Error("cannot open '" + path.string() + "' for writing");
  f << config.dump(2) << "\n";
  f.flush();
  if (!f) throw Error("cannot write '" + path.string() + "'");
}

void RunLog::write_line(const nlohmann::json& j) {
  log_ << j.dump() << "\n";
  log_.flush();
  if (!log_) throw Error("cannot write '" + (dir_ / "log.jsonl").string() + "'");
}

void RunLog::log_step(const StepRecord& r) {
  write_line({{"type", "step"}, {"epoch", r.epoch}, {"step", r.step}, {"update", r.update},
              {"lr", number(r.lr)}, {"loss", number(r.loss)}, {"top1", number(r.top1)},
              {"top5", number(r.top5)}, {"img_per_s", number(r.img_per_s)}, {"time", number(r.time)},
              {"comm_s", number(r.comm_s)}, {"wait_s", number(r.wait_s)}, {"bytes_sent", r.bytes_sent},
              {"bytes_received", r.bytes_received}, {"interval_s", number(r.interval_s)},
              {"interval_updates", r.interval_updates}, {"skipped_updates", r.skipped_updates}});
  if (tb_) {
    const tensorboard::ScalarEvent e = tensorboard::step_scalars(r);
    tb_->add_scalars(e.step, e.scalars);
  }
}

void RunLog::log_eval(const EvalRecord& r) {
  nlohmann::json j = eval_fields(r);
  j["type"] = "eval";
  write_line(j);
  if (tb_) {
    const tensorboard::ScalarEvent e = tensorboard::eval_scalars(r);
    tb_->add_scalars(e.step, e.scalars);
  }
}

void RunLog::log_record(const nlohmann::json& j) {
  write_line(j);
  if (tb_) {
    const tensorboard::ScalarEvent e = tensorboard::record_scalars(j);
    if (!e.scalars.empty()) tb_->add_scalars(e.step, e.scalars);
  }
}

void RunLog::log_resume(int64_t update, const std::string& checkpoint) {
  write_line({{"type", "resume"}, {"update", update}, {"checkpoint", checkpoint}});
}

nlohmann::json summary_json(const RunSummary& s) {
  nlohmann::json j{{"epochs", s.epochs}, {"updates", s.updates},
                   {"images", s.images}, {"seconds", number(s.seconds)},
                   {"img_per_s", number(s.seconds > 0 ? s.images / s.seconds : 0.0)},
                   {"final_loss", number(s.final_loss)}, {"final_top1", number(s.final_top1)},
                   {"skipped_updates", s.skipped_updates}, {"workers", s.workers},
                   {"comm_seconds", number(s.comm_seconds)}, {"wait_seconds", number(s.wait_seconds)},
                   {"sync", s.sync}, {"bytes_sent", s.bytes_sent}, {"bytes_received", s.bytes_received},
                   {"checkpoints_written", s.checkpoints_written}, {"out", s.out_dir}};
  if (s.stopped) j["stopped"] = true;
  if (!s.dropped.empty()) j["dropped_per_worker"] = s.dropped;
  if (!s.straggler_delay_s.empty()) j["straggler_delay_s"] = s.straggler_delay_s;
  if (s.bad_images > 0) {
    j["bad_images"] = s.bad_images;
    j["bad_paths"] = s.bad_paths;
  }
  if (s.start_update > 0) j["resumed_at_update"] = s.start_update;
  if (!s.checkpoint.empty()) j["checkpoint"] = s.checkpoint;
  if (!s.tensorboard_dir.empty()) j["tensorboard"] = s.tensorboard_dir;
  if (s.has_eval) j["eval"] = eval_fields(s.last_eval);
  if (s.best_eval) j["best_eval"] = eval_fields(*s.best_eval);
  return j;
}

void RunLog::log_summary(const RunSummary& s) {
  const nlohmann::json j = summary_json(s);
  nlohmann::json line = {{"type", "summary"}};
  line.update(j);
  write_line(line);
  atomic_write_file(dir_ / "summary.json", j.dump(2) + "\n");
  if (tb_) tb_->close();
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "-:--:--";
  auto s = static_cast<int64_t>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02d:%02d", static_cast<long long>(s / 3600),
                static_cast<int>(s / 60 % 60), static_cast<int>(s % 60));
  return buf;
}

double eta_seconds(int64_t done, int64_t total, double elapsed_s) {
  if (done <= 0) return -1;
  return elapsed_s * static_cast<double>(total - done) / static_cast<double>(done);
}

Progress Progress::for_stdout() { return Progress(std::cout, isatty(STDOUT_FILENO) != 0); }

std::string Progress::format(const ProgressState& s) {
  std::ostringstream os;
  os << "epoch " << s.epoch << "/" << s.epochs << "  step " << s.step << "/" << s.steps
     << "  " << fixed(s.img_per_s, 1) << " img/s  loss " << fixed(s.loss, 4) << "  top-1 "
     << fixed(100 * s.top1, 2) << "%  lr " << lr_text(s.lr) << "  eta " << format_duration(s.eta_s);
  return os.str();
}

void Progress::end_live_line() {
  if (live_len_ > 0) {
    os_ << "\n";
    live_len_ = 0;
  }
}

void Progress::update(const ProgressState& s) {
  std::string line = format(s);
  if (!tty_) {
    os_ << line << "\n" << std::flush;
    return;
  }
  // Pad over whatever is left of a longer previous line.
  size_t pad = live_len_ > line.size() ? live_len_ - line.size() : 0;
  os_ << "\r" << line << std::string(pad, ' ') << std::flush;
  live_len_ = line.size();
}

void Progress::eval(const EvalRecord& r) {
  end_live_line();
  os_ << "eval  epoch " << r.epoch << "  " << r.samples << " images  loss " << fixed(r.loss, 4)
      << "  top-1 " << fixed(100 * r.top1, 2) << "%  top-5 " << fixed(100 * r.top5, 2) << "%\n"
      << std::flush;
}

void Progress::message(const std::string& line) {
  end_live_line();
  os_ << line << "\n" << std::flush;
}

void Progress::summary(const RunSummary& s) {
  end_live_line();
  double rate = s.seconds > 0 ? s.images / s.seconds : 0.0;
  auto share = [&](double part) { return " (" + fixed(s.seconds > 0 ? 100 * part / s.seconds : 0.0, 1) + "%)"; };
  if (s.stopped)  // before the end: the epochs are the plan, not what ran
    os_ << "stopped: " << s.updates << " updates of a " << s.epochs << "-epoch run, " << s.images << " images in ";
  else
    os_ << "done: " << s.epochs << " epochs, " << s.updates << " updates, " << s.images << " images in ";
  os_ << format_duration(s.seconds) << " (" << fixed(rate, 1) << " img/s)\n";
  os_ << "train: loss " << fixed(s.final_loss, 4) << "  top-1 " << fixed(100 * s.final_top1, 2) << "%\n";
  if (s.has_eval)
    os_ << "eval:  loss " << fixed(s.last_eval.loss, 4) << "  top-1 " << fixed(100 * s.last_eval.top1, 2)
        << "%  top-5 " << fixed(100 * s.last_eval.top5, 2) << "%\n";
  if (s.best_eval)
    os_ << "best:  top-1 " << fixed(100 * s.best_eval->top1, 2) << "% (epoch " << s.best_eval->epoch << ", update "
        << s.best_eval->update << ")\n";
  if (s.skipped_updates > 0) os_ << "skipped updates (fp16 overflow): " << s.skipped_updates << "\n";
  os_ << "workers: " << s.workers << "; per worker: exposed communication " << format_duration(s.comm_seconds)
      << share(s.comm_seconds) << ", waiting for data " << format_duration(s.wait_seconds) << share(s.wait_seconds)
      << "\n";
  if (s.workers > 1 || s.sync != "allreduce")
    os_ << "sync: " << s.sync << "; per worker: sent " << s.bytes_sent << " bytes, received " << s.bytes_received
        << " bytes" << (s.updates > 0 ? " (" + std::to_string(s.bytes_sent / s.updates) + " sent per update)" : "")
        << "\n";
  if (!s.dropped.empty()) {
    // coded: a worker's message of a step arrived after the first N - s had been decoded.
    os_ << s.sync << (s.sync == "coded" ? ": messages not used per worker:" : ": gradients dropped per worker:");
    for (int64_t d : s.dropped) os_ << " " << d;
    os_ << "\n";
  }
  if (!s.straggler_delay_s.empty()) {
    os_ << "stragglers: injected delay per worker (s):";
    for (double d : s.straggler_delay_s) os_ << " " << fixed(d, 2);
    os_ << "\n";
  }
  if (s.bad_images > 0) {
    os_ << "data: unreadable images skipped " << s.bad_images << " time(s), each replaced by the next good one:";
    constexpr size_t kShown = 5;
    for (size_t k = 0; k < std::min(kShown, s.bad_paths.size()); ++k) os_ << "\n  " << s.bad_paths[k];
    if (s.bad_paths.size() > kShown) os_ << "\n  ... and " << s.bad_paths.size() - kShown << " more in summary.json";
    os_ << "\n";
  }
  if (!s.checkpoint.empty())
    os_ << "checkpoint: " << s.checkpoint << " (" << s.checkpoints_written << " written by this run)\n";
  if (!s.out_dir.empty()) {
    const fs::path out(s.out_dir);
    os_ << "log: " << (out / "log.jsonl").string() << ", summary: " << (out / "summary.json").string() << "\n";
    if (!s.tensorboard_dir.empty()) os_ << "watch: tensorboard --logdir " << s.tensorboard_dir << "\n";
    os_ << "plot:  python3 tools/plot.py " << s.out_dir << "\n";
  }
  os_ << std::flush;
}

}  // namespace lockstep::engine
