#include "data/idx.h"

#include <zlib.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <sstream>
#include <system_error>

#include "data/decode.h"

namespace lockstep::data {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 32;  // 4 GiB: far above any IDX data set

[[noreturn]] void fail(const fs::path& path, const std::string& what) {
  throw DataError("IDX file " + path.string() + ": " + what);
}

std::vector<uint8_t> read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(path, "read error");
  return bytes;
}

std::vector<uint8_t> gunzip(const fs::path& path, const std::vector<uint8_t>& in) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) fail(path, "zlib inflateInit2 failed");
  std::vector<uint8_t> out(std::max<size_t>(in.size() * 4, 1 << 16));
  z.next_in = const_cast<Bytef*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  size_t produced = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (produced == out.size()) {
      if (out.size() >= kMaxIdxBytes) {
        inflateEnd(&z);
        fail(path, "gzip data inflates beyond 4 GiB");
      }
      out.resize(out.size() * 2);
    }
    z.next_out = out.data() + produced;
    z.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - produced, 1u << 30));
    const uInt before = z.avail_out;
    rc = inflate(&z, Z_NO_FLUSH);
    produced += before - z.avail_out;
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      std::string msg = z.msg ? z.msg : "error " + std::to_string(rc);
      inflateEnd(&z);
      fail(path, "corrupt gzip data (" + msg + ")");
    }
    if (z.avail_in == 0 && z.avail_out != 0) {
      inflateEnd(&z);
      fail(path, "truncated gzip data");
    }
  }
  inflateEnd(&z);
  out.resize(produced);
  return out;
}

}  // namespace

IdxArray read_idx(const fs::path& path, int ndims) {
  std::vector<uint8_t> bytes = read_all(path);
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) bytes = gunzip(path, bytes);
  if (bytes.size() < 4) fail(path, "too short for an IDX header (" + std::to_string(bytes.size()) + " bytes)");
  if (bytes[0] != 0 || bytes[1] != 0) {
    std::ostringstream os;
    os << "bad magic number 0x" << std::hex << (int{bytes[0]} << 24 | int{bytes[1]} << 16 | int{bytes[2]} << 8 | bytes[3])
       << " (expected 0x0000080N)";
    fail(path, os.str());
  }
  if (bytes[2] != 0x08) {
    std::ostringstream os;
    os << "unsupported element type 0x" << std::hex << int{bytes[2]} << " (only 0x08, unsigned byte, is read)";
    fail(path, os.str());
  }
  const int nd = bytes[3];
  if (nd < 1 || (ndims >= 0 && nd != ndims))
    fail(path, std::to_string(nd) + " dimensions, expected " + (ndims >= 0 ? std::to_string(ndims) : "at least 1"));
  const size_t header = 4 + 4 * static_cast<size_t>(nd);
  if (bytes.size() < header) fail(path, "header cut short");
  IdxArray a;
  uint64_t total = 1;
  for (int d = 0; d < nd; ++d) {
    const uint8_t* p = bytes.data() + 4 + 4 * d;
    uint32_t v = uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
    if (v == 0) fail(path, "dimension " + std::to_string(d) + " is 0");
    a.dims.push_back(v);
    total *= v;
    if (total > kMaxIdxBytes) fail(path, "sizes claim more than 4 GiB of data");
  }
  if (bytes.size() - header != total) {
    std::ostringstream os;
    os << "sizes say " << total << " bytes of data, the file has " << bytes.size() - header;
    fail(path, os.str());
  }
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

void write_idx(const fs::path& path, const std::vector<uint32_t>& dims, const uint8_t* data, bool gzip) {
  std::vector<uint8_t> bytes = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  size_t total = 1;
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<uint8_t>(d >> s));
    total *= d;
  }
  bytes.insert(bytes.end(), data, data + total);
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    if (!f) fail(path, "cannot create");
    const bool ok = gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size());
    if (gzclose(f) != Z_OK || !ok) fail(path, "write error");
    return;
  }
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) fail(path, "write error");
}

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle_boot"};
  return names;
}

namespace {

std::string padded(int64_t v, int64_t largest) {
  const std::string s = std::to_string(v);
  return std::string(std::to_string(largest).size() - s.size(), '0') + s;
}

void check_name(const std::string& name) {
  if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos || name.find('\0') != std::string::npos)
    throw DataError("class name '" + name + "' is not usable as a folder name (empty, hidden or with '/')");
}

}  // namespace

