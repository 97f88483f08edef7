// Journal: the append-only, crash-safe log of accepted events of ONE stream,
// kept until they are sealed into a batch in the store.
//
// Files: <dir>/<segment>.log, segment numbers in 16 hex digits, each file a
// header and a sequence of frames (FORMAT.md, "Journal"): u32 length,
// u32 crc32c, and the record compressed as the next part of the segment's
// zstd stream, flushed, so each frame is complete on its own write. Records
// of one stream look alike, so this writes a fraction of their size to
// flash. Segments written without compression (version 1) are still read.
// A position (segment, offset) names the end of what a committed batch took;
// everything before it may be deleted (Retire).
//
// Encryption at rest (optional): with a journal key, each new segment gets
// its own key, HKDF-SHA256(journal key, a random salt in the segment
// header), and every frame is sealed with AES-256-GCM under it (nonce: the
// frame's index in the segment). Design note: the journal key is local to
// the device (a 32-byte file, 0600), not the central public key the batches
// are sealed for, because the device itself must read its journal back
// after a crash to seal what it holds. It protects the unsealed tail (at
// most batch.max_age of events, deleted once sealed) against reading the
// flash without that file; keep the file on a separate, protected medium
// (encryption.journal_key) to protect against a thief with the whole
// device. The backlog kept through outages is in sealed batches, which only
// the central key opens.
//
// Durability: Append is one write(): once it returns ok the record survives
// a crash of the process. Sync (fdatasync) makes it survive a power cut; the
// owner calls SyncIfDirty on an interval.
//
// Thread safety: none; the owner serialises all calls (the Sealer holds its
// per-stream mutex around them).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <zstd.h>

#include "base/env.h"
#include "base/status.h"
#include "format/crypto.h"

namespace edgesync {

struct JournalPosition {
  uint64_t segment = 0;
  uint64_t offset = 0;
  auto operator<=>(const JournalPosition&) const = default;
};

// What Open found in the files not yet sealed.
struct JournalRecovery {
  struct Entry {
    std::string record;     // encoded record (the frame's body)
    JournalPosition end;    // position just past this frame
  };
  std::vector<Entry> entries;
  uint64_t torn_bytes = 0;  // bytes cut from torn or corrupt tails
  uint64_t unreadable_segments = 0;  // moved aside to <segment>.unreadable
  std::vector<std::string> problems;  // one line per cut, for the log
};

class Journal {
 public:
  // Opens the journal in `dir` (created if missing). Deletes segments wholly
  // before `sealed` and returns in `recovery` every whole record at or after
  // it; a segment that cannot be read is renamed to <name>.unreadable and
  // reported. New appends go to a fresh segment after all existing ones.
  // `key`: the journal key, to read encrypted segments and, with
  // `encrypt`, to encrypt new ones. Without it an encrypted segment is
  // unreadable (moved aside and reported).
  static Result<std::unique_ptr<Journal>> Open(Env* env, std::string dir, JournalPosition sealed,
                                               JournalRecovery* recovery,
                                               const crypto::Key* key = nullptr, bool encrypt = false);
  // Opens `dir` (created if missing) for appending only: reads no segment
  // and deletes none; new appends go to a fresh segment after all existing
  // ones. For a writer whose segments another process reads and deletes
  // (the broker plugin's spool, agent/spool.h): what is there is not its
  // to recover, and reading it would cost memory in that process.
  static Result<std::unique_ptr<Journal>> OpenForAppend(Env* env, std::string dir,
                                                        const crypto::Key* key = nullptr,
                                                        bool encrypt = false);
  ~Journal();

  // Appends one frame holding `record` with a single write().
  Status Append(std::string_view record);
  // fdatasync()s the current segment if anything was appended since the last sync.
  Status SyncIfDirty();
  // Closes the current segment (synced) and starts the next. Returns the
  // position at the start of the new segment: everything before it is in
  // closed segments.
  Result<JournalPosition> Rotate();
  // Deletes segments that lie wholly before `sealed`.
  Status Retire(JournalPosition sealed);
  // Frees the compression context and the frame buffer when the current
  // segment holds nothing yet (just after Open or Rotate); the next Append
  // makes them again. For a stream gone quiet: its context holds about
  // 1 MiB once used. A no-op in the middle of a segment.
  void ReleaseIdleMemory();
  // Whether the compression context or the frame buffer is allocated.
  bool holds_memory() const { return zstd_ != nullptr || frame_.capacity() > std::string().capacity(); }

  uint64_t current_segment() const { return segment_; }
  // Bytes in the current segment (its header included once a frame is in).
  uint64_t current_offset() const { return offset_; }

 private:
  Journal(Env* env, std::string dir);
  static Result<std::unique_ptr<Journal>> Prepare(Env* env, std::string dir, const crypto::Key* key, bool encrypt);
  Status MakeSegmentHeader(std::string* header, crypto::Key* segment_key) const;
  std::string SegmentPath(uint64_t segment) const;
  Status OpenSegment(uint64_t segment);
  Status EnsureCompressor();

  Env* env_;
  std::string dir_;
  uint64_t segment_ = 0;
  uint64_t offset_ = 0;
  bool dirty_ = false;
  bool broken_ = false;  // the last append failed: continue in a new segment
  std::unique_ptr<AppendFile> file_;
  std::string frame_;  // Append's buffer, reused: no allocation per event
  // The segment's compression stream, restarted with each segment; null
  // until the first Append, and again after ReleaseIdleMemory.
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> zstd_;
  // Encryption: the journal key, and the current segment's key (scheduled
  // once), header (the associated data of every frame) and next frame index.
  std::optional<crypto::Key> key_;
  crypto::KeyId key_id_{};
  std::optional<crypto::Gcm> gcm_;
  std::string header_;
  uint64_t frame_index_ = 0;
};

// Parses one segment's bytes (either version) into records; stops at the
// first frame that is truncated, fails its checksum, does not decrypt or
// does not decompress. An encrypted segment needs `key`. Exposed for tests
// and fuzzing.
struct SegmentScan {
  std::vector<std::pair<std::string, uint64_t>> records;  // record, end offset of its frame
  uint64_t valid_bytes = 0;
  std::string unreadable;  // why the whole segment cannot be read (no key, ...); empty if it can
};
SegmentScan ScanSegment(std::string_view bytes, const crypto::Key* key = nullptr);

// The ids of the journal keys the segments under `journal_dir` (one
// subdirectory per stream, as the sealer keeps them) are encrypted with;
// empty when none is encrypted. The agent checks them against its key file
// before it starts, so a missing or wrong key stops it instead of setting
// events aside.
Result<std::set<crypto::KeyId>> JournalKeyIds(Env* env, const std::string& journal_dir);

// Appends a version-1 frame for one record to `out`: u32 length, u32
// crc32c, the record as it is. For tests of the older format.
void AppendJournalFrame(std::string_view record, std::string* out);

}  // namespace edgesync
