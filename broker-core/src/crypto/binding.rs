//! Where a blob belongs: the associated data bound into every seal.

use crate::record::UnixTime;

use super::*;

/// Where a sealed blob belongs. The fields are bound into the associated
/// data, so a blob opens only at the place it was sealed for.
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// A session's refresh token and user_info.
    Session {
        /// The store's namespace.
        namespace: &'a str,
        /// The session id.
        jti: &'a str,
        /// The subject.
        sub: &'a str,
        /// The stored expiry.
        expires_at: UnixTime,
        /// The stored authentication time.
        auth_time: UnixTime,
    },
    /// The broker's private signing key.
    SigningKey {
        /// The store's namespace.
        namespace: &'a str,
        /// The record name.
        name: &'a str,
    },
    /// A peer's JWKS document: the tag (a seal of nothing) authenticates
    /// the issuer, the fetch time and the exact document text.
    Peer {
        /// The store's namespace.
        namespace: &'a str,
        /// The peer's issuer URL.
        issuer: &'a str,
        /// When the document was fetched.
        fetched_at: UnixTime,
        /// The JWKS document, as stored.
        jwks: &'a [u8],
    },
    /// The check value that proves a key belongs to this store; `kdf` is the
    /// encoded key-derivation record (params and salt) for passphrase keys,
    /// empty for raw keys.
    KeyCheck {
        /// The store's namespace.
        namespace: &'a str,
        /// The encoded key-derivation parameters and salt (empty for raw keys).
        kdf: &'a [u8],
    },
}

impl Binding<'_> {
    /// The fields bound into the associated data, in order.
    fn for_each_field(&self, header: &[u8; HEADER_LEN], mut field: impl FnMut(&[u8])) {
        field(header);
        field(FORMAT_LABEL);
        match *self {
            Binding::Session {
                namespace,
                jti,
                sub,
                expires_at,
                auth_time,
            } => {
                field(b"session");
                field(namespace.as_bytes());
                field(jti.as_bytes());
                field(sub.as_bytes());
                field(&(expires_at as u64).to_be_bytes());
                field(&(auth_time as u64).to_be_bytes());
            }
            Binding::SigningKey { namespace, name } => {
                field(b"signing_key");
                field(namespace.as_bytes());
                field(name.as_bytes());
            }
            Binding::Peer {
                namespace,
                issuer,
                fetched_at,
                jwks,
            } => {
                field(b"peer_jwks");
                field(namespace.as_bytes());
                field(issuer.as_bytes());
                field(&(fetched_at as u64).to_be_bytes());
                field(jwks);
            }
            Binding::KeyCheck { namespace, kdf } => {
                field(b"key_check");
                field(namespace.as_bytes());
                field(kdf);
            }
        }
    }

    /// The unambiguous associated data for a blob with envelope `header`:
    /// every field u32-BE-length-prefixed.
    pub(crate) fn associated_data(&self, header: &[u8; HEADER_LEN]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(128);
        self.for_each_field(header, |field| push_field(&mut ad, field));
        ad
    }

    /// Call `f` with [`Binding::associated_data`], built on the stack when
    /// it fits in [`AD_INLINE`] bytes (every session with typical ids).
    pub(super) fn with_associated_data<R>(
        &self,
        header: &[u8; HEADER_LEN],
        f: impl FnOnce(&[u8]) -> R,
    ) -> R {
        let mut len = 0;
        self.for_each_field(header, |field| len += 4 + field.len());
        if len > AD_INLINE {
            return f(&self.associated_data(header));
        }
        let mut ad = [0u8; AD_INLINE];
        let mut at = 0;
        self.for_each_field(header, |field| {
            ad[at..at + 4].copy_from_slice(&(field.len() as u32).to_be_bytes());
            ad[at + 4..at + 4 + field.len()].copy_from_slice(field);
            at += 4 + field.len();
        });
        f(&ad[..at])
    }
}

/// Bytes of associated data built on the stack; longer data goes to the heap.
pub(super) const AD_INLINE: usize = 256;

/// Append `field` to `out` with a u32 BE length prefix.
pub(crate) fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}
