//! The optional `network` section: whether vault-luks may configure the network when nothing
//! else has, and how (an interface, a static address, how long to wait for a carrier).

use super::reader::Obj;
use crate::error::Result;
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// `auto` (default): bring the network up only when there is no route to the metadata
    /// server or Vault. `off`: never touch the network.
    pub enabled: bool,
    /// The interface to use; absent: kernel `ip=`/`BOOTIF=`, else the first with a carrier.
    pub interface: Option<String>,
    /// A static address instead of DHCP.
    pub address: Option<StaticAddress>,
    /// How long to wait for a carrier on the interface(s).
    pub carrier_timeout: Duration,
    /// The kernel command line's text, for `ip=` and `BOOTIF=` (empty with --no-cmdline).
    pub kernel_cmdline: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAddress {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: true,
            interface: None,
            address: None,
            carrier_timeout: Duration::from_secs(10),
            kernel_cmdline: String::new(),
        }
    }
}

pub(super) fn parse_network(mut o: Obj) -> Result<NetworkConfig> {
    let mut n = NetworkConfig::default();
    match o.string("mode")?.as_deref() {
        None | Some("auto") => {}
        Some("off") => n.enabled = false,
        Some(other) => {
            return Err(o.err(
                "mode",
                format!("`{other}` is not auto (configure when needed, default) or off"),
            ))
        }
    }
    n.interface = o.string("interface")?;
    if let Some(i) = &n.interface {
        if i.len() > 15 || i.contains('/') || i.contains(char::is_whitespace) {
            return Err(o.err("interface", format!("`{i}` is not an interface name")));
        }
    }
    let address = o.string("address")?;
    let gateway = o.string("gateway")?;
    let dns = o.string_list("dns")?;
    if let Some(t) = o.seconds("carrier_timeout")? {
        n.carrier_timeout = t;
    }
    let ip = |o: &Obj, key: &str, s: &str| {
        s.parse::<Ipv4Addr>()
            .map_err(|_| o.err(key, format!("`{s}` is not an IPv4 address")))
    };
    match address {
        Some(a) => {
            let (addr, prefix) = a.split_once('/').ok_or_else(|| {
                o.err(
                    "address",
                    format!("`{a}`: write it as ADDRESS/PREFIX, e.g. 192.0.2.10/24"),
                )
            })?;
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| (1..=32).contains(p))
                .ok_or_else(|| o.err("address", format!("`{a}`: the prefix must be 1 to 32")))?;
            n.address = Some(StaticAddress {
                address: ip(&o, "address", addr)?,
                prefix,
                gateway: gateway.map(|g| ip(&o, "gateway", &g)).transpose()?,
                dns: dns
                    .unwrap_or_default()
                    .iter()
                    .map(|d| ip(&o, "dns", d))
                    .collect::<Result<_>>()?,
            });
        }
        None if gateway.is_some() || dns.is_some() => return Err(o.err(
            if gateway.is_some() { "gateway" } else { "dns" },
            "applies to a static address: set network.address too (with DHCP the server gives it)",
        )),
        None => {}
    }
    o.finish()?;
    Ok(n)
}
