#include "buffer/sealer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace edgesync {

struct Sealer::Lane {
  StreamSpec spec;
  std::mutex mu;  // guards journal and the open batch; Accept vs. sealer thread
  std::unique_ptr<Journal> journal;
  std::string body;
  uint32_t events = 0;
  int64_t first_us = 0, last_us = 0;
  int64_t opened_mono = 0;  // monotonic time of the open batch's first event
  // A batch closed and no event came since (then closed_mono is when):
  // a second later the sealer's pass gives the lane's memory back.
  bool release_pending = false;
  int64_t closed_mono = 0;
  uint64_t next_seq = 1;    // sealer thread only (and Open)
};

Sealer::Sealer(Env* env, Store* store, SealerOptions options)
    : env_(env), store_(store), options_(std::move(options)), cv_(env->NewCondVar()) {
  if (options_.logger == nullptr) options_.logger = spdlog::default_logger();
}

Sealer::~Sealer() {
  if (thread_.joinable()) (void)Stop();
}

Result<std::unique_ptr<Sealer>> Sealer::Open(Env* env, Store* store, SealerOptions options,
                                             std::vector<StreamSpec> streams) {
  std::unique_ptr<Sealer> s(new Sealer(env, store, std::move(options)));
  for (size_t i = 0; i < streams.size(); ++i) {
    auto lane = std::make_unique<Lane>();
    lane->spec = std::move(streams[i]);
    Result<StreamState> state = store->LoadStream(lane->spec.name);
    if (!state.ok()) return state.status();
    lane->next_seq = state->next_seq;
    JournalRecovery rec;
    const crypto::Key* key = s->options_.journal_key ? &*s->options_.journal_key : nullptr;
    Result<std::unique_ptr<Journal>> j =
        Journal::Open(env, s->options_.journal_dir + "/" + lane->spec.name, state->sealed, &rec,
                      key, s->options_.encrypt_journal);
    if (!j.ok()) return j.status();
    lane->journal = std::move(j).value();
    s->lanes_.push_back(std::move(lane));
    for (const std::string& p : rec.problems) s->options_.logger->warn("journal recovery: {}", p);
    s->torn_bytes_ += rec.torn_bytes;
    s->unreadable_segments_ += rec.unreadable_segments;

    // Seal the recovered records in batches of the usual size; the last one
    // claims everything up to the fresh segment, which is still empty.
    Closed c{i, {}, 0, 0, 0, {}};
    uint64_t sealed_here = 0;
    for (size_t k = 0; k < rec.entries.size(); ++k) {
      Result<Record> r = DecodeRecord(rec.entries[k].record);
      if (!r.ok()) {
        // The frame's checksum held, so this is a writer bug, not a torn write.
        s->options_.logger->error("journal recovery: stream {}: skipping undecodable record: {}",
                      s->lanes_[i]->spec.name, r.status().ToString());
      } else {
        if (c.events == 0) c.first_us = r->received_at_us;
        c.last_us = r->received_at_us;
        AppendToBody(rec.entries[k].record, &c.body);
        ++c.events;
      }
      c.end = rec.entries[k].end;
      const bool last = k + 1 == rec.entries.size();
      if (c.events > 0 &&
          (last || c.events >= s->options_.max_events || c.body.size() >= s->options_.max_bytes)) {
        if (last) c.end = JournalPosition{s->lanes_[i]->journal->current_segment(), 0};
        sealed_here += c.events;
        EDGESYNC_RETURN_IF_ERROR(s->SealAndCommit(c));
        c = Closed{i, {}, 0, 0, 0, {}};
      }
    }
    s->recovered_events_ += sealed_here;
    // Recovery sealed on the caller's thread, which seals nothing more.
    if (sealed_here > 0) ReleaseSealMemory();
    if (sealed_here > 0) {
      s->options_.logger->info("journal recovery: stream {}: sealed {} recovered events",
                   s->lanes_[i]->spec.name, sealed_here);
    }
  }
  s->WarnAboutUnconfiguredJournals();
  return s;
}

// A stream removed from the configuration leaves its journal behind; its
// unsealed events are kept, not uploaded, until the stream comes back.
void Sealer::WarnAboutUnconfiguredJournals() {
  Result<std::vector<std::string>> dirs = env_->ListDir(options_.journal_dir);
  if (!dirs.ok()) return;
  for (const std::string& d : *dirs) {
    bool configured = std::any_of(lanes_.begin(), lanes_.end(),
                                  [&](const auto& l) { return l->spec.name == d; });
    if (configured) continue;
    uint64_t bytes = 0;
    Result<std::vector<std::string>> files = env_->ListDir(options_.journal_dir + "/" + d);
    if (files.ok()) {
      for (const std::string& f : *files) {
        Result<uint64_t> size = env_->FileSize(options_.journal_dir + "/" + d + "/" + f);
        if (size.ok()) bytes += *size;
      }
    }
    if (bytes > 0) {
      options_.logger->warn("journal: {}/{} holds {} bytes of unsealed events of stream \"{}\", which is "
                   "no longer configured; they are kept, and uploaded once the stream is back",
                   options_.journal_dir, d, bytes, d);
    }
  }
}

