# Disk bytes written per event by publish rate (edgesync-bench-buffer
# --series): the agent's write_bytes over a steady-state window per event
# published, beside the baseline (write() each payload, fdatasync once a
# second) in the same window. Blocks of bytes_per_event.tsv: 0 agent,
# 1 baseline, 2 agent encrypted.
load "bench/plots/style.gp"
f = data . "/bytes_per_event.tsv"
set title "Disk bytes written per 300-byte event, steady state with Kafka up"
set xlabel "publish rate (events/s, log scale)"
set ylabel "bytes written per event (log scale)"
set logscale xy
set format y "%.0f"
plot f index 1 using 1:2 with linespoints lt 2 title "baseline: write() each payload, fdatasync 1/s", \
     f index 0 using 1:2 with linespoints lt 1 title "agent", \
     f index 2 using 1:2 with linespoints lt 3 title "agent, [encryption] on", \
     300 with lines lt 5 title "the payload itself (300 bytes)"
