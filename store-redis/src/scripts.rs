//! Lua scripts. Every script declares every key it touches in `KEYS`
//! (Redis's documented rule), and all of them but [`SAVE_ONE`] touch keys
//! of one hash slot, so they run on Redis Cluster. [`SAVE_ONE`] declares
//! keys of the session's and of its subject's slot: one server only
//! ([`crate::Topology::SingleNode`]).
//!
//! Times are passed in by the client (the store's [`Clock`]), so the
//! client decides expiry, revocation and purge; the server's clock only
//! drives native expiry (sessions at `expires_at`, subject indexes after a
//! grace, receipts).
//!
//! Values are hashes read by field name (storage format 3, see
//! `format.rs`): a session's `sub`, `expires_at`, `auth_time`, `sealed`;
//! a marker's or tombstone's `revoked_at`, `keep_until` (and a marker's
//! `token` while a revoke is at work on it).
//!
//! [`Clock`]: broker_core::clock::Clock

use std::sync::LazyLock;

use redis::Script;

/// `num(n)`: a number as an integer string.
const NUM: &str = r#"
local function num(n) return string.format('%.0f', n) end
"#;

/// `rev(key)`: false if no marker or tombstone is stored under `key`, else
/// true, `revoked_at`, `keep_until` (both nil if unreadable).
const REV: &str = r#"
local function rev(key)
  if redis.call('EXISTS', key) == 0 then return false end
  local f = redis.call('HMGET', key, 'revoked_at', 'keep_until')
  local ra, ku = tonumber(f[1]), tonumber(f[2])
  if ra and ku then return true, ra, ku end
  return true, nil, nil
end
"#;

/// `fields(key)`: a session's `sub`, `expires_at`, `auth_time`, `sealed`
/// (false where absent), the reply the client decodes.
const FIELDS: &str = r#"
local function fields(key)
  return redis.call('HMGET', key, 'sub', 'expires_at', 'auth_time', 'sealed')
end
"#;

/// `blocks_create(key, now)`: a live (or unreadable) session is stored
/// under `key`.
const BLOCKS_CREATE: &str = r#"
local function blocks_create(key, now)
  if redis.call('EXISTS', key) == 0 then return false end
  local e = tonumber(redis.call('HGET', key, 'expires_at'))
  return e == nil or e > now
end
"#;

/// `subject_add(index, now, exp_at, member, grace)`: add a session to its
/// subject's index, trimming entries expired for `grace` seconds; the
/// index key expires `grace` after its last entry. Entries are never
/// removed otherwise (not by take, delete or revoke): the index lists every
/// jti saved for the subject that may still be stored. Needs [`NUM`].
const SUBJECT_ADD_FN: &str = r#"
local function subject_add(index, now, exp_at, member, grace)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', num(now - grace))
  if exp_at > now then
    redis.call('ZADD', index, 'GT', num(exp_at), member)
  end
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('EXPIREAT', index, num(tonumber(top[2]) + grace)) end
end
"#;

/// `store(session, lex, exp, member, now, sub, exp_at, auth_time, sealed)`
/// writes (or, if already expired, deletes) a session's hash (`HSET` of
/// all four fields: a hash of format 3 has no others) and its
/// bucket index entries (`exp_at` and `auth_time` as the client's decimal
/// strings); `drop(session, lex, exp, member)` removes them.
const STORE_FN: &str = r#"
local function store(session, lex, exp, member, now, sub, exp_at, auth_time, sealed)
  if tonumber(exp_at) > now then
    redis.call('HSET', session, 'sub', sub, 'expires_at', exp_at, 'auth_time', auth_time, 'sealed', sealed)
    redis.call('EXPIREAT', session, exp_at)
  else
    redis.call('DEL', session)
  end
  redis.call('ZADD', lex, 0, member)
  redis.call('ZADD', exp, exp_at, member)
end
local function drop(session, lex, exp, member)
  redis.call('DEL', session)
  redis.call('ZREM', lex, member)
  redis.call('ZREM', exp, member)
end
"#;

