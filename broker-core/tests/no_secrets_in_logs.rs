//! SECURITY.md requirement 11 (and 10): a full vault workload on a
//! `MemoryStore` under a TRACE-level capturing subscriber leaks no canary
//! into the log, and no canary appears in the Display or Debug text of any
//! error it produced, nor in the Debug text of sessions, user_info, keys,
//! key configs, keyrings or the vault.
//!
//! Canaries are planted in the refresh token, user_info, the signing key's
//! PEM, the passphrase, a raw key, and (for logs and errors, which must not
//! name them either) the `jti` and `sub`. They are searched for as text,
//! as hex and as base64 (at every alignment). The test proves it is not
//! vacuous: the log must hold spans of every vault operation and the events
//! the workload triggers (re-encryption, nonce-budget warning), and a
//! probe value logged through the same subscriber must be found.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use broker_core::crypto::{EncryptionKey, Keyring};
use broker_core::vault::{NONCE_COUNTER_PREFIX, NONCE_WARNING};
use broker_core::{
    BrokerStore, KeyConfig, MemoryStore, Session, StoreError, TokenVault, UserInfo, unix_now,
    validate,
};
use secrecy::{ExposeSecret, SecretString};
use tracing_subscriber::fmt::format::FmtSpan;

const RT: &str = "canary-refresh-token-Qx81vB";
const UI: &str = "canary-user-info-Zk27pW";
const PEM_BODY: &str = "canary-signing-key-Hd40sL";
const PASS: &str = "canary-passphrase-Mr93tY";
const JTI: &str = "canary-jti-Fw56nE";
const SUB: &str = "canary-sub-Lp12cU";
/// A raw key (rotation target) with recognisable bytes.
const RAW: [u8; 32] = [
    0xc4, 0x7a, 0x11, 0x9e, 0x5d, 0x03, 0xb8, 0x66, 0x2f, 0xe1, 0x70, 0x4c, 0x93, 0x0a, 0xd5, 0x38,
    0x81, 0x6b, 0xf2, 0x27, 0x4e, 0xa9, 0x15, 0xcc, 0x58, 0x3d, 0x97, 0x06, 0xeb, 0x62, 0x1f, 0xb4,
];
/// Logged on purpose at the end: must be found, or the capture is blind.
const PROBE: &str = "probe-value-Vn63gK";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every form a secret could leak in: as is, hex, base64 (standard and
/// URL-safe, at each of the three alignments), and Rust's `{:?}` of bytes.
fn forms(secret: &[u8]) -> Vec<String> {
    let mut out = vec![
        String::from_utf8_lossy(secret).into_owned(),
        secret.iter().map(|b| format!("{b:02x}")).collect(),
        secret.iter().map(|b| format!("{b:02X}")).collect(),
        format!("{:?}", &secret[..8])
            .trim_end_matches(']')
            .to_owned(),
    ];
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for shift in 0..3 {
            let mut shifted = vec![b'x'; shift];
            shifted.extend_from_slice(secret);
            let enc = engine.encode(&shifted);
            // Skip the characters that mix in the shift or the padding.
            out.push(enc[4..enc.len() - 4].to_owned());
        }
    }
    out
}

fn secret_forms() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (name, value) in [
        ("refresh token", RT.as_bytes()),
        ("user_info", UI.as_bytes()),
        ("signing key", PEM_BODY.as_bytes()),
        ("passphrase", PASS.as_bytes()),
        ("raw key", &RAW[..]),
    ] {
        out.extend(forms(value).into_iter().map(|f| (name, f)));
    }
    out.push(("PEM header", "PRIVATE KEY".to_owned()));
    out
}

fn id_forms() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (name, value) in [("jti", JTI), ("sub", SUB)] {
        out.extend(forms(value.as_bytes()).into_iter().map(|f| (name, f)));
    }
    out
}

