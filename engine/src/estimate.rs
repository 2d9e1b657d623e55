//! How many rows a table holds, for the copy's percentage and ETA.
//!
//! The server's statistics (`information_schema.TABLES.TABLE_ROWS`) can be far off: MySQL 9.7
//! reports 3.4 million rows for the benchmark's freshly filled 1-million-row table, even after
//! `ANALYZE TABLE`, which made the progress line show 30 % when the copy was done. For a single
//! integer primary key two cheap facts do better: the table cannot hold more rows than there
//! are integers between its smallest and largest key, and once the copy has finished every key
//! up to some value, the rows it found per key over its last stretch are a measured density
//! rather than a sampled guess: the estimate is the rows copied plus the keys left at that
//! density.

/// The primary key's smallest and largest value when the copy starts (single integer key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpan {
    /// `MIN(key)`.
    pub min: i128,
    /// `MAX(key)`.
    pub max: i128,
}

impl KeySpan {
    /// The number of integers in the span: no table with this key holds more rows.
    pub fn len(self) -> u64 {
        (self.max - self.min + 1).clamp(0, u64::MAX as i128) as u64
    }

    /// True for a span of no integers (never from a table with rows).
    pub fn is_empty(self) -> bool {
        self.max < self.min
    }

    /// The share of the span at or below `k`, in 0..=1.
    fn covered(self, k: i128) -> f64 {
        if self.is_empty() {
            return 1.0;
        }
        let done = (k.clamp(self.min - 1, self.max) - self.min + 1) as f64;
        done / self.len() as f64
    }
}

/// What is known about a table's size before and during its copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowEstimate {
    /// The server's statistics (`TABLE_ROWS`), when it has a figure.
    pub statistics: Option<u64>,
    /// The key span, for a single integer primary key.
    pub span: Option<KeySpan>,
}

/// Below this share of the key span copied, the density seen so far is not trusted.
const MIN_SHARE: f64 = 0.01;

impl RowEstimate {
    /// The estimate before any row is copied: the statistics, capped by the key span.
    pub fn initial(&self) -> u64 {
        match (self.statistics, self.span) {
            (Some(s), Some(span)) => s.min(span.len()),
            (Some(s), None) => s,
            (None, Some(span)) => span.len(),
            (None, None) => 0,
        }
    }

    /// The estimate once the copy has finished every key up to `done_upto` with `copied` rows
    /// in all (rows above it, of chunks that finished early, count too: a small overestimate of
    /// the density), once that covers at least 1 % of the span: the rows copied plus the keys
    /// left at the density `recent` (rows per key, measured over the last stretch of the copy,
    /// see [`DensityWindow`]; the whole prefix's when `None`). Between `copied` and `copied`
    /// plus the keys left (each holds at most one row).
    pub fn refined(&self, copied: u64, done_upto: Option<i128>, recent: Option<f64>) -> u64 {
        let (Some(span), Some(k)) = (self.span, done_upto) else {
            return self.initial().max(copied);
        };
        let share = span.covered(k);
        if share < MIN_SHARE || copied == 0 {
            return self.initial().max(copied);
        }
        let keys_left = (span.max - k.max(span.min - 1)).clamp(0, u64::MAX as i128) as u64;
        let density = recent
            .unwrap_or(copied as f64 / (share * span.len() as f64))
            .clamp(0.0, 1.0);
        copied.saturating_add((keys_left as f64 * density).round() as u64)
    }
}

/// The copy's recent density (rows per key) for [`RowEstimate::refined`]: one sample per
/// progress tick, over the last `len` ticks, so that a sparse stretch early in the table (an
/// outlier key far below the others, say) does not skew the rest of the estimate.
#[derive(Debug, Clone)]
pub struct DensityWindow {
    samples: std::collections::VecDeque<(u64, i128)>,
    len: usize,
}

impl DensityWindow {
    /// A window over the last `len` samples (at least 2).
    pub fn new(len: usize) -> DensityWindow {
        DensityWindow {
            samples: std::collections::VecDeque::with_capacity(len.max(2)),
            len: len.max(2),
        }
    }

