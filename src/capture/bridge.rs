//! The inline bridge's two ports: libpcap handles on the subscriber-side and upstream-side
//! interfaces, each reading only frames arriving on its interface (PCAP_D_IN, so what we
//! send is never read back), in immediate mode (no buffering delay), non-blocking; and
//! sending through a batched transmit queue per port ([`super::tx`]: one sendmmsg(2) per
//! pass of the bridge loop rather than one send per frame).
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
    tx: super::tx::TxQueue,
    pub iface: String,
    /// Frames received longer than the capture length: they cannot be forwarded whole and
    /// are dropped (counted). Offloads (GRO/LRO) on the port cause this: turn them off.
    pub truncated: u64,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PortStats {
    pub received: u64,
    pub kernel_dropped: u64,
    pub interface_dropped: u64,
    pub sent: u64,
    pub send_errors: u64,
    pub truncated: u64,
    /// sendmmsg(2) calls that carried those frames (sent / batches: frames per call).
    pub send_batches: u64,
}

impl PortStats {
    /// Add another worker's socket on the same port.
    pub fn add(&mut self, o: &PortStats) {
        self.received += o.received;
        self.kernel_dropped += o.kernel_dropped;
        // The interface's own drop count (not per socket): every worker reads the same.
        self.interface_dropped = self.interface_dropped.max(o.interface_dropped);
        self.sent += o.sent;
        self.send_errors += o.send_errors;
        self.truncated += o.truncated;
        self.send_batches += o.send_batches;
    }
}

impl BridgePort {
    /// `qdisc_bypass`: see `inline.qdisc_bypass` of the configuration. With `fanout`, the
    /// port's capture socket joins that group as its next member (one worker of several).
    pub fn open(
        iface: &str,
        buffer_bytes: usize,
        qdisc_bypass: bool,
        fanout: Option<&mut super::fanout::Group>,
    ) -> Result<BridgePort, CaptureError> {
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
        ignore_outgoing(cap.as_raw_fd());
        if let Some(group) = fanout {
            group.join(cap.as_raw_fd()).map_err(err)?;
        }
        let dl = cap.get_datalink();
        if dl.0 != 1 {
            return Err(CaptureError::LinkType {
                path: iface.into(),
                dlt: dl.0,
                name: dl.get_name().unwrap_or_else(|_| "unknown".into()),
            });
        }
        let tx = super::tx::TxQueue::open(iface, qdisc_bypass)?;
        Ok(BridgePort {
            cap,
            tx,
            iface: iface.to_string(),
            truncated: 0,
        })
    }

    /// Hand the next frame that arrived on this port to `f`, read in place from the
    /// capture ring (no copy on the way in), with this port's own transmit queue: the splice
    /// may answer toward where a frame came from. `Ok(false)` when none is waiting.
    pub fn next_with<F>(&mut self, f: F) -> Result<bool, CaptureError>
    where
        F: FnOnce(u64, &[u8], &mut super::tx::TxQueue),
    {
        loop {
            match self.cap.next_packet() {
                Ok(p) if p.header.caplen < p.header.len => self.truncated += 1,
                Ok(p) => {
                    f(super::micros(&p.header.ts), p.data, &mut self.tx);
                    return Ok(true);
                }
                Err(pcap::Error::TimeoutExpired) => return Ok(false),
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

    /// This port's transmit queue: what is queued leaves at the next [`flush`] (or at once
    /// when the queue is full), in order.
    ///
    /// [`flush`]: BridgePort::flush
    pub fn queue(&mut self) -> &mut super::tx::TxQueue {
        &mut self.tx
    }

    /// Send what is queued.
    pub fn flush(&mut self) {
        self.tx.flush();
    }

    /// The last send error, once (for the log).
    pub fn take_error(&mut self) -> Option<String> {
        self.tx.last_error.take()
    }

    pub fn stats(&mut self) -> PortStats {
        let s = self.cap.stats().ok();
        PortStats {
            received: s.as_ref().map_or(0, |s| u64::from(s.received)),
            kernel_dropped: s.as_ref().map_or(0, |s| u64::from(s.dropped)),
            interface_dropped: s.as_ref().map_or(0, |s| u64::from(s.if_dropped)),
            sent: self.tx.sent,
            send_errors: self.tx.send_errors,
            truncated: self.truncated,
            send_batches: self.tx.batches,
        }
    }
}

/// linux/if_packet.h; the libc crate does not name it.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Ask the kernel not to queue the frames sent out of a port to that port's own capture
/// socket (Linux 4.20+). libpcap's inbound-only direction filters them in user space, after
/// the kernel has copied each one into the ring: under load that was as much receive work
/// again as the traffic itself. Other packet sockets (tcpdump) still see them. Refused on
/// older kernels, which then keep working as before.
fn ignore_outgoing(fd: std::os::fd::RawFd) -> bool {
    super::set_packet_option(fd, PACKET_IGNORE_OUTGOING, &(1 as libc::c_int)).is_ok()
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
