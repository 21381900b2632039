//! Property tests over every decoder of stored bytes, run by every
//! `cargo test` (the same decoders are fuzzed by `scripts/fuzz.sh`):
//! arbitrary bytes never panic and give a typed error or a value; values
//! that decode re-encode to the same bytes; valid encodings round-trip;
//! every single-bit flip, truncation or extension of a valid sealed blob is
//! a typed error, as is opening it at another place.
//!
//! Complements the unit proptests in `crypto.rs` and `keys.rs` (short
//! random byte strings, a fixed 100-byte blob): here the inputs are steered
//! past the version byte, cover the full integer ranges, and reach the
//! session payload and the key records through the vault. The backends'
//! own record encodings are tested (and fuzzed) in their crates.

use std::sync::Arc;

use broker_core::crypto::{Binding, EncryptionKey, Keyring, OVERHEAD, sealed_key_id};
use broker_core::keys::{FOUNDER_RECORD, KdfParams, key_check_record};
use broker_core::vault::{NONCE_COUNTER_PREFIX, NONCE_LIMIT};
use broker_core::{
    BrokerStore, Corruption, KeyConfig, MemoryStore, Session, SessionRecord, StoreError, TokenVault,
};
use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};

fn key(byte: u8) -> EncryptionKey {
    EncryptionKey::from_bytes(&[byte; 32]).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Bytes that start like a v1 record, so decoders get past the version byte.
fn versioned(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..max),
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(|mut v| {
            v.insert(0, 1);
            v
        }),
    ]
}

/// A valid encoding, then at most one edit: a bit flip, a truncation or an
/// inserted byte (so decoders see near-misses, not only noise).
fn mutated(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (valid, any::<prop::sample::Index>(), any::<u8>(), 0u8..4).prop_map(|(mut v, i, b, op)| {
        if !v.is_empty() {
            let at = i.index(v.len());
            match op {
                0 => {}
                1 => v[at] ^= 1 << (b % 8),
                2 => v.truncate(at),
                _ => v.insert(at, b),
            }
        }
        v
    })
}

fn kdf_bytes() -> impl Strategy<Value = Vec<u8>> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<[u8; 16]>()).prop_map(
        |(m_cost, t_cost, p_cost, salt)| {
            KdfParams {
                m_cost,
                t_cost,
                p_cost,
                salt,
            }
            .encode()
        },
    )
}

fn is_corrupt(e: &StoreError) -> bool {
    matches!(e, StoreError::Corrupt { .. })
}

/// An error a sealed blob may legitimately fail with.
fn is_typed_open_error(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Tampered { .. }
            | StoreError::UnknownKey { .. }
            | StoreError::Corrupt {
                reason: Corruption::Truncated | Corruption::UnsupportedVersion(_),
                ..
            }
    )
}

/// Session bindings from arbitrary clear fields.
fn place() -> impl Strategy<Value = (String, String, String, i64, i64)> {
    (
        "[a-z][a-z0-9_]{0,30}",
        ".{1,40}",
        ".{1,40}",
        any::<i64>(),
        any::<i64>(),
    )
}

fn binding(p: &(String, String, String, i64, i64)) -> Binding<'_> {
    Binding::Session {
        namespace: &p.0,
        jti: &p.1,
        sub: &p.2,
        expires_at: p.3,
        auth_time: p.4,
    }
}

/// Arbitrary JSON: what a user_info may hold.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        (-1.0e300f64..1.0e300).prop_map(|f| serde_json::json!(f)),
        ".{0,20}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn session(jti: &str, sub: &str, token: &str, info: serde_json::Value) -> Session {
    Session {
        jti: jti.into(),
        sub: sub.into(),
        refresh_token: SecretString::from(token.to_owned()),
        user_info: info.into(),
        expires_at: 4_102_444_800,
        auth_time: 1_700_000_000,
    }
}

