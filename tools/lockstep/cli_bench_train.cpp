#include "tools/lockstep/cli_bench_train.h"

#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <sstream>
#include <vector>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "engine/checkpoint/atomic_dir.h"
#include "data/batch_source.h"
#include "engine/metrics.h"
#include "engine/phase_timer.h"
#include "engine/trainer.h"
#include "kernels/device_memory.h"
#include "kernels/event.h"
#include "kernels/memory.h"
#include "kernels/threads.h"
#include "tools/lockstep/cli_dataset.h"
#include "tools/lockstep/cli_train.h"
#include "tools/lockstep/cli_json_path.h"
#include "tools/lockstep/cli_repeats.h"

namespace lockstep::cli {

namespace {

using engine::Phase;
using engine::PhaseTimer;

// The bench's own options; every other argument goes to parse_train_args.
constexpr const char* kBenchValueOptions[] = {"warmup", "steps", "profile-steps", "json"};
// `lockstep train` options that would change the shape of the run the bench times.
constexpr const char* kRefused[] = {"epochs",     "steps-per-epoch",  "eval-steps", "accumulate", "resume",
                                    "stop-after", "checkpoint-every", "keep-last",  "log-every"};
// How the timed steps are timed, in the words of PyTorch's reference (tools/reference/torch_bench.py).
constexpr const char* kStepTiming = "a mark at each step's start (device events; the host clock on a CPU), no wait inside";
// Synthetic batches made once per worker and replayed.
constexpr int kReplayBatches = 4;

cxxopts::Options bench_train_options() {
  cxxopts::Options o("lockstep bench train",
                     "Training throughput (images/s) through lockstep train's code path, with a phase breakdown and peak "
                     "memory.");
  // clang-format off
  o.add_options()
    ("warmup", "steps run before timing", cxxopts::value<std::string>()->default_value("5"))
    ("steps", "timed steps (median, min and max images/s over them)", cxxopts::value<std::string>()->default_value("20"))
    ("profile-steps", "steps after the timed ones, timed phase by phase with the device waited for at each boundary "
                      "(0: no breakdown)", cxxopts::value<std::string>()->default_value("5"))
    ("json", "also write the results to FILE as one JSON object", cxxopts::value<std::string>())
    ("h,help", "print this help");
  // clang-format on
  return o;
}

constexpr const char* kForwardedHelp =
    "\nEvery other option is lockstep train's (lockstep train --help), e.g. --arch, --classes, --image-size,\n"
    "--batch-size (per worker), --precision, --conv-algo, --stem-channels,\n"
    "--bn-kernels, --cuda-graph, --device, --workers, --gpus, --devices, --workers-per-gpu, --sync,\n"
    "--bucket-mb, --no-overlap, --data DIR (default: synthetic data, 4 batches per worker made once and replayed),\n"
    "--loader-threads, --seed, --out DIR (default: a temporary run folder, removed afterwards). Not accepted:\n"
    "--epochs, --steps-per-epoch, --eval-steps, --accumulate, --resume, --stop-after, --checkpoint-every,\n"
    "--keep-last, --log-every (the bench sets the run's length itself).\n"
    "\nExamples:\n"
    "  lockstep bench train --device cpu --arch resnet20 --batch-size 32\n"
    "  lockstep bench train --arch resnet50 --batch-size 256 --precision bf16 --json r50.json\n"
    "  lockstep bench train --arch resnet50 --batch-size 256 --precision bf16 --cuda-graph\n"
    "  lockstep bench train --arch resnet18 --gpus 8 --batch-size 256 --sync sign\n";

// "--name" or "--name=value" -> "name" (empty for anything else).
std::string option_name(const std::string& arg) {
  if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) return "";
  return arg.substr(2, arg.find('=') == std::string::npos ? std::string::npos : arg.find('=') - 2);
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Synthetic batches made once by the worker's own synthetic source and replayed in turn: the bench
// then times the training step, not the generator (PyTorch's reference keeps its synthetic batch
// on the device). Pinned where the source's were, so uploads behave as in training.
class ReplaySource : public data::BatchSource {
 public:
  ReplaySource(data::BatchSource& from, int distinct, int64_t batches_per_epoch) : per_epoch_(batches_per_epoch) {
    from.start_epoch(0);
    distinct = static_cast<int>(std::min<int64_t>(distinct, from.batches_per_epoch()));
    slots_.resize(static_cast<size_t>(distinct));
    for (Slot& s : slots_) {
      const data::HostBatch& b = from.next();
      s.images = keep(b.images, s.images_mem);
      s.batch.images = s.images;
      s.batch.labels = keep(b.labels, s.labels_mem);
      if (b.flips.defined() && b.flips.numel() > 0) s.batch.flips = keep(b.flips, s.flips_mem);
      s.batch.count = b.count;
    }
  }
  int64_t batches_per_epoch() const override { return per_epoch_; }
  using BatchSource::start_epoch;
  void start_epoch(int64_t, int64_t position) override { position_ = position; }
  const data::HostBatch& next() override {
    LS_CHECK(position_ < per_epoch_, "bench: replayed epoch has only " << per_epoch_ << " batches");
    return slots_[static_cast<size_t>(position_++ % static_cast<int64_t>(slots_.size()))].batch;
  }

