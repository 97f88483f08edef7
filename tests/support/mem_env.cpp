// MemEnv: see mem_env.h for the durability and failure model.
#include "tests/support/mem_env.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string_view>
#include <utility>

namespace edgesync::testing {
namespace {

// What FreeBytes reports for an unlimited disk, and the size no file may pass.
constexpr uint64_t kUnlimitedBytes = uint64_t{1} << 40;  // 1 TiB
// Offsets and lengths beyond this are refused before any arithmetic overflows.
constexpr uint64_t kMaxOffset = uint64_t{1} << 62;

// One write or truncate since the file's last Sync, for kTear to replay.
struct WriteOp {
  bool truncate = false;
  uint64_t offset = 0;  // a write: where it starts; a truncate: the new size
  std::string data;     // a write: the bytes
};

struct FileNode {
  std::string path;                // the current name: messages and FailWrites
  std::string data;                // the current content: what reads see
  std::string synced;              // the content at the last Sync
  std::vector<WriteOp> unsynced;   // writes and truncates since, in order
  bool durable_name = false;       // false until SyncDir of its directory (or a Rename)
  bool linked = true;              // false once removed or replaced: no longer counted
  uint64_t sync_count = 0;
};

// Applies `op` to `content`, a write only up to its first `limit` bytes.
void Apply(std::string& content, const WriteOp& op, size_t limit) {
  if (op.truncate) {
    content.resize(static_cast<size_t>(op.offset), '\0');
    return;
  }
  if (limit == 0) return;  // like pwrite of nothing: no hole is filled either
  size_t offset = static_cast<size_t>(op.offset);
  if (content.size() < offset + limit) content.resize(offset + limit, '\0');
  content.replace(offset, limit, op.data.data(), limit);
}

// Without duplicate slashes and without a trailing slash ("/" stays "/").
std::string Normalize(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// "" and "/" are the roots of relative and absolute paths: they always exist.
bool IsRoot(const std::string& p) { return p.empty() || p == "/"; }

// The directory holding normalized path `p` (not a root).
std::string Parent(const std::string& p) {
  size_t slash = p.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

std::string BaseName(const std::string& p) {
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// True when `p` is `dir` itself or lies somewhere under it.
bool IsUnder(const std::string& p, const std::string& dir) {
  return p == dir || (p.size() > dir.size() && p.compare(0, dir.size(), dir) == 0 &&
                      p[dir.size()] == '/');
}

std::string Prefix(std::string_view what, const std::string& path) {
  return std::string(what) + " " + path + ": ";
}

}  // namespace

struct MemEnv::State {
  explicit State(uint64_t seed) : rng(seed) {}

  mutable std::mutex mu;
  std::map<std::string, std::shared_ptr<FileNode>> files;  // by normalized path
  std::set<std::string> dirs;                              // without the roots
  std::set<std::string> locks;                             // paths held
  uint64_t epoch = 0;  // PowerCuts so far: handles of an older epoch are stale
  bool power_lost = false;
  std::optional<uint64_t> cut_at;  // the mutating_ops count at which power goes
  uint64_t mutating_ops = 0;
  uint64_t capacity = 0;  // 0 = unlimited
  uint64_t used = 0;      // current content of linked files
  std::vector<std::string> fail_writes;
  std::mt19937_64 rng;

  // Everything below requires `mu` held.

  uint64_t EffectiveCapacity() const { return capacity == 0 ? kUnlimitedBytes : capacity; }

  bool IsDir(const std::string& p) const { return IsRoot(p) || dirs.count(p) != 0; }

  // Fails every call once the machine is dead.
  Status CheckPower(std::string_view what, const std::string& path) const {
    if (power_lost) return Status::IOError(Prefix(what, path) + "injected: power lost");
    return Status::OK();
  }

  // Called by a mutating operation once nothing else can make it fail:
  // either kills the machine (when CutPowerAfter says so) or counts it.
  Status TakeOp(std::string_view what, const std::string& path) {
    if (cut_at && mutating_ops >= *cut_at) power_lost = true;
    EDGESYNC_RETURN_IF_ERROR(CheckPower(what, path));
    ++mutating_ops;
    return Status::OK();
  }

  Status CheckInjected(std::string_view what, const std::string& handle_path,
                       const FileNode& node) const {
    for (const std::string& s : fail_writes) {
      if (node.path.find(s) != std::string::npos) {
        return Status::IOError(Prefix(what, handle_path) + "injected: Input/output error");
      }
    }
    return Status::OK();
  }

  // Refuses to let `node` grow to `new_size` beyond the capacity.
  Status CheckSpace(std::string_view what, const std::string& path, const FileNode& node,
                    uint64_t new_size) const {
    uint64_t cap = EffectiveCapacity();
    uint64_t old_size = node.data.size();
    bool fits = new_size <= cap;
    if (fits && node.linked && new_size > old_size) fits = used + (new_size - old_size) <= cap;
    if (!fits) return Status::NoSpace(Prefix(what, path) + "No space left on device");
    return Status::OK();
  }

  // Applies a write or truncate to a file and logs it for kTear.
  void Mutate(FileNode& node, WriteOp op) {
    uint64_t old_size = node.data.size();
    Apply(node.data, op, op.data.size());
    if (node.linked) used = used - old_size + node.data.size();
    node.unsynced.push_back(std::move(op));
  }

  void Unlink(std::map<std::string, std::shared_ptr<FileNode>>::iterator it) {
    it->second->linked = false;
    used -= it->second->data.size();
    files.erase(it);
  }

  // The file at `p`, created (a mutating operation) when missing and `create`.
  Result<std::shared_ptr<FileNode>> OpenNode(std::string_view what, const std::string& p,
                                             bool create) {
    if (IsDir(p)) return Status::IOError(Prefix(what, p) + "Is a directory");
    auto it = files.find(p);
    if (it != files.end()) return it->second;
    if (!create) return Status::NotFound(Prefix(what, p) + "No such file or directory");
    std::string parent = Parent(p);
    if (files.count(parent) != 0) return Status::IOError(Prefix(what, p) + "Not a directory");
    if (!IsDir(parent)) return Status::NotFound(Prefix(what, p) + "No such file or directory");
    EDGESYNC_RETURN_IF_ERROR(TakeOp(what, p));
    auto node = std::make_shared<FileNode>();
    node->path = p;
    files.emplace(p, node);
    return node;
  }

  // Replays a random prefix of the unsynced writes onto the synced content,
  // the last one replayed torn at a random byte.
  std::string Tear(const FileNode& node) {
    std::string content = node.synced;
    size_t k = std::uniform_int_distribution<size_t>(0, node.unsynced.size())(rng);
    for (size_t i = 0; i < k; ++i) {
      const WriteOp& op = node.unsynced[i];
      size_t limit = op.data.size();
      if (i + 1 == k && !op.truncate) {
        limit = std::uniform_int_distribution<size_t>(0, op.data.size())(rng);
      }
      Apply(content, op, limit);
    }
    return content;
  }
};

namespace {

using State = MemEnv::State;

// What the two kinds of file handle share: the state, the node, the checks.
class Handle {
 protected:
  Handle(std::shared_ptr<State> st, std::shared_ptr<FileNode> node, std::string path)
      : st_(std::move(st)), node_(std::move(node)), path_(std::move(path)),
        epoch_(st_->epoch) {}

  // Requires st_->mu held.
  Status CheckUsable(std::string_view what) const {
    EDGESYNC_RETURN_IF_ERROR(st_->CheckPower(what, path_));
    if (epoch_ != st_->epoch) {
      return Status::IOError(Prefix(what, path_) + "stale handle after power cut");
    }
    if (closed_) return Status::IOError(Prefix(what, path_) + "file is closed");
    return Status::OK();
  }

  Status DoWrite(std::string_view what, std::optional<uint64_t> offset, std::string_view data) {
    std::lock_guard<std::mutex> lock(st_->mu);
    EDGESYNC_RETURN_IF_ERROR(CheckUsable(what));
    EDGESYNC_RETURN_IF_ERROR(st_->CheckInjected(what, path_, *node_));
    WriteOp op;
    op.offset = offset ? *offset : node_->data.size();  // none: an append
    if (op.offset > kMaxOffset || data.size() > kMaxOffset) {
      return Status::NoSpace(Prefix(what, path_) + "No space left on device (file too large)");
    }
    uint64_t new_size = std::max<uint64_t>(node_->data.size(), op.offset + data.size());
    EDGESYNC_RETURN_IF_ERROR(st_->CheckSpace(what, path_, *node_, new_size));
    EDGESYNC_RETURN_IF_ERROR(st_->TakeOp(what, path_));
    op.data.assign(data);
    st_->Mutate(*node_, std::move(op));
    return Status::OK();
  }

  Status DoTruncate(uint64_t size) {
    std::lock_guard<std::mutex> lock(st_->mu);
    EDGESYNC_RETURN_IF_ERROR(CheckUsable("truncate"));
    EDGESYNC_RETURN_IF_ERROR(st_->CheckInjected("truncate", path_, *node_));
    if (size > kMaxOffset) {
      return Status::NoSpace(Prefix("truncate", path_) +
                             "No space left on device (file too large)");
    }
    EDGESYNC_RETURN_IF_ERROR(st_->CheckSpace("truncate", path_, *node_, size));
    EDGESYNC_RETURN_IF_ERROR(st_->TakeOp("truncate", path_));
    WriteOp op;
    op.truncate = true;
    op.offset = size;
    st_->Mutate(*node_, std::move(op));
    return Status::OK();
  }

  Status DoSync() {
    std::lock_guard<std::mutex> lock(st_->mu);
    EDGESYNC_RETURN_IF_ERROR(CheckUsable("fdatasync"));
    EDGESYNC_RETURN_IF_ERROR(st_->CheckInjected("fdatasync", path_, *node_));
    EDGESYNC_RETURN_IF_ERROR(st_->TakeOp("fdatasync", path_));
    node_->synced = node_->data;
    node_->unsynced.clear();
    ++node_->sync_count;
    return Status::OK();
  }

  std::shared_ptr<State> st_;
  std::shared_ptr<FileNode> node_;
  std::string path_;  // as opened, for messages
  uint64_t epoch_;    // the PowerCuts before the open
  bool closed_ = false;
};

class MemAppendFile final : public AppendFile, private Handle {
 public:
  MemAppendFile(std::shared_ptr<State> st, std::shared_ptr<FileNode> node, std::string path)
      : Handle(std::move(st), std::move(node), std::move(path)) {}

  Status Append(std::string_view data) override { return DoWrite("append", std::nullopt, data); }
  Status Sync() override { return DoSync(); }
  Status Close() override {
    std::lock_guard<std::mutex> lock(st_->mu);
    if (closed_) return Status::OK();
    EDGESYNC_RETURN_IF_ERROR(CheckUsable("close"));
    closed_ = true;
    return Status::OK();
  }
};

class MemRandomRWFile final : public RandomRWFile, private Handle {
 public:
  MemRandomRWFile(std::shared_ptr<State> st, std::shared_ptr<FileNode> node, std::string path)
      : Handle(std::move(st), std::move(node), std::move(path)) {}

  Result<size_t> Read(uint64_t offset, size_t n, char* buf) override {
    std::lock_guard<std::mutex> lock(st_->mu);
    EDGESYNC_RETURN_IF_ERROR(CheckUsable("read"));
    const std::string& data = node_->data;
    if (offset >= data.size()) return size_t{0};
    size_t got = std::min<size_t>(n, data.size() - static_cast<size_t>(offset));
    std::memcpy(buf, data.data() + offset, got);
    return got;
  }
  Status Write(uint64_t offset, std::string_view data) override {
    return DoWrite("write", offset, data);
  }
  Status Truncate(uint64_t size) override { return DoTruncate(size); }
  Status Sync() override { return DoSync(); }
  Result<uint64_t> Size() override {
    std::lock_guard<std::mutex> lock(st_->mu);
    EDGESYNC_RETURN_IF_ERROR(CheckUsable("stat"));
    return static_cast<uint64_t>(node_->data.size());
  }
};

class MemFileLock final : public FileLock {
 public:
  MemFileLock(std::shared_ptr<State> st, std::string path)
      : st_(std::move(st)), path_(std::move(path)), epoch_(st_->epoch) {}
  ~MemFileLock() override {
    std::lock_guard<std::mutex> lock(st_->mu);
    // After a PowerCut the path may be locked again by someone else.
    if (st_->epoch == epoch_) st_->locks.erase(path_);
  }

 private:
  std::shared_ptr<State> st_;
  std::string path_;
  uint64_t epoch_;
};

int64_t RealMicros(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
int64_t RealMicros(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

}  // namespace

MemEnv::MemEnv(uint64_t seed)
    : state_(std::make_shared<State>(seed)), random_(seed ^ 0x9e3779b97f4a7c15ull) {}
MemEnv::~MemEnv() = default;

Result<std::unique_ptr<AppendFile>> MemEnv::OpenAppend(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("open", p));
  Result<std::shared_ptr<FileNode>> node = state_->OpenNode("open", p, /*create=*/true);
  if (!node.ok()) return node.status();
  return std::unique_ptr<AppendFile>(new MemAppendFile(state_, std::move(node).value(), p));
}

Result<std::unique_ptr<RandomRWFile>> MemEnv::OpenRandomRW(const std::string& path, bool create) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("open", p));
  Result<std::shared_ptr<FileNode>> node = state_->OpenNode("open", p, create);
  if (!node.ok()) return node.status();
  return std::unique_ptr<RandomRWFile>(new MemRandomRWFile(state_, std::move(node).value(), p));
}

Result<std::string> MemEnv::ReadFile(const std::string& path, uint64_t max_bytes) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("read", p));
  Result<std::shared_ptr<FileNode>> node = state_->OpenNode("read", p, /*create=*/false);
  if (!node.ok()) return node.status();
  if ((*node)->data.size() > max_bytes) {
    return Status::InvalidArgument(p + " is " + std::to_string((*node)->data.size()) + " bytes, more than the " +
                                   std::to_string(max_bytes) + " allowed");
  }
  return (*node)->data;
}

Status MemEnv::CreateDirs(const std::string& path) {
  std::string p = Normalize(path);
  if (p.empty()) return Status::InvalidArgument("empty directory path");
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("mkdir", p));
  for (size_t pos = 1; pos <= p.size(); ++pos) {
    if (pos != p.size() && p[pos] != '/') continue;
    std::string prefix = p.substr(0, pos);
    if (IsRoot(prefix)) continue;
    if (state_->files.count(prefix) != 0) {
      return Status::IOError(Prefix("mkdir", prefix) + "File exists");
    }
    state_->dirs.insert(std::move(prefix));
  }
  return Status::OK();
}

