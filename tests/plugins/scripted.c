/* A plugin that does what its settings say, so that external_test can make
 * it misbehave or use every output of the ABI. Test-only. Settings (all
 * optional):
 *   action           "keep" (default), "drop", "dead_letter", or a number
 *                    returned as it is (an unknown action)
 *   payload          the new payload (may be invalid JSON on purpose)
 *   echo             "true": the new payload is a JSON object describing the
 *                    event as the plugin saw it
 *   stream, kafka_topic, priority, key   route changes
 *   route_field      a number: set_route on that field (an unknown one)
 *   error            given to set_error
 *   cleanup_counter  the address of an int that cleanup increments
 *   sleep_ms         milliseconds each call takes (a plugin that hangs)
 */
#define _POSIX_C_SOURCE 200809L  /* nanosleep */
#include <edgesync/plugin.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SETTINGS 16

struct scripted {
  size_t count;
  char *name[MAX_SETTINGS];
  char *value[MAX_SETTINGS];
};

static const char *setting(const struct scripted *s, const char *name) {
  for (size_t i = 0; i < s->count; i++) {
    if (strcmp(s->name[i], name) == 0) return s->value[i];
  }
  return NULL;
}

static char *copy(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = malloc(n);
  if (c != NULL) memcpy(c, s, n);
  return c;
}

static void scripted_cleanup(void *state) {
  struct scripted *s = state;
  const char *counter = setting(s, "cleanup_counter");
  if (counter != NULL) ++*(int *)(uintptr_t)strtoull(counter, NULL, 0);
  for (size_t i = 0; i < s->count; i++) {
    free(s->name[i]);
    free(s->value[i]);
  }
  free(s);
}

static void *scripted_init(const struct edgesync_setting *settings, size_t count, char *error,
                           size_t error_size) {
  if (count > MAX_SETTINGS) {
    snprintf(error, error_size, "at most %d settings", MAX_SETTINGS);
    return NULL;
  }
  struct scripted *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  for (size_t i = 0; i < count; i++) {
    s->name[i] = copy(settings[i].name);
    s->value[i] = copy(settings[i].value);
    s->count++;
  }
  return s;
}

/* A growing JSON text in a fixed buffer (events in the test are small). */
struct text {
  char buf[4096];
  size_t len;
};

static void put(struct text *t, const char *s, size_t n) {
  if (t->len + n < sizeof t->buf) {
    memcpy(t->buf + t->len, s, n);
    t->len += n;
  }
}

static void put_string(struct text *t, const char *s, size_t n) {
  put(t, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\') put(t, "\\", 1);
    put(t, s + i, 1);
  }
  put(t, "\"", 1);
}

static void put_member(struct text *t, const char *key, const char *value, size_t n) {
  put(t, ",", 1);
  put_string(t, key, strlen(key));
  put(t, ":", 1);
  put_string(t, value, n);
}

static void echo(const struct edgesync_event *e, struct edgesync_output *out) {
  struct text t = {.len = 0};
  char number[64];
  int n = snprintf(number, sizeof number, "{\"received_at_us\":%lld,\"payload_is_json\":%d",
                   (long long)e->received_at_us, e->payload_is_json);
  put(&t, number, (size_t)n);
  put_member(&t, "topic", e->topic, e->topic_len);
  put_member(&t, "payload", e->payload, e->payload_len);
  put_member(&t, "stream", e->stream, strlen(e->stream));
  put_member(&t, "kafka_topic", e->kafka_topic, strlen(e->kafka_topic));
  put_member(&t, "priority", e->priority, strlen(e->priority));
  put_member(&t, "key", e->key, strlen(e->key));
  put(&t, ",\"properties\":[", 15);
  for (size_t i = 0; i < e->property_count; i++) {
    if (i > 0) put(&t, ",", 1);
    put(&t, "[", 1);
    put_string(&t, e->properties[i].name, strlen(e->properties[i].name));
    put(&t, ",", 1);
    put_string(&t, e->properties[i].value, strlen(e->properties[i].value));
    put(&t, "]", 1);
  }
  put(&t, "]}", 2);
  out->set_payload(out, t.buf, t.len);
}

static int scripted_process(void *state, const struct edgesync_event *event, struct edgesync_output *out) {
  const struct scripted *s = state;
  static const struct {
    const char *name;
    int field;
  } routes[] = {{"stream", EDGESYNC_ROUTE_STREAM},
                {"kafka_topic", EDGESYNC_ROUTE_KAFKA_TOPIC},
                {"priority", EDGESYNC_ROUTE_PRIORITY},
                {"key", EDGESYNC_ROUTE_KEY}};
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    const char *v = setting(s, routes[i].name);
    if (v != NULL) out->set_route(out, routes[i].field, v, strlen(v));
  }
  const char *field = setting(s, "route_field");
  if (field != NULL) out->set_route(out, atoi(field), "x", 1);
  const char *payload = setting(s, "payload");
  if (payload != NULL) out->set_payload(out, payload, strlen(payload));
  const char *echo_setting = setting(s, "echo");
  if (echo_setting != NULL && strcmp(echo_setting, "true") == 0) echo(event, out);
  const char *error = setting(s, "error");
  if (error != NULL) out->set_error(out, error);

  const char *sleep_ms = setting(s, "sleep_ms");
  if (sleep_ms != NULL) {
    long ms = atol(sleep_ms);
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  const char *action = setting(s, "action");
  if (action == NULL || strcmp(action, "keep") == 0) return EDGESYNC_KEEP;
  if (strcmp(action, "drop") == 0) return EDGESYNC_DROP;
  if (strcmp(action, "dead_letter") == 0) return EDGESYNC_DEAD_LETTER;
  return atoi(action);
}

static const struct edgesync_plugin scripted_plugin = {
    .abi_version = EDGESYNC_PLUGIN_ABI_VERSION,
    .name = "scripted",
    .init = scripted_init,
    .process = scripted_process,
    .cleanup = scripted_cleanup,
};

EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin *edgesync_plugin_describe(void) {
  return &scripted_plugin;
}
