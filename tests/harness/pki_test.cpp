// MakeTestPki checked with `openssl verify`, and MosquittoBroker's TLS, mTLS
// and password options checked with mosquitto_pub against a real broker.
// Every mosquitto_pub publishes at QoS 1, so exit status 0 means the broker
// accepted the connection and acknowledged the message. mosquitto_pub runs
// with -d: only then does it print libmosquitto's "OpenSSL Error[0]: ..."
// lines; without it a TLS failure reads "A TLS error occurred." alone.
#include "harness/pki.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "harness/mosquitto.h"
#include "harness/process.h"

namespace edgesync::harness {
namespace {

using std::chrono::seconds;

struct Outcome {
  int code = -1;
  std::string output;  // stdout, then stderr
};

class PkiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(FindProgram("openssl").ok()) << "install openssl";
    ASSERT_TRUE(FindProgram("mosquitto_pub").ok()) << "install mosquitto-clients";
    Result<TempDir> d = TempDir::Create("harness-pki");
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    dir_.emplace(std::move(d.value()));
    Result<TestPki> pki = MakeTestPki(dir_->File("pki"));
    ASSERT_TRUE(pki.ok()) << pki.status().ToString();
    pki_ = std::move(pki.value());
  }
  void TearDown() override {
    if (broker_) {
      EXPECT_TRUE(broker_->Stop().ok());
    }
    if (HasFailure() && dir_) {
      dir_->Keep();
      std::fprintf(stderr, "kept %s for inspection\n", dir_->path().c_str());
    }
  }

  // Runs `argv` to completion (10 s at most) and collects its output.
  Outcome Run(const std::vector<std::string>& argv) {
    SpawnOptions so;
    so.argv = argv;
    so.stdout_path = dir_->File("run.out");
    so.stderr_path = dir_->File("run.err");
    Outcome out;
    Result<Process> p = Process::Spawn(so);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return out;
    Result<int> code = p->Wait(seconds(10));
    EXPECT_TRUE(code.ok()) << argv[0] << ": " << code.status().ToString();
    if (!code.ok()) return out;
    out.code = *code;
    out.output = ReadWholeFile(so.stdout_path) + ReadWholeFile(so.stderr_path);
    return out;
  }

  Outcome Verify(std::vector<std::string> args) {
    args.insert(args.begin(), {"openssl", "verify"});
    return Run(args);
  }

  void StartBroker(BrokerOptions opts) {
    Result<std::unique_ptr<MosquittoBroker>> b = MosquittoBroker::Start(dir_->File("broker"), opts);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    broker_ = std::move(b.value());
  }

  BrokerOptions TlsOptions(const std::string& cert, const std::string& key) const {
    BrokerOptions o;
    o.persistence = false;
    o.tls_ca = pki_.ca_cert;
    o.tls_cert = cert;
    o.tls_key = key;
    return o;
  }

  // mosquitto_pub of one QoS 1 message to the broker, plus `extra` options.
  Outcome Publish(const std::vector<std::string>& extra, const std::string& host = "127.0.0.1") {
    std::vector<std::string> argv = {"mosquitto_pub", "-d", "-h", host, "-p",
                                     std::to_string(broker_->port()), "-q", "1",
                                     "-t", "t", "-m", "x"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return Run(argv);
  }

  // Waits (5 s at most) until the broker's log contains `text`.
  ::testing::AssertionResult BrokerLogs(const std::string& text) const {
    auto deadline = std::chrono::steady_clock::now() + seconds(5);
    std::string log;
    while (std::chrono::steady_clock::now() < deadline) {
      log = ReadWholeFile(broker_->log_path());
      if (log.find(text) != std::string::npos) return ::testing::AssertionSuccess();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return ::testing::AssertionFailure() << "no \"" << text << "\" in the broker log:\n" << log;
  }

  std::optional<TempDir> dir_;
  TestPki pki_;
  std::unique_ptr<MosquittoBroker> broker_;
};

TEST_F(PkiTest, MakesFilesThatOpensslVerifiesAsIntended) {
  for (const std::string* f :
       {&pki_.ca_cert, &pki_.ca_key, &pki_.server_cert, &pki_.server_key, &pki_.client_cert,
        &pki_.client_key, &pki_.other_ca_cert, &pki_.expired_server_cert,
        &pki_.expired_server_key, &pki_.wrong_host_server_cert, &pki_.wrong_host_server_key}) {
    EXPECT_EQ(f->rfind(pki_.dir + "/", 0), 0u) << *f;
    EXPECT_GT(std::filesystem::file_size(*f), 0u) << *f;
  }
  for (const std::string* key : {&pki_.ca_key, &pki_.server_key, &pki_.client_key,
                                 &pki_.expired_server_key, &pki_.wrong_host_server_key}) {
    struct stat st {};
    ASSERT_EQ(::stat(key->c_str(), &st), 0) << *key;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << *key;
  }

  Outcome o = Verify({"-CAfile", pki_.ca_cert, "-purpose", "sslserver", "-verify_ip", "127.0.0.1",
                      pki_.server_cert});
  EXPECT_EQ(o.code, 0) << o.output;
  o = Verify({"-CAfile", pki_.ca_cert, "-verify_hostname", "localhost", pki_.server_cert});
  EXPECT_EQ(o.code, 0) << o.output;
  o = Verify({"-CAfile", pki_.ca_cert, "-purpose", "sslclient", pki_.client_cert});
  EXPECT_EQ(o.code, 0) << o.output;

  o = Verify({"-CAfile", pki_.other_ca_cert, pki_.server_cert});
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("unable to get local issuer certificate"), std::string::npos)
      << o.output;

  o = Verify({"-CAfile", pki_.ca_cert, pki_.expired_server_cert});
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("expired"), std::string::npos) << o.output;

