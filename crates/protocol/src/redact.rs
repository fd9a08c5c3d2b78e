//! `redacted_debug!`: the `Debug` impl of a type that holds secrets.
//!
//! The secret-bearing wire types (`api`, `agent`, `env`, `sysconfig`) and the crates
//! that hold keys (`cairn-acme`, `cairn-kms-client`) list the fields `Debug` may show
//! and how; one macro writes the impls so that each type's list is all a reader has to
//! check.

/// Implements `std::fmt::Debug` for a struct holding secrets, with its entries in the
/// order listed: `field` shows the field's value, `name: redacted` shows `"<redacted>"`
/// (the name need not be a field: it says a secret is there), `field: hex` shows the
/// field's bytes as `0x` hex, `field: bare_hex` as hex without the prefix (the `Debug`
/// form of the service types that predate the macro), `field: len` shows only its
/// length. An entry `method()` shows what `self.method()` returns instead of a field (a
/// derived public key, a status), and takes the same modes (`method(): hex`). A trailing
/// `..` marks that some fields are left out (`finish_non_exhaustive`); fields not listed
/// never appear.
///
/// ```
/// struct Login { user: String, password: String }
/// cairn_protocol::redacted_debug!(Login { user, password: redacted });
///
/// let l = Login { user: "ada".into(), password: "hunter2".into() };
/// assert_eq!(format!("{l:?}"), r#"Login { user: "ada", password: "<redacted>" }"#);
/// ```
#[macro_export]
macro_rules! redacted_debug {
    ($ty:ident { $($field:ident $(($($arg:tt)*))? $(: $how:ident)?),+ $(,)? }) => {
        $crate::redacted_debug!(@impl $ty, finish, $($field $(($($arg)*))? $(: $how)?),+);
    };
    ($ty:ident { $($field:ident $(($($arg:tt)*))? $(: $how:ident)?),+ , .. }) => {
        $crate::redacted_debug!(@impl $ty, finish_non_exhaustive, $($field $(($($arg)*))? $(: $how)?),+);
    };
    (@impl $ty:ident, $finish:ident, $($field:ident $(($($arg:tt)*))? $(: $how:ident)?),+) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), $crate::redacted_debug!(@show self.$field $(($($arg)*))? $(, $how)?)))+
                    .$finish()
            }
        }
    };
    (@show $value:expr) => { &$value };
    (@show $value:expr, redacted) => { &"<redacted>" };
    (@show $value:expr, hex) => { &$crate::hex0x::encode(&$value) };
    (@show $value:expr, bare_hex) => { &$crate::__bare_hex(&$value) };
    (@show $value:expr, len) => { &$value.len() };
}

/// `bytes` as lowercase hex without a prefix: the `bare_hex` mode of
/// [`redacted_debug!`] (a function so that the macro's callers need no `hex` of their own).
#[doc(hidden)]
pub fn bare_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    struct Secretive {
        name: &'static str,
        #[allow(dead_code)] // never read: `Debug` must not show it
        secret: [u8; 2],
        id: [u8; 2],
        tag: [u8; 2],
        chain: Vec<&'static str>,
    }
    redacted_debug!(Secretive {
        name,
        secret: redacted,
        id: hex,
        tag: bare_hex,
        chain: len,
        first(),
        last_id(): hex
    });

    impl Secretive {
        fn first(&self) -> Option<&str> {
            self.chain.first().copied()
        }
        fn last_id(&self) -> [u8; 1] {
            [self.id[1]]
        }
    }

    struct Partial {
        name: &'static str,
        #[allow(dead_code)] // left out of `Debug`
        hidden: u8,
    }
    redacted_debug!(Partial { name, .. });

    #[test]
    fn each_mode_shows_what_it_names_and_the_secret_never() {
        let s = Secretive {
            name: "n",
            secret: [0xaa, 0xbb],
            id: [1, 2],
            tag: [0xc0, 0xde],
            chain: vec!["a", "b", "c"],
        };
        let shown = format!("{s:?}");
        assert_eq!(
            shown,
            r#"Secretive { name: "n", secret: "<redacted>", id: "0x0102", tag: "c0de", chain: 3, first: Some("a"), last_id: "0x02" }"#
        );
        assert!(!shown.contains("aabb") && !shown.contains("170"), "{shown}");
        let p = Partial {
            name: "n",
            hidden: 7,
        };
        assert_eq!(format!("{p:?}"), r#"Partial { name: "n", .. }"#);
    }
}
