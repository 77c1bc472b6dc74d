// Trainer: drives a run from a validated TrainConfig. It builds one Worker per device (one
// thread each), their communicators (NCCL for one worker per GPU, the local host-memory group for
// CPU workers or workers sharing a GPU) and sync strategies (engine/sync/: all-reduce reducers,
// or majority-vote signs, also for one worker), the batch sources (each worker its shard),
// the learning-rate schedule (fed the global batch) and the run log; then every worker thread
// loops epochs of micro-batches and updates in lockstep. Rank 0's weights are broadcast first so
// every replica starts identical; BN running statistics are averaged before each evaluation;
// evaluation is distributed and its counts summed. Loss and accuracy are read back every
// --log-every steps and summed over workers; rank 0 logs. A loss that turns non-finite stops the
// run with an error naming where. A failure in any worker aborts the communicators, so no
// other worker hangs, and the run fails with "worker r failed: <reason>".
// The other modes have their own loops: --sync average (trainer.cpp: no per-step exchange, the
// models averaged), async (trainer_async.cpp, a parameter server), backup and coded
// (trainer_backup.cpp, an aggregator that takes the first N or N - s messages of each step);
// checkpoints, resume and --init-from live in trainer_checkpoint.cpp.
#pragma once

#include <array>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "engine/async/backup_aggregator.h"
#include "engine/async/interleaving.h"
#include "engine/async/parameter_server.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/coded/gradient_code.h"

#include "engine/comm/communicator.h"
#include "engine/comm/processes.h"
#include "engine/config.h"
#include "engine/metrics.h"
#include "engine/reducer.h"
#include "engine/schedule.h"
#include "engine/straggler.h"
#include "engine/sync/sign_sync.h"
#include "engine/worker.h"

namespace lockstep::engine {

// The worker options that a config implies.
WorkerOptions worker_options(const TrainConfig& c);

class Trainer {
 public:
  // processes: the processes of a multi-process launch (null or one process: this one alone).
  Trainer(const TrainConfig& config, Progress& progress, Processes* processes = nullptr);
  ~Trainer();
  RunSummary run();
  // One distributed evaluation pass over the validation shards; also `lockstep eval`.
  EvalRecord evaluate(int epoch, int64_t update, double time);

  // Workers over all processes; this process's workers are global ranks first_rank() + 0..local_workers()-1.
  int world() const { return world_; }
  int local_workers() const { return static_cast<int>(workers_.size()); }
  int first_rank() const { return first_rank_; }
  // This process's worker `rank` (0..local_workers()-1).
  Worker& worker(int rank = 0) { return *workers_.at(rank); }
  // The sync strategy of a worker (null for a lone all-reduce worker), and the same as a Reducer
  // or a SignSync when it is one.
  SyncStrategy* sync(int rank) { return syncs_.empty() ? nullptr : syncs_.at(rank).get(); }
  Reducer* reducer(int rank) { return dynamic_cast<Reducer*>(sync(rank)); }
  SignSync* sign_sync(int rank) { return dynamic_cast<SignSync*>(sync(rank)); }
  // Called by every worker thread before each micro-batch (rank, epoch, step): for tests that
  // inject failures and for straggler experiments.
  void set_step_hook(std::function<void(int, int, int64_t)> hook) { step_hook_ = std::move(hook); }
  // A flag (set by SIGINT/SIGTERM) that stops the run at the next update every worker can reach,
  // with a checkpoint (ARCHITECTURE decision 11: a stop never loses work).
  void set_stop_flag(const std::atomic<bool>* flag) { stop_flag_ = flag; }
  // Called after every optimizer update of the run with its index (0-based), by whichever thread
  // applied it (rank 0 in the synchronous modes, the pushing worker in async, the aggregator's
  // last contributor in backup/coded): step-time benchmarks.
  void set_update_hook(std::function<void(int64_t)> hook) { update_hook_ = std::move(hook); }
  // Called at each stage of a checkpoint save (write_checkpoint's stages): crash tests.
  void set_checkpoint_hook(StageHook hook) { checkpoint_hook_ = std::move(hook); }
  // The server modes' state, during and after run(): --sync async's parameter server, the backup
  // and coded aggregator, the injected stragglers (null when the mode has none).
  ParameterServer* parameter_server() { return ps_.get(); }
  BackupAggregator* backup_aggregator() { return backup_.get(); }
  const StragglerInjector* stragglers() const { return stragglers_.get(); }
  // The learning-rate schedule's index for a server mode's update u. --sync async lays its schedule
  // out for every worker active (an epoch = world x updates_per_epoch updates), but an epoch of the
  // --async-ramp-epochs ramp has only its active workers' updates: u maps to the same fraction of
  // the same epoch, so warmup, step milestones and a cosine's end land on their epochs. Other
  // modes: u itself.
  int64_t schedule_index(int64_t u) const;
  float server_lr(int64_t u) const { return schedule_->lr(schedule_index(u)); }
  // Where a resumed run continues: (epoch, micro-batches done in it, updates done).
  int start_epoch() const { return start_.epoch; }
  int64_t start_step() const { return start_.step; }
  int64_t start_update() const { return start_.update; }

