//! Hooks: executables in a `--hooks-dir` run at a migration's phase changes, like gh-ost's
//! hooks, with the context in environment variables.
//!
//! For an event named `copy-done` rowshift runs the file `rowshift-on-copy-done` and every file
//! named `rowshift-on-copy-done-<anything>` in the folder, in name order, one after the other,
//! each with a timeout (a hook still running then is killed). Context variables:
//! `ROWSHIFT_HOOK` (the event), `ROWSHIFT_DATABASE`, `ROWSHIFT_TABLE`, `ROWSHIFT_PHASE`,
//! `ROWSHIFT_ROWS_COPIED`, `ROWSHIFT_ROWS_ESTIMATE`, `ROWSHIFT_EVENTS_APPLIED`,
//! `ROWSHIFT_ELAPSED_SECONDS`, `ROWSHIFT_ERROR` (on-failure) and event-specific ones (e.g.
//! `ROWSHIFT_THROTTLE_REASON`). The password never reaches a hook: the variables named by
//! [`Hooks::hide_env`] (the password variable) are removed from the hook's environment.
//!
//! Failure policy (as gh-ost): a hook that exits non-zero or times out on an event *before*
//! the cut-over (`startup`, `copy-start`, `copy-done`, `catch-up-done`, `verify-done`,
//! `before-cut-over`) stops the migration; the original table is left untouched, as for any
//! failure before the cut-over. So `rowshift-on-before-cut-over` can veto a cut-over. Hooks of
//! `success`, `failure`, `throttled` and `unthrottled` only inform: their failure is logged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::{info, info_span, warn, Instrument};

/// The prefix of every hook file name.
pub const PREFIX: &str = "rowshift-on-";

/// Errors of hooks.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hooks folder cannot be read.
    #[error("--hooks-dir {dir}: {source}; give an existing folder of executables")]
    Dir {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file looks like a hook but cannot be run.
    #[error("hook {path} is not executable: chmod +x it, or rename it so it does not start with {PREFIX}")]
    NotExecutable {
        /// The file.
        path: PathBuf,
    },
    /// A file starts with the prefix but names no known event (a typo would never run).
    #[error("hook {path} names no known event; known hooks: {known}")]
    UnknownEvent {
        /// The file.
        path: PathBuf,
        /// The known file names.
        known: String,
    },
    /// A hook could not be started.
    #[error("hook {path} could not be started: {source}")]
    Spawn {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A hook exited non-zero.
    #[error("hook {path} failed ({status}); it stops the migration before the cut-over, the original table is untouched. Its output: {output}")]
    Failed {
        /// The file.
        path: PathBuf,
        /// The exit status.
        status: String,
        /// The last lines of its stderr and stdout.
        output: String,
    },
    /// A hook ran longer than the timeout and was killed.
    #[error("hook {path} did not finish within {timeout:?} and was killed (raise --hook-timeout)")]
    Timeout {
        /// The file.
        path: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
}

/// The moments hooks are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookEvent {
    /// The migration starts (after the options are read, before preflight).
    Startup,
    /// The row copy starts.
    CopyStart,
    /// The row copy finished.
    CopyDone,
    /// The appliers caught up with the binlog.
    CatchUpDone,
    /// The verification finished (or was skipped: `ROWSHIFT_VERIFY=skipped`).
    VerifyDone,
    /// The cut-over is next (after any postponement). A failure aborts the migration.
    BeforeCutOver,
    /// The cut-over is done.
    Success,
    /// The migration failed (`ROWSHIFT_ERROR` holds the message).
    Failure,
    /// Throttling started (`ROWSHIFT_THROTTLE_REASON`).
    Throttled,
    /// Throttling stopped.
    Unthrottled,
}

impl HookEvent {
    /// Every event, in the order a migration meets them.
    pub const ALL: [HookEvent; 10] = [
        HookEvent::Startup,
        HookEvent::CopyStart,
        HookEvent::CopyDone,
        HookEvent::CatchUpDone,
        HookEvent::VerifyDone,
        HookEvent::BeforeCutOver,
        HookEvent::Success,
        HookEvent::Failure,
        HookEvent::Throttled,
        HookEvent::Unthrottled,
    ];

    /// The event's name, as in `ROWSHIFT_HOOK` and the file name.
    pub fn name(self) -> &'static str {
        match self {
            HookEvent::Startup => "startup",
            HookEvent::CopyStart => "copy-start",
            HookEvent::CopyDone => "copy-done",
            HookEvent::CatchUpDone => "catch-up-done",
            HookEvent::VerifyDone => "verify-done",
            HookEvent::BeforeCutOver => "before-cut-over",
            HookEvent::Success => "success",
            HookEvent::Failure => "failure",
            HookEvent::Throttled => "throttled",
            HookEvent::Unthrottled => "unthrottled",
        }
    }

    /// The hook's file name, e.g. `rowshift-on-copy-done`.
    pub fn file_name(self) -> String {
        format!("{PREFIX}{}", self.name())
    }

    /// True when a failing hook stops the migration (events before the cut-over).
    pub fn is_blocking(self) -> bool {
        !matches!(
            self,
            HookEvent::Success | HookEvent::Failure | HookEvent::Throttled | HookEvent::Unthrottled
        )
    }

    fn for_file(name: &str) -> Option<HookEvent> {
        HookEvent::ALL.into_iter().find(|e| {
            let base = e.file_name();
            name == base
                || name
                    .strip_prefix(&base)
                    .is_some_and(|rest| rest.starts_with('-'))
        })
    }
}

