// One training or validation sample from encoded bytes: the crop box (in the original's pixels)
// decoded at the smallest DCT scale that keeps at least `size` pixels across it, only the window
// it reads, then resampled (and mirrored when box.flip) to size x size RGB. The loader's per-sample
// work, kept apart so tests and fuzzing run exactly what the loader runs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "data/augment.h"
#include "data/decode.h"

namespace lockstep::data {

// `info` is decoder.info() of the same bytes (the caller drew the box from it). Writes
// size * size * 3 bytes at dst; `image` is scratch (reused). Throws DecodeError.
void decode_crop(Decoder& decoder, const uint8_t* data, size_t bytes, const ImageInfo& info, CropBox box, int size,
                 Image& image, uint8_t* dst);

}  // namespace lockstep::data
