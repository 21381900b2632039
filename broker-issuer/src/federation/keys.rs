//! A peer's JWKS document read into the keys it may use: weak, foreign or
//! unusable keys are dropped one by one; a document holding private key
//! material, or leaving no usable key, is refused whole.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker_core::UnixTime;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::key::SigningAlg;

/// Smallest RSA modulus accepted, in bits.
pub(crate) const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (a bigger one costs verification
/// time without adding safety).
pub(crate) const MAX_RSA_BITS: usize = 8192;
/// Longest `kid` accepted.
const MAX_KID_BYTES: usize = 255;
/// JWK members that hold private key material (RFC 7518 §6.2.2, §6.3.2,
/// §6.4.1).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// One usable peer key.
pub(crate) struct PeerKey {
    pub(crate) kid: String,
    pub(crate) alg: SigningAlg,
    pub(crate) key: DecodingKey,
}

/// A peer's key set as used on the hot path, swapped whole.
#[derive(Default)]
pub(crate) struct PeerKeys {
    /// When the document was fetched (by any worker); `None`: no keys yet.
    pub(crate) fetched_at: Option<UnixTime>,
    pub(crate) keys: Vec<PeerKey>,
}

impl PeerKeys {
    /// The key with `kid`, if the set is younger than `max_age` at `now`.
    pub(crate) fn find(&self, kid: &str, now: UnixTime, max_age: i64) -> Option<&PeerKey> {
        let fresh = self.fetched_at.is_some_and(|t| now - t < max_age);
        if !fresh {
            return None;
        }
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// Why a document was refused whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocError {
    /// Not a JSON object with a `keys` array.
    NotJwks,
    /// A key holds private members: the peer leaked its key, trust none.
    PrivateKey,
    /// No key survived the checks; this many were dropped.
    NoUsableKey(u64),
}

impl DocError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::NotJwks => "the document is not a JWKS",
            Self::PrivateKey => "the document holds private key members",
            Self::NoUsableKey(_) => "the document has no usable key",
        }
    }

    /// Keys dropped before it was refused.
    pub(crate) fn dropped(self) -> u64 {
        match self {
            Self::NoUsableKey(n) => n,
            Self::NotJwks | Self::PrivateKey => 0,
        }
    }
}

/// A document read: its usable keys and how many were dropped.
pub(crate) struct Parsed {
    pub(crate) keys: Vec<PeerKey>,
    pub(crate) dropped: u64,
}

/// One JWK as read; members not named here are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Read `doc`, keeping the keys that may sign with one of `allowed`.
pub(crate) fn parse(doc: &[u8], allowed: &[SigningAlg]) -> Result<Parsed, DocError> {
    let value: serde_json::Value = serde_json::from_slice(doc).map_err(|_| DocError::NotJwks)?;
    let entries = value
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(serde_json::Value::as_array)
        .ok_or(DocError::NotJwks)?;
    let leaked = entries.iter().any(|jwk| {
        jwk.as_object()
            .is_some_and(|m| PRIVATE_MEMBERS.iter().any(|p| m.contains_key(*p)))
    });
    if leaked {
        return Err(DocError::PrivateKey);
    }
    let mut keys: Vec<PeerKey> = Vec::with_capacity(entries.len());
    let mut dropped = 0;
    for entry in entries {
        let usable = RawJwk::deserialize(entry)
            .ok()
            .and_then(|raw| usable(&raw, allowed))
            .filter(|k| !keys.iter().any(|seen| seen.kid == k.kid));
        match usable {
            Some(key) => keys.push(key),
            None => dropped += 1,
        }
    }
    if keys.is_empty() {
        return Err(DocError::NoUsableKey(dropped));
    }
    Ok(Parsed { keys, dropped })
}

/// The key `raw` describes, if it is a signing key of an allowed
/// algorithm, strong enough, and well formed.
fn usable(raw: &RawJwk, allowed: &[SigningAlg]) -> Option<PeerKey> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = &raw.key_ops
        && !ops.iter().any(|o| o == "verify")
    {
        return None;
    }
    let kid = raw
        .kid
        .as_deref()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KID_BYTES)?;
    let (natural, key) = match (raw.kty.as_deref()?, raw.crv.as_deref()) {
        ("RSA", _) => {
            let (n, e) = (raw.n.as_deref()?, raw.e.as_deref()?);
            let bits = rsa_bits(n)?;
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) || !exponent_ok(e) {
                return None;
            }
            (
                SigningAlg::RS256,
                DecodingKey::from_rsa_components(n, e).ok()?,
            )
        }
        ("EC", Some("P-256")) => {
            let (x, y) = (raw.x.as_deref()?, raw.y.as_deref()?);
            (
                SigningAlg::ES256,
                DecodingKey::from_ec_components(x, y).ok()?,
            )
        }
        ("OKP", Some("Ed25519")) => (
            SigningAlg::EdDSA,
            DecodingKey::from_ed_components(raw.x.as_deref()?).ok()?,
        ),
        _ => return None,
    };
    // A key names the one algorithm it signs with, or gets its type's.
    let alg = match raw.alg.as_deref() {
        None => natural,
        Some(name) => alg_named(name).filter(|&a| a == natural)?,
    };
    if !allowed.contains(&alg) {
        return None;
    }
    Some(PeerKey {
        kid: kid.to_owned(),
        alg,
        key,
    })
}

