#include "hv/loader/test_util.h"

#include <elf.h>

#include <cstring>

namespace hv::loader::testing {

std::vector<uint8_t> BuildElf(uint64_t entry,
                              const std::vector<ElfLoadSpec>& loads) {
  const uint64_t ph_end =
      sizeof(Elf64_Ehdr) + loads.size() * sizeof(Elf64_Phdr);
  std::vector<uint64_t> offsets;
  uint64_t off = ph_end;
  for (const ElfLoadSpec& l : loads) {
    // Next offset ≥ off with off ≡ paddr (mod 4096).
    uint64_t cand = (off & ~uint64_t{4095}) + (l.paddr & 4095);
    if (cand < off) cand += 4096;
    offsets.push_back(cand);
    off = cand + l.data.size();
  }
  std::vector<uint8_t> file(off, 0);
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
  eh.e_phnum = static_cast<Elf64_Half>(loads.size());
  std::memcpy(file.data(), &eh, sizeof(eh));
  for (size_t i = 0; i < loads.size(); ++i) {
    Elf64_Phdr ph{};
    ph.p_type = loads[i].type;
    ph.p_flags = PF_R | PF_X;
    ph.p_offset = offsets[i];
    ph.p_vaddr = ph.p_paddr = loads[i].paddr;
    ph.p_filesz = loads[i].data.size();
    ph.p_memsz = loads[i].memsz;
    ph.p_align = 4096;
    std::memcpy(file.data() + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr), &ph,
                sizeof(ph));
    if (!loads[i].data.empty()) {
      std::memcpy(file.data() + offsets[i], loads[i].data.data(),
                  loads[i].data.size());
    }
  }
  return file;
}

std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> out(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<uint8_t>(x);
  }
  return out;
}

}  // namespace hv::loader::testing
