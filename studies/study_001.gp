# SPDX-License-Identifier: MIT
# Study 001: references on the mirror root and pages leaked at teardown,
# against forced generation wraps, under the v3 code and the merged fix.
# gnuplot -e "csv='...'; out='...'" studies/study_001.gp
set terminal svg size 720,420 dynamic font "sans,12"
set output out
set datafile separator ","
set key top left
set title "Study 001: mirror root across memslot generation wraps (4 vCPUs)"
set xlabel "forced generation wraps"
set ylabel "references on the mirror root"
set y2label "pages leaked at teardown"
set ytics nomirror
set y2tics
set grid
pick(p, c) = strcol(1) eq p ? column(c) : NaN
plot csv using 2:(pick("v3", 5)) every ::1 with linespoints lw 2 title "v3: mirror root references", \
     csv using 2:(pick("merged", 5)) every ::1 with linespoints lw 2 title "merged: mirror root references", \
     csv using 2:(pick("v3", 9)) every ::1 axes x1y2 with linespoints dt 2 lw 2 title "v3: pages leaked", \
     csv using 2:(pick("merged", 9)) every ::1 axes x1y2 with linespoints dt 2 lw 2 title "merged: pages leaked"
