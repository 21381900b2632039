#!/usr/bin/env bash
# The issuer's mint/verify benchmarks (BROKER.md §6 A10a, A10b) and their
# report section.
#
#   scripts/bench-issuer.sh all      rust, then anchor, back to back, then report
#   scripts/bench-issuer.sh rust     cargo bench -p broker-issuer --bench mint_verify
#                                    -> docs/bench/issuer-criterion.json
#   scripts/bench-issuer.sh anchor   py-oidc-auth 2606.0.0's own TokenBroker rates
#                                    (scripts/bench_pyoidc_broker.py in the venv of
#                                    scripts/servers/pyoidc.sh) -> docs/bench/issuer-anchor.json
#   scripts/bench-issuer.sh report   docs/bench/issuer-summary.json and docs/bench/issuer.md
#                                    from the two files above
#
# issuer-criterion.json: {command, machine: {nproc, cpu, kernel, rustc, date,
#   loadavg: [1, 5, 15 min]}, loadavg_end, benches: [{id, mean_ns, ci_low_ns,
#   ci_high_ns, median_ns, ops_per_sec}]}; ids `mint|verify/<RS256|ES256|EdDSA>/<broker|raw>`,
#   ops_per_sec = 1e9 / mean_ns.
# issuer-anchor.json: {command, what, py_oidc_auth, pyjwt, cryptography, python,
#   rounds, round_secs, token_bytes, machine, loadavg_end, results: {mint|verify|jwks:
#   {ops_per_sec (median of the rounds), min_ops_per_sec, max_ops_per_sec, rounds_ops_per_sec}}}.
# issuer-summary.json: {date, checks: [{id, what, value, target, met}]}: every
#   ratio of A10a (broker / raw) and A10b (broker / anchor) with its target.
# Needs cargo, python3 (standard library), and PyPI for the anchor's venv.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/docs/bench"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${BROKER_TEST_DIR:-/tmp/broker-test}/pyoidc/venv"
BENCH_CMD="cargo bench -p broker-issuer --bench mint_verify"

machine_json() {
  RUSTC=$(rustc --version 2>/dev/null || true) python3 - <<'PY'
import json, os, platform, time
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
print(json.dumps({"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
                  "rustc": os.environ.get("RUSTC", ""), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  "loadavg": open("/proc/loadavg").read().split()[:3]}))
PY
}

run_rust() {
  mkdir -p "$OUT"
  local machine
  machine=$(machine_json)
  echo "== $BENCH_CMD" >&2
  (cd "$ROOT" && $BENCH_CMD)
  python3 - "$TARGET/criterion" "$OUT/issuer-criterion.json" "$BENCH_CMD" "$machine" <<'PY'
import json, os, re, sys
root, out, command, machine = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
wanted = re.compile(r"^(mint|verify)/(RS256|ES256|EdDSA)/(broker|raw)$")
rows = []
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) == "new" and {"estimates.json", "benchmark.json"} <= set(files):
        b = json.load(open(os.path.join(dirpath, "benchmark.json")))
        if not wanted.match(b["full_id"]):
            continue
        e = json.load(open(os.path.join(dirpath, "estimates.json")))
        m = e["mean"]
        rows.append({"id": b["full_id"], "mean_ns": m["point_estimate"],
                     "ci_low_ns": m["confidence_interval"]["lower_bound"],
                     "ci_high_ns": m["confidence_interval"]["upper_bound"],
                     "median_ns": e["median"]["point_estimate"],
                     "ops_per_sec": 1e9 / m["point_estimate"]})
rows.sort(key=lambda r: r["id"])
if len(rows) != 12:
    sys.exit(f"bench-issuer: expected 12 results under {root}, found {len(rows)}")
doc = {"command": command, "machine": machine,
       "loadavg_end": open("/proc/loadavg").read().split()[:3], "benches": rows}
json.dump(doc, open(out, "w"), indent=1)
PY
}

run_anchor() {
  mkdir -p "$OUT"
  bash "$ROOT/scripts/servers/pyoidc.sh" install
  echo "== py-oidc-auth anchor: $VENV/bin/python scripts/bench_pyoidc_broker.py" >&2
  "$VENV/bin/python" "$ROOT/scripts/bench_pyoidc_broker.py" "$OUT/issuer-anchor.json"
}

