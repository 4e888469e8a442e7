//! DCE/RPC connection-oriented PDUs, read from the payload the sensor
//! samples of RPC flows, whatever carries them: TCP (port 135 and the
//! dynamic ports the endpoint mapper hands out) or named pipes over SMB.
//!
//! The headers that name what a client does stay in clear even when the
//! call's stub data is signed or sealed (packet privacy encrypts the stub
//! only): a bind or alter-context names each presentation context's
//! interface, and a request names its context and operation number.
//! Layouts from The Open Group's C706 (DCE 1.1: RPC), chapter 12, and
//! [MS-RPCE] 2.2.2.

use std::fmt;

/// PDU types [C706 12.6.4.1]; the version and the bind type are the
/// datapath's too (`is_dcerpc_pdu`, which picks the flows to sample).
pub use sensor_common::telemetry::{DCERPC_PTYPE_BIND as PTYPE_BIND, DCERPC_VERSION as VERSION};
pub const PTYPE_REQUEST: u8 = 0;
pub const PTYPE_BIND_ACK: u8 = 12;
pub const PTYPE_ALTER_CONTEXT: u8 = 14;
pub const PTYPE_ALTER_CONTEXT_RESP: u8 = 15;

/// `pfc_flags`: the first fragment of a call. (An object UUID, flag
/// 0x80, follows the opnum, so it moves nothing read here.)
const PFC_FIRST_FRAG: u8 = 0x01;
/// A request carries an object UUID after its opnum [C706 12.6.3.1].
const PFC_OBJECT_UUID: u8 = 0x80;

/// The common header: version, type, flags, data representation, fragment
/// and authenticator lengths, call id.
const HEADER_LEN: usize = 16;

/// An interface UUID in its textual byte order (the first three fields
/// big-endian), whatever the sender's data representation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// From its text, for the tables below (`const`, so a typo fails to
    /// compile).
    pub const fn parse(text: &str) -> Uuid {
        let t = text.as_bytes();
        let mut out = [0u8; 16];
        let mut i = 0;
        let mut n = 0;
        while i < t.len() {
            if t[i] == b'-' {
                i += 1;
                continue;
            }
            out[n] = hex(t[i]) << 4 | hex(t[i + 1]);
            n += 1;
            i += 2;
        }
        assert!(n == 16, "a UUID has 16 bytes");
        Uuid(out)
    }

    /// As a PDU carries it: `little` when the sender's integers are
    /// little-endian (the first three fields byte-swapped).
    fn from_wire(b: &[u8], little: bool) -> Uuid {
        let mut u = [0u8; 16];
        u.copy_from_slice(&b[..16]);
        Uuid(swap_fields(u, little))
    }

    /// Its bytes as a sender with that byte order puts them in a PDU.
    pub fn to_wire(self, little: bool) -> [u8; 16] {
        swap_fields(self.0, little)
    }
}

/// Swaps the first three fields' bytes (a 32-bit and two 16-bit integers)
/// for a little-endian sender; the swap is its own inverse.
fn swap_fields(mut u: [u8; 16], little: bool) -> [u8; 16] {
    if little {
        u[0..4].reverse();
        u[4..6].reverse();
        u[6..8].reverse();
    }
    u
}

const fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit"),
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match name_of(*self) {
            Some(name) => f.write_str(name),
            None => write!(f, "{self:?}"),
        }
    }
}

