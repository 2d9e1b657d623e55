//! Options shared by every subcommand that connects to a server.

use anyhow::{bail, Context, Result};
use rowshift_engine::conn::{redact_url, Endpoint, SslMode};
use std::path::{Path, PathBuf};

/// Connection options of one server. The password never comes from argv nor from the config
/// file: it is read from `--password-file`, asked on the terminal (`--ask-password`) or taken
/// from the environment variable named by `--password-env` (default `ROWSHIFT_PASSWORD`). A URL
/// with a password in it is refused, as argv is visible to every user of the machine.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// Server URL without password, e.g. mysql://admin@db.example.com:3306
    #[arg(long, env = "ROWSHIFT_SOURCE")]
    pub source: String,
    /// Environment variable holding the password.
    #[arg(long, default_value = "ROWSHIFT_PASSWORD")]
    pub password_env: String,
    /// File holding the password (first line).
    #[arg(long, env = "ROWSHIFT_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Ask for the password on the terminal (not echoed).
    #[arg(long, conflicts_with = "password_file")]
    pub ask_password: bool,
    /// Print the effective configuration (each value with where it came from: command line,
    /// environment, config file or default) and exit without connecting.
    #[arg(long)]
    pub print_config: bool,
    /// TLS: disabled, preferred, required, verify-ca, verify-identity.
    #[arg(long, default_value = "preferred", env = "ROWSHIFT_SSL_MODE")]
    pub ssl_mode: String,
    /// CA certificate (PEM) for verify-ca / verify-identity.
    #[arg(long, env = "ROWSHIFT_SSL_CA")]
    pub ssl_ca: Option<PathBuf>,
}

impl ConnArgs {
    /// The endpoint, with the password from the environment or the file.
    pub fn endpoint(&self) -> Result<Endpoint> {
        refuse_url_password("--source", &self.source)?;
        let password = read_password(
            self.password_file.as_deref(),
            self.ask_password,
            &self.password_env,
            &self.source,
        )?;
        let mode: SslMode = self.ssl_mode.parse()?;
        Ok(Endpoint::new(&self.source)?
            .with_password(password)
            .with_ssl(mode, self.ssl_ca.clone())?)
    }
}

/// Refuse a URL with a password in it (argv and config files are no place for one).
pub fn refuse_url_password(flag: &str, url: &str) -> Result<()> {
    if redact_url(url) != url {
        bail!(
            "{flag} {}: the URL holds a password; remove it and give the password with --password-env VAR (default ROWSHIFT_PASSWORD), --password-file FILE or --ask-password",
            redact_url(url)
        );
    }
    Ok(())
}

/// The password from the file (first line), a terminal prompt, or the environment variable.
pub fn read_password(
    file: Option<&Path>,
    ask: bool,
    env: &str,
    url: &str,
) -> Result<Option<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the password file {}", path.display()))?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
    }
    if ask {
        let prompt = format!("password for {}: ", redact_url(url));
        let pw = rpassword::prompt_password(prompt)
            .context("reading the password from the terminal (--ask-password needs one)")?;
        return Ok(Some(pw));
    }
    Ok(std::env::var(env).ok())
}

/// Split `db.table` (either part may be backquoted).
pub fn split_table(s: &str) -> Result<(String, String)> {
    let parts: Vec<String> = split_ident_path(s);
    if parts.len() != 2 || parts.iter().any(String::is_empty) {
        bail!("--table must be db.table (got {s:?})");
    }
    Ok((parts[0].clone(), parts[1].clone()))
}

fn split_ident_path(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' if quoted && chars.peek() == Some(&'`') => {
                chars.next();
                if let Some(last) = out.last_mut() {
                    last.push('`');
                }
            }
            '`' => quoted = !quoted,
            '.' if !quoted => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_split_with_quotes() {
        assert_eq!(
            split_table("shop.orders").unwrap(),
            ("shop".into(), "orders".into())
        );
        assert_eq!(
            split_table("`a.b`.`c``d`").unwrap(),
            ("a.b".into(), "c`d".into())
        );
        assert!(split_table("orders").is_err());
    }
}
