#include "hv/loader/core_header.h"

#include <elf.h>

#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace hv::loader {
namespace {

constexpr char kCoreName[] = "CORE";  // namesz 5 → padded to 8
constexpr char kHvName[] = "HV";      // namesz 3 → padded to 4

constexpr uint64_t Align4(uint64_t n) { return (n + 3) & ~uint64_t{3}; }

uint64_t NoteSize(uint64_t namesz, uint64_t descsz) {
  return sizeof(Elf64_Nhdr) + Align4(namesz) + Align4(descsz);
}

uint64_t PerVcpuNotes() {
  return NoteSize(sizeof(kCoreName), sizeof(ElfPrstatus)) +
         NoteSize(sizeof(kHvName), sizeof(HvVcpuNote));
}

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("ELF core header: ", what));
}

bool InBlob(uint64_t off, uint64_t len, uint64_t size) {
  return off <= size && len <= size - off;
}

class Writer {
 public:
  explicit Writer(std::vector<uint8_t>* out) : out_(out) {}
  template <typename T>
  void Put(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out_->insert(out_->end(), p, p + sizeof(T));
  }
  void PutBytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out_->insert(out_->end(), b, b + n);
  }
  void PadTo4() {
    while (out_->size() % 4 != 0) out_->push_back(0);
  }
  void Note(const char* name, size_t namesz, uint32_t type, const void* desc,
            size_t descsz) {
    Elf64_Nhdr nh{static_cast<Elf64_Word>(namesz),
                  static_cast<Elf64_Word>(descsz), type};
    Put(nh);
    PutBytes(name, namesz);
    PadTo4();
    PutBytes(desc, descsz);
    PadTo4();
  }

 private:
  std::vector<uint8_t>* out_;
};

ElfPrstatus ToPrstatus(const VcpuDump& v) {
  ElfPrstatus p{};
  p.pr_pid = static_cast<int32_t>(v.vcpu_id + 1);
  const X86VcpuState& s = v.state;
  p.r15 = s.r15;
  p.r14 = s.r14;
  p.r13 = s.r13;
  p.r12 = s.r12;
  p.rbp = s.rbp;
  p.rbx = s.rbx;
  p.r11 = s.r11;
  p.r10 = s.r10;
  p.r9 = s.r9;
  p.r8 = s.r8;
  p.rax = s.rax;
  p.rcx = s.rcx;
  p.rdx = s.rdx;
  p.rsi = s.rsi;
  p.rdi = s.rdi;
  p.orig_rax = UINT64_MAX;
  p.rip = s.rip;
  p.cs = s.cs;
  p.eflags = s.rflags;
  p.rsp = s.rsp;
  p.ss = s.ss;
  p.fs_base = s.fs_base;
  p.gs_base = s.gs_base;
  p.ds = s.ds;
  p.es = s.es;
  p.fs = s.fs;
  p.gs = s.gs;
  return p;
}

void FromPrstatus(const ElfPrstatus& p, X86VcpuState* s) {
  s->r15 = p.r15;
  s->r14 = p.r14;
  s->r13 = p.r13;
  s->r12 = p.r12;
  s->rbp = p.rbp;
  s->rbx = p.rbx;
  s->r11 = p.r11;
  s->r10 = p.r10;
  s->r9 = p.r9;
  s->r8 = p.r8;
  s->rax = p.rax;
  s->rcx = p.rcx;
  s->rdx = p.rdx;
  s->rsi = p.rsi;
  s->rdi = p.rdi;
  s->rip = p.rip;
  s->rflags = p.eflags;
  s->rsp = p.rsp;
  s->fs_base = p.fs_base;
  s->gs_base = p.gs_base;
  s->cs = static_cast<uint16_t>(p.cs);
  s->ss = static_cast<uint16_t>(p.ss);
  s->ds = static_cast<uint16_t>(p.ds);
  s->es = static_cast<uint16_t>(p.es);
  s->fs = static_cast<uint16_t>(p.fs);
  s->gs = static_cast<uint16_t>(p.gs);
}

}  // namespace

uint64_t CoreHeaderSize(size_t ranges, size_t vcpus) {
  return sizeof(Elf64_Ehdr) + (1 + ranges) * sizeof(Elf64_Phdr) +
         vcpus * PerVcpuNotes();
}