/// Interfaces the detectors name, with the specification of each.
pub const SVCCTL: Uuid = Uuid::parse("367abb81-9844-35f1-ad32-98f038001003"); // MS-SCMR
pub const ATSVC: Uuid = Uuid::parse("1ff70682-0a51-30e8-076d-740be8cee98b"); // MS-TSCH 3.2.5.2
pub const SASEC: Uuid = Uuid::parse("378e52b0-c0a9-11cf-822d-00aa0051e40f"); // MS-TSCH 3.2.5.3
pub const TASK_SCHEDULER: Uuid = Uuid::parse("86d35949-83c9-4044-b424-db363231fd0c"); // MS-TSCH 3.2.5.4
pub const EPMAPPER: Uuid = Uuid::parse("e1af8308-5d1f-11c9-91a4-08002b14a0fa"); // MS-RPCE 2.2.1.2
pub const WINREG: Uuid = Uuid::parse("338cd001-2244-31f1-aaaa-900038001003"); // MS-RRP
pub const EVENTLOG: Uuid = Uuid::parse("82273fdc-e32a-18c3-3f78-827929dc23ea"); // MS-EVEN
pub const EVEN6: Uuid = Uuid::parse("f6beaff7-1e19-4fbb-9f8f-b89e2018337c"); // MS-EVEN6
pub const LSARPC: Uuid = Uuid::parse("12345778-1234-abcd-ef00-0123456789ab"); // MS-LSAT
pub const SAMR: Uuid = Uuid::parse("12345778-1234-abcd-ef00-0123456789ac"); // MS-SAMR
pub const SRVSVC: Uuid = Uuid::parse("4b324fc8-1670-01d3-1278-5a47bf6ee188"); // MS-SRVS
pub const WKSSVC: Uuid = Uuid::parse("6bffd098-a112-3610-9833-46c3f87e345a"); // MS-WKST
pub const DRSUAPI: Uuid = Uuid::parse("e3514235-4b06-11d1-ab04-00c04fc2dcd2"); // MS-DRSR 4.1
pub const NETLOGON: Uuid = Uuid::parse("12345678-1234-abcd-ef00-01234567cffb"); // MS-NRPC
pub const SPOOLSS: Uuid = Uuid::parse("12345678-1234-abcd-ef00-0123456789ab"); // MS-RPRN
pub const EFSRPC: Uuid = Uuid::parse("df1941c5-fe89-4e79-bf10-463657acf44d"); // MS-EFSR 1.9
/// EFSRPC as served on the \pipe\lsarpc endpoint [MS-EFSR 1.9].
pub const EFSRPC_LSA: Uuid = Uuid::parse("c681d488-d850-11d0-8c52-00c04fd90f7e");
pub const REMOTE_ACTIVATION: Uuid = Uuid::parse("000001a0-0000-0000-c000-000000000046"); // MS-DCOM IRemoteSCMActivator
pub const WBEM_LOGIN: Uuid = Uuid::parse("f309ad18-d86a-11d0-a075-00c04fb68820"); // MS-WMI IWbemLevel1Login
pub const WBEM_SERVICES: Uuid = Uuid::parse("9556dc99-828c-11cf-a37e-00aa003240c7"); // MS-WMI IWbemServices
pub const IDISPATCH: Uuid = Uuid::parse("00020400-0000-0000-c000-000000000046"); // MS-OAUT IDispatch

/// Names for the interfaces in alerts.
const NAMES: [(Uuid, &str); 21] = [
    (SAMR, "samr"),
    (SRVSVC, "srvsvc"),
    (WKSSVC, "wkssvc"),
    (SVCCTL, "svcctl"),
    (ATSVC, "atsvc"),
    (SASEC, "sasec"),
    (TASK_SCHEDULER, "ITaskSchedulerService"),
    (EPMAPPER, "epmapper"),
    (WINREG, "winreg"),
    (EVENTLOG, "eventlog"),
    (EVEN6, "IEventService"),
    (DRSUAPI, "drsuapi"),
    (NETLOGON, "netlogon"),
    (SPOOLSS, "spoolss"),
    (EFSRPC, "efsrpc"),
    (EFSRPC_LSA, "efsrpc"),
    (REMOTE_ACTIVATION, "IRemoteSCMActivator"),
    (WBEM_LOGIN, "IWbemLevel1Login"),
    (WBEM_SERVICES, "IWbemServices"),
    (IDISPATCH, "IDispatch"),
    (LSARPC, "lsarpc"),
];

pub fn name_of(uuid: Uuid) -> Option<&'static str> {
    NAMES.iter().find(|(u, _)| *u == uuid).map(|(_, n)| *n)
}

/// What a PDU says, for the detectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    /// A bind or alter-context: the presentation contexts it proposes,
    /// each (context id, abstract syntax).
    Bind { contexts: Vec<(u16, Uuid)> },
    /// A request: the context it calls through and the operation. Only a
    /// call's first fragment counts as a call.
    Request {
        context: u16,
        opnum: u16,
        first: bool,
        /// alloc_hint: the size of the call's whole stub, when the client
        /// gives it [C706 12.6.4.9] (0 when it does not).
        stub_len: u32,
        /// The stub's first four bytes as an integer (the first argument
        /// of most calls), when the call is unauthenticated (so not
        /// sealed) and the sample holds them.
        first_arg: Option<u32>,
    },
    /// Any other PDU type.
    Other { ptype: u8 },
}

