//! Lua scripts.
//!
//! The cluster-safe scripts touch keys of ONE hash slot only, all declared
//! in `KEYS`, so they run on Redis Cluster. The `*_ONE` scripts are for a
//! single (non-cluster) server only: each does a whole session operation in
//! one round trip, touching the session's slot and its subject's slot, and
//! `GET_ONE`/`TAKE_ONE`/`DELETE_ONE` build the subject's index and marker
//! keys themselves from the session value (prefix from `ARGV` + hex of the
//! subject + `}`, see `keys.rs`). Redis Cluster refuses them; a proxy that
//! shards keys over several servers would silently read the wrong server.
//! The store only runs them once it knows it talks to one server.
//!
//! Times are passed in by the client (`broker_core::unix_now()`), as every
//! backend uses the caller's clock for the contract's read-side checks.
//!
//! Session values follow `broker_core::codec::encode_session`:
//! byte 1 = version 0x01, bytes 2-9 = `expires_at`, 10-17 = `auth_time`
//! (big-endian i64), 18-19 = subject length (big-endian u16), then the
//! subject, then the sealed blob.

use std::sync::LazyLock;

use redis::Script;

/// `rd(v, pos)`: the big-endian non-negative i64 at 1-based `pos` (nil if
/// out of range).
const RD: &str = r#"
local function rd(v, pos)
  if not v or #v < pos + 7 then return nil end
  local n = 0
  for i = pos, pos + 7 do n = n * 256 + string.byte(v, i) end
  return n
end
"#;

/// `wr(n)`: `n` as a big-endian 8-byte string.
const WR: &str = r#"
local function wr(n)
  local t = {}
  for i = 8, 1, -1 do t[i] = string.char(n % 256); n = math.floor(n / 256) end
  return table.concat(t)
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

/// `subject_add(index, now, exp_at, member)`: add a session to its
/// subject's index, trimming expired entries; the index key expires with
/// its last session.
const SUBJECT_ADD_FN: &str = r#"
local function subject_add(index, now, exp_at, member)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  if tonumber(exp_at) > tonumber(now) then
    redis.call('ZADD', index, 'GT', exp_at, member)
  end
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('EXPIREAT', index, top[2]) end
end
"#;

/// `store(session, lex, exp, value, exp_at, now, member)`: write (or, if
/// already expired, delete) a session and its bucket index entries.
const STORE_FN: &str = r#"
local function store(session, lex, exp, value, exp_at, now, member)
  if tonumber(exp_at) > tonumber(now) then
    redis.call('SET', session, value, 'EXAT', exp_at)
  else
    redis.call('DEL', session)
  end
  redis.call('ZADD', lex, 0, member)
  redis.call('ZADD', exp, exp_at, member)
end
"#;

/// `take(session, lex, exp, now, member)`: remove and return a live
/// session; an unreadable value is returned untouched (the caller reports
/// it as corrupt), a missing or expired one as false. Needs [`RD`],
/// [`IS_SESSION`].
const TAKE_FN: &str = r#"
local function take(session, lex, exp, now, member)
  local v = redis.call('GET', session)
  if not v then return false end
  if not is_session(v) then return v end
  if rd(v, 2) <= tonumber(now) then return false end
  redis.call('DEL', session)
  redis.call('ZREM', lex, member)
  redis.call('ZREM', exp, member)
  return v
end
"#;

/// `subject_hex(v)`: the lowercase hex of a session value's subject (as
/// `keys::hex`), nil if the value is unreadable. One `string.format` over
/// the subject's bytes (at most 255). Needs [`IS_SESSION`].
const SUBJECT_HEX: &str = r#"
local function subject_hex(v)
  if not is_session(v) then return nil end
  local n = string.byte(v, 18) * 256 + string.byte(v, 19)
  if n == 0 or n > 255 or #v < 19 + n then return nil end
  return string.format(string.rep('%02x', n), string.byte(v, 20, 19 + n))
end
"#;

/// A script: the helpers it uses (in order), then its body.
fn script(helpers: &[&str], body: &str) -> Script {
    Script::new(&format!("{}{body}", helpers.concat()))
}

/// Reads `ARGV[1]`, a key it does not declare: succeeds only on a server
/// that lets the `*_ONE` scripts do what they need (not Redis Cluster, not
/// Dragonfly's default).
pub(crate) static READ_UNDECLARED: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('EXISTS', ARGV[1])"));

/// Create or save a session.
/// KEYS: session, scan index, expiry index.
/// ARGV: value, expires_at, now, member, create ("1" = only if no live session).
/// Returns 1, or 0 when `create` found a live (or unreadable) session.
pub(crate) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD, IS_SESSION, BLOCKS_CREATE, STORE_FN],
        r#"
local now = tonumber(ARGV[3])
if ARGV[5] == '1' and blocks_create(KEYS[1], now) then return 0 end
store(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], now, ARGV[4])
return 1
"#,
    )
});

/// Add a session to its subject's index, trimming expired entries; the
/// index key expires with its last session.
/// KEYS: subject index. ARGV: now, expires_at, member.
pub(crate) static SUBJECT_ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[SUBJECT_ADD_FN],
        r#"
subject_add(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
"#,
    )
});

