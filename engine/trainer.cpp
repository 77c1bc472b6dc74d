#include "engine/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/idx.h"
#include "data/loader.h"
#include "data/synthetic_source.h"
#include "engine/comm/group.h"
#include "engine/comm/hierarchical_communicator.h"
#include "engine/trainer_shared.h"
#include "kernels/copy.h"
#include "kernels/threads.h"

namespace lockstep::engine {

using data::SyntheticSource;
using data::SyntheticSpec;

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Streams of the synthetic data: training and validation samples never coincide.
constexpr uint64_t kTrainStream = 0, kValStream = 1;

// NCCL when every worker has a GPU of its own (one communicator over every process's GPUs);
// otherwise threads meeting in host memory, joined across processes through MPI.
std::vector<std::unique_ptr<Communicator>> make_group(const TrainConfig& c, const std::vector<Device>& devices,
                                                      Processes* procs, int world, int first_rank) {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(c.comm_timeout_s * 1000));
  const bool several = procs && procs->joined();
  if (devices.front().is_cuda() && c.workers_per_gpu == 1 && (devices.size() > 1 || several)) {
    std::vector<int> ids;
    for (const Device& d : devices) ids.push_back(d.index);
    NcclOptions o;
    o.timeout = timeout;
    if (!several) return make_nccl_group(ids, o);
    return make_nccl_group(ids, o, nccl_span_over(*procs, world, first_rank));
  }
  if (several && devices.front().is_cuda())
    throw ConfigError("--workers-per-gpu", "--workers-per-gpu " + std::to_string(c.workers_per_gpu) +
                                               " shares GPUs through host memory inside one process; across "
                                               "processes every worker needs a GPU of its own (NCCL)");
  LocalOptions o;
  o.timeout = timeout;
  // Across processes a worker waits inside its process for the leader, who waits across processes:
  // the leader's wait must expire first, since only it can tell which side failed.
  if (several) o.timeout = 2 * timeout + std::chrono::seconds(5);
  auto local = make_local_group(static_cast<int>(devices.size()), o);
  if (!several) return local;
  return make_hierarchical_group(std::move(local), *procs->comm());
}

// Every process must bring the same number of workers: ranks are process x workers + thread.
void check_same_workers(Processes& procs, int local) {
  Context host(Device::cpu());
  std::vector<int32_t> counts(static_cast<size_t>(procs.size()));
  int32_t mine = local;
  Tensor send(&mine, Shape{1}, DType::i32, Device::cpu());
  Tensor recv(counts.data(), Shape{procs.size()}, DType::i32, Device::cpu());
  procs.comm()->all_gather(host, send, recv);
  for (int p = 0; p < procs.size(); ++p)
    if (counts[static_cast<size_t>(p)] != local)
      throw ConfigError("--workers", "process " + std::to_string(procs.rank()) + " runs " + std::to_string(local) +
                                         " worker(s) but process " + std::to_string(p) + " runs " +
                                         std::to_string(counts[static_cast<size_t>(p)]) +
                                         "; every process of a run needs the same --workers / --gpus");
}

// The default job's data: Debian's Fashion-MNIST IDX files imported once into the cache folder.
void ensure_default_dataset(const TrainConfig& c, Progress& progress) {
  const std::filesystem::path src = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(src / "train-images-idx3-ubyte.gz"))
    throw ConfigError("--data", "the default job needs Fashion-MNIST in " + src.string() +
                                    " (Debian's dataset-fashion-mnist; tools/setup-deps.sh installs it), or give --data DIR");
  for (const char* split : {"train", "val"}) {
    const std::string prefix = std::string(split) == "train" ? "train" : "t10k";
    data::IdxImport spec;
    spec.images = src / (prefix + "-images-idx3-ubyte.gz");
    spec.labels = src / (prefix + "-labels-idx1-ubyte.gz");
    spec.root = c.data_dir;
    spec.split = split;
    spec.class_names = data::fashion_mnist_class_names();
    if (!std::filesystem::exists(std::filesystem::path(c.data_dir) / split))
      progress.message(std::string("importing Fashion-MNIST ") + split + " into " + c.data_dir + " (once)");
    data::import_idx(spec);
  }
}
}  // namespace

