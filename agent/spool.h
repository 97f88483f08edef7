// Spool: how events get from the edgesync broker plugin (broker/, loaded
// into mosquitto) to the agent when mqtt.mode = "broker-plugin".
//
// The plugin runs inside the broker, on the broker's only thread, before
// the broker acknowledges a publish. It never talks to the agent and never
// waits for it: for each publish a stream (or mqtt.subscribe, or the fleet
// topic) claims, SpoolWriter masks card data with the configuration's pci
// plugins and appends the message as one frame to the spool, a journal
// directory (<state_dir>/spool, the journal's segment format, encrypted
// with the journal key when the agent's journal is) with one write().
// Only then does the broker send the publisher its PUBACK. When the spool
// is over its quota (mqtt.spool_max_bytes) or cannot be written, the
// message is refused: the broker sends no PUBACK and closes the
// publisher's connection, and the publisher sends it again after it
// reconnects. A stopped or hung agent therefore costs the broker nothing
// but a spool that fills up to its quota.
//
// The agent's SpoolReader reads the segments the plugin has moved on from
// (all but the newest), hands each message to Intake::OnMessage (triage,
// chains, the journal append), syncs the sealer's journals and only then
// deletes the segment. A crash of the agent before the delete reads the
// whole segment again at the next start: at least once, like a QoS 1
// redelivery (docs/architecture.md). Record layout: FORMAT.md, "Spool".
//
// Threads: SpoolWriter is not thread-safe (mosquitto calls plugins from
// its one thread). SpoolReader runs one thread of its own.
//
// The writer (spool.cpp) is what the broker plugin links; the reader
// (spool_reader.cpp) holds the agent's side, so the broker loads neither
// the intake nor the sealer nor, through the configuration, librdkafka or
// libmosquitto's client (tests/layout_test.sh checks it).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "agent/config.h"
#include "agent/ingest.h"
#include "base/env.h"
#include "base/status.h"
#include "format/crypto.h"

namespace spdlog {
class logger;
}

namespace edgesync {

class Intake;
class Journal;
class Sealer;
class Pipeline;
class Plugin;

constexpr uint8_t kSpoolRecordVersion = 1;

// Where the spool lives under the agent's state directory.
std::string SpoolDir(const std::string& state_dir);
// The spool's segments (journal segment names), oldest first.
Result<std::vector<std::pair<uint64_t, std::string>>> SpoolSegments(Env* env, const std::string& dir);

// One spool record (FORMAT.md, "Spool"): the message as the broker
// received it, after masking. `payload_size` is the size it was published
// with when the payload was cut (see SpoolWriter), else payload's size.
void EncodeSpoolRecord(const IngestMessage& m, int64_t received_at_us, std::string* out);
// Views into `record`: valid while it is. Fails on anything malformed.
Status DecodeSpoolRecord(std::string_view record, IngestMessage* m);

// The plugin's half.
class SpoolWriter {
 public:
  enum class Outcome {
    kStored,   // in the spool (written): the broker may acknowledge it
    kIgnored,  // nothing of the agent's: the broker goes on as without the plugin
    kRefused,  // not stored: the broker must not acknowledge it
  };

  // `config`: the agent's configuration (the plugin reads the agent's own
  // edgesync.toml). Opens nothing yet: the spool directory and the journal
  // key may appear later (the agent creates the key at its first start).
  static Result<std::unique_ptr<SpoolWriter>> Create(const Config& config, Env* env = Env::Default());
  ~SpoolWriter();

  // On a refusal `why` says why. `episode_start` is set when this refusal
  // ends a run of stored messages: log it then, not for every message.
  // kIgnored with a non-empty `why` is a message of the agent's it cannot
  // take (a fleet bundle too large): log it.
  Outcome OnMessage(const IngestMessage& m, std::string* why, bool* episode_start);
  // On the broker's tick: fdatasync every buffer.sync_interval, move on to a
  // new segment once the current one holds events that old (so the agent
  // can read it), measure the spool again (the agent deletes what it read).
  // Returns a line for the broker's log when there is something to say.
  std::string Tick();

  uint64_t spool_bytes() const { return spool_bytes_; }
  // The most record bytes (uncompressed) a segment gets before the writer
  // moves on; for tests.
  static constexpr uint64_t kMaxSegmentRecordBytes = 1 << 20;
  uint64_t stored() const { return stored_; }
  uint64_t refused() const { return refused_; }

