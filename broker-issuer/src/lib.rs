#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod claims;
pub mod error;
pub mod issuer;
pub mod key;
pub mod keyset;
mod verify;

pub use claims::{AccessClaims, Audience, Origin, Verified};
pub use error::{IssuerError, VerifyError};
pub use issuer::{ACCESS_TOKEN_TYP, Issuer, IssuerConfig, Jwks, KeyInfo};
pub use key::{PublicJwk, SigningAlg};
pub use keyset::{RotationPolicy, RotationReport};
