//! Flow fanout across the inline bridge's workers (issue 16): each port's capture sockets,
//! one per worker, form a kernel `PACKET_FANOUT` group, and a classic BPF program picks the
//! socket for every arriving frame from the unordered pair of IP addresses. So both
//! directions of a connection (TCP or uTP), from either port, and every fragment of a
//! datagram reach the same worker, which holds that connection's splice and engine state.
//! The design and its alternatives: docs/design.md, "Design: fanout across cores".
//!
//! Why a BPF program rather than `PACKET_FANOUT_HASH`: the kernel's flow hash is symmetric
//! only when software computes it; a NIC's RSS hash is not, and it covers ports, which IP
//! fragments lack. [`worker_of`] is the same function in Rust, for tests and reports.
//!
//! The `unsafe` here is reading the group back (getsockopt), commented; options are set
//! through `capture::set_packet_option`.
#![allow(unsafe_code)]

use std::net::IpAddr;
use std::os::fd::RawFd;

/// linux/if_packet.h (the libc crate does not name all of them).
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_DATA: libc::c_int = 22;
const PACKET_FANOUT_CBPF: u32 = 6;
/// The kernel picks a group id no one uses (Linux 4.2+); read back for the other members.
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
/// What the box sends out of a port is not fed back into its group (Linux 6.10+). Without
/// it libpcap still drops them (inbound only), after the kernel copied them into a ring.
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;

/// linux/filter.h: ancillary and network-header-relative loads.
const SKF_AD_OFF: u32 = (-0x1000i32) as u32;
const SKF_AD_PROTOCOL: u32 = 0;
const SKF_NET_OFF: u32 = (-0x100000i32) as u32;

// Classic BPF opcodes (linux/bpf_common.h; BPF_LD and BPF_W are 0).
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const LD_H_ABS: u16 = 0x08 | 0x20; // BPF_LD | BPF_H | BPF_ABS
const LD_MEM: u16 = 0x60; // BPF_LD | BPF_MEM
const ST: u16 = 0x02;
const TAX: u16 = 0x07; // BPF_MISC | BPF_TAX
const XOR_X: u16 = 0x04 | 0xa0 | 0x08; // BPF_ALU | BPF_XOR | BPF_X
const RSH_K: u16 = 0x04 | 0x70; // BPF_ALU | BPF_RSH | BPF_K
const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const JA: u16 = 0x05;
const RET_A: u16 = 0x06 | 0x10; // BPF_RET | BPF_A
const RET_K: u16 = 0x06;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The program: for IPv4 the XOR of the two addresses, for IPv6 the XOR of their eight
/// 32-bit words, folded once (high half into low), for anything else 0. The kernel takes
/// the result modulo the group's size. Loads are relative to the network header and the
/// protocol is the kernel's (`skb->protocol`), so a VLAN tag the kernel already took off
/// changes nothing; a second (QinQ) tag makes the frame "anything else": worker 0, the
/// same for both directions, so still correct.
pub fn program() -> Vec<libc::sock_filter> {
    let net = |off: u32| op(LD_W_ABS, 0, 0, SKF_NET_OFF.wrapping_add(off));
    let xor = || op(XOR_X, 0, 0, 0);
    let tax = || op(TAX, 0, 0, 0);
    let mut p = vec![
        /* 0 */ op(LD_H_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PROTOCOL),
        /* 1 */ op(JEQ_K, 0, 5, 0x0800), // IPv4 → 2, else 7
        /* 2 */ net(12),
        /* 3 */ tax(),
        /* 4 */ net(16),
        /* 5 */ xor(),
    ];
    // 6: on to the fold at 30, past the IPv6 part.
    p.push(op(JA, 0, 0, 30 - 7));
    // 7: IPv6 → 8, else the final `ret 0` at 36.
    p.push(op(JEQ_K, 0, 36 - 8, 0x86dd));
    // 8..29: A = the XOR of the eight words (X holds the running value).
    p.push(net(8));
    p.push(tax());
    for w in 1..8u32 {
        p.push(net(8 + 4 * w));
        p.push(xor());
        if w < 7 {
            p.push(tax());
        }
    }
    // 30: A ^= A >> 16, through scratch memory.
    debug_assert_eq!(p.len(), 30);
    p.extend([
        op(ST, 0, 0, 0),
        op(RSH_K, 0, 0, 16),
        tax(),
        op(LD_MEM, 0, 0, 0),
        xor(),
        op(RET_A, 0, 0, 0),
        op(RET_K, 0, 0, 0),
    ]);
    p
}

