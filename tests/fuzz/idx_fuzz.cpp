// Fuzz target: an IDX file (raw or gzip'd; the Fashion-MNIST import reads them) read with any
// number of dimensions, then as images (3) and labels (1). Only DataError may come out.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "data/idx.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep;
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("lockstep_idx_fuzz_" + std::to_string(::getpid()) + ".idx");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  for (int ndims : {-1, 1, 3})
    fuzz::expect_clean("read_idx", [&] {
      const data::IdxArray a = data::read_idx(path, ndims);
      size_t n = a.dims.empty() ? 0 : 1;
      for (uint32_t d : a.dims) n *= d;
      if (n != a.data.size()) {
        std::fprintf(stderr, "read_idx: %zu bytes for dims of %zu elements\n", a.data.size(), n);
        std::abort();
      }
    });
  return 0;
}
