#include "engine/worker.h"

#include "engine/comm/communicator.h"
#include "kernels/cast.h"
#include "kernels/copy.h"
#include "kernels/loss.h"
#include "kernels/normalize.h"

namespace lockstep::engine {

Worker::Worker(Device device, const WorkerOptions& o)
    : opt_(o), ctx_(device, o.seed), model_(o.model), scaler_(o.model.dtype == DType::f16) {
  ctx_.make_current();  // the model's plans, buffers and first kernels are this worker's GPU's
  model_.setup(ctx_);
  model_.init(ctx_, o.seed, o.zero_init_residual);
  optimizer_ = std::make_unique<Optimizer>(ctx_, model_.params(), o.optimizer);
  const Shape in = model_.input_shape(), out = model_.output_shape();
  const int64_t n = in[0];
  collective_ready_ = std::make_unique<Event>(ctx_);
  collective_done_ = std::make_unique<Event>(ctx_);
  if (device.is_cuda()) {
    ctx_.make_current();  // the events belong to this worker's GPU
    for (DeviceBatch& b : slots_) {
      b.images = OwnedTensor(device, in, DType::u8);
      b.labels = OwnedTensor(device, {n}, DType::i32);
      b.flips = OwnedTensor(device, {n}, DType::u8);
      b.uploaded = std::make_unique<Event>(ctx_);
      b.used = std::make_unique<Event>(ctx_);
    }
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

Worker::~Worker() {
  try {
    release_host_batch();
  } catch (...) {
    // A failed device: nothing more can be waited for.
  }
}

void Worker::begin_collective() {
  collective_ready_->record(ctx_, Stream::compute);
  collective_ready_->wait(ctx_, Stream::comm);
}

void Worker::end_collective() {
  collective_done_->record(ctx_, Stream::comm);
  collective_done_->wait(ctx_, Stream::compute);
}

void Worker::start_train_epoch(int64_t epoch, int64_t position) {
  release_host_batch();
  train_->start_epoch(epoch, position);
}

void Worker::set_sources(std::unique_ptr<BatchSource> train, std::unique_ptr<BatchSource> val) {
  release_host_batch();
  train_ = std::move(train);
  val_ = std::move(val);
}

Stats Worker::evaluate_all() {
  LS_CHECK(val_ != nullptr, "evaluate: this worker has no validation source");
  release_host_batch();
  // Training's upload slot is part of a CUDA graph's key, and a worker whose validation share ran
  // out stages fewer batches than its peers: the slot is put back so that every rank replays the
  // graph of the same kind next (a captured collective must match across ranks). The slots'
  // `used` events keep the reuse safe whatever the parity.
  const int train_slot = next_slot_;
  val_->start_epoch(0);
  for (int64_t i = 0; i < val_->batches_per_epoch(); ++i) evaluate(val_->next());
  next_slot_ = train_slot;
  return take_eval_stats();
}

void Worker::release_host_batch() {
  if (pending_upload_) pending_upload_->synchronize();
  pending_upload_ = nullptr;
}

const HostBatch& Worker::next_train_batch() {
  release_host_batch();
  if (timer_ && !timer_->started()) timer_->mark();  // later steps' phases run on from the last lap
  const HostBatch& batch = train_->next();
  if (timer_) timer_->lap(Phase::data);
  return batch;
}

Worker::DeviceBatch& Worker::stage(const HostBatch& b) {
  LS_CHECK(b.images.shape() == model_.input_shape() && b.images.dtype() == DType::u8,
           "batch images must be u8" << model_.input_shape().str() << ", got " << b.images.str());
  const bool flips = b.flips.defined() && b.flips.numel() > 0;
  const bool cuda = ctx_.is_cuda();
  DeviceBatch& s = cuda ? slots_[static_cast<size_t>(next_slot_)] : host_slot_;
  if (cuda) {
    next_slot_ ^= 1;
    // The slot's previous batch (two micro-batches ago) must be read before it is overwritten.
    s.used->wait(ctx_, Stream::copy);
    copy_async(ctx_, b.images, s.images, Stream::copy);
    copy_async(ctx_, b.labels, s.labels, Stream::copy);
    if (flips) copy_async(ctx_, b.flips, s.flips, Stream::copy);
    s.uploaded->record(ctx_, Stream::copy);
    s.uploaded->wait(ctx_, Stream::compute);
    pending_upload_ = s.uploaded.get();
  }
  s.images_view = cuda ? s.images.view() : b.images;
  s.labels_view = cuda ? s.labels.view() : b.labels;
  s.flips_view = cuda ? s.flips.view() : b.flips;
  s.has_flips = flips;
  s.count = b.count;
  return s;
}

void Worker::normalize(const DeviceBatch& b) {
  const Tensor* f = b.has_flips ? &b.flips_view : nullptr;
  normalize_images(ctx_, opt_.normalization, b.images_view, f, input_);
}

void Worker::train_micro_batch(bool accumulate, float loss_grad_scale) {
  const HostBatch& batch = next_train_batch();
  DeviceBatch& b = stage(batch);
  forward_backward_staged(b, accumulate, loss_grad_scale);
  if (b.used) b.used->record(ctx_, Stream::compute);
}

void Worker::forward_backward(const HostBatch& batch, bool accumulate, float loss_grad_scale) {
  DeviceBatch& b = stage(batch);
  release_host_batch();
  forward_backward_staged(b, accumulate, loss_grad_scale);
  if (b.used) b.used->record(ctx_, Stream::compute);
}

void Worker::forward_backward_staged(const DeviceBatch& b, bool accumulate, float loss_grad_scale) {
  LS_CHECK(b.count == b.images_view.dim(0), "training batches must be full (" << b.count << " of "
                                                                              << b.images_view.dim(0) << ")");
  normalize(b);
  if (timer_) timer_->lap(Phase::h2d);
  const Tensor& logits = model_.forward(ctx_, input_, nets::Mode::train);
  softmax_cross_entropy(ctx_, logits, b.labels_view, opt_.label_smoothing, loss_grad_scale * scaler_.scale(),
                        &dlogits_.view(), train_stats_);
  if (timer_) timer_->lap(Phase::forward);
  model_.backward(ctx_, dlogits_, accumulate);
  if (timer_) timer_->lap(Phase::backward);
  train_samples_ += b.count;
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

void Worker::apply_update() {
  optimizer_->apply(ctx_, model_.params());
  model_.parameters_updated(ctx_);
}

Worker::StepRun Worker::train_micro_batch_graphed(bool accumulate, bool update, float loss_grad_scale, float lr,
                                                  SyncStrategy* sync) {
  LS_CHECK(ctx_.is_cuda(), "--cuda-graph needs a CUDA worker, not " << ctx_.device().str());
  LS_CHECK(!scaler_.enabled(), "--cuda-graph: fp16 loss scaling reads the overflow flag on the host at every step; "
                               "use --precision bf16 or fp32");
  const HostBatch& batch = next_train_batch();
  DeviceBatch& b = stage(batch);
  LS_CHECK(b.count == b.images_view.dim(0), "training batches must be full (" << b.count << " of "
                                                                              << b.images_view.dim(0) << ")");
  // The step's learning rate goes to device memory ahead of the work that reads it.
  if (update) optimizer_->set_step(ctx_, lr, 1.f);
  // Graphs hold the workspace's address: were it ever reallocated (a plan made later), they
  // would write freed memory, so they are dropped and captured again.
  if (ctx_.workspace() != graph_workspace_) {
    graphs_.clear();
    warmed_.clear();
    graph_workspace_ = ctx_.workspace();
  }
  const GraphKey key{accumulate, update, b.has_flips, static_cast<int>(&b - slots_.data())};
  StepRun run = StepRun::replayed;
  if (auto it = graphs_.find(key); it != graphs_.end() && !timer_) {
    it->second.launch(ctx_);
    train_samples_ += b.count;
  } else {
    const bool capture = !timer_ && warmed_.count(key) > 0;
    run = capture ? StepRun::captured : StepRun::eager;
    if (sync) sync->begin_step(update);
    auto body = [&] {
      forward_backward_staged(b, accumulate, loss_grad_scale);
      if (update) {
        if (sync) sync->finish(ctx_);
        if (timer_) timer_->lap(Phase::comm);
        apply_update();
        if (timer_) timer_->lap(Phase::optimizer);
      }
    };
    if (!capture) {
      body();
    } else {
      CudaGraph g;
      try {
        GraphCapture cap(ctx_);
        body();
        g = cap.finish("a training micro-batch");
      } catch (const Error& e) {
        throw Error(std::string(e.what()) + " (while capturing a step for --cuda-graph: run without it)");
      }
      g.launch(ctx_);
      graphs_.emplace(key, std::move(g));
    }
    warmed_.insert(key);
  }
  b.used->record(ctx_, Stream::compute);
  return run;
}

void Worker::evaluate(const HostBatch& batch) {
  if (batch.count == 0) return;  // a worker whose share of the validation set ran out
  DeviceBatch& b = stage(batch);
  release_host_batch();
  normalize(b);
  const Tensor& logits = model_.forward(ctx_, input_, nets::Mode::eval);
  const int64_t k = logits.dim(1), n = batch.count;
  Tensor lv = logits.slice(0, n * k).reshape({n, k});
  Tensor lb = b.labels_view.slice(0, n);
  softmax_cross_entropy(ctx_, lv, lb, 0.f, 1.f, nullptr, eval_stats_);
  if (b.used) b.used->record(ctx_, Stream::compute);
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
