// cuDNN backend descriptors (cudnn_backend.h).
#include "kernels/cuda/cudnn_backend.h"

#include <algorithm>
#include <sstream>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/error.h"

namespace lockstep::cuda {

BackendDescriptor::BackendDescriptor(cudnnBackendDescriptorType_t type) {
  CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_));
}

BackendDescriptor::~BackendDescriptor() {
  if (d_) cudnnBackendDestroyDescriptor(d_);
}

BackendDescriptor& BackendDescriptor::operator=(BackendDescriptor&& o) noexcept {
  if (this != &o) {
    if (d_) cudnnBackendDestroyDescriptor(d_);
    d_ = o.d_;
    o.d_ = nullptr;
  }
  return *this;
}

void BackendDescriptor::set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
                            const void* values) {
  const cudnnStatus_t s = cudnnBackendSetAttribute(d_, name, type, count, values);
  LS_CHECK(s == CUDNN_STATUS_SUCCESS, "cuDNN refused backend attribute " << static_cast<int>(name) << ": "
                                                                          << cudnnGetErrorString(s) << " "
                                                                          << last_cudnn_error());
}

cudnnStatus_t BackendDescriptor::finalize() noexcept { return cudnnBackendFinalize(d_); }

BackendDescriptor nhwc_tensor(int64_t uid, DType dtype, int64_t n, int64_t c, int64_t h, int64_t w,
                              int64_t alignment) {
  BackendDescriptor t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  t.set_data_type(CUDNN_ATTR_TENSOR_DATA_TYPE, cudnn_data_type(dtype, "a graph tensor"));
  t.set_int64s(CUDNN_ATTR_TENSOR_DIMENSIONS, {n, c, h, w});
  t.set_int64s(CUDNN_ATTR_TENSOR_STRIDES, {h * w * c, 1, w * c, c});
  t.set_int64(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid);
  t.set_int64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, alignment);
  const cudnnStatus_t s = t.finalize();
  LS_CHECK(s == CUDNN_STATUS_SUCCESS, "cuDNN refused the tensor (" << n << ", " << c << ", " << h << ", " << w
                                                                    << ") " << dtype_name(dtype) << ": "
                                                                    << cudnnGetErrorString(s) << " "
                                                                    << last_cudnn_error());
  return t;
}

bool EngineInfo::has(cudnnBackendNumericalNote_t n) const {
  return std::find(numerical.begin(), numerical.end(), n) != numerical.end();
}
bool EngineInfo::has(cudnnBackendBehaviorNote_t b) const {
  return std::find(behavior.begin(), behavior.end(), b) != behavior.end();
}

EngineInfo engine_info(const BackendDescriptor& engine_config) {
  BackendDescriptor engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t raw = engine.get();
  int64_t n = 0;
  CUDNN_CHECK(cudnnBackendGetAttribute(engine_config.get(), CUDNN_ATTR_ENGINECFG_ENGINE,
                                       CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &raw));
  EngineInfo info;
  CUDNN_CHECK(cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n,
                                       &info.global_index));
  std::array<cudnnBackendNumericalNote_t, CUDNN_NUMERICAL_NOTE_TYPE_COUNT> notes{};
  CUDNN_CHECK(cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                       static_cast<int64_t>(notes.size()), &n, notes.data()));
  info.numerical.assign(notes.begin(), notes.begin() + std::clamp<int64_t>(n, 0, int64_t(notes.size())));
  std::array<cudnnBackendBehaviorNote_t, CUDNN_BEHAVIOR_NOTE_TYPE_COUNT> behavior{};
  CUDNN_CHECK(cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE,
                                       static_cast<int64_t>(behavior.size()), &n, behavior.data()));
  info.behavior.assign(behavior.begin(), behavior.begin() + std::clamp<int64_t>(n, 0, int64_t(behavior.size())));
  return info;
}

namespace {

std::vector<BackendDescriptor> heuristic_configs(const BackendDescriptor& op_graph, cudnnBackendHeurMode_t mode) {
  BackendDescriptor heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  heur.set_descriptor(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, op_graph);
  heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  if (heur.finalize() != CUDNN_STATUS_SUCCESS) return {};
  int64_t count = 0;
  if (cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                               nullptr) != CUDNN_STATUS_SUCCESS ||
      count <= 0)
    return {};
  std::vector<BackendDescriptor> configs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < count; ++i) {
    configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    raw.push_back(configs.back().get());
  }
  int64_t got = 0;
  if (cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                               raw.data()) != CUDNN_STATUS_SUCCESS)
    return {};
  configs.resize(static_cast<size_t>(std::clamp<int64_t>(got, 0, count)));
  return configs;
}

}  // namespace

std::vector<BackendDescriptor> engine_configs(const BackendDescriptor& op_graph) {
  std::vector<BackendDescriptor> out = heuristic_configs(op_graph, CUDNN_HEUR_MODE_A);
  std::vector<int64_t> seen;
  for (const BackendDescriptor& c : out) seen.push_back(engine_info(c).global_index);
  for (BackendDescriptor& c : heuristic_configs(op_graph, CUDNN_HEUR_MODE_FALLBACK)) {
    const int64_t e = engine_info(c).global_index;
    if (std::find(seen.begin(), seen.end(), e) != seen.end()) continue;
    seen.push_back(e);
    out.push_back(std::move(c));
  }
  return out;
}

std::string last_cudnn_error() {
  char buf[1024] = {0};
  cudnnGetLastErrorString(buf, sizeof buf);
  return buf;
}

}  // namespace lockstep::cuda
