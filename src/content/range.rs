//! The `Range` request header (RFC 9110 §14.2), bytes only, resolved against a known
//! length. A parser apart from any state, so it can be fuzzed alone: it never allocates
//! more than `max_ranges` entries whatever the header holds.

/// One satisfiable range: `start..=end`, both inside the representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a Range header is not served as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `bytes=` followed by comma-separated ranges: answered 416 like an
    /// unsatisfiable one (a client that sent it wanted part, not all, of the object).
    #[error("malformed Range header")]
    Malformed,
    /// More ranges than `content.max_ranges` (a multi-range header is the classic way to
    /// make a server do much work for a short request).
    #[error("more than {0} ranges")]
    TooMany(usize),
    /// Every range starts at or past the end.
    #[error("no range inside the {0} bytes")]
    Unsatisfiable(u64),
    /// A range unit other than bytes: RFC 9110 §14.2 says to ignore the header (the whole
    /// representation is sent).
    #[error("range unit other than bytes")]
    OtherUnit,
}

/// The header's ranges that fall inside `len` bytes, in the order given, each clipped to
/// the end. Ranges wholly past the end are dropped (RFC 9110: satisfiable if any is);
/// none left is `Unsatisfiable`.
pub fn parse(header: &str, len: u64, max_ranges: usize) -> Result<Vec<ByteRange>, RangeError> {
    let (unit, spec) = header.split_once('=').ok_or(RangeError::Malformed)?;
    // Units are case-insensitive tokens (RFC 9110 §14.1).
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Err(RangeError::OtherUnit);
    }
    let mut out = Vec::new();
    let mut seen = 0usize;
    for part in spec.split(',') {
        let part = part.trim();
        // RFC 9110 allows empty list elements ("bytes=0-1,,5-6"); skip them.
        if part.is_empty() {
            continue;
        }
        seen += 1;
        if seen > max_ranges {
            return Err(RangeError::TooMany(max_ranges));
        }
        let (first, last) = part.split_once('-').ok_or(RangeError::Malformed)?;
        let r = match (number(first)?, number(last)?) {
            // "-N": the last N bytes.
            (None, Some(n)) => {
                if n == 0 {
                    continue;
                }
                (len > 0).then(|| ByteRange {
                    start: len.saturating_sub(n),
                    end: len - 1,
                })
            }
            // "A-": from A to the end.
            (Some(a), None) => (a < len).then(|| ByteRange {
                start: a,
                end: len - 1,
            }),
            (Some(a), Some(b)) => {
                if b < a {
                    return Err(RangeError::Malformed);
                }
                (a < len).then(|| ByteRange {
                    start: a,
                    end: b.min(len - 1),
                })
            }
            (None, None) => return Err(RangeError::Malformed),
        };
        if let Some(r) = r {
            out.push(r);
        }
    }
    if seen == 0 {
        return Err(RangeError::Malformed);
    }
    if out.is_empty() {
        return Err(RangeError::Unsatisfiable(len));
    }
    Ok(out)
}

/// Empty: absent; otherwise ASCII digits only (no sign, no spaces inside), and a value
/// that fits: an overlong number is malformed rather than silently clamped.
fn number(s: &str) -> Result<Option<u64>, RangeError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Malformed);
    }
    s.parse().map(Some).map_err(|_| RangeError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn forms() {
        assert_eq!(parse("bytes=0-16383", 65536, 8), Ok(vec![r(0, 16383)]));
        assert_eq!(parse("bytes=65000-", 65536, 8), Ok(vec![r(65000, 65535)]));
        assert_eq!(parse("bytes=-100", 65536, 8), Ok(vec![r(65436, 65535)]));
        assert_eq!(parse("bytes=-100000", 65536, 8), Ok(vec![r(0, 65535)]));
        assert_eq!(
            parse("bytes=60000-99999", 65536, 8),
            Ok(vec![r(60000, 65535)])
        );
        assert_eq!(
            parse("bytes= 0-1 , 10-19,", 65536, 8),
            Ok(vec![r(0, 1), r(10, 19)])
        );
        assert_eq!(parse("BYTES=0-1", 65536, 8), Ok(vec![r(0, 1)]));
        assert_eq!(parse("bytes = 0-1", 65536, 8), Ok(vec![r(0, 1)]));
        assert_eq!(parse("items=0-1", 65536, 8), Err(RangeError::OtherUnit));
    }

    #[test]
    fn past_the_end_is_dropped_or_unsatisfiable() {
        assert_eq!(parse("bytes=0-1,70000-", 65536, 8), Ok(vec![r(0, 1)]));
        assert_eq!(
            parse("bytes=65536-", 65536, 8),
            Err(RangeError::Unsatisfiable(65536))
        );
        assert_eq!(
            parse("bytes=-0", 65536, 8),
            Err(RangeError::Unsatisfiable(65536))
        );
        assert_eq!(parse("bytes=-5", 0, 8), Err(RangeError::Unsatisfiable(0)));
    }

    #[test]
    fn malformed_and_too_many() {
        for h in [
            "",
            "bytes=",
            "bytes=,",
            "0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(parse(h, 100, 8), Err(RangeError::Malformed), "{h:?}");
        }
        let many = format!("bytes={}", ["0-0"; 9].join(","));
        assert_eq!(parse(&many, 100, 8), Err(RangeError::TooMany(8)));
        assert_eq!(parse(&many, 100, 9).map(|v| v.len()), Ok(9));
    }
}
