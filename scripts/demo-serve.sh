#!/usr/bin/env bash
# Starts `recgpt serve` on loopback, shows a few real requests and their responses, stops it.
#   scripts/demo-serve.sh RECGPT USER [PORT]
set -euo pipefail
recgpt=$1 user=$2 port=${3:-18080}
base=http://127.0.0.1:$port

"$recgpt" serve --addr "127.0.0.1:$port" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -sf "$base/healthz" >/dev/null && break
    sleep 0.2
done

show() {
    echo "\$ curl $*"
    curl -s "$@" | python3 -c 'import json, sys
lines = json.dumps(json.load(sys.stdin), indent=2, ensure_ascii=False).splitlines()
print("\n".join(lines[:40] + (["  …"] if len(lines) > 40 else [])))'
    echo
}
show "$base/healthz"
show "$base/v1/users/$user/recommendations?k=3"
item=$(curl -s "$base/v1/users/$user/recommendations?k=1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["recommendations"][0]["item_id"])')
show "$base/v1/explanations?user_id=$user&item_id=$item"
show -X POST "$base/v1/explanations:batch" -H 'content-type: application/json' \
    -d "{\"pairs\": [{\"user_id\": \"$user\", \"item_id\": \"$item\"}, {\"user_id\": \"99999999\", \"item_id\": \"$item\"}]}"
show "$base/v1/users/abc!/recommendations"
echo "\$ curl $base/metrics | grep recgpt_http_requests_total"
curl -s "$base/metrics" | grep '^recgpt_http_requests_total' || true
