//! Binlog positions: a `(file, offset)` coordinate plus the GTID state of the server at that
//! point — a MySQL GTID set (`uuid:1-5:tag:1-3,...`, tagged GTIDs of MySQL 8.4/9.x included) or a
//! MariaDB GTID list (`domain-server-seq,...`).
//!
//! Invariants:
//! - A [`Position`] is only ever taken at a commit boundary (after a COMMIT/XID, after a DDL, or
//!   at the start of a stream): resuming from it never replays half a transaction.
//! - Positions are [`PartialOrd`] only: two positions from different binlog lineages (another
//!   file prefix, GTID sets that are not subsets of each other) do not compare.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Errors of parsing a position, a GTID or a GTID set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// A UUID was not 32 hex digits (with optional dashes).
    #[error("invalid server UUID `{text}`: expected 32 hex digits like 3e11fa47-71ca-11e1-9e33-c80aa9429562")]
    InvalidUuid {
        /// The offending text.
        text: String,
    },
    /// A GTID tag did not match `[a-z_][a-z0-9_]{0,31}`.
    #[error("invalid GTID tag `{text}`: a tag is 1-32 characters of [a-z0-9_], not starting with a digit")]
    InvalidTag {
        /// The offending text.
        text: String,
    },
    /// A GTID interval was not `N` or `N-M` with `0 < N <= M`.
    #[error("invalid GTID interval `{text}`: expected N or N-M with 0 < N <= M")]
    InvalidInterval {
        /// The offending text.
        text: String,
    },
    /// A MariaDB GTID was not `domain-server-seq`.
    #[error("invalid MariaDB GTID `{text}`: expected domain-server-sequence like 0-1-100")]
    InvalidMariaGtid {
        /// The offending text.
        text: String,
    },
    /// A start position was not `FILE:POS`, `gtid:SET` or `end`.
    #[error("invalid start position `{text}`: expected FILE:POS (e.g. binlog.000003:157), gtid:SET (e.g. gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5 or gtid:0-1-100) or `end`")]
    InvalidStart {
        /// The offending text.
        text: String,
    },
}

/// A server UUID (the `source_id` / SID of MySQL GTIDs).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Uuid {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PositionError::InvalidUuid { text: s.to_owned() };
        let mut out = [0u8; 16];
        let mut n = 0usize;
        let mut hi: Option<u8> = None;
        for c in s.trim().bytes() {
            if c == b'-' {
                continue;
            }
            let v = (c as char).to_digit(16).ok_or_else(err)? as u8;
            match hi.take() {
                None => hi = Some(v),
                Some(h) => {
                    if n >= 16 {
                        return Err(err());
                    }
                    out[n] = (h << 4) | v;
                    n += 1;
                }
            }
        }
        if n != 16 || hi.is_some() {
            return Err(err());
        }
        Ok(Uuid(out))
    }
}

/// A GTID tag (MySQL 8.4+): 1 to 32 characters of `[a-z0-9_]`, not starting with a digit.
/// Stored inline so that [`Gtid`] stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GtidTag {
    len: u8,
    bytes: [u8; 32],
}