/// What a hook is told, as environment variables.
#[derive(Debug, Clone, Default)]
pub struct HookContext {
    /// Database of the table (`ROWSHIFT_DATABASE`).
    pub database: String,
    /// The table (`ROWSHIFT_TABLE`).
    pub table: String,
    /// The phase (`ROWSHIFT_PHASE`).
    pub phase: String,
    /// Rows copied (`ROWSHIFT_ROWS_COPIED`).
    pub rows_copied: u64,
    /// Estimated rows (`ROWSHIFT_ROWS_ESTIMATE`).
    pub rows_estimate: u64,
    /// Binlog row events read for the table (`ROWSHIFT_EVENTS_APPLIED`).
    pub events: u64,
    /// Time since the start (`ROWSHIFT_ELAPSED_SECONDS`, whole seconds).
    pub elapsed: Duration,
    /// The error, for on-failure (`ROWSHIFT_ERROR`).
    pub error: Option<String>,
    /// More variables, e.g. `("ROWSHIFT_THROTTLE_REASON", "...")`.
    pub extra: Vec<(String, String)>,
}

impl HookContext {
    /// The environment variables of this context.
    pub fn env(&self, event: HookEvent) -> Vec<(String, String)> {
        let mut v = vec![
            ("ROWSHIFT_HOOK".to_string(), event.name().to_string()),
            ("ROWSHIFT_DATABASE".into(), self.database.clone()),
            ("ROWSHIFT_TABLE".into(), self.table.clone()),
            ("ROWSHIFT_PHASE".into(), self.phase.clone()),
            ("ROWSHIFT_ROWS_COPIED".into(), self.rows_copied.to_string()),
            (
                "ROWSHIFT_ROWS_ESTIMATE".into(),
                self.rows_estimate.to_string(),
            ),
            ("ROWSHIFT_EVENTS_APPLIED".into(), self.events.to_string()),
            (
                "ROWSHIFT_ELAPSED_SECONDS".into(),
                self.elapsed.as_secs().to_string(),
            ),
        ];
        if let Some(e) = &self.error {
            v.push(("ROWSHIFT_ERROR".into(), e.clone()));
        }
        v.extend(self.extra.iter().cloned());
        v
    }
}

/// The hooks of one run. `Hooks::default()` has none; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hooks {
    /// `(event, executable)` in name order.
    files: Vec<(HookEvent, PathBuf)>,
    timeout: Duration,
    hidden_env: Vec<String>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            files: Vec::new(),
            timeout: Duration::from_secs(60),
            hidden_env: Vec::new(),
        }
    }
}

