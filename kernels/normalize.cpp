// Dispatch for image normalization.
#include "kernels/normalize.h"

#include "kernels/dispatch.h"

namespace lockstep {

void normalize_images(Context& ctx, const Normalization& norm, const Tensor& src, const Tensor* flip,
                      Tensor& dst) {
  LS_DISPATCH(ctx, normalize_images, ctx, norm, src, flip, dst);
}

}  // namespace lockstep