impl GtidTag {
    /// Validates and builds a tag. Upper-case letters are folded to lower case, as the server
    /// does.
    pub fn new(text: &str) -> Result<Self, PositionError> {
        let err = || PositionError::InvalidTag {
            text: text.to_owned(),
        };
        let t = text.trim();
        if t.is_empty() || t.len() > 32 {
            return Err(err());
        }
        let mut bytes = [0u8; 32];
        for (i, c) in t.bytes().enumerate() {
            let c = c.to_ascii_lowercase();
            let ok = c.is_ascii_lowercase() || c == b'_' || (i > 0 && c.is_ascii_digit());
            if !ok {
                return Err(err());
            }
            bytes[i] = c;
        }
        Ok(GtidTag {
            len: t.len() as u8,
            bytes,
        })
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (checked in `new`).
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl PartialOrd for GtidTag {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GtidTag {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for GtidTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for GtidTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// One MariaDB GTID: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MariaGtid {
    /// Replication domain id.
    pub domain: u32,
    /// Server id of the server that originated the transaction.
    pub server: u32,
    /// Sequence number, increasing within the domain.
    pub seq: u64,
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl FromStr for MariaGtid {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PositionError::InvalidMariaGtid { text: s.to_owned() };
        let mut it = s.trim().split('-');
        let (Some(d), Some(sv), Some(q), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(err());
        };
        Ok(MariaGtid {
            domain: d.parse().map_err(|_| err())?,
            server: sv.parse().map_err(|_| err())?,
            seq: q.parse().map_err(|_| err())?,
        })
    }
}

/// The GTID of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gtid {
    /// MySQL: `uuid[:tag]:gno`.
    MySql {
        /// Source server UUID.
        sid: Uuid,
        /// Tag (MySQL 8.4+), if the GTID is tagged.
        tag: Option<GtidTag>,
        /// Transaction number.
        gno: u64,
    },
    /// MariaDB: `domain-server-seq`.
    MariaDb(MariaGtid),
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MySql {
                sid,
                tag: Some(tag),
                gno,
            } => write!(f, "{sid}:{tag}:{gno}"),
            Gtid::MySql {
                sid,
                tag: None,
                gno,
            } => write!(f, "{sid}:{gno}"),
            Gtid::MariaDb(g) => g.fmt(f),
        }
    }
}

/// `(uuid, tag)`: the key of one GTID set entry.
type SidKey = (Uuid, Option<GtidTag>);

/// A MySQL GTID set: for each `(uuid, tag)`, sorted disjoint intervals of transaction numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GtidSet {
    /// `(uuid, tag)` → sorted, merged, half-open intervals `[start, end)`.
    sids: BTreeMap<SidKey, Vec<(u64, u64)>>,
}

impl GtidSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.sids.values().all(|v| v.is_empty())
    }

    /// Adds the half-open interval `[start, end)` of `uuid[:tag]`. Empty intervals are ignored.
    pub fn add_interval(&mut self, sid: Uuid, tag: Option<GtidTag>, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let ivs = self.sids.entry((sid, tag)).or_default();
        // Insert, then merge overlapping/adjacent intervals.
        let idx = ivs.partition_point(|&(s, _)| s < start);
        ivs.insert(idx, (start, end));
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ivs.len());
        for &(s, e) in ivs.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *ivs = merged;
    }

    /// Adds one transaction.
    pub fn add(&mut self, sid: Uuid, tag: Option<GtidTag>, gno: u64) {
        self.add_interval(sid, tag, gno, gno.saturating_add(1));
    }

    /// True when the set holds the transaction.
    pub fn contains(&self, sid: Uuid, tag: Option<GtidTag>, gno: u64) -> bool {
        self.sids
            .get(&(sid, tag))
            .is_some_and(|ivs| ivs.iter().any(|&(s, e)| s <= gno && gno < e))
    }

    /// True when every transaction of `self` is in `other`.
    pub fn is_subset(&self, other: &GtidSet) -> bool {
        self.sids.iter().all(|(k, ivs)| {
            let Some(oivs) = other.sids.get(k) else {
                return ivs.is_empty();
            };
            ivs.iter()
                .all(|&(s, e)| oivs.iter().any(|&(os, oe)| os <= s && e <= oe))
        })
    }

    /// Iterates `(uuid, tag, [start, end))` in display order.
    pub fn intervals(&self) -> impl Iterator<Item = (Uuid, Option<GtidTag>, u64, u64)> + '_ {
        self.sids
            .iter()
            .flat_map(|((u, t), ivs)| ivs.iter().map(move |&(s, e)| (*u, *t, s, e)))
    }
}

