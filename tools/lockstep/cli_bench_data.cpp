#include "tools/lockstep/cli_bench_data.h"
#include "tools/lockstep/cli_bench_comm.h"
#include "tools/lockstep/cli_bench_modes.h"
#include "tools/lockstep/cli_bench_ops.h"
#include "tools/lockstep/cli_bench_train.h"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>

#include <cxxopts.hpp>

#include "data/loader.h"
#include "tools/lockstep/cli_dataset.h"
#include "tools/lockstep/cli_repeats.h"

namespace lockstep::cli {

namespace {

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

constexpr const char* kBenchUsage =
    "usage: lockstep bench train [--warmup 5] [--steps 20] [--profile-steps 5] [--json FILE] [lockstep train options]\n"
    "       lockstep bench data --data DIR --loader-threads T [--image-size 224] [--batch-size 64]\n"
    "                           [--batches 20] [--warmup 3] [--prefetch 4] [--seed 0]\n"
    "       lockstep bench comm [--gpus N | --device cpu --workers N] [--min-bytes 1K] [--max-bytes 256M]\n"
    "                           [--iters 20] [--dtype f32|bf16]\n"
    "       lockstep bench ops [--arch resnet50] [--batch-size 32] [--device cpu|cuda[:N]] [--precision P]\n"
    "                          [--warmup 2] [--iters 5] [--top K] [--json FILE]\n"
    "       lockstep bench modes [--modes allreduce,sign,backup,average,async] [lockstep train options]\n"
    "       lockstep bench stragglers [--modes allreduce,backup,coded] [--target ACC] [lockstep train options]\n";

int bench_data(int argc, const char* const* argv, std::ostream& out) {
  cxxopts::Options o("lockstep bench data", "Loader throughput: decoded and augmented images per second.");
  // clang-format off
  o.add_options()
    ("data", "ImageNet-style folder (its train/, or the folder itself)", cxxopts::value<std::string>())
    ("loader-threads", "decode threads", cxxopts::value<std::string>())
    ("image-size", "output crop side", cxxopts::value<std::string>()->default_value("224"))
    ("batch-size", "images per batch", cxxopts::value<std::string>()->default_value("64"))
    ("batches", "timed batches", cxxopts::value<std::string>()->default_value("20"))
    ("warmup", "untimed batches first", cxxopts::value<std::string>()->default_value("3"))
    ("prefetch", "batches decoded ahead", cxxopts::value<std::string>()->default_value("4"))
    ("seed", "order and augmentation seed", cxxopts::value<std::string>()->default_value("0"))
    ("h,help", "print this help");
  // clang-format on
  cxxopts::ParseResult r;
  try {
    r = o.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw ConfigError("", std::string("data: ") + e.what() + " (see lockstep bench data --help)");
  }
  if (r.count("help")) throw HelpRequested{o.help()};
  if (!r.unmatched().empty()) throw ConfigError("", "data: unexpected argument '" + r.unmatched().front() + "'");
  cli::note_repeats(r, "bench data", std::cerr);
  if (!r.count("data")) throw ConfigError("--data", "data: --data is required");
  if (!r.count("loader-threads")) throw ConfigError("--loader-threads", "data: --loader-threads is required");
  data::LoaderConfig c;
  c.train = true;
  c.threads = static_cast<int>(parse_int_option("--loader-threads", r["loader-threads"].as<std::string>(), 1, 1024));
  c.image_size = static_cast<int>(parse_int_option("--image-size", r["image-size"].as<std::string>(), 1, 4096));
  c.batch = static_cast<int>(parse_int_option("--batch-size", r["batch-size"].as<std::string>(), 1, 65536));
  c.prefetch = static_cast<int>(parse_int_option("--prefetch", r["prefetch"].as<std::string>(), 1, 1024));
  c.seed = static_cast<uint64_t>(parse_int_option("--seed", r["seed"].as<std::string>(), 0, INT64_MAX));
  c.max_bad_fraction = 1.0;  // a benchmark reports bad files, it does not stop for them
  const int64_t batches = parse_int_option("--batches", r["batches"].as<std::string>(), 1, 1 << 30);
  const int64_t warmup = parse_int_option("--warmup", r["warmup"].as<std::string>(), 0, 1 << 30);

  std::filesystem::path dir = r["data"].as<std::string>();
  if (std::filesystem::is_directory(dir / "train")) dir /= "train";
  data::Loader loader(data::scan_folder(dir), c);
  out << "bench data: " << dir.string() << ", " << loader.index().samples.size() << " images, "
      << loader.batches_per_epoch() << " batches of " << c.batch << " per epoch, " << c.image_size << "x"
      << c.image_size << " random-resized crops, " << c.threads << " loader thread(s), prefetch " << c.prefetch
      << "\n";
  int64_t epoch = 0, in_epoch = 0;
  loader.start_epoch(0);
  auto take = [&] {
    if (in_epoch == loader.batches_per_epoch()) {
      loader.start_epoch(++epoch);
      in_epoch = 0;
    }
    ++in_epoch;
    return loader.next().count;
  };
  for (int64_t b = 0; b < warmup; ++b) take();
  const double wait0 = loader.stats().wait_seconds, cpu0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  int64_t images = 0;
  for (int64_t b = 0; b < batches; ++b) images += take();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  const data::LoaderStats st = loader.stats();
  char line[512];
  std::snprintf(line, sizeof line,
                "  %lld images in %.2f s after %lld warm-up batches: %.1f images/s, %.1f images/s per thread, "
                "%.1f images per CPU-second (%.2f cores busy), consumer waited %.0f%%\n",
                static_cast<long long>(images), secs, static_cast<long long>(warmup), images / secs,
                images / secs / c.threads, cpu > 0 ? images / cpu : 0.0, cpu / secs,
                100.0 * (st.wait_seconds - wait0) / secs);
  out << line;
  if (st.bad_images > 0) {
    out << "  bad images: " << st.bad_images << " (each time one was met; the files:)\n";
    std::set<std::string> seen;  // an epoch meets a bad file again
    for (const std::string& p : st.bad_paths)
      if (seen.insert(p).second) out << "    " << p << "\n";
  }
  return 0;
}

}  // namespace

int run_bench(int argc, const char* const* argv, std::ostream& out) {
  if (argc < 2) throw ConfigError("", std::string("expected what to benchmark\n") + kBenchUsage);
  const std::string what = argv[1];
  if (what == "--help" || what == "-h" || what == "help") throw HelpRequested{kBenchUsage};
  if (what == "train") return run_bench_train(parse_bench_train_args(argc - 1, argv + 1), out);
  if (what == "data") return bench_data(argc - 1, argv + 1, out);
  if (what == "comm") return run_bench_comm(parse_bench_comm_args(argc - 1, argv + 1), out);
  if (what == "ops") return run_bench_ops(parse_bench_ops_args(argc - 1, argv + 1), out);
  if (what == "modes") return run_bench_modes(argc - 1, argv + 1, out);
  if (what == "stragglers") return run_bench_stragglers(argc - 1, argv + 1, out);
  throw ConfigError("", "unknown benchmark '" + what + "'\n" + kBenchUsage);
}

}  // namespace lockstep::cli
