#!/bin/sh
# Entry point of the zv-gateway node image (deploy/Dockerfile).
#
#   (no arguments) or options    check the config, then become `zvg node run` with those options
#   any other command            run it instead (e.g. `zvg keys generate ...`, `zvg --version`)
#
# The config is $ZVG_CONFIG (default /etc/zvg/node.toml). `zvg node check-config` refuses a bad
# config, missing or group-readable key files and, in production mode, example keys — the
# container then exits with status 2 and one readable line, before anything starts. `exec` makes
# the node PID 1's replacement, so `docker stop` (SIGTERM) reaches it and it drains cleanly.
set -eu

ZVG_CONFIG=${ZVG_CONFIG:-/etc/zvg/node.toml}

case "${1:-}" in
    "" | -*) ;;
    *) exec "$@" ;;
esac

zvg node check-config --config "$ZVG_CONFIG"
exec zvg node run --config "$ZVG_CONFIG" "$@"
