#include "hv/memory/guest_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hv {
namespace {

absl::Status ValidateRegions(std::vector<MemoryRegion>& regions,
                             uint64_t* total) {
  if (regions.empty()) {
    return absl::InvalidArgumentError("guest memory needs at least one region");
  }
  std::sort(regions.begin(), regions.end(),
            [](const MemoryRegion& a, const MemoryRegion& b) {
              return a.gpa < b.gpa;
            });
  uint64_t sum = 0;
  for (size_t i = 0; i < regions.size(); ++i) {
    const MemoryRegion& r = regions[i];
    if (r.size == 0 || r.size % GuestMemory::kPageSize != 0 ||
        r.gpa % GuestMemory::kPageSize != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "region %d (gpa 0x%x size 0x%x) must be non-empty and page aligned",
          i, r.gpa, r.size));
    }
    if (r.gpa + r.size < r.gpa) {
      return absl::InvalidArgumentError(
          absl::StrFormat("region %d wraps the address space", i));
    }
    if (i > 0 && regions[i - 1].gpa + regions[i - 1].size > r.gpa) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "regions at gpa 0x%x and 0x%x overlap", regions[i - 1].gpa, r.gpa));
    }
    if (sum + r.size < sum) {
      return absl::InvalidArgumentError("total guest memory size overflows");
    }
    sum += r.size;
  }
  *total = sum;
  return absl::OkStatus();
}

absl::Status OutOfRange(uint64_t gpa, uint64_t len) {
  return absl::OutOfRangeError(absl::StrFormat(
      "guest physical range [0x%x, +0x%x) is outside guest RAM", gpa, len));
}

}  // namespace

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::Create(
    std::vector<MemoryRegion> regions) {
  uint64_t total = 0;
  absl::Status s = ValidateRegions(regions, &total);
  if (!s.ok()) return s;
  const int fd = memfd_create("hv-guest-ram", MFD_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("memfd_create: ", std::strerror(errno)));
  }
  if (ftruncate(fd, static_cast<off_t>(total)) != 0) {
    const int err = errno;
    close(fd);
    return absl::ResourceExhaustedError(absl::StrFormat(
        "cannot size guest RAM to %d bytes: %s", total, std::strerror(err)));
  }
  auto mem = FromFd(fd, 0, std::move(regions));
  close(fd);
  return mem;
}

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::FromFd(
    int fd, uint64_t fd_offset, std::vector<MemoryRegion> regions) {
  uint64_t total = 0;
  absl::Status s = ValidateRegions(regions, &total);
  if (!s.ok()) return s;
  if (fd_offset % kPageSize != 0) {
    return absl::InvalidArgumentError("fd_offset must be page aligned");
  }
  const int own_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own_fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot duplicate memory fd: ", std::strerror(errno)));
  }
  void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, own_fd,
                    static_cast<off_t>(fd_offset));
  if (base == MAP_FAILED) {
    const int err = errno;
    close(own_fd);
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map guest RAM: ", std::strerror(err)));
  }
  return std::unique_ptr<GuestMemory>(new GuestMemory(
      own_fd, static_cast<uint8_t*>(base), total, std::move(regions)));
}

GuestMemory::GuestMemory(int fd, uint8_t* base, uint64_t total_size,
                         std::vector<MemoryRegion> regions)
    : fd_(fd),
      base_(base),
      total_size_(total_size),
      regions_(std::move(regions)) {
  uint64_t offset = 0;
  for (const MemoryRegion& r : regions_) {
    region_offsets_.push_back(offset);
    offset += r.size;
  }
}

GuestMemory::~GuestMemory() {
  munmap(base_, total_size_);
  close(fd_);
}

uint8_t* GuestMemory::Translate(uint64_t gpa, uint64_t len) const {
  if (len == 0) return nullptr;
  // Few regions: a linear scan is faster than a search and obviously right.
  for (size_t i = 0; i < regions_.size(); ++i) {
    const MemoryRegion& r = regions_[i];
    if (gpa < r.gpa) return nullptr;
    const uint64_t off = gpa - r.gpa;
    if (off < r.size) {
      if (len > r.size - off) return nullptr;  // crosses the region end
      return base_ + region_offsets_[i] + off;
    }
  }
  return nullptr;
}

bool GuestMemory::Contains(uint64_t gpa, uint64_t len) const {
  return Translate(gpa, len) != nullptr;
}

absl::Status GuestMemory::Read(uint64_t gpa, void* dst, size_t len) const {
  if (len == 0) return absl::OkStatus();
  const uint8_t* p = Translate(gpa, len);
  if (p == nullptr) return OutOfRange(gpa, len);
  std::memcpy(dst, p, len);
  return absl::OkStatus();
}

absl::Status GuestMemory::Write(uint64_t gpa, const void* src, size_t len) {
  if (len == 0) return absl::OkStatus();
  uint8_t* p = Translate(gpa, len);
  if (p == nullptr) return OutOfRange(gpa, len);
  std::memcpy(p, src, len);
  return absl::OkStatus();
}

absl::Status GuestMemory::Fill(uint64_t gpa, uint8_t value, size_t len) {
  if (len == 0) return absl::OkStatus();
  uint8_t* p = Translate(gpa, len);
  if (p == nullptr) return OutOfRange(gpa, len);
  std::memset(p, value, len);
  return absl::OkStatus();
}

namespace {

absl::StatusOr<std::atomic<uint64_t>*> AtomicWord(uint8_t* p, uint64_t gpa) {
  if (gpa % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "atomic access at gpa 0x%x is not 8-byte aligned", gpa));
  }
  if (p == nullptr) return OutOfRange(gpa, 8);
  static_assert(sizeof(std::atomic<uint64_t>) == sizeof(uint64_t));
  return reinterpret_cast<std::atomic<uint64_t>*>(p);
}

}  // namespace

absl::StatusOr<uint64_t> GuestMemory::AtomicLoad64(uint64_t gpa) const {
  auto word = AtomicWord(Translate(gpa, 8), gpa);
  if (!word.ok()) return word.status();
  return (*word)->load();
}

absl::StatusOr<uint64_t> GuestMemory::AtomicFetchOr64(uint64_t gpa,
                                                      uint64_t bits) {
  auto word = AtomicWord(Translate(gpa, 8), gpa);
  if (!word.ok()) return word.status();
  return (*word)->fetch_or(bits);
}

absl::StatusOr<uint64_t> GuestMemory::AtomicFetchAnd64(uint64_t gpa,
                                                       uint64_t bits) {
  auto word = AtomicWord(Translate(gpa, 8), gpa);
  if (!word.ok()) return word.status();
  return (*word)->fetch_and(bits);
}

absl::StatusOr<absl::Span<uint8_t>> GuestMemory::HostSpan(uint64_t gpa,
                                                          uint64_t len) {
  uint8_t* p = Translate(gpa, len);
  if (p == nullptr) return OutOfRange(gpa, len);
  return absl::Span<uint8_t>(p, len);
}

uint8_t* GuestMemory::region_host_base(size_t i) const {
  return base_ + region_offsets_.at(i);
}

}  // namespace hv
