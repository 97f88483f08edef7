// OptionTable: one declaration per option, its default the member's own.
#include "base/option_table.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent/config.h"
#include "plugins/registry.h"

namespace edgesync {
namespace {

struct Part {
  uint32_t count = 7;
  int64_t wait_us = 1'500'000;
  static const OptionTable<Part>& Options() {
    static const auto* t = &(*new OptionTable<Part>())
                                .Int("part.count", &Part::count, "How many.", 1, 100)
                                .Micros("part.wait", &Part::wait_us, "How long.");
    return *t;
  }
};

struct Whole {
  std::string name = "n";
  Part part;
  std::vector<std::string> tags;
};

TEST(OptionTable, AnIncludedTableWritesIntoItsMemberAndReadsItsDefaults) {
  OptionTable<Whole> table;
  table.String("whole.name", &Whole::name, "Its name.").Include(&Whole::part, Part::Options())
      .List("whole.tags", &Whole::tags, "Its tags.");
  const auto& d = table.decls();
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d[1].key, "part.count");
  EXPECT_EQ(d[1].kind, OptionKind::kInt);
  EXPECT_EQ(d[1].max, 100);
  EXPECT_EQ(d[2].kind, OptionKind::kDuration);

  const Whole defaults;
  EXPECT_EQ(std::get<int64_t>(d[1].get(defaults)), 7);
  EXPECT_DOUBLE_EQ(std::get<double>(d[2].get(defaults)), 1.5);

  Whole w;
  d[0].set(w, std::string("other"));
  d[1].set(w, int64_t{42});
  d[2].set(w, 0.25);
  d[3].set(w, std::vector<std::string>{"a", "b"});
  EXPECT_EQ(w.name, "other");
  EXPECT_EQ(w.part.count, 42u);
  EXPECT_EQ(w.part.wait_us, 250'000);
  EXPECT_EQ(w.tags, (std::vector<std::string>{"a", "b"}));
}

// A device file with `sections` after its required keys ([kafka] is the
// table open where they start) and before its one stream.
Result<Config> ParseWith(const std::string& sections) {
  return ParseConfig("[agent]\ndevice_id = \"d\"\n[kafka]\nbrokers = \"127.0.0.1:9092\"\n" + sections +
                         "[[streams]]\nname = \"s\"\ntopics = [\"t/#\"]\n",
                     "test.toml");
}

// A range its member cannot hold is a declaration's mistake, refused when
// the table is built.
TEST(OptionTableDeathTest, ARangeTheMemberCannotHoldIsRefusedWhenDeclared) {
  EXPECT_DEATH((OptionTable<Part>().Int("part.count", &Part::count, "How many.", 0, int64_t{1} << 40)),
               "option part.count: range 0..1099511627776 does not fit its member");
  EXPECT_DEATH((OptionTable<Part>().Int("part.count", &Part::count, "How many.", -1, 10)), "does not fit");
}

// The modules' options reach the configuration: a value in the file lands in
// the module's own struct, and an absent one keeps the module's default.
TEST(OptionTable, TheModulesOptionsAreParsedIntoTheirOwnStructs) {
  // Keys before the first table here are [kafka]'s (ParseWith's last table).
  Result<Config> c = ParseWith(R"(max_in_flight = 3
retry_backoff_max = "2s"
[buffer]
max_age = "1d"
)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->upload.max_in_flight, 3u);
  EXPECT_EQ(c->upload.backoff_max_us, 2'000'000);
  EXPECT_EQ(c->upload.max_in_flight_bytes, UploadLimits{}.max_in_flight_bytes);
  EXPECT_EQ(c->buffer.max_age_us, 86'400'000'000);
  EXPECT_EQ(c->buffer.max_bytes, StoreLimits{}.max_bytes);
  EXPECT_EQ(c->batch, BatchLimits{});
}

TEST(OptionTable, ADurationBeyondTenYearsIsRefusedInsteadOfOverflowing) {
  Result<Config> c = ParseWith("[buffer]\nmax_age = 1e300\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("buffer.max_age: must be at most ten years"), std::string::npos)
      << c.status().ToString();
}

// Hostile values are refused with the key's name, never thrown or wrapped:
// a duration that is no number, or too many digits for one, a size whose
// bytes overflow 64 bits.
TEST(OptionTable, MalformedDurationsAndOverflowingSizesAreRefusedNotThrown) {
  const std::string many_digits(400, '9');
  const std::pair<std::string, std::string> cases[] = {
      {"[buffer]\nsync_interval = \".\"\n", "buffer.sync_interval: not a duration"},
      {"[buffer]\nsync_interval = \"..ms\"\n", "buffer.sync_interval: not a duration"},
      {"[buffer]\nsync_interval = \"1.2.3s\"\n", "buffer.sync_interval: not a duration"},
      {"[buffer]\nsync_interval = \".s\"\n", "buffer.sync_interval: not a duration"},
      {"[buffer]\nmax_age = \"" + many_digits + "s\"\n", "buffer.max_age: not a duration"},
      {"[buffer]\nmax_age = inf\n", "buffer.max_age: is too long"},
      {"[buffer]\nmax_age = nan\n", "buffer.max_age: must not be negative"},
      {"[buffer]\nmin_free_bytes = \"17179869184GiB\"\n", "buffer.min_free_bytes: not a size"},
      {"[buffer]\nmin_free_bytes = \"99999999999GiB\"\n", "buffer.min_free_bytes: not a size"},
  };
  for (const auto& [section, expected] : cases) {
    SCOPED_TRACE(section);
    Result<Config> c = ParseWith(section);
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find(expected), std::string::npos) << c.status().ToString();
  }
}

// Every plugin type reads its settings through its declarations: a key it
// does not declare is refused, naming exactly the keys its reference lists.
TEST(OptionTable, EveryPluginTypeRefusesKeysItsDeclarationsDoNotList) {
  ASSERT_GE(PluginTypeTable().size(), 5u);
  for (const PluginType* type : PluginTypeTable()) {
    SCOPED_TRACE(type->name);
    const std::string reference = type->settings_reference();
    std::vector<std::string> keys;
    for (size_t at = 0; (at = reference.find("| `", at)) != std::string::npos;) {
      const size_t end = reference.find('`', at + 3);
      keys.push_back(reference.substr(at + 3, end - at - 3));
      at = end;
    }
    ASSERT_FALSE(keys.empty());
    std::string listed;
    for (const std::string& k : keys) listed += (listed.empty() ? "" : ", ") + k;

    toml::table t = toml::parse("not_a_setting = 1\n");
    Settings s(t, "plugins.x");
    EXPECT_FALSE(MakePlugin(type->name, s, "", "").ok());
    bool named = false;
    for (const std::string& problem : s.problems()) {
      if (problem.find("plugins.x.not_a_setting: unknown key (this plugin's keys: " + listed + ")") !=
          std::string::npos) {
        named = true;
      }
    }
    EXPECT_TRUE(named) << s.status().ToString();
  }
}

}  // namespace
}  // namespace edgesync
