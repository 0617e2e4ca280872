//! Which outbound destinations are inside a network rather than on the public internet.
//!
//! One classification, used wherever a destination is judged: the store when it publishes and
//! explains an `outbound-http:<host>` capability, the runtime when a region installs or grants
//! one, the runtime again at connect time for every address a name resolved to, and the
//! integration cloud for the endpoints subscriptions notify (as named and as resolved). A host
//! written as a literal address and the address a name resolves to are judged by the same
//! [`internal_address`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a destination is inside a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Internal {
    /// The machine itself: `127.0.0.0/8`, `::1`, `0.0.0.0`, `::`, `localhost`.
    Loopback,
    /// A cloud metadata service (`169.254.169.254`, `fd00:ec2::254`,
    /// `metadata.google.internal`), which hands out the node's credentials.
    Metadata,
    /// Link-local: `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Private networks: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, `fec0::/10`.
    Private,
    /// Carrier-grade NAT, the shared address space `100.64.0.0/10`.
    SharedAddressSpace,
    /// IPv6 unique-local addresses, `fc00::/7`.
    UniqueLocal,
    /// Any other address that is not public unicast: multicast, broadcast, documentation,
    /// benchmarking, reserved, and IPv6 ranges that tunnel to IPv4.
    Reserved,
    /// A name only a local network resolves: a single label (`intranet`) or a local suffix
    /// (`.internal`, `.local`, `.lan`, `.home.arpa`, …).
    LocalName,
}

impl fmt::Display for Internal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Internal::Loopback => "loopback, the runtime node itself",
            Internal::Metadata => {
                "the cloud metadata service, which hands out the node's credentials"
            }
            Internal::LinkLocal => "a link-local address",
            Internal::Private => "a private network address",
            Internal::SharedAddressSpace => "carrier-grade NAT shared address space",
            Internal::UniqueLocal => "an IPv6 unique-local address",
            Internal::Reserved => "a reserved address that is not on the public internet",
            Internal::LocalName => "a name only a local network resolves",
        })
    }
}

/// Whether `ip` is inside a network, and why. Only public unicast addresses are `None`.
pub fn internal_address(ip: IpAddr) -> Option<Internal> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<Internal> {
    let [a, b, c, _] = ip.octets();
    let kind = if ip.is_loopback() || ip.is_unspecified() || a == 0 {
        // Connecting to 0.0.0.0 reaches the machine's own listeners.
        Internal::Loopback
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(169, 254, 170, 2) {
        Internal::Metadata
    } else if ip.is_link_local() {
        Internal::LinkLocal
    } else if ip.is_private() {
        Internal::Private
    } else if a == 100 && (64..128).contains(&b) {
        Internal::SharedAddressSpace
    } else if ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 88 && c == 99)
        || a >= 240
    {
        Internal::Reserved
    } else {
        return None;
    };
    Some(kind)
}

/// Only global unicast (`2000::/3`) is public, minus the ranges in it that tunnel to IPv4
/// (6to4, Teredo) or are reserved for documentation; addresses that embed an IPv4 address
/// (mapped, compatible, NAT64) are judged by that address.
fn internal_v6(ip: Ipv6Addr) -> Option<Internal> {
    let segments = ip.segments();
    let [first, second, ..] = segments;
    if ip.is_loopback() || ip.is_unspecified() {
        return Some(Internal::Loopback);
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let embeds_v4 = segments[..6] == [0; 6] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if embeds_v4 {
        let [.., high, low] = segments;
        return internal_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    let kind = if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) {
        Internal::Metadata
    } else if (first & 0xfe00) == 0xfc00 {
        Internal::UniqueLocal
    } else if (first & 0xffc0) == 0xfe80 {
        Internal::LinkLocal
    } else if (first & 0xffc0) == 0xfec0 {
        Internal::Private
    } else if (first & 0xe000) != 0x2000
        || first == 0x2002
        || (first == 0x2001 && second == 0x0000)
        || (first == 0x2001 && second == 0x0db8)
    {
        Internal::Reserved
    } else {
        return None;
    };
    Some(kind)
}

/// Names of cloud metadata services.
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Suffixes that public DNS never answers for (reserved or conventionally local).
const LOCAL_SUFFIXES: &[&str] = &[
    "localhost",
    "internal",
    "local",
    "localdomain",
    "lan",
    "home",
    "home.arpa",
    "intranet",
    "intra",
    "corp",
    "private",
];

/// Whether the host of a destination (a name, a dotted IPv4 address or an IPv6 address, with
/// or without brackets; no port) is inside a network, and why.
///
/// An IPv4 address in any form a resolver accepts (`2130706433`, `0x7f000001`, `0177.1`) is
/// judged as the address it means; see [`disguised_ipv4`].
pub fn internal_host(host: &str) -> Option<Internal> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return internal_address(ip);
    }
    if let Some(ip) = loose_ipv4(&host) {
        return internal_v4(ip);
    }
    if METADATA_NAMES.contains(&host.as_str()) {
        return Some(Internal::Metadata);
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Some(Internal::Loopback);
    }
    let local_suffix = LOCAL_SUFFIXES
        .iter()
        .any(|suffix| host == *suffix || host.ends_with(&format!(".{suffix}")));
    if local_suffix || !host.contains('.') {
        return Some(Internal::LocalName);
    }
    None
}

