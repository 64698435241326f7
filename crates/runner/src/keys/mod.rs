//! The run keys, each defined once.
//!
//! [`defs`] is the list: one entry per key with its type, default, doc, what it allows, which
//! runs read it, its check and whether the resolved TOML leaves it out at its default. The
//! [`run_keys!`] macro turns that list into the [`RunKeys`] struct (fields, `Default`, serde),
//! [`RUN_KEYS`] and [`KEYS`], so everything here reads the same list: [`validate`],
//! [`RunKeys::uses`], [`RunKeys::canonical`] (what run ids hash), [`RunKeys::cells`] (the config
//! columns of the tables), `vaelab keys` ([`reference`]) and the README test.
//!
//! Adding a key is one entry in `defs.rs` plus the code that reads it (`train_config`, the data
//! loader, ...). A key added later should say `omitted_at_default: true`, so the runs from
//! before it existed keep their ids.

mod cell;
mod defs;
mod names;
mod train;

#[cfg(test)]
mod tests;

pub use cell::ToCell;
pub use defs::{RunKeys, KEYS, RUN_KEYS};
pub use names::{name_of, names};

use sha2::{Digest, Sha256};
use vaelab_track::Cell;

/// Why a key's value is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Outside what the key allows ([`KeyDef::allowed`] says what that is).
    Outside,
    /// Refused with these other keys' values; says what is allowed here.
    Because(String),
}

/// What a key's check returns.
pub type Check = Result<(), Refusal>;

/// `Ok` when `ok`, else the key's own allowed values are the answer.
pub fn allowed_if(ok: bool) -> Check {
    if ok {
        Ok(())
    } else {
        Err(Refusal::Outside)
    }
}

/// `Ok` when `ok`, else `why` says what is allowed given the other keys.
pub fn requires(ok: bool, why: impl FnOnce() -> String) -> Check {
    if ok {
        Ok(())
    } else {
        Err(Refusal::Because(why()))
    }
}

/// One run key: everything vaelab knows about it. The macro fills in `name`, `doc`, `value`,
/// `reset`, `cell` and `choices` from the field; the entry gives the rest.
#[derive(Clone, Copy)]
pub struct KeyDef {
    /// The key as written in run and sweep files (the field's name).
    pub name: &'static str,
    /// The field's doc comment, one line of text per doc line.
    pub doc: &'static str,
    /// What the key accepts, in words (after the variant names for an enum key).
    pub allowed: &'static str,
    /// Whether the key means anything for this run; the others are reset to their defaults
    /// before hashing (so such runs merge) and are nulls in the tables.
    pub uses: fn(&RunKeys) -> bool,
    /// The key's range and what it needs from the other keys.
    pub check: fn(&RunKeys) -> Check,
    /// Left out of the resolved TOML at its default (keys added after runs were made, so those
    /// keep their ids). Never change it for an existing key: the ids would change.
    pub omitted_at_default: bool,
    /// The value as TOML (`None` when unset).
    pub value: fn(&RunKeys) -> Option<toml::Value>,
    /// Sets the key back to its default.
    pub reset: fn(&mut RunKeys),
    /// The key as a typed table cell (its type's [`ToCell`]).
    pub cell: fn(&RunKeys) -> Cell,
    /// The names of an enum key's values, in order (empty for other keys).
    pub choices: fn() -> &'static [&'static str],
}

fn always(_: &RunKeys) -> bool {
    true
}

fn no_check(_: &RunKeys) -> Check {
    Ok(())
}

fn unset(_: &RunKeys) -> Option<toml::Value> {
    None
}

fn nothing(_: &mut RunKeys) {}

fn no_cell(_: &RunKeys) -> Cell {
    Cell::Str(None)
}

fn no_choices() -> &'static [&'static str] {
    &[]
}

impl KeyDef {
    /// What an entry leaves out: read by every run, no check, always written.
    pub const RULES: KeyDef = KeyDef {
        name: "",
        doc: "",
        allowed: "",
        uses: always,
        check: no_check,
        omitted_at_default: false,
        value: unset,
        reset: nothing,
        cell: no_cell,
        choices: no_choices,
    };