absl::StatusOr<std::vector<uint8_t>> BuildCoreHeader(
    uint64_t header_gpa, const CoreDescription& core) {
  if (core.preserved.size() > kMaxCoreRanges) {
    return Bad(absl::StrFormat("%u ranges > %u", core.preserved.size(),
                               kMaxCoreRanges));
  }
  if (core.vcpus.size() > kMaxCoreVcpus) {
    return Bad(
        absl::StrFormat("%u vCPUs > %u", core.vcpus.size(), kMaxCoreVcpus));
  }
  for (const GpaRange& r : core.preserved) {
    if (r.empty() || r.base + r.size < r.base) {
      return Bad(absl::StrFormat("bad range [0x%x, +0x%x)", r.base, r.size));
    }
  }
  const uint64_t total =
      CoreHeaderSize(core.preserved.size(), core.vcpus.size());
  if (header_gpa + total < header_gpa) return Bad("header placement wraps");
  const uint64_t notes_off =
      sizeof(Elf64_Ehdr) + (1 + core.preserved.size()) * sizeof(Elf64_Phdr);
  const uint64_t notes_size = core.vcpus.size() * PerVcpuNotes();

  std::vector<uint8_t> out;
  out.reserve(total);
  Writer w(&out);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_ident[EI_OSABI] = ELFOSABI_NONE;
  eh.e_type = ET_CORE;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = static_cast<Elf64_Half>(1 + core.preserved.size());
  w.Put(eh);
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  note.p_offset = header_gpa + notes_off;
  note.p_paddr = header_gpa + notes_off;
  note.p_filesz = note.p_memsz = notes_size;
  note.p_align = 4;
  w.Put(note);
  for (const GpaRange& r : core.preserved) {
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_flags = PF_R | PF_W | PF_X;
    ph.p_offset = ph.p_paddr = ph.p_vaddr = r.base;
    ph.p_filesz = ph.p_memsz = r.size;
    ph.p_align = kPageSize;
    w.Put(ph);
  }
  for (const VcpuDump& v : core.vcpus) {
    const ElfPrstatus pr = ToPrstatus(v);
    w.Note(kCoreName, sizeof(kCoreName), kNtPrstatus, &pr, sizeof(pr));
    HvVcpuNote hv{v.vcpu_id,   0,           v.state.cr0, v.state.cr2,
                  v.state.cr3, v.state.cr4, v.state.efer};
    w.Note(kHvName, sizeof(kHvName), kNtHvVcpu, &hv, sizeof(hv));
  }
  if (out.size() != total) return absl::InternalError("core header size");
  return out;
}

