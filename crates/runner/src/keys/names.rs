//! The names of an enum key's values, read from its serde derive: the one place they are
//! spelled (`#[serde(rename_all = ...)]`), so no key keeps its own list or `as_str`.

use serde::de::{self, DeserializeOwned, Visitor};
use serde::Serialize;
use std::cell::Cell;

/// A deserializer that only records the variant names a derived enum asks for.
struct Variants(Cell<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for &Variants {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not an enum"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.set(variants);
        Err(de::Error::custom("names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

/// The names of `T`'s variants as config files write them, in declaration order; empty when
/// `T` is not an enum (a number, a list, the `dataset` name).
pub fn names<T: DeserializeOwned>() -> &'static [&'static str] {
    let v = Variants(Cell::new(&[]));
    let _ = T::deserialize(&v);
    v.0.get()
}

/// An enum value's name as config files write it (or any value as its TOML text).
pub fn name_of<T: Serialize>(value: &T) -> String {
    match toml::Value::try_from(value) {
        Ok(toml::Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => String::new(),
    }
}
