// MosquittoBroker: writes a mosquitto.conf (and a password file), runs the
// broker as a child process and decides readiness by a successful TCP connect
// to its listener and its "running" log line.
#include "harness/mosquitto.h"

#include <pwd.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace edgesync::harness {
namespace {

constexpr int kPortAttempts = 5;
constexpr std::chrono::seconds kStartTimeout(15);
constexpr std::chrono::seconds kStopGrace(15);

Result<std::string> FindMosquitto() {
  Result<std::string> in_path = FindProgram("mosquitto");
  if (in_path.ok()) return in_path;
  return FindProgram("/usr/sbin/mosquitto");
}

// mosquitto started as root switches to the `user` of its configuration
// (default "mosquitto"), who could not write our working directory. Naming
// the current user keeps it as it is; a non-root mosquitto ignores `user`.
std::string CurrentUser() {
  if (passwd* pw = ::getpwuid(::geteuid()); pw != nullptr) return pw->pw_name;
  return "root";
}

// A line break in a value would end its configuration line early and let the
// rest be read as another option.
bool OneLine(const std::string& value) { return value.find_first_of("\r\n") == std::string::npos; }

Status CheckOptions(const BrokerOptions& opts) {
  bool tls = !opts.tls_cert.empty();
  if (tls && opts.tls_key.empty()) {
    return Status::InvalidArgument("BrokerOptions: tls_cert needs tls_key");
  }
  if (opts.require_certificate && opts.tls_ca.empty()) {
    return Status::InvalidArgument("BrokerOptions: require_certificate needs tls_ca");
  }
  if (!tls && (!opts.tls_key.empty() || !opts.tls_ca.empty() || opts.require_certificate)) {
    return Status::InvalidArgument(
        "BrokerOptions: tls_key, tls_ca and require_certificate need tls_cert");
  }
  if (!OneLine(opts.tls_ca) || !OneLine(opts.tls_cert) || !OneLine(opts.tls_key)) {
    return Status::InvalidArgument("BrokerOptions: a TLS file path contains a line break");
  }
  for (const auto& [user, password] : opts.users) {
    if (user.empty() || user.find(':') != std::string::npos || !OneLine(user) ||
        !OneLine(password)) {
      return Status::InvalidArgument("BrokerOptions: username \"" + user +
                                     "\" is empty or contains ':' or a line break, or its "
                                     "password contains a line break");
    }
  }
  return Status::OK();
}

// Runs mosquitto_passwd with `args` to completion, its output in
// work_dir/mosquitto_passwd.{out,err}. IOError unless it exits with 0.
Status RunMosquittoPasswd(const std::string& work_dir, const std::vector<std::string>& args) {
  Result<std::string> program = FindProgram("mosquitto_passwd");
  if (!program.ok()) {
    return Status::NotFound("mosquitto_passwd (package mosquitto) not installed: " +
                            program.status().message());
  }
  SpawnOptions so;
  so.argv.push_back(*program);
  so.argv.insert(so.argv.end(), args.begin(), args.end());
  so.stdout_path = work_dir + "/mosquitto_passwd.out";
  so.stderr_path = work_dir + "/mosquitto_passwd.err";
  Result<int> code = RunToEnd(so, std::chrono::seconds(30));
  if (!code.ok()) return Status::IOError("mosquitto_passwd: " + code.status().message());
  if (*code == 0) return Status::OK();
  // Its messages go to stdout or stderr depending on the case.
  std::string text;
  for (const std::string& path : {so.stdout_path, so.stderr_path}) text += ReadWholeFile(path);
  return Status::IOError("mosquitto_passwd exited with status " + std::to_string(*code) + ": " +
                         text);
}

// work_dir/passwd with every user of `users` (non-empty), mode 0600.
Status WritePasswordFile(const std::string& work_dir,
                         const std::vector<std::pair<std::string, std::string>>& users) {
  std::string path = work_dir + "/passwd";
  bool first = true;
  for (const auto& [user, password] : users) {
    // -c creates (overwrites) the file; later users are added to it.
    std::vector<std::string> args;
    if (first) args.push_back("-c");
    args.insert(args.end(), {"-b", path, user, password});
    EDGESYNC_RETURN_IF_ERROR(RunMosquittoPasswd(work_dir, args));
    first = false;
  }
  std::error_code ec;
  std::filesystem::permissions(
      path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
      std::filesystem::perm_options::replace, ec);
  if (ec) return Status::IOError("chmod 0600 " + path + ": " + ec.message());
  return Status::OK();
}

}  // namespace

