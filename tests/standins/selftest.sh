#!/usr/bin/env bash
# Self-test of exoscale_standin.py against a real OpenBao dev server.
#
# Uses ports SELFTEST_BASE_PORT .. +20 (default 18200..18220) on 127.0.0.1 and
# cleans up everything it started. Needs: bao (OpenBao CLI), python3, curl, jq.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STANDIN="$HERE/exoscale_standin.py"
BASE=${SELFTEST_BASE_PORT:-18200}
BAO_PORT=$BASE
A_META=$((BASE + 10)) A_VAULT=$((BASE + 11))
B_META=$((BASE + 12)) B_VAULT=$((BASE + 13))
C_META=$((BASE + 14)) C_VAULT=$((BASE + 15))
DEAD_PORT=$((BASE + 19)) # nothing listens here

export BAO_ADDR="http://127.0.0.1:$BAO_PORT" BAO_TOKEN=root
A="http://127.0.0.1:$A_VAULT"
AM="http://127.0.0.1:$A_META"
B="http://127.0.0.1:$B_VAULT"
BM="http://127.0.0.1:$B_META"
C="http://127.0.0.1:$C_VAULT"
INSTANCE=11111111-2222-4333-8444-555555555555
B_INSTANCE=66666666-7777-4888-9999-aaaaaaaaaaaa
OTHER_INSTANCE=bbbbbbbb-cccc-4ddd-8eee-ffffffffffff

WORK=$(mktemp -d)
declare -A PIDS=()

