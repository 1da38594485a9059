# SPDX-License-Identifier: MIT
#
# The table `make bench` ends with: every SUMMARY|goal|ours|peer|ratio|met
# line of the benchmarks' output (see bench/README.md), in the order they
# came, then how many goals were met.  Run as: awk -F'|' -f summary.awk LOG
function pad(s, w) {
	while (length(s) < w)
		s = s " "
	return s
}

$1 == "SUMMARY" && NF == 6 {
	n++
	if ($6 == "yes") {
		met++
		$6 = "met"
	} else if ($6 == "no") {
		missed++
		$6 = "NOT MET"
	} else if ($6 ~ /^est\./) {
		estimated++	# a goal judged only by a full-size run
	} else {
		shown++
	}
	for (i = 2; i <= 6; i++) {
		cell[n, i] = $i
		if (length($i) > width[i])
			width[i] = length($i)
	}
	next
}

$1 == "SUMMARY" {
	bad++
}

END {
	head[2] = "goal"; head[3] = "ours"; head[4] = "peer"; head[5] = "ratio"; head[6] = "met"
	for (i = 2; i <= 6; i++) {
		if (length(head[i]) > width[i])
			width[i] = length(head[i])
		rule[i] = ""
		while (length(rule[i]) < width[i])
			rule[i] = rule[i] "-"
	}
	print ""
	print "==> Summary of every benchmark"
	for (r = -1; r <= n; r++) {
		if (r == 0)
			continue
		line = ""
		for (i = 2; i <= 6; i++)
			line = line (i < 6 ? pad(r < 0 ? head[i] : cell[r, i], width[i]) "  " : \
				     (r < 0 ? head[i] : cell[r, i]))
		print line
		if (r < 0) {
			line = ""
			for (i = 2; i <= 6; i++)
				line = line rule[i] (i < 6 ? "  " : "")
			print line
		}
	}
	printf("%d goals met, %d not met, %d figures shown without a goal", met, missed, shown)
	if (estimated)
		printf(", %d estimated and not judged", estimated)
	if (bad)
		printf("; %d malformed SUMMARY lines", bad)
	print ""
}