MosquittoBroker::MosquittoBroker(std::string work_dir, std::string binary, BrokerOptions opts)
    : work_dir_(std::move(work_dir)), binary_(std::move(binary)), opts_(std::move(opts)) {}

MosquittoBroker::~MosquittoBroker() { (void)Stop(); }

Result<std::unique_ptr<MosquittoBroker>> MosquittoBroker::Start(const std::string& work_dir,
                                                                 const BrokerOptions& opts) {
  EDGESYNC_RETURN_IF_ERROR(CheckOptions(opts));
  Result<std::string> binary = FindMosquitto();
  if (!binary.ok()) {
    return Status::NotFound("mosquitto broker not installed: " + binary.status().message());
  }
  std::error_code ec;
  std::filesystem::create_directories(work_dir, ec);
  if (ec) return Status::IOError("create " + work_dir + ": " + ec.message());
  std::string dir = std::filesystem::absolute(work_dir, ec).lexically_normal().string();
  if (ec) return Status::IOError("absolute path of " + work_dir + ": " + ec.message());
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!opts.users.empty()) EDGESYNC_RETURN_IF_ERROR(WritePasswordFile(dir, opts.users));

  // Absolute paths keep the configuration independent of the directory
  // mosquitto runs in.
  BrokerOptions resolved = opts;
  for (std::string* path : {&resolved.tls_ca, &resolved.tls_cert, &resolved.tls_key}) {
    if (path->empty()) continue;
    *path = std::filesystem::absolute(*path, ec).lexically_normal().string();
    if (ec) return Status::IOError("absolute path of a TLS file: " + ec.message());
  }

  std::unique_ptr<MosquittoBroker> broker(
      new MosquittoBroker(dir, *binary, std::move(resolved)));
  Status last;
  int attempts = opts.port == 0 ? kPortAttempts : 1;
  for (int i = 0; i < attempts; ++i) {
    broker->port_ = opts.port != 0 ? opts.port : FreeLoopbackPort();
    if (broker->port_ <= 0) return Status::IOError("no free loopback port");
    last = broker->Launch();
    if (last.ok()) return broker;
  }
  return last;
}

