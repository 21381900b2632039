//! The machine (CPU, cores, RAM, kernel, compiler), the date, how busy it
//! is, and the servers' durability settings (Linux `/proc`).

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brokerctl::bench::loadavg;

use super::proc::output;
use super::servers::Servers;
use crate::docs::{IdleCheck, Machine, PgSettings, RedisSettings};
use crate::report::fmt::utc_date;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The value of the first `/proc/cpuinfo`-style line `key: value`.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Busy and total jiffies of all CPUs, from the first line of `/proc/stat`.
fn cpu_jiffies(stat: &str) -> Option<(u64, u64)> {
    let nums: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let total: u64 = nums.iter().take(8).sum();
    let idle = nums.get(3)? + nums.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// The busy share of all cores over `window` (percent).
pub fn busy_percent(window: Duration) -> Option<f64> {
    let read = || cpu_jiffies(&std::fs::read_to_string("/proc/stat").ok()?);
    let (b0, t0) = read()?;
    std::thread::sleep(window);
    let (b1, t1) = read()?;
    (t1 > t0).then(|| 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64)
}

/// The major version in `15.18 (Debian …)` or `7.0.15`.
fn major(v: &str) -> String {
    v.trim()
        .split(['.', ' '])
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn pg_settings(s: &Servers) -> PgSettings {
    let Some(pg) = s.postgres.as_ref() else {
        return PgSettings::default();
    };
    let show = |what: &str| {
        let mut cmd = Command::new("psql");
        cmd.args(["-Atc", &format!("show {what}")])
            .envs(pg.libpq_env());
        output("psql", &mut cmd)
            .map(|o| o.trim().to_owned())
            .unwrap_or_default()
    };
    PgSettings {
        version: major(&show("server_version")),
        fsync: show("fsync"),
        synchronous_commit: show("synchronous_commit"),
    }
}

fn redis_settings(s: &Servers) -> RedisSettings {
    let Some(r) = s.redis.as_ref() else {
        return RedisSettings::default();
    };
    let cli = |args: &[&str]| {
        let mut cmd = r.cli();
        cmd.args(args);
        output("redis-cli", &mut cmd).unwrap_or_default()
    };
    let config = |key: &str| {
        cli(&["config", "get", key])
            .lines()
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let info = cli(&["info", "server"]);
    RedisSettings {
        version: field(&info, "redis_version").map(major).unwrap_or_default(),
        appendonly: config("appendonly"),
        appendfsync: config("appendfsync"),
    }
}

/// The machine now, before the first run.
pub fn describe(servers: &Servers, exclusive: bool, idle: IdleCheck) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let flags: Vec<&str> = field(&cpuinfo, "flags")
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let mem_kib: f64 = field(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let started_at = unix_now();
    Machine {
        cpu: field(&cpuinfo, "model name")
            .unwrap_or("unknown")
            .to_owned(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        ram_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        aes_ni: flags.contains(&"aes") && flags.contains(&"pclmulqdq"),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        rustc: output("rustc", Command::new("rustc").arg("--version"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default(),
        date: utc_date(started_at),
        started_at: Some(started_at),
        finished_at: None,
        loadavg: loadavg(),
        loadavg_end: None,
        exclusive,
        idle_check: Some(idle),
        postgres: pg_settings(servers),
        redis: redis_settings(servers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_busy_and_total() {
        let stat = "cpu  100 0 50 800 50 0 0 0 30 0\ncpu0 1 2 3 4\n";
        assert_eq!(cpu_jiffies(stat), Some((150, 1000)));
        assert_eq!(cpu_jiffies("intr 1 2"), None);
    }

    #[test]
    fn dates_and_versions() {
        assert_eq!(utc_date(1_795_453_140), "2026-11-23 16:59 UTC");
        assert_eq!(major("15.18 (Debian 15.18-0+deb12u1)"), "15");
        assert_eq!(major("7.0.15"), "7");
        assert_eq!(
            field("model name\t: AMD EPYC\nflags : aes", "model name"),
            Some("AMD EPYC")
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn busy_share_is_a_percentage() {
        let b = busy_percent(Duration::from_millis(200)).expect("/proc/stat");
        assert!((0.0..=100.0).contains(&b), "{b}");
    }
}
