//! The one tar parser: image layers and `ADD` archives alike are read with it. It decides what is a
//! header, what is data and where the archive ends the way Go's `archive/tar` does, since Docker's
//! `ADD`, `docker pull` and containerd are built on it.
//!
//! Why not the `tar` crate's iterator (0.4.46): it splits PAX records on newlines before honouring
//! their length, so a binary xattr value such as `security.capability` that contains `\n` fails
//! to parse, and a value holding `\n14 path=/evil\n` is read as a `path` record of its own,
//! renaming the entry where Go sees only the xattr (composefs/tar-rs#452, #428). It also skips the
//! size field's worth of data after link, device, directory and FIFO headers where Go reads none,
//! losing its place in the stream. Field decoding follows Go: octal or
//! base-256 numbers, checksums accepted signed or unsigned, the USTAR/STAR prefix joined to the name,
//! GNU long names and PAX records applied to the next header, PAX and GNU long headers capped at
//! 1 MiB. The reader never consumes more than the headers announce: it stops at the end-of-archive
//! blocks and leaves anything after them unread.

use std::io::{self, Read, Write};

const BLOCK_SIZE: u64 = 512;
/// Go's `maxSpecialFileSize`: PAX and GNU long-name headers larger than this are refused.
const MAX_SPECIAL_FILE_SIZE: u64 = 1 << 20;
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// PAX records as raw key and value bytes, in archive order.
type PaxRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// Why reading the tar stream failed.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading (or decompressing) the underlying stream failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The stream ended inside a header or inside an entry's data.
    #[error("the archive ends in the middle of an entry")]
    Truncated,
    /// The bytes are not a tar archive Go would accept.
    #[error("{0}")]
    Malformed(String),
}

/// Failure while copying an entry's data: reading the archive, or writing the copy.
#[derive(Debug)]
pub enum TarCopyError {
    Archive(TarError),
    Write(io::Error),
}

/// One entry's header, after PAX records and GNU long names were applied.
#[derive(Debug, Clone, Default)]
pub struct TarHeader {
    pub name: Vec<u8>,
    pub link_name: Vec<u8>,
    /// The type flag; the legacy `\0` is already turned into `0` or `5` as Go does.
    pub type_flag: u8,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub size: i64,
    /// Modification time, whole seconds since the epoch (a PAX `mtime` overrides the header's).
    pub mtime: i64,
    pub dev_major: i64,
    pub dev_minor: i64,
    /// `SCHILY.xattr.*` PAX records: name (without the prefix) and raw value.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The entry is a GNU sparse file (old `S` type or PAX `GNU.sparse.*` records).
    pub sparse: bool,
}

