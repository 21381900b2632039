//! The values of storage format 1 (`FORMAT_VERSION`): compact binary
//! encodings of the records, keyed by their id, so the id is left out.
//! Each starts with a version byte (`0x01`); decoders never panic and
//! report damage as [`StoreError::Corrupt`].
//!
//! | tree | value |
//! |---|---|
//! | `sessions` | `0x01`, `expires_at` (i64 BE), `auth_time` (i64 BE), subject length (u16 BE), subject, sealed blob |
//! | `revocations` | `0x01`, `revoked_at` (i64 BE), `keep_until` (i64 BE) |
//! | `peers` | `0x01`, `fetched_at` (i64 BE), JWKS text |
//!
//! Public only with the `fuzzing` feature (for the fuzz targets): the
//! encodings are this crate's storage format, not an API.

use broker_core::bytes::Bytes;
use broker_core::{Corruption, PeerJwks, Result, Revocation, SessionRecord, StoreError, UnixTime};
use sled::IVec;

const V1: u8 = 0x01;

/// Encode a session without its `jti` (the key holds it).
pub fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 8 + 2 + s.sub.len() + s.sealed.len());
    out.push(V1);
    out.extend_from_slice(&s.expires_at.to_be_bytes());
    out.extend_from_slice(&s.auth_time.to_be_bytes());
    out.extend_from_slice(&(s.sub.len() as u16).to_be_bytes());
    out.extend_from_slice(s.sub.as_bytes());
    out.extend_from_slice(&s.sealed);
    out
}

/// Decode a session stored under `jti` (copies the sealed blob out of
/// `bytes`; reads use [`decode_session_shared`]).
pub fn decode_session(op: &'static str, jti: String, bytes: &[u8]) -> Result<SessionRecord> {
    let (head, start) = decode_session_head(op, jti, bytes)?;
    Ok(head.with_sealed(Bytes::copy_from_slice(&bytes[start..])))
}

/// Decode a session stored under `jti` from the value sled handed out,
/// keeping that buffer as the sealed blob: no copy of the blob, only the
/// `sub` the record needs (and one small allocation that owns `stored`).
pub fn decode_session_shared(op: &'static str, jti: String, stored: IVec) -> Result<SessionRecord> {
    let (head, start) = decode_session_head(op, jti, &stored)?;
    Ok(head.with_sealed(Bytes::from_owner(stored).slice(start..)))
}

/// A decoded session but its blob.
struct SessionHead {
    jti: String,
    sub: String,
    expires_at: UnixTime,
    auth_time: UnixTime,
}

impl SessionHead {
    fn with_sealed(self, sealed: Bytes) -> SessionRecord {
        SessionRecord {
            jti: self.jti,
            sub: self.sub,
            expires_at: self.expires_at,
            auth_time: self.auth_time,
            sealed,
        }
    }
}

/// Everything of an encoded session but its blob, and where the (non-empty)
/// blob starts in `bytes`.
fn decode_session_head(
    op: &'static str,
    jti: String,
    bytes: &[u8],
) -> Result<(SessionHead, usize)> {
    let mut r = Reader::new(op, bytes)?;
    let expires_at = r.i64()?;
    let auth_time = r.i64()?;
    let sub_len = r.u16()? as usize;
    let sub = r.utf8(sub_len, "session subject")?;
    let start = bytes.len() - r.rest().len();
    if start == bytes.len() {
        return Err(StoreError::corrupt(op, Corruption::Truncated));
    }
    let head = SessionHead {
        jti,
        sub,
        expires_at,
        auth_time,
    };
    Ok((head, start))
}

/// Read only the expiry of an encoded session (for index maintenance).
pub fn session_expires_at(op: &'static str, bytes: &[u8]) -> Result<UnixTime> {
    Reader::new(op, bytes)?.i64()
}

/// Encode a revocation marker without its `sub` (the key holds it).
pub fn encode_revocation(r: &Revocation) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(V1);
    out.extend_from_slice(&r.revoked_at.to_be_bytes());
    out.extend_from_slice(&r.keep_until.to_be_bytes());
    out
}

/// Decode a revocation marker stored under `sub`.
pub fn decode_revocation(op: &'static str, sub: String, bytes: &[u8]) -> Result<Revocation> {
    let mut r = Reader::new(op, bytes)?;
    let revoked_at = r.i64()?;
    let keep_until = r.i64()?;
    r.end()?;
    Ok(Revocation {
        sub,
        revoked_at,
        keep_until,
    })
}

/// Encode a peer JWKS without its issuer (the key holds it).
pub fn encode_peer(p: &PeerJwks) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + p.jwks.len());
    out.push(V1);
    out.extend_from_slice(&p.fetched_at.to_be_bytes());
    out.extend_from_slice(p.jwks.as_bytes());
    out
}

