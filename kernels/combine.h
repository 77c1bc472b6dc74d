// Combining gradients held by a server: the average of K gradient vectors (backup workers' first
// N gradients of a step) or a weighted sum of them (gradient coding's decoding), and the scaled
// add a coded worker builds its message with. All f32 vectors of one length on ctx's device, with
// the same element arithmetic on every backend:
//   average:        out = ((g_0 + g_1) + ...) + g_{K-1}, summed in f32 in the given order, / K
//                    (what an all-reduce average gives, bit for bit, on the CPU)
//   coefficients a: out = float(sum_k a_k * double(g_k)), accumulated in double
//   axpy:           y = y + alpha * x
#pragma once

#include <vector>

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

inline constexpr int kMaxCombine = 64;

// inputs: 1..kMaxCombine tensors; coefficients: empty (the average) or one per input.
void combine_gradients(Context& ctx, const std::vector<Tensor>& inputs, const std::vector<double>& coefficients,
                       Tensor& out);
void axpy(Context& ctx, float alpha, const Tensor& x, Tensor& y);

struct CombineArgs {
  const float* in[kMaxCombine];
  double coef[kMaxCombine];
  int k = 0;
  bool average = true;
};

namespace cpu {
void combine_gradients(Context&, const CombineArgs& args, Tensor& out);
void axpy(Context&, float alpha, const Tensor& x, Tensor& y);
}
namespace cuda {
void combine_gradients(Context&, const CombineArgs& args, Tensor& out);
void axpy(Context&, float alpha, const Tensor& x, Tensor& y);
}

}  // namespace lockstep
