//! Reading binlog files: event framing with size and CRC32 checks, then [`Decoder`].
//!
//! mysql_common's `BinlogFile` panics on a truncated event and does not verify checksums, so
//! framing is done here: every length is checked before it is used, so a corrupt or
//! truncated file is an error naming the offset, never a panic or a huge allocation.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use mysql_common::binlog::consts::{BinlogChecksumAlg, EventFlags, EventType};
use mysql_common::binlog::events::{BinlogEventFooter, BinlogEventHeader};
use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;

use super::decode::{event_name, DecodeError, DecodeOptions, Decoder, RawEvent, MAX_EVENT_SIZE};
use crate::event::SourceEvent;

/// The binlog file magic.
pub const BINLOG_MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// Errors of opening a binlog file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be opened or read.
    #[error("cannot read binlog file {path}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The content is not a valid binlog.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Splits a byte stream into events, checking sizes and checksums.
pub struct Framer<R> {
    input: R,
    file: String,
    /// Offset of the next event.
    offset: u64,
    /// Offset reported for events (the payload event's for inner events).
    report_offset: Option<u64>,
    buf: Vec<u8>,
    /// Events after the current FORMAT_DESCRIPTION end with a CRC32.
    checksums: bool,
    /// Upper bound of bytes to read (transaction payloads).
    limit: Option<u64>,
    consumed: u64,
}

impl<R: BufRead> Framer<R> {
    /// A framer reading `input`, whose first event is at `offset` of `file`. `checksums`:
    /// whether events carry a CRC32 before the first FORMAT_DESCRIPTION says.
    pub fn new(input: R, file: String, offset: u64, checksums: bool) -> Self {
        Framer {
            input,
            file,
            offset,
            report_offset: None,
            buf: Vec::with_capacity(64 * 1024),
            checksums,
            limit: None,
            consumed: 0,
        }
    }

