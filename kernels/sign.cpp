// Dispatch for the 1-bit sign ops.
#include "kernels/sign.h"

#include "kernels/dispatch.h"

namespace lockstep {

void sign_pack(Context& ctx, const Tensor& x, Tensor& packed) { LS_DISPATCH(ctx, sign_pack, ctx, x, packed); }

void sign_unpack(Context& ctx, const Tensor& packed, Tensor& out) {
  LS_DISPATCH(ctx, sign_unpack, ctx, packed, out);
}

void sign_vote(Context& ctx, const Tensor& packed, int64_t n_elements, Tensor& vote) {
  LS_DISPATCH(ctx, sign_vote, ctx, packed, n_elements, vote);
}

void sign_momentum(Context& ctx, float beta, const Tensor& g, Tensor& m) {
  LS_DISPATCH(ctx, sign_momentum, ctx, beta, g, m);
}

}  // namespace lockstep