impl fmt::Display for GtidSet {
    /// MySQL's text form: `uuid:1-5:7:tag:1-3,uuid2:1-9` (untagged intervals first).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first_uuid = true;
        let mut current: Option<Uuid> = None;
        for ((uuid, tag), ivs) in &self.sids {
            if ivs.is_empty() {
                continue;
            }
            if current != Some(*uuid) {
                if !first_uuid {
                    f.write_str(",")?;
                }
                first_uuid = false;
                current = Some(*uuid);
                write!(f, "{uuid}")?;
            }
            if let Some(tag) = tag {
                write!(f, ":{tag}")?;
            }
            for &(s, e) in ivs {
                if e - s == 1 {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{}-{}", s, e - 1)?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for GtidSet {
    type Err = PositionError;

    /// Parses MySQL's text form, including tagged entries (`uuid:tag:1-3`) and newlines.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = GtidSet::new();
        for entry in s.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let mut parts = entry.split(':');
            let uuid: Uuid = parts.next().unwrap_or_default().parse()?;
            let mut tag: Option<GtidTag> = None;
            for part in parts {
                let part = part.trim();
                if part.bytes().next().is_some_and(|c| c.is_ascii_digit()) {
                    let (a, b) = part.split_once('-').unwrap_or((part, part));
                    let bad = || PositionError::InvalidInterval {
                        text: part.to_owned(),
                    };
                    let a: u64 = a.trim().parse().map_err(|_| bad())?;
                    let b: u64 = b.trim().parse().map_err(|_| bad())?;
                    if a == 0 || b < a {
                        return Err(bad());
                    }
                    set.add_interval(uuid, tag, a, b.saturating_add(1));
                } else {
                    tag = Some(GtidTag::new(part)?);
                }
            }
        }
        Ok(set)
    }
}

/// A MariaDB GTID list: the last GTID of each replication domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GtidList {
    /// domain → last GTID in that domain.
    domains: BTreeMap<u32, MariaGtid>,
}

impl GtidList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no domain has a GTID.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Records `gtid` as the last transaction of its domain.
    pub fn update(&mut self, gtid: MariaGtid) {
        self.domains.insert(gtid.domain, gtid);
    }

    /// The last GTID of `domain`.
    pub fn get(&self, domain: u32) -> Option<MariaGtid> {
        self.domains.get(&domain).copied()
    }

    /// All GTIDs, by domain.
    pub fn iter(&self) -> impl Iterator<Item = MariaGtid> + '_ {
        self.domains.values().copied()
    }

    /// Compares per domain by sequence number: `Less` when every domain of `self` is at or
    /// behind `other` (and at least one behind or missing), `None` when some are ahead and
    /// some behind.
    pub fn compare(&self, other: &GtidList) -> Option<Ordering> {
        let mut less = false;
        let mut greater = false;
        for d in self.domains.keys().chain(other.domains.keys()) {
            let a = self.domains.get(d).map(|g| g.seq);
            let b = other.domains.get(d).map(|g| g.seq);
            match a.cmp(&b) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
        }
        match (less, greater) {
            (false, false) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (true, true) => None,
        }
    }
}

impl fmt::Display for GtidList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.domains.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            g.fmt(f)?;
        }
        Ok(())
    }
}

impl FromStr for GtidList {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut list = GtidList::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            list.update(part.parse()?);
        }
        Ok(list)
    }
}

/// The GTID state that goes with a position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GtidState {
    /// Not known: GTIDs are off, or the stream started at a file offset on MySQL.
    #[default]
    Unknown,
    /// MySQL `gtid_executed`-style set.
    MySql(GtidSet),
    /// MariaDB `gtid_binlog_pos`-style list.
    MariaDb(GtidList),
}

impl GtidState {
    /// Records a committed transaction.
    pub fn add(&mut self, gtid: &Gtid) {
        match (self, gtid) {
            (GtidState::MySql(set), Gtid::MySql { sid, tag, gno }) => set.add(*sid, *tag, *gno),
            (GtidState::MariaDb(list), Gtid::MariaDb(g)) => list.update(*g),
            (s @ GtidState::Unknown, _) => {
                // Without a starting state the set would claim to hold only the transactions
                // seen since; that is wrong for resuming, so the state stays unknown.
                let _ = s;
            }
            _ => {}
        }
    }

    /// True when the state is known.
    pub fn is_known(&self) -> bool {
        !matches!(self, GtidState::Unknown)
    }