Result<std::vector<std::string>> MemEnv::ListDir(const std::string& dir) {
  std::string d = Normalize(dir);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("opendir", d));
  if (state_->files.count(d) != 0) return Status::IOError(Prefix("opendir", d) + "Not a directory");
  if (!state_->IsDir(d)) {
    return Status::NotFound(Prefix("opendir", d) + "No such file or directory");
  }
  std::vector<std::string> names;
  for (const auto& [p, node] : state_->files) {
    if (Parent(p) == d) names.push_back(BaseName(p));
  }
  for (const std::string& p : state_->dirs) {
    if (Parent(p) == d) names.push_back(BaseName(p));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status MemEnv::RemoveFile(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("unlink", p));
  if (state_->IsDir(p)) return Status::IOError(Prefix("unlink", p) + "Is a directory");
  EDGESYNC_RETURN_IF_ERROR(state_->TakeOp("unlink", p));
  auto it = state_->files.find(p);
  if (it != state_->files.end()) state_->Unlink(it);
  return Status::OK();
}

Status MemEnv::RemoveDir(const std::string& dir) {
  std::string d = Normalize(dir);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("rmdir", d));
  if (state_->files.count(d) != 0) return Status::IOError(Prefix("rmdir", d) + "Not a directory");
  if (IsRoot(d) || state_->dirs.count(d) == 0) return Status::OK();
  for (const auto& [p, node] : state_->files) {
    if (Parent(p) == d) return Status::IOError(Prefix("rmdir", d) + "Directory not empty");
  }
  for (const std::string& p : state_->dirs) {
    if (Parent(p) == d) return Status::IOError(Prefix("rmdir", d) + "Directory not empty");
  }
  EDGESYNC_RETURN_IF_ERROR(state_->TakeOp("rmdir", d));
  state_->dirs.erase(d);
  return Status::OK();
}

