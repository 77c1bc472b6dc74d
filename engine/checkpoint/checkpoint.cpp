// Checkpoint directories: see checkpoint.h.
#include "engine/checkpoint/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>
#include <system_error>

#include "engine/checkpoint/sha256.h"
#include "engine/config.h"

namespace lockstep::engine {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kWorkersFile = "workers.safetensors";
constexpr const char* kStateFile = "state.json";
constexpr const char* kLatest = "latest";

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Reads field `key` of `j` as T, or throws naming the file and the field.
template <typename T>
T field(const json& j, const std::string& key, const std::string& file, const std::string& where = "") {
  const std::string name = where.empty() ? key : where + "." + key;
  if (!j.is_object() || !j.contains(key)) throw CheckpointError(file + ": field '" + name + "' is missing");
  const json& v = j.at(key);
  try {
    if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) throw json::type_error::create(302, "not a boolean", &v);
    } else if constexpr (std::is_integral_v<T>) {
      if (!v.is_number_integer()) throw json::type_error::create(302, "not an integer", &v);
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number()) throw json::type_error::create(302, "not a number", &v);
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!v.is_string()) throw json::type_error::create(302, "not a string", &v);
    }
    return v.get<T>();
  } catch (const json::exception&) {
    throw CheckpointError(file + ": field '" + name + "' has the wrong type (" + v.dump() + ")");
  }
}

std::vector<std::byte> serialize(const HostTensors& t, const std::map<std::string, std::string>& meta,
                                 const std::string& name) {
  return serialize_safetensors(t.entries, meta, name);
}

}  // namespace

json CheckpointState::to_json() const {
  json w = json::array();
  for (const WorkerCheckpoint& k : workers)
    w.push_back({{"rng_offset", k.rng_offset},
                 {"pending_loss_sum", k.loss_sum},
                 {"pending_top1", k.top1},
                 {"pending_top5", k.top5},
                 {"pending_samples", k.samples}});
  return {{"format", format},
          {"lockstep_version", lockstep_version},
          {"created", created},
          {"update", update},
          {"epoch", epoch},
          {"epoch_step", epoch_step},
          {"samples_seen", samples_seen},
          {"bn_batches", bn_batches},
          {"finished", finished},
          {"loader", {{"epoch", loader_epoch}, {"position", loader_position}, {"updates_per_epoch", updates_per_epoch}}},
          {"world_size", world},
          {"batch_size", batch_size},
          {"accumulate", accumulate},
          {"sync", sync},
          {"rng", {{"seed", seed}, {"workers", w}}},
          {"lr", {{"last", lr}, {"update", update}}},
          {"loss_scaler", {{"enabled", scaler_enabled}, {"scale", scaler_scale}, {"clean_steps", scaler_clean},
                           {"skipped", scaler_skipped}}},
          {"sign", {{"updates", sign_updates}}},
          {"metrics", metrics},
          {"config", config}};
}

