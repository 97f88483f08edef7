#include "central/unpack.h"

#include <simdjson.h>


namespace edgesync {

bool SequenceTracker::Observe(const std::string& device, const std::string& stream, uint64_t seq,
                              std::vector<Gap>* gaps) {
  return ObserveRange(device, stream, seq, seq, gaps);
}

bool SequenceTracker::ObserveRange(const std::string& device, const std::string& stream,
                                   uint64_t first, uint64_t last, std::vector<Gap>* gaps) {
  auto [it, inserted] = streams_.try_emplace({device, stream});
  StreamState& s = it->second;
  if (inserted && !expect_first_ && first > 0) s.contiguous = first - 1;
  if (inserted) s.highest = s.reported = s.contiguous;
  // A duplicate also proves the stream alive: it is not forgotten by age.
  if (s.last_seen_us != now_us_) {
    s.last_seen_us = now_us_;
    dirty_.insert(it->first);
  }
  first = std::max(first, s.contiguous + 1);
  if (first > last) return false;  // all seen
  // Seen ranges above `contiguous` are disjoint and not adjacent: find the
  // ones [first, last] touches, and whether one covers it already.
  auto lo = s.above.upper_bound(first);
  if (lo != s.above.begin() && std::prev(lo)->second + 1 >= first) --lo;
  if (lo != s.above.end() && lo->first <= first && lo->second >= last) return false;
  dirty_.insert(it->first);
  if (gaps != nullptr) {
    // The holes below `first` not reported before: what is neither seen
    // nor accounted for in (max(reported, contiguous), first).
    uint64_t at = std::max(s.reported, s.contiguous) + 1;
    auto r = s.above.upper_bound(at);
    if (r != s.above.begin() && std::prev(r)->second >= at) --r;
    for (; at < first && r != s.above.end() && r->first < first; ++r) {
      if (r->second < at) continue;
      if (r->first > at) gaps->push_back({device, stream, at, r->first - 1});
      at = r->second + 1;
    }
    if (at < first) gaps->push_back({device, stream, at, first - 1});
    s.reported = std::max(s.reported, last);
  }
  s.highest = std::max(s.highest, last);
  uint64_t a = first, b = last;
  while (lo != s.above.end() && lo->first <= b + 1) {
    a = std::min(a, lo->first);
    b = std::max(b, lo->second);
    lo = s.above.erase(lo);
  }
  s.above.emplace(a, b);
  auto absorb = [&s] {
    while (!s.above.empty() && s.above.begin()->first == s.contiguous + 1) {
      s.contiguous = s.above.begin()->second;
      s.above.erase(s.above.begin());
    }
  };
  absorb();
  if (s.above.size() > kMaxOutOfOrder) {
    // Give up on the oldest missing range (a batch that late would be
    // taken for a duplicate).
    s.contiguous = s.above.begin()->first - 1;
    absorb();
  }
  return true;
}

size_t SequenceTracker::out_of_order() const {
  size_t n = 0;
  for (const auto& [key, state] : streams_) n += state.above.size();
  return n;
}

std::vector<SequenceTracker::SavedStream> SequenceTracker::TakeDirty() {
  std::vector<SavedStream> out;
  out.reserve(dirty_.size());
  for (const Key& k : dirty_) {
    auto it = streams_.find(k);
    if (it != streams_.end()) out.push_back({k.first, k.second, it->second});
  }
  dirty_.clear();
  return out;
}

void SequenceTracker::Restore(const std::string& device, const std::string& stream,
                              StreamState state) {
  streams_[{device, stream}] = std::move(state);
}

size_t SequenceTracker::ForgetSeenBefore(int64_t cutoff_us,
                                         std::vector<std::pair<std::string, std::string>>* forgotten) {
  size_t n = 0;
  for (auto it = streams_.begin(); it != streams_.end();) {
    if (it->second.last_seen_us < cutoff_us) {
      if (forgotten != nullptr) forgotten->push_back(it->first);
      dirty_.erase(it->first);
      it = streams_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

void SequenceTracker::Erase(const std::string& device, const std::string& stream) {
  const Key key{device, stream};
  streams_.erase(key);
  dirty_.erase(key);
}

const SequenceTracker::StreamState* SequenceTracker::Find(const std::string& device,
                                                          const std::string& stream) const {
  auto it = streams_.find({device, stream});
  return it == streams_.end() ? nullptr : &it->second;
}

Unpacker::Unpacker(bool expect_first_batch, OpenOptions open)
    : open_(open), tracker_(expect_first_batch) {
  // Every reason present from the start: the counters line keeps its keys.
  for (int r = static_cast<int>(Rejection::kMalformed); r <= static_cast<int>(Rejection::kBadSignature);
       ++r) {
    stats_.rejected[RejectionName(static_cast<Rejection>(r))] = 0;
  }
  stats_.rejected[kRejectInvalidTopic] = 0;
  stats_.rejected[kRejectRecordTooLarge] = 0;
  stats_.rejected[kRejectFragment] = 0;
}

Result<OpenedEnvelope> Unpacker::Open(std::string_view envelope, Rejection* why) {
  Rejection reason = Rejection::kNone;
  Result<OpenedEnvelope> e = OpenEnvelope(envelope, open_, &reason);
  if (why != nullptr) *why = reason;
  if (!e.ok()) CountRejected(RejectionName(reason));
  return e;
}

void Unpacker::CountRejected(const std::string& reason) {
  ++stats_.bad_envelopes;
  ++stats_.rejected[reason];
}

namespace {

// Counters sum what devices claim (a gap record says how many events it
// lost): they stop at the top instead of wrapping to a small number.
void AddSaturating(uint64_t* counter, uint64_t n) {
  *counter = n > UINT64_MAX - *counter ? UINT64_MAX : *counter + n;
}

// Batches in first..last, both included: 2^64 does not fit, so the whole
// range counts UINT64_MAX.
uint64_t RangeSize(uint64_t first, uint64_t last) {
  return last - first == UINT64_MAX ? UINT64_MAX : last - first + 1;
}

}  // namespace

Unpacked Unpacker::Accept(OpenedEnvelope envelope, SequenceTracker* tracker) {
  Unpacked u;
  u.envelope = std::move(envelope);
  const BatchHeader& h = u.envelope.header;
  if (u.envelope.gap) {
    // The agent says it gave these batches up: they are accounted for.
    // Holes a gap record jumps over are not reported now (the agent sends
    // the gap records of one loss in no fixed order among themselves, and
    // the earlier ones follow), but by the next batch if still open.
    const Gap& g = *u.envelope.gap;
    if (!tracker->ObserveRange(h.device_id, h.stream, g.first_seq, g.last_seq, nullptr)) {
      u.duplicate = true;
      ++stats_.duplicate_batches;
      return u;
    }
    ++stats_.gap_records;
    AddSaturating(&stats_.lost_events, g.events);
  } else {
    if (!tracker->Observe(h.device_id, h.stream, h.batch_seq, &u.missing)) {
      u.duplicate = true;
      ++stats_.duplicate_batches;
      return u;
    }
    ++stats_.batches;
    stats_.records += u.envelope.records.size();
  }
  // Exactly the ranges Process writes as "missing" lines.
  for (const auto& g : u.missing) AddSaturating(&stats_.missing_batches, RangeSize(g.first, g.last));
  return u;
}

void DescribeUnpacked(const Unpacked& u, std::vector<std::string>* notes) {
  const BatchHeader& h = u.envelope.header;
  if (u.duplicate) {
    notes->push_back((u.envelope.gap ? "duplicate gap record dropped: device="
                                     : "duplicate batch dropped: device=") +
                     h.device_id + " stream=" + h.stream + " batch=" + std::to_string(h.batch_seq));
    return;
  }
  for (const auto& g : u.missing) {
    notes->push_back("gap: device=" + g.device + " stream=" + g.stream + " batches " +
                     std::to_string(g.first) + ".." + std::to_string(g.last) + " not (yet) seen");
  }
  if (u.envelope.gap) {
    const Gap& g = *u.envelope.gap;
    notes->push_back("lost by the agent: device=" + h.device_id + " stream=" + h.stream +
                     " batches " + std::to_string(g.first_seq) + ".." +
                     std::to_string(g.last_seq) + " (" + std::to_string(g.events) +
                     " events): " + g.reason);
  }
}

Status Unpacker::Process(std::string_view envelope, std::string* out, std::string* gaps_out,
                         std::vector<std::string>* notes, Rejection* why) {
  Result<OpenedEnvelope> e = Open(envelope, why);
  if (!e.ok()) return e.status();
  Unpacked u = Accept(std::move(e).value());
  DescribeUnpacked(u, notes);
  if (u.duplicate) return Status::OK();
  for (const auto& g : u.missing) gaps_out->append(MissingToJson(g, tracker_.time()));
  const BatchHeader& h = u.envelope.header;
  if (u.envelope.gap) gaps_out->append(GapToJson(h.device_id, *u.envelope.gap));
  for (const Record& r : u.envelope.records) out->append(RecordToJson(h, r));
  return Status::OK();
}

namespace {

bool IsUtf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

// Appends `key` with `value` as a JSON string, or `key`_b64 when `value` is not UTF-8.
void AppendTextField(const char* key, std::string_view value, std::string* out) {
  out->push_back('"');
  out->append(key);
  if (IsUtf8(value)) {
    out->append("\":");
    AppendJsonString(value, out);
  } else {
    out->append("_b64\":\"");
    out->append(Base64Encode(value));
    out->push_back('"');
  }
}

// Appends `value` as a JSON string, or as {"b64":"..."} when it is not UTF-8
// (a property's name or value, which has no key of its own to add _b64 to).
void AppendTextValue(std::string_view value, std::string* out) {
  if (IsUtf8(value)) {
    AppendJsonString(value, out);
  } else {
    out->append("{\"b64\":\"").append(Base64Encode(value)).append("\"}");
  }
}

// Appends "stream" and, for a routed lane, "route_topic" and
// "route_priority": a batch header's stream names a lane (ParseLane).
void AppendLaneFields(std::string_view lane_name, std::string* out) {
  const Lane lane = ParseLane(lane_name);
  AppendTextField("stream", lane.stream, out);
  if (!lane.routed) return;
  out->push_back(',');
  AppendTextField("route_topic", lane.route_topic, out);
  out->push_back(',');
  AppendTextField("route_priority", lane.route_priority, out);
}

}  // namespace

std::string GapToJson(const std::string& device, const Gap& g) {
  std::string out = "{\"kind\":\"lost\",";
  AppendTextField("device", device, &out);
  out.push_back(',');
  AppendLaneFields(g.stream, &out);
  out += ",\"first_batch\":" + std::to_string(g.first_seq) +
         ",\"last_batch\":" + std::to_string(g.last_seq) +
         ",\"events\":" + std::to_string(g.events) + ",\"bytes\":" + std::to_string(g.bytes) +
         ",";
  AppendTextField("reason", g.reason, &out);
  out += ",\"first_event_at\":\"" + FormatRfc3339Micros(g.first_event_us) +
         "\",\"last_event_at\":\"" + FormatRfc3339Micros(g.last_event_us) +
         "\",\"recorded_at\":\"" + FormatRfc3339Micros(g.at_us) + "\"}\n";
  return out;
}

std::string MissingToJson(const SequenceTracker::Gap& g, int64_t now_us) {
  std::string out = "{\"kind\":\"missing\",";
  AppendTextField("device", g.device, &out);
  out.push_back(',');
  AppendLaneFields(g.stream, &out);
  out += ",\"first_batch\":" + std::to_string(g.first) +
         ",\"last_batch\":" + std::to_string(g.last) + ",\"detected_at\":\"" +
         FormatRfc3339Micros(now_us) + "\"}\n";
  return out;
}

std::string RecordToJson(const BatchHeader& h, const Record& r) {
  std::string out = "{";
  AppendTextField("device", h.device_id, &out);
  out.push_back(',');
  AppendLaneFields(h.stream, &out);
  out.append(",\"batch\":").append(std::to_string(h.batch_seq)).push_back(',');
  AppendTextField("topic", r.topic, &out);
  out.append(",\"received_at\":\"").append(FormatRfc3339Micros(r.received_at_us)).append("\"");
  out.append(",\"qos\":").append(std::to_string(r.qos));
  if (!r.content_type.empty()) {
    out.push_back(',');
    AppendTextField("content_type", r.content_type, &out);
  }
  if (!r.properties.empty()) {
    // [name, value] pairs in record order: names may repeat, as in MQTT.
    out.append(",\"properties\":[");
    for (size_t i = 0; i < r.properties.size(); ++i) {
      out.append(i > 0 ? ",[" : "[");
      AppendTextValue(r.properties[i].first, &out);
      out.push_back(',');
      AppendTextValue(r.properties[i].second, &out);
      out.push_back(']');
    }
    out.push_back(']');
  }
  // The payload goes in as JSON only when it parses; minified so the line stays one line.
  thread_local simdjson::dom::parser parser;
  simdjson::padded_string padded(r.payload);
  simdjson::dom::element doc;
  if (!r.payload.empty() && parser.parse(padded).get(doc) == simdjson::SUCCESS) {
    std::string mini(r.payload.size(), '\0');
    size_t len = 0;
    if (simdjson::minify(r.payload.data(), r.payload.size(), mini.data(), len) == simdjson::SUCCESS) {
      mini.resize(len);
      out.append(",\"payload\":").append(mini);
    } else {
      out.append(",\"payload_b64\":\"").append(Base64Encode(r.payload)).push_back('"');
    }
  } else {
    out.append(",\"payload_b64\":\"").append(Base64Encode(r.payload)).push_back('"');
  }
  out.append("}\n");
  return out;
}

Headers DeviceAndStreamHeaders(const std::string& device, std::string_view lane_name) {
  Lane lane = ParseLane(lane_name);
  Headers headers = {{"edgesync-device", device}, {"edgesync-stream", std::move(lane.stream)}};
  if (lane.routed) {
    headers.emplace_back("edgesync-route-topic", std::move(lane.route_topic));
    headers.emplace_back("edgesync-route-priority", std::move(lane.route_priority));
  }
  return headers;
}

Headers RecordHeaders(const BatchHeader& h, const Record& r) {
  Headers headers = DeviceAndStreamHeaders(h.device_id, h.stream);
  headers.emplace_back("edgesync-batch", std::to_string(h.batch_seq));
  headers.emplace_back("edgesync-received-at", FormatRfc3339Micros(r.received_at_us));
  headers.emplace_back("edgesync-topic", r.topic);
  headers.emplace_back("edgesync-qos", std::to_string(r.qos));
  if (!r.content_type.empty()) headers.emplace_back("edgesync-content-type", r.content_type);
  for (const auto& [k, v] : r.properties) headers.emplace_back("edgesync-property." + k, v);
  return headers;
}

std::string_view RecordKey(const BatchHeader& h, const Record& r) {
  std::string_view key = h.device_id;
  for (const auto& [k, v] : r.properties) {
    if (k == "edgesync.key") key = v;
  }
  return key;
}

}  // namespace edgesync
