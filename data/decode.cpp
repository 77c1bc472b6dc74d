// JPEG through libjpeg-turbo 2.1 (TurboJPEG for headers and encoding, libjpeg's API for pixels), PNG
// through libpng 1.6.
//
// Rules, each a decision:
//  - The format is sniffed from the bytes (sniff_format), never taken from the file name.
//  - Header first: width and height are read and checked against DecodeLimits before any pixel
//    buffer is sized, so a 200-byte file claiming 65000 x 65000 costs nothing.
//  - JPEG colour: YCbCr, RGB and grayscale decode straight to RGB (libjpeg replicates gray into
//    three channels). CMYK and YCCK decode to TJPF_CMYK and are converted here. Such files are
//    written by Adobe software with inverted values (an Adobe APP14 marker; 255 = no ink), and
//    libjpeg returns the stored values as they are, so with c, m, y, k the decoded bytes:
//        R = c * k / 255,  G = m * k / 255,  B = y * k / 255   (rounded)
//    which is exactly what PIL computes for such files (it un-inverts on load, "CMYK;I", and
//    then converts with R = (255 - C) * (255 - K) / 255).
//  - JPEG warnings: libjpeg recovers from many oddities (extraneous bytes before a marker, a
//    corrupt restart interval, ...) and TurboJPEG reports them as TJERR_WARNING; those decodes
//    are kept, as PIL and torchvision keep them. Truncation is the exception: libjpeg fills the
//    missing part with grey, and a half-grey training sample is worse than a skipped one (PIL
//    likewise refuses truncated files unless LOAD_TRUNCATED_IMAGES is set). A JPEG counts as
//    truncated when (a) no EOI marker (FF D9) follows its first SOS marker — entropy-coded data
//    never contains FF D9 (FF is stuffed as FF 00), so only a real end of image matches — or
//    (b) libjpeg's warning says "Premature end of JPEG file" / "premature end of data segment"
//    (scan data cut short with an EOI pasted after it), checked on every warning libjpeg emits,
//    so an earlier harmless warning does not hide it. (a) is checked structurally before any
//    decoding. A file that lacks only its EOI is refused too: the rule is "the image ends where
//    the format says it ends". A window decode (decode_region) reads only down to its last row,
//    so damage below the window goes unseen: the sample it makes is whole.
//  - DCT scaling: the smallest m/8 (m = 1..8, each checked against tjGetScalingFactors) whose
//    scaled size still covers the request; see decode.h.
//  - PNG: palette, gray, gray+alpha, RGBA and 16-bit inputs all become 8-bit RGB: png_set_expand,
//    png_set_strip_16, png_set_strip_alpha (alpha is dropped, not composited, as PIL's
//    convert("RGB") does) and png_set_gray_to_rgb; interlaced images are handled.
//    libpng reports errors by longjmp, so every libpng call that can fail sits in a small
//    C-style function (png_*_c) that holds no object with a destructor; the structs are owned by
//    RAII wrappers outside them. Warnings are silenced; errors become DecodeError.
//  - JPEG pixels come from libjpeg's API (data/jpeg_window.cpp), which sees every warning and can
//    decode a window; TurboJPEG reads headers and encodes.
// Every handle and buffer is owned by RAII, so no error path leaks.
#include "data/decode.h"

#include "data/jpeg_window.h"

#include <fcntl.h>
#include <png.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

