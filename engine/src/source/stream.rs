//! The live binlog source: connects as a replica (`COM_REGISTER_SLAVE` + `COM_BINLOG_DUMP`
//! or `COM_BINLOG_DUMP_GTID`, through mysql_async), starts at a file offset, a GTID set
//! (MySQL) or GTID list (MariaDB), or the current end, and yields decoded events in order.
//!
//! A second connection reads `information_schema` for TABLE_MAPs without column names.
//! mysql_async decompresses MySQL transaction payloads and yields their inner events after
//! the payload event; the decoder checks that all of them arrive.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts, OptsBuilder, SslOpts};
use mysql_common::binlog::consts::{BinlogChecksumAlg, EventType};
use mysql_common::packets::{GnoInterval, Sid, Tag};
use tracing::{debug, info_span, Instrument};

use super::decode::{DecodeError, DecodeOptions, Decoder, Flavor, RawEvent};
use super::preflight::{check_source, PreflightError, ServerInfo};
use super::schema_cache::{load_table, SchemaError};
use super::xa::XaHold;
use crate::event::SourceEvent;
use crate::position::{GtidState, Position, StartPosition};

/// TLS mode, as the `mysql` client's `--ssl-mode` (one type for every connection).
pub use crate::conn::SslMode;

/// Settings of a live binlog source. Its `Debug` hides the URL's password.
#[derive(Clone)]
pub struct SourceConfig {
    /// `mysql://user:password@host:port/` of the source server.
    pub url: String,
    /// Replica server id; must differ from every other replica of the server.
    pub server_id: u32,
    /// Where to start.
    pub start: StartPosition,
    /// TLS mode.
    pub ssl_mode: SslMode,
    /// CA certificate (PEM) for `verify-ca` / `verify-identity`.
    pub ssl_ca: Option<PathBuf>,
    /// Stop at the end of the binlog instead of waiting for new events.
    pub until_end: bool,
    /// Server heartbeat period; the source fails when nothing arrives for 3 periods.
    pub heartbeat: Duration,
    /// Decoder settings.
    pub decode: DecodeOptions,
    /// Run the preflight checks (binlog on, ROW format, FULL image).
    pub preflight: bool,
    /// The server the stream must come from ([`server_identity`]), checked at every
    /// connection: binlog coordinates mean nothing on another server (a name or virtual IP
    /// that failed over to a replica). `None`: not checked.
    pub expect_server: Option<String>,
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("url", &crate::conn::redact_url(&self.url))
            .field("server_id", &self.server_id)
            .field("start", &self.start)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_ca", &self.ssl_ca)
            .field("until_end", &self.until_end)
            .field("heartbeat", &self.heartbeat)
            .field("decode", &self.decode)
            .field("preflight", &self.preflight)
            .field("expect_server", &self.expect_server)
            .finish()
    }
}

impl SourceConfig {
    /// Defaults for `url`: a server id derived from the process id, start at the end,
    /// preferred TLS, 5 s heartbeats.
    pub fn new(url: impl Into<String>) -> Self {
        SourceConfig {
            url: url.into(),
            server_id: default_server_id(),
            start: StartPosition::End,
            ssl_mode: SslMode::Preferred,
            ssl_ca: None,
            until_end: false,
            heartbeat: Duration::from_secs(5),
            decode: DecodeOptions::default(),
            preflight: true,
            expect_server: None,
        }
    }
}

/// A server id unlikely to collide: `0x52_53_xx_xx` ("RS") with the low bits of the pid.
pub fn default_server_id() -> u32 {
    0x5253_0000 | (std::process::id() & 0xffff)
}