void Sealer::Start() { thread_ = std::thread([this] { Run(); }); }

Status Sealer::Accept(size_t stream, const Record& r) {
  if (stream >= lanes_.size()) return Status::InvalidArgument("no stream " + std::to_string(stream));
  Lane& lane = *lanes_[stream];
  // Backpressure: far behind sealing means memory would grow without bound.
  // The common case reads one atomic instead of taking the sealer's mutex.
  if (closed_count_.load(std::memory_order_acquire) >= options_.max_closed) {
    std::unique_lock<std::mutex> lock(mu_);
    space_cv_.wait(lock, [&] { return closed_.size() < options_.max_closed || stopping_ || no_wait_; });
  }
  std::lock_guard<std::mutex> lock(lane.mu);
  // Encoded once, straight into the open batch; the journal writes the same bytes.
  const size_t mark = lane.body.size();
  AppendToBody(r, &lane.body);
  std::string_view encoded = std::string_view(lane.body).substr(mark + kBodyFrameHeader);
  Status written = lane.journal->Append(encoded);
  if (!written.ok()) {
    lane.body.resize(mark);  // not accepted: not in the batch either
    last_error_.Set("stream " + lane.spec.name + ": journal: " + written.ToString());
    return written;
  }
  if (lane.events == 0) {
    lane.first_us = r.received_at_us;
    lane.opened_mono = env_->MonotonicMicros();
    lane.release_pending = false;  // not quiet after all
  }
  lane.last_us = r.received_at_us;
  ++lane.events;
  accepted_.fetch_add(1, std::memory_order_relaxed);
  if (lane.events >= options_.max_events || lane.body.size() >= options_.max_bytes) {
    // The event is durable already; a failed rotation only delays sealing.
    Status st = CloseLocked(stream);
    if (!st.ok()) {
      options_.logger->error("stream {}: closing batch: {}", lane.spec.name, st.ToString());
      last_error_.Set("stream " + lane.spec.name + ": closing batch: " + st.ToString());
    }
  }
  return Status::OK();
}

Status Sealer::CloseLocked(size_t lane_index) {
  Lane& lane = *lanes_[lane_index];
  if (lane.events == 0) return Status::OK();
  Result<JournalPosition> end = lane.journal->Rotate();
  if (!end.ok()) return end.status();
  Closed c{lane_index, std::move(lane.body), lane.events, lane.first_us, lane.last_us, *end};
  lane.body.clear();
  lane.body.reserve(c.body.size());  // the next batch grows in one allocation, not a dozen
  // The lane may have gone quiet, whether this batch closed full or by
  // age. If no event comes for a second, the sealer's pass (Run) frees its
  // batch buffer and its journal's compression context (about 1 MiB once
  // used); a flow with less than a second between events keeps them.
  lane.release_pending = true;
  lane.closed_mono = env_->MonotonicMicros();
  lane.events = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_.push_back(std::move(c));
    closed_count_.store(closed_.size(), std::memory_order_release);
  }
  cv_->NotifyOne();
  return Status::OK();
}

Status Sealer::SealAndCommit(Closed& c, CheckWait wait) {
  Lane& lane = *lanes_[c.lane];
  BatchHeader h;
  h.device_id = options_.device_id;
  h.stream = lane.spec.name;
  h.batch_seq = lane.next_seq;
  h.event_count = c.events;
  h.first_event_us = c.first_us;
  h.last_event_us = c.last_us;
  Result<std::string> env = SealEnvelope(h, c.body, options_.seal);
  if (!env.ok()) return env.status();
  SealedBatch b;
  b.stream = lane.spec.name;
  b.kafka_topic = lane.spec.kafka_topic;
  b.priority = lane.spec.priority;
  b.seq = lane.next_seq;
  b.events = c.events;
  b.first_event_us = c.first_us;
  b.last_event_us = c.last_us;
  b.envelope = std::move(env).value();
  EDGESYNC_RETURN_IF_ERROR(store_->Commit(&b, c.end, wait));
  ++lane.next_seq;
  sealed_batches_.fetch_add(1, std::memory_order_relaxed);
  sealed_events_.fetch_add(c.events, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(lane.mu);
    Status st = lane.journal->Retire(c.end);
    // Harmless if it fails: the store's position makes recovery skip them.
    if (!st.ok()) options_.logger->warn("stream {}: retiring journal: {}", lane.spec.name, st.ToString());
  }
  if (on_sealed_) on_sealed_();
  return Status::OK();
}

