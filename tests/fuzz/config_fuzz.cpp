// libFuzzer target for ParseConfig, the reader of the agent's TOML file (an
// operator's file, or one a fleet bundle brings). Also linked with
// replay_main.cpp into config_fuzz_replay, which ctest runs over
// corpus/config/ with any compiler.
//
// Side effects are kept out: an input that mentions "profile" (reads another
// file), "external" (dlopens a plugin), "lua" (reads a script) or
// "key_file" (the pci token key: a file read whole, /dev/zero would never
// end) is skipped. Everything else ParseConfig does is in memory.
//
// Besides "no crash, no leak, no ASan/UBSan report", these must hold:
//  - the result is a Config or an InvalidArgument with a message (the
//    operator must learn what is wrong, never an empty error);
//  - parsing is a pure function: the same text parses to the same Config
//    (or the same message) a second time;
//  - a Config has streams with unique, non-empty names and every plugin a
//    stream names exists.
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {
constexpr const char* kTarget = "config_fuzz";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace edgesync;
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (std::string_view risky : {"profile", "external", "lua", "key_file"}) {
    if (text.find(risky) != std::string::npos) return 0;
  }
  Result<Config> c = ParseConfig(text, "fuzz.toml");
  Result<Config> again = ParseConfig(text, "fuzz.toml");
  if (!c.ok()) {
    FUZZ_CHECK(c.status().code() == Status::Code::kInvalidArgument, c.status().ToString());
    FUZZ_CHECK(!c.status().message().empty(), "");
    FUZZ_CHECK(!again.ok() && again.status().message() == c.status().message(), "second parse differs");
    return 0;
  }
  FUZZ_CHECK(again.ok(), again.status().ToString());
  // Plugin instances are compared by pointer: compare what does not hold one.
  FUZZ_CHECK(SameButPlugins(*c, *again), "second parse differs");
  for (size_t i = 0; i < c->streams.size(); ++i) {
    const StreamConfig& s = c->streams[i];
    FUZZ_CHECK(!s.name.empty(), "stream without a name");
    for (size_t k = 0; k < i; ++k) FUZZ_CHECK(c->streams[k].name != s.name, s.name);
    for (const std::string& p : s.plugins) FUZZ_CHECK(c->FindPlugin(p) != nullptr, p);
  }
  return 0;
}
