// Signed configuration bundles (FORMAT.md, "Configuration bundle"): one file
// holding a directory tree of configuration (edgesync.toml, profiles, Lua
// scripts, plugin settings), a version number and an Ed25519 signature by the
// fleet's signing key. The signing host makes them (ReadBundleDir,
// SignBundle); a device, which holds only the fleet's public keys, checks
// them (TrustedKeys, VerifyBundle) and writes them out (ExtractBundle).
// Stateless functions and immutable values: thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/env.h"
#include "base/status.h"

namespace edgesync::fleet {

// The format's constants (FORMAT.md, "Configuration bundle, format version 1").
constexpr std::string_view kBundleMagic = "ESBUNDLE";
constexpr uint8_t kBundleFormatVersion = 1;
constexpr size_t kBundleKeyIdBytes = 8;       // first 8 bytes of SHA-256 of the raw public key
constexpr size_t kBundleSignatureBytes = 64;  // Ed25519
constexpr size_t kMaxBundleFiles = 1024;
constexpr size_t kMaxBundlePathBytes = 255;
constexpr size_t kMaxBundleBytes = 8u << 20;  // whole file
// Bundle versions are 1..kMaxBundleVersion (a JSON number prints them
// exactly). A device takes a bundle only when its version is above every
// version tried before and at most kMaxBundleVersionStep above the newest:
// one bundle, signed by mistake with a huge version, cannot use up the
// space and lock the fleet out (that would take 2^21 bundles). Counters,
// dates (2026120601) and Unix seconds all fit; Unix milliseconds do not.
constexpr uint64_t kMaxBundleVersion = (uint64_t{1} << 53) - 1;
constexpr uint64_t kMaxBundleVersionStep = uint64_t{1} << 32;

struct BundleFile {
  std::string path;  // relative, '/'-separated (see ValidBundlePath)
  std::string content;
};

struct Bundle {
  uint64_t version = 0;
  std::vector<BundleFile> files;  // sorted by path, unique, includes "edgesync.toml"
  std::string key_id;             // hex of the signing key's 8-byte id
  std::string digest;             // hex SHA-256 of the whole bundle file
};

// The fleet's public keys a device trusts (PEM "PUBLIC KEY" files of Ed25519
// keys, as `edgesync bundle keygen` writes fleet.pub). Immutable once loaded.
class TrustedKeys {
 public:
  // Every file must hold one Ed25519 public key; InvalidArgument naming the
  // file otherwise (NotFound or IOError when it cannot be read). At least
  // one file. The same key twice counts once.
  static Result<TrustedKeys> Load(Env* env, const std::vector<std::string>& pem_files);
  size_t size() const { return keys_.size(); }
  // "ab12...,cd34..." hex ids, for messages.
  std::string Ids() const;

 private:
  friend Result<Bundle> VerifyBundle(std::string_view bytes, const TrustedKeys& keys);
  struct Key {
    std::array<uint8_t, kBundleKeyIdBytes> id{};
    std::array<uint8_t, 32> raw{};  // the Ed25519 public key
  };
  std::vector<Key> keys_;
};

// OK when `path` may name a file in a bundle: 1..255 bytes, components
// separated by single '/', each of [A-Za-z0-9._-]+ and not "." or "..", no
// leading or trailing '/'. InvalidArgument saying which rule it breaks.
Status ValidBundlePath(std::string_view path);

// Every regular file under `dir` (recursively; symbolic links and other
// non-regular files are refused with their path; empty directories are left
// out), paths relative to `dir`, sorted. Requires dir/edgesync.toml; checks
// the path rules, the file count and the total size. InvalidArgument for
// what the operator must change, NotFound/IOError when it cannot be read.
Result<std::vector<BundleFile>> ReadBundleDir(Env* env, const std::string& dir);

// The bundle file bytes: `files` (sorted and checked here) with `version`
// (1..kMaxBundleVersion), signed with the PEM Ed25519 private key `private_key_pem`.
// InvalidArgument for a bad version, path, file list, key, or a result over
// kMaxBundleBytes.
Result<std::string> SignBundle(uint64_t version, std::vector<BundleFile> files,
                               const std::string& private_key_pem);

// Parses and verifies. InvalidArgument with an operator-facing reason: not a
// bundle (bad magic), unsupported format version, truncated or too large,
// "signed by key <id>, which is not one of the fleet's public keys (<ids>)",
// "bad signature: the bundle was altered after signing, or not signed by key
// <id>", or (only once the signature holds) a bad file list or path. The
// signature is checked before the file list is parsed.
Result<Bundle> VerifyBundle(std::string_view bytes, const TrustedKeys& keys);

// Writes b's files under `dir`, which must not exist: into dir + ".tmp"
// (removed first if a crash left it), every file and directory fsynced, then
// renamed to `dir` and the parent fsynced, so `dir` appears complete or not
// at all. Files 0600, directories 0700 (as Env creates them).
Status ExtractBundle(Env* env, const Bundle& b, const std::string& dir);

// A new Ed25519 key pair as PEM: {private (PKCS #8 "PRIVATE KEY"), public
// (SubjectPublicKeyInfo "PUBLIC KEY")}.
Result<std::pair<std::string, std::string>> GenerateSigningKey();

// The hex key id (as in a bundle) of a PEM Ed25519 key, public or private.
// InvalidArgument when `pem` holds no Ed25519 key.
Result<std::string> SigningKeyId(std::string_view pem);

// Lowercase hex SHA-256 of `bytes`.
std::string Sha256Hex(std::string_view bytes);

// Removes `path` and, for a directory, everything in it. Symbolic links are
// removed, never followed. Ok if nothing is there.
Status RemoveTree(Env* env, const std::string& path);

}  // namespace edgesync::fleet