cleanup() {
  local name
  for name in "${!PIDS[@]}"; do kill "${PIDS[$name]}" 2>/dev/null || true; done
  for name in "${!PIDS[@]}"; do wait "${PIDS[$name]}" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in bao python3 curl jq; do
  command -v "$tool" >/dev/null || { echo "selftest: $tool not found" >&2; exit 1; }
done

TESTS=0
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { TESTS=$((TESTS + 1)); echo "ok $TESTS - $*"; }
assert_eq() { # ACTUAL EXPECTED WHAT
  [[ "$1" == "$2" ]] || fail "$3: expected [$2], got [$1]"
  pass "$3"
}

# call METHOD URL [curl args...]: $status, body in $WORK/body, headers in $WORK/headers.
call() {
  local method=$1 url=$2
  shift 2
  status=$(curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -X "$method" "$@" "$url") ||
    status="curl-exit-$?"
}
body() { cat "$WORK/body"; }
field() { jq -r "$1" "$WORK/body"; }
header() { # NAME -> value of that response header (case-insensitive), or empty
  awk -v n="$1" 'BEGIN{FS=": "} tolower($1)==tolower(n){sub(/\r$/,"",$2); print $2}' "$WORK/headers"
}
expect() { # STATUS JQ-FILTER EXPECTED WHAT (after call)
  [[ "$status" == "$1" ]] || fail "$4: expected HTTP $1, got $status: $(body)"
  assert_eq "$(field "$2")" "$3" "$4"
}
login() { # VAULT-URL JSON [curl args...]
  local url=$1 json=$2
  shift 2
  call POST "$url/v1/auth/exoscale/login" -H 'Content-Type: application/json' -d "$json" "$@"
}
faults() { # VAULT-URL JSON: change faults through the control API
  call POST "$1/_standin/faults" -d "$2"
  [[ "$status" == 200 ]] || fail "control API refused $2: $status $(body)"
}
curl_exit() { # curl args... -> curl's exit code, never fails
  local rc=0
  curl -sS -o /dev/null "$@" 2>/dev/null || rc=$?
  echo "$rc"
}
wait_http() { # URL
  local i
  for i in $(seq 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  fail "nothing answers at $1"
}
start_standin() { # NAME ARGS... (waits for its port line)
  local name=$1 i
  shift
  python3 "$STANDIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS[$name]=$!
  for i in $(seq 100); do
    [[ -s "$WORK/$name.out" ]] && return 0
    sleep 0.1
  done
  fail "stand-in $name printed no port line: $(cat "$WORK/$name.err")"
}

# --- OpenBao with transit set up the article's way -------------------------
bao server -dev -dev-root-token-id=root -dev-no-store-token \
  -dev-listen-address="127.0.0.1:$BAO_PORT" >"$WORK/bao.log" 2>&1 &
PIDS[bao]=$!
wait_http "$BAO_ADDR/v1/sys/health"
bao secrets enable transit >/dev/null
bao write -f transit/keys/luks >/dev/null
bao policy write transit-luks - >/dev/null <<'EOF'
path "transit/decrypt/luks" { capabilities = ["update"] }
path "transit/encrypt/luks" { capabilities = ["update"] }
EOF
PLAINTEXT_B64=$(printf '%s' 'k3y-material-for-luks-0123456789' | base64)
CIPHERTEXT=$(bao write -field=ciphertext transit/encrypt/luks plaintext="$PLAINTEXT_B64")

# --- stand-in A: normal mode, root token from the environment --------------
STANDIN_ROOT_TOKEN=root start_standin a \
  --metadata-port "$A_META" --vault-port "$A_VAULT" --upstream "$BAO_ADDR" \
  --role storage=transit-luks --role other=default --instance-id "$INSTANCE" \
  --zone ch-gva-2 --public-ipv4 1.2.3.4 --local-ipv4 10.0.0.5 --local-hostname node-a
assert_eq "$(cat "$WORK/a.out")" "{\"metadata_port\": $A_META, \"vault_port\": $A_VAULT}" "stdout port line"

# --- metadata ----------------------------------------------------------------
check_meta() { # BASE-URL KEY VALUE
  call GET "$1/1.0/meta-data/$2"
  [[ "$status" == 200 ]] || fail "metadata $2: HTTP $status"
  printf '%s' "$3" | cmp -s - "$WORK/body" || fail "metadata $2: body [$(body)] is not exactly [$3]"
  [[ "$(header Content-Type)" == text/plain* ]] || fail "metadata $2: Content-Type $(header Content-Type)"
  pass "metadata $2 = $3 (exact bytes, text/plain)"
}
check_meta "$AM" instance-id "$INSTANCE"
check_meta "$AM" availability-zone ch-gva-2
check_meta "$AM" public-ipv4 1.2.3.4
check_meta "$AM" local-ipv4 10.0.0.5
check_meta "$AM" local-hostname node-a
call GET "$AM/1.0/meta-data/"
assert_eq "$status $(body)" "200 availability-zone
instance-id
local-hostname
local-ipv4
public-ipv4" "metadata key listing"
call GET "$AM/1.0/meta-data/no-such-key"
assert_eq "$status" 404 "metadata unknown key is 404"

# --- login success and a working token ---------------------------------------
login "$A" "{\"role\":\"storage\",\"instance\":\"$INSTANCE\",\"zone\":\"ch-gva-2\"}"
expect 200 '.auth.policies | join(",")' default,transit-luks "login succeeds with role policies"
TOKEN=$(field .auth.client_token)
assert_eq "$(field '[.auth.lease_duration, .auth.renewable, .auth.orphan, .auth.token_type, .auth.metadata] | @json')" \
  '[60,true,true,"service",null]' "login auth shape (ttl 60s, renewable, orphan, metadata null)"
assert_eq "$(field '[.lease_id, .renewable, .data, .wrap_info, (.request_id | length)] | @json')" \
  '["",false,null,null,36]' "login envelope shape"
call POST "$A/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -H 'X-Vault-Request: true' \
  -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
expect 200 .data.plaintext "$PLAINTEXT_B64" "minted token decrypts through the stand-in"
call GET "$BAO_ADDR/v1/auth/token/lookup-self" -H "X-Vault-Token: $TOKEN"
expect 200 .data.meta.instance_id "$INSTANCE" "token is a real OpenBao token"
call POST "$A/v1/transit/decrypt/other" -H "X-Vault-Token: $TOKEN" -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
expect 403 '.errors[0] | contains("permission denied")' true "token limited to its policies (proxied 403)"
login "$A" "{\"role\":\"storage\",\"instance\":\"$INSTANCE\"}" -X PUT
expect 200 '.auth.client_token | startswith("s.")' true "login by PUT, without zone"
TOKEN2=$(field .auth.client_token)
call POST "$A/v1/auth/exoscale/login" -d "role=storage&instance=$INSTANCE"
expect 200 '.auth.policies | length' 2 "login by form post"

# --- login errors --------------------------------------------------------------
login "$A" '{}'
expect 400 '.errors[0]' "missing field: role" "login without role"
login "$A" '{"role":"storage"}'
expect 400 '.errors[0]' "missing field: instance" "login without instance"
login "$A" '{"role":"nope"}'
expect 400 '.errors[0]' 'role "nope" not found' "unknown role (checked before instance)"
login "$A" "{\"role\":\"nope\",\"instance\":\"$INSTANCE\"}"
expect 400 '.errors[0]' 'role "nope" not found' "unknown role"
login "$A" '{"role":"storage","instance":""}'
expect 400 '.errors[0]' "missing field: instance" "empty instance"
login "$A" "{\"role\":\"storage\",\"instance\":\"$OTHER_INSTANCE\"}"
expect 403 '.errors[0]' "permission denied" "unknown instance"
login "$A" '{"role":'
expect 400 '.errors[0] | startswith("failed to decode JSON input")' true "malformed JSON"
call GET "$A/v1/auth/exoscale/login"
expect 405 '.errors[0]' "unsupported operation" "GET on login"

# --- the proxy is verbatim -----------------------------------------------------
BAD='{"ciphertext":"vault:v1:AAAA"}'
curl -sS -o "$WORK/direct" -D "$WORK/direct.h" -X POST -H "X-Vault-Token: $TOKEN" -d "$BAD" \
  "$BAO_ADDR/v1/transit/decrypt/luks"
call POST "$A/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -d "$BAD"
assert_eq "$status" 400 "transit 400 passes through"
cmp -s "$WORK/direct" "$WORK/body" || fail "proxied 400 body differs: $(body) vs $(cat "$WORK/direct")"
pass "proxied 400 body byte-identical: $(body)"
assert_eq "$(header Content-Type) $(header Cache-Control)" "application/json no-store" "proxied headers"
call GET "$A/v1/sys/health?standbyok=true"
expect 200 .sealed false "proxied GET with query string"
call GET "$A/client/m7/v1/sys/health?standbyok=true"
expect 200 .sealed false "a client tag prefix is stripped before proxying"
login "$A/client/m7" "{\"role\":\"storage\",\"instance\":\"$INSTANCE\"}"
expect 200 '.auth.policies | length' 2 "login under a client tag prefix"

# --- faults at runtime ---------------------------------------------------------
faults "$A" '{"set":["sealed"]}'
expect 200 .faults.sealed true "control API sets sealed"
call POST "$A/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
expect 503 '.errors[0]' "Vault is sealed" "sealed: transit 503"
login "$A" "{\"role\":\"storage\",\"instance\":\"$INSTANCE\"}"
expect 503 '.errors[0]' "Vault is sealed" "sealed: login 503"
call GET "$A/v1/sys/health"
expect 503 .sealed true "sealed: sys/health 503 sealed=true"
call GET "$A/v1/sys/seal-status"
expect 200 .sealed true "sealed: sys/seal-status 200 sealed=true"
faults "$A" '{"clear":["sealed"]}'
call POST "$A/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
expect 200 .data.plaintext "$PLAINTEXT_B64" "unsealed again: decrypt works"

faults "$A" '{"set":["transient-503=2"]}'
for i in 1 2; do
  call POST "$A/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
  expect 503 '.errors[0]' "Vault is sealed" "transient-503: request $i is 503"
done
call POST "$A/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
expect 200 .data.plaintext "$PLAINTEXT_B64" "transient-503: request 3 succeeds"
call GET "$A/_standin/state"
expect 200 '.faults | has("transient-503")' false "transient-503 clears itself"

faults "$A" '{"set":["transit-429=1"]}'
call POST "$A/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
expect 429 '.errors[0]' 'request path "transit/decrypt/luks": rate limit quota exceeded' "transit-429: a transit request is 429"
call POST "$A/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
expect 200 .data.plaintext "$PLAINTEXT_B64" "transit-429: then clears itself"

faults "$A" '{"set":["login-500"]}'
login "$A" "{\"role\":\"storage\",\"instance\":\"$INSTANCE\"}"
expect 500 '.errors[0] | contains("exoscale API error")' true "login-500"
faults "$A" '{"clear_all":true,"set":["login-429"]}'
login "$A" "{\"role\":\"storage\",\"instance\":\"$INSTANCE\"}"
expect 429 '.errors[0] | contains("rate limit")' true "login-429"
assert_eq "$(header Retry-After)" 1 "login-429 has Retry-After: 1"
faults "$A" '{"clear_all":true,"set":["login-403"]}'
login "$A" "{\"role\":\"storage\",\"instance\":\"$INSTANCE\"}"
expect 403 '.errors[0]' "permission denied" "login-403"
call POST "$A/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
expect 200 .data.plaintext "$PLAINTEXT_B64" "login faults leave other paths alone"

faults "$A" '{"clear_all":true,"set":["vault-oversize"]}'
call POST "$A/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
SIZE=$(stat -c %s "$WORK/body")
((SIZE >= 8 * 1024 * 1024)) || fail "vault-oversize body is only $SIZE bytes"
expect 200 '.data.plaintext | length > 8000000' true "vault-oversize: 200, $SIZE bytes of valid JSON"

faults "$A" '{"clear_all":true,"set":["vault-hang"]}'
assert_eq "$(curl_exit --max-time 1 -X POST -d '{}' "$A/v1/transit/decrypt/luks")" 28 "vault-hang: client times out"
START=$(date +%s%N)
curl -sS -o /dev/null --max-time 10 "$A/v1/sys/health" 2>/dev/null &
HUNG=$!
sleep 0.3
call GET "$A/_standin/state"
expect 200 '.faults["vault-hang"]' true "control API answers while a request hangs"
check_meta "$AM" instance-id "$INSTANCE"
faults "$A" '{"clear":["vault-hang"]}'
HUNG_RC=0
wait "$HUNG" || HUNG_RC=$?
ELAPSED_MS=$((($(date +%s%N) - START) / 1000000))
((ELAPSED_MS < 5000)) || fail "hung request outlived the cleared fault (${ELAPSED_MS} ms)"
assert_eq "$HUNG_RC" 52 "vault-hang cleared: held connection closed without a reply"

faults "$A" '{"set":["metadata-404"]}'
call GET "$AM/1.0/meta-data/instance-id"
assert_eq "$status" 404 "metadata-404"
faults "$A" '{"clear_all":true,"set":["metadata-slow=1"]}'
TIME=$(curl -s -o /dev/null -w '%{time_total}' "$AM/1.0/meta-data/instance-id")
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 1.0 else 1)" "$TIME" ||
  fail "metadata-slow=1 answered in ${TIME}s"
pass "metadata-slow=1 answers after ${TIME}s"
faults "$A" '{"clear_all":true,"set":["metadata-hang"]}'
assert_eq "$(curl_exit --max-time 1 "$AM/1.0/meta-data/instance-id")" 28 "metadata-hang: client times out"
faults "$A" '{"clear_all":true,"set":["metadata-down"]}'
expect 200 .metadata_listening false "metadata-down: state says not listening"
assert_eq "$(curl_exit --max-time 2 "$AM/1.0/meta-data/instance-id")" 7 "metadata-down: connection refused"
faults "$A" '{"clear":["metadata-down"]}'
expect 200 .metadata_listening true "metadata back up"
check_meta "$AM" instance-id "$INSTANCE"

call POST "$A/_standin/faults" -d '{"set":["no-such-fault"]}'
expect 400 '.errors[0] | startswith("unknown fault")' true "control API rejects unknown faults"
call POST "$A/_standin/faults" -d '{"set":["metadata-slow"]}'
assert_eq "$status" 400 "control API rejects a fault without its value"
call GET "$A/_standin/nope"
assert_eq "$status" 404 "unknown control endpoint"

call GET "$A/_standin/state"
expect 200 '[.tokens_minted, .faults] | @json' '[4,{}]' "state: tokens minted, no faults"
assert_eq "$(field .logins)" 14 "state: login attempts counted (not 405s, not while sealed)"
assert_eq "$(field '.requests.vault["/v1/transit/decrypt/luks"] >= 8')" true "state: requests per path"
assert_eq "$(field '.requests.metadata["/1.0/meta-data/instance-id"] >= 3')" true "state: metadata requests"
assert_eq "$(field '.statuses.vault["503"] >= 4')" true "state: statuses counted"

# --- stand-in B: AppRole mode, client-IP validator, faults from flags ---------
start_standin b \
  --metadata-port "$B_META" --vault-port "$B_VAULT" --upstream "$BAO_ADDR" --root-token root \
  --mount exo-b --role storage=transit-luks --approle-mode --require-client-ip \
  --public-ipv4 127.0.0.1 --instance-id "$B_INSTANCE" --instance "$B_INSTANCE" --instance "$OTHER_INSTANCE" \
  --token-ttl 2m --fault metadata-down --fault transient-503=1
assert_eq "$(curl_exit --max-time 2 "$BM/1.0/meta-data/instance-id")" 7 "--fault metadata-down at start: refused"
faults "$B" '{"clear":["metadata-down"]}'
check_meta "$BM" instance-id "$B_INSTANCE"
check_meta "$BM" local-ipv4 127.0.0.1
b_login() { call POST "$B/v1/auth/exo-b/login" -H 'Content-Type: application/json' -d "$@"; }
b_login "{\"role_id\":\"storage\",\"secret_id\":\"$B_INSTANCE\"}"
expect 503 '.errors[0]' "Vault is sealed" "--fault transient-503=1 at start"
b_login "{\"role\":\"storage\",\"instance\":\"$B_INSTANCE\"}"
expect 400 '.errors[0]' "missing field: role_id" "approle mode wants role_id"
b_login '{"role_id":"storage"}'
expect 400 '.errors[0]' "missing field: secret_id" "approle mode wants secret_id"
b_login '{"role_id":"storage","secret_id":""}'
expect 400 '.errors[0]' "missing field: instance" "approle mode, empty secret_id (v0.2.0 wording)"
b_login "{\"role_id\":\"storage\",\"secret_id\":\"$OTHER_INSTANCE\"}"
expect 200 .auth.lease_duration 120 "approle-mode login from the public IP (ttl 2m)"
b_login "{\"role_id\":\"storage\",\"secret_id\":\"$B_INSTANCE\"}" --interface 127.0.0.3
expect 403 '.errors[0]' "permission denied" "client-IP validator refuses another source IP"
call POST "$B/v1/auth/exoscale/login" -d "{\"role_id\":\"storage\",\"secret_id\":\"$B_INSTANCE\"}"
[[ "$status" != 200 ]] || fail "login on an unconfigured mount succeeded"
pass "only --mount is the plugin (other mounts go to OpenBao: $status)"

# --- stand-in C: upstream OpenBao unreachable ----------------------------------
start_standin c --metadata-port "$C_META" --vault-port "$C_VAULT" \
  --upstream "http://127.0.0.1:$DEAD_PORT" --role storage=transit-luks --instance-id "$INSTANCE"
call POST "$C/v1/transit/decrypt/luks" -H "X-Vault-Token: $TOKEN" -d "{\"ciphertext\":\"$CIPHERTEXT\"}"
expect 503 '.errors[0] | startswith("standin: upstream OpenBao unreachable")' true "proxy: upstream down is 503"
login "$C" "{\"role\":\"storage\",\"instance\":\"$INSTANCE\"}"
expect 500 '.errors[0] | startswith("standin: upstream OpenBao unreachable")' true "login: upstream down is 500"

# --- clean exit and no secrets in logs -------------------------------------------
for name in a b c; do
  kill -TERM "${PIDS[$name]}"
  # A watchdog turns "ignores SIGTERM" into exit status 137 instead of a hang.
  (sleep 5 && kill -KILL "${PIDS[$name]}" 2>/dev/null) &
  WATCHDOG=$!
  RC=0
  wait "${PIDS[$name]}" || RC=$?
  kill "$WATCHDOG" 2>/dev/null || true
  wait "$WATCHDOG" 2>/dev/null || true
  unset "PIDS[$name]"
  assert_eq "$RC" 0 "stand-in $name exits 0 on SIGTERM"
done
for secret in "$TOKEN" "$TOKEN2" "$CIPHERTEXT" "$PLAINTEXT_B64" "$INSTANCE" "$OTHER_INSTANCE" "$B_INSTANCE" X-Vault-Token; do
  if grep -qF -- "$secret" "$WORK/a.err" "$WORK/b.err" "$WORK/c.err"; then
    fail "stand-in logs contain a secret or a body: $secret"
  fi
done
pass "logs carry no tokens, bodies or token headers"
BADLINES=$(grep -cvE '^\[standin\] ' "$WORK/a.err" || true)
assert_eq "$BADLINES" 0 "every log line is a [standin] line"
grep -qE '^\[standin\] vault POST /v1/auth/exoscale/login 200$' "$WORK/a.err" || fail "no login log line"
pass "log line format: method, path, status"

echo "selftest: all $TESTS checks passed"
