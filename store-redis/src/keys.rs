//! Key layout (storage format `store-redis/3`; values in `format.rs`). Every key starts with
//! `<namespace>:`; user input (`jti`, `sub`, record names) only ever appears
//! hex-encoded, so it can neither move a key to another hash slot (no
//! `{`/`}` of its own) nor collide with another key. `J` is a hex jti, `S` a
//! hex subject, `T` a hex request token.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `ns:s:{ns:BB}:J` | hash | one session (`sub`, `expires_at`, `auth_time`, `sealed`), native expiry at `expires_at` |
//! | `ns:l:{ns:BB}` | zset, all scores 0 | the `J`s of bucket `BB`, in byte order (scan) |
//! | `ns:x:{ns:BB}` | zset | the `J`s of bucket `BB` scored by `expires_at` (purge, stats) |
//! | `ns:d:{ns:BB}:J:S` | hash | tombstone: subject `S` was revoked while `J` was indexed under it (`revoked_at`, `keep_until`); no expiry |
//! | `ns:dx:{ns:BB}` | zset | the `J:S` of bucket `BB`'s tombstones scored by `keep_until` (purge) |
//! | `ns:t:{ns:BB}:J:T` | hash or string | receipt of request `T` on `J` (a taken session's hash, or `1`), expires after [`crate::RECEIPT_TTL`] |
//! | `ns:c:{ns:BB}:J` | string | the token of the create that stored `J`, expires after [`crate::RECEIPT_TTL`] |
//! | `ns:u:{ns:u:S}` | zset | the `J`s saved for the subject, scored by `expires_at` (revoke); trimmed on writes, expires with its last entry (both after a grace) |
//! | `ns:r:{ns:u:S}` | hash | the subject's revocation marker (`revoked_at`, `keep_until`, and `token` while a revoke is at work); no expiry |
//! | `ns:m:{ns:m}` | zset, all scores 0 | the `S` of every stored marker, in byte order (scan, drop, stats) |
//! | `ns:mx:{ns:m}` | zset | the same `S`, scored by `keep_until` (purge) |
//! | `ns:mp:{ns:m}` | zset | `S` with a revoke at work, scored by a counter (purge finishes revokes that stopped halfway) |
//! | `ns:k` | hash | create-once records, field = name |
//! | `ns:q:{ns:k}:T` | string | receipt of `replace_record` request `T`, expires after [`crate::RECEIPT_TTL`] |
//! | `ns:p` | hash | peer JWKS (`format::encode_peer`), field = issuer |
//! | `ns:meta` | string | storage format marker (`store-redis/3`) written by `setup` |
//!
//! `BB` is the jti's bucket: FNV-1a (32 bit) of the jti's bytes modulo
//! [`BUCKETS`], two hex digits. A session key, its bucket's indexes, its
//! tombstones and receipts share the hash tag `{ns:BB}`, so one
//! script updates them atomically on one slot; a subject's index and
//! revocation marker share the subject's hash tag; the marker registry
//! has one of its own; `ns:k` and its receipts hash alike (`ns:k` has no
//! braces, so Redis hashes the whole name, which is the receipts' tag).

/// Number of session buckets per namespace. Part of the storage format:
/// changing it makes existing sessions unreachable.
pub(crate) const BUCKETS: u16 = 64;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Append the lowercase hex of `bytes` to `out` (a table lookup per
/// nibble: `write!` per byte cost more than the rest of a get).
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
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
}

impl Keys {
    pub(crate) fn new(ns: &str) -> Self {
        Self { ns: ns.to_owned() }
    }

    /// The prefix of the session keys of bucket `b` (append the hex jti).
    pub(crate) fn session_prefix(&self, b: u16) -> String {
        self.session_key_with(b, 0)
    }

    /// The session key of `jti` alone (what a get needs), built in one
    /// allocation: the same as `session(jti).session`.
    pub(crate) fn session_key(&self, jti: &str) -> String {
        let mut k = self.session_key_with(bucket_of(jti.as_bytes()), 2 * jti.len());
        push_hex(&mut k, jti.as_bytes());
        k
    }

    /// `ns:s:{ns:BB}:`, with room for `extra` more bytes.
    fn session_key_with(&self, b: u16, extra: usize) -> String {
        debug_assert!(b < BUCKETS);
        let mut k = String::with_capacity(2 * self.ns.len() + 9 + extra);
        k.push_str(&self.ns);
        k.push_str(":s:{");
        k.push_str(&self.ns);
        k.push(':');
        push_hex(&mut k, &[b as u8]);
        k.push_str("}:");
        k
    }

    /// The session key of a hex-encoded jti in bucket `b`.
    pub(crate) fn session_hex(&self, b: u16, hex_jti: &str) -> String {
        let mut k = self.session_prefix(b);
        k.push_str(hex_jti);
        k
    }

    /// The keys of a jti's session and of its bucket.
    pub(crate) fn session(&self, jti: &str) -> SessionKeys {
        let b = bucket_of(jti.as_bytes());
        self.session_of(b, hex(jti.as_bytes()))
    }

    /// The keys of the session with hex jti `member` in bucket `b`.
    pub(crate) fn session_of(&self, b: u16, member: String) -> SessionKeys {
        SessionKeys {
            bucket: b,
            session: self.session_hex(b, &member),
            lex: self.lex(b),
            exp: self.exp(b),
            member,
        }
    }

    /// The tombstone of subject `hex_sub` on `hex_jti` in bucket `b`, and
    /// its member in the bucket's tombstone index.
    pub(crate) fn tombstone(&self, b: u16, hex_jti: &str, hex_sub: &str) -> (String, String) {
        let member = format!("{hex_jti}:{hex_sub}");
        (
            format!("{ns}:d:{{{ns}:{b:02x}}}:{member}", ns = self.ns),
            member,
        )
    }

