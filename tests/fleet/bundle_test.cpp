// Configuration bundles (fleet/bundle.h): signing and verifying, every kind
// of damage refused before the file list is trusted, the path rules at each
// step, reading a configuration directory and writing a bundle out.
#include "fleet/bundle.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "base/coding.h"
#include "tests/support/mem_env.h"
#include "tests/support/temp_dir.h"

namespace edgesync::fleet {
namespace {

// Whether `text` holds `part`, saying what it holds when not.
::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess() << "\"" << text << "\"";
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

struct KeyPair {
  std::string private_pem, public_pem;
};

KeyPair NewKey() {
  Result<std::pair<std::string, std::string>> k = GenerateSigningKey();
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  return {k->first, k->second};
}

std::vector<BundleFile> SampleFiles() {
  return {{"profiles/ev-charger.toml", "[mqtt]\nqos = 1\n"},
          {"edgesync.toml", "[agent]\ndevice_id = \"t1\"\n"},
          {"scripts/mask.lua", "return function(e) return e end\n"},
          {"empty.txt", ""}};
}

// Trusted keys from PEM texts, through a MemEnv.
TrustedKeys Trust(const std::vector<std::string>& pems) {
  testing::MemEnv env;
  std::vector<std::string> files;
  for (size_t i = 0; i < pems.size(); ++i) {
    files.push_back("key" + std::to_string(i) + ".pub");
    auto f = env.OpenAppend(files.back());
    EXPECT_TRUE(f.ok());
    EXPECT_TRUE((*f)->Append(pems[i]).ok());
  }
  Result<TrustedKeys> keys = TrustedKeys::Load(&env, files);
  EXPECT_TRUE(keys.ok()) << keys.status().ToString();
  return std::move(keys).value();
}

std::string Sign(uint64_t version, std::vector<BundleFile> files, const KeyPair& key) {
  Result<std::string> bytes = SignBundle(version, std::move(files), key.private_pem);
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  return bytes.ok() ? *bytes : std::string();
}

// The file list part of a bundle (magic through the last file), built by
// hand without SignBundle's checks.
std::string Encode(uint64_t version, const std::vector<BundleFile>& files,
                   uint8_t format = kBundleFormatVersion) {
  std::string out(kBundleMagic);
  PutU8(&out, format);
  PutU64(&out, version);
  PutU32(&out, static_cast<uint32_t>(files.size()));
  for (const BundleFile& f : files) {
    PutU16(&out, static_cast<uint16_t>(f.path.size()));
    out += f.path;
    PutU32(&out, static_cast<uint32_t>(f.content.size()));
    out += f.content;
  }
  return out;
}

// The 8 bytes of key's id, as a bundle holds them.
std::string IdBytes(const KeyPair& key) {
  Result<std::string> hex = SigningKeyId(key.public_pem);
  EXPECT_TRUE(hex.ok());
  std::string id;
  for (size_t i = 0; i + 1 < hex->size(); i += 2) {
    id.push_back(static_cast<char>(std::stoi(hex->substr(i, 2), nullptr, 16)));
  }
  return id;
}

// `body` followed by key's id and its Ed25519 signature over both: a
// bundle whose signature holds whatever the body is.
std::string SignRaw(std::string body, const KeyPair& key) {
  body += IdBytes(key);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(key.private_pem.data(), static_cast<int>(key.private_pem.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char sig[64];
  size_t sig_len = sizeof sig;
  EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()), 1);
  EXPECT_EQ(EVP_DigestSign(ctx.get(), sig, &sig_len, reinterpret_cast<const unsigned char*>(body.data()),
                           body.size()),
            1);
  body.append(reinterpret_cast<const char*>(sig), sig_len);
  return body;
}

std::string HandSigned(uint64_t version, const std::vector<BundleFile>& files, const KeyPair& key,
                       uint8_t format = kBundleFormatVersion) {
  return SignRaw(Encode(version, files, format), key);
}

std::string RefusalOf(std::string_view bytes, const TrustedKeys& keys) {
  Result<Bundle> b = VerifyBundle(bytes, keys);
  if (b.ok()) return "(accepted)";
  EXPECT_EQ(b.status().code(), Status::Code::kInvalidArgument) << b.status().ToString();
  return b.status().message();
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(Bundle, SignThenVerifyGivesBackVersionFilesKeyAndDigest) {
  KeyPair key = NewKey();
  const std::string bytes = Sign(42, SampleFiles(), key);
  Result<Bundle> b = VerifyBundle(bytes, Trust({NewKey().public_pem, key.public_pem}));
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->version, 42u);
  ASSERT_EQ(b->files.size(), 4u);
  EXPECT_EQ(b->files[0].path, "edgesync.toml");
  EXPECT_EQ(b->files[0].content, "[agent]\ndevice_id = \"t1\"\n");
  EXPECT_EQ(b->files[1].path, "empty.txt");
  EXPECT_EQ(b->files[1].content, "");
  EXPECT_EQ(b->files[2].path, "profiles/ev-charger.toml");
  EXPECT_EQ(b->files[3].path, "scripts/mask.lua");
  EXPECT_EQ(b->files[3].content, "return function(e) return e end\n");
  EXPECT_EQ(b->key_id, *SigningKeyId(key.public_pem));
  EXPECT_EQ(b->key_id, *SigningKeyId(key.private_pem));
  EXPECT_EQ(b->key_id.size(), 16u);
  EXPECT_EQ(b->digest, Sha256Hex(bytes));
  EXPECT_EQ(b->digest.size(), 64u);
  // The layout FORMAT.md gives: header, files, key id, signature.
  EXPECT_EQ(bytes.substr(0, 8), "ESBUNDLE");
  EXPECT_EQ(bytes[8], 1);
  size_t expected = 8 + 1 + 8 + 4 + 8 + 64;
  for (const BundleFile& f : b->files) expected += 2 + f.path.size() + 4 + f.content.size();
  EXPECT_EQ(bytes.size(), expected);
}

TEST(Bundle, Sha256HexOfKnownInput) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Bundle, AnotherFleetsBundleIsRefusedByKeyId) {
  KeyPair ours = NewKey(), theirs = NewKey();
  TrustedKeys keys = Trust({ours.public_pem});
  const std::string reason = RefusalOf(Sign(1, SampleFiles(), theirs), keys);
  EXPECT_TRUE(Contains(reason, "signed by key " + *SigningKeyId(theirs.public_pem) +
                                   ", which is not one of the fleet's public keys (" +
                                   *SigningKeyId(ours.public_pem) + ")"));
  EXPECT_EQ(keys.Ids(), *SigningKeyId(ours.public_pem));
}

TEST(Bundle, TrustedKeyIdOverAnotherKeysSignatureIsABadSignature) {
  KeyPair trusted = NewKey(), forger = NewKey();
  std::string bytes = Sign(1, SampleFiles(), forger);
  // Claim the trusted key's id: the id is found, the signature does not hold.
  bytes.replace(bytes.size() - 72, 8, IdBytes(trusted));
  const std::string reason = RefusalOf(bytes, Trust({trusted.public_pem}));
  EXPECT_TRUE(Contains(reason, "bad signature: the bundle was altered after signing, or not signed by key " +
                                   *SigningKeyId(trusted.public_pem)));
}

TEST(Bundle, EverySingleFlippedByteIsRefused) {
  KeyPair key = NewKey();
  TrustedKeys keys = Trust({key.public_pem});
  const std::string good = Sign(7, SampleFiles(), key);
  ASSERT_TRUE(VerifyBundle(good, keys).ok());
  // Header, paths, contents, key id and signature: every byte, two bit patterns.
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      Result<Bundle> b = VerifyBundle(bad, keys);
      EXPECT_FALSE(b.ok()) << "byte " << i << " ^ " << int{mask} << " accepted";
    }
  }
  // Each region's refusal says why.
  std::string bad = good;
  bad[0] = 'X';
  EXPECT_TRUE(Contains(RefusalOf(bad, keys), "not a configuration bundle"));
  bad = good;
  bad[8] = 2;
  EXPECT_TRUE(Contains(RefusalOf(bad, keys), "format version 2"));
  bad = good;
  bad[good.find("edgesync.toml")] ^= 1;  // a path
  EXPECT_TRUE(Contains(RefusalOf(bad, keys), "bad signature"));
  bad = good;
  bad[good.find("qos = 1")] ^= 1;  // a content byte
  EXPECT_TRUE(Contains(RefusalOf(bad, keys), "bad signature"));
  bad = good;
  bad[good.size() - 72] ^= 1;  // the key id
  EXPECT_TRUE(Contains(RefusalOf(bad, keys), "which is not one of the fleet's public keys"));
  bad = good;
  bad[good.size() - 1] ^= 1;  // the signature
  EXPECT_TRUE(Contains(RefusalOf(bad, keys), "bad signature"));
}

