//! End-to-end tests that drive the `brokerctl` binary.

use std::path::Path;

use assert_cmd::Command;
use base64::Engine as _;
use broker_core::crypto::EncryptionKey;
use broker_core::{KeyConfig, Namespace, Session, TokenVault, unix_now};
use secrecy::{ExposeSecret, SecretString};

fn brokerctl() -> Command {
    let mut cmd = Command::cargo_bin("brokerctl").expect("binary built");
    cmd.env_remove("BROKER_STORE_URL")
        .env_remove("BROKER_NAMESPACE");
    cmd
}

fn b64(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Write `n` sessions into a sled store at `path` with `key`, then close it.
async fn seed(path: &Path, key: [u8; 32], n: usize) {
    let store = brokerctl::open_store(&format!("sled://{}", path.display()), Namespace::default())
        .await
        .unwrap();
    let vault = TokenVault::open(
        store,
        KeyConfig::new(EncryptionKey::from_bytes(&key).unwrap()),
    )
    .await
    .unwrap();
    let now = unix_now();
    for i in 0..n {
        vault
            .save_session(&Session {
                jti: format!("j{i}"),
                sub: format!("user{}", i % 3),
                refresh_token: SecretString::from(format!("rt-{i}")),
                user_info: serde_json::json!({"i": i}).into(),
                expires_at: now + 3600,
                auth_time: now,
            })
            .await
            .unwrap();
    }
}

/// Run brokerctl with `args`, expect success, parse its JSON output.
fn run_json(args: &[&str]) -> serde_json::Value {
    json_of(
        &brokerctl()
            .args(args)
            .assert()
            .success()
            .get_output()
            .stdout,
    )
}

fn json_of(output: &[u8]) -> serde_json::Value {
    serde_json::from_slice(output)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(output)))
}

