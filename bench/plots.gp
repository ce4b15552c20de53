# bench/plots.gp - the charts of bench/RESULTS.md, drawn by bench/plot.sh
# from the data files it writes into bench/plots/data (the current
# directory); outdir is set on the command line.
set terminal pngcairo size 960,600 enhanced font "DejaVu Sans,11"
set grid xtics ytics mxtics mytics lc rgb "#dddddd"
set key top left box opaque
set style line 1 lc rgb "#1f77b4" lw 2 pt 7 ps 1.1
set style line 2 lc rgb "#d62728" lw 2 pt 5 ps 1.1
set style line 3 lc rgb "#2ca02c" lw 2 pt 9 ps 1.2
set style line 4 lc rgb "#9467bd" lw 2 pt 11 ps 1.2
set style line 5 lc rgb "#7f7f7f" lw 2 dt 2 pt 13 ps 1.1
set style line 6 lc rgb "#ff7f0e" lw 2 dt 3 pt 6 ps 1.1
cores = "2 cores: past 2 processes\nthe machine time-shares"

# ---- queue against producers and consumers -------------------------------
set output outdir."/queue_pc.png"
set title "mproc Queue, 64-byte messages: throughput against the number of processes"
set xlabel "processes k (k→k: k producers and k consumers)"
set ylabel "million messages per second"
set xrange [0.8:8.2]
set xtics 1
set yrange [0:*]
set arrow 1 from 2, graph 0 to 2, graph 1 nohead lc rgb "#888888" dt 2
set label 1 cores at 2.1, graph 0.93 tc rgb "#555555"
set key below horizontal
plot "queue_pc.dat" u 1:2 w lp ls 1 t "k→k, put / get", \
     "" u 1:3 w lp ls 2 t "1→k", \
     "" u 1:4 w lp ls 3 t "k→1", \
     "" u 1:5 w lp ls 4 t "k→k, put\\_many / get\\_many (64)"
unset arrow 1
unset label 1

# ---- queue against message size --------------------------------------------
set output outdir."/queue_size.png"
set title "mproc Queue, 1 producer → 1 consumer: against the message size"
set xlabel "message size (bytes)"
set ylabel "million messages per second"
set y2label "MB per second"
set logscale x 2
set logscale y 10
set logscale y2 10
set format y "%g"
set format y2 "%g"
set xrange [6:1.5e6]
set xtics ("8" 8, "32" 32, "128" 128, "512" 512, "2K" 2048, "8K" 8192, \
           "32K" 32768, "128K" 131072, "512K" 524288, "1M" 1048576)
set yrange [*:*]
set ytics nomirror
set y2tics
set key inside top center
plot "queue_size.dat" u 1:2 w lp ls 1 t "messages/s (left)", \
     "" u 1:3 axes x1y2 w lp ls 2 t "MB/s (right)"

# ---- pool map against item size ---------------------------------------------
set output outdir."/pool_size.png"
set title "mproc Pool(2).map over byte items: against the item size"
set xlabel "item size (bytes); each task returns 8 bytes"
set ylabel "items per second"
set y2label "MB of input per second"
plot "pool_size.dat" u 1:2 w lp ls 1 t "items/s (left)", \
     "" u 1:3 axes x1y2 w lp ls 2 t "MB/s (right)"
unset logscale
unset y2tics
unset y2label
set ytics mirror
set xtics autofreq

# ---- pool map against workers ------------------------------------------------
set output outdir."/pool_workers.png"
set title "mproc Pool(w).map of 10^5 8-byte items: against the number of workers"
set xlabel "workers w"
set ylabel "million items per second"
set xrange [0.8:8.2]
set xtics 1
set yrange [0:*]
set key inside top right
set arrow 1 from 2, graph 0 to 2, graph 1 nohead lc rgb "#888888" dt 2
set label 1 cores at 2.1, graph 0.2 tc rgb "#555555"
plot "pool_workers.dat" u 1:($2/1e6) w lp ls 1 t "map, bytes path"
unset arrow 1
unset label 1

# ---- start time against the parent's size ----------------------------------
set output outdir."/process_rss.png"
set title "Process start + join against the parent's resident size"
set xlabel "parent's resident memory (MiB, touched anonymous pages)"
set ylabel "microseconds per start + join"
set xrange [-30:1060]
set xtics (0, 64, 256, 512, 1024)
set logscale y 10
set format y "%.0f"
set yrange [*:*]
set key below horizontal
plot "process_rss.dat" u 1:2 w lp ls 1 t "mproc fork", \
     "" u 1:5 w lp ls 5 t "raw fork + waitpid (floor of fork)", \
     "" u 1:4 w lp ls 3 t "mproc forkserver", \
     "" u 1:3 w lp ls 2 t "mproc spawn", \
     "" u 1:6 w lp ls 6 t "raw posix\\_spawn + waitpid (floor of spawn)"
unset logscale
set format y "% h"

# ---- memory of an idle pool worker ---------------------------------------------
set output outdir."/pool_rss.png"
set title "Memory of one idle worker of Pool(4), fork start method"
set xlabel ""
set ylabel "KiB per worker"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xrange [*:*]
set xtics autofreq
set yrange [0:*]
set key inside top right
plot "pool_rss.dat" u 2:xtic(1) t "resident (VmRSS)" lc rgb "#1f77b4", \
     "" u 3 t "proportional (Pss: shared pages divided)" lc rgb "#ff7f0e"

# ---- every figure against its floor and CPython --------------------------------
set output outdir."/ratios.png"
set terminal pngcairo size 1800,720 enhanced font "DejaVu Sans,10"
set title "mproc's speed ÷ the peer's, per figure (above 1: mproc is faster; log scale)"
set ylabel "mproc speed ÷ peer speed"
set format y "%g"
set datafile separator "\t"
set datafile missing "-"
set logscale y 10
set yrange [0.05:2000]
set xtics rotate by -35 left
set bmargin 9
set key inside top right
set arrow 2 from graph 0, first 1 to graph 1, first 1 nohead lc rgb "#333333" lw 1.5
plot "ratios.tsv" u 2:xtic(1) t "vs the raw floor" lc rgb "#7f7f7f", \
     "" u 3 t "vs CPython 3.11 / 3.13" lc rgb "#2ca02c"
