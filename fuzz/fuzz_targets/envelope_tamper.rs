//! A genuine envelope, then fuzzer-chosen edits (bit flips, byte sets,
//! truncation, extension) and moves to another place: it opens to its
//! plaintext only if nothing changed; any change is a typed error.
#![no_main]

use arbitrary::Arbitrary;
use broker_core::crypto::{Binding, Keyring};
use broker_core::secrecy::ExposeSecret;
use broker_core::{Corruption, StoreError};
use broker_core_fuzz::{
    AUTH_TIME, EXPIRES_AT, JTI, NAMESPACE, OLDER, PLACE, SUB, formats, key, ring,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Edit {
    Flip { at: u16, bit: u8 },
    Set { at: u16, value: u8 },
    Truncate { to: u16 },
    Append { byte: u8 },
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Same,
    Namespace,
    Jti,
    Sub,
    ExpiresAt,
    AuthTime,
    SigningKey,
    KeyCheck,
}

#[derive(Arbitrary, Debug)]
struct Input {
    plaintext: Vec<u8>,
    under_older_key: bool,
    edits: Vec<Edit>,
    open_at: Place,
}

fn binding(place: Place) -> Binding<'static> {
    let session = |namespace, jti, sub, expires_at, auth_time| Binding::Session {
        namespace,
        jti,
        sub,
        expires_at,
        auth_time,
    };
    match place {
        Place::Same => PLACE,
        Place::Namespace => session("other", JTI, SUB, EXPIRES_AT, AUTH_TIME),
        Place::Jti => session(NAMESPACE, "fuzz-jt", SUB, EXPIRES_AT, AUTH_TIME),
        Place::Sub => session(NAMESPACE, JTI, "fuzz-sub ", EXPIRES_AT, AUTH_TIME),
        Place::ExpiresAt => session(NAMESPACE, JTI, SUB, EXPIRES_AT + 1, AUTH_TIME),
        Place::AuthTime => session(NAMESPACE, JTI, SUB, EXPIRES_AT, AUTH_TIME - 1),
        Place::SigningKey => Binding::SigningKey {
            namespace: NAMESPACE,
            name: JTI,
        },
        Place::KeyCheck => Binding::KeyCheck {
            namespace: NAMESPACE,
            kdf: b"",
        },
    }
}

fuzz_target!(|input: Input| {
    let sealed = if input.under_older_key {
        Keyring::new(key(OLDER), [])
            .expect("ring")
            .seal(&PLACE, &input.plaintext)
    } else {
        ring().seal(&PLACE, &input.plaintext)
    }
    .expect("seal");
    let mut blob = sealed.clone();
    for edit in &input.edits {
        match *edit {
            Edit::Flip { at, bit } => {
                if let Some(b) = blob.get_mut(usize::from(at)) {
                    *b ^= 1 << (bit % 8);
                }
            }
            Edit::Set { at, value } => {
                if let Some(b) = blob.get_mut(usize::from(at)) {
                    *b = value;
                }
            }
            Edit::Truncate { to } => blob.truncate(usize::from(to)),
            Edit::Append { byte } => blob.push(byte),
        }
    }
    match ring().open(&binding(input.open_at), &blob) {
        Ok(plain) => {
            assert!(
                blob == sealed && input.open_at == Place::Same,
                "an edited or moved envelope opened: {input:?}"
            );
            assert_eq!(plain.expose_secret(), &input.plaintext[..]);
        }
        Err(e) => {
            formats(&e);
            assert!(
                blob != sealed || input.open_at != Place::Same,
                "an untouched envelope failed to open: {e:?}"
            );
            assert!(
                matches!(
                    e,
                    StoreError::Tampered { .. }
                        | StoreError::UnknownKey { .. }
                        | StoreError::Corrupt {
                            reason: Corruption::Truncated | Corruption::UnsupportedVersion(_),
                            ..
                        }
                ),
                "{e:?}"
            );
        }
    }
});