  // The wrong-host certificate is fine as a chain, only not for this host.
  o = Verify({"-CAfile", pki_.ca_cert, "-purpose", "sslserver", pki_.wrong_host_server_cert});
  EXPECT_EQ(o.code, 0) << o.output;
  o = Verify({"-CAfile", pki_.ca_cert, "-verify_ip", "127.0.0.1", pki_.wrong_host_server_cert});
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("IP address mismatch"), std::string::npos) << o.output;
  o = Verify({"-CAfile", pki_.ca_cert, "-verify_hostname", "localhost",
              pki_.wrong_host_server_cert});
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("hostname mismatch"), std::string::npos) << o.output;
}

TEST_F(PkiTest, RunningAgainKeepsADirectoryUsable) {
  Result<TestPki> again = MakeTestPki(pki_.dir);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  Outcome o = Verify({"-CAfile", again->ca_cert, again->server_cert});
  EXPECT_EQ(o.code, 0) << o.output;
}

TEST_F(PkiTest, TlsBrokerAcceptsClientsThatTrustItsCa) {
  StartBroker(TlsOptions(pki_.server_cert, pki_.server_key));
  Outcome o = Publish({"--cafile", pki_.ca_cert});
  EXPECT_EQ(o.code, 0) << o.output;
  o = Publish({"--cafile", pki_.ca_cert}, "localhost");
  EXPECT_EQ(o.code, 0) << o.output;

  o = Publish({"--cafile", pki_.other_ca_cert});
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("certificate verify failed"), std::string::npos) << o.output;
  EXPECT_TRUE(BrokerLogs("tlsv1 alert unknown ca"));
  // Plain MQTT to a TLS listener gets no CONNACK.
  o = Publish({});
  EXPECT_NE(o.code, 0) << o.output;
}

TEST_F(PkiTest, TlsBrokerNeedsNoCaFileWithoutClientCertificates) {
  BrokerOptions opts = TlsOptions(pki_.server_cert, pki_.server_key);
  opts.tls_ca.clear();
  StartBroker(opts);
  Outcome o = Publish({"--cafile", pki_.ca_cert});
  EXPECT_EQ(o.code, 0) << o.output;
}

TEST_F(PkiTest, ClientsRefuseExpiredAndWrongHostCertificates) {
  StartBroker(TlsOptions(pki_.expired_server_cert, pki_.expired_server_key));
  Outcome o = Publish({"--cafile", pki_.ca_cert});
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("certificate verify failed"), std::string::npos) << o.output;
  EXPECT_TRUE(BrokerLogs("sslv3 alert certificate expired"));
  ASSERT_TRUE(broker_->Stop().ok());
  broker_.reset();

  StartBroker(TlsOptions(pki_.wrong_host_server_cert, pki_.wrong_host_server_key));
  o = Publish({"--cafile", pki_.ca_cert});
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("host name verification failed"), std::string::npos) << o.output;
  EXPECT_TRUE(BrokerLogs("tlsv1 alert internal error"));
  // Only the name is wrong: without the host check the same client gets in.
  o = Publish({"--cafile", pki_.ca_cert, "--insecure"});
  EXPECT_EQ(o.code, 0) << o.output;
}

