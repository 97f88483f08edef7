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
 * Built by plugins/CMakeLists.txt as <build>/lib/edgesync-topic-key.so
 * with hidden visibility, so the only exported symbol is
 * edgesync_plugin_describe. Outside the tree:
 *     cc -std=c99 -shared -fPIC -fvisibility=hidden -I plugins/include \
 *        -o edgesync-topic-key.so topic_key.c
 */
#include <edgesync/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The plugin's state: its settings, read-only after init, which is what
 * makes process stateless and safe to call again for a replayed event. */
struct topic_key {
  long level;
  char *drop_prefix; /* NULL: drop nothing */
  size_t drop_prefix_len;
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

static void *topic_key_init(const struct edgesync_setting *settings, size_t count, char *error,
                            size_t error_size) {
  struct topic_key *tk = calloc(1, sizeof *tk);
  if (tk == NULL) {
    snprintf(error, error_size, "out of memory");
    return NULL;
  }
  tk->level = 1;
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
  return tk;

refuse:
  topic_key_cleanup(tk);
  return NULL;
}

static int topic_key_process(void *state, const struct edgesync_event *event,
                             struct edgesync_output *out) {
  const struct topic_key *tk = state;
  if (tk->drop_prefix != NULL && event->topic_len >= tk->drop_prefix_len &&
      memcmp(event->topic, tk->drop_prefix, tk->drop_prefix_len) == 0) {
    return EDGESYNC_DROP;
  }
  /* Find level tk->level: the bytes between the level-th '/' and the next. */
  const char *start = event->topic;
  const char *end = event->topic + event->topic_len;
  for (long level = 0; level < tk->level; level++) {
    const char *slash = memchr(start, '/', (size_t)(end - start));
    if (slash == NULL) return EDGESYNC_KEEP; /* too few levels: key unchanged */
    start = slash + 1;
  }
  const char *stop = memchr(start, '/', (size_t)(end - start));
  if (stop == NULL) stop = end;
  /* The host copies the key; start points into the event, which is fine. */
  out->set_route(out, EDGESYNC_ROUTE_KEY, start, (size_t)(stop - start));
  return EDGESYNC_KEEP;
}

/* The handshake: abi_version first. Designated initializers leave the
 * reserved slots NULL, as ABI 1 requires. */
static const struct edgesync_plugin topic_key_plugin = {
    .abi_version = EDGESYNC_PLUGIN_ABI_VERSION,
    .name = "topic-key",
    .init = topic_key_init,
    .process = topic_key_process,
    .cleanup = topic_key_cleanup,
};

EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin *edgesync_plugin_describe(void) {
  return &topic_key_plugin;
}
