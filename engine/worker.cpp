#include "engine/worker.h"

#include "engine/comm/communicator.h"
#include "kernels/cast.h"
#include "kernels/copy.h"
#include "kernels/loss.h"

namespace lockstep::engine {

Worker::Worker(Device device, const WorkerOptions& o)
    : opt_(o), ctx_(device, o.seed), model_(o.model), scaler_(o.model.dtype == DType::f16) {
  model_.setup(ctx_);
  model_.init(ctx_, o.seed, o.zero_init_residual);
  optimizer_ = std::make_unique<Optimizer>(ctx_, model_.params(), o.optimizer);
  const Shape in = model_.input_shape(), out = model_.output_shape();
  const int64_t n = in[0];
  if (device.is_cuda()) {
    images_ = OwnedTensor(device, in, DType::u8);
    labels_ = OwnedTensor(device, {n}, DType::i32);
    flips_ = OwnedTensor(device, {n}, DType::u8);
  }
  input_ = OwnedTensor(device, in, o.model.dtype);
  dlogits_ = OwnedTensor(device, out, o.model.dtype);
  train_stats_ = OwnedTensor(device, {3}, DType::f32);
  eval_stats_ = OwnedTensor(device, {3}, DType::f32);
  overflow_ = OwnedTensor(device, {1}, DType::i32);
  reduce_buf_ = OwnedTensor(device, {4}, DType::f32);
  host_scratch_ = OwnedTensor(Device::cpu(), {4}, DType::f32);
  host_flag_ = OwnedTensor(Device::cpu(), {1}, DType::i32);
  zero(ctx_, train_stats_);
  zero(ctx_, eval_stats_);
}

void Worker::set_sources(std::unique_ptr<BatchSource> train, std::unique_ptr<BatchSource> val) {
  train_ = std::move(train);
  val_ = std::move(val);
}

Stats Worker::evaluate_all() {
  LS_CHECK(val_ != nullptr, "evaluate: this worker has no validation source");
  val_->start_epoch(0);
  for (int64_t i = 0; i < val_->batches_per_epoch(); ++i) evaluate(val_->next());
  return take_eval_stats();
}

const Tensor& Worker::upload_and_normalize(const HostBatch& b) {
  LS_CHECK(b.images.shape() == model_.input_shape() && b.images.dtype() == DType::u8,
           "batch images must be u8" << model_.input_shape().str() << ", got " << b.images.str());
  const bool flips = b.flips.defined() && b.flips.numel() > 0;
  if (ctx_.is_cuda()) {
    copy(ctx_, b.images, images_);
    copy(ctx_, b.labels, labels_);
    if (flips) copy(ctx_, b.flips, flips_);
    const Tensor* f = flips ? &flips_.view() : nullptr;
    normalize_images(ctx_, opt_.normalization, images_, f, input_);
  } else {
    normalize_images(ctx_, opt_.normalization, b.images, flips ? &b.flips : nullptr, input_);
  }
  return input_;
}

void Worker::train_micro_batch(bool accumulate, float loss_grad_scale) {
  if (timer_) timer_->mark();
  const HostBatch& batch = train_->next();
  if (timer_) timer_->lap(Phase::data);
  forward_backward(batch, accumulate, loss_grad_scale);
}

void Worker::forward_backward(const HostBatch& batch, bool accumulate, float loss_grad_scale) {
  LS_CHECK(batch.count == batch.images.dim(0), "training batches must be full (" << batch.count << " of "
                                                                                  << batch.images.dim(0) << ")");
  const Tensor& x = upload_and_normalize(batch);
  if (timer_) timer_->lap(Phase::h2d);
  const Tensor& logits = model_.forward(ctx_, x, nets::Mode::train);
  const Tensor& labels = ctx_.is_cuda() ? labels_.view() : batch.labels;
  softmax_cross_entropy(ctx_, logits, labels, opt_.label_smoothing, loss_grad_scale * scaler_.scale(), &dlogits_.view(),
                        train_stats_);
  if (timer_) timer_->lap(Phase::forward);
  model_.backward(ctx_, dlogits_, accumulate);
  if (timer_) timer_->lap(Phase::backward);
  train_samples_ += batch.count;
}

bool Worker::update(float lr, float grad_scale) {
  float unscale = grad_scale / scaler_.scale();
  if (scaler_.enabled()) {
    // Unscale in place and look for Inf/NaN: the one host read-back per step that fp16 needs.
    zero(ctx_, overflow_);
    scale_and_check_finite(ctx_, model_.params().grads(), unscale, overflow_);
    copy(ctx_, overflow_, host_flag_);
    if (!scaler_.update(*host_flag_.data<int32_t>() != 0)) {
      if (timer_) timer_->lap(Phase::optimizer);
      return false;
    }
    unscale = 1.f;
  }
  optimizer_->step(ctx_, model_.params(), lr, unscale);
  model_.parameters_updated(ctx_);
  if (timer_) timer_->lap(Phase::optimizer);
  return true;
}

void Worker::evaluate(const HostBatch& batch) {
  if (batch.count == 0) return;  // a worker whose share of the validation set ran out
  const Tensor& x = upload_and_normalize(batch);
  const Tensor& logits = model_.forward(ctx_, x, nets::Mode::eval);
  const Tensor& labels = ctx_.is_cuda() ? labels_.view() : batch.labels;
  const int64_t k = logits.dim(1), n = batch.count;
  Tensor lv = logits.slice(0, n * k).reshape({n, k});
  Tensor lb = labels.slice(0, n);
  softmax_cross_entropy(ctx_, lv, lb, 0.f, 1.f, nullptr, eval_stats_);
  eval_samples_ += n;
}

Stats Worker::all_reduce_stats(Communicator& comm, const Stats& s) {
  if (comm.size() == 1) return s;
  float* h = host_scratch_.data<float>();
  h[0] = static_cast<float>(s.loss_sum);
  h[1] = static_cast<float>(s.top1);
  h[2] = static_cast<float>(s.top5);
  h[3] = static_cast<float>(s.samples);
  copy(ctx_, host_scratch_, reduce_buf_);
  comm.all_reduce(ctx_, reduce_buf_, ReduceOp::sum);
  ctx_.synchronize();  // the comm stream's result, before the host reads it
  copy(ctx_, reduce_buf_, host_scratch_);
  Stats r;
  r.loss_sum = h[0];
  r.top1 = h[1];
  r.top5 = h[2];
  r.samples = static_cast<int64_t>(h[3]);
  return r;
}

Stats Worker::peek(const OwnedTensor& stats, int64_t samples) {
  Tensor host = host_scratch_.view().slice(0, 3);
  copy(ctx_, stats, host);
  Stats s;
  s.loss_sum = host.data<float>()[0];
  s.top1 = host.data<float>()[1];
  s.top5 = host.data<float>()[2];
  s.samples = samples;
  return s;
}

void Worker::restore_train_stats(const Stats& s) {
  Tensor host = host_scratch_.view().slice(0, 3);
  host.data<float>()[0] = static_cast<float>(s.loss_sum);
  host.data<float>()[1] = static_cast<float>(s.top1);
  host.data<float>()[2] = static_cast<float>(s.top5);
  copy(ctx_, host, train_stats_);
  train_samples_ = s.samples;
}

Stats Worker::take(OwnedTensor& stats, int64_t& samples) {
  Stats s = peek(stats, samples);
  zero(ctx_, stats);
  samples = 0;
  return s;
}

}  // namespace lockstep::engine
