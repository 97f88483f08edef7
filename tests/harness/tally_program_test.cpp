// The edgesync-tally program: its summary line and exit code.
#include <gtest/gtest.h>

#include <fstream>
#include <optional>

#include "harness/process.h"

namespace edgesync::harness {
namespace {

std::string Record(const std::string& payload_json) {
  return R"({"device":"edge-1","stream":"payments","batch":7,"topic":"t","received_at":"2024-05-01T10:00:00Z","payload":)" +
         payload_json + "}\n";
}

class TallyProgramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<TempDir> d = TempDir::Create("harness-tally");
    ASSERT_TRUE(d.ok());
    dir_.emplace(std::move(d.value()));
  }
  // Runs edgesync-tally; its stdout's first line and exit code.
  std::pair<std::string, int> Run(const std::string& records, const std::string& manifest) {
    { std::ofstream(dir_->File("records.ndjson")) << records; }
    { std::ofstream(dir_->File("manifest.csv")) << manifest; }
    SpawnOptions o;
    o.argv = {ProgramPath("edgesync-tally"), "--records", dir_->File("records.ndjson"),
              "--manifest", dir_->File("manifest.csv")};
    o.pipe_stdout = true;
    Result<Process> p = Process::Spawn(o);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return {"", -1};
    Result<std::string> line = p->ReadLine(std::chrono::seconds(30));
    Result<int> code = p->Wait(std::chrono::seconds(30));
    return {line.ok() ? *line : line.status().ToString(), code.ok() ? *code : -1};
  }
  std::optional<TempDir> dir_;
};

TEST_F(TallyProgramTest, ExitCodeSaysWhetherAnythingWasLost) {
  std::string two = Record(R"({"device":"cs-0001","seq":1})") +
                    Record(R"({"device":"cs-0001","seq":2})");
  auto [line, code] = Run(two + Record(R"({"device":"cs-0001","seq":2})"), "cs-0001,2\n");
  EXPECT_EQ(line, "summary: published=2 arrived=2 lost=0 duplicates=1");
  EXPECT_EQ(code, 0);

  std::tie(line, code) = Run(two, "cs-0001,3\n");
  EXPECT_EQ(line, "summary: published=3 arrived=2 lost=1 duplicates=0");
  EXPECT_EQ(code, 1);

  std::tie(line, code) = Run(two, "cs-0001;3\n");
  EXPECT_EQ(code, 2);  // a manifest it cannot read
}

}  // namespace
}  // namespace edgesync::harness
