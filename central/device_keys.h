// The central side's registry of device keys: a directory of enrolment files
// (FORMAT.md, "Enrolment file"), one per key, each naming its device:
//
//   DIR/<any name>.pub          enrolled: batches signed by it are accepted
//                               for the device it names (a device may have
//                               several, e.g. during a key rotation)
//   DIR/revoked/<any name>.pub  revoked: batches signed by it are refused
//
// Refresh() lists both directories and reads only the files whose names are
// new, so a fleet enrols a device by adding its file and revokes a key by
// moving its file into revoked/, without restarting anything. Not
// thread-safe: one owner refreshes and looks up.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "format/identity.h"

namespace edgesync {

class DeviceKeyRegistry final : public DeviceKeys {
 public:
  DeviceKeyRegistry(Env* env, std::string dir) : env_(env), dir_(std::move(dir)) {}

  // Brings the registry up to the directory. A file that cannot be read or
  // parsed is skipped with its reason in `*problems` (the first time only)
  // and tried again at the next refresh; the others still count. Error when
  // `dir` or an existing `dir`/revoked cannot be listed; what the other one
  // says is applied all the same, and the one that failed keeps what was
  // read from it before.
  // `*changed` (if given) says whether any key came or went.
  Status Refresh(std::vector<std::string>* problems, bool* changed = nullptr);

  const Entry* Find(const crypto::KeyId& id) const override { return keys_.Find(id); }
  bool Knows(std::string_view device_id) const override { return keys_.Knows(device_id); }
  size_t enrolled() const { return keys_.enrolled(); }
  size_t revoked() const { return keys_.revoked(); }

 private:
  struct File {
    bool ok = false;
    Entry entry;
  };
  // Reads the new names of `dir` into `files`, forgets the vanished ones.
  Status Sync(const std::string& dir, bool revoked, std::map<std::string, File>* files,
              std::vector<std::string>* problems, bool* changed);
  void Index(std::vector<std::string>* problems);

  Env* env_;
  std::string dir_;
  std::map<std::string, File> enrolled_files_, revoked_files_;  // by file name
  DeviceKeySet keys_;
};

}  // namespace edgesync
