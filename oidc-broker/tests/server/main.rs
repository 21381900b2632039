//! The server: its settings and health route in process, and the binary
//! against real clients and peers (py-oidc-auth-client with nanoidp, A28;
//! federation with a py-oidc-auth broker).

mod common;
mod config;
mod federation;
mod pyclient;
