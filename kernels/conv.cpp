// Dispatch for 2-D convolution, and the checks shared by both backends: the shape is valid, and
// every tensor is on the context's device with the plan's dtype and shape. They run here, before
// the backend is chosen; each backend adds only its own plan checks (made for this backend or
// device, its workspace) and the CPU its f32-only check.
#include "kernels/conv.h"

#include <climits>
#include <initializer_list>
#include <sstream>

#include "kernels/args.h"
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

namespace {

// Which of the conv's three shapes a tensor (or its gradient) has.
enum class Role { x, w, y };
struct Arg {
  const Tensor& t;
  Role role;
  const char* name;
};

Shape shape_of(const ConvShape& s, Role r) {
  return r == Role::x ? s.x_shape() : r == Role::w ? s.w_shape() : s.y_shape();
}

// Validates the plan's shape first (the expected shapes divide by the strides), then checks each
// tensor's device, dtype (the plan's) and shape, in the order given.
void check_tensors(const Context& ctx, const ConvPlan& plan, const char* op,
                   std::initializer_list<Arg> args) {
  validate(plan.shape);
  for (const Arg& a : args) {
    expect_on(ctx, a.t, op, a.name);
    expect_dtype(a.t, plan.dtype, op, a.name);
    expect_shape(a.t, shape_of(plan.shape, a.role), op, a.name);
  }
}

}  // namespace

const char* conv_algo_name(ConvAlgoSearch s) {
  switch (s) {
    case ConvAlgoSearch::heuristic: return "heuristic";
    case ConvAlgoSearch::measure: return "measure";
    case ConvAlgoSearch::fastest: return "fastest";
    case ConvAlgoSearch::heuristic_any: return "heuristic-any";
    case ConvAlgoSearch::graph: return "graph";
    case ConvAlgoSearch::graph_measure: return "graph-measure";
  }
  return "?";
}

ConvAlgoSearch parse_conv_algo(const std::string& text) {
  for (ConvAlgoSearch s : {ConvAlgoSearch::heuristic, ConvAlgoSearch::measure, ConvAlgoSearch::fastest,
                           ConvAlgoSearch::heuristic_any, ConvAlgoSearch::graph, ConvAlgoSearch::graph_measure})
    if (text == conv_algo_name(s)) return s;
  throw Error("expected heuristic, measure, fastest, heuristic-any, graph or graph-measure, got '" + text + "'");
}

ConvPlan plan_conv2d(Context& ctx, const ConvShape& shape, DType dtype, ConvAlgoSearch search,
                     size_t workspace_limit) {
  validate(shape);
  LS_DISPATCH(ctx, plan_conv2d, ctx, shape, dtype, search, workspace_limit);
}

void conv2d_forward(Context& ctx, const ConvPlan& plan, const Tensor& x, const Tensor& w, Tensor& y) {
  check_tensors(ctx, plan, "conv2d_forward", {{x, Role::x, "x"}, {w, Role::w, "w"}, {y, Role::y, "y"}});
  LS_DISPATCH(ctx, conv2d_forward, ctx, plan, x, w, y);
}

void conv2d_backward_data(Context& ctx, const ConvPlan& plan, const Tensor& dy, const Tensor& w,
                          Tensor& dx, bool accumulate) {
  check_tensors(ctx, plan, "conv2d_backward_data",
                {{dy, Role::y, "dy"}, {w, Role::w, "w"}, {dx, Role::x, "dx"}});
  LS_DISPATCH(ctx, conv2d_backward_data, ctx, plan, dy, w, dx, accumulate);
}

void conv2d_backward_filter(Context& ctx, const ConvPlan& plan, const Tensor& x, const Tensor& dy,
                            Tensor& dw) {
  check_tensors(ctx, plan, "conv2d_backward_filter",
                {{x, Role::x, "x"}, {dy, Role::y, "dy"}, {dw, Role::w, "dw"}});
  LS_DISPATCH(ctx, conv2d_backward_filter, ctx, plan, x, dy, dw);
}

}  // namespace lockstep
