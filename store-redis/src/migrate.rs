//! `setup`'s format record and the in-place migration of a namespace from
//! format 2 (`store-redis/2`: sessions, markers and tombstones as strings
//! of fixed-offset binary) to format 3 (hashes read by field name).
//!
//! The migration walks the namespace's own indexes: each bucket's scan
//! index (sessions) and tombstone index, then the marker registry. Each
//! batch of keys is converted by one script on their one slot, which
//! turns every key that is still a string into its hash (keeping its
//! expiry) and leaves hashes alone, so conversions are atomic per key,
//! idempotent, and safe to run from several processes at once. A value
//! format 2 could not read either is kept whole in a hash without the
//! fields a read needs, so it still reads as corrupt. Only then does the
//! format marker move from 2 to 3 (compare-and-set): a worker of this
//! version uses the namespace only once every key is converted, and one
//! that stopped halfway (crash, timeout) leaves format 2 recorded, so the
//! next `setup` resumes. Workers of the older version must be stopped
//! first: one still running would write format-2 strings again.

use std::sync::LazyLock;

use broker_core::{FormatError, Result, StoreError};
use futures::{StreamExt, TryStreamExt, stream};
use redis::Script;
use redis::aio::ConnectionLike;

use crate::format::{self, FORMAT_VERSION, STORE};
use crate::keys::{BUCKETS, unhex};
use crate::scripts::script;
use crate::{FAN_OUT, RedisStore, scripts};

/// Keys converted per script call.
const MIGRATE_BATCH: usize = 256;

/// `rd(v, pos)`: the big-endian non-negative i64 at 1-based `pos` of a
/// format-2 value; `num(n)`: a number as an integer string.
const RD: &str = r#"
local function rd(v, pos)
  local n = 0
  for i = pos, pos + 7 do n = n * 256 + string.byte(v, i) end
  return n
end
local function num(n) return string.format('%.0f', n) end
"#;

/// Format 2 → 3 for sessions of one slot. A format-2 session was `0x01`,
/// `expires_at` and `auth_time` (i64 big-endian), the subject's length
/// (u16 big-endian), the subject, the sealed blob (at least one byte).
/// KEYS: session keys. Returns how many were converted.
static MIGRATE_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD],
        r#"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k).ok == 'string' then
    local v = redis.call('GET', k)
    local ttl = redis.call('PTTL', k)
    redis.call('DEL', k)
    local sl = nil
    if #v >= 19 and string.byte(v, 1) == 1 then
      sl = string.byte(v, 18) * 256 + string.byte(v, 19)
    end
    if sl and #v > 19 + sl then
      redis.call('HSET', k, 'sub', string.sub(v, 20, 19 + sl),
        'expires_at', num(rd(v, 2)), 'auth_time', num(rd(v, 10)),
        'sealed', string.sub(v, 20 + sl))
    else
      redis.call('HSET', k, 'sealed', v)
    end
    if ttl > 0 then redis.call('PEXPIRE', k, ttl) end
    n = n + 1
  end
end
return n
"#,
    )
});

/// Format 2 → 3 for markers or tombstones of one slot. A format-2 one was
/// `0x01`, `revoked_at` and `keep_until` (i64 big-endian), then (a marker
/// with a revoke at work) the revoke's token.
/// KEYS: marker or tombstone keys. Returns how many were converted.
static MIGRATE_REVOCATIONS: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RD],
        r#"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k).ok == 'string' then
    local v = redis.call('GET', k)
    redis.call('DEL', k)
    if #v >= 17 and string.byte(v, 1) == 1 then
      redis.call('HSET', k, 'revoked_at', num(rd(v, 2)), 'keep_until', num(rd(v, 10)))
      if #v > 17 then redis.call('HSET', k, 'token', string.sub(v, 18)) end
    else
      redis.call('HSET', k, 'unreadable', v)
    end
    n = n + 1
  end
end
return n
"#,
    )
});

