# Shared setup for the README's two commands (scripts/test, scripts/demo). Source it; do not run it.
# Every step is idempotent and cheap the second time.

ZVG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZVG_VENV="$ZVG_ROOT/.venv"
ZVG_AMQP_HOST=127.0.0.1
ZVG_AMQP_PORT=5672

say() { printf 'zvg: %s\n' "$*" >&2; }
die() { printf 'zvg: error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
    # apt_install PKG...: install Debian packages when we are root, else say what to run.
    is_root || die "missing $*; run: sudo apt-get update && sudo apt-get install -y $*"
    say "installing Debian packages: $*"
    if [ -z "${ZVG_APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
        ZVG_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

ensure_pip() {
    # pip in .venv (made without it), from the Python's own ensurepip.
    "$ZVG_VENV/bin/python" -m pip --version >/dev/null 2>&1 \
        || "$ZVG_VENV/bin/python" -m ensurepip -q >/dev/null 2>&1
}

ensure_venv() {
    # ensure_venv [EXTRA]: creates .venv and installs the client distribution (clients/python) and
    # the project with the extra named, when a pyproject.toml changed: by default `test` (the
    # development tools; scripts/test), `fhir` for scripts/demo (GGZ's FHIR adapter), which
    # needs no test tools (it passes `fhir,console`).
    local extra="${1-test}" py
    py=$(command -v python3 || true)
    [ -n "$py" ] || apt_install python3 python3-venv
    "${py:-python3}" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "Python 3.11 or newer is needed (found $(python3 --version 2>&1))"
    if [ ! -x "$ZVG_VENV/bin/python" ]; then
        # Without ensurepip's pip (seconds of a fresh clone's run): uv installs pip below
        # (tests/deploy builds wheels with it); ensure_pip adds it where uv cannot be had.
        say "creating virtualenv in .venv"
        python3 -m venv --without-pip "$ZVG_VENV" 2>/dev/null \
            || { apt_install python3-venv && python3 -m venv --without-pip "$ZVG_VENV"; } \
            || die "could not create .venv"
    fi
    local stamp want project
    stamp="$ZVG_VENV/.zvg-installed${extra:+-$extra}"
    want=$(cat "$ZVG_ROOT/pyproject.toml" "$ZVG_ROOT/clients/python/pyproject.toml" | sha256sum | cut -d' ' -f1)
    project="$ZVG_ROOT${extra:+[$extra]}"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing zv-gateway${extra:+ with its $extra extras} into .venv (first run takes half a minute)"
        # uv resolves and installs several times faster than pip (a fresh clone's first run is
        # part of CI's time); pip stays the fallback when uv cannot be installed or fails.
        # uv comes from this Python's pip (or the virtualenv's, once ensurepip made it).
        if { [ -x "$ZVG_VENV/bin/uv" ] \
            || python3 -m pip --python "$ZVG_VENV/bin/python" install -q uv >/dev/null 2>&1 \
            || { ensure_pip && "$ZVG_VENV/bin/python" -m pip install -q uv >/dev/null 2>&1; }; } \
            && "$ZVG_VENV/bin/uv" pip install -q --python "$ZVG_VENV/bin/python" \
                pip -e "$ZVG_ROOT/clients/python" -e "$project"; then
            :
        else
            say "uv did not install the project; falling back to pip"
            ensure_pip || die "could not install pip into .venv (python3 -m ensurepip)"
            "$ZVG_VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
            "$ZVG_VENV/bin/python" -m pip install -q -e "$ZVG_ROOT/clients/python" -e "$project" \
                || die "pip install failed"
        fi
        echo "$want" >"$stamp"
    fi
}

amqp_answers() {
    # True when something speaking AMQP 0-9-1 answers on 127.0.0.1:5672.
    python3 - "$ZVG_AMQP_HOST" "$ZVG_AMQP_PORT" <<'PY' 2>/dev/null
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        s.settimeout(3)
        frame = s.recv(7)
except OSError:
    sys.exit(1)
sys.exit(0 if frame[:1] == b"\x01" else 1)
PY
}

configure_rabbitmq_loopback() {
    # A fresh Debian install listens on all interfaces; keep it on loopback only.
    mkdir -p /etc/rabbitmq
    if ! grep -qs NODE_IP_ADDRESS /etc/rabbitmq/rabbitmq-env.conf && ! grep -qs ERL_EPMD_ADDRESS /etc/rabbitmq/rabbitmq-env.conf; then
        printf 'NODE_IP_ADDRESS=127.0.0.1\nERL_EPMD_ADDRESS=127.0.0.1\n' >>/etc/rabbitmq/rabbitmq-env.conf
    fi
    if ! grep -qs '^listeners.tcp' /etc/rabbitmq/rabbitmq.conf; then
        printf 'listeners.tcp.default = 127.0.0.1:5672\n' >>/etc/rabbitmq/rabbitmq.conf
    fi
}

amqp_listens() {
    # True when something accepts TCP connections on 127.0.0.1:5672 (answering or not).
    python3 - "$ZVG_AMQP_HOST" "$ZVG_AMQP_PORT" <<'PY' 2>/dev/null
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

ensure_rabbitmq() {
    # Makes sure RabbitMQ answers on 127.0.0.1:5672: starts it, installing Debian's package if needed.
    amqp_answers && return 0
    if amqp_listens; then
        # A broker is there but slow to answer (a loaded machine): wait for it; starting a second
        # one on top of it would only fail.
        say "RabbitMQ listens on 127.0.0.1:5672 but has not answered yet; waiting"
        local until=$((SECONDS + 90))
        while [ "$SECONDS" -lt "$until" ]; do
            amqp_answers && return 0
            sleep 1
        done
        die "RabbitMQ listens on 127.0.0.1:5672 but did not answer AMQP within 90 s; see /var/log/rabbitmq/"
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        is_root || die "RabbitMQ is not installed; run: sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached"
        apt_install rabbitmq-server
    fi
    is_root || die "RabbitMQ is not running on 127.0.0.1:5672; run: sudo rabbitmq-server -detached"
    configure_rabbitmq_loopback
    say "starting RabbitMQ (rabbitmq-server -detached)"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 90); do
        if rabbitmq-diagnostics -q ping >/dev/null 2>&1 && amqp_answers; then
            say "RabbitMQ answers after ${i}s"
            return 0
        fi
        sleep 1
    done
    die "RabbitMQ did not answer on 127.0.0.1:5672 within 90 s; see /var/log/rabbitmq/"
}

ZVG_PG_HOST=127.0.0.1
ZVG_PG_PORT=5432
ZVG_PG_ROLE=zvg_test

pg_answers() {
    # True when PostgreSQL accepts connections on 127.0.0.1:5432.
    pg_isready -q -h "$ZVG_PG_HOST" -p "$ZVG_PG_PORT" >/dev/null 2>&1
}

pg_admin() {
    # pg_admin SQL: run SQL as PostgreSQL's superuser (peer auth on the socket as root, else
    # the postgres role over TCP).
    if is_root && id postgres >/dev/null 2>&1; then
        runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$ZVG_PG_PORT" -Atc "$1"
    else
        psql -X -q -v ON_ERROR_STOP=1 -h "$ZVG_PG_HOST" -p "$ZVG_PG_PORT" -U postgres -Atc "$1"
    fi
}

ensure_postgres() {
    # Makes sure PostgreSQL answers on 127.0.0.1:5432 (installing and starting Debian's package
    # when root) and that the test role and database zvg_test exist (tests/pg.py: the role may
    # create one database per pytest worker). The role logs in without a password: only on
    # loopback, as Debian's pg_hba.conf trusts it for tests or as ZVG_TEST_PG says otherwise.
    if ! pg_answers; then
        if ! command -v pg_ctlcluster >/dev/null 2>&1; then
            is_root || die "PostgreSQL is not installed; run: sudo apt-get install -y postgresql"
            apt_install postgresql
        fi
        is_root || die "PostgreSQL is not running on $ZVG_PG_HOST:$ZVG_PG_PORT; run: sudo pg_ctlcluster --help"
        local version
        version=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1}')
        [ -n "$version" ] || die "no PostgreSQL cluster found (pg_lsclusters)"
        say "starting PostgreSQL $version (pg_ctlcluster $version main start)"
        pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
        local i
        for i in $(seq 1 60); do
            pg_answers && break
            sleep 1
        done
        pg_answers || die "PostgreSQL did not answer on $ZVG_PG_HOST:$ZVG_PG_PORT within 60 s"
    fi
    if [ "$(pg_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ZVG_PG_ROLE'")" != 1 ]; then
        say "creating the PostgreSQL test role $ZVG_PG_ROLE"
        pg_admin "CREATE ROLE $ZVG_PG_ROLE LOGIN CREATEDB" || die "cannot create role $ZVG_PG_ROLE"
    fi
    pg_admin "ALTER ROLE $ZVG_PG_ROLE CREATEDB" || die "cannot let $ZVG_PG_ROLE create databases"
    if [ "$(pg_admin "SELECT 1 FROM pg_database WHERE datname = '$ZVG_PG_ROLE'")" != 1 ]; then
        pg_admin "CREATE DATABASE $ZVG_PG_ROLE OWNER $ZVG_PG_ROLE" || die "cannot create database $ZVG_PG_ROLE"
    fi
    psql -X -q -h "$ZVG_PG_HOST" -p "$ZVG_PG_PORT" -U "$ZVG_PG_ROLE" -Atc "SELECT 1" "$ZVG_PG_ROLE" >/dev/null 2>&1 \
        || die "the role $ZVG_PG_ROLE cannot log in on $ZVG_PG_HOST:$ZVG_PG_PORT (pg_hba.conf: trust it on loopback for tests)"
}

ensure_systemd_analyze() {
    # The deployment tests check the systemd unit with systemd-analyze (Debian's systemd
    # package; no systemd needs to run). Installs the package when it is missing and we are root.
    command -v systemd-analyze >/dev/null 2>&1 && return 0
    apt_install systemd
}

ensure_promtool() {
    # Makes sure `promtool` (Debian's `prometheus` package) is on PATH: the metrics and alert-rule
    # tests run it. Only the tool is wanted: where the install started the Prometheus server
    # (a host with systemd), it is stopped and disabled again.
    command -v promtool >/dev/null 2>&1 && return 0
    is_root || die "promtool is not installed; run: sudo apt-get install -y --no-install-recommends prometheus"
    apt_install --no-install-recommends prometheus
    command -v promtool >/dev/null 2>&1 || die "the prometheus package did not install promtool"
    if [ -d /run/systemd/system ] && systemctl is-active --quiet prometheus 2>/dev/null; then
        say "stopping the Prometheus server the package started (only promtool is needed)"
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
}

ensure_weasyprint_libs() {
    # WeasyPrint (the console's log review PDF) loads pango and harfbuzz through cffi: Debian's
    # libpango-1.0-0, libpangoft2-1.0-0 and libharfbuzz-subset0, installed when missing and we are root.
    local missing=() lib
    for lib in libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0; do
        dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q 'ok installed' || missing+=("$lib")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    apt_install --no-install-recommends "${missing[@]}"
}

ensure_node() {
    # Node.js 20 or newer with npm (the console's test OpenID provider); Debian's package when missing.
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' \
        || die "Node.js 20 or newer is needed for the console's test OpenID provider (found $(node --version))"
}

ensure_oidc_provider() {
    # The real OpenID provider the console's OIDC tests start on loopback (tests/console/oidc_provider:
    # the npm package oidc-provider, pinned by the committed package-lock.json): `npm ci` when the
    # lock file changed since the last install.
    local dir="$ZVG_ROOT/tests/console/oidc_provider" stamp want
    ensure_node
    stamp="$dir/node_modules/.zvg-installed"
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing the console tests' OpenID provider (npm ci in tests/console/oidc_provider)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
            || die "npm ci in tests/console/oidc_provider failed"
        echo "$want" >"$stamp"
    fi
}

ensure_chromium() {
    # Debian's headless-capable Chromium (/usr/bin/chromium), the browser the console's browser
    # tests (tests/console/browser) drive with Playwright: never a downloaded browser
    # (`playwright install` is not used).
    [ -x /usr/bin/chromium ] && return 0
    apt_install chromium chromium-driver
}

ensure_axe_core() {
    # axe-core (npm, pinned by tests/console/browser/package-lock.json), injected into every page
    # the browser tests open: `npm ci` when the lock file changed since the last install.
    local dir="$ZVG_ROOT/tests/console/browser" stamp want
    ensure_node
    stamp="$dir/node_modules/.zvg-installed"
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing axe-core for the console's browser tests (npm ci in tests/console/browser)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
            || die "npm ci in tests/console/browser failed"
        echo "$want" >"$stamp"
    fi
}