    /// Record rows copied and the finished prefix's key now; returns the rows per key between
    /// the oldest sample kept and this one, when the prefix moved.
    pub fn push(&mut self, copied: u64, done_upto: i128) -> Option<f64> {
        if self.samples.len() == self.len {
            self.samples.pop_front();
        }
        self.samples.push_back((copied, done_upto));
        let (&(rows0, k0), &(rows1, k1)) = (self.samples.front()?, self.samples.back()?);
        (k1 > k0).then(|| rows1.saturating_sub(rows0) as f64 / (k1 - k0) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(min: i128, max: i128) -> Option<KeySpan> {
        Some(KeySpan { min, max })
    }

    #[test]
    fn statistics_are_capped_by_the_key_span() {
        // MySQL's figure for the benchmark's 1,000,382-row table with keys 1..=1,000,382.
        let e = RowEstimate {
            statistics: Some(3_437_280),
            span: span(1, 1_000_382),
        };
        assert_eq!(e.initial(), 1_000_382);
        // A sparse key keeps the (lower) statistics.
        let e = RowEstimate {
            statistics: Some(500),
            span: span(1, 1_000_000),
        };
        assert_eq!(e.initial(), 500);
        assert_eq!(
            RowEstimate {
                statistics: None,
                span: span(-5, 4)
            }
            .initial(),
            10
        );
        assert_eq!(RowEstimate::default().initial(), 0);
    }

    #[test]
    fn the_copied_density_is_scaled_to_the_span() {
        // Every other key exists: after a tenth of the span, half of it is the estimate.
        let e = RowEstimate {
            statistics: Some(3_000_000),
            span: span(1, 1_000_000),
        };
        assert_eq!(e.refined(50_000, Some(100_000), None), 500_000);
        // Too little of the span covered yet: the initial estimate.
        assert_eq!(e.refined(4_000, Some(8_000), None), 1_000_000);
        // Never below what was copied, never more than one row per key left.
        assert_eq!(e.refined(900_000, Some(500_000), None), 1_400_000);
        assert_eq!(e.refined(1_200_000, Some(1_000_000), None), 1_200_000);
        // A watermark past the span (rows inserted during the copy) leaves no keys.
        assert_eq!(e.refined(700_000, Some(2_000_000), None), 700_000);
        // The recent density wins over the whole prefix's.
        assert_eq!(e.refined(50_000, Some(100_000), Some(1.0)), 950_000);
    }

    #[test]
    fn an_outlier_key_far_below_the_rest_does_not_collapse_the_estimate() {
        // One row at -10^12, then ids 1..=1,000,000: after the first 1,001 rows the prefix
        // covers nearly all of the span, but the recent density is one row per key.
        let e = RowEstimate {
            statistics: Some(1_000_001),
            span: span(-1_000_000_000_000, 1_000_000),
        };
        let mut w = DensityWindow::new(5);
        assert_eq!(w.push(1, -1_000_000_000_000), None);
        let recent = w.push(1_001, 1_000);
        assert!(recent.is_some_and(|d| d < 1e-6), "{recent:?}");
        for (rows, k) in [
            (2_001, 2_000),
            (3_001, 3_000),
            (4_001, 4_000),
            (5_001, 5_000),
        ] {
            w.push(rows, k);
        }
        let recent = w.push(6_001, 6_000);
        assert_eq!(recent, Some(1.0));
        assert_eq!(e.refined(6_001, Some(6_000), recent), 1_000_001);
    }

    #[test]
    fn a_window_whose_prefix_did_not_move_has_no_density() {
        let mut w = DensityWindow::new(3);
        assert_eq!(w.push(10, 10), None);
        assert_eq!(w.push(10, 10), None);
        assert_eq!(w.push(30, 20), Some(2.0));
        // The oldest sample drops out.
        assert_eq!(w.push(40, 30), Some(1.5));
    }

    #[test]
    fn without_a_span_the_statistics_stay() {
        let e = RowEstimate {
            statistics: Some(1_234),
            span: None,
        };
        assert_eq!(e.refined(100, Some(5), None), 1_234);
        assert_eq!(e.refined(2_000, None, None), 2_000);
    }

    #[test]
    fn extreme_keys_do_not_overflow() {
        let e = RowEstimate {
            statistics: None,
            span: span(0, u64::MAX as i128),
        };
        assert_eq!(e.initial(), u64::MAX);
        let e = RowEstimate {
            statistics: Some(10),
            span: span(i64::MIN as i128, i64::MAX as i128),
        };
        assert_eq!(e.initial(), 10);
        assert_eq!(e.refined(10, Some(0), None), 20);
    }
}
