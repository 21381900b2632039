use std::sync::Arc;

use broker_core::crypto::EncryptionKey;
use broker_core::{
    BrokerStore, KeyConfig, Session, SessionRecord, StoreError, TokenVault, unix_now,
};
use secrecy::SecretString;

use crate::{Case, Ctx, Failure};

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Failure(format!($($msg)+)));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(Failure(format!("{}: expected {:?}, got {:?}", format!($($msg)+), r, l)));
        }
    }};
}

mod encryption;
mod errors;
mod lifecycle;
mod records;
mod restart;
mod revocation;
mod sessions;

pub use crate::hostile::rule_17_hostile_input_table_through_the_vault;
pub use encryption::{
    rule_19_no_plaintext_at_rest, rule_20_flipped_or_truncated_blob_is_tampered,
    rule_20_moved_or_edited_blob_is_tampered, rule_20_planted_plaintext_reads_as_corrupt,
    rule_21_wrong_key_or_passphrase_fails_at_open,
    rule_22_rotation_keeps_old_blobs_and_rekey_moves_them,
};
pub use errors::{
    rule_16_errors_are_typed_and_name_the_operation, rule_17_invalid_input_is_refused,
};
pub use lifecycle::{
    rule_01_setup_is_idempotent, rule_02_store_from_existing_handle_shares_data_and_leaves_it_open,
    rule_03_drop_namespace_removes_it_and_nothing_else, rule_03_namespaces_are_isolated,
};
pub use records::{
    rule_13_create_once_has_one_winner, rule_13_signing_key_has_one_winner,
    rule_14_replace_is_explicit_compare_and_set, rule_15_peer_jwks_upsert_and_load_preserve_json,
};
pub use restart::{OPERATION_BOUND, rule_18_server_restart_loses_nothing};
pub use revocation::{
    rule_03_drop_namespace_removes_revocations, rule_10_boundary_is_inclusive,
    rule_10_later_revocation_only_widens, rule_10_revocation_beats_refresh_in_flight,
    rule_10_revocation_outlives_its_marker, rule_10_revoke_racing_save_on_another_store_object,
    rule_10_revoke_removes_exactly_that_subject,
    rule_11_purge_forgets_markers_past_their_keep_time,
};
pub use sessions::{
    rule_04_hostile_keys_are_stored_literally,
    rule_04_save_then_get_returns_exactly_what_was_saved,
    rule_04_vault_round_trips_unicode_empty_and_16k, rule_05_create_conflicts_and_keeps_the_first,
    rule_05_create_over_expired_session_succeeds, rule_05_save_replaces_every_field,
    rule_06_unknown_jti_is_none, rule_07_expired_session_is_never_returned,
    rule_07_session_expiring_while_stored_is_gone, rule_08_delete_is_idempotent_and_reports,
    rule_09_take_is_atomic_across_store_objects, rule_09_take_is_atomic_under_64_takers,
    rule_11_purge_removes_only_expired, rule_12_scan_returns_every_live_session_once,
    rule_12_scan_while_sessions_change,
};

/// The one list of cases, in rule order: [`ALL`] (and so
/// [`CASES`](crate::CASES)) and the tests of
/// [`test_suite!`](crate::test_suite) are both expanded from it. Adding a
/// case is one line here plus its function, re-exported above. Its output
/// is `$crate::__case_list_expand!{ (args) name name ... }`.
#[doc(hidden)]
#[macro_export]
macro_rules! __case_list {
    ($($args:tt)*) => {
        $crate::__case_list_expand! { ($($args)*)
            rule_01_setup_is_idempotent
            rule_02_store_from_existing_handle_shares_data_and_leaves_it_open
            rule_03_namespaces_are_isolated
            rule_03_drop_namespace_removes_it_and_nothing_else
            rule_03_drop_namespace_removes_revocations
            rule_04_save_then_get_returns_exactly_what_was_saved
            rule_04_hostile_keys_are_stored_literally
            rule_04_vault_round_trips_unicode_empty_and_16k
            rule_05_save_replaces_every_field
            rule_05_create_conflicts_and_keeps_the_first
            rule_05_create_over_expired_session_succeeds
            rule_06_unknown_jti_is_none
            rule_07_expired_session_is_never_returned
            rule_07_session_expiring_while_stored_is_gone
            rule_08_delete_is_idempotent_and_reports
            rule_09_take_is_atomic_under_64_takers
            rule_09_take_is_atomic_across_store_objects
            rule_10_revoke_removes_exactly_that_subject
            rule_10_revocation_beats_refresh_in_flight
            rule_10_revocation_outlives_its_marker
            rule_10_boundary_is_inclusive
            rule_10_later_revocation_only_widens
            rule_10_revoke_racing_save_on_another_store_object
            rule_11_purge_removes_only_expired
            rule_11_purge_forgets_markers_past_their_keep_time
            rule_12_scan_returns_every_live_session_once
            rule_12_scan_while_sessions_change
            rule_13_create_once_has_one_winner
            rule_13_signing_key_has_one_winner
            rule_14_replace_is_explicit_compare_and_set
            rule_15_peer_jwks_upsert_and_load_preserve_json
            rule_16_errors_are_typed_and_name_the_operation
            rule_17_invalid_input_is_refused
            rule_17_hostile_input_table_through_the_vault
            rule_19_no_plaintext_at_rest
            rule_20_moved_or_edited_blob_is_tampered
            rule_20_flipped_or_truncated_blob_is_tampered
            rule_20_planted_plaintext_reads_as_corrupt
            rule_21_wrong_key_or_passphrase_fails_at_open
            rule_22_rotation_keeps_old_blobs_and_rekey_moves_them
        }
    };
}

