//! What `TokenVault::open_session` parses after decryption (`u32 BE token
//! length | token | user_info JSON`), reached through the public surface:
//! the fuzz input is sealed as a genuine session blob and opened. It is a
//! session or `Corrupt`, never a panic; a session that opens reseals and
//! reopens to the same token and user_info.
#![no_main]

use broker_core::crypto::Binding;
use broker_core::secrecy::ExposeSecret;
use broker_core::{Corruption, SessionRecord, StoreError, validate};
use broker_core_fuzz::{AUTH_TIME, EXPIRES_AT, JTI, SUB, formats, runtime, vault};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let vault = vault();
    let binding = Binding::Session {
        namespace: vault.store().namespace().as_str(),
        jti: JTI,
        sub: SUB,
        expires_at: EXPIRES_AT,
        auth_time: AUTH_TIME,
    };
    let record = SessionRecord {
        jti: JTI.into(),
        sub: SUB.into(),
        expires_at: EXPIRES_AT,
        auth_time: AUTH_TIME,
        sealed: vault.keyring().seal(&binding, data).expect("seal").into(),
    };
    let session = match vault.open_session("fuzz", &record) {
        Ok(s) => s,
        Err(e) => {
            formats(&e);
            assert!(
                matches!(
                    e,
                    StoreError::Corrupt {
                        reason: Corruption::Malformed(_),
                        ..
                    }
                ),
                "{e:?}"
            );
            return;
        }
    };
    // It parsed: the layout is what the format says.
    let len = u32::from_be_bytes(data[..4].try_into().expect("4 bytes")) as usize;
    assert_eq!(
        session.refresh_token.expose_secret().as_bytes(),
        &data[4..4 + len]
    );
    assert_eq!((session.jti.as_str(), session.sub.as_str()), (JTI, SUB));
    assert_eq!(
        (session.expires_at, session.auth_time),
        (EXPIRES_AT, AUTH_TIME)
    );

    // Reseal and reopen: the same token and user_info.
    match runtime().block_on(vault.seal_session("fuzz", &session)) {
        Ok(resealed) => {
            let back = vault
                .open_session("fuzz", &resealed)
                .expect("a resealed session opens");
            assert_eq!(
                back.refresh_token.expose_secret(),
                session.refresh_token.expose_secret()
            );
            assert!(
                back.user_info == session.user_info,
                "user_info changed on reseal"
            );
        }
        Err(e) => {
            formats(&e);
            assert!(matches!(e, StoreError::InvalidInput { .. }), "{e:?}");
            assert!(
                len > validate::MAX_REFRESH_TOKEN_BYTES
                    || data.len() - 4 - len > validate::MAX_USER_INFO_BYTES,
                "a session that opened could not be resealed: {e:?}"
            );
        }
    }
});
