//! The page around the generated part: `bench-report` owns only the lines
//! between [`BEGIN`] and [`END`]; everything outside them (the title, and
//! hand-written sections such as the issuer's and the broker's) is kept
//! byte for byte.

use std::path::Path;

use crate::docs::BenchDir;
use crate::error::{Error, Result};

/// The line that opens the generated part of `docs/BENCHMARKS.md`.
pub const BEGIN: &str =
    "<!-- BEGIN bench-report: generated from docs/bench/*.json; edit outside these markers -->";
/// The line that closes it.
pub const END: &str = "<!-- END bench-report -->";

/// The page for a file that does not exist yet: a title, then the markers
/// around `region`.
fn new_page(region: &str) -> String {
    format!("# Benchmarks\n\n{BEGIN}\n{}\n{END}\n", region.trim_end())
}

/// `existing` with the lines between its markers replaced by `region`
/// (`None`: a new page). A page with no markers, a marker twice, or the end
/// before the beginning is [`Error::Markers`]: nothing hand-written is
/// ever overwritten.
pub fn splice(existing: Option<&str>, region: &str) -> Result<String> {
    let Some(text) = existing else {
        return Ok(new_page(region));
    };
    let find = |marker: &str, name: &str| {
        let mut at = text
            .split_inclusive('\n')
            .scan(0, |offset, line| {
                let start = *offset;
                *offset += line.len();
                Some((start, *offset, line))
            })
            .filter(|(_, _, line)| line.trim_end() == marker);
        match (at.next(), at.next()) {
            (Some((start, end, _)), None) => Ok((start, end)),
            (None, _) => Err(Error::Markers(format!("no {name} marker"))),
            (Some(_), Some(_)) => Err(Error::Markers(format!("the {name} marker twice"))),
        }
    };
    let (_, after_begin) = find(BEGIN, "BEGIN")?;
    let (before_end, _) = find(END, "END")?;
    if before_end < after_begin {
        return Err(Error::Markers("the end marker comes first".into()));
    }
    Ok(format!(
        "{}{}\n{}",
        &text[..after_begin],
        region.trim_end(),
        &text[before_end..]
    ))
}

/// The page `page` should hold for the documents under `dir`: its current
/// text (if it exists) with the generated part rendered again.
pub fn regenerate(dir: &Path, page: &Path) -> Result<String> {
    let region = super::render(&BenchDir::load(dir)?);
    let existing = match std::fs::read_to_string(page) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(Error::Read {
                path: page.to_owned(),
                source,
            });
        }
    };
    splice(existing.as_deref(), &region).map_err(|e| match e {
        Error::Markers(why) => Error::Markers(format!("{}: {why}", page.display())),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_sections_outside_the_markers_are_kept() {
        let page = format!(
            "# Benchmarks\n\nIntro by hand.\n\n{BEGIN}\nold\nfigures\n{END}\n\n## Issuer\n\n\
             mint: 1 µs (by hand)\n"
        );
        let out = splice(Some(&page), "new figures\n\n").unwrap();
        assert_eq!(
            out,
            format!(
                "# Benchmarks\n\nIntro by hand.\n\n{BEGIN}\nnew figures\n{END}\n\n## Issuer\n\n\
                 mint: 1 µs (by hand)\n"
            )
        );
        // Again: the same (idempotent).
        assert_eq!(splice(Some(&out), "new figures").unwrap(), out);
    }

    #[test]
    fn a_new_page_has_a_title_and_the_markers() {
        let out = splice(None, "figures\n").unwrap();
        assert_eq!(out, format!("# Benchmarks\n\n{BEGIN}\nfigures\n{END}\n"));
        assert_eq!(splice(Some(&out), "figures").unwrap(), out);
    }

    #[test]
    fn pages_without_sound_markers_are_refused() {
        for page in [
            "# Benchmarks\n\nall by hand\n".to_owned(),
            format!("{BEGIN}\nx\n"),
            format!("{END}\nx\n{BEGIN}\n"),
            format!("{BEGIN}\n{BEGIN}\n{END}\n"),
            format!("{BEGIN}\n{END}\n{END}\n"),
        ] {
            let e = splice(Some(&page), "figures").unwrap_err();
            assert!(matches!(e, Error::Markers(_)), "{page:?}: {e}");
        }
    }

    #[test]
    fn regenerate_writes_a_new_page_and_keeps_edits_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let page = tmp.path().join("BENCHMARKS.md");
        let first = regenerate(tmp.path(), &page).unwrap();
        assert!(first.starts_with("# Benchmarks\n\n<!-- BEGIN"), "{first}");
        std::fs::write(&page, format!("{first}\n## Broker\n\nby hand\n")).unwrap();
        let again = regenerate(tmp.path(), &page).unwrap();
        assert_eq!(again, format!("{first}\n## Broker\n\nby hand\n"));
        std::fs::write(&page, "# by hand only\n").unwrap();
        let e = regenerate(tmp.path(), &page).unwrap_err().to_string();
        assert!(
            e.contains("BENCHMARKS.md") && e.contains("no BEGIN marker"),
            "{e}"
        );
    }
}
