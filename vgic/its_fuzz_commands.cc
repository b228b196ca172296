// libFuzzer target: arbitrary command streams and register writes against an
// enabled ITS. Invariants checked after every input: no crash / leak / read
// outside guest RAM (sanitizers), CREADR stays inside the queue, the queue
// is either drained or stalled, and every translation the ITS reports names
// an LPI and a vCPU in range.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "vgic/fake_lpi_sink.h"
#include "vgic/its.h"
#include "vgic/its_harness.h"

namespace {

using vgic::ItsHarness;

// Opcodes the fuzzer prefers (plus arbitrary ones).
constexpr uint8_t kOpcodes[] = {0x01, 0x03, 0x04, 0x05, 0x08, 0x09,
                                0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
constexpr uint64_t kRegs[] = {0x0,   0x80,  0x84,  0x88,  0x8c,  0x90,
                              0x100, 0x104, 0x108, 0x10c, 0x110, 0x10040};

struct Reader {
  const uint8_t* p;
  size_t n;
  bool Take(void* out, size_t len) {
    if (n < len) return false;
    std::memcpy(out, p, len);
    p += len;
    n -= len;
    return true;
  }
  uint8_t Byte() {
    uint8_t b = 0;
    Take(&b, 1);
    return b;
  }
};

void Check(bool cond, const char* what) {
  if (!cond) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  vgic::FakeLpiSink sink(4, 14);
  const uint8_t flags = in.Byte();
  vgic::ItsOptions opts;
  opts.stall_on_error = flags & 1;
  opts.cache_slots = 16;
  opts.restore_scan_budget = 1 << 16;
  ItsHarness h(&sink, opts);
  h.Enable(/*indirect=*/flags & 2);
  for (int steps = 0; steps < 64 && in.n > 0; ++steps) {
    const uint8_t op = in.Byte();
    switch (op % 8) {
      case 0:
      case 1:
      case 2: {  // a batch of commands
        const int count = 1 + in.Byte() % 8;
        std::vector<vgic::its::cmd::Raw> cmds;
        for (int i = 0; i < count; ++i) {
          vgic::its::cmd::Raw c{};
          if (!in.Take(c.data(), 32)) break;
          if (!(op & 0x80)) {
            // Bias towards valid opcodes and small IDs so commands hit.
            c[0] = (c[0] & ~0xffull & 0x0000000f00000000ull) |
                   kOpcodes[(c[0] & 0xff) % sizeof(kOpcodes)];
            c[1] &= 0x00003fff000000ffull;  // EventID < 256, pINTID < 16384
            // Either an ITT address inside RAM (MAPD) or small ICID/RDbase.
            c[2] &= (op & 0x40) ? 0x80000000007fff00ull : 0x8000000000030003ull;
            c[3] &= 0x30000ull;
          }
          cmds.push_back(c);
        }
        h.Send(cmds);
        break;
      }
      case 3: {  // register write
        uint64_t v = 0;
        in.Take(&v, 8);
        const uint64_t off = kRegs[in.Byte() % (sizeof(kRegs) / 8)];
        const uint8_t width = (op & 0x40) ? 8 : 4;
        h.its()
            .Write({0, static_cast<uint32_t>(v >> 40)}, off, width,
                   width == 4 ? (v & 0xffffffff) : v)
            .IgnoreError();
        break;
      }
      case 4: {  // MSI
        const uint8_t d = in.Byte(), e = in.Byte();
        (void)h.its().InjectMsi(d % 16, e % 64);
        break;
      }
      case 5:
        h.its().SaveTables().IgnoreError();
        break;
      case 6: {
        const vgic::ItsRegisters regs = h.its().GetRegisters();
        h.its_ptr() = std::make_unique<vgic::Its>(&sink, &h.mem(), opts);
        h.its().SetRegisters(regs).IgnoreError();
        h.its().RestoreTables().IgnoreError();
        break;
      }
      case 7: {  // guest scribbles on its tables
        uint64_t v = 0;
        in.Take(&v, 8);
        constexpr uint64_t kTargets[] = {
            ItsHarness::kCmdq, ItsHarness::kDevTable, ItsHarness::kCollTable,
            ItsHarness::kL2Page, ItsHarness::kIttBase};
        const uint8_t which = in.Byte();
        const uint64_t gpa = kTargets[which % 5] + uint64_t{in.Byte()} * 8 +
                             static_cast<uint64_t>(which / 5 % 16) * 0x1000;
        h.mem().WriteObj<uint64_t>(gpa & ~7ull, v).IgnoreError();
        break;
      }
    }
    // Invariants.
    const vgic::ItsRegisters regs = h.its().GetRegisters();
    const uint64_t qbytes = ((regs.cbaser & 0xff) + 1) * 4096;
    Check((regs.creadr & ~1ull) < qbytes, "CREADR inside the queue");
    Check((regs.creadr & 1) || !regs.enabled || !(regs.cbaser >> 63) ||
              (regs.creadr & ~1ull) == regs.cwriter,
          "queue drained unless stalled");
  }
  for (uint32_t d = 0; d < 16; ++d) {
    for (uint32_t e = 0; e < 8; ++e) {
      if (auto t = h.its().Translate(d, e)) {
        Check(t->vcpu < 4, "vCPU in range");
        Check(t->intid >= 8192 && t->intid < (1u << 14), "LPI in range");
      }
    }
  }
  return 0;
}
