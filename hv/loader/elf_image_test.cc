#include "hv/loader/elf_image.h"

#include <elf.h>

#include <cstring>

#include "gtest/gtest.h"
#include "hv/loader/test_util.h"

namespace hv::loader {
namespace {

using testing::BuildElf;
using testing::ElfLoadSpec;
using testing::Pattern;

template <typename T>
void Poke(std::vector<uint8_t>* file, size_t off, T value) {
  std::memcpy(file->data() + off, &value, sizeof(T));
}
size_t PhOff(size_t i, size_t field) {
  return sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr) + field;
}

void ExpectBad(const std::vector<uint8_t>& file, absl::string_view needle) {
  auto r = ParseElfImage(file);
  ASSERT_FALSE(r.ok()) << needle;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(needle), absl::string_view::npos)
      << r.status();
}

TEST(ElfImageTest, PtLoadsBecomeSegments) {
  const auto text = Pattern(0x1800, 1);
  const auto data = Pattern(0x200, 2);
  std::vector<uint8_t> file =
      BuildElf(0x10040, {{0x10000, text, 0x1800},
                         {0x20000, {}, 0, PT_NOTE},  // ignored
                         {0x30000, data, 0x5000}});  // .data + .bss
  auto image = ParseElfImage(file);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->entry, 0x10040u);
  ASSERT_EQ(image->segments.size(), 2u);
  const Segment& s0 = image->segments[0];
  EXPECT_EQ(s0.mem, 0x10000u);
  EXPECT_EQ(s0.memsz, 0x2000u);  // rounded up
  EXPECT_EQ(s0.bufsz, text.size());
  EXPECT_EQ(std::memcmp(s0.buf, text.data(), text.size()), 0);
  const Segment& s1 = image->segments[1];
  EXPECT_EQ(s1.mem, 0x30000u);
  EXPECT_EQ(s1.memsz, 0x5000u);
  EXPECT_EQ(s1.bufsz, data.size());
  EXPECT_EQ(std::memcmp(s1.buf, data.data(), data.size()), 0);
  // Buffers point into the file.
  EXPECT_GE(s1.buf, file.data());
  EXPECT_LE(s1.buf + s1.bufsz, file.data() + file.size());
}

TEST(ElfImageTest, UnalignedPaddrIsWidenedToThePage) {
  const auto text = Pattern(0x100, 3);
  std::vector<uint8_t> file = BuildElf(0x10123, {{0x10123, text, 0x100}});
  auto image = ParseElfImage(file);
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->segments.size(), 1u);
  const Segment& s = image->segments[0];
  EXPECT_EQ(s.mem, 0x10000u);
  EXPECT_EQ(s.memsz, 0x1000u);
  EXPECT_EQ(s.bufsz, 0x123u + 0x100u);
  EXPECT_EQ(std::memcmp(s.buf + 0x123, text.data(), text.size()), 0);
  // Break the congruence between p_offset and p_paddr.
  Poke<uint64_t>(&file, PhOff(0, offsetof(Elf64_Phdr, p_paddr)), 0x10124);
  ExpectBad(file, "not congruent");
}

TEST(ElfImageTest, HeaderValidation) {
  const std::vector<uint8_t> good =
      BuildElf(0x1000, {{0x1000, Pattern(64, 4), 64}});
  ASSERT_TRUE(ParseElfImage(good).ok());
  ExpectBad(std::vector<uint8_t>(good.begin(), good.begin() + 63), "shorter");
  auto f = good;
  f[1] = 'X';
  ExpectBad(f, "magic");
  f = good;
  f[EI_CLASS] = ELFCLASS32;
  ExpectBad(f, "ELFCLASS64");
  f = good;
  f[EI_DATA] = ELFDATA2MSB;
  ExpectBad(f, "little endian");
  f = good;
  Poke<uint32_t>(&f, offsetof(Elf64_Ehdr, e_version), 2);
  ExpectBad(f, "e_version");
  f = good;
  Poke<uint16_t>(&f, offsetof(Elf64_Ehdr, e_machine), EM_AARCH64);
  ExpectBad(f, "EM_X86_64");
  f = good;
  Poke<uint16_t>(&f, offsetof(Elf64_Ehdr, e_type), ET_DYN);
  ExpectBad(f, "ET_EXEC");
  f = good;
  Poke<uint16_t>(&f, offsetof(Elf64_Ehdr, e_phentsize), 32);
  ExpectBad(f, "e_phentsize");
  f = good;
  Poke<uint16_t>(&f, offsetof(Elf64_Ehdr, e_phnum), 0);
  ExpectBad(f, "no program headers");
  f = good;
  Poke<uint16_t>(&f, offsetof(Elf64_Ehdr, e_phnum), 65);
  ExpectBad(f, "e_phnum 65");
  f = good;
  Poke<uint16_t>(&f, offsetof(Elf64_Ehdr, e_phnum), 2);  // runs into data
  f.resize(sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr) + 8);
  ExpectBad(f, "outside file");
  f = good;
  Poke<uint64_t>(&f, offsetof(Elf64_Ehdr, e_phoff), ~uint64_t{0} - 8);
  ExpectBad(f, "outside file");
}

TEST(ElfImageTest, ProgramHeaderValidation) {
  const std::vector<uint8_t> good =
      BuildElf(0x1000, {{0x1000, Pattern(64, 5), 64}});
  auto f = good;
  Poke<uint64_t>(&f, PhOff(0, offsetof(Elf64_Phdr, p_filesz)), 65);
  ExpectBad(f, "p_filesz 0x41 > p_memsz");
  f = good;
  Poke<uint64_t>(&f, PhOff(0, offsetof(Elf64_Phdr, p_offset)), f.size() - 10);
  ExpectBad(f, "outside the file");
  f = good;  // offset + size overflows 64 bits
  Poke<uint64_t>(&f, PhOff(0, offsetof(Elf64_Phdr, p_offset)), ~uint64_t{0});
  ExpectBad(f, "outside the file");
  f = good;
  Poke<uint64_t>(&f, PhOff(0, offsetof(Elf64_Phdr, p_memsz)), ~uint64_t{0} - 5);
  ExpectBad(f, "overflows");
  f = good;
  Poke<uint32_t>(&f, PhOff(0, offsetof(Elf64_Phdr, p_type)), PT_NOTE);
  ExpectBad(f, "no loadable");
}

TEST(ElfImageTest, AtMostSixteenPtLoads) {
  std::vector<ElfLoadSpec> loads;
  for (uint64_t i = 0; i < 17; ++i)
    loads.push_back({0x1000 * (i + 1), Pattern(8, i), 8});
  ExpectBad(BuildElf(0x1000, loads), "more than 16 PT_LOAD");
  loads.pop_back();
  auto ok = ParseElfImage(BuildElf(0x1000, loads));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->segments.size(), 16u);
}

TEST(ElfImageTest, RawBlob) {
  const auto blob = Pattern(5000, 6);
  auto image = MakeRawImage(blob, 0x200000, 0x200010);
  ASSERT_TRUE(image.ok());
  EXPECT_EQ(image->entry, 0x200010u);
  ASSERT_EQ(image->segments.size(), 1u);
  EXPECT_EQ(image->segments[0].mem, 0x200000u);
  EXPECT_EQ(image->segments[0].memsz, 0x2000u);
  EXPECT_EQ(image->segments[0].bufsz, 5000u);
  EXPECT_EQ(image->segments[0].buf, blob.data());
  EXPECT_EQ(MakeRawImage(blob, 0x200001, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeRawImage({}, 0x200000, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hv::loader
