//! `store_sled::codec::decode_revocation` on any bytes: a marker or `Corrupt`, never a
//! panic; what decodes re-encodes to the same bytes, and any marker
//! round-trips through encode → decode.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use broker_core::{Revocation, StoreError};
use broker_core_fuzz::formats;
use libfuzzer_sys::fuzz_target;
use store_sled::codec;

fuzz_target!(|data: &[u8]| {
    match codec::decode_revocation("fuzz", "s".into(), data) {
        Ok(r) => {
            assert_eq!(
                codec::encode_revocation(&r),
                data,
                "decode → encode changed the bytes"
            );
        }
        Err(e) => {
            formats(&e);
            assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
        }
    }
    let mut u = Unstructured::new(data);
    let (Ok(revoked_at), Ok(keep_until)) = (i64::arbitrary(&mut u), i64::arbitrary(&mut u)) else {
        return;
    };
    let r = Revocation {
        sub: "s".into(),
        revoked_at,
        keep_until,
    };
    let back = codec::decode_revocation("fuzz", "s".into(), &codec::encode_revocation(&r));
    assert_eq!(back.expect("encoded marker decodes"), r);
});