void Sealer::Run() {
  struct Exit {  // a stopped sealer is not a wedged one
    Progress& p;
    ~Exit() { p.Wait(); }
  } exit{progress_};
  int64_t next_sync = env_->MonotonicMicros() + options_.sync_interval_us;
  int64_t retry_at = 0;  // after a failed commit, when to try again
  // While the store's deferred check runs (it holds the store for its whole
  // run: seconds on eMMC), this thread keeps syncing the journals and
  // leaves sealing and the limits until it is over, looking again then.
  int64_t check_over_at = 0;
  bool holds_seal_memory = false;  // sealed since the last ReleaseSealMemory
  int64_t last_seal = 0;           // monotonic time of the last seal
  for (;;) {
    // Lock order: a lane's mu before mu_ (CloseLocked holds the lane's).
    int64_t wake = next_sync;
    bool any_open = false;
    for (auto& lane : lanes_) {
      std::lock_guard<std::mutex> ll(lane->mu);
      if (lane->events > 0) wake = std::min(wake, lane->opened_mono + options_.max_age_us);
      any_open = any_open || lane->events > 0;
      if (lane->events == 0 && lane->release_pending) {
        if (env_->MonotonicMicros() - lane->closed_mono < kQuietLaneUs) {
          wake = std::min(wake, lane->closed_mono + kQuietLaneUs);
        } else {
          // No event for a second since its last batch closed: quiet.
          std::string().swap(lane->body);
          lane->journal->ReleaseIdleMemory();
          lane->release_pending = false;
        }
      }
    }
    if (holds_seal_memory && !any_open && closed_count_.load(std::memory_order_acquire) == 0 &&
        env_->MonotonicMicros() - last_seal >= 1'000'000) {
      // Nothing open, nothing to seal, nothing sealed for a second (this
      // thread wakes at least every sync_interval): the burst is over. The
      // compression context (about 1.2 MiB) is made again by the next
      // seal; a steady flow always has a batch open and keeps it.
      ReleaseSealMemory();
      holds_seal_memory = false;
    }
    std::unique_lock<std::mutex> lock(mu_);
    int64_t now = env_->MonotonicMicros();
    const int64_t seal_at = std::max(retry_at, check_over_at);
    if (!closed_.empty()) wake = std::max(now, std::min(wake, seal_at));
    if (!stopping_ && wake > now) {
      progress_.Wait();
      WaitUntil(*cv_, lock, wake, [&] {
        return stopping_ || (!closed_.empty() && env_->MonotonicMicros() >= seal_at);
      });
    }
    bool stop = stopping_;
    lock.unlock();

    now = env_->MonotonicMicros();
    progress_.Advance(now);
    bool close_failed = false;
    for (size_t i = 0; i < lanes_.size(); ++i) {
      std::lock_guard<std::mutex> ll(lanes_[i]->mu);
      if (lanes_[i]->events > 0 &&
          (stop || now - lanes_[i]->opened_mono >= options_.max_age_us)) {
        Status st = CloseLocked(i);
        if (!st.ok()) {
          options_.logger->error("stream {}: closing batch: {}", lanes_[i]->spec.name, st.ToString());
          last_error_.Set("stream " + lanes_[i]->spec.name + ": closing batch: " + st.ToString());
          lanes_[i]->opened_mono = now;  // try again after another max_age, not in a spin
          close_failed = true;
        }
      }
    }
    // Before any store call: the journal sync (the only one in client
    // mode) never waits for the store, so a check cannot stretch the
    // power-cut window.
    SyncDue(&next_sync, stop);
    // At a stop the store is waited for (the agent has stopped its check
    // first): the last batches are sealed.
    const CheckWait wait = stop ? CheckWait::kWait : CheckWait::kDontWait;
    bool checking = !stop && store_->checking();
    // Seal closed batches in order; on failure keep the batch and retry later.
    // The limits are enforced after each commit, and on a pass that sealed
    // nothing (age, free space and uploads change meanwhile too).
    bool sealed_any = false;
    for (;;) {
      lock.lock();
      if (checking || closed_.empty() || env_->MonotonicMicros() < retry_at) {
        lock.unlock();
        break;
      }
      Closed c = std::move(closed_.front());
      closed_.pop_front();
      closed_count_.store(closed_.size(), std::memory_order_release);
      lock.unlock();
      Status st = SealAndCommit(c, wait);
      lock.lock();
      if (Store::IsCheckRunning(st)) {
        // The check began meanwhile: not an error, the batch waits for it.
        closed_.push_front(std::move(c));
        closed_count_.store(closed_.size(), std::memory_order_release);
        checking = true;
        lock.unlock();
        break;
      }
      if (!st.ok()) {
        options_.logger->error("stream {}: sealing batch: {} (retrying in 1 s)",
                      lanes_[c.lane]->spec.name, st.ToString());
        last_error_.Set("stream " + lanes_[c.lane]->spec.name + ": sealing batch: " + st.ToString());
        sticky_ = st;
        closed_.push_front(std::move(c));
        closed_count_.store(closed_.size(), std::memory_order_release);
        retry_at = env_->MonotonicMicros() + 1'000'000;
        lock.unlock();
        break;
      }
      sticky_ = Status::OK();
      holds_seal_memory = true;
      last_seal = env_->MonotonicMicros();
      lock.unlock();
      progress_.Advance(env_->MonotonicMicros());
      space_cv_.notify_all();
      checking = !EnforceLimits(wait);
      sealed_any = true;
      // A long backlog must not stretch the power-cut window of open batches.
      SyncDue(&next_sync, false);
    }
    if (!sealed_any && !checking) checking = !EnforceLimits(wait);
    // Looks again every kCheckPollUs (the watchdog sees this thread move).
    check_over_at = checking ? env_->MonotonicMicros() + kCheckPollUs : 0;
    if (stop) {
      bool open = false;
      for (auto& lane : lanes_) {
        std::lock_guard<std::mutex> ll(lane->mu);
        open = open || lane->events > 0;
      }
      std::lock_guard<std::mutex> l2(mu_);
      // At shutdown one failed attempt is final: the journal keeps the events.
      if ((closed_.empty() && !open) || close_failed || retry_at > env_->MonotonicMicros()) return;
    }
  }
}

