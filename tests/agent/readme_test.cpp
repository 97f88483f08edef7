// docs/configuration.md carries a copy of the configuration reference; this keeps it true.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "agent/config.h"

namespace edgesync {
namespace {

TEST(Readme, ConfigurationReferenceMatchesTheOptionTable) {
  std::ifstream in(EDGESYNC_SOURCE_DIR "/docs/configuration.md");
  ASSERT_TRUE(in) << "docs/configuration.md not found";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string readme = ss.str();
  const std::string begin = "<!-- config-reference:begin -->\n", end = "<!-- config-reference:end -->";
  size_t a = readme.find(begin), b = readme.find(end);
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_EQ(readme.substr(a + begin.size(), b - a - begin.size()), ConfigReference())
      << "update docs/configuration.md: script/docs (the output of `edgesync config`)";
}

}  // namespace
}  // namespace edgesync
