// libFuzzer target for what a device reads from its fleet: signed
// configuration bundles (fleet::VerifyBundle, fleet/bundle.h), which come
// from a drop directory or a retained MQTT topic, and its fleet state file
// (ParseFleetState, agent/fleet.h). Also linked with replay_main.cpp into
// bundle_fuzz_replay, which ctest runs over corpus/bundle/ with any
// compiler.
//
// The device trusts one fixed test key (kPublicPem; its private half,
// kPrivatePem, is here only to sign). Each input is verified as it is, and
// again re-signed: its last 72 bytes replaced with the key id and a valid
// signature over the bytes before them. Otherwise nearly every mutation
// stops at the signature and the fuzzer never reaches the file list.
//
// Besides "no crash, no leak, no ASan/UBSan report", these must hold:
//  - a refusal is InvalidArgument with a message; a re-signed input is
//    never refused for its key or signature;
//  - what verifies is well formed (FORMAT.md): version >= 1, valid paths,
//    sorted, unique, none also a directory of another, edgesync.toml among
//    them; its digest is the SHA-256 of the input and its key id ours;
//  - SignBundle of its version and files gives back the same bytes
//    (Ed25519 signatures are deterministic);
//  - ExtractBundle writes it out (in memory) file for file.
// And for the input as a fleet state file: what ParseFleetState reads,
// FormatFleetState writes so that ParseFleetState reads it back the same.
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "agent/fleet.h"
#include "fleet/bundle.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/support/mem_env.h"

namespace {
constexpr const char* kTarget = "bundle_fuzz";

using namespace edgesync;

// A test key made for this target (openssl genpkey -algorithm ed25519).
constexpr const char kPrivatePem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIHXfBgmTXMMByVNNhdHNCMOb1LkttB3WpGp32phzzVXJ\n"
    "-----END PRIVATE KEY-----\n";
constexpr const char kPublicPem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAuCuUi7iKSIhAnCcJ6nI7spRmveB7kPXg8eMkFB/baJg=\n"
    "-----END PUBLIC KEY-----\n";

struct Device {
  testing::MemEnv env;
  std::unique_ptr<fleet::TrustedKeys> keys;
  std::string key_id;  // raw 8 bytes
  EVP_PKEY* private_key = nullptr;

  Device() {
    Result<std::unique_ptr<AppendFile>> f = env.OpenAppend("fleet.pub");
    if (!f.ok() || !(*f)->Append(kPublicPem).ok() || !(*f)->Close().ok()) fuzz::Fail(kTarget, "fleet.pub", "");
    Result<fleet::TrustedKeys> k = fleet::TrustedKeys::Load(&env, {"fleet.pub"});
    if (!k.ok()) fuzz::Fail(kTarget, "TrustedKeys::Load", k.status().ToString());
    keys = std::make_unique<fleet::TrustedKeys>(std::move(k).value());
    Result<std::string> id = fleet::SigningKeyId(kPublicPem);
    if (!id.ok() || id->size() != 2 * fleet::kBundleKeyIdBytes) fuzz::Fail(kTarget, "SigningKeyId", "");
    for (size_t i = 0; i < id->size(); i += 2) key_id.push_back(static_cast<char>(std::stoi(id->substr(i, 2), nullptr, 16)));
    BIO* bio = BIO_new_mem_buf(kPrivatePem, -1);
    private_key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (private_key == nullptr) fuzz::Fail(kTarget, "PEM_read_bio_PrivateKey", "");
  }

  // `bytes` with its last 72 bytes replaced by our key id and signature.
  std::string Resign(std::string_view bytes) const {
    std::string out(bytes.substr(0, bytes.size() - fleet::kBundleKeyIdBytes - fleet::kBundleSignatureBytes));
    out += key_id;
    unsigned char sig[fleet::kBundleSignatureBytes];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool ok = EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, private_key) == 1 &&
                    EVP_DigestSign(ctx, sig, &sig_len, reinterpret_cast<const unsigned char*>(out.data()),
                                   out.size()) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok || sig_len != sizeof sig) fuzz::Fail(kTarget, "EVP_DigestSign", "");
    out.append(reinterpret_cast<const char*>(sig), sig_len);
    return out;
  }
};

Device& TheDevice() {
  static Device* device = new Device();  // never freed: lives as long as the process
  return *device;
}

void CheckBundle(std::string_view bytes, bool resigned) {
  Device& d = TheDevice();
  Result<fleet::Bundle> b = fleet::VerifyBundle(bytes, *d.keys);
  if (!b.ok()) {
    FUZZ_CHECK(b.status().code() == Status::Code::kInvalidArgument && !b.status().message().empty(),
               b.status().ToString());
    if (resigned) {
      const std::string& m = b.status().message();
      FUZZ_CHECK(m.find("bad signature") == std::string::npos && m.find("not one of the fleet") == std::string::npos, m);
    }
    return;
  }
  FUZZ_CHECK(b->version >= 1, "");
  FUZZ_CHECK(b->digest == fleet::Sha256Hex(bytes), b->digest);
  FUZZ_CHECK(b->key_id == *fleet::SigningKeyId(kPublicPem), b->key_id);
  bool has_config = false;
  for (size_t i = 0; i < b->files.size(); ++i) {
    const std::string& path = b->files[i].path;
    FUZZ_CHECK(fleet::ValidBundlePath(path).ok(), path);
    has_config |= path == "edgesync.toml";
    if (i > 0) {
      const std::string& before = b->files[i - 1].path;
      FUZZ_CHECK(before < path, before + " before " + path);
      FUZZ_CHECK(path.rfind(before + "/", 0) != 0, before + " is a file and a directory");
    }
  }
  FUZZ_CHECK(has_config, "no edgesync.toml");

  // Signed again from its parts: the same bytes.
  Result<std::string> again = fleet::SignBundle(b->version, b->files, kPrivatePem);
  FUZZ_CHECK(again.ok(), again.status().ToString());
  FUZZ_CHECK(*again == bytes, "signed again differently");

  // Written out, where the agent keeps bundles, and read back.
  testing::MemEnv env;
  FUZZ_CHECK(env.CreateDirs("/state/fleet/bundles").ok(), "");
  Status st = fleet::ExtractBundle(&env, *b, "/state/fleet/bundles/1");
  FUZZ_CHECK(st.ok(), st.ToString());
  for (const fleet::BundleFile& f : b->files) {
    Result<std::string> content = env.ReadFile("/state/fleet/bundles/1/" + f.path, kMaxOwnFileBytes);
    FUZZ_CHECK(content.ok() && *content == f.content, f.path);
  }
}

bool SameState(const FleetState& a, const FleetState& b) {
  return a.running == b.running && a.good == b.good && a.highest == b.highest &&
         a.running_digest == b.running_digest && a.good_digest == b.good_digest &&
         a.highest_digest == b.highest_digest && a.status == b.status;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckBundle(bytes, false);
  if (size >= fleet::kBundleKeyIdBytes + fleet::kBundleSignatureBytes) {
    const std::string resigned = TheDevice().Resign(bytes);
    if (resigned != bytes) CheckBundle(resigned, true);
  }

  const FleetState state = ParseFleetState(std::string(bytes));
  const std::string text = FormatFleetState(state);
  FUZZ_CHECK(SameState(ParseFleetState(text), state), text);
  return 0;
}
