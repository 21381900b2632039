//! The settings (file, then environment) and the health route, in process.

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
            ("OIDC_BROKER_STORE_URL", "postgres://u:pw-x@db/broker"),
            ("OIDC_BROKER_PREFIX", ""),
            ("OIDC_BROKER_IDP_CLIENT_ID", "other"),
        ]),
    )
    .unwrap();
    assert_eq!(over.store_url, "postgres://u:pw-x@db/broker");
    let shown = format!("{over:?}");
    assert!(
        !shown.contains("pw-x") && shown.contains("postgres:[REDACTED]"),
        "{shown}"
    );
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

#[tokio::test]
async fn the_app_serves_health_and_the_routes_on_sled_by_default() {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use broker_core::{EncryptionKey, KeySource};
    use broker_testkit::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, TestIdp, TestIdpConfig};
    use tower::ServiceExt as _;

    let idp = TestIdp::start(TestIdpConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sled://{}", dir.path().join("db").display());
    let vars = [
        ("OIDC_BROKER_IDP_ISSUER", idp.issuer()),
        ("OIDC_BROKER_IDP_CLIENT_ID", DEFAULT_CLIENT_ID),
        ("OIDC_BROKER_STORE_URL", store.as_str()),
    ];
    let cfg = Config::load(None, env(&vars)).unwrap();
    let key = KeySource::Raw(EncryptionKey::generate());
    let vault = oidc_broker::open_vault(&cfg, key).await.unwrap();
    let secret = Some(DEFAULT_CLIENT_SECRET.into());
    let broker = oidc_broker::open_broker(&cfg, vault, secret).await.unwrap();
    let app = oidc_broker::app(&cfg, Arc::new(broker));
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();

    let health = app.clone().oneshot(get("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let body = axum::body::to_bytes(health.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"{\"status\":\"ok\"}");
    let jwks = app
        .clone()
        .oneshot(get("/api/auth/v2/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    let token = app
        .oneshot(
            Request::post("/api/auth/v2/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("refresh-token=nope"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(token.status(), 400);
}
