#!/usr/bin/env bash
# What `make test` needs from the system, installed when missing: PostgreSQL's and Redis's server binaries (the suite
# starts private servers from them, tests/servers.py) and Debian's chromium (the dashboard's browser tests). As root
# it installs the missing Debian packages; otherwise it prints the command to run and fails, unless only chromium is
# missing (its tests then skip, except under CI).
set -euo pipefail

have_postgres() {
  local d
  for d in "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")" /usr/lib/postgresql/*/bin \
           "$(pg_config --bindir 2>/dev/null || true)"; do
    [[ -n "$d" && -x "$d/initdb" && -x "$d/postgres" ]] && return 0
  done
  return 1
}

missing=()
have_postgres || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
[[ -x "${TAAS_TEST_CHROMIUM:-/usr/bin/chromium}" ]] || missing+=(chromium)
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "installing Debian's ${missing[*]} (apt-get install -y ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
  exit 0
fi

if [[ "${missing[*]}" == chromium ]]; then
  echo "no chromium: the browser tests will skip (to run them: sudo apt-get install -y chromium)"
  exit 0
fi
echo "make test needs PostgreSQL's and Redis's server binaries (it starts private servers from them)." \
  "As root it installs Debian's packages itself; otherwise run:" >&2
echo "sudo apt-get install -y postgresql redis-server" >&2
exit 1
