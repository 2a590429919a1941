//! rtnetlink requests, each acknowledged: set a link up or down, add or remove an IPv4 address
//! or route. Nothing is read back but the kernel's acknowledgement.
//!
//! Hand-written, on purpose. netlink-packet-route 0.34 (+ netlink-packet-core, netlink-sys) was
//! measured in this binary: its generic message (de)serialisation adds 512 KiB, and even used
//! per message (our own header, its `Emitable` bodies, link header only) it adds 44 KiB, over
//! half of what was left of the 2 MiB budget, for four fixed-layout requests of a few dozen
//! bytes. The layouts below are the kernel's uapi structs (linux/rtnetlink.h, if_link.h,
//! if_addr.h), and the tests pin their bytes.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const IFF_UP: u32 = 0x1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
/// Routes we add are marked "boot" (what the kernel's own ip= autoconfiguration uses).
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_HOST: u8 = 254;
const RTN_UNICAST: u8 = 1;

/// An IPv4 route in the main table: `dst/prefix [via gateway] dev ifindex`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub ifindex: u32,
}

/// An IPv4 address on an interface. A loopback address has host scope and no broadcast, as
/// the kernel's own 127.0.0.1/8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub loopback: bool,
}

pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// What an acknowledged request came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// EEXIST on create, ESRCH/EADDRNOTAVAIL/ENODEV on delete: someone else's, or already gone.
    AlreadyThere,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The kernel answers at once; a bound wait anyway.
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: valid fd, option value of the right type and size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(Netlink { fd, seq: 0 })
    }

    pub fn set_link_up(&mut self, ifindex: u32, up: bool) -> io::Result<Outcome> {
        self.request(RTM_NEWLINK, 0, &link_body(ifindex, up))
    }

    pub fn add_address(&mut self, a: &Address) -> io::Result<Outcome> {
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &address_body(a))
    }

    pub fn del_address(&mut self, a: &Address) -> io::Result<Outcome> {
        self.request(RTM_DELADDR, 0, &address_body(a))
    }

    pub fn add_route(&mut self, r: &Route) -> io::Result<Outcome> {
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &route_body(r))
    }

    pub fn del_route(&mut self, r: &Route) -> io::Result<Outcome> {
        self.request(RTM_DELROUTE, 0, &route_body(r))
    }

    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<Outcome> {
        self.seq = self.seq.wrapping_add(1);
        let msg = message(kind, NLM_F_REQUEST | NLM_F_ACK | flags, self.seq, body);
        // SAFETY: valid fd and buffer; the kernel is the default destination of an unbound
        // (auto-bound on send) netlink socket.
        let sent = unsafe {
            let mut dst: libc::sockaddr_nl = std::mem::zeroed();
            dst.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &dst as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: valid fd, buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(errno) = ack_for(&buf[..n as usize], self.seq) {
                return match errno {
                    0 => Ok(Outcome::Done),
                    libc::EEXIST if kind != RTM_DELADDR && kind != RTM_DELROUTE => {
                        Ok(Outcome::AlreadyThere)
                    }
                    libc::ESRCH | libc::EADDRNOTAVAIL | libc::ENODEV
                        if kind == RTM_DELADDR || kind == RTM_DELROUTE =>
                    {
                        Ok(Outcome::AlreadyThere)
                    }
                    e => Err(io::Error::from_raw_os_error(e)),
                };
            }
        }
    }
}

/// nlmsghdr (16 bytes: len, type, flags, seq, pid) + body.
fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + body.len());
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// struct ifinfomsg: family, pad, type, index, flags, change.
fn link_body(ifindex: u32, up: bool) -> Vec<u8> {
    let mut b = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    b.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    b.extend_from_slice(&(if up { IFF_UP } else { 0 }).to_ne_bytes());
    b.extend_from_slice(&IFF_UP.to_ne_bytes());
    b
}

/// struct ifaddrmsg (family, prefixlen, flags, scope, index) + IFA_LOCAL, IFA_ADDRESS,
/// IFA_BROADCAST, as `ip addr add A/P brd + dev D` sends them.
fn address_body(a: &Address) -> Vec<u8> {
    let scope = if a.loopback {
        RT_SCOPE_HOST
    } else {
        RT_SCOPE_UNIVERSE
    };
    let mut b = vec![libc::AF_INET as u8, a.prefix, 0, scope];
    b.extend_from_slice(&a.ifindex.to_ne_bytes());
    attr(&mut b, IFA_LOCAL, &a.ip.octets());
    attr(&mut b, IFA_ADDRESS, &a.ip.octets());
    if a.prefix < 31 && !a.loopback {
        let host = u32::MAX >> a.prefix;
        attr(
            &mut b,
            IFA_BROADCAST,
            &Ipv4Addr::from(u32::from(a.ip) | host).octets(),
        );
    }
    b
}

/// struct rtmsg (family, dst_len, src_len, tos, table, protocol, scope, type, flags) +
/// RTA_DST, RTA_GATEWAY, RTA_OIF. A route without a gateway is on-link (scope link).
fn route_body(r: &Route) -> Vec<u8> {
    let scope = if r.gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    let mut b = vec![
        libc::AF_INET as u8,
        r.prefix,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        scope,
        RTN_UNICAST,
    ];
    b.extend_from_slice(&0u32.to_ne_bytes());
    if r.prefix > 0 {
        attr(&mut b, RTA_DST, &r.dst.octets());
    }
    if let Some(g) = r.gateway {
        attr(&mut b, RTA_GATEWAY, &g.octets());
    }
    attr(&mut b, RTA_OIF, &r.ifindex.to_ne_bytes());
    b
}

