//! The hostile-input table (contract rules 4 and 17, issue 9), run through
//! the [`TokenVault`] facade on the store under test.
//!
//! Each row is a session an attacker could send: empty and oversized
//! `jti`/`sub`, 255- and 256-byte keys (ASCII and multi-byte), Unicode
//! (RTL, emoji sequences, combining marks, look-alikes), NUL and control
//! characters, SQL, Mongo-operator and Redis hash-tag/glob strings, user_info
//! and refresh tokens at and over their limits, and expiries from `i64::MIN`
//! to past year 9999. Every row either is stored and comes back byte-exactly
//! through `get` and `take`, or is refused with [`StoreError::InvalidInput`]
//! and leaves nothing behind — whichever the contract says for that row. An
//! expiry at or before now is the one third outcome: accepted and never
//! returned (rule 7). No row may panic (each runs under `catch_unwind`), and
//! bystander sessions saved before the table — some named like what a
//! mishandled pattern, collation or normalization would hit — are unchanged
//! afterwards, byte for byte.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use broker_core::crypto::EncryptionKey;
use broker_core::{KeyConfig, Session, SessionRecord, StoreError, TokenVault, unix_now, validate};
use futures::FutureExt as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::{CaseResult, Ctx, Failure, Outcome};

/// What the contract says a row must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Stored, and returned byte-exactly by get and take.
    Stored,
    /// Refused with `InvalidInput`, nothing stored.
    Refused,
    /// Accepted, but already expired: never returned.
    Expired,
}

/// A change to a row's session.
type Edit = Box<dyn Fn(&mut Session)>;

/// One row of the table.
struct Row {
    name: String,
    session: Session,
    expect: Expect,
}

/// Sessions saved before the table; their keys are what a glob, a regex, a
/// case-insensitive or normalizing collation, or a Mongo operator smuggled
/// into a filter would hit.
const BYSTANDERS: &[(&str, &str)] = &[
    ("a", "a"),
    ("z", "alice"),
    ("b", "bob"),
    ("caf\u{e9}", "caf\u{e9}"),
    ("user.name", "user.name"),
    ("tag{a}", "{a}x"),
    ("x", "x"),
    ("row-sub", "row-sub-bystander"),
];

fn session(
    jti: &str,
    sub: &str,
    token: &str,
    info: Value,
    expires_at: i64,
    auth_time: i64,
) -> Session {
    Session {
        jti: jti.to_owned(),
        sub: sub.to_owned(),
        refresh_token: SecretString::from(token.to_owned()),
        user_info: info.into(),
        expires_at,
        auth_time,
    }
}

/// A JSON string value whose serialization is exactly `bytes` long.
fn json_of_len(bytes: usize) -> Value {
    Value::String("u".repeat(bytes - 2))
}

/// Strings that break naive SQL, Mongo, Redis and glob handling, or that
/// collide under normalization, case folding or padding.
const HOSTILE: &[(&str, &str)] = &[
    ("SQL drop", "'; DROP TABLE x; --"),
    ("SQL tautology", "\" OR 1=1 --"),
    ("SQL LIKE wildcards", "%_%"),
    ("backslashes", "\\\\x\\"),
    ("Mongo $where", "$where"),
    ("Mongo operator document", "{\"$gt\": \"\"}"),
    ("Mongo $ne null", "{\"$ne\":null}"),
    ("leading $", "$set"),
    ("dotted", "a.b.c"),
    ("leading dot", ".hidden"),
    ("lone $", "$"),
    ("Redis hash tag", "{a}"),
    ("two hash tags", "{a}{b}"),
    ("empty hash tag", "{}"),
    ("glob star", "*"),
    ("glob question", "?"),
    ("glob class", "[a-z]"),
    ("glob escape", "\\*"),
    ("key separator", "a:b:c"),
    ("regex", "^.*$"),
    ("multi-byte", "ünïcødé 用户"),
    (
        "RTL",
        "\u{5e9}\u{5dc}\u{5d5}\u{5dd} \u{645}\u{631}\u{62d}\u{628}\u{627}",
    ),
    ("RTL override", "abc\u{202e}fed\u{200f}"),
    (
        "emoji ZWJ sequence",
        "\u{1f469}\u{200d}\u{1f469}\u{200d}\u{1f467}\u{1f3f3}\u{fe0f}\u{200d}\u{1f308}",
    ),
    ("combining mark", "cafe\u{301}"),
    ("upper case of a bystander", "A"),
    ("trailing space", "a "),
    ("full-width look-alike", "\u{ff41}"),
    ("zero-width space", "a\u{200b}"),
    ("BOM", "\u{feff}a"),
    (
        "control characters",
        "\u{1}\u{7}\u{8}\t\n\r\u{1b}[31m\u{7f}",
    ),
    ("newline only", "\n"),
    ("path traversal", "../../etc/passwd"),
];

