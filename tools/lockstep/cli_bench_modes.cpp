// `lockstep bench modes`: see cli_bench_modes.h.
#include "tools/lockstep/cli_bench_modes.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/atomic_dir.h"
#include "engine/trainer.h"
#include "tools/lockstep/cli_train.h"
#include "tools/plot/line_plot.h"

namespace lockstep::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kModesHelp =
    "usage: lockstep bench modes [--modes allreduce,sign,backup,average,async] [lockstep train options]\n"
    "\n"
    "Trains the same network on the same data for the same epochs once per sync mode, each with its\n"
    "recommended learning rate, and writes <out>/modes.json, <out>/modes.md and two plots (test top-1\n"
    "against epochs and against wall time). Without --data or --synthetic: the default job's data.\n"
    "Every `lockstep train` option applies (see lockstep train --help) except --sync and the\n"
    "mode-specific ones.\n";

std::vector<std::string> split_modes(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string m;
  while (std::getline(ss, m, ',')) {
    if (m.empty()) continue;
    try {
      engine::parse_sync(m);
    } catch (const Error& e) {
      throw ConfigError("--modes", std::string("--modes: ") + e.what());
    }
    if (std::find(out.begin(), out.end(), m) != out.end()) throw ConfigError("--modes", "--modes lists " + m + " twice");
    out.push_back(m);
  }
  if (out.empty()) throw ConfigError("--modes", "--modes must name at least one mode");
  return out;
}

// The mode's recommended settings on top of the shared ones.
TrainConfig mode_config(const TrainConfig& base, const std::string& mode, const fs::path& out) {
  TrainConfig c = base;
  c.sync = engine::parse_sync(mode);
  c.out_dir = (out / mode).string();
  if (c.sync == engine::SyncKind::sign) {
    c.base_lr = 1e-4;
    c.lr_scaling = false;
  }
  if (c.sync == engine::SyncKind::async) c.async_ramp_epochs = std::min(3, c.epochs / 3);
  if (c.sync == engine::SyncKind::backup) c.backup_workers = c.workers > 1 ? 1 : 0;  // one backup
  if (c.sync == engine::SyncKind::coded) c.stragglers = c.workers > 1 ? 1 : 0;       // one straggler tolerated
  c.validate();
  return c;
}

ModeResult read_result(const std::string& mode, const fs::path& dir, const engine::RunSummary& s) {
  ModeResult r;
  r.mode = mode;
  r.seconds = s.seconds;
  r.img_per_s = s.seconds > 0 ? static_cast<double>(s.images) / s.seconds : 0;
  r.updates = s.updates;
  r.bytes_sent = s.bytes_sent;
  std::ifstream in(dir / "log.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || j.value("type", "") != "eval") continue;
    auto num = [&](const char* k) { return j[k].is_number() ? j[k].get<double>() : std::nan(""); };
    r.epochs.push_back(j["epoch"].get<int>());
    r.top1.push_back(num("top1"));
    r.top5.push_back(num("top5"));
    r.loss.push_back(num("loss"));
    r.time.push_back(num("time"));
  }
  return r;
}

std::string pct(double v) {
  if (!std::isfinite(v)) return "-";
  std::ostringstream os;
  os << std::fixed << std::setprecision(2) << 100 * v << "%";
  return os.str();
}

std::string fixed(double v, int d) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(d) << v;
  return os.str();
}

std::string table(const std::vector<ModeResult>& results) {
  std::ostringstream os;
  os << "| mode | final test top-1 | best test top-1 | epochs | time (s) | img/s | bytes sent per update (worker 0) |\n"
     << "|---|---|---|---|---|---|---|\n";
  for (const ModeResult& r : results) {
    const double final_top1 = r.top1.empty() ? std::nan("") : r.top1.back();
    double best = std::nan("");
    for (double v : r.top1)
      if (std::isfinite(v) && !(best >= v)) best = v;
    os << "| " << r.mode << " | " << pct(final_top1) << " | " << pct(best) << " | " << r.epochs.size() << " | "
       << fixed(r.seconds, 1) << " | " << fixed(r.img_per_s, 1) << " | "
       << (r.updates > 0 ? std::to_string(r.bytes_sent / r.updates) : "-") << " |\n";
  }
  return os.str();
}

}  // namespace

