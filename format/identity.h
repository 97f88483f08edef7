// Device identity (FORMAT.md, "Device keys"): every device signs its
// envelopes, gap records and fragments with an Ed25519 key of its own, which
// never leaves it; the central side holds the enrolled public keys and
// checks that each batch was signed by a key enrolled for the device the
// batch names. Thread-safe: the keys are immutable once made.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "base/env.h"
#include "base/openssl.h"
#include "base/status.h"
#include "format/crypto.h"

namespace edgesync {

// What is wrong with `id` as a device id, or "" when nothing is: 1 to 255
// bytes of printable UTF-8 (it is every batch header's device id and an
// enrolment file's first line). The one rule for the configuration, the
// enrolment files and `edgesync keygen --device`.
std::string DeviceIdProblem(std::string_view id);

// The 8-byte id of an Ed25519 public key: crypto::ShortHash of its 32 raw bytes.
crypto::KeyId SigningKeyIdOf(const ossl::Ed25519Raw& public_key);

// A device's private signing key. Copies share the key.
class DeviceSigner {
 public:
  static Result<DeviceSigner> Generate();
  // `origin` (a file name) starts every error.
  static Result<DeviceSigner> FromPem(std::string_view private_pem, const std::string& origin);
  // From the 32-byte private key (RFC 8032's seed): the test vectors only.
  static Result<DeviceSigner> FromRawPrivate(const ossl::Ed25519Raw& seed);
  // Takes `pkey`, an Ed25519 private key.
  static Result<DeviceSigner> FromPkey(ossl::Pkey pkey);
  const crypto::KeyId& key_id() const { return key_id_; }
  const ossl::Ed25519Raw& public_key() const { return public_key_; }
  std::string PrivatePem() const;
  std::string PublicPem() const;
  // Appends the 64-byte Ed25519 signature of `message` to `out`.
  Status Sign(std::string_view message, std::string* out) const;

 private:
  std::shared_ptr<EVP_PKEY> pkey_;
  ossl::Ed25519Raw public_key_{};
  crypto::KeyId key_id_{};
};

// An enrolled public key, ready to verify. Copies share the key.
class DevicePublicKey {
 public:
  static Result<DevicePublicKey> FromRaw(const ossl::Ed25519Raw& raw);
  const crypto::KeyId& key_id() const { return key_id_; }
  const ossl::Ed25519Raw& raw() const { return raw_; }
  bool Verify(std::string_view message, std::string_view signature) const;

 private:
  std::shared_ptr<EVP_PKEY> pkey_;
  ossl::Ed25519Raw raw_{};
  crypto::KeyId key_id_{};
};

// Enrolment file (FORMAT.md, "Enrolment file"): the line
// "edgesync-device: <device id>", then the public key as a PEM PUBLIC KEY.
// OpenSSL reads it as a public key file too (`openssl pkey -pubin -in`).
constexpr char kEnrolmentPrefix[] = "edgesync-device: ";
std::string EnrolmentText(const std::string& device_id, const DeviceSigner& key);
struct Enrolment {
  std::string device_id;
  DevicePublicKey key;
};
// `origin` (a file name) starts every error.
Result<Enrolment> ParseEnrolment(std::string_view text, const std::string& origin);
// Where the enrolment file of the key at `key_path` goes: "x.key" -> "x.pub",
// any other name gets ".pub" appended.
std::string EnrolmentPath(const std::string& key_path);

// The device's key at `key_path`: read it, or, when the file does not exist,
// make one (mode 0600) and its enrolment file beside it. `*created` says
// which. A key is never replaced: an unreadable file is an error.
Result<DeviceSigner> LoadOrCreateDeviceKey(Env* env, const std::string& key_path,
                                           const std::string& device_id, bool* created);

// The keys a reader trusts, by key id: enrolled keys and revoked ones.
class DeviceKeys {
 public:
  virtual ~DeviceKeys() = default;
  struct Entry {
    std::string device_id;
    DevicePublicKey key;
    bool revoked = false;
    // The same key id enrolled for two devices (a cloned image, or a
    // mistake): refused for both until one enrolment goes.
    bool conflicted = false;
  };
  // nullptr when the key id is neither enrolled nor revoked.
  virtual const Entry* Find(const crypto::KeyId& id) const = 0;
  // Whether any key is enrolled for `device_id`.
  virtual bool Knows(std::string_view device_id) const = 0;
};

// Keys held in memory: what DeviceKeyRegistry (central/device_keys.h), tools
// and tests fill. A revoked key stays revoked: adding it again as enrolled
// changes nothing. A key id enrolled for a second device (or a different
// key under the same id) marks it conflicted and returns false.
class DeviceKeySet final : public DeviceKeys {
 public:
  bool Add(std::string device_id, DevicePublicKey key, bool revoked);
  void Clear();
  const Entry* Find(const crypto::KeyId& id) const override;
  bool Knows(std::string_view device_id) const override;
  size_t enrolled() const { return by_key_.size() - revoked_; }
  size_t revoked() const { return revoked_; }

 private:
  std::map<crypto::KeyId, Entry> by_key_;
  std::map<std::string, size_t, std::less<>> enrolled_keys_;  // per device, not revoked
  size_t revoked_ = 0;
};

// Why a signature was refused.
enum class SignatureCheck {
  kOk = 0,
  kUnknownDevice,  // neither the key nor the device is enrolled
  kWrongKey,       // the key belongs to another device, or the device has other keys
  kRevokedKey,     // the key was revoked
  kBadSignature,   // the signature does not verify: changed bytes or a forgery
};

// Checks that `signature` over `message` was made by `signer`, a key enrolled
// (not revoked) for `device_id`, or for any device when `device_id` is empty
// (a fragment names no device; its envelope is checked whole later). The
// signature is verified before the key's state is looked at, so that only
// the key's holder can produce a revoked_key or wrong_key refusal. On a
// refusal `*why` says it in words.
SignatureCheck CheckSignature(const DeviceKeys& keys, std::string_view device_id, const crypto::KeyId& signer,
                              std::string_view message, std::string_view signature, std::string* why);

}  // namespace edgesync
