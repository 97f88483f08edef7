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
 * VERSIONS. This header describes ABI 1 and ABI 2. A version number changes
 * only when a change would break plugins already built; anything that can
 * be added without breaking them is added to ABI 2 through its size fields
 * (below) and keeps the number. An agent keeps loading every version it has
 * ever spoken, so a plugin built once keeps working with newer agents.
 *
 *   ABI 1: the plugin exports edgesync_plugin_describe(), returning a
 *          struct edgesync_plugin whose first member, abi_version, is 1.
 *          No host services, no size fields. Agents that know only ABI 1
 *          look for nothing else.
 *   ABI 2: adds negotiation, host services (log, counters) and a size field
 *          at the start of every struct that crosses the boundary.
 *
 * NEGOTIATION (ABI 2 on). The plugin says which versions it speaks by
 * exporting
 *
 *     size_t edgesync_plugin_abi_versions(const uint32_t **versions);
 *
 * which points *versions at a static array of version numbers (any order)
 * and returns how many there are. The agent takes the newest version that
 * is both in that list and one it speaks, then asks for that version's
 * descriptor:
 *
 *   chosen 2:  edgesync_plugin_describe_v2(2), a struct edgesync_plugin_v2;
 *   chosen 1:  edgesync_plugin_describe(), a struct edgesync_plugin, as in
 *              ABI 1.
 *
 * A plugin that exports no version list is an ABI 1 plugin: the agent calls
 * edgesync_plugin_describe() and requires abi_version 1. A plugin whose list
 * holds no version the agent speaks is refused (and unloaded) with both
 * lists in the message, before any descriptor is read. To stay loadable by
 * agents that predate ABI 2, a plugin lists 1 as well and exports both
 * describe functions (plugins/examples/topic_key.c does): an old agent calls
 * edgesync_plugin_describe() and never sees the rest. The version the agent
 * chose is in `edgesync check`'s plugin lines and in the agent's log.
 *
 * SIZE FIELDS (ABI 2). Every ABI 2 struct carries its own size in bytes,
 * struct_size, as its writer was built (sizeof the struct in the writer's
 * copy of this header): first in edgesync_event_v2, edgesync_output_v2 and
 * edgesync_host, second (after abi_version) in edgesync_plugin_v2. Members
 * are only ever appended, never reordered, resized or removed, so a reader
 * built against a newer header than the writer checks
 *
 *     EDGESYNC_HAS(ptr, struct type, member)
 *
 * before it reads a member that was added later, and treats the member as
 * absent when the struct is too short. The agent does the same with a
 * plugin's descriptor: members beyond its struct_size are taken as absent,
 * and a descriptor too short for the required members is refused. Every
 * member present in this header's first release of ABI 2 is always there
 * (a v2 struct is never shorter than that), so only later members need the
 * check; the example checks anyway, which costs nothing.
 *
 * HOST SERVICES (ABI 2). init receives a const struct edgesync_host *, the
 * agent's table of services, valid until cleanup returns: a plugin may keep
 * the pointer in its state and use it from process and cleanup. Each
 * service takes the table's `ctx` as its first argument.
 *   log          one line in the agent's log as "plugin NAME: message", at
 *                an enum edgesync_log_level. Bounded: a message is cut at
 *                EDGESYNC_LOG_MAX_BYTES and non-printable bytes are escaped;
 *                at most EDGESYNC_LOG_MAX_PER_MINUTE lines a minute are
 *                written per plugin instance, the rest are counted and the
 *                count is logged when the next minute's first line is.
 *   counter      registers a counter by name (letters, digits, '_'; at most
 *                EDGESYNC_COUNTER_MAX_NAME bytes; at most
 *                EDGESYNC_COUNTER_MAX per plugin instance) and returns its
 *                handle, or -1 when the name is bad or there are too many.
 *                Registering a name again returns the same handle. Best done
 *                in init, so the counter shows (as 0) before it first moves.
 *   counter_add  adds to a counter (counters only grow). An unknown handle
 *                is ignored. Counters are the plugin's own metrics, kept by
 *                the agent per plugin instance under the counter's name.
 * Services are called from the thread that calls init, process or cleanup,
 * during that call; they copy what they are given.
 *
 * MEMORY. The host owns all memory it passes in and all memory that comes
 * out: a plugin reads the event (valid during the process call only) and
 * hands results back through the callbacks of the output struct, which copy
 * what they are given. A plugin never frees a host pointer and keeps none
 * but the host table's.
 *
 * THREADS. init, process and cleanup are called from one thread at a time
 * (not always the same thread). process must be stateless: the same event
 * in gives the same result out, whatever came before, so the agent can
 * replace a chain between two events (live reload) and replay an event after
 * a crash with the same outcome. Its state is its configuration, read-only
 * after init. Counting and logging through the host table are not state in
 * this sense: they do not change what process decides.
 *
 * SYMBOLS. Build with -fvisibility=hidden and mark the exported functions
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

/* The ABI versions this header describes. */
#define EDGESYNC_PLUGIN_ABI_1 1
#define EDGESYNC_PLUGIN_ABI_2 2
/* The newest of them. */
#define EDGESYNC_PLUGIN_ABI_NEWEST EDGESYNC_PLUGIN_ABI_2
/* ABI 1's name for the number in struct edgesync_plugin's abi_version. It
 * stays 1, so that ABI 1 plugins still build unchanged against this header
 * and are still ABI 1 plugins; ABI 2 descriptors use EDGESYNC_PLUGIN_ABI_2. */
#define EDGESYNC_PLUGIN_ABI_VERSION EDGESYNC_PLUGIN_ABI_1

/* True when the struct at `ptr` (of type `type`, which has a struct_size
 * member) is long enough to hold `member`: check it before reading a member
 * appended after the struct's first ABI 2 release. */
