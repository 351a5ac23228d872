# Sourced by scripts/*: make .venv if missing and install the project into it.
# The install is skipped while pyproject.toml is unchanged since the last one.

ensure_venv() {
    local extras="${1:-}"
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "ws-supervisor needs Python >= 3.11 (found $("$python" --version 2>&1))" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "== creating .venv"
        "$python" -m venv .venv
    fi
    local spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    local stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras:-base}"
    if [ ! -f "$stamp" ]; then
        echo "== installing $spec into .venv"
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e "$spec"
        touch "$stamp"
    fi
}

# The cluster tests start their own redis-server on loopback ports; make sure the
# binary is there. On a fresh Debian machine it comes from apt (as root, or sudo -n).
ensure_redis_server() {
    if command -v redis-server >/dev/null 2>&1; then
        return
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "redis-server is missing and this user cannot install it: install the Debian package redis-server" >&2
            exit 1
        fi
        sudo="sudo -n"
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "redis-server is missing and there is no apt-get: install Redis >= 6.2 so that redis-server is on PATH" >&2
        exit 1
    fi
    echo "== installing redis-server (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    command -v redis-server >/dev/null 2>&1 || { echo "redis-server still missing after apt-get" >&2; exit 1; }
}
