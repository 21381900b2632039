//! RS256 signing keys generated with aws-lc-rs (the backend broker-issuer
//! and jsonwebtoken use), `kid` = RFC 7638 thumbprint.

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::TestIdpError;

/// One RSA-2048 key.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public JWK as published.
    pub(crate) public: serde_json::Value,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh RSA-2048 key.
    pub(crate) fn generate() -> Result<Self, TestIdpError> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| TestIdpError::Key("RSA key generation failed"))?;
        let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair
            .as_der()
            .map_err(|_| TestIdpError::Key("RSA key encoding failed"))?;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(der.as_ref())
        );
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| TestIdpError::Key("RSA key not loadable"))?;
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .map_err(|_| TestIdpError::Key("no JWK for the key"))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| TestIdpError::Key("no thumbprint for the key"))?;
        let decoding =
            DecodingKey::from_jwk(&jwk).map_err(|_| TestIdpError::Key("no public key"))?;
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            return Err(TestIdpError::Key("not an RSA key"));
        };
        let public = serde_json::json!({
            "kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig", "n": rsa.n, "e": rsa.e,
        });
        Ok(Self {
            kid,
            encoding,
            decoding,
            public,
        })
    }

    /// Sign `claims` as a JWT with header `typ`.
    pub(crate) fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        // RS256 signing of a serialisable map cannot fail with a valid key.
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// The claims of `token` if this key signed it. Expiry is not checked
    /// here: the caller checks it against the IdP's clock.
    pub(crate) fn verify<T: DeserializeOwned>(&self, token: &str) -> Option<T> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<T>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// The `kid` in a JWT's header, if any.
pub(crate) fn kid_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}