Status MemEnv::Rename(const std::string& from, const std::string& to) {
  std::string f = Normalize(from);
  std::string t = Normalize(to);
  std::string what = "rename " + f + " to";
  State& st = *state_;
  std::lock_guard<std::mutex> lock(st.mu);
  EDGESYNC_RETURN_IF_ERROR(st.CheckPower(what, t));
  bool from_file = st.files.count(f) != 0;
  bool from_dir = !IsRoot(f) && st.dirs.count(f) != 0;
  if (!from_file && !from_dir) {
    return Status::NotFound(Prefix(what, t) + "No such file or directory");
  }
  if (IsRoot(t)) return Status::IOError(Prefix(what, t) + "Device or resource busy");
  std::string parent = Parent(t);
  if (st.files.count(parent) != 0) return Status::IOError(Prefix(what, t) + "Not a directory");
  if (!st.IsDir(parent)) return Status::NotFound(Prefix(what, t) + "No such file or directory");
  if (f == t) return st.TakeOp(what, t);

  if (from_file) {
    if (st.IsDir(t)) return Status::IOError(Prefix(what, t) + "Is a directory");
    EDGESYNC_RETURN_IF_ERROR(st.TakeOp(what, t));
    auto target = st.files.find(t);
    if (target != st.files.end()) st.Unlink(target);
    auto it = st.files.find(f);
    std::shared_ptr<FileNode> node = std::move(it->second);
    st.files.erase(it);
    node->path = t;
    node->durable_name = true;  // the rename is durable at once: see mem_env.h
    st.files.emplace(t, std::move(node));
    return Status::OK();
  }

  // A directory: the target must be missing or an empty directory.
  if (st.files.count(t) != 0) return Status::IOError(Prefix(what, t) + "Not a directory");
  if (IsUnder(t, f)) return Status::InvalidArgument(Prefix(what, t) + "Invalid argument");
  if (st.dirs.count(t) != 0) {
    for (const auto& [p, node] : st.files) {
      if (Parent(p) == t) return Status::IOError(Prefix(what, t) + "Directory not empty");
    }
    for (const std::string& p : st.dirs) {
      if (Parent(p) == t) return Status::IOError(Prefix(what, t) + "Directory not empty");
    }
  }
  EDGESYNC_RETURN_IF_ERROR(st.TakeOp(what, t));
  auto moved = [&](const std::string& p) { return t + p.substr(f.size()); };
  std::set<std::string> dirs;
  for (const std::string& p : st.dirs) dirs.insert(IsUnder(p, f) ? moved(p) : p);
  st.dirs = std::move(dirs);
  std::map<std::string, std::shared_ptr<FileNode>> files;
  for (auto& [p, node] : st.files) {
    if (IsUnder(p, f)) {
      node->path = moved(p);
      files.emplace(node->path, std::move(node));
    } else {
      files.emplace(p, std::move(node));
    }
  }
  st.files = std::move(files);
  return Status::OK();
}