/// The address `host` means when it is an IPv4 address written in a form other than four
/// decimal numbers (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`): such forms only
/// disguise an address, so the store refuses them.
pub fn disguised_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let ip = loose_ipv4(host)?;
    (host.parse::<Ipv4Addr>().ok() != Some(ip)).then_some(ip)
}

/// An IPv4 address as `inet_aton` reads it: one to four parts, each decimal, octal (leading
/// `0`) or hexadecimal (`0x`), the last filling the remaining bytes.
fn loose_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts
        .iter()
        .map(|part| {
            let (digits, radix) =
                if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                    (hex, 16)
                } else if part.len() > 1 && part.starts_with('0') {
                    (&part[1..], 8)
                } else {
                    (*part, 10)
                };
            if digits.is_empty() && radix == 16 {
                return Some(0);
            }
            if digits.is_empty() || digits.len() > 12 || !digits.chars().all(|c| c.is_digit(radix))
            {
                return None;
            }
            u64::from_str_radix(digits, radix).ok()
        })
        .collect::<Option<_>>()?;
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|n| *n > 255) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if last_bits < 64 && *last >= (1u64 << last_bits) {
        return None;
    }
    let mut address: u64 = 0;
    for (index, number) in leading.iter().enumerate() {
        address |= number << (24 - 8 * index as u32);
    }
    Some(Ipv4Addr::from((address | last) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for (internal, kind) in [
            ("127.0.0.1", Internal::Loopback),
            ("0.0.0.0", Internal::Loopback),
            ("10.1.2.3", Internal::Private),
            ("172.16.0.1", Internal::Private),
            ("192.168.1.1", Internal::Private),
            ("169.254.169.254", Internal::Metadata),
            ("169.254.1.1", Internal::LinkLocal),
            ("100.64.0.1", Internal::SharedAddressSpace),
            ("224.0.0.1", Internal::Reserved),
            ("::1", Internal::Loopback),
            ("::", Internal::Loopback),
            ("fd00::1", Internal::UniqueLocal),
            ("fd00:ec2::254", Internal::Metadata),
            ("fe80::1", Internal::LinkLocal),
            ("::ffff:127.0.0.1", Internal::Loopback),
            ("::ffff:169.254.169.254", Internal::Metadata),
            ("::127.0.0.1", Internal::Loopback),
            ("64:ff9b::a00:5", Internal::Private),
            ("2001:db8::1", Internal::Reserved),
        ] {
            assert_eq!(
                internal_address(internal.parse().unwrap()),
                Some(kind),
                "{internal}"
            );
        }
        for public in [
            "93.184.215.14",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(internal_address(public.parse().unwrap()), None, "{public}");
        }
    }

    #[test]
    fn hosts_are_judged_by_what_they_reach() {
        for (host, kind) in [
            ("169.254.169.254", Internal::Metadata),
            ("10.0.0.5", Internal::Private),
            ("127.0.0.1", Internal::Loopback),
            ("[::1]", Internal::Loopback),
            ("[::ffff:10.0.0.5]", Internal::Private),
            ("localhost", Internal::Loopback),
            ("LocalHost.", Internal::Loopback),
            ("app.localhost", Internal::Loopback),
            ("metadata.google.internal", Internal::Metadata),
            ("metadata", Internal::Metadata),
            ("db.corp", Internal::LocalName),
            ("printer.local", Internal::LocalName),
            ("lab.hospital.internal", Internal::LocalName),
            ("router.home.arpa", Internal::LocalName),
            ("intranet", Internal::LocalName),
            ("2130706433", Internal::Loopback),
            ("0x7f000001", Internal::Loopback),
            ("0177.0.0.1", Internal::Loopback),
            ("127.1", Internal::Loopback),
            ("0xa9.0xfe.0xa9.0xfe", Internal::Metadata),
        ] {
            assert_eq!(internal_host(host), Some(kind), "{host}");
        }
        for public in [
            "api.example.org",
            "example.org.",
            "8.8.8.8",
            "[2606:4700::1111]",
        ] {
            assert_eq!(internal_host(public), None, "{public}");
        }
    }

    #[test]
    fn only_non_canonical_ipv4_forms_are_disguised() {
        assert_eq!(disguised_ipv4("2130706433"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(disguised_ipv4("0x7f000001"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(disguised_ipv4("0177.0.0.1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(disguised_ipv4("127.1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(disguised_ipv4("127.0.0.1"), None);
        assert_eq!(disguised_ipv4("api.example.org"), None);
        assert_eq!(disguised_ipv4("1.2.3.4.5"), None);
        assert_eq!(disguised_ipv4("256.1.1.1"), None);
        assert_eq!(disguised_ipv4("127.0.0.+1"), None);
        assert_eq!(disguised_ipv4("0xdeadbeef.com"), None);
    }
}
