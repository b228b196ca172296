// Save/restore of the ITS tables in KVM's REV0 layout.
#include <memory>

#include "gtest/gtest.h"
#include "vgic/fake_lpi_sink.h"
#include "vgic/its.h"
#include "vgic/its_commands.h"
#include "vgic/its_harness.h"

namespace vgic {
namespace {

namespace cmd = its::cmd;
constexpr uint32_t kLpi = 8192;

uint64_t Entry(ItsHarness& h, uint64_t gpa) {
  return h.mem().ReadObj<uint64_t>(gpa).value();
}

// Replaces the harness ITS by a fresh one with the same registers and
// restores the tables, as a migration target does.
absl::Status Migrate(ItsHarness& h, LpiSink* sink) {
  const ItsRegisters regs = h.its().GetRegisters();
  h.its_ptr() = std::make_unique<Its>(sink, &h.mem());
  if (absl::Status s = h.its().SetRegisters(regs); !s.ok()) return s;
  return h.its().RestoreTables();
}

class ItsTablesTest : public ::testing::TestWithParam<bool> {};

TEST_P(ItsTablesTest, SaveWritesRev0AndRestoreBehavesIdentically) {
  const bool indirect = GetParam();
  FakeLpiSink sink(4, 16);
  ItsHarness h(&sink);
  h.Enable(indirect);
  h.Send({cmd::Mapd(3, 5, ItsHarness::Itt(3), true),
          cmd::Mapd(700, 2, ItsHarness::Itt(700), true), cmd::Mapc(0, 2, true),
          cmd::Mapc(5, 1, true), cmd::Mapti(3, 1, kLpi + 1, 0),
          cmd::Mapti(3, 20, kLpi + 20, 5),
          cmd::Mapti(700, 3, kLpi + 99, 9),  // collection 9 unmapped
          cmd::Int(3, 20)});
  ASSERT_EQ(h.LastError(), 0u);
  ASSERT_TRUE(h.its().SaveTables().ok());

  // REV0 layout checks.
  const uint64_t dte_base =
      indirect ? ItsHarness::kL2Page : ItsHarness::kDevTable;
  const uint64_t dte3 = Entry(h, dte_base + 3 * 8);
  EXPECT_EQ(dte3 >> 63, 1u);
  EXPECT_EQ((dte3 >> 49) & 0x3fff, 697u);  // next DeviceID offset
  EXPECT_EQ(((dte3 >> 5) & ((1ull << 44) - 1)) << 8, ItsHarness::Itt(3));
  EXPECT_EQ(dte3 & 0x1f, 4u);
  EXPECT_EQ((Entry(h, dte_base + 700 * 8) >> 49) & 0x3fff, 0u);  // last
  EXPECT_EQ(Entry(h, dte_base + 4 * 8), 0u);
  const uint64_t ite1 = Entry(h, ItsHarness::Itt(3) + 8);
  EXPECT_EQ(ite1 >> 48, 19u);
  EXPECT_EQ((ite1 >> 16) & 0xffffffff, kLpi + 1);
  EXPECT_EQ(ite1 & 0xffff, 0u);
  const uint64_t cte0 = Entry(h, ItsHarness::kCollTable);
  EXPECT_EQ(cte0, 1ull << 63 | 2ull << 16 | 0);
  EXPECT_EQ(Entry(h, ItsHarness::kCollTable + 8), 1ull << 63 | 1ull << 16 | 5);
  EXPECT_EQ(Entry(h, ItsHarness::kCollTable + 16), 0u);

  ASSERT_TRUE(Migrate(h, &sink).ok());
  EXPECT_EQ(h.its().Translate(3, 1), (Translation{2, kLpi + 1}));
  EXPECT_EQ(h.its().Translate(3, 20), (Translation{1, kLpi + 20}));
  EXPECT_EQ(h.its().Translate(700, 3), std::nullopt);
  EXPECT_TRUE(sink.IsPending(1, kLpi + 20));  // pending state kept
  // Commands continue from the restored CREADR/CWRITER.
  h.Send({cmd::Mapc(9, 3, true), cmd::Int(700, 3),
          cmd::Mapti(700, 2, kLpi + 5, 0)});
  EXPECT_EQ(h.LastError(), 0u);
  EXPECT_TRUE(sink.IsPending(3, kLpi + 99));
  EXPECT_EQ(h.its().Translate(700, 2), (Translation{2, kLpi + 5}));
  // Device 3 still has 5 EventID bits.
  h.Send(cmd::Mapti(3, 32, kLpi + 6, 0));
  EXPECT_EQ(h.LastError(), its::ErrorCode(its::Error::kMaptiIdOor));
  // Save again after restore round-trips.
  ASSERT_TRUE(h.its().SaveTables().ok());
  ASSERT_TRUE(Migrate(h, &sink).ok());
  EXPECT_EQ(h.its().Translate(700, 3), (Translation{3, kLpi + 99}));
}

INSTANTIATE_TEST_SUITE_P(FlatAndIndirect, ItsTablesTest, ::testing::Bool());

TEST(ItsTablesErrorTest, MalformedTablesAreRejectedAndStateKept) {
  struct Case {
    const char* name;
    uint64_t gpa;
    uint64_t value;
  };
  const uint64_t itt = ItsHarness::Itt(3);
  const Case cases[] = {
      {"ITE pINTID below 8192", itt, 100ull << 16},
      {"ITE pINTID beyond IDbits", itt, (1ull << 16) << 16},
      {"ITE ICID beyond table", itt, uint64_t{kLpi} << 16 | 9000},
      {"DTE size beyond IDbits", ItsHarness::kDevTable + 3 * 8,
       1ull << 63 | (itt >> 8) << 5 | 20},
      {"CTE RDbase", ItsHarness::kCollTable, 1ull << 63 | 9ull << 16 | 1},
      {"CTE ICID beyond table", ItsHarness::kCollTable, 1ull << 63 | 9000},
      {"CTE duplicate", ItsHarness::kCollTable + 8, 1ull << 63 | 1ull << 16},
      {"CTE reserved bits", ItsHarness::kCollTable, 1ull << 63 | 1ull << 60},
      {"DTE ITT outside RAM", ItsHarness::kDevTable + 3 * 8,
       1ull << 63 | (0x40000000ull >> 8) << 5 | 4},
  };
  for (const Case& c : cases) {
    FakeLpiSink sink(4, 16);
    ItsHarness h(&sink);
    h.Enable();
    h.Send({cmd::Mapd(3, 5, itt, true), cmd::Mapc(0, 2, true),
            cmd::Mapti(3, 0, kLpi, 0)});
    ASSERT_TRUE(h.its().SaveTables().ok());
    h.Send(cmd::Mapti(3, 1, kLpi + 1, 0));  // state beyond the saved tables
    ASSERT_TRUE(h.mem().WriteObj<uint64_t>(c.gpa, c.value).ok());
    EXPECT_FALSE(h.its().RestoreTables().ok()) << c.name;
    // Nothing of the partial restore remains; the live state is unchanged.
    EXPECT_EQ(h.its().Translate(3, 1), (Translation{2, kLpi + 1})) << c.name;
    EXPECT_EQ(h.its().Translate(3, 0), (Translation{2, kLpi})) << c.name;
  }
}

TEST(ItsTablesErrorTest, SaveNeedsTables) {
  FakeLpiSink sink(2, 16);
  ItsHarness h(&sink);
  h.Enable(/*indirect=*/true);
  // DeviceID 9000 lies in level-1 entry 1, which is not valid: MAPD fails.
  h.Send(cmd::Mapd(9000, 4, ItsHarness::Itt(1), true));
  EXPECT_EQ(h.LastError(), its::ErrorCode(its::Error::kMapdDeviceOor));
  // Validate a level-1 entry and the same MAPD succeeds.
  ASSERT_TRUE(
      h.mem()
          .WriteObj<uint64_t>(ItsHarness::kDevTable + 8, 1ull << 63 | 0x130000)
          .ok());
  h.Send(cmd::Mapd(9000, 4, ItsHarness::Itt(1), true));
  EXPECT_EQ(h.its().GetErrorStats().total, 1u);
  ASSERT_TRUE(h.its().SaveTables().ok());
  EXPECT_EQ(Entry(h, 0x130000 + (9000 - 8192) * 8) >> 63, 1u);
  // Invalidating the level-1 entry makes the next save fail cleanly.
  ASSERT_TRUE(h.mem().WriteObj<uint64_t>(ItsHarness::kDevTable + 8, 0).ok());
  EXPECT_FALSE(h.its().SaveTables().ok());
}

}  // namespace
}  // namespace vgic
