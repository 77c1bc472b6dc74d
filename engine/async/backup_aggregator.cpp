// Backup workers' aggregator: see backup_aggregator.h.
#include "engine/async/backup_aggregator.h"

#include <algorithm>
#include <cstring>

#include "kernels/error.h"
#include "kernels/optimizer.h"

namespace lockstep::engine {

BackupAggregator::BackupAggregator(std::vector<float> init,
                                   const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments, int world,
                                   const BackupOptions& o, std::function<float(int64_t)> lr)
    : opt_(o),
      lr_(std::move(lr)),
      world_(world),
      params_(std::move(init)),
      sum_(params_.size()),
      slots_(static_cast<size_t>(world)),
      accepted_(static_cast<size_t>(world), 0),
      dropped_(static_cast<size_t>(world), 0) {
  LS_CHECK(o.needed >= 1 && o.needed <= world, "backup: " << o.needed << " gradients per update from " << world
                                                          << " workers");
  if (o.momentum != 0.f) momentum_.assign(params_.size(), 0.f);
  for (auto& s : slots_) s.resize(params_.size());
  ranks_.reserve(static_cast<size_t>(o.needed));
  grads_.reserve(static_cast<size_t>(o.needed));
  std::vector<uint32_t> segs;
  for (const auto& [b, e] : decay_segments) {
    segs.push_back(b);
    segs.push_back(e);
  }
  decay_ = OwnedTensor(Device::cpu(), {static_cast<int64_t>(segs.size() / 2), 2}, DType::u32);
  if (!segs.empty()) std::memcpy(decay_.view().data<uint32_t>(), segs.data(), segs.size() * sizeof(uint32_t));
}

int64_t BackupAggregator::read(int64_t step, float* dst) {
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [&] { return aborted_ || step_ >= step; });
  if (aborted_) throw Error("backup: stopped because another worker failed");
  std::memcpy(dst, params_.data(), params_.size() * sizeof(float));
  return step_;
}

bool BackupAggregator::push(int rank, int64_t step, const float* grad) {
  std::unique_lock<std::mutex> lock(m_);
  if (aborted_) throw Error("backup: stopped because another worker failed");
  if (step != step_ || static_cast<int>(ranks_.size()) >= opt_.needed) {
    ++dropped_[static_cast<size_t>(rank)];  // late for its step, or stale: never applied
    return false;
  }
  std::memcpy(slots_[static_cast<size_t>(rank)].data(), grad, params_.size() * sizeof(float));
  ranks_.push_back(rank);
  ++accepted_[static_cast<size_t>(rank)];
  if (static_cast<int>(ranks_.size()) == opt_.needed) {
    apply();
    lock.unlock();
    cv_.notify_all();
  }
  return true;
}

void BackupAggregator::apply() {
  // Summed in rank order and divided by N, as LocalCommunicator's average: b = 0 is all-reduce.
  std::vector<int>& order = ranks_;  // reserved for N at construction: no allocation per update
  std::sort(order.begin(), order.end());
  const auto n = static_cast<int64_t>(params_.size());
  if (opt_.combine) {
    grads_.clear();
    for (int r : order) grads_.push_back(slots_[static_cast<size_t>(r)].data());
    opt_.combine(order, grads_, sum_.data(), n);
  } else {
    std::memcpy(sum_.data(), slots_[static_cast<size_t>(order[0])].data(), static_cast<size_t>(n) * sizeof(float));
    for (size_t k = 1; k < order.size(); ++k) {
      const float* g = slots_[static_cast<size_t>(order[k])].data();
      for (int64_t i = 0; i < n; ++i) sum_[i] += g[i];
    }
    const float div = static_cast<float>(order.size());
    for (int64_t i = 0; i < n; ++i) sum_[i] /= div;
  }
  SgdArgs a;
  a.lr = lr_(step_);
  a.momentum = opt_.momentum;
  a.weight_decay = opt_.weight_decay;
  a.nesterov = opt_.nesterov;
  Tensor p(params_.data(), Shape{n}, DType::f32, Device::cpu());
  Tensor g(sum_.data(), Shape{n}, DType::f32, Device::cpu());
  Tensor m = momentum_.empty() ? Tensor(nullptr, Shape{0}, DType::f32, Device::cpu())
                               : Tensor(momentum_.data(), Shape{n}, DType::f32, Device::cpu());
  sgd_update(ctx_, a, p, g, m, decay_);
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

void BackupAggregator::restore(std::vector<float> params, std::vector<float> momentum, int64_t step) {
  std::lock_guard<std::mutex> lock(m_);
  LS_CHECK(params.size() == params_.size(), "backup: restoring " << params.size() << " parameters into "
                                                                 << params_.size());
  params_ = std::move(params);
  if (!momentum_.empty() && momentum.size() == params_.size()) momentum_ = std::move(momentum);
  step_ = step;
}

}  // namespace lockstep::engine
