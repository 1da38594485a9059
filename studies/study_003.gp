# SPDX-License-Identifier: MIT
# Study 003: per busy policy and race, what the same schedules cost: busy
# answers, fault retries and kicks per run, and runs that went bad (an error
# surfaced, a bugged VM or a leaked page).
# gnuplot -e "csv='...'; out='...'" studies/study_003.gp
set terminal svg size 820,460 dynamic font "sans,12"
set output out
set datafile separator ","
set title "Study 003: busy SEAMCALLs per policy, same schedules"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key above horizontal
set ylabel "per run / % of schedules"
set yrange [0:*]
set grid ytics
set xtics rotate by -20
plot csv using 5:xtic(stringcolumn(1)." / ".stringcolumn(2)) every ::1 title "busy answers per run", \
     csv using 7 every ::1 title "fault retries per run", \
     csv using 8 every ::1 title "kicks per run", \
     csv using (100 * $12 / $3) every ::1 title "bad runs, % of schedules"
