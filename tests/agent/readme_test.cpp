// The documentation's structure stays true: docs/configuration.md carries a
// copy of the configuration reference, README.md stays a short front page,
// and every relative link in README.md and docs/*.md reaches a file (and,
// for #anchors into Markdown, a heading of it).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agent/config.h"

namespace edgesync {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = EDGESYNC_SOURCE_DIR;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The Markdown pages the checks cover: README.md and docs/*.md.
std::vector<fs::path> Pages() {
  std::vector<fs::path> pages = {kSource / "README.md"};
  for (const fs::directory_entry& e : fs::directory_iterator(kSource / "docs")) {
    if (e.path().extension() == ".md") pages.push_back(e.path());
  }
  std::sort(pages.begin(), pages.end());
  return pages;
}

// Lines outside ``` fences.
std::vector<std::string> ProseLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  bool fence = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("```", 0) == 0) {
      fence = !fence;
      continue;
    }
    if (!fence) out.push_back(line);
  }
  return out;
}

// GitHub's anchor for a heading: lower case, punctuation but '-' and '_'
// dropped, spaces as '-'; a repeated anchor gets -1, -2, ...
std::set<std::string> Anchors(const std::string& text) {
  std::set<std::string> anchors;
  for (const std::string& line : ProseLines(text)) {
    size_t hashes = line.find_first_not_of('#');
    if (hashes == 0 || hashes == std::string::npos || hashes > 6 || line[hashes] != ' ') continue;
    std::string slug;
    for (unsigned char c : line.substr(hashes + 1)) {
      if (std::isalnum(c) || c == '-' || c == '_') {
        slug += static_cast<char>(std::tolower(c));
      } else if (c == ' ') {
        slug += '-';
      } else if (c >= 0x80) {
        slug += static_cast<char>(c);  // non-ASCII letters stay
      }
    }
    std::string unique = slug;
    for (int n = 1; anchors.count(unique) != 0; ++n) unique = slug + "-" + std::to_string(n);
    anchors.insert(unique);
  }
  return anchors;
}

struct Link {
  int line;
  std::string target;
};

// The targets of inline links `[text](target)` outside code fences and
// code spans.
std::vector<Link> Links(const std::string& text) {
  std::vector<Link> links;
  int n = 0;
  std::istringstream in(text);
  bool fence = false;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.rfind("```", 0) == 0) {
      fence = !fence;
      continue;
    }
    if (fence) continue;
    bool code = false;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '`') code = !code;
      if (code || line[i] != ']' || i + 1 >= line.size() || line[i + 1] != '(') continue;
      size_t close = line.find(')', i + 2);
      if (close == std::string::npos) continue;
      links.push_back({n, line.substr(i + 2, close - i - 2)});
      i = close;
    }
  }
  return links;
}

TEST(Readme, ConfigurationReferenceMatchesTheOptionTable) {
  const std::string doc = Slurp(kSource / "docs/configuration.md");
  ASSERT_FALSE(doc.empty()) << "docs/configuration.md not found";
  const std::string begin = "<!-- config-reference:begin -->\n", end = "<!-- config-reference:end -->";
  size_t a = doc.find(begin), b = doc.find(end);
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_EQ(doc.substr(a + begin.size(), b - a - begin.size()), ConfigReference())
      << "update docs/configuration.md: script/docs (the output of `edgesync config`)";
  EXPECT_EQ(Slurp(kSource / "README.md").find(begin), std::string::npos)
      << "the configuration reference lives in docs/configuration.md only";
}

TEST(Readme, StaysAShortFrontPage) {
  const std::string readme = Slurp(kSource / "README.md");
  ASSERT_FALSE(readme.empty()) << "README.md not found";
  const auto lines = std::count(readme.begin(), readme.end(), '\n');
  EXPECT_LE(lines, 220) << "README.md is the front page: move the detail to a page in docs/";
  // The command CI runs (.ci/run) and the README promises.
  EXPECT_NE(readme.find("script/test "), std::string::npos);
  EXPECT_NE(readme.find("script/demo "), std::string::npos);
}

TEST(Readme, EveryRelativeLinkReachesAFileAndAHeading) {
  for (const fs::path& page : Pages()) {
    const std::string text = Slurp(page);
    const std::string name = fs::relative(page, kSource).string();
    for (const Link& link : Links(text)) {
      const std::string& t = link.target;
      const std::string where = name + ":" + std::to_string(link.line) + ": (" + t + ")";
      if (t.find("://") != std::string::npos || t.rfind("mailto:", 0) == 0) continue;
      EXPECT_NE(t.front(), '/') << where << ": a link within the repository is relative";
      const size_t hash = t.find('#');
      const std::string file = t.substr(0, hash), anchor = hash == std::string::npos ? "" : t.substr(hash + 1);
      const fs::path target = file.empty() ? page : page.parent_path() / file;
      const std::string inside = fs::relative(fs::weakly_canonical(target), fs::weakly_canonical(kSource)).string();
      EXPECT_FALSE(inside.rfind("..", 0) == 0) << where << ": points outside the repository";
      if (!fs::exists(target)) {
        ADD_FAILURE() << where << ": no such file";
        continue;
      }
      if (anchor.empty() || target.extension() != ".md") continue;
      const std::set<std::string> anchors = Anchors(Slurp(target));
      EXPECT_EQ(anchors.count(anchor), 1u) << where << ": no heading with that anchor in " << target.filename();
    }
  }
}

// The design lives in docs/architecture.md; a page names no file outside
// the repository (links are checked above) and no home directory.
TEST(Readme, NoPageNamesADocumentOutsideTheRepository) {
  for (const fs::path& page : Pages()) {
    const std::string text = Slurp(page);
    for (const char* bad : {"/home/", "DESIGN.md"}) {
      EXPECT_EQ(text.find(bad), std::string::npos) << page.filename() << " mentions " << bad;
    }
  }
}

}  // namespace
}  // namespace edgesync
