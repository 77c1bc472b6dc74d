// Dispatch for 2-D convolution, and the shape checks shared by both backends.
#include "kernels/conv.h"

#include <climits>
#include <sstream>

#include "kernels/dispatch.h"

namespace lockstep {

std::string ConvShape::str() const {
  std::ostringstream os;
  os << "x(N,H,W,C)=(" << n << "," << h << "," << w << "," << c << ") w(K,R,S,C)=(" << k << ","
     << r << "," << s << "," << c << ") stride " << stride_h << "x" << stride_w << " pad " << pad_h
     << "x" << pad_w << " -> y(" << n << ",";
  // The output size divides by the strides: print it only where it is defined.
  if (stride_h > 0 && stride_w > 0)
    os << out_h() << "," << out_w();
  else
    os << "?,?";
  os << "," << k << ")";
  return os.str();
}

void validate(const ConvShape& s) {
  auto positive = [&](int v, const char* field) {
    LS_CHECK(v > 0, "conv2d: " << field << " must be positive, got " << v << " in " << s.str());
  };
  positive(s.n, "n (batch)");
  positive(s.h, "h (input height)");
  positive(s.w, "w (input width)");
  positive(s.c, "c (input channels)");
  positive(s.k, "k (output channels)");
  positive(s.r, "r (filter height)");
  positive(s.s, "s (filter width)");
  positive(s.stride_h, "stride_h");
  positive(s.stride_w, "stride_w");
  LS_CHECK(s.pad_h >= 0, "conv2d: pad_h must be non-negative, got " << s.pad_h << " in " << s.str());
  LS_CHECK(s.pad_w >= 0, "conv2d: pad_w must be non-negative, got " << s.pad_w << " in " << s.str());
  // (h + 2p - r) / stride truncates toward zero, so an empty output must be caught before it.
  LS_CHECK(int64_t(s.h) + 2 * int64_t(s.pad_h) >= s.r,
           "conv2d: empty output: filter height r=" << s.r << " exceeds padded input height h+2*pad_h="
                                                    << int64_t(s.h) + 2 * int64_t(s.pad_h));
  LS_CHECK(int64_t(s.w) + 2 * int64_t(s.pad_w) >= s.s,
           "conv2d: empty output: filter width s=" << s.s << " exceeds padded input width w+2*pad_w="
                                                   << int64_t(s.w) + 2 * int64_t(s.pad_w));
  for (const Shape& t : {s.x_shape(), s.w_shape(), s.y_shape()})
    LS_CHECK(t.numel() <= INT_MAX, "conv2d: tensor " << t.str() << " has more than 2^31-1 elements in "
                                                     << s.str());
}

ConvPlan plan_conv2d(Context& ctx, const ConvShape& shape, DType dtype, ConvAlgoSearch search,
                     size_t workspace_limit) {
  LS_DISPATCH(ctx, plan_conv2d, ctx, shape, dtype, search, workspace_limit);
}

void conv2d_forward(Context& ctx, const ConvPlan& plan, const Tensor& x, const Tensor& w, Tensor& y) {
  LS_DISPATCH(ctx, conv2d_forward, ctx, plan, x, w, y);
}

void conv2d_backward_data(Context& ctx, const ConvPlan& plan, const Tensor& dy, const Tensor& w,
                          Tensor& dx) {
  LS_DISPATCH(ctx, conv2d_backward_data, ctx, plan, dy, w, dx);
}

void conv2d_backward_filter(Context& ctx, const ConvPlan& plan, const Tensor& x, const Tensor& dy,
                            Tensor& dw) {
  LS_DISPATCH(ctx, conv2d_backward_filter, ctx, plan, x, dy, dw);
}

}  // namespace lockstep
