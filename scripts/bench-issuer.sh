#!/usr/bin/env bash
# The issuer's mint/verify benchmarks (BROKER.md §6 A10a, A10b) and their
# report section.
#
#   scripts/bench-issuer.sh all      rust, then anchor, back to back, then report
#   scripts/bench-issuer.sh rust     cargo bench -p broker-issuer --bench mint_verify
#                                    -> $OUT/issuer-criterion.json
#   scripts/bench-issuer.sh anchor   py-oidc-auth 2606.0.0's own TokenBroker rates
#                                    (scripts/bench_pyoidc_broker.py in the venv of
#                                    scripts/servers/pyoidc.sh) -> $OUT/issuer-anchor.json
#   scripts/bench-issuer.sh report   $OUT/issuer-summary.json and $OUT/issuer.md (the
#                                    section of docs/BENCHMARKS.md) from the two files above
#
# Standalone: it writes only under $OUT = ${BENCH_ISSUER_OUT:-target/bench-issuer}
# (never docs/), so it does not mix with the store benchmarks' data; the
# issuer section of docs/BENCHMARKS.md is pasted from $OUT/issuer.md.
# Extra arguments after `all` or `rust` go to criterion, e.g.
# `scripts/bench-issuer.sh all --measurement-time 2 --warm-up-time 1`.
#
# issuer-criterion.json: {command, machine: {nproc, cpu, kernel, rustc, date,
#   loadavg: [1, 5, 15 min]}, loadavg_end, benches: [{id, mean_ns, ci_low_ns,
#   ci_high_ns, median_ns, ops_per_sec}]}; ids `mint|verify/<RS256|ES256|EdDSA>/<broker|raw>`
#   and `mint/<alg>/cached-key` (no target: the key parsed once), ops_per_sec = 1e9 / mean_ns;
#   paired: [{id: `mint|verify/<alg>`, median, q1, q3, rounds, calls_per_block}], the broker / raw
#   ratio measured in alternating blocks after criterion (see the bench's `paired`).
# issuer-anchor.json: {command, what, py_oidc_auth, pyjwt, cryptography, python,
#   rounds, round_secs, token_bytes, machine, loadavg_end, results: {mint|verify|jwks:
#   {ops_per_sec (median of the rounds), min_ops_per_sec, max_ops_per_sec, rounds_ops_per_sec}}}.
# issuer-summary.json: {date, checks: [{id, what, value, target, met}]}: every
#   ratio of A10a (broker / raw) and A10b (broker / anchor) with its target.
# Needs cargo, python3 (standard library), and PyPI for the anchor's venv.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${BENCH_ISSUER_OUT:-$TARGET/bench-issuer}"
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
  local cmd="$BENCH_CMD"
  [ "$#" -eq 0 ] || cmd="$BENCH_CMD -- $*"
  echo "== $cmd" >&2
  # Stale results of an earlier run must not be read back as this run's.
  rm -rf "$TARGET"/criterion/mint_* "$TARGET"/criterion/verify_*
  rm -f "$OUT/issuer-paired.json"
  (cd "$ROOT" && BENCH_ISSUER_PAIRED="$OUT/issuer-paired.json" $BENCH_CMD -- "$@")
  python3 - "$TARGET/criterion" "$OUT/issuer-criterion.json" "$cmd" "$machine" "$OUT/issuer-paired.json" <<'PY'
import json, os, re, sys
root, out, command, machine = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
paired = json.load(open(sys.argv[5]))
wanted = re.compile(r"^(mint/(RS256|ES256|EdDSA)/(broker|raw|cached-key)|verify/(RS256|ES256|EdDSA)/(broker|raw))$")
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
if len(rows) != 15:
    sys.exit(f"bench-issuer: expected 15 results under {root}, found {len(rows)}")
doc = {"command": command, "machine": machine,
       "loadavg_end": open("/proc/loadavg").read().split()[:3], "benches": rows,
       "paired": paired}
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
paired = {p["id"]: p for p in rust["paired"]}
py = {k: v["ops_per_sec"] for k, v in anchor["results"].items()}
checks = []
def check(id_, what, value, target):
    checks.append({"id": id_, "what": what, "value": round(value, 3), "target": target,
                   "met": value >= target})
    return checks[-1]
for op, target in (("mint", 0.95), ("verify", 0.90)):
    for alg in ("RS256", "ES256", "EdDSA"):
        c = check(f"A10a/{op}/{alg}", f"{op} {alg}: broker / raw jsonwebtoken (criterion means)",
                  rate[f"{op}/{alg}/broker"] / rate[f"{op}/{alg}/raw"], target)
        p = paired[f"{op}/{alg}"]
        c["paired_median"], c["paired_q1"], c["paired_q3"] = (round(p[k], 3) for k in ("median", "q1", "q3"))
        c["paired_met"] = p["median"] >= target
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
    f"Commands: `{rust['command']}` (criterion, mean of its samples), then "
    f"`scripts/bench-issuer.sh anchor` (py-oidc-auth {anchor['py_oidc_auth']}, PyJWT "
    f"{anchor['pyjwt']}, cryptography {anchor['cryptography']}, Python {anchor['python']}; "
    f"median of {anchor['rounds']} rounds of {anchor['round_secs']:g} s, one thread).", "",
    "**A10a**: `Issuer::mint` / `verify_own` beside raw `jsonwebtoken::encode` / `decode` "
    "with the same key, header, claims and `Validation`.", "",
    "Two estimates of the same ratio (broker rate / raw rate): the ratio of criterion's means, "
    "and the median over 40 rounds that time a block of broker calls and a block of raw calls "
    "back to back (IQR in brackets), which cancels load that drifts over seconds.", "",
    "| op | alg | broker (mean) | raw (mean) | ratio of means | paired ratio, median (IQR) | target | aws-lc, key parsed once |",
    "|---|---|---:|---:|---:|---:|---|---:|",
]
for c in checks:
    if c["id"].startswith("A10a/"):
        _, op, alg = c["id"].split("/")
        cached = rate.get(f"{op}/{alg}/cached-key")
        lines.append(f"| {op} | {alg} | {fmt(rate[f'{op}/{alg}/broker'])} | "
                     f"{fmt(rate[f'{op}/{alg}/raw'])} | {c['value']:.2f} "
                     f"({'met' if c['met'] else '**missed**'}) | {c['paired_median']:.2f} "
                     f"({c['paired_q1']:.2f}–{c['paired_q3']:.2f}) "
                     f"({'met' if c['paired_met'] else '**missed**'}) | ≥ {c['target']:.2f} | "
                     f"{fmt(cached) if cached else '—'} |")
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
lines += ["", "Regenerate with `scripts/bench-issuer.sh all` (it writes `issuer-criterion.json`, "
          "`issuer-anchor.json`, `issuer-summary.json` and this section as `issuer.md` under "
          "`target/bench-issuer/`; fields in the script).", ""]
open(os.path.join(out, "issuer.md"), "w").write("\n".join(lines))
for c in checks:
    extra = f", paired {c['paired_median']:.3f} {'met' if c['paired_met'] else 'MISSED'}" if "paired_median" in c else ""
    print(f"{c['id']}: {c['value']:.3f} (target {c['target']}) {'met' if c['met'] else 'MISSED'}{extra}",
          file=sys.stderr)
PY
}

case "${1:-}" in
  all) shift; run_rust "$@"; run_anchor; report ;;
  rust) shift; run_rust "$@" ;;
  anchor) run_anchor ;;
  report) report ;;
  *) echo "usage: $0 all|rust|anchor|report" >&2; exit 2 ;;
esac
