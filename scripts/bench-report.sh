#!/usr/bin/env bash
# Benchmarks of the broker stores, and docs/BENCHMARKS.md generated from them.
#
#   scripts/bench-report.sh run [NAME...]   run benchmarks, save JSON under docs/bench/,
#                                           then regenerate the report
#   scripts/bench-report.sh report          regenerate docs/BENCHMARKS.md from docs/bench/*.json
#
# NAMEs (default: all): criterion criterion-native memory-10k sled-10k sled-1m sled-1m-cache3g
# postgres-10k postgres-1m redis-10k redis-cluster-10k mongo-10k. criterion-native repeats the
# per-request CPU benches built with -C target-cpu=native (target/native). sled-1m also
# times `brokerctl migrate` of its 1 000 000 sessions to a second sled database (/usr/bin/time -v for peak RSS);
# sled-1m-cache3g repeats the 1M run with sled's page cache at 3 GiB (?cache_mb=3072).
# Server URLs: BENCH_POSTGRES_URL, BENCH_REDIS_URL, BENCH_REDIS_CLUSTER_URL
# (redis-cluster://h:p,h:p), BENCH_MONGO_URL; each defaults to the matching
# BROKER_TEST_*_URL (source the dev servers' env file first). A backend without a URL
# is skipped, loudly. Set BENCH_EXCLUSIVE=1 when nothing else runs on the machine (the
# report says so; otherwise it carries a caveat). Needs bash, python3 (standard library), cargo; psql and
# redis-cli are used, if present, to record the servers' durability settings.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/docs/bench"
DOC="$ROOT/docs/BENCHMARKS.md"
mode=${1:-report}
[ $# -gt 0 ] && shift

redact() { sed -E 's#://[^@/ ]*@#://***@#g'; }

machine_info() {
  local pg_fsync="" pg_sync="" redis_aof="" redis_fsync=""
  if [ -n "${PG_URL:-}" ] && command -v psql >/dev/null; then
    pg_fsync=$(psql "$PG_URL" -Atc 'show fsync' 2>/dev/null || true)
    pg_sync=$(psql "$PG_URL" -Atc 'show synchronous_commit' 2>/dev/null || true)
  fi
  if [ -n "${REDIS_URL:-}" ] && command -v redis-cli >/dev/null; then
    redis_aof=$(redis-cli -u "$REDIS_URL" config get appendonly 2>/dev/null | tail -1 || true)
    redis_fsync=$(redis-cli -u "$REDIS_URL" config get appendfsync 2>/dev/null | tail -1 || true)
  fi
  PG_FSYNC=$pg_fsync PG_SYNC=$pg_sync REDIS_AOF=$redis_aof REDIS_FSYNC=$redis_fsync \
    RUSTC=$(rustc --version 2>/dev/null || true) python3 - "$OUT/machine.json" <<'PY'
import json, os, platform, sys, time
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
info = {
    "cpu": cpu,
    "cores": os.cpu_count(),
    "ram_gib": round(mem / 1024 / 1024, 1),
    "aes_ni": "aes" in flags and "pclmulqdq" in flags,
    "kernel": platform.release(),
    "rustc": os.environ.get("RUSTC", ""),
    "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    "exclusive": os.environ.get("BENCH_EXCLUSIVE") == "1",
    "loadavg": open("/proc/loadavg").read().split()[0],
    "postgres": {"fsync": os.environ.get("PG_FSYNC", ""), "synchronous_commit": os.environ.get("PG_SYNC", "")},
    "redis": {"appendonly": os.environ.get("REDIS_AOF", ""), "appendfsync": os.environ.get("REDIS_FSYNC", "")},
}
json.dump(info, open(sys.argv[1], "w"), indent=1)
PY
}

# criterion_json DIR OUT COMMAND: the means and 95% CIs of every bench under DIR.
criterion_json() {
  python3 - "$@" <<'PY'
import json, os, sys
root, out, command = sys.argv[1], sys.argv[2], sys.argv[3]
rows = []
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) == "new" and "estimates.json" in files and "benchmark.json" in files:
        b = json.load(open(os.path.join(dirpath, "benchmark.json")))
        e = json.load(open(os.path.join(dirpath, "estimates.json")))
        m = e["mean"]
        rows.append({"id": b["full_id"], "mean_ns": m["point_estimate"],
                     "ci_low_ns": m["confidence_interval"]["lower_bound"],
                     "ci_high_ns": m["confidence_interval"]["upper_bound"],
                     "median_ns": e["median"]["point_estimate"]})
rows.sort(key=lambda r: r["id"])
json.dump({"command": command, "benches": rows}, open(out, "w"), indent=1)
PY
}

