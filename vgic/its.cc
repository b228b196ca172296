// GICv3 ITS: registers, command queue, commands, MSI path. Save/restore of the
// tables is in its_tables.cc. Lock order and the CVE-2024-26598 argument are
// in its.h.
#include "vgic/its.h"

#include <endian.h>

#include <algorithm>
#include <bit>
#include <utility>

namespace vgic {

using its::Cmd;
using its::Error;

namespace {

constexpr uint64_t kLow32 = 0xffffffffull;

// Multiplicative hash of (DeviceID, EventID) for the direct-mapped cache.
inline uint64_t HashKey(uint64_t key) { return key * 0x9e3779b97f4a7c15ull; }

}  // namespace

Its::Its(LpiSink* sink, hv::GuestMemory* mem, ItsOptions options)
    : sink_(sink), mem_(mem), options_(options) {
  const uint32_t slots =
      std::bit_ceil(std::clamp<uint32_t>(options_.cache_slots, 1, 1u << 20));
  cache_mask_ = slots - 1;
  hv::MutexLock ml(&cmd_mu_);
  // Fixed fields of GITS_BASER0/1 (§12.19): Type, Entry_Size = 8 bytes,
  // Page_Size = 64 KiB (read-only here, as in KVM). BASER2..7 are
  // unimplemented (Type 0, RAZ/WI).
  baser_[0] = its::kBaserTypeDevice << its::kBaserTypeShift |
              uint64_t{its::kEntrySize - 1} << its::kBaserEntrySizeShift |
              its::kBaserPageSize64K;
  baser_[1] = its::kBaserTypeCollection << its::kBaserTypeShift |
              uint64_t{its::kEntrySize - 1} << its::kBaserEntrySizeShift |
              its::kBaserPageSize64K;
  hv::SpinLockHolder l(&lock_);
  collections_.assign(its::kNumCollectionIds, kUnmapped);
  cache_.assign(slots, CacheEntry{});
}

Its::~Its() = default;

// ---------------------------------------------------------------------------
// MMIO

absl::Status Its::Read(const hv::MmioContext& /*ctx*/, uint64_t offset,
                       uint8_t size, uint64_t* value) {
  *value = 0;
  if (offset >= its::kFrameSize) {
    return absl::OutOfRangeError("ITS read beyond 128 KiB frame");
  }
  if (offset >= its::kTranslationFrame) {
    // Translation frame: GITS_TRANSLATER is write-only; the rest is
    // reserved. RAZ.
    return absl::OkStatus();
  }
  hv::MutexLock ml(&cmd_mu_);
  return ReadReg(offset, size, value);
}

absl::Status Its::Write(const hv::MmioContext& ctx, uint64_t offset,
                        uint8_t size, uint64_t value) {
  if (offset >= its::kFrameSize) {
    return absl::OutOfRangeError("ITS write beyond 128 KiB frame");
  }
  if (offset >= its::kTranslationFrame) {
    if (offset != its::RegOff(its::Reg::kTranslater)) return absl::OkStatus();
    // GITS_TRANSLATER (§12.19, translation frame): 16/32-bit writes; EventID is
    // the written value, DeviceID comes from the bus. A write that does not
    // translate is dropped (no architected error report).
    if (size != 2 && size != 4) {
      return absl::InvalidArgumentError(
          "GITS_TRANSLATER takes 16/32-bit writes");
    }
    const uint32_t event = size == 2 ? static_cast<uint32_t>(value & 0xffff)
                                     : static_cast<uint32_t>(value & kLow32);
    (void)InjectMsi(ctx.requester_id, event);
    return absl::OkStatus();
  }
  hv::MutexLock ml(&cmd_mu_);
  return WriteReg(offset, size, value);
}

uint64_t Its::Typer() const {
  // §12.19: physical LPIs, 8-byte ITEs, 16 EventID/DeviceID bits, PTA = 0
  // (RDbase is the vCPU number, as Linux and kvm-unit-tests expect from KVM),
  // CIL = 1 with 16 collection ID bits, HCC = 0 (collections live in the
  // BASER1 table).
  return its::kTyperPhysical |
         uint64_t{its::kEntrySize - 1} << its::kTyperIttEntrySizeShift |
         uint64_t{its::kEventIdBits - 1} << its::kTyperIdBitsShift |
         uint64_t{its::kDeviceIdBits - 1} << its::kTyperDevBitsShift |
         uint64_t{its::kCollectionIdBits - 1} << its::kTyperCidBitsShift |
         its::kTyperCil;
}

namespace {

// 64-bit registers in the control frame: base offset, or 0 if none.
uint64_t Reg64Base(uint64_t offset) {
  const uint64_t base = offset & ~7ull;
  switch (base) {
    case its::RegOff(its::Reg::kTyper):
    case its::RegOff(its::Reg::kCbaser):
    case its::RegOff(its::Reg::kCwriter):
    case its::RegOff(its::Reg::kCreadr):
      return base;
    default:
      break;
  }
  if (base >= its::RegOff(its::Reg::kBaser0) &&
      base < its::RegOff(its::Reg::kBaserEnd)) {
    return base;
  }
  return 0;
}

uint32_t IdRegister(uint64_t offset) {
  switch (offset) {
    case 0xffd0:
      return 0x40;  // PIDR4: 64 KiB frame
    case 0xffe0:
      return 0x92;  // PIDR0: part number [7:0]
    case 0xffe4:
      return 0xb4;  // PIDR1
    case 0xffe8:
      return 0x3b;  // PIDR2: ArchRev [7:4] = 3 (GICv3), JEP106
    case 0xfff0:
      return 0x0d;  // CIDR0..3: component ID
    case 0xfff4:
      return 0xf0;
    case 0xfff8:
      return 0x05;
    case 0xfffc:
      return 0xb1;
    default:
      return 0;
  }
}

}  // namespace

absl::Status Its::ReadReg(uint64_t offset, uint8_t size, uint64_t* value) {
  if ((size != 4 && size != 8) || offset % size != 0) {
    return absl::InvalidArgumentError(
        "ITS registers take aligned 32/64-bit accesses");
  }
  const uint64_t base64 = Reg64Base(offset);
  if (base64 == 0) {
    if (size != 4)
      return absl::InvalidArgumentError("64-bit access to 32-bit ITS register");
    switch (offset) {
      case its::RegOff(its::Reg::kCtlr): {
        uint32_t v = ctlr_enabled_ ? its::kCtlrEnabled : 0;
        // Quiescent reflects an empty queue (as KVM): every command completes
        // synchronously, so nothing is in flight once CREADR == CWRITER.
        if (creadr_ == cwriter_) v |= its::kCtlrQuiescent;
        *value = v;
        return absl::OkStatus();
      }
      case its::RegOff(its::Reg::kIidr):
        *value = its::kIidrValue;
        return absl::OkStatus();
      default:
        *value = offset >= its::RegOff(its::Reg::kIdRegsStart)
                     ? IdRegister(offset)
                     : 0;  // reserved / unimplemented: RAZ
        return absl::OkStatus();
    }
  }
  uint64_t reg = 0;
  switch (base64) {
    case its::RegOff(its::Reg::kTyper):
      reg = Typer();
      break;
    case its::RegOff(its::Reg::kCbaser):
      reg = cbaser_;
      break;
    case its::RegOff(its::Reg::kCwriter):
      reg = cwriter_;
      break;
    case its::RegOff(its::Reg::kCreadr):
      reg = creadr_ | (stalled_ ? its::kCreadrStalled : 0);
      break;
    default: {
      const int n = (base64 - its::RegOff(its::Reg::kBaser0)) / 8;
      reg = baser_[n];
      break;
    }
  }
  if (size == 8) {
    *value = reg;
  } else {
    *value = (offset & 4) ? reg >> 32 : reg & kLow32;
  }
  return absl::OkStatus();
}

absl::Status Its::WriteReg(uint64_t offset, uint8_t size, uint64_t value) {
  if ((size != 4 && size != 8) || offset % size != 0) {
    return absl::InvalidArgumentError(
        "ITS registers take aligned 32/64-bit accesses");
  }
  const uint64_t base64 = Reg64Base(offset);
  if (base64 == 0) {
    if (size != 4)
      return absl::InvalidArgumentError("64-bit access to 32-bit ITS register");
    if (offset == its::RegOff(its::Reg::kCtlr)) WriteCtlr(value & kLow32);
    return absl::OkStatus();  // IIDR, ID registers, reserved: WI
  }
  // A 32-bit write updates one half of the register as currently readable.
  uint64_t full = value;
  if (size == 4) {
    uint64_t cur = 0;
    ReadReg(base64, 8, &cur).IgnoreError();
    full = (offset & 4) ? (cur & kLow32) | (value & kLow32) << 32
                        : (cur & ~kLow32) | (value & kLow32);
  }
  switch (base64) {
    case its::RegOff(its::Reg::kTyper):
      break;  // RO
    case its::RegOff(its::Reg::kCreadr):
      break;  // RO for the guest
    case its::RegOff(its::Reg::kCbaser):
      WriteCbaser(full);
      break;
    case its::RegOff(its::Reg::kCwriter):
      // Only a write of the low half (which holds Offset and Retry) is a
      // queue doorbell; the high half is RES0.
      if (size == 8 || !(offset & 4)) WriteCwriter(full);
      break;
    default:
      WriteBaser((base64 - its::RegOff(its::Reg::kBaser0)) / 8, full);
      break;
  }
  return absl::OkStatus();
}

uint64_t Its::QueueBytes() const {
  return ((cbaser_ & its::kCbaserSizeMask) + 1) * 4096;
}

uint32_t Its::CollectionCapacity() const {
  const uint64_t b = baser_[1];
  if (!(b & its::kBaserValid)) return 0;
  const uint64_t entries =
      ((b & its::kBaserSizeMask) + 1) * its::kTablePageSize / its::kEntrySize;
  return static_cast<uint32_t>(
      std::min<uint64_t>(entries, its::kNumCollectionIds));
}

void Its::WriteCtlr(uint32_t value) {
  const bool want = value & its::kCtlrEnabled;
  if (want == ctlr_enabled_) return;
  if (want) {
    // Enabling without valid CBASER/BASER0/BASER1 is UNPREDICTABLE
    // (§12.19); like KVM we ignore the write.
    if (!(cbaser_ & its::kCbaserValid) || !(baser_[0] & its::kBaserValid) ||
        !(baser_[1] & its::kBaserValid)) {
      return;
    }
  }
  if (HaveWatchers()) {
    std::vector<TranslationChange> changes;
    changes.reserve(watched_.size());
    {
      hv::SpinLockHolder l(&lock_);
      for (uint64_t key : watched_) {
        const uint32_t d = key >> 32, e = static_cast<uint32_t>(key);
        std::optional<Translation> now = ResolveMappingLocked(d, e);
        TranslationChange c{d, e, 0, want ? std::nullopt : now,
                            want ? now : std::nullopt};
        if (c.before != c.after) changes.push_back(c);
      }
    }
    Notify(changes);
  }
  ctlr_enabled_ = want;
  {
    hv::SpinLockHolder l(&lock_);
    enabled_ = want;
    FlushCacheLocked();
    ++generation_;
  }
  if (want) ProcessQueue();
}

void Its::WriteCbaser(uint64_t value) {
  // §12.19: writes while enabled are UNPREDICTABLE; ignored (KVM).
  if (ctlr_enabled_) return;
  cbaser_ = value & its::kCbaserWritableMask;
  // Writing CBASER resets CREADR (and, like KVM, CWRITER) and any stall.
  creadr_ = 0;
  cwriter_ = 0;
  stalled_ = false;
}

void Its::WriteCwriter(uint64_t value) {
  const uint64_t offset = value & its::kQueueOffsetMask;
  // An offset outside the queue is UNPREDICTABLE (§12.19); like KVM the
  // write is ignored.
  if (offset >= QueueBytes()) return;
  cwriter_ = offset;
  // Retry restarts a stalled queue at the command CREADR points to.
  if ((value & its::kCwriterRetry) && stalled_) stalled_ = false;
  ProcessQueue();
}

void Its::WriteBaser(int n, uint64_t value) {
  if (n >= 2) return;         // unimplemented tables: RAZ/WI
  if (ctlr_enabled_) return;  // §12.19: writes while enabled ignored
  uint64_t writable = its::kBaserWritableMask;
  // Only the device table may be two-level; the collection table is flat
  // (Indirect is RAZ/WI for it, §12.19).
  if (n == 1) writable &= ~its::kBaserIndirect;
  baser_[n] = (baser_[n] & ~its::kBaserWritableMask) | (value & writable);
  if (n == 1) {
    const uint32_t cap = CollectionCapacity();
    hv::SpinLockHolder l(&lock_);
    collection_capacity_ = cap;
  }
}

// ---------------------------------------------------------------------------
// Command queue

void Its::ProcessQueue() {
  if (!ctlr_enabled_ || stalled_ || !(cbaser_ & its::kCbaserValid)) return;
  const uint64_t base = cbaser_ & its::kCbaserAddrMask;
  const uint64_t bytes = QueueBytes();
  // At most one pass over the queue per doorbell: bounded work.
  while (creadr_ != cwriter_) {
    Command c;
    // Guest memory is read here, with only cmd_mu_ held.
    if (!mem_->Read(base + creadr_, c.dw.data(), its::kCommandSize).ok()) {
      // A memory fault reading the queue stalls it (§5.3 allows stall or
      // skip; we stall so the guest can see and recover).
      stalled_ = true;
      return;
    }
    for (uint64_t& w : c.dw) w = le64toh(w);
    const Error e = Execute(c);
    if (e != Error::kNone) {
      RecordError(c.opcode(), e);
      if (options_.stall_on_error) {
        stalled_ = true;
        return;
      }
    }
    creadr_ = (creadr_ + its::kCommandSize) % bytes;
  }
}

void Its::RecordError(uint8_t opcode, Error e) {
  errors_.last_error = its::ErrorCode(e);
  errors_.last_opcode = opcode;
  ++errors_.total;
  ++errors_.per_opcode[opcode];
}

Error Its::Execute(const Command& c) {
  switch (static_cast<Cmd>(c.opcode())) {
    case Cmd::kInv:
      return ExecuteInv(c);
    case Cmd::kInvall:
      return ExecuteInvall(c);
    case Cmd::kMovi:
    case Cmd::kInt:
    case Cmd::kClear:
    case Cmd::kSync:
    case Cmd::kMapd:
    case Cmd::kMapc:
    case Cmd::kMapti:
    case Cmd::kMapi:
    case Cmd::kMovall:
    case Cmd::kDiscard: {
      Prepared prep;
      return ExecuteSimple(c, prep);
    }
  }
  // Unknown opcodes, and the GICv4 virtual commands (no vLPI support).
  return Error::kUnknownCommand;
}

absl::StatusOr<bool> Its::DeviceIdInTable(uint32_t device_id) const {
  // Following KVM (vgic_its_check_id): a DeviceID is in range if it fits
  // TYPER.Devbits and the device table (flat: its size; indirect: a valid
  // level-1 entry), and its table entry lies in guest RAM, so a device table
  // placed outside RAM makes MAPD fail with E_ITS_MAPD_DEVICE_OOR instead of
  // creating a mapping that save/restore could never write back.
  absl::StatusOr<uint64_t> gpa = DeviceEntryGpa(device_id);
  if (!gpa.ok()) {
    if (absl::IsOutOfRange(gpa.status()) ||
        absl::IsFailedPrecondition(gpa.status())) {
      return false;
    }
    return gpa.status();
  }
  return mem_->Contains(*gpa, 8);
}

Error Its::ExecuteSimple(const Command& c, Prepared& prep) {
  const auto op = static_cast<Cmd>(c.opcode());
  // Allocations and guest-memory reads happen here, before lock_.
  if (op == Cmd::kMapd) {
    absl::StatusOr<bool> in = DeviceIdInTable(c.device_id());
    prep.device_id_in_table = in.ok() && *in;
    if (c.valid()) {
      DeviceMap tmp;
      tmp.emplace(c.device_id(), Device{});
      prep.device_node = tmp.extract(tmp.begin());
    }
  } else if (op == Cmd::kMapti || op == Cmd::kMapi) {
    IteMap tmp;
    tmp.emplace(c.event_id(), Ite{});
    prep.ite_node = tmp.extract(tmp.begin());
  }
  Garbage garbage;  // destroyed after lock_ is released
  Error err;
  if (HaveWatchers()) {
    std::vector<TranslationChange> changes;
    changes.reserve(watched_.size());
    {
      hv::SpinLockHolder l(&lock_);
      err = RunLocked(c, /*apply=*/false, prep, garbage, &changes);
    }
    if (err != Error::kNone) return err;
    Notify(changes);  // before the change takes effect
  }
  {
    hv::SpinLockHolder l(&lock_);
    err = RunLocked(c, /*apply=*/true, prep, garbage, nullptr);
  }
  return err;
}

template <typename AfterFn>
void Its::CollectChanges(uint8_t cause, std::vector<TranslationChange>* changes,
                         AfterFn after_fn) {
  if (changes == nullptr) return;
  for (uint64_t key : watched_) {
    const uint32_t d = key >> 32, e = static_cast<uint32_t>(key);
    TranslationChange c;
    c.device_id = d;
    c.event_id = e;
    c.cause = cause;
    c.before = ResolveLocked(d, e);
    bool force = false;
    c.after = enabled_ ? after_fn(d, e, c.before, &force) : std::nullopt;
    // push_back does not allocate: reserved for watched_.size() entries.
    if (force || c.before != c.after) changes->push_back(c);
  }
}

Error Its::RunLocked(const Command& c, bool apply, Prepared& prep,
                     Garbage& garbage,
                     std::vector<TranslationChange>* changes) {
  const auto op = static_cast<Cmd>(c.opcode());
  const uint8_t opc = c.opcode();
  using OptT = std::optional<Translation>;
  switch (op) {
    case Cmd::kMapd: {
      // MAPD (§5.3, MAPD): DeviceID, Size, ITT_addr, V.
      const uint32_t d = c.device_id();
      if (!prep.device_id_in_table) return Error::kMapdDeviceOor;
      if (c.valid() && c.size() + 1u > its::kEventIdBits) {
        return Error::kMapdIttSizeOor;
      }
      CollectChanges(opc, changes,
                     [&](uint32_t dd, uint32_t, OptT before, bool*) -> OptT {
                       return dd == d ? std::nullopt : before;
                     });
      if (!apply) return Error::kNone;
      auto it = devices_.find(d);
      if (it != devices_.end()) {
        // Re-MAPD or V=0 drops the device's ITEs; their LPIs are discarded
        // (pending state cleared), as KVM frees the interrupts.
        for (const auto& [ev, ite] : it->second.ites) {
          const uint32_t t = CollectionTargetLocked(ite.icid);
          if (t != kUnmapped) sink_->ClearPending(t, ite.intid);
        }
        garbage.device_node = devices_.extract(it);
        InvalidateDeviceLocked(d);
      }
      if (c.valid()) {
        prep.device_node.key() = d;
        prep.device_node.mapped().event_bits = c.size() + 1;
        prep.device_node.mapped().itt_addr = c.itt_addr();
        devices_.insert(std::move(prep.device_node));
      }
      ++generation_;
      return Error::kNone;
    }
    case Cmd::kMapc: {
      // MAPC ICID, RDbase, V. RDbase is a processor number (TYPER.PTA = 0).
      const uint16_t icid = c.icid();
      if (icid >= collection_capacity_) return Error::kMapcCollectionOor;
      const uint64_t rd = c.rdbase();
      if (c.valid() && rd >= sink_->num_vcpus()) return Error::kMapcProcnumOor;
      const bool valid = c.valid();
      CollectChanges(
          opc, changes,
          [&](uint32_t d, uint32_t e, OptT before, bool*) -> OptT {
            lock_.AssertHeld();  // called from CollectChanges
            const Ite* ite = FindIteLocked(d, e);
            if (ite == nullptr || ite->icid != icid) return before;
            if (!valid) return std::nullopt;
            return Translation{static_cast<uint32_t>(rd), ite->intid};
          });
      if (!apply) return Error::kNone;
      const uint32_t old = collections_[icid];
      if (valid && old != kUnmapped && old != rd) {
        // Remapping a mapped collection: its LPIs' pending state follows
        // (KVM's update_affinity_collection).
        for (auto& [d, dev] : devices_) {
          for (auto& [e, ite] : dev.ites) {
            if (ite.icid == icid) {
              sink_->MovePending(old, static_cast<uint32_t>(rd), ite.intid);
            }
          }
        }
      }
      collections_[icid] = valid ? static_cast<uint32_t>(rd) : kUnmapped;
      InvalidateCollectionLocked(icid);
      ++generation_;
      return Error::kNone;
    }
    case Cmd::kMapti:
    case Cmd::kMapi: {
      const bool mapti = op == Cmd::kMapti;
      const uint32_t d = c.device_id(), e = c.event_id();
      auto dit = devices_.find(d);
      if (dit == devices_.end()) {
        return mapti ? Error::kMaptiUnmappedDevice : Error::kMapiUnmappedDevice;
      }
      if (e >= (uint64_t{1} << dit->second.event_bits)) {
        return mapti ? Error::kMaptiIdOor : Error::kMapiIdOor;
      }
      const uint32_t intid = mapti ? c.pintid() : e;
      if (intid < kFirstLpi || intid >= (uint64_t{1} << sink_->id_bits())) {
        return mapti ? Error::kMaptiPhysicalIdOor : Error::kMapiPhysicalIdOor;
      }
      const uint16_t icid = c.icid();
      if (icid >= collection_capacity_) {
        return mapti ? Error::kMaptiCollectionOor : Error::kMapiCollectionOor;
      }
      // Mapping an already mapped EventID is UNPREDICTABLE; like KVM we keep
      // the existing ITE and report no error.
      if (dit->second.ites.contains(e)) return Error::kNone;
      CollectChanges(opc, changes,
                     [&](uint32_t dd, uint32_t ee, OptT before, bool*) -> OptT {
                       if (dd != d || ee != e) return before;
                       lock_.AssertHeld();  // called from CollectChanges
                       const uint32_t t = CollectionTargetLocked(icid);
                       if (t == kUnmapped) return std::nullopt;
                       return Translation{t, intid};
                     });
      if (!apply) return Error::kNone;
      prep.ite_node.key() = e;
      prep.ite_node.mapped() = Ite{intid, icid};
      dit->second.ites.insert(std::move(prep.ite_node));
      InvalidateKeyLocked(Key(d, e));
      ++generation_;
      return Error::kNone;
    }
    case Cmd::kMovi: {
      const uint32_t d = c.device_id(), e = c.event_id();
      auto dit = devices_.find(d);
      if (dit == devices_.end()) return Error::kMoviUnmappedInterrupt;
      auto iit = dit->second.ites.find(e);
      if (iit == dit->second.ites.end()) return Error::kMoviUnmappedInterrupt;
      const uint16_t icid = c.icid();
      const uint32_t from = CollectionTargetLocked(iit->second.icid);
      const uint32_t to = CollectionTargetLocked(icid);
      // Both the current and the new collection must be mapped (KVM).
      if (from == kUnmapped || to == kUnmapped) {
        return Error::kMoviUnmappedCollection;
      }
      const uint32_t intid = iit->second.intid;
      CollectChanges(opc, changes,
                     [&](uint32_t dd, uint32_t ee, OptT before, bool*) -> OptT {
                       if (dd != d || ee != e) return before;
                       return Translation{to, intid};
                     });
      if (!apply) return Error::kNone;
      if (from != to) sink_->MovePending(from, to, intid);
      iit->second.icid = icid;
      InvalidateKeyLocked(Key(d, e));
      ++generation_;
      return Error::kNone;
    }
    case Cmd::kDiscard: {
      const uint32_t d = c.device_id(), e = c.event_id();
      auto dit = devices_.find(d);
      if (dit == devices_.end()) return Error::kDiscardUnmappedInterrupt;
      auto iit = dit->second.ites.find(e);
      if (iit == dit->second.ites.end()) {
        return Error::kDiscardUnmappedInterrupt;
      }
      CollectChanges(opc, changes,
                     [&](uint32_t dd, uint32_t ee, OptT before, bool*) -> OptT {
                       if (dd == d && ee == e) return std::nullopt;
                       return before;
                     });
      if (!apply) return Error::kNone;
      // DISCARD removes the mapping and clears the pending state (§5.3,
      // DISCARD). An ITE whose collection is unmapped is still removed (choice:
      // Linux issues DISCARD on teardown regardless of the collection).
      const uint32_t t = CollectionTargetLocked(iit->second.icid);
      if (t != kUnmapped) sink_->ClearPending(t, iit->second.intid);
      garbage.ite_node = dit->second.ites.extract(iit);
      InvalidateKeyLocked(Key(d, e));
      ++generation_;
      return Error::kNone;
    }
    case Cmd::kInt:
    case Cmd::kClear: {
      const bool is_int = op == Cmd::kInt;
      const Error unmapped = is_int ? Error::kIntUnmappedInterrupt
                                    : Error::kClearUnmappedInterrupt;
      const Ite* ite = FindIteLocked(c.device_id(), c.event_id());
      if (ite == nullptr) return unmapped;
      const uint32_t t = CollectionTargetLocked(ite->icid);
      if (t == kUnmapped) return unmapped;  // KVM: INT/CLEAR need a target
      if (!apply) return Error::kNone;
      // INT sets the pending latch even if the LPI is disabled (§5.3, INT; §5.1
      // pending latch).
      if (is_int) {
        sink_->SetPending(t, ite->intid);
      } else {
        sink_->ClearPending(t, ite->intid);
      }
      return Error::kNone;
    }
    case Cmd::kMovall: {
      const uint64_t rd1 = c.rdbase(), rd2 = c.rdbase2();
      if (rd1 >= sink_->num_vcpus() || rd2 >= sink_->num_vcpus()) {
        return Error::kMovallProcnumOor;
      }
      // MOVALL moves pending state only; collection mappings are unchanged
      // (software remaps them with MAPC; §5.3, MOVALL). Observers of pairs that
      // target RDbase1 are told (before == after) so posted pending state
      // can be re-synchronised.
      CollectChanges(opc, changes,
                     [&](uint32_t, uint32_t, OptT before, bool* force) -> OptT {
                       *force = before.has_value() && before->vcpu == rd1 &&
                                rd1 != rd2;
                       return before;
                     });
      if (!apply) return Error::kNone;
      if (rd1 == rd2) return Error::kNone;
      // Every pending LPI of RDbase1 moves, whatever made it pending (§5.3,
      // MOVALL), not only those this ITS translates.
      sink_->MoveAllPending(static_cast<uint32_t>(rd1),
                            static_cast<uint32_t>(rd2));
      InvalidateVcpuLocked(static_cast<uint32_t>(rd1));
      ++generation_;
      return Error::kNone;
    }
    case Cmd::kSync: {
      // Every command completes before the next is read, so SYNC only
      // validates its RDbase.
      if (c.rdbase() >= sink_->num_vcpus()) return Error::kSyncProcnumOor;
      return Error::kNone;
    }
    case Cmd::kInv:
    case Cmd::kInvall:
      break;  // handled by ExecuteInv / ExecuteInvall
  }
  return Error::kUnknownCommand;
}

Error Its::ExecuteInv(const Command& c) {
  const uint32_t d = c.device_id(), e = c.event_id();
  // INV: read the configuration byte outside lock_, then re-validate that
  // the mapping is unchanged and apply; retry if it changed. (With cmd_mu_
  // held no command can intervene today; the generation check keeps INV
  // correct if command processing is ever split.)
  for (int attempt = 0; attempt < 4; ++attempt) {
    uint64_t gen;
    Translation tr;
    {
      hv::SpinLockHolder l(&lock_);
      const Ite* ite = FindIteLocked(d, e);
      if (ite == nullptr) return Error::kInvUnmappedInterrupt;
      const uint32_t t = CollectionTargetLocked(ite->icid);
      if (t == kUnmapped) return Error::kInvUnmappedCollection;
      tr = Translation{t, ite->intid};
      gen = generation_;
    }
    absl::StatusOr<uint8_t> cfg = sink_->ReadConfigByte(tr.vcpu, tr.intid);
    if (!cfg.ok()) {
      // No usable LPI configuration table: nothing to invalidate
      // (UNPREDICTABLE; we leave the cached configuration as is).
      return Error::kNone;
    }
    if (HaveWatchers() && watched_.contains(Key(d, e))) {
      std::optional<Translation> before;
      {
        hv::SpinLockHolder l(&lock_);
        before = ResolveLocked(d, e);
      }
      const bool lpi_enabled = *cfg & 1;
      if (before.has_value()) {
        std::vector<TranslationChange> changes;
        changes.push_back(TranslationChange{
            d, e, c.opcode(), before,
            lpi_enabled ? before : std::optional<Translation>()});
        Notify(changes);
      }
    }
    hv::SpinLockHolder l(&lock_);
    if (generation_ != gen) continue;
    sink_->ApplyConfigByte(tr.intid, *cfg);
    return Error::kNone;
  }
  return Error::kNone;
}

Error Its::ExecuteInvall(const Command& c) {
  const uint16_t icid = c.icid();
  uint32_t vcpu;
  std::vector<std::pair<uint64_t, Translation>> watched_here;
  if (HaveWatchers()) watched_here.reserve(watched_.size());
  {
    hv::SpinLockHolder l(&lock_);
    if (icid >= collection_capacity_) return Error::kInvallUnmappedCollection;
    vcpu = CollectionTargetLocked(icid);
    if (vcpu == kUnmapped) return Error::kInvallUnmappedCollection;
    if (HaveWatchers()) {
      for (uint64_t key : watched_) {
        const Ite* ite = FindIteLocked(key >> 32, static_cast<uint32_t>(key));
        if (ite != nullptr && ite->icid == icid && enabled_) {
          watched_here.emplace_back(key, Translation{vcpu, ite->intid});
        }
      }
    }
  }
  // Observers learn about LPIs this INVALL disables before the sink applies
  // the new configuration.
  std::vector<TranslationChange> changes;
  changes.reserve(watched_here.size());
  for (const auto& [key, tr] : watched_here) {
    absl::StatusOr<uint8_t> cfg = sink_->ReadConfigByte(tr.vcpu, tr.intid);
    if (cfg.ok() && !(*cfg & 1)) {
      changes.push_back(TranslationChange{static_cast<uint32_t>(key >> 32),
                                          static_cast<uint32_t>(key),
                                          c.opcode(), tr, std::nullopt});
    }
  }
  Notify(changes);
  // Reads the whole configuration table (guest memory): no ITS spinlock.
  (void)sink_->InvalidateAll(vcpu);
  return Error::kNone;
}

void Its::Notify(const std::vector<TranslationChange>& changes) {
  if (observer_ == nullptr) return;
  for (const TranslationChange& c : changes) observer_->OnTranslationChange(c);
}

// ---------------------------------------------------------------------------
// Translation

const Its::Ite* Its::FindIteLocked(uint32_t d, uint32_t e) const {
  auto dit = devices_.find(d);
  if (dit == devices_.end()) return nullptr;
  auto iit = dit->second.ites.find(e);
  if (iit == dit->second.ites.end()) return nullptr;
  return &iit->second;
}

uint32_t Its::CollectionTargetLocked(uint16_t icid) const {
  return collections_[icid];
}

std::optional<Translation> Its::ResolveLocked(uint32_t d, uint32_t e) const {
  if (!enabled_) return std::nullopt;
  return ResolveMappingLocked(d, e);
}

std::optional<Translation> Its::ResolveMappingLocked(uint32_t d,
                                                     uint32_t e) const {
  const Ite* ite = FindIteLocked(d, e);
  if (ite == nullptr) return std::nullopt;
  const uint32_t t = CollectionTargetLocked(ite->icid);
  if (t == kUnmapped) return std::nullopt;
  return Translation{t, ite->intid};
}

Error Its::InjectMsi(uint32_t device_id, uint32_t event_id) {
  const uint64_t key = Key(device_id, event_id);
  hv::SpinLockHolder l(&lock_);
  if (!enabled_) return Error::kMsiItsDisabled;
  CacheEntry& slot = cache_[HashKey(key) >> 32 & cache_mask_];
  if (slot.valid && slot.key == key) {
    ++cache_hits_;
    // Still under lock_: no command can discard or move this translation
    // between the lookup and the pend (the CVE-2024-26598 window).
    sink_->SetPending(slot.vcpu, slot.intid);
    return Error::kNone;
  }
  ++cache_misses_;
  const Ite* ite = FindIteLocked(device_id, event_id);
  if (ite == nullptr) return Error::kIntUnmappedInterrupt;
  const uint32_t t = CollectionTargetLocked(ite->icid);
  if (t == kUnmapped) return Error::kIntUnmappedInterrupt;
  slot = CacheEntry{key, t, ite->intid, ite->icid, true};
  sink_->SetPending(t, ite->intid);
  return Error::kNone;
}

std::optional<Translation> Its::Translate(uint32_t device_id,
                                          uint32_t event_id) const {
  hv::SpinLockHolder l(&lock_);
  return ResolveLocked(device_id, event_id);
}

void Its::InvalidateKeyLocked(uint64_t key) {
  CacheEntry& slot = cache_[HashKey(key) >> 32 & cache_mask_];
  if (slot.key == key) slot.valid = false;
}

void Its::InvalidateDeviceLocked(uint32_t d) {
  for (CacheEntry& s : cache_) {
    if (s.valid && (s.key >> 32) == d) s.valid = false;
  }
}

void Its::InvalidateCollectionLocked(uint16_t icid) {
  for (CacheEntry& s : cache_) {
    if (s.valid && s.icid == icid) s.valid = false;
  }
}

void Its::InvalidateVcpuLocked(uint32_t vcpu) {
  for (CacheEntry& s : cache_) {
    if (s.valid && s.vcpu == vcpu) s.valid = false;
  }
}

void Its::FlushCacheLocked() {
  for (CacheEntry& s : cache_) s.valid = false;
}

void Its::FlushCache() {
  hv::SpinLockHolder l(&lock_);
  FlushCacheLocked();
}

uint64_t Its::cache_hits() const {
  hv::SpinLockHolder l(&lock_);
  return cache_hits_;
}

uint64_t Its::cache_misses() const {
  hv::SpinLockHolder l(&lock_);
  return cache_misses_;
}

// ---------------------------------------------------------------------------
// Host API

void Its::SetObserver(ItsObserver* observer) {
  hv::MutexLock ml(&cmd_mu_);
  observer_ = observer;
}

void Its::Watch(uint32_t device_id, uint32_t event_id) {
  hv::MutexLock ml(&cmd_mu_);
  watched_.insert(Key(device_id, event_id));
}

void Its::Unwatch(uint32_t device_id, uint32_t event_id) {
  hv::MutexLock ml(&cmd_mu_);
  watched_.erase(Key(device_id, event_id));
}

ItsErrorStats Its::GetErrorStats() const {
  hv::MutexLock ml(&cmd_mu_);
  return errors_;
}

ItsRegisters Its::GetRegisters() const {
  hv::MutexLock ml(&cmd_mu_);
  ItsRegisters r;
  r.enabled = ctlr_enabled_;
  r.cbaser = cbaser_;
  r.cwriter = cwriter_;
  r.creadr = creadr_ | (stalled_ ? its::kCreadrStalled : 0);
  r.baser = baser_;
  return r;
}

absl::Status Its::SetRegisters(const ItsRegisters& regs) {
  hv::MutexLock ml(&cmd_mu_);
  const uint64_t cbaser = regs.cbaser & its::kCbaserWritableMask;
  const uint64_t qbytes = ((cbaser & its::kCbaserSizeMask) + 1) * 4096;
  const uint64_t cwriter = regs.cwriter & its::kQueueOffsetMask;
  const uint64_t creadr = regs.creadr & its::kQueueOffsetMask;
  if (cwriter >= qbytes || creadr >= qbytes) {
    return absl::InvalidArgumentError(
        "CREADR/CWRITER beyond the command queue");
  }
  for (int n = 2; n < 8; ++n) {
    if (regs.baser[n] != 0) {
      return absl::InvalidArgumentError("GITS_BASER2..7 are unimplemented");
    }
  }
  ctlr_enabled_ = false;  // BASER/CBASER writes are ignored while enabled
  cbaser_ = cbaser;
  cwriter_ = cwriter;
  creadr_ = creadr;
  stalled_ = regs.creadr & its::kCreadrStalled;
  WriteBaser(0, regs.baser[0]);
  WriteBaser(1, regs.baser[1]);
  ctlr_enabled_ = regs.enabled;
  hv::SpinLockHolder l(&lock_);
  enabled_ = regs.enabled;
  FlushCacheLocked();
  ++generation_;
  return absl::OkStatus();
}

}  // namespace vgic
