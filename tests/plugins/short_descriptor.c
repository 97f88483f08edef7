/* An ABI 2 plugin whose descriptor claims a struct_size too short to hold
 * process and cleanup: the agent must refuse it rather than read members
 * the plugin says are not there. Test-only. */
#include <edgesync/plugin.h>

#include <stddef.h>

static void *short_init(const struct edgesync_host *host, const struct edgesync_setting *settings, size_t count,
                        char *error, size_t error_size) {
  (void)host, (void)settings, (void)count, (void)error, (void)error_size;
  static int state;
  return &state;
}

static const struct edgesync_plugin_v2 short_plugin = {
    .abi_version = EDGESYNC_PLUGIN_ABI_2,
    .struct_size = offsetof(struct edgesync_plugin_v2, process),
    .name = "short",
    .init = short_init,
};

EDGESYNC_PLUGIN_EXPORT size_t edgesync_plugin_abi_versions(const uint32_t **versions) {
  static const uint32_t supported[] = {EDGESYNC_PLUGIN_ABI_2};
  *versions = supported;
  return 1;
}

EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin_v2 *edgesync_plugin_describe_v2(uint32_t abi_version) {
  (void)abi_version;
  return &short_plugin;
}
