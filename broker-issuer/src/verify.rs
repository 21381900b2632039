//! One token check for own and peer tokens: signature with the one key its
//! `kid` names, then issuer, audience and times against the injected clock
//! (jsonwebtoken's own clock checks are off, so tests can move time).

use broker_core::UnixTime;
use jsonwebtoken::{DecodingKey, Header, Validation};

use crate::claims::AccessClaims;
use crate::error::VerifyError;
use crate::key::SigningAlg;

/// What a token must satisfy besides its signature.
pub(crate) struct Expect<'a> {
    /// The only accepted `iss`.
    pub(crate) issuer: &'a str,
    /// At least one of these must be in `aud`.
    pub(crate) audiences: &'a [String],
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub(crate) leeway: i64,
    /// Now, by the injected clock.
    pub(crate) now: UnixTime,
}

/// The header of `token`, without verifying anything.
pub(crate) fn header(token: &str) -> Result<Header, VerifyError> {
    jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)
}

/// The unverified `iss` of `token`, to pick the issuer's keys; nothing else
/// of the payload is trusted or returned.
#[cfg_attr(not(feature = "federation"), allow(dead_code))]
pub(crate) fn claimed_issuer(token: &str) -> Result<String, VerifyError> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token)
        .map(|c| c.iss)
        .map_err(|_| VerifyError::Malformed)
}

/// Verify `token`'s signature with `key` (which signs with `alg`, the only
/// algorithm accepted), then its claims against `expect`.
pub(crate) fn check(
    token: &str,
    key: &DecodingKey,
    alg: SigningAlg,
    expect: &Expect<'_>,
) -> Result<AccessClaims, VerifyError> {
    let mut validation = Validation::new(alg.jwt());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
        .map_err(|e| VerifyError::from_jwt(&e))?
        .claims;
    if claims.iss != expect.issuer {
        return Err(VerifyError::UntrustedIssuer);
    }
    if !expect.audiences.iter().any(|a| claims.aud.contains(a)) {
        return Err(VerifyError::Audience);
    }
    if claims.exp + expect.leeway <= expect.now {
        return Err(VerifyError::Expired);
    }
    let not_before = claims.nbf.unwrap_or(claims.iat).max(claims.iat);
    if not_before > expect.now + expect.leeway {
        return Err(VerifyError::NotYetValid);
    }
    if claims.sub.is_empty() || claims.jti.is_empty() {
        return Err(VerifyError::Claims);
    }
    Ok(claims)
}
