#include "plugins/json.h"

#include "base/json_text.h"
#include "base/utf8.h"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <cstring>

namespace edgesync {

struct Json::Reader {
  std::string escape_buf;
};

Json::Json() : reader_(std::make_unique<Reader>()) {}
Json::~Json() = default;

namespace {

unsigned Hex4(std::string_view s, size_t at) {
  unsigned v = 0;
  for (size_t i = at; i < at + 4 && i < s.size(); ++i) v = v * 16 + static_cast<unsigned>(std::max(0, HexDigitValue(s[i])));
  return v;
}

// `s` is escaped JSON string content that simdjson (or AppendEscaped) made
// or checked, so every escape in it is well formed.
void Unescape(std::string_view s, std::string* out) {
  out->clear();
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c != '\\' || i + 1 >= s.size()) {
      out->push_back(c);
      continue;
    }
    char e = s[++i];
    switch (e) {
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'u': {
        unsigned cp = Hex4(s, i + 1);
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < s.size() && s[i + 1] == '\\' && s[i + 2] == 'u') {
          unsigned lo = Hex4(s, i + 3);
          if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          }
        }
        // A lone surrogate has no UTF-8 form: the replacement character
        // keeps the text valid (found by fuzzing).
        if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
        AppendUtf8(cp, out);
        break;
      }
      default: out->push_back(e); break;  // " \ /
    }
  }
}

bool NeedsEscape(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == '"' || c == '\\') return true;
  }
  return false;
}

}  // namespace

void Json::AppendEscaped(std::string_view s, std::string* out) { AppendJsonEscaped(s, out); }

Json::Ref Json::Add(Type t, std::string_view text, bool escaped) {
  Node n;
  n.type = t;
  n.text = text;
  n.escaped = escaped;
  nodes_.push_back(n);
  return static_cast<Ref>(nodes_.size() - 1);
}

std::string_view Json::Keep(std::string_view s) {
  if (s.empty()) return {};
  while (chunk_ < chunks_.size() && chunks_[chunk_].capacity() - chunks_[chunk_].size() < s.size()) ++chunk_;
  if (chunk_ == chunks_.size()) {
    chunks_.emplace_back();
    chunks_.back().reserve(std::max<size_t>(4096, s.size()));
  }
  std::string& c = chunks_[chunk_];
  const size_t at = c.size();
  c.append(s);  // within capacity: earlier views stay valid
  return std::string_view(c.data() + at, s.size());
}

std::string_view Json::KeepEscaped(std::string_view s, bool* escaped) {
  if (!NeedsEscape(s)) {
    *escaped = false;
    return Keep(s);
  }
  std::string& buf = reader_->escape_buf;
  buf.clear();
  AppendEscaped(s, &buf);
  *escaped = buf.find('\\') != std::string::npos;
  return Keep(buf);
}

// A strict RFC 8259 reader (UTF-8 is checked once, up front, by simdjson)
// that builds the nodes with views into the text. Recursive, bounded by
// kMaxDepth.
struct JsonBuilder {
  Json* json;
  const char* begin;
  const char* p;
  const char* end;
  const char* error = nullptr;
  std::string why;

