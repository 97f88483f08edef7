/* FROZEN: edgesync/plugin.h as ABI 1 shipped it, byte for byte below this
 * comment. Test plugins built against it (tests/plugins/CMakeLists.txt) are
 * the "old plugin" the current agent must keep loading. Never edit it: the
 * point is that it does not change when plugins/include/edgesync/plugin.h
 * does. */
/* edgesync/plugin.h: the C ABI of external edgesync plugins.
 *
 * An external plugin is a shared object (.so) the agent loads from the
 * configured plugins directory ([plugins] dir) for a table such as
 *
 *     [plugins.topic-key]
 *     type = "external"
 *     file = "edgesync-topic-key.so"
 *     settings = { level = 1, drop_prefix = "test/" }
 *
 * It is one step of a stream's chain, like the built-in plugins: it sees one
 * event and keeps it, drops it or dead-letters it, and may rewrite its payload
 * and change its route. The ABI is C only (C99), so a plugin can be written
 * in C, C++ (with extern "C"), Rust or anything else that exports C symbols,
 * and no C++ type, allocator or exception crosses the boundary.
 *
 * The handshake. A plugin exports exactly one symbol:
 *
 *     const struct edgesync_plugin *edgesync_plugin_describe(void);
 *
 * returning a pointer to a static descriptor. The host calls it first and
 * reads only `abi_version`, the descriptor's first member in every version of
 * this ABI; when it differs from the version the agent speaks, the plugin is
 * refused (and unloaded) before any other member is read or called. Changes
 * that break existing plugins raise EDGESYNC_PLUGIN_ABI_VERSION; members are
 * only ever added in the reserved slots, which are NULL or zero in version 1.
 *
 * Memory. The host owns all memory it passes in and all memory that comes
 * out: a plugin reads the event (valid during the process call only) and
 * hands results back through the callbacks in edgesync_output, which copy
 * what they are given. A plugin never frees or keeps a host pointer.
 *
 * Threads. init, process and cleanup are called from one thread at a time
 * (not always the same thread). process must be stateless: the same event
 * in gives the same result out, whatever came before, so the agent can
 * replace a chain between two events (live reload) and replay an event after
 * a crash with the same outcome. Its state is its configuration, read-only
 * after init.
 *
 * Symbols. Build with -fvisibility=hidden and mark the describe function
 * EDGESYNC_PLUGIN_EXPORT, so that nothing else of the plugin is exported and
 * clashes with the agent's symbols (it is loaded RTLD_NOW | RTLD_LOCAL).
 * plugins/examples/topic_key.c is a complete plugin to copy.
 */
#ifndef EDGESYNC_PLUGIN_H
#define EDGESYNC_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes. A plugin puts it in abi_version. */
#define EDGESYNC_PLUGIN_ABI_VERSION 1

#if defined(__GNUC__)
#define EDGESYNC_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define EDGESYNC_PLUGIN_EXPORT
#endif

/* What process returns. Anything else dead-letters the event with an error
 * naming the plugin and the value. */
enum edgesync_action {
  EDGESYNC_KEEP = 0,        /* the event goes on, with the changes made through out */
  EDGESYNC_DROP = 1,        /* the event is discarded; the chain ends */
  EDGESYNC_DEAD_LETTER = 2  /* the event goes to the dead letters with the
                               text given to set_error; the chain ends */
};

/* The route fields set_route changes, one per call. */
enum edgesync_route_field {
  EDGESYNC_ROUTE_STREAM = 1,       /* another configured stream */
  EDGESYNC_ROUTE_KAFKA_TOPIC = 2,  /* a Kafka topic its stream declares */
  EDGESYNC_ROUTE_PRIORITY = 3,     /* "high", "normal" or "low" */
  EDGESYNC_ROUTE_KEY = 4           /* the event's key on the central side; "" for none */
};

