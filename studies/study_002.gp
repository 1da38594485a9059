# SPDX-License-Identifier: MIT
# Study 002: simulated TD shutdown seconds per policy (the library's cost
# model, fitted on row 1) against the published rows.
# gnuplot -e "csv='...'; out='...'" studies/study_002.gp
set terminal svg size 720,440 dynamic font "sans,12"
set output out
set datafile separator ","
set key bottom right
set title "Study 002: TD shutdown (rows: 4 vCPUs/18 GB, 32/107 GB, 64/400 GB)"
set xlabel "guest memory (GiB)"
set ylabel "shutdown seconds"
set logscale y
set grid
set xrange [0:420]
pick(c) = strcol(1) eq "default" ? column(c) : NaN
plot csv using 4:(pick(5)) every ::1 with linespoints lw 2 pt 7 title "model: dynamic (default order)", \
     csv using 4:(pick(6)) every ::1 with linespoints lw 2 pt 5 title "model: deferred (RFC option 2)", \
     csv using 4:(pick(7)) every ::1 with linespoints lw 2 dt 2 pt 4 title "model: terminate first (option 1)", \
     csv using 4:(pick(8)) every ::1 with points pt 9 ps 1.8 lc rgb "black" title "published: before", \
     csv using 4:(pick(9)) every ::1 with points pt 11 ps 1.8 lc rgb "dark-red" title "published: after"
