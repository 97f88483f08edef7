// Json: the event payload as the plugins see and edit it.
//
// Parsed once per event (UTF-8 checked by simdjson, the rest by our own
// strict reader, which keeps positions simdjson's DOM drops), it keeps every scalar as
// its original text: what no plugin touches is written back byte for byte
// (numbers keep their form, 10.50 stays 10.50; strings keep their escapes),
// and an event no plugin changed is not serialised again at all (dirty()).
//
// Nodes live in one vector and are named by index (Ref); a container's
// children are a doubly linked list, so removing, renaming and appending are
// O(1) and no other Ref moves. Text lives in the parsed copy of the payload
// or in the document's own arena. Parse reuses all of it, so a warmed-up
// document does not allocate per event. One per thread; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace edgesync {

class Json {
 public:
  using Ref = uint32_t;
  static constexpr Ref kNone = UINT32_MAX;
  enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
  // Deeper documents are refused: the recursion that reads them is bounded.
  static constexpr int kMaxDepth = 64;

  Json();
  ~Json();
  Json(const Json&) = delete;
  Json& operator=(const Json&) = delete;

  // Replaces the document with `text`. InvalidArgument (with the position)
  // when it is not one valid JSON value, or is nested deeper than kMaxDepth.
  Status Parse(std::string_view text);
  // The document as JSON text: the original text when nothing changed.
  void Serialize(std::string* out) const;
  bool dirty() const { return dirty_; }
  // The text Parse was given (kept until the next Parse).
  std::string_view original() const { return original_; }
  // A 64-bit summary of the member names as parsed: the bit NameBit(name)
  // of each (all bits when a name has escapes). A name whose bit is clear
  // is certainly not among them; edits are not reflected.
  uint64_t name_signature() const { return name_signature_; }
  // Case-insensitive (ASCII) in the length and first and last bytes of the
  // name's last step, as a path reads (card.cvv, card[cvv]: cvv).
  static uint64_t NameBit(std::string_view name) {
    if (!name.empty() && name.back() == ']') name.remove_suffix(1);
    if (const size_t step = name.find_last_of(".["); step != std::string_view::npos) name.remove_prefix(step + 1);
    if (name.empty()) return 1;
    auto fold = [](char c) { return static_cast<unsigned>(c >= 'A' && c <= 'Z' ? c + 32 : c) & 0xFF; };
    return 1ull << ((name.size() * 7 + fold(name.front()) * 13 + fold(name.back()) * 17) & 63);
  }

  Ref root() const { return root_; }
  void SetRoot(Ref r);
  Type type(Ref r) const { return nodes_[r].type; }
  bool IsObject(Ref r) const { return r != kNone && nodes_[r].type == Type::kObject; }
  bool IsString(Ref r) const { return r != kNone && nodes_[r].type == Type::kString; }
  bool IsContainer(Ref r) const {
    return r != kNone && (nodes_[r].type == Type::kObject || nodes_[r].type == Type::kArray);
  }

  // A scalar's JSON text: a number as written, "true", "false", "null"; a
  // string's content between its quotes, still escaped.
  std::string_view raw(Ref r) const { return nodes_[r].text; }
  bool boolean(Ref r) const { return nodes_[r].text == "true"; }
  std::optional<double> number(Ref r) const;
  // A string's value, unescaped. Points into the document when the string
  // has no escapes, else into `*scratch`.
  std::string_view str(Ref r, std::string* scratch) const;
  bool has_escapes(Ref r) const { return nodes_[r].escaped; }

  // Children of an array or object, in order; kNone at the end.
  Ref first(Ref container) const { return nodes_[container].first; }
  Ref next(Ref child) const { return nodes_[child].next; }
  Ref parent(Ref r) const { return nodes_[r].parent; }
  size_t size(Ref container) const;
  // A member's key, unescaped (see str()).
  std::string_view key(Ref member, std::string* scratch) const;
  // The first member of `object` named `key`; kNone when none is.
  Ref Find(Ref object, std::string_view key) const;
  // The value at a dotted path from the root ("card.pan"; array elements
  // by index, "items.0.sku"); kNone when any step is missing.
  Ref FindPath(std::string_view path) const;

  // New nodes, not yet in the tree (Append or SetRoot them).
  Ref NewString(std::string_view value);
  Ref NewNumber(double v);
  Ref NewNumberText(std::string_view text);  // must be a valid JSON number
  Ref NewBool(bool v);
  Ref NewNull();
  Ref NewObject();
  Ref NewArray();

  // Appends `child` to `container` (first taking it out of where it was);
  // `key` is the member name in an object, ignored in an array.
  void Append(Ref container, Ref child, std::string_view key = {});
  // Append with a key that lives at least as long as the document (a string
  // literal) and needs no escaping: it is not copied.
  void AppendStaticKey(Ref container, Ref child, std::string_view key);
  // A string of such a value (a literal, no escaping needed): not copied.
  Ref NewStaticString(std::string_view value) { return Add(Type::kString, value, false); }
  // Sets member `key` of `object` to `value`: in place of the first member
  // of that name (later ones are removed), else appended.
  void Put(Ref object, std::string_view key, Ref value);
  // Takes `r` out of its container (it may be appended elsewhere).
  void Remove(Ref r);
  void Rename(Ref member, std::string_view key);
  // Turns `r` into a string with `value` (e.g. a masked card number).
  void ReplaceWithString(Ref r, std::string_view value);

  // `s` as the content of a JSON string (no quotes), appended to `out`.
  static void AppendEscaped(std::string_view s, std::string* out);

 private:
  struct Node {
    std::string_view text;  // scalars: see raw(); containers: their text as parsed
    std::string_view key;   // members: the key, escaped
    Ref parent = kNone, first = kNone, last = kNone, prev = kNone, next = kNone;
    Type type = Type::kNull;
    bool escaped = false;      // text holds a backslash escape
    bool key_escaped = false;  // key holds a backslash escape
    // Made or edited since Parse, or with something made or edited inside:
    // a container that is not is written as its parsed text. Every
    // ancestor of a changed node is changed.
    bool changed = true;
  };
  struct Reader;
  friend struct JsonBuilder;

  Ref Add(Type t, std::string_view text, bool escaped);
  // Copies `s` into the arena; the view stays valid until the next Parse.
  std::string_view Keep(std::string_view s);
  // Escapes `s` into the arena when it needs escapes; sets *escaped.
  std::string_view KeepEscaped(std::string_view s, bool* escaped);
  void Unlink(Ref r);
  void MarkChanged(Ref r);
  void Write(Ref r, std::string* out) const;

  std::vector<Node> nodes_;
  Ref root_ = kNone;
  bool dirty_ = false;
  uint64_t name_signature_ = 0;
  std::string text_;  // the payload being read
  std::string_view original_;
  // The arena: chunks that keep their capacity from event to event.
  std::vector<std::string> chunks_;
  size_t chunk_ = 0;
  std::unique_ptr<Reader> reader_;  // scratch buffers
};

}  // namespace edgesync
