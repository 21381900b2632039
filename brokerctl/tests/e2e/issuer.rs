//! `brokerctl keys …` and `brokerctl peers …` end to end on a sled store:
//! the key set's life (created, rotated ahead and at once, a py-oidc-auth
//! PEM imported) with no key material printed; every bad input a typed
//! one-line error that writes nothing; peer documents fetched from a
//! loopback JWKS route, listed and forgotten.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use assert_cmd::Command;
use broker_core::{EncryptionKey, KeyConfig, MemoryStore, SystemClock, TokenVault};
use broker_issuer::{Issuer, IssuerConfig};

const PASS: &str = "correct horse battery";
const PEM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../broker-issuer/tests/fixtures/py-oidc-auth-key.pem"
);
const PEM_KID: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../broker-issuer/tests/fixtures/py-oidc-auth-key.kid"
);

/// A sled store, initialised with the passphrase [`PASS`].
struct Store {
    _dir: tempfile::TempDir,
    url: String,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sled://{}", dir.path().join("db").display());
        let store = Self { _dir: dir, url };
        store.run(PASS, &["init"]).success();
        store
    }

    /// brokerctl on this store with `passphrase`, `--json`, and `args`.
    fn run(&self, passphrase: &str, args: &[&str]) -> assert_cmd::assert::Assert {
        Command::cargo_bin("brokerctl")
            .unwrap()
            .env_remove("BROKER_STORE_URL")
            .env_remove("BROKER_NAMESPACE")
            .env("PASS", passphrase)
            .args(["--store", &self.url, "--passphrase-env", "PASS", "--json"])
            .args(args)
            .assert()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(PASS, args).success().get_output().stdout.clone();
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out)))
    }

    /// The failure of `args` with `passphrase`: its exit code and its one
    /// line on stderr.
    fn failure(&self, passphrase: &str, args: &[&str]) -> (i32, String) {
        let out = self.run(passphrase, args).failure().get_output().clone();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(out.stdout.is_empty(), "{:?}", out.stdout);
        (out.status.code().unwrap(), stderr)
    }

    fn key_set(&self) -> serde_json::Value {
        self.json(&["keys", "list"])
    }
}

fn states(keys: &serde_json::Value) -> Vec<&str> {
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect()
}

/// Key material of the fixture PEM, to look for in output: its base64
/// lines.
fn pem_lines() -> Vec<String> {
    std::fs::read_to_string(PEM)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_owned)
        .collect()
}

fn assert_no_key_material(text: &str) {
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    for field in ["\"d\"", "\"p\"", "\"q\"", "pkcs8"] {
        assert!(!text.contains(field), "{field} in {text}");
    }
    for line in pem_lines() {
        assert!(!text.contains(&line[..20]), "PEM content printed: {text}");
    }
}

#[test]
fn keys_list_rotate_and_import_print_no_key_material() {
    let store = Store::new();
    let empty = store.key_set();
    assert_eq!(empty["key_set"], false, "{empty}");
    // Listing created nothing.
    assert_eq!(store.key_set()["key_set"], false);

    let first = store.json(&["keys", "rotate"]);
    assert_eq!(first["created_key_set"], true, "{first}");
    assert_eq!(states(&first), ["active"]);
    assert_eq!(first["keys"][0]["alg"], "RS256");

    let ahead = store.json(&["keys", "rotate"]);
    assert_eq!(ahead["created_key_set"], false);
    assert_eq!(states(&ahead), ["active", "published"], "{ahead}");
    let new = &ahead["keys"][1];
    assert_eq!(new["kid"], ahead["added"]);
    let (from, to) = (
        ahead["keys"][0]["activate_at"].as_i64().unwrap(),
        new["activate_at"].as_i64().unwrap(),
    );
    assert!(to - from >= 3600, "published an hour ahead: {ahead}");
    assert_eq!(
        ahead["keys"][0]["retire_at"],
        new["activate_at"].as_i64().unwrap() + 1230
    );

    let now = store.json(&["keys", "rotate", "--now", "--alg", "ES256"]);
    let states_now = states(&now);
    assert_eq!(states_now.len(), 3, "{now}");
    assert!(states_now.contains(&"active") && states_now.contains(&"retiring"));
    let active = now["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "active")
        .unwrap();
    assert_eq!(
        (&active["kid"], &active["alg"]),
        (&now["added"], &"ES256".into())
    );

    let imported = store.json(&["keys", "import-pem", PEM]);
    let legacy = std::fs::read_to_string(PEM_KID).unwrap();
    assert_eq!(imported["legacy_kid"], legacy.trim(), "{imported}");
    let listed = store.key_set();
    let mine = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == imported["kid"])
        .unwrap();
    assert_eq!(
        (&mine["state"], &mine["alg"]),
        (&"active".into(), &"RS256".into())
    );

    // The text forms too, and nothing anywhere holds key material.
    let text = String::from_utf8(
        Command::cargo_bin("brokerctl")
            .unwrap()
            .env("PASS", PASS)
            .args([
                "--store",
                &store.url,
                "--passphrase-env",
                "PASS",
                "keys",
                "list",
            ])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.contains(&format!("(py-oidc-auth kid {})", legacy.trim())),
        "{text}"
    );
    for doc in [&first, &ahead, &now, &imported, &listed] {
        assert_no_key_material(&doc.to_string());
    }
    assert_no_key_material(&text);
    // The same PEM again is refused: one line, exit 2.
    let (code, line) = store.failure(PASS, &["keys", "import-pem", PEM]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("already in the key set"), "{line}");
}

