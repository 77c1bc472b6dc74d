// Backup workers' aggregator: see backup_aggregator.h.
#include "engine/async/backup_aggregator.h"

#include <algorithm>
#include <cstring>

#include "kernels/combine.h"
#include "kernels/copy.h"
#include "kernels/error.h"
#include "kernels/optimizer.h"

namespace lockstep::engine {

struct BackupAggregator::Shard : ShardState {
  OwnedTensor sum;                 // the update direction, on the shard's device
  std::vector<OwnedTensor> slots;  // the accepted gradients of the current step, by rank
};

BackupAggregator::BackupAggregator(std::vector<float> init,
                                   const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments, int world,
                                   const BackupOptions& o, std::function<float(int64_t)> lr,
                                   const std::vector<Device>& devices)
    : opt_(o),
      lr_(std::move(lr)),
      n_(static_cast<int64_t>(init.size())),
      links_(devices),
      accepted_(static_cast<size_t>(world), 0),
      dropped_(static_cast<size_t>(world), 0) {
  LS_CHECK(o.needed >= 1 && o.needed <= world, "backup: " << o.needed << " gradients per update from " << world
                                                          << " workers");
  LS_CHECK(o.needed <= kMaxCombine, "backup: at most " << kMaxCombine << " gradients per update, got " << o.needed);
  LS_CHECK(n_ > 0, "backup: no parameters");
  ranks_.reserve(static_cast<size_t>(o.needed));
  inputs_.reserve(static_cast<size_t>(o.needed));
  const int64_t shards = std::min<int64_t>(static_cast<int64_t>(devices.size()), n_);
  shards_ = links_.make_shards<Shard>(shards, init, o.momentum != 0.f, decay_segments,
                                      [&](Shard& s, Context&, Device d) {
                                        s.sum = OwnedTensor(d, {s.size()}, DType::f32);
                                        for (int r = 0; r < world; ++r) s.slots.emplace_back(d, Shape{s.size()}, DType::f32);
                                      });
}

BackupAggregator::~BackupAggregator() = default;

int64_t BackupAggregator::read(Context& ctx, int64_t step, Tensor& dst) {
  LS_CHECK(dst.numel() == n_ && dst.dtype() == DType::f32,
           "backup: read into " << dst.str() << ", expected " << n_ << " f32 values");
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [&] { return aborted_ || step_ >= step; });
  if (aborted_) throw Error("backup: stopped because another worker failed");
  links_.begin(ctx);
  for (size_t j = 0; j < shards_.size(); ++j) {
    Shard& s = *shards_[j];
    DeviceScope scope(links_.device_of(static_cast<int>(j)));
    Tensor out = dst.slice(s.begin, s.size());
    links_.copy(static_cast<int>(j), ctx, s.params, out);
    links_.end(static_cast<int>(j), ctx);
  }
  return step_;
}

bool BackupAggregator::push(Context& ctx, int rank, int64_t step, const Tensor& grad) {
  LS_CHECK(grad.numel() == n_ && grad.dtype() == DType::f32,
           "backup: pushed " << grad.str() << ", expected " << n_ << " f32 values");
  std::unique_lock<std::mutex> lock(m_);
  if (aborted_) throw Error("backup: stopped because another worker failed");
  if (step != step_ || static_cast<int>(ranks_.size()) >= opt_.needed) {
    ++dropped_[static_cast<size_t>(rank)];  // late for its step, or stale: never applied
    return false;
  }
  links_.begin(ctx);
  for (size_t j = 0; j < shards_.size(); ++j) {
    Shard& s = *shards_[j];
    DeviceScope scope(links_.device_of(static_cast<int>(j)));
    links_.copy(static_cast<int>(j), ctx, grad.slice(s.begin, s.size()), s.slots[static_cast<size_t>(rank)]);
    links_.end(static_cast<int>(j), ctx);
  }
  ranks_.push_back(rank);
  ++accepted_[static_cast<size_t>(rank)];
  if (static_cast<int>(ranks_.size()) == opt_.needed) {
    apply();
    lock.unlock();
    cv_.notify_all();
  }
  return true;
}

