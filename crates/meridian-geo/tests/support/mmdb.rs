//! A small writer of MaxMind DB (`.mmdb`) files, format version 2.0, so GeoIP lookups can be
//! tested on databases made here rather than downloaded.
//!
//! The layout: a binary search tree over address bits (one node per bit, two records per
//! node), 16 zero bytes, the data section, then `\xAB\xCD\xEFMaxMind.com` and the metadata map.
//! A record below `node_count` is a node, equal to it means "no data", above it points into
//! the data section at `record - node_count - 16`. An IPv6 database (`ip_version` 6) keeps IPv4
//! networks under `::/96`, as real databases do.

use std::collections::HashMap;
use std::net::IpAddr;

/// A value of the MaxMind DB data section.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// UTF-8 string (type 2).
    Str(String),
    /// IEEE 754 double (type 3).
    Double(f64),
    /// Unsigned 16-bit integer (type 5).
    U16(u16),
    /// Unsigned 32-bit integer (type 6).
    U32(u32),
    /// Map with string keys (type 7).
    Map(Vec<(String, Value)>),
    /// Unsigned 64-bit integer (extended type 9).
    U64(u64),
    /// Array (extended type 11).
    Array(Vec<Value>),
    /// Boolean (extended type 14).
    Bool(bool),
    /// A value written once in the data section and reached through pointers (type 1)
    /// wherever it appears again, as real databases share countries and continents.
    Shared(Box<Value>),
}

/// `Value::Str`.
pub fn s(text: &str) -> Value {
    Value::Str(text.to_string())
}

/// `Value::Map` from pairs.
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

const TYPE_POINTER: u8 = 1;
const TYPE_STRING: u8 = 2;
const TYPE_DOUBLE: u8 = 3;
const TYPE_U16: u8 = 5;
const TYPE_U32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_U64: u8 = 9;
const TYPE_ARRAY: u8 = 11;
const TYPE_BOOL: u8 = 14;

/// Control byte(s) for a value of `type_num` whose size field is `size`.
fn control(out: &mut Vec<u8>, type_num: u8, size: usize) {
    let (field, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else if size < 65_821 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        assert!(size < 65_821 + (1 << 24), "value too large for the format");
        (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
    };
    if type_num <= 7 {
        out.push((type_num << 5) | field);
    } else {
        out.push(field);
        out.push(type_num - 7);
    }
    out.extend(extra);
}

/// An unsigned integer in as few big-endian bytes as it needs.
fn uint(out: &mut Vec<u8>, type_num: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, type_num, 8 - skip);
    out.extend(&bytes[skip..]);
}

/// Data written so far and where each shared value landed.
#[derive(Default)]
struct DataSection {
    bytes: Vec<u8>,
    shared: HashMap<Vec<u8>, usize>,
}

impl DataSection {
    /// Appends `value` and returns its offset in the section.
    fn add(&mut self, value: &Value) -> usize {
        let mut out = Vec::new();
        self.encode(value, &mut out);
        let offset = self.bytes.len();
        self.bytes.extend(out);
        offset
    }

    fn encode(&mut self, value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Str(text) => {
                control(out, TYPE_STRING, text.len());
                out.extend(text.as_bytes());
            }
            Value::Double(d) => {
                control(out, TYPE_DOUBLE, 8);
                out.extend(d.to_be_bytes());
            }
            Value::U16(n) => uint(out, TYPE_U16, u64::from(*n)),
            Value::U32(n) => uint(out, TYPE_U32, u64::from(*n)),
            Value::U64(n) => uint(out, TYPE_U64, *n),
            Value::Map(pairs) => {
                control(out, TYPE_MAP, pairs.len());
                for (key, value) in pairs {
                    self.encode(&Value::Str(key.clone()), out);
                    self.encode(value, out);
                }
            }
            Value::Array(items) => {
                control(out, TYPE_ARRAY, items.len());
                for item in items {
                    self.encode(item, out);
                }
            }
            Value::Bool(b) => control(out, TYPE_BOOL, usize::from(*b)),
            Value::Shared(inner) => {
                // Written whole before the value that refers to it, which is appended to the
                // section only once it is complete.
                let mut bytes = Vec::new();
                self.encode(inner, &mut bytes);
                let offset = match self.shared.get(&bytes) {
                    Some(offset) => *offset,
                    None => {
                        let offset = self.bytes.len();
                        self.bytes.extend(&bytes);
                        self.shared.insert(bytes, offset);
                        offset
                    }
                };
                pointer(out, offset);
            }
        }
    }
}

