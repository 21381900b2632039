//! `store_sled::codec::decode_peer` on any bytes: a JWKS record or `Corrupt`, never a
//! panic; what decodes re-encodes to the same bytes, and any record
//! round-trips through encode → decode.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use broker_core::{PeerJwks, StoreError};
use broker_core_fuzz::formats;
use libfuzzer_sys::fuzz_target;
use store_sled::codec;

fuzz_target!(|data: &[u8]| {
    match codec::decode_peer("fuzz", "https://i".into(), data) {
        Ok(p) => {
            assert_eq!(
                codec::encode_peer(&p),
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
    let (Ok(fetched_at), Ok(jwks)) = (i64::arbitrary(&mut u), String::arbitrary_take_rest(u))
    else {
        return;
    };
    let p = PeerJwks {
        issuer: "https://i".into(),
        jwks,
        fetched_at,
    };
    let back = codec::decode_peer("fuzz", "https://i".into(), &codec::encode_peer(&p));
    assert_eq!(back.expect("encoded record decodes"), p);
});
