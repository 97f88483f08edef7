// The [mqtt] options and their descriptions. Apart from ingest.cpp, so
// that loading the configuration does not link libmosquitto's client (the
// broker plugin loads the configuration inside the broker).
#include "agent/ingest.h"

namespace edgesync {

const OptionTable<MqttSettings>& MqttSettings::Options() {
  using M = MqttSettings;
  static const auto* table = &(*new OptionTable<MqttSettings>())  // never freed: a process-long constant
      .String("mqtt.host", &M::host, "Broker host (the device's local broker).")
      .Int("mqtt.port", &M::port, "Broker port.", 1, 65535)
      .String("mqtt.client_id", &M::client_id,
              "Fixed client id: with a persistent session the broker keeps our queue while we are away.")
      .Int("mqtt.keepalive", &M::keepalive, "MQTT keepalive in seconds.", 5, 65535)
      .Int("mqtt.qos", &M::qos,
           "QoS of the subscriptions. 1: at least once (QoS 2 publishes arrive at QoS 1: libmosquitto acknowledges QoS 2 before the agent sees the message).",
           0, 1)
      .String("mqtt.protocol", &M::protocol, "MQTT protocol version: \"5\" or \"3.1.1\".", {"5", "3.1.1"})
      .Seconds("mqtt.session_expiry", &M::session_expiry,
               "MQTT 5: how long the broker keeps the agent's session and queue while it is away.")
      .Int("mqtt.receive_maximum", &M::receive_maximum,
           "MQTT 5: messages the broker may send before the agent acknowledges them.", 1, 65535)
      .String("mqtt.username", &M::username, "User name, if the broker wants one.")
      .String("mqtt.password_file", &M::password_file,
              "File holding the password (its first line). The password is never in the config or the log.")
      .String("mqtt.ca_file", &M::ca_file, "CA certificate(s) to verify the broker with; setting it turns TLS on.")
      .String("mqtt.cert_file", &M::cert_file, "Client certificate for mutual TLS (with key_file).")
      .String("mqtt.key_file", &M::key_file, "Client private key for mutual TLS (with cert_file).")
      .String("mqtt.tls_version", &M::tls_version, "Lowest TLS version accepted.", {"tlsv1.2", "tlsv1.3"})
      .String("mqtt.status_topic", &M::status_topic,
              "Retained \"online\"/\"offline\" status, \"offline\" also as the last will. Default: \"edgesync/<client_id>/status\".")
      .Size("mqtt.max_packet_size", &M::max_packet_size,
            "MQTT 5: the largest message the broker may send the agent, announced when it connects (the broker drops larger ones; the broker drop-in refuses them from publishers). Bounds what one message costs in memory. At least mqtt.max_payload + 64KiB.",
            128 << 10, 256 << 20);
  return *table;
}

}  // namespace edgesync
