//! Connections to a server: endpoint settings (URL without password, TLS mode, CA), and the
//! session settings every rowshift connection that reads or writes row data uses.
//!
//! Passwords never travel in argv: they come from an environment variable, a password file or a
//! prompt (the CLI's job), and [`Endpoint`]'s `Debug`/`Display` never show them.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Errors of connection setup.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The URL could not be parsed.
    #[error("invalid connection URL {url}: {reason} (expected mysql://user@host:port[/db])")]
    BadUrl {
        /// The URL with any password removed.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// An unknown `--ssl-mode`.
    #[error(
        "unknown ssl mode {0:?}: use disabled, preferred, required, verify-ca or verify-identity"
    )]
    BadSslMode(String),
    /// verify-ca / verify-identity without a CA file.
    #[error("--ssl-mode {0} needs --ssl-ca <file> naming the CA certificate (PEM)")]
    MissingCa(&'static str),
    /// The server refused or the network failed.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint (no password).
        endpoint: String,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
}

/// TLS modes, as the mysql client's `--ssl-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP.
    Disabled,
    /// TLS when the server offers it, else plain (no certificate check).
    #[default]
    Preferred,
    /// TLS required, certificate not checked.
    Required,
    /// TLS required, certificate checked against the CA, host name not checked.
    VerifyCa,
    /// TLS required, certificate and host name checked.
    VerifyIdentity,
}

impl FromStr for SslMode {
    type Err = ConnError;
    fn from_str(s: &str) -> Result<Self, ConnError> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "disabled" => Ok(SslMode::Disabled),
            "preferred" => Ok(SslMode::Preferred),
            "required" => Ok(SslMode::Required),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-identity" => Ok(SslMode::VerifyIdentity),
            _ => Err(ConnError::BadSslMode(s.to_string())),
        }
    }
}

/// Where and how to connect. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    password: Option<String>,
    /// TLS mode.
    pub ssl_mode: SslMode,
    /// CA certificate file for verify-ca / verify-identity.
    pub ssl_ca: Option<PathBuf>,
}

impl Endpoint {
    /// An endpoint from a `mysql://user@host:port[/db]` URL. A password inside the URL is
    /// accepted but removed from every display of it.
    pub fn new(url: &str) -> Result<Endpoint, ConnError> {
        let opts = Opts::from_url(url).map_err(|e| ConnError::BadUrl {
            url: redact_url(url),
            reason: e.to_string(),
        })?;
        let password = opts.pass().map(str::to_string);
        Ok(Endpoint {
            url: url.to_string(),
            password,
            ssl_mode: SslMode::default(),
            ssl_ca: None,
        })
    }

    /// The URL with the password filled in, for components that take a URL. Never display it.
    pub fn url_with_password(&self) -> String {
        match (&self.password, Opts::from_url(&self.url)) {
            (Some(pass), Ok(opts)) => {
                let user = opts.user().unwrap_or("root");
                let host = opts.ip_or_hostname();
                let port = opts.tcp_port();
                let db = opts.db_name().map(|d| format!("/{d}")).unwrap_or_default();
                format!(
                    "mysql://{}:{}@{host}:{port}{db}",
                    percent(user),
                    percent(pass)
                )
            }
            _ => self.url.clone(),
        }
    }

    /// Set the password (from an environment variable, a file or a prompt).
    pub fn with_password(mut self, password: Option<String>) -> Endpoint {
        if password.is_some() {
            self.password = password;
        }
        self
    }

    /// Set the TLS mode and CA.
    pub fn with_ssl(mut self, mode: SslMode, ca: Option<PathBuf>) -> Result<Endpoint, ConnError> {
        if ca.is_none() {
            match mode {
                SslMode::VerifyCa => return Err(ConnError::MissingCa("verify-ca")),
                SslMode::VerifyIdentity => return Err(ConnError::MissingCa("verify-identity")),
                _ => {}
            }
        }
        self.ssl_mode = mode;
        self.ssl_ca = ca;
        Ok(self)
    }

    /// Driver options for this endpoint with TLS as asked; `tls` false forces plain TCP.
    fn opts(&self, tls: bool) -> Result<Opts, ConnError> {
        self.opts_for(tls, None)
    }

    /// Like `opts`, checking the certificate against `name` instead of the URL's host (see
    /// [`verify_ca_name`]).
    fn opts_for(&self, tls: bool, name: Option<&str>) -> Result<Opts, ConnError> {
        let base = Opts::from_url(&self.url).map_err(|e| ConnError::BadUrl {
            url: redact_url(&self.url),
            reason: e.to_string(),
        })?;
        let ssl = if !tls {
            None
        } else {
            match self.ssl_mode {
                SslMode::Disabled => None,
                SslMode::Preferred | SslMode::Required => Some(
                    SslOpts::default()
                        .with_danger_accept_invalid_certs(true)
                        .with_danger_skip_domain_validation(true),
                ),
                SslMode::VerifyCa | SslMode::VerifyIdentity => {
                    let roots = self
                        .ssl_ca
                        .iter()
                        .map(|p| p.clone().into())
                        .collect::<Vec<_>>();
                    let ssl = SslOpts::default()
                        .with_root_certs(roots)
                        .with_disable_built_in_roots(true)
                        .with_danger_skip_domain_validation(self.ssl_mode == SslMode::VerifyCa);
                    Some(match name {
                        Some(n) => ssl.with_danger_tls_hostname_override(Some(n.to_string())),
                        None => ssl,
                    })
                }
            }
        };
        Ok(OptsBuilder::from_opts(base)
            .pass(self.password.clone())
            .ssl_opts(ssl)
            .prefer_socket(false)
            .into())
    }

