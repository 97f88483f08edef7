#include "plugins/registry.h"

#include "plugins/external.h"
#include "plugins/lua.h"
#include "plugins/ocpp.h"
#include "plugins/pci.h"
#include "plugins/rules.h"

namespace edgesync {

const char* PluginTypes() { return "rules, pci, ocpp, lua, external"; }

Result<std::shared_ptr<const Plugin>> MakePlugin(const std::string& type, Settings& s, const std::string& base_dir,
                                                 const std::string& plugins_dir, Env* env) {
  if (type == "rules") return MakeRulesPlugin(s);
  if (type == "pci") return MakePciPlugin(s, base_dir, env);
  if (type == "ocpp") return MakeOcppPlugin(s);
  if (type == "lua") return MakeLuaPlugin(s, base_dir, env);
  if (type == "external") return LoadExternalPlugin(s, plugins_dir, env);
  s.Problem("type", "unknown plugin type \"" + type + "\" (types: " + PluginTypes() + ")");
  return s.status();
}

}  // namespace edgesync