# run_bench NAME URL ARGS... : brokerctl bench --json, with the command recorded in the JSON.
run_bench() {
  local name=$1 url=$2; shift 2
  local shown
  shown="brokerctl --store $(printf %s "$url" | redact) --json bench $*"
  echo "== $name: $shown" >&2
  # One retry: other jobs on a shared machine may restart a dev server mid-run.
  if ! "$BIN" --store "$url" --json bench "$@" >"$OUT/$name.json.tmp"; then
    echo "!! $name failed; retrying once in 15 s" >&2
    sleep 15
    "$BIN" --store "$url" --json bench "$@" >"$OUT/$name.json.tmp"
  fi
  python3 - "$OUT/$name.json.tmp" "$OUT/$name.json" "$shown" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d = {"command": sys.argv[3], **d}
json.dump(d, open(sys.argv[2], "w"), indent=1)
PY
  rm -f "$OUT/$name.json.tmp"
}

need() {
  if [ -z "$2" ]; then
    echo "!! SKIPPED $1: no server URL (set BENCH_${3}_URL or BROKER_TEST_${3}_URL)" >&2
    return 1
  fi
}

run_all() {
  mkdir -p "$OUT"
  PG_URL=${BENCH_POSTGRES_URL:-${BROKER_TEST_POSTGRES_URL:-}}
  REDIS_URL=${BENCH_REDIS_URL:-${BROKER_TEST_REDIS_URL:-}}
  MONGO_URL=${BENCH_MONGO_URL:-${BROKER_TEST_MONGO_URL:-}}
  CLUSTER_URL=${BENCH_REDIS_CLUSTER_URL:-}
  if [ -z "$CLUSTER_URL" ] && [ -n "${BROKER_TEST_REDIS_CLUSTER_URLS:-}" ]; then
    CLUSTER_URL="redis-cluster://$(printf %s "$BROKER_TEST_REDIS_CLUSTER_URLS" | sed 's#redis://##g')"
  fi
  local names=("$@")
  [ ${#names[@]} -eq 0 ] && names=(criterion criterion-native memory-10k sled-10k sled-1m sled-1m-cache3g postgres-10k postgres-1m redis-10k redis-cluster-10k mongo-10k)

  (cd "$ROOT" && cargo build --release -p brokerctl)
  WORK=$(mktemp -d /tmp/bench-report.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
  BIN="$WORK/brokerctl"
  cp "$ROOT/target/release/brokerctl" "$BIN"
  machine_info

  for name in "${names[@]}"; do
    case $name in
      criterion)
        echo "== criterion: cargo bench -p broker-core --bench vault" >&2
        (cd "$ROOT" && cargo bench -p broker-core --bench vault)
        criterion_json "$ROOT/target/criterion" "$OUT/criterion.json" \
          "cargo bench -p broker-core --bench vault"
        ;;
      criterion-native)
        # The per-request benches again, built for this CPU (a separate target dir,
        # so the default build above is untouched).
        local cmd="RUSTFLAGS='-C target-cpu=native' CARGO_TARGET_DIR=\$PWD/target/native cargo bench -p broker-core --bench vault -- '^(session|keyring)/'"
        echo "== criterion-native: $cmd" >&2
        # An absolute target dir: criterion resolves a relative one from the bench's crate.
        (cd "$ROOT" && RUSTFLAGS='-C target-cpu=native' CARGO_TARGET_DIR="$ROOT/target/native" \
          cargo bench -p broker-core --bench vault -- '^(session|keyring)/')
        criterion_json "$ROOT/target/native/criterion" "$OUT/criterion-native.json" "$cmd"
        ;;
      memory-10k) run_bench "$name" "memory://" --sessions 10000 ;;
      sled-10k) run_bench "$name" "sled://$WORK/sled-10k" --sessions 10000; rm -rf "$WORK/sled-10k" ;;
      sled-1m)
        BENCH_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
        export BENCH_KEY
        run_bench "$name" "sled://$WORK/sled-1m" --sessions 1000000 --keep --key-env BENCH_KEY
        ns=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["namespace"])' "$OUT/$name.json")
        local shown="brokerctl --store sled:///tmp/src --namespace $ns --key-env BENCH_KEY --json migrate --to sled:///tmp/dst"
        echo "== migrate: /usr/bin/time -v $shown" >&2
        /usr/bin/time -v -o "$WORK/time.txt" "$BIN" --store "sled://$WORK/sled-1m" --namespace "$ns" \
          --key-env BENCH_KEY --json migrate --to "sled://$WORK/sled-1m-copy" >"$WORK/migrate.json"
        python3 - "$WORK/time.txt" "$WORK/migrate.json" "$OUT/migrate-sled-1m.json" "/usr/bin/time -v $shown" <<'PY'
