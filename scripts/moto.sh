#!/usr/bin/env bash
# Starts or stops moto's server on a free loopback port, tracked by PID in a directory.
#   scripts/moto.sh start DIR   -> prints the URL; writes DIR/moto.pid and DIR/moto.url
#   scripts/moto.sh stop DIR    -> stops the server started in DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
cmd=${1:?start or stop}
dir=${2:?directory for the pid file}
case "$cmd" in
start)
  mkdir -p "$dir"
  port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$py" -m moto.server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 300); do
    if "$py" -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      echo "$url" >"$dir/moto.url"
      echo "$url"
      exit 0
    fi
    kill -0 "$(cat "$dir/moto.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "moto did not start; its log:" >&2
  cat "$dir/moto.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$dir/moto.pid" ]; then
    pid=$(cat "$dir/moto.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/moto.pid"
  fi
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
