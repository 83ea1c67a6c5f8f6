//! The inline bridge's two ports: libpcap handles on the subscriber-side and upstream-side
//! interfaces, each reading only frames arriving on its interface (PCAP_D_IN, so what we
//! send is never read back), in immediate mode (no buffering delay), non-blocking, and
//! sending with `pcap_sendpacket` (a packet socket write: the frame goes out as given).
//!
//! Why libpcap and not AF_PACKET through pnet: both end in the same kernel packet socket
//! with a memory-mapped receive ring; libpcap is already the capture layer of tap and
//! replay, and gives kernel drop counters, so a second crate for the same job buys nothing.
//! What the bridge costs against the kernel's own bridge: `benches/inline_bench.sh`.

use std::os::fd::AsRawFd;

use super::CaptureError;

/// One bridge port.
pub struct BridgePort {
    cap: pcap::Capture<pcap::Active>,
    pub iface: String,
    /// Frames sent out of this port, and sends that failed (the frame is lost, as on a
    /// congested link; TCP recovers).
    pub sent: u64,
    pub send_errors: u64,
    /// Frames received longer than the capture length: they cannot be forwarded whole and
    /// are dropped (counted). Offloads (GRO/LRO) on the port cause this: turn them off.
    pub truncated: u64,
    last_error: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PortStats {
    pub received: u64,
    pub kernel_dropped: u64,
    pub interface_dropped: u64,
    pub sent: u64,
    pub send_errors: u64,
    pub truncated: u64,
}

impl BridgePort {
    pub fn open(iface: &str, buffer_bytes: usize) -> Result<BridgePort, CaptureError> {
        let err = |msg: String| CaptureError::Open {
            path: iface.into(),
            msg,
        };
        let failed = |e: pcap::Error| {
            err(super::open_failure(
                iface,
                &e,
                "CAP_NET_RAW and CAP_NET_ADMIN",
            ))
        };
        let cap = pcap::Capture::from_device(iface)
            .map_err(failed)?
            .promisc(true)
            .snaplen(65_535)
            .buffer_size(i32::try_from(buffer_bytes).unwrap_or(i32::MAX))
            .immediate_mode(true)
            .open()
            .map_err(failed)?;
        cap.direction(pcap::Direction::In)
            .map_err(|e| err(format!("cannot capture inbound only: {e}")))?;
        let cap = cap.setnonblock().map_err(|e| err(e.to_string()))?;
        let dl = cap.get_datalink();
        if dl.0 != 1 {
            return Err(CaptureError::LinkType {
                path: iface.into(),
                dlt: dl.0,
                name: dl.get_name().unwrap_or_else(|_| "unknown".into()),
            });
        }
        Ok(BridgePort {
            cap,
            iface: iface.to_string(),
            sent: 0,
            send_errors: 0,
            truncated: 0,
            last_error: None,
        })
    }

    /// Copy the next frame that arrived on this port into `buf`; its timestamp, or None
    /// when none is waiting.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>, CaptureError> {
        loop {
            match self.cap.next_packet() {
                Ok(p) if p.header.caplen < p.header.len => self.truncated += 1,
                Ok(p) => {
                    buf.clear();
                    buf.extend_from_slice(p.data);
                    return Ok(Some(super::micros(&p.header.ts)));
                }
                Err(pcap::Error::TimeoutExpired) => return Ok(None),
                Err(e) => {
                    return Err(CaptureError::Read {
                        path: self.iface.clone().into(),
                        frames: 0,
                        msg: e.to_string(),
                    })
                }
            }
        }
    }

    pub fn send(&mut self, frame: &[u8]) {
        match self.cap.sendpacket(frame) {
            Ok(()) => self.sent += 1,
            Err(e) => {
                self.send_errors += 1;
                self.last_error = Some(e.to_string());
            }
        }
    }

    /// The last send error, once (for the log).
    pub fn take_error(&mut self) -> Option<String> {
        self.last_error.take()
    }

    pub fn stats(&mut self) -> PortStats {
        let s = self.cap.stats().ok();
        PortStats {
            received: s.as_ref().map_or(0, |s| u64::from(s.received)),
            kernel_dropped: s.as_ref().map_or(0, |s| u64::from(s.dropped)),
            interface_dropped: s.as_ref().map_or(0, |s| u64::from(s.if_dropped)),
            sent: self.sent,
            send_errors: self.send_errors,
            truncated: self.truncated,
        }
    }
}

/// Wait until either port has something to read, at most `timeout_ms`.
#[allow(unsafe_code)]
pub fn wait_readable(a: &BridgePort, b: &BridgePort, timeout_ms: i32) {
    let mut fds = [
        libc::pollfd {
            fd: a.cap.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b.cap.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the call; poll only
    // writes their `revents`. An error (EINTR on a signal) just ends the wait early.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms);
    }
}