import json, sys
t = {}
for line in open(sys.argv[1]):
    k, _, v = line.strip().rpartition(": ")
    t[k] = v
def secs(s):
    parts = [float(p) for p in s.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
out = {"command": sys.argv[4], "output": json.load(open(sys.argv[2])),
       "max_rss_kib": int(t["Maximum resident set size (kbytes)"]),
       "elapsed_secs": secs(t["Elapsed (wall clock) time (h:mm:ss or m:ss)"])}
json.dump(out, open(sys.argv[3], "w"), indent=1)
PY
        rm -rf "$WORK/sled-1m" "$WORK/sled-1m-copy"
        ;;
      sled-1m-cache3g)
        # The same 1M run with sled's page cache sized to hold the data.
        run_bench "$name" "sled://$WORK/sled-1m-cache3g?cache_mb=3072" --sessions 1000000
        rm -rf "$WORK/sled-1m-cache3g" ;;
      postgres-10k) need "$name" "$PG_URL" POSTGRES && run_bench "$name" "$PG_URL" --sessions 10000 ;;
      postgres-1m) need "$name" "$PG_URL" POSTGRES && run_bench "$name" "$PG_URL" --sessions 1000000 ;;
      redis-10k) need "$name" "$REDIS_URL" REDIS && run_bench "$name" "$REDIS_URL" --sessions 10000 ;;
      redis-cluster-10k) need "$name" "$CLUSTER_URL" REDIS_CLUSTER && run_bench "$name" "$CLUSTER_URL" --sessions 10000 ;;
      # The Mongo dev server (SecantusDB) takes ~20 ms per find_one_and_delete and drops
      # connections under 32 concurrent preload writers: fewer ops, a gentler preload.
      mongo-10k) need "$name" "$MONGO_URL" MONGO && run_bench "$name" "$MONGO_URL" --sessions 10000 --ops 1000 --preload-concurrency 4 ;;
      *) echo "unknown benchmark $name" >&2; exit 2 ;;
    esac
  done
  # The load at the end, next to the load at the start.
  python3 - "$OUT/machine.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["loadavg_end"] = open("/proc/loadavg").read().split()[0]
json.dump(m, open(sys.argv[1], "w"), indent=1)
PY
}

