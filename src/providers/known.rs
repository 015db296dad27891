//! Reads a JSON object's known fields in place and keeps the others as
//! `Value`s, without `#[serde(flatten)]`: flatten first buffers the whole
//! object into serde's generic `Content` tree (every key and string copied)
//! and then reads that tree again, once more for each flattened level inside.
//! On the upstream answer and every stream chunk that was a copy of the whole
//! body per level; here each byte is read once.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// An object with fields of its own and a map for the others.
pub trait Known: Default {
    /// What the object is, for "expected …" in errors.
    const WHAT: &'static str;
    /// Reads `key`'s value into `self` when it is one of ours (or one to skip)
    /// and returns `true`; returns `false`, the value unread, for the others.
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;
    /// Where the other fields go.
    fn rest(&mut self) -> &mut Map<String, Value>;
    /// Checks the object once it ended (required fields).
    fn done<E: de::Error>(self) -> Result<Self, E> {
        Ok(self)
    }
}

/// The `Deserialize::deserialize` of a `Known` type.
pub fn object<'de, D: Deserializer<'de>, T: Known>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(ObjectVisitor(PhantomData))
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Known> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::WHAT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut out = T::default();
        while let Some(Key(key)) = map.next_key()? {
            if !out.field(&key, &mut map)? {
                let value: Value = map.next_value()?;
                out.rest().insert(key.into_owned(), value);
            }
        }
        out.done()
    }
}

/// An object key, borrowed from the input unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Implements `Deserialize` for `Known` types.
macro_rules! deserialize_known {
    ($($t:ty),+ $(,)?) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::providers::known::object(d)
            }
        }
    )+};
}
pub(crate) use deserialize_known;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Default, Debug)]
    struct Thing {
        name: Option<String>,
        has_name: bool,
        extra: Map<String, Value>,
    }

    impl Known for Thing {
        const WHAT: &'static str = "a thing";
        fn field<'de, A: MapAccess<'de>>(
            &mut self,
            key: &str,
            map: &mut A,
        ) -> Result<bool, A::Error> {
            match key {
                "name" => {
                    self.name = map.next_value()?;
                    self.has_name = true;
                }
                "id" => map.next_value::<de::IgnoredAny>().map(drop)?,
                _ => return Ok(false),
            }
            Ok(true)
        }
        fn rest(&mut self) -> &mut Map<String, Value> {
            &mut self.extra
        }
        fn done<E: de::Error>(self) -> Result<Self, E> {
            if self.has_name {
                Ok(self)
            } else {
                Err(E::missing_field("name"))
            }
        }
    }

    deserialize_known!(Thing);

    #[test]
    fn known_fields_are_read_skipped_ones_dropped_and_the_rest_kept_even_with_escaped_keys() {
        let t: Thing = serde_json::from_str(
            r#"{"id":{"deep":[1,2]},"name":"a","x\u0079":[true],"n\"q":null,"name2":{"k":1}}"#,
        )
        .unwrap();
        assert_eq!(t.name.as_deref(), Some("a"));
        assert_eq!(
            Value::Object(t.extra),
            serde_json::json!({"xy": [true], "n\"q": null, "name2": {"k": 1}})
        );
    }

    #[test]
    fn a_missing_required_field_or_a_wrong_shape_is_a_data_error() {
        let missing = serde_json::from_str::<Thing>(r#"{"other":1}"#).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `name`"),
            "{missing}"
        );
        for bad in [r#"[1]"#, r#"{"name":5}"#, "null"] {
            let err = serde_json::from_str::<Thing>(bad).unwrap_err();
            assert_eq!(err.classify(), serde_json::error::Category::Data, "{bad}");
        }
    }
}
