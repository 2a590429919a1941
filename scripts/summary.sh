#!/bin/bash
# summary.sh RESULTS [WALL_SECONDS]: the test run's summary from RESULTS, one line per part
# ("NAME<TAB>SECONDS<TAB>pass|FAIL", as scripts/test.sh and tests/vm/lib.sh's vm_part write them):
# each part with its time and result, then the plain closing line CI reads: "N passed, N failed".
# Parts of the VM suite ran in parallel lanes, so their times add up to more than the wall time.
set -euo pipefail
results=$1
wall=${2:-}
echo "== summary"
# Grouped by what comes before the first ": " (lint, host tests, vm dracut, ...), groups in the
# order they first finished, parts within a group in the order they finished.
awk -F '\t' '
    { group = $1; sub(/: .*/, "", group)
      if (!(group in lines)) order[++groups] = group
      lines[group] = lines[group] sprintf("  %-52s %6s s  %s\n", $1, $2, $3) }
    END { for (i = 1; i <= groups; i++) printf "%s", lines[order[i]]
          if (NR == 0) print "  (no parts ran)" }
' "$results"
[ -z "$wall" ] || printf '  %-52s %6s s\n' "wall time" "$wall"
awk -F '\t' '$3 == "pass" { p++ } $3 != "pass" { f++ } END { printf "%d passed, %d failed\n", p, f }' "$results"
