#include "hv/control/failpoint.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "hv/base/locks.h"

namespace hv::control {
namespace {

struct Action {
  enum class Kind { kError, kAbort, kSleep } kind = Kind::kError;
  uint64_t sleep_ms = 0;
  int64_t remaining = -1;  // -1: unlimited
};

struct Table {
  Mutex mu;
  bool loaded ABSL_GUARDED_BY(mu) = false;
  std::map<std::string, Action, std::less<>> points ABSL_GUARDED_BY(mu);
};

Table& GetTable() {
  static Table* t = new Table;
  return *t;
}

absl::Status Parse(std::string_view spec,
                   std::map<std::string, Action, std::less<>>* out) {
  for (absl::string_view entry :
       absl::StrSplit(absl::string_view(spec.data(), spec.size()), ',',
                      absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    std::vector<absl::string_view> kv = absl::StrSplit(entry, '=');
    if (kv.size() != 2 || kv[0].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("failpoints: '", entry, "' is not NAME=ACTION"));
    }
    Action a;
    absl::string_view act = kv[1];
    if (size_t star = act.find('*'); star != absl::string_view::npos) {
      uint64_t n = 0;
      if (!absl::SimpleAtoi(act.substr(star + 1), &n)) {
        return absl::InvalidArgumentError(
            absl::StrCat("failpoints: bad count in '", entry, "'"));
      }
      a.remaining = static_cast<int64_t>(n);
      act = act.substr(0, star);
    }
    if (act == "error") {
      a.kind = Action::Kind::kError;
    } else if (act == "abort") {
      a.kind = Action::Kind::kAbort;
    } else if (act.substr(0, 6) == "sleep:" &&
               absl::SimpleAtoi(act.substr(6), &a.sleep_ms)) {
      a.kind = Action::Kind::kSleep;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "failpoints: action in '", entry, "' is not error|abort|sleep:MS"));
    }
    (*out)[std::string(kv[0])] = a;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SetFailpoints(std::string_view spec) {
  std::map<std::string, Action, std::less<>> points;
  if (absl::Status s = Parse(spec, &points); !s.ok()) return s;
  Table& t = GetTable();
  MutexLock l(&t.mu);
  t.points = std::move(points);
  t.loaded = true;
  return absl::OkStatus();
}

absl::Status Failpoint(std::string_view name) {
  Table& t = GetTable();
  Action a;
  {
    MutexLock l(&t.mu);
    if (!t.loaded) {
      t.loaded = true;
      if (const char* env = std::getenv("HV_FAILPOINTS"); env != nullptr) {
        if (absl::Status s = Parse(env, &t.points); !s.ok()) {
          std::fprintf(stderr, "%s\n", s.ToString().c_str());
        }
      }
    }
    auto it = t.points.find(name);
    if (it == t.points.end()) return absl::OkStatus();
    if (it->second.remaining == 0) return absl::OkStatus();
    if (it->second.remaining > 0) --it->second.remaining;
    a = it->second;
  }
  switch (a.kind) {
    case Action::Kind::kError:
      return absl::InternalError(absl::StrCat("failpoint ", std::string(name)));
    case Action::Kind::kAbort:
      std::fprintf(stderr, "failpoint %.*s: SIGKILL\n",
                   static_cast<int>(name.size()), name.data());
      kill(getpid(), SIGKILL);
      pause();
      _exit(137);
    case Action::Kind::kSleep:
      std::this_thread::sleep_for(std::chrono::milliseconds(a.sleep_ms));
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace hv::control