WorkerOptions worker_options(const TrainConfig& c) {
  WorkerOptions o;
  o.model.arch = c.arch;
  o.model.classes = c.classes;
  o.model.image_size = c.image_size;
  o.model.batch = c.batch_size;
  o.model.dtype = c.precision;
  o.model.search = c.conv_algo;
  o.model.stem_channels = c.stem_channels;
  o.model.stem_space_to_depth = c.stem_space_to_depth;
  o.model.bn_kernels = c.bn_kernels;
  o.optimizer.kind = c.optimizer == OptimizerKind::lars ? OptimizerConfig::Kind::lars : OptimizerConfig::Kind::sgd;
  o.optimizer.momentum = static_cast<float>(c.momentum);
  o.optimizer.nesterov = c.nesterov;
  // Sign mode: the strategy keeps the (Signum) momentum; the optimizer applies
  // x <- x - lr (vote + wd x), which is SGD with momentum 0 (engine/sync/sign_sync.h).
  if (c.sync == SyncKind::sign) {
    o.optimizer.momentum = 0.f;
    o.optimizer.nesterov = false;
  }
  o.optimizer.weight_decay = static_cast<float>(c.weight_decay);
  o.optimizer.wd_on_bn = c.wd_on_bn;
  o.optimizer.lars_eta = static_cast<float>(c.lars_eta);
  o.label_smoothing = static_cast<float>(c.label_smoothing);
  o.seed = c.seed;
  o.zero_init_residual = c.zero_init_residual;
  return o;
}

