// The cryptographic primitives edgesync's formats are built from (FORMAT.md,
// "Encryption"), on OpenSSL 3's EVP interface: X25519, HKDF-SHA256,
// AES-256-GCM, SHA-256, the system's random generator, and the key files
// `edgesync keygen` writes (PEM, as `openssl genpkey -algorithm X25519`
// does). Stateless functions; thread-safe.
#pragma once

#include <openssl/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/env.h"
#include "base/openssl.h"
#include "base/status.h"

namespace edgesync::crypto {

constexpr size_t kKeyBytes = 32;    // X25519 keys, AES-256 keys
constexpr size_t kNonceBytes = 12;  // AES-GCM nonce
constexpr size_t kTagBytes = 16;    // AES-GCM tag
constexpr size_t kKeyIdBytes = 8;

using Key = std::array<uint8_t, kKeyBytes>;
using Nonce = std::array<uint8_t, kNonceBytes>;
using KeyId = std::array<uint8_t, kKeyIdBytes>;

// Fills `out` from the operating system's random generator (RAND_bytes).
Status RandomBytes(uint8_t* out, size_t n);
template <size_t N>
Status Random(std::array<uint8_t, N>* out) { return RandomBytes(out->data(), N); }

// Overwrites secrets before their memory is freed (OPENSSL_cleanse: not
// optimised away).
void Wipe(void* p, size_t n);
template <size_t N>
void Wipe(std::array<uint8_t, N>* a) { Wipe(a->data(), N); }

// The first 8 bytes of SHA-256 over `bytes` (a raw public key, a journal key).
KeyId ShortHash(std::string_view bytes);
inline KeyId ShortHash(const Key& k) {
  return ShortHash(std::string_view(reinterpret_cast<const char*>(k.data()), k.size()));
}
using ossl::Hex;  // lower-case hex (base/openssl.h)

// X25519 (RFC 7748).
Result<Key> X25519PublicKey(const Key& private_key);
// The shared secret; fails for a peer key of small order (all-zero result).
Result<Key> X25519(const Key& private_key, const Key& peer_public_key);

// An X25519 private key held ready for key agreements: importing a raw key
// costs OpenSSL one scalar multiplication (it derives the public key), so a
// key used more than once is imported once. Copies share the key; immutable.
class X25519Private {
 public:
  static Result<X25519Private> Generate();
  static Result<X25519Private> FromRaw(const Key& private_key);
  const Key& public_key() const { return public_key_; }
  // The shared secret with `peer_public_key`; fails for a peer key of small
  // order (all-zero result).
  Result<Key> Agree(const Key& peer_public_key) const;

 private:
  X25519Private() = default;
  std::shared_ptr<EVP_PKEY> pkey_;
  Key public_key_{};
};

// HKDF-SHA256 (RFC 5869), extract and expand, 32 bytes of output.
Result<Key> HkdfSha256(std::string_view ikm, std::string_view salt, std::string_view info);

// AES-256-GCM with a 16-byte tag, one key for many messages (a journal
// segment's frames): the key is scheduled once. Seal encrypts (*buf)[from..]
// in place and appends the tag. Open appends the plaintext to `out`, or
// returns Corruption when the tag does not verify (wrong key, or the bytes
// or `aad` were changed). Not thread-safe.
class Gcm {
 public:
  explicit Gcm(const Key& key);
  Status Seal(const Nonce& nonce, std::string_view aad, std::string* buf, size_t from);
  Status Open(const Nonce& nonce, std::string_view aad, std::string_view ciphertext_and_tag,
              std::string* out);

 private:
  std::unique_ptr<EVP_CIPHER_CTX, void (*)(EVP_CIPHER_CTX*)> ctx_;
};

// One message under `key`. GcmSeal appends ciphertext || tag to `out`;
// GcmOpen appends the plaintext, or returns Corruption when the tag does not
// verify (wrong key, or the bytes or `aad` were changed).
Status GcmSeal(const Key& key, const Nonce& nonce, std::string_view aad,
               std::string_view plaintext, std::string* out);
Status GcmOpen(const Key& key, const Nonce& nonce, std::string_view aad,
               std::string_view ciphertext_and_tag, std::string* out);

// Key files. A public key is a PEM "PUBLIC KEY" (SubjectPublicKeyInfo), a
// private key a PEM "PRIVATE KEY" (PKCS #8), both X25519: what
// `openssl genpkey -algorithm X25519` and `openssl pkey -pubout` write.
Result<Key> ReadPublicKeyFile(Env* env, const std::string& path);
Result<Key> ReadPrivateKeyFile(Env* env, const std::string& path);
std::string PublicKeyPem(const Key& public_key);
std::string PrivateKeyPem(const Key& private_key);

// A symmetric key file: exactly 32 random bytes (the journal key).
// LoadOrCreate reads it, or creates it (mode 0600) if it does not exist.
Result<Key> LoadOrCreateKeyFile(Env* env, const std::string& path);

}  // namespace edgesync::crypto