impl Hooks {
    /// The hooks found in `dir`, each run with `timeout`. Every file whose name starts with
    /// `rowshift-on-` must name a known event and be executable, so a typo or a missing
    /// `chmod +x` is found before the migration starts, not when the hook should have run.
    pub fn from_dir(dir: &Path, timeout: Duration) -> Result<Hooks, HookError> {
        let entries = std::fs::read_dir(dir).map_err(|source| HookError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| HookError::Dir {
                dir: dir.to_path_buf(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(PREFIX) {
                continue;
            }
            let path = entry.path();
            let Some(event) = HookEvent::for_file(&name) else {
                return Err(HookError::UnknownEvent {
                    path,
                    known: HookEvent::ALL
                        .iter()
                        .map(|e| e.file_name())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            if !is_executable(&path) {
                return Err(HookError::NotExecutable { path });
            }
            files.push((event, path));
        }
        files.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(Hooks {
            files,
            timeout,
            ..Hooks::default()
        })
    }

    /// Remove these environment variables (the password's) from every hook's environment.
    pub fn hide_env(mut self, names: impl IntoIterator<Item = String>) -> Hooks {
        self.hidden_env.extend(names);
        self
    }

    /// True when no hook is installed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The executables for `event`, in the order they run.
    pub fn for_event(&self, event: HookEvent) -> impl Iterator<Item = &Path> {
        self.files
            .iter()
            .filter(move |(e, _)| *e == event)
            .map(|(_, p)| p.as_path())
    }

    /// Run the hooks of `event` one after the other. For a blocking event
    /// ([`HookEvent::is_blocking`]) the first failure is returned and later hooks do not run;
    /// for the others every hook runs and failures are only logged (the result is `Ok`).
    pub async fn fire(&self, event: HookEvent, ctx: &HookContext) -> Result<(), HookError> {
        for path in self.for_event(event) {
            let span = info_span!("hook", event = event.name(), path = %path.display());
            match self.run_one(path, event, ctx).instrument(span).await {
                Ok(()) => {}
                Err(e) if event.is_blocking() => return Err(e),
                Err(e) => warn!(error = %e, "hook failed (informational hook, the outcome stays)"),
            }
        }
        Ok(())
    }

    async fn run_one(
        &self,
        path: &Path,
        event: HookEvent,
        ctx: &HookContext,
    ) -> Result<(), HookError> {
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(path);
        for name in &self.hidden_env {
            cmd.env_remove(name);
        }
        cmd.envs(ctx.env(event))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| HookError::Spawn {
            path: path.to_path_buf(),
            source,
        })?;
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Err(_) => {
                return Err(HookError::Timeout {
                    path: path.to_path_buf(),
                    timeout: self.timeout,
                })
            }
            Ok(Err(source)) => {
                return Err(HookError::Spawn {
                    path: path.to_path_buf(),
                    source,
                })
            }
            Ok(Ok(out)) => out,
        };
        let output = tail(&out.stderr, &out.stdout);
        if !out.status.success() {
            return Err(HookError::Failed {
                path: path.to_path_buf(),
                status: out.status.to_string(),
                output,
            });
        }
        info!(took_ms = started.elapsed().as_millis() as u64, output = %output, "hook ran");
        Ok(())
    }
}

/// The last lines of a hook's stderr and stdout, for the log and error messages.
fn tail(stderr: &[u8], stdout: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(stdout));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_map_to_events() {
        assert_eq!(
            HookEvent::for_file("rowshift-on-copy-done"),
            Some(HookEvent::CopyDone)
        );
        assert_eq!(
            HookEvent::for_file("rowshift-on-copy-done-slack"),
            Some(HookEvent::CopyDone)
        );
        assert_eq!(
            HookEvent::for_file("rowshift-on-throttled"),
            Some(HookEvent::Throttled)
        );
        assert_eq!(
            HookEvent::for_file("rowshift-on-unthrottled"),
            Some(HookEvent::Unthrottled)
        );
        assert_eq!(HookEvent::for_file("rowshift-on-copy"), None);
        assert_eq!(HookEvent::for_file("rowshift-on-copy-doneX"), None);
        assert!(HookEvent::BeforeCutOver.is_blocking());
        assert!(!HookEvent::Failure.is_blocking());
    }

    #[test]
    fn context_carries_no_password_and_names_the_error() {
        let ctx = HookContext {
            database: "shop".into(),
            table: "orders".into(),
            phase: "copy".into(),
            rows_copied: 5,
            error: Some("boom".into()),
            ..HookContext::default()
        };
        let env = ctx.env(HookEvent::Failure);
        assert!(env.contains(&("ROWSHIFT_ERROR".into(), "boom".into())));
        assert!(env.contains(&("ROWSHIFT_ROWS_COPIED".into(), "5".into())));
        assert!(env.iter().all(|(k, _)| !k.contains("PASSWORD")));
    }
}
