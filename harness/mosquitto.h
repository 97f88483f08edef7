// A real mosquitto broker (the Debian package's binary) on a loopback port,
// for integration tests and the demo: started, stopped, killed and restarted
// with its persistence kept in a working directory.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "harness/process.h"

namespace edgesync::harness {

// For the limits: 0 keeps mosquitto's default (max_queued_messages 1000,
// max_inflight_messages 20); -1 writes 0, which mosquitto reads as unlimited
// (what the agent's own broker drop-in in systemd/ uses).
struct BrokerOptions {
  int port = 0;  // 0: a free loopback port
  bool persistence = true;
  int max_queued_messages = 0;
  int max_inflight_messages = 0;
  // The largest packet a client may send (mosquitto's max_packet_size); a
  // larger one disconnects it. 0: no limit.
  int64_t max_packet_size = 0;
  // Seconds between saves of the persistence db; 0 keeps mosquitto's default
  // (1800 s). The db is always written on Stop(), never on Kill().
  int autosave_interval = 0;

  // TLS: when tls_cert is non-empty the listener speaks MQTT over TLS only
  // (no plain TCP listener), TLS 1.2 minimum, with tls_cert/tls_key as its
  // certificate and private key (PEM files). tls_ca, when set, is the
  // listener's cafile, the CA client certificates are checked against
  // (mosquitto 2.0.11 needs none for a TLS listener without
  // require_certificate). Relative paths are taken against the current
  // directory at Start. Unreadable or mismatched files make mosquitto exit
  // at once: Start fails with Unavailable.
  std::string tls_ca, tls_cert, tls_key;
  // mTLS (with tls_cert only): clients must present a certificate signed by
  // tls_ca or the broker ends the TLS session. Under TLS 1.3 a client
  // without a certificate may see that only as a lost connection after its
  // own handshake succeeded, not as a TLS error.
  // tls_key, tls_ca or require_certificate without tls_cert, tls_cert
  // without tls_key, or require_certificate without tls_ca: InvalidArgument
  // from Start.
  bool require_certificate = false;

  // Username/password authentication when non-empty (user -> password):
  // written with mosquitto_passwd -b into work_dir/passwd (mode 0600) once
  // by Start; anonymous clients and wrong passwords are refused (CONNACK
  // "not authorised"). Empty: anonymous access, as before. Usernames must
  // not contain ':' (InvalidArgument from Start).
  std::vector<std::pair<std::string, std::string>> users;
  // Lines appended to mosquitto.conf as they are (e.g. a `plugin` and its
  // `plugin_opt_*` lines).
  std::vector<std::string> extra_config;
};

// Not thread-safe. Facts relied on (mosquitto 2.0.11): with persistence on,
// SIGTERM makes mosquitto write work_dir/mosquitto.db before it exits, and a
// restart reloads persistent sessions (clean_session=false) with their
// subscriptions and queued QoS 1/2 messages; after SIGKILL only what the last
// autosave wrote comes back.
class MosquittoBroker {
 public:
  // Writes work_dir/mosquitto.conf (listener on 127.0.0.1, TLS and
  // authentication as `opts` asks, else plain TCP and anonymous access,
  // persistence in work_dir/, logging to work_dir/mosquitto.log), starts the
  // broker and waits until it accepts TCP connections and has logged that it
  // runs. The probe is a bare TCP connect also for a TLS listener, which
  // logs one "Client connection from 127.0.0.1 failed: ... unexpected eof
  // while reading." line per probe. With port 0 it picks a free port and
  // retries with another one if mosquitto cannot bind it.
  // The broker binary is found via PATH, then in /usr/sbin.
  static Result<std::unique_ptr<MosquittoBroker>> Start(const std::string& work_dir,
                                                        const BrokerOptions& opts = {});
  ~MosquittoBroker();  // stops the broker if it runs

  MosquittoBroker(const MosquittoBroker&) = delete;
  MosquittoBroker& operator=(const MosquittoBroker&) = delete;

  int port() const { return port_; }
  // The broker's process id (for its CPU and memory); -1 when not running.
  int pid() const { return process_ ? static_cast<int>(process_->pid()) : -1; }
  const std::string& work_dir() const { return work_dir_; }
  std::string log_path() const { return work_dir_ + "/mosquitto.log"; }
  bool Running() { return process_.has_value() && process_->Running(); }

  // SIGTERM and wait for the exit (mosquitto saves its persistence db then).
  // OK when the broker is not running.
  Status Stop();
  // SIGKILL: a broker crash. Nothing since the last autosave is persisted.
  Status Kill();
  // Stop (if running), then start again on the same port with the same
  // configuration and persistence; waits until it accepts connections.
  Status Restart();

 private:
  MosquittoBroker(std::string work_dir, std::string binary, BrokerOptions opts);
  // Writes the configuration for port_ and starts the binary. Unavailable
  // when it exited without accepting connections (port taken?).
  Status Launch();

  std::string work_dir_;
  std::string binary_;
  BrokerOptions opts_;
  int port_ = 0;
  std::optional<Process> process_;
};

}  // namespace edgesync::harness