Status MemEnv::SyncDir(const std::string& dir) {
  std::string d = Normalize(dir);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("fsync", d));
  if (state_->files.count(d) != 0) return Status::IOError(Prefix("fsync", d) + "Not a directory");
  if (!state_->IsDir(d)) return Status::NotFound(Prefix("fsync", d) + "No such file or directory");
  EDGESYNC_RETURN_IF_ERROR(state_->TakeOp("fsync", d));
  for (auto& [p, node] : state_->files) {
    if (Parent(p) == d) node->durable_name = true;
  }
  return Status::OK();
}

bool MemEnv::Exists(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->IsDir(p) || state_->files.count(p) != 0;
}

Result<Env::FileType> MemEnv::TypeOf(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("lstat", p));
  if (state_->IsDir(p)) return FileType::kDirectory;
  if (state_->files.count(p) != 0) return FileType::kRegular;
  return Status::NotFound(Prefix("lstat", p) + "No such file or directory");
}

Result<uint64_t> MemEnv::FileSize(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("stat", p));
  if (state_->IsDir(p)) return uint64_t{0};
  auto it = state_->files.find(p);
  if (it == state_->files.end()) {
    return Status::NotFound(Prefix("stat", p) + "No such file or directory");
  }
  return static_cast<uint64_t>(it->second->data.size());
}

