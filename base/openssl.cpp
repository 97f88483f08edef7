#include "base/openssl.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

namespace edgesync::ossl {

void BioFree::operator()(BIO* p) const { BIO_free(p); }

std::string Error(const std::string& what) {
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return what;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return what + ": " + buf;
}

std::string Pem(EVP_PKEY* pkey, bool private_part) {
  Bio bio(BIO_new(BIO_s_mem()));
  int ok = private_part ? PEM_write_bio_PrivateKey(bio.get(), pkey, nullptr, nullptr, 0, nullptr, nullptr)
                        : PEM_write_bio_PUBKEY(bio.get(), pkey);
  if (ok != 1) return {};
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::array<uint8_t, 32> Sha256(std::string_view bytes) {
  std::array<uint8_t, 32> md{};
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), md.data(), &n, EVP_sha256(), nullptr);
  return md;
}

std::string Hex(const uint8_t* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kDigits[p[i] >> 4]);
    s.push_back(kDigits[p[i] & 15]);
  }
  return s;
}

Result<Pkey> ParseEd25519Pem(std::string_view pem, bool private_part, std::string origin,
                             const std::string& hint) {
  if (!origin.empty()) origin += ": ";
  size_t begin = pem.find("-----BEGIN ");
  if (begin != std::string_view::npos && pem.find("-----BEGIN ", begin + 1) != std::string_view::npos) {
    return Status::InvalidArgument(origin + "more than one PEM block; put each key in a file of its own");
  }
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  // No passphrase prompt: a callback that has none (OpenSSL would ask on the terminal).
  auto no_passphrase = [](char*, int, int, void*) { return -1; };
  Pkey pkey(private_part ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr)
                         : PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr));
  if (!pkey && pem.find("ENCRYPTED PRIVATE KEY") != std::string_view::npos) {
    ERR_clear_error();
    return Status::InvalidArgument(origin +
                                   "the private key is protected by a passphrase, which edgesync "
                                   "does not ask for; store it decrypted with mode 0600 "
                                   "(openssl pkey -in KEY -out PLAIN.key)");
  }
  if (!pkey) {
    return Status::InvalidArgument(
        Error(origin + "not a PEM " + (private_part ? "PRIVATE KEY" : "PUBLIC KEY") + " (" + hint + ")"));
  }
  if (EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_ED25519) {
    const char* type = EVP_PKEY_get0_type_name(pkey.get());
    return Status::InvalidArgument(origin + "holds a key of type " + (type != nullptr ? type : "unknown") +
                                   ", not Ed25519 (" + hint + ")");
  }
  return pkey;
}

Result<Ed25519Raw> Ed25519RawPublic(EVP_PKEY* pkey) {
  Ed25519Raw raw{};
  size_t n = raw.size();
  if (EVP_PKEY_get_raw_public_key(pkey, raw.data(), &n) != 1 || n != raw.size()) {
    return Status::InvalidArgument(Error("unreadable Ed25519 key"));
  }
  return raw;
}

Result<Pkey> Ed25519FromRawPublic(const Ed25519Raw& raw) {
  Pkey pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size()));
  if (!pkey) return Status::InvalidArgument(Error("not an Ed25519 public key"));
  return pkey;
}

Result<Pkey> Ed25519Generate() {
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return Status::Unavailable(Error("Ed25519 key generation"));
  }
  return Pkey(raw);
}

Status Ed25519Sign(EVP_PKEY* private_key, std::string_view message, std::string* out) {
  MdCtx ctx(EVP_MD_CTX_new());
  unsigned char sig[kEd25519SignatureBytes];
  size_t sig_len = sizeof sig;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, private_key) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &sig_len, U(message), message.size()) != 1 || sig_len != sizeof sig) {
    return Status::InvalidArgument(Error("Ed25519 signing failed"));
  }
  out->append(reinterpret_cast<const char*>(sig), sizeof sig);
  return Status::OK();
}

bool Ed25519Verify(EVP_PKEY* public_key, std::string_view message, std::string_view signature) {
  MdCtx ctx(EVP_MD_CTX_new());
  const bool ok = signature.size() == kEd25519SignatureBytes && ctx &&
                  EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, public_key) == 1 &&
                  EVP_DigestVerify(ctx.get(), U(signature), signature.size(), U(message), message.size()) == 1;
  if (!ok) ERR_clear_error();
  return ok;
}

}  // namespace edgesync::ossl
