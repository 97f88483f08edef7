#include "buffer/journal.h"

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/coding.h"
#include "base/crc32c.h"
#include "format/format.h"

namespace edgesync {
namespace {

constexpr const char* kSuffix = ".log";

// "000000000000002a.log" -> 42; false for anything else.
bool ParseSegmentName(const std::string& name, uint64_t* segment) {
  if (name.size() != 16 + 4 || name.compare(16, 4, kSuffix) != 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 16; ++i) {
    char c = name[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *segment = v;
  return true;
}

}  // namespace

void AppendJournalFrame(std::string_view record, std::string* out) {
  PutU32(out, static_cast<uint32_t>(record.size()));
  PutU32(out, crc32c::Value(record));
  out->append(record);
}

namespace {

// Decompresses one frame body, the next part of the segment's stream, into
// `record`; false when it is not that.
bool InflateFrame(ZSTD_DCtx* d, std::string_view body, std::string* record) {
  record->clear();
  ZSTD_inBuffer in{body.data(), body.size(), 0};
  for (;;) {
    const size_t used = record->size();
    if (used >= format::kJournalMaxBody) return false;
    record->resize(used + std::max<size_t>(4 * body.size(), 1024));
    ZSTD_outBuffer out{record->data() + used, record->size() - used, 0};
    const size_t rc = ZSTD_decompressStream(d, &out, &in);
    record->resize(used + out.pos);
    if (ZSTD_isError(rc)) return false;
    // The writer flushed: all input consumed and room left means all out.
    if (in.pos == in.size && out.pos < out.size) return !record->empty();
  }
}

}  // namespace

namespace {

std::string_view View(const crypto::Key& k) { return {reinterpret_cast<const char*>(k.data()), k.size()}; }

Result<crypto::Key> SegmentKey(const crypto::Key& journal_key, std::string_view salt) {
  return crypto::HkdfSha256(View(journal_key), salt,
                            std::string_view(format::kJournalKeyInfo, sizeof format::kJournalKeyInfo - 1));
}

// Frame i of a segment is sealed with nonce = u64 i (little-endian), then zeros.
crypto::Nonce FrameNonce(uint64_t index) {
  crypto::Nonce n{};
  for (int b = 0; b < 8; ++b) n[b] = static_cast<uint8_t>(index >> (8 * b));
  return n;
}

}  // namespace

// The journal key id an encrypted segment's header names; none when `bytes`
// does not begin with a whole encrypted header.
std::optional<crypto::KeyId> EncryptedSegmentKeyId(std::string_view bytes) {
  if (bytes.size() < format::kJournalEncryptedHeader ||
      std::memcmp(bytes.data(), format::kJournalMagic, 4) != 0 ||
      (static_cast<uint8_t>(bytes[6]) & format::kJournalFlagEncrypted) == 0) {
    return std::nullopt;
  }
  crypto::KeyId id{};
  std::memcpy(id.data(), bytes.data() + format::kJournalKeyIdOffset, id.size());
  return id;
}

SegmentScan ScanSegment(std::string_view bytes, const crypto::Key* key) {
  SegmentScan scan;
  size_t pos = 0;
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> zstd(nullptr, ZSTD_freeDCtx);
  std::optional<crypto::Gcm> gcm;  // an encrypted segment's key, scheduled once
  std::string_view header;
  if (bytes.size() >= 4 && std::memcmp(bytes.data(), format::kJournalMagic, 4) == 0) {
    if (bytes.size() < format::kJournalHeader ||
        static_cast<uint8_t>(bytes[4]) != format::kJournalVersion ||
        static_cast<uint8_t>(bytes[5]) != format::kJournalCodecZstd ||
        (static_cast<uint8_t>(bytes[6]) & ~format::kJournalFlagEncrypted) != 0) {
      return scan;  // a torn header, or a format this reader does not know
    }
    pos = format::kJournalHeader;
    if (static_cast<uint8_t>(bytes[6]) & format::kJournalFlagEncrypted) {
      const std::optional<crypto::KeyId> named = EncryptedSegmentKeyId(bytes);
      if (!named) return scan;  // torn header
      header = bytes.substr(0, format::kJournalEncryptedHeader);
      if (key == nullptr) {
        scan.unreadable = "encrypted, and no journal key is loaded";
        return scan;
      }
      const crypto::KeyId id = crypto::ShortHash(*key);
      if (*named != id) {
        scan.unreadable = "encrypted with another journal key (id " + crypto::Hex(*named) +
                          ", loaded " + crypto::Hex(id) + ")";
        return scan;
      }
      Result<crypto::Key> k = SegmentKey(*key, bytes.substr(format::kJournalSaltOffset, format::kJournalSaltBytes));
      if (!k.ok()) {
        scan.unreadable = k.status().message();
        return scan;
      }
      gcm.emplace(*k);
      pos = format::kJournalEncryptedHeader;
    }
    zstd.reset(ZSTD_createDCtx());
  }
  // Version 1 bodies are whole records; version 2 bodies are never empty.
  const size_t min_body = gcm ? crypto::kTagBytes + 1 : zstd ? 1 : format::kMinRecordBytes;
  std::string record, plain;
  uint64_t index = 0;
  while (bytes.size() - pos >= format::kJournalFrameHeader) {
    uint32_t len = LoadU32(bytes.data() + pos);
    uint32_t crc = LoadU32(bytes.data() + pos + 4);
    // Too short: zeros a power cut left behind (crc32c of nothing is 0, so
    // they would otherwise pass as empty frames).
    if (len < min_body || len > format::kJournalMaxBody ||
        len > bytes.size() - pos - format::kJournalFrameHeader) {
      break;
    }
    std::string_view body = bytes.substr(pos + format::kJournalFrameHeader, len);
    if (crc32c::Value(body) != crc) break;
    if (gcm) {
      plain.clear();
      if (!gcm->Open(FrameNonce(index), header, body, &plain).ok()) break;
      body = plain;
    }
    if (zstd) {
      if (!InflateFrame(zstd.get(), body, &record)) break;
    } else {
      record.assign(body);
    }
    pos += format::kJournalFrameHeader + len;
    ++index;
    scan.records.emplace_back(std::move(record), pos);
  }
  scan.valid_bytes = pos;
  return scan;
}

Result<std::set<crypto::KeyId>> JournalKeyIds(Env* env, const std::string& journal_dir) {
  std::set<crypto::KeyId> ids;
  if (!env->Exists(journal_dir)) return ids;
  Result<std::vector<std::string>> streams = env->ListDir(journal_dir);
  if (!streams.ok()) return streams.status();
  for (const std::string& stream : *streams) {
    Result<std::vector<std::string>> names = env->ListDir(journal_dir + "/" + stream);
    if (!names.ok()) continue;  // not a directory
    for (const std::string& name : *names) {
      uint64_t seg;
      if (!ParseSegmentName(name, &seg)) continue;
      Result<std::string> bytes = env->ReadFile(journal_dir + "/" + stream + "/" + name, kMaxOwnFileBytes);
      if (!bytes.ok()) continue;
      if (std::optional<crypto::KeyId> id = EncryptedSegmentKeyId(*bytes)) ids.insert(*id);
    }
  }
  return ids;
}

Journal::Journal(Env* env, std::string dir) : env_(env), dir_(std::move(dir)), zstd_(nullptr, ZSTD_freeCCtx) {}

// The compression context is made on a segment's first append, not before:
// streaming at the journal's window keeps about 1 MiB in it once used, so
// an idle stream (see ReleaseIdleMemory) holds none.
Status Journal::EnsureCompressor() {
  if (zstd_) return Status::OK();
  zstd_.reset(ZSTD_createCCtx());
  if (!zstd_) return Status::IOError("journal compression: out of memory");
  ZSTD_CCtx_setParameter(zstd_.get(), ZSTD_c_compressionLevel, format::kJournalZstdLevel);
  ZSTD_CCtx_setParameter(zstd_.get(), ZSTD_c_windowLog, format::kJournalWindowLog);
  return Status::OK();
}

void Journal::ReleaseIdleMemory() {
  // Only between segments' streams: a segment with frames continues its
  // zstd stream in this context.
  if (offset_ != 0) return;
  zstd_.reset();
  std::string().swap(frame_);
}

std::string Journal::SegmentPath(uint64_t segment) const {
  char name[32];
  std::snprintf(name, sizeof name, "%016" PRIx64 "%s", segment, kSuffix);
  return dir_ + "/" + name;
}

// What both opens do first: the directory, and the key for new segments.
Result<std::unique_ptr<Journal>> Journal::Prepare(Env* env, std::string dir, const crypto::Key* key, bool encrypt) {
  EDGESYNC_RETURN_IF_ERROR(env->CreateDirs(dir));
  std::unique_ptr<Journal> j(new Journal(env, std::move(dir)));
  if (encrypt && key == nullptr) return Status::InvalidArgument("journal encryption needs a key");
  if (encrypt) {
    j->key_ = *key;
    j->key_id_ = crypto::ShortHash(*key);
  }
  return j;
}

Result<std::unique_ptr<Journal>> Journal::Open(Env* env, std::string dir, JournalPosition sealed,
                                               JournalRecovery* recovery, const crypto::Key* key,
                                               bool encrypt) {
  Result<std::unique_ptr<Journal>> opened = Prepare(env, std::move(dir), key, encrypt);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<Journal> j = std::move(opened).value();
  Result<std::vector<std::string>> names = env->ListDir(j->dir_);
  if (!names.ok()) return names.status();

  uint64_t last = sealed.segment;
  for (const std::string& name : *names) {
    uint64_t seg;
    if (!ParseSegmentName(name, &seg)) continue;  // not ours: leave it alone
    last = std::max(last, seg);
    std::string path = j->SegmentPath(seg);
    if (seg < sealed.segment) {
      EDGESYNC_RETURN_IF_ERROR(env->RemoveFile(path));
      continue;
    }
    Result<std::string> bytes = env->ReadFile(path, kMaxOwnFileBytes);
    SegmentScan scan;
    if (bytes.ok()) scan = ScanSegment(*bytes, key);
    if (!bytes.ok() || !scan.unreadable.empty()) {
      // Unreadable (a bad sector, a lost key): set it aside for forensics
      // and go on, rather than fail every start on it.
      const std::string why = bytes.ok() ? scan.unreadable : bytes.status().message();
      Status moved = env->Rename(path, path + ".unreadable");
      if (!moved.ok()) return bytes.ok() ? moved : bytes.status();
      recovery->unreadable_segments += 1;
      recovery->problems.push_back(path + ": unreadable (" + why + "); moved aside to " + path +
                                   ".unreadable");
      continue;
    }
    for (auto& [body, end] : scan.records) {
      if (seg == sealed.segment && end <= sealed.offset) continue;  // already sealed
      recovery->entries.push_back({std::move(body), JournalPosition{seg, end}});
    }
    if (scan.valid_bytes < bytes->size()) {
      uint64_t cut = bytes->size() - scan.valid_bytes;
      recovery->torn_bytes += cut;
      recovery->problems.push_back(path + ": cut " + std::to_string(cut) +
                                   " bytes of torn or corrupt tail after offset " +
                                   std::to_string(scan.valid_bytes));
    }
  }
  // Never append to a recovered segment: its tail may be torn.
  EDGESYNC_RETURN_IF_ERROR(j->OpenSegment(last + 1));
  return j;
}

Result<std::unique_ptr<Journal>> Journal::OpenForAppend(Env* env, std::string dir, const crypto::Key* key,
                                                        bool encrypt) {
  Result<std::unique_ptr<Journal>> opened = Prepare(env, std::move(dir), key, encrypt);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<Journal> j = std::move(opened).value();
  Result<std::vector<std::string>> names = env->ListDir(j->dir_);
  if (!names.ok()) return names.status();
  uint64_t last = 0;
  for (const std::string& name : *names) {
    uint64_t seg;
    if (ParseSegmentName(name, &seg)) last = std::max(last, seg);
  }
  // Never append to an existing segment: its tail may be torn.
  EDGESYNC_RETURN_IF_ERROR(j->OpenSegment(last + 1));
  return j;
}

Journal::~Journal() {
  if (file_) (void)file_->Close();
}

Status Journal::OpenSegment(uint64_t segment) {
  // The new segment's header and key first: nothing changes unless both
  // exist, so a failure can never leave the previous segment's key (and its
  // used nonces) in place for new frames.
  std::string header;
  crypto::Key segment_key{};
  EDGESYNC_RETURN_IF_ERROR(MakeSegmentHeader(&header, &segment_key));
  std::optional<crypto::Gcm> gcm;
  if (key_) gcm.emplace(segment_key);
  crypto::Wipe(&segment_key);
  Result<std::unique_ptr<AppendFile>> f = env_->OpenAppend(SegmentPath(segment));
  if (!f.ok()) return f.status();
  file_ = std::move(f).value();
  segment_ = segment;
  offset_ = 0;
  dirty_ = false;
  header_ = std::move(header);
  gcm_ = std::move(gcm);
  frame_index_ = 0;
  if (zstd_) ZSTD_CCtx_reset(zstd_.get(), ZSTD_reset_session_only);  // a segment decodes on its own
  // The new file's directory entry must survive a power cut too.
  return env_->SyncDir(dir_);
}

// The header written with a segment's first frame; for an encrypted
// segment also its fresh key (random salt, HKDF from the journal key).
Status Journal::MakeSegmentHeader(std::string* header, crypto::Key* segment_key) const {
  header->append(format::kJournalMagic, 4);
  PutU8(header, format::kJournalVersion);
  PutU8(header, format::kJournalCodecZstd);
  PutU8(header, key_ ? format::kJournalFlagEncrypted : 0);
  PutU8(header, 0);
  if (!key_) return Status::OK();
  header->append(reinterpret_cast<const char*>(key_id_.data()), key_id_.size());
  std::array<uint8_t, format::kJournalSaltBytes> salt{};
  EDGESYNC_RETURN_IF_ERROR(crypto::Random(&salt));
  std::string_view salt_view(reinterpret_cast<const char*>(salt.data()), salt.size());
  Result<crypto::Key> k = SegmentKey(*key_, salt_view);
  if (!k.ok()) return k.status();
  *segment_key = *k;
  header->append(salt_view);
  return Status::OK();
}

Status Journal::Append(std::string_view record) {
  if (broken_ || !file_) {
    // A failed write may have left part of a frame at the end of the
    // segment; recovery stops there, so nothing may follow it in that file.
    if (file_) {
      (void)file_->Sync();
      (void)file_->Close();
      file_.reset();
    }
    EDGESYNC_RETURN_IF_ERROR(OpenSegment(segment_ + 1));
    broken_ = false;
  }
  EDGESYNC_RETURN_IF_ERROR(EnsureCompressor());
  // One write() of the frame (and, first in a segment, the segment header),
  // from a buffer kept between calls.
  frame_.clear();
  if (offset_ == 0) frame_.append(header_);
  const size_t at = frame_.size();
  frame_.resize(at + format::kJournalFrameHeader);
  ZSTD_inBuffer in{record.data(), record.size(), 0};
  size_t left;
  do {
    const size_t used = frame_.size();
    frame_.resize(used + ZSTD_compressBound(record.size()) + 64);
    ZSTD_outBuffer out{frame_.data() + used, frame_.size() - used, 0};
    left = ZSTD_compressStream2(zstd_.get(), &out, &in, ZSTD_e_flush);
    frame_.resize(used + out.pos);
    if (ZSTD_isError(left)) {
      broken_ = true;  // the stream is in an unknown state: start a new segment
      return Status::InvalidArgument(std::string("journal compression: ") + ZSTD_getErrorName(left));
    }
  } while (left != 0);
  if (gcm_) {
    // The compressed part is sealed in place; the tag follows it.
    Status sealed = gcm_->Seal(FrameNonce(frame_index_), header_, &frame_, at + format::kJournalFrameHeader);
    if (!sealed.ok()) {
      broken_ = true;
      return sealed;
    }
  }
  const std::string_view body = std::string_view(frame_).substr(at + format::kJournalFrameHeader);
  StoreU32(frame_.data() + at, static_cast<uint32_t>(body.size()));
  StoreU32(frame_.data() + at + 4, crc32c::Value(body));
  Status st = file_->Append(frame_);
  if (!st.ok()) {
    broken_ = true;
    return st;
  }
  offset_ += frame_.size();
  ++frame_index_;
  dirty_ = true;
  return Status::OK();
}

Status Journal::SyncIfDirty() {
  if (!dirty_ || !file_) return Status::OK();
  EDGESYNC_RETURN_IF_ERROR(file_->Sync());
  dirty_ = false;
  return Status::OK();
}

Result<JournalPosition> Journal::Rotate() {
  EDGESYNC_RETURN_IF_ERROR(SyncIfDirty());
  if (file_) EDGESYNC_RETURN_IF_ERROR(file_->Close());
  file_.reset();
  EDGESYNC_RETURN_IF_ERROR(OpenSegment(segment_ + 1));
  return JournalPosition{segment_, 0};
}

Status Journal::Retire(JournalPosition sealed) {
  Result<std::vector<std::string>> names = env_->ListDir(dir_);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    uint64_t seg;
    if (ParseSegmentName(name, &seg) && seg < sealed.segment && seg != segment_) {
      EDGESYNC_RETURN_IF_ERROR(env_->RemoveFile(SegmentPath(seg)));
    }
  }
  return Status::OK();
}

}  // namespace edgesync
