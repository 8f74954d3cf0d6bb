//! The text syntaxes an operator types for plan entries: a DNS record's type, value and
//! TTL, and a firewall rule's protocol, port and sources.
//!
//! The dashboard's forms (`views/fields.rs`) and the command line (`cli/network.rs`) both
//! parse through these functions, so a rule or record one of them accepts the other
//! accepts too, with the same message. This module only turns text into plan values: it
//! does no I/O and does not check the plan itself (zone exists, names valid); that is
//! `engine::plan`'s job when the edit is applied.

use crate::engine::state::model::RecordValue;
use crate::providers::{Protocol, RecordType};

/// The lowest TTL Legion plans; some DNS providers refuse less.
pub const MIN_TTL: u32 = 30;

/// Why a typed value was refused. The texts are what the form shows beside its field;
/// the CLI prefixes the flag it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The record type's own message (`unknown record type "BOGUS"`).
    #[error("{0}")]
    RecordType(String),
    #[error("a number of seconds, at least {MIN_TTL}")]
    Ttl,
    #[error("tcp, udp or icmp")]
    Protocol,
    #[error("a port (22) or a range (8000-8100)")]
    Port,
    #[error("required for tcp and udp")]
    PortRequired,
    #[error("icmp takes no port")]
    PortForbidden,
    #[error("{0} is not a CIDR (10.0.0.0/8, ::/0)")]
    Cidr(String),
}

/// A record type, in any case: `A`, `aaaa`, `CNAME`...
pub fn record_type(s: &str) -> Result<RecordType, ParseError> {
    // `to_string` keeps this independent of the type's own error type.
    s.parse::<RecordType>()
        .map_err(|e| ParseError::RecordType(e.to_string()))
}

/// A record's value: `@NODE` means that node's address, anything else is literal (a lone
/// `@` too).
pub fn record_value(s: &str) -> RecordValue {
    match s.strip_prefix('@') {
        Some(node) if !node.is_empty() => RecordValue::NodeAddress(node.to_string()),
        _ => RecordValue::Literal(s.to_string()),
    }
}

/// A TTL in seconds, at least [`MIN_TTL`].
pub fn ttl(s: &str) -> Result<u32, ParseError> {
    s.parse::<u32>()
        .map_err(|_| ParseError::Ttl)
        .and_then(check_ttl)
}

/// A TTL already read as a number (the CLI's `--ttl`): at least [`MIN_TTL`].
pub fn check_ttl(ttl: u32) -> Result<u32, ParseError> {
    if ttl >= MIN_TTL {
        Ok(ttl)
    } else {
        Err(ParseError::Ttl)
    }
}

/// `tcp`, `udp` or `icmp`, in any case.
pub fn protocol(s: &str) -> Result<Protocol, ParseError> {
    match s.to_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "icmp" => Ok(Protocol::Icmp),
        _ => Err(ParseError::Protocol),
    }
}

/// A port (`22`) or a range (`8000-8100`, low to high) of ports from 1 to 65535; empty
/// means none given.
pub fn port(s: &str) -> Result<(), ParseError> {
    let one = |p: &str| p.parse::<u16>().ok().filter(|n| *n > 0);
    let ok = match s.split_once('-') {
        _ if s.is_empty() => true,
        None => one(s).is_some(),
        Some((lo, hi)) => matches!((one(lo), one(hi)), (Some(lo), Some(hi)) if lo <= hi),
    };
    if ok { Ok(()) } else { Err(ParseError::Port) }
}

/// Every protocol but icmp needs a port. `protocol` is `None` when it did not parse:
/// the port is then asked for as well, so both mistakes show at once.
pub fn port_required(protocol: Option<Protocol>, port: &str) -> Result<(), ParseError> {
    if protocol != Some(Protocol::Icmp) && port.is_empty() {
        Err(ParseError::PortRequired)
    } else {
        Ok(())
    }
}

/// A comma-separated list of sources (the form's one field), blanks dropped.
pub fn sources(s: &str) -> Vec<String> {
    s.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The first source that is not a CIDR, as an error.
pub fn check_sources(sources: &[String]) -> Result<(), ParseError> {
    match sources.iter().find(|s| !is_cidr(s)) {
        Some(bad) => Err(ParseError::Cidr(bad.clone())),
        None => Ok(()),
    }
}

/// An address with a prefix length that fits it: `10.0.0.0/8`, `::/0`.
pub fn is_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => len <= 32,
        Ok(std::net::IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_values_name_a_node_with_at() {
        assert_eq!(
            record_value("@db"),
            RecordValue::NodeAddress("db".to_string())
        );
        assert_eq!(record_value("@"), RecordValue::Literal("@".to_string()));
        assert_eq!(
            record_value("1.2.3.4"),
            RecordValue::Literal("1.2.3.4".to_string())
        );
    }

    #[test]
    fn record_types_and_ttls() {
        assert_eq!(record_type("aaaa"), Ok(RecordType::AAAA));
        let err = record_type("BOGUS").unwrap_err().to_string();
        assert!(err.contains("unknown record type"), "{err}");
        assert_eq!(ttl("300"), Ok(300));
        assert_eq!(ttl("29"), Err(ParseError::Ttl));
        assert_eq!(ttl("x"), Err(ParseError::Ttl));
        assert_eq!(
            ParseError::Ttl.to_string(),
            "a number of seconds, at least 30"
        );
    }

    #[test]
    fn firewall_rule_parts() {
        assert_eq!(protocol("UDP"), Ok(Protocol::Udp));
        assert_eq!(protocol("gre"), Err(ParseError::Protocol));
        assert_eq!(port(""), Ok(()));
        assert_eq!(port("22"), Ok(()));
        assert_eq!(port("8000-8100"), Ok(()));
        assert_eq!(port("0"), Err(ParseError::Port));
        assert_eq!(port("http"), Err(ParseError::Port));
        assert_eq!(port("70000"), Err(ParseError::Port));
        assert_eq!(port("8100-8000"), Err(ParseError::Port));
        assert_eq!(port("1-2-3"), Err(ParseError::Port));
        assert_eq!(port("1-65535"), Ok(()));
        assert_eq!(
            port_required(Some(Protocol::Tcp), ""),
            Err(ParseError::PortRequired)
        );
        assert_eq!(port_required(None, ""), Err(ParseError::PortRequired));
        assert_eq!(port_required(Some(Protocol::Icmp), ""), Ok(()));
        assert_eq!(
            sources(" 10.0.0.0/8, ,::/0"),
            vec!["10.0.0.0/8".to_string(), "::/0".to_string()]
        );
        assert_eq!(check_sources(&sources("10.0.0.0/8,::/0")), Ok(()));
        assert_eq!(
            check_sources(&["10.0.0.1".to_string()])
                .unwrap_err()
                .to_string(),
            "10.0.0.1 is not a CIDR (10.0.0.0/8, ::/0)"
        );
        assert!(!is_cidr("10.0.0.0/33"));
    }
}
