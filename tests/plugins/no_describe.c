/* A shared object that is not an edgesync plugin: it exports a function,
 * but not edgesync_plugin_describe. Test-only. */
__attribute__((visibility("default"))) int some_other_library_function(void) { return 42; }
