# Ingest rate over time (edgesync-bench-ingest --series): events/s every
# 0.1 s of the median run, the agent's two runs beside mosquitto_sub -q 1
# on the same broker with the same publisher. Blocks of ingest_rate.tsv:
# 0 agent to Kafka, 1 agent durable, 2 baseline.
load "bench/plots/style.gp"
f = data . "/ingest_rate.tsv"
set title "Ingest rate over time: agent vs mosquitto_sub -q 1 (QoS 1, 300-byte JSON, same run)"
set xlabel "time since the first publish (s)"
set ylabel "events/s (over each 0.1 s)"
set xrange [0:*]
set yrange [0:*]
set offsets 0, 0, graph 0.3, 0  # room above the lines for the key
plot f index 2 using 1:2 with lines lt 2 title "baseline: mosquitto_sub -q 1", \
     f index 0 using 1:2 with lines lt 1 title "agent to Kafka (decoded by edgesync-unpack)", \
     f index 1 using 1:2 with lines lt 3 title "agent durable (in the store, Kafka down)"
