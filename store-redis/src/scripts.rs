//! Lua scripts. Each touches keys of ONE hash slot only, all declared in
//! `KEYS`, so every script runs on Redis Cluster. Times are passed in by the
//! client (`broker_core::unix_now()`), as every backend uses the caller's
//! clock for the contract's read-side checks.
//!
//! Session values follow `broker_core::codec::encode_session`:
//! byte 1 = version 0x01, bytes 2-9 = `expires_at`, 10-17 = `auth_time`
//! (big-endian i64), 18-19 = subject length (big-endian u16), then the
//! subject, then the sealed blob.

use std::sync::LazyLock;

use redis::Script;

/// Shared helpers: `rd(v, pos)` reads a big-endian non-negative i64 at
/// 1-based `pos` (nil if out of range), `wr(n)` writes one,
/// `is_session(v)` checks a session value's shape.
const PRELUDE: &str = r#"
local function rd(v, pos)
  if not v or #v < pos + 7 then return nil end
  local n = 0
  for i = pos, pos + 7 do n = n * 256 + string.byte(v, i) end
  return n
end
local function wr(n)
  local t = {}
  for i = 8, 1, -1 do t[i] = string.char(n % 256); n = math.floor(n / 256) end
  return table.concat(t)
end
local function is_session(v)
  return v and #v >= 20 and string.byte(v, 1) == 1
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// Create or save a session.
/// KEYS: session, scan index, expiry index.
/// ARGV: value, expires_at, now, member, create ("1" = only if no live session).
/// Returns 1, or 0 when `create` found a live (or unreadable) session.
pub(crate) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local exp_at = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if ARGV[5] == '1' then
  local old = redis.call('GET', KEYS[1])
  if old then
    local e = nil
    if is_session(old) then e = rd(old, 2) end
    if e == nil or e > now then return 0 end
  end
end
if exp_at > now then
  redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
redis.call('ZADD', KEYS[2], 0, ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
return 1
"#,
    )
});

/// Add a session to its subject's index, trimming expired entries; the
/// index key expires with its last session.
/// KEYS: subject index. ARGV: now, expires_at, member.
pub(crate) static SUBJECT_ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if tonumber(ARGV[2]) > tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[3])
end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('EXPIREAT', KEYS[1], top[2]) end
return 1
"#,
    )
});

/// Atomically remove and return a live session (an unreadable value is
/// returned untouched so the caller reports it as corrupt).
/// KEYS: session, scan index, expiry index. ARGV: now, member.
pub(crate) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return false end
if not is_session(v) then return v end
if rd(v, 2) <= tonumber(ARGV[1]) then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return v
"#,
    )
});

/// Remove a session (live or expired) and its index entries.
/// KEYS: session, scan index, expiry index. ARGV: member.
/// Returns {value or nil, 1 if it was stored (even if natively expired)}.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
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

/// Replace a session's sealed blob if it equals the expected one, keeping
/// every other field and the expiry.
/// KEYS: session. ARGV: expected, new. Returns 1 if replaced.
pub(crate) static REPLACE_BLOB: LazyLock<Script> = LazyLock::new(|| {
    script(
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
        r#"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"#,
    )
});
