//! Configuration layers for the long-running subcommands (`migrate`, `verify`, and any other
//! listed in [`CONFIGURABLE`]): every flag also comes from an environment variable
//! `ROWSHIFT_<FLAG>` (`--copy-workers` → `ROWSHIFT_COPY_WORKERS`) and from a TOML file given
//! with `--config FILE` (or `ROWSHIFT_CONFIG`).
//!
//! Precedence: command line > environment > config file > built-in default. It is clap's own
//! precedence: the file's values become the arguments' defaults before parsing, so a new flag
//! of a new subcommand is configurable without code here.
//!
//! File layout: keys at the top level apply to every configurable subcommand that has that
//! flag (typically `source`, `ssl-mode`, `ssl-ca`, `password-env`); a `[migrate]` or `[verify]`
//! table applies to that subcommand only and wins over the top level. Keys are the flag names
//! without `--` (`chunk-time-ms`, or `chunk_time_ms`). An unknown key is an error naming it.
//! Passwords are never read from the file.

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Subcommands whose flags come from the environment and the config file too.
pub const CONFIGURABLE: &[&str] = &["migrate", "verify", "sync"];

/// Arguments that are about the invocation itself, not the job: no environment variable
/// (beyond their own), never from the file.
const NOT_CONFIGURABLE: &[&str] = &["help", "version", "config", "print_config"];

/// The global arguments a file may set at its top level.
const GLOBAL_KEYS: &[&str] = &["log-format"];

/// What the file set, per subcommand: flag id → (values, where from).
#[derive(Debug, Default)]
pub struct FileLayer {
    /// The file.
    pub path: Option<PathBuf>,
    /// (subcommand, arg id) pairs whose default came from the file.
    pub from_file: BTreeSet<(String, String)>,
}

/// The environment variable of a flag: `--copy-workers` → `ROWSHIFT_COPY_WORKERS`.
pub fn env_name(long: &str) -> String {
    format!("ROWSHIFT_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// The command line interface with environment variables and the file's values applied, and
/// what came from the file.
pub fn build(mut cmd: Command, argv: &[OsString]) -> Result<(Command, FileLayer)> {
    for name in CONFIGURABLE {
        if cmd.find_subcommand(name).is_some() {
            cmd = cmd.mut_subcommand(name, add_env);
        }
    }
    let mut layer = FileLayer::default();
    let path = config_path(argv);
    let Some(path) = path else {
        return Ok((cmd, layer));
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("the config file {} is not valid TOML", path.display()))?;
    let shown = path.display().to_string();
    let mut top: Vec<(String, toml::Value)> = Vec::new();
    let mut sections: BTreeMap<String, toml::Table> = BTreeMap::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(t) if CONFIGURABLE.contains(&key.as_str()) => {
                sections.insert(key, t);
            }
            toml::Value::Table(_) => bail!(
                "config file {shown}: unknown section [{key}]; sections are {}",
                CONFIGURABLE
                    .iter()
                    .filter(|n| cmd.find_subcommand(n).is_some())
                    .map(|n| format!("[{n}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            v => top.push((normalize(&key), v)),
        }
    }
    // Top-level keys: global flags, or flags of at least one configurable subcommand.
    for (key, value) in &top {
        refuse_password(&shown, key)?;
        if GLOBAL_KEYS.contains(&key.as_str()) {
            let id = key.replace('-', "_");
            let values = to_strings(&shown, key, value)?;
            cmd = cmd.mut_arg(&id, |a| a.default_values(values));
            continue;
        }
        let mut known = false;
        for name in CONFIGURABLE {
            let Some(sub) = cmd.find_subcommand(name) else {
                continue;
            };
            if let Some(id) = arg_id(sub, key) {
                known = true;
                let section_has = sections
                    .get(*name)
                    .is_some_and(|t| t.keys().any(|k| normalize(k) == *key));
                if !section_has {
                    cmd = set_default(cmd, name, &id, &shown, key, value)?;
                    layer.from_file.insert((name.to_string(), id));
                }
            }
        }
        if !known {
            bail!("config file {shown}: unknown key `{key}`: no subcommand has a --{key} flag (see rowshift migrate --help)");
        }
    }
    for (name, t) in sections {
        for (key, value) in t {
            let key = normalize(&key);
            refuse_password(&shown, &key)?;
            let Some(id) = cmd.find_subcommand(&name).and_then(|s| arg_id(s, &key)) else {
                bail!("config file {shown}: unknown key `{name}.{key}`: rowshift {name} has no --{key} flag (see rowshift {name} --help)");
            };
            cmd = set_default(cmd, &name, &id, &shown, &key, &value)?;
            layer.from_file.insert((name.clone(), id));
        }
    }
    layer.path = Some(path);
    Ok((cmd, layer))
}

fn normalize(key: &str) -> String {
    key.replace('_', "-")
}

fn refuse_password(shown: &str, key: &str) -> Result<()> {
    if key == "password" || key == "target-password" {
        bail!("config file {shown}: `{key}`: passwords are never read from the config file; use password-env (an environment variable), password-file or --ask-password");
    }
    Ok(())
}

/// Add `ROWSHIFT_<FLAG>` to every argument of a subcommand that has no variable yet; flags
/// accept yes/no/true/false/1/0 there.
fn add_env(mut sub: Command) -> Command {
    let args: Vec<(String, String, bool)> = sub
        .get_arguments()
        .filter(|a| !NOT_CONFIGURABLE.contains(&a.get_id().as_str()) && a.get_env().is_none())
        .filter_map(|a| {
            a.get_long().map(|l| {
                (
                    a.get_id().to_string(),
                    l.to_string(),
                    matches!(a.get_action(), ArgAction::SetTrue),
                )
            })
        })
        .collect();
    for (id, long, flag) in args {
        sub = sub.mut_arg(&id, |a| {
            let a = a.env(env_name(&long));
            if flag {
                a.value_parser(clap::builder::BoolishValueParser::new())
            } else {
                a
            }
        });
    }
    sub
}

/// The id of the argument whose long flag is `key`, if it may be configured.
fn arg_id(sub: &Command, key: &str) -> Option<String> {
    sub.get_arguments()
        .find(|a| a.get_long() == Some(key) && !NOT_CONFIGURABLE.contains(&a.get_id().as_str()))
        .map(|a| a.get_id().to_string())
}

fn set_default(
    cmd: Command,
    sub: &str,
    id: &str,
    shown: &str,
    key: &str,
    value: &toml::Value,
) -> Result<Command> {
    let values = to_strings(shown, key, value)?;
    let is_flag = cmd
        .find_subcommand(sub)
        .and_then(|s| s.get_arguments().find(|a| a.get_id() == id))
        .is_some_and(|a| matches!(a.get_action(), ArgAction::SetTrue));
    if is_flag && !matches!(value, toml::Value::Boolean(_)) {
        bail!("config file {shown}: `{key}` is a switch: write {key} = true or false");
    }
    Ok(cmd.mut_subcommand(sub, |s| {
        s.mut_arg(id, |a| {
            a.default_values(values)
                .required(false)
                .required_unless_present(clap::builder::Resettable::<clap::Id>::Reset)
        })
    }))
}

fn to_strings(shown: &str, key: &str, value: &toml::Value) -> Result<Vec<String>> {
    Ok(match value {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Integer(i) => vec![i.to_string()],
        toml::Value::Float(f) => vec![f.to_string()],
        toml::Value::Boolean(b) => vec![b.to_string()],
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    toml::Value::Array(_) | toml::Value::Table(_) => {
                        bail!("config file {shown}: `{key}`: lists hold plain values")
                    }
                    v => out.extend(to_strings(shown, key, v)?),
                }
            }
            out
        }
        toml::Value::Datetime(_) | toml::Value::Table(_) => {
            bail!("config file {shown}: `{key}`: expected a string, number, true/false or a list")
        }
    })
}