pub struct TarReader<R> {
    inner: R,
    /// Unread data bytes of the current entry.
    remaining: u64,
    /// Padding after the current entry's data, up to the next 512-byte boundary.
    padding: u64,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            remaining: 0,
            padding: 0,
        }
    }

    /// The next entry's header (Go's `Reader.Next`), or `None` at the end of the archive. PAX
    /// global headers are returned as entries of type `g`, as Go returns them.
    pub fn next_header(&mut self) -> Result<Option<TarHeader>, TarError> {
        let mut pax_records: Option<PaxRecords> = None;
        let mut long_name: Vec<u8> = Vec::new();
        let mut long_link: Vec<u8> = Vec::new();
        loop {
            if !self.skip_current()? {
                return Ok(None);
            }
            let Some(block) = self.read_header_block()? else {
                return Ok(None);
            };
            let mut header = parse_block(&block)?;
            self.start_data(&header)?;
            match header.type_flag {
                b'x' => pax_records = Some(parse_pax(&self.read_special()?)?),
                b'g' => {
                    parse_pax(&self.read_special()?)?;
                    return Ok(Some(header));
                }
                b'L' => long_name = until_nul(&self.read_special()?).to_vec(),
                b'K' => long_link = until_nul(&self.read_special()?).to_vec(),
                _ => {
                    if let Some(records) = &pax_records {
                        merge_pax(&mut header, records)?;
                    }
                    if !long_name.is_empty() {
                        header.name = long_name;
                    }
                    if !long_link.is_empty() {
                        header.link_name = long_link;
                    }
                    if header.type_flag == 0 {
                        // Legacy archives mark directories with a trailing slash.
                        header.type_flag = if header.name.ends_with(b"/") {
                            b'5'
                        } else {
                            b'0'
                        };
                    }
                    if header.type_flag == b'S' {
                        header.sparse = true;
                        self.skip_old_gnu_sparse_extensions(&block)?;
                    }
                    // PAX records may have changed the size.
                    self.start_data(&header)?;
                    return Ok(Some(header));
                }
            }
        }
    }

    /// Copies the current entry's data to `out`, exactly as many bytes as its header announces.
    pub fn copy_data(&mut self, out: &mut impl Write) -> Result<u64, TarCopyError> {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut copied = 0u64;
        while self.remaining > 0 {
            let want =
                usize::try_from(self.remaining.min(buffer.len() as u64)).unwrap_or(buffer.len());
            let chunk = buffer.get_mut(..want).unwrap_or_default();
            let read = match self.inner.read(chunk) {
                Ok(0) => return Err(TarCopyError::Archive(TarError::Truncated)),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(TarCopyError::Archive(TarError::Io(error))),
            };
            out.write_all(chunk.get(..read).unwrap_or_default())
                .map_err(TarCopyError::Write)?;
            self.remaining -= read as u64;
            copied += read as u64;
        }
        Ok(copied)
    }

    /// Go's `handleRegularFile`: how much data follows this header.
    fn start_data(&mut self, header: &TarHeader) -> Result<(), TarError> {
        let size = if is_header_only(header.type_flag) {
            0
        } else {
            u64::try_from(header.size)
                .map_err(|_| TarError::Malformed(format!("negative size {}", header.size)))?
        };
        self.remaining = size;
        self.padding = (BLOCK_SIZE - size % BLOCK_SIZE) % BLOCK_SIZE;
        Ok(())
    }

    /// Discards what is left of the current entry. Data must be complete; the archive may end in
    /// the padding after it (Go accepts that as the end), which is reported as `false`.
    fn skip_current(&mut self) -> Result<bool, TarError> {
        let remaining = std::mem::take(&mut self.remaining);
        if discard(&mut self.inner, remaining)? < remaining {
            return Err(TarError::Truncated);
        }
        let padding = std::mem::take(&mut self.padding);
        Ok(discard(&mut self.inner, padding)? == padding)
    }

    /// Reads a header block; `None` at a clean end (end of stream, or two zero blocks).
    fn read_header_block(&mut self) -> Result<Option<[u8; 512]>, TarError> {
        let mut block = [0u8; 512];
        match read_full(&mut self.inner, &mut block)? {
            0 => return Ok(None),
            512 => {}
            _ => return Err(TarError::Truncated),
        }
        if block.iter().any(|&b| b != 0) {
            return Ok(Some(block));
        }
        match read_full(&mut self.inner, &mut block)? {
            0 => return Ok(None),
            512 => {}
            _ => return Err(TarError::Truncated),
        }
        if block.iter().all(|&b| b == 0) {
            Ok(None)
        } else {
            Err(TarError::Malformed(
                "a zero block is followed by more data instead of a second zero block".to_owned(),
            ))
        }
    }

    /// An old GNU sparse header whose `isextended` flag is set is followed by more blocks of its
    /// sparse map (each flagging whether another follows) before its data, as Go's
    /// `readOldGNUSparseMap` reads them. The map is not kept: dockless lists sparse files, and
    /// refuses them in `ADD`.
    fn skip_old_gnu_sparse_extensions(&mut self, block: &[u8; 512]) -> Result<(), TarError> {
        const IS_EXTENDED: usize = 482;
        const EXTENSION_IS_EXTENDED: usize = 504;
        let is_gnu = block.get(257..265) == Some(b"ustar  \0".as_slice());
        let mut extended = is_gnu && block[IS_EXTENDED] != 0;
        while extended {
            let mut extension = [0u8; 512];
            if read_full(&mut self.inner, &mut extension)? < 512 {
                return Err(TarError::Truncated);
            }
            extended = extension[EXTENSION_IS_EXTENDED] != 0;
        }
        Ok(())
    }

    /// Reads the whole data of a PAX or GNU long-name header.
    fn read_special(&mut self) -> Result<Vec<u8>, TarError> {
        if self.remaining > MAX_SPECIAL_FILE_SIZE {
            return Err(TarError::Malformed(format!(
                "an extended header of {} bytes exceeds the 1 MiB limit",
                self.remaining
            )));
        }
        let mut data = Vec::new();
        match self.copy_data(&mut data) {
            Ok(_) => Ok(data),
            Err(TarCopyError::Archive(error)) => Err(error),
            Err(TarCopyError::Write(error)) => Err(TarError::Io(error)),
        }
    }
}

