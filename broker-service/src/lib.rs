#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod broker;
pub mod config;
pub mod error;
mod flows;
mod grant;
pub mod idp;
mod refresh;
mod state;

pub use broker::{Broker, Verification};
pub use config::{BrokerConfig, SubjectMode, TokenRequest, TokenResponse, UserInfo};
pub use error::GrantError;
pub use flows::{LoginRequest, LogoutRequest};
pub use idp::{IdpClient, IdpConfig, IdpError};
