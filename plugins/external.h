// External plugins: a chain step in a shared object written against the C ABI
// of plugins/include/edgesync/plugin.h, loaded from the configured plugins
// directory. The loader negotiates the ABI version (the newest the plugin and
// the agent both speak; a plugin without a version list is ABI 1) before it
// reads any descriptor, and the wrapper turns the C results back into an
// Action and the event's Json, raw payload and Route. ABI 2 plugins get the
// host services: their log lines go to the agent's log, their counters to
// Plugin::Counters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/env.h"
#include "base/status.h"
#include "plugins/plugin.h"
#include "plugins/plugin_type.h"
#include "plugins/settings.h"

namespace edgesync {

// Test hooks of the loader, each standing for another agent than this one.
struct ExternalPluginOptions {
  // The newest plugin ABI the loader speaks: 1 loads as an agent from before
  // ABI 2 did (edgesync_plugin_describe only, no negotiation).
  static constexpr uint32_t kNewestAbi = 2;
  uint32_t max_abi = kNewestAbi;
  // The struct_size the host table handed to ABI 2 plugins claims; 0: its
  // real size. Smaller stands for an agent whose table ends earlier.
  uint32_t host_struct_size = 0;
  // The clock of the host log's limit (lines a minute).
  Env* env = Env::Default();
};

// Loads the plugin a [plugins.NAME] table with type = "external" names:
//   file      required: the .so's file name inside `plugins_dir` (no '/',
//             no ".."), so that plugins load only from that directory
//   settings  optional table of strings, integers and booleans, passed to
//             the plugin's init as strings
// Every problem (with the key's file:line:col) is noted in `s`, and the
// result is then InvalidArgument with those problems, one per line. The
// plugin is unloaded (after its cleanup) when the last reference goes.
// Process follows the Plugin contract: one thread at a time. LoadInfo names
// the file and the ABI version chosen. What is at the library's path is
// asked of options.env (dlopen itself is not an Env call).
Result<std::shared_ptr<const Plugin>> LoadExternalPlugin(Settings& s, const std::string& plugins_dir,
                                                         const ExternalPluginOptions& options = {});

// type = "external": a shared object from plugins.dir behind the C ABI.
const PluginType& ExternalPluginType();

}  // namespace edgesync
