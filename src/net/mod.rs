//! The network, when nothing else configured it: link, DHCP (or a static address), routes and
//! resolv.conf, brought up for the unlock and taken down again after it, success or not.
//!
//! `bring_up` first checks for routes to what the unlock talks to (the metadata server, each
//! Vault address; a host name needs a default route). If they are there, or if an Ethernet
//! interface is already up, the network is the framework's or the user's and nothing is
//! touched. Otherwise it raises loopback and one interface (network.interface, else the
//! kernel's `ip=`/`BOOTIF=`, else the first with a carrier), gets an address
//! (network.address, else a static `ip=`, else DHCP), and adds the address, a default route
//! and a route to the metadata server. Every change is recorded; `teardown` (run when the
//! returned `Network` is dropped) undoes exactly those, newest first, and nothing else, as
//! `bring_up` itself does when it fails half-way.
//!
//! The changes live in one record for the whole process, not in the `Network` value: at boot
//! the network is brought up by the thread that asks Vault, and the main thread may be done
//! first (a typed passphrase opened every volume). Whoever finishes calls `teardown`; after
//! it, any change still attempted is refused, so nothing can be left behind by a thread the
//! process does not wait for.

pub mod cmdline;
pub mod dhcp;
pub mod link;
pub mod netlink;
mod resolv;
pub mod route;

use crate::config::{AuthMethod, Config, StaticAddress};
use crate::error::{Error, Result, Step};
use crate::log;
use netlink::{Address, Netlink, Outcome, Route};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Stands for "anything off the local link" when a Vault address is a host name: a route to
/// it (TEST-NET-1, never contacted) means there is a default route.
const BEYOND_THE_LINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// What we changed, in order.
#[derive(Debug)]
struct Changes {
    links_up: Vec<(u32, String)>,
    addresses: Vec<Address>,
    routes: Vec<Route>,
    resolv_conf: Option<(PathBuf, Vec<Ipv4Addr>)>,
}

struct Record {
    changes: Changes,
    /// Set by `teardown`: no change may be made after it.
    closed: bool,
}

static RECORD: Mutex<Record> = Mutex::new(Record {
    changes: Changes {
        links_up: Vec::new(),
        addresses: Vec::new(),
        routes: Vec::new(),
        resolv_conf: None,
    },
    closed: false,
});

fn record() -> MutexGuard<'static, Record> {
    // A thread that panicked holding the lock left the record as it was; undoing still works.
    RECORD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes one change and records it, unless the network was already torn down. The lock is
/// held while the change is made (a netlink round trip), so a teardown cannot slip between
/// the change and its record.
fn change<T>(f: impl FnOnce(&mut Changes) -> Result<T>) -> Result<T> {
    let mut r = record();
    if r.closed {
        return Err(fail(
            "the unlock finished while the network was being configured; stopped",
            "",
        ));
    }
    f(&mut r.changes)
}

/// A network vault-luks brought up. Dropping it tears it down.
pub struct Network {
    pub interface: String,
    pub method: &'static str,
    pub address: (Ipv4Addr, u8),
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub seconds: f64,
}

fn fail(detail: impl Into<String>, hint: &str) -> Error {
    Error::failed(Step::Network, detail, hint)
}

