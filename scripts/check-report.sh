#!/usr/bin/env bash
# Open a graft HTML report in headless Chromium, take a screenshot, and check that the page
# logged no errors and that the screenshot is not blank (enough distinct colours, not mostly
# one colour). Needs Debian's chromium (apt-get install chromium) and python3 with Pillow.
# Usage: scripts/check-report.sh REPORT.html [SCREENSHOT.png]
set -euo pipefail
report=$(readlink -f "$1"); shot=${2:-${report%.html}.png}
profile=$(mktemp -d); log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT
chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --enable-logging=stderr --v=0 \
  --window-size=1200,2400 --screenshot="$shot" "file://$report" 2>"$log" || { cat "$log"; exit 1; }
if grep -E "CONSOLE|Uncaught|SyntaxError" "$log" | grep -v "^$" ; then echo "page logged errors" >&2; exit 1; fi
python3 - "$shot" <<'PY'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
colors = im.getcolors(maxcolors=1 << 20) or []
top = max(c for c, _ in colors) / (im.width * im.height)
print(f"screenshot {sys.argv[1]}: {im.width}x{im.height}, {len(colors)} distinct colours, most common covers {top:.0%}")
if len(colors) < 50 or top > 0.97:
    sys.exit("screenshot looks blank")
PY
