//! Any byte string opened as a sealed session blob: plaintext only if it is a
//! genuine envelope for this place, otherwise a typed error consistent with
//! what the header says; never a panic.
#![no_main]

use broker_core::StoreError;
use broker_core::crypto::{Binding, OVERHEAD, sealed_key_id};
use broker_core::secrecy::ExposeSecret;
use broker_core_fuzz::{AUTH_TIME, EXPIRES_AT, JTI, NAMESPACE, PLACE, formats, ring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ring = ring();
    let header = sealed_key_id(data);
    match ring.open(&PLACE, data) {
        Ok(plain) => {
            let plain = plain.expose_secret();
            assert_eq!(plain.len() + OVERHEAD, data.len(), "overhead");
            let id = header.expect("an envelope that opens has a key id");
            assert!(ring.contains(id), "opened under a key not in the ring");
            // The same blob at another place does not open.
            let elsewhere = Binding::Session {
                namespace: NAMESPACE,
                jti: JTI,
                sub: "someone-else",
                expires_at: EXPIRES_AT,
                auth_time: AUTH_TIME,
            };
            assert!(matches!(
                ring.open(&elsewhere, data),
                Err(StoreError::Tampered { .. })
            ));
            // Resealing the plaintext round-trips.
            let again = ring.seal(&PLACE, plain).expect("seal");
            let reopened = ring.open(&PLACE, &again).expect("reopen");
            assert_eq!(reopened.expose_secret(), plain);
        }
        Err(e) => {
            formats(&e);
            match (&e, &header) {
                (StoreError::Corrupt { .. }, Err(StoreError::Corrupt { .. })) => {}
                (StoreError::Tampered { .. }, Err(StoreError::Tampered { .. })) => {
                    assert!(data.len() < OVERHEAD);
                }
                (StoreError::Tampered { .. }, Ok(id)) => assert!(ring.contains(*id)),
                (StoreError::UnknownKey { key_id, .. }, Ok(id)) => {
                    assert_eq!(key_id, id);
                    assert!(!ring.contains(*id));
                }
                other => panic!("untyped or inconsistent open error: {other:?}"),
            }
        }
    }
});
