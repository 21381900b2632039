//! The servers' own limits with their own tools: `pgbench -S -M prepared`
//! (primary-key SELECTs: what a get can reach) and `redis-benchmark` (SET
//! and GET of a value the size of a sealed session).

use std::process::Command;

use super::proc::{output, status};
use super::servers::{Postgres, Redis};
use crate::docs::ServerLimit;
use crate::error::{Error, Result};

/// `tps = 12345.6 (without initial connection time)` in pgbench's output.
pub fn pgbench_tps(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix("tps = "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `"SET","123456.78",…` rows of `redis-benchmark --csv`: (test, rps).
pub fn redis_benchmark_rps(csv: &str) -> Vec<(String, f64)> {
    csv.lines()
        .filter_map(|l| {
            let mut cols = l.split(',').map(|c| c.trim().trim_matches('"'));
            let test = cols.next()?.to_owned();
            let rps = cols.next()?.parse().ok()?;
            Some((test, rps))
        })
        .collect()
}

/// `pgbench -S -M prepared` at each concurrency for `secs` seconds, on
/// scale-1 tables in a schema of its own (dropped afterwards).
pub fn pgbench(
    pg: &Postgres,
    concurrency: &[usize],
    secs: u32,
    cores: usize,
) -> Result<Vec<ServerLimit>> {
    let schema = format!("bench_pgbench_{}", std::process::id());
    let psql = |sql: &str| {
        let mut cmd = Command::new("psql");
        cmd.args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .envs(pg.libpq_env());
        status("psql", &mut cmd)
    };
    let options = format!("-c search_path={schema}");
    let pgbench = |args: &[String]| {
        let mut cmd = Command::new("pgbench");
        cmd.args(args)
            .envs(pg.libpq_env())
            .env("PGOPTIONS", &options);
        cmd
    };
    psql(&format!("CREATE SCHEMA {schema}"))?;
    let result = (|| {
        status(
            "pgbench -i",
            &mut pgbench(&["-i".into(), "-q".into(), "-s".into(), "1".into()]),
        )?;
        let mut out = Vec::new();
        for &c in concurrency {
            let args: Vec<String> = [
                "-n",
                "-S",
                "-M",
                "prepared",
                "-c",
                &c.to_string(),
                "-j",
                &c.min(cores.max(1)).to_string(),
                "-T",
                &secs.to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let text = output("pgbench -S", &mut pgbench(&args))?;
            let tps = pgbench_tps(&text)
                .ok_or_else(|| Error::run("pgbench -S", "no `tps = ` line in its output"))?;
            out.push(ServerLimit {
                store: "postgres".into(),
                op: "get".into(),
                concurrency: c,
                ops_per_sec: tps,
                command: format!(
                    "PGOPTIONS='-c search_path=<schema>' pgbench {} (after pgbench -i -s 1)",
                    args.join(" ")
                ),
            });
        }
        Ok(out)
    })();
    let dropped = psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    let out = result?;
    dropped?;
    Ok(out)
}

/// `redis-benchmark -t set,get` at each concurrency with values of `size`
/// bytes, in database `db` (which must be empty; flushed afterwards).
pub fn redis_benchmark(
    redis: &Redis,
    concurrency: &[usize],
    requests: usize,
    size: usize,
    db: u32,
) -> Result<Vec<ServerLimit>> {
    let cli = |args: &[&str]| {
        let mut cmd = redis.cli();
        cmd.args(["-n", &db.to_string()]).args(args);
        output("redis-cli", &mut cmd)
    };
    let keys: u64 = cli(&["dbsize"])?.trim().parse().unwrap_or(u64::MAX);
    if keys != 0 {
        return Err(Error::run(
            "redis-benchmark",
            format!(
                "database {db} holds {keys} keys; set BENCH_REDIS_BENCHMARK_DB to an empty one"
            ),
        ));
    }
    let mut out = Vec::new();
    let result = (|| {
        for &c in concurrency {
            let args: Vec<String> = [
                "--dbnum",
                &db.to_string(),
                "-c",
                &c.to_string(),
                "-n",
                &requests.to_string(),
                "-r",
                "100000",
                "-d",
                &size.to_string(),
                "-t",
                "set,get",
                "--csv",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut cmd = Command::new("redis-benchmark");
            cmd.args(redis.host_args()).args(&args);
            if let Some(p) = redis.password() {
                cmd.args(["-a", &p]);
            }
            let csv = output("redis-benchmark", &mut cmd)?;
            for (test, rps) in redis_benchmark_rps(&csv) {
                let op = match test.as_str() {
                    "SET" => "save",
                    "GET" => "get",
                    _ => continue,
                };
                out.push(ServerLimit {
                    store: "redis".into(),
                    op: op.into(),
                    concurrency: c,
                    ops_per_sec: rps,
                    command: format!("redis-benchmark {}", args.join(" ")),
                });
            }
        }
        Ok(())
    })();
    // Only a database that was empty when we began is flushed.
    let flushed = cli(&["flushdb"]);
    result?;
    flushed?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_outputs_parse() {
        let pg = "latency average = 0.081 ms\ninitial connection time = 2.1 ms\n\
                  tps = 12345.678901 (without initial connection time)\n";
        assert_eq!(pgbench_tps(pg), Some(12345.678901));
        assert_eq!(pgbench_tps("nothing"), None);
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"41322.31\",\"0.7\"\n\"GET\",\"52631.58\",\"0.5\"\n";
        assert_eq!(
            redis_benchmark_rps(csv),
            [("SET".to_owned(), 41322.31), ("GET".to_owned(), 52631.58)]
        );
    }
}
