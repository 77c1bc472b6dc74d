// Dispatch and shared checks for pad_channels / slice_channels and space-to-depth.
#include "kernels/channels.h"

#include "kernels/dispatch.h"

namespace lockstep {

ChannelRows channel_rows(const Tensor& narrow, const Tensor& wide, const char* op) {
  const Shape& a = narrow.shape();
  const Shape& b = wide.shape();
  LS_CHECK(a.rank() >= 1 && a.rank() == b.rank(),
           op << ": tensors of ranks " << a.rank() << " and " << b.rank() << " (" << a.str() << ", " << b.str() << ")");
  for (int d = 0; d + 1 < a.rank(); ++d)
    LS_CHECK(a[d] == b[d], op << ": leading dimensions differ: " << a.str() << " vs " << b.str());
  LS_CHECK(narrow.dtype() == wide.dtype(), op << ": dtypes differ: " << dtype_name(narrow.dtype()) << " vs "
                                              << dtype_name(wide.dtype()));
  ChannelRows r;
  r.narrow = a[a.rank() - 1];
  r.wide = b[b.rank() - 1];
  LS_CHECK(r.narrow <= r.wide, op << ": " << r.narrow << " channels do not fit in " << r.wide);
  r.rows = 1;  // from the leading dimensions: with 0 narrow channels the wide rows still count
  for (int d = 0; d + 1 < a.rank(); ++d) r.rows *= a[d];
  return r;
}

SpaceToDepthShape space_to_depth_shape(const Tensor& plain, const Tensor& rearranged, int pad, bool gather_back,
                                       const char* op) {
  const Shape& a = plain.shape();
  const Shape& b = rearranged.shape();
  LS_CHECK(a.rank() == 4 && b.rank() == 4,
           op << ": expects rank-4 NHWC tensors, got " << a.str() << " and " << b.str());
  LS_CHECK(a[0] == b[0], op << ": batch (or K) dimensions differ: " << a.str() << " vs " << b.str());
  LS_CHECK(plain.dtype() == rearranged.dtype(), op << ": dtypes differ: " << dtype_name(plain.dtype()) << " vs "
                                                  << dtype_name(rearranged.dtype()));
  LS_CHECK(pad >= 0, op << ": pad " << pad << " < 0");
  SpaceToDepthShape g;
  g.n = a[0], g.h = a[1], g.w = a[2], g.c = a[3];
  g.hb = b[1], g.wb = b[2], g.cd = b[3];
  g.pad = pad;
  LS_CHECK(g.cd >= 4 * g.c, op << ": " << g.c << " channels need " << 4 * g.c << " after space-to-depth, "
                               << rearranged.str() << " has " << g.cd);
  if (gather_back && g.h > 0 && g.w > 0)
    LS_CHECK((g.h - 1 + pad) / 2 < g.hb && (g.w - 1 + pad) / 2 < g.wb,
             op << ": " << a.str() << " shifted by " << pad << " does not fit in " << b.str());
  return g;
}

void space_to_depth2(Context& ctx, const Tensor& src, int pad, Tensor& dst) {
  LS_DISPATCH(ctx, space_to_depth2, ctx, src, pad, dst);
}

void depth_to_space2(Context& ctx, const Tensor& src, int pad, Tensor& dst) {
  LS_DISPATCH(ctx, depth_to_space2, ctx, src, pad, dst);
}

void pad_channels(Context& ctx, const Tensor& src, Tensor& dst) { LS_DISPATCH(ctx, pad_channels, ctx, src, dst); }

void slice_channels(Context& ctx, const Tensor& src, Tensor& dst) { LS_DISPATCH(ctx, slice_channels, ctx, src, dst); }

}  // namespace lockstep
