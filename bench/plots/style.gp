# The look every plot of bench/RESULTS.md shares; each bench/plots/*.gp
# loads it first. script/bench runs gnuplot from the repository root as
#   gnuplot -e "data='bench/data'; stamp='MACHINE, DATE, commit C'" \
#           bench/plots/NAME.gp > bench/plots/NAME.svg
# data: the directory of the benchmarks' --series files (default bench/data);
# stamp: where and when they were measured, printed under each plot.
if (!exists("data")) data = "bench/data"
if (!exists("stamp")) stamp = ""
set terminal svg size 720,400 dynamic noenhanced font "sans,11" background rgb "white"
set datafile separator "\t"
set key top right box opaque
set grid xtics ytics lc rgb "#dddddd" lt 1
set border 3
set tics nomirror
set bmargin 5
set label 100 stamp at screen 0.99, screen 0.03 right font "sans,9" tc rgb "#555555"
# The agent in blue, its baseline in orange, variants in green and purple.
set linetype 1 lc rgb "#1f77b4" lw 2 pt 7 ps 0.8
set linetype 2 lc rgb "#ff7f0e" lw 2 pt 5 ps 0.8
set linetype 3 lc rgb "#2ca02c" lw 2 pt 9 ps 0.8
set linetype 4 lc rgb "#9467bd" lw 2 pt 11 ps 0.8
set linetype 5 lc rgb "#d62728" lw 1 dt 2
