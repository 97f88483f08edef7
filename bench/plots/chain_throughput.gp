# Filter chain throughput (edgesync-bench-chain --markdown --series): events/s
# on one core through each fleet profile's chain, beside parsing alone with
# the same JSON library (the baseline) and simdjson's DOM parser, medians of
# the repetitions. chain_throughput.tsv: a row a chain.
load "bench/plots/style.gp"
f = data . "/chain_throughput.tsv"
set title "Filter chain throughput on one core (goal: >= 0.5 M events/s and 0.5 of parse-only)"
set xlabel "chain (fleet profile)"
set ylabel "million events/s"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
# Headroom above the tallest bar for the key.
stats f using 4 nooutput
set yrange [0:STATS_max / 1e6 * 1.4]
set grid noxtics ytics
set key top left horizontal maxcols 2
plot f using ($2 / 1e6):xtic(1) lt 1 title "chain: parse, plugins, write back", \
     "" using ($3 / 1e6) lt 2 title "baseline: parse only (Json::Parse)", \
     "" using ($4 / 1e6) lt 4 title "simdjson DOM parse (reference)", \
     0.5 with lines lt 5 title "goal: 0.5 M events/s"