/// A script: the helpers it uses (in order), then its body.
pub(crate) fn script(helpers: &[&str], body: &str) -> Script {
    Script::new(&format!("{}{body}", helpers.concat()))
}

/// Run one read command on one key, on the primary: redis-rs routes a
/// script to the primary even on a handle that reads from replicas.
/// KEYS: the key. ARGV: the command, then its other arguments.
pub(crate) static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))"));

/// The fields of sessions of one slot, on the primary. KEYS: the sessions.
/// Returns one [`FIELDS`] reply per key.
pub(crate) static READ_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[FIELDS],
        r#"
local out = {}
for i, key in ipairs(KEYS) do out[i] = fields(key) end
return out
"#,
    )
});

/// Cluster save, step 1 (the subject's slot): refuse a session a kept
/// marker hides, else add it to its subject's index.
/// KEYS: subject index, marker. ARGV: now, expires_at, member, auth_time, grace.
/// Returns 1 (indexed), 0 (hidden: not indexed) or -1 (unreadable marker).
pub(crate) static SUBJECT_REGISTER: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[NUM, REV, SUBJECT_ADD_FN],
        r#"
local now = tonumber(ARGV[1])
local marked, ra, ku = rev(KEYS[2])
if marked then
  if not ra then return -1 end
  if tonumber(ARGV[4]) <= ra and ku > now then return 0 end
end
subject_add(KEYS[1], now, tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[5]))
return 1
"#,
    )
});

/// Cluster save, step 2 (the session's slot): create or save a session
/// unless step 1 found it hidden or the tombstone of a revoke that raced
/// the save (it passed step 1 before the marker was written) hides it.
/// KEYS: session, scan index, expiry index, create receipt, tombstone.
/// ARGV: sub, sealed, expires_at, auth_time, now, member, create ("1":
/// only if no live session), token, receipt ms, hidden ("1").
/// Returns 1 (stored, or this create's own earlier run), 0 (create found
/// a live session), 2 (hidden: not stored, an older session under the jti
/// removed).
pub(crate) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[REV, BLOCKS_CREATE, STORE_FN],
        r#"
local now = tonumber(ARGV[5])
if ARGV[7] == '1' and blocks_create(KEYS[1], now) then
  if redis.call('GET', KEYS[4]) == ARGV[8] then return 1 end
  return 0
end
if ARGV[10] == '1' then
  drop(KEYS[1], KEYS[2], KEYS[3], ARGV[6])
  return 2
end
local dead, ra, ku = rev(KEYS[5])
if dead and ((not ra) or (tonumber(ARGV[4]) <= ra and ku > now)) then
  drop(KEYS[1], KEYS[2], KEYS[3], ARGV[6])
  return 2
end
store(KEYS[1], KEYS[2], KEYS[3], ARGV[6], now, ARGV[1], ARGV[3], ARGV[4], ARGV[2])
if ARGV[7] == '1' then redis.call('SET', KEYS[4], ARGV[8], 'PX', ARGV[9]) end
return 1
"#,
    )
});

/// Single node only: a whole create or save in one script, the marker
/// checked atomically with the write (no tombstone needed).
/// KEYS: session, scan index, expiry index, create receipt, subject index, marker.
/// ARGV: sub, sealed, expires_at, auth_time, now, member, create, token,
/// receipt ms, grace.
/// Returns as [`SAVE`], or -1 (unreadable marker).
pub(crate) static SAVE_ONE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[NUM, REV, BLOCKS_CREATE, SUBJECT_ADD_FN, STORE_FN],
        r#"
local now = tonumber(ARGV[5])
if ARGV[7] == '1' and blocks_create(KEYS[1], now) then
  if redis.call('GET', KEYS[4]) == ARGV[8] then return 1 end
  return 0
end
local marked, ra, ku = rev(KEYS[6])
if marked then
  if not ra then return -1 end
  if tonumber(ARGV[4]) <= ra and ku > now then
    drop(KEYS[1], KEYS[2], KEYS[3], ARGV[6])
    return 2
  end
