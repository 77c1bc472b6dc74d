// Owning handles and attribute helpers for cuDNN's backend (graph) API descriptors: a tensor,
// operation, operation graph, engine configuration or execution plan is made, set, finalized and
// destroyed through one type, every call checked. The operation graphs built on it (kernels/cuda/
// conv_graph.h) keep each descriptor they reference alive for as long as their plan.
#pragma once

#include <cudnn.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace lockstep::cuda {

class BackendDescriptor {
 public:
  BackendDescriptor() = default;
  explicit BackendDescriptor(cudnnBackendDescriptorType_t type);  // throws Error when cuDNN refuses
  ~BackendDescriptor();
  BackendDescriptor(BackendDescriptor&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
  BackendDescriptor& operator=(BackendDescriptor&& o) noexcept;
  BackendDescriptor(const BackendDescriptor&) = delete;
  BackendDescriptor& operator=(const BackendDescriptor&) = delete;

  cudnnBackendDescriptor_t get() const { return d_; }
  explicit operator bool() const { return d_ != nullptr; }

  // Each throws Error naming the attribute when cuDNN refuses it.
  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count, const void* values);
  void set_int64(cudnnBackendAttributeName_t name, int64_t v) { set(name, CUDNN_TYPE_INT64, 1, &v); }
  void set_int64s(cudnnBackendAttributeName_t name, const std::vector<int64_t>& v) {
    set(name, CUDNN_TYPE_INT64, static_cast<int64_t>(v.size()), v.data());
  }
  void set_data_type(cudnnBackendAttributeName_t name, cudnnDataType_t t) { set(name, CUDNN_TYPE_DATA_TYPE, 1, &t); }
  void set_descriptor(cudnnBackendAttributeName_t name, const BackendDescriptor& d) {
    cudnnBackendDescriptor_t raw = d.get();
    set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw);
  }
  // Not thrown: a finalize that fails (an engine configuration cuDNN cannot build, say) is a
  // normal outcome for the callers, which try the next one.
  cudnnStatus_t finalize() noexcept;

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

// A tensor as the graph API describes it: dims in (N, C, H, W) order with NHWC strides (a KRSC
// filter is (K, C, R, S) with K R S C strides), its unique id and byte alignment.
BackendDescriptor nhwc_tensor(int64_t uid, DType dtype, int64_t n, int64_t c, int64_t h, int64_t w,
                              int64_t alignment = 16);

// The engine behind an engine configuration: its global index and its notes.
struct EngineInfo {
  int64_t global_index = -1;
  std::vector<cudnnBackendNumericalNote_t> numerical;
  std::vector<cudnnBackendBehaviorNote_t> behavior;
  bool has(cudnnBackendNumericalNote_t n) const;
  bool has(cudnnBackendBehaviorNote_t b) const;
};
EngineInfo engine_info(const BackendDescriptor& engine_config);

// Heuristics' engine configurations for a finalized operation graph, best first (mode A, then
// the fallback list after it for what mode A left out).
std::vector<BackendDescriptor> engine_configs(const BackendDescriptor& op_graph);

// cuDNN's last error message (cuDNN 9), or "" when it has none: why a finalize failed.
std::string last_cudnn_error();

}  // namespace lockstep::cuda
