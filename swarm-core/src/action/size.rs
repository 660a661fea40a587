//! The exact length of a value's bincode encoding, counted without encoding it.
//!
//! [`encoded_size`] gives the same figure as `bincode::serialized_size` with the options
//! [`super::encode_actions`] encodes with (bincode 1.3's legacy configuration: fixed-width
//! little-endian integers, `u64` lengths, `u32` variant indexes, not human-readable), and fails
//! exactly where bincode would (a sequence or map of unknown length, a value's own error). It
//! exists because splitting a proposal by size ([`super::split_into_batches`]) measures every
//! action, and bincode's size checker threads a boxed error through every field of a task and
//! its spec: here the error is a unit, so the count compiles to straight additions.
//! `tests/proposal_batches.rs` checks the two agree over every fuzz corpus entry and the test
//! fixtures, and the `store_action` fuzz target checks it on everything it decodes.

use std::fmt;

use serde::ser::{self, Serialize};

/// The length in bytes of `value`'s encoding by [`super::encode_actions`]'s bincode options, or
/// `None` where bincode would refuse to encode it.
pub fn encoded_size<T: Serialize + ?Sized>(value: &T) -> Option<u64> {
    let mut counter = Counter(0);
    value.serialize(&mut counter).ok()?;
    Some(counter.0)
}

/// Bytes counted so far.
struct Counter(u64);

/// Encoding refused (as bincode would refuse it); carries nothing, so that `Result<(), Refused>`
/// costs no more than a flag.
#[derive(Debug)]
struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("value cannot be encoded")
    }
}

impl std::error::Error for Refused {}

impl ser::Error for Refused {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Refused
    }
}

/// Width of a length prefix (bincode encodes every length as a `u64`).
const LEN: u64 = 8;
/// Width of an enum variant index.
const VARIANT: u64 = 4;

impl Counter {
    fn add(&mut self, n: u64) -> Result<(), Refused> {
        self.0 += n;
        Ok(())
    }

    /// A sequence or map: bincode writes its length first and needs to know it.
    fn prefixed(&mut self, len: Option<usize>) -> Result<&mut Self, Refused> {
        len.ok_or(Refused)?;
        self.0 += LEN;
        Ok(self)
    }
}