absl::StatusOr<CoreDescription> ParseCoreHeader(absl::Span<const uint8_t> bytes,
                                                uint64_t header_gpa) {
  if (bytes.size() < sizeof(Elf64_Ehdr)) return Bad("truncated ELF header");
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof(eh));
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return Bad("bad magic");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != ELFDATA2LSB ||
      eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT) {
    return Bad("not an ELF64 LSB v1 file");
  }
  if (eh.e_type != ET_CORE) return Bad("e_type is not ET_CORE");
  if (eh.e_machine != EM_X86_64) return Bad("e_machine is not EM_X86_64");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) return Bad("bad e_phentsize");
  if (eh.e_phnum == 0 || eh.e_phnum > 1 + kMaxCoreRanges) {
    return Bad(absl::StrFormat("e_phnum %u out of [1, %u]", eh.e_phnum,
                               1 + kMaxCoreRanges));
  }
  const uint64_t ph_bytes = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (!InBlob(eh.e_phoff, ph_bytes, bytes.size())) {
    return Bad("program headers outside the header");
  }
  CoreDescription core;
  std::optional<Elf64_Phdr> note;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, bytes.data() + eh.e_phoff + i * sizeof(Elf64_Phdr),
                sizeof(ph));
    if (ph.p_type == PT_NOTE) {
      if (note.has_value()) return Bad("more than one PT_NOTE");
      note = ph;
    } else if (ph.p_type == PT_LOAD) {
      if (ph.p_offset != ph.p_paddr || ph.p_filesz != ph.p_memsz ||
          ph.p_memsz == 0 || ph.p_paddr + ph.p_memsz < ph.p_paddr) {
        return Bad(absl::StrFormat("PT_LOAD %u malformed", i));
      }
      core.preserved.push_back(GpaRange{ph.p_paddr, ph.p_memsz});
    } else {
      return Bad(absl::StrFormat("unexpected p_type %u", ph.p_type));
    }
  }
  if (!note.has_value()) return Bad("no PT_NOTE");
  if (note->p_offset < header_gpa || note->p_filesz != note->p_memsz ||
      !InBlob(note->p_offset - header_gpa, note->p_filesz, bytes.size())) {
    return Bad("PT_NOTE does not lie inside the header");
  }
  uint64_t pos = note->p_offset - header_gpa;
  const uint64_t end = pos + note->p_filesz;
  std::optional<VcpuDump> pending;  // NT_PRSTATUS awaiting its NT_HV_VCPU
  while (pos < end) {
    if (!InBlob(pos, sizeof(Elf64_Nhdr), end)) return Bad("truncated note");
    Elf64_Nhdr nh;
    std::memcpy(&nh, bytes.data() + pos, sizeof(nh));
    pos += sizeof(nh);
    const uint64_t name_len = Align4(nh.n_namesz);
    const uint64_t desc_len = Align4(nh.n_descsz);
    if (!InBlob(pos, name_len, end) || !InBlob(pos + name_len, desc_len, end)) {
      return Bad("note runs past PT_NOTE");
    }
    const absl::string_view name(
        reinterpret_cast<const char*>(bytes.data() + pos), nh.n_namesz);
    const uint8_t* desc = bytes.data() + pos + name_len;
    pos += name_len + desc_len;
    if (nh.n_type == kNtPrstatus &&
        name == absl::string_view(kCoreName, sizeof(kCoreName))) {
      if (pending.has_value()) return Bad("NT_PRSTATUS without NT_HV_VCPU");
      if (nh.n_descsz != sizeof(ElfPrstatus))
        return Bad("bad NT_PRSTATUS size");
      if (core.vcpus.size() >= kMaxCoreVcpus) return Bad("too many vCPU notes");
      ElfPrstatus pr;
      std::memcpy(&pr, desc, sizeof(pr));
      if (pr.pr_pid <= 0) return Bad("NT_PRSTATUS pr_pid must be vCPU id + 1");
      VcpuDump v;
      v.vcpu_id = static_cast<uint32_t>(pr.pr_pid - 1);
      FromPrstatus(pr, &v.state);
      pending = v;
    } else if (nh.n_type == kNtHvVcpu &&
               name == absl::string_view(kHvName, sizeof(kHvName))) {
      if (!pending.has_value()) return Bad("NT_HV_VCPU without NT_PRSTATUS");
      if (nh.n_descsz != sizeof(HvVcpuNote)) return Bad("bad NT_HV_VCPU size");
      HvVcpuNote hv;
      std::memcpy(&hv, desc, sizeof(hv));
      if (hv.vcpu_id != pending->vcpu_id) return Bad("vCPU note id mismatch");
      pending->state.cr0 = hv.cr0;
      pending->state.cr2 = hv.cr2;
      pending->state.cr3 = hv.cr3;
      pending->state.cr4 = hv.cr4;
      pending->state.efer = hv.efer;
      core.vcpus.push_back(*pending);
      pending.reset();
    }
    // Other notes (e.g. VMCOREINFO) are skipped, as readers of cores do.
  }
  if (pending.has_value()) return Bad("NT_PRSTATUS without NT_HV_VCPU");
  return core;
}

std::vector<GpaRange> PreservedRanges(const GuestMemory& memory,
                                      const GpaRange& crash) {
  std::vector<GpaRange> out;
  for (const MemoryRegion& r : memory.regions()) {
    const uint64_t rend = r.gpa + r.size;
    if (!crash.Intersects(r.gpa, r.size)) {
      out.push_back(GpaRange{r.gpa, r.size});
      continue;
    }
    if (crash.base > r.gpa) out.push_back(GpaRange{r.gpa, crash.base - r.gpa});
    if (crash.end() < rend) {
      out.push_back(GpaRange{crash.end(), rend - crash.end()});
    }
  }
  return out;
}

}  // namespace hv::loader