    /// Bounds the bytes this framer reads (a payload's declared uncompressed size).
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = Some(limit);
        self.report_offset = Some(self.offset);
    }

    /// Offset of the next event.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn truncated(&self, what: &'static str, needed: u64, available: u64) -> DecodeError {
        DecodeError::Truncated {
            file: self.file.clone(),
            offset: self.offset,
            what,
            needed,
            available,
        }
    }

    fn io_err(&self, e: io::Error) -> DecodeError {
        DecodeError::Corrupt {
            file: self.file.clone(),
            offset: self.offset,
            event: "stream".into(),
            reason: e.to_string(),
        }
    }

    /// Reads up to `n` bytes into `dst`; returns how many were read.
    fn read_up_to(&mut self, dst: &mut [u8]) -> Result<usize, DecodeError> {
        let mut got = 0;
        while got < dst.len() {
            match self.input.read(&mut dst[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        }
        Ok(got)
    }

    /// The next event, or `None` at a clean end of input.
    pub fn next_event(&mut self) -> Result<Option<RawEvent<'_>>, DecodeError> {
        if let Some(limit) = self.limit {
            if self.consumed >= limit {
                return Ok(None);
            }
        }
        let mut hdr = [0u8; BinlogEventHeader::LEN];
        let got = self.read_up_to(&mut hdr)?;
        if got == 0 {
            if let Some(limit) = self.limit {
                if self.consumed < limit {
                    return Err(self.truncated("transaction payload", limit, self.consumed));
                }
            }
            return Ok(None);
        }
        if got < hdr.len() {
            return Err(self.truncated("event header", hdr.len() as u64, got as u64));
        }
        let header = BinlogEventHeader::deserialize((), &mut ParseBuf(&hdr)).map_err(|e| {
            DecodeError::BadHeader {
                file: self.file.clone(),
                offset: self.offset,
                reason: e.to_string(),
            }
        })?;
        let size = header.event_size() as u64;
        let code = header.event_type_raw();
        let is_fde = code == EventType::FORMAT_DESCRIPTION_EVENT as u8;
        let min = BinlogEventHeader::LEN as u64 + if self.checksums && !is_fde { 4 } else { 0 };
        if size < min || size > MAX_EVENT_SIZE {
            return Err(DecodeError::BadHeader {
                file: self.file.clone(),
                offset: self.offset,
                reason: format!("{} event size {size}", event_name(code)),
            });
        }
        if let Some(limit) = self.limit {
            if self.consumed + size > limit {
                return Err(self.truncated(
                    "event inside transaction payload",
                    size,
                    limit - self.consumed,
                ));
            }
        }
        let body_len = (size - BinlogEventHeader::LEN as u64) as usize;
        self.buf.clear();
        self.buf.extend_from_slice(&hdr);
        // Grow with the data actually present: a corrupt size never allocates up front.
        let got = match (&mut self.input)
            .take(body_len as u64)
            .read_to_end(&mut self.buf)
        {
            Ok(n) => n,
            Err(e) => return Err(self.io_err(e)),
        };
        if got < body_len {
            return Err(self.truncated("event body", body_len as u64, got as u64));
        }
        let offset = self.report_offset.unwrap_or(self.offset);
        let this_offset = self.offset;
        self.offset += size;
        self.consumed += size;

        let mut fde_footer = None;
        let mut body_end = self.buf.len();
        if is_fde {
            let data = &self.buf[BinlogEventHeader::LEN..];
            let footer = BinlogEventFooter::read(data).map_err(|e| DecodeError::Corrupt {
                file: self.file.clone(),
                offset: this_offset,
                event: "FORMAT_DESCRIPTION".into(),
                reason: e.to_string(),
            })?;
            let alg = footer
                .get_checksum_alg()
                .map_err(|e| DecodeError::Corrupt {
                    file: self.file.clone(),
                    offset: this_offset,
                    event: "FORMAT_DESCRIPTION".into(),
                    reason: format!("unknown checksum algorithm {}", e.0),
                })?;
            if alg.is_some() {
                // algorithm byte + CRC32 (present even when the algorithm is OFF)
                if data.len() < 57 + 5 {
                    return Err(DecodeError::Corrupt {
                        file: self.file.clone(),
                        offset: this_offset,
                        event: "FORMAT_DESCRIPTION".into(),
                        reason: "too short".into(),
                    });
                }
                body_end -= 5;
            }
            let crc = alg == Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
            if crc {
                self.verify_crc(&header, this_offset, true)?;
            }
            self.checksums = crc;
            fde_footer = Some(footer);
        } else if self.checksums {
            self.verify_crc(&header, this_offset, false)?;
            body_end -= 4;
        }
        Ok(Some(RawEvent {
            header,
            body: &self.buf[BinlogEventHeader::LEN..body_end],
            offset,
            fde_footer,
        }))
    }

    fn verify_crc(
        &self,
        header: &BinlogEventHeader,
        offset: u64,
        is_fde: bool,
    ) -> Result<(), DecodeError> {
        let n = self.buf.len();
        let stored = u32::from_le_bytes([
            self.buf[n - 4],
            self.buf[n - 3],
            self.buf[n - 2],
            self.buf[n - 1],
        ]);
        let computed = crc32fast::hash(&self.buf[..n - 4]);
        if computed == stored {
            return Ok(());
        }
        if is_fde
            && header
                .flags()
                .contains(EventFlags::LOG_EVENT_BINLOG_IN_USE_F)
        {
            // The server computes the FORMAT_DESCRIPTION checksum with the in-use flag clear.
            let mut h = crc32fast::Hasher::new();
            let mut copy = [0u8; BinlogEventHeader::LEN];
            copy.copy_from_slice(&self.buf[..BinlogEventHeader::LEN]);
            copy[17] &= !(EventFlags::LOG_EVENT_BINLOG_IN_USE_F.bits() as u8);
            h.update(&copy);
            h.update(&self.buf[BinlogEventHeader::LEN..n - 4]);
            if h.finalize() == stored {
                return Ok(());
            }
        }
        Err(DecodeError::Checksum {
            file: self.file.clone(),
            offset,
            event: event_name(header.event_type_raw()),
            stored,
            computed,
        })
    }
}

