// Creating the N communicators of one group together: one per worker, handed out by rank.
//   make_local_group(n, options): threads of this process (CPU workers, or workers sharing GPUs).
//   make_nccl_group(devices):     one NCCL rank per GPU in `devices`, created on the calling
//                                  thread (see engine/comm/cuda/nccl_communicator.h); throws a
//                                  clear Error in a build without the CUDA backend or without a GPU.
//                                  With a NcclSpan, this process's share of one communicator
//                                  spanning every process's GPUs.
// Communicator i has rank i (in a span: first_rank + i). They may be moved to their worker threads; the group's shared state
// lives until the last of them is destroyed, so no rank's resources vanish under a waiting peer.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/comm/communicator.h"
#include "engine/comm/cuda/nccl_communicator.h"
#include "engine/comm/local_communicator.h"
#include "engine/comm/processes.h"

namespace lockstep::engine {

std::vector<std::unique_ptr<Communicator>> make_local_group(int n, LocalOptions options = {});

std::vector<std::unique_ptr<Communicator>> make_nccl_group(const std::vector<int>& devices,
                                                           NcclOptions options = {}, const NcclSpan& span = {});

// This process's share of one NCCL communicator over every process's GPUs: process 0 makes the
// unique id and broadcasts it over MPI (a collective: every process calls this).
NcclSpan nccl_span_over(Processes& procs, int world, int first_rank);

// Runs f(rank) on one thread per communicator of the group (on the calling thread when there is
// one). The first rank to fail aborts the group, so the others stop instead of waiting for it;
// once every thread has joined, that first failure is rethrown as Error("<who> r failed:
// <reason>"), or as the bare reason when the group has one rank.
void run_on_every_rank(std::vector<std::unique_ptr<Communicator>>& comms, const std::function<void(int)>& f,
                       const std::string& who = "worker");

}  // namespace lockstep::engine
