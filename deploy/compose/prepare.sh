#!/usr/bin/env bash
# Prepare the compose federation: ./prepare.sh [--ha] [STATE]   (default: ./state beside this
# script; with --ha, for compose.ha.yaml on PostgreSQL and a broker cluster: ./state-ha)
#
# 1. fresh keys for the three administrators and the five organisations, and the signed demo
#    directory (version 2: members, broker users, policy) — python -m gateway.deploy.compose
# 2. a broker CA, the broker's server certificate (rabbitmq, localhost) and one client
#    certificate per organisation with CN = its broker user — same step
# 3. the RabbitMQ definitions from the directory — zvg broker provision --out
# 4. each node's node.toml (production mode: these keys are fresh, not keys_example/), checked
#    with zvg node check-config
#
# Needs zvg: the repository's .venv (./scripts/test makes it) or `pip install .`; set ZVG_PYTHON
# to choose the Python that has it. Refuses a STATE that exists and is not empty: to start over,
# `docker compose down -v` (drops the volumes: stores and keys) and delete STATE.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ha=()
default=state
if [ "${1:-}" = "--ha" ]; then
    ha=(--ha)
    default=state-ha
    shift
fi
state=${1:-${ZVG_STATE:-$here/$default}}
if [ -z "${ZVG_PYTHON:-}" ]; then
    if [ -x "$here/../../.venv/bin/python" ]; then
        ZVG_PYTHON="$here/../../.venv/bin/python"
    else
        ZVG_PYTHON=python3
    fi
fi
zvg() { "$ZVG_PYTHON" -m gateway.cli "$@"; }

"$ZVG_PYTHON" -m gateway.deploy.compose "${ha[@]}" "$state"
zvg broker provision --directory "$state/federation/directory.json" \
    --secrets-dir "$state/broker/secrets" --out "$state/broker/definitions/definitions.json"
if [ ${#ha[@]} -gt 0 ]; then
    # check-config connects to the store: the database exists only once compose runs.
    echo "prepared $state; now: docker compose -f compose.ha.yaml up -d --wait   (tokens: $state/tokens/)"
    exit 0
fi
for config in "$state"/nodes/*/etc/zvg/node.toml; do
    zvg node check-config --config "$config"
done
echo "prepared $state; now: docker compose up -d --wait   (tokens for the adapters: $state/tokens/)"
