#include "vgic/its.h"

#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vgic/fake_lpi_sink.h"
#include "vgic/its_commands.h"
#include "vgic/its_harness.h"

namespace vgic {
namespace {

namespace cmd = its::cmd;
using its::Error;
using its::ErrorCode;

constexpr uint32_t kLpi = 8192;

class ItsTest : public ::testing::Test {
 protected:
  ItsTest() : sink_(4, 16), h_(&sink_) {}
  Its& its() { return h_.its(); }
  // Device `d` with `bits` EventID bits, collection `icid` → vCPU `rd`.
  void MapBasic(uint32_t d = 1, uint32_t bits = 5, uint16_t icid = 0,
                uint32_t rd = 1) {
    h_.Send({cmd::Mapd(d, bits, ItsHarness::Itt(d), true),
             cmd::Mapc(icid, rd, true)});
  }
  FakeLpiSink sink_;
  ItsHarness h_;
};

// --- registers -------------------------------------------------------------

TEST_F(ItsTest, TyperReportsSpecFields) {
  const uint64_t typer = h_.R64(0x8);
  EXPECT_EQ(typer & 1, 1u);                    // Physical
  EXPECT_EQ((typer >> 4) & 0xf, 7u);           // ITT_entry_size = 8 bytes
  EXPECT_GE(((typer >> 8) & 0x1f) + 1, 16u);   // IDbits
  EXPECT_GE(((typer >> 13) & 0x1f) + 1, 16u);  // Devbits
  EXPECT_EQ((typer >> 19) & 1, 0u);            // PTA = 0
  EXPECT_EQ((typer >> 36) & 1, 1u);            // CIL
  EXPECT_EQ(((typer >> 32) & 0xf) + 1, 16u);   // CIDbits
  // 32-bit halves read the same register.
  EXPECT_EQ(h_.R32(0x8), typer & 0xffffffff);
  EXPECT_EQ(h_.R32(0xc), typer >> 32);
  EXPECT_EQ(h_.R32(0x4), its::kIidrValue);
  EXPECT_EQ((h_.R32(0xffe8) >> 4) & 0xf, 3u);  // PIDR2.ArchRev = GICv3
}

TEST_F(ItsTest, BaserFixedFieldsAndUnimplementedTables) {
  const uint64_t b0 = h_.R64(0x100), b1 = h_.R64(0x108);
  EXPECT_EQ((b0 >> 56) & 7, 1u);     // Device
  EXPECT_EQ((b1 >> 56) & 7, 4u);     // Collection
  EXPECT_EQ((b0 >> 48) & 0x1f, 7u);  // 8-byte entries
  EXPECT_EQ((b0 >> 8) & 3, 2u);      // 64 KiB pages
  // Writes cannot change RO fields; BASER1 is flat only.
  ASSERT_TRUE(h_.W64(0x108, ~0ull).ok());
  const uint64_t b1w = h_.R64(0x108);
  EXPECT_EQ((b1w >> 56) & 7, 4u);
  EXPECT_EQ((b1w >> 48) & 0x1f, 7u);
  EXPECT_EQ((b1w >> 8) & 3, 2u);
  EXPECT_EQ((b1w >> 62) & 1, 0u);
  ASSERT_TRUE(h_.W64(0x100, uint64_t{1} << 62).ok());
  EXPECT_EQ((h_.R64(0x100) >> 62) & 1, 1u);  // device table may be indirect
  for (uint64_t off = 0x110; off < 0x140; off += 8) {
    ASSERT_TRUE(h_.W64(off, ~0ull).ok());
    EXPECT_EQ(h_.R64(off), 0u) << off;
  }
}

TEST_F(ItsTest, ThirtyTwoBitHalvesOf64BitRegisters) {
  // CBASER programmed as two 32-bit writes, as a 32-bit guest does.
  const uint64_t cbaser = uint64_t{1} << 63 | ItsHarness::kCmdq | 0;
  ASSERT_TRUE(h_.W32(0x80, cbaser & 0xffffffff).ok());
  ASSERT_TRUE(h_.W32(0x84, cbaser >> 32).ok());
  EXPECT_EQ(h_.R64(0x80), cbaser);
  const uint64_t b0 = uint64_t{1} << 63 | ItsHarness::kDevTable;
  ASSERT_TRUE(h_.W32(0x100, b0 & 0xffffffff).ok());
  ASSERT_TRUE(h_.W32(0x104, b0 >> 32).ok());
  EXPECT_EQ(h_.R64(0x100) & (uint64_t{1} << 63 | 0xfffffff000ull), b0);
  ASSERT_TRUE(h_.W64(0x108, uint64_t{1} << 63 | ItsHarness::kCollTable).ok());
  ASSERT_TRUE(h_.W32(0x0, 1).ok());
  ASSERT_EQ(h_.R32(0x0) & 1, 1u);
  // A command queued with a 32-bit CWRITER write is processed.
  const auto c = cmd::Mapc(0, 2, true);
  ASSERT_TRUE(h_.mem().Write(ItsHarness::kCmdq, c.data(), 32).ok());
  ASSERT_TRUE(h_.W32(0x88, 32).ok());
  EXPECT_EQ(h_.R32(0x90), 32u);
  EXPECT_EQ(h_.R32(0x94), 0u);
  // Unaligned / narrow accesses are rejected.
  uint64_t v;
  EXPECT_FALSE(its().Read({}, 0x81, 1, &v).ok());
  EXPECT_FALSE(its().Read({}, 0x0, 8, &v).ok());
}

TEST_F(ItsTest, EnableNeedsValidTablesAndLocksBasers) {
  ASSERT_TRUE(h_.W32(0x0, 1).ok());
  EXPECT_EQ(h_.R32(0x0) & 1, 0u) << "enabled without tables";
  h_.Enable();
  EXPECT_EQ(h_.R32(0x0) & 1, 1u);
  const uint64_t cbaser = h_.R64(0x80), b0 = h_.R64(0x100);
  ASSERT_TRUE(h_.W64(0x80, 0).ok());
  ASSERT_TRUE(h_.W64(0x100, 0).ok());
  EXPECT_EQ(h_.R64(0x80), cbaser);
  EXPECT_EQ(h_.R64(0x100), b0);
  EXPECT_NE(h_.R32(0x0) & its::kCtlrQuiescent, 0u);
}

// --- commands: effects -----------------------------------------------------

TEST_F(ItsTest, MaptiIntSetsPendingOnCollectionTarget) {
  h_.Enable();
  MapBasic();
  h_.Send({cmd::Mapti(1, 3, kLpi + 5, 0), cmd::Int(1, 3)});
  EXPECT_EQ(h_.LastError(), 0u);
  EXPECT_TRUE(sink_.IsPending(1, kLpi + 5));
  EXPECT_FALSE(sink_.IsPending(0, kLpi + 5));
  h_.Send(cmd::Clear(1, 3));
  EXPECT_FALSE(sink_.IsPending(1, kLpi + 5));
  ASSERT_EQ(its().Translate(1, 3), (Translation{1, kLpi + 5}));
}

TEST_F(ItsTest, MapiUsesEventIdAsIntid) {
  h_.Enable();
  h_.Send({cmd::Mapd(2, 14, 0x300000, true), cmd::Mapc(0, 3, true),
           cmd::Mapi(2, kLpi + 9, 0), cmd::Int(2, kLpi + 9)});
  EXPECT_EQ(h_.LastError(), 0u);
  EXPECT_TRUE(sink_.IsPending(3, kLpi + 9));
}

TEST_F(ItsTest, IteMayPointAtUnmappedCollection) {
  h_.Enable();
  h_.Send(
      {cmd::Mapd(1, 5, ItsHarness::Itt(1), true), cmd::Mapti(1, 0, kLpi, 7)});
  EXPECT_EQ(h_.LastError(), 0u);
  EXPECT_EQ(its().InjectMsi(1, 0), Error::kIntUnmappedInterrupt);
  h_.Send(cmd::Int(1, 0));
  EXPECT_EQ(h_.LastError(), ErrorCode(Error::kIntUnmappedInterrupt));
  h_.Send(cmd::Mapc(7, 2, true));
  EXPECT_EQ(its().InjectMsi(1, 0), Error::kNone);
  EXPECT_TRUE(sink_.IsPending(2, kLpi));
}

TEST_F(ItsTest, MoviMovesPendingAndRetargets) {
  h_.Enable();
  MapBasic();
  h_.Send(
      {cmd::Mapc(1, 3, true), cmd::Mapti(1, 0, kLpi + 1, 0), cmd::Int(1, 0)});
  ASSERT_TRUE(sink_.IsPending(1, kLpi + 1));
  ASSERT_EQ(its().InjectMsi(1, 0), Error::kNone);  // fills the cache
  h_.Send(cmd::Movi(1, 0, 1));
  EXPECT_EQ(h_.LastError(), 0u);
  EXPECT_FALSE(sink_.IsPending(1, kLpi + 1));
  EXPECT_TRUE(sink_.IsPending(3, kLpi + 1));
  sink_.ClearPending(3, kLpi + 1);
  ASSERT_EQ(its().InjectMsi(1, 0), Error::kNone);  // not a stale cache hit
  EXPECT_TRUE(sink_.IsPending(3, kLpi + 1));
  EXPECT_FALSE(sink_.IsPending(1, kLpi + 1));
}

TEST_F(ItsTest, DiscardClearsPendingAndUnmaps) {
  h_.Enable();
  MapBasic();
  h_.Send({cmd::Mapti(1, 4, kLpi + 2, 0), cmd::Int(1, 4)});
  ASSERT_EQ(its().InjectMsi(1, 4), Error::kNone);
  ASSERT_TRUE(sink_.IsPending(1, kLpi + 2));
  h_.Send(cmd::Discard(1, 4));
  EXPECT_EQ(h_.LastError(), 0u);
  EXPECT_FALSE(sink_.IsPending(1, kLpi + 2));
  EXPECT_EQ(its().InjectMsi(1, 4), Error::kIntUnmappedInterrupt);
  EXPECT_FALSE(sink_.IsPending(1, kLpi + 2));
  EXPECT_EQ(its().Translate(1, 4), std::nullopt);
}

TEST_F(ItsTest, RemapdDropsItesAndUnmapDisablesTranslation) {
  h_.Enable();
  MapBasic();
  h_.Send({cmd::Mapti(1, 0, kLpi, 0), cmd::Mapti(1, 1, kLpi + 1, 0),
           cmd::Int(1, 1)});
  ASSERT_EQ(its().InjectMsi(1, 0), Error::kNone);
  h_.Send(cmd::Mapd(1, 6, ItsHarness::Itt(1), true));  // re-MAPD
  EXPECT_EQ(its().InjectMsi(1, 0), Error::kIntUnmappedInterrupt);
  EXPECT_FALSE(sink_.IsPending(1, kLpi + 1));
  h_.Send(cmd::Mapti(1, 40, kLpi + 3, 0));  // new size: 6 bits
  EXPECT_EQ(h_.LastError(), 0u);
  h_.Send(cmd::Mapd(1, 0, 0, false));  // V=0
  EXPECT_EQ(its().InjectMsi(1, 40), Error::kIntUnmappedInterrupt);
  h_.Send(cmd::Mapti(1, 0, kLpi, 0));
  EXPECT_EQ(h_.LastError(), ErrorCode(Error::kMaptiUnmappedDevice));
}

TEST_F(ItsTest, MapcRemapMovesPendingAndUnmapStopsDelivery) {
  h_.Enable();
  MapBasic();
  h_.Send({cmd::Mapti(1, 0, kLpi, 0), cmd::Int(1, 0)});
  ASSERT_TRUE(sink_.IsPending(1, kLpi));
  h_.Send(cmd::Mapc(0, 2, true));
  EXPECT_TRUE(sink_.IsPending(2, kLpi));
  EXPECT_FALSE(sink_.IsPending(1, kLpi));
  EXPECT_EQ(its().Translate(1, 0), (Translation{2, kLpi}));
  h_.Send(cmd::Mapc(0, 0, false));
  EXPECT_EQ(its().InjectMsi(1, 0), Error::kIntUnmappedInterrupt);
}

TEST_F(ItsTest, InvReadsConfigOutsideAndApplies) {
  h_.Enable();
  MapBasic();
  h_.Send(cmd::Mapti(1, 0, kLpi + 7, 0));
  sink_.SetConfig(kLpi + 7, 0xa1);
  h_.Send(cmd::Inv(1, 0));
  EXPECT_EQ(h_.LastError(), 0u);
  EXPECT_EQ(sink_.Applied(kLpi + 7), 0xa1);
  h_.Send(cmd::Invall(0));
  EXPECT_EQ(sink_.invalidate_all_calls.load(), 1u);
  EXPECT_EQ(sink_.last_invalidate_all_vcpu.load(), 1u);
}

TEST_F(ItsTest, MovallMovesPendingOfItsLpis) {
  h_.Enable();
  MapBasic();
  h_.Send({cmd::Mapti(1, 0, kLpi, 0), cmd::Mapti(1, 1, kLpi + 1, 0),
           cmd::Int(1, 0), cmd::Int(1, 1), cmd::Movall(1, 2)});
  EXPECT_EQ(h_.LastError(), 0u);
  EXPECT_TRUE(sink_.IsPending(2, kLpi));
  EXPECT_TRUE(sink_.IsPending(2, kLpi + 1));
  EXPECT_EQ(sink_.PendingCount(1), 0);
}

TEST_F(ItsTest, MovallMovesPendingOfLpisTheItsDoesNotMap) {
  // §5.3 MOVALL: every pending LPI of RDbase1 moves, not only those this ITS
  // translates (e.g. loaded from the pending table when LPIs were enabled).
  h_.Enable();
  MapBasic();
  ASSERT_TRUE(sink_.SetPending(1, kLpi + 100));
  h_.Send({cmd::Movall(1, 2)});
  EXPECT_EQ(h_.LastError(), 0u);
  EXPECT_TRUE(sink_.IsPending(2, kLpi + 100));
  EXPECT_EQ(sink_.PendingCount(1), 0);
}

// The LpiSink default MoveAllPending (for sinks without a bitmap walk) moves
// the same set as an override.
TEST(LpiSinkDefaultTest, MoveAllPendingWalksTheLpiRange) {
  class PerBitSink : public FakeLpiSink {
   public:
    using FakeLpiSink::FakeLpiSink;
    void MoveAllPending(uint32_t from, uint32_t to) override {
      LpiSink::MoveAllPending(from, to);  // the default
    }
  };
  PerBitSink sink(3, 14);
  ASSERT_TRUE(sink.SetPending(0, kLpi));
  ASSERT_TRUE(sink.SetPending(0, (1u << 14) - 1));
  ASSERT_TRUE(sink.SetPending(2, kLpi + 5));
  sink.MoveAllPending(0, 1);
  EXPECT_EQ(sink.PendingCount(0), 0);
  EXPECT_TRUE(sink.IsPending(1, kLpi));
  EXPECT_TRUE(sink.IsPending(1, (1u << 14) - 1));
  EXPECT_EQ(sink.PendingCount(1), 2);
  EXPECT_EQ(sink.PendingCount(2), 1);
  sink.MoveAllPending(1, 3);  // out of range: no-op
  EXPECT_EQ(sink.PendingCount(1), 2);
}

TEST_F(ItsTest, IntOnDisabledLpiLatchesPending) {
  h_.Enable();
  MapBasic();
  sink_.SetConfig(kLpi, 0xa0);  // priority, disabled
  h_.Send({cmd::Mapti(1, 0, kLpi, 0), cmd::Inv(1, 0), cmd::Int(1, 0),
           cmd::Int(1, 0)});
  EXPECT_TRUE(sink_.IsPending(1, kLpi));
  EXPECT_EQ(h_.LastError(), 0u);
}

// --- commands: error codes -------------------------------------------------

struct ErrorCase {
  const char* name;
  std::vector<its::cmd::Raw> cmds;
  Error expected;
};

// KVM's vgic_its_check_id: a DeviceID whose flat device-table entry is not
// in guest RAM is out of range, so MAPD fails instead of mapping a device
// whose DTE could never be saved.
TEST(ItsDeviceTableTest, MapdWithDeviceTableOutsideRamIsOutOfRange) {
  FakeLpiSink sink(4, 16);
  ItsHarness h(&sink);
  const uint64_t valid = uint64_t{1} << 63;
  // Flat BASER0 one 64 KiB page beyond the end of the harness's RAM.
  ASSERT_TRUE(h.W64(0x100, valid | ItsHarness::kRamSize).ok());
  ASSERT_TRUE(h.W64(0x108, valid | ItsHarness::kCollTable).ok());
  ASSERT_TRUE(h.W64(0x80, valid | ItsHarness::kCmdq).ok());
  ASSERT_TRUE(h.W32(0x0, 1).ok());
  h.Send(cmd::Mapd(1, 5, ItsHarness::Itt(1), true));
  EXPECT_EQ(h.LastError(), ErrorCode(Error::kMapdDeviceOor));
  h.Send({cmd::Mapc(0, 1, true), cmd::Mapti(1, 0, kLpi, 0)});
  EXPECT_EQ(h.LastError(), ErrorCode(Error::kMaptiUnmappedDevice));
}

TEST_F(ItsTest, EveryErrorCode) {
  // Device table: 1 flat 64 KiB page = 8192 DTEs; collection table 8192.
  const std::vector<ErrorCase> cases = {
      {"MAPD DeviceID beyond table",
       {cmd::Mapd(8192, 5, 0x0, true)},
       Error::kMapdDeviceOor},
      {"MAPD ITT size", {cmd::Mapd(1, 17, 0x0, true)}, Error::kMapdIttSizeOor},
      {"MAPC ICID", {cmd::Mapc(8192, 0, true)}, Error::kMapcCollectionOor},
      {"MAPC RDbase", {cmd::Mapc(0, 4, true)}, Error::kMapcProcnumOor},
      {"MAPTI unmapped device",
       {cmd::Mapti(9, 0, kLpi, 0)},
       Error::kMaptiUnmappedDevice},
      {"MAPTI EventID", {cmd::Mapti(1, 32, kLpi, 0)}, Error::kMaptiIdOor},
      {"MAPTI pINTID low",
       {cmd::Mapti(1, 0, 8191, 0)},
       Error::kMaptiPhysicalIdOor},
      {"MAPTI pINTID high",
       {cmd::Mapti(1, 0, 1u << 16, 0)},
       Error::kMaptiPhysicalIdOor},
      {"MAPTI ICID",
       {cmd::Mapti(1, 0, kLpi, 8192)},
       Error::kMaptiCollectionOor},
      {"MAPI unmapped device",
       {cmd::Mapi(9, kLpi, 0)},
       Error::kMapiUnmappedDevice},
      {"MAPI EventID", {cmd::Mapi(1, 32, 0)}, Error::kMapiIdOor},
      {"MAPI pINTID", {cmd::Mapi(1, 3, 0)}, Error::kMapiPhysicalIdOor},
      {"MOVI unmapped", {cmd::Movi(1, 9, 0)}, Error::kMoviUnmappedInterrupt},
      {"MOVI unmapped device",
       {cmd::Movi(9, 0, 0)},
       Error::kMoviUnmappedInterrupt},
      {"MOVI to unmapped collection",
       {cmd::Movi(1, 0, 5)},
       Error::kMoviUnmappedCollection},
      {"MOVI from unmapped collection",
       {cmd::Mapti(1, 2, kLpi + 2, 6), cmd::Movi(1, 2, 0)},
       Error::kMoviUnmappedCollection},
      {"INT unmapped", {cmd::Int(1, 9)}, Error::kIntUnmappedInterrupt},
      {"CLEAR unmapped", {cmd::Clear(1, 9)}, Error::kClearUnmappedInterrupt},
      {"DISCARD unmapped",
       {cmd::Discard(1, 9)},
       Error::kDiscardUnmappedInterrupt},
      {"INV unmapped", {cmd::Inv(1, 9)}, Error::kInvUnmappedInterrupt},
      {"INV unmapped collection",
       {cmd::Mapti(1, 3, kLpi + 3, 6), cmd::Inv(1, 3)},
       Error::kInvUnmappedCollection},
      {"INVALL unmapped", {cmd::Invall(5)}, Error::kInvallUnmappedCollection},
      {"INVALL ICID OOR",
       {cmd::Invall(9000)},
       Error::kInvallUnmappedCollection},
      {"MOVALL RDbase1", {cmd::Movall(4, 0)}, Error::kMovallProcnumOor},
      {"MOVALL RDbase2", {cmd::Movall(0, 4)}, Error::kMovallProcnumOor},
      {"SYNC RDbase", {cmd::Sync(4)}, Error::kSyncProcnumOor},
      {"unknown opcode", {{0x02, 0, 0, 0}}, Error::kUnknownCommand},
      {"GICv4 VMAPP", {{0x29, 0, 0, 0}}, Error::kUnknownCommand},
  };
  for (const ErrorCase& c : cases) {
    FakeLpiSink sink(4, 16);
    ItsHarness h(&sink);
    h.Enable();
    h.Send({cmd::Mapd(1, 5, ItsHarness::Itt(1), true), cmd::Mapc(0, 1, true),
            cmd::Mapti(1, 0, kLpi, 0)});
    ASSERT_EQ(h.LastError(), 0u) << c.name;
    h.Send(c.cmds);
    EXPECT_EQ(h.LastError(), ErrorCode(c.expected)) << c.name;
    const ItsErrorStats st = h.its().GetErrorStats();
    EXPECT_EQ(st.total, 1u) << c.name;
    EXPECT_EQ(st.per_opcode[c.cmds.back()[0] & 0xff], 1u) << c.name;
    // Processing continued: the queue is drained and later commands work.
    EXPECT_EQ(h.R32(0x90), h.R32(0x88)) << c.name;
    h.Send(cmd::Int(1, 0));
    EXPECT_TRUE(sink.IsPending(1, kLpi)) << c.name;
  }
}

TEST_F(ItsTest, ValidCommandsProduceNoError) {
  h_.Enable();
  MapBasic();
  h_.Send({cmd::Sync(3), cmd::Mapti(1, 0, kLpi, 0),
           cmd::Mapti(1, 0, kLpi + 1, 0), cmd::Movall(1, 1), cmd::Invall(0),
           cmd::Inv(1, 0)});
  EXPECT_EQ(its().GetErrorStats().total, 0u);
  // The duplicate MAPTI kept the first mapping (KVM behaviour).
  EXPECT_EQ(its().Translate(1, 0), (Translation{1, kLpi}));
}

// --- queue -----------------------------------------------------------------

TEST_F(ItsTest, QueueWrapsAround) {
  h_.Enable();
  MapBasic();
  h_.Send(cmd::Mapti(1, 0, kLpi, 0));
  // A 4 KiB queue holds 128 commands; send 300 INT/CLEAR pairs in batches.
  int processed = 0;
  for (int batch = 0; batch < 10; ++batch) {
    std::vector<its::cmd::Raw> cmds;
    for (int i = 0; i < 30; ++i)
      cmds.push_back(i % 2 ? cmd::Clear(1, 0) : cmd::Int(1, 0));
    cmds.push_back(cmd::Int(1, 0));
    h_.Send(cmds);
    processed += cmds.size();
    EXPECT_EQ(h_.R64(0x90), h_.cwriter());
    EXPECT_TRUE(sink_.IsPending(1, kLpi));
    sink_.ClearPending(1, kLpi);
  }
  EXPECT_GT(processed, 128);
  EXPECT_LT(h_.cwriter(), 4096u);
  EXPECT_EQ(its().GetErrorStats().total, 0u);
}

TEST_F(ItsTest, CwriterBeyondQueueIsIgnored) {
  h_.Enable();
  const auto c = cmd::Mapc(0, 1, true);
  ASSERT_TRUE(h_.mem().Write(ItsHarness::kCmdq, c.data(), 32).ok());
  ASSERT_TRUE(h_.W64(0x88, 4096).ok());  // queue is 4 KiB
  EXPECT_EQ(h_.R64(0x88), 0u);
  EXPECT_EQ(h_.R64(0x90), 0u);
  ASSERT_TRUE(h_.W64(0x88, 32).ok());
  EXPECT_EQ(h_.R64(0x90), 32u);
}

TEST(ItsQueueTest, MemoryFaultStallsAndCbaserRecovers) {
  FakeLpiSink sink(2, 16);
  // RAM with a hole: [0, 1 MiB) and [2 MiB, 3 MiB).
  auto mem =
      std::move(hv::GuestMemory::Create({{0, 0x100000}, {0x200000, 0x100000}}))
          .value();
  Its its(&sink, mem.get());
  auto w64 = [&](uint64_t off, uint64_t v) {
    ASSERT_TRUE(its.Write({}, off, 8, v).ok());
  };
  auto r64 = [&](uint64_t off) {
    uint64_t v = 0;
    EXPECT_TRUE(its.Read({}, off, 8, &v).ok());
    return v;
  };
  const uint64_t valid = uint64_t{1} << 63;
  w64(0x100, valid | 0x20000);
  w64(0x108, valid | 0x30000);
  // Queue of 2 pages at 1 MiB - 4 KiB: the second page is in the hole.
  w64(0x80, valid | (0x100000 - 0x1000) | 1);
  ASSERT_TRUE(its.Write({}, 0, 4, 1).ok());
  const auto c = cmd::Mapc(0, 1, true);
  for (uint64_t off = 0; off < 0x1000; off += 32) {
    ASSERT_TRUE(mem->Write(0x100000 - 0x1000 + off, c.data(), 32).ok());
  }
  w64(0x88, 0x1000 + 64);
  EXPECT_EQ(r64(0x90), 0x1000u | its::kCreadrStalled);
  uint64_t ctlr = 0;
  ASSERT_TRUE(its.Read({}, 0, 4, &ctlr).ok());
  EXPECT_EQ(ctlr & its::kCtlrQuiescent, 0u);
  // Retry re-reads the faulting command: still stalled.
  w64(0x88, (0x1000 + 64) | its::kCwriterRetry);
  EXPECT_EQ(r64(0x90), 0x1000u | its::kCreadrStalled);
  // Recovery: disable, move the queue into RAM, re-enable.
  ASSERT_TRUE(its.Write({}, 0, 4, 0).ok());
  w64(0x80, valid | 0x40000);
  EXPECT_EQ(r64(0x90), 0u);
  ASSERT_TRUE(its.Write({}, 0, 4, 1).ok());
  ASSERT_TRUE(mem->Write(0x40000, c.data(), 32).ok());
  w64(0x88, 32);
  EXPECT_EQ(r64(0x90), 32u);
}

TEST(ItsQueueTest, StallOnErrorOptionAndRetry) {
  FakeLpiSink sink(2, 16);
  ItsHarness h(&sink, ItsOptions{.stall_on_error = true});
  h.Enable();
  h.Send({cmd::Mapc(0, 1, true), cmd::Int(5, 5), cmd::Mapc(1, 1, true)});
  // Stalled at the failing INT (second command).
  EXPECT_EQ(h.R64(0x90), 32u | its::kCreadrStalled);
  EXPECT_EQ(h.LastError(), ErrorCode(Error::kIntUnmappedInterrupt));
  // A CWRITER write without Retry does not restart.
  ASSERT_TRUE(h.W64(0x88, 96).ok());
  EXPECT_EQ(h.R64(0x90), 32u | its::kCreadrStalled);
  // Fix the command in memory (SYNC) and retry.
  const auto sync = cmd::Sync(0);
  ASSERT_TRUE(h.mem().Write(ItsHarness::kCmdq + 32, sync.data(), 32).ok());
  ASSERT_TRUE(h.W64(0x88, 96 | its::kCwriterRetry).ok());
  EXPECT_EQ(h.R64(0x90), 96u);
  EXPECT_EQ(h.its().GetErrorStats().total, 1u);
}

TEST_F(ItsTest, CommandsWaitWhileDisabled) {
  ASSERT_TRUE(h_.W64(0x100, uint64_t{1} << 63 | ItsHarness::kDevTable).ok());
  ASSERT_TRUE(h_.W64(0x108, uint64_t{1} << 63 | ItsHarness::kCollTable).ok());
  ASSERT_TRUE(h_.W64(0x80, uint64_t{1} << 63 | ItsHarness::kCmdq).ok());
  h_.Send(cmd::Mapc(0, 1, true));
  EXPECT_EQ(h_.R64(0x90), 0u);
  ASSERT_TRUE(h_.W32(0x0, 1).ok());
  EXPECT_EQ(h_.R64(0x90), 32u);
}

// --- MSI path --------------------------------------------------------------

TEST_F(ItsTest, TranslaterUsesRequesterIdAndCache) {
  h_.Enable();
  MapBasic(/*d=*/0x42);
  h_.Send(cmd::Mapti(0x42, 7, kLpi + 11, 0));
  hv::MmioContext dev{hv::MmioContext::kNoVcpu, 0x42};
  ASSERT_TRUE(its().Write(dev, 0x10040, 4, 7).ok());
  EXPECT_TRUE(sink_.IsPending(1, kLpi + 11));
  sink_.ClearPending(1, kLpi + 11);
  ASSERT_TRUE(its().Write(dev, 0x10040, 2, 7).ok());
  EXPECT_TRUE(sink_.IsPending(1, kLpi + 11));
  EXPECT_EQ(its().cache_misses(), 1u);
  EXPECT_EQ(its().cache_hits(), 1u);
  EXPECT_FALSE(its().Write(dev, 0x10040, 8, 7).ok());
  // Another requester ID does not translate.
  sink_.ClearPending(1, kLpi + 11);
  ASSERT_TRUE(
      its().Write({hv::MmioContext::kNoVcpu, 0x43}, 0x10040, 4, 7).ok());
  EXPECT_EQ(sink_.PendingCount(1), 0);
  uint64_t v = 1;
  ASSERT_TRUE(its().Read({}, 0x10040, 4, &v).ok());
  EXPECT_EQ(v, 0u);
}

TEST_F(ItsTest, DisableFlushesAndRejectsMsis) {
  h_.Enable();
  MapBasic();
  h_.Send(cmd::Mapti(1, 0, kLpi, 0));
  ASSERT_EQ(its().InjectMsi(1, 0), Error::kNone);
  ASSERT_TRUE(h_.W32(0, 0).ok());
  EXPECT_EQ(its().InjectMsi(1, 0), Error::kMsiItsDisabled);
  EXPECT_EQ(its().Translate(1, 0), std::nullopt);
  ASSERT_TRUE(h_.W32(0, 1).ok());
  EXPECT_EQ(its().Translate(1, 0), (Translation{1, kLpi}));
}

// --- observer --------------------------------------------------------------

class RecordingObserver : public ItsObserver {
 public:
  explicit RecordingObserver(Its* its) : its_(its) {}
  void OnTranslationChange(const TranslationChange& c) override {
    changes.push_back(c);
    // Called before the change takes effect: the ITS still translates the
    // old way.
    seen_during.push_back(its_->Translate(c.device_id, c.event_id));
  }
  Its* its_;
  std::vector<TranslationChange> changes;
  std::vector<std::optional<Translation>> seen_during;
};

TEST_F(ItsTest, ObserverHearsBeforeEveryChange) {
  h_.Enable();
  MapBasic();
  RecordingObserver obs(&its());
  its().SetObserver(&obs);
  its().Watch(1, 0);
  h_.Send({cmd::Mapc(1, 3, true), cmd::Mapti(1, 0, kLpi, 0)});
  ASSERT_EQ(obs.changes.size(), 1u);
  EXPECT_EQ(obs.changes[0].cause, uint8_t{0x0a});
  EXPECT_EQ(obs.changes[0].before, std::nullopt);
  EXPECT_EQ(obs.changes[0].after, (Translation{1, kLpi}));
  EXPECT_EQ(obs.seen_during[0], std::nullopt);

  h_.Send(cmd::Movi(1, 0, 1));  // MOVI
  ASSERT_EQ(obs.changes.size(), 2u);
  EXPECT_EQ(obs.changes[1].after, (Translation{3, kLpi}));
  EXPECT_EQ(obs.seen_during[1], (Translation{1, kLpi}));

  h_.Send(cmd::Mapc(1, 2, true));  // MAPC retarget
  ASSERT_EQ(obs.changes.size(), 3u);
  EXPECT_EQ(obs.changes[2].after, (Translation{2, kLpi}));
  EXPECT_EQ(obs.seen_during[2], (Translation{3, kLpi}));

  h_.Send(cmd::Movall(2, 0));  // MOVALL: told, translation unchanged
  ASSERT_EQ(obs.changes.size(), 4u);
  EXPECT_EQ(obs.changes[3].cause, uint8_t{0x0e});

  sink_.SetConfig(kLpi, 0xa0);  // disabled
  h_.Send(cmd::Inv(1, 0));
  ASSERT_EQ(obs.changes.size(), 5u);
  EXPECT_EQ(obs.changes[4].after, std::nullopt);
  h_.Send(cmd::Invall(1));
  ASSERT_EQ(obs.changes.size(), 6u);
  EXPECT_EQ(obs.changes[5].cause, uint8_t{0x0d});

  h_.Send(cmd::Discard(1, 0));  // DISCARD
  ASSERT_EQ(obs.changes.size(), 7u);
  EXPECT_EQ(obs.changes[6].after, std::nullopt);
  EXPECT_EQ(obs.seen_during[6], (Translation{2, kLpi}));

  h_.Send({cmd::Mapti(1, 0, kLpi, 1), cmd::Mapd(1, 0, 0, false)});  // MAPD
  ASSERT_EQ(obs.changes.size(), 9u);
  EXPECT_EQ(obs.changes[8].cause, uint8_t{0x08});
  EXPECT_EQ(obs.changes[8].after, std::nullopt);

  // Unwatched pairs and failed commands produce nothing.
  h_.Send({cmd::Mapd(2, 4, ItsHarness::Itt(2), true),
           cmd::Mapti(2, 0, kLpi + 1, 1), cmd::Discard(7, 7)});
  EXPECT_EQ(obs.changes.size(), 9u);
  its().Watch(2, 0);
  ASSERT_TRUE(h_.W32(0, 0).ok());  // ITS disable revokes
  ASSERT_EQ(obs.changes.size(), 10u);
  EXPECT_EQ(obs.changes[9].cause, 0);
  EXPECT_EQ(obs.changes[9].after, std::nullopt);
  its().SetObserver(nullptr);
}

}  // namespace
}  // namespace vgic
