#include "hv/loader/core_header.h"

#include <elf.h>

#include <cstring>

#include "gtest/gtest.h"

namespace hv::loader {
namespace {

X86VcpuState StateFor(uint32_t i) {
  X86VcpuState s{};
  uint64_t* words = reinterpret_cast<uint64_t*>(&s);
  // Distinct value in every 64-bit word except the selector block.
  for (size_t w = 0; w < 18; ++w) words[w] = (uint64_t{i} << 32) | (w + 1);
  s.cs = 0x10;
  s.ss = 0x18;
  s.ds = 0x18;
  s.es = 0x18;
  s.fs = 0;
  s.gs = 0x20 + i;
  s.fs_base = 0x7000 + i;
  s.gs_base = 0x8000 + i;
  s.cr0 = 0x80050033;
  s.cr2 = 0xdead0000 + i;
  s.cr3 = 0x1000 * (i + 1);
  s.cr4 = 0x20;
  s.efer = 0xd01;
  return s;
}

bool SameState(const X86VcpuState& a, const X86VcpuState& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

CoreDescription Sample() {
  CoreDescription core;
  core.preserved = {{0x0, 0xc0000}, {0x100000, 0x300000}};
  for (uint32_t i = 0; i < 3; ++i) core.vcpus.push_back({i, StateFor(i)});
  return core;
}

TEST(CoreHeaderTest, RoundTrip) {
  const uint64_t gpa = 0xfe000;
  const CoreDescription core = Sample();
  auto bytes = BuildCoreHeader(gpa, core);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->size(), CoreHeaderSize(2, 3));
  auto parsed = ParseCoreHeader(*bytes, gpa);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->preserved.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(parsed->preserved[i].base, core.preserved[i].base);
    EXPECT_EQ(parsed->preserved[i].size, core.preserved[i].size);
  }
  ASSERT_EQ(parsed->vcpus.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(parsed->vcpus[i].vcpu_id, i);
    EXPECT_TRUE(SameState(parsed->vcpus[i].state, core.vcpus[i].state)) << i;
  }
}

TEST(CoreHeaderTest, LayoutIsAnElfCoreWithPrstatusNotes) {
  const uint64_t gpa = 0x200000;
  auto bytes = BuildCoreHeader(gpa, Sample());
  ASSERT_TRUE(bytes.ok());
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes->data(), sizeof(eh));
  EXPECT_EQ(eh.e_type, ET_CORE);
  EXPECT_EQ(eh.e_machine, EM_X86_64);
  EXPECT_EQ(eh.e_phnum, 3);
  Elf64_Phdr note, load;
  std::memcpy(&note, bytes->data() + eh.e_phoff, sizeof(note));
  std::memcpy(&load, bytes->data() + eh.e_phoff + 2 * sizeof(Elf64_Phdr),
              sizeof(load));
  EXPECT_EQ(note.p_type, PT_NOTE);
  EXPECT_EQ(note.p_offset, gpa + sizeof(Elf64_Ehdr) + 3 * sizeof(Elf64_Phdr));
  EXPECT_EQ(load.p_type, PT_LOAD);
  EXPECT_EQ(load.p_offset, 0x100000u);
  EXPECT_EQ(load.p_paddr, 0x100000u);
  EXPECT_EQ(load.p_filesz, 0x300000u);
  // First note: "CORE", NT_PRSTATUS, an x86-64 elf_prstatus with pr_reg in
  // user_regs_struct order.
  const uint8_t* n = bytes->data() + (note.p_offset - gpa);
  Elf64_Nhdr nh;
  std::memcpy(&nh, n, sizeof(nh));
  EXPECT_EQ(nh.n_type, static_cast<uint32_t>(NT_PRSTATUS));
  EXPECT_EQ(nh.n_namesz, 5u);
  EXPECT_EQ(nh.n_descsz, 336u);
  EXPECT_EQ(std::memcmp(n + sizeof(nh), "CORE", 5), 0);
  ElfPrstatus pr;
  std::memcpy(&pr, n + sizeof(nh) + 8, sizeof(pr));
  const X86VcpuState s0 = StateFor(0);
  EXPECT_EQ(pr.pr_pid, 1);
  EXPECT_EQ(pr.rip, s0.rip);
  EXPECT_EQ(pr.r15, s0.r15);
  EXPECT_EQ(pr.eflags, s0.rflags);
  uint64_t pr_reg0;
  std::memcpy(&pr_reg0, n + sizeof(nh) + 8 + 112, 8);  // pr_reg[0] is r15
  EXPECT_EQ(pr_reg0, s0.r15);
}

