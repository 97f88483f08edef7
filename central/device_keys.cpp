#include "central/device_keys.h"

#include "base/printable.h"

namespace edgesync {
namespace {

bool IsEnrolmentName(const std::string& name) {
  return name.size() > 4 && name.compare(name.size() - 4, 4, ".pub") == 0 && name[0] != '.';
}

}  // namespace

Status DeviceKeyRegistry::Sync(const std::string& dir, bool revoked, std::map<std::string, File>* files,
                               std::vector<std::string>* problems, bool* changed) {
  Result<std::vector<std::string>> names = env_->ListDir(dir);
  if (!names.ok()) {
    // revoked/ is optional; the directory itself is not.
    if (revoked && names.status().code() == Status::Code::kNotFound) names = std::vector<std::string>{};
    else return names.status();
  }
  std::set<std::string> now;
  for (const std::string& n : *names) {
    if (IsEnrolmentName(n)) now.insert(n);
  }
  for (auto it = files->begin(); it != files->end();) {
    if (now.count(it->first) == 0) {
      *changed |= it->second.ok;
      it = files->erase(it);
    } else {
      ++it;
    }
  }
  for (const std::string& n : now) {
    // Read once when it works; a file that did not parse (perhaps caught
    // while it was being copied) is read again at every refresh.
    auto known = files->find(n);
    if (known != files->end() && known->second.ok) continue;
    const std::string path = dir + "/" + n;
    File f;
    Result<Env::FileType> type = env_->TypeOfTarget(path);
    Result<std::string> text = type.ok() && *type == Env::FileType::kRegular
                                   ? env_->ReadFile(path, kMaxKeyFileBytes)
                                   : Result<std::string>(Status::InvalidArgument(path + ": not a regular file"));
    Result<Enrolment> e = text.ok() ? ParseEnrolment(*text, path) : Result<Enrolment>(text.status());
    if (e.ok()) {
      f.ok = true;
      f.entry = Entry{e->device_id, e->key, revoked};
      *changed = true;
    } else if (known == files->end()) {
      problems->push_back(e.status().message());  // once per file name
    }
    files->insert_or_assign(n, std::move(f));
  }
  return Status::OK();
}

Status DeviceKeyRegistry::Refresh(std::vector<std::string>* problems, bool* changed) {
  // Both directories, whatever happens to one: a revocation (a file moved
  // into revoked/, or removed) must take effect even while the other
  // directory cannot be read. A directory that cannot be listed keeps what
  // was read from it before.
  bool any = false;
  Status enrolled = Sync(dir_, false, &enrolled_files_, problems, &any);
  Status revoked = Sync(dir_ + "/revoked", true, &revoked_files_, problems, &any);
  if (any) Index(problems);
  if (changed != nullptr) *changed = any;
  return enrolled.ok() ? revoked : enrolled;
}

void DeviceKeyRegistry::Index(std::vector<std::string>* problems) {
  keys_.Clear();
  // Revoked first: a revoked key stays revoked even while its file is still enrolled.
  for (const auto& [name, f] : revoked_files_) {
    if (f.ok) keys_.Add(f.entry.device_id, f.entry.key, true);
  }
  for (const auto& [name, f] : enrolled_files_) {
    if (f.ok && !keys_.Add(f.entry.device_id, f.entry.key, false)) {
      problems->push_back(dir_ + "/" + name + ": key " + crypto::Hex(f.entry.key.key_id()) +
                          " is also enrolled for device \"" + Printable(keys_.Find(f.entry.key.key_id())->device_id) +
                          "\" (a cloned device?); refused for both until one of the files goes");
    }
  }
}

}  // namespace edgesync
