// ShardLinks: where the shards of an in-process server live (the parameter server of --sync async,
// engine/async/parameter_server.h) and the moves between them and the workers. Shard j lives on
// devices[j % D]: host memory for CPU workers, the workers' own GPUs for GPU workers, so each GPU
// holds and updates its share. Each device has one streams-only Context (no cuDNN, cuBLAS or
// cuBLAS workspace: shards copy and run our own update kernels) whose compute stream runs the
// work on its shards. A move between a GPU worker's tensor and a GPU shard is queued on the shard's
// stream after the point the worker's queued work had reached at begin(), and the worker's later
// work waits for the shard's at end(): events, no host wait. Between two GPUs it is a peer copy
// (peer access is enabled where the hardware has it; elsewhere the driver stages it through host
// memory). Host memory on either side makes the move an ordinary synchronous copy.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kernels/context.h"
#include "kernels/device.h"
#include "kernels/event.h"
#include "kernels/memory.h"
#include "kernels/tensor.h"

namespace lockstep::engine {

// n floats of host memory as an f32 tensor (the servers' host-pointer read / push and checkpoints).
inline Tensor host_view(const float* p, int64_t n) {
  return Tensor(const_cast<float*>(p), Shape{n}, DType::f32, Device::cpu());
}

// What every server shard holds: its range [begin, end) of the flat parameter vector and, on its
// device, those parameters, their momentum (empty without momentum) and the weight-decay segments
// inside the range, relative to begin (the u32 (S, 2) tensor sgd_update takes).
struct ShardState {
  int64_t begin = 0, end = 0;
  OwnedTensor params, momentum, decay;
  int64_t size() const { return end - begin; }
  // Shard j of `shards` over `init`, made on ctx (its device current).
  void init(Context& ctx, const std::vector<float>& init, int64_t j, int64_t shards, bool with_momentum,
            const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments);
};

class ShardLinks {
 public:
  explicit ShardLinks(std::vector<Device> devices);
  ~ShardLinks();

  Device device_of(int shard) const { return devices_[static_cast<size_t>(shard) % devices_.size()]; }
  // The context that runs work on the shard's memory (make its device current: DeviceScope).
  Context& context_of(int shard) const;

  // Shards 0 .. count-1 of `init` (S is a ShardState), each made on its device, which is current
  // meanwhile; finish(shard, ctx, device) then adds its owner's own state.
  template <typename S, typename F>
  std::vector<std::unique_ptr<S>> make_shards(int64_t count, const std::vector<float>& init, bool with_momentum,
                                              const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments,
                                              F&& finish) const {
    std::vector<std::unique_ptr<S>> out;
    for (int64_t j = 0; j < count; ++j) {
      auto s = std::make_unique<S>();
      const Device d = device_of(static_cast<int>(j));
      Context& ctx = context_of(static_cast<int>(j));
      DeviceScope scope(d);
      s->init(ctx, init, j, count, with_momentum, decay_segments);
      finish(*s, ctx, d);
      out.push_back(std::move(s));
    }
    return out;
  }

  // A worker's exchange with the shards: begin() once, then copy() per shard (the caller holds
  // the shard's lock and a DeviceScope of its device), then end() per shard after the shard's
  // own work (inside the same scope). Any worker thread; one exchange per worker at a time.
  void begin(Context& worker);
  void copy(int shard, Context& worker, const Tensor& src, Tensor& dst);
  void end(int shard, Context& worker);

  // "host memory", or "cuda:0 (shards 0, 2), cuda:1 (shards 1, 3); peer access: ..." for `shards`.
  std::string placement(int shards) const;

 private:
  Event& ready_of(Context& worker);

  std::vector<Device> devices_;
  std::vector<std::unique_ptr<Context>> contexts_;     // one per device
  std::vector<std::unique_ptr<Event>> done_;          // per device: its shards' last queued work
  std::map<const Context*, std::unique_ptr<Event>> ready_;  // per worker context
  std::mutex ready_mutex_;
  std::string peers_;  // what enabling peer access found
};

}  // namespace lockstep::engine
