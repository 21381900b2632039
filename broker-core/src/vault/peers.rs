//! Peer JWKS through the vault, authenticated at rest (SECURITY.md
//! requirement 15).
//!
//! The token broker trusts any token a stored peer key verifies, so a
//! database writer must not be able to plant a peer, swap two peers'
//! documents or pin an old document by editing its fetch time. Each stored
//! document therefore carries a tag: a seal of nothing under the vault's
//! primary key whose associated data is (namespace, issuer, `fetched_at`,
//! document text) — AES-GCM with an empty plaintext is GMAC. The document
//! stays readable in the database (it is public); the store keeps
//!
//! ```text
//! {"oidc_broker_peer_v1":"<tag, base64url>","jwks":<the document, verbatim>}
//! ```
//!
//! which is itself JSON, so every backend stores it as any other document.
//! A stored peer without a valid tag is reported as
//! [`Corruption::Unauthenticated`] and never returned.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret;

use crate::crypto::{Binding, KeyId, sealed_key_id};
use crate::error::{Corruption, Result, StoreError};
use crate::record::{PeerJwks, UnixTime};
use crate::validate;

use super::TokenVault;

/// How a stored peer document starts; the tag follows.
const PREFIX: &str = r#"{"oidc_broker_peer_v1":""#;
/// Between the tag and the document.
const MIDDLE: &str = r#"","jwks":"#;
/// After the document.
const SUFFIX: &str = "}";
/// Bytes a stored peer text is longer than its document (the tag is a
/// 33-byte envelope, 44 characters of base64url).
const STORED_OVERHEAD: usize = PREFIX.len() + 44 + MIDDLE.len() + SUFFIX.len();

/// JWK members that hold private key material (RFC 7518 §6.2.2, §6.3.2,
/// §6.4.1): a JWKS holding any of them is refused.
pub const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Refuse a document that is not a JSON object or that holds a private key
/// member in itself (a bare JWK) or in any entry of its `keys` array.
fn refuse_private_members(op: &'static str, jwks: &str) -> Result<()> {
    let doc: serde_json::Value = serde_json::from_str(jwks)
        .map_err(|_| StoreError::invalid(op, "JWKS document is not valid JSON"))?;
    let serde_json::Value::Object(top) = &doc else {
        return Err(StoreError::invalid(
            op,
            "a JWKS document must be a JSON object",
        ));
    };
    let entries = match top.get("keys") {
        Some(serde_json::Value::Array(keys)) => keys.iter().collect(),
        _ => Vec::new(),
    };
    let private = std::iter::once(&doc).chain(entries).any(|jwk| {
        jwk.as_object()
            .is_some_and(|m| PRIVATE_JWK_MEMBERS.iter().any(|name| m.contains_key(*name)))
    });
    if private {
        return Err(StoreError::invalid(
            op,
            "the JWKS holds private key members (d, p, q, dp, dq, qi, oth or k); \
             store only a peer's public keys",
        ));
    }
    Ok(())
}

/// The tag and the document of a stored peer text, if it has the layout.
fn split_stored(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    rest.split_once(MIDDLE)
}

/// The key id a stored peer's tag names, if it has a tag at all (for
/// counting key usage without a key).
pub(super) fn stored_key_id(text: &str) -> Option<KeyId> {
    let (tag, _) = split_stored(text)?;
    sealed_key_id(&URL_SAFE_NO_PAD.decode(tag).ok()?).ok()
}