void write_mode_report(const fs::path& out, const std::vector<ModeResult>& results, const std::string& title) {
  fs::create_directories(out);
  json all = json::array();
  for (const ModeResult& r : results) {
    json evals = json::array();
    for (size_t i = 0; i < r.epochs.size(); ++i)
      evals.push_back({{"epoch", r.epochs[i]},
                       {"top1", std::isfinite(r.top1[i]) ? json(r.top1[i]) : json(nullptr)},
                       {"top5", std::isfinite(r.top5[i]) ? json(r.top5[i]) : json(nullptr)},
                       {"loss", std::isfinite(r.loss[i]) ? json(r.loss[i]) : json(nullptr)},
                       {"time", r.time[i]}});
    all.push_back({{"mode", r.mode}, {"seconds", r.seconds}, {"img_per_s", r.img_per_s}, {"updates", r.updates},
                   {"bytes_sent", r.bytes_sent}, {"evals", evals}});
  }
  engine::atomic_write_file(out / "modes.json", json{{"title", title}, {"modes", all}}.dump(2) + "\n");
  engine::atomic_write_file(out / "modes.md", "# " + title + "\n\n" + table(results));

  std::vector<plot::Series> by_epoch, by_time;
  for (const ModeResult& r : results) {
    plot::Series e{r.mode, {}, {}}, t{r.mode, {}, {}};
    for (size_t i = 0; i < r.epochs.size(); ++i) {
      e.x.push_back(r.epochs[i]);
      e.y.push_back(100 * r.top1[i]);
      t.x.push_back(r.time[i]);
      t.y.push_back(100 * r.top1[i]);
    }
    by_epoch.push_back(std::move(e));
    by_time.push_back(std::move(t));
  }
  plot::PlotSpec spec;
  spec.title = title;
  spec.y_label = "test top-1 (%)";
  spec.x_label = "epoch";
  plot::write_line_plot_png(out / "accuracy_vs_epoch.png", spec, by_epoch);
  spec.x_label = "wall time (s)";
  plot::write_line_plot_png(out / "accuracy_vs_time.png", spec, by_time);
}

namespace {

struct ModeArgs {
  std::vector<std::string> modes;
  double target = -1;  // bench stragglers' --target
  TrainConfig base;
};

// Takes --modes (and --target when `with_target`) out of argv; the rest are lockstep train's.
ModeArgs parse_mode_args(int argc, const char* const* argv, std::vector<std::string> modes, const char* help,
                         const std::string& suffix, bool with_target) {
  ModeArgs m;
  m.modes = std::move(modes);
  std::vector<const char*> train_argv{"train"};
  bool out_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") throw HelpRequested{help};
    if (a == "--modes" || a.rfind("--modes=", 0) == 0) {
      std::string v = a == "--modes" ? (i + 1 < argc ? argv[++i] : "") : a.substr(8);
      m.modes = split_modes(v);
      continue;
    }
    if (with_target && (a == "--target" || a.rfind("--target=", 0) == 0)) {
      const std::string v = a == "--target" ? (i + 1 < argc ? argv[++i] : "") : a.substr(9);
      char* end = nullptr;
      m.target = std::strtod(v.c_str(), &end);
      if (v.empty() || end != v.c_str() + v.size() || !(m.target > 0 && m.target <= 1))
        throw ConfigError("--target", "--target must be a test top-1 fraction in (0, 1] (got '" + v + "')");
      continue;
    }
    if (a == "--sync" || a.rfind("--sync=", 0) == 0)
      throw ConfigError("--sync", "--sync: this bench runs every mode itself; choose them with --modes");
    if (a == "--resume" || a.rfind("--resume=", 0) == 0)
      throw ConfigError("--resume", "--resume: this bench trains every mode from the start (resume a mode's own "
                                    "run folder with lockstep train --resume)");
    if (a == "--out" || a.rfind("--out=", 0) == 0) out_given = true;
    train_argv.push_back(argv[i]);
  }
  m.base = parse_train_args(static_cast<int>(train_argv.size()), train_argv.data());
  if (!out_given) m.base.out_dir += suffix;
  return m;
}

std::string run_title(const TrainConfig& base) {
  std::ostringstream title;
  title << base.arch << " on "
        << (base.synthetic ? std::string("synthetic data") : fs::path(base.data_dir).filename().string()) << ", "
        << base.workers << " worker(s) x batch " << base.batch_size << ", " << base.epochs << " epoch(s), "
        << base.device.str();
  if (!base.straggler.empty()) title << ", stragglers " << base.straggler;
  return title.str();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - (p > 0));
  return v[i];
}

}  // namespace

int run_bench_modes(int argc, const char* const* argv, std::ostream& out) {
  ModeArgs args = parse_mode_args(argc, argv, {"allreduce", "sign", "backup", "average", "async"}, kModesHelp,
                                  "-modes", false);
  const std::vector<std::string>& modes = args.modes;
  TrainConfig& base = args.base;
  const fs::path dir = base.out_dir;
  std::vector<TrainConfig> configs;
  for (const std::string& m : modes) configs.push_back(mode_config(base, m, dir));  // all checked first

  std::vector<ModeResult> results;
  for (const TrainConfig& c : configs) {
    const std::string mode(engine::sync_name(c.sync));
    out << "== " << mode << " (" << c.out_dir << ")\n" << std::flush;
    engine::Progress progress(out, false);
    engine::Trainer trainer(c, progress);
    const engine::RunSummary s = trainer.run();
    results.push_back(read_result(mode, c.out_dir, s));
  }
  write_mode_report(dir, results, run_title(base));
  out << "\n" << table(results) << "\nreport: " << (dir / "modes.md").string() << ", "
      << (dir / "accuracy_vs_epoch.png").string() << ", " << (dir / "accuracy_vs_time.png").string() << "\n";
  return 0;
}