/// A pointer to `offset` in the data section: 11 bits when it fits, else 32.
fn pointer(out: &mut Vec<u8>, offset: usize) {
    if offset < 2048 {
        out.push((TYPE_POINTER << 5) | ((offset >> 8) as u8));
        out.push(offset as u8);
    } else {
        out.push((TYPE_POINTER << 5) | (3 << 3));
        out.extend((offset as u32).to_be_bytes());
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Record {
    Empty,
    Node(usize),
    Data(usize),
}

/// Networks and their records, written out by [`Writer::build`].
pub struct Writer {
    ip_version: u16,
    record_size: u16,
    database_type: String,
    /// (address bits right-aligned in a tree of depth 32 or 128, prefix length in the tree,
    /// record)
    networks: Vec<(u128, u8, Value)>,
}

impl Writer {
    /// An empty database: `ip_version` 4 or 6, `record_size` 24, 28 or 32 bits.
    pub fn new(ip_version: u16, record_size: u16, database_type: &str) -> Self {
        assert!(matches!(ip_version, 4 | 6));
        assert!(matches!(record_size, 24 | 28 | 32));
        Self {
            ip_version,
            record_size,
            database_type: database_type.to_string(),
            networks: Vec::new(),
        }
    }

    fn depth(&self) -> u8 {
        if self.ip_version == 6 {
            128
        } else {
            32
        }
    }

    /// Adds `cidr` (`192.0.2.0/24`, `2001:db8::/32`) with its record. In an IPv6 database an
    /// IPv4 network goes under `::/96`.
    pub fn insert(&mut self, cidr: &str, value: Value) -> &mut Self {
        let (addr, prefix) = cidr.split_once('/').expect("a cidr with a prefix length");
        let addr: IpAddr = addr.parse().expect("an address");
        let prefix: u8 = prefix.parse().expect("a prefix length");
        let (bits, prefix) = match (addr, self.ip_version) {
            (IpAddr::V4(a), 4) => (u128::from(u32::from(a)), prefix),
            (IpAddr::V4(a), _) => (u128::from(u32::from(a)), 96 + prefix),
            (IpAddr::V6(a), 6) => (u128::from(a), prefix),
            (IpAddr::V6(_), _) => panic!("an IPv6 network in an IPv4 database"),
        };
        assert!(
            (1..=self.depth()).contains(&prefix),
            "prefix of {cidr} out of range"
        );
        self.networks.push((bits, prefix, value));
        self
    }

    /// The database file.
    pub fn build(&self) -> Vec<u8> {
        let depth = self.depth();
        let mut data = DataSection::default();
        let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
        // Shorter networks first: a longer one inside them then splits their records.
        let mut order: Vec<&(u128, u8, Value)> = self.networks.iter().collect();
        order.sort_by_key(|(_, prefix, _)| *prefix);
        for (bits, prefix, value) in order {
            let record = Record::Data(data.add(value));
            let mut node = 0;
            for i in 0..*prefix {
                let bit = ((bits >> (depth - 1 - i)) & 1) as usize;
                if i + 1 == *prefix {
                    nodes[node][bit] = record;
                    break;
                }
                node = match nodes[node][bit] {
                    Record::Node(next) => next,
                    below => {
                        // Empty, or a shorter network's data that now splits in two.
                        nodes.push([below; 2]);
                        nodes[node][bit] = Record::Node(nodes.len() - 1);
                        nodes.len() - 1
                    }
                };
            }
        }

        let node_count = nodes.len();
        let value_of = |r: Record| -> u32 {
            let v = match r {
                Record::Empty => node_count,
                Record::Node(n) => n,
                Record::Data(offset) => node_count + 16 + offset,
            };
            assert!(
                (v as u64) < 1u64 << self.record_size,
                "record does not fit in {} bits",
                self.record_size
            );
            v as u32
        };
        let mut out = Vec::new();
        for [left, right] in nodes {
            let (l, r) = (value_of(left), value_of(right));
            match self.record_size {
                24 => {
                    out.extend(&l.to_be_bytes()[1..]);
                    out.extend(&r.to_be_bytes()[1..]);
                }
                28 => {
                    out.extend(&l.to_be_bytes()[1..]);
                    out.push((((l >> 24) & 0x0F) << 4) as u8 | ((r >> 24) & 0x0F) as u8);
                    out.extend(&r.to_be_bytes()[1..]);
                }
                _ => {
                    out.extend(l.to_be_bytes());
                    out.extend(r.to_be_bytes());
                }
            }
        }
        out.extend([0u8; 16]);
        out.extend(&data.bytes);
        out.extend(b"\xAB\xCD\xEFMaxMind.com");
        let metadata = map([
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(1_767_225_600)),
            ("database_type", s(&self.database_type)),
            ("description", map([("en", s("Meridian test database"))])),
            ("ip_version", Value::U16(self.ip_version)),
            ("languages", Value::Array(vec![s("en")])),
            ("node_count", Value::U32(node_count as u32)),
            ("record_size", Value::U16(self.record_size)),
        ]);
        // Metadata has its own decoding base; pointers are not used in it.
        let mut meta = DataSection::default();
        meta.add(&metadata);
        out.extend(meta.bytes);
        out
    }
}

/// A City-shaped record as GeoLite2-City has them, with the fields Meridian reads and a few
/// it must skip.
pub fn city(latitude: f64, longitude: f64, country: &str) -> Value {
    map([
        (
            "city",
            map([
                ("geoname_id", Value::U32(2_950_159)),
                (
                    "names",
                    map([("en", s("Somewhere")), ("de", s("Irgendwo"))]),
                ),
            ]),
        ),
        (
            "continent",
            Value::Shared(Box::new(map([
                ("code", s("EU")),
                ("geoname_id", Value::U32(6_255_148)),
            ]))),
        ),
        (
            "country",
            Value::Shared(Box::new(map([
                ("geoname_id", Value::U32(2_921_044)),
                ("is_in_european_union", Value::Bool(true)),
                ("iso_code", s(country)),
                ("names", map([("en", s(country))])),
            ]))),
        ),
        (
            "location",
            map([
                ("accuracy_radius", Value::U16(200)),
                ("latitude", Value::Double(latitude)),
                ("longitude", Value::Double(longitude)),
                ("time_zone", s("Europe/Berlin")),
            ]),
        ),
        (
            "subdivisions",
            Value::Array(vec![map([("iso_code", s("BE"))])]),
        ),
    ])
}
