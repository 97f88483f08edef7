// Tally: simdjson DOM parsing, one line at a time; distinct keys are kept per
// device in a hash set.
#include "harness/tally.h"

#include <simdjson.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <optional>
#include <unordered_map>
#include <unordered_set>

namespace edgesync::harness {
namespace {

struct Key {
  std::string device;
  uint64_t seq;
};

// Standard base64 with optional '=' padding; nullopt on any other character.
std::optional<std::string> DecodeBase64(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=') break;
    else return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

std::optional<Key> KeyOf(simdjson::dom::element payload) {
  simdjson::dom::object obj;
  if (payload.get_object().get(obj)) return std::nullopt;
  std::string_view device;
  if (obj["device"].get_string().get(device)) return std::nullopt;
  simdjson::dom::element seq_el;
  if (obj["seq"].get(seq_el)) return std::nullopt;
  uint64_t seq;
  if (seq_el.get_uint64().get(seq)) return std::nullopt;
  return Key{std::string(device), seq};
}

std::optional<Key> KeyOfRecord(simdjson::dom::parser& parser, simdjson::dom::parser& inner,
                               const std::string& line) {
  simdjson::dom::element doc;
  if (parser.parse(line).get(doc)) return std::nullopt;
  simdjson::dom::object record;
  if (doc.get_object().get(record)) return std::nullopt;
  simdjson::dom::element payload;
  if (!record["payload"].get(payload)) return KeyOf(payload);
  std::string_view b64;
  if (record["payload_b64"].get_string().get(b64)) return std::nullopt;
  std::optional<std::string> bytes = DecodeBase64(b64);
  if (!bytes) return std::nullopt;
  simdjson::dom::element decoded;
  if (inner.parse(*bytes).get(decoded)) return std::nullopt;
  return KeyOf(decoded);
}

}  // namespace

Result<std::map<std::string, uint64_t>> ParseManifest(std::istream& in) {
  std::map<std::string, uint64_t> published;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    size_t comma = line.find(',');
    std::string device = line.substr(0, comma);
    uint64_t count = 0;
    const char* first = comma == std::string::npos ? nullptr : line.data() + comma + 1;
    const char* last = line.data() + line.size();
    auto [end, ec] = first ? std::from_chars(first, last, count) : std::from_chars_result{};
    if (device.empty() || first == nullptr || ec != std::errc() || end != last || first == last) {
      return Status::InvalidArgument("manifest line " + std::to_string(n) +
                                     ": expected device,published but got '" + line + "'");
    }
    published[device] += count;
  }
  return published;
}

Tally TallyLines(std::istream& ndjson, const std::map<std::string, uint64_t>& published) {
  Tally t;
  for (const auto& [device, n] : published) t.published += n;
  simdjson::dom::parser parser, inner;
  std::unordered_map<std::string, std::unordered_set<uint64_t>> seen;
  uint64_t keyed_records = 0, distinct = 0;
  std::string line;
  while (std::getline(ndjson, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::optional<Key> key = KeyOfRecord(parser, inner, line);
    if (!key) {
      ++t.unparsable;
      continue;
    }
    ++keyed_records;
    if (!seen[key->device].insert(key->seq).second) continue;
    ++distinct;
    auto it = published.find(key->device);
    if (it != published.end() && key->seq >= 1 && key->seq <= it->second) {
      ++t.arrived;
    } else {
      ++t.unexpected;
    }
  }
  t.lost = t.published - t.arrived;
  t.duplicates = keyed_records - distinct;
  return t;
}

Result<Tally> TallyFiles(const std::string& ndjson_path, const std::string& manifest_path) {
  std::ifstream manifest(manifest_path);
  if (!manifest) return Status::FromErrno("open manifest " + manifest_path, errno);
  Result<std::map<std::string, uint64_t>> published = ParseManifest(manifest);
  if (!published.ok()) return Status::InvalidArgument(manifest_path + ": " + published.status().message());
  std::ifstream records(ndjson_path);
  if (!records) return Status::FromErrno("open records " + ndjson_path, errno);
  Tally t = TallyLines(records, *published);
  if (records.bad()) return Status::IOError("read error in " + ndjson_path);
  return t;
}

std::string FormatSummary(const Tally& t) {
  return "summary: published=" + std::to_string(t.published) +
         " arrived=" + std::to_string(t.arrived) + " lost=" + std::to_string(t.lost) +
         " duplicates=" + std::to_string(t.duplicates);
}

}  // namespace edgesync::harness
