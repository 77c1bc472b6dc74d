// Dispatch for the random fills.
#include "kernels/random.h"

#include "kernels/dispatch.h"

namespace lockstep {

void fill_uniform(Context& ctx, Tensor& t, float lo, float hi, uint64_t seed, uint64_t offset) {
  LS_DISPATCH(ctx, fill_uniform, ctx, t, lo, hi, seed, offset);
}

void fill_normal(Context& ctx, Tensor& t, float mean, float stddev, uint64_t seed, uint64_t offset) {
  LS_DISPATCH(ctx, fill_normal, ctx, t, mean, stddev, seed, offset);
}

}  // namespace lockstep