end
subject_add(KEYS[5], now, tonumber(ARGV[3]), ARGV[6], tonumber(ARGV[10]))
store(KEYS[1], KEYS[2], KEYS[3], ARGV[6], now, ARGV[1], ARGV[3], ARGV[4], ARGV[2])
if ARGV[7] == '1' then redis.call('SET', KEYS[4], ARGV[8], 'PX', ARGV[9]) end
return 1
"#,
    )
});

/// Atomically remove and return a live session (its [`FIELDS`]; an
/// absent one gives all `false`, an unreadable one is returned untouched:
/// the caller reports it). With a receipt key (Redis Cluster, where
/// redis-rs may re-send the call) the session is left under it, so that a
/// re-sent copy of the call returns it too; without one (one server: the
/// client never re-sends) it is deleted.
/// KEYS: session, scan index, expiry index[, receipt]. ARGV: now, member, receipt ms.
pub(crate) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[FIELDS],
        r#"
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then return fields(KEYS[4]) end
local f = fields(KEYS[1])
local e = tonumber(f[2])
if not e then return f end
if e <= tonumber(ARGV[1]) then return {} end
if KEYS[4] then
  redis.call('RENAME', KEYS[1], KEYS[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return f
"#,
    )
});

/// Remove a session (live or expired) and its bucket index entries.
/// KEYS: session, scan index, expiry index[, receipt (Redis Cluster)].
/// ARGV: member, receipt ms.
/// Returns 1 if it was stored (even if natively expired) or this call's
/// earlier run removed it, else 0.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then return 1 end
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
n = n + redis.call('ZREM', KEYS[3], ARGV[1])
if n == 0 then return 0 end
if KEYS[4] then redis.call('SET', KEYS[4], '1', 'PX', ARGV[2]) end
return 1
"#,
    )
});

/// Replace a session's `sealed` field if it equals the expected one,
/// keeping every other field and the expiry.
/// KEYS: session[, receipt (Redis Cluster)]. ARGV: expected, new, receipt ms.
/// Returns 1 if replaced (now or by this call's earlier run).
pub(crate) static REPLACE_BLOB: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
local f = redis.call('HMGET', KEYS[1], 'expires_at', 'sealed')
if not tonumber(f[1]) or f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'sealed', ARGV[2])
if KEYS[2] then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
return 1
"#,
    )
});

/// Revoke, step 0 (the registry's slot): register the subject's marker
/// (for scan, purge and drop) and count a revoke at work.
/// KEYS: markers by subject, markers by keep time, pending revokes.
/// ARGV: hex subject, keep_until. Returns the pending counter.
pub(crate) static REVOKE_REGISTER: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1])
return redis.call('ZINCRBY', KEYS[3], 1, ARGV[1])
"#,
    )
});

/// Revoke, step 1 (the subject's slot): merge into the marker (later
/// `revoked_at`, later `keep_until`; no expiry), mark it with this
/// revoke's token, and return the merged times and the subject's index.
/// KEYS: marker, subject index. ARGV: revoked_at, keep_until, token, now, grace.
/// Returns {revoked_at, keep_until, jti...}.
pub(crate) static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[NUM, REV],
        r#"
local ra = tonumber(ARGV[1])
local ku = tonumber(ARGV[2])
local _, ora, oku = rev(KEYS[1])
if ora then
  if ora > ra then ra = ora end
  if oku > ku then ku = oku end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'revoked_at', num(ra), 'keep_until', num(ku), 'token', ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', num(tonumber(ARGV[4]) - tonumber(ARGV[5])))
local out = {num(ra), num(ku)}
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do out[#out + 1] = m end
return out
"#,
    )
});

/// Revoke, step 2 (a session's slot): leave a tombstone of the subject on
/// the jti (merged; it hides a save of that session that started before
/// the marker was written), then delete the session if it belongs to the
/// subject.
/// KEYS: session, scan index, expiry index, tombstone, tombstone index, receipt.
/// ARGV: member, subject, revoked_at, keep_until, tombstone member,
/// receipt ms, only hidden ("1": delete the session only if the merged
/// revocation hides it).
/// Returns 1 if deleted (now or by this call's earlier run).
pub(crate) static TOMBSTONE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[NUM, REV],
        r#"
