// 1-bit building blocks for signSGD with majority vote.
// Packing: element i goes to bit (i % 32) of word (i / 32); the bit is 1 for x >= 0 (sign(0) is
// counted as +, and -0 too) and 0 for x < 0 or NaN. Bits past the last element are 0.
// Momentum before the sign (Signum): m <- beta * m + (1 - beta) * g, per element, in f32.
// Voting over N packed vectors: a bit is 1 when more vectors have it 1 than 0. Tie rule (even N
// only): a tie takes the bit of the first vector (rank 0's), which keeps the vote unbiased
// where sign(0) = + would push every tied element the same way. Padding bits stay 0.
#pragma once

#include <cstdint>

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

constexpr int64_t sign_words(int64_t n) { return (n + 31) / 32; }

// x: float (n) (any float dtype on CUDA, f32 on CPU) -> packed: u32 (sign_words(n)).
void sign_pack(Context& ctx, const Tensor& x, Tensor& packed);
// packed: u32 (sign_words(n)) -> out: float (n) of +1 / -1.
void sign_unpack(Context& ctx, const Tensor& packed, Tensor& out);
// packed: u32 (N, words), one packed vector per row -> vote: u32 (words). `n_elements` is the
// length of the unpacked vectors, so padding bits of the last word are cleared.
void sign_vote(Context& ctx, const Tensor& packed, int64_t n_elements, Tensor& vote);
// m <- beta * m + (1 - beta) * g. g, m: f32 (n), same numel; beta in [0, 1). With beta = 0 this is
// m <- g exactly (0 * m + 1 * g), so plain signSGD goes through the same path.
void sign_momentum(Context& ctx, float beta, const Tensor& g, Tensor& m);

#define LS_SIGN_BACKEND_DECLS                                            \
  void sign_pack(Context&, const Tensor& x, Tensor& packed);             \
  void sign_unpack(Context&, const Tensor& packed, Tensor& out);         \
  void sign_vote(Context&, const Tensor& packed, int64_t n_elements, Tensor& vote); \
  void sign_momentum(Context&, float beta, const Tensor& g, Tensor& m);
namespace cpu { LS_SIGN_BACKEND_DECLS }
namespace cuda { LS_SIGN_BACKEND_DECLS }
#undef LS_SIGN_BACKEND_DECLS

}  // namespace lockstep
