// Model and per-parameter optimizer state <-> torchvision-named safetensors (ARCHITECTURE
// decision 10). A model file holds torchvision's state_dict in its order: every parameter and BN
// running statistic as F32 in torchvision's layout (conv weights (K, C, R, S); lockstep keeps
// (K, R, S, C) and converts here, at the boundary) and each BN's num_batches_tracked as an I64
// scalar, so `torchvision.models.resnetXX().load_state_dict(...)` accepts it, and a file saved
// from torchvision (F32, F16 or BF16) loads here. Loading checks every name and shape before any
// value changes: a file that does not fit is refused whole, naming the file and the tensor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "engine/checkpoint/safetensors.h"
#include "nets/resnet.h"

namespace lockstep::engine {

// Host-side tensors ready for write_safetensors: `entries` point into `storage`.
struct HostTensors {
  std::vector<TensorEntry> entries;
  std::vector<std::vector<float>> storage;
  std::vector<int64_t> counts;  // the I64 scalars (num_batches_tracked)
  HostTensors() = default;
  HostTensors(const HostTensors&) = delete;  // entries point into storage
  HostTensors& operator=(const HostTensors&) = delete;
  HostTensors(HostTensors&&) = default;
  HostTensors& operator=(HostTensors&&) = default;
};

// A device (or host) f32 tensor copied to host memory, and host values copied into one (the
// element counts must agree).
std::vector<float> host_copy(Context& ctx, const Tensor& t);
void copy_from_host(Context& ctx, std::vector<float>& host, Tensor& dst);

// The model's state_dict: parameters and running statistics from the device, converted to
// torchvision's layout; num_batches_tracked = `bn_batches` for every BN (the training
// micro-batches run so far, as PyTorch counts them).
HostTensors model_state(nets::Model& model, Context& ctx, int64_t bn_batches);
// One tensor per parameter from a flat (P) f32 buffer in the table's layout (momentum, ...),
// named prefix + parameter name, in torchvision's layout and state_dict order.
HostTensors param_state(const nets::ParamTable& table, const std::vector<float>& flat, const std::string& prefix = "");

// Writes model_state() to `path` (fsync'd; see write_safetensors).
void save_model_weights(nets::Model& model, Context& ctx, const std::filesystem::path& path, int64_t bn_batches,
                        const std::map<std::string, std::string>& metadata = {});

struct WeightsLoadOptions {
  // Fine-tuning: when the file's fc layer has another class count, keep the model's freshly
  // initialised fc instead of refusing the file.
  bool reinit_fc_on_class_mismatch = false;
};

struct WeightsLoadReport {
  std::vector<std::string> reinitialised;  // tensors kept at their initial values (fc.*)
  int64_t bn_batches = -1;                 // num_batches_tracked of the first BN; -1 when absent
};

// Loads a torchvision-named state_dict into the model (every replica calls it with its own ctx).
// Refused with SafetensorsError naming the file and tensor: a missing parameter or statistic, an
// unexpected name, a shape other than torchvision's for this model (both shapes named), a dtype
// other than F32/F16/BF16 (I64/I32 for num_batches_tracked), a non-finite value. Nothing changes
// unless everything fits.
WeightsLoadReport load_model_weights(nets::Model& model, Context& ctx, const SafetensorsFile& file,
                                     const WeightsLoadOptions& options = {});

// Reads a flat (P) f32 buffer in the table's layout from tensors named prefix + parameter name
// (torchvision's layout): the inverse of param_state. Every parameter must be present with its
// shape; other tensors (other prefixes, BN statistics, a moving average) are ignored.
std::vector<float> read_param_state(const nets::ParamTable& table, const SafetensorsFile& file,
                                    const std::string& prefix = "");

// The same for the BN running statistics (a flat (B) buffer): prefix + buffer name, (numel).
HostTensors buffer_state(const nets::ParamTable& table, const std::vector<float>& flat, const std::string& prefix);
std::vector<float> read_buffer_state(const nets::ParamTable& table, const SafetensorsFile& file,
                                     const std::string& prefix);

// Conversions between lockstep's conv layout (K, R, S, C) and torchvision's (K, C, R, S) for one
// parameter (identity for other kinds). n = spec.numel() elements each.
void to_torch_layout(const nets::ParamSpec& spec, const float* src, float* dst);
void from_torch_layout(const nets::ParamSpec& spec, const float* src, float* dst);

}  // namespace lockstep::engine
