//! store-redis's value decoders (`store_redis::format`) on any input: the
//! fields an `HMGET` of a session or a revocation marker may return, a
//! peer's value and a format marker. A value or `Corrupt` (a format marker:
//! a version or a `FormatError`), never a panic; what decodes re-encodes to
//! the same fields or bytes.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use broker_core::StoreError;
use broker_core_fuzz::formats;
use libfuzzer_sys::fuzz_target;
use store_redis::format;

/// What one input decodes: session fields, marker fields, a peer value, a
/// format marker.
#[derive(Debug, Arbitrary)]
struct Input {
    session: Vec<Option<Vec<u8>>>,
    marker: Vec<Option<Vec<u8>>>,
    peer: Vec<u8>,
    meta: Vec<u8>,
}

fn corrupt(e: &StoreError) {
    formats(e);
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    match format::decode_session("fuzz", "j", input.session.clone()) {
        Ok(Some(s)) => {
            let again: Vec<Option<Vec<u8>>> = format::encode_session(&s).map(Some).to_vec();
            assert_eq!(again, input.session, "decode → encode changed the fields");
        }
        Ok(None) => assert!(input.session.iter().all(Option::is_none)),
        Err(e) => corrupt(&e),
    }
    match format::decode_marker("fuzz", "s".into(), input.marker.clone()) {
        Ok(Some((r, at_work))) => {
            assert_eq!(input.marker.len(), 3);
            assert_eq!(
                input.marker[0].as_deref(),
                Some(r.revoked_at.to_string().as_bytes())
            );
            assert_eq!(
                input.marker[1].as_deref(),
                Some(r.keep_until.to_string().as_bytes())
            );
            assert_eq!(at_work, input.marker[2].is_some());
        }
        Ok(None) => assert!(input.marker.iter().all(Option::is_none)),
        Err(e) => corrupt(&e),
    }
    match format::decode_peer("fuzz", "https://i".into(), &input.peer) {
        Ok(p) => assert_eq!(format::encode_peer(&p), input.peer),
        Err(e) => corrupt(&e),
    }
    match format::version(&input.meta) {
        Ok(v) => assert_eq!(format::marker(v).as_bytes(), &input.meta[..]),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
