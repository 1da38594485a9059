# SPDX-License-Identifier: MIT
#
# The table `make seeds` ends with: every SEED|thread|policy|outcome|figure
# line the studies printed (studies/study.h), in the order they came, as a
# Markdown table (README.md shows it as printed).  awk -F'|' -f summary.awk LOG
function pad(s, w) {
	while (length(s) < w)
		s = s " "
	return s
}

$1 == "SEED" && NF == 5 {
	n++
	for (i = 2; i <= 5; i++) {
		cell[n, i] = $i
		if (length($i) > width[i])
			width[i] = length($i)
	}
	if ($4 == "UNEXPECTED")
		bad++
	next
}

END {
	head[2] = "thread"; head[3] = "policy"; head[4] = "outcome"; head[5] = "key figure"
	for (i = 2; i <= 5; i++) {
		if (length(head[i]) > width[i])
			width[i] = length(head[i])
		rule[i] = ""
		while (length(rule[i]) < width[i])
			rule[i] = rule[i] "-"
	}
	print ""
	print "==> Summary of every study"
	for (r = -1; r <= n; r++) {
		if (r == 0)
			continue
		line = "|"
		for (i = 2; i <= 5; i++)
			line = line " " pad(r < 0 ? head[i] : cell[r, i], width[i]) " |"
		print line
		if (r < 0) {
			line = "|"
			for (i = 2; i <= 5; i++)
				line = line "-" rule[i] "-|"
			print line
		}
	}
	printf("%d outcomes, %d unexpected\n", n, bad)
}
