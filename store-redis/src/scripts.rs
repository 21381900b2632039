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
//! Session values follow `broker_core::codec::encode_session`: byte 1 =
//! version 0x01, bytes 2-9 = `expires_at`, 10-17 = `auth_time` (big-endian
//! i64), 18-19 = subject length (big-endian u16), then the subject, then
//! the sealed blob. Markers and tombstones start with
//! `broker_core::codec::encode_revocation` (0x01, `revoked_at`,
//! `keep_until`); a marker may go on with the token of a revoke at work.
//!
//! [`Clock`]: broker_core::clock::Clock

use std::sync::LazyLock;

use redis::Script;

/// `rd(v, pos)`: the big-endian non-negative i64 at 1-based `pos` (nil if
/// out of range); `num(n)`: a number as an integer string.
const RD: &str = r#"
local function rd(v, pos)
  if not v or #v < pos + 7 then return nil end
  local n = 0
  for i = pos, pos + 7 do n = n * 256 + string.byte(v, i) end
  return n
end
local function num(n) return string.format('%.0f', n) end
"#;

/// `wr(n)`: `n` as a big-endian 8-byte string.
const WR: &str = r#"
local function wr(n)
  local t = {}
  for i = 8, 1, -1 do t[i] = string.char(n % 256); n = math.floor(n / 256) end
  return table.concat(t)
end
"#;

/// `rev(v)`: `revoked_at, keep_until` of a marker or tombstone value, nil
/// if there is none or it is unreadable. Needs [`RD`].
const REV: &str = r#"
local function rev(v)
  if not v or #v < 17 or string.byte(v, 1) ~= 1 then return nil end
  return rd(v, 2), rd(v, 10)
end
"#;

/// `is_session(v)`: `v` has a session value's shape.
const IS_SESSION: &str = r#"
local function is_session(v)
  return v and #v >= 20 and string.byte(v, 1) == 1
end
"#;

/// `blocks_create(key, now)`: a live (or unreadable) session is stored
/// under `key`. Needs [`RD`], [`IS_SESSION`].
const BLOCKS_CREATE: &str = r#"
local function blocks_create(key, now)
  local old = redis.call('GET', key)
  if not old then return false end
  local e = nil
  if is_session(old) then e = rd(old, 2) end
  return e == nil or e > now
end
"#;

/// `subject_add(index, now, exp_at, member, grace)`: add a session to its
/// subject's index, trimming entries expired for `grace` seconds; the
/// index key expires `grace` after its last entry. Entries are never
/// removed otherwise (not by take, delete or revoke): the index lists every
/// jti saved for the subject that may still be stored. Needs [`RD`].
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

/// `store(session, lex, exp, value, exp_at, now, member)` writes (or, if
/// already expired, deletes) a session and its bucket index entries;
/// `drop(session, lex, exp, member)` removes them. Needs [`RD`].
const STORE_FN: &str = r#"
local function store(session, lex, exp, value, exp_at, now, member)
  if exp_at > now then
    redis.call('SET', session, value, 'EXAT', num(exp_at))
  else
    redis.call('DEL', session)
  end
  redis.call('ZADD', lex, 0, member)
  redis.call('ZADD', exp, num(exp_at), member)
end
local function drop(session, lex, exp, member)
  redis.call('DEL', session)
  redis.call('ZREM', lex, member)
  redis.call('ZREM', exp, member)
end
"#;

/// A script: the helpers it uses (in order), then its body.
fn script(helpers: &[&str], body: &str) -> Script {
    Script::new(&format!("{}{body}", helpers.concat()))
}

/// Run one read command on one key, on the primary: redis-rs routes a
/// script to the primary even on a handle that reads from replicas.
/// KEYS: the key. ARGV: the command, then its other arguments.
pub(crate) static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))"));

/// `MGET` of keys of one slot, on the primary. KEYS: the keys.
pub(crate) static READ_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('MGET', unpack(KEYS))"));

/// Cluster save, step 1 (the subject's slot): refuse a session a kept
/// marker hides, else add it to its subject's index.
/// KEYS: subject index, marker. ARGV: now, expires_at, member, auth_time, grace.
/// Returns 1 (indexed), 0 (hidden: not indexed) or -1 (unreadable marker).
pub(crate) static SUBJECT_REGISTER: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD, REV, SUBJECT_ADD_FN],
        r#"
local now = tonumber(ARGV[1])
local m = redis.call('GET', KEYS[2])
if m then
  local ra, ku = rev(m)
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
/// ARGV: value, expires_at, now, member, create ("1": only if no live
/// session), token, receipt ms, hidden ("1"), auth_time.
/// Returns 1 (stored, or this create's own earlier run), 0 (create found
/// a live session), 2 (hidden: not stored, an older session under the jti
/// removed).
pub(crate) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD, REV, IS_SESSION, BLOCKS_CREATE, STORE_FN],
        r#"
local now = tonumber(ARGV[3])
if ARGV[5] == '1' and blocks_create(KEYS[1], now) then
  if redis.call('GET', KEYS[4]) == ARGV[6] then return 1 end
  return 0
end
if ARGV[8] == '1' then
  drop(KEYS[1], KEYS[2], KEYS[3], ARGV[4])
  return 2
