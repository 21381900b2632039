//! Key layouts of the index trees.
//!
//! * sessions: `jti` → [`crate::codec::encode_session`]
//! * by_expiry: `expires_at (8 bytes, big-endian, sign bit flipped) ++ jti` → empty
//! * by_subject: `len(sub) (u16 BE) ++ sub ++ jti` → empty
//! * revocations: `sub` → [`crate::codec::encode_revocation`]
//! * revoked_until: `keep_until (8 bytes, as above) ++ sub` → empty
//!
//! Flipping the sign bit of a two's-complement `i64` and writing it
//! big-endian makes byte order equal numeric order, so a range scan of the
//! expiry index from the start visits the earliest expiries first.

use broker_core::UnixTime;

/// Length of an encoded timestamp prefix.
pub(crate) const TS_LEN: usize = 8;

/// A timestamp as 8 bytes whose byte order is numeric order.
pub(crate) fn ts(t: UnixTime) -> [u8; TS_LEN] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// `ts ++ id`: an entry of an expiry-ordered index.
pub(crate) fn timed(t: UnixTime, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(TS_LEN + id.len());
    k.extend_from_slice(&ts(t));
    k.extend_from_slice(id.as_bytes());
    k
}

/// Split an expiry-ordered index key into its timestamp and id; `None` if
/// the key is malformed.
pub(crate) fn split_timed(key: &[u8]) -> Option<(UnixTime, &str)> {
    if key.len() <= TS_LEN {
        return None;
    }
    let (head, tail) = key.split_at(TS_LEN);
    let raw = u64::from_be_bytes(head.try_into().ok()?);
    let t = (raw ^ (1 << 63)) as i64;
    Some((t, std::str::from_utf8(tail).ok()?))
}

/// The prefix every subject-index key of `sub` starts with. The length
/// prefix makes it match `sub` exactly, never a longer subject.
pub(crate) fn subject_prefix(sub: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + sub.len());
    // Subjects are at most 255 bytes (validated), so the length fits.
    k.extend_from_slice(&(sub.len() as u16).to_be_bytes());
    k.extend_from_slice(sub.as_bytes());
    k
}

/// The subject-index key of session `jti` of `sub`.
pub(crate) fn subject(sub: &str, jti: &str) -> Vec<u8> {
    let mut k = subject_prefix(sub);
    k.extend_from_slice(jti.as_bytes());
    k
}

/// Split a subject-index key into `(sub, jti)`; `None` if malformed.
pub(crate) fn split_subject(key: &[u8]) -> Option<(&str, &str)> {
    let len = u16::from_be_bytes([*key.first()?, *key.get(1)?]) as usize;
    let rest = key.get(2..)?;
    if rest.len() <= len {
        return None;
    }
    let (sub, jti) = rest.split_at(len);
    Some((
        std::str::from_utf8(sub).ok()?,
        std::str::from_utf8(jti).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_numerically() {
        let values = [i64::MIN, -1, 0, 1, 255, 256, 1_700_000_000, i64::MAX];
        for w in values.windows(2) {
            assert!(ts(w[0]) < ts(w[1]), "{} vs {}", w[0], w[1]);
        }
    }

    #[test]
    fn timed_keys_round_trip() {
        let k = timed(1_700_000_000, "jti-1");
        assert_eq!(split_timed(&k), Some((1_700_000_000, "jti-1")));
        assert_eq!(split_timed(&k[..TS_LEN]), None);
        assert!(timed(5, "zzz") < timed(6, "a"));
    }

    #[test]
    fn subject_prefix_matches_only_that_subject() {
        let k = subject("ab", "c");
        assert!(k.starts_with(&subject_prefix("ab")));
        assert!(!k.starts_with(&subject_prefix("a")));
        assert!(!subject("abc", "x").starts_with(&subject_prefix("ab")));
        assert_eq!(split_subject(&k), Some(("ab", "c")));
        assert_eq!(split_subject(&[0]), None);
        assert_eq!(split_subject(&subject_prefix("ab")), None);
    }
}
