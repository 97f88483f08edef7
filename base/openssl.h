// OpenSSL 3 plumbing shared by the envelope's crypto (format/crypto.cpp)
// and the fleet's bundle signatures (fleet/bundle.cpp): owning pointers,
// the error queue as text, PEM output, SHA-256, hex, and Ed25519 keys and
// signatures (bundles and device keys). For .cpp files; the
// modules' headers keep OpenSSL's types out of their interfaces.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace edgesync::ossl {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const;
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using Bio = std::unique_ptr<BIO, BioFree>;

inline const unsigned char* U(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// `what`, then the OpenSSL error queue's newest entry (the queue is cleared).
std::string Error(const std::string& what);

// `pkey` as PEM: its PRIVATE KEY (PKCS#8) or its PUBLIC KEY
// (SubjectPublicKeyInfo); "" on failure.
std::string Pem(EVP_PKEY* pkey, bool private_part);

std::array<uint8_t, 32> Sha256(std::string_view bytes);

// Lower-case hex.
std::string Hex(const uint8_t* p, size_t n);
template <size_t N>
std::string Hex(const std::array<uint8_t, N>& a) {
  return Hex(a.data(), N);
}

// Ed25519 (RFC 8032) through EVP: the message is hashed by the algorithm
// itself, so no digest is named.
constexpr size_t kEd25519KeyBytes = 32;
constexpr size_t kEd25519SignatureBytes = 64;
using Ed25519Raw = std::array<uint8_t, kEd25519KeyBytes>;

// The one PEM key in `pem`: a PUBLIC KEY (private_part false) or a PRIVATE
// KEY, which must be Ed25519. Text around the PEM block is ignored. Errors
// start with `origin` (a file name), if any, and end with `hint` (how to
// make a key).
Result<Pkey> ParseEd25519Pem(std::string_view pem, bool private_part, std::string origin,
                             const std::string& hint);
Result<Ed25519Raw> Ed25519RawPublic(EVP_PKEY* pkey);
Result<Pkey> Ed25519FromRawPublic(const Ed25519Raw& raw);
Result<Pkey> Ed25519Generate();
// Appends the 64-byte signature of `message` to `out`.
Status Ed25519Sign(EVP_PKEY* private_key, std::string_view message, std::string* out);
bool Ed25519Verify(EVP_PKEY* public_key, std::string_view message, std::string_view signature);

}  // namespace edgesync::ossl
