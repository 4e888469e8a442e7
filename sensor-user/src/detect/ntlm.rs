//! NTLM messages [MS-NLMP 2.2.1], as far as the detectors need them: the
//! account an AUTHENTICATE message names. The message travels in clear
//! inside LDAP binds and SMB session setups, even when the session that
//! follows is signed or sealed.

/// The "DOMAIN\user" of an NTLM AUTHENTICATE message found in `b`.
pub fn ntlm_user(b: &[u8]) -> Option<String> {
    const SIGNATURE: &[u8] = b"NTLMSSP\0";
    let at = b.windows(SIGNATURE.len()).position(|w| w == SIGNATURE)?;
    let m = &b[at..];
    let u32_at = |i: usize| Some(u32::from_le_bytes(m.get(i..i + 4)?.try_into().ok()?));
    let u16_at = |i: usize| Some(u16::from_le_bytes(m.get(i..i + 2)?.try_into().ok()?));
    if u32_at(8)? != 3 {
        return None;
    }
    // NTLMSSP_NEGOTIATE_UNICODE: the strings are UTF-16LE, else OEM.
    let unicode = u32_at(60)? & 1 != 0;
    let field = |at: usize| -> Option<String> {
        let (len, offset) = (u16_at(at)? as usize, u32_at(at + 4)? as usize);
        let raw = m.get(offset..offset.checked_add(len)?)?;
        Some(if unicode {
            super::text::utf16le(raw)
        } else {
            String::from_utf8_lossy(raw).into_owned()
        })
    };
    let (domain, user) = (field(28)?, field(36)?);
    if user.is_empty() {
        // An anonymous AUTHENTICATE names nobody.
        return None;
    }
    let user = super::text::printable(&user).to_lowercase();
    Some(if domain.is_empty() {
        user
    } else {
        format!("{}\\{user}", super::text::printable(&domain).to_lowercase())
    })
}

#[cfg(test)]
pub mod tests {
    /// An NTLM AUTHENTICATE message for DOMAIN\user (UTF-16LE).
    pub fn ntlm_authenticate(domain: &str, user: &str) -> Vec<u8> {
        let utf16 =
            |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect() };
        let (d, u) = (utf16(domain), utf16(user));
        let mut m = b"NTLMSSP\0".to_vec();
        m.extend(3u32.to_le_bytes());
        let header = 64u32;
        let field = |len: usize, offset: u32| -> Vec<u8> {
            [(len as u16).to_le_bytes(), (len as u16).to_le_bytes()]
                .concat()
                .into_iter()
                .chain(offset.to_le_bytes())
                .collect()
        };
        m.extend(field(0, header)); // LM response
        m.extend(field(0, header)); // NT response
        m.extend(field(d.len(), header)); // domain, at 28
        m.extend(field(u.len(), header + d.len() as u32)); // user, at 36
        m.extend(field(0, header)); // workstation
        m.extend(field(0, header)); // session key
        m.extend(1u32.to_le_bytes()); // flags: unicode
        assert_eq!(m.len(), header as usize);
        m.extend(d);
        m.extend(u);
        m
    }
}
