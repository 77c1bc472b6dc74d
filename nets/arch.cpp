// The table of architectures. Minimum sizes follow from the strides: ImageNet-style nets halve
// the input five times (stem conv, max pool, three strided stages), so 32 px is the least that
// leaves a 1x1 map; CIFAR-style nets halve it twice (8 px leaves 2x2); the tiny net once.
#include "nets/arch.h"

namespace lockstep::nets {

const std::vector<ArchInfo>& known_archs() {
  static const std::vector<ArchInfo> archs = {
      {"resnet18", ArchFamily::imagenet, 18, 32, 224, 1000},  {"resnet34", ArchFamily::imagenet, 34, 32, 224, 1000},
      {"resnet50", ArchFamily::imagenet, 50, 32, 224, 1000},  {"resnet101", ArchFamily::imagenet, 101, 32, 224, 1000},
      {"resnet152", ArchFamily::imagenet, 152, 32, 224, 1000}, {"resnet20", ArchFamily::cifar, 20, 8, 32, 10},
      {"resnet32", ArchFamily::cifar, 32, 8, 32, 10},      {"resnet44", ArchFamily::cifar, 44, 8, 32, 10},
      {"resnet56", ArchFamily::cifar, 56, 8, 32, 10},      {"resnet110", ArchFamily::cifar, 110, 8, 32, 10},
      {"tiny", ArchFamily::tiny, 0, 4, 32, 10},
      // BatchNorm-free (conv 3x3 s2 -> ReLU -> pool -> fc): distributed runs equal one big batch
      // exactly only without per-worker batch statistics, so the equivalence tests use it.
      {"tiny_nobn", ArchFamily::tiny_nobn, 0, 2, 32, 10},
  };
  return archs;
}

const ArchInfo* find_arch(const std::string& name) {
  for (const ArchInfo& a : known_archs())
    if (a.name == name) return &a;
  return nullptr;
}

std::string known_arch_names() {
  std::string s;
  for (const ArchInfo& a : known_archs()) s += (s.empty() ? "" : ", ") + a.name;
  return s;
}

}  // namespace lockstep::nets
