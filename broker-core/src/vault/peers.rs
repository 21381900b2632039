//! Peer JWKS through the vault.

use crate::error::Result;
use crate::record::{PeerJwks, UnixTime};

use super::TokenVault;

impl TokenVault {
    /// Store a trusted peer's JWKS (public, kept as given: JSON text).
    #[tracing::instrument(skip_all, name = "vault.save_peer_jwks")]
    pub async fn save_peer_jwks(
        &self,
        issuer: &str,
        jwks: &str,
        fetched_at: UnixTime,
    ) -> Result<()> {
        self.store
            .save_peer(&PeerJwks {
                issuer: issuer.to_owned(),
                jwks: jwks.to_owned(),
                fetched_at,
            })
            .await
    }

    /// Every stored peer JWKS.
    #[tracing::instrument(skip_all, name = "vault.load_peer_jwks")]
    pub async fn load_peer_jwks(&self) -> Result<Vec<PeerJwks>> {
        self.store.load_peers().await
    }
}
