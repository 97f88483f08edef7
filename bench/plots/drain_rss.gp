# RSS over time while the agent drains its backlog of 1,000,000 events into
# Kafka (edgesync-bench-drain --series): VmRSS every 10 ms of the median
# run, beside kcat -P producing the same records to the same cluster.
# Blocks of drain_rss.tsv: 0 agent, 1 kcat.
load "bench/plots/style.gp"
f = data . "/drain_rss.tsv"
set title "RSS during the drain of a 1,000,000-event backlog to Kafka: agent vs kcat -P"
set xlabel "time since the spawn (s)"
set ylabel "resident memory, VmRSS (MiB)"
set xrange [0:*]
set yrange [0:*]
set offsets 0, 0, graph 0.3, 0  # room above the lines for the key
set key top left
plot f index 1 using 1:2 with lines lt 2 title "baseline: kcat -P -z zstd, until it exits", \
     f index 0 using 1:2 with lines lt 1 title "agent: edgesync run, until its store is empty", \
     24 with lines lt 5 title "goal: agent <= 24 MiB"