/// The worker (of `workers`) the kernel hands a frame between `a` and `b` to: what
/// [`program`] computes, modulo the group's size.
pub fn worker_of(a: IpAddr, b: IpAddr, workers: usize) -> usize {
    fn words(ip: IpAddr) -> u32 {
        match ip {
            IpAddr::V4(v) => u32::from(v),
            IpAddr::V6(v) => v
                .octets()
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .fold(0, |x, w| x ^ w),
        }
    }
    let x = match (a, b) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => words(a) ^ words(b),
        _ => 0,
    };
    ((x ^ (x >> 16)) as usize) % workers.max(1)
}

/// One port's fanout group, as its members join it in worker order.
pub struct Group {
    /// The kernel's id for the group, once the first member has made it.
    id: Option<u16>,
    /// Whether the kernel took the ignore-outgoing flag (older kernels refuse it).
    pub ignore_outgoing: bool,
}

impl Default for Group {
    fn default() -> Self {
        Group::new()
    }
}

impl Group {
    pub fn new() -> Group {
        Group {
            id: None,
            ignore_outgoing: true,
        }
    }

    /// Add the bound packet socket `fd` as the group's next member: the first creates the
    /// group (with a kernel-chosen id) and installs the program.
    pub fn join(&mut self, fd: RawFd) -> Result<(), String> {
        let mut flags = PACKET_FANOUT_CBPF;
        if self.ignore_outgoing {
            flags |= PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
        }
        match self.id {
            None => {
                let first = super::set_packet_option(
                    fd,
                    PACKET_FANOUT,
                    &((flags | PACKET_FANOUT_FLAG_UNIQUEID) << 16),
                );
                if first.is_err() && self.ignore_outgoing {
                    // A kernel before 6.10: the same group without that flag.
                    self.ignore_outgoing = false;
                    return self.join(fd);
                }
                first.map_err(|e| format!("cannot join a fanout group: {e}"))?;
                let val = getsockopt_u32(fd, PACKET_FANOUT)
                    .map_err(|e| format!("cannot read the fanout group: {e}"))?;
                self.id = Some((val & 0xffff) as u16);
                set_program(fd).map_err(|e| format!("cannot set the fanout program: {e}"))
            }
            Some(id) => {
                super::set_packet_option(fd, PACKET_FANOUT, &(u32::from(id) | (flags << 16)))
                    .map_err(|e| format!("cannot join fanout group {id}: {e}"))
            }
        }
    }
}

fn getsockopt_u32(fd: RawFd, name: libc::c_int) -> std::io::Result<u32> {
    let mut val: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: `val` and `len` live through the call; the kernel writes at most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            name,
            (&mut val as *mut u32).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(val)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_program(fd: RawFd) -> std::io::Result<()> {
    let mut prog = program();
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_mut_ptr(),
    };
    // `fprog` points at `prog`, which outlives the call; the kernel copies and checks it.
    super::set_packet_option(fd, PACKET_FANOUT_DATA, &fprog)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The program's jumps land where the comments say: the IPv4 branch and the IPv6 miss.
    #[test]
    fn program_layout() {
        let p = program();
        assert_eq!(p.len(), 37);
        // IPv4 test: false branch to 7 (the IPv6 test).
        assert_eq!(1 + 1 + p[1].jf as usize, 7);
        assert_eq!(p[7].k, 0x86dd);
        // IPv4's jump lands on the fold's first instruction.
        assert_eq!(6 + 1 + p[6].k as usize, 30);
        assert_eq!(p[30].code, ST);
        // IPv6 miss lands on `ret 0`.
        assert_eq!(7 + 1 + p[7].jf as usize, 36);
        assert_eq!((p[36].code, p[36].k), (RET_K, 0));
    }

    #[test]
    fn both_directions_one_worker() {
        let a: IpAddr = "198.18.0.2".parse().unwrap();
        let b: IpAddr = "198.19.3.7".parse().unwrap();
        for n in 1..9 {
            assert_eq!(worker_of(a, b, n), worker_of(b, a, n));
        }
        // 198.18.0.2 ^ 198.19.3.7 = 0x0001_0305; folded: 0x0001_0304; even.
        assert_eq!(worker_of(a, b, 2), 0);
        let c: IpAddr = "198.18.0.3".parse().unwrap();
        assert_eq!(worker_of(c, b, 2), 1);
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2:3".parse().unwrap();
        assert_eq!(worker_of(v6a, v6b, 4), worker_of(v6b, v6a, 4));
        assert_eq!(worker_of(v6a, v6b, 4), (0x0002_0002 ^ 0x0002) % 4);
    }
}