report() {
  python3 - "$OUT" <<'PY'
import json, os, sys, time
out = sys.argv[1]
rust = json.load(open(os.path.join(out, "issuer-criterion.json")))
anchor = json.load(open(os.path.join(out, "issuer-anchor.json")))
rate = {b["id"]: b["ops_per_sec"] for b in rust["benches"]}
py = {k: v["ops_per_sec"] for k, v in anchor["results"].items()}
checks = []
def check(id_, what, value, target):
    checks.append({"id": id_, "what": what, "value": round(value, 3), "target": target,
                   "met": value >= target})
for op, target in (("mint", 0.95), ("verify", 0.90)):
    for alg in ("RS256", "ES256", "EdDSA"):
        check(f"A10a/{op}/{alg}", f"{op} {alg}: broker / raw jsonwebtoken",
              rate[f"{op}/{alg}/broker"] / rate[f"{op}/{alg}/raw"], target)
check("A10b/verify/RS256", "RS256 verify: broker / py-oidc-auth verify",
      rate["verify/RS256/broker"] / py["verify"], 5.0)
check("A10b/mint/RS256", "RS256 mint: broker / py-oidc-auth mint",
      rate["mint/RS256/broker"] / py["mint"], 1.0)
check("A10b/mint/EdDSA", "EdDSA mint: broker / py-oidc-auth mint (RS256)",
      rate["mint/EdDSA/broker"] / py["mint"], 10.0)
json.dump({"date": time.strftime("%Y-%m-%d"), "checks": checks},
          open(os.path.join(out, "issuer-summary.json"), "w"), indent=1)

def fmt(x):
    return f"{x / 1000:,.1f} k/s" if x >= 1000 else f"{x:,.0f} /s"
m = rust["machine"]
lines = [
    "## Issuer: mint and verify (A10a, A10b)", "",
    f"Machine: {m['cpu']}, {m['nproc']} cores (nproc), Linux {m['kernel']}, {m['rustc']}. "
    f"Rust bench started {m['date']}, load average {' / '.join(m['loadavg'])} (1/5/15 min) "
    f"at its start, {' / '.join(rust['loadavg_end'])} at its end; the anchor ran right after, "
    f"started {anchor['machine']['date']} at {' / '.join(anchor['machine']['loadavg'])}. "
    "The machine is shared: absolute rates move with its load, the ratios much less.", "",
    f"Commands: `{rust['command']}` (criterion, mean of 50 samples), then "
    f"`scripts/bench-issuer.sh anchor` (py-oidc-auth {anchor['py_oidc_auth']}, PyJWT "
    f"{anchor['pyjwt']}, cryptography {anchor['cryptography']}, Python {anchor['python']}; "
    f"median of {anchor['rounds']} rounds of {anchor['round_secs']:g} s, one thread).", "",
    "**A10a**: `Issuer::mint` / `verify_own` beside raw `jsonwebtoken::encode` / `decode` "
    "with the same key, header, claims and `Validation`.", "",
    "| op | alg | broker | raw | broker / raw | target |", "|---|---|---:|---:|---:|---|",
]
for c in checks:
    if c["id"].startswith("A10a/"):
        _, op, alg = c["id"].split("/")
        lines.append(f"| {op} | {alg} | {fmt(rate[f'{op}/{alg}/broker'])} | "
                     f"{fmt(rate[f'{op}/{alg}/raw'])} | {c['value']:.2f} | "
                     f"≥ {c['target']:.2f} {'met' if c['met'] else '**missed**'} |")
lines += ["", "**A10b**: against py-oidc-auth's own `TokenBroker` (RS256) on the same machine, "
          "run right after.", "",
          "| py-oidc-auth | rate (median) | range of rounds |", "|---|---:|---|"]
for op in ("mint", "verify", "jwks"):
    r = anchor["results"][op]
    lines.append(f"| `TokenBroker.{op}{'()' if op == 'jwks' else ''}` | {fmt(r['ops_per_sec'])} | "
                 f"{fmt(r['min_ops_per_sec'])} – {fmt(r['max_ops_per_sec'])} |")
lines += ["", "| ratio | value | target |", "|---|---:|---|"]
for c in checks:
    if c["id"].startswith("A10b/"):
        lines.append(f"| {c['what']} | {c['value']:.1f}× | ≥ {c['target']:g}× "
                     f"{'met' if c['met'] else '**missed**'} |")
lines += ["", "Data: `issuer-criterion.json`, `issuer-anchor.json`, `issuer-summary.json` "
          "(fields in `scripts/bench-issuer.sh`); regenerate with `scripts/bench-issuer.sh all`.", ""]
open(os.path.join(out, "issuer.md"), "w").write("\n".join(lines))
for c in checks:
    print(f"{c['id']}: {c['value']:.3f} (target {c['target']}) {'met' if c['met'] else 'MISSED'}",
          file=sys.stderr)
PY
}

case "${1:-}" in
  all) run_rust; run_anchor; report ;;
  rust) run_rust ;;
  anchor) run_anchor ;;
  report) report ;;
  *) echo "usage: $0 all|rust|anchor|report" >&2; exit 2 ;;
esac
