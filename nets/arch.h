// The names of lockstep's networks and what input each accepts, without building one: used by
// config validation (engine/) and the command line before any work starts.
#pragma once

#include <string>
#include <vector>

namespace lockstep::nets {

enum class ArchFamily { imagenet, cifar, tiny, tiny_nobn };

struct ArchInfo {
  std::string name;     // "resnet50"
  ArchFamily family;
  int depth;            // 18, 34, 50, 101, 152; 20, 32, 44, 56, 110; 0 for tiny
  int min_image_size;   // smallest square input whose last feature map is at least 1x1
  int default_image_size;  // the size it was designed for: 224 (ImageNet) or 32 (CIFAR, tiny)
  int default_classes;     // 1000 (ImageNet) or 10 (CIFAR, tiny)
};

// Every known architecture, ImageNet-style first.
const std::vector<ArchInfo>& known_archs();
// The arch's info, or nullptr when the name is unknown.
const ArchInfo* find_arch(const std::string& name);
// "resnet18, resnet34, ..." for error messages.
std::string known_arch_names();

}  // namespace lockstep::nets
