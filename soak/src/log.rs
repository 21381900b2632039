//! The operation log the soak workers write and the checker reads.
//!
//! Every operation is two JSON lines in its actor's own file: a `begin`
//! line written before the call (what is about to be tried, with the wall
//! and monotonic time), and an `end` line written after it (the
//! acknowledged result, or the error's kind). A worker killed mid-call
//! leaves a `begin` without an `end`: the checker treats that operation as
//! ambiguous, exactly like one that failed.
//!
//! No token, user_info or key is ever logged: a session is logged as its
//! generation id (a unique name the workload gives each write), a digest of
//! its secret contents, and its clear fields.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use broker_core::StoreError;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// `save_session` (upsert).
    Save,
    /// `create_session` (insert if absent).
    Create,
    /// `get_session`.
    Get,
    /// `take_session` (get and delete, atomically).
    Take,
    /// `delete_session`.
    Delete,
    /// `revoke_subject`.
    Revoke,
    /// `purge_expired`.
    Purge,
}

impl OpKind {
    /// The operation's name, as in the figures.
    pub fn name(self) -> &'static str {
        match self {
            Self::Save => "save",
            Self::Create => "create",
            Self::Get => "get",
            Self::Take => "take",
            Self::Delete => "delete",
            Self::Revoke => "revoke",
            Self::Purge => "purge",
        }
    }

    /// True for the operations that write a session.
    pub fn writes_session(self) -> bool {
        matches!(self, Self::Save | Self::Create)
    }
}

/// A point in time as one process saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Wall-clock time, nanoseconds since the Unix epoch (comparable across
    /// processes on one machine).
    pub wall_ns: i64,
    /// Monotonic time, nanoseconds since the process's log started (only
    /// comparable within one process).
    pub mono_ns: u64,
}

impl Stamp {
    /// The wall-clock time in whole Unix seconds, rounded down.
    pub fn wall_secs(&self) -> i64 {
        self.wall_ns.div_euclid(1_000_000_000)
    }
}

/// Nanoseconds since the Unix epoch now.
pub fn wall_ns_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One session as written or read, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// The generation: a unique id the workload gives every write.
    pub generation: String,
    /// SHA-256 (hex, shortened) of the refresh token and user_info.
    pub digest: String,
    /// The subject.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// Authentication time, Unix seconds.
    pub auth_time: i64,
}

/// The digest logged for a session's secret parts.
pub fn digest(refresh_token: &[u8], user_info: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update((refresh_token.len() as u64).to_be_bytes());
    h.update(refresh_token);
    h.update(user_info);
    hex::encode(&h.finalize()[..16])
}

/// What an operation is about to do (the `begin` line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Begin {
    /// The actor (one sequential task) doing it.
    pub actor: String,
    /// Which start of the actor's process this is (0, then 1 after a kill).
    pub incarnation: u32,
    /// Position in the actor's sequence within this incarnation.
    pub seq: u64,
    /// The operation.
    pub op: OpKind,
    /// The session id, for session operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The subject, for revocations and for the reads of the revoke race
    /// (whose sessions all belong to the round's subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// True for the contested set (one owner writes, every actor takes).
    #[serde(default)]
    pub contested: bool,
    /// True for the revoke race: the session ids and subject of a round
    /// are written, read and revoked by every race actor, so they are
    /// outside the single-owner model (see `check::revocation`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raced: bool,
    /// What a save or create writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<Contents>,
    /// The revocation time a revoke stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Until when a revoke asks the store to keep its marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_until: Option<i64>,
    /// When the call started.
    pub at: Stamp,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// A save or create was acknowledged.
    Done,
    /// A create was refused: a live session holds the id (acknowledged).
    Conflict,
    /// A get or take returned this session.
    Found {
        /// What was returned.
        session: Contents,
    },
    /// A get or take returned nothing.
    Missing,
    /// A delete answered.
    Deleted {
        /// Whether a session was stored.
        existed: bool,
    },
    /// A revoke or purge answered with a count.
    Count {
        /// Sessions removed.
        n: u64,
    },
    /// The call returned an error of this kind (see [`error_kind`]): it
    /// may or may not have taken effect.
    Failed {
        /// The error's kind.
        error: String,
    },
}

impl Outcome {
    /// True unless the call failed.
    pub fn acknowledged(&self) -> bool {
        !matches!(self, Self::Failed { .. })
    }
}

/// The error kind logged for `e`: the variant's name, never its message.
pub fn error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable { .. } => "unavailable",
        StoreError::InvalidInput { .. } => "invalid_input",
        StoreError::Conflict { .. } => "conflict",
        StoreError::Tampered { .. } => "tampered",
        StoreError::UnknownKey { .. } => "unknown_key",
        StoreError::Corrupt { .. } => "corrupt",
        StoreError::WrongKey { .. } => "wrong_key",
        StoreError::InvalidKey { .. } => "invalid_key",
        StoreError::KeyExhausted { .. } => "key_exhausted",
        StoreError::Backend { .. } => "backend",
        _ => "other",
    }
}

