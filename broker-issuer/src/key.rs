//! Signing keys: generation (aws-lc-rs), import of a py-oidc-auth PEM, the
//! public JWK with its RFC 7638 thumbprint as `kid`, and the jsonwebtoken
//! keys built once per key.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::error::IssuerError;

/// The signature algorithms the issuer signs with.
///
/// RS256 is the default: py-oidc-auth peers read RSA JWKs only (they fail
/// on any other key in a JWKS they trust), and RSA verifies fastest, which
/// is the hot path. Use ES256 or EdDSA only where no py-oidc-auth peer
/// trusts this issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA-2048 keys.
    #[default]
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlg {
    /// The jsonwebtoken algorithm.
    pub fn jwt(self) -> Algorithm {
        match self {
            Self::RS256 => Algorithm::RS256,
            Self::ES256 => Algorithm::ES256,
            Self::EdDSA => Algorithm::EdDSA,
        }
    }

    /// The JOSE name (`"RS256"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The algorithm a JOSE header names, if it is one of ours.
    pub fn from_jwt(alg: Algorithm) -> Option<Self> {
        match alg {
            Algorithm::RS256 => Some(Self::RS256),
            Algorithm::ES256 => Some(Self::ES256),
            Algorithm::EdDSA => Some(Self::EdDSA),
            _ => None,
        }
    }
}

/// A fresh private key for `alg`, as PKCS#8 DER.
pub(crate) fn generate(alg: SigningAlg) -> Result<Zeroizing<Vec<u8>>, IssuerError> {
    let failed = |reason| IssuerError::Key {
        op: "generate key",
        reason,
    };
    let der: Vec<u8> = match alg {
        SigningAlg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| failed("RSA key generation failed"))?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair
                .as_der()
                .map_err(|_| failed("RSA key encoding failed"))?;
            der.as_ref().to_vec()
        }
        SigningAlg::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(|_| failed("P-256 key generation failed"))?;
            doc.as_ref().to_vec()
        }
        SigningAlg::EdDSA => {
            let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
                .map_err(|_| failed("Ed25519 key generation failed"))?;
            doc.as_ref().to_vec()
        }
    };
    Ok(Zeroizing::new(der))
}

/// A py-oidc-auth private key (PEM, PKCS#1 `RSA PRIVATE KEY` or PKCS#8),
/// as PKCS#8 DER, with the 16-hex `kid` py-oidc-auth gave it (the first
/// 16 hex digits of SHA-256 over the public key's SubjectPublicKeyInfo).
pub(crate) fn import_rsa_pem(pem: &str) -> Result<(Zeroizing<Vec<u8>>, String), IssuerError> {
    let bad = |reason| IssuerError::Key {
        op: "import key",
        reason,
    };
    let body: Zeroizing<String> = Zeroizing::new(
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat(),
    );
    let der = Zeroizing::new(
        STANDARD
            .decode(body.trim())
            .map_err(|_| bad("not a PEM document"))?,
    );
    let pair = if pem.contains("BEGIN RSA PRIVATE KEY") {
        aws_lc_rs::rsa::KeyPair::from_der(&der)
    } else if pem.contains("BEGIN PRIVATE KEY") {
        aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
    } else {
        return Err(bad("not an RSA private key PEM"));
    }
    .map_err(|_| bad("not a usable RSA private key (at least 2048 bits)"))?;
    let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
        pair.as_der().map_err(|_| bad("RSA key encoding failed"))?;
    let spki: aws_lc_rs::encoding::PublicKeyX509Der<'static> = pair
        .public_key()
        .as_der()
        .map_err(|_| bad("RSA public key encoding failed"))?;
    let digest = Sha256::digest(spki.as_ref());
    let legacy_kid: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok((Zeroizing::new(pkcs8.as_ref().to_vec()), legacy_kid))
}

/// Check that `pem` is a private key [`Issuer::import_pem`] accepts (an
/// RSA key of at least 2048 bits, PKCS#1 or PKCS#8 PEM) and return the
/// 16-hex kid py-oidc-auth gives it. Reads nothing and writes nothing; the
/// error never holds any of the PEM.
///
/// [`Issuer::import_pem`]: crate::Issuer::import_pem
pub fn check_pem(pem: &str) -> Result<String, IssuerError> {
    import_rsa_pem(pem).map(|(_, legacy_kid)| legacy_kid)
}

