//! Input limits, checked before any I/O. Every store calls these at the top
//! of each operation, so bad input never reaches a database.

use crate::error::{Result, StoreError};
use crate::record::{PeerJwks, Revocation, SessionRecord, UnixTime};

/// Longest `jti`, `sub` or record name, in bytes.
pub const MAX_ID_BYTES: usize = 255;
/// Longest issuer URL of a peer, in bytes.
pub const MAX_ISSUER_BYTES: usize = 1024;
/// Largest user_info (serialized JSON) the vault accepts.
pub const MAX_USER_INFO_BYTES: usize = 64 * 1024;
/// Largest refresh token the vault accepts.
pub const MAX_REFRESH_TOKEN_BYTES: usize = 32 * 1024;
/// Largest sealed blob (session or create-once record) a store accepts:
/// room for the largest refresh token and user_info plus the envelope.
pub const MAX_SEALED_BYTES: usize = 128 * 1024;
/// Largest peer JWKS document.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Latest timestamp any backend can represent: 9999-12-31T23:59:59Z.
pub const MAX_TIMESTAMP: UnixTime = 253_402_300_799;
/// Largest page a scan returns.
pub const MAX_PAGE: usize = 10_000;

/// Check an identifier (`jti`, `sub`, record name): 1..=255 bytes, no NUL.
pub fn id(op: &'static str, what: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(StoreError::invalid(op, format!("{what} is empty")));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(StoreError::invalid(
            op,
            format!("{what} is longer than {MAX_ID_BYTES} bytes"),
        ));
    }
    if value.as_bytes().contains(&0) {
        return Err(StoreError::invalid(
            op,
            format!("{what} contains a NUL byte"),
        ));
    }
    Ok(())
}

/// Check a `jti`.
pub fn jti(op: &'static str, jti: &str) -> Result<()> {
    id(op, "jti", jti)
}

/// Check a `sub`.
pub fn sub(op: &'static str, sub: &str) -> Result<()> {
    id(op, "sub", sub)
}

/// Check a create-once record name.
pub fn record_name(op: &'static str, name: &str) -> Result<()> {
    id(op, "record name", name)
}

/// Check a timestamp: 0 ..= [`MAX_TIMESTAMP`].
pub fn timestamp(op: &'static str, what: &'static str, t: UnixTime) -> Result<()> {
    if (0..=MAX_TIMESTAMP).contains(&t) {
        Ok(())
    } else {
        Err(StoreError::invalid(
            op,
            format!("{what} is outside 0..={MAX_TIMESTAMP} (1970 to 9999)"),
        ))
    }
}

/// Check a sealed blob's size.
pub fn sealed(op: &'static str, sealed: &[u8]) -> Result<()> {
    if sealed.is_empty() {
        return Err(StoreError::invalid(op, "sealed value is empty"));
    }
    if sealed.len() > MAX_SEALED_BYTES {
        return Err(StoreError::invalid(
            op,
            format!("sealed value is larger than {MAX_SEALED_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Check every field of a session record.
pub fn session(op: &'static str, s: &SessionRecord) -> Result<()> {
    jti(op, &s.jti)?;
    sub(op, &s.sub)?;
    timestamp(op, "expires_at", s.expires_at)?;
    timestamp(op, "auth_time", s.auth_time)?;
    sealed(op, &s.sealed)
}

/// Check a revocation.
pub fn revocation(op: &'static str, r: &Revocation) -> Result<()> {
    sub(op, &r.sub)?;
    timestamp(op, "revoked_at", r.revoked_at)?;
    timestamp(op, "keep_until", r.keep_until)
}

/// Check a peer issuer URL: 1..=1024 bytes, no NUL.
pub fn issuer(op: &'static str, issuer: &str) -> Result<()> {
    if issuer.is_empty() || issuer.len() > MAX_ISSUER_BYTES || issuer.as_bytes().contains(&0) {
        return Err(StoreError::invalid(
            op,
            format!("issuer must be 1..={MAX_ISSUER_BYTES} bytes without NUL"),
        ));
    }
    Ok(())
}

/// Check a peer JWKS record: issuer, size, and that the document is JSON.
pub fn peer(op: &'static str, p: &PeerJwks) -> Result<()> {
    issuer(op, &p.issuer)?;
    timestamp(op, "fetched_at", p.fetched_at)?;
    if p.jwks.len() > MAX_JWKS_BYTES {
        return Err(StoreError::invalid(
            op,
            format!("JWKS document is larger than {MAX_JWKS_BYTES} bytes"),
        ));
    }
    if serde_json::from_str::<&serde_json::value::RawValue>(&p.jwks).is_err() {
        return Err(StoreError::invalid(op, "JWKS document is not valid JSON"));
    }
    Ok(())
}

/// Check a scan page size: 1..=[`MAX_PAGE`].
pub fn page_limit(op: &'static str, limit: usize) -> Result<()> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(())
    } else {
        Err(StoreError::invalid(
            op,
            format!("page size must be 1..={MAX_PAGE}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded() {
        assert!(jti("t", "a").is_ok());
        assert!(jti("t", &"a".repeat(255)).is_ok());
        assert!(jti("t", &"a".repeat(256)).is_err());
        assert!(jti("t", "").is_err());
        assert!(jti("t", "a\0b").is_err());
    }

    #[test]
    fn timestamps_are_bounded() {
        assert!(timestamp("t", "x", 0).is_ok());
        assert!(timestamp("t", "x", MAX_TIMESTAMP).is_ok());
        assert!(timestamp("t", "x", -1).is_err());
        assert!(timestamp("t", "x", MAX_TIMESTAMP + 1).is_err());
    }

    #[test]
    fn error_message_never_holds_the_value() {
        let secret = "x".repeat(300) + "canary";
        let e = jti("op", &secret).unwrap_err().to_string();
        assert!(!e.contains("canary"), "{e}");
    }
}