/// The algorithm a JWK's `alg` names, if it is one of ours.
fn alg_named(name: &str) -> Option<SigningAlg> {
    [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA]
        .into_iter()
        .find(|a| a.name() == name)
}

/// The bit length of a base64url big-endian RSA modulus.
pub(crate) fn rsa_bits(n: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(n.trim_end_matches('=')).ok()?;
    let first = bytes.iter().position(|&b| b != 0)?;
    let significant = &bytes[first..];
    Some((significant.len() - 1) * 8 + (8 - significant[0].leading_zeros() as usize))
}

/// An RSA public exponent that is odd, above 1, and at most 32 bits.
fn exponent_ok(e: &str) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(e.trim_end_matches('=')) else {
        return false;
    };
    let digits: Vec<u8> = bytes.into_iter().skip_while(|&b| b == 0).collect();
    if digits.is_empty() || digits.len() > 4 {
        return false;
    }
    let value = digits
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    value > 1 && value % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modulus(bits: usize) -> String {
        let mut n = vec![0xffu8; bits / 8];
        n[0] = 0xc1;
        URL_SAFE_NO_PAD.encode(n)
    }

    fn rsa(bits: usize, extra: serde_json::Value) -> serde_json::Value {
        let mut k = serde_json::json!({"kty": "RSA", "kid": format!("k{bits}"), "n": modulus(bits), "e": "AQAB"});
        for (name, v) in extra.as_object().unwrap() {
            k[name] = v.clone();
        }
        k
    }

    fn doc(keys: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn modulus_bits() {
        assert_eq!(rsa_bits(&modulus(2048)), Some(2048));
        assert_eq!(rsa_bits(&modulus(1024)), Some(1024));
        assert_eq!(rsa_bits("AAAB"), Some(1));
        assert_eq!(rsa_bits("AAAA"), None);
        assert_eq!(rsa_bits("!!"), None);
    }

    #[test]
    fn weak_foreign_and_unusable_keys_are_dropped() {
        let rs = [SigningAlg::RS256];
        let good = rsa(2048, serde_json::json!({"use": "sig", "alg": "RS256"}));
        let parsed = parse(
            &doc(&[
                good.clone(),
                rsa(1024, serde_json::json!({})),
                rsa(16384, serde_json::json!({})),
                {
                    let mut k = rsa(3072, serde_json::json!({"use": "enc"}));
                    k["kid"] = "enc".into();
                    k
                },
                rsa(4096, serde_json::json!({"alg": "RS384"})),
                rsa(2048, serde_json::json!({"alg": "ES256", "kid": "mismatch"})),
                rsa(2048, serde_json::json!({"e": "AQAA", "kid": "even-e"})),
                rsa(2048, serde_json::json!({"key_ops": ["encrypt"], "kid": "ops"})),
                serde_json::json!({"kty": "oct", "kid": "sym"}),
                serde_json::json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"}),
                serde_json::json!({"kty": "RSA", "n": modulus(2048), "e": "AQAB"}),
                serde_json::json!("not an object"),
                good.clone(),
            ]),
            &rs,
        )
        .ok()
        .unwrap();
        assert_eq!(parsed.keys.len(), 1);
        assert_eq!(parsed.keys[0].kid, "k2048");
        assert_eq!(parsed.dropped, 12);
    }

    #[test]
    fn documents_refused_whole() {
        let rs = [SigningAlg::RS256];
        assert_eq!(parse(b"not json", &rs).err(), Some(DocError::NotJwks));
        assert_eq!(parse(b"[]", &rs).err(), Some(DocError::NotJwks));
        assert_eq!(parse(b"{\"keys\":{}}", &rs).err(), Some(DocError::NotJwks));
        assert_eq!(parse(&doc(&[]), &rs).err(), Some(DocError::NoUsableKey(0)));
        let weak = doc(&[rsa(1024, serde_json::json!({}))]);
        assert_eq!(parse(&weak, &rs).err(), Some(DocError::NoUsableKey(1)));
        let leaked = doc(&[rsa(2048, serde_json::json!({"d": "AQAB"}))]);
        assert_eq!(parse(&leaked, &rs).err(), Some(DocError::PrivateKey));
        // An algorithm the peer may not use.
        let good = doc(&[rsa(2048, serde_json::json!({}))]);
        assert_eq!(
            parse(&good, &[SigningAlg::EdDSA]).err(),
            Some(DocError::NoUsableKey(1))
        );
    }
}
