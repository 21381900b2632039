//! A31: one TRACE-level capture of the whole run — every `tracing` event
//! and span of every crate (broker-service, broker-issuer, broker-core, the
//! stores, the TestIdp) and every `log` record (reqwest's) — and the secret
//! values the run handled, to search the capture for afterwards.
//!
//! Secrets are searched for as text and, like broker-core's canary test
//! (`no_secrets_in_logs.rs`), as standard and URL-safe base64 at each of
//! the three alignments; JWTs also by their payload and signature alone.
//! On top of the recorded values, the capture must hold no JWT-shaped
//! string at all (an access, ID or IdP token the run never saw) and no PEM.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use tracing_subscriber::fmt::format::FmtSpan;

/// Needles shorter than this are not searched for (and not recorded:
/// every secret of the run is longer).
const WINDOW: usize = 16;

type Buffer = Arc<Mutex<Vec<u8>>>;

fn buffer() -> &'static Buffer {
    static BUFFER: OnceLock<Buffer> = OnceLock::new();
    BUFFER.get_or_init(Buffer::default)
}

fn secrets() -> &'static Mutex<BTreeMap<String, &'static str>> {
    static SECRETS: OnceLock<Mutex<BTreeMap<String, &'static str>>> = OnceLock::new();
    SECRETS.get_or_init(Mutex::default)
}

#[derive(Clone)]
struct Writer(Buffer);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `log` records into the same buffer.
struct LogCapture;

impl log::Log for LogCapture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!(
            "LOG {} {}: {}\n",
            record.level(),
            record.target(),
            record.args()
        );
        let _ = Writer(Arc::clone(buffer())).write(line.as_bytes());
    }
    fn flush(&self) {}
}

/// Install the capture as the global subscriber and logger (once, before
/// any scenario runs, so spawned tasks on every thread are seen).
pub fn install() {
    let writer = Writer(Arc::clone(buffer()));
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the first subscriber");
    log::set_boxed_logger(Box::new(LogCapture)).expect("the first logger");
    log::set_max_level(log::LevelFilter::Trace);
}

/// The capture so far.
pub fn text() -> String {
    String::from_utf8_lossy(&buffer().lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}

/// Record a secret value the run handled (a token, a code, a verifier).
pub fn note(kind: &'static str, value: &str) {
    if value.len() >= WINDOW {
        secrets()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(value.to_owned(), kind);
    }
}

/// Record a broker refresh token `<jti>.<secret>` (the jti is public: it
/// is every access token's `jti`).
pub fn note_refresh_token(value: &str) {
    note("broker refresh token", value);
    if let Some((_, secret)) = value.split_once('.') {
        note("broker refresh secret", secret);
    }
}

/// Record a JWT: whole, and its payload and signature alone (the header
/// is public).
pub fn note_jwt(kind: &'static str, value: &str) {
    note(kind, value);
    for part in value.split('.').skip(1) {
        note(kind, part);
    }
}

/// Every recorded secret.
pub fn recorded() -> Vec<(&'static str, String)> {
    secrets()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(v, k)| (*k, v.clone()))
        .collect()
}

/// Every form a secret could leak in: as is, and base64 (standard and
/// URL-safe, at each alignment, without the characters that mix in the
/// shift or the padding).
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_owned()];
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for shift in 0..3 {
            let mut shifted = vec![b'x'; shift];
            shifted.extend_from_slice(secret.as_bytes());
            let enc = engine.encode(&shifted);
            out.push(enc[4..enc.len() - 4].to_owned());
        }
    }
    out
}

/// HTTP Basic credentials as a client sends them: their base64 is a
/// secret of its own.
pub fn note_basic_auth(client_id: &str, secret: &str) {
    note("client_secret", secret);
    note(
        "client_secret (Basic header)",
        &STANDARD.encode(format!("{client_id}:{secret}")),
    );
}

/// What of `secrets` (and of the structural checks) `text` holds: one line
/// per finding, empty when clean. Searches every form of every secret at
/// once (a window index), so a capture of megabytes against thousands of
/// secrets takes seconds.
pub fn leaks(text: &str, secrets: &[(&'static str, String)]) -> Vec<String> {
    let mut needles: HashMap<&[u8], Vec<(&'static str, String)>> = HashMap::new();
    let all: Vec<(&'static str, String)> = secrets
        .iter()
        .flat_map(|(kind, value)| forms(value).into_iter().map(move |f| (*kind, f)))
        .filter(|(_, f)| f.len() >= WINDOW)
        .collect();
    for (kind, form) in &all {
        needles
            .entry(&form.as_bytes()[..WINDOW])
            .or_default()
            .push((kind, form.clone()));
    }
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    for i in 0..bytes.len().saturating_sub(WINDOW - 1) {
        if let Some(candidates) = needles.get(&bytes[i..i + WINDOW]) {
            for (kind, form) in candidates {
                if bytes[i..].starts_with(form.as_bytes()) {
                    // Kind and place only: the report must not repeat the secret.
                    found.push(format!("{kind} at byte {i}"));
                }
            }
        }
    }
    for marker in ["PRIVATE KEY", "-----BEGIN"] {
        if let Some(i) = text.find(marker) {
            found.push(format!("a PEM marker {marker:?} at byte {i}"));
        }
    }
    if let Some(i) = find_jwt(bytes) {
        found.push(format!("a JWT-shaped string at byte {i}"));
    }
    found
}

/// The first `eyJ…​.eyJ…​.` (a JWT's header and payload) in `bytes`.
fn find_jwt(bytes: &[u8]) -> Option<usize> {
    let b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    let segment = |from: usize| -> Option<usize> {
        let rest = bytes.get(from..)?;
        if !rest.starts_with(b"eyJ") {
            return None;
        }
        let len = rest.iter().take_while(|b| b64(b)).count();
        (len >= 10 && rest.get(len) == Some(&b'.')).then_some(from + len + 1)
    };
    (0..bytes.len()).find(|&i| segment(i).and_then(segment).is_some())
}

/// The search finds what it should: a secret as text, its base64 at an
/// odd alignment, a JWT it was never told about, a PEM; and nothing in a
/// clean text. Run before the real check, so a blind search fails the run.
pub fn self_check() {
    let secret = "a-secret-value-of-the-self-check-Xq81";
    let recorded = [("probe", secret.to_owned())];
    assert!(leaks("nothing to see here", &recorded).is_empty());
    assert_eq!(leaks(&format!("x {secret} y"), &recorded).len(), 1);
    let shifted = STANDARD.encode(format!("ab{secret}"));
    assert!(!leaks(&format!("auth: {shifted}"), &recorded).is_empty());
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl";
    assert_eq!(leaks(&format!("token={jwt}"), &[]).len(), 1);
    assert_eq!(leaks("-----BEGIN PRIVATE KEY-----", &[]).len(), 2);
}

/// The capture itself is not blind: a probe logged through `tracing` at
/// TRACE from a spawned task and one through `log` are both found.
pub async fn probe_check() {
    let probe_tracing = "probe-through-tracing-Vn63gK-0001";
    let probe_log = "probe-through-log-Hd40sL-000002";
    tokio::spawn(async move { tracing::trace!(probe = probe_tracing, "capture probe") })
        .await
        .expect("probe task");
    log::trace!("capture probe {probe_log}");
    let text = text();
    for probe in [probe_tracing, probe_log] {
        assert_eq!(
            leaks(&text, &[("probe", probe.to_owned())]).len(),
            1,
            "the capture misses a probe logged at TRACE: it is blind"
        );
    }
}