/// Errors of the live source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The URL does not parse.
    #[error("invalid source URL: {0}")]
    Url(String),
    /// Connecting failed.
    #[error("connecting to {host}:{port} failed")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Driver error.
        #[source]
        source: mysql_async::Error,
    },
    /// A setting makes the binlog unusable.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// A query on the source failed.
    #[error("{what} failed")]
    Query {
        /// What the query was for.
        what: &'static str,
        /// Driver error.
        #[source]
        source: mysql_async::Error,
    },
    /// The server is not the one the stream must come from.
    #[error("the binlog server is {have}, not {want}: its binlog coordinates are not the ones this run follows (a name or address that now points at another server, e.g. after a failover); point the run at {want}, or start anew")]
    OtherServer {
        /// The server expected.
        want: String,
        /// The server reached.
        have: String,
    },
    /// The start position cannot be used.
    #[error("cannot start at {start}: {reason}")]
    Start {
        /// The requested start.
        start: String,
        /// Why.
        reason: String,
    },
    /// The replication stream failed (network, server restart, purged binlog, ...).
    #[error("binlog stream from the server failed{}", stream_hint(.source))]
    Stream {
        /// Driver or server error.
        #[source]
        source: mysql_async::Error,
    },
    /// Nothing (not even a heartbeat) arrived in time.
    #[error("no event or heartbeat from the server for {secs} s")]
    Timeout {
        /// Seconds waited.
        secs: u64,
    },
    /// An event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// information_schema could not be read.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// What to do about a stream error the server sent, when there is something to say.
fn stream_hint(e: &mysql_async::Error) -> &'static str {
    match e {
        mysql_async::Error::Server(s) if s.code == 1236 => {
            " (the binlog needed to go on is gone, purged or never written: this position cannot be resumed from; `--abort` and start again, and keep binlogs longer than a run may be stopped)"
        }
        _ => "",
    }
}

impl SourceError {
    /// True for errors a restart from the last commit position may cure (network, timeouts,
    /// server restarts); false for definite ones (settings, undecodable events, and an error
    /// the server sent on the stream that is neither a lost connection nor an interruption:
    /// 1236, a purged or missing binlog file, is sent again to every reconnect, which would
    /// retry forever).
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Stream { source } => match source {
                // 1317: the dump was interrupted (a shutting-down server, a KILL QUERY).
                mysql_async::Error::Server(s) => {
                    s.code == 1317 || super::reconnect::is_lost(source)
                }
                _ => true,
            },
            SourceError::Connect { .. } | SourceError::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Connection options for `url` with the TLS mode applied.
pub fn connect_opts(url: &str, mode: SslMode, ca: Option<&PathBuf>) -> Result<Opts, SourceError> {
    connect_opts_for(url, mode, ca, None)
}

/// [`connect_opts`], checking the certificate against `name` (see
/// [`crate::conn::verify_ca_name`]).
fn connect_opts_for(
    url: &str,
    mode: SslMode,
    ca: Option<&PathBuf>,
    name: Option<&str>,
) -> Result<Opts, SourceError> {
    let opts = Opts::from_url(url).map_err(|e| SourceError::Url(e.to_string()))?;
    let ssl = match mode {
        SslMode::Disabled => None,
        SslMode::Preferred | SslMode::Required => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        SslMode::VerifyCa | SslMode::VerifyIdentity => {
            let mut s = SslOpts::default();
            if let Some(ca) = ca {
                s = s.with_root_certs(vec![ca.clone().into()]);
            }
            if mode == SslMode::VerifyCa {
                s = s.with_danger_skip_domain_validation(true);
            }
            if let Some(n) = name {
                s = s.with_danger_tls_hostname_override(Some(n.to_string()));
            }
            Some(s)
        }
    };
    Ok(OptsBuilder::from_opts(opts).ssl_opts(ssl).into())
}

/// Connects with the TLS mode (falling back to plain text for `preferred` when the server
/// offers no TLS).
pub async fn connect(url: &str, mode: SslMode, ca: Option<&PathBuf>) -> Result<Conn, SourceError> {
    let opts = connect_opts(url, mode, ca)?;
    let host = opts.ip_or_hostname().to_owned();
    let port = opts.tcp_port();
    match Conn::new(opts).await {
        Ok(c) => Ok(c),
        Err(e) if mode == SslMode::VerifyCa && crate::conn::verify_ca_name(&e).is_some() => {
            let name = crate::conn::verify_ca_name(&e);
            Conn::new(connect_opts_for(url, mode, ca, name.as_deref())?)
                .await
                .map_err(|source| SourceError::Connect { host, port, source })
        }
        Err(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer))
            if mode == SslMode::Preferred =>
        {
            let plain = connect_opts(url, SslMode::Disabled, None)?;
            Conn::new(plain)
                .await
                .map_err(|source| SourceError::Connect { host, port, source })
        }
        Err(source) => Err(SourceError::Connect { host, port, source }),
    }
}

