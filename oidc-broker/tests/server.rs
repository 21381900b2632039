//! The server's settings (file, then environment) and its health route.

use std::io::Write as _;

use oidc_broker::{Config, ServerError};

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn settings_come_from_the_file_then_the_environment() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        r#"
listen = "0.0.0.0:9000"
public_url = "https://broker.example/"
store_url = "sled:///var/lib/oidc-broker"
post_logout_redirect_uris = ["https://app.example/bye"]
[idp]
issuer = "https://idp.example/realms/r"
client_id = "broker"
"#
    )
    .unwrap();
    let cfg = Config::load(Some(file.path()), env(&[])).unwrap();
    assert_eq!(cfg.listen.port(), 9000);
    assert_eq!(cfg.issuer(), "https://broker.example/api");
    assert_eq!(cfg.store_url, "sled:///var/lib/oidc-broker");
    assert_eq!(cfg.idp.as_ref().unwrap().client_id, "broker");

    let over = Config::load(
        Some(file.path()),
        env(&[
            ("OIDC_BROKER_STORE_URL", "postgres://db/broker"),
            ("OIDC_BROKER_PREFIX", ""),
            ("OIDC_BROKER_IDP_CLIENT_ID", "other"),
        ]),
    )
    .unwrap();
    assert_eq!(over.store_url, "postgres://db/broker");
    assert_eq!(over.issuer(), "https://broker.example");
    assert_eq!(over.idp.unwrap().client_id, "other");

    // Defaults: sled, /api, the listen address as the public URL.
    let d = Config::load(None, env(&[])).unwrap();
    assert_eq!(d.store_url, "sled://");
    assert_eq!(d.issuer(), "http://127.0.0.1:8080/api");
}

#[test]
fn bad_settings_are_refused_with_a_message() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "listen = \"x\"\nclient_secret = \"s3cret\"").unwrap();
    let e = Config::load(Some(file.path()), env(&[])).unwrap_err();
    assert!(matches!(e, ServerError::Config(_)), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    for vars in [
        &[("OIDC_BROKER_LISTEN", "nope")][..],
        &[("OIDC_BROKER_IDP_ISSUER", "https://idp.example")][..],
        &[("OIDC_BROKER_PREFIX", "api")][..],
    ] {
        assert!(Config::load(None, env(vars)).is_err(), "{vars:?}");
    }
    let e = Config::load(Some(std::path::Path::new("/nonexistent/x.toml")), env(&[]));
    assert!(e.is_err());
    assert!(oidc_broker::key_from_env(env(&[])).is_err());
    assert!(oidc_broker::key_from_env(env(&[("OIDC_BROKER_KEY", "not base64!")])).is_err());
}
