//! `rowshift binlog dump`: one JSON object per line for each row change, commit and DDL of a
//! binlog file (`--file`) or a live server (`--source`). The format is documented in
//! docs/binlog-dump.md; field names are stable.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rowshift_engine::event::{ColumnDef, Marker, RowChange, SourceEvent, XaMark};
use rowshift_engine::position::{Gtid, GtidState, Position, StartPosition};
use rowshift_engine::source::{
    BinlogReader, BinlogSource, DecodeError, DecodeOptions, SourceConfig, SourceError, SslMode,
    TableFilter,
};
use rowshift_transform::Value;
use serde_json::{json, Map, Value as J};

/// Exit code when the binlog cannot be decoded (corrupt, unsupported, wrong settings).
const EXIT_DECODE: u8 = 2;

/// Arguments of `rowshift binlog dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// Binlog file to read.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "source",
        conflicts_with = "source"
    )]
    file: Option<PathBuf>,
    /// Server to read from as a replica: mysql://user@host:port/ (no password in the URL: it
    /// comes from --password-env).
    #[arg(long, value_name = "URL", env = "ROWSHIFT_SOURCE")]
    source: Option<String>,
    /// Environment variable holding the source's password.
    #[arg(long, default_value = "ROWSHIFT_PASSWORD")]
    password_env: String,
    /// Where to start on the server: FILE:POS, gtid:SET (MySQL uuid:1-5 / MariaDB 0-1-100) or
    /// end.
    #[arg(long, value_name = "FILE:POS|gtid:SET|end", default_value = "end")]
    start: String,
    /// Only these tables: db.t,db2.t2,db3.* (commits and DDL are always printed).
    #[arg(long, value_name = "LIST")]
    tables: Option<String>,
    /// Keep waiting for new events (live servers).
    #[arg(long, conflicts_with = "until_end")]
    stop_never: bool,
    /// Stop at the current end of the binlog (the default for --source).
    #[arg(long)]
    until_end: bool,
    /// Replica server id to register with (unique among the server's replicas).
    #[arg(long)]
    server_id: Option<u32>,
    /// TLS: disabled, preferred, required, verify-ca, verify-identity.
    #[arg(long, default_value = "preferred", value_parser = parse_ssl_mode)]
    ssl_mode: SslMode,
    /// CA certificate (PEM) for verify-ca / verify-identity.
    #[arg(long, value_name = "PATH")]
    ssl_ca: Option<PathBuf>,
    /// Decode binlogs written with binlog_row_image=MINIMAL/NOBLOB: missing columns print as
    /// null and are listed in `absent_before` / `absent_after`.
    #[arg(long)]
    allow_partial_images: bool,
    /// Also print begin, rotate, heartbeat and informational events.
    #[arg(long)]
    all_events: bool,
}

fn parse_ssl_mode(s: &str) -> Result<SslMode, String> {
    s.parse()
        .map_err(|e: rowshift_engine::conn::ConnError| e.to_string())
}

/// Runs the command.
pub fn run(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let decode = DecodeOptions {
        require_full_row_image: !args.allow_partial_images,
        tables: match &args.tables {
            Some(t) => Some(TableFilter::parse(t).map_err(anyhow::Error::msg)?),
            None => None,
        },
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = match &args.file {
        Some(path) => dump_file(path, decode, args.all_events, &mut out),
        None => {
            let url = args
                .source
                .clone()
                .context("--file or --source is required")?;
            crate::common::refuse_url_password("--source", &url)?;
            let url = rowshift_engine::conn::Endpoint::new(&url)?
                .with_password(std::env::var(&args.password_env).ok())
                .url_with_password();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(dump_source(&args, url, decode, &mut out))
        }
    };
    let flushed = out.flush();
    match result {
        Ok(()) => {}
        Err(Outcome::BrokenPipe) => return Ok(ExitCode::SUCCESS),
        Err(Outcome::Decode(e)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_DECODE));
        }
        Err(Outcome::Other(e)) => return Err(e),
    }
    match flushed {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("writing to stdout"),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

/// Why a dump ended early.
enum Outcome {
    /// The reader of stdout went away.
    BrokenPipe,
    /// The binlog cannot be decoded.
    Decode(DecodeError),
    /// Anything else.
    Other(anyhow::Error),
}

impl From<io::Error> for Outcome {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Outcome::BrokenPipe
        } else {
            Outcome::Other(anyhow::Error::new(e).context("writing to stdout"))
        }
    }
}