    /// Parses a GTID set (MySQL, when it contains a UUID) or GTID list (MariaDB).
    pub fn parse(text: &str) -> Result<GtidState, PositionError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(PositionError::InvalidStart {
                text: text.to_owned(),
            });
        }
        if t.contains(':') {
            Ok(GtidState::MySql(t.parse()?))
        } else {
            Ok(GtidState::MariaDb(t.parse()?))
        }
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidState::Unknown => Ok(()),
            GtidState::MySql(s) => s.fmt(f),
            GtidState::MariaDb(l) => l.fmt(f),
        }
    }
}

/// A resumable point in the binlog: taken only at commit boundaries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    /// Binlog file name (no directory), e.g. `binlog.000003`.
    pub file: String,
    /// Byte offset in `file` of the next event after the commit.
    pub offset: u64,
    /// GTID state including the last committed transaction, when known.
    pub gtid: GtidState,
}

impl Position {
    /// A position with no GTID state.
    pub fn at(file: impl Into<String>, offset: u64) -> Self {
        Position {
            file: file.into(),
            offset,
            gtid: GtidState::Unknown,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)?;
        if self.gtid.is_known() {
            write!(f, " gtid:{}", self.gtid)?;
        }
        Ok(())
    }
}

/// Splits `binlog.000012` into (`binlog`, 12).
fn split_file(file: &str) -> Option<(&str, u64)> {
    let (prefix, num) = file.rsplit_once('.')?;
    Some((prefix, num.parse().ok()?))
}

/// Compares `(file, offset)` coordinates of one lineage (same file prefix).
fn compare_coords(a: &Position, b: &Position) -> Option<Ordering> {
    if a.file == b.file {
        return Some(a.offset.cmp(&b.offset));
    }
    let (pa, na) = split_file(&a.file)?;
    let (pb, nb) = split_file(&b.file)?;
    if pa != pb {
        return None;
    }
    Some(na.cmp(&nb).then(a.offset.cmp(&b.offset)))
}

impl PartialOrd for Position {
    /// GTID states decide when both are known and of one flavor (subset order for MySQL,
    /// per-domain order for MariaDB), with the file coordinates breaking ties; otherwise the
    /// file coordinates decide when both files share a prefix; otherwise `None`.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let by_gtid = match (&self.gtid, &other.gtid) {
            (GtidState::MySql(a), GtidState::MySql(b)) => match (a.is_subset(b), b.is_subset(a)) {
                (true, true) => Some(Some(Ordering::Equal)),
                (true, false) => Some(Some(Ordering::Less)),
                (false, true) => Some(Some(Ordering::Greater)),
                (false, false) => Some(None),
            },
            (GtidState::MariaDb(a), GtidState::MariaDb(b)) => Some(a.compare(b)),
            _ => None,
        };
        match by_gtid {
            Some(Some(Ordering::Equal)) => compare_coords(self, other).or(Some(Ordering::Equal)),
            Some(ord) => ord,
            None => compare_coords(self, other),
        }
    }
}

/// Where a source starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// At a file offset (`FILE:POS`); offset 4 is the start of a file.
    File {
        /// Binlog file name.
        file: String,
        /// Byte offset of an event boundary.
        offset: u64,
    },
    /// After the transactions of a GTID set (MySQL) or GTID list (MariaDB).
    Gtid(GtidState),
    /// At a file offset whose GTID state is known (a position read with it, or a commit
    /// position a stream or a checkpoint recorded): the stream starts there at once. A `File`
    /// start on MySQL with GTIDs reads the whole file up to the offset to learn the state (up
    /// to `max_binlog_size`, 1 GB by default, at every start and reconnect). Without a known
    /// state it is a `File` start.
    At(Position),
    /// At the server's current end of the binlog.
    End,
}

impl FromStr for StartPosition {
    type Err = PositionError;

