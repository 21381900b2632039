//! Driving a real nanoidp 3.4.0 (`scripts/servers/idp.sh`) as a browser
//! would: its login and device-approval pages are HTML forms.
//!
//! What nanoidp expects (read in its 3.4.0 source, checked by
//! `tests/nanoidp.rs`):
//! - `GET /authorize?…` answers a login page whose form carries a hidden
//!   `transaction_id`; the transaction is bound to the browser by the Flask
//!   `session` cookie, so the same cookie jar must post the form. There is
//!   no CSRF field. The form has no `action`: it posts back to the same URL.
//!   `POST` with `transaction_id`, `username`, `password` → `302` to the
//!   `redirect_uri` with `code` and `state`; wrong credentials → `200` and
//!   the form again.
//! - `POST /device` with `user_code`, `username`, `password` and
//!   `action=authorize` (or `action=deny`) → `200` with a page showing the
//!   decision (`decision-authorized` / `decision-denied`); wrong
//!   credentials → the form again. No cookie or CSRF field is needed.

use std::fmt;
use std::io::Write as _;
use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::error::NanoidpError;

/// The nanoidp `scripts/servers/idp.sh start` describes with its
/// `BROKER_TEST_IDP_*` variables.
#[derive(Clone)]
pub struct NanoidpEnv {
    /// `BROKER_TEST_IDP_URL`: the issuer, which is also the server's URL.
    pub url: String,
    /// `BROKER_TEST_IDP_CLIENT_ID`.
    pub client_id: String,
    /// `BROKER_TEST_IDP_CLIENT_SECRET` (HTTP Basic only at nanoidp).
    pub client_secret: String,
    /// `BROKER_TEST_IDP_USERNAME`.
    pub username: String,
    /// `BROKER_TEST_IDP_PASSWORD`.
    pub password: String,
}

impl fmt::Debug for NanoidpEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NanoidpEnv")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// True under `CI=true`, where a skipped test is a failure.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

impl NanoidpEnv {
    /// The settings from the environment, or `None` when
    /// `BROKER_TEST_IDP_URL` is unset. The other variables default to what
    /// `idp.sh` configures.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let url = std::env::var("BROKER_TEST_IDP_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())?;
        Some(Self {
            url: url.trim_end_matches('/').to_owned(),
            client_id: var("BROKER_TEST_IDP_CLIENT_ID", "demo-client"),
            client_secret: var("BROKER_TEST_IDP_CLIENT_SECRET", "demo-secret"),
            username: var("BROKER_TEST_IDP_USERNAME", "broker-test"),
            password: var("BROKER_TEST_IDP_PASSWORD", "broker-test-pw"),
        })
    }

    /// [`from_env`](Self::from_env), or a loud skip notice (past the test
    /// harness's capture, once per process) and `None`; under `CI=true` a panic naming the
    /// variable, because in CI a skipped IdP test is a failure.
    pub fn require() -> Option<Self> {
        if let Some(env) = Self::from_env() {
            return Some(env);
        }
        let message = "no nanoidp: set BROKER_TEST_IDP_URL (scripts/servers/idp.sh start prints it; \
                       scripts/test-all.sh starts one)";
        if in_ci() {
            panic!("CI=true and {message}: a skipped IdP test is a failure in CI");
        }
        static BANNER: std::sync::Once = std::sync::Once::new();
        BANNER.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "\n================================================================\n\
                 SKIPPING NANOIDP TESTS: {message}\n\
                 ================================================================"
            );
        });
        None
    }
}

/// Where `/authorize` sent the browser back to: the redirect URI with
/// `code` and `state`. `Debug` shows neither the code nor the URL.
#[derive(Clone)]
pub struct AuthorizationResponse {
    /// The whole `Location` (the `redirect_uri` with `code`, `state`, ...).
    pub redirect: String,
    /// `code`.
    pub code: String,
    /// `state`, when the request carried one.
    pub state: Option<String>,
}

