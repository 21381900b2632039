//! Reading IdP answers: bodies capped while they stream, OAuth error bodies
//! mapped onto [`IdpError`] by their `error` code only.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::IdpError;

/// The body of `response`, at most `cap` bytes, in a zeroizing buffer
/// (answers hold tokens).
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Zeroizing<Vec<u8>>, IdpError> {
    let mut body = Zeroizing::new(Vec::with_capacity(1024));
    while let Some(chunk) = response.chunk().await.map_err(|_| IdpError::Unavailable)? {
        if body.len() + chunk.len() > cap {
            return Err(IdpError::Malformed("answer larger than allowed"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An OAuth error body.
#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

/// Map a non-2xx answer onto an [`IdpError`].
pub(crate) fn error_of(status: reqwest::StatusCode, body: &[u8]) -> IdpError {
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return IdpError::Unavailable;
    }
    match serde_json::from_slice::<OAuthError>(body).map(|e| e.error) {
        Ok(code) => match code.as_str() {
            "invalid_grant" => IdpError::InvalidGrant,
            "authorization_pending" => IdpError::Pending,
            "slow_down" => IdpError::SlowDown,
            "expired_token" => IdpError::Expired,
            "access_denied" => IdpError::Denied,
            "temporarily_unavailable" => IdpError::Unavailable,
            other if other.len() <= 64 && other.bytes().all(|b| b.is_ascii_graphic()) => {
                IdpError::Rejected(other.to_owned())
            }
            _ => IdpError::Malformed("an error code that is not one"),
        },
        Err(_) => IdpError::Malformed("an error answer without an OAuth error code"),
    }
}

/// A 2xx JSON answer parsed as `T`; anything else mapped onto an error.
pub(crate) async fn read_json<T: DeserializeOwned>(
    response: reqwest::Response,
    cap: usize,
) -> Result<T, IdpError> {
    let status = response.status();
    let body = read_capped(response, cap).await?;
    if !status.is_success() {
        return Err(error_of(status, &body));
    }
    serde_json::from_slice(&body).map_err(|_| IdpError::Malformed("not the JSON expected"))
}
