#!/usr/bin/env bash
# Proves the demo works from this checkout: runs scripts/run-dev.sh (setup, cluster, release
# build, server with the distributor, three demo jobs) and waits until
#   - the demo jobs were sampled by the scrapers (the job API shows samples),
#   - their period closed and alice's report mail in dev/mail-out/ names her wasteful jobs,
#   - bob got his mail too,
# all within DEMO_DEADLINE seconds (default 900 = 15 minutes) of this script's start. Prints how
# long each step took. An existing dev/ is moved aside first (dev.saved-<time>), never deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
deadline_secs=${DEMO_DEADLINE:-900}
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
say() { echo "[check-demo +$(elapsed)s] $*"; }
if [[ -e dev ]]; then
  saved="dev.saved-$(date +%s)"
  mv dev "$saved"
  say "moved the existing dev/ to $saved"
fi
mkdir -p dev
log=dev/run-dev.log
setsid bash scripts/run-dev.sh >"$log" 2>&1 &
demo=$!
stop() { kill -TERM -- "-$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; }
trap stop EXIT
fail() {
  say "FAILED: $*"
  echo "--- last lines of $log:"; tail -n 40 "$log"
  echo "--- squeue:"; squeue 2>&1 | head -20 || true
  exit 1
}
wait_for() { # description, command…
  local what=$1; shift
  until "$@"; do
    kill -0 "$demo" 2>/dev/null || fail "run-dev.sh exited while waiting for: $what"
    (($(elapsed) < deadline_secs)) || fail "not within ${deadline_secs}s: $what"
    sleep 5
  done
  say "$what"
}
api() { curl -fsS -H "X-AuthUser: $1" "http://127.0.0.1:8080$2"; }
answers() { curl -fsS -o /dev/null http://127.0.0.1:8080/healthz 2>/dev/null; }
wait_for "server answers" answers
jobs_line() { grep -m1 '^demo job ids:' "$log"; }
wait_for "demo jobs submitted" jobs_line
read -r idle big fine < <(jobs_line | sed 's/^demo job ids: //')
sampled() { # user job: the job's page has sample series (what its plots draw)
  api "$1" "/api/jobs/$2" 2>/dev/null |
    python3 -c 'import json, sys; sys.exit(0 if sum(len(s["t"]) for s in json.load(sys.stdin)["series"]) >= 2 else 1)' 2>/dev/null
}
wait_for "alice's idle job $idle sampled" sampled alice "$idle"
wait_for "bob's job $fine sampled" sampled bob "$fine"
# The decoded text of the mail to <user>@…, if one was written (bodies may be quoted-printable
# or base64).
mail_text() {
  python3 - "$1" <<'PY'
import email, email.policy, glob, sys
for path in sorted(glob.glob("dev/mail-out/*.eml")):
    with open(path, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    if str(msg["To"] or "").split("@")[0].split("<")[-1].strip() == sys.argv[1]:
        print(path)
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                print(part.get_content())
        sys.exit(0)
sys.exit(1)
PY
}
has_mail() { mail_text "$1" >/dev/null; }
wait_for "alice's report mail written" has_mail alice
wait_for "bob's report mail written" has_mail bob
alice_mail=$(mail_text alice)
for name in demo-idle-cpus demo-big-memory; do
  grep -q "$name" <<<"$alice_mail" || fail "alice's mail $(head -1 <<<"$alice_mail") does not name $name"
done
say "alice's mail $(head -1 <<<"$alice_mail") names demo-idle-cpus and demo-big-memory"
say "bob's mail: $(mail_text bob | grep -m1 -iE 'nice|problem|finding' || true)"
say "demo loop complete in $(elapsed)s (deadline ${deadline_secs}s)"
