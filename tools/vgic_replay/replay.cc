#include "tools/vgic_replay/replay.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "hv/memory/guest_memory.h"
#include "vgic/its.h"
#include "vgic/regs.h"
#include "vgic/vgic.h"

namespace vgic::replay {
namespace {

constexpr uint64_t kDefaultRamBase = 0;
constexpr uint64_t kDefaultRamSize = 256ull << 20;
// Guest RAM is a sparse memfd (only touched pages cost memory), so recorded
// guests with several GiB of RAM replay as-is. Addresses stay inside the
// 52-bit physical address space the GIC's table registers can name.
constexpr uint64_t kMaxRamSize = 64ull << 30;
constexpr uint64_t kMaxGpa = 1ull << 52;
constexpr uint32_t kNumSpis = 64;

// Thrown-free error propagation: every statement returns a reason or "".
using Reason = std::string;

std::optional<uint64_t> ParseNumber(absl::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  if (absl::StartsWithIgnoreCase(s, "0x")) {
    absl::string_view hex = s.substr(2);
    if (hex.empty() || hex.size() > 16) return std::nullopt;
    for (char c : hex) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)))
        return std::nullopt;
    }
    if (!absl::SimpleHexAtoi(hex, &v)) return std::nullopt;
    return v;
  }
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)))
      return std::nullopt;
  }
  if (!absl::SimpleAtoi(s, &v)) return std::nullopt;
  return v;
}

struct Frame {
  enum Kind { kGicd, kGits, kGicr } kind;
  uint32_t vcpu = 0;  // gicrN
  std::string name;
};

class Replayer {
 public:
  explicit Replayer(std::ostream& out) : out_(out) {}