    /// `end`, `gtid:SET`, or `FILE:POS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("end") {
            return Ok(StartPosition::End);
        }
        if let Some(rest) = t.strip_prefix("gtid:") {
            return Ok(StartPosition::Gtid(GtidState::parse(rest)?));
        }
        let (file, pos) = t
            .rsplit_once(':')
            .ok_or_else(|| PositionError::InvalidStart { text: s.to_owned() })?;
        let offset: u64 = pos
            .parse()
            .map_err(|_| PositionError::InvalidStart { text: s.to_owned() })?;
        if file.is_empty() || offset < 4 {
            return Err(PositionError::InvalidStart { text: s.to_owned() });
        }
        Ok(StartPosition::File {
            file: file.to_owned(),
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn uuid_roundtrip() {
        let u: Uuid = U1.parse().unwrap();
        assert_eq!(u.to_string(), U1);
        assert!("xyz".parse::<Uuid>().is_err());
        assert!("3e11fa47".parse::<Uuid>().is_err());
    }

    #[test]
    fn gtid_set_parse_merge_display() {
        let s: GtidSet = format!("{U1}:1-5:7:6, {U1}:tag_a:1-3:5").parse().unwrap();
        assert_eq!(s.to_string(), format!("{U1}:1-7:tag_a:1-3:5"));
        let u: Uuid = U1.parse().unwrap();
        assert!(s.contains(u, None, 7));
        assert!(!s.contains(u, None, 8));
        let t = GtidTag::new("tag_a").unwrap();
        assert!(s.contains(u, Some(t), 5));
        assert!(!s.contains(u, Some(t), 4));
        assert!("x:1".parse::<GtidSet>().is_err());
        assert!(format!("{U1}:0").parse::<GtidSet>().is_err());
        assert!(format!("{U1}:5-3").parse::<GtidSet>().is_err());
        assert!(format!("{U1}:Bad-Tag:1").parse::<GtidSet>().is_err());
    }

    #[test]
    fn gtid_set_subset_order() {
        let a: GtidSet = format!("{U1}:1-5").parse().unwrap();
        let b: GtidSet = format!("{U1}:1-6").parse().unwrap();
        let c: GtidSet = format!("{U1}:1-4:6").parse().unwrap();
        assert!(a.is_subset(&b));
        assert!(!b.is_subset(&a));
        let pa = Position {
            file: "binlog.000001".into(),
            offset: 10,
            gtid: GtidState::MySql(a.clone()),
        };
        let pb = Position {
            gtid: GtidState::MySql(b),
            ..pa.clone()
        };
        let pc = Position {
            gtid: GtidState::MySql(c),
            ..pa.clone()
        };
        assert!(pa < pb);
        assert_eq!(pa.partial_cmp(&pc), None);
    }

    #[test]
    fn maria_list() {
        let l: GtidList = "0-1-100, 1-2-5".parse().unwrap();
        assert_eq!(l.to_string(), "0-1-100,1-2-5");
        let m: GtidList = "0-1-101,1-2-5".parse().unwrap();
        assert_eq!(l.compare(&m), Some(Ordering::Less));
        let n: GtidList = "0-1-99,1-2-6".parse().unwrap();
        assert_eq!(l.compare(&n), None);
        assert!("0-1".parse::<GtidList>().is_err());
    }

    #[test]
    fn file_order_and_lineage() {
        let a = Position::at("binlog.000009", 500);
        let b = Position::at("binlog.000010", 4);
        let c = Position::at("other.000010", 4);
        assert!(a < b);
        assert_eq!(a.partial_cmp(&c), None);
    }

    #[test]
    fn start_position_parse() {
        assert_eq!("end".parse::<StartPosition>().unwrap(), StartPosition::End);
        assert_eq!(
            "binlog.000003:157".parse::<StartPosition>().unwrap(),
            StartPosition::File {
                file: "binlog.000003".into(),
                offset: 157
            }
        );
        match "gtid:0-1-5".parse::<StartPosition>().unwrap() {
            StartPosition::Gtid(GtidState::MariaDb(l)) => assert_eq!(l.to_string(), "0-1-5"),
            other => panic!("{other:?}"),
        }
        match format!("gtid:{U1}:1-3").parse::<StartPosition>().unwrap() {
            StartPosition::Gtid(GtidState::MySql(s)) => {
                assert_eq!(s.to_string(), format!("{U1}:1-3"))
            }
            other => panic!("{other:?}"),
        }
        assert!("binlog.000003".parse::<StartPosition>().is_err());
        assert!("binlog.000003:2".parse::<StartPosition>().is_err());
    }
}
