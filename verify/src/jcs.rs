//! RFC 8785 JSON Canonicalization Scheme (JCS) for audit leaf records.
//!
//! The canonical bytes of a record are what the Merkle tree hashes, so two
//! implementations must agree on them byte for byte: object members sorted by
//! the UTF-16 code units of their names, no insignificant whitespace, strings
//! escaped exactly as ECMAScript's `JSON.stringify` does, numbers as
//! ECMAScript prints them.
//!
//! Audit records carry only strings, integers, booleans, null, arrays and
//! objects. Numbers are therefore limited to integers an IEEE double holds
//! exactly (|n| ≤ 2^53 − 1, the I-JSON range), which print as plain decimal
//! in every JCS implementation; anything else is refused rather than printed
//! in a form another implementation might not reproduce.
//!
//! This file knows nothing of RocksDB, the network or the clock.

use serde::Serialize;
use serde_json::{Number, Value};

/// The largest integer magnitude accepted: 2^53 − 1 (`Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form here.
#[derive(Debug, thiserror::Error)]
pub enum JcsError {
    /// A number with a fractional part, or not finite.
    #[error("number {0} is not an integer; audit records hold integers only")]
    NonIntegerNumber(String),
    /// An integer outside ±(2^53 − 1), which JSON readers using doubles would round.
    #[error("integer {0} is outside ±(2^53 - 1)")]
    IntegerOutOfRange(String),
    /// The value could not be turned into JSON at all.
    #[error("cannot serialise to JSON: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// The RFC 8785 canonical form of `value`, as a string.
pub fn to_canonical_string(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

/// The RFC 8785 canonical form of `value`, as UTF-8 bytes.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, JcsError> {
    to_canonical_string(value).map(String::into_bytes)
}

/// Serialises any `Serialize` value through `serde_json::Value` and returns
/// its RFC 8785 canonical bytes.
///
/// Beware: `serde_json` turns a NaN or infinite float into `null` on the way
/// to a `Value`; audit records have no floats, so this does not arise there.
pub fn canonicalize<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JcsError> {
    to_canonical_bytes(&serde_json::to_value(value)?)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // RFC 8785 §3.2.3: sort by the names' UTF-16 code units, not by
            // UTF-8 bytes or code points (they differ above U+FFFF).
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (name, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_value(out, member)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_number(out: &mut String, n: &Number) -> Result<(), JcsError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(JcsError::IntegerOutOfRange(n.to_string()));
        }
        out.push_str(&u.to_string());
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(JcsError::IntegerOutOfRange(n.to_string()));
        }
        out.push_str(&i.to_string());
    } else {
        // A float. ECMAScript prints an integral double in the safe range as a
        // plain integer (and -0 as "0"); anything else would need its
        // shortest-round-trip algorithm, which audit records never need.
        let f = n.as_f64().unwrap_or(f64::NAN);
        if !f.is_finite() || f.fract() != 0.0 {
            return Err(JcsError::NonIntegerNumber(n.to_string()));
        }
        if f.abs() > MAX_SAFE_INTEGER as f64 {
            return Err(JcsError::IntegerOutOfRange(n.to_string()));
        }
        // Exact: an integral double within ±(2^53 − 1) fits an i64.
        let i = f as i64;
        out.push_str(&i.to_string());
    }
    Ok(())
}

