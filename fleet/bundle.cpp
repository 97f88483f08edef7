// Configuration bundles: the format is FORMAT.md, "Configuration bundle,
// format version 1"; the keys are Ed25519 through OpenSSL 3's EVP interface.
#include "fleet/bundle.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <memory>
#include <set>

#include "base/coding.h"
#include "base/openssl.h"

namespace edgesync::fleet {
namespace {

using ossl::Hex;
using ossl::Pem;
using ossl::Pkey;
using ossl::Sha256;
using ossl::U;

using KeyId = std::array<uint8_t, kBundleKeyIdBytes>;
using RawKey = std::array<uint8_t, 32>;

// magic, format version, bundle version, file count.
constexpr size_t kHeaderBytes = 8 + 1 + 8 + 4;
// key id and signature, the last bytes of every bundle.
constexpr size_t kTrailerBytes = kBundleKeyIdBytes + kBundleSignatureBytes;
constexpr std::string_view kConfigFile = "edgesync.toml";
constexpr const char* kKeygenHint = "make a key pair with `edgesync bundle keygen --out DIR`";

KeyId IdOf(const RawKey& raw) {
  std::array<uint8_t, 32> md = Sha256(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()));
  KeyId id{};
  std::copy_n(md.begin(), id.size(), id.begin());
  return id;
}

Result<Pkey> ParseEd25519Pem(std::string_view pem, bool private_part, std::string origin) {
  return ossl::ParseEd25519Pem(pem, private_part, std::move(origin), kKeygenHint);
}

Result<RawKey> RawPublicKey(EVP_PKEY* pkey, std::string origin) {
  Result<RawKey> raw = ossl::Ed25519RawPublic(pkey);
  if (!raw.ok() && !origin.empty()) return Status::InvalidArgument(origin + ": " + raw.status().message());
  return raw;
}

bool PathByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

// The rules every file list obeys, at signing, reading a directory and
// verifying: 1..kMaxBundleFiles files, valid paths, sorted by path (byte
// order) without duplicates, no path that is also a directory of another
// (it could not be written out), edgesync.toml among them.
Status CheckFileList(const std::vector<BundleFile>& files) {
  if (files.empty()) return Status::InvalidArgument("a bundle holds at least edgesync.toml; this one holds no file");
  if (files.size() > kMaxBundleFiles) {
    return Status::InvalidArgument(std::to_string(files.size()) + " files; a bundle holds at most " +
                                   std::to_string(kMaxBundleFiles));
  }
  std::set<std::string_view> dirs;  // every directory some path lies in
  bool has_config = false;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& path = files[i].path;
    EDGESYNC_RETURN_IF_ERROR(ValidBundlePath(path));
    if (i > 0 && files[i - 1].path >= path) {
      return Status::InvalidArgument(files[i - 1].path == path
                                         ? "the path \"" + path + "\" appears twice"
                                         : "the files are not sorted by path at \"" + path + "\"");
    }
    for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
      dirs.insert(std::string_view(path).substr(0, slash));
    }
    has_config = has_config || path == kConfigFile;
  }
  for (const BundleFile& f : files) {
    if (dirs.count(f.path) != 0) {
      return Status::InvalidArgument("\"" + f.path + "\" is both a file and a directory of other files");
    }
  }
  if (!has_config) {
    return Status::InvalidArgument("no edgesync.toml at the top of the bundle (the agent's configuration)");
  }
  return Status::OK();
}

// Adds the regular files under root/rel to `files`, recursively; `bytes`
// counts their content against kMaxBundleBytes.
Status ReadTree(Env* env, const std::string& root, const std::string& rel, std::vector<BundleFile>* files,
                uint64_t* bytes) {
  const std::string dir = rel.empty() ? root : root + "/" + rel;
  Result<std::vector<std::string>> names = env->ListDir(dir);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    const std::string path = rel.empty() ? name : rel + "/" + name;
    const std::string full = root + "/" + path;
    Result<Env::FileType> type = env->TypeOf(full);
    if (!type.ok()) return type.status();
    if (*type == Env::FileType::kSymlink) {
      return Status::InvalidArgument(full +
                                     ": a symbolic link; a bundle holds regular files only "
                                     "(copy what it points to in its place)");
    }
    if (*type == Env::FileType::kOther) {
      return Status::InvalidArgument(full + ": not a regular file or directory; remove it from the tree");
    }
    Status valid = ValidBundlePath(path);
    if (!valid.ok()) return Status::InvalidArgument(full + ": " + valid.message() + "; rename it");
    if (*type == Env::FileType::kDirectory) {
      EDGESYNC_RETURN_IF_ERROR(ReadTree(env, root, path, files, bytes));
      continue;
    }
    if (files->size() >= kMaxBundleFiles) {
      return Status::InvalidArgument(root + ": more than " + std::to_string(kMaxBundleFiles) +
                                     " files; a bundle holds at most that many");
    }
    Result<uint64_t> size = env->FileSize(full);
    if (!size.ok()) return size.status();
    *bytes += *size;
    if (*bytes > kMaxBundleBytes) {
      return Status::InvalidArgument(root + ": the files hold more than " +
                                     std::to_string(kMaxBundleBytes >> 20) + " MiB, a bundle's limit");
    }
    Result<std::string> content = env->ReadFile(full, kMaxBundleBytes);
    if (!content.ok()) return content.status();
    files->push_back({path, std::move(content).value()});
  }
  return Status::OK();
}

}  // namespace