/// Each bad input to `import-pem` is a one-line error of its kind, prints
/// nothing of the file, and leaves the store without a key set.
#[test]
fn bad_pem_input_writes_nothing() {
    let store = Store::new();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &[u8]| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let missing = dir.path().join("missing.pem");
    let text = write("note.pem", b"hello operator, this is not a key at all");
    let garbage = write(
        "garbage.pem",
        b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldC1zZWNyZXQ=\n-----END PRIVATE KEY-----\n",
    );
    let binary = write("binary.pem", &[0xff, 0xfe, 0x00, 0x80]);
    let public = write(
        "public.pem",
        b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
    );
    let huge = write("huge.pem", &vec![b'A'; 70 * 1024]);
    let cases: [(&Path, &str); 6] = [
        (&missing, "cannot read the PEM file"),
        (&text, "is not an importable private key"),
        (&garbage, "is not an importable private key"),
        (&binary, "is not an importable private key"),
        (&public, "is not an importable private key"),
        (&huge, "is larger than"),
    ];
    for (path, expected) in cases {
        let p = path.to_str().unwrap();
        let (code, line) = store.failure(PASS, &["keys", "import-pem", p]);
        assert_eq!(code, 2, "{p}: {line}");
        assert!(line.contains(expected) && line.contains(p), "{p}: {line}");
        for secret in ["hello operator", "c2VjcmV0", "MCowBQYD", "AAAAAAAA"] {
            assert!(!line.contains(secret), "{p}: file content printed: {line}");
        }
        assert_eq!(
            store.key_set()["key_set"],
            false,
            "{p}: a key set was written"
        );
    }

    // A good file with the wrong passphrase: the key error, nothing written.
    let (code, line) = store.failure("wrong horse battery", &["keys", "import-pem", PEM]);
    assert_eq!(code, 4, "{line}");
    assert!(line.contains("--passphrase-env"), "{line}");
    assert_eq!(store.key_set()["key_set"], false);
    // ... and with the right one it imports.
    assert_eq!(store.json(&["keys", "import-pem", PEM])["key_set"], true);
}

/// A loopback HTTP server answering every request with `status` and
/// `body`; returns its base URL.
fn serve(status: &'static str, body: Vec<u8>) -> (String, std::net::TcpListener) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let l = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    (url, listener)
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A peer broker's JWKS (an RS256 issuer on a memory store) and its kid.
async fn peer_jwks(issuer: &str) -> (Vec<u8>, String) {
    let vault = TokenVault::open(
        Arc::new(MemoryStore::new()),
        KeyConfig::new(EncryptionKey::generate()),
    )
    .await
    .unwrap();
    let peer = Issuer::open(
        Arc::new(vault),
        IssuerConfig::new(issuer, "aud"),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    (peer.jwks().body.to_vec(), peer.keys()[0].kid.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_refresh_list_and_forget() {
    let store = Store::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let (jwks, kid) = peer_jwks(&issuer).await;
    let (url, _server) = serve("200 OK", jwks);
    let uri = format!("{url}/jwks.json");
    let refresh = |extra: &[&str]| {
        let mut args = vec!["peers", "refresh", &issuer, "--jwks-uri", &uri];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };

    // HTTPS is required unless loopback HTTP is allowed: nothing stored.
    let args = refresh(&[]);
    let (code, line) = store.failure(PASS, &as_strs(&args));
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("https"), "{line}");
    assert_eq!(
        store.json(&["peers", "list"])["peers"],
        serde_json::json!([])
    );

    let args = refresh(&["--allow-http-loopback"]);
    let refreshed = store.json(&as_strs(&args));
    assert_eq!(refreshed["kids"], serde_json::json!([kid]), "{refreshed}");
    let fetched_at = refreshed["fetched_at"].as_i64().unwrap();

    let other = "https://other.example/api";
    let listed = store.json(&["peers", "list", "--peer", &issuer, "--peer", other]);
    assert_eq!(
        listed["peers"],
        serde_json::json!([
            {"issuer": issuer, "configured": true, "stored": true, "fetched_at": fetched_at, "kids": [kid]},
            {"issuer": other, "configured": true, "stored": false, "fetched_at": null, "kids": []},
        ]),
        "{listed}"
    );

    // A failing peer: one line with the reason; the stored document stays.
    let (failing, _server2) = serve("503 Service Unavailable", b"{}".to_vec());
    let bad_uri = format!("{failing}/jwks.json");
    let (code, line) = store.failure(
        PASS,
        &[
            "peers",
            "refresh",
            &issuer,
            "--jwks-uri",
            &bad_uri,
            "--allow-http-loopback",
        ],
    );
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("error status"), "{line}");
    assert_eq!(
        store.json(&["peers", "list"])["peers"][0]["fetched_at"],
        fetched_at
    );
    // The wrong passphrase lists nothing.
    let (code, _) = store.failure("wrong horse battery", &["peers", "list"]);
    assert_eq!(code, 4);

    let forgotten = store.json(&["peers", "forget", &issuer]);
    assert_eq!(forgotten["forgotten"], true);
    assert_eq!(
        store.json(&["peers", "list"])["peers"],
        serde_json::json!([])
    );
    assert_eq!(
        store.json(&["peers", "forget", &issuer])["forgotten"],
        false
    );
}
