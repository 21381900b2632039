use super::binding::{AD_INLINE, push_field};
use super::*;
use proptest::prelude::*;
use secrecy::ExposeSecret;
use std::collections::HashSet;

fn key(byte: u8) -> EncryptionKey {
    EncryptionKey::from_bytes(&[byte; 32]).unwrap()
}

const PLACE: Binding<'static> = Binding::Session {
    namespace: "ns",
    jti: "jti-1",
    sub: "alice",
    expires_at: 2_000_000_000,
    auth_time: 1_700_000_000,
};

#[test]
fn associated_data_is_the_same_on_the_stack_and_the_heap() {
    let header = header(KeyId(7));
    let sub = "s".repeat(255);
    let ring = Keyring::new(key(7), []).unwrap();
    // Lengths on both sides of AD_INLINE.
    for jti_len in [1, 100, 120, 130, 255] {
        let jti = "j".repeat(jti_len);
        let binding = Binding::Session {
            namespace: "ns",
            jti: &jti,
            sub: if jti_len > 100 { &sub } else { "alice" },
            expires_at: 2_000_000_000,
            auth_time: 1_700_000_000,
        };
        let inline = binding.with_associated_data(&header, <[u8]>::to_vec);
        assert_eq!(inline, binding.associated_data(&header), "jti of {jti_len}");
        let sealed = ring.seal(&binding, b"refresh").unwrap();
        assert_eq!(
            ring.open(&binding, &sealed).unwrap().expose_secret(),
            b"refresh"
        );
        let elsewhere = Binding::Session {
            namespace: "ns",
            jti: &jti,
            sub: "bob",
            expires_at: 2_000_000_000,
            auth_time: 1_700_000_000,
        };
        assert!(matches!(
            ring.open(&elsewhere, &sealed),
            Err(StoreError::Tampered { .. })
        ));
    }
    let long = Binding::Session {
        namespace: "ns",
        jti: &sub,
        sub: &sub,
        expires_at: 1,
        auth_time: 1,
    };
    assert!(long.associated_data(&header).len() > AD_INLINE);
}

#[test]
fn golden_vector() {
    let ring = Keyring::new(key(7), []).unwrap();
    let sealed = ring
        .seal_with_nonce(&PLACE, &[b"refresh"], [9; 12])
        .unwrap();
    assert_eq!(sealed.len(), 7 + OVERHEAD);
    assert_eq!(sealed[0], 0x01);
    assert_eq!(&sealed[1..5], &ring.primary_id().0.to_be_bytes());
    assert_eq!(&sealed[5..17], &[9; 12]);
    // Fixed output for fixed key, nonce, binding and plaintext.
    let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, GOLDEN_HEX, "the sealed format changed");
    assert_eq!(
        ring.open(&PLACE, &sealed).unwrap().expose_secret(),
        b"refresh"
    );
}

// Computed independently from the spec with Python's `cryptography` (AESGCM, HKDF by hand).
const GOLDEN_HEX: &str =
    "01893735f209090909090909090909090955e0e2e6db83a9dc9a2607d94d9820254cc859b3413d98";

#[test]
fn every_flipped_bit_and_truncation_fails_typed() {
    let ring = Keyring::new(key(1), []).unwrap();
    let sealed = ring.seal(&PLACE, &[0x5a; 67]).unwrap();
    assert_eq!(sealed.len(), 100);
    for i in 0..sealed.len() {
        for bit in 0..8 {
            let mut bad = sealed.clone();
            bad[i] ^= 1 << bit;
            let err = ring.open(&PLACE, &bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::Tampered { .. }
                        | StoreError::UnknownKey { .. }
                        | StoreError::Corrupt {
                            reason: Corruption::UnsupportedVersion(_),
                            ..
                        }
                ),
                "byte {i} bit {bit}: {err:?}"
            );
        }
    }
    for len in 0..sealed.len() {
        assert!(
            ring.open(&PLACE, &sealed[..len]).is_err(),
            "truncated to {len}"
        );
    }
}