 private:
  SpoolWriter(const Config& config, Env* env);
  Status EnsureOpen();
  Status Measure();
  Outcome Refuse(std::string reason, std::string* why, bool* episode_start);
  // Appends record_ within the quota.
  Outcome Store(std::string* why, bool* episode_start);
  Outcome StoreBundle(const IngestMessage& m, std::string* why, bool* episode_start);

  Env* env_;
  std::string dir_;
  std::string key_path_;  // set when the spool is encrypted
  uint64_t max_bytes_;
  int64_t sync_us_;
  int64_t max_payload_;
  uint64_t max_segment_bytes_ = 4 << 20;
  // The reader decompresses a whole segment at once: its records (before
  // compression, which shrinks repetitive JSON tenfold and more) are kept
  // to about this much, plus one record.
  uint64_t max_segment_record_bytes_ = kMaxSegmentRecordBytes;
  uint64_t segment_record_bytes_ = 0;  // records written to the current segment
  std::shared_ptr<const Pipeline> pipeline_;
  std::vector<std::string> extra_filters_;  // mqtt.subscribe and the fleet topic
  std::string fleet_topic_;  // fleet.mqtt_topic: spooled as published (a signed bundle)
  std::vector<std::vector<const Plugin*>> pci_;  // per stream, then the dead-letter stream's
  std::unique_ptr<Journal> journal_;
  int64_t segment_started_us_ = 0;  // monotonic: the current segment's first frame
  int64_t last_sync_us_ = 0;
  int64_t last_tick_us_ = INT64_MIN / 2;  // monotonic: the last tick that did its work
  static constexpr int64_t kTickEveryUs = 100'000;
  uint64_t spool_bytes_ = 0;        // measured at the last tick, plus what was written since
  uint64_t stored_ = 0, refused_ = 0, refused_in_episode_ = 0;
  bool refusing_ = false;
  std::string last_open_error_;
  // Scratch, reused between messages.
  std::string topic_, content_type_, payload_, record_;
  std::vector<std::pair<std::string, std::string>> properties_;
};

struct SpoolReaderOptions {
  Env* env = Env::Default();
  std::string dir;
  std::optional<crypto::Key> key;  // the journal key (encrypted segments)
  Intake* intake = nullptr;        // outlives the reader
  Sealer* sealer = nullptr;        // its journals are synced before a segment is deleted
  int64_t poll_us = 100'000;       // how often the directory is looked at when there is nothing to read
  std::shared_ptr<spdlog::logger> logger;
};

struct SpoolReaderStats {
  uint64_t received = 0;         // messages handed to the intake
  uint64_t segments = 0;         // segments read and deleted
  uint64_t torn_bytes = 0;       // cut from torn tails (a broker crash mid-write)
  uint64_t unreadable = 0;       // segments set aside (no key, damaged)
  uint64_t malformed = 0;        // records that did not decode (skipped)
  bool ok = true;                // the spool directory could be read the last time
};

class SpoolReader {
 public:
  explicit SpoolReader(SpoolReaderOptions options);
  ~SpoolReader();
  Status Start();
  // Finishes the segment in hand (so a clean stop sends nothing twice), then joins.
  void Stop();
  SpoolReaderStats stats() const;
  // Reads every closed segment once; for tests (the thread does this in a loop).
  Status ReadClosedSegments();

 private:
  void Run();
  Status ReadSegment(const std::string& name);
  // The sync and delete after a segment's records went to the intake.
  Status Finish(const std::string& name);

  SpoolReaderOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::thread thread_;
  std::mutex mu_;
  std::unique_ptr<CondVar> cv_;
  bool stopping_ = false;  // guarded by mu_
  std::atomic<uint64_t> received_{0}, segments_{0}, torn_{0}, unreadable_{0}, malformed_{0};
  std::atomic<bool> ok_{true};
  std::string bad_dir_error_;  // reader thread only: the last listing error logged
  // Reader thread only. Segments whose records all went to the intake but
  // that could not be synced or deleted yet: never fed again (the plugin
  // never rewrites a closed segment), only their sync and delete retried.
  std::unordered_set<std::string> taken_;
  // Segments found unreadable (counted once) whose rename aside failed.
  std::unordered_set<std::string> set_aside_;
};

}  // namespace edgesync
