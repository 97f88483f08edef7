#include "format/identity.h"

#include <openssl/evp.h>

#include "base/printable.h"
#include "format/format.h"

namespace edgesync {
namespace {

constexpr char kDeviceKeygenHint[] = "make one with `edgesync keygen --device`";

std::shared_ptr<EVP_PKEY> Share(ossl::Pkey pkey) { return std::shared_ptr<EVP_PKEY>(pkey.release(), EVP_PKEY_free); }

}  // namespace

std::string DeviceIdProblem(std::string_view id) {
  if (id.empty()) return "empty";
  if (id.size() > format::kMaxNameBytes) return "longer than " + std::to_string(format::kMaxNameBytes) + " bytes";
  if (NeedsEscaping(id)) return "holds control characters or invalid UTF-8 (\"" + Printable(id) + "\")";
  return "";
}

crypto::KeyId SigningKeyIdOf(const ossl::Ed25519Raw& public_key) {
  return crypto::ShortHash(std::string_view(reinterpret_cast<const char*>(public_key.data()), public_key.size()));
}

Result<DeviceSigner> DeviceSigner::FromPkey(ossl::Pkey pkey) {
  Result<ossl::Ed25519Raw> raw = ossl::Ed25519RawPublic(pkey.get());
  if (!raw.ok()) return raw.status();
  DeviceSigner s;
  s.pkey_ = Share(std::move(pkey));
  s.public_key_ = *raw;
  s.key_id_ = SigningKeyIdOf(*raw);
  return s;
}

Result<DeviceSigner> DeviceSigner::Generate() {
  Result<ossl::Pkey> pkey = ossl::Ed25519Generate();
  if (!pkey.ok()) return pkey.status();
  return FromPkey(std::move(pkey).value());
}

Result<DeviceSigner> DeviceSigner::FromPem(std::string_view private_pem, const std::string& origin) {
  Result<ossl::Pkey> pkey = ossl::ParseEd25519Pem(private_pem, true, origin, kDeviceKeygenHint);
  if (!pkey.ok()) return pkey.status();
  return FromPkey(std::move(pkey).value());
}

Result<DeviceSigner> DeviceSigner::FromRawPrivate(const ossl::Ed25519Raw& seed) {
  ossl::Pkey pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
  if (!pkey) return Status::InvalidArgument(ossl::Error("Ed25519 private key"));
  return FromPkey(std::move(pkey));
}

std::string DeviceSigner::PrivatePem() const { return ossl::Pem(pkey_.get(), true); }
std::string DeviceSigner::PublicPem() const { return ossl::Pem(pkey_.get(), false); }

Status DeviceSigner::Sign(std::string_view message, std::string* out) const {
  return ossl::Ed25519Sign(pkey_.get(), message, out);
}

Result<DevicePublicKey> DevicePublicKey::FromRaw(const ossl::Ed25519Raw& raw) {
  Result<ossl::Pkey> pkey = ossl::Ed25519FromRawPublic(raw);
  if (!pkey.ok()) return pkey.status();
  DevicePublicKey k;
  k.pkey_ = Share(std::move(pkey).value());
  k.raw_ = raw;
  k.key_id_ = SigningKeyIdOf(raw);
  return k;
}

bool DevicePublicKey::Verify(std::string_view message, std::string_view signature) const {
  return ossl::Ed25519Verify(pkey_.get(), message, signature);
}

std::string EnrolmentText(const std::string& device_id, const DeviceSigner& key) {
  return std::string(kEnrolmentPrefix) + device_id + "\n" + key.PublicPem();
}

Result<Enrolment> ParseEnrolment(std::string_view text, const std::string& origin) {
  const std::string where = origin.empty() ? "" : origin + ": ";
  const std::string_view prefix = kEnrolmentPrefix;
  const size_t eol = text.find('\n');
  if (text.substr(0, prefix.size()) != prefix || eol == std::string_view::npos) {
    return Status::InvalidArgument(where + "not an enrolment file: its first line must be \"" +
                                   std::string(kEnrolmentPrefix) +
                                   "<device id>\" (the device's state_dir/device.pub is one)");
  }
  std::string_view id = text.substr(prefix.size(), eol - prefix.size());
  if (!id.empty() && id.back() == '\r') id.remove_suffix(1);
  if (const std::string problem = DeviceIdProblem(id); !problem.empty()) {
    return Status::InvalidArgument(where + "the device id " + problem);
  }
  Result<ossl::Pkey> pkey = ossl::ParseEd25519Pem(text.substr(eol + 1), false, origin, kDeviceKeygenHint);
  if (!pkey.ok()) return pkey.status();
  Result<ossl::Ed25519Raw> raw = ossl::Ed25519RawPublic(pkey->get());
  if (!raw.ok()) return Status::InvalidArgument(where + raw.status().message());
  Result<DevicePublicKey> key = DevicePublicKey::FromRaw(*raw);
  if (!key.ok()) return Status::InvalidArgument(where + key.status().message());
  return Enrolment{std::string(id), std::move(key).value()};
}

std::string EnrolmentPath(const std::string& key_path) {
  const std::string ext = ".key";
  if (key_path.size() > ext.size() && key_path.compare(key_path.size() - ext.size(), ext.size(), ext) == 0) {
    return key_path.substr(0, key_path.size() - ext.size()) + ".pub";
  }
  return key_path + ".pub";
}

Result<DeviceSigner> LoadOrCreateDeviceKey(Env* env, const std::string& key_path, const std::string& device_id,
                                           bool* created) {
  *created = false;
  if (env->Exists(key_path)) {
    Result<std::string> pem = env->ReadFile(key_path, kMaxKeyFileBytes);
    if (!pem.ok()) return pem.status();
    return DeviceSigner::FromPem(*pem, key_path);
  }
  Result<DeviceSigner> key = DeviceSigner::Generate();
  if (!key.ok()) return key.status();
  // The enrolment file first: a power cut between the two leaves no key, so
  // the next start makes both again.
  EDGESYNC_RETURN_IF_ERROR(env->CreateDirs(DirName(key_path)));
  EDGESYNC_RETURN_IF_ERROR(WriteFileAtomically(env, EnrolmentPath(key_path), EnrolmentText(device_id, *key)));
  std::string pem = key->PrivatePem();
  Status st = WriteFileAtomically(env, key_path, pem);
  crypto::Wipe(pem.data(), pem.size());
  if (!st.ok()) return st;
  *created = true;
  return key;
}

bool DeviceKeySet::Add(std::string device_id, DevicePublicKey key, bool revoked) {
  auto it = by_key_.find(key.key_id());
  if (it != by_key_.end()) {
    if (it->second.revoked) return true;  // revoked for good
    if (!revoked && (it->second.device_id != device_id || it->second.key.raw() != key.raw())) {
      it->second.conflicted = true;
      return false;
    }
    if (--enrolled_keys_[it->second.device_id] == 0) enrolled_keys_.erase(it->second.device_id);
    by_key_.erase(it);
  }
  if (revoked) {
    ++revoked_;
  } else {
    ++enrolled_keys_[device_id];
  }
  const crypto::KeyId id = key.key_id();
  by_key_.emplace(id, Entry{std::move(device_id), std::move(key), revoked, false});
  return true;
}

void DeviceKeySet::Clear() {
  by_key_.clear();
  enrolled_keys_.clear();
  revoked_ = 0;
}

const DeviceKeys::Entry* DeviceKeySet::Find(const crypto::KeyId& id) const {
  auto it = by_key_.find(id);
  return it == by_key_.end() ? nullptr : &it->second;
}

bool DeviceKeySet::Knows(std::string_view device_id) const { return enrolled_keys_.count(device_id) != 0; }

SignatureCheck CheckSignature(const DeviceKeys& keys, std::string_view device_id, const crypto::KeyId& signer,
                              std::string_view message, std::string_view signature, std::string* why) {
  const DeviceKeys::Entry* e = keys.Find(signer);
  const std::string named = device_id.empty() ? "" : " (the batch names device \"" + Printable(device_id) + "\")";
  if (e == nullptr) {
    if (!device_id.empty() && keys.Knows(device_id)) {
      *why = "signed by key " + crypto::Hex(signer) + ", which is not enrolled for device \"" +
             Printable(device_id) + "\"";
      return SignatureCheck::kWrongKey;
    }
    *why = "signed by key " + crypto::Hex(signer) + ", which is not enrolled" + named +
           "; enrol the device's device.pub";
    return SignatureCheck::kUnknownDevice;
  }
  if (!e->key.Verify(message, signature)) {
    *why = "the signature of key " + crypto::Hex(signer) + " does not verify: changed bytes or a forgery";
    return SignatureCheck::kBadSignature;
  }
  if (e->revoked) {
    *why = "signed by key " + crypto::Hex(signer) + ", which was revoked for device \"" +
           Printable(e->device_id) + "\"";
    return SignatureCheck::kRevokedKey;
  }
  if (e->conflicted) {
    *why = "signed by key " + crypto::Hex(signer) + ", which is enrolled for more than one device; "
           "refused until only one enrolment file names it";
    return SignatureCheck::kWrongKey;
  }
  if (!device_id.empty() && e->device_id != device_id) {
    *why = "signed by key " + crypto::Hex(signer) + " of device \"" + Printable(e->device_id) + "\"" + named;
    return SignatureCheck::kWrongKey;
  }
  return SignatureCheck::kOk;
}

}  // namespace edgesync
