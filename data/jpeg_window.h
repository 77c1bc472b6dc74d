// Decoding one window of a JPEG through libjpeg's own API (libjpeg-turbo's jpeg_crop_scanline and
// jpeg_skip_scanlines; TurboJPEG 2.1 has no partial decode): columns outside the window skip the
// IDCT, upsampling and colour conversion, rows above it skip all but entropy decoding, and rows
// below it are never read. Pixels inside the window are the full decode's. The data/decode.h
// Decoder checks headers, limits and truncation first and calls this; it is not used alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lockstep::data {

// Where the decoded window sits in the image scaled by scale_eighths / 8.
struct JpegWindow {
  int x0 = 0, y0 = 0;                      // top-left of the window in scaled pixels
  int width = 0, height = 0;               // the window's size (rgb holds height x width x 3)
  int scaled_width = 0, scaled_height = 0;  // the whole scaled image
};

// Whether a libjpeg message says the data ran out ("Premature end of JPEG file", "... premature
// end of data segment"): the one warning that is an error (truncation, decode.cpp rule (b)).
bool says_data_ran_out(const std::string& message);

// Decodes to RGB the scaled pixels covering columns [x0, x1) and rows [y0, y1) of the image
// scaled by scale_eighths / 8 (clamped to the image; the window may start left of x0, as libjpeg
// aligns it to whole blocks). CMYK / YCCK become RGB as in decode.cpp (Adobe-inverted values),
// grayscale becomes three channels. `cmyk` is scratch. Throws DecodeError on corrupt data and on
// a warning that the data ran out ("premature end"); other recoverable warnings are kept.
JpegWindow decode_jpeg_window(const uint8_t* data, size_t size, int scale_eighths, int x0, int y0, int x1, int y1,
                              std::vector<uint8_t>& rgb, std::vector<uint8_t>& cmyk);

}  // namespace lockstep::data