/// struct rtattr (len, type) + payload, padded to 4 bytes.
fn attr(b: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    b.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(payload);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

/// The errno of the NLMSG_ERROR acknowledging `seq` in a datagram, if it holds one (0 = ok).
pub fn ack_for(mut datagram: &[u8], seq: u32) -> Option<i32> {
    while datagram.len() >= 16 {
        let len = u32::from_ne_bytes(datagram[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(datagram[4..6].try_into().ok()?);
        let got_seq = u32::from_ne_bytes(datagram[8..12].try_into().ok()?);
        if len < 16 || len > datagram.len() {
            return None;
        }
        if kind == NLMSG_ERROR && got_seq == seq && len >= 20 {
            let err = i32::from_ne_bytes(datagram[16..20].try_into().ok()?);
            // The kernel sends -errno; i32::MIN has no negation (an overflow panic in debug
            // builds) and is no errno: it stays an error, as i32::MAX.
            return Some(err.saturating_neg());
        }
        // The next message starts at the 4-byte aligned length (NLMSG_ALIGN); a last one whose
        // padding is missing ends the datagram.
        datagram = datagram.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_up_is_an_ifinfomsg_with_iff_up_in_flags_and_change() {
        let m = message(
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK,
            7,
            &link_body(3, true),
        );
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 16);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 5);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 3);
        assert_eq!(u32::from_ne_bytes(m[24..28].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(m[28..32].try_into().unwrap()), 1);
        let down = link_body(3, false);
        assert_eq!(u32::from_ne_bytes(down[8..12].try_into().unwrap()), 0);
    }

    #[test]
    fn address_carries_local_address_and_broadcast() {
        let a = |ip: [u8; 4], prefix, loopback| Address {
            ifindex: 2,
            ip: ip.into(),
            prefix,
            loopback,
        };
        let b = address_body(&a([192, 0, 2, 10], 24, false));
        assert_eq!(&b[..8], &[2, 24, 0, 0, 2, 0, 0, 0][..]);
        // three 8-byte attributes
        assert_eq!(b.len(), 8 + 3 * 8);
        assert_eq!(&b[8..16], &[8, 0, 2, 0, 192, 0, 2, 10][..]);
        assert_eq!(&b[16..24], &[8, 0, 1, 0, 192, 0, 2, 10][..]);
        assert_eq!(&b[24..32], &[8, 0, 4, 0, 192, 0, 2, 255][..]);
        // /31 and /32 have no broadcast address
        assert_eq!(address_body(&a([10, 0, 0, 1], 32, false)).len(), 24);
        // loopback: host scope, no broadcast
        let lo = address_body(&a([127, 0, 0, 1], 8, true));
        assert_eq!((lo[3], lo.len()), (254, 24));
    }

    #[test]
    fn routes_default_via_gateway_and_on_link_host() {
        let default = route_body(&Route {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ifindex: 5,
        });
        assert_eq!(&default[..8], &[2, 0, 0, 0, 254, 3, 0, 1][..]);
        assert_eq!(&default[12..20], &[8, 0, 5, 0, 192, 0, 2, 1][..]);
        assert_eq!(&default[20..28], &[8, 0, 4, 0, 5, 0, 0, 0][..]);
        assert_eq!(default.len(), 28);
        let host = route_body(&Route {
            dst: Ipv4Addr::new(169, 254, 169, 254),
            prefix: 32,
            gateway: None,
            ifindex: 5,
        });
        assert_eq!(host[6], RT_SCOPE_LINK);
        assert_eq!(&host[12..20], &[8, 0, 1, 0, 169, 254, 169, 254][..]);
    }

    #[test]
    fn acks_are_matched_by_sequence_number() {
        let mut ok = message(NLMSG_ERROR, 0, 4, &0i32.to_ne_bytes());
        ok.extend_from_slice(&[0; 16]); // the echoed request header
        assert_eq!(ack_for(&ok, 4), Some(0));
        assert_eq!(ack_for(&ok, 5), None);
        let err = message(NLMSG_ERROR, 0, 9, &(-libc::EEXIST).to_ne_bytes());
        let mut two = message(RTM_NEWLINK, 0, 9, &[0; 16]);
        two.extend_from_slice(&err);
        assert_eq!(ack_for(&two, 9), Some(libc::EEXIST));
        assert_eq!(ack_for(&[1, 2, 3], 1), None);
        assert_eq!(ack_for(&[255; 40], 1), None);
    }

    #[test]
    fn a_last_message_without_its_padding_ends_the_datagram() {
        // Found by the fuzzer (fuzz/regressions/netlink/): a 19-byte message that fills the
        // datagram; stepping over it to the 20-byte boundary ran past the end.
        let found = [
            0x13, 0, 0, 0, 0x20, 0, 0, 0x80, 0x04, 0x9d, 0, 0xcf, 0xcf, 0xcf, 0xcf, 0, 0, 0, 0,
        ];
        assert_eq!(ack_for(&found, 1), None);
        let mut odd = message(RTM_NEWLINK, 0, 3, &[0; 3]);
        assert_eq!(ack_for(&odd, 3), None);
        // The same message before an acknowledgement, properly padded: the ack is found.
        odd.push(0);
        odd.extend_from_slice(&message(NLMSG_ERROR, 0, 3, &0i32.to_ne_bytes()));
        assert_eq!(ack_for(&odd, 3), Some(0));
    }

    #[test]
    fn an_error_field_that_is_no_negated_errno_is_still_an_error() {
        // Found by the fuzzer (fuzz/regressions/netlink/errno-i32-min): -i32::MIN overflowed.
        let ack = message(NLMSG_ERROR, 0, 8, &i32::MIN.to_ne_bytes());
        assert_eq!(ack_for(&ack, 8), Some(i32::MAX));
    }
}