  // Returns "" on success or the reason the line is malformed.
  Reason Statement(const std::vector<absl::string_view>& t) {
    const absl::string_view op = t[0];
    if (!vgic_) {
      if (op == "vcpus") {
        if (t.size() != 2) return "usage: vcpus N";
        auto n = ParseNumber(t[1]);
        if (!n || *n == 0 || *n > kMaxVcpus) {
          return absl::StrFormat("vcpus must be 1..%d", kMaxVcpus);
        }
        num_vcpus_ = static_cast<uint32_t>(*n);
        // RAM is created lazily so that `ram` may follow.
        return Init(kDefaultRamBase, kDefaultRamSize, /*explicit_ram=*/false);
      }
      return "the first statement must be 'vcpus N'";
    }
    if (op == "ram") {
      if (statements_ != 1) return "'ram' must be the second statement";
      if (t.size() != 3) return "usage: ram BASE SIZE";
      auto base = ParseNumber(t[1]);
      auto size = ParseNumber(t[2]);
      if (!base || !size) return "bad number";
      if (*size == 0 || *size > kMaxRamSize || *base % 4096 || *size % 4096 ||
          *base >= kMaxGpa || *size > kMaxGpa - *base) {
        return "ram must be page aligned, non-empty, at most 64 GiB, below "
               "2^52";
      }
      return Init(*base, *size, /*explicit_ram=*/true);
    }
    if (op == "vcpus") return "'vcpus' may appear only once";
    if (op == "mem8" || op == "mem32" || op == "mem64") {
      if (t.size() != 3) return absl::StrFormat("usage: %s GPA VALUE", op);
      auto gpa = ParseNumber(t[1]);
      auto val = ParseNumber(t[2]);
      if (!gpa || !val) return "bad number";
      const int bytes = op == "mem8" ? 1 : op == "mem32" ? 4 : 8;
      if (bytes < 8 && *val >> (bytes * 8)) return "value too wide";
      const uint64_t v = *val;  // little-endian host, like the guest
      if (!mem_->Write(*gpa, &v, bytes).ok()) return "GPA outside guest RAM";
      return "";
    }
    if (op == "rd32" || op == "rd64" || op == "wr32" || op == "wr64") {
      const bool write = op[0] == 'w';
      const uint8_t size = absl::EndsWith(op, "32") ? 4 : 8;
      if (t.size() != (write ? 4u : 3u)) {
        return write ? absl::StrFormat("usage: %s FRAME OFFSET VALUE", op)
                     : absl::StrFormat("usage: %s FRAME OFFSET", op);
      }
      Frame f;
      if (Reason r = ParseFrame(t[1], &f); !r.empty()) return r;
      auto off = ParseNumber(t[2]);
      if (!off) return "bad number";
      const uint64_t limit = f.kind == Frame::kGicd   ? kDistributorFrameSize
                             : f.kind == Frame::kGits ? its::kFrameSize
                                                      : kRedistributorStride;
      if (*off >= limit || *off + size > limit)
        return "offset outside the frame";
      if (*off % size) return "unaligned access";
      hv::MmioDevice* dev = nullptr;
      uint64_t dev_off = *off;
      switch (f.kind) {
        case Frame::kGicd:
          dev = &vgic_->distributor();
          break;
        case Frame::kGits:
          dev = its_.get();
          break;
        case Frame::kGicr:
          dev = &vgic_->redistributors();
          dev_off += uint64_t{f.vcpu} * kRedistributorStride;
          break;
      }
      const hv::MmioContext ctx{0, 0};
      if (write) {
        auto val = ParseNumber(t[3]);
        if (!val) return "bad number";
        if (size == 4 && *val >> 32) return "value too wide";
        // A rejected access is dropped, as the MMIO bus does.
        dev->Write(ctx, dev_off, size, *val).IgnoreError();
      } else {
        uint64_t v = 0;
        if (!dev->Read(ctx, dev_off, size, &v).ok()) {
          v = size == 4 ? 0xffffffffull : ~0ull;  // bus: all-ones
        }
        out_ << absl::StrFormat("rd %s 0x%x = 0x%x\n", f.name, *off, v);
      }
      return "";
    }
    if (op == "msi") {
      if (t.size() != 3) return "usage: msi DEVICEID EVENTID";
      auto dev = ParseNumber(t[1]);
      auto ev = ParseNumber(t[2]);
      if (!dev || !ev) return "bad number";
      if (*dev >> 32 || *ev >> 32) return "DeviceID/EventID are 32-bit";
      its_->Write(hv::MmioContext{hv::MmioContext::kNoVcpu,
                                  static_cast<uint32_t>(*dev)},
                  its::RegOff(its::Reg::kTranslater), 4, *ev)
          .IgnoreError();
      return "";
    }
    if (op == "ack") {
      if (t.size() != 2) return "usage: ack CPU";
      auto cpu = ParseNumber(t[1]);
      if (!cpu || *cpu >= num_vcpus_) return "no such vCPU";
      auto v = vgic_->ReadIcc(static_cast<uint32_t>(*cpu), IccReg::kIar1);
      if (!v.ok()) return std::string(v.status().message());
      out_ << absl::StrFormat("ack %d %d\n", *cpu, *v);
      return "";
    }
    if (op == "eoi") {
      if (t.size() != 3) return "usage: eoi CPU INTID";
      auto cpu = ParseNumber(t[1]);
      auto intid = ParseNumber(t[2]);
      if (!cpu || !intid) return "bad number";
      if (*cpu >= num_vcpus_) return "no such vCPU";
      if (*intid >> 32) return "INTID is 32-bit";
      vgic_->WriteIcc(static_cast<uint32_t>(*cpu), IccReg::kEoir1, *intid)
          .IgnoreError();
      return "";
    }
    if (op == "save") {
      if (t.size() != 1) return "usage: save";
      if (absl::Status s = its_->SaveTables(); !s.ok()) {
        return absl::StrFormat("save failed: %s", s.message());
      }
      return "";
    }
    if (op == "restore") {
      if (t.size() != 1) return "usage: restore";
      // A fresh ITS with the saved register file, then the tables: what a
      // migration target does.
      const ItsRegisters regs = its_->GetRegisters();
      its_ = std::make_unique<Its>(vgic_.get(), mem_.get());
      if (absl::Status s = its_->SetRegisters(regs); !s.ok()) {
        return absl::StrFormat("restore failed: %s", s.message());
      }
      if (absl::Status s = its_->RestoreTables(); !s.ok()) {
        return absl::StrFormat("restore failed: %s", s.message());
      }
      return "";
    }
    if (op == "its_error") {
      if (t.size() != 1) return "usage: its_error";
      const uint32_t code = its_->GetErrorStats().last_error;
      out_ << (code == 0 ? std::string("its_error 0\n")
                         : absl::StrFormat("its_error 0x%06x\n", code));
      return "";
    }
    return absl::StrFormat("unknown statement '%s'", op);
  }

