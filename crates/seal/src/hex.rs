//! Lower-case hex, for keys and roots.

/// Encodes bytes as lower-case hex.
pub fn encode(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// Decodes hex (either case) into exactly `out.len()` bytes.
pub fn decode_into(s: &str, out: &mut [u8]) -> Option<()> {
    let s = s.as_bytes();
    if s.len() != out.len() * 2 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(s[2 * i])? << 4) | nib(s[2 * i + 1])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let mut out = [0u8; 3];
        assert_eq!(super::encode(&[0, 0xab, 0xff]), "00abff");
        super::decode_into("00ABff", &mut out).unwrap();
        assert_eq!(out, [0, 0xab, 0xff]);
        assert!(super::decode_into("0g0000", &mut out).is_none());
        assert!(super::decode_into("00", &mut out).is_none());
    }
}
