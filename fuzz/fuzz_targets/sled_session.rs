//! `store_sled::codec::decode_session` (and `session_expires_at`) on any bytes: a
//! record or `Corrupt`, never a panic; what decodes re-encodes to the same
//! bytes. The same bytes read as a record: encode → decode gives it back.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use broker_core::{SessionRecord, StoreError};
use broker_core_fuzz::formats;
use libfuzzer_sys::fuzz_target;
use store_sled::codec;

fuzz_target!(|data: &[u8]| {
    let expires = codec::session_expires_at("fuzz", data);
    match codec::decode_session("fuzz", "j".into(), data) {
        Ok(s) => {
            let encoded = codec::encode_session(&s);
            assert_eq!(encoded, data, "decode → encode changed the bytes");
            let again = codec::decode_session("fuzz", "j".into(), &encoded).expect("re-decode");
            assert_eq!(again, s);
            assert_eq!(expires.as_ref().ok(), Some(&s.expires_at));
        }
        Err(e) => {
            formats(&e);
            assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
        }
    }
    if let Err(e) = &expires {
        formats(e);
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    }

    let mut u = Unstructured::new(data);
    let (Ok(sub), Ok(expires_at), Ok(auth_time), Ok(sealed)) = (
        String::arbitrary(&mut u),
        i64::arbitrary(&mut u),
        i64::arbitrary(&mut u),
        Vec::<u8>::arbitrary_take_rest(u),
    ) else {
        return;
    };
    // Stored sessions always hold a blob, and `sub` is at most 255 bytes.
    if sealed.is_empty() || sub.len() > usize::from(u16::MAX) {
        return;
    }
    let s = SessionRecord {
        jti: "j".into(),
        sub,
        expires_at,
        auth_time,
        sealed: sealed.into(),
    };
    let back = codec::decode_session("fuzz", "j".into(), &codec::encode_session(&s));
    assert_eq!(back.expect("encoded record decodes"), s);
});
