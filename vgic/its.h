// The emulated GICv3 Interrupt Translation Service (DESIGN §4; Arm IHI 0069
// chapter 5 "The ITS", register descriptions §12.19).
//
// The ITS is an MMIO device covering 128 KiB: the control frame (GITS_CTLR ..
// GITS_BASER7, ID registers) and the translation frame whose GITS_TRANSLATER
// (0x10040) takes MSIs; the writer's DeviceID comes from
// MmioContext::requester_id. It translates (DeviceID, EventID) through the
// device table → ITT → collection → target vCPU and acts on LPI state only
// through vgic::LpiSink.
//
// Locks and lock order (outermost first):
//   1. cmd_mu_  (hv::Mutex)    serialises every *mutation*: register writes,
//      command-queue processing, save/restore, observer (un)registration.
//      Guest memory (command queue, indirect device table level-1 entries,
//      LPI configuration bytes via LpiSink::ReadConfigByte, save/restore
//      tables) is read only with this lock held and lock_ NOT held.
//      ItsObserver callbacks run with cmd_mu_ held and lock_ not held.
//   2. lock_    (hv::SpinLock) guards the translation state (devices, ITEs,
//      collections, translation cache, enabled flag). Held for short,
//      non-allocating sections: command application and the MSI path.
//      Every node a command may insert is allocated before lock_ is taken;
//      every node it removes is freed after lock_ is released.
//   3. LpiSink internals: SetPending/ClearPending/MovePending/IsPending/
//      ApplyConfigByte are called with lock_ held (the sink documents them as
//      non-sleeping and guest-memory free).
// Because every writer of the translation state holds both cmd_mu_ and lock_,
// a command may look at the state under lock_, drop lock_ to read guest
// memory or notify an observer, and re-take lock_ knowing no other command
// ran in between (MSIs only read the state).
//
// CVE-2024-26598 (KVM returned a cached LPI pointer without a reference and a
// concurrent DISCARD freed it): here the translation cache stores plain values
// (vCPU, INTID), and the MSI path looks up the cache and sets the pending bit
// inside one lock_ section, so an MSI is ordered entirely before or entirely
// after any command; nothing the cache hands out can be freed under it.
#ifndef VGIC_ITS_H_
#define VGIC_ITS_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hv/base/locks.h"
#include "hv/memory/guest_memory.h"
#include "hv/mmio/mmio_device.h"
#include "vgic/its_defs.h"
#include "vgic/lpi_sink.h"

namespace vgic {

struct ItsOptions {
  // Stall the queue (CREADR.Stalled) on any command error, not only on a
  // memory fault reading the queue (IHI 0069 §5.3.1 allows either).
  bool stall_on_error = false;
  // Direct-mapped translation cache slots (rounded up to a power of two).
  uint32_t cache_slots = 4096;
};

// Result of translating (DeviceID, EventID).
struct Translation {
  uint32_t vcpu = 0;
  uint32_t intid = 0;
  bool operator==(const Translation&) const = default;
};

// A change to the translation of a watched (DeviceID, EventID) pair,
// reported before it takes effect (for posted-interrupt entries, DESIGN §3).
struct TranslationChange {
  uint32_t device_id = 0;
  uint32_t event_id = 0;
  // Command opcode (its::Cmd) causing the change, or 0 for a register write
  // (GITS_CTLR.Enabled) or a table restore.
  uint8_t cause = 0;
  std::optional<Translation> before;  // nullopt: not deliverable
  std::optional<Translation> after;   // nullopt: revoked / not deliverable
};

class ItsObserver {
 public:
  virtual ~ItsObserver() = default;
  // Called with the ITS command mutex held and the ITS spinlock not held,
  // before the change is applied. May call Its::Translate(); must not write
  // ITS registers, process commands or (un)watch (that would self-deadlock).
  virtual void OnTranslationChange(const TranslationChange& change) = 0;
};

// Host-visible error statistics (per command opcode DW0[7:0]).
struct ItsErrorStats {
  uint32_t last_error = 0;  // last E_ITS_* code, 0 if none
  uint8_t last_opcode = 0;
  uint64_t total = 0;
  std::array<uint64_t, its::kNumOpcodeSlots> per_opcode{};
};

// Guest-visible register file, for migration into a fresh ITS.
struct ItsRegisters {
  bool enabled = false;
  uint64_t cbaser = 0;
  uint64_t cwriter = 0;
  uint64_t creadr = 0;  // offset | Stalled
  std::array<uint64_t, 8> baser{};
};

class Its : public hv::MmioDevice {
 public:
  // `sink` and `mem` must outlive the ITS.
  Its(LpiSink* sink, hv::GuestMemory* mem, ItsOptions options = {});
  ~Its() override;
  Its(const Its&) = delete;
  Its& operator=(const Its&) = delete;

