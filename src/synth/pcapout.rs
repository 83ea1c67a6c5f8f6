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

impl PcapOut {
    pub fn create(path: &Path) -> Result<Self, SynthError> {
        let header = pcap::PacketHeader {
            ts: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            caplen: 0,
            len: 0,
        };
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
