/* topic_key.c: an external edgesync plugin, and the template to copy.
 *
 * Sets each event's key (the Kafka key edgesync-unpack gives it centrally)
 * to one level of its MQTT topic, e.g. the terminal id of
 * "terminal/t17/payment/capture", so that one device's events stay in order
 * on one partition. Events whose topic starts with a configured prefix are
 * dropped (test traffic, say).
 *
 *     [plugins.topic-key]
 *     type = "external"
 *     file = "edgesync-topic-key.so"
 *     settings = { level = 1, drop_prefix = "test/" }
 *
 * Settings:
 *   level        the topic level that becomes the key, 0-based; default 1.
 *                A topic with fewer levels keeps the key it had.
 *   drop_prefix  optional; events whose topic starts with it are dropped.
 *
 * It speaks plugin ABI 2 and ABI 1: an agent that knows ABI 2 takes it
 * (edgesync_plugin_abi_versions lists both) and gives it the host services,
 * which it uses to log its setup and to count the events it keys and drops
 * (counters "keyed" and "dropped"); an older agent loads it through its ABI 1
 * descriptor, which does the same work without them. A plugin that needs
 * only agents with ABI 2 lists only 2 and leaves out the ABI 1 parts.
 *
 * Built by plugins/CMakeLists.txt as <build>/lib/edgesync-topic-key.so
 * with hidden visibility, so the only exported symbols are the three
 * EDGESYNC_PLUGIN_EXPORT functions at the end. Outside the tree:
 *     cc -std=c99 -shared -fPIC -fvisibility=hidden -I plugins/include \
 *        -o edgesync-topic-key.so topic_key.c
 */
#include <edgesync/plugin.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The plugin's state: its settings, read-only after init, which is what
 * makes process stateless and safe to call again for a replayed event. The
 * host table and counter handles are fixed in init too; counting through
 * them does not change what process decides. */
struct topic_key {
  long level;
  char *drop_prefix; /* NULL: drop nothing */
  size_t drop_prefix_len;
  const struct edgesync_host *host; /* NULL when loaded through ABI 1 */
  int keyed;                        /* counter handles; -1: not counting */
  int dropped;
};

static void topic_key_cleanup(void *state) {
  struct topic_key *tk = state;
  free(tk->drop_prefix);
  free(tk);
}

/* Reads "level" as a non-negative decimal integer; 0 and a message on error. */
static int topic_key_parse_level(const char *text, long *level, char *error, size_t error_size) {
  char *end = NULL;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < 0) {
    snprintf(error, error_size, "level must be a topic level number from 0, not \"%s\"", text);
    return 0;
  }
  *level = v;
  return 1;
}

/* The host's services, each checked against the table's size before use:
 * an agent built against an older header may hand a shorter table. */
static void topic_key_log(const struct topic_key *tk, int level, const char *message) {
  if (tk->host != NULL && EDGESYNC_HAS(tk->host, struct edgesync_host, log)) {
    tk->host->log(tk->host->ctx, level, message);
  }
}

static int topic_key_counter(const struct topic_key *tk, const char *name) {
  if (tk->host == NULL || !EDGESYNC_HAS(tk->host, struct edgesync_host, counter) ||
      !EDGESYNC_HAS(tk->host, struct edgesync_host, counter_add)) {
    return -1;
  }
  return tk->host->counter(tk->host->ctx, name);
}

static void topic_key_count(const struct topic_key *tk, int counter) {
  if (counter >= 0) tk->host->counter_add(tk->host->ctx, counter, 1);
}

/* host: NULL through ABI 1. */
static void *topic_key_init_host(const struct edgesync_host *host, const struct edgesync_setting *settings,
                                 size_t count, char *error, size_t error_size) {
  struct topic_key *tk = calloc(1, sizeof *tk);
  if (tk == NULL) {
    snprintf(error, error_size, "out of memory");
    return NULL;
  }
  tk->level = 1;
  tk->host = host;
  for (size_t i = 0; i < count; i++) {
    const char *name = settings[i].name;
    const char *value = settings[i].value;
    if (strcmp(name, "level") == 0) {
      if (!topic_key_parse_level(value, &tk->level, error, error_size)) goto refuse;
    } else if (strcmp(name, "drop_prefix") == 0) {
      /* The settings are the host's and gone after init: keep a copy. */
      free(tk->drop_prefix);
      tk->drop_prefix_len = strlen(value);
      tk->drop_prefix = malloc(tk->drop_prefix_len + 1);
      if (tk->drop_prefix == NULL) {
        snprintf(error, error_size, "out of memory");
        goto refuse;
      }
      memcpy(tk->drop_prefix, value, tk->drop_prefix_len + 1);
    } else {
      /* Refuse what we do not know: a typo must not pass silently. */
      snprintf(error, error_size, "unknown setting \"%s\" (this plugin's settings: level, drop_prefix)",
               name);
      goto refuse;
    }
  }
  tk->keyed = topic_key_counter(tk, "keyed");
  tk->dropped = topic_key_counter(tk, "dropped");
  char line[200];
  snprintf(line, sizeof line, "keying events by topic level %ld%s%s%s", tk->level,
           tk->drop_prefix != NULL ? ", dropping topics starting with \"" : "",
           tk->drop_prefix != NULL ? tk->drop_prefix : "", tk->drop_prefix != NULL ? "\"" : "");
  topic_key_log(tk, EDGESYNC_LOG_INFO, line);
  return tk;

refuse:
  topic_key_cleanup(tk);
  return NULL;
}

