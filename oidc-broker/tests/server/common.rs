//! The server binary as a child process, and loud skips.

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// A store key for the test servers (base64 of 32 bytes; tests only).
pub const TEST_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// True under `CI=true`, where a skipped test is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The value of `var`, or `None` after a loud notice past the harness's
/// capture (a panic under `CI=true`: a skip is a failure in CI).
pub fn require_var(var: &str, how: &str) -> Option<String> {
    if let Ok(v) = std::env::var(var)
        && !v.trim().is_empty()
    {
        return Some(v.trim().to_owned());
    }
    skip(&format!("{var} is not set ({how})"))
}

/// A loud skip (a panic under `CI=true`).
pub fn skip<T>(message: &str) -> Option<T> {
    assert!(
        !in_ci(),
        "CI=true and {message}: a skipped test is a failure in CI"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n================================================================\n\
         SKIPPING: {message}\n\
         ================================================================"
    );
    None
}

/// A running `oidc-broker` (killed when dropped) and its temporary files.
pub struct Server {
    /// The tokens' `iss`: `http://127.0.0.1:PORT/api`.
    pub issuer: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Start the binary on a free loopback port with `config` (TOML) as
    /// its settings file, `args` and `env` (over a clean `OIDC_BROKER_*`
    /// environment, a sled store in a temporary directory and a test key);
    /// wait for its "serving" line.
    pub async fn start(config: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("oidc-broker.toml");
        std::fs::write(&file, config).unwrap();
        let store = format!("sled://{}", dir.path().join("db").display());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oidc-broker"));
        for (name, _) in std::env::vars() {
            if name.starts_with("OIDC_BROKER_") {
                cmd.env_remove(name);
            }
        }
        cmd.arg("--config")
            .arg(&file)
            .args(args)
            .env("OIDC_BROKER_LISTEN", "127.0.0.1:0")
            .env("OIDC_BROKER_STORE_URL", store)
            .env("OIDC_BROKER_KEY", TEST_KEY)
            .env("OIDC_BROKER_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start oidc-broker");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listen = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let line = strip_ansi(&line);
                eprintln!("oidc-broker| {line}");
                if line.contains("oidc-broker serving")
                    && let Some(at) = line.find("listen=")
                {
                    let rest = &line[at + "listen=".len()..];
                    return Some(rest.split_whitespace().next().unwrap().to_owned());
                }
            }
            None
        })
        .await
        .expect("oidc-broker did not start within 60 s")
        .expect("oidc-broker exited before serving");
        // Keep draining its log (into the test's captured output).
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("oidc-broker| {}", strip_ansi(&line));
            }
        });
        Self {
            issuer: format!("http://{listen}/api"),
            child,
            _dir: dir,
        }
    }

    /// `issuer` + `/auth/v2` + `path`.
    pub fn route(&self, path: &str) -> String {
        format!("{}/auth/v2{path}", self.issuer)
    }

    /// Stop it now (SIGKILL, by its PID).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `line` without ANSI colour sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A loopback HTTP client that follows no redirects.
pub fn http() -> reqwest::Client {
    broker_testkit::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `GET userinfo` with `token` as bearer: status and JSON body.
pub async fn userinfo(server: &Server, token: &str) -> (u16, serde_json::Value) {
    let r = http()
        .get(server.route("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}
