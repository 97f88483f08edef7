#include "format/crypto.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <memory>

#include "base/openssl.h"

namespace edgesync::crypto {
namespace {

using ossl::Bio;
using ossl::Pem;
using ossl::Pkey;
using ossl::PkeyCtx;
using ossl::U;

Pkey PrivateKey(const Key& k) {
  return Pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, k.data(), k.size()));
}
Pkey PublicKey(const Key& k) {
  return Pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, k.data(), k.size()));
}

Result<Key> RawKey(EVP_PKEY* pkey, bool private_part, const std::string& origin) {
  if (pkey == nullptr || EVP_PKEY_get_id(pkey) != EVP_PKEY_X25519) {
    return Status::InvalidArgument(origin + ": not an X25519 key (make one with `edgesync keygen`)");
  }
  Key k{};
  size_t n = k.size();
  int ok = private_part ? EVP_PKEY_get_raw_private_key(pkey, k.data(), &n)
                        : EVP_PKEY_get_raw_public_key(pkey, k.data(), &n);
  if (ok != 1 || n != k.size()) return Status::InvalidArgument(ossl::Error(origin + ": unreadable X25519 key"));
  return k;
}

Result<Pkey> ReadPem(Env* env, const std::string& path, bool private_part) {
  Result<std::string> text = env->ReadFile(path, kMaxKeyFileBytes);
  if (!text.ok()) return text.status();
  Bio bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
  // No passphrase prompt: a callback that has none (OpenSSL would ask on the terminal).
  auto no_passphrase = [](char*, int, int, void*) { return -1; };
  Pkey pkey(private_part ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr)
                         : PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr));
  if (!pkey && text->find("ENCRYPTED PRIVATE KEY") != std::string::npos) {
    ERR_clear_error();
    return Status::InvalidArgument(path + ": the private key is protected by a passphrase, which edgesync "
                                   "does not ask for; store it decrypted with mode 0600 "
                                   "(openssl pkey -in KEY -out PLAIN.key)");
  }
  if (!pkey) {
    return Status::InvalidArgument(ossl::Error(
        path + ": not a PEM " + (private_part ? "PRIVATE KEY" : "PUBLIC KEY") +
        " (make a key pair with `edgesync keygen --out DIR`)"));
  }
  return pkey;
}

}  // namespace

void Wipe(void* p, size_t n) { OPENSSL_cleanse(p, n); }

Status RandomBytes(uint8_t* out, size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) {
    return Status::Unavailable(ossl::Error("random generator"));
  }
  return Status::OK();
}

KeyId ShortHash(std::string_view bytes) {
  const std::array<uint8_t, 32> md = ossl::Sha256(bytes);
  KeyId id{};
  std::copy_n(md.begin(), id.size(), id.begin());
  return id;
}

Result<X25519Private> X25519Private::FromRaw(const Key& private_key) {
  X25519Private k;
  k.pkey_.reset(PrivateKey(private_key).release(), EVP_PKEY_free);
  Result<Key> pub = RawKey(k.pkey_.get(), false, "X25519 private key");
  if (!pub.ok()) return pub.status();
  k.public_key_ = *pub;
  return k;
}

Result<X25519Private> X25519Private::Generate() {
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return Status::Unavailable(ossl::Error("X25519 key generation"));
  }
  X25519Private k;
  k.pkey_.reset(raw, EVP_PKEY_free);
  Result<Key> pub = RawKey(raw, false, "X25519 key");
  if (!pub.ok()) return pub.status();
  k.public_key_ = *pub;
  return k;
}

Result<Key> X25519Private::Agree(const Key& peer_public_key) const {
  Pkey peer = PublicKey(peer_public_key);
  if (!peer) return Status::InvalidArgument(ossl::Error("X25519 public key"));
  PkeyCtx ctx(EVP_PKEY_CTX_new(pkey_.get(), nullptr));
  Key shared{};
  size_t n = shared.size();
  // OpenSSL refuses a peer key of small order (all-zero shared secret).
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), shared.data(), &n) != 1 || n != shared.size()) {
    return Status::Corruption(ossl::Error("X25519 key agreement failed"));
  }
  return shared;
}

Result<Key> X25519PublicKey(const Key& private_key) {
  Result<X25519Private> k = X25519Private::FromRaw(private_key);
  if (!k.ok()) return k.status();
  return k->public_key();
}

Result<Key> X25519(const Key& private_key, const Key& peer_public_key) {
  Result<X25519Private> k = X25519Private::FromRaw(private_key);
  if (!k.ok()) return k.status();
  return k->Agree(peer_public_key);
}

Result<Key> HkdfSha256(std::string_view ikm, std::string_view salt, std::string_view info) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  Key out{};
  size_t n = out.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), U(salt), static_cast<int>(salt.size())) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), U(ikm), static_cast<int>(ikm.size())) != 1 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), U(info), static_cast<int>(info.size())) != 1 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &n) != 1 || n != out.size()) {
    return Status::InvalidArgument(ossl::Error("HKDF-SHA256"));
  }
  return out;
}