    /// The doc comment as one line.
    pub fn doc_line(&self) -> String {
        self.doc
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// What the key accepts: an enum's names, then the entry's words.
    pub fn allowed(&self) -> String {
        let names: Vec<String> = (self.choices)().iter().map(|n| format!("{n:?}")).collect();
        match (names.is_empty(), self.allowed.is_empty()) {
            (true, _) => self.allowed.to_string(),
            (false, true) => names.join(" | "),
            (false, false) => format!("{} ({})", names.join(" | "), self.allowed),
        }
    }

    /// The key's default as TOML, `None` when unset by default.
    pub fn default_value(&self) -> Option<toml::Value> {
        (self.value)(&RunKeys::default())
    }

    /// The value of `keys` as written in TOML, for error messages.
    pub fn value_text(&self, keys: &RunKeys) -> String {
        (self.value)(keys).map_or_else(|| "(missing)".into(), |v| v.to_string())
    }
}

/// The definition of `key`.
pub fn key(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// Checks every key, in the order of [`KEYS`]; returns (key, value, what is allowed) for the
/// first bad one.
pub fn validate(k: &RunKeys) -> Result<(), (&'static str, String, String)> {
    for def in KEYS {
        if let Err(refusal) = (def.check)(k) {
            let allowed = match refusal {
                Refusal::Outside => def.allowed(),
                Refusal::Because(why) => why,
            };
            return Err((def.name, def.value_text(k), allowed));
        }
    }
    Ok(())
}

impl RunKeys {
    /// Whether `key` means anything for this run (see [`KeyDef::uses`]); unknown keys do.
    pub fn uses(&self, key: &str) -> bool {
        self::key(key).is_none_or(|def| (def.uses)(self))
    }

    /// The keys with every key this run does not read reset to its default (and one latent
    /// layer as `latent_dim`), so runs that would train the same model get the same id.
    pub fn canonical(mut self) -> RunKeys {
        // One latent layer written as a list is the one-layer model of that size.
        if let [size] = self.latent_layers[..] {
            self.latent_dim = size;
            self.latent_layers.clear();
        }
        let unused: Vec<&KeyDef> = KEYS.iter().filter(|def| !(def.uses)(&self)).collect();
        for def in unused {
            (def.reset)(&mut self);
        }
        self
    }

    /// The resolved keys as TOML (defaults included, `name` first when set).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot serialize: {e}\n"))
    }

    /// A short hash of the resolved keys without `name`: same config and seed → same id.
    pub fn run_id(&self) -> String {
        let canonical = RunKeys {
            name: None,
            ..self.clone()
        }
        .to_toml();
        Sha256::digest(canonical.as_bytes())[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Every key as a typed table cell, in the order of [`KEYS`]; absent optional keys and
    /// keys the run does not read (the AE's β) are nulls.
    pub fn cells(&self) -> Vec<(String, Cell)> {
        KEYS.iter()
            .map(|def| {
                let cell = (def.cell)(self);
                let cell = if (def.uses)(self) { cell } else { cell.null() };
                (def.name.to_string(), cell)
            })
            .collect()
    }
}

/// `vaelab keys`: every key with its default, what it allows and what it does.
pub fn reference() -> String {
    let mut out = String::new();
    for def in KEYS {
        let head = match def.default_value() {
            Some(v) => format!("{} = {v}", def.name),
            None => format!("{} (unset by default)", def.name),
        };
        out.push_str(&format!(
            "{head}\n    {}\n    allowed: {}\n\n",
            def.doc_line(),
            def.allowed()
        ));
    }
    out
}

/// Generates [`RunKeys`] (fields with their docs, `Default`, serde), [`RUN_KEYS`] and
/// [`KEYS`] from one list of `doc, field: type = default => { rules }`, where the rules are
/// [`KeyDef`] fields (`allowed`, `uses`, `check`, `omitted_at_default`; unnamed ones take
/// [`KeyDef::RULES`]).
macro_rules! run_keys {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident: $ty:ty = $default:expr => { $($rule:ident: $value:expr),* $(,)? }
    ),* $(,)?) => {
        /// The keys of one run, with their defaults: generated from the list in
        /// `keys/defs.rs` (`vaelab keys` prints it).
        #[derive(Debug, Clone, PartialEq, ::serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct RunKeys {
            $($(#[doc = $doc])+ pub $field: $ty,)*
        }

        impl Default for RunKeys {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        /// Every key of a run file, in the order of [`RunKeys`].
        pub const RUN_KEYS: &[&str] = &[$(stringify!($field)),*];

        /// Every key's definition, in the order of [`RunKeys`].
        #[allow(clippy::needless_update)]
        pub const KEYS: &[$crate::keys::KeyDef] = &[$(
            $crate::keys::KeyDef {
                name: stringify!($field),
                doc: concat!($($doc, "\n"),+),
                value: |k| ::toml::Value::try_from(&k.$field).ok(),
                reset: |k| k.$field = $default,
                cell: |k| $crate::keys::ToCell::cell(&k.$field),
                choices: $crate::keys::names::<$ty>,
                $($rule: $value,)*
                ..$crate::keys::KeyDef::RULES
            }
        ),*];

        /// Field by field in the order of the list, leaving out a key marked
        /// `omitted_at_default` while it is at its default.
        impl ::serde::Serialize for RunKeys {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeStruct;
                let defaults = RunKeys::default();
                let mut defs = KEYS.iter();
                let written = [$({
                    let def = defs.next().expect("one definition per field");
                    !(def.omitted_at_default && self.$field == defaults.$field)
                }),*];
                let mut st =
                    s.serialize_struct("RunKeys", written.iter().filter(|w| **w).count())?;
                let mut written = written.iter();
                $(
                    if *written.next().expect("one flag per field") {
                        st.serialize_field(stringify!($field), &self.$field)?;
                    } else {
                        st.skip_field(stringify!($field))?;
                    }
                )*
                st.end()
            }
        }
    };
}
pub(crate) use run_keys;
