// `--sync async`: asynchronous SGD against the in-process parameter server (Algorithms 1 and 2 of
// reference/sync-sgd-lecture.md). Each worker loops on its shard of the epoch: read the server's
// parameters, compute the gradient of its batch (accumulating --accumulate micro-batches), push
// it; the server applies it at once (engine/async/parameter_server.h). Workers meet only at the
// end of an epoch: every worker loads the server's parameters (or their moving average with
// --eval-ema), the BN statistics are averaged and the validation shards evaluated, staleness is
// logged ({"type":"async",...}: active workers, updates, mean, max, histogram), and checkpoints
// and stop requests (SIGINT, --stop-after) take effect there, where every worker agrees on the
// state. Over the first --async-ramp-epochs epochs the active workers grow from 1 to all (the
// source's trick); inactive workers skip their shard and still join the epoch's end.
#include <algorithm>
#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/trainer.h"
#include "engine/trainer_shared.h"
#include "kernels/copy.h"

namespace lockstep::engine {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

int64_t Trainer::schedule_index(int64_t u) const {
  if (config_.sync != SyncKind::async || active_workers(1) == world()) return u;
  const int64_t full = updates_per_epoch_ * world();
  int64_t start = 0;  // server updates before epoch e
  for (int e = 1; e <= config_.epochs; ++e) {
    const int64_t n = updates_per_epoch_ * active_workers(e);
    if (u < start + n) return int64_t{e - 1} * full + (u - start) * full / n;
    start += n;
  }
  return int64_t{config_.epochs} * full + (u - start);  // past the plan: the schedule clamps it
}

int Trainer::active_workers(int epoch) const {
  const int n = world();
  const int ramp = config_.async_ramp_epochs;
  if (ramp <= 0 || n == 1) return n;
  return std::min<int>(n, 1 + static_cast<int>(int64_t{n - 1} * (epoch - 1) / ramp));
}

std::vector<Device> Trainer::server_devices() const {
  std::vector<Device> out;
  for (const Device& d : config_.worker_devices())
    if (std::find(out.begin(), out.end(), d) == out.end()) out.push_back(d);
  if (out[0].is_cpu()) return {Device::cpu()};
  return out;
}

void Trainer::start_async() {
  Worker& w = *workers_[0];
  ParameterServerOptions o;
  o.shards = config_.ps_shards;
  o.momentum = static_cast<float>(config_.momentum);
  o.weight_decay = static_cast<float>(config_.weight_decay);
  o.nesterov = config_.nesterov;
  o.ema = config_.ema;
  o.staleness_lr = config_.staleness_lr;
  ps_ = std::make_unique<ParameterServer>(host_copy(w.ctx(), w.model().params().params()),
                                          w.optimizer().decay_segments(), o,
                                          [this](int64_t u) { return server_lr(u); }, server_devices());
  w.ctx().make_current();
  progress_.message("parameter server: " + std::to_string(std::min<int64_t>(o.shards, ps_->size())) +
                    " shard(s) in " + ps_->placement());
  if (start_.update > 0)
    ps_->restore(ps_->params(), std::move(resume_ps_momentum_), std::move(resume_ps_ema_), start_.update);
  interleaving_ = std::make_unique<Interleaving>(config_.async_round_robin, world(),
                                                 updates_per_epoch_);
}

void Trainer::train_rank_async(int r, Shared& sh) {
  Worker& w = *workers_[r];
  Context& ctx = w.ctx();
  nets::ParamTable& table = w.model().params();
  ParameterServer& ps = *ps_;
  const int K = config_.accumulate;
  const int64_t steps = updates_per_epoch_ * K;
  const float loss_grad_scale = 1.f / static_cast<float>(int64_t{config_.batch_size} * K);
  std::vector<float> host(static_cast<size_t>(table.count()));  // epoch-end staging, once
  // A failure anywhere must not leave a worker waiting for its turn.
  struct AbortOnThrow {
    Interleaving& il;
    bool armed = true;
    ~AbortOnThrow() {
      if (armed) il.abort();
    }
  } guard{*interleaving_};

  // Images trained, all workers: every update is one worker's batch x accumulate.
  const int64_t per_update = int64_t{config_.batch_size} * K;
  int64_t bn_batches = start_.bn_batches, update_prev = start_.update;
  ServerTally tally;
  tally.wait_s = data_wait_seconds(r);
  LogWindow window{Clock::now(), start_.update, tally};
  double compute_s = 0;
  StalenessStats at_epoch_start = ps.staleness();
  bool stopped = false;
  for (int epoch = start_.epoch; epoch <= config_.epochs && !stopped; ++epoch) {
    const int active = active_workers(epoch);
    if (r < active) {
      w.start_train_epoch(epoch - 1);
      int64_t version = 0;
      for (int64_t step = 1; step <= steps; ++step) {
        if (step_hook_) step_hook_(r, epoch, step);
        const int micro = static_cast<int>((step - 1) % K);
        if (micro == 0) {
          interleaving_->wait(AsyncEvent::Op::read, r);
          const auto t_read = Clock::now();
          version = ps.read(ctx, table.params());
          tally.comm_s += seconds_since(t_read);
          interleaving_->done();
          if (PhaseTimer* pt = w.phase_timer()) pt->lap(Phase::comm);  // the read (bench)
          w.model().parameters_updated(ctx);
        }
        if (stragglers_) straggle(r, bn_batches, compute_s);
        const auto t_compute = Clock::now();
        w.train_micro_batch(micro > 0, loss_grad_scale);
        if (stragglers_) {
          ctx.synchronize();
          compute_s = fastest(compute_s, seconds_since(t_compute));
        }
        ++bn_batches;
        if (micro == K - 1) {
          interleaving_->wait(AsyncEvent::Op::push, r);
          const auto t_push = Clock::now();
          ps.push(ctx, table.grads(), version);
          tally.comm_s += seconds_since(t_push);
          interleaving_->done();
          if (PhaseTimer* pt = w.phase_timer()) pt->lap(Phase::comm);  // the push, the server's update in it
          if (update_hook_) update_hook_(ps.updates() - 1);
          tally.bytes.sent += table.count() * 4;  // a gradient to the server, the parameters back
          tally.bytes.received += table.count() * 4;
        }
        if (r == 0 && (step % config_.log_every == 0 || step == steps)) {
          tally.wait_s = data_wait_seconds(r);
          log_server_step(sh, epoch, step, steps, ps.updates(), per_update, tally, window,
                          "; try a lower --base-lr, --staleness-lr or a longer --async-ramp-epochs");
        }
      }
    }
    // The epoch's end: every worker is here and the server is quiet.
    const int64_t update = ps.updates();
    const bool stop = server_epoch_end(
        r, sh, epoch, update, update_prev, update * per_update, bn_batches, host,
        [&](float* dst) {
          if (config_.eval_ema) ps.read_ema(dst);
          else ps.read(dst);
        },
        [&](float* dst) { ps.read(dst); },
        [&] {
          const StalenessStats now = ps.staleness(), ep = now.since(at_epoch_start);
          std::ostringstream os;
          os << "async: epoch " << epoch << ", " << active << " active worker(s), " << ep.updates
             << " updates, staleness mean " << ep.mean() << " max " << ep.max;
          progress_.message(os.str());
          interleaving_->reset();
          return nlohmann::json{{"type", "async"},          {"epoch", epoch},
                                {"active_workers", active}, {"update", update},
                                {"updates", ep.updates},    {"staleness_mean", ep.mean()},
                                {"staleness_max", ep.max},  {"staleness_histogram", ep.histogram}};
        });
    at_epoch_start = ps.staleness();
    update_prev = update;
    stopped = stop;
  }
  guard.armed = false;
  if (r == 0) server_summary(sh, ps.updates(), per_update, stopped, tally);
}

double Trainer::data_wait_seconds(int r) const {
  double s = workers_[static_cast<size_t>(r)]->train_source()->wait_seconds();
  if (static_cast<size_t>(r) < part_sources_.size())
    for (const auto& src : part_sources_[static_cast<size_t>(r)]) s += src->wait_seconds();
  return s;
}

void Trainer::server_summary(Shared& sh, int64_t updates, int64_t per_update, bool stopped,
                             const ServerTally& tally) const {
  sh.summary.updates = updates;
  sh.summary.images = (updates - start_.update) * per_update;
  sh.summary.wait_seconds = data_wait_seconds(0);
  sh.summary.comm_seconds = tally.comm_s;
  sh.summary.stopped = stopped;
  sh.summary.bytes_sent = tally.bytes.sent;
  sh.summary.bytes_received = tally.bytes.received;
}

void Trainer::log_server_step(Shared& sh, int epoch, int64_t step, int64_t steps, int64_t update,
                              int64_t per_update, const ServerTally& tally, LogWindow& window, const char* advice) {
  Stats s = workers_[0]->take_train_stats();  // rank 0's own batches: the workers are not in step
  if (!std::isfinite(s.loss())) {
    std::ostringstream os;
    os << "training diverged: the loss is " << s.loss() << " at epoch " << epoch << ", step " << step << advice;
    throw Error(os.str());
  }
  const double dt = seconds_since(window.time);
  StepRecord rec;
  rec.epoch = epoch;
  rec.step = step;
  rec.update = update;
  rec.lr = server_lr(std::max<int64_t>(update - 1, 0));
  rec.loss = s.loss();
  rec.top1 = s.top1_acc();
  rec.top5 = s.top5_acc();
  rec.img_per_s = dt > 0 ? static_cast<double>((update - window.update) * per_update) / dt : 0;
  rec.time = seconds_since(sh.start);
  rec.interval_s = dt;
  rec.interval_updates = update - window.update;
  rec.wait_s = tally.wait_s - window.tally.wait_s;
  rec.comm_s = tally.comm_s - window.tally.comm_s;
  rec.bytes_sent = tally.bytes.sent - window.tally.bytes.sent;
  rec.bytes_received = tally.bytes.received - window.tally.bytes.received;
  rec.skipped_updates = workers_[0]->loss_scaler().skipped();
  window = {Clock::now(), update, tally};
  sh.log->log_step(rec);
  ProgressState p;
  p.epoch = epoch;
  p.epochs = config_.epochs;
  p.step = step;
  p.steps = steps;
  p.img_per_s = rec.img_per_s;
  p.loss = rec.loss;
  p.top1 = rec.top1;
  p.lr = rec.lr;
  progress_.update(p);
  sh.summary.final_loss = rec.loss;
  sh.summary.final_top1 = rec.top1;
  sh.last_step = {{"epoch", epoch}, {"step", step}, {"update", update}, {"loss", rec.loss},
                  {"top1", rec.top1},   {"top5", rec.top5}, {"lr", rec.lr}};
}

bool Trainer::server_epoch_end(int r, Shared& sh, int epoch, int64_t update, int64_t update_prev, int64_t samples_seen,
                               int64_t bn_batches, std::vector<float>& host,
                               const std::function<void(float*)>& read_eval,
                               const std::function<void(float*)>& read_model,
                               const std::function<nlohmann::json()>& record) {
  Worker& w = *workers_[r];
  Communicator& comm = *comms_[r];
  Context& ctx = w.ctx();
  nets::ParamTable& table = w.model().params();
  if (world() > 1) comm.barrier(ctx);
  if (r == 0) {
    sh.log->log_record(record());
    // One decision for every worker, taken while they wait at the barrier below.
    std::lock_guard<std::mutex> lock(sh.stop_mutex);
    sh.stop_at = (epoch < config_.epochs &&
                  ((config_.stop_after > 0 && update >= config_.stop_after) || (stop_flag_ && stop_flag_->load())))
                     ? update
                     : -1;
  }
  if (world() > 1) comm.barrier(ctx);
  bool stop;
  {
    std::lock_guard<std::mutex> lock(sh.stop_mutex);
    stop = sh.stop_at >= 0;
  }
  if (w.val_source()) {
    read_eval(host.data());
    copy_from_host(ctx, host, table.params());
    w.model().parameters_updated(ctx);
    EvalRecord e = evaluate_rank(r, epoch, update, seconds_since(sh.start), false);
    if (r == 0) record_eval(sh, e);
  }
  // The model a checkpoint holds, and the next epoch starts from, is the server's.
  read_model(host.data());
  copy_from_host(ctx, host, table.params());
  w.model().parameters_updated(ctx);
  const bool final_epoch = epoch == config_.epochs;
  // Checkpoints wait for the epoch's end: due in epochs, or when the epoch crossed a multiple of
  // --checkpoint-every updates.
  const bool due = config_.checkpoint_every > 0 &&
                   (config_.checkpoint_in_epochs ? epoch % config_.checkpoint_every == 0
                                                 : update / config_.checkpoint_every != update_prev / config_.checkpoint_every);
  if (config_.checkpoints && (final_epoch || stop || due))
    save_checkpoint(r, sh, epoch + 1, 0, update, samples_seen, bn_batches,
                    server_lr(std::max<int64_t>(update - 1, 0)), final_epoch);
  if (world() > 1) comm.barrier(ctx);  // rank 0 has read sh.stop_at and saved; the next epoch may start
  return stop;
}

}  // namespace lockstep::engine
