// hv-hwsim: the simulated physical machine as a process (DESIGN §2).
//
//   hv-hwsim [--config=FILE] [--list]
//            [--fire=ID,VECTOR,COUNT[,RATE_HZ]]...
//
// Builds the inventory (default: 4 PCI functions × 8 MSI-X vectors, 2
// platform lines; --config overrides, format in hwsim.h), prints it
// (id, kind, requester ID, vectors, window size), runs the requested
// generators, prints each vector's counters and exits. Serving devices to
// hvd over a socket (SCM_RIGHTS of window memfds and eventfds) belongs to
// the management plane; this binary is the inventory/generator front end.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tools/hwsim/hwsim.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: hv-hwsim [--config=FILE] [--list] "
               "[--fire=ID,VECTOR,COUNT[,RATE_HZ]]...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config;
  bool list = false;
  struct FireReq {
    std::string id;
    uint32_t vector = 0;
    uint64_t count = 0;
    uint32_t rate = 0;
  };
  std::vector<FireReq> fires;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.rfind("--config=", 0) == 0) {
      config = std::string(a.substr(9));
    } else if (a == "--list") {
      list = true;
    } else if (a.rfind("--fire=", 0) == 0) {
      std::vector<std::string> p =
          absl::StrSplit(std::string(a.substr(7)), ',');
      FireReq f;
      if (p.size() < 3 || p.size() > 4 || p[0].empty() ||
          !absl::SimpleAtoi(p[1], &f.vector) ||
          !absl::SimpleAtoi(p[2], &f.count) ||
          (p.size() == 4 && !absl::SimpleAtoi(p[3], &f.rate))) {
        return Usage();
      }
      f.id = p[0];
      fires.push_back(f);
    } else {
      return Usage();
    }
  }
  hwsim::InventorySpec spec = hwsim::InventorySpec::Default();
  if (!config.empty()) {
    std::ifstream in(config);
    if (!in) {
      std::fprintf(stderr, "hv-hwsim: cannot read %s\n", config.c_str());
      return 2;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto parsed = hwsim::InventorySpec::Parse(ss.str());
    if (!parsed.ok()) {
      std::fprintf(stderr, "hv-hwsim: %s\n",
                   std::string(parsed.status().message()).c_str());
      return 2;
    }
    spec = *parsed;
  }
  auto machine = hwsim::Machine::Create(spec);
  if (!machine.ok()) {
    std::fprintf(stderr, "hv-hwsim: %s\n",
                 std::string(machine.status().message()).c_str());
    return 1;
  }
  if (list || fires.empty()) {
    for (const auto& d : (*machine)->devices()) {
      std::printf("%-14s %-8s rid=0x%04x vectors=%u window=%llu\n",
                  d->id().c_str(),
                  d->kind() == hwsim::DeviceKind::kPci ? "pci" : "platform",
                  d->requester_id(), d->num_vectors(),
                  static_cast<unsigned long long>(d->window_size()));
    }
  }
  for (const auto& f : fires) {
    if (absl::Status s =
            (*machine)->StartGenerator(f.id, f.vector, f.count, 1, f.rate);
        !s.ok()) {
      std::fprintf(stderr, "hv-hwsim: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  for (const auto& f : fires) {
    (*machine)->WaitGenerator(f.id);
    hwsim::Device* d = (*machine)->Find(f.id);
    const auto c = d->counters(f.vector);
    std::printf("%s vector %u: fired=%llu queued=%llu overflow=%llu\n",
                f.id.c_str(), f.vector,
                static_cast<unsigned long long>(c.fired),
                static_cast<unsigned long long>(c.queued),
                static_cast<unsigned long long>(c.ring_overflow));
  }
  return 0;
}
