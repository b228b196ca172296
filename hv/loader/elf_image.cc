#include "hv/loader/elf_image.h"

#include <elf.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hv::loader {
namespace {

static_assert(sizeof(Elf64_Ehdr) == 64, "ELF64 header is 64 bytes");
static_assert(sizeof(Elf64_Phdr) == 56, "ELF64 program header is 56 bytes");

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("ELF image: ", what));
}

// True if [off, off + len) lies inside a file of `size` bytes (no overflow).
bool InFile(uint64_t off, uint64_t len, uint64_t size) {
  return off <= size && len <= size - off;
}

}  // namespace

absl::StatusOr<Image> ParseElfImage(absl::Span<const uint8_t> file) {
  if (file.size() < sizeof(Elf64_Ehdr)) {
    return Bad(absl::StrFormat("file of %u bytes is shorter than the header",
                               file.size()));
  }
  Elf64_Ehdr eh;
  std::memcpy(&eh, file.data(), sizeof(eh));  // no alignment assumption
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return Bad("bad magic");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) return Bad("not ELFCLASS64");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return Bad("not little endian");
  if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT) {
    return Bad("bad e_version");
  }
  if (eh.e_machine != EM_X86_64) {
    return Bad(absl::StrFormat("e_machine %u is not EM_X86_64", eh.e_machine));
  }
  if (eh.e_type != ET_EXEC) {
    return Bad(absl::StrFormat("e_type %u is not ET_EXEC", eh.e_type));
  }
  if (eh.e_ehsize < sizeof(Elf64_Ehdr)) return Bad("e_ehsize too small");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return Bad(absl::StrFormat("e_phentsize %u != %u", eh.e_phentsize,
                               sizeof(Elf64_Phdr)));
  }
  if (eh.e_phnum == 0) return Bad("no program headers");
  if (eh.e_phnum > kMaxProgramHeaders) {
    return Bad(
        absl::StrFormat("e_phnum %u > %u", eh.e_phnum, kMaxProgramHeaders));
  }
  const uint64_t ph_bytes = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (!InFile(eh.e_phoff, ph_bytes, file.size())) {
    return Bad(absl::StrFormat("program headers [0x%x, +0x%x) outside file",
                               eh.e_phoff, ph_bytes));
  }

  Image image;
  image.entry = eh.e_entry;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, file.data() + eh.e_phoff + i * sizeof(Elf64_Phdr),
                sizeof(ph));
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_filesz > ph.p_memsz) {
      return Bad(absl::StrFormat("phdr %u: p_filesz 0x%x > p_memsz 0x%x", i,
                                 ph.p_filesz, ph.p_memsz));
    }
    if (!InFile(ph.p_offset, ph.p_filesz, file.size())) {
      return Bad(absl::StrFormat("phdr %u: [0x%x, +0x%x) outside the file", i,
                                 ph.p_offset, ph.p_filesz));
    }
    if (ph.p_memsz == 0) continue;  // nothing to load
    const uint64_t lead = ph.p_paddr % kPageSize;
    if (lead != 0 && (ph.p_offset % kPageSize != lead || ph.p_offset < lead)) {
      return Bad(absl::StrFormat(
          "phdr %u: p_paddr 0x%x unaligned and p_offset 0x%x not congruent", i,
          ph.p_paddr, ph.p_offset));
    }
    const uint64_t mem = ph.p_paddr - lead;
    // lead + p_memsz rounded up to the page, without overflow.
    const uint64_t span = lead + ph.p_memsz;
    if (span < ph.p_memsz || span > UINT64_MAX - (kPageSize - 1)) {
      return Bad(
          absl::StrFormat("phdr %u: p_memsz 0x%x overflows", i, ph.p_memsz));
    }
    const uint64_t memsz = (span + kPageSize - 1) / kPageSize * kPageSize;
    if (image.segments.size() == kMaxSegments) {
      return Bad(absl::StrFormat("more than %u PT_LOAD headers", kMaxSegments));
    }
    Segment seg;
    seg.buf = ph.p_filesz > 0 || lead > 0 ? file.data() + (ph.p_offset - lead)
                                          : nullptr;
    seg.bufsz = lead + ph.p_filesz;
    seg.mem = mem;
    seg.memsz = memsz;
    image.segments.push_back(seg);
  }
  if (image.segments.empty()) return Bad("no loadable PT_LOAD segment");
  return image;
}

absl::StatusOr<Image> MakeRawImage(absl::Span<const uint8_t> blob, uint64_t gpa,
                                   uint64_t entry) {
  if (blob.empty()) return absl::InvalidArgumentError("raw image: empty blob");
  if (gpa % kPageSize != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("raw image: load address 0x%x not page aligned", gpa));
  }
  if (blob.size() > UINT64_MAX - (kPageSize - 1)) {
    return absl::InvalidArgumentError("raw image: too large");
  }
  Image image;
  image.entry = entry;
  image.segments.push_back(
      Segment{.buf = blob.data(),
              .bufsz = blob.size(),
              .mem = gpa,
              .memsz = (blob.size() + kPageSize - 1) / kPageSize * kPageSize});
  return image;
}

}  // namespace hv::loader