fn rows(now: i64) -> Vec<Row> {
    let live = now + 3600;
    let auth = now - 60;
    let mut rows = Vec::new();
    let mut n = 0usize;
    let mut push = |name: String,
                    jti: Option<String>,
                    sub: Option<String>,
                    expect: Expect,
                    edit: &dyn Fn(&mut Session)| {
        n += 1;
        let jti = jti.unwrap_or_else(|| format!("row-{n}"));
        // A sub of its own: a revocation of one row's subject must not hide the next row.
        let sub = sub.unwrap_or_else(|| format!("row-sub-{n}"));
        let mut s = session(
            &jti,
            &sub,
            &format!("rt-{n}"),
            json!({"row": n}),
            live,
            auth,
        );
        edit(&mut s);
        rows.push(Row {
            name,
            session: s,
            expect,
        });
    };
    let same = |_: &mut Session| {};

    // Keys: empty, at and over 255 bytes (bytes, not characters), NUL.
    for (what, value, expect) in [
        ("empty", String::new(), Expect::Refused),
        ("255-byte", "k".repeat(255), Expect::Stored),
        ("256-byte", "k".repeat(256), Expect::Refused),
        (
            "255-byte 2-byte chars",
            format!("{}k", "é".repeat(127)),
            Expect::Stored,
        ),
        ("256-byte 2-byte chars", "é".repeat(128), Expect::Refused),
        (
            "255-byte 4-byte chars",
            format!("{}abc", "🎉".repeat(63)),
            Expect::Stored,
        ),
        ("64 KiB", "k".repeat(64 * 1024), Expect::Refused),
        ("NUL inside", "a\0b".to_owned(), Expect::Refused),
        ("NUL only", "\0".to_owned(), Expect::Refused),
    ] {
        push(
            format!("{what} jti"),
            Some(value.clone()),
            None,
            expect,
            &same,
        );
        push(format!("{what} sub"), None, Some(value), expect, &same);
    }
    // Hostile text as jti, as sub, and as both.
    for (what, value) in HOSTILE {
        push(
            format!("{what} jti"),
            Some((*value).to_owned()),
            None,
            Expect::Stored,
            &same,
        );
        push(
            format!("{what} sub"),
            None,
            Some((*value).to_owned()),
            Expect::Stored,
            &same,
        );
        push(
            format!("{what} jti and sub"),
            Some(format!("both-{value}")),
            Some((*value).to_owned()),
            Expect::Stored,
            &same,
        );
    }
    // Secrets: sizes at and over the limits, awkward contents.
    let max_info = validate::MAX_USER_INFO_BYTES;
    let max_token = validate::MAX_REFRESH_TOKEN_BYTES;
    let cases: Vec<(&str, Expect, Edit)> = vec![
        (
            "user_info of 64 KiB",
            Expect::Stored,
            Box::new(move |s: &mut Session| s.user_info = json_of_len(max_info).into()),
        ),
        (
            "user_info of 64 KiB + 1",
            Expect::Refused,
            Box::new(move |s: &mut Session| s.user_info = json_of_len(max_info + 1).into()),
        ),
        (
            "user_info of 1 MiB",
            Expect::Refused,
            Box::new(|s: &mut Session| s.user_info = json_of_len(1 << 20).into()),
        ),
        (
            "refresh token of 32 KiB",
            Expect::Stored,
            Box::new(move |s: &mut Session| s.refresh_token = "t".repeat(max_token).into()),
        ),
        (
            "refresh token of 32 KiB + 1",
            Expect::Refused,
            Box::new(move |s: &mut Session| s.refresh_token = "t".repeat(max_token + 1).into()),
        ),
        (
            "refresh token of 32 KiB in 3-byte chars",
            Expect::Stored,
            Box::new(move |s: &mut Session| s.refresh_token = "用".repeat(max_token / 3).into()),
        ),
        (
            "empty refresh token",
            Expect::Stored,
            Box::new(|s: &mut Session| s.refresh_token = String::new().into()),
        ),
        (
            "refresh token with NUL and controls",
            Expect::Stored,
            Box::new(|s: &mut Session| {
                s.refresh_token = "a\0b\u{1}\n\u{7f}'\"$*{a}".to_owned().into()
            }),
        ),
        (
            "user_info with operator keys",
            Expect::Stored,
            Box::new(|s: &mut Session| {
                s.user_info = json!({"$where": "sleep(1000)", "a.b": {"$gt": ""}, "": "empty key", "$": ["$set"], "{a}": "*?[a-z]"}).into();
            }),
        ),
        (
            "user_info with NUL and Unicode",
            Expect::Stored,
            Box::new(|s: &mut Session| {
                s.user_info = json!({"nul": "a\u{0}b", "rtl": "\u{202e}abc", "emoji": "\u{1f389}", "combining": "e\u{301}"}).into();
            }),
        ),
        (
            "user_info with big and precise numbers",
            Expect::Stored,
            Box::new(|s: &mut Session| {
                s.user_info = serde_json::from_str(
                    r#"{"big":123456789012345678901234567890,"f":1.50,"e":1e400,"neg":-0}"#,
                )
                .unwrap_or(Value::Null)
                .into();
            }),
        ),
        (
            "user_info null",
            Expect::Stored,
            Box::new(|s: &mut Session| s.user_info = Value::Null.into()),
        ),
        (
            "user_info deeply nested",
            Expect::Stored,
            Box::new(|s: &mut Session| {
                let mut v = json!("leaf");
                for _ in 0..100 {
                    v = json!([v]);
                }
                s.user_info = v.into();
            }),
        ),
        // Times.
        (
            "expiry 0",
            Expect::Expired,
            Box::new(|s: &mut Session| s.expires_at = 0),
        ),
        (
            "expiry now",
            Expect::Expired,
            Box::new(move |s: &mut Session| s.expires_at = now),
        ),
        (
            "expiry -1",
            Expect::Refused,
            Box::new(|s: &mut Session| s.expires_at = -1),
        ),
        (
            "expiry i64::MIN",
            Expect::Refused,
            Box::new(|s: &mut Session| s.expires_at = i64::MIN),
        ),
        (
            "expiry 9999-12-31T23:59:59Z",
            Expect::Stored,
            Box::new(|s: &mut Session| s.expires_at = validate::MAX_TIMESTAMP),
        ),
        (
            "expiry past year 9999",
            Expect::Refused,
            Box::new(|s: &mut Session| s.expires_at = validate::MAX_TIMESTAMP + 1),
        ),
        (
            "expiry i64::MAX",
            Expect::Refused,
            Box::new(|s: &mut Session| s.expires_at = i64::MAX),
        ),
        (
            "expiry in ms by mistake",
            Expect::Refused,
            Box::new(move |s: &mut Session| s.expires_at = live * 1000),
        ),
        (
            "auth_time 0",
            Expect::Stored,
            Box::new(|s: &mut Session| s.auth_time = 0),
        ),
        (
            "auth_time -1",
            Expect::Refused,
            Box::new(|s: &mut Session| s.auth_time = -1),
        ),
        (
            "auth_time i64::MIN",
            Expect::Refused,
            Box::new(|s: &mut Session| s.auth_time = i64::MIN),
        ),
        (
            "auth_time 9999-12-31T23:59:59Z",
            Expect::Stored,
            Box::new(|s: &mut Session| s.auth_time = validate::MAX_TIMESTAMP),
        ),
        (
            "auth_time past year 9999",
            Expect::Refused,
            Box::new(|s: &mut Session| s.auth_time = validate::MAX_TIMESTAMP + 1),
        ),
    ];
    for (what, expect, edit) in cases {
        push(what.to_owned(), None, None, expect, edit.as_ref());
    }
    rows
}