Trainer::Trainer(const TrainConfig& c, Progress& progress, Processes* processes)
    : config_(c), progress_(progress), processes_(processes) {
  const std::vector<Device> devices = c.worker_devices();
  const int local = static_cast<int>(devices.size());
  world_ = local;
  if (several_processes()) {
    if (processes_->several() && (c.sync == SyncKind::async || c.sync == SyncKind::backup || c.sync == SyncKind::coded))
      throw ConfigError("--sync", "--sync " + std::string(sync_name(c.sync)) +
                                      " keeps its server in host memory of one process; across processes (" +
                                      std::to_string(processes_->size()) +
                                      " launched) use --sync allreduce, sign or average, or run one process");
    LS_CHECK(c.processes == processes_->size(), "Trainer: the config says " << c.processes << " process(es) but "
                                                                            << processes_->size() << " were launched");
    check_same_workers(*processes_, local);
    world_ = local * processes_->size();
    first_rank_ = local * processes_->rank();
  }
  const int world = world_;
  cpu_threads_ = std::max(1, available_cores() / local);
  for (int r = 0; r < local; ++r) {
    try {
      workers_.push_back(std::make_unique<Worker>(devices[r], worker_options(c)));
    } catch (const Error& e) {
      if (std::string(e.what()).find("cudaMalloc") == std::string::npos) throw;
      throw Error("worker " + std::to_string(first_rank_ + r) + " on " + devices[r].str() + ": out of memory setting up " + c.arch +
                  " at --batch-size " + std::to_string(c.batch_size) + " (" + e.what() + "); lower --batch-size");
    }
  }
  comms_ = make_group(c, devices, processes_, world_, first_rank_);
  ReducerOptions ro;
  ro.bucket_mb = c.bucket_mb;
  ro.first_bucket_mb = std::min(ro.first_bucket_mb, c.bucket_mb);  // the first bucket never exceeds the cap
  ro.overlap = c.overlap;
  for (int r = 0; r < local; ++r) {
    Context& ctx = workers_[r]->ctx();
    DeviceScope scope(ctx.device());  // the strategy's buffers, events and first memsets are rank r's
    nets::ParamTable& params = workers_[r]->model().params();
    if (c.sync == SyncKind::sign) {
      SignSyncOptions so;
      so.momentum = static_cast<float>(c.sign_momentum);
      so.exchange = c.resolved_sign_exchange() == SignExchangeKind::sharded ? SignExchange::sharded : SignExchange::allgather;
      so.warmup_steps = c.sign_warmup_steps;
      so.buckets = ro;
      syncs_.push_back(std::make_unique<SignSync>(ctx, params, *comms_[r], so));
    } else if (world > 1 && c.sync == SyncKind::allreduce) {
      syncs_.push_back(std::make_unique<Reducer>(ctx, params, *comms_[r], ro));
    } else {
      break;
    }
    params.set_sink(syncs_[r].get());
  }
  // --sync average evaluates the workers' average between averagings: each keeps its own model
  // aside meanwhile, in buffers made once here (no allocation at an epoch's end).
  if (c.sync == SyncKind::average && world > 1 && c.average_every != 1)
    for (int r = 0; r < local; ++r) {
      DeviceScope scope(workers_[r]->ctx().device());
      nets::ParamTable& t = workers_[r]->model().params();
      eval_stash_.push_back({OwnedTensor(workers_[r]->ctx().device(), t.params().shape(), DType::f32),
                             OwnedTensor(workers_[r]->ctx().device(), t.buffers().shape(), DType::f32)});
    }
  progress_.message(workers_[0]->model().memory_plan().str() + (world > 1 ? " per worker" : ""));
  // What --bn-kernels resolved to: worth a line only where there is a choice (CUDA).
  if (const std::string bn = workers_[0]->model().bn_kernels_used(); config_.device.is_cuda() && !bn.empty())
    progress_.message("batch norm kernels: " + bn + " (--bn-kernels " + bn_kernels_name(config_.bn_kernels) + ")");
  // A graph search: how many convolution directions the graph API planned (the rest: legacy).
  if (const std::string api = workers_[0]->model().conv_api_used(); !api.empty())
    progress_.message("convolutions: cuDNN's " + api + " directions (--conv-algo " +
                      conv_algo_name(config_.conv_algo) + "; the rest through the legacy API)");
  if (c.sync == SyncKind::sign) {
    std::ostringstream os;
    os << "sync: sign (Signum momentum " << c.sign_momentum << ", "
       << (world > 1 ? std::string(sign_exchange_kind_name(c.resolved_sign_exchange())) + " exchange" : "one worker");
    if (c.sign_warmup_steps > 0) os << ", " << c.sign_warmup_steps << " all-reduce warmup update(s)";
    os << ")";
    progress_.message(os.str());
  }
  if (c.sync == SyncKind::async) {
    std::ostringstream os;
    os << "sync: async (parameter server, " << c.ps_shards << " shard(s); every gradient applied as it arrives";
    if (c.async_round_robin) os << "; round-robin order";
    if (c.async_ramp_epochs > 0 && world > 1) os << "; workers ramp up over " << c.async_ramp_epochs << " epoch(s)";
    if (c.staleness_lr) os << "; lr / (staleness + 1)";
    if (c.ema > 0) os << "; moving average " << c.ema << (c.eval_ema ? ", evaluated" : "");
    os << ")";
    progress_.message(os.str());
  }
  if (c.sync == SyncKind::average)
    progress_.message(c.average_every > 0
                          ? "sync: average (local SGD: each worker trains on its shard, the models are averaged every " +
                                std::to_string(c.average_every) + " update(s))"
                          : "sync: average (SimuParallelSGD: each worker trains on its shard, the models are averaged "
                            "once, at the end; evaluations use the average)");
  if (world > 1) {
    std::ostringstream os;
    os << "workers: " << world;
    if (several_processes() && processes_->several()) os << " (" << processes_->size() << " processes x " << local << ")";
    os << " (" << comms_[0]->kind() << "), global batch " << c.global_batch();
    if (!syncs_.empty())
      os << ", " << syncs_[0]->layout().buckets.size() << " gradient buckets" << (c.overlap ? "" : ", no overlap");
    if (devices[0].is_cpu()) os << ", " << cpu_threads_ << " CPU thread(s) each";
    progress_.message(os.str());
  }

  if (c.sync == SyncKind::coded && c.command == Command::train) {
    code_ = std::make_unique<GradientCode>(world, c.stragglers,
                                           c.code == "fractional" ? CodeScheme::fractional : CodeScheme::cyclic, c.seed);
    std::ostringstream os;
    os << "sync: coded (" << c.code << " gradient code, " << world << " workers, any " << world - c.stragglers
       << " decode the full gradient; each worker computes " << code_->parts_per_worker()
       << " parts per step: " << code_->parts_per_worker() << "x the compute; rounding amplification "
       << code_->amplification() << ")";
    progress_.message(os.str());
  }
  if (c.synthetic) {
    make_synthetic_sources();
  } else {
    if (c.default_dataset) {
      // Process 0 imports the dataset (once, into the shared cache); the others wait for it.
      Context host(Device::cpu());
      if (several_processes() && processes_->rank() != 0) processes_->comm()->barrier(host);
      ensure_default_dataset(c, progress_);
      if (several_processes() && processes_->rank() == 0) processes_->comm()->barrier(host);
    }
    make_loader_sources();
  }
  if (c.command == Command::train) {
    int64_t micro_batches = workers_[0]->train_source()->batches_per_epoch();
    if (!c.synthetic && c.steps_per_epoch > micro_batches)
      progress_.message("note: --steps-per-epoch " + std::to_string(c.steps_per_epoch) + " is more than the " +
                        std::to_string(micro_batches) + " batches per worker the training set holds; an epoch is " +
                        std::to_string(micro_batches));
    if (!c.synthetic && c.steps_per_epoch > 0) micro_batches = std::min(micro_batches, c.steps_per_epoch);
    updates_per_epoch_ = updates_per_epoch(micro_batches, c.accumulate);
    ScheduleConfig sc = c.schedule_config(updates_per_epoch_);
    if (c.sync == SyncKind::backup) sc.global_batch = int64_t{c.batch_size} * (world - c.backup_workers);
    if (c.sync == SyncKind::async) {
      // The server applies every worker's gradient on its own: an update is one worker's batch,
      // and an epoch is every worker's updates.
      sc.global_batch = int64_t{c.batch_size} * c.accumulate;
      sc.updates_per_epoch = updates_per_epoch_ * world;
    }
    schedule_ = std::make_unique<LrSchedule>(sc);
    progress_.message("schedule: " + schedule_->describe());
  }
  if (!c.straggler.empty()) {
    stragglers_ = std::make_unique<StragglerInjector>(StragglerSpec::parse(c.straggler), world, c.seed);
    progress_.message("stragglers: " + stragglers_->spec().str());
  }
  if (c.sync == SyncKind::backup)
    progress_.message("sync: backup (" + std::to_string(world - c.backup_workers) + " gradients per update from " +
                      std::to_string(world) + " workers; the " + std::to_string(c.backup_workers) +
                      " latest of each step are dropped)");
  if (!c.init_from.empty()) init_from_weights();
  if (!c.weights.empty()) load_eval_weights();
  if (!c.resume.empty()) restore(open_checkpoint(c.resume));
}

