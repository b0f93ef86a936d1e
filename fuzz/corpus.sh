#!/usr/bin/env bash
# The fuzz corpora are kept as one compressed archive per target (corpus/<target>.tar.xz), so the
# thousands of small inputs stay out of the repository's file list.
#   fuzz/corpus.sh unpack [target…]   archives -> corpus/<target>/ (before `cargo fuzz run`)
#   fuzz/corpus.sh pack   [target…]   corpus/<target>/ -> archive (after a run or `cargo fuzz cmin`)
set -Eeuo pipefail
cd "$(dirname "$0")/corpus"
verb=${1:-}; shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  for f in ../fuzz_targets/*.rs; do t=${f##*/}; targets+=("${t%.rs}"); done
fi
for t in "${targets[@]}"; do
  case "$verb" in
    unpack)
      [[ -f $t.tar.xz ]] || { echo "corpus.sh: no archive $t.tar.xz" >&2; exit 1; }
      mkdir -p "$t" && tar -xJf "$t.tar.xz"
      echo "$t: $(find "$t" -type f | wc -l) inputs";;
    pack)
      [[ -d $t ]] || { echo "corpus.sh: no corpus directory $t/" >&2; exit 1; }
      tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - "$t" | xz -9 >"$t.tar.xz.tmp"
      mv "$t.tar.xz.tmp" "$t.tar.xz"
      echo "$t: $(find "$t" -type f | wc -l) inputs -> $t.tar.xz ($(stat -c %s "$t.tar.xz") bytes)";;
    *) echo "usage: fuzz/corpus.sh unpack|pack [target…]" >&2; exit 2;;
  esac
done
