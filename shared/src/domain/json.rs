//! The one strict JSON reader for request bodies: serde_json's grammar, plus a duplicate key
//! refused (serde_json keeps the last one) with its path named, and a bound on nesting depth.

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;

/// Deeper than any body of the contract (its deepest is four levels), far below serde_json's
/// own recursion limit.
pub const MAX_DEPTH: usize = 32;

/// Why a body is not strict JSON. `path` names where: `metadata.order` for a key given twice in
/// `metadata`, `body` for a syntax error or a body nested too deep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JsonError {
    pub path: String,
    pub message: String,
}

/// Parses `body` into a [`Value`], refusing duplicate keys and nesting deeper than [`MAX_DEPTH`].
pub fn parse_strict(body: &[u8]) -> Result<Value, JsonError> {
    let state = State::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Strict {
        state: &state,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        // A structured error recorded on the way wins over serde_json's text for it.
        Err(e) => Err(state.error.take().unwrap_or_else(|| JsonError {
            path: "body".into(),
            message: format!("is not valid JSON: {e}"),
        })),
    }
}

#[derive(Default)]
struct State {
    /// The keys and indices leading to the value being read.
    path: RefCell<Vec<String>>,
    error: RefCell<Option<JsonError>>,
}

impl State {
    /// A duplicate `key` in the object at the current path.
    fn duplicate<E: serde::de::Error>(&self, key: &str) -> E {
        let mut path = self.path.borrow().clone();
        path.push(shown_key(key));
        let path = path.join(".");
        let message = "is given more than once (duplicate keys are refused)".to_owned();
        let e = E::custom(format!("{path}: {message}"));
        self.error.replace(Some(JsonError { path, message }));
        e
    }
}

/// A key as a path shows it: at most 64 characters.
fn shown_key(k: &str) -> String {
    k.chars().take(64).collect()
}

#[derive(Clone, Copy)]
struct Strict<'s> {
    state: &'s State,
    depth: usize,
}

impl Strict<'_> {
    fn nested<E: serde::de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            let message = format!("nests deeper than {MAX_DEPTH} levels");
            let e = E::custom(&message);
            self.state.error.replace(Some(JsonError {
                path: "body".into(),
                message,
            }));
            return Err(e);
        }
        Ok(Strict {
            state: self.state,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        // JSON Schema's integer includes `14400.0`: a number with no fraction reads as that integer,
        // so every integer field of every body accepts it (2^63 and beyond stay floats).
        if v.fract() == 0.0 && v.abs() < 9.223_372_036_854_775_808e18 {
            return Ok(Value::from(v as i64));
        }
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number out of range"))
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Vec::new();
        loop {
            inner.state.path.borrow_mut().push(out.len().to_string());
            let next = seq.next_element_seed(inner);
            inner.state.path.borrow_mut().pop();
            match next? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(inner.state.duplicate(&key));
            }
            inner.state.path.borrow_mut().push(shown_key(&key));
            let value = map.next_value_seed(inner);
            inner.state.path.borrow_mut().pop();
            out.insert(key, value?);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_serde_json_reads() {
        let text = r#" {"a": [1, -2, 3.5, "x", null, true], "b": {"c": {}}, "d": 18446744073709551615} "#;
        assert_eq!(
            parse_strict(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert_eq!(parse_strict(b"[]").unwrap(), json!([]));
    }

    #[test]
    fn a_number_without_a_fraction_is_an_integer() {
        let v = parse_strict(br#"{"a": 14400.0, "b": 1e3, "c": -2.0, "d": 1.5, "e": 1e300, "f": -0.0}"#).unwrap();
        assert_eq!(v["a"], json!(14400));
        assert!(v["a"].is_i64());
        assert_eq!(v["b"], json!(1000));
        assert_eq!(v["c"], json!(-2));
        assert_eq!(v["d"], json!(1.5));
        assert!(v["e"].is_f64(), "beyond i64 stays a float");
        assert_eq!(v["f"], json!(0));
        let lease: u32 = serde_json::from_value(v["a"].clone()).unwrap();
        assert_eq!(lease, 14400);
    }

    #[test]
    fn a_duplicate_key_is_named_with_its_path() {
        let e = parse_strict(br#"{"id":"a","id":"b"}"#).unwrap_err();
        assert_eq!(e.path, "id");
        assert!(e.message.contains("more than once"), "{e}");
        let e = parse_strict(br#"{"id":"a","metadata":{"k":"1","k":"2"}}"#).unwrap_err();
        assert_eq!(e.path, "metadata.k");
        let e = parse_strict(br#"{"entries":[{"v":1},{"v":1,"v":2}]}"#).unwrap_err();
        assert_eq!(e.path, "entries.1.v");
        // The same key in sibling objects is no duplicate.
        assert!(parse_strict(br#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn nesting_is_bounded_and_syntax_errors_name_the_body() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_strict(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = parse_strict(deep.as_bytes()).unwrap_err();
        assert!(e.message.contains("deeper than 32"), "{e}");
        let very_deep = "{\"a\":".repeat(100_000);
        assert!(parse_strict(very_deep.as_bytes())
            .unwrap_err()
            .message
            .contains("deeper"));
        for bad in [&b"{"[..], b"", b"{} x", br#"{"a":"\ud800"}"#, b"1e400", b"{\"a\":NaN}"] {
            let e = parse_strict(bad).unwrap_err();
            assert_eq!(e.path, "body", "{bad:?}");
            assert!(e.message.starts_with("is not valid JSON"), "{e}");
        }
    }
}