/// Reads the PDU at the start of `b`, if the bytes there are one: the
/// common header must be plausible (version 5.0 or 5.1, a known type, a
/// known data representation, a fragment length that holds the header)
/// and the type's fixed fields must be present. Returns the PDU and the
/// fragment length.
pub fn parse(b: &[u8]) -> Option<(Pdu, usize)> {
    if b.len() < HEADER_LEN || b[0] != VERSION || b[1] > 1 || b[2] > 19 {
        return None;
    }
    let (ptype, flags, drep) = (b[2], b[3], b[4]);
    // Integer representation: 0x10 little-endian, 0x00 big-endian; the
    // character and floating-point ones (ASCII, IEEE) in use are 0.
    let little = match drep {
        0x10 => true,
        0x00 => false,
        _ => return None,
    };
    if b[5] != 0 {
        return None;
    }
    let u16_at = |i: usize| -> Option<u16> {
        let v = [*b.get(i)?, *b.get(i + 1)?];
        Some(if little {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        })
    };
    let frag_len = u16_at(8)? as usize;
    let auth_len = u16_at(10)? as usize;
    if frag_len < HEADER_LEN + auth_len {
        return None;
    }
    // A sample may hold only the start of a long fragment: read what is
    // there, never past the fragment.
    let body = &b[..frag_len.min(b.len())];
    let pdu = match ptype {
        PTYPE_BIND | PTYPE_ALTER_CONTEXT => Pdu::Bind {
            contexts: contexts(body, little)?,
        },
        PTYPE_REQUEST => {
            // alloc_hint (4), context id (2), opnum (2), then an object
            // UUID when the flag says so.
            let hint: [u8; 4] = b.get(16..20)?.try_into().ok()?;
            let stub_len = if little {
                u32::from_le_bytes(hint)
            } else {
                u32::from_be_bytes(hint)
            };
            let context = u16_at(20)?;
            let opnum = u16_at(22)?;
            if body.len() < 24 {
                return None;
            }
            let stub = if flags & PFC_OBJECT_UUID != 0 { 40 } else { 24 };
            let first_arg = match body.get(stub..stub + 4) {
                Some(word) if auth_len == 0 => {
                    let word: [u8; 4] = word.try_into().ok()?;
                    Some(if little {
                        u32::from_le_bytes(word)
                    } else {
                        u32::from_be_bytes(word)
                    })
                }
                _ => None,
            };
            Pdu::Request {
                context,
                opnum,
                first: flags & PFC_FIRST_FRAG != 0,
                stub_len,
                first_arg,
            }
        }
        _ => Pdu::Other { ptype },
    };
    Some((pdu, frag_len))
}

/// The presentation context list of a bind or alter-context [C706
/// 12.6.4.3]: after max_xmit_frag, max_recv_frag and assoc_group_id, a
/// count and the elements, each a context id, a count of transfer syntaxes,
/// the abstract syntax (UUID and version) and the transfer syntaxes (20
/// bytes each). Elements past the sample are left out.
fn contexts(b: &[u8], little: bool) -> Option<Vec<(u16, Uuid)>> {
    const LIST: usize = HEADER_LEN + 8;
    let n = *b.get(LIST)? as usize;
    let mut out = Vec::with_capacity(n.min(8));
    let mut at = LIST + 4;
    for _ in 0..n {
        let Some(element) = b.get(at..at + 24) else {
            break;
        };
        let id = if little {
            u16::from_le_bytes([element[0], element[1]])
        } else {
            u16::from_be_bytes([element[0], element[1]])
        };
        let syntaxes = element[2] as usize;
        out.push((id, Uuid::from_wire(&element[4..20], little)));
        at += 24 + 20 * syntaxes;
    }
    Some(out)
}

/// Every PDU in a payload sample. On TCP a sample starts with one; over
/// SMB it follows the SMB headers (a write, an ioctl or a transaction that
/// carries it), so the sample is searched: a PDU is taken where its header
/// is plausible, and the search goes on past its fragment.
pub fn pdus(sample: &[u8]) -> Vec<Pdu> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + HEADER_LEN <= sample.len() {
        match parse(&sample[i..]) {
            Some((pdu, len)) => {
                out.push(pdu);
                i += len;
            }
            None => i += 1,
        }
    }
    out
}