  // hv::MmioDevice. Control frame: 32-bit accesses, and 64-bit accesses to
  // 64-bit registers (32-bit halves accepted). Translation frame:
  // GITS_TRANSLATER takes 16/32-bit writes.
  [[nodiscard]] absl::Status Read(const hv::MmioContext& ctx, uint64_t offset,
                                  uint8_t size, uint64_t* value) override;
  [[nodiscard]] absl::Status Write(const hv::MmioContext& ctx, uint64_t offset,
                                   uint8_t size, uint64_t value) override;

  // Host-side MSI (forwarded vector): translate and set pending. Returns
  // kNone, kIntUnmappedInterrupt when (DeviceID, EventID) does not translate
  // (device, ITE or collection unmapped), or kMsiItsDisabled.
  [[nodiscard]] its::Error InjectMsi(uint32_t device_id, uint32_t event_id);

  // Current translation, nullopt if not deliverable (ITS disabled, device,
  // ITE or collection unmapped).
  std::optional<Translation> Translate(uint32_t device_id,
                                       uint32_t event_id) const;

  // Observer for translation changes of watched pairs (one observer).
  void SetObserver(ItsObserver* observer);
  void Watch(uint32_t device_id, uint32_t event_id);
  void Unwatch(uint32_t device_id, uint32_t event_id);

  ItsErrorStats GetErrorStats() const;

  // Save the translation state into the guest tables named by GITS_BASER0/1
  // and the ITTs (KVM ABI REV0). Unused entries are written as zero.
  [[nodiscard]] absl::Status SaveTables();
  // Replace the translation state with what the tables describe. Every
  // entry is validated; on error the previous state is kept and nothing of
  // the partial restore remains.
  [[nodiscard]] absl::Status RestoreTables();

  ItsRegisters GetRegisters() const;
  // For a fresh ITS in a restore: installs the register file without side
  // effects (no command processing). Validates offsets and fixed fields.
  [[nodiscard]] absl::Status SetRegisters(const ItsRegisters& regs);

  // Statistics for tests and benchmarks.
  uint64_t cache_hits() const;
  uint64_t cache_misses() const;
  // Drop every cache entry (benchmarks measure the uncached path with it).
  void FlushCache();

 private:
  struct Ite {
    uint32_t intid = 0;
    uint16_t icid = 0;
  };
  using IteMap = std::map<uint32_t, Ite>;  // EventID → ITE
  struct Device {
    uint8_t event_bits = 0;  // MAPD Size + 1
    uint64_t itt_addr = 0;
    IteMap ites;
  };
  using DeviceMap = std::map<uint32_t, Device>;
  struct CacheEntry {
    uint64_t key = 0;  // DeviceID << 32 | EventID
    uint32_t vcpu = 0;
    uint32_t intid = 0;
    uint16_t icid = 0;
    bool valid = false;
  };
  static constexpr uint32_t kUnmapped = 0xffffffff;

  // A decoded command (IHI 0069 §5.3, Figure 5-? field layouts).
  struct Command {
    std::array<uint64_t, 4> dw{};
    uint8_t opcode() const { return dw[0] & 0xff; }
    uint32_t device_id() const { return dw[0] >> 32; }
    uint32_t event_id() const { return static_cast<uint32_t>(dw[1]); }
    uint32_t pintid() const { return dw[1] >> 32; }
    uint8_t size() const { return dw[1] & 0x1f; }
    uint64_t itt_addr() const { return dw[2] & 0x000fffffffffff00ull; }
    bool valid() const { return dw[2] >> 63; }
    uint16_t icid() const { return dw[2] & 0xffff; }
    uint64_t rdbase() const { return (dw[2] >> 16) & ((1ull << 36) - 1); }
    uint64_t rdbase2() const { return (dw[3] >> 16) & ((1ull << 36) - 1); }
  };
  // What a command needs from outside lock_, prepared before taking it.
  struct Prepared {
    bool device_id_in_table = false;   // MAPD: DeviceID fits the device table
    DeviceMap::node_type device_node;  // MAPD V=1
    IteMap::node_type ite_node;        // MAPTI/MAPI
  };
  // Nodes a command removed; destroyed after lock_ is released.
  struct Garbage {
    DeviceMap::node_type device_node;
    IteMap::node_type ite_node;
  };

  static uint64_t Key(uint32_t d, uint32_t e) {
    return static_cast<uint64_t>(d) << 32 | e;
  }

