//! Typed errors. None carries a token, code, verifier, secret or password.

/// What the [`TestIdp`](crate::TestIdp) test API can refuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestIdpError {
    /// The listener could not be bound or read.
    #[error("test IdP listener: {0}")]
    Listen(#[source] std::io::Error),
    /// Key generation or loading failed.
    #[error("test IdP signing key: {0}")]
    Key(&'static str),
    /// No device authorization with this user code.
    #[error("no device authorization with this user code")]
    UnknownUserCode,
    /// The device authorization was already approved, denied or redeemed.
    #[error("the device authorization is no longer pending")]
    NotPending,
    /// No user with this `sub` or username.
    #[error("no such user")]
    UnknownUser,
}

/// What driving a real nanoidp can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NanoidpError {
    /// An HTTP exchange failed (the URL is stripped: it may carry a code).
    #[error("nanoidp HTTP exchange failed during {step}")]
    Http {
        /// Which step (`"authorize page"`, `"login form"`, ...).
        step: &'static str,
        /// The transport error, without its URL.
        #[source]
        source: reqwest::Error,
    },
    /// A URL could not be parsed or joined.
    #[error("bad URL for {0}")]
    Unparsable(&'static str),
    /// nanoidp answered something the helper does not expect.
    #[error("unexpected nanoidp answer during {step}: HTTP {status}: {detail}")]
    Unexpected {
        /// Which step.
        step: &'static str,
        /// HTTP status.
        status: u16,
        /// What was wrong (never a token or code).
        detail: String,
    },
    /// The login or approval form was shown again: wrong credentials.
    #[error("nanoidp refused the credentials during {0}")]
    Refused(&'static str),
    /// The redirect carried an OAuth error instead of a code.
    #[error("authorization error from nanoidp: {0}")]
    Authorization(String),
}

impl NanoidpError {
    pub(crate) fn http(step: &'static str) -> impl FnOnce(reqwest::Error) -> Self {
        move |source| Self::Http {
            step,
            source: source.without_url(),
        }
    }
}
