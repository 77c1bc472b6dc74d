#include "tools/lockstep/cli_dataset.h"

#include <algorithm>
#include <iostream>
#include <atomic>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <cxxopts.hpp>

#include "data/decode.h"
#include "data/idx.h"
#include "data/image_folder.h"
#include "kernels/philox.h"
#include "tools/lockstep/cli_repeats.h"

namespace lockstep::cli {

namespace fs = std::filesystem;
using data::DataError;

int64_t parse_int_option(const std::string& flag, const std::string& text, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || p != end || text.empty())
    throw ConfigError(flag, flag + ": expected an integer, got '" + text + "'");
  if (v < lo || v > hi) {
    std::ostringstream os;
    os << flag << " must be in [" << lo << ", " << hi << "] (got " << v << ")";
    throw ConfigError(flag, os.str());
  }
  return v;
}

namespace {

constexpr const char* kDatasetUsage =
    "usage: lockstep dataset <import-idx|make-synthetic|inspect> [options]\n"
    "  import-idx --images F --labels F --out DIR [--split train|val] [--class-names a,b,...] [--fashion]\n"
    "  make-synthetic --out DIR --classes K --per-class M [--val-per-class V] [--quirks] [--seed S]\n"
    "  inspect DIR\n";

int threads_or_cores(int threads) {
  return threads > 0 ? threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// Runs f(i) for i in [0, n) on `threads` threads; the first exception is rethrown after all join.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& f) {
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex m;
  auto body = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      try {
        f(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(m);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(body);
  body();
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw DataError("cannot write " + p.string());
}

std::string padded(int64_t v, int64_t largest) {
  const std::string s = std::to_string(v), l = std::to_string(std::max<int64_t>(largest, 0));
  return std::string(l.size() > s.size() ? l.size() - s.size() : 0, '0') + s;
}

cxxopts::ParseResult parse(cxxopts::Options& o, int argc, const char* const* argv, const std::string& sub) {
  try {
    cxxopts::ParseResult r = o.parse(argc, argv);
    if (r.count("help")) throw HelpRequested{o.help()};
    if (!r.unmatched().empty() && sub != "inspect")
      throw ConfigError("", sub + ": unexpected argument '" + r.unmatched().front() + "'");
    cli::note_repeats(r, "dataset " + sub, std::cerr);
    return r;
  } catch (const cxxopts::exceptions::exception& e) {
    throw ConfigError("", sub + ": " + e.what() + " (see lockstep dataset " + sub + " --help)");
  }
}

std::string required(const cxxopts::ParseResult& r, const std::string& name, const std::string& sub) {
  if (!r.count(name)) throw ConfigError("--" + name, sub + ": --" + name + " is required");
  return r[name].as<std::string>();
}

// ---- make-synthetic ----

constexpr uint64_t kSynthKey = 0x5e1f00d5a17c0de5ull;

// One synthetic photo: the class's two colours in stripes of the class's angle and frequency,
// a soft disc at a random place, and noise; `gray` gives one channel.
std::vector<uint8_t> synth_pixels(uint64_t seed, int cls, int64_t id, int w, int h, bool gray) {
  const Philox4 c = philox4x32_10(kSynthKey ^ seed, static_cast<uint64_t>(cls));
  const Philox4 s = philox4x32_10(kSynthKey ^ seed ^ 0xabcdull, static_cast<uint64_t>(id));
  const double angle = philox_uniform(c.v[0]) * 3.14159, freq = 0.02 + 0.08 * philox_uniform(c.v[1]);
  const double ca = std::cos(angle), sa = std::sin(angle);
  uint8_t col[2][3];
  for (int k = 0; k < 6; ++k) col[k / 3][k % 3] = static_cast<uint8_t>((c.v[2 + k / 3] >> (8 * (k % 3))) & 0xff);
  const double cx = w * philox_uniform(s.v[0]), cy = h * philox_uniform(s.v[1]);
  const double rad = std::min(w, h) * (0.1 + 0.25 * philox_uniform(s.v[2]));
  const double phase = philox_uniform(s.v[3]) * 6.28;
  const int ch = gray ? 1 : 3;
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * ch);
  uint32_t noise = s.v[0] | 1u;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double t = 0.5 + 0.5 * std::sin((x * ca + y * sa) * freq * 6.28 + phase);
      const double d = std::hypot(x - cx, y - cy) / rad;
      const double disc = d < 1 ? 1 - d * d : 0;
      noise ^= noise << 13;
      noise ^= noise >> 17;
      noise ^= noise << 5;
      double v[3];
      for (int k = 0; k < 3; ++k) v[k] = col[0][k] * t + col[1][k] * (1 - t) + 80 * disc + (noise % 17) - 8.0;
      uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * ch];
      if (gray)
        p[0] = static_cast<uint8_t>(std::clamp(0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2], 0.0, 255.0));
      else
        for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(std::clamp(v[k], 0.0, 255.0));
    }
  return px;
}

}  // namespace

