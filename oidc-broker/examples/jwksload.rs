//! The JWKS load generator of docs/BENCHMARKS.md (A10c): closed-loop
//! HTTP/1.1 keep-alive GETs on N connections from one thread, for a fixed
//! time; prints requests/s, errors and latency percentiles (hdrhistogram).
//!
//! ```sh
//! cargo build --release -p oidc-broker --example jwksload --bin oidc-broker
//! target/release/oidc-broker --demo &          # 127.0.0.1:8080
//! target/release/examples/jwksload --connections 32 --seconds 10
//! ```
//!
//! Each connection sends `GET <path>`, reads the answer's head and its
//! `Content-Length` body, records the latency and sends again. Loopback
//! targets only: it refuses any other address.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Closed-loop HTTP/1.1 load on a loopback server's route.
#[derive(Parser)]
struct Args {
    /// Server address (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Route to GET.
    #[arg(long, default_value = "/api/auth/v2/.well-known/jwks.json")]
    path: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Length of the run in seconds (at most 600).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// What one connection measured.
struct Tally {
    latencies: Histogram<u64>,
    errors: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Read one response on `s` (head, then `Content-Length` bytes); true if
/// its status was 200.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool, BoxError> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end])?.to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(Ok(0), |v| v.trim().parse())?;
        if buf.len() >= end + 4 + length {
            return Ok(head.starts_with("http/1.1 200"));
        }
    }
}

async fn connection(args: &Args, deadline: Instant) -> Result<Tally, BoxError> {
    let mut s = TcpStream::connect(args.addr).await?;
    s.set_nodelay(true)?;
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", args.path, args.addr);
    let mut tally = Tally {
        latencies: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        errors: 0,
    };
    let mut buf = Vec::with_capacity(16 * 1024);
    while Instant::now() < deadline {
        let t = Instant::now();
        s.write_all(request.as_bytes()).await?;
        if !read_response(&mut s, &mut buf).await? {
            tally.errors += 1;
        }
        let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally.latencies.saturating_record(micros.max(1));
    }
    Ok(tally)
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        return Err("loopback addresses only".into());
    }
    if args.connections == 0 || args.seconds == 0 || args.seconds > 600 {
        return Err("--connections ≥ 1 and --seconds in 1..=600".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let args = std::sync::Arc::new(args);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.seconds);
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| {
                let args = std::sync::Arc::clone(&args);
                tokio::spawn(async move { connection(&args, deadline).await })
            })
            .collect();
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut errors = 0;
        for task in tasks {
            let tally = task.await??;
            all.add(&tally.latencies)?;
            errors += tally.errors;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "connections={} seconds={elapsed:.1} requests={} errors={errors} rps={:.0} \
             p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            args.connections,
            all.len(),
            all.len() as f64 / elapsed,
            ms(0.5),
            ms(0.99),
            all.max() as f64 / 1000.0,
        );
        Ok(())
    })
}