Result<uint64_t> MemEnv::FreeBytes(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("statvfs", p));
  if (!state_->IsDir(p) && state_->files.count(p) == 0) {
    return Status::NotFound(Prefix("statvfs", p) + "No such file or directory");
  }
  uint64_t cap = state_->EffectiveCapacity();
  return cap > state_->used ? cap - state_->used : 0;
}

Result<std::unique_ptr<FileLock>> MemEnv::LockFile(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(state_->mu);
  EDGESYNC_RETURN_IF_ERROR(state_->CheckPower("lock", p));
  if (state_->locks.count(p) != 0) {
    return Status::Unavailable(p + " is locked by another holder");
  }
  Result<std::shared_ptr<FileNode>> node = state_->OpenNode("open", p, /*create=*/true);
  if (!node.ok()) return node.status();
  state_->locks.insert(p);
  return std::unique_ptr<FileLock>(new MemFileLock(state_, p));
}

int64_t MemEnv::NowMicros() {
  return RealMicros(std::chrono::system_clock::now()) + clock_offset_.load();
}

int64_t MemEnv::MonotonicMicros() {
  return RealMicros(std::chrono::steady_clock::now()) + clock_offset_.load();
}

void MemEnv::PowerCut(CutMode mode) {
  State& st = *state_;
  std::lock_guard<std::mutex> lock(st.mu);
  for (auto it = st.files.begin(); it != st.files.end();) {
    FileNode& node = *it->second;
    if (!node.durable_name) {
      node.linked = false;
      it = st.files.erase(it);
      continue;
    }
    node.data = mode == CutMode::kTear ? st.Tear(node) : node.synced;
    node.synced = node.data;  // what is on the disk after the reboot
    node.unsynced.clear();
    ++it;
  }
  st.used = 0;
  for (const auto& [p, node] : st.files) st.used += node->data.size();
  ++st.epoch;
  st.locks.clear();
  st.power_lost = false;
  st.cut_at.reset();
}

