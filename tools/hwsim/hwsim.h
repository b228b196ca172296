// hv-hwsim: simulated host hardware (DESIGN §2, §3). A Machine holds an
// inventory of devices:
//   - PCI functions with N MSI-X vectors (edge), requester ID = BDF, which the
//     pci bus driver turns into the ITS DeviceID;
//   - platform devices with one level-triggered line, asserted from a fire
//     until the device's status register is cleared (W1C).
// Every device has a register window in shared memory (a memfd: page 0 is the
// guest-visible register file of hwsim_regs.h, the rest holds host-only
// per-vector sequence rings) and one eventfd per vector.
//
// Fire semantics (per vector, serialised by the vector's spinlock):
//   seq = ++fired (per vector, from 1). Then, by the vector's remapping entry:
//   - remapped (default): seq is pushed onto the vector's SPSC ring (a full
//     ring counts the fire as coalesced: ring_overflow) and, unless the vector
//     is masked or disabled, the eventfd is signalled. A masked vector keeps
//     its seqs queued and is signalled on unmask (MSI-X pending bit, PCIe
//     §6.8.2.9, without losing the individual messages).
//   - posted (PostedEntry installed, DESIGN §3 bypass): the LPI bit and the
//     summary bit of the target vCPU's pending bitmap are set with atomic OR
//     and the doorbell eventfd is written; no host handler runs. A bit that
//     was already set counts as posted_coalesced, else posted_delivered.
//   - a level line is asserted by a fire; a fire while it is already asserted
//     is coalesced into the assertion (level_coalesced) and queues no seq.
// Accounting identity (per vector, when quiescent):
//   fired == consumed (popped from the ring) + queued + ring_overflow +
//            posted_delivered + posted_coalesced + level_coalesced.
//
// Locks: Vector::lock (hv::SpinLock, one per vector, leaf) serialises fires,
// mask/unmask, status clear and posted-entry changes of that vector; the ring
// consumer side is lock-free (single consumer per vector, its caller's job).
// Machine::gen_mu_ (hv::Mutex) guards the generator threads.
#ifndef TOOLS_HWSIM_HWSIM_H_
#define TOOLS_HWSIM_HWSIM_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hv/base/locks.h"
#include "hv/mmio/mmio_device.h"
#include "tools/hwsim/hwsim_regs.h"

namespace hwsim {

enum class DeviceKind { kPci, kPlatform };

struct PciFunctionSpec {
  std::string bdf;       // "0000:01:00.0"
  uint32_t vectors = 8;  // 1..HWSIM_MAX_VECTORS
};
struct PlatformDeviceSpec {
  std::string name;  // "plat0"
};

struct InventorySpec {
  std::vector<PciFunctionSpec> pci;
  std::vector<PlatformDeviceSpec> platform;

  // 4 PCI functions 0000:01:00.0 .. 0000:04:00.0 with 8 vectors each, and
  // platform devices plat0, plat1.
  static InventorySpec Default();
  // One device per line, '#' starts a comment:
  //   pci <domain:bus:dev.fn> [vectors=N]
  //   platform <name>
  // InvalidArgument naming the line for anything else (bad BDF, N out of
  // range, duplicate id).
  [[nodiscard]] static absl::StatusOr<InventorySpec> Parse(
      absl::string_view text);
};

// Parses "dddd:bb:dd.f" into a requester ID (bus << 8 | dev << 3 | fn).
[[nodiscard]] absl::StatusOr<uint16_t> ParseBdf(absl::string_view bdf);

// A mapping of another party's LPI pending bitmaps (vgic::LpiPendingLayout):
// `fd` is mapped shared; vCPU v's bitmap starts at v * bytes_per_vcpu.
class PostedRegion {
 public:
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<PostedRegion>> Map(
      int fd, uint64_t bytes_per_vcpu, uint32_t num_vcpus);
  ~PostedRegion();
  // Sets INTID `intid` then its summary bit in vCPU `vcpu`'s bitmap (the
  // producer protocol of vgic::LpiPendingLayout). True if newly set.
  bool SetPending(uint32_t vcpu, uint32_t intid);
  uint64_t bytes_per_vcpu() const { return bytes_per_vcpu_; }
  uint32_t num_vcpus() const { return num_vcpus_; }

 private:
  PostedRegion(void* base, uint64_t bytes_per_vcpu, uint32_t num_vcpus)
      : base_(base), bytes_per_vcpu_(bytes_per_vcpu), num_vcpus_(num_vcpus) {}
  void* base_;
  uint64_t bytes_per_vcpu_;
  uint32_t num_vcpus_;
};

// A posted remapping entry (VT-d posted IRTE / GICv4 vLPI mapping analogue).
struct PostedEntry {
  std::shared_ptr<PostedRegion> region;
  uint32_t vcpu = 0;
  uint32_t intid = 0;    // LPI INTID (>= 8192)
  int doorbell_fd = -1;  // eventfd written after the bit is set (not owned)
};

struct VectorCounters {
  uint64_t fired = 0;
  uint64_t consumed = 0;  // seqs popped from the ring by the receiver
  uint64_t queued = 0;    // seqs in the ring now
  uint64_t ring_overflow = 0;
  uint64_t posted_delivered = 0;
  uint64_t posted_coalesced = 0;
  uint64_t level_coalesced = 0;
  uint64_t signals = 0;  // eventfd writes (remapped) / doorbells (posted)
};

class Device {
 public:
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const std::string& id() const { return id_; }
  DeviceKind kind() const { return kind_; }
  uint16_t requester_id() const { return requester_id_; }
  uint32_t num_vectors() const { return num_vectors_; }
  bool level() const { return kind_ == DeviceKind::kPlatform; }