/// The server's identity: `server_uuid` on MySQL (kept on the data volume, so a
/// storage-level failover keeps it), `server_id N` on MariaDB (which has no uuid).
pub async fn server_identity(conn: &mut Conn, flavor: Flavor) -> Result<String, SourceError> {
    let id: Option<String> = match flavor {
        Flavor::MySql => conn.query_first("SELECT @@server_uuid").await,
        Flavor::MariaDb => {
            conn.query_first("SELECT CONCAT('server_id ', @@server_id)")
                .await
        }
    }
    .map_err(|source| SourceError::Query {
        what: "reading the server's identity",
        source,
    })?;
    Ok(id.unwrap_or_default())
}

/// The server's current binlog coordinate and GTID state.
pub async fn current_position(conn: &mut Conn, flavor: Flavor) -> Result<Position, SourceError> {
    let q = |source| SourceError::Query {
        what: "reading the binlog position (SHOW BINARY LOG STATUS)",
        source,
    };
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW BINARY LOG STATUS").await {
        Ok(r) => r,
        Err(_) => conn.query_first("SHOW MASTER STATUS").await.map_err(q)?,
    };
    let row = row.ok_or_else(|| SourceError::Start {
        start: "end".into(),
        reason: "the server reports no binary log (log_bin=OFF?)".into(),
    })?;
    let file: String = row.get("File").unwrap_or_default();
    let offset: u64 = row.get("Position").unwrap_or(4);
    let gtid = match flavor {
        Flavor::MySql => {
            let set: Option<String> = row.get_opt("Executed_Gtid_Set").and_then(Result::ok);
            match set {
                Some(s) => GtidState::parse(&s.replace('\n', "")).unwrap_or_default(),
                None => GtidState::Unknown,
            }
        }
        Flavor::MariaDb => maria_gtid_at(conn, &file, offset).await?,
    };
    Ok(Position { file, offset, gtid })
}

/// MariaDB: the GTID state at `file:offset` (`BINLOG_GTID_POS`).
async fn maria_gtid_at(conn: &mut Conn, file: &str, offset: u64) -> Result<GtidState, SourceError> {
    let v: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, offset))
        .await
        .map_err(|source| SourceError::Query {
            what: "BINLOG_GTID_POS",
            source,
        })?;
    Ok(match v.flatten() {
        Some(s) if s.is_empty() => GtidState::MariaDb(Default::default()),
        Some(s) => GtidState::parse(&s).unwrap_or_default(),
        None => GtidState::Unknown,
    })
}

/// The live binlog source.
pub struct BinlogSource {
    stream: BinlogStream,
    meta: Conn,
    decoder: Decoder,
    queue: VecDeque<SourceEvent>,
    scratch: Vec<SourceEvent>,
    info: ServerInfo,
    heartbeat: Duration,
    /// How many times the usual wait [`BinlogSource::next`] gives the server (see
    /// [`BinlogSource::set_patience`]).
    patience: u32,
    until_end: bool,
    done: bool,
    /// MySQL `file:offset` starts read the file from its start to learn the GTID state at
    /// the offset: events of that file before this offset only update that state.
    skip_until: Option<u64>,
    /// The file `skip_until` is an offset of. A file that ends at the offset without a ROTATE
    /// (the server crashed: its next file was opened at the restart) is followed by the next
    /// file, whose offsets start again at 4: none of its events may be skipped.
    skip_file: String,
}

