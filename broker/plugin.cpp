// The edgesync broker plugin for mosquitto 2.0 (plugin API v5): makes each
// event the agent's streams claim durable in the agent's spool before the
// broker acknowledges the publish (agent/spool.h; docs/architecture.md,
// "Broker-plugin ingest").
//
// mosquitto.conf:
//   plugin /usr/lib/edgesync/edgesync_broker.so
//   plugin_opt_config /etc/edgesync/edgesync.toml
//
// Facts of mosquitto 2.0.11 this relies on (src/handle_publish.c,
// src/plugin.c, src/loop.c; checked against Debian's binary by
// tests/integration/broker_plugin_test.cpp):
//  - MOSQ_EVT_MESSAGE runs for every PUBLISH a client sends, on the
//    broker's one thread, before the message is stored or queued and before
//    the PUBACK/PUBREC.
//  - A return of MOSQ_ERR_ACL_DENIED answers the publisher "not authorized"
//    and drops the message: never used here, it would lose the event.
//  - Any other error return frees the message, sends no acknowledgement and
//    closes the publisher's connection (src/loop.c do_disconnect; the code
//    chooses only the log line: ADMINISTRATIVE_ACTION's is "been
//    disconnected by administrative action"); the publisher sends the
//    message again when it reconnects. That is the plugin's backpressure.
//  - MOSQ_EVT_TICK runs once per pass of the broker's main loop (at least
//    about once a second), only without per_listener_settings.
//  - Under per_listener_settings the plugin's callbacks are those of the
//    listener it is configured in: load it where the publishers connect.
//  - The broker exports the mosquitto_* functions the plugin calls
//    (callback_register/unregister, free, log_printf, property_read_string
//    and _string_pair): the module does not link libmosquitto's client.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include "agent/config.h"
#include "agent/spool.h"
#include "agent/triage.h"

namespace {

using edgesync::IngestMessage;
using edgesync::SpoolWriter;

struct PluginState {
  mosquitto_plugin_id_t* id = nullptr;
  std::unique_ptr<SpoolWriter> writer;
  size_t max_property_bytes = 0;
  IngestMessage scratch;
};

// Copies the MQTT 5 properties the agent keeps (content type, user
// properties within the agent's limits: ingest.cpp's rule) into `m`.
void ReadProperties(const mosquitto_property* props, size_t max_bytes, IngestMessage* m,
                    std::string* content_type) {
  m->user_properties.clear();
  m->user_property_count = 0;
  m->user_property_bytes = 0;
  content_type->clear();
  if (props == nullptr) return;
  char* ct = nullptr;
  if (mosquitto_property_read_string(props, MQTT_PROP_CONTENT_TYPE, &ct, false) != nullptr && ct != nullptr) {
    content_type->assign(ct);
  }
  mosquitto_free(ct);
  char *name = nullptr, *value = nullptr;
  const mosquitto_property* p = mosquitto_property_read_string_pair(props, MQTT_PROP_USER_PROPERTY, &name, &value, false);
  while (p != nullptr) {
    const size_t bytes = (name ? std::strlen(name) : 0) + (value ? std::strlen(value) : 0) + 4;
    ++m->user_property_count;
    m->user_property_bytes += bytes;
    if (m->user_property_count <= edgesync::kMaxUserProperties && m->user_property_bytes <= max_bytes) {
      m->user_properties.emplace_back(name ? name : "", value ? value : "");
    }
    mosquitto_free(name);
    mosquitto_free(value);
    name = value = nullptr;
    p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, true);
  }
}

int OnMessage(int, void* event_data, void* userdata) {
  auto* st = static_cast<PluginState*>(userdata);
  auto* ev = static_cast<mosquitto_evt_message*>(event_data);
  try {
    IngestMessage& m = st->scratch;
    std::string content_type;
    ReadProperties(ev->properties, st->max_property_bytes, &m, &content_type);
    m.topic = ev->topic ? ev->topic : "";
    m.payload = std::string_view(static_cast<const char*>(ev->payload), ev->payload ? ev->payloadlen : 0);
    m.content_type = content_type;
    m.qos = ev->qos;
    m.received_at_us = 0;  // now
    std::string why;
    bool episode_start = false;
    switch (st->writer->OnMessage(m, &why, &episode_start)) {
      case SpoolWriter::Outcome::kStored:
        return MOSQ_ERR_SUCCESS;
      case SpoolWriter::Outcome::kIgnored:
        if (!why.empty()) mosquitto_log_printf(MOSQ_LOG_WARNING, "edgesync: %s", why.c_str());
        return MOSQ_ERR_SUCCESS;
      case SpoolWriter::Outcome::kRefused:
        if (episode_start) {
          mosquitto_log_printf(MOSQ_LOG_WARNING, "edgesync: refusing publishes until the spool takes them again: %s",
                               why.c_str());
        }
        // Not ACL_DENIED: that would answer the publisher and drop the
        // event. This closes its connection unacknowledged; it sends again
        // (the broker logs "disconnected by administrative action").
        return MOSQ_ERR_ADMINISTRATIVE_ACTION;
    }
  } catch (const std::exception& e) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: a publish was refused (it will be sent again): %s", e.what());
  } catch (...) {
    // Nothing may unwind into the broker's C code.
    mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: a publish was refused (it will be sent again): unknown error");
  }
  return MOSQ_ERR_ADMINISTRATIVE_ACTION;
}

