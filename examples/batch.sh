#!/usr/bin/env bash
# Stylize every clip in a folder, score each result, and keep going past failures.
#
#   examples/batch.sh CLIPS_DIR OUT_DIR "ink wash painting" [extra vidforge stylize options...]
#
# vidforge exits 0 on success, 1 on a runtime error (bad file, missing weights), 2 on a usage error;
# with --json it prints one JSON object on stdout, so results can be collected line by line.
# Exits 1 if any clip failed; the failures are listed in OUT_DIR/failed.txt.
set -uo pipefail

clips=${1:?usage: batch.sh CLIPS_DIR OUT_DIR STYLE [options...]}
out=${2:?usage: batch.sh CLIPS_DIR OUT_DIR STYLE [options...]}
style=${3:?usage: batch.sh CLIPS_DIR OUT_DIR STYLE [options...]}
shift 3
vidforge=${VIDFORGE:-vidforge}

mkdir -p "$out"
: > "$out/results.jsonl"
: > "$out/failed.txt"

for clip in "$clips"/*.mp4; do
    [ -e "$clip" ] || { echo "no .mp4 files in $clips" >&2; exit 2; }
    name=$(basename "$clip" .mp4)
    result="$out/$name.mp4"
    if json=$("$vidforge" stylize "$clip" --style "$style" -o "$result" --overwrite --json --quiet "$@" \
        2>> "$out/errors.log"); then
        echo "$json" >> "$out/results.jsonl"
        # score the frames that were stylized (--max-frames may have shortened the result)
        frames=$(echo "$json" | sed -n 's/.*"frames": \([0-9]*\).*/\1/p')
        "$vidforge" evaluate "$result" --source "$clip" --max-frames "$frames" --json \
            > "$out/$name.metrics.json" 2>> "$out/errors.log" \
            || echo "$clip: evaluate failed (exit $?)" >> "$out/failed.txt"
    else
        code=$?
        echo "$clip: stylize failed (exit $code)" >> "$out/failed.txt"
        [ "$code" -eq 2 ] && { echo "usage error, stopping: see $out/errors.log" >&2; exit 2; }
    fi
done

done_count=$(wc -l < "$out/results.jsonl")
failed_count=$(wc -l < "$out/failed.txt")
echo "$done_count stylized, $failed_count failed -> $out" >&2
[ "$failed_count" -eq 0 ]
