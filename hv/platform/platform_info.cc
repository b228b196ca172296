#include "hv/platform/platform_info.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace hv {

PlatformInfo::PlatformInfo(const hv_virt_info& info) : info_(info) {
  info_.magic = HV_VIRT_INFO_MAGIC;
  info_.version = HV_VIRT_INFO_VERSION;
  info_.size = sizeof(hv_virt_info);
}

absl::Status PlatformInfo::Read(const MmioContext& /*ctx*/, uint64_t offset,
                                uint8_t size, uint64_t* value) {
  if ((size != 1 && size != 2 && size != 4 && size != 8) ||
      offset % size != 0 || offset + size > HV_VIRT_INFO_SIZE) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "platform info: unaligned %u-byte read at +0x%x", size, offset));
  }
  MutexLock lock(&mu_);
  uint64_t v = 0;
  if (offset < sizeof(info_)) {
    const size_t n = std::min<size_t>(size, sizeof(info_) - offset);
    std::memcpy(&v, reinterpret_cast<const uint8_t*>(&info_) + offset, n);
  }
  *value = v;
  return absl::OkStatus();
}

absl::Status PlatformInfo::Write(const MmioContext& /*ctx*/, uint64_t offset,
                                 uint8_t /*size*/, uint64_t /*value*/) {
  return absl::PermissionDeniedError(
      absl::StrFormat("platform info is read-only (write at +0x%x)", offset));
}

void PlatformInfo::set_boot_count(uint64_t n) {
  MutexLock lock(&mu_);
  info_.boot_count = n;
}

hv_virt_info PlatformInfo::info() const {
  MutexLock lock(&mu_);
  return info_;
}

}  // namespace hv
