# SPDX-License-Identifier: MIT
# Study 000: per release rule and close order, where the guest pages went
# (removed the slow way, reclaimed after the release) and what leaked, per
# run.  gnuplot -e "csv='...'; out='...'" studies/study_000.gp
set terminal svg size 860,460 dynamic font "sans,11"
set output out
set datafile separator ","
set title "Study 000: HKID release against fd-close order (32 private pages)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
set ylabel "pages per run (mean)"
set yrange [0:*]
set grid ytics
set xtics rotate by -20 font ",9"
plot csv using 5:xtic(sprintf("%s: %s", strcol(1), strcol(2))) every ::1 title "removed (slow path)", \
     csv using 6 every ::1 title "reclaimed after the release", \
     csv using ($9) every ::1 title "most pages leaked in one run"
