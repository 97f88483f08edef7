/* A plugin built for a future ABI (99) whose descriptor has another layout
 * after abi_version: the host must refuse it having read abi_version only
 * (reading `name` here as a pointer would crash). Test-only. */
struct future_plugin {
  int abi_version;
  double not_a_pointer[4];
};

static const struct future_plugin future = {99, {1.5, 2.5, 3.5, 4.5}};

__attribute__((visibility("default"))) const struct future_plugin *edgesync_plugin_describe(void) {
  return &future;
}
