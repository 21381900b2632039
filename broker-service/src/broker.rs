//! [`Broker`]: the flows, tied together. Logins become a family entry and
//! a grant entry; refreshes rotate grants (see `refresh`); every token
//! this broker hands out is minted by its [`Issuer`].

use std::sync::Arc;

use broker_core::vault::NewEntry;
use broker_core::{Clock, TokenVault, UnixTime};
use broker_issuer::{Federation, Issuer, Origin, Verified, Verifier, VerifyError};
use secrecy::ExposeSecret as _;

use crate::config::{BrokerConfig, SubjectMode, TokenResponse, UserInfo};
use crate::error::GrantError;
use crate::grant::{
    Family, FamilyState, Grant, RefreshToken, UserClaims, decode, encode, family_key, random_id,
};
use crate::idp::{IdClaims, IdpClient, IdpError, TokenSet};
use crate::state::StateKey;

/// Whether a protected route also checks that the token's login is still
/// active (one store read per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Signature, issuer, audience, times: no I/O. A revoked login's access
    /// tokens stay valid until they expire (15 minutes by default).
    Stateless,
    /// Also read the login's family entry: a revoked login's tokens are
    /// refused at once.
    Stateful,
}

/// An OIDC token broker.
#[derive(Clone)]
pub struct Broker {
    pub(crate) vault: Arc<TokenVault>,
    pub(crate) issuer: Issuer,
    pub(crate) idp: IdpClient,
    pub(crate) cfg: Arc<BrokerConfig>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) state_key: StateKey,
    /// Our issuer and the trusted peers, when a federation is set.
    pub(crate) verifier: Option<Verifier>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("issuer", &self.cfg.issuer.issuer)
            .field("idp", &self.idp)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Open the broker: its issuer keys (created on first use), its state
    /// key, and the IdP's discovery document. `http` calls the IdP; build
    /// it without redirects.
    pub async fn open(
        vault: Arc<TokenVault>,
        cfg: BrokerConfig,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, GrantError> {
        let issuer =
            Issuer::open(Arc::clone(&vault), cfg.issuer.clone(), Arc::clone(&clock)).await?;
        let state_key = StateKey::load_or_create(&vault).await?;
        let idp = IdpClient::discover(cfg.idp.clone(), http)
            .await
            .map_err(idp_error)?;
        if cfg.legacy_pkce_in_state {
            tracing::warn!(
                "legacy PKCE in state is on: clients that send no code_challenge get the PKCE \
                 verifier inside state (py-oidc-auth-client compatibility)"
            );
        }
        Ok(Self {
            vault,
            issuer,
            idp,
            cfg: Arc::new(cfg),
            clock,
            state_key,
            verifier: None,
        })
    }

    /// Also accept the access tokens of `federation`'s peers on protected
    /// routes (`verify`). A peer token is verified statelessly and carries
    /// no `sid` here (its login lives at the peer), so `/logout`, `/revoke`
    /// and `/userinfo` never touch a local login with it, and a
    /// [`Verification::Stateful`] route refuses it. A peer with this
    /// broker's own issuer is refused.
    pub fn with_federation(mut self, federation: Federation) -> Result<Self, GrantError> {
        self.verifier = Some(Verifier::new(self.issuer.clone(), Some(federation))?);
        Ok(self)
    }

    /// The federation, if one is set.
    pub fn federation(&self) -> Option<&Federation> {
        self.verifier.as_ref().and_then(Verifier::federation)
    }

    /// The issuer (JWKS, key maintenance).
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.cfg
    }

    pub(crate) fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Verify a bearer token of this broker, or of a trusted peer (see
    /// [`Broker::with_federation`]).
    pub async fn verify(&self, bearer: &str, mode: Verification) -> Result<Verified, VerifyError> {
        let verified = match &self.verifier {
            Some(verifier) => verifier.verify(bearer).await?,
            None => self.issuer.verify_own(bearer)?,
        };
        if let Origin::Peer { .. } = verified.origin {
            if mode == Verification::Stateful {
                // No local login to check: only our own tokens qualify.
                return Err(VerifyError::UntrustedIssuer);
            }
            let mut verified = verified;
            verified.claims.sid = None;
            return Ok(verified);
        }
        if mode == Verification::Stateful {
            let active = match verified.claims.sid.as_deref() {
                Some(sid) => matches!(
                    self.family(sid).await,
                    Ok(Some((
                        _,
                        Family {
                            state: FamilyState::Active { .. },
                            ..
                        }
                    )))
                ),
                None => false,
            };
            if !active {
                return Err(VerifyError::Expired);
            }
        }
        Ok(verified)
    }

    /// The user behind a verified token, from the login's sealed claims:
    /// no call to the identity provider.
    pub async fn userinfo(&self, verified: &Verified) -> Result<UserInfo, GrantError> {
        let user = match verified.claims.sid.as_deref() {
            Some(sid) => self.family(sid).await?.map(|(_, f)| f.user),
            None => None,
        }
        .unwrap_or_default();
        let username = user
            .preferred_username
            .clone()
            .or_else(|| verified.claims.preferred_username.clone())
            .unwrap_or_else(|| verified.claims.sub.clone());
        Ok(UserInfo {
            pw_name: username.clone(),
            username,
            first_name: user.given_name.unwrap_or_default(),
            last_name: user.family_name.unwrap_or_default(),
            email: user
                .email
                .or_else(|| verified.claims.email.clone())
                .unwrap_or_default(),
        })
    }

    /// The family entry of `sid` with its stamp.
    pub(crate) async fn family(
        &self,
        sid: &str,
    ) -> Result<Option<(broker_core::vault::Entry, Family)>, GrantError> {
        match self.vault.get_entry(&family_key(sid)).await? {
            Some((entry, _)) => {
                let family: Family = decode(entry.payload.expose_secret())?;
                Ok(Some((entry, family)))
            }
            None => Ok(None),
        }
    }

    /// A new login from the IdP's answer: a family entry, a grant entry,
    /// and the broker's tokens.
    pub(crate) async fn start_login(
        &self,
        tokens: TokenSet,
        id: IdClaims,
    ) -> Result<TokenResponse, GrantError> {
        let now = self.now();
        let idp_rt = tokens
            .refresh_token
            .as_ref()
            .ok_or(GrantError::IdpMalformed(
                "the identity provider sent no refresh token",
            ))?;
        let auth_time = id.auth_time.filter(|&t| t <= now).unwrap_or(now);
        let family_expires = auth_time + secs(self.cfg.family_max_ttl);
        let grant_expires = self.grant_expiry(&tokens, now, family_expires);
        let family_id = random_id(16);
        let token = RefreshToken::generate();
        let user = UserClaims {
            preferred_username: id.preferred_username.clone(),
            email: id.email.clone(),
            given_name: id.given_name.clone(),
            family_name: id.family_name.clone(),
            roles: id.roles.clone(),
            scope: tokens.scope.clone(),
        };
        let family = Family::new(
            &token.jti,
            user,
            tokens
                .id_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
        );
        self.vault
            .create_entry(&NewEntry {
                jti: &family_key(&family_id),
                sub: &id.sub,
                expires_at: family_expires,
                auth_time,
                payload: &encode(&family),
            })
            .await?;
        let grant = Grant::new(&family_id, token.verifier(), idp_rt.expose_secret());
        self.vault
            .create_entry(&NewEntry {
                jti: &token.jti,
                sub: &id.sub,
                expires_at: grant_expires,
                auth_time,
                payload: &encode(&grant),
            })
            .await?;
        self.respond(
            &id.sub,
            &token,
            &family_id,
            auth_time,
            &family.user,
            grant_expires,
        )
    }

    /// When a grant made now expires: the IdP refresh token's lifetime, or
    /// the idle TTL when the IdP gives none, never past the family's end.
    pub(crate) fn grant_expiry(
        &self,
        tokens: &TokenSet,
        now: UnixTime,
        family_expires: UnixTime,
    ) -> UnixTime {
        let idp = tokens
            .refresh_expires_in
            .filter(|&s| s > 0)
            .map_or(now + secs(self.cfg.grant_idle_ttl), |s| {
                now + i64::try_from(s).unwrap_or(i64::MAX / 4)
            });
        idp.min(family_expires)
    }

    /// Mint the access token for grant `token` of family `family_id` and
    /// build the response.
    pub(crate) fn respond(
        &self,
        sub: &str,
        token: &RefreshToken,
        family_id: &str,
        auth_time: UnixTime,
        user: &UserClaims,
        refresh_expires: UnixTime,
    ) -> Result<TokenResponse, GrantError> {
        let subject = match self.cfg.subject {
            SubjectMode::IdpSubject => sub.to_owned(),
            SubjectMode::PreferredUsername => user
                .preferred_username
                .clone()
                .unwrap_or_else(|| sub.to_owned()),
        };
        let mut claims = self.issuer.claims(subject, token.jti.clone());
        claims.client_id = Some(self.cfg.idp.client_id.clone());
        claims.sid = Some(family_id.to_owned());
        claims.auth_time = Some(auth_time);
        claims.scope = user.scope.clone();
        claims.roles = user.roles.clone();
        claims.preferred_username = user
            .preferred_username
            .clone()
            .or_else(|| Some(sub.to_owned()));
        claims.email = user.email.clone();
        let access_token = self.issuer.mint(&claims)?;
        let now = self.now();
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: claims.exp - now,
            expires: claims.exp,
            refresh_token: Some(token.to_wire().expose_secret().to_owned()),
            refresh_expires_in: Some(refresh_expires - now),
            refresh_expires: Some(refresh_expires),
            scope: user.scope.clone().unwrap_or_default(),
            issued_token_type: None,
        })
    }
}

/// Map an IdP failure onto the grant error the client sees.
pub(crate) fn idp_error(e: IdpError) -> GrantError {
    match e {
        IdpError::Unavailable | IdpError::KeysCoolingDown => GrantError::IdpUnavailable,
        IdpError::InvalidGrant => {
            GrantError::InvalidGrant("the identity provider refused the grant")
        }
        IdpError::Pending => GrantError::AuthorizationPending,
        IdpError::SlowDown => GrantError::SlowDown,
        IdpError::Expired => GrantError::ExpiredToken,
        IdpError::Denied => GrantError::AccessDenied,
        IdpError::Rejected(_) => {
            GrantError::InvalidGrant("the identity provider refused the request")
        }
        IdpError::Malformed(why) => GrantError::IdpMalformed(why),
    }
}

/// Whole seconds of `d`.
pub(crate) fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}
