//! Frames from the outside world through libpcap: pcap/pcapng files, live capture, and the
//! inline bridge's two ports. This is the only module that talks to libpcap.

pub mod bridge;
pub mod classic;
pub mod fanout;
pub mod live;
pub mod tx;

use std::path::{Path, PathBuf};

use thiserror::Error;

/// setsockopt(2) at level SOL_PACKET, with `val`'s bytes as the option value: the one
/// place the bridge's packet sockets are configured (capture, transmit, fanout).
#[allow(unsafe_code)]
fn set_packet_option<T>(fd: std::os::fd::RawFd, name: libc::c_int, val: &T) -> std::io::Result<()> {
    // SAFETY: `val` is a live reference to size_of::<T>() bytes for the whole call and the
    // kernel only reads them. A pointer inside them (a BPF program's) is read with the
    // kernel's own checks: a bad one is EFAULT, never a write into our memory.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

use crate::wire::link::LinkType;

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("{path}: {msg}")]
    Open { path: PathBuf, msg: String },
    #[error("{path}: unsupported link type {dlt} ({name})")]
    LinkType {
        path: PathBuf,
        dlt: i32,
        name: String,
    },
    #[error("{path}: {msg} (after {frames} frames)")]
    Read {
        path: PathBuf,
        frames: u64,
        msg: String,
    },
}

/// One frame as read: timestamp in microseconds since the epoch, captured bytes, and the
/// length it had on the wire.
pub struct Frame<'a> {
    pub ts_micros: u64,
    pub data: &'a [u8],
    pub orig_len: u32,
}

/// A pcap timestamp in microseconds since the epoch; pre-epoch (negative) parts count as 0
/// and absurd values saturate (the engine copes with any timestamp).
fn micros(ts: &libc::timeval) -> u64 {
    (ts.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_usec.max(0) as u64)
}

pub struct PcapFile {
    source: Source,
    path: PathBuf,
    pub link: LinkType,
    pub frames: u64,
    pub file_size: u64,
}

enum Source {
    Classic(Box<classic::Reader>),
    Libpcap(pcap::Capture<pcap::Offline>),
}

impl PcapFile {
    pub fn open(path: &Path) -> Result<PcapFile, CaptureError> {
        let open_err = |msg: String| CaptureError::Open {
            path: path.to_owned(),
            msg,
        };
        // libpcap reports a missing file as a generic error; say it plainly.
        let meta = std::fs::metadata(path).map_err(|e| open_err(e.to_string()))?;
        if meta.is_dir() {
            return Err(open_err("is a directory".into()));
        }
        // Classic pcap is read directly (see `classic`), everything else by libpcap.
        let direct = std::fs::File::open(path)
            .and_then(classic::Reader::open)
            .map_err(|e| open_err(e.to_string()))?;
        let (source, link) = match direct {
            Some(r) => {
                let link = LinkType::from_dlt(r.linktype() as i32)
                    .ok_or_else(|| open_err("link type not known".into()))?;
                (Source::Classic(Box::new(r)), link)
            }
            None => {
                let cap = pcap::Capture::from_file_with_precision(path, pcap::Precision::Micro)
                    .map_err(|e| open_err(format!("not a readable pcap or pcapng file ({e})")))?;
                let dl = cap.get_datalink();
                let link = LinkType::from_dlt(dl.0).ok_or_else(|| CaptureError::LinkType {
                    path: path.to_owned(),
                    dlt: dl.0,
                    name: dl.get_name().unwrap_or_else(|_| "unknown".into()),
                })?;
                (Source::Libpcap(cap), link)
            }
        };
        Ok(PcapFile {
            source,
            path: path.to_owned(),
            link,
            frames: 0,
            file_size: meta.len(),
        })
    }

    /// The next frame, None at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let cap = match &mut self.source {
            Source::Libpcap(cap) => cap,
            Source::Classic(r) => {
                return match r.read_record() {
                    Ok(Some(rec)) => {
                        self.frames += 1;
                        Ok(Some(Frame {
                            ts_micros: rec.ts_micros,
                            data: rec.data,
                            orig_len: rec.orig_len,
                        }))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(CaptureError::Read {
                        path: self.path.clone(),
                        frames: self.frames,
                        msg: e.to_string(),
                    }),
                }
            }
        };
        match cap.next_packet() {
            Ok(p) => {
                self.frames += 1;
                Ok(Some(Frame {
                    ts_micros: micros(&p.header.ts),
                    data: p.data,
                    orig_len: p.header.len,
                }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => Err(CaptureError::Read {
                path: self.path.clone(),
                frames: self.frames,
                msg: e.to_string(),
            }),
        }
    }
}

/// Why a live capture on `iface` could not open, in the operator's terms: no such
/// interface, or not permitted (naming the capabilities `caps` it needs), else libpcap's
/// own words.
pub(crate) fn open_failure(iface: &str, e: &pcap::Error, caps: &str) -> String {
    let said = e.to_string();
    let sys = std::path::Path::new("/sys/class/net");
    if sys.is_dir() && !sys.join(iface).exists() {
        return "no such network interface".into();
    }
    let lower = said.to_ascii_lowercase();
    if lower.contains("permitted") || lower.contains("permission") {
        return format!("not permitted: needs {caps} (or root)");
    }
    said
}
