use std::path::Path;

use super::*;

fn sled_target(url: &str) -> (Option<PathBuf>, Option<u64>) {
    match StoreUrl::parse(url).unwrap().target {
        Target::Sled { path, cache_mb } => (path, cache_mb),
        _ => panic!("not a sled target"),
    }
}

fn nodes(url: &str) -> Vec<String> {
    match StoreUrl::parse(url).unwrap().target {
        Target::Nodes(nodes) => nodes,
        _ => panic!("not a cluster target"),
    }
}

/// Every form brokerctl's README and tests use, and the backend it names.
#[test]
fn every_supported_form_names_its_backend() {
    let forms = [
        ("sled:///var/lib/app/db", Backend::Sled, "sled"),
        ("sled:///var/lib/app/db?cache_mb=64", Backend::Sled, "sled"),
        ("sled://", Backend::Sled, "sled"),
        ("SLED:///X", Backend::Sled, "sled"),
        (
            "postgres://app:pw@db:5432/app?sslmode=require",
            Backend::Postgres,
            "postgres",
        ),
        (
            "postgresql://app@[::1]/app",
            Backend::Postgres,
            "postgresql",
        ),
        (
            "postgres:///app?host=/run/postgresql",
            Backend::Postgres,
            "postgres",
        ),
        ("mongodb://127.0.0.1:27017/app", Backend::Mongo, "mongodb"),
        (
            "mongodb://app:pw@m1:27017,m2:27018/app?replicaSet=rs0",
            Backend::Mongo,
            "mongodb",
        ),
        (
            "mongodb+srv://app:pw@cluster0.example.net/app",
            Backend::Mongo,
            "mongodb+srv",
        ),
        ("redis://127.0.0.1:6379", Backend::Redis, "redis"),
        ("redis://:pw@127.0.0.1:6379/2", Backend::Redis, "redis"),
        ("rediss://user:pw@cache.example", Backend::Redis, "rediss"),
        (
            "redis-cluster://127.0.0.1:7000,127.0.0.1:7001",
            Backend::RedisCluster,
            "redis-cluster",
        ),
        (
            "Redis-Cluster://h1:7000/",
            Backend::RedisCluster,
            "redis-cluster",
        ),
    ];
    for (url, backend, scheme) in forms {
        let parsed = StoreUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(parsed.backend(), backend, "{url}");
        assert_eq!(parsed.scheme(), scheme, "{url}");
    }
}

#[test]
fn sled_paths_and_cache_size() {
    assert_eq!(
        sled_target("sled:///var/lib/app/db"),
        (Some("/var/lib/app/db".into()), None)
    );
    assert_eq!(
        sled_target("sled:///var/lib/app/db?cache_mb=64"),
        (Some("/var/lib/app/db".into()), Some(64))
    );
    assert_eq!(sled_target("sled://"), (None, None));
    assert_eq!(sled_target("sled://?cache_mb=8"), (None, Some(8)));
    assert_eq!(
        sled_target("sled://localhost/srv/db"),
        (Some("/srv/db".into()), None)
    );
    // A path as `format!("sled://{}", path.display())` writes it: spaces
    // and percent signs come back as they were.
    let (path, _) = sled_target("sled:///tmp/my dir/50%off");
    assert_eq!(path.as_deref(), Some(Path::new("/tmp/my dir/50%off")));
    let (path, _) = sled_target("sled:///tmp/a%20b");
    assert_eq!(path.as_deref(), Some(Path::new("/tmp/a b")));
}