/// How an operation finished (the `end` line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// The actor.
    pub actor: String,
    /// The incarnation.
    pub incarnation: u32,
    /// The sequence number of the matching [`Begin`].
    pub seq: u64,
    /// When the call returned.
    pub at: Stamp,
    /// What it returned.
    pub outcome: Outcome,
}

/// One line of a log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub enum LogLine {
    /// Written before the call.
    Begin(Begin),
    /// Written after it.
    End(End),
}

/// One operation: its begin line and, unless the process died during the
/// call, its end line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// What was tried.
    pub begin: Begin,
    /// How it ended; `None` if the worker died first.
    pub end: Option<End>,
}

impl Op {
    /// The outcome, if the call finished.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.end.as_ref().map(|e| &e.outcome)
    }

    /// True if the call finished with an acknowledged result.
    pub fn acknowledged(&self) -> bool {
        self.outcome().is_some_and(Outcome::acknowledged)
    }

    /// True if the call failed or never finished: it may or may not have
    /// taken effect.
    pub fn ambiguous(&self) -> bool {
        !self.acknowledged()
    }

    /// The wall time the call ended, or `i64::MAX` if it never did.
    pub fn end_wall_ns(&self) -> i64 {
        self.end.as_ref().map_or(i64::MAX, |e| e.at.wall_ns)
    }

    /// The end stamp, or the begin stamp pushed to the far future.
    pub fn after(&self) -> Stamp {
        self.end.as_ref().map_or(
            Stamp {
                wall_ns: i64::MAX,
                mono_ns: u64::MAX,
            },
            |e| e.at,
        )
    }

    /// Sort key of the op within its actor's sequence.
    pub fn order(&self) -> (u32, u64) {
        (self.begin.incarnation, self.begin.seq)
    }
}

/// A log file an actor writes, one line per write call (so a killed
/// process leaves whole lines, and at most one cut-off last line).
#[derive(Debug)]
pub struct OpLog {
    file: File,
    actor: String,
    incarnation: u32,
    next_seq: u64,
    origin: Instant,
}

impl OpLog {
    /// A new log for `actor` in `dir` (file `<actor>.<incarnation>.jsonl`).
    pub fn create(dir: &Path, actor: &str, incarnation: u32) -> io::Result<Self> {
        let file = File::create(log_path(dir, actor, incarnation))?;
        Ok(Self {
            file,
            actor: actor.to_owned(),
            incarnation,
            next_seq: 0,
            origin: Instant::now(),
        })
    }

    /// The actor's name.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The incarnation.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// The sequence number the next operation gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The time now, as this log records it.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            wall_ns: wall_ns_now(),
            mono_ns: u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }

    fn write_line(&mut self, line: &LogLine) -> io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        self.file.write_all(&bytes)
    }

    /// Log the begin line of the next operation (its `actor`,
    /// `incarnation`, `seq` and `at` are filled in here), run `call`, log
    /// its outcome, and return it.
    pub async fn record<F>(&mut self, mut begin: Begin, call: F) -> io::Result<Outcome>
    where
        F: Future<Output = Outcome>,
    {
        let seq = self.next_seq;
        self.next_seq += 1;
        begin.actor.clone_from(&self.actor);
        begin.incarnation = self.incarnation;
        begin.seq = seq;
        begin.at = self.stamp();
        self.write_line(&LogLine::Begin(begin))?;
        let outcome = call.await;
        let end = End {
            actor: self.actor.clone(),
            incarnation: self.incarnation,
            seq,
            at: self.stamp(),
            outcome: outcome.clone(),
        };
        self.write_line(&LogLine::End(end))?;
        Ok(outcome)
    }
}

/// Where [`OpLog::create`] writes.
pub fn log_path(dir: &Path, actor: &str, incarnation: u32) -> PathBuf {
    dir.join(format!("{actor}.{incarnation}.jsonl"))
}

/// A begin line for `op`; [`OpLog::record`] fills in the rest.
pub fn begin(op: OpKind) -> Begin {
    Begin {
        actor: String::new(),
        incarnation: 0,
        seq: 0,
        op,
        jti: None,
        sub: None,
        contested: false,
        raced: false,
        written: None,
        revoked_at: None,
        keep_until: None,
        at: Stamp::default(),
    }
}

/// A log that cannot be read back.
#[derive(Debug)]
pub struct LogError(pub String);

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LogError {}