namespace lockstep::data {

namespace {

struct TjDestroy {
  void operator()(void* h) const {
    if (h) tjDestroy(h);
  }
};
using TjHandle = std::unique_ptr<void, TjDestroy>;

struct TjFree {
  void operator()(unsigned char* p) const { tjFree(p); }
};

std::string tj_message(tjhandle h) { return h ? tjGetErrorStr2(h) : tjGetErrorStr2(nullptr); }

void check_limits(const DecodeLimits& limits, int w, int h, const char* what) {
  if (w <= 0 || h <= 0)
    throw DecodeError(std::string(what) + " header has an empty size " + std::to_string(w) + "x" + std::to_string(h));
  if (w > limits.max_side || h > limits.max_side || int64_t(w) * h > limits.max_pixels)
    throw DecodeError(std::string(what) + " header claims " + std::to_string(w) + "x" + std::to_string(h) +
                      ", above the limit of " + std::to_string(limits.max_side) + " per side and " +
                      std::to_string(limits.max_pixels) + " pixels");
}

// ---- PNG: C-style pieces that libpng may longjmp out of -------------------------------------

struct PngState {
  const uint8_t* data = nullptr;
  size_t size = 0, pos = 0;
  std::vector<uint8_t>* sink = nullptr;  // for writing
  char message[256] = {0};
};

void png_error_c(png_structp png, png_const_charp msg) {
  auto* s = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(s->message, sizeof(s->message), "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

void png_warning_c(png_structp, png_const_charp) {}

void png_read_c(png_structp png, png_bytep out, size_t n) {
  auto* s = static_cast<PngState*>(png_get_io_ptr(png));
  if (n > s->size - s->pos) png_error(png, "truncated PNG data");
  std::memcpy(out, s->data + s->pos, n);
  s->pos += n;
}

// Reads the header; returns false on error (message in the state).
bool png_read_header_c(png_structp png, png_infop info, int max_side, png_uint_32* w, png_uint_32* h) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_user_limits(png, static_cast<png_uint_32>(max_side), static_cast<png_uint_32>(max_side));
  png_read_info(png, info);
  *w = png_get_image_width(png, info);
  *h = png_get_image_height(png, info);
  return true;
}

// Sets the transforms to 8-bit RGB and reads the rows; returns false on error.
bool png_read_pixels_c(png_structp png, png_infop info, png_bytep* rows, size_t row_bytes) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_expand(png);
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != row_bytes || png_get_channels(png, info) != 3)
    png_error(png, "PNG did not convert to 8-bit RGB");
  png_read_image(png, rows);
  return true;
}

struct PngReader {
  PngState state;
  png_structp png = nullptr;
  png_infop info = nullptr;
  PngReader(const uint8_t* data, size_t size) {
    state.data = data;
    state.size = size;
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_error_c, png_warning_c);
    if (png) info = png_create_info_struct(png);
    if (!png || !info) throw DecodeError("out of memory creating a PNG reader");
    png_set_read_fn(png, &state, png_read_c);
  }
  ~PngReader() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
  PngReader(const PngReader&) = delete;
  PngReader& operator=(const PngReader&) = delete;
};

void png_write_c(png_structp png, png_bytep data, size_t n) {
  auto* s = static_cast<PngState*>(png_get_io_ptr(png));
  s->sink->insert(s->sink->end(), data, data + n);
}

void png_flush_c(png_structp) {}

bool png_write_image_c(png_structp png, png_infop info, int w, int h, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, static_cast<png_uint_32>(w), static_cast<png_uint_32>(h), 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  return true;
}

struct PngWriter {
  PngState state;
  png_structp png = nullptr;
  png_infop info = nullptr;
  explicit PngWriter(std::vector<uint8_t>* sink) {
    state.sink = sink;
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, png_error_c, png_warning_c);
    if (png) info = png_create_info_struct(png);
    if (!png || !info) throw DataError("out of memory creating a PNG writer");
    png_set_write_fn(png, &state, png_write_c, png_flush_c);
  }
  ~PngWriter() { png_destroy_write_struct(&png, info ? &info : nullptr); }
  PngWriter(const PngWriter&) = delete;
  PngWriter& operator=(const PngWriter&) = delete;
};

// Rule (a) above: true when an EOI marker follows the first SOS. Walks the marker segments up to
// the SOS (APPn payloads may hold any bytes, EXIF thumbnails included); returns true when the
// header cannot be walked, leaving that error to libjpeg's own, more precise message.
bool jpeg_ends_after_scan(const uint8_t* d, size_t n) {
  size_t i = 2;  // after SOI
  while (true) {
    while (i < n && d[i] != 0xFF) ++i;  // tolerate stray bytes, as libjpeg does (with a warning)
    while (i < n && d[i] == 0xFF) ++i;  // fill bytes
    if (i >= n) return true;
    const uint8_t marker = d[i++];
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no length
    if (marker == 0xD9 || i + 2 > n) return true;  // EOI before any scan, or cut: libjpeg reports it
    const size_t len = (size_t(d[i]) << 8) | d[i + 1];
    if (marker == 0xDA) break;
    i += len;
  }
  const size_t sos = i;
  for (size_t j = n; j >= sos + 2; --j)
    if (d[j - 2] == 0xFF && d[j - 1] == 0xD9) return true;
  return false;
}