fn dump_file(
    path: &std::path::Path,
    decode: DecodeOptions,
    all: bool,
    out: &mut impl Write,
) -> Result<(), Outcome> {
    let reader = BinlogReader::open(path, decode).map_err(|e| match e {
        rowshift_engine::source::FileError::Decode(d) => Outcome::Decode(d),
        other => Outcome::Other(other.into()),
    })?;
    let mut reader = reader;
    loop {
        match reader.next_event() {
            Ok(Some(ev)) => write_event(&ev, all, out)?,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Outcome::Decode(e)),
        }
    }
}

async fn dump_source(
    args: &DumpArgs,
    url: String,
    decode: DecodeOptions,
    out: &mut impl Write,
) -> Result<(), Outcome> {
    let start: StartPosition = args
        .start
        .parse()
        .map_err(|e| Outcome::Other(anyhow::Error::new(e)))?;
    let mut cfg = SourceConfig::new(url);
    cfg.start = start;
    cfg.until_end = !args.stop_never;
    cfg.ssl_mode = args.ssl_mode;
    cfg.ssl_ca = args.ssl_ca.clone();
    cfg.decode = decode;
    if let Some(id) = args.server_id {
        cfg.server_id = id;
    }
    let mut source = BinlogSource::connect(cfg).await.map_err(source_err)?;
    loop {
        match source.next().await {
            Ok(Some(ev)) => {
                write_event(&ev, args.all_events, out)?;
                if matches!(ev, SourceEvent::Commit { .. } | SourceEvent::Ddl { .. }) {
                    out.flush()?;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = out.flush();
                return Err(source_err(e));
            }
        }
    }
    source.close().await;
    Ok(())
}

fn source_err(e: SourceError) -> Outcome {
    match e {
        SourceError::Decode(d) => Outcome::Decode(d),
        other => Outcome::Other(anyhow::Error::new(other)),
    }
}

fn write_event(ev: &SourceEvent, all: bool, out: &mut impl Write) -> io::Result<()> {
    if let Some(line) = render(ev, all) {
        let mut bytes = serde_json::to_vec(&line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        out.write_all(&bytes)?;
    }
    Ok(())
}

/// The JSON object of one event, or `None` for events not printed (without `--all-events`).
pub fn render(ev: &SourceEvent, all: bool) -> Option<J> {
    Some(match ev {
        SourceEvent::Rows(r) => render_rows(r),
        SourceEvent::Commit {
            pos,
            gtid,
            xid,
            timestamp,
            resume,
        } => {
            let mut j = json!({
                "type": "commit",
                "pos": position(pos),
                "gtid": gtid_text(gtid),
                "xid": xid,
                "timestamp": timestamp,
            });
            if let Some(r) = resume {
                j["resume"] = position(r);
            }
            j
        }
        SourceEvent::Ddl {
            schema,
            query,
            pos,
            gtid,
            timestamp,
        } => json!({
            "type": "ddl",
            "schema": schema,
            "query": query,
            "pos": position(pos),
            "gtid": gtid_text(gtid),
            "timestamp": timestamp,
        }),
        _ if !all => return None,
        SourceEvent::Begin {
            gtid,
            pos,
            timestamp,
        } => json!({
            "type": "begin",
            "gtid": gtid_text(gtid),
            "pos": {"file": &*pos.file, "offset": pos.offset},
            "timestamp": timestamp,
        }),
        SourceEvent::Heartbeat { pos } => json!({
            "type": "heartbeat",
            "pos": {"file": &*pos.file, "offset": pos.offset},
        }),
        SourceEvent::Rotate { next_file, offset } => json!({
            "type": "rotate",
            "next_file": next_file,
            "offset": offset,
        }),
        SourceEvent::Marker { marker, pos } => {
            let mut m = Map::new();
            m.insert("type".into(), "info".into());
            m.insert(
                "pos".into(),
                json!({"file": &*pos.file, "offset": pos.offset}),
            );
            match marker {
                Marker::Format {
                    server_version,
                    binlog_version,
                    checksum,
                } => {
                    m.insert("event".into(), "format".into());
                    m.insert("server_version".into(), server_version.clone().into());
                    m.insert("binlog_version".into(), (*binlog_version).into());
                    m.insert("checksum".into(), (*checksum).into());
                }
                Marker::GtidState(g) => {
                    m.insert("event".into(), "gtid_state".into());
                    m.insert("gtid_set".into(), gtid_state(g));
                }
                Marker::BinlogCheckpoint { file } => {
                    m.insert("event".into(), "binlog_checkpoint".into());
                    m.insert("file".into(), file.clone().into());
                }
                Marker::RowsQuery { query } => {
                    m.insert("event".into(), "rows_query".into());
                    m.insert("query".into(), query.clone().into());
                }
                Marker::Stop => {
                    m.insert("event".into(), "stop".into());
                }
                Marker::Xa(mark) => {
                    let (event, xid) = match mark {
                        XaMark::Start => ("xa_start", None),
                        XaMark::Prepared(x) => ("xa_prepared", Some(x)),
                        XaMark::Ended(x) => ("xa_ended", Some(x)),
                    };
                    m.insert("event".into(), event.into());
                    if let Some(x) = xid {
                        m.insert("xid".into(), x.to_string().into());
                    }
                }
                Marker::Skipped { event } => {
                    m.insert("event".into(), "skipped".into());
                    m.insert("name".into(), event.clone().into());
                }
            }
            J::Object(m)
        }
        // Remaining variants are all printed above.
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

fn gtid_text(g: &Option<Gtid>) -> J {
    match g {
        Some(g) => J::String(g.to_string()),
        None => J::Null,
    }
}

fn gtid_state(g: &GtidState) -> J {
    if g.is_known() {
        J::String(g.to_string())
    } else {
        J::Null
    }
}

fn position(p: &Position) -> J {
    json!({"file": p.file, "offset": p.offset, "gtid_set": gtid_state(&p.gtid)})
}

fn render_rows(r: &RowChange) -> J {
    let mut m = Map::new();
    m.insert("type".into(), r.kind.as_str().into());
    m.insert("schema".into(), (*r.table.schema).into());
    m.insert("table".into(), (*r.table.name).into());
    m.insert(
        "pos".into(),
        json!({"file": &*r.pos.file, "offset": r.pos.offset, "row": r.pos.row}),
    );
    m.insert("gtid".into(), gtid_text(&r.gtid));
    let cols = &r.columns.columns;
    m.insert(
        "columns".into(),
        J::Array(
            cols.iter()
                .enumerate()
                .map(|(i, c)| J::String(c.display_name(i)))
                .collect(),
        ),
    );
    if let Some(b) = &r.before {
        m.insert("before".into(), image(b, cols));
    }
    if let Some(a) = &r.after {
        m.insert("after".into(), image(a, cols));
    }
    if let Some(abs) = &r.absent {
        m.insert("absent_before".into(), json!(abs.before));
        m.insert("absent_after".into(), json!(abs.after));
    }
    J::Object(m)
}

/// A row image as an array of values in column order (names are in `columns`).
fn image(values: &[Value], cols: &[ColumnDef]) -> J {
    J::Array(
        values
            .iter()
            .enumerate()
            .map(|(i, v)| match cols.get(i) {
                Some(c) => value(v, c),
                None => value(v, &ColumnDef::default()),
            })
            .collect(),
    )
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// Text when the column charset is UTF-8 compatible and the bytes are valid UTF-8, else
/// `{"hex": "..."}`.
fn bytes_json(b: &[u8], col: &ColumnDef) -> J {
    if col.is_utf8_text() {
        if let Ok(s) = std::str::from_utf8(b) {
            return J::String(s.to_owned());
        }
    }
    json!({ "hex": hex(b) })
}

fn label_json(label: &[u8], col: &ColumnDef) -> J {
    match std::str::from_utf8(label) {
        Ok(s) if col.is_utf8_text() || col.charset.is_none() => J::String(s.to_owned()),
        _ => json!({ "hex": hex(label) }),
    }
}

fn frac(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One value as JSON (see docs/binlog-dump.md).
pub fn value(v: &Value, col: &ColumnDef) -> J {
    match v {
        Value::Null => J::Null,
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f as f64)
            .map(J::Number)
            .unwrap_or_else(|| J::String(f.to_string())),
        Value::Double(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or_else(|| J::String(f.to_string())),
        Value::Decimal(d) => J::String(d.clone()),
        Value::Bytes(b) => bytes_json(b, col),
        Value::Bit { bits, width } => {
            let w = (*width).max(1) as usize;
            J::String(format!("b'{bits:0w$b}'"))
        }
        Value::Enum(i) => match &col.enum_labels {
            Some(_) if *i == 0 => J::String(String::new()),
            Some(labels) => match labels.get(*i as usize - 1) {
                Some(l) => label_json(l, col),
                None => json!({ "enum": i }),
            },
            None => json!({ "enum": i }),
        },
        Value::Set(mask) => match &col.set_labels {
            Some(labels) if mask >> labels.len().min(63) == 0 || labels.len() >= 64 => {
                let mut parts: Vec<u8> = Vec::new();
                for (bit, l) in labels.iter().enumerate() {
                    if bit < 64 && mask & (1 << bit) != 0 {
                        if !parts.is_empty() {
                            parts.push(b',');
                        }
                        parts.extend_from_slice(l);
                    }
                }
                label_json(&parts, col)
            }
            _ => json!({ "set": mask }),
        },
        Value::Year(y) => J::from(*y),
        Value::Date { year, month, day } => J::String(format!("{year:04}-{month:02}-{day:02}")),
        Value::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => J::String(format!(
            "{}{hours:02}:{minutes:02}:{seconds:02}{}",
            if *negative { "-" } else { "" },
            frac(*micros)
        )),
        Value::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => J::String(format!(
            "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}{}",
            frac(*micros)
        )),
        Value::Timestamp { secs, micros } => {
            if *secs == 0 && *micros == 0 {
                J::String("0000-00-00 00:00:00".into())
            } else {
                let days = *secs as i64 / 86_400;
                let rem = *secs as i64 % 86_400;
                let (y, mo, d) = civil_from_days(days);
                J::String(format!(
                    "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}{}Z",
                    rem / 3600,
                    rem / 60 % 60,
                    rem % 60,
                    frac(*micros)
                ))
            }
        }
        Value::Json(j) => j.clone(),
        Value::JsonSql(j) => j.doc.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_col() -> ColumnDef {
        ColumnDef {
            charset: Some("utf8mb4".into()),
            ..ColumnDef::default()
        }
    }

    #[test]
    fn values() {
        let c = ColumnDef::default();
        assert_eq!(value(&Value::UInt(u64::MAX), &c), json!(u64::MAX));
        assert_eq!(
            value(&Value::Bytes(b"h\xc3\xa9".to_vec()), &text_col()),
            json!("hé")
        );
        assert_eq!(
            value(&Value::Bytes(b"\xff".to_vec()), &text_col()),
            json!({"hex": "ff"})
        );
        assert_eq!(
            value(&Value::Bytes(b"ab".to_vec()), &c),
            json!({"hex": "6162"})
        );
        assert_eq!(
            value(&Value::Bit { bits: 4, width: 3 }, &c),
            json!("b'100'")
        );
        assert_eq!(
            value(
                &Value::Timestamp {
                    secs: 1_650_493_084,
                    micros: 5
                },
                &c
            ),
            json!("2022-04-20 22:18:04.000005Z")
        );
        assert_eq!(
            value(
                &Value::Time {
                    negative: true,
                    hours: 838,
                    minutes: 59,
                    seconds: 59,
                    micros: 0
                },
                &c
            ),
            json!("-838:59:59")
        );
        let e = ColumnDef {
            enum_labels: Some(vec![b"a".to_vec(), b"b".to_vec()]),
            set_labels: Some(vec![b"x".to_vec(), b"y".to_vec()]),
            ..text_col()
        };
        assert_eq!(value(&Value::Enum(2), &e), json!("b"));
        assert_eq!(value(&Value::Enum(0), &e), json!(""));
        assert_eq!(value(&Value::Set(3), &e), json!("x,y"));
        assert_eq!(value(&Value::Set(4), &e), json!({"set": 4}));
        assert_eq!(value(&Value::Enum(1), &c), json!({"enum": 1}));
    }

    #[test]
    fn commits_name_a_held_back_restart_point() {
        let commit = |resume: Option<Box<Position>>| SourceEvent::Commit {
            pos: Position::at("binlog.000002", 900),
            gtid: None,
            xid: Some(7),
            timestamp: 1,
            resume,
        };
        let plain = render(&commit(None), false).expect("printed");
        assert!(plain.get("resume").is_none(), "{plain}");
        let held = render(
            &commit(Some(Box::new(Position::at("binlog.000002", 400)))),
            false,
        )
        .expect("printed");
        assert_eq!(held["resume"]["offset"], json!(400));
        assert_eq!(held["pos"]["offset"], json!(900));
    }

    #[test]
    fn civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_102), (2022, 4, 20));
        assert_eq!(civil_from_days(24_855), (2038, 1, 19));
    }
}
