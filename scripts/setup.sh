#!/usr/bin/env bash
# Installs what engine needs on a Debian 12 machine (as root) into ./.venv; idempotent.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --test   also the test and peer tools (docker CLI is expected on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0; [ "${1:-}" = "--test" ] && want_test=1

debs=(python3 python3-venv python3-dev gcc libc6-dev libseccomp-dev pkg-config nftables iproute2 ca-certificates tini)
if [ $want_test = 1 ]; then
  debs+=(containerd runc crun skopeo docker-registry busybox-static util-linux procps psmisc openssl apache2-utils)
fi
missing=()
for p in "${debs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The distribution registry and containerd come as services; we run our own on loopback in tests.
if [ $want_test = 1 ]; then
  systemctl disable --now docker-registry containerd >/dev/null 2>&1 || true
fi

# A dedicated venv on Debian's python: the pyenv shim on PATH costs ~40 ms per start.
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv .venv
fi
extra=""; [ $want_test = 1 ] && extra="[test,dev]"
stamp=".venv/.installed$extra"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] || [ engine/native/build.py -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip setuptools wheel cffi
  # compat mode: a plain path entry in a .pth, not an import-hook finder (which costs ~8 ms at every start
  # of every venv python, engine-runtime included)
  .venv/bin/pip install -q -e ".$extra" --config-settings editable_mode=compat
  touch "$stamp"
fi
# Byte-compile up front: where PYTHONDONTWRITEBYTECODE is set, every engine-runtime start would otherwise
# recompile its modules (~27 ms).
.venv/bin/python -m compileall -q -j 2 engine >/dev/null
