//! Batched transmit for the inline bridge (issue 16): the frames a pass of the bridge loop
//! sends out of one port are queued, then handed to the kernel together with one
//! sendmmsg(2) on an AF_PACKET socket bound to that port. One send(2) per frame through
//! libpcap was the bridge's largest cost under load. Optionally with PACKET_QDISC_BYPASS
//! (`inline.qdisc_bypass`): the frame goes straight to the driver, not through the host's
//! qdisc, but then also past every packet tap on the port, so tcpdump there no longer shows
//! what the box sends.
//!
//! The socket is bound with protocol 0, so it receives nothing: reading stays with the
//! port's libpcap handle, which captures inbound frames only and so never sees these.
//!
//! The only `unsafe` here is four system calls and the structs they read, each with
//! its reason; what is above it is a safe queue of byte slices.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::CaptureError;

/// Frames queued before the queue sends them by itself (a pass of the bridge loop reads at
/// most a burst of frames per port, and each may emit a few).
pub const MAX_BATCH: usize = 64;

/// One port's transmit queue.
pub struct TxQueue {
    fd: OwnedFd,
    /// The queued frames back to back, and where each ends.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Frames the kernel took, and frames it refused (lost, as on a congested link; TCP
    /// recovers).
    pub sent: u64,
    pub send_errors: u64,
    pub last_error: Option<String>,
    /// Whether PACKET_QDISC_BYPASS was asked for and accepted (kernels before 3.14 refuse
    /// it; frames then go through the qdisc).
    pub qdisc_bypass: bool,
    /// sendmmsg calls made, to see the batching in the report.
    pub batches: u64,
}

impl TxQueue {
    /// A transmit socket on `iface`. Needs CAP_NET_RAW.
    pub fn open(iface: &str, qdisc_bypass: bool) -> Result<TxQueue, CaptureError> {
        let fail = |msg: String| CaptureError::Open {
            path: iface.into(),
            msg,
        };
        let name =
            CString::new(iface).map_err(|_| fail("interface name with a NUL byte".into()))?;
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(fail("no such network interface".into()));
        }
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(fail(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    "not permitted: needs CAP_NET_RAW (or root)".into()
                }
                _ => format!("cannot open a packet socket: {e}"),
            }));
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let bypass = qdisc_bypass
            && super::set_packet_option(
                fd.as_raw_fd(),
                libc::PACKET_QDISC_BYPASS,
                &(1 as libc::c_int),
            )
            .is_ok();
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to fill in.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = 0; // send only: no frame is delivered to this socket
        addr.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `addr` is a valid sockaddr_ll, passed with its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(fail(format!(
                "cannot bind a packet socket: {}",
                io::Error::last_os_error()
            )));
        }
        Ok(TxQueue {
            fd,
            bytes: Vec::with_capacity(MAX_BATCH * 1600),
            ends: Vec::with_capacity(MAX_BATCH),
            sent: 0,
            send_errors: 0,
            last_error: None,
            qdisc_bypass: bypass,
            batches: 0,
        })
    }

    /// Queue `frame` (a whole Ethernet frame) to go out; sent at the next [`flush`], or now
    /// when the queue is full.
    ///
    /// [`flush`]: TxQueue::flush
    pub fn queue(&mut self, frame: &[u8]) {
        if frame.is_empty() {
            return;
        }
        self.bytes.extend_from_slice(frame);
        self.ends.push(self.bytes.len());
        if self.ends.len() >= MAX_BATCH {
            self.flush();
        }
    }

    /// Frames waiting in the queue.
    pub fn pending(&self) -> usize {
        self.ends.len()
    }

    /// Send every queued frame, in order, with as few sendmmsg(2) calls as the kernel
    /// allows. A frame the kernel refuses is counted and skipped; the rest still go.
    pub fn flush(&mut self) {
        // At most MAX_BATCH: `queue` sends as soon as that many wait.
        let n = self.ends.len();
        if n == 0 {
            return;
        }
        let mut iov: [libc::iovec; MAX_BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_BATCH];
        // SAFETY: mmsghdr is plain data; all-zero (no name, no control data) is valid.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let mut start = 0;
        for (i, &end) in self.ends.iter().enumerate() {
            // The kernel only reads through these pointers (a send).
            iov[i].iov_base = self.bytes[start..end].as_ptr() as *mut libc::c_void;
            iov[i].iov_len = end - start;
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            start = end;
        }
        let mut off = 0;
        while off < n {
            // SAFETY: msgs[off..n] are initialised above; each points at one iovec that
            // points into `self.bytes`, which is not touched until this loop ends.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[off..n].as_mut_ptr(),
                    (n - off) as libc::c_uint,
                    0,
                )
            };
            self.batches += 1;
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // sendmmsg fails only when its first frame fails: that one is lost.
                self.send_errors += 1;
                self.last_error = Some(e.to_string());
                off += 1;
            } else {
                self.sent += r as u64;
                off += r as usize;
            }
        }
        self.bytes.clear();
        self.ends.clear();
    }
}
