//! DHCPv4 client: DISCOVER, OFFER, REQUEST, ACK (RFC 2131), retried with doubling waits until a
//! deadline, over a UDP socket bound to the interface.
//!
//! The socket: before the interface has an address the kernel would drop a reply unicast to
//! the offered address, so every message asks the server to broadcast its answers (the
//! BROADCAST flag, which RFC 2131 4.1 has servers honour); a UDP socket bound to port 68 on
//! the device receives those, and sends from 0.0.0.0 to 255.255.255.255. No raw frames, no
//! checksums to compute.
//!
//! The wire format is hand-written, for the fields we use only. Measured in this binary:
//! dhcproto 0.15 adds 224 KiB (hickory-proto and IDNA tables come with it; it also needs Rust
//! 1.88, above our 1.87), over the 2 MiB budget. dhcp4r 0.2.3 adds 12 KiB but mis-parses a
//! PAD option (the next option is lost: a subnet mask after a PAD vanishes) and reads the
//! BROADCAST flag from the wrong byte; it has had no release since 2022. The decoder below
//! takes options by their length octet, skips PADs, stops at END, and is fuzzed by the tests
//! with truncated and random input. Option overload (52: options in `file`/`sname`) is not
//! followed; servers use it only when options do not fit, which ours do.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const FLAG_BROADCAST: u16 = 0x8000;

pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMETER_LIST: u8 = 55;
const OPT_MAX_SIZE: u8 = 57;
const OPT_CLIENT_ID: u8 = 61;
const OPT_END: u8 = 255;

/// What a server's reply says, as far as we use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub xid: u32,
    pub chaddr: [u8; 6],
    pub yiaddr: Ipv4Addr,
    pub message_type: u8,
    pub server_id: Option<Ipv4Addr>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: Option<u32>,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            xid: 0,
            chaddr: [0; 6],
            yiaddr: Ipv4Addr::UNSPECIFIED,
            message_type: 0,
            server_id: None,
            subnet_mask: None,
            routers: Vec::new(),
            dns: Vec::new(),
            lease_secs: None,
        }
    }
}

/// A lease, ready to configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub lease_secs: Option<u32>,
    pub attempts: u32,
}

/// A client message: DISCOVER, or REQUEST for `(address, server)` taken from an OFFER.
pub fn encode(
    kind: u8,
    xid: u32,
    mac: [u8; 6],
    secs: u16,
    request: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = BOOTREQUEST;
    m[1] = 1; // ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[8..10].copy_from_slice(&secs.to_be_bytes());
    m[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, kind]);
    let mut client_id = vec![OPT_CLIENT_ID, 7, 1];
    client_id.extend_from_slice(&mac);
    m.extend_from_slice(&client_id);
    if let Some((address, server)) = request {
        m.extend_from_slice(&[OPT_REQUESTED_IP, 4]);
        m.extend_from_slice(&address.octets());
        m.extend_from_slice(&[OPT_SERVER_ID, 4]);
        m.extend_from_slice(&server.octets());
    }
    m.extend_from_slice(&[OPT_MAX_SIZE, 2, 0x05, 0xdc]); // 1500
    m.extend_from_slice(&[
        OPT_PARAMETER_LIST,
        4,
        OPT_SUBNET_MASK,
        OPT_ROUTER,
        OPT_DNS,
        OPT_LEASE_TIME,
    ]);
    m.push(OPT_END);
    // BOOTP's minimum message size (RFC 1542): some relays drop shorter ones.
    if m.len() < 300 {
        m.resize(300, OPT_PAD);
    }
    m
}

/// A server reply, or None for anything malformed or not a reply.
pub fn decode(p: &[u8]) -> Option<Reply> {
    if p.len() < 240 || p[0] != BOOTREPLY || p[1] != 1 || p[2] != 6 || p[236..240] != MAGIC {
        return None;
    }
    let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let mut r = Reply {
        xid: u32::from_be_bytes(p[4..8].try_into().ok()?),
        yiaddr: ip(&p[16..20]),
        ..Reply::default()
    };
    r.chaddr.copy_from_slice(&p[28..34]);
    let mut opts = &p[240..];
    loop {
        match opts {
            [] | [OPT_END, ..] => break,
            [OPT_PAD, rest @ ..] => opts = rest,
            [code, len, rest @ ..] if rest.len() >= *len as usize => {
                let (data, rest) = rest.split_at(*len as usize);
                opts = rest;
                let one_ip = (data.len() == 4).then(|| ip(data));
                match *code {
                    OPT_MESSAGE_TYPE if data.len() == 1 => r.message_type = data[0],
                    OPT_SERVER_ID => r.server_id = one_ip.or(r.server_id),
                    OPT_SUBNET_MASK => r.subnet_mask = one_ip.or(r.subnet_mask),
                    OPT_LEASE_TIME if data.len() == 4 => {
                        r.lease_secs = Some(u32::from_be_bytes(data.try_into().ok()?))
                    }
                    // Lists; a repeated option continues the list (RFC 3396).
                    OPT_ROUTER => r.routers.extend(data.chunks_exact(4).map(ip)),
                    OPT_DNS => r.dns.extend(data.chunks_exact(4).map(ip)),
                    _ => {}
                }
            }
            // A length running past the end: the message is damaged.
            _ => return None,
        }
    }
    (r.message_type != 0).then_some(r)
}