impl BinlogSource {
    /// Connects, runs the preflight checks, resolves the start and requests the stream.
    pub async fn connect(cfg: SourceConfig) -> Result<Self, SourceError> {
        let span = info_span!("binlog_source", server_id = cfg.server_id);
        async move {
            let mut meta = connect(&cfg.url, cfg.ssl_mode, cfg.ssl_ca.as_ref()).await?;
            let info = if cfg.preflight {
                check_source(&mut meta).await?
            } else {
                super::preflight::server_info(&mut meta).await?
            };
            if let Some(want) = &cfg.expect_server {
                let have = server_identity(&mut meta, info.flavor).await?;
                if have != *want {
                    return Err(SourceError::OtherServer {
                        want: want.clone(),
                        have,
                    });
                }
            }
            let mut conn = connect(&cfg.url, cfg.ssl_mode, cfg.ssl_ca.as_ref()).await?;
            let q = |what| move |source| SourceError::Query { what, source };
            let hb_ns = cfg.heartbeat.as_nanos().min(u64::MAX as u128) as u64;
            conn.query_drop(format!(
                "SET @master_heartbeat_period = {hb_ns}, @source_heartbeat_period = {hb_ns}, \
                 @source_binlog_checksum = 'CRC32'"
            ))
            .await
            .map_err(q("setting the heartbeat period"))?;
            if info.flavor == Flavor::MariaDb {
                // 4 = MARIA_SLAVE_CAPABILITY_GTID: send GTID, GTID_LIST and annotate events.
                conn.query_drop("SET @mariadb_slave_capability = 4")
                    .await
                    .map_err(q("announcing MariaDB replica capabilities"))?;
            }
            let start_text = format!("{:?}", cfg.start);
            let mut skip_until = None;
            // A position with its GTID state needs no lookup; without one it is a file offset.
            let start = match &cfg.start {
                StartPosition::At(p) => match (info.flavor, &p.gtid) {
                    (Flavor::MySql, GtidState::MySql(_)) | (Flavor::MariaDb, GtidState::MariaDb(_)) => {
                        cfg.start.clone()
                    }
                    _ => StartPosition::File {
                        file: p.file.clone(),
                        offset: p.offset,
                    },
                },
                other => other.clone(),
            };
            let (file, offset, gtid, use_gtid): (String, u64, GtidState, bool) = match &start {
                StartPosition::At(p) => (p.file.clone(), p.offset, p.gtid.clone(), false),
                StartPosition::End => {
                    let p = current_position(&mut meta, info.flavor).await?;
                    (p.file, p.offset, p.gtid, false)
                }
                StartPosition::File { file, offset } => match info.flavor {
                    Flavor::MariaDb => {
                        let gtid = maria_gtid_at(&mut meta, file, *offset).await?;
                        (file.clone(), *offset, gtid, false)
                    }
                    Flavor::MySql if info.gtid_mode && *offset > 4 => {
                        // Read from the file start: PREVIOUS_GTIDS plus the GTIDs before the
                        // offset give the GTID state at the offset.
                        skip_until = Some(*offset);
                        (file.clone(), 4, GtidState::Unknown, false)
                    }
                    Flavor::MySql => (file.clone(), *offset, GtidState::Unknown, false),
                },
                StartPosition::Gtid(state) => match (info.flavor, state) {
                    (Flavor::MySql, GtidState::MySql(_)) => {
                        if !info.gtid_mode {
                            return Err(SourceError::Start {
                                start: start_text,
                                reason: "gtid_mode is OFF on the server".into(),
                            });
                        }
                        (String::new(), 4, state.clone(), true)
                    }
                    (Flavor::MariaDb, GtidState::MariaDb(list)) => {
                        conn.exec_drop(
                            "SET @slave_connect_state = ?, @slave_gtid_strict_mode = 1, @slave_gtid_ignore_duplicates = 0",
                            (list.to_string(),),
                        )
                        .await
                        .map_err(q("setting @slave_connect_state"))?;
                        (String::new(), 4, state.clone(), false)
                    }
                    _ => {
                        return Err(SourceError::Start {
                            start: start_text,
                            reason: "a MySQL GTID set needs a MySQL server and a MariaDB GTID list (domain-server-seq) a MariaDB server".into(),
                        })
                    }
                },
            };
            let mut req = BinlogStreamRequest::new(cfg.server_id)
                .with_filename(file.as_bytes())
                .with_pos(offset);
            if cfg.until_end {
                req = req.with_non_blocking();
            }
            if use_gtid {
                if let GtidState::MySql(set) = &gtid {
                    let mut sids: Vec<Sid<'static>> = Vec::new();
                    for (uuid, tag, start, end) in set.intervals() {
                        let sid = match sids
                            .iter_mut()
                            .find(|s| s.uuid() == uuid.0 && s.tag().map(|t| t.as_str()) == tag.as_ref().map(|t| t.as_str()))
                        {
                            Some(s) => s,
                            None => {
                                let mut s = Sid::new(uuid.0);
                                if let Some(t) = tag {
                                    let t = Tag::new(t.as_str().to_owned()).map_err(|e| {
                                        SourceError::Start {
                                            start: start_text.clone(),
                                            reason: format!("{e:?}"),
                                        }
                                    })?;
                                    s = s.with_tag(t);
                                }
                                sids.push(s);
                                sids.last_mut().ok_or_else(|| SourceError::Start {
                                    start: start_text.clone(),
                                    reason: "empty GTID set".into(),
                                })?
                            }
                        };
                        let taken = std::mem::replace(sid, Sid::new(uuid.0));
                        *sid = taken.with_interval(GnoInterval::new(start, end));
                    }
                    req = req.with_gtid().with_gtid_set(sids);
                }
            }
            debug!(file = %file, offset, gtid = %gtid, "requesting binlog stream");
            let stream = conn
                .get_binlog_stream(req)
                .await
                .map_err(|source| SourceError::Stream { source })?;
            let decoder = Decoder::new_for_stream(
                &file,
                skip_until.unwrap_or(offset),
                gtid,
                cfg.decode.clone(),
            );
            Ok(BinlogSource {
                stream,
                meta,
                decoder,
                queue: VecDeque::new(),
                scratch: Vec::new(),
                info,
                heartbeat: cfg.heartbeat,
                patience: 1,
                until_end: cfg.until_end,
                done: false,
                skip_until,
                skip_file: file,
            })
        }
        .instrument(span)
        .await
    }