#[test]
fn demo_runs_and_reports() {
    let out = brokerctl()
        .arg("demo")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("1 won the take"), "{text}");
    assert!(text.contains("revoke alice → 2 sessions removed"), "{text}");
    assert!(text.contains("plaintext: not found"), "{text}");
    assert!(
        !text.contains("idp-refresh-token-of"),
        "the demo printed a token: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_purge_revoke_after_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    seed(&path, [7; 32], 30).await;
    let url = format!("sled://{}", path.display());
    let stats = run_json(&["--store", &url, "--json", "stats"]);
    assert_eq!(stats["live_sessions"], 30);
    assert_eq!(stats["subjects"], 3);
    let key_id = EncryptionKey::from_bytes(&[7; 32])
        .unwrap()
        .id()
        .to_string();
    assert_eq!(stats["key_ids"][&key_id], 30, "{stats}");
    let revoked = run_json(&["--store", &url, "--json", "revoke", "--sub", "user1"]);
    assert_eq!(revoked["revoked"], 10);
    let purged = run_json(&["--store", &url, "--json", "purge"]);
    assert_eq!(purged["purged"], 0);
    let stats = run_json(&["--store", &url, "--json", "stats"]);
    assert_eq!(stats["live_sessions"], 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn rekey_then_old_key_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    seed(&path, [1; 32], 1200).await;
    let url = format!("sled://{}", path.display());
    let out = brokerctl()
        .args([
            "--store",
            &url,
            "--json",
            "--key-env",
            "OLD_KEY",
            "rekey",
            "--new-key-env",
            "NEW_KEY",
        ])
        .env("OLD_KEY", b64(&[1; 32]))
        .env("NEW_KEY", b64(&[2; 32]))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report = json_of(&out);
    assert_eq!(report["sessions_resealed"], 1200, "{report}");
    // Only the new key is in use; the new key alone opens every session.
    let stats = run_json(&["--store", &url, "--json", "stats"]);
    let new_id = EncryptionKey::from_bytes(&[2; 32])
        .unwrap()
        .id()
        .to_string();
    assert_eq!(stats["key_ids"].as_object().unwrap().len(), 1, "{stats}");
    assert_eq!(stats["key_ids"][&new_id], 1200);
    let store = brokerctl::open_store(&url, Namespace::default())
        .await
        .unwrap();
    let vault = TokenVault::open(
        store,
        KeyConfig::new(EncryptionKey::from_bytes(&[2; 32]).unwrap()),
    )
    .await
    .unwrap();
    for i in [0, 599, 1199] {
        let s = vault
            .get_session(&format!("j{i}"))
            .await
            .unwrap()
            .expect("session kept");
        assert_eq!(s.refresh_token.expose_secret(), format!("rt-{i}"));
    }
}

#[test]
fn check_passes_on_a_good_store() {
    let out = brokerctl()
        .args(["--store", "memory://", "check"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("rule_09_take_is_atomic_under_64_takers"),
        "{text}"
    );
    assert!(text.contains(" 0 failed"), "{text}");
}

fn one_line_error(cmd: &mut Command, code: i32, needle: &str) {
    let out = cmd.assert().code(code).get_output().clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(needle), "{err}");
}

#[test]
fn bad_url_is_one_line_and_exit_2() {
    one_line_error(
        brokerctl().args(["--store", "ftp://host", "stats"]),
        2,
        "unknown or disabled store scheme",
    );
    one_line_error(
        brokerctl().args(["--store", "no-scheme", "stats"]),
        2,
        "not a store URL",
    );
    for query in ["cache_mb=lots", "cache_mb=0", "cache=64"] {
        one_line_error(
            brokerctl().args([
                "--store",
                &format!("sled:///tmp/never-made?{query}"),
                "stats",
            ]),
            2,
            "cache_mb=<megabytes>",
        );
    }
    assert!(!std::path::Path::new("/tmp/never-made").exists());
}

/// No error about a store URL quotes its password: malformed URLs of every
/// backend (exit 2) and a server that cannot be reached (exit 3).
#[test]
fn url_errors_never_print_the_password() {
    let cases = [
        ("ftp://user:canary-pw@host", 2),
        ("sled://canary-pw/relative/path", 2),
        ("sled://user:canary-pw@/tmp/never-made", 2),
        ("postgres://app:canary-pw@db:port/app", 2),
        ("redis://:canary-pw@127.0.0.1:99999", 2),
        ("redis-cluster://u:canary-pw@h1:7000,h2:port", 2),
        ("redis-cluster://u:canary-pw@h1:7000/3", 2),
        ("mongodb://app:canary-pw@[::1/app", 2),
        ("postgres://app:canary-pw@127.0.0.1:1/app", 3),
        ("redis://app:canary-pw@127.0.0.1:1/", 3),
    ];
    for (url, code) in cases {
        let out = brokerctl()
            .args(["--store", url, "stats"])
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(code)
            .get_output()
            .clone();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("canary"), "{url}: {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{url}: {text}");
    }
}

#[test]
fn sled_url_takes_a_cache_size() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}?cache_mb=64", dir.path().join("db").display());
    brokerctl()
        .args(["--store", &url, "--key-env", "K", "init"])
        .env("K", b64(&[7; 32]))
        .assert()
        .success();
    // The database is at the path, without the query.
    assert!(dir.path().join("db").join("conf").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passphrase_is_one_line_and_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}", dir.path().join("db").display());
    brokerctl()
        .args(["--store", &url, "--passphrase-env", "P", "init"])
        .env("P", "the right passphrase")
        .assert()
        .success();
    one_line_error(
        brokerctl()
            .args(["--store", &url, "--passphrase-env", "P", "init"])
            .env("P", "the wrong passphrase"),
        4,
        "wrong key",
    );
}

#[test]
fn unreachable_server_is_one_line_and_exit_3() {
    // Nothing listens on port 1 of the loopback address.
    one_line_error(
        brokerctl()
            .args(["--store", "redis://127.0.0.1:1/", "stats"])
            .timeout(std::time::Duration::from_secs(60)),
        3,
        "unavailable",
    );
}