SyntheticFolderResult make_synthetic_folder(const SyntheticFolderSpec& spec) {
  const int val_per_class = spec.val_per_class >= 0 ? spec.val_per_class : std::max(1, spec.per_class / 10);
  for (const char* split : {"train", "val"})
    if (fs::exists(spec.out / split))
      throw DataError("make-synthetic: " + (spec.out / split).string() + " exists; choose a new --out");
  std::vector<std::string> classes;
  for (int c = 0; c < spec.classes; ++c) classes.push_back("class_" + padded(c, spec.classes - 1));
  struct Job {
    fs::path path;
    int cls;
    int64_t id;
  };
  std::vector<Job> jobs;
  int64_t id = 0;
  for (const char* split : {"train", "val"}) {
    const int per = std::string(split) == "train" ? spec.per_class : val_per_class;
    for (int c = 0; c < spec.classes; ++c) {
      if (per > 0) fs::create_directories(spec.out / split / classes[static_cast<size_t>(c)]);
      for (int i = 0; i < per; ++i)
        jobs.push_back({spec.out / split / classes[static_cast<size_t>(c)] /
                            (classes[static_cast<size_t>(c)] + "_" + padded(i, per - 1) + ".JPEG"),
                        c, id++});
    }
  }
  parallel_for(static_cast<int64_t>(jobs.size()), threads_or_cores(spec.threads), [&](int64_t j) {
    const Job& job = jobs[static_cast<size_t>(j)];
    const Philox4 r = philox4x32_10(kSynthKey ^ spec.seed ^ 0x51e5ull, static_cast<uint64_t>(job.id));
    const int w = 300 + static_cast<int>(r.v[0] % 301), h = 250 + static_cast<int>(r.v[1] % 251);
    const bool gray = r.v[2] % 10 == 0;
    std::vector<uint8_t> px = synth_pixels(spec.seed, job.cls, job.id, w, h, gray);
    write_bytes(job.path, data::encode_jpeg(px.data(), w, h, gray ? 1 : 3, 85 + static_cast<int>(r.v[3] % 11)));
  });
  SyntheticFolderResult result;
  result.train_files = int64_t{spec.classes} * spec.per_class;
  result.val_files = int64_t{spec.classes} * val_per_class;
  if (spec.quirks && spec.per_class > 0) {
    const fs::path dir = spec.out / "train" / classes[0];
    const std::string stem = classes[0] + "_quirk_";
    std::vector<uint8_t> px = synth_pixels(spec.seed, 0, -1, 500, 375, false);
    write_bytes(dir / (stem + "png.JPEG"), data::encode_png(px.data(), 500, 375));
    // Adobe-inverted CMYK as Photoshop writes it, whose conversion R = c * k / 255 gives back
    // the RGB: k = max(R, G, B).
    std::vector<uint8_t> cmyk(static_cast<size_t>(500) * 375 * 4);
    for (size_t p = 0; p < static_cast<size_t>(500) * 375; ++p) {
      const int k = std::max({px[3 * p], px[3 * p + 1], px[3 * p + 2]});
      for (int ch = 0; ch < 3; ++ch)
        cmyk[4 * p + ch] = static_cast<uint8_t>(k ? std::lround(px[3 * p + ch] * 255.0 / k) : 255);
      cmyk[4 * p + 3] = static_cast<uint8_t>(k);
    }
    write_bytes(dir / (stem + "cmyk.JPEG"), data::encode_jpeg_cmyk(cmyk.data(), 500, 375));
    std::vector<uint8_t> jpeg = data::encode_jpeg(px.data(), 500, 375, 3);
    write_bytes(dir / ("." + stem + "hidden.JPEG"), jpeg);
    jpeg.resize(jpeg.size() / 2);
    write_bytes(dir / (stem + "truncated.JPEG"), jpeg);
    write_bytes(dir / (stem + "empty.JPEG"), {});
    result.train_files += 5;
  }
  return result;
}

// ---- inspect ----

