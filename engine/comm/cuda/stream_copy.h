// Host <-> device copies ordered on a worker's comm stream, declared without CUDA headers so
// that engine/comm/local_communicator.cpp compiles in every build. Built only with CUDA.
#pragma once

#include <cstddef>

#include "kernels/context.h"

namespace lockstep::engine::comm_cuda {

// dst <- src (`bytes` bytes, one side on ctx's GPU, the other on the host), queued on
// ctx.cuda().comm after the work already there; returns when the copy has completed.
void copy_on_comm_stream(Context& ctx, void* dst, const void* src, size_t bytes);
// Returns when everything queued on ctx.cuda().comm has completed.
void sync_comm_stream(Context& ctx);

}  // namespace lockstep::engine::comm_cuda