/// Single node only: [`SUBJECT_ADD`] then [`SAVE`] in one script (the
/// subject index is still written before the session). A refused create
/// writes nothing.
/// KEYS: session, scan index, expiry index, subject index.
/// ARGV: value, expires_at, now, member, create. Returns as [`SAVE`].
pub(crate) static SAVE_ONE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD, IS_SESSION, BLOCKS_CREATE, SUBJECT_ADD_FN, STORE_FN],
        r#"
local now = tonumber(ARGV[3])
if ARGV[5] == '1' and blocks_create(KEYS[1], now) then return 0 end
subject_add(KEYS[4], ARGV[3], ARGV[2], ARGV[4])
store(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], now, ARGV[4])
return 1
"#,
    )
});

/// Single node only: a session and its subject's revocation marker.
/// KEYS: session. ARGV: marker key prefix.
/// Returns nil, or {session value, marker value or nil}.
pub(crate) static GET_ONE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[IS_SESSION, SUBJECT_HEX],
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return false end
local h = subject_hex(v)
local m = false
if h then m = redis.call('GET', ARGV[1] .. h .. '}') end
return {v, m}
"#,
    )
});

/// Atomically remove and return a live session (an unreadable value is
/// returned untouched so the caller reports it as corrupt).
/// KEYS: session, scan index, expiry index. ARGV: now, member.
pub(crate) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD, IS_SESSION, TAKE_FN],
        r#"
return take(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
"#,
    )
});

/// Single node only: [`TAKE`], then drop the session from its subject's
/// index and read the subject's revocation marker.
/// KEYS: session, scan index, expiry index.
/// ARGV: now, member, subject index key prefix, marker key prefix.
/// Returns nil, or {value, marker value or nil}.
pub(crate) static TAKE_ONE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD, IS_SESSION, TAKE_FN, SUBJECT_HEX],
        r#"
local v = take(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if not v then return false end
local h = subject_hex(v)
local m = false
if h then
  redis.call('ZREM', ARGV[3] .. h .. '}', ARGV[2])
  m = redis.call('GET', ARGV[4] .. h .. '}')
end
return {v, m}
"#,
    )
});

/// After a take on a cluster: drop the session from its subject's index
/// and read the subject's revocation marker (one slot: the subject's).
/// KEYS: subject index, marker. ARGV: member. Returns the marker or nil.
pub(crate) static FORGET_AND_MARKER: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('GET', KEYS[2])
"#,
    )
});

/// Remove a session (live or expired) and its index entries.
/// KEYS: session, scan index, expiry index. ARGV: member.
/// Returns {value or nil, 1 if it was stored (even if natively expired)}.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
local v = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local n = redis.call('ZREM', KEYS[3], ARGV[1])
if v then n = 1 end
return {v or false, n}
"#,
    )
});

/// Single node only: [`DELETE`], then drop the session from its subject's
/// index. KEYS: session, scan index, expiry index.
/// ARGV: member, subject index key prefix.
/// Returns 1 if it was stored (even if natively expired), else 0.
pub(crate) static DELETE_ONE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[IS_SESSION, SUBJECT_HEX],
        r#"
local v = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local n = redis.call('ZREM', KEYS[3], ARGV[1])
if v then
  n = 1
  local h = subject_hex(v)
  if h then redis.call('ZREM', ARGV[2] .. h .. '}', ARGV[1]) end
end
return n
"#,
    )
});

/// Replace a session's sealed blob if it equals the expected one, keeping
/// every other field and the expiry.
/// KEYS: session. ARGV: expected, new. Returns 1 if replaced.
pub(crate) static REPLACE_BLOB: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[IS_SESSION],
        r#"
local v = redis.call('GET', KEYS[1])
if not is_session(v) then return 0 end
local head = 19 + string.byte(v, 18) * 256 + string.byte(v, 19)
if #v <= head then return 0 end
if string.sub(v, head + 1) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], string.sub(v, 1, head) .. ARGV[2], 'KEEPTTL')
return 1
"#,
    )
});

/// Upsert a subject's revocation marker (merge = max of both times; it
/// expires natively at `keep_until`) and return the subject's indexed jtis.
/// KEYS: marker, subject index. ARGV: revoked_at, keep_until, now.
pub(crate) static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD, WR],
        r#"
local ra = tonumber(ARGV[1])
local ku = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local old = redis.call('GET', KEYS[1])
if old and #old == 17 and string.byte(old, 1) == 1 then
  local ora = rd(old, 2)
  local oku = rd(old, 10)
  if ora > ra then ra = ora end
  if oku > ku then ku = oku end
end
if ku > now then
  redis.call('SET', KEYS[1], string.char(1) .. wr(ra) .. wr(ku), 'EXAT', string.format('%.0f', ku))
else
  redis.call('DEL', KEYS[1])
end
return redis.call('ZRANGE', KEYS[2], 0, -1)
"#,
    )
});

/// Delete a session if it belongs to the given subject.
/// KEYS: session, scan index, expiry index.
/// ARGV: member, subject length (u16 big-endian) .. subject bytes.
/// Returns 1 if deleted.
pub(crate) static DELETE_IF_SUBJECT: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[IS_SESSION],
        r#"
local v = redis.call('GET', KEYS[1])
if not is_session(v) then return 0 end
if string.sub(v, 18, 17 + #ARGV[2]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
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
/// KEYS: records hash. ARGV: name, expected, value. Returns 1 if replaced.
pub(crate) static REPLACE_RECORD: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
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
