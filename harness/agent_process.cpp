#include "harness/agent_process.h"


#include <sstream>
#include <thread>
#include <vector>

namespace edgesync::harness {

std::string PointConfigAt(const std::string& toml, int mqtt_port, const std::string& brokers,
                          const std::string& state_dir) {
  struct Override {
    const char* section;
    const char* key;
    std::string line;
    bool done = false;
  };
  std::vector<Override> wanted = {
      {"[mqtt]", "port", "port = " + std::to_string(mqtt_port)},
      {"[kafka]", "brokers", "brokers = \"" + brokers + "\""},
      {"[agent]", "state_dir", "state_dir = \"" + state_dir + "\""},
  };
  std::istringstream in(toml);
  std::string out, line, section;
  auto close_section = [&] {
    for (auto& w : wanted) {
      if (section == w.section && !w.done) {
        out += w.line + "\n";
        w.done = true;
      }
    }
  };
  while (std::getline(in, line)) {
    size_t first = line.find_first_not_of(" \t");
    std::string trimmed = first == std::string::npos ? "" : line.substr(first);
    if (!trimmed.empty() && trimmed[0] == '[') {
      close_section();
      section = trimmed.substr(0, trimmed.find(']') + 1);
    }
    bool replaced = false;
    for (auto& w : wanted) {
      std::string k = w.key;
      if (section == w.section && trimmed.compare(0, k.size(), k) == 0 &&
          trimmed.find('=') != std::string::npos &&
          trimmed.substr(k.size(), trimmed.find('=') - k.size()).find_first_not_of(" \t") ==
              std::string::npos) {
        out += w.line + "\n";
        w.done = replaced = true;
      }
    }
    if (!replaced) out += line + "\n";
  }
  close_section();
  for (auto& w : wanted) {
    if (!w.done) out += std::string("\n") + w.section + "\n" + w.line + "\n";
  }
  return out;
}

Result<Process> StartAgent(const std::string& config_path, const std::string& log_path,
                           std::chrono::milliseconds timeout) {
  SpawnOptions o;
  o.argv = {ProgramPath("edgesync"), "run", "--config", config_path};
  o.stderr_path = log_path;
  Result<Process> p = Process::Spawn(o);
  if (!p.ok()) return p.status();
  // The agent offers nothing to block on from outside but its log.
  bool subscribed = false;
  PollUntil([&] {
    subscribed = ReadWholeFile(log_path).find("mqtt: subscribed") != std::string::npos;
    return subscribed || !p->Running();
  }, timeout);
  if (subscribed) return p;
  std::string log = ReadWholeFile(log_path);
  if (log.size() > 2000) log = log.substr(log.size() - 2000);
  return Status::Unavailable("the agent did not subscribe (" +
                             std::string(p->Running() ? "still starting" : "it exited") +
                             "); its log ends:\n" + log);
}

}  // namespace edgesync::harness
