// CPU write_scalars: a plain store.
#include "kernels/scalars.h"

namespace lockstep::cpu {

void write_scalars(Context&, Tensor& dst, const ScalarPack& p) {
  float* d = dst.data<float>();
  for (int i = 0; i < p.n; ++i) d[i] = p.v[i];
}

}  // namespace lockstep::cpu