TEST(Bundle, EveryTruncationIsRefused) {
  KeyPair key = NewKey();
  TrustedKeys keys = Trust({key.public_pem});
  const std::string good = Sign(3, SampleFiles(), key);
  for (size_t n = 0; n < good.size(); ++n) {
    // A copy of exactly n bytes, so that reading past it would be caught by ASan.
    std::unique_ptr<char[]> cut(new char[n + 1]);
    std::copy_n(good.data(), n, cut.get());
    EXPECT_FALSE(VerifyBundle(std::string_view(cut.get(), n), keys).ok()) << "truncated to " << n;
  }
  EXPECT_TRUE(Contains(RefusalOf("", keys), "truncated"));
  EXPECT_TRUE(Contains(RefusalOf(good.substr(0, 50), keys), "truncated"));
}

TEST(Bundle, ATrailingByteIsRefused) {
  KeyPair key = NewKey();
  TrustedKeys keys = Trust({key.public_pem});
  const std::string good = Sign(3, SampleFiles(), key);
  EXPECT_FALSE(VerifyBundle(good + '\0', keys).ok());
  EXPECT_FALSE(VerifyBundle(good + good.back(), keys).ok());
  EXPECT_FALSE(VerifyBundle(good + good, keys).ok());
}

TEST(Bundle, TooLargeIsRefused) {
  KeyPair key = NewKey();
  TrustedKeys keys = Trust({key.public_pem});
  std::string big = Sign(1, SampleFiles(), key);
  big.resize(kMaxBundleBytes + 1);
  EXPECT_TRUE(Contains(RefusalOf(big, keys), "too large"));
  std::vector<BundleFile> files = {{"edgesync.toml", std::string(kMaxBundleBytes, 'x')}};
  Result<std::string> signed_big = SignBundle(1, files, key.private_pem);
  ASSERT_FALSE(signed_big.ok());
  EXPECT_TRUE(Contains(signed_big.status().message(), "at most"));
}

