//! A10a: `Issuer::mint` and `Issuer::verify_own` beside raw
//! `jsonwebtoken::encode` / `decode` on the same key, the same claims, the
//! same header and the same `Validation`, for RS256, ES256 and EdDSA.
//!
//! Ids: `mint/<alg>/broker`, `mint/<alg>/raw`, `verify/<alg>/broker`,
//! `verify/<alg>/raw`. Targets: broker ≥ 0.95 × raw for mint, ≥ 0.90 × raw
//! for verify (rates). `scripts/bench-issuer.sh` runs this and writes
//! `docs/bench/issuer-criterion.json`.
//!
//! The raw side gets the signing key from the sealed key set through the
//! vault (as only a holder of the vault key can), the verifying key from
//! the published JWKS, and builds its header and `Validation` once, outside
//! the timed loop: the cheapest raw use of jsonwebtoken.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker_core::{EncryptionKey, KeyConfig, MemoryStore, SystemClock, TokenVault};
use broker_issuer::keyset::KEYSET_SECRET;
use broker_issuer::{AccessClaims, Issuer, IssuerConfig, SigningAlg};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};

struct Case {
    issuer: Issuer,
    claims: AccessClaims,
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    token: String,
}

fn case(alg: SigningAlg) -> Case {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let key = EncryptionKey::from_bytes(&[7; 32]).unwrap();
    let vault = Arc::new(
        rt.block_on(TokenVault::open(
            Arc::new(MemoryStore::new()),
            KeyConfig::new(key),
        ))
        .unwrap(),
    );
    let mut cfg = IssuerConfig::new("https://broker.example/api", "py-oidc-auth");
    cfg.alg = alg;
    let issuer = rt
        .block_on(Issuer::open(vault.clone(), cfg, Arc::new(SystemClock)))
        .unwrap();

    // The same private key, out of the sealed key set.
    let secret = rt
        .block_on(vault.load_secret(KEYSET_SECRET))
        .unwrap()
        .unwrap();
    let set: serde_json::Value = serde_json::from_slice(secret.expose()).unwrap();
    let pkcs8 = STANDARD
        .decode(set["keys"][0]["pkcs8"].as_str().unwrap())
        .unwrap();
    let encoding = match alg {
        SigningAlg::RS256 => {
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                STANDARD.encode(&pkcs8)
            );
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
        }
        SigningAlg::ES256 => EncodingKey::from_ec_der(&pkcs8),
        SigningAlg::EdDSA => EncodingKey::from_ed_der(&pkcs8),
    };
    // The same public key, from the JWKS.
    let jwks: serde_json::Value = serde_json::from_slice(&issuer.jwks().body).unwrap();
    let jwk: Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let decoding = DecodingKey::from_jwk(&jwk).unwrap();

    // A py-oidc-auth-shaped user: name, email, two roles.
    let mut claims = issuer.claims("alice", "6f1c2a4e-8d0b-4f51-9a3e-2b7c5d9e0f13");
    claims.preferred_username = Some("alice".into());
    claims.email = Some("alice@example.org".into());
    claims.roles = vec!["hpcuser".into(), "admin".into()];
    claims.scope = Some("openid profile email".into());
    let token = issuer.mint(&claims).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();

    // The Validation the issuer's verification uses (its own checks of
    // iss, aud and times against the injected clock follow it).
    let mut validation = Validation::new(alg.jwt());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();

    // Same key, header and claims: RS256 and EdDSA signatures are
    // deterministic, so both sides produce the same token.
    let raw = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
    if alg != SigningAlg::ES256 {
        assert_eq!(raw, token, "{alg:?}: the raw side signs the same bytes");
    }
    issuer.verify_own(&raw).unwrap();
    jsonwebtoken::decode::<AccessClaims>(&token, &decoding, &validation).unwrap();

    Case {
        issuer,
        claims,
        header,
        encoding,
        decoding,
        validation,
        token,
    }
}

fn mint_verify(c: &mut Criterion) {
    for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
        let k = case(alg);
        let mut g = c.benchmark_group(format!("mint/{}", alg.name()));
        g.bench_function("broker", |b| {
            b.iter(|| k.issuer.mint(black_box(&k.claims)).unwrap())
        });
        g.bench_function("raw", |b| {
            b.iter(|| jsonwebtoken::encode(&k.header, black_box(&k.claims), &k.encoding).unwrap())
        });
        g.finish();

        let mut g = c.benchmark_group(format!("verify/{}", alg.name()));
        g.bench_function("broker", |b| {
            b.iter(|| k.issuer.verify_own(black_box(&k.token)).unwrap())
        });
        g.bench_function("raw", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<AccessClaims>(
                    black_box(&k.token),
                    &k.decoding,
                    &k.validation,
                )
                .unwrap()
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50);
    targets = mint_verify
}
criterion_main!(benches);