/// Decode a peer JWKS stored under `issuer`.
pub fn decode_peer(op: &'static str, issuer: String, bytes: &[u8]) -> Result<PeerJwks> {
    let mut r = Reader::new(op, bytes)?;
    let fetched_at = r.i64()?;
    let rest = r.rest();
    let jwks = String::from_utf8(rest.to_vec())
        .map_err(|_| StoreError::corrupt(op, Corruption::Malformed("JWKS text")))?;
    Ok(PeerJwks {
        issuer,
        jwks,
        fetched_at,
    })
}

/// A bounds-checked reader over a versioned record.
struct Reader<'a> {
    op: &'static str,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(op: &'static str, bytes: &'a [u8]) -> Result<Self> {
        match bytes.first() {
            None => Err(StoreError::corrupt(op, Corruption::Truncated)),
            Some(&V1) => Ok(Self {
                op,
                bytes: &bytes[1..],
            }),
            Some(&v) => Err(StoreError::corrupt(op, Corruption::UnsupportedVersion(v))),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(StoreError::corrupt(self.op, Corruption::Truncated));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        Ok(i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn utf8(&mut self, n: usize, what: &'static str) -> Result<String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| StoreError::corrupt(self.op, Corruption::Malformed(what)))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    fn end(&self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(StoreError::corrupt(
                self.op,
                Corruption::Malformed("trailing bytes"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn session_round_trips(sub in "[^\u{0}]{1,40}", e in 0i64..=broker_core::validate::MAX_TIMESTAMP, a in 0i64..=broker_core::validate::MAX_TIMESTAMP, sealed in proptest::collection::vec(any::<u8>(), 1..200)) {
            let s = SessionRecord { jti: "j".into(), sub, expires_at: e, auth_time: a, sealed: sealed.into() };
            prop_assert_eq!(decode_session("t", "j".into(), &encode_session(&s)).unwrap(), s);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_session("t", "j".into(), &bytes);
            let _ = decode_revocation("t", "s".into(), &bytes);
            let _ = decode_peer("t", "i".into(), &bytes);
            let _ = session_expires_at("t", &bytes);
        }
    }

    /// Bytes that start like a v1 record, so decoders get past the version byte.
    fn versioned(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..max),
            proptest::collection::vec(any::<u8>(), 0..max).prop_map(|mut v| {
                v.insert(0, V1);
                v
            }),
        ]
    }

    /// A valid encoding, then at most one edit: a bit flip, a truncation or
    /// an inserted byte (so decoders see near-misses, not only noise).
    fn mutated(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        (valid, any::<prop::sample::Index>(), any::<u8>(), 0u8..4).prop_map(|(mut v, i, b, op)| {
            if !v.is_empty() {
                let at = i.index(v.len());
                match op {
                    0 => {}
                    1 => v[at] ^= 1 << (b % 8),
                    2 => v.truncate(at),
                    _ => v.insert(at, b),
                }
            }
            v
        })
    }

    fn session_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            ".{0,20}",
            any::<i64>(),
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 1..40),
        )
            .prop_map(|(sub, expires_at, auth_time, sealed)| {
                encode_session(&SessionRecord {
                    jti: "j".into(),
                    sub,
                    expires_at,
                    auth_time,
                    sealed: sealed.into(),
                })
            })
    }

    fn revocation_bytes() -> impl Strategy<Value = Vec<u8>> {
        (any::<i64>(), any::<i64>()).prop_map(|(revoked_at, keep_until)| {
            encode_revocation(&Revocation {
                sub: "s".into(),
                revoked_at,
                keep_until,
            })
        })
    }

    fn peer_bytes() -> impl Strategy<Value = Vec<u8>> {
        (any::<i64>(), ".{0,40}").prop_map(|(fetched_at, jwks)| {
            encode_peer(&PeerJwks {
                issuer: "https://i".into(),
                jwks,
                fetched_at,
            })
        })
    }

    fn is_corrupt(e: &StoreError) -> bool {
        matches!(e, StoreError::Corrupt { .. })
    }

    proptest! {
        #[test]
        fn session_decoder_is_total_and_canonical(bytes in prop_oneof![versioned(96), mutated(session_bytes())]) {
            prop_assert_eq!(
                format!("{:?}", decode_session_shared("t", "j".into(), IVec::from(&bytes[..]))),
                format!("{:?}", decode_session("t", "j".into(), &bytes))
            );
            match decode_session("t", "j".into(), &bytes) {
                Ok(s) => {
                    prop_assert_eq!(&encode_session(&s), &bytes);
                    prop_assert_eq!(session_expires_at("t", &bytes).ok(), Some(s.expires_at));
                }
                Err(e) => prop_assert!(is_corrupt(&e), "{:?}", e),
            }
            if let Err(e) = session_expires_at("t", &bytes) {
                prop_assert!(is_corrupt(&e), "{:?}", e);
            }
        }

        #[test]
        fn any_session_round_trips(
            sub in proptest::collection::vec(any::<char>(), 0..255).prop_map(|c| c.into_iter().collect::<String>()),
            expires_at in any::<i64>(),
            auth_time in any::<i64>(),
            sealed in proptest::collection::vec(any::<u8>(), 1..300),
        ) {
            let s = SessionRecord { jti: "j".into(), sub, expires_at, auth_time, sealed: sealed.into() };
            let bytes = encode_session(&s);
            prop_assert_eq!(decode_session("t", "j".into(), &bytes).unwrap(), s.clone());
            prop_assert_eq!(session_expires_at("t", &bytes).unwrap(), expires_at);
            // Every strict prefix that keeps the header is refused, never misread.
            for len in 0..(1 + 8 + 8 + 2 + s.sub.len() + 1) {
                prop_assert!(decode_session("t", "j".into(), &bytes[..len]).is_err(), "prefix {}", len);
            }
        }

        #[test]
        fn revocation_decoder_is_total_and_canonical(bytes in prop_oneof![versioned(40), mutated(revocation_bytes())]) {
            match decode_revocation("t", "s".into(), &bytes) {
                Ok(r) => prop_assert_eq!(&encode_revocation(&r), &bytes),
                Err(e) => prop_assert!(is_corrupt(&e), "{:?}", e),
            }
        }

        #[test]
        fn any_revocation_round_trips(revoked_at in any::<i64>(), keep_until in any::<i64>(), extra in 1usize..8) {
            let r = Revocation { sub: "s".into(), revoked_at, keep_until };
            let bytes = encode_revocation(&r);
            prop_assert_eq!(decode_revocation("t", "s".into(), &bytes).unwrap(), r);
            let mut longer = bytes.clone();
            longer.extend(std::iter::repeat_n(0u8, extra));
            prop_assert!(decode_revocation("t", "s".into(), &longer).is_err(), "trailing bytes accepted");
            prop_assert!(decode_revocation("t", "s".into(), &bytes[..bytes.len() - 1]).is_err());
        }

        #[test]
        fn peer_decoder_is_total_and_canonical(bytes in prop_oneof![versioned(64), mutated(peer_bytes())]) {
            match decode_peer("t", "https://i".into(), &bytes) {
                Ok(p) => prop_assert_eq!(&encode_peer(&p), &bytes),
                Err(e) => prop_assert!(is_corrupt(&e), "{:?}", e),
            }
        }

        #[test]
        fn any_peer_round_trips(fetched_at in any::<i64>(), jwks in ".{0,200}") {
            let p = PeerJwks { issuer: "https://i".into(), jwks, fetched_at };
            prop_assert_eq!(decode_peer("t", "https://i".into(), &encode_peer(&p)).unwrap(), p);
        }
    }

    /// Where `inner` lies in `outer`, if it is a part of that very buffer.
    fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
        let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
        (o <= i && i + inner.len() <= o + outer.len()).then(|| i - o)
    }

    #[test]
    fn shared_decode_hands_out_the_stored_buffer_without_a_copy() {
        let s = SessionRecord {
            jti: "j".into(),
            sub: "alice".into(),
            expires_at: 10,
            auth_time: 5,
            sealed: vec![7; 300].into(),
        };
        // Longer than an inline IVec: sled hands such values out shared.
        let stored = IVec::from(encode_session(&s));
        let decoded = decode_session_shared("t", "j".into(), stored.clone()).unwrap();
        assert_eq!(decoded, s);
        assert_eq!(
            offset_in(&stored, &decoded.sealed),
            Some(1 + 8 + 8 + 2 + s.sub.len()),
            "the sealed blob is a copy, not the stored buffer"
        );
        // Damage is still refused, the same way as by the copying decoder.
        for bad in [&[][..], &[1, 0], b"my refresh token", &stored[..19 + 5]] {
            assert_eq!(
                format!(
                    "{:?}",
                    decode_session_shared("t", "j".into(), IVec::from(bad))
                ),
                format!("{:?}", decode_session("t", "j".into(), bad)),
            );
        }
    }

    #[test]
    fn planted_plaintext_is_corrupt() {
        let e = decode_session("get", "j".into(), b"my refresh token").unwrap_err();
        assert!(matches!(
            e,
            StoreError::Corrupt {
                reason: Corruption::UnsupportedVersion(b'm'),
                ..
            }
        ));
        assert!(matches!(
            decode_session("get", "j".into(), &[1, 0]),
            Err(StoreError::Corrupt {
                reason: Corruption::Truncated,
                ..
            })
        ));
    }

    #[test]
    fn revocation_and_peer_round_trip() {
        let r = Revocation {
            sub: "s".into(),
            revoked_at: 3,
            keep_until: 9,
        };
        assert_eq!(
            decode_revocation("t", "s".into(), &encode_revocation(&r)).unwrap(),
            r
        );
        let p = PeerJwks {
            issuer: "https://i".into(),
            jwks: r#"{"b":1,"a":2.50}"#.into(),
            fetched_at: 7,
        };
        assert_eq!(
            decode_peer("t", p.issuer.clone(), &encode_peer(&p)).unwrap(),
            p
        );
    }
}
