// OpenSSL 3 plumbing shared by the envelope's crypto (buffer/crypto.cpp)
// and the fleet's bundle signatures (fleet/bundle.cpp): owning pointers,
// the error queue as text, PEM output, SHA-256 and hex. For .cpp files; the
// modules' headers keep OpenSSL's types out of their interfaces.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

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

}  // namespace edgesync::ossl