CheckpointState CheckpointState::from_json(const json& j, const std::string& file) {
  if (!j.is_object()) throw CheckpointError(file + ": not a JSON object");
  CheckpointState s;
  s.format = field<int>(j, "format", file);
  if (s.format != kCheckpointFormat)
    throw CheckpointError(file + ": field 'format' is " + std::to_string(s.format) + ", this lockstep reads " +
                          std::to_string(kCheckpointFormat));
  s.lockstep_version = field<std::string>(j, "lockstep_version", file);
  s.created = field<std::string>(j, "created", file);
  s.update = field<int64_t>(j, "update", file);
  s.epoch = field<int>(j, "epoch", file);
  s.epoch_step = field<int64_t>(j, "epoch_step", file);
  s.samples_seen = field<int64_t>(j, "samples_seen", file);
  s.bn_batches = field<int64_t>(j, "bn_batches", file);
  s.finished = field<bool>(j, "finished", file);
  const json& loader = j.contains("loader") ? j.at("loader") : json();
  s.loader_epoch = field<int64_t>(loader, "epoch", file, "loader");
  s.loader_position = field<int64_t>(loader, "position", file, "loader");
  if (loader.contains("updates_per_epoch"))  // written since 2026-11-26
    s.updates_per_epoch = field<int64_t>(loader, "updates_per_epoch", file, "loader");
  s.world = field<int>(j, "world_size", file);
  s.batch_size = field<int>(j, "batch_size", file);
  s.accumulate = field<int>(j, "accumulate", file);
  s.sync = field<std::string>(j, "sync", file);
  const json& rng = j.contains("rng") ? j.at("rng") : json();
  s.seed = field<uint64_t>(rng, "seed", file, "rng");
  if (!rng.contains("workers") || !rng.at("workers").is_array())
    throw CheckpointError(file + ": field 'rng.workers' is missing or not an array");
  for (const json& w : rng.at("workers")) {
    WorkerCheckpoint k;
    k.rng_offset = field<uint64_t>(w, "rng_offset", file, "rng.workers[]");
    k.loss_sum = field<double>(w, "pending_loss_sum", file, "rng.workers[]");
    k.top1 = field<double>(w, "pending_top1", file, "rng.workers[]");
    k.top5 = field<double>(w, "pending_top5", file, "rng.workers[]");
    k.samples = field<int64_t>(w, "pending_samples", file, "rng.workers[]");
    s.workers.push_back(k);
  }
  const json& lr = j.contains("lr") ? j.at("lr") : json();
  s.lr = field<float>(lr, "last", file, "lr");
  const json& ls = j.contains("loss_scaler") ? j.at("loss_scaler") : json();
  s.scaler_enabled = field<bool>(ls, "enabled", file, "loss_scaler");
  s.scaler_scale = field<float>(ls, "scale", file, "loss_scaler");
  s.scaler_clean = field<int>(ls, "clean_steps", file, "loss_scaler");
  s.scaler_skipped = field<int64_t>(ls, "skipped", file, "loss_scaler");
  const json& sg = j.contains("sign") ? j.at("sign") : json();
  s.sign_updates = field<int64_t>(sg, "updates", file, "sign");
  if (!j.contains("config") || !j.at("config").is_object())
    throw CheckpointError(file + ": field 'config' is missing or not an object");
  s.config = j.at("config");
  try {  // a config that would not read refuses the checkpoint here, for every reader alike
    (void)TrainConfig::from_json(s.config);
  } catch (const Error& e) {
    throw CheckpointError(file + ": " + e.what());
  }
  if (j.contains("metrics")) s.metrics = j.at("metrics");
  if (s.world < 1 || static_cast<int>(s.workers.size()) != s.world)
    throw CheckpointError(file + ": field 'rng.workers' has " + std::to_string(s.workers.size()) +
                          " entries for world_size " + std::to_string(s.world));
  if (s.update < 0 || s.epoch < 1 || s.epoch_step < 0 || s.loader_position < 0 || s.batch_size < 1 || s.accumulate < 1)
    throw CheckpointError(file + ": a position field is out of range (update " + std::to_string(s.update) +
                          ", epoch " + std::to_string(s.epoch) + ", epoch_step " + std::to_string(s.epoch_step) + ")");
  return s;
}

std::string checkpoint_name(int64_t update) { return "step-" + std::to_string(update); }

std::optional<int64_t> checkpoint_step(std::string_view name) {
  constexpr std::string_view prefix = "step-";
  if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) return std::nullopt;
  int64_t v = 0;
  const char* b = name.data() + prefix.size();
  const char* e = name.data() + name.size();
  auto [p, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || p != e || v < 0 || (*b == '0' && e - b > 1)) return std::nullopt;
  return v;
}

fs::path checkpoints_dir(const fs::path& run_dir) { return run_dir / "checkpoints"; }

fs::path run_dir_of(const fs::path& checkpoint_dir) {
  fs::path d = checkpoint_dir.lexically_normal();
  if (!d.has_filename()) d = d.parent_path();  // a trailing slash
  return d.parent_path().parent_path();
}

