//! The issuer's part of the canary test (SECURITY.md requirements 10 and
//! 11; broker-core/tests/no_secrets_in_logs.rs is the vault's part, and
//! this file uses the same capture and the same leak forms): every
//! broker-issuer operation under a TRACE-level capturing subscriber (key
//! generation for RS256, ES256 and EdDSA, maintain and rotate, 16
//! concurrent maintainers, a second worker's reload, mint, verify of good
//! and refused tokens, import of a py-oidc-auth PEM and its legacy token,
//! JWKS) leaks no private key, PEM, token or vault key into the log, nor
//! into the Display or Debug text of any error or public value it produced.
//!
//! The private keys are generated, so no canary can be planted in them:
//! they are read back from the sealed key set at the end, and every 16-byte
//! window of their PKCS#8 DER (at a step of 8, so any 23 contiguous bytes
//! of a key, such as an RSA `d`, `p` or `q` or an EC/Ed25519 private
//! scalar, hold a whole window) is searched for as hex and as base64
//! (standard and URL-safe, every alignment). Tokens are searched for whole
//! and by their signature. The test is not vacuous: the log must hold the
//! vault spans these operations run through, a probe value logged through
//! the same subscriber must be found, and the detector must find a whole
//! key encoded the way a JWK or a PEM would carry it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use broker_core::{EncryptionKey, KeyConfig, ManualClock, MemoryStore, TokenVault};
use broker_issuer::keyset::KEYSET_SECRET;
use broker_issuer::{Issuer, IssuerConfig, SigningAlg};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tracing_subscriber::fmt::format::FmtSpan;

/// The vault's key, with recognisable bytes.
const VAULT_KEY: [u8; 32] = [
    0x3b, 0xd1, 0x6e, 0x02, 0x9a, 0x47, 0xf5, 0x18, 0xc3, 0x5e, 0x81, 0x2d, 0x76, 0xe9, 0x04, 0xbb,
    0x52, 0x0f, 0xa8, 0x6d, 0x13, 0xce, 0x97, 0x39, 0xe4, 0x7b, 0x25, 0x90, 0x4a, 0xf6, 0x0c, 0x61,
];
/// Planted in a PEM that does not parse (its import must fail quietly).
const BAD_PEM_BODY: &str = "canary-bad-pem-body-Tz58kQ";
/// Logged on purpose at the end: must be found, or the capture is blind.
const PROBE: &str = "probe-value-Jc47wR";
const ISSUER: &str = "https://broker.test/api";
const AUDIENCE: &str = "py-oidc-auth";
/// A py-oidc-auth signing key (PKCS#1 PEM) and the kid it gives it.
const LEGACY_PEM: &str = include_str!("fixtures/py-oidc-auth-key.pem");
const LEGACY_KID: &str = include_str!("fixtures/py-oidc-auth-key.kid");

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every form bytes could leak in: hex (both cases), base64 standard and
/// URL-safe at each of the three alignments, and text when they are text.
fn forms(secret: &[u8]) -> Vec<String> {
    let mut out = vec![
        secret.iter().map(|b| format!("{b:02x}")).collect(),
        secret.iter().map(|b| format!("{b:02X}")).collect(),
    ];
    if let Ok(text) = std::str::from_utf8(secret) {
        out.push(text.to_owned());
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for shift in 0..3 {
            let mut shifted = vec![b'x'; shift];
            shifted.extend_from_slice(secret);
            let enc = engine.encode(&shifted);
            // Skip the characters that mix in the shift or the padding.
            out.push(enc[4..enc.len() - 4].to_owned());
        }
    }
    out
}

/// The forms of every 16-byte window of the private key `der`, at a step
/// of 8, but for windows sharing 8 bytes with its public key (which a DER
/// encoding also holds and the JWKS publishes; an encoded form drops the
/// window's edges, so a window straddling the end of `n` can match `n`).
fn key_forms(der: &[u8], key: &EncodingKey, alg: jsonwebtoken::Algorithm) -> Vec<String> {
    let public = serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
    let public: Vec<Vec<u8>> = ["n", "e", "x", "y"]
        .iter()
        .filter_map(|m| public[m].as_str())
        .map(|v| URL_SAFE_NO_PAD.decode(v).unwrap())
        .collect();
    (0..der.len().saturating_sub(16))
        .step_by(8)
        .map(|at| &der[at..at + 16])
        .filter(|w| {
            !w.windows(8)
                .any(|part| public.iter().any(|p| p.windows(8).any(|pw| pw == part)))
        })
        .flat_map(forms)
        .collect()
}

