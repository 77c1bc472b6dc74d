// Per-element / per-word math of the 1-bit sign ops, shared by the CPU and CUDA backends.
// Voting counts the N rows' bits with bit-sliced counters: plane k of the counter holds bit k
// of all 32 per-position counts, so adding one row is a ripple-carry add over the planes
// (a few word operations instead of 32 shifts), and the comparison with N/2 is done plane by
// plane from the top. 8 planes count to 255 rows.
#pragma once

#include <cstdint>

#include "kernels/args.h"
#include "kernels/half.h"
#include "kernels/sign.h"

namespace lockstep {

constexpr int kSignVoteMaxRows = 255;

// 1 for x >= 0 (+0 and -0 included), 0 for x < 0 and NaN (every comparison with NaN is false).
LS_HD uint32_t sign_bit(float x) { return x >= 0.0f ? 1u : 0u; }

// +1 or -1 from bit (i % 32) of the word holding element i.
LS_HD float sign_value(uint32_t word, int64_t i) { return ((word >> (i & 31)) & 1u) ? 1.0f : -1.0f; }

// The bits of word w that hold real elements of an n-element vector (padding bits are 0).
LS_HD uint32_t sign_valid_mask(int64_t w, int64_t n) {
  const int64_t valid = n - w * 32;
  return valid >= 32 ? 0xffffffffu : valid <= 0 ? 0u : ((1u << valid) - 1u);
}

// Majority vote of one word position over N rows: rows[r * stride] for r in [0, N), N >= 1.
// A bit is 1 when more rows have it 1 than 0; a tie (even N) takes row 0's bit.
LS_HD uint32_t sign_vote_word(const uint32_t* rows, int64_t stride, int N) {
  uint32_t plane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int r = 0; r < N; ++r) {
    uint32_t carry = rows[static_cast<int64_t>(r) * stride];
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int k = 0; k < 8; ++k) {
      const uint32_t t = plane[k] & carry;
      plane[k] ^= carry;
      carry = t;
    }
  }
  // Compare every count with T = floor(N / 2): gt = count > T, eq = count == T.
  const uint32_t T = static_cast<uint32_t>(N) / 2u;
  uint32_t gt = 0, eq = 0xffffffffu;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int k = 7; k >= 0; --k) {
    if ((T >> k) & 1u) {
      eq &= plane[k];
    } else {
      gt |= eq & plane[k];
      eq &= ~plane[k];
    }
  }
  // Odd N: count > floor(N/2) is a strict majority. Even N: count == N/2 is a tie.
  return (N % 2 == 0) ? (gt | (eq & rows[0])) : gt;
}

// Signum's momentum of one element (Bernstein et al.'s code: buf.mul_(beta).add_(1 - beta, g)).
// Two roundings, no fused multiply-add on the CPU (no -ffp-contract, no FMA target); the CUDA
// kernel uses __fmul_rn / __fadd_rn so both backends round the same way.
LS_HD float sign_momentum_element(float beta, float m, float g) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fmul_rn(beta, m), __fmul_rn(1.0f - beta, g));
#else
  return beta * m + (1.0f - beta) * g;
#endif
}

// Host-side argument checks shared by both backends.
inline void check_sign_pack_args(const Context& ctx, const Tensor& x, const Tensor& packed) {
  expect_on(ctx, x, "sign_pack", "x");
  expect_on(ctx, packed, "sign_pack", "packed");
  expect_float(x, "sign_pack", "x");
  expect_dtype(packed, DType::u32, "sign_pack", "packed");
  expect_numel(packed, sign_words(x.numel()), "sign_pack", "packed");
}

inline void check_sign_unpack_args(const Context& ctx, const Tensor& packed, const Tensor& out) {
  expect_on(ctx, packed, "sign_unpack", "packed");
  expect_on(ctx, out, "sign_unpack", "out");
  expect_dtype(packed, DType::u32, "sign_unpack", "packed");
  expect_float(out, "sign_unpack", "out");
  expect_numel(packed, sign_words(out.numel()), "sign_unpack", "packed");
}

inline void check_sign_vote_args(const Context& ctx, const Tensor& packed, int64_t n_elements,
                                 const Tensor& vote) {
  expect_on(ctx, packed, "sign_vote", "packed");
  expect_on(ctx, vote, "sign_vote", "vote");
  expect_dtype(packed, DType::u32, "sign_vote", "packed");
  expect_dtype(vote, DType::u32, "sign_vote", "vote");
  LS_CHECK(n_elements >= 0, "sign_vote: n_elements is negative: " << n_elements);
  const int64_t words = sign_words(n_elements);
  LS_CHECK(packed.rank() == 2 && packed.dim(1) == words,
           "sign_vote: packed must be (N, " << words << ") for " << n_elements << " elements, got "
                                            << packed.shape().str());
  LS_CHECK(packed.dim(0) >= 1 && packed.dim(0) <= kSignVoteMaxRows,
           "sign_vote: 1.." << kSignVoteMaxRows << " rows, got " << packed.dim(0));
  expect_numel(vote, words, "sign_vote", "vote");
}

inline void check_sign_momentum_args(const Context& ctx, float beta, const Tensor& g, const Tensor& m) {
  expect_on(ctx, g, "sign_momentum", "g");
  expect_on(ctx, m, "sign_momentum", "m");
  expect_dtype(g, DType::f32, "sign_momentum", "g");
  expect_dtype(m, DType::f32, "sign_momentum", "m");
  expect_numel(m, g.numel(), "sign_momentum", "m");
  LS_CHECK(beta >= 0.0f && beta < 1.0f, "sign_momentum: beta must be in [0, 1), got " << beta);
}

}  // namespace lockstep
