// Fuzz target: an image file (JPEG or PNG, sniffed from its bytes) through the loader's
// per-sample work: the header, a whole decode, and decode_crop with a training box (drawn from a
// seed taken from the input) and the validation box. Only DecodeError / DataError may come out,
// and every output pixel must be written (the slot is poisoned first and checked after).
#include <cstring>
#include <vector>

#include "data/decode_crop.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep;
  using namespace lockstep::data;
  // Smaller than the loader's limits so that a fuzzed header cannot make each run allocate
  // gigabytes; the checks that enforce them are the same code.
  static Decoder decoder(DecodeLimits{2048, 2048LL * 2048});
  static Image image;
  uint64_t seed = 0;
  if (size > 0) seed = data[size - 1];
  fuzz::expect_clean("image", [&] {
    const ImageInfo info = decoder.info(data, size);
    fuzz::expect_clean("decode", [&] { decoder.decode(data, size, image, 0, 0); });
    fuzz::expect_clean("decode scaled", [&] { decoder.decode(data, size, image, 24, 24); });
    for (int size_out : {8, 32}) {
      const AugmentSpec spec;
      const CropBox boxes[2] = {random_resized_crop(info.width, info.height, spec, seed, 0, seed * 7 + 1),
                                center_crop(info.width, info.height, size_out, spec)};
      for (const CropBox& box : boxes) {
        std::vector<uint8_t> out(static_cast<size_t>(size_out) * size_out * 3, 0xAB);
        std::vector<uint8_t> again(out.size(), 0x54);
        fuzz::expect_clean("decode_crop", [&] {
          decode_crop(decoder, data, size, info, box, size_out, image, out.data());
          decode_crop(decoder, data, size, info, box, size_out, image, again.data());
          // Both poisons gone and the same pixels: every byte written, and written the same way.
          if (std::memcmp(out.data(), again.data(), out.size()) != 0) {
            std::fprintf(stderr, "decode_crop: output depends on what the slot held\n");
            std::abort();
          }
        });
      }
    }
  });
  return 0;
}
