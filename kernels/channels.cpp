// Dispatch and shared checks for pad_channels / slice_channels.
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

void pad_channels(Context& ctx, const Tensor& src, Tensor& dst) { LS_DISPATCH(ctx, pad_channels, ctx, src, dst); }

void slice_channels(Context& ctx, const Tensor& src, Tensor& dst) { LS_DISPATCH(ctx, slice_channels, ctx, src, dst); }

}  // namespace lockstep