int64_t BackupAggregator::read(int64_t step, float* dst) {
  Tensor t = host_view(dst, n_);
  return read(host_ctx_, step, t);
}

bool BackupAggregator::push(int rank, int64_t step, const float* grad) {
  return push(host_ctx_, rank, step, host_view(grad, n_));
}

void BackupAggregator::apply() {
  // Summed in rank order and divided by N, as LocalCommunicator's average: b = 0 is all-reduce.
  std::vector<int>& order = ranks_;  // reserved for N at construction: no allocation per update
  std::sort(order.begin(), order.end());
  const std::vector<double> coefficients = opt_.decode ? opt_.decode(order) : std::vector<double>{};
  SgdArgs a;
  a.lr = lr_(step_);
  a.momentum = opt_.momentum;
  a.weight_decay = opt_.weight_decay;
  a.nesterov = opt_.nesterov;
  for (size_t j = 0; j < shards_.size(); ++j) {
    Shard& s = *shards_[j];
    DeviceScope scope(links_.device_of(static_cast<int>(j)));
    Context& sc = links_.context_of(static_cast<int>(j));
    inputs_.clear();
    for (int r : order) inputs_.push_back(s.slots[static_cast<size_t>(r)].view());
    combine_gradients(sc, inputs_, coefficients, s.sum);
    sgd_update(sc, a, s.params, s.sum, s.momentum, s.decay);
  }
  if (hook_) hook_(step_, order);
  ranks_.clear();
  ++step_;
}

int64_t BackupAggregator::step() const {
  std::lock_guard<std::mutex> lock(m_);
  return step_;
}

void BackupAggregator::abort() {
  {
    std::lock_guard<std::mutex> lock(m_);
    aborted_ = true;
  }
  cv_.notify_all();
}

std::vector<int64_t> BackupAggregator::accepted() const {
  std::lock_guard<std::mutex> lock(m_);
  return accepted_;
}

std::vector<int64_t> BackupAggregator::dropped() const {
  std::lock_guard<std::mutex> lock(m_);
  return dropped_;
}

std::vector<float> BackupAggregator::gather(bool momentum) const {
  std::lock_guard<std::mutex> lock(m_);
  std::vector<float> out;
  for (size_t j = 0; j < shards_.size(); ++j) {
    const Shard& s = *shards_[j];
    const Tensor& src = (momentum ? s.momentum : s.params).view();
    if (src.numel() == 0) return {};
    DeviceScope scope(links_.device_of(static_cast<int>(j)));
    out.resize(static_cast<size_t>(n_));
    Tensor dst = host_view(out.data() + s.begin, s.size());
    copy(links_.context_of(static_cast<int>(j)), src, dst);
  }
  return out;
}

std::vector<float> BackupAggregator::params() const { return gather(false); }
std::vector<float> BackupAggregator::momentum() const { return gather(true); }

void BackupAggregator::restore(std::vector<float> params, std::vector<float> momentum, int64_t step) {
  std::lock_guard<std::mutex> lock(m_);
  LS_CHECK(static_cast<int64_t>(params.size()) == n_, "backup: restoring " << params.size() << " parameters into "
                                                                           << n_);
  for (size_t j = 0; j < shards_.size(); ++j) {
    Shard& s = *shards_[j];
    DeviceScope scope(links_.device_of(static_cast<int>(j)));
    Context& sc = links_.context_of(static_cast<int>(j));
    copy(sc, host_view(params.data() + s.begin, s.size()), s.params);
    if (s.momentum.numel() > 0 && momentum.size() == params.size())
      copy(sc, host_view(momentum.data() + s.begin, s.size()), s.momentum);
  }
  step_ = step;
}

}  // namespace lockstep::engine