/// Types whose size field Go ignores: no data follows them.
fn is_header_only(type_flag: u8) -> bool {
    matches!(type_flag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, TarError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(TarError::Io(error)),
        }
    }
    Ok(filled)
}

/// Reads and drops up to `count` bytes; returns how many there were.
fn discard(reader: &mut impl Read, count: u64) -> Result<u64, TarError> {
    Ok(io::copy(&mut reader.take(count), &mut io::sink())?)
}

/// Decodes one 512-byte header block the way Go's `readHeader` does.
fn parse_block(block: &[u8; 512]) -> Result<TarHeader, TarError> {
    let field = |start: usize, end: usize| block.get(start..end).unwrap_or_default();
    verify_checksum(block, field(148, 156))?;

    let magic = field(257, 263);
    let version = field(263, 265);
    let is_ustar = magic == b"ustar\0";
    let is_star = is_ustar && field(508, 512) == b"tar\0";
    let is_gnu = magic == b"ustar " && version == b" \0";

    let mut numbers = NumberParser::default();
    let mut header = TarHeader {
        type_flag: block[156],
        name: until_nul(field(0, 100)).to_vec(),
        link_name: until_nul(field(157, 257)).to_vec(),
        size: numbers.numeric(field(124, 136)),
        mode: numbers.numeric(field(100, 108)),
        uid: numbers.numeric(field(108, 116)),
        gid: numbers.numeric(field(116, 124)),
        mtime: numbers.numeric(field(136, 148)),
        ..TarHeader::default()
    };
    if is_ustar || is_gnu {
        header.dev_major = numbers.numeric(field(329, 337));
        header.dev_minor = numbers.numeric(field(337, 345));
        let prefix = match (is_star, is_ustar) {
            (true, _) => until_nul(field(345, 476)),
            (false, true) => until_nul(field(345, 500)),
            (false, false) => &[],
        };
        if !prefix.is_empty() {
            let mut name = prefix.to_vec();
            name.push(b'/');
            name.extend_from_slice(&header.name);
            header.name = name;
        }
    }
    if numbers.failed {
        return Err(TarError::Malformed(
            "a header has a numeric field that is neither octal nor base-256".to_owned(),
        ));
    }
    Ok(header)
}

