// Per-element arithmetic of kernels/combine.h, shared by the CPU and CUDA backends.
#pragma once

#include <cstdint>

#include "kernels/combine.h"
#include "kernels/half.h"

namespace lockstep {

LS_HD float combine_element(const CombineArgs& a, int64_t i) {
  if (a.average) {
    float s = a.in[0][i];
    for (int k = 1; k < a.k; ++k) s += a.in[k][i];
    return s / static_cast<float>(a.k);
  }
  double acc = 0;
  for (int k = 0; k < a.k; ++k) acc += a.coef[k] * static_cast<double>(a.in[k][i]);
  return static_cast<float>(acc);
}

LS_HD float axpy_element(float alpha, float x, float y) { return y + alpha * x; }

}  // namespace lockstep
