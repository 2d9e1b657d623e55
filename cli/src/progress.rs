//! The progress display of `migrate` and `sync` / `promote`, fed by `engine::migrate::Progress`
//! or `engine::sync::SyncProgress` over a watch channel (both through [`Shown`]).
//!
//! - On a terminal (stderr is a TTY): one `indicatif` bar per phase, drawn on stderr — the copy
//!   (or a sync's backfill) as a bar of rows with rate and ETA, the other phases (a sync's
//!   streaming, draining, ...) as spinners with their numbers. Log
//!   lines go through [`LogWriter`], which suspends the bars while it prints, so logs (text or
//!   `--log-format json`) appear above the bars and never inside them.
//! - Elsewhere: one plain status line every `--status-interval` (and one at each phase change).
//!
//! Either way the display records how long each phase took, for the final summary.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rowshift_engine::migrate::Progress;
use rowshift_engine::sync::SyncProgress;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::watch;

static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Set up the bars when stderr is a terminal. Call before logging starts.
pub fn init_terminal() {
    if std::io::stderr().is_terminal() {
        let _ = BARS.set(MultiProgress::with_draw_target(
            ProgressDrawTarget::stderr_with_hz(10),
        ));
    }
}

/// Log output on stderr that never garbles the bars: each log record is written while the
/// bars are hidden, then they are drawn again below it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(mp) => mp.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Print a line on stderr above the bars (or plainly without them).
pub fn eprint_line(line: &str) {
    let mut w = LogWriter;
    let _ = w.write(format!("{line}\n").as_bytes());
}