/// Go accepts the checksum computed with signed or with unsigned bytes.
fn verify_checksum(block: &[u8; 512], field: &[u8]) -> Result<(), TarError> {
    let mut numbers = NumberParser::default();
    let stored = numbers.octal(field);
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (index, &byte) in block.iter().enumerate() {
        let byte = if (148..156).contains(&index) {
            b' '
        } else {
            byte
        };
        unsigned += i64::from(byte);
        signed += i64::from(byte as i8);
    }
    if numbers.failed || (stored != unsigned && stored != signed) {
        return Err(TarError::Malformed(
            "a header checksum does not match (this is not tar data, or it is corrupted)"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Go's header number parser: errors are sticky and reported once all fields are read.
#[derive(Default)]
struct NumberParser {
    failed: bool,
}

impl NumberParser {
    /// Base-256 when the high bit of the first byte is set (two's complement), octal otherwise.
    fn numeric(&mut self, field: &[u8]) -> i64 {
        let Some(&first) = field.first() else {
            return 0;
        };
        if first & 0x80 == 0 {
            return self.octal(field);
        }
        let invert = if first & 0x40 != 0 { 0xff } else { 0x00 };
        let mut value: u64 = 0;
        for (index, &byte) in field.iter().enumerate() {
            let mut byte = byte ^ invert;
            if index == 0 {
                byte &= 0x7f;
            }
            if value >> 56 > 0 {
                self.failed = true;
                return 0;
            }
            value = value << 8 | u64::from(byte);
        }
        let Ok(value) = i64::try_from(value) else {
            self.failed = true;
            return 0;
        };
        if invert == 0xff { !value } else { value }
    }

    /// Octal digits, padded with spaces or NULs on either side.
    fn octal(&mut self, field: &[u8]) -> i64 {
        let is_pad = |b: &u8| *b == b' ' || *b == 0;
        let start = field.iter().position(|b| !is_pad(b)).unwrap_or(field.len());
        let end = field
            .iter()
            .rposition(|b| !is_pad(b))
            .map_or(start, |i| i + 1);
        let digits = until_nul(field.get(start..end).unwrap_or_default());
        if digits.is_empty() {
            return 0;
        }
        let mut value: u64 = 0;
        for &digit in digits {
            let parsed = match digit {
                b'0'..=b'7' => value
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(digit - b'0'))),
                _ => None,
            };
            let Some(parsed) = parsed else {
                self.failed = true;
                return 0;
            };
            value = parsed;
        }
        // Go converts with int64(x); fields are at most 12 octal digits, far from overflowing.
        i64::try_from(value).unwrap_or(i64::MAX)
    }
}

/// The bytes before the first NUL (Go's `parseString`).
fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.get(..end).unwrap_or_default()
}

/// Parses PAX records (`"%d %s=%s\n"`), binary-safe, with Go's validity rules.
fn parse_pax(mut data: &[u8]) -> Result<PaxRecords, TarError> {
    let malformed = || TarError::Malformed("a PAX extended header record is malformed".to_owned());
    let mut records = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or_else(malformed)?;
        let length: i64 = std::str::from_utf8(data.get(..space).unwrap_or_default())
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(malformed)?;
        let length = usize::try_from(length).map_err(|_| malformed())?;
        if length < 5 || length > data.len() || length <= space + 1 {
            return Err(malformed());
        }
        if data.get(length - 1) != Some(&b'\n') {
            return Err(malformed());
        }
        let record = data.get(space + 1..length - 1).unwrap_or_default();
        let equals = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(malformed)?;
        let (key, value) = (
            record.get(..equals).unwrap_or_default(),
            record.get(equals + 1..).unwrap_or_default(),
        );
        let text_valued = matches!(key, b"path" | b"linkpath" | b"uname" | b"gname");
        if key.is_empty() || (text_valued && value.contains(&0)) || key.contains(&0) {
            return Err(malformed());
        }
        records.push((key.to_vec(), value.to_vec()));
        data = data.get(length..).unwrap_or_default();
    }
    Ok(records)
}