impl TokenVault {
    fn peer_binding<'a>(
        &'a self,
        issuer: &'a str,
        fetched_at: UnixTime,
        jwks: &'a str,
    ) -> Binding<'a> {
        Binding::Peer {
            namespace: self.store.namespace().as_str(),
            issuer,
            fetched_at,
            jwks: jwks.as_bytes(),
        }
    }

    /// The text a store keeps for a peer: the document with its tag.
    async fn tag_peer(
        &self,
        op: &'static str,
        issuer: &str,
        jwks: &str,
        fetched_at: UnixTime,
    ) -> Result<PeerJwks> {
        let tag = self
            .seal(&self.peer_binding(issuer, fetched_at, jwks), &[])
            .await
            .map_err(|e| e.with_op(op))?;
        let tag = URL_SAFE_NO_PAD.encode(tag);
        let mut text =
            String::with_capacity(PREFIX.len() + tag.len() + MIDDLE.len() + jwks.len() + 1);
        for part in [PREFIX, &tag, MIDDLE, jwks, SUFFIX] {
            text.push_str(part);
        }
        Ok(PeerJwks {
            issuer: issuer.to_owned(),
            jwks: text,
            fetched_at,
        })
    }

    /// Check a stored peer's tag; the peer as it was saved, or
    /// [`Corruption::Unauthenticated`].
    pub(super) fn open_peer(&self, op: &'static str, stored: &PeerJwks) -> Result<PeerJwks> {
        let refused = || StoreError::corrupt(op, Corruption::Unauthenticated("peer JWKS"));
        let (tag, jwks) = split_stored(&stored.jwks).ok_or_else(refused)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| refused())?;
        match self.keyring.open(
            &self.peer_binding(&stored.issuer, stored.fetched_at, jwks),
            &tag,
        ) {
            Ok(plain) if plain.expose_secret().is_empty() => Ok(PeerJwks {
                issuer: stored.issuer.clone(),
                jwks: jwks.to_owned(),
                fetched_at: stored.fetched_at,
            }),
            _ => Err(refused()),
        }
    }

    /// Store a trusted peer's JWKS document (public; kept verbatim as JSON
    /// text), tagged with the vault's key so that nobody without the key can
    /// plant, swap or re-date it. A document holding private key members
    /// (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`) or that is not a JSON
    /// object is refused with [`StoreError::InvalidInput`]. Replaces the
    /// issuer's earlier document.
    #[tracing::instrument(skip_all, name = "vault.save_peer_jwks")]
    pub async fn save_peer_jwks(
        &self,
        issuer: &str,
        jwks: &str,
        fetched_at: UnixTime,
    ) -> Result<()> {
        const OP: &str = "save_peer_jwks";
        validate::issuer(OP, issuer)?;
        validate::timestamp(OP, "fetched_at", fetched_at)?;
        let max = validate::MAX_JWKS_BYTES - STORED_OVERHEAD;
        if jwks.len() > max {
            return Err(StoreError::invalid(
                OP,
                format!("JWKS document is larger than {max} bytes"),
            ));
        }
        refuse_private_members(OP, jwks)?;
        let tagged = self.tag_peer(OP, issuer, jwks, fetched_at).await?;
        self.store.save_peer(&tagged).await
    }

    /// Every stored peer JWKS, each checked against its tag, sorted by
    /// issuer. Fails closed: if any stored peer is not authenticated by this
    /// vault's keys (written around the vault, swapped, re-dated or edited)
    /// the call returns [`StoreError::Corrupt`] with
    /// [`Corruption::Unauthenticated`] and no peer at all; remove or re-save
    /// the offending issuer.
    #[tracing::instrument(skip_all, name = "vault.load_peer_jwks")]
    pub async fn load_peer_jwks(&self) -> Result<Vec<PeerJwks>> {
        const OP: &str = "load_peer_jwks";
        self.store
            .load_peers()
            .await?
            .iter()
            .map(|stored| self.open_peer(OP, stored))
            .collect()
    }

    /// Remove a peer's JWKS; true if one was stored.
    #[tracing::instrument(skip_all, name = "vault.delete_peer_jwks")]
    pub async fn delete_peer_jwks(&self, issuer: &str) -> Result<bool> {
        self.store.delete_peer(issuer).await
    }

    /// Check a stored peer's tag and tag it again under the primary key.
    pub(super) async fn retag_peer(&self, op: &'static str, stored: &PeerJwks) -> Result<()> {
        let peer = self.open_peer(op, stored)?;
        let tagged = self
            .tag_peer(op, &peer.issuer, &peer.jwks, peer.fetched_at)
            .await?;
        self.store.save_peer(&tagged).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_layout_splits_only_as_written() {
        let text = format!("{PREFIX}abc{MIDDLE}{{\"keys\":[]}}{SUFFIX}");
        assert_eq!(split_stored(&text), Some(("abc", r#"{"keys":[]}"#)));
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        for bad in ["", "{}", r#"{"keys":[]}"#, &text[1..]] {
            assert_eq!(split_stored(bad), None, "{bad}");
        }
    }

    #[test]
    fn private_members_are_found_in_a_set_and_a_bare_key() {
        assert!(refuse_private_members("t", r#"{"keys":[{"kty":"EC","x":"1","y":"2"}]}"#).is_ok());
        assert!(refuse_private_members("t", r#"{"keys":[{"kty":"EC","d":"1"}]}"#).is_err());
        assert!(refuse_private_members("t", r#"{"kty":"oct","k":"1"}"#).is_err());
        assert!(refuse_private_members("t", r#"[]"#).is_err());
        assert!(refuse_private_members("t", "not json").is_err());
    }
}