  bool Fail(const char* what) {
    if (error == nullptr) {
      error = p;
      why = what;
    }
    return false;
  }
  void Space() {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  }
  Json::Ref Add(Json::Type t, std::string_view text, bool escaped) {
    const Json::Ref r = json->Add(t, text, escaped);
    json->nodes_[r].changed = false;
    return r;
  }
  bool Literal(std::string_view word, Json::Type t, Json::Ref* out) {
    if (static_cast<size_t>(end - p) < word.size() || std::string_view(p, word.size()) != word) {
      return Fail("not a JSON value");
    }
    *out = Add(t, word, false);
    p += word.size();
    return true;
  }
  // At an opening quote: the content up to the closing one.
  bool String(std::string_view* content, bool* escaped) {
    const char* start = ++p;
    *escaped = false;
    while (p < end) {
      const unsigned char c = static_cast<unsigned char>(*p);
      if (c == '"') {
        *content = std::string_view(start, static_cast<size_t>(p - start));
        ++p;
        return true;
      }
      if (c < 0x20) return Fail("control character in a string (escape it)");
      if (c == '\\') {
        *escaped = true;
        if (++p >= end) break;
        switch (*p) {
          case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': break;
          case 'u':
            for (int i = 0; i < 4; ++i) {
              if (++p >= end || HexDigitValue(*p) < 0) return Fail("bad \\u escape");
            }
            break;
          default: return Fail("bad escape in a string");
        }
      }
      ++p;
    }
    return Fail("unterminated string");
  }
  bool Digits() {
    const char* s = p;
    while (p < end && *p >= '0' && *p <= '9') ++p;
    return p > s;
  }
  bool Number(Json::Ref* out) {
    const char* s = p;
    if (*p == '-') ++p;
    if (p < end && *p == '0') {
      ++p;
    } else if (!Digits()) {
      return Fail("bad number");
    }
    if (p < end && *p == '.') {
      ++p;
      if (!Digits()) return Fail("bad number: digits must follow '.'");
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
      ++p;
      if (p < end && (*p == '+' || *p == '-')) ++p;
      if (!Digits()) return Fail("bad number: digits must follow the exponent");
    }
    *out = Add(Json::Type::kNumber, std::string_view(s, static_cast<size_t>(p - s)), false);
    return true;
  }
  // A container's parsed text, from its opening bracket to p.
  void Span(Json::Ref r, const char* start) {
    json->nodes_[r].text = std::string_view(start, static_cast<size_t>(p - start));
  }
  void Link(Json::Ref parent, Json::Ref child) {
    auto& n = json->nodes_;
    n[child].parent = parent;
    n[child].prev = n[parent].last;
    if (n[parent].last != Json::kNone) {
      n[n[parent].last].next = child;
    } else {
      n[parent].first = child;
    }
    n[parent].last = child;
  }
  bool Value(int depth, Json::Ref* out) {
    if (depth > Json::kMaxDepth) return Fail("nested too deep");
    Space();
    if (p >= end) return Fail("unexpected end");
    switch (*p) {
      case '{': {
        const char* start = p++;
        const Json::Ref o = Add(Json::Type::kObject, {}, false);
        *out = o;
        Space();
        if (p < end && *p == '}') {
          ++p;
          Span(o, start);
          return true;
        }
        for (;;) {
          Space();
          if (p >= end || *p != '"') return Fail("expected a member name in quotes");
          std::string_view key;
          bool key_escaped;
          if (!String(&key, &key_escaped)) return false;
          json->name_signature_ |= key_escaped ? ~0ull : Json::NameBit(key);
          Space();
          if (p >= end || *p != ':') return Fail("expected ':'");
          ++p;
          Json::Ref child;
          if (!Value(depth + 1, &child)) return false;
          json->nodes_[child].key = key;
          json->nodes_[child].key_escaped = key_escaped;
          Link(o, child);
          Space();
          if (p < end && *p == ',') {
            ++p;
            continue;
          }
          if (p < end && *p == '}') {
            ++p;
            Span(o, start);
            return true;
          }
          return Fail("expected ',' or '}'");
        }
      }
      case '[': {
        const char* start = p++;
        const Json::Ref a = Add(Json::Type::kArray, {}, false);
        *out = a;
        Space();
        if (p < end && *p == ']') {
          ++p;
          Span(a, start);
          return true;
        }
        for (;;) {
          Json::Ref child;
          if (!Value(depth + 1, &child)) return false;
          Link(a, child);
          Space();
          if (p < end && *p == ',') {
            ++p;
            continue;
          }
          if (p < end && *p == ']') {
            ++p;
            Span(a, start);
            return true;
          }
          return Fail("expected ',' or ']'");
        }
      }
      case '"': {
        std::string_view content;
        bool escaped;
        if (!String(&content, &escaped)) return false;
        *out = Add(Json::Type::kString, content, escaped);
        return true;
      }
      case 't': return Literal("true", Json::Type::kBool, out);
      case 'f': return Literal("false", Json::Type::kBool, out);
      case 'n': return Literal("null", Json::Type::kNull, out);
      default:
        if (*p == '-' || (*p >= '0' && *p <= '9')) return Number(out);
        return Fail("not a JSON value");
    }
  }
};

