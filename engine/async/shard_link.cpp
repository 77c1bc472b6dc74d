// Shard placement and worker <-> shard moves: see shard_link.h.
#include "engine/async/shard_link.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "kernels/copy.h"
#include "kernels/error.h"

namespace lockstep::engine {

void ShardState::init(Context& ctx, const std::vector<float>& values, int64_t j, int64_t shards, bool with_momentum,
                      const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments) {
  const auto n = static_cast<int64_t>(values.size());
  begin = n * j / shards;
  end = n * (j + 1) / shards;
  const Device d = ctx.device();
  params = OwnedTensor(d, {size()}, DType::f32);
  lockstep::copy(ctx, host_view(values.data() + begin, size()), params);
  momentum = OwnedTensor(d, {with_momentum ? size() : 0}, DType::f32);
  zero(ctx, momentum);
  std::vector<uint32_t> segs;
  for (const auto& [b, e] : decay_segments) {
    const int64_t lo = std::max<int64_t>(b, begin), hi = std::min<int64_t>(e, end);
    if (lo >= hi) continue;
    segs.push_back(static_cast<uint32_t>(lo - begin));
    segs.push_back(static_cast<uint32_t>(hi - begin));
  }
  OwnedTensor host(Device::cpu(), {static_cast<int64_t>(segs.size() / 2), 2}, DType::u32);
  if (!segs.empty()) std::memcpy(host.view().data<uint32_t>(), segs.data(), segs.size() * sizeof(uint32_t));
  decay = OwnedTensor(d, host.shape(), DType::u32);
  lockstep::copy(ctx, host, decay);
}

ShardLinks::ShardLinks(std::vector<Device> devices) : devices_(std::move(devices)) {
  LS_CHECK(!devices_.empty(), "shard links: no devices");
  const bool gpus = devices_[0].is_cuda();
  for (const Device& d : devices_)
    LS_CHECK(d.is_cuda() == gpus, "shard links: shards all on GPUs or all in host memory, not " << d.str()
                                                                                                 << " with " << devices_[0].str());
  for (const Device& d : devices_) {
    DeviceScope scope(d);
    contexts_.push_back(std::make_unique<Context>(d, 0, ContextLibraries::streams));
    done_.push_back(std::make_unique<Event>(*contexts_.back()));
  }
  std::ostringstream peers;
  for (size_t a = 0; a < devices_.size(); ++a)
    for (size_t b = 0; b < devices_.size(); ++b) {
      if (devices_[a] == devices_[b] || !gpus) continue;
      const bool direct = enable_peer_access(devices_[a], devices_[b]);
      peers << (peers.tellp() > 0 ? ", " : "") << devices_[a].str() << "->" << devices_[b].str() << " "
            << (direct ? "direct" : "staged through host memory");
    }
  peers_ = peers.str();
}

ShardLinks::~ShardLinks() = default;

Context& ShardLinks::context_of(int shard) const { return *contexts_[static_cast<size_t>(shard) % contexts_.size()]; }

Event& ShardLinks::ready_of(Context& worker) {
  std::lock_guard<std::mutex> lock(ready_mutex_);
  std::unique_ptr<Event>& e = ready_[&worker];
  if (!e) e = std::make_unique<Event>(worker);  // on the worker's thread: its GPU is current
  return *e;
}

void ShardLinks::begin(Context& worker) {
  if (worker.is_cuda() && devices_[0].is_cuda()) ready_of(worker).record(worker, Stream::compute);
}

void ShardLinks::copy(int shard, Context& worker, const Tensor& src, Tensor& dst) {
  Context& sc = context_of(shard);
  if (!sc.is_cuda()) {
    // Host shard: the worker's own copy (synchronous on a GPU worker, after its queued work).
    lockstep::copy(worker.is_cuda() ? worker : sc, src, dst);
    return;
  }
  if (!worker.is_cuda()) {
    lockstep::copy(sc, src, dst);  // host memory to or from the GPU shard, done on return
    return;
  }
  ready_of(worker).wait(sc, Stream::compute);
  copy_peer_async(sc, src, dst);
}

void ShardLinks::end(int shard, Context& worker) {
  Context& sc = context_of(shard);
  if (!sc.is_cuda() || !worker.is_cuda()) return;  // the copies were synchronous
  Event& done = *done_[static_cast<size_t>(shard) % done_.size()];
  done.record(sc, Stream::compute);
  done.wait(worker, Stream::compute);
}

std::string ShardLinks::placement(int shards) const {
  if (!devices_[0].is_cuda()) return "host memory";
  std::ostringstream os;
  std::vector<Device> seen;
  for (size_t i = 0; i < devices_.size(); ++i) {
    if (std::find(seen.begin(), seen.end(), devices_[i]) != seen.end()) continue;
    seen.push_back(devices_[i]);
    os << (i ? ", " : "") << devices_[i].str() << " (shards";
    for (int j = 0; j < shards; ++j)
      if (device_of(j) == devices_[i]) os << " " << j;
    os << ")";
  }
  if (!peers_.empty()) os << "; peer access: " << peers_;
  return os.str();
}

}  // namespace lockstep::engine
