//! `brokerctl migrate` from the embedded store to the server backends, with
//! 10 000 sessions: every session readable at the destination with the
//! same key, the source left as it was.

use assert_cmd::Command;
use base64::Engine as _;
use broker_core::crypto::EncryptionKey;
use broker_core::{BrokerStore, KeyConfig, Namespace, Session, TokenVault, unix_now};
use futures::StreamExt as _;
use secrecy::{ExposeSecret, SecretString};

const N: usize = 10_000;
const KEY: [u8; 32] = [5; 32];

fn vault_keys() -> KeyConfig {
    KeyConfig::new(EncryptionKey::from_bytes(&KEY).unwrap())
}

async fn migrate_to(dest_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src_url = format!("sled://{}", dir.path().join("db").display());
    {
        // Seed fast (sled's periodic flush), then flush once.
        let sled = store_sled::SledStore::open(dir.path().join("db"))
            .unwrap()
            .with_durability(store_sled::Durability::Periodic);
        let vault = std::sync::Arc::new(
            TokenVault::open(std::sync::Arc::new(sled.clone()), vault_keys())
                .await
                .unwrap(),
        );
        let now = unix_now();
        let writes = futures::stream::iter(0..N)
            .map(|i| {
                let vault = std::sync::Arc::clone(&vault);
                async move {
                    vault
                        .save_session(&Session {
                            jti: format!("j{i:05}"),
                            sub: format!("user{}", i % 100),
                            refresh_token: SecretString::from(format!("rt-{i}")),
                            user_info: serde_json::json!({"i": i}).into(),
                            expires_at: now + 3600,
                            auth_time: now,
                        })
                        .await
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        assert!(writes.iter().all(|w| w.is_ok()));
        vault
            .load_or_create_signing_key(|| SecretString::from("pem".to_owned()))
            .await
            .unwrap();
        sled.flush().await.unwrap();
    }
    let ns = Namespace::random("mig").unwrap();
    // Only `init` creates the destination namespace.
    Command::cargo_bin("brokerctl")
        .unwrap()
        .args([
            "--store",
            dest_url,
            "--namespace",
            ns.as_str(),
            "--key-env",
            "K",
            "init",
        ])
        .env("K", base64::engine::general_purpose::STANDARD.encode(KEY))
        .assert()
        .success();
    let out = Command::cargo_bin("brokerctl")
        .unwrap()
        .args([
            "--store",
            &src_url,
            "--json",
            "--key-env",
            "K",
            "migrate",
            "--to",
            dest_url,
            "--to-namespace",
            ns.as_str(),
        ])
        .env("K", base64::engine::general_purpose::STANDARD.encode(KEY))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["sessions"], N as u64, "{report}");
    eprintln!(
        "migrated {N} sessions to {}: {report}",
        dest_url.split("://").next().unwrap_or("")
    );

    let dest = brokerctl::open_store(dest_url, ns.clone()).await.unwrap();
    let vault = std::sync::Arc::new(TokenVault::open(dest, vault_keys()).await.unwrap());
    let reads = futures::stream::iter(0..N)
        .map(|i| {
            let vault = std::sync::Arc::clone(&vault);
            async move { (i, vault.get_session(&format!("j{i:05}")).await) }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    for (i, r) in reads {
        let s = r
            .unwrap()
            .unwrap_or_else(|| panic!("session j{i:05} missing at the destination"));
        assert_eq!(s.refresh_token.expose_secret(), format!("rt-{i}"));
    }
    assert_eq!(
        vault
            .load_or_create_signing_key(|| SecretString::from("other".to_owned()))
            .await
            .unwrap()
            .expose_secret(),
        "pem"
    );
    let store: &dyn BrokerStore = vault.store().as_ref();
    assert_eq!(store.stats().await.unwrap().live_sessions, N as u64);
    // The source is untouched.
    let src = brokerctl::open_store(&src_url, Namespace::default())
        .await
        .unwrap();
    assert_eq!(src.stats().await.unwrap().live_sessions, N as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_sled_to_postgres_10k() {
    let Some(url) = conformance::provision::postgres_url().await else {
        return;
    };
    migrate_to(&url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_sled_to_redis_10k() {
    let Some(url) = conformance::provision::redis_url().await else {
        return;
    };
    migrate_to(&url).await;
}