#define EDGESYNC_HAS(ptr, type, member) \
  ((size_t)(ptr)->struct_size >= offsetof(type, member) + sizeof(((type *)0)->member))

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

/* ------------------------------------------------------------------ ABI 1
 * (the shared types above serve both versions) */

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

/* The ABI 1 descriptor a plugin returns from edgesync_plugin_describe.
 * Static: the host reads it for as long as the plugin is loaded. */
struct edgesync_plugin {
  /* EDGESYNC_PLUGIN_ABI_VERSION (1). First in every descriptor of every
   * version, so the host can read it from any plugin. */
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

/* ABI 1's entry point, and ABI 2 plugins' way into agents older than ABI 2
 * (see NEGOTIATION above). */
EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin *edgesync_plugin_describe(void);

/* Its name, for dlsym. */
#define EDGESYNC_PLUGIN_DESCRIBE_SYMBOL "edgesync_plugin_describe"

/* ------------------------------------------------------------------ ABI 2 */

/* Levels of the host's log service (the syslog priorities). */
enum edgesync_log_level {
  EDGESYNC_LOG_ERROR = 3,
  EDGESYNC_LOG_WARNING = 4,
  EDGESYNC_LOG_INFO = 6,
  EDGESYNC_LOG_DEBUG = 7
};

/* The bounds of the host services (see HOST SERVICES above). */
#define EDGESYNC_LOG_MAX_BYTES 512
#define EDGESYNC_LOG_MAX_PER_MINUTE 20
#define EDGESYNC_COUNTER_MAX 32
#define EDGESYNC_COUNTER_MAX_NAME 64

/* The event, as in ABI 1 but with its size first and no reserved slots:
 * members are appended instead. Read-only, valid during one process call. */
struct edgesync_event_v2 {
  uint32_t struct_size; /* sizeof(struct edgesync_event_v2) in the agent's header */
  const char *topic;    /* the MQTT topic it was published on, NUL-terminated */
  size_t topic_len;
  /* A JSON stream's payload as JSON text (with the edits of the plugins
   * before this one), or a raw stream's bytes (may hold NUL bytes). */
  const char *payload;
  size_t payload_len;
  int payload_is_json; /* 1: JSON stream (a new payload must be JSON); 0: raw */
  int64_t received_at_us; /* when the agent received it, microseconds since the epoch */
  const struct edgesync_property *properties;
  size_t property_count;
  /* The current route (see enum edgesync_route_field). */
  const char *stream;
  const char *kafka_topic; /* "" for the stream's own */
  const char *priority;    /* "high", "normal" or "low"; "" for the stream's own */
  const char *key;         /* "" when none */
};

/* Where process puts its results, as in ABI 1, with its size first. */
struct edgesync_output_v2 {
  uint32_t struct_size; /* sizeof(struct edgesync_output_v2) in the agent's header */
  void (*set_payload)(struct edgesync_output_v2 *out, const char *data, size_t len);
  int (*set_route)(struct edgesync_output_v2 *out, int field, const char *value, size_t len);
  void (*set_error)(struct edgesync_output_v2 *out, const char *text);
  void *host; /* the host's; the plugin does not touch it */
};

/* The host's services, passed to init. */
struct edgesync_host {
  uint32_t struct_size; /* sizeof(struct edgesync_host) in the agent's header */
  void *ctx;            /* passed back as the first argument of each service */
  /* One line in the agent's log; `message` NUL-terminated. */
  void (*log)(void *ctx, int level, const char *message);
  /* Registers the counter `name` (NUL-terminated); its handle, or -1. */
  int (*counter)(void *ctx, const char *name);
  /* Adds `delta` to the counter `handle` returned. */
  void (*counter_add)(void *ctx, int handle, uint64_t delta);
};

/* The descriptor a plugin returns from edgesync_plugin_describe_v2. Static:
 * the host reads it for as long as the plugin is loaded. */
struct edgesync_plugin_v2 {
  /* EDGESYNC_PLUGIN_ABI_2: the version this descriptor is for. First, as in
   * ABI 1, so a v2 descriptor handed out by mistake where a v1 one is
   * expected is recognised and refused. */
  uint32_t abi_version;
  uint32_t struct_size; /* sizeof(struct edgesync_plugin_v2) in the plugin's header */
  /* A short name for messages ("topic-key"). */
  const char *name;
  /* As ABI 1's init, with the host's services first (see HOST SERVICES). */
  void *(*init)(const struct edgesync_host *host, const struct edgesync_setting *settings,
                size_t count, char *error, size_t error_size);
  /* As ABI 1's process, with the ABI 2 structs. */
  int (*process)(void *state, const struct edgesync_event_v2 *event, struct edgesync_output_v2 *out);
  /* Frees what init made. Called once, before the plugin is unloaded. */
  void (*cleanup)(void *state);
};

/* The versions the plugin speaks (see NEGOTIATION above): points *versions
 * at a static array and returns its length. Its presence is what tells the
 * agent that the plugin negotiates. */
EDGESYNC_PLUGIN_EXPORT size_t edgesync_plugin_abi_versions(const uint32_t **versions);

/* The ABI 2 descriptor; `abi_version` is the version the agent chose (2).
 * Returns NULL for a version the plugin does not speak. */
EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin_v2 *edgesync_plugin_describe_v2(uint32_t abi_version);

/* Their names, for dlsym. */
#define EDGESYNC_PLUGIN_ABI_VERSIONS_SYMBOL "edgesync_plugin_abi_versions"
#define EDGESYNC_PLUGIN_DESCRIBE_V2_SYMBOL "edgesync_plugin_describe_v2"

#ifdef __cplusplus
}
#endif

#endif /* EDGESYNC_PLUGIN_H */
