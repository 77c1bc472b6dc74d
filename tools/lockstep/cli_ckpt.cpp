// `lockstep ckpt inspect`: see cli_ckpt.h.
#include "tools/lockstep/cli_ckpt.h"

#include <algorithm>
#include <iostream>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "engine/checkpoint/checkpoint.h"
#include "engine/checkpoint/sha256.h"
#include "tools/lockstep/cli_repeats.h"

namespace lockstep::cli {

namespace fs = std::filesystem;
using engine::CheckpointState;
using engine::LoadedCheckpoint;
using engine::SafetensorsFile;
using engine::TensorInfo;
using nlohmann::json;

namespace {

constexpr const char* kCkptUsage =
    "usage: lockstep ckpt inspect PATH [--tensors]\n"
    "  PATH: a checkpoint directory (<run>/checkpoints/step-N), a run directory (its checkpoints, `latest`\n"
    "        and the one --resume would take) or a .safetensors file\n";

struct Options {
  bool tensors = false;
};

// 1536 -> "1.5 KiB"; below 1 KiB in bytes.
std::string human_bytes(uint64_t b) {
  static const char* const units[] = {"KiB", "MiB", "GiB", "TiB"};
  if (b < 1024) return std::to_string(b) + " B";
  double v = static_cast<double>(b) / 1024;
  size_t u = 0;
  for (; v >= 1024 && u + 1 < std::size(units); ++u) v /= 1024;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Error messages name files by their full path; under a heading that names the directory the
// file's name alone is enough.
std::string relative_to(const std::string& message, const fs::path& dir) {
  const std::string prefix = (dir / "").string();
  return message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message;
}

// A parameter in torchvision's state_dict: everything but the BN running statistics.
bool is_parameter(const std::string& name) {
  for (std::string_view buffer : {".running_mean", ".running_var", ".num_batches_tracked"})
    if (name.size() >= buffer.size() && name.compare(name.size() - buffer.size(), buffer.size(), buffer) == 0)
      return false;
  return true;
}

uint64_t total_elements(const SafetensorsFile& f, bool parameters_only) {
  uint64_t n = 0;
  for (const TensorInfo& t : f.tensors())
    if (!parameters_only || is_parameter(t.name)) n += t.numel();
  return n;
}

void print_tensors(const SafetensorsFile& f, const std::string& indent, std::ostream& out) {
  size_t w = 0;
  for (const TensorInfo& t : f.tensors()) w = std::max(w, t.name.size());
  for (const TensorInfo& t : f.tensors())
    out << indent << pad(t.name, w) << "  " << pad(t.dtype, 4) << "  " << shape_text(t.shape) << "\n";
}

// ---- one checkpoint directory ----

// state.json as far as it reads, for reports on checkpoints that do not verify.
struct StateFile {
  json raw;                            // null when state.json does not parse
  std::optional<CheckpointState> state;
};

StateFile read_state(const fs::path& dir) {
  StateFile s;
  try {
    const std::vector<std::byte> bytes = engine::read_file(dir / "state.json");
    const char* text = reinterpret_cast<const char*>(bytes.data());
    s.raw = json::parse(text, text + bytes.size(), nullptr, false);
    if (s.raw.is_discarded()) s.raw = nullptr;
    if (s.raw.is_object()) s.state = CheckpointState::from_json(s.raw, "state.json");
  } catch (const std::exception&) {  // Error, or nlohmann's on a mistyped field
  }
  return s;
}

// The saved config as --resume reads it; throws CheckpointError when it does not read.
TrainConfig saved_config(const CheckpointState& st, const fs::path& dir) {
  try {
    return TrainConfig::from_json(st.config);
  } catch (const std::exception& e) {
    throw engine::CheckpointError((dir / "state.json").string() + ": field 'config' does not read: " + e.what());
  }
}

// A file of state.json's `files` block: what the record says, and what is on disk.
struct FileReport {
  std::string name;
  uint64_t bytes = 0;
  std::string sha256;                     // recorded
  std::optional<SafetensorsFile> parsed;  // when it verifies (or parses, for the report)
  std::string problem;                    // empty when the file verifies
};

// The files of a checkpoint that open_checkpoint verified: taken from what it loaded.
std::vector<FileReport> verified_files(const json& files, LoadedCheckpoint& ck) {
  std::vector<FileReport> out;
  for (const auto& [name, rec] : files.items()) {
    FileReport f;
    f.name = name;
    f.bytes = rec.value("bytes", uint64_t{0});
    f.sha256 = rec.value("sha256", std::string());
    if (name == "model.safetensors") f.parsed = std::move(ck.model);
    else if (name == "optimizer.safetensors") f.parsed = std::move(ck.optimizer);
    else if (name == "workers.safetensors" && ck.workers) f.parsed = std::move(*ck.workers);
    out.push_back(std::move(f));
  }
  return out;
}

// The files of a checkpoint that did not verify, each checked on its own (size, SHA-256, strict
// parse), so the report says which one is wrong.
std::vector<FileReport> checked_files(const json& files, const fs::path& dir) {
  std::vector<FileReport> out;
  for (const auto& [name, rec] : files.items()) {
    FileReport f;
    f.name = name;
    const json bytes = rec.is_object() && rec.contains("bytes") ? rec.at("bytes") : json();
    const json sha = rec.is_object() && rec.contains("sha256") ? rec.at("sha256") : json();
    if (!bytes.is_number_unsigned() || !sha.is_string()) {
      f.problem = "state.json's record of it is malformed (" + rec.dump() + ")";
      out.push_back(std::move(f));
      continue;
    }
    f.bytes = bytes.get<uint64_t>();
    f.sha256 = sha.get<std::string>();
    const fs::path p = dir / name;
    try {
      if (!fs::exists(p)) throw Error("missing (state.json lists it)");
      std::vector<std::byte> data = engine::read_file(p);
      if (data.size() != f.bytes)
        f.problem = std::to_string(data.size()) + " bytes, state.json says " + std::to_string(f.bytes);
      else if (const std::string sha = engine::sha256_hex(data); sha != f.sha256)
        f.problem = "SHA-256 differs from state.json's (on disk: " + sha.substr(0, 16) + ")";
      f.parsed = SafetensorsFile::parse(std::move(data), p.string());
    } catch (const Error& e) {
      if (f.problem.empty()) f.problem = relative_to(e.what(), dir);
    }
    out.push_back(std::move(f));
  }
  return out;
}

void print_metrics(const json& metrics, std::ostream& out) {
  auto number = [](const json& r, const char* key) -> std::optional<double> {
    if (r.is_object() && r.contains(key) && r.at(key).is_number()) return r.at(key).get<double>();
    return std::nullopt;
  };
  auto at = [](const json& r) {
    std::string s;
    if (r.contains("update") && r.at("update").is_number_integer())
      s = "update " + std::to_string(r.at("update").get<int64_t>());
    if (r.contains("epoch") && r.at("epoch").is_number_integer())
      s += (s.empty() ? "" : ", ") + std::string("epoch ") + std::to_string(r.at("epoch").get<int64_t>());
    return s.empty() ? std::string() : " (" + s + ")";
  };
  auto percent = [&](const json& r, const char* key, const char* label) {
    const std::optional<double> v = number(r, key);
    return v ? std::string("  ") + label + " " + fixed(100 * *v, 2) + "%" : std::string();
  };
  const json none = json::object();
  const json& train = metrics.is_object() && metrics.contains("train") ? metrics.at("train") : none;
  const json& eval = metrics.is_object() && metrics.contains("eval") ? metrics.at("eval") : none;
  if (const std::optional<double> loss = number(train, "loss"))
    out << "  train     loss " << fixed(*loss, 4) << percent(train, "top1", "top-1") << at(train) << "\n";
  else
    out << "  train     no step logged yet\n";
  if (const std::optional<double> loss = number(eval, "loss"))
    out << "  eval      loss " << fixed(*loss, 4) << percent(eval, "top1", "top-1") << percent(eval, "top5", "top-5")
        << at(eval) << "\n";
}

void print_state(const CheckpointState& st, const std::optional<TrainConfig>& c, std::ostream& out) {
  out << "  position  update " << st.update;
  if (st.finished) {
    out << ", training finished (epoch " << st.epoch - 1 << " done)";
  } else {
    out << ", not finished: a resume continues at epoch " << st.epoch << " step " << st.epoch_step;
    if (c && c->steps_per_epoch > 0) out << "/" << c->steps_per_epoch;
  }
  out << ", " << st.samples_seen << " samples seen\n";
  out << "  saved     " << st.created << " by lockstep " << st.lockstep_version << "\n";
  if (c) {
    out << "  model     " << c->arch << ", " << c->classes << " classes, " << c->image_size << " px, "
        << (c->synthetic ? std::string("synthetic data") : "data " + c->data_dir) << "\n";
    out << "  run       " << st.world << (st.world == 1 ? " worker" : " workers") << " (" << c->device.str() << ", "
        << dtype_name(c->precision) << "), sync " << st.sync << ", global batch "
        << int64_t{st.world} * st.batch_size * st.accumulate << " (batch " << st.batch_size << " x " << st.world
        << (st.world == 1 ? " worker" : " workers") << " x accumulate " << st.accumulate << "), lr " << st.lr
        << "\n";
  }
  print_metrics(st.metrics, out);
}

void print_files(const std::vector<FileReport>& files, bool checked, std::ostream& out) {
  size_t w = 0;
  for (const FileReport& f : files) w = std::max(w, f.name.size());
  for (size_t i = 0; i < files.size(); ++i) {
    const FileReport& f = files[i];
    out << (i == 0 ? "  files     " : "            ") << pad(f.name, w) << "  " << pad(human_bytes(f.bytes), 10);
    if (f.parsed) {
      out << "  " << f.parsed->tensors().size() << " tensors, " << total_elements(*f.parsed, false) << " elements";
      if (f.name == "model.safetensors") out << ", " << total_elements(*f.parsed, true) << " parameters";
    }
    if (!f.sha256.empty()) out << "  sha256 " << f.sha256.substr(0, 16);
    if (checked) out << (f.problem.empty() ? "  ok" : "  INVALID: " + f.problem);
    out << "\n";
  }
}

// Prints the summary of the checkpoint in `dir`; `ck` is what open_checkpoint returned, or null
// with `reason` when it threw. Returns whether the checkpoint is valid.
bool report_checkpoint(const fs::path& dir, std::optional<LoadedCheckpoint> ck, std::string reason,
                       const Options& opt, std::ostream& out) {
  const StateFile sf = read_state(dir);
  const std::optional<CheckpointState> state = ck ? std::optional(ck->state) : sf.state;
  std::optional<TrainConfig> config;
  if (state) {
    try {
      config = saved_config(*state, dir);
    } catch (const Error& e) {
      if (reason.empty()) reason = e.what();  // verified, but --resume could not read its config
    }
  }
  const bool valid = reason.empty();
  out << "checkpoint " << dir.string() << ": " << (valid ? "valid" : "INVALID: " + relative_to(reason, dir)) << "\n";
  if (state) print_state(*state, config, out);
  const json files = sf.raw.is_object() && sf.raw.contains("files") && sf.raw.at("files").is_object()
                         ? sf.raw.at("files")
                         : json::object();
  std::vector<FileReport> reports = ck && valid ? verified_files(files, *ck) : checked_files(files, dir);
  print_files(reports, !valid, out);
  if (opt.tensors)
    for (const FileReport& f : reports)
      if (f.name == "model.safetensors" && f.parsed) {
        out << "  tensors of model.safetensors\n";
        print_tensors(*f.parsed, "    ", out);
      }
  return valid;
}

int inspect_checkpoint(const fs::path& dir, const Options& opt, std::ostream& out) {
  std::optional<LoadedCheckpoint> ck;
  std::string reason;
  try {
    ck = engine::open_checkpoint(dir);
  } catch (const Error& e) {
    reason = e.what();
  }
  return report_checkpoint(dir, std::move(ck), reason, opt, out) ? 0 : 1;
}

// ---- a run directory ----

int inspect_run(const fs::path& run, const Options& opt, std::ostream& out) {
  const fs::path parent = engine::checkpoints_dir(run);
  const std::vector<fs::path> list = engine::list_checkpoints(run);
  out << "run " << run.string() << ": " << list.size() << (list.size() == 1 ? " checkpoint" : " checkpoints")
      << " in " << parent.string() << "\n";
  bool clean = !list.empty();

  // What `latest` names: "" when it is missing or names nothing.
  const engine::LatestPointer pointer = engine::read_latest(run);
  const std::string latest = pointer.name, latest_note = pointer.problem;

  size_t w = 0;
  for (const fs::path& p : list) w = std::max(w, p.filename().string().size());
  bool latest_valid = false, latest_found = false;
  for (const fs::path& p : list) {
    const std::string name = p.filename().string();
    std::string problem;
    std::optional<CheckpointState> state;
    try {
      LoadedCheckpoint ck = engine::open_checkpoint(p);
      saved_config(ck.state, p);
      state = std::move(ck.state);
    } catch (const Error& e) {
      problem = relative_to(e.what(), p);
      state = read_state(p).state;
    }
    out << "  " << pad(name, w) << "  " << (problem.empty() ? "valid  " : "INVALID");
    if (state) {
      out << "  update " << state->update << ", ";
      if (state->finished) out << "finished after epoch " << state->epoch - 1;
      else out << "epoch " << state->epoch << " step " << state->epoch_step;
    }
    if (name == latest) out << "  <- latest";
    if (!problem.empty()) out << "\n  " << pad("", w) << "  " << problem;
    out << "\n";
    if (!problem.empty()) clean = false;
    if (name == latest) {
      latest_found = true;
      latest_valid = problem.empty();
    }
  }

  out << "  latest: ";
  if (!latest_note.empty()) {
    out << latest_note << "\n";
    clean = false;
  } else if (!latest_found) {
    out << latest << ", which does not exist\n";
    clean = false;
  } else if (!latest_valid) {
    out << latest << ", which is INVALID\n";
    clean = false;
  } else if (latest != list.front().filename().string()) {
    out << latest << " (not the newest checkpoint: " << list.front().filename().string()
        << " is from a later update)\n";
  } else {
    out << latest << "\n";
  }

  std::optional<LoadedCheckpoint> pick;
  try {
    pick = engine::resolve_checkpoint(run, nullptr);
  } catch (const Error& e) {
    out << "--resume would fail: " << e.what() << "\n";
    return 1;
  }
  const fs::path dir = pick->dir;
  out << "--resume takes " << dir.filename().string()
      << (latest_valid ? "" : " (the newest checkpoint that verifies)") << "\n";
  return report_checkpoint(dir, std::move(pick), "", opt, out) && clean ? 0 : 1;
}

// ---- a safetensors file ----

// `named`: the file is called *.safetensors, so a file that does not parse is an invalid one
// (reported, 1) rather than something else altogether (Error).
int inspect_safetensors(const fs::path& path, bool named, const Options& opt, std::ostream& out) {
  std::optional<SafetensorsFile> f;
  try {
    f = SafetensorsFile::open(path);
  } catch (const Error& e) {
    std::string reason = e.what();
    const std::string prefix = path.string() + ": ";
    if (reason.rfind(prefix, 0) == 0) reason = reason.substr(prefix.size());
    if (!named)
      throw Error(path.string() + ": not a checkpoint or run directory, nor a safetensors file (" + reason + ")");
    out << "file " << path.string() << ": INVALID: " << reason << "\n";
    return 1;
  }
  uint64_t data = 0;
  for (const TensorInfo& t : f->tensors()) data += t.bytes();
  out << "file " << path.string() << ": valid\n";
  out << "  " << f->tensors().size() << " tensors, " << total_elements(*f, false) << " elements, " << data
      << " bytes of data (" << human_bytes(f->file_bytes().size()) << " file)\n";
  if (f->metadata().empty()) {
    out << "  metadata  none\n";
  } else {
    size_t w = 0;
    for (const auto& [k, v] : f->metadata()) w = std::max(w, k.size());
    bool first = true;
    for (const auto& [k, v] : f->metadata()) {
      out << (first ? "  metadata  " : "            ") << pad(k, w) << "  " << v << "\n";
      first = false;
    }
  }
  if (opt.tensors) {
    out << "  tensors\n";
    print_tensors(*f, "    ", out);
  }
  return 0;
}

// ---- the subcommand ----

int cmd_inspect(int argc, const char* const* argv, std::ostream& out) {
  cxxopts::Options o("lockstep ckpt inspect",
                     "Verify and summarise a checkpoint directory (<run>/checkpoints/step-N), a run directory (its\n"
                     "checkpoints, `latest` and the one --resume would take) or a .safetensors file. Exit status 0\n"
                     "when it is valid, 1 when not (the report says why), 2 for bad usage.");
  o.custom_help("PATH [--tensors]");
  // clang-format off
  o.add_options()
    ("tensors", "also list every tensor (name, dtype, shape) of the model or file")
    ("h,help", "print this help");
  // clang-format on
  Options opt;
  std::vector<std::string> paths;
  try {
    cxxopts::ParseResult r = o.parse(argc, argv);
    if (r.count("help")) throw HelpRequested{o.help()};
    cli::note_repeats(r, "ckpt inspect", std::cerr);
    opt.tensors = r.count("tensors") > 0;
    paths = r.unmatched();
  } catch (const cxxopts::exceptions::exception& e) {
    throw ConfigError("", std::string("inspect: ") + e.what() + " (see lockstep ckpt inspect --help)");
  }
  if (paths.empty())
    throw ConfigError("PATH", "inspect: expected PATH, a checkpoint or run directory or a .safetensors file");
  if (paths.size() > 1) throw ConfigError("PATH", "inspect: expected one PATH, got " + std::to_string(paths.size()));

  fs::path path = fs::path(paths.front()).lexically_normal();
  if (!path.has_filename() && path.has_parent_path()) path = path.parent_path();  // a trailing slash
  const fs::path parent = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) throw Error(path.string() + ": " + ec.message());
  if (!fs::exists(st)) throw Error(path.string() + ": no such file or directory");
  if (fs::is_directory(st)) {
    if (fs::exists(path / "state.json")) return inspect_checkpoint(path, opt, out);
    if (fs::is_directory(engine::checkpoints_dir(path))) return inspect_run(path, opt, out);
    if (path.filename() == "checkpoints") return inspect_run(parent, opt, out);
    throw Error(path.string() + ": not a checkpoint directory (no state.json) nor a run directory (no checkpoints/)");
  }
  if (path.filename() == "state.json") return inspect_checkpoint(parent, opt, out);
  return inspect_safetensors(path, path.extension() == ".safetensors", opt, out);
}

}  // namespace

int run_ckpt(int argc, const char* const* argv, std::ostream& out) {
  if (argc < 2) throw ConfigError("", std::string("expected a subcommand\n") + kCkptUsage);
  const std::string sub = argv[1];
  if (sub == "--help" || sub == "-h" || sub == "help") throw HelpRequested{kCkptUsage};
  if (sub == "inspect") return cmd_inspect(argc - 1, argv + 1, out);
  throw ConfigError("", "unknown subcommand '" + sub + "'\n" + kCkptUsage);
}

}  // namespace lockstep::cli
