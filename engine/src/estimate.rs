//! How many rows a table holds, for the copy's percentage and ETA.
//!
//! The server's statistics (`information_schema.TABLES.TABLE_ROWS`) can be far off: MySQL 9.7
//! reports 3.4 million rows for the benchmark's freshly filled 1-million-row table, even after
//! `ANALYZE TABLE`, which made the progress line show 30 % when the copy was done. For a single
//! integer primary key two cheap facts do better: the table cannot hold more rows than there
//! are integers between its smallest and largest key, and once the copy has finished every key
//! up to some value, the rows it found there, scaled to the whole span, are a measured density
//! rather than a sampled guess.

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
    /// the density): those rows scaled to the whole span, once they cover at least 1 % of it.
    /// Never below `copied`.
    pub fn refined(&self, copied: u64, done_upto: Option<i128>) -> u64 {
        let (Some(span), Some(k)) = (self.span, done_upto) else {
            return self.initial().max(copied);
        };
        let share = span.covered(k);
        if share < MIN_SHARE || copied == 0 {
            return self.initial().max(copied);
        }
        let scaled = (copied as f64 / share).round() as u64;
        scaled.min(span.len()).max(copied)
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
        assert_eq!(e.refined(50_000, Some(100_000)), 500_000);
        // Too little of the span covered yet: the initial estimate.
        assert_eq!(e.refined(4_000, Some(8_000)), 1_000_000);
        // Never below what was copied, never above the span.
        assert_eq!(e.refined(900_000, Some(500_000)), 1_000_000);
        assert_eq!(e.refined(1_200_000, Some(1_000_000)), 1_200_000);
        // A watermark past the span (rows inserted during the copy) counts as all of it.
        assert_eq!(e.refined(700_000, Some(2_000_000)), 700_000);
    }

    #[test]
    fn without_a_span_the_statistics_stay() {
        let e = RowEstimate {
            statistics: Some(1_234),
            span: None,
        };
        assert_eq!(e.refined(100, Some(5)), 1_234);
        assert_eq!(e.refined(2_000, None), 2_000);
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
        assert_eq!(e.refined(10, Some(0)), 20);
    }
}