    /// What preflight learned about the server.
    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    /// The last commit position read (a safe resume point).
    pub fn position(&self) -> &Position {
        self.decoder.position()
    }

    /// Hand over the prepared XA branches kept so far (see [`Decoder::take_xa_hold`]).
    pub fn take_xa_hold(&mut self) -> XaHold {
        self.decoder.take_xa_hold()
    }

    /// Keep the prepared XA branches of an earlier connection (see [`Decoder::keep_xa_hold`]).
    pub fn keep_xa_hold(&mut self, hold: XaHold) {
        self.decoder.keep_xa_hold(hold);
    }

    /// Wait `factor` times longer for the server before [`SourceError::Timeout`]: the server
    /// sends no heartbeat while it sends one event, so over a slow link a large event (a big
    /// BLOB row, a compressed transaction) can outlast the usual wait; a connection made
    /// again after such a timeout waits longer (`source::reconnect`).
    pub fn set_patience(&mut self, factor: u32) {
        self.patience = factor.max(1);
    }

    /// The next event; `None` when the stream ends (only with `until_end`).
    pub async fn next(&mut self) -> Result<Option<SourceEvent>, SourceError> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(Some(ev));
            }
            if self.done {
                return Ok(None);
            }
            let wait = if self.until_end {
                // Non-blocking dumps end with EOF; still bound the wait.
                self.heartbeat * 6
            } else {
                self.heartbeat * 3
            } * self.patience;
            // An event already received needs no timer (reading the clock for a deadline per
            // event showed in profiles of a busy stream).
            let next = match self.stream.next().now_or_never() {
                Some(next) => next,
                None => match tokio::time::timeout(wait, self.stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        return Err(SourceError::Timeout {
                            secs: wait.as_secs(),
                        })
                    }
                },
            };
            let ev = match next {
                None => {
                    self.done = true;
                    return Ok(None);
                }
                Some(Err(source)) => return Err(SourceError::Stream { source }),
                Some(Ok(ev)) => ev,
            };
            self.handle(&ev).await?;
        }
    }

    async fn handle(
        &mut self,
        ev: &mysql_common::binlog::events::Event,
    ) -> Result<(), SourceError> {
        let header = ev.header();
        let code = header.event_type_raw();
        let in_payload = self.decoder.in_payload() || !ev.footer().get_checksum_enabled();
        let offset = if header.log_pos() != 0 && !in_payload {
            (header.log_pos() as u64).saturating_sub(header.event_size() as u64)
        } else {
            self.decoder.next_offset()
        };
        let is_fde = code == EventType::FORMAT_DESCRIPTION_EVENT as u8;
        // Inner events of a transaction payload carry no checksum; mysql_async marks them
        // with a disabled footer.
        if ev.footer().get_checksum_enabled() && (is_fde || self.decoder.checksums()) {
            if let (Some(stored), Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))) =
                (ev.checksum(), ev.footer().get_checksum_alg())
            {
                let stored = u32::from_le_bytes(stored);
                let computed = ev.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
                if stored != computed {
                    return Err(DecodeError::Checksum {
                        file: self.decoder.position().file.clone(),
                        offset,
                        event: super::decode::event_name(code),
                        stored,
                        computed,
                    }
                    .into());
                }
            }
        }
        // The artificial ROTATE that opens a stream comes before any FORMAT_DESCRIPTION, so
        // mysql_common cannot know it ends with a CRC32 (we asked the server for checksums).
        let mut body = ev.data();
        if code == EventType::ROTATE_EVENT as u8 && !self.decoder.checksums() && body.len() > 12 {
            let (data, crc) = body.split_at(body.len() - 4);
            let mut h = crc32fast::Hasher::new();
            let mut hdr = Vec::with_capacity(19);
            mysql_common::proto::MySerialize::serialize(&header, &mut hdr);
            h.update(&hdr);
            h.update(data);
            if h.finalize().to_le_bytes() == crc {
                body = data;
            }
        }
        let raw = RawEvent {
            header,
            body,
            offset,
            fde_footer: is_fde.then(|| ev.footer()),
        };
        if let Some(start) = self.skip_until {
            let artificial = header.log_pos() == 0;
            let same_file = self.decoder.current_file() == self.skip_file;
            if artificial || (same_file && offset < start) {
                self.decoder.skip_event(raw)?;
                return Ok(());
            }
            self.skip_until = None;
            self.decoder.start_at(offset);
        }
        if let Some(table) = self.decoder.table_needing_schema(&raw) {
            let def = load_table(&mut self.meta, &table).await?;
            self.decoder.schema_cache_mut().insert(table, def);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let r = self.decoder.decode(raw, &mut scratch);
        if r.is_ok() {
            self.queue.extend(scratch.drain(..));
        }
        scratch.clear();
        self.scratch = scratch;
        r?;
        Ok(())
    }

    /// Closes both connections.
    pub async fn close(self) {
        let _ = self.stream.close().await;
        let _ = self.meta.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let cfg = SourceConfig::new("mysql://repl:S3cr3t@db1:3306/");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("S3cr3t"), "{shown}");
        assert!(shown.contains("db1:3306"), "{shown}");
    }
}
