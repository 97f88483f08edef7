#include "agent/toml_bounds.h"

#include <vector>

namespace edgesync {
namespace {

// Reads TOML text byte by byte, keeping only what depth needs: whether a
// key or a value is being read, the dotted parts of the key, and the depth
// of each open array or inline table.
class DepthScanner {
 public:
  DepthScanner(std::string_view text, size_t max_depth) : t_(text), max_(max_depth) {}

  // The 1-based line where the text first goes deeper than max_depth; 0: never.
  size_t Scan() {
    while (i_ < t_.size()) {
      const char c = t_[i_];
      if (c == '\n') {
        ++line_;
        ++i_;
        if (open_.empty()) StartKey(/*line_start=*/true);
        continue;
      }
      if (c == ' ' || c == '\t' || c == '\r') {
        ++i_;
        continue;
      }
      if (c == '#') {
        while (i_ < t_.size() && t_[i_] != '\n') ++i_;
        continue;
      }
      if (c == '"' || c == '\'') {
        SkipString();
        line_start_ = false;
        after_equals_ = false;
        continue;
      }
      if (key_ && c == '[' && line_start_ && open_.empty()) {
        if (!Header()) return line_;
        continue;
      }
      line_start_ = false;
      ++i_;
      if (key_) {
        if (c == '.') {
          ++parts_;
        } else if (c == '=') {
          value_depth_ = Current() + parts_;
          if (value_depth_ > max_) return line_;
          key_ = false;
          after_equals_ = true;
        } else if (c == '}' && !open_.empty() && open_.back().bracket == '{') {
          open_.pop_back();  // an empty inline table
          key_ = false;
        }
        continue;
      }
      if (c == '[' || c == '{') {
        const size_t depth = after_equals_ ? value_depth_ : Current() + 1;
        if (depth > max_) return line_;
        open_.push_back({c, depth});
        after_equals_ = false;
        if (c == '{') StartKey(/*line_start=*/false);
        continue;
      }
      after_equals_ = false;
      if (c == ']' || c == '}') {
        if (!open_.empty()) open_.pop_back();
      } else if (c == ',' && !open_.empty() && open_.back().bracket == '{') {
        StartKey(/*line_start=*/false);
      }
    }
    return 0;
  }

 private:
  struct Open {
    char bracket;  // '[' array, '{' inline table
    size_t depth;  // the depth of that array or table
  };

  // The depth of the table keys are read in now.
  size_t Current() const { return open_.empty() ? table_depth_ : open_.back().depth; }

  void StartKey(bool line_start) {
    key_ = true;
    parts_ = 1;
    line_start_ = line_start;
    after_equals_ = false;
  }

  // A [table] or [[array of tables]] header at i_: its dotted parts set the
  // depth of the keys after it. False when that is too deep.
  bool Header() {
    ++i_;
    size_t parts = 1;
    if (i_ < t_.size() && t_[i_] == '[') {
      ++i_;
      ++parts;  // the array's element is one table further down
    }
    while (i_ < t_.size() && t_[i_] != ']' && t_[i_] != '\n') {
      if (t_[i_] == '"' || t_[i_] == '\'') {
        SkipString();
        continue;
      }
      if (t_[i_] == '.') ++parts;
      ++i_;
    }
    table_depth_ = parts;
    line_start_ = false;
    // The rest of the line (']', ']]', a comment) is read as usual.
    return parts <= max_;
  }

  // Skips the string starting at i_: "basic", 'literal', and their
  // multi-line forms. An unterminated one ends the scan of the line.
  void SkipString() {
    const char q = t_[i_];
    const bool basic = q == '"';
    if (t_.compare(i_, 3, std::string(3, q)) == 0) {
      i_ += 3;
      while (i_ < t_.size()) {
        if (basic && t_[i_] == '\\') {
          i_ += 2;
          continue;
        }
        if (t_[i_] == '\n') ++line_;
        if (t_.compare(i_, 3, std::string(3, q)) == 0) {
          i_ += 3;
          // Up to two more quotes belong to the content ("""a"""" is a").
          for (int k = 0; k < 2 && i_ < t_.size() && t_[i_] == q; ++k) ++i_;
          return;
        }
        ++i_;
      }
      return;
    }
    ++i_;
    while (i_ < t_.size() && t_[i_] != '\n') {
      if (basic && t_[i_] == '\\') {
        i_ += 2;
        continue;
      }
      if (t_[i_++] == q) return;
    }
  }

  std::string_view t_;
  size_t max_;
  size_t i_ = 0;
  size_t line_ = 1;
  size_t table_depth_ = 0;  // of the last [table] header: 0 for the root
  std::vector<Open> open_;
  bool key_ = true;          // reading a key (else a value)
  bool line_start_ = true;   // nothing but blanks read on this line yet
  bool after_equals_ = false;  // the next bracket is a key's own value
  size_t parts_ = 1;         // dotted parts of the key being read
  size_t value_depth_ = 0;   // depth of the value of the last key read
};

}  // namespace

Status CheckTomlDepth(std::string_view text, const std::string& origin, size_t max_depth) {
  DepthScanner scan(text, max_depth);
  const size_t line = scan.Scan();
  if (line == 0) return Status::OK();
  return Status::InvalidArgument(origin + ":" + std::to_string(line) + ": syntax: tables nested deeper than " +
                                 std::to_string(max_depth) +
                                 " levels (a key or [table] header with that many dotted parts, or values "
                                 "nested that deep): no edgesync configuration needs that; refused unread");
}

}  // namespace edgesync
