//! Latency samples in an HDR histogram, and the figures the report gives.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::results::{Stats, round};

/// Significant decimal digits the histogram keeps: a recorded latency is
/// reported within 0.1 % of its value.
const SIGFIG: u8 = 3;

/// The latencies (nanoseconds) of one side of one measurement.
#[derive(Debug, Clone)]
pub(crate) struct Samples {
    hist: Histogram<u64>,
    pub(crate) misses: u64,
    pub(crate) elapsed: Duration,
}

impl Default for Samples {
    fn default() -> Self {
        Self {
            // Auto-resizing: any latency up to u64::MAX nanoseconds fits.
            hist: Histogram::new(SIGFIG).expect("3 significant figures is a valid precision"),
            misses: 0,
            elapsed: Duration::ZERO,
        }
    }
}

impl Samples {
    /// Record one operation's latency and whether it found something.
    pub(crate) fn record(&mut self, latency: Duration, hit: bool) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        // The histogram grows to fit (memory follows the largest latency
        // seen); should growing fail, the value is clamped to the range.
        if self.hist.record(ns).is_err() {
            self.hist.saturating_record(ns);
        }
        self.misses += u64::from(!hit);
    }

    /// Add another measurement's samples, misses and wall time.
    pub(crate) fn merge(&mut self, other: &Samples) {
        // Both histograms auto-resize, so adding cannot fail on range.
        self.hist
            .add(&other.hist)
            .expect("auto-resizing histograms add");
        self.misses += other.misses;
        self.elapsed += other.elapsed;
    }

    /// Operations recorded.
    pub(crate) fn len(&self) -> u64 {
        self.hist.len()
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    fn quantile_us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }
}

impl Stats {
    /// Ops/s, p50, p99 and mean of `s`, rounded to 0.1.
    pub(crate) fn from_samples(s: &Samples) -> Self {
        let secs = s.elapsed.as_secs_f64();
        let ops = s.len();
        Self {
            ops,
            misses: s.misses,
            ops_per_sec: round(if secs > 0.0 { ops as f64 / secs } else { 0.0 }, 1),
            p50_us: round(s.quantile_us(0.50), 1),
            p99_us: round(s.quantile_us(0.99), 1),
            mean_us: round(if ops > 0 { s.hist.mean() / 1000.0 } else { 0.0 }, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(latencies_us: impl IntoIterator<Item = u64>, elapsed: Duration) -> Samples {
        let mut s = Samples {
            elapsed,
            ..Samples::default()
        };
        for us in latencies_us {
            s.record(Duration::from_micros(us), true);
        }
        s
    }

    /// Within the histogram's precision (0.1 %) of `want`.
    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * 0.001 + 0.05
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        // 1..=100 µs, shuffled: p50 is 50 µs and p99 is 99 µs.
        let mut s = samples((1..=100).rev(), Duration::from_secs(2));
        s.record(Duration::from_micros(7), false);
        s.record(Duration::from_micros(8), false);
        let st = Stats::from_samples(&s);
        assert_eq!(st.ops, 102);
        assert_eq!(st.misses, 2);
        assert_eq!(st.ops_per_sec, 51.0);
        let s = samples(1..=100, Duration::from_secs(2));
        let st = Stats::from_samples(&s);
        assert!(close(st.p50_us, 50.0), "{st:?}");
        assert!(close(st.p99_us, 99.0), "{st:?}");
        assert!(close(st.mean_us, 50.5), "{st:?}");
    }

    #[test]
    fn percentiles_of_a_long_tail() {
        // 10 000 samples: 98.5 % at 200 µs, 1.5 % at 20 ms. The median is
        // the body, p99 lands in the tail; a mean would hide both.
        let body = std::iter::repeat_n(200, 9_850);
        let tail = std::iter::repeat_n(20_000, 150);
        let st = Stats::from_samples(&samples(body.chain(tail), Duration::from_secs(1)));
        assert!(close(st.p50_us, 200.0), "{st:?}");
        assert!(close(st.p99_us, 20_000.0), "{st:?}");
        assert!(
            close(st.mean_us, 0.985 * 200.0 + 0.015 * 20_000.0),
            "{st:?}"
        );
        assert_eq!(st.ops_per_sec, 10_000.0);
    }

    #[test]
    fn percentiles_across_a_wide_range() {
        // Powers of two from 1 µs to 2^20 µs (~1 s), 100 samples each: the
        // k-th percentile is the value of the bucket that holds rank k.
        let values: Vec<u64> = (0..=20).map(|e| 1u64 << e).collect();
        let s = samples(
            values.iter().flat_map(|&v| std::iter::repeat_n(v, 100)),
            Duration::from_secs(1),
        );
        let st = Stats::from_samples(&s);
        // 2100 samples: rank 1050 is the 11th value (2^10), rank 2079 the 21st.
        assert!(close(st.p50_us, 1024.0), "{st:?}");
        assert!(close(st.p99_us, (1u64 << 20) as f64), "{st:?}");
    }

    #[test]
    fn merged_samples_pool_latencies_misses_and_time() {
        let mut a = samples(1..=50, Duration::from_secs(1));
        let mut b = samples(51..=100, Duration::from_secs(1));
        b.record(Duration::from_micros(1), false);
        a.merge(&b);
        let st = Stats::from_samples(&a);
        assert_eq!((st.ops, st.misses, st.ops_per_sec), (101, 1, 50.5));
        assert!(close(st.p99_us, 99.0), "{st:?}");
    }

    #[test]
    fn no_samples_give_zeros() {
        let st = Stats::from_samples(&Samples::default());
        assert_eq!(
            (st.ops, st.ops_per_sec, st.p50_us, st.p99_us, st.mean_us),
            (0, 0.0, 0.0, 0.0, 0.0)
        );
    }
}
