# SPDX-License-Identifier: MIT
# Study 004: per update_mem_attr design, the share of schedules whose guest
# took an RMP nested fault, and what a run cost in stale-fault retries and
# RMPUPDATEs.  gnuplot -e "csv='...'; out='...'" studies/study_004.gp
set terminal svg size 720,420 dynamic font "sans,12"
set output out
set datafile separator ","
set title "Study 004: RMPUPDATE-vs-fault race, same schedules per design"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set ylabel "per run / percent of schedules"
set yrange [0:*]
set grid ytics
plot csv using 4:xtic(1) every ::1 title "schedules with an RMP #NPF (%)", \
     csv using 7 every ::1 title "stale-fault retries per run", \
     csv using 8 every ::1 title "RMPUPDATEs per run"