ImageInfo png_info(const uint8_t* data, size_t size) {
  // Signature (8), IHDR length (4), "IHDR", width, height: big-endian.
  if (size < 24 || std::memcmp(data + 12, "IHDR", 4) != 0) throw DecodeError("PNG header is truncated or has no IHDR");
  auto be32 = [&](size_t o) {
    return (uint32_t(data[o]) << 24) | (uint32_t(data[o + 1]) << 16) | (uint32_t(data[o + 2]) << 8) | data[o + 3];
  };
  const uint32_t w = be32(16), h = be32(20);
  ImageInfo info;
  info.format = ImageFormat::png;
  info.width = w > 0x7fffffffu ? -1 : static_cast<int>(w);
  info.height = h > 0x7fffffffu ? -1 : static_cast<int>(h);
  return info;
}

std::vector<uint8_t> jpeg_compress(const uint8_t* pixels, int width, int height, int pixel_format, int subsamp,
                                   int quality) {
  if (!pixels || width <= 0 || height <= 0) throw DataError("encode_jpeg: empty image");
  if (quality < 1 || quality > 100) throw DataError("encode_jpeg: quality must be in 1..100");
  TjHandle h(tjInitCompress());
  if (!h) throw DataError("encode_jpeg: tjInitCompress failed: " + tj_message(nullptr));
  unsigned char* out = nullptr;
  unsigned long size = 0;
  const int rc = tjCompress2(h.get(), pixels, width, 0, height, pixel_format, &out, &size, subsamp, quality, 0);
  std::unique_ptr<unsigned char, TjFree> owned(out);
  if (rc != 0) throw DataError("encode_jpeg: " + tj_message(h.get()));
  return std::vector<uint8_t>(out, out + size);
}

}  // namespace

struct Decoder::Impl {
  TjHandle tj;
  std::vector<uint8_t> cmyk;    // scratch for CMYK/YCCK JPEGs: (h, w, 4)
  std::vector<int> dct_eighths;  // m such that m/8 is a supported scaling factor, ascending

  [[noreturn]] void fail(const std::string& what) { throw DecodeError(what + tj_message(tj.get())); }
  // After a failed or refused JPEG, TurboJPEG's handle can stay in a bad state (the next good
  // header then reads as 0x0), so it is renewed before the error leaves: what a Decoder does next
  // never depends on what it failed on before.
  template <typename F>
  auto renewing_on_error(F&& f) {
    try {
      return f();
    } catch (const DecodeError&) {
      tj.reset(tjInitDecompress());
      if (!tj) throw DecodeError("tjInitDecompress failed: " + tj_message(nullptr));
      throw;
    }
  }
};

Decoder::Decoder(DecodeLimits limits) : impl_(std::make_unique<Impl>()), limits_(limits) {
  impl_->tj.reset(tjInitDecompress());
  if (!impl_->tj) throw DecodeError("tjInitDecompress failed: " + tj_message(nullptr));
  int n = 0;
  const tjscalingfactor* f = tjGetScalingFactors(&n);
  for (int m = 1; m <= 8; ++m)
    for (int i = 0; f && i < n; ++i)
      if (int64_t(f[i].num) * 8 == int64_t(m) * f[i].denom) {
        impl_->dct_eighths.push_back(m);
        break;
      }
  if (impl_->dct_eighths.empty() || impl_->dct_eighths.back() != 8) impl_->dct_eighths.push_back(8);
}

Decoder::~Decoder() = default;

