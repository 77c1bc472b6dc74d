#include "engine/reducer.h"

#include <chrono>

namespace lockstep::engine {

Reducer::Reducer(Context& ctx, nets::ParamTable& params, Communicator& comm, const ReducerOptions& o)
    : params_(params), comm_(comm), opt_(o) {
  LS_CHECK(o.bucket_mb > 0 && o.first_bucket_mb > 0, "--bucket-mb must be > 0");
  layout_ = plan_buckets(params.specs(), static_cast<size_t>(o.bucket_mb * (1 << 20)),
                         static_cast<size_t>(o.first_bucket_mb * (1 << 20)));
  for (size_t b = 0; b < layout_.buckets.size(); ++b) ready_.push_back(std::make_unique<Event>(ctx));
  comm_done_ = std::make_unique<Event>(ctx);
  pending_.resize(layout_.buckets.size());
  done_.resize(layout_.buckets.size());
  begin_step(true);
}

void Reducer::begin_step(bool communicate) {
  communicate_ = communicate;
  if (communicate) bytes_ = {};  // accumulating steps keep the last exchange's figures
  for (size_t b = 0; b < layout_.buckets.size(); ++b) {
    pending_[b] = static_cast<int>(layout_.buckets[b].params.size());
    done_[b] = false;
  }
  launched_.clear();
  exposed_seconds_ = 0;
}

void Reducer::launch(Context& ctx, int b) {
  const Bucket& bucket = layout_.buckets[b];
  ready_[b]->record(ctx, Stream::compute);
  ready_[b]->wait(ctx, Stream::comm);
  Tensor view = params_.grads().slice(bucket.begin, bucket.numel());
  comm_.all_reduce(ctx, view, ReduceOp::average);
  bytes_ += all_reduce_bytes(bucket.numel() * 4, comm_.size());
  done_[b] = true;
  launched_.push_back(b);
}

void Reducer::grad_ready(Context& ctx, int param) {
  if (!communicate_) return;
  const int b = layout_.bucket_of.at(param);
  LS_CHECK(pending_[b] > 0, "reducer: gradient of " << params_.specs()[param].name << " reported twice in one step");
  if (--pending_[b] == 0 && opt_.overlap) launch(ctx, b);
}

void Reducer::finish(Context& ctx) {
  if (!communicate_) return;
  const auto start = std::chrono::steady_clock::now();
  for (size_t b = 0; b < layout_.buckets.size(); ++b) {
    LS_CHECK(pending_[b] == 0, "reducer: bucket " << b << " is missing " << pending_[b] << " gradient(s) at the end of backward");
    if (!done_[b]) launch(ctx, static_cast<int>(b));
  }
  comm_done_->record(ctx, Stream::comm);
  comm_done_->wait(ctx, Stream::compute);
  exposed_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace lockstep::engine
