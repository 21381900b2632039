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
        .env("P", "right one")
        .assert()
        .success();
    one_line_error(
        brokerctl()
            .args(["--store", &url, "--passphrase-env", "P", "init"])
            .env("P", "wrong one"),
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
    let resume = dir.path().join("r.json");
    std::fs::write(
        &resume,
        r#"{"route":"0000","cursor":null,"copied":1,"scanned":false}"#,
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
                "memory://",
                "--resume-file",
                resume.to_str().unwrap(),
            ])
            .env("K", b64(&KEY)),
        2,
        "resume file belongs to a migration between other stores",
    );
}
