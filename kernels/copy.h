// Moving and filling tensor memory. copy() between host and device is synchronous: it returns
// when dst holds the data, so every transfer is visible at its call site and never hidden.
// copy_async() is the training step's one exception (the batch upload on the copy stream), with
// its ordering made explicit by Events.
#pragma once

#include <cstdint>

#include "kernels/context.h"
#include "kernels/event.h"
#include "kernels/tensor.h"

namespace lockstep {

// dst <- src, same shape and dtype; each on the host or on ctx's device. Device-to-device
// copies are ordered on the compute stream; copies that touch the host wait for completion.
void copy(Context& ctx, const Tensor& src, Tensor& dst);
// dst <- src queued on ctx's `stream`, returning at once: no host wait and no ordering with the
// other streams (the caller orders them with Events). A host side must stay untouched until an
// event recorded on `stream` after this call is reached; pinned host memory makes the transfer
// truly asynchronous. On a CPU context it is copy().
void copy_async(Context& ctx, const Tensor& src, Tensor& dst, Stream stream);
// dst <- src, each on the host or any GPU, queued on ctx's compute stream with no host wait; a
// peer copy between two GPUs (staged through host memory by the driver where they lack peer
// access). Ordering and host lifetimes as copy_async. On a CPU context both must be on the host.
void copy_peer_async(Context& ctx, const Tensor& src, Tensor& dst);
// Every byte of t set to `byte` (0xFF makes every float element NaN: tests poison outputs so).
void fill_bytes(Context& ctx, Tensor& t, uint8_t byte);
inline void zero(Context& ctx, Tensor& t) { fill_bytes(ctx, t, 0); }

}  // namespace lockstep
