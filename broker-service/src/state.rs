//! The login `state` and `nonce`, with no server-side storage
//! (BROKER.md §5.6).
//!
//! `state` = `<tag>|<redirect_uri>` or, for clients that send no
//! `code_challenge` (py-oidc-auth-client reads the verifier back from
//! `state`), `<tag>|<redirect_uri>|<code_verifier>`. The tag is
//! base64url(HMAC-SHA256(state key, issued_at ‖ redirect_uri ‖
//! code_challenge)[..16] ‖ issued_at): the broker's callback checks it and
//! the age. The nonce is bound to the PKCE transaction: base64url of
//! HMAC(state key, "nonce" ‖ code_challenge), first 22 characters, so at
//! `/token` the broker recomputes it from the client's `code_verifier` and
//! checks the ID token's `nonce`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker_core::{TokenVault, UnixTime};
use hmac::{Hmac, KeyInit, Mac as _};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::error::GrantError;
use crate::grant::random_id;

/// The vault secret holding the state key.
const STATE_KEY_SECRET: &str = "broker.state_key";

/// Bytes of MAC kept in the tag.
const TAG_MAC: usize = 16;

/// The key that signs login states and derives nonces.
#[derive(Clone)]
pub(crate) struct StateKey(std::sync::Arc<Zeroizing<Vec<u8>>>);

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateKey([REDACTED])")
    }
}

impl StateKey {
    /// The broker's state key (one for every worker, created once).
    pub(crate) async fn load_or_create(vault: &TokenVault) -> Result<Self, GrantError> {
        let secret = vault
            .load_or_create_secret(STATE_KEY_SECRET, || {
                Zeroizing::new(random_id(32).into_bytes())
            })
            .await?;
        Ok(Self(std::sync::Arc::new(Zeroizing::new(
            secret.expose().to_vec(),
        ))))
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key length");
        for p in parts {
            mac.update(&(p.len() as u32).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// The nonce bound to `code_challenge`.
    pub(crate) fn nonce(&self, code_challenge: &str) -> String {
        let mac = self.mac(&[b"nonce", code_challenge.as_bytes()]);
        let mut nonce = URL_SAFE_NO_PAD.encode(mac);
        nonce.truncate(22);
        nonce
    }

    /// A signed state for a login to `redirect_uri` with `code_challenge`,
    /// carrying `verifier` if the broker made it.
    pub(crate) fn state(
        &self,
        now: UnixTime,
        redirect_uri: &str,
        code_challenge: &str,
        verifier: Option<&str>,
    ) -> String {
        let issued = now.to_be_bytes();
        let mut tag = self.mac(&[&issued, redirect_uri.as_bytes(), code_challenge.as_bytes()]);
        tag.truncate(TAG_MAC);
        tag.extend_from_slice(&issued);
        let mut state = URL_SAFE_NO_PAD.encode(&tag);
        state.push('|');
        state.push_str(redirect_uri);
        if let Some(v) = verifier {
            state.push('|');
            state.push_str(v);
        }
        state
    }

    /// Check a state the broker made (browser callback): its tag, its age,
    /// and that it carries the verifier. Returns `(redirect_uri, verifier)`.
    pub(crate) fn open_state(
        &self,
        state: &str,
        now: UnixTime,
        max_age: i64,
    ) -> Result<(String, Zeroizing<String>), GrantError> {
        let bad = GrantError::InvalidRequest("invalid state");
        let (tag, rest) = state.split_once('|').ok_or(bad)?;
        let (redirect_uri, verifier) = rest
            .rsplit_once('|')
            .ok_or(GrantError::InvalidRequest("invalid state"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| GrantError::InvalidRequest("invalid state"))?;
        if tag.len() != TAG_MAC + 8 {
            return Err(GrantError::InvalidRequest("invalid state"));
        }
        let issued = UnixTime::from_be_bytes(tag[TAG_MAC..].try_into().expect("8 bytes"));
        let challenge = s256(verifier);
        let expected = self.mac(&[
            &issued.to_be_bytes(),
            redirect_uri.as_bytes(),
            challenge.as_bytes(),
        ]);
        use subtle::ConstantTimeEq as _;
        if !bool::from(expected[..TAG_MAC].ct_eq(&tag[..TAG_MAC])) {
            return Err(GrantError::InvalidRequest("invalid state"));
        }
        if now - issued > max_age || issued > now + 60 {
            return Err(GrantError::InvalidRequest(
                "the login took too long; start again",
            ));
        }
        Ok((redirect_uri.to_owned(), Zeroizing::new(verifier.to_owned())))
    }
}

/// A fresh PKCE verifier (43 characters, RFC 7636 §4.1).
pub(crate) fn new_verifier() -> Zeroizing<String> {
    Zeroizing::new(random_id(32))
}

/// The S256 challenge of `verifier`.
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StateKey {
        StateKey(std::sync::Arc::new(Zeroizing::new(vec![7; 32])))
    }

    #[test]
    fn states_open_only_as_made_and_only_while_fresh() {
        let k = key();
        let v = new_verifier();
        let state = k.state(1000, "http://localhost:5000/callback", &s256(&v), Some(&v));
        let (uri, got) = k.open_state(&state, 1100, 600).unwrap();
        assert_eq!(uri, "http://localhost:5000/callback");
        assert_eq!(got.as_str(), v.as_str());
        // The verifier is the last `|` part, as py-oidc-auth-client reads it.
        assert_eq!(state.rsplit('|').next(), Some(v.as_str()));
        assert!(k.open_state(&state, 1000 + 601, 600).is_err(), "too old");
        let other = new_verifier();
        let swapped = format!("{}|{}", state.rsplit_once('|').unwrap().0, other.as_str());
        assert!(
            k.open_state(&swapped, 1100, 600).is_err(),
            "verifier swapped"
        );
        let moved = state.replace("5000", "5001");
        assert!(k.open_state(&moved, 1100, 600).is_err(), "redirect changed");
        assert!(k.open_state("garbage", 1100, 600).is_err());
    }

    #[test]
    fn nonces_follow_the_challenge() {
        let k = key();
        assert_eq!(k.nonce("abc"), k.nonce("abc"));
        assert_ne!(k.nonce("abc"), k.nonce("abd"));
        assert_eq!(k.nonce("abc").len(), 22);
    }
}