void Trainer::straggle(int rank, int64_t micro, double compute_s) { stragglers_->inject(rank, micro, compute_s); }

void Trainer::make_synthetic_sources() {
  const TrainConfig& c = config_;
  for (int r = 0; r < local_workers(); ++r) {
    SyntheticSpec spec;
    spec.classes = c.classes;
    spec.image_size = c.image_size;
    spec.batch = c.batch_size;
    spec.seed = c.seed;
    spec.rank = first_rank_ + r;
    spec.world = world();
    std::unique_ptr<BatchSource> train, val;
    if (c.command == Command::train) {
      spec.batches_per_epoch = c.steps_per_epoch;
      spec.stream = kTrainStream;
      train = std::make_unique<SyntheticSource>(spec);
      if (code_) {  // --sync coded: the parts this worker computes are other ranks' shards
        part_sources_.emplace_back();
        for (int j : code_->parts(r)) {
          SyntheticSpec part = spec;
          part.rank = j;
          part_sources_.back().push_back(std::make_unique<SyntheticSource>(part));
        }
      }
    }
    if (c.eval_steps > 0) {
      spec.batches_per_epoch = c.eval_steps;
      spec.stream = kValStream;
      spec.flips = false;
      val = std::make_unique<SyntheticSource>(spec);
    }
    workers_[r]->set_sources(std::move(train), std::move(val));
  }
}

