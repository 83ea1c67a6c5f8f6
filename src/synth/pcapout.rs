//! Writing frames to a pcap savefile through the `pcap` crate.

use std::path::{Path, PathBuf};

use super::{Frame, SynthError};

/// A pcap savefile (linktype Ethernet, microsecond timestamps).
pub struct PcapOut {
    save: pcap::Savefile,
    header: pcap::PacketHeader,
    path: PathBuf,
}

fn pcap_err(path: &Path, source: pcap::Error) -> SynthError {
    SynthError::Pcap {
        path: path.to_path_buf(),
        source,
    }
}

/// `pcap::PacketHeader` holds a `libc::timeval`, and libc is not a dependency of ours, so the
/// header cannot be written as a literal. Instead, read one back from a one-record pcap we
/// write ourselves (at the output path, which the savefile truncates right after) and then
/// set its fields, whose integer types `as _` infers.
fn header_template(path: &Path) -> Result<pcap::PacketHeader, SynthError> {
    let mut boot = Vec::with_capacity(24 + 16 + 14);
    boot.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microseconds
    boot.extend_from_slice(&2u16.to_le_bytes());
    boot.extend_from_slice(&4u16.to_le_bytes());
    boot.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    boot.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    boot.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    boot.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    boot.extend_from_slice(&[0u8; 8]); // ts
    boot.extend_from_slice(&14u32.to_le_bytes()); // caplen
    boot.extend_from_slice(&14u32.to_le_bytes()); // len
    boot.extend_from_slice(&[0u8; 14]);
    std::fs::write(path, &boot).map_err(|source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut cap = pcap::Capture::from_file(path).map_err(|e| pcap_err(path, e))?;
    let packet = cap.next_packet().map_err(|e| pcap_err(path, e))?;
    Ok(*packet.header)
}

impl PcapOut {
    pub fn create(path: &Path) -> Result<Self, SynthError> {
        let header = header_template(path)?;
        let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| pcap_err(path, e))?;
        let save = dead.savefile(path).map_err(|e| pcap_err(path, e))?;
        Ok(PcapOut {
            save,
            header,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, frame: &Frame<'_>) -> Result<(), SynthError> {
        let len = u32::try_from(frame.data.len())
            .map_err(|_| SynthError::Build("frame longer than 4 GiB".into()))?;
        self.header.ts.tv_sec = (frame.ts_micros / 1_000_000) as _;
        self.header.ts.tv_usec = (frame.ts_micros % 1_000_000) as _;
        self.header.caplen = len;
        self.header.len = len;
        self.save.write(&pcap::Packet {
            header: &self.header,
            data: frame.data,
        });
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), SynthError> {
        self.save.flush().map_err(|e| pcap_err(&self.path, e))
    }
}