proptest! {
    // ---- the key-derivation record ----

    #[test]
    fn kdf_decoder_is_total_and_canonical(bytes in prop_oneof![versioned(40), mutated(kdf_bytes())]) {
        match KdfParams::decode(&bytes) {
            Ok(p) => {
                prop_assert_eq!(&p.encode(), &bytes);
                prop_assert_eq!(bytes.len(), 29);
            }
            Err(e) => prop_assert!(is_corrupt(&e), "{:?}", e),
        }
    }

    #[test]
    fn any_kdf_record_round_trips_and_bounds_hold(
        m_cost in prop_oneof![any::<u32>(), 19_000u32..1_100_000],
        t_cost in prop_oneof![any::<u32>(), 0u32..12],
        p_cost in prop_oneof![any::<u32>(), 0u32..10],
        salt in any::<[u8; 16]>(),
    ) {
        let p = KdfParams { m_cost, t_cost, p_cost, salt };
        prop_assert_eq!(KdfParams::decode(&p.encode()).unwrap(), p.clone());
        let in_bounds = (19_456..=1_048_576).contains(&m_cost) && (2..=10).contains(&t_cost) && (1..=8).contains(&p_cost);
        match p.check_bounds() {
            Ok(()) => prop_assert!(in_bounds),
            Err(e) => {
                prop_assert!(!in_bounds);
                prop_assert!(matches!(e, StoreError::WrongKey { .. }), "{:?}", e);
            }
        }
    }

    // ---- the envelope ----

    #[test]
    fn arbitrary_bytes_never_open(p in place(), bytes in versioned(120), with_primary_header in any::<bool>()) {
        let ring = Keyring::new(key(1), [key(2)]).unwrap();
        let mut bytes = bytes;
        if with_primary_header && bytes.len() >= 5 {
            // Past the key lookup: the tag check must refuse it.
            bytes[0] = 1;
            bytes[1..5].copy_from_slice(&ring.primary_id().0.to_be_bytes());
        }
        let e = ring.open(&binding(&p), &bytes).unwrap_err();
        prop_assert!(is_typed_open_error(&e), "{:?}", e);
        match sealed_key_id(&bytes) {
            Ok(id) if ring.contains(id) => prop_assert!(matches!(e, StoreError::Tampered { .. }), "{:?}", e),
            Ok(id) => prop_assert!(matches!(e, StoreError::UnknownKey { key_id, .. } if key_id == id), "{:?}", e),
            Err(_) => {}
        }
    }

    #[test]
    fn sealed_blobs_round_trip_anywhere(p in place(), plaintext in proptest::collection::vec(any::<u8>(), 0..600), older in any::<bool>()) {
        let ring = Keyring::new(key(1), [key(2)]).unwrap();
        let sealer = if older { Keyring::new(key(2), []).unwrap() } else { ring.clone() };
        let sealed = sealer.seal(&binding(&p), &plaintext).unwrap();
        prop_assert_eq!(sealed.len(), plaintext.len() + OVERHEAD);
        let opened = ring.open(&binding(&p), &sealed).unwrap();
        prop_assert_eq!(opened.expose_secret(), &plaintext[..]);
    }

    #[test]
    fn moved_blob_is_tampered(p in place(), q in place(), plaintext in proptest::collection::vec(any::<u8>(), 0..64)) {
        prop_assume!(p != q);
        let ring = Keyring::new(key(1), []).unwrap();
        let sealed = ring.seal(&binding(&p), &plaintext).unwrap();
        let e = ring.open(&binding(&q), &sealed).unwrap_err();
        prop_assert!(matches!(e, StoreError::Tampered { .. }), "{:?}", e);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Exhaustive per blob: every single-bit flip, every truncation and an
    /// extension of a valid sealed blob is a typed error, never `Ok`.
    #[test]
    fn every_flip_and_truncation_of_a_sealed_blob_is_a_typed_error(
        p in place(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..80),
        extra in any::<u8>(),
    ) {
        let ring = Keyring::new(key(1), [key(2)]).unwrap();
        let place = binding(&p);
        let sealed = ring.seal(&place, &plaintext).unwrap();
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[i] ^= 1 << bit;
                match ring.open(&place, &bad) {
                    Ok(_) => prop_assert!(false, "byte {} bit {} opened", i, bit),
                    Err(e) => prop_assert!(is_typed_open_error(&e), "byte {} bit {}: {:?}", i, bit, e),
                }
            }
        }
        for len in 0..sealed.len() {
            match ring.open(&place, &sealed[..len]) {
                Ok(_) => prop_assert!(false, "truncated to {} opened", len),
                Err(e) => prop_assert!(is_typed_open_error(&e), "truncated to {}: {:?}", len, e),
            }
        }
        let mut longer = sealed.clone();
        longer.push(extra);
        let e = ring.open(&place, &longer).unwrap_err();
        prop_assert!(matches!(e, StoreError::Tampered { .. }), "{:?}", e);
    }

    // ---- the session payload (parsed by TokenVault::open_session) ----

    /// Any plaintext sealed as a genuine session blob opens to a session or
    /// fails as a malformed session, never a panic; what opens reseals and
    /// reopens to the same token and user_info.
    #[test]
    fn session_payload_parser_is_total(payload in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        mutated((".{0,8}", json()).prop_map(|(t, j)| {
            let mut v = (t.len() as u32).to_be_bytes().to_vec();
            v.extend(t.as_bytes());
            v.extend(serde_json::to_vec(&j).unwrap());
            v
        })),
    ]) {
        let rt = runtime();
        let vault = rt.block_on(TokenVault::open(Arc::new(MemoryStore::new()), KeyConfig::new(key(5)))).unwrap();
        let ns = vault.store().namespace().as_str().to_owned();
        let place = Binding::Session { namespace: &ns, jti: "j", sub: "s", expires_at: 10, auth_time: 5 };
        let record = SessionRecord {
            jti: "j".into(), sub: "s".into(), expires_at: 10, auth_time: 5,
            sealed: vault.keyring().seal(&place, &payload).unwrap().into(),
        };
        // What a full parse says: the vault checks user_info without building
        // it, and must agree exactly with parsing it into a `Value`.
        let expected = payload.get(..4).and_then(|l| {
            let len = u32::from_be_bytes(l.try_into().unwrap()) as usize;
            let token = std::str::from_utf8(payload.get(4..4 + len)?).ok()?;
            let info: serde_json::Value = serde_json::from_slice(&payload[4 + len..]).ok()?;
            Some((token, info))
        });
        let opened = vault.open_session("t", &record);
        prop_assert_eq!(opened.is_ok(), expected.is_some(), "{:?}", opened.as_ref().err());
        match opened {
            Ok(s) => {
                let (token, info) = expected.unwrap();
                prop_assert_eq!(s.refresh_token.expose_secret(), token);
                prop_assert!(s.user_info.expose() == &info);
                let resealed = rt.block_on(vault.seal_session("t", &s)).unwrap();
                let back = vault.open_session("t", &resealed).unwrap();
                prop_assert_eq!(back.refresh_token.expose_secret(), s.refresh_token.expose_secret());
                prop_assert!(back.user_info == s.user_info);
            }
            Err(e) => prop_assert!(
                matches!(e, StoreError::Corrupt { reason: Corruption::Malformed(_), .. }),
                "{:?}", e
            ),
        }
    }

    /// Any session the vault accepts comes back unchanged through the store.
    #[test]
    fn valid_sessions_round_trip_through_the_vault(
        jti in "[^\u{0}]{1,60}",
        sub in "[^\u{0}]{1,60}",
        token in ".{0,300}",
        info in json(),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let vault = TokenVault::open(Arc::new(MemoryStore::new()), KeyConfig::new(key(6))).await.unwrap();
            let s = session(&jti, &sub, &token, info.clone());
            vault.save_session(&s).await.unwrap();
            let back = vault.take_session(&jti).await.unwrap().expect("saved");
            prop_assert_eq!(back.refresh_token.expose_secret(), token.as_str());
            prop_assert!(back.user_info.expose() == &info);
            prop_assert_eq!((back.jti.as_str(), back.sub.as_str()), (jti.as_str(), sub.as_str()));
            Ok::<(), TestCaseError>(())
        })?;
    }

    // ---- key records read by the vault: founder, key check, nonce counter ----

    /// Planted founder and key-check records: a founder that is not 4 bytes
    /// is corrupt; a key check that does not open is a wrong key; never a
    /// panic, never an open vault over a bad check.
    #[test]
    fn planted_key_records_give_typed_errors(
        founder in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..8)),
        check in proptest::option::of(versioned(80)),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let store = MemoryStore::new();
            let id = key(7).id();
            if let Some(f) = &founder {
                store.create_record(FOUNDER_RECORD, f).await.unwrap();
            }
            let check = check.filter(|c| !c.is_empty());
            if let Some(c) = &check {
                store.create_record(&key_check_record(id), c).await.unwrap();
            }
            let opened = TokenVault::open(Arc::new(store.clone()), KeyConfig::new(key(7))).await;
            let founder_len_ok = founder.as_ref().is_none_or(|f| f.len() == 4);
            let founder_is_us = founder.as_ref().is_none_or(|f| f.as_slice() == id.0.to_be_bytes());
            match opened {
                Ok(_) => prop_assert!(founder_len_ok && check.is_none() && founder_is_us),
                Err(StoreError::Corrupt { .. }) => prop_assert!(!founder_len_ok),
                Err(StoreError::WrongKey { .. }) => prop_assert!(founder_len_ok && (check.is_some() || !founder_is_us)),
                Err(e) => prop_assert!(false, "{:?}", e),
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    /// A planted nonce counter: not 8 bytes → corrupt; at or past the limit
    /// → key exhausted; otherwise sealing works. Never a panic.
    #[test]
    fn planted_nonce_counter_gives_typed_errors(counter in prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..12),
        (NONCE_LIMIT - 3..=NONCE_LIMIT + 3).prop_map(|n| n.to_be_bytes().to_vec()),
        any::<u64>().prop_map(|n| n.to_be_bytes().to_vec()),
    ]) {
        let rt = runtime();
        rt.block_on(async {
            let store = MemoryStore::new();
            let id = key(8).id();
            store.create_record(&format!("{NONCE_COUNTER_PREFIX}{id}"), &counter).await.unwrap();
            let vault = TokenVault::open(Arc::new(store.clone()), KeyConfig::new(key(8))).await.unwrap();
            let saved = vault.save_session(&session("j", "s", "rt", serde_json::json!({}))).await;
            let used = <[u8; 8]>::try_from(counter.as_slice()).ok().map(u64::from_be_bytes);
            match (used, saved) {
                (None, Err(StoreError::Corrupt { .. })) => {}
                (Some(u), Err(StoreError::KeyExhausted { .. })) if u >= NONCE_LIMIT => {}
                (Some(u), Ok(())) if u < NONCE_LIMIT => {
                    prop_assert!(vault.get_session("j").await.unwrap().is_some());
                }
                (used, saved) => prop_assert!(false, "counter {:?} gave {:?}", used, saved),
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
