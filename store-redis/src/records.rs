//! Create-once records, peers, stats, and dropping a namespace.

use std::collections::BTreeSet;

use broker_core::{PeerJwks, Result, StoreStats};
use redis::aio::ConnectionLike;

use crate::error::utf8;
use crate::format;
use crate::keys::{BUCKETS, unhex};
use crate::{RedisStore, receipt_ms, scripts, token};

/// Entries read per round trip while dropping a namespace.
const DROP_BATCH: usize = 1000;

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub(crate) async fn create_record_impl(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        const OP: &str = "create_record";
        self.run(
            OP,
            scripts::CREATE_RECORD
                .key(self.keys.records())
                .arg(name)
                .arg(value),
        )
        .await
    }

    pub(crate) async fn get_record_impl(&self, name: &str) -> Result<Option<Vec<u8>>> {
        const OP: &str = "get_record";
        self.read(OP, "HGET", &self.keys.records(), &[name]).await
    }

    /// Compare-and-set; a re-sent copy of a call that replaced answers true
    /// too (the script leaves a receipt).
    pub(crate) async fn replace_record_impl(
        &self,
        name: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool> {
        const OP: &str = "replace_record";
        let n: i64 = self
            .run(
                OP,
                scripts::REPLACE_RECORD
                    .key(self.keys.records())
                    .key(self.keys.record_receipt(&token()))
                    .arg(name)
                    .arg(expected)
                    .arg(value)
                    .arg(receipt_ms()),
            )
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn list_records_impl(&self) -> Result<Vec<(String, Vec<u8>)>> {
        const OP: &str = "list_records";
        let all: Vec<(Vec<u8>, Vec<u8>)> =
            self.read(OP, "HGETALL", &self.keys.records(), &[]).await?;
        let mut out = all
            .into_iter()
            .map(|(k, v)| Ok((utf8(OP, k, "record name")?, v)))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    pub(crate) async fn save_peer_impl(&self, peer: &PeerJwks) -> Result<()> {
        const OP: &str = "save_peer";
        let _: i64 = self
            .cmd(
                OP,
                redis::cmd("HSET")
                    .arg(self.keys.peers())
                    .arg(&peer.issuer)
                    .arg(format::encode_peer(peer)),
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn load_peers_impl(&self) -> Result<Vec<PeerJwks>> {
        const OP: &str = "load_peers";
        let all: Vec<(Vec<u8>, Vec<u8>)> =
            self.read(OP, "HGETALL", &self.keys.peers(), &[]).await?;
        let mut out = all
            .into_iter()
            .map(|(k, v)| format::decode_peer(OP, utf8(OP, k, "issuer")?, &v))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        Ok(out)
    }

    pub(crate) async fn delete_peer_impl(&self, issuer: &str) -> Result<bool> {
        const OP: &str = "delete_peer";
        let n: i64 = self
            .cmd(OP, redis::cmd("HDEL").arg(self.keys.peers()).arg(issuer))
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn stats_impl(&self) -> Result<StoreStats> {
        const OP: &str = "stats";
        let now = self.clock.now();
        let mut stats = StoreStats::default();
        for b in 0..BUCKETS {
            let (live, expired): (u64, u64) = self
                .run(OP, scripts::COUNT_BUCKET.key(self.keys.exp(b)).arg(now))
                .await?;
            stats.live_sessions += live;
            stats.expired_sessions += expired;
        }
        stats.peers = self.read(OP, "HLEN", &self.keys.peers(), &[]).await?;
        stats.records = self.read(OP, "HLEN", &self.keys.records(), &[]).await?;
        stats.revocations = self.read(OP, "ZCARD", &self.keys.markers(), &[]).await?;
        Ok(stats)
    }

    /// Deletes the sessions, bucket indexes, tombstones,
    /// records, peers and the format marker; every registered revocation
    /// marker with its subject's index; and the index of every subject that
    /// still has a stored session. Left to expire by themselves (they hold
    /// hex ids, times and sealed values only): receipts (within
    /// [`crate::RECEIPT_TTL`]) and indexes of subjects with no session and
    /// no marker left (with their last entry).
    pub(crate) async fn drop_impl(&self) -> Result<()> {
        const OP: &str = "drop_namespace";
        let last = (DROP_BATCH - 1).to_string();
        let first = ["0", last.as_str()];
        for b in 0..BUCKETS {
            let lex = self.keys.lex(b);
            loop {
                let members: Vec<String> = self.read(OP, "ZRANGE", &lex, &first).await?;
                if members.is_empty() {
                    break;
                }
                let session_keys: Vec<String> = members
                    .iter()
                    .map(|m| self.keys.session_hex(b, m))
                    .collect();
                let mut inv = scripts::READ_SESSIONS.prepare_invoke();
                for k in &session_keys {
                    inv.key(k);
                }
                let values: Vec<Vec<Option<Vec<u8>>>> = self.run(OP, &inv).await?;
                let subjects: BTreeSet<String> = values
                    .into_iter()
                    .filter_map(|fields| format::decode_session(OP, "", fields).ok().flatten())
                    .map(|s| s.sub)
                    .collect();
                for sub in &subjects {
                    let _: i64 = self
                        .cmd(OP, redis::cmd("DEL").arg(self.keys.subject(sub)))
                        .await?;
                }
                let _: i64 = self.cmd(OP, redis::cmd("DEL").arg(&session_keys)).await?;
                let _: i64 = self
                    .cmd(OP, redis::cmd("ZREM").arg(&lex).arg(&members))
                    .await?;
            }
            let tombstones = self.keys.tombstones(b);
            loop {
                let members: Vec<String> = self.read(OP, "ZRANGE", &tombstones, &first).await?;
                if members.is_empty() {
                    break;
                }
                let keys: Vec<String> = members
                    .iter()
                    .map(|m| self.keys.tombstone_of(b, m))
                    .collect();
                let _: i64 = self.cmd(OP, redis::cmd("DEL").arg(&keys)).await?;
                let _: i64 = self
                    .cmd(OP, redis::cmd("ZREM").arg(&tombstones).arg(&members))
                    .await?;
            }
            let _: i64 = self
                .cmd(
                    OP,
                    redis::cmd("DEL")
                        .arg(&lex)
                        .arg(self.keys.exp(b))
                        .arg(&tombstones),
                )
                .await?;
        }
        let registry = self.keys.markers();
        loop {
            let members: Vec<String> = self.read(OP, "ZRANGE", &registry, &first).await?;
            if members.is_empty() {
                break;
            }
            for member in members.iter().filter(|m| unhex(m).is_some()) {
                let _: i64 = self
                    .cmd(
                        OP,
                        redis::cmd("DEL")
                            .arg(self.keys.subject_hex(member))
                            .arg(self.keys.marker_hex(member)),
                    )
                    .await?;
            }
            let _: i64 = self
                .cmd(OP, redis::cmd("ZREM").arg(&registry).arg(&members))
                .await?;
        }
        let _: i64 = self
            .cmd(
                OP,
                redis::cmd("DEL")
                    .arg(&registry)
                    .arg(self.keys.markers_by_keep())
                    .arg(self.keys.markers_pending()),
            )
            .await?;
        for key in [self.keys.records(), self.keys.peers(), self.keys.meta()] {
            let _: i64 = self.cmd(OP, redis::cmd("DEL").arg(key)).await?;
        }
        Ok(())
    }
}
