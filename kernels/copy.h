// Moving and filling tensor memory. copy() between host and device is synchronous: it returns
// when dst holds the data, so every transfer is visible at its call site and never hidden.
#pragma once

#include <cstdint>

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

// dst <- src, same shape and dtype; each on the host or on ctx's device. Device-to-device
// copies are ordered on the compute stream; copies that touch the host wait for completion.
void copy(Context& ctx, const Tensor& src, Tensor& dst);
// Every byte of t set to `byte` (0xFF makes every float element NaN: tests poison outputs so).
void fill_bytes(Context& ctx, Tensor& t, uint8_t byte);
inline void zero(Context& ctx, Tensor& t) { fill_bytes(ctx, t, 0); }

}  // namespace lockstep