/// The prefix length of a contiguous netmask, or None.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let prefix = m.leading_ones();
    (m.checked_shl(prefix).unwrap_or(0) == 0 && prefix > 0).then_some(prefix as u8)
}

/// Turns an ACK into a lease. Without a mask option, the address's class decides (RFC 2131
/// leaves it to the client; the kernel's ipconfig does the same).
pub fn lease_from(ack: &Reply, server: Ipv4Addr, attempts: u32) -> Lease {
    let prefix = ack
        .subnet_mask
        .and_then(mask_to_prefix)
        .unwrap_or(match ack.yiaddr.octets()[0] {
            0..=127 => 8,
            128..=191 => 16,
            _ => 24,
        });
    Lease {
        address: ack.yiaddr,
        prefix,
        gateway: ack.routers.first().copied().filter(|g| !g.is_unspecified()),
        dns: ack
            .dns
            .iter()
            .copied()
            .filter(|d| !d.is_unspecified())
            .collect(),
        server: ack.server_id.unwrap_or(server),
        lease_secs: ack.lease_secs,
        attempts,
    }
}

/// The UDP socket of a DHCP client on one interface: port 68, broadcast allowed, bound to the
/// device so nothing from another interface is read and sends leave through this one.
fn client_socket(interface: &str) -> io::Result<UdpSocket> {
    // SAFETY: socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor, owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let set = |opt: libc::c_int, val: *const libc::c_void, len: usize| {
        // SAFETY: valid fd; val points at len readable bytes.
        if unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, val, len as libc::socklen_t) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    let ptr = &one as *const libc::c_int as *const libc::c_void;
    set(libc::SO_REUSEADDR, ptr, std::mem::size_of::<libc::c_int>())?;
    set(libc::SO_BROADCAST, ptr, std::mem::size_of::<libc::c_int>())?;
    set(
        libc::SO_BINDTODEVICE,
        interface.as_ptr() as *const libc::c_void,
        interface.len(),
    )?;
    let socket = UdpSocket::from(owned);
    // std's bind would make a new socket; bind this one in place.
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 68u16.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: valid fd and a sockaddr_in of the size given.
    if unsafe {
        libc::bind(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Runs the exchange on `interface` until a lease or the deadline. Each attempt is a DISCOVER
/// then a REQUEST for the first OFFER; the wait for each answer starts at 1 s and doubles up
/// to 8 s (RFC 2131 4.1 suggests 4 s doubling; an initramfs wants the first retry sooner).
/// One transaction id for the whole exchange: an OFFER that comes late (dnsmasq pings the
/// address before offering it) still counts during the next attempt's wait.
pub fn obtain(
    interface: &str,
    mac: [u8; 6],
    deadline: Instant,
    progress: &dyn Fn(u32),
) -> Result<Lease, String> {
    let socket = client_socket(interface)
        .map_err(|e| format!("cannot open a DHCP socket on {interface}: {e}"))?;
    let start = Instant::now();
    let mut wait = Duration::from_secs(1);
    let mut attempt = 0;
    let mut xid_bytes = [0u8; 4];
    let _ = getrandom::getrandom(&mut xid_bytes);
    let xid = u32::from_ne_bytes(xid_bytes) ^ std::process::id();
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    while Instant::now() < deadline {
        attempt += 1;
        progress(attempt);
        let secs = start.elapsed().as_secs().min(u16::MAX as u64) as u16;
        let until = (Instant::now() + wait).min(deadline);
        wait = (wait * 2).min(Duration::from_secs(8));
        socket
            .send_to(&encode(DISCOVER, xid, mac, secs, None), broadcast)
            .map_err(|e| format!("cannot send a DHCP DISCOVER on {interface}: {e}"))?;
        let Some(offer) = receive(&socket, xid, mac, &[OFFER], until) else {
            continue;
        };
        let Some(server) = offer.server_id else {
            continue;
        };
        socket
            .send_to(
                &encode(REQUEST, xid, mac, secs, Some((offer.yiaddr, server))),
                broadcast,
            )
            .map_err(|e| format!("cannot send a DHCP REQUEST on {interface}: {e}"))?;
        let until = (Instant::now() + wait).min(deadline);
        match receive(&socket, xid, mac, &[ACK, NAK], until) {
            Some(ack) if ack.message_type == ACK && !ack.yiaddr.is_unspecified() => {
                return Ok(lease_from(&ack, server, attempt))
            }
            _ => continue, // NAK or silence: start over
        }
    }
    Err(format!(
        "no DHCP lease on {interface} after {attempt} attempt{} in {:.1} s",
        if attempt == 1 { "" } else { "s" },
        start.elapsed().as_secs_f64()
    ))
}

/// The next reply for our transaction and hardware address of one of `kinds`, until `until`.
fn receive(
    socket: &UdpSocket,
    xid: u32,
    mac: [u8; 6],
    kinds: &[u8],
    until: Instant,
) -> Option<Reply> {
    let mut buf = [0u8; 1500];
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        socket.set_read_timeout(Some(left)).ok()?;
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => match decode(&buf[..n]) {
                Some(r) if r.xid == xid && r.chaddr == mac && kinds.contains(&r.message_type) => {
                    return Some(r)
                }
                _ => continue,
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None, // timed out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    /// A server reply as dnsmasq builds one, with `options` after the cookie.
    fn reply(xid: u32, yiaddr: [u8; 4], options: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 236];
        p[0] = BOOTREPLY;
        p[1] = 1;
        p[2] = 6;
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        p[10] = 0x80;
        p[16..20].copy_from_slice(&yiaddr);
        p[28..34].copy_from_slice(&MAC);
        p.extend_from_slice(&MAGIC);
        p.extend_from_slice(options);
        p
    }

    #[test]
    fn discover_has_the_fields_a_server_needs() {
        let m = encode(DISCOVER, 0xdeadbeef, MAC, 3, None);
        assert_eq!(m.len(), 300);
        assert_eq!(&m[..4], &[1, 1, 6, 0]);
        assert_eq!(&m[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&m[8..10], &[0, 3]);
        assert_eq!(&m[10..12], &[0x80, 0], "broadcast flag");
        assert_eq!(&m[28..34], &MAC);
        assert_eq!(&m[236..240], &MAGIC);
        assert_eq!(&m[240..243], &[53, 1, 1]);
        assert_eq!(&m[243..252], &[61, 7, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert!(
            !m[240..].windows(2).any(|w| w == [50, 4]),
            "no requested address"
        );
    }

    #[test]
    fn request_names_the_offer_and_its_server() {
        let m = encode(
            REQUEST,
            1,
            MAC,
            0,
            Some((Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 1))),
        );
        let opts = &m[240..];
        assert_eq!(&opts[..3], &[53, 1, 3]);
        let find = |code: u8| {
            opts.windows(6)
                .find(|w| w[0] == code && w[1] == 4)
                .map(|w| w[2..6].to_vec())
        };
        assert_eq!(find(50), Some(vec![192, 0, 2, 10]));
        assert_eq!(find(54), Some(vec![192, 0, 2, 1]));
    }

    #[test]
    fn decodes_an_ack_with_pads_between_options() {
        let p = reply(
            7,
            [192, 0, 2, 10],
            &[
                53, 1, 5, 0, 0, 54, 4, 192, 0, 2, 1, 0, 1, 4, 255, 255, 255, 0, 3, 8, 192, 0, 2, 1,
                192, 0, 2, 2, 6, 4, 192, 0, 2, 53, 51, 4, 0, 0, 14, 16, 255, 0, 0, 0,
            ],
        );
        let r = decode(&p).unwrap();
        assert_eq!(r.message_type, ACK);
        assert_eq!(r.xid, 7);
        assert_eq!(r.chaddr, MAC);
        assert_eq!(r.yiaddr, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(r.server_id, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(r.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(
            r.routers,
            vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
        assert_eq!(r.dns, vec![Ipv4Addr::new(192, 0, 2, 53)]);
        assert_eq!(r.lease_secs, Some(3600));
        let lease = lease_from(&r, Ipv4Addr::UNSPECIFIED, 1);
        assert_eq!(
            (lease.prefix, lease.gateway),
            (24, Some(Ipv4Addr::new(192, 0, 2, 1)))
        );
    }

    #[test]
    fn rejects_what_is_not_a_whole_reply() {
        let good = reply(1, [10, 0, 0, 2], &[53, 1, 2, 255]);
        assert!(decode(&good).is_some());
        // a request, a wrong cookie, no message type, an option running past the end
        let mut request = good.clone();
        request[0] = BOOTREQUEST;
        assert!(decode(&request).is_none());
        let mut cookie = good.clone();
        cookie[236] = 0;
        assert!(decode(&cookie).is_none());
        assert!(decode(&reply(1, [10, 0, 0, 2], &[1, 4, 255, 255, 255, 0, 255])).is_none());
        assert!(decode(&reply(1, [10, 0, 0, 2], &[53, 1, 2, 6, 200, 1, 2])).is_none());
        // no END is fine when the options end with the datagram
        assert!(decode(&reply(1, [10, 0, 0, 2], &[53, 1, 2])).is_some());
        for n in 0..good.len() {
            let _ = decode(&good[..n]);
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x2545f491u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..2000 {
            let mut p = reply(1, [10, 0, 0, 2], &[]);
            let extra = (next() % 80) as usize;
            p.extend((0..extra).map(|_| next() as u8));
            let _ = decode(&p);
        }
    }

    #[test]
    fn masks_and_prefixes() {
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 0, 255)), None);
        assert_eq!(mask_to_prefix(Ipv4Addr::new(0, 0, 0, 0)), None);
        let r = Reply {
            yiaddr: Ipv4Addr::new(10, 1, 2, 3),
            ..Reply::default()
        };
        assert_eq!(lease_from(&r, Ipv4Addr::new(10, 0, 0, 1), 2).prefix, 8);
    }
}
