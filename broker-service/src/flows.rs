//! Login (code flow with PKCE), the browser callback, the token endpoint's
//! grants, device authorization, token exchange, logout and revocation.

use secrecy::ExposeSecret as _;
use url::Url;

use crate::broker::{Broker, idp_error};
use crate::config::{TokenRequest, TokenResponse, uri_allowed};
use crate::error::GrantError;
use crate::grant::{Grant, RefreshToken, decode};
use crate::idp::DeviceStart;
use crate::refresh::Ending;
use crate::state::{new_verifier, s256};

/// What `/login` was asked.
#[derive(Debug, Clone, Default)]
pub struct LoginRequest {
    /// Where the IdP sends the user back (must be allow-listed).
    pub redirect_uri: String,
    /// `prompt` to pass on (`none` is dropped, as py-oidc-auth does).
    pub prompt: Option<String>,
    /// Ask for `offline_access`.
    pub offline_access: bool,
    /// Extra scopes.
    pub scope: Option<String>,
    /// The client's own PKCE challenge (S256); without it the broker makes
    /// the verifier and carries it in `state` (legacy clients).
    pub code_challenge: Option<String>,
}

/// What `/logout` was given.
#[derive(Debug, Default)]
pub struct LogoutRequest {
    /// The login to end, by its family id (from a verified access token's
    /// `sid`) ...
    pub sid: Option<String>,
    /// ... or by a refresh token of it.
    pub refresh_token: Option<secrecy::SecretString>,
    /// Where to send the browser afterwards (must be allow-listed).
    pub post_logout_redirect_uri: Option<String>,
}

impl Broker {
    /// The IdP authorization URL for a login.
    pub fn login_url(&self, req: &LoginRequest) -> Result<Url, GrantError> {
        if !uri_allowed(&self.cfg.redirect_uris, &req.redirect_uri) {
            return Err(GrantError::RedirectNotAllowed);
        }
        let (challenge, verifier) = match &req.code_challenge {
            Some(c) if is_challenge(c) => (c.clone(), None),
            Some(_) => return Err(GrantError::InvalidRequest("code_challenge must be S256")),
            None if self.cfg.legacy_pkce_in_state => {
                let v = new_verifier();
                (s256(&v), Some(v))
            }
            None => return Err(GrantError::InvalidRequest("code_challenge is required")),
        };
        let state = self.state_key.state(
            self.now(),
            &req.redirect_uri,
            &challenge,
            verifier.as_ref().map(|v| v.as_str()),
        );
        let nonce = self.state_key.nonce(&challenge);
        let mut scopes: Vec<&str> = req
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if req.offline_access {
            scopes.push("offline_access");
        }
        let prompt = req
            .prompt
            .as_deref()
            .filter(|p| !p.is_empty() && *p != "none");
        Ok(self.idp.authorize_url(
            &req.redirect_uri,
            &state,
            &nonce,
            &challenge,
            &scopes,
            prompt,
        ))
    }

    /// The browser callback: the state the broker made carries the
    /// verifier; exchange the code and log in.
    pub async fn callback(&self, code: &str, state: &str) -> Result<TokenResponse, GrantError> {
        let max_age = crate::broker::secs(self.cfg.state_max_age);
        let (redirect_uri, verifier) = self.state_key.open_state(state, self.now(), max_age)?;
        self.code_login(code, &redirect_uri, &verifier).await
    }

    /// The token endpoint.
    pub async fn grant(&self, req: TokenRequest) -> Result<TokenResponse, GrantError> {
        match req {
            TokenRequest::Code {
                code,
                redirect_uri,
                code_verifier,
            } => {
                if !uri_allowed(&self.cfg.redirect_uris, &redirect_uri) {
                    return Err(GrantError::RedirectNotAllowed);
                }
                self.code_login(
                    code.expose_secret(),
                    &redirect_uri,
                    code_verifier.expose_secret(),
                )
                .await
            }
            TokenRequest::Refresh { refresh_token } => {
                self.refresh(refresh_token.expose_secret()).await
            }
            TokenRequest::Device { device_code } => {
                let tokens = self
                    .idp
                    .poll_device(device_code.expose_secret())
                    .await
                    .map_err(idp_error)?;
                let claims = self
                    .idp
                    .validate(&tokens, self.cfg.issuer.leeway, self.now())
                    .await
                    .map_err(idp_error)?;
                self.start_login(tokens, claims).await
            }
            TokenRequest::Exchange { subject_token } => {
                self.exchange(subject_token.expose_secret()).await
            }
        }
    }

