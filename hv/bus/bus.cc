#include "hv/bus/bus.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"

namespace hv {
namespace {

uint64_t AllOnes(uint8_t size) {
  return size >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * size)) - 1;
}

bool ValidSize(uint8_t size) {
  return size == 1 || size == 2 || size == 4 || size == 8;
}

}  // namespace

absl::Status Bus::Register(uint64_t base, uint64_t size, MmioDevice* device,
                           std::string label) {
  if (device == nullptr) {
    return absl::InvalidArgumentError("bus: null device for " + label);
  }
  if (size == 0 || base + size < base) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s bus: range [0x%x, +0x%x) for %s is empty or wraps",
                        name_, base, size, label));
  }
  MutexLock lock(&mu_);
  auto table = std::make_shared<Table>(*table_);
  for (const Range& r : *table) {
    if (base < r.base + r.size && r.base < base + size) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "%s bus: range [0x%x, +0x%x) for %s overlaps %s at [0x%x, +0x%x)",
          name_, base, size, label, r.label, r.base, r.size));
    }
  }
  table->push_back(Range{base, size, device, std::move(label)});
  std::sort(table->begin(), table->end(),
            [](const Range& a, const Range& b) { return a.base < b.base; });
  table_ = std::move(table);
  return absl::OkStatus();
}

absl::Status Bus::Unregister(uint64_t base) {
  MutexLock lock(&mu_);
  auto table = std::make_shared<Table>(*table_);
  auto it = std::find_if(table->begin(), table->end(),
                         [base](const Range& r) { return r.base == base; });
  if (it == table->end()) {
    return absl::NotFoundError(
        absl::StrFormat("%s bus: no range at 0x%x", name_, base));
  }
  table->erase(it);
  table_ = std::move(table);
  return absl::OkStatus();
}

bool Bus::Lookup(uint64_t addr, uint8_t size, MmioDevice** device,
                 uint64_t* offset) {
  std::shared_ptr<const Table> table;
  {
    MutexLock lock(&mu_);
    table = table_;
  }
  // Last range with base <= addr.
  auto it =
      std::upper_bound(table->begin(), table->end(), addr,
                       [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == table->begin()) return false;
  --it;
  const uint64_t off = addr - it->base;
  if (off >= it->size || size > it->size - off) return false;
  *device = it->device;
  *offset = off;
  return true;
}

void Bus::NoteUnhandled(uint64_t addr, uint8_t size, bool is_write,
                        const char* why) {
  unhandled_.fetch_add(1, std::memory_order_relaxed);
  bool first = false;
  bool cap_reached = false;
  {
    MutexLock lock(&mu_);
    // Bounded: a guest scanning the address space must not grow the set
    // without limit; past the cap accesses are only counted.
    if (logged_.size() < kMaxLoggedAddresses) {
      first = logged_.insert(addr).second;
      cap_reached = first && logged_.size() == kMaxLoggedAddresses;
    }
  }
  if (cap_reached) {
    std::fprintf(stderr,
                 "hv: %s bus: %zu distinct unhandled addresses logged; "
                 "further ones are only counted\n",
                 name_.c_str(), kMaxLoggedAddresses);
  }
  if (first) {
    std::fprintf(stderr,
                 "hv: %s bus: unhandled %u-byte %s at 0x%llx (%s); further "
                 "accesses at this address are counted, not logged\n",
                 name_.c_str(), size, is_write ? "write" : "read",
                 static_cast<unsigned long long>(addr), why);
  }
}

void Bus::Read(const MmioContext& ctx, uint64_t addr, uint8_t size,
               uint64_t* value) {
  *value = ValidSize(size) ? AllOnes(size) : ~uint64_t{0};
  if (!ValidSize(size)) {
    NoteUnhandled(addr, size, false, "bad access size");
    return;
  }
  MmioDevice* device = nullptr;
  uint64_t offset = 0;
  if (!Lookup(addr, size, &device, &offset)) {
    NoteUnhandled(addr, size, false, "no device");
    return;
  }
  uint64_t v = 0;
  if (!device->Read(ctx, offset, size, &v).ok()) {
    NoteUnhandled(addr, size, false, "device rejected the access");
    return;
  }
  *value = v & AllOnes(size);
}

void Bus::Write(const MmioContext& ctx, uint64_t addr, uint8_t size,
                uint64_t value) {
  if (!ValidSize(size)) {
    NoteUnhandled(addr, size, true, "bad access size");
    return;
  }
  MmioDevice* device = nullptr;
  uint64_t offset = 0;
  if (!Lookup(addr, size, &device, &offset)) {
    NoteUnhandled(addr, size, true, "no device");
    return;
  }
  if (!device->Write(ctx, offset, size, value & AllOnes(size)).ok()) {
    NoteUnhandled(addr, size, true, "device rejected the access");
  }
}

}  // namespace hv