/// True if `back` is exactly `sent`: ids, times, token bytes, user_info
/// (as a value and as JSON text).
fn same_session(back: &Session, sent: &Session) -> bool {
    back.jti == sent.jti
        && back.sub == sent.sub
        && back.expires_at == sent.expires_at
        && back.auth_time == sent.auth_time
        && back.refresh_token.expose_secret().as_bytes()
            == sent.refresh_token.expose_secret().as_bytes()
        && back.user_info.expose() == sent.user_info.expose()
        && serde_json::to_vec(back.user_info.expose()).ok()
            == serde_json::to_vec(sent.user_info.expose()).ok()
}

fn is_invalid<T>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::InvalidInput { .. }))
}

/// Run one row; `Ok(())` if it did what the contract says.
async fn run_row(vault: &TokenVault, row: &Row) -> Result<(), Failure> {
    let s = &row.session;
    let store = vault.store();
    let fail = |what: String| Err(Failure(format!("row {:?}: {what}", row.name)));
    let jti_valid = validate::jti("check", &s.jti).is_ok();
    match row.expect {
        Expect::Refused => {
            for (op, r) in [
                ("create", vault.create_session(s).await),
                ("save", vault.save_session(s).await),
            ] {
                if !is_invalid(&r) {
                    return fail(format!("{op} gave {r:?}, expected InvalidInput"));
                }
            }
            // Nothing was stored; lookups with an invalid key are refused too.
            let got = vault.get_session(&s.jti).await;
            let taken = vault.take_session(&s.jti).await;
            let raw = store.get_session(&s.jti).await;
            if jti_valid {
                if !matches!(got, Ok(None))
                    || !matches!(taken, Ok(None))
                    || !matches!(raw, Ok(None))
                {
                    return fail(format!(
                        "refused, yet get/take/raw gave {got:?} / {taken:?} / {raw:?}"
                    ));
                }
            } else if !is_invalid(&got) || !is_invalid(&taken) || !is_invalid(&raw) {
                return fail(format!(
                    "lookups with the invalid jti gave {got:?} / {taken:?} / {raw:?}"
                ));
            }
            let deleted = vault.delete_session(&s.jti).await;
            let delete_ok = if jti_valid {
                matches!(deleted, Ok(false))
            } else {
                is_invalid(&deleted)
            };
            if !delete_ok {
                return fail(format!("delete gave {deleted:?}"));
            }
        }
        Expect::Expired => {
            vault
                .create_session(s)
                .await
                .map_err(|e| Failure(format!("row {:?}: create: {e} ({e:?})", row.name)))?;
            let got = vault.get_session(&s.jti).await?;
            let taken = vault.take_session(&s.jti).await?;
            if got.is_some() || taken.is_some() {
                return fail("an expired session was returned".into());
            }
            vault.delete_session(&s.jti).await?;
        }
        Expect::Stored => {
            if let Err(e) = vault.create_session(s).await {
                return fail(format!("create refused a valid row: {e} ({e:?})"));
            }
            let raw: Option<SessionRecord> = store.get_session(&s.jti).await?;
            match &raw {
                Some(r)
                    if r.jti == s.jti
                        && r.sub == s.sub
                        && r.expires_at == s.expires_at
                        && r.auth_time == s.auth_time => {}
                other => {
                    return fail(format!(
                        "the stored record's clear fields differ: {:?}",
                        other.as_ref().map(|r| (
                            r.jti.len(),
                            r.sub.len(),
                            r.expires_at,
                            r.auth_time
                        ))
                    ));
                }
            }
            match vault.get_session(&s.jti).await? {
                Some(back) if same_session(&back, s) => {}
                Some(_) => return fail("get returned a different session".into()),
                None => return fail("get returned nothing".into()),
            }
            // Upsert over itself, then take: exactly once, exactly the same.
            vault.save_session(s).await?;
            match vault.take_session(&s.jti).await? {
                Some(back) if same_session(&back, s) => {}
                Some(_) => return fail("take returned a different session".into()),
                None => return fail("take returned nothing".into()),
            }
            if vault.get_session(&s.jti).await?.is_some()
                || vault.take_session(&s.jti).await?.is_some()
            {
                return fail("the session is still there after take".into());
            }
            if vault.delete_session(&s.jti).await? {
                return fail("delete found a taken session".into());
            }
        }
    }
    Ok(())
}