// File lists that break a rule, and what the refusal says.
struct BadList {
  std::vector<BundleFile> files;
  std::string reason;
};
std::vector<BadList> BadLists() {
  const BundleFile config = {"edgesync.toml", "x"};
  return {
      {{config, {"../etc/passwd", "x"}}, "\"..\" component"},
      {{config, {"a/../b", "x"}}, "\"..\" component"},
      {{config, {"./a", "x"}}, "\".\" component"},
      {{config, {"/etc/passwd", "x"}}, "absolute"},
      {{config, {"a//b", "x"}}, "empty component"},
      {{config, {"a/", "x"}}, "empty component"},
      {{config, {"", "x"}}, "1 to 255 bytes"},
      {{config, {std::string(256, 'a'), "x"}}, "1 to 255 bytes"},
      {{config, {"a b", "x"}}, "character other than"},
      {{config, {"a\\b", "x"}}, "character other than"},
      {{config, {"caf\xc3\xa9", "x"}}, "character other than"},
      {{{"a", "x"}, {"a", "y"}, config}, "appears twice"},
      {{{"a", "x"}, {"a/b", "y"}, config}, "both a file and a directory"},
      {{{"profiles/edgesync.toml", "x"}}, "no edgesync.toml"},
      {{}, "at least edgesync.toml"},
  };
}

TEST(Bundle, BadPathsAreRefusedAtSigning) {
  KeyPair key = NewKey();
  for (const BadList& bad : BadLists()) {
    Result<std::string> bytes = SignBundle(1, bad.files, key.private_pem);
    ASSERT_FALSE(bytes.ok()) << bad.reason;
    EXPECT_EQ(bytes.status().code(), Status::Code::kInvalidArgument);
    EXPECT_TRUE(Contains(bytes.status().message(), bad.reason));
  }
  std::vector<BundleFile> too_many = {{"edgesync.toml", ""}};
  for (int i = 0; i < 1024; ++i) too_many.push_back({"f" + std::to_string(i), ""});
  Result<std::string> bytes = SignBundle(1, too_many, key.private_pem);
  ASSERT_FALSE(bytes.ok());
  EXPECT_TRUE(Contains(bytes.status().message(), "at most 1024"));
  too_many.pop_back();
  EXPECT_TRUE(SignBundle(1, too_many, key.private_pem).ok());
}

