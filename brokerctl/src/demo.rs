//! `brokerctl demo`: the whole vault round trip on a throwaway store, with
//! a check that no plaintext reached the disk.

use std::sync::Arc;
use std::time::Instant;

use broker_core::crypto::EncryptionKey;
use broker_core::{KeyConfig, Namespace, Session, TokenVault, unix_now};
use brokerctl::{open_store, output};
use secrecy::{ExposeSecret, SecretString};

use super::{Cli, Fail, fail};

pub(crate) async fn demo(cli: &Cli) -> Result<(), Fail> {
    let dir = tempfile::tempdir()
        .map_err(|e| fail(1, format!("cannot create a temporary directory: {e}")))?;
    let path = dir.path().join("broker.sled");
    let (backend, url) = if cfg!(feature = "sled") {
        ("sled", format!("sled://{}", path.display()))
    } else {
        ("memory", "memory://".to_owned())
    };
    let started = Instant::now();
    let say = |line: String| {
        if !cli.json {
            println!("{line}");
        }
    };
    let store = open_store(&url, Namespace::default()).await?;
    let key = EncryptionKey::generate();
    let vault = Arc::new(TokenVault::open(store, KeyConfig::new(key)).await?);
    say(format!(
        "opened {url} with a fresh AES-256-GCM key (id {})",
        vault.keyring().primary_id()
    ));

    let now = unix_now();
    let session = |jti: &str, sub: &str, token: &str| Session {
        jti: jti.into(),
        sub: sub.into(),
        refresh_token: SecretString::from(token.to_owned()),
        user_info: serde_json::json!({"sub": sub, "email": format!("{sub}@example.org")}).into(),
        expires_at: now + 3600,
        auth_time: now,
    };
    for (jti, sub) in [("jwt-a1", "alice"), ("jwt-a2", "alice"), ("jwt-b1", "bob")] {
        vault
            .create_session(&session(jti, sub, &format!("idp-refresh-token-of-{jti}")))
            .await?;
    }
    say("created 3 sessions (alice ×2, bob ×1); refresh tokens sealed before storage".into());

    let got = vault
        .get_session("jwt-a1")
        .await?
        .ok_or_else(|| fail(1, "demo: session missing"))?;
    say(format!(
        "get jwt-a1 → sub {}, email {}, refresh token of {} bytes (printed as {:?})",
        got.sub,
        got.user_info.expose()["email"],
        got.refresh_token.expose_secret().len(),
        got.refresh_token
    ));

    let racers = (0..8).map(|_| {
        let vault = Arc::clone(&vault);
        tokio::spawn(async move { vault.take_session("jwt-b1").await })
    });
    let mut winners = 0;
    for r in racers.collect::<Vec<_>>() {
        if r.await
            .map_err(|e| fail(1, format!("demo task failed: {e}")))??
            .is_some()
        {
            winners += 1;
        }
    }
    vault
        .save_session(&session("jwt-b2", "bob", "rotated-refresh-token"))
        .await?;
    say(format!(
        "8 concurrent refreshes of jwt-b1 → {winners} won the take; rotated session jwt-b2 saved"
    ));

    let revoked = vault.revoke_subject("alice").await?;
    let after = vault.get_session("jwt-a2").await?;
    say(format!(
        "revoke alice → {revoked} sessions removed; get jwt-a2 → {}",
        if after.is_none() {
            "none"
        } else {
            "still there!"
        }
    ));

    let pem = vault
        .load_or_create_signing_key(|| {
            SecretString::from(
                "-----BEGIN PRIVATE KEY-----\ndemo\n-----END PRIVATE KEY-----".to_owned(),
            )
        })
        .await?;
    say(format!(
        "signing key stored once, sealed ({} bytes of PEM)",
        pem.expose_secret().len()
    ));

    let stats = vault.store().stats().await?;
    say(format!(
        "stats: {} live sessions, {} expired",
        stats.live_sessions, stats.expired_sessions
    ));

    let found = plaintext_on_disk(dir.path(), b"idp-refresh-token-of-");
    say(format!(
        "searched the database files for a refresh token in plaintext: {}",
        if found { "FOUND (bug!)" } else { "not found" }
    ));
    say(format!("done in {:.2}s", started.elapsed().as_secs_f64()));
    if cli.json {
        cli.print(
            String::new(),
            &output::Demo {
                backend,
                winners_of_take: winners,
                revoked,
                live_sessions: stats.live_sessions,
                plaintext_on_disk: found,
            },
        )?;
    }
    if winners != 1 || after.is_some() || found {
        return Err(fail(1, "demo: the store misbehaved"));
    }
    Ok(())
}

/// True if any file under `dir` holds `needle` (after the store flushed).
fn plaintext_on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            plaintext_on_disk(&p, needle)
        } else {
            std::fs::read(&p).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}
