//! Scaleway Domains zones and records and their mapping to Legion's RRsets (relative
//! names, TXT quoting). Nothing here does I/O.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::providers::{ObservedZone, RecordType, RrSet};

#[derive(Debug, Clone, Deserialize)]
pub(in crate::providers::scaleway) struct DnsZone {
    pub domain: String,
    #[serde(default)]
    pub subdomain: String,
    #[serde(default)]
    pub ns: Vec<String>,
}

impl DnsZone {
    /// The zone's full name, its id in the Domains API.
    pub fn full_name(&self) -> String {
        if self.subdomain.is_empty() {
            self.domain.clone()
        } else {
            format!("{}.{}", self.subdomain, self.domain)
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(in crate::providers::scaleway) struct Record {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default)]
    pub data: String,
    #[serde(default)]
    pub ttl: u32,
}

/// Legion's `@` is Scaleway's empty name.
pub(in crate::providers::scaleway) fn record_name(name: &str) -> String {
    if name == "@" {
        String::new()
    } else {
        name.to_string()
    }
}

fn txt_unquote(data: &str) -> String {
    data.strip_prefix('"')
        .and_then(|d| d.strip_suffix('"'))
        .unwrap_or(data)
        .to_string()
}

/// A record's value as Legion writes it (TXT without quotes).
pub(in crate::providers::scaleway) fn record_value(r: &Record) -> String {
    if r.rtype == "TXT" {
        txt_unquote(&r.data)
    } else {
        r.data.clone()
    }
}

/// Records grouped into RRsets, in the order first seen.
pub(in crate::providers::scaleway) fn rrsets_from(records: &[Record]) -> Vec<RrSet> {
    let mut out: Vec<RrSet> = Vec::new();
    for r in records {
        let Ok(rtype) = r.rtype.parse::<RecordType>() else {
            continue;
        };
        let name = if r.name.is_empty() {
            "@".to_string()
        } else {
            r.name.clone()
        };
        match out.iter_mut().find(|s| s.name == name && s.rtype == rtype) {
            Some(set) => set.values.push(record_value(r)),
            None => out.push(RrSet {
                name,
                rtype,
                ttl: r.ttl,
                values: vec![record_value(r)],
            }),
        }
    }
    out
}

/// The records of one RRset, as the Domains API takes them.
pub(in crate::providers::scaleway) fn records_for(rrset: &RrSet) -> Vec<Value> {
    rrset
        .values
        .iter()
        .map(|v| {
            let data = if rrset.rtype == RecordType::TXT && !v.starts_with('"') {
                format!("\"{v}\"")
            } else {
                v.clone()
            };
            json!({
                "name": record_name(&rrset.name),
                "type": rrset.rtype.to_string(),
                "data": data,
                "ttl": rrset.ttl,
            })
        })
        .collect()
}

pub(in crate::providers::scaleway) fn observed_zone(
    z: &DnsZone,
    records: &[Record],
) -> ObservedZone {
    ObservedZone {
        id: z.full_name(),
        name: z.full_name(),
        nameservers: z.ns.clone(),
        rrsets: rrsets_from(records),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn records_group_into_rrsets_and_txt_is_unquoted() {
        let records: Vec<Record> = serde_json::from_value(json!([
            {"name": "", "type": "TXT", "data": "\"v=spf1 -all\"", "ttl": 300},
            {"name": "web", "type": "A", "data": "192.0.2.1", "ttl": 600},
            {"name": "web", "type": "A", "data": "192.0.2.2", "ttl": 600},
        ]))
        .unwrap();
        let sets = rrsets_from(&records);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].name, "@");
        assert_eq!(sets[0].values, ["v=spf1 -all"]);
        assert_eq!(sets[1].values.len(), 2);
        assert_eq!(records_for(&sets[0])[0]["data"], "\"v=spf1 -all\"");
        assert_eq!(records_for(&sets[0])[0]["name"], "");
    }
}
