// The plugin types the agent knows, by their `type` name: one table of
// PluginType declarations (plugins/plugin_type.h), one per module.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "plugins/plugin.h"
#include "plugins/plugin_type.h"
#include "plugins/settings.h"

namespace edgesync {

// Every built-in type and `external`, in the order the reference lists them.
const std::vector<const PluginType*>& PluginTypeTable();

// Builds a plugin of `type` ("rules", "pci", "ocpp", ...) from its settings.
// `base_dir`: where relative paths in the settings start (the directory of
// the file the table is in); `plugins_dir`: plugins.dir, for external ones.
// Problems are noted in `s`; the status says them all.
// Files the settings name are read through `env`.
Result<std::shared_ptr<const Plugin>> MakePlugin(const std::string& type, Settings& s, const std::string& base_dir,
                                                 const std::string& plugins_dir, Env* env = Env::Default());

// The known types, for messages: "rules, pci, ocpp, ...".
std::string PluginTypes();

// The reference of every type's settings, as Markdown (a section per type),
// for docs/configuration.md (`edgesync config`).
std::string PluginSettingsReference();

}  // namespace edgesync
