#include "engine/sync/sign_sync.h"

#include <chrono>

#include "kernels/copy.h"
#include "kernels/sign.h"

namespace lockstep::engine {

std::string_view sign_exchange_name(SignExchange e) { return e == SignExchange::allgather ? "allgather" : "sharded"; }

SignSync::SignSync(Context& ctx, nets::ParamTable& params, Communicator& comm, const SignSyncOptions& o)
    : params_(params), comm_(comm), opt_(o) {
  const ReducerOptions& b = o.buckets;
  LS_CHECK(b.bucket_mb > 0 && b.first_bucket_mb > 0, "--bucket-mb must be > 0");
  LS_CHECK(o.momentum >= 0.f && o.momentum < 1.f, "--sign-momentum must be in [0, 1)");
  LS_CHECK(o.warmup_steps >= 0, "--sign-warmup-steps must be >= 0");
  const int N = comm.size();
  layout_ = plan_buckets(params.specs(), static_cast<size_t>(b.bucket_mb * (1 << 20)),
                         static_cast<size_t>(b.first_bucket_mb * (1 << 20)));
  if (N > 1 && o.warmup_steps > 0) warmup_ = std::make_unique<Reducer>(ctx, params, comm, b);
  momentum_ = OwnedTensor(ctx.device(), {params.count()}, DType::f32);
  zero(ctx, momentum_);
  const Device dev = ctx.device();
  for (const Bucket& bucket : layout_.buckets) {
    BucketBuffers bb;
    bb.words = sign_words(bucket.numel());
    if (o.exchange == SignExchange::sharded) {
      bb.shard_words = (bb.words + N - 1) / N;
      bb.packed = OwnedTensor(dev, {N * bb.shard_words}, DType::u32);
      bb.rows = OwnedTensor(dev, {N, bb.shard_words}, DType::u32);
      bb.shard_vote = OwnedTensor(dev, {bb.shard_words}, DType::u32);
      bb.vote = OwnedTensor(dev, {N * bb.shard_words}, DType::u32);
    } else {
      bb.packed = OwnedTensor(dev, {bb.words}, DType::u32);
      bb.rows = OwnedTensor(dev, {N, bb.words}, DType::u32);
      bb.vote = OwnedTensor(dev, {bb.words}, DType::u32);
    }
    zero(ctx, bb.packed);  // the pad words of the sharded layout are never written again
    buf_.push_back(std::move(bb));
    ready_.push_back(std::make_unique<Event>(ctx));
  }
  comm_done_ = std::make_unique<Event>(ctx);
  votes_done_ = std::make_unique<Event>(ctx);
  pending_.resize(layout_.buckets.size());
  done_.resize(layout_.buckets.size());
  begin_step(true);
}

void SignSync::begin_step(bool communicate) {
  communicate_ = communicate;
  if (!communicate) {
    if (warmup_) warmup_->begin_step(false);
    return;
  }
  warm_ = updates_ < opt_.warmup_steps;
  if (warmup_) warmup_->begin_step(warm_);
  for (size_t b = 0; b < layout_.buckets.size(); ++b) {
    pending_[b] = static_cast<int>(layout_.buckets[b].params.size());
    done_[b] = false;
  }
  bytes_ = {};
  exposed_seconds_ = 0;
}

// Momentum, pack, and the first exchange of bucket b.
void SignSync::launch(Context& ctx, int b) {
  const Bucket& bucket = layout_.buckets[b];
  BucketBuffers& bb = buf_[b];
  Tensor m = momentum_.view().slice(bucket.begin, bucket.numel());
  sign_momentum(ctx, opt_.momentum, params_.grads().slice(bucket.begin, bucket.numel()), m);
  Tensor packed = bb.packed.view().slice(0, bb.words);
  sign_pack(ctx, m, packed);
  done_[b] = true;
  const int N = comm_.size();
  if (N == 1) return;
  ready_[b]->record(ctx, Stream::compute);
  ready_[b]->wait(ctx, Stream::comm);
  if (opt_.exchange == SignExchange::allgather) {
    comm_.all_gather(ctx, packed, bb.rows);
    bytes_ += all_gather_bytes(bb.words * 4, N);
  } else {
    comm_.all_to_all(ctx, bb.packed, bb.rows);
    bytes_ += all_to_all_bytes(bb.packed.numel() * 4, N);
  }
}

void SignSync::grad_ready(Context& ctx, int param) {
  if (!communicate_) return;
  if (warm_) {
    if (warmup_) warmup_->grad_ready(ctx, param);
    return;
  }
  const int b = layout_.bucket_of.at(param);
  LS_CHECK(pending_[b] > 0, "sign sync: gradient of " << params_.specs()[param].name << " reported twice in one step");
  if (--pending_[b] == 0 && opt_.buckets.overlap) launch(ctx, b);
}

// Signum on the all-reduced gradient: momentum of the average, then its sign.
void SignSync::warmup_update(Context& ctx) {
  if (warmup_) {
    warmup_->finish(ctx);
    bytes_ = warmup_->last_step_bytes();
    exposed_seconds_ = warmup_->exposed_seconds();
  }
  for (size_t b = 0; b < layout_.buckets.size(); ++b) {
    const Bucket& bucket = layout_.buckets[b];
    BucketBuffers& bb = buf_[b];
    Tensor g = params_.grads().slice(bucket.begin, bucket.numel());
    Tensor m = momentum_.view().slice(bucket.begin, bucket.numel());
    Tensor packed = bb.packed.view().slice(0, bb.words);
    sign_momentum(ctx, opt_.momentum, g, m);
    sign_pack(ctx, m, packed);
    sign_unpack(ctx, packed, g);
  }
}

void SignSync::finish(Context& ctx) {
  if (!communicate_) return;
  ++updates_;
  if (warm_) return warmup_update(ctx);
  const auto start = std::chrono::steady_clock::now();
  for (size_t b = 0; b < layout_.buckets.size(); ++b) {
    LS_CHECK(pending_[b] == 0, "sign sync: bucket " << b << " is missing " << pending_[b] << " gradient(s) at the end of backward");
    if (!done_[b]) launch(ctx, static_cast<int>(b));
  }
  const int N = comm_.size();
  if (N > 1) {
    comm_done_->record(ctx, Stream::comm);
    comm_done_->wait(ctx, Stream::compute);
  }
  for (size_t b = 0; b < layout_.buckets.size(); ++b) {
    BucketBuffers& bb = buf_[b];
    const int64_t n = layout_.buckets[b].numel();
    if (N == 1) continue;
    if (opt_.exchange == SignExchange::allgather) {
      sign_vote(ctx, bb.rows, n, bb.vote);
    } else {
      // Shard words past the bucket's end are 0 in every row and vote 0: no mask needed.
      sign_vote(ctx, bb.rows, bb.shard_words * 32, bb.shard_vote);
    }
  }
  if (N > 1 && opt_.exchange == SignExchange::sharded) {
    votes_done_->record(ctx, Stream::compute);
    votes_done_->wait(ctx, Stream::comm);
    for (BucketBuffers& bb : buf_) {
      comm_.all_gather(ctx, bb.shard_vote, bb.vote);
      bytes_ += all_gather_bytes(bb.shard_words * 4, N);
    }
    comm_done_->record(ctx, Stream::comm);
    comm_done_->wait(ctx, Stream::compute);
  }
  for (size_t b = 0; b < layout_.buckets.size(); ++b) {
    const Bucket& bucket = layout_.buckets[b];
    BucketBuffers& bb = buf_[b];
    Tensor g = params_.grads().slice(bucket.begin, bucket.numel());
    const OwnedTensor& voted = N == 1 ? bb.packed : bb.vote;  // one worker: its own signs
    sign_unpack(ctx, voted.view().slice(0, bb.words), g);
  }
  exposed_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace lockstep::engine
