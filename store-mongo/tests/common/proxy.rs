//! A TCP proxy that delays every chunk by a fixed latency in each
//! direction: a client behind it sees each round trip take at least twice
//! the latency, which widens the gap between two consecutive operations of
//! one store call so a test can run other operations inside it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A running proxy; it stops when dropped.
pub struct LatencyProxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LatencyProxy {
    /// Listen on a free local port and forward to `upstream` (`host:port`),
    /// delaying each chunk by `latency`.
    pub async fn start(upstream: String, latency: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&upstream).await {
                        let (ri, wi) = inbound.into_split();
                        let (ro, wo) = outbound.into_split();
                        tokio::join!(pipe(ri, wo, latency), pipe(ro, wi, latency));
                    }
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// `url` (`mongodb://host:port/db?...`) pointed at the proxy, with a
    /// direct connection so the driver does not look for other members.
    pub fn url(&self, url: &str) -> String {
        let rest = url.strip_prefix("mongodb://").expect("a mongodb:// URL");
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        super::with_query(
            &format!("mongodb://{}{path}", self.addr),
            "directConnection=true",
        )
    }
}

/// The `host:port` of a `mongodb://` URL.
pub fn host_port(url: &str) -> String {
    let rest = url.strip_prefix("mongodb://").expect("a mongodb:// URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let hosts = &rest[..end];
    hosts.rsplit('@').next().unwrap_or(hosts).to_owned()
}

/// Copy `from` to `to`, each chunk `latency` after it was read (chunks keep
/// their order; reading goes on meanwhile).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = tokio::time::Instant::now() + latency;
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