    /// Driver options (TLS as configured), e.g. for a pool or a binlog stream connection.
    pub fn driver_opts(&self) -> Result<Opts, ConnError> {
        self.opts(true)
    }

    /// The same endpoint with another default database.
    pub fn with_db(&self, db: Option<&str>) -> Result<Opts, ConnError> {
        Ok(OptsBuilder::from_opts(self.opts(true)?)
            .db_name(db.map(str::to_string))
            .into())
    }

    /// Connect with the raw session the server gives (no rowshift session settings).
    pub async fn connect_raw(&self) -> Result<Conn, ConnError> {
        match Conn::new(self.opts(true)?).await {
            Ok(c) => Ok(c),
            Err(e) if self.ssl_mode == SslMode::VerifyCa && verify_ca_name(&e).is_some() => {
                let name = verify_ca_name(&e);
                Conn::new(self.opts_for(true, name.as_deref())?)
                    .await
                    .map_err(|source| ConnError::Connect {
                        endpoint: self.to_string(),
                        source,
                    })
            }
            Err(e) if self.ssl_mode == SslMode::Preferred && is_tls_unsupported(&e) => {
                Conn::new(self.opts(false)?)
                    .await
                    .map_err(|source| ConnError::Connect {
                        endpoint: self.to_string(),
                        source,
                    })
            }
            Err(source) => Err(ConnError::Connect {
                endpoint: self.to_string(),
                source,
            }),
        }
    }

    /// Connect and apply [`DATA_SESSION`]: UTC time zone, bytes as bytes, strict SQL mode.
    pub async fn connect(&self) -> Result<Conn, ConnError> {
        let mut conn = self.connect_raw().await?;
        for stmt in DATA_SESSION {
            conn.query_drop(*stmt)
                .await
                .map_err(|source| ConnError::Connect {
                    endpoint: self.to_string(),
                    source,
                })?;
        }
        Ok(conn)
    }
}

/// Session settings of every connection that reads or writes row data:
/// - `time_zone = '+00:00'`: binlog TIMESTAMPs are UTC; a non-UTC session would shift them.
/// - `NAMES binary`: bytes travel as bytes, never converted between charsets.
/// - `sql_mode`: strict (a lossy write is an error, not a warning), zero dates allowed as the
///   source may hold them, and `NO_AUTO_VALUE_ON_ZERO` so an id 0 is copied as 0.
pub const DATA_SESSION: &[&str] = &[
    "SET time_zone = '+00:00'",
    "SET NAMES binary",
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
];

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// For `verify-ca` (chain checked, host name not): the name the server's certificate is valid
/// for, when the only complaint was the host name.
///
/// The driver's own `skip_domain_validation` no longer works with current rustls (it looks
/// for `NotValidForName` in an error message that now reads "certificate not valid for name").
/// rustls checks the chain against the CA *before* the name, so this error means the chain is
/// valid; connecting again with the certificate's own name as the expected name then verifies
/// the chain once more and lets the name pass.
pub fn verify_ca_name(e: &mysql_async::Error) -> Option<String> {
    let text = e.to_string();
    if !text.contains("not valid for name") {
        return None;
    }
    let rest = text.split("DnsName(\"").nth(1)?;
    let name = rest.split('"').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

fn is_tls_unsupported(e: &mysql_async::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("ssl") || text.contains("tls")
}

/// The URL with the password (if any) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.url))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &redact_url(&self.url))
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_ca", &self.ssl_ca)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_shown() {
        let e = Endpoint::new("mysql://app:s3cret@127.0.0.1:3306/shop").unwrap();
        assert!(!format!("{e}").contains("s3cret"));
        assert!(!format!("{e:?}").contains("s3cret"));
        assert_eq!(
            redact_url("mysql://app:s3cret@127.0.0.1:3306"),
            "mysql://app:***@127.0.0.1:3306"
        );
        assert_eq!(redact_url("mysql://app@h:1"), "mysql://app@h:1");
    }

    #[test]
    fn ssl_modes_parse_like_the_mysql_client() {
        assert_eq!(
            "VERIFY_IDENTITY".parse::<SslMode>().unwrap(),
            SslMode::VerifyIdentity
        );
        assert_eq!("verify-ca".parse::<SslMode>().unwrap(), SslMode::VerifyCa);
        assert!("maybe".parse::<SslMode>().is_err());
        let e = Endpoint::new("mysql://root@127.0.0.1:1").unwrap();
        assert!(matches!(
            e.with_ssl(SslMode::VerifyCa, None),
            Err(ConnError::MissingCa(_))
        ));
    }
}
