// The Trainer's side of checkpoints: starting from torchvision-named weights (--init-from),
// restoring a checkpoint (--resume), agreeing on where to stop, and saving (engine/checkpoint/).
#include <algorithm>
#include <cstring>
#include <sstream>

#include "engine/trainer.h"
#include "engine/trainer_shared.h"
#include "kernels/copy.h"

#ifndef LOCKSTEP_VERSION
#define LOCKSTEP_VERSION "unknown"
#endif

namespace lockstep::engine {

namespace fs = std::filesystem;

namespace {

std::string rank_prefix(int r) { return "rank" + std::to_string(r) + "."; }

// "--arch resnet50 but the checkpoint has resnet18".
void require_same(const char* flag, const std::string& ours, const std::string& theirs, const fs::path& ck) {
  if (ours != theirs)
    throw ConfigError(flag, std::string(flag) + " " + ours + " but the checkpoint " + ck.string() + " has " + theirs);
}

}  // namespace

void Trainer::init_from_weights() {
  const SafetensorsFile f = SafetensorsFile::open(config_.init_from);
  WeightsLoadOptions o;
  o.reinit_fc_on_class_mismatch = true;
  WeightsLoadReport rep;
  for (auto& w : workers_) {
    w->ctx().make_current();
    rep = load_model_weights(w->model(), w->ctx(), f, o);
  }
  std::string note = "init: weights from " + config_.init_from;
  if (!rep.reinitialised.empty())
    note += " (fc re-initialised for " + std::to_string(config_.classes) + " classes: the file's has another count)";
  progress_.message(note);
}

void Trainer::load_eval_weights() {
  const SafetensorsFile f = SafetensorsFile::open(config_.weights);
  for (auto& w : workers_) {
    w->ctx().make_current();
    load_model_weights(w->model(), w->ctx(), f);
  }
  progress_.message("weights: " + config_.weights);
}

void Trainer::restore(const LoadedCheckpoint& ck) {
  const CheckpointState& st = ck.state;
  const TrainConfig saved = TrainConfig::from_json(st.config);
  require_same("--arch", config_.arch, saved.arch, ck.dir);
  require_same("--classes", std::to_string(config_.classes), std::to_string(saved.classes), ck.dir);
  require_same("--image-size", std::to_string(config_.image_size), std::to_string(saved.image_size), ck.dir);
  require_same("--sync", std::string(sync_name(config_.sync)), st.sync, ck.dir);
  require_same("--batch-size", std::to_string(config_.batch_size), std::to_string(st.batch_size), ck.dir);
  require_same("--accumulate", std::to_string(config_.accumulate), std::to_string(st.accumulate), ck.dir);
  require_same("--seed", std::to_string(config_.seed), std::to_string(st.seed), ck.dir);
  const bool same_world = st.world == world();
  if (same_world && st.updates_per_epoch > 0 && st.updates_per_epoch != updates_per_epoch_)
    throw ConfigError(config_.synthetic ? "--steps-per-epoch" : "--data",
                      "the checkpoint " + ck.dir.string() + " was saved by a run of " +
                          std::to_string(st.updates_per_epoch) + " updates per epoch; this one has " +
                          std::to_string(updates_per_epoch_) +
                          " (the training set or --steps-per-epoch changed), so its epochs and update count would "
                          "not continue; resume on the same data, or start a new run from its weights with "
                          "--init-from " + ck.dir.string());
  if (!same_world && config_.sync == SyncKind::coded)
    throw ConfigError("--workers", "--workers " + std::to_string(world()) + " but the checkpoint " + ck.dir.string() +
                                       " has " + std::to_string(st.world) + ": --sync coded's code is built for its workers");
  if (!same_world && (config_.sync == SyncKind::sign || config_.sync == SyncKind::average))
    throw ConfigError("--workers", "--workers " + std::to_string(world()) + " but the checkpoint " + ck.dir.string() +
                                       " has " + std::to_string(st.world) + ": --sync " +
                                       std::string(sync_name(config_.sync)) +
                                       " keeps momentum per worker, so the count cannot change");

  for (int r = 0; r < local_workers(); ++r) {
    const int g = first_rank_ + r;  // what the checkpoint calls this worker
    Worker& w = *workers_[r];
    Context& ctx = w.ctx();
    ctx.make_current();
    load_model_weights(w.model(), ctx, ck.model);
    nets::ParamTable& table = w.model().params();
    if (g > 0 && g < st.world && ck.workers) {
      std::vector<float> b = read_buffer_state(table, *ck.workers, rank_prefix(g));
      copy_from_host(ctx, b, table.buffers());
      if (config_.sync == SyncKind::average) {
        std::vector<float> p = read_param_state(table, *ck.workers, rank_prefix(g));
        copy_from_host(ctx, p, table.params());
        w.model().parameters_updated(ctx);
      }
    }
    if (config_.sync == SyncKind::sign) {
      std::vector<float> m = read_param_state(table, ck.optimizer, rank_prefix(g));
      copy_from_host(ctx, m, sign_sync(r)->momentum());
      sign_sync(r)->restore_updates(st.sign_updates);
    } else if (config_.sync == SyncKind::async || config_.sync == SyncKind::backup || config_.sync == SyncKind::coded) {
      if (r == 0) {
        // The server is built at run(): it takes these.
        if (config_.momentum != 0 && ck.optimizer.find(table.specs().front().name))
          resume_ps_momentum_ = read_param_state(table, ck.optimizer);
        if (config_.ema > 0 && ck.optimizer.find("ema." + table.specs().front().name))
          resume_ps_ema_ = read_param_state(table, ck.optimizer, "ema.");
      }
    } else if (config_.sync == SyncKind::average) {
      if (w.optimizer().momentum().numel() > 0 && !ck.optimizer.tensors().empty()) {
        std::vector<float> m = read_param_state(table, ck.optimizer, rank_prefix(g));
        copy_from_host(ctx, m, w.optimizer().momentum());
      }
    } else if (w.optimizer().momentum().numel() > 0 && !ck.optimizer.tensors().empty()) {
      std::vector<float> m = read_param_state(table, ck.optimizer);
      copy_from_host(ctx, m, w.optimizer().momentum());
    }
    w.loss_scaler().restore(st.scaler_enabled == w.loss_scaler().enabled() ? st.scaler_scale : w.loss_scaler().scale(),
                            st.scaler_clean, st.scaler_skipped);
    const WorkerCheckpoint& wc = st.workers[static_cast<size_t>(std::min(g, st.world - 1))];
    ctx.set_rng_offset(wc.rng_offset);
    if (same_world) {
      Stats s;
      s.loss_sum = wc.loss_sum;
      s.top1 = wc.top1;
      s.top5 = wc.top5;
      s.samples = wc.samples;
      w.restore_train_stats(s);
    }
  }

  const int64_t steps = updates_per_epoch_ * config_.accumulate;
  start_.epoch = st.epoch;
  start_.step = st.epoch_step;
  start_.update = st.update;
  start_.images = st.samples_seen;
  start_.bn_batches = st.bn_batches;
  start_.lr = st.lr;
  std::ostringstream os;
  if (!same_world || start_.step > steps) {
    // Re-shard: continue at the first whole update of the new size at or before the samples the
    // checkpoint's epoch had consumed, and count updates as the new run would have.
    const int64_t consumed = st.epoch_step * st.batch_size * st.world;
    const int64_t per_update = int64_t{config_.batch_size} * world() * config_.accumulate;
    start_.step = std::min(consumed / per_update, updates_per_epoch_) * config_.accumulate;
    start_.update = (start_.epoch - 1) * updates_per_epoch_ + start_.step / config_.accumulate;
    progress_.message("warning: resuming with " + std::to_string(world()) + " worker(s), the checkpoint had " +
                      std::to_string(st.world) + ": the data is re-sharded; epoch " + std::to_string(start_.epoch) +
                      " continues at step " + std::to_string(start_.step) + " of " + std::to_string(steps) +
                      " (" + std::to_string(consumed) + " of its samples were done, " +
                      std::to_string(start_.step / config_.accumulate * per_update) + " are skipped now)");
  }
  os << "resume: " << ck.dir.string() << " (update " << st.update << ", epoch " << start_.epoch << " step "
     << start_.step << ")";
  progress_.message(os.str());
}

void Trainer::gather_staged(int r, Shared& sh) {
  // One fixed-size record per rank: the WorkerCheckpoint, then BN statistics, own parameters and
  // momentum (zeros where a rank has none), all-gathered (the Communicator has no gather; this
  // runs only at checkpoints).
  Worker& w = *workers_[r];
  Context& ctx = w.ctx();
  nets::ParamTable& table = w.model().params();
  const Shared::Staged& mine = sh.staged[static_cast<size_t>(first_rank_ + r)];
  const size_t nb = static_cast<size_t>(table.buffers().numel());
  const size_t np = config_.sync == SyncKind::average ? static_cast<size_t>(table.params().numel()) : 0;
  size_t nm = 0;
  if (config_.sync == SyncKind::sign) nm = static_cast<size_t>(sign_sync(r)->momentum().numel());
  else if (config_.sync == SyncKind::average) nm = static_cast<size_t>(w.optimizer().momentum().numel());
  struct Header {
    uint64_t rng_offset;
    double loss_sum, top1, top5;
    int64_t samples;
  };
  const size_t bytes = sizeof(Header) + (nb + np + nm) * sizeof(float);
  std::vector<char> record(bytes, 0);
  const Header h{mine.worker.rng_offset, mine.worker.loss_sum, mine.worker.top1, mine.worker.top5, mine.worker.samples};
  std::memcpy(record.data(), &h, sizeof h);
  auto put = [&](size_t at, const std::vector<float>& v, size_t n) {
    if (!v.empty()) std::memcpy(record.data() + sizeof h + at * sizeof(float), v.data(), n * sizeof(float));
  };
  put(0, mine.buffers, nb);
  put(nb, mine.params, np);
  put(nb + np, mine.momentum, nm);
  const int64_t n = static_cast<int64_t>(bytes);
  OwnedTensor send(ctx.device(), Shape{n}, DType::u8), recv(ctx.device(), Shape{n * world()}, DType::u8);
  Tensor host(record.data(), Shape{n}, DType::u8, Device::cpu());
  copy(ctx, host, send);
  comms_[r]->all_gather(ctx, send, recv);
  ctx.synchronize();
  if (!driver(r)) return;
  std::vector<char> all(bytes * static_cast<size_t>(world()));
  Tensor all_host(all.data(), Shape{n * world()}, DType::u8, Device::cpu());
  copy(ctx, recv, all_host);
  for (int k = 0; k < world(); ++k) {
    const char* rec = all.data() + bytes * static_cast<size_t>(k);
    Shared::Staged& st = sh.staged[static_cast<size_t>(k)];
    Header hk;
    std::memcpy(&hk, rec, sizeof hk);
    st.worker = {hk.rng_offset, hk.loss_sum, hk.top1, hk.top5, hk.samples};
    auto get = [&](size_t at, size_t count) {
      std::vector<float> v(count);
      std::memcpy(v.data(), rec + sizeof hk + at * sizeof(float), count * sizeof(float));
      return v;
    };
    st.buffers = k > 0 ? get(0, nb) : std::vector<float>{};
    st.params = k > 0 && np > 0 ? get(nb, np) : std::vector<float>{};
    st.momentum = nm > 0 ? get(nb + np, nm) : std::vector<float>{};
  }
}

bool Trainer::should_stop(int r, Shared& sh, int64_t update) {
  if (config_.stop_after > 0 && update >= config_.stop_after) return true;  // the same on every rank
  if (!stop_flag_) return false;
  if (several_processes()) {
    // Each process sees its own signal at its own moment; every rank is at this same update, so
    // one all-reduce of the flags gives every rank of every process the same answer.
    Context& ctx = workers_[r]->ctx();
    float& host = sh.stop_host[static_cast<size_t>(r)];
    host = stop_flag_->load() ? 1.f : 0.f;
    Tensor h(&host, Shape{1}, DType::f32, Device::cpu());
    Tensor& word = sh.stop_word[static_cast<size_t>(r)];
    copy(ctx, h, word);
    comms_[r]->all_reduce(ctx, word, ReduceOp::sum);
    ctx.synchronize();
    copy(ctx, word, h);
    return host > 0;
  }
  std::lock_guard<std::mutex> lock(sh.stop_mutex);
  sh.max_update = std::max(sh.max_update, update);
  if (sh.stop_at < 0 && stop_flag_->load()) {
    // A rank may already have passed its check for max_update (only one can be ahead, by one
    // update: the next exchange needs every rank), so the agreed stop is the update after it;
    // a lone worker stops where it is.
    sh.stop_at = world() == 1 ? sh.max_update : sh.max_update + 1;
  }
  return sh.stop_at >= 0 && update >= sh.stop_at;
}

void Trainer::save_checkpoint(int r, Shared& sh, int next_epoch, int64_t epoch_step, int64_t update, int64_t images,
                              int64_t bn_batches, float lr, bool finished) {
  Worker& w = *workers_[r];
  Context& ctx = w.ctx();
  const int g = first_rank_ + r;
  Shared::Staged& mine = sh.staged[static_cast<size_t>(g)];
  const Stats pending = w.pending_train_stats();
  mine.worker = {ctx.rng_offset(), pending.loss_sum, pending.top1, pending.top5, pending.samples};
  const bool per_rank_optimizer = config_.sync == SyncKind::sign || config_.sync == SyncKind::average;
  if (g > 0) mine.buffers = host_copy(ctx, w.model().params().buffers());
  if (g > 0 && config_.sync == SyncKind::average) mine.params = host_copy(ctx, w.model().params().params());
  if (config_.sync == SyncKind::sign) mine.momentum = host_copy(ctx, sign_sync(r)->momentum());
  else if (per_rank_optimizer && w.optimizer().momentum().numel() > 0) mine.momentum = host_copy(ctx, w.optimizer().momentum());
  if (world() > 1) comms_[r]->barrier(ctx);  // every rank's state is staged
  if (several_processes()) gather_staged(r, sh);
  if (!driver(r)) return;

  CheckpointContents c;
  CheckpointState& st = c.state;
  st.lockstep_version = LOCKSTEP_VERSION;
  st.update = update;
  st.epoch = next_epoch;
  st.epoch_step = epoch_step;
  st.samples_seen = images;
  st.bn_batches = bn_batches;
  st.finished = finished;
  st.loader_epoch = next_epoch - 1;
  st.loader_position = epoch_step;
  st.updates_per_epoch = updates_per_epoch_;
  st.world = world();
  st.batch_size = config_.batch_size;
  st.accumulate = config_.accumulate;
  st.sync = std::string(sync_name(config_.sync));
  st.seed = config_.seed;
  for (const Shared::Staged& s : sh.staged) st.workers.push_back(s.worker);
  st.lr = lr;
  st.scaler_enabled = w.loss_scaler().enabled();
  st.scaler_scale = w.loss_scaler().scale();
  st.scaler_clean = w.loss_scaler().clean_steps();
  st.scaler_skipped = w.loss_scaler().skipped();
  st.sign_updates = config_.sync == SyncKind::sign ? sign_sync(0)->updates() : 0;
  nlohmann::json eval = nlohmann::json::object();
  if (sh.summary.has_eval) {
    const EvalRecord& e = sh.summary.last_eval;
    eval = {{"epoch", e.epoch}, {"update", e.update}, {"samples", e.samples},
            {"loss", e.loss},   {"top1", e.top1},     {"top5", e.top5}};
  }
  st.metrics = {{"train", sh.last_step}, {"eval", eval}};
  st.config = config_.to_json();
  c.model = model_state(w.model(), ctx, bn_batches);
  c.model_meta = {{"arch", config_.arch}, {"classes", std::to_string(config_.classes)},
                  {"image_size", std::to_string(config_.image_size)}};
  nets::ParamTable& table = w.model().params();
  // Moving the vectors keeps their heap buffers, so the entries' data pointers stay valid.
  auto append = [](HostTensors& to, HostTensors&& from) {
    for (auto& v : from.storage) to.storage.push_back(std::move(v));
    for (auto& e : from.entries) to.entries.push_back(std::move(e));
  };
  if (config_.sync == SyncKind::async) {
    // The server's state: momentum under the parameters' names, the moving average as ema.<name>.
    if (!ps_->momentum().empty()) c.optimizer = param_state(table, ps_->momentum());
    if (!ps_->ema().empty()) append(c.optimizer, param_state(table, ps_->ema(), "ema."));
  } else if (config_.sync == SyncKind::backup || config_.sync == SyncKind::coded) {
    if (!backup_->momentum().empty()) c.optimizer = param_state(table, backup_->momentum());
  } else if (per_rank_optimizer) {
    for (int k = 0; k < world(); ++k)  // one set of tensors per rank, in rank order
      if (!sh.staged[static_cast<size_t>(k)].momentum.empty())
        append(c.optimizer, param_state(table, sh.staged[static_cast<size_t>(k)].momentum, rank_prefix(k)));
  } else if (w.optimizer().momentum().numel() > 0) {
    c.optimizer = param_state(table, host_copy(ctx, w.optimizer().momentum()));
  }
  for (int k = 1; k < world(); ++k) {
    const Shared::Staged& st_k = sh.staged[static_cast<size_t>(k)];
    if (!st_k.params.empty()) append(c.workers, param_state(table, st_k.params, rank_prefix(k)));
    append(c.workers, buffer_state(table, st_k.buffers, rank_prefix(k)));
  }
  fs::path dir;
  try {
    dir = write_checkpoint(config_.out_dir, c, checkpoint_hook_);
  } catch (const NonFiniteCheckpoint& bad) {
    // Diverged between two loss checks (they run at log steps): the good checkpoints, `latest`
    // and --keep-last's choice stay as they are.
    const LatestPointer last = read_latest(config_.out_dir);
    std::ostringstream os;
    os << "training diverged: at update " << update << " " << bad.what() << "; no checkpoint was written, "
       << (last.name.empty() ? std::string("and the run has none yet")
                             : "the last good one is " + (checkpoints_dir(config_.out_dir) / last.name).string())
       << "; try a lower --base-lr";
    throw Error(os.str());
  }
  for (const fs::path& p : prune_checkpoints(config_.out_dir, config_.keep_last, dir))
    progress_.message("checkpoint: removed " + p.string() + " (--keep-last " + std::to_string(config_.keep_last) + ")");
  progress_.message("checkpoint: " + dir.string());
  sh.summary.checkpoint = dir.string();
  ++sh.summary.checkpoints_written;
}

}  // namespace lockstep::engine