/// What [`__case_list!`](crate::__case_list) expands to: `(tests make)`
/// gives one `#[test]` per case, `(table)` a `&[Case]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __case_list_expand {
    ((tests $make:path) $($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                $crate::run_named_blocking(stringify!($name), $make);
            }
        )*
    };
    ((table) $($name:ident)*) => {
        &[$($crate::__case!($name)),*]
    };
}

/// The [`Case`] of the function `cases::$name`, its rule read from the name.
#[doc(hidden)]
#[macro_export]
macro_rules! __case {
    ($name:ident) => {
        $crate::Case {
            name: stringify!($name),
            rule: $crate::cases::rule_of(stringify!($name)),
            run: {
                fn run(ctx: &$crate::Ctx) -> $crate::CaseFuture<'_> {
                    ::std::boxed::Box::pin($crate::cases::$name(ctx))
                }
                run
            },
        }
    };
}

/// The rule number in a case name `rule_NN_...` (0 if it has none, which
/// the crate's tests refuse).
#[doc(hidden)]
pub const fn rule_of(name: &str) -> u8 {
    let b = name.as_bytes();
    if b.len() < 8 || !b[5].is_ascii_digit() || !b[6].is_ascii_digit() {
        return 0;
    }
    (b[5] - b'0') * 10 + (b[6] - b'0')
}

/// Every case but the restart case, in rule order.
pub const ALL: &[Case] = crate::__case_list!(table);

/// The rule-18 case, kept out of [`ALL`]: it restarts the server, so it
/// runs in a test binary of its own (`conformance::restart_suite!`).
pub const RESTART: Case = crate::__case!(rule_18_server_restart_loses_nothing);

/// Keys that break naive SQL, Mongo, Redis, glob and path handling.
pub const HOSTILE_IDS: &[&str] = &[
    "quote'\"`",
    "'; DROP TABLE sessions; --",
    "$where",
    "{\"$ne\": \"\"}",
    "{}",
    "{tag}",
    "*",
    "?",
    "[",
    "a.*",
    "%",
    "_",
    "a%b_c",
    "back\\slash",
    "new\nline\r\ttab",
    "key with spaces",
    "a:b:c",
    "../../etc/passwd",
    "ünïcødé 用户 🎉",
    "\u{1}\u{7f}",
];

async fn ready(ctx: &Ctx) -> Result<&Arc<dyn BrokerStore>, Failure> {
    ctx.store().setup().await?;
    Ok(ctx.store())
}

/// A session record with recognisable sealed bytes.
fn record(jti: &str, sub: &str, expires_at: i64, auth_time: i64, tag: u8) -> SessionRecord {
    let mut sealed = vec![0x01, tag, 0xee, 0x00, 0xff];
    sealed.extend((0..40u8).map(|i| i.wrapping_mul(tag).wrapping_add(7)));
    SessionRecord {
        jti: jti.into(),
        sub: sub.into(),
        expires_at,
        auth_time,
        sealed: sealed.into(),
    }
}

fn live(jti: &str, sub: &str, tag: u8) -> SessionRecord {
    let now = unix_now();
    record(jti, sub, now + 3600, now - 60, tag)
}

fn key(byte: u8) -> EncryptionKey {
    EncryptionKey::from_bytes(&[byte; 32]).expect("32 bytes")
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn plain_session(jti: &str, sub: &str, refresh_token: &str) -> Session {
    let now = unix_now();
    Session {
        jti: jti.into(),
        sub: sub.into(),
        refresh_token: secret(refresh_token),
        user_info: serde_json::json!({"name": "Zoë", "groups": ["a", "b"]}).into(),
        expires_at: now + 3600,
        auth_time: now - 60,
    }
}

async fn vault(store: &Arc<dyn BrokerStore>, keys: KeyConfig) -> Result<TokenVault, StoreError> {
    TokenVault::open(Arc::clone(store), keys).await
}

async fn scan_all(store: &dyn BrokerStore, limit: usize) -> Result<Vec<SessionRecord>, Failure> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0usize;
    loop {
        let page = store.scan_sessions(cursor.as_deref(), limit).await?;
        ensure!(
            page.sessions.len() <= limit,
            "a page held {} sessions, over its limit {limit}",
            page.sessions.len()
        );
        out.extend(page.sessions);
        pages += 1;
        ensure!(pages < 1_000_000, "scan does not end");
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}
