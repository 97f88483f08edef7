#include "fleet/bundle_cli.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/env.h"
#include "fleet/bundle.h"

namespace edgesync::fleet {
namespace {

// Input the operator must change (a bad key, directory, bundle or option)
// exits 2; what the OS refused exits 1.
int ExitCode(const Status& st) {
  const Status::Code c = st.code();
  return c == Status::Code::kInvalidArgument || c == Status::Code::kNotFound ? 2 : 1;
}

int Fail(const char* command, const Status& st) {
  std::fprintf(stderr, "edgesync bundle %s: %s\n", command, st.message().c_str());
  return ExitCode(st);
}

// Creates `path` with `mode` (less the umask) and writes `data`, fsynced;
// refuses to replace a file (O_EXCL). Removes what it created on failure.
Status WriteNewFile(const std::string& path, const std::string& data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Status::FromErrno("create " + path, errno);
  size_t done = 0;
  int err = 0;
  while (done < data.size() && err == 0) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno != EINTR) err = errno;
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(path.c_str());
    return Status::FromErrno("write " + path, err);
  }
  return Status::OK();
}

// Writes `data` to `path` whole or not at all: into path + ".tmp", fsynced,
// renamed over `path`, the directory fsynced.
Status ReplaceFile(Env* env, const std::string& path, const std::string& data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  EDGESYNC_RETURN_IF_ERROR(env->RemoveFile(tmp));  // left by an interrupted run
  EDGESYNC_RETURN_IF_ERROR(WriteNewFile(tmp, data, mode));
  EDGESYNC_RETURN_IF_ERROR(env->Rename(tmp, path));
  return env->SyncDir(DirName(path));
}

}  // namespace

int BundleKeygenCommand(const std::string& out_dir) {
  Env* env = Env::Default();
  const std::string priv_path = out_dir + "/fleet.key", pub_path = out_dir + "/fleet.pub";
  for (const std::string& p : {priv_path, pub_path}) {
    if (env->Exists(p)) {
      std::fprintf(stderr, "edgesync bundle keygen: %s exists; not replacing a key (move it away first)\n",
                   p.c_str());
      return 2;
    }
  }
  Status st = env->CreateDirs(out_dir);
  if (!st.ok()) return Fail("keygen", st);
  Result<std::pair<std::string, std::string>> pair = GenerateSigningKey();
  if (!pair.ok()) return Fail("keygen", pair.status());
  Result<std::string> id = SigningKeyId(pair->second);
  if (!id.ok()) return Fail("keygen", id.status());
  st = WriteNewFile(priv_path, pair->first, 0600);
  OPENSSL_cleanse(pair->first.data(), pair->first.size());
  if (st.ok()) st = WriteNewFile(pub_path, pair->second, 0644);
  if (!st.ok()) return Fail("keygen", st);
  std::printf(
      "key id %s\n"
      "  private key: %s (mode 0600: for `edgesync bundle sign --key`, on the fleet's signing host only,"
      " never on a device)\n"
      "  public key:  %s (for the devices' fleet.public_keys and `edgesync bundle verify --key`)\n",
      id->c_str(), priv_path.c_str(), pub_path.c_str());
  return 0;
}

int BundleSignCommand(const BundleSignOptions& o, const ContentCheck& check) {
  Env* env = Env::Default();
  if (o.version == 0 || o.version > kMaxBundleVersion) {
    std::fprintf(stderr,
                 "edgesync bundle sign: --version must be 1 to %llu, above the version the devices run and at most "
                 "%llu above the newest they tried\n",
                 static_cast<unsigned long long>(kMaxBundleVersion),
                 static_cast<unsigned long long>(kMaxBundleVersionStep));
    return 2;
  }
  if (!o.force && env->Exists(o.out)) {
    std::fprintf(stderr,
                 "edgesync bundle sign: %s exists; not replacing it (choose another --out, or --force)\n",
                 o.out.c_str());
    return 2;
  }
  Result<std::string> key = env->ReadFile(o.key, kMaxKeyFileBytes);
  if (!key.ok()) {
    return Fail("sign", Status::NotFound("cannot read the signing key: " + key.status().message() +
                                         " (--key is fleet.key from `edgesync bundle keygen`)"));
  }
  if (key->find("PRIVATE KEY") == std::string::npos) {
    return Fail("sign", Status::InvalidArgument(o.key + ": not a private key (--key is fleet.key from "
                                                        "`edgesync bundle keygen`, not fleet.pub)"));
  }
  Result<std::string> id = SigningKeyId(*key);
  Result<std::vector<BundleFile>> files = ReadBundleDir(env, o.in);
  Result<std::string> bytes = Status::Aborted("not signed");
  if (id.ok() && files.ok()) bytes = SignBundle(o.version, *files, *key);
  OPENSSL_cleanse(key->data(), key->size());
  if (!id.ok()) return Fail("sign", Status::InvalidArgument(o.key + ": " + id.status().message()));
  if (!files.ok()) return Fail("sign", files.status());
  if (!bytes.ok()) return Fail("sign", bytes.status());
  if (Status st = check ? check(*files) : Status::OK(); !st.ok()) {
    return Fail("sign", Status::InvalidArgument(o.in + ": every device would refuse this configuration: " +
                                                st.message()));
  }
  Status st = ReplaceFile(env, o.out, *bytes, 0644);
  if (!st.ok()) return Fail("sign", st);
  std::printf("bundle %s: version %llu, %zu files, %zu bytes, signed by key %s\n", o.out.c_str(),
              static_cast<unsigned long long>(o.version), files->size(), bytes->size(), id->c_str());
  return 0;
}

int BundleVerifyCommand(const std::vector<std::string>& public_keys, const std::string& file,
                        const ContentCheck& check) {
  Env* env = Env::Default();
  Result<TrustedKeys> keys = TrustedKeys::Load(env, public_keys);
  if (!keys.ok()) return Fail("verify", keys.status());
  // Refused before it is read into memory when it cannot be a bundle.
  Result<uint64_t> size = env->FileSize(file);
  if (size.ok() && *size > kMaxBundleBytes) {
    return Fail("verify", Status::InvalidArgument(file + ": refused: too large for a configuration bundle: " +
                                                  std::to_string(*size) + " bytes"));
  }
  Result<std::string> bytes = env->ReadFile(file, kMaxBundleBytes);
  if (!bytes.ok()) return Fail("verify", bytes.status());
  Result<Bundle> b = VerifyBundle(*bytes, *keys);
  if (!b.ok()) return Fail("verify", Status::InvalidArgument(file + ": refused: " + b.status().message()));
  if (Status st = check ? check(b->files) : Status::OK(); !st.ok()) {
    return Fail("verify", Status::InvalidArgument(file + ": refused: signed, but every device would refuse its "
                                                  "configuration: " + st.message()));
  }
  std::printf("bundle %s: valid\n  version %llu\n  key     %s\n  digest  %s\n  files   %zu\n", file.c_str(),
              static_cast<unsigned long long>(b->version), b->key_id.c_str(), b->digest.c_str(),
              b->files.size());
  for (const BundleFile& f : b->files) std::printf("  %10zu  %s\n", f.content.size(), f.path.c_str());
  return 0;
}

}  // namespace edgesync::fleet
