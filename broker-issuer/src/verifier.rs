//! [`Verifier`]: one entry point for every access token the broker
//! accepts, ours or a trusted peer's.

use crate::claims::Verified;
use crate::error::{IssuerError, VerifyError};
use crate::federation::Federation;
use crate::issuer::Issuer;
use crate::verify::claimed_issuer;

/// Verifies our own tokens with the [`Issuer`] (no I/O) and peers' tokens
/// with the [`Federation`], chosen by the token's unverified `iss` (which
/// each side checks again after the signature). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuer: Issuer,
    federation: Option<Federation>,
}

impl Verifier {
    /// Our tokens, and those of `federation`'s peers if given. A peer with
    /// our own issuer is refused: our keys alone speak for it.
    pub fn new(issuer: Issuer, federation: Option<Federation>) -> Result<Self, IssuerError> {
        if let Some(f) = &federation
            && f.trusts(&issuer.config().issuer)
        {
            return Err(IssuerError::Config(
                "a federation peer has this broker's own issuer".into(),
            ));
        }
        Ok(Self { issuer, federation })
    }

    /// The issuer.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The federation, if any.
    pub fn federation(&self) -> Option<&Federation> {
        self.federation.as_ref()
    }

    /// Verify an access token: ours with [`Issuer::verify_own`], a
    /// configured peer's with [`Federation::verify`], any other
    /// [`VerifyError::UntrustedIssuer`] (with no I/O).
    pub async fn verify(&self, token: &str) -> Result<Verified, VerifyError> {
        let iss = claimed_issuer(token)?;
        if iss == self.issuer.config().issuer {
            return self.issuer.verify_own(token);
        }
        match &self.federation {
            Some(federation) => federation.verify_claimed(token, &iss).await,
            None => Err(VerifyError::UntrustedIssuer),
        }
    }
}
