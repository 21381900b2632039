//! Key layout. Every key starts with `<namespace>:`; user input (`jti`,
//! `sub`) only ever appears hex-encoded, so it can neither move a key to
//! another hash slot (no `{`/`}` of its own) nor collide with another key.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `ns:s:{ns:BB}:HEX(jti)` | string | one session (`codec::encode_session`), native expiry at `expires_at` |
//! | `ns:l:{ns:BB}` | zset, all scores 0 | hex jtis of bucket `BB`, in byte order (scan) |
//! | `ns:x:{ns:BB}` | zset | hex jtis of bucket `BB` scored by `expires_at` (purge, stats) |
//! | `ns:u:{ns:u:HEX(sub)}` | zset | hex jtis of the subject scored by `expires_at` (revoke) |
//! | `ns:r:{ns:u:HEX(sub)}` | string | the subject's revocation marker (`codec::encode_revocation`), expiry at `keep_until` |
//! | `ns:k` | hash | create-once records, field = name |
//! | `ns:p` | hash | peer JWKS (`codec::encode_peer`), field = issuer |
//! | `ns:m` | zset, all scores 0 | hex subjects that have (or had) a revocation marker, in byte order |
//! | `ns:meta` | string | storage format marker written by `setup` |
//!
//! `BB` is the jti's bucket: FNV-1a (32 bit) of the jti's bytes modulo
//! [`BUCKETS`], two hex digits. A session key and its bucket's two indexes
//! share a hash tag, so one script updates them atomically on one slot; a
//! subject's index and revocation marker share the subject's hash tag.
//!
//! The single-node scripts (see `scripts.rs`) build a subject's index and
//! marker keys themselves from [`Keys::subject_prefix`] /
//! [`Keys::marker_prefix`], the lowercase hex of the subject and `}`: the
//! same names [`Keys::subject`] and [`Keys::marker`] return.

use std::fmt::Write as _;

/// Number of session buckets per namespace. Part of the storage format:
/// changing it makes existing sessions unreachable.
pub(crate) const BUCKETS: u16 = 64;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Decode lowercase hex; `None` if `s` is not exactly that.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// The bucket of a jti (given as its bytes).
pub(crate) fn bucket_of(jti: &[u8]) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in jti {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % u32::from(BUCKETS)) as u16
}

/// Key names for one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    ns: String,
    subject_prefix: String,
    marker_prefix: String,
}

impl Keys {
    pub(crate) fn new(ns: &str) -> Self {
        Self {
            ns: ns.to_owned(),
            subject_prefix: format!("{ns}:u:{{{ns}:u:"),
            marker_prefix: format!("{ns}:r:{{{ns}:u:"),
        }
    }

    /// The prefix of the session keys of bucket `b` (append the hex jti).
    pub(crate) fn session_prefix(&self, b: u16) -> String {
        format!("{ns}:s:{{{ns}:{b:02x}}}:", ns = self.ns)
    }

    /// The session key of a hex-encoded jti in bucket `b`.
    pub(crate) fn session_hex(&self, b: u16, hex_jti: &str) -> String {
        let mut k = self.session_prefix(b);
        k.push_str(hex_jti);
        k
    }

    /// `(session key, scan index, expiry index, hex jti)` of a jti.
    pub(crate) fn session(&self, jti: &str) -> SessionKeys {
        let b = bucket_of(jti.as_bytes());
        let member = hex(jti.as_bytes());
        SessionKeys {
            session: self.session_hex(b, &member),
            lex: self.lex(b),
            exp: self.exp(b),
            member,
        }
    }

    /// The scan index of bucket `b`.
    pub(crate) fn lex(&self, b: u16) -> String {
        format!("{ns}:l:{{{ns}:{b:02x}}}", ns = self.ns)
    }

    /// The expiry index of bucket `b`.
    pub(crate) fn exp(&self, b: u16) -> String {
        format!("{ns}:x:{{{ns}:{b:02x}}}", ns = self.ns)
    }

    /// The session index of a subject: [`Self::subject_prefix`], the hex
    /// subject, `}`.
    pub(crate) fn subject(&self, sub: &str) -> String {
        let mut k = self.subject_prefix.clone();
        k.push_str(&hex(sub.as_bytes()));
        k.push('}');
        k
    }

