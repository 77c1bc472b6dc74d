// Decoding: JPEG (RGB, grayscale, CMYK) and PNG (every colour type) against known pixels, DCT
// scaling, and bad input, each case its own test: nothing crashes, everything bad throws
// DecodeError, and 10,000 corrupt buffers leak nothing.
#include <gtest/gtest.h>
#include <malloc.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "data/augment.h"
#include "data/decode.h"
#include "data_test_util.h"

namespace lockstep::data {
namespace {

namespace fs = std::filesystem;
using test::mean_abs_error;
using test::smooth_rgb;
using test::TempDir;

// The message of the DecodeError that `f` throws; fails the test if it throws nothing.
template <class F>
std::string decode_error(F f) {
  try {
    f();
  } catch (const DecodeError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a DecodeError";
  return "";
}

std::vector<uint8_t> decode_rgb(const std::vector<uint8_t>& bytes, int* w = nullptr, int* h = nullptr) {
  Decoder dec;
  Image img;
  dec.decode(bytes.data(), bytes.size(), img);
  if (w) *w = img.width;
  if (h) *h = img.height;
  return img.pixels;
}

// Offset of the first marker FF <code> after the SOI, or npos.
size_t find_marker(const std::vector<uint8_t>& j, uint8_t code) {
  for (size_t i = 2; i + 1 < j.size(); ++i)
    if (j[i] == 0xFF && j[i + 1] == code) return i;
  return std::string::npos;
}

TEST(Decode, RgbJpegMatchesSourcePixels) {
  const int w = 160, h = 120;
  auto src = smooth_rgb(w, h);
  auto jpeg = encode_jpeg(src.data(), w, h, 3, 95);
  EXPECT_EQ(sniff_format(jpeg.data(), jpeg.size()), ImageFormat::jpeg);
  Decoder dec;
  ImageInfo info = dec.info(jpeg.data(), jpeg.size());
  EXPECT_EQ(info.format, ImageFormat::jpeg);
  EXPECT_EQ(info.width, w);
  EXPECT_EQ(info.height, h);
  Image img;
  EXPECT_EQ(dec.decode(jpeg.data(), jpeg.size(), img), 1.0);
  EXPECT_EQ(img.width, w);
  EXPECT_EQ(img.height, h);
  EXPECT_LT(mean_abs_error(img.pixels, src), 2.0);
}

TEST(Decode, GrayscaleJpegBecomesThreeEqualChannels) {
  const int w = 96, h = 64;
  auto rgb = smooth_rgb(w, h);
  std::vector<uint8_t> gray(size_t(w) * h), gray3(size_t(w) * h * 3);
  for (size_t i = 0; i < gray.size(); ++i) {
    gray[i] = static_cast<uint8_t>((rgb[3 * i] * 3 + rgb[3 * i + 1] * 5 + rgb[3 * i + 2] * 2) / 10);
    gray3[3 * i] = gray3[3 * i + 1] = gray3[3 * i + 2] = gray[i];
  }
  int dw = 0, dh = 0;
  auto from_gray = decode_rgb(encode_jpeg(gray.data(), w, h, 1, 95), &dw, &dh);
  EXPECT_EQ(dw, w);
  EXPECT_EQ(dh, h);
  for (size_t i = 0; i < from_gray.size(); i += 3) {
    ASSERT_EQ(from_gray[i], from_gray[i + 1]) << i;
    ASSERT_EQ(from_gray[i], from_gray[i + 2]) << i;
  }
  auto from_rgb = decode_rgb(encode_jpeg(gray3.data(), w, h, 3, 95));
  EXPECT_LT(mean_abs_error(from_gray, from_rgb), 4.0);
  EXPECT_LT(mean_abs_error(from_gray, gray3), 2.0);
}

TEST(Decode, AdobeCmykJpegDecodesToTheSameRgb) {
  const int w = 128, h = 96;
  auto rgb = smooth_rgb(w, h);
  // Adobe-inverted CMYK whose conversion R = c * k / 255 gives back the RGB: k = max(R, G, B).
  std::vector<uint8_t> cmyk(size_t(w) * h * 4);
  for (size_t i = 0; i < size_t(w) * h; ++i) {
    const int k = std::max({rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]});
    for (int c = 0; c < 3; ++c) cmyk[4 * i + c] = static_cast<uint8_t>(k ? std::lround(rgb[3 * i + c] * 255.0 / k) : 255);
    cmyk[4 * i + 3] = static_cast<uint8_t>(k);
  }
  auto cmyk_jpeg = encode_jpeg_cmyk(cmyk.data(), w, h, 95);
  auto from_cmyk = decode_rgb(cmyk_jpeg);
  auto from_rgb = decode_rgb(encode_jpeg(rgb.data(), w, h, 3, 95));
  EXPECT_LT(mean_abs_error(from_cmyk, from_rgb), 4.0);
  EXPECT_LT(mean_abs_error(from_cmyk, rgb), 4.0);
}

TEST(Decode, CmykConversionFormulaOnFlatColours) {
  // Flat patches decode almost exactly, so the formula itself is checked: (c, k) -> c * k / 255.
  const int w = 16, h = 16;
  struct Case {
    uint8_t c, m, y, k;
  };
  for (Case cs : {Case{255, 255, 255, 255}, Case{255, 128, 0, 255}, Case{200, 100, 50, 128}, Case{10, 20, 30, 0}}) {
    std::vector<uint8_t> cmyk(size_t(w) * h * 4);
    for (size_t i = 0; i < cmyk.size(); i += 4) {
      cmyk[i] = cs.c;
      cmyk[i + 1] = cs.m;
      cmyk[i + 2] = cs.y;
      cmyk[i + 3] = cs.k;
    }
    auto px = decode_rgb(encode_jpeg_cmyk(cmyk.data(), w, h, 100));
    const double want[3] = {cs.c * cs.k / 255.0, cs.m * cs.k / 255.0, cs.y * cs.k / 255.0};
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(px[size_t(8 * w + 8) * 3 + c], want[c], 3.0) << int(cs.c) << " " << c;
  }
}

TEST(Decode, PngNamedJpegDecodesByItsBytes) {
  TempDir d;
  const int w = 40, h = 30;
  auto src = smooth_rgb(w, h);
  test::write_file(d.path() / "n01" / "n01_0001.JPEG", encode_png(src.data(), w, h));
  std::vector<uint8_t> buf;
  Decoder::read_file(d.path() / "n01" / "n01_0001.JPEG", buf);
  EXPECT_EQ(sniff_format(buf.data(), buf.size()), ImageFormat::png);
  Decoder dec;
  ImageInfo info = dec.info(buf.data(), buf.size());
  EXPECT_EQ(info.format, ImageFormat::png);
  EXPECT_EQ(info.width, w);
  EXPECT_EQ(info.height, h);
  Image img;
  // PNG decodes at full size whatever the request.
  EXPECT_EQ(dec.decode(buf.data(), buf.size(), img, 10, 10), 1.0);
  EXPECT_EQ(img.width, w);
  EXPECT_EQ(img.height, h);
  EXPECT_EQ(img.pixels, src);  // lossless
}

// Writes a PNG of another colour type with libpng's simplified API.
std::vector<uint8_t> png_of(png_uint_32 format, int w, int h, const void* pixels, const void* colormap = nullptr,
                            int colormap_entries = 0) {
  png_image im{};
  im.version = PNG_IMAGE_VERSION;
  im.width = static_cast<png_uint_32>(w);
  im.height = static_cast<png_uint_32>(h);
  im.format = format;
  im.colormap_entries = static_cast<png_uint_32>(colormap_entries);
  png_alloc_size_t size = 0;
  EXPECT_TRUE(png_image_write_to_memory(&im, nullptr, &size, 0, pixels, 0, colormap)) << im.message;
  std::vector<uint8_t> out(size);
  EXPECT_TRUE(png_image_write_to_memory(&im, out.data(), &size, 0, pixels, 0, colormap)) << im.message;
  out.resize(size);
  return out;
}

TEST(Decode, PngColourTypesAllBecome8BitRgb) {
  const int w = 7, h = 5;  // odd sizes: row padding bugs show
  auto rgb = smooth_rgb(w, h);
  std::vector<uint8_t> gray(size_t(w) * h), gray3(size_t(w) * h * 3), rgba(size_t(w) * h * 4);
  std::vector<uint16_t> gray16(size_t(w) * h);
  for (size_t i = 0; i < gray.size(); ++i) {
    gray[i] = rgb[3 * i + 1];
    gray16[i] = static_cast<uint16_t>(gray[i] * 257);
    for (int c = 0; c < 3; ++c) gray3[3 * i + c] = gray[i];
    for (int c = 0; c < 3; ++c) rgba[4 * i + c] = rgb[3 * i + c];
    rgba[4 * i + 3] = static_cast<uint8_t>(i * 37);  // alpha is dropped, not composited
  }
  EXPECT_EQ(decode_rgb(png_of(PNG_FORMAT_GRAY, w, h, gray.data())), gray3);
  EXPECT_EQ(decode_rgb(png_of(PNG_FORMAT_RGBA, w, h, rgba.data())), rgb);
  EXPECT_EQ(decode_rgb(png_of(PNG_FORMAT_LINEAR_Y, w, h, gray16.data())), gray3);  // 16-bit
  // Palette: 4 colours.
  const uint8_t palette[4 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30};
  std::vector<uint8_t> idx(size_t(w) * h), want(size_t(w) * h * 3);
  for (size_t i = 0; i < idx.size(); ++i) {
    idx[i] = static_cast<uint8_t>(i % 4);
    for (int c = 0; c < 3; ++c) want[3 * i + c] = palette[idx[i] * 3 + c];
  }
  EXPECT_EQ(decode_rgb(png_of(PNG_FORMAT_RGB_COLORMAP, w, h, idx.data(), palette, 4)), want);
}

TEST(Decode, DctScalingPicksTheSmallestFactorThatCovers) {
  const int w = 400, h = 300;
  auto src = smooth_rgb(w, h);
  auto jpeg = encode_jpeg(src.data(), w, h, 3, 90);
  Decoder dec;
  Image img;
  struct Case {
    int min_w, min_h, out_w, out_h;
  };
  // TJSCALED rounds up: ceil(400 * m / 8) x ceil(300 * m / 8).
  for (Case c : {Case{0, 0, 400, 300}, Case{1, 1, 50, 38}, Case{100, 75, 100, 75}, Case{101, 75, 150, 113},
                 Case{100, 76, 150, 113}, Case{224, 224, 300, 225}, Case{350, 10, 350, 263},
                 Case{399, 299, 400, 300}, Case{1000, 1000, 400, 300}, Case{0, 160, 250, 188}}) {
    const double scale = dec.decode(jpeg.data(), jpeg.size(), img, c.min_w, c.min_h);
    EXPECT_EQ(img.width, c.out_w) << c.min_w << "x" << c.min_h;
    EXPECT_EQ(img.height, c.out_h) << c.min_w << "x" << c.min_h;
    EXPECT_DOUBLE_EQ(scale, double(c.out_w) / w);
    EXPECT_EQ(img.pixels.size(), size_t(img.width) * img.height * 3);
  }
  // The scaled image shows the same picture: compare with a box-filtered source at 1/4.
  dec.decode(jpeg.data(), jpeg.size(), img, 100, 75);
  std::vector<uint8_t> ref(size_t(100) * 75 * 3);
  for (int y = 0; y < 75; ++y)
    for (int x = 0; x < 100; ++x)
      for (int c = 0; c < 3; ++c) {
        int s = 0;
        for (int dy = 0; dy < 4; ++dy)
          for (int dx = 0; dx < 4; ++dx) s += src[(size_t(4 * y + dy) * w + 4 * x + dx) * 3 + c];
        ref[(size_t(y) * 100 + x) * 3 + c] = static_cast<uint8_t>((s + 8) / 16);
      }
  EXPECT_LT(mean_abs_error(img.pixels, ref), 3.0);
}

TEST(Decode, CmykJpegIsScaledToo) {
  const int w = 64, h = 64;
  std::vector<uint8_t> cmyk(size_t(w) * h * 4, 200);
  auto jpeg = encode_jpeg_cmyk(cmyk.data(), w, h, 90);
  Decoder dec;
  Image img;
  EXPECT_DOUBLE_EQ(dec.decode(jpeg.data(), jpeg.size(), img, 16, 16), 0.25);
  EXPECT_EQ(img.width, 16);
  EXPECT_EQ(img.height, 16);
  EXPECT_NEAR(img.pixels[0], 200 * 200 / 255.0, 3.0);
}

TEST(Decode, RecoverableJpegWarningIsNotAnError) {
  // Two stray bytes before the SOS marker: libjpeg warns ("extraneous bytes before marker") and
  // decodes the image in full, as PIL does; such files exist in real datasets.
  const int w = 64, h = 48;
  auto src = smooth_rgb(w, h);
  auto jpeg = encode_jpeg(src.data(), w, h, 3, 95);
  const size_t sos = find_marker(jpeg, 0xDA);
  ASSERT_NE(sos, std::string::npos);
  jpeg.insert(jpeg.begin() + static_cast<std::ptrdiff_t>(sos), {0x00, 0x00});
  int dw = 0, dh = 0;
  auto px = decode_rgb(jpeg, &dw, &dh);
  EXPECT_EQ(dw, w);
  EXPECT_EQ(dh, h);
  EXPECT_LT(mean_abs_error(px, src), 2.0);
}

// ---- bad input, one test each ----------------------------------------------------------------

std::vector<uint8_t> sample_jpeg(int w = 256, int h = 192) {
  auto src = smooth_rgb(w, h);
  return encode_jpeg(src.data(), w, h, 3, 90);
}

TEST(DecodeBad, ZeroBytes) {
  Decoder dec;
  Image img;
  std::vector<uint8_t> empty;
  EXPECT_NE(decode_error([&] { dec.decode(empty.data(), 0, img); }).find("empty"), std::string::npos);
  EXPECT_NE(decode_error([&] { dec.info(nullptr, 0); }).find("empty"), std::string::npos);
}

TEST(DecodeBad, RandomBytes) {
  Decoder dec;
  Image img;
  std::mt19937 gen(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<uint8_t> junk(64 + trial * 97);
    for (auto& b : junk) b = static_cast<uint8_t>(gen());
    EXPECT_NE(decode_error([&] { dec.decode(junk.data(), junk.size(), img); }).find("not a JPEG or PNG"),
              std::string::npos);
    // Random bytes behind a real signature reach the libraries, which must refuse them too.
    junk[0] = 0xFF, junk[1] = 0xD8, junk[2] = 0xFF;
    decode_error([&] { dec.decode(junk.data(), junk.size(), img); });
    const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    std::copy(sig, sig + 8, junk.begin());
    decode_error([&] { dec.decode(junk.data(), junk.size(), img); });
  }
}

TEST(DecodeBad, JpegTruncatedAt10Bytes) {
  auto j = sample_jpeg();
  j.resize(10);
  Decoder dec;
  Image img;
  decode_error([&] { dec.decode(j.data(), j.size(), img); });
  decode_error([&] { dec.info(j.data(), j.size()); });
}

TEST(DecodeBad, JpegTruncatedInsideTheHeader) {
  auto full = sample_jpeg();
  const size_t sof = find_marker(full, 0xC0), sos = find_marker(full, 0xDA);
  ASSERT_NE(sof, std::string::npos);
  ASSERT_NE(sos, std::string::npos);
  Decoder dec;
  Image img;
  // Cut inside the frame header, between it and the scan header, and inside the scan header.
  for (size_t cut : {sof + 5, (sof + sos) / 2, sos + 4}) {
    std::vector<uint8_t> j(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
    decode_error([&] { dec.decode(j.data(), j.size(), img); });
  }
}

TEST(DecodeBad, JpegTruncatedAtHalfIsAnErrorNotGreyFill) {
  auto j = sample_jpeg();
  j.resize(j.size() / 2);
  Decoder dec;
  Image img;
  std::string msg = decode_error([&] { dec.decode(j.data(), j.size(), img); });
  EXPECT_NE(msg.find("remature end"), std::string::npos) << msg;
  // The header is intact: info still reads the size.
  EXPECT_EQ(dec.info(j.data(), j.size()).width, 256);
  // Every cut in the entropy-coded data is refused (except keeping everything but the EOI).
  const size_t sos = find_marker(j, 0xDA);
  for (size_t cut = sos + 20; cut < j.size(); cut += 97) {
    std::vector<uint8_t> part(j.begin(), j.begin() + static_cast<std::ptrdiff_t>(cut));
    decode_error([&] { dec.decode(part.data(), part.size(), img); });
  }
}

// A failure must not poison the Decoder: the next good image decodes as on a fresh one (the
// loader's results would otherwise depend on which thread had met a bad file before).
TEST(DecodeBad, AFailureLeavesTheDecoderUsable) {
  auto good = sample_jpeg();
  const size_t sos = find_marker(good, 0xDA);
  for (size_t cut : {size_t(10), sos - 4, good.size() / 2}) {
    std::vector<uint8_t> bad(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut));
    Decoder dec;
    Image img, fresh;
    if (cut < sos) decode_error([&] { dec.info(bad.data(), bad.size()); });  // a cut header
    EXPECT_EQ(dec.info(good.data(), good.size()).width, 256) << "cut at " << cut;
    decode_error([&] { dec.decode(bad.data(), bad.size(), img); });
    dec.decode(good.data(), good.size(), img);
    Decoder().decode(good.data(), good.size(), fresh);
    EXPECT_EQ(img.pixels, fresh.pixels) << "cut at " << cut;
  }
}

TEST(DecodeBad, TruncationAfterAnEarlierHarmlessWarningIsStillAnError) {
  // TurboJPEG keeps only the first warning's text ("extraneous bytes" here), so truncation is
  // detected from the structure: no end-of-image marker after the scan.
  auto j = sample_jpeg();
  const size_t sos = find_marker(j, 0xDA);
  j.insert(j.begin() + static_cast<std::ptrdiff_t>(sos), {0x00, 0x00});
  Decoder dec;
  Image img;
  dec.decode(j.data(), j.size(), img);  // whole: accepted, with a warning
  std::vector<uint8_t> half(j.begin(), j.begin() + static_cast<std::ptrdiff_t>(j.size() * 3 / 4));
  std::string msg = decode_error([&] { dec.decode(half.data(), half.size(), img); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  // Cut scan data with an EOI pasted after it: libjpeg's "premature end of data segment".
  auto pasted = sample_jpeg();
  pasted.resize(pasted.size() * 3 / 4);
  pasted.push_back(0xFF);
  pasted.push_back(0xD9);
  msg = decode_error([&] { dec.decode(pasted.data(), pasted.size(), img); });
  EXPECT_NE(msg.find("premature end"), std::string::npos) << msg;
  // Both: a harmless warning first, then scan data cut with an EOI pasted after it. Every
  // warning is seen (libjpeg's emit_message, data/jpeg_window.cpp), not only the first.
  auto both = j;
  both.resize(both.size() * 3 / 4);
  both.push_back(0xFF);
  both.push_back(0xD9);
  msg = decode_error([&] { dec.decode(both.data(), both.size(), img); });
  EXPECT_NE(msg.find("premature end"), std::string::npos) << msg;
  // Trailing bytes after the EOI are fine (many cameras append some).
  auto tail = sample_jpeg();
  tail.insert(tail.end(), 100, 0x00);
  dec.decode(tail.data(), tail.size(), img);
  EXPECT_EQ(img.width, 256);
  // An EXIF-like APP1 segment holding FF D9 bytes does not count as the image's end.
  auto app = sample_jpeg();
  const std::vector<uint8_t> app1 = {0xFF, 0xE1, 0x00, 0x08, 0xFF, 0xD9, 0xFF, 0xD9, 0xFF, 0xDA};
  app.insert(app.begin() + 2, app1.begin(), app1.end());
  dec.decode(app.data(), app.size(), img);
  app.resize(app.size() / 2);
  decode_error([&] { dec.decode(app.data(), app.size(), img); });
}

TEST(DecodeBad, HeaderClaiming65000SquaredIsRefusedBeforeAllocation) {
  auto j = sample_jpeg(16, 16);
  const size_t sof = find_marker(j, 0xC0);
  ASSERT_NE(sof, std::string::npos);
  // SOF0: FF C0, length (2), precision (1), height (2), width (2).
  j[sof + 5] = j[sof + 7] = 65000 >> 8;
  j[sof + 6] = j[sof + 8] = 65000 & 0xFF;
  Decoder dec;
  Image img;
  std::string msg = decode_error([&] { dec.decode(j.data(), j.size(), img); });
  EXPECT_NE(msg.find("65000x65000"), std::string::npos) << msg;
  EXPECT_EQ(img.pixels.capacity(), 0u);  // nothing was sized
  msg = decode_error([&] { dec.info(j.data(), j.size()); });
  EXPECT_NE(msg.find("65000x65000"), std::string::npos) << msg;
  // The same for a PNG's IHDR, and a custom limit is honoured.
  auto src = smooth_rgb(8, 8);
  auto png = encode_png(src.data(), 8, 8);
  png[16] = png[20] = 0, png[17] = png[21] = 0, png[18] = png[22] = 65000 >> 8, png[19] = png[23] = 65000 & 0xFF;
  msg = decode_error([&] { dec.decode(png.data(), png.size(), img); });
  EXPECT_NE(msg.find("65000x65000"), std::string::npos) << msg;
  Decoder small(DecodeLimits{100, 100 * 100});
  auto big = sample_jpeg(128, 16);
  decode_error([&] { small.decode(big.data(), big.size(), img); });
  Decoder few_pixels(DecodeLimits{1000, 1000});
  auto many = sample_jpeg(40, 40);
  decode_error([&] { few_pixels.decode(many.data(), many.size(), img); });
}

TEST(DecodeBad, TinyAndThinImagesDecodeAndCropValidly) {
  Decoder dec;
  Image img;
  for (auto [w, h] : {std::pair{1, 1}, std::pair{500, 33}, std::pair{33, 500}, std::pair{2, 1}}) {
    auto src = smooth_rgb(w, h);
    for (const auto& bytes : {encode_jpeg(src.data(), w, h, 3, 95), encode_png(src.data(), w, h)}) {
      // Ask the decoder for what a 224 crop needs: it cannot go below full size here.
      dec.decode(bytes.data(), bytes.size(), img, 224, 224);
      ASSERT_EQ(img.width, w);
      ASSERT_EQ(img.height, h);
      for (uint64_t i = 0; i < 20; ++i) {
        CropBox b = random_resized_crop(w, h, AugmentSpec{}, 1, 0, i);
        EXPECT_GE(b.x, 0);
        EXPECT_GE(b.y, 0);
        EXPECT_GT(b.w, 0);
        EXPECT_GT(b.h, 0);
        EXPECT_LE(b.x + b.w, w);
        EXPECT_LE(b.y + b.h, h);
        std::vector<uint8_t> out(224 * 224 * 3);
        resize_crop(img.pixels.data(), img.width, img.height, b, out.data(), 224, 224);
      }
      CropBox c = center_crop(w, h, 224, AugmentSpec{});
      std::vector<uint8_t> out(224 * 224 * 3);
      resize_crop(img.pixels.data(), img.width, img.height, c, out.data(), 224, 224);
      if (w == 1 && h == 1) {
        for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], img.pixels[i % 3]) << i;
      }
    }
  }
}

TEST(DecodeBad, NonImageFile) {
  TempDir d;
  test::write_text(d.path() / "labels.txt", "n01440764 tench, Tinca tinca\n");
  std::vector<uint8_t> buf;
  Decoder::read_file(d.path() / "labels.txt", buf);
  Decoder dec;
  Image img;
  EXPECT_NE(decode_error([&] { dec.decode(buf.data(), buf.size(), img); }).find("not a JPEG or PNG"),
            std::string::npos);
}

TEST(DecodeBad, CorruptPng) {
  auto src = smooth_rgb(50, 40);
  auto png = encode_png(src.data(), 50, 40);
  Decoder dec;
  Image img;
  std::vector<uint8_t> half(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(png.size() / 2));
  decode_error([&] { dec.decode(half.data(), half.size(), img); });
  auto flipped = png;
  flipped[png.size() / 2] ^= 0x55;  // inside IDAT: the CRC no longer matches
  decode_error([&] { dec.decode(flipped.data(), flipped.size(), img); });
  std::vector<uint8_t> sig_only(png.begin(), png.begin() + 12);
  decode_error([&] { dec.decode(sig_only.data(), sig_only.size(), img); });
}

TEST(DecodeBad, MissingFileNamesThePath) {
  TempDir d;
  std::vector<uint8_t> buf;
  const fs::path p = d.path() / "gone.JPEG";
  try {
    Decoder::read_file(p, buf);
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
  }
}

TEST(DecodeBad, DirectoryInPlaceOfAFileNamesThePath) {
  TempDir d;
  fs::create_directories(d.path() / "dir.JPEG");
  std::vector<uint8_t> buf;
  try {
    Decoder::read_file(d.path() / "dir.JPEG", buf);
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find((d.path() / "dir.JPEG").string()), std::string::npos) << e.what();
  }
}

TEST(DecodeBad, UnreadableFileNamesThePath) {
  TempDir d;
  const fs::path p = d.path() / "locked.JPEG";
  test::write_file(p, sample_jpeg(8, 8));
  ASSERT_EQ(::chmod(p.c_str(), 0), 0);
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: chmod 000 does not stop root from reading";
  std::vector<uint8_t> buf;
  try {
    Decoder::read_file(p, buf);
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ermission"), std::string::npos) << e.what();
  }
}

TEST(DecodeBad, TenThousandCorruptBuffersLeakNothing) {
  // glibc's count of bytes in use must not grow: every handle and buffer on every error path is
  // released. (Also meant for valgrind / the sanitizer build.)
  auto j = sample_jpeg(32, 32);
  auto src = smooth_rgb(16, 16);
  auto png = encode_png(src.data(), 16, 16);
  std::vector<std::vector<uint8_t>> bad;
  bad.emplace_back(j.begin(), j.begin() + static_cast<std::ptrdiff_t>(j.size() / 2));  // truncated data
  bad.emplace_back(j.begin(), j.begin() + 30);                                        // truncated header
  bad.push_back(j);
  bad.back()[find_marker(j, 0xC0) + 5] = 0xFF;  // huge height
  bad.emplace_back(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(png.size() / 2));
  bad.push_back(png);
  bad.back()[png.size() / 2] ^= 0x55;
  std::mt19937 gen(3);
  for (int k = 0; k < 3; ++k) {
    bad.push_back(j);
    for (size_t i = find_marker(j, 0xDA) + 14; i < j.size(); i += 3) bad.back()[i] = static_cast<uint8_t>(gen());
  }

  auto run = [&](int n) {
    Decoder dec;
    Image img;
    int errors = 0;
    for (int i = 0; i < n; ++i) {
      const auto& b = bad[static_cast<size_t>(i) % bad.size()];
      try {
        dec.decode(b.data(), b.size(), img, 8, 8);
      } catch (const DecodeError&) {
        ++errors;
      }
    }
    return errors;
  };
  run(200);  // warm up lazily allocated library state
  const auto t0 = std::chrono::steady_clock::now();
  const size_t before = mallinfo2().uordblks;
  const int errors = run(10000);
  const size_t after = mallinfo2().uordblks;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(errors, 10000 * 6 / int(bad.size()));  // the structurally broken ones always fail
  EXPECT_LT(after, before + 64 * 1024) << "bytes in use grew from " << before << " to " << after;
  EXPECT_LT(seconds, 10.0);
  // Fresh decoders each time: construction and destruction release everything too.
  const size_t before2 = mallinfo2().uordblks;
  for (int i = 0; i < 500; ++i) run(2);
  EXPECT_LT(mallinfo2().uordblks, before2 + 64 * 1024);
}

}  // namespace
}  // namespace lockstep::data
