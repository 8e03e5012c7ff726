#!/usr/bin/env bash
# ImageFlow developer commands.
#
#   ./scripts.sh up [--emulators]   run the whole system on http://127.0.0.1:8080 (Ctrl-C stops it)
#   ./scripts.sh down               stop a system started with `up` elsewhere
#   ./scripts.sh test [--slow] [pytest args...]   the whole test suite
#   ./scripts.sh bench [engine|pipeline|peers|backends|bigjob|jpeg_budget]   benchmarks (image engine; pipeline; engine vs peers; local vs emulators; a big open job; a JPEG render step by step)
#   ./scripts.sh deploy [--dry-run] deploy to GKE (see docs/deploy.md)
#   ./scripts.sh teardown [--keep-data] [--dry-run]   remove everything the deploy created
#   ./scripts.sh lock               re-resolve requirements.lock and requirements-dev.lock
#
# Everything needed is installed on first use: a virtualenv in .venv with the pinned
# Python dependencies, the frontend's npm packages and build, and (for `test`) the Debian
# packages the tests drive (chromium, shellcheck, docker-compose).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_venv() {
  # The same locked, hashed versions the images install (requirements.lock is a subset of
  # requirements-dev.lock): a release upstream cannot change what the tests run on.
  local stamp="$VENV/.installed" want
  want="$(cat pyproject.toml requirements-dev.lock | sha256sum | cut -d' ' -f1)"
  if [[ ! -x "$PY" ]]; then
    log "creating virtualenv in .venv"
    python3 -m venv "$VENV"
  fi
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    log "installing Python dependencies (locked in requirements-dev.lock)"
    "$PY" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-dev.lock
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
    "$PY" -m pip check >&2 || { log "the locked environment is inconsistent (pip check)"; exit 1; }
    echo "$want" > "$stamp"
  fi
}

cmd_lock() {
  # Re-resolve both locks from pyproject.toml's pins (a deliberate commit, never at install time).
  local tools
  tools="$(mktemp -d)"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet pip-tools==7.7.0
  local common=(--quiet --allow-unsafe --generate-hashes --no-emit-find-links --no-emit-index-url --strip-extras)
  "$tools/bin/pip-compile" "${common[@]}" --extra=gcp --output-file=requirements.lock pyproject.toml
  "$tools/bin/pip-compile" "${common[@]}" --extra=gcp --extra=test --constraint=requirements.lock \
    --output-file=requirements-dev.lock pyproject.toml requirements-dev.in
  rm -rf "$tools"
}

ensure_frontend() {
  [[ -f frontend/package.json ]] || return 0
  if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: the web page will not be built (the API still works)"
    return 0
  fi
  local stamp="frontend/node_modules/.installed" want
  want="$(sha256sum frontend/package-lock.json 2>/dev/null | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    log "installing frontend packages (npm ci)"
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
  fi
  if [[ ! -f frontend/dist/index.html ]] || [[ -n "$(find frontend/src frontend/public frontend/index.html frontend/package.json frontend/vite.config.js -newer frontend/dist/index.html 2>/dev/null | head -1)" ]]; then
    log "building the web page (vite build)"
    (cd frontend && npm run build --silent)
  fi
}

ensure_apt() {
  # Debian packages the tests drive; installed only when missing (needs root and apt).
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "missing ${missing[*]} (install them with apt-get); the tests that need them will be skipped"
  fi
}

cmd_up() {
  local emulators=0 args=()
  for arg in "$@"; do
    case "$arg" in
      --emulators) emulators=1 ;;
      *) args+=("$arg") ;;
    esac
  done
  ensure_venv
  ensure_frontend
  if [[ $emulators -eq 1 ]]; then
    local envfile
    envfile="$(mktemp)"
    log "starting the Pub/Sub and Firestore emulators and fake-gcs-server"
    "$PY" -m devtools.emulators run --env-file "$envfile" &
    local emu_pid=$!
    trap 'kill -TERM $emu_pid 2>/dev/null; wait $emu_pid 2>/dev/null; rm -f "$envfile"' EXIT
    for _ in $(seq 1 120); do [[ -s "$envfile" ]] && break; sleep 1; done
    [[ -s "$envfile" ]] || { echo "emulators did not start" >&2; exit 1; }
    set -a
    # shellcheck disable=SC1090
    source "$envfile"
    set +a
    "$PY" -m imageflow.setup --push-endpoint "http://127.0.0.1:$(( ${IMAGEFLOW_PORT:-8080} + 3 ))/"
  fi
  exec_or_run "$PY" -m devtools.stack up "${args[@]}"
}

exec_or_run() {
  # With emulators the EXIT trap must run, so no exec.
  if trap -p EXIT | grep -q .; then "$@"; else exec "$@"; fi
}

cmd_down() {
  ensure_venv
  "$PY" -m devtools.stack down
}

cmd_test() {
  local slow=0 args=()
  for arg in "$@"; do
    case "$arg" in
      --slow) slow=1 ;;
      *) args+=("$arg") ;;
    esac
  done
  ensure_venv
  ensure_apt
  ensure_frontend
  if [[ -f frontend/package.json ]] && command -v npm >/dev/null 2>&1; then
    log "frontend component tests (vitest)"
    (cd frontend && npm test --silent)
  fi
  log "Python tests: unit, integration, e2e"
  if [[ $slow -eq 1 ]]; then export IMAGEFLOW_SLOW_TESTS=1; fi
  "$PY" -m pytest -p no:cacheprovider "${args[@]}"
}

cmd_bench() {
  # ./scripts.sh bench [engine|pipeline|peers|backends|bigjob|jpeg_budget] [args...]
  ensure_venv
  local which="${1:-engine}"
  [[ $# -gt 0 ]] && shift
  case "$which" in
    engine|pipeline|peers|backends|bigjob|jpeg_budget) "$PY" -m "bench.$which" "$@" ;;
    *) echo "unknown benchmark: $which (engine, pipeline, peers, backends, bigjob, jpeg_budget)" >&2; exit 2 ;;
  esac
}

cmd_deploy() {
  ensure_venv  # the topology setup command runs with the project's Python dependencies
  PYTHON="${PYTHON:-$PY}" exec bash "$ROOT/scripts/deploy.sh" "$@"
}

cmd_teardown() { cmd_deploy --teardown "$@"; }

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    test) cmd_test "$@" ;;
    bench) cmd_bench "$@" ;;
    deploy) cmd_deploy "$@" ;;
    teardown) cmd_teardown "$@" ;;
    lock) cmd_lock "$@" ;;
    -h|--help|help|"") usage ;;
    *) echo "unknown command: $cmd" >&2; usage; exit 2 ;;
  esac
}

main "$@"
