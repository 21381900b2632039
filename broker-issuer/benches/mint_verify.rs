//! A10a: `Issuer::mint` and `Issuer::verify_own` beside raw
//! `jsonwebtoken::encode` / `decode` on the same key, the same claims, the
//! same header and the same `Validation`, for RS256, ES256 and EdDSA.
//!
//! Ids: `mint/<alg>/broker`, `mint/<alg>/raw`, `verify/<alg>/broker`,
//! `verify/<alg>/raw`. Targets: broker ≥ 0.95 × raw for mint, ≥ 0.90 × raw
//! for verify (rates). `scripts/bench-issuer.sh` runs this and writes
//! `target/bench-issuer/issuer-criterion.json`.
//!
//! One more id per algorithm, `mint/<alg>/cached-key`, is no target but the
//! ceiling: the same JWS (same header and claims bytes) signed with an
//! aws-lc key pair parsed once. jsonwebtoken 12's aws-lc backend parses (and
//! for RSA validates) the private key on every `encode`; the gap between
//! `raw` and `cached-key` is that parse.
//!
//! The raw side gets the signing key from the sealed key set through the
//! vault (as only a holder of the vault key can), the verifying key from
//! the published JWKS, and builds its header and `Validation` once, outside
//! the timed loop: the cheapest raw use of jsonwebtoken.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker_core::{EncryptionKey, KeyConfig, MemoryStore, SystemClock, TokenVault};
use broker_issuer::keyset::KEYSET_SECRET;
use broker_issuer::{AccessClaims, Issuer, IssuerConfig, SigningAlg};
use criterion::{Criterion, criterion_group};
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
    cached: CachedKey,
}

/// A private key parsed once, as a signer that keeps it would hold it.
enum CachedKey {
    Rsa(RsaKeyPair, SystemRandom),
    Ec(EcdsaKeyPair, SystemRandom),
    Ed(Ed25519KeyPair),
}

impl CachedKey {
    fn new(alg: SigningAlg, pkcs8: &[u8]) -> Self {
        match alg {
            SigningAlg::RS256 => {
                Self::Rsa(RsaKeyPair::from_pkcs8(pkcs8).unwrap(), SystemRandom::new())
            }
            SigningAlg::ES256 => Self::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).unwrap(),
                SystemRandom::new(),
            ),
            SigningAlg::EdDSA => Self::Ed(Ed25519KeyPair::from_pkcs8(pkcs8).unwrap()),
        }
    }

    /// The JWS of `header` and `claims`, as `jsonwebtoken::encode` builds it.
    fn mint(&self, header: &Header, claims: &AccessClaims) -> String {
        let mut jws = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()));
        let signature = match self {
            Self::Rsa(key, rng) => {
                let mut out = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, rng, jws.as_bytes(), &mut out)
                    .unwrap();
                out
            }
            Self::Ec(key, rng) => key.sign(rng, jws.as_bytes()).unwrap().as_ref().to_vec(),
            Self::Ed(key) => key.sign(jws.as_bytes()).as_ref().to_vec(),
        };
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        jws
    }
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
    let cached = CachedKey::new(alg, &pkcs8);
    let by_cached = cached.mint(&header, &claims);
    if alg != SigningAlg::ES256 {
        assert_eq!(
            by_cached, token,
            "{alg:?}: the cached key signs the same bytes"
        );
    }
    issuer.verify_own(&by_cached).unwrap();

    Case {
        issuer,
        claims,
        header,
        encoding,
        decoding,
        validation,
        token,
        cached,
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
        g.bench_function("cached-key", |b| {
            b.iter(|| k.cached.mint(&k.header, black_box(&k.claims)))
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

/// Broker / raw rate ratios measured in pairs: each round times a block of
/// broker calls and a block of raw calls back to back (in alternating
/// order), and the ratio is taken per round, so load that changes over
/// seconds on a shared machine cancels out. Written as JSON to the file
/// named by `BENCH_ISSUER_PAIRED` (`scripts/bench-issuer.sh` sets it);
/// skipped when it is unset.
fn paired() {
    let Some(out) = std::env::var_os("BENCH_ISSUER_PAIRED") else {
        return;
    };
    const ROUNDS: usize = 40;
    const BLOCK: Duration = Duration::from_millis(25);
    fn time(n: u32, f: &mut dyn FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed()
    }
    let mut rows = Vec::new();
    for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
        let k = case(alg);
        for op in ["mint", "verify"] {
            let mut broker: Box<dyn FnMut()> = match op {
                "mint" => Box::new(|| {
                    black_box(k.issuer.mint(black_box(&k.claims)).unwrap());
                }),
                _ => Box::new(|| {
                    black_box(k.issuer.verify_own(black_box(&k.token)).unwrap());
                }),
            };
            let mut raw: Box<dyn FnMut()> = match op {
                "mint" => Box::new(|| {
                    black_box(
                        jsonwebtoken::encode(&k.header, black_box(&k.claims), &k.encoding).unwrap(),
                    );
                }),
                _ => Box::new(|| {
                    black_box(
                        jsonwebtoken::decode::<AccessClaims>(
                            black_box(&k.token),
                            &k.decoding,
                            &k.validation,
                        )
                        .unwrap(),
                    );
                }),
            };
            let one = time(3, &mut *raw) / 3;
            let n = (BLOCK.as_nanos() / one.as_nanos().max(1)).clamp(1, 10_000) as u32;
            let mut ratios: Vec<f64> = (0..ROUNDS)
                .map(|round| {
                    let (b, r) = if round % 2 == 0 {
                        let b = time(n, &mut *broker);
                        (b, time(n, &mut *raw))
                    } else {
                        let r = time(n, &mut *raw);
                        (time(n, &mut *broker), r)
                    };
                    r.as_secs_f64() / b.as_secs_f64()
                })
                .collect();
            ratios.sort_by(f64::total_cmp);
            let id = format!("{op}/{}", alg.name());
            let (q1, med, q3) = (
                ratios[ROUNDS / 4],
                ratios[ROUNDS / 2],
                ratios[3 * ROUNDS / 4],
            );
            eprintln!(
                "paired {id}: broker / raw = {med:.3} (IQR {q1:.3} – {q3:.3}, {ROUNDS} rounds of {n})"
            );
            rows.push(serde_json::json!({
                "id": id, "median": med, "q1": q1, "q3": q3,
                "rounds": ROUNDS, "calls_per_block": n,
            }));
        }
    }
    std::fs::write(out, serde_json::to_vec_pretty(&rows).unwrap()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50);
    targets = mint_verify
}

fn main() {
    benches();
    paired();
    Criterion::default().configure_from_args().final_summary();
}
