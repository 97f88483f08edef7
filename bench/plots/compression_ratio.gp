# Bytes on the wire per payload byte by batch size (edgesync-bench-envelope
# --series): the encrypted envelope (zstd -3) / the events' payload bytes,
# without a dictionary (the baseline) and with a 16 KiB trained one, for the
# generator's events (random ids) and the template events. Blocks of
# compression_ratio.tsv: 0 generator, 1 generator + dictionary, 2 template,
# 3 template + dictionary.
load "bench/plots/style.gp"
f = data . "/compression_ratio.tsv"
set title "Envelope size / payload size by batch size, with and without a dictionary"
set xlabel "events per batch (log scale)"
set ylabel "envelope bytes per payload byte (log scale)"
set logscale xy
set format y "%g"
set key top right
set yrange [0.01:30]  # room above the payload line for the key
plot f index 0 using 1:2 with linespoints lt 2 title "payment events (random ids), no dictionary", \
     f index 1 using 1:2 with linespoints lt 1 title "payment events (random ids), 16 KiB dictionary", \
     f index 2 using 1:2 with linespoints lt 2 dt 2 title "template events, no dictionary", \
     f index 3 using 1:2 with linespoints lt 1 dt 2 title "template events, 16 KiB dictionary", \
     1 with lines lt 5 title "as large as the payload"
