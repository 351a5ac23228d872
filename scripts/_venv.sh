# Sourced by scripts/*: the project's environment, installed from the lock only.
#
# uv.lock pins every runtime and dev dependency with its hashes. uv (itself
# pinned with hashes in scripts/uv-requirements.txt) is installed into .uv/,
# then `uv sync --locked` makes .venv match uv.lock exactly; a pyproject.toml
# that no longer agrees with uv.lock is an error, never a silent re-resolve
# (refresh the lock with scripts/lock). The sync is skipped while the lock,
# the Python version and the extras are those of the last one.

# $python: the interpreter .venv is made with ($PYTHON, else python3), >= 3.11.
_check_python() {
    python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "ws-supervisor needs Python >= 3.11 (found: $("$python" --version 2>&1))" >&2
        exit 1
    fi
}

_hash() { cat "$@" | sha256sum | cut -c1-16; }

# .uv/bin/uv, at the version scripts/uv-requirements.txt pins.
ensure_uv() {
    local python stamp
    _check_python
    stamp=".uv/.installed-$(_hash scripts/uv-requirements.txt)"
    if [ ! -x .uv/bin/uv ] || [ ! -f "$stamp" ]; then
        echo "== installing uv into .uv (scripts/uv-requirements.txt)"
        rm -rf .uv
        "$python" -m venv .uv
        .uv/bin/python -m pip install --quiet --quiet --no-deps --require-hashes \
            -r scripts/uv-requirements.txt
        touch "$stamp"
    fi
}

# .venv as uv.lock says, with the given extra ("dev") or none. With no extra
# the sync is inexact: a .venv that also holds the dev extras keeps them.
ensure_venv() {
    local extras="${1:-}" python version stamp
    _check_python
    ensure_uv
    version=$("$python" -c 'import sys; print(sys.implementation.cache_tag, sys.version.split()[0])')
    stamp=".venv/.synced-$(_hash uv.lock scripts/uv-requirements.txt <(echo "$version"))-${extras:-base}"
    if [ -f "$stamp" ]; then
        return
    fi
    echo "== installing the locked packages into .venv (uv sync --locked${extras:+ --extra $extras})"
    local args=(sync --locked --no-python-downloads --python "$python" --quiet)
    if [ -n "$extras" ]; then args+=(--extra "$extras"); else args+=(--inexact); fi
    UV_PROJECT_ENVIRONMENT=.venv .uv/bin/uv "${args[@]}"
    rm -f .venv/.synced-*
    touch "$stamp"
}

# A Debian package's command, installed with apt-get when missing (as root,
# or with sudo -n): the servers the tests start on loopback ports.
ensure_debian_command() {
    local command="$1" package="$2"
    if command -v "$command" >/dev/null 2>&1; then
        return
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "$command is missing and this user cannot install it: install the Debian package $package" >&2
            exit 1
        fi
        sudo="sudo -n"
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$command is missing and there is no apt-get: install $package so that $command is on PATH" >&2
        exit 1
    fi
    echo "== installing $package (apt-get)"
    if [ -z "${_APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$package" >/dev/null
    command -v "$command" >/dev/null 2>&1 || { echo "$command still missing after apt-get install $package" >&2; exit 1; }
}

# The cluster tests start their own redis-server on loopback ports.
ensure_redis_server() {
    ensure_debian_command redis-server redis-server
}

# The cluster tests put a real HAProxy in front of the daemons
# (tests/cluster/test_cluster_haproxy.py): Debian's haproxy, in /usr/sbin.
ensure_haproxy() {
    if [ -x /usr/sbin/haproxy ]; then
        return
    fi
    ensure_debian_command haproxy haproxy
}

# The page's browser tests (tests/integration/test_ui.py) drive a headless
# Chromium over the DevTools protocol: Debian's chromium, run as
# /usr/lib/chromium/chromium.
ensure_chromium() {
    ensure_debian_command chromium chromium
}

# The alert rules' checks and the dashboard's test run Debian's promtool and a
# throwaway prometheus on a loopback port. On a systemd host the package's
# postinst starts a system Prometheus on 0.0.0.0:9090: when this installed it,
# that service is stopped and disabled again (the tests never use it).
ensure_prometheus() {
    if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
        return
    fi
    local had_service=""
    if command -v systemctl >/dev/null 2>&1 && systemctl cat prometheus.service >/dev/null 2>&1; then
        had_service=1
    fi
    ensure_debian_command promtool prometheus
    command -v prometheus >/dev/null 2>&1 || { echo "prometheus still missing after apt-get install prometheus" >&2; exit 1; }
    if [ -z "$had_service" ] && command -v systemctl >/dev/null 2>&1 \
        && systemctl is-active --quiet prometheus.service 2>/dev/null; then
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo -n"
        $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
}
