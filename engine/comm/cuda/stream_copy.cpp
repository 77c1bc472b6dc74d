// Host staging for LocalCommunicator on a GPU: copies on the comm stream, then a synchronize,
// so the copy sees everything queued on the comm stream before it (ARCHITECTURE decision 7).
#include "engine/comm/cuda/stream_copy.h"

#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_state.h"

namespace lockstep::engine::comm_cuda {

void copy_on_comm_stream(Context& ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  cudaStream_t s = ctx.cuda().comm;
  CUDA_CHECK(cudaSetDevice(ctx.cuda().device));
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
}

void sync_comm_stream(Context& ctx) { CUDA_CHECK(cudaStreamSynchronize(ctx.cuda().comm)); }

}  // namespace lockstep::engine::comm_cuda
