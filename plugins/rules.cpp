#include "plugins/rules.h"

#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include "plugins/route.h"

namespace edgesync {

namespace {

// ---- The `when` language -------------------------------------------------

struct Literal {
  enum class Type { kString, kNumber, kBool, kNull } type = Type::kNull;
  std::string s;
  double n = 0;
  bool b = false;
};

enum class Op { kEq, kNe, kLt, kLe, kGt, kGe };

struct Token {
  enum class Kind { kWord, kString, kNumber, kOp, kLParen, kRParen, kLBracket, kRBracket, kComma, kEnd } kind;
  std::string text;  // word, unescaped string, number text, operator
  size_t column;     // 1-based
};

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  // The next token, or a Status naming the column of the problem.
  Result<Token> Next() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
    const size_t col = i_ + 1;
    if (i_ >= s_.size()) return Token{Token::Kind::kEnd, "", col};
    const char c = s_[i_];
    auto one = [&](Token::Kind k) {
      ++i_;
      return Token{k, std::string(1, c), col};
    };
    switch (c) {
      case '(': return one(Token::Kind::kLParen);
      case ')': return one(Token::Kind::kRParen);
      case '[': return one(Token::Kind::kLBracket);
      case ']': return one(Token::Kind::kRBracket);
      case ',': return one(Token::Kind::kComma);
      case '"':
      case '\'': {
        std::string out;
        for (++i_; i_ < s_.size() && s_[i_] != c; ++i_) {
          if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
          out.push_back(s_[i_]);
        }
        if (i_ >= s_.size()) return Error(col, "unterminated string");
        ++i_;
        return Token{Token::Kind::kString, out, col};
      }
      case '=':
      case '!':
      case '<':
      case '>': {
        std::string op(1, c);
        if (i_ + 1 < s_.size() && s_[i_ + 1] == '=') op.push_back('=');
        if (op == "=" || op == "!") return Error(col, "unknown operator '" + op + "' (use == or !=, and not)");
        i_ += op.size();
        return Token{Token::Kind::kOp, op, col};
      }
      default: break;
    }
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      size_t start = i_++;
      while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' ||
                                ((s_[i_] == '-' || s_[i_] == '+') && (s_[i_ - 1] == 'e' || s_[i_ - 1] == 'E')))) {
        ++i_;
      }
      return Token{Token::Kind::kNumber, std::string(s_.substr(start, i_ - start)), col};
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == '$') {
      size_t start = i_;
      while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_' ||
                                s_[i_] == '.' || s_[i_] == '-' || s_[i_] == '$')) {
        ++i_;
      }
      return Token{Token::Kind::kWord, std::string(s_.substr(start, i_ - start)), col};
    }
    return Error(col, std::string("unexpected character '") + c + "'");
  }

  static Status Error(size_t column, const std::string& what) {
    return Status::InvalidArgument("column " + std::to_string(column) + ": " + what);
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

struct Expr : Condition {
  enum class Kind { kAnd, kOr, kNot, kExists, kCompare, kIn, kStartsWith, kMatches } kind;
  std::vector<std::unique_ptr<Expr>> kids;
  std::string path;
  Op op = Op::kEq;
  std::vector<Literal> values;  // one, or the list of `in`
  std::unique_ptr<RE2> re;

  explicit Expr(Kind k) : kind(k) {}
  bool Eval(const Json& doc) const override;
};

bool IsKeyword(std::string_view w) {
  return w == "and" || w == "or" || w == "not" || w == "in" || w == "exists" || w == "starts_with" ||
         w == "matches" || w == "true" || w == "false" || w == "null";
}

constexpr const char* kBadPath = "bad field path (dotted names, none empty, at most 63 of them)";

// `text` for an error message: cut to its first 80 bytes.
std::string Shown(std::string_view text) {
  constexpr size_t kShown = 80;
  return std::string(text.substr(0, kShown)) + (text.size() > kShown ? "..." : "");
}

// A dotted field path: non-empty parts, and fewer than Json::kMaxDepth of
// them, so that what `set` makes on the way stays a document every later
// step (the other plugins, the writer) can walk.
bool ValidPath(std::string_view p) {
  return !p.empty() && p.front() != '.' && p.back() != '.' && p.find("..") == std::string_view::npos &&
         static_cast<size_t>(std::count(p.begin(), p.end(), '.')) + 1 < static_cast<size_t>(Json::kMaxDepth);
}

class ExprParser {
 public:
  explicit ExprParser(std::string_view s) : lex_(s) {}

  Result<std::unique_ptr<Expr>> ParseAll() {
    EDGESYNC_RETURN_IF_ERROR(Advance());
    Result<std::unique_ptr<Expr>> e = Or();
    if (!e.ok()) return e;
    if (tok_.kind != Token::Kind::kEnd) return Lexer::Error(tok_.column, "expected and, or or the end, found '" + Shown(tok_.text) + "'");
    return e;
  }

 private:
  Status Advance() {
    Result<Token> t = lex_.Next();
    if (!t.ok()) return t.status();
    tok_ = std::move(t).value();
    return Status::OK();
  }
  bool IsWord(std::string_view w) const { return tok_.kind == Token::Kind::kWord && tok_.text == w; }

  Result<std::unique_ptr<Expr>> Or() {
    Result<std::unique_ptr<Expr>> left = And();
    if (!left.ok() || !IsWord("or")) return left;
    auto e = std::make_unique<Expr>(Expr::Kind::kOr);
    e->kids.push_back(std::move(left).value());
    while (IsWord("or")) {
      EDGESYNC_RETURN_IF_ERROR(Advance());
      Result<std::unique_ptr<Expr>> right = And();
      if (!right.ok()) return right;
      e->kids.push_back(std::move(right).value());
    }
    return e;
  }

  Result<std::unique_ptr<Expr>> And() {
    Result<std::unique_ptr<Expr>> left = Unary();
    if (!left.ok() || !IsWord("and")) return left;
    auto e = std::make_unique<Expr>(Expr::Kind::kAnd);
    e->kids.push_back(std::move(left).value());
    while (IsWord("and")) {
      EDGESYNC_RETURN_IF_ERROR(Advance());
      Result<std::unique_ptr<Expr>> right = Unary();
      if (!right.ok()) return right;
      e->kids.push_back(std::move(right).value());
    }
    return e;
  }

  Result<std::unique_ptr<Expr>> Unary() {
    if (++depth_ > 64) return Lexer::Error(tok_.column, "nested too deep");
    Result<std::unique_ptr<Expr>> r = UnaryInner();
    --depth_;
    return r;
  }

  Result<std::unique_ptr<Expr>> UnaryInner() {
    if (IsWord("not")) {
      EDGESYNC_RETURN_IF_ERROR(Advance());
      Result<std::unique_ptr<Expr>> inner = Unary();
      if (!inner.ok()) return inner;
      auto e = std::make_unique<Expr>(Expr::Kind::kNot);
      e->kids.push_back(std::move(inner).value());
      return e;
    }
    if (tok_.kind == Token::Kind::kLParen) {
      EDGESYNC_RETURN_IF_ERROR(Advance());
      Result<std::unique_ptr<Expr>> inner = Or();
      if (!inner.ok()) return inner;
      if (tok_.kind != Token::Kind::kRParen) return Lexer::Error(tok_.column, "expected ')'");
      EDGESYNC_RETURN_IF_ERROR(Advance());
      return inner;
    }
    if (IsWord("exists")) {
      EDGESYNC_RETURN_IF_ERROR(Advance());
      if (tok_.kind != Token::Kind::kLParen) return Lexer::Error(tok_.column, "expected '(' after exists");
      EDGESYNC_RETURN_IF_ERROR(Advance());
      auto e = std::make_unique<Expr>(Expr::Kind::kExists);
      EDGESYNC_RETURN_IF_ERROR(Path(&e->path));
      if (tok_.kind != Token::Kind::kRParen) return Lexer::Error(tok_.column, "expected ')'");
      EDGESYNC_RETURN_IF_ERROR(Advance());
      return e;
    }
    std::string path;
    EDGESYNC_RETURN_IF_ERROR(Path(&path));
    if (tok_.kind == Token::Kind::kOp) {
      auto e = std::make_unique<Expr>(Expr::Kind::kCompare);
      e->path = std::move(path);
      const std::string& o = tok_.text;
      e->op = o == "==" ? Op::kEq : o == "!=" ? Op::kNe : o == "<" ? Op::kLt : o == "<=" ? Op::kLe : o == ">" ? Op::kGt : Op::kGe;
      const size_t col = tok_.column;
      EDGESYNC_RETURN_IF_ERROR(Advance());
      Literal lit;
      EDGESYNC_RETURN_IF_ERROR(Value(&lit, "after '" + o + "'"));
      if ((lit.type == Literal::Type::kBool || lit.type == Literal::Type::kNull) && e->op != Op::kEq && e->op != Op::kNe) {
        return Lexer::Error(col, "true, false and null compare only with == and !=");
      }
      e->values.push_back(std::move(lit));
      return e;
    }
    if (IsWord("in")) {
      EDGESYNC_RETURN_IF_ERROR(Advance());
      if (tok_.kind != Token::Kind::kLBracket) return Lexer::Error(tok_.column, "expected '[' after in");
      auto e = std::make_unique<Expr>(Expr::Kind::kIn);
      e->path = std::move(path);
      EDGESYNC_RETURN_IF_ERROR(Advance());
      for (;;) {
        Literal lit;
        EDGESYNC_RETURN_IF_ERROR(Value(&lit, "in the list"));
        e->values.push_back(std::move(lit));
        if (tok_.kind == Token::Kind::kComma) {
          EDGESYNC_RETURN_IF_ERROR(Advance());
          continue;
        }
        if (tok_.kind != Token::Kind::kRBracket) return Lexer::Error(tok_.column, "expected ',' or ']'");
        EDGESYNC_RETURN_IF_ERROR(Advance());
        return e;
      }
    }
    if (IsWord("starts_with") || IsWord("matches")) {
      const bool regex = tok_.text == "matches";
      EDGESYNC_RETURN_IF_ERROR(Advance());
      if (tok_.kind != Token::Kind::kString) {
        return Lexer::Error(tok_.column, std::string("expected a string after ") + (regex ? "matches" : "starts_with"));
      }
      auto e = std::make_unique<Expr>(regex ? Expr::Kind::kMatches : Expr::Kind::kStartsWith);
      e->path = std::move(path);
      Literal lit;
      lit.type = Literal::Type::kString;
      lit.s = tok_.text;
      if (regex) {
        RE2::Options opt;
        opt.set_log_errors(false);
        e->re = std::make_unique<RE2>(lit.s, opt);
        if (!e->re->ok()) return Lexer::Error(tok_.column, "bad regular expression: " + e->re->error());
      }
      e->values.push_back(std::move(lit));
      EDGESYNC_RETURN_IF_ERROR(Advance());
      return e;
    }
    return Lexer::Error(tok_.column, "expected an operator (==, !=, <, <=, >, >=, in, starts_with, matches) after " + path);
  }

  Status Path(std::string* path) {
    if (tok_.kind != Token::Kind::kWord || IsKeyword(tok_.text)) {
      return Lexer::Error(tok_.column, "expected a field name" + (tok_.text.empty() ? std::string() : ", found '" + Shown(tok_.text) + "'"));
    }
    if (!ValidPath(tok_.text)) return Lexer::Error(tok_.column, std::string(kBadPath) + ": '" + Shown(tok_.text) + "'");
    *path = tok_.text;
    return Advance();
  }

  Status Value(Literal* lit, const std::string& where) {
    switch (tok_.kind) {
      case Token::Kind::kString:
        lit->type = Literal::Type::kString;
        lit->s = tok_.text;
        break;
      case Token::Kind::kNumber: {
        lit->type = Literal::Type::kNumber;
        auto [p, ec] = std::from_chars(tok_.text.data(), tok_.text.data() + tok_.text.size(), lit->n);
        if (ec != std::errc() || p != tok_.text.data() + tok_.text.size() || !std::isfinite(lit->n)) {
          return Lexer::Error(tok_.column, "bad number '" + Shown(tok_.text) + "'");
        }
        break;
      }
      case Token::Kind::kWord:
        if (tok_.text == "true" || tok_.text == "false") {
          lit->type = Literal::Type::kBool;
          lit->b = tok_.text == "true";
        } else if (tok_.text == "null") {
          lit->type = Literal::Type::kNull;
        } else {
          return Lexer::Error(tok_.column, "expected a value " + where + " (a \"string\", number, true, false or null), found '" + Shown(tok_.text) + "'");
        }
        break;
      default:
        return Lexer::Error(tok_.column, "expected a value " + where + " (a \"string\", number, true, false or null)");
    }
    return Advance();
  }

  Lexer lex_;
  Token tok_{Token::Kind::kEnd, "", 1};
  int depth_ = 0;
};

bool Apply(Op op, int c) {
  switch (op) {
    case Op::kEq: return c == 0;
    case Op::kNe: return c != 0;
    case Op::kLt: return c < 0;
    case Op::kLe: return c <= 0;
    case Op::kGt: return c > 0;
    case Op::kGe: return c >= 0;
  }
  return false;
}

// Equality and order of a node and a literal; nullopt when their types differ.
std::optional<int> Cmp(const Json& j, Json::Ref r, const Literal& lit, std::string* scratch) {
  switch (lit.type) {
    case Literal::Type::kString: {
      if (!j.IsString(r)) return std::nullopt;
      int c = j.str(r, scratch).compare(lit.s);
      return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    case Literal::Type::kNumber: {
      std::optional<double> d = j.number(r);
      if (!d) return std::nullopt;
      return *d < lit.n ? -1 : *d > lit.n ? 1 : 0;
    }
    case Literal::Type::kBool:
      if (j.type(r) != Json::Type::kBool) return std::nullopt;
      return j.boolean(r) == lit.b ? 0 : 1;
    case Literal::Type::kNull:
      return j.type(r) == Json::Type::kNull ? 0 : 1;
  }
  return std::nullopt;
}

bool Expr::Eval(const Json& doc) const {
  switch (kind) {
    case Kind::kAnd:
      return std::all_of(kids.begin(), kids.end(), [&](const auto& k) { return k->Eval(doc); });
    case Kind::kOr:
      return std::any_of(kids.begin(), kids.end(), [&](const auto& k) { return k->Eval(doc); });
    case Kind::kNot:
      return !kids[0]->Eval(doc);
    default:
      break;
  }
  const Json::Ref r = doc.root() == Json::kNone ? Json::kNone : doc.FindPath(path);
  if (kind == Kind::kExists) return r != Json::kNone;
  if (r == Json::kNone) return false;
  std::string scratch;
  switch (kind) {
    case Kind::kCompare: {
      std::optional<int> c = Cmp(doc, r, values[0], &scratch);
      if (!c) return false;
      return Apply(op, *c);
    }
    case Kind::kIn:
      return std::any_of(values.begin(), values.end(), [&](const Literal& v) { return Cmp(doc, r, v, &scratch) == 0; });
    case Kind::kStartsWith:
      return doc.IsString(r) && doc.str(r, &scratch).substr(0, values[0].s.size()) == values[0].s;
    case Kind::kMatches:
      if (!doc.IsString(r)) return false;
      {
        std::string_view s = doc.str(r, &scratch);
        return RE2::PartialMatch(re2::StringPiece(s.data(), s.size()), *re);
      }
    default:
      return false;
  }
}

// ---- Rules ---------------------------------------------------------------

struct SetValue {
  enum class Type { kString, kInt, kFloat, kBool } type;
  std::string text;
  double f = 0;
  bool b = false;
};

struct Rule {
  std::string name;
  std::vector<std::string> topics;
  std::unique_ptr<Condition> when;
  bool drop = false, keep = false;
  std::vector<std::string> drop_fields, keep_fields;
  std::vector<std::pair<std::string, std::string>> rename;
  std::vector<std::pair<std::string, SetValue>> set;
  bool has_route = false;
  std::string route_stream, route_topic, route_key, key_from, stream_from;
  std::optional<Priority> route_priority;
};

bool IsAncestor(const Json& j, Json::Ref a, Json::Ref r) {
  for (Json::Ref p = j.parent(r); p != Json::kNone; p = j.parent(p)) {
    if (p == a) return true;
  }
  return false;
}

// Removes every member and element that is neither one of `kept` nor on
// the way to one.
void Prune(Json& j, Json::Ref r, const std::vector<Json::Ref>& kept) {
  for (Json::Ref c = j.first(r); c != Json::kNone;) {
    const Json::Ref next = j.next(c);
    if (std::find(kept.begin(), kept.end(), c) == kept.end()) {
      bool leads = std::any_of(kept.begin(), kept.end(), [&](Json::Ref k) { return IsAncestor(j, c, k); });
      if (leads) {
        Prune(j, c, kept);
      } else {
        j.Remove(c);
      }
    }
    c = next;
  }
}

Json::Ref NewValue(Json& j, const SetValue& v) {
  switch (v.type) {
    case SetValue::Type::kString: return j.NewString(v.text);
    case SetValue::Type::kInt: return j.NewNumberText(v.text);
    case SetValue::Type::kFloat: return j.NewNumber(v.f);
    case SetValue::Type::kBool: return j.NewBool(v.b);
  }
  return j.NewNull();
}

// Sets `path` (dotted; missing objects on the way are made) to `v`.
void SetPath(Json& j, std::string_view path, const SetValue& v) {
  Json::Ref at = j.root();
  for (;;) {
    const size_t dot = path.find('.');
    const std::string_view step = path.substr(0, dot);
    if (dot == std::string_view::npos) {
      j.Put(at, step, NewValue(j, v));
      return;
    }
    Json::Ref child = j.Find(at, step);
    if (!j.IsObject(child)) {
      child = j.NewObject();
      j.Put(at, step, child);
    }
    at = child;
    path.remove_prefix(dot + 1);
  }
}

class RulesPlugin : public Plugin {
 public:
  explicit RulesPlugin(std::vector<Rule> rules) : rules_(std::move(rules)) {}

  Action Process(Event& e) const override {
    for (const Rule& r : rules_) {
      if (!r.topics.empty() &&
          std::none_of(r.topics.begin(), r.topics.end(), [&](const std::string& f) { return TopicMatches(f, e.topic); })) {
        continue;
      }
      if (r.when && (e.json == nullptr || !r.when->Eval(*e.json))) continue;
      if (r.drop) return Action::kDrop;
      if (r.has_route) Route(r, e);  // first: it may read fields the shaping removes
      if (e.json != nullptr && j_object(*e.json)) Shape(r, *e.json);
      if (r.keep) return Action::kKeep;
    }
    return Action::kKeep;
  }

  std::vector<LaneRequest> Lanes() const override {
    std::vector<LaneRequest> out;
    for (const Rule& r : rules_) {
      if (r.has_route && (!r.route_stream.empty() || !r.route_topic.empty() || r.route_priority)) {
        out.push_back(LaneRequest{r.route_stream, r.route_topic, r.route_priority});
      }
    }
    return out;
  }

 private:
  static bool j_object(const Json& j) { return j.IsObject(j.root()); }

  void Shape(const Rule& r, Json& j) const {
    for (const std::string& p : r.drop_fields) {
      Json::Ref f = j.FindPath(p);
      if (f != Json::kNone) j.Remove(f);
    }
    if (!r.keep_fields.empty()) {
      kept_.clear();
      for (const std::string& p : r.keep_fields) {
        Json::Ref f = j.FindPath(p);
        if (f != Json::kNone) kept_.push_back(f);
      }
      Prune(j, j.root(), kept_);
    }
    for (const auto& [path, name] : r.rename) {
      Json::Ref f = j.FindPath(path);
      if (f == Json::kNone || !j.IsObject(j.parent(f))) continue;
      Json::Ref clash = j.Find(j.parent(f), name);
      if (clash != Json::kNone && clash != f) j.Remove(clash);
      j.Rename(f, name);
    }
    for (const auto& [path, value] : r.set) SetPath(j, path, value);
  }

  void Route(const Rule& r, Event& e) const {
    if (!r.route_stream.empty()) e.route.stream = r.route_stream;
    if (!r.route_topic.empty()) e.route.kafka_topic = r.route_topic;
    if (r.route_priority) e.route.priority = *r.route_priority;
    if (!r.route_key.empty()) e.route.key = r.route_key;
    if (e.json == nullptr) return;
    if (!r.stream_from.empty()) {
      Json::Ref f = e.json->FindPath(r.stream_from);
      if (e.json->IsString(f)) e.route.stream = e.json->str(f, &scratch_);
    }
    if (!r.key_from.empty()) {
      Json::Ref f = e.json->FindPath(r.key_from);
      if (e.json->IsString(f)) {
        e.route.key = e.json->str(f, &scratch_);
      } else if (f != Json::kNone && e.json->type(f) == Json::Type::kNumber) {
        e.route.key = e.json->raw(f);
      }
    }
  }

  const std::vector<Rule> rules_;
  mutable std::vector<Json::Ref> kept_;  // Process runs on one thread at a time
  mutable std::string scratch_;
};

void ParsePaths(Settings& s, const toml::table& t, std::string_view key, const std::string& where,
                std::vector<std::string>* out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return;
  const toml::array* a = n->as_array();
  bool ok = a != nullptr;
  if (ok) {
    for (const toml::node& e : *a) {
      auto v = e.value<std::string>();
      if (!e.is_string() || !ValidPath(*v)) {
        ok = false;
        break;
      }
      out->push_back(*v);
    }
  }
  if (!ok) s.Problem(*n, where + "." + std::string(key), "must be an array of field paths (\"a\", \"a.b\")");
}

}  // namespace

Result<std::unique_ptr<Condition>> Condition::Parse(std::string_view text) {
  Result<std::unique_ptr<Expr>> e = ExprParser(text).ParseAll();
  if (!e.ok()) return e.status();
  return std::unique_ptr<Condition>(std::move(e).value());
}

namespace {

// Its one setting, an array of tables it reads itself.
struct RulesSettings {
  static const OptionTable<RulesSettings>& Options() {
    static const auto* table = &(*new OptionTable<RulesSettings>())  // never freed: a process-long constant
        .Table("rules",
               "The rules, in order, as `[[plugins.NAME.rules]]` tables: `name`, `topic` (MQTT filters), `when` (an expression on the payload) and actions: `route`, `drop_fields`, `keep_fields`, `rename`, `set`, then `drop` or `keep` (docs/plugins.md, \"rules\").",
               "(required)");
    return *table;
  }
};

}  // namespace

const PluginType& RulesPluginType() {
  static const PluginType kType{
      "rules", "Declarative rules that keep, drop, reroute or reshape events; no code.",
      [] { return RulesSettings::Options().Reference(); },
      [](Settings& s, const PluginContext&) { return MakeRulesPlugin(s); }};
  return kType;
}

Result<std::shared_ptr<const Plugin>> MakeRulesPlugin(Settings& s) {
  RulesSettings declared;
  s.Read(RulesSettings::Options(), &declared);
  const toml::node* node = s.Get("rules");
  const toml::array* arr = node ? node->as_array() : nullptr;
  if (arr == nullptr || !arr->is_array_of_tables()) {
    if (node) s.Problem(*node, "rules", "must be an array of tables ([[plugins.NAME.rules]])");
    else s.Problem("rules", "is required: at least one [[plugins.NAME.rules]] table");
    return s.status();
  }
  std::vector<Rule> rules;
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::table& t = *(*arr)[i].as_table();
    const std::string where = "rules[" + std::to_string(i) + "]";
    Rule r;
    r.name = t["name"].value<std::string>().value_or(where);
    const std::string label = where + (t.contains("name") ? " (\"" + r.name + "\")" : "");
    bool acts = false;
    for (const auto& [k, v] : t) {
      const std::string key(k.str());
      const std::string fkey = label + "." + key;
      if (key == "name") {
        if (!v.is_string()) s.Problem(v, fkey, "must be a string");
      } else if (key == "topic") {
        std::vector<std::string> filters;
        if (v.is_string()) {
          filters.push_back(*v.value<std::string>());
        } else if (const toml::array* ta = v.as_array()) {
          for (const toml::node& f : *ta) filters.push_back(f.value<std::string>().value_or(""));
        }
        if (filters.empty()) s.Problem(v, fkey, "must be an MQTT topic filter or an array of them");
        for (const std::string& f : filters) {
          Status st = ValidateTopicFilter(f);
          if (!st.ok()) s.Problem(v, fkey, st.message());
        }
        r.topics = std::move(filters);
      } else if (key == "when") {
        auto text = v.value<std::string>();
        if (!v.is_string()) {
          s.Problem(v, fkey, "must be a string (an expression)");
          continue;
        }
        Result<std::unique_ptr<Condition>> c = Condition::Parse(*text);
        if (!c.ok()) {
          s.Problem(v, fkey, c.status().message() + " in: " + Shown(*text));
        } else {
          r.when = std::move(c).value();
        }
      } else if (key == "drop" || key == "keep") {
        if (!v.is_boolean()) {
          s.Problem(v, fkey, "must be true or false");
          continue;
        }
        (key == "drop" ? r.drop : r.keep) = *v.value<bool>();
        acts = true;
      } else if (key == "drop_fields") {
        ParsePaths(s, t, key, label, &r.drop_fields);
        acts = true;
      } else if (key == "keep_fields") {
        ParsePaths(s, t, key, label, &r.keep_fields);
        acts = true;
      } else if (key == "rename") {
        const toml::table* rt = v.as_table();
        if (rt == nullptr) {
          s.Problem(v, fkey, "must be a table of \"path\" = \"new name\"");
          continue;
        }
        for (const auto& [from, to] : *rt) {
          auto name = to.value<std::string>();
          if (!to.is_string() || name->empty() || !ValidPath(from.str())) {
            s.Problem(to, fkey + "." + Shown(from.str()), "must be a field path = a new member name");
            continue;
          }
          r.rename.emplace_back(std::string(from.str()), *name);
        }
        acts = true;
      } else if (key == "set") {
        const toml::table* st = v.as_table();
        if (st == nullptr) {
          s.Problem(v, fkey, "must be a table of path = value");
          continue;
        }
        for (const auto& [path, val] : *st) {
          SetValue sv;
          if (val.is_string()) {
            sv = {SetValue::Type::kString, *val.value<std::string>()};
          } else if (val.is_integer()) {
            sv = {SetValue::Type::kInt, std::to_string(*val.value<int64_t>())};
          } else if (val.is_floating_point() && std::isfinite(*val.value<double>())) {
            sv = {SetValue::Type::kFloat, "", *val.value<double>()};
          } else if (val.is_boolean()) {
            sv = {SetValue::Type::kBool, "", 0, *val.value<bool>()};
          } else {
            s.Problem(val, fkey + "." + Shown(path.str()), "must be a string, number or boolean");
            continue;
          }
          if (!ValidPath(path.str())) {
            s.Problem(val, fkey + "." + Shown(path.str()), kBadPath);
            continue;
          }
          r.set.emplace_back(std::string(path.str()), std::move(sv));
        }
        acts = true;
      } else if (key == "route") {
        const toml::table* rt = v.as_table();
        if (rt == nullptr) {
          s.Problem(v, fkey, "must be a table (stream, topic, priority, key, stream_from, key_from)");
          continue;
        }
        r.has_route = true;
        acts = true;
        for (const auto& [rk, rv] : *rt) {
          const std::string rkey(rk.str());
          auto text = rv.value<std::string>();
          if (!rv.is_string() || text->empty()) {
            s.Problem(rv, fkey + "." + rkey, "must be a non-empty string");
            continue;
          }
          if (rkey == "stream") r.route_stream = *text;
          else if (rkey == "topic") r.route_topic = *text;
          else if (rkey == "key") r.route_key = *text;
          else if (rkey == "stream_from") r.stream_from = *text;
          else if (rkey == "key_from") r.key_from = *text;
          else if (rkey == "priority") {
            r.route_priority = ParsePriority(*text);
            if (!r.route_priority) s.Problem(rv, fkey + "." + rkey, "must be \"high\", \"normal\" or \"low\"");
          } else {
            s.Problem(rv, fkey + "." + rkey,
                      "unknown key (route keys: stream, topic, priority, key, stream_from, key_from; a Kafka "
                      "topic or priority cannot come from a field: each is a lane declared in advance)");
          }
        }
      } else {
        s.Problem(v, fkey, "unknown key (rule keys: name, topic, when, drop, keep, drop_fields, keep_fields, rename, set, route)");
      }
    }
    if (!acts) s.Problem(t, label, "does nothing: give it drop, keep, drop_fields, keep_fields, rename, set or route");
    if (r.drop && r.keep) s.Problem(t, label, "drop and keep contradict each other");
    rules.push_back(std::move(r));
  }
  if (!s.ok()) return s.status();
  return std::shared_ptr<const Plugin>(std::make_shared<RulesPlugin>(std::move(rules)));
}

}  // namespace edgesync
