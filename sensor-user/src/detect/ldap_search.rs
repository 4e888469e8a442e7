//! LDAP searches [RFC 4511 4.5.1] that pull a whole class of directory
//! objects: every user, group, computer or service account, the queries
//! that BloodHound's collectors, PowerView, ldapdomaindump and Impacket's
//! GetUserSPNs/GetNPUsers/GetADUsers make to map a domain. An ordinary
//! client asks for itself or for one named object (its computer account,
//! its user, a group policy container), or reads one object at base scope.
//!
//! Only clear searches can be read: a session sealed with SASL (Windows'
//! default) hides its filters, and is not judged here.

use super::{
    der::{elements, Tlv},
    ldap::operations,
};

/// SearchRequest [RFC 4511 4.5.1]: [APPLICATION 3].
const SEARCH_REQUEST: u8 = 0x63;
/// SearchRequest.scope wholeSubtree.
const WHOLE_SUBTREE: u8 = 2;
/// Filters nest; real ones are shallow.
const MAX_DEPTH: usize = 8;

/// Object classes whose every member a mapping tool lists.
const LISTED_CLASSES: [&str; 6] = [
    "user",
    "person",
    "organizationalperson",
    "group",
    "computer",
    "grouppolicycontainer",
];

/// Attributes whose equality names one object, not a class of them.
const NAMING: [&str; 11] = [
    "samaccountname",
    "userprincipalname",
    "cn",
    "name",
    "distinguishedname",
    "objectsid",
    "objectguid",
    "dnshostname",
    "mail",
    "displayname",
    "serviceprincipalname",
];

/// What a subtree search's filter lists, when it lists a whole class and
/// names no single object: the class or attribute it selects by.
pub fn bulk_query(sample: &[u8]) -> Option<String> {
    operations(sample).into_iter().find_map(|op| {
        if op.tag != SEARCH_REQUEST {
            return None;
        }
        // baseObject, scope, derefAliases, sizeLimit, timeLimit,
        // typesOnly, filter, attributes.
        let fields = elements(op.value);
        let scope = fields.get(1).filter(|t| t.tag == 0x0a)?;
        if scope.value != [WHOLE_SUBTREE] {
            return None;
        }
        let filter = fields.get(6)?;
        let mut found = Found::default();
        walk(filter, 0, &mut found);
        (!found.names_one).then_some(found.class).flatten()
    })
}

#[derive(Default)]
struct Found {
    /// The first whole class the filter selects.
    class: Option<String>,
    /// Whether it also names one object.
    names_one: bool,
}

/// Reads the assertions a filter makes (leaving out what is under `not`).
fn walk(filter: &Tlv<'_>, depth: usize, found: &mut Found) {
    if depth > MAX_DEPTH {
        return;
    }
    match filter.tag {
        // and [0], or [1]: their elements are filters.
        0xa0 | 0xa1 => {
            for inner in elements(filter.value) {
                walk(&inner, depth + 1, found);
            }
        }
        // equalityMatch [3]: attribute and value.
        0xa3 => {
            let parts = elements(filter.value);
            let (Some(attribute), Some(value)) = (parts.first(), parts.get(1)) else {
                return;
            };
            let attribute = lower(attribute.value);
            let value = lower(value.value);
            if NAMING.contains(&attribute.as_str()) {
                found.names_one = true;
            } else if let Some(class) = listed_class(&attribute, &value) {
                found.class.get_or_insert(class);
            }
        }
        // present [7]: every object that has the attribute.
        0x87 => {
            let attribute = lower(filter.value);
            if attribute == "serviceprincipalname" {
                found
                    .class
                    .get_or_insert("account with a service principal name".into());
            } else if attribute == "samaccounttype" {
                found.class.get_or_insert("account".into());
            }
        }
        // extensibleMatch [9]: a bit of userAccountControl or
        // sAMAccountType tested over the whole directory (accounts
        // without pre-authentication, delegation, ...).
        0xa9 => {
            let parts = elements(filter.value);
            let attribute = parts.iter().find(|t| t.tag == 0x82).map(|t| lower(t.value));
            if matches!(
                attribute.as_deref(),
                Some("useraccountcontrol" | "samaccounttype")
            ) {
                found
                    .class
                    .get_or_insert("account by its control bits".into());
            }
        }
        _ => {}
    }
}