TEST(CoreHeaderTest, BuildRejectsBadInput) {
  CoreDescription core = Sample();
  core.preserved.push_back({0x1000, 0});
  EXPECT_FALSE(BuildCoreHeader(0, core).ok());
  core = Sample();
  core.preserved.push_back({~uint64_t{0} - 10, 0x1000});
  EXPECT_FALSE(BuildCoreHeader(0, core).ok());
  core = Sample();
  core.vcpus.resize(kMaxCoreVcpus + 1);
  EXPECT_FALSE(BuildCoreHeader(0, core).ok());
}

TEST(CoreHeaderTest, ParserRejectsEveryTruncation) {
  const uint64_t gpa = 0x5000;
  auto bytes = BuildCoreHeader(gpa, Sample());
  ASSERT_TRUE(bytes.ok());
  for (size_t len = 0; len < bytes->size(); ++len) {
    auto r = ParseCoreHeader(absl::MakeConstSpan(bytes->data(), len), gpa);
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  }
  // Wrong base address: the PT_NOTE no longer lies inside the bytes.
  EXPECT_FALSE(ParseCoreHeader(*bytes, gpa + 0x1000).ok());
  EXPECT_FALSE(ParseCoreHeader(*bytes, gpa - 0x1000).ok());
}

TEST(CoreHeaderTest, ParserRejectsMalformedFields) {
  const uint64_t gpa = 0x5000;
  const std::vector<uint8_t> good = *BuildCoreHeader(gpa, Sample());
  auto expect_bad = [&](auto mutate, absl::string_view needle) {
    std::vector<uint8_t> b = good;
    mutate(b);
    auto r = ParseCoreHeader(b, gpa);
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_NE(r.status().message().find(needle), absl::string_view::npos)
        << r.status();
  };
  const size_t ph = sizeof(Elf64_Ehdr);
  expect_bad([](auto& b) { b[0] = 0; }, "magic");
  expect_bad([](auto& b) { b[offsetof(Elf64_Ehdr, e_type)] = ET_EXEC; },
             "ET_CORE");
  expect_bad(
      [](auto& b) {
        uint16_t n = 2000;
        std::memcpy(&b[offsetof(Elf64_Ehdr, e_phnum)], &n, 2);
      },
      "e_phnum");
  expect_bad([&](auto& b) { b[ph + 2 * sizeof(Elf64_Phdr)] = PT_NOTE; },
             "more than one PT_NOTE");
  expect_bad([&](auto& b) { b[ph] = PT_LOAD; }, "no PT_NOTE");
  expect_bad(
      [&](auto& b) {  // PT_LOAD with p_offset != p_paddr
        b[ph + sizeof(Elf64_Phdr) + offsetof(Elf64_Phdr, p_offset)] ^= 0x10;
      },
      "PT_LOAD 1 malformed");
  expect_bad([&](auto& b) { b[ph + sizeof(Elf64_Phdr)] = 7; }, "p_type 7");
  // Note walk: NT_PRSTATUS descsz, type of the pairing note.
  const size_t notes = ph + 3 * sizeof(Elf64_Phdr);
  expect_bad([&](auto& b) { b[notes + 4] = 100; }, "NT_PRSTATUS size");
  const size_t second = notes + 12 + 8 + 336;
  expect_bad([&](auto& b) { b[second + 8] = 9; },  // HV note → unknown type
             "NT_PRSTATUS without NT_HV_VCPU");
  expect_bad([&](auto& b) { b[second + 12 + 4] ^= 1; },  // HV note vcpu id
             "id mismatch");
  expect_bad(
      [&](auto& b) {
        b[notes + 4] = 0xff;
        b[notes + 5] = 0xff;
      },
      "runs past");
}

TEST(PreservedRangesTest, EverythingOutsideTheCrashRegion) {
  auto mem = GuestMemory::Create({{0, 0x100000}, {0x200000, 0x100000}});
  ASSERT_TRUE(mem.ok());
  auto r = PreservedRanges(**mem, {0x80000, 0x40000});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].base, 0u);
  EXPECT_EQ(r[0].size, 0x80000u);
  EXPECT_EQ(r[1].base, 0xc0000u);
  EXPECT_EQ(r[1].size, 0x40000u);
  EXPECT_EQ(r[2].base, 0x200000u);
  EXPECT_EQ(r[2].size, 0x100000u);
  // Crash region at the start of a region, and none at all.
  r = PreservedRanges(**mem, {0x200000, 0x10000});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].base, 0x210000u);
  EXPECT_EQ(PreservedRanges(**mem, {}).size(), 2u);
}

}  // namespace
}  // namespace hv::loader