Status Json::Parse(std::string_view text) {
  nodes_.clear();
  root_ = kNone;
  dirty_ = false;
  name_signature_ = 0;
  for (std::string& c : chunks_) c.clear();
  chunk_ = 0;
  text_.assign(text);
  original_ = text_;
  if (!simdjson::validate_utf8(text_.data(), text_.size())) {
    return Status::InvalidArgument("invalid JSON: not valid UTF-8");
  }
  JsonBuilder b{this, text_.data(), text_.data(), text_.data() + text_.size()};
  Ref r = kNone;
  bool ok = b.Value(0, &r);
  if (ok) {
    b.Space();
    if (b.p != b.end) ok = b.Fail("more after the JSON value");
  }
  if (!ok) {
    nodes_.clear();
    if (b.why == "nested too deep") {
      return Status::InvalidArgument("JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    return Status::InvalidArgument("invalid JSON at byte " + std::to_string(b.error - b.begin) + ": " + b.why);
  }
  root_ = r;
  return Status::OK();
}

void Json::Serialize(std::string* out) const {
  out->clear();
  if (!dirty_) {
    out->assign(original_);
    return;
  }
  out->reserve(original_.size() + 256);
  if (root_ != kNone) Write(root_, out);
}

void Json::Write(Ref r, std::string* out) const {
  const Node& n = nodes_[r];
  switch (n.type) {
    case Type::kObject:
    case Type::kArray: {
      if (!n.changed) {  // as it was parsed, inside and out
        out->append(n.text);
        break;
      }
      const bool obj = n.type == Type::kObject;
      out->push_back(obj ? '{' : '[');
      for (Ref c = n.first; c != kNone; c = nodes_[c].next) {
        if (c != n.first) out->push_back(',');
        if (obj) {
          out->push_back('"');
          out->append(nodes_[c].key);
          out->append("\":");
        }
        Write(c, out);
      }
      out->push_back(obj ? '}' : ']');
      break;
    }
    case Type::kString:
      out->push_back('"');
      out->append(n.text);
      out->push_back('"');
      break;
    default:
      out->append(n.text);
  }
}

std::optional<double> Json::number(Ref r) const {
  const Node& n = nodes_[r];
  if (n.type != Type::kNumber) return std::nullopt;
  double d = 0;
  auto [p, ec] = std::from_chars(n.text.data(), n.text.data() + n.text.size(), d);
  if (ec != std::errc()) return std::nullopt;
  return d;
}

std::string_view Json::str(Ref r, std::string* scratch) const {
  const Node& n = nodes_[r];
  if (!n.escaped) return n.text;
  Unescape(n.text, scratch);
  return *scratch;
}

std::string_view Json::key(Ref member, std::string* scratch) const {
  const Node& n = nodes_[member];
  if (!n.key_escaped) return n.key;
  Unescape(n.key, scratch);
  return *scratch;
}

size_t Json::size(Ref container) const {
  size_t k = 0;
  for (Ref c = nodes_[container].first; c != kNone; c = nodes_[c].next) ++k;
  return k;
}

Json::Ref Json::Find(Ref object, std::string_view key) const {
  if (!IsObject(object)) return kNone;
  std::string scratch;
  for (Ref c = nodes_[object].first; c != kNone; c = nodes_[c].next) {
    const Node& n = nodes_[c];
    if (n.key_escaped ? this->key(c, &scratch) == key : n.key == key) return c;
  }
  return kNone;
}

Json::Ref Json::FindPath(std::string_view path) const {
  Ref at = root_;
  while (at != kNone) {
    const size_t dot = path.find('.');
    const std::string_view step = path.substr(0, dot);
    if (nodes_[at].type == Type::kObject) {
      at = Find(at, step);
    } else if (nodes_[at].type == Type::kArray) {
      size_t index = 0;
      auto [p, ec] = std::from_chars(step.data(), step.data() + step.size(), index);
      if (ec != std::errc() || p != step.data() + step.size()) return kNone;
      at = nodes_[at].first;
      for (size_t i = 0; i < index && at != kNone; ++i) at = nodes_[at].next;
    } else {
      return kNone;
    }
    if (dot == std::string_view::npos) return at;
    path.remove_prefix(dot + 1);
  }
  return kNone;
}

Json::Ref Json::NewString(std::string_view value) {
  bool escaped = false;
  std::string_view text = KeepEscaped(value, &escaped);
  return Add(Type::kString, text, escaped);
}

Json::Ref Json::NewNumber(double v) {
  if (!std::isfinite(v)) return NewNull();  // JSON has no NaN or infinity
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return Add(Type::kNumber, Keep(std::string_view(buf, static_cast<size_t>(p - buf))), false);
}

Json::Ref Json::NewNumberText(std::string_view text) { return Add(Type::kNumber, Keep(text), false); }
Json::Ref Json::NewBool(bool v) { return Add(Type::kBool, v ? "true" : "false", false); }
Json::Ref Json::NewNull() { return Add(Type::kNull, "null", false); }
Json::Ref Json::NewObject() { return Add(Type::kObject, {}, false); }
Json::Ref Json::NewArray() { return Add(Type::kArray, {}, false); }

void Json::Unlink(Ref r) {
  Node& n = nodes_[r];
  if (n.parent == kNone) {
    if (root_ == r) root_ = kNone;
    return;
  }
  MarkChanged(n.parent);
  Node& p = nodes_[n.parent];
  if (n.prev != kNone) nodes_[n.prev].next = n.next; else p.first = n.next;
  if (n.next != kNone) nodes_[n.next].prev = n.prev; else p.last = n.prev;
  n.parent = n.prev = n.next = kNone;
}

void Json::MarkChanged(Ref r) {
  while (r != kNone && !nodes_[r].changed) {
    nodes_[r].changed = true;
    r = nodes_[r].parent;
  }
}

void Json::Append(Ref container, Ref child, std::string_view key) {
  bool escaped = false;
  AppendStaticKey(container, child, nodes_[container].type == Type::kObject ? KeepEscaped(key, &escaped) : key);
  nodes_[child].key_escaped = escaped;
}

void Json::AppendStaticKey(Ref container, Ref child, std::string_view key) {
  Unlink(child);
  MarkChanged(container);
  nodes_[child].key = nodes_[container].type == Type::kObject ? key : std::string_view();
  nodes_[child].key_escaped = false;
  Node& c = nodes_[container];
  nodes_[child].parent = container;
  nodes_[child].prev = c.last;
  if (c.last != kNone) nodes_[c.last].next = child; else c.first = child;
  nodes_[container].last = child;
  dirty_ = true;
}

void Json::Put(Ref object, std::string_view key, Ref value) {
  Ref existing = Find(object, key);
  if (existing == kNone) {
    Append(object, value, key);
    return;
  }
  Unlink(value);
  MarkChanged(object);
  // Take the place of `existing`, with its key.
  Node& v = nodes_[value];
  v.key = nodes_[existing].key;
  v.key_escaped = nodes_[existing].key_escaped;
  v.parent = object;
  v.prev = nodes_[existing].prev;
  v.next = nodes_[existing].next;
  if (v.prev != kNone) nodes_[v.prev].next = value; else nodes_[object].first = value;
  if (v.next != kNone) nodes_[v.next].prev = value; else nodes_[object].last = value;
  nodes_[existing].parent = nodes_[existing].prev = nodes_[existing].next = kNone;
  // Later members of the same name would override it for most readers.
  std::string scratch;
  for (Ref c = nodes_[value].next; c != kNone;) {
    const Ref after = nodes_[c].next;
    if (this->key(c, &scratch) == key) Unlink(c);
    c = after;
  }
  dirty_ = true;
}

void Json::Remove(Ref r) {
  Unlink(r);
  dirty_ = true;
}

void Json::Rename(Ref member, std::string_view key) {
  bool escaped = false;
  nodes_[member].key = KeepEscaped(key, &escaped);
  nodes_[member].key_escaped = escaped;
  MarkChanged(nodes_[member].parent);
  dirty_ = true;
}

void Json::ReplaceWithString(Ref r, std::string_view value) {
  bool escaped = false;
  std::string_view text = KeepEscaped(value, &escaped);
  Node& n = nodes_[r];
  n.type = Type::kString;
  n.text = text;
  n.escaped = escaped;
  n.first = n.last = kNone;
  n.changed = false;  // a scalar: written from its text
  MarkChanged(n.parent);
  dirty_ = true;
}

void Json::SetRoot(Ref r) {
  Unlink(r);
  root_ = r;
  dirty_ = true;
}

}  // namespace edgesync
