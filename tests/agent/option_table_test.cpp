// OptionTable: one declaration per option, its default the member's own.
#include "base/option_table.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent/config.h"

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

// The modules' options reach the configuration: a value in the file lands in
// the module's own struct, and an absent one keeps the module's default.
TEST(OptionTable, TheModulesOptionsAreParsedIntoTheirOwnStructs) {
  Result<Config> c = ParseConfig(R"(
[agent]
device_id = "d"
[kafka]
brokers = "127.0.0.1:9092"
max_in_flight = 3
retry_backoff_max = "2s"
[buffer]
max_age = "1d"
[[streams]]
name = "s"
topics = ["t/#"]
)", "test.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->upload.max_in_flight, 3u);
  EXPECT_EQ(c->upload.backoff_max_us, 2'000'000);
  EXPECT_EQ(c->upload.max_in_flight_bytes, UploadLimits{}.max_in_flight_bytes);
  EXPECT_EQ(c->buffer.max_age_us, 86'400'000'000);
  EXPECT_EQ(c->buffer.max_bytes, StoreLimits{}.max_bytes);
  EXPECT_EQ(c->batch, BatchLimits{});
}

TEST(OptionTable, ADurationBeyondTenYearsIsRefusedInsteadOfOverflowing) {
  Result<Config> c = ParseConfig(R"(
[agent]
device_id = "d"
[kafka]
brokers = "127.0.0.1:9092"
[buffer]
max_age = 1e300
[[streams]]
name = "s"
topics = ["t/#"]
)", "test.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("buffer.max_age: must be at most ten years"), std::string::npos)
      << c.status().ToString();
}

}  // namespace
}  // namespace edgesync
