// `--sync backup --backup-workers b`: synchronous SGD that does not wait for its slowest workers
// (engine/async/backup_aggregator.h). Every worker loops: read the newest parameters (those after
// step t), compute its next batch's gradient, offer it tagged t; the aggregator applies the first
// N = workers - b of each step and drops the rest, so a slow worker never holds a step up and its
// late gradient is never applied. An epoch is as many updates as a worker has batches; workers
// meet at its end as in the other server modes (server_epoch_end: evaluation, checkpoints, stop
// requests), and the epoch's accepted and dropped gradients per worker are logged
// ({"type":"backup",...}).
#include <algorithm>
#include <sstream>

#include "engine/trainer.h"
#include "engine/trainer_shared.h"
#include "kernels/combine.h"
#include "kernels/copy.h"

namespace lockstep::engine {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

void Trainer::start_backup() {
  Worker& w = *workers_[0];
  BackupOptions o;
  o.needed = world() - config_.backup_workers;
  if (code_) {
    // Gradient coding: the first N - s coded messages decode to the full gradient.
    o.needed = world() - config_.stragglers;
    const GradientCode* code = code_.get();
    o.decode = [code](const std::vector<int>& ranks) { return code->decode(ranks); };
  }
  o.momentum = static_cast<float>(config_.momentum);
  o.weight_decay = static_cast<float>(config_.weight_decay);
  o.nesterov = config_.nesterov;
  const LrSchedule* schedule = schedule_.get();
  backup_ = std::make_unique<BackupAggregator>(host_copy(w.ctx(), w.model().params().params()),
                                               w.optimizer().decay_segments(), world(), o,
                                               [schedule](int64_t u) { return schedule->lr(u); }, server_devices());
  w.ctx().make_current();
  progress_.message(std::string(code_ ? "coded" : "backup") + " aggregator in " + backup_->placement());
  if (start_.update > 0) backup_->restore(backup_->params(), std::move(resume_ps_momentum_), start_.update);
  if (update_hook_) backup_->set_update_hook([this](int64_t t, const std::vector<int>&) { update_hook_(t); });
}

void Trainer::train_rank_backup(int r, Shared& sh) {
  Worker& w = *workers_[r];
  Context& ctx = w.ctx();
  nets::ParamTable& table = w.model().params();
  BackupAggregator& agg = *backup_;
  const int64_t steps = updates_per_epoch_;
  // Coded: every part's gradient is its share of the full batch's mean (N parts of `batch`).
  const float loss_grad_scale =
      1.f / static_cast<float>(code_ ? int64_t{config_.batch_size} * world() : config_.batch_size);
  const int64_t per_update =
      int64_t{config_.batch_size} * (code_ ? world() : world() - config_.backup_workers);
  std::vector<float> host(static_cast<size_t>(table.count()));  // epoch-end staging, once
  OwnedTensor message;  // coded: this worker's combination of its parts' gradients
  if (code_) message = OwnedTensor(ctx.device(), {table.count()}, DType::f32);
  std::vector<int64_t> part_pos;  // the next batch of each part source within the epoch
  struct AbortOnThrow {
    BackupAggregator& agg;
    bool armed = true;
    ~AbortOnThrow() {
      if (armed) agg.abort();
    }
  } guard{agg};

  int64_t bn_batches = start_.bn_batches, update_prev = start_.update;
  double compute_s = 0;
  ServerTally tally;
  tally.wait_s = data_wait_seconds(r);
  std::vector<int64_t> dropped_at_epoch = agg.dropped(), accepted_at_epoch = agg.accepted();
  LogWindow window{Clock::now(), start_.update, tally};
  bool stopped = false;
  for (int epoch = start_.epoch; epoch <= config_.epochs && !stopped; ++epoch) {
    w.start_train_epoch(epoch - 1);
    if (code_) {
      for (auto& src : part_sources_[static_cast<size_t>(r)]) src->start_epoch(epoch - 1, 0);
      part_pos.assign(part_sources_[static_cast<size_t>(r)].size(), 0);
    }
    const int64_t end = int64_t{epoch} * steps;  // the update count at the epoch's end
    int64_t t = agg.step();
    while (true) {
      const auto t_read = Clock::now();
      t = agg.read(ctx, t, table.params());  // the newest parameters: a late worker skips ahead
      tally.comm_s += seconds_since(t_read);  // the wait for step t's aggregate included
      if (PhaseTimer* pt = w.phase_timer()) pt->lap(Phase::comm);  // the last push and this read (bench)
      tally.bytes.received += table.count() * 4;
      if (t >= end) break;
      if (step_hook_) step_hook_(r, epoch, t - (end - steps) + 1);  // a late worker skips steps' hooks
      w.model().parameters_updated(ctx);
      if (stragglers_) straggle(r, bn_batches, compute_s);
      const auto t_compute = Clock::now();
      if (code_) {
        // Message m_r = sum_k B[r][parts_k] g_{parts_k}, each part the batch of step t of its shard
        // (a worker that skipped steps repositions its sources: every message of step t must
        // encode the same data).
        const int64_t at = t - (end - steps);
        const std::vector<double>& coeff = code_->coefficients(r);
        zero(ctx, message);
        for (size_t k = 0; k < coeff.size(); ++k) {
          BatchSource& src = *part_sources_[static_cast<size_t>(r)][k];
          if (part_pos[k] != at) src.start_epoch(epoch - 1, at);
          part_pos[k] = at + 1;
          const data::HostBatch& part = src.next();
          if (PhaseTimer* pt = w.phase_timer()) pt->lap(Phase::data);
          w.forward_backward(part, false, loss_grad_scale);
          ++bn_batches;
          axpy(ctx, static_cast<float>(coeff[k]), table.grads(), message);
          if (PhaseTimer* pt = w.phase_timer()) pt->lap(Phase::backward);  // the part's share of the message
        }
      } else {
        w.train_micro_batch(false, loss_grad_scale);
        ++bn_batches;
      }
      if (stragglers_) {
        ctx.synchronize();  // the gradient's real compute time, for factor= stragglers
        compute_s = fastest(compute_s, seconds_since(t_compute));
      }
      const auto t_push = Clock::now();
      agg.push(ctx, r, t, code_ ? message.view() : table.grads());
      tally.comm_s += seconds_since(t_push);
      tally.bytes.sent += table.count() * 4;
      ++t;
      const int64_t step = t - (end - steps);
      if (r == 0 && (step % config_.log_every == 0 || step == steps)) {
        tally.wait_s = data_wait_seconds(r);
        log_server_step(sh, epoch, step, steps, agg.step(), per_update, tally, window, "; try a lower --base-lr");
      }
    }
    const int64_t update = agg.step();
    auto read = [&](float* dst) { agg.read(update, dst); };
    const bool stop = server_epoch_end(r, sh, epoch, update, update_prev, update * per_update, bn_batches, host, read,
                                       read, [&] {
                                         const std::vector<int64_t> d = agg.dropped(), a = agg.accepted();
                                         std::vector<int64_t> dd(d.size()), ad(a.size());
                                         for (size_t k = 0; k < d.size(); ++k) {
                                           dd[k] = d[k] - dropped_at_epoch[k];
                                           ad[k] = a[k] - accepted_at_epoch[k];
                                         }
                                         std::ostringstream os;
                                         os << (code_ ? "coded: epoch " : "backup: epoch ") << epoch
                                            << (code_ ? ", messages not used per worker:" : ", dropped per worker:");
                                         for (int64_t x : dd) os << " " << x;
                                         progress_.message(os.str());
                                         return nlohmann::json{{"type", "backup"}, {"epoch", epoch},
                                                               {"update", update}, {"accepted", ad},
                                                               {"dropped", dd}};
                                       });
    dropped_at_epoch = agg.dropped();
    accepted_at_epoch = agg.accepted();
    update_prev = update;
    stopped = stop;
  }
  guard.armed = false;
  if (r == 0) server_summary(sh, agg.step(), per_update, stopped, tally);
}

}  // namespace lockstep::engine
