// Model and optimizer state <-> torchvision-named safetensors: see weights.h.
#include "engine/checkpoint/weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <sstream>
#include <unordered_map>

#include "kernels/copy.h"
#include "kernels/half.h"

namespace lockstep::engine {

namespace {

constexpr std::string_view kTracked = ".num_batches_tracked";

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::vector<int64_t> dims(const Shape& s) {
  std::vector<int64_t> d;
  for (int i = 0; i < s.rank(); ++i) d.push_back(s[i]);
  return d;
}

// What one state_dict name refers to in the model's tables.
struct Slot {
  enum class Kind { param, buffer, tracked } kind;
  int index = -1;  // into specs() or buffer_specs()
};

std::unordered_map<std::string, Slot> slots_of(const nets::Model& model) {
  std::unordered_map<std::string, Slot> out;
  const nets::ParamTable& t = model.params();
  for (size_t i = 0; i < t.specs().size(); ++i) out[t.specs()[i].name] = {Slot::Kind::param, static_cast<int>(i)};
  for (size_t i = 0; i < t.buffer_specs().size(); ++i)
    out[t.buffer_specs()[i].name] = {Slot::Kind::buffer, static_cast<int>(i)};
  for (const std::string& n : model.state_dict_names())
    if (ends_with(n, kTracked)) out[n] = {Slot::Kind::tracked, -1};
  return out;
}

// Reads a float tensor of `numel` elements as f32, whatever float dtype the file stores.
void read_floats(const SafetensorsFile& f, const TensorInfo& info, float* dst) {
  const std::span<const std::byte> raw = f.data(info);
  const uint64_t n = info.numel();
  if (info.dtype == "F32") {
    std::memcpy(dst, raw.data(), n * 4);
    return;
  }
  for (uint64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, raw.data() + 2 * i, 2);
    dst[i] = info.dtype == "BF16" ? f32_from_bf16(h) : f32_from_f16(h);
  }
}

void check_float_dtype(const SafetensorsFile& f, const TensorInfo& info) {
  if (info.dtype != "F32" && info.dtype != "F16" && info.dtype != "BF16")
    throw SafetensorsError(f.name(), "tensor '" + info.name + "'", "dtype " + info.dtype + " is not F32, F16 or BF16");
}

void check_finite(const SafetensorsFile& f, const std::string& name, const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i]))
      throw SafetensorsError(f.name(), "tensor '" + name + "'", "element " + std::to_string(i) + " is not finite");
}

void check_shape(const SafetensorsFile& f, const TensorInfo& info, const std::vector<int64_t>& want) {
  if (info.shape != want)
    throw SafetensorsError(f.name(), "tensor '" + info.name + "'",
                           "shape " + shape_text(info.shape) + " in the file, the model's is " + shape_text(want));
}

}  // namespace

namespace {
// Copies one parameter between lockstep's layout and torchvision's: conv weights are transposed
// (K, R, S, C) <-> (K, C, R, S), everything else is the same in both.
void convert_layout(const nets::ParamSpec& spec, const float* src, float* dst, bool to_torch) {
  if (spec.kind != nets::ParamKind::conv_weight) {
    std::memcpy(dst, src, static_cast<size_t>(spec.numel()) * sizeof(float));
    return;
  }
  const int64_t K = spec.shape[0], R = spec.shape[1], S = spec.shape[2], C = spec.shape[3];
  for (int64_t k = 0; k < K; ++k)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t s = 0; s < S; ++s)
        for (int64_t c = 0; c < C; ++c) {
          const int64_t ours = ((k * R + r) * S + s) * C + c, torch = ((k * C + c) * R + r) * S + s;
          if (to_torch) dst[torch] = src[ours];
          else dst[ours] = src[torch];
        }
}
}  // namespace

void to_torch_layout(const nets::ParamSpec& spec, const float* src, float* dst) { convert_layout(spec, src, dst, true); }
void from_torch_layout(const nets::ParamSpec& spec, const float* src, float* dst) {
  convert_layout(spec, src, dst, false);
}

std::vector<float> host_copy(Context& ctx, const Tensor& t) {
  LS_CHECK(t.dtype() == DType::f32, "host_copy: f32 only, got " << t.str());
  std::vector<float> out(static_cast<size_t>(t.numel()));
  Tensor host(out.data(), Shape{t.numel()}, DType::f32, Device::cpu());
  copy(ctx, t.reshape(Shape{t.numel()}), host);
  return out;
}