/// A remote call: the interface, the operation, and the size of its
/// arguments as the client announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub interface: Uuid,
    pub opnum: u16,
    pub stub_len: u32,
    pub first_arg: Option<u32>,
}

/// One RPC association's presentation contexts (context id -> interface),
/// as its client's binds and alter-contexts set them up.
#[derive(Debug, Default, Clone)]
pub struct Association {
    contexts: Vec<(u16, Uuid)>,
}

/// Contexts one association keeps at most (binds propose a handful).
const MAX_CONTEXTS: usize = 16;

impl Association {
    /// Takes in a client PDU; a request comes back as the call it makes.
    pub fn client_pdu(&mut self, pdu: &Pdu) -> Option<Call> {
        match pdu {
            Pdu::Bind { contexts } => {
                for (id, uuid) in contexts {
                    self.contexts.retain(|(i, _)| i != id);
                    if self.contexts.len() < MAX_CONTEXTS {
                        self.contexts.push((*id, *uuid));
                    }
                }
                None
            }
            Pdu::Request {
                context,
                opnum,
                first: true,
                stub_len,
                first_arg,
            } => self
                .contexts
                .iter()
                .find(|(id, _)| id == context)
                .map(|(_, uuid)| Call {
                    interface: *uuid,
                    opnum: *opnum,
                    stub_len: *stub_len,
                    first_arg: *first_arg,
                }),
            _ => None,
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A bind PDU proposing `interfaces` (context ids 0, 1, ...), each with
    /// one transfer syntax (NDR), little-endian unless `big`.
    pub fn bind(interfaces: &[Uuid], big: bool) -> Vec<u8> {
        let u16b = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u32b = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let wire = |u: Uuid| u.to_wire(!big);
        let ndr = Uuid::parse("8a885d04-1ceb-11c9-9fe8-08002b104860");
        let len = 28 + 44 * interfaces.len();
        let mut p = vec![5, 0, PTYPE_BIND, 3, if big { 0 } else { 0x10 }, 0, 0, 0];
        p.extend(u16b(len as u16));
        p.extend(u16b(0));
        p.extend(u32b(1));
        p.extend(u16b(4280));
        p.extend(u16b(4280));
        p.extend(u32b(0));
        p.extend([interfaces.len() as u8, 0, 0, 0]);
        for (i, uuid) in interfaces.iter().enumerate() {
            p.extend(u16b(i as u16));
            p.extend([1, 0]);
            p.extend(wire(*uuid));
            p.extend(u32b(1));
            p.extend(wire(ndr));
            p.extend(u32b(2));
        }
        assert_eq!(p.len(), len);
        p
    }

    /// A request PDU on `context` for `opnum`, with `stub` bytes.
    pub fn request(context: u16, opnum: u16, stub: usize) -> Vec<u8> {
        request_with(context, opnum, &vec![0xaa; stub])
    }

    /// A request PDU on `context` for `opnum` carrying `stub`.
    pub fn request_with(context: u16, opnum: u16, stub: &[u8]) -> Vec<u8> {
        let len = 24 + stub.len();
        let mut p = vec![5, 0, PTYPE_REQUEST, 3, 0x10, 0, 0, 0];
        p.extend((len as u16).to_le_bytes());
        p.extend(0u16.to_le_bytes());
        p.extend(2u32.to_le_bytes());
        p.extend((stub.len() as u32).to_le_bytes());
        p.extend(context.to_le_bytes());
        p.extend(opnum.to_le_bytes());
        p.extend(stub);
        p
    }

    #[test]
    fn uuids_read_in_either_byte_order() {
        for big in [false, true] {
            let (pdu, len) = parse(&bind(&[SVCCTL, TASK_SCHEDULER], big)).unwrap();
            assert_eq!(len, 28 + 88);
            assert_eq!(
                pdu,
                Pdu::Bind {
                    contexts: vec![(0, SVCCTL), (1, TASK_SCHEDULER)]
                }
            );
        }
        assert_eq!(SVCCTL.to_string(), "svcctl");
        assert_eq!(
            format!("{:?}", Uuid::parse("12345778-1234-ABCD-EF00-0123456789AC")),
            "12345778-1234-abcd-ef00-0123456789ac"
        );
    }

    #[test]
    fn requests_are_mapped_to_their_context_s_interface() {
        let mut a = Association::default();
        let (b, _) = parse(&bind(&[EPMAPPER, SVCCTL], false)).unwrap();
        assert_eq!(a.client_pdu(&b), None);
        let (r, _) = parse(&request(1, 12, 100)).unwrap();
        assert_eq!(
            a.client_pdu(&r).map(|c| (c.interface, c.opnum)),
            Some((SVCCTL, 12))
        );
        // A later fragment of the same call is not another call.
        let mut next = request(1, 12, 100);
        next[3] = 0x02;
        let (r, _) = parse(&next).unwrap();
        assert_eq!(a.client_pdu(&r), None);
        // An unknown context names nothing.
        let (r, _) = parse(&request(7, 12, 0)).unwrap();
        assert_eq!(a.client_pdu(&r), None);
        // An alter-context rebinds a context id.
        let mut alter = bind(&[ATSVC], false);
        alter[2] = PTYPE_ALTER_CONTEXT;
        a.client_pdu(&parse(&alter).unwrap().0);
        let (r, _) = parse(&request(0, 0, 8)).unwrap();
        assert_eq!(
            a.client_pdu(&r).map(|c| (c.interface, c.opnum)),
            Some((ATSVC, 0))
        );
    }

    #[test]
    fn a_request_s_size_and_first_argument_are_read_in_its_byte_order() {
        let stub = [7, 0, 0, 0, 9, 9];
        let Some((
            Pdu::Request {
                stub_len,
                first_arg,
                ..
            },
            _,
        )) = parse(&request_with(0, 2, &stub))
        else {
            panic!("a request");
        };
        assert_eq!((stub_len, first_arg), (6, Some(7)));
        // Big-endian: the same fields, the other way round.
        let mut big = request_with(0, 2, &[0, 0, 0, 7]);
        big[4] = 0;
        big[8..10].reverse();
        big[16..20].reverse();
        big[20..22].reverse();
        big[22..24].reverse();
        let Some((
            Pdu::Request {
                opnum,
                stub_len,
                first_arg,
                ..
            },
            _,
        )) = parse(&big)
        else {
            panic!("a big-endian request");
        };
        assert_eq!((opnum, stub_len, first_arg), (2, 4, Some(7)));
        // An authenticated call may be sealed: its arguments are not read.
        let mut signed = request_with(0, 2, &[0; 40]);
        signed[10] = 16;
        let Some((Pdu::Request { first_arg, .. }, _)) = parse(&signed) else {
            panic!("a signed request");
        };
        assert_eq!(first_arg, None);
    }

    #[test]
    fn pdus_are_found_after_smb_headers_and_back_to_back() {
        let mut sample = vec![0, 0, 0, 0x80, 0xfe, b'S', b'M', b'B'];
        sample.extend(vec![0u8; 60 + 48]);
        sample.extend(bind(&[SVCCTL], false));
        sample.extend(request(0, 12, 40));
        sample.extend(request(0, 19, 4));
        let found = pdus(&sample);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(matches!(found[2], Pdu::Request { opnum: 19, .. }));
    }

    #[test]
    fn implausible_headers_are_not_pdus() {
        // Wrong version, unknown representation, a fragment shorter than
        // its header, a request cut before its opnum.
        let mut r = request(0, 12, 0);
        r[0] = 4;
        assert!(parse(&r).is_none());
        let mut r = request(0, 12, 0);
        r[4] = 0x20;
        assert!(parse(&r).is_none());
        let mut r = request(0, 12, 0);
        r[8] = 8;
        assert!(parse(&r).is_none());
        assert!(parse(&request(0, 12, 0)[..22]).is_none());
        // A bind cut inside its list yields the whole elements only.
        let b = bind(&[SVCCTL, ATSVC], false);
        let (pdu, _) = parse(&b[..28 + 44 + 10]).unwrap();
        assert_eq!(
            pdu,
            Pdu::Bind {
                contexts: vec![(0, SVCCTL)]
            }
        );
        // Random bytes: nothing, and no panic.
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = pdus(&noise);
    }
}
