//! A28: py-oidc-auth-client 2603.0.1, unmodified, logs in to the server
//! with the device flow and refreshes, with nanoidp as the identity
//! provider; a denied device request ends its polling with
//! `access_denied`, not at its timeout.
//!
//! The client is driven through its `oidc-auth` CLI exactly as a user
//! would run it (`scripts/servers/pyoidc-client.sh` installs it; its path
//! is `BROKER_TEST_PYOIDC_CLIENT`). The user approves (or denies) the code
//! the CLI prints at nanoidp's device page, as the scripted browser of
//! broker-testkit.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use broker_testkit::nanoidp::{Browser, NanoidpEnv};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::Command;

use crate::common::{Server, require_var, userinfo};

/// What the CLI prints before the code (`flows.py`, both messages).
const CODE_PROMPT: &str = "enter this code manually:";

/// The CLI, or `None` after a loud skip.
fn client() -> Option<PathBuf> {
    require_var(
        "BROKER_TEST_PYOIDC_CLIENT",
        "eval \"$(scripts/servers/pyoidc-client.sh start)\"; scripts/test-all.sh does it",
    )
    .map(PathBuf::from)
}

/// How one CLI run ended.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Run `oidc-auth <host> --json …` with its token cache in `cache`. When
/// it prints a device code, `decide` gets it (approve or deny at the IdP).
async fn run_cli<F, Fut>(
    cli: &PathBuf,
    host: &str,
    cache: &std::path::Path,
    extra: &[&str],
    decide: F,
) -> Run
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let mut child = Command::new(cli)
        .arg(host)
        .args(["--app-name", "a28", "--json"])
        .args(extra)
        // Its token store: platformdirs' cache directory.
        .env("XDG_CACHE_HOME", cache)
        // Its "open the browser" step: a no-op command, as on a headless box.
        .env("BROWSER", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start oidc-auth");
    let mut stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let exchange = async {
        let mut stderr = String::new();
        let mut decide = Some(decide);
        while let Some(line) = lines.next_line().await.unwrap() {
            stderr.push_str(&line);
            stderr.push('\n');
            if let Some(at) = line.find(CODE_PROMPT)
                && let Some(decide) = decide.take()
            {
                decide(line[at + CODE_PROMPT.len()..].trim().to_owned()).await;
            }
        }
        let mut out = String::new();
        stdout.read_to_string(&mut out).await.unwrap();
        let status = child.wait().await.unwrap();
        (status.success(), out, stderr)
    };
    let (ok, stdout, stderr) = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .expect("oidc-auth did not finish within 60 s");
    Run {
        ok,
        stdout,
        stderr,
        took: started.elapsed(),
    }
}

fn token_of(run: &Run) -> Value {
    assert!(run.ok, "oidc-auth failed; its stderr:\n{}", run.stderr);
    serde_json::from_str(&run.stdout).expect("oidc-auth --json prints the token")
}

#[tokio::test]
async fn py_oidc_auth_client_logs_in_with_the_device_flow_and_refreshes() {
    let (Some(idp), Some(cli)) = (NanoidpEnv::require(), client()) else {
        return;
    };
    // Access tokens living 30 s: below the client's 60 s expiry buffer, so
    // its next run refreshes instead of reusing the cached token.
    let server = Server::start(
        "access_ttl_secs = 30\n",
        &[],
        &[
            ("OIDC_BROKER_IDP_ISSUER", idp.url.as_str()),
            ("OIDC_BROKER_IDP_CLIENT_ID", idp.client_id.as_str()),
            ("OIDC_BROKER_IDP_CLIENT_SECRET", idp.client_secret.as_str()),
        ],
    )
    .await;
    let cache = tempfile::tempdir().unwrap();
    let device_page = format!("{}/device", idp.url);
    let browser = Browser::new().unwrap();
    let approve = |code: String| {
        let (browser, page, idp) = (browser.clone(), device_page.clone(), idp.clone());
        async move {
            browser
                .approve_device(&page, &code, &idp.username, &idp.password)
                .await
                .expect("nanoidp approves the device code");
        }
    };

    // 1. Device flow: the CLI asks /device, prints the code, polls /token
    //    with `device-code` until the user has approved.
    let first = run_cli(
        &cli,
        &server.issuer,
        cache.path(),
        &["--timeout", "30"],
        approve,
    )
    .await;
    let login = token_of(&first);
    assert!(first.stderr.contains(CODE_PROMPT), "{}", first.stderr);
    let access = login["access_token"].as_str().unwrap();
    let refresh = login["refresh_token"].as_str().unwrap();
    assert!(!refresh.is_empty() && refresh != access);
    assert!(login["expires"].as_i64().unwrap() > 0);
    assert!(login["refresh_expires"].as_i64().unwrap() > login["expires"].as_i64().unwrap());
    let (status, user) = userinfo(&server, access).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["username"], idp.username.as_str());

    // 2. Refresh: the cached access token is inside the client's expiry
    //    buffer, its refresh token is not; it POSTs `refresh-token`. A
    //    failed refresh would fall back to a device flow, which prints a
    //    code and times out here.
    let second = run_cli(
        &cli,
        &server.issuer,
        cache.path(),
        &["--timeout", "5"],
        |_| async { panic!("the client fell back to the device flow: its refresh failed") },
    )
    .await;
    let refreshed = token_of(&second);
    assert!(!second.stderr.contains(CODE_PROMPT), "{}", second.stderr);
    let new_access = refreshed["access_token"].as_str().unwrap();
    let new_refresh = refreshed["refresh_token"].as_str().unwrap();
    assert_ne!(new_access, access, "a new access token");
    assert_ne!(new_refresh, refresh, "a rotated refresh token");
    let (status, user) = userinfo(&server, new_access).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["username"], idp.username.as_str());

    // 3. Denied at the IdP: the server answers `access_denied` and the
    //    client stops polling at once instead of at its 30 s timeout.
    let deny = |code: String| {
        let (browser, page, idp) = (browser.clone(), device_page.clone(), idp.clone());
        async move {
            browser
                .deny_device(&page, &code, &idp.username, &idp.password)
                .await
                .expect("nanoidp denies the device code");
        }
    };
    let denied = run_cli(
        &cli,
        &server.issuer,
        cache.path(),
        &["--force", "--timeout", "30"],
        deny,
    )
    .await;
    assert!(!denied.ok, "a denied login must fail");
    assert!(denied.stderr.contains("access_denied"), "{}", denied.stderr);
    assert!(
        denied.took < Duration::from_secs(20),
        "polling ended by the denial, not the timeout: {:?}",
        denied.took
    );
    server.stop().await;
}
