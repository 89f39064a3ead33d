//! Strict JSON reading for what a court checks: a proof bundle, a leaf
//! record, a signed request. `serde_json` keeps the last of two members with
//! the same name, and another reader may keep the first; a document with a
//! duplicate name can therefore say two things at once. Here an object with
//! a name twice, at any depth, is refused.
//!
//! This file knows nothing of RocksDB, the network or the clock.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value read with every object's member names distinct.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Reads one JSON document (nothing but white space after it), refusing
/// an object that names a member twice anywhere in it.
pub fn value_from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(v) = Strict::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Reads a `T` from one JSON document with no duplicate member name anywhere.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_value(value_from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_twice_at_any_depth_is_refused() {
        for bad in [
            r#"{"a":1,"a":1}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            r#"{"x":{"a":1,"a":2}}"#,
            r#"[{"a":[{"k":true,"k":false}]}]"#,
            // The same name spelled with an escape is the same name.
            r#"{"a":1,"\u0061":2}"#,
        ] {
            let e = value_from_slice(bad.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("duplicate key"), "{bad}: {e}");
            // serde_json alone takes it, keeping the last value.
            assert!(serde_json::from_str::<Value>(bad).is_ok());
        }
        for good in [r#"{"a":1,"b":{"a":2}}"#, r#"[{"a":1},{"a":1}]"#, "[]", "{}", "null", r#"{"n":-1.5e3,"s":"\u00e9"}"#, " 7 "] {
            assert_eq!(value_from_slice(good.as_bytes()).unwrap(), serde_json::from_str::<Value>(good).unwrap(), "{good}");
        }
        // Trailing bytes after the document and malformed JSON are refused too.
        for bad in ["{} {}", "{", "[1,]", r#"{"a":1,}"#, "", "nul"] {
            assert!(value_from_slice(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn typed_reading_goes_through_the_strict_value() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct T {
            a: u32,
            m: serde_json::Value,
        }
        assert_eq!(from_slice::<T>(br#"{"a":1,"m":{"x":1}}"#).unwrap(), T { a: 1, m: serde_json::json!({"x": 1}) });
        assert!(from_slice::<T>(br#"{"a":1,"m":{"x":1,"x":2}}"#).is_err());
    }
}