impl fmt::Debug for AuthorizationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationResponse")
            .field("state_present", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

/// A scripted browser for nanoidp: one cookie jar, no redirects followed.
#[derive(Debug, Clone)]
pub struct Browser {
    http: reqwest::Client,
}

impl Browser {
    /// A browser with an empty cookie jar.
    pub fn new() -> Result<Self, NanoidpError> {
        let http = crate::http_client_builder()
            .cookie_provider(Arc::new(reqwest::cookie::Jar::default()))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(NanoidpError::http("building the browser"))?;
        Ok(Self { http })
    }

    /// Open `authorize_url` (a complete authorization request) and log in
    /// as `username` with `password` on nanoidp's form; returns where
    /// nanoidp redirected to.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        authorize_url: &str,
        username: &str,
        password: &str,
    ) -> Result<AuthorizationResponse, NanoidpError> {
        const PAGE: &str = "authorize page";
        const FORM: &str = "login form";
        let page = self
            .http
            .get(authorize_url)
            .send()
            .await
            .map_err(NanoidpError::http(PAGE))?;
        if page.status().is_redirection() {
            // Already logged in (a persona auto-login): no form shown.
            return authorization_response(&page, PAGE);
        }
        expect_ok(&page, PAGE)?;
        let html = page.text().await.map_err(NanoidpError::http(PAGE))?;
        let mut form = vec![("username", username), ("password", password)];
        let transaction = hidden_field(&html, "transaction_id");
        if let Some(id) = transaction.as_deref() {
            form.push(("transaction_id", id));
        }
        let answer = self
            .http
            .post(authorize_url)
            .form(&form)
            .send()
            .await
            .map_err(NanoidpError::http(FORM))?;
        if answer.status() == StatusCode::OK {
            return Err(NanoidpError::Refused(FORM));
        }
        authorization_response(&answer, FORM)
    }

    /// Approve the device authorization `user_code` at `verification_uri`
    /// (nanoidp's `/device`) as `username`.
    #[tracing::instrument(skip_all)]
    pub async fn approve_device(
        &self,
        verification_uri: &str,
        user_code: &str,
        username: &str,
        password: &str,
    ) -> Result<(), NanoidpError> {
        self.device_decision(verification_uri, user_code, username, password, "authorize")
            .await
    }

    /// Deny the device authorization `user_code` as `username`.
    #[tracing::instrument(skip_all)]
    pub async fn deny_device(
        &self,
        verification_uri: &str,
        user_code: &str,
        username: &str,
        password: &str,
    ) -> Result<(), NanoidpError> {
        self.device_decision(verification_uri, user_code, username, password, "deny")
            .await
    }

    async fn device_decision(
        &self,
        verification_uri: &str,
        user_code: &str,
        username: &str,
        password: &str,
        action: &str,
    ) -> Result<(), NanoidpError> {
        const STEP: &str = "device form";
        let answer = self
            .http
            .post(verification_uri)
            .form(&[
                ("user_code", user_code),
                ("username", username),
                ("password", password),
                ("action", action),
            ])
            .send()
            .await
            .map_err(NanoidpError::http(STEP))?;
        expect_ok(&answer, STEP)?;
        let html = answer.text().await.map_err(NanoidpError::http(STEP))?;
        let marker = if action == "deny" {
            "decision-denied"
        } else {
            "decision-authorized"
        };
        // The stylesheet names both classes; the decision is a `div` of one.
        if html.contains(&format!("class=\"decision-message {marker}\"")) {
            Ok(())
        } else {
            Err(NanoidpError::Refused(STEP))
        }
    }
}

fn expect_ok(response: &reqwest::Response, step: &'static str) -> Result<(), NanoidpError> {
    if response.status() == StatusCode::OK {
        Ok(())
    } else {
        Err(NanoidpError::Unexpected {
            step,
            status: response.status().as_u16(),
            detail: "expected 200 with an HTML form".into(),
        })
    }
}

/// The `value` of the hidden input named `name` in `html`.
fn hidden_field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    let tag_end = rest.find('>')?;
    let value_at = rest[..tag_end].find("value=\"")? + "value=\"".len();
    let value_end = rest[value_at..].find('"')? + value_at;
    Some(rest[value_at..value_end].to_owned())
}

/// The `code` and `state` of a redirect answer.
fn authorization_response(
    response: &reqwest::Response,
    step: &'static str,
) -> Result<AuthorizationResponse, NanoidpError> {
    let unexpected = |detail: &str| NanoidpError::Unexpected {
        step,
        status: response.status().as_u16(),
        detail: detail.to_owned(),
    };
    if !response.status().is_redirection() {
        return Err(unexpected("expected a redirect to the redirect_uri"));
    }
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unexpected("redirect without Location"))?;
    let target = response
        .url()
        .join(location)
        .map_err(|_| NanoidpError::Unparsable("the redirect Location"))?;
    let param = |name: &str| {
        target
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(error) = param("error") {
        return Err(NanoidpError::Authorization(error));
    }
    let code = param("code").ok_or_else(|| unexpected("redirect without code"))?;
    Ok(AuthorizationResponse {
        redirect: target.to_string(),
        code,
        state: param("state"),
    })
}

#[cfg(test)]
mod tests {
    use super::hidden_field;

    #[test]
    fn hidden_field_reads_the_value_of_the_named_input() {
        let html = r#"<form method="POST">
            <input type="hidden" name="transaction_id" value="VOk1Wh-x_9">
            <input type="text" name="username" required></form>"#;
        assert_eq!(
            hidden_field(html, "transaction_id").as_deref(),
            Some("VOk1Wh-x_9")
        );
        assert_eq!(hidden_field(html, "username"), None);
        assert_eq!(hidden_field(html, "missing"), None);
    }
}