#[test]
fn check_fails_on_a_broken_store_and_names_the_rule() {
    let out = brokerctl()
        .args([
            "--store",
            "mutant://take-is-get-then-delete",
            "--json",
            "check",
        ])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let report = json_of(&out.stdout);
    assert!(report["failed"].as_u64().unwrap() >= 1, "{report}");
    let failed: Vec<&str> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "FAILED")
        .map(|c| c["case"].as_str().unwrap())
        .collect();
    assert!(
        failed.contains(&"rule_09_take_is_atomic_under_64_takers"),
        "{failed:?}"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("conformance cases failed"), "{err}");
}

/// `check` on PostgreSQL drops every throwaway namespace it made.
#[tokio::test(flavor = "multi_thread")]
async fn check_leaves_no_tables_behind() {
    let Some(url) = conformance::provision::postgres_url().await else {
        return;
    };
    let pool = store_postgres::PostgresStore::connect(&url)
        .await
        .unwrap()
        .pool()
        .clone();
    let tables = || async {
        let names: Vec<String> = store_postgres::sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_name LIKE 'cf%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        names
    };
    let before = tables().await;
    let report = run_json(&["--store", &url, "--json", "check"]);
    assert_eq!(report["failed"], 0, "{report}");
    let after = tables().await;
    let left: Vec<&String> = after.iter().filter(|t| !before.contains(t)).collect();
    assert!(left.is_empty(), "check left tables behind: {left:?}");
}

