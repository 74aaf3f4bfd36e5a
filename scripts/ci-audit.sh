#!/usr/bin/env bash
# The robustness gate of docs/ci/robustness.yml as one script: package the candidate model, serve it with
# TorchServe on loopback, audit the endpoint, and compare the audit with the production release's report.
#
#   scripts/ci-audit.sh MODEL_DIR OUT_DIR [BASELINE]
#
#   MODEL_DIR  the candidate model: a folder of save_pretrained or 'auditor prune' (its tokenizer included)
#   OUT_DIR    written: model_store/<name>.mar, server/ (TorchServe's directory and logs), audit/ (report.json:
#              keep it, it is the next release's BASELINE; report.md, report.html, diff.json, diff.md) and junit.xml
#   BASELINE   the production release's report.json (or its folder); without it the audit is only gated by
#              AUDIT_FAIL_UNDER (a first release)
#
# Exit status: 0 the gate passes; 1 a significant regression against BASELINE (auditor diff's rule) or
# accuracy under attack below AUDIT_FAIL_UNDER; 2 bad input, or the server did not start.
#
# Settings (environment, defaults in brackets): AUDIT_DATA [sst2], AUDIT_EXAMPLES [200], AUDIT_BUDGET [100],
# AUDIT_BASELINES [random,deepwordbug], AUDIT_PATTERNS (patterns file; default: mined from MODEL_DIR by the
# default 'auditor mine', every training sentence, resumable: give both releases the same file to compare their
# trigger tables), AUDIT_MAX_DROP [0],
# AUDIT_ALPHA [0.05], AUDIT_CORRECTION [none; holm], AUDIT_FAIL_UNDER (none), MODEL_NAME [the folder's name], INFERENCE_PORT [8080],
# MANAGEMENT_PORT [8081], METRICS_PORT [8082], GRPC_INFERENCE_PORT [7070], GRPC_MANAGEMENT_PORT [7071],
# VENV [.venv of this checkout]. On GitHub Actions the gate's summary goes to the job summary and its
# failures become annotations (auditor does it when GITHUB_STEP_SUMMARY / GITHUB_ACTIONS are set).
set -euo pipefail

usage() { echo "usage: scripts/ci-audit.sh MODEL_DIR OUT_DIR [BASELINE]" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
model=$(cd "$1" 2>/dev/null && pwd) || { echo "error: model folder $1 does not exist" >&2; exit 2; }
baseline=()
if [ $# -eq 3 ]; then
  [ -e "$3" ] || { echo "error: baseline report $3 does not exist" >&2; exit 2; }
  baseline=(--baseline "$3")
fi
if [ -n "${AUDIT_PATTERNS:-}" ] && [ ! -f "$AUDIT_PATTERNS" ]; then
  echo "error: AUDIT_PATTERNS file $AUDIT_PATTERNS does not exist" >&2; exit 2
fi
# every input checked: only now is OUT_DIR created
mkdir -p "$2" && out=$(cd "$2" && pwd)
name=${MODEL_NAME:-$(basename "$model" | tr -c 'A-Za-z0-9_\n-' '-')}
inference_port=${INFERENCE_PORT:-8080}
server="$out/server"

# 1. the archive
"$venv/bin/auditor" package --model "$model" --name "$name" --store "$out/model_store"

# 2. TorchServe on loopback, with the repository's settings (token authorization on, limits, logging)
rm -rf "$server" && mkdir -p "$server/tmp"
grep -v -E '^(inference_address|management_address|metrics_address|grpc_[a-z_]+|model_store|load_models|models)=' \
  "$root/config.properties" > "$server/config.properties"
cat >> "$server/config.properties" <<EOF
inference_address=http://127.0.0.1:$inference_port
management_address=http://127.0.0.1:${MANAGEMENT_PORT:-8081}
metrics_address=http://127.0.0.1:${METRICS_PORT:-8082}
grpc_inference_address=127.0.0.1
grpc_management_address=127.0.0.1
grpc_inference_port=${GRPC_INFERENCE_PORT:-7070}
grpc_management_port=${GRPC_MANAGEMENT_PORT:-7071}
model_store=$out/model_store
load_models=$name.mar
models={"$name": {"1.0": {"defaultVersion": true, "marName": "$name.mar", "minWorkers": 1, "maxWorkers": 1, "batchSize": 8, "maxBatchDelay": 20, "responseTimeout": 120}}}
EOF
cp "$root/log4j2.xml" "$server/"
# launcher.log receives a copy of the server's log: private (0600), as the log files are
torchserve() { (umask 077 && cd "$server" && TMPDIR="$server/tmp" "$venv/bin/torchserve" "$@" >> "$server/launcher.log" 2>&1); }
torchserve --start --ncs --ts-config config.properties --model-store "$out/model_store" ||
  { echo "error: torchserve did not start; see $server/launcher.log" >&2; exit 2; }
trap 'torchserve --stop || true' EXIT

# 3. wait until the model answers (the key file appears first, the worker loads the model after)
url="http://127.0.0.1:$inference_port/predictions/$name"
export AUDITOR_TOKEN=""
ready=0
for _ in $(seq 300); do
  if [ -z "$AUDITOR_TOKEN" ] && [ -s "$server/key_file.json" ]; then
    AUDITOR_TOKEN=$("$venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["inference"]["key"])' "$server/key_file.json" 2>/dev/null || true)
  fi
  if [ -n "$AUDITOR_TOKEN" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AUDITOR_TOKEN" \
       -H 'Content-Type: application/json' -d '{"text": "ready?"}' "$url")" = 200 ]; then
    ready=1
    break
  fi
  sleep 1
done
[ "$ready" = 1 ] || { echo "error: $name did not answer at $url within 300 s; see $server/logs" >&2; exit 2; }

# 4. the audit of the endpoint, gated against the baseline
patterns=${AUDIT_PATTERNS:-}
if [ -z "$patterns" ]; then
  patterns="$out/patterns.json"
  "$venv/bin/auditor" mine --model "$model" --data "${AUDIT_DATA:-sst2}" --out "$patterns"
fi
gate=(--max-drop "${AUDIT_MAX_DROP:-0}" --alpha "${AUDIT_ALPHA:-0.05}" --correction "${AUDIT_CORRECTION:-none}")
[ -n "${AUDIT_FAIL_UNDER:-}" ] && gate+=(--fail-under "$AUDIT_FAIL_UNDER")
status=0
"$venv/bin/auditor" audit --endpoint "$url" --tokenizer "$model" --data "${AUDIT_DATA:-sst2}" --patterns "$patterns" \
  --examples "${AUDIT_EXAMPLES:-200}" --budget "${AUDIT_BUDGET:-100}" --baselines "${AUDIT_BASELINES:-random,deepwordbug}" \
  --out "$out/audit" --junit "$out/junit.xml" "${baseline[@]}" "${gate[@]}" || status=$?
exit "$status"