/// Go's `mergePAX`: records override header fields; a later record with the same key wins.
fn merge_pax(header: &mut TarHeader, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), TarError> {
    for (key, value) in records {
        match key.as_slice() {
            b"path" => header.name = value.clone(),
            b"linkpath" => header.link_name = value.clone(),
            b"uid" => header.uid = pax_integer(key, value)?,
            b"gid" => header.gid = pax_integer(key, value)?,
            b"size" => header.size = pax_integer(key, value)?,
            b"mtime" => header.mtime = pax_seconds(key, value)?,
            b"atime" | b"ctime" => {
                pax_seconds(key, value)?;
            }
            _ => {
                if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    header.xattrs.retain(|(existing, _)| existing != name);
                    header.xattrs.push((name.to_vec(), value.clone()));
                } else if key.starts_with(b"GNU.sparse.") {
                    header.sparse = true;
                }
            }
        }
    }
    Ok(())
}

fn pax_integer(key: &[u8], value: &[u8]) -> Result<i64, TarError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            TarError::Malformed(format!(
                "PAX record {} has a non-numeric value",
                String::from_utf8_lossy(key)
            ))
        })
}

/// A PAX time is decimal seconds with an optional fraction of digits: its whole seconds.
fn pax_seconds(key: &[u8], value: &[u8]) -> Result<i64, TarError> {
    let (seconds, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (
            value.get(..dot).unwrap_or_default(),
            value.get(dot + 1..).unwrap_or_default(),
        ),
        None => (value, &[][..]),
    };
    let whole = std::str::from_utf8(seconds)
        .ok()
        .and_then(|text| text.parse::<i64>().ok());
    match whole {
        Some(whole) if fraction.iter().all(u8::is_ascii_digit) => Ok(whole),
        _ => Err(TarError::Malformed(format!(
            "PAX record {} is not a valid time",
            String::from_utf8_lossy(key)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_are_binary_safe() {
        let value = b"a\nb=c\0d";
        let record_body = [b"SCHILY.xattr.user.x=".as_slice(), value.as_slice(), b"\n"].concat();
        let length = record_body.len() + 3; // "NN " prefix
        let record = [format!("{length} ").into_bytes(), record_body].concat();
        assert_eq!(record.len(), length);
        let records = parse_pax(&record).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            records,
            vec![(b"SCHILY.xattr.user.x".to_vec(), value.to_vec())]
        );
    }

    #[test]
    fn malformed_pax_records_are_rejected() {
        for bad in [
            &b"4 a=\n"[..],
            b"9 path=a",
            b"x path=a\n",
            b"11 path=a\n",
            b"7 =abc\n",
            b"11 pathabc\n",
            b"11 path\0=a\n",
            b"11 path=\0a\n",
        ] {
            assert!(
                parse_pax(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_pax(b"10 path=a\n").is_ok());
    }

    #[test]
    fn the_modification_time_comes_from_the_header_or_a_pax_record() {
        let mut header = tar::Header::new_ustar();
        header.set_path("f").unwrap();
        header.set_size(0);
        header.set_mtime(1234);
        header.set_cksum();
        let block: [u8; 512] = header.as_bytes().to_owned();
        let mut parsed = parse_block(&block).unwrap();
        assert_eq!(parsed.mtime, 1234);
        merge_pax(&mut parsed, &parse_pax(b"22 mtime=1700000000.5\n").unwrap()).unwrap();
        assert_eq!(parsed.mtime, 1_700_000_000);
        assert!(merge_pax(&mut parsed, &parse_pax(b"12 mtime=1x\n").unwrap()).is_err());
    }

    #[test]
    fn numbers_like_go() {
        let mut numbers = NumberParser::default();
        assert_eq!(numbers.numeric(b"0000644\0"), 0o644);
        assert_eq!(numbers.numeric(b"  644 \0"), 0o644);
        assert_eq!(numbers.numeric(b"\0\0\0\0"), 0);
        assert_eq!(numbers.numeric(&[0x80, 0, 0, 0, 0, 0, 0x01, 0x00]), 256);
        assert_eq!(
            numbers.numeric(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            -1
        );
        assert!(!numbers.failed);
        numbers.numeric(b"12x4\0");
        assert!(numbers.failed);
        let mut numbers = NumberParser::default();
        numbers.numeric(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(numbers.failed, "base-256 overflow");
    }
}