void Trainer::make_loader_sources() {
  const TrainConfig& c = config_;
  const std::filesystem::path root = c.data_dir;
  const bool split = std::filesystem::is_directory(root / "train");
  // Evaluation reads only the validation images: root/val, or root itself without a split.
  const bool eval_only = c.command == Command::eval;
  const std::filesystem::path index_root =
      eval_only ? (std::filesystem::is_directory(root / "val") ? root / "val" : root) : split ? root / "train" : root;
  data::FolderIndex train_index = data::scan_folder(index_root);
  for (const std::string& p : train_index.problems) progress_.message("data: skipped " + p);
  if (static_cast<int>(train_index.classes.size()) != c.classes)
    throw ConfigError("--classes", "--classes " + std::to_string(c.classes) + " but " + train_index.root.string() +
                                       " has " + std::to_string(train_index.classes.size()) + " class folders");
  std::optional<data::FolderIndex> val_index;
  if (eval_only) val_index = train_index;
  else if (split && std::filesystem::is_directory(root / "val")) val_index = data::scan_folder(root / "val", &train_index.classes);
  data::LoaderConfig lc;
  lc.image_size = c.image_size;
  lc.batch = c.batch_size;
  lc.world = world();
  lc.seed = c.seed;
  lc.threads = c.loader_threads > 0 ? c.loader_threads : std::max(1, available_cores() / local_workers());
  lc.prefetch = c.prefetch;
  lc.bad_images = c.bad_images == "fail" ? data::BadImagePolicy::fail : data::BadImagePolicy::skip;
  lc.max_bad_fraction = c.max_bad_fraction;
  lc.augment.scale_min = c.crop_scale_min;
  std::ostringstream os;
  if (eval_only) os << "data: " << val_index->samples.size() << " validation images in " << train_index.classes.size() << " classes";
  else os << "data: " << train_index.samples.size() << " training images in " << train_index.classes.size() << " classes";
  if (val_index && !eval_only) os << ", " << val_index->samples.size() << " validation images";
  os << "; " << lc.threads << " decode thread(s) per worker";
  progress_.message(os.str());
  for (int r = 0; r < local_workers(); ++r) {
    lc.rank = first_rank_ + r;
    std::unique_ptr<BatchSource> train, val;
    if (c.command == Command::train) {
      lc.train = true;
      train = std::make_unique<data::Loader>(train_index, lc);
      if (code_) {
        part_sources_.emplace_back();
        for (int j : code_->parts(r)) {
          data::LoaderConfig part = lc;
          part.rank = j;
          part_sources_.back().push_back(std::make_unique<data::Loader>(train_index, part));
        }
      }
    }
    if (val_index) {
      lc.train = false;
      val = std::make_unique<data::Loader>(*val_index, lc);
    }
    workers_[r]->set_sources(std::move(train), std::move(val));
  }
}

Trainer::~Trainer() {
  // The workers' CUDA graphs go first: a graph that captured an NCCL collective holds its
  // communicator, which NCCL will not finalize while the graph lives (the communicators are
  // destroyed before the workers).
  for (auto& w : workers_) {
    w->model().params().set_sink(nullptr);
    w->drop_graphs();
  }
}

void Trainer::on_every_worker(const std::function<void(int)>& f) {
  run_on_every_rank(comms_, [&](int r) {
    workers_[r]->ctx().make_current();
    set_cpu_threads(cpu_threads_);
    f(r);
  });
}

void Trainer::record_eval(Shared& sh, const EvalRecord& e) {
  sh.log->log_eval(e);
  progress_.eval(e);
  sh.summary.add_eval(e);
}

CommBytes Trainer::average_models(int r) {
  Worker& w = *workers_[r];
  nets::ParamTable& t = w.model().params();
  w.begin_collective();  // after the update queued on the compute stream (or replayed in a graph)
  comms_[r]->all_reduce(w.ctx(), t.params(), ReduceOp::average);
  comms_[r]->all_reduce(w.ctx(), t.buffers(), ReduceOp::average);
  w.end_collective();
  w.model().parameters_updated(w.ctx());
  CommBytes b = all_reduce_bytes(static_cast<int64_t>(t.params().bytes()), world());
  b += all_reduce_bytes(static_cast<int64_t>(t.buffers().bytes()), world());
  return b;
}

EvalRecord Trainer::evaluate_rank(int r, int epoch, int64_t update, double time, bool models_differ) {
  Worker& w = *workers_[r];
  nets::ParamTable& t = w.model().params();
  // --sync average between averagings: evaluate the average without changing what each worker
  // trains on (a stash of its own model, restored after).
  if (models_differ) {
    auto& [stash_p, stash_b] = eval_stash_.at(static_cast<size_t>(r));
    copy(w.ctx(), t.params(), stash_p);
    copy(w.ctx(), t.buffers(), stash_b);
    average_models(r);
  } else if (world() > 1) {
    w.begin_collective();
    comms_[r]->all_reduce(w.ctx(), t.buffers(), ReduceOp::average);
    w.end_collective();
  }
  Stats s = w.all_reduce_stats(*comms_[r], w.evaluate_all());
  if (models_differ) {
    auto& [stash_p, stash_b] = eval_stash_.at(static_cast<size_t>(r));
    copy(w.ctx(), stash_p, t.params());
    copy(w.ctx(), stash_b, t.buffers());
    w.model().parameters_updated(w.ctx());
  }
  EvalRecord e;
  e.epoch = epoch;
  e.update = update;
  e.samples = s.samples;
  e.loss = s.loss();
  e.top1 = s.top1_acc();
  e.top5 = s.top5_acc();
  e.time = time;
  return e;
}