size_t Sealer::streams_holding_memory() const {
  size_t n = 0;
  for (const auto& lane : lanes_) {
    std::lock_guard<std::mutex> ll(lane->mu);
    if (lane->body.capacity() > std::string().capacity() || lane->journal->holds_memory()) ++n;
  }
  return n;
}

void Sealer::SyncDue(int64_t* next_sync, bool force) {
  const int64_t now = env_->MonotonicMicros();
  if (!force && now < *next_sync) return;
  Status st = SyncJournals();
  if (!st.ok()) {
    options_.logger->error("journal sync: {}", st.ToString());
    last_error_.Set("journal sync: " + st.ToString());
  }
  *next_sync = now + options_.sync_interval_us;
}

Status Sealer::SyncJournals() {
  Status first;
  for (auto& lane : lanes_) {
    std::lock_guard<std::mutex> ll(lane->mu);
    Status st = lane->journal->SyncIfDirty();
    if (!st.ok() && first.ok()) first = st;  // names the segment file
  }
  return first;
}

bool Sealer::EnforceLimits(CheckWait wait) {
  Result<std::vector<Gap>> gaps = store_->Enforce(wait);
  if (Store::IsCheckRunning(gaps.status())) return false;
  if (!gaps.ok()) {
    options_.logger->error("buffer: enforcing the limits: {}", gaps.status().ToString());
    last_error_.Set("enforcing the limits: " + gaps.status().ToString());
    return true;
  }
  for (const Gap& g : *gaps) {
    last_error_.Set("gave up batches " + std::to_string(g.first_seq) + ".." + std::to_string(g.last_seq) +
                    " of stream " + g.stream + ": " + g.reason);
    options_.logger->warn("buffer: gave up batches {}..{} of stream {} ({} events, {} bytes): {}; "
                 "recorded as a gap and reported to Kafka",
                 g.first_seq, g.last_seq, g.stream, g.events, g.bytes, g.reason);
  }
  if (!gaps->empty() && on_sealed_) on_sealed_();  // gap records to upload
  return true;
}

void Sealer::StopWaitingForSpace() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    no_wait_ = true;
  }
  space_cv_.notify_all();
}

Status Sealer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_->NotifyAll();
  space_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  size_t open = 0;
  for (auto& lane : lanes_) {
    std::lock_guard<std::mutex> ll(lane->mu);
    open += lane->events > 0;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (open > 0) {
    return Status::IOError(std::to_string(open) +
                           " open batches could not be closed; their events stay in the journal");
  }
  if (!closed_.empty()) {
    return Status::IOError(std::to_string(closed_.size()) +
                           " closed batches could not be sealed; they stay in the journal: " +
                           sticky_.message());
  }
  return Status::OK();
}

SealerStats Sealer::stats() const {
  SealerStats s;
  s.accepted = accepted_.load();
  s.sealed_batches = sealed_batches_.load();
  s.sealed_events = sealed_events_.load();
  s.recovered_events = recovered_events_;
  s.torn_bytes = torn_bytes_;
  s.unreadable_segments = unreadable_segments_;
  s.last_error = last_error_.Get();
  return s;
}

}  // namespace edgesync