/* One string setting from the plugin's `settings` table. Integers and
 * booleans arrive as their decimal text and "true"/"false". */
struct edgesync_setting {
  const char *name;
  const char *value;
};

/* One MQTT 5 user property. */
struct edgesync_property {
  const char *name;
  const char *value;
};

/* The event, read-only, valid during one process call. Every string is
 * NUL-terminated; payload may also hold NUL bytes, so use payload_len. */
struct edgesync_event {
  const char *topic; /* the MQTT topic it was published on */
  size_t topic_len;
  /* A JSON stream's payload as JSON text (with the edits of the plugins
   * before this one), or a raw stream's bytes; see payload_is_json. */
  const char *payload;
  size_t payload_len;
  int payload_is_json; /* 1: JSON stream (a new payload must be JSON); 0: raw */
  int64_t received_at_us; /* when the agent received it, microseconds since the epoch */
  const struct edgesync_property *properties;
  size_t property_count;
  /* The current route (see enum edgesync_route_field). */
  const char *stream;
  const char *kafka_topic; /* "" for the stream's own */
  const char *priority; /* "high", "normal" or "low"; "" for the stream's own */
  const char *key;      /* "" when none */
  void *reserved[8];    /* NULL in ABI 1 */
};

/* Where process puts its results: calls to these members, each passing
 * `out` itself. Each copies what it is given; the last call for a field
 * wins. Changes take effect only when process returns EDGESYNC_KEEP; a
 * change the host cannot apply (a payload that is not JSON on a JSON stream,
 * an unknown priority) dead-letters the event unchanged with an error. */
struct edgesync_output {
  /* Replaces the payload with `len` bytes at `data`. */
  void (*set_payload)(struct edgesync_output *out, const char *data, size_t len);
  /* Sets one route field to `len` bytes at `value`. Returns 0, or -1 for an
   * unknown field or priority (and the event will be dead-lettered). */
  int (*set_route)(struct edgesync_output *out, int field, const char *value, size_t len);
  /* Why the event is dead-lettered (NUL-terminated); used with
   * EDGESYNC_DEAD_LETTER only. */
  void (*set_error)(struct edgesync_output *out, const char *text);
  void *host;        /* the host's; the plugin does not touch it */
  void *reserved[8]; /* NULL in ABI 1 */
};

/* The descriptor a plugin returns from edgesync_plugin_describe. Static:
 * the host reads it for as long as the plugin is loaded. */
struct edgesync_plugin {
  /* EDGESYNC_PLUGIN_ABI_VERSION as the plugin was built. First in every
   * version of the ABI, so the host can read it from any plugin. */
  int abi_version;
  /* A short name for messages ("topic-key"). */
  const char *name;
  /* Reads the settings (one per key of the `settings` table, in no
   * particular order; valid during this call only: copy what you keep)
   * and returns the plugin's state, passed to process and cleanup; a
   * plugin without state returns the address of any static object. On bad
   * settings it returns NULL with the reason, NUL-terminated, in `error`
   * (at most error_size bytes), saying what to change: the agent refuses
   * the configuration with that text. */
  void *(*init)(const struct edgesync_setting *settings, size_t count, char *error,
                size_t error_size);
  /* Decides about one event: returns an enum edgesync_action and may put
   * changes into `out`. Stateless, see above. */
  int (*process)(void *state, const struct edgesync_event *event, struct edgesync_output *out);
  /* Frees what init made. Called once, before the plugin is unloaded. */
  void (*cleanup)(void *state);
  void *reserved[8]; /* NULL in ABI 1 */
};

/* The one symbol a plugin exports (see the handshake above). */
EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin *edgesync_plugin_describe(void);

/* Its name, for dlsym. */
#define EDGESYNC_PLUGIN_DESCRIBE_SYMBOL "edgesync_plugin_describe"

#ifdef __cplusplus
}
#endif

#endif /* EDGESYNC_PLUGIN_H */