    /// The revocation marker of a subject (same slot as its index):
    /// [`Self::marker_prefix`], the hex subject, `}`.
    pub(crate) fn marker(&self, sub: &str) -> String {
        let mut k = self.marker_prefix.clone();
        k.push_str(&hex(sub.as_bytes()));
        k.push('}');
        k
    }

    /// What precedes the hex subject in a subject index key.
    pub(crate) fn subject_prefix(&self) -> &str {
        &self.subject_prefix
    }

    /// What precedes the hex subject in a revocation marker key.
    pub(crate) fn marker_prefix(&self) -> &str {
        &self.marker_prefix
    }

    /// The hash of create-once records.
    pub(crate) fn records(&self) -> String {
        format!("{}:k", self.ns)
    }

    /// The hash of peer JWKS documents.
    pub(crate) fn peers(&self) -> String {
        format!("{}:p", self.ns)
    }

    /// The index of subjects with a revocation marker.
    pub(crate) fn markers(&self) -> String {
        format!("{}:m", self.ns)
    }

    /// The storage format marker.
    pub(crate) fn meta(&self) -> String {
        format!("{}:meta", self.ns)
    }
}

/// The keys a session operation touches (all in one hash slot).
pub(crate) struct SessionKeys {
    pub(crate) session: String,
    pub(crate) lex: String,
    pub(crate) exp: String,
    /// The hex jti: member of the indexes.
    pub(crate) member: String,
}

impl SessionKeys {
    /// `script` invoked with this session's keys as `KEYS[1..3]`: the
    /// session, its scan index and its expiry index.
    pub(crate) fn on<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation.key(&self.session).key(&self.lex).key(&self.exp);
        invocation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').expect("a hash tag");
        let close = key[open..].find('}').expect("closed") + open;
        &key[open + 1..close]
    }

    #[test]
    fn hex_round_trips() {
        let raw = "a{b}c:*? \u{e9}\n".as_bytes();
        assert_eq!(unhex(&hex(raw)).as_deref(), Some(raw));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("AB"), None);
    }

    #[test]
    fn bucket_is_stable() {
        // FNV-1a 32 test vectors: "" = 0x811c9dc5, "a" = 0xe40c292c.
        assert_eq!(bucket_of(b""), (0x811c_9dc5_u32 % 64) as u16);
        assert_eq!(bucket_of(b"a"), (0xe40c_292c_u32 % 64) as u16);
        let spread: std::collections::HashSet<u16> = (0..1000)
            .map(|i| bucket_of(format!("jti-{i}").as_bytes()))
            .collect();
        assert_eq!(spread.len(), usize::from(BUCKETS));
    }

    #[test]
    fn user_input_never_changes_the_slot() {
        let keys = Keys::new("ns");
        let nasty = "{x}:*} {";
        let s = keys.session(nasty);
        let b = bucket_of(nasty.as_bytes());
        let tag = format!("ns:{b:02x}");
        assert_eq!(hash_tag(&s.session), tag);
        assert_eq!(hash_tag(&s.lex), tag);
        assert_eq!(hash_tag(&s.exp), tag);
        assert!(!s.session[s.session.find('}').unwrap_or(0) + 1..].contains(['{', '}']));
        assert_eq!(
            hash_tag(&keys.subject(nasty)),
            hash_tag(&keys.marker(nasty))
        );
        assert!(!keys.subject(nasty).contains(nasty));
        assert_ne!(keys.subject("a:b"), keys.subject("a"));
    }

    #[test]
    fn subject_keys_are_prefix_hex_brace() {
        // The layout the single-node scripts rebuild in Lua.
        let keys = Keys::new("ns");
        assert_eq!(keys.subject("a\u{e9}"), "ns:u:{ns:u:61c3a9}");
        assert_eq!(keys.marker("a\u{e9}"), "ns:r:{ns:u:61c3a9}");
        assert_eq!(
            keys.marker("x"),
            format!("{}{}}}", keys.marker_prefix(), hex(b"x"))
        );
    }
}
