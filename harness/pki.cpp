// MakeTestPki: drives `openssl genpkey`, `openssl req` and `openssl x509 -req`
// as child processes (argv, no shell), one certificate at a time.
//
// The expired certificate: OpenSSL 3.0's CLI has no -not_before/-not_after
// (they came with 3.4), but `openssl x509 -req -days -1` is accepted (checked
// with Debian 12's 3.0) and sets notAfter = notBefore - 1 day, with notBefore
// = now. Verification then never sees "not yet valid" (notBefore is not in
// the future) and always sees "certificate has expired". If a later openssl
// refused a negative -days, MakeTestPki fails with IOError and openssl's
// message rather than producing a valid certificate.
#include "harness/pki.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "harness/process.h"

namespace edgesync::harness {
namespace {

namespace fs = std::filesystem;

constexpr std::chrono::seconds kToolTimeout(30);
constexpr const char* kValidDays = "30";

// X.509v3 extension sections for `req -x509 -extensions` and
// `x509 -req -extfile -extensions`; [req] and [req_dn] only satisfy `req`,
// which needs a distinguished_name section even when -subj gives the name.
constexpr const char* kConfig = R"(# Written by the edgesync test harness (harness/pki.cpp).
[req]
distinguished_name = req_dn
[req_dn]

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[wrong_host_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:not-this-host.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
)";

// Runs openssl with `args` to completion; its stderr goes to dir/openssl.err
// (overwritten per command). OK for exit status 0; else IOError with the
// command and what openssl wrote to stderr.
Status RunOpenssl(const std::string& dir, const std::vector<std::string>& args) {
  SpawnOptions so;
  so.argv.push_back("openssl");
  so.argv.insert(so.argv.end(), args.begin(), args.end());
  so.stdout_path = dir + "/openssl.out";
  so.stderr_path = dir + "/openssl.err";
  std::string command = "openssl";
  for (const std::string& a : args) command += " " + a;
  Result<int> code = RunToEnd(so, kToolTimeout);
  if (!code.ok()) {
    return Status::IOError(command + ": " + code.status().message());
  }
  if (*code == 0) return Status::OK();
  return Status::IOError(command + " exited with status " + std::to_string(*code) + ": " +
                         ReadWholeFile(so.stderr_path));
}

// Creates (or truncates) `path` with mode 0600, so that openssl, which keeps
// an existing file's mode, never writes a private key readable by others.
Status CreatePrivateFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("create " + path, errno);
  int rc = ::fchmod(fd, 0600);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno("chmod 0600 " + path, err);
  return Status::OK();
}

// An EC P-256 private key (PKCS#8 PEM) in `path`, mode 0600.
Status MakeKey(const std::string& dir, const std::string& path) {
  EDGESYNC_RETURN_IF_ERROR(CreatePrivateFile(path));
  EDGESYNC_RETURN_IF_ERROR(RunOpenssl(
      dir, {"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path}));
  std::error_code ec;
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace,
                  ec);
  if (ec) return Status::IOError("chmod 0600 " + path + ": " + ec.message());
  return Status::OK();
}

// A new key in `key` and a self-signed CA certificate for it in `cert`.
Status MakeCa(const std::string& dir, const std::string& subject, const std::string& serial,
              const std::string& cert, const std::string& key) {
  EDGESYNC_RETURN_IF_ERROR(MakeKey(dir, key));
  return RunOpenssl(dir, {"req", "-x509", "-new", "-config", dir + "/pki.cnf", "-extensions",
                          "ca_ext", "-key", key, "-subj", subject, "-days", kValidDays, "-sha256",
                          "-set_serial", serial, "-out", cert});
}

struct Leaf {
  std::string name;        // file stem: <name>.key, <name>.csr, <name>.pem
  std::string subject;     // -subj
  std::string extensions;  // section of pki.cnf
  std::string serial;
  std::string days;        // -days, "-1" for an expired certificate
};

// A new key and a certificate signed by the CA (ca.pem, ca.key in `dir`).
Status MakeLeaf(const std::string& dir, const Leaf& leaf) {
  std::string key = dir + "/" + leaf.name + ".key";
  std::string csr = dir + "/" + leaf.name + ".csr";
  EDGESYNC_RETURN_IF_ERROR(MakeKey(dir, key));
  EDGESYNC_RETURN_IF_ERROR(RunOpenssl(dir, {"req", "-new", "-config", dir + "/pki.cnf", "-key",
                                            key, "-subj", leaf.subject, "-out", csr}));
  return RunOpenssl(dir, {"x509", "-req", "-in", csr, "-CA", dir + "/ca.pem", "-CAkey",
                          dir + "/ca.key", "-set_serial", leaf.serial, "-days", leaf.days,
                          "-sha256", "-extfile", dir + "/pki.cnf", "-extensions",
                          leaf.extensions, "-out", dir + "/" + leaf.name + ".pem"});
}

}  // namespace

Result<TestPki> MakeTestPki(const std::string& dir_arg) {
  if (dir_arg.empty()) return Status::InvalidArgument("MakeTestPki: empty directory");
  Result<std::string> openssl = FindProgram("openssl");
  if (!openssl.ok()) {
    return Status::NotFound("openssl not installed: " + openssl.status().message());
  }

  std::error_code ec;
  if (fs::create_directories(dir_arg, ec)) {
    fs::permissions(dir_arg, fs::perms::owner_all, fs::perm_options::replace, ec);
  }
  if (ec) return Status::IOError("create " + dir_arg + ": " + ec.message());
  std::string dir = fs::absolute(dir_arg, ec).lexically_normal().string();
  if (ec) return Status::IOError("absolute path of " + dir_arg + ": " + ec.message());
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();

  {
    std::string conf_path = dir + "/pki.cnf";
    std::ofstream conf(conf_path, std::ios::trunc);
    conf << kConfig;
    conf.flush();
    if (!conf) return Status::IOError("cannot write " + conf_path);
  }

  TestPki pki;
  pki.dir = dir;
  pki.ca_cert = dir + "/ca.pem";
  pki.ca_key = dir + "/ca.key";
  pki.server_cert = dir + "/server.pem";
  pki.server_key = dir + "/server.key";
  pki.client_cert = dir + "/client.pem";
  pki.client_key = dir + "/client.key";
  pki.other_ca_cert = dir + "/other-ca.pem";
  pki.expired_server_cert = dir + "/expired-server.pem";
  pki.expired_server_key = dir + "/expired-server.key";
  pki.wrong_host_server_cert = dir + "/wrong-host-server.pem";
  pki.wrong_host_server_key = dir + "/wrong-host-server.key";

  EDGESYNC_RETURN_IF_ERROR(MakeCa(dir, "/CN=edgesync test CA", "1", pki.ca_cert, pki.ca_key));
  EDGESYNC_RETURN_IF_ERROR(MakeCa(dir, "/CN=edgesync unrelated test CA", "1", pki.other_ca_cert,
                                  dir + "/other-ca.key"));
  const Leaf leaves[] = {
      {"server", "/CN=localhost", "server_ext", "2", kValidDays},
      {"client", "/CN=edgesync-test-client", "client_ext", "3", kValidDays},
      {"expired-server", "/CN=localhost", "server_ext", "4", "-1"},
      {"wrong-host-server", "/CN=not-this-host.example", "wrong_host_ext", "5", kValidDays},
  };
  for (const Leaf& leaf : leaves) EDGESYNC_RETURN_IF_ERROR(MakeLeaf(dir, leaf));
  return pki;
}

}  // namespace edgesync::harness
