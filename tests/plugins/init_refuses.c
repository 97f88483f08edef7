/* A plugin whose init refuses every configuration, with its reason. Test-only. */
#include <edgesync/plugin.h>

#include <stdio.h>

static void *refuse_init(const struct edgesync_setting *settings, size_t count, char *error,
                         size_t error_size) {
  (void)settings;
  snprintf(error, error_size, "needs a licence key (%zu settings given): set settings.licence", count);
  return NULL;
}

static int refuse_process(void *state, const struct edgesync_event *event, struct edgesync_output *out) {
  (void)state, (void)event, (void)out;
  return EDGESYNC_KEEP;
}

static void refuse_cleanup(void *state) { (void)state; }

static const struct edgesync_plugin refuse_plugin = {
    .abi_version = EDGESYNC_PLUGIN_ABI_VERSION,
    .name = "init-refuses",
    .init = refuse_init,
    .process = refuse_process,
    .cleanup = refuse_cleanup,
};

EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin *edgesync_plugin_describe(void) { return &refuse_plugin; }
