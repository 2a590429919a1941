//! The kernel's own network options, as initramfs frameworks read them: `ip=` (kernel
//! ipconfig and dracut forms) and `BOOTIF=` (PXE: the MAC address the machine booted from).

use crate::config::StaticAddress;
use std::net::Ipv4Addr;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KernelNet {
    pub interface: Option<String>,
    pub bootif: Option<[u8; 6]>,
    pub address: Option<StaticAddress>,
    pub warnings: Vec<String>,
}

pub fn parse(cmdline: &str) -> KernelNet {
    let mut k = KernelNet::default();
    let mut seen_ip = false;
    for word in cmdline.split_whitespace() {
        if let Some(v) = word.strip_prefix("BOOTIF=") {
            // 01-52-54-00-12-34-56: the leading 01 is the hardware type (Ethernet).
            let mac = v.strip_prefix("01-").unwrap_or(v);
            match super::link::parse_mac(mac) {
                Some(m) => k.bootif = Some(m),
                None => k
                    .warnings
                    .push(format!("ignoring `{word}`: not a MAC address")),
            }
        } else if let Some(v) = word.strip_prefix("ip=") {
            // Several ip= name several interfaces; the first is ours.
            if !seen_ip {
                seen_ip = true;
                parse_ip(v, word, &mut k);
            }
        }
    }
    k
}

fn parse_ip(v: &str, word: &str, k: &mut KernelNet) {
    let f: Vec<&str> = v.split(':').collect();
    let dhcp = |s: &str| matches!(s, "dhcp" | "on" | "any" | "both" | "bootp" | "rarp");
    match f.as_slice() {
        [mode] if dhcp(mode) || matches!(*mode, "off" | "none") => {}
        // dracut: ip=<interface>:dhcp
        [dev, mode] if dhcp(mode) => k.interface = Some(dev.to_string()),
        // kernel: ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>[:<dns0>[:<dns1>]]
        [client, _server, gw, mask, _host, rest @ ..] => {
            let dev = rest.first().copied().unwrap_or("");
            let autoconf = rest.get(1).copied().unwrap_or("off");
            if !dev.is_empty() {
                k.interface = Some(dev.to_string());
            }
            if dhcp(autoconf) || client.is_empty() {
                return;
            }
            let ip = |s: &str| s.parse::<Ipv4Addr>().ok();
            let prefix = match ip(mask) {
                Some(m) => super::dhcp::mask_to_prefix(m),
                None => mask.parse::<u8>().ok().filter(|p| (1..=32).contains(p)),
            };
            match (ip(client), prefix) {
                (Some(address), Some(prefix)) => {
                    k.address = Some(StaticAddress {
                        address,
                        prefix,
                        gateway: ip(gw),
                        dns: rest.iter().skip(2).filter_map(|d| ip(d)).collect(),
                    })
                }
                _ => k.warnings.push(format!(
                    "ignoring `{word}`: expected ip=<client>::<gateway>:<netmask>::<device>:off"
                )),
            }
        }
        _ => k.warnings.push(format!(
            "ignoring `{word}`: a form of ip= vault-luks does not read"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_kernel_form() {
        let k = parse(
            "root=/dev/vda ip=192.0.2.10::192.0.2.1:255.255.255.0::ens3:off:192.0.2.53 quiet",
        );
        assert_eq!(k.interface.as_deref(), Some("ens3"));
        assert_eq!(
            k.address,
            Some(StaticAddress {
                address: Ipv4Addr::new(192, 0, 2, 10),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
                dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
            })
        );
        assert!(k.warnings.is_empty());
        let k = parse("ip=10.0.0.5:::16::eth1:none");
        assert_eq!(k.address.unwrap().prefix, 16);
    }

    #[test]
    fn dhcp_forms_and_bootif() {
        assert_eq!(parse("ip=dhcp"), KernelNet::default());
        assert_eq!(parse("ip=ens4:dhcp").interface.as_deref(), Some("ens4"));
        let k = parse("ip=:::::eth0:dhcp BOOTIF=01-52-54-00-12-34-56");
        assert_eq!(k.interface.as_deref(), Some("eth0"));
        assert_eq!(k.address, None);
        assert_eq!(k.bootif, Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    }

    #[test]
    fn malformed_is_warned_about_and_ignored() {
        let k = parse("ip=192.0.2.x::192.0.2.1:255.0.255.0::eth0:off BOOTIF=01-zz ip=eth1:dhcp");
        assert_eq!(k.address, None);
        assert_eq!(k.warnings.len(), 2, "{:?}", k.warnings);
        assert_eq!(k.interface.as_deref(), Some("eth0"), "the first ip= counts");
        assert_eq!(parse("ip=weird:form:x").warnings.len(), 1);
    }
}