Gcm::Gcm(const Key& key) : ctx_(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free) {
  // The key is set once; each message only sets its nonce (and direction).
  if (ctx_ && EVP_CipherInit_ex(ctx_.get(), EVP_aes_256_gcm(), nullptr, key.data(), nullptr, 1) != 1) {
    ctx_.reset();
  }
}

Status Gcm::Seal(const Nonce& nonce, std::string_view aad, std::string* buf, size_t from) {
  const size_t len = buf->size() - from;
  buf->resize(buf->size() + kTagBytes);
  auto* p = reinterpret_cast<unsigned char*>(buf->data() + from);
  int n = 0;
  if (!ctx_ || EVP_CipherInit_ex(ctx_.get(), nullptr, nullptr, nullptr, nonce.data(), 1) != 1 ||
      EVP_CipherUpdate(ctx_.get(), nullptr, &n, U(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_CipherUpdate(ctx_.get(), p, &n, p, static_cast<int>(len)) != 1 ||  // in place
      EVP_CipherFinal_ex(ctx_.get(), p + n, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, p + len) != 1) {
    Wipe(p, len);  // neither plaintext nor half-encrypted bytes stay behind
    buf->resize(from);
    return Status::InvalidArgument(ossl::Error("AES-256-GCM encryption"));
  }
  return Status::OK();
}

Status Gcm::Open(const Nonce& nonce, std::string_view aad, std::string_view ciphertext_and_tag,
                 std::string* out) {
  if (ciphertext_and_tag.size() < kTagBytes) return Status::Corruption("AES-256-GCM: shorter than its tag");
  const size_t len = ciphertext_and_tag.size() - kTagBytes;
  const size_t at = out->size();
  out->resize(at + len);
  auto* dst = reinterpret_cast<unsigned char*>(out->data() + at);
  unsigned char tag[kTagBytes];
  std::copy_n(U(ciphertext_and_tag) + len, kTagBytes, tag);
  int n = 0;
  bool ok = ctx_ && EVP_CipherInit_ex(ctx_.get(), nullptr, nullptr, nullptr, nonce.data(), 0) == 1 &&
            EVP_CipherUpdate(ctx_.get(), nullptr, &n, U(aad), static_cast<int>(aad.size())) == 1 &&
            EVP_CipherUpdate(ctx_.get(), dst, &n, U(ciphertext_and_tag), static_cast<int>(len)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) == 1 &&
            EVP_CipherFinal_ex(ctx_.get(), dst + n, &n) == 1;
  if (!ok) {
    ERR_clear_error();
    Wipe(out->data() + at, len);  // unauthenticated plaintext never stays behind
    out->resize(at);
    return Status::Corruption("AES-256-GCM authentication failed (wrong key, or the data was changed)");
  }
  return Status::OK();
}

Status GcmSeal(const Key& key, const Nonce& nonce, std::string_view aad,
               std::string_view plaintext, std::string* out) {
  const size_t at = out->size();
  out->append(plaintext);
  return Gcm(key).Seal(nonce, aad, out, at);
}

Status GcmOpen(const Key& key, const Nonce& nonce, std::string_view aad,
               std::string_view ciphertext_and_tag, std::string* out) {
  return Gcm(key).Open(nonce, aad, ciphertext_and_tag, out);
}

Result<Key> ReadPublicKeyFile(Env* env, const std::string& path) {
  Result<Pkey> pkey = ReadPem(env, path, false);
  if (!pkey.ok()) return pkey.status();
  return RawKey(pkey->get(), false, path);
}

Result<Key> ReadPrivateKeyFile(Env* env, const std::string& path) {
  Result<Pkey> pkey = ReadPem(env, path, true);
  if (!pkey.ok()) return pkey.status();
  return RawKey(pkey->get(), true, path);
}

std::string PublicKeyPem(const Key& public_key) { return Pem(PublicKey(public_key).get(), false); }
std::string PrivateKeyPem(const Key& private_key) { return Pem(PrivateKey(private_key).get(), true); }

Result<Key> LoadOrCreateKeyFile(Env* env, const std::string& path) {
  Key k{};
  if (env->Exists(path)) {
    Result<std::string> bytes = env->ReadFile(path, kMaxKeyFileBytes);
    if (!bytes.ok()) return bytes.status();
    if (bytes->size() != k.size()) {
      return Status::Corruption(path + ": a key file holds exactly 32 bytes, this one " +
                                std::to_string(bytes->size()));
    }
    std::copy_n(bytes->data(), k.size(), reinterpret_cast<char*>(k.data()));
    return k;
  }
  EDGESYNC_RETURN_IF_ERROR(Random(&k));
  // Written whole under a temporary name, then renamed: a power cut leaves
  // either no key or the complete one.
  EDGESYNC_RETURN_IF_ERROR(
      WriteFileAtomically(env, path, std::string_view(reinterpret_cast<const char*>(k.data()), k.size())));
  return k;
}

}  // namespace edgesync::crypto
