#include "buffer/journal.h"

#include <cinttypes>
#include <cstdio>

#include "base/coding.h"
#include "base/crc32c.h"
#include "buffer/format.h"

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

SegmentScan ScanSegment(std::string_view bytes) {
  SegmentScan scan;
  size_t pos = 0;
  while (bytes.size() - pos >= format::kJournalFrameHeader) {
    uint32_t len = LoadU32(bytes.data() + pos);
    uint32_t crc = LoadU32(bytes.data() + pos + 4);
    // Too short to be a record: zeros a power cut left behind (crc32c of
    // nothing is 0, so they would otherwise pass as empty frames).
    if (len < format::kMinRecordBytes || len > format::kJournalMaxBody ||
        len > bytes.size() - pos - format::kJournalFrameHeader) {
      break;
    }
    std::string_view body = bytes.substr(pos + format::kJournalFrameHeader, len);
    if (crc32c::Value(body) != crc) break;
    pos += format::kJournalFrameHeader + len;
    scan.records.emplace_back(std::string(body), pos);
  }
  scan.valid_bytes = pos;
  return scan;
}

std::string Journal::SegmentPath(uint64_t segment) const {
  char name[32];
  std::snprintf(name, sizeof name, "%016" PRIx64 "%s", segment, kSuffix);
  return dir_ + "/" + name;
}

Result<std::unique_ptr<Journal>> Journal::Open(Env* env, std::string dir, JournalPosition sealed,
                                               JournalRecovery* recovery) {
  EDGESYNC_RETURN_IF_ERROR(env->CreateDirs(dir));
  std::unique_ptr<Journal> j(new Journal(env, std::move(dir)));
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
    Result<std::string> bytes = env->ReadFile(path);
    if (!bytes.ok()) {
      // Unreadable (a bad sector, say): set it aside for forensics and go
      // on, rather than fail every start on it.
      Status moved = env->Rename(path, path + ".unreadable");
      if (!moved.ok()) return bytes.status();
      recovery->unreadable_segments += 1;
      recovery->problems.push_back(path + ": unreadable (" + bytes.status().message() +
                                   "); moved aside to " + path + ".unreadable");
      continue;
    }
    SegmentScan scan = ScanSegment(*bytes);
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

Journal::~Journal() {
  if (file_) (void)file_->Close();
}

Status Journal::OpenSegment(uint64_t segment) {
  Result<std::unique_ptr<AppendFile>> f = env_->OpenAppend(SegmentPath(segment));
  if (!f.ok()) return f.status();
  file_ = std::move(f).value();
  segment_ = segment;
  offset_ = 0;
  dirty_ = false;
  // The new file's directory entry must survive a power cut too.
  return env_->SyncDir(dir_);
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
  // One write() of header and record, from a buffer kept between calls.
  frame_.clear();
  AppendJournalFrame(record, &frame_);
  Status st = file_->Append(frame_);
  if (!st.ok()) {
    broken_ = true;
    return st;
  }
  offset_ += frame_.size();
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