/// The IPv4 addresses the unlock must reach (metadata, literal Vault addresses; a host name
/// stands for "needs a default route").
fn targets(config: &Config) -> Vec<Ipv4Addr> {
    let mut t = Vec::new();
    if matches!(config.auth.method, AuthMethod::Exoscale { .. }) {
        if let Ok(u) = crate::config::Url::parse(&config.metadata.url) {
            t.push(u.host.parse().unwrap_or(BEYOND_THE_LINK));
        }
    }
    for a in &config.vault.addresses {
        // A colon makes the host an IPv6 literal: IPv4 only here. (Checked by hand: parsing
        // IPv6 would bring an address parser into the binary for this alone.)
        if !a.url.host.contains(':') {
            t.push(a.url.host.parse().unwrap_or(BEYOND_THE_LINK));
        }
    }
    // Each once, in the order given (dedup alone keeps non-adjacent repeats).
    let mut unique = Vec::with_capacity(t.len());
    for a in t {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    unique
}

fn metadata_ip(config: &Config) -> Option<Ipv4Addr> {
    if !matches!(config.auth.method, AuthMethod::Exoscale { .. }) {
        return None;
    }
    crate::config::Url::parse(&config.metadata.url)
        .ok()?
        .host
        .parse()
        .ok()
}

/// Brings the network up if the unlock needs it; `None` when it does not (routes are there, or
/// network.mode is off).
pub fn bring_up(config: &Config, deadline: Instant) -> Result<Option<Network>> {
    if !config.network.enabled {
        log::debug(format_args!(
            "network: network.mode is off; not touching the network"
        ));
        return Ok(None);
    }
    let targets = targets(config);
    let missing: Vec<Ipv4Addr> = targets
        .iter()
        .copied()
        .filter(|ip| !route::has_route(*ip))
        .collect();
    if missing.is_empty() {
        log::info(format_args!(
            "network: already configured (routes to {} exist); leaving it as it is",
            list_targets(&targets)
        ));
        return Ok(None);
    }
    // An Ethernet interface already up was raised by someone (the kernel and udev never do):
    // a framework, an administrator, a running system with routes of its own. Its network is
    // not ours to add to, even if it lacks the routes we want.
    let up: Vec<link::Link> = link::ethernet().into_iter().filter(|l| l.up).collect();
    if !up.is_empty() {
        log::warn(format_args!(
            "network: no route to {}, but {} is up: configured by someone else; leaving it as it is (set network.mode to off to silence this)",
            list_targets(&missing),
            names(&up)
        ));
        return Ok(None);
    }
    log::info(format_args!(
        "network: no route to {}; configuring it",
        list_targets(&missing)
    ));
    let kernel = cmdline::parse(&config.network.kernel_cmdline);
    for w in &kernel.warnings {
        log::warn(format_args!("{w}"));
    }
    configure(config, &kernel, deadline)
        .map(Some)
        .inspect_err(|_| {
            let mut r = record();
            undo(&mut r.changes);
        })
}

fn list(ips: &[Ipv4Addr]) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `list`, with the stand-in for "anything off the link" named for what it means.
fn list_targets(ips: &[Ipv4Addr]) -> String {
    ips.iter()
        .map(|&i| match i {
            BEYOND_THE_LINK => "the internet (default route)".to_string(),
            i => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a step that changes the network failed most often: vault-luks is not root.
const HINT_ROOT: &str = "vault-luks needs CAP_NET_ADMIN (run it as root)";

/// The phases of the README's "The network at boot", in that order: loopback, the interface
/// and its carrier, the address (static or DHCP), the routes, resolv.conf. Each change is
/// recorded as it is made, for `teardown`.
fn configure(config: &Config, kernel: &cmdline::KernelNet, deadline: Instant) -> Result<Network> {
    let start = Instant::now();
    let mut nl = Netlink::open().map_err(|e| {
        fail(
            format!("cannot open a netlink socket: {e}"),
            "vault-luks must run as root",
        )
    })?;
    raise_loopback(&mut nl)?;
    let iface = wait_for_carrier(&mut nl, config, kernel, deadline)?;
    lower_the_others(&mut nl, &iface)?;
    let (method, a) = choose_address(config, kernel, &iface, deadline)?;
    let what = format!("{}/{} on {}", a.address, a.prefix, iface.name);
    add_address(&mut nl, &iface, &a, &what)?;
    add_routes(&mut nl, config, &iface, &a)?;
    write_resolv_conf(&a.dns)?;
    let seconds = start.elapsed().as_secs_f64();
    log::info(format_args!(
        "network: {what} ready ({method}) in {seconds:.1} s"
    ));
    Ok(Network {
        interface: iface.name,
        method,
        address: (a.address, a.prefix),
        gateway: a.gateway,
        dns: a.dns,
        seconds,
    })
}

/// Raises lo if it is down, with its 127.0.0.1/8 added by us so that it is recorded.
fn raise_loopback(nl: &mut Netlink) -> Result<()> {
    let Some(lo) = link::get("lo").filter(|l| !l.up) else {
        return Ok(());
    };
    // Raising lo makes the kernel give it 127.0.0.1/8 if it has no address, and that
    // would stay after lo goes down again: add it ourselves, so that it is recorded.
    let a = Address {
        ifindex: lo.index,
        ip: Ipv4Addr::LOCALHOST,
        prefix: 8,
        loopback: true,
    };
    change(|c| {
        let added = nl
            .add_address(&a)
            .map_err(|e| fail(format!("cannot configure lo: {e}"), HINT_ROOT))?;
        if added == Outcome::Done {
            c.addresses.push(a);
        }
        raise(nl, &lo, c).map_err(|e| fail(format!("cannot raise lo: {e}"), HINT_ROOT))
    })
}

/// Raises the candidate interfaces and returns the first with a carrier. The interface may
/// not exist yet (udev is still loading the NIC's driver) and its carrier may come late, so
/// both are polled until network.carrier_timeout.
fn wait_for_carrier(
    nl: &mut Netlink,
    config: &Config,
    kernel: &cmdline::KernelNet,
    deadline: Instant,
) -> Result<link::Link> {
    let wanted = config
        .network
        .interface
        .as_ref()
        .or(kernel.interface.as_ref());
    let t = Instant::now();
    let until = (t + config.network.carrier_timeout).min(deadline);
    let mut announced = String::new();
    let iface = loop {
        let candidates = candidate_links(wanted, kernel.bootif);
        for l in candidates.iter().filter(|l| !l.up) {
            change(|c| {
                raise(nl, l, c)
                    .map_err(|e| fail(format!("cannot raise {}: {e}", l.name), HINT_ROOT))
            })?;
        }
        let now = names(&candidates);
        if now != announced && !candidates.is_empty() {
            log::info(format_args!("network: waiting for a carrier on {now}"));
            announced = now;
        }
        if let Some(l) = candidates.iter().find(|l| link::has_carrier(&l.name)) {
            break l.clone();
        }
        if Instant::now() >= until {
            let waited = t.elapsed().as_secs_f64();
            return Err(no_carrier(wanted, kernel.bootif, &candidates, waited));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    log::info(format_args!(
        "network: {}: carrier after {:.1} s",
        iface.name,
        t.elapsed().as_secs_f64()
    ));
    Ok(iface)
}

/// The interfaces that may carry the network now: the one named (config or `ip=`), else those
/// with the `BOOTIF=` address, else every Ethernet interface.
fn candidate_links(wanted: Option<&String>, bootif: Option<[u8; 6]>) -> Vec<link::Link> {
    match (wanted, bootif) {
        (Some(name), _) => link::get(name).into_iter().collect(),
        (None, Some(mac)) => link::ethernet()
            .into_iter()
            .filter(|l| l.mac == mac)
            .collect(),
        (None, None) => link::ethernet(),
    }
}

/// The error for a wait for a carrier that timed out, naming what was missing.
fn no_carrier(
    wanted: Option<&String>,
    bootif: Option<[u8; 6]>,
    candidates: &[link::Link],
    waited: f64,
) -> Error {
    match (wanted, bootif, candidates.is_empty()) {
        (Some(name), _, true) => fail(
            format!("network interface {name} does not exist (waited {waited:.1} s; have: {})", names(&link::ethernet())),
            "name an existing interface in network.interface (or ip=), or remove it to use the first with a carrier",
        ),
        (None, Some(mac), true) => fail(
            format!(
                "no interface has the BOOTIF address {} (waited {waited:.1} s)",
                link::format_mac(&mac)
            ),
            "check BOOTIF= on the kernel command line, or set network.interface",
        ),
        (_, _, true) => fail(
            format!("no Ethernet interface found (waited {waited:.1} s)"),
            "is the NIC's driver in the initramfs? (virtio_net, e1000, ...)",
        ),
        (_, _, false) => fail(
            format!("no carrier on {} after {waited:.1} s", names(candidates)),
            "check the cable or virtual NIC; name the right one in network.interface, or raise network.carrier_timeout",
        ),
    }
}

/// Lowers again the interfaces raised only to look for a carrier (all but `iface` and lo).
fn lower_the_others(nl: &mut Netlink, iface: &link::Link) -> Result<()> {
    change(|c| {
        let others: Vec<(u32, String)> = c
            .links_up
            .iter()
            .filter(|(i, n)| *i != iface.index && n != "lo")
            .cloned()
            .collect();
        for (index, name) in others {
            if nl.set_link_up(index, false).is_ok() {
                c.links_up.retain(|(i, _)| *i != index);
            } else {
                log::warn(format_args!("network: could not lower {name} again"));
            }
        }
        Ok(())
    })
}

/// The address and how it was found: network.address, else a static `ip=`, else DHCP.
fn choose_address(
    config: &Config,
    kernel: &cmdline::KernelNet,
    iface: &link::Link,
    deadline: Instant,
) -> Result<(&'static str, StaticAddress)> {
    match config
        .network
        .address
        .clone()
        .or_else(|| kernel.address.clone())
    {
        Some(s) => Ok(("static", s)),
        None => Ok(("dhcp", dhcp_address(iface, deadline)?)),
    }
}

/// Asks DHCP for an address on `iface` until `deadline`, logging each attempt and the lease.
fn dhcp_address(iface: &link::Link, deadline: Instant) -> Result<StaticAddress> {
    let t = Instant::now();
    let lease = dhcp::obtain(&iface.name, iface.mac, deadline, &|n| {
        if n > 1 {
            // No answer yet: a person may want to type the passphrase meanwhile.
            crate::retry::note_trouble();
        }
        log::info(format_args!("network: {}: DHCP attempt {n}", iface.name))
    })
    .map_err(|m| {
        fail(
            m,
            "check that a DHCP server answers on this network, or set a static network.address (or ip=<client>::<gw>:<netmask>::<dev>:off)",
        )
    })?;
    log::info(format_args!(
        "network: {}: DHCP lease {}/{} from {} (gateway {}, DNS {}, lease {} s) after {:.1} s",
        iface.name,
        lease.address,
        lease.prefix,
        lease.server,
        lease.gateway.map_or("none".into(), |g| g.to_string()),
        if lease.dns.is_empty() {
            "none".into()
        } else {
            list(&lease.dns)
        },
        lease.lease_secs.map_or("?".into(), |s| s.to_string()),
        t.elapsed().as_secs_f64()
    ));
    Ok(StaticAddress {
        address: lease.address,
        prefix: lease.prefix,
        gateway: lease.gateway,
        dns: lease.dns,
    })
}

/// Adds the address to `iface` (`what` names it in messages); one already there is kept and
/// not recorded, so teardown leaves it.
fn add_address(nl: &mut Netlink, iface: &link::Link, a: &StaticAddress, what: &str) -> Result<()> {
    let address = Address {
        ifindex: iface.index,
        ip: a.address,
        prefix: a.prefix,
        loopback: false,
    };
    change(|c| match nl.add_address(&address) {
        Ok(Outcome::Done) => {
            c.addresses.push(address);
            Ok(())
        }
        Ok(Outcome::AlreadyThere) => {
            log::info(format_args!("network: {what} was already there; kept"));
            Ok(())
        }
        Err(e) => Err(fail(format!("cannot add address {what}: {e}"), HINT_ROOT)),
    })
}

/// Adds the default route via the gateway, then a route to the metadata server when it is not
/// on the link; a route already there is kept and not recorded.
fn add_routes(
    nl: &mut Netlink,
    config: &Config,
    iface: &link::Link,
    a: &StaticAddress,
) -> Result<()> {
    let mut routes = Vec::new();
    if let Some(gw) = a.gateway {
        routes.push(Route {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            gateway: Some(gw),
            ifindex: iface.index,
        });
    }
    if let Some(md) = metadata_ip(config).filter(|m| !route::in_subnet(*m, a.address, a.prefix)) {
        routes.push(Route {
            dst: md,
            prefix: 32,
            gateway: a.gateway,
            ifindex: iface.index,
        });
    }
    for r in routes {
        let what = format!(
            "{}/{}{} dev {}",
            r.dst,
            r.prefix,
            r.gateway.map_or(String::new(), |g| format!(" via {g}")),
            iface.name
        );
        change(|c| match nl.add_route(&r) {
            Ok(Outcome::Done) => {
                c.routes.push(r);
                Ok(())
            }
            Ok(Outcome::AlreadyThere) => {
                log::info(format_args!(
                    "network: a route for {}/{} exists; kept",
                    r.dst, r.prefix
                ));
                Ok(())
            }
            Err(e) => Err(fail(
                format!("cannot add route {what}: {e}"),
                "check network.address and gateway (or the DHCP server's router option)",
            )),
        })?;
    }
    Ok(())
}

/// Writes the DNS servers to /etc/resolv.conf if there is none (recorded, for removal); a
/// failure only warns: only Vault host names need it.
fn write_resolv_conf(dns: &[Ipv4Addr]) -> Result<()> {
    if dns.is_empty() {
        return Ok(());
    }
    let path = PathBuf::from(resolv::PATH);
    change(|c| {
        match resolv::write_if_absent(&path, dns) {
            Ok(true) => c.resolv_conf = Some((path, dns.to_vec())),
            Ok(false) => log::info(format_args!(
                "network: {} exists; left as it is",
                resolv::PATH
            )),
            Err(e) => log::warn(format_args!(
                "network: cannot write {}: {e}; Vault host names will not resolve",
                resolv::PATH
            )),
        }
        Ok(())
    })
}

fn raise(nl: &mut Netlink, l: &link::Link, changes: &mut Changes) -> std::io::Result<()> {
    nl.set_link_up(l.index, true)?;
    changes.links_up.push((l.index, l.name.clone()));
    log::info(format_args!("network: {} up", l.name));
    Ok(())
}

fn names(links: &[link::Link]) -> String {
    if links.is_empty() {
        return "none".into();
    }
    links
        .iter()
        .map(|l| l.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Undoes `changes`, newest first. What is already gone is fine; other failures are warned
/// about and the rest is still undone.
fn undo(changes: &mut Changes) {
    if let Some((path, dns)) = changes.resolv_conf.take() {
        match resolv::remove_if_ours(&path, &dns) {
            Ok(true) => log::debug(format_args!("network: removed {}", path.display())),
            Ok(false) => log::warn(format_args!(
                "network: {} was changed by someone else; kept",
                path.display()
            )),
            Err(e) => log::warn(format_args!(
                "network: cannot remove {}: {e}",
                path.display()
            )),
        }
    }
    let mut nl = match Netlink::open() {
        Ok(nl) => nl,
        Err(e) => {
            log::warn(format_args!(
                "network: cannot undo the network changes: {e}"
            ));
            return;
        }
    };
    while let Some(r) = changes.routes.pop() {
        if let Err(e) = nl.del_route(&r) {
            log::warn(format_args!(
                "network: cannot remove the route to {}/{}: {e}",
                r.dst, r.prefix
            ));
        }
    }
    while let Some(a) = changes.addresses.pop() {
        let (addr, prefix) = (a.ip, a.prefix);
        if let Err(e) = nl.del_address(&a) {
            log::warn(format_args!(
                "network: cannot remove address {addr}/{prefix}: {e}"
            ));
        }
    }
    while let Some((index, name)) = changes.links_up.pop() {
        if let Err(e) = nl.set_link_up(index, false) {
            log::warn(format_args!("network: cannot lower {name}: {e}"));
        }
    }
}

impl Network {
    /// What was configured and what was added, for `net-check` and tests.
    pub fn state(&self) -> Value {
        let r = record();
        let c = &r.changes;
        let texts = |v: Vec<String>| Value::from(v);
        object(vec![
            ("interface", self.interface.clone().into()),
            ("method", self.method.into()),
            (
                "address",
                format!("{}/{}", self.address.0, self.address.1).into(),
            ),
            ("gateway", self.gateway.map(|g| g.to_string()).into()),
            (
                "dns",
                texts(self.dns.iter().map(|d| d.to_string()).collect()),
            ),
            // milliseconds are plenty (seconds is never negative)
            (
                "seconds",
                ((self.seconds * 1000.0 + 0.5) as u64 as f64 / 1000.0).into(),
            ),
            (
                "added",
                object(vec![
                    (
                        "links_up",
                        texts(c.links_up.iter().map(|(_, n)| n.clone()).collect()),
                    ),
                    (
                        "addresses",
                        texts(
                            c.addresses
                                .iter()
                                .map(|a| format!("{}/{}", a.ip, a.prefix))
                                .collect(),
                        ),
                    ),
                    (
                        "routes",
                        texts(
                            c.routes
                                .iter()
                                .map(|r| format!("{}/{}", r.dst, r.prefix))
                                .collect(),
                        ),
                    ),
                    (
                        "resolv_conf",
                        c.resolv_conf
                            .as_ref()
                            .map(|(p, _)| p.display().to_string())
                            .into(),
                    ),
                ]),
            ),
        ])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        teardown();
    }
}

/// Removes what `bring_up` added, and refuses any change after it: a thread still bringing
/// the network up stops at its next change. Idempotent; a no-op when nothing was added.
pub fn teardown() {
    let mut r = record();
    r.closed = true;
    let c = &r.changes;
    if c.links_up.is_empty()
        && c.addresses.is_empty()
        && c.routes.is_empty()
        && c.resolv_conf.is_none()
    {
        return;
    }
    let t = Instant::now();
    undo(&mut r.changes);
    log::info(format_args!(
        "network: what vault-luks configured is removed ({:.1} s)",
        t.elapsed().as_secs_f64()
    ));
}

/// `vault-luks net-check`: bring the network up as an unlock would, print what was done as
/// JSON, optionally resolve a name (as the HTTP client would) and run a command, then tear
/// it all down.
pub fn check(
    config: &Config,
    timeout: Duration,
    resolve: Option<&str>,
    exec: Option<&str>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let net = bring_up(config, deadline)?;
    let state = match &net {
        Some(n) => n.state(),
        None => object(vec![("configured", false.into())]),
    };
    print_json(&state);
    let mut result = Ok(());
    if let Some(name) = resolve {
        use std::net::ToSocketAddrs;
        // "host:port", as ureq's resolver hands it to std (one resolver path in the binary).
        let host_port = if name.contains(':') {
            format!("[{name}]:443")
        } else {
            format!("{name}:443")
        };
        match host_port.to_socket_addrs() {
            Ok(addrs) => {
                let ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                print_json(&object(vec![
                    ("resolved", name.into()),
                    ("addresses", ips.into()),
                ]));
            }
            Err(e) => {
                result = Err(fail(
                    format!("cannot resolve {name}: {e}"),
                    "check the DNS servers DHCP gave (or network.dns) and /etc/resolv.conf",
                ))
            }
        }
    }
    if let Some(cmd) = exec {
        // The bounded runner cryptsetup uses (one spawn path in the binary, not two); the
        // command's output is passed on once it is done.
        use crate::luks::cryptsetup::{exit_text, run, Input};
        use crate::luks::OpenError;
        use std::io::Write;
        let mut c = std::process::Command::new("/bin/sh");
        c.args(["-c", cmd]);
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(10));
        match run(c, Input::Nothing, None, left) {
            Ok(out) => {
                let _ = std::io::stdout().lock().write_all(&out.stdout);
                let _ = std::io::stderr().lock().write_all(out.stderr.as_bytes());
                if !out.status.success() {
                    let how = exit_text(out.status);
                    result = result.and(Err(fail(format!("`{cmd}` failed: {how}"), "")));
                }
            }
            Err(e) => {
                let why = match e {
                    OpenError::Failed(words) | OpenError::Crashed(words) => words,
                    OpenError::TimedOut(t) => format!("killed after {} s", t.as_secs()),
                    OpenError::KeyRejected => "refused".into(),
                };
                result = result.and(Err(fail(format!("`{cmd}`: {why}"), "")))
            }
        }
    }
    drop(net);
    result
}

/// A JSON object from its fields (built directly: `json!` serialises each value into a
/// `Value`, one instance of that per type).
fn object(fields: Vec<(&str, Value)>) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in fields {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}

/// One line of JSON on stdout, serialised as the Vault request bodies are (one serialiser in
/// the binary).
fn print_json(v: &Value) {
    use std::io::Write;
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    let _ = std::io::stdout().lock().write_all(&line);
}
