//! Capture files as frames: pcap (micro- or nanosecond, either byte
//! order) and pcapng (several sections and interfaces, each with its own
//! link type, `if_tsresol` and `if_tsoffset`; enhanced and simple packet
//! blocks), through the `pcap-parser` crate. A file cut mid-record gives
//! every frame before the cut and says so; it is not an error.

use std::{
    fs::File,
    io::BufReader,
    path::Path,
    time::{Duration, Instant},
};

use pcap_parser::{pcapng::Block, traits::PcapReaderIterator, Linktype, PcapBlockOwned, PcapError};

use super::event::Nanos;

/// One captured frame.
pub struct Frame<'a> {
    pub link: Linktype,
    /// Unix time in nanoseconds.
    pub ts: Nanos,
    /// The frame's length on the wire (`data` may hold less: snap length).
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// How reading ended, besides the frames themselves.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FileReport {
    pub frames: u64,
    /// Bytes left unread at the end because the last record was cut short
    /// (a capture still being written, a partial download); 0 when whole.
    pub cut_bytes: u64,
    /// Packet blocks naming an interface the file never described.
    pub unknown_interface: u64,
}

/// Why a file cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot open {path}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is neither a pcap nor a pcapng file")]
    NotACapture { path: String },
    #[error("{path} is empty")]
    Empty { path: String },
    #[error("{path}: unreadable at byte {offset}: {what}")]
    Corrupt {
        path: String,
        offset: u64,
        what: String,
    },
}

/// An interface of a pcapng section: its link type and clock.
#[derive(Clone, Copy)]
struct Interface {
    link: Linktype,
    /// Timestamp units per second (`if_tsresol`).
    units: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_secs: i64,
}

/// Units per second of an `if_tsresol` value: 10^n, or 2^n with the top
/// bit set. `None` for a value no u64 can hold.
fn ts_units(resol: u8) -> Option<u64> {
    let n = (resol & 0x7f) as u32;
    if resol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

/// A timestamp of `units` per second, plus whole seconds, in nanoseconds
/// (saturating: a crafted file cannot overflow it).
fn to_nanos(ticks: u64, units: u64, offset_secs: i64) -> Nanos {
    let units = units.max(1) as u128;
    let ns = ticks as u128 * 1_000_000_000 / units;
    let offset = offset_secs as i128 * 1_000_000_000;
    (ns as i128 + offset).clamp(0, u64::MAX as i128) as Nanos
}

/// Shows how far a long read has come, on stderr, every few seconds; a
/// file read in under that shows nothing.
struct Progress {
    total: u64,
    started: Instant,
    next: Duration,
    enabled: bool,
    name: String,
}

const PROGRESS_EVERY: Duration = Duration::from_secs(3);

impl Progress {
    fn tick(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let elapsed = self.started.elapsed();
        if elapsed < self.next {
            return;
        }
        self.next = elapsed + PROGRESS_EVERY;
        let pct = if self.total > 0 {
            done as f64 * 100.0 / self.total as f64
        } else {
            0.0
        };
        eprintln!(
            "{}: {pct:.0}% ({} of {} MB) after {}s",
            self.name,
            done / 1_000_000,
            self.total / 1_000_000,
            elapsed.as_secs()
        );
    }
}

/// Reads every frame of a pcap or pcapng file in file order.
/// `progress`: report on stderr while a long file is read.
pub fn read(
    path: &Path,
    progress: bool,
    on_frame: &mut dyn FnMut(Frame),
) -> Result<FileReport, FileError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| FileError::Open {
        path: name.clone(),
        source,
    })?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = BufReader::with_capacity(1 << 16, file);
    read_from(reader, total, name, progress, on_frame)
}

/// `read` over a capture already in memory (the fuzz targets' entry).
pub fn read_bytes(bytes: &[u8], on_frame: &mut dyn FnMut(Frame)) -> Result<FileReport, FileError> {
    let name = "(bytes)".to_string();
    let owned = std::io::Cursor::new(bytes.to_vec());
    read_from(owned, bytes.len() as u64, name, false, on_frame)
}

