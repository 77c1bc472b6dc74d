#include "data/synthetic_source.h"

#include <algorithm>
#include <cmath>

#include "kernels/philox.h"

namespace lockstep::data {

namespace {
// Philox keys: one per purpose, so templates, labels and noise never share numbers.
constexpr uint64_t kTemplateKey = 0x7e3a11f0c0ffee01ull;
constexpr uint64_t kSampleKey = 0x5a3b1c2d00000000ull;

uint64_t sample_key(uint64_t seed, uint64_t stream) { return kSampleKey ^ (seed * 0x9E3779B97F4A7C15ull) ^ (stream << 1); }
}  // namespace

SyntheticSource::SyntheticSource(const SyntheticSpec& s) : spec_(s) {
  LS_CHECK(s.classes >= 1 && s.image_size >= 1 && s.batch >= 1 && s.batches_per_epoch >= 1,
           "synthetic data: classes, image size, batch and batches per epoch must be positive");
  LS_CHECK(s.world >= 1 && s.rank >= 0 && s.rank < s.world, "synthetic data: rank " << s.rank << " of " << s.world);
  const int64_t pixels = int64_t(s.image_size) * s.image_size * 3;
  // A class's template: its own mean colour plus a sinusoidal grating of its own frequency and
  // orientation. Both survive global average pooling (the colour directly, the grating through
  // convolution), unlike i.i.d. pixel templates, whose local statistics would all look alike.
  templates_.resize(static_cast<size_t>(s.classes * pixels));
  const float size = static_cast<float>(s.image_size);
  for (int c = 0; c < s.classes; ++c) {
    Philox4 a = philox4x32_10(kTemplateKey ^ s.seed, 2 * static_cast<uint64_t>(c));
    Philox4 b = philox4x32_10(kTemplateKey ^ s.seed, 2 * static_cast<uint64_t>(c) + 1);
    float fx = static_cast<float>(a.v[3] % 4) + 1.f, fy = static_cast<float>(b.v[3] % 4);
    for (int y = 0; y < s.image_size; ++y)
      for (int x = 0; x < s.image_size; ++x)
        for (int ch = 0; ch < 3; ++ch) {
          float colour = (philox_uniform(a.v[ch]) - 0.5f) * 128.f;
          float phase = philox_uniform(b.v[ch]) * 6.2831853f;
          float v = 128.f + colour + 40.f * std::sin(6.2831853f * (fx * x + fy * y) / size + phase);
          templates_[static_cast<size_t>(((c * s.image_size + y) * s.image_size + x) * 3 + ch)] =
              static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
        }
  }
  images_ = PinnedBuffer(static_cast<size_t>(s.batch * pixels));
  labels_ = PinnedBuffer(static_cast<size_t>(s.batch) * 4);
  flips_ = PinnedBuffer(static_cast<size_t>(s.batch));
  batch_.images = images_.tensor({s.batch, s.image_size, s.image_size, 3}, DType::u8);
  batch_.labels = labels_.tensor({s.batch}, DType::i32);
  batch_.flips = flips_.tensor({s.batch}, DType::u8);
  batch_.count = s.batch;
}

void SyntheticSource::start_epoch(int64_t epoch, int64_t position) {
  LS_CHECK(epoch >= 0 && position >= 0 && position <= spec_.batches_per_epoch,
           "synthetic data: cannot start epoch " << epoch << " at batch " << position << " of " << spec_.batches_per_epoch);
  epoch_ = epoch;
  position_ = position;
}

int SyntheticSource::label_of(int64_t epoch, int64_t index) const {
  uint64_t counter = (static_cast<uint64_t>(epoch) << 40) + static_cast<uint64_t>(index) * (1ull << 16);
  return static_cast<int>(philox4x32_10(sample_key(spec_.seed, spec_.stream), counter).v[0] % spec_.classes);
}

void SyntheticSource::make_sample(int64_t epoch, int64_t index, uint8_t* pixels, int32_t* label, uint8_t* flip) const {
  // Counter layout: epoch in the top bits, then the sample index, then a per-sample counter.
  const uint64_t key = sample_key(spec_.seed, spec_.stream);
  const uint64_t base = (static_cast<uint64_t>(epoch) << 40) + static_cast<uint64_t>(index) * (1ull << 16);
  Philox4 head = philox4x32_10(key, base);
  *label = static_cast<int32_t>(head.v[0] % spec_.classes);
  *flip = spec_.flips ? static_cast<uint8_t>(head.v[1] & 1u) : 0;
  const int64_t n = int64_t(spec_.image_size) * spec_.image_size * 3;
  const uint8_t* t = templates_.data() + *label * n;
  for (int64_t i = 0; i < n; i += 4) {
    Philox4 r = philox4x32_10(key, base + 1 + static_cast<uint64_t>(i / 4));
    // Two Box-Muller pairs give four normals.
    for (int pair = 0; pair < 2; ++pair) {
      float u1 = philox_uniform(r.v[2 * pair]), u2 = philox_uniform(r.v[2 * pair + 1]);
      float rad = std::sqrt(-2.f * std::log(u1));
      float z[2] = {rad * std::cos(6.2831853f * u2), rad * std::sin(6.2831853f * u2)};
      for (int k = 0; k < 2; ++k) {
        int64_t j = i + 2 * pair + k;
        if (j >= n) break;
        float v = static_cast<float>(t[j]) + spec_.noise * z[k];
        pixels[j] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  }
}

const HostBatch& SyntheticSource::next() {
  LS_CHECK(position_ < spec_.batches_per_epoch, "synthetic data: epoch " << epoch_ << " has only "
                                                << spec_.batches_per_epoch << " batches");
  const int64_t n = int64_t(spec_.image_size) * spec_.image_size * 3;
  uint8_t* px = static_cast<uint8_t*>(images_.data());
  int32_t* lb = static_cast<int32_t*>(labels_.data());
  uint8_t* fl = static_cast<uint8_t*>(flips_.data());
#pragma omp parallel for schedule(static)
  for (int b = 0; b < spec_.batch; ++b)
    make_sample(epoch_, (position_ * spec_.world + spec_.rank) * spec_.batch + b, px + b * n, lb + b, fl + b);
  ++position_;
  return batch_;
}

}  // namespace lockstep::data
