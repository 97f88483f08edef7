// The `edgesync bundle` commands (agent/main.cpp parses their options): make
// the fleet's signing key pair, sign a configuration directory into a bundle,
// verify a bundle. Each prints what it did on stdout, or on stderr what went
// wrong and what to do, and returns the process's exit code: 0 done, 2 the
// input was refused (a bad key, directory, bundle or option), 1 an I/O error.
// They work on the real file system (Env::Default()).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "fleet/bundle.h"

namespace edgesync::fleet {

// edgesync bundle keygen --out DIR: DIR/fleet.key (0600, the signing host
// only) and DIR/fleet.pub (0644, for the devices); never replaces either.
int BundleKeygenCommand(const std::string& out_dir);

struct BundleSignOptions {
  std::string key;       // PEM Ed25519 private key (fleet.key)
  std::string in;        // the configuration directory
  std::string out;       // the bundle file to write
  uint64_t version = 0;  // >= 1
  bool force = false;    // replace `out` if it exists
};
// What every device would refuse in a bundle's files, found before a
// device sees them (the agent passes its configuration checks: TOML bounds,
// keys only the device file may set); ok when nothing.
using ContentCheck = std::function<Status(const std::vector<BundleFile>& files)>;

// edgesync bundle sign: writes `out` atomically (out.tmp, fsync, rename).
// Refuses (2) a directory whose files fail `check`.
int BundleSignCommand(const BundleSignOptions& options, const ContentCheck& check = nullptr);

// edgesync bundle verify --key PUB... FILE: 0 when FILE is a bundle signed by
// one of `public_keys` whose files pass `check`, with its version, key id,
// digest and files on stdout.
int BundleVerifyCommand(const std::vector<std::string>& public_keys, const std::string& file,
                        const ContentCheck& check = nullptr);

}  // namespace edgesync::fleet
