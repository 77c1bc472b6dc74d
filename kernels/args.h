// Argument checks shared by every op: device, dtype and shape expectations with messages that
// name the op and the argument. Ops call these before touching memory (ARCHITECTURE decision 11).
#pragma once

#include <initializer_list>

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

inline void expect_on(const Context& ctx, const Tensor& t, const char* op, const char* name) {
  LS_CHECK(t.device() == ctx.device(), op << ": " << name << " is on " << t.device().str()
                                          << " but the context runs on " << ctx.device().str());
  LS_CHECK(t.raw() != nullptr || t.numel() == 0, op << ": " << name << " has no memory");
}

inline void expect_dtype(const Tensor& t, DType dt, const char* op, const char* name) {
  LS_CHECK(t.dtype() == dt, op << ": " << name << " must be " << dtype_name(dt) << ", got "
                               << dtype_name(t.dtype()));
}

inline void expect_float(const Tensor& t, const char* op, const char* name) {
  LS_CHECK(is_floating(t.dtype()), op << ": " << name << " must be f32, bf16 or f16, got "
                                      << dtype_name(t.dtype()));
}

inline void expect_shape(const Tensor& t, const Shape& s, const char* op, const char* name) {
  LS_CHECK(t.shape() == s, op << ": " << name << " must have shape " << s.str() << ", got "
                              << t.shape().str());
}

inline void expect_numel(const Tensor& t, int64_t n, const char* op, const char* name) {
  LS_CHECK(t.numel() == n, op << ": " << name << " must have " << n << " elements, got "
                              << t.numel() << " " << t.shape().str());
}

// The CPU backend computes in f32 only (ARCHITECTURE decision 5).
inline void expect_cpu_f32(std::initializer_list<const Tensor*> ts, const char* op) {
  for (const Tensor* t : ts)
    LS_CHECK(t->dtype() == DType::f32, op << ": the CPU backend computes in f32, got "
                                          << dtype_name(t->dtype()));
}

}  // namespace lockstep