void MemEnv::CutPowerAfter(uint64_t ops) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->cut_at = state_->mutating_ops + ops;
}

bool MemEnv::power_lost() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->power_lost;
}

uint64_t MemEnv::mutating_ops() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->mutating_ops;
}

void MemEnv::SetCapacity(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->capacity = bytes;
}

void MemEnv::FailWrites(std::string path_substring) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->fail_writes.push_back(std::move(path_substring));
}

void MemEnv::ClearFailures() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->fail_writes.clear();
}

void MemEnv::AdvanceClocks(int64_t micros) { clock_offset_ += micros; }

void MemEnv::SleepForMicros(int64_t micros) { Env::Default()->SleepForMicros(micros); }

namespace {

// A real condition variable, its deadlines moved by the clock offset.
class OffsetCondVar final : public CondVar {
 public:
  explicit OffsetCondVar(const std::atomic<int64_t>* offset)
      : offset_(offset), cv_(Env::Default()->NewCondVar()) {}
  void Wait(std::unique_lock<std::mutex>& lock) override { cv_->Wait(lock); }
  bool WaitUntil(std::unique_lock<std::mutex>& lock, int64_t deadline_us) override {
    return cv_->WaitUntil(lock, deadline_us - offset_->load());
  }
  void NotifyOne() override { cv_->NotifyOne(); }
  void NotifyAll() override { cv_->NotifyAll(); }

 private:
  const std::atomic<int64_t>* offset_;
  std::unique_ptr<CondVar> cv_;
};

}  // namespace

std::unique_ptr<CondVar> MemEnv::NewCondVar() { return std::make_unique<OffsetCondVar>(&clock_offset_); }

uint64_t MemEnv::RandomU64() {
  std::lock_guard<std::mutex> lock(random_mu_);
  return random_();
}

uint64_t MemEnv::SyncCount(const std::string& path) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->files.find(Normalize(path));
  return it == state_->files.end() ? 0 : it->second->sync_count;
}

std::string MemEnv::SyncedContent(const std::string& path) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->files.find(Normalize(path));
  return it == state_->files.end() ? std::string() : it->second->synced;
}

uint64_t MemEnv::UsedBytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->used;
}

}  // namespace edgesync::testing
