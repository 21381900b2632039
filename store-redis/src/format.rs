//! The storage format, `store-redis/3` ([`FORMAT_VERSION`]): the key
//! layout of `keys.rs`, and the values. `setup` records the format in
//! `<ns>:meta` and checks it; format 2 is migrated in place (see
//! `migrate.rs`).
//!
//! | value | type | fields |
//! |---|---|---|
//! | session | hash | `sub` (UTF-8), `expires_at`, `auth_time` (decimal), `sealed` (bytes) |
//! | revocation marker | hash | `revoked_at`, `keep_until` (decimal), `token` (the revoke at work, if any) |
//! | tombstone | hash | `revoked_at`, `keep_until` (decimal) |
//! | peer JWKS | field of the `ns:p` hash | `0x01`, `fetched_at` (i64 big-endian), the JWKS text |
//!
//! The Lua scripts read fields by name; the Rust side decodes what
//! `HMGET` returns with the functions below, which never panic and report
//! damage as [`StoreError::Corrupt`]. Decimals are canonical (what
//! `i64::to_string` writes). Public only with the `fuzzing` feature (for
//! the fuzz targets): this is the crate's storage format, not an API.

use broker_core::{
    Corruption, FormatError, PeerJwks, Result, Revocation, SessionRecord, StoreError,
};

/// The storage format this version of the crate reads and writes.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest storage format `setup` migrates in place.
pub const OLDEST_MIGRATED: u32 = 2;
/// The name [`FormatError`]s carry, and the prefix of the format marker.
pub const STORE: &str = "store-redis";

/// A session's fields, in the order [`decode_session`] takes them.
pub const SESSION_FIELDS: [&str; 4] = ["sub", "expires_at", "auth_time", "sealed"];
/// A marker's fields, in the order [`decode_marker`] takes them.
pub const MARKER_FIELDS: [&str; 3] = ["revoked_at", "keep_until", "token"];

/// The format marker of `version` (`store-redis/3`).
pub fn marker(version: u32) -> String {
    format!("{STORE}/{version}")
}

/// The version a format marker names, if this version can use it:
/// [`FORMAT_VERSION`] or one it migrates. Others are a [`FormatError`].
pub fn version(stored: &[u8]) -> std::result::Result<u32, FormatError> {
    let found = std::str::from_utf8(stored)
        .ok()
        .and_then(|s| s.strip_prefix(STORE)?.strip_prefix('/'))
        .and_then(canonical_u32)
        .ok_or_else(|| FormatError::unreadable(STORE, FORMAT_VERSION))?;
    FormatError::check(STORE, found, OLDEST_MIGRATED, FORMAT_VERSION)
}

fn canonical_u32(s: &str) -> Option<u32> {
    let n: u32 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// A canonical decimal `i64` (what `i64::to_string` writes), or `None`.
/// Checked on the bytes, without formatting the number back.
pub fn decimal(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, bytes),
    };
    match digits {
        [] => return None,
        [b'0'] if negative => return None,
        [b'0', _, ..] => return None,
        _ => {}
    }
    // Accumulated on the negative side, so `i64::MIN` fits.
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative { Some(n) } else { n.checked_neg() }
}

fn malformed(op: &'static str, what: &'static str) -> StoreError {
    StoreError::corrupt(op, Corruption::Malformed(what))
}

/// The session stored under `jti`, from the [`SESSION_FIELDS`] of its
/// hash: `None` if none is stored (every field absent).
pub fn decode_session(
    op: &'static str,
    jti: &str,
    fields: Vec<Option<Vec<u8>>>,
) -> Result<Option<SessionRecord>> {
    if fields.iter().all(Option::is_none) {
        return Ok(None);
    }
    let Ok([Some(sub), Some(expires_at), Some(auth_time), Some(sealed)]) =
        <[Option<Vec<u8>>; 4]>::try_from(fields)
    else {
        return Err(malformed(op, "session"));
    };
    let sub = String::from_utf8(sub).map_err(|_| malformed(op, "session subject"))?;
    let expires_at = decimal(&expires_at).ok_or_else(|| malformed(op, "session expiry"))?;
    let auth_time = decimal(&auth_time).ok_or_else(|| malformed(op, "session auth_time"))?;
    if sealed.is_empty() {
        return Err(StoreError::corrupt(op, Corruption::Truncated));
    }
    Ok(Some(SessionRecord {
        jti: jti.to_owned(),
        sub,
        expires_at,
        auth_time,
        sealed: sealed.into(),
    }))
}