#[test]
fn blob_is_bound_to_its_place() {
    let ring = Keyring::new(key(1), []).unwrap();
    let sealed = ring.seal(&PLACE, b"rt").unwrap();
    let Binding::Session {
        namespace,
        jti,
        sub,
        expires_at,
        auth_time,
    } = PLACE
    else {
        unreachable!()
    };
    let moved = [
        Binding::Session {
            namespace: "other",
            jti,
            sub,
            expires_at,
            auth_time,
        },
        Binding::Session {
            namespace,
            jti: "jti-2",
            sub,
            expires_at,
            auth_time,
        },
        Binding::Session {
            namespace,
            jti,
            sub: "mallory",
            expires_at,
            auth_time,
        },
        Binding::Session {
            namespace,
            jti,
            sub,
            expires_at: expires_at + 1,
            auth_time,
        },
        Binding::Session {
            namespace,
            jti,
            sub,
            expires_at,
            auth_time: auth_time - 1,
        },
        Binding::SigningKey {
            namespace,
            name: jti,
        },
        Binding::KeyCheck {
            namespace,
            kdf: b"",
        },
        Binding::Peer {
            namespace,
            issuer: jti,
            fetched_at: expires_at,
            jwks: b"",
        },
    ];
    for place in moved {
        assert!(
            matches!(ring.open(&place, &sealed), Err(StoreError::Tampered { .. })),
            "{place:?}"
        );
    }
}

#[test]
fn unknown_key_and_rotation() {
    let old = Keyring::new(key(1), []).unwrap();
    let sealed = old.seal(&PLACE, b"rt").unwrap();
    let other = Keyring::new(key(2), []).unwrap();
    assert!(
        matches!(other.open(&PLACE, &sealed), Err(StoreError::UnknownKey { key_id, .. }) if key_id == old.primary_id())
    );
    let rotated = Keyring::new(key(2), [key(1)]).unwrap();
    assert_eq!(
        rotated.open(&PLACE, &sealed).unwrap().expose_secret(),
        b"rt"
    );
    let resealed = rotated.seal(&PLACE, b"rt").unwrap();
    assert_eq!(sealed_key_id(&resealed).unwrap(), rotated.primary_id());
    assert!(
        Keyring::new(key(3), [key(3)]).is_err(),
        "duplicate ids are refused"
    );
}

#[test]
fn raw_key_lengths_and_base64() {
    assert!(EncryptionKey::from_bytes(&[0; 31]).is_err());
    assert!(EncryptionKey::from_bytes(&[0; 33]).is_err());
    let k = EncryptionKey::generate();
    let text = k.to_base64();
    let back = EncryptionKey::from_base64(text.expose_secret()).unwrap();
    assert_eq!(back.id(), k.id());
    assert!(EncryptionKey::from_base64("not base64!").is_err());
    assert!(EncryptionKey::from_base64("AAAA").is_err(), "3 bytes");
}

#[test]
fn debug_shows_no_key_material() {
    let k = key(0xab);
    let ring = Keyring::new(key(0xab), []).unwrap();
    for text in [format!("{k:?}"), format!("{ring:?}")] {
        assert!(!text.contains("171"), "{text}");
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(!text.contains("q6ur"), "{text}");
    }
}

#[test]
fn nonces_never_repeat() {
    let ring = Keyring::new(key(1), []).unwrap();
    let n = 1_000_000;
    let mut seen = HashSet::with_capacity(n);
    for _ in 0..n {
        let sealed = ring.seal(&PLACE, b"same plaintext").unwrap();
        let nonce: [u8; 12] = sealed[5..17].try_into().unwrap();
        assert!(seen.insert(nonce), "nonce repeated");
    }
    assert_eq!(seen.len(), n);
}

proptest! {
    #[test]
    fn field_encoding_is_injective(a in proptest::collection::vec(".{0,4}", 0..4), b in proptest::collection::vec(".{0,4}", 0..4)) {
        let enc = |fields: &Vec<String>| {
            let mut out = Vec::new();
            for f in fields { push_field(&mut out, f.as_bytes()); }
            out
        };
        prop_assert_eq!(a == b, enc(&a) == enc(&b));
    }

    #[test]
    fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let ring = Keyring::new(key(1), []).unwrap();
        prop_assert!(ring.open(&PLACE, &bytes).is_err());
    }
}

#[test]
fn split_fields_differ() {
    let mut a = Vec::new();
    push_field(&mut a, b"ab");
    push_field(&mut a, b"c");
    let mut b = Vec::new();
    push_field(&mut b, b"a");
    push_field(&mut b, b"bc");
    assert_ne!(a, b);
}
