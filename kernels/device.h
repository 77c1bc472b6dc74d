// Device: where a tensor lives and an op runs (cpu, or cuda:N), and whether a usable GPU is
// present. gpu_status() never throws: on a machine with no driver it says so in `reason`.
#pragma once

#include <string>
#include <string_view>

namespace lockstep {

struct Device {
  enum class Kind { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;

  static Device cpu() { return {Kind::cpu, 0}; }
  static Device cuda(int i = 0) { return {Kind::cuda, i}; }
  bool is_cpu() const { return kind == Kind::cpu; }
  bool is_cuda() const { return kind == Kind::cuda; }
  bool operator==(const Device&) const = default;
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  // "cpu", "cuda", "cuda:N"; throws lockstep::Error naming the text otherwise.
  static Device parse(std::string_view text);
};

struct GpuStatus {
  bool available = false;
  int count = 0;
  std::string reason;  // why not available; empty when available
};

// True when lockstep was built with its CUDA backend (LOCKSTEP_CUDA found everything).
bool cuda_backend_built();
// Whether a usable CUDA GPU is present, how many, or why not. Cached after the first call.
const GpuStatus& gpu_status();

// Makes device's GPU the calling thread's current one for the scope and restores the previous
// current GPU at its end (nothing for the CPU): for work queued on another GPU's streams.
class DeviceScope {
 public:
  explicit DeviceScope(Device device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

// Lets GPU `a` access GPU `b`'s memory directly where the hardware can (cudaDeviceEnablePeerAccess,
// idempotent) and returns whether it can; true for a == b. Copies between GPUs work either way:
// without peer access the driver stages them through host memory.
bool enable_peer_access(Device a, Device b);

}  // namespace lockstep
