//! [`InfoHash`]: a swarm's identity, the SHA-1 of its info dictionary. Written as 40
//! lowercase hex digits wherever it leaves the program (reports, logs, audit lines, file
//! names), and read back from 40 hex digits of either case.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// An info-hash (BitTorrent v1: 20 bytes).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash([u8; 20]);

/// Text that is not 40 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("info-hash must be 40 hex digits, got {0:?}")]
pub struct InfoHashError(pub String);

impl InfoHash {
    pub const fn new(bytes: [u8; 20]) -> InfoHash {
        InfoHash(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl From<[u8; 20]> for InfoHash {
    fn from(b: [u8; 20]) -> InfoHash {
        InfoHash(b)
    }
}

impl From<InfoHash> for [u8; 20] {
    fn from(h: InfoHash) -> [u8; 20] {
        h.0
    }
}

impl AsRef<[u8]> for InfoHash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for InfoHash {
    type Err = InfoHashError;

    /// Exactly 40 hex digits, either case. Checked digit by digit: `from_str_radix` alone
    /// would also take a `+` sign.
    fn from_str(s: &str) -> Result<InfoHash, InfoHashError> {
        let bad = || InfoHashError(s.to_owned());
        let digits = s.as_bytes();
        if digits.len() != 40 {
            return Err(bad());
        }
        let mut out = [0u8; 20];
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
                return Err(bad());
            };
            *o = (hi << 4) | lo;
        }
        Ok(InfoHash(out))
    }
}

fn nibble(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

impl Serialize for InfoHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InfoHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Lowercase hex of any bytes (digests in reports; an info-hash has its own `Display`).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "bf31b5eba75965210f1ab47d4312b4c87493bb93";

    #[test]
    fn text_round_trip() {
        let ih: InfoHash = TEXT.parse().unwrap();
        assert_eq!(ih.to_string(), TEXT);
        assert_eq!(format!("{ih:?}"), TEXT);
        assert_eq!(hex(ih.as_bytes()), TEXT);
        let upper: InfoHash = TEXT.to_uppercase().parse().unwrap();
        assert_eq!(upper, ih);
        assert_eq!(InfoHash::from(*ih.as_bytes()), ih);
    }

    #[test]
    fn refuses_what_is_not_40_hex_digits() {
        for bad in [
            "",
            &TEXT[..39],
            &format!("{TEXT}0"),
            &format!("+{}", &TEXT[1..]),
            &format!("g{}", &TEXT[1..]),
            &format!("é{}", &TEXT[2..]),
        ] {
            let e = bad.parse::<InfoHash>().unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("info-hash must be 40 hex digits, got {bad:?}")
            );
        }
    }

    #[test]
    fn serde_as_the_hex_string() {
        let ih: InfoHash = TEXT.parse().unwrap();
        let json = serde_json::to_string(&ih).unwrap();
        assert_eq!(json, format!("\"{TEXT}\""));
        assert_eq!(serde_json::from_str::<InfoHash>(&json).unwrap(), ih);
        assert!(serde_json::from_str::<InfoHash>("\"00\"").is_err());
    }
}
