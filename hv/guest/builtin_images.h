// Guest kit images compiled into the VMM (hv-vmm --image=builtin:NAME).
#ifndef HV_GUEST_BUILTIN_IMAGES_H_
#define HV_GUEST_BUILTIN_IMAGES_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace hv::guest {

struct BuiltinImage {
  const char* name;
  const unsigned char* data;
  size_t size;
};

extern const BuiltinImage kBuiltinImages[];
extern const size_t kNumBuiltinImages;

// nullptr when there is no image called `name`.
inline const BuiltinImage* FindBuiltinImage(std::string_view name) {
  for (size_t i = 0; i < kNumBuiltinImages; ++i) {
    if (name == kBuiltinImages[i].name) return &kBuiltinImages[i];
  }
  return nullptr;
}

}  // namespace hv::guest

#endif  // HV_GUEST_BUILTIN_IMAGES_H_
