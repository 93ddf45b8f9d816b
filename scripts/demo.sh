#!/usr/bin/env bash
# The main job, as root on a fresh Debian 12 machine: install, start the engine daemon on its defaults
# (/var/lib/engine, /run/engine, the embedded SQLite journal), drive it with the real docker CLI and ctr,
# run a container with engine's OCI runtime, and show the journal: who did what, when.
#   scripts/demo.sh          leaves the daemon running (stop it with: kill $(cat /run/engine/engine.pid))
#   scripts/demo.sh --stop   stops it at the end
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test   # the docker CLI is expected on PATH; ctr, runc and busybox come from Debian
ENGINE=$PWD/.venv/bin/engine
export DOCKER_HOST=unix:///run/engine/docker.sock
mkdir -p /run/engine /var/log
if ! curl -sf --unix-socket /run/engine/docker.sock http://engine/_ping >/dev/null 2>&1; then
  echo "== starting: engine daemon (log: /var/log/engine.log)"
  setsid "$ENGINE" daemon >>/var/log/engine.log 2>&1 < /dev/null &
  echo $! > /run/engine/engine.pid
  for _ in $(seq 100); do
    curl -sf --unix-socket /run/engine/docker.sock http://engine/_ping >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
echo "== docker version (the real docker CLI against engine)"
docker version
echo "== docker info"
docker info 2>/dev/null | sed -n '1,25p'
echo "== ctr (Debian's containerd client) against engine's containerd socket"
ctr --address /run/engine/containerd.sock version
ctr --address /run/engine/containerd.sock namespaces create "demo-$$" owner=demo 
ctr --address /run/engine/containerd.sock namespaces ls
echo "== an image built offline from Debian's busybox-static (skopeo), imported and unpacked by engine"
work=$(mktemp -d /tmp/engine-demo-XXXX)
.venv/bin/python - "$work" <<'PY'
import sys
from tests.support.rootfs import build_busybox_rootfs
build_busybox_rootfs(sys.argv[1] + "/rootfs")
PY
tar -C "$work/rootfs" -cf "$work/layer.tar" .
skopeo copy -q "tarball:$work/layer.tar" "oci-archive:$work/busybox.tar:busybox:demo"
ctr --address /run/engine/containerd.sock images import --base-name busybox "$work/busybox.tar"
ctr --address /run/engine/containerd.sock images ls
echo "== a container run through the daemon (ctr run: containers, snapshots, tasks, a shim, engine's runtime)"
ctr --address /run/engine/containerd.sock run --rm busybox:demo "demo-$$" \
  sh -c 'echo "hello from a container: $(hostname), pid $$, rootfs $(ls / | wc -l) entries"'
rm -rf "$work"
echo "== the journal: who did what, when"
"$ENGINE" journal tail -n 10
"$ENGINE" journal verify
if [ "${1:-}" = "--stop" ]; then
  kill "$(cat /run/engine/engine.pid)"
  echo "== daemon stopped"
else
  echo "== the daemon keeps running: DOCKER_HOST=$DOCKER_HOST; stop it with: kill \$(cat /run/engine/engine.pid)"
fi