 private:
  struct Slot {
    PinnedBuffer images_mem, labels_mem, flips_mem;
    Tensor images;
    data::HostBatch batch;
  };
  static Tensor keep(const Tensor& t, PinnedBuffer& mem) {
    mem = PinnedBuffer(t.bytes());
    std::memcpy(mem.data(), t.raw(), t.bytes());
    return mem.tensor(t.shape(), t.dtype());
  }
  std::vector<Slot> slots_;
  int64_t per_epoch_;
  int64_t position_ = 0;
};

// The modes whose workers meet only at epoch ends (a parameter server or an aggregator).
bool server_mode(engine::SyncKind s) {
  return s == engine::SyncKind::async || s == engine::SyncKind::backup || s == engine::SyncKind::coded;
}

// A temporary run folder, removed with everything in it.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lockstep-bench-XXXXXX").string();
    LS_CHECK(mkdtemp(tmpl.data()) != nullptr, "bench: cannot create a temporary folder " << tmpl << ": " << std::strerror(errno));
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

std::string precision_name(DType t) {
  switch (t) {
    case DType::f32: return "fp32";
    case DType::bf16: return "bf16";
    case DType::f16: return "fp16";
    default: return std::string(dtype_name(t));
  }
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string mib(double bytes) { return fmt("%.1f MiB", bytes / (1 << 20)); }

}  // namespace

std::string bench_train_help() {
  cxxopts::Options o = bench_train_options();
  o.set_width(120);
  return o.help() + kForwardedHelp;
}

BenchTrainConfig parse_bench_train_args(int argc, const char* const* argv, std::ostream& notes) {
  // Split the bench's own options from lockstep train's, which go to parse_train_args as they are.
  std::vector<std::string> own = {"train"}, train = {"train"};
  bool data = false, synthetic = false, warmup_epochs = false, out = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") throw HelpRequested{bench_train_help()};
    const std::string name = option_name(arg);
    if (std::find(std::begin(kBenchValueOptions), std::end(kBenchValueOptions), name) != std::end(kBenchValueOptions)) {
      own.push_back(arg);
      if (arg.find('=') == std::string::npos) {
        if (i + 1 >= argc) throw ConfigError("--" + name, "--" + name + " needs a value (see lockstep bench train --help)");
        own.push_back(argv[++i]);
      }
      continue;
    }
    if (std::find(std::begin(kRefused), std::end(kRefused), name) != std::end(kRefused))
      throw ConfigError("--" + name, "--" + name + ": not an option of bench train, which sets the run's length itself "
                                                   "(see lockstep bench train --help)");
    data = data || name == "data";
    synthetic = synthetic || name == "synthetic";
    warmup_epochs = warmup_epochs || name == "warmup-epochs";
    out = out || name == "out";
    train.push_back(arg);
  }
  cxxopts::Options o = bench_train_options();
  cxxopts::ParseResult r;
  {
    std::vector<const char*> v;
    for (const std::string& s : own) v.push_back(s.c_str());
    try {
      r = o.parse(static_cast<int>(v.size()), v.data());
    } catch (const cxxopts::exceptions::exception& e) {
      throw ConfigError("", std::string(e.what()) + " (see lockstep bench train --help)");
    }
  }
  cli::note_repeats(r, "bench train", notes);
  BenchTrainConfig c;
  constexpr int64_t kMax = 1'000'000;
  c.warmup = parse_int_option("--warmup", r["warmup"].as<std::string>(), 0, kMax);
  c.steps = parse_int_option("--steps", r["steps"].as<std::string>(), 1, kMax);
  c.profile_steps = parse_int_option("--profile-steps", r["profile-steps"].as<std::string>(), 0, kMax);
  if (r.count("json")) {
    c.json = r["json"].as<std::string>();
    check_json_path(c.json);
  }
  c.keep_out = out;

