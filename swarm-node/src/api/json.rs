//! JSON decoding the way Docker's Go server does it: struct field names match case-insensitively.
//!
//! Go's `encoding/json` matches an incoming key to a struct field exactly if it can and otherwise
//! ignoring case, and never touches the keys of a map. Some clients rely on that (they send
//! `"replicated"` or `"name"`), so `decode` parses the body into a [`Value`] and deserializes it
//! through `CaseInsensitive`, a serde `Deserializer` that rewrites an object's keys to the field
//! names serde asks for in `deserialize_struct` (the model's own names, e.g. bollard's `Replicated`)
//! and leaves free-form maps (`Labels`, `Options`, `DriverOpts`, ...) alone, because serde reaches
//! those through `deserialize_map`, which carries no field list.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::{Map, Value};

use super::error::ApiError;

/// Decodes a request body as Docker does: `invalid JSON: ...` (400) on malformed input, struct keys
/// matched case-insensitively.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    from_value(value).map_err(ApiError::invalid_json)
}

/// Deserializes `value` into `T`, matching struct keys case-insensitively.
pub(crate) fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(CaseInsensitive(value))
}

/// A [`Value`] deserializer that matches struct field names ignoring case. See the module docs.
pub(crate) struct CaseInsensitive(pub(crate) Value);

macro_rules! forward_to_value {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for CaseInsensitive {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Entries::new(map, None)),
            Value::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(CaseInsensitive(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            // A free-form map: keys stay as sent.
            Value::Object(map) => visitor.visit_map(Entries::new(map, None)),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Entries::new(map, Some(fields))),
            // Go decodes objects only; serde would also accept a struct as an array.
            Value::Array(_) => Err(de::Error::invalid_type(
                de::Unexpected::Seq,
                &"a JSON object",
            )),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    forward_to_value! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier deserialize_ignored_any
    }
}

/// The entries of a JSON object; keys are canonicalised when `fields` is known.
struct Entries {
    iter: serde_json::map::IntoIter,
    fields: Option<&'static [&'static str]>,
    value: Option<Value>,
}

impl Entries {
    fn new(map: Map<String, Value>, fields: Option<&'static [&'static str]>) -> Entries {
        Entries {
            iter: map.into_iter(),
            fields,
            value: None,
        }
    }

    /// The model's field name for `key`: an exact match first, then one ignoring ASCII case.
    fn canonical(&self, key: String) -> String {
        let Some(fields) = self.fields else {
            return key;
        };
        if fields.contains(&key.as_str()) {
            return key;
        }
        match fields.iter().find(|f| f.eq_ignore_ascii_case(&key)) {
            Some(f) => (*f).to_string(),
            None => key,
        }
    }
}

impl<'de> MapAccess<'de> for Entries {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.iter.next() {
            Some((key, value)) => {
                self.value = Some(value);
                let key = self.canonical(key);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(CaseInsensitive(value)),
            None => Err(de::Error::custom("value requested before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// The items of a JSON array.
struct Items(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Items {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        match self.0.next() {
            Some(value) => seed.deserialize(CaseInsensitive(value)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{SecretSpec, ServiceSpec};
    use serde_json::json;

    #[test]
    fn struct_keys_match_ignoring_case_map_keys_do_not_change() {
        let v = json!({
            "name": "web",
            "labels": {"Tier": "front", "tier": "x"},
            "mode": {"replicated": {"REPLICAS": 3}},
            "taskTemplate": {"containerSpec": {"image": "busybox", "healthcheck": {"test": ["NONE"]}}}
        });
        let spec: ServiceSpec = from_value(v).expect("decodes");
        assert_eq!(spec.name.as_deref(), Some("web"));
        let labels = spec.labels.expect("labels");
        assert_eq!(labels.get("Tier").map(String::as_str), Some("front"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("x"));
        let replicas = spec
            .mode
            .and_then(|m| m.replicated)
            .and_then(|r| r.replicas);
        assert_eq!(replicas, Some(3));
        let c = spec
            .task_template
            .and_then(|t| t.container_spec)
            .expect("container");
        assert_eq!(c.image.as_deref(), Some("busybox"));
        assert!(c.health_check.is_some());
    }

    #[test]
    fn exact_match_wins_and_unknown_keys_are_ignored() {
        let spec: SecretSpec =
            from_value(json!({"Name": "a", "Bogus": 1, "Data": "eA=="})).expect("decodes");
        assert_eq!(spec.name.as_deref(), Some("a"));
        assert_eq!(spec.data.as_deref(), Some("eA=="));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for body in [
            &b""[..],
            b"{",
            b"[1,2]",
            b"[]",
            b"{\"Name\": 5}",
            b"\xff\xfe",
        ] {
            assert!(decode::<SecretSpec>(body).is_err(), "{body:?}");
        }
    }
}
