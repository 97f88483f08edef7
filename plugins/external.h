// External plugins: a chain step in a shared object written against the C ABI
// of plugins/include/edgesync/plugin.h, loaded from the configured plugins
// directory. The loader checks the ABI version the plugin declares before it
// calls anything else, and the wrapper turns the C results back into an
// Action and the event's Json, raw payload and Route.
#pragma once

#include <memory>
#include <string>

#include "base/env.h"
#include "base/status.h"
#include "plugins/plugin.h"
#include "plugins/settings.h"

namespace edgesync {

// Loads the plugin a [plugins.NAME] table with type = "external" names:
//   file      required: the .so's file name inside `plugins_dir` (no '/',
//             no ".."), so that plugins load only from that directory
//   settings  optional table of strings, integers and booleans, passed to
//             the plugin's init as strings
// Every problem (with the key's file:line:col) is noted in `s`, and the
// result is then InvalidArgument with those problems, one per line. The
// plugin is unloaded (after its cleanup) when the last reference goes.
// Process follows the Plugin contract: one thread at a time.
// What is at the library's path is asked of `env` (dlopen itself is not an Env call).
Result<std::shared_ptr<const Plugin>> LoadExternalPlugin(Settings& s, const std::string& plugins_dir,
                                                         Env* env = Env::Default());

}  // namespace edgesync
