// CUDA 1-bit sign ops.
// pack:   one thread per element; a warp's 32 consecutive elements form one word, which
//         __ballot_sync returns directly (lane k's predicate is bit k). The grid-stride loop
//         runs while the warp's first element is in range, so all 32 lanes reach the ballot;
//         lanes past the end vote 0, which leaves the padding bits 0.
// unpack: one thread per element.
// momentum: one thread per element (m = beta * m + (1 - beta) * g, rounded as on the CPU).
// vote:   one thread per word, bit-sliced counting over the N rows (kernels/sign_math.h);
//         consecutive threads read consecutive words of each row, so loads are coalesced.
#include "kernels/sign.h"
#include "kernels/sign_math.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

static_assert(kThreads % 32 == 0, "sign_pack needs whole warps");

template <typename T>
__global__ void sign_pack_kernel(const T* __restrict__ x, uint32_t* __restrict__ packed, int64_t n) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;  // a multiple of 32
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i - lane < n; i += stride) {
    const uint32_t bit = i < n ? sign_bit(to_f32(x[i])) : 0u;
    const uint32_t word = __ballot_sync(0xffffffffu, bit);
    if (lane == 0) packed[i / 32] = word;
  }
}

template <typename T>
__global__ void sign_unpack_kernel(const uint32_t* __restrict__ packed, T* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_f32<T>(sign_value(packed[i / 32], i));
}

__global__ void sign_vote_kernel(const uint32_t* __restrict__ packed, int N, int64_t words,
                                 int64_t n_elements, uint32_t* __restrict__ vote) {
  for (int64_t w = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; w < words;
       w += int64_t(gridDim.x) * blockDim.x)
    vote[w] = sign_vote_word(packed + w, words, N) & sign_valid_mask(w, n_elements);
}

__global__ void sign_momentum_kernel(float beta, const float* __restrict__ g, float* __restrict__ m, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    m[i] = sign_momentum_element(beta, m[i], g[i]);
}

void sign_pack(Context& ctx, const Tensor& x, Tensor& packed) {
  check_sign_pack_args(ctx, x, packed);
  const int64_t n = x.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(x.dtype(), T, {
    sign_pack_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(
        static_cast<const T*>(x.raw()), packed.data<uint32_t>(), n);
  });
  CUDA_CHECK_LAUNCH();
}

void sign_unpack(Context& ctx, const Tensor& packed, Tensor& out) {
  check_sign_unpack_args(ctx, packed, out);
  const int64_t n = out.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(out.dtype(), T, {
    sign_unpack_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(
        packed.data<uint32_t>(), static_cast<T*>(out.raw()), n);
  });
  CUDA_CHECK_LAUNCH();
}

void sign_vote(Context& ctx, const Tensor& packed, int64_t n_elements, Tensor& vote) {
  check_sign_vote_args(ctx, packed, n_elements, vote);
  const int64_t words = packed.dim(1);
  if (words == 0) return;
  sign_vote_kernel<<<grid_for(words), kThreads, 0, stream(ctx)>>>(
      packed.data<uint32_t>(), static_cast<int>(packed.dim(0)), words, n_elements,
      vote.data<uint32_t>());
  CUDA_CHECK_LAUNCH();
}

void sign_momentum(Context& ctx, float beta, const Tensor& g, Tensor& m) {
  check_sign_momentum_args(ctx, beta, g, m);
  const int64_t n = g.numel();
  if (n == 0) return;
  sign_momentum_kernel<<<grid_for(n), kThreads, 0, stream(ctx)>>>(beta, g.data<float>(), m.data<float>(), n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
