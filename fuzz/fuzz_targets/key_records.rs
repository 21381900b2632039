//! The small records a vault reads at open and on every seal, planted with
//! arbitrary bytes in a MemoryStore: the key founder (`keys.founder`, a
//! 4-byte key id), the key check (`key_check.<id>`, a sealed blob), the
//! nonce counter (`nonces.<id>`, a u64) and the key-derivation record
//! (`kdf`). Through the public surface only (`TokenVault::open`,
//! `save_session`), each outcome is predicted exactly: a corrupt record is
//! `Corrupt`, a key check that does not open is `WrongKey`, a spent nonce
//! budget is `KeyExhausted`; nothing panics.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use broker_core::crypto::Binding;
use broker_core::keys::{FOUNDER_RECORD, KDF_RECORD, KdfParams, key_check_record};
use broker_core::secrecy::{ExposeSecret, SecretString};
use broker_core::vault::{NONCE_COUNTER_PREFIX, NONCE_LIMIT};
use broker_core::{BrokerStore, KeyConfig, MemoryStore, Session, StoreError, TokenVault, validate};
use broker_core_fuzz::{AUTH_TIME, EXPIRES_AT, NAMESPACE, PRIMARY, formats, key, ring, runtime};
use libfuzzer_sys::fuzz_target;

/// What the vault checks a key against (`keys.rs`).
const KEY_CHECK_PLAINTEXT: &[u8] = b"oidc-broker-store key check v1";

#[derive(Arbitrary, Debug)]
struct Input {
    founder: Option<Vec<u8>>,
    key_check: Option<Vec<u8>>,
    nonces: Option<Vec<u8>>,
    kdf: Option<Vec<u8>>,
    passphrase: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Ok,
    Corrupt,
    WrongKey,
    KeyExhausted,
}

fn kind<T>(r: &Result<T, StoreError>) -> Kind {
    match r {
        Ok(_) => Kind::Ok,
        Err(e) => {
            formats(e);
            match e {
                StoreError::Corrupt { .. } => Kind::Corrupt,
                StoreError::WrongKey { .. } => Kind::WrongKey,
                StoreError::KeyExhausted { .. } => Kind::KeyExhausted,
                other => panic!("unexpected error kind: {other:?}"),
            }
        }
    }
}

/// Plant `value` under `name` if a store would accept it at all.
async fn plant(store: &MemoryStore, name: &str, value: &Option<Vec<u8>>) -> Option<Vec<u8>> {
    let value = value.as_ref()?;
    if value.is_empty() || value.len() > validate::MAX_SEALED_BYTES {
        return None;
    }
    Some(store.create_record(name, value).await.expect("plant"))
}

fn session(jti: &str) -> Session {
    Session {
        jti: jti.into(),
        sub: "fuzz-sub".into(),
        refresh_token: SecretString::from("rt".to_owned()),
        user_info: broker_core::serde_json::json!({"k": "v"}).into(),
        expires_at: EXPIRES_AT,
        auth_time: AUTH_TIME,
    }
}

fuzz_target!(|input: Input| {
    runtime().block_on(async {
        let store = MemoryStore::new();
        let id = key(PRIMARY).id();

        // The passphrase path is taken only with a planted kdf record that
        // is refused before any derivation (derivation costs 40 ms or more).
        if input.passphrase {
            let Some(kdf) = plant(&store, KDF_RECORD, &input.kdf).await else {
                return;
            };
            let expected = match KdfParams::decode(&kdf) {
                Err(_) => Kind::Corrupt,
                Ok(p) if p.check_bounds().is_err() => Kind::WrongKey,
                Ok(_) => return,
            };
            let opened = TokenVault::open(
                Arc::new(store.clone()),
                KeyConfig::passphrase("fuzz passphrase".to_owned()),
            )
            .await;
            assert_eq!(kind(&opened), expected, "{input:?}");
            return;
        }

        let founder = plant(&store, FOUNDER_RECORD, &input.founder).await;
        let check = plant(&store, &key_check_record(id), &input.key_check).await;
        let nonces = plant(
            &store,
            &format!("{NONCE_COUNTER_PREFIX}{id}"),
            &input.nonces,
        )
        .await;

        let founder_id = match &founder {
            None => Some(id.0.to_be_bytes()),
            Some(f) => <[u8; 4]>::try_from(f.as_slice()).ok(),
        };
        let check_binding = Binding::KeyCheck {
            namespace: NAMESPACE,
            kdf: b"",
        };
        let expected_open = match (founder_id, &check) {
            (None, _) => Kind::Corrupt,
            (Some(_), Some(c)) => {
                let valid = ring()
                    .open(&check_binding, c)
                    .is_ok_and(|p| p.expose_secret() == KEY_CHECK_PLAINTEXT);
                if valid { Kind::Ok } else { Kind::WrongKey }
            }
            (Some(f), None) if f == id.0.to_be_bytes() => Kind::Ok,
            (Some(_), None) => Kind::WrongKey,
        };
        let opened = TokenVault::open(Arc::new(store.clone()), KeyConfig::new(key(PRIMARY))).await;
        assert_eq!(kind(&opened), expected_open, "{input:?}");
        let Ok(vault) = opened else {
            return;
        };

        let used = match &nonces {
            None => Some(0),
            Some(n) => <[u8; 8]>::try_from(n.as_slice())
                .ok()
                .map(u64::from_be_bytes),
        };
        let expected_save = match used {
            None => Kind::Corrupt,
            Some(u) if u >= NONCE_LIMIT => Kind::KeyExhausted,
            Some(_) => Kind::Ok,
        };
        let saved = vault.save_session(&session("a")).await;
        assert_eq!(kind(&saved), expected_save, "{input:?}");
        if saved.is_ok() {
            let back = vault
                .get_session("a")
                .await
                .expect("get")
                .expect("saved session");
            assert_eq!(back.refresh_token.expose_secret(), "rt");
            // One seal left at most: the next one must fail.
            let second = vault.save_session(&session("b")).await;
            if used == Some(NONCE_LIMIT - 1) {
                assert_eq!(kind(&second), Kind::KeyExhausted);
            } else {
                assert_eq!(kind(&second), Kind::Ok);
            }
        }
    });
});
