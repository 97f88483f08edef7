// The agent's MQTT security against a real TLS broker with a test PKI made by
// the openssl command line: mutual TLS, passwords, and the errors an
// operator sees when certificates or credentials are wrong.
#include <gtest/gtest.h>
#include <mosquitto.h>

#include <atomic>

#include "harness/consumer.h"
#include "harness/pki.h"
#include "tests/integration/pipeline_fixture.h"

namespace edgesync {
namespace {

using namespace std::chrono_literals;
using testing::Pipeline;

constexpr const char* kPassword = "s3cret-Passw0rd-do-not-log";

class SecurePipeline : public Pipeline {
 protected:
  // Which server certificate the broker presents.
  enum class ServerCert { kGood, kExpired, kWrongHost };
  virtual ServerCert Cert() const { return ServerCert::kGood; }

  void ConfigureBroker(harness::BrokerOptions* o) override {
    auto pki = harness::MakeTestPki(dir_ / "pki");
    ASSERT_TRUE(pki.ok()) << pki.status().ToString();
    pki_ = *pki;
    o->tls_ca = pki_.ca_cert;
    switch (Cert()) {
      case ServerCert::kGood:
        o->tls_cert = pki_.server_cert;
        o->tls_key = pki_.server_key;
        break;
      case ServerCert::kExpired:
        o->tls_cert = pki_.expired_server_cert;
        o->tls_key = pki_.expired_server_key;
        break;
      case ServerCert::kWrongHost:
        o->tls_cert = pki_.wrong_host_server_cert;
        o->tls_key = pki_.wrong_host_server_key;
        break;
    }
    o->require_certificate = true;
    o->users = {{"agent", kPassword}};
  }

  void SetUp() override {
    Pipeline::SetUp();
    std::ofstream(dir_ / "password") << kPassword << "\n";
  }

  // The agent's [mqtt] lines for TLS with a client certificate and a password.
  std::string Security(const std::string& ca, const std::string& password_file) const {
    return "ca_file = \"" + ca + "\"\ncert_file = \"" + pki_.client_cert + "\"\nkey_file = \"" +
           pki_.client_key + "\"\nusername = \"agent\"\npassword_file = \"" + password_file + "\"\n";
  }

  // Publishes `payload` retained, QoS 1, over the broker's TLS with the
  // client certificate and password, WITHOUT checking the broker's
  // certificate (expired or for another host in some tests; mosquitto_pub
  // can skip the host check but not the expiry): the test's own way to put
  // an event into the broker the agent is refused by. True once the broker
  // acknowledged it.
  bool PublishRetainedIgnoringTheServerCertificate(const std::string& payload) {
    mosquitto_lib_init();
    struct Done {
      std::atomic<bool> published{false};
    } done;
    mosquitto* m = mosquitto_new("it-tls-publisher", true, &done);
    if (m == nullptr) return false;
    bool ok = mosquitto_username_pw_set(m, "agent", kPassword) == MOSQ_ERR_SUCCESS &&
              mosquitto_tls_set(m, pki_.ca_cert.c_str(), nullptr, pki_.client_cert.c_str(),
                                pki_.client_key.c_str(), nullptr) == MOSQ_ERR_SUCCESS &&
              mosquitto_tls_opts_set(m, /*SSL_VERIFY_NONE*/ 0, "tlsv1.2", nullptr) == MOSQ_ERR_SUCCESS &&
              mosquitto_tls_insecure_set(m, true) == MOSQ_ERR_SUCCESS;
    mosquitto_publish_callback_set(m, [](mosquitto*, void* self, int) {
      static_cast<Done*>(self)->published = true;
    });
    ok = ok && mosquitto_connect(m, "127.0.0.1", broker_->port(), 30) == MOSQ_ERR_SUCCESS &&
         mosquitto_publish(m, nullptr, "terminal/t1/payment/authorization", static_cast<int>(payload.size()),
                           payload.data(), 1, /*retain=*/true) == MOSQ_ERR_SUCCESS;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (ok && !done.published && std::chrono::steady_clock::now() < deadline) {
      ok = mosquitto_loop(m, 100, 1) == MOSQ_ERR_SUCCESS;
    }
    ok = ok && done.published;
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
    return ok;
  }