namespace {

// The first NaN or infinite value of `c` (see write_checkpoint), or nullopt.
std::optional<std::string> non_finite_value(const CheckpointContents& c) {
  auto what = [](double v) { return std::string(std::isnan(v) ? "NaN" : "infinite"); };
  for (const auto& [file, t] : {std::pair<const char*, const HostTensors*>{kModelFile, &c.model},
                                {kOptimizerFile, &c.optimizer}, {kWorkersFile, &c.workers}})
    for (const TensorEntry& e : t->entries) {
      if (e.dtype != "F32") continue;
      const auto* v = static_cast<const float*>(e.data);
      for (size_t i = 0; i < e.bytes / sizeof(float); ++i)
        if (!std::isfinite(v[i]))
          return std::string(file) + " tensor '" + e.name + "' element " + std::to_string(i) + " is " + what(v[i]);
    }
  const CheckpointState& st = c.state;
  for (size_t k = 0; k < st.workers.size(); ++k)
    for (const auto& [field, v] : {std::pair<const char*, double>{"loss_sum", st.workers[k].loss_sum},
                                   {"top1", st.workers[k].top1}, {"top5", st.workers[k].top5}})
      if (!std::isfinite(v))
        return std::string(kStateFile) + " workers[" + std::to_string(k) + "]." + field + " is " + what(v);
  for (const auto& [field, v] : {std::pair<const char*, double>{"lr", st.lr}, {"scaler_scale", st.scaler_scale}})
    if (!std::isfinite(v)) return std::string(kStateFile) + " " + field + " is " + what(v);
  return std::nullopt;
}

}  // namespace

fs::path write_checkpoint(const fs::path& run_dir, CheckpointContents& c, const StageHook& hook) {
  if (const auto bad = non_finite_value(c))
    throw NonFiniteCheckpoint(*bad);
  const fs::path parent = checkpoints_dir(run_dir);
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw IoError("mkdir", parent, ec.value());
  clean_stale_temporaries(parent);

  CheckpointState& st = c.state;
  st.created = utc_now();
  const std::string name = checkpoint_name(st.update);
  AtomicDir dir(parent, name, hook);
  json files = json::object();
  auto put = [&](const char* file, const HostTensors& t, const std::map<std::string, std::string>& meta) {
    std::vector<std::byte> bytes = serialize(t, meta, (parent / name / file).string());
    files[file] = {{"sha256", sha256_hex(bytes)}, {"bytes", bytes.size()}};
    dir.write_file(file, bytes);
  };
  const std::map<std::string, std::string> common{{"format", "lockstep"}, {"step", std::to_string(st.update)}};
  auto meta = [&](const char* content) {
    auto m = common;
    m["content"] = content;
    return m;
  };
  auto model_meta = meta("model");
  model_meta.insert(c.model_meta.begin(), c.model_meta.end());
  put(kModelFile, c.model, model_meta);
  put(kOptimizerFile, c.optimizer, meta(st.sync == "sign" ? "signum momentum per worker" : "momentum"));
  if (!c.workers.entries.empty()) put(kWorkersFile, c.workers, meta("per-worker BN statistics"));
  json j = st.to_json();
  j["files"] = files;
  dir.write_file(kStateFile, j.dump(2) + "\n");
  const fs::path final_dir = dir.commit(AtomicDir::Existing::replace);

  const StageHook latest_hook = [&](const char* stage) {
    if (hook) hook(("latest-" + std::string(stage)).c_str());
  };
  atomic_write_file(parent / kLatest, name + "\n", latest_hook);
  return final_dir;
}

