//! A reader of ASN.1 DER and BER with definite lengths (X.690), enough
//! for the protocols the detectors read: Kerberos [RFC 4120 5] and LDAP
//! [RFC 4511 5.1], whose messages come in payload samples that may be cut
//! short. Single-byte tags only; what lies past the sample is cut, never
//! read.

/// One element: its tag byte, its contents (cut at the sample's end),
/// the bytes it takes in full (header and declared length), and whether
/// the sample holds all of it.
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
    pub len: usize,
    pub complete: bool,
}

/// Reads the element at the start of `b`.
pub fn tlv(b: &[u8]) -> Option<Tlv<'_>> {
    let tag = *b.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *b.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if header > b.len() {
        return None;
    }
    Some(Tlv {
        tag,
        value: &b[header..end.min(b.len())],
        len: end,
        complete: end <= b.len(),
    })
}

/// The elements of a constructed value, in order, as far as the sample
/// holds them.
pub fn elements(mut b: &[u8]) -> Vec<Tlv<'_>> {
    let mut out = Vec::new();
    while let Some(t) = tlv(b) {
        let at = t.len.min(b.len());
        out.push(t);
        if at == 0 || at >= b.len() {
            break;
        }
        b = &b[at..];
    }
    out
}

/// The contents of context tag `[n]` (constructed) among `fields`.
pub fn field<'a>(fields: &[Tlv<'a>], n: u8) -> Option<&'a [u8]> {
    fields.iter().find(|t| t.tag == 0xa0 | n).map(|t| t.value)
}

/// The elements of the SEQUENCE at the start of `b`.
pub fn sequence(b: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let t = tlv(b)?;
    (t.tag == 0x30).then(|| elements(t.value))
}

/// The INTEGER at the start of `b`.
pub fn integer(b: &[u8]) -> Option<i64> {
    integer_of(&tlv(b)?)
}

/// An INTEGER (tag 2) or ENUMERATED (tag 10) element's value, whole.
pub fn integer_of(t: &Tlv<'_>) -> Option<i64> {
    if (t.tag != 0x02 && t.tag != 0x0a) || !t.complete || t.value.is_empty() || t.value.len() > 8 {
        return None;
    }
    // Two's complement, big-endian.
    let mut v: i64 = if t.value[0] & 0x80 != 0 { -1 } else { 0 };
    for byte in t.value {
        v = (v << 8) | *byte as i64;
    }
    Some(v)
}

#[cfg(test)]
pub mod tests {
    /// A DER element (short or long definite length), for crafting
    /// messages in tests.
    pub fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = contents.len();
        if n < 0x80 {
            v.push(n as u8);
        } else if n < 0x100 {
            v.extend([0x81, n as u8]);
        } else {
            v.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        v.extend_from_slice(contents);
        v
    }
}