  // Publishes one event over the broker's TLS (retained, so the broker hands
  // it to any later subscriber), awaits the agent's next refused attempt
  // after it (one more failed TLS handshake in the broker's log; the agent
  // logs only every tenth attempt), and checks that nothing passed the refused link:
  // the broker never accepted the agent's connection (so never had its
  // subscription), and nothing arrived in Kafka, although Kafka is up and
  // the retained event would have reached the agent on any connection that
  // got through. The agent's own log of start `n` names the refusal.
  void ExpectNothingPassesTheRefusedLink(int n, const std::string& refusal) {
    ASSERT_TRUE(AwaitLog(n, refusal)) << AgentLog(n);
    auto failed_tls_connections = [&] {
      const std::string log = harness::ReadWholeFile(broker_->log_path());
      // mosquitto 2.0.11: "OpenSSL Error[0]: ..." then this, per failed handshake.
      const std::string failed = "Client <unknown> disconnected";
      size_t c = 0;
      for (size_t at = log.find(failed); at != std::string::npos; at = log.find(failed, at + 1)) ++c;
      return c;
    };
    ASSERT_TRUE(PublishRetainedIgnoringTheServerCertificate(harness::PaymentEvent("pub", 1)));
    const size_t before = failed_tls_connections();
    EXPECT_TRUE(harness::PollUntil([&] { return failed_tls_connections() > before; }, 60s))
        << "no attempt after the event was published\n" << harness::ReadWholeFile(broker_->log_path());
    EXPECT_TRUE(agent_->Running());
    const std::string broker_log = harness::ReadWholeFile(broker_->log_path());
    EXPECT_EQ(broker_log.find(" as edgesync-it"), std::string::npos) << broker_log;
    Result<std::vector<harness::KafkaMessage>> msgs = harness::ReadTopic(cluster_->bootstrap(), testing::kTopic, 10s);
    ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
    EXPECT_TRUE(msgs->empty()) << msgs->size() << " messages passed a refused link";
  }

