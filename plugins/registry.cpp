#include "plugins/registry.h"

#include "plugins/external.h"
#include "plugins/lua.h"
#include "plugins/ocpp.h"
#include "plugins/pci.h"
#include "plugins/rules.h"

namespace edgesync {

const std::vector<const PluginType*>& PluginTypeTable() {
  static const std::vector<const PluginType*> kTypes = {&RulesPluginType(), &PciPluginType(), &OcppPluginType(),
                                                        &LuaPluginType(), &ExternalPluginType()};
  return kTypes;
}

std::string PluginTypes() {
  std::string out;
  for (const PluginType* t : PluginTypeTable()) out += (out.empty() ? "" : ", ") + std::string(t->name);
  return out;
}

Result<std::shared_ptr<const Plugin>> MakePlugin(const std::string& type, Settings& s, const std::string& base_dir,
                                                 const std::string& plugins_dir, Env* env) {
  for (const PluginType* t : PluginTypeTable()) {
    if (type == t->name) return t->make(s, PluginContext{base_dir, plugins_dir, env});
  }
  s.Problem("type", "unknown plugin type \"" + type + "\" (types: " + PluginTypes() + ")");
  return s.status();
}

std::string PluginSettingsReference() {
  std::string out;
  for (const PluginType* t : PluginTypeTable()) {
    out += std::string(out.empty() ? "" : "\n") + "### `type = \"" + t->name + "\"`\n\n" + t->summary +
           "\n\n| key | default | description |\n|---|---|---|\n" + t->settings_reference();
  }
  return out;
}

}  // namespace edgesync