Status MosquittoBroker::Launch() {
  std::string conf_path = work_dir_ + "/mosquitto.conf";
  {
    std::ofstream conf(conf_path, std::ios::trunc);
    conf << "# Written by the edgesync test harness; rewritten on every start.\n"
         << "listener " << port_ << " 127.0.0.1\n";
    if (!opts_.tls_cert.empty()) {
      // Options of the listener above; tls_version is the minimum accepted.
      if (!opts_.tls_ca.empty()) conf << "cafile " << opts_.tls_ca << "\n";
      conf << "certfile " << opts_.tls_cert << "\n"
           << "keyfile " << opts_.tls_key << "\n"
           << "tls_version tlsv1.2\n"
           << "require_certificate " << (opts_.require_certificate ? "true" : "false") << "\n";
    }
    if (opts_.users.empty()) {
      conf << "allow_anonymous true\n";
    } else {
      conf << "allow_anonymous false\n"
           << "password_file " << work_dir_ << "/passwd\n";
    }
    conf << "user " << CurrentUser() << "\n"
         << "persistence " << (opts_.persistence ? "true" : "false") << "\n"
         << "persistence_location " << work_dir_ << "/\n"
         << "persistence_file mosquitto.db\n";
    if (opts_.autosave_interval > 0) conf << "autosave_interval " << opts_.autosave_interval << "\n";
    if (opts_.max_queued_messages != 0) {
      conf << "max_queued_messages " << std::max(opts_.max_queued_messages, 0) << "\n";
    }
    if (opts_.max_inflight_messages != 0) {
      conf << "max_inflight_messages " << std::max(opts_.max_inflight_messages, 0) << "\n";
    }
    if (opts_.max_packet_size > 0) conf << "max_packet_size " << opts_.max_packet_size << "\n";
    for (const std::string& line : opts_.extra_config) conf << line << "\n";
    conf << "log_dest file " << work_dir_ << "/mosquitto.log\n"
         << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
         << "connection_messages true\n";
    conf.flush();
    if (!conf) return Status::IOError("cannot write " + conf_path);
  }

  // mosquitto logs "mosquitto version X running" once its listeners are
  // bound. Waiting for that line, written by this launch (the log is
  // appended to), and not only for a TCP connect, keeps a broker that failed
  // to bind from passing for ready when another process owns the port.
  std::string log_path = work_dir_ + "/mosquitto.log";
  std::error_code ec;
  uintmax_t log_offset = std::filesystem::file_size(log_path, ec);
  if (ec) log_offset = 0;

  SpawnOptions so;
  so.argv = {binary_, "-c", conf_path};
  so.stdout_path = work_dir_ + "/mosquitto.out";
  so.stderr_path = work_dir_ + "/mosquitto.err";
  Result<Process> p = Process::Spawn(so);
  if (!p.ok()) return p.status();
  process_.emplace(std::move(p.value()));

  auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  bool logged_running = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process_->Running()) {
      int code = process_->exit_status().value_or(-1);
      process_.reset();
      return Status::Unavailable("mosquitto exited with status " + std::to_string(code) +
                                 " before accepting connections on port " +
                                 std::to_string(port_) + "; see " + log_path);
    }
    if (!logged_running) {
      std::ifstream log(log_path);
      log.seekg(static_cast<std::streamoff>(log_offset));
      for (std::string line; std::getline(log, line);) {
        if (line.find(" running") != std::string::npos) logged_running = true;
      }
    }
    // WaitForTcp sleeps briefly between attempts: this loop polls gently.
    if (WaitForTcp("127.0.0.1", port_, std::chrono::milliseconds(20)).ok() && logged_running &&
        process_->Running()) {
      return Status::OK();
    }
  }
  (void)process_->Stop(std::chrono::seconds(1));
  process_.reset();
  return Status::Unavailable("mosquitto did not accept connections on port " +
                             std::to_string(port_) + " within " +
                             std::to_string(kStartTimeout.count()) + " s; see " + log_path);
}

Status MosquittoBroker::Stop() {
  if (!process_) return Status::OK();
  Status s = process_->Stop(kStopGrace);
  int code = process_->exit_status().value_or(-1);
  process_.reset();
  EDGESYNC_RETURN_IF_ERROR(s);
  if (code == 128 + SIGKILL) {
    return Status::IOError("mosquitto ignored SIGTERM for " + std::to_string(kStopGrace.count()) +
                           " s and was killed; its persistence db may be stale");
  }
  return Status::OK();
}

Status MosquittoBroker::Kill() {
  if (!process_) return Status::OK();
  Status s = process_->Running() ? process_->Signal(SIGKILL) : Status::OK();
  Result<int> r = process_->Wait(std::chrono::seconds(10));
  process_.reset();
  EDGESYNC_RETURN_IF_ERROR(s);
  return r.ok() ? Status::OK() : r.status();
}

Status MosquittoBroker::Restart() {
  EDGESYNC_RETURN_IF_ERROR(Stop());
  return Launch();
}

}  // namespace edgesync::harness
