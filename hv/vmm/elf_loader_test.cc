#include "hv/vmm/elf_loader.h"

#include <elf.h>

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace hv {
namespace {

struct Seg {
  uint64_t paddr;
  std::vector<uint8_t> bytes;
  uint64_t memsz;
  uint32_t flags = PF_R | PF_X;
};

std::vector<uint8_t> MakeElf(uint64_t entry, const std::vector<Seg>& segs) {
  std::vector<uint8_t> out(sizeof(Elf64_Ehdr) +
                           segs.size() * sizeof(Elf64_Phdr));
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = entry;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = static_cast<uint16_t>(segs.size());
  std::memcpy(out.data(), &eh, sizeof(eh));
  for (size_t i = 0; i < segs.size(); ++i) {
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_flags = segs[i].flags;
    ph.p_offset = out.size();
    ph.p_paddr = ph.p_vaddr = segs[i].paddr;
    ph.p_filesz = segs[i].bytes.size();
    ph.p_memsz = segs[i].memsz;
    std::memcpy(out.data() + sizeof(eh) + i * sizeof(ph), &ph, sizeof(ph));
    out.insert(out.end(), segs[i].bytes.begin(), segs[i].bytes.end());
  }
  return out;
}

std::unique_ptr<GuestMemory> Ram(uint64_t size) {
  auto m = GuestMemory::Create({{0, size}});
  EXPECT_TRUE(m.ok());
  return std::move(*m);
}

TEST(ElfLoaderTest, LoadsSegmentsAndZeroesBss) {
  auto mem = Ram(0x400000);
  ASSERT_TRUE(mem->Fill(0x200000, 0xaa, 0x100).ok());
  auto elf = MakeElf(0x100010, {{0x100000, {1, 2, 3, 4}, 0x20},
                                {0x200000, {9}, 0x100, PF_R | PF_W}});
  auto entry = LoadElf(elf, *mem);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(*entry, 0x100010u);
  EXPECT_EQ(*mem->ReadObj<uint32_t>(0x100000), 0x04030201u);
  EXPECT_EQ(*mem->ReadObj<uint8_t>(0x200000), 9);
  EXPECT_EQ(*mem->ReadObj<uint8_t>(0x2000ff), 0);  // bss zeroed
}

TEST(ElfLoaderTest, ImageThatDoesNotFitRamIsOutOfRange) {
  auto mem = Ram(0x180000);
  auto elf = MakeElf(0x100000, {{0x100000, {0x90}, 0x100000}});
  auto entry = LoadElf(elf, *mem);
  ASSERT_EQ(entry.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(entry.status().message().find("does not fit in guest RAM"),
            std::string::npos);
}

TEST(ElfLoaderTest, RejectsMalformedFiles) {
  auto mem = Ram(0x400000);
  std::vector<uint8_t> tiny = {0x7f, 'E', 'L', 'F'};
  EXPECT_EQ(LoadElf(tiny, *mem).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto good = MakeElf(0x100000, {{0x100000, {0x90}, 0x10}});
  {
    auto bad = good;
    bad[0] = 0;
    EXPECT_FALSE(ParseElf(bad).ok());
  }
  {
    auto bad = good;
    bad.resize(sizeof(Elf64_Ehdr) + 10);  // truncated phdrs
    EXPECT_FALSE(ParseElf(bad).ok());
  }
  // Entry outside any segment.
  EXPECT_FALSE(ParseElf(MakeElf(0x300000, {{0x100000, {0x90}, 0x10}})).ok());
  // Entry in a non-executable segment.
  EXPECT_FALSE(
      ParseElf(MakeElf(0x100000, {{0x100000, {0x90}, 0x10, PF_R}})).ok());
  // filesz > memsz.
  EXPECT_FALSE(ParseElf(MakeElf(0x100000, {{0x100000, {1, 2, 3}, 2}})).ok());
  // Overlap.
  EXPECT_FALSE(ParseElf(MakeElf(0x100000, {{0x100000, {1}, 0x100},
                                           {0x1000f0, {1}, 0x10}}))
                   .ok());
  // Wrap.
  EXPECT_FALSE(
      ParseElf(MakeElf(0x100000, {{0x100000, {1}, 0x10},
                                  {0xfffffffffffff000ull, {1}, 0x2000}}))
          .ok());
  // Below the image floor (would clobber the boot page tables).
  EXPECT_EQ(
      LoadElf(MakeElf(0x2000, {{0x2000, {0x90}, 0x10}}), *mem).status().code(),
      absl::StatusCode::kInvalidArgument);
  // 17 segments.
  std::vector<Seg> many;
  for (int i = 0; i < 17; ++i) many.push_back({0x100000 + i * 0x1000u, {1}, 1});
  EXPECT_FALSE(ParseElf(MakeElf(0x100000, many)).ok());
}

}  // namespace
}  // namespace hv
