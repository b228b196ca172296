// VT-d legacy-mode translation structures (Intel VT-d spec rev 3.x, §9.1 root
// entry, §9.3 context entry, §9.8 second-level paging entries) and the
// fault reason codes of §7.1.3 / Appendix A. Layouts are fixed by
// static_asserts; accessors are constexpr so the bit positions are checked at
// compile time too.
#ifndef IOMMU_FORMATS_H_
#define IOMMU_FORMATS_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace iommu {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr int kPageShift = 12;
inline constexpr int kEntriesPerTable = 512;  // 9 bits per level
inline constexpr int kStrideBits = 9;
inline constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;  // bits 51:12

// Host address width of this model's platform: page-table and context-table
// pointers and leaf addresses above bit 47 are reserved (§9.8: bits HAW-1:12
// hold the address, bits 51:HAW are reserved).
inline constexpr int kHostAddressWidth = 48;
inline constexpr uint64_t kHawReservedMask =
    kAddrMask & ~((uint64_t{1} << kHostAddressWidth) - 1);

// Source-id (requester id) = bus:8 | device:5 | function:3 (§3.4.1).
constexpr uint16_t MakeSid(uint8_t bus, uint8_t devfn) {
  return static_cast<uint16_t>((uint16_t{bus} << 8) | devfn);
}
constexpr uint8_t SidBus(uint16_t sid) {
  return static_cast<uint8_t>(sid >> 8);
}
constexpr uint8_t SidDevfn(uint16_t sid) {
  return static_cast<uint8_t>(sid & 0xff);
}

// Root entry (§9.1): one per bus, 256 in the 4 KiB root table.
//   lo bit 0 P; bits 11:1 reserved; bits 63:12 context-table pointer (CTP).
//   hi: reserved (legacy mode).
struct RootEntry {
  uint64_t lo = 0;
  uint64_t hi = 0;

  static constexpr uint64_t kPresent = 1ull << 0;
  static constexpr uint64_t kLoReserved =
      0xffeull | kHawReservedMask | 0xfff0000000000000ull;

  constexpr bool present() const { return (lo & kPresent) != 0; }
  constexpr uint64_t ctp() const { return lo & kAddrMask; }
  constexpr bool reserved_bits_set() const {
    return (lo & kLoReserved) != 0 || hi != 0;
  }
  static constexpr RootEntry Make(uint64_t context_table) {
    return RootEntry{(context_table & kAddrMask) | kPresent, 0};
  }
};
static_assert(sizeof(RootEntry) == 16);
static_assert(RootEntry::Make(0x12345000).lo == 0x12345001);
static_assert(RootEntry::Make(0x12345000).ctp() == 0x12345000);
inline constexpr int kRootEntries = 256;
static_assert(kRootEntries * sizeof(RootEntry) == kPageSize);

// Translation type (§9.3, context-entry TT field).
enum class TranslationType : uint8_t {
  kUntranslated = 0,  // untranslated requests via second-level tables
  kDeviceTlb = 1,     // as 0, plus translated/translation requests (ATS)
  kPassThrough = 2,   // untranslated requests pass through (ECAP.PT)
  kReserved = 3,
};

// Legacy context entry (§9.3): one per devfn, 256 in a context table.
//   lo bit 0 P; bit 1 FPD; bits 3:2 TT; bits 11:4 reserved;
//      bits 63:12 SLPTPTR (second-level page-table pointer).
//   hi bits 2:0 AW; bits 6:3 ignored; bit 7 reserved; bits 23:8 DID;
//      bits 63:24 reserved.
struct ContextEntry {
  uint64_t lo = 0;
  uint64_t hi = 0;

  static constexpr uint64_t kPresent = 1ull << 0;
  static constexpr uint64_t kFpd = 1ull << 1;
  static constexpr int kTtShift = 2;
  static constexpr uint64_t kTtMask = 3ull << kTtShift;
  static constexpr uint64_t kLoReserved =
      0xff0ull | kHawReservedMask | 0xfff0000000000000ull;
  static constexpr uint64_t kAwMask = 0x7;
  static constexpr int kDidShift = 8;
  static constexpr uint64_t kDidMask = 0xffffull << kDidShift;
  static constexpr uint64_t kHiReserved = (1ull << 7) | 0xffffffffff000000ull;

  constexpr bool present() const { return (lo & kPresent) != 0; }
  constexpr bool fpd() const { return (lo & kFpd) != 0; }
  constexpr TranslationType tt() const {
    return static_cast<TranslationType>((lo & kTtMask) >> kTtShift);
  }
  constexpr uint64_t slptptr() const { return lo & kAddrMask; }
  constexpr uint8_t aw() const { return static_cast<uint8_t>(hi & kAwMask); }
  constexpr uint16_t did() const {
    return static_cast<uint16_t>((hi & kDidMask) >> kDidShift);
  }
  constexpr bool reserved_bits_set() const {
    return (lo & kLoReserved) != 0 || (hi & kHiReserved) != 0;
  }
  static constexpr ContextEntry Make(uint64_t slptptr, TranslationType tt,
                                     uint8_t aw, uint16_t did,
                                     bool fpd = false) {
    return ContextEntry{
        (slptptr & kAddrMask) |
            (uint64_t{static_cast<uint8_t>(tt)} << kTtShift) |
            (fpd ? kFpd : 0) | kPresent,
        (uint64_t{aw} & kAwMask) | (uint64_t{did} << kDidShift)};
  }
};
static_assert(sizeof(ContextEntry) == 16);
static_assert(ContextEntry::Make(0x5000, TranslationType::kPassThrough, 2, 7)
                  .lo == 0x5009);
