//! Magnet links (BEP 9's `magnet:?xt=urn:btih:…`) as an operator posts them: the info-hash
//! (40 hex digits, or 32 base32 characters) and the peers given with `x.pe`. Trackers
//! (`tr`) are ignored: the box never announces.

use std::net::SocketAddr;

use thiserror::Error;

use crate::wire::infohash::InfoHash;

/// At most this many `x.pe` peers are taken from one link.
pub const MAX_PEERS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    pub name: Option<String>,
    /// `x.pe` peers, in the order given.
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MagnetError {
    #[error("not a magnet link (no \"magnet:?\")")]
    NotMagnet,
    #[error("no xt=urn:btih: info-hash (v2-only btmh links are not supported)")]
    NoInfoHash,
    #[error("bad info-hash {0:?}: 40 hex digits or 32 base32 characters")]
    BadInfoHash(String),
    #[error("bad x.pe peer {0:?}: IP:PORT")]
    BadPeer(String),
}

pub fn parse(link: &str) -> Result<Magnet, MagnetError> {
    let query = link
        .trim()
        .strip_prefix("magnet:?")
        .ok_or(MagnetError::NotMagnet)?;
    let (mut info_hash, mut name, mut peers) = (None, None, Vec::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "xt" => {
                if let Some(h) = v.strip_prefix("urn:btih:") {
                    info_hash = Some(btih(h)?);
                }
            }
            "dn" => name = Some(v.into_owned()),
            "x.pe" if peers.len() < MAX_PEERS => peers.push(
                v.parse::<SocketAddr>()
                    .map_err(|_| MagnetError::BadPeer(v.to_string()))?,
            ),
            _ => {}
        }
    }
    Ok(Magnet {
        info_hash: info_hash.ok_or(MagnetError::NoInfoHash)?,
        name,
        peers,
    })
}

fn btih(h: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(h.to_string());
    match h.len() {
        40 => h.parse().map_err(|_| bad()),
        32 => base32(h).map(InfoHash::from).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// RFC 4648 base32 of exactly 20 bytes (32 characters, no padding), either case.
fn base32(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let (mut acc, mut bits, mut n) = (0u64, 0u32, 0usize);
    for c in s.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
        }
    }
    (n == 20).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn hex_and_base32_name_the_same_swarm() {
        let a = parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=x")).unwrap();
        // The same 20 bytes in base32 (RFC 4648), as older clients write them.
        let b = parse("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(a.info_hash, b.info_hash);
        assert_eq!(a.info_hash.to_string(), HEX);
        assert_eq!(a.name.as_deref(), Some("x"));
    }

    #[test]
    fn peers_in_order_percent_decoded() {
        let m = parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&x.pe=198.19.0.2:6881&tr=http%3A%2F%2Ft%2Fa&x.pe=%5B2001%3Adb8%3A%3A1%5D%3A51413"
        ))
        .unwrap();
        assert_eq!(
            m.peers,
            vec![
                "198.19.0.2:6881".parse().unwrap(),
                "[2001:db8::1]:51413".parse().unwrap()
            ]
        );
    }

    #[test]
    fn bad_links_say_why() {
        assert_eq!(parse("http://x"), Err(MagnetError::NotMagnet));
        assert_eq!(parse("magnet:?dn=x"), Err(MagnetError::NoInfoHash));
        assert!(matches!(
            parse("magnet:?xt=urn:btih:abc"),
            Err(MagnetError::BadInfoHash(_))
        ));
        assert!(matches!(
            parse("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKE1"),
            Err(MagnetError::BadInfoHash(_))
        ));
        assert!(matches!(
            parse(&format!("magnet:?xt=urn:btih:{HEX}&x.pe=nohost")),
            Err(MagnetError::BadPeer(_))
        ));
    }
}