/// Pair begin and end lines into operations. A line that does not parse is
/// an error, except a cut-off last line of a file (`text` not ending in a
/// newline), which a killed worker may leave.
pub fn parse_log(name: &str, text: &str) -> Result<Vec<Op>, LogError> {
    let mut lines: Vec<LogLine> = Vec::new();
    let complete = text.ends_with('\n');
    let raw: Vec<&str> = text.lines().collect();
    for (i, line) in raw.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<LogLine>(line) {
            Ok(l) => lines.push(l),
            Err(_) if i + 1 == raw.len() && !complete => {}
            Err(e) => return Err(LogError(format!("{name}: line {}: {e}", i + 1))),
        }
    }
    pair(name, lines)
}

fn pair(name: &str, lines: Vec<LogLine>) -> Result<Vec<Op>, LogError> {
    let mut ops: BTreeMap<(String, u32, u64), Op> = BTreeMap::new();
    for line in lines {
        match line {
            LogLine::Begin(b) => {
                let key = (b.actor.clone(), b.incarnation, b.seq);
                if ops
                    .insert(
                        key,
                        Op {
                            begin: b,
                            end: None,
                        },
                    )
                    .is_some()
                {
                    return Err(LogError(format!(
                        "{name}: two begin lines for one operation"
                    )));
                }
            }
            LogLine::End(e) => {
                let key = (e.actor.clone(), e.incarnation, e.seq);
                match ops.get_mut(&key) {
                    Some(op) if op.end.is_none() => op.end = Some(e),
                    Some(_) => {
                        return Err(LogError(format!("{name}: two end lines for one operation")));
                    }
                    None => {
                        return Err(LogError(format!("{name}: an end line without its begin")));
                    }
                }
            }
        }
    }
    Ok(ops.into_values().collect())
}

/// Every operation in the `*.jsonl` files of `dir`.
pub fn read_log_dir(dir: &Path) -> Result<Vec<Op>, LogError> {
    let mut ops = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| LogError(format!("reading the log dir: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(|e| LogError(format!("{name}: {e}")))?;
        ops.extend(parse_log(&name, &text)?);
    }
    Ok(ops)
}

/// One session found by the final scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scanned {
    /// Its id.
    pub jti: String,
    /// What it holds, or `None` if it could not be opened.
    pub contents: Option<Contents>,
    /// The error kind if it could not be opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The final scan of the store: every live session, read through the vault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    /// When the scan started.
    pub before: Stamp,
    /// When it ended.
    pub after: Stamp,
    /// What it found.
    pub sessions: Vec<Scanned>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(l: &LogLine) -> String {
        serde_json::to_string(l).unwrap() + "\n"
    }

    fn b(seq: u64) -> Begin {
        Begin {
            actor: "m0".into(),
            seq,
            jti: Some("j".into()),
            ..begin(OpKind::Get)
        }
    }

    fn e(seq: u64) -> End {
        End {
            actor: "m0".into(),
            incarnation: 0,
            seq,
            at: Stamp::default(),
            outcome: Outcome::Missing,
        }
    }

    #[test]
    fn pairs_lines_and_keeps_unfinished_ops() {
        let text =
            line(&LogLine::Begin(b(0))) + &line(&LogLine::End(e(0))) + &line(&LogLine::Begin(b(1)));
        let ops = parse_log("t", &text).unwrap();
        assert_eq!(ops.len(), 2);
        assert!(ops[0].acknowledged());
        assert!(ops[1].end.is_none() && ops[1].ambiguous());
    }

    #[test]
    fn a_cut_off_last_line_is_tolerated_but_nothing_else() {
        let whole = line(&LogLine::Begin(b(0))) + &line(&LogLine::End(e(0)));
        let cut = line(&LogLine::Begin(b(1)));
        let text = whole.clone() + &cut[..cut.len() / 2];
        assert_eq!(parse_log("t", &text).unwrap().len(), 1);
        // The same garbage in the middle of a file is an error.
        let text = cut[..cut.len() / 2].to_owned() + "\n" + &whole;
        assert!(parse_log("t", &text).is_err());
        // So is a complete (newline-terminated) bad last line.
        assert!(parse_log("t", &(whole + "{\n")).is_err());
    }

    #[test]
    fn unmatched_or_duplicate_lines_are_errors() {
        assert!(parse_log("t", &line(&LogLine::End(e(0)))).is_err());
        let twice = line(&LogLine::Begin(b(0))).repeat(2);
        assert!(parse_log("t", &twice).is_err());
        let ends = line(&LogLine::Begin(b(0))) + &line(&LogLine::End(e(0))).repeat(2);
        assert!(parse_log("t", &ends).is_err());
    }

    #[test]
    fn error_kinds_name_the_variant_only() {
        let e = StoreError::invalid("get_session", "jti is empty");
        assert_eq!(error_kind(&e), "invalid_input");
        assert_eq!(
            error_kind(&StoreError::unavailable("x", "down")),
            "unavailable"
        );
    }

    #[test]
    fn digest_separates_token_from_user_info() {
        assert_ne!(digest(b"ab", b"c"), digest(b"a", b"bc"));
        assert_eq!(digest(b"a", b"b").len(), 32);
    }
}
