//! Number formatting as the report has always printed it.

/// `x` with `decimals` decimals and a space between thousands:
/// `1234567.891` → `1 234 567.89` (with 2).
pub fn num(x: f64, decimals: usize) -> String {
    let text = format!("{x:.decimals$}");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// An integer count with thousands separated.
pub fn count(n: impl Into<u64>) -> String {
    num(n.into() as f64, 0)
}

/// A latency in µs: one decimal under 10, none above.
pub fn lat(us: f64) -> String {
    if us < 10.0 { num(us, 1) } else { num(us, 0) }
}

/// The shortest decimal that reads back as `x`, with `.0` on whole numbers
/// (`0.8`, `2.0`, `5.43`).
pub fn float(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// An optional figure, `?` when absent.
pub fn opt_float(x: Option<f64>) -> String {
    x.map_or_else(|| "?".into(), float)
}

/// KiB as MiB with one decimal, `–` when absent.
pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "–".into(), |k| num(k as f64 / 1024.0, 1))
}

/// Nanoseconds as microseconds.
pub fn us(ns: f64) -> f64 {
    ns / 1000.0
}

/// `YYYY-MM-DD HH:MM UTC` of Unix seconds `t`.
pub fn utc_date(t: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_before() {
        assert_eq!(num(1_807_233.4, 0), "1 807 233");
        assert_eq!(num(999.95, 1), "1 000.0");
        assert_eq!(num(12.0, 2), "12.00");
        assert_eq!(num(-1234.5, 1), "-1 234.5");
        assert_eq!(num(0.19, 2), "0.19");
        assert_eq!(count(10_000u64), "10 000");
        assert_eq!(lat(9.96), "10.0");
        assert_eq!(lat(4.66), "4.7");
        assert_eq!(lat(1328.4), "1 328");
        assert_eq!(
            (float(0.8), float(2.0), float(5.43)),
            ("0.8".into(), "2.0".into(), "5.43".into())
        );
        assert_eq!(opt_float(None), "?");
        assert_eq!(mib(Some(45_432)), "44.4");
        assert_eq!(mib(None), "–");
    }
}