IdxImportResult import_idx(const IdxImport& spec) {
  if (spec.split != "train" && spec.split != "val")
    throw DataError("IDX import: split must be train or val, not '" + spec.split + "'");
  const IdxArray images = read_idx(spec.images, 3);
  const IdxArray labels = read_idx(spec.labels, 1);
  if (images.dims[0] != labels.dims[0]) {
    std::ostringstream os;
    os << "IDX import: " << spec.images.string() << " holds " << images.dims[0] << " images but "
       << spec.labels.string() << " holds " << labels.dims[0] << " labels";
    throw DataError(os.str());
  }
  const int64_t n = images.dims[0];
  const int rows = static_cast<int>(images.dims[1]), cols = static_cast<int>(images.dims[2]);
  int max_label = 0;
  for (uint8_t l : labels.data) max_label = std::max<int>(max_label, l);
  const int classes = spec.class_names.empty() ? max_label + 1 : static_cast<int>(spec.class_names.size());
  if (max_label >= classes) {
    std::ostringstream os;
    os << "IDX import: " << spec.labels.string() << " has label " << max_label << " but only " << classes
       << " class names were given";
    throw DataError(os.str());
  }
  for (const std::string& name : spec.class_names) check_name(name);
  std::vector<std::string> folders(static_cast<size_t>(classes));
  for (int c = 0; c < classes; ++c)
    folders[static_cast<size_t>(c)] =
        padded(c, classes - 1) + (spec.class_names.empty() ? "" : "_" + spec.class_names[static_cast<size_t>(c)]);

  // What this import is, for the marker: same sources, names and quality = same folder.
  std::ostringstream marker;
  marker << "lockstep import-idx v1\nimages " << fs::absolute(spec.images).string() << " "
         << fs::file_size(spec.images) << "\nlabels " << fs::absolute(spec.labels).string() << " "
         << fs::file_size(spec.labels) << "\nquality " << spec.quality << "\nclasses";
  for (const std::string& f : folders) marker << " " << f;
  marker << "\ncount " << n << "\n";

  IdxImportResult result;
  result.dir = spec.root / spec.split;
  result.images = n;
  result.classes = classes;
  const fs::path marker_name = ".lockstep-import";
  std::error_code ec;
  if (fs::exists(result.dir)) {
    std::ifstream in(result.dir / marker_name);
    if (!in) throw DataError("IDX import: " + result.dir.string() + " exists and was not written by an import; remove it first");
    std::stringstream old;
    old << in.rdbuf();
    if (old.str() == marker.str()) {
      result.already = true;
      return result;
    }
  }

  const fs::path tmp = spec.root / (".import-" + spec.split + ".tmp");
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  for (int c = 0; c < classes; ++c) {
    bool used = false;
    for (uint8_t l : labels.data) used = used || l == c;
    if (used) fs::create_directories(tmp / folders[static_cast<size_t>(c)]);
  }
  const size_t px = static_cast<size_t>(rows) * cols;
  std::mutex error_mutex;
  std::string first_error;
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 256)
  for (int64_t i = 0; i < n; ++i) {
    if (failed.load(std::memory_order_relaxed)) continue;
    try {
      std::vector<uint8_t> rgb(px * 3);
      const uint8_t* g = images.data.data() + static_cast<size_t>(i) * px;
      for (size_t p = 0; p < px; ++p) rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = g[p];
      std::vector<uint8_t> jpeg = encode_jpeg(rgb.data(), cols, rows, 3, spec.quality);
      const fs::path file = tmp / folders[labels.data[static_cast<size_t>(i)]] / (padded(i, n - 1) + ".jpg");
      std::ofstream out(file, std::ios::binary);
      out.write(reinterpret_cast<const char*>(jpeg.data()), static_cast<std::streamsize>(jpeg.size()));
      if (!out) throw DataError("cannot write " + file.string());
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!failed.exchange(true)) first_error = e.what();
    }
  }
  if (failed) {
    fs::remove_all(tmp, ec);
    throw DataError("IDX import into " + result.dir.string() + ": " + first_error);
  }
  {
    std::ofstream out(tmp / marker_name);
    out << marker.str();
    if (!out) throw DataError("IDX import: cannot write " + (tmp / marker_name).string());
  }
  // Swap in: an old import moves aside first, so the split folder is always whole or absent.
  const fs::path old = spec.root / (".import-" + spec.split + ".old");
  fs::remove_all(old, ec);
  if (fs::exists(result.dir)) fs::rename(result.dir, old);
  fs::rename(tmp, result.dir);
  fs::remove_all(old, ec);
  return result;
}

}  // namespace lockstep::data