int OnTick(int, void*, void* userdata) {
  auto* st = static_cast<PluginState*>(userdata);
  try {
    const std::string line = st->writer->Tick();
    if (!line.empty()) mosquitto_log_printf(MOSQ_LOG_NOTICE, "%s", line.c_str());
  } catch (const std::exception& e) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: on tick: %s", e.what());
  } catch (...) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: on tick: unknown error");
  }
  return MOSQ_ERR_SUCCESS;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int mosquitto_plugin_version(int supported_version_count,
                                                                     const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

__attribute__((visibility("default"))) int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** userdata,
                                                                  struct mosquitto_opt* options, int option_count) {
  std::string config_path;
  for (int i = 0; i < option_count; ++i) {
    if (options[i].key && std::strcmp(options[i].key, "config") == 0 && options[i].value) {
      config_path = options[i].value;
    } else {
      mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: unknown option plugin_opt_%s (the only one is plugin_opt_config)",
                           options[i].key ? options[i].key : "");
      return MOSQ_ERR_INVAL;
    }
  }
  if (config_path.empty()) {
    mosquitto_log_printf(MOSQ_LOG_ERR,
                         "edgesync: plugin_opt_config is missing: name the agent's configuration, e.g. "
                         "plugin_opt_config /etc/edgesync/edgesync.toml");
    return MOSQ_ERR_INVAL;
  }
  try {
    // No check of kafka.properties: it would load librdkafka into the
    // broker. The agent checks them when it loads the same file.
    edgesync::Result<edgesync::Config> config =
        edgesync::LoadConfig(config_path, "", edgesync::Env::Default(), /*check_kafka_property=*/nullptr);
    if (!config.ok()) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: %s: %s", config_path.c_str(), config.status().ToString().c_str());
      return MOSQ_ERR_INVAL;
    }
    if (config->mqtt_mode != "broker-plugin") {
      // The agent would not read the spool: spooling would only fill it and
      // then refuse every publish. Claim nothing, register nothing.
      mosquitto_log_printf(MOSQ_LOG_WARNING,
                           "edgesync: %s has mqtt.mode = \"%s\", not \"broker-plugin\": the plugin spools nothing "
                           "and every publish goes through the broker as usual (the agent subscribes as a client). "
                           "To use the spool set mqtt.mode = \"broker-plugin\" in that file and restart the agent "
                           "and the broker",
                           config_path.c_str(), config->mqtt_mode.c_str());
      *userdata = nullptr;
      return MOSQ_ERR_SUCCESS;
    }
    edgesync::Result<std::unique_ptr<SpoolWriter>> w = SpoolWriter::Create(*config);
    if (!w.ok()) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: %s", w.status().ToString().c_str());
      return MOSQ_ERR_INVAL;
    }
    auto st = std::make_unique<PluginState>();
    st->id = identifier;
    st->writer = std::move(w).value();
    st->max_property_bytes = static_cast<size_t>(config->mqtt_max_payload);
    // Everything that can throw comes before the registrations: once one
    // holds st.get(), nothing may free it on the way out.
    const std::string spool_dir = edgesync::SpoolDir(config->state_dir);
    int rc = mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, OnMessage, nullptr, st.get());
    if (rc != MOSQ_ERR_SUCCESS) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: registering the message callback failed (%d)", rc);
      return rc;
    }
    rc = mosquitto_callback_register(identifier, MOSQ_EVT_TICK, OnTick, nullptr, st.get());
    if (rc != MOSQ_ERR_SUCCESS) {
      // The broker must not call OnMessage with the state freed below.
      mosquitto_callback_unregister(identifier, MOSQ_EVT_MESSAGE, OnMessage, nullptr);
      mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: registering the tick callback failed (%d)", rc);
      return rc;
    }
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "edgesync: spooling the streams of %s to %s", config_path.c_str(),
                         spool_dir.c_str());
    *userdata = st.release();
    return MOSQ_ERR_SUCCESS;
  } catch (const std::exception& e) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: %s", e.what());
    return MOSQ_ERR_UNKNOWN;
  } catch (...) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "edgesync: starting the plugin failed: unknown error");
    return MOSQ_ERR_UNKNOWN;
  }
}

__attribute__((visibility("default"))) int mosquitto_plugin_cleanup(void* userdata, struct mosquitto_opt*, int) {
  auto* st = static_cast<PluginState*>(userdata);
  if (st == nullptr) return MOSQ_ERR_SUCCESS;
  mosquitto_callback_unregister(st->id, MOSQ_EVT_MESSAGE, OnMessage, nullptr);
  mosquitto_callback_unregister(st->id, MOSQ_EVT_TICK, OnTick, nullptr);
  delete st;  // the writer closes its segment for the agent (synced); destructors throw nothing
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
