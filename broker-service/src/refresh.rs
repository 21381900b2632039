//! Refresh rotation with replay detection (BROKER.md §5.3).
//!
//! A refresh claims its grant by compare-and-set (`Live` → `Claimed { next }`),
//! so exactly one concurrent refresher reaches the identity provider. It
//! then creates the child grant `next` and moves the family's tip to it by
//! compare-and-set. A refresh token presented after its grant was claimed
//! is a replay: in that same request the family becomes `Compromised` and
//! its tip (and the tip's child, if one is being made) is taken.
//!
//! Why no child survives a replay: the winner's tip move and the
//! replayer's family write are two compare-and-sets on one record, so one
//! is first. Winner first: the tip is the child, which the replayer takes.
//! Replayer first: the winner's tip move fails, and the winner takes its
//! own child. An IdP outage rolls the claim back, so the same refresh
//! token works again once the IdP is back.

use broker_core::vault::{Entry, NewEntry, Stamp};
use secrecy::ExposeSecret as _;

use crate::broker::{Broker, idp_error, secs};
use crate::config::TokenResponse;
use crate::error::GrantError;
use crate::grant::{
    Family, FamilyState, Grant, GrantState, RefreshToken, decode, encode, family_key,
};
use crate::idp::IdpError;

/// Attempts to claim a grant whose stamp changed for another reason (a
/// re-encryption) before giving up.
const CLAIM_ATTEMPTS: usize = 4;

/// How a login ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A replay: every grant is revoked.
    Compromised,
    /// Logout, or the IdP ended the session.
    LoggedOut,
}

impl Broker {
    /// Rotate `presented` (a broker refresh token) into new tokens.
    #[tracing::instrument(skip_all, name = "broker.refresh")]
    pub(crate) async fn refresh(&self, presented: &str) -> Result<TokenResponse, GrantError> {
        let token = RefreshToken::parse(presented)?;
        for _ in 0..CLAIM_ATTEMPTS {
            let Some((entry, stamp)) = self.vault.get_entry(&token.jti).await? else {
                return Err(GrantError::InvalidGrant("unknown or expired refresh token"));
            };
            let grant: Grant = decode(entry.payload.expose_secret())?;
            // Someone who knows only a jti (it is in every access token)
            // must not be able to revoke anything.
            if !token.matches(&grant.verifier) {
                return Err(GrantError::InvalidGrant("invalid refresh token"));
            }
            if let GrantState::Claimed { at, .. } = grant.state {
                return self.replayed(&grant, at).await;
            }
            let next = RefreshToken::generate();
            let claimed = Grant {
                state: GrantState::Claimed {
                    next: next.jti.clone(),
                    at: self.now(),
                },
                ..grant.clone()
            };
            match self
                .vault
                .swap_entry(&entry, &stamp, &encode(&claimed))
                .await?
            {
                Some(claimed_stamp) => {
                    return self.rotate(&entry, grant, claimed_stamp, next).await;
                }
                // Lost the claim: decide again on what is there now.
                None => continue,
            }
        }
        Err(GrantError::InvalidGrant("the refresh token kept changing"))
    }

    /// The refresh token of a claimed grant came again.
    async fn replayed(&self, grant: &Grant, claimed_at: i64) -> Result<TokenResponse, GrantError> {
        if self.now() < claimed_at + secs(self.cfg.replay_grace) {
            return Err(GrantError::InvalidGrant(
                "a refresh with this token is in progress",
            ));
        }
        tracing::warn!("refresh token reuse detected; revoking the login");
        if let Some((_, taken)) = self.end_family(&grant.family, Ending::Compromised).await? {
            self.revoke_at_idp(&taken).await;
        }
        Err(GrantError::ReuseDetected)
    }

