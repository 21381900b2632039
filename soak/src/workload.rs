//! What a worker process does: open a vault, run the mixed workload, the
//! contested takes and the revoke race for a bounded time while logging
//! every call, or run the signing-key race once. Also the final scan the
//! checker compares with.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_core::crypto::EncryptionKey;
use broker_core::{KeyConfig, Namespace, Revocation, Session, StoreError, TokenVault, unix_now};
use rand::RngExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use store_url::StoreOpener;

use crate::log::{
    Begin, Contents, OpKind, OpLog, Outcome, Scan, Scanned, Stamp, begin, digest, error_kind,
    wall_ns_now,
};

mod revoke_race;

pub use revoke_race::{KEEP_SECS, LOOKBACK_MS, race_jti, race_subject};

/// Environment variable holding the store URL (it may hold a password, so
/// it is not passed as an argument).
pub const URL_ENV: &str = "BROKER_SOAK_URL";
/// Environment variable holding the vault key (standard base64 of 32
/// bytes). Never an argument.
pub const KEY_ENV: &str = "BROKER_SOAK_KEY";

/// Open the store at `url` on `namespace` and a vault on it with the raw
/// key `key_b64`, retrying "unavailable" errors (a sled database held by
/// another process, a server still starting) until `patience` runs out.
/// Returns the vault and how many attempts were refused first.
///
/// A process that exits afterwards should use [`open_vault_on`] and shut its
/// opener down first (a MongoDB client alive at exit can make the driver
/// panic).
pub async fn open_vault(
    url: &str,
    namespace: &Namespace,
    key_b64: &str,
    patience: Duration,
) -> Result<(TokenVault, u32), StoreError> {
    open_vault_on(&StoreOpener::new(url)?, namespace, key_b64, patience).await
}

/// [`open_vault`] on a store from `opener`; call
/// [`StoreOpener::shutdown`] before the process exits.
pub async fn open_vault_on(
    opener: &StoreOpener,
    namespace: &Namespace,
    key_b64: &str,
    patience: Duration,
) -> Result<(TokenVault, u32), StoreError> {
    let deadline = Instant::now() + patience;
    let mut refused = 0;
    loop {
        let attempt = async {
            let key = EncryptionKey::from_base64(key_b64)?;
            let store = opener.open(namespace.clone()).await?;
            TokenVault::open(store, KeyConfig::new(key)).await
        };
        match attempt.await {
            Ok(vault) => return Ok((vault, refused)),
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A made-up private key in PEM form, different on every call (the race
/// only needs distinct candidates, not a usable key).
pub fn candidate_pem() -> SecretString {
    let bytes: [u8; 48] = rand::rng().random();
    SecretString::from(format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        hex::encode(bytes)
    ))
}

/// The fingerprint printed for a key: SHA-256 of the PEM, hex. Never the
/// key itself.
pub fn fingerprint(pem: &SecretString) -> String {
    hex::encode(Sha256::digest(pem.expose_secret().as_bytes()))
}

/// What a worker process runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// This process's index among the workers (0-based).
    pub worker_index: u32,
    /// How many worker processes run (each runs this plan with its index).
    pub workers: u32,
    /// Mixed-workload actors (tasks) per process.
    pub tasks: u32,
    /// Contest actors per process.
    pub contest_tasks: u32,
    /// Revoke-race actors per process (see [`race_subject`]).
    pub race_tasks: u32,
    /// Which start of this process this is (after a kill, the next one
    /// continues the same actors).
    pub incarnation: u32,
    /// Stop starting operations at this wall time (ms since the epoch).
    pub until_wall_ms: i64,
    /// Where the logs go.
    pub log_dir: PathBuf,
    /// Session ids each mixed actor owns.
    pub jtis_per_actor: u32,
    /// Subjects each mixed actor owns.
    pub subs_per_actor: u32,
    /// Session ids in the contested set.
    pub contested_jtis: u32,
    /// Length of one contest round and of one revoke-race round.
    pub slot_ms: u64,
    /// Pause between a mixed actor's operations.
    pub pace_ms: u64,
}

/// What `broker-soak race` prints when it is done: one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaceOutcome {
    /// The [`fingerprint`] of the signing key the process got.
    pub fingerprint: String,
    /// Whether the key it got is its own candidate.
    pub won: bool,
    /// Whether it found no key and offered its candidate.
    pub offered: bool,
    /// Opens refused before one succeeded (a sled database held by
    /// another process).
    pub open_refused: u32,
    /// From the release to the key, in milliseconds.
    pub elapsed_ms: u64,
    /// The process id.
    pub pid: u32,
}

/// What `broker-soak work` prints when it is done: one JSON line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkOutcome {
    /// The counts of every task.
    #[serde(flatten)]
    pub totals: Totals,
    /// Opens refused before one succeeded.
    pub open_refused: u32,
}

