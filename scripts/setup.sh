#!/usr/bin/env bash
# Installs what building and testing turingwatch needs on a fresh Debian 12 machine (as root):
# SLURM (slurmctld, slurmd, slurmdbd, client), munge, MariaDB, Chromium + chromedriver for the
# web tests, wrk for load tests, the aiosmtpd SMTP server (PyPI) for mail tests, reportseff (PyPI)
# for the fidelity tests, bubblewrap (the unit boot test's sandbox) and Postfix, configured
# local-only, whose /usr/sbin/sendmail the sendmail mail transport is tested with; VictoriaMetrics
# and Prometheus, the remote-write receivers the export tests start (never as services).
# Idempotent: installs only what is missing.
set -Eeuo pipefail
trap 'echo "setup.sh: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
pkgs=(munge libmunge-dev mariadb-server slurmctld slurmd slurmdbd slurm-client chromium chromium-driver wrk
      pkg-config gcc python3 python3-pip curl ca-certificates procps iproute2 bubblewrap postfix
      victoria-metrics prometheus)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  # Package scripts must not start services: there is no init system to run them.
  [[ -x /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  export DEBIAN_FRONTEND=noninteractive
  # Postfix asks how to deliver: local only, no listener but loopback, no relay.
  printf '%s\n' 'postfix postfix/main_mailer_type select Local only' 'postfix postfix/mailname string localhost' \
    | debconf-set-selections
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install -q aiosmtpd
# reportseff: the efficiency tool users run, which the fidelity tests compare against.
command -v reportseff >/dev/null || python3 -m pip install -q reportseff
command -v cargo >/dev/null || { echo "setup: cargo not found (a Rust toolchain is required)" >&2; exit 1; }
echo "setup: ok"
