/* A plugin that speaks only ABI versions no agent knows yet (3 and 99): the
 * agent must refuse it, naming both sides' versions, without calling any
 * describe function (it exports none). Test-only. */
#include <edgesync/plugin.h>

EDGESYNC_PLUGIN_EXPORT size_t edgesync_plugin_abi_versions(const uint32_t **versions) {
  static const uint32_t supported[] = {99, 3};
  *versions = supported;
  return 2;
}