LoadedCheckpoint open_checkpoint(const fs::path& dir) {
  const fs::path state_path = dir / kStateFile;
  if (!fs::is_directory(dir)) throw CheckpointError(dir.string() + ": not a checkpoint directory");
  if (!fs::exists(state_path)) throw CheckpointError(state_path.string() + ": missing (not a checkpoint directory?)");
  const std::vector<std::byte> raw = read_file(state_path);
  json j = json::parse(reinterpret_cast<const char*>(raw.data()), reinterpret_cast<const char*>(raw.data()) + raw.size(),
                       nullptr, false);
  if (j.is_discarded()) throw CheckpointError(state_path.string() + ": not valid JSON");
  CheckpointState st = CheckpointState::from_json(j, state_path.string());
  if (!j.contains("files") || !j.at("files").is_object())
    throw CheckpointError(state_path.string() + ": field 'files' is missing");
  const json& files = j.at("files");
  auto verified = [&](const char* file) {
    if (!files.contains(file)) throw CheckpointError(state_path.string() + ": field 'files." + file + "' is missing");
    const json& f = files.at(file);
    const std::string want = field<std::string>(f, "sha256", state_path.string(), std::string("files.") + file);
    const uint64_t bytes = field<uint64_t>(f, "bytes", state_path.string(), std::string("files.") + file);
    const fs::path p = dir / file;
    if (!fs::exists(p)) throw CheckpointError(p.string() + ": missing (state.json lists it)");
    std::vector<std::byte> data = read_file(p);
    if (data.size() != bytes)
      throw CheckpointError(p.string() + ": " + std::to_string(data.size()) + " bytes, state.json says " +
                            std::to_string(bytes) + " (truncated or replaced)");
    if (sha256_hex(data) != want)
      throw CheckpointError(p.string() + ": SHA-256 differs from state.json's (the file is corrupt)");
    return SafetensorsFile::parse(std::move(data), p.string());
  };
  LoadedCheckpoint out{dir, std::move(st), verified(kModelFile), verified(kOptimizerFile), std::nullopt};
  if (files.contains(kWorkersFile)) out.workers = verified(kWorkersFile);
  else if (out.state.world > 1)
    throw CheckpointError(state_path.string() + ": field 'files." + kWorkersFile + "' is missing (world_size " +
                          std::to_string(out.state.world) + " needs the other workers' BN statistics)");
  return out;
}

std::vector<fs::path> list_checkpoints(const fs::path& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  const fs::path parent = checkpoints_dir(run_dir);
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) return {};
  for (const fs::directory_entry& e : fs::directory_iterator(parent, ec))
    if (auto n = checkpoint_step(e.path().filename().string()); n && e.is_directory()) found.emplace_back(*n, e.path());
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

LatestPointer read_latest(const fs::path& run_dir) {
  const fs::path latest = checkpoints_dir(run_dir) / kLatest;
  std::error_code ec;
  if (!fs::exists(latest, ec)) return {"", "missing"};
  try {
    const std::vector<std::byte> raw = read_file(latest);
    std::string name(reinterpret_cast<const char*>(raw.data()), raw.size());
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (checkpoint_step(name)) return {name, ""};
    return {"", "'" + name + "' does not name a checkpoint"};
  } catch (const Error& e) {
    return {"", e.what()};
  }
}

LoadedCheckpoint resolve_checkpoint(const fs::path& path, std::vector<std::string>* warnings) {
  if (fs::exists(path / kStateFile)) return open_checkpoint(path);
  if (!fs::is_directory(path)) throw CheckpointError(path.string() + ": no such run or checkpoint directory");
  const fs::path parent = checkpoints_dir(path);
  std::vector<fs::path> candidates;
  const LatestPointer latest = read_latest(path);
  if (!latest.name.empty()) candidates.push_back(parent / latest.name);
  else if (warnings && latest.problem != "missing")
    warnings->push_back((parent / kLatest).string() + ": " + latest.problem + "; taking the newest valid checkpoint");
  for (const fs::path& p : list_checkpoints(path))
    if (std::find(candidates.begin(), candidates.end(), p) == candidates.end()) candidates.push_back(p);
  if (candidates.empty()) throw CheckpointError(path.string() + ": no checkpoints in " + parent.string());
  std::string last_error;
  for (const fs::path& c : candidates) {
    try {
      return open_checkpoint(c);
    } catch (const Error& e) {
      last_error = e.what();
      if (warnings) warnings->push_back("checkpoint " + c.string() + " is unusable, trying an older one: " + e.what());
    }
  }
  throw CheckpointError(path.string() + ": no valid checkpoint (the last tried: " + last_error + ")");
}

std::vector<fs::path> prune_checkpoints(const fs::path& run_dir, int keep_last, const fs::path& keep) {
  std::vector<fs::path> removed;
  if (keep_last <= 0) return removed;
  // `keep` takes one of the places wherever it sorts; the newest others take the rest.
  int others = keep_last - 1;
  for (const fs::path& p : list_checkpoints(run_dir)) {
    if (p.filename() == keep.filename()) continue;
    if (others > 0) {
      --others;
      continue;
    }
    std::error_code ec;
    fs::remove_all(p, ec);
    if (ec) throw IoError("remove", p, ec.value());
    removed.push_back(p);
  }
  return removed;
}

}  // namespace lockstep::engine
