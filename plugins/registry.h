// The plugin types the agent knows, by their `type` name.
#pragma once

#include <memory>
#include <string>

#include "base/env.h"
#include "base/status.h"
#include "plugins/plugin.h"
#include "plugins/settings.h"

namespace edgesync {

// Builds a plugin of `type` ("rules", "pci", "ocpp", ...) from its settings.
// `base_dir`: where relative paths in the settings start (the directory of
// the file the table is in); `plugins_dir`: plugins.dir, for external ones.
// Problems are noted in `s`; the status says them all.
// Files the settings name are read through `env`.
Result<std::shared_ptr<const Plugin>> MakePlugin(const std::string& type, Settings& s, const std::string& base_dir,
                                                 const std::string& plugins_dir, Env* env = Env::Default());

// The known types, for messages: "rules, pci, ocpp, ...".
const char* PluginTypes();

}  // namespace edgesync
