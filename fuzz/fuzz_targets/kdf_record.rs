//! `KdfParams::decode` (the stored Argon2id salt and parameters) on any
//! bytes: parameters or `Corrupt`, never a panic; what decodes re-encodes to
//! the same bytes and its bounds check answers; any parameters round-trip.
//! (Deriving is not fuzzed: in-bounds parameters cost 40 ms to seconds.)
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use broker_core::StoreError;
use broker_core::keys::KdfParams;
use broker_core_fuzz::formats;
use libfuzzer_sys::fuzz_target;

fn in_bounds(p: &KdfParams) -> bool {
    (19_456..=1_048_576).contains(&p.m_cost)
        && (2..=10).contains(&p.t_cost)
        && (1..=8).contains(&p.p_cost)
}

fuzz_target!(|data: &[u8]| {
    match KdfParams::decode(data) {
        Ok(p) => {
            assert_eq!(p.encode(), data, "decode → encode changed the bytes");
            match p.check_bounds() {
                Ok(()) => assert!(in_bounds(&p), "{p:?} accepted"),
                Err(e) => {
                    formats(&e);
                    assert!(!in_bounds(&p), "{p:?} refused");
                    assert!(matches!(e, StoreError::WrongKey { .. }), "{e:?}");
                }
            }
        }
        Err(e) => {
            formats(&e);
            assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
        }
    }
    let mut u = Unstructured::new(data);
    let (Ok(m_cost), Ok(t_cost), Ok(p_cost), Ok(salt)) = (
        u32::arbitrary(&mut u),
        u32::arbitrary(&mut u),
        u32::arbitrary(&mut u),
        <[u8; 16]>::arbitrary(&mut u),
    ) else {
        return;
    };
    let p = KdfParams {
        m_cost,
        t_cost,
        p_cost,
        salt,
    };
    assert_eq!(
        KdfParams::decode(&p.encode()).expect("encoded record decodes"),
        p
    );
});
