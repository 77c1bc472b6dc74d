// Augmentation geometry and resampling. Crop boxes are drawn in the ORIGINAL image's pixel
// coordinates from a Philox stream keyed by (seed, epoch, sample index), so they do not depend on
// thread timing or on the decode scale; the loader maps them onto the (DCT-scaled) decoded image.
//   train: random-resized crop (torchvision's algorithm: 10 tries of area in [0.08, 1] x ratio in
//          [3/4, 4/3] log-uniform, then the centre crop of the clamped ratio) + flip with p = 0.5
//   val:   resize the shorter side to size / 0.875, centre crop size x size
// resize_crop() resamples a box of an RGB image to the output with an antialiasing filter
// (triangle filter widened by the scale when shrinking, as PIL's bilinear does).
#pragma once

#include <cstdint>

namespace lockstep::data {

struct CropBox {
  double x = 0, y = 0, w = 0, h = 0;  // in original-image pixels
  bool flip = false;
};

struct AugmentSpec {
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  double val_crop_fraction = 0.875;
};

// Draws come from Philox4x32-10 keyed by the seed, with counter epoch << 40 | index << 4 | block
// (epoch < 2^24, index < 2^36): blocks 0..9 serve the ten tries, block 10 the flip (augment.cpp).
// x, y, w, h are whole pixels with 0 <= x, x + w <= width (and likewise y, h).
CropBox random_resized_crop(int width, int height, const AugmentSpec& spec, uint64_t seed, uint64_t epoch,
                            uint64_t index);
// A centred square of side val_crop_fraction * min(width, height), in fractional pixels: what
// Resize(size / fraction) + CenterCrop(size) keeps, up to torchvision's integer rounding.
CropBox center_crop(int width, int height, int size, const AugmentSpec& spec);

// Resamples `box` (in src pixel coordinates) of src (sh, sw, 3) into dst (dh, dw, 3), mirrored
// when box.flip. Antialiased when shrinking.
void resize_crop(const uint8_t* src, int sw, int sh, const CropBox& box, uint8_t* dst, int dw, int dh);

}  // namespace lockstep::data