  // --- registers (cmd_mu_) ---
  absl::Status ReadReg(uint64_t offset, uint8_t size, uint64_t* value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  absl::Status WriteReg(uint64_t offset, uint8_t size, uint64_t value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  uint64_t Typer() const;
  void WriteCtlr(uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  void WriteCbaser(uint64_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  void WriteCwriter(uint64_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  void WriteBaser(int n, uint64_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  uint64_t QueueBytes() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  uint32_t CollectionCapacity() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);

  // --- command queue (cmd_mu_) ---
  void ProcessQueue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  its::Error Execute(const Command& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  // Runs a command that needs no guest memory and no observer round trip
  // beyond the generic "plan, notify, apply" sequence.
  its::Error ExecuteSimple(const Command& c, Prepared& prep)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  its::Error ExecuteInv(const Command& c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  its::Error ExecuteInvall(const Command& c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  // Validates `c` and, if `apply`, applies it; if `changes` is non-null,
  // appends the translation changes of watched pairs it would make.
  its::Error RunLocked(const Command& c, bool apply, Prepared& prep,
                       Garbage& garbage,
                       std::vector<TranslationChange>* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_, lock_);
  absl::StatusOr<bool> DeviceIdInTable(uint32_t device_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  void RecordError(uint8_t opcode, its::Error e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);

  // --- translation (lock_) ---
  std::optional<Translation> ResolveLocked(uint32_t d, uint32_t e) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  // The mapping regardless of GITS_CTLR.Enabled.
  std::optional<Translation> ResolveMappingLocked(uint32_t d, uint32_t e) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  const Ite* FindIteLocked(uint32_t d, uint32_t e) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  uint32_t CollectionTargetLocked(uint16_t icid) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  void InvalidateKeyLocked(uint64_t key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  void InvalidateDeviceLocked(uint32_t d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  void InvalidateCollectionLocked(uint16_t icid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  void InvalidateVcpuLocked(uint32_t vcpu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  void FlushCacheLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lock_);
  // Records, for every watched pair, how the current state maps it, then
  // calls `after_fn(pair)` to learn the new mapping; appends changed ones.
  template <typename AfterFn>
  void CollectChanges(uint8_t cause, std::vector<TranslationChange>* changes,
                      AfterFn after_fn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_, lock_);
  void Notify(const std::vector<TranslationChange>& changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);
  bool HaveWatchers() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_) {
    return observer_ != nullptr && !watched_.empty();
  }

  // --- save/restore helpers (its_tables.cc) ---
  // GPA of the DTE of `device_id` (reads the level-1 entry of an indirect
  // table). OutOfRange: beyond Devbits or the table; FailedPrecondition:
  // BASER0 invalid or level-1 entry invalid.
  absl::StatusOr<uint64_t> DeviceEntryGpa(uint32_t device_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(cmd_mu_);

  LpiSink* const sink_;
  hv::GuestMemory* const mem_;
  const ItsOptions options_;

  mutable hv::Mutex cmd_mu_;
  bool ctlr_enabled_ ABSL_GUARDED_BY(cmd_mu_) = false;
  uint64_t cbaser_ ABSL_GUARDED_BY(cmd_mu_) = 0;
  uint64_t cwriter_ ABSL_GUARDED_BY(cmd_mu_) = 0;  // offset only
  uint64_t creadr_ ABSL_GUARDED_BY(cmd_mu_) = 0;   // offset only
  bool stalled_ ABSL_GUARDED_BY(cmd_mu_) = false;
  std::array<uint64_t, 8> baser_ ABSL_GUARDED_BY(cmd_mu_){};
  ItsErrorStats errors_ ABSL_GUARDED_BY(cmd_mu_);
  ItsObserver* observer_ ABSL_GUARDED_BY(cmd_mu_) = nullptr;
  absl::flat_hash_set<uint64_t> watched_ ABSL_GUARDED_BY(cmd_mu_);

  mutable hv::SpinLock lock_ ABSL_ACQUIRED_AFTER(cmd_mu_);
  bool enabled_ ABSL_GUARDED_BY(lock_) = false;
  DeviceMap devices_ ABSL_GUARDED_BY(lock_);
  // ICID → target vCPU (kUnmapped if not mapped); allocated once.
  std::vector<uint32_t> collections_ ABSL_GUARDED_BY(lock_);
  // Collections addressable through GITS_BASER1 (ICIDs ≥ this are OOR).
  uint32_t collection_capacity_ ABSL_GUARDED_BY(lock_) = 0;
  std::vector<CacheEntry> cache_ ABSL_GUARDED_BY(lock_);
  uint64_t cache_mask_ = 0;
  // Bumped on every change of the translation state (INV re-validation).
  uint64_t generation_ ABSL_GUARDED_BY(lock_) = 0;
  uint64_t cache_hits_ ABSL_GUARDED_BY(lock_) = 0;
  uint64_t cache_misses_ ABSL_GUARDED_BY(lock_) = 0;
};

}  // namespace vgic

#endif  // VGIC_ITS_H_