std::string Sha256Hex(std::string_view bytes) { return Hex(Sha256(bytes)); }

Status RemoveTree(Env* env, const std::string& path) {
  Result<Env::FileType> type = env->TypeOf(path);
  if (!type.ok()) return type.status().code() == Status::Code::kNotFound ? Status::OK() : type.status();
  if (*type != Env::FileType::kDirectory) return env->RemoveFile(path);
  Result<std::vector<std::string>> names = env->ListDir(path);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) EDGESYNC_RETURN_IF_ERROR(RemoveTree(env, path + "/" + name));
  return env->RemoveDir(path);
}

Status ValidBundlePath(std::string_view path) {
  const std::string quoted = "\"" + std::string(path) + "\"";
  if (path.empty() || path.size() > kMaxBundlePathBytes) {
    return Status::InvalidArgument("the path " + quoted + " is not 1 to " +
                                   std::to_string(kMaxBundlePathBytes) + " bytes long");
  }
  if (path.front() == '/') {
    return Status::InvalidArgument("the path " + quoted + " is absolute; paths are relative");
  }
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    std::string_view part =
        path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty()) return Status::InvalidArgument("the path " + quoted + " has an empty component");
    if (part == "." || part == "..") {
      return Status::InvalidArgument("the path " + quoted + " has a \"" + std::string(part) + "\" component");
    }
    if (!std::all_of(part.begin(), part.end(), PathByte)) {
      return Status::InvalidArgument("the path " + quoted + " has a character other than A-Z a-z 0-9 . _ -");
    }
    if (slash == std::string_view::npos) return Status::OK();
    start = slash + 1;
  }
}

Result<TrustedKeys> TrustedKeys::Load(Env* env, const std::vector<std::string>& pem_files) {
  if (pem_files.empty()) {
    return Status::InvalidArgument("no fleet public key given (" + std::string(kKeygenHint) + ")");
  }
  TrustedKeys keys;
  for (const std::string& file : pem_files) {
    Result<std::string> pem = env->ReadFile(file, kMaxKeyFileBytes);
    if (!pem.ok()) return pem.status();
    Result<Pkey> pkey = ParseEd25519Pem(*pem, false, file);
    if (!pkey.ok()) return pkey.status();
    Result<RawKey> raw = RawPublicKey(pkey->get(), file);
    if (!raw.ok()) return raw.status();
    Key k{IdOf(*raw), *raw};
    bool known =
        std::any_of(keys.keys_.begin(), keys.keys_.end(), [&](const Key& o) { return o.raw == k.raw; });
    if (!known) keys.keys_.push_back(k);
  }
  return keys;
}

std::string TrustedKeys::Ids() const {
  std::string out;
  for (const Key& k : keys_) {
    if (!out.empty()) out += ",";
    out += Hex(k.id);
  }
  return out;
}

Result<std::vector<BundleFile>> ReadBundleDir(Env* env, const std::string& dir) {
  Result<Env::FileType> type = env->TypeOf(dir);
  if (!type.ok() && type.status().code() == Status::Code::kNotFound) {
    return Status::NotFound(dir + ": no such configuration directory");
  }
  if (type.ok() && *type != Env::FileType::kDirectory && *type != Env::FileType::kSymlink) {
    return Status::InvalidArgument(dir + ": not a directory; give the directory holding edgesync.toml");
  }
  std::vector<BundleFile> files;
  uint64_t bytes = 0;
  EDGESYNC_RETURN_IF_ERROR(ReadTree(env, dir, "", &files, &bytes));
  std::sort(files.begin(), files.end(),
            [](const BundleFile& a, const BundleFile& b) { return a.path < b.path; });
  Status st = CheckFileList(files);
  if (!st.ok()) return Status::InvalidArgument(dir + ": " + st.message());
  return files;
}