/// The fields of `s` as [`SESSION_FIELDS`] holds them.
pub fn encode_session(s: &SessionRecord) -> [Vec<u8>; 4] {
    [
        s.sub.as_bytes().to_vec(),
        s.expires_at.to_string().into_bytes(),
        s.auth_time.to_string().into_bytes(),
        s.sealed.to_vec(),
    ]
}

/// The marker of `sub`, from the [`MARKER_FIELDS`] of its hash, and
/// whether a revoke is at work on it: `None` if none is stored.
pub fn decode_marker(
    op: &'static str,
    sub: String,
    fields: Vec<Option<Vec<u8>>>,
) -> Result<Option<(Revocation, bool)>> {
    let bad = || malformed(op, "revocation marker");
    if fields.iter().all(Option::is_none) {
        return Ok(None);
    }
    let Ok([revoked_at, keep_until, token]) = <[Option<Vec<u8>>; 3]>::try_from(fields) else {
        return Err(bad());
    };
    let revoked_at = revoked_at.as_deref().and_then(decimal).ok_or_else(bad)?;
    let keep_until = keep_until.as_deref().and_then(decimal).ok_or_else(bad)?;
    Ok(Some((
        Revocation {
            sub,
            revoked_at,
            keep_until,
        },
        token.is_some(),
    )))
}

const PEER_V1: u8 = 0x01;

/// A peer's value in the `ns:p` hash (the issuer is the field).
pub fn encode_peer(p: &PeerJwks) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + p.jwks.len());
    out.push(PEER_V1);
    out.extend_from_slice(&p.fetched_at.to_be_bytes());
    out.extend_from_slice(p.jwks.as_bytes());
    out
}