static_assert(ContextEntry::Make(0x5000, TranslationType::kPassThrough, 2, 7)
                  .hi == 0x702);
static_assert(ContextEntry::Make(0, TranslationType::kUntranslated, 3, 0xffff)
                  .did() == 0xffff);
inline constexpr int kContextEntries = 256;
static_assert(kContextEntries * sizeof(ContextEntry) == kPageSize);

// Address width / AGAW (§3.6, context-entry AW field, CAP.SAGAW):
//   AW 0 = 30-bit 2-level, 1 = 39-bit 3-level, 2 = 48-bit 4-level,
//   3 = 57-bit 5-level; 4..7 reserved.
constexpr int LevelsForAw(uint8_t aw) { return aw + 2; }
constexpr int AgawBitsForAw(uint8_t aw) { return 30 + 9 * aw; }
constexpr uint8_t AwForLevels(int levels) {
  return static_cast<uint8_t>(levels - 2);
}
static_assert(AgawBitsForAw(1) == 39 && LevelsForAw(1) == 3);
static_assert(AgawBitsForAw(3) == 57 && LevelsForAw(3) == 5);
// Bytes covered by one entry of a level-`level` table (level 1 = leaf PTE).
constexpr uint64_t LevelPageSize(int level) {
  return uint64_t{1} << (kPageShift + kStrideBits * (level - 1));
}
constexpr int LevelIndex(uint64_t iova, int level) {
  return static_cast<int>((iova >> (kPageShift + kStrideBits * (level - 1))) &
                          (kEntriesPerTable - 1));
}
static_assert(LevelPageSize(2) == (2u << 20) && LevelPageSize(3) == (1u << 30));

// Second-level paging entry (§9.8), any level:
//   bit 0 R; bit 1 W; bit 7 PS (superpage, levels 2..4 when CAP.SLLPS
//   allows); bits 51:12 address (next table, or page frame; for a superpage
//   the bits below the page size are reserved); bits 51:HAW reserved.
// An entry with R = W = 0 is not present (§3.7: "not-present" when neither
// read nor write permission is set). Access rights are the AND of all levels.
struct SlPte {
  uint64_t v = 0;

  static constexpr uint64_t kRead = 1ull << 0;
  static constexpr uint64_t kWrite = 1ull << 1;
  static constexpr uint64_t kPageSizeBit = 1ull << 7;

  constexpr bool r() const { return (v & kRead) != 0; }
  constexpr bool w() const { return (v & kWrite) != 0; }
  constexpr bool present() const { return (v & (kRead | kWrite)) != 0; }
  constexpr bool ps() const { return (v & kPageSizeBit) != 0; }
  constexpr uint64_t addr() const { return v & kAddrMask; }
};
static_assert(sizeof(SlPte) == 8);
static_assert(kEntriesPerTable * sizeof(SlPte) == kPageSize);

// Access type of a DMA request.
enum class Access : uint8_t { kRead = 1, kWrite = 2 };

// Permission bits as the driver requests them (same encoding as SL-PTE R/W).
enum Perm : uint8_t { kPermNone = 0, kPermR = 1, kPermW = 2, kPermRW = 3 };

// Fault reasons for DMA remapping (VT-d spec Appendix A, legacy mode).
enum class FaultReason : uint8_t {
  kNone = 0x0,
  kRootNotPresent = 0x1,       // present bit in root entry is clear
  kContextNotPresent = 0x2,    // present bit in context entry is clear
  kInvalidContext = 0x3,       // invalid programming of a context entry
  kBeyondAgaw = 0x4,           // input address above 2^AGAW - 1
  kWriteNotPermitted = 0x5,    // write to a page without W
  kReadNotPermitted = 0x6,     // read from a page without R
  kPagingEntryAccess = 0x7,    // next-level pointer cannot be accessed
  kRootTableAccess = 0x8,      // root-table address cannot be accessed
  kContextTableAccess = 0x9,   // context-table pointer cannot be accessed
  kRootReserved = 0xa,         // non-zero reserved field in root entry
  kContextReserved = 0xb,      // non-zero reserved field in context entry
  kPagingEntryReserved = 0xc,  // non-zero reserved field in an SL entry
};
std::string_view FaultReasonName(FaultReason r);

}  // namespace iommu

#endif  // IOMMU_FORMATS_H_