EvalRecord Trainer::evaluate(int epoch, int64_t update, double time) {
  LS_CHECK(workers_[0]->val_source() != nullptr, "evaluate: no validation data (--eval-steps 0)");
  EvalRecord out;
  on_every_worker([&](int r) {
    EvalRecord e = evaluate_rank(r, epoch, update, time, false);
    if (r == 0) out = e;
  });
  return out;
}

void Trainer::train_rank(int r, Shared& sh) {
  Worker& w = *workers_[r];
  Communicator& comm = *comms_[r];
  SyncStrategy* red = syncs_.empty() ? nullptr : syncs_[r].get();
  Context& ctx = w.ctx();
  nets::ParamTable& params = w.model().params();
  // Every replica starts from rank 0's weights and statistics (a resumed run has loaded each
  // rank's own, which the broadcast would overwrite).
  if (world() > 1 && config_.resume.empty()) {
    w.begin_collective();
    comm.broadcast(ctx, params.params(), 0);
    comm.broadcast(ctx, params.buffers(), 0);
    w.end_collective();
    w.model().parameters_updated(ctx);
  }
  BatchSource* train = w.train_source();
  const int K = config_.accumulate;
  const int64_t steps = updates_per_epoch_ * K;  // a trailing partial accumulation is not run
  const int64_t total_steps = steps * config_.epochs;
  const float loss_grad_scale = 1.f / static_cast<float>(int64_t{config_.batch_size} * K);
  const int64_t global_images_per_step = int64_t{config_.batch_size} * world();

  int64_t update = start_.update, images = start_.images, bn_batches = start_.bn_batches;
  const int64_t images_start = images;
  int64_t images_at_log = images, update_at_log = update;
  double comm_window = 0, comm_total = 0, wait_at_log = train->wait_seconds();
  CommBytes bytes_window, bytes_total;
  auto last_log = Clock::now();
  float lr = start_.lr;
  bool stopped = false;
  double compute_s = 0;
  // --sync average: whether the workers' models differ now (they train apart between averagings).
  const bool averaging = config_.sync == SyncKind::average && world() > 1;
  bool models_differ = averaging && (config_.average_every == 0 ? start_.update > 0
                                                                 : start_.update % config_.average_every != 0);
  auto checkpoint_due = [&](bool epoch_end, int epoch) {
    if (!config_.checkpoints || config_.checkpoint_every <= 0) return false;
    if (config_.checkpoint_in_epochs) return epoch_end && epoch % config_.checkpoint_every == 0;
    return update % config_.checkpoint_every == 0;
  };
  for (int epoch = start_.epoch; epoch <= config_.epochs && !stopped; ++epoch) {
    const int64_t first = epoch == start_.epoch ? start_.step : 0;
    w.start_train_epoch(epoch - 1, first);
    for (int64_t step = first + 1; step <= steps; ++step) {
      if (step_hook_) step_hook_(r, epoch, step);
      const int micro = static_cast<int>((step - 1) % K);
      const bool last = micro == K - 1;
      if (config_.cuda_graph) {
        // The whole micro-batch (exchange and update included) in one graph launch.
        if (last) lr = schedule_->lr(update);
        const Worker::StepRun run = w.train_micro_batch_graphed(micro > 0, last, loss_grad_scale, lr, red);
        if (last && red) {
          // A replay's exchange is hidden inside the graph: no host time to count.
          if (run != Worker::StepRun::replayed) comm_window += red->exposed_seconds();
          bytes_window += red->last_step_bytes();
        }
      } else {
        if (red) red->begin_step(last);
        if (stragglers_) straggle(r, bn_batches, compute_s);
        const auto t_compute = Clock::now();
        w.train_micro_batch(micro > 0, loss_grad_scale);
        if (stragglers_) {
          w.ctx().synchronize();  // the micro-batch's real compute time, for factor= stragglers
          compute_s = fastest(compute_s, seconds_since(t_compute));
        }
      }
      images += global_images_per_step;
      ++bn_batches;
      if (last) {
        if (!config_.cuda_graph) {
          if (red) {
            red->finish(ctx);
            comm_window += red->exposed_seconds();
            bytes_window += red->last_step_bytes();
          }
          if (PhaseTimer* t = w.phase_timer()) t->lap(Phase::comm);  // exposed communication (bench)
          lr = schedule_->lr(update);
          w.update(lr, 1.f);
        }
        if (update_hook_ && driver(r)) update_hook_(update);
        ++update;
        models_differ = averaging;
        if (averaging && config_.average_every > 0 && update % config_.average_every == 0) {
          bytes_window += average_models(r);
          models_differ = false;
        }
      }
      if (step % config_.log_every == 0 || step == steps) {
        Stats s = w.all_reduce_stats(comm, w.take_train_stats());  // the device read-back
        if (!std::isfinite(s.loss())) {
          std::ostringstream os;
          os << "training diverged: the loss is " << s.loss() << " at epoch " << epoch << ", step " << step
             << " (lr " << lr << "); try a lower --base-lr or a longer --warmup-epochs";
          throw Error(os.str());
        }
        if (driver(r)) {
          const double dt = seconds_since(last_log);
          last_log = Clock::now();
          StepRecord rec;
          rec.epoch = epoch;
          rec.step = step;
          rec.update = update;
          rec.lr = lr;
          rec.loss = s.loss();
          rec.top1 = s.top1_acc();
          rec.top5 = s.top5_acc();
          rec.img_per_s = dt > 0 ? static_cast<double>(images - images_at_log) / dt : 0;
          rec.time = seconds_since(sh.start);
          rec.interval_s = dt;
          rec.interval_updates = update - update_at_log;
          update_at_log = update;
          rec.skipped_updates = w.loss_scaler().skipped();
          rec.comm_s = comm_window;
          rec.wait_s = train->wait_seconds() - wait_at_log;
          wait_at_log = train->wait_seconds();
          rec.bytes_sent = bytes_window.sent;
          rec.bytes_received = bytes_window.received;
          comm_total += comm_window;
          comm_window = 0;
          bytes_total += bytes_window;
          bytes_window = {};
          images_at_log = images;
          sh.log->log_step(rec);
          sh.last_step = {{"epoch", epoch}, {"step", step}, {"update", update}, {"loss", rec.loss},
                          {"top1", rec.top1}, {"top5", rec.top5}, {"lr", rec.lr}};
          ProgressState p;
          p.epoch = epoch;
          p.epochs = config_.epochs;
          p.step = step;
          p.steps = steps;
          p.img_per_s = rec.img_per_s;
          p.loss = rec.loss;
          p.top1 = rec.top1;
          p.lr = lr;
          p.eta_s = eta_seconds((epoch - start_.epoch) * steps + step - start_.step,
                                total_steps - ((start_.epoch - 1) * steps + start_.step), rec.time);
          progress_.update(p);
          sh.summary.final_loss = rec.loss;
          sh.summary.final_top1 = rec.top1;
        }
      }
      // Mid-epoch checkpoints and stops, at update boundaries only (the epoch's end is below).
      if (last && step < steps) {
        const bool stop = should_stop(r, sh, update);
        if (config_.checkpoints && (stop || checkpoint_due(false, epoch)))
          save_checkpoint(r, sh, epoch, step, update, images, bn_batches, lr, false);
        if (stop) {
          stopped = true;
          break;
        }
      }
    }
    if (stopped) break;
    if (averaging && config_.average_every == 0 && epoch == config_.epochs) {
      bytes_window += average_models(r);  // SimuParallelSGD's one round of communication
      models_differ = false;
    }
    if (w.val_source()) {
      EvalRecord e = evaluate_rank(r, epoch, update, seconds_since(sh.start), models_differ);
      if (driver(r)) record_eval(sh, e);
    }
    const bool final_epoch = epoch == config_.epochs;
    const bool stop = !final_epoch && should_stop(r, sh, update);
    if (config_.checkpoints && (final_epoch || stop || checkpoint_due(true, epoch)))
      save_checkpoint(r, sh, epoch + 1, 0, update, images, bn_batches, lr, final_epoch);
    stopped = stop;
  }
  if (driver(r)) {
    sh.summary.updates = update;
    sh.summary.images = images - images_start;
    bytes_total += bytes_window;  // what moved after the last log (e.g. the final averaging)
    sh.summary.comm_seconds = comm_total + comm_window;
    sh.summary.bytes_sent = bytes_total.sent;
    sh.summary.bytes_received = bytes_total.received;
    sh.summary.wait_seconds = train->wait_seconds();
    sh.summary.skipped_updates = w.loss_scaler().skipped();
    sh.summary.stopped = stopped;
  }
}