  harness::TestPki pki_;
};

TEST_F(SecurePipeline, MutualTlsWithPasswordDeliversAndNeverLogsThePassword) {
  WriteConfig(Security(pki_.ca_cert, dir_ / "password"));
  StartAgent();
  EXPECT_NE(AgentLogs().find(", TLS)"), std::string::npos);
  StartUnpack();
  // The publisher is not the agent: the test's own client would need TLS
  // too, so it publishes through mosquitto_pub with the same PKI.
  harness::SpawnOptions o;
  o.argv = {"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()),
            "--cafile", pki_.ca_cert, "--cert", pki_.client_cert, "--key", pki_.client_key,
            "-u", "agent", "-P", kPassword, "-q", "1", "-t", "terminal/t1/payment/authorization",
            "-m", "{\"device\":\"pub\",\"seq\":1}"};
  auto pub = harness::Process::Spawn(o);
  ASSERT_TRUE(pub.ok());
  ASSERT_EQ(*pub->Wait(30s), 0);
  EXPECT_EQ(AwaitArrival(1).arrived, 1u) << AgentLogs();
  // What ExpectNothingPassesTheRefusedLink looks for in the broker's log
  // is there when the link is accepted.
  EXPECT_NE(harness::ReadWholeFile(broker_->log_path()).find(" as edgesync-it"), std::string::npos);
  ASSERT_TRUE(agent_->Stop(30s).ok());
  EXPECT_EQ(AgentLogs().find(kPassword), std::string::npos) << "the password reached the log";
}

TEST_F(SecurePipeline, CleanStopOverTlsMidStreamDeliversEverythingOnce) {
  WriteConfig(Security(pki_.ca_cert, dir_ / "password"));
  StartAgent();
  StartUnpack();
  // mosquitto_pub -l: one QoS 1 message per line of its stdin, over mTLS.
  harness::SpawnOptions o;
  o.argv = {"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()),
            "--cafile", pki_.ca_cert, "--cert", pki_.client_cert, "--key", pki_.client_key,
            "-u", "agent", "-P", kPassword, "-q", "1", "-t", "terminal/t1/payment/authorization", "-l"};
  o.pipe_stdin = true;
  auto pub = harness::Process::Spawn(o);
  ASSERT_TRUE(pub.ok());
  constexpr uint64_t kEvents = 6'000;
  auto lines = [](uint64_t from, uint64_t to) {
    std::string out;
    for (uint64_t i = from; i <= to; ++i) out += harness::PaymentEvent("pub", i) + "\n";
    return out;
  };
  ASSERT_TRUE(pub->WriteStdin(lines(1, kEvents / 2)).ok());
  // Stop the agent at once, while the broker is still delivering the first half.
  ASSERT_TRUE(agent_->Stop(30s).ok());
  EXPECT_EQ(agent_->exit_status(), 0);
  agent_.reset();
  ASSERT_TRUE(pub->WriteStdin(lines(kEvents / 2 + 1, kEvents)).ok());
  ASSERT_TRUE(pub->CloseStdin().ok());
  ASSERT_EQ(*pub->Wait(60s), 0);
  StartAgent();
  harness::Tally t = AwaitArrival(kEvents);
  EXPECT_EQ(t.lost, 0u) << AgentLogs();
  EXPECT_EQ(t.duplicates, 0u) << "a clean stop acknowledges exactly what it journaled";
}

TEST_F(SecurePipeline, WrongPasswordIsNamed) {
  std::ofstream(dir_ / "wrong") << "not-the-password\n";
  WriteConfig(Security(pki_.ca_cert, dir_ / "wrong"));
  int n = SpawnAgent();
  EXPECT_TRUE(AwaitLog(n, "check mqtt.username and mqtt.password_file")) << AgentLog(n);
  EXPECT_TRUE(agent_->Running()) << "a refused connection is retried, not fatal";
}

TEST_F(SecurePipeline, UnknownCaIsNamed) {
  WriteConfig(Security(pki_.other_ca_cert, dir_ / "password"));
  int n = SpawnAgent();
  EXPECT_TRUE(AwaitLog(n, "TLS handshake failed")) << AgentLog(n);
  // OpenSSL's words for it ("self-signed certificate in certificate chain"
  // or "unable to get local issuer certificate"), and where to look.
  EXPECT_NE(AgentLog(n).find("the broker's certificate: "), std::string::npos) << AgentLog(n);
  EXPECT_NE(AgentLog(n).find("check mqtt.ca_file"), std::string::npos) << AgentLog(n);
  ExpectNothingPassesTheRefusedLink(n, "TLS handshake failed");
}

class ExpiredCertPipeline : public SecurePipeline {
  ServerCert Cert() const override { return ServerCert::kExpired; }
};

TEST_F(ExpiredCertPipeline, ExpiredServerCertificateIsNamed) {
  WriteConfig(Security(pki_.ca_cert, dir_ / "password"));
  int n = SpawnAgent();
  EXPECT_TRUE(AwaitLog(n, "certificate has expired")) << AgentLog(n);
  ExpectNothingPassesTheRefusedLink(n, "certificate has expired");
}

class WrongHostPipeline : public SecurePipeline {
  ServerCert Cert() const override { return ServerCert::kWrongHost; }
};

TEST_F(WrongHostPipeline, HostnameMismatchIsNamed) {
  WriteConfig(Security(pki_.ca_cert, dir_ / "password"));
  int n = SpawnAgent();
  EXPECT_TRUE(AwaitLog(n, "TLS handshake failed")) << AgentLog(n);
  EXPECT_NE(AgentLog(n).find("does not name \"127.0.0.1\""), std::string::npos) << AgentLog(n);
  ExpectNothingPassesTheRefusedLink(n, "TLS handshake failed");
}

TEST(SecurityConfig, MissingPasswordFileIsRefusedAtCheck) {
  auto dir = testing::NewTempDir();
  std::ofstream(dir / "c.toml") << R"([agent]
device_id = "d"
[mqtt]
username = "agent"
password_file = "/nonexistent/edgesync-password"
[kafka]
brokers = "127.0.0.1:1"
[[streams]]
name = "s"
topics = ["#"]
)";
  harness::SpawnOptions o;
  o.argv = {harness::ProgramPath("edgesync"), "check", dir / "c.toml"};
  o.stderr_path = dir / "err";
  auto p = harness::Process::Spawn(o);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p->Wait(30s), 2);
  EXPECT_NE(harness::ReadWholeFile(dir / "err").find("mqtt.password_file: cannot read"), std::string::npos)
      << harness::ReadWholeFile(dir / "err");
}

}  // namespace
}  // namespace edgesync
