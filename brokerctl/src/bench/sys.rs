//! What the bench reads about its own process and the machine (Linux
//! `/proc`; `None` or `false` elsewhere).

/// `(VmRSS, VmHWM)` of this process in KiB, from `/proc/self/status`.
pub fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The 1-minute load average, from `/proc/loadavg`.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reset this process's peak RSS (`VmHWM`) to its current RSS (Linux).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_and_load_are_readable() {
        let (rss, hwm) = super::rss_kib().expect("Linux /proc");
        assert!(rss > 0 && hwm >= rss, "{rss} {hwm}");
        assert!(super::loadavg().expect("Linux /proc") >= 0.0);
    }
}