/// The DER inside a PEM.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(body).unwrap()
}

/// Canary forms (what, form), indexed by their first bytes: thousands of
/// forms are searched for in a log of thousands of lines.
struct Canaries {
    list: Vec<(String, String)>,
    index: HashMap<Vec<u8>, Vec<usize>>,
}

/// Length of the index prefix; every form is at least this long.
const PREFIX: usize = 10;

impl Canaries {
    fn new(list: Vec<(String, String)>) -> Self {
        let mut index: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
        for (i, (name, form)) in list.iter().enumerate() {
            assert!(form.len() >= PREFIX, "{name}: a form shorter than {PREFIX}");
            index
                .entry(form.as_bytes()[..PREFIX].to_vec())
                .or_default()
                .push(i);
        }
        Self { list, index }
    }

    /// The first canary `text` contains, if any.
    fn leak(&self, text: &str) -> Option<&(String, String)> {
        let bytes = text.as_bytes();
        (0..bytes.len().saturating_sub(PREFIX - 1)).find_map(|at| {
            self.index.get(&bytes[at..at + PREFIX]).and_then(|found| {
                found
                    .iter()
                    .map(|&i| &self.list[i])
                    .find(|(_, form)| bytes[at..].starts_with(form.as_bytes()))
            })
        })
    }

    fn assert_clean(&self, what: &str, text: &str) {
        if let Some((name, form)) = self.leak(text) {
            panic!("{what} leaks the {name} ({form:?}):\n{text}");
        }
    }
}