void copy_from_host(Context& ctx, std::vector<float>& host, Tensor& dst) {
  LS_CHECK(static_cast<int64_t>(host.size()) == dst.numel(),
           "copy_from_host: " << host.size() << " values for a tensor of " << dst.numel());
  Tensor h(host.data(), Shape{dst.numel()}, DType::f32, Device::cpu());
  copy(ctx, h, dst);
}

HostTensors param_state(const nets::ParamTable& table, const std::vector<float>& flat, const std::string& prefix) {
  LS_CHECK(static_cast<int64_t>(flat.size()) == table.count(),
           "param_state: " << flat.size() << " values for " << table.count() << " parameters");
  HostTensors out;
  out.storage.reserve(table.specs().size());
  for (const nets::ParamSpec& s : table.specs()) {
    std::vector<float>& v = out.storage.emplace_back(static_cast<size_t>(s.numel()));
    to_torch_layout(s, flat.data() + s.offset, v.data());
    out.entries.push_back({prefix + s.name, "F32", dims(s.torch_shape), v.data(), v.size() * sizeof(float)});
  }
  return out;
}

HostTensors model_state(nets::Model& model, Context& ctx, int64_t bn_batches) {
  nets::ParamTable& t = model.params();
  const std::vector<float> params = host_copy(ctx, t.params());
  const std::vector<float> buffers = host_copy(ctx, t.buffers());
  const auto slots = slots_of(model);
  const std::vector<std::string> names = model.state_dict_names();
  HostTensors out;
  out.storage.reserve(names.size());  // entries point into storage: no reallocation
  out.counts.reserve(names.size());
  for (const std::string& n : names) {
    const Slot& sl = slots.at(n);
    if (sl.kind == Slot::Kind::tracked) {
      out.counts.push_back(bn_batches);
      out.entries.push_back({n, "I64", {}, &out.counts.back(), sizeof(int64_t)});
    } else if (sl.kind == Slot::Kind::param) {
      const nets::ParamSpec& s = t.specs()[sl.index];
      std::vector<float>& v = out.storage.emplace_back(static_cast<size_t>(s.numel()));
      to_torch_layout(s, params.data() + s.offset, v.data());
      out.entries.push_back({n, "F32", dims(s.torch_shape), v.data(), v.size() * sizeof(float)});
    } else {
      const nets::BufferSpec& b = t.buffer_specs()[sl.index];
      std::vector<float>& v = out.storage.emplace_back(buffers.begin() + b.offset, buffers.begin() + b.offset + b.numel);
      out.entries.push_back({n, "F32", {b.numel}, v.data(), v.size() * sizeof(float)});
    }
  }
  return out;
}

void save_model_weights(nets::Model& model, Context& ctx, const std::filesystem::path& path, int64_t bn_batches,
                        const std::map<std::string, std::string>& metadata) {
  HostTensors s = model_state(model, ctx, bn_batches);
  write_safetensors(path, s.entries, metadata);
}