TEST(Bundle, BadPathsAreRefusedAtVerifyingEvenWhenSigned) {
  KeyPair key = NewKey();
  TrustedKeys keys = Trust({key.public_pem});
  for (const BadList& bad : BadLists()) {
    const std::string reason = RefusalOf(HandSigned(1, bad.files, key), keys);
    EXPECT_TRUE(Contains(reason, bad.reason));
    EXPECT_FALSE(Contains(reason, "signature"));
  }
  // Not sorted: SignBundle sorts, a hand-made bundle need not.
  EXPECT_TRUE(Contains(RefusalOf(HandSigned(1, {{"z", ""}, {"edgesync.toml", ""}}, key), keys), "not sorted"));
  // The hand-built bundle itself is right: the same list, in order, passes.
  EXPECT_TRUE(VerifyBundle(HandSigned(1, {{"edgesync.toml", ""}, {"z", ""}}, key), keys).ok());
}

TEST(Bundle, SignedButMalformedFileListIsRefused) {
  KeyPair key = NewKey();
  TrustedKeys keys = Trust({key.public_pem});
  const std::vector<BundleFile> two = {{"edgesync.toml", "x"}, {"z", "y"}};
  ASSERT_TRUE(VerifyBundle(HandSigned(1, two, key), keys).ok());
  std::string body = Encode(1, two);
  body[17] = 3;  // file count: more files than there are
  EXPECT_TRUE(Contains(RefusalOf(SignRaw(body, key), keys), "runs past its end"));
  body[17] = 1;  // fewer: bytes left before the key id
  EXPECT_TRUE(Contains(RefusalOf(SignRaw(body, key), keys), "between the file list and the key id"));
  EXPECT_TRUE(Contains(RefusalOf(HandSigned(1, {}, key), keys), "at least edgesync.toml"));
  // A content length past the end of the list.
  body = Encode(1, {{"edgesync.toml", "x"}});
  body[8 + 1 + 8 + 4 + 2 + 13] = 100;
  EXPECT_TRUE(Contains(RefusalOf(SignRaw(body, key), keys), "runs past its end"));
  EXPECT_TRUE(Contains(RefusalOf(HandSigned(1, two, key, 2), keys), "format version 2"));
}

TEST(Bundle, VersionZeroIsRefused) {
  KeyPair key = NewKey();
  Result<std::string> bytes = SignBundle(0, SampleFiles(), key.private_pem);
  ASSERT_FALSE(bytes.ok());
  EXPECT_TRUE(Contains(bytes.status().message(), "version 0"));
  EXPECT_TRUE(
      Contains(RefusalOf(HandSigned(0, {{"edgesync.toml", ""}}, key), Trust({key.public_pem})), "version 0"));
}

TEST(Bundle, SigningRefusesKeysThatAreNotEd25519PrivateKeys) {
  KeyPair key = NewKey();
  Result<std::string> bytes = SignBundle(1, SampleFiles(), key.public_pem);
  ASSERT_FALSE(bytes.ok());
  EXPECT_TRUE(Contains(bytes.status().message(), "not a PEM PRIVATE KEY"));
  bytes = SignBundle(1, SampleFiles(), "garbage");
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.status().code(), Status::Code::kInvalidArgument);
}

// An X25519 public key as PEM, made with OpenSSL directly.
std::string X25519PublicPem() {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"),
                                                           EVP_PKEY_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  EXPECT_EQ(PEM_write_bio_PUBKEY(bio.get(), pkey.get()), 1);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

TEST(Bundle, TrustedKeysRefuseWhatIsNotAnEd25519PublicKeyNamingTheFile) {
  testing::MemEnv env;
  KeyPair key = NewKey();
  auto write = [&](const std::string& path, const std::string& content) {
    auto f = env.OpenAppend(path);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(content).ok());
  };
  write("good.pub", key.public_pem);
  write("x25519.pub", X25519PublicPem());
  write("garbage.pub", "not a key at all\n");
  write("private.key", key.private_pem);
  write("two.pub", key.public_pem + NewKey().public_pem);

  Result<TrustedKeys> keys = TrustedKeys::Load(&env, {"good.pub", "x25519.pub"});
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(Contains(keys.status().message(), "x25519.pub"));
  EXPECT_TRUE(Contains(keys.status().message(), "X25519"));
  for (const char* bad : {"garbage.pub", "private.key", "two.pub"}) {
    keys = TrustedKeys::Load(&env, {"good.pub", bad});
    ASSERT_FALSE(keys.ok()) << bad;
    EXPECT_EQ(keys.status().code(), Status::Code::kInvalidArgument) << bad;
    EXPECT_TRUE(Contains(keys.status().message(), bad));
  }
  keys = TrustedKeys::Load(&env, {"missing.pub"});
  ASSERT_FALSE(keys.ok());
  EXPECT_TRUE(Contains(keys.status().message(), "missing.pub"));
  EXPECT_FALSE(TrustedKeys::Load(&env, {}).ok());

  keys = TrustedKeys::Load(&env, {"good.pub", "good.pub"});
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->size(), 1u);
}