if redis.call('EXISTS', KEYS[6]) == 1 then return 1 end
local ra = tonumber(ARGV[3])
local ku = tonumber(ARGV[4])
local _, ora, oku = rev(KEYS[4])
if ora then
  if ora > ra then ra = ora end
  if oku > ku then ku = oku end
end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[4], 'revoked_at', num(ra), 'keep_until', num(ku))
redis.call('ZADD', KEYS[5], 'GT', num(ku), ARGV[5])
local f = redis.call('HMGET', KEYS[1], 'sub', 'auth_time')
local at = tonumber(f[2])
if f[1] ~= ARGV[2] or not at then return 0 end
if ARGV[7] == '1' and at > ra then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SET', KEYS[6], '1', 'PX', ARGV[6])
return 1
"#,
    )
});

/// Revoke, step 3 (the subject's slot): the revoke is done unless a later
/// one has marked the marker since; then drop the token.
/// KEYS: marker. ARGV: token. Returns 1 if this revoke was the latest.
pub(crate) static REVOKE_DONE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'token')
return 1
"#,
    )
});

/// Revoke, step 4 (the registry's slot): no revoke at work any more
/// unless one registered since (the counter moved on). With `now`, only
/// if the marker is no longer kept either.
/// KEYS: pending revokes, markers by keep time. ARGV: hex subject, counter[, now].
/// Returns 1 if the subject left the pending set.
pub(crate) static REVOKE_SETTLED: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
local c = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not c or tonumber(c) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] then
  local k = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if k and tonumber(k) > tonumber(ARGV[3]) then return 0 end
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"#,
    )
});

/// Purge (the subject's slot): forget a marker past its keep time with no
/// revoke at work on it. KEYS: marker. ARGV: now.
/// Returns 1 if the marker is gone (now or before), 0 if it stays.
pub(crate) static FORGET_MARKER: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[REV],
        r#"
local marked, ra, ku = rev(KEYS[1])
if not marked then return 1 end
if not ra or ku > tonumber(ARGV[1]) or redis.call('HEXISTS', KEYS[1], 'token') == 1 then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"#,
    )
});

/// Purge (the registry's slot): unregister a forgotten marker unless a
/// revoke registered it again since.
/// KEYS: markers by subject, markers by keep time, pending revokes.
/// ARGV: hex subject, now. Returns 1 if unregistered.
pub(crate) static UNREGISTER_MARKER: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
local k = redis.call('ZSCORE', KEYS[2], ARGV[1])
if k and tonumber(k) > tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"#,
    )
});

/// Remove the given members of a bucket if their expiry is at or before now.
/// KEYS: scan index, expiry index, then one session key per member.
/// ARGV: now, then the members. Returns how many were removed.
pub(crate) static PURGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
local now = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if s and tonumber(s) <= now then
    redis.call('DEL', KEYS[i + 1])
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
"#,
    )
});

/// Forget the given tombstones of a bucket if their keep time is at or
/// before now. KEYS: tombstone index, then one tombstone key per member.
/// ARGV: now, then the members. Returns how many were forgotten.
pub(crate) static PURGE_TOMBSTONES: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
local now = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= now then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
"#,
    )
});

/// Live and expired sessions of a bucket. KEYS: expiry index. ARGV: now.
pub(crate) static COUNT_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
return {redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf'),
        redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[1])}
"#,
    )
});

/// Store a create-once record unless one exists; return the stored value.
/// KEYS: records hash. ARGV: name, value.
pub(crate) static CREATE_RECORD: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then return ARGV[2] end
return redis.call('HGET', KEYS[1], ARGV[1])
"#,
    )
});

/// Compare-and-set a create-once record.
/// KEYS: records hash, receipt. ARGV: name, expected, value, receipt ms.
/// Returns 1 if replaced (now or by this call's earlier run).
pub(crate) static REPLACE_RECORD: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
return 1
"#,
    )
});

/// Write the storage format marker unless present; return the stored one.
/// KEYS: meta. ARGV: format.
pub(crate) static SETUP: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"#,
    )
});
