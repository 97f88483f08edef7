// The agent's buffer (store and sealer) for a configuration, opened as
// Agent::Open opens them but without MQTT and Kafka: for the benchmarks that
// fill a store to start the agent from.
#pragma once

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.h"
#include "buffer/sealer.h"
#include "buffer/store.h"

namespace edgesync::bench {

struct AgentBuffer {
  std::unique_ptr<Store> store;
  std::unique_ptr<Sealer> sealer;  // declared after the store: destroyed before it
};

// Parses `config_text` (`name` in its errors) and opens state/store.db and
// the sealer over state/journal as the agent would; says why on stderr and
// returns nothing when it cannot.
inline std::optional<AgentBuffer> OpenAgentBuffer(const std::string& config_text, const std::string& name,
                                                  const std::string& state) {
  Result<Config> cfg = ParseConfig(config_text, name);
  if (!cfg.ok()) {
    std::fprintf(stderr, "bench: config: %s\n", cfg.status().message().c_str());
    return std::nullopt;
  }
  Env* env = Env::Default();
  if (!env->CreateDirs(state).ok()) return std::nullopt;
  StoreOptions sto;
  sto.device_id = cfg->device_id;
  static_cast<StoreLimits&>(sto) = cfg->buffer;
  std::vector<StreamSpec> specs;
  for (const StreamConfig& sc : cfg->streams) specs.push_back({sc.name, sc.kafka_topic, sc.priority});
  specs.push_back({kDeadLetterStream, cfg->dead_letter_topic, Priority::kLow});
  SealerOptions so;
  so.device_id = cfg->device_id;
  so.journal_dir = state + "/journal";
  static_cast<BatchLimits&>(so) = cfg->batch;
  so.seal.zstd_level = static_cast<int>(cfg->zstd_level);
  AgentBuffer b;
  Result<std::unique_ptr<Store>> store = Store::Open(env, state + "/store.db", sto);
  if (!store.ok()) {
    std::fprintf(stderr, "bench: store: %s\n", store.status().ToString().c_str());
    return std::nullopt;
  }
  b.store = std::move(store).value();
  Result<std::unique_ptr<Sealer>> sealer = Sealer::Open(env, b.store.get(), so, specs);
  if (!sealer.ok()) {
    std::fprintf(stderr, "bench: sealer: %s\n", sealer.status().ToString().c_str());
    return std::nullopt;
  }
  b.sealer = std::move(sealer).value();
  return b;
}

}  // namespace edgesync::bench
