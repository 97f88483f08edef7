// The agent's half of the spool (agent/spool.h): apart from the writer,
// which the broker plugin links, so that the plugin holds no intake or
// sealer code.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/intake.h"
#include "agent/spool.h"
#include "buffer/journal.h"  // the spool is a journal directory (layout_test.sh allows this file)
#include "buffer/sealer.h"

namespace edgesync {

SpoolReader::SpoolReader(SpoolReaderOptions options)
    : options_(std::move(options)),
      log_(options_.logger ? options_.logger : spdlog::default_logger()),
      cv_(options_.env->NewCondVar()) {}

SpoolReader::~SpoolReader() { Stop(); }

Status SpoolReader::Start() {
  EDGESYNC_RETURN_IF_ERROR(options_.env->CreateDirs(options_.dir));
  log_->info("mqtt.mode = broker-plugin: reading the broker plugin's spool {} (no MQTT connection of our own)",
             options_.dir);
  thread_ = std::thread([this] { Run(); });
  return Status::OK();
}

void SpoolReader::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_->NotifyAll();
  if (thread_.joinable()) thread_.join();
}

SpoolReaderStats SpoolReader::stats() const {
  SpoolReaderStats s;
  s.received = received_.load();
  s.segments = segments_.load();
  s.torn_bytes = torn_.load();
  s.unreadable = unreadable_.load();
  s.malformed = malformed_.load();
  s.ok = ok_.load();
  return s;
}

void SpoolReader::Run() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    Status st = ReadClosedSegments();
    ok_.store(st.ok());
    if (!st.ok() && st.ToString() != bad_dir_error_) {
      bad_dir_error_ = st.ToString();
      log_->error("spool {}: {}", options_.dir, bad_dir_error_);
    } else if (st.ok()) {
      bad_dir_error_.clear();
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    cv_->WaitUntil(lock, options_.env->MonotonicMicros() + options_.poll_us);
  }
}

Status SpoolReader::ReadClosedSegments() {
  Result<std::vector<std::pair<uint64_t, std::string>>> segs = SpoolSegments(options_.env, options_.dir);
  if (!segs.ok()) return segs.status();
  // The newest segment is the one the plugin writes: it is read once the
  // plugin has moved on from it (a tick, a burst, or the broker's restart).
  // Forget what is gone (deleted or renamed by hand) so the sets stay small.
  auto prune = [&](std::unordered_set<std::string>* names) {
    for (auto it = names->begin(); it != names->end();) {
      const bool listed = std::any_of(segs->begin(), segs->end(), [&](const auto& s) { return s.second == *it; });
      it = listed ? std::next(it) : names->erase(it);
    }
  };
  prune(&taken_);
  prune(&set_aside_);
  for (size_t i = 0; i + 1 < segs->size(); ++i) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return Status::OK();
    }
    EDGESYNC_RETURN_IF_ERROR(ReadSegment((*segs)[i].second));
  }
  return Status::OK();
}

Status SpoolReader::Finish(const std::string& name) {
  const std::string path = options_.dir + "/" + name;
  // What the intake took is in the sealer's journals: make it survive a
  // power cut before the spool's copy goes.
  Status st = options_.sealer != nullptr ? options_.sealer->SyncJournals() : Status::OK();
  if (st.ok()) st = options_.env->RemoveFile(path);
  if (!st.ok()) {
    // Its events are in the intake already: reading it again would send
    // them twice. Only the sync and the delete are tried again (Run logs
    // this once, and again only when the error changes).
    return Status::IOError("spool segment " + path + " was read, but syncing the journals or deleting it failed (" +
                                 st.ToString() + "); it is not read again, the sync and delete are retried. "
                                 "Check the state directory's disk and permissions");
  }
  taken_.erase(name);
  segments_.fetch_add(1);
  return Status::OK();
}

Status SpoolReader::ReadSegment(const std::string& name) {
  const std::string path = options_.dir + "/" + name;
  if (taken_.count(name)) return Finish(name);
  if (set_aside_.count(name)) {
    EDGESYNC_RETURN_IF_ERROR(options_.env->Rename(path, path + ".unreadable"));
    set_aside_.erase(name);
    return Status::OK();
  }
  Result<std::string> bytes = options_.env->ReadFile(path, kMaxOwnFileBytes);
  if (!bytes.ok()) return bytes.status();
  SegmentScan scan = ScanSegment(*bytes, options_.key ? &*options_.key : nullptr);
  if (scan.unreadable.empty() && scan.records.empty() && !bytes->empty()) {
    // Bytes but not one record: a header this agent does not know (a newer
    // plugin's?) or garbage. Kept for a look rather than deleted.
    scan.unreadable = "no record could be read from it (not a spool segment this agent knows)";
  }
  if (!scan.unreadable.empty()) {
    unreadable_.fetch_add(1);
    log_->error("spool segment {} is unreadable ({}); moved aside to {}.unreadable: its events are not "
                "collected. Check that the broker plugin and the agent use the same encryption.journal_key",
                path, scan.unreadable, path);
    set_aside_.insert(name);  // counted once, however often the rename must be tried
    EDGESYNC_RETURN_IF_ERROR(options_.env->Rename(path, path + ".unreadable"));
    set_aside_.erase(name);
    return Status::OK();
  }
  if (scan.valid_bytes < bytes->size()) {
    torn_.fetch_add(bytes->size() - scan.valid_bytes);
    log_->warn("spool segment {}: cut {} bytes of torn tail after offset {} (the broker stopped mid-write; "
               "that message was not acknowledged to its publisher)",
               path, bytes->size() - scan.valid_bytes, scan.valid_bytes);
  }
  IngestMessage m;
  for (const auto& rec : scan.records) {
    if (Status st = DecodeSpoolRecord(rec.first, &m); !st.ok()) {
      malformed_.fetch_add(1);
      log_->error("spool segment {}: a record is skipped: {}", path, st.ToString());
      continue;
    }
    options_.intake->OnMessage(m);
    received_.fetch_add(1, std::memory_order_relaxed);
  }
  taken_.insert(name);
  return Finish(name);
}

}  // namespace edgesync
