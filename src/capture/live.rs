//! Live capture from an interface (tap/SPAN port): promiscuous, a large kernel buffer so
//! bursts do not drop, an optional BPF filter. Never transmits.

use super::{CaptureError, Frame};
use crate::wire::link::LinkType;

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub iface: String,
    pub promiscuous: bool,
    /// Kernel ring buffer; libpcap's default (2 MiB) drops on a busy link.
    pub buffer_bytes: usize,
    pub snaplen: u32,
    /// BPF expression, e.g. "tcp or udp".
    pub filter: Option<String>,
    /// How long a read waits before returning control (to check signals, publish metrics).
    pub timeout_ms: u32,
}

pub struct LiveCapture {
    cap: pcap::Capture<pcap::Active>,
    pub link: LinkType,
    iface: String,
}

/// Drop counters since the capture opened, as libpcap reports them.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveStats {
    pub received: u64,
    pub kernel_dropped: u64,
    pub interface_dropped: u64,
}

impl LiveCapture {
    pub fn open(o: &LiveOptions) -> Result<LiveCapture, CaptureError> {
        let err = |msg: String| CaptureError::Open {
            path: o.iface.clone().into(),
            msg,
        };
        let clamp = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let failed = |e: pcap::Error| err(super::open_failure(&o.iface, &e, "CAP_NET_RAW"));
        let mut cap = pcap::Capture::from_device(o.iface.as_str())
            .map_err(failed)?
            .promisc(o.promiscuous)
            .snaplen(clamp(o.snaplen as usize))
            .buffer_size(clamp(o.buffer_bytes))
            .timeout(clamp(o.timeout_ms as usize).max(1))
            .open()
            .map_err(failed)?
            // Non-blocking: on Linux a blocking read may ignore its timeout while the link
            // is idle, and then a stop or reload request would wait for the next packet.
            .setnonblock()
            .map_err(|e| err(e.to_string()))?;
        if let Some(f) = &o.filter {
            cap.filter(f, true)
                .map_err(|e| err(format!("bad filter '{f}': {e}")))?;
        }
        let dl = cap.get_datalink();
        let link = LinkType::from_dlt(dl.0).ok_or_else(|| CaptureError::LinkType {
            path: o.iface.clone().into(),
            dlt: dl.0,
            name: dl.get_name().unwrap_or_else(|_| "unknown".into()),
        })?;
        Ok(LiveCapture {
            cap,
            link,
            iface: o.iface.clone(),
        })
    }

    /// The next frame, or None when nothing is waiting (the caller idles briefly).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self.cap.next_packet() {
            Ok(p) => Ok(Some(Frame {
                ts_micros: super::micros(&p.header.ts),
                data: p.data,
                orig_len: p.header.len,
            })),
            Err(pcap::Error::TimeoutExpired) => Ok(None),
            Err(e) => Err(CaptureError::Read {
                path: self.iface.clone().into(),
                frames: 0,
                msg: e.to_string(),
            }),
        }
    }

    pub fn stats(&mut self) -> LiveStats {
        self.cap
            .stats()
            .map_or(LiveStats::default(), |s| LiveStats {
                received: s.received as u64,
                kernel_dropped: s.dropped as u64,
                interface_dropped: s.if_dropped as u64,
            })
    }
}