/// Counts a worker prints when it is done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Operations started.
    pub ops: u64,
    /// Operations that returned a result.
    pub acknowledged: u64,
    /// Operations that returned an error.
    pub failed: u64,
}

impl Totals {
    fn add(&mut self, outcome: &Outcome) {
        self.ops += 1;
        if outcome.acknowledged() {
            self.acknowledged += 1;
        } else {
            self.failed += 1;
        }
    }

    fn merge(&mut self, other: Totals) {
        self.ops += other.ops;
        self.acknowledged += other.acknowledged;
        self.failed += other.failed;
    }
}

fn wall_ms() -> i64 {
    wall_ns_now() / 1_000_000
}

async fn sleep_until_wall_ms(target: i64) {
    let left = target - wall_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left.unsigned_abs())).await;
    }
}

fn roll(below: u32) -> u32 {
    rand::rng().random_range(0..below.max(1))
}

/// A session with made-up secrets identified by `generation`, and what the
/// log records of it.
pub fn make_session(
    jti: &str,
    sub: &str,
    generation: &str,
    expires_at: i64,
    auth_time: i64,
) -> (Session, Contents) {
    let nonce: u64 = rand::rng().random();
    let token = format!("rt.{generation}.{nonce:016x}");
    let pad = "p".repeat(roll(256) as usize);
    let info = serde_json::json!({
        "gen": generation,
        "email": format!("{sub}@soak.invalid"),
        "pad": pad,
    });
    let info_bytes = serde_json::to_vec(&info).unwrap_or_default();
    let contents = Contents {
        generation: generation.to_owned(),
        digest: digest(token.as_bytes(), &info_bytes),
        sub: sub.to_owned(),
        expires_at,
        auth_time,
    };
    let session = Session {
        jti: jti.to_owned(),
        sub: sub.to_owned(),
        refresh_token: token.into(),
        user_info: info.into(),
        expires_at,
        auth_time,
    };
    (session, contents)
}

/// What the log records of a session read back.
pub fn observe(session: &Session) -> Contents {
    let info = session.user_info.expose();
    let info_bytes = serde_json::to_vec(info).unwrap_or_default();
    Contents {
        generation: info
            .get("gen")
            .and_then(|g| g.as_str())
            .unwrap_or("")
            .to_owned(),
        digest: digest(
            session.refresh_token.expose_secret().as_bytes(),
            &info_bytes,
        ),
        sub: session.sub.clone(),
        expires_at: session.expires_at,
        auth_time: session.auth_time,
    }
}

fn failed(e: &StoreError) -> Outcome {
    Outcome::Failed {
        error: error_kind(e).to_owned(),
    }
}

fn read_outcome(r: Result<Option<Session>, StoreError>) -> Outcome {
    match r {
        Ok(Some(s)) => Outcome::Found {
            session: observe(&s),
        },
        Ok(None) => Outcome::Missing,
        Err(e) => failed(&e),
    }
}

/// An expiry for a new session: mostly an hour, often a few seconds (to
/// expire during the run), sometimes already past.
fn expiry(now: i64) -> i64 {
    match roll(100) {
        0..65 => now + 3600,
        65..92 => now + 1 + i64::from(roll(3)),
        _ => now - i64::from(roll(3)),
    }
}

struct Actor<'v> {
    vault: &'v TokenVault,
    log: OpLog,
    totals: Totals,
    /// The last revocation time tried per subject.
    revoked: HashMap<String, i64>,
}

