// Architectural constants of the GICv3 ITS (Arm IHI 0069, chapter 5 "The
// ITS" for commands and chapter 12 "ITS register descriptions"), plus the
// save/restore entry layout of KVM's ITS ABI revision 0
// (Documentation/virt/kvm/devices/arm-vgic-its.rst, "ITS Table ABI REV0").
#ifndef VGIC_ITS_DEFS_H_
#define VGIC_ITS_DEFS_H_

#include <cstdint>

namespace vgic::its {

// ---------------------------------------------------------------------------
// Register map (IHI 0069 §12.19, Table 12-29). Offsets from the ITS base; the
// translation register frame starts at 64 KiB.
enum class Reg : uint64_t {
  kCtlr = 0x0000,
  kIidr = 0x0004,
  kTyper = 0x0008,    // 64-bit
  kCbaser = 0x0080,   // 64-bit
  kCwriter = 0x0088,  // 64-bit
  kCreadr = 0x0090,   // 64-bit
  kBaser0 = 0x0100,   // 8 × 64-bit, 0x100..0x138
  kBaserEnd = 0x0140,
  kIdRegsStart = 0xffd0,  // PIDR4..CIDR3
  kPidr2 = 0xffe8,
  kTranslater = 0x10040,  // translation frame, 32-bit
};
inline constexpr uint64_t kFrameSize = 0x20000;  // control + translation frame
inline constexpr uint64_t kTranslationFrame = 0x10000;
inline constexpr uint64_t RegOff(Reg r) { return static_cast<uint64_t>(r); }
static_assert(RegOff(Reg::kTranslater) - kTranslationFrame == 0x40);

// GITS_CTLR (§12.19.6).
inline constexpr uint32_t kCtlrEnabled = 1u << 0;
inline constexpr uint32_t kCtlrQuiescent = 1u << 31;

// GITS_TYPER (§12.19.23) fields.
inline constexpr uint64_t kTyperPhysical = 1ull << 0;
inline constexpr int kTyperIttEntrySizeShift = 4;  // bytes - 1
inline constexpr int kTyperIdBitsShift = 8;        // EventID bits - 1
inline constexpr int kTyperDevBitsShift = 13;      // DeviceID bits - 1
inline constexpr uint64_t kTyperPta = 1ull << 19;  // 0: RDbase = processor no.
inline constexpr int kTyperCidBitsShift = 32;      // ICID bits - 1 (if CIL)
inline constexpr uint64_t kTyperCil = 1ull << 36;

// What this ITS implements.
inline constexpr uint32_t kEventIdBits = 16;       // TYPER.IDbits + 1
inline constexpr uint32_t kDeviceIdBits = 16;      // TYPER.Devbits + 1
inline constexpr uint32_t kCollectionIdBits = 16;  // TYPER.CIDbits + 1
inline constexpr uint32_t kNumCollectionIds = 1u << kCollectionIdBits;
inline constexpr uint32_t kEntrySize = 8;  // ITE, DTE and CTE size (REV0)

// GITS_CBASER (§12.19.3).
inline constexpr uint64_t kCbaserValid = 1ull << 63;
inline constexpr uint64_t kCbaserAddrMask = 0x000ffffffffff000ull;  // [51:12]
inline constexpr uint64_t kCbaserSizeMask = 0xff;  // 4 KiB pages - 1
// Fields we keep as written: Valid, InnerCache [61:59], OuterCache [55:53],
// Physical_Address [51:12], Shareability [11:10], Size [7:0].
inline constexpr uint64_t kCbaserWritableMask = kCbaserValid | (7ull << 59) |
                                                (7ull << 53) | kCbaserAddrMask |
                                                (3ull << 10) | kCbaserSizeMask;

// GITS_CWRITER / GITS_CREADR (§12.19.5, §12.19.4): Offset [19:5].
inline constexpr uint64_t kQueueOffsetMask = 0xfffe0;
inline constexpr uint64_t kCwriterRetry = 1;
inline constexpr uint64_t kCreadrStalled = 1;
inline constexpr uint64_t kCommandSize = 32;

// GITS_BASER<n> (§12.19.1).
inline constexpr uint64_t kBaserValid = 1ull << 63;
inline constexpr uint64_t kBaserIndirect = 1ull << 62;
inline constexpr int kBaserTypeShift = 56;       // [58:56], RO
inline constexpr int kBaserEntrySizeShift = 48;  // [52:48] bytes - 1, RO
inline constexpr int kBaserPageSizeShift = 8;    // [9:8], RO here: 64 KiB
inline constexpr uint64_t kBaserPageSize64K = 2ull << kBaserPageSizeShift;
inline constexpr uint64_t kBaserSizeMask = 0xff;  // pages - 1
// For 64 KiB pages PA[47:16] is in [47:16] and PA[51:48] in [15:12].
inline constexpr uint64_t kBaserAddr64KMask = 0x0000ffffffff0000ull;
inline constexpr uint64_t kBaserAddrHighMask = 0xf000ull;
// Guest-writable: Valid, Indirect, InnerCache, OuterCache, address,
// Shareability, Size.
inline constexpr uint64_t kBaserWritableMask =
    kBaserValid | kBaserIndirect | (7ull << 59) | (7ull << 53) |
    kBaserAddr64KMask | kBaserAddrHighMask | (3ull << 10) | kBaserSizeMask;
inline constexpr uint64_t kBaserTypeDevice = 1;
inline constexpr uint64_t kBaserTypeCollection = 4;
inline constexpr uint64_t kTablePageSize = 64 * 1024;
// Level-1 entry of an indirect table (§5.2.1): Valid [63], PA [51:12] of a
// page-size aligned level-2 table.
inline constexpr uint64_t kL1EntryValid = 1ull << 63;
inline constexpr uint64_t kL1EntryAddrMask = 0x000fffffffff0000ull;  // 64K

// ---------------------------------------------------------------------------
// Commands (§5.3, Table 5-? opcodes in DW0[7:0]).
enum class Cmd : uint8_t {
  kMovi = 0x01,
  kInt = 0x03,
  kClear = 0x04,
  kSync = 0x05,
  kMapd = 0x08,
  kMapc = 0x09,
  kMapti = 0x0a,
  kMapi = 0x0b,
  kInv = 0x0c,
  kInvall = 0x0d,
  kMovall = 0x0e,
  kDiscard = 0x0f,
};
inline constexpr int kNumOpcodeSlots = 256;  // error counters per DW0[7:0]

// Command error encodings (§5.3 per-command pseudocode, the E_ITS_* names).
// Values are Linux's include/linux/irqchip/arm-gic-v3.h (which KVM reports);
// [23:16] = 0x01 command error, [15:8] command, [7:0] cause:
// 01 ID/RDbase OOR, 02 size/processor OOR, 03 collection OOR, 04 unmapped
// device, 05 EventID OOR, 06 physical ID OOR, 07 unmapped interrupt,
// 09 unmapped collection. Causes Linux does not name are built from the same
// pattern (marked "pattern").
enum class Error : uint32_t {
  kNone = 0,
  kMoviUnmappedInterrupt = 0x010107,
  kMoviUnmappedCollection = 0x010109,
  kIntUnmappedInterrupt = 0x010307,
  kClearUnmappedInterrupt = 0x010507,  // Linux's value (sic: [15:8] = 05)
  kMapdDeviceOor = 0x010801,
  kMapdIttSizeOor = 0x010802,
  kMapcProcnumOor = 0x010902,
  kMapcCollectionOor = 0x010903,
  kMaptiCollectionOor = 0x010a03,  // pattern
  kMaptiUnmappedDevice = 0x010a04,
  kMaptiIdOor = 0x010a05,
  kMaptiPhysicalIdOor = 0x010a06,
  kMapiCollectionOor = 0x010b03,   // pattern
  kMapiUnmappedDevice = 0x010b04,  // pattern
  kMapiIdOor = 0x010b05,           // pattern
  kMapiPhysicalIdOor = 0x010b06,   // pattern
  kInvUnmappedInterrupt = 0x010c07,
  kInvUnmappedCollection = 0x010c09,  // pattern
  kInvallUnmappedCollection = 0x010d09,
  kMovallProcnumOor = 0x010e01,
  kDiscardUnmappedInterrupt = 0x010f07,
  kSyncProcnumOor = 0x010501,  // pattern (SYNC is [15:8] = 05 by opcode)
  kUnknownCommand = 0x01ff00,  // hv: unsupported opcode (incl. GICv4 V*)
  // Not a command error: result of InjectMsi when GITS_CTLR.Enabled == 0.
  kMsiItsDisabled = 0x01ff01,  // hv
};
inline constexpr uint32_t ErrorCode(Error e) {
  return static_cast<uint32_t>(e);
}

// GITS_IIDR (§12.19.10): Implementer Arm (0x43b), Revision 0 (the table ABI
// revision, as KVM reports), ProductID 0x48 ('H', hv).
inline constexpr uint32_t kIidrValue = 0x43b | (0u << 12) | (0x48u << 24);

// ---------------------------------------------------------------------------
// KVM ITS table ABI REV0 (8-byte little-endian entries).
// DTE: Valid [63], Next [62:49] (DeviceID offset to the next valid DTE, 0 =
// last), ITT_addr[51:8] in [48:5], Size (EventID bits - 1) in [4:0].
inline constexpr int kDteValidShift = 63;
inline constexpr int kDteNextShift = 49;
inline constexpr uint64_t kDteNextMax = (1u << 14) - 1;
inline constexpr int kDteIttAddrShift = 5;
inline constexpr uint64_t kDteIttAddrMask = (1ull << 44) - 1;  // ITT_addr>>8
inline constexpr uint64_t kDteSizeMask = 0x1f;
// ITE: Next [63:48] (EventID offset, 0 = last), pINTID [47:16], ICID [15:0];
// an all-zero ITE is invalid (pINTID 0 is never an LPI).
inline constexpr int kIteNextShift = 48;
inline constexpr uint64_t kIteNextMax = (1u << 16) - 1;
inline constexpr int kItePintidShift = 16;
inline constexpr uint64_t kItePintidMask = 0xffffffffull;
inline constexpr uint64_t kIteIcidMask = 0xffff;
// CTE: Valid [63], RDbase [51:16] (the vCPU number since TYPER.PTA = 0),
// ICID [15:0]. The first invalid CTE ends the table.
inline constexpr int kCteValidShift = 63;
inline constexpr int kCteRdbaseShift = 16;
inline constexpr uint64_t kCteRdbaseMask = (1ull << 36) - 1;
inline constexpr uint64_t kCteIcidMask = 0xffff;

}  // namespace vgic::its

#endif  // VGIC_ITS_DEFS_H_