ImageInfo Decoder::info(const uint8_t* data, size_t size) {
  const ImageFormat fmt = sniff_format(data, size);
  if (fmt == ImageFormat::png) {
    ImageInfo i = png_info(data, size);
    check_limits(limits_, i.width, i.height, "PNG");
    return i;
  }
  if (fmt != ImageFormat::jpeg) throw DecodeError(size == 0 ? "empty file" : "not a JPEG or PNG file");
  return impl_->renewing_on_error([&] {
    int w = 0, h = 0, subsamp = 0, colorspace = 0;
    if (tjDecompressHeader3(impl_->tj.get(), data, static_cast<unsigned long>(size), &w, &h, &subsamp, &colorspace) != 0 &&
        (tjGetErrorCode(impl_->tj.get()) != TJERR_WARNING || w <= 0 || h <= 0))
      impl_->fail("bad JPEG header: ");
    check_limits(limits_, w, h, "JPEG");
    return ImageInfo{ImageFormat::jpeg, w, h};
  });
}

double Decoder::decode(const uint8_t* data, size_t size, Image& out, int min_width, int min_height) {
  const ImageFormat fmt = sniff_format(data, size);
  if (fmt == ImageFormat::unknown) throw DecodeError(size == 0 ? "empty file" : "not a JPEG or PNG file");

  if (fmt == ImageFormat::png) {
    // The IHDR size is checked before libpng starts, so an absurd size is refused by the same rule
    // (and message) as a JPEG's.
    const ImageInfo header = png_info(data, size);
    check_limits(limits_, header.width, header.height, "PNG");
    PngReader r(data, size);
    png_uint_32 w = 0, h = 0;
    if (!png_read_header_c(r.png, r.info, limits_.max_side, &w, &h))
      throw DecodeError(std::string("bad PNG: ") + r.state.message);
    check_limits(limits_, static_cast<int>(std::min<png_uint_32>(w, 0x7fffffffu)),
                 static_cast<int>(std::min<png_uint_32>(h, 0x7fffffffu)), "PNG");
    const size_t row_bytes = size_t(w) * 3;
    out.pixels.resize(row_bytes * h);
    std::vector<png_bytep> rows(h);
    for (png_uint_32 y = 0; y < h; ++y) rows[y] = out.pixels.data() + y * row_bytes;
    if (!png_read_pixels_c(r.png, r.info, rows.data(), row_bytes))
      throw DecodeError(std::string("bad PNG: ") + r.state.message);
    out.width = static_cast<int>(w);
    out.height = static_cast<int>(h);
    return 1.0;
  }

  return impl_->renewing_on_error([&] { return decode_jpeg(data, size, out, min_width, min_height); });
}

// The header's size, checked against the limits and for an end-of-image marker after the scan.
std::pair<int, int> Decoder::jpeg_header(const uint8_t* data, size_t size) {
  tjhandle tj = impl_->tj.get();
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, data, static_cast<unsigned long>(size), &w, &h, &subsamp, &colorspace) != 0 &&
      (tjGetErrorCode(tj) != TJERR_WARNING || says_data_ran_out(tj_message(tj))))
    impl_->fail("bad JPEG header: ");
  check_limits(limits_, w, h, "JPEG");
  if (!jpeg_ends_after_scan(data, size))
    throw DecodeError("truncated JPEG: no end-of-image marker after the scan data (Premature end of JPEG file)");
  return {w, h};
}

// The smallest supported m/8 whose scaled size still covers min_width x min_height.
int Decoder::jpeg_eighths(int w, int h, int min_width, int min_height) const {
  if (min_width <= 0 && min_height <= 0) return 8;
  for (int e : impl_->dct_eighths) {
    const tjscalingfactor f{e, 8};
    if (TJSCALED(w, f) >= min_width && TJSCALED(h, f) >= min_height) return e;
  }
  return 8;
}

double Decoder::decode_jpeg(const uint8_t* data, size_t size, Image& out, int min_width, int min_height) {
  const auto [w, h] = jpeg_header(data, size);
  const JpegWindow win = decode_jpeg_window(data, size, jpeg_eighths(w, h, min_width, min_height), 0, 0,
                                            std::numeric_limits<int>::max(), std::numeric_limits<int>::max(),
                                            out.pixels, impl_->cmyk);
  out.width = win.width;
  out.height = win.height;
  return double(win.scaled_width) / double(w);
}