WeightsLoadReport load_model_weights(nets::Model& model, Context& ctx, const SafetensorsFile& f,
                                     const WeightsLoadOptions& options) {
  nets::ParamTable& t = model.params();
  const auto slots = slots_of(model);
  WeightsLoadReport report;

  // Fine-tuning with another class count: fc keeps its initialisation.
  bool skip_fc = false;
  if (options.reinit_fc_on_class_mismatch) {
    const TensorInfo* fw = f.find("fc.weight");
    for (const nets::ParamSpec& s : t.specs())
      if (s.name == "fc.weight" && fw && fw->shape.size() == 2 && fw->shape[1] == s.torch_shape[1] &&
          fw->shape[0] != s.torch_shape[0])
        skip_fc = true;
  }
  auto skipped = [&](const std::string& n) { return skip_fc && (n == "fc.weight" || n == "fc.bias"); };

  // Everything is checked before anything changes.
  for (const TensorInfo& info : f.tensors()) {
    auto it = slots.find(info.name);
    if (it == slots.end())
      throw SafetensorsError(f.name(), "tensor '" + info.name + "'",
                             "not in " + model.options().arch + "'s state_dict (a file for another network?)");
    if (it->second.kind == Slot::Kind::tracked) {
      if ((info.dtype != "I64" && info.dtype != "I32") || info.numel() != 1)
        throw SafetensorsError(f.name(), "tensor '" + info.name + "'", "must be one I64 (or I32) value");
      continue;
    }
    if (skipped(info.name)) continue;
    check_float_dtype(f, info);
    if (it->second.kind == Slot::Kind::param)
      check_shape(f, info, dims(t.specs()[it->second.index].torch_shape));
    else
      check_shape(f, info, {t.buffer_specs()[it->second.index].numel});
  }
  for (const auto& [name, slot] : slots)
    if (slot.kind != Slot::Kind::tracked && !f.find(name))
      throw SafetensorsError(f.name(), "tensor '" + name + "'", "missing (" + model.options().arch + " needs it)");

  std::vector<float> params = host_copy(ctx, t.params());
  std::vector<float> buffers = host_copy(ctx, t.buffers());
  std::vector<float> tmp;
  for (const TensorInfo& info : f.tensors()) {
    const Slot& sl = slots.at(info.name);
    if (sl.kind == Slot::Kind::tracked) {
      if (report.bn_batches < 0) {
        const std::span<const std::byte> raw = f.data(info);
        if (info.dtype == "I64") {
          std::memcpy(&report.bn_batches, raw.data(), 8);
        } else {
          int32_t v;
          std::memcpy(&v, raw.data(), 4);
          report.bn_batches = v;
        }
      }
      continue;
    }
    if (skipped(info.name)) {
      report.reinitialised.push_back(info.name);
      continue;
    }
    tmp.resize(info.numel());
    read_floats(f, info, tmp.data());
    check_finite(f, info.name, tmp.data(), static_cast<int64_t>(tmp.size()));
    if (sl.kind == Slot::Kind::param) {
      const nets::ParamSpec& s = t.specs()[sl.index];
      from_torch_layout(s, tmp.data(), params.data() + s.offset);
    } else {
      std::memcpy(buffers.data() + t.buffer_specs()[sl.index].offset, tmp.data(), tmp.size() * sizeof(float));
    }
  }
  copy_from_host(ctx, params, t.params());
  copy_from_host(ctx, buffers, t.buffers());
  model.parameters_updated(ctx);
  return report;
}

std::vector<float> read_param_state(const nets::ParamTable& table, const SafetensorsFile& f, const std::string& prefix) {
  std::unordered_map<std::string, const nets::ParamSpec*> by_name;
  for (const nets::ParamSpec& s : table.specs()) by_name[prefix + s.name] = &s;
  for (const TensorInfo& info : f.tensors()) {
    if (info.name.rfind(prefix, 0) != 0) continue;
    auto it = by_name.find(info.name);
    if (it == by_name.end()) continue;  // other state kept beside (a moving average, another rank's)
    check_float_dtype(f, info);
    check_shape(f, info, dims(it->second->torch_shape));
  }
  std::vector<float> flat(static_cast<size_t>(table.count())), tmp;
  for (const nets::ParamSpec& s : table.specs()) {
    const TensorInfo* info = f.find(prefix + s.name);
    if (!info) throw SafetensorsError(f.name(), "tensor '" + prefix + s.name + "'", "missing");
    tmp.resize(info->numel());
    read_floats(f, *info, tmp.data());
    check_finite(f, info->name, tmp.data(), static_cast<int64_t>(tmp.size()));
    from_torch_layout(s, tmp.data(), flat.data() + s.offset);
  }
  return flat;
}

HostTensors buffer_state(const nets::ParamTable& table, const std::vector<float>& flat, const std::string& prefix) {
  HostTensors out;
  out.storage.reserve(table.buffer_specs().size());
  for (const nets::BufferSpec& b : table.buffer_specs()) {
    std::vector<float>& v = out.storage.emplace_back(flat.begin() + b.offset, flat.begin() + b.offset + b.numel);
    out.entries.push_back({prefix + b.name, "F32", {b.numel}, v.data(), v.size() * sizeof(float)});
  }
  return out;
}

std::vector<float> read_buffer_state(const nets::ParamTable& table, const SafetensorsFile& f, const std::string& prefix) {
  int64_t total = 0;
  for (const nets::BufferSpec& b : table.buffer_specs()) total = std::max(total, b.offset + b.numel);
  std::vector<float> flat(static_cast<size_t>(total));
  for (const nets::BufferSpec& b : table.buffer_specs()) {
    const TensorInfo* info = f.find(prefix + b.name);
    if (!info) throw SafetensorsError(f.name(), "tensor '" + prefix + b.name + "'", "missing");
    check_float_dtype(f, *info);
    check_shape(f, *info, {b.numel});
    read_floats(f, *info, flat.data() + b.offset);
    check_finite(f, info->name, flat.data() + b.offset, b.numel);
  }
  return flat;
}

}  // namespace lockstep::engine