fn read_from<R: std::io::Read + Send + 'static>(
    reader: R,
    total: u64,
    name: String,
    progress: bool,
    on_frame: &mut dyn FnMut(Frame),
) -> Result<FileReport, FileError> {
    if total == 0 {
        return Err(FileError::Empty { path: name });
    }
    let mut progress = Progress {
        total,
        started: Instant::now(),
        next: PROGRESS_EVERY,
        enabled: progress,
        name: name.clone(),
    };
    let mut reader = match pcap_parser::create_reader(1 << 20, reader) {
        Ok(r) => r,
        Err(PcapError::Incomplete(_)) | Err(PcapError::Eof) => {
            return Err(FileError::NotACapture { path: name })
        }
        Err(PcapError::HeaderNotRecognized) => return Err(FileError::NotACapture { path: name }),
        Err(e) => {
            return Err(FileError::Corrupt {
                path: name,
                offset: 0,
                what: e.to_string(),
            })
        }
    };
    read_blocks(&mut *reader, &name, total, &mut progress, on_frame)
}

fn read_blocks(
    reader: &mut dyn PcapReaderIterator,
    name: &str,
    total: u64,
    progress: &mut Progress,
    on_frame: &mut dyn FnMut(Frame),
) -> Result<FileReport, FileError> {
    let mut report = FileReport::default();
    // Legacy pcap: one link type and clock for the file.
    let mut legacy: Option<(Linktype, u64)> = None;
    // pcapng: the interfaces of the current section.
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut last_ts: Nanos = 0;
    loop {
        let consumed = reader.consumed() as u64;
        let corrupt = |what: String| FileError::Corrupt {
            path: name.to_string(),
            offset: consumed,
            what,
        };
        match reader.next() {
            Ok((offset, block)) => {
                let frame = match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let units = if h.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        legacy = Some((h.network, units));
                        None
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (link, units) = legacy.unwrap_or((Linktype::ETHERNET, 1_000_000));
                        let ticks = b.ts_sec as u64 * units + b.ts_usec as u64;
                        Some(Frame {
                            link,
                            ts: to_nanos(ticks, units, 0),
                            orig_len: b.origlen,
                            data: b.data,
                        })
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        interfaces.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        interfaces.push(Interface {
                            link: idb.linktype,
                            // An unusable resolution falls back to the
                            // default, microseconds.
                            units: ts_units(idb.if_tsresol).unwrap_or(1_000_000),
                            offset_secs: idb.if_tsoffset,
                        });
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let ticks = (epb.ts_high as u64) << 32 | epb.ts_low as u64;
                        let frame = interfaces.get(epb.if_id as usize).map(|i| Frame {
                            link: i.link,
                            ts: to_nanos(ticks, i.units, i.offset_secs),
                            orig_len: epb.origlen,
                            data: epb.data,
                        });
                        report.unknown_interface += frame.is_none() as u64;
                        frame
                    }
                    // No timestamp: the frame takes the time of the one
                    // before it (simple packet blocks are rare).
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let frame = interfaces.first().map(|i| Frame {
                            link: i.link,
                            ts: last_ts,
                            orig_len: spb.origlen,
                            data: spb.data,
                        });
                        report.unknown_interface += frame.is_none() as u64;
                        frame
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some(mut frame) = frame {
                    frame.orig_len = frame.orig_len.max(frame.data.len() as u32);
                    report.frames += 1;
                    last_ts = frame.ts;
                    on_frame(frame);
                }
                reader.consume(offset);
                progress.tick(reader.consumed() as u64);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                reader.refill().map_err(|e| corrupt(e.to_string()))?;
            }
            // A record larger than the buffer: make room for it, within
            // reason (pcapng allows blocks of up to 4 GiB; no packet is).
            Err(PcapError::BufferTooSmall) => {
                let size = reader.data().len().max(1 << 20) * 2;
                if size > 1 << 28 || !reader.grow(size) {
                    return Err(corrupt("a record larger than 256 MiB".into()));
                }
                reader.refill().map_err(|e| corrupt(e.to_string()))?;
            }
            Err(PcapError::UnexpectedEof) => {
                report.cut_bytes = total.saturating_sub(consumed).max(1);
                break;
            }
            Err(e) => return Err(corrupt(e.to_string())),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_and_offsets() {
        assert_eq!(ts_units(6), Some(1_000_000));
        assert_eq!(ts_units(9), Some(1_000_000_000));
        assert_eq!(ts_units(0x80 | 10), Some(1024));
        assert_eq!(ts_units(20), None);
        assert_eq!(ts_units(0x80 | 64), None);
        assert_eq!(to_nanos(1_500_000, 1_000_000, 0), 1_500_000_000);
        assert_eq!(to_nanos(3, 1, 10), 13_000_000_000);
        assert_eq!(to_nanos(0, 1, -5), 0, "before 1970 saturates");
        assert_eq!(to_nanos(u64::MAX, 1, i64::MAX), u64::MAX);
    }
}
