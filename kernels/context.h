// Context: everything an op needs to run on one device — the device, the compute / comm / copy
// streams, the cuDNN and cuBLAS handles, one workspace, and a counter-based RNG (Philox) whose
// numbers depend only on (seed, offset), never on thread timing. One Context per worker thread.
// Library handles live in CudaState (kernels/cuda/cuda_state.h) so this header needs no CUDA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/device.h"
#include "kernels/memory.h"

namespace lockstep {

struct CudaState;
class OpProfile;

// What a CUDA context sets up besides its streams: `all` (cuDNN, cuBLAS and cuBLAS's 32 MiB
// workspace) for contexts that run nets; `streams` for ones that only copy and run our own kernels
// (parameter-server shards), which then cost no library handles or workspace.
enum class ContextLibraries { all, streams };

class Context {
 public:
  // Throws lockstep::Error for a CUDA device when the backend is not built or the GPU is absent.
  explicit Context(Device device, uint64_t seed = 0, ContextLibraries libraries = ContextLibraries::all);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return device_; }
  bool is_cuda() const { return device_.is_cuda(); }

  // One scratch area shared by the ops run on this context. Plans call reserve_workspace at
  // setup; the training step only reads workspace(). Growing reallocates (and synchronizes).
  void reserve_workspace(size_t bytes);
  void* workspace() const { return workspace_.data(); }
  size_t workspace_bytes() const { return workspace_.bytes(); }

  // Philox key and a running counter: take_rng_offset(n) reserves n counter values (4 random
  // 32-bit words each) and returns the first, so every consumer draws a disjoint stream.
  uint64_t seed() const { return seed_; }
  uint64_t take_rng_offset(uint64_t n) {
    uint64_t o = rng_offset_;
    rng_offset_ += n;
    return o;
  }
  uint64_t rng_offset() const { return rng_offset_; }
  void set_rng_offset(uint64_t o) { rng_offset_ = o; }

  // Waits for all work queued on this context's streams (a no-op on CPU).
  void synchronize();
  // Makes this context's GPU the calling thread's current device (a no-op on CPU). A worker
  // thread calls it once before it runs anything.
  void make_current();

  // CUDA streams and handles; throws on a CPU context.
  CudaState& cuda() const;

  // Per-op timing (kernels/op_profile.h) while set; null (the default) times nothing.
  void set_op_profile(OpProfile* profile) { op_profile_ = profile; }
  OpProfile* op_profile() const { return op_profile_; }

 private:
  Device device_;
  uint64_t seed_;
  uint64_t rng_offset_ = 0;
  Buffer workspace_;
  std::unique_ptr<CudaState> cuda_;
  OpProfile* op_profile_ = nullptr;  // not owned
};

}  // namespace lockstep
