//! Which addresses webhooks may connect to: the IANA IPv4 and IPv6
//! Special-Purpose Address Registries, entry by entry, with their "Globally
//! Reachable" column; the most specific entry containing an address decides.
//! An entry marked N/A (deprecated relays, transition mechanisms that embed
//! another address) is treated as not reachable. On top, what the registries
//! do not list but no public endpoint is: multicast, the deprecated
//! site-local and IPv4-compatible IPv6 forms. An address in the NAT64
//! well-known prefix is judged by the IPv4 address it embeds.
//!
//! Sources: <https://www.iana.org/assignments/iana-ipv4-special-registry>
//! and <https://www.iana.org/assignments/iana-ipv6-special-registry>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// `(network, globally reachable, name)` of every registry entry.
pub const IPV4_REGISTRY: &[(&str, bool, &str)] = &[
    ("0.0.0.0/8", false, "\"This network\""),
    ("0.0.0.0/32", false, "\"This host on this network\""),
    ("10.0.0.0/8", false, "Private-Use"),
    ("100.64.0.0/10", false, "Shared Address Space"),
    ("127.0.0.0/8", false, "Loopback"),
    ("169.254.0.0/16", false, "Link Local"),
    ("172.16.0.0/12", false, "Private-Use"),
    ("192.0.0.0/24", false, "IETF Protocol Assignments"),
    ("192.0.0.0/29", false, "IPv4 Service Continuity Prefix"),
    ("192.0.0.8/32", false, "IPv4 dummy address"),
    ("192.0.0.9/32", true, "Port Control Protocol Anycast"),
    (
        "192.0.0.10/32",
        true,
        "Traversal Using Relays around NAT Anycast",
    ),
    ("192.0.0.170/32", false, "NAT64/DNS64 Discovery"),
    ("192.0.0.171/32", false, "NAT64/DNS64 Discovery"),
    ("192.0.2.0/24", false, "Documentation (TEST-NET-1)"),
    ("192.31.196.0/24", true, "AS112-v4"),
    ("192.52.193.0/24", true, "AMT"),
    ("192.88.99.0/24", false, "Deprecated (6to4 Relay Anycast)"),
    ("192.168.0.0/16", false, "Private-Use"),
    ("192.175.48.0/24", true, "Direct Delegation AS112 Service"),
    ("198.18.0.0/15", false, "Benchmarking"),
    ("198.51.100.0/24", false, "Documentation (TEST-NET-2)"),
    ("203.0.113.0/24", false, "Documentation (TEST-NET-3)"),
    ("240.0.0.0/4", false, "Reserved"),
    ("255.255.255.255/32", false, "Limited Broadcast"),
];

/// `(network, globally reachable, name)` of every registry entry.
pub const IPV6_REGISTRY: &[(&str, bool, &str)] = &[
    ("::1/128", false, "Loopback Address"),
    ("::/128", false, "Unspecified Address"),
    ("::ffff:0:0/96", false, "IPv4-mapped Address"),
    ("64:ff9b::/96", true, "IPv4-IPv6 Translat."),
    ("64:ff9b:1::/48", false, "IPv4-IPv6 Translat."),
    ("100::/64", false, "Discard-Only Address Block"),
    ("100:0:0:1::/64", false, "Dummy IPv6 Prefix"),
    ("2001::/23", false, "IETF Protocol Assignments"),
    ("2001::/32", false, "TEREDO"),
    ("2001:1::1/128", true, "Port Control Protocol Anycast"),
    (
        "2001:1::2/128",
        true,
        "Traversal Using Relays around NAT Anycast",
    ),
    (
        "2001:1::3/128",
        true,
        "DNS-SD Service Registration Protocol Anycast",
    ),
    ("2001:2::/48", false, "Benchmarking"),
    ("2001:3::/32", true, "AMT"),
    ("2001:4:112::/48", true, "AS112-v6"),
    ("2001:10::/28", false, "Deprecated (previously ORCHID)"),
    ("2001:20::/28", true, "ORCHIDv2"),
    (
        "2001:30::/28",
        true,
        "Drone Remote ID Protocol Entity Tags (DETs) Prefix",
    ),
    ("2001:db8::/32", false, "Documentation"),
    ("2002::/16", false, "6to4"),
    ("2620:4f:8000::/48", true, "Direct Delegation AS112 Service"),
    ("3fff::/20", false, "Documentation"),
    ("5f00::/16", false, "Segment Routing (SRv6) SIDs"),
    ("fc00::/7", false, "Unique-Local"),
    ("fe80::/10", false, "Link-Local Unicast"),
];