    /// Steps 6–11 for the refresher that claimed `entry`.
    async fn rotate(
        &self,
        entry: &Entry,
        grant: Grant,
        claimed_stamp: Stamp,
        next: RefreshToken,
    ) -> Result<TokenResponse, GrantError> {
        let tokens = match self.idp.refresh(&grant.idp_refresh_token).await {
            Ok(tokens) => tokens,
            Err(IdpError::InvalidGrant) => {
                // The IdP session is over: so is the login.
                self.end_family(&grant.family, Ending::LoggedOut).await?;
                return Err(GrantError::InvalidGrant(
                    "the identity provider ended the session",
                ));
            }
            Err(e) => {
                // Nothing was spent as far as we know: undo the claim.
                self.vault
                    .swap_entry(entry, &claimed_stamp, &encode(&grant))
                    .await?;
                return Err(idp_error(e));
            }
        };
        // The IdP's new refresh token, or the old one if it did not rotate.
        let idp_rt = tokens.refresh_token.as_ref().map_or_else(
            || grant.idp_refresh_token.as_str().to_owned(),
            |t| t.expose_secret().to_owned(),
        );
        if tokens.id_token.is_some() {
            let claims = self
                .idp
                .validate(&tokens, self.cfg.issuer.leeway, self.now())
                .await
                .map_err(idp_error)?;
            // OIDC Core §12.2: the same user.
            if claims.sub != entry.sub {
                self.end_family(&grant.family, Ending::Compromised).await?;
                return Err(GrantError::InvalidGrant(
                    "the identity provider answered for another user",
                ));
            }
        }
        let fkey = family_key(&grant.family);
        let Some((family_entry, family_stamp)) = self.vault.get_entry(&fkey).await? else {
            return Err(GrantError::InvalidGrant("the login has ended"));
        };
        let family: Family = decode(family_entry.payload.expose_secret())?;
        if family.state
            != (FamilyState::Active {
                tip: entry.jti.clone(),
            })
        {
            return Err(GrantError::InvalidGrant("the login has ended"));
        }
        let now = self.now();
        let expires_at = self.grant_expiry(&tokens, now, family_entry.expires_at);
        let child = Grant::new(&grant.family, next.verifier(), &idp_rt);
        self.vault
            .create_entry(&NewEntry {
                jti: &next.jti,
                sub: &entry.sub,
                expires_at,
                auth_time: entry.auth_time,
                payload: &encode(&child),
            })
            .await?;
        let moved = Family {
            state: FamilyState::Active {
                tip: next.jti.clone(),
            },
            ..family.clone()
        };
        let swapped = self
            .vault
            .swap_entry(&family_entry, &family_stamp, &encode(&moved))
            .await?;
        if swapped.is_none() {
            // A replay (or logout) got there first: the child must not live,
            // nor the IdP refresh token it would have held.
            self.vault.take_entry(&next.jti).await?;
            self.revoke_at_idp(&[child]).await;
            return Err(GrantError::InvalidGrant("the login has ended"));
        }
        let mut user = family.user;
        if tokens.scope.is_some() {
            user.scope.clone_from(&tokens.scope);
        }
        self.respond(
            &entry.sub,
            &next,
            &grant.family,
            entry.auth_time,
            &user,
            expires_at,
        )
    }

    /// End family `family` (idempotent): its state becomes `ending`, its
    /// tip grant is taken, and so is the tip's child if a refresh is
    /// making one. Returns the family as it was, if it was active, and the
    /// grants taken (for [`revoke_at_idp`](Self::revoke_at_idp)).
    pub(crate) async fn end_family(
        &self,
        family: &str,
        ending: Ending,
    ) -> Result<Option<(Family, Vec<Grant>)>, GrantError> {
        let key = family_key(family);
        loop {
            let Some((entry, stamp)) = self.vault.get_entry(&key).await? else {
                return Ok(None);
            };
            let current: Family = decode(entry.payload.expose_secret())?;
            let FamilyState::Active { tip } = &current.state else {
                return Ok(None);
            };
            let at = self.now();
            let ended = Family {
                state: match ending {
                    Ending::Compromised => FamilyState::Compromised { at },
                    Ending::LoggedOut => FamilyState::LoggedOut { at },
                },
                ..current.clone()
            };
            if self
                .vault
                .swap_entry(&entry, &stamp, &encode(&ended))
                .await?
                .is_none()
            {
                continue;
            }
            let mut taken = Vec::new();
            if let Some(tip_entry) = self.vault.take_entry(tip).await?
                && let Ok(tip_grant) = decode::<Grant>(tip_entry.payload.expose_secret())
            {
                if let GrantState::Claimed { next, .. } = &tip_grant.state
                    && let Some(child) = self.vault.take_entry(next).await?
                    && let Ok(child) = decode::<Grant>(child.payload.expose_secret())
                {
                    taken.push(child);
                }
                taken.push(tip_grant);
            }
            return Ok(Some((current, taken)));
        }
    }

    /// Revoke the IdP refresh tokens of `grants` where the IdP offers
    /// revocation (RFC 7009), best effort: the login is already ended in
    /// the store, so a failure is only logged.
    pub(crate) async fn revoke_at_idp(&self, grants: &[Grant]) {
        for grant in grants {
            if let Err(e) = self.idp.revoke(&grant.idp_refresh_token).await {
                tracing::warn!(error = %e, "revoking the IdP refresh token failed");
            }
        }
    }
}
