// The `edgesync bundle` commands (agent/main.cpp parses their options): make
// the fleet's signing key pair, sign a configuration directory into a bundle,
// verify a bundle. Each prints what it did on stdout, or on stderr what went
// wrong and what to do, and returns the process's exit code: 0 done, 2 the
// input was refused (a bad key, directory, bundle or option), 1 an I/O error.
// They work on the real file system (Env::Default()).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
// edgesync bundle sign: writes `out` atomically (out.tmp, fsync, rename).
int BundleSignCommand(const BundleSignOptions& options);

// edgesync bundle verify --key PUB... FILE: 0 when FILE is a bundle signed by
// one of `public_keys`, with its version, key id, digest and files on stdout.
int BundleVerifyCommand(const std::vector<std::string>& public_keys, const std::string& file);

}  // namespace edgesync::fleet