    /// The tombstone of a member of bucket `b`'s tombstone index.
    pub(crate) fn tombstone_of(&self, b: u16, member: &str) -> String {
        format!("{ns}:d:{{{ns}:{b:02x}}}:{member}", ns = self.ns)
    }

    /// The tombstone index of bucket `b`.
    pub(crate) fn tombstones(&self, b: u16) -> String {
        format!("{ns}:dx:{{{ns}:{b:02x}}}", ns = self.ns)
    }

    /// The receipt of request `token` on a session.
    pub(crate) fn receipt(&self, k: &SessionKeys, token: &str) -> String {
        format!(
            "{ns}:t:{{{ns}:{b:02x}}}:{m}:{token}",
            ns = self.ns,
            b = k.bucket,
            m = k.member
        )
    }

    /// The receipt of the create that stored a session.
    pub(crate) fn create_receipt(&self, k: &SessionKeys) -> String {
        format!(
            "{ns}:c:{{{ns}:{b:02x}}}:{m}",
            ns = self.ns,
            b = k.bucket,
            m = k.member
        )
    }

    /// The scan index of bucket `b`.
    pub(crate) fn lex(&self, b: u16) -> String {
        format!("{ns}:l:{{{ns}:{b:02x}}}", ns = self.ns)
    }

    /// The expiry index of bucket `b`.
    pub(crate) fn exp(&self, b: u16) -> String {
        format!("{ns}:x:{{{ns}:{b:02x}}}", ns = self.ns)
    }

    /// The session index of a subject.
    pub(crate) fn subject(&self, sub: &str) -> String {
        self.subject_hex(&hex(sub.as_bytes()))
    }

    /// The session index of a hex subject.
    pub(crate) fn subject_hex(&self, hex_sub: &str) -> String {
        format!("{ns}:u:{{{ns}:u:{hex_sub}}}", ns = self.ns)
    }

    /// The revocation marker of a subject (same slot as its index).
    pub(crate) fn marker(&self, sub: &str) -> String {
        self.marker_hex(&hex(sub.as_bytes()))
    }

    /// The revocation marker of a hex subject.
    pub(crate) fn marker_hex(&self, hex_sub: &str) -> String {
        format!("{ns}:r:{{{ns}:u:{hex_sub}}}", ns = self.ns)
    }

    /// The hash of create-once records.
    pub(crate) fn records(&self) -> String {
        format!("{}:k", self.ns)
    }

    /// The hash of peer JWKS documents.
    pub(crate) fn peers(&self) -> String {
        format!("{}:p", self.ns)
    }

    /// The registry of subjects with a marker, in byte order.
    pub(crate) fn markers(&self) -> String {
        format!("{ns}:m:{{{ns}:m}}", ns = self.ns)
    }

    /// The registry of subjects with a marker, by `keep_until`.
    pub(crate) fn markers_by_keep(&self) -> String {
        format!("{ns}:mx:{{{ns}:m}}", ns = self.ns)
    }

    /// Subjects with a revoke at work.
    pub(crate) fn markers_pending(&self) -> String {
        format!("{ns}:mp:{{{ns}:m}}", ns = self.ns)
    }

    /// The receipt of `replace_record` request `token` (the slot of `ns:k`).
    pub(crate) fn record_receipt(&self, token: &str) -> String {
        format!("{ns}:q:{{{ns}:k}}:{token}", ns = self.ns)
    }

    /// The storage format marker.
    pub(crate) fn meta(&self) -> String {
        format!("{}:meta", self.ns)
    }
}

/// The keys a session operation touches (all in one hash slot).
pub(crate) struct SessionKeys {
    pub(crate) bucket: u16,
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
    fn hex_is_lowercase_two_digits_per_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&all), want);
    }

    #[test]
    fn session_key_is_the_stored_layout() {
        let keys = Keys::new("ns");
        // Pinned: the storage format's session key of jti "a" (bucket 0x2c).
        assert_eq!(keys.session_key("a"), "ns:s:{ns:2c}:61");
        for jti in [
            "a",
            "jti-00000001",
            "'; DROP {x}",
            "\u{e9}*?",
            &"j".repeat(255),
        ] {
            let k = keys.session(jti);
            assert_eq!(keys.session_key(jti), k.session, "{jti}");
            assert_eq!(
                keys.session_prefix(k.bucket),
                format!("ns:s:{{ns:{:02x}}}:", k.bucket)
            );
        }
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
        let (tomb, _) = keys.tombstone(b, &s.member, &hex(nasty.as_bytes()));
        for key in [
            tomb,
            keys.tombstones(b),
            keys.receipt(&s, "00ff"),
            keys.create_receipt(&s),
        ] {
            assert_eq!(hash_tag(&key), tag, "{key}");
        }
        assert_eq!(hash_tag(&keys.markers()), hash_tag(&keys.markers_by_keep()));
        assert_eq!(hash_tag(&keys.markers()), hash_tag(&keys.markers_pending()));
        // `ns:k` has no tag: Redis hashes the whole name, the receipts' tag.
        assert_eq!(hash_tag(&keys.record_receipt("00")), keys.records());
        assert!(!keys.subject(nasty).contains(nasty));
        assert_ne!(keys.subject("a:b"), keys.subject("a"));
    }

    #[test]
    fn subject_keys_share_the_subject_tag() {
        let keys = Keys::new("ns");
        assert_eq!(keys.subject("a\u{e9}"), "ns:u:{ns:u:61c3a9}");
        assert_eq!(keys.marker("a\u{e9}"), "ns:r:{ns:u:61c3a9}");
    }
}
