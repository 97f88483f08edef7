/* A plugin that speaks ABI 1 and ABI 2, so that external_test can see which
 * one the agent chose and use the host services. Test-only. Through ABI 1
 * it sets the event's key to "abi1"; through ABI 2 to "abi2", and then:
 * Settings (all optional):
 *   init_log     a line logged (info) through the host from init
 *   log          a line logged (warning) through the host by every process call
 *   log_repeat   how many times process logs it (default 1)
 *   counter      a counter registered in init; process adds `delta` to it
 *   delta        default 1
 *   echo_sizes   "true": the new payload is a JSON object with the struct
 *                sizes the plugin was given and what it made of them
 * A host table too short for the counter services (an older agent's) is
 * logged and the counting skipped; the event is checked for a member a
 * newer header would append (see struct event_next). */
#include <edgesync/plugin.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* struct edgesync_event_v2 as a later release of the header might have it,
 * with one member appended. Built against that header, the plugin reads
 * `site` only when the agent's event is long enough to hold it. */
struct event_next {
  uint32_t struct_size;
  const char *topic;
  size_t topic_len;
  const char *payload;
  size_t payload_len;
  int payload_is_json;
  int64_t received_at_us;
  const struct edgesync_property *properties;
  size_t property_count;
  const char *stream;
  const char *kafka_topic;
  const char *priority;
  const char *key;
  const char *site; /* appended later */
};

struct negotiating {
  const struct edgesync_host *host; /* NULL through ABI 1 */
  int counter;                      /* -1: none */
  uint64_t delta;
  char *log;
  long log_repeat;
  int echo_sizes;
};

static char *copy(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = malloc(n);
  if (c != NULL) memcpy(c, s, n);
  return c;
}

static void negotiating_cleanup(void *state) {
  struct negotiating *n = state;
  free(n->log);
  free(n);
}

static int host_has_log(const struct edgesync_host *h) {
  return h != NULL && EDGESYNC_HAS(h, struct edgesync_host, log);
}

static int host_has_counters(const struct edgesync_host *h) {
  return h != NULL && EDGESYNC_HAS(h, struct edgesync_host, counter) &&
         EDGESYNC_HAS(h, struct edgesync_host, counter_add);
}

static void *negotiating_init_v2(const struct edgesync_host *host, const struct edgesync_setting *settings,
                                 size_t count, char *error, size_t error_size) {
  struct negotiating *n = calloc(1, sizeof *n);
  if (n == NULL) {
    snprintf(error, error_size, "out of memory");
    return NULL;
  }
  n->host = host;
  n->counter = -1;
  n->delta = 1;
  n->log_repeat = 1;
  const char *counter = NULL;
  for (size_t i = 0; i < count; i++) {
    const char *name = settings[i].name, *value = settings[i].value;
    if (strcmp(name, "init_log") == 0) {
      if (host_has_log(host)) host->log(host->ctx, EDGESYNC_LOG_INFO, value);
    } else if (strcmp(name, "log") == 0) {
      free(n->log);
      n->log = copy(value);
    } else if (strcmp(name, "log_repeat") == 0) {
      n->log_repeat = atol(value);
    } else if (strcmp(name, "counter") == 0) {
      counter = value;
    } else if (strcmp(name, "delta") == 0) {
      n->delta = strtoull(value, NULL, 10);
    } else if (strcmp(name, "echo_sizes") == 0) {
      n->echo_sizes = strcmp(value, "true") == 0;
    }
  }
  if (counter != NULL) {
    if (host_has_counters(host)) {
      n->counter = host->counter(host->ctx, counter);
    } else if (host_has_log(host)) {
      host->log(host->ctx, EDGESYNC_LOG_WARNING, "the agent's host table has no counters: counting nothing");
    }
  }
  return n;
}

static void *negotiating_init_v1(const struct edgesync_setting *settings, size_t count, char *error,
                                 size_t error_size) {
  return negotiating_init_v2(NULL, settings, count, error, error_size);
}

static int negotiating_process_v1(void *state, const struct edgesync_event *event, struct edgesync_output *out) {
  (void)state, (void)event;
  out->set_route(out, EDGESYNC_ROUTE_KEY, "abi1", 4);
  return EDGESYNC_KEEP;
}

static int negotiating_process_v2(void *state, const struct edgesync_event_v2 *event,
                                  struct edgesync_output_v2 *out) {
  const struct negotiating *n = state;
  out->set_route(out, EDGESYNC_ROUTE_KEY, "abi2", 4);
  if (n->log != NULL && host_has_log(n->host)) {
    for (long i = 0; i < n->log_repeat; i++) n->host->log(n->host->ctx, EDGESYNC_LOG_WARNING, n->log);
  }
  if (n->counter >= 0) n->host->counter_add(n->host->ctx, n->counter, n->delta);
  if (n->echo_sizes) {
    const struct event_next *next = (const struct event_next *)event;
    const char *site = EDGESYNC_HAS(next, struct event_next, site) ? "present" : "absent";
    char text[512];
    int len = snprintf(text, sizeof text,
                       "{\"event_size\":%u,\"output_size\":%u,\"host_size\":%u,\"site\":\"%s\","
                       "\"host_has_counters\":%d}",
                       (unsigned)event->struct_size, (unsigned)out->struct_size,
                       (unsigned)(n->host != NULL ? n->host->struct_size : 0), site, host_has_counters(n->host));
    out->set_payload(out, text, (size_t)len);
  }
  return EDGESYNC_KEEP;
}

static const struct edgesync_plugin negotiating_v1 = {
    .abi_version = EDGESYNC_PLUGIN_ABI_1,
    .name = "negotiating",
    .init = negotiating_init_v1,
    .process = negotiating_process_v1,
    .cleanup = negotiating_cleanup,
};

static const struct edgesync_plugin_v2 negotiating_v2 = {
    .abi_version = EDGESYNC_PLUGIN_ABI_2,
    .struct_size = sizeof(struct edgesync_plugin_v2),
    .name = "negotiating",
    .init = negotiating_init_v2,
    .process = negotiating_process_v2,
    .cleanup = negotiating_cleanup,
};

EDGESYNC_PLUGIN_EXPORT size_t edgesync_plugin_abi_versions(const uint32_t **versions) {
  static const uint32_t supported[] = {EDGESYNC_PLUGIN_ABI_1, EDGESYNC_PLUGIN_ABI_2};
  *versions = supported;
  return sizeof supported / sizeof supported[0];
}

EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin *edgesync_plugin_describe(void) { return &negotiating_v1; }

EDGESYNC_PLUGIN_EXPORT const struct edgesync_plugin_v2 *edgesync_plugin_describe_v2(uint32_t abi_version) {
  return abi_version == EDGESYNC_PLUGIN_ABI_2 ? &negotiating_v2 : NULL;
}
