#include "tools/vgic_replay/replay.h"

#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace vgic::replay {
namespace {

struct Result {
  int status;
  std::string out;
};

Result RunText(const std::string& script) {
  std::istringstream in(script);
  std::ostringstream out;
  const int status = Run(in, out);
  return {status, out.str()};
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The kvm-unit-tests ITS suites as replay scripts; expected output checked in
// next to each script (what the corresponding kvm-unit-tests test asserts).
class ScenarioTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ScenarioTest, MatchesExpectedOutput) {
  const std::string base =
      std::string("tools/vgic_replay/testdata/") + GetParam();
  const Result r = RunText(ReadFile(base + ".script"));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, ReadFile(base + ".expected"));
  // Deterministic: a second run prints the same.
  EXPECT_EQ(RunText(ReadFile(base + ".script")).out, r.out);
}

INSTANTIATE_TEST_SUITE_P(Its, ScenarioTest,
                         ::testing::Values("its-introspection", "its-trigger",
                                           "its-migration",
                                           "its-migrate-unmapped-collection",
                                           "its-pending-migration",
                                           "guest-style", "linux-probe",
                                           "its-stall-recovery"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

TEST(ReplayFormatTest, NumbersCommentsAndOutputFormat) {
  const Result r = RunText(
      "# comment line\n"
      "\n"
      "vcpus 2   # trailing comment\n"
      "mem32 0x1000 4096\n"
      "rd32 gits 4\n"
      "rd64 gits 0X8\n"
      "rd32 gicr1 0x8\n"
      "ack 1\n"
      "its_error\n");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out,
            "rd gits 0x4 = 0x4800043b\n"
            "rd gits 0x8 = 0x1f0001ef71\n"
            "rd gicr1 0x8 = 0x111\n"  // GICR_TYPER: PLPIS, Last, Processor 1
            "ack 1 1023\n"
            "its_error 0\n");
}

TEST(ReplayFormatTest, RamStatementMovesGuestMemory) {
  EXPECT_EQ(
      RunText("vcpus 1\nram 0x40000000 0x100000\nmem64 0x40000000 1\n").status,
      0);
  const Result r =
      RunText("vcpus 1\nram 0x40000000 0x100000\nmem64 0x1000 1\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "error 3: GPA outside guest RAM\n");
}

TEST(ReplayFormatTest, LargeGuestRamIsSparse) {
  // Guests recorded with several GiB of RAM above 1 GiB replay as-is: the
  // memory is a sparse memfd, only touched pages cost anything.
  const Result r = RunText(
      "vcpus 1\nram 0x40000000 0x200000000\nmem64 0x23ffffff8 1\n"
      "mem8 0x240000000 1\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "error 4: GPA outside guest RAM\n");
  // Beyond 64 GiB or above the 52-bit physical address space: rejected.
  EXPECT_EQ(RunText("vcpus 1\nram 0 0x1000000000\n").status, 0);
  EXPECT_EQ(RunText("vcpus 1\nram 0 0x1000001000\n").out,
            "error 2: ram must be page aligned, non-empty, at most 64 GiB, "
            "below 2^52\n");
  EXPECT_EQ(RunText("vcpus 1\nram 0xfffffffff000 0x2000\n").status, 0);
  EXPECT_EQ(RunText("vcpus 1\nram 0xffffffffff000 0x2000\n").status, 2);
}

TEST(ReplayFormatTest, RejectedAccessReadsAllOnes) {
  // A 32-bit read of a 64-bit-only pair is fine; an unaligned one is a script
  // error, a width the device rejects reads as all-ones like the bus.
  const Result r = RunText("vcpus 1\nrd64 gits 0x0\n");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "rd gits 0x0 = 0xffffffffffffffff\n");
}

TEST(ReplayFormatTest, MalformedLinesExitTwo) {
  const struct {
    const char* script;
    const char* out;
  } cases[] = {
      {"rd32 gits 0\n", "error 1: the first statement must be 'vcpus N'\n"},
      {"vcpus 0\n", "error 1: vcpus must be 1..512\n"},
      {"vcpus x\n", "error 1: vcpus must be 1..512\n"},
      {"vcpus 1\nfrob\n", "error 2: unknown statement 'frob'\n"},
      {"vcpus 1\nrd32 gits\n", "error 2: usage: rd32 FRAME OFFSET\n"},
      {"vcpus 1\nwr32 gits 0 1 2\n",
       "error 2: usage: wr32 FRAME OFFSET VALUE\n"},
      {"vcpus 1\nrd32 gicr1 0\n", "error 2: no redistributor 'gicr1'\n"},
      {"vcpus 1\nrd32 gicx 0\n", "error 2: unknown frame 'gicx'\n"},
      {"vcpus 1\nrd32 gits 0x20000\n", "error 2: offset outside the frame\n"},
      {"vcpus 1\nrd32 gits 0x2\n", "error 2: unaligned access\n"},
      {"vcpus 1\nwr32 gits 0 0x100000000\n", "error 2: value too wide\n"},
      {"vcpus 1\nmem8 0 0x100\n", "error 2: value too wide\n"},
      {"vcpus 1\nmem8 0 12z\n", "error 2: bad number\n"},
      {"vcpus 1\nmem8 0 0x\n", "error 2: bad number\n"},
      {"vcpus 1\nack 1\n", "error 2: no such vCPU\n"},
      {"vcpus 1\neoi 0\n", "error 2: usage: eoi CPU INTID\n"},
      {"vcpus 1\nrd32 gits 0\nram 0 4096\n",
       "rd gits 0x0 = 0x80000000\n"
       "error 3: 'ram' must be the second statement\n"},
      {"vcpus 1\nram 1 4096\n",
       "error 2: ram must be page aligned, non-empty, at most 64 GiB, "
       "below 2^52\n"},
      {"vcpus 1\nvcpus 2\n", "error 2: 'vcpus' may appear only once\n"},
      {"vcpus 1\nmsi 1\n", "error 2: usage: msi DEVICEID EVENTID\n"},
      {"vcpus 1\nsave 1\n", "error 2: usage: save\n"},
  };
  for (const auto& c : cases) {
    const Result r = RunText(c.script);
    EXPECT_EQ(r.status, 2) << c.script;
    EXPECT_EQ(r.out, c.out) << c.script;
  }
}

TEST(ReplayFormatTest, OutputBeforeAnErrorIsKept) {
  const Result r = RunText("vcpus 1\nits_error\nnope\nits_error\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "its_error 0\nerror 3: unknown statement 'nope'\n");
}

}  // namespace
}  // namespace vgic::replay