  // IRQ eventfd of vector `v` (owned by the device; dup() to pass it on).
  int irq_fd(uint32_t v) const { return vectors_[v].eventfd; }
  // The register window memfd (owned) and its size; the first
  // HWSIM_WINDOW_GUEST_SIZE bytes may be mapped into a guest.
  int window_fd() const { return window_fd_; }
  uint64_t window_size() const { return window_size_; }
  // Shared register file; access fields with __atomic builtins.
  hwsim_regs* regs() const { return regs_; }

  // Fires vector `v`; returns its sequence number. InvalidArgument for a bad
  // vector.
  [[nodiscard]] absl::StatusOr<uint64_t> Fire(uint32_t v);

  // Receiver side (one consumer per vector at a time): pops every queued seq
  // of vector `v` into `out` (appends); returns how many.
  size_t Drain(uint32_t v, std::vector<uint64_t>* out);

  // Vector control (host side; the guest does the same through the window).
  void SetMasked(uint32_t v, bool masked);
  void SetEnabled(uint32_t v, bool enabled);
  bool masked(uint32_t v) const;

  // Level line (platform devices; vector 0).
  bool asserted() const;
  // W1C of HWSIM_STATUS_ASSERTED: deasserts the line.
  void ClearStatus();

  // Installs / removes the posted entry of vector `v` (edge vectors only).
  // After SetPosted/ClearPosted returns, no fire uses the previous entry.
  [[nodiscard]] absl::Status SetPosted(uint32_t v, PostedEntry entry);
  void ClearPosted(uint32_t v);
  bool posted(uint32_t v) const;

  VectorCounters counters(uint32_t v) const;

 private:
  friend class Machine;
  struct Vector {
    int eventfd = -1;
    hwsim_ring* ring = nullptr;  // in the window memfd
    mutable hv::SpinLock lock;
    PostedEntry posted ABSL_GUARDED_BY(lock);
    bool has_posted ABSL_GUARDED_BY(lock) = false;
    std::atomic<uint64_t> consumed{0};
    std::atomic<uint64_t> ring_overflow{0};
    std::atomic<uint64_t> posted_delivered{0};
    std::atomic<uint64_t> posted_coalesced{0};
    std::atomic<uint64_t> level_coalesced{0};
    std::atomic<uint64_t> signals{0};
  };
  Device(std::string id, DeviceKind kind, uint16_t rid, uint32_t n)
      : id_(std::move(id)),
        kind_(kind),
        requester_id_(rid),
        num_vectors_(n),
        vectors_(n) {}
  absl::Status Init();
  void Signal(Vector& vec);
  bool Deliverable(uint32_t v) const;  // enabled && !masked (lock held)

  const std::string id_;
  const DeviceKind kind_;
  const uint16_t requester_id_;
  const uint32_t num_vectors_;
  std::vector<Vector> vectors_;
  int window_fd_ = -1;
  uint64_t window_size_ = 0;
  hwsim_regs* regs_ = nullptr;  // mapping of window_fd_ (page 0)
};

// MMIO view of a device's guest page for a trapping VMM: reads come from the
// shared window; writes to ctrl/msg fields store, `fire` fires, `status` W1C
// clears, `gen_count` starts the generator. 4-byte (and 8-byte for 64-bit
// fields) aligned accesses; others are InvalidArgument.
class Machine;
class WindowMmio : public hv::MmioDevice {
 public:
  WindowMmio(Machine* machine, Device* device)
      : machine_(machine), device_(device) {}
  [[nodiscard]] absl::Status Read(const hv::MmioContext& ctx, uint64_t offset,
                                  uint8_t size, uint64_t* value) override;
  [[nodiscard]] absl::Status Write(const hv::MmioContext& ctx, uint64_t offset,
                                   uint8_t size, uint64_t value) override;

 private:
  Machine* machine_;
  Device* device_;
};

class Machine {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Machine>> Create(
      const InventorySpec& spec);
  ~Machine();  // stops generators

  const std::vector<std::unique_ptr<Device>>& devices() const {
    return devices_;
  }
  Device* Find(absl::string_view id) const;  // nullptr if absent

  // Interrupt generator of a device: fires `vector` `count` times in bursts
  // of `burst` at `rate_hz` bursts per second (0: back to back) on its own
  // thread. One generator per device; a new one replaces (joins) the old.
  [[nodiscard]] absl::Status StartGenerator(absl::string_view id,
                                            uint32_t vector, uint64_t count,
                                            uint32_t burst, uint32_t rate_hz);
  void StopGenerator(absl::string_view id);
  // Blocks until the device's generator has fired everything.
  void WaitGenerator(absl::string_view id);

 private:
  Machine() = default;
  struct Generator {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> stop;
  };
  std::vector<std::unique_ptr<Device>> devices_;
  hv::Mutex gen_mu_;
  std::vector<std::pair<Device*, Generator>> gens_ ABSL_GUARDED_BY(gen_mu_);
};

}  // namespace hwsim

#endif  // TOOLS_HWSIM_HWSIM_H_
