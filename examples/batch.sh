#!/usr/bin/env bash
# Stylize every clip in a folder with one model load, then score every result against its source
# in one evaluate call. Keeps going past clips that fail; a re-run skips finished clips.
#
#   examples/batch.sh CLIPS_DIR OUT_DIR "ink wash painting" [extra vidforge stylize options...]
#
# Writes OUT_DIR/NAME.mp4 for every clip NAME.* (mp4, mov, mkv, webm, gif... or a PNG-sequence
# folder) and OUT_DIR/metrics.json. Exits 1 if any clip failed or could not be scored, 2 on a usage
# error. For per-clip styles, prompts or models, write a JOBS file (examples/jobs.jsonl) and run
# `vidforge batch`.
set -uo pipefail

usage="usage: batch.sh CLIPS_DIR OUT_DIR STYLE [options...]"
clips=${1:?$usage}
out=${2:?$usage}
style=${3:?$usage}
shift 3
vidforge=${VIDFORGE:-vidforge}

"$vidforge" stylize "$clips" --style "$style" --output-dir "$out" --skip-existing "$@"
status=$?
[ "$status" -eq 2 ] && exit 2

# Pair each output with its source, in the same order, as two lists evaluate reads.
: > "$out/outputs.txt"
: > "$out/sources.txt"
for clip in "$clips"/*; do
    name=$(basename "$clip")
    [ -e "$out/${name%.*}.mp4" ] || continue
    realpath "$out/${name%.*}.mp4" >> "$out/outputs.txt"
    realpath "$clip" >> "$out/sources.txt"
done
[ -s "$out/outputs.txt" ] || exit 1

# score the frames that were stylized (--max-frames may have shortened the results)
score=()
args=("$@")
for i in "${!args[@]}"; do
    [ "${args[$i]}" = "--max-frames" ] && score=(--max-frames "${args[$((i + 1))]}")
done
"$vidforge" evaluate "$out/outputs.txt" --source "$out/sources.txt" "${score[@]}" --json \
    > "$out/metrics.json" || status=1
exit "$status"