RunSummary Trainer::run() {
  LS_CHECK(workers_[0]->train_source() != nullptr, "Trainer::run: built for evaluation only");
  Shared sh;
  const bool resumed = !config_.resume.empty();
  const bool writer = first_rank_ == 0;  // the process of global rank 0 writes the run folder
  if (writer) {
    sh.log = std::make_unique<RunLog>(config_.out_dir, resumed ? std::optional<int64_t>(start_.update) : std::nullopt);
    sh.log->write_config(config_.to_json());
    if (resumed) sh.log->log_resume(start_.update, config_.resume);
    if (config_.tensorboard) sh.summary.tensorboard_dir = sh.log->open_tensorboard().string();
    sh.summary.best_eval = sh.log->kept_best_eval();  // a resumed run's best so far
    // Until this process logs its own: the resumed run's last training loss and evaluation.
    if (const auto& lt = sh.log->kept_last_loss_top1()) {
      sh.summary.final_loss = lt->first;
      sh.summary.final_top1 = lt->second;
    }
    if (const auto& e = sh.log->kept_last_eval()) {
      sh.summary.has_eval = true;
      sh.summary.last_eval = *e;
    }
  }
  sh.staged.resize(static_cast<size_t>(world()));
  sh.stop_host.assign(static_cast<size_t>(local_workers()), 0.f);
  if (several_processes())
    for (int r = 0; r < local_workers(); ++r)
      sh.stop_word.emplace_back(workers_[r]->ctx().device(), Shape{1}, DType::f32);
  // Leftovers of a save that crashed (ARCHITECTURE decision 10) go before anything else is written.
  if (writer && config_.checkpoints && std::filesystem::is_directory(checkpoints_dir(config_.out_dir)))
    for (const std::filesystem::path& p : clean_stale_temporaries(checkpoints_dir(config_.out_dir)))
      progress_.message("checkpoint: removed " + p.string() + ", left by an interrupted save");
  sh.summary.out_dir = config_.out_dir;
  sh.summary.start_update = start_.update;
  sh.summary.workers = world();
  sh.summary.sync = std::string(sync_name(config_.sync));
  sh.start = Clock::now();
  if (config_.sync == SyncKind::async) {
    start_async();
    on_every_worker([&](int r) { train_rank_async(r, sh); });
  } else if (config_.sync == SyncKind::backup || config_.sync == SyncKind::coded) {
    start_backup();
    on_every_worker([&](int r) { train_rank_backup(r, sh); });
  } else {
    on_every_worker([&](int r) { train_rank(r, sh); });
  }
  sh.summary.epochs = config_.epochs;
  if (stragglers_) sh.summary.straggler_delay_s = stragglers_->totals();
  if (backup_) sh.summary.dropped = backup_->dropped();
  if (start_.epoch > config_.epochs) {
    progress_.message("nothing to train: the checkpoint is at the end of epoch " + std::to_string(config_.epochs) +
                      " of " + std::to_string(config_.epochs) + " (give a larger --epochs to train on)");
    sh.summary.updates = start_.update;
  }
  sh.summary.seconds = seconds_since(sh.start);
  // Every skip of an unreadable image (each epoch meets it again), and the distinct ones.
  std::vector<const data::BatchSource*> sources;
  for (const auto& w : workers_) sources.insert(sources.end(), {w->train_source(), w->val_source()});
  for (const auto& parts : part_sources_)
    for (const auto& src : parts) sources.push_back(src.get());
  for (const data::BatchSource* src : sources) {
    if (!src) continue;
    sh.summary.bad_images += src->bad_samples();
    for (std::string& p : src->bad_sample_paths())
      if (sh.summary.bad_paths.size() < 100 &&
          std::find(sh.summary.bad_paths.begin(), sh.summary.bad_paths.end(), p) == sh.summary.bad_paths.end())
        sh.summary.bad_paths.push_back(std::move(p));
  }
  if (writer) {
    sh.log->log_summary(sh.summary);
    progress_.summary(sh.summary);
  }
  return sh.summary;
}

}  // namespace lockstep::engine
