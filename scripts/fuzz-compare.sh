#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Coverage of two builds of the differential fuzzer, same seed, same
# libFuzzer options, same duration, same machine: by default side by side
# (each gets the same share of a loaded machine), or one after the other.
# Each starts from its own seed corpus and an empty work corpus, so an
# earlier run's inputs count for neither.  Prints, for each, the coverage
# counters (libFuzzer's "cov:") once its seeds ran and at the end, the
# executions, and the ratio of the final counts; and the load average
# before and after.  libFuzzer's counters include each harness's own code:
# with --cov-new/--cov-old (replay builds with clang's source coverage),
# each final corpus is replayed and llvm-cov counts the regions of lib/ and
# backends/ alone that it reaches.  `make fuzz-compare` builds them all and
# calls this.
#
# usage: fuzz-compare.sh --new BIN --new-seeds DIR --old BIN --old-seeds DIR
#        [--cov-new BIN --cov-old BIN] [--seconds N] [--seed N]
#        [--mode concurrent|serial] [--out DIR] [--old-name NAME]
#        [-- LIBFUZZER_OPTIONS...]
set -eu

seconds=600
seed=1
mode=concurrent
out=build/fuzz/compare
old_name=old
new= new_seeds= old= old_seeds= cov_new= cov_old=

usage() {
	sed -n 's/^# \{0,1\}//; /^usage:/,/^$/p' "$0" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--new) new=$2; shift 2 ;;
	--new-seeds) new_seeds=$2; shift 2 ;;
	--old) old=$2; shift 2 ;;
	--old-seeds) old_seeds=$2; shift 2 ;;
	--old-name) old_name=$2; shift 2 ;;
	--cov-new) cov_new=$2; shift 2 ;;
	--cov-old) cov_old=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--mode) mode=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--) shift; break ;;
	*) usage ;;
	esac
done
[ -n "$new" ] && [ -n "$new_seeds" ] && [ -n "$old" ] && [ -n "$old_seeds" ] || usage
case $mode in concurrent|serial) ;; *) usage ;; esac

rm -rf "$out"
mkdir -p "$out/new-corpus" "$out/old-corpus"

# The sanitizers' options of `make check`, for both.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS

run() {	# name binary seeds options...
	name=$1 bin=$2 seeds=$3
	shift 3
	"$bin" -max_total_time="$seconds" -seed="$seed" -artifact_prefix="$out/$name-" \
		"$@" "$out/$name-corpus" "$seeds" >"$out/$name.log" 2>&1
	echo $? >"$out/$name.status"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date -u +%H:%M:%S)
echo "fuzz-compare: $seconds s each, seed $seed, $mode, $(nproc) CPUs, load $load_before, from $start UTC"
if [ "$mode" = concurrent ]; then
	run new "$new" "$new_seeds" "$@" &
	run old "$old" "$old_seeds" "$@" &
	wait
else
	run new "$new" "$new_seeds" "$@"
	run old "$old" "$old_seeds" "$@"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

cov_at() {	# log pattern: the last "cov:" of the lines matching pattern
	grep -a "$2" "$1" | grep -a -o 'cov: [0-9]*' | tail -1 | cut -d' ' -f2
}
stat_of() {	# log name
	grep -a "^stat::$2:" "$1" | tr -s ' ' | cut -d' ' -f2
}

status=0
for name in new old; do
	log=$out/$name.log
	st=$(cat "$out/$name.status")
	inited=$(cov_at "$log" 'INITED')
	final=$(cov_at "$log" 'cov:')
	execs=$(stat_of "$log" number_of_executed_units)
	label=$name
	[ "$name" = old ] && label="old ($old_name)"
	echo "  $label: ${final:-?} counters (${inited:-?} after its $(ls "$(eval echo \$${name}_seeds)" | wc -l) seeds), ${execs:-?} executions, exit $st, log $log"
	[ "$st" = 0 ] || status=1
	eval "${name}_cov=\${final:-0}"
done
echo "fuzz-compare: load $load_before before, $load_after after"
awk -v n="$new_cov" -v o="$old_cov" 'BEGIN {
	if (o > 0) printf "fuzz-compare: counters new/old = %d/%d = %.3f\n", n, o, n / o
	else print "fuzz-compare: no coverage figure for the old harness"
}'

# The library's regions (lib/, backends/) reached by each final corpus.
lib_regions() {	# name cov-binary seeds
	rm -f "$out/$1.profraw"
	LLVM_PROFILE_FILE="$out/$1.profraw" "$2" "$out/$1-corpus" "$3" >"$out/$1-replay.log" 2>&1 ||
		{ echo "?"; return; }
	llvm-profdata merge -o "$out/$1.profdata" "$out/$1.profraw" &&
	llvm-cov report "$2" -instr-profile="$out/$1.profdata" lib backends |
		awk '$1 == "TOTAL" { printf "%d of %d", $2 - $3, $2 }'
}
if [ -n "$cov_new" ] && [ -n "$cov_old" ]; then
	lib_new=$(lib_regions new "$cov_new" "$new_seeds")
	lib_old=$(lib_regions old "$cov_old" "$old_seeds")
	echo "fuzz-compare: library regions reached (lib/, backends/): new $lib_new, old $lib_old"
	awk -v n="${lib_new%% *}" -v o="${lib_old%% *}" 'BEGIN {
		if (o > 0) printf "fuzz-compare: library regions new/old = %.3f\n", n / o
	}'
fi
exit $status