int run_bench_stragglers(int argc, const char* const* argv, std::ostream& out) {
  constexpr const char* kHelp =
      "usage: lockstep bench stragglers [--modes allreduce,backup,coded] [--target ACC] [lockstep train options]\n"
      "\n"
      "The same run and --straggler pattern under each mode (backup: one backup worker; coded: one\n"
      "straggler tolerated): time between updates (median, p90, p99), images/s, and with --target the\n"
      "wall time until test top-1 first reached ACC. Writes <out>/stragglers.json and stragglers.md.\n";
  ModeArgs args = parse_mode_args(argc, argv, {"allreduce", "backup", "coded"}, kHelp, "-stragglers", true);
  if (args.base.workers < 2)
    throw ConfigError("--workers", "--workers must be at least 2 for bench stragglers (backup needs a spare worker, "
                                   "coded a straggler to tolerate), got " + std::to_string(args.base.workers));
  const fs::path dir = args.base.out_dir;
  std::vector<TrainConfig> configs;
  for (const std::string& m : args.modes) configs.push_back(mode_config(args.base, m, dir));

  std::ostringstream md;
  md << "# " << run_title(args.base) << "\n\n"
     << "| mode | update time median (ms) | p90 | p99 | img/s | final test top-1 | time to target (s) |\n"
     << "|---|---|---|---|---|---|---|\n";
  nlohmann::json all = nlohmann::json::array();
  for (const TrainConfig& c : configs) {
    const std::string mode(engine::sync_name(c.sync));
    out << "== " << mode << " (" << c.out_dir << ")\n" << std::flush;
    engine::Progress progress(out, false);
    engine::Trainer trainer(c, progress);
    std::mutex m;
    std::vector<std::pair<int64_t, std::chrono::steady_clock::time_point>> at;
    trainer.set_update_hook([&](int64_t u) {
      std::lock_guard<std::mutex> lock(m);
      at.emplace_back(u, std::chrono::steady_clock::now());
    });
    const engine::RunSummary s = trainer.run();
    const ModeResult r = read_result(mode, c.out_dir, s);
    std::sort(at.begin(), at.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    const int64_t per_epoch = std::max<int64_t>(1, s.updates / std::max(1, c.epochs));
    std::vector<double> ms;
    for (size_t i = 1; i < at.size(); ++i)
      if (at[i].first / per_epoch == at[i - 1].first / per_epoch)
        ms.push_back(std::chrono::duration<double, std::milli>(at[i].second - at[i - 1].second).count());
    const int64_t images_per_update = s.updates > 0 ? s.images / s.updates : 0;
    const double median = percentile(ms, 0.5), p90 = percentile(ms, 0.9), p99 = percentile(ms, 0.99);
    const double img_s = median > 0 ? static_cast<double>(images_per_update) / (median / 1000) : 0;
    double to_target = std::nan("");
    for (size_t i = 0; i < r.top1.size(); ++i)
      if (args.target > 0 && r.top1[i] >= args.target) {
        to_target = r.time[i];
        break;
      }
    md << "| " << mode << " | " << fixed(median, 1) << " | " << fixed(p90, 1) << " | " << fixed(p99, 1) << " | "
       << fixed(img_s, 1) << " | " << pct(r.top1.empty() ? std::nan("") : r.top1.back()) << " | "
       << (std::isfinite(to_target) ? fixed(to_target, 1) : std::string("-")) << " |\n";
    all.push_back({{"mode", mode}, {"update_ms_median", median}, {"update_ms_p90", p90}, {"update_ms_p99", p99},
                   {"img_per_s", img_s}, {"updates", s.updates}, {"seconds", s.seconds},
                   {"final_top1", r.top1.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.top1.back())},
                   {"time_to_target", std::isfinite(to_target) ? nlohmann::json(to_target) : nlohmann::json(nullptr)},
                   {"dropped_per_worker", s.dropped}, {"straggler_delay_s", s.straggler_delay_s}});
  }
  fs::create_directories(dir);
  engine::atomic_write_file(dir / "stragglers.json",
                            nlohmann::json{{"title", run_title(args.base)}, {"target", args.target}, {"modes", all}}
                                    .dump(2) +
                                "\n");
  engine::atomic_write_file(dir / "stragglers.md", md.str());
  out << "\n" << md.str() << "\nreport: " << (dir / "stragglers.md").string() << "\n";
  return 0;
}

}  // namespace lockstep::cli