/// Rule 17 (and 4), through the vault: the hostile-input table.
pub async fn rule_17_hostile_input_table_through_the_vault(ctx: &Ctx) -> CaseResult {
    let store = ctx.store();
    store.setup().await?;
    let key = EncryptionKey::from_bytes(&[0x17; 32]).map_err(Failure::from)?;
    let vault = TokenVault::open(Arc::clone(store), KeyConfig::new(key)).await?;
    let now = unix_now();

    let bystanders: Vec<Session> = BYSTANDERS
        .iter()
        .enumerate()
        .map(|(i, (jti, sub))| {
            session(
                jti,
                sub,
                &format!("bystander-rt-{i}"),
                json!({"bystander": i, "jti": jti}),
                now + 7200,
                now - 120,
            )
        })
        .collect();
    for b in &bystanders {
        vault.create_session(b).await?;
    }
    let mut before = Vec::with_capacity(bystanders.len());
    for b in &bystanders {
        before.push(store.get_session(&b.jti).await?);
    }

    let rows = rows(now);
    let (mut stored, mut refused, mut expired) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for row in &rows {
        match AssertUnwindSafe(run_row(&vault, row)).catch_unwind().await {
            Ok(Ok(())) => match row.expect {
                Expect::Stored => stored += 1,
                Expect::Refused => refused += 1,
                Expect::Expired => expired += 1,
            },
            Ok(Err(f)) => failures.push(f.0),
            Err(_) => failures.push(format!("row {:?}: panicked", row.name)),
        }
    }

    // Log out every subject of the table (hostile subs included): each
    // removes nothing (every row's session is gone) and touches no
    // bystander; invalid subjects are refused.
    let mut subs: Vec<&str> = rows.iter().map(|r| r.session.sub.as_str()).collect();
    subs.sort_unstable();
    subs.dedup();
    for sub in &subs {
        let revoked = AssertUnwindSafe(vault.revoke_subject(sub))
            .catch_unwind()
            .await;
        let sub_valid = validate::sub("check", sub).is_ok();
        match revoked {
            Ok(Ok(0)) if sub_valid => {}
            Ok(ref r) if !sub_valid && is_invalid(r) => {}
            Ok(r) => failures.push(format!(
                "revoke_subject of a {}-byte table subject gave {r:?}",
                sub.len()
            )),
            Err(_) => failures.push(format!(
                "revoke_subject of a {}-byte table subject panicked",
                sub.len()
            )),
        }
    }

    // The bystanders: all there, unchanged to the byte.
    for (b, raw_before) in bystanders.iter().zip(&before) {
        let raw_after = store.get_session(&b.jti).await?;
        if &raw_after != raw_before {
            failures.push(format!(
                "bystander {:?}: its stored record changed or vanished",
                b.jti
            ));
            continue;
        }
        match vault.get_session(&b.jti).await? {
            Some(back) if same_session(&back, b) => {}
            _ => failures.push(format!(
                "bystander {:?}: no longer reads back as saved",
                b.jti
            )),
        }
    }
    let live = store.stats().await?.live_sessions;
    crate::loud(&format!(
        "hostile input table on {}: {} rows, {stored} stored and returned byte-exactly, \
         {refused} refused as invalid input, {expired} accepted but expired; \
         {} bystanders intact; {live} live sessions left; {} failures",
        ctx.factory().name(),
        rows.len(),
        bystanders.len()
            - failures
                .iter()
                .filter(|f| f.starts_with("bystander"))
                .count(),
        failures.len()
    ));
    if !failures.is_empty() {
        return Err(Failure(format!(
            "{} of {} rows failed:\n  {}",
            failures.len(),
            rows.len(),
            failures.join("\n  ")
        )));
    }
    if live != bystanders.len() as u64 {
        return Err(Failure(format!(
            "{live} live sessions after the table, expected only the {} bystanders",
            bystanders.len()
        )));
    }
    Ok(Outcome::Passed)
}
