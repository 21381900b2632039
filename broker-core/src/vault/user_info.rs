//! [`UserInfo`]: a user's claims, redacted in `Debug` and wiped on drop.

use std::fmt;
use std::sync::OnceLock;

use secrecy::{ExposeSecret, SecretString};
use zeroize::{Zeroize, Zeroizing};

/// A user's claims from the identity provider. PII: `Debug` is redacted;
/// the sealed JSON text and the string values of parsed claims are
/// zeroized on drop (claim names, and serde_json's own scratch buffers
/// while parsing escaped strings, are not).
///
/// Claims opened from a store stay as the JSON text that was sealed and are
/// parsed on the first [`UserInfo::expose`]; sealing them again reuses that
/// text, so a refresh (take, then save) never parses or re-serialises them.
///
/// ```
/// use broker_core::UserInfo;
/// let info = UserInfo::new(broker_core::serde_json::json!({"email": "jane@example.org"}));
/// assert_eq!(info.expose()["email"], "jane@example.org");
/// assert_eq!(format!("{info:?}"), "UserInfo([REDACTED])");
/// ```
#[derive(Clone, Default)]
pub struct UserInfo {
    /// The JSON text as sealed, for claims opened from a store.
    sealed_json: Option<SecretString>,
    /// The parsed claims: given at construction, or parsed on first use.
    value: OnceLock<serde_json::Value>,
}

impl UserInfo {
    /// Wrap claims.
    pub fn new(value: serde_json::Value) -> Self {
        Self {
            sealed_json: None,
            value: OnceLock::from(value),
        }
    }

    /// Claims from JSON text that [`validated_json`] accepted.
    pub(super) fn from_sealed_json(json: &str) -> Self {
        Self {
            sealed_json: Some(SecretString::from(json)),
            value: OnceLock::new(),
        }
    }

    /// The claims.
    pub fn expose(&self) -> &serde_json::Value {
        self.value.get_or_init(|| {
            // The text passed `validated_json`, which checks it with the same
            // parser rules a `Value` needs, so this parse cannot fail; `Null`
            // only keeps a broken invariant from panicking.
            self.sealed_json
                .as_ref()
                .and_then(|json| serde_json::from_str(json.expose_secret()).ok())
                .unwrap_or_default()
        })
    }

    /// The JSON text these claims were opened from, if they were.
    pub(super) fn sealed_json(&self) -> Option<&[u8]> {
        self.sealed_json
            .as_ref()
            .map(|json| json.expose_secret().as_bytes())
    }
}

impl PartialEq for UserInfo {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl From<serde_json::Value> for UserInfo {
    fn from(value: serde_json::Value) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for UserInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserInfo([REDACTED])")
    }
}

impl Drop for UserInfo {
    fn drop(&mut self) {
        fn wipe(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::String(s) => s.zeroize(),
                serde_json::Value::Array(items) => items.iter_mut().for_each(wipe),
                serde_json::Value::Object(map) => map.values_mut().for_each(wipe),
                _ => {}
            }
        }
        // `sealed_json` zeroizes itself (a secret box).
        if let Some(value) = self.value.get_mut() {
            wipe(value);
        }
    }
}

/// A growing buffer that wipes each buffer it outgrows (a `Vec` growing in
/// place would leave the old copy of the claims in freed memory).
pub(super) struct WipingBuf(pub(super) Zeroizing<Vec<u8>>);

impl std::io::Write for WipingBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let need = self.0.len() + bytes.len();
        if need > self.0.capacity() {
            let mut bigger = Vec::with_capacity(need.max(2 * self.0.capacity()));
            bigger.extend_from_slice(&self.0);
            // The old buffer is wiped as it drops.
            self.0 = Zeroizing::new(bigger);
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `json` if it is one JSON value that parses into a `serde_json::Value`:
/// checked with the parser's own rules (nesting limit, string escapes,
/// numbers) without building the value.
pub(super) fn validated_json(json: &[u8]) -> Option<&str> {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    /// Accepts any JSON value, reading every string and number as a
    /// `Value` would (`serde::de::IgnoredAny` skips escapes unchecked).
    struct AnyValue;

    impl<'de> Deserialize<'de> for AnyValue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            d.deserialize_any(AnyValue)
        }
    }

    impl<'de> Visitor<'de> for AnyValue {
        type Value = AnyValue;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<Self, E> {
            Ok(AnyValue)
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<Self, E> {
            Ok(AnyValue)
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<Self, E> {
            Ok(AnyValue)
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<Self, E> {
            Ok(AnyValue)
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<Self, E> {
            Ok(AnyValue)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self, E> {
            Ok(AnyValue)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self, A::Error> {
            while seq.next_element::<AnyValue>()?.is_some() {}
            Ok(AnyValue)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self, A::Error> {
            // Keys are strings (read in full); with `arbitrary_precision` a
            // number arrives as a one-entry map, handled the same way.
            while map.next_entry::<AnyValue, AnyValue>()?.is_some() {}
            Ok(AnyValue)
        }
    }

    let text = std::str::from_utf8(json).ok()?;
    serde_json::from_str::<AnyValue>(text).ok().map(|_| text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiping_buffer_grows_to_hold_everything_written() {
        use std::io::Write as _;
        let mut buf = WipingBuf(Zeroizing::new(Vec::with_capacity(4)));
        let mut expected = Vec::new();
        for chunk in [&b"ab"[..], b"cdefg", &[7u8; 100], b"", b"h"] {
            buf.write_all(chunk).unwrap();
            expected.extend_from_slice(chunk);
        }
        assert_eq!(buf.0.as_slice(), expected.as_slice());
        assert!(buf.0.capacity() >= expected.len());
    }

    /// The cheap check of opened user_info agrees with a full parse on the
    /// inputs where a mere syntax check would not (lone surrogates, nesting
    /// depth, trailing text, bad UTF-8).
    #[test]
    fn validated_json_agrees_with_a_full_parse() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
        let rows: Vec<(Vec<u8>, bool)> = vec![
            (br#"{"a":"\ud83d\ude00"}"#.to_vec(), true),
            (br#"{"a":"\ud800"}"#.to_vec(), false),
            (br#"["\udc00x"]"#.to_vec(), false),
            (br#"{"\ud800":1}"#.to_vec(), false),
            (br#"{"a":1.50e999999,"b":-0}"#.to_vec(), true),
            (b"{} x".to_vec(), false),
            (b" null ".to_vec(), true),
            (b"".to_vec(), false),
            (b"NaN".to_vec(), false),
            (b"[\"\x01\"]".to_vec(), false),
            (b"[\"\xff\"]".to_vec(), false),
            (b"{\"a\":\"\\q\"}".to_vec(), false),
            (deep(127), true),
            (deep(129), false),
        ];
        for (json, valid) in rows {
            let full = serde_json::from_slice::<serde_json::Value>(&json).is_ok();
            assert_eq!(full, valid, "{}", String::from_utf8_lossy(&json));
            assert_eq!(
                validated_json(&json).is_some(),
                valid,
                "{}",
                String::from_utf8_lossy(&json)
            );
        }
    }
}
