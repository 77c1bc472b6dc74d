#include "data/decode_crop.h"

#include <algorithm>
#include <cmath>

namespace lockstep::data {

void decode_crop(Decoder& decoder, const uint8_t* data, size_t bytes, const ImageInfo& info, CropBox box, int size,
                 Image& image, uint8_t* dst) {
  // The smallest decode that keeps >= size pixels across the box (the full image when the box
  // is already smaller than the output).
  auto need = [&](int full, double extent) {
    if (extent <= 0) return full;
    return static_cast<int>(std::min<double>(full, std::ceil(full * static_cast<double>(size) / extent)));
  };
  const Placement p = decoder.decode_region(data, bytes, image, Region{box.x, box.y, box.w, box.h},
                                            need(info.width, box.w), need(info.height, box.h), size, size);
  box.x = box.x * p.scale_x - p.x0;
  box.w *= p.scale_x;
  box.y = box.y * p.scale_y - p.y0;
  box.h *= p.scale_y;
  resize_crop(image.pixels.data(), image.width, image.height, box, dst, size, size);
}

}  // namespace lockstep::data