/// A migration limited with --max-sessions stops, and re-runs with the same
/// resume file continue where it stopped until everything is copied.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_resumes_from_its_resume_file() {
    const KEY: [u8; 32] = [8; 32];
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    seed(&src, KEY, 2500).await;
    let src_url = format!("sled://{}", src.display());
    let dest_url = format!("sled://{}", dir.path().join("dest").display());
    let resume = dir.path().join("migrate.resume");
    let resume_arg = resume.to_str().unwrap();
    // Only `init` creates the destination namespace.
    brokerctl()
        .args(["--store", &dest_url, "--key-env", "K", "init"])
        .env("K", b64(&KEY))
        .assert()
        .success();
    let migrate = |extra: &[&str]| {
        let mut args = vec![
            "--store",
            &src_url,
            "--json",
            "--key-env",
            "K",
            "migrate",
            "--to",
            &dest_url,
            "--resume-file",
            resume_arg,
        ];
        args.extend_from_slice(extra);
        json_of(
            &brokerctl()
                .args(&args)
                .env("K", b64(&KEY))
                .assert()
                .success()
                .get_output()
                .stdout,
        )
    };
    let first = migrate(&["--max-sessions", "1000"]);
    assert_eq!(first["complete"], false, "{first}");
    assert_eq!(first["sessions_this_run"], 1000, "{first}");
    assert!(resume.exists(), "the resume file is kept between runs");
    let second = migrate(&["--max-sessions", "1000"]);
    assert_eq!(
        (&second["resumed"], &second["sessions"]),
        (&serde_json::json!(true), &serde_json::json!(2000)),
        "{second}"
    );
    let last = migrate(&[]);
    assert_eq!(last["complete"], true, "{last}");
    assert_eq!(last["sessions_this_run"], 500, "{last}");
    assert_eq!(last["sessions"], 2500, "{last}");
    assert_eq!(last["destination_live_sessions"], 2500, "{last}");
    assert!(!resume.exists(), "the resume file is removed at the end");

    // Every session is readable at the destination with the same key.
    let dest = brokerctl::open_store(&dest_url, Namespace::default())
        .await
        .unwrap();
    let vault = TokenVault::open(
        dest,
        KeyConfig::new(EncryptionKey::from_bytes(&KEY).unwrap()),
    )
    .await
    .unwrap();
    for i in 0..2500 {
        let s = vault
            .get_session(&format!("j{i}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("j{i} missing at the destination"));
        assert_eq!(s.refresh_token.expose_secret(), format!("rt-{i}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_refuses_a_resume_file_of_another_migration() {
    const KEY: [u8; 32] = [9; 32];
    let dir = tempfile::tempdir().unwrap();
    seed(&dir.path().join("a"), KEY, 3).await;
    seed(&dir.path().join("b"), KEY, 0).await;
    let resume = dir.path().join("r.json");
    std::fs::write(
        &resume,
        r#"{"salt":"00","route":"0000","cursor":null,"copied":1,"scanned":false}"#,
    )
    .unwrap();
    one_line_error(
        brokerctl()
            .args([
                "--store",
                &format!("sled://{}", dir.path().join("a").display()),
                "--key-env",
                "K",
                "migrate",
                "--to",
                &format!("sled://{}", dir.path().join("b").display()),
                "--resume-file",
                resume.to_str().unwrap(),
            ])
            .env("K", b64(&KEY)),
        2,
        "resume file belongs to a migration between other stores",
    );
}

/// `--help` never prints an environment variable's value (a store URL may
/// hold a password), at the top level or for any subcommand.
#[test]
fn help_never_prints_environment_values() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["stats", "--help"],
        &["migrate", "--help"],
        &["rekey", "--help"],
        &["bench", "--help"],
    ] {
        let out = brokerctl()
            .args(args)
            .env(
                "BROKER_STORE_URL",
                "postgres://u:canary-pw-71@db.example/app",
            )
            .env("BROKER_NAMESPACE", "canaryns")
            .assert()
            .success()
            .get_output()
            .clone();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("canary"), "{args:?} printed a value: {text}");
        assert!(
            text.contains("BROKER_STORE_URL") || args[0] != "--help",
            "{text}"
        );
    }
}

/// No command but `init` creates a namespace (or a sled database): a
/// mistyped namespace is an error naming the namespaces that exist.
#[tokio::test(flavor = "multi_thread")]
async fn only_init_creates_a_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    seed(&path, [7; 32], 3).await;
    let url = format!("sled://{}", path.display());
    let other = dir.path().join("other");
    seed(&other, [7; 32], 1).await;
    let other_url = format!("sled://{}", other.display());
    let key = b64(&[7; 32]);
    let commands: [&[&str]; 6] = [
        &["revoke", "--sub", "user1"],
        &["stats"],
        &["purge"],
        &["--key-env", "K", "rekey", "--new-key-env", "K2"],
        &["--key-env", "K", "migrate", "--to", "memory://"],
        &[
            "--key-env",
            "K",
            "migrate",
            "--to",
            &other_url,
            "--to-namespace",
            "typo",
        ],
    ];
    for command in commands {
        let mut args = vec!["--store", url.as_str(), "--namespace", "typo"];
        if command.contains(&"--to-namespace") {
            args[3] = "broker";
        }
        args.extend_from_slice(command);
        let out = brokerctl()
            .args(&args)
            .env("K", &key)
            .env("K2", b64(&[8; 32]))
            .assert()
            .code(2)
            .get_output()
            .clone();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("namespace typo does not exist"),
            "{command:?}: {err}"
        );
        assert!(
            err.contains("existing namespaces: broker"),
            "{command:?}: {err}"
        );
        assert!(err.contains("brokerctl init"), "{command:?}: {err}");
    }
    let db = store_sled::sled::open(&path).unwrap();
    let names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("typo")), "{names:?}");
    drop(db);

    // A sled path that holds no database is not created either.
    let missing = dir.path().join("never-made");
    let out = brokerctl()
        .args(["--store", &format!("sled://{}", missing.display()), "stats"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(!missing.exists(), "stats created a sled database");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("brokerctl init"), "{err}");

    // `init` does create it.
    brokerctl()
        .args([
            "--store",
            &url,
            "--namespace",
            "fresh",
            "--key-env",
            "K",
            "init",
        ])
        .env("K", &key)
        .assert()
        .success();
    run_json(&["--store", &url, "--namespace", "fresh", "--json", "stats"]);
}