/// A tuple or struct variant: its index, then its fields.
macro_rules! variant_compound {
    ($method:ident) => {
        fn $method(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self, Refused> {
            self.0 += VARIANT;
            Ok(self)
        }
    };
}

impl ser::Serializer for &mut Counter {
    type Ok = ();
    type Error = Refused;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }
    fn serialize_bool(self, _: bool) -> Result<(), Refused> {
        self.add(1)
    }
    fn serialize_i8(self, _: i8) -> Result<(), Refused> {
        self.add(1)
    }
    fn serialize_i16(self, _: i16) -> Result<(), Refused> {
        self.add(2)
    }
    fn serialize_i32(self, _: i32) -> Result<(), Refused> {
        self.add(4)
    }
    fn serialize_i64(self, _: i64) -> Result<(), Refused> {
        self.add(8)
    }
    fn serialize_i128(self, _: i128) -> Result<(), Refused> {
        self.add(16)
    }
    fn serialize_u8(self, _: u8) -> Result<(), Refused> {
        self.add(1)
    }
    fn serialize_u16(self, _: u16) -> Result<(), Refused> {
        self.add(2)
    }
    fn serialize_u32(self, _: u32) -> Result<(), Refused> {
        self.add(4)
    }
    fn serialize_u64(self, _: u64) -> Result<(), Refused> {
        self.add(8)
    }
    fn serialize_u128(self, _: u128) -> Result<(), Refused> {
        self.add(16)
    }
    fn serialize_f32(self, _: f32) -> Result<(), Refused> {
        self.add(4)
    }
    fn serialize_f64(self, _: f64) -> Result<(), Refused> {
        self.add(8)
    }
    fn serialize_char(self, c: char) -> Result<(), Refused> {
        self.add(c.len_utf8() as u64)
    }
    fn serialize_str(self, v: &str) -> Result<(), Refused> {
        self.add(LEN + v.len() as u64)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Refused> {
        self.add(LEN + v.len() as u64)
    }
    fn serialize_none(self) -> Result<(), Refused> {
        self.add(1)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Refused> {
        self.0 += 1;
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Refused> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Refused> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Refused> {
        self.add(VARIANT)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Refused> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Refused> {
        self.0 += VARIANT;
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Refused> {
        self.prefixed(len)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Refused> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Refused> {
        Ok(self)
    }
    variant_compound!(serialize_tuple_variant);
    fn serialize_map(self, len: Option<usize>) -> Result<Self, Refused> {
        self.prefixed(len)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Refused> {
        Ok(self)
    }
    variant_compound!(serialize_struct_variant);
}

/// The compound forms: every element, key, value and field is counted as itself (bincode frames
/// nothing inside a compound beyond the prefix counted when it opened).
macro_rules! compound {
    ($trait:ident, $method:ident $(, $name:ty)?) => {
        impl ser::$trait for &mut Counter {
            type Ok = ();
            type Error = Refused;
            fn $method<T: Serialize + ?Sized>(&mut self, $(_: $name,)? value: &T) -> Result<(), Refused> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), Refused> {
                Ok(())
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, &'static str);
compound!(SerializeStructVariant, serialize_field, &'static str);

impl ser::SerializeMap for &mut Counter {
    type Ok = ();
    type Error = Refused;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Refused> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refused> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::encoded_size;
    use std::collections::BTreeMap;

    /// A byte string (serde's `bytes`, which derives never produce for `Vec<u8>`).
    struct Bytes(Vec<u8>);

    impl serde::Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    /// Every serde data model shape against bincode's own count.
    #[test]
    fn agrees_with_bincode_on_every_shape() {
        #[derive(serde::Serialize)]
        enum E {
            Unit,
            New(u16),
            Tuple(u8, char),
            Struct { a: Option<i128>, b: Vec<u32> },
        }
        #[derive(serde::Serialize)]
        struct Unit;
        #[derive(serde::Serialize)]
        struct Wrap(f64);
        #[derive(serde::Serialize)]
        struct All {
            b: bool,
            i: (i8, i16, i32, i64),
            u: (u8, u16, u32, u64, u128),
            f: f32,
            c: char,
            s: String,
            bytes: Bytes,
            none: Option<u8>,
            unit: (),
            unit_struct: Unit,
            wrap: Wrap,
            es: Vec<E>,
            map: BTreeMap<String, Vec<u8>>,
            #[serde(skip)]
            _skipped: u64,
        }
        let v = All {
            b: true,
            i: (-1, -2, -3, -4),
            u: (1, 2, 3, 4, 5),
            f: 1.5,
            c: 'é',
            s: "héllo".into(),
            bytes: Bytes(vec![1, 2, 3]),
            none: None,
            unit: (),
            unit_struct: Unit,
            wrap: Wrap(2.0),
            es: vec![
                E::Unit,
                E::New(7),
                E::Tuple(1, '€'),
                E::Struct {
                    a: Some(-9),
                    b: vec![1, 2],
                },
            ],
            map: [("k".to_string(), vec![9u8; 5])].into_iter().collect(),
            _skipped: 0,
        };
        let expected = bincode::serialized_size(&v).expect("bincode counts it");
        assert_eq!(encoded_size(&v), Some(expected));
        assert_eq!(
            Some(expected),
            Some(bincode::serialize(&v).unwrap().len() as u64)
        );
    }

    /// A sequence of unknown length is refused, as bincode refuses it.
    #[test]
    fn refuses_what_bincode_refuses() {
        struct Unsized;
        impl serde::Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(None)?;
                seq.serialize_element(&1u8)?;
                seq.end()
            }
        }
        assert!(bincode::serialized_size(&Unsized).is_err());
        assert_eq!(encoded_size(&Unsized), None);
    }
}