fn assert_clean(what: &str, text: &str, canaries: &[(&'static str, String)]) {
    for (name, form) in canaries {
        assert!(
            !text.contains(form.as_str()),
            "{what} leaks the {name} canary ({form:?}):\n{text}"
        );
    }
}

fn pem() -> SecretString {
    format!("-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n").into()
}

fn session(jti: &str, sub: &str) -> Session {
    let now = unix_now();
    Session {
        jti: jti.into(),
        sub: sub.into(),
        refresh_token: SecretString::from(RT.to_owned()),
        user_info: serde_json::json!({"email": UI, "nested": {"list": [UI]}}).into(),
        expires_at: now + 3600,
        auth_time: now - 10,
    }
}

/// Collects every error met, to format them all at the end.
#[derive(Default)]
struct Errors(Vec<(&'static str, StoreError)>);

impl Errors {
    /// Keep the error of `r` and return its Debug text (to check its kind).
    fn expect_err<T: std::fmt::Debug>(
        &mut self,
        what: &'static str,
        r: Result<T, StoreError>,
    ) -> String {
        match r {
            Ok(v) => panic!("{what}: expected an error, got {v:?}"),
            Err(e) => {
                let debug = format!("{e:?}");
                self.0.push((what, e));
                debug
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_in_logs_errors_or_debug() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();
    // Global, so spawned tasks and the blocking key-derivation thread are seen too.
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

    let secrets = secret_forms();
    let ids = id_forms();
    let mut debug_texts: Vec<(&str, String)> = Vec::new();
    let mut errors = Errors::default();

    let store = MemoryStore::new();
    let arc: Arc<dyn BrokerStore> = Arc::new(store.clone());
    let config = KeyConfig::passphrase(PASS.to_owned());
    debug_texts.push(("KeyConfig (passphrase)", format!("{config:?}")));
    let vault = TokenVault::open(Arc::clone(&arc), config).await.unwrap();

    // Sessions: create, conflict, save, get, take, delete, revoke, purge.
    let s = session(JTI, SUB);
    debug_texts.push(("Session", format!("{s:?}")));
    debug_texts.push(("UserInfo", format!("{:?}", s.user_info)));
    debug_texts.push(("SecretString", format!("{:?}", s.refresh_token)));
    vault.create_session(&s).await.unwrap();
    let e = errors.expect_err("create twice", vault.create_session(&s).await);
    assert!(e.contains("Conflict"), "{e}");
    vault.save_session(&s).await.unwrap();
    let got = vault.get_session(JTI).await.unwrap().expect("saved");
    assert_eq!(got.refresh_token.expose_secret(), RT);
    debug_texts.push(("Session (read back)", format!("{got:?}")));
    let taken = vault.take_session(JTI).await.unwrap().expect("still there");
    assert_eq!(taken.user_info.expose()["email"], UI);
    assert!(vault.take_session(JTI).await.unwrap().is_none());
    vault.save_session(&s).await.unwrap();
    vault
        .save_session(&session(&format!("{JTI}-2"), SUB))
        .await
        .unwrap();
    assert!(vault.delete_session(&format!("{JTI}-2")).await.unwrap());
    assert_eq!(vault.revoke_subject(SUB).await.unwrap(), 1);
    vault.purge_expired().await.unwrap();

    // The signing key: create, read, a refused rotation, a rotation.
    let key = vault.load_or_create_signing_key(pem).await.unwrap();
    debug_texts.push(("signing key", format!("{key:?}")));
    let e = errors.expect_err(
        "rotate from a stale key",
        vault
            .rotate_signing_key(&"stale".to_owned().into(), &pem())
            .await,
    );
    assert!(e.contains("Conflict"), "{e}");
    let new_pem: SecretString = format!("{}\n", pem().expose_secret()).into();
    vault.rotate_signing_key(&key, &new_pem).await.unwrap();

    // Invalid input carrying canaries in the refused values.
    let now = unix_now();
    let mut long_jti = session(&format!("{}{JTI}", "x".repeat(250)), SUB);
    long_jti.refresh_token = RT.to_owned().into();
    let mut nul_sub = session(JTI, &format!("{SUB}\0"));
    nul_sub.auth_time = now;
    let mut huge_info = session(JTI, SUB);
    huge_info.user_info = UserInfo::new(serde_json::json!({
        "email": UI,
        "pad": "u".repeat(validate::MAX_USER_INFO_BYTES),
    }));
    let mut huge_token = session(JTI, SUB);
    huge_token.refresh_token =
        format!("{RT}{}", "t".repeat(validate::MAX_REFRESH_TOKEN_BYTES)).into();
    let mut far_future = session(JTI, SUB);
    far_future.expires_at = validate::MAX_TIMESTAMP + 1;
    for (what, bad) in [
        ("256-byte jti", &long_jti),
        ("NUL in sub", &nul_sub),
        ("oversized user_info", &huge_info),
        ("oversized refresh token", &huge_token),
        ("expiry past 9999", &far_future),
    ] {
        let e = errors.expect_err(what, vault.save_session(bad).await);
        assert!(e.contains("InvalidInput"), "{what}: {e}");
    }
    errors.expect_err(
        "get of a NUL jti",
        vault.get_session(&format!("{JTI}\0")).await,
    );
    errors.expect_err("revoke of an empty sub", vault.revoke_subject("").await);
    errors.expect_err(
        "take of a 256-byte jti",
        vault
            .take_session(&format!("{}{JTI}", "y".repeat(250)))
            .await,
    );

    // Tampered and moved blobs, planted plaintext, a blob under an unknown key.
    // (Another subject: `SUB` is revoked, and its sessions are hidden.)
    vault
        .save_session(&session(JTI, &format!("{SUB}-b")))
        .await
        .unwrap();
    let mut record = store.get_session(JTI).await.unwrap().expect("stored");
    let good = record.sealed.clone();
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    record.sealed = flipped.into();
    store.save_session(&record).await.unwrap();
    let e = errors.expect_err("tampered blob", vault.get_session(JTI).await);
    assert!(e.contains("Tampered"), "{e}");
    record.sealed = good;
    record.jti = format!("{JTI}-moved");
    store.save_session(&record).await.unwrap();
    let e = errors.expect_err("moved blob", vault.take_session(&record.jti).await);
    assert!(e.contains("Tampered"), "{e}");
    record.jti = format!("{JTI}-planted");
    record.sealed = RT.as_bytes().to_vec().into();
    store.save_session(&record).await.unwrap();
    let e = errors.expect_err("planted plaintext", vault.get_session(&record.jti).await);
    assert!(e.contains("Corrupt"), "{e}");
    let stranger = Keyring::new(EncryptionKey::from_bytes(&[0x5e; 32]).unwrap(), []).unwrap();
    let ns = store.namespace().as_str().to_owned();
    record.jti = format!("{JTI}-stranger");
    record.sealed = stranger
        .seal(
            &broker_core::crypto::Binding::Session {
                namespace: &ns,
                jti: &record.jti,
                sub: &record.sub,
                expires_at: record.expires_at,
                auth_time: record.auth_time,
            },
            RT.as_bytes(),
        )
        .unwrap()
        .into();
    store.save_session(&record).await.unwrap();
    let e = errors.expect_err("unknown key", vault.get_session(&record.jti).await);
    assert!(e.contains("UnknownKey"), "{e}");
    store.delete_session(&record.jti).await.unwrap();
    for j in [
        format!("{JTI}-moved"),
        format!("{JTI}-planted"),
        JTI.to_owned(),
    ] {
        store.delete_session(&j).await.unwrap();
    }

    // Wrong keys at open.
    let e = errors.expect_err(
        "wrong passphrase",
        TokenVault::open(
            Arc::clone(&arc),
            KeyConfig::passphrase(format!("{PASS}-wrong")),
        )
        .await,
    );
    assert!(e.contains("WrongKey"), "{e}");
    let raw = EncryptionKey::from_bytes(&RAW).unwrap();
    debug_texts.push(("EncryptionKey", format!("{raw:?}")));
    let config = KeyConfig::new(raw);
    debug_texts.push(("KeyConfig (raw)", format!("{config:?}")));
    let e = errors.expect_err(
        "unregistered raw key",
        TokenVault::open(Arc::clone(&arc), config).await,
    );
    assert!(e.contains("WrongKey"), "{e}");
    let e = errors.expect_err(
        "31-byte raw key",
        EncryptionKey::from_bytes(&RAW[..31]).map(|k| k.id()),
    );
    assert!(e.contains("InvalidKey"), "{e}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&RAW[..31]);
    errors.expect_err(
        "31-byte base64 key",
        EncryptionKey::from_base64(&b64).map(|k| k.id()),
    );

    // Rotation to the raw key, re-encryption, key usage.
    for i in 0..3 {
        vault
            .save_session(&session(&format!("{JTI}-{i}"), &format!("{SUB}-{i}")))
            .await
            .unwrap();
    }
    let config =
        KeyConfig::passphrase(PASS.to_owned()).rotate_to(EncryptionKey::from_bytes(&RAW).unwrap());
    debug_texts.push(("KeyConfig (rotation)", format!("{config:?}")));
    let rotated = TokenVault::open(Arc::clone(&arc), config).await.unwrap();
    let report = rotated.rekey(|_| {}).await.unwrap();
    assert_eq!(report.sessions_resealed, 3);
    assert_eq!(report.records_resealed, 1);
    rotated.key_usage().await.unwrap();
    debug_texts.push(("TokenVault", format!("{rotated:?}")));
    debug_texts.push(("Keyring", format!("{:?}", rotated.keyring())));
    debug_texts.push(("RekeyReport", format!("{report:?}")));
    let back = rotated
        .get_session(&format!("{JTI}-1"))
        .await
        .unwrap()
        .expect("resealed");
    assert_eq!(back.refresh_token.expose_secret(), RT);

    // The nonce budget: a warning near the limit, refusal past it.
    let worn = MemoryStore::new();
    let worn_key = EncryptionKey::from_bytes(&RAW).unwrap();
    worn.create_record(
        &format!("{NONCE_COUNTER_PREFIX}{}", worn_key.id()),
        &(NONCE_WARNING - 1).to_be_bytes(),
    )
    .await
    .unwrap();
    let worn_vault = TokenVault::open(Arc::new(worn.clone()), KeyConfig::new(worn_key))
        .await
        .unwrap();
    worn_vault.save_session(&s).await.unwrap();
    let spent = MemoryStore::new();
    let spent_key = EncryptionKey::from_bytes(&RAW).unwrap();
    spent
        .create_record(
            &format!("{NONCE_COUNTER_PREFIX}{}", spent_key.id()),
            &u64::MAX.to_be_bytes(),
        )
        .await
        .unwrap();
    let spent_vault = TokenVault::open(Arc::new(spent), KeyConfig::new(spent_key))
        .await
        .unwrap();
    let e = errors.expect_err("spent nonce budget", spent_vault.save_session(&s).await);
    assert!(e.contains("KeyExhausted"), "{e}");

    // The rekey retired the passphrase key: the old vault no longer seals.
    let e = errors.expect_err(
        "sealing under a retired key",
        vault.save_session(&session("after-rekey", SUB)).await,
    );
    assert!(e.contains("KeyRetired"), "{e}");

    // Peers (public) and the probe.
    rotated
        .save_peer_jwks("https://peer.example", r#"{"keys":[]}"#, now)
        .await
        .unwrap();
    rotated.load_peer_jwks().await.unwrap();
    arc.save_peer(&broker_core::PeerJwks {
        issuer: "https://planted.example".into(),
        jwks: format!(r#"{{"keys":[],"x":"{RT}"}}"#),
        fetched_at: now,
    })
    .await
    .unwrap();
    errors.expect_err("planted peer", rotated.load_peer_jwks().await);
    tracing::trace!(probe = PROBE, "canary self-check");

    // ---- checks ----
    let log = capture.text();
    eprintln!(
        "no_secrets_in_logs: {} log lines captured, {} errors and {} Debug texts checked, {} canary forms",
        log.lines().count(),
        errors.0.len(),
        debug_texts.len(),
        secrets.len() + ids.len()
    );
    assert!(
        log.contains(PROBE),
        "the capture does not see logged values:\n{log}"
    );
    for expected in [
        "vault.open",
        "vault.create_session",
        "vault.save_session",
        "vault.get_session",
        "vault.take_session",
        "vault.delete_session",
        "vault.revoke_subject",
        "vault.purge_expired",
        "vault.load_or_create_signing_key",
        "vault.rotate_signing_key",
        "vault.rekey",
        "vault.key_usage",
        "re-encryption finished",
        "nonce budget",
        "TRACE",
        "WARN",
    ] {
        assert!(log.contains(expected), "the log lacks {expected:?}:\n{log}");
    }
    assert_clean("the log", &log, &secrets);
    assert_clean("the log", &log, &ids);
    assert!(errors.0.len() >= 19, "only {} errors met", errors.0.len());
    for (what, e) in &errors.0 {
        assert_clean(what, &e.to_string(), &secrets);
        assert_clean(what, &e.to_string(), &ids);
        assert_clean(what, &format!("{e:?}"), &secrets);
        assert_clean(what, &format!("{e:?}"), &ids);
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            assert_clean(what, &format!("{s} {s:?}"), &secrets);
            source = s.source();
        }
    }
    // Debug of sessions shows `jti` and `sub` (they are ids, not secrets);
    // everything else must be clean of every canary.
    for (what, text) in &debug_texts {
        assert_clean(what, text, &secrets);
        if !what.starts_with("Session") {
            assert_clean(what, text, &ids);
        }
    }
}
