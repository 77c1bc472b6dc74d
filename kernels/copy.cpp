// Tensor copies and byte fills on either backend.
#include "kernels/copy.h"

#include <cstring>

#include "kernels/args.h"
#include "kernels/dispatch.h"
#if LOCKSTEP_HAVE_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace lockstep {

namespace {
// Same shape and dtype, each on the host or on ctx's device.
void check_copy(const Context& ctx, const Tensor& src, const Tensor& dst, const char* op) {
  LS_CHECK(src.shape() == dst.shape() && src.dtype() == dst.dtype(),
           op << ": " << src.str() << " -> " << dst.str() << " differ in shape or dtype");
  for (const Tensor* t : {&src, &dst})
    LS_CHECK(t->device().is_cpu() || t->device() == ctx.device(),
             op << ": " << t->str() << " is neither on the host nor on " << ctx.device().str());
}
}  // namespace

void copy(Context& ctx, const Tensor& src, Tensor& dst) {
  check_copy(ctx, src, dst, "copy");
  if (src.bytes() == 0) return;
  if (src.device().is_cpu() && dst.device().is_cpu()) {
    std::memmove(dst.raw(), src.raw(), src.bytes());
    return;
  }
#if LOCKSTEP_HAVE_CUDA
  cuda::copy_bytes(ctx, dst.raw(), dst.device(), src.raw(), src.device(), src.bytes());
#else
  throw_no_cuda_backend("copy");
#endif
}

void copy_async(Context& ctx, const Tensor& src, Tensor& dst, Stream stream) {
  if (!ctx.is_cuda()) return copy(ctx, src, dst);
  check_copy(ctx, src, dst, "copy_async");
  if (src.bytes() == 0) return;
#if LOCKSTEP_HAVE_CUDA
  cuda::copy_bytes_async(ctx, dst.raw(), src.raw(), src.bytes(), stream);
#else
  (void)stream;
  throw_no_cuda_backend("copy_async");
#endif
}

void copy_peer_async(Context& ctx, const Tensor& src, Tensor& dst) {
  if (!ctx.is_cuda()) return copy(ctx, src, dst);
  LS_CHECK(src.shape() == dst.shape() && src.dtype() == dst.dtype(),
           "copy_peer_async: " << src.str() << " -> " << dst.str() << " differ in shape or dtype");
  if (src.bytes() == 0) return;
#if LOCKSTEP_HAVE_CUDA
  cuda::copy_bytes_peer_async(ctx, dst.raw(), dst.device(), src.raw(), src.device(), src.bytes());
#else
  throw_no_cuda_backend("copy_peer_async");
#endif
}

void fill_bytes(Context& ctx, Tensor& t, uint8_t byte) {
  expect_on(ctx, t, "fill_bytes", "t");
  if (t.bytes() == 0) return;
  if (ctx.device().is_cpu()) {
    std::memset(t.raw(), byte, t.bytes());
    return;
  }
#if LOCKSTEP_HAVE_CUDA
  cuda::fill_bytes(ctx, t.raw(), byte, t.bytes());
#else
  throw_no_cuda_backend("fill_bytes");
#endif
}

}  // namespace lockstep