Result<std::string> SignBundle(uint64_t version, std::vector<BundleFile> files,
                               const std::string& private_key_pem) {
  if (version == 0) return Status::InvalidArgument("bundle version 0; versions start at 1");
  if (version > kMaxBundleVersion) {
    return Status::InvalidArgument("bundle version " + std::to_string(version) + " is above " +
                                   std::to_string(kMaxBundleVersion) + ", the largest a bundle may have");
  }
  std::sort(files.begin(), files.end(),
            [](const BundleFile& a, const BundleFile& b) { return a.path < b.path; });
  EDGESYNC_RETURN_IF_ERROR(CheckFileList(files));
  Result<Pkey> pkey = ParseEd25519Pem(private_key_pem, true, "the signing key");
  if (!pkey.ok()) return pkey.status();
  Result<RawKey> raw = RawPublicKey(pkey->get(), "the signing key");
  if (!raw.ok()) return raw.status();

  uint64_t size = kHeaderBytes + kTrailerBytes;
  for (const BundleFile& f : files) size += 2 + f.path.size() + 4 + f.content.size();
  if (size > kMaxBundleBytes) {
    return Status::InvalidArgument("the bundle would be " + std::to_string(size) + " bytes; at most " +
                                   std::to_string(kMaxBundleBytes) + " (8 MiB)");
  }
  std::string out;
  out.reserve(size);
  out.append(kBundleMagic);
  PutU8(&out, kBundleFormatVersion);
  PutU64(&out, version);
  PutU32(&out, static_cast<uint32_t>(files.size()));
  for (const BundleFile& f : files) {
    PutU16(&out, static_cast<uint16_t>(f.path.size()));
    out.append(f.path);
    PutU32(&out, static_cast<uint32_t>(f.content.size()));
    out.append(f.content);
  }
  const KeyId id = IdOf(*raw);
  out.append(reinterpret_cast<const char*>(id.data()), id.size());

  EDGESYNC_RETURN_IF_ERROR(ossl::Ed25519Sign(pkey->get(), out, &out));
  return out;
}

Result<Bundle> VerifyBundle(std::string_view bytes, const TrustedKeys& keys) {
  // 1. Size bounds, magic and format version: is this a bundle we can read?
  if (bytes.size() > kMaxBundleBytes) {
    return Status::InvalidArgument("too large for a configuration bundle: " + std::to_string(bytes.size()) +
                                   " bytes, at most " + std::to_string(kMaxBundleBytes));
  }
  const size_t magic_len = std::min(bytes.size(), kBundleMagic.size());
  if (bytes.substr(0, magic_len) != kBundleMagic.substr(0, magic_len)) {
    return Status::InvalidArgument("not a configuration bundle (it does not start with \"ESBUNDLE\")");
  }
  if (bytes.size() <= kBundleMagic.size()) {
    return Status::InvalidArgument("truncated configuration bundle: " + std::to_string(bytes.size()) +
                                   " bytes");
  }
  const uint8_t format = static_cast<uint8_t>(bytes[kBundleMagic.size()]);
  if (format != kBundleFormatVersion) {
    return Status::InvalidArgument("configuration bundle format version " + std::to_string(format) +
                                   "; this edgesync reads version " + std::to_string(kBundleFormatVersion) +
                                   " (a newer edgesync made it: upgrade the agent first)");
  }
  if (bytes.size() < kHeaderBytes + kTrailerBytes) {
    return Status::InvalidArgument("truncated configuration bundle: " + std::to_string(bytes.size()) +
                                   " bytes");
  }

  // 2. The key by its id, then the signature over everything before it.
  const size_t key_at = bytes.size() - kTrailerBytes;
  const std::string_view signed_part = bytes.substr(0, key_at + kBundleKeyIdBytes);
  const std::string_view sig = bytes.substr(key_at + kBundleKeyIdBytes);
  KeyId id{};
  std::copy_n(bytes.data() + key_at, id.size(), reinterpret_cast<char*>(id.data()));
  auto key =
      std::find_if(keys.keys_.begin(), keys.keys_.end(), [&](const TrustedKeys::Key& k) { return k.id == id; });
  if (key == keys.keys_.end()) {
    return Status::InvalidArgument("signed by key " + Hex(id) +
                                   ", which is not one of the fleet's public keys (" + keys.Ids() + ")");
  }
  Result<Pkey> pub = ossl::Ed25519FromRawPublic(key->raw);
  if (!pub.ok()) return Status::InvalidArgument("Ed25519 key " + Hex(id) + ": " + pub.status().message());
  if (!ossl::Ed25519Verify(pub->get(), signed_part, sig)) {
    return Status::InvalidArgument(
        "bad signature: the bundle was altered after signing, or not signed by key " + Hex(id));
  }

  // 3. Only now the file list, which must end exactly at the key id.
  ByteReader r(bytes.substr(0, key_at));
  r.Bytes(kBundleMagic.size() + 1);
  Bundle b;
  b.version = r.U64();
  const uint32_t count = r.U32();
  if (b.version == 0) return Status::InvalidArgument("configuration bundle version 0; versions start at 1");
  if (b.version > kMaxBundleVersion) {
    return Status::InvalidArgument("configuration bundle version " + std::to_string(b.version) + " is above " +
                                   std::to_string(kMaxBundleVersion) + ", the largest a bundle may have");
  }
  if (count > kMaxBundleFiles) {
    return Status::InvalidArgument("configuration bundle of " + std::to_string(count) + " files; at most " +
                                   std::to_string(kMaxBundleFiles));
  }
  for (uint32_t i = 0; i < count && !r.failed(); ++i) {
    BundleFile f;
    f.path = std::string(r.Bytes(r.U16()));
    f.content = std::string(r.Bytes(r.U32()));
    b.files.push_back(std::move(f));
  }
  if (r.failed()) return Status::InvalidArgument("configuration bundle: the file list runs past its end");
  if (r.remaining() != 0) {
    return Status::InvalidArgument("configuration bundle: " + std::to_string(r.remaining()) +
                                   " bytes between the file list and the key id");
  }
  Status st = CheckFileList(b.files);
  if (!st.ok()) return Status::InvalidArgument("configuration bundle: " + st.message());
  b.key_id = Hex(id);
  b.digest = Sha256Hex(bytes);
  return b;
}