/// The class an equality on objectClass, objectCategory or sAMAccountType
/// selects, if it is one tools list whole.
fn listed_class(attribute: &str, value: &str) -> Option<String> {
    match attribute {
        "objectclass" | "objectcategory" => {
            // objectCategory may be a DN: CN=Person,CN=Schema,...
            let class = value
                .strip_prefix("cn=")
                .map(|v| v.split(',').next().unwrap_or(v))
                .unwrap_or(value);
            LISTED_CLASSES.contains(&class).then(|| class.to_string())
        }
        // [MS-ADTS 2.2.15] SAM_USER_OBJECT and the rest.
        "samaccounttype" => Some("account".into()),
        _ => None,
    }
}

fn lower(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{der::tests::der, ldap::tests::message};

    fn eq(attribute: &str, value: &str) -> Vec<u8> {
        der(
            0xa3,
            &[der(0x04, attribute.as_bytes()), der(0x04, value.as_bytes())].concat(),
        )
    }

    fn and(filters: &[Vec<u8>]) -> Vec<u8> {
        der(0xa0, &filters.concat())
    }

    fn search(scope: u8, filter: Vec<u8>) -> Vec<u8> {
        let op = [
            der(0x04, b"DC=city,DC=lab"),
            der(0x0a, &[scope]),
            der(0x0a, &[0]),
            der(0x02, &[0]),
            der(0x02, &[0]),
            der(0x01, &[0]),
            filter,
            der(0x30, &der(0x04, b"sAMAccountName")),
        ]
        .concat();
        message(2, der(SEARCH_REQUEST, &op))
    }

    #[test]
    fn searches_for_every_object_of_a_class_are_bulk() {
        // ldapsearch "(objectClass=user)", GetADUsers' person filter.
        assert_eq!(
            bulk_query(&search(2, eq("objectClass", "user"))).as_deref(),
            Some("user")
        );
        let people = and(&[
            eq(
                "objectCategory",
                "CN=Person,CN=Schema,CN=Configuration,DC=city,DC=lab",
            ),
            eq("objectClass", "user"),
        ]);
        assert_eq!(bulk_query(&search(2, people)).as_deref(), Some("person"));
        // GetUserSPNs: (&(servicePrincipalName=*)(UserAccountControl:...)
        // (!(objectCategory=computer))).
        let not_computer = der(0xa2, &eq("objectCategory", "computer"));
        let spns = and(&[der(0x87, b"servicePrincipalName"), not_computer]);
        assert_eq!(
            bulk_query(&search(2, spns)).as_deref(),
            Some("account with a service principal name")
        );
        // GetNPUsers: (UserAccountControl:1.2.840.113556.1.4.803:=4194304).
        let rule = der(
            0xa9,
            &[
                der(0x81, b"1.2.840.113556.1.4.803"),
                der(0x82, b"UserAccountControl"),
                der(0x83, b"4194304"),
            ]
            .concat(),
        );
        assert!(bulk_query(&search(2, rule)).is_some());
    }

    #[test]
    fn searches_for_one_named_object_or_at_base_scope_are_not() {
        // A computer finding its own account; sssd finding one user.
        let own = and(&[
            eq("objectCategory", "computer"),
            eq("sAMAccountName", "WS01$"),
        ]);
        assert_eq!(bulk_query(&search(2, own)), None);
        let one = and(&[eq("objectClass", "user"), eq("sAMAccountName", "alice")]);
        assert_eq!(bulk_query(&search(2, one)), None);
        // Reading one object (base scope), the rootDSE (objectClass=*).
        assert_eq!(bulk_query(&search(0, eq("objectClass", "user"))), None);
        assert_eq!(bulk_query(&search(2, der(0x87, b"objectClass"))), None);
        // Classes nobody lists whole to map a domain.
        assert_eq!(bulk_query(&search(2, eq("objectClass", "dnsNode"))), None);
        // Not a search at all, or cut short.
        assert_eq!(bulk_query(b"\x30\x84\xff"), None);
        let whole = search(2, eq("objectClass", "user"));
        for cut in 0..whole.len() {
            let _ = bulk_query(&whole[..cut]);
        }
    }
}