/// The peer stored under `issuer`.
pub fn decode_peer(op: &'static str, issuer: String, bytes: &[u8]) -> Result<PeerJwks> {
    let (version, rest) = bytes
        .split_first()
        .ok_or(StoreError::corrupt(op, Corruption::Truncated))?;
    if *version != PEER_V1 {
        return Err(StoreError::corrupt(
            op,
            Corruption::UnsupportedVersion(*version),
        ));
    }
    let (at, jwks) = rest
        .split_first_chunk::<8>()
        .ok_or(StoreError::corrupt(op, Corruption::Truncated))?;
    let jwks = String::from_utf8(jwks.to_vec()).map_err(|_| malformed(op, "JWKS text"))?;
    Ok(PeerJwks {
        issuer,
        jwks,
        fetched_at: i64::from_be_bytes(*at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn some(v: &[u8]) -> Option<Vec<u8>> {
        Some(v.to_vec())
    }

    #[test]
    fn markers_name_versions() {
        assert_eq!(marker(FORMAT_VERSION), "store-redis/3");
        assert_eq!(version(b"store-redis/3"), Ok(3));
        assert_eq!(version(b"store-redis/2"), Ok(2));
        let newer = version(b"store-redis/4").unwrap_err();
        assert!(newer.is_newer() && newer.found == Some(4));
        let old = version(b"store-redis/1").unwrap_err();
        assert_eq!((old.found, old.oldest), (Some(1), 2));
        for foreign in [
            &b"store-redis/03"[..],
            b"store-redis/",
            b"other/3",
            b"\xff",
            b"",
        ] {
            assert_eq!(version(foreign).unwrap_err().found, None, "{foreign:?}");
        }
    }

    #[test]
    fn sessions_decode_by_field() {
        let s = SessionRecord {
            jti: "j".into(),
            sub: "alice".into(),
            expires_at: 10,
            auth_time: 5,
            sealed: vec![1, 2].into(),
        };
        let fields = encode_session(&s).map(Some).to_vec();
        assert_eq!(decode_session("t", "j", fields).unwrap(), Some(s));
        assert_eq!(decode_session("t", "j", vec![None; 4]).unwrap(), None);
        for bad in [
            vec![None, some(b"10"), some(b"5"), some(b"x")],
            vec![some(b"a"), some(b"010"), some(b"5"), some(b"x")],
            vec![some(b"a"), some(b"10"), some(b"+5"), some(b"x")],
            vec![some(b"\xff"), some(b"10"), some(b"5"), some(b"x")],
            vec![some(b"a"), some(b"10"), some(b"5"), some(b"")],
            vec![some(b"a"), some(b"10"), some(b"5")],
        ] {
            let e = decode_session("t", "j", bad.clone()).unwrap_err();
            assert!(matches!(e, StoreError::Corrupt { .. }), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn markers_decode_by_field() {
        let got = decode_marker("t", "s".into(), vec![some(b"3"), some(b"9"), None]).unwrap();
        assert_eq!(
            got,
            Some((
                Revocation {
                    sub: "s".into(),
                    revoked_at: 3,
                    keep_until: 9
                },
                false
            ))
        );
        let at_work = decode_marker("t", "s".into(), vec![some(b"3"), some(b"9"), some(b"t")]);
        assert!(at_work.unwrap().unwrap().1);
        assert_eq!(decode_marker("t", "s".into(), vec![None; 3]).unwrap(), None);
        let torn = decode_marker("t", "s".into(), vec![some(b"3"), None, None]);
        assert!(matches!(torn, Err(StoreError::Corrupt { .. })));
    }

    /// The definition `decimal` must keep: parse, then format back.
    fn decimal_by_round_trip(bytes: &[u8]) -> Option<i64> {
        let s = std::str::from_utf8(bytes).ok()?;
        let n: i64 = s.parse().ok()?;
        (n.to_string() == s).then_some(n)
    }

    #[test]
    fn decimal_accepts_exactly_what_to_string_writes() {
        for s in [
            "0",
            "-0",
            "00",
            "01",
            "-01",
            "+1",
            "1",
            "-1",
            "",
            "-",
            "+",
            " 1",
            "1 ",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e3",
            "\u{661}",
        ] {
            assert_eq!(
                decimal(s.as_bytes()),
                decimal_by_round_trip(s.as_bytes()),
                "{s:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn decimal_agrees_with_its_definition(
            bytes in prop_oneof![
                proptest::collection::vec(prop_oneof![Just(b'-'), Just(b'+'), Just(b'0'), b'0'..=b'9', any::<u8>()], 0..22),
                any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            ]
        ) {
            prop_assert_eq!(decimal(&bytes), decimal_by_round_trip(&bytes));
        }

        #[test]
        fn session_decoder_is_total_and_canonical(
            fields in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)), 0..6)
        ) {
            match decode_session("t", "j", fields.clone()) {
                Ok(Some(s)) => prop_assert_eq!(encode_session(&s).map(Some).to_vec(), fields),
                Ok(None) => prop_assert!(fields.iter().all(Option::is_none)),
                Err(e) => prop_assert!(matches!(e, StoreError::Corrupt { .. }), "{:?}", e),
            }
        }

        #[test]
        fn any_session_round_trips(sub in ".{0,40}", expires_at in any::<i64>(), auth_time in any::<i64>(), sealed in proptest::collection::vec(any::<u8>(), 1..64)) {
            let s = SessionRecord { jti: "j".into(), sub, expires_at, auth_time, sealed: sealed.into() };
            prop_assert_eq!(decode_session("t", "j", encode_session(&s).map(Some).to_vec()).unwrap(), Some(s));
        }

        #[test]
        fn marker_decoder_is_total(
            fields in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)), 0..5)
        ) {
            if let Err(e) = decode_marker("t", "s".into(), fields) {
                prop_assert!(matches!(e, StoreError::Corrupt { .. }), "{:?}", e);
            }
        }

        #[test]
        fn peer_decoder_is_total_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            match decode_peer("t", "i".into(), &bytes) {
                Ok(p) => prop_assert_eq!(encode_peer(&p), bytes),
                Err(e) => prop_assert!(matches!(e, StoreError::Corrupt { .. }), "{:?}", e),
            }
        }

        #[test]
        fn any_peer_round_trips(fetched_at in any::<i64>(), jwks in ".{0,100}") {
            let p = PeerJwks { issuer: "https://i".into(), jwks, fetched_at };
            prop_assert_eq!(decode_peer("t", p.issuer.clone(), &encode_peer(&p)).unwrap(), p);
        }
    }
}