/// RFC 8785 §3.2.2.2: `"` and `\` escaped, U+0008/9/A/C/D as `\b \t \n \f \r`,
/// other controls below U+0020 as `\u00xx` (lowercase hex), everything else
/// as itself in UTF-8.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{09}' => out.push_str("\\t"),
            '\u{0A}' => out.push_str("\\n"),
            '\u{0C}' => out.push_str("\\f"),
            '\u{0D}' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        to_canonical_string(v).expect("canonical")
    }

    #[test]
    fn rfc8785_sorting_example() {
        // RFC 8785 §3.2.3: the emoji (a surrogate pair, D83D DE00) sorts
        // before U+FB33 by UTF-16 code units, though after it by code point.
        let v: Value = serde_json::from_str(
            r#"{
                "\u20ac": "Euro Sign",
                "\r": "Carriage Return",
                "\ufb33": "Hebrew Letter Dalet With Dagesh",
                "1": "One",
                "\ud83d\ude00": "Emoji: Grinning Face",
                "\u0080": "Control",
                "\u00f6": "Latin Small Letter O With Diaeresis"
            }"#,
        )
        .unwrap();
        assert_eq!(
            canon(&v),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    #[test]
    fn rfc8785_string_and_literals_example() {
        // RFC 8785 §3.2.2's example without its floating-point numbers.
        let v: Value = serde_json::from_str(
            r#"{"string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals": [null, true, false]}"#,
        )
        .unwrap();
        assert_eq!(canon(&v), r#"{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}"#);
    }

    #[test]
    fn escaping() {
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        let got = canon(&Value::String(all_controls));
        assert_eq!(
            got,
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\
             \\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\""
        );
        // DEL, U+2028/2029, non-ASCII, '/' and '<' stay literal.
        let s = "\u{7f}\u{2028}\u{2029}é漢字😀/<>&'";
        assert_eq!(canon(&json!(s)), format!("\"{s}\""));
        assert_eq!(canon(&json!("a\"b\\c")), r#""a\"b\\c""#);
        // Canonical output parses back to the same value.
        let v = json!({"k": "\u{0}\u{1f}\"\\\n", "e": ""});
        assert_eq!(serde_json::from_str::<Value>(&canon(&v)).unwrap(), v);
    }

    #[test]
    fn key_order_nesting_and_whitespace() {
        let v = json!({
            "kind": "deposit",
            "v": 1,
            "b": [3, {"z": null, "a": [true, false], "A": {}}, []],
            "aa": -7,
            "a": "x",
            "ä": 0,
            "Z": 9007199254740991u64,
        });
        assert_eq!(canon(&v), r#"{"Z":9007199254740991,"a":"x","aa":-7,"b":[3,{"A":{},"a":[true,false],"z":null},[]],"kind":"deposit","v":1,"ä":0}"#);
        assert_eq!(canon(&json!({})), "{}");
        assert_eq!(canon(&json!([])), "[]");
        // Sorting is by UTF-16 units: U+FF61 (one unit, FF61) sorts after
        // U+10000 (surrogates D800 DC00), the reverse of code-point order.
        let v = json!({"\u{ff61}": 1, "\u{10000}": 2});
        assert_eq!(canon(&v), "{\"\u{10000}\":2,\"\u{ff61}\":1}");
    }

    #[test]
    fn numbers() {
        assert_eq!(canon(&json!(0)), "0");
        assert_eq!(canon(&json!(-1)), "-1");
        assert_eq!(canon(&json!(9_007_199_254_740_991i64)), "9007199254740991");
        assert_eq!(canon(&json!(-9_007_199_254_740_991i64)), "-9007199254740991");
        assert!(matches!(to_canonical_string(&json!(9_007_199_254_740_992u64)), Err(JcsError::IntegerOutOfRange(_))));
        assert!(matches!(to_canonical_string(&json!(-9_007_199_254_740_992i64)), Err(JcsError::IntegerOutOfRange(_))));
        assert!(matches!(to_canonical_string(&json!(u64::MAX)), Err(JcsError::IntegerOutOfRange(_))));
        assert!(matches!(to_canonical_string(&json!(1.5)), Err(JcsError::NonIntegerNumber(_))));
        assert!(matches!(to_canonical_string(&json!([{"x": 0.1}])), Err(JcsError::NonIntegerNumber(_))));
        assert!(matches!(to_canonical_string(&json!(1e300)), Err(JcsError::IntegerOutOfRange(_))));
        // Integral doubles print as ECMAScript prints them.
        assert_eq!(canon(&json!(4.0)), "4");
        assert_eq!(canon(&json!(-0.0)), "0");
        assert_eq!(canon(&serde_json::from_str::<Value>("1E3").unwrap()), "1000");
    }

    #[test]
    fn canonicalize_serialize_types() {
        #[derive(Serialize)]
        struct Deposit<'a> {
            v: u32,
            kind: &'a str,
            size: u64,
            item: &'a str,
        }
        let bytes = canonicalize(&Deposit { v: 1, kind: "deposit", size: 42, item: "it-1" }).unwrap();
        assert_eq!(bytes, br#"{"item":"it-1","kind":"deposit","size":42,"v":1}"#);
        // A map with non-string keys is not JSON.
        let m: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
        assert!(matches!(canonicalize(&m), Err(JcsError::Serialize(_))));
    }
}
