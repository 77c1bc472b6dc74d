#include "engine/trainer.h"

#include <chrono>
#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/synthetic_source.h"

namespace lockstep::engine {

using data::SyntheticSource;
using data::SyntheticSpec;

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Streams of the synthetic data: training and validation samples never coincide.
constexpr uint64_t kTrainStream = 0, kValStream = 1;
}  // namespace

WorkerOptions worker_options(const TrainConfig& c) {
  WorkerOptions o;
  o.model.arch = c.arch;
  o.model.classes = c.classes;
  o.model.image_size = c.image_size;
  o.model.batch = c.batch_size;
  o.model.dtype = c.precision;
  o.optimizer.kind = c.optimizer == OptimizerKind::lars ? OptimizerConfig::Kind::lars : OptimizerConfig::Kind::sgd;
  o.optimizer.momentum = static_cast<float>(c.momentum);
  o.optimizer.nesterov = c.nesterov;
  o.optimizer.weight_decay = static_cast<float>(c.weight_decay);
  o.optimizer.wd_on_bn = c.wd_on_bn;
  o.optimizer.lars_eta = static_cast<float>(c.lars_eta);
  o.label_smoothing = static_cast<float>(c.label_smoothing);
  o.seed = c.seed;
  o.zero_init_residual = c.zero_init_residual;
  return o;
}

Trainer::Trainer(const TrainConfig& c, Progress& progress) : config_(c), progress_(progress) {
  if (c.workers != 1)
    throw ConfigError("--workers", "--workers " + std::to_string(c.workers) +
                                       ": this build trains with one worker (multi-worker training is not in it yet)");
  if (!c.synthetic)
    throw ConfigError("--data", "--data: this build has no dataset loader yet; use --synthetic");
  worker_ = std::make_unique<Worker>(c.device, worker_options(c));
  progress_.message(worker_->model().memory_plan().str());

  SyntheticSpec spec;
  spec.classes = c.classes;
  spec.image_size = c.image_size;
  spec.batch = c.batch_size;
  spec.seed = c.seed;
  std::unique_ptr<BatchSource> train, val;
  if (c.command == Command::train) {
    spec.batches_per_epoch = c.steps_per_epoch;
    spec.stream = kTrainStream;
    train = std::make_unique<SyntheticSource>(spec);
    updates_per_epoch_ = updates_per_epoch(train->batches_per_epoch(), c.accumulate);
    schedule_ = std::make_unique<LrSchedule>(c.schedule_config(updates_per_epoch_));
    progress_.message("schedule: " + schedule_->describe());
  }
  if (c.eval_steps > 0) {
    spec.batches_per_epoch = c.eval_steps;
    spec.stream = kValStream;
    spec.flips = false;
    val = std::make_unique<SyntheticSource>(spec);
  }
  worker_->set_sources(std::move(train), std::move(val));
}

EvalRecord Trainer::evaluate(int epoch, int64_t update, double time) {
  Stats s = worker_->evaluate_all();
  EvalRecord r;
  r.epoch = epoch;
  r.update = update;
  r.samples = s.samples;
  r.loss = s.loss();
  r.top1 = s.top1_acc();
  r.top5 = s.top5_acc();
  r.time = time;
  return r;
}

RunSummary Trainer::run() {
  BatchSource* train = worker_->train_source();
  LS_CHECK(train != nullptr, "Trainer::run: built for evaluation only");
  RunLog log(config_.out_dir);
  log.write_config(config_.to_json());
  const auto start = Clock::now();
  const int K = config_.accumulate;
  const int64_t steps = updates_per_epoch_ * K;  // a trailing partial accumulation is not run
  const int64_t total_steps = steps * config_.epochs;
  const float loss_grad_scale = 1.f / static_cast<float>(int64_t{config_.batch_size} * K);

  RunSummary summary;
  summary.out_dir = config_.out_dir;
  int64_t update = 0, images = 0, images_at_log = 0;
  auto last_log = Clock::now();
  float lr = 0.f;
  for (int epoch = 1; epoch <= config_.epochs; ++epoch) {
    train->start_epoch(epoch - 1);
    for (int64_t step = 1; step <= steps; ++step) {
      const int micro = static_cast<int>((step - 1) % K);
      worker_->train_micro_batch(micro > 0, loss_grad_scale);
      images += config_.batch_size;
      if (micro == K - 1) {
        lr = schedule_->lr(update);
        worker_->update(lr, 1.f);
        ++update;
      }
      if (step % config_.log_every == 0 || step == steps) {
        Stats s = worker_->take_train_stats();  // the device read-back
        const double dt = seconds_since(last_log);
        last_log = Clock::now();
        StepRecord r;
        r.epoch = epoch;
        r.step = step;
        r.update = update;
        r.lr = lr;
        r.loss = s.loss();
        r.top1 = s.top1_acc();
        r.top5 = s.top5_acc();
        r.img_per_s = dt > 0 ? static_cast<double>(images - images_at_log) / dt : 0;
        r.time = seconds_since(start);
        images_at_log = images;
        log.log_step(r);
        ProgressState p;
        p.epoch = epoch;
        p.epochs = config_.epochs;
        p.step = step;
        p.steps = steps;
        p.img_per_s = r.img_per_s;
        p.loss = r.loss;
        p.top1 = r.top1;
        p.lr = lr;
        const int64_t done = (epoch - 1) * steps + step;
        p.eta_s = eta_seconds(done, total_steps, r.time);
        progress_.update(p);
        summary.final_loss = r.loss;
        summary.final_top1 = r.top1;
        if (!std::isfinite(r.loss)) {
          std::ostringstream os;
          os << "training diverged: the loss is " << r.loss << " at epoch " << epoch << ", step " << step
             << " (lr " << lr << "); try a lower --base-lr or a longer --warmup-epochs";
          throw Error(os.str());
        }
      }
    }
    if (worker_->val_source()) {
      EvalRecord e = evaluate(epoch, update, seconds_since(start));
      log.log_eval(e);
      progress_.eval(e);
      summary.has_eval = true;
      summary.last_eval = e;
    }
  }
  summary.epochs = config_.epochs;
  summary.updates = update;
  summary.images = images;
  summary.seconds = seconds_since(start);
  summary.skipped_updates = worker_->loss_scaler().skipped();
  log.log_summary(summary);
  progress_.summary(summary);
  return summary;
}

}  // namespace lockstep::engine
