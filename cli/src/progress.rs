//! The progress display of `migrate`, fed by `engine::migrate::Progress` over a watch channel.
//!
//! - On a terminal (stderr is a TTY): one `indicatif` bar per phase, drawn on stderr — the copy
//!   as a bar of rows with rate and ETA, the other phases as spinners with their numbers. Log
//!   lines go through [`LogWriter`], which suspends the bars while it prints, so logs (text or
//!   `--log-format json`) appear above the bars and never inside them.
//! - Elsewhere: one plain status line every `--status-interval` (and one at each phase change).
//!
//! Either way the display records how long each phase took, for the final summary.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rowshift_engine::migrate::Progress;
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

/// Show progress until the sender is dropped; returns the phase durations.
pub async fn show(mut rx: watch::Receiver<Progress>, status_interval: Duration) -> PhaseTimes {
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
    let mut last_rows = (Instant::now(), 0u64);
    loop {
        ticker.tick().await;
        let closed = rx.has_changed().is_err();
        let p = rx.borrow_and_update().clone();
        if p.phase != phase && !p.phase.is_empty() {
            if !phase.is_empty() {
                times.push((phase, phase_started.elapsed()));
            }
            if let Some(b) = bar.take() {
                // The engine publishes the final row count before it leaves the copy phase.
                update_bar(&b, phase, &p);
                finish(&b, phase, phase_started.elapsed());
            }
            phase = p.phase;
            phase_started = Instant::now();
            match bars {
                _ if phase == "done" => {}
                Some(mp) => bar = Some(mp.add(new_bar(phase, &p))),
                None => eprint_line(&format!("rowshift: phase {phase}")),
            }
        }
        match &bar {
            Some(b) => update_bar(b, phase, &p),
            None if bars.is_none() && last_line.elapsed() >= status_interval => {
                let rate = {
                    let secs = last_rows.0.elapsed().as_secs_f64().max(1e-3);
                    p.rows_copied.saturating_sub(last_rows.1) as f64 / secs
                };
                last_rows = (Instant::now(), p.rows_copied);
                last_line = Instant::now();
                eprint_line(&status_line(&p, rate));
            }
            None => {}
        }
        if closed {
            if !phase.is_empty() {
                times.push((phase, phase_started.elapsed()));
            }
            if let Some(b) = bar.take() {
                finish(&b, phase, phase_started.elapsed());
            }
            return times;
        }
    }
}

/// Leave a finished phase on screen with its duration (and the copy's average rate).
fn finish(b: &ProgressBar, phase: &str, took: Duration) {
    let secs = took.as_secs_f64();
    if phase == "copy" {
        let rate = b.position() as f64 / secs.max(1e-3);
        b.abandon_with_message(format!("done in {secs:.1} s ({rate:.0} rows/s)"));
    } else {
        b.abandon_with_message(format!("done in {secs:.1} s"));
    }
}

fn new_bar(phase: &'static str, p: &Progress) -> ProgressBar {
    if phase == "copy" {
        let b = ProgressBar::new(p.rows_estimate.max(p.rows_copied).max(1));
        b.set_style(
            ProgressStyle::with_template(
                "{prefix:>10.bold} [{bar:36.cyan/blue}] {human_pos}/{human_len} rows, ETA {eta}, {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_prefix(phase);
        b
    } else {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{prefix:>10.bold} {spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.set_prefix(phase);
        b.enable_steady_tick(Duration::from_millis(200));
        b
    }
}

fn update_bar(b: &ProgressBar, phase: &str, p: &Progress) {
    let throttled = match &p.throttled {
        Some(reason) => format!(", THROTTLED: {reason}"),
        None => String::new(),
    };
    let events = format!(
        "{} events ({} skipped), lag {} s{throttled}",
        p.events, p.skipped, p.lag_secs
    );
    if phase == "copy" {
        if p.rows_copied > b.length().unwrap_or(0) {
            b.set_length(p.rows_copied);
        }
        b.set_position(p.rows_copied);
        b.set_message(format!("{:.0} rows/s, {events}", b.per_sec()));
    } else {
        let what = match phase {
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

fn status_line(p: &Progress, rate: f64) -> String {
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
    let throttled = match &p.throttled {
        Some(reason) => format!(", THROTTLED: {reason}"),
        None => String::new(),
    };
    format!(
        "[{:>9}] copied {} rows ({pct:.1}%), {rate:.0} rows/s, {} events applied ({} skipped), lag {}s, ETA {eta}, elapsed {:.0}s{throttled}",
        p.phase, p.rows_copied, p.events, p.skipped, p.lag_secs, p.elapsed.as_secs_f64()
    )
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
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }
}
