// Launch geometry of lockstep's CUDA batch-norm kernels, a function of the shape and dtype only
// (never of the GPU), so results are the same on every card. Rows (N*H*W) are split into
// contiguous chunks (grid.x); channels into tiles (grid.y). A thread owns `vec` adjacent
// channels: 1 in the scalar kernels, 16 bytes' worth (4 f32, 8 bf16/f16) in the vector ones,
// which run whenever C is a multiple of that and every tensor is 16-byte aligned.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/batchnorm_math.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/dtype.h"
#include "kernels/error.h"
#include "kernels/shape.h"

namespace lockstep::cuda {

// The scalar kernels' block: 32 channels (a warp reads 32 consecutive values of one row) by 8
// row lanes.
constexpr int kBnTileC = 32;
constexpr int kBnRowsY = 8;
// The finalize kernels' block: 32 channels by 32 lanes over the chunks' partials.
constexpr int kBnFinalizeLanes = 32;
static_assert(kBnTileC * kBnRowsY == kThreads, "one block is kThreads threads");

struct BnGeometry {
  int vec = 1;                 // channels per thread
  int block_x = kBnTileC;      // threads across a tile (vectors of one row)
  int block_y = kBnRowsY;      // row lanes
  int64_t rows = 0;            // N * H * W
  int64_t channels = 0;        // C
  int64_t vectors = 0;         // C / vec
  int64_t tiles = 0;           // grid.y: block_x vectors each
  int64_t chunks = 0;          // grid.x
  int64_t rows_per_chunk = 0;  // the last chunk may hold fewer
  size_t workspace_bytes() const { return 2 * static_cast<size_t>(chunks * channels) * sizeof(float); }
  dim3 grid() const { return dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(tiles)); }
  dim3 block() const { return dim3(static_cast<unsigned>(block_x), static_cast<unsigned>(block_y)); }
  dim3 finalize_grid() const { return dim3(static_cast<unsigned>((channels + kBnTileC - 1) / kBnTileC)); }
  dim3 finalize_block() const { return dim3(kBnTileC, kBnFinalizeLanes); }
};

inline int bn_vec_width(DType dt) { return 16 / static_cast<int>(dtype_size(dt)); }

// The vector kernels apply: every thread's channels are one aligned 16-byte load of each row.
inline bool bn_vectorizable(const Shape& x, DType dt) { return x[3] % bn_vec_width(dt) == 0; }

// About kTargetBlocks blocks (enough to fill any GPU), never chunks of fewer than 64 rows or
// than the block's row lanes (unless there are fewer rows than that).
inline BnGeometry bn_geometry(const Shape& x, DType dt, bool vector) {
  constexpr int64_t kTargetBlocks = 1024;
  constexpr int64_t kMinRowsPerChunk = 64;
  BnGeometry g;
  g.rows = bn::rows_of(x);
  g.channels = x[3];
  if (vector) {
    g.vec = bn_vec_width(dt);
    LS_CHECK(g.channels % g.vec == 0, "batchnorm: " << g.channels << " channels are not a multiple of " << g.vec);
    g.vectors = g.channels / g.vec;
    int bx = 1;  // the largest power of two <= min(vectors, 32): block_x divides kThreads
    while (bx * 2 <= std::min<int64_t>(g.vectors, 32)) bx *= 2;
    g.block_x = bx;
    g.block_y = kThreads / bx;
  } else {
    g.vectors = g.channels;
  }
  g.tiles = (g.vectors + g.block_x - 1) / g.block_x;
  LS_CHECK(g.tiles <= 65535, "batchnorm: " << g.channels << " channels are more than the CUDA grid holds");
  const int64_t min_rows = std::max<int64_t>(kMinRowsPerChunk, g.block_y);
  int64_t by_target = (kTargetBlocks + g.tiles - 1) / g.tiles;
  int64_t by_rows = (g.rows + min_rows - 1) / min_rows;
  int64_t chunks = std::max<int64_t>(1, std::min(by_target, by_rows));
  g.rows_per_chunk = (g.rows + chunks - 1) / chunks;
  g.chunks = (g.rows + g.rows_per_chunk - 1) / g.rows_per_chunk;  // every chunk non-empty
  return g;
}

#if defined(__CUDACC__)
// Rows [begin, end) of chunk p.
__device__ __forceinline__ void bn_chunk_rows(int64_t p, int64_t rows, int64_t rows_per_chunk, int64_t& begin,
                                              int64_t& end) {
  begin = p * rows_per_chunk;
  end = begin + rows_per_chunk < rows ? begin + rows_per_chunk : rows;
}
#endif

// Row kernels of the vector geometry (kernels/cuda/batchnorm_vec.cu); the arguments and the
// per-element math are those of the scalar kernels in kernels/cuda/batchnorm.cu.
void bn_moments_vec(cudaStream_t st, const BnGeometry& g, DType dt, const void* x, float* part_mean,
                    float* part_m2);
void bn_apply_vec(cudaStream_t st, const BnGeometry& g, DType dt, bool infer, const void* x, const void* residual,
                  void* y, const float* mean, const float* stat, const float* gamma, const float* beta, float eps,
                  bool relu);
void bn_grad_sums_vec(cudaStream_t st, const BnGeometry& g, DType dt, const void* x, const void* y, const void* dy,
                      const float* save_mean, const float* save_invstd, const float* gamma, const float* beta,
                      bn::ReluMask mask, float* part_g, float* part_gx);
void bn_dx_vec(cudaStream_t st, const BnGeometry& g, DType dt, const void* x, const void* y, const void* dy, void* dx,
               void* dresidual, const float* save_mean, const float* save_invstd, const float* gamma,
               const float* beta, const float* dbeta, const float* dgamma, bn::ReluMask mask);

}  // namespace lockstep::cuda
