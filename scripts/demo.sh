#!/usr/bin/env bash
# The main job, as root on a fresh Debian 12 machine with no internet: install, start the engine daemon on
# its defaults (/var/lib/engine, /run/engine, the embedded SQLite journal), make a busybox image offline
# from Debian's busybox-static through `engine import`, run containers with engine's own CLI, the real
# docker CLI (when on PATH) and Debian's ctr, and show the journal: who did what, when.
#   scripts/demo.sh          leaves the daemon running (stop it with: kill $(cat /run/engine/engine.pid))
#   scripts/demo.sh --stop   stops it at the end
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test   # busybox-static, ctr, runc come from Debian; the docker CLI is used if on PATH
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
"$ENGINE" version

echo "== a busybox image, made offline from Debian's busybox-static (engine import)"
work=$(mktemp -d /tmp/engine-demo-XXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/root"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$work/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"$ENGINE" import --change 'CMD ["sh"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$work/busybox.tar" busybox:latest
"$ENGINE" images

echo "== engine run --rm busybox echo hello"
"$ENGINE" run --rm busybox echo hello

echo "== a detached container, exec, logs, stop"
"$ENGINE" run -d --name demo-web busybox sh -c 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done' >/dev/null
sleep 0.7
"$ENGINE" ps
"$ENGINE" exec demo-web sh -c 'echo "inside: $(hostname), pid 1 is $(cat /proc/1/comm)"'
"$ENGINE" logs --tail 2 demo-web
"$ENGINE" rm -f demo-web >/dev/null

if command -v docker >/dev/null 2>&1; then
  echo "== the real docker CLI against engine (DOCKER_HOST=$DOCKER_HOST)"
  docker run --rm busybox sh -c 'echo "hello from docker run: $(uname -s) $(id -un)"'
  docker info 2>/dev/null | sed -n '1,12p'
fi

echo "== Debian's ctr against engine's containerd socket (Docker's objects are in namespace moby)"
ctr --address /run/engine/containerd.sock namespaces ls
ctr --address /run/engine/containerd.sock -n moby images ls -q

echo "== the journal: who did what, when"
"$ENGINE" journal tail -n 12
"$ENGINE" journal verify

cat <<EOF
== done. With internet, images come from Docker Hub as with Docker:
     $ENGINE pull alpine          (or: docker pull alpine, with DOCKER_HOST=$DOCKER_HOST)
   Point the docker CLI or docker-py at engine:
     export DOCKER_HOST=$DOCKER_HOST
EOF
if [ "${1:-}" = "--stop" ]; then
  kill "$(cat /run/engine/engine.pid)"
  echo "== daemon stopped"
else
  echo "== the daemon keeps running; stop it with: kill \$(cat /run/engine/engine.pid)"
fi