  void Count() { ++statements_; }

 private:
  Reason ParseFrame(absl::string_view s, Frame* f) {
    if (s == "gicd") {
      *f = Frame{Frame::kGicd, 0, "gicd"};
      return "";
    }
    if (s == "gits") {
      *f = Frame{Frame::kGits, 0, "gits"};
      return "";
    }
    if (absl::StartsWith(s, "gicr")) {
      absl::string_view n = s.substr(4);
      auto v = ParseNumber(n);
      if (!n.empty() && absl::ascii_isdigit(static_cast<unsigned char>(n[0])) &&
          v && *v < num_vcpus_) {
        *f = Frame{Frame::kGicr, static_cast<uint32_t>(*v),
                   absl::StrFormat("gicr%d", *v)};
        return "";
      }
      return absl::StrFormat("no redistributor '%s'", s);
    }
    return absl::StrFormat("unknown frame '%s'", s);
  }

  Reason Init(uint64_t base, uint64_t size, bool explicit_ram) {
    its_.reset();
    vgic_.reset();
    mem_.reset();
    auto mem = hv::GuestMemory::Create({{base, size}});
    if (!mem.ok()) {
      return absl::StrFormat("cannot create RAM: %s", mem.status().message());
    }
    mem_ = std::move(*mem);
    VgicConfig c;
    c.num_vcpus = num_vcpus_;
    c.num_spis = kNumSpis;
    c.lpi_id_bits = 16;
    c.memory = mem_.get();
    auto g = Vgic::Create(c);
    if (!g.ok()) {
      return absl::StrFormat("cannot create vGIC: %s", g.status().message());
    }
    vgic_ = std::move(*g);
    its_ = std::make_unique<Its>(vgic_.get(), mem_.get());
    // Each CPU interface starts as a guest that enabled interrupts: Group 1
    // on, PMR = 0xff.
    for (uint32_t v = 0; v < num_vcpus_; ++v) {
      if (!vgic_->WriteIcc(v, IccReg::kIgrpen1, 1).ok() ||
          !vgic_->WriteIcc(v, IccReg::kPmr, 0xff).ok()) {
        return "cannot initialise the CPU interface";
      }
    }
    (void)explicit_ram;
    return "";
  }

  std::ostream& out_;
  uint32_t num_vcpus_ = 0;
  int statements_ = 0;
  std::unique_ptr<hv::GuestMemory> mem_;
  std::unique_ptr<Vgic> vgic_;
  std::unique_ptr<Its> its_;
};

}  // namespace

int Run(std::istream& in, std::ostream& out) {
  Replayer r(out);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    absl::string_view body = line;
    if (size_t hash = body.find('#'); hash != absl::string_view::npos) {
      body = body.substr(0, hash);
    }
    std::vector<absl::string_view> tokens =
        absl::StrSplit(body, absl::ByAnyChar(" \t\r\v\f"), absl::SkipEmpty());
    if (tokens.empty()) continue;
    if (Reason reason = r.Statement(tokens); !reason.empty()) {
      out << "error " << lineno << ": " << reason << "\n";
      out.flush();
      return 2;
    }
    r.Count();
  }
  out.flush();
  return 0;
}

}  // namespace vgic::replay