TEST(Bundle, ReadBundleDirReadsNestedDirectoriesSorted) {
  harness::TempDir tmp = testing::NewTempDir();
  const std::string dir = tmp / "conf";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir + "/scripts").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir + "/scripts/lib").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir + "/empty").c_str(), 0700), 0);
  WriteFile(dir + "/edgesync.toml", "[agent]\n");
  WriteFile(dir + "/scripts/lib/util.lua", "-- util\n");
  WriteFile(dir + "/scripts/a.lua", "-- a\n");
  WriteFile(dir + "/Zeta.toml", "z");
  Result<std::vector<BundleFile>> files = ReadBundleDir(Env::Default(), dir);
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  std::vector<std::string> paths;
  for (const BundleFile& f : *files) paths.push_back(f.path);
  EXPECT_EQ(paths,
            (std::vector<std::string>{"Zeta.toml", "edgesync.toml", "scripts/a.lua", "scripts/lib/util.lua"}));
  EXPECT_EQ((*files)[3].content, "-- util\n");
  // What was read signs and verifies.
  KeyPair key = NewKey();
  EXPECT_TRUE(VerifyBundle(Sign(1, *files, key), Trust({key.public_pem})).ok());
}

TEST(Bundle, ReadBundleDirRefusesSymlinksBadNamesAndAMissingConfig) {
  harness::TempDir tmp = testing::NewTempDir();
  const std::string dir = tmp / "conf";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  WriteFile(dir + "/edgesync.toml", "[agent]\n");
  WriteFile(tmp / "outside.txt", "secret");
  ASSERT_EQ(::symlink((tmp / "outside.txt").c_str(), (dir + "/link.toml").c_str()), 0);
  Result<std::vector<BundleFile>> files = ReadBundleDir(Env::Default(), dir);
  ASSERT_FALSE(files.ok());
  EXPECT_EQ(files.status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(Contains(files.status().message(), dir + "/link.toml"));
  EXPECT_TRUE(Contains(files.status().message(), "symbolic link"));

  ASSERT_EQ(::unlink((dir + "/link.toml").c_str()), 0);
  ASSERT_EQ(::symlink(tmp.path().c_str(), (dir + "/linkdir").c_str()), 0);
  files = ReadBundleDir(Env::Default(), dir);
  ASSERT_FALSE(files.ok());
  EXPECT_TRUE(Contains(files.status().message(), "linkdir"));

  ASSERT_EQ(::unlink((dir + "/linkdir").c_str()), 0);
  WriteFile(dir + "/notes~", "backup");
  files = ReadBundleDir(Env::Default(), dir);
  ASSERT_FALSE(files.ok());
  EXPECT_TRUE(Contains(files.status().message(), "notes~"));

  ASSERT_EQ(::unlink((dir + "/notes~").c_str()), 0);
  ASSERT_EQ(::unlink((dir + "/edgesync.toml").c_str()), 0);
  WriteFile(dir + "/other.toml", "x");
  files = ReadBundleDir(Env::Default(), dir);
  ASSERT_FALSE(files.ok());
  EXPECT_TRUE(Contains(files.status().message(), "no edgesync.toml"));

  files = ReadBundleDir(Env::Default(), tmp / "missing");
  ASSERT_FALSE(files.ok());
  EXPECT_EQ(files.status().code(), Status::Code::kNotFound);
  files = ReadBundleDir(Env::Default(), dir + "/other.toml");
  ASSERT_FALSE(files.ok());
  EXPECT_EQ(files.status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(Contains(files.status().message(), "not a directory"));
}

Bundle Verified(const std::vector<BundleFile>& files) {
  KeyPair key = NewKey();
  Result<Bundle> b = VerifyBundle(Sign(5, files, key), Trust({key.public_pem}));
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return std::move(b).value();
}

TEST(Bundle, ExtractWritesTheTreeWithPrivateModes) {
  harness::TempDir tmp = testing::NewTempDir();
  const std::string dir = tmp / "v5";
  ASSERT_TRUE(ExtractBundle(Env::Default(), Verified(SampleFiles()), dir).ok());
  EXPECT_EQ(harness::ReadWholeFile(dir + "/edgesync.toml"), "[agent]\ndevice_id = \"t1\"\n");
  EXPECT_EQ(harness::ReadWholeFile(dir + "/scripts/mask.lua"), "return function(e) return e end\n");
  EXPECT_EQ(harness::ReadWholeFile(dir + "/profiles/ev-charger.toml"), "[mqtt]\nqos = 1\n");
  EXPECT_TRUE(Env::Default()->Exists(dir + "/empty.txt"));
  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(dir + "/scripts"), 0700u);
  EXPECT_EQ(ModeOf(dir + "/profiles"), 0700u);
  EXPECT_EQ(ModeOf(dir + "/edgesync.toml"), 0600u);
  EXPECT_EQ(ModeOf(dir + "/scripts/mask.lua"), 0600u);
  EXPECT_FALSE(Env::Default()->Exists(dir + ".tmp"));
}

TEST(Bundle, ExtractRefusesAnExistingDirectory) {
  harness::TempDir tmp = testing::NewTempDir();
  const std::string dir = tmp / "v5";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  Status st = ExtractBundle(Env::Default(), Verified(SampleFiles()), dir);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "exists"));
  EXPECT_FALSE(Env::Default()->Exists(dir + "/edgesync.toml"));
  EXPECT_FALSE(Env::Default()->Exists(dir + ".tmp"));
}

