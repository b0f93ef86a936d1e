#!/usr/bin/env bash
# Post-processing of a result bundle (the original's scheduled worker / gen_html.sh): writes each
# user's report as a standalone HTML page, <out>/<period>_html/<user>.html, and an index, for
# sites that publish reports as static files. Run it from a timer or `sbatch --begin`.
#
#   export-html.sh RESULTS_DIR [OUT_DIR] [PERIOD_START]
#
# Without PERIOD_START the newest bundle is used. Unlike the original, the headers are not cut
# off by line count: `<user>.mail` is the HTML body on its own; `.empty` users are skipped.
set -euo pipefail
results=${1:?usage: export-html.sh RESULTS_DIR [OUT_DIR] [PERIOD_START]}
out=${2:-$results}
period=${3:-}
if [[ -z $period ]]; then
  bundle=$(ls -1 "$results"/*.tar.gz 2>/dev/null | sort -t/ -k2 | tail -n 1 || true)
  [[ -n $bundle ]] || { echo "export-html: no bundle in $results" >&2; exit 1; }
  period=$(basename "$bundle" .tar.gz)
fi
bundle=$results/$period.tar.gz
[[ -f $bundle ]] || { echo "export-html: $bundle not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 700 "$work"
tar -xzf "$bundle" -C "$work"
dest=$out/${period}_html
mkdir -p "$dest"
{
  echo "<!doctype html><meta charset=utf-8><title>turingwatch reports, period $period</title><ul>"
  for mail in "$work"/*.mail; do
    [[ -e $mail ]] || continue
    user=$(basename "$mail" .mail)
    [[ -e $work/$user.empty ]] && continue
    cp "$mail" "$dest/$user.html"
    echo "<li><a href=\"$user.html\">$user</a></li>"
  done
  echo "</ul>"
} >"$dest/index.html"
echo "export-html: $(ls -1 "$dest" | grep -vc '^index.html$') reports in $dest"
