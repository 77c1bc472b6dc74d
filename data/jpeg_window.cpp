// libjpeg's defaults decode: the accurate IDCT and fancy upsampling, what PIL and TurboJPEG's
// flags 0 use (TJFLAG_FASTDCT measured no gain, 2026-11-26: most decodes use scaled IDCTs).
// libjpeg reports errors by longjmp, so every libjpeg call sits in a small C-style function
// (*_c) that holds no object with a destructor; the decompressor and the buffers are owned
// outside them. Warnings are counted by libjpeg as usual; one that says the data ran out marks
// the decode as failed (truncation is an error here, see decode.cpp's header comment).
#include "data/jpeg_window.h"

#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE
#include <cstring>

#include <jpeglib.h>

#include <algorithm>
#include <cctype>
#include <string>

#include "data/decode.h"

namespace lockstep::data {

namespace {

struct ErrorState {
  jpeg_error_mgr pub;  // first: libjpeg's pointer to it is a pointer to this
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {0};
  bool ran_out = false;
};

ErrorState* state_of(j_common_ptr c) { return reinterpret_cast<ErrorState*>(c->err); }

void error_exit_c(j_common_ptr c) {
  (*c->err->format_message)(c, state_of(c)->message);
  std::longjmp(state_of(c)->jump, 1);
}

void emit_message_c(j_common_ptr c, int level) {
  if (level >= 0) return;  // trace output
  char buf[JMSG_LENGTH_MAX];
  (*c->err->format_message)(c, buf);
  ErrorState* e = state_of(c);
  if (says_data_ran_out(buf) && !e->ran_out) {
    e->ran_out = true;
    std::snprintf(e->message, sizeof(e->message), "%s", buf);
  }
  c->err->num_warnings++;
}

struct Decompressor {
  jpeg_decompress_struct ci{};
  ErrorState err;
  bool created = false;
  ~Decompressor() {
    if (created) jpeg_destroy_decompress(&ci);
  }
};

bool create_c(Decompressor* d) {
  d->ci.err = jpeg_std_error(&d->err.pub);
  d->err.pub.error_exit = error_exit_c;
  d->err.pub.emit_message = emit_message_c;
  if (setjmp(d->err.jump)) return false;
  jpeg_create_decompress(&d->ci);
  d->created = true;
  return true;
}

// Header, output format and scale, start; the scaled size comes back in ci.output_width/height.
bool start_c(Decompressor* d, const uint8_t* data, size_t size, int eighths, bool* cmyk) {
  if (setjmp(d->err.jump)) return false;
  jpeg_mem_src(&d->ci, data, static_cast<unsigned long>(size));
  jpeg_read_header(&d->ci, TRUE);
  *cmyk = d->ci.jpeg_color_space == JCS_CMYK || d->ci.jpeg_color_space == JCS_YCCK;
  d->ci.out_color_space = *cmyk ? JCS_CMYK : JCS_RGB;  // libjpeg-turbo expands grayscale to RGB
  d->ci.scale_num = static_cast<unsigned>(eighths);
  d->ci.scale_denom = 8;
  jpeg_start_decompress(&d->ci);
  return true;
}

bool crop_and_skip_c(Decompressor* d, JDIMENSION* xoffset, JDIMENSION* width, JDIMENSION skip) {
  if (setjmp(d->err.jump)) return false;
  if (*xoffset > 0 || *width < d->ci.output_width) jpeg_crop_scanline(&d->ci, xoffset, width);
  if (skip > 0 && jpeg_skip_scanlines(&d->ci, skip) != skip) {
    std::snprintf(d->err.message, sizeof(d->err.message), "could not skip to row %u", skip);
    return false;
  }
  return true;
}

bool read_rows_c(Decompressor* d, uint8_t* out, size_t row_bytes, JDIMENSION rows) {
  if (setjmp(d->err.jump)) return false;
  for (JDIMENSION r = 0; r < rows;) {
    JSAMPROW row = out + size_t(r) * row_bytes;
    const JDIMENSION got = jpeg_read_scanlines(&d->ci, &row, 1);
    if (got == 0) {
      std::snprintf(d->err.message, sizeof(d->err.message), "no scanline after row %u", r);
      return false;
    }
    r += got;
  }
  return true;
}

[[noreturn]] void fail(const Decompressor& d, const char* what) {
  throw DecodeError(std::string(what) + (d.err.message[0] ? d.err.message : "libjpeg error"));
}

}  // namespace

bool says_data_ran_out(const std::string& message) {
  std::string s = message;
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s.find("premature end") != std::string::npos;
}

JpegWindow decode_jpeg_window(const uint8_t* data, size_t size, int scale_eighths, int x0, int y0, int x1, int y1,
                              std::vector<uint8_t>& rgb, std::vector<uint8_t>& cmyk) {
  Decompressor d;
  if (!create_c(&d)) fail(d, "libjpeg: ");
  bool is_cmyk = false;
  if (!start_c(&d, data, size, scale_eighths, &is_cmyk)) fail(d, "bad JPEG data: ");
  JpegWindow w;
  w.scaled_width = static_cast<int>(d.ci.output_width);
  w.scaled_height = static_cast<int>(d.ci.output_height);
  x0 = std::clamp(x0, 0, w.scaled_width - 1);
  y0 = std::clamp(y0, 0, w.scaled_height - 1);
  x1 = std::clamp(x1, x0 + 1, w.scaled_width);
  y1 = std::clamp(y1, y0 + 1, w.scaled_height);

  // libjpeg aligns the crop to whole blocks, and at a cropped side its fancy upsampling has no
  // neighbour to blend with, so the outermost decoded column differs from the whole decode there.
  // One more column is asked for on each side and the outermost one dropped where it was cut.
  JDIMENSION xoffset = static_cast<JDIMENSION>(std::max(0, x0 - 1));
  JDIMENSION width = static_cast<JDIMENSION>(std::min(w.scaled_width, x1 + 1)) - xoffset;
  if (!crop_and_skip_c(&d, &xoffset, &width, static_cast<JDIMENSION>(y0))) fail(d, "bad JPEG data: ");
  const int drop_left = xoffset > 0 ? 1 : 0;
  const int drop_right = int(xoffset + width) < w.scaled_width ? 1 : 0;
  w.x0 = static_cast<int>(xoffset) + drop_left;
  w.y0 = y0;
  w.width = static_cast<int>(width) - drop_left - drop_right;
  w.height = y1 - y0;

  const int channels = is_cmyk ? 4 : 3;
  std::vector<uint8_t>& raw = is_cmyk ? cmyk : rgb;
  const size_t raw_row = size_t(width) * channels, row = size_t(w.width) * channels;
  raw.resize(raw_row * size_t(w.height));
  if (!read_rows_c(&d, raw.data(), raw_row, static_cast<JDIMENSION>(w.height)) || d.err.ran_out)
    fail(d, "bad JPEG data: ");
  if (row != raw_row)  // rows packed in place, left to right, so no row overwrites one not yet moved
    for (size_t y = 0; y < size_t(w.height); ++y)
      std::memmove(raw.data() + y * row, raw.data() + y * raw_row + size_t(drop_left) * channels, row);

  const size_t npix = size_t(w.width) * size_t(w.height);
  if (is_cmyk) {
    rgb.resize(npix * 3);
    // Adobe CMYK is stored inverted (255 = no ink): R = c * k / 255 (see decode.cpp).
    const uint8_t* in = cmyk.data();
    uint8_t* o = rgb.data();
    for (size_t i = 0; i < npix; ++i, in += 4, o += 3) {
      const unsigned k = in[3];
      for (int c = 0; c < 3; ++c) o[c] = static_cast<uint8_t>((in[c] * k + 127) / 255);
    }
  } else {
    rgb.resize(npix * 3);
  }
  return w;
}

}  // namespace lockstep::data