    /// RFC 8693: an IdP access token for a broker access token (no
    /// refresh token; it lives as long as the broker's access tokens).
    async fn exchange(&self, subject_token: &str) -> Result<TokenResponse, GrantError> {
        let now = self.now();
        let id = self
            .idp
            .validate_access_token(subject_token, self.cfg.issuer.leeway, now)
            .await
            .map_err(|_| GrantError::InvalidGrant("the subject token does not verify"))?;
        let mut claims = self
            .issuer
            .claims(id.sub.clone(), crate::grant::random_id(16));
        claims.client_id = Some(self.cfg.idp.client_id.clone());
        claims.roles = id.roles;
        claims.preferred_username = id.preferred_username.or_else(|| Some(id.sub.clone()));
        claims.email = id.email;
        let access_token = self.issuer.mint(&claims)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: claims.exp - now,
            expires: claims.exp,
            refresh_token: None,
            refresh_expires_in: None,
            refresh_expires: None,
            scope: String::new(),
            issued_token_type: Some("urn:ietf:params:oauth:token-type:access_token"),
        })
    }

    async fn code_login(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenResponse, GrantError> {
        if verifier.len() < 43 || verifier.len() > 128 {
            return Err(GrantError::InvalidRequest(
                "code_verifier must be 43 to 128 characters",
            ));
        }
        let tokens = self
            .idp
            .exchange_code(code, redirect_uri, verifier)
            .await
            .map_err(idp_error)?;
        let claims = self
            .idp
            .validate(&tokens, self.cfg.issuer.leeway, self.now())
            .await
            .map_err(idp_error)?;
        // The nonce is bound to this PKCE transaction (A27).
        if claims.nonce.as_deref() != Some(self.state_key.nonce(&s256(verifier)).as_str()) {
            return Err(GrantError::InvalidGrant(
                "the ID token's nonce does not match",
            ));
        }
        self.start_login(tokens, claims).await
    }

    /// Start a device authorization at the IdP.
    pub async fn start_device(&self) -> Result<DeviceStart, GrantError> {
        self.idp
            .device_authorization(&["offline_access"])
            .await
            .map_err(idp_error)
    }

    /// End a login (by `sid` or a refresh token of it), revoke the IdP's
    /// refresh token where the IdP offers revocation (best effort), and
    /// return where to send the browser: the IdP's end-session URL, or the
    /// allow-listed `post_logout_redirect_uri`, or `None`.
    pub async fn logout(&self, req: LogoutRequest) -> Result<Option<Url>, GrantError> {
        let post = req.post_logout_redirect_uri.as_deref();
        if let Some(uri) = post
            && !uri_allowed(&self.cfg.post_logout_redirect_uris, uri)
        {
            return Err(GrantError::RedirectNotAllowed);
        }
        let family = match (&req.sid, &req.refresh_token) {
            (Some(sid), _) => Some(sid.clone()),
            (None, Some(rt)) => self.family_of(rt.expose_secret()).await?,
            (None, None) => None,
        };
        let mut id_token = None;
        if let Some(family) = family
            && let Some((family, taken)) = self.end_family(&family, Ending::LoggedOut).await?
        {
            id_token = family.id_token.as_ref().map(|t| t.as_str().to_owned());
            self.revoke_at_idp(&taken).await;
        }
        Ok(self
            .idp
            .end_session_url(id_token.as_deref(), post)
            .or_else(|| post.and_then(|p| Url::parse(p).ok())))
    }

    /// RFC 7009: revoke a refresh token (its whole login, and the IdP's
    /// refresh token where the IdP offers revocation). Unknown tokens are
    /// not an error.
    pub async fn revoke(&self, token: &str) -> Result<(), GrantError> {
        if let Some(family) = self.family_of(token).await?
            && let Some((_, taken)) = self.end_family(&family, Ending::LoggedOut).await?
        {
            self.revoke_at_idp(&taken).await;
        }
        Ok(())
    }

    /// The family of a refresh token whose secret matches.
    async fn family_of(&self, presented: &str) -> Result<Option<String>, GrantError> {
        let Ok(token) = RefreshToken::parse(presented) else {
            return Ok(None);
        };
        let Some((entry, _)) = self.vault.get_entry(&token.jti).await? else {
            return Ok(None);
        };
        let grant: Grant = decode(entry.payload.expose_secret())?;
        Ok(token.matches(&grant.verifier).then_some(grant.family))
    }
}

/// 43 base64url characters: an S256 challenge.
fn is_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