TEST(Bundle, ExtractCleansALeftoverTmpDirectory) {
  harness::TempDir tmp = testing::NewTempDir();
  const std::string dir = tmp / "v5";
  // What a crash during an earlier extraction leaves: a partial tree, and a
  // link that must be removed, not followed.
  ASSERT_EQ(::mkdir((dir + ".tmp").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir + ".tmp/scripts").c_str(), 0700), 0);
  WriteFile(dir + ".tmp/scripts/stale.lua", "stale");
  WriteFile(tmp / "keep.txt", "keep");
  ASSERT_EQ(::symlink((tmp / "keep.txt").c_str(), (dir + ".tmp/link").c_str()), 0);
  ASSERT_TRUE(ExtractBundle(Env::Default(), Verified(SampleFiles()), dir).ok());
  EXPECT_FALSE(Env::Default()->Exists(dir + ".tmp"));
  EXPECT_FALSE(Env::Default()->Exists(dir + "/scripts/stale.lua"));
  EXPECT_FALSE(Env::Default()->Exists(dir + "/link"));
  EXPECT_EQ(harness::ReadWholeFile(tmp / "keep.txt"), "keep");
  EXPECT_EQ(harness::ReadWholeFile(dir + "/scripts/mask.lua"), "return function(e) return e end\n");
}

// A power cut at any point of an extraction leaves the directory either
// absent (a later extraction then succeeds) or complete.
TEST(Bundle, ExtractIsAllOrNothingUnderPowerCuts) {
  const Bundle b = Verified(SampleFiles());
  bool completed = false;
  uint64_t cuts = 0;
  for (uint64_t ops = 0; !completed; ++ops) {
    ASSERT_LT(ops, 1000u);
    testing::MemEnv env(ops + 1);
    ASSERT_TRUE(env.CreateDirs("/cfg").ok());
    env.CutPowerAfter(ops);
    completed = ExtractBundle(&env, b, "/cfg/v5").ok();
    env.PowerCut(testing::MemEnv::CutMode::kTear);
    if (!env.Exists("/cfg/v5")) {
      ASSERT_FALSE(completed) << "power cut after " << ops;
      ASSERT_TRUE(ExtractBundle(&env, b, "/cfg/v5").ok()) << "after a cut at " << ops;
    }
    for (const BundleFile& f : b.files) {
      Result<std::string> content = env.ReadFile("/cfg/v5/" + f.path, kMaxOwnFileBytes);
      ASSERT_TRUE(content.ok()) << f.path << " after a cut at " << ops;
      EXPECT_EQ(*content, f.content) << f.path << " after a cut at " << ops;
    }
    EXPECT_FALSE(env.Exists("/cfg/v5.tmp"));
    cuts += completed ? 0 : 1;
  }
  // Each file's create, append and sync, the directories' syncs, the rename.
  EXPECT_GT(cuts, 3 * b.files.size());
}

}  // namespace
}  // namespace edgesync::fleet
