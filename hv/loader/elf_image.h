// ELF64 executables → kexec segments (what kexec-tools' elf_exec_load()
// does for a vmlinux / the guest kit's images). The parser treats the file as
// hostile: every offset and size is checked against the file length with
// overflow-safe arithmetic before it is used, and the program-header count is
// bounded. Accepted: ELFCLASS64, ELFDATA2LSB, EV_CURRENT, EM_X86_64, ET_EXEC
// (ELF-64 Object File Format v1.5 §§3-5; System V gABI "Program Header").
#ifndef HV_LOADER_ELF_IMAGE_H_
#define HV_LOADER_ELF_IMAGE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "hv/loader/segment.h"

namespace hv::loader {

// Bound on e_phnum. The gABI allows up to 0xfffe (PN_XNUM escapes beyond);
// kexec images have a handful, and at most kMaxSegments may be PT_LOAD.
inline constexpr uint16_t kMaxProgramHeaders = 64;

// Parses `file` and returns one segment per non-empty PT_LOAD (placed at
// p_paddr, the physical address, as kexec-tools does for ET_EXEC) and the
// entry e_entry. Segments point into `file`, which must outlive the Image.
//
// A PT_LOAD whose p_paddr is not page aligned is widened down to the page
// boundary; this needs p_offset ≡ p_paddr (mod 4096) — the congruence the gABI
// requires between p_offset and p_vaddr for loadable segments — so that the
// widened buffer starts at p_offset - (p_paddr % 4096) inside the file. memsz
// is rounded up to the page. Two PT_LOADs sharing a page after rounding are
// reported by ValidateImage() as an overlap.
//
// Errors: InvalidArgument naming the field (magic, class, machine, type,
// phentsize, phnum, phoff, segment i offset/size, p_filesz > p_memsz, ...).
[[nodiscard]] absl::StatusOr<Image> ParseElfImage(
    absl::Span<const uint8_t> file);

// A raw blob (flat binary) loaded at `gpa` with the given entry: one segment,
// memsz = size rounded up to the page. `blob` must outlive the Image.
[[nodiscard]] absl::StatusOr<Image> MakeRawImage(absl::Span<const uint8_t> blob,
                                                 uint64_t gpa, uint64_t entry);

}  // namespace hv::loader

#endif  // HV_LOADER_ELF_IMAGE_H_
