//! How every list reads an address range: the configuration, `sensorctl`
//! arguments, block files and allowlist peers follow this one rule.

use std::net::IpAddr;

use ipnet::IpNet;

/// A CIDR, or a bare address meaning that one host. A CIDR with host bits
/// set is refused, naming the network it probably meant: a block of
/// "10.0.0.5/24" is more likely a typo than a wish for 10.0.0.0/24.
pub fn parse(text: &str) -> Result<IpNet, String> {
    let net = text
        .parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a CIDR such as 198.51.100.0/24"))?;
    match host_bits(net) {
        Some(problem) => Err(format!("{text:?} {problem}")),
        None => Ok(net),
    }
}

/// What is wrong with a range whose host bits are set, if they are.
pub fn host_bits(net: IpNet) -> Option<String> {
    (net.trunc() != net).then(|| format!("has host bits set; did you mean {}?", net.trunc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_every_list() {
        assert_eq!(parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse("10.0.0.7").unwrap().to_string(), "10.0.0.7/32");
        assert_eq!(parse("fd00::1").unwrap().to_string(), "fd00::1/128");
        assert!(parse("10.0.0.0/40").is_err());
        assert!(parse("10.0.0.300").is_err());
        assert!(parse("10.0.0.5/24").unwrap_err().contains("10.0.0.0/24"));
        assert!(parse("example.org").is_err());
    }
}