Placement Decoder::decode_region(const uint8_t* data, size_t size, Image& out, const Region& region, int min_width,
                                 int min_height, int out_width, int out_height) {
  if (sniff_format(data, size) != ImageFormat::jpeg) {
    decode(data, size, out, min_width, min_height);  // PNG: whole, unscaled
    return {};
  }
  return impl_->renewing_on_error([&] {
    const auto [w, h] = jpeg_header(data, size);
    const int m = jpeg_eighths(w, h, min_width, min_height);
    const tjscalingfactor f{m, 8};
    const double sx = double(TJSCALED(w, f)) / w, sy = double(TJSCALED(h, f)) / h;
    // The resize's antialiasing filter reaches up to (scaled extent / output) + 1 pixels past the
    // region; one more for rounding, so every pixel it reads is decoded.
    const int mx = static_cast<int>(std::ceil(region.w * sx / std::max(out_width, 1))) + 2;
    const int my = static_cast<int>(std::ceil(region.h * sy / std::max(out_height, 1))) + 2;
    auto lo = [](double v, int margin) { return static_cast<int>(std::max(0.0, std::floor(v) - margin)); };
    auto hi = [](double v, int margin) { return static_cast<int>(std::min(1e9, std::ceil(v) + margin)); };
    const JpegWindow win = decode_jpeg_window(data, size, m, lo(region.x * sx, mx), lo(region.y * sy, my),
                                              hi((region.x + region.w) * sx, mx), hi((region.y + region.h) * sy, my),
                                              out.pixels, impl_->cmyk);
    out.width = win.width;
    out.height = win.height;
    return Placement{double(win.scaled_width) / w, double(win.scaled_height) / h, win.x0, win.y0};
  });
}

void Decoder::read_file(const std::filesystem::path& path, std::vector<uint8_t>& buffer) {
  // Files above this size are refused: no image of a training set comes near it.
  constexpr int64_t kMaxFileBytes = int64_t(1) << 30;
  auto fail = [&](const std::string& what) { throw DataError("cannot read " + path.string() + ": " + what); };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail("not a regular file");
  if (st.st_size > kMaxFileBytes) fail("file is larger than 1 GiB");
  buffer.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < buffer.size()) {
    const ssize_t n = ::read(fd, buffer.data() + got, buffer.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(std::strerror(errno));
    if (n == 0) break;  // the file shrank while being read
    got += static_cast<size_t>(n);
  }
  buffer.resize(got);
}

std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int width, int height, int channels, int quality) {
  if (channels != 1 && channels != 3) throw DataError("encode_jpeg: channels must be 1 or 3");
  return channels == 3 ? jpeg_compress(pixels, width, height, TJPF_RGB, TJSAMP_420, quality)
                       : jpeg_compress(pixels, width, height, TJPF_GRAY, TJSAMP_GRAY, quality);
}

std::vector<uint8_t> encode_jpeg_cmyk(const uint8_t* cmyk, int width, int height, int quality) {
  // TurboJPEG writes packed CMYK as a YCCK JPEG with an Adobe marker; the bytes are stored as
  // given, so pass Adobe-inverted values (255 = no ink) to get what Photoshop writes.
  return jpeg_compress(cmyk, width, height, TJPF_CMYK, TJSAMP_420, quality);
}

std::vector<uint8_t> encode_png(const uint8_t* pixels, int width, int height) {
  if (!pixels || width <= 0 || height <= 0) throw DataError("encode_png: empty image");
  std::vector<uint8_t> out;
  PngWriter wr(&out);
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  for (int y = 0; y < height; ++y) rows[static_cast<size_t>(y)] = const_cast<png_bytep>(pixels + size_t(y) * width * 3);
  if (!png_write_image_c(wr.png, wr.info, width, height, rows.data()))
    throw DataError(std::string("encode_png: ") + wr.state.message);
  return out;
}

}  // namespace lockstep::data