  const int64_t total = c.total_steps();
  // One epoch that stops (--stop-after) right after the last step the bench needs: no evaluation,
  // no checkpoint, no TensorBoard file, and no loss read-back inside the timed steps (--log-every
  // beyond the run).
  if (!data && !synthetic) train.push_back("--synthetic");
  for (const std::string& s : {std::string("--epochs"), std::string("1"), std::string("--steps-per-epoch"),
                               std::to_string(data ? 0 : total + 1), std::string("--no-checkpoint"),
                               std::string("--no-tensorboard"), std::string("--log-every"), std::to_string(total + 1),
                               std::string("--stop-after"), std::to_string(total)})
    train.push_back(s);
  // Synthetic validation batches: none. A data folder's evaluation (its whole val/ split) comes
  // only at an epoch's end, which --stop-after never reaches (and --eval-steps would only draw
  // lockstep train's note that it counts synthetic batches).
  if (!data) {
    train.push_back("--eval-steps");
    train.push_back("0");
  }
  if (!warmup_epochs) {  // the default 5 would be capped to the one epoch, with a note; say it directly
    train.push_back("--warmup-epochs");
    train.push_back("1");
  }
  std::vector<const char*> v;
  for (const std::string& s : train) v.push_back(s.c_str());
  std::ostringstream train_notes;  // parse_train_args's notes say "lockstep train:"; these are the bench's
  auto pass_notes = [&] {
    std::string n = train_notes.str();
    const std::string from = "lockstep train:", to = "lockstep bench train:";
    for (size_t p = n.find(from); p != std::string::npos; p = n.find(from, p + to.size())) n.replace(p, from.size(), to);
    notes << n;
  };
  try {
    c.train = parse_train_args(static_cast<int>(v.size()), v.data(), train_notes);
    pass_notes();
    if (server_mode(c.train.sync)) {
      // The server modes stop only at an epoch's end: the run is one epoch of exactly the bench's
      // steps. Async measures every worker from the first step (no ramp of active workers).
      c.train.steps_per_epoch = total;
      c.train.stop_after = 0;
      if (c.train.sync == engine::SyncKind::async && c.train.async_ramp_epochs != 0) {
        c.train.async_ramp_epochs = 0;
        notes << "lockstep bench train: --sync async runs every worker from the first step (--async-ramp-epochs 0)\n";
      }
    }
  } catch (const ConfigError& e) {
    pass_notes();
    // parse_train_args points at lockstep train's help; the options are the same here.
    std::string m = e.what();
    const std::string from = "see lockstep train --help";
    if (size_t p = m.find(from); p != std::string::npos) m.replace(p, from.size(), "see lockstep bench train --help");
    throw ConfigError(e.option(), m);
  }
  return c;
}

int run_bench_train(const BenchTrainConfig& bc, std::ostream& out) {
  engine::TrainConfig c = bc.train;
  std::unique_ptr<TempDir> tmp;
  if (!bc.keep_out) {
    tmp = std::make_unique<TempDir>();
    c.out_dir = tmp->path.string();
  }
  const int64_t total = bc.total_steps();
  const int64_t first_timed = bc.warmup + 1, first_profiled = bc.warmup + bc.steps + 1;

  // Device memory in use before setup, per GPU (creating the CUDA context first, so it is not counted).
  std::vector<Device> gpus;
  for (const Device& d : c.worker_devices())
    if (d.is_cuda() && std::find(gpus.begin(), gpus.end(), d) == gpus.end()) gpus.push_back(d);
  std::vector<size_t> used_before;
  for (const Device& d : gpus) used_before.push_back(device_memory_info(d).used);

  std::ostringstream setup_log;  // the trainer's notes (memory plan, schedule): not part of the bench's output
  engine::Progress progress(setup_log, false);
  engine::Trainer trainer(c, progress);
  const int world = trainer.world();
  if (c.synthetic) {
    for (int r = 0; r < world; ++r) {
      engine::Worker& w = trainer.worker(r);
      auto replay = std::make_unique<ReplaySource>(*w.train_source(), kReplayBatches, total + 1);
      w.set_sources(std::move(replay), nullptr);
    }
  } else if (trainer.worker(0).train_source()->batches_per_epoch() <= total) {
    throw ConfigError("--data", "--data " + c.data_dir + " gives " +
                                    std::to_string(trainer.worker(0).train_source()->batches_per_epoch()) +
                                    " batches per worker and epoch; the bench needs more than " + std::to_string(total) +
                                    " (fewer --steps, --warmup or --profile-steps, or a smaller --batch-size)");
  }

  // Step hook. The timed steps are timed on each worker's compute stream: an event recorded at
  // each step's start, and the host never waits for the device inside them, so the next batch's
  // upload runs under the current step as in `lockstep train` (waiting at each step's end would
  // put every upload on the critical path). On a CPU worker an event is a host clock mark. The
  // profiled steps wait for the device at every phase boundary instead: their hooks wait, read
  // the clock, and switch the phase timer on (off at the closing step). A late backup/coded
  // worker skips steps (and their hooks): its window opens at its first hook at or past the
  // first profiled step and closes at the closing step's, counting the steps it ran in between,
  // and its timed steps whose two marks it missed are left to the other workers.
  const int64_t boundaries = first_profiled - first_timed + 1;  // the timed steps' starts and the end of the last
  std::vector<std::vector<std::unique_ptr<Event>>> marks(static_cast<size_t>(world));
  std::vector<std::vector<char>> marked(static_cast<size_t>(world), std::vector<char>(static_cast<size_t>(boundaries), 0));
  std::vector<std::unique_ptr<PhaseTimer>> timers(static_cast<size_t>(world));
  struct Window {
    double begin = 0, end = 0;
    int64_t steps = 0;
    bool on = false, closed = false;
  };
  std::vector<Window> windows(static_cast<size_t>(world));
  trainer.set_step_hook([&](int r, int, int64_t step) {
    if (step < 1 || step > total) return;
    engine::Worker& w = trainer.worker(r);
    auto& m = marks[static_cast<size_t>(r)];
    std::unique_ptr<PhaseTimer>& timer = timers[static_cast<size_t>(r)];
    if (!timer) {  // on the worker's thread, its device current; made before the timed steps start
      timer = std::make_unique<PhaseTimer>(&w.ctx());
      for (int64_t i = 0; i < boundaries; ++i) m.push_back(std::make_unique<Event>(w.ctx(), true));
    }
    if (step >= first_timed && step <= first_profiled) {
      const auto i = static_cast<size_t>(step - first_timed);
      m[i]->record(w.ctx(), Stream::compute);
      marked[static_cast<size_t>(r)][i] = 1;
    }
    Window& win = windows[static_cast<size_t>(r)];
    if (bc.profile_steps == 0 || win.closed || step < first_profiled) return;
    w.ctx().synchronize();
    const double now = now_seconds();
    if (step == total) {
      w.set_phase_timer(nullptr);
      win.end = now;
      win.closed = win.on;
      win.on = false;
      return;
    }
    if (!win.on) {
      w.set_phase_timer(timer.get());
      timer->mark();  // the phases run on from here to the closing step's hook
      win.begin = now;
      win.on = true;
    }
    ++win.steps;
  });
  const engine::RunSummary summary = trainer.run();
  // An async update is one worker's gradient: every worker's steps count.
  const int64_t updates = c.sync == engine::SyncKind::async ? total * world : total;
  LS_CHECK(summary.updates == updates,
           "bench: the run stopped after " << summary.updates << " of " << updates << " updates");

  // Step k's time: the slowest worker's, from its start of step k to its start of step k + 1.
  std::vector<double> step_s;
  for (int64_t k = 0; k + 1 < boundaries; ++k) {
    double slowest = -1;
    for (int r = 0; r < world; ++r) {
      const auto& on = marked[static_cast<size_t>(r)];
      if (!on[static_cast<size_t>(k)] || !on[static_cast<size_t>(k + 1)]) continue;
      const auto& m = marks[static_cast<size_t>(r)];
      trainer.worker(r).ctx().make_current();
      m[static_cast<size_t>(k + 1)]->synchronize();
      slowest = std::max(slowest, m[static_cast<size_t>(k + 1)]->elapsed_ms(*m[static_cast<size_t>(k)]) * 1e-3);
    }
    LS_CHECK(slowest >= 0, "bench: no worker marked both ends of timed step " << k + 1 << " of " << bc.steps);
    step_s.push_back(slowest);
  }
  std::sort(step_s.begin(), step_s.end());
  const double median_s = step_s[(step_s.size() - 1) / 2];  // the lower middle: a real step
  const double global_batch = static_cast<double>(c.global_batch());

  // The breakdown: rank 0's phases, mean per profiled step, against rank 0's profiled step time
  // (a server mode: the first rank whose window closed, should rank 0 have skipped it).
  const int64_t P = bc.profile_steps;
  std::array<double, engine::kPhaseCount> phase_s{};
  double profiled_step_s = 0;
  int profiled_rank = -1;
  if (P > 0) {
    for (int r = 0; r < world && profiled_rank < 0; ++r)
      if (windows[static_cast<size_t>(r)].closed && (r == 0 || server_mode(c.sync))) profiled_rank = r;
    LS_CHECK(profiled_rank >= 0, "bench: no worker ran through the profiled steps (more --profile-steps?)");
    const Window& win = windows[static_cast<size_t>(profiled_rank)];
    const PhaseTimer& t0 = *timers[static_cast<size_t>(profiled_rank)];
    const int64_t n = win.steps;
    // A server mode's worker has no optimizer phase (the server updates) and may train several
    // parts a step (coded): every profiled step still ran a backward.
    const bool ok = server_mode(c.sync) ? t0.laps(Phase::backward) >= n
                                        : n == P && t0.laps(Phase::data) == n && t0.laps(Phase::optimizer) == n;
    LS_CHECK(ok, "bench: the phase timer saw " << t0.laps(Phase::data) << " data and " << t0.laps(Phase::optimizer)
                                               << " optimizer phase(s) in " << n << " profiled step(s)");
    for (Phase p : engine::kPhases) phase_s[static_cast<size_t>(p)] = t0.seconds(p) / static_cast<double>(n);
    profiled_step_s = (win.end - win.begin) / static_cast<double>(n);
  }
  double phase_sum_s = 0;
  for (double s : phase_s) phase_sum_s += s;

  // Peak memory.
  double peak_bytes = 0;
  std::string peak_kind;
  if (gpus.empty()) {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    peak_bytes = static_cast<double>(u.ru_maxrss) * 1024.0;  // Linux: kilobytes
    peak_kind = "peak resident set of the process (getrusage ru_maxrss)";
  } else {
    for (size_t i = 0; i < gpus.size(); ++i) {
      const size_t now = device_memory_info(gpus[i]).used;
      peak_bytes = std::max(peak_bytes, static_cast<double>(now > used_before[i] ? now - used_before[i] : 0));
    }
    peak_kind = "device memory in use after the steps less before setup (cudaMemGetInfo), largest per GPU";
  }
  // Rank 0's mean training loss over the run: a sanity check that it trained.
  trainer.worker(0).ctx().make_current();
  const engine::Stats stats = trainer.worker(0).take_train_stats();
  // The server modes log (and so take) rank 0's statistics at the epoch's last step: the run's
  // summary keeps that figure.
  const double train_loss = stats.samples > 0 ? stats.loss() : summary.final_loss;
  const int threads = std::max(1, available_cores() / world);
  const std::string data_desc = c.synthetic ? "synthetic (" + std::to_string(kReplayBatches) +
                                                  " batches per worker made once, replayed)"
                                            : c.data_dir;

  // The table.
  out << "lockstep bench train: " << c.arch << ", " << c.image_size << "x" << c.image_size << " px, " << c.classes
      << " classes, " << precision_name(c.precision) << " on " << c.device.str() << ", batch " << c.batch_size << " x "
      << world << " worker(s) = " << c.global_batch() << " images per step";
  if (c.device.is_cpu()) out << ", " << threads << " CPU thread(s) per worker";
  const std::string bn_used = trainer.worker(0).model().bn_kernels_used();
  out << "\n  data: " << data_desc << "; sync " << engine::sync_name(c.sync)
      << (world > 1 && !c.overlap ? " (no overlap)" : "");
  if (!bn_used.empty()) out << "; BN kernels " << bn_used << " (--bn-kernels " << bn_kernels_name(c.bn_kernels) << ")";
  const std::string conv_api = trainer.worker(0).model().conv_api_used();
  if (!conv_api.empty()) out << "; convolution directions through cuDNN's " << conv_api;
  out << "\n";
  if (c.cuda_graph)
    out << "  CUDA graphs: " << trainer.worker(0).graphs_captured()
        << " captured on rank 0 (each kind of step at its second run; later steps replay them); the profiled "
           "steps run uncaptured\n";
  out << "  " << bc.warmup << " warm-up step(s), " << bc.steps
      << " timed step(s) (" << kStepTiming << "; the slowest worker's)";
  if (P > 0) out << ", then " << P << " profiled step(s) for the breakdown (the device waited for at every phase boundary)";
  out << "\n\n";
  out << "  images/s    median " << fmt("%10.1f", global_batch / median_s) << "   min "
      << fmt("%10.1f", global_batch / step_s.back()) << "   max " << fmt("%10.1f", global_batch / step_s.front())
      << "\n";
  out << "  step time   median " << fmt("%7.2f ms", median_s * 1e3) << "   min " << fmt("%7.2f ms", step_s.front() * 1e3)
      << "   max " << fmt("%7.2f ms", step_s.back() * 1e3) << "\n\n";
  if (P > 0) {
    const char* labels[engine::kPhaseCount] = {"data wait", "host-to-device + normalize", "forward (+ loss)", "backward",
                                               "exposed communication", "optimizer"};
    out << "  phase (profiled steps, rank " << profiled_rank << ", mean per step)        ms        %\n";
    for (Phase p : engine::kPhases) {
      const double s = phase_s[static_cast<size_t>(p)];
      char line[128];
      std::snprintf(line, sizeof line, "    %-46s %9.3f %8.1f\n", labels[static_cast<size_t>(p)], s * 1e3,
                    profiled_step_s > 0 ? 100.0 * s / profiled_step_s : 0.0);
      out << line;
    }
    out << "    sum of phases                                 " << fmt(" %9.3f", phase_sum_s * 1e3) << fmt(" %8.1f", 100.0 * phase_sum_s / profiled_step_s)
        << "   of the profiled step (" << fmt("%.3f ms", profiled_step_s * 1e3) << "); "
        << fmt("%.1f%%", 100.0 * phase_sum_s / median_s) << " of the timed median\n";
    if (server_mode(c.sync))
      out << "    (--sync " << engine::sync_name(c.sync)
          << ": the server applies the update inside the exchange with it, so the optimizer is in exposed\n"
             "     communication, with the wait for the parameters)\n";
    else if (world > 1 && c.device.is_cpu())
      out << "    (CPU workers exchange gradient buckets on their own thread while backward runs: that time, waiting\n"
             "     for peers included, is in backward; exposed communication is what remains after backward)\n";
    out << "\n";
  }
  out << "  peak memory " << mib(peak_bytes) << " (" << peak_kind << ")\n";
  out << "  training loss " << fmt("%.4f", train_loss) << " (rank 0, mean over the run)\n";

  if (!bc.json.empty()) {
    nlohmann::ordered_json j;
    j["engine"] = "lockstep";
    j["arch"] = c.arch;
    j["device"] = c.device.str();
    j["precision"] = precision_name(c.precision);
    j["conv_algo"] = conv_algo_name(c.conv_algo);
    j["stem_channels"] = c.stem_channels;
    j["stem_space_to_depth"] = c.stem_space_to_depth;
    j["bn_kernels"] = bn_kernels_name(c.bn_kernels);
    j["bn_kernels_used"] = bn_used;
    j["conv_api_used"] = conv_api;
    j["cuda_graph"] = c.cuda_graph;
    j["graphs_captured"] = trainer.worker(0).graphs_captured();
    j["image_size"] = c.image_size;
    j["classes"] = c.classes;
    j["batch"] = c.batch_size;
    j["workers"] = world;
    j["global_batch"] = c.global_batch();
    j["threads"] = threads;
    j["sync"] = std::string(engine::sync_name(c.sync));
    j["data"] = c.synthetic ? std::string("synthetic") : c.data_dir;
    j["warmup"] = bc.warmup;
    j["steps"] = bc.steps;
    j["step_timing"] = kStepTiming;
    j["img_per_s_median"] = global_batch / median_s;
    j["img_per_s_min"] = global_batch / step_s.back();
    j["img_per_s_max"] = global_batch / step_s.front();
    j["step_ms_median"] = median_s * 1e3;
    j["step_ms_min"] = step_s.front() * 1e3;
    j["step_ms_max"] = step_s.back() * 1e3;
    j["profiled_steps"] = P;
    nlohmann::ordered_json phases = nlohmann::ordered_json::object();
    for (Phase p : engine::kPhases)
      phases[std::string(engine::phase_name(p))] =
          P > 0 ? nlohmann::ordered_json(phase_s[static_cast<size_t>(p)] * 1e3) : nlohmann::ordered_json(nullptr);
    j["phases_ms"] = phases;
    j["profiled_step_ms"] = P > 0 ? nlohmann::ordered_json(profiled_step_s * 1e3) : nlohmann::ordered_json(nullptr);
    j["peak_memory_bytes"] = static_cast<int64_t>(peak_bytes);
    j["peak_memory_kind"] = peak_kind;
    j["loss"] = train_loss;
    engine::atomic_write_file(bc.json, j.dump(2) + "\n");
    out << "  wrote " << bc.json << "\n";
  }
  return 0;
}

}  // namespace lockstep::cli
