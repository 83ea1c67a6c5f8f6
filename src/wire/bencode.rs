//! Bencode (BEP 3) decoder over borrowed bytes, bounded in nesting depth and item count so
//! a hostile peer cannot make us recurse or allocate without limit. Dictionaries keep their
//! raw span because the info-hash is SHA-1 over the exact bytes of the info dictionary.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BencodeError {
    #[error("unexpected end of input")]
    Eof,
    #[error("invalid bencode at byte {0}")]
    Invalid(usize),
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    #[error("more than {0} items")]
    TooMany(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict {
        entries: Vec<(&'a [u8], Value<'a>)>,
        raw: &'a [u8],
    },
}

impl<'a> Value<'a> {
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match self {
            Value::Dict { entries, .. } => entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn entries(&self) -> &[(&'a [u8], Value<'a>)] {
        match self {
            Value::Dict { entries, .. } => entries,
            _ => &[],
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_depth: usize,
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 32,
            max_items: 100_000,
        }
    }
}

/// Decode one value at the start of `buf`; returns it and how many bytes it used. Trailing
/// bytes are the caller's (ut_metadata data messages carry raw bytes after the dictionary).
pub fn decode_prefix(buf: &[u8], limits: Limits) -> Result<(Value<'_>, usize), BencodeError> {
    let mut d = Decoder {
        buf,
        pos: 0,
        items: 0,
        limits,
    };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    items: usize,
    limits: Limits,
}

impl<'a> Decoder<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.buf.get(self.pos).copied().ok_or(BencodeError::Eof)
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        if depth > self.limits.max_depth {
            return Err(BencodeError::TooDeep(self.limits.max_depth));
        }
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(BencodeError::TooMany(self.limits.max_items));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let end = self.find(b'e')?;
                let n =
                    parse_int(&self.buf[self.pos..end]).ok_or(BencodeError::Invalid(self.pos))?;
                self.pos = end + 1;
                Ok(Value::Int(n))
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                let start = self.pos;
                self.pos += 1;
                let mut entries = Vec::new();
                while self.peek()? != b'e' {
                    let key = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                }
                self.pos += 1;
                Ok(Value::Dict {
                    entries,
                    raw: &self.buf[start..self.pos],
                })
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?)),
            _ => Err(BencodeError::Invalid(self.pos)),
        }
    }

    fn find(&self, b: u8) -> Result<usize, BencodeError> {
        // Integers and length prefixes are short; a missing terminator within 32 bytes is
        // garbage, not a reason to scan a whole buffer.
        let window = &self.buf[self.pos..self.buf.len().min(self.pos + 32)];
        match window.iter().position(|&c| c == b) {
            Some(i) => Ok(self.pos + i),
            None if self.buf.len() < self.pos + 32 => Err(BencodeError::Eof),
            None => Err(BencodeError::Invalid(self.pos)),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let colon = self.find(b':')?;
        let digits = &self.buf[self.pos..colon];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(BencodeError::Invalid(self.pos));
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(BencodeError::Invalid(self.pos))?;
        let start = colon + 1;
        let end = start
            .checked_add(len)
            .ok_or(BencodeError::Invalid(self.pos))?;
        let out = self.buf.get(start..end).ok_or(BencodeError::Eof)?;
        self.pos = end;
        Ok(out)
    }
}

fn parse_int(s: &[u8]) -> Option<i64> {
    let txt = std::str::from_utf8(s).ok()?;
    // BEP 3: no leading zeros, no "-0".
    let digits = txt.strip_prefix('-').unwrap_or(txt);
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) || txt == "-0" {
        return None;
    }
    txt.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_with_raw_span_and_trailing_bytes() {
        let buf = b"d8:msg_typei1e5:piecei0e10:total_sizei3ee\x01\x02\x03";
        let (v, used) = decode_prefix(buf, Limits::default()).unwrap();
        assert_eq!(used, buf.len() - 3);
        assert_eq!(v.get(b"total_size").and_then(Value::as_int), Some(3));
        match v {
            Value::Dict { raw, .. } => assert_eq!(raw, &buf[..used]),
            _ => panic!("not a dict"),
        }
    }

    #[test]
    fn bounded() {
        let deep = "l".repeat(100) + &"e".repeat(100);
        assert_eq!(
            decode_prefix(deep.as_bytes(), Limits::default()),
            Err(BencodeError::TooDeep(32))
        );
        assert!(decode_prefix(b"i03e", Limits::default()).is_err());
        assert!(decode_prefix(b"4:ab", Limits::default()).is_err());
        assert!(decode_prefix(b"99999999999999999999999:a", Limits::default()).is_err());
    }
}
