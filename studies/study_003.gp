# SPDX-License-Identifier: MIT
# Study 003: per busy policy and race, what the same schedules cost: busy
# answers and fault retries per run, and runs that surfaced an error.
# gnuplot -e "csv='...'; out='...'" studies/study_003.gp
set terminal svg size 760,420 dynamic font "sans,12"
set output out
set datafile separator ","
set title "Study 003: busy SEAMCALLs per policy, same schedules"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set ylabel "per run / runs"
set yrange [0:*]
set grid ytics
set xtics rotate by -20
plot csv using 5:xtic(stringcolumn(1)." / ".stringcolumn(2)) every ::1 title "busy answers per run", \
     csv using 7 every ::1 title "fault retries per run", \
     csv using 12 every ::1 title "runs with an error surfaced"
