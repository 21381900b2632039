//! Graceful shutdown: 128 short-lived `brokerctl` processes against MongoDB,
//! and not one prints a panic. The driver returns connections and ends
//! cursors from background tasks; a process that exits with its client
//! alive tore the runtime down under them, and about one process in 64
//! printed a panic ("SendError" in the driver's connection requester).

use std::process::Command;
use std::sync::Arc;

use broker_core::crypto::EncryptionKey;
use broker_core::{KeyConfig, Namespace, Session, TokenVault, unix_now};
use secrecy::SecretString;

/// The 64, doubled: one exit in about 60 panicked, so 64 missed it
/// about a third of the time.
const PROCESSES: usize = 128;
const AT_ONCE: usize = 8;

#[tokio::test(flavor = "multi_thread")]
async fn short_lived_processes_exit_without_a_driver_panic() {
    let Some(url) = conformance::provision::mongo_url().await else {
        return;
    };
    let ns = Namespace::random("shutdown").unwrap();
    let opener = brokerctl::StoreOpener::new(&url);
    let store = opener.open(ns.clone()).await.unwrap();
    store.setup().await.unwrap();
    let vault = TokenVault::open(
        Arc::clone(&store),
        KeyConfig::new(EncryptionKey::from_bytes(&[4; 32]).unwrap()),
    )
    .await
    .unwrap();
    let now = unix_now();
    for i in 0..20 {
        vault
            .save_session(&Session {
                jti: format!("j{i}"),
                sub: "s".into(),
                refresh_token: SecretString::from("rt".to_owned()),
                user_info: serde_json::json!({}).into(),
                expires_at: now + 600,
                auth_time: now,
            })
            .await
            .unwrap();
    }

    let binary = assert_cmd::cargo::cargo_bin("brokerctl");
    let mut stderrs = Vec::with_capacity(PROCESSES);
    for _ in 0..PROCESSES / AT_ONCE {
        let batch: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                let (binary, url, ns) = (binary.clone(), url.clone(), ns.to_string());
                tokio::task::spawn_blocking(move || {
                    Command::new(binary)
                        .args(["--store", &url, "--namespace", &ns, "--json", "stats"])
                        .env_remove("BROKER_STORE_URL")
                        .output()
                        .expect("brokerctl runs")
                })
            })
            .collect();
        for process in batch {
            let out = process.await.unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stderrs.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    store.drop_namespace().await.unwrap();
    opener.shutdown().await;

    let panicked: Vec<&String> = stderrs.iter().filter(|e| e.contains("panicked")).collect();
    assert!(
        panicked.is_empty(),
        "{} of {PROCESSES} processes panicked; the first: {}",
        panicked.len(),
        panicked[0]
    );
}