report() {
  python3 - "$OUT" "$DOC" <<'PY'
import glob, json, os, sys, time

out_dir, doc = sys.argv[1], sys.argv[2]
def load(name):
    p = os.path.join(out_dir, name)
    return json.load(open(p)) if os.path.exists(p) else None

machine = load("machine.json") or {}
crit = load("criterion.json")
native = load("criterion-native.json")
migrate = load("migrate-sled-1m.json")
runs = {}
for p in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
    d = json.load(open(p))
    if "results" in d:
        runs[os.path.basename(p)[:-5]] = d

L = []
w = L.append
def fmt(x, nd=0):
    return f"{x:,.{nd}f}".replace(",", " ")
def us(ns):
    return ns / 1000.0
def order(name):
    keys = ["memory", "sled", "postgres", "redis-cluster", "redis", "mongo"]
    for i, k in enumerate(keys):
        if name.startswith(k):
            return (i, runs[name]["args"]["sessions"])
    return (99, 0)

WHY = {
    "memory": "`MemoryStore` keeps the same indexes a backend keeps (a `BTreeMap` by jti, an expiry "
              "`BTreeSet`, a per-subject set) behind one global `Mutex` and clones the record out; the "
              "raw ceiling is one `HashMap` operation under its own lock. Both are a few hundred "
              "nanoseconds, so index upkeep and the extra `String` allocations are most of the ratio.",
    "sled": "A save is up to three inserts (the two index entries first, then the session) and a "
            "flush; a take or delete reads the session, removes it and its two index entries and "
            "flushes; raw is one insert or remove and a flush. (Until this round every store write was "
            "a sled transaction over three trees, which costs sled a second log write and sync and a "
            "process-wide lock: 0.21–0.75× then.) A get decodes the record into an owned "
            "`SessionRecord` — a 1.2 KB copy and three allocations — where raw hands back sled's "
            "reference-counted buffer; the revocation-marker lookup is skipped while the namespace "
            "holds no marker. Closing the rest needs a borrowed record type in the trait.",
    "postgres": "Our statements do more than the raw ones by design: get and take carry the "
                "`NOT EXISTS` revocation check (contract rule 10: a revoked subject's session is never "
                "returned), a second index probe per call; save and delete also maintain the "
                "`expires_at` and `sub` indexes (purge and revoke-by-subject need them) that the raw "
                "table does not have.",
    "redis": "On a single node every operation is one script, so one round trip like raw, but the "
             "server runs more: a save is the session SET plus three sorted-set updates, a get also reads "
             "its subject's revocation marker (server CPU per call from `INFO commandstats` on "
             "2026-11-23: ≈35 µs per save script against ≈2.5 µs per raw SET, ≈6–8 µs per get "
             "script against 0.2–0.5 µs per raw GET). At c1 the round trip dominates and "
             "the ratios are close to the targets; at c32 the server's CPU, on the same 2 cores as "
             "the client, is the limit. Writes are also fsynced (`appendfsync always`).",
    "redis-cluster": "The subject index and the revocation marker live in the subject's hash slot, "
                     "usually on another node than the session, so no script can cover both: get, "
                     "save and delete stay two round trips, take two requests (the take script, then "
                     "one script that unindexes and reads the marker) — ratios near 1/2.",
    "mongodb": "get and take read the session and its subject's revocation marker in one `aggregate` "
             "(`$match` + `$lookup`), against one `find_one`; take then `find_one_and_delete`s with "
             "the same filter (two round trips). Save and delete are one call each, like raw, but the "
             "session collection carries the `expires_at` (TTL) and `sub` indexes. The server here is "
             "the project's MongoDB wire-compatible dev server (SecantusDB, Python), not mongod: its "
             "`find_one_and_delete` grows with the collection (take ≈150 ms at 10 000 documents, raw "
             "and ours alike), and it dropped connections under 32 concurrent preload writers (hence "
             "`--preload-concurrency 4` and 1 000 ops), so these figures say little about MongoDB itself.",
}

w("# Benchmarks")
w("")
w(f"Generated by `scripts/bench-report.sh` from the JSON under `docs/bench/` "
  f"({time.strftime('%Y-%m-%d')}); do not edit by hand — re-run "
  f"`scripts/bench-report.sh run` (everything) or `scripts/bench-report.sh report` (this page only).")
w("")
w("## Machine")
w("")
w(f"- CPU: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"
  f"{' (AES-NI and PCLMULQDQ present)' if machine.get('aes_ni') else ''}; RAM {machine.get('ram_gib', '?')} GiB; "
  f"Linux {machine.get('kernel', '?')}; {machine.get('rustc', '')}")
w(f"- Runs started {machine.get('date', '?')}; 1-minute load average {machine.get('loadavg', '?')} at the start, "
  f"{machine.get('loadavg_end', '?')} at the end (each run's own is in its table heading).")
pg = machine.get("postgres", {})
rd = machine.get("redis", {})
if pg.get("fsync") or rd.get("appendfsync"):
    w(f"- Servers (the project's dev servers, local): PostgreSQL 15 with `fsync={pg.get('fsync', '?')}`, "
      f"`synchronous_commit={pg.get('synchronous_commit', '?')}`; Redis 7 with `appendonly={rd.get('appendonly', '?')}`, "
      f"`appendfsync={rd.get('appendfsync', '?')}`; the MongoDB wire-compatible dev server (SecantusDB), not mongod. "
      f"Client and servers share the same 2 cores.")
if machine.get("exclusive") is True:
    w("- Nothing else ran on the machine during these runs. The load averages in each heading "
      "still exceed 1: they count the bench's own 32 tasks at c32, sled's flusher threads and the "
      "local servers. Client, servers and bench share the 2 cores, so c32 figures are CPU-bound; "
      "ours and raw alternate operation by operation within one process, so the *ratios* compare "
      "like with like.")
else:
    w("- **Caveat:** other work may have run on this machine during these runs (the run was not "
      "marked exclusive with `BENCH_EXCLUSIVE=1`); absolute figures may be low and noisy, p99 most "
      "of all. Ours and raw alternate operation by operation within one process so that both see "
      "the same load, which keeps the *ratios* meaningful.")
w("")
w("## Commands")
w("")
w("```sh")
w("cargo build --release -p brokerctl")
if crit:
    w(crit["command"])
if native:
    w(native["command"])
for name in sorted(runs, key=order):
    w(runs[name]["command"])
if migrate:
    w(migrate["command"])
w("```")
w("")
w("Each `bench` run: a fresh namespace, `--sessions` live sessions stored first (ours through the "
  "trait at concurrency 32, the raw table in bulk), then per concurrency save / get / take / delete "
  "of `--ops` sessions through the `BrokerStore` trait with sealed blobs from a `TokenVault` (1 KiB "
  "refresh token → the sealed size below), each followed by the same operation on the raw table with "
  "the same bytes through the same pool/connection. Gets read random preloaded sessions; saves write "
  "new ones; takes and deletes remove those. Then `purge_expired` with E expired among the stored, "
  "and a scan of everything in pages of 1000. Everything is dropped afterwards.")
w("")

# --- criterion
if crit:
    b = {r["id"]: r for r in crit["benches"]}
    w("## CPU: sealing and key derivation (criterion)")
    w("")
    w("| bench | mean | 95% CI | target |")
    w("|---|---:|---|---|")
    for r in crit["benches"]:
        m = r["mean_ns"]
        val = f"{fmt(m / 1e6, 2)} ms" if m > 1e6 else f"{fmt(us(m), 2)} µs"
        ci = (f"{fmt(r['ci_low_ns'] / 1e6, 2)}–{fmt(r['ci_high_ns'] / 1e6, 2)} ms" if m > 1e6
              else f"{fmt(us(r['ci_low_ns']), 2)}–{fmt(us(r['ci_high_ns']), 2)} µs")
        target = ""
        if r["id"] == "session/seal_open/1KiB":
            target = ("**met** (< 2 µs)" if m < 2000 else
                      f"**missed** by {fmt(us(m) - 2, 2)} µs ({fmt(m / 2000, 2)}× the 2 µs target)")
        if r["id"] == "passphrase_vault_get/x10000":
            target = f"{fmt(us(m) / 10000, 2)} µs per get"
        w(f"| `{r['id']}` | {val} | {ci} | {target} |")
    w("")
    so = b.get("session/seal_open/1KiB")
    ko = b.get("keyring/seal_open/1KiB")
    ar = b.get("argon2id_derive/default")
    gx = b.get("passphrase_vault_get/x10000")
    if ar and gx:
        per_get = gx["mean_ns"] / 10000
        w(f"Key derivation happens once per process: Argon2id at the default parameters costs "
          f"{fmt(ar['mean_ns'] / 1e6, 1)} ms, while each of 10 000 gets through a vault opened with a passphrase "
          f"costs {fmt(us(per_get), 2)} µs ({fmt(ar['mean_ns'] / per_get, 0)}× less) — **met**: no Argon2 per operation.")
        w("")
    if so and ko:
        w(f"Of the {fmt(us(so['mean_ns']), 2)} µs of a 1 KiB session seal + open, the AEAD itself "
          f"(`Keyring` seal + open of the same plaintext size, AES-256-GCM with the binding as "
          f"associated data) is {fmt(us(ko['mean_ns']), 2)} µs; the rest is the session framing: "
          f"serialising `user_info` (the bench seals claims built as a `serde_json::Value`; claims "
          f"opened from a store are resealed as their JSON text without serialising), checking the "
          f"opened JSON without building it (parsed only when the application reads it), copying "
          f"the token into a `SecretString`, and the nonce-budget counter. The AEAD is RustCrypto's "
          f"`aes-gcm`, which SECURITY.md requires (AES-NI and CLMUL are detected at run time; it "
          f"encrypts and then hashes in two passes, while stitched assembly implementations such as "
          f"ring's interleave them). Criterion's interval covers one run; separate runs on this "
          f"virtual machine differ by up to a fifth, so a figure near the target can land on either "
          f"side of it.")
        w("")
    if native:
        nb = {r["id"]: r for r in native["benches"]}
        w("The same benches built for this CPU (`-C target-cpu=native`: the AES-NI and CLMUL code "
          "is compiled in and inlined instead of chosen at run time), a separate run:")
        w("")
        w("| bench | default build | `target-cpu=native` | target |")
        w("|---|---:|---:|---|")
        for r in native["benches"]:
            d = b.get(r["id"])
            m = r["mean_ns"]
            target = ""
            if r["id"] == "session/seal_open/1KiB":
                target = "**met** (< 2 µs)" if m < 2000 else f"missed by {fmt(us(m) - 2, 2)} µs"
            w(f"| `{r['id']}` | {fmt(us(d['mean_ns']), 2) + ' µs' if d else '–'} | {fmt(us(m), 2)} µs | {target} |")
        w("")
        ns = nb.get("session/seal_open/1KiB")
        if ns and ns["mean_ns"] < 2000:
            w("A deployment that builds its binary for the CPUs it runs on meets the target; the "
              "default build stays portable to any x86-64.")
        else:
            w("Building for the CPU moves these figures by less than the run-to-run spread: the "
              "AEAD's two passes over the data, not dispatch, set its cost.")
        w("")

# --- ours vs raw
def lat(x):
    return fmt(x, 1) if x < 10 else fmt(x, 0)

def verdict(r, store):
    t = r.get("target")
    if store == "memory":
        return "reference only"
    if t is None:
        return "no target"
    if r["ratio"] >= t:
        return f"met (≥ {t})"
    return f"**missed** by {fmt((t - r['ratio']) * 100, 0)} pts (≥ {t})"

misses = []
w("## Store vs raw driver")
w("")
w("Targets (issue 8): ours ≥ 0.9 × raw ops/s for get and take and ≥ 0.85 × for save at concurrency 32, "
  "≥ 0.8 × at concurrency 1 (delete at 32 has none). `memory://` is the in-process test store, shown for "
  "reference: its raw ceiling is a bare `HashMap`, so the ratio only shows the store's own CPU cost "
  "(microseconds).")
w("")
for name in sorted(runs, key=order):
    d = runs[name]
    a = d["args"]
    w(f"### {name}: {d['store']}, {fmt(a['sessions'])} stored sessions")
    w("")
    w(f"Sealed blob {d['sealed_bytes']} B (refresh token {a['payload']} B); {fmt(a['ops'])} ops per cell; "
      f"raw ceiling: {d['raw_ops']}. Load average {d.get('loadavg_before', '?')} → {d.get('loadavg_after', '?')}; "
      f"run took {fmt(d['elapsed_secs'], 0)} s.")
    w("")
    w("| op | conc | ours ops/s | raw ops/s | ratio | target | ours p50 / p99 µs | raw p50 / p99 µs |")
    w("|---|---:|---:|---:|---:|---|---:|---:|")
    for r in d["results"]:
        o, rw = r["ours"], r["raw"]
        v = verdict(r, d["store"])
        if "missed" in v:
            misses.append((name, d["store"], r))
        w(f"| {r['op']} | {r['concurrency']} | {fmt(o['ops_per_sec'])} | {fmt(rw['ops_per_sec'])} | "
          f"{r['ratio']:.2f} | {v} | {lat(o['p50_us'])} / {lat(o['p99_us'])} | "
          f"{lat(rw['p50_us'])} / {lat(rw['p99_us'])} |")
    w("")

# --- scale
w("## Scale: 10 000 vs 1 000 000 stored sessions")
w("")
by_store = {}
for name, d in runs.items():
    by_store.setdefault(d["store"], []).append(d)
name_of = {id(d): n for n, d in runs.items()}
pairs = []
for store, ds in sorted(by_store.items()):
    ds = sorted(ds, key=lambda d: (d["args"]["sessions"], name_of[id(d)]))
    # Every larger run of a store against its smallest one.
    pairs += [(store, ds[0], big) for big in ds[1:] if big["args"]["sessions"] > ds[0]["args"]["sessions"]]
if not pairs:
    w("No store has runs at two sizes yet.")
    w("")
for store, small, big in pairs:
    ns, nb = small["args"]["sessions"], big["args"]["sessions"]
    store = f"{store} ({name_of[id(big)]} vs {name_of[id(small)]})"
    w(f"### {store}: p99 latency, {fmt(ns)} vs {fmt(nb)} stored (target: within 1.5×)")
    w("")
    w(f"| op | conc | p99 µs @ {fmt(ns)} | p99 µs @ {fmt(nb)} | × | p50 µs @ {fmt(ns)} | p50 µs @ {fmt(nb)} | raw p99 × | verdict |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    sm = {(r["op"], r["concurrency"]): r for r in small["results"]}
    for r in big["results"]:
        s = sm.get((r["op"], r["concurrency"]))
        if not s:
            continue
        x = r["ours"]["p99_us"] / s["ours"]["p99_us"] if s["ours"]["p99_us"] else 0
        v = "met" if x <= 1.5 else f"**missed** ({x:.2f}×)"
        if x > 1.5:
            misses.append((f"{store} scale", store, {"op": r["op"], "concurrency": r["concurrency"], "p99x": x}))
        rx = r["raw"]["p99_us"] / s["raw"]["p99_us"] if s["raw"]["p99_us"] else 0
        w(f"| {r['op']} | {r['concurrency']} | {fmt(s['ours']['p99_us'], 0)} | {fmt(r['ours']['p99_us'], 0)} | "
          f"{x:.2f} | {fmt(s['ours']['p50_us'], 0)} | {fmt(r['ours']['p50_us'], 0)} | {rx:.2f} | {v} |")
    w("")
    w(f"`purge_expired` with E expired sessions among the stored ones (cost should follow E, not the stored count):")
    w("")
    w(f"| expired E | ms @ {fmt(ns)} stored | ms @ {fmt(nb)} stored | µs per expired @ {fmt(ns)} | µs per expired @ {fmt(nb)} |")
    w("|---:|---:|---:|---:|---:|")
    pb = {p["expired"]: p for p in big["purge"]}
    for p in small["purge"]:
        q = pb.get(p["expired"])
        if not q:
            continue
        per = lambda x: "–" if x["us_per_expired"] is None else fmt(x["us_per_expired"], 1)
        w(f"| {fmt(p['expired'])} | {fmt(p['ms'], 1)} | {fmt(q['ms'], 1)} | {per(p)} | {per(q)} |")
    w("")

# --- memory
w("## Memory: scan and migrate")
w("")
w("Peak RSS (`VmHWM`) of the bench process during a scan of every stored session in pages of "
  "1000, reset just before the scan (`/proc/self/clear_refs`), and over the whole run before the scan:")
w("")
w("| run | stored | scan time s | RSS before scan MiB | peak RSS during scan MiB | peak RSS of the run before the scan MiB |")
w("|---|---:|---:|---:|---:|---:|")
mib = lambda k: "–" if k is None else fmt(k / 1024, 1)
for name in sorted(runs, key=order):
    d = runs[name]
    s = d.get("scan") or {}
    w(f"| {name} | {fmt(d['args']['sessions'])} | {fmt(s.get('secs', 0), 1)} | {mib(s.get('rss_before_kib'))} | "
      f"{mib(s.get('peak_rss_kib'))} | {mib(d.get('peak_rss_kib'))} |")
w("")
w("The sled figures include sled's own page cache, which lives in the process (sled's default "
  "`cache_capacity` is 1 GiB): at 1 000 000 sessions (≈1.2 GB of sealed blobs) it fills, so the "
  "sled process RSS is the cache, not the scan. The client-server backends show the scan's own cost: "
  "one page at a time.")
w("")
if migrate:
    o = migrate.get("output", {})
    w(f"`brokerctl migrate` of {fmt(o.get('sessions', 0))} sessions sled → sled (open, verify and re-seal each "
      f"session, page by page): {fmt(migrate['elapsed_secs'], 0)} s, peak RSS {fmt(migrate['max_rss_kib'] / 1024, 0)} MiB "
      f"(`/usr/bin/time -v`; two sled databases, each with its own page cache, in one process).")
    w("")

# --- misses
w("## Targets missed: by how much, and why")
w("")
cpu = {r["id"]: r for r in crit["benches"]}.get("session/seal_open/1KiB") if crit else None
cpu_missed = bool(cpu) and cpu["mean_ns"] >= 2000
if cpu_missed:
    w(f"- CPU: seal + open of a 1 KiB session took {fmt(us(cpu['mean_ns']), 2)} µs (target < 2 µs; "
      f"why: see *CPU* above — the AEAD alone is most of it).")
if not misses:
    w("" if cpu_missed else "None.")
else:
    seen = set()
    for name, store, r in misses:
        if "p99x" in r:
            w(f"- {name}: p99 of {r['op']} at concurrency {r['concurrency']} grew {r['p99x']:.2f}× (target ≤ 1.5×).")
        else:
            w(f"- {name}: {r['op']} at concurrency {r['concurrency']}: ratio {r['ratio']:.2f} vs target {r['target']} "
              f"(short by {fmt((r['target'] - r['ratio']) * 100, 0)} points).")
    w("")
    w("Why, per backend:")
    w("")
    for name, store, r in misses:
        key = "redis-cluster" if name.startswith("redis-cluster") else store
        if key in WHY and key not in seen:
            seen.add(key)
            w(f"- **{key}**: {WHY[key]}")
    def get_p50(run):
        r = next((r for r in runs.get(run, {}).get("results", [])
                  if r["op"] == "get" and r["concurrency"] == 1), None)
        return f"{fmt(r['ours']['p50_us'], 1)} µs" if r else "?"
    w("- **Scale p99** (where missed): the *raw p99 ×* column is the same growth for the raw "
      "statement on the same database, run alternately with ours: where it grows as much, the "
      "database's own lookups slow down with size (a deeper B-tree, fewer of its pages in the CPU "
      "and page caches), not the store's code. sled shows it most: at 1 000 000 sessions (≈1.2 GB "
      "of sealed blobs plus indexes) the data outgrows sled's default 1 GiB page cache, so a get "
      f"faults pages in and deserialises them (c1 get p50 {get_p50('sled-10k')} → "
      f"{get_p50('sled-1m')}, raw alike); with the cache at 3 GiB "
      f"(`sled:///path?cache_mb=3072`, the `sled-1m-cache3g` run) it is {get_p50('sled-1m-cache3g')}, "
      "but p99 still grows several-fold, raw alike. Purge with nothing expired stays under a "
      "millisecond at any size, so its cost follows what is touched, not what is stored.")
    w("- **Everywhere**: the client, the server and (at c32) 32 client tasks share 2 cores, so c32 "
      "ratios measure CPU per operation on both sides, and one run's p99 of 10 000 samples moves by "
      "tens of percent between runs.")
w("")
open(doc, "w").write("\n".join(L))
print(f"wrote {doc}", file=sys.stderr)
PY
}

case $mode in
  run) run_all "$@"; report ;;
  report) report ;;
  *) echo "usage: $0 run [NAME...] | report" >&2; exit 2 ;;
esac