/// A public key as published in the JWKS: only public members, always.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    /// Key type: `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// Curve (`P-256`, `Ed25519`) for EC and OKP keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC x coordinate or OKP public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The key id (RFC 7638 thumbprint, or a py-oidc-auth 16-hex id).
    pub kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// The algorithm the key signs with.
    pub alg: String,
}

/// One usable key: its ids, algorithm, the signing key (none for a
/// verify-only copy) and the verifying key.
pub(crate) struct KeyMaterial {
    pub(crate) kid: String,
    pub(crate) alg: SigningAlg,
    pub(crate) public: PublicJwk,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// Build the keys of a PKCS#8 private key; the `kid` is the RFC 7638
    /// thumbprint of its public JWK.
    pub(crate) fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8]) -> Result<Self, IssuerError> {
        let bad = |reason| IssuerError::Key {
            op: "load key",
            reason,
        };
        let encoding = match alg {
            SigningAlg::RS256 => {
                let mut pem = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
                pem.push_str(&Zeroizing::new(STANDARD.encode(pkcs8)));
                pem.push_str("\n-----END PRIVATE KEY-----\n");
                EncodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|_| bad("not an RSA PKCS#8 key"))?
            }
            SigningAlg::ES256 => EncodingKey::from_ec_der(pkcs8),
            SigningAlg::EdDSA => EncodingKey::from_ed_der(pkcs8),
        };
        let jwk = Jwk::from_encoding_key(&encoding, alg.jwt())
            .map_err(|_| bad("the key does not match its algorithm"))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| bad("no thumbprint for this key"))?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| bad("no public key"))?;
        let public = public_jwk(&jwk, &kid, alg).ok_or(bad("unsupported key type"))?;
        Ok(Self {
            kid,
            alg,
            public,
            encoding,
            decoding,
        })
    }
}

/// The published form of `jwk`.
fn public_jwk(jwk: &Jwk, kid: &str, alg: SigningAlg) -> Option<PublicJwk> {
    let mut out = PublicJwk {
        kty: String::new(),
        crv: None,
        n: None,
        e: None,
        x: None,
        y: None,
        kid: kid.to_owned(),
        use_: "sig".into(),
        alg: alg.name().into(),
    };
    match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            out.kty = "RSA".into();
            out.n = Some(p.n.clone());
            out.e = Some(p.e.clone());
        }
        AlgorithmParameters::EllipticCurve(p) => {
            out.kty = "EC".into();
            out.crv = Some("P-256".into());
            out.x = Some(p.x.clone());
            out.y = Some(p.y.clone());
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            out.kty = "OKP".into();
            out.crv = Some("Ed25519".into());
            out.x = Some(p.x.clone());
        }
        _ => return None,
    }
    Some(out)
}

/// The RFC 7638 thumbprint (SHA-256, base64url) of a public JWK given as
/// JSON: only the required members, in lexicographic order.
pub fn thumbprint(jwk: &serde_json::Value) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = String::from("{");
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        let value = jwk.get(*m)?.as_str()?;
        canonical.push_str(&serde_json::to_string(m).ok()?);
        canonical.push(':');
        canonical.push_str(&serde_json::to_string(value).ok()?);
    }
    canonical.push('}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1 and RFC 8037 A.3, recomputed independently.
    #[test]
    fn thumbprints_match_the_rfc_vectors() {
        let rsa = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&rsa).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        let okp = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        });
        assert_eq!(
            thumbprint(&okp).as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
    }

    #[test]
    fn generated_keys_get_their_thumbprint_as_kid() {
        for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let pkcs8 = generate(alg).unwrap();
            let key = KeyMaterial::from_pkcs8(alg, &pkcs8).unwrap();
            let jwk = serde_json::to_value(&key.public).unwrap();
            assert_eq!(
                thumbprint(&jwk).as_deref(),
                Some(key.kid.as_str()),
                "{alg:?}"
            );
            assert_eq!(key.kid.len(), 43);
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(jwk.get(private).is_none(), "{alg:?} JWK holds {private}");
            }
        }
    }
}