impl Actor<'_> {
    fn generation(&self) -> String {
        format!(
            "{}.{}.{}",
            self.log.actor(),
            self.log.incarnation(),
            self.log.next_seq()
        )
    }

    async fn write(
        &mut self,
        op: OpKind,
        jti: &str,
        sub: &str,
        contested: bool,
        expires_at: i64,
    ) -> io::Result<Outcome> {
        let generation = self.generation();
        // In the second of a revocation of `sub`, half the writes are a new
        // login just after it (auth_time one second later, so the session
        // counts), half a refresh that was in flight (auth_time now, so the
        // revocation must hide it: contract rule 10).
        let now = unix_now();
        let auth_time = match self.revoked.get(sub) {
            Some(&r) if r >= now && roll(2) == 0 => r + 1,
            _ => now,
        };
        let (session, contents) = make_session(jti, sub, &generation, expires_at, auth_time);
        let mut b = begin(op);
        b.jti = Some(jti.to_owned());
        b.contested = contested;
        b.written = Some(contents);
        self.store_session(b, session).await
    }

    /// Log `b` (a save or create with its `written` contents set) and run
    /// it with `session`.
    async fn store_session(&mut self, b: Begin, session: Session) -> io::Result<Outcome> {
        let op = b.op;
        let vault = self.vault;
        let outcome = self
            .log
            .record(b, async move {
                let r = if op == OpKind::Create {
                    vault.create_session(&session).await
                } else {
                    vault.save_session(&session).await
                };
                match r {
                    Ok(()) => Outcome::Done,
                    Err(StoreError::Conflict { .. }) if op == OpKind::Create => Outcome::Conflict,
                    Err(e) => failed(&e),
                }
            })
            .await?;
        self.totals.add(&outcome);
        Ok(outcome)
    }

    async fn read(&mut self, op: OpKind, jti: &str, contested: bool) -> io::Result<Outcome> {
        let mut b = begin(op);
        b.jti = Some(jti.to_owned());
        b.contested = contested;
        self.read_logged(b).await
    }

    /// Log `b` (a get, take or delete with its `jti` set) and run it.
    async fn read_logged(&mut self, b: Begin) -> io::Result<Outcome> {
        let op = b.op;
        let jti = b.jti.clone().unwrap_or_default();
        let vault = self.vault;
        let outcome = self
            .log
            .record(b, async move {
                match op {
                    OpKind::Take => read_outcome(vault.take_session(&jti).await),
                    OpKind::Delete => match vault.delete_session(&jti).await {
                        Ok(existed) => Outcome::Deleted { existed },
                        Err(e) => failed(&e),
                    },
                    _ => read_outcome(vault.get_session(&jti).await),
                }
            })
            .await?;
        self.totals.add(&outcome);
        Ok(outcome)
    }

    async fn revoke(&mut self, sub: &str) -> io::Result<Outcome> {
        let revocation = Revocation::now(sub);
        self.revoked.insert(sub.to_owned(), revocation.revoked_at);
        self.revoke_logged(revocation, false).await
    }

    /// Revoke through the store with an explicit [`Revocation`] (what
    /// `TokenVault::revoke_subject` does with the store's clock), so the log
    /// holds its exact time and keep time.
    async fn revoke_logged(&mut self, revocation: Revocation, raced: bool) -> io::Result<Outcome> {
        let mut b = begin(OpKind::Revoke);
        b.sub = Some(revocation.sub.clone());
        b.revoked_at = Some(revocation.revoked_at);
        b.keep_until = Some(revocation.keep_until);
        b.raced = raced;
        let store = self.vault.store();
        let outcome = self
            .log
            .record(b, async move {
                match store.revoke_subject(&revocation).await {
                    Ok(n) => Outcome::Count { n },
                    Err(e) => failed(&e),
                }
            })
            .await?;
        self.totals.add(&outcome);
        Ok(outcome)
    }

    async fn purge(&mut self, raced: bool) -> io::Result<Outcome> {
        let vault = self.vault;
        let mut b = begin(OpKind::Purge);
        b.raced = raced;
        let outcome = self
            .log
            .record(b, async move {
                match vault.purge_expired().await {
                    Ok(n) => Outcome::Count { n },
                    Err(e) => failed(&e),
                }
            })
            .await?;
        self.totals.add(&outcome);
        Ok(outcome)
    }
}

/// One mixed-workload actor: owns its jtis and subjects, so its history
/// per jti is sequential.
async fn mixed(vault: Arc<TokenVault>, plan: Plan, index: u32) -> io::Result<Totals> {
    let name = format!("m{index}");
    let mut actor = Actor {
        vault: &vault,
        log: OpLog::create(&plan.log_dir, &name, plan.incarnation)?,
        totals: Totals::default(),
        revoked: HashMap::new(),
    };
    let mut backoff = Duration::ZERO;
    // After a failed call the actor moves on to fresh jtis and subjects (a
    // new epoch): the failed call may still take effect later, so only the
    // jti and subject it touched stay ambiguous; the rest of the run is
    // checked strictly. A new incarnation starts a new epoch too.
    let mut epoch = 0u32;
    while wall_ms() < plan.until_wall_ms {
        let prefix = format!("{name}.i{}e{epoch}", plan.incarnation);
        let k = roll(plan.jtis_per_actor);
        let jti = format!("{prefix}.j{k}");
        let sub = format!("{prefix}.u{}", k % plan.subs_per_actor.max(1));
        let outcome = match roll(100) {
            0..22 => {
                actor
                    .write(OpKind::Save, &jti, &sub, false, expiry(unix_now()))
                    .await?
            }
            22..30 => {
                actor
                    .write(OpKind::Create, &jti, &sub, false, expiry(unix_now()))
                    .await?
            }
            30..55 => actor.read(OpKind::Get, &jti, false).await?,
            55..70 => actor.read(OpKind::Take, &jti, false).await?,
            70..80 => actor.read(OpKind::Delete, &jti, false).await?,
            80..83 => actor.revoke(&sub).await?,
            83..85 => actor.purge(false).await?,
            _ => actor.read(OpKind::Get, &jti, false).await?,
        };
        if outcome.acknowledged() {
            backoff = Duration::ZERO;
            tokio::time::sleep(Duration::from_millis(plan.pace_ms)).await;
        } else {
            epoch += 1;
            backoff = (backoff * 2).clamp(Duration::from_millis(50), Duration::from_millis(800));
            tokio::time::sleep(backoff).await;
        }
    }
    Ok(actor.totals)
}

