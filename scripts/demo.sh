#!/usr/bin/env bash
# The main job end to end against a local Cognito emulator (moto), from nothing to a finished
# run and back to nothing: start moto, make the pool, onboard samples/providers.csv, let two
# providers sign in, run again (nothing sent), show the report, correct a row and --update it,
# stop moto.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/debug/cognito-onboard"
py="$root/.venv/bin/python"
work=$(mktemp -d "${TMPDIR:-/tmp}/cognito-onboard-demo.XXXXXX")
cleanup() {
  "$root/scripts/moto.sh" stop "$work"
  rm -f "$work/passwords.csv"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Starting moto (Cognito emulator) on loopback"
url=$("$root/scripts/moto.sh" start "$work")
echo "  $url (pid $(cat "$work/moto.pid"))"

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL="$url"
export COGNITO_ONBOARD_STATE="$work/state.db"

step "Creating the data platform's pool: email as username, 8+ chars with upper, lower, digit, symbol, 7-day invitations"
read -r pool client < <("$py" "$root/scripts/demo_pool.py" setup --endpoint "$url")
export COGNITO_USER_POOL_ID="$pool"
echo "  pool $pool"

step "Pre-flight check of samples/providers.csv"
"$bin" check "$root/samples/providers.csv"

step "The same cohort as operators keep it, in Excel (samples/providers.xlsx): read directly"
"$bin" check "$root/samples/providers.xlsx"

step "Onboarding (moto sends no email, so the demo asks for the temporary passwords in a 0600 file)"
"$bin" run "$root/samples/providers.csv" --report-dir "$work/reports" \
  --delivery suppress --password-file "$work/passwords.csv" >/dev/null

step "Two providers sign in on the hosted UI and set their own password"
"$py" "$root/scripts/demo_pool.py" first-sign-in --endpoint "$url" --pool "$pool" --client "$client" \
  --passwords "$work/passwords.csv" --count 2

step "Second run over the same CSV: two confirmed, the rest pending, nothing sent"
report=$("$bin" run "$root/samples/providers.csv" --report-dir "$work/reports")

step "The report ($report)"
"$py" - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("  summary:", ", ".join(f"{k} {v}" for k, v in r["summary"].items() if v))
print("  calls:", ", ".join(f"{k} {v}" for k, v in r["calls"].items()))
for row in r["rows"]:
    print(f"  line {row['row']:>2}  {row['key']:<32} {row['outcome']:<9} {row['status_after'] or '':<22} {row['reason']}")
sent = sum(r["calls"].get(c, 0) for c in ("UserCreation", "UserAccountRecovery"))
assert sent == 0, "the second run sent something"
assert r["summary"]["skipped"] == len(r["rows"]), r["summary"]
PY

step "Where every provider stands (status): the two who signed in are newly confirmed"
"$bin" status --report-dir "$work/reports" --format table

step "The report page of that status, to open in a browser: the funnel, time to confirm, who needs an action"
page=$(ls -t "$work/reports"/*.html | head -1)
echo "  file://$page"

step "The help desk: why can't these two sign in? (doctor; exit 0: both can sign in or recover alone)"
"$bin" doctor taro.yamada@example.com yuki.tanaka@example.com --report-dir "$work/reports"

step "The list changes: Hanako's name is corrected and she leaves beta; preview, then apply (--update)"
sed -e 's/^hanako.suzuki@example.com,鈴木 花子,鈴木,花子,ja,providers;beta\r\?$/hanako.suzuki@example.com,鈴木 華子,鈴木,華子,ja,providers/' \
  "$root/samples/providers.csv" >"$work/providers-edited.csv"
preview=$("$bin" run "$work/providers-edited.csv" --update attributes,groups --dry-run --report-dir "$work/reports")
applied=$("$bin" run "$work/providers-edited.csv" --update attributes,groups --report-dir "$work/reports")
"$py" - "$preview" "$applied" <<'PY'
import json, sys
preview, applied = (json.load(open(p)) for p in sys.argv[1:3])
for r in (preview, applied):
    rows = [row for row in r["rows"] if row["outcome"] == "updated"]
    print(f"  {'dry run' if r['dry_run'] else 'run':<7}: " + "; ".join(f"{row['key']} {' '.join(row['changed'])}" for row in rows))
    assert [row["changed"] for row in rows] == [["name", "given_name", "-beta"]], rows
PY

step "Done: moto stopped, temporary files removed"