/// Collects every error met, to format them all at the end.
#[derive(Default)]
struct Errors(Vec<(&'static str, String, String)>);

impl Errors {
    fn expect_err<T: std::fmt::Debug, E: std::error::Error>(
        &mut self,
        what: &'static str,
        r: Result<T, E>,
    ) -> String {
        match r {
            Ok(v) => panic!("{what}: expected an error, got {v:?}"),
            Err(e) => {
                let debug = format!("{e:?}");
                let mut display = e.to_string();
                let mut source = e.source();
                while let Some(s) = source {
                    display.push_str(&format!(" / {s} {s:?}"));
                    source = s.source();
                }
                self.0.push((what, display, debug.clone()));
                debug
            }
        }
    }
}

fn config(alg: SigningAlg) -> IssuerConfig {
    let mut cfg = IssuerConfig::new(ISSUER, AUDIENCE);
    cfg.alg = alg;
    cfg
}

/// A token of `issuer` for a user.
fn mint(issuer: &Issuer, user: &str) -> String {
    let mut claims = issuer.claims(user, format!("grant-{user}"));
    claims.preferred_username = Some(user.to_owned());
    claims.email = Some(format!("{user}@example.org"));
    claims.roles = vec!["hpcuser".into()];
    issuer.mint(&claims).unwrap()
}

/// Everything the issuer does, for one algorithm; tokens and errors are
/// collected for the checks.
async fn workload(
    alg: SigningAlg,
    tokens: &mut Vec<String>,
    errors: &mut Errors,
    debug_texts: &mut Vec<(String, String)>,
) -> Vec<u8> {
    let store = Arc::new(MemoryStore::new());
    let vault = Arc::new(
        TokenVault::open(
            store.clone(),
            KeyConfig::new(EncryptionKey::from_bytes(&VAULT_KEY).unwrap()),
        )
        .await
        .unwrap(),
    );
    let clock = ManualClock::starting_now();
    let cfg = config(alg);
    debug_texts.push((format!("IssuerConfig {alg:?}"), format!("{cfg:?}")));
    // Key generation (the first key), and a second worker on the same store.
    let a = Issuer::open(vault.clone(), cfg.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let b = Issuer::open(vault.clone(), cfg.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();

    // Mint, verify; refused tokens of every kind.
    let token = mint(&a, "alice");
    tokens.push(token.clone());
    debug_texts.push((
        format!("Verified {alg:?}"),
        format!("{:?}", a.verify_own(&token).unwrap()),
    ));
    b.verify_own(&token).unwrap();
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    tokens.push(tampered.clone());
    errors.expect_err("tampered signature", a.verify_own(&tampered));
    errors.expect_err("not a token", a.verify_own("a.b.c"));
    let (head, rest) = token.split_once('.').unwrap();
    let mut id_typ = Header::new(alg.jwt());
    id_typ.kid = jsonwebtoken::decode_header(&token).unwrap().kid;
    let wrong_typ = format!(
        "{}.{rest}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&id_typ).unwrap())
    );
    assert_ne!(head, wrong_typ.split('.').next().unwrap());
    tokens.push(wrong_typ.clone());
    errors.expect_err("ID-token typ", a.verify_own(&wrong_typ));
    clock.advance(3600);
    errors.expect_err("expired", a.verify_own(&token));

    // Scheduled rotation: publish ahead, then sign; retire the old key.
    let due = cfg.rotation.rotate_every.unwrap().as_secs() as i64;
    clock.advance(due);
    let report = a.maintain().await.unwrap();
    assert!(report.added.is_some(), "a key is due");
    debug_texts.push((format!("RotationReport {alg:?}"), format!("{report:?}")));
    b.reload().await.unwrap();
    clock.advance(cfg.rotation.publish_ahead.as_secs() as i64);
    let after = mint(&b, "bob");
    tokens.push(after.clone());
    a.verify_own(&after).unwrap();
    clock.advance(cfg.rotation.retire_after.as_secs() as i64 + 1);
    let report = a.maintain().await.unwrap();
    assert!(!report.retired.is_empty(), "the first key retires");
    // 16 concurrent maintainers on a due key set, then by-hand rotations.
    clock.advance(due);
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.maintain().await })
        })
        .collect();
    let mut added = 0;
    for r in racers {
        added += usize::from(r.await.unwrap().unwrap().added.is_some());
    }
    assert_eq!(added, 1);
    a.rotate(false).await.unwrap();
    a.rotate(true).await.unwrap();
    b.reload().await.unwrap();
    let last = mint(&b, "carol");
    tokens.push(last.clone());
    a.verify_own(&last).unwrap();

    // A py-oidc-auth key: import, its legacy token, a second import, bad PEMs.
    if alg == SigningAlg::RS256 {
        let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(LEGACY_KID.trim().to_owned());
        let legacy = jsonwebtoken::encode(
            &header,
            &a.claims("janedoe", "legacy-grant"),
            &EncodingKey::from_rsa_pem(LEGACY_PEM.as_bytes()).unwrap(),
        )
        .unwrap();
        tokens.push(legacy.clone());
        errors.expect_err("legacy token before import", a.verify_own(&legacy));
        a.import_pem(LEGACY_PEM).await.unwrap();
        a.verify_own(&legacy).unwrap();
        errors.expect_err("second import", a.import_pem(LEGACY_PEM).await);
        let bad = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{BAD_PEM_BODY}\n-----END RSA PRIVATE KEY-----\n"
        );
        errors.expect_err("unparsable PEM", a.import_pem(&bad).await);
        let truncated = &LEGACY_PEM[..LEGACY_PEM.len() / 2];
        errors.expect_err("truncated PEM", a.import_pem(truncated).await);
    }

    // JWKS, key list, Debug of the issuer.
    let jwks = a.jwks();
    debug_texts.push((format!("Jwks {alg:?}"), format!("{jwks:?}")));
    debug_texts.push((
        format!("JWKS body {alg:?}"),
        String::from_utf8(jwks.body.to_vec()).unwrap(),
    ));
    debug_texts.push((format!("keys {alg:?}"), format!("{:?}", a.keys())));
    debug_texts.push((format!("Issuer {alg:?}"), format!("{a:?}")));

    // The private keys, read back as only a vault-key holder can.
    vault
        .load_secret(KEYSET_SECRET)
        .await
        .unwrap()
        .expect("the key set")
        .expose()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_private_key_pem_or_token_in_logs_errors_or_debug() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();
    // Global, so spawned tasks and blocking threads are seen too.
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

    let mut tokens = Vec::new();
    let mut errors = Errors::default();
    let mut debug_texts = Vec::new();
    let mut keysets = Vec::new();
    for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
        let keyset = workload(alg, &mut tokens, &mut errors, &mut debug_texts).await;
        keysets.push((alg, keyset));
    }
    tracing::trace!(probe = PROBE, "canary self-check");

    // ---- the canaries ----
    let mut canaries: Vec<(String, String)> = Vec::new();
    let mut ders = Vec::new();
    for (alg, keyset) in &keysets {
        let set: serde_json::Value = serde_json::from_slice(keyset).unwrap();
        for key in set["keys"].as_array().unwrap() {
            let der = STANDARD.decode(key["pkcs8"].as_str().unwrap()).unwrap();
            let encoding = match key["alg"].as_str().unwrap() {
                "RS256" => EncodingKey::from_rsa_pem(
                    format!(
                        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                        STANDARD.encode(&der)
                    )
                    .as_bytes(),
                )
                .unwrap(),
                "ES256" => EncodingKey::from_ec_der(&der),
                "EdDSA" => EncodingKey::from_ed_der(&der),
                other => panic!("{alg:?}: a key of {other}"),
            };
            let name = format!("{alg:?} private key {}", key["kid"]);
            let jwt_alg = match key["alg"].as_str().unwrap() {
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                _ => Algorithm::EdDSA,
            };
            canaries.extend(
                key_forms(&der, &encoding, jwt_alg)
                    .into_iter()
                    .map(|f| (name.clone(), f)),
            );
            ders.push(der);
        }
    }
    assert!(ders.len() >= 3 * 4, "only {} keys generated", ders.len());
    let legacy_der = pem_der(LEGACY_PEM);
    let legacy_key = EncodingKey::from_rsa_pem(LEGACY_PEM.as_bytes()).unwrap();
    canaries.extend(
        key_forms(&legacy_der, &legacy_key, Algorithm::RS256)
            .into_iter()
            .map(|f| ("imported PEM".to_owned(), f)),
    );
    for line in LEGACY_PEM.lines().filter(|l| !l.starts_with("-----")) {
        canaries.push(("imported PEM line".into(), line.to_owned()));
    }
    canaries.push(("PEM header".into(), "PRIVATE KEY".into()));
    canaries.push(("bad PEM".into(), BAD_PEM_BODY.into()));
    canaries.extend(
        forms(&VAULT_KEY)
            .into_iter()
            .map(|f| ("vault key".to_owned(), f)),
    );
    for token in &tokens {
        canaries.push(("token".into(), token.clone()));
        let signature = token.rsplit('.').next().unwrap();
        canaries.push(("token signature".into(), signature.to_owned()));
    }

    let canaries = Canaries::new(canaries);

    // The detector finds keys the way they would leak: a whole PKCS#8 or
    // PKCS#1 key in PEM base64 or in hex, its tail (an RSA key's CRT
    // members) in base64url at every alignment, as a JWK carries them.
    for der in ders.iter().chain([&legacy_der]) {
        let mut encodings = vec![
            STANDARD.encode(der),
            der.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        ];
        if der.len() > 1000 {
            let tail = der.len() * 2 / 3;
            encodings.extend((0..3).map(|s| URL_SAFE_NO_PAD.encode(&der[tail + s..])));
        }
        for (i, encoded) in encodings.iter().enumerate() {
            assert!(
                canaries.leak(encoded).is_some(),
                "the detector misses encoding {i} of a {}-byte key",
                der.len()
            );
        }
    }

    // ---- the checks ----
    let log = capture.text();
    eprintln!(
        "issuer no_secrets_in_logs: {} log lines captured, {} errors and {} Debug texts \
         checked, {} keys, {} tokens, {} canary forms",
        log.lines().count(),
        errors.0.len(),
        debug_texts.len(),
        ders.len() + 1,
        tokens.len(),
        canaries.list.len()
    );
    assert!(
        log.contains(PROBE),
        "the capture does not see logged values:\n{log}"
    );
    for expected in [
        "vault.open",
        "vault.load_or_create_secret",
        "vault.load_secret",
        "vault.replace_secret",
        "TRACE",
    ] {
        assert!(log.contains(expected), "the log lacks {expected:?}:\n{log}");
    }
    canaries.assert_clean("the log", &log);
    assert!(errors.0.len() >= 15, "only {} errors met", errors.0.len());
    for (what, display, debug) in &errors.0 {
        canaries.assert_clean(what, display);
        canaries.assert_clean(what, debug);
    }
    for (what, text) in &debug_texts {
        canaries.assert_clean(what, text);
    }
}
