// A throwaway test PKI for tests of MQTT over TLS: a CA, server and client
// certificates signed by it, and the bad cases (an unrelated CA, an expired
// server certificate, a server certificate for another host). Made with the
// `openssl` command line; never for production use.
#pragma once

#include <string>

#include "base/status.h"

namespace edgesync::harness {

// Absolute paths of PEM files in `dir`. Keys are EC P-256, signatures
// ECDSA-SHA256; private keys are unencrypted, mode 0600. Certificates other
// than the expired one are valid from the moment of creation for 30 days.
struct TestPki {
  std::string dir;
  // The CA the broker and the agent trust (CN=edgesync test CA, CA:TRUE).
  std::string ca_cert, ca_key;
  // CN=localhost, subjectAltName DNS:localhost, IP:127.0.0.1, serverAuth,
  // signed by the CA: verifies for -h 127.0.0.1 and -h localhost.
  std::string server_cert, server_key;
  // CN=edgesync-test-client, clientAuth, signed by the CA.
  std::string client_cert, client_key;
  // A self-signed CA unrelated to ca_cert (CN=edgesync unrelated test CA):
  // trusting only it, a client refuses server_cert ("unknown CA").
  std::string other_ca_cert;
  // Like server_cert (same names), signed by the CA, but its notAfter lies
  // one day before its notBefore (the time of creation): it is expired from
  // the start and `openssl verify` reports "certificate has expired".
  std::string expired_server_cert, expired_server_key;
  // Signed by the CA, serverAuth, CN and the only subjectAltName
  // DNS:not-this-host.example: chain-valid, but matches neither 127.0.0.1
  // nor localhost.
  std::string wrong_host_server_cert, wrong_host_server_key;
};

// Creates all of the above under `dir` (created if missing, mode 0700 for a
// new one); files already there are overwritten. Takes a second or less.
// The openssl program is found via PATH. Also leaves pki.cnf (the X.509v3
// extension sections used), the CSRs and the unrelated CA's key
// (other-ca.key, to present a client certificate from an unknown CA) in `dir`.
// NotFound when openssl is not installed; IOError when a file cannot be
// written or an openssl command fails (its stderr is in the message).
Result<TestPki> MakeTestPki(const std::string& dir);

}  // namespace edgesync::harness