/* The decision, whichever ABI the event came through: EDGESYNC_DROP, or
 * EDGESYNC_KEEP with the new key in [*key, *key + *key_len) (*key NULL: the
 * topic has too few levels and the key stays). */
static int topic_key_decide(const struct topic_key *tk, const char *topic, size_t topic_len, const char **key,
                            size_t *key_len) {
  *key = NULL;
  if (tk->drop_prefix != NULL && topic_len >= tk->drop_prefix_len &&
      memcmp(topic, tk->drop_prefix, tk->drop_prefix_len) == 0) {
    return EDGESYNC_DROP;
  }
  /* Find level tk->level: the bytes between the level-th '/' and the next. */
  const char *start = topic;
  const char *end = topic + topic_len;
  for (long level = 0; level < tk->level; level++) {
    const char *slash = memchr(start, '/', (size_t)(end - start));
    if (slash == NULL) return EDGESYNC_KEEP; /* too few levels: key unchanged */
    start = slash + 1;
  }
  const char *stop = memchr(start, '/', (size_t)(end - start));
  if (stop == NULL) stop = end;
  *key = start;
  *key_len = (size_t)(stop - start);
  return EDGESYNC_KEEP;
}

/* ABI 2's process. The host copies the key; it points into the event,
 * which is fine. */
static int topic_key_process(void *state, const struct edgesync_event_v2 *event, struct edgesync_output_v2 *out) {
  const struct topic_key *tk = state;
  const char *key;
  size_t key_len;
  const int action = topic_key_decide(tk, event->topic, event->topic_len, &key, &key_len);
  if (action == EDGESYNC_DROP) {
    topic_key_count(tk, tk->dropped);
  } else if (key != NULL) {
    out->set_route(out, EDGESYNC_ROUTE_KEY, key, key_len);
    topic_key_count(tk, tk->keyed);
  }
  return action;
}

/* ABI 1's init and process, for agents older than ABI 2: no host. */
static void *topic_key_init_v1(const struct edgesync_setting *settings, size_t count, char *error,
                               size_t error_size) {
  return topic_key_init_host(NULL, settings, count, error, error_size);
}

static int topic_key_process_v1(void *state, const struct edgesync_event *event, struct edgesync_output *out) {
  const char *key;
  size_t key_len;
  const int action = topic_key_decide(state, event->topic, event->topic_len, &key, &key_len);
  if (action == EDGESYNC_KEEP && key != NULL) out->set_route(out, EDGESYNC_ROUTE_KEY, key, key_len);
  return action;
}

/* The handshake (see NEGOTIATION in edgesync/plugin.h): the versions this
 * plugin speaks, and a descriptor for each. */
static const struct edgesync_plugin_v2 topic_key_plugin = {
    .abi_version = EDGESYNC_PLUGIN_ABI_2,
    .struct_size = sizeof(struct edgesync_plugin_v2),
    .name = "topic-key",
    .init = topic_key_init_host,
    .process = topic_key_process,
    .cleanup = topic_key_cleanup,
};

/* Designated initializers leave the reserved slots NULL, as ABI 1 requires. */
static const struct edgesync_plugin topic_key_plugin_v1 = {
    .abi_version = EDGESYNC_PLUGIN_ABI_1,
    .name = "topic-key",
    .init = topic_key_init_v1,
    .process = topic_key_process_v1,
    .cleanup = topic_key_cleanup,
};

EDGESYNC_PLUGIN_EXPORT size_t edgesync_plugin_abi_versions(const uint32_t **versions) {
  static const uint32_t supported[] = {EDGESYNC_PLUGIN_ABI_1, EDGESYNC_PLUGIN_ABI_2};
  *versions = supported;
  return sizeof supported / sizeof supported[0];
}

EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin_v2 *edgesync_plugin_describe_v2(uint32_t abi_version) {
  return abi_version == EDGESYNC_PLUGIN_ABI_2 ? &topic_key_plugin : NULL;
}

/* Only agents older than ABI 2 call this. */
EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin *edgesync_plugin_describe(void) {
  return &topic_key_plugin_v1;
}
