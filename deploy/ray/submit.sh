#!/usr/bin/env bash
# Submit a hybridrl training run to a Ray cluster's job API.
#   deploy/ray/submit.sh [CONFIG] [dotted.key=value ...]
# RAY_ADDRESS defaults to the local head (http://127.0.0.1:8265). Ray 2.60 clusters use token
# auth by default: the CLI reads the token from RAY_AUTH_TOKEN or ~/.ray/auth_token, so copy the
# head's ~/.ray/auth_token to the submitting machine (or start the head with RAY_AUTH_MODE=disabled
# on a trusted network). See docs/deployment.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
config=${1:-configs/local.yaml}
shift || true
export RAY_ADDRESS=${RAY_ADDRESS:-http://127.0.0.1:8265}
ray=${RAY:-$(command -v ray || echo .venv/bin/ray)}
exec "$ray" job submit --address "$RAY_ADDRESS" --working-dir . \
  --runtime-env-json '{"excludes": [".git", ".venv", "runs", "data", ".hybridrl"]}' \
  -- hybridrl train --config "$config" "$@"
