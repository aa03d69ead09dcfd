//! Byte ranges: the `Content-Range` of a chunk upload and the `Range` of a
//! blob read.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte, inclusive.
    pub start: u64,
    /// Last byte, inclusive.
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("range {0:?} is malformed")]
    Malformed(String),
    #[error("range cannot be satisfied for a blob of {size} bytes")]
    Unsatisfiable { size: u64 },
}

fn parse_pair(s: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = s.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let b = b.trim();
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    Some((start, end))
}

/// Parses an upload chunk's `Content-Range: <start>-<end>` (both inclusive).
/// Docker sends the bare form; `bytes ` and `bytes=` prefixes are tolerated.
pub fn parse_content_range(s: &str) -> Result<ByteRange, RangeError> {
    let bare = s
        .strip_prefix("bytes ")
        .or_else(|| s.strip_prefix("bytes="))
        .unwrap_or(s);
    let bare = bare.split('/').next().unwrap_or(bare);
    match parse_pair(bare) {
        Some((start, Some(end))) if end >= start => Ok(ByteRange { start, end }),
        _ => Err(RangeError::Malformed(s.to_string())),
    }
}

/// Parses a read's `Range: bytes=<start>-[<end>]` or `bytes=-<suffix>` against
/// a blob of `size` bytes. Only single ranges are served.
pub fn parse_range_header(s: &str, size: u64) -> Result<ByteRange, RangeError> {
    let spec = s
        .strip_prefix("bytes=")
        .ok_or_else(|| RangeError::Malformed(s.to_string()))?
        .trim();
    if spec.contains(',') {
        return Err(RangeError::Malformed(s.to_string()));
    }
    if let Some(suffix) = spec.strip_prefix('-') {
        let n: u64 = suffix
            .parse()
            .map_err(|_| RangeError::Malformed(s.to_string()))?;
        if n == 0 || size == 0 {
            return Err(RangeError::Unsatisfiable { size });
        }
        return Ok(ByteRange {
            start: size.saturating_sub(n),
            end: size - 1,
        });
    }
    let (start, end) = parse_pair(spec).ok_or_else(|| RangeError::Malformed(s.to_string()))?;
    if let Some(end) = end
        && end < start
    {
        return Err(RangeError::Malformed(s.to_string()));
    }
    if start >= size {
        return Err(RangeError::Unsatisfiable { size });
    }
    let end = end.map_or(size - 1, |e| e.min(size - 1));
    Ok(ByteRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("0-99"),
            Ok(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            parse_content_range("bytes 10-19/100"),
            Ok(ByteRange { start: 10, end: 19 })
        );
        for bad in ["", "-", "5", "a-b", "10-5", "0-", "-5", "1-2-3"] {
            assert!(parse_content_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn range_header() {
        let r = |s| parse_range_header(s, 100);
        assert_eq!(r("bytes=0-9"), Ok(ByteRange { start: 0, end: 9 }));
        assert_eq!(r("bytes=90-"), Ok(ByteRange { start: 90, end: 99 }));
        assert_eq!(r("bytes=90-500"), Ok(ByteRange { start: 90, end: 99 }));
        assert_eq!(r("bytes=-10"), Ok(ByteRange { start: 90, end: 99 }));
        assert_eq!(r("bytes=-1000"), Ok(ByteRange { start: 0, end: 99 }));
        assert_eq!(
            r("bytes=100-"),
            Err(RangeError::Unsatisfiable { size: 100 })
        );
        assert_eq!(r("bytes=-0"), Err(RangeError::Unsatisfiable { size: 100 }));
        for bad in [
            "0-9",
            "bytes=",
            "bytes=a-",
            "bytes=5-1",
            "bytes=0-1,3-4",
            "items=0-1",
        ] {
            assert!(matches!(r(bad), Err(RangeError::Malformed(_))), "{bad:?}");
        }
        assert_eq!(ByteRange { start: 3, end: 3 }.len(), 1);
    }
}