/// Not in the special-purpose registries, and never a public endpoint.
const ALSO_REFUSED: &[&str] = &[
    "224.0.0.0/4", // IPv4 multicast
    "ff00::/8",    // IPv6 multicast
    "fec0::/10",   // site-local (deprecated by RFC 3879)
    "::/96",       // IPv4-compatible (deprecated by RFC 4291)
];

/// The most specific registry entry containing `ip`: `(network, global)`.
fn entry(ip: IpAddr) -> Option<(IpNet, bool)> {
    let table = match ip {
        IpAddr::V4(_) => IPV4_REGISTRY,
        IpAddr::V6(_) => IPV6_REGISTRY,
    };
    table
        .iter()
        .filter_map(|(net, global, _)| Some((net.parse::<IpNet>().ok()?, *global)))
        .filter(|(net, _)| net.contains(&ip))
        .max_by_key(|(net, _)| net.prefix_len())
}

/// Whether a webhook may connect to `ip`.
pub fn is_global(ip: IpAddr) -> bool {
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = nat64_embedded(v6)
    {
        return is_global(IpAddr::V4(v4));
    }
    if ALSO_REFUSED
        .iter()
        .filter_map(|n| n.parse::<IpNet>().ok())
        .any(|n| n.contains(&ip))
        && ip != IpAddr::V6(Ipv6Addr::LOCALHOST)
    {
        // (`::1` is in `::/96` too, and refused by its own entry.)
        return false;
    }
    entry(ip).is_none_or(|(_, global)| global)
}

/// The IPv4 address inside the NAT64 well-known prefix `64:ff9b::/96`.
fn nat64_embedded(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0]).then(|| {
        let [.., a, b, c, d] = ip.octets();
        Ipv4Addr::new(a, b, c, d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first, a middle and the last address of a network.
    fn samples(net: IpNet) -> Vec<IpAddr> {
        let hosts: Vec<IpAddr> = match net {
            IpNet::V4(n) => vec![n.network().into(), n.broadcast().into()],
            IpNet::V6(n) => vec![n.network().into(), n.broadcast().into()],
        };
        hosts
    }

    #[test]
    fn every_registry_entry_decides_its_own_addresses() {
        for (table, name) in [(IPV4_REGISTRY, "IPv4"), (IPV6_REGISTRY, "IPv6")] {
            for (net, global, what) in table {
                let net: IpNet = net.parse().unwrap();
                for ip in samples(net) {
                    // A more specific entry inside this one may decide
                    // otherwise (192.0.0.9 inside 192.0.0.0/24).
                    let (decider, expected) = entry(ip).unwrap();
                    if decider != net {
                        continue;
                    }
                    let embedded = matches!(ip, IpAddr::V6(v6) if nat64_embedded(v6).is_some());
                    if embedded {
                        continue; // judged by the IPv4 address inside, below
                    }
                    assert_eq!(expected, *global);
                    assert_eq!(is_global(ip), *global, "{name} {what} ({net}): {ip}");
                }
            }
        }
    }

    #[test]
    fn the_defects_found_and_the_common_cases() {
        let refused = [
            "64:ff9b:1::1",    // local-use NAT64 (RFC 8215)
            "64:ff9b::a00:1",  // NAT64 of 10.0.0.1
            "64:ff9b::7f00:1", // NAT64 of 127.0.0.1
            "::ffff:8.8.8.8",  // IPv4-mapped: the registry says not reachable
            "::127.0.0.1",     // IPv4-compatible
            "fec0::1",         // site-local
            "ff02::1",         // multicast
            "224.0.0.1",
            "3fff::1",
            "5f00::1",
            "100:0:0:1::1",
            "2001::1",          // Teredo
            "2002:c0a8:101::1", // 6to4 of 192.168.1.1
            "192.0.0.170",
        ];
        for ip in refused {
            assert!(!is_global(ip.parse().unwrap()), "{ip} must be refused");
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "192.0.0.9",
            "192.31.196.1",
            "2606:4700:4700::1111",
            "64:ff9b::808:808", // NAT64 of 8.8.8.8
            "2001:4:112::1",
            "2001:1::1",
        ];
        for ip in allowed {
            assert!(is_global(ip.parse().unwrap()), "{ip} must be allowed");
        }
    }
}
