#!/usr/bin/env bash
# Make the working tree small enough for the GPU machine, and put it back afterwards.
#
#   scripts/device-slim.sh on     # before the device tool's `run`
#   scripts/device-slim.sh off    # right after it (and before any commit)
#   scripts/device-slim.sh        # says which state the tree is in
#
# The device tool copies the tracked and the untracked-but-not-ignored files, at most 64 MiB.
# The repository tracks more than that (models/ ~70 MB with the three EfficientNet-Lite
# checkpoints, meta_dataset/ ~21 MB), and a GPU check needs none of the meta-dataset, the Lite1
# and Lite2 checkpoints or docs/. `on` takes those out of git's index only (the files stay on
# disk, untouched) and lists them in .git/info/exclude, so the tool leaves them behind; `off`
# puts them back in the index from HEAD and removes the exclude lines. While `on`, `git status`
# shows them as deleted: never commit in that state.
set -euo pipefail
cd "$(dirname "$0")/.."
PATHS=(meta_dataset docs models/efficientnet-lite1-imagenet.safetensors models/efficientnet-lite2-imagenet.safetensors)
EXCL=.git/info/exclude
MARK="# device-slim (scripts/device-slim.sh off removes these)"
say() { echo "device-slim: $*" >&2; }
size() { git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1; }

case "${1:-status}" in
on)
    git diff --cached --quiet || { say "the index has staged changes; commit or unstage them first"; exit 1; }
    grep -qF "$MARK" "$EXCL" 2>/dev/null && { say "already on"; exit 0; }
    git rm -r -q --cached -- "${PATHS[@]}"
    { echo "$MARK"; for p in "${PATHS[@]}"; do echo "/$p"; done; } >> "$EXCL"
    say "on: tracked files now $(( $(size) / 1048576 )) MiB (add the carried binary, ~12-15 MiB); run 'scripts/device-slim.sh off' when done"
    ;;
off)
    if grep -qF "$MARK" "$EXCL" 2>/dev/null; then
        python3 - "$EXCL" "$MARK" <<'PY'
import sys
path, mark = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines()
out, skip = [], False
for l in lines:
    if l == mark:
        skip = True
        continue
    if skip and l.startswith("/"):
        continue
    skip = False
    out.append(l)
open(path, "w").write("\n".join(out) + "\n")
PY
    fi
    git reset -q HEAD -- "${PATHS[@]}"
    say "off: tracked files $(( $(size) / 1048576 )) MiB; git status: $(git status --porcelain | wc -l) changed paths"
    ;;
status)
    if grep -qF "$MARK" "$EXCL" 2>/dev/null; then say "on"; else say "off"; fi
    say "tracked files: $(( $(size) / 1048576 )) MiB"
    ;;
*)
    say "usage: scripts/device-slim.sh on|off|status"
    exit 2
    ;;
esac