#[test]
fn sled_urls_that_are_refused() {
    let cases = [
        ("sled://relative/path", SLED_FORM),
        ("sled://localhost", SLED_FORM),
        ("sled://user:pw@/tmp/x", SLED_FORM),
        ("sled:///tmp/x#frag", SLED_FORM),
        ("sled:///tmp/x?cache_mb=lots", SLED_QUERY),
        ("sled:///tmp/x?cache_mb=0", SLED_QUERY),
        ("sled:///tmp/x?cache_mb=-1", SLED_QUERY),
        ("sled:///tmp/x?cache=64", SLED_QUERY),
        ("sled:///tmp/x?cache_mb=64&cache_mb=64", SLED_QUERY),
        ("sled:///tmp/x?", SLED_QUERY),
    ];
    for (url, expected) in cases {
        match StoreUrl::parse(url) {
            Err(OpenError::InvalidUrl {
                backend: Backend::Sled,
                reason,
                ..
            }) => assert_eq!(reason, expected, "{url}"),
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn cluster_nodes_each_carry_the_credentials() {
    assert_eq!(
        nodes("redis-cluster://127.0.0.1:7000,127.0.0.1:7001,"),
        ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
    );
    assert_eq!(
        nodes("redis-cluster://app:p%40ss@h1:7000,h2:7001/?protocol=resp3"),
        [
            "redis://app:p%40ss@h1:7000?protocol=resp3",
            "redis://app:p%40ss@h2:7001?protocol=resp3"
        ]
    );
    assert_eq!(nodes("redis-cluster://h1"), ["redis://h1"]);
    for url in [
        "redis-cluster://",
        "redis-cluster://,",
        "redis-cluster://user:pw@",
        "redis-cluster://h1:7000,h2:port",
        "redis-cluster://h1:7000/0",
        "redis-cluster://h1:7000#x",
        "redis-cluster://h1:7000,:7001",
    ] {
        assert!(
            matches!(
                StoreUrl::parse(url),
                Err(OpenError::InvalidUrl {
                    backend: Backend::RedisCluster,
                    ..
                })
            ),
            "{url}"
        );
    }
}

#[test]
fn not_a_url_and_unknown_schemes() {
    for url in [
        "",
        "no-scheme",
        "/var/lib/db",
        "postgres//h/db",
        "://h",
        "1x://h",
        "a b://h",
    ] {
        assert!(
            matches!(StoreUrl::parse(url), Err(OpenError::NotAUrl)),
            "{url}"
        );
    }
    match StoreUrl::parse("FTP://host") {
        Err(OpenError::UnknownScheme { scheme }) => assert_eq!(scheme, "ftp"),
        other => panic!("{other:?}"),
    }
    // Test-only stores are not this crate's.
    for url in ["memory://", "mutant://take-is-get-then-delete"] {
        assert!(
            matches!(StoreUrl::parse(url), Err(OpenError::UnknownScheme { .. })),
            "{url}"
        );
    }
    for url in ["postgres://h:port/db", "redis://h:99999", "rediss://[::1/"] {
        assert!(
            matches!(
                StoreUrl::parse(url),
                Err(OpenError::InvalidUrl {
                    source: Some(_),
                    ..
                })
            ),
            "{url}"
        );
    }
}

/// Every way an error can be shown, with its causes.
fn shown(e: &OpenError) -> String {
    let mut text = format!("{e} {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    text
}

/// No error or `Debug` output of a URL that fails to parse quotes its
/// password, whatever the backend.
#[test]
fn no_error_quotes_a_password() {
    let bad = [
        "canary-pw",
        "user:canary-pw@host",
        "ftp://user:canary-pw@host",
        "sled://user:canary-pw@/tmp/x",
        "sled://canary-pw/tmp/x",
        "sled:///tmp/x?cache_mb=canary-pw",
        "postgres://app:canary-pw@db:port/app",
        "postgres://app:canary-pw@[db/app",
        "redis://:canary-pw@h:99999",
        "rediss://u:canary-pw@[::1/",
        "redis-cluster://u:canary-pw@h1:7000,h2:port",
        "redis-cluster://u:canary-pw@h1:7000/3",
        "redis-cluster://u:canary-pw@",
    ];
    for url in bad {
        let e = StoreUrl::parse(url).expect_err(url);
        let text = shown(&e);
        assert!(!text.contains("canary"), "{url}: {text}");
        let as_store_error = broker_core::StoreError::from(e);
        assert!(!format!("{as_store_error} {as_store_error:?}").contains("canary"));
    }
    for url in [
        "postgres://app:canary-pw@db/app",
        "mongodb://app:canary-pw@m1,m2/app",
        "redis-cluster://u:canary-pw@h1:7000",
    ] {
        let parsed = StoreUrl::parse(url).unwrap();
        assert!(!format!("{parsed:?}").contains("canary"), "{url}");
    }
}

#[test]
fn messages_name_the_forms_this_build_opens() {
    let e = StoreUrl::parse("ftp://h").unwrap_err().to_string();
    assert!(e.contains("unknown store scheme \"ftp\""), "{e}");
    for backend in Backend::ALL {
        assert_eq!(
            e.contains(backend.url_form()),
            backend.is_enabled(),
            "{backend}: {e}"
        );
    }
    let e = StoreUrl::parse("sled:///x?cache=1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("cache_mb=<megabytes>"), "{e}");
}