/// `--config FILE` / `--config=FILE` from argv, else `ROWSHIFT_CONFIG`.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            break;
        }
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("ROWSHIFT_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The effective configuration of the subcommand `name` as TOML, each value with where it
/// came from; URLs with their password (if any) redacted.
pub fn describe(cmd: &Command, name: &str, m: &ArgMatches, layer: &FileLayer) -> String {
    let file = layer
        .path
        .as_deref()
        .map(Path::display)
        .map(|d| d.to_string())
        .unwrap_or_default();
    let mut out = format!(
        "# effective configuration of `rowshift {name}` (command line > environment > config file > default)\n"
    );
    let Some(sub) = cmd.find_subcommand(name) else {
        return out;
    };
    for arg in sub.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_CONFIGURABLE.contains(&id) {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        let Some(raw) = m.get_raw(id) else { continue };
        let values: Vec<String> = if matches!(arg.get_action(), ArgAction::SetTrue) {
            let on = m.try_get_one::<bool>(id).ok().flatten().copied();
            vec![on.unwrap_or(false).to_string()]
        } else {
            raw.map(|v| rowshift_engine::conn::redact_url(&v.to_string_lossy()))
                .collect()
        };
        let origin = match m.value_source(id) {
            Some(ValueSource::CommandLine) => "command line".to_string(),
            Some(ValueSource::EnvVariable) => format!(
                "environment {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            Some(ValueSource::DefaultValue)
                if layer
                    .from_file
                    .contains(&(name.to_string(), id.to_string())) =>
            {
                format!("config file {file}")
            }
            _ => "default".to_string(),
        };
        let multiple = matches!(arg.get_action(), ArgAction::Append);
        let text = if multiple {
            format!(
                "[{}]",
                values
                    .iter()
                    .map(|v| toml_value(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            values.first().map(|v| toml_value(v)).unwrap_or_default()
        };
        out.push_str(&format!("{long} = {text}  # {origin}\n"));
    }
    out
}

fn toml_value(v: &str) -> String {
    if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
        v.to_string()
    } else {
        toml::Value::String(v.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_flag() {
        assert_eq!(env_name("copy-workers"), "ROWSHIFT_COPY_WORKERS");
        assert_eq!(env_name("appliers"), "ROWSHIFT_APPLIERS");
    }

    #[test]
    fn config_path_from_argv() {
        let argv: Vec<OsString> = ["rowshift", "migrate", "--config=x.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(config_path(&argv), Some(PathBuf::from("x.toml")));
        let argv: Vec<OsString> = ["rowshift", "--config", "y.toml", "migrate"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(config_path(&argv), Some(PathBuf::from("y.toml")));
    }
}