/// Decodes a whole binlog held in memory (file name `file` for positions). Stops at the
/// first error, after handing every event before it to `sink`.
pub fn decode_bytes(
    file: &str,
    bytes: &[u8],
    opts: DecodeOptions,
    mut sink: impl FnMut(SourceEvent),
) -> Result<(), DecodeError> {
    let mut reader = BinlogReader::new(bytes, file, opts)?;
    let mut batch = Vec::new();
    loop {
        batch.clear();
        if !reader.next_batch(&mut batch)? {
            return Ok(());
        }
        for ev in batch.drain(..) {
            sink(ev);
        }
    }
}

/// Reads and decodes a binlog file event by event.
pub struct BinlogReader<R> {
    framer: Framer<R>,
    decoder: Decoder,
    queue: VecDeque<SourceEvent>,
    scratch: Vec<SourceEvent>,
    done: bool,
}

impl BinlogReader<Box<dyn BufRead + Send>> {
    /// Opens `path`; gzip-compressed files (`binlog.000042.gz`) are decompressed on the fly.
    pub fn open(path: &Path, opts: DecodeOptions) -> Result<Self, FileError> {
        let io = |source| FileError::Io {
            path: path.display().to_string(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let mut r = BufReader::with_capacity(256 * 1024, f);
        let gz = r.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let input: Box<dyn BufRead + Send> = if gz {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                flate2::read::GzDecoder::new(r),
            ))
        } else {
            Box::new(r)
        };
        let mut name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        if gz {
            if let Some(stem) = name.strip_suffix(".gz") {
                name = stem.to_owned();
            }
        }
        Ok(BinlogReader::new(input, &name, opts)?)
    }
}

impl<R: BufRead> BinlogReader<R> {
    /// Reads the magic of `input`, a binlog file named `file`.
    pub fn new(mut input: R, file: &str, opts: DecodeOptions) -> Result<Self, DecodeError> {
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match input.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(DecodeError::Corrupt {
                        file: file.to_owned(),
                        offset: 0,
                        event: "file".into(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        if got < 4 {
            return Err(DecodeError::Truncated {
                file: file.to_owned(),
                offset: 0,
                what: "magic",
                needed: 4,
                available: got as u64,
            });
        }
        if magic != BINLOG_MAGIC {
            return Err(DecodeError::BadMagic {
                file: file.to_owned(),
            });
        }
        Ok(BinlogReader {
            framer: Framer::new(input, file.to_owned(), 4, false),
            decoder: Decoder::new(file, opts),
            queue: VecDeque::new(),
            scratch: Vec::new(),
            done: false,
        })
    }

    /// The decoder (position, schema cache).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Decodes the next binlog event into `out` (zero or more source events). Returns false
    /// at the end of the file.
    pub fn next_batch(&mut self, out: &mut Vec<SourceEvent>) -> Result<bool, DecodeError> {
        if self.done {
            return Ok(false);
        }
        match self.framer.next_event()? {
            Some(raw) => {
                self.decoder.decode(raw, out)?;
                Ok(true)
            }
            None => {
                self.done = true;
                Ok(false)
            }
        }
    }

    /// The next source event, or `None` at the end of the file.
    pub fn next_event(&mut self) -> Result<Option<SourceEvent>, DecodeError> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(Some(ev));
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            let more = self.next_batch(&mut scratch);
            if more.is_ok() {
                self.queue.extend(scratch.drain(..));
            }
            scratch.clear();
            self.scratch = scratch;
            if !more? && self.queue.is_empty() {
                return Ok(None);
            }
        }
    }
}

impl<R: BufRead> Iterator for BinlogReader<R> {
    type Item = Result<SourceEvent, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_event() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                self.queue.clear();
                Some(Err(e))
            }
        }
    }
}