end
local t = redis.call('GET', KEYS[5])
if t then
  local ra, ku = rev(t)
  if (not ra) or (tonumber(ARGV[9]) <= ra and ku > now) then
    drop(KEYS[1], KEYS[2], KEYS[3], ARGV[4])
    return 2
  end
end
store(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]), now, ARGV[4])
if ARGV[5] == '1' then redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[7]) end
return 1
"#,
    )
});

/// Single node only: a whole create or save in one script, the marker
/// checked atomically with the write (no tombstone needed).
/// KEYS: session, scan index, expiry index, create receipt, subject index, marker.
/// ARGV: value, expires_at, now, member, create, token, receipt ms, auth_time, grace.
/// Returns as [`SAVE`], or -1 (unreadable marker).
pub(crate) static SAVE_ONE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD, REV, IS_SESSION, BLOCKS_CREATE, SUBJECT_ADD_FN, STORE_FN],
        r#"
local now = tonumber(ARGV[3])
local exp_at = tonumber(ARGV[2])
if ARGV[5] == '1' and blocks_create(KEYS[1], now) then
  if redis.call('GET', KEYS[4]) == ARGV[6] then return 1 end
  return 0
end
local m = redis.call('GET', KEYS[6])
if m then
  local ra, ku = rev(m)
  if not ra then return -1 end
  if tonumber(ARGV[8]) <= ra and ku > now then
    drop(KEYS[1], KEYS[2], KEYS[3], ARGV[4])
    return 2
  end
end
subject_add(KEYS[5], now, exp_at, ARGV[4], tonumber(ARGV[9]))
store(KEYS[1], KEYS[2], KEYS[3], ARGV[1], exp_at, now, ARGV[4])
if ARGV[5] == '1' then redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[7]) end
return 1
"#,
    )
});

/// Atomically remove and return a live session, leaving it under this
/// call's receipt so that a re-sent copy of the call returns it too (an
/// unreadable value is returned untouched: the caller reports it).
/// KEYS: session, scan index, expiry index, receipt. ARGV: now, member, receipt ms.
pub(crate) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD, IS_SESSION],
        r#"
local r = redis.call('GET', KEYS[4])
if r then return r end
local v = redis.call('GET', KEYS[1])
if not v then return false end
if not is_session(v) then return v end
if rd(v, 2) <= tonumber(ARGV[1]) then return false end
redis.call('RENAME', KEYS[1], KEYS[4])
redis.call('PEXPIRE', KEYS[4], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return v
"#,
    )
});

/// Remove a session (live or expired) and its bucket index entries.
/// KEYS: session, scan index, expiry index, receipt. ARGV: member, receipt ms.
/// Returns 1 if it was stored (even if natively expired) or this call's
/// earlier run removed it, else 0.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
if redis.call('EXISTS', KEYS[4]) == 1 then return 1 end
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
n = n + redis.call('ZREM', KEYS[3], ARGV[1])
if n == 0 then return 0 end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
return 1
"#,
    )
});

/// Replace a session's sealed blob if it equals the expected one, keeping
/// every other field and the expiry.
/// KEYS: session, receipt. ARGV: expected, new, receipt ms.
/// Returns 1 if replaced (now or by this call's earlier run).
pub(crate) static REPLACE_BLOB: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[IS_SESSION],
        r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
local v = redis.call('GET', KEYS[1])
if not is_session(v) then return 0 end
local head = 19 + string.byte(v, 18) * 256 + string.byte(v, 19)
if #v <= head then return 0 end
if string.sub(v, head + 1) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], string.sub(v, 1, head) .. ARGV[2], 'KEEPTTL')
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
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
        &[RD, WR, REV],
        r#"
local ra = tonumber(ARGV[1])
local ku = tonumber(ARGV[2])
local ora, oku = rev(redis.call('GET', KEYS[1]))
if ora then
  if ora > ra then ra = ora end
  if oku > ku then ku = oku end
end
redis.call('SET', KEYS[1], string.char(1) .. wr(ra) .. wr(ku) .. ARGV[3])
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
/// ARGV: member, subject length (u16 big-endian) .. subject bytes,
/// revoked_at, keep_until, tombstone member, receipt ms, only hidden ("1":
/// delete the session only if the merged revocation hides it).
/// Returns 1 if deleted (now or by this call's earlier run).
pub(crate) static TOMBSTONE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD, WR, REV, IS_SESSION],
        r#"
if redis.call('EXISTS', KEYS[6]) == 1 then return 1 end
local ra = tonumber(ARGV[3])
local ku = tonumber(ARGV[4])
local ora, oku = rev(redis.call('GET', KEYS[4]))
if ora then
  if ora > ra then ra = ora end
  if oku > ku then ku = oku end
end
redis.call('SET', KEYS[4], string.char(1) .. wr(ra) .. wr(ku))
redis.call('ZADD', KEYS[5], 'GT', num(ku), ARGV[5])
local v = redis.call('GET', KEYS[1])
if not is_session(v) or string.sub(v, 18, 17 + #ARGV[2]) ~= ARGV[2] then return 0 end
if ARGV[7] == '1' and rd(v, 10) > ra then return 0 end
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
local v = redis.call('GET', KEYS[1])
if not v or #v <= 17 or string.sub(v, 18) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], string.sub(v, 1, 17))
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
        &[RD, REV],
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return 1 end
local ra, ku = rev(v)
if not ra or ku > tonumber(ARGV[1]) or #v > 17 then return 0 end
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
