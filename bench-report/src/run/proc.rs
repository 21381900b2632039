//! Running tools: commands shown with passwords redacted, output captured,
//! failures typed.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// `url` with any user name and password replaced by `***`, for commands
/// shown in the report. A URL that does not parse yet holds an `@` is
/// hidden whole.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            // Only URLs with a host have user info, so both setters succeed.
            let _ = u.set_password(None);
            let _ = u.set_username("***");
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) if url.contains('@') => "<URL hidden>".into(),
        Err(_) => url.to_owned(),
    }
}

/// Run `cmd` (named `what` in errors), stderr to the terminal; its stdout.
pub fn output(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::run(what, format!("could not start: {e}")))?;
    if !out.status.success() {
        return Err(Error::run(what, format!("exited with {}", out.status)));
    }
    String::from_utf8(out.stdout).map_err(|_| Error::run(what, "printed something not UTF-8"))
}

/// Run `cmd` with its output on the terminal.
pub fn status(what: &str, cmd: &mut Command) -> Result<()> {
    let st = cmd
        .status()
        .map_err(|e| Error::run(what, format!("could not start: {e}")))?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::run(what, format!("exited with {st}")))
    }
}

/// Whether `program` is on the `PATH`.
pub fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Write `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::run("JSON", e))?;
    std::fs::write(path, text + "\n").map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_command_line_shown() {
        assert_eq!(
            redact("postgres://postgres:s3cret@127.0.0.1:55432/postgres"),
            "postgres://***@127.0.0.1:55432/postgres"
        );
        assert_eq!(redact("redis://:pw@h:1"), "redis://***@h:1");
        assert_eq!(redact("redis://127.0.0.1:56379"), "redis://127.0.0.1:56379");
        assert_eq!(
            redact("sled:///tmp/x?cache_mb=3072"),
            "sled:///tmp/x?cache_mb=3072"
        );
        assert_eq!(redact("redis-cluster://a:1,b:2"), "redis-cluster://a:1,b:2");
        assert_eq!(redact("weird://u:p@a:1,b:2"), "<URL hidden>");
    }
}
