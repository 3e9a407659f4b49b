//! JSON body decoding into `Decoded`, keeping object key order.
//!
//! Owns: turning a top-level JSON object into fields (strings/numbers/bools → text, arrays →
//! lists, objects → their keys in document order — SnappyMail's `attachments` order is the
//! user's list order). Does not keep deeper structure: rules never look below one level.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ExtractError;
use crate::intercept::fields::{Decoded, Value};

/// One JSON value reduced to what rules can use.
enum Node {
    Null,
    Scalar(String),
    List(Vec<String>),
    Keys(Vec<String>),
}

/// Visits one value, counting every list item and object key against `left` (the request's
/// parts budget): an attacker-sized array stops at the bound instead of filling memory.
struct NodeVisitor<'a> {
    left: &'a Cell<usize>,
}

/// The message of the error that stops a document over the parts bound.
const OVER_BOUND: &str = "mailtap: too many JSON values";

fn spend<E: serde::de::Error>(left: &Cell<usize>) -> Result<(), E> {
    match left.get() {
        0 => Err(E::custom(OVER_BOUND)),
        n => {
            left.set(n - 1);
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for NodeVisitor<'_> {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element_seed(NodeSeed { left: self.left })? {
            spend(self.left)?;
            if let Node::Scalar(s) = n {
                items.push(s);
            }
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut keys = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            spend(self.left)?;
            map.next_value_seed(NodeSeed { left: self.left })?;
            keys.push(k);
        }
        Ok(Node::Keys(keys))
    }
}

#[derive(Clone, Copy)]
struct NodeSeed<'a> {
    left: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor { left: self.left })
    }
}

/// The top-level object's members, in document order.
struct TopLevel<'a> {
    left: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Vec<(String, Value)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V<'a>(&'a Cell<usize>);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = Vec<(String, Value)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    spend(self.0)?;
                    let v = match map.next_value_seed(NodeSeed { left: self.0 })? {
                        Node::Null => continue,
                        Node::Scalar(s) => Value::Text(s),
                        Node::List(l) => Value::List(l),
                        Node::Keys(k) => Value::Keys(k),
                    };
                    out.push((k, v));
                }
                Ok(out)
            }
        }
        d.deserialize_map(V(self.left))
    }
}

/// [`decode_bounded`] with the default bound on values.
pub fn decode(body: &[u8]) -> Result<Decoded, ExtractError> {
    decode_bounded(body, super::Bounds::default().max_parts)
}

/// Decodes a JSON object body. `null` members count as absent. A body that is not a JSON
/// object is an error carrying serde_json's message (line/column); one with more than
/// `max_parts` members, array items and object keys (at any depth) is `TooManyParts`.
pub fn decode_bounded(body: &[u8], max_parts: usize) -> Result<Decoded, ExtractError> {
    let left = Cell::new(max_parts);
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = TopLevel { left: &left }
        .deserialize(&mut de)
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| {
            if left.get() == 0 && e.to_string().starts_with(OVER_BOUND) {
                ExtractError::TooManyParts { limit: max_parts }
            } else {
                ExtractError::Json(e.to_string())
            }
        })?;
    Ok(Decoded {
        fields,
        files: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        // Scalars become text, arrays lists, objects their keys in document order; null absent.
        let d = decode(
            br#"{"s":"x","n":0,"b":false,"z":null,"a":["p",1,{"o":1}],"o":{"zz":1,"aa":{"k":2}}}"#,
        )
        .unwrap();
        assert_eq!(d.text("s", false), Some("x"));
        assert_eq!(d.text("n", false), Some("0"));
        assert_eq!(d.text("b", false), Some("false"));
        assert!(d.get("z", false).is_none());
        assert_eq!(
            d.get("a", false),
            Some(&Value::List(vec!["p".into(), "1".into()]))
        );
        assert_eq!(
            d.get("o", false),
            Some(&Value::Keys(vec!["zz".into(), "aa".into()]))
        );
    }

    #[test]
    fn json_hostile_inputs() {
        // Non-objects and truncated documents are errors with a position.
        for bad in [
            &b"[1,2]"[..],
            b"\"s\"",
            b"{\"a\":",
            b"",
            b"{\"a\":\"\\ud800\"}x",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn json_values_over_the_bound_stop_the_decoder() {
        // Guards the parts bound: an attacker-sized array (at any depth) is TooManyParts, the
        // bound itself is fine.
        let items = |n: usize| vec!["1"; n].join(",");
        let ok = format!(r#"{{"a":[{}]}}"#, items(9));
        assert!(decode_bounded(ok.as_bytes(), 10).is_ok());
        for bad in [
            format!(r#"{{"a":[{}]}}"#, items(100_000)),
            format!(r#"{{"a":{{"b":[{}]}}}}"#, items(11)),
            format!(
                "{{{}}}",
                (0..20)
                    .map(|i| format!("\"k{i}\":1"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ] {
            assert_eq!(
                decode_bounded(bad.as_bytes(), 10).unwrap_err(),
                ExtractError::TooManyParts { limit: 10 },
                "{bad:.60}"
            );
        }
    }
}