Status ExtractBundle(Env* env, const Bundle& b, const std::string& dir) {
  Status st = CheckFileList(b.files);
  if (!st.ok()) return Status::InvalidArgument("configuration bundle: " + st.message());
  if (env->TypeOf(dir).ok()) {
    return Status::InvalidArgument(dir + " exists; a bundle is written out into a new directory");
  }
  const std::string tmp = dir + ".tmp";
  EDGESYNC_RETURN_IF_ERROR(RemoveTree(env, tmp));  // left by a crash during an earlier extraction
  // tmp and every directory a file lies in; a set sorts a parent before its children.
  std::set<std::string> dirs = {tmp};
  for (const BundleFile& f : b.files) {
    for (size_t slash = f.path.find('/'); slash != std::string::npos; slash = f.path.find('/', slash + 1)) {
      dirs.insert(tmp + "/" + f.path.substr(0, slash));
    }
  }
  for (const std::string& d : dirs) EDGESYNC_RETURN_IF_ERROR(env->CreateDirs(d));  // mode 0700
  for (const BundleFile& f : b.files) {
    Result<std::unique_ptr<AppendFile>> out = env->OpenAppend(tmp + "/" + f.path);  // mode 0600
    if (!out.ok()) return out.status();
    EDGESYNC_RETURN_IF_ERROR((*out)->Append(f.content));
    EDGESYNC_RETURN_IF_ERROR((*out)->Sync());
    EDGESYNC_RETURN_IF_ERROR((*out)->Close());
  }
  // The directories' entries must be durable before the rename publishes them.
  for (const std::string& d : dirs) EDGESYNC_RETURN_IF_ERROR(env->SyncDir(d));
  EDGESYNC_RETURN_IF_ERROR(env->Rename(tmp, dir));
  return env->SyncDir(DirName(dir));
}

Result<std::pair<std::string, std::string>> GenerateSigningKey() {
  Result<Pkey> pkey = ossl::Ed25519Generate();
  if (!pkey.ok()) return pkey.status();
  std::string private_pem = Pem(pkey->get(), true), public_pem = Pem(pkey->get(), false);
  if (private_pem.empty() || public_pem.empty()) return Status::Unavailable(ossl::Error("PEM encoding"));
  return std::make_pair(std::move(private_pem), std::move(public_pem));
}

Result<std::string> SigningKeyId(std::string_view pem) {
  const bool private_part = pem.find("PRIVATE KEY") != std::string_view::npos;
  Result<Pkey> pkey = ParseEd25519Pem(pem, private_part, "");
  if (!pkey.ok()) return pkey.status();
  Result<RawKey> raw = RawPublicKey(pkey->get(), "");
  if (!raw.ok()) return raw.status();
  return Hex(IdOf(*raw));
}

}  // namespace edgesync::fleet
