//! JSON body decoding into `Decoded`, keeping object key order.
//!
//! Owns: turning a top-level JSON object into fields (strings/numbers/bools → text, arrays →
//! lists, objects → their keys in document order — SnappyMail's `attachments` order is the
//! user's list order). Does not keep deeper structure: rules never look below one level.

use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::ExtractError;
use crate::intercept::fields::{Decoded, Value};

/// One JSON value reduced to what rules can use.
enum Node {
    Null,
    Scalar(String),
    List(Vec<String>),
    Keys(Vec<String>),
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
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
        while let Some(n) = seq.next_element::<NodeDe>()? {
            if let Node::Scalar(s) = n.0 {
                items.push(s);
            }
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut keys = Vec::new();
        while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
            keys.push(k);
        }
        Ok(Node::Keys(keys))
    }
}

struct NodeDe(Node);

impl<'de> Deserialize<'de> for NodeDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor).map(NodeDe)
    }
}

struct TopLevel(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, NodeDe>()? {
                    let v = match v.0 {
                        Node::Null => continue,
                        Node::Scalar(s) => Value::Text(s),
                        Node::List(l) => Value::List(l),
                        Node::Keys(k) => Value::Keys(k),
                    };
                    out.push((k, v));
                }
                Ok(TopLevel(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Decodes a JSON object body. `null` members count as absent. A body that is not a JSON
/// object is an error carrying serde_json's message (line/column).
pub fn decode(body: &[u8]) -> Result<Decoded, ExtractError> {
    let top: TopLevel =
        serde_json::from_slice(body).map_err(|e| ExtractError::Json(e.to_string()))?;
    Ok(Decoded {
        fields: top.0,
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
}
