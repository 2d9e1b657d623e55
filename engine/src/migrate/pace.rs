//! Yielding to the application (`--pace`): while the binlog shows the application writing the
//! table, the copy and the index build run gently (see [`crate::copy::Gentle`]); while it does
//! not, at full speed. (The verification is never paced, see `verify_shadow`.)
//!
//! The sensor is the router's count of the table's row changes read from the binlog, so it
//! needs no privilege and no extra query; it is taken over a sliding window of about two
//! seconds (the router reads the binlog in bursts while the copy runs, see
//! [`super::router`]). Two thresholds keep the mode from flapping around one rate.

use super::router::RouterStats;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::info;

/// How the copy shares the server with the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaceMode {
    /// Gentle while the application writes the table, full speed otherwise.
    #[default]
    Auto,
    /// Always full speed (the configured chunk time, workers and nice ratio).
    Full,
    /// Always gentle.
    Gentle,
}

/// Row changes per second of the table above which the pace turns gentle.
pub const BUSY_ROWS_PER_SEC: f64 = 200.0;
/// ... and below which it turns full again.
pub const IDLE_ROWS_PER_SEC: f64 = 50.0;
/// The sensor's window.
const WINDOW: Duration = Duration::from_secs(2);
/// How often the sensor samples.
const TICK: Duration = Duration::from_millis(250);

/// What the pace did during a run (for the summary).
#[derive(Debug, Default)]
pub struct PaceStats {
    /// Milliseconds spent gentle.
    pub gentle_ms: AtomicU64,
    /// Highest rate of the table's row changes seen (per second).
    pub peak_rate: AtomicU64,
}

/// Decides, from successive `(time, changes read so far)` samples, whether the pace is gentle.
#[derive(Debug)]
pub struct Sensor {
    samples: VecDeque<(Instant, u64)>,
    gentle: bool,
}

impl Sensor {
    /// A sensor that starts in `gentle` state.
    pub fn new(gentle: bool) -> Sensor {
        Sensor {
            samples: VecDeque::new(),
            gentle,
        }
    }

    /// Take a sample; returns the rate over the window (None until it spans half a window)
    /// and whether the pace is gentle now.
    pub fn sample(&mut self, at: Instant, changes: u64) -> (Option<f64>, bool) {
        self.samples.push_back((at, changes));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > WINDOW)
        {
            self.samples.pop_front();
        }
        let Some(&(t0, c0)) = self.samples.front() else {
            return (None, self.gentle);
        };
        let span = at.duration_since(t0);
        if span < WINDOW / 2 {
            return (None, self.gentle);
        }
        let rate = changes.saturating_sub(c0) as f64 / span.as_secs_f64();
        if rate >= BUSY_ROWS_PER_SEC {
            self.gentle = true;
        } else if rate < IDLE_ROWS_PER_SEC {
            self.gentle = false;
        }
        (Some(rate), self.gentle)
    }
}

/// Follow the router's counters and set `gentle` as `mode` says, until every receiver is
/// gone (the run ended) or the task is aborted.
pub async fn follow(
    mode: PaceMode,
    router: Arc<RouterStats>,
    gentle: watch::Sender<bool>,
    stats: Arc<PaceStats>,
) {
    // Auto starts gentle: until the window is covered nothing says the table is idle, and a
    // full-speed start on a busy table is the harm the pace avoids.
    let start = mode != PaceMode::Full;
    let mut sensor = Sensor::new(start);
    let _ = gentle.send(start);
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    while !gentle.is_closed() {
        tick.tick().await;
        let now = Instant::now();
        // Borrows are copied out at once: none may be held while the value is sent.
        let current = *gentle.borrow();
        if current {
            let ms = now.duration_since(last).as_millis() as u64;
            stats.gentle_ms.fetch_add(ms, Ordering::Relaxed);
        }
        last = now;
        let (rate, busy) = sensor.sample(now, router.events.load(Ordering::Relaxed));
        if let Some(r) = rate {
            stats.peak_rate.fetch_max(r as u64, Ordering::Relaxed);
        }
        let want = match mode {
            PaceMode::Auto => busy,
            PaceMode::Full => false,
            PaceMode::Gentle => true,
        };
        if want != current {
            info!(
                gentle = want,
                rows_per_sec = rate.unwrap_or(0.0) as u64,
                "pace changed: the application {} the table",
                if want { "writes" } else { "no longer writes" }
            );
            let _ = gentle.send(want);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `secs` seconds of samples every 250 ms at `rate` changes a second; the last
    /// result.
    fn feed(
        s: &mut Sensor,
        clock: &mut (Instant, u64),
        secs: u64,
        rate: u64,
    ) -> (Option<f64>, bool) {
        let mut last = (None, false);
        for _ in 0..secs * 4 {
            clock.0 += Duration::from_millis(250);
            clock.1 += rate / 4;
            last = s.sample(clock.0, clock.1);
        }
        last
    }

    #[test]
    fn turns_gentle_on_writes_and_back_with_hysteresis() {
        let mut s = Sensor::new(false);
        let mut clock = (Instant::now(), 0u64);
        // No rate until half a window is covered.
        assert_eq!(s.sample(clock.0, 0), (None, false));
        assert_eq!(
            s.sample(clock.0 + Duration::from_millis(500), 1_000),
            (None, false)
        );
        // 1,000 changes a second: busy.
        let mut s = Sensor::new(false);
        assert_eq!(feed(&mut s, &mut clock, 3, 1_000), (Some(1_000.0), true));
        // 100 a second: between the thresholds, stays gentle.
        assert_eq!(feed(&mut s, &mut clock, 3, 100), (Some(100.0), true));
        // Nothing: full again.
        assert_eq!(feed(&mut s, &mut clock, 3, 0), (Some(0.0), false));
        // A rate between the thresholds does not turn it gentle.
        assert_eq!(feed(&mut s, &mut clock, 3, 100), (Some(100.0), false));
    }

    #[test]
    fn old_samples_leave_the_window() {
        let t0 = Instant::now();
        let mut s = Sensor::new(false);
        for i in 0..100u64 {
            s.sample(t0 + Duration::from_millis(250 * i), i * 1_000);
        }
        assert!(s.samples.len() <= 9, "{}", s.samples.len());
    }
}