/// Move the format marker from ARGV[1] to ARGV[2] (or write ARGV[2] if
/// the namespace was dropped meanwhile); return the marker then stored.
/// KEYS: meta.
static MARK_FORMAT: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return v end
redis.call('SET', KEYS[1], ARGV[2])
return ARGV[2]
"#,
    )
});

/// A format error as `setup` returns it.
fn refused(op: &'static str, e: FormatError) -> StoreError {
    StoreError::backend(op, e)
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Record [`FORMAT_VERSION`] in a new namespace, or check the recorded
    /// format and migrate an older one in place.
    pub(crate) async fn check_format(&self, op: &'static str) -> Result<()> {
        let meta = self.keys.meta();
        let current = format::marker(FORMAT_VERSION);
        let stored: Vec<u8> = self
            .run(op, scripts::SETUP.key(&meta).arg(&current))
            .await?;
        let found = format::version(&stored).map_err(|e| refused(op, e))?;
        if found == FORMAT_VERSION {
            return Ok(());
        }
        tracing::warn!(
            "store-redis: migrating namespace {} from storage format {found} to {FORMAT_VERSION}",
            self.namespace
        );
        self.migrate_from_2(op).await?;
        let stored: Vec<u8> = self
            .run(
                op,
                MARK_FORMAT
                    .key(&meta)
                    .arg(format::marker(found))
                    .arg(&current),
            )
            .await?;
        match format::version(&stored).map_err(|e| refused(op, e))? {
            FORMAT_VERSION => Ok(()),
            _ => Err(refused(op, FormatError::unreadable(STORE, FORMAT_VERSION))),
        }
    }

    /// Convert every session, tombstone and marker still in format 2.
    async fn migrate_from_2(&self, op: &'static str) -> Result<()> {
        for b in 0..BUCKETS {
            self.convert(op, &self.keys.lex(b), &MIGRATE_SESSIONS, |m| {
                self.keys.session_hex(b, m)
            })
            .await?;
            self.convert(op, &self.keys.tombstones(b), &MIGRATE_REVOCATIONS, |m| {
                self.keys.tombstone_of(b, m)
            })
            .await?;
        }
        // Markers: each in its subject's own slot.
        let registry = self.keys.markers();
        let mut from = 0usize;
        loop {
            let members = self.index_page(op, &registry, from).await?;
            let page = members.len();
            let markers: Vec<String> = members
                .into_iter()
                .filter(|m| unhex(m).is_some())
                .map(|m| self.keys.marker_hex(&m))
                .collect();
            stream::iter(markers)
                .map(|marker: String| async move {
                    self.run::<i64>(op, &MIGRATE_REVOCATIONS.key(marker)).await
                })
                .buffer_unordered(FAN_OUT)
                .try_for_each(|_| async { Ok(()) })
                .await?;
            if page < MIGRATE_BATCH {
                return Ok(());
            }
            from += MIGRATE_BATCH;
        }
    }

    /// Run `script` on the keys (`key_of` each member) of a zset index of
    /// one slot, a batch at a time.
    async fn convert(
        &self,
        op: &'static str,
        index: &str,
        script: &Script,
        key_of: impl Fn(&str) -> String,
    ) -> Result<()> {
        let mut from = 0usize;
        loop {
            let members = self.index_page(op, index, from).await?;
            if !members.is_empty() {
                let mut inv = script.prepare_invoke();
                for m in &members {
                    inv.key(key_of(m));
                }
                let _: i64 = self.run(op, &inv).await?;
            }
            if members.len() < MIGRATE_BATCH {
                return Ok(());
            }
            from += MIGRATE_BATCH;
        }
    }

    /// Members `from..from + MIGRATE_BATCH` of a zset, on its primary.
    async fn index_page(&self, op: &'static str, index: &str, from: usize) -> Result<Vec<String>> {
        let to = (from + MIGRATE_BATCH - 1).to_string();
        self.read(op, "ZRANGE", index, &[&from.to_string(), &to])
            .await
    }
}