void inspect_split(const fs::path& dir, const std::vector<std::string>* classes, std::ostream& out, int threads) {
  const data::FolderIndex index = data::scan_folder(dir, classes);
  const auto n = static_cast<int64_t>(index.samples.size());
  struct Result {
    data::ImageFormat format = data::ImageFormat::unknown;
    int w = 0, h = 0;
    std::string error;
  };
  std::vector<Result> results(static_cast<size_t>(n));
  {
    const int t = threads_or_cores(threads);
    std::vector<std::unique_ptr<data::Decoder>> decoders;
    std::atomic<int64_t> next{0};
    std::vector<std::thread> pool;
    for (int k = 0; k < t; ++k)
      pool.emplace_back([&] {
        auto decoder = std::make_unique<data::Decoder>();
        std::vector<uint8_t> file;
        data::Image image;
        for (int64_t i; (i = next.fetch_add(1)) < n;) {
          Result& r = results[static_cast<size_t>(i)];
          try {
            data::Decoder::read_file(index.samples[static_cast<size_t>(i)].path, file);
            r.format = data::sniff_format(file.data(), file.size());
            decoder->decode(file.data(), file.size(), image);
            r.w = image.width;
            r.h = image.height;
          } catch (const std::exception& e) {
            r.error = e.what();
            decoder = std::make_unique<data::Decoder>();  // never reuse a handle after a failure
          }
        }
      });
    for (std::thread& th : pool) th.join();
  }
  std::vector<int64_t> per_class(index.classes.size());
  for (const data::Sample& s : index.samples) ++per_class[static_cast<size_t>(s.label)];
  int used = 0;
  for (int64_t c : per_class) used += c > 0;
  out << dir.string() << ": " << used << " classes, " << n << " files\n";
  if (index.classes.size() <= 100) {
    for (size_t c = 0; c < index.classes.size(); ++c)
      if (per_class[c] > 0) out << "  " << index.classes[c] << "  " << per_class[c] << "\n";
  } else {
    std::vector<int64_t> s = per_class;
    std::sort(s.begin(), s.end());
    out << "  files per class: min " << s.front() << ", median " << s[s.size() / 2] << ", max " << s.back() << "\n";
  }
  std::map<std::string, int64_t> formats;
  std::vector<int> ws, hs;
  std::vector<std::string> bad;
  for (int64_t i = 0; i < n; ++i) {
    const Result& r = results[static_cast<size_t>(i)];
    ++formats[data::format_name(r.format)];
    if (r.error.empty()) {
      ws.push_back(r.w);
      hs.push_back(r.h);
    } else {
      bad.push_back(index.samples[static_cast<size_t>(i)].path.string() + ": " + r.error);
    }
  }
  out << "  formats:";
  for (const auto& [name, count] : formats) out << " " << name << " " << count;
  out << "\n";
  if (!ws.empty()) {
    std::sort(ws.begin(), ws.end());
    std::sort(hs.begin(), hs.end());
    out << "  width  min " << ws.front() << "  median " << ws[ws.size() / 2] << "  max " << ws.back() << "\n";
    out << "  height min " << hs.front() << "  median " << hs[hs.size() / 2] << "  max " << hs.back() << "\n";
  }
  out << "  bad files: " << bad.size() << "\n";
  for (const std::string& b : bad) out << "    " << b << "\n";
  if (!index.problems.empty()) {
    out << "  skipped entries: " << index.problems.size() << "\n";
    for (const std::string& p : index.problems) out << "    " << p << "\n";
  }
}

// ---- the subcommands ----

namespace {

int cmd_import(int argc, const char* const* argv, std::ostream& out) {
  cxxopts::Options o("lockstep dataset import-idx", "Convert IDX files (MNIST, Fashion-MNIST) into a folder of JPEGs.");
  // clang-format off
  o.add_options()
    ("images", "idx3 image file (raw or .gz)", cxxopts::value<std::string>())
    ("labels", "idx1 label file (raw or .gz)", cxxopts::value<std::string>())
    ("out", "dataset root; the split is written to OUT/<split>", cxxopts::value<std::string>())
    ("split", "train or val (default: val for t10k-* files, else train)", cxxopts::value<std::string>())
    ("class-names", "comma-separated class names in label order", cxxopts::value<std::string>())
    ("fashion", "use the ten Fashion-MNIST class names")
    ("h,help", "print this help");
  // clang-format on
  cxxopts::ParseResult r = parse(o, argc, argv, "import-idx");
  data::IdxImport spec;
  spec.images = required(r, "images", "import-idx");
  spec.labels = required(r, "labels", "import-idx");
  spec.root = required(r, "out", "import-idx");
  if (r.count("split")) {
    spec.split = r["split"].as<std::string>();
    if (spec.split != "train" && spec.split != "val")
      throw ConfigError("--split", "import-idx: --split must be train or val (got '" + spec.split + "')");
  } else {
    spec.split = spec.images.filename().string().rfind("t10k", 0) == 0 ? "val" : "train";
  }
  if (r.count("class-names") && r.count("fashion"))
    throw ConfigError("--fashion", "import-idx: --class-names and --fashion contradict each other");
  if (r.count("fashion")) spec.class_names = data::fashion_mnist_class_names();
  if (r.count("class-names")) {
    std::stringstream ss(r["class-names"].as<std::string>());
    for (std::string name; std::getline(ss, name, ',');) spec.class_names.push_back(name);
    for (const std::string& name : spec.class_names)
      if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos)
        throw ConfigError("--class-names", "import-idx: --class-names: '" + name + "' is not a usable folder name");
  }
  data::IdxImportResult res = data::import_idx(spec);
  out << (res.already ? "already imported: " : "imported ") << res.images << " images of " << res.classes
      << " classes into " << res.dir.string() << "\n";
  return 0;
}