 private:
  struct Shared;  // what the worker threads of one run share
  struct Start {
    int epoch = 1;
    int64_t step = 0, update = 0, images = 0, bn_batches = 0;
    float lr = 0;
  };
  // --sync async (trainer_async.cpp): the server, and each worker's loop against it.
  void start_async();
  // Where a server mode's shards live: the workers' distinct GPUs in order, or host memory.
  std::vector<Device> server_devices() const;
  void train_rank_async(int rank, Shared& sh);
  // A server-mode worker's run totals: bytes moved, seconds spent in its exchanges with the server
  // (reads and pushes, the waits for a step's aggregate and the server's update inside them: its
  // exposed communication) and waiting for data.
  struct ServerTally {
    CommBytes bytes;
    double comm_s = 0, wait_s = 0;
  };
  // Seconds rank r's data sources have waited for batches (a coded worker's part sources included).
  double data_wait_seconds(int rank) const;
  // Where rank 0's previous step record left off: a server mode's next record covers the interval since.
  struct LogWindow {
    std::chrono::steady_clock::time_point time;
    int64_t update = 0;
    ServerTally tally;  // rank 0's totals then
  };
  // A server mode's step record (rank 0's own loss, data wait, exposed communication and bytes;
  // update and images/s from the server's count); `tally`: rank 0's run totals so far. Moves
  // `window` to now.
  void log_server_step(Shared& sh, int epoch, int64_t step, int64_t steps, int64_t update, int64_t per_update,
                       const ServerTally& tally, LogWindow& window, const char* advice);
  // Rank 0's summary fields of a server mode from its totals.
  void server_summary(Shared& sh, int64_t updates, int64_t per_update, bool stopped, const ServerTally& tally) const;
  // The end of an epoch in a server mode (async, backup): barrier, rank 0 logs record() and takes
  // the stop decision, every worker evaluates read_eval's parameters, loads read_model's, and the
  // checkpoint (if due) is written. Returns whether every worker stops.
  bool server_epoch_end(int rank, Shared& sh, int epoch, int64_t update, int64_t update_prev, int64_t samples_seen,
                        int64_t bn_batches, std::vector<float>& host, const std::function<void(float*)>& read_eval,
                        const std::function<void(float*)>& read_model, const std::function<nlohmann::json()>& record);
  // --sync backup and --sync coded (trainer_backup.cpp): the aggregator takes the first N (backup)
  // or N - s (coded, decoding) messages of each step.
  void start_backup();
  void train_rank_backup(int rank, Shared& sh);
  // --straggler: sleeps where a slow worker would be slow (before its micro-batch); micro counts
  // the worker's micro-batches of the run, compute_s is its last one's time.
  void straggle(int rank, int64_t micro, double compute_s);
  int active_workers(int epoch) const;  // the ramp-up
  void init_from_weights();
  void load_eval_weights();
  void restore(const LoadedCheckpoint& ck);
  // Whether every worker stops after `update` (--stop-after, or the stop flag agreed on).
  bool should_stop(int r, Shared& sh, int64_t update);
  // The thread that logs and writes checkpoints: global rank 0.
  bool driver(int r) const { return first_rank_ + r == 0; }
  // Joined over MPI (also as the only process of mpirun -np 1): the cross-process paths.
  bool several_processes() const { return processes_ && processes_->joined(); }
  // Gathers every rank's staged checkpoint state to global rank 0 (multi-process runs).
  void gather_staged(int r, Shared& sh);
  // Every worker stages its own state, rank 0 writes the checkpoint (after a barrier).
  void save_checkpoint(int rank, Shared& sh, int next_epoch, int64_t epoch_step, int64_t update, int64_t images,
                       int64_t bn_batches, float lr, bool finished);
  void make_synthetic_sources();
  void make_loader_sources();
  void train_rank(int rank, Shared& shared);
  // models_differ: --sync average between averagings (evaluate the average, keep each model).
  EvalRecord evaluate_rank(int rank, int epoch, int64_t update, double time, bool models_differ);
  // Rank 0's record of an evaluation: the log, the progress line, the summary.
  void record_eval(Shared& sh, const EvalRecord& e);
  // --sync average: every worker's parameters and BN statistics become their average.
  // Returns the bytes this worker moved (engine/sync/strategy.h's formulas).
  CommBytes average_models(int rank);
  // Runs f(rank) on one thread per worker; the first failure aborts the group and is rethrown
  // as "worker r failed: <reason>" after every thread has stopped.
  void on_every_worker(const std::function<void(int)>& f);

  TrainConfig config_;
  Progress& progress_;
  Processes* processes_ = nullptr;
  int world_ = 1, first_rank_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Communicator>> comms_;
  std::vector<std::unique_ptr<SyncStrategy>> syncs_;  // one per worker; none for one all-reduce worker
  std::vector<std::array<OwnedTensor, 2>> eval_stash_;  // --sync average: params, buffers per local worker
  std::unique_ptr<LrSchedule> schedule_;
  int64_t updates_per_epoch_ = 0;
  int cpu_threads_ = 1;
  std::function<void(int, int, int64_t)> step_hook_;
  const std::atomic<bool>* stop_flag_ = nullptr;
  std::function<void(int64_t)> update_hook_;
  StageHook checkpoint_hook_;
  Start start_;
  std::optional<std::string> resume_note_;  // the resume record for the run log
  std::unique_ptr<ParameterServer> ps_;
  std::unique_ptr<BackupAggregator> backup_;
  std::unique_ptr<GradientCode> code_;                                   // --sync coded
  std::vector<std::vector<std::unique_ptr<BatchSource>>> part_sources_;  // [worker][k]: shard of parts(worker)[k]
  std::unique_ptr<StragglerInjector> stragglers_;
  std::unique_ptr<Interleaving> interleaving_;
  std::vector<float> resume_ps_momentum_, resume_ps_ema_;  // --resume of an async run
};

}  // namespace lockstep::engine
