//! MariaDB-only events, which mysql_common does not decode: GTID, GTID_LIST,
//! BINLOG_CHECKPOINT, ANNOTATE_ROWS, and the zlib-compressed QUERY/ROWS events of
//! `log_bin_compress=ON`.

use std::io::Read;

use crate::position::{GtidList, MariaGtid};

/// MariaDB event type codes.
pub(crate) mod types {
    /// ANNOTATE_ROWS: the statement behind the rows events that follow.
    pub const ANNOTATE_ROWS: u8 = 160;
    /// BINLOG_CHECKPOINT: oldest file needed for crash recovery.
    pub const BINLOG_CHECKPOINT: u8 = 161;
    /// GTID: starts an event group.
    pub const GTID: u8 = 162;
    /// GTID_LIST: GTID state at the start of a file.
    pub const GTID_LIST: u8 = 163;
    /// START_ENCRYPTION: the rest of the file is encrypted.
    pub const START_ENCRYPTION: u8 = 164;
    /// QUERY_COMPRESSED.
    pub const QUERY_COMPRESSED: u8 = 165;
    /// WRITE_ROWS_COMPRESSED_V1.
    pub const WRITE_ROWS_COMPRESSED_V1: u8 = 166;
    /// UPDATE_ROWS_COMPRESSED_V1.
    pub const UPDATE_ROWS_COMPRESSED_V1: u8 = 167;
    /// DELETE_ROWS_COMPRESSED_V1.
    pub const DELETE_ROWS_COMPRESSED_V1: u8 = 168;
    /// WRITE_ROWS_COMPRESSED.
    pub const WRITE_ROWS_COMPRESSED: u8 = 169;
    /// UPDATE_ROWS_COMPRESSED.
    pub const UPDATE_ROWS_COMPRESSED: u8 = 170;
    /// DELETE_ROWS_COMPRESSED.
    pub const DELETE_ROWS_COMPRESSED: u8 = 171;
}

/// GTID event flag: the group is a single statement without BEGIN/COMMIT (DDL).
pub(crate) const FL_STANDALONE: u8 = 1;

/// GTID event flag: the group is an XA branch that ends with XA PREPARE (MariaDB logs its
/// `XA START` in the GTID event, not as a query).
pub(crate) const FL_PREPARED_XA: u8 = 64;

/// A decoded MariaDB GTID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GtidEvent {
    /// The GTID (server id from the event header).
    pub gtid: MariaGtid,
    /// `flags2`.
    pub flags: u8,
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_le(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// GTID: `seq_no u64, domain_id u32, flags2 u8, ...`.
pub(crate) fn parse_gtid(body: &[u8], server_id: u32) -> Option<GtidEvent> {
    let seq = u64_le(body, 0)?;
    let domain = u32_le(body, 8)?;
    let flags = *body.get(12)?;
    Some(GtidEvent {
        gtid: MariaGtid {
            domain,
            server: server_id,
            seq,
        },
        flags,
    })
}

/// GTID_LIST: `count u32 (low 28 bits), count × (domain u32, server u32, seq u64)`.
pub(crate) fn parse_gtid_list(body: &[u8]) -> Option<GtidList> {
    let count = (u32_le(body, 0)? & 0x0fff_ffff) as usize;
    if body.len() < 4 + count.checked_mul(16)? {
        return None;
    }
    let mut list = GtidList::new();
    for i in 0..count {
        let at = 4 + i * 16;
        list.update(MariaGtid {
            domain: u32_le(body, at)?,
            server: u32_le(body, at + 4)?,
            seq: u64_le(body, at + 8)?,
        });
    }
    Some(list)
}

/// BINLOG_CHECKPOINT: `name_len u32, name`.
pub(crate) fn parse_checkpoint(body: &[u8]) -> Option<String> {
    let n = u32_le(body, 0)? as usize;
    let name = body.get(4..4usize.checked_add(n)?)?;
    Some(String::from_utf8_lossy(name).into_owned())
}

/// Inflates a MariaDB compressed block: a header byte `0x80 | n` followed by the
/// uncompressed length in `n` big-endian bytes, then a zlib stream.
pub(crate) fn uncompress(block: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let h = *block.first().ok_or("empty compressed block")?;
    if h & 0xe0 != 0x80 {
        return Err(format!("bad compressed block header 0x{h:02x}"));
    }
    let n = (h & 0x07) as usize;
    if n == 0 || n > 4 {
        return Err("bad compressed length size".into());
    }
    let len_bytes = block.get(1..1 + n).ok_or("truncated compressed block")?;
    let len = len_bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize);
    if len > limit {
        return Err(format!(
            "compressed block claims {len} bytes (limit {limit})"
        ));
    }
    let mut out = Vec::with_capacity(len.min(1 << 20));
    flate2::read::ZlibDecoder::new(&block[1 + n..])
        .take(len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zlib: {e}"))?;
    if out.len() != len {
        return Err(format!(
            "compressed block inflates to {} bytes, header says {len}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gtid_and_list() {
        let mut b = Vec::new();
        b.extend_from_slice(&100u64.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.push(0x0c);
        let g = parse_gtid(&b, 7).unwrap();
        assert_eq!(g.gtid.to_string(), "2-7-100");
        assert_eq!(g.flags, 0x0c);
        assert!(parse_gtid(&b[..10], 7).is_none());

        let mut l = Vec::new();
        l.extend_from_slice(&1u32.to_le_bytes());
        l.extend_from_slice(&0u32.to_le_bytes());
        l.extend_from_slice(&10u32.to_le_bytes());
        l.extend_from_slice(&262175u64.to_le_bytes());
        assert_eq!(parse_gtid_list(&l).unwrap().to_string(), "0-10-262175");
        assert!(parse_gtid_list(&l[..10]).is_none());
    }

    #[test]
    fn zlib_block() {
        let data = b"INSERT INTO t VALUES (1)".repeat(10);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&data).unwrap();
        let zdata = z.finish().unwrap();
        let mut block = vec![0x82, (data.len() >> 8) as u8, data.len() as u8];
        block.extend_from_slice(&zdata);
        assert_eq!(uncompress(&block, 1 << 20).unwrap(), data);
        assert!(uncompress(&block, 10).is_err());
        assert!(uncompress(&[0x12], 10).is_err());
    }
}
