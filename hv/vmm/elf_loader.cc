#include "hv/vmm/elf_loader.h"

#include <elf.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hv/base/status_macros.h"
#include "hv/platform/hv_virt.h"

namespace hv {
namespace {

absl::Status Bad(const std::string& msg) {
  return absl::InvalidArgumentError("ELF image: " + msg);
}

}  // namespace

absl::StatusOr<ElfImage> ParseElf(absl::Span<const uint8_t> file) {
  Elf64_Ehdr eh;
  if (file.size() < sizeof(eh)) return Bad("file shorter than the ELF header");
  std::memcpy(&eh, file.data(), sizeof(eh));
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return Bad("bad magic");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) return Bad("not ELFCLASS64");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return Bad("not little endian");
  if (eh.e_machine != EM_X86_64) return Bad("e_machine is not EM_X86_64");
  if (eh.e_type != ET_EXEC) return Bad("e_type is not ET_EXEC");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) return Bad("bad e_phentsize");
  if (eh.e_phnum == 0) return Bad("no program headers");
  if (eh.e_phoff > file.size() ||
      uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr) > file.size() - eh.e_phoff) {
    return Bad("program header table outside the file");
  }
  ElfImage image;
  image.entry = eh.e_entry;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, file.data() + eh.e_phoff + i * sizeof(ph), sizeof(ph));
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (image.segments.size() == kMaxElfSegments) {
      return Bad(
          absl::StrFormat("more than %d PT_LOAD segments", kMaxElfSegments));
    }
    if (ph.p_filesz > ph.p_memsz) {
      return Bad(absl::StrFormat("segment %d: p_filesz > p_memsz", i));
    }
    if (ph.p_offset > file.size() || ph.p_filesz > file.size() - ph.p_offset) {
      return Bad(absl::StrFormat("segment %d: file range outside the file", i));
    }
    if (ph.p_paddr + ph.p_memsz < ph.p_paddr) {
      return Bad(absl::StrFormat("segment %d: address range wraps", i));
    }
    image.segments.push_back(ElfSegment{ph.p_offset, ph.p_filesz, ph.p_paddr,
                                        ph.p_memsz, (ph.p_flags & PF_X) != 0});
  }
  if (image.segments.empty()) return Bad("no PT_LOAD segments");
  std::sort(
      image.segments.begin(), image.segments.end(),
      [](const ElfSegment& a, const ElfSegment& b) { return a.gpa < b.gpa; });
  for (size_t i = 1; i < image.segments.size(); ++i) {
    const ElfSegment& prev = image.segments[i - 1];
    if (prev.gpa + prev.mem_size > image.segments[i].gpa) {
      return Bad(absl::StrFormat("segments at 0x%x and 0x%x overlap", prev.gpa,
                                 image.segments[i].gpa));
    }
  }
  const bool entry_ok = std::any_of(
      image.segments.begin(), image.segments.end(), [&](const ElfSegment& s) {
        return s.executable && image.entry >= s.gpa &&
               image.entry - s.gpa < s.mem_size;
      });
  if (!entry_ok) {
    return Bad(absl::StrFormat(
        "entry point 0x%x is not inside an executable segment", image.entry));
  }
  return image;
}

absl::StatusOr<uint64_t> LoadElf(absl::Span<const uint8_t> file,
                                 GuestMemory& memory) {
  HV_ASSIGN_OR_RETURN(ElfImage image, ParseElf(file));
  for (const ElfSegment& s : image.segments) {
    if (s.gpa < HV_VIRT_IMAGE_MIN) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ELF image: segment at 0x%x is below 0x%x, where the VMM keeps the "
          "boot structures",
          s.gpa, HV_VIRT_IMAGE_MIN));
    }
    if (!memory.Contains(s.gpa, s.mem_size)) {
      return absl::OutOfRangeError(absl::StrFormat(
          "ELF image: segment [0x%x, 0x%x) does not fit in guest RAM "
          "(%d MiB)",
          s.gpa, s.gpa + s.mem_size, memory.total_size() >> 20));
    }
  }
  for (const ElfSegment& s : image.segments) {
    HV_RETURN_IF_ERROR(
        memory.Write(s.gpa, file.data() + s.file_offset, s.file_size));
    HV_RETURN_IF_ERROR(
        memory.Fill(s.gpa + s.file_size, 0, s.mem_size - s.file_size));
  }
  return image.entry;
}

}  // namespace hv
