// VT-d remapping-hardware register file layout (VT-d spec §10.4) and the
// capability values this model advertises.
#ifndef IOMMU_REGISTERS_H_
#define IOMMU_REGISTERS_H_

#include <cstdint>

namespace iommu {

// Register offsets from the remapping unit's MMIO base (§10.4).
enum class Reg : uint64_t {
  kVer = 0x000,     // 32-bit version
  kCap = 0x008,     // 64-bit capability
  kEcap = 0x010,    // 64-bit extended capability
  kGcmd = 0x018,    // 32-bit global command
  kGsts = 0x01c,    // 32-bit global status
  kRtaddr = 0x020,  // 64-bit root-table address
  kCcmd = 0x028,    // 64-bit context command
  kFsts = 0x034,    // 32-bit fault status
  kFectl = 0x038,   // 32-bit fault event control
  // IOTLB registers at ECAP.IRO * 16 (§10.4.8): IVA then IOTLB.
  kIva = 0x100,
  kIotlb = 0x108,
  // Fault recording registers at CAP.FRO * 16, 16 bytes each (§10.4.14).
  kFrcd0 = 0x200,
};
inline constexpr uint64_t RegOffset(Reg r) { return static_cast<uint64_t>(r); }
inline constexpr uint64_t kRegisterWindowSize = 0x1000;
inline constexpr int kNumFaultRecords = 8;

// VER: major 1, minor 0.
inline constexpr uint32_t kVersion = 0x10;

// CAP (§10.4.2).
namespace cap {
inline constexpr uint64_t kNdShift = 0;       // 2:0 number of domains
inline constexpr uint64_t kSagawShift = 8;    // 12:8 supported AGAWs
inline constexpr uint64_t kMgawShift = 16;    // 21:16 MGAW - 1
inline constexpr uint64_t kFroShift = 24;     // 33:24 fault-record offset/16
inline constexpr uint64_t kSllpsShift = 34;   // 37:34 SL large pages
inline constexpr uint64_t kPsi = 1ull << 39;  // page-selective invalidation
inline constexpr uint64_t kNfrShift = 40;     // 47:40 fault records - 1
inline constexpr uint64_t kMamvShift = 48;    // 53:48 max address mask
}  // namespace cap

// ECAP (§10.4.3).
namespace ecap {
inline constexpr uint64_t kDt = 1ull << 2;  // device-TLB (TT=1 allowed)
inline constexpr uint64_t kPt = 1ull << 6;  // pass-through (TT=2 allowed)
inline constexpr uint64_t kIroShift = 8;    // 17:8 IOTLB register offset/16
}  // namespace ecap

// What this model implements: ND=6 (65536 domains, 16-bit DIDs),
// SAGAW = 2,3,4,5-level (bits 0..3),
// MGAW = 57, SLLPS = 2 MiB, 1 GiB, 512 GiB, PSI with MAMV = 18.
inline constexpr uint64_t kSagawMask = 0xf;  // AW 0..3 supported
inline constexpr uint64_t kSllpsMask = 0x7;  // levels 2, 3, 4
inline constexpr uint64_t kCapValue =
    (6ull << cap::kNdShift) | (kSagawMask << cap::kSagawShift) |
    (56ull << cap::kMgawShift) |
    ((RegOffset(Reg::kFrcd0) / 16) << cap::kFroShift) |
    (kSllpsMask << cap::kSllpsShift) | cap::kPsi |
    (uint64_t{kNumFaultRecords - 1} << cap::kNfrShift) |
    (18ull << cap::kMamvShift);
inline constexpr uint64_t kEcapValue =
    ecap::kDt | ecap::kPt | ((RegOffset(Reg::kIva) / 16) << ecap::kIroShift);
static_assert(((kCapValue >> cap::kFroShift) & 0x3ff) * 16 ==
              RegOffset(Reg::kFrcd0));
static_assert(((kEcapValue >> ecap::kIroShift) & 0x3ff) * 16 ==
              RegOffset(Reg::kIva));
static_assert(((kCapValue >> cap::kMgawShift) & 0x3f) + 1 == 57);

// GCMD / GSTS bits (§10.4.4, §10.4.5).
namespace gcmd {
inline constexpr uint32_t kTe = 1u << 31;    // translation enable
inline constexpr uint32_t kSrtp = 1u << 30;  // set root-table pointer
}  // namespace gcmd
namespace gsts {
inline constexpr uint32_t kTes = 1u << 31;   // translation enabled
inline constexpr uint32_t kRtps = 1u << 30;  // root-table pointer set
}  // namespace gsts

// RTADDR (§10.4.6): bits 63:12 root table, bits 11:10 TTM (00 = legacy).
inline constexpr uint64_t kRtaddrTtmMask = 3ull << 10;

// CCMD (§10.4.7).
namespace ccmd {
inline constexpr uint64_t kIcc = 1ull << 63;
inline constexpr int kCirgShift = 61;  // 62:61 requested granularity
inline constexpr int kCaigShift = 59;  // 60:59 actual granularity
inline constexpr int kFmShift = 32;    // 33:32 function mask
inline constexpr int kSidShift = 16;   // 31:16 source-id
inline constexpr uint64_t kDidMask = 0xffff;
inline constexpr uint64_t kGlobal = 1, kDomain = 2, kDevice = 3;
}  // namespace ccmd

// IOTLB invalidate register (§10.4.8.1) and IVA (§10.4.8.2).
namespace iotlb_reg {
inline constexpr uint64_t kIvt = 1ull << 63;
inline constexpr int kIirgShift = 60;  // 61:60 requested granularity
inline constexpr int kIaigShift = 57;  // 58:57 actual granularity
inline constexpr int kDidShift = 32;   // 47:32
inline constexpr uint64_t kGlobal = 1, kDomain = 2, kPage = 3;
inline constexpr uint64_t kIvaAmMask = 0x3f;  // IVA 5:0 address mask
}  // namespace iotlb_reg

// FSTS (§10.4.9): PFO bit 0 (RW1C), PPF bit 1 (RO), FRI 15:8.
namespace fsts {
inline constexpr uint32_t kPfo = 1u << 0;
inline constexpr uint32_t kPpf = 1u << 1;
inline constexpr int kFriShift = 8;
}  // namespace fsts

// Fault recording register (§10.4.14), 128 bits:
//   63:12 FI (faulting page address); 79:64 SID; 103:96 FR (reason);
//   126 T (1 = read, 0 = write); 127 F (fault, RW1C).
struct FaultRecord {
  uint64_t lo = 0;
  uint64_t hi = 0;
  static constexpr uint64_t kHiF = 1ull << 63;
  static constexpr uint64_t kHiTRead = 1ull << 62;
  static constexpr int kHiFrShift = 32;
  bool fault() const { return (hi & kHiF) != 0; }
  uint64_t page() const { return lo & ~0xfffull; }
  uint16_t sid() const { return static_cast<uint16_t>(hi & 0xffff); }
  uint8_t reason() const { return static_cast<uint8_t>(hi >> kHiFrShift); }
  bool is_read() const { return (hi & kHiTRead) != 0; }
};
static_assert(sizeof(FaultRecord) == 16);

}  // namespace iommu

#endif  // IOMMU_REGISTERS_H_
