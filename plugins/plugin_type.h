// PluginType: a kind of plugin (`type = "..."` in a [plugins.NAME] table),
// declared once by the module that implements it: its name, what it does,
// its settings (an OptionTable, so their checks, defaults and reference
// agree) and how to build one. plugins/registry.cpp lists them; adding a
// type is a module that exports one of these and a line there.
#pragma once

#include <memory>
#include <string>

#include "base/env.h"
#include "base/status.h"
#include "plugins/plugin.h"
#include "plugins/settings.h"

namespace edgesync {

// What a plugin's settings are read against.
struct PluginContext {
  std::string base_dir;     // where relative paths in the settings start (the table's file's directory)
  std::string plugins_dir;  // plugins.dir: where external plugins load from
  Env* env = Env::Default();
};

struct PluginType {
  const char* name;     // its `type`
  const char* summary;  // one sentence for the reference
  // Markdown rows "| `key` | default | description |" of its settings.
  std::string (*settings_reference)();
  // Builds one from its settings; problems are noted in `s` (see registry.h).
  Result<std::shared_ptr<const Plugin>> (*make)(Settings& s, const PluginContext& context);
};

}  // namespace edgesync
