#include "agent/spool.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/pipeline.h"
#include "agent/triage.h"
#include "base/coding.h"
#include "buffer/journal.h"  // the spool is a journal directory (layout_test.sh allows this file)
#include "fleet/bundle.h"
#include "plugins/route.h"

namespace edgesync {
namespace {

// The journal's segment names: 16 lower-case hex digits and ".log".
bool ParseSpoolSegment(const std::string& name, uint64_t* segment) {
  if (name.size() != 20 || name.compare(16, 4, ".log") != 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 16; ++i) {
    const char c = name[i];
    const int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *segment = v;
  return true;
}

void PutBytes(std::string* out, std::string_view b) {
  PutU32(out, static_cast<uint32_t>(b.size()));
  out->append(b);
}

}  // namespace

std::string SpoolDir(const std::string& state_dir) { return state_dir + "/spool"; }

Result<std::vector<std::pair<uint64_t, std::string>>> SpoolSegments(Env* env, const std::string& dir) {
  Result<std::vector<std::string>> names = env->ListDir(dir);
  if (!names.ok()) return names.status();
  std::vector<std::pair<uint64_t, std::string>> out;
  for (const std::string& n : *names) {
    uint64_t seg;
    if (ParseSpoolSegment(n, &seg)) out.emplace_back(seg, n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void EncodeSpoolRecord(const IngestMessage& m, int64_t received_at_us, std::string* out) {
  out->clear();
  PutU8(out, kSpoolRecordVersion);
  PutU8(out, static_cast<uint8_t>(m.qos));
  PutU16(out, 0);  // flags, none yet
  PutI64(out, received_at_us);
  PutU64(out, std::max<uint64_t>(m.payload_size, m.payload.size()));
  PutU32(out, static_cast<uint32_t>(m.user_property_count));
  PutU64(out, m.user_property_bytes);
  PutBytes(out, m.topic);
  PutBytes(out, m.content_type);
  PutU32(out, static_cast<uint32_t>(m.user_properties.size()));
  for (const auto& [name, value] : m.user_properties) {
    PutBytes(out, name);
    PutBytes(out, value);
  }
  PutBytes(out, m.payload);
}

Status DecodeSpoolRecord(std::string_view record, IngestMessage* m) {
  ByteReader r(record);
  const uint8_t version = r.U8();
  if (!r.failed() && version != kSpoolRecordVersion) {
    return Status::Corruption("spool record version " + std::to_string(version) +
                              " is not one this agent reads (" + std::to_string(kSpoolRecordVersion) +
                              "): upgrade the agent to the broker plugin's version");
  }
  m->qos = r.U8();
  (void)r.U16();
  m->received_at_us = r.I64();
  const uint64_t payload_size = r.U64();
  m->user_property_count = r.U32();
  m->user_property_bytes = static_cast<size_t>(r.U64());
  m->topic = r.Bytes(r.U32());
  m->content_type = r.Bytes(r.U32());
  const uint32_t n = r.U32();
  // Each property takes at least 8 bytes: a count larger than the rest
  // could hold is corrupt, and must not size an allocation.
  if (r.failed() || n > r.remaining() / 8) return Status::Corruption("spool record: truncated or corrupt");
  m->user_properties.clear();
  m->user_properties.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    std::string_view name = r.Bytes(r.U32());
    std::string_view value = r.Bytes(r.U32());
    if (r.failed()) break;
    m->user_properties.emplace_back(std::string(name), std::string(value));
  }
  m->payload = r.Bytes(r.U32());
  if (r.failed() || r.remaining() != 0) return Status::Corruption("spool record: truncated or corrupt");
  m->payload_size = static_cast<size_t>(payload_size);
  return Status::OK();
}

// ---------------------------------------------------------------- writer

SpoolWriter::SpoolWriter(const Config& config, Env* env)
    : env_(env),
      dir_(SpoolDir(config.state_dir)),
      max_bytes_(config.spool_max_bytes),
      sync_us_(config.batch.sync_interval_us),
      max_payload_(config.mqtt_max_payload) {
  if (!config.encryption_public_key.empty()) {
    key_path_ = config.encryption_journal_key.empty() ? config.state_dir + "/journal.key"
                                                      : config.encryption_journal_key;
  }
}

SpoolWriter::~SpoolWriter() {
  if (!journal_) return;
  // The broker stops: close the segment (Rotate syncs it) so the agent,
  // which reads only the segments the writer moved on from, reads it now
  // rather than after the broker's next start.
  if (journal_->current_offset() > 0) {
    (void)journal_->Rotate();
  } else {
    (void)journal_->SyncIfDirty();
  }
}

Result<std::unique_ptr<SpoolWriter>> SpoolWriter::Create(const Config& config, Env* env) {
  std::unique_ptr<SpoolWriter> w(new SpoolWriter(config, env));
  Result<std::shared_ptr<const Pipeline>> pl = Pipeline::Build(config);
  if (!pl.ok()) return pl.status();
  w->pipeline_ = std::move(pl).value();
  w->extra_filters_ = config.mqtt_subscribe;
  if (!config.fleet_mqtt_topic.empty()) w->extra_filters_.push_back(config.fleet_mqtt_topic);
  w->fleet_topic_ = config.fleet_mqtt_topic;
  // The pci instances of each stream's chain (and the dead-letter
  // stream's), in chain order: card data is masked before the spool
  // touches the disk. The rest of the chain runs in the agent.
  std::unordered_set<const Plugin*> pci;
  for (const PluginConfig& p : config.plugins) {
    if (p.type == "pci") pci.insert(p.plugin.get());
  }
  for (size_t i = 0; i <= config.streams.size(); ++i) {
    std::vector<const Plugin*> chain;
    for (const auto& p : w->pipeline_->chain(i)) {
      if (pci.count(p.get())) chain.push_back(p.get());
    }
    w->pci_.push_back(std::move(chain));
  }
  w->segment_started_us_ = w->last_sync_us_ = env->MonotonicMicros();
  return w;
}

Status SpoolWriter::EnsureOpen() {
  if (journal_) return Status::OK();
  std::optional<crypto::Key> key;
  if (!key_path_.empty()) {
    // The agent creates the key at its first start; the broker only reads it.
    if (!env_->Exists(key_path_)) {
      return Status::Unavailable("the journal key " + key_path_ +
                                 " does not exist yet: start the agent once (it creates it), and let the "
                                 "broker's user read it");
    }
    Result<crypto::Key> k = crypto::LoadOrCreateKeyFile(env_, key_path_);
    if (!k.ok()) return Status::Unavailable("the journal key: " + k.status().ToString());
    key = *k;
  }
  Result<std::unique_ptr<Journal>> j = Journal::OpenForAppend(env_, dir_, key ? &*key : nullptr, key.has_value());
  if (key) crypto::Wipe(&*key);
  if (!j.ok()) return j.status();
  journal_ = std::move(j).value();
  segment_started_us_ = last_sync_us_ = env_->MonotonicMicros();
  return Measure();
}

Status SpoolWriter::Measure() {
  Result<std::vector<std::pair<uint64_t, std::string>>> segs = SpoolSegments(env_, dir_);
  if (!segs.ok()) return segs.status();
  uint64_t total = 0;
  for (const auto& [seg, name] : *segs) {
    Result<uint64_t> size = env_->FileSize(dir_ + "/" + name);
    if (size.ok()) total += *size;  // gone since the listing: the agent read it
  }
  spool_bytes_ = total;
  return Status::OK();
}

SpoolWriter::Outcome SpoolWriter::Refuse(std::string reason, std::string* why, bool* episode_start) {
  ++refused_;
  ++refused_in_episode_;
  *episode_start = !refusing_;
  refusing_ = true;
  *why = std::move(reason);
  return Outcome::kRefused;
}

SpoolWriter::Outcome SpoolWriter::OnMessage(const IngestMessage& m, std::string* why, bool* episode_start) {
  *episode_start = false;
  const Pipeline& pl = *pipeline_;
  std::optional<size_t> stream = pl.router().Route(m.topic);
  if (!stream) {
    bool wanted = false;
    for (const std::string& f : extra_filters_) wanted = wanted || TopicMatches(f, m.topic);
    if (!wanted) return Outcome::kIgnored;
  }
  if (Status st = EnsureOpen(); !st.ok()) return Refuse("the spool " + dir_ + ": " + st.ToString(), why, episode_start);
  // The fleet topic's payload is a signed bundle, which the agent's intake
  // hands to the rollout (agent/intake.cpp) and never to a stream: masking
  // or cutting it would only break its signature.
  if (!fleet_topic_.empty() && m.topic == fleet_topic_) return StoreBundle(m, why, episode_start);

  // A payload larger than mqtt.max_payload goes to the dead-letter stream
  // cut to that size (agent/intake.cpp); only what the agent can keep is
  // masked and written. Cut a little past the limit, where the cut is safe
  // for card numbers, so the agent still sees it is too large and cuts it
  // where it would have cut the whole.
  std::string_view payload = m.payload;
  const size_t max_payload = static_cast<size_t>(max_payload_);
  if (payload.size() > max_payload + 1024) payload = payload.substr(0, CardSafeCut(payload, max_payload + 1024));

  topic_.assign(m.topic);
  content_type_.assign(m.content_type);
  payload_.assign(payload);
  properties_.assign(m.user_properties.begin(), m.user_properties.end());
  Event e;
  e.topic = topic_;
  e.received_at_us = m.received_at_us;
  e.properties = &properties_;
  e.topic_text = &topic_;
  e.content_type = &content_type_;
  e.raw = &payload_;  // pci reads a raw payload as JSON when it is JSON
  for (const Plugin* p : pci_[stream ? *stream : pci_.size() - 1]) {
    e.topic = topic_;
    // pci only masks; whatever it answers, the agent's chain decides again.
    (void)p->Process(e);
  }
  IngestMessage masked = m;
  masked.topic = topic_;
  masked.content_type = content_type_;
  masked.payload = payload_;
  masked.payload_size = m.payload.size();
  masked.user_properties = properties_;
  EncodeSpoolRecord(masked, m.received_at_us != 0 ? m.received_at_us : env_->NowMicros(), &record_);

  return Store(why, episode_start);
}

SpoolWriter::Outcome SpoolWriter::StoreBundle(const IngestMessage& m, std::string* why, bool* episode_start) {
  if (m.payload.size() > fleet::kMaxBundleBytes) {
    *why = "a message of " + std::to_string(m.payload.size()) + " bytes on the fleet topic " + fleet_topic_ +
           " is larger than a bundle may be (" + std::to_string(fleet::kMaxBundleBytes) +
           " bytes): not spooled, the agent will not see it. Publish a smaller bundle";
    return Outcome::kIgnored;
  }
  IngestMessage copy = m;
  copy.payload_size = m.payload.size();
  EncodeSpoolRecord(copy, m.received_at_us != 0 ? m.received_at_us : env_->NowMicros(), &record_);
  if (record_.size() > max_bytes_) {
    *why = "a bundle of " + std::to_string(m.payload.size()) + " bytes on the fleet topic " + fleet_topic_ +
           " can never fit the spool's quota (mqtt.spool_max_bytes = " + std::to_string(max_bytes_) +
           "): not spooled, the agent will not see it. Raise mqtt.spool_max_bytes";
    return Outcome::kIgnored;
  }
  return Store(why, episode_start);
}

SpoolWriter::Outcome SpoolWriter::Store(std::string* why, bool* episode_start) {
  if (spool_bytes_ + record_.size() > max_bytes_) {
    return Refuse("the spool " + dir_ + " holds " + std::to_string(spool_bytes_) +
                      " bytes, its quota (mqtt.spool_max_bytes) is " + std::to_string(max_bytes_) +
                      ": is the agent running? Publishers get no PUBACK and send again",
                  why, episode_start);
  }
  const uint64_t before = journal_->current_offset();
  const uint64_t segment = journal_->current_segment();
  if (Status st = journal_->Append(record_); !st.ok()) {
    return Refuse("writing the spool " + dir_ + ": " + st.ToString(), why, episode_start);
  }
  if (journal_->current_segment() != segment || before == 0) {
    segment_started_us_ = env_->MonotonicMicros();
    segment_record_bytes_ = 0;
  }
  segment_record_bytes_ += record_.size();
  spool_bytes_ += journal_->current_offset() - (journal_->current_segment() == segment ? before : 0);
  ++stored_;
  refusing_ = false;
  if (journal_->current_offset() >= max_segment_bytes_ || segment_record_bytes_ >= max_segment_record_bytes_) {
    // A burst: move on without waiting for the tick, so segments stay small
    // for the agent to read and delete.
    if (Result<JournalPosition> r = journal_->Rotate(); r.ok()) {
      segment_started_us_ = last_sync_us_ = env_->MonotonicMicros();
      segment_record_bytes_ = 0;
    }
  }
  return Outcome::kStored;
}

std::string SpoolWriter::Tick() {
  std::string line;
  // mosquitto ticks on every pass of its loop, under load once per few
  // packets: the directory is looked at no more often than this.
  const int64_t now = env_->MonotonicMicros();
  if (now - last_tick_us_ < std::min<int64_t>(kTickEveryUs, sync_us_)) return line;
  last_tick_us_ = now;
  if (!journal_) {
    if (Status st = EnsureOpen(); !st.ok()) {
      if (st.ToString() != last_open_error_) {
        last_open_error_ = st.ToString();
        line = "edgesync: cannot open the spool " + dir_ + ": " + last_open_error_;
      }
      return line;
    }
    last_open_error_.clear();
  }
  if (journal_->current_offset() > 0 && now - segment_started_us_ >= sync_us_) {
    Result<JournalPosition> r = journal_->Rotate();  // syncs the segment it closes
    if (!r.ok()) line = "edgesync: moving to a new spool segment: " + r.status().ToString();
    segment_started_us_ = last_sync_us_ = now;
    if (r.ok()) segment_record_bytes_ = 0;
  } else if (now - last_sync_us_ >= sync_us_) {
    if (Status st = journal_->SyncIfDirty(); !st.ok()) line = "edgesync: syncing the spool: " + st.ToString();
    last_sync_us_ = now;
  }
  (void)Measure();
  if (!refusing_ && refused_in_episode_ > 0) {
    if (line.empty()) {
      line = "edgesync: the spool takes messages again after refusing " + std::to_string(refused_in_episode_);
    }
    refused_in_episode_ = 0;
  }
  return line;
}

}  // namespace edgesync
