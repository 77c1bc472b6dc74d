// Decoding JPEG (libjpeg-turbo: TurboJPEG for headers, libjpeg's API for pixels) and PNG (libpng)
// to RGB, HWC, u8, whole or (JPEG) only the window a crop reads.
// CMYK / YCCK JPEGs become RGB, grayscale becomes three equal channels, PNG alpha is dropped and
// 16-bit PNG reduced to 8. JPEGs decode with DCT-domain scaling (1/8 .. 1) to the smallest size
// that still covers what the caller needs. Headers are checked before anything is allocated:
// sides above DecodeLimits are refused. Corrupt or truncated data throws DecodeError (never
// crashes, never hangs, never leaks); warnings that libjpeg-turbo recovers from are not errors.
// A Decoder holds the library handles and scratch of one thread: reuse it, do not share it.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "data/image_folder.h"

namespace lockstep::data {

class DecodeError : public DataError {
 public:
  using DataError::DataError;
};

struct DecodeLimits {
  int max_side = 16384;               // a 65000 x 65000 header is refused before allocation
  int64_t max_pixels = 16384LL * 16384;
};

struct ImageInfo {
  ImageFormat format = ImageFormat::unknown;
  int width = 0, height = 0;
};

struct Image {
  std::vector<uint8_t> pixels;  // (height, width, 3) RGB
  int width = 0, height = 0;
};

// A region of the full-resolution image, in pixels (need not be whole).
struct Region {
  double x = 0, y = 0, w = 0, h = 0;
};

// Where decode_region's pixels sit: the image was scaled by scale_x, scale_y (full resolution ->
// scaled), and out's pixel (0, 0) is the scaled image's (x0, y0).
struct Placement {
  double scale_x = 1, scale_y = 1;
  int x0 = 0, y0 = 0;
};

class Decoder {
 public:
  explicit Decoder(DecodeLimits limits = {});
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Format and full size from the header alone. Throws DecodeError.
  ImageInfo info(const uint8_t* data, size_t size);
  // Decodes the whole image. A JPEG is scaled by the smallest DCT factor m/8 (m = 1..8) whose
  // result is still at least min_width x min_height (when the original is at least that); with
  // both 0, or for PNG, it decodes at full size. Returns the scale applied (result width /
  // original width), 1 for none. TJSCALED rounds each side up (ceil(side * m / 8)), so the exact
  // factor of each axis is out.width / width and out.height / height; they differ by under one
  // pixel's worth, and a crop box is best mapped with each axis's own. Throws DecodeError.
  double decode(const uint8_t* data, size_t size, Image& out, int min_width = 0, int min_height = 0);
  // Decodes what a resize of `region` to out_width x out_height reads: a JPEG scaled as decode()
  // would, then only the window around the region (the filter's reach past it included) — the
  // columns outside skip the IDCT and colour conversion, the rows below are never decoded. Its
  // pixels equal the whole decode's. A PNG decodes whole. Throws DecodeError.
  Placement decode_region(const uint8_t* data, size_t size, Image& out, const Region& region, int min_width,
                          int min_height, int out_width, int out_height);

  // Reads a whole file into `buffer` (reused); throws DataError naming the path on failure.
  static void read_file(const std::filesystem::path& path, std::vector<uint8_t>& buffer);

 private:
  double decode_jpeg(const uint8_t* data, size_t size, Image& out, int min_width, int min_height);
  std::pair<int, int> jpeg_header(const uint8_t* data, size_t size);
  int jpeg_eighths(int width, int height, int min_width, int min_height) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  DecodeLimits limits_;
};

// Encodes RGB HWC (channels 3) or grayscale (channels 1) as a baseline JPEG: for the dataset
// tools and tests. Throws DataError.
std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int width, int height, int channels, int quality = 90);
// The same for CMYK input (channels 4, Adobe-inverted as Photoshop writes it), for tests of the
// CMYK path.
std::vector<uint8_t> encode_jpeg_cmyk(const uint8_t* cmyk, int width, int height, int quality = 90);
// Encodes RGB HWC as an 8-bit PNG (for tests: ImageNet has PNGs named .JPEG).
std::vector<uint8_t> encode_png(const uint8_t* pixels, int width, int height);

}  // namespace lockstep::data
