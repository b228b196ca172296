// MmioBus and PioBus: range → handler dispatch (DESIGN §5).
//
// A Bus maps non-overlapping address ranges ([base, base + size)) to
// hv::MmioDevice handlers and forwards each access with the offset from the
// range base. The same class serves guest-physical MMIO (MmioBus) and x86 I/O
// ports (PioBus); only the name used in log lines differs.
//
// Unhandled accesses (no range, or an access straddling a range end, or a
// device returning an error) are counted; the first one at each address is
// logged to stderr, later ones only counted. Reads then return all-ones
// (the value a read from an undecoded bus address returns on PCI/x86), writes
// are dropped. Dispatch never fails: the caller (the vCPU loop) keeps going.
//
// Locking: `mu_` guards the range table and the set of already-logged
// addresses. Dispatch copies a shared_ptr to the current immutable range table
// under `mu_` and calls the handler with no bus lock held, so handlers run
// concurrently from every vCPU thread and must do their own locking (each
// device states its own). Registration may happen while vCPUs run; a device
// must stay alive until the Bus is destroyed (Unregister does not wait for
// in-flight accesses). Lock order: mu_ is a leaf (never held while calling
// out).
#ifndef HV_BUS_BUS_H_
#define HV_BUS_BUS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "hv/base/locks.h"
#include "hv/mmio/mmio_device.h"

namespace hv {

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  // Errors: InvalidArgument for an empty or wrapping range or null device,
  // AlreadyExists when the range overlaps a registered one.
  [[nodiscard]] absl::Status Register(uint64_t base, uint64_t size,
                                      MmioDevice* device, std::string label);
  // NotFound when no range starts at `base`.
  [[nodiscard]] absl::Status Unregister(uint64_t base);

  // Performs one access of `size` (1, 2, 4 or 8) bytes. Reads store the
  // result in *value (all-ones of `size` bytes when unhandled).
  void Read(const MmioContext& ctx, uint64_t addr, uint8_t size,
            uint64_t* value);
  void Write(const MmioContext& ctx, uint64_t addr, uint8_t size,
             uint64_t value);

  // Number of accesses nobody handled (since creation).
  // At most this many distinct addresses are logged.
  static constexpr size_t kMaxLoggedAddresses = 1024;

  uint64_t unhandled_count() const {
    return unhandled_.load(std::memory_order_relaxed);
  }
  const std::string& name() const { return name_; }

 private:
  struct Range {
    uint64_t base;
    uint64_t size;
    MmioDevice* device;
    std::string label;
  };
  using Table = std::vector<Range>;  // sorted by base, non-overlapping

  // Finds the range holding [addr, addr + size) in the current table.
  bool Lookup(uint64_t addr, uint8_t size, MmioDevice** device,
              uint64_t* offset);
  void NoteUnhandled(uint64_t addr, uint8_t size, bool is_write,
                     const char* why);

  const std::string name_;
  Mutex mu_;
  std::shared_ptr<const Table> table_ ABSL_GUARDED_BY(mu_) =
      std::make_shared<const Table>();
  absl::flat_hash_set<uint64_t> logged_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> unhandled_{0};
};

// Guest-physical MMIO bus and the x86 I/O-port bus.
class MmioBus : public Bus {
 public:
  MmioBus() : Bus("mmio") {}
};
class PioBus : public Bus {
 public:
  PioBus() : Bus("pio") {}
};

}  // namespace hv

#endif  // HV_BUS_BUS_H_