/// How long each phase took, in order.
pub type PhaseTimes = Vec<(&'static str, Duration)>;

/// What the display needs from a job's progress (`migrate`'s or `sync`'s).
pub trait Shown: Clone {
    /// The current phase (`""` before the first one).
    fn phase(&self) -> &'static str;
    /// The phase drawn as a bar of rows (`copy`, `backfill`).
    fn rows_phase(&self) -> &'static str;
    /// The number whose rate the status line shows: rows in the rows phase, else events.
    fn counter(&self) -> u64;
    /// A new bar (or spinner) for `phase`.
    fn new_bar(&self, phase: &'static str) -> ProgressBar;
    /// Refresh the bar of `phase`.
    fn update_bar(&self, b: &ProgressBar, phase: &str);
    /// The plain status line (no terminal); `rate` is the counter's rate per second.
    fn status_line(&self, rate: f64) -> String;
}

/// Show `migrate`'s progress until the sender is dropped; returns the phase durations.
pub async fn show(rx: watch::Receiver<Progress>, status_interval: Duration) -> PhaseTimes {
    drive(rx, status_interval).await
}

/// Show any job's progress until the sender is dropped; returns the phase durations.
pub async fn drive<P: Shown>(mut rx: watch::Receiver<P>, status_interval: Duration) -> PhaseTimes {
    let mut times: PhaseTimes = Vec::new();
    let mut phase: &'static str = "";
    let mut phase_started = Instant::now();
    let bars = BARS.get();
    let mut bar: Option<ProgressBar> = None;

    let tick = if bars.is_some() {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(200)
    };
    let mut ticker = tokio::time::interval(tick);
    let mut last_line = Instant::now();
    let mut last_count = (Instant::now(), 0u64);
    loop {
        ticker.tick().await;
        let closed = rx.has_changed().is_err();
        let p = rx.borrow_and_update().clone();
        if p.phase() != phase && !p.phase().is_empty() {
            if !phase.is_empty() {
                times.push((phase, phase_started.elapsed()));
            }
            if let Some(b) = bar.take() {
                // The engine publishes the final row count before it leaves the rows phase.
                p.update_bar(&b, phase);
                finish(&b, phase == p.rows_phase(), phase_started.elapsed());
            }
            phase = p.phase();
            phase_started = Instant::now();
            last_count = (Instant::now(), p.counter());
            match bars {
                _ if phase == "done" => {}
                Some(mp) => bar = Some(mp.add(p.new_bar(phase))),
                None => eprint_line(&format!("rowshift: phase {phase}")),
            }
        }
        match &bar {
            Some(b) => p.update_bar(b, phase),
            None if bars.is_none() && last_line.elapsed() >= status_interval => {
                let rate = {
                    let secs = last_count.0.elapsed().as_secs_f64().max(1e-3);
                    p.counter().saturating_sub(last_count.1) as f64 / secs
                };
                last_count = (Instant::now(), p.counter());
                last_line = Instant::now();
                eprint_line(&p.status_line(rate));
            }
            None => {}
        }
        if closed {
            if !phase.is_empty() {
                times.push((phase, phase_started.elapsed()));
            }
            if let Some(b) = bar.take() {
                finish(&b, phase == p.rows_phase(), phase_started.elapsed());
            }
            return times;
        }
    }
}

/// Leave a finished phase on screen with its duration (and a rows phase's average rate).
fn finish(b: &ProgressBar, rows_phase: bool, took: Duration) {
    let secs = took.as_secs_f64();
    if rows_phase {
        let rate = b.position() as f64 / secs.max(1e-3);
        b.abandon_with_message(format!("done in {secs:.1} s ({rate:.0} rows/s)"));
    } else {
        b.abandon_with_message(format!("done in {secs:.1} s"));
    }
}

/// A bar of rows towards `len` drawn with `template`.
///
/// `hidden`: the bar starts without a draw target. A bar on its default target draws a frame
/// of its own on stderr before it joins the `MultiProgress`; when that is the first bar, the
/// frame stays as a stale line above the live one (seen with `sync`, whose first bar is the
/// backfill). `migrate` keeps its bars as they always were.
fn rows_bar(phase: &'static str, len: u64, template: &str, hidden: bool) -> ProgressBar {
    let b = if hidden {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(len)
    };
    b.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_prefix(phase);
    b
}

/// A spinner for a phase without an end known in advance.
fn spinner(phase: &'static str, template: &str, hidden: bool) -> ProgressBar {
    let b = if hidden {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new_spinner()
    };
    b.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    b.set_prefix(phase);
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

const SPINNER: &str = "{prefix:>10.bold} {spinner} {elapsed} {msg}";

/// What holds or slows a migration's copy, for the end of its progress line: the throttle's
/// reason, or that the copy yields to the application (`--pace`).
fn state_note(p: &Progress) -> String {
    match &p.throttled {
        Some(reason) => format!(", THROTTLED: {reason}"),
        None if p.gentle && p.phase == "copy" => ", yielding to the application".into(),
        None => String::new(),
    }
}

impl Shown for Progress {
    fn phase(&self) -> &'static str {
        self.phase
    }

    fn rows_phase(&self) -> &'static str {
        "copy"
    }

    fn counter(&self) -> u64 {
        self.rows_copied
    }

    fn new_bar(&self, phase: &'static str) -> ProgressBar {
        if phase == "copy" {
            rows_bar(
                phase,
                self.rows_estimate.max(self.rows_copied).max(1),
                "{prefix:>10.bold} [{bar:36.cyan/blue}] {human_pos}/{human_len} rows, ETA {eta}, {msg}",
                false,
            )
        } else {
            spinner(phase, SPINNER, false)
        }
    }

    fn update_bar(&self, b: &ProgressBar, phase: &str) {
        let p = self;
        let throttled = state_note(p);
        let events = format!(
            "{} events read ({} left to the copy), lag {} s{throttled}",
            p.events, p.skipped, p.lag_secs
        );
        if phase == "copy" {
            // The estimate is refined as the copy goes (engine::estimate).
            b.set_length(p.rows_estimate.max(p.rows_copied).max(1));
            b.set_position(p.rows_copied);
            b.set_message(format!("{:.0} rows/s, {events}", b.per_sec()));
        } else {
            let what = match phase {
                "indexes" => "building the secondary indexes left out of the copy",
                "catch-up" => "applying the binlog changes made during the copy",
                "verify" => "comparing chunk checksums of both tables",
                "postponed" => {
                    "cut-over held until the flag file is deleted or `rowshift ctl cut-over`"
                }
                "cut-over" => "locking, draining and renaming",
                "preflight" => "checking settings, privileges and the table",
                _ => "",
            };
            b.set_message(format!("{what}; {events}"));
        }
    }

    fn status_line(&self, rate: f64) -> String {
        let p = self;
        let pct = if p.rows_estimate > 0 {
            (p.rows_copied as f64 * 100.0 / p.rows_estimate as f64).min(100.0)
        } else {
            0.0
        };
        let eta = if rate > 0.0 && p.rows_estimate > p.rows_copied && p.phase == "copy" {
            format!("{:.0}s", (p.rows_estimate - p.rows_copied) as f64 / rate)
        } else {
            "-".into()
        };
        let throttled = state_note(p);
        format!(
            "[{:>9}] copied {} rows ({pct:.1}%), {rate:.0} rows/s, {} events read ({} left to the copy), lag {}s, ETA {eta}, elapsed {:.0}s{throttled}",
            p.phase, p.rows_copied, p.events, p.skipped, p.lag_secs, p.elapsed.as_secs_f64()
        )
    }
}

impl Shown for SyncProgress {
    fn phase(&self) -> &'static str {
        self.phase
    }

    fn rows_phase(&self) -> &'static str {
        "backfill"
    }

    fn counter(&self) -> u64 {
        if self.phase == "backfill" {
            self.backfill_rows
        } else {
            self.events_applied
        }
    }

    fn new_bar(&self, phase: &'static str) -> ProgressBar {
        match (phase, self.backfill_estimate) {
            ("backfill", Some(estimate)) => rows_bar(
                phase,
                estimate.max(self.backfill_rows).max(1),
                "{prefix:>10.bold} [{bar:36.cyan/blue}] {human_pos}/{human_len} rows ({percent}%), ETA {eta}, {msg}",
                true,
            ),
            // No estimate: the rows counted without a length.
            ("backfill", None) => spinner(
                phase,
                "{prefix:>10.bold} {spinner} {human_pos} rows, {msg}",
                true,
            ),
            _ => spinner(phase, SPINNER, true),
        }
    }

    fn update_bar(&self, b: &ProgressBar, phase: &str) {
        let p = self;
        let lag = format!("lag {:.1} s / {} events", p.lag_secs, p.lag_events);
        if phase == "backfill" {
            if b.length().is_some_and(|len| p.backfill_rows > len) {
                b.set_length(p.backfill_rows);
            }
            b.set_position(p.backfill_rows);
            b.set_message(format!(
                "{:.0} rows/s, {} events applied, {lag}",
                b.per_sec(),
                p.events_applied
            ));
        } else {
            // The spinner's position counts the applied events, for their rate.
            b.set_position(p.events_applied);
            let what = match phase {
                "wait-quiet" => "waiting for the writes to stop; ",
                "locking" => "locking the source tables for reading; ",
                "draining" => "applying everything logged before the drain marker; ",
                "verifying" => "comparing the source and target tables; ",
                _ => "",
            };
            b.set_message(format!(
                "{what}{} events applied, {:.0} events/s, {lag}, source {}",
                p.events_applied,
                b.per_sec(),
                position(p)
            ));
        }
    }

    fn status_line(&self, rate: f64) -> String {
        let p = self;
        let backfill = match p.backfill_estimate {
            Some(est) if est > 0 => format!(
                "{}/~{est} rows ({:.1}%)",
                p.backfill_rows,
                (p.backfill_rows as f64 * 100.0 / est as f64).min(100.0)
            ),
            _ => format!("{} rows", p.backfill_rows),
        };
        let rate = if p.phase == "backfill" {
            format!("{rate:.0} rows/s")
        } else {
            format!("{rate:.0} events/s")
        };
        format!(
            "[{:>9}] backfill {backfill}, {} events applied, {rate}, lag {:.1}s / {} events, source {}, applied {}, elapsed {:.0}s",
            p.phase,
            p.events_applied,
            p.lag_secs,
            p.lag_events,
            position(p),
            p.applied.as_ref().map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            p.elapsed.as_secs_f64()
        )
    }
}

/// The last source position read, `file:offset`.
fn position(p: &SyncProgress) -> String {
    p.source_position
        .as_ref()
        .map(|x| format!("{}:{}", x.file, x.offset))
        .unwrap_or_else(|| "-".into())
}

/// A duration such as `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write e.g. 10s, 500ms or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use ms, s, m or h"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_why_the_copy_is_slow() {
        let mut p = Progress {
            phase: "copy",
            ..Progress::default()
        };
        assert_eq!(state_note(&p), "");
        p.gentle = true;
        assert_eq!(state_note(&p), ", yielding to the application");
        assert!(p
            .status_line(1.0)
            .ends_with(", yielding to the application"));
        // A throttle says more than the pace.
        p.throttled = Some("replica lag 3 s".into());
        assert_eq!(state_note(&p), ", THROTTLED: replica lag 3 s");
        // After the copy the pace no longer matters.
        p.throttled = None;
        p.phase = "verify";
        assert_eq!(state_note(&p), "");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }
}
