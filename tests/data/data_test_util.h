// Helpers for data/ tests: a temporary folder that removes itself, file writing, and small
// synthetic images with known pixels.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace lockstep::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lockstep_data_XXXXXX").string();
    char* made = ::mkdtemp(tmpl.data());
    if (!made) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& p, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << p;
}

inline void write_text(const std::filesystem::path& p, const std::string& s) {
  write_file(p, std::vector<uint8_t>(s.begin(), s.end()));
}

// A smooth RGB test image (h, w, 3): gradients and a soft blob, so JPEG round trips are close.
inline std::vector<uint8_t> smooth_rgb(int w, int h) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double fx = double(x) / w, fy = double(y) / h;
      double blob = std::exp(-((fx - 0.5) * (fx - 0.5) + (fy - 0.4) * (fy - 0.4)) * 8.0);
      uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>(std::lround(40 + 180 * fx));
      p[1] = static_cast<uint8_t>(std::lround(30 + 150 * fy));
      p[2] = static_cast<uint8_t>(std::lround(50 + 160 * blob));
    }
  return px;
}

inline double mean_abs_error(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  EXPECT_EQ(a.size(), b.size());
  if (a.size() != b.size() || a.empty()) return 1e9;
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::abs(int(a[i]) - int(b[i]));
  return s / double(a.size());
}

}  // namespace lockstep::test