/// One contest actor. Round `n` (a wall-clock slot) concerns contested jti
/// `x{n % contested}`; its owner writes a new generation at the start of
/// the slot, and every contest actor (of every process) takes it at the
/// middle of the slot, at the same moment.
async fn contest(vault: Arc<TokenVault>, plan: Plan, index: u32) -> io::Result<Totals> {
    let name = format!("c{index}");
    let mut actor = Actor {
        vault: &vault,
        log: OpLog::create(&plan.log_dir, &name, plan.incarnation)?,
        totals: Totals::default(),
        revoked: HashMap::new(),
    };
    let participants = i64::from((plan.workers * plan.contest_tasks).max(1));
    let slot = i64::try_from(plan.slot_ms.max(2)).unwrap_or(500);
    let sub = format!("{name}.u");
    loop {
        let n = wall_ms() / slot + 1;
        let start = n * slot;
        if start + slot / 2 >= plan.until_wall_ms {
            break;
        }
        let j = n % i64::from(plan.contested_jtis.max(1));
        let jti = format!("x{j}");
        sleep_until_wall_ms(start).await;
        if j % participants == i64::from(index) {
            let now = unix_now();
            let expires_at = if roll(100) < 80 {
                now + 3600
            } else {
                now + 1 + i64::from(roll(3))
            };
            let op = if roll(100) < 20 {
                OpKind::Create
            } else {
                OpKind::Save
            };
            actor.write(op, &jti, &sub, true, expires_at).await?;
        }
        sleep_until_wall_ms(start + slot / 2).await;
        if roll(100) < 30 {
            actor.read(OpKind::Get, &jti, true).await?;
        }
        actor.read(OpKind::Take, &jti, true).await?;
    }
    Ok(actor.totals)
}

/// Run `plan` on `vault` until its end time: `tasks` mixed actors,
/// `contest_tasks` contest actors and `race_tasks` revoke-race actors,
/// concurrently.
pub async fn run_work(vault: Arc<TokenVault>, plan: &Plan) -> io::Result<Totals> {
    let mut handles = Vec::new();
    for t in 0..plan.tasks {
        let index = plan.worker_index * plan.tasks + t;
        handles.push(tokio::spawn(mixed(Arc::clone(&vault), plan.clone(), index)));
    }
    for c in 0..plan.contest_tasks {
        let index = plan.worker_index * plan.contest_tasks + c;
        handles.push(tokio::spawn(contest(
            Arc::clone(&vault),
            plan.clone(),
            index,
        )));
    }
    for r in 0..plan.race_tasks {
        let index = plan.worker_index * plan.race_tasks + r;
        handles.push(tokio::spawn(revoke_race::revoke_race(
            Arc::clone(&vault),
            plan.clone(),
            index,
        )));
    }
    let mut totals = Totals::default();
    for h in handles {
        totals.merge(h.await.map_err(io::Error::other)??);
    }
    Ok(totals)
}

/// Read every live session through the vault, page by page.
pub async fn scan(vault: &TokenVault) -> Result<Scan, StoreError> {
    let origin = Instant::now();
    let stamp = || Stamp {
        wall_ns: wall_ns_now(),
        mono_ns: u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
    };
    let before = stamp();
    let mut sessions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = vault.store().scan_sessions(cursor.as_deref(), 500).await?;
        for record in &page.sessions {
            sessions.push(match vault.open_session("scan", record) {
                Ok(s) => Scanned {
                    jti: record.jti.clone(),
                    contents: Some(observe(&s)),
                    error: None,
                },
                Err(e) => Scanned {
                    jti: record.jti.clone(),
                    contents: None,
                    error: Some(error_kind(&e).to_owned()),
                },
            });
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(Scan {
        before,
        after: stamp(),
        sessions,
    })
}
