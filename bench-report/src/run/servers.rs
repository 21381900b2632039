//! The servers the runs use, from the environment: `BENCH_*_URL`, else the
//! test servers' `BROKER_TEST_*_URL`.

use std::process::Command;

/// A PostgreSQL server.
pub struct Postgres {
    /// Its URL (may hold a password: never shown, never on a command line).
    pub url: String,
}

impl Postgres {
    /// libpq's environment for the URL (`PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD`, `PGDATABASE`), so `psql` and `pgbench` get the password
    /// without it showing in a process list.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let Ok(u) = url::Url::parse(&self.url) else {
            return Vec::new();
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut env = Vec::new();
        if let Some(h) = u.host_str() {
            env.push((
                "PGHOST",
                h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            ));
        }
        if let Some(p) = u.port() {
            env.push(("PGPORT", p.to_string()));
        }
        if !u.username().is_empty() {
            env.push(("PGUSER", decode(u.username())));
        }
        if let Some(p) = u.password() {
            env.push(("PGPASSWORD", decode(p)));
        }
        let db = u.path().trim_start_matches('/');
        if !db.is_empty() {
            env.push(("PGDATABASE", decode(db)));
        }
        env
    }
}

/// A single Redis server.
pub struct Redis {
    /// Its URL.
    pub url: String,
}

impl Redis {
    fn parts(&self) -> (String, u16, Option<String>) {
        match url::Url::parse(&self.url) {
            Ok(u) => (
                u.host_str().unwrap_or("127.0.0.1").to_owned(),
                u.port().unwrap_or(6379),
                u.password().map(str::to_owned),
            ),
            Err(_) => ("127.0.0.1".into(), 6379, None),
        }
    }

    /// `-h host -p port` for `redis-cli` and `redis-benchmark`.
    pub fn host_args(&self) -> Vec<String> {
        let (h, p, _) = self.parts();
        vec!["-h".into(), h, "-p".into(), p.to_string()]
    }

    /// The password, if the URL has one (`redis-benchmark` takes it only
    /// as `-a`).
    pub fn password(&self) -> Option<String> {
        self.parts().2
    }

    /// `redis-cli` on this server (its password through `REDISCLI_AUTH`).
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(self.host_args());
        if let Some(p) = self.password() {
            cmd.env("REDISCLI_AUTH", p);
        }
        cmd
    }
}

/// Every server the environment names.
pub struct Servers {
    /// `BENCH_POSTGRES_URL` / `BROKER_TEST_POSTGRES_URL`.
    pub postgres: Option<Postgres>,
    /// `BENCH_REDIS_URL` / `BROKER_TEST_REDIS_URL`.
    pub redis: Option<Redis>,
    /// `BENCH_REDIS_CLUSTER_URL` (`redis-cluster://h:p,h:p`), else built
    /// from `BROKER_TEST_REDIS_CLUSTER_URLS`.
    pub redis_cluster: Option<String>,
    /// `BENCH_MONGO_URL` / `BROKER_TEST_MONGO_URL`.
    pub mongo: Option<String>,
}

fn env(bench: &str, test: &str) -> Option<String> {
    [bench, test]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
}

impl Servers {
    /// From the environment.
    pub fn from_env() -> Self {
        let redis_cluster = env("BENCH_REDIS_CLUSTER_URL", "").or_else(|| {
            let nodes = env("BROKER_TEST_REDIS_CLUSTER_URLS", "")?;
            let hosts: Vec<&str> = nodes
                .split(',')
                .map(|n| n.trim().trim_start_matches("redis://"))
                .collect();
            Some(format!("redis-cluster://{}", hosts.join(",")))
        });
        Self {
            postgres: env("BENCH_POSTGRES_URL", "BROKER_TEST_POSTGRES_URL")
                .map(|url| Postgres { url }),
            redis: env("BENCH_REDIS_URL", "BROKER_TEST_REDIS_URL").map(|url| Redis { url }),
            redis_cluster,
            mongo: env("BENCH_MONGO_URL", "BROKER_TEST_MONGO_URL"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_gets_the_url_in_parts() {
        let pg = Postgres {
            url: "postgres://me:p%40ss@db.example:5433/app".into(),
        };
        let env = pg.libpq_env();
        let get = |k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PGHOST"), Some("db.example"));
        assert_eq!(get("PGPORT"), Some("5433"));
        assert_eq!(get("PGUSER"), Some("me"));
        assert_eq!(get("PGPASSWORD"), Some("p@ss"));
        assert_eq!(get("PGDATABASE"), Some("app"));
        let r = Redis {
            url: "redis://:pw@10.0.0.1:7000".into(),
        };
        assert_eq!(r.host_args(), ["-h", "10.0.0.1", "-p", "7000"]);
        assert_eq!(r.password().as_deref(), Some("pw"));
    }
}