int cmd_make_synthetic(int argc, const char* const* argv, std::ostream& out) {
  cxxopts::Options o("lockstep dataset make-synthetic", "Write a folder of synthetic JPEGs for tests and benchmarks.");
  // clang-format off
  o.add_options()
    ("out", "dataset root (train/ and val/ are written)", cxxopts::value<std::string>())
    ("classes", "number of classes", cxxopts::value<std::string>())
    ("per-class", "train images per class", cxxopts::value<std::string>())
    ("val-per-class", "val images per class (default: max(1, per-class / 10))", cxxopts::value<std::string>())
    ("quirks", "add a PNG named .JPEG, a CMYK JPEG, a truncated JPEG, a zero-byte and a hidden file")
    ("seed", "seed of sizes and content", cxxopts::value<std::string>()->default_value("0"))
    ("h,help", "print this help");
  // clang-format on
  cxxopts::ParseResult r = parse(o, argc, argv, "make-synthetic");
  SyntheticFolderSpec spec;
  spec.out = required(r, "out", "make-synthetic");
  spec.classes = static_cast<int>(parse_int_option("--classes", required(r, "classes", "make-synthetic"), 1, 100000));
  spec.per_class = static_cast<int>(parse_int_option("--per-class", required(r, "per-class", "make-synthetic"), 1, 10000000));
  if (r.count("val-per-class"))
    spec.val_per_class = static_cast<int>(parse_int_option("--val-per-class", r["val-per-class"].as<std::string>(), 0, 10000000));
  spec.quirks = r.count("quirks") > 0;
  spec.seed = static_cast<uint64_t>(parse_int_option("--seed", r["seed"].as<std::string>(), 0, INT64_MAX));
  SyntheticFolderResult res = make_synthetic_folder(spec);
  out << "wrote " << res.train_files << " train and " << res.val_files << " val files of " << spec.classes
      << " classes to " << spec.out.string() << (spec.quirks ? " (with quirks)" : "") << "\n";
  return 0;
}

int cmd_inspect(int argc, const char* const* argv, std::ostream& out) {
  cxxopts::Options o("lockstep dataset inspect", "Report classes, counts, formats, sizes and bad files of a folder.");
  o.add_options()("h,help", "print this help");
  o.positional_help("DIR");
  cxxopts::ParseResult r = parse(o, argc, argv, "inspect");
  if (r.unmatched().size() != 1) throw ConfigError("DIR", "inspect: expected one folder, DIR");
  const fs::path dir = r.unmatched().front();
  const bool train = fs::is_directory(dir / "train"), val = fs::is_directory(dir / "val");
  if (!train && !val) {
    inspect_split(dir, nullptr, out);
    return 0;
  }
  std::vector<std::string> classes;
  if (train) {
    classes = data::scan_folder(dir / "train").classes;
    inspect_split(dir / "train", nullptr, out);
  }
  if (val) inspect_split(dir / "val", train ? &classes : nullptr, out);
  return 0;
}

}  // namespace

int run_dataset(int argc, const char* const* argv, std::ostream& out) {
  if (argc < 2) throw ConfigError("", std::string("expected a subcommand\n") + kDatasetUsage);
  const std::string sub = argv[1];
  if (sub == "--help" || sub == "-h" || sub == "help") throw HelpRequested{kDatasetUsage};
  if (sub == "import-idx") return cmd_import(argc - 1, argv + 1, out);
  if (sub == "make-synthetic") return cmd_make_synthetic(argc - 1, argv + 1, out);
  if (sub == "inspect") return cmd_inspect(argc - 1, argv + 1, out);
  throw ConfigError("", "unknown subcommand '" + sub + "'\n" + kDatasetUsage);
}

}  // namespace lockstep::cli
