// IDX files (the MNIST / Fashion-MNIST format), raw or gzip'd, and their import into an
// ImageNet-style folder of JPEGs.
//
// Format: magic 00 00 <type> <ndims>, then ndims big-endian u32 sizes, then the data, row-major.
// Only type 0x08 (u8) is read. Validation is strict and every error (DataError) names the file:
// bad magic, an unsupported type, the wrong number of dimensions, a zero size, data shorter or
// longer than the sizes say, a corrupt gzip stream. Gzip is recognised by its bytes (1f 8b),
// not the name.
//
// Import (import_idx): root/<split>/<class>/<index>.jpg, RGB JPEGs (the grey image in all three
// channels). Decisions:
//  - Class folders keep the IDX label order under scan_folder's byte-order sort: without names
//    they are the zero-padded label ("0".."9"; "00".."99" beyond ten classes); with names they
//    are "<padded label>_<name>" ("0_T-shirt_top", "1_Trouser", ...), so label i of the IDX file
//    is label i of the folder. fashion_mnist_class_names() gives the ten real names. Only labels
//    that occur get a folder.
//  - File names are the zero-padded record index, so the canonical order is the file's order.
//  - Atomic and idempotent: the split is written into a hidden temporary folder beside it
//    (root/.import-<split>.tmp, ignored by scans, removed by the next import) and renamed into
//    place when complete, with a marker file describing the source. Importing the same source
//    again finds the marker and does nothing; a different source replaces a split that an
//    import wrote; a split folder that no import wrote is never touched (DataError).
//  - The test split of MNIST / Fashion-MNIST (t10k-*) is imported as split "val".
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/image_folder.h"

namespace lockstep::data {

struct IdxArray {
  std::vector<uint32_t> dims;
  std::vector<uint8_t> data;  // prod(dims) bytes, row-major
};

// Reads a u8 IDX file with `ndims` dimensions (any when -1). Throws DataError naming the file.
IdxArray read_idx(const std::filesystem::path& path, int ndims = -1);
// Writes a u8 IDX file, gzip'd when `gzip` (for tests and tools). Throws DataError.
void write_idx(const std::filesystem::path& path, const std::vector<uint32_t>& dims, const uint8_t* data,
               bool gzip);

const std::vector<std::string>& fashion_mnist_class_names();

struct IdxImport {
  std::filesystem::path images, labels;  // idx3 (N, rows, cols) and idx1 (N)
  std::filesystem::path root;            // the dataset root; the split goes to root/<split>
  std::string split = "train";           // "train" or "val"
  std::vector<std::string> class_names;  // empty: numbers only
  int quality = 95;
};

struct IdxImportResult {
  std::filesystem::path dir;  // root/<split>
  int64_t images = 0;
  int classes = 0;
  bool already = false;       // an identical import was found; nothing written
};

IdxImportResult import_idx(const IdxImport& spec);

}  // namespace lockstep::data