/// The migrate resume file is created 0600, not through a symbolic link, and
/// holds no unsalted digest of the URLs (a password in a URL could be
/// guessed back from one).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn migrate_resume_file_is_private_and_salted() {
    use sha2::Digest as _;
    use std::os::unix::fs::PermissionsExt as _;
    const KEY: [u8; 32] = [5; 32];
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    seed(&src, KEY, 30).await;
    let src_url = format!("sled://{}", src.display());
    let dest_url = format!("sled://{}", dir.path().join("dest").display());
    brokerctl()
        .args(["--store", &dest_url, "--key-env", "K", "init"])
        .env("K", b64(&KEY))
        .assert()
        .success();
    let resume = dir.path().join("resume.json");
    let migrate = |resume: &Path| {
        brokerctl()
            .args([
                "--store",
                &src_url,
                "--key-env",
                "K",
                "migrate",
                "--to",
                &dest_url,
                "--resume-file",
                resume.to_str().unwrap(),
                "--max-sessions",
                "10",
            ])
            .env("K", b64(&KEY))
            .assert()
    };
    migrate(&resume).success();
    let mode = std::fs::metadata(&resume).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "resume file mode {mode:o}");
    let text = std::fs::read_to_string(&resume).unwrap();
    let route = format!("{src_url}\nbroker\n{dest_url}\nbroker");
    let unsalted = hex::encode(&sha2::Sha256::digest(route.as_bytes())[..16]);
    assert!(!text.contains(&unsalted), "unsalted URL digest in {text}");
    assert!(
        !text.contains(&src_url) && !text.contains(&dest_url),
        "{text}"
    );

    // A symbolic link at the resume path is refused, its target untouched.
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = migrate(&link).code(2).get_output().clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
}

/// A key or passphrase variable that is set but empty is a configuration
/// error (exit 2), never an empty passphrase; a short passphrase is refused.
#[test]
fn empty_or_short_key_variables_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled://{}", dir.path().join("db").display());
    for flag in ["--passphrase-env", "--key-env"] {
        one_line_error(
            brokerctl()
                .args(["--store", &url, flag, "SECRET", "init"])
                .env("SECRET", ""),
            2,
            "environment variable SECRET is set but empty",
        );
    }
    one_line_error(
        brokerctl()
            .args(["--store", &url, "--passphrase-env", "SECRET", "init"])
            .env("SECRET", "eleven char"),
        4,
        "at least 12 characters",
    );
}

/// A key's nonce budget is counted per database: `migrate` to another
/// database and `bench` with a given key say that their seals cannot be
/// counted against the key's budget elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_and_bench_warn_that_budgets_are_per_database() {
    const KEY: [u8; 32] = [6; 32];
    let dir = tempfile::tempdir().unwrap();
    seed(&dir.path().join("a"), KEY, 2).await;
    seed(&dir.path().join("b"), KEY, 0).await;
    let out = brokerctl()
        .args([
            "--store",
            &format!("sled://{}", dir.path().join("a").display()),
            "--key-env",
            "K",
            "migrate",
            "--to",
            &format!("sled://{}", dir.path().join("b").display()),
        ])
        .env("K", b64(&KEY))
        .assert()
        .success()
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("nonce budget is counted per database"),
        "{err}"
    );

    let out = brokerctl()
        .args([
            "--store",
            "memory://",
            "--json",
            "--key-env",
            "K",
            "bench",
            "--ops",
            "20",
            "--sessions",
            "20",
            "--concurrency",
            "1",
            "--purge",
            "0",
            "--page",
            "0",
        ])
        .env("K", b64(&KEY))
        .assert()
        .success()
        .get_output()
        .clone();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("nonce budget on this database"), "{err}");
}
