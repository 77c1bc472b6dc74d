// CPU 1-bit sign ops: momentum, pack 32 signs per word, unpack to +1 / -1, majority vote over rows.
#include "kernels/sign.h"

#include "kernels/sign_math.h"

namespace lockstep::cpu {

void sign_pack(Context& ctx, const Tensor& x, Tensor& packed) {
  check_sign_pack_args(ctx, x, packed);
  expect_cpu_f32({&x}, "sign_pack");
  const int64_t n = x.numel(), words = packed.numel();
  const float* v = x.data<float>();
  uint32_t* out = packed.data<uint32_t>();
#pragma omp parallel for schedule(static)
  for (int64_t w = 0; w < words; ++w) {
    uint32_t word = 0;
    for (int64_t i = w * 32; i < n && i < w * 32 + 32; ++i) word |= sign_bit(v[i]) << (i % 32);
    out[w] = word;
  }
}

void sign_unpack(Context& ctx, const Tensor& packed, Tensor& out) {
  check_sign_unpack_args(ctx, packed, out);
  expect_cpu_f32({&out}, "sign_unpack");
  const int64_t n = out.numel();
  const uint32_t* in = packed.data<uint32_t>();
  float* o = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) o[i] = sign_value(in[i / 32], i);
}

void sign_vote(Context& ctx, const Tensor& packed, int64_t n_elements, Tensor& vote) {
  check_sign_vote_args(ctx, packed, n_elements, vote);
  const int N = static_cast<int>(packed.dim(0));
  const int64_t words = packed.dim(1);
  const uint32_t* in = packed.data<uint32_t>();
  uint32_t* out = vote.data<uint32_t>();
#pragma omp parallel for schedule(static)
  for (int64_t w = 0; w < words; ++w)
    out[w] = sign_vote_word(in + w, words, N) & sign_valid_mask(w, n_elements);
}

void sign_momentum(Context& ctx, float beta, const Tensor& g, Tensor& m) {
  check_sign_momentum_args(ctx, beta, g, m);
  const int64_t n = g.numel();
  const float* gv = g.data<float>();
  float* mv = m.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) mv[i] = sign_momentum_element(beta, mv[i], gv[i]);
}

}  // namespace lockstep::cpu
