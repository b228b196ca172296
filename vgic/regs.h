// Register maps of the virtual GICv3 frames (GICv3/v4 architecture
// specification, ARM IHI 0069, chapter 12 "Programmers' model").
//
// Three guest-visible frames:
//   - the distributor (GICD, 64 KiB, §12.9),
//   - one redistributor per vCPU (GICR, 128 KiB each: RD_base + SGI_base,
//     §12.10/§12.11), laid out contiguously, GICR_TYPER.Last on the last one,
//   - the CPU interface (ICC_* system registers, §12.2), which hv presents to
//     its x86 vCPUs as an MMIO frame banked per accessing vCPU (hv-specific
//     layout, see IccReg and docs/vgic.md).
#ifndef VGIC_REGS_H_
#define VGIC_REGS_H_

#include <cstdint>

namespace vgic {

// ---------------------------------------------------------------------------
// INTID space (§2.2).
inline constexpr uint32_t kNumSgis = 16;
inline constexpr uint32_t kNumPrivate = 32;  // SGIs 0..15, PPIs 16..31
inline constexpr uint32_t kFirstSpi = 32;
inline constexpr uint32_t kMaxSpis = 988;  // SPIs 32..1019
inline constexpr uint32_t kSpecialIntidFirst = 1020;
inline constexpr uint32_t kSpuriousIntid = 1023;

// ---------------------------------------------------------------------------
// Frame sizes.
inline constexpr uint64_t kDistributorFrameSize = 0x10000;  // 64 KiB
inline constexpr uint64_t kRedistributorStride = 0x20000;   // 128 KiB
inline constexpr uint64_t kRedistributorSgiBase = 0x10000;  // SGI_base
inline constexpr uint64_t kCpuInterfaceFrameSize = 0x1000;  // 4 KiB

// ---------------------------------------------------------------------------
// Distributor registers (§12.9, Table 12-25). Offsets of the first register
// of each array.
enum class GicdReg : uint64_t {
  kCtlr = 0x0000,
  kTyper = 0x0004,
  kIidr = 0x0008,
  kTyper2 = 0x000c,
  kStatusr = 0x0010,
  kSetSpiNsr = 0x0040,
  kClrSpiNsr = 0x0048,
  kSetSpiSr = 0x0050,
  kClrSpiSr = 0x0058,
  kIgroupr = 0x0080,     // ..0x00fc
  kIsenabler = 0x0100,   // ..0x017c
  kIcenabler = 0x0180,   // ..0x01fc
  kIspendr = 0x0200,     // ..0x027c
  kIcpendr = 0x0280,     // ..0x02fc
  kIsactiver = 0x0300,   // ..0x037c
  kIcactiver = 0x0380,   // ..0x03fc
  kIpriorityr = 0x0400,  // ..0x07f8
  kItargetsr = 0x0800,   // ..0x0bf8 (RAZ/WI with ARE=1)
  kIcfgr = 0x0c00,       // ..0x0cfc
  kIgrpmodr = 0x0d00,    // ..0x0d7c
  kNsacr = 0x0e00,       // ..0x0efc
  kSgir = 0x0f00,        // (RAZ/WI with ARE=1)
  kCpendsgir = 0x0f10,
  kSpendsgir = 0x0f20,
  kIrouter = 0x6000,  // IROUTER<n> at 0x6000 + 8n, n = 32..1019
  kPidr2 = 0xffe8,
};

// Layout checks against Table 12-25: each one-bit-per-INTID array is 0x80
// bytes (1024 INTIDs), IPRIORITYR one byte per INTID, ICFGR two bits per
// INTID, IROUTER<32> at 0x6100.
static_assert(static_cast<uint64_t>(GicdReg::kIcenabler) -
                  static_cast<uint64_t>(GicdReg::kIsenabler) ==
              1024 / 8);
static_assert(static_cast<uint64_t>(GicdReg::kIcactiver) ==
              static_cast<uint64_t>(GicdReg::kIgroupr) + 6 * 0x80);
static_assert(static_cast<uint64_t>(GicdReg::kItargetsr) -
                  static_cast<uint64_t>(GicdReg::kIpriorityr) ==
              1024);
static_assert(static_cast<uint64_t>(GicdReg::kIrouter) + 8 * 32 == 0x6100);

// One bit per INTID registers span 0x80 bytes (1024 INTIDs).
inline constexpr uint64_t kBitRegSpan = 0x80;
inline constexpr uint64_t kPriorityRegSpan = 0x400;
inline constexpr uint64_t kCfgRegSpan = 0x100;
inline constexpr uint64_t kIrouterEnd = 0x6000 + 8 * 1020;
static_assert(kIrouterEnd == 0x7fe0);

// GICD_CTLR with GICD_CTLR.DS == 1 (single Security state, §12.9.4).
inline constexpr uint32_t kGicdCtlrEnableGrp0 = 1u << 0;
inline constexpr uint32_t kGicdCtlrEnableGrp1 = 1u << 1;
inline constexpr uint32_t kGicdCtlrAre = 1u << 4;
inline constexpr uint32_t kGicdCtlrDs = 1u << 6;
inline constexpr uint32_t kGicdCtlrRwp = 1u << 31;

// GICD_TYPER fields (§12.9.38).
inline constexpr uint32_t kGicdTyperMbis = 1u << 16;
inline constexpr uint32_t kGicdTyperLpis = 1u << 17;
inline constexpr uint32_t kGicdTyperIdbitsShift = 19;
inline constexpr uint32_t kGicdTyperNo1N = 1u << 25;

// GICD_IROUTER (§12.9.22): Aff0 [7:0], Aff1 [15:8], Aff2 [23:16], IRM [31],
// Aff3 [39:32]. IRM is RES0 because GICD_TYPER.No1N == 1.
inline constexpr uint64_t kIrouterAffMask = 0x000000ff00ffffffull;

// GICD_PIDR2 / GICR_PIDR2 (§12.1.13 / §12.9.27): ArchRev [7:4] = 0x3 (GICv3),
// JEDEC [3] = 1 and DES_1 [2:0] = 3 (bits [6:4] of Arm's JEP106 code 0x3b):
// 0x3b, the value KVM reports and the ITS's GITS_PIDR2.
inline constexpr uint32_t kPidr2ArchRevGicv3 = (0x3 << 4) | (1u << 3) | 0x3;
static_assert(kPidr2ArchRevGicv3 == 0x3b);

// Implementer JEP106 code of Arm (0x43b) in IIDR [11:0]; ProductID [31:24]
// 'h' identifies hv's model.
inline constexpr uint32_t kIidr = (uint32_t{'h'} << 24) | 0x43b;

// ---------------------------------------------------------------------------
// Redistributor RD_base registers (§12.10, Table 12-27).
enum class GicrReg : uint64_t {
  kCtlr = 0x0000,
  kIidr = 0x0004,
  kTyper = 0x0008,  // 64-bit
  kStatusr = 0x0010,
  kWaker = 0x0014,
  kSetLpir = 0x0040,
  kClrLpir = 0x0048,
  kPropbaser = 0x0070,  // 64-bit
  kPendbaser = 0x0078,  // 64-bit
  kInvlpir = 0x00a0,
  kInvallr = 0x00b0,
  kSyncr = 0x00c0,
  kPidr2 = 0xffe8,
};

// SGI_base registers, offsets relative to SGI_base (RD_base + 0x10000)
// (§12.11, Table 12-29).
enum class GicrSgiReg : uint64_t {
  kIgroupr0 = 0x0080,
  kIsenabler0 = 0x0100,
  kIcenabler0 = 0x0180,
  kIspendr0 = 0x0200,
  kIcpendr0 = 0x0280,
  kIsactiver0 = 0x0300,
  kIcactiver0 = 0x0380,
  kIpriorityr = 0x0400,  // ..0x041c, 32 byte-accessible fields
  kIcfgr0 = 0x0c00,      // SGIs: RO, always edge
  kIcfgr1 = 0x0c04,      // PPIs
  kIgrpmodr0 = 0x0d00,
  kNsacr = 0x0e00,
};

// SGI_base mirrors the distributor's layout for INTIDs 0..31.
static_assert(static_cast<uint64_t>(GicrSgiReg::kIcactiver0) ==
              static_cast<uint64_t>(GicdReg::kIcactiver));
static_assert(static_cast<uint64_t>(GicrSgiReg::kIpriorityr) ==
              static_cast<uint64_t>(GicdReg::kIpriorityr));
static_assert(kRedistributorStride == 2 * kRedistributorSgiBase);

// GICR_CTLR (§12.10.1).
inline constexpr uint32_t kGicrCtlrEnableLpis = 1u << 0;
// GICR_TYPER (§12.10.32).
inline constexpr uint64_t kGicrTyperPlpis = 1ull << 0;
inline constexpr uint64_t kGicrTyperLast = 1ull << 4;
inline constexpr uint32_t kGicrTyperProcNumShift = 8;
inline constexpr uint32_t kGicrTyperAffinityShift = 32;
// GICR_WAKER (§12.10.34).
inline constexpr uint32_t kGicrWakerProcessorSleep = 1u << 1;
inline constexpr uint32_t kGicrWakerChildrenAsleep = 1u << 2;
// GICR_PROPBASER (§12.10.21): IDbits [4:0], InnerCache [9:7],
// Shareability [11:10], PA [51:12], OuterCache [58:56].
inline constexpr uint64_t kPropbaserIdbitsMask = 0x1full;
inline constexpr uint64_t kPropbaserPaMask = 0x000ffffffffff000ull;
inline constexpr uint64_t kPropbaserWritable =
    kPropbaserIdbitsMask | (0x7ull << 7) | (0x3ull << 10) | kPropbaserPaMask |
    (0x7ull << 56);
// GICR_PENDBASER (§12.10.20): InnerCache [9:7], Shareability [11:10],
// PA [51:16], OuterCache [58:56], PTZ [62] (write-only, reads as 0).
inline constexpr uint64_t kPendbaserPaMask = 0x000fffffffff0000ull;
inline constexpr uint64_t kPendbaserPtz = 1ull << 62;
inline constexpr uint64_t kPendbaserStored =
    (0x7ull << 7) | (0x3ull << 10) | kPendbaserPaMask | (0x7ull << 56);

// ---------------------------------------------------------------------------
// LPI tables in guest memory (§5.1.1, §5.1.2).
// Configuration byte: priority [7:2], bit 1 RES1-ish/RES0, enable [0].
inline constexpr uint8_t kLpiConfigEnable = 0x01;
inline constexpr uint8_t kLpiConfigPriorityMask = 0xfc;
// The first 1 KiB of a pending table (INTIDs 0..8191) is IMPLEMENTATION
// DEFINED; LPI bits start at byte kFirstLpi / 8.
inline constexpr uint64_t kPendingTableLpiOffset = 8192 / 8;

// ---------------------------------------------------------------------------
// CPU interface. hv presents the ICC_* system registers (§12.2) as an MMIO
// frame banked per vCPU: every register is 64 bits wide at an 8-byte aligned
// offset. 8-byte accesses always work; a 4-byte access to the low half is
// accepted for registers whose defined bits fit in 32 bits (all except
// SGI1R). Reading a write-only register or writing a read-only one is an
// error (the system-register encodings do not exist in that direction).
enum class IccReg : uint64_t {
  kCtlr = 0x00,     // ICC_CTLR_EL1   RW
  kPmr = 0x08,      // ICC_PMR_EL1    RW
  kBpr1 = 0x10,     // ICC_BPR1_EL1   RW
  kIar1 = 0x18,     // ICC_IAR1_EL1   RO (read acknowledges)
  kEoir1 = 0x20,    // ICC_EOIR1_EL1  WO
  kDir = 0x28,      // ICC_DIR_EL1    WO
  kHppir1 = 0x30,   // ICC_HPPIR1_EL1 RO
  kRpr = 0x38,      // ICC_RPR_EL1    RO
  kIgrpen1 = 0x40,  // ICC_IGRPEN1_EL1 RW
  kSgi1r = 0x48,    // ICC_SGI1R_EL1  WO, 64-bit only
  kAp1r0 = 0x50,    // ICC_AP1R0_EL1  RW (active priorities, save/restore)
};
inline constexpr uint64_t kIccRegCount = 11;
static_assert(static_cast<uint64_t>(IccReg::kAp1r0) == (kIccRegCount - 1) * 8);

// ICC_CTLR_EL1 (§12.2.6).
inline constexpr uint64_t kIccCtlrCbpr = 1ull << 0;
inline constexpr uint64_t kIccCtlrEoimode = 1ull << 1;
inline constexpr uint32_t kIccCtlrPribitsShift = 8;
inline constexpr uint32_t kIccCtlrIdbitsShift = 11;
// ICC_SGI1R_EL1 (§12.2.22): TargetList [15:0], Aff1 [23:16], INTID [27:24],
// Aff2 [39:32], IRM [40], RS [47:44], Aff3 [55:48].
inline constexpr uint64_t kSgi1rIrm = 1ull << 40;

// Priority: 5 implemented bits (32 levels, as on common hardware and KVM's
// ICH_VTR_EL2.PRIbits); the low 3 bits of every priority field are RAZ/WI.
inline constexpr uint32_t kPriorityBits = 5;
inline constexpr uint8_t kPriorityMask = 0xf8;
// Minimum ICC_BPR1_EL1 value for 5 preemption bits: group priority [7:3].
inline constexpr uint32_t kMinBpr1 = 8 - kPriorityBits;
inline constexpr uint8_t kIdlePriority = 0xff;  // ICC_RPR_EL1 when idle

}  // namespace vgic

#endif  // VGIC_REGS_H_
