#!/bin/bash
# Benchmark: every fuzz target (fuzz/src/bin/) run by libFuzzer, one at a time, until 10 M
# executions each (or for SECONDS each, or N executions); prints executions, executions/s,
# coverage and crashes per target. fuzz/run.sh does the work; see it for the options.
# Usage: benches/fuzz.sh [SECONDS | --execs N]   (about 15 minutes on 2 cores for 10 M each)
exec "$(dirname "$0")/../fuzz/run.sh" "$@"
