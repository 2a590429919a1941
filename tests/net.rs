//! vault-luks's own network bring-up and teardown, in network namespaces with veth pairs and
//! a real dnsmasq (tests/net/netns.sh does the work; one test per case). Needs root; where
//! network namespaces are unavailable each case says so loudly and passes.

mod common;

use std::process::Command;

fn case(name: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/net/netns.sh");
    let out = Command::new(script)
        .arg(name)
        .env("VAULT_LUKS_BIN", common::binary())
        .output()
        .expect("run tests/net/netns.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(77) => eprintln!(
            "\n!!!!! SKIPPED net case `{name}`: {stderr}!!!!! (network namespaces need root)\n"
        ),
        _ => panic!(
            "net case `{name}` failed ({}):\n{}{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        ),
    }
}

#[test]
fn dhcp_lease_and_routes_obtained_then_removed() {
    case("lease");
}

#[test]
fn no_dhcp_answer_fails_within_the_deadline_and_leaves_nothing() {
    case("no-answer");
}

#[test]
fn the_interface_with_a_carrier_is_chosen() {
    case("carrier");
}

#[test]
fn an_already_configured_network_is_left_untouched() {
    case("configured");
}

#[test]
fn an_interface_someone_else_raised_is_left_alone_even_without_routes() {
    case("foreign-up");
}

#[test]
fn names_resolve_through_the_dhcp_dns_server_and_resolv_conf_goes_again() {
    case("dns");
}

#[test]
fn unlock_reaches_a_real_openbao_by_name_through_the_dhcp_dns_server() {
    case("vault-by-name");
}

#[test]
fn an_existing_resolv_conf_is_kept() {
    case("resolv-kept");
}

#[test]
fn kernel_ip_static_address() {
    case("kernel-static");
}

#[test]
fn a_failure_half_way_undoes_what_was_done() {
    case("failure-undone");
}

#[test]
fn an_interface_that_appears_late_is_waited_for() {
    case("late-nic");
}

#[test]
fn a_typed_passphrase_ends_the_unlock_and_the_network_goes_with_it() {
    case("prompt-wins");
}