TEST_F(PkiTest, MutualTlsBrokerWantsAClientCertificateFromItsCa) {
  BrokerOptions opts = TlsOptions(pki_.server_cert, pki_.server_key);
  opts.require_certificate = true;
  StartBroker(opts);
  // With TLS 1.3 the client finishes its side of the handshake before the
  // broker checks the certificate: the refusal reaches it as a lost
  // connection or protocol error, not as a TLS error.
  Outcome o = Publish({"--cafile", pki_.ca_cert});
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_TRUE(BrokerLogs("peer did not return a certificate"));
  // A certificate the broker's CA did not sign: the unrelated CA's own.
  o = Publish({"--cafile", pki_.ca_cert, "--cert", pki_.other_ca_cert, "--key",
               pki_.dir + "/other-ca.key"});
  EXPECT_NE(o.code, 0) << o.output;
  // The client sees either the alert ("tlsv1 alert unknown ca") or, when
  // the broker closes first, a protocol error: the broker's log is the
  // reliable witness.
  EXPECT_TRUE(BrokerLogs("certificate verify failed"));
  o = Publish({"--cafile", pki_.ca_cert, "--cert", pki_.client_cert, "--key", pki_.client_key});
  EXPECT_EQ(o.code, 0) << o.output;
}

TEST_F(PkiTest, PasswordBrokerRefusesWrongPasswordsAndAnonymousClients) {
  BrokerOptions opts;
  opts.persistence = false;
  opts.users = {{"alice", "right horse battery"}, {"bob", "b0b"}};
  StartBroker(opts);
  struct stat st {};
  ASSERT_EQ(::stat((broker_->work_dir() + "/passwd").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  Outcome o = Publish({"-u", "alice", "-P", "wrong"});
  EXPECT_NE(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("not authori"), std::string::npos) << o.output;
  o = Publish({});
  EXPECT_NE(o.code, 0) << o.output;
  o = Publish({"-u", "mallory", "-P", "b0b"});
  EXPECT_NE(o.code, 0) << o.output;
  o = Publish({"-u", "alice", "-P", "right horse battery"});
  EXPECT_EQ(o.code, 0) << o.output;
  o = Publish({"-u", "bob", "-P", "b0b"});
  EXPECT_EQ(o.code, 0) << o.output;

  // Restart keeps the password file and the configuration.
  ASSERT_TRUE(broker_->Restart().ok());
  o = Publish({"-u", "alice", "-P", "wrong"});
  EXPECT_NE(o.code, 0) << o.output;
  o = Publish({"-u", "bob", "-P", "b0b"});
  EXPECT_EQ(o.code, 0) << o.output;
}

TEST_F(PkiTest, TlsWithPasswordsNeedsBoth) {
  BrokerOptions opts = TlsOptions(pki_.server_cert, pki_.server_key);
  opts.users = {{"edge", "pw"}};
  StartBroker(opts);
  Outcome o = Publish({"--cafile", pki_.ca_cert, "-u", "edge", "-P", "bad"});
  EXPECT_NE(o.code, 0) << o.output;
  o = Publish({"--cafile", pki_.ca_cert, "-u", "edge", "-P", "pw"});
  EXPECT_EQ(o.code, 0) << o.output;
}

TEST_F(PkiTest, InconsistentOptionsAreInvalidArguments) {
  BrokerOptions no_key;
  no_key.tls_cert = pki_.server_cert;
  EXPECT_EQ(MosquittoBroker::Start(dir_->File("b1"), no_key).status().code(),
            Status::Code::kInvalidArgument);
  BrokerOptions mtls_without_tls;
  mtls_without_tls.require_certificate = true;
  EXPECT_EQ(MosquittoBroker::Start(dir_->File("b2"), mtls_without_tls).status().code(),
            Status::Code::kInvalidArgument);
  BrokerOptions mtls_without_ca;
  mtls_without_ca.tls_cert = pki_.server_cert;
  mtls_without_ca.tls_key = pki_.server_key;
  mtls_without_ca.require_certificate = true;
  EXPECT_EQ(MosquittoBroker::Start(dir_->File("b4"), mtls_without_ca).status().code(),
            Status::Code::kInvalidArgument);
  BrokerOptions colon;
  colon.users = {{"a:b", "pw"}};
  EXPECT_EQ(MosquittoBroker::Start(dir_->File("b3"), colon).status().code(),
            Status::Code::kInvalidArgument);
}

TEST_F(PkiTest, UnusableKeyMakesStartFail) {
  // The client key does not belong to the server certificate.
  Result<std::unique_ptr<MosquittoBroker>> b = MosquittoBroker::Start(
      dir_->File("mismatch"), TlsOptions(pki_.server_cert, pki_.client_key));
  EXPECT_EQ(b.status().code(), Status::Code::kUnavailable) << b.status().ToString();
}

}  // namespace
}  // namespace edgesync::harness
