#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod claims;
pub mod error;
#[cfg(feature = "federation")]
pub mod federation;
pub mod issuer;
pub mod key;
pub mod keyset;
#[cfg(feature = "federation")]
mod verifier;
mod verify;

pub use claims::{AccessClaims, Audience, Origin, Verified};
pub use error::{IssuerError, VerifyError};
#[cfg(feature = "federation")]
pub use federation::{Federation, FederationOptions, PeerClaimPolicy, PeerConfig, PeerHttp};
pub use issuer::{ACCESS_TOKEN_TYP, Issuer, IssuerConfig, Jwks, KeyInfo};
pub use key::{PublicJwk, SigningAlg};
pub use keyset::{RotationPolicy, RotationReport};
#[cfg(feature = "federation")]
pub use verifier::Verifier;
