//! Byte counts as people write them, the same on the command line (`--cache-capacity
//! 500GiB`) and in the YAML configuration (`capacity_bytes: 1.5TiB`): a plain number of
//! bytes, or a number (decimals allowed) with a unit. KiB, MiB, GiB, TiB are powers of
//! 1024; K/KB, M/MB, G/GB, T/TB powers of 1000, as disk vendors and `parse-size` read them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_size::Config::new()
            .parse_size(s.trim())
            .map(ByteSize)
            .map_err(|e| {
                format!("{s:?}: {e}: give a byte count such as 268435456, 256MiB, 1.5GiB or 500GB")
            })
    }
}

/// A byte count for people: `512 B`, `1.5 MiB` (powers of 1024, one decimal).
pub fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Written back as the plain number (`config check --print`).
impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count: a number, or one with a unit (256MiB, 1.5GiB)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{v}: a byte count cannot be negative")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "{v}: a byte count is whole bytes (write 1.5GiB for a fraction of a unit)"
                )))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `deserialize_with` for a configuration key holding bytes (u64, usize or u32): a number
/// or a size with a unit, refused when it does not fit the key's type.
pub fn bytes<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    let b = ByteSize::deserialize(d)?;
    T::try_from(b.0)
        .map_err(|_| serde::de::Error::custom(format!("{}: too large for this key", b.0)))
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn suffixes_binary_and_decimal_and_fractions() {
        let p = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(p("256KiB"), Ok(262_144));
        assert_eq!(p("1MiB"), Ok(1 << 20));
        assert_eq!(p("1.5GiB"), Ok(3 << 29));
        assert_eq!(p("500GB"), Ok(500_000_000_000));
        assert_eq!(p("2G"), Ok(2_000_000_000));
        assert_eq!(p("10kb"), Ok(10_000));
        assert_eq!(p("777"), Ok(777));
        assert_eq!(p(" 100 GiB "), Ok(100 << 30));
        assert!(p("1XB").is_err());
        assert!(p("MiB").is_err());
        assert!(p("-1").is_err());
        assert!(p("99999999999TiB").is_err());
    }

    #[test]
    fn yaml_takes_numbers_and_strings() {
        #[derive(serde::Deserialize)]
        struct K {
            #[serde(deserialize_with = "super::bytes")]
            a: u32,
        }
        let k = |t: &str| {
            serde_yaml::from_str::<K>(t)
                .map(|k| k.a)
                .map_err(|e| e.to_string())
        };
        assert_eq!(k("a: 4096"), Ok(4096));
        assert_eq!(k("a: 64KiB"), Ok(65_536));
        assert_eq!(k("a: 1.5KiB"), Ok(1536));
        assert!(k("a: 8GiB").unwrap_err().contains("too large for this key"));
        assert!(k("a: 1.5").unwrap_err().contains("whole bytes"));
        assert!(k("a: -5").unwrap_err().contains("negative"));
        assert!(k("a: lots").unwrap_err().contains("\"lots\""));
    }
}
