//! Is there a route? And the addresses and routes we add, as netlink requests.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

/// Whether the kernel has a route to `ip`: connecting a UDP socket looks the route up and
/// sends nothing.
pub fn has_route(ip: Ipv4Addr) -> bool {
    UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect(SocketAddrV4::new(ip, 9)))
        .is_ok()
}

/// `ip` lies in `net/prefix`.
pub fn in_subnet(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let net = Ipv4Addr::new(192, 0, 2, 10);
        assert!(in_subnet(Ipv4Addr::new(192, 0, 2, 1), net, 24));
        assert!(!in_subnet(Ipv4Addr::new(192, 0, 3, 1), net, 24));
        assert!(in_subnet(
            Ipv4Addr::new(169, 254, 169, 254),
            Ipv4Addr::new(169, 254, 0, 9),
            16
        ));
        assert!(in_subnet(Ipv4Addr::new(8, 8, 8, 8), net, 0));
        assert!(!in_subnet(Ipv4Addr::new(192, 0, 2, 11), net, 32));
    }
}
